//! End-to-end tests of the real `accountctl` binary, on a temp SQLite file and on
//! PostgreSQL: the README's flow, exit codes, confirmation, and spawned hook work at exit.

mod common;

use argon2::PasswordVerifier;
use predicates::prelude::*;
use serde_json::Value;

fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

fn bootstrap(ctx: &common::Ctx) {
    ctx.bootstrap_cli();
}

on_backends_and_pgbouncer! {
    async fn the_readme_flow_works_end_to_end(ctx) {
        bootstrap(&ctx);
        ctx.cli().args(["bootstrap"]).assert().success().stderr(predicate::str::contains("nothing changed"));
        ctx.cli()
            .args(["user", "create", "alice", "--email", "alice@example.com", "--password-stdin"])
            .write_stdin("alice password\n")
            .assert()
            .success();
        let out = ctx.cli().args(["user", "list", "-o", "json"]).assert().success().get_output().stdout.clone();
        let users = json(&out);
        let alice = users.as_array().expect("array").iter().find(|u| u["username"] == "alice").expect("alice listed").clone();
        assert_eq!(alice["email"], "alice@example.com");
        assert_eq!(alice["role"], "user");
        assert_eq!(alice["is_external"], false);
        // The stored hash is a standard argon2id PHC string any implementation verifies.
        let mut tx = ctx.db.begin_read().await.expect("tx");
        let id: uuid::Uuid = alice["id"].as_str().expect("id").parse().expect("uuid");
        let phc: String = tx.fetch_one("SELECT password_hash FROM users WHERE id = $1", &[id.into()]).await.expect("read").get("password_hash").expect("hash");
        drop(tx);
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        let parsed = argon2::PasswordHash::new(&phc).expect("PHC");
        argon2::Argon2::default().verify_password(b"alice password", &parsed).expect("verifies");
        ctx.cli().args(["user", "delete", "alice", "--mode", "gdpr", "--yes"]).assert().success();
        let out = ctx.cli().args(["user", "list", "-q"]).assert().success().get_output().stdout.clone();
        assert!(!String::from_utf8_lossy(&out).contains(&id.to_string()));
        ctx.cli().args(["user", "show", "alice"]).assert().code(3);
    }

    async fn bad_input_gets_the_documented_exit_code_and_changes_nothing(ctx) {
        bootstrap(&ctx);
        let users_before = ctx.count("SELECT COUNT(*) FROM users").await;
        ctx.cli().args(["user", "show", "nobody"]).assert().code(3).stderr(predicate::str::contains("not found"));
        ctx.cli().args(["user", "create", "ADMIN", "--email", "x@example.com", "--password-stdin"]).write_stdin("long enough\n").assert().code(4);
        ctx.cli().args(["user", "create", "bob", "--email", "not-an-email", "--password-stdin"]).write_stdin("long enough\n").assert().code(2);
        ctx.cli().args(["user", "create", "bob", "--email", "bob@example.com", "--password-stdin"]).write_stdin("\n").assert().code(2).stderr(predicate::str::contains("empty"));
        ctx.cli().args(["user", "create", "b@d", "--password-stdin"]).write_stdin("long enough\n").assert().code(2);
        ctx.cli().args(["user", "create", "bob", "--password", "secret"]).assert().code(2);
        ctx.cli().args(["user", "list", "-o", "yaml"]).assert().code(2);
        // The rules are decided before any confirmation: the last admin is refused (4), and
        // a deletable user without --yes in a script is a usage error (2).
        ctx.cli().args(["user", "delete", "admin", "--mode", "admin"]).assert().code(4).stderr(predicate::str::contains("last active admin"));
        ctx.cli().args(["user", "disable", "admin"]).assert().code(2).stderr(predicate::str::contains("--yes"));
        ctx.cli().args(["user", "delete", "admin", "--mode", "gdpr", "--yes"]).assert().code(4).stderr(predicate::str::contains("last active admin"));
        ctx.cli().args(["user", "create", "ext", "--external", "--admin"]).assert().code(2);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, users_before, "nothing was created");
    }

    async fn commands_refuse_a_schema_that_is_behind(ctx) {
        ctx.exec("DELETE FROM _sqlx_migrations").await.expect("forget migrations");
        ctx.cli().args(["user", "list"]).assert().code(6).stderr(predicate::str::contains("accountctl migrate"));
    }

    async fn logout_work_spawned_by_the_cli_is_not_lost_at_exit(ctx) {
        bootstrap(&ctx);
        ctx.cli().args(["user", "create", "carol", "--password-stdin"]).write_stdin("carol password\n").assert().success();
        let app = ctx.app().await;
        for _ in 0..2 {
            app.auth().login("carol", &accountctl::password::Secret::new("carol password".into()), true).await.expect("login");
        }
        ctx.cli().args(["session", "revoke", "--user", "carol", "--all", "--yes"]).assert().success();
        ctx.cli().args(["user", "disable", "carol", "--yes"]).assert().success();
        // Both rows are written by the spawned Audit hook, after the command's transaction.
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.logout' AND fields LIKE '%admin_revoked%' AND actor = 'tester'").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.logout' AND fields LIKE '%account_disabled%'").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, 0);
    }

    async fn auth_check_answers_with_exit_codes(ctx) {
        bootstrap(&ctx);
        ctx.cli().args(["user", "create", "dan", "--email", "dan@example.com", "--password-stdin"]).write_stdin("dan password\n").assert().success();
        ctx.cli().args(["auth", "check", "dan@example.com", "--password-stdin"]).write_stdin("dan password\n").assert().success();
        ctx.cli().args(["auth", "check", "dan", "--password-stdin"]).write_stdin("wrong\n").assert().code(4);
        ctx.cli().args(["auth", "check", "nobody", "--password-stdin"]).write_stdin("dan password\n").assert().code(4);
        ctx.cli().args(["user", "disable", "dan", "--yes"]).assert().success();
        ctx.cli().args(["auth", "check", "dan", "--password-stdin"]).write_stdin("dan password\n").assert().code(4);
    }

    async fn random_passwords_are_printed_once_and_work(ctx) {
        bootstrap(&ctx);
        let out = ctx.cli().args(["user", "create", "eve", "--random-password", "-o", "json"]).assert().success().get_output().stdout.clone();
        let created = json(&out);
        let password = created["password"].as_str().expect("password shown").to_owned();
        assert_eq!(password.len(), 24);
        ctx.cli().args(["auth", "check", "eve", "--password-env", "EVE_PW"]).env("EVE_PW", &password).assert().success();
        let show = ctx.cli().args(["user", "show", "eve", "-o", "json"]).assert().success().get_output().stdout.clone();
        assert!(!String::from_utf8_lossy(&show).contains(&password));
    }
}

#[test]
fn an_unreachable_database_exits_with_code_6_and_hides_the_password() {
    let mut cmd = assert_cmd::Command::cargo_bin("accountctl").expect("binary");
    cmd.args(["user", "list"])
        .env("DATABASE_URL", "postgres://app:hunter2secret@127.0.0.1:1/none")
        .assert()
        .code(6)
        .stderr(predicate::str::contains("hunter2secret").not());
}

#[test]
fn bash_completions_load_and_complete_subcommands() {
    let bin = assert_cmd::cargo::cargo_bin("accountctl");
    let script = format!(
        "source <('{bin}' completions bash) && COMP_WORDS=(accountctl us) COMP_CWORD=1 COMP_LINE='accountctl us' COMP_POINT=13; _accountctl accountctl us accountctl; echo \"${{COMPREPLY[@]}}\"",
        bin = bin.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w == "user"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn completions_and_man_page_render() {
    let mut cmd = assert_cmd::Command::cargo_bin("accountctl").expect("binary");
    cmd.args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("accountctl"));
    let mut cmd = assert_cmd::Command::cargo_bin("accountctl").expect("binary");
    cmd.args(["man"])
        .assert()
        .success()
        .stdout(predicate::str::contains(".TH"));
}
