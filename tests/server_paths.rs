//! The server's side of the library: password and external sign-in, session validation,
//! logout, refresh-token rotation with reuse detection, per-workspace capabilities and role
//! templates. Each runs on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use accountctl::db::{Database, Tx, Value};
use accountctl::domain::{DeletionMode, LogoutReason, User, UserRef, parse_capabilities};
use accountctl::lifecycle::UserLifecycleHook;
use accountctl::password::Secret;
use accountctl::services::accounts::NewUser;
use accountctl::{App, Error};

const PASSWORD: &str = "correct horse battery";

async fn create(app: &App, name: &str) -> uuid::Uuid {
    app.accounts()
        .create(
            NewUser {
                username: name.into(),
                email: Some(format!("{name}@example.com")),
                password: Some(Secret::new(PASSWORD.into())),
                ..NewUser::default()
            },
            false,
        )
        .await
        .expect("create")
        .user
        .id
}

async fn sign_in(app: &App, name: &str) -> accountctl::services::sessions::Tokens {
    app.auth()
        .login(name, &Secret::new(PASSWORD.into()), true)
        .await
        .expect("sign in")
        .session
        .expect("a session")
}

/// Waits for the spawned logout hooks, then counts audit rows of `event` whose fields
/// mention `needle`.
async fn audited(ctx: &common::Ctx, app: &App, event: &str, needle: &str) -> i64 {
    app.lifecycle().drain(Duration::from_secs(5)).await;
    ctx.count(&format!(
        "SELECT COUNT(*) FROM audit_events WHERE event = '{event}' AND fields LIKE '%{needle}%'"
    ))
    .await
}

/// An application hook that disables the user while the login hooks run: the sign-in must
/// see it in the transaction that would issue the session.
struct DisableOnLogin(Database);

#[async_trait::async_trait]
impl UserLifecycleHook for DisableOnLogin {
    fn name(&self) -> &'static str {
        "disable_on_login"
    }
    async fn on_user_created(&self, _user: &User) -> accountctl::Result<()> {
        Ok(())
    }
    async fn on_user_login(&self, user: &User) -> accountctl::Result<()> {
        let mut tx = self.0.begin().await?;
        tx.execute(
            "UPDATE users SET active = $1 WHERE id = $2",
            &[Value::from(false), user.id.into()],
        )
        .await?;
        tx.commit().await
    }
    async fn on_user_logout(&self, _user: &User, _reason: LogoutReason) -> accountctl::Result<()> {
        Ok(())
    }
    async fn on_user_deleted(&self, _user: &User, _mode: DeletionMode, _tx: &mut Tx) -> accountctl::Result<()> {
        Ok(())
    }
}

