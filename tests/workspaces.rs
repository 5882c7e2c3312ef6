//! Workspaces, roles, memberships and invites, on SQLite and PostgreSQL.

mod common;

use accountctl::domain::UserRef;
use accountctl::domain::{InstanceRole, parse_capabilities};
use accountctl::password::Secret;
use accountctl::services::accounts::NewUser;
use accountctl::services::invites::{Acceptor, DEFAULT_INVITE_TTL, InviteRequest};
use accountctl::{App, Error};

async fn setup(app: &App) {
    common::bootstrap_admin(app).await;
    let ws = app.workspaces();
    ws.create_type(
        "team",
        "Team",
        &parse_capabilities("docs.read,docs.*").expect("caps"),
        false,
    )
    .await
    .expect("type");
    ws.create("Acme", "team", None, false).await.expect("workspace");
    ws.create_role("Acme", "editor", &parse_capabilities("docs.*").expect("caps"), false)
        .await
        .expect("role");
}

fn invite_to(email: &str) -> InviteRequest {
    InviteRequest {
        workspace: "Acme".into(),
        role: "editor".into(),
        email: Some(email.into()),
        phone: None,
        force_passport: false,
        expires_in: DEFAULT_INVITE_TTL,
        given_name: Some("Alice".into()),
        family_name: Some("Liddell".into()),
    }
}

fn new_user(name: &str) -> Acceptor {
    Acceptor::NewUser {
        username: name.into(),
        password: Some(Secret::new("a fine password".into())),
    }
}

async fn create_user(app: &App, name: &str) {
    app.accounts()
        .create(
            NewUser {
                username: name.into(),
                email: Some(format!("{name}@example.com")),
                ..NewUser::default()
            },
            false,
        )
        .await
        .expect("user");
}

