//! The failover drill on a real HA engine: a pg_auto_failover formation (monitor, primary,
//! secondary; `scripts/ha-formation.sh`) on ports 5465–5467, a failover during a sweeper
//! run, an import and CLI traffic, then: nothing lost, nothing half-done, the CLI exits 6
//! while no host accepts writes and 0 after.
//!
//! Skipped when `pg_autoctl` is not installed, except with `CI` set (`.ci/run` installs it),
//! where it fails. The formation is the test's own and is taken down at the end.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const HA_PORT: &str = "5465";

/// The formation, taken down (processes stopped, files deleted) when dropped.
struct Formation {
    dir: String,
    url: String,
}

impl Formation {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ha-formation.sh")
    }

    fn run(dir: &str, action: &str) -> Output {
        Command::new(Self::script())
            .arg(action)
            .env("HA_DIR", dir)
            .env("HA_PORT", HA_PORT)
            .env("HA_DB", "accountctl")
            .output()
            .expect("run scripts/ha-formation.sh")
    }

    fn up() -> Option<Self> {
        if Command::new("pg_autoctl").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "pg_autoctl is required in CI (apt-get install pg-auto-failover-cli postgresql-15-auto-failover)"
            );
            eprintln!("skipping the failover drill: pg_autoctl is not installed");
            return None;
        }
        let dir = format!("/tmp/accountctl-ha-drill-{}", std::process::id());
        let up = Self::run(&dir, "up");
        // Taken down when dropped, also when it came up only in part.
        let mut formation = Self {
            dir: dir.clone(),
            url: String::new(),
        };
        assert!(
            up.status.success(),
            "formation up: {}",
            String::from_utf8_lossy(&up.stderr)
        );
        formation.url = String::from_utf8_lossy(&Self::run(&dir, "url").stdout)
            .trim()
            .to_owned();
        assert!(
            formation.url.contains("target_session_attrs=read-write"),
            "{}",
            formation.url
        );
        Some(formation)
    }

    fn failover(&self) -> Output {
        Self::run(&self.dir, "failover")
    }
}

impl Drop for Formation {
    fn drop(&mut self) {
        let _ = Self::run(&self.dir, "down");
    }
}

