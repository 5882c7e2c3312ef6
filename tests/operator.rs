//! The operator's experience of the real binary: lists that never truncate silently, the
//! config file, no accidental SQLite database, GDPR due times, man pages and help text.

mod common;

use predicates::prelude::*;
use serde_json::Value;

fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

fn stdout(assert: assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

/// Runs the binary on a pseudo-terminal with `ctx`'s database, sending `steps` (wait for
/// this text, then type that); returns (output, exit code).
fn at_terminal(ctx: &common::Ctx, steps: &[(&str, &str)], args: &[&str]) -> (String, i32) {
    let steps = serde_json::to_string(steps).expect("JSON");
    let out = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/pty_run.py"))
        .arg(steps)
        .arg(assert_cmd::cargo::cargo_bin("accountctl"))
        .args(args)
        .env("DATABASE_URL", &ctx.url)
        .env("ACCOUNTCTL_ACTOR", "tester")
        .env("XDG_CONFIG_HOME", ctx.dir.path().join("xdg"))
        .env("TERM", "xterm")
        .current_dir(ctx.dir.path())
        .output()
        .expect("python3 runs the pty helper");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text
        .rsplit_once("EXIT=")
        .and_then(|(_, c)| c.trim().parse().ok())
        .unwrap_or_else(|| panic!("no exit code: {text} {}", String::from_utf8_lossy(&out.stderr)));
    (text, code)
}

on_both_backends! {
    async fn irreversible_commands_make_the_operator_type_the_username_and_ctrl_c_exits_130(ctx) {
        ctx.bootstrap_cli();
        for name in ["gina", "hank"] {
            ctx.cli().args(["user", "create", name, "--email", &format!("{name}@example.com")]).assert().success();
        }
        let users = ctx.count("SELECT COUNT(*) FROM users").await;
        let (out, code) = at_terminal(&ctx, &[("Type gina", "\x03")], &["user", "delete", "gina", "--mode", "gdpr"]);
        assert_eq!(code, 130, "{out}");
        assert!(out.contains("\x1b[?25h"), "cursor shown again: {out:?}");
        let (out, code) = at_terminal(&ctx, &[("Type gina", "y\r")], &["user", "delete", "gina", "--mode", "gdpr"]);
        assert_eq!(code, 4, "{out}");
        let (out, code) = at_terminal(&ctx, &[("[y/N]", "\x03")], &["user", "disable", "gina"]);
        assert_eq!(code, 130, "{out}");
        let (out, code) = at_terminal(&ctx, &[("Type hank", "\x03")], &["user", "merge", "--keep", "gina", "--remove", "hank"]);
        assert_eq!(code, 130, "{out}");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, users, "nothing changed");
        ctx.cli().args(["user", "show", "gina", "-o", "json"]).assert().success().stdout(predicate::str::contains("\"active\": true"));
        let (out, code) = at_terminal(&ctx, &[("Type hank", "hank\r")], &["user", "merge", "--keep", "gina", "--remove", "hank"]);
        assert_eq!(code, 0, "{out}");
        let (out, code) = at_terminal(&ctx, &[("Type gina", "gina\r")], &["user", "delete", "gina", "--mode", "gdpr"]);
        assert_eq!(code, 0, "{out}");
        ctx.cli().args(["user", "show", "gina"]).assert().code(3);
    }

    async fn a_too_short_password_at_the_prompt_is_asked_again_and_no_password_means_none(ctx) {
        ctx.bootstrap_cli();
        let (out, code) = at_terminal(
            &ctx,
            &[("Password", "short\r"), ("Repeat", "short\r"), ("try again", "long enough pw\r"), ("Repeat", "long enough pw\r")],
            &["user", "create", "ivan"],
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("too short"), "{out}");
        ctx.cli().args(["auth", "check", "ivan", "--password-stdin"]).write_stdin("long enough pw\n").assert().success();
        let (out, code) = at_terminal(&ctx, &[], &["user", "create", "jane", "--no-password", "-o", "json"]);
        assert_eq!(code, 0, "{out}");
        assert!(!out.contains("Password:"), "not asked: {out}");
        assert!(out.contains("\"has_password\": false"), "{out}");
    }

    async fn list_all_streams_every_user_and_a_full_page_says_so_in_every_format(ctx) {
        ctx.bootstrap_cli();
        for i in 0..12 {
            ctx.cli().args(["user", "create", &format!("user{i:02}"), "--email", &format!("user{i:02}@example.com")]).assert().success();
        }
        // 13 users: the admin and 12 more.
        let all = json(&ctx.cli().args(["user", "list", "--all", "-o", "json"]).assert().success().get_output().stdout);
        assert_eq!(all.as_array().map(Vec::len), Some(13));
        let ids = stdout(ctx.cli().args(["user", "list", "--all", "-q"]).assert().success());
        assert_eq!(ids.lines().count(), 13);
        for format in [["-o", "json"], ["-o", "table"]] {
            ctx.cli().args(["user", "list", "--limit", "5"]).args(format).assert().success()
                .stderr(predicate::str::contains("next page: --after user03"));
        }
        ctx.cli().args(["user", "list", "--limit", "5", "-q"]).assert().success()
            .stderr(predicate::str::contains("next page: --after user03"));
        // The last page is not full: no hint.
        ctx.cli().args(["user", "list", "--limit", "5", "--after", "user07"]).assert().success()
            .stderr(predicate::str::contains("next page").not());
        ctx.cli().args(["user", "list", "--all", "--limit", "5"]).assert().code(2);
    }

    async fn every_list_pages_across_a_boundary_and_all_returns_every_row(ctx) {
        ctx.bootstrap_cli();
        ctx.acme_workspace_cli();
        for (slug, workspace, role) in [("t2", "W2", "r2"), ("t3", "W3", "r3")] {
            ctx.cli().args(["workspace-type", "create", slug, "--title", slug, "--capabilities", "docs.*"]).assert().success();
            ctx.cli().args(["workspace", "create", workspace, "--type", slug]).assert().success();
            ctx.cli().args(["role", "create", role, "--workspace", "Acme", "--capabilities", "docs.read"]).assert().success();
        }
        for name in ["ann", "ben", "cat"] {
            ctx.cli().args(["user", "create", name, "--email", &format!("{name}@example.com"), "--workspace", "Acme", "--role", "member"]).assert().success();
            ctx.cli().args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", &format!("{name}.2@example.com")]).assert().success();
        }
        ctx.cli().args(["role", "assign", "ann", "r2", "--workspace", "Acme"]).assert().success();
        let app = ctx.app().await;
        for _ in 0..3 {
            app.auth().login("admin", &accountctl::password::Secret::new(common::ADMIN_PASSWORD.into()), true).await.expect("sign in");
        }
        let lists: [(&[&str], usize); 7] = [
            (&["user", "list"], 4),
            (&["workspace", "list"], 4),
            (&["workspace-type", "list"], 4),
            (&["role", "list"], 4),
            (&["invite", "list"], 3),
            (&["session", "list", "admin"], 3),
            (&["workspace", "members", "Acme"], 4),
        ];
        for (command, total) in lists {
            let all = json(&ctx.cli().args(command).args(["--all", "-o", "json"]).assert().success().get_output().stdout);
            assert_eq!(all.as_array().map(Vec::len), Some(total), "{command:?} --all: {all}");
            let ids = stdout(ctx.cli().args(command).args(["--all", "-q"]).assert().success());
            // -q prints each id once: a member holding two roles in Acme is one line.
            let distinct = match command {
                [.., "members", _] => all
                    .as_array()
                    .expect("array")
                    .iter()
                    .map(|m| m["user_id"].as_str().unwrap_or_default())
                    .collect::<std::collections::HashSet<_>>()
                    .len(),
                _ => total,
            };
            assert_eq!(ids.lines().count(), distinct, "{command:?} --all -q");
            // Two pages: the first full, with the next --after on stderr after the rows.
            let first = ctx.cli().args(command).args(["--limit", "2", "-o", "json"]).assert().success();
            let hint = String::from_utf8_lossy(&first.get_output().stderr).into_owned();
            let cursor = hint
                .split_once("next page: --after ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("{command:?}: no hint on stderr: {hint:?}"))
                .trim_matches('\'')
                .to_owned();
            let first = json(&first.get_output().stdout);
            let second = ctx.cli().args(command).args(["--limit", "10", "--after", &cursor, "-o", "json"]).assert().success()
                .stderr(predicate::str::contains("next page").not());
            let second = json(&second.get_output().stdout);
            let mut seen: Vec<Value> = first.as_array().expect("page").iter().chain(second.as_array().expect("page")).cloned().collect();
            assert_eq!(seen.len(), total, "{command:?}: the pages hold every row once: {first} {second}");
            seen.dedup();
            assert_eq!(seen.len(), total, "{command:?}: no row twice");
            let everything: Vec<Value> = all.as_array().expect("all").clone();
            assert_eq!(seen, everything, "{command:?}: the pages in the order of --all");
        }
        // A table on a pipe: the hint still comes, on stderr.
        ctx.cli().args(["invite", "list", "--limit", "1"]).assert().success()
            .stderr(predicate::str::contains("next page: --after "));
        // workspace show lists the first memberships and names the command for the rest.
        let shown = ctx.cli().args(["workspace", "show", "Acme", "--members-limit", "2", "-o", "json"]).assert().success()
            .stderr(predicate::str::contains("workspace members Acme --after ann/r2"));
        let shown = json(&shown.get_output().stdout);
        assert_eq!(shown["member_list"].as_array().map(Vec::len), Some(2));
        assert_eq!(shown["members"], 3, "members counts every member");
        let rest = json(&ctx.cli().args(["workspace", "members", "Acme", "--after", "ann/r2", "-o", "json"]).assert().success().get_output().stdout);
        let names: Vec<&str> = rest.as_array().expect("rows").iter().filter_map(|m| m["username"].as_str()).collect();
        assert_eq!(names, ["ben", "cat"]);
        ctx.cli().args(["workspace", "show", "Acme"]).assert().success().stderr(predicate::str::contains("more").not());
        ctx.cli().args(["workspace", "list", "--all", "--limit", "5"]).assert().code(2);
        ctx.cli().args(["invite", "list", "--after", "ffffffff-ffff-4fff-bfff-ffffffffffff"]).assert().code(3);
    }

    async fn short_ids_typed_back_resolve_and_ambiguous_prefixes_name_the_candidates(ctx) {
        ctx.bootstrap_cli();
        ctx.acme_workspace_cli();
        let id_of = |args: &[&str]| {
            let out = json(&ctx.cli().args(args).args(["-o", "json"]).assert().success().get_output().stdout);
            out["id"].as_str().expect("an id").to_owned()
        };
        let alice = id_of(&["user", "create", "alice", "--email", "alice@example.com"]);
        let admin = id_of(&["user", "show", "admin"]);
        // A unique prefix names the user; the whole id less one character is one.
        let unique = &alice[..35];
        let shown = json(&ctx.cli().args(["user", "show", unique, "-o", "json"]).assert().success().get_output().stdout);
        assert_eq!(shown["username"], "alice");
        // The longest prefix both share (at least 8) is ambiguous: exit 2, both named.
        let common = alice.chars().zip(admin.chars()).take_while(|(a, b)| a == b).count();
        if common >= 8 {
            ctx.cli().args(["user", "show", &alice[..common]]).assert().code(2)
                .stderr(predicate::str::contains("ambiguous").and(predicate::str::contains(alice.as_str())).and(predicate::str::contains(admin.as_str())));
        }
        // Names are never ids: a username shaped like an id prefix is refused.
        let name = &alice[..8];
        ctx.cli().args(["user", "create", name]).assert().code(2).stderr(predicate::str::contains("id prefix"));
        // A prefix that fits nothing is not found; fewer than 8 characters is a username.
        ctx.cli().args(["user", "show", "ffffffff-f"]).assert().code(3);
        ctx.cli().args(["user", "show", &alice[..7]]).assert().code(3);
        // Workspaces, roles, invites and sessions take prefixes too.
        let acme = id_of(&["workspace", "show", "Acme"]);
        let shown = json(&ctx.cli().args(["workspace", "show", &acme[..35], "-o", "json"]).assert().success().get_output().stdout);
        assert_eq!(shown["name"], "Acme");
        let role = id_of(&["role", "create", "temp", "--workspace", "Acme", "--capabilities", "docs.read"]);
        ctx.cli().args(["role", "delete", &role[..35], "--workspace", "Acme", "--yes"]).assert().success();
        let invite = json(&ctx.cli().args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "x@example.com", "-o", "json"]).assert().success().get_output().stdout);
        let invite = invite["id"].as_str().expect("id").to_owned();
        ctx.cli().args(["invite", "revoke", &invite[..35], "--yes"]).assert().success();
        ctx.cli().args(["invite", "show", "ffffffff-f"]).assert().code(3);
        let app = ctx.app().await;
        let session = app.auth().login("admin", &accountctl::password::Secret::new(common::ADMIN_PASSWORD.into()), true)
            .await.expect("sign in").session.expect("session").session.id.to_string();
        ctx.cli().args(["session", "revoke", &session[..35], "--yes"]).assert().success();
        ctx.cli().args(["session", "revoke", "ffffffff-f", "--yes"]).assert().code(3);
    }

    async fn a_table_on_a_pipe_is_tab_separated_with_full_ids(ctx) {
        ctx.bootstrap_cli();
        let out = stdout(ctx.cli().args(["user", "list"]).assert().success());
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("id\tusername\temail\trole\tis_external\tactive\tlast_login_at"));
        let admin: Vec<&str> = lines.next().expect("a row").split('\t').collect();
        assert_eq!(admin[0].len(), 36, "full id: {admin:?}");
        assert_eq!(admin[1], "admin");
    }

    async fn the_config_file_drives_commands_with_flag_over_env_over_file(ctx) {
        ctx.bootstrap_cli();
        let secret = ctx.dir.path().join("db-url");
        std::fs::write(&secret, format!("{}\n", ctx.url)).expect("write");
        // A secret file is its owner's only (a shared one is refused).
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        let config = ctx.dir.path().join("accountctl.toml");
        std::fs::write(&config, format!(
            "database_url_file = {:?}\nactor = \"file-actor\"\ntrash_retention = \"3d\"\ninvite_link = \"https://app.test/i?t={{token}}\"\n",
            secret.display().to_string()
        )).expect("write");
        // Neither DATABASE_URL nor --database-url: the file's secret names the database.
        ctx.cli().env_remove("DATABASE_URL").env_remove("ACCOUNTCTL_ACTOR").args(["--config", config.to_str().expect("utf8"), "user", "show", "admin"]).assert().success();
        ctx.cli().env_remove("DATABASE_URL").env_remove("ACCOUNTCTL_ACTOR").env("ACCOUNTCTL_CONFIG", &config).args(["user", "create", "carol"]).assert().success();
        let shown = json(&ctx.cli().env_remove("DATABASE_URL").env("ACCOUNTCTL_CONFIG", &config).args(["config", "show", "-o", "json"]).assert().success().get_output().stdout);
        let setting = |key: &str| shown.as_array().expect("array").iter().find(|s| s["key"] == key).cloned().expect(key);
        assert_eq!(setting("actor")["value"], "tester");
        assert_eq!(setting("actor")["source"], "env");
        assert_eq!(setting("trash_retention")["value"], "3d");
        assert_eq!(setting("trash_retention")["source"], "file");
        assert_eq!(setting("database_url")["source"], "file");
        let flagged = json(&ctx.cli().env("ACCOUNTCTL_CONFIG", &config).args(["--actor", "flag-actor", "config", "show", "-o", "json"]).assert().success().get_output().stdout);
        let actor = flagged.as_array().expect("array").iter().find(|s| s["key"] == "actor").cloned().expect("actor");
        assert_eq!(actor["value"], "flag-actor");
        assert_eq!(actor["source"], "flag");
        // The audit row names the file's actor when neither flag nor env gives one.
        ctx.cli().env_remove("DATABASE_URL").env_remove("ACCOUNTCTL_ACTOR").env("ACCOUNTCTL_CONFIG", &config).args(["user", "delete", "carol", "--mode", "admin", "--yes"]).assert().success();
        assert!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE actor = 'file-actor'").await >= 1);
        // The file's trash retention applies.
        let trashed = json(&ctx.cli().args(["--config", config.to_str().expect("utf8"), "user", "list", "--trashed", "-o", "json"]).assert().success().get_output().stdout);
        let carol = &trashed[0];
        let deleted: chrono::DateTime<chrono::Utc> = carol["deleted_at"].as_str().expect("deleted_at").parse().expect("time");
        let purge: chrono::DateTime<chrono::Utc> = carol["purge_after"].as_str().expect("purge_after").parse().expect("time");
        assert_eq!((purge - deleted).num_days(), 3);
    }

    async fn a_config_file_with_an_unknown_key_or_a_link_without_token_is_refused(ctx) {
        let config = ctx.dir.path().join("bad.toml");
        std::fs::write(&config, "databse_url = \"sqlite://x.db\"\n").expect("write");
        ctx.cli().args(["--config", config.to_str().expect("utf8"), "user", "list"]).assert().code(2)
            .stderr(predicate::str::contains("databse_url"));
        std::fs::write(&config, "invite_link = \"https://app.test/accept\"\n").expect("write");
        ctx.cli().args(["--config", config.to_str().expect("utf8"), "user", "list"]).assert().code(2)
            .stderr(predicate::str::contains("{token}"));
        ctx.cli().env("ACCOUNTCTL_INVITE_LINK", "https://app.test/accept").args(["user", "list"]).assert().code(2)
            .stderr(predicate::str::contains("{token}"));
        ctx.cli().args(["--config", "/nonexistent/accountctl.toml", "user", "list"]).assert().code(2);
        let smtp = ctx.dir.path().join("smtp.toml");
        std::fs::write(&smtp, "[smtp]\nhost = \"localhost\"\nfrom = \"a@example.com\"\ntls = \"sometimes\"\n").expect("write");
        ctx.cli().args(["--config", smtp.to_str().expect("utf8"), "user", "list"]).assert().code(2);
    }

    async fn config_show_redacts_the_database_password(ctx) {
        let out = stdout(ctx.cli().env("DATABASE_URL", "postgres://bob:hunter2@db.example/accounts").args(["config", "show"]).assert().success());
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("database_url"), "{out}");
    }

    async fn gdpr_due_times_are_days_weeks_or_dates_and_0d_is_the_next_sweep(ctx) {
        ctx.bootstrap_cli();
        for name in ["dora", "emil", "finn"] {
            ctx.cli().args(["user", "create", name]).assert().success();
        }
        ctx.cli().args(["gdpr", "request", "dora", "--due-in", "1m", "--yes"]).assert().code(2)
            .stderr(predicate::str::contains("days or weeks"));
        let next_year = (chrono::Utc::now() + chrono::Duration::days(400)).format("%Y-%m-%d").to_string();
        let request = json(&ctx.cli().args(["gdpr", "request", "dora", "--due-in", &next_year, "--yes", "-o", "json"]).assert().success()
            .stderr(predicate::str::contains("due")).get_output().stdout);
        assert!(request["due_at"].as_str().expect("due_at").starts_with(&next_year), "{request}");
        let request = json(&ctx.cli().args(["gdpr", "request", "emil", "--due-in", "2w", "--yes", "-o", "json"]).assert().success().get_output().stdout);
        let due: chrono::DateTime<chrono::Utc> = request["due_at"].as_str().expect("due_at").parse().expect("time");
        assert_eq!((due - chrono::Utc::now()).num_days(), 13);
        ctx.cli().args(["gdpr", "request", "finn", "--due-in", "0d", "--yes"]).assert().success();
        ctx.cli().args(["gdpr", "purge"]).assert().success();
        ctx.cli().args(["user", "show", "finn"]).assert().code(3);
        ctx.cli().args(["user", "show", "emil"]).assert().success();
    }
}

