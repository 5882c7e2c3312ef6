//! Fresh migrated databases, cheaply: every test gets a database of its own, but the
//! migrations run once per test binary build, not once per test.
//!
//! - **PostgreSQL**: a migrated *template* database, `accountctl_tmpl_<place>_<build>`, is
//!   cloned per test (`CREATE DATABASE … TEMPLATE …`, a file copy on the server). `<place>`
//!   names the test binary's path (so two checkouts, or two test binaries, never share or
//!   replace each other's template) and `<build>` its size and modification time (so a
//!   rebuilt binary, whose migrations or hook set may differ, migrates a template of its
//!   own). The first test of a run that finds no ready template builds it under a
//!   session-level advisory lock, so test binaries running at the same time wait for one
//!   build instead of racing; the template is marked ready (a comment on the database) only
//!   once migrated, so one left half-built by a killed run is rebuilt. Building one drops
//!   the older templates of the same `<place>`; nothing connects to a template
//!   (`ALLOW_CONNECTIONS false`), which is also what cloning needs.
//!   Each clone commits without waiting for its WAL flush (`synchronous_commit = off`, set on
//!   the test database only): a test needs its commits visible, never durable across a
//!   server crash, and the flush was most of a commit's time on a busy machine.
//!   Test databases are dropped by a background thread (a `DROP DATABASE` waits for a server
//!   checkpoint, a second or more on a busy server; the drops queued meanwhile go together
//!   and share one), and the drops still queued when the test binary exits run then
//!   (`atexit`), so a run leaves no database behind.
//! - **SQLite**: a migrated file, built once per test binary build under
//!   `CARGO_TARGET_TMPDIR`, is copied per test.
#![allow(dead_code)]

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use accountctl::App;
use accountctl::db::{Database, DatabaseUrl};
use sqlx::Connection;

/// The key of the advisory lock the template builders take ("actltmpl").
const TEMPLATE_LOCK_KEY: i64 = 0x6163_746c_746d_706c;
/// The comment that marks a template as completely migrated.
const READY: &str = "accountctl test template: ready";

fn hash_of(value: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// `(place, build)`: hashes of the test binary's path, and of its path, size and
/// modification time.
fn binary_key() -> (String, String) {
    let exe = std::env::current_exe().expect("test binary path");
    let meta = std::fs::metadata(&exe).expect("test binary metadata");
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let place = format!("{:08x}", hash_of(&exe) as u32);
    let build = format!("{:012x}", hash_of((&exe, meta.len(), mtime)) & 0xffff_ffff_ffff);
    (place, build)
}

/// Migrates the database at `url` with the shipped hooks, as every test database is.
async fn migrate(url: &str) {
    let db = Database::connect_with(&DatabaseUrl::parse(url).expect("url"), 1)
        .await
        .expect("connect the template database");
    App::builder()
        .database(db.clone())
        .build()
        .await
        .expect("build the app")
        .migrate()
        .await
        .expect("migrate the template database");
    db.close().await;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

static PG_TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// Creates database `name` on the server of `admin_url`: a clone of this binary's migrated
/// template (built first if needed).
pub async fn create_pg_database(admin_url: &str, name: &str) {
    let template = PG_TEMPLATE
        .get_or_init(|| ensure_pg_template(admin_url.to_owned()))
        .await
        .clone();
    if let Err(first) = clone_pg(admin_url, &template, name).await {
        // The template went away under us (dropped by hand): build it again, once.
        let template = ensure_pg_template(admin_url.to_owned()).await;
        clone_pg(admin_url, &template, name)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} TEMPLATE {template}: {e} (first try: {first})"));
    }
}

async fn clone_pg(admin_url: &str, template: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let created = async {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE {template}"
        )))
        .execute(&mut conn)
        .await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        )))
        .execute(&mut conn)
        .await
    }
    .await;
    let _ = conn.close().await;
    created.map(|_| ())
}

