//! A randomized soak with faults, and the invariants checked on the whole database afterwards
//! (Jepsen's approach, scaled to one machine). See `docs/reliability.md`.
//!
//! ```text
//! cargo run --release --example soak -- --backend sqlite --duration 10m [--seed N]
//! cargo run --release --example soak -- --backend postgres --duration 10m [--seed N]
//! cargo run --release --example soak -- --backend postgres --duration 10m --failover \
//!     --database-url "$(scripts/ha-formation.sh url)"
//! ```
//!
//! At once, until the duration is up:
//! - `--workers` (default 4) threads each run random commands as processes of the
//!   application's admin binary `app_admin` (the whole `accountctl` command line plus a
//!   `calendar` hook that vetoes deleting `hold-*` users): create, import, role
//!   assign/revoke, invite create/accept, disable/enable, set-password, gdpr request/cancel,
//!   merge, admin delete/restore, gdpr delete, the sweeper; and the plain `accountctl` reading;
//! - the example server (`--calendar-app`) under sign-in / `/me` / capabilities / refresh / logout traffic;
//! - a fault injector: SIGKILL, SIGINT or SIGTERM to a random running command, SIGKILL to
//!   the server (restarted), `pg_terminate_backend` of a random connection (PostgreSQL), and
//!   with `--failover` a switch-over of the pg_auto_failover formation
//!   (`scripts/ha-formation.sh failover`).
//!
//! Then the checker verifies the invariants below on the full database and prints operations
//! done, faults injected and invariants checked. Exit 0 when all hold; 1 naming the first
//! violated invariant and the seed that replays the run (as far as timing allows: the seed
//! fixes every random choice, not the scheduler).
//!
//! Which binary writes: the database is the application's (`app_admin` migrates it and its
//! registry records the `calendar` hook), so every write runs through `app_admin` or the
//! example server wired with the same hooks (`--calendar-app`); the plain `accountctl`, which
//! lacks them, may only read, and does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A small, seedable generator (SplitMix64): the soak's choices depend on the seed only.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len() as u64) as usize)
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Args {
    backend: Backend,
    duration: Duration,
    seed: u64,
    failover: bool,
    workers: usize,
    database_url: Option<String>,
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "error: {msg}\nusage: soak --backend sqlite|postgres --duration 10m [--seed N] [--failover] [--workers N] [--database-url URL]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut backend = None;
    let mut duration = Duration::from_secs(600);
    let mut seed = None;
    let mut failover = false;
    let mut workers = 4;
    let mut database_url = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        match arg.as_str() {
            "--backend" => {
                backend = Some(match value("--backend").as_str() {
                    "sqlite" => Backend::Sqlite,
                    "postgres" => Backend::Postgres,
                    other => usage(&format!("unknown backend {other}")),
                })
            }
            "--duration" => {
                duration = humantime::parse_duration(&value("--duration"))
                    .unwrap_or_else(|e| usage(&format!("--duration: {e}")))
            }
            "--seed" => seed = Some(value("--seed").parse().unwrap_or_else(|_| usage("--seed: a number"))),
            "--workers" => {
                workers = value("--workers")
                    .parse()
                    .unwrap_or_else(|_| usage("--workers: a number"))
            }
            "--database-url" => database_url = Some(value("--database-url")),
            "--failover" => failover = true,
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let backend = backend.unwrap_or_else(|| usage("--backend is required"));
    if failover && (backend != Backend::Postgres || database_url.is_none()) {
        usage("--failover needs --backend postgres and --database-url (the formation's URL)");
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
    });
    Args {
        backend,
        duration,
        seed,
        failover,
        workers,
        database_url,
    }
}

/// The binaries the soak runs, built next to it (same profile).
struct Bins {
    accountctl: PathBuf,
    app_admin: PathBuf,
    server: PathBuf,
}

fn binaries() -> Bins {
    let exe = std::env::current_exe().unwrap_or_else(|e| usage(&format!("own path: {e}")));
    let examples = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let profile_dir = examples.parent().map(Path::to_path_buf).unwrap_or_default();
    let release = profile_dir.file_name().is_some_and(|n| n != "debug");
    // `cargo run --example soak` builds only this example: build what it runs.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args([
        "build",
        "--bin",
        "accountctl",
        "--example",
        "server",
        "--example",
        "app_admin",
    ]);
    if release {
        build.arg("--release");
    }
    match build.status() {
        Ok(s) if s.success() => {}
        other => usage(&format!("building the binaries the soak runs failed: {other:?}")),
    }
    Bins {
        accountctl: profile_dir.join("accountctl"),
        app_admin: examples.join("app_admin"),
        server: examples.join("server"),
    }
}

#[derive(Default)]
struct Stats {
    /// (operation, outcome) → count; outcome is `exit N` or `signal`.
    ops: BTreeMap<(String, String), u64>,
    faults: BTreeMap<String, u64>,
    http: BTreeMap<String, u64>,
}

/// A user the soak made, with the password it gave (for the server traffic).
#[derive(Clone)]
struct Known {
    name: String,
    password: Option<String>,
}

struct Shared {
    seed: u64,
    backend: Backend,
    url: String,
    dir: PathBuf,
    bins: Bins,
    deadline: Instant,
    stop: AtomicBool,
    /// Running command processes: pid → operation.
    children: Mutex<HashMap<u32, String>>,
    server_pid: AtomicU64,
    stats: Mutex<Stats>,
    users: Mutex<Vec<Known>>,
    holds: Mutex<Vec<String>>,
    invites: Mutex<Vec<String>>,
    /// Violations seen while running (an exit 1, a 500), first first.
    violations: Mutex<Vec<(String, String)>>,
    /// Token pairs the server issued: (username, access, refresh).
    tokens: Mutex<Vec<(String, String, String)>>,
    counter: AtomicU64,
}

