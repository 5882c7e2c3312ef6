//! Conformance tests of the shared library: schema invariants, the hook dispatcher's
//! contract, deletion, login and sessions. Each runs on SQLite and on PostgreSQL.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use accountctl::db::{SchemaStatus, Tx};
use accountctl::domain::UserRef;
use accountctl::domain::{DeletionMode, InstanceRole, LogoutReason, User};
use accountctl::lifecycle::UserLifecycleHook;
use accountctl::password::Secret;
use accountctl::services::accounts::NewUser;
use accountctl::services::authz::{InvalidationListener, ListenerEvent};
use accountctl::{App, Error};

const PASSWORD: &str = "correct horse battery";

fn new_user(name: &str) -> NewUser {
    NewUser {
        username: name.into(),
        email: Some(format!("{name}@example.com")),
        password: Some(Secret::new(PASSWORD.into())),
        ..NewUser::default()
    }
}

async fn create(app: &App, name: &str) -> uuid::Uuid {
    app.accounts()
        .create(new_user(name), false)
        .await
        .expect("create user")
        .user
        .id
}

fn by_name(name: &str) -> UserRef {
    UserRef::Username(name.into())
}

/// A hook that fails on chosen events and records every event it sees.
#[derive(Default)]
struct ProbeHook {
    fail_created: bool,
    fail_login: bool,
    fail_deleted: bool,
    /// The hook's name (default `probe`): names must be unique in one dispatcher.
    label: Option<&'static str>,
    seen: Mutex<Vec<String>>,
}

impl ProbeHook {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }
    fn note(&self, what: String) {
        self.seen.lock().expect("lock").push(what);
    }
}

#[async_trait::async_trait]
impl UserLifecycleHook for ProbeHook {
    fn name(&self) -> &'static str {
        self.label.unwrap_or("probe")
    }
    async fn on_user_created(&self, user: &User) -> accountctl::Result<()> {
        self.note(format!("created {}", user.username));
        if self.fail_created {
            Err(Error::Internal("probe refuses created".into()))
        } else {
            Ok(())
        }
    }
    async fn on_user_login(&self, user: &User) -> accountctl::Result<()> {
        self.note(format!(
            "login {} first={}",
            user.username,
            user.last_login_at.is_none()
        ));
        if self.fail_login {
            Err(Error::Internal("probe refuses login".into()))
        } else {
            Ok(())
        }
    }
    async fn on_user_logout(&self, user: &User, reason: LogoutReason) -> accountctl::Result<()> {
        self.note(format!("logout {} {reason}", user.username));
        Ok(())
    }
    async fn on_user_deleted(&self, user: &User, mode: DeletionMode, _tx: &mut Tx) -> accountctl::Result<()> {
        self.note(format!("deleted {} {mode}", user.username));
        if self.fail_deleted {
            Err(Error::Internal("probe refuses delete".into()))
        } else {
            Ok(())
        }
    }
}

async fn app_with(ctx: &common::Ctx, hooks: Vec<Arc<dyn UserLifecycleHook>>) -> App {
    ctx.app_with(hooks.into_iter().fold(App::builder(), |b, h| b.hook(h)))
        .await
}

