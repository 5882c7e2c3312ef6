//! The deletion lifecycle and the GDPR sweeper, on SQLite and PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use accountctl::db::InvalidationChannel;
use accountctl::db::Tx;
use accountctl::domain::UserRef;
use accountctl::domain::{DeletionMode, LogoutReason, User, parse_capabilities};
use accountctl::lifecycle::UserLifecycleHook;
use accountctl::password::Secret;
use accountctl::services::accounts::NewUser;
use accountctl::services::erasure::SweepOptions;
use accountctl::services::invites::{Acceptor, DEFAULT_INVITE_TTL, InviteRequest};
use accountctl::{App, Error};

/// Every column of every table, classified. `personal`: identifies or describes a person and
/// must be gone after a GDPR purge (the purge test checks the values); `pseudonymous`: a bare
/// user id that may outlive the user (audit, tombstones, requests); `reference`: an id or
/// foreign key with no meaning of its own; `operational`: non-personal state.
/// A table or column that is not here fails `every_column_is_classified`.
const REGISTRY: &[(&str, &[(&str, &str)])] = &[
    (
        "persons",
        &[
            ("id", "reference"),
            ("given_name", "personal"),
            ("family_name", "personal"),
            ("display_name", "personal"),
            ("phone", "personal"),
            ("locale", "personal"),
            ("created_at", "operational"),
            ("updated_at", "operational"),
        ],
    ),
    (
        "users",
        &[
            ("id", "reference"),
            ("person_id", "reference"),
            ("username", "personal"),
            ("role", "operational"),
            ("is_external", "operational"),
            ("active", "operational"),
            ("password_hash", "personal"),
            ("storage_quota_bytes", "operational"),
            ("storage_used_bytes", "operational"),
            ("created_at", "operational"),
            ("updated_at", "operational"),
            ("last_login_at", "personal"),
            ("deleted_at", "operational"),
            ("purge_after", "operational"),
        ],
    ),
    (
        "passports",
        &[
            ("id", "reference"),
            ("user_id", "reference"),
            ("kind", "operational"),
            ("value", "personal"),
            ("verified_at", "operational"),
            ("is_primary", "operational"),
            ("created_at", "operational"),
        ],
    ),
    (
        "external_identities",
        &[
            ("id", "reference"),
            ("user_id", "reference"),
            ("provider", "operational"),
            ("subject", "personal"),
            ("created_at", "operational"),
            ("last_verified_at", "operational"),
        ],
    ),
    (
        "workspace_types",
        &[
            ("id", "reference"),
            ("slug", "operational"),
            ("title", "operational"),
            ("capabilities", "operational"),
            ("created_at", "operational"),
        ],
    ),
    (
        "workspaces",
        &[
            ("id", "reference"),
            ("name", "operational"),
            ("type_id", "reference"),
            ("parent_id", "reference"),
            ("is_root", "operational"),
            ("created_at", "operational"),
            ("name_folded", "operational"),
        ],
    ),
    (
        "roles",
        &[
            ("id", "reference"),
            ("workspace_id", "reference"),
            ("name", "operational"),
            ("capabilities", "operational"),
            ("is_system", "operational"),
            ("created_at", "operational"),
        ],
    ),
    (
        "memberships",
        &[
            ("user_id", "reference"),
            ("workspace_id", "reference"),
            ("role_id", "reference"),
            ("created_at", "operational"),
        ],
    ),
    (
        "invites",
        &[
            ("id", "reference"),
            ("workspace_id", "reference"),
            ("role_id", "reference"),
            ("passport_kind", "operational"),
            ("passport_value", "personal"),
            ("force_passport", "operational"),
            ("invitee_user_id", "reference"),
            ("person_id", "reference"),
            ("token_hash", "operational"),
            ("status", "operational"),
            ("expires_at", "operational"),
            ("created_by", "operational"),
            ("created_at", "operational"),
            ("accepted_at", "operational"),
            ("accepted_by_user_id", "reference"),
        ],
    ),
    (
        "notification_outbox",
        &[
            ("id", "reference"),
            ("kind", "operational"),
            ("recipient", "personal"),
            ("invite_id", "reference"),
            ("user_id", "reference"),
            ("payload", "operational"),
            ("created_at", "operational"),
            ("delivered_at", "operational"),
        ],
    ),
    (
        "sessions",
        &[
            ("id", "reference"),
            ("user_id", "reference"),
            ("family_id", "reference"),
            ("token_hash", "operational"),
            ("created_at", "operational"),
            ("expires_at", "operational"),
            ("last_seen_at", "personal"),
            ("ip_address", "personal"),
            ("user_agent", "personal"),
            ("revoked_at", "operational"),
            ("revoke_reason", "operational"),
            ("refresh_hash", "operational"),
        ],
    ),
    (
        "rotated_refresh_tokens",
        &[
            ("token_hash", "operational"),
            ("session_id", "reference"),
            ("rotated_at", "operational"),
        ],
    ),
    (
        "folders",
        &[
            ("id", "reference"),
            ("user_id", "reference"),
            ("parent_id", "reference"),
            ("name", "personal"),
            ("is_home", "operational"),
            ("created_at", "operational"),
        ],
    ),
    (
        "files",
        &[
            ("id", "reference"),
            ("folder_id", "reference"),
            ("user_id", "reference"),
            ("name", "personal"),
            ("size_bytes", "operational"),
            ("created_at", "operational"),
        ],
    ),
    (
        "audit_events",
        &[
            ("id", "reference"),
            ("occurred_at", "operational"),
            ("actor", "operational"),
            ("event", "operational"),
            ("subject_user_id", "pseudonymous"),
            ("fields", "operational"),
        ],
    ),
    (
        "user_tombstones",
        &[
            ("user_id", "pseudonymous"),
            ("deleted_at", "operational"),
            ("mode", "operational"),
            ("merged_into", "pseudonymous"),
        ],
    ),
    (
        "erasure_requests",
        &[
            ("id", "reference"),
            ("user_id", "pseudonymous"),
            ("requested_at", "operational"),
            ("due_at", "operational"),
            ("requested_by", "operational"),
            ("status", "operational"),
            ("completed_at", "operational"),
            ("last_error", "operational"),
        ],
    ),
    (
        "sweeper_runs",
        &[
            ("id", "reference"),
            ("started_at", "operational"),
            ("finished_at", "operational"),
            ("status", "operational"),
            ("dry_run", "operational"),
            ("purged", "operational"),
            ("failed", "operational"),
            ("summary", "operational"),
        ],
    ),
    (
        "cache_invalidations",
        &[
            ("id", "reference"),
            ("user_id", "pseudonymous"),
            ("reason", "operational"),
            ("created_at", "operational"),
        ],
    ),
    (
        "accountctl_hooks",
        &[
            ("kind", "operational"),
            ("name", "operational"),
            ("recorded_at", "operational"),
        ],
    ),
    (
        "accountctl_registry",
        &[
            ("id", "operational"),
            ("application", "operational"),
            ("generation", "operational"),
            ("updated_at", "operational"),
            // The invalidation channel the database's processes use: no person in it.
            ("invalidations", "operational"),
        ],
    ),
    (
        // Ids only (like the audit trail): the owed hook work of a purged user names its id,
        // never its username or email; the failure kind, never the error's text.
        "owed_hook_work",
        &[
            ("id", "operational"),
            ("event", "operational"),
            ("user_ids", "pseudonymous"),
            ("hook", "operational"),
            ("recorded_at", "operational"),
            ("attempts", "operational"),
            ("last_error", "operational"),
            ("owner", "operational"),
            ("lease_until", "operational"),
        ],
    ),
    (
        "_sqlx_migrations",
        &[
            ("version", "operational"),
            ("description", "operational"),
            ("installed_on", "operational"),
            ("success", "operational"),
            ("checksum", "operational"),
            ("execution_time", "operational"),
        ],
    ),
];