impl Shared {
    fn fresh_name(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{:03}n{n:06}", self.seed % 1000)
    }

    fn violation(&self, invariant: &str, detail: String) {
        self.violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((invariant.to_owned(), detail));
    }

    fn count_op(&self, op: &str, outcome: String) {
        *self
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ops
            .entry((op.to_owned(), outcome))
            .or_default() += 1;
    }

    fn count_fault(&self, fault: &str) {
        *self
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .faults
            .entry(fault.to_owned())
            .or_default() += 1;
    }

    fn command(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env("DATABASE_URL", &self.url)
            .env("ACCOUNTCTL_ACTOR", "soak")
            .env_remove("RUST_LOG")
            .env_remove("ACCOUNTCTL_CONFIG")
            .env("XDG_CONFIG_HOME", self.dir.join("xdg"))
            .current_dir(&self.dir);
        cmd
    }

    /// Runs one command as a process the fault injector may signal; returns the exit code
    /// (`None`: ended by a signal) and its stdout. Exit 1 (internal error) is a violation.
    fn run(&self, op: &str, bin: &Path, args: &[String], stdin: &str) -> (Option<i32>, String) {
        let child = self
            .command(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                self.violation("every command starts", format!("{op}: {e}"));
                return (None, String::new());
            }
        };
        let pid = child.id();
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid, op.to_owned());
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        let out = child.wait_with_output();
        self.children.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
        let Ok(out) = out else {
            return (None, String::new());
        };
        let code = out.status.code();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        self.count_op(op, code.map_or_else(|| "signal".to_owned(), |c| format!("exit {c}")));
        if code == Some(1) || stderr.contains("panicked") {
            self.violation(
                "no command fails with an internal error (exit 1) or panics",
                format!("{op} {args:?}: {}", stderr.trim()),
            );
        }
        (code, String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// One worker: random commands until the deadline.
fn worker(shared: Arc<Shared>, mut rng: Rng) {
    // Every write goes through the application's admin binary: the database is the
    // application's (its registry refuses writes from a binary without its hooks); the plain
    // `accountctl` reads.
    let reader = shared.bins.accountctl.clone();
    let acc = shared.bins.app_admin.clone();
    let adm = shared.bins.app_admin.clone();
    while Instant::now() < shared.deadline && !shared.stop.load(Ordering::Relaxed) {
        let users: Vec<Known> = shared.users.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let holds: Vec<String> = shared.holds.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let some = |rng: &mut Rng| {
            rng.pick(&users)
                .map(|k| k.name.clone())
                .unwrap_or_else(|| "admin".into())
        };
        match rng.below(100) {
            0..=11 => {
                let name = shared.fresh_name("u");
                let password = format!("pw {name} long enough");
                let (code, _) = shared.run(
                    "user create",
                    &acc,
                    &strings(&[
                        "user",
                        "create",
                        &name,
                        "--email",
                        &format!("{name}@soak.example"),
                        "--password-stdin",
                    ]),
                    &format!("{password}\n"),
                );
                if code == Some(0) {
                    shared.users.lock().unwrap_or_else(|e| e.into_inner()).push(Known {
                        name,
                        password: Some(password),
                    });
                }
            }
            12..=17 => {
                let mut rows = String::new();
                let mut made = Vec::new();
                for _ in 0..=rng.below(4) {
                    let name = shared.fresh_name("i");
                    let password = format!("pw {name} long enough");
                    rows.push_str(
                        &serde_json::json!({"username": name, "email": format!("{name}@soak.example"), "password": password, "memberships": "Acme:member"})
                            .to_string(),
                    );
                    rows.push('\n');
                    made.push(Known {
                        name,
                        password: Some(password),
                    });
                }
                let (code, _) = shared.run(
                    "user import",
                    &acc,
                    &strings(&[
                        "user",
                        "import",
                        "-",
                        "--format",
                        "jsonl",
                        "--on-conflict",
                        "skip",
                        "-q",
                    ]),
                    &rows,
                );
                if matches!(code, Some(0 | 5)) {
                    shared.users.lock().unwrap_or_else(|e| e.into_inner()).extend(made);
                }
            }
            18..=25 => {
                let (verb, user) = (if rng.chance(50) { "assign" } else { "revoke" }, some(&mut rng));
                let args = if rng.chance(30) {
                    // The instance role: revoking the last admin must be refused.
                    let who = if rng.chance(50) { "admin".to_owned() } else { user };
                    strings(&["role", verb, &who, "admin", "--yes"])
                } else {
                    let role = if rng.chance(50) { "member" } else { "editor" };
                    strings(&["role", verb, &user, role, "--workspace", "Acme", "--yes"])
                };
                shared.run(&format!("role {verb}"), &acc, &args, "");
            }
            26..=31 => {
                let email = format!("{}@invite.example", shared.fresh_name("v"));
                let (code, out) = shared.run(
                    "invite create",
                    &acc,
                    &strings(&[
                        "invite",
                        "create",
                        "--workspace",
                        "Acme",
                        "--role",
                        "member",
                        "--email",
                        &email,
                        "-q",
                    ]),
                    "",
                );
                if code == Some(0)
                    && let Some(token) = out.lines().next().filter(|t| !t.trim().is_empty())
                {
                    shared
                        .invites
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(token.trim().to_owned());
                }
            }
            32..=36 => {
                let token = {
                    let mut invites = shared.invites.lock().unwrap_or_else(|e| e.into_inner());
                    if invites.is_empty() {
                        None
                    } else {
                        let at = rng.below(invites.len() as u64) as usize;
                        Some(invites.swap_remove(at))
                    }
                };
                if let Some(token) = token {
                    let file = shared
                        .dir
                        .join(format!("token-{}", shared.counter.fetch_add(1, Ordering::Relaxed)));
                    let _ = std::fs::write(&file, format!("{token}\n"));
                    let name = shared.fresh_name("a");
                    let password = format!("pw {name} long enough");
                    let (code, _) = shared.run(
                        "invite accept",
                        &acc,
                        &[
                            "invite".into(),
                            "accept".into(),
                            "--token-file".into(),
                            file.display().to_string(),
                            "--new-username".into(),
                            name.clone(),
                            "--password-stdin".into(),
                        ],
                        &format!("{password}\n"),
                    );
                    let _ = std::fs::remove_file(&file);
                    if code == Some(0) {
                        shared.users.lock().unwrap_or_else(|e| e.into_inner()).push(Known {
                            name,
                            password: Some(password),
                        });
                    }
                }
            }
            37..=44 => {
                let user = some(&mut rng);
                if rng.chance(50) {
                    shared.run("user disable", &acc, &strings(&["user", "disable", &user, "--yes"]), "");
                } else {
                    shared.run("user enable", &acc, &strings(&["user", "enable", &user]), "");
                }
            }
            45..=49 => {
                let user = some(&mut rng);
                let password = format!("pw {user} long enough");
                let (code, _) = shared.run(
                    "user set-password",
                    &acc,
                    &strings(&["user", "set-password", &user, "--password-stdin"]),
                    &format!("{password}\n"),
                );
                if code == Some(0) {
                    // The traffic keeps the password it knows (the same text): nothing to update.
                }
            }
            50..=55 => {
                let (keep, remove) = (some(&mut rng), some(&mut rng));
                let remove = if rng.chance(15) {
                    rng.pick(&holds).cloned().unwrap_or(remove)
                } else {
                    remove
                };
                shared.run(
                    "user merge",
                    &adm,
                    &strings(&["user", "merge", "--keep", &keep, "--remove", &remove, "--yes"]),
                    "",
                );
            }
            56..=63 => {
                let user = some(&mut rng);
                shared.run(
                    "user delete --mode admin",
                    &adm,
                    &strings(&["user", "delete", &user, "--mode", "admin", "--yes"]),
                    "",
                );
            }
            64..=68 => {
                let user = some(&mut rng);
                shared.run("user restore", &adm, &strings(&["user", "restore", &user]), "");
            }
            69..=74 => {
                let user = if rng.chance(20) {
                    rng.pick(&holds).cloned().unwrap_or_else(|| some(&mut rng))
                } else {
                    some(&mut rng)
                };
                shared.run(
                    "gdpr request",
                    &acc,
                    &strings(&["gdpr", "request", &user, "--due-in", "0d", "--yes"]),
                    "",
                );
            }
            75..=79 => {
                let user = some(&mut rng);
                shared.run("gdpr cancel", &acc, &strings(&["gdpr", "cancel", &user, "--yes"]), "");
            }
            80..=87 => {
                shared.run("gdpr purge (sweeper)", &adm, &strings(&["gdpr", "purge", "-q"]), "");
            }
            88..=92 => {
                if let Some(hold) = rng.pick(&holds).cloned() {
                    let mode = if rng.chance(50) { "gdpr" } else { "admin" };
                    let (code, _) = shared.run(
                        "user delete hold-* (vetoed)",
                        &adm,
                        &strings(&["user", "delete", &hold, "--mode", mode, "--yes"]),
                        "",
                    );
                    if code == Some(0) {
                        shared.violation(
                            "every vetoed delete is refused",
                            format!("user delete {hold} --mode {mode} exited 0"),
                        );
                    }
                }
            }
            _ => {
                let user = some(&mut rng);
                shared.run(
                    "user show (plain accountctl, read)",
                    &reader,
                    &strings(&["user", "show", &user]),
                    "",
                );
            }
        }
    }
}

/// Sends `signal` to `pid`.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
}

