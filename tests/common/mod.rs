//! The test harness: every behaviour test is written once and run on SQLite and on
//! PostgreSQL (atuin's `run_the_test::<DB>()` habit), each on a fresh database of its own that
//! is dropped afterwards, even when the test panics.
//!
//! PostgreSQL: `ACCOUNTCTL_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! names a server where the tests may create databases. When it is unreachable the PostgreSQL
//! tests are skipped with a message, except with `CI` set, where they fail.
#![allow(dead_code)]

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
}

/// What a test gets: a migrated, empty database and its URL.
#[derive(Clone)]
pub struct Ctx {
    pub backend: Backend,
    pub url: String,
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
            .args([
                "bootstrap",
                "--admin-username",
                "admin",
                "--admin-email",
                "admin@example.com",
                "--password-stdin",
            ])
            .write_stdin(format!("{ADMIN_PASSWORD}\n"))
            .assert()
            .success();
    }

    /// Runs one statement in its own transaction through the library's store (so errors
    /// come back classified as the library classifies them).
    pub async fn exec(&self, sql: &str) -> accountctl::Result<u64> {
        let mut tx = self.db.begin().await?;
        let n = tx.execute(sql, &[]).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The single integer a query returns (a `COUNT(*)`), straight through the driver.
    pub async fn count(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.expect("sqlite");
                let n = sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                pool.close().await;
                n
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.expect("postgres");
                let n = sqlx::query_scalar::<_, i64>(sql)
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
                let pool = sqlx::SqlitePool::connect(&self.url).await.expect("sqlite");
                let rows = sqlx::query_as(sql)
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                pool.close().await;
                rows
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.expect("postgres");
                let rows = sqlx::query_as(sql)
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
            Backend::Postgres => "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        };
        let mut out = String::new();
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.expect("sqlite");
                let tables: Vec<String> = sqlx::query_scalar(tables_sql).fetch_all(&pool).await.expect("tables");
                for t in tables {
                    let cols: Vec<String> = sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                        .fetch_all(&pool)
                        .await
                        .expect("cols");
                    let expr = cols.iter().map(|c| format!("COALESCE(CASE WHEN typeof(\"{c}\") = 'blob' THEN hex(\"{c}\") ELSE CAST(\"{c}\" AS TEXT) END, '')")).collect::<Vec<_>>().join(" || '|' || ");
                    let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {expr} FROM \"{t}\""))
                        .fetch_all(&pool)
                        .await
                        .expect("rows");
                    for r in rows {
                        out.push_str(&format!("{t}: {r}\n"));
                    }
                }
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.expect("postgres");
                let tables: Vec<String> = sqlx::query_scalar(tables_sql).fetch_all(&pool).await.expect("tables");
                for t in tables {
                    let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM \"{t}\" t"))
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
    init_logging();
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let (url, pg_name) = match backend {
        Backend::Sqlite => (format!("sqlite://{}", dir.path().join("test.db").display()), None),
        Backend::Postgres => {
            let admin_url = pg_admin_url();
            if let Err(e) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await {
                if std::env::var_os("CI").is_none() {
                    eprintln!("skipping PostgreSQL test: {e} (set ACCOUNTCTL_TEST_PG_URL; with CI set this fails)");
                    return;
                }
                panic!("PostgreSQL is required in CI: {e}");
            }
            let name = format!("accountctl_t_{}", uuid::Uuid::new_v4().simple());
            admin_exec(&admin_url, &format!("CREATE DATABASE {name}")).await;
            let mut url = url::Url::parse(&admin_url).expect("admin url");
            url.set_path(&format!("/{name}"));
            (url.to_string(), Some((admin_url, name)))
        }
    };
    let db = Database::connect_with(&DatabaseUrl::parse(&url).expect("url"), 5)
        .await
        .expect("connect test database");
    App::builder()
        .database(db.clone())
        .build()
        .await
        .expect("build the app")
        .migrate()
        .await
        .expect("migrate");
    let ctx = Ctx {
        backend,
        url,
        db: db.clone(),
        dir,
    };
    let outcome = tokio::spawn(test(ctx)).await;
    db.close().await;
    if let Some((admin_url, name)) = pg_name {
        admin_exec(&admin_url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    }
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("test task failed: {err}"),
        }
    }
}

/// Runs a statement outside any transaction (CREATE/DROP DATABASE cannot run inside one).
async fn admin_exec(admin_url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await.expect("admin connection");
    sqlx::Executor::execute(&mut conn, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// Declares each test once and generates a `sqlite` and a `postgres` version of it.
///
/// ```ignore
/// on_both_backends! {
///     async fn users_can_be_created(ctx) { ... }
/// }
/// ```
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