on_both_backends! {
    async fn an_invited_person_accepts_and_becomes_a_member_and_no_token_is_stored(ctx) {
        let app = ctx.app().await;
        setup(&app).await;
        let issued = app.invites().create(&invite_to("Alice@Example.com")).await.expect("invite");
        assert_eq!(issued.token.len(), 43, "256 bits, URL-safe base64");
        assert_eq!(issued.invite.passport, "alice@example.com");
        assert!(issued.invite.invitee_user_id.is_none());
        assert_eq!(ctx.count("SELECT COUNT(*) FROM notification_outbox WHERE kind = 'invite_email' AND recipient = 'alice@example.com'").await, 1);
        let accepted = app.invites().accept(&issued.token, new_user("alice")).await.expect("accept");
        assert!(accepted.user_created && accepted.membership_created);
        let details = app.workspaces().show("acme").await.expect("show");
        assert_eq!(details.member_list.len(), 1);
        assert_eq!(details.member_list[0].username, "alice");
        assert_eq!(details.member_list[0].role, "editor");
        // The new user adopted the invited person and the verified passport.
        let shown = app.accounts().show(&UserRef::Username("alice".into())).await.expect("alice");
        assert_eq!(shown.user.given_name.as_deref(), Some("Alice"));
        assert!(shown.passports[0].verified_at.is_some());
        assert_eq!(ctx.count("SELECT COUNT(*) FROM persons").await, 2, "admin and alice, no orphan person-to-be");
        assert_eq!(shown.home_folder.as_deref(), Some("My Folder - alice"), "on_user_created fired");
        let dump = ctx.dump().await;
        assert!(!dump.contains(&issued.token), "the plaintext token is nowhere in the database");
        // Capabilities flow from the role.
        let acme = app.workspace_id("acme").await.expect("acme");
        let caps = app.authz().capabilities(&ctx.db, accepted.user_id, acme).await.expect("caps");
        assert!(caps.iter().any(|c| c.grants("docs.write")));
    }

    async fn used_expired_and_revoked_tokens_are_refused_and_change_nothing(ctx) {
        let app = ctx.app().await;
        setup(&app).await;
        let used = app.invites().create(&invite_to("a@example.com")).await.expect("invite");
        app.invites().accept(&used.token, new_user("first")).await.expect("accept");
        let expired = app.invites().create(&invite_to("b@example.com")).await.expect("invite");
        ctx.exec(&format!("UPDATE invites SET expires_at = '2000-01-01T00:00:00+00:00' WHERE id = '{}'", expired.invite.id)).await.expect("age it");
        let revoked = app.invites().create(&invite_to("c@example.com")).await.expect("invite");
        app.invites().revoke(revoked.invite.id).await.expect("revoke");
        let users = ctx.count("SELECT COUNT(*) FROM users").await;
        let members = ctx.count("SELECT COUNT(*) FROM memberships").await;
        for (token, who) in [(&used.token, "second"), (&expired.token, "third"), (&revoked.token, "fourth"), (&"bogus".to_string(), "fifth")] {
            let err = app.invites().accept(token, new_user(who)).await.expect_err("refused");
            assert!(matches!(err, Error::Refused(_)), "{who}: {err:?}");
            assert_eq!(err.exit_code(), 4);
        }
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, users, "no user was created");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships").await, members);
        assert_eq!(app.invites().prune().await.expect("prune"), 1);
        assert_eq!(app.invites().show(expired.invite.id).await.expect("show").status, accountctl::domain::InviteStatus::Expired);
    }

    async fn invites_to_existing_users_forced_passports_and_duplicate_memberships(ctx) {
        let app = ctx.app().await;
        setup(&app).await;
        create_user(&app, "bob").await;
        create_user(&app, "mallory").await;
        let issued = app.invites().create(&invite_to("bob@example.com")).await.expect("invite");
        assert!(issued.invite.invitee_user_id.is_some(), "the invite targets the existing user");
        let err = app.invites().accept(&issued.token, Acceptor::User(UserRef::Username("mallory".into()))).await.expect_err("not for mallory");
        assert!(matches!(err, Error::Refused(_)));
        let err = app.invites().accept(&issued.token, new_user("bobby")).await.expect_err("not a new user");
        assert!(matches!(err, Error::Refused(_)));
        app.invites().accept(&issued.token, Acceptor::User(UserRef::Username("bob".into()))).await.expect("bob accepts");
        // A forced passport must belong to the accepting user.
        let mut forced = invite_to("someone-else@example.com");
        forced.force_passport = true;
        let issued = app.invites().create(&forced).await.expect("forced invite");
        let err = app.invites().accept(&issued.token, Acceptor::User(UserRef::Username("bob".into()))).await.expect_err("wrong passport");
        assert!(matches!(err, Error::Refused(_)));
        // Accepting another invite for a role bob already holds adds no duplicate.
        let again = app.invites().create(&invite_to("bob@example.com")).await.expect("again");
        let accepted = app.invites().accept(&again.token, Acceptor::User(UserRef::Username("bob".into()))).await.expect("accept again");
        assert!(!accepted.membership_created);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships WHERE role_id IN (SELECT id FROM roles WHERE name = 'editor')").await, 1);
    }

    async fn two_concurrent_accepts_of_one_token_give_exactly_one_membership(ctx) {
        let app = ctx.app().await;
        setup(&app).await;
        create_user(&app, "u1").await;
        create_user(&app, "u2").await;
        let issued = app.invites().create(&invite_to("open@example.com")).await.expect("invite");
        let (a, b) = (app.invites(), app.invites());
        let (t1, t2) = (issued.token.clone(), issued.token.clone());
        let one = tokio::spawn(async move { a.accept(&t1, Acceptor::User(UserRef::Username("u1".into()))).await });
        let two = tokio::spawn(async move { b.accept(&t2, Acceptor::User(UserRef::Username("u2".into()))).await });
        let results = [one.await.expect("task"), two.await.expect("task")];
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        assert!(results.iter().any(|r| matches!(r, Err(Error::Refused(_)))), "{results:?}");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships WHERE role_id IN (SELECT id FROM roles WHERE name = 'editor')").await, 1);
    }

    async fn resend_rotates_the_token(ctx) {
        let app = ctx.app().await;
        setup(&app).await;
        let issued = app.invites().create(&invite_to("r@example.com")).await.expect("invite");
        let resent = app.invites().resend(issued.invite.id, DEFAULT_INVITE_TTL).await.expect("resend");
        assert_ne!(resent.token, issued.token);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM notification_outbox").await, 2);
        assert!(matches!(app.invites().accept(&issued.token, new_user("old")).await, Err(Error::Refused(_))));
        app.invites().accept(&resent.token, new_user("new")).await.expect("new token works");
    }

    async fn workspace_invariants_hold(ctx) {
        let app = ctx.app().await;
        setup(&app).await;
        // The root workspace keeps at least one member and its root role.
        let err = app.memberships().revoke(&UserRef::Username("admin".into()), "root", "root").await.expect_err("last root member");
        assert!(matches!(err, Error::Refused(_)), "{err:?}");
        assert!(matches!(app.workspaces().delete_role("root", "root").await, Err(Error::Refused(_))));
        assert!(matches!(app.workspaces().delete("root").await, Err(Error::Refused(_))));
        // Duplicate names conflict; unknown ones are not found.
        assert!(matches!(app.workspaces().create("acme", "team", None, false).await, Err(Error::Conflict(_))));
        assert!(matches!(app.workspaces().create("Other", "nope", None, false).await, Err(Error::NotFound { .. })));
        assert!(matches!(app.workspaces().create_role("Acme", "EDITOR", &[], false).await, Err(Error::Conflict(_))));
        // Deleting a workspace takes its roles, memberships and invites with it.
        create_user(&app, "carl").await;
        app.memberships().assign(&UserRef::Username("carl".into()), "Acme", "editor").await.expect("assign");
        app.invites().create(&invite_to("d@example.com")).await.expect("invite");
        let deleted = app.workspaces().delete("Acme").await.expect("delete");
        assert_eq!((deleted.roles_deleted, deleted.memberships_deleted), (1, 1));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM invites").await, 0);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships").await, 1, "only admin's root membership");
        // Purging the root workspace's only member is refused too, even when it is no longer
        // the last admin.
        app.accounts().set_instance_role(&UserRef::Username("carl".into()), InstanceRole::Admin).await.expect("carl admin");
        app.accounts().set_instance_role(&UserRef::Username("admin".into()), InstanceRole::User).await.expect("demote");
        let err = app
            .accounts()
            .delete(&UserRef::Username("admin".into()), accountctl::domain::DeletionMode::GdprPurge)
            .await
            .expect_err("last root member");
        assert!(err.to_string().contains("root workspace must keep"), "{err}");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username = 'admin'").await, 1, "rolled back");
        // An external user is refused admin with the two-step hint.
        app.accounts().create(NewUser { username: "ext".into(), external: true, ..NewUser::default() }, false).await.expect("ext");
        let err = app.accounts().set_instance_role(&UserRef::Username("ext".into()), InstanceRole::Admin).await.expect_err("refused");
        assert!(err.to_string().contains("convert to internal first"), "{err}");
    }

    async fn the_cli_drives_the_invite_flow_with_exit_codes(ctx) {
        ctx.cli().args(common::BOOTSTRAP_ARGS).write_stdin("admin password\n").assert().success();
        ctx.cli().args(["workspace-type", "create", "team", "--title", "Team", "--capabilities", "docs.*"]).assert().success();
        ctx.cli().args(["workspace", "create", "Acme", "--type", "team"]).assert().success();
        ctx.cli().args(["role", "create", "editor", "--workspace", "Acme", "--capabilities", "Docs..x"]).assert().code(2);
        ctx.cli().args(["role", "create", "editor", "--workspace", "Acme", "--capabilities", "docs.*"]).assert().success();
        let out = ctx.cli().args(["invite", "create", "--workspace", "Acme", "--role", "editor", "--email", "alice@example.com", "-o", "json"]).assert().success().get_output().stdout.clone();
        let token = serde_json::from_slice::<serde_json::Value>(&out).expect("json")["token"].as_str().expect("token").to_owned();
        ctx.cli().args(["invite", "accept", &token, "--new-username", "alice", "--password-stdin"]).write_stdin("alice password\n").assert().success();
        ctx.cli().args(["invite", "accept", &token, "--new-username", "alice2", "--password-stdin"]).write_stdin("alice password\n").assert().code(4);
        let out = ctx.cli().args(["workspace", "show", "Acme", "-o", "json"]).assert().success().get_output().stdout.clone();
        let shown: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(shown["member_list"][0]["username"], "alice");
        // A generated password is printed once, with the result, and it is the password.
        let out = ctx.cli().args(["invite", "create", "--workspace", "Acme", "--role", "editor", "--email", "bob@example.com", "-o", "json"]).assert().success().get_output().stdout.clone();
        let token = serde_json::from_slice::<serde_json::Value>(&out).expect("json")["token"].as_str().expect("token").to_owned();
        let out = ctx.cli().args(["invite", "accept", &token, "--new-username", "bob", "--random-password", "-o", "json"]).assert().success().get_output().stdout.clone();
        let accepted: serde_json::Value = serde_json::from_slice(&out).expect("json");
        let password = accepted["password"].as_str().expect("the generated password is shown").to_owned();
        assert_eq!(password.chars().count(), 24, "{accepted}");
        assert_eq!(accepted["username"], "bob");
        ctx.cli().args(["auth", "check", "bob", "--password-stdin"]).write_stdin(format!("{password}\n")).assert().success();
        ctx.cli().args(["role", "revoke", "admin", "admin"]).arg("--yes").assert().code(4);
        ctx.cli().args(["workspace", "delete", "root", "--yes"]).assert().code(4);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'invite.created' AND actor = 'tester'").await, 2, "one row per invite created");
    }
}