/// The fault injector: a fault every 0.3–1.5 s until the deadline.
fn faults(shared: Arc<Shared>, mut rng: Rng, failover: bool) {
    let mut last_failover = Instant::now();
    while Instant::now() < shared.deadline && !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1200)));
        if failover && last_failover.elapsed() > Duration::from_secs(45) {
            last_failover = Instant::now();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ha-formation.sh");
            let ok = Command::new(&script)
                .arg("failover")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            shared.count_fault(if ok {
                "failover"
            } else {
                "failover (refused by the engine)"
            });
            continue;
        }
        match rng.below(100) {
            0..=59 => {
                let victims: Vec<(u32, String)> = shared
                    .children
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|(p, o)| (*p, o.clone()))
                    .collect();
                let mut sorted = victims;
                sorted.sort();
                if let Some((pid, op)) = rng.pick(&sorted).cloned() {
                    let sig = *rng.pick(&["KILL", "INT", "TERM"]).unwrap_or(&"KILL");
                    signal(pid, sig);
                    shared.count_fault(&format!("SIG{sig} to {op}"));
                }
            }
            60..=79 => {
                if shared.backend == Backend::Postgres {
                    let sql = "SELECT COUNT(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity \
                               WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' \
                               ORDER BY random() LIMIT 1) t";
                    if let Ok(n) = checker_count_blocking(&shared.url, sql)
                        && n > 0
                    {
                        shared.count_fault("pg_terminate_backend");
                    }
                }
            }
            _ => {
                let pid = shared.server_pid.load(Ordering::Relaxed) as u32;
                if pid != 0 {
                    signal(pid, "KILL");
                    shared.count_fault("SIGKILL to the server");
                }
            }
        }
    }
}