#[test]
fn no_command_but_migrate_and_bootstrap_creates_a_sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = assert_cmd::cargo::cargo_bin("accountctl");
    let run = |args: &[&str]| {
        let mut cmd = assert_cmd::Command::new(&bin);
        cmd.env_remove("DATABASE_URL")
            .env_remove("ACCOUNTCTL_CONFIG")
            .env("XDG_CONFIG_HOME", dir.path().join("xdg"))
            .current_dir(dir.path())
            .args(args);
        cmd.assert()
    };
    for args in [&["user", "list"][..], &["gdpr", "purge"], &["hooks", "list"]] {
        run(args).code(6).stderr(predicate::str::contains("no database at"));
        assert!(
            !dir.path().join("accountctl.db").exists(),
            "{args:?} created the database"
        );
    }
    run(&["migrate"]).success();
    assert!(dir.path().join("accountctl.db").exists());
    run(&["user", "list"]).success();
}

#[test]
fn man_dir_writes_a_page_per_command_whose_see_also_names_existing_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_cmd::Command::cargo_bin("accountctl")
        .expect("bin")
        .args(["man", "--dir"])
        .arg(dir.path())
        .assert()
        .success();
    for page in [
        "accountctl.1",
        "accountctl-user.1",
        "accountctl-user-create.1",
        "accountctl-invite-accept.1",
        "accountctl-config-show.1",
    ] {
        assert!(dir.path().join(page).exists(), "{page} missing");
    }
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("page");
        assert!(text.contains(".SH \"EXIT STATUS\"\n.nf\n"), "exit codes pre-formatted");
        if let Some((_, see_also)) = text.split_once(".SH \"SEE ALSO\"\n") {
            for name in see_also.split("\\fB").skip(1) {
                let name = name.split("\\fR").next().expect("name").replace("\\-", "-");
                assert!(
                    dir.path().join(format!("{name}.1")).exists(),
                    "SEE ALSO names {name}, which has no page"
                );
            }
        }
    }
}

