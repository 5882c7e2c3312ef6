//! Bulk import and scripted provisioning, on SQLite and PostgreSQL.

mod common;

use std::fmt::Write as _;

use accountctl::domain::ImportRowStatus;
use accountctl::password::Secret;
use accountctl::services::import::{self, Format, ImportOptions, ImportProgress, OnConflict};
use argon2::password_hash::PasswordHasher;
use predicates::prelude::*;

fn bootstrap(ctx: &common::Ctx) {
    ctx.bootstrap_cli();
    ctx.acme_workspace_cli();
}

/// `n` good rows with a membership each, plus bad rows at known lines.
fn csv_with_bad_rows(n: usize) -> (String, Vec<usize>) {
    let mut text = String::from("username,email,given_name,memberships\n");
    let mut bad = Vec::new();
    for i in 0..n {
        let line = i + 2;
        match i {
            7 => {
                writeln!(text, "bad@name,x{i}@example.com,,").ok();
                bad.push(line);
            }
            500 => {
                writeln!(text, "user{i},not-an-email,,").ok();
                bad.push(line);
            }
            4321 => {
                writeln!(text, "user{i},u{i}@example.com,,Nowhere:member").ok();
                bad.push(line);
            }
            _ => {
                writeln!(text, "user{i},u{i}@example.com,Given{i},Acme:member").ok();
            }
        }
    }
    (text, bad)
}

