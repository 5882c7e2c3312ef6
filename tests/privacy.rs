//! Privacy and hostile input, on SQLite and PostgreSQL: what an erasure leaves behind, how
//! secrets and hostile files are handled, and what a stranger's input can do. Every refusal
//! has its documented exit code and leaves the database exactly as it was (a full dump before
//! and after).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use accountctl::db::Tx;
use accountctl::domain::{DeletionMode, LogoutReason, User, UserRef};
use accountctl::lifecycle::UserLifecycleHook;
use accountctl::password::Secret;
use accountctl::services::accounts::NewUser;
use accountctl::services::erasure::SweepOptions;
use accountctl::{App, Error};
use serde_json::Value;

fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `text` to a file in the test's directory and returns its path.
fn file(ctx: &common::Ctx, name: &str, bytes: &[u8]) -> String {
    let path = ctx.dir.path().join(name);
    std::fs::write(&path, bytes).expect("write file");
    path.display().to_string()
}

const PAST: &str = "2000-01-01T00:00:00+00:00";

/// Vetoes every delete while `on`, with a message that names the user (as a legal-hold hook
/// of an application would).
struct HoldWhile(Arc<AtomicBool>);

#[async_trait::async_trait]
impl UserLifecycleHook for HoldWhile {
    fn name(&self) -> &'static str {
        "legal_hold"
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
        if self.0.load(Ordering::SeqCst) {
            return Err(Error::Refused(format!(
                "user {} ({}) is on legal hold",
                user.username, user.id
            )));
        }
        Ok(())
    }
}

