//! What an adversarial operator, a hostile input file or a race tries, on SQLite and
//! PostgreSQL: every path goes through the same guards, every refusal has the documented exit
//! code and leaves the database exactly as it was (a full dump before and after).

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;

fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Creates a user with a password (and an email when given) through the CLI.
fn create_user(ctx: &common::Ctx, name: &str, email: Option<&str>) {
    let mut args = vec!["user", "create", name, "--password-stdin"];
    if let Some(email) = email {
        args.extend(["--email", email]);
    }
    ctx.cli()
        .args(&args)
        .write_stdin("long enough password\n")
        .assert()
        .success();
}

fn with_workspace(ctx: &common::Ctx) {
    ctx.acme_workspace_cli();
}

/// Writes `text` to a file in the test's directory and returns its path.
fn file(ctx: &common::Ctx, name: &str, text: &str) -> String {
    let path = ctx.dir.path().join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

/// Runs every argument list as its own `accountctl` process at the same time (each with
/// `stdin` written to it) and returns each one's exit code and stderr, in order.
fn run_concurrently(ctx: &common::Ctx, runs: &[Vec<String>], stdin: &str) -> Vec<(i32, String)> {
    let bin = assert_cmd::cargo::cargo_bin("accountctl");
    let children: Vec<_> = runs
        .iter()
        .map(|args| {
            let mut child = Command::new(&bin)
                .args(args)
                .env("DATABASE_URL", &ctx.url)
                .env("ACCOUNTCTL_ACTOR", "tester")
                .env_remove("RUST_LOG")
                .current_dir(ctx.dir.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn accountctl");
            if let Some(mut input) = child.stdin.take() {
                let _ = input.write_all(stdin.as_bytes());
            }
            child
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("wait");
            (out.status.code().unwrap_or(-1), stderr_of(&out))
        })
        .collect()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A token issued by `invite create` for `email` into Acme as member.
fn invite(ctx: &common::Ctx, email: &str) -> String {
    let out = ctx
        .cli()
        .args([
            "invite",
            "create",
            "--workspace",
            "Acme",
            "--role",
            "member",
            "--email",
            email,
            "-o",
            "json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    json(&out)["token"].as_str().expect("token").to_owned()
}

on_both_backends! {
    // 1
    async fn an_import_update_goes_through_the_rules_events_and_hooks_of_the_single_user_commands(ctx) {
        ctx.bootstrap_cli();
        ctx.cli().args(["user", "create", "ext", "--external"]).assert().success();
        ctx.cli().args(["user", "create", "ext2", "--external"]).assert().success();
        create_user(&ctx, "carol", Some("carol@example.com"));
        let app = ctx.app().await;
        app.auth().login("carol", &accountctl::password::Secret::new("long enough password".into()), true).await.expect("login");
        let before = ctx.dump().await;
        // An empty role column changes nothing; demoting the last admin, an external admin and
        // an external user's password are refused, in a dry run too.
        let refused = file(&ctx, "refused.csv", "username,role,password,password_hash\nadmin,,,\n");
        ctx.cli().args(["user", "import", &refused, "--on-conflict", "update", "-o", "json"]).assert().success();
        assert_eq!(ctx.dump().await, before, "an absent role column changed something");
        let hash = accountctl::password::hash_blocking(&accountctl::password::Secret::new("stolen password".into())).expect("hash");
        let refused = file(
            &ctx,
            "refused.csv",
            &format!("username,role,password,password_hash\nadmin,user,,\next,admin,,\next2,,,\"{hash}\"\n"),
        );
        for dry_run in [true, false] {
            let mut cmd = ctx.cli();
            cmd.args(["user", "import", &refused, "--on-conflict", "update", "-o", "json"]);
            if dry_run {
                cmd.arg("--dry-run");
            }
            let out = cmd.assert().code(5).get_output().clone();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(text.contains("last active admin"), "{text}");
            assert!(text.contains("external users can never be admin"), "{text}");
            assert!(text.contains("identity provider"), "{text}");
            assert!(!text.contains("\"valid\"") && !text.contains("\"updated\""), "{text}");
            assert_eq!(ctx.dump().await, before, "a refused update changed something (dry run: {dry_run})");
        }
        // No password was set on the external user: the check says what it expects instead.
        ctx.cli().args(["auth", "check", "ext2", "--password-stdin"]).write_stdin("stolen password\n").assert().code(2).stderr(predicate::str::contains("external"));
        ctx.cli().args(["bootstrap", "--admin-username", "second", "--admin-email", "second@example.com", "--password-stdin"]).write_stdin("long enough password\n").assert().success();
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE role = 'admin'").await, 1, "no second first admin");
        // An accepted update has the events of role assign and set-password.
        let accepted = file(&ctx, "accepted.csv", &format!("username,role,password_hash\ncarol,admin,\"{hash}\"\n"));
        ctx.cli().args(["user", "import", &accepted, "--on-conflict", "update"]).assert().success();
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.role_changed'").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.password_changed'").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, 0, "sessions revoked");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.logout' AND fields LIKE '%password_changed%'").await, 1);
        ctx.cli().args(["auth", "check", "carol", "--password-stdin"]).write_stdin("stolen password\n").assert().success();
    }

    // 2
    async fn a_merge_never_defeats_a_pending_erasure_request(ctx) {
        ctx.bootstrap_cli();
        create_user(&ctx, "alice", Some("alice@example.com"));
        create_user(&ctx, "bob", Some("bob@example.com"));
        ctx.cli().args(["gdpr", "request", "bob", "--yes"]).assert().success();
        let before = ctx.dump().await;
        for (keep, remove) in [("alice", "bob"), ("bob", "alice")] {
            for extra in [None, Some("--dry-run")] {
                let mut cmd = ctx.cli();
                cmd.args(["user", "merge", "--keep", keep, "--remove", remove, "--yes"]);
                if let Some(extra) = extra {
                    cmd.arg(extra);
                }
                cmd.assert().code(4).stderr(predicate::str::contains("erasure request").and(predicate::str::contains("gdpr cancel")));
            }
        }
        assert_eq!(ctx.dump().await, before);
    }

    // 3
    async fn enable_and_restore_refuse_while_erasure_is_pending_and_gdpr_cancel_withdraws_it(ctx) {
        ctx.bootstrap_cli();
        create_user(&ctx, "bob", Some("bob@example.com"));
        ctx.cli().args(["gdpr", "request", "bob", "--due-in", "0d", "--yes"]).assert().success();
        let before = ctx.dump().await;
        ctx.cli().args(["user", "enable", "bob"]).assert().code(4).stderr(predicate::str::contains("gdpr cancel bob"));
        assert_eq!(ctx.dump().await, before);
        ctx.cli().args(["user", "delete", "bob", "--mode", "admin", "--yes"]).assert().success();
        let trashed = ctx.dump().await;
        ctx.cli().args(["user", "restore", "bob"]).assert().code(4).stderr(predicate::str::contains("gdpr cancel"));
        assert_eq!(ctx.dump().await, trashed);
        ctx.cli().args(["gdpr", "cancel", "bob", "-o", "json"]).assert().success().stdout(predicate::str::contains("cancelled"));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'erasure.cancelled'").await, 1);
        ctx.cli().args(["gdpr", "cancel", "bob"]).assert().code(3);
        ctx.cli().args(["user", "restore", "bob"]).assert().success();
        ctx.cli().args(["user", "enable", "bob"]).assert().success();
        std::thread::sleep(Duration::from_millis(1100));
        ctx.cli().args(["gdpr", "purge"]).assert().success();
        ctx.cli().args(["user", "show", "bob"]).assert().success();
    }

    // 4
    async fn a_username_never_has_the_shape_of_a_user_id(ctx) {
        ctx.bootstrap_cli();
        let before = ctx.dump().await;
        for name in ["01a2024e284076eb8268c1520941d089", "01A2024E-2840-76EB-8268-C1520941D089"] {
            ctx.cli().args(["user", "create", name, "--password-stdin"]).write_stdin("long enough password\n").assert().code(2).stderr(predicate::str::contains("uuid"));
            let csv = file(&ctx, "ids.csv", &format!("username\n{name}\n"));
            ctx.cli().args(["user", "import", &csv, "-o", "json"]).assert().code(5).stdout(predicate::str::contains("uuid"));
        }
        assert_eq!(ctx.dump().await, before);
        // The database refuses it too, whatever wrote it.
        for name in ["01a2024e284076eb8268c1520941d089", "01a2024e-2840-76eb-8268-c1520941d089"] {
            let err = ctx.exec(&format!("UPDATE users SET username = '{name}' WHERE username = 'admin'")).await.expect_err("refused by the database");
            assert!(matches!(err, accountctl::Error::Refused(_)), "{err:?}");
            assert!(err.to_string().contains("user id"), "{err}");
        }
        assert_eq!(ctx.dump().await, before);
    }

    // 5
    async fn accepting_an_invite_never_verifies_another_users_passport(ctx) {
        ctx.bootstrap_cli();
        with_workspace(&ctx);
        let token = invite(&ctx, "yan@example.com");
        create_user(&ctx, "yan", Some("yan@example.com"));
        create_user(&ctx, "bob", Some("bob@example.com"));
        ctx.exec("UPDATE passports SET verified_at = NULL").await.expect("unverify");
        let token_file = file(&ctx, "token", &format!("{token}\n"));
        let before = ctx.dump().await;
        ctx.cli().args(["invite", "accept", "--token-file", &token_file, "--user", "bob"]).assert().code(4).stderr(predicate::str::contains("belongs to another user"));
        ctx.cli().args(["invite", "accept", "--token-file", &token_file, "--new-username", "newbie", "--password-stdin"]).write_stdin("long enough password\n").assert().code(4);
        assert_eq!(ctx.dump().await, before);
        ctx.cli().args(["invite", "accept", "--token-file", &token_file, "--user", "yan"]).assert().success();
        assert_eq!(ctx.count("SELECT COUNT(*) FROM passports WHERE verified_at IS NOT NULL").await, 1);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM passports WHERE verified_at IS NOT NULL AND value = 'yan@example.com'").await, 1);
    }

    // 6
    async fn a_purge_limit_below_one_is_a_usage_error_and_purges_nobody(ctx) {
        ctx.bootstrap_cli();
        create_user(&ctx, "bob", Some("bob@example.com"));
        ctx.cli().args(["gdpr", "request", "bob", "--due-in", "0d", "--yes"]).assert().success();
        std::thread::sleep(Duration::from_millis(1100));
        let before = ctx.dump().await;
        for limit in ["0", "-5"] {
            ctx.cli().args(["gdpr", "purge", "--limit", limit]).assert().code(2);
            ctx.cli().args(["gdpr", "purge", &format!("--limit={limit}"), "--dry-run"]).assert().code(2);
        }
        assert_eq!(ctx.dump().await, before);
        let erasure = ctx.app().await.erasure();
        let options = accountctl::services::erasure::SweepOptions { limit: 0, ..Default::default() };
        let err = erasure.purge(&options, |_, _| {}).await.expect_err("refused");
        assert_eq!(err.exit_code(), 2);
        assert_eq!(ctx.dump().await, before);
    }

    // 7: the first admin, many times, many processes.
    async fn concurrent_bootstraps_create_exactly_one_first_admin(ctx) {
        ctx.cli().args(["bootstrap"]).assert().success();
        for trial in 0..6 {
            let runs: Vec<Vec<String>> = (0..4)
                .map(|n| {
                    let name = format!("adm{trial}x{n}");
                    args(&["bootstrap", "--admin-username", &name, "--admin-email", &format!("{name}@example.com"), "--password-stdin"])
                })
                .collect();
            let outcomes = run_concurrently(&ctx, &runs, "long enough password\n");
            for (code, err) in &outcomes {
                assert_eq!(*code, 0, "trial {trial}: {err}");
            }
            assert_eq!(
                ctx.count("SELECT COUNT(*) FROM users WHERE role = 'admin' AND active").await,
                1,
                "trial {trial}: {outcomes:?}"
            );
            // Next trial starts with no active admin again.
            // A state the database's own rule forbids reaching: its triggers are off for it.
            ctx.exec_without_triggers("UPDATE users SET active = FALSE").await;
        }
    }

    // 8: init containers starting together on a fresh database: every migrate and bootstrap
    // exits 0, one root workspace, one first admin.
    async fn concurrent_migrates_and_bootstraps_on_a_fresh_database_all_succeed(ctx) {
        for trial in 0..4 {
            let reset = match ctx.backend {
                common::Backend::Sqlite => vec![],
                common::Backend::Postgres | common::Backend::PgBouncer => vec!["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"],
            };
            for sql in reset {
                ctx.exec(sql).await.expect("reset");
            }
            if ctx.backend == common::Backend::Sqlite {
                ctx.db.close().await;
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(ctx.dir.path().join(format!("test.db{suffix}")));
                }
            }
            let mut runs = vec![args(&["migrate"]), args(&["migrate"]), args(&["bootstrap"])];
            for n in 0..3 {
                let name = format!("init{trial}x{n}");
                runs.push(args(&["bootstrap", "--admin-username", &name, "--admin-email", &format!("{name}@example.com"), "--password-stdin"]));
            }
            let outcomes = run_concurrently(&ctx, &runs, "long enough password\n");
            for (code, err) in &outcomes {
                assert_eq!(*code, 0, "trial {trial}: {err}");
            }
            assert_eq!(ctx.count("SELECT COUNT(*) FROM workspaces WHERE is_root").await, 1, "trial {trial}");
            assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE role = 'admin'").await, 1, "trial {trial}: {outcomes:?}");
        }
    }

    // 7: the root workspace keeps a member, the instance keeps an admin.
    async fn concurrent_removals_never_empty_the_root_workspace_or_the_admins(ctx) {
        ctx.bootstrap_cli();
        create_user(&ctx, "alice", Some("alice@example.com"));
        let mut outcomes_seen = Vec::new();
        for trial in 0..8 {
            ctx.cli().args(["role", "assign", "alice", "root", "--workspace", "root"]).assert().success();
            ctx.cli().args(["role", "assign", "admin", "root", "--workspace", "root"]).assert().success();
            ctx.cli().args(["role", "assign", "alice", "admin"]).assert().success();
            ctx.cli().args(["role", "assign", "admin", "admin"]).assert().success();
            ctx.cli().args(["user", "enable", "alice"]).assert().success();
            // Odd trials remove an admin by disabling it: another door to the same rule.
            let alice_loses_admin = if trial % 2 == 0 {
                args(&["role", "revoke", "alice", "admin", "--yes"])
            } else {
                args(&["user", "disable", "alice", "--yes"])
            };
            let runs = vec![
                args(&["role", "revoke", "admin", "root", "--workspace", "root", "--yes"]),
                args(&["role", "revoke", "alice", "root", "--workspace", "root", "--yes"]),
                args(&["role", "revoke", "admin", "admin", "--yes"]),
                alice_loses_admin,
            ];
            let outcomes = run_concurrently(&ctx, &runs, "");
            let codes: Vec<i32> = outcomes.iter().map(|(c, _)| *c).collect();
            for pair in [&outcomes[0..2], &outcomes[2..4]] {
                let mut pair_codes: Vec<i32> = pair.iter().map(|(c, _)| *c).collect();
                pair_codes.sort();
                assert_eq!(pair_codes, vec![0, 4], "trial {trial}: {outcomes:?}");
            }
            assert!(outcomes[0..2].iter().any(|(c, e)| *c == 4 && e.contains("at least one member")), "{outcomes:?}");
            assert!(outcomes[2..4].iter().any(|(c, e)| *c == 4 && e.contains("last active admin")), "{outcomes:?}");
            let root = ctx.count("SELECT COUNT(*) FROM memberships m JOIN workspaces w ON w.id = m.workspace_id WHERE w.is_root").await;
            assert_eq!(root, 1, "trial {trial}: {outcomes:?}");
            assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE role = 'admin' AND active").await, 1, "trial {trial}");
            outcomes_seen.push(codes);
        }
        eprintln!("{:?}: 8 trials of 4 concurrent removals: {outcomes_seen:?}", ctx.backend);
    }

    // 9
    async fn an_atomic_import_hashes_before_it_takes_the_write_lock(ctx) {
        ctx.bootstrap_cli();
        let mut csv = String::from("username,password\n");
        for i in 0..120 {
            csv.push_str(&format!("bulk{i},long enough password {i}\n"));
        }
        let path = file(&ctx, "bulk.csv", &csv);
        let bin = assert_cmd::cargo::cargo_bin("accountctl");
        let started = Instant::now();
        let mut import = Command::new(&bin)
            .args(["user", "import", &path, "--atomic", "-q"])
            .env("DATABASE_URL", &ctx.url)
            .current_dir(ctx.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn import");
        std::thread::sleep(Duration::from_millis(300));
        let create_started = Instant::now();
        ctx.cli().args(["user", "create", "meanwhile", "--password-stdin"]).write_stdin("long enough password\n").assert().success();
        let create_took = create_started.elapsed();
        let status = import.wait().expect("import");
        let import_took = started.elapsed();
        assert!(status.success());
        // Holding the lock while hashing made the writer wait for nearly the whole import.
        assert!(
            create_took < import_took / 2,
            "a writer waited for the import's hashing: the create took {create_took:?}, the import {import_took:?}"
        );
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username LIKE 'bulk%'").await, 120);
    }

    // 10
    async fn password_hashes_of_unbounded_cost_are_refused_at_import_and_at_login(ctx) {
        ctx.bootstrap_cli();
        let salt = "c29tZXNhbHRzb21lc2FsdA";
        let out = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let rows = [
            (format!("$argon2id$v=19$m=1048576,t=2,p=1${salt}${out}"), "m=1048576"),
            (format!("$argon2id$v=19$m=4294967295,t=2,p=1${salt}${out}"), "m=4294967295"),
            (format!("$argon2id$v=19$m=19456,t=100000,p=1${salt}${out}"), "t=100000"),
            (bcrypt::hash("x", 4).expect("bcrypt").replacen("$04$", "$31$", 1), "cost 31"),
            ("$argon2id$v=19$m=19456,t=2,p=1".to_owned(), "no salt"),
            (format!("$argon2id$v=19$m=19456,t=2,p=1${salt}"), "no hash"),
        ];
        let before = ctx.dump().await;
        let mut csv = String::from("username,password_hash\n");
        for (i, (hash, _)) in rows.iter().enumerate() {
            csv.push_str(&format!("costly{i},\"{hash}\"\n"));
        }
        let path = file(&ctx, "costly.csv", &csv);
        let out = ctx.cli().args(["user", "import", &path, "-o", "json"]).assert().code(5).get_output().stdout.clone();
        let text = String::from_utf8_lossy(&out);
        for (_, bound) in &rows {
            assert!(text.contains(bound), "no row names {bound}: {text}");
        }
        assert!(!text.contains("\"created\""), "{text}");
        assert_eq!(ctx.dump().await, before);
        // A costly hash already stored (another program wrote it) fails quickly at login.
        ctx.exec(&format!("UPDATE users SET password_hash = '{}' WHERE username = 'admin'", rows[1].0)).await.expect("store");
        let started = Instant::now();
        ctx.cli().args(["auth", "check", "admin", "--password-stdin"]).write_stdin("admin password\n").assert().code(4);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    // 11
    async fn control_characters_are_refused_at_input_and_escaped_at_output(ctx) {
        ctx.bootstrap_cli();
        with_workspace(&ctx);
        let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J";
        let before = ctx.dump().await;
        ctx.cli().args(["user", "create", "eve", "--given-name", hostile]).assert().code(2).stderr(predicate::str::contains("control characters").and(predicate::str::contains("\u{1b}").not()));
        ctx.cli().args(["user", "create", "eve", "--family-name", "two\nlines"]).assert().code(2);
        ctx.cli().args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "x@example.com", "--given-name", hostile]).assert().code(2);
        let jsonl = file(&ctx, "names.jsonl", "{\"username\": \"eve\", \"given_name\": \"\\u001b[2J\"}\n");
        ctx.cli().args(["user", "import", &jsonl]).assert().code(5);
        assert_eq!(ctx.dump().await, before);
        // A value written before the rule, or by another program, is escaped when printed.
        create_user(&ctx, "eve", None);
        let chr = match ctx.backend {
            common::Backend::Sqlite => "char",
            common::Backend::Postgres | common::Backend::PgBouncer => "chr",
        };
        ctx.exec(&format!("UPDATE persons SET given_name = 'a' || {chr}(27) || '[2J' || {chr}(10) || 'b' WHERE id = (SELECT person_id FROM users WHERE username = 'eve')"))
            .await
            .expect("store a hostile name");
        for format in ["table", "json"] {
            let out = ctx.cli().args(["user", "show", "eve", "-o", format]).assert().success().get_output().stdout.clone();
            assert!(!out.contains(&0x1b), "{format}: {}", String::from_utf8_lossy(&out));
            if format == "table" {
                // Off a terminal the table is tab-separated, escaped as PostgreSQL's COPY text.
                assert!(String::from_utf8_lossy(&out).contains("a\\x1B[2J\\nb"), "{}", String::from_utf8_lossy(&out));
            }
        }
    }

    // 12
    async fn row_errors_echo_bounded_values_and_never_a_password(ctx) {
        ctx.bootstrap_cli();
        let before = ctx.dump().await;
        let long = "x".repeat(1_000_000);
        let jsonl = format!(
            "{{\"username\": \"{long}\"}}\n{{\"username\": \"pw\", \"password\": 98765432109876}}\n{{\"username\": \"pw2\", \"password\": [\"s3cr3tvalue1\"]}}\n{{\"username\": \"pw3\", \"password_hash\": \"$argon2id$s3cr3tvalue2\"}}\n"
        );
        let path = file(&ctx, "hostile.jsonl", &jsonl);
        for format in ["json", "table"] {
            let out = ctx.cli().args(["user", "import", &path, "-o", format]).assert().code(5).get_output().clone();
            let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr_of(&out));
            assert!(all.len() < 20_000, "{format}: {} bytes of output", all.len());
            assert!(!all.contains("98765432109876"), "{all}");
            assert!(!all.contains("s3cr3tvalue1"), "{all}");
        }
        assert_eq!(ctx.dump().await, before);
        ctx.cli().args(["user", "create", &long[..100_000]]).assert().code(2).stderr(predicate::function(|s: &str| s.len() < 1000));
        ctx.cli().args(["user", "show", &long[..100_000]]).assert().code(3).stderr(predicate::function(|s: &str| s.len() < 1000));
    }

    // 13
    async fn a_new_sqlite_database_and_its_wal_files_are_private(ctx) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let mut cmd = ctx.cli();
        cmd.current_dir(dir.path()).env_remove("DATABASE_URL").args(["bootstrap"]).assert().success();
        let mut checked = 0;
        for name in ["accountctl.db", "accountctl.db-wal", "accountctl.db-shm"] {
            if let Ok(meta) = std::fs::metadata(dir.path().join(name)) {
                assert_eq!(meta.permissions().mode() & 0o077, 0, "{name} is {:o}", meta.permissions().mode());
                checked += 1;
            }
        }
        assert!(checked >= 1);
    }

    // 15
    async fn a_password_in_the_database_url_query_is_never_printed(ctx) {
        let url = match ctx.backend {
            common::Backend::Sqlite => format!("sqlite://{}/missing/dir/x.db?password=s3cretquery", ctx.dir.path().display()),
            common::Backend::Postgres | common::Backend::PgBouncer => "postgres://app@127.0.0.1:1/none?sslmode=disable&password=s3cretquery".to_owned(),
        };
        let out = ctx.cli().env("DATABASE_URL", &url).args(["user", "list"]).assert().failure().get_output().clone();
        let err = stderr_of(&out);
        assert!(!err.contains("s3cretquery"), "{err}");
        assert!(matches!(out.status.code(), Some(2 | 6)), "{err}");
    }

    // 16
    async fn an_invite_token_can_come_from_stdin_or_a_file_and_argv_is_warned_about(ctx) {
        ctx.bootstrap_cli();
        with_workspace(&ctx);
        create_user(&ctx, "bob", Some("bob@example.com"));
        create_user(&ctx, "carl", Some("carl@example.com"));
        create_user(&ctx, "dora", Some("dora@example.com"));
        let token = invite(&ctx, "bob@example.com");
        ctx.cli().args(["invite", "accept", "-", "--user", "bob"]).write_stdin(format!("{token}\n")).assert().success();
        let token = invite(&ctx, "carl@example.com");
        let path = file(&ctx, "carl.token", &format!("{token}\n"));
        ctx.cli().args(["invite", "accept", "--token-file", &path, "--user", "carl"]).assert().success();
        let token = invite(&ctx, "dora@example.com");
        ctx.cli().args(["invite", "accept", &token, "--user", "dora"]).assert().success().stderr(predicate::str::contains("ps"));
        ctx.cli().args(["invite", "accept", "--help"]).assert().success().stdout(predicate::str::contains("--token-file"));
    }

    // 17
    async fn huge_durations_are_usage_errors_and_a_closed_pipe_ends_quietly(ctx) {
        ctx.bootstrap_cli();
        with_workspace(&ctx);
        create_user(&ctx, "bob", Some("bob@example.com"));
        let before = ctx.dump().await;
        ctx.cli().args(["gdpr", "request", "bob", "--due-in", "400000d", "--yes"]).assert().code(2).stderr(predicate::str::contains("1000 years"));
        ctx.cli().args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "x@example.com", "--expires-in", "270000y"]).assert().code(2);
        ctx.cli().args(["user", "delete", "bob", "--mode", "admin", "--retention", "270000y", "--yes"]).assert().code(2);
        ctx.cli().args(["gdpr", "status", "--max-age", "270000y"]).assert().code(2);
        assert_eq!(ctx.dump().await, before);
        let invites = ctx.app().await.invites();
        let err = invites
            .create(&accountctl::services::invites::InviteRequest {
                workspace: "Acme".into(),
                role: "member".into(),
                email: Some("x@example.com".into()),
                phone: None,
                force_passport: false,
                expires_in: chrono::Duration::MAX,
                given_name: None,
                family_name: None,
            })
            .await
            .expect_err("refused");
        assert_eq!(err.exit_code(), 2);
        assert_eq!(ctx.dump().await, before);
        let bin = assert_cmd::cargo::cargo_bin("accountctl");
        for command in [vec!["completions", "bash"], vec!["man"], vec!["user", "list", "-o", "json"]] {
            let mut child = Command::new(&bin)
                .args(&command)
                .env("DATABASE_URL", &ctx.url)
                .current_dir(ctx.dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            let mut first = [0u8; 1];
            child.stdout.take().expect("stdout").read_exact(&mut first).expect("first byte");
            // The reader goes away (`| head -c1`).
            let out = child.wait_with_output().expect("wait");
            assert!(matches!(out.status.code(), Some(0)), "{command:?}: {:?} {}", out.status, stderr_of(&out));
            assert!(!stderr_of(&out).contains("panicked"), "{command:?}: {}", stderr_of(&out));
        }
    }

    // 19
    async fn identity_parts_over_their_limits_are_usage_errors_naming_the_limit(ctx) {
        ctx.bootstrap_cli();
        let before = ctx.dump().await;
        let provider = "p".repeat(129);
        let subject = "s".repeat(256);
        ctx.cli().args(["user", "create", "ext", "--external", "--provider", &provider, "--subject", "x"]).assert().code(2).stderr(predicate::str::contains("128"));
        ctx.cli().args(["user", "create", "ext", "--external", "--provider", "oidc", "--subject", &subject]).assert().code(2).stderr(predicate::str::contains("255"));
        let csv = file(&ctx, "ext.csv", &format!("username,external,provider,subject\next,true,{provider},x\n"));
        ctx.cli().args(["user", "import", &csv, "-o", "json"]).assert().code(5).stdout(predicate::str::contains("128"));
        assert_eq!(ctx.dump().await, before);
    }

    // 20
    async fn duplicates_get_the_same_friendly_message_on_both_backends(ctx) {
        ctx.bootstrap_cli();
        create_user(&ctx, "alice", Some("alice@example.com"));
        ctx.cli().args(["user", "create", "ext", "--external", "--provider", "oidc", "--subject", "42"]).assert().success();
        let before = ctx.dump().await;
        ctx.cli().args(["user", "create", "alice2", "--email", "alice@example.com", "--password-stdin"]).write_stdin("long enough password\n")
            .assert().code(4).stderr(predicate::str::contains("the email address alice@example.com already belongs to user alice").and(predicate::str::contains("UNIQUE").not()).and(predicate::str::contains("trash").not()));
        ctx.cli().args(["user", "create", "ext2", "--external", "--provider", "oidc", "--subject", "42"])
            .assert().code(4).stderr(predicate::str::contains("(provider, subject) identity already belongs").and(predicate::str::contains("UNIQUE").not()));
        ctx.cli().args(["user", "create", "ALICE", "--password-stdin"]).write_stdin("long enough password\n")
            .assert().code(4).stderr(predicate::str::contains("username is already taken"));
        assert_eq!(ctx.dump().await, before);
        // The owner in the trash: the message says so and how to free the address.
        ctx.cli().args(["user", "delete", "alice", "--mode", "admin", "--yes"]).assert().success();
        let trashed = ctx.dump().await;
        ctx.cli().args(["user", "create", "alice3", "--email", "alice@example.com", "--password-stdin"]).write_stdin("long enough password\n")
            .assert().code(4).stderr(predicate::str::contains("already belongs to user alice (in the trash: `user restore`"));
        assert_eq!(ctx.dump().await, trashed);
    }

    // 21
    async fn csv_line_numbers_are_right_with_crlf_line_endings(ctx) {
        ctx.bootstrap_cli();
        for ending in ["\n", "\r\n"] {
            let csv = ["username,email", "ok1,ok1@example.com", "b@d,", "ok2,", "\"multi", "line\",", "x,not-an-email", ""].join(ending);
            let path = file(&ctx, "lines.csv", &csv);
            let out = ctx.cli().args(["user", "import", &path, "--dry-run", "-o", "json"]).assert().code(5).get_output().stdout.clone();
            let errors: Vec<u64> = String::from_utf8_lossy(&out)
                .lines()
                .map(|l| json(l.as_bytes()))
                .filter(|r| r["status"] == "error")
                .map(|r| r["line"].as_u64().expect("line"))
                .collect();
            assert_eq!(errors, vec![3, 5, 7], "line ending {ending:?}");
        }
    }

    // 22
    async fn the_same_input_has_the_same_outcome_on_both_backends(ctx) {
        ctx.bootstrap_cli();
        with_workspace(&ctx);
        let before = ctx.dump().await;
        let jsonl = file(
            &ctx,
            "nul.jsonl",
            "{\"username\": \"nul\", \"given_name\": \"a\\u0000b\"}\n{\"username\": \"nul2\", \"memberships\": \"Ac\\u0000me:member\"}\n",
        );
        let out = ctx.cli().args(["user", "import", &jsonl, "-o", "json"]).assert().code(5).get_output().stdout.clone();
        assert_eq!(String::from_utf8_lossy(&out).matches("control characters").count(), 2, "{}", String::from_utf8_lossy(&out));
        let err = accountctl::domain::UserRef::parse("a\0b").expect_err("refused");
        assert_eq!(err.exit_code(), 2);
        let filter = accountctl::domain::UserFilter { search: Some("a\0".into()), limit: 10, ..Default::default() };
        assert_eq!(ctx.app().await.accounts().list(&filter).await.expect_err("refused").exit_code(), 2);
        ctx.cli().args(["--actor", "ops\u{1b}[2J", "user", "create", "acted", "--password-stdin"]).write_stdin("long enough password\n").assert().code(2);
        ctx.cli().args(["workspace-type", "create", "odd", "--title", "a\u{7}b"]).assert().code(2);
        ctx.cli().args(["workspace", "create", "a\u{1}b", "--type", "team"]).assert().code(2);
        assert_eq!(ctx.dump().await, before);
        ctx.cli().args(["workspace", "create", "Ärzte", "--type", "team"]).assert().success();
        let before = ctx.dump().await;
        ctx.cli().args(["workspace", "create", "ärzte", "--type", "team"]).assert().code(4).stderr(predicate::str::contains("already exists"));
        ctx.cli().args(["workspace", "create", "ÄRZTE", "--type", "team"]).assert().code(4);
        assert_eq!(ctx.dump().await, before);
        ctx.cli().args(["workspace", "show", "ärzte", "-o", "json"]).assert().success().stdout(predicate::str::contains("Ärzte"));
        // A far-future expiry is refused rather than stored as a date that sorts before today.
        ctx.cli().args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "x@example.com", "--expires-in", "8000y"]).assert().code(2);
        ctx.cli().args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "x@example.com", "--expires-in", "999y"]).assert().success();
        ctx.cli().args(["invite", "prune"]).assert().success();
        assert_eq!(ctx.count("SELECT COUNT(*) FROM invites WHERE status = 'pending'").await, 1, "a far expiry is not pruned");
    }
}

