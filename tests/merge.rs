//! Account merge, on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;

use accountctl::db::Tx;
use accountctl::domain::UserRef;
use accountctl::domain::{InstanceRole, parse_capabilities};
use accountctl::password::Secret;
use accountctl::services::accounts::NewUser;
use accountctl::services::merge::{MergeContext, MergeHandler, MergeOptions, PlanItem};
use accountctl::{App, Error};

const PW: &str = "alice password";

async fn setup(app: &App) {
    common::bootstrap_admin(app).await;
    let ws = app.workspaces();
    ws.create_type("team", "Team", &parse_capabilities("docs.*").expect("caps"), false)
        .await
        .expect("type");
    for name in ["Red", "Blue"] {
        ws.create(name, "team", None, false).await.expect("ws");
        ws.create_role(name, "member", &[], false).await.expect("role");
        ws.create_role(name, "owner", &[], false).await.expect("role");
    }
}

fn by(name: &str) -> UserRef {
    UserRef::Username(name.into())
}

async fn internal(app: &App, name: &str, workspace: &str, role: &str) -> uuid::Uuid {
    app.accounts()
        .create(
            NewUser {
                username: name.into(),
                email: Some(format!("{name}@example.com")),
                given_name: Some(format!("{name}-given")),
                membership: Some((workspace.into(), role.into())),
                password: Some(Secret::new(PW.into())),
                ..NewUser::default()
            },
            false,
        )
        .await
        .expect("create")
        .user
        .id
}

/// An application handler that moves nothing and fails.
struct BrokenAppHandler;

#[async_trait::async_trait]
impl MergeHandler for BrokenAppHandler {
    fn name(&self) -> &'static str {
        "app_notes"
    }
    async fn plan(&self, _: &MergeContext, _: &mut Tx) -> accountctl::Result<Vec<PlanItem>> {
        Ok(vec![])
    }
    async fn merge(&self, _: &MergeContext, _: &mut Tx) -> accountctl::Result<()> {
        Err(Error::Internal("notes service refused".into()))
    }
}