async fn make_user(app: &App, name: &str) -> uuid::Uuid {
    app.accounts()
        .create(
            NewUser {
                username: name.into(),
                email: Some(format!("{name}@qzxmail.test")),
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

fn invite_cli(ctx: &common::Ctx, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["invite", "create", "--workspace", "Acme", "--role", "member"];
    args.extend(extra);
    ctx.cli().args(&args).output().expect("run")
}

on_both_backends! {
    // Issue 21, item 1.
    async fn a_vetoed_purge_leaves_no_identifier_once_the_user_is_erased(ctx) {
        let hold = Arc::new(AtomicBool::new(true));
        let app = ctx.app_with(App::builder().hook(Arc::new(HoldWhile(hold.clone())))).await;
        app.bootstrap().run(None).await.expect("bootstrap");
        let id = make_user(&app, "qzxheld").await;
        app.erasure().request(&UserRef::Id(id), chrono::Duration::days(1)).await.expect("request");
        ctx.exec(&format!("UPDATE erasure_requests SET due_at = '{PAST}'")).await.expect("due");
        let report = app.erasure().purge(&SweepOptions::default(), |_, _| {}).await.expect("sweep");
        assert_eq!((report.purged, report.failed), (0, 1), "{:?}", report.users);
        // The operator watching the run reads the hook's message; the database keeps a code.
        assert!(report.users[0].error.as_deref().is_some_and(|e| e.contains("legal hold")), "{:?}", report.users);
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM erasure_requests WHERE last_error = 'vetoed by hook legal_hold'").await,
            1
        );
        let dump = ctx.dump().await;
        let pending_rows: Vec<&str> = dump
            .lines()
            .filter(|l| l.starts_with("erasure_requests:") || l.starts_with("sweeper_runs:"))
            .collect();
        assert!(pending_rows.iter().all(|l| !l.contains("qzxheld")), "{pending_rows:?}");
        hold.store(false, Ordering::SeqCst);
        let report = app.erasure().purge(&SweepOptions::default(), |_, _| {}).await.expect("sweep");
        assert_eq!((report.purged, report.failed), (1, 0), "{:?}", report.users);
        let dump = ctx.dump().await;
        assert!(!dump.contains("qzxheld"), "the username outlived the erasure:\n{dump}");
        assert!(!dump.contains("qzxmail"), "the email outlived the erasure:\n{dump}");
    }

    // Issue 21, item 2.
    async fn an_invitee_who_never_became_a_user_can_be_erased_by_email(ctx) {
        ctx.bootstrap_cli();
        ctx.acme_workspace_cli();
        let out = invite_cli(&ctx, &["--email", "zed@qzxmail.test", "--given-name", "Qzedgiven", "--family-name", "Qzedfamily", "-o", "json"]);
        assert!(out.status.success(), "{}", stderr_of(&out));
        let revoked = json(&out.stdout)["id"].as_str().expect("id").to_owned();
        ctx.cli().args(["invite", "revoke", &revoked, "--yes"]).assert().success();
        let out = invite_cli(&ctx, &["--email", "zed@qzxmail.test", "-o", "json"]);
        assert!(out.status.success(), "{}", stderr_of(&out));
        let other = invite_cli(&ctx, &["--email", "amy@example.com", "--given-name", "Amygiven", "-o", "json"]);
        assert!(other.status.success());
        // An address nothing holds is not found and changes nothing.
        let before = ctx.dump().await;
        ctx.cli().args(["gdpr", "request", "nobody@qzxmail.test", "--yes"]).assert().code(3);
        assert_eq!(ctx.dump().await, before);
        let out = ctx.cli().args(["gdpr", "request", "zed@qzxmail.test", "--yes", "-o", "json"]).output().expect("run");
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        let erased = json(&out.stdout);
        assert_eq!(erased["invites"], 2, "{erased}");
        assert!(erased["notifications"].as_u64().is_some_and(|n| n >= 2), "{erased}");
        assert_eq!(erased["persons"], 1, "{erased}");
        let dump = ctx.dump().await;
        for gone in ["zed@qzxmail.test", "Qzedgiven", "Qzedfamily"] {
            assert!(!dump.contains(gone), "{gone} outlived the erasure:\n{dump}");
        }
        assert!(dump.contains("amy@example.com") && dump.contains("Amygiven"), "another invitee was touched");
        // A user's address is the user's erasure, not this one.
        ctx.cli().args(["gdpr", "request", "admin@example.com", "--yes"]).assert().code(4);
    }

    // Issue 21, item 3.
    async fn an_erasure_that_could_never_run_is_refused_and_an_overdue_one_fails_status(ctx) {
        let app = ctx.app().await;
        app.bootstrap().run(None).await.expect("bootstrap");
        let rooty = make_user(&app, "rooty").await;
        let other = make_user(&app, "other").await;
        app.memberships().assign(&UserRef::Id(rooty), "root", "root").await.expect("root member");
        let before = ctx.dump().await;
        let out = ctx.cli().args(["gdpr", "request", "rooty", "--yes"]).output().expect("run");
        assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains("root workspace"), "{}", stderr_of(&out));
        assert_eq!(ctx.dump().await, before, "a refused request changed something");
        // Made while another member was there, it fails at every sweep once that one leaves:
        // status reports it although the sweeper itself runs.
        app.memberships().assign(&UserRef::Id(other), "root", "root").await.expect("second member");
        ctx.cli().args(["gdpr", "request", "rooty", "--yes"]).assert().success();
        app.memberships().revoke(&UserRef::Id(other), "root", "root").await.expect("other leaves");
        ctx.exec("UPDATE erasure_requests SET due_at = '2000-01-01T00:00:00+00:00'").await.expect("overdue");
        ctx.cli().args(["gdpr", "purge"]).assert().code(5);
        let out = ctx.cli().args(["gdpr", "status", "--max-age", "2d", "-o", "json"]).output().expect("run");
        assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains("overdue"), "{}", stderr_of(&out));
        let status = json(&out.stdout);
        assert_eq!(status["stale"], false, "{status}");
        assert_eq!(status["overdue_requests"].as_array().map(Vec::len), Some(1), "{status}");
        // Not yet overdue by the age given: status passes.
        let due_now = accountctl::domain::now().to_rfc3339();
        ctx.exec(&format!("UPDATE erasure_requests SET due_at = '{due_now}'")).await.expect("due now");
        ctx.cli().args(["gdpr", "status", "--max-age", "2d"]).assert().success();
    }
}