async fn live_columns(ctx: &common::Ctx) -> BTreeMap<String, Vec<String>> {
    let sql = match ctx.backend {
        common::Backend::Sqlite => {
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        }
        common::Backend::Postgres | common::Backend::PgBouncer => {
            "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = 'public'"
        }
    };
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (table, column) in ctx.text_pairs(sql).await {
        out.entry(table).or_default().push(column);
    }
    out
}

async fn make_user(app: &App, name: &str) -> uuid::Uuid {
    app.accounts()
        .create(
            NewUser {
                username: name.into(),
                email: Some(format!("{name}@example.com")),
                password: Some(Secret::new("password 123".into())),
                ..NewUser::default()
            },
            false,
        )
        .await
        .expect("create")
        .user
        .id
}

/// Fails the delete of one named user.
struct FailFor(&'static str);

#[async_trait::async_trait]
impl UserLifecycleHook for FailFor {
    fn name(&self) -> &'static str {
        "fail_for"
    }
    async fn on_user_created(&self, _: &User) -> accountctl::Result<()> {
        Ok(())
    }
    async fn on_user_login(&self, _: &User) -> accountctl::Result<()> {
        Ok(())
    }
    async fn on_user_logout(&self, _: &User, _: LogoutReason) -> accountctl::Result<()> {
        Ok(())
    }
    async fn on_user_deleted(&self, user: &User, _: DeletionMode, _: &mut Tx) -> accountctl::Result<()> {
        if user.username == self.0 {
            Err(Error::Internal("storage backend unreachable".into()))
        } else {
            Ok(())
        }
    }
}