/// The checker's connection: SQLite directly, PostgreSQL on the primary of the URL's hosts.
enum Check {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// The URL of the read-write host among a libpq multi-host URL's (single host: itself).
async fn primary_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or("not a postgres URL")?;
    let (auth_hosts, path) = rest.split_once('/').ok_or("no database in the URL")?;
    let (auth, hosts) = match auth_hosts.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), auth_hosts),
    };
    let db = path.split('?').next().unwrap_or_default();
    let mut last = String::new();
    for host in hosts.split(',') {
        let candidate = format!("postgres://{auth}{host}/{db}");
        match <sqlx::PgConnection as sqlx::Connection>::connect(&candidate).await {
            Ok(mut conn) => {
                let standby: Result<bool, _> = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                    .fetch_one(&mut conn)
                    .await;
                let _ = sqlx::Connection::close(conn).await;
                if let Ok(false) = standby {
                    return Ok(candidate);
                }
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("no read-write host in {hosts}: {last}"))
}

impl Check {
    async fn open(backend: Backend, url: &str) -> Result<Self, String> {
        match backend {
            Backend::Sqlite => sqlx::SqlitePool::connect(url)
                .await
                .map(Check::Sqlite)
                .map_err(|e| e.to_string()),
            Backend::Postgres => {
                let primary = primary_url(url).await?;
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&primary)
                    .await
                    .map(Check::Postgres)
                    .map_err(|e| e.to_string())
            }
        }
    }

    async fn close(&self) {
        match self {
            Check::Sqlite(p) => p.close().await,
            Check::Postgres(p) => p.close().await,
        }
    }

    async fn count(&self, sql: &str) -> Result<i64, String> {
        let q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
        match self {
            Check::Sqlite(p) => q.fetch_one(p).await,
            Check::Postgres(p) => {
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                    .fetch_one(p)
                    .await
            }
        }
        .map_err(|e| format!("{sql}: {e}"))
    }

    async fn texts(&self, sql: &str) -> Result<Vec<(String, String)>, String> {
        match self {
            Check::Sqlite(p) => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await,
            Check::Postgres(p) => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await,
        }
        .map_err(|e| format!("{sql}: {e}"))
    }

    /// Every text value of every table, one line per row.
    async fn dump(&self) -> Result<String, String> {
        let mut out = String::new();
        match self {
            Check::Sqlite(p) => {
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                )
                .fetch_all(p)
                .await
                .map_err(|e| e.to_string())?;
                for t in tables {
                    let cols: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT name FROM pragma_table_info('{t}')"
                    )))
                    .fetch_all(p)
                    .await
                    .map_err(|e| e.to_string())?;
                    let expr = cols
                        .iter()
                        .map(|c| {
                            format!(
                                "COALESCE(CASE WHEN typeof(\"{c}\") = 'blob' THEN hex(\"{c}\") ELSE CAST(\"{c}\" AS TEXT) END, '')"
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" || '|' || ");
                    let rows: Vec<String> =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {expr} FROM \"{t}\"")))
                            .fetch_all(p)
                            .await
                            .map_err(|e| e.to_string())?;
                    for r in rows {
                        out.push_str(&format!("{t}: {r}\n"));
                    }
                }
            }
            Check::Postgres(p) => {
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
                )
                .fetch_all(p)
                .await
                .map_err(|e| e.to_string())?;
                for t in tables {
                    let rows: Vec<String> =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT t::text FROM \"{t}\" t")))
                            .fetch_all(p)
                            .await
                            .map_err(|e| e.to_string())?;
                    for r in rows {
                        out.push_str(&format!("{t}: {r}\n"));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// One `COUNT` from a thread without a runtime (the fault injector).
fn checker_count_blocking(url: &str, sql: &str) -> Result<i64, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let check = Check::open(Backend::Postgres, url).await?;
        let n = check.count(sql).await;
        check.close().await;
        n
    })
}