/// Writes a file readable by its owner only (as a secret file must be) and returns its path.
fn private_file(ctx: &common::Ctx, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = ctx.dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

mod secrets {
    use super::*;

    on_both_backends! {
        // Issue 21, item 4.
        async fn an_invite_whose_delivery_cannot_start_or_fails_is_not_left_pending(ctx) {
            ctx.bootstrap_cli();
            ctx.acme_workspace_cli();
            let before = ctx.dump().await;
            // No [smtp] table, then a bad smtp.from, then --link without invite_link: refused
            // before anything is written, however often it is retried.
            for _ in 0..2 {
                let out = invite_cli(&ctx, &["--email", "max@example.com", "--send"]);
                assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
            }
            let config = ctx.dir.path().join("bad-from.toml");
            std::fs::write(&config, "invite_link = \"https://app.test/a?t={token}\"\n[smtp]\nhost = \"127.0.0.1\"\nfrom = \"not an address\"\ntls = \"none\"\n").expect("write");
            let out = ctx.cli().env("ACCOUNTCTL_CONFIG", &config)
                .args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "max@example.com", "--send"]).output().expect("run");
            assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
            assert!(stderr_of(&out).contains("smtp.from"), "{}", stderr_of(&out));
            let out = invite_cli(&ctx, &["--email", "max@example.com", "-q", "--link"]);
            assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
            assert_eq!(ctx.dump().await, before, "a refused delivery left an invite behind");
            // A server that cannot be reached: the invite is revoked, and the error says so.
            let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
            let config = ctx.dir.path().join("dead.toml");
            std::fs::write(&config, format!("invite_link = \"https://app.test/a?t={{token}}\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"a@example.com\"\ntls = \"none\"\n")).expect("write");
            let out = ctx.cli().env("ACCOUNTCTL_CONFIG", &config)
                .args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "max@example.com", "--send"]).output().expect("run");
            assert_eq!(out.status.code(), Some(6), "{}", stderr_of(&out));
            assert!(stderr_of(&out).contains("revoked"), "{}", stderr_of(&out));
            assert_eq!(ctx.count("SELECT COUNT(*) FROM invites WHERE status = 'pending'").await, 0);
            assert_eq!(ctx.count("SELECT COUNT(*) FROM invites WHERE status = 'revoked'").await, 1);
        }

        // Issue 21, item 5.
        async fn database_secrets_never_appear_in_errors_or_logs(ctx) {
            let secret_file = private_file(&ctx, "only-a-password", "S3cQzpw\n", 0o600);
            let config = ctx.dir.path().join("config.toml");
            std::fs::write(&config, format!("database_url_file = {:?}\n", secret_file.display().to_string())).expect("write");
            let cases: Vec<(&str, String)> = vec![
                ("libpq key=value", "host=127.0.0.1 port=1 password=S3cQzpw user=postgres".into()),
                ("a bare password", "S3cQzpw".into()),
                ("a password with a colon", "S3cQz:pw".into()),
                ("multi-host, unescaped comma and slash", "postgres://u:ab,S3cQz/pw@127.0.0.1/db".into()),
                ("multi-host with ports", "postgres://u:S3cQz,pw@127.0.0.1:1,127.0.0.2:1/db".into()),
                ("an impossible port", "postgres://u:S3cQzpw@127.0.0.1:99999/db".into()),
                ("a query password", "postgresql://u@127.0.0.1:1/db?password=S3cQzpw&port=abc".into()),
            ];
            for (what, url) in cases {
                let out = ctx.cli().env("DATABASE_URL", &url).args(["-vv", "user", "list"]).output().expect("run");
                assert!(!out.status.success(), "{what}");
                let err = stderr_of(&out);
                assert!(!err.contains("S3cQz") && !err.contains("pw@"), "{what}: the secret leaked: {err}");
            }
            let out = ctx.cli().env_remove("DATABASE_URL").env("ACCOUNTCTL_CONFIG", &config).args(["-vv", "user", "list"]).output().expect("run");
            assert!(!out.status.success());
            assert!(!stderr_of(&out).contains("S3cQz"), "database_url_file's password leaked: {}", stderr_of(&out));
        }

        // Issue 21, item 6.
        async fn shared_secret_files_cleartext_smtp_auth_and_argv_passwords_are_refused_or_warned(ctx) {
            ctx.bootstrap_cli();
            ctx.acme_workspace_cli();
            let before = ctx.dump().await;
            let url_file = private_file(&ctx, "db-url", &format!("{}\n", ctx.url), 0o644);
            let config = ctx.dir.path().join("config.toml");
            std::fs::write(&config, format!("database_url_file = {:?}\n", url_file.display().to_string())).expect("write");
            let out = ctx.cli().env_remove("DATABASE_URL").env("ACCOUNTCTL_CONFIG", &config).args(["user", "list"]).output().expect("run");
            assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
            assert!(stderr_of(&out).contains("chmod 600"), "{}", stderr_of(&out));
            let _ = private_file(&ctx, "db-url", &format!("{}\n", ctx.url), 0o600);
            ctx.cli().env_remove("DATABASE_URL").env("ACCOUNTCTL_CONFIG", &config).args(["user", "list"]).assert().success();
            // SMTP: a world-readable password file, then AUTH in clear to a remote host.
            let password = private_file(&ctx, "smtp-pw", "mail secret\n", 0o644);
            let smtp = |host: &str| {
                let path = ctx.dir.path().join("smtp.toml");
                std::fs::write(&path, format!(
                    "invite_link = \"https://app.test/a?t={{token}}\"\n[smtp]\nhost = \"{host}\"\nport = 1\nfrom = \"a@example.com\"\nusername = \"acc\"\npassword_file = {:?}\ntls = \"none\"\n",
                    password.display().to_string()
                )).expect("write");
                path
            };
            let out = ctx.cli().env("ACCOUNTCTL_CONFIG", smtp("127.0.0.1"))
                .args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "max@example.com", "--send"]).output().expect("run");
            assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
            assert!(stderr_of(&out).contains("chmod 600"), "{}", stderr_of(&out));
            let _ = private_file(&ctx, "smtp-pw", "mail secret\n", 0o600);
            let out = ctx.cli().env("ACCOUNTCTL_CONFIG", smtp("smtp.example.com"))
                .args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "max@example.com", "--send"]).output().expect("run");
            assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
            assert!(stderr_of(&out).contains("in clear"), "{}", stderr_of(&out));
            assert_eq!(ctx.dump().await, before, "a refusal changed something");
            // A password on argv is warned about, and never printed.
            let out = ctx.cli().args(["--database-url", "postgres://u:S3cQzpw@127.0.0.1:1/db", "user", "list"]).output().expect("run");
            assert!(stderr_of(&out).contains("`ps`"), "{}", stderr_of(&out));
            assert!(!stderr_of(&out).contains("S3cQz"), "{}", stderr_of(&out));
        }
    }
}