on_both_backends! {
    async fn a_ten_thousand_row_csv_reports_bad_rows_by_line_and_a_rerun_creates_nothing(ctx) {
        bootstrap(&ctx);
        let (csv, bad) = csv_with_bad_rows(10_000);
        let path = ctx.dir.path().join("users.csv");
        std::fs::write(&path, csv).expect("write");
        let out = ctx.cli().args(["user", "import"]).arg(&path).args(["-o", "json"]).assert().code(5).get_output().stdout.clone();
        let results: Vec<serde_json::Value> = String::from_utf8_lossy(&out).lines().map(|l| serde_json::from_str(l).expect("JSONL")).collect();
        assert_eq!(results.len(), 10_000);
        let failed: Vec<u64> = results.iter().filter(|r| r["status"] == "error").map(|r| r["line"].as_u64().expect("line")).collect();
        assert_eq!(failed, bad.iter().map(|l| *l as u64).collect::<Vec<_>>());
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, 1 + 10_000 - 3);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships m JOIN roles r ON r.id = m.role_id WHERE r.name = 'member'").await, 10_000 - 3);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM folders WHERE is_home").await, 1 + 10_000 - 3, "on_user_created fired for every imported user");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.created'").await, 1 + 10_000 - 3);
        let again = ctx.cli().args(["user", "import"]).arg(&path).args(["--on-conflict", "skip", "-o", "json"]).assert().code(5).get_output().stdout.clone();
        let statuses: Vec<String> = String::from_utf8_lossy(&again).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSONL")["status"].as_str().unwrap_or_default().to_owned()).collect();
        assert_eq!(statuses.iter().filter(|s| *s == "created").count(), 0, "a re-run creates nothing");
        assert_eq!(statuses.iter().filter(|s| *s == "skipped").count(), 10_000 - 3);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, 1 + 10_000 - 3);
    }

    async fn one_batch_past_sqlites_bind_variable_limit_imports_and_its_lookups_find_every_row(ctx) {
        // 33,000 rows in one batch: its username, email and phone lookups bind more keys than
        // SQLite allows in one statement (32,766), and the re-run finds each row through them.
        bootstrap(&ctx);
        let n = 33_000;
        let mut text = String::from("username,email,phone\n");
        for i in 0..n {
            if i % 2 == 0 {
                writeln!(text, "bulk{i},bulk{i}@example.com,+4930{i:08}").ok();
            } else {
                writeln!(text, "bulk{i},bulk{i}@example.com,").ok();
            }
        }
        let path = ctx.dir.path().join("big.csv");
        std::fs::write(&path, format!("{text}holder,holder@example.com,+494099999999\n")).expect("write");
        ctx.cli().args(["user", "import"]).arg(&path).args(["--batch-size", "50000", "-q"]).assert().success();
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username LIKE 'bulk%'").await, n);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM passports WHERE kind = 'phone'").await, n / 2 + 1);
        // Again without the holder and with a newcomer giving the holder's phone: every old
        // row is found by its username (skipped), the newcomer by its phone (refused).
        text.push_str("newcomer,newcomer@example.com,+494099999999\n");
        std::fs::write(&path, &text).expect("write");
        let out = ctx.cli().args(["user", "import"]).arg(&path).args(["--batch-size", "50000", "--on-conflict", "skip", "-o", "json"]).assert().code(5).get_output().stdout.clone();
        let results: Vec<serde_json::Value> = String::from_utf8_lossy(&out).lines().map(|l| serde_json::from_str(l).expect("JSONL")).collect();
        assert_eq!(results.iter().filter(|r| r["status"] == "skipped").count(), n as usize);
        let refused: Vec<&serde_json::Value> = results.iter().filter(|r| r["status"] == "error").collect();
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0]["username"], "newcomer");
        assert_eq!(refused[0]["error"], "+494099999999 already belongs to another user");
    }

    async fn an_interrupted_import_reruns_to_completion_without_duplicates(ctx) {
        bootstrap(&ctx);
        let mut csv = String::from("username,email\n");
        for i in 0..20_000 {
            writeln!(csv, "k{i},k{i}@example.com").ok();
        }
        let path = ctx.dir.path().join("big.csv");
        std::fs::write(&path, csv).expect("write");
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("accountctl"))
            .args(["user", "import", path.to_str().expect("path"), "--batch-size", "200", "-q"])
            .env("DATABASE_URL", &ctx.url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        while ctx.count("SELECT COUNT(*) FROM users").await < 600 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Hold the import up mid-way, so it cannot finish before the signal lands however fast
        // it runs: a transaction that keeps every other writer of `users` out (SQLite's write
        // transaction does by itself).
        // (PostgreSQL: a lock the library's data-only handle does not take, so straight
        // through the driver.)
        let blocker = ctx.db.begin().await.expect("begin");
        let pg_blocker = if ctx.backend != common::Backend::Sqlite {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&ctx.direct_url).await.expect("connect");
            sqlx::query("BEGIN").execute(&mut c).await.expect("begin");
            sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE").execute(&mut c).await.expect("lock");
            Some(c)
        } else {
            None
        };
        // Ctrl-C: the statement in flight (here one waiting for the lock) is canceled on the
        // server and the batch's transaction rolls back; the connection still ends cleanly.
        std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill -INT");
        let status = child.wait().expect("wait");
        blocker.rollback().await.expect("rollback");
        if let Some(mut c) = pg_blocker {
            use sqlx::Connection;
            sqlx::query("ROLLBACK").execute(&mut c).await.expect("rollback");
            c.close().await.expect("close");
        }
        assert_eq!(status.code(), Some(130), "{status:?}");
        let partial = ctx.count("SELECT COUNT(*) FROM users").await - 1;
        assert!(partial < 20_000, "killed mid-way ({partial})");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM passports").await, partial + 1, "batches are whole: no user without its passport");
        ctx.cli().args(["user", "import"]).arg(&path).args(["--on-conflict", "skip", "-q"]).assert().success();
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, 20_001);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM passports").await, 20_001);
    }

    async fn imported_bcrypt_argon2_and_plaintext_passwords_log_in(ctx) {
        let app = ctx.app().await;
        let bcrypt_hash = bcrypt::hash("bcrypt password", 4).expect("bcrypt");
        let argon2i = argon2::Argon2::new(argon2::Algorithm::Argon2i, argon2::Version::V0x13, argon2::Params::new(8192, 2, 1, None).expect("params"))
            .hash_password(b"argon2i password")
            .expect("hash")
            .to_string();
        let argon2id = accountctl::password::hash_blocking(&Secret::new("argon2id password".into())).expect("hash");
        let jsonl = [
            serde_json::json!({ "username": "bee", "email": "bee@example.com", "password_hash": bcrypt_hash }),
            serde_json::json!({ "username": "ivy", "password_hash": argon2i }),
            serde_json::json!({ "username": "ida", "password_hash": argon2id }),
            serde_json::json!({ "username": "pat", "password": "plain password" }),
            serde_json::json!({ "username": "sha", "password_hash": "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA" }),
            serde_json::json!({ "username": "ext", "external": true, "provider": "oidc", "subject": "s1" }),
        ]
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n");
        let rows = import::parse(jsonl.as_bytes(), Format::Jsonl).expect("parse");
        let mut results = Vec::new();
        let summary = app.importer().import(rows, &ImportOptions::default(), |r| results.extend(r.to_vec())).await.expect("import");
        assert_eq!((summary.created, summary.failed), (5, 1), "{results:?}");
        assert!(results.iter().any(|r| r.username == "sha" && r.status == ImportRowStatus::Error));
        for (who, pw) in [("bee@example.com", "bcrypt password"), ("ivy", "argon2i password"), ("ida", "argon2id password"), ("pat", "plain password")] {
            let outcome = app.auth().login(who, &Secret::new(pw.into()), false).await.unwrap_or_else(|e| panic!("{who}: {e}"));
            assert_eq!(outcome.rehashed, who != "ida" && who != "pat", "{who}: weaker hashes are upgraded at login");
        }
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE password_hash LIKE '$argon2id$v=19$m=19456,t=2,p=1$%'").await, 4);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM folders WHERE user_id = (SELECT id FROM users WHERE username = 'ext')").await, 0);
    }

    async fn dry_run_atomic_and_update_behave_as_documented(ctx) {
        bootstrap(&ctx);
        let app = ctx.app().await;
        let before = ctx.count("SELECT COUNT(*) FROM users").await;
        let text = "username,email,given_name,role\nnew1,n1@example.com,One,\nnew2,not-an-email,,\n";
        let opts = |dry_run, atomic, on_conflict| ImportOptions { dry_run, atomic, on_conflict, ..ImportOptions::default() };
        let s = app.importer().import(import::parse(text.as_bytes(), Format::Csv).expect("csv"), &opts(true, false, OnConflict::Fail), |_| {}).await.expect("dry");
        assert_eq!((s.created, s.failed), (0, 1));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, before, "dry run writes nothing");
        let mut statuses = Vec::new();
        let s = app.importer().import(import::parse(text.as_bytes(), Format::Csv).expect("csv"), &opts(false, true, OnConflict::Fail), |r| statuses.extend(r.iter().map(|x| x.status.as_str()))).await.expect("atomic");
        assert_eq!(s.failed, 1);
        assert_eq!(statuses, vec!["rolled_back", "error"]);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, before, "atomic: all or nothing");
        let good = "username,email,given_name,role\nnew1,n1@example.com,One,\n";
        app.importer().import(import::parse(good.as_bytes(), Format::Csv).expect("csv"), &opts(false, true, OnConflict::Fail), |_| {}).await.expect("atomic ok");
        let update = "username,email,given_name,role\nnew1,n1@example.com,Uno,admin\n";
        let s = app.importer().import(import::parse(update.as_bytes(), Format::Csv).expect("csv"), &opts(false, false, OnConflict::Update), |_| {}).await.expect("update");
        assert_eq!(s.updated, 1);
        let shown = app.accounts().show(&accountctl::domain::UserRef::Username("new1".into())).await.expect("show");
        assert_eq!(shown.user.given_name.as_deref(), Some("Uno"));
        assert_eq!(shown.user.role, accountctl::domain::InstanceRole::Admin);
    }

    async fn a_provisioning_script_is_idempotent_and_parses_json(ctx) {
        bootstrap(&ctx);
        let id1 = ctx.cli().args(["user", "create", "svc", "--email", "svc@example.com", "--if-not-exists", "-q"]).assert().success().get_output().stdout.clone();
        let id2 = ctx.cli().args(["user", "create", "svc", "--email", "svc@example.com", "--if-not-exists", "-q"]).assert().success().stderr(predicate::str::contains("nothing changed")).get_output().stdout.clone();
        assert_eq!(id1, id2, "the existing id is printed");
        ctx.cli().args(["user", "create", "svc", "--email", "other@example.com", "--if-not-exists"]).assert().code(4);
        ctx.cli().args(["workspace-type", "create", "team", "--title", "Team", "--capabilities", "docs.*", "--if-not-exists"]).assert().success();
        ctx.cli().args(["workspace-type", "create", "team", "--title", "Other title", "--if-not-exists"]).assert().code(4);
        ctx.cli().args(["workspace", "create", "Acme", "--type", "team", "--if-not-exists"]).assert().success();
        ctx.cli().args(["role", "create", "member", "--workspace", "Acme", "--capabilities", "docs.read", "--if-not-exists"]).assert().success();
        ctx.cli().args(["role", "create", "member", "--workspace", "Acme", "--capabilities", "docs.write", "--if-not-exists"]).assert().code(4);
        let out = ctx.cli().args(["user", "list", "-o", "json", "--search", "sv"]).assert().success().get_output().stdout.clone();
        let users: serde_json::Value = serde_json::from_slice(&out).expect("pure JSON on stdout");
        assert_eq!(users.as_array().map(Vec::len), Some(1));
        let out = ctx.cli().args(["user", "list", "-q", "--search", "SVC@EX"]).assert().success().get_output().stdout.clone();
        assert_eq!(String::from_utf8_lossy(&out).trim(), String::from_utf8_lossy(&id1).trim(), "email prefix, any case");
        let out = ctx.cli().args(["user", "list", "-q", "--search", "zz"]).assert().success().get_output().stdout.clone();
        assert!(out.is_empty());
        let page1 = ctx.cli().args(["user", "list", "-q", "--limit", "1"]).assert().success().get_output().stdout.clone();
        let page2 = ctx.cli().args(["user", "list", "-q", "--limit", "1", "--after", "admin"]).assert().success().get_output().stdout.clone();
        assert_ne!(page1, page2);
        assert_eq!(String::from_utf8_lossy(&page2).trim(), String::from_utf8_lossy(&id1).trim(), "keyset page after admin is svc");
    }

    async fn duplicates_across_batches_name_the_line_of_the_first_occurrence(ctx) {
        bootstrap(&ctx);
        let app = ctx.app().await;
        // CRLF endings and batches of 3: the first occurrences are batches behind.
        let text = "username,email,phone\r\nann,ann@example.com,\r\nbob,bob@example.com,+15550100\r\ncid,cid@example.com,\r\n\
                    dan,dan@example.com,\r\nANN,ann2@example.com,\r\neve,BOB@example.com,\r\nfay,fay@example.com,+15550100\r\ngus,gus@example.com,\r\n";
        let options = ImportOptions { batch_size: 3, ..ImportOptions::default() };
        let mut results = Vec::new();
        let s = app
            .importer()
            .import(import::rows(text.as_bytes(), Format::Csv).expect("csv").collect::<Vec<_>>(), &options, |r| results.extend(r.iter().map(|x| (x.line, x.status.as_str(), x.error.clone().unwrap_or_default()))))
            .await
            .expect("import");
        assert_eq!((s.rows, s.created, s.failed), (8, 5, 3));
        let errors: Vec<(usize, String)> = results.iter().filter(|r| r.1 == "error").map(|r| (r.0, r.2.clone())).collect();
        assert_eq!(
            errors,
            vec![
                (6, "duplicate username in the input (first on line 2)".to_owned()),
                (7, "duplicate email in the input (first on line 3)".to_owned()),
                (8, "duplicate phone in the input (first on line 3)".to_owned()),
            ]
        );
        assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), (2..=9).collect::<Vec<_>>(), "results in line order");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username IN ('ann', 'bob', 'cid', 'dan', 'gus')").await, 5);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username IN ('eve', 'fay') OR lower(username) = 'ann' AND username <> 'ann'").await, 0);
    }

    async fn a_dry_run_streams_every_batch_and_still_finds_duplicates_without_writing(ctx) {
        bootstrap(&ctx);
        let app = ctx.app().await;
        let before = ctx.count("SELECT COUNT(*) FROM users").await;
        let mut text = String::from("username,email,memberships\n");
        for i in 0..50 {
            writeln!(text, "dry{i},dry{i}@example.com,Acme:member").ok();
        }
        writeln!(text, "dry3,other@example.com,").ok();
        let options = ImportOptions { dry_run: true, batch_size: 7, ..ImportOptions::default() };
        let mut batches = 0;
        let mut statuses = Vec::new();
        let s = app
            .importer()
            .import(import::parse(text.as_bytes(), Format::Csv).expect("csv"), &options, |r| {
                batches += 1;
                statuses.extend(r.iter().map(|x| (x.status.as_str(), x.error.clone())));
            })
            .await
            .expect("dry run");
        assert_eq!((s.rows, s.created, s.failed, s.dry_run), (51, 0, 1, true));
        assert_eq!(batches, 8, "results arrive batch by batch");
        assert_eq!(statuses.iter().filter(|(s, _)| *s == "valid").count(), 50);
        assert_eq!(statuses[50], ("error", Some("duplicate username in the input (first on line 5)".to_owned())));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, before, "a dry run writes nothing");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships m JOIN roles r ON r.id = m.role_id WHERE r.name = 'member'").await, 0);
    }

    async fn an_atomic_import_of_many_batches_commits_all_fires_hooks_per_batch_or_rolls_all_back(ctx) {
        bootstrap(&ctx);
        let app = ctx.app().await;
        let before = ctx.count("SELECT COUNT(*) FROM users").await;
        let mut text = String::from("username,email,password,memberships\n");
        for i in 0..40 {
            writeln!(text, "at{i},at{i}@example.com,,Acme:member").ok();
        }
        // A row the database refuses (unknown workspace), in the last batch.
        let bad = format!("{text}atbad,atbad@example.com,,Nowhere:member\n");
        let options = ImportOptions { atomic: true, batch_size: 6, ..ImportOptions::default() };
        let mut results = Vec::new();
        let s = app
            .importer()
            .import(import::parse(bad.as_bytes(), Format::Csv).expect("csv"), &options, |r| results.extend(r.iter().map(|x| (x.line, x.status.as_str(), x.id))))
            .await
            .expect("atomic");
        assert_eq!((s.rows, s.created, s.failed), (41, 0, 1));
        assert_eq!(results.len(), 41);
        assert!(results[..40].iter().all(|r| r.1 == "rolled_back" && r.2.is_none()), "{results:?}");
        assert_eq!(results[40].1, "error");
        assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), (2..=42).collect::<Vec<_>>());
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, before, "nothing from any batch stays");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.created'").await, before);

        // A plaintext password is hashed before the transaction; a within-file duplicate
        // fails the whole import too.
        let dup = format!("{text}at7,again@example.com,,\n");
        let s = app.importer().import(import::parse(dup.as_bytes(), Format::Csv).expect("csv"), &options, |_| {}).await.expect("atomic dup");
        assert_eq!((s.created, s.failed), (0, 1));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, before);

        let good = text.replace("at0,at0@example.com,,", "at0,at0@example.com,long enough password,");
        let mut created = 0;
        let s = app
            .importer()
            .import(import::parse(good.as_bytes(), Format::Csv).expect("csv"), &options, |r| created += r.iter().filter(|x| x.status == ImportRowStatus::Created && x.id.is_some()).count())
            .await
            .expect("atomic ok");
        assert_eq!((s.rows, s.created, s.failed, created), (40, 40, 0, 40));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, before + 40);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships m JOIN roles r ON r.id = m.role_id WHERE r.name = 'member'").await, 40);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM folders WHERE is_home AND name LIKE 'My Folder - at%'").await, 40, "on_user_created fired after the commit");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.created'").await, before + 40);
        app.auth().login("at0", &Secret::new("long enough password".into()), false).await.expect("the hashed password works");
    }

    async fn the_cli_streams_an_import_from_stdin(ctx) {
        bootstrap(&ctx);
        let mut text = String::from("{\"username\": \"s0\"}\n\n");
        for i in 1..30 {
            writeln!(text, "{{\"username\": \"s{i}\", \"email\": \"s{i}@example.com\"}}").ok();
        }
        writeln!(text, "{{\"username\": \"S2\"}}").ok();
        let out = ctx.cli().args(["user", "import", "-", "--format", "jsonl", "--batch-size", "4", "-o", "json"]).write_stdin(text).assert().code(5).get_output().stdout.clone();
        let results: Vec<serde_json::Value> = String::from_utf8_lossy(&out).lines().map(|l| serde_json::from_str(l).expect("JSONL")).collect();
        assert_eq!(results.len(), 31);
        assert_eq!(results[1]["line"], 3, "blank lines keep their numbers");
        assert_eq!(results[30]["line"], 32);
        assert_eq!(results[30]["error"], "duplicate username in the input (first on line 4)");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username LIKE 's%'").await, 30);
    }

    async fn backslashes_and_a_membership_named_twice_arrive_as_written(ctx) {
        bootstrap(&ctx);
        let app = ctx.app().await;
        // PostgreSQL's COPY text format reads a backslash as an escape and `\N` as NULL: the
        // import must escape them so the characters arrive as written.
        let jsonl = [
            serde_json::json!({ "username": "bs1", "email": "bs1@example.com", "given_name": "\\N", "family_name": "O\\Brien \u{e9}", "memberships": "Acme:member;acme:MEMBER" }),
            serde_json::json!({ "username": "bs2", "external": true, "provider": "idp\\x", "subject": "s\\N\\t" }),
        ]
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n");
        let mut results = Vec::new();
        let s = app
            .importer()
            .import(import::parse(jsonl.as_bytes(), Format::Jsonl).expect("parse"), &ImportOptions::default(), |r| results.extend(r.to_vec()))
            .await
            .expect("import");
        assert_eq!((s.created, s.failed), (2, 0), "{results:?}");
        assert_eq!(
            ctx.text_pairs("SELECT p.given_name, p.display_name FROM persons p JOIN users u ON u.person_id = p.id WHERE u.username = 'bs1'").await,
            vec![("\\N".to_owned(), "\\N O\\Brien \u{e9}".to_owned())]
        );
        assert_eq!(
            ctx.text_pairs("SELECT provider, subject FROM external_identities").await,
            vec![("idp\\x".to_owned(), "s\\N\\t".to_owned())]
        );
        assert_eq!(ctx.count("SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.username = 'bs1'").await, 1, "one membership, named twice");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM passports p JOIN users u ON u.id = p.user_id WHERE u.username = 'bs1' AND p.is_primary").await, 1);
    }

    async fn a_batch_mixing_new_existing_and_taken_rows_reports_each_on_its_line(ctx) {
        bootstrap(&ctx);
        let app = ctx.app().await;
        let text = "username,email,given_name\nm1,m1@example.com,One\nadmin,,Boss\nm2,ADMIN@example.com,\nm3,m3@example.com,\n";
        let run = |on_conflict| {
            let app = app.clone();
            async move {
                let mut results = Vec::new();
                let options = ImportOptions { on_conflict, batch_size: 10, ..ImportOptions::default() };
                app.importer()
                    .import(import::parse(text.as_bytes(), Format::Csv).expect("csv"), &options, |r| results.extend(r.iter().map(|x| (x.line, x.status.as_str(), x.id, x.error.clone()))))
                    .await
                    .expect("import");
                results
            }
        };
        let results = run(OnConflict::Skip).await;
        let statuses: Vec<(usize, &str)> = results.iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(statuses, vec![(2, "created"), (3, "skipped"), (4, "error"), (5, "created")]);
        assert_eq!(results[2].3.as_deref(), Some("admin@example.com already belongs to another user"));
        let ids = ctx.text_pairs("SELECT username, CAST(id AS TEXT) FROM users WHERE username IN ('m1', 'm3') ORDER BY username").await;
        assert_eq!(
            ids.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(),
            vec![results[0].2.expect("id").to_string(), results[3].2.expect("id").to_string()],
            "the ids reported are the rows written"
        );
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username = 'm2'").await, 0);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM folders f JOIN users u ON u.id = f.user_id WHERE u.username IN ('m1', 'm3') AND f.is_home").await, 2);
        // The same file again: fail mode reports every existing row; update mode changes
        // the names and creates nothing.
        let results = run(OnConflict::Fail).await;
        assert_eq!(results.iter().map(|r| r.1).collect::<Vec<_>>(), vec!["error"; 4]);
        let results = run(OnConflict::Update).await;
        assert_eq!(results.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(), vec![(2, "updated"), (3, "updated"), (4, "error"), (5, "updated")]);
        assert_eq!(ctx.text_pairs("SELECT u.username, p.given_name FROM users u JOIN persons p ON p.id = u.person_id WHERE u.username = 'admin'").await, vec![("admin".to_owned(), "Boss".to_owned())]);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users").await, 3);
    }

    async fn the_progress_counts_rows_as_they_are_hashed_before_their_batch_is_written(ctx) {
        bootstrap(&ctx);
        let app = ctx.app().await;
        let mut text = String::from("username,password\n");
        for i in 0..6 {
            writeln!(text, "pr{i},long enough password {i}").ok();
        }
        writeln!(text, "bad@name,long enough password").ok();
        let progress = std::sync::Arc::new(ImportProgress::default());
        let options = ImportOptions { batch_size: 4, progress: Some(progress.clone()), ..ImportOptions::default() };
        let mut seen = Vec::new();
        let s = app
            .importer()
            .import(import::parse(text.as_bytes(), Format::Csv).expect("csv"), &options, |r| seen.push((r.len(), progress.prepared(), progress.written())))
            .await
            .expect("import");
        assert_eq!((s.rows, s.created, s.failed), (7, 6, 1));
        // When the first batch's results arrive, its 4 rows were hashed and counted, and
        // none was counted as written yet.
        assert!(seen[0].1 >= 4 && seen[0].2 == 0, "{seen:?}");
        assert_eq!(seen.iter().map(|x| x.0).sum::<usize>(), 7);
        assert_eq!((progress.prepared(), progress.written()), (7, 7));
    }
}