on_both_backends! {
    async fn a_password_sign_in_issues_hashed_tokens_that_validate_until_logout(ctx) {
        let app = ctx.app().await;
        let id = create(&app, "alice").await;
        let tokens = sign_in(&app, "alice").await;
        assert_ne!(tokens.access_token, tokens.refresh_token);
        let dump = ctx.dump().await;
        assert!(!dump.contains(&tokens.access_token) && !dump.contains(&tokens.refresh_token), "only hashes are stored");
        let valid = app.sessions().validate(&tokens.access_token).await.expect("valid");
        assert_eq!(valid.user.id, id);
        assert_eq!(valid.expires_at, tokens.session.expires_at);
        // The login hooks saw the user before last_login_at was stamped.
        assert_eq!(audited(&ctx, &app, "user.login", "\"first_login\":true").await, 1);
        assert!(matches!(app.sessions().validate("not a token").await, Err(Error::AuthenticationFailed)));
        let ended = app.sessions().logout(&tokens.access_token).await.expect("logout");
        assert_eq!(ended.reason, LogoutReason::UserInitiated);
        assert!(matches!(app.sessions().validate(&tokens.access_token).await, Err(Error::AuthenticationFailed)));
        assert!(matches!(app.sessions().logout(&tokens.access_token).await, Err(Error::AuthenticationFailed)), "a second logout finds no session");
        assert_eq!(audited(&ctx, &app, "user.logout", "user_initiated").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoke_reason = 'user_initiated'").await, 1);
    }

    async fn a_user_disabled_while_the_login_hooks_run_gets_no_session(ctx) {
        let app = ctx.app_with(App::builder().hook_with(|db| std::sync::Arc::new(DisableOnLogin(db.clone())))).await;
        create(&app, "bob").await;
        let err = app.auth().login("bob", &Secret::new(PASSWORD.into()), true).await.expect_err("refused");
        assert!(matches!(err, Error::AuthenticationFailed), "{err:?}");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions").await, 0);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE last_login_at IS NOT NULL").await, 0, "no login stamped");
    }

    async fn refresh_rotates_both_tokens_and_a_reused_refresh_token_revokes_the_family(ctx) {
        let app = ctx.app().await;
        create(&app, "carol").await;
        let first = sign_in(&app, "carol").await;
        let second = app.sessions().refresh(&first.refresh_token).await.expect("rotate");
        assert_eq!(second.session.id, first.session.id, "the same session, new tokens");
        assert!(app.sessions().validate(&first.access_token).await.is_err(), "the old access token is gone");
        app.sessions().validate(&second.access_token).await.expect("the new one works");
        let third = app.sessions().refresh(&second.refresh_token).await.expect("rotate again");
        // The first refresh token, rotated away, comes back: theft is assumed.
        let err = app.sessions().refresh(&first.refresh_token).await.expect_err("reuse");
        assert!(matches!(err, Error::AuthenticationFailed));
        assert!(app.sessions().validate(&third.access_token).await.is_err(), "the family is revoked");
        assert!(app.sessions().refresh(&third.refresh_token).await.is_err());
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoke_reason = 'token_reused'").await, 1);
        assert_eq!(audited(&ctx, &app, "user.logout", "token_reused").await, 1);
        assert_eq!(audited(&ctx, &app, "session.token_reused", "family_id").await, 1);
        // Another sign-in of the same user is another family, untouched.
        let other = sign_in(&app, "carol").await;
        app.sessions().validate(&other.access_token).await.expect("other family");
    }

    async fn an_expired_session_ends_once_with_session_expired(ctx) {
        let app = ctx.app().await;
        create(&app, "dora").await;
        let tokens = sign_in(&app, "dora").await;
        ctx.exec("UPDATE sessions SET expires_at = '2000-01-01T00:00:00+00:00'").await.expect("age it");
        for _ in 0..3 {
            assert!(matches!(app.sessions().validate(&tokens.access_token).await, Err(Error::AuthenticationFailed)));
        }
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoke_reason = 'session_expired'").await, 1);
        assert_eq!(audited(&ctx, &app, "user.logout", "session_expired").await, 1, "one logout, not three");
        assert!(app.sessions().refresh(&tokens.refresh_token).await.is_err());
    }

    async fn an_unknown_identity_is_provisioned_just_in_time_and_a_known_one_is_verified_again(ctx) {
        let app = ctx.app().await;
        let first = app.auth().login_external("idp", "sub-1", Some("Erin@Corp.example")).await.expect("jit");
        assert!(first.provisioned && first.first_login);
        assert!(first.user.is_external);
        assert_eq!(first.user.username, "erin");
        let shown = app.accounts().show(&UserRef::Username("erin".into())).await.expect("show");
        assert_eq!(shown.user.email.as_deref(), Some("erin@corp.example"));
        assert!(shown.home_folder.is_none(), "external users get no home folder");
        let verified = shown.external_identities[0].last_verified_at.expect("bumped by the login hook");
        assert_eq!(audited(&ctx, &app, "user.created", "\"is_external\":true").await, 1);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let again = app.auth().login_external("idp", "sub-1", None).await.expect("known");
        assert!(!again.provisioned && !again.first_login);
        assert_eq!(again.user.id, first.user.id);
        let shown = app.accounts().show(&UserRef::Username("erin".into())).await.expect("show");
        assert!(shown.external_identities[0].last_verified_at.expect("set") > verified);
        assert_eq!(audited(&ctx, &app, "user.login", "\"is_external\":true").await, 2);
        // Another identity claiming the same email gets its own user, without the email.
        let other = app.auth().login_external("idp", "sub-2", Some("erin@corp.example")).await.expect("jit");
        assert_ne!(other.user.id, first.user.id);
        assert!(other.user.username.starts_with("erin-"), "{}", other.user.username);
        // A password never signs an external user in.
        assert!(app.auth().login("erin", &Secret::new(PASSWORD.into()), true).await.is_err());
        app.accounts().disable(&UserRef::Username("erin".into())).await.expect("disable");
        assert!(matches!(app.auth().login_external("idp", "sub-1", None).await, Err(Error::AuthenticationFailed)));
    }

    async fn converting_to_external_revokes_sessions_and_the_identity_signs_a_converted_user_in(ctx) {
        let app = ctx.app().await;
        create(&app, "fred").await;
        let tokens = sign_in(&app, "fred").await;
        app.accounts().convert(&UserRef::Username("fred".into()), true).await.expect("to external");
        assert!(app.sessions().validate(&tokens.access_token).await.is_err());
        assert_eq!(audited(&ctx, &app, "user.logout", "admin_revoked").await, 1);
        let user = app.accounts().create(NewUser { username: "gus".into(), external: true, identity: Some(("idp".into(), "gus-1".into())), ..NewUser::default() }, false).await.expect("external");
        app.accounts().convert(&UserRef::Username("gus".into()), false).await.expect("to internal");
        let signed = app.auth().login_external("idp", "gus-1", None).await.expect("still signs in");
        assert_eq!(signed.user.id, user.user.id);
        assert!(!signed.user.is_external);
        let shown = app.accounts().show(&UserRef::Username("gus".into())).await.expect("show");
        assert_eq!(shown.home_folder.as_deref(), Some("My Folder - gus"), "the login provisioned it");
        assert!(shown.external_identities[0].last_verified_at.is_some());
    }

    async fn capabilities_are_per_workspace_and_roles_stay_within_their_type_template(ctx) {
        let app = ctx.app().await;
        common::bootstrap_admin(&app).await;
        let ws = app.workspaces();
        ws.create_type("team", "Team", &parse_capabilities("docs.*,chat.read").expect("caps"), false).await.expect("type");
        ws.create("Acme", "team", None, false).await.expect("acme");
        ws.create("Beta", "team", None, false).await.expect("beta");
        let err = ws.create_role("Acme", "boss", &parse_capabilities("docs.read,root.*").expect("caps"), false).await.expect_err("outside");
        assert_eq!(err.exit_code(), 4);
        assert!(err.to_string().contains("root.*"), "{err}");
        assert!(ws.create_role("Acme", "chatty", &parse_capabilities("chat.*").expect("caps"), false).await.is_err(), "chat.* is wider than chat.read");
        ws.create_role("Acme", "editor", &parse_capabilities("docs.*,chat.read").expect("caps"), false).await.expect("within");
        ws.create_role("Beta", "reader", &parse_capabilities("docs.read").expect("caps"), false).await.expect("within");
        ws.create_role("root", "auditor", &parse_capabilities("audit.read").expect("caps"), false).await.expect("the root workspace has no template");
        let hana = create(&app, "hana").await;
        app.memberships().assign(&UserRef::Username("hana".into()), "Acme", "editor").await.expect("assign");
        let (acme, beta) = (app.workspace_id("Acme").await.expect("acme"), app.workspace_id("Beta").await.expect("beta"));
        let authz = app.authz();
        assert!(authz.allows(app.db(), hana, acme, "docs.write").await.expect("caps"));
        assert!(!authz.allows(app.db(), hana, beta, "docs.read").await.expect("caps"), "a role in Acme grants nothing in Beta");
        // The root workspace oversees every workspace.
        let admin = app.accounts().show(&UserRef::Username("admin".into())).await.expect("admin").user.id;
        assert!(authz.allows(app.db(), admin, beta, "root.anything").await.expect("caps"));
        // A change in another process reaches this cache only through an invalidation; one
        // in this process drops the entry through the same publication.
        app.memberships().revoke(&UserRef::Username("hana".into()), "Acme", "editor").await.expect("revoke");
        authz.invalidate_user(hana);
        assert!(authz.capabilities(app.db(), hana, acme).await.expect("caps").is_empty());
    }

    async fn every_grant_and_session_change_publishes_an_invalidation(ctx) {
        if ctx.backend != common::Backend::Sqlite {
            // The same publications go through pg_notify there (covered by the server tests).
            return;
        }
        let app = ctx.app().await;
        common::bootstrap_admin(&app).await;
        let ws = app.workspaces();
        ws.create_type("team", "Team", &parse_capabilities("docs.*").expect("caps"), false).await.expect("type");
        ws.create("Acme", "team", None, false).await.expect("acme");
        ws.create_role("Acme", "editor", &parse_capabilities("docs.*").expect("caps"), false).await.expect("role");
        let ivy = create(&app, "ivy").await;
        create(&app, "jan").await;
        let sql = format!("SELECT COUNT(*) FROM cache_invalidations WHERE user_id = '{ivy}'");
        let published = || ctx.count(&sql);
        let ivy_ref = UserRef::Username("ivy".into());
        let mut seen = published().await;
        macro_rules! publishes {
            ($what:literal, $op:expr) => {{
                $op.await.expect($what);
                let now = published().await;
                assert!(now > seen, "{} published no invalidation", $what);
                #[allow(unused_assignments)]
                {
                    seen = now;
                }
            }};
        }
        publishes!("assign", app.memberships().assign(&ivy_ref, "Acme", "editor"));
        publishes!("role delete", ws.delete_role("Acme", "editor"));
        ws.create_role("Acme", "editor", &parse_capabilities("docs.*").expect("caps"), false).await.expect("role");
        app.memberships().assign(&ivy_ref, "Acme", "editor").await.expect("assign");
        seen = published().await;
        publishes!("workspace delete", ws.delete("Acme"));
        publishes!("disable", app.accounts().disable(&ivy_ref));
        publishes!("enable", app.accounts().enable(&ivy_ref));
        publishes!("set-password", app.accounts().set_password(&ivy_ref, Secret::new("another long password".into())));
        publishes!("convert to external", app.accounts().convert(&ivy_ref, true));
        publishes!("convert to internal", app.accounts().convert(&ivy_ref, false));
        publishes!("merge", app.merger().merge(&ivy_ref, &UserRef::Username("jan".into()), Default::default()));
        publishes!("delete", app.accounts().delete(&ivy_ref, DeletionMode::AdminDelete));
        let _ = seen;
    }

    async fn the_six_logout_reasons_and_the_four_events_fire_from_real_paths(ctx) {
        let app = ctx.app().await;
        common::bootstrap_admin(&app).await;
        create(&app, "kim").await;
        let kim = UserRef::Username("kim".into());
        // user_initiated
        let t = sign_in(&app, "kim").await;
        app.sessions().logout(&t.access_token).await.expect("logout");
        // token_reused
        let t = sign_in(&app, "kim").await;
        app.sessions().refresh(&t.refresh_token).await.expect("rotate");
        assert!(app.sessions().refresh(&t.refresh_token).await.is_err());
        // session_expired
        sign_in(&app, "kim").await;
        ctx.exec("UPDATE sessions SET expires_at = '2000-01-01T00:00:00+00:00' WHERE revoked_at IS NULL").await.expect("age");
        app.sessions().prune().await.expect("prune");
        // admin_revoked
        let t = sign_in(&app, "kim").await;
        app.sessions().revoke(t.session.id).await.expect("revoke");
        // password_changed
        sign_in(&app, "kim").await;
        app.accounts().set_password(&kim, Secret::new(PASSWORD.into())).await.expect("set password");
        // account_disabled
        sign_in(&app, "kim").await;
        app.accounts().disable(&kim).await.expect("disable");
        app.accounts().delete(&kim, DeletionMode::AdminDelete).await.expect("delete");
        for reason in ["user_initiated", "token_reused", "session_expired", "admin_revoked", "password_changed", "account_disabled"] {
            assert_eq!(audited(&ctx, &app, "user.logout", reason).await, 1, "{reason}");
            assert_eq!(ctx.count(&format!("SELECT COUNT(*) FROM sessions WHERE revoke_reason = '{reason}'")).await, 1, "{reason}");
        }
        for event in ["user.created", "user.login", "user.logout", "user.deleted"] {
            assert!(audited(&ctx, &app, event, "is_external").await > 0, "{event}");
        }
    }

    async fn sessions_record_the_client_and_validation_moves_last_seen_at_most_once_a_minute(ctx) {
        use accountctl::domain::Page;
        use accountctl::services::auth::ClientInfo;
        let app = ctx.app().await;
        common::bootstrap_admin(&app).await;
        create(&app, "kira").await;
        let client = ClientInfo {
            ip: Some("2001:db8::7".parse().expect("an address")),
            user_agent: Some(format!("QzxAgent/2.0 \u{7}{}", "x".repeat(600))),
        };
        let tokens = app
            .auth()
            .with_client(client)
            .login("kira", &Secret::new(PASSWORD.into()), true)
            .await
            .expect("sign in")
            .session
            .expect("a session");
        let kira = UserRef::Username("kira".into());
        let session = || async {
            let list = app.sessions().list(&kira, &Page::default()).await.expect("list");
            assert_eq!(list.len(), 1);
            list.into_iter().next().expect("one session")
        };
        let signed_in = session().await;
        assert_eq!(signed_in.ip_address.as_deref(), Some("2001:db8::7"));
        let agent = signed_in.user_agent.clone().expect("a user agent");
        assert!(agent.starts_with("QzxAgent/2.0 x"), "control characters dropped: {agent:?}");
        assert_eq!(agent.chars().count(), accountctl::services::sessions::MAX_USER_AGENT_CHARS);
        assert_eq!(signed_in.last_seen_at, Some(signed_in.created_at), "seen at sign-in");
        // A sign-in without client info records none.
        sign_in(&app, "kira").await;
        let list = app.sessions().list(&kira, &Page::default()).await.expect("list");
        assert_eq!((list[0].ip_address.as_deref(), list[0].user_agent.as_deref()), (None, None));
        ctx.exec(&format!("DELETE FROM sessions WHERE id <> '{}'", signed_in.id)).await.expect("one session");

        // Seen 30 s ago: validation does not write.
        let set_seen = |ago: i64| {
            let at = (accountctl::domain::now() - chrono::Duration::seconds(ago))
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
            format!("UPDATE sessions SET last_seen_at = '{at}'")
        };
        ctx.exec(&set_seen(30)).await.expect("seen 30 s ago");
        let before = session().await.last_seen_at.expect("seen");
        app.sessions().validate(&tokens.access_token).await.expect("valid");
        assert_eq!(session().await.last_seen_at, Some(before), "throttled: no write within a minute");
        // Seen 2 minutes ago: validation moves it to now, once.
        ctx.exec(&set_seen(120)).await.expect("seen 2 min ago");
        let stale = session().await.last_seen_at.expect("seen");
        let started = accountctl::domain::now();
        app.sessions().validate(&tokens.access_token).await.expect("valid");
        let moved = session().await.last_seen_at.expect("seen");
        assert!(moved > stale && moved >= started, "moved forward: {stale} -> {moved}");
        app.sessions().validate(&tokens.access_token).await.expect("valid");
        assert_eq!(session().await.last_seen_at, Some(moved), "the next request does not write again");
    }
}
