//! The test harness: every behaviour test is written once and run on SQLite and on
//! PostgreSQL (atuin's `run_the_test::<DB>()` habit), each on a fresh database of its own that
//! is dropped afterwards, even when the test panics.
//!
//! PostgreSQL: `ACCOUNTCTL_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! names a server where the tests may create databases. When it is unreachable the PostgreSQL
//! tests are skipped with a message, except with `CI` set, where they fail.
//!
//! The databases are cheap to make: a clone of a migrated template (PostgreSQL) or a copy of
//! a migrated file (SQLite), made once per test binary build, and dropped in the background
//! (see `fresh.rs`).
//!
//! PgBouncer: tests that go through a pooler start their own `pgbouncer` (from `PATH` or
//! `/usr/sbin`, on a free port in 6432–6439) in front of that server and stop it when they
//! end; without the binary they are skipped, except with `CI` set.
#![allow(dead_code)]

mod fresh;

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use accountctl::App;
use accountctl::db::Database;
use accountctl::db::DatabaseUrl;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// PostgreSQL through a session-mode PgBouncer with a stock configuration: the library
    /// and the CLI connect through the pooler; migrations ran over a direct connection.
    PgBouncer,
}

/// What a test gets: a migrated, empty database and its URL.
#[derive(Clone)]
pub struct Ctx {
    pub backend: Backend,
    /// What the library and the CLI connect to.
    pub url: String,
    /// The same database without any pooler, for the helpers that query it "straight".
    pub direct_url: String,
    /// The test database's name on PostgreSQL (for the server log), empty on SQLite.
    pub pg_name: String,
    /// The pooler in front of the database, if any (stopped when the test ends).
    pub pgbouncer: Option<Arc<PgBouncer>>,
    pub db: Database,
    /// A directory of the test's own (the SQLite file lives here; CLI runs start here).
    pub dir: Arc<tempfile::TempDir>,
}

impl Ctx {
    /// The library wired with the shipped hooks.
    pub async fn app(&self) -> App {
        self.app_with(App::builder()).await
    }

    /// The library wired by `builder` (an application's hooks, handlers…) on this database.
    pub async fn app_with(&self, builder: accountctl::app::AppBuilder) -> App {
        builder.database(self.db.clone()).build().await.expect("build the app")
    }

    /// Bootstraps through the CLI: root workspace and the first admin `admin`, password
    /// [`ADMIN_PASSWORD`].
    pub fn bootstrap_cli(&self) {
        self.cli()
            .args(BOOTSTRAP_ARGS)
            .write_stdin(format!("{ADMIN_PASSWORD}\n"))
            .assert()
            .success();
    }

    /// Bootstraps through the example application's admin binary: its migrations run, its
    /// registry is recorded, the first admin is `admin` ([`ADMIN_PASSWORD`]).
    pub fn app_admin_bootstrap(&self) {
        self.app_admin()
            .args(BOOTSTRAP_ARGS)
            .write_stdin(format!("{ADMIN_PASSWORD}\n"))
            .assert()
            .success();
    }

    /// Creates `username` (email `USERNAME@example.com`, `password` on stdin) through the CLI.
    pub fn cli_create(&self, username: &str, password: &str) {
        self.cli()
            .args([
                "user",
                "create",
                username,
                "--email",
                &format!("{username}@example.com"),
                "--password-stdin",
            ])
            .write_stdin(format!("{password}\n"))
            .assert()
            .success();
    }

    /// Creates `username` (email `USERNAME@example.com`) through the application's binary.
    pub fn app_admin_create(&self, username: &str) {
        self.app_admin()
            .args([
                "user",
                "create",
                username,
                "--email",
                &format!("{username}@example.com"),
                "--password-stdin",
            ])
            .write_stdin("a long password\n")
            .assert()
            .success();
    }