/// Another writer takes a username after the import checked it and before its `COPY`
/// writes it: the `COPY` waits on the other transaction's row, fails with the unique
/// violation when that commits, and the batch is retried row by row, so the row is reported
/// on its own line and the batch's other rows are created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_username_taken_by_a_concurrent_writer_fails_only_its_row() {
    common::run_on(common::Backend::Postgres, |ctx| async move {
        use sqlx::Connection;
        bootstrap(&ctx);
        let app = ctx.app().await;
        let mut other = sqlx::PgConnection::connect(&ctx.direct_url).await.expect("connect");
        let mut writer = other.begin().await.expect("begin");
        sqlx::query(
            "WITH p AS (INSERT INTO persons (id, created_at, updated_at) VALUES (gen_random_uuid(), now(), now()) RETURNING id) \
             INSERT INTO users (id, person_id, username, created_at, updated_at) SELECT gen_random_uuid(), id, 'racer', now(), now() FROM p",
        )
        .execute(&mut *writer)
        .await
        .expect("the other writer's user");
        let text = "username,email\nr0,r0@example.com\nr1,r1@example.com\nracer,racer@example.com\nr3,r3@example.com\n";
        let import = tokio::spawn({
            let app = app.clone();
            async move {
                let mut results = Vec::new();
                let s = app
                    .importer()
                    .import(import::parse(text.as_bytes(), Format::Csv).expect("csv"), &ImportOptions::default(), |r| results.extend(r.iter().map(|x| (x.line, x.status.as_str(), x.error.clone()))))
                    .await;
                (s, results)
            }
        });
        // Wait until the import's COPY is blocked on the uncommitted row, then commit it.
        let mut watcher = sqlx::PgConnection::connect(&ctx.direct_url).await.expect("connect");
        let started = std::time::Instant::now();
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'COPY users%'",
            )
            .fetch_one(&mut watcher)
            .await
            .expect("pg_stat_activity");
            if waiting > 0 {
                break;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "the import's COPY never waited on the other writer");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        writer.commit().await.expect("commit");
        let (summary, results) = import.await.expect("import task");
        let summary = summary.expect("a conflict is a row error, not the import's");
        assert_eq!((summary.created, summary.failed), (3, 1), "{results:?}");
        assert_eq!(results.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(), vec![(2, "created"), (3, "created"), (4, "error"), (5, "created")]);
        assert!(results[2].2.as_deref().unwrap_or_default().contains("already exists"), "{results:?}");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username IN ('r0', 'r1', 'r3')").await, 3);
        assert_eq!(ctx.count("SELECT COUNT(*) FROM passports WHERE value = 'racer@example.com'").await, 0);
    })
    .await;
}