#[test]
fn help_puts_global_options_under_their_own_heading_and_names_the_env_vars() {
    let out = assert_cmd::Command::cargo_bin("accountctl")
        .expect("bin")
        .args(["user", "create", "--help"])
        .env("ACCOUNTCTL_ACTOR", "someone")
        .assert()
        .success();
    let help = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let (own, global) = help.split_once("Global options:").expect("a Global options heading");
    assert!(own.contains("--email") && !own.contains("--database-url"), "{help}");
    assert!(
        global.contains("--database-url") && global.contains("DATABASE_URL"),
        "{help}"
    );
    assert!(
        global.contains("ACCOUNTCTL_CONFIG") && global.contains("ACCOUNTCTL_ACTOR"),
        "{help}"
    );
    assert!(!help.contains("someone"), "env values stay hidden: {help}");
}

/// A real SMTP server for the test's lifetime: Python's aiosmtpd writing each message into a
/// Maildir (`pip install aiosmtpd`; `.ci/run` installs it).
struct SmtpSink {
    child: std::process::Child,
    port: u16,
    maildir: std::path::PathBuf,
}

impl SmtpSink {
    fn start(dir: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let maildir = dir.join("maildir");
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .spawn()
            .expect("python3 -m aiosmtpd (pip install aiosmtpd)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "aiosmtpd did not start (pip install aiosmtpd)"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Self { child, port, maildir }
    }

    fn messages(&self) -> Vec<String> {
        std::fs::read_dir(self.maildir.join("new"))
            .map(|entries| {
                entries
                    .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn invite_setup(ctx: &common::Ctx) {
    ctx.bootstrap_cli();
    ctx.acme_workspace_cli();
}

mod invites {
    use super::*;

    on_both_backends! {
        async fn an_invite_sent_by_smtp_arrives_and_its_link_accepts(ctx) {
            invite_setup(&ctx);
            let smtp = SmtpSink::start(ctx.dir.path());
            let config = ctx.dir.path().join("config.toml");
            std::fs::write(&config, format!(
                "invite_link = \"https://app.test/accept?token={{token}}\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"Accounts <accounts@example.com>\"\ntls = \"none\"\n",
                smtp.port
            )).expect("write");
            let out = ctx.cli().env("ACCOUNTCTL_CONFIG", &config)
                .args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "kim@example.com", "--send", "-o", "json"])
                .assert().success().stderr(predicate::str::contains("invite sent to kim@example.com")).get_output().stdout.clone();
            let issued = json(&out);
            assert_eq!(issued["sent"], true);
            let mails = smtp.messages();
            assert_eq!(mails.len(), 1, "one message delivered");
            let mail = &mails[0];
            assert!(mail.contains("To: kim@example.com"), "{mail}");
            let link = mail.lines().find(|l| l.starts_with("https://app.test/accept?token=")).expect("the link in the message").trim();
            assert_eq!(issued["link"], link);
            // The database holds no token: not the invite, not the outbox row.
            let token = link.trim_start_matches("https://app.test/accept?token=");
            assert!(!ctx.dump().await.contains(token), "the token is not stored");
            ctx.cli().args(["invite", "accept", "--token-file"]).arg({
                let path = ctx.dir.path().join("token");
                std::fs::write(&path, token).expect("write");
                path
            }).args(["--new-username", "kim"]).assert().success();
            ctx.cli().args(["user", "show", "kim"]).assert().success();
            // -q prints the token, or the link with --link; resend rotates and sends again.
            let out = ctx.cli().env("ACCOUNTCTL_CONFIG", &config)
                .args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "lea@example.com", "-q"])
                .assert().success().get_output().stdout.clone();
            let token = String::from_utf8_lossy(&out).trim().to_owned();
            assert_eq!(token.len(), 43, "a token, not an id: {token}");
            let invite_id = json(&ctx.cli().args(["invite", "list", "-o", "json"]).assert().success().get_output().stdout)
                .as_array().expect("array").iter().find(|i| i["passport"] == "lea@example.com").expect("lea's invite")["id"].as_str().expect("id").to_owned();
            let out = ctx.cli().env("ACCOUNTCTL_CONFIG", &config)
                .args(["invite", "resend", &invite_id, "--send", "--link", "-q"])
                .assert().success().get_output().stdout.clone();
            let link = String::from_utf8_lossy(&out).trim().to_owned();
            assert!(link.starts_with("https://app.test/accept?token=") && !link.ends_with(&token), "{link}");
            assert_eq!(smtp.messages().len(), 2);
        }

        async fn send_without_smtp_settings_or_to_a_dead_server_says_so(ctx) {
            invite_setup(&ctx);
            ctx.cli().args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "max@example.com", "--send"]).assert().code(2)
                .stderr(predicate::str::contains("[smtp]"));
            let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
            let config = ctx.dir.path().join("config.toml");
            std::fs::write(&config, format!(
                "invite_link = \"https://app.test/accept?token={{token}}\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\nfrom = \"accounts@example.com\"\ntls = \"none\"\n"
            )).expect("write");
            ctx.cli().env("ACCOUNTCTL_CONFIG", &config)
                .args(["invite", "create", "--workspace", "Acme", "--role", "member", "--email", "max@example.com", "--send"]).assert().code(6)
                .stderr(predicate::str::contains("was revoked").and(predicate::str::contains("mail not delivered: ")).and(predicate::str::contains("database unavailable").not()).and(predicate::str::contains("tls = \"none\"")));
            ctx.cli().env("ACCOUNTCTL_CONFIG", &config)
                .args(["invite", "create", "--workspace", "Acme", "--role", "member", "--phone", "+4915112345678", "--send"]).assert().code(2);
        }
    }
}