mod import {
    use super::*;

    fn import_json(ctx: &common::Ctx, path: &str, extra: &[&str]) -> (Option<i32>, Vec<Value>, String) {
        let out = ctx
            .cli()
            .args(["user", "import", path, "-o", "json"])
            .args(extra)
            .output()
            .expect("run");
        let rows = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (out.status.code(), rows, stderr_of(&out))
    }

    fn status_of(rows: &[Value], line: u64) -> (String, String) {
        let row = rows
            .iter()
            .find(|r| r["line"] == line)
            .unwrap_or_else(|| panic!("no line {line}: {rows:?}"));
        (
            row["status"].as_str().unwrap_or_default().to_owned(),
            row["error"].as_str().unwrap_or_default().to_owned(),
        )
    }

    on_both_backends! {
        // Issue 21, items 11 and 12.
        async fn a_line_that_is_not_utf8_or_too_long_is_a_bad_row_and_the_import_carries_on(ctx) {
            ctx.bootstrap_cli();
            let mut jsonl = Vec::new();
            jsonl.extend_from_slice(b"\xEF\xBB\xBF{\"username\":\"bom1\"}\n");
            jsonl.extend_from_slice(b"{\"username\":\"bad\xff\xfe\"}\n");
            jsonl.extend_from_slice(b"{\"username\":\"after1\"}\n");
            jsonl.extend_from_slice(format!("{{\"username\":\"huge\",\"given_name\":\"{}\"}}\n", "x".repeat(5000)).as_bytes());
            jsonl.extend_from_slice(b"{\"username\":\"after2\"}\n");
            let path = file(&ctx, "rows.jsonl", &jsonl);
            let (code, rows, err) = import_json(&ctx, &path, &["--max-row-bytes", "4096"]);
            assert_eq!(code, Some(5), "{err} {rows:?}");
            assert_eq!(status_of(&rows, 1).0, "created", "a byte-order mark is skipped: {rows:?}");
            let (status, error) = status_of(&rows, 2);
            assert!(status == "error" && error.contains("UTF-8"), "{rows:?}");
            assert_eq!(status_of(&rows, 3).0, "created");
            let (status, error) = status_of(&rows, 4);
            assert!(status == "error" && error.contains("longer than 4096 bytes"), "{rows:?}");
            assert_eq!(status_of(&rows, 5).0, "created");
            assert_eq!(rows.len(), 5, "{rows:?}");
            // CSV: the same cap, and a header of 200,000 columns gets a short message.
            let csv = format!("username,given_name\nc1,Ann\nc2,{}\nc3,Bob\n", "y".repeat(5000));
            let path = file(&ctx, "rows.csv", csv.as_bytes());
            let (code, rows, err) = import_json(&ctx, &path, &["--max-row-bytes", "4096"]);
            assert_eq!(code, Some(5), "{err}");
            assert_eq!(status_of(&rows, 2).0, "created");
            assert!(status_of(&rows, 3).1.contains("longer than 4096 bytes"), "{rows:?}");
            assert_eq!(status_of(&rows, 4).0, "created");
            let before = ctx.dump().await;
            let header: Vec<String> = (0..200_000).map(|i| format!("c{i}")).collect();
            let path = file(&ctx, "wide.csv", format!("username,{}\nw1\n", header.join(",")).as_bytes());
            let out = ctx.cli().args(["user", "import", &path, "--max-row-bytes", "10000000"]).output().expect("run");
            assert_eq!(out.status.code(), Some(2));
            assert!(out.stderr.len() < 4000, "a {}-byte message", out.stderr.len());
            assert_eq!(ctx.dump().await, before);
        }

        // Issue 21, item 13.
        async fn an_import_does_exactly_what_its_input_says_or_refuses_the_row(ctx) {
            ctx.bootstrap_cli();
            // A password with spaces is taken exactly: the real one then signs in.
            let path = file(&ctx, "pw.jsonl", b"{\"username\":\"spacey\",\"password\":\"  padded password  \"}\n");
            let (code, rows, err) = import_json(&ctx, &path, &[]);
            assert_eq!(code, Some(0), "{err} {rows:?}");
            ctx.cli().args(["auth", "check", "spacey", "--password-stdin"]).write_stdin("  padded password  \n").assert().success();
            let path = file(&ctx, "pw.csv", b"username,password\ncsvspace,\"  padded password  \"\n");
            assert_eq!(import_json(&ctx, &path, &[]).0, Some(0));
            ctx.cli().args(["auth", "check", "csvspace", "--password-stdin"]).write_stdin("  padded password  \n").assert().success();
            let before = ctx.dump().await;
            // bcrypt below its minimum cost, 200,000 memberships, an email an update would
            // ignore: each refused on its line, nothing written.
            let cost3 = "$2b$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
            let members: Vec<Value> = (0..200_000).map(|i| serde_json::json!({"workspace": format!("W{i}"), "role": "member"})).collect();
            let mut jsonl = format!("{{\"username\":\"cheap\",\"password_hash\":\"{cost3}\"}}\n");
            jsonl.push_str(&format!("{}\n", serde_json::json!({"username": "many", "memberships": members})));
            let path = file(&ctx, "bad.jsonl", jsonl.as_bytes());
            let (code, rows, _) = import_json(&ctx, &path, &["--max-row-bytes", "100000000"]);
            assert_eq!(code, Some(5));
            assert!(status_of(&rows, 1).1.contains("minimum"), "{rows:?}");
            assert!(status_of(&rows, 2).1.contains("at most 1000"), "{rows:?}");
            let path = file(&ctx, "upd.csv", b"username,email\nspacey,new@example.com\n");
            let (code, rows, _) = import_json(&ctx, &path, &["--on-conflict", "update"]);
            assert_eq!(code, Some(5), "{rows:?}");
            let (status, error) = status_of(&rows, 2);
            assert!(status == "error" && error.contains("does not change the email"), "{rows:?}");
            assert_eq!(ctx.dump().await, before, "a refused row changed something");
        }
    }
}