    /// Through the CLI: workspace type `team` (template `docs.*`), workspace `Acme` of that
    /// type, and its role `member` (`docs.read`).
    pub fn acme_workspace_cli(&self) {
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
                "member",
                "--workspace",
                "Acme",
                "--capabilities",
                "docs.read",
            ],
        ] {
            self.cli().args(args).assert().success();
        }
    }

    /// Runs one statement in its own transaction through the library's store (so errors
    /// come back classified as the library classifies them).
    ///
    /// Schema statements (`CREATE`, `DROP`, `ALTER`), which the library's transaction handle
    /// refuses to run, go straight through the driver, their errors classified the same way.
    pub async fn exec(&self, sql: &str) -> accountctl::Result<u64> {
        let word = sql.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        if matches!(word.as_str(), "CREATE" | "DROP" | "ALTER") {
            return match self.backend {
                Backend::Sqlite => {
                    let pool = sqlx::SqlitePool::connect(&self.direct_url).await?;
                    let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&pool)
                        .await
                        .map(|r| r.rows_affected());
                    pool.close().await;
                    Ok(n?)
                }
                Backend::Postgres | Backend::PgBouncer => {
                    let pool = sqlx::PgPool::connect(&self.direct_url).await?;
                    let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&pool)
                        .await
                        .map(|r| r.rows_affected());
                    pool.close().await;
                    Ok(n?)
                }
            };
        }
        let mut tx = self.db.begin().await?;
        let n = tx.execute(sql, &[]).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Runs `sql` straight through the driver with the database's triggers off, for a test
    /// that starts a trial from a state the invariants forbid reaching (an instance without
    /// an active admin). PostgreSQL: `session_replication_role = replica` (the tests connect
    /// as a superuser); SQLite: the triggers are dropped and created again around it.
    pub async fn exec_without_triggers(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                // One connection, one write transaction: nobody else sees the triggers gone,
                // and a busy machine's slow writer is waited for (30 s) instead of failing.
                use sqlx::Connection;
                use std::str::FromStr;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(&self.direct_url)
                    .expect("sqlite url")
                    .busy_timeout(std::time::Duration::from_secs(30));
                let mut conn = sqlx::SqliteConnection::connect_with(&options).await.expect("sqlite");
                sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await.expect("begin");
                let triggers: Vec<(String, String)> =
                    sqlx::query_as("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'users'")
                        .fetch_all(&mut conn)
                        .await
                        .expect("triggers");
                for (name, _) in &triggers {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER {name}")))
                        .execute(&mut conn)
                        .await
                        .unwrap_or_else(|e| panic!("drop trigger {name}: {e}"));
                }
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                for (name, create) in &triggers {
                    sqlx::query(sqlx::AssertSqlSafe(create.clone()))
                        .execute(&mut conn)
                        .await
                        .unwrap_or_else(|e| panic!("recreate trigger {name}: {e}"));
                }
                sqlx::query("COMMIT").execute(&mut conn).await.expect("commit");
                conn.close().await.expect("close");
            }
            Backend::Postgres | Backend::PgBouncer => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&self.direct_url).await.expect("postgres");
                sqlx::query("SET session_replication_role = replica")
                    .execute(&mut conn)
                    .await
                    .expect("replica");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = conn.close().await;
            }
        }
    }

    /// The single integer a query returns (a `COUNT(*)`), straight through the driver.
    pub async fn count(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.direct_url).await.expect("sqlite");
                let n = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                pool.close().await;
                n
            }
            Backend::Postgres | Backend::PgBouncer => {
                let pool = sqlx::PgPool::connect(&self.direct_url).await.expect("postgres");
                let n = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                pool.close().await;
                n
            }
        }
    }

    /// The (text, text) rows a query returns, straight through the driver.
    pub async fn text_pairs(&self, sql: &str) -> Vec<(String, String)> {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.direct_url).await.expect("sqlite");
                let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                pool.close().await;
                rows
            }
            Backend::Postgres | Backend::PgBouncer => {
                let pool = sqlx::PgPool::connect(&self.direct_url).await.expect("postgres");
                let rows = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                pool.close().await;
                rows
            }
        }
    }

    /// Every text value in every table, one line per row: what a full dump would show.
    pub async fn dump(&self) -> String {
        let tables_sql = match self.backend {
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            Backend::Postgres | Backend::PgBouncer => {
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'"
            }
        };
        let mut out = String::new();
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.direct_url).await.expect("sqlite");
                let tables: Vec<String> = sqlx::query_scalar(tables_sql).fetch_all(&pool).await.expect("tables");
                for t in tables {
                    let cols: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT name FROM pragma_table_info('{t}')"
                    )))
                    .fetch_all(&pool)
                    .await
                    .expect("cols");
                    let expr = cols.iter().map(|c| format!("COALESCE(CASE WHEN typeof(\"{c}\") = 'blob' THEN hex(\"{c}\") ELSE CAST(\"{c}\" AS TEXT) END, '')")).collect::<Vec<_>>().join(" || '|' || ");
                    let rows: Vec<String> =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {expr} FROM \"{t}\"")))
                            .fetch_all(&pool)
                            .await
                            .expect("rows");
                    for r in rows {
                        out.push_str(&format!("{t}: {r}\n"));
                    }
                }
                pool.close().await;
            }
            Backend::Postgres | Backend::PgBouncer => {
                let pool = sqlx::PgPool::connect(&self.direct_url).await.expect("postgres");
                let tables: Vec<String> = sqlx::query_scalar(tables_sql).fetch_all(&pool).await.expect("tables");
                for t in tables {
                    let rows: Vec<String> =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT t::text FROM \"{t}\" t")))
                            .fetch_all(&pool)
                            .await
                            .expect("rows");
                    for r in rows {
                        out.push_str(&format!("{t}: {r}\n"));
                    }
                }
                pool.close().await;
            }
        }
        out
    }

    /// The `accountctl` binary pointed at this database, with a fixed actor.
    pub fn cli(&self) -> assert_cmd::Command {
        self.command(assert_cmd::cargo::cargo_bin("accountctl"))
    }

    /// The example application's admin binary (`examples/app_admin`, built by `cargo test`
    /// with the other targets) pointed at this database, with a fixed actor.
    pub fn app_admin(&self) -> assert_cmd::Command {
        self.command(example_bin("app_admin"))
    }

    fn command(&self, program: std::path::PathBuf) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(program);
        cmd.env("DATABASE_URL", &self.url)
            .env("ACCOUNTCTL_ACTOR", "tester")
            .env_remove("RUST_LOG")
            .env_remove("ACCOUNTCTL_CONFIG")
            .env_remove("ACCOUNTCTL_INVITE_LINK")
            .env_remove("ACCOUNTCTL_TRASH_RETENTION")
            // No config file of the machine's user applies (the system-wide one could).
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg"))
            .current_dir(self.dir.path());
        cmd
    }
}