mod shapes {
    use super::*;

    on_both_backends! {
        async fn results_use_the_flags_words_and_one_shape_per_command(ctx) {
            invite_setup(&ctx);
            for name in ["olga", "paul", "quin"] {
                ctx.cli().args(["user", "create", name]).assert().success();
            }
            let deleted = json(&ctx.cli().args(["user", "delete", "olga", "--mode", "admin", "--yes", "-o", "json"]).assert().success().get_output().stdout);
            assert_eq!(deleted["mode"], "admin");
            // Restoring a live user changes nothing and says so, exit 0.
            let restored = json(&ctx.cli().args(["user", "restore", "paul", "-o", "json"]).assert().success().get_output().stdout);
            assert_eq!(restored["changed"], false);
            // role assign: the same keys for the instance role and a workspace role.
            let instance = json(&ctx.cli().args(["role", "assign", "paul", "admin", "-o", "json"]).assert().success().get_output().stdout);
            let workspace = json(&ctx.cli().args(["role", "assign", "paul", "member", "--workspace", "Acme", "-o", "json"]).assert().success().get_output().stdout);
            let keys = |v: &Value| v.as_object().expect("object").keys().cloned().collect::<Vec<_>>();
            assert_eq!(keys(&instance), keys(&workspace));
            assert_eq!(instance["role"], "admin");
            assert!(instance["workspace_id"].is_null());
            // -q prints ids only.
            let id = stdout(ctx.cli().args(["role", "assign", "quin", "member", "--workspace", "Acme", "-q"]).assert().success());
            assert_eq!(id.trim().len(), 36, "{id}");
            // A merged user's id says where it went.
            let quin_id = stdout(ctx.cli().args(["user", "show", "quin", "-q"]).assert().success()).trim().to_owned();
            ctx.cli().args(["user", "merge", "--keep", "paul", "--remove", "quin", "--yes"]).assert().success();
            ctx.cli().args(["user", "show", &quin_id]).assert().code(3).stderr(predicate::str::contains("merged into paul"));
            // Sweeper summaries use the JSON's snake_case names.
            // (-v: a run with nothing to do is silent otherwise.)
            let out = ctx.cli().args(["-v", "gdpr", "purge"]).assert().success().get_output().stderr.clone();
            let err = String::from_utf8_lossy(&out);
            assert!(err.contains("invites_expired") && !err.contains("TrashExpired"), "{err}");
        }
    }
}