mod invites_and_pipes {
    use super::*;

    on_both_backends! {
        // Issue 21, item 16.
        async fn an_invite_link_is_an_http_url_without_control_characters(ctx) {
            ctx.bootstrap_cli();
            ctx.acme_workspace_cli();
            let before = ctx.dump().await;
            for link in [
                "https://app.test/a?t={token}\nBcc: everyone@example.com",
                "javascript:alert(1)//{token}",
                "data:text/html,{token}",
                "https://app.test/a?t={token}\u{7}",
            ] {
                let out = ctx.cli().env("ACCOUNTCTL_INVITE_LINK", link).args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "max@example.com"]).output().expect("run");
                assert_eq!(out.status.code(), Some(2), "{link:?}: {}", stderr_of(&out));
                let config = ctx.dir.path().join("link.toml");
                std::fs::write(&config, format!("invite_link = {}\n", Value::String(link.into()))).expect("write");
                let out = ctx.cli().env("ACCOUNTCTL_CONFIG", &config).args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "max@example.com"]).output().expect("run");
                assert_eq!(out.status.code(), Some(2), "{link:?} in the file: {}", stderr_of(&out));
            }
            assert_eq!(ctx.dump().await, before, "a refused link changed something");
            ctx.cli().env("ACCOUNTCTL_INVITE_LINK", "http://localhost:8080/accept?token={token}")
                .args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "max@example.com"]).assert().success();
        }

        // Issue 21, item 19.
        async fn without_an_invite_link_the_notification_carries_no_placeholder_link(ctx) {
            ctx.bootstrap_cli();
            ctx.acme_workspace_cli();
            let out = invite_cli(&ctx, &["--email", "max@example.com"]);
            assert!(out.status.success());
            assert!(stderr_of(&out).contains("no invite_link"), "{}", stderr_of(&out));
            let dump = ctx.dump().await;
            assert!(!dump.contains("example.com/invites"), "a placeholder link was queued:\n{dump}");
            assert_eq!(ctx.count("SELECT COUNT(*) FROM notification_outbox WHERE payload LIKE '%\"link_template\":null%'").await, 1);
            ctx.cli().env("ACCOUNTCTL_INVITE_LINK", "https://app.test/a?t={token}").args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "ann@example.com"]).assert().success();
            assert_eq!(ctx.count("SELECT COUNT(*) FROM notification_outbox WHERE payload LIKE '%https://app.test/a?t={token}%'").await, 1);
        }

        // Issue 21, item 18.
        async fn a_root_workspace_invite_is_bound_to_its_passport(ctx) {
            ctx.bootstrap_cli();
            let before = ctx.dump().await;
            let out = ctx.cli().args(["invite", "create", "--workspace", "root", "--role", "root", "--email", "boss@example.com"]).output().expect("run");
            assert_eq!(out.status.code(), Some(4), "{}", stderr_of(&out));
            assert!(stderr_of(&out).contains("--force-passport"), "{}", stderr_of(&out));
            assert_eq!(ctx.dump().await, before);
            // Bound to the address, it can only be accepted with that address.
            let out = ctx.cli().args(["invite", "create", "--workspace", "root", "--role", "root", "--email", "boss@example.com", "--force-passport", "-q"]).output().expect("run");
            assert!(out.status.success(), "{}", stderr_of(&out));
            let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            ctx.cli().args(["user", "create", "mallory", "--email", "mallory@example.com"]).assert().success();
            ctx.cli().args(["invite", "accept", "-", "--user", "mallory"]).write_stdin(format!("{token}\n")).assert().code(4);
            assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.username = 'mallory'").await, 0);
        }

        // Issue 21, item 17.
        async fn a_read_only_sqlite_url_is_unavailable_and_a_closed_pipe_ends_cleanly(ctx) {
            ctx.bootstrap_cli();
            if ctx.backend == common::Backend::Sqlite {
                let ro = format!("{}?mode=ro", ctx.url);
                let out = ctx.cli().env("DATABASE_URL", &ro).args(["user", "create", "bob"]).output().expect("run");
                assert_eq!(out.status.code(), Some(6), "{}", stderr_of(&out));
                assert!(stderr_of(&out).contains("read-only"), "{}", stderr_of(&out));
                ctx.cli().env("DATABASE_URL", &ro).args(["user", "list"]).assert().success();
            }
            // stdout and stderr into a pipe closed after the first line: exit 0, the import whole.
            let rows: String = (0..2000).map(|i| format!("{{\"username\":\"p{i}\"}}\n")).collect();
            let path = file(&ctx, "many.jsonl", rows.as_bytes());
            let script = format!("\"$0\" user import '{path}' -o json 2>&1 | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}");
            let status = std::process::Command::new("bash")
                .args(["-c", &script, assert_cmd::cargo::cargo_bin("accountctl").to_str().expect("utf8")])
                .env("DATABASE_URL", &ctx.url)
                .env("ACCOUNTCTL_ACTOR", "tester")
                .current_dir(ctx.dir.path())
                .status()
                .expect("bash");
            assert_eq!(status.code(), Some(0), "a closed pipe made the import fail");
            assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username LIKE 'p%'").await, 2000);
        }
    }
}