on_both_backends! {
    async fn bootstrap_is_idempotent_and_never_resets_a_password(ctx) {
        let app = ctx.app().await;
        let first = app.bootstrap().run(Some(new_user("admin"))).await.expect("bootstrap");
        assert!(first.root_workspace_created);
        assert_eq!(first.admin, accountctl::domain::AdminOutcome::Created);
        let hash_before = ctx.count("SELECT COUNT(*) FROM users WHERE role = 'admin'").await;
        let mut other = new_user("second-admin");
        other.password = Some(Secret::new("another password".into()));
        let again = app.bootstrap().run(Some(other)).await.expect("bootstrap again");
        assert!(!again.root_workspace_created);
        assert_eq!(again.admin, accountctl::domain::AdminOutcome::Exists);
        assert!(again.migrations_applied.is_empty());
        assert_eq!(hash_before, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM workspaces").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships").await, 1, "the admin is a member of the root workspace");
        // The first admin's password still works, the would-be second one does not exist.
        app.auth().login("admin", &Secret::new(PASSWORD.into()), false).await.expect("original password still valid");
    }

    async fn the_database_rejects_an_external_admin_even_through_raw_sql(ctx) {
        let app = ctx.app().await;
        let id = create(&app, "fed").await;
        app.accounts().convert(&UserRef::Id(id), true).await.expect("to external");
        let err = ctx.exec(&format!("UPDATE users SET role = 'admin' WHERE id = '{id}'")).await.expect_err("external admin");
        assert!(matches!(err, Error::Refused(_)), "{err:?}");
        let err = ctx.exec(&format!("UPDATE users SET storage_used_bytes = 5 WHERE id = '{id}'")).await.expect_err("external storage");
        assert!(matches!(err, Error::Refused(_)), "{err:?}");
        let err = app.accounts().set_instance_role(&UserRef::Id(id), InstanceRole::Admin).await.expect_err("service refuses too");
        assert_eq!(err.exit_code(), 4);
        assert!(err.to_string().contains("convert"), "{err}");
    }

    async fn usernames_and_emails_are_unique_regardless_of_case(ctx) {
        let app = ctx.app().await;
        create(&app, "Alice").await;
        let mut dup = new_user("alice");
        dup.email = Some("other@example.com".into());
        let err = app.accounts().create(dup, false).await.expect_err("same username, other case");
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        let mut dup_email = new_user("alice2");
        dup_email.email = Some("ALICE@Example.com".into());
        let err = app.accounts().create(dup_email, false).await.expect_err("same email, other case");
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        // Even raw SQL cannot store an email that is not lower-case.
        let err = ctx.exec("UPDATE passports SET value = 'ALICE@EXAMPLE.COM'").await.expect_err("check");
        assert!(matches!(err, Error::Refused(_)), "{err:?}");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, 1, "failed creates left nothing behind");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM persons").await, 1);
    }

    async fn there_is_one_root_workspace_and_it_cannot_be_deleted(ctx) {
        let app = ctx.app().await;
        app.bootstrap().run(None).await.expect("bootstrap");
        let err = ctx
            .exec("INSERT INTO workspaces (id, name, type_id, is_root, created_at) SELECT '00000000-0000-4000-8000-000000000001', 'root2', type_id, TRUE, created_at FROM workspaces")
            .await
            .expect_err("second root");
        assert!(matches!(err, Error::Conflict(_)), "{err:?}");
        let err = ctx.exec("DELETE FROM workspaces").await.expect_err("root undeletable");
        assert!(matches!(err, Error::Refused(_)), "{err:?}");
        let err = ctx.exec("DELETE FROM roles").await.expect_err("root role undeletable");
        assert!(matches!(err, Error::Refused(_)), "{err:?}");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM roles").await, 1);
    }

    async fn every_foreign_key_to_users_states_its_on_delete_policy(ctx) {
        let sql = match ctx.backend {
            common::Backend::Postgres | common::Backend::PgBouncer => "SELECT COUNT(*) FROM information_schema.referential_constraints rc \
                JOIN information_schema.constraint_column_usage cu ON cu.constraint_name = rc.constraint_name \
                WHERE cu.table_name = 'users' AND rc.delete_rule = 'NO ACTION'",
            common::Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master m, pragma_foreign_key_list(m.name) f \
                WHERE m.type = 'table' AND f.\"table\" = 'users' AND f.on_delete = 'NO ACTION'",
        };
        assert_eq!(ctx.count(sql).await, 0);
        let total = match ctx.backend {
            common::Backend::Postgres | common::Backend::PgBouncer => "SELECT COUNT(*) FROM information_schema.constraint_column_usage WHERE table_name = 'users' AND column_name = 'id' AND constraint_name LIKE '%fkey'",
            common::Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master m, pragma_foreign_key_list(m.name) f WHERE m.type = 'table' AND f.\"table\" = 'users'",
        };
        assert!(ctx.count(total).await >= 8, "the foreign keys to users were found at all");
    }

    async fn a_migration_edited_after_it_was_applied_is_refused(ctx) {
        let app = ctx.app().await;
        let edited = match ctx.backend {
            common::Backend::Sqlite => "UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 20261122000002",
            common::Backend::Postgres | common::Backend::PgBouncer => "UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 20261122000002",
        };
        ctx.exec(edited).await.expect("tamper");
        let err = app.migrate().await.expect_err("refused");
        assert_eq!(err.exit_code(), 6);
        assert!(err.to_string().contains("20261122000002") && err.to_string().contains("changed after it was applied"), "{err}");
    }

    async fn concurrent_migrations_all_succeed_and_apply_each_migration_once(ctx) {
        ctx.exec("DROP TABLE accountctl_hooks").await.expect("drop");
        ctx.exec("DELETE FROM _sqlx_migrations WHERE version = 20261202000001").await.expect("forget");
        let app = ctx.app().await;
        let runs = futures::future::join_all((0..4).map(|_| {
            let app = app.clone();
            async move { app.migrate().await }
        }))
        .await;
        let applied: Vec<Vec<i64>> = runs.into_iter().map(|r| r.expect("every run succeeds").applied).collect();
        assert_eq!(applied.iter().filter(|a| a.as_slice() == [20261202000001]).count(), 1, "{applied:?}");
        assert_eq!(applied.iter().filter(|a| a.is_empty()).count(), 3, "{applied:?}");
    }

    async fn a_schema_that_is_behind_is_refused_with_a_pointer_to_migrate(ctx) {
        let app = ctx.app().await;
        assert_eq!(app.schema_status().await.expect("status"), SchemaStatus::Current);
        ctx.exec("DELETE FROM _sqlx_migrations").await.expect("forget migrations");
        let err = app.ensure_schema_current().await.expect_err("behind");
        assert_eq!(err.exit_code(), 6);
        assert!(err.to_string().contains("run `accountctl migrate`"), "{err}");
    }

    async fn a_hook_failing_on_delete_leaves_user_sessions_and_folder_intact(ctx) {
        let probe = Arc::new(ProbeHook { fail_deleted: true, ..ProbeHook::default() });
        let app = app_with(&ctx, vec![probe.clone()]).await;
        create(&app, "admin0").await;
        app.accounts().set_instance_role(&by_name("admin0"), InstanceRole::Admin).await.expect("admin");
        let id = create(&app, "bob").await;
        let login = app.auth().login("bob", &Secret::new(PASSWORD.into()), true).await.expect("login");
        assert!(login.session.is_some());
        for mode in [DeletionMode::AdminDelete, DeletionMode::GdprPurge] {
            let err = app.accounts().delete(&UserRef::Id(id), mode).await.expect_err("hook aborts");
            assert!(matches!(err, Error::Hook { hook: "probe", .. }), "{err:?}");
        }
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM users WHERE id = '{id}' AND deleted_at IS NULL AND active")).await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, 1, "the session was not revoked");
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM folders WHERE user_id = '{id}'")).await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event IN ('user.deleted', 'user.sessions_revoked_on_delete')").await, 0);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM user_tombstones").await, 0);
    }

    async fn created_and_login_hook_errors_are_logged_and_swallowed(ctx) {
        let failing = Arc::new(ProbeHook { fail_created: true, fail_login: true, ..ProbeHook::default() });
        let after = Arc::new(ProbeHook { label: Some("probe_after"), ..ProbeHook::default() });
        let app = app_with(&ctx, vec![failing.clone(), after.clone()]).await;
        let id = create(&app, "carol").await;
        let outcome = app.auth().login("carol", &Secret::new(PASSWORD.into()), false).await.expect("login despite hook error");
        assert!(outcome.first_login);
        assert_eq!(after.seen(), vec!["created carol".to_string(), "login carol first=true".to_string()], "later hooks still ran");
        let logs = common::captured_logs();
        assert!(logs.contains("on_user_created failed") && logs.contains(&id.to_string()), "the error was logged with the user id");
        assert!(logs.contains("on_user_login failed"));
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM users WHERE id = '{id}' AND last_login_at IS NOT NULL")).await, 1);
    }

    async fn hooks_fire_in_registration_order_with_login_before_the_stamp(ctx) {
        let app = ctx.app().await;
        assert_eq!(app.lifecycle().hook_names(), vec!["audit", "home_folder", "authz_cache", "session_revocation", "external_identity"]);
        let probe = Arc::new(ProbeHook::default());
        let app = app_with(&ctx, vec![probe.clone()]).await;
        create(&app, "dave").await;
        app.auth().login("dave", &Secret::new(PASSWORD.into()), false).await.expect("first login");
        app.auth().login("dave@example.com", &Secret::new(PASSWORD.into()), false).await.expect("second login by email");
        assert_eq!(probe.seen(), vec!["created dave", "login dave first=true", "login dave first=false"]);
    }

    async fn spawned_logout_work_is_drained(ctx) {
        let probe = Arc::new(ProbeHook::default());
        let app = app_with(&ctx, vec![probe.clone()]).await;
        create(&app, "erin").await;
        for _ in 0..3 {
            app.auth().login("erin", &Secret::new(PASSWORD.into()), true).await.expect("login");
        }
        let changed = app.accounts().disable(&by_name("erin")).await.expect("disable");
        assert!(changed.changed && !changed.user.active);
        assert_eq!(app.lifecycle().drain(Duration::from_secs(10)).await, 0);
        assert_eq!(probe.seen().last().map(String::as_str), Some("logout erin account_disabled"));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, 0, "every session revoked");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoke_reason = 'account_disabled'").await, 3);
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.logout' AND fields LIKE '%account_disabled%'").await,
            1,
            "one logout per logical revoke call"
        );
    }

    async fn admin_delete_trashes_and_restore_brings_the_user_back_intact(ctx) {
        let app = ctx.app().await;
        let id = create(&app, "frank").await;
        let first_page = app.accounts().list(&accountctl::domain::UserFilter::default()).await.expect("list");
        assert!(first_page.iter().any(|u| u.id == id), "the default filter lists the first page: {first_page:?}");
        app.auth().login("frank", &Secret::new(PASSWORD.into()), true).await.expect("login");
        let deleted = app.accounts().delete(&by_name("frank"), DeletionMode::AdminDelete).await.expect("trash");
        assert!(deleted.purge_after.is_some());
        let listed = app.accounts().list(&accountctl::domain::UserFilter { limit: 10, ..Default::default() }).await.expect("list");
        assert!(listed.iter().all(|u| u.id != id), "hidden from the list");
        let trashed = app.accounts().list(&accountctl::domain::UserFilter { limit: 10, trashed: true, ..Default::default() }).await.expect("list trash");
        assert_eq!(trashed.len(), 1);
        let err = app.auth().login("frank", &Secret::new(PASSWORD.into()), false).await.expect_err("trashed cannot log in");
        assert!(matches!(err, Error::AuthenticationFailed));
        let err = app.accounts().create(new_user("frank"), false).await.expect_err("username stays reserved");
        assert!(matches!(err, Error::Conflict(_)));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, 0);
        app.accounts().restore(&by_name("frank")).await.expect("restore");
        app.auth().login("frank", &Secret::new(PASSWORD.into()), false).await.expect("restored user logs in");
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM folders WHERE user_id = '{id}'")).await, 1);
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM passports WHERE user_id = '{id}'")).await, 1);
    }

    async fn gdpr_purge_erases_personal_data_and_leaves_a_tombstone(ctx) {
        let app = ctx.app().await;
        let mut new = new_user("gina");
        new.given_name = Some("Ginevra".into());
        new.family_name = Some("Zabriskie".into());
        new.phone = Some("+4915112345678".into());
        let id = app.accounts().create(new, false).await.expect("create").user.id;
        app.auth().login("gina", &Secret::new(PASSWORD.into()), true).await.expect("login");
        app.accounts().delete(&UserRef::Id(id), DeletionMode::GdprPurge).await.expect("purge");
        let dump = ctx.dump().await;
        for needle in ["gina", "Ginevra", "Zabriskie", "4915112345678", "My Folder"] {
            assert!(!dump.to_lowercase().contains(&needle.to_lowercase()), "{needle} survived:\n{dump}");
        }
        assert!(dump.contains(&id.to_string()), "the pseudonymous id remains (tombstone, audit)");
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM user_tombstones WHERE user_id = '{id}' AND mode = 'gdpr_purge'")).await, 1);
    }

    async fn the_last_active_admin_can_be_neither_deleted_nor_disabled_nor_demoted(ctx) {
        let app = ctx.app().await;
        app.bootstrap().run(Some(new_user("root-admin"))).await.expect("bootstrap");
        let who = by_name("root-admin");
        for err in [
            app.accounts().delete(&who, DeletionMode::GdprPurge).await.map(drop).expect_err("delete"),
            app.accounts().disable(&who).await.map(drop).expect_err("disable"),
            app.accounts().set_instance_role(&who, InstanceRole::User).await.map(drop).expect_err("demote"),
        ] {
            assert!(matches!(err, Error::Refused(_)), "{err:?}");
        }
        create(&app, "helper").await;
        app.accounts().set_instance_role(&by_name("helper"), InstanceRole::Admin).await.expect("second admin");
        app.accounts().set_instance_role(&who, InstanceRole::User).await.expect("now demotable");
    }

    async fn login_refuses_wrong_unknown_disabled_and_passwordless_alike(ctx) {
        let app = ctx.app().await;
        create(&app, "ivan").await;
        let mut nopw = new_user("nopw");
        nopw.password = None;
        app.accounts().create(nopw, false).await.expect("no password");
        let good = Secret::new(PASSWORD.into());
        app.auth().login("ivan", &good, false).await.expect("right password");
        for (who, pw) in [("ivan", "wrong password"), ("nobody", PASSWORD), ("nopw", PASSWORD), ("not an email@", PASSWORD)] {
            let err = app.auth().login(who, &Secret::new(pw.into()), false).await.expect_err(who);
            assert!(matches!(err, Error::AuthenticationFailed), "{who}: {err:?}");
        }
        app.accounts().disable(&by_name("ivan")).await.expect("disable");
        let err = app.auth().login("ivan", &good, false).await.expect_err("disabled");
        assert!(matches!(err, Error::AuthenticationFailed));
    }

    async fn a_converted_external_user_gets_its_home_folder_at_first_login_only_once(ctx) {
        let app = ctx.app().await;
        let created = app
            .accounts()
            .create(NewUser { username: "ext".into(), email: Some("ext@example.com".into()), external: true, identity: Some(("oidc".into(), "sub-1".into())), ..NewUser::default() }, false)
            .await
            .expect("external user");
        let id = created.user.id;
        assert!(created.user.is_external && !created.user.has_password);
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM folders WHERE user_id = '{id}'")).await, 0, "no home folder for external users");
        let err = app.accounts().set_instance_role(&UserRef::Id(id), InstanceRole::Admin).await.expect_err("external admin");
        assert!(matches!(err, Error::Refused(_)));
        app.accounts().convert(&UserRef::Id(id), false).await.expect("to internal");
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM folders WHERE user_id = '{id}'")).await, 0, "conversion fires no event");
        app.accounts().set_password(&UserRef::Id(id), Secret::new(PASSWORD.into())).await.expect("password");
        app.auth().login("ext", &Secret::new(PASSWORD.into()), false).await.expect("first login");
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM folders WHERE user_id = '{id}' AND name = 'My Folder - ext'")).await, 1);
        app.auth().login("ext", &Secret::new(PASSWORD.into()), false).await.expect("second login");
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM folders WHERE user_id = '{id}'")).await, 1, "idempotent");
        app.accounts().set_instance_role(&UserRef::Id(id), InstanceRole::Admin).await.expect("admin as a second step");
        let err = app.accounts().convert(&UserRef::Id(id), true).await.expect_err("admin cannot become external");
        assert!(matches!(err, Error::Refused(_)));
    }

    async fn a_cli_delete_reaches_a_listener_and_a_rolled_back_one_sends_nothing(ctx) {
        let app = ctx.app().await;
        let kept = create(&app, "kept").await;
        let gone = create(&app, "gone").await;
        let mut listener = InvalidationListener::start(&ctx.db).await.expect("listen");
        // A delete that a hook aborts publishes nothing.
        let failing = app_with(&ctx, vec![Arc::new(ProbeHook { fail_deleted: true, ..ProbeHook::default() })]).await;
        failing.accounts().delete(&UserRef::Id(kept), DeletionMode::GdprPurge).await.expect_err("rolled back");
        // The real CLI, in another process.
        ctx.cli().args(["user", "delete", "gone", "--mode", "gdpr", "--yes"]).assert().success();
        let got = match tokio::time::timeout(Duration::from_secs(10), listener.recv()).await.expect("in time").expect("invalidation") {
            ListenerEvent::Invalidated(got) => got,
            other => panic!("no reconnect expected: {other:?}"),
        };
        assert_eq!(got.user_id, gone, "the first invalidation heard is the committed delete, not the rolled-back one");
        assert_eq!(got.reason, "gdpr_purge");
        let more = tokio::time::timeout(Duration::from_millis(700), listener.recv()).await;
        assert!(more.is_err(), "nothing else was published: {more:?}");
        listener.close().await;
    }

    async fn set_password_revokes_sessions_and_weak_hashes_are_upgraded_on_login(ctx) {
        let app = ctx.app().await;
        let id = create(&app, "judy").await;
        app.auth().login("judy", &Secret::new(PASSWORD.into()), true).await.expect("login");
        app.accounts().set_password(&by_name("judy"), Secret::new("a new password".into())).await.expect("set");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoke_reason = 'password_changed'").await, 1);
        let err = app.accounts().set_password(&by_name("judy"), Secret::new(String::new())).await.expect_err("empty");
        assert_eq!(err.exit_code(), 2);
        // A hash with weaker parameters (as an import might bring) is replaced at login.
        use argon2::password_hash::PasswordHasher;
        let weak = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon2::Params::new(4096, 1, 1, None).expect("params"));
        let phc = weak.hash_password(b"a new password").expect("hash").to_string();
        ctx.exec(&format!("UPDATE users SET password_hash = '{phc}' WHERE id = '{id}'")).await.expect("weak hash");
        let outcome = app.auth().login("judy", &Secret::new("a new password".into()), false).await.expect("login with weak hash");
        assert!(outcome.rehashed);
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM users WHERE id = '{id}' AND password_hash LIKE '$argon2id$v=19$m=19456,t=2,p=1$%'")).await, 1);
    }
}