fn cli(url: &str, dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_accountctl"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("ACCOUNTCTL_ACTOR", "drill")
        .env_remove("RUST_LOG")
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn accountctl");
    {
        use std::io::Write as _;
        let mut input = child.stdin.take().expect("stdin");
        let _ = input.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("wait")
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example server's binary (`cargo test` builds the examples next to `deps`).
fn server_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    profile.join("examples").join("server")
}

/// `POST /login` on the example server at `port` (HTTP/1.1, one connection per request):
/// the answer's status, or `None` when the server did not answer within 10 s.
fn sign_in(port: u16, username: &str, password: &str) -> Option<u16> {
    use std::io::{Read as _, Write as _};
    let body = format!(r#"{{"username":"{username}","password":"{password}"}}"#);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        stream,
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// The example server on the formation's multi-host URL, stopped (SIGTERM) when dropped.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    fn start(url: &str, dir: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.join("server.log")).expect("server log");
        let child = Command::new(server_bin())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the example server");
        Self { child, port }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// One number from the primary, through the CLI-independent driver.
/// Users the drill's import brings (100 per transaction): enough that the import is still
/// running when the switch comes, on a fast machine too.
const IMPORTED: i64 = 40_000;

fn count(url: &str, sql: &str) -> i64 {
    let out = Command::new("psql")
        .arg(url)
        .args(["-Atc", sql])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql}: {:?}", out))
}

#[test]
fn a_failover_during_a_sweep_and_an_import_loses_nothing_and_the_cli_exits_6_then_0() {
    let Some(formation) = Formation::up() else { return };
    let url = formation.url.clone();
    let dir = tempfile::tempdir().expect("temp dir");
    ok(
        &cli(&url, dir.path(), &common::BOOTSTRAP_ARGS, "admin password long\n"),
        "bootstrap",
    );
    // 300 users due for erasure, for a sweeper run that lasts through the switch.
    let mut due = String::new();
    for i in 0..300 {
        due.push_str(&format!(
            "{{\"username\": \"due{i:04}\", \"email\": \"due{i:04}@example.com\"}}\n"
        ));
    }
    ok(
        &cli(
            &url,
            dir.path(),
            &["user", "import", "-", "--format", "jsonl", "-q"],
            &due,
        ),
        "import due users",
    );
    ok(
        &cli(
            &url,
            dir.path(),
            &["gdpr", "request", "due0000", "--due-in", "0d", "--yes"],
            "",
        ),
        "gdpr request",
    );
    // The rest in one statement on the primary: the same state `gdpr request` leaves.
    let marked = Command::new("psql")
        .arg(&url)
        .args([
            "-Atc",
            "UPDATE users SET active = FALSE WHERE username LIKE 'due%'; \
             INSERT INTO erasure_requests (id, user_id, requested_at, due_at, requested_by, status) \
             SELECT gen_random_uuid(), id, now(), now(), 'drill', 'pending' FROM users WHERE username LIKE 'due%' AND username <> 'due0000'",
        ])
        .output()
        .expect("psql");
    assert!(marked.status.success(), "{}", String::from_utf8_lossy(&marked.stderr));

    // The import of IMPORTED new users, 100 per transaction, and the sweeper, both running
    // while the formation fails over.
    let mut rows = String::new();
    for i in 0..IMPORTED {
        rows.push_str(&format!(
            "{{\"username\": \"new{i:05}\", \"email\": \"new{i:05}@example.com\"}}\n"
        ));
    }
    let file = dir.path().join("new.jsonl");
    std::fs::write(&file, &rows).expect("write");
    let import = {
        let (url, dir, file) = (url.clone(), dir.path().to_path_buf(), file.clone());
        std::thread::spawn(move || {
            cli(
                &url,
                &dir,
                &[
                    "user",
                    "import",
                    file.to_str().expect("path"),
                    "--batch-size",
                    "100",
                    "-q",
                ],
                "",
            )
        })
    };
    let sweep = {
        let (url, dir) = (url.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || cli(&url, &dir, &["gdpr", "purge", "-q"], ""))
    };
    // The example server on the multi-host URL, signing a user in (a write: the session)
    // every 100 ms through the switch; its pool must follow the primary to the new host.
    ok(
        &cli(
            &url,
            dir.path(),
            &["user", "create", "web", "--password-stdin"],
            "web password long\n",
        ),
        "create web",
    );
    let server = Server::start(&url, dir.path());
    let serving_by = Instant::now() + Duration::from_secs(30);
    while sign_in(server.port, "web", "web password long") != Some(200) {
        assert!(Instant::now() < serving_by, "the example server never signed web in");
        std::thread::sleep(Duration::from_millis(100));
    }
    let web = {
        let port = server.port;
        std::thread::spawn(move || {
            let mut answers = Vec::new();
            let until = Instant::now() + Duration::from_secs(40);
            while Instant::now() < until {
                let status = sign_in(port, "web", "web password long");
                answers.push((Instant::now(), status));
                std::thread::sleep(Duration::from_millis(100));
            }
            answers
        })
    };
    // CLI traffic through the switch: a write every 100 ms, its exit code recorded.
    let traffic = {
        let (url, dir) = (url.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            let until = Instant::now() + Duration::from_secs(40);
            let mut n = 0;
            while Instant::now() < until {
                let name = format!("t{n:04}");
                n += 1;
                let out = cli(&url, &dir, &["user", "create", &name, "--no-password"], "");
                codes.push((
                    Instant::now(),
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                ));
                std::thread::sleep(Duration::from_millis(100));
            }
            codes
        })
    };
    // Fail over once the import is under way (its first batches committed), so the switch
    // meets it however fast the machine is: it has hundreds of batches still to go.
    let under_way = Instant::now() + Duration::from_secs(60);
    while count(&url, "SELECT COUNT(*) FROM users WHERE username LIKE 'new%'") == 0 {
        assert!(Instant::now() < under_way, "the import never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let switch_started = Instant::now();
    let failover = formation.failover();
    let switched = Instant::now();
    assert!(
        failover.status.success(),
        "failover: {}",
        String::from_utf8_lossy(&failover.stderr)
    );
    eprintln!("failover took {:?}", switched - switch_started);

    let import = import.join().expect("import thread");
    let sweep = sweep.join().expect("sweep thread");
    let codes = traffic.join().expect("traffic thread");
    eprintln!("import: {:?}; sweep: {:?}", import.status.code(), sweep.status.code());
    for (code, label) in [(import.status.code(), "import"), (sweep.status.code(), "sweep")] {
        assert!(
            matches!(code, Some(0 | 5 | 6)),
            "{label} exits 0, or 6 when the switch cut it: {code:?}"
        );
    }
    // Every command during the switch exits 0 or 6 (never 1, never a hang); after it, 0.
    let mut during = std::collections::BTreeMap::new();
    for (at, code, stderr) in &codes {
        assert!(matches!(code, Some(0 | 6)), "exit {code:?}: {stderr}");
        if *at > switched + Duration::from_secs(3) {
            assert_eq!(*code, Some(0), "after the switch: {stderr}");
        }
        *during.entry(*code).or_insert(0) += 1;
    }
    eprintln!("CLI writes through the switch, by exit code: {during:?}");
    // The server: never a 500; some sign-in failed during the switch or not, but every one
    // from the end of the switch plus the failover's own duration on is 200, and the first
    // 200 after the switch ended is reported.
    let answers = web.join().expect("web thread");
    let failover_time = switched - switch_started;
    let mut web_by_status = std::collections::BTreeMap::new();
    for (at, status) in &answers {
        *web_by_status.entry(*status).or_insert(0) += 1;
        assert_ne!(*status, Some(500), "the server answered 500 during the drill");
        if *at > switched + failover_time.max(Duration::from_secs(3)) {
            assert_eq!(
                *status,
                Some(200),
                "the server serves again within the failover's time after it ({failover_time:?}): log {}",
                std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
            );
        }
    }
    let back = answers
        .iter()
        .find(|(at, status)| *at >= switched && *status == Some(200))
        .map(|(at, _)| at.saturating_duration_since(switched));
    eprintln!(
        "server sign-ins through the switch, by status: {web_by_status:?}; first 200 after the switch ended: {back:?}"
    );
    assert!(back.is_some(), "the server never signed in after the switch");
    drop(server);
    // It got there by following the primary to its new host (the old one is a standby now,
    // where every sign-in would fail).
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    assert!(
        log.contains("the primary moved"),
        "the server's pool followed the primary: {log}"
    );
    // The switch must have cut something, or the drill showed nothing: the import, the sweep
    // or one of the writes met it and exited 6. Which one depends on the machine's speed (a
    // write that starts during the switch may wait for the new primary and exit 0).
    let cut = during.get(&Some(6)).copied().unwrap_or(0)
        + [import.status.code(), sweep.status.code()]
            .iter()
            .filter(|c| **c == Some(6))
            .count();
    assert!(
        cut > 0,
        "some command met the switch and exited 6: import {:?}, sweep {:?}, writes {during:?}",
        import.status.code(),
        sweep.status.code()
    );

    // Whatever was cut is finished by running it again, and nothing is half-done.
    ok(
        &cli(
            &url,
            dir.path(),
            &[
                "user",
                "import",
                file.to_str().expect("path"),
                "--on-conflict",
                "skip",
                "-q",
            ],
            "",
        ),
        "import again",
    );
    ok(&cli(&url, dir.path(), &["gdpr", "purge", "-q"], ""), "sweep again");
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM users WHERE username LIKE 'new%'"),
        IMPORTED
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM passports WHERE value LIKE 'new%@example.com'"
        ),
        IMPORTED,
        "every imported user has its passport"
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM users u WHERE u.username LIKE 'new%' AND NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.subject_user_id = u.id AND a.event = 'user.created')"
        ),
        0,
        "every imported user has its user.created audit row"
    );
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM users WHERE username LIKE 'due%'"),
        0,
        "every due user purged"
    );
    assert_eq!(count(&url, "SELECT COUNT(*) FROM passports WHERE value LIKE 'due%'"), 0);
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM user_tombstones WHERE mode = 'gdpr_purge'"),
        300
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM persons p WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.person_id = p.id)"
        ),
        0
    );
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM sweeper_runs WHERE finished_at IS NULL"),
        0,
        "the run the switch cut is recorded as failed or abandoned, not left running"
    );
    let created_ok = codes.iter().filter(|(_, c, _)| *c == Some(0)).count() as i64;
    // A write cut at its commit may have committed (the client cannot know): at least every
    // one that exited 0 is there.
    let created = count(&url, "SELECT COUNT(*) FROM users WHERE username LIKE 't%'");
    assert!(
        created >= created_ok,
        "{created} users made, {created_ok} writes exited 0"
    );
}
