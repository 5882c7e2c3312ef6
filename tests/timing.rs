//! The cost of a failed login, counted rather than timed: every way a login can fail (wrong
//! password, unknown user, password-less, disabled, trashed, malformed identifier) runs exactly
//! one password verification at the current parameters, so none can be told apart from a
//! wrong password by timing (no user-enumeration oracle). A wrong password for a user imported
//! with a cheaper hash (bcrypt cost 4) runs that verification and then one at the current
//! parameters, so it never answers faster than an unknown user.
//!
//! Timing processes proved this badly: on a loaded 2-core machine the fastest of 13 launches
//! still differed by more than the margin. The work is counted instead, in the library
//! ([`accountctl::password::password_work`]) and from the CLI (its trace of password work);
//! the wall time of `auth check` is measured by `cargo bench` (`ONLY=auth`).
//!
//! The counter is process-wide, so this file holds one test, running the backends in turn.

mod common;

use accountctl::password::{PasswordWork, Secret, password_work};

/// What one verification against the current argon2id parameters (m=19456 KiB, t=2) costs.
const ONE_VERIFICATION: PasswordWork = PasswordWork {
    hashes: 0,
    verifications: 1,
    argon2_kib_passes: 19_456 * 2,
    bcrypt_rounds: 0,
};

/// A wrong password for a user imported with a bcrypt cost-4 hash: that verification (2^4
/// rounds), then the dummy one at the current parameters, so the miss costs at least what
/// an unknown user's costs.
const CHEAP_HASH_MISS: PasswordWork = PasswordWork {
    hashes: 0,
    verifications: 2,
    argon2_kib_passes: 19_456 * 2,
    bcrypt_rounds: 16,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_login_costs_one_verification_like_a_wrong_password() {
    for backend in [common::Backend::Sqlite, common::Backend::Postgres] {
        common::run_on(backend, failed_logins_cost_the_same).await;
    }
}

async fn failed_logins_cost_the_same(ctx: common::Ctx) {
    ctx.bootstrap_cli();
    for args in [
        &["user", "create", "ext", "--external"][..],
        // Internal, yet without a password: `auth check` on an external user is refused up
        // front (it has no password to check), which says nothing `user show` does not.
        &["user", "convert", "ext", "--to-internal", "--yes"],
        &["user", "create", "off", "--no-password"],
        &["user", "disable", "off", "--yes"],
        &["user", "create", "binned", "--no-password"],
        &["user", "delete", "binned", "--mode", "admin", "--yes"],
    ] {
        ctx.cli().args(args).assert().success();
    }
    // Disabled and trashed users get a real password, so their check has a hash to verify.
    for user in ["off"] {
        ctx.exec(&format!(
            "UPDATE users SET password_hash = (SELECT password_hash FROM users WHERE username = 'admin') WHERE username = '{user}'"
        ))
        .await
        .expect("give a password");
    }
    ctx.exec(
        "UPDATE users SET password_hash = (SELECT password_hash FROM users WHERE username = 'admin') WHERE username LIKE 'binned%'",
    )
    .await
    .expect("give a password");
    let trashed = ctx
        .text_pairs("SELECT username, username FROM users WHERE deleted_at IS NOT NULL")
        .await;
    assert_eq!(trashed.len(), 1, "one trashed user: {trashed:?}");
    let trashed = trashed[0].0.clone();
    // A user imported from another system with a cheap bcrypt hash (cost 4, a millisecond).
    let legacy = bcrypt::hash("legacy password", 4).expect("bcrypt");
    let file = ctx.dir.path().join("legacy.csv");
    std::fs::write(&file, format!("username,password_hash\nlegacy,{legacy}\n")).expect("write");
    ctx.cli()
        .args(["user", "import", file.to_str().expect("path")])
        .assert()
        .success();

    let cases = [
        ("wrong password", "admin".to_owned(), ONE_VERIFICATION),
        ("unknown user", "nobody".to_owned(), ONE_VERIFICATION),
        ("password-less user", "ext".to_owned(), ONE_VERIFICATION),
        ("disabled user", "off".to_owned(), ONE_VERIFICATION),
        ("trashed user", trashed, ONE_VERIFICATION),
        ("malformed identifier", "\u{1}not a name".to_owned(), ONE_VERIFICATION),
        (
            "user imported with a bcrypt cost-4 hash",
            "legacy".to_owned(),
            CHEAP_HASH_MISS,
        ),
    ];

    // In the library: the work between two readings of the process's counter.
    let app = ctx.app().await;
    let wrong = Secret::new("wrong password".into());
    for (what, user, expected) in &cases {
        let before = password_work();
        let err = app.auth().login(user, &wrong, false).await.expect_err("refused");
        let work = password_work() - before;
        assert_eq!(err.exit_code(), 4, "{what}: {err}");
        assert_eq!(work, *expected, "{:?}: a login as the {what} {user:?}", ctx.backend);
        assert!(
            work.argon2_kib_passes >= ONE_VERIFICATION.argon2_kib_passes,
            "{what}: at least one verification at the current parameters"
        );
    }
    // The right password costs the same single verification (no rehash: current parameters).
    let before = password_work();
    app.auth()
        .login("admin", &Secret::new(common::ADMIN_PASSWORD.into()), false)
        .await
        .expect("signs in");
    assert_eq!(password_work() - before, ONE_VERIFICATION, "a successful login");

    // From the CLI, as an attacker would time it: the process's own trace of its password
    // work names one argon2 verification at the current parameters, and nothing else.
    for (what, user, expected) in &cases {
        let out = ctx
            .cli()
            .env("RUST_LOG", "off,accountctl::password=trace")
            .args(["auth", "check", user, "--password-stdin"])
            .write_stdin("wrong password\n")
            .assert()
            .code(4)
            .get_output()
            .stderr
            .clone();
        let stderr = String::from_utf8_lossy(&out);
        let work: Vec<&str> = stderr.lines().filter(|l| l.contains("password work")).collect();
        assert_eq!(
            work.len() as u64,
            expected.verifications,
            "{:?}: `auth check` as the {what}: {stderr}",
            ctx.backend
        );
        assert!(
            work.iter()
                .all(|l| l.contains("kind=\"verify\"") || l.contains("kind=verify")),
            "{what}: {stderr}"
        );
        // The last verification is the one at the current parameters (the dummy after a
        // cheap hash's miss); a bcrypt one comes first.
        let last = work.last().expect("one line at least");
        assert!(last.contains("m=19456") && last.contains("t=2"), "{what}: {stderr}");
        if expected.bcrypt_rounds > 0 {
            assert!(
                work[0].contains("bcrypt") && work[0].contains("cost=4"),
                "{what}: {stderr}"
            );
        }
    }

    // The imported user's right password signs in (one bcrypt verification, no padding) and
    // is rehashed at the current parameters; a miss then costs one verification again.
    let before = password_work();
    let outcome = app
        .auth()
        .login("legacy", &Secret::new("legacy password".into()), false)
        .await
        .expect("signs in");
    assert!(outcome.rehashed);
    let work = password_work() - before;
    assert_eq!(
        (work.verifications, work.hashes, work.bcrypt_rounds),
        (1, 1, 16),
        "{work:?}"
    );
    let before = password_work();
    app.auth().login("legacy", &wrong, false).await.expect_err("refused");
    assert_eq!(password_work() - before, ONE_VERIFICATION, "after the rehash");
}