on_both_backends! {
    async fn an_internal_and_an_external_account_of_one_person_become_one(ctx) {
        let app = ctx.app().await;
        setup(&app).await;
        let a = internal(&app, "alice", "Red", "member").await;
        let b = app
            .accounts()
            .create(NewUser { username: "alice-sso".into(), email: Some("alice@corp.example".into()), family_name: Some("Liddell".into()), external: true, identity: Some(("oidc".into(), "sub-77".into())), membership: Some(("Blue".into(), "member".into())), ..NewUser::default() }, false)
            .await
            .expect("external")
            .user
            .id;
        let outcome = app.merger().merge(&by("alice"), &by("alice-sso"), MergeOptions::default()).await.expect("merge");
        assert!(outcome.merged);
        // A signs in with B's passport (and A's password) and owns B's identity.
        let login = app.auth().login("alice@corp.example", &Secret::new(PW.into()), false).await.expect("B's passport signs in A");
        assert_eq!(login.user.id, a);
        let mut tx = ctx.db.begin_read().await.expect("tx");
        let owner: uuid::Uuid = tx.fetch_one("SELECT user_id FROM external_identities WHERE provider = $1 AND subject = $2", &["oidc".into(), "sub-77".into()]).await.expect("lookup").get("user_id").expect("uuid");
        assert_eq!(owner, a);
        drop(tx);
        let shown = app.accounts().show(&UserRef::Id(a)).await.expect("show");
        assert_eq!(shown.memberships.len(), 2, "{:?}", shown.memberships);
        assert_eq!(shown.user.email.as_deref(), Some("alice@example.com"), "A's primary stays");
        assert_eq!(shown.user.family_name.as_deref(), Some("Liddell"), "a field A lacked was filled from B");
        assert_eq!(shown.user.given_name.as_deref(), Some("alice-given"), "A's own field kept");
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM users WHERE id = '{b}'")).await, 0);
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM user_tombstones WHERE user_id = '{b}' AND mode = 'merged' AND merged_into = '{a}'")).await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.merged'").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.deleted' AND fields LIKE '%merged%'").await, 1);
    }

    async fn files_move_under_merged_from_and_counters_add_up(ctx) {
        let app = ctx.app().await;
        setup(&app).await;
        let a = internal(&app, "ann", "Red", "member").await;
        let b = internal(&app, "ann2", "Red", "owner").await;
        internal(&app, "other", "Blue", "member").await;
        app.memberships().assign(&by("ann2"), "Red", "member").await.expect("same role as A too");
        ctx.exec(&format!("INSERT INTO files (id, folder_id, user_id, name, size_bytes, created_at) SELECT '00000000-0000-4000-8000-0000000000a1', id, user_id, 'thesis.pdf', 0, created_at FROM folders WHERE user_id = '{b}'")).await.expect("file");
        ctx.exec(&format!("UPDATE users SET storage_used_bytes = 1000 WHERE id = '{b}'")).await.expect("usage");
        ctx.exec(&format!("UPDATE users SET storage_used_bytes = 24 WHERE id = '{a}'")).await.expect("usage");
        for _ in 0..2 {
            app.auth().login("ann2", &Secret::new(PW.into()), true).await.expect("login");
        }
        let plan = app.merger().merge(&by("ann"), &by("ann2"), MergeOptions { dry_run: true, ..MergeOptions::default() }).await.expect("plan");
        assert!(!plan.merged);
        assert_eq!(plan.plan.sessions_revoked, 2);
        let memberships = plan.plan.items.iter().find(|i| i.kind == "memberships").expect("memberships item");
        assert_eq!(memberships.count, 2);
        assert_eq!(memberships.collisions.len(), 2, "same role kept once, other role kept too: {:?}", memberships.collisions);
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM users WHERE id = '{b}'")).await, 1, "a dry run changes nothing");
        app.merger().merge(&by("ann"), &by("ann2"), MergeOptions::default()).await.expect("merge");
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM files f JOIN folders d ON d.id = f.folder_id WHERE f.user_id = '{a}' AND d.name = 'Merged from ann2' AND d.user_id = '{a}'")).await, 1);
        assert_eq!(ctx.count(&format!("SELECT storage_used_bytes FROM users WHERE id = '{a}'")).await, 1024);
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM memberships WHERE user_id = '{a}'")).await, 2, "member and owner of Red, no duplicate");
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM sessions WHERE user_id = '{a}' AND revoke_reason = 'admin_revoked'")).await, 2);
        app.lifecycle().drain(std::time::Duration::from_secs(5)).await;
        assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM audit_events WHERE event = 'user.logout' AND subject_user_id = '{b}' AND fields LIKE '%admin_revoked%'")).await, 1);
    }

    async fn a_failing_application_handler_leaves_both_users_exactly_as_they_were(ctx) {
        let app = ctx.app().await;
        setup(&app).await;
        internal(&app, "bea", "Red", "member").await;
        internal(&app, "bea2", "Blue", "owner").await;
        app.auth().login("bea2", &Secret::new(PW.into()), true).await.expect("login");
        let before = ctx.dump().await;
        let broken = ctx.app_with(App::builder().merge_handler(Arc::new(BrokenAppHandler))).await;
        let err = broken.merger().merge(&by("bea"), &by("bea2"), MergeOptions::default()).await.expect_err("rolled back");
        assert!(matches!(err, Error::Hook { hook: "app_notes", .. }), "{err:?}");
        assert!(err.to_string().contains("app_notes"), "the CLI can say which handler failed: {err}");
        assert_eq!(ctx.dump().await, before, "full dump unchanged");
    }

    async fn merges_are_refused_when_they_would_be_wrong(ctx) {
        let app = ctx.app().await;
        setup(&app).await;
        internal(&app, "cid", "Red", "member").await;
        internal(&app, "cid2", "Red", "member").await;
        internal(&app, "boss", "Red", "member").await;
        app.accounts().set_instance_role(&by("boss"), InstanceRole::Admin).await.expect("admin");
        app.accounts().create(NewUser { username: "fed".into(), external: true, ..NewUser::default() }, false).await.expect("ext");
        let before = ctx.dump().await;
        let refused = |r: accountctl::Result<_>| matches!(r, Err(Error::Refused(_)));
        assert!(refused(app.merger().merge(&by("cid"), &by("cid"), MergeOptions::default()).await.map(drop)), "self-merge");
        assert!(refused(app.merger().merge(&by("fed"), &by("cid"), MergeOptions::default()).await.map(drop)), "external A, internal B");
        assert!(refused(app.merger().merge(&by("cid"), &by("boss"), MergeOptions::default()).await.map(drop)), "B admin without --grant-admin");
        assert!(matches!(app.merger().merge(&by("cid"), &by("ghost"), MergeOptions::default()).await, Err(Error::NotFound { .. })));
        app.accounts().delete(&by("cid2"), accountctl::domain::DeletionMode::AdminDelete).await.expect("trash");
        let trashed_dump = ctx.dump().await;
        assert!(refused(app.merger().merge(&by("cid"), &by("cid2"), MergeOptions::default()).await.map(drop)), "trashed B");
        assert_eq!(ctx.dump().await, trashed_dump);
        assert_ne!(before, trashed_dump);
        app.merger().merge(&by("cid"), &by("boss"), MergeOptions { grant_admin: true, ..MergeOptions::default() }).await.expect("with --grant-admin");
        assert_eq!(app.accounts().show(&by("cid")).await.expect("cid").user.role, InstanceRole::Admin);
    }

    async fn the_cli_prints_the_plan_and_merges_with_yes(ctx) {
        let app = ctx.app().await;
        setup(&app).await;
        internal(&app, "dee", "Red", "member").await;
        internal(&app, "dee2", "Blue", "member").await;
        let out = ctx.cli().args(["user", "merge", "--keep", "dee", "--remove", "dee2", "--dry-run", "-o", "json"]).assert().success().get_output().stdout.clone();
        let plan: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(plan["merged"], false);
        assert_eq!(plan["remove"]["username"], "dee2");
        ctx.cli().args(["user", "merge", "--keep", "dee", "--remove", "dee2"]).assert().code(2);
        ctx.cli().args(["user", "merge", "--keep", "dee", "--remove", "dee"]).assert().code(4);
        ctx.cli().args(["user", "merge", "--keep", "dee", "--remove", "dee2", "--yes", "-o", "json"]).assert().success();
        ctx.cli().args(["user", "show", "dee2"]).assert().code(3);
        ctx.cli().args(["auth", "check", "dee2@example.com", "--password-stdin"]).write_stdin(format!("{PW}\n")).assert().success();
    }
}