/// Registered after the built-in hooks: counts, inside the delete's transaction, the
/// `user.deleted` rows the audit hook recorded for the user before it.
#[derive(Default)]
struct SeesAudit(std::sync::Mutex<Vec<i64>>);

#[async_trait::async_trait]
impl UserLifecycleHook for SeesAudit {
    fn name(&self) -> &'static str {
        "sees_audit"
    }
    async fn on_user_created(&self, _: &User) -> accountctl::Result<()> {
        Ok(())
    }
    async fn on_user_login(&self, _: &User) -> accountctl::Result<()> {
        Ok(())
    }
    async fn on_user_logout(&self, _: &User, _: LogoutReason) -> accountctl::Result<()> {
        Ok(())
    }
    async fn on_user_deleted(&self, user: &User, _: DeletionMode, tx: &mut Tx) -> accountctl::Result<()> {
        let row = tx
            .fetch_one(
                "SELECT COUNT(*) AS n FROM audit_events WHERE event = 'user.deleted' AND subject_user_id = $1",
                &[user.id.into()],
            )
            .await?;
        self.0.lock().expect("lock").push(row.get("n")?);
        Ok(())
    }
}

const PAST: &str = "2000-01-01T00:00:00+00:00";

on_both_backends! {
    async fn every_column_is_classified(ctx) {
        let live = live_columns(&ctx).await;
        let mut missing = Vec::new();
        for (table, columns) in &live {
            let known = REGISTRY.iter().find(|(t, _)| t == table).map(|(_, c)| *c);
            for column in columns {
                if !known.is_some_and(|k| k.iter().any(|(c, _)| c == column)) {
                    missing.push(format!("{table}.{column}"));
                }
            }
        }
        assert!(missing.is_empty(), "unclassified columns (add them to REGISTRY and to the purge): {missing:?}");
        assert!(live.len() >= 17, "the schema was read: {:?}", live.keys());
    }

    async fn a_purged_user_leaves_no_trace_but_the_tombstone_and_pseudonymous_audit(ctx) {
        let app = ctx.app().await;
        app.bootstrap().run(None).await.expect("bootstrap");
        app.workspaces().create_type("team", "Team", &parse_capabilities("docs.*").expect("caps"), false).await.expect("type");
        app.workspaces().create("Zeta", "team", None, false).await.expect("ws");
        app.workspaces().create_role("Zeta", "member", &[], false).await.expect("role");
        let created = app
            .accounts()
            .create(
                NewUser {
                    username: "qzxuser".into(),
                    email: Some("qzx.mail@qzxdomain.test".into()),
                    phone: Some("+4915199887766".into()),
                    given_name: Some("Qzxgiven".into()),
                    family_name: Some("Qzxfamily".into()),
                    membership: Some(("Zeta".into(), "member".into())),
                    password: Some(Secret::new("qzx password".into())),
                    ..NewUser::default()
                },
                false,
            )
            .await
            .expect("create");
        let id = created.user.id;
        let mut tx = ctx.db.begin().await.expect("tx");
        tx.execute("INSERT INTO external_identities (id, user_id, provider, subject, created_at) VALUES ($1, $2, $3, $4, $5)", &[uuid::Uuid::now_v7().into(), id.into(), "qzxprovider".into(), "qzx-subject-42".into(), accountctl::domain::now().into()]).await.expect("identity");
        tx.commit().await.expect("commit");
        // The client's address and user agent, recorded by the sign-in path as a server passes them.
        let client = accountctl::services::auth::ClientInfo { ip: Some("203.0.113.77".parse().expect("ip")), user_agent: Some("QzxBrowser/1.0".into()) };
        app.auth().with_client(client).login("qzxuser", &Secret::new("qzx password".into()), true).await.expect("login");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE ip_address = '203.0.113.77' AND user_agent = 'QzxBrowser/1.0'").await, 1);
        ctx.exec(&format!("INSERT INTO files (id, folder_id, user_id, name, size_bytes, created_at) SELECT '00000000-0000-4000-8000-0000000000f1', id, user_id, 'qzx-diary.txt', 0, created_at FROM folders WHERE user_id = '{id}'")).await.expect("file");
        let invite = InviteRequest { workspace: "Zeta".into(), role: "member".into(), email: Some("qzx.mail@qzxdomain.test".into()), phone: None, force_passport: false, expires_in: DEFAULT_INVITE_TTL, given_name: None, family_name: None };
        app.invites().create(&invite).await.expect("invite to the user");
        app.accounts().disable(&UserRef::Id(id)).await.expect("audit history");
        app.lifecycle().drain(std::time::Duration::from_secs(5)).await;
        let before = ctx.dump().await;
        assert!(before.contains("qzx"), "the distinctive values were stored");
        app.accounts().delete(&UserRef::Id(id), DeletionMode::GdprPurge).await.expect("purge");
        let dump = ctx.dump().await;
        for needle in ["qzx", "Qzx", "4915199887766", "203.0.113.77", "My Folder"] {
            assert!(!dump.contains(needle), "{needle} survived the purge:\n{}", dump.lines().filter(|l| l.contains(needle)).collect::<Vec<_>>().join("\n"));
        }
        assert!(dump.contains(&id.to_string()), "tombstone and audit keep the pseudonymous id");
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM user_tombstones WHERE user_id = '{id}'")).await, 1);
        assert!(ctx.count(&format!("SELECT COUNT(*) FROM audit_events WHERE subject_user_id = '{id}'")).await >= 3);
    }

    async fn an_erasure_request_disables_at_once_and_the_sweeper_purges_when_due(ctx) {
        let app = ctx.app().await;
        let id = make_user(&app, "erin").await;
        let trashed = make_user(&app, "trudy").await;
        let fresh = make_user(&app, "fresh").await;
        app.auth().login("erin", &Secret::new("password 123".into()), true).await.expect("login");
        app.erasure().request(&UserRef::Id(id), chrono::Duration::days(30)).await.expect("request");
        let err = app.erasure().request(&UserRef::Id(id), chrono::Duration::days(30)).await.expect_err("one pending request");
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        assert!(matches!(app.auth().login("erin", &Secret::new("password 123".into()), false).await, Err(Error::AuthenticationFailed)));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, 0);
        app.accounts().delete(&UserRef::Id(trashed), DeletionMode::AdminDelete).await.expect("trash");
        app.accounts().delete(&UserRef::Id(fresh), DeletionMode::AdminDelete).await.expect("trash");
        let status = app.erasure().status(chrono::Duration::days(2)).await.expect("status");
        assert!(status.stale, "never run");
        assert_eq!((status.pending_requests.len(), status.trashed_users, status.trash_due), (1, 2, 0));
        // Nothing is due yet.
        let report = app.erasure().purge(&SweepOptions::default(), |_, _| {}).await.expect("sweep");
        assert_eq!(report.purged, 0);
        // Make the request and one trashed user due.
        ctx.exec(&format!("UPDATE erasure_requests SET due_at = '{PAST}'")).await.expect("due");
        ctx.exec(&format!("UPDATE users SET purge_after = '{PAST}' WHERE id = '{trashed}'")).await.expect("due");
        let dry = app.erasure().purge(&SweepOptions { dry_run: true, ..SweepOptions::default() }, |_, _| {}).await.expect("dry");
        assert_eq!(dry.users.iter().filter(|e| e.outcome == accountctl::domain::SweepOutcome::WouldPurge).count(), 2);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM user_tombstones").await, 0, "a dry run changes nothing");
        let report = app.erasure().purge(&SweepOptions::default(), |_, _| {}).await.expect("sweep");
        assert_eq!((report.purged, report.failed, report.status), (2, 0, accountctl::domain::SweepStatus::Ok));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM user_tombstones").await, 2);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM erasure_requests WHERE status = 'completed'").await, 1);
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM users WHERE id = '{fresh}'")).await, 1, "trash not yet due stays");
        assert!(!app.erasure().status(chrono::Duration::days(2)).await.expect("status").stale);
        // A trashed user is restored intact before it is due.
        app.accounts().restore(&UserRef::Id(fresh)).await.expect("restore");
        app.auth().login("fresh", &Secret::new("password 123".into()), false).await.expect("restored login");
    }

    async fn a_failing_user_is_recorded_and_does_not_stop_the_run(ctx) {
        let app = ctx.app_with(App::builder().hook(Arc::new(FailFor("bad")))).await;
        for name in ["aa", "bad", "cc"] {
            make_user(&app, name).await;
            app.erasure().request(&UserRef::Username(name.into()), chrono::Duration::days(1)).await.expect("request");
        }
        ctx.exec(&format!("UPDATE erasure_requests SET due_at = '{PAST}'")).await.expect("due");
        let report = app.erasure().purge(&SweepOptions::default(), |_, _| {}).await.expect("sweep");
        assert_eq!((report.purged, report.failed, report.status), (2, 1, accountctl::domain::SweepStatus::Partial));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM erasure_requests WHERE status = 'pending' AND last_error = 'hook fail_for failed'").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username = 'bad'").await, 1, "the failed user is intact");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sweeper_runs WHERE status = 'partial' AND failed = 1").await, 1);
    }

    async fn two_sweepers_at_once_purge_each_due_user_exactly_once(ctx) {
        let app = ctx.app().await;
        for i in 0..40 {
            make_user(&app, &format!("due{i:02}")).await;
        }
        ctx.exec(&format!("UPDATE users SET active = FALSE, deleted_at = '{PAST}', purge_after = '{PAST}'")).await.expect("trash all");
        let (a, b) = (app.erasure(), app.erasure());
        let one = tokio::spawn(async move { a.purge(&SweepOptions::default(), |_, _| {}).await });
        let two = tokio::spawn(async move { b.purge(&SweepOptions::default(), |_, _| {}).await });
        let (r1, r2) = (one.await.expect("task").expect("sweeper 1"), two.await.expect("task").expect("sweeper 2"));
        assert_eq!(r1.failed + r2.failed, 0, "{:?} {:?}", r1.users.iter().filter(|e| e.error.is_some()).collect::<Vec<_>>(), r2.users);
        assert_eq!(r1.purged + r2.purged, 40);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, 0);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM user_tombstones").await, 40);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.deleted'").await, 40, "each user deleted once");
    }

    async fn sigterm_mid_purge_leaves_every_user_intact_or_fully_purged(ctx) {
        let app = ctx.app().await;
        app.bootstrap().run(None).await.expect("bootstrap");
        // 1,000 trashed, due users with a passport, a session and a folder each, made in bulk.
        let mut tx = ctx.db.begin().await.expect("tx");
        for i in 0..1000 {
            let (p, u) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
            tx.execute(&format!("INSERT INTO persons (id, given_name, created_at, updated_at) VALUES ('{p}', 'G{i}', '{PAST}', '{PAST}')"), &[]).await.expect("person");
            tx.execute(&format!("INSERT INTO users (id, person_id, username, active, created_at, updated_at, deleted_at, purge_after) VALUES ('{u}', '{p}', 'bulk{i}', FALSE, '{PAST}', '{PAST}', '{PAST}', '{PAST}')"), &[]).await.expect("user");
            tx.execute(&format!("INSERT INTO passports (id, user_id, kind, value, is_primary, created_at) VALUES ('{}', '{u}', 'email', 'bulk{i}@example.com', TRUE, '{PAST}')", uuid::Uuid::now_v7()), &[]).await.expect("passport");
            tx.execute(&format!("INSERT INTO sessions (id, user_id, family_id, token_hash, created_at, expires_at) VALUES ('{}', '{u}', '{u}', 'h{i}', '{PAST}', '{PAST}')", uuid::Uuid::now_v7()), &[]).await.expect("session");
            tx.execute(&format!("INSERT INTO folders (id, user_id, name, is_home, created_at) VALUES ('{}', '{u}', 'My Folder - bulk{i}', TRUE, '{PAST}')", uuid::Uuid::now_v7()), &[]).await.expect("folder");
        }
        tx.commit().await.expect("commit");
        let bin = assert_cmd::cargo::cargo_bin("accountctl");
        let mut child = std::process::Command::new(bin)
            .args(["gdpr", "purge", "-o", "json"])
            .env("DATABASE_URL", &ctx.url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while ctx.count("SELECT COUNT(*) FROM user_tombstones").await < 20 {
            assert!(std::time::Instant::now() < deadline, "the sweeper made no progress");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        assert!(killed.success());
        let output = tokio::task::spawn_blocking(move || { let status = child.wait().expect("wait"); let mut out = String::new(); std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout"), &mut out).expect("read"); (status, out) }).await.expect("join");
        assert!(output.0.success(), "a clean stop exits 0: {:?}", output.0);
        let report: serde_json::Value = serde_json::from_str(&output.1).expect("JSON summary");
        assert_eq!(report["status"], "interrupted");
        assert_eq!(report["stopped"], "signal");
        let remaining = ctx.count("SELECT COUNT(*) FROM users WHERE username LIKE 'bulk%'").await;
        let purged = ctx.count("SELECT COUNT(*) FROM user_tombstones").await;
        assert!(remaining > 0, "the signal arrived mid-run (remaining {remaining})");
        assert_eq!(remaining + purged, 1000);
        assert_eq!(report["purged"].as_i64(), Some(purged));
        // Every remaining user is whole; nothing of a purged one is left.
        for table in ["passports", "sessions", "folders"] {
            assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM {table}")).await, remaining, "{table}");
        }
        assert_eq!(ctx.count("SELECT COUNT(*) FROM persons WHERE given_name LIKE 'G%'").await, remaining);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sweeper_runs WHERE status = 'interrupted'").await, 1);
    }

    async fn gdpr_status_reports_a_stale_sweeper_with_its_exit_code(ctx) {
        ctx.cli().args(["gdpr", "status"]).assert().code(4);
        ctx.cli().args(["gdpr", "purge", "-o", "json"]).assert().success();
        ctx.cli().args(["gdpr", "status"]).assert().success();
        ctx.exec(&format!("UPDATE sweeper_runs SET started_at = '{PAST}', finished_at = '{PAST}'")).await.expect("age");
        ctx.cli().args(["gdpr", "status", "-o", "json"]).assert().code(4);
        ctx.cli().args(["gdpr", "status", "--max-age", "100000d"]).assert().success();
    }

    async fn a_sweep_republishes_no_invalidation_for_a_trashed_user_but_does_for_a_due_request(ctx) {
        // The table channel on both backends, so the publications can be counted.
        ctx.app().await.migrate_with_invalidations(InvalidationChannel::Table).await.expect("record the table");
        let db = ctx.db.clone().with_invalidation_channel(InvalidationChannel::Table);
        let app = App::builder().database(db).build().await.expect("app");
        let tina = make_user(&app, "tina").await;
        let rhea = make_user(&app, "rhea").await;
        app.accounts().delete(&UserRef::Id(tina), DeletionMode::AdminDelete).await.expect("trash");
        app.erasure().request(&UserRef::Id(rhea), chrono::Duration::days(1)).await.expect("request");
        app.lifecycle().drain(std::time::Duration::from_secs(5)).await;
        let c = &ctx;
        let published = move |id: uuid::Uuid, reason: &'static str| async move {
            c.count(&format!("SELECT COUNT(*) FROM cache_invalidations WHERE user_id = '{id}' AND reason = '{reason}'")).await
        };
        assert_eq!(published(tina, "admin_delete").await, 1, "trashing published in its transaction");
        ctx.exec(&format!("UPDATE users SET purge_after = '{PAST}' WHERE id = '{tina}'")).await.expect("due");
        ctx.exec(&format!("UPDATE erasure_requests SET due_at = '{PAST}'")).await.expect("due");
        let report = app.erasure().purge(&SweepOptions::default(), |_, _| {}).await.expect("sweep");
        assert_eq!((report.purged, report.failed), (2, 0));
        assert_eq!(published(tina, "gdpr_purge").await, 0, "a trashed user has held no grant since it was trashed: nothing to republish");
        assert_eq!(published(rhea, "gdpr_purge").await, 1, "a user purged out of an erasure request is published, in the purge's transaction");
    }

    async fn a_deletes_audit_rows_keep_their_order_and_later_statements_see_them(ctx) {
        // PostgreSQL sends a delete's `user.deleted` row with the next statement rather than
        // alone: the rows must still land in the order the hooks recorded them, and a hook's
        // own statement after them must see them.
        let sees = Arc::new(SeesAudit::default());
        let app = ctx.app_with(App::builder().hook(sees.clone())).await;
        let ann = make_user(&app, "ann").await;
        let bob = make_user(&app, "bob").await;
        app.auth().login("ann", &Secret::new("password 123".into()), true).await.expect("login");
        app.accounts().delete(&UserRef::Id(ann), DeletionMode::AdminDelete).await.expect("trash");
        ctx.exec(&format!("UPDATE users SET purge_after = '{PAST}' WHERE id = '{ann}'")).await.expect("due");
        let report = app.erasure().purge(&SweepOptions::default(), |_, _| {}).await.expect("sweep");
        assert_eq!(report.purged, 1);
        app.accounts().delete(&UserRef::Id(bob), DeletionMode::GdprPurge).await.expect("purge");
        assert_eq!(*sees.0.lock().expect("lock"), vec![1, 2, 1], "each delete's own user.deleted row, seen by the hook after it");
        let events = |id: uuid::Uuid| {
            let c = &ctx;
            async move {
                c.text_pairs(&format!("SELECT event, fields FROM audit_events WHERE subject_user_id = '{id}' AND event <> 'user.created' ORDER BY id"))
                    .await
                    .into_iter()
                    .map(|(event, fields)| format!("{event} {fields}"))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            events(ann).await,
            vec![
                r#"user.login {"is_external":false,"first_login":true}"#.to_owned(),
                r#"user.deleted {"is_external":false,"mode":"admin_delete","merged_into":null}"#.to_owned(),
                r#"user.sessions_revoked_on_delete {"count":1,"mode":"admin_delete"}"#.to_owned(),
                r#"user.deleted {"is_external":false,"mode":"gdpr_purge","merged_into":null}"#.to_owned(),
                r#"user.sessions_revoked_on_delete {"count":0,"mode":"gdpr_purge"}"#.to_owned(),
            ]
        );
        assert_eq!(
            events(bob).await,
            vec![
                r#"user.deleted {"is_external":false,"mode":"gdpr_purge","merged_into":null}"#.to_owned(),
                r#"user.sessions_revoked_on_delete {"count":0,"mode":"gdpr_purge"}"#.to_owned(),
            ]
        );
    }

    async fn sessions_live_at_purge_time_are_revoked_and_audited_with_their_count(ctx) {
        let app = ctx.app_with(App::builder().hook(Arc::new(FailFor("vic")))).await;
        let sam = make_user(&app, "sam").await;
        let tom = make_user(&app, "tom").await;
        let vic = make_user(&app, "vic").await;
        // tom goes to the trash the normal way (its session ends then); sam and vic are put
        // there behind the library's back, keeping two live sessions each.
        app.auth().login("tom", &Secret::new("password 123".into()), true).await.expect("login");
        app.accounts().delete(&UserRef::Id(tom), DeletionMode::AdminDelete).await.expect("trash");
        for name in ["sam", "vic"] {
            for _ in 0..2 {
                app.auth().login(name, &Secret::new("password 123".into()), true).await.expect("login");
            }
        }
        ctx.exec(&format!("UPDATE users SET active = FALSE, deleted_at = '{PAST}', purge_after = '{PAST}'")).await.expect("trash all");
        let report = app.erasure().purge(&SweepOptions::default(), |_, _| {}).await.expect("sweep");
        assert_eq!((report.purged, report.failed), (2, 1), "{:?}", report.users);
        let c = &ctx;
        let revoked = move |id: uuid::Uuid| async move {
            c.text_pairs(&format!(
                "SELECT event, fields FROM audit_events WHERE event = 'user.sessions_revoked_on_delete' AND subject_user_id = '{id}' ORDER BY id"
            ))
            .await
            .into_iter()
            .map(|(_, fields)| fields)
            .collect::<Vec<_>>()
        };
        // sam: both live sessions revoked inside the purge's transaction, and counted.
        assert_eq!(revoked(sam).await, vec![r#"{"count":2,"mode":"gdpr_purge"}"#.to_owned()]);
        // tom: its session ended at trash time; the purge still audits, with a count of 0.
        assert_eq!(
            revoked(tom).await,
            vec![r#"{"count":1,"mode":"admin_delete"}"#.to_owned(), r#"{"count":0,"mode":"gdpr_purge"}"#.to_owned()]
        );
        // vic: the failing hook rolled everything back, the revocation and its audit row included.
        assert!(revoked(vic).await.is_empty());
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM sessions WHERE user_id = '{vic}' AND revoked_at IS NULL")).await, 2);
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM users WHERE id IN ('{sam}', '{tom}')")).await, 0);
    }

    async fn a_purge_erases_invites_outbox_and_the_persons_to_be_they_created(ctx) {
        let app = ctx.app().await;
        app.bootstrap().run(None).await.expect("bootstrap");
        app.workspaces().create_type("team", "Team", &parse_capabilities("docs.*").expect("caps"), false).await.expect("type");
        app.workspaces().create("Zeta", "team", None, false).await.expect("ws");
        app.workspaces().create_role("Zeta", "member", &[], false).await.expect("role");
        let invite = |email: &str, given: &str| InviteRequest {
            workspace: "Zeta".into(),
            role: "member".into(),
            email: Some(email.into()),
            phone: None,
            force_passport: false,
            expires_in: DEFAULT_INVITE_TTL,
            given_name: Some(given.into()),
            family_name: None,
        };
        // pat: invited before being a user (a person-to-be), then created directly.
        app.invites().create(&invite("pat@example.com", "Qpatgiven")).await.expect("invite pat");
        let pat = make_user(&app, "pat").await;
        // carl: accepts an invite as a new user.
        let issued = app.invites().create(&invite("carl@example.com", "Qcarlgiven")).await.expect("invite carl");
        let carl = app
            .invites()
            .accept(&issued.token, Acceptor::NewUser { username: "carl".into(), password: None })
            .await
            .expect("accept")
            .user_id;
        // olga: invited, not a user; her person-to-be and invite must stay.
        app.invites().create(&invite("olga@example.com", "Qolgagiven")).await.expect("invite olga");
        let olga_outbox = ctx.count("SELECT COUNT(*) FROM notification_outbox WHERE recipient = 'olga@example.com'").await;
        for id in [pat, carl] {
            app.erasure().request(&UserRef::Id(id), chrono::Duration::days(1)).await.expect("request");
        }
        ctx.exec(&format!("UPDATE erasure_requests SET due_at = '{PAST}'")).await.expect("due");
        let report = app.erasure().purge(&SweepOptions::default(), |_, _| {}).await.expect("sweep");
        assert_eq!((report.purged, report.failed), (2, 0), "{:?}", report.users);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, 0);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM persons WHERE given_name IN ('Qpatgiven', 'Qcarlgiven')").await, 0);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM persons").await, 1, "olga's person-to-be only");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM persons WHERE given_name = 'Qolgagiven'").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM invites").await, 1, "olga's invite only");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM notification_outbox WHERE recipient <> 'olga@example.com'").await, 0);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM notification_outbox WHERE recipient = 'olga@example.com'").await, olga_outbox);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM erasure_requests WHERE status = 'completed' AND completed_at IS NOT NULL").await, 2);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM user_tombstones WHERE mode = 'gdpr_purge' AND merged_into IS NULL").await, 2);
    }

    async fn purging_the_last_root_member_is_refused_and_leaves_it_whole(ctx) {
        let app = ctx.app().await;
        app.bootstrap().run(None).await.expect("bootstrap");
        let rooty = make_user(&app, "rooty").await;
        let other = make_user(&app, "other").await;
        app.memberships().assign(&UserRef::Id(rooty), "root", "root").await.expect("root member");
        let err = app.accounts().delete(&UserRef::Id(rooty), DeletionMode::GdprPurge).await.expect_err("last root member");
        assert!(matches!(err, Error::Refused(ref m) if m.contains("at least one member")), "{err:?}");
        // A request for the only member is refused up front (it could never run); one made
        // while another member was there fails at the sweep once that member has left.
        let err = app.erasure().request(&UserRef::Id(rooty), chrono::Duration::days(1)).await.expect_err("only member");
        assert!(matches!(err, Error::Refused(ref m) if m.contains("only member")), "{err:?}");
        app.memberships().assign(&UserRef::Id(other), "root", "root").await.expect("second root member");
        app.erasure().request(&UserRef::Id(rooty), chrono::Duration::days(1)).await.expect("request");
        app.memberships().revoke(&UserRef::Id(other), "root", "root").await.expect("the other leaves");
        ctx.exec(&format!("UPDATE erasure_requests SET due_at = '{PAST}'")).await.expect("due");
        let report = app.erasure().purge(&SweepOptions::default(), |_, _| {}).await.expect("sweep");
        assert_eq!((report.purged, report.failed), (0, 1), "{:?}", report.users);
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM users WHERE id = '{rooty}'")).await, 1, "whole");
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM passports WHERE user_id = '{rooty}'")).await, 1, "whole");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM erasure_requests WHERE status = 'pending' AND last_error = 'refused by an invariant'").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM user_tombstones").await, 0);
        // With another root member, the next sweep purges it.
        app.memberships().assign(&UserRef::Id(other), "root", "root").await.expect("second root member");
        let report = app.erasure().purge(&SweepOptions::default(), |_, _| {}).await.expect("sweep");
        assert_eq!((report.purged, report.failed), (1, 0), "{:?}", report.users);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships m JOIN workspaces w ON w.id = m.workspace_id WHERE w.is_root").await, 1);
    }
}
