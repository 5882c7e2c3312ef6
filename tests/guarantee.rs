//! The guarantee by construction: an application's hooks, merge handlers and personal-data
//! declarations cannot be skipped by another binary, lost in a crash, turned against users by
//! a failing hook, or bypassed through the transaction handle or a look-alike name. Each test
//! is one way it used to fail, run on both backends.

mod common;

#[path = "../examples/app_admin/calendar.rs"]
#[allow(dead_code)]
mod calendar;

use std::sync::Arc;

use accountctl::db::{Database, Tx};
use accountctl::domain::{DeletionMode, LogoutReason, User, UserRef};
use accountctl::lifecycle::UserLifecycleHook;
use accountctl::password::Secret;
use accountctl::services::accounts::NewUser;
use accountctl::{App, Error, Result};
use predicates::prelude::*;

fn user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        email: Some(format!("{name}@example.com")),
        password: Some(Secret::new("a long password".into())),
        ..NewUser::default()
    }
}

/// A hook whose created and login work fails with a database error (its table is missing,
/// as after a rename), and which refuses nothing.
struct BrokenTableHook {
    db: Database,
}

#[async_trait::async_trait]
impl UserLifecycleHook for BrokenTableHook {
    fn name(&self) -> &'static str {
        "broken_table"
    }
    async fn on_user_created(&self, user: &User) -> Result<()> {
        let mut tx = self.db.begin().await?;
        tx.execute("INSERT INTO app_renamed_away (user_id) VALUES ($1)", &[user.id.into()])
            .await?;
        tx.commit().await
    }
    async fn on_user_login(&self, user: &User) -> Result<()> {
        self.on_user_created(user).await
    }
    async fn on_user_logout(&self, _: &User, _: LogoutReason) -> Result<()> {
        Ok(())
    }
    async fn on_user_deleted(&self, _: &User, _: DeletionMode, _: &mut Tx) -> Result<()> {
        Ok(())
    }
}

/// A hook that runs one statement through its delete transaction's handle and returns the
/// statement's error (so the delete fails with it when the database refuses).
struct RawSqlHook {
    sql: &'static str,
}

#[async_trait::async_trait]
impl UserLifecycleHook for RawSqlHook {
    fn name(&self) -> &'static str {
        "raw_sql"
    }
    async fn on_user_created(&self, _: &User) -> Result<()> {
        Ok(())
    }
    async fn on_user_login(&self, _: &User) -> Result<()> {
        Ok(())
    }
    async fn on_user_logout(&self, _: &User, _: LogoutReason) -> Result<()> {
        Ok(())
    }
    async fn on_user_deleted(&self, _: &User, _: DeletionMode, tx: &mut Tx) -> Result<()> {
        tx.execute(self.sql, &[]).await.map(|_| ())
    }
}

