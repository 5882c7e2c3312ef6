//! The operator's daily tools through the real binary: the audit reader, the export that
//! re-imports, tables that fit a terminal, tab-separated output that keeps its shape, `-q`,
//! messages that never echo a secret, refusals before prompts, quiet cron runs and JSON logs.

mod common;

use predicates::prelude::*;
use serde_json::Value;

fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

fn stdout(assert: assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stdout).into_owned()
}

fn stderr(assert: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&assert.get_output().stderr).into_owned()
}

/// Runs the binary on a pseudo-terminal reporting `columns` columns (0: none), answering
/// `steps` (wait for this text, then type that); returns (output, exit code).
fn at_terminal(ctx: &common::Ctx, columns: u16, steps: &[(&str, &str)], args: &[&str]) -> (String, i32) {
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
        .env("PTY_COLUMNS", columns.to_string())
        .env_remove("RUST_LOG")
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

/// Workspace type `team`, workspace `Acme`, and its role `editor` with two capabilities.
fn acme_with_editor(ctx: &common::Ctx) {
    for args in [
        &[
            "workspace-type",
            "create",
            "team",
            "--title",
            "Team",
            "--capabilities",
            "docs.*",
        ][..],
        &["workspace", "create", "Acme", "--type", "team"],
        &[
            "role",
            "create",
            "editor",
            "--workspace",
            "Acme",
            "--capabilities",
            "docs.read,docs.write",
        ],
        &[
            "role",
            "create",
            "viewer",
            "--workspace",
            "Acme",
            "--capabilities",
            "docs.read",
        ],
    ] {
        ctx.cli().args(args).assert().success();
    }
}

fn user_id(ctx: &common::Ctx, name: &str) -> String {
    stdout(ctx.cli().args(["user", "show", name, "-q"]).assert().success())
        .trim()
        .to_owned()
}

/// Every user as the user tables hold it, without ids or times: one sorted line per user
/// row, passport, external identity, membership and home folder, keyed by username.
async fn user_tables(ctx: &common::Ctx) -> Vec<String> {
    let queries = [
        "SELECT u.username, 'user|' || u.role || '|' || CASE WHEN u.is_external THEN 'external' ELSE 'internal' END \
           || '|' || CASE WHEN u.active THEN 'active' ELSE 'inactive' END || '|' || COALESCE(u.password_hash, '') \
           || '|' || COALESCE(p.given_name, '') || '|' || COALESCE(p.family_name, '') || '|' || COALESCE(p.display_name, '') \
           || '|' || u.storage_used_bytes FROM users u JOIN persons p ON p.id = u.person_id",
        "SELECT u.username, 'passport|' || s.kind || '|' || s.value || '|' || CASE WHEN s.is_primary THEN 'primary' ELSE '' END \
           FROM passports s JOIN users u ON u.id = s.user_id",
        "SELECT u.username, 'identity|' || x.provider || '|' || x.subject FROM external_identities x JOIN users u ON u.id = x.user_id",
        "SELECT u.username, 'membership|' || w.name || '|' || r.name FROM memberships m JOIN users u ON u.id = m.user_id \
           JOIN workspaces w ON w.id = m.workspace_id JOIN roles r ON r.id = m.role_id",
        "SELECT u.username, 'folder|' || f.name FROM folders f JOIN users u ON u.id = f.user_id",
    ];
    let mut lines = Vec::new();
    for sql in queries {
        lines.extend(
            ctx.text_pairs(sql)
                .await
                .into_iter()
                .map(|(user, line)| format!("{user}: {line}")),
        );
    }
    lines.sort();
    lines
}

/// Exports `ctx`'s users in `format`, imports the file into a fresh database of the same
/// backend (root workspace, `Acme` and its roles made as in the first) and returns that
/// database's user tables.
async fn round_trip(ctx: &common::Ctx, format: &str) -> Vec<String> {
    let file = ctx.dir.path().join(format!("users.{format}"));
    let file = file.to_str().expect("utf-8 path").to_owned();
    ctx.cli()
        .args(["user", "export", &file, "--with-password-hashes"])
        .assert()
        .success()
        .stderr(predicate::str::contains("exported 6 users"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    common::run_on(ctx.backend, move |fresh| async move {
        fresh.cli().arg("bootstrap").assert().success();
        acme_with_editor(&fresh);
        fresh.cli().args(["user", "import", &file]).assert().success();
        let _ = tx.send(user_tables(&fresh).await);
    })
    .await;
    rx.await.expect("the fresh database's dump")
}

on_both_backends! {
    async fn an_export_re_imports_into_a_fresh_database_with_the_same_user_tables(ctx) {
        ctx.bootstrap_cli();
        acme_with_editor(&ctx);
        let created = [
            &["user", "create", "alice", "--email", "alice@example.com", "--phone", "+4915112345678",
              "--given-name", "=SUM(A1)", "--family-name", "@home", "--workspace", "Acme", "--role", "editor", "--random-password"][..],
            &["user", "create", "bob", "--email", "bob@example.com", "--given-name=-Bob", "--no-password"],
            &["user", "create", "fed", "--external", "--email", "fed@example.com", "--provider", "oidc", "--subject", "+sub-1"],
            &["user", "create", "root2", "--admin", "--workspace", "root", "--role", "root", "--random-password"],
            // A value that itself starts with `'` before a formula character survives exactly.
            &["user", "create", "carol", "--email", "carol@example.com", "--given-name", "=HYPERLINK(\"x\")",
              "--family-name", "'=HYPERLINK(\"y\")", "--random-password"],
        ];
        for args in created {
            ctx.cli().args(args).assert().success();
        }
        ctx.cli().args(["role", "assign", "alice", "viewer", "--workspace", "Acme"]).assert().success();
        // A trashed user is not exported (the trash is not an account to recreate).
        ctx.cli().args(["user", "create", "gone", "--no-password"]).assert().success();
        ctx.cli().args(["user", "delete", "gone", "--mode", "admin", "--yes"]).assert().success();
        let before = user_tables(&ctx).await;
        let before: Vec<String> = before.into_iter().filter(|l| !l.starts_with("gone:")).collect();
        assert!(before.iter().any(|l| l.contains("=SUM(A1)")), "{before:?}");
        assert_eq!(round_trip(&ctx, "csv").await, before, "CSV round trip");
        assert_eq!(round_trip(&ctx, "jsonl").await, before, "JSON Lines round trip");

        // CSV cells that a spreadsheet would run are neutralised; phone numbers are not.
        let csv = stdout(ctx.cli().args(["user", "export"]).assert().success());
        assert!(csv.starts_with("username,email,phone,given_name,family_name,external,provider,subject,role,memberships\n"), "{csv}");
        assert!(csv.contains("'=SUM(A1)") && csv.contains("'@home") && csv.contains("'-Bob") && csv.contains("'+sub-1"), "{csv}");
        assert!(csv.contains(",+4915112345678,"), "{csv}");
        assert!(csv.contains(",\"'=HYPERLINK(\"\"x\"\")\",\"''=HYPERLINK(\"\"y\"\")\","), "one more quote, read back as one less: {csv}");
        assert!(before.iter().any(|l| l.contains("|=HYPERLINK(\"x\")|'=HYPERLINK(\"y\")|")), "{before:?}");
        assert!(csv.contains(",Acme:editor;Acme:viewer\n"), "memberships in one cell: {csv}");
        assert!(!csv.contains("$argon2id$"), "no hashes without --with-password-hashes: {csv}");
        // An existing file is never overwritten.
        let file = ctx.dir.path().join("users.csv");
        ctx.cli().args(["user", "export", file.to_str().expect("path")]).assert().code(2).stderr(predicate::str::contains("never overwrites"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).expect("export file").permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
        }
    }

    async fn audit_list_filters_pages_and_shows_usernames_or_the_ids_of_erased_users(ctx) {
        ctx.bootstrap_cli();
        acme_with_editor(&ctx);
        for name in ["alice", "bob"] {
            ctx.cli().args(["user", "create", name, "--no-password"]).assert().success();
        }
        ctx.cli().args(["--actor", "ops", "role", "assign", "alice", "editor", "--workspace", "Acme"]).assert().success();
        let bob = user_id(&ctx, "bob");
        ctx.cli().args(["user", "delete", "bob", "--mode", "gdpr", "--yes"]).assert().success();

        let events = json(&ctx.cli().args(["audit", "list", "--user", "alice", "-o", "json"]).assert().success().get_output().stdout);
        let actions: Vec<&str> = events.as_array().expect("array").iter().map(|e| e["action"].as_str().expect("action")).collect();
        assert_eq!(actions, ["membership.assigned", "user.created"], "newest first");
        assert!(events.as_array().expect("array").iter().all(|e| e["username"] == "alice" && e["user"] == "alice"));

        // An erased user's events remain under its pseudonymous id, shown as the id.
        let erased = json(&ctx.cli().args(["audit", "list", "--user", &bob, "-o", "json"]).assert().success().get_output().stdout);
        let erased = erased.as_array().expect("array");
        assert!(erased.iter().any(|e| e["action"] == "user.deleted"), "{erased:?}");
        assert!(erased.iter().all(|e| e["username"].is_null() && e["user"] == bob.as_str()), "{erased:?}");

        let by_ops = json(&ctx.cli().args(["audit", "list", "--actor", "ops", "-o", "json"]).assert().success().get_output().stdout);
        assert_eq!(by_ops.as_array().expect("array").len(), 1);
        let acme = json(&ctx.cli().args(["audit", "list", "--workspace", "Acme", "-o", "json"]).assert().success().get_output().stdout);
        let acme: Vec<&str> = acme.as_array().expect("array").iter().map(|e| e["action"].as_str().expect("action")).collect();
        assert_eq!(acme, ["membership.assigned", "role.created", "role.created", "workspace.created"]);
        let users = json(&ctx.cli().args(["audit", "list", "--action", "user.*", "--all", "-o", "json"]).assert().success().get_output().stdout);
        assert!(users.as_array().expect("array").iter().all(|e| e["action"].as_str().expect("action").starts_with("user.")));
        let future = stdout(ctx.cli().args(["audit", "list", "--since", "2999-01-01", "-q"]).assert().success());
        assert!(future.is_empty(), "{future}");
        let past = stdout(ctx.cli().args(["audit", "list", "--until", "2000-01-01", "-q"]).assert().success());
        assert!(past.is_empty(), "{past}");
        ctx.cli().args(["audit", "list", "--since", "soon"]).assert().code(2);
        ctx.cli().args(["audit", "list", "--user", "nobody"]).assert().code(3);

        // Paging: one row, the hint names the cursor, the next page continues after it.
        let first = ctx.cli().args(["audit", "list", "--limit", "1", "-q"]).assert().success();
        let hint = stderr(&first);
        let first_id: i64 = stdout(first).trim().parse().expect("an event id");
        assert!(hint.contains(&format!("--after {first_id}")), "{hint}");
        let next: i64 = stdout(ctx.cli().args(["audit", "list", "--limit", "1", "-q", "--after", &first_id.to_string()]).assert().success())
            .trim()
            .parse()
            .expect("an event id");
        assert!(next < first_id);

        // Tab-separated in a pipe; `audit show` prints one event; a missing one exits 3.
        let tsv = stdout(ctx.cli().args(["audit", "list", "--user", "alice"]).assert().success());
        assert!(tsv.starts_with("id\toccurred_at\tactor\taction\tuser\tfields\n"), "{tsv}");
        assert!(tsv.lines().skip(1).all(|l| l.split('\t').count() == 6), "{tsv}");
        let shown = json(&ctx.cli().args(["audit", "show", &first_id.to_string(), "-o", "json"]).assert().success().get_output().stdout);
        assert_eq!(shown["id"], first_id);
        ctx.cli().args(["audit", "show", "999999"]).assert().code(3);
    }

    async fn tables_keep_one_line_per_row_at_80_columns_and_when_the_terminal_reports_none(ctx) {
        ctx.bootstrap_cli();
        ctx.cli()
            .args(["user", "create", "bartholomew-the-long-named", "--email", "bartholomew.the.very.long.address@subdomain.example.com", "--no-password"])
            .assert()
            .success();
        for columns in [80, 0] {
            let (out, code) = at_terminal(&ctx, columns, &[], &["user", "list"]);
            assert_eq!(code, 0, "{out}");
            let table: Vec<&str> = out.lines().filter(|l| l.starts_with(['┌', '│', '╞', '├', '└'])).collect();
            assert!(table.iter().all(|l| l.chars().count() <= 80), "wider than 80 at {columns} columns:\n{out}");
            // Borders (3), the header and one line per user: nothing wrapped.
            assert_eq!(table.len(), 3 + 1 + 2, "one line per row at {columns} columns:\n{out}");
            assert!(out.contains('…'), "long cells cut with …:\n{out}");
            assert!(out.contains("is_external"), "short column names whole:\n{out}");
        }
        let (out, code) = at_terminal(&ctx, 80, &[], &["user", "list", "--wide"]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("bartholomew.the.very.long.address@subdomain.example.com"), "--wide shows everything:\n{out}");
    }

    async fn piped_output_escapes_tabs_and_newlines_keeps_lists_in_one_cell_and_neutralises_formulas(ctx) {
        ctx.bootstrap_cli();
        acme_with_editor(&ctx);
        ctx.cli().args(["workspace", "create", "=HYPERLINK(\"http://x\")", "--type", "team"]).assert().success();
        let show = stdout(ctx.cli().args(["workspace", "show", "Acme"]).assert().success());
        for line in show.lines() {
            assert_eq!(line.split('\t').count(), 2, "one key and one value per line: {line:?}\n{show}");
        }
        assert!(show.contains("capabilities=docs.read,docs.write"), "{show}");
        let roles = stdout(ctx.cli().args(["role", "list", "--workspace", "Acme"]).assert().success());
        assert!(roles.lines().any(|l| l.split('\t').nth(3) == Some("docs.read,docs.write")), "{roles}");
        let list = stdout(ctx.cli().args(["workspace", "list"]).assert().success());
        assert!(list.contains("\t'=HYPERLINK(\"http://x\")\t"), "formula neutralised in TSV: {list}");
        let csv = stdout(ctx.cli().args(["workspace", "list", "-o", "csv"]).assert().success());
        assert!(csv.starts_with("id,name,type_slug,parent,is_root,members\n"), "{csv}");
        assert!(csv.contains(",\"'=HYPERLINK(\"\"http://x\"\")\","), "formula neutralised in CSV: {csv}");
        // Streamed lists (--all) and single records neutralise the same way.
        let all = stdout(ctx.cli().args(["workspace", "list", "--all"]).assert().success());
        assert!(all.contains("\t'=HYPERLINK(\"http://x\")\t"), "TSV, --all: {all}");
        let all = stdout(ctx.cli().args(["workspace", "list", "--all", "-o", "csv"]).assert().success());
        assert!(all.contains(",\"'=HYPERLINK(\"\"http://x\"\")\","), "CSV, --all: {all}");
        ctx.cli().args(["user", "create", "hyper", "--no-password", "--given-name", "=HYPERLINK(\"x\")", "--family-name", "'@y"]).assert().success();
        let show = stdout(ctx.cli().args(["user", "show", "hyper"]).assert().success());
        assert!(show.contains("\t'=HYPERLINK(\"x\")") && show.contains("\t''@y"), "TSV record: {show}");
        assert!(!show.contains("\t=HYPERLINK") && !show.contains("\t'@y"), "TSV record: {show}");
        let show = stdout(ctx.cli().args(["user", "show", "hyper", "-o", "csv"]).assert().success());
        assert!(show.contains("\"'=HYPERLINK(\"\"x\"\")\"") && show.contains(",''@y"), "CSV record: {show}");
    }

    async fn quiet_prints_ids_one_per_line_or_nothing(ctx) {
        ctx.bootstrap_cli();
        acme_with_editor(&ctx);
        ctx.cli().args(["user", "create", "alice", "--no-password", "--workspace", "Acme", "--role", "editor"]).assert().success();
        ctx.cli().args(["role", "assign", "alice", "viewer", "--workspace", "Acme"]).assert().success();
        ctx.cli().args(["user", "create", "bob", "--no-password"]).assert().success();
        let alice = user_id(&ctx, "alice");
        assert!(uuid::Uuid::parse_str(&alice).is_ok(), "{alice}");
        let members = stdout(ctx.cli().args(["workspace", "members", "Acme", "-q"]).assert().success());
        assert_eq!(members, format!("{alice}\n"), "a member with two roles is one id");
        let all = stdout(ctx.cli().args(["workspace", "members", "Acme", "-q", "--all"]).assert().success());
        assert_eq!(all, format!("{alice}\n"));
        let merged = stdout(ctx.cli().args(["user", "merge", "--keep", "alice", "--remove", "bob", "--dry-run", "-q"]).assert().success());
        assert_eq!(merged, format!("{alice}\n"), "the kept user's id, not `false`");
        for args in [&["session", "prune", "-q"][..], &["invite", "prune", "-q"], &["gdpr", "status", "-q"]] {
            let out = ctx.cli().args(args).assert();
            let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
            assert!(text.is_empty(), "{args:?} printed {text:?}");
        }
    }

    async fn user_list_in_a_workspace_shows_the_role_held_there(ctx) {
        ctx.bootstrap_cli();
        acme_with_editor(&ctx);
        ctx.cli().args(["user", "create", "alice", "--no-password", "--workspace", "Acme", "--role", "editor"]).assert().success();
        let list = json(&ctx.cli().args(["user", "list", "--workspace", "Acme", "-o", "json"]).assert().success().get_output().stdout);
        assert_eq!(list[0]["role"], "editor", "{list}");
        assert_eq!(list[0]["instance_role"], "user", "{list}");
        let tsv = stdout(ctx.cli().args(["user", "list", "--workspace", "Acme"]).assert().success());
        assert_eq!(tsv.lines().nth(1).and_then(|l| l.split('\t').nth(3)), Some("editor"), "{tsv}");
    }

    async fn a_password_where_a_secret_was_expected_is_never_echoed_and_stdin_at_a_terminal_prompts_without_echo(ctx) {
        ctx.bootstrap_cli();
        let out = ctx.cli().args(["user", "create", "zed", "--password", "hunter22zz"]).assert().code(2);
        let text = stderr(&out);
        assert!(!text.contains("hunter22zz") && text.contains("--password-stdin"), "{text}");
        let out = ctx.cli().args(["user", "create", "zed", "--password-env", "hunter22zz"]).assert().code(2);
        let text = stderr(&out);
        assert!(!text.contains("hunter22zz") && text.contains("--password-stdin"), "{text}");
        ctx.cli().args(["user", "show", "zed"]).assert().code(3);

        let (out, code) = at_terminal(
            &ctx,
            80,
            &[("Password", "typed secret 1\r"), ("Repeat", "typed secret 1\r")],
            &["user", "create", "zed", "--password-stdin"],
        );
        assert_eq!(code, 0, "{out}");
        assert!(!out.contains("typed secret 1"), "not echoed: {out}");
        ctx.cli().args(["auth", "check", "zed", "--password-stdin"]).write_stdin("typed secret 1\n").assert().success();
    }

    async fn an_erasure_the_rules_refuse_is_refused_before_the_typed_confirmation(ctx) {
        ctx.bootstrap_cli();
        let (out, code) = at_terminal(&ctx, 80, &[], &["user", "delete", "admin", "--mode", "gdpr"]);
        assert_eq!(code, 4, "{out}");
        assert!(out.contains("last active admin") && !out.contains("Type admin"), "{out}");
        // Another admin, outside the root workspace: admin is still its only member.
        ctx.cli().args(["user", "create", "other", "--admin", "--no-password"]).assert().success();
        let (out, code) = at_terminal(&ctx, 80, &[], &["user", "delete", "admin", "--mode", "gdpr"]);
        assert_eq!(code, 4, "{out}");
        assert!(out.contains("root workspace") && !out.contains("Type admin"), "{out}");
        let (out, code) = at_terminal(&ctx, 80, &[], &["user", "delete", "nobody", "--mode", "gdpr"]);
        assert_eq!(code, 3, "{out}");
    }

    async fn a_sweep_with_nothing_to_do_is_silent_unless_verbose_and_logs_can_be_json_lines(ctx) {
        ctx.bootstrap_cli();
        ctx.cli().args(["gdpr", "purge"]).assert().success().stderr(predicate::str::is_empty());
        ctx.cli().args(["-v", "gdpr", "purge"]).assert().success().stderr(predicate::str::contains("sweeper run"));
        let out = ctx.cli().args(["--log-format", "json", "-v", "user", "create", "kim", "--no-password"]).assert().success();
        let logs: Vec<Value> = stderr(&out)
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert!(!logs.is_empty(), "{}", stderr(&out));
        assert!(logs.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string()), "{logs:?}");
        // Timestamps in stderr notes have the JSON form (`Z`), not `+00:00`.
        let out = ctx.cli().args(["gdpr", "request", "kim", "--due-in", "30d", "--yes"]).assert().success();
        let note = stderr(&out);
        assert!(note.contains("Z") && !note.contains("+00:00"), "{note}");
    }

    async fn a_vetoed_purge_is_reported_once(ctx) {
        ctx.app_admin()
            .args(common::BOOTSTRAP_ARGS)
            .write_stdin(format!("{}\n", common::ADMIN_PASSWORD))
            .assert()
            .success();
        ctx.app_admin().args(["user", "create", "hold-x", "--no-password"]).assert().success();
        let id = String::from_utf8_lossy(&ctx.app_admin().args(["user", "show", "hold-x", "-q"]).assert().success().get_output().stdout)
            .trim()
            .to_owned();
        ctx.app_admin().args(["gdpr", "request", "hold-x", "--due-in", "0d", "--yes"]).assert().success();
        let out = ctx.app_admin().args(["gdpr", "purge"]).assert().code(5);
        let text = stderr(&out);
        assert_eq!(text.matches(&id).count(), 1, "the vetoed user once:\n{text}");
    }
}

/// The README's embedding snippet is an excerpt of `examples/app_admin`, which `cargo test`
/// compiles: every line of it is a line of those files, so the snippet compiles too.
#[test]
fn the_readme_embedding_snippet_is_taken_from_the_compiled_example() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let section = readme
        .split_once("## Embedding accountctl")
        .expect("embedding section")
        .1;
    let snippet = section
        .split_once("```rust\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a rust block")
        .0;
    let example: std::collections::HashSet<String> = ["main.rs", "calendar.rs"]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(format!("{}/examples/app_admin/{f}", env!("CARGO_MANIFEST_DIR")))
                .expect("example file")
                .lines()
                .map(|l| l.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let missing: Vec<&str> = snippet
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .filter(|l| !example.contains(*l))
        .collect();
    assert!(
        missing.is_empty(),
        "README lines not in examples/app_admin: {missing:#?}"
    );
}

/// Every man page has EXAMPLES (the README's commands under the page's own command),
/// ENVIRONMENT and FILES.
#[test]
fn man_pages_have_examples_environment_and_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_cmd::Command::cargo_bin("accountctl")
        .expect("binary")
        .args(["man", "--dir"])
        .arg(dir.path())
        .assert()
        .success();
    for page in ["accountctl.1", "accountctl-user-export.1", "accountctl-audit-list.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).expect("page");
        for section in [".SH EXAMPLES", ".SH ENVIRONMENT", ".SH FILES"] {
            assert!(text.contains(section), "{page} lacks {section}");
        }
        assert!(
            text.contains("NO_COLOR") && text.contains("/etc/accountctl/config.toml"),
            "{page}"
        );
    }
    let audit = std::fs::read_to_string(dir.path().join("accountctl-audit-list.1")).expect("page");
    assert!(audit.contains("accountctl audit list \\-\\-user alice"), "{audit}");
}

mod hints {
    use super::*;

    on_both_backends! {
        async fn not_found_errors_say_what_to_do_next(ctx) {
            ctx.bootstrap_cli();
            acme_with_editor(&ctx);
            ctx.cli().args(["user", "create", "dave", "--no-password"]).assert().success();
            ctx.cli().args(["workspace", "show", "Acem"]).assert().code(3).stderr(predicate::str::contains("did you mean `Acme`?"));
            ctx.cli()
                .args(["role", "assign", "dave", "editr", "--workspace", "Acme"])
                .assert()
                .code(3)
                .stderr(predicate::str::contains("did you mean `editor`?"));
            ctx.cli().args(["role", "assign", "dave", "editor"]).assert().code(2).stderr(predicate::str::contains("--workspace"));
            ctx.cli().args(["user", "show", "01a2b3"]).assert().code(3).stderr(predicate::str::contains("at least 8 characters"));
            ctx.cli().args(["session", "revoke", "01a2"]).assert().code(3).stderr(predicate::str::contains("at least 8 characters"));
            ctx.cli()
                .args(["user", "show", "dave\u{1b}"])
                .assert()
                .code(2)
                .stderr(predicate::str::contains("copied from a table"));
        }

        async fn verbose_levels_add_what_they_promise_and_never_a_secret(ctx) {
            ctx.bootstrap_cli();
            let password = "correct horse battery staple";
            let quiet = ctx.cli().env_remove("RUST_LOG").args(["user", "create", "erin", "--password-stdin"]).write_stdin(format!("{password}\n")).assert().success();
            let quiet = stderr(&quiet);
            assert!(!quiet.contains("INFO") && !quiet.contains("hook called"), "{quiet}");
            let info = ctx.cli().env_remove("RUST_LOG").args(["-v", "user", "create", "fred", "--password-stdin"]).write_stdin(format!("{password}\n")).assert().success();
            let info = stderr(&info);
            assert!(info.contains("INFO") && !info.contains("DEBUG") && !info.contains("hook called"), "{info}");
            let debug = ctx.cli().env_remove("RUST_LOG").args(["-vv", "user", "create", "gina", "--password-stdin"]).write_stdin(format!("{password}\n")).assert().success();
            let debug = stderr(&debug);
            // Each hook call with its event and time; each statement with its elapsed time.
            assert!(debug.contains("hook called") && debug.contains("event=\"created\"") && debug.contains("elapsed_ms"), "{debug}");
            assert!(debug.contains("INSERT INTO users") && debug.contains("elapsed"), "{debug}");
            for shown in [&quiet, &info, &debug] {
                assert!(!shown.contains(password) && !shown.contains("$argon2id$"), "{shown}");
            }
        }

        async fn a_config_file_error_names_its_line_but_never_echoes_the_line(ctx) {
            let config = ctx.dir.path().join("broken.toml");
            std::fs::write(&config, "actor = \"ops\"\ndatabase_url = \"postgres://app:Sup3rSecret@db.example/app\" trailing\n").expect("write");
            let out = ctx.cli().args(["--config", config.to_str().expect("utf8"), "user", "list"]).assert().code(2);
            let err = stderr(&out);
            assert!(err.contains("line 2, column"), "{err}");
            assert!(!err.contains("Sup3rSecret") && !err.contains("trailing"), "{err}");
        }

        async fn an_application_admin_binary_carries_its_own_version_description_and_config_file(ctx) {
            let help = ctx.app_admin().arg("--help").assert().success();
            let help = String::from_utf8_lossy(&help.get_output().stdout).into_owned();
            assert!(help.contains("calendar application") && !help.contains("firing the same"), "{help}");
            ctx.app_admin().arg("--version").assert().success().stdout(predicate::str::contains("1.0.0-calendar"));
            let conf = ctx.dir.path().join("xdg").join("app_admin");
            std::fs::create_dir_all(&conf).expect("config dir");
            std::fs::write(conf.join("config.toml"), "actor = \"calendar-ops\"\n").expect("config");
            let shown = ctx.app_admin().args(["config", "show", "-o", "json"]).env_remove("ACCOUNTCTL_ACTOR").assert().success();
            let shown = String::from_utf8_lossy(&shown.get_output().stdout).into_owned();
            assert!(shown.contains("calendar-ops"), "{shown}");
        }
    }
}