/// The path of an example's binary: `cargo test` builds examples into `target/<profile>/examples`
/// next to the `deps` folder this test binary runs from.
pub fn example_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test`, which builds the examples",
        path.display()
    );
    path
}

/// The first admin's password in [`Ctx::bootstrap_cli`] and [`bootstrap_admin`].
pub const ADMIN_PASSWORD: &str = "admin password";

/// `bootstrap` of the first admin `admin` (`admin@example.com`), its password on stdin.
pub const BOOTSTRAP_ARGS: [&str; 6] = [
    "bootstrap",
    "--admin-username",
    "admin",
    "--admin-email",
    "admin@example.com",
    "--password-stdin",
];

/// Bootstraps through the library: root workspace and the first admin `admin`.
pub async fn bootstrap_admin(app: &App) {
    app.bootstrap()
        .run(Some(accountctl::services::accounts::NewUser {
            username: "admin".into(),
            email: Some("admin@example.com".into()),
            password: Some(accountctl::password::Secret::new(ADMIN_PASSWORD.into())),
            ..Default::default()
        }))
        .await
        .expect("bootstrap");
}

fn pg_admin_url() -> String {
    std::env::var("ACCOUNTCTL_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Everything the tests logged, so a test can assert that an error was logged.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.get_or_init(Default::default).lock().expect("log buffer").clone()).into_owned()
}

static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

#[derive(Clone, Copy)]
struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.get_or_init(Default::default)
            .lock()
            .expect("log buffer")
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,sqlx=warn")
            .with_ansi(false)
            .with_writer(|| Capture)
            .try_init();
    });
}

/// Creates a fresh, migrated database on `backend`, runs `test` on it, and drops it. Returns
/// without running when PostgreSQL is unreachable outside CI.
pub async fn run_on<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_on_tagged(backend, "t", test).await
}

/// [`run_on`] with the PostgreSQL database named `accountctl_<tag>_<uuid>`, so the server log
/// lines of one kind of test can be told apart (see `.ci/run`).
pub async fn run_on_tagged<F, Fut>(backend: Backend, tag: &str, test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    init_logging();
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let pgbouncer = match backend {
        Backend::PgBouncer => match PgBouncer::start("session", &format!("* = {}", pg_server_conninfo())) {
            Some(b) => Some(Arc::new(b)),
            None => return,
        },
        _ => None,
    };
    // Migrated with the shipped hooks over a direct connection (as the README advises), by
    // cloning a database so migrated (fresh.rs).
    let (direct_url, pg_name) = match backend {
        Backend::Sqlite => {
            let path = dir.path().join("test.db");
            fresh::create_sqlite_database(&path).await;
            (format!("sqlite://{}", path.display()), None)
        }
        Backend::Postgres | Backend::PgBouncer => {
            let Some(admin_url) = pg_available().await else { return };
            let name = format!("accountctl_{tag}_{}", uuid::Uuid::new_v4().simple());
            fresh::create_pg_database(&admin_url, &name).await;
            (pg_url_for(&name), Some((admin_url, name)))
        }
    };
    let url = match (&pgbouncer, &pg_name) {
        (Some(b), Some((_, name))) => b.url(name),
        _ => direct_url.clone(),
    };
    let db = Database::connect_with(&DatabaseUrl::parse(&url).expect("url"), 5)
        .await
        .expect("connect test database");
    let ctx = Ctx {
        backend,
        url,
        direct_url,
        pg_name: pg_name.as_ref().map(|(_, n)| n.clone()).unwrap_or_default(),
        pgbouncer: pgbouncer.clone(),
        db: db.clone(),
        dir,
    };
    let outcome = tokio::spawn(test(ctx)).await;
    db.close().await;
    drop(pgbouncer);
    if let Some((admin_url, name)) = pg_name {
        // With a test's read-only twin (tests/production.rs), also when the test panicked.
        let twin = format!("{name}_ro");
        fresh::drop_pg_databases_later(&admin_url, vec![name, twin]);
    }
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("test task failed: {err}"),
        }
    }
}

/// The admin URL when PostgreSQL is reachable; `None` (test skipped, with a message) when it
/// is not and `CI` is unset. Panics in CI.
pub async fn pg_available() -> Option<String> {
    let admin_url = pg_admin_url();
    match <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await {
        Ok(conn) => {
            let _ = sqlx::Connection::close(conn).await;
            Some(admin_url)
        }
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping PostgreSQL test: {e} (set ACCOUNTCTL_TEST_PG_URL; with CI set this fails)");
            None
        }
        Err(e) => panic!("PostgreSQL is required in CI: {e}"),
    }
}

/// The test server's host and port (from `ACCOUNTCTL_TEST_PG_URL`), as `host=H port=P` for a
/// PgBouncer `[databases]` line.
pub fn pg_server_conninfo() -> String {
    let (host, port) = pg_server_host_port();
    format!("host={host} port={port}")
}

/// The test server's host and port, from `ACCOUNTCTL_TEST_PG_URL` (default 127.0.0.1:5432).
pub fn pg_server_host_port() -> (String, u16) {
    let url = url::Url::parse(&pg_admin_url()).expect("admin url");
    (
        url.host_str().unwrap_or("127.0.0.1").to_owned(),
        url.port().unwrap_or(5432),
    )
}

/// The direct URL of database `name` on the test server.
pub fn pg_url_for(name: &str) -> String {
    let mut url = url::Url::parse(&pg_admin_url()).expect("admin url");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Runs a statement outside any transaction (CREATE/DROP DATABASE cannot run inside one).
pub async fn admin_exec(admin_url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await.expect("admin connection");
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// A PgBouncer of the test's own, stopped (and waited for) when dropped.
pub struct PgBouncer {
    child: Mutex<std::process::Child>,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Ports are handed out one at a time so two tests never race for the same one.
static PORTS: Mutex<()> = Mutex::new(());

impl PgBouncer {
    /// The installed version as (major, minor), or `None` when there is no `pgbouncer`.
    pub fn version() -> Option<(u32, u32)> {
        let out = std::process::Command::new(Self::binary()?)
            .arg("--version")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let v = text.lines().next()?.split_whitespace().nth(1)?.to_owned();
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        Some((parts.next()?, parts.next().unwrap_or(0)))
    }

    fn binary() -> Option<std::path::PathBuf> {
        ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
    }

    /// Starts a PgBouncer in `pool_mode` with the given `[databases]` lines and otherwise
    /// the stock settings (trust auth aside), with `extra` lines added to `[pgbouncer]`.
    /// `None` (skipped, with a message) when PgBouncer is not installed outside CI.
    pub fn start(pool_mode: &str, databases: &str) -> Option<Self> {
        Self::start_with(pool_mode, databases, "")
    }

    /// [`PgBouncer::start`] with extra `[pgbouncer]` settings.
    pub fn start_with(pool_mode: &str, databases: &str, extra: &str) -> Option<Self> {
        let Some(binary) = Self::binary() else {
            if std::env::var_os("CI").is_none() {
                eprintln!("skipping PgBouncer test: pgbouncer is not installed (apt-get install pgbouncer)");
                return None;
            }
            panic!("PgBouncer is required in CI: apt-get install pgbouncer (.ci/run does)");
        };
        let _one_at_a_time = PORTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("temp dir");
        let root = unsafe_is_root();
        for port in 6432..=6439u16 {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let config = dir.path().join("pgbouncer.ini");
            std::fs::write(dir.path().join("userlist.txt"), "\"postgres\" \"\"\n").expect("userlist");
            std::fs::write(
                &config,
                format!(
                    "[databases]\n{databases}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {dir}/userlist.txt\nlogfile = {dir}/pgbouncer.log\npool_mode = {pool_mode}\n{extra}\n",
                    dir = dir.path().display()
                ),
            )
            .expect("config");
            let mut cmd = std::process::Command::new(&binary);
            if root {
                // PgBouncer refuses to run as root; -u switches to postgres after start-up,
                // so the files must be the postgres user's.
                chown_to_postgres(dir.path());
                cmd.args(["-u", "postgres"]);
            }
            let child = cmd
                .arg(&config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start pgbouncer");
            let bouncer = Self {
                child: Mutex::new(child),
                port,
                config,
                _dir: dir,
            };
            if bouncer.wait_until_listening() {
                return Some(bouncer);
            }
            let log = std::fs::read_to_string(bouncer._dir.path().join("pgbouncer.log")).unwrap_or_default();
            panic!("pgbouncer did not start on port {port}: {log}");
        }
        panic!("no free port in 6432-6439 for pgbouncer");
    }

    fn wait_until_listening(&self) -> bool {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }

    /// The URL of database `name` through this pooler.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the pooler (its server connections end with it).
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        // SIGINT: PgBouncer's "safe shutdown"; the process exits once clients are gone,
        // so fall back to kill after a moment.
        let _ = std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        for _ in 0..40 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts it again on the same port with the same configuration.
    pub fn restart(&self) {
        self.stop();
        let mut cmd = std::process::Command::new(Self::binary().expect("pgbouncer"));
        if unsafe_is_root() {
            cmd.args(["-u", "postgres"]);
        }
        let fresh = cmd
            .arg(&self.config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("restart pgbouncer");
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        assert!(self.wait_until_listening(), "pgbouncer did not come back");
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the tests run as root (CI does), from `id -u`.
fn unsafe_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown_to_postgres(dir: &std::path::Path) {
    let status = std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .expect("chown");
    assert!(status.success(), "chown to postgres failed");
}

/// The server log lines about database `name` that betray a connection not ended cleanly
/// (a `FATAL`, a lost client, an EOF without the protocol's goodbye), or `None` when the log
/// cannot be read (outside CI only: in CI that panics). The log is Debian's
/// `/var/log/postgresql/postgresql-*-main.log` (or `ACCOUNTCTL_TEST_PG_LOG`), whose line
/// prefix names user@database.
pub fn unclean_disconnects(name: &str) -> Option<Vec<String>> {
    let path = std::env::var("ACCOUNTCTL_TEST_PG_LOG")
        .ok()
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let mut logs: Vec<_> = std::fs::read_dir("/var/log/postgresql")
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().ends_with("-main.log"))
                })
                .collect();
            logs.sort();
            logs.pop()
        });
    let text = match path.as_ref().map(std::fs::read) {
        Some(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ if std::env::var_os("CI").is_none() => {
            eprintln!("not checking the server log: not found (set ACCOUNTCTL_TEST_PG_LOG)");
            return None;
        }
        _ => panic!("the PostgreSQL server log is required in CI (set ACCOUNTCTL_TEST_PG_LOG)"),
    };
    let needle = format!("@{name} ");
    Some(
        text.lines()
            .filter(|l| l.contains(&needle))
            .filter(|l| {
                l.contains("FATAL")
                    || l.contains("could not receive data from client")
                    || l.contains("could not send data to client")
                    || l.contains("unexpected EOF")
            })
            .map(str::to_owned)
            .collect(),
    )
}

/// Declares each test once and generates a `sqlite` and a `postgres` version of it.
///
/// ```ignore
/// on_both_backends! {
///     async fn users_can_be_created(ctx) { ... }
/// }
/// ```
/// [`on_both_backends!`] plus a third version through a session-mode PgBouncer with a stock
/// configuration (the CLI end-to-end scenarios run through a pooler this way).
#[macro_export]
macro_rules! on_backends_and_pgbouncer {
    ($( $(#[$meta:meta])* async fn $name:ident($ctx:ident) $body:block )*) => {
        $crate::on_both_backends! { $( $(#[$meta])* async fn $name($ctx) $body )* }
        mod pgbouncer {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::run_on($crate::common::Backend::PgBouncer, |$ctx| async move $body).await;
                }
            )*
        }
    };
}

#[macro_export]
macro_rules! on_both_backends {
    ($( $(#[$meta:meta])* async fn $name:ident($ctx:ident) $body:block )*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::run_on($crate::common::Backend::Sqlite, |$ctx| async move $body).await;
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::common::run_on($crate::common::Backend::Postgres, |$ctx| async move $body).await;
                }
            )*
        }
    };
}