mod names {
    use super::*;

    on_both_backends! {
        // Issue 21, item 14.
        async fn invisible_and_bidi_characters_are_refused_and_both_backends_agree_on_uniqueness(ctx) {
            ctx.bootstrap_cli();
            ctx.cli().args(["workspace-type", "create", "team", "--title", "Team"]).assert().success();
            let before = ctx.dump().await;
            for name in ["evil\u{202E}gnp.exe", "zero\u{200B}width", "line\u{2028}sep", "iso\u{2066}late", "bom\u{FEFF}"] {
                let out = ctx.cli().args(["workspace", "create", name, "--type", "team"]).output().expect("run");
                assert_eq!(out.status.code(), Some(2), "{name:?}: {}", stderr_of(&out));
                let out = ctx.cli().args(["user", "create", "ann", "--given-name", name]).output().expect("run");
                assert_eq!(out.status.code(), Some(2), "{name:?} as a given name: {}", stderr_of(&out));
            }
            assert_eq!(ctx.dump().await, before, "a refused name changed something");
            // One fold on both backends: `İstanbul` and `istanbul` are two names (Unicode
            // lower case keeps the dot), `ISTANBUL` is `istanbul` again.
            ctx.cli().args(["workspace", "create", "İstanbul", "--type", "team"]).assert().success();
            ctx.cli().args(["workspace", "create", "istanbul", "--type", "team"]).assert().success();
            ctx.cli().args(["workspace", "create", "ISTANBUL", "--type", "team"]).assert().code(4);
            ctx.cli().args(["workspace", "create", "ÄRZTE", "--type", "team"]).assert().success();
            ctx.cli().args(["workspace", "create", "ärzte", "--type", "team"]).assert().code(4);
        }
    }
}