/// The name of this binary's ready template, building it if no ready one exists.
async fn ensure_pg_template(admin_url: String) -> String {
    let (place, build) = binary_key();
    let prefix = format!("accountctl_tmpl_{place}_");
    let name = format!("{prefix}{build}");
    let mut conn = sqlx::PgConnection::connect(&admin_url).await.expect("admin connection");
    // Session-level: released by the unlock below, or by the server if this process dies.
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(TEMPLATE_LOCK_KEY)
        .execute(&mut conn)
        .await
        .expect("template lock");
    let state: Option<Option<String>> =
        sqlx::query_scalar("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_optional(&mut conn)
            .await
            .expect("look for the template");
    if state.as_ref().and_then(|c| c.as_deref()) != Some(READY) {
        let ours: Vec<String> =
            sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE 'accountctl%tmpl%'")
                .fetch_all(&mut conn)
                .await
                .expect("list templates");
        // Earlier builds of this binary (and a half-built one of this build).
        for old in ours.iter().filter(|d| d.starts_with(&prefix)) {
            run(&mut conn, &format!("DROP DATABASE IF EXISTS {old} WITH (FORCE)")).await;
        }
        run(&mut conn, &format!("CREATE DATABASE {name}")).await;
        migrate(&super::pg_url_for(&name)).await;
        run(&mut conn, &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
        run(&mut conn, &format!("COMMENT ON DATABASE {name} IS '{READY}'")).await;
    }
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(TEMPLATE_LOCK_KEY)
        .execute(&mut conn)
        .await
        .expect("template unlock");
    let _ = conn.close().await;
    name
}

async fn run(conn: &mut sqlx::PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Drops the test databases `names` (`IF EXISTS`) on the server of `admin_url`, in the
/// background; whatever is still queued when the test binary exits is dropped then.
pub fn drop_pg_databases_later(admin_url: &str, names: Vec<String>) {
    let janitor = JANITOR.get_or_init(Janitor::start);
    let job = (admin_url.to_owned(), names);
    let sent = match janitor.jobs.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(jobs) => jobs.send(job).map_err(|e| e.0),
        None => Err(job),
    };
    if let Err(job) = sent {
        // Exiting already: drop them here and now.
        drop_now(vec![job]);
    }
}

type Job = (String, Vec<String>);

struct Janitor {
    jobs: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

static JANITOR: OnceLock<Janitor> = OnceLock::new();

impl Janitor {
    fn start() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::spawn(move || {
            // Each DROP DATABASE waits for a checkpoint; drops issued together share one, so
            // take whatever has queued up and drop it all at once.
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                drop_now(batch);
            }
        });
        // SAFETY: `finish_drops` is an `extern "C" fn()` that touches only statics.
        unsafe {
            libc::atexit(finish_drops);
        }
        Self {
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        }
    }
}

/// At exit: close the queue and wait for the background thread to drop what it holds.
extern "C" fn finish_drops() {
    let Some(janitor) = JANITOR.get() else { return };
    drop(janitor.jobs.lock().unwrap_or_else(|e| e.into_inner()).take());
    if let Some(thread) = janitor.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = thread.join();
    }
}

/// Drops the databases of `jobs` now, concurrently, on a runtime of its own; errors are
/// printed, never raised (this runs after the tests that used them, possibly at exit).
fn drop_now(jobs: Vec<Job>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        eprintln!("cannot drop test databases {jobs:?}: no runtime");
        return;
    };
    rt.block_on(futures::future::join_all(jobs.into_iter().map(
        |(admin_url, names)| async move {
            let mut conn = match sqlx::PgConnection::connect(&admin_url).await {
                Ok(conn) => conn,
                Err(e) => {
                    eprintln!("cannot drop test databases {names:?}: {e}");
                    return;
                }
            };
            for name in &names {
                if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                {
                    eprintln!("DROP DATABASE {name}: {e}");
                }
            }
            let _ = conn.close().await;
        },
    )));
}

// ---------------------------------------------------------------------------------------
// SQLite

static SQLITE_TEMPLATE: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();

/// Creates the SQLite database file `path`: a copy of this binary's migrated template file.
pub async fn create_sqlite_database(path: &Path) {
    let template = SQLITE_TEMPLATE.get_or_init(ensure_sqlite_template).await;
    std::fs::copy(template, path).unwrap_or_else(|e| panic!("copy {} to {}: {e}", template.display(), path.display()));
}

async fn ensure_sqlite_template() -> PathBuf {
    let (place, build) = binary_key();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).expect("CARGO_TARGET_TMPDIR");
    let prefix = format!("accountctl-template-{place}-");
    let path = dir.join(format!("{prefix}{build}.db"));
    if path.exists() {
        return path;
    }
    // Built under a name of its own, then renamed into place: a file at `path` is always
    // complete, and two processes building at once each rename a complete file.
    let partial = dir.join(format!("{prefix}{build}.{}.partial", uuid::Uuid::new_v4().simple()));
    migrate(&format!("sqlite://{}", partial.display())).await;
    // Closing the last connection checkpoints the WAL into the file; a copy of the file alone
    // is the whole database only without one.
    let wal = PathBuf::from(format!("{}-wal", partial.display()));
    assert!(
        !wal.exists() || std::fs::metadata(&wal).map(|m| m.len() == 0).unwrap_or(false),
        "the template's WAL was not checkpointed: {}",
        wal.display()
    );
    for leftover in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{leftover}", partial.display()));
    }
    std::fs::rename(&partial, &path).expect("rename the SQLite template into place");
    // Earlier builds' templates of this binary.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with(&prefix) && entry.path() != path && !file.ends_with(".partial") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    path
}