/// Starts the example server on `port`; returns once it accepts connections.
async fn start_server(shared: &Shared, port: u16) -> Option<std::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(shared.dir.join("server.log"))
        .ok()?;
    let child = shared
        .command(&shared.bins.server)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--calendar-app"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .ok()?;
    shared.server_pid.store(u64::from(child.id()), Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if Instant::now() > deadline {
            return Some(child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(child)
}

/// Stops the server cleanly (SIGTERM, bounded wait, then SIGKILL).
fn stop_server(shared: &Shared, child: &mut std::process::Child) {
    shared.server_pid.store(0, Ordering::Relaxed);
    signal(child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn count_http(shared: &Shared, what: &str, status: u16) {
    *shared
        .stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .http
        .entry(format!("{what} {status}"))
        .or_default() += 1;
    if status == 500 {
        shared.violation("the server never answers 500 (internal error)", what.to_string());
    }
}

/// Sign-in, `/me`, capabilities, refresh and logout traffic; restarts the server when the
/// fault injector killed it.
async fn traffic(shared: Arc<Shared>, mut rng: Rng, port: u16) {
    let http = match reqwest::Client::builder().timeout(Duration::from_secs(15)).build() {
        Ok(c) => c,
        Err(e) => {
            shared.violation("the HTTP client starts", e.to_string());
            return;
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start_server(&shared, port).await;
    while Instant::now() < shared.deadline && !shared.stop.load(Ordering::Relaxed) {
        if let Some(child) = server.as_mut()
            && matches!(child.try_wait(), Ok(Some(_)))
        {
            server = start_server(&shared, port).await;
            continue;
        }
        let users: Vec<Known> = shared.users.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(user) = rng.pick(&users).cloned() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(password) = user.password.clone() else {
            continue;
        };
        let sent = http
            .post(format!("{base}/login"))
            .json(&serde_json::json!({"username": user.name, "password": password}))
            .send()
            .await;
        let Ok(resp) = sent else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        count_http(&shared, "POST /login", resp.status().as_u16());
        if resp.status().as_u16() != 200 {
            continue;
        }
        let Ok(body) = resp.json::<serde_json::Value>().await else {
            continue;
        };
        let (Some(mut access), Some(mut refresh)) = (
            body["access_token"].as_str().map(str::to_owned),
            body["refresh_token"].as_str().map(str::to_owned),
        ) else {
            continue;
        };
        for _ in 0..rng.below(4) {
            if let Ok(r) = http.get(format!("{base}/me")).bearer_auth(&access).send().await {
                count_http(&shared, "GET /me", r.status().as_u16());
            }
            if let Ok(r) = http
                .get(format!("{base}/workspaces/Acme/capabilities"))
                .bearer_auth(&access)
                .send()
                .await
            {
                count_http(&shared, "GET /workspaces/Acme/capabilities", r.status().as_u16());
            }
        }
        if rng.chance(50)
            && let Ok(r) = http
                .post(format!("{base}/refresh"))
                .json(&serde_json::json!({"refresh_token": refresh}))
                .send()
                .await
        {
            count_http(&shared, "POST /refresh", r.status().as_u16());
            if r.status().as_u16() == 200
                && let Ok(b) = r.json::<serde_json::Value>().await
                && let (Some(a), Some(f)) = (b["access_token"].as_str(), b["refresh_token"].as_str())
            {
                access = a.to_owned();
                refresh = f.to_owned();
            }
        }
        if rng.chance(30) {
            if let Ok(r) = http.post(format!("{base}/logout")).bearer_auth(&access).send().await {
                count_http(&shared, "POST /logout", r.status().as_u16());
            }
        } else {
            let mut tokens = shared.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens.push((user.name.clone(), access, refresh));
            if tokens.len() > 400 {
                let drop_at = rng.below(tokens.len() as u64) as usize;
                tokens.swap_remove(drop_at);
            }
        }
    }
    if let Some(mut child) = server {
        stop_server(&shared, &mut child);
    }
}

/// Periodic snapshots of who exists (id → username and passport values), so the checker
/// knows the identifiers of users erased later.
async fn snapshots(shared: Arc<Shared>, seen: Arc<Mutex<HashMap<String, HashSet<String>>>>) {
    while Instant::now() < shared.deadline && !shared.stop.load(Ordering::Relaxed) {
        if let Ok(check) = Check::open(shared.backend, &shared.url).await {
            let sql = match shared.backend {
                Backend::Sqlite => {
                    "SELECT u.id, u.username FROM users u UNION ALL SELECT p.user_id, p.value FROM passports p"
                }
                Backend::Postgres => {
                    "SELECT u.id::text, u.username FROM users u UNION ALL SELECT p.user_id::text, p.value FROM passports p"
                }
            };
            if let Ok(rows) = check.texts(sql).await {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                for (id, value) in rows {
                    seen.entry(id).or_default().insert(value);
                }
            }
            check.close().await;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

/// One invariant's verdict: `Ok(())` or what breaks it.
type Verdict = Result<(), String>;

async fn zero(check: &Check, sql: &str, what: &str) -> Verdict {
    let n = check.count(sql).await?;
    if n == 0 { Ok(()) } else { Err(format!("{n} {what}")) }
}

/// Like [`zero`] for a query of (username, detail) rows, naming the first few.
async fn none(check: &Check, sql: &str, what: &str) -> Verdict {
    let rows = check.texts(sql).await?;
    if rows.is_empty() {
        Ok(())
    } else {
        let names: Vec<String> = rows.iter().take(5).map(|(u, d)| format!("{u} ({d})")).collect();
        Err(format!("{} {what}: {}", rows.len(), names.join(", ")))
    }
}

/// The invariants, in order; the first that fails is named.
async fn check_invariants(
    shared: &Shared,
    seen: &HashMap<String, HashSet<String>>,
    port: u16,
) -> Vec<(&'static str, Verdict)> {
    let mut verdicts: Vec<(&'static str, Verdict)> = Vec::new();
    let check = match Check::open(shared.backend, &shared.url).await {
        Ok(c) => c,
        Err(e) => {
            verdicts.push(("the database is reachable after the run", Err(e)));
            return verdicts;
        }
    };
    let pg = shared.backend == Backend::Postgres;
    let (t, f) = if pg { ("TRUE", "FALSE") } else { ("1", "0") };
    verdicts.push((
        "at least one active instance admin",
        match check
            .count("SELECT COUNT(*) FROM users WHERE role = 'admin' AND active AND deleted_at IS NULL")
            .await
        {
            Ok(0) => Err("no active, untrashed admin is left".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        },
    ));
    verdicts.push((
        "the root workspace keeps a member",
        match check
            .count("SELECT COUNT(*) FROM memberships m JOIN workspaces w ON w.id = m.workspace_id WHERE w.is_root")
            .await
        {
            Ok(0) => Err("the root workspace has no member".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        },
    ));
    verdicts.push((
        "no active user has a pending erasure request",
        none(
            &check,
            "SELECT u.username, r.status FROM users u JOIN erasure_requests r ON r.user_id = u.id WHERE r.status = 'pending' AND u.active",
            "active users with a pending erasure request",
        )
        .await,
    ));
    verdicts.push((
        "every internal user has its home folder",
        none(
            &check,
            &format!(
                "SELECT u.username, CASE WHEN u.deleted_at IS NULL THEN 'live' ELSE 'trashed' END FROM users u WHERE u.is_external = {f} AND NOT EXISTS (SELECT 1 FROM folders f WHERE f.user_id = u.id AND f.is_home = {t})"
            ),
            "internal users without a home folder",
        )
        .await,
    ));
    verdicts.push((
        "every user has its user.created audit row",
        none(
            &check,
            "SELECT u.username, u.role FROM users u WHERE NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.subject_user_id = u.id AND a.event = 'user.created')",
            "users without a user.created audit row",
        )
        .await,
    ));
    verdicts.push((
        "no hook work is left owed after `hooks replay`",
        none(
            &check,
            "SELECT event, COALESCE(hook, 'all hooks') FROM owed_hook_work",
            "owed hook work records",
        )
        .await,
    ));
    // Erased users: their identifiers, as the snapshots saw them, appear nowhere.
    let erased = check
        .texts(if pg {
            "SELECT user_id::text, mode FROM user_tombstones WHERE mode = 'gdpr_purge'"
        } else {
            "SELECT user_id, mode FROM user_tombstones WHERE mode = 'gdpr_purge'"
        })
        .await;
    verdicts.push((
        "no erased user's identifiers appear anywhere in a full dump",
        match (erased, check.dump().await) {
            (Ok(erased), Ok(dump)) => {
                let mut found = Vec::new();
                for (id, _) in &erased {
                    for value in seen.get(id).into_iter().flatten() {
                        if dump.lines().any(|l| l.contains(value.as_str())) {
                            found.push(format!("{value} (user {id})"));
                        }
                    }
                }
                if found.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "found {}: {}",
                        found.len(),
                        found.into_iter().take(5).collect::<Vec<_>>().join(", ")
                    ))
                }
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
    ));
    // Tokens of users disabled, trashed, erased or merged away: neither the access token nor
    // the refresh token validates (asked of the server, through the library's own path).
    verdicts.push((
        "no session or refresh token of a disabled, trashed, erased or merged-away user validates",
        {
            let status: HashMap<String, (String, String)> = check
                .texts("SELECT username, CASE WHEN active AND deleted_at IS NULL THEN 'ok' ELSE 'off' END FROM users")
                .await
                .map(|rows| rows.into_iter().map(|(u, s)| (u.clone(), (u, s))).collect())
                .unwrap_or_default();
            let tokens = shared.tokens.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let blocked: Vec<_> = tokens
                .into_iter()
                .filter(|(user, _, _)| status.get(user).is_none_or(|(_, s)| s == "off"))
                .collect();
            let mut valid = Vec::new();
            if let Some(mut server) = start_server(shared, port).await {
                let http = reqwest::Client::new();
                let base = format!("http://127.0.0.1:{port}");
                for (user, access, refresh) in &blocked {
                    let me = http
                        .get(format!("{base}/me"))
                        .bearer_auth(access)
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    let again = http
                        .post(format!("{base}/refresh"))
                        .json(&serde_json::json!({"refresh_token": refresh}))
                        .send()
                        .await
                        .map(|r| r.status().as_u16());
                    if matches!(me, Ok(200)) {
                        valid.push(format!("{user}: access token"));
                    }
                    if matches!(again, Ok(200)) {
                        valid.push(format!("{user}: refresh token"));
                    }
                }
                stop_server(shared, &mut server);
                if valid.is_empty() {
                    eprintln!(
                        "checked {} token pairs of users no longer active: all refused",
                        blocked.len()
                    );
                    Ok(())
                } else {
                    Err(format!(
                        "{} still validate: {}",
                        valid.len(),
                        valid.into_iter().take(5).collect::<Vec<_>>().join(", ")
                    ))
                }
            } else {
                Err("the server did not start for the check".into())
            }
        },
    ));
    let mut orphans = Vec::new();
    for (table, column) in [
        ("passports", "user_id"),
        ("sessions", "user_id"),
        ("folders", "user_id"),
        ("memberships", "user_id"),
        ("external_identities", "user_id"),
        ("notification_outbox", "user_id"),
    ] {
        match check
            .count(&format!(
                "SELECT COUNT(*) FROM {table} x WHERE x.{column} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = x.{column})"
            ))
            .await
        {
            Ok(0) => {}
            Ok(n) => orphans.push(format!("{n} {table} rows without their user")),
            Err(e) => orphans.push(e),
        }
    }
    // An erasure request outlives its user as the record that the erasure was done (its
    // status says so); one still pending for a user who is gone is an orphan.
    match check
        .count("SELECT COUNT(*) FROM erasure_requests r WHERE r.status = 'pending' AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = r.user_id)")
        .await
    {
        Ok(0) => {}
        Ok(n) => orphans.push(format!("{n} pending erasure requests without their user")),
        Err(e) => orphans.push(e),
    }
    match check
        .count("SELECT COUNT(*) FROM persons p WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.person_id = p.id)")
        .await
    {
        Ok(0) => {}
        Ok(n) => orphans.push(format!("{n} persons without a user")),
        Err(e) => orphans.push(e),
    }
    verdicts.push((
        "no orphan rows",
        if orphans.is_empty() {
            Ok(())
        } else {
            Err(orphans.join("; "))
        },
    ));
    verdicts.push((
        "every sweeper run is finished or marked abandoned",
        zero(
            &check,
            "SELECT COUNT(*) FROM sweeper_runs WHERE finished_at IS NULL",
            "sweeper runs neither finished nor marked abandoned",
        )
        .await,
    ));
    let holds = shared.holds.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut missing = Vec::new();
    for hold in &holds {
        match check
            .count(&format!(
                "SELECT COUNT(*) FROM users WHERE username = '{hold}' AND deleted_at IS NULL"
            ))
            .await
        {
            Ok(1) => {}
            Ok(_) => missing.push(hold.clone()),
            Err(e) => missing.push(e),
        }
    }
    verdicts.push((
        "every vetoed user still exists",
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("gone or trashed: {}", missing.join(", ")))
        },
    ));
    check.close().await;
    verdicts
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_080)
}

/// Creates the database (PostgreSQL: a fresh one on `ACCOUNTCTL_TEST_PG_URL`'s server).
async fn create_database(args: &Args, dir: &Path) -> Result<(String, Option<(String, String)>), String> {
    if let Some(url) = &args.database_url {
        return Ok((url.clone(), None));
    }
    match args.backend {
        Backend::Sqlite => Ok((format!("sqlite://{}", dir.join("soak.db").display()), None)),
        Backend::Postgres => {
            let admin = std::env::var("ACCOUNTCTL_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("accountctl_soak_{}_{}", args.seed, std::process::id());
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .map_err(|e| format!("{admin}: {e}"))?;
            sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .map_err(|e| e.to_string())?;
            let _ = sqlx::Connection::close(conn).await;
            let mut url = url::Url::parse(&admin).map_err(|e| e.to_string())?;
            url.set_path(&format!("/{name}"));
            Ok((url.to_string(), Some((admin, name))))
        }
    }
}

async fn drop_database(admin: &str, name: &str) {
    if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(admin).await {
        let _ = sqlx::Executor::execute(
            &mut conn,
            sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")),
        )
        .await;
        let _ = sqlx::Connection::close(conn).await;
    }
}

/// Runs a set-up command; it must succeed.
fn setup(shared: &Shared, bin: &Path, args: &[&str], stdin: &str) -> Result<(), String> {
    let mut child = shared
        .command(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn main() -> std::process::ExitCode {
    let args = parse_args();
    let bins = binaries();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => usage(&format!("runtime: {e}")),
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => usage(&format!("temporary directory: {e}")),
    };
    let (url, created) = match runtime.block_on(create_database(&args, dir.path())) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: cannot create the soak database: {e}");
            return std::process::ExitCode::from(6);
        }
    };
    println!(
        "soak: backend {:?}, seed {}, duration {}, {} workers{}",
        args.backend,
        args.seed,
        humantime::format_duration(args.duration),
        args.workers,
        if args.failover { ", with failovers" } else { "" }
    );
    let shared = Arc::new(Shared {
        seed: args.seed,
        backend: args.backend,
        url: url.clone(),
        dir: dir.path().to_path_buf(),
        bins,
        deadline: Instant::now() + args.duration,
        stop: AtomicBool::new(false),
        children: Mutex::new(HashMap::new()),
        server_pid: AtomicU64::new(0),
        stats: Mutex::new(Stats::default()),
        users: Mutex::new(Vec::new()),
        holds: Mutex::new(Vec::new()),
        invites: Mutex::new(Vec::new()),
        violations: Mutex::new(Vec::new()),
        tokens: Mutex::new(Vec::new()),
        counter: AtomicU64::new(0),
    });
    let outcome = run(&args, &shared, &runtime);
    if let Some((admin, name)) = created {
        runtime.block_on(drop_database(&admin, &name));
    }
    outcome
}

fn run(args: &Args, shared: &Arc<Shared>, runtime: &tokio::runtime::Runtime) -> std::process::ExitCode {
    let adm = shared.bins.app_admin.clone();
    let acc = shared.bins.app_admin.clone();
    let prepared = (|| {
        setup(shared, &adm, &["migrate"], "")?;
        setup(
            shared,
            &adm,
            &[
                "bootstrap",
                "--admin-username",
                "admin",
                "--admin-email",
                "admin@soak.example",
                "--password-stdin",
            ],
            "admin password long\n",
        )?;
        setup(
            shared,
            &acc,
            &[
                "workspace-type",
                "create",
                "team",
                "--title",
                "Team",
                "--capabilities",
                "docs.*",
            ],
            "",
        )?;
        setup(shared, &acc, &["workspace", "create", "Acme", "--type", "team"], "")?;
        setup(
            shared,
            &acc,
            &[
                "role",
                "create",
                "member",
                "--workspace",
                "Acme",
                "--capabilities",
                "docs.read",
            ],
            "",
        )?;
        setup(
            shared,
            &acc,
            &[
                "role",
                "create",
                "editor",
                "--workspace",
                "Acme",
                "--capabilities",
                "docs.*",
            ],
            "",
        )?;
        for i in 0..5 {
            let hold = format!("hold-{i}");
            setup(
                shared,
                &adm,
                &["user", "create", &hold, "--password-stdin"],
                &format!("pw {hold} long enough\n"),
            )?;
            shared
                .holds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(hold.clone());
            shared.users.lock().unwrap_or_else(|e| e.into_inner()).push(Known {
                name: hold.clone(),
                password: Some(format!("pw {hold} long enough")),
            });
        }
        Ok::<(), String>(())
    })();
    if let Err(e) = prepared {
        eprintln!("error: setting up the soak database failed: {e}");
        return std::process::ExitCode::from(6);
    }
    let started = Instant::now();
    let port = free_port();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let mut threads = Vec::new();
    for w in 0..args.workers {
        let (shared, rng) = (shared.clone(), Rng(args.seed.wrapping_mul(1000).wrapping_add(w as u64)));
        threads.push(std::thread::spawn(move || worker(shared, rng)));
    }
    {
        let (shared, rng, failover) = (
            shared.clone(),
            Rng(args.seed.wrapping_mul(1000).wrapping_add(999)),
            args.failover,
        );
        threads.push(std::thread::spawn(move || faults(shared, rng, failover)));
    }
    runtime.block_on(async {
        let traffic = tokio::spawn(traffic(
            shared.clone(),
            Rng(args.seed.wrapping_mul(1000).wrapping_add(998)),
            port,
        ));
        let snaps = tokio::spawn(snapshots(shared.clone(), seen.clone()));
        let _ = traffic.await;
        let _ = snaps.await;
    });
    for t in threads {
        let _ = t.join();
    }
    let ran = started.elapsed();
    // The next cron run of the sweeper, with the faults over: it marks the runs the faults
    // killed as abandoned (the invariant below), and must itself succeed.
    // Exit 5 is expected: the `hold-*` users with an erasure request are vetoed again.
    let (code, _) = shared.run("gdpr purge (final sweep)", &adm, &strings(&["gdpr", "purge", "-q"]), "");
    if !matches!(code, Some(0 | 5)) {
        shared.violation("the sweeper runs after the faults", format!("exit {code:?}"));
    }
    // A hook that failed (its connection terminated under it, say) left its work owed, and
    // the command said so on stderr; failed hooks wait for the operator's `hooks replay`
    // (only interrupted work is completed by the next command on its own). Run it, as the
    // operator would, before checking that no hook work was lost.
    let (code, _) = shared.run(
        "hooks replay (operator)",
        &adm,
        &strings(&["hooks", "replay", "-q"]),
        "",
    );
    if code != Some(0) {
        shared.violation("the owed hook work replays after the faults", format!("exit {code:?}"));
    }
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let verdicts = runtime.block_on(check_invariants(shared, &seen, port));
    let stats = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
    let ops: u64 = stats.ops.values().sum();
    let faults: u64 = stats.faults.values().sum();
    let requests: u64 = stats.http.values().sum();
    println!(
        "\noperations ({ops} commands in {}):",
        humantime::format_duration(Duration::from_secs(ran.as_secs()))
    );
    for ((op, outcome), n) in &stats.ops {
        println!("  {op:<32} {outcome:<8} {n}");
    }
    println!("server requests ({requests}):");
    for (what, n) in &stats.http {
        println!("  {what:<40} {n}");
    }
    println!("faults injected ({faults}):");
    for (fault, n) in &stats.faults {
        println!("  {fault:<40} {n}");
    }
    let running = shared.violations.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!("invariants checked ({}):", verdicts.len() + 2);
    let mut first: Option<(String, String)> = None;
    for (name, detail) in [
        ("no command fails with an internal error (exit 1) or panics", None),
        ("the server never answers 500 (internal error)", None),
    ]
    .into_iter()
    .map(|(n, _): (&str, Option<()>)| {
        let hit = running.iter().find(|(inv, _)| inv == n).map(|(_, d)| d.clone());
        (n.to_owned(), hit)
    })
    .chain(
        running
            .iter()
            .filter(|(inv, _)| !inv.starts_with("no command") && !inv.starts_with("the server never"))
            .map(|(i, d)| (i.clone(), Some(d.clone()))),
    )
    .chain(verdicts.into_iter().map(|(n, v)| (n.to_owned(), v.err())))
    {
        match &detail {
            None => println!("  ok    {name}"),
            Some(d) => {
                println!("  FAIL  {name}: {d}");
                first.get_or_insert((name.clone(), d.clone()));
            }
        }
    }
    match first {
        None => {
            println!("\nall invariants hold (seed {})", args.seed);
            std::process::ExitCode::SUCCESS
        }
        Some((name, detail)) => {
            eprintln!(
                "\nINVARIANT VIOLATED: {name}: {detail}\nreplay with: cargo run --release --example soak -- --backend {} --duration {} --seed {}{}",
                if args.backend == Backend::Sqlite {
                    "sqlite"
                } else {
                    "postgres"
                },
                humantime::format_duration(args.duration),
                args.seed,
                if args.failover { " --failover" } else { "" }
            );
            std::process::ExitCode::from(1)
        }
    }
}