mod csv_input {
    use super::*;

    on_both_backends! {
        async fn csv_headers_are_checked_before_any_row_and_semicolons_and_boms_are_read(ctx) {
            ctx.bootstrap_cli();
            let users = ctx.count("SELECT COUNT(*) FROM users").await;
            let file = ctx.dir.path().join("users.csv");
            std::fs::write(&file, "username,emial\nrita,rita@example.com\n").expect("write");
            ctx.cli().args(["user", "import"]).arg(&file).assert().code(2)
                .stderr(predicate::str::contains("unknown column").and(predicate::str::contains("emial")));
            std::fs::write(&file, "email\nrita@example.com\n").expect("write");
            ctx.cli().args(["user", "import"]).arg(&file).assert().code(2).stderr(predicate::str::contains("username"));
            assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, users, "no row was imported");
            // A spreadsheet's "CSV UTF-8" with semicolons: BOM skipped, delimiter detected, a hint.
            std::fs::write(&file, "\u{feff}username;email;given_name\nrita;rita@example.com;Rita\nsam;sam@example.com;Sam\n").expect("write");
            ctx.cli().args(["user", "import"]).arg(&file).assert().success().stderr(predicate::str::contains("--delimiter ';'"));
            ctx.cli().args(["user", "show", "rita"]).assert().success();
            std::fs::write(&file, "username|email\ntess|tess@example.com\n").expect("write");
            ctx.cli().args(["user", "import", "--delimiter", "|"]).arg(&file).assert().success();
            ctx.cli().args(["user", "show", "tess"]).assert().success();
            ctx.cli().args(["user", "import", "--delimiter", "ab"]).arg(&file).assert().code(2);
            // A comma in an address is refused: a naive mailer would read two recipients.
            ctx.cli().args(["user", "create", "uwe", "--email", "a,b@example.com"]).assert().code(2);
            ctx.cli().args(["user", "create", "uwe", "--email", "user@-bad-.com"]).assert().code(2);
        }
    }
}

