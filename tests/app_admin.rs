//! An application's own admin binary (`examples/app_admin`): the accountctl command line over
//! an `App` built with the application's calendar hook, merge handler, migrations and
//! personal-data declaration, end to end on both backends; and the plain `accountctl` binary
//! refusing to write to the database that binary migrated.

mod common;

#[path = "../examples/app_admin/calendar.rs"]
#[allow(dead_code)]
mod calendar;

use accountctl::App;
use predicates::prelude::*;

/// Bootstraps through the application's binary: its migrations run and its hooks are recorded.
fn bootstrap(ctx: &common::Ctx) {
    ctx.app_admin_bootstrap();
}

fn create(ctx: &common::Ctx, username: &str) {
    ctx.app_admin_create(username);
}

async fn calendars_of(ctx: &common::Ctx, username: &str) -> Vec<String> {
    ctx.text_pairs(&format!(
        "SELECT c.name, u.username FROM app_calendars c JOIN users u ON u.id = c.user_id WHERE u.username = '{username}' ORDER BY c.name"
    ))
    .await
    .into_iter()
    .map(|(name, _)| name)
    .collect()
}

on_both_backends! {
    async fn the_application_binary_fires_the_application_hooks(ctx) {
        bootstrap(&ctx);
        create(&ctx, "alice");
        assert_eq!(calendars_of(&ctx, "alice").await, ["Default"], "created: the calendar hook ran");
        assert_eq!(calendars_of(&ctx, "admin").await, ["Default"], "the bootstrap admin too");

        // A hook's veto: exit 4 naming the hook, the database unchanged, in both modes.
        create(&ctx, "hold-x");
        let before = ctx.dump().await;
        for mode in ["gdpr", "admin"] {
            ctx.app_admin()
                .args(["user", "delete", "hold-x", "--mode", mode, "--yes"])
                .assert()
                .code(4)
                .stderr(predicate::str::contains("refused by calendar").and(predicate::str::contains("legal hold")));
        }
        assert_eq!(ctx.dump().await, before, "a vetoed delete changes nothing");

        // A normal delete removes the calendars inside the delete transaction.
        ctx.app_admin().args(["user", "delete", "alice", "--mode", "gdpr", "--yes"]).assert().success();
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username = 'alice'").await, 0);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM app_calendars").await, 2, "admin's and hold-x's remain");
    }

    async fn the_sweeper_purges_due_users_keeps_a_vetoed_one_and_exits_5(ctx) {
        bootstrap(&ctx);
        for name in ["bob", "hold-y", "cid"] {
            create(&ctx, name);
            ctx.app_admin().args(["gdpr", "request", name, "--yes"]).assert().success();
        }
        ctx.exec("UPDATE erasure_requests SET due_at = '2000-01-01T00:00:00+00:00'").await.expect("make them due");
        ctx.app_admin().args(["gdpr", "purge"]).assert().code(5);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username IN ('bob', 'cid')").await, 0, "the others are purged");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username = 'hold-y'").await, 1, "the vetoed user stays");
        assert_eq!(calendars_of(&ctx, "hold-y").await, ["Default"]);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM erasure_requests WHERE status = 'pending'").await, 1, "its request stays pending");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM app_calendars").await, 2, "admin's and hold-y's");
    }

    async fn a_merge_moves_the_calendars_of_the_removed_account(ctx) {
        bootstrap(&ctx);
        create(&ctx, "carol");
        create(&ctx, "carol2");
        ctx.app_admin().args(["user", "merge", "--keep", "carol", "--remove", "carol2", "--yes"]).assert().success();
        assert_eq!(calendars_of(&ctx, "carol").await, ["Default", "Default (from carol2)"]);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM app_calendars").await, 2 + 1, "nothing orphaned (admin's included)");
    }

    async fn the_plain_binary_reads_but_refuses_every_write_to_an_application_database(ctx) {
        bootstrap(&ctx);
        create(&ctx, "dora");
        let before = ctx.dump().await;
        ctx.cli().args(["user", "list", "-q"]).assert().success().stdout(predicate::str::contains("\n"));
        ctx.cli().args(["user", "show", "dora"]).assert().success();
        let refused = || {
            predicate::str::contains("calendar (lifecycle hook)")
                .and(predicate::str::contains("calendars (merge handler)"))
                .and(predicate::str::contains("admin binary"))
        };
        ctx.cli().args(["user", "create", "zed", "--random-password"]).assert().code(6).stderr(refused());
        ctx.cli().args(["user", "delete", "dora", "--mode", "gdpr", "--yes"]).assert().code(6).stderr(refused());
        ctx.cli().args(["gdpr", "purge"]).assert().code(6).stderr(refused());
        ctx.cli().args(["migrate"]).assert().code(6).stderr(refused());
        ctx.cli().args(["bootstrap"]).assert().code(6).stderr(refused());
        assert_eq!(ctx.dump().await, before, "nothing changed");
        ctx.cli().args(["hooks", "list", "-o", "json"]).assert().success().stdout(predicate::str::contains("\"calendar\""));
        // The application's own binary still writes.
        create(&ctx, "zed");
    }

    async fn a_newer_build_with_more_hooks_records_them_at_its_next_migrate(ctx) {
        // The database was migrated by plain accountctl (the harness); the application's
        // binary adds its migrations and hooks at its first migrate.
        ctx.app_admin().args(["migrate", "-o", "json"]).assert().success().stdout(
            predicate::str::contains("lifecycle:calendar").and(predicate::str::contains("merge:calendars")),
        );
        ctx.app_admin().args(["migrate", "-o", "json"]).assert().success().stdout(predicate::str::contains("\"hooks_recorded\": []"));
        // No binary removes what it lacks: an application retires a hook in its own code
        // (tests/guarantee.rs), so the plain binary stays refused.
        ctx.cli().args(["bootstrap"]).assert().code(6);
    }

    async fn the_application_personal_data_is_declared_and_erased_by_a_purge(ctx) {
        // Without the hook (an application that declared the data but whose hook forgot it),
        // the purge still deletes the declared rows.
        let app = ctx.app_with(App::builder().migrations(calendar::migrations()).personal_data(calendar::personal_data())).await;
        app.migrate().await.expect("app migrations");
        let full = ctx.app_with(calendar::wire(App::builder())).await;
        assert_eq!(full.personal_data().len(), 1);
        let declared = &full.personal_data()[0];
        let live = ctx.text_pairs(match ctx.backend {
            common::Backend::Sqlite => "SELECT name, name FROM pragma_table_info('app_calendars')",
            common::Backend::Postgres | common::Backend::PgBouncer => "SELECT column_name::text, column_name::text FROM information_schema.columns WHERE table_name = 'app_calendars'",
        }).await;
        for column in declared.personal_columns().iter().chain([&declared.user_column()]) {
            assert!(live.iter().any(|(c, _)| c == column), "declared column {column} exists");
        }
        common::bootstrap_admin(&app).await;
        let user = app.accounts().create(accountctl::services::accounts::NewUser { username: "erin".into(), ..Default::default() }, false).await.expect("create").user;
        ctx.exec(&format!("INSERT INTO app_calendars (id, user_id, name) VALUES ('{}', '{}', 'Erin private')", uuid::Uuid::now_v7(), user.id)).await.expect("calendar");
        app.accounts().delete(&accountctl::domain::UserRef::Id(user.id), accountctl::domain::DeletionMode::GdprPurge).await.expect("purge");
        assert!(!ctx.dump().await.contains("Erin private"), "declared personal data is erased");
    }
}

#[test]
fn help_completions_and_man_page_carry_the_application_binary_name() {
    let bin = common::example_bin("app_admin");
    let help = assert_cmd::Command::new(&bin)
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(
        String::from_utf8_lossy(&help).contains("Usage: app_admin"),
        "{}",
        String::from_utf8_lossy(&help)
    );
    let completions = assert_cmd::Command::new(&bin)
        .args(["completions", "bash"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&completions).contains("_app_admin()"));
    let man = assert_cmd::Command::new(&bin)
        .arg("man")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&man).contains(".TH app_admin 1"));
}