on_both_backends! {
    async fn the_plain_binary_cannot_drop_the_application_hooks_and_then_erase_a_legal_hold_user(ctx) {
        ctx.app_admin_bootstrap();
        ctx.app_admin_create("hold-ext");
        let before = ctx.dump().await;
        // No command removes a registered hook.
        ctx.cli().args(["hooks", "forget", "calendar", "--yes"]).assert().code(2);
        ctx.cli().args(["hooks", "forget", "calendars", "--kind", "merge", "--yes"]).assert().code(2);
        for args in [
            &["user", "delete", "hold-ext", "--mode", "gdpr", "--yes"][..],
            &["migrate"],
            &["bootstrap"],
            &["hooks", "replay"],
        ] {
            ctx.cli().args(args).assert().code(6).stderr(
                predicate::str::contains("calendar (lifecycle hook)")
                    .and(predicate::str::contains("the application \"calendar-example\""))
                    .and(predicate::str::contains("app_calendars (personal-data declaration)")),
            );
        }
        assert_eq!(ctx.dump().await, before, "nothing changed");
        // The application's own binary still honours its veto.
        ctx.app_admin().args(["user", "delete", "hold-ext", "--mode", "gdpr", "--yes"]).assert().code(4);
    }

    async fn a_database_migrated_by_an_application_before_the_registry_is_not_adopted(ctx) {
        ctx.app_admin_bootstrap();
        ctx.app_admin_create("hold-old");
        // What an application build from before the registry left: its migrations applied,
        // nothing of its own recorded.
        ctx.exec("DELETE FROM accountctl_hooks WHERE name IN ('calendar', 'calendars', 'app_calendars')").await.expect("forget");
        ctx.exec("UPDATE accountctl_registry SET application = NULL, generation = generation + 1").await.expect("unclaim");
        let before = ctx.dump().await;
        ctx.cli().args(["migrate"]).assert().code(6).stderr(predicate::str::contains("application migration 1"));
        ctx.cli().args(["user", "delete", "hold-old", "--mode", "gdpr", "--yes"]).assert().code(6);
        assert_eq!(ctx.dump().await, before, "nothing recorded, nobody erased");
        // The application's binary records its set again.
        ctx.app_admin().args(["migrate", "-o", "json"]).assert().success().stdout(predicate::str::contains("lifecycle:calendar"));
    }

    async fn personal_data_declarations_are_part_of_the_registry(ctx) {
        // An application that declares personal data but has no hook of its own.
        let declaring = ctx
            .app_with(App::builder().migrations(calendar::migrations()).personal_data(calendar::personal_data()))
            .await;
        let report = declaring.migrate().await.expect("migrate");
        assert!(report.hooks_recorded.contains(&"personal_data:app_calendars".to_owned()), "{:?}", report.hooks_recorded);
        common::bootstrap_admin(&declaring).await;
        declaring.accounts().create(user("pia"), false).await.expect("the declaring binary writes");
        // A binary without the declaration would purge without erasing those rows: refused.
        let plain = ctx.app().await;
        let missing = plain.missing_hooks().await.expect("missing");
        assert!(missing.iter().any(|m| m.to_string() == "app_calendars (personal-data declaration)"), "{missing:?}");
        let err = plain.accounts().delete(&UserRef::Username("pia".into()), DeletionMode::GdprPurge).await.expect_err("refused");
        assert!(matches!(err, Error::MissingHooks(_)), "{err}");
        assert_eq!(err.exit_code(), 6);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username = 'pia'").await, 1);
    }

    async fn a_long_running_process_stops_writing_at_its_next_transaction_after_an_application_migrates(ctx) {
        let server = ctx.app().await;
        common::bootstrap_admin(&server).await;
        server.accounts().create(user("early"), false).await.expect("writes before");
        // The application's binary migrates while the server runs.
        ctx.app_admin().args(["migrate"]).assert().success();
        let err = server.accounts().create(user("late"), false).await.expect_err("refused after");
        assert!(matches!(err, Error::MissingHooks(_)), "{err}");
        let err = server.auth().login("early", &Secret::new("a long password".into()), true).await.expect_err("no session");
        assert!(matches!(err, Error::MissingHooks(_)), "{err}");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username = 'late'").await, 0);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions").await, 0);
        // Reads go on.
        assert!(server.accounts().show(&UserRef::Username("early".into())).await.is_ok());
    }

    async fn a_retired_hook_leaves_the_registry_only_through_the_build_that_declares_it(ctx) {
        ctx.app_admin().args(["migrate"]).assert().success();
        ctx.cli().args(["user", "create", "zed", "--random-password"]).assert().code(6);
        // The next application build drops its calendar hook and says so in its code.
        let retiring = ctx
            .app_with(calendar::wire_without_calendar_hook(App::builder()).retired_hook("calendar").program_name("calendar-admin"))
            .await;
        assert!(matches!(retiring.accounts().create(user("early"), false).await, Err(Error::MissingHooks(_))), "not before its migrate");
        let report = accountctl::lifecycle::with_actor("ops-anna".into(), retiring.migrate()).await.expect("migrate");
        assert_eq!(report.hooks_retired, ["lifecycle:calendar"]);
        let audited = ctx.text_pairs("SELECT actor, fields FROM audit_events WHERE event = 'registry.retired'").await;
        assert_eq!(audited.len(), 1, "{audited:?}");
        assert_eq!(audited[0].0, "ops-anna");
        assert!(audited[0].1.contains("calendar") && audited[0].1.contains("calendar-admin"), "{}", audited[0].1);
        common::bootstrap_admin(&retiring).await;
        retiring.accounts().create(user("after"), false).await.expect("writes after its migrate");
        // The plain binary is still another application's.
        ctx.cli().args(["user", "create", "zed", "--random-password"]).assert().code(6).stderr(predicate::str::contains("calendar-example"));
        ctx.cli().args(["hooks", "list", "-o", "json"]).assert().success().stdout(predicate::str::contains("\"calendar\"").not());
    }

    async fn a_crash_between_a_batch_commit_and_its_hooks_loses_no_hook_work(ctx) {
        let bin = common::example_bin("durable_hooks");
        let run = |args: &[&str], marker: &std::path::Path| {
            let mut cmd = assert_cmd::Command::new(&bin);
            cmd.env("DATABASE_URL", &ctx.url)
                .env("ACCOUNTCTL_ACTOR", "tester")
                .env("XDG_CONFIG_HOME", ctx.dir.path().join("xdg"))
                .env("CRASH_MARKER", marker)
                .current_dir(ctx.dir.path())
                .args(args);
            cmd
        };
        let marker = ctx.dir.path().join("crashed");
        std::fs::write(&marker, "").expect("no crash while bootstrapping");
        run(&["bootstrap", "--admin-username", "admin", "--admin-email", "admin@example.com", "--random-password"], &marker).assert().success();
        std::fs::remove_file(&marker).expect("arm the crash");
        let csv = ctx.dir.path().join("users.csv");
        let mut text = String::from("username,email\n");
        for i in 0..25 {
            text.push_str(&format!("crash{i},crash{i}@example.com\n"));
        }
        std::fs::write(&csv, text).expect("csv");
        let out = run(&["user", "import", csv.to_str().expect("path"), "--batch-size", "10"], &marker).output().expect("run");
        assert!(!out.status.success(), "the hook killed the import");
        let created = ctx.count("SELECT COUNT(*) FROM users WHERE username LIKE 'crash%'").await;
        assert!(created >= 10, "a batch was committed before the crash: {created}");
        assert!(ctx.count("SELECT COUNT(*) FROM owed_hook_work").await >= 1, "its hook work is recorded as owed");
        // As if the crash had come before every hook: the shipped hooks' work is gone too.
        ctx.exec("DELETE FROM folders WHERE user_id IN (SELECT id FROM users WHERE username LIKE 'crash%')").await.expect("folders");
        ctx.exec("DELETE FROM audit_events WHERE event = 'user.created' AND subject_user_id IN (SELECT id FROM users WHERE username LIKE 'crash%')").await.expect("audit");
        run(&["hooks", "owed"], &marker).assert().success().stdout(predicate::str::contains("created"));
        // Re-running the same import completes what the crash left, then skips the existing rows.
        run(&["user", "import", csv.to_str().expect("path"), "--batch-size", "10", "--on-conflict", "skip"], &marker)
            .assert()
            .success()
            .stderr(predicate::str::contains("completed hook work an earlier run left owed"));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username LIKE 'crash%'").await, 25);
        for (what, sql) in [
            ("a home folder", "SELECT COUNT(*) FROM users u WHERE u.username LIKE 'crash%' AND NOT EXISTS (SELECT 1 FROM folders f WHERE f.user_id = u.id AND f.is_home)"),
            ("a user.created row", "SELECT COUNT(*) FROM users u WHERE u.username LIKE 'crash%' AND NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.subject_user_id = u.id AND a.event = 'user.created')"),
            ("the application hook's work", "SELECT COUNT(*) FROM users u WHERE u.username LIKE 'crash%' AND NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.subject_user_id = u.id AND a.event = 'welcome.sent')"),
        ] {
            assert_eq!(ctx.count(sql).await, 0, "every user has {what}");
        }
        assert_eq!(ctx.count("SELECT COUNT(*) FROM owed_hook_work").await, 0, "nothing left owed");
    }

    async fn a_failing_created_or_login_hook_never_fails_the_sign_in_or_the_create(ctx) {
        let app = ctx.app_with(App::builder().hook_with(|db| Arc::new(BrokenTableHook { db: db.clone() }))).await;
        app.migrate().await.expect("record the hook");
        common::bootstrap_admin(&app).await;
        let created = app.accounts().create(user("flo"), false).await.expect("the create stands");
        assert!(created.created);
        assert_eq!(created.hook_failures.len(), 1, "{:?}", created.hook_failures);
        assert_eq!(created.hook_failures[0].hook, "broken_table");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM folders f JOIN users u ON u.id = f.user_id WHERE u.username = 'flo'").await, 1, "the other hooks ran");
        // The failing hook's work stays owed, for that hook only.
        let owed = app.hook_work().owed().await.expect("owed");
        let flo: Vec<_> = owed.iter().filter(|w| w.user_ids == [created.user.id]).collect();
        assert_eq!(flo.len(), 1, "{owed:?}");
        assert_eq!(flo[0].hook.as_deref(), Some("broken_table"));
        assert_eq!(owed.len(), 2, "the bootstrap admin's too: {owed:?}");
        // A sign-in stands too, and both failures are in the audit trail.
        let login = app.auth().login("flo", &Secret::new("a long password".into()), true).await.expect("signs in");
        assert!(login.session.is_some());
        assert_eq!(login.hook_failures.len(), 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'hook.failed'").await, 3, "bootstrap admin's, flo's create, flo's login");
        let fields = ctx.text_pairs("SELECT event, fields FROM audit_events WHERE event = 'hook.failed'").await;
        assert!(fields.iter().all(|(_, f)| !f.contains("flo")), "no personal data in the audit trail: {fields:?}");
        // Once the table is back, a replay completes the owed work.
        ctx.exec("CREATE TABLE app_renamed_away (user_id TEXT)").await.expect("table");
        let report = app.hook_work().replay().await.expect("replay");
        assert_eq!(report.completed, 2, "{report:?}");
        assert!(app.hook_work().owed().await.expect("owed").is_empty());
        assert!(ctx.count("SELECT COUNT(*) FROM app_renamed_away").await >= 1);
    }

    async fn raw_sql_through_the_transaction_handle_cannot_break_an_invariant(ctx) {
        ctx.bootstrap_cli();
        ctx.cli().args(["user", "create", "bob", "--random-password"]).assert().success();
        ctx.cli().args(["user", "create", "fed", "--external"]).assert().success();
        ctx.cli().args(["gdpr", "request", "bob", "--yes"]).assert().success();
        let before = ctx.dump().await;
        for sql in [
            "UPDATE users SET role = 'user' WHERE role = 'admin'",
            "UPDATE users SET active = TRUE WHERE username = 'bob'",
            "DELETE FROM memberships WHERE workspace_id IN (SELECT id FROM workspaces WHERE is_root)",
            "UPDATE users SET role = 'admin' WHERE username = 'fed'",
            "INSERT INTO memberships (user_id, workspace_id, role_id, created_at) SELECT u.id, w.id, r.id, '2026-01-01T00:00:00+00:00' FROM users u, workspaces w JOIN roles r ON r.workspace_id = w.id WHERE u.username = 'fed' AND w.is_root",
            "UPDATE users SET is_external = TRUE WHERE username = 'admin'",
            "COMMIT",
            "ALTER TABLE users DROP CONSTRAINT users_external_never_admin",
            "SELECT 1; UPDATE users SET role = 'user'",
        ] {
            let app = ctx.app_with(App::builder().hook(Arc::new(RawSqlHook { sql }))).await;
            app.migrate().await.expect("record the hook");
            let err = app.accounts().delete(&UserRef::Username("fed".into()), DeletionMode::AdminDelete).await.expect_err(sql);
            assert!(matches!(err, Error::Hook { .. } | Error::Vetoed { .. }), "{sql}: {err}");
            // Straight through a write transaction of the library too.
            let mut tx = app.db().begin().await.expect("begin");
            assert!(tx.execute(sql, &[]).await.is_err(), "{sql}");
            tx.rollback().await.expect("rollback");
            // Forget the test hook again so the next one is the only one.
            ctx.exec("DELETE FROM accountctl_hooks WHERE name = 'raw_sql'").await.expect("reset");
        }
        // A read-only transaction does not write, even through a query.
        let app = ctx.app().await;
        let mut read = app.db().begin_read().await.expect("read");
        assert!(read.fetch_all("DELETE FROM users RETURNING id", &[]).await.is_err());
        read.end().await.expect("end");
        let after = ctx.dump().await;
        let strip = |d: &str| d.lines().filter(|l| !l.starts_with("accountctl_")).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(strip(&after), strip(&before), "nothing changed");
    }

    async fn a_name_never_stands_for_another_objects_id(ctx) {
        ctx.bootstrap_cli();
        ctx.acme_workspace_cli();
        let out = ctx.cli().args(["user", "create", "victim", "--random-password", "-o", "json"]).output().expect("run");
        let victim: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let id = victim["id"].as_str().expect("id").to_owned();
        let prefix = &id[..8];
        let long = &id[..13];
        // Names shaped like an id prefix or an option are refused everywhere.
        for name in [prefix, long, "-rf"] {
            ctx.cli().args(["user", "create", name, "--random-password"]).assert().code(2);
            ctx.cli().args(["workspace", "create", name, "--type", "team"]).assert().code(2);
            ctx.cli().args(["role", "create", name, "--workspace", "Acme", "--capabilities", "docs.read"]).assert().code(2);
        }
        // One created before the rule (straight into the database) is ambiguous, not the victim.
        let person = uuid::Uuid::now_v7();
        ctx.exec(&format!("INSERT INTO persons (id, created_at, updated_at) VALUES ('{person}', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')")).await.expect("person");
        ctx.exec(&format!("INSERT INTO users (id, person_id, username, created_at, updated_at) VALUES ('{}', '{person}', '{prefix}', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')", uuid::Uuid::now_v7())).await.expect("impostor");
        let before = ctx.dump().await;
        ctx.cli().args(["role", "assign", prefix, "admin", "--yes"]).assert().code(2).stderr(predicate::str::contains("ambiguous").and(predicate::str::contains(id.as_str())));
        ctx.cli().args(["user", "delete", prefix, "--mode", "gdpr", "--yes"]).assert().code(2);
        assert_eq!(ctx.dump().await, before, "nobody promoted, nobody erased");
        // The whole id still names the victim.
        ctx.cli().args(["user", "show", &id]).assert().success().stdout(predicate::str::contains("victim"));
    }

    async fn external_users_never_reach_the_root_workspace_and_its_role_grants_everything(ctx) {
        ctx.bootstrap_cli();
        ctx.acme_workspace_cli();
        let before = ctx.dump().await;
        ctx.cli().args(["user", "create", "fedx", "--external", "--provider", "oidc", "--subject", "s1", "--workspace", "root", "--role", "root"]).assert().code(4);
        assert_eq!(ctx.dump().await, before);
        ctx.cli().args(["user", "create", "fedy", "--external"]).assert().success();
        ctx.cli().args(["role", "assign", "fedy", "root", "--workspace", "root", "--yes"]).assert().code(4).stderr(predicate::str::contains("root workspace"));
        // A root member may do anything in any workspace.
        let app = ctx.app().await;
        let admin = app.accounts().show(&UserRef::Username("admin".into())).await.expect("admin").user.id;
        let acme = app.workspace_id("Acme").await.expect("acme");
        assert!(app.authz().allows(app.db(), admin, acme, "docs.write").await.expect("allows"));
        assert!(app.authz().allows(app.db(), admin, acme, "billing.manage").await.expect("allows"));
    }

    async fn an_application_replaces_or_removes_a_shipped_merge_handler(ctx) {
        struct OwnIdentities;
        #[async_trait::async_trait]
        impl accountctl::services::merge::MergeHandler for OwnIdentities {
            fn name(&self) -> &'static str {
                "external_identities"
            }
            async fn plan(&self, _: &accountctl::services::merge::MergeContext, _: &mut Tx) -> Result<Vec<accountctl::services::merge::PlanItem>> {
                Ok(vec![accountctl::services::merge::PlanItem { handler: self.name(), kind: "own_identities", count: 0, collisions: vec![] }])
            }
            async fn merge(&self, ctx: &accountctl::services::merge::MergeContext, tx: &mut Tx) -> Result<()> {
                tx.execute("DELETE FROM external_identities WHERE user_id = $1", &[ctx.remove.id.into()]).await.map(|_| ())
            }
        }
        let app = ctx.app_with(App::builder().replace_merge_handler(Arc::new(OwnIdentities))).await;
        assert_eq!(app.merge_handler_names(), ["core_data", "passports", "external_identities"]);
        common::bootstrap_admin(&app).await;
        app.accounts().create(user("keep"), false).await.expect("keep");
        app.accounts().create(NewUser { username: "gone".into(), external: true, identity: Some(("oidc".into(), "g1".into())), ..NewUser::default() }, false).await.expect("gone");
        let outcome = app.merger().merge(&UserRef::Username("keep".into()), &UserRef::Username("gone".into()), Default::default()).await.expect("merge");
        assert!(outcome.plan.items.iter().any(|i| i.kind == "own_identities"), "the replacement ran");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM external_identities").await, 0, "its way, not the shipped one's");
        // Removing one retires it from the registry at that build's migrate.
        let without = ctx.app_with(App::builder().without_merge_handler("external_identities")).await;
        assert_eq!(without.merge_handler_names(), ["core_data", "passports"]);
        let report = without.migrate().await.expect("migrate");
        assert_eq!(report.hooks_retired, ["merge:external_identities"]);
        let err = App::builder().database(ctx.db.clone()).without_merge_handler("nope").build().await.expect_err("unknown handler");
        assert!(matches!(err, Error::Invalid(ref m) if m.contains("nope")), "{err}");
    }
}