/// The README's tour block (between `<!-- tour:begin -->` and `<!-- tour:end -->`) as a bash
/// script that stops at the first failing command.
fn readme_tour() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let block = readme
        .split_once("<!-- tour:begin -->")
        .and_then(|(_, rest)| rest.split_once("<!-- tour:end -->"))
        .map(|(block, _)| block)
        .expect("the README has a tour block");
    let body: Vec<&str> = block.lines().filter(|l| !l.starts_with("```")).collect();
    format!("set -euxo pipefail\n{}\n", body.join("\n"))
}

mod readme {
    use super::*;

    on_both_backends! {
        async fn the_readme_tour_runs_top_to_bottom_on_a_fresh_database(ctx) {
            let dir = tempfile::tempdir().expect("tempdir");
            let bin_dir = assert_cmd::cargo::cargo_bin("accountctl").parent().expect("bin dir").to_owned();
            let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
            let mut cmd = std::process::Command::new("bash");
            cmd.arg("-c").arg(readme_tour()).current_dir(dir.path()).env("PATH", path)
                .env("ACCOUNTCTL_ACTOR", "readme").env("XDG_CONFIG_HOME", dir.path().join("xdg"))
                .env_remove("ACCOUNTCTL_CONFIG").env_remove("RUST_LOG");
            match ctx.backend {
                // SQLite: the default database in the working directory, created by bootstrap.
                common::Backend::Sqlite => cmd.env_remove("DATABASE_URL"),
                common::Backend::Postgres | common::Backend::PgBouncer => cmd.env("DATABASE_URL", &ctx.url),
            };
            let out = cmd.output().expect("bash");
            assert!(
                out.status.success(),
                "the README tour failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