/// SQLite's "database is locked" after the busy timeout is "database unavailable" (exit 6),
/// with a message, not an internal error. (PostgreSQL has no busy timeout; lock waits there
/// are bounded by the server's settings.)
#[tokio::test]
async fn a_sqlite_database_locked_past_the_busy_timeout_is_unavailable() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("busy.db").display());
    let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
        .expect("url")
        .create_if_missing(true)
        .busy_timeout(Duration::ZERO);
    let mut holder = sqlx::SqliteConnection::connect_with(&opts).await.expect("connect");
    sqlx::query("CREATE TABLE t (x INTEGER)")
        .execute(&mut holder)
        .await
        .expect("table");
    sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.expect("lock");
    let mut other = sqlx::SqliteConnection::connect_with(&opts).await.expect("connect");
    let err = sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .expect_err("busy");
    let err = accountctl::Error::from(err);
    assert_eq!(err.exit_code(), 6, "{err}");
    assert!(err.to_string().contains("locked"), "{err}");
}

/// A deadlock that still surfaces (two transactions locking the same rows in opposite
/// orders) is classified as retryable, so a bounded retry can catch it; it is not mistaken
/// for another database error. PostgreSQL only: SQLite's writers never interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_deadlock_is_classified_as_retryable() {
    common::run_on(common::Backend::Postgres, |ctx| async move {
        ctx.exec("CREATE TABLE deadlock_probe (id INTEGER PRIMARY KEY, n INTEGER)")
            .await
            .expect("table");
        ctx.exec("INSERT INTO deadlock_probe VALUES (1, 0), (2, 0)")
            .await
            .expect("rows");
        let mut first = ctx.db.begin().await.expect("tx");
        let mut second = ctx.db.begin().await.expect("tx");
        first
            .execute("UPDATE deadlock_probe SET n = 1 WHERE id = 1", &[])
            .await
            .expect("lock 1");
        second
            .execute("UPDATE deadlock_probe SET n = 1 WHERE id = 2", &[])
            .await
            .expect("lock 2");
        let (a, b) = tokio::join!(
            first.execute("UPDATE deadlock_probe SET n = 2 WHERE id = 2", &[]),
            second.execute("UPDATE deadlock_probe SET n = 2 WHERE id = 1", &[]),
        );
        let err = a.err().or(b.err()).expect("one of them is the deadlock victim");
        assert!(err.is_retryable(), "{err:?}");
        assert!(!accountctl::Error::Refused("x".into()).is_retryable());
    })
    .await;
}
