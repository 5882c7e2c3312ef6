//! `cargo bench`: accountctl's speed targets, each measured next to a baseline run on the
//! same database in the same run, on SQLite and on PostgreSQL (ACCOUNTCTL_TEST_PG_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres; skipped when unreachable).
//!
//! | scenario | ours | baseline | target |
//! |---|---|---|---|
//! | merge | `user merge` of a B owning 100k sessions, 100k files, 100k audit rows | bare `UPDATE … SET user_id` of the same kinds of rows | ≤ 2× |
//! | purge | sweeper purging 10k due users (sessions, folder, membership, audit) | bare cascade `DELETE` of 10k such users, one transaction each | ≤ 5× |
//! | import | `accountctl user import` of 100k users with `password_hash` and a membership (a process: time and peak RSS) | the engine's bulk load of the same rows into every table the import writes (persons, users, passports, memberships, home folders, audit rows), one transaction: PostgreSQL `COPY`, SQLite one prepared `INSERT` per table reused across rows | ≤ 1.2× |
//! | import-analyze | PostgreSQL only: `accountctl user import --atomic` of the same 100k users with `ANALYZE passports; ANALYZE users` looping beside it (every 0.1 s) | the same import without it, on a fresh database | ≤ 1.2× |
//! | hashing | import of 2,000 plaintext-password users | cores ÷ one argon2id hash time | ≥ 85 % |
//! | list | `user list --search` first page on 1M users (library call) | the same indexed SELECT run directly | ms |
//! | show | `accountctl user show` process start to exit | `sqlite3` / `psql` running the same query | — |
//! | auth | `accountctl auth check` of an unknown user and of a password-less one, interleaved with a wrong password's (median of 21 process runs each) | the wrong password's | ≤ 1.1× |
//! | load | the example server at `ACCOUNTCTL_BENCH_LOAD_USERS` users (default 1M) under 64 concurrent HTTP clients (`/me`, capabilities), then 100 `user disable` and 100 `role revoke` processes under that load (see `benches/support/load.rs`) | `examples/load_baseline.rs`: a bare axum server running the same SELECTs on a pool of the same size, in alternating windows of the same run | throughput ≥ 0.9×, p99 ≤ 1.5×, change → visible ≤ 200 ms p99 |
//! | request | a warm server's per-request work: session validation by access token + capabilities in a workspace (cached) | the bare indexed SELECT of the same session and user rows on a pool | ≤ 1.5×, < 1 ms |
//!
//! `ACCOUNTCTL_BENCH_SCALE` (default 1) scales the row counts down for a quick run;
//! `ACCOUNTCTL_BENCH_ONLY=merge,purge,import,import-analyze,hashing,list,show,auth,request,load` picks
//! scenarios;
//! `ACCOUNTCTL_BENCH_BACKEND=sqlite|postgres` runs one backend only (in both modes).
//!
//! **Scale mode.** `ACCOUNTCTL_BENCH_SCALE=growth` (or a list of sizes such as `100k,1m`)
//! runs the growth curve instead: for each size and backend, a database of that many users
//! built by `accountctl user import` (passport, membership, home folder, audit row, plus one
//! session each), then import rows/s and peak RSS next to the engine's bulk load, `user list
//! --search` first page, a deep keyset page, one `user show` process, `gdpr purge` of 10k due
//! users next to a bare per-user cascade `DELETE`, a merge of a user owning 100k rows and one
//! `user list --all -o json` process (rows/s, peak RSS). The bulk-load baseline runs for sizes
//! up to `ACCOUNTCTL_BENCH_BULK_MAX` (default 1M rows, where its 1.2x target is set). The import file is written under `ACCOUNTCTL_BENCH_DIR` (default
//! the temporary directory; 10M rows take 1.4 GB) and deleted after the import;
//! `ACCOUNTCTL_BENCH_BACKEND=sqlite|postgres` runs one backend only; `ACCOUNTCTL_BENCH_KEEP=1`
//! keeps each database built (its URL is printed) instead of dropping it;
//! `ACCOUNTCTL_BENCH_FILL=bulk` builds it with the engine's bulk load instead of the import.
//! `ACCOUNTCTL_BENCH_ONLY=purge` builds each database and stops after the purge;
//! `ACCOUNTCTL_BENCH_ONLY=import` stops after the import and its baseline. On PostgreSQL the
//! database is vacuumed and analyzed before the measures that follow the import, and the purge
//! and its baseline run in turns, 1,000 users at a time.

#[path = "support/load.rs"]
mod load;
use load::bench_load;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use accountctl::App;
use accountctl::db::{Backend, Database, DatabaseUrl};
use accountctl::domain::{UserFilter, UserRef};
use accountctl::password::{self, Secret};
use accountctl::services::accounts::NewUser;
use accountctl::services::erasure::SweepOptions;
use accountctl::services::import::{self, Format, ImportOptions};

const T: &str = "2026-01-01T00:00:00+00:00";
const PAST: &str = "2000-01-01T00:00:00+00:00";
const FUTURE: &str = "2099-01-01T00:00:00+00:00";

struct Row {
    backend: &'static str,
    scenario: &'static str,
    ours: String,
    baseline: String,
    ratio: String,
    target: &'static str,
}

struct Fresh {
    db: Database,
    app: App,
    url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Fresh {
    async fn drop_db(mut self) {
        self.db.close().await;
        if std::env::var_os("ACCOUNTCTL_BENCH_KEEP").is_some() {
            // Kept for measuring again on a quiet machine: say where it is.
            if let Some(dir) = self._dir.take() {
                let _ = dir.keep();
            }
            eprintln!("kept database: {}", self.url);
            return;
        }
        if let Some((admin, name)) = self.pg {
            pg_admin(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }

    fn app(&self) -> App {
        self.app.clone()
    }

    /// A uuid literal `00000000-0000-4000-8TTT-{i:012}` for row `i` of table tag `tag`.
    fn id(&self, tag: u16, i: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("('00000000-0000-4000-8{tag:03x}-' || printf('%012d', {i}))"),
            Backend::Postgres => {
                format!("CAST('00000000-0000-4000-8{tag:03x}-' || lpad(CAST({i} AS text), 12, '0') AS uuid)")
            }
        }
    }

    fn lit(&self, id: uuid::Uuid) -> String {
        match self.backend {
            Backend::Sqlite => format!("'{id}'"),
            Backend::Postgres => format!("CAST('{id}' AS uuid)"),
        }
    }

    async fn exec(&self, sql: &str) -> u64 {
        let mut tx = self.db.begin().await.expect("tx");
        let n = tx.execute(sql, &[]).await.unwrap_or_else(|e| panic!("{e}: {sql}"));
        tx.commit().await.expect("commit");
        n
    }
}

fn series(n: usize) -> String {
    format!("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n})")
}

fn pg_admin_url() -> String {
    std::env::var("ACCOUNTCTL_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn pg_admin(admin: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await.expect("admin connection");
    sqlx::Executor::execute(&mut conn, sqlx::AssertSqlSafe(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn fresh(backend: Backend) -> Option<Fresh> {
    let (url, dir, pg) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            (
                format!("sqlite://{}", dir.path().join("bench.db").display()),
                Some(dir),
                None,
            )
        }
        Backend::Postgres => {
            let admin = pg_admin_url();
            if <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.is_err() {
                return None;
            }
            let name = format!("accountctl_bench_{}", uuid::Uuid::new_v4().simple());
            pg_admin(&admin, &format!("CREATE DATABASE {name}")).await;
            let mut url = url::Url::parse(&admin).expect("url");
            url.set_path(&format!("/{name}"));
            (url.to_string(), None, Some((admin, name)))
        }
    };
    let db = Database::connect_with(&DatabaseUrl::parse(&url).expect("url"), 4)
        .await
        .expect("connect");
    let app = App::builder().database(db.clone()).build().await.expect("app");
    let fresh = Fresh {
        app,
        db,
        url,
        backend,
        _dir: dir,
        pg,
    };
    fresh.app().bootstrap().run(None).await.expect("bootstrap");
    Some(fresh)
}

fn secs(d: Duration) -> String {
    if d.as_secs_f64() >= 1.0 {
        format!("{:.2} s", d.as_secs_f64())
    } else if d.as_secs_f64() >= 0.001 {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    }
}

fn scale(n: usize) -> usize {
    let s: f64 = std::env::var("ACCOUNTCTL_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * s) as usize).max(10)
}

fn wanted(name: &str) -> bool {
    std::env::var("ACCOUNTCTL_BENCH_ONLY").map_or(true, |only| only.split(',').any(|o| o.trim() == name))
}

async fn new_user(app: &App, name: &str) -> uuid::Uuid {
    app.accounts()
        .create(
            NewUser {
                username: name.into(),
                email: Some(format!("{name}@example.com")),
                ..NewUser::default()
            },
            false,
        )
        .await
        .expect("user")
        .user
        .id
}

/// B with `n` sessions, files in its home folder and audit rows.
async fn merge_fixture(f: &Fresh, a_name: &str, b_name: &str, tags: (u16, u16), n: usize) -> (uuid::Uuid, uuid::Uuid) {
    let app = f.app();
    let a = new_user(&app, a_name).await;
    let b = new_user(&app, b_name).await;
    let home: uuid::Uuid =
        f.db.begin()
            .await
            .expect("tx")
            .fetch_one("SELECT id FROM folders WHERE user_id = $1 AND is_home", &[b.into()])
            .await
            .expect("home folder")
            .get("id")
            .expect("id");
    let (bl, hl) = (f.lit(b), f.lit(home));
    let s = series(n);
    f.exec(&format!("INSERT INTO sessions (id, user_id, family_id, token_hash, created_at, expires_at) {s} SELECT {}, {bl}, {bl}, '{b_name}' || i, '{T}', '{FUTURE}' FROM s", f.id(tags.0, "i"))).await;
    f.exec(&format!("INSERT INTO files (id, folder_id, user_id, name, size_bytes, created_at) {s} SELECT {}, {hl}, {bl}, 'f' || i, 1, '{T}' FROM s", f.id(tags.1, "i"))).await;
    f.exec(&format!("INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) {s} SELECT '{T}', 'bench', 'bench.event', {bl}, '{{}}' FROM s")).await;
    (a, b)
}

async fn bench_merge(f: &Fresh, rows: &mut Vec<Row>, label: &'static str) {
    let n = scale(100_000);
    let (a, b) = merge_fixture(f, "keep1", "gone1", (0x20, 0x21), n).await;
    let (a2, b2) = merge_fixture(f, "keep2", "gone2", (0x30, 0x31), n).await;
    let (al, bl) = (f.lit(a2), f.lit(b2));
    let started = Instant::now();
    let mut tx = f.db.begin().await.expect("tx");
    for sql in [
        format!("UPDATE sessions SET user_id = {al} WHERE user_id = {bl}"),
        format!("UPDATE files SET user_id = {al} WHERE user_id = {bl}"),
        format!("UPDATE audit_events SET subject_user_id = {al} WHERE subject_user_id = {bl}"),
    ] {
        tx.execute(&sql, &[]).await.expect("baseline");
    }
    tx.commit().await.expect("commit");
    let baseline = started.elapsed();
    let started = Instant::now();
    let outcome = f
        .app()
        .merger()
        .merge(&UserRef::Id(a), &UserRef::Id(b), Default::default())
        .await
        .expect("merge");
    let ours = started.elapsed();
    assert!(outcome.merged);
    rows.push(Row {
        backend: label,
        scenario: "merge: B with 100k sessions+files+audit",
        ours: secs(ours),
        baseline: secs(baseline),
        ratio: format!("{:.2}x", ours.as_secs_f64() / baseline.as_secs_f64()),
        target: "<= 2x",
    });
}

/// `n` users (tag base `t`) with a passport, two sessions, a home folder, a membership and
/// two audit rows each; in the trash and due for purging when `due`.
async fn purge_fixture(f: &Fresh, t: u16, prefix: &str, n: usize, due: bool) {
    let app = f.app();
    app.workspaces()
        .create_type("team", "Team", &[], true)
        .await
        .expect("type");
    app.workspaces()
        .create("purge-bench", "team", None, true)
        .await
        .expect("ws");
    let role = app
        .workspaces()
        .create_role("purge-bench", "member", &[], true)
        .await
        .expect("role");
    let (ws, role) = (f.lit(role.workspace_id), f.lit(role.id));
    let s = series(n);
    let (person, user) = (f.id(t, "i"), f.id(t + 1, "i"));
    let trash = if due { format!("'{PAST}'") } else { "NULL".to_owned() };
    for sql in [
        format!(
            "INSERT INTO persons (id, given_name, created_at, updated_at) {s} SELECT {person}, 'G' || i, '{T}', '{T}' FROM s"
        ),
        format!(
            "INSERT INTO users (id, person_id, username, active, created_at, updated_at, deleted_at, purge_after) {s} SELECT {user}, {person}, '{prefix}' || i, FALSE, '{T}', '{T}', {trash}, {trash} FROM s"
        ),
        format!(
            "INSERT INTO passports (id, user_id, kind, value, is_primary, created_at) {s} SELECT {}, {user}, 'email', '{prefix}' || i || '@example.com', TRUE, '{T}' FROM s",
            f.id(t + 2, "i")
        ),
        format!(
            "INSERT INTO sessions (id, user_id, family_id, token_hash, created_at, expires_at) {s} SELECT {}, {user}, {user}, '{prefix}a' || i, '{T}', '{FUTURE}' FROM s",
            f.id(t + 3, "i")
        ),
        format!(
            "INSERT INTO sessions (id, user_id, family_id, token_hash, created_at, expires_at) {s} SELECT {}, {user}, {user}, '{prefix}b' || i, '{T}', '{FUTURE}' FROM s",
            f.id(t + 4, "i")
        ),
        format!(
            "INSERT INTO folders (id, user_id, name, is_home, created_at) {s} SELECT {}, {user}, 'My Folder - {prefix}' || i, TRUE, '{T}' FROM s",
            f.id(t + 5, "i")
        ),
        format!(
            "INSERT INTO memberships (user_id, workspace_id, role_id, created_at) {s} SELECT {user}, {ws}, {role}, '{T}' FROM s"
        ),
        format!(
            "INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) {s} SELECT '{T}', 'bench', 'user.created', {user}, '{{}}' FROM s"
        ),
        format!(
            "INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) {s} SELECT '{T}', 'bench', 'user.login', {user}, '{{}}' FROM s"
        ),
    ] {
        f.exec(&sql).await;
    }
}

async fn bench_purge(f: &Fresh, rows: &mut Vec<Row>, label: &'static str) {
    let n = scale(10_000);
    purge_fixture(f, 0x100, "base", n, false).await;
    purge_fixture(f, 0x200, "purge", n, true).await;
    // Baseline and sweeper alternate in slices of 1,000 users, so drift in the machine's
    // speed (fsync latency varies a lot here) falls on both alike.
    let slice = (n / 10).max(1);
    let (mut baseline, mut ours, mut purged) = (Duration::ZERO, Duration::ZERO, 0usize);
    let erasure = f.app().erasure();
    let mut next = 1;
    while next <= n {
        let end = (next + slice - 1).min(n);
        let started = Instant::now();
        for i in next..=end {
            let id = format!("00000000-0000-4000-8101-{i:012}");
            let mut tx = f.db.begin().await.expect("tx");
            tx.execute(&format!("DELETE FROM users WHERE id = {}", lit_text(f, &id)), &[])
                .await
                .expect("delete");
            tx.commit().await.expect("commit");
        }
        baseline += started.elapsed();
        let started = Instant::now();
        let report = erasure
            .purge(
                &SweepOptions {
                    limit: (end + 1 - next) as i64,
                    ..SweepOptions::default()
                },
                |_, _| {},
            )
            .await
            .expect("sweep");
        ours += started.elapsed();
        assert_eq!(
            report.failed,
            0,
            "{:?}",
            report.users.iter().find(|u| u.error.is_some())
        );
        purged += report.purged as usize;
        next = end + 1;
    }
    assert_eq!(purged, n);
    rows.push(Row {
        backend: label,
        scenario: "purge: 10k users, one tx each (users/s)",
        ours: format!("{:.0}/s ({})", n as f64 / ours.as_secs_f64(), secs(ours)),
        baseline: format!("{:.0}/s ({})", n as f64 / baseline.as_secs_f64(), secs(baseline)),
        ratio: format!("{:.2}x", ours.as_secs_f64() / baseline.as_secs_f64()),
        target: "<= 5x",
    });
}

fn lit_text(f: &Fresh, id: &str) -> String {
    match f.backend {
        Backend::Sqlite => format!("'{id}'"),
        Backend::Postgres => format!("CAST('{id}' AS uuid)"),
    }
}

/// The engine's own bulk load of `n` imported users (person, user with a password hash,
/// email passport, membership, home folder, `user.created` audit row: every table an import
/// writes) named `{prefix}{i}`, in one transaction: PostgreSQL `COPY … FROM STDIN` per table;
/// on SQLite one prepared `INSERT` per table reused across rows.
async fn engine_bulk_load(
    f: &Fresh,
    prefix: &str,
    tag: u16,
    n: usize,
    phc: &str,
    ws: uuid::Uuid,
    role: uuid::Uuid,
) -> Duration {
    use sqlx::Connection;
    let id = |t: u16, i: usize| format!("00000000-0000-4000-8{:03x}-{i:012}", tag + t);
    let fields = r#"{"is_external":false,"role":"user"}"#;
    let started = Instant::now();
    match f.backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&f.url).await.expect("connect");
            let mut tx = conn.begin().await.expect("tx");
            type CsvRow<'a> = Box<dyn Fn(usize) -> String + 'a>;
            let tables: [(&str, CsvRow); 6] = [
                (
                    "persons (id, created_at, updated_at)",
                    Box::new(|i| format!("{},{T},{T}\n", id(0, i))),
                ),
                (
                    "users (id, person_id, username, role, is_external, active, password_hash, created_at, updated_at)",
                    Box::new(|i| format!("{},{},{prefix}{i},user,f,t,\"{phc}\",{T},{T}\n", id(1, i), id(0, i))),
                ),
                (
                    "passports (id, user_id, kind, value, is_primary, created_at)",
                    Box::new(|i| format!("{},{},email,{prefix}{i}@example.com,t,{T}\n", id(2, i), id(1, i))),
                ),
                (
                    "memberships (user_id, workspace_id, role_id, created_at)",
                    Box::new(|i| format!("{},{ws},{role},{T}\n", id(1, i))),
                ),
                (
                    "folders (id, user_id, name, is_home, created_at)",
                    Box::new(|i| format!("{},{},My Folder - {prefix}{i},t,{T}\n", id(3, i), id(1, i))),
                ),
                (
                    "audit_events (occurred_at, actor, event, subject_user_id, fields)",
                    Box::new(|i| {
                        format!(
                            "{T},bench,user.created,{},\"{}\"\n",
                            id(1, i),
                            fields.replace('"', "\"\"")
                        )
                    }),
                ),
            ];
            for (table, row) in &tables {
                let mut copy = tx
                    .copy_in_raw(&format!("COPY {table} FROM STDIN (FORMAT csv)"))
                    .await
                    .expect("copy");
                let mut buf = String::new();
                for i in 0..n {
                    buf.push_str(&row(i));
                    if buf.len() >= 1 << 20 {
                        copy.send(buf.as_bytes()).await.expect("send");
                        buf.clear();
                    }
                }
                copy.send(buf.as_bytes()).await.expect("send");
                copy.finish().await.expect("finish");
            }
            tx.commit().await.expect("commit");
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&f.url).await.expect("connect");
            sqlx::query("PRAGMA foreign_keys = ON")
                .execute(&mut conn)
                .await
                .expect("fk");
            let mut tx = conn.begin().await.expect("tx");
            for i in 0..n {
                sqlx::query("INSERT INTO persons (id, created_at, updated_at) VALUES (?, ?, ?)")
                    .bind(id(0, i))
                    .bind(T)
                    .bind(T)
                    .execute(&mut *tx)
                    .await
                    .expect("persons");
            }
            for i in 0..n {
                sqlx::query("INSERT INTO users (id, person_id, username, role, is_external, active, password_hash, created_at, updated_at) VALUES (?, ?, ?, 'user', 0, 1, ?, ?, ?)")
                    .bind(id(1, i))
                    .bind(id(0, i))
                    .bind(format!("{prefix}{i}"))
                    .bind(phc)
                    .bind(T)
                    .bind(T)
                    .execute(&mut *tx)
                    .await
                    .expect("users");
            }
            for i in 0..n {
                sqlx::query("INSERT INTO passports (id, user_id, kind, value, is_primary, created_at) VALUES (?, ?, 'email', ?, 1, ?)")
                    .bind(id(2, i))
                    .bind(id(1, i))
                    .bind(format!("{prefix}{i}@example.com"))
                    .bind(T)
                    .execute(&mut *tx)
                    .await
                    .expect("passports");
            }
            for i in 0..n {
                sqlx::query("INSERT INTO memberships (user_id, workspace_id, role_id, created_at) VALUES (?, ?, ?, ?)")
                    .bind(id(1, i))
                    .bind(ws.to_string())
                    .bind(role.to_string())
                    .bind(T)
                    .execute(&mut *tx)
                    .await
                    .expect("memberships");
            }
            for i in 0..n {
                sqlx::query("INSERT INTO folders (id, user_id, name, is_home, created_at) VALUES (?, ?, ?, 1, ?)")
                    .bind(id(3, i))
                    .bind(id(1, i))
                    .bind(format!("My Folder - {prefix}{i}"))
                    .bind(T)
                    .execute(&mut *tx)
                    .await
                    .expect("folders");
            }
            for i in 0..n {
                sqlx::query("INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) VALUES (?, 'bench', 'user.created', ?, ?)")
                    .bind(T)
                    .bind(id(1, i))
                    .bind(fields)
                    .execute(&mut *tx)
                    .await
                    .expect("audit");
            }
            tx.commit().await.expect("commit");
        }
    }
    started.elapsed()
}

/// The workspace `bench` with role `member` that imported users join.
async fn bench_workspace(f: &Fresh) -> (uuid::Uuid, uuid::Uuid) {
    let app = f.app();
    app.workspaces()
        .create_type("team", "Team", &[], true)
        .await
        .expect("type");
    app.workspaces().create("bench", "team", None, true).await.expect("ws");
    let role = app
        .workspaces()
        .create_role("bench", "member", &[], true)
        .await
        .expect("role");
    (role.workspace_id, role.id)
}

/// A CSV of `n` users `{prefix}{i}` with an email, the `bench:member` membership and `phc`.
fn import_file(dir: &std::path::Path, prefix: &str, n: usize, phc: &str) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join(format!("{prefix}-{n}.csv"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("csv"));
    writeln!(out, "username,email,memberships,password_hash").expect("write");
    for i in 0..n {
        writeln!(out, "{prefix}{i},{prefix}{i}@example.com,bench:member,\"{phc}\"").expect("write");
    }
    out.flush().expect("flush");
    path
}

/// User plus system CPU time of a `rusage`.
fn cpu_time(usage: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// This process's CPU time so far (user + system, `getrusage(RUSAGE_SELF)`).
fn own_cpu() -> Duration {
    // SAFETY: an all-zero `rusage` is valid, and `getrusage` writes only into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    cpu_time(&usage)
}

/// What one `accountctl` process took: wall time, peak resident set in bytes (`ru_maxrss`)
/// and CPU time (user + system, `ru_utime + ru_stime`), all from `wait4`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Run {
    wall: Duration,
    peak: u64,
    cpu: Duration,
}

/// Runs `accountctl` with `args` against `f`, stdout to /dev/null; returns what it took.
fn run_cli(f: &Fresh, args: &[&str]) -> Run {
    let started = Instant::now();
    // Reaped by `wait4` below.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_accountctl"))
        .args(args)
        .env("DATABASE_URL", &f.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn accountctl");
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value, and `wait4` writes only into the two
    // out-parameters, both live for the call. The child is reaped here (std's `wait` would
    // not return its resource usage), so `Child` is not waited on again.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let took = started.elapsed();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    assert!(matches!(code, Some(0 | 5)), "accountctl {args:?}: exit {code:?}");
    Run {
        wall: took,
        peak: usage.ru_maxrss as u64 * 1024,
        cpu: cpu_time(&usage),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

async fn bench_import(f: &Fresh, rows: &mut Vec<Row>, label: &'static str) {
    let n = scale(100_000);
    let (ws, role) = bench_workspace(f).await;
    let phc = password::hash_blocking(&Secret::new("bench password".into())).expect("hash");
    let baseline = engine_bulk_load(f, "base", 0x300, n, &phc, ws, role).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = import_file(dir.path(), "imp", n, &phc);
    let Run { wall: ours, peak, .. } = run_cli(f, &["user", "import", file.to_str().expect("path"), "-q"]);
    let app = f.app();
    let imported = app
        .accounts()
        .list(&UserFilter {
            search: Some(format!("imp{}", n - 1)),
            ..UserFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(imported.len(), 1, "the import created its last row");
    rows.push(Row {
        backend: label,
        scenario: "import: 100k users, password_hash + membership (peak RSS)",
        ours: format!(
            "{} ({:.0} rows/s, {})",
            secs(ours),
            n as f64 / ours.as_secs_f64(),
            mib(peak)
        ),
        baseline: format!(
            "{} ({:.0} rows/s, {})",
            secs(baseline),
            n as f64 / baseline.as_secs_f64(),
            if f.backend == Backend::Postgres {
                "COPY"
            } else {
                "prepared INSERTs, one tx"
            }
        ),
        ratio: format!("{:.2}x", ours.as_secs_f64() / baseline.as_secs_f64()),
        target: "<= 1.2x",
    });
}

/// `import-analyze` (PostgreSQL only): `accountctl user import --atomic` of 100k users while
/// `ANALYZE passports; ANALYZE users` runs in a loop beside it (what autovacuum does to tables
/// that grow: inside the import's one transaction ANALYZE sees no new row, so the statistics
/// say "empty" mid-import), next to the same import without it, each on a fresh database.
/// The lookups of the import must stay one index probe per key whatever the statistics say:
/// the ratio stays near 1 (it went quadratic before: 100k rows did not finish in 150 s).
async fn bench_import_analyze(f: &Fresh, rows: &mut Vec<Row>, label: &'static str) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    if f.backend != Backend::Postgres {
        return;
    }
    let n = scale(100_000);
    let phc = password::hash_blocking(&Secret::new("bench password".into())).expect("hash");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = import_file(dir.path(), "atom", n, &phc);
    let file = file.to_str().expect("path").to_owned();
    let imported = |f: &Fresh| {
        let app = f.app();
        async move {
            let found = app
                .accounts()
                .list(&UserFilter {
                    search: Some(format!("atom{}", n - 1)),
                    ..UserFilter::default()
                })
                .await
                .expect("list");
            assert_eq!(found.len(), 1, "the import created its last row");
        }
    };
    // Without: a quiet database.
    bench_workspace(f).await;
    let plain = run_cli(f, &["user", "import", &file, "--atomic", "-q"]).wall;
    imported(f).await;
    // With: a fresh database of the same shape, ANALYZE in a loop until the import ends.
    let Some(g) = fresh(Backend::Postgres).await else {
        return;
    };
    bench_workspace(&g).await;
    let stop = Arc::new(AtomicBool::new(false));
    let analyzer = {
        let (stop, url) = (stop.clone(), g.url.clone());
        tokio::spawn(async move {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            let mut runs = 0u64;
            while !stop.load(Ordering::Relaxed) {
                sqlx::Executor::execute(&mut conn, sqlx::raw_sql("ANALYZE passports; ANALYZE users"))
                    .await
                    .expect("analyze");
                runs += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = conn.close().await;
            runs
        })
    };
    // The runtime's other worker keeps the ANALYZE loop going while this one waits.
    let with = tokio::task::block_in_place(|| run_cli(&g, &["user", "import", &file, "--atomic", "-q"])).wall;
    stop.store(true, Ordering::Relaxed);
    let analyzes = analyzer.await.expect("analyzer");
    imported(&g).await;
    g.drop_db().await;
    let ratio = with.as_secs_f64() / plain.as_secs_f64();
    eprintln!(
        "{label} import-analyze: {n} rows --atomic: {} with ANALYZE beside it ({analyzes} runs), {} without; ratio {ratio:.2}x",
        secs(with),
        secs(plain)
    );
    rows.push(Row {
        backend: label,
        scenario: "import-analyze: 100k users --atomic, ANALYZE looping beside it",
        ours: format!(
            "{} ({:.0} rows/s, {analyzes} ANALYZE runs)",
            secs(with),
            n as f64 / with.as_secs_f64()
        ),
        baseline: format!(
            "{} ({:.0} rows/s, the same import without ANALYZE)",
            secs(plain),
            n as f64 / plain.as_secs_f64()
        ),
        ratio: format!("{ratio:.2}x"),
        target: "<= 1.2x",
    });
}

async fn bench_hashing(f: &Fresh, rows: &mut Vec<Row>, label: &'static str) {
    use rayon::prelude::*;
    let n = scale(2_000);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    // One hash, median of 21, single-threaded.
    let probe = Secret::new("one hash time".into());
    let mut singles: Vec<Duration> = (0..21)
        .map(|_| {
            let started = Instant::now();
            password::hash_blocking(&probe).expect("hash");
            started.elapsed()
        })
        .collect();
    singles.sort();
    let one = singles[10];
    let ideal = cores as f64 / one.as_secs_f64();
    // The machine's own ceiling: the same parallel hashing with no database at all.
    let started = Instant::now();
    (0..n / 4).into_par_iter().for_each(|_| {
        password::hash_blocking(&probe).expect("hash");
    });
    let ceiling = (n / 4) as f64 / started.elapsed().as_secs_f64();
    let mut csv = String::from("username,password\n");
    for i in 0..n {
        let _ = writeln!(csv, "plain{i},password number {i}");
    }
    let started = Instant::now();
    let parsed = import::parse(csv.as_bytes(), Format::Csv).expect("parse");
    let summary = f
        .app()
        .importer()
        .import(parsed, &ImportOptions::default(), |_| {})
        .await
        .expect("import");
    let took = started.elapsed();
    assert_eq!(summary.created, n);
    let rate = n as f64 / took.as_secs_f64();
    rows.push(Row {
        backend: label,
        scenario: "hashing: 2,000 plaintext passwords",
        ours: format!("{rate:.1} hashes/s ({})", secs(took)),
        baseline: format!(
            "{ideal:.1}/s = {cores} cores / {}; bare rayon, no DB: {ceiling:.1}/s ({:.0}%)",
            secs(one),
            100.0 * ceiling / ideal
        ),
        ratio: format!("{:.0}%", 100.0 * rate / ideal),
        target: ">= 85%",
    });
}

/// Median of `runs` timings.
async fn median<F, Fut>(runs: usize, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        f().await;
        times.push(started.elapsed());
    }
    times.sort();
    times[runs / 2]
}

async fn big_directory(f: &Fresh, n: usize) {
    let s = series(n);
    let (person, user) = (f.id(0x400, "i"), f.id(0x401, "i"));
    for sql in [
        format!("INSERT INTO persons (id, created_at, updated_at) {s} SELECT {person}, '{T}', '{T}' FROM s"),
        format!(
            "INSERT INTO users (id, person_id, username, created_at, updated_at) {s} SELECT {user}, {person}, 'u' || i, '{T}', '{T}' FROM s"
        ),
        format!(
            "INSERT INTO passports (id, user_id, kind, value, is_primary, created_at) {s} SELECT {}, {user}, 'email', 'mail' || i || '@example.com', TRUE, '{T}' FROM s",
            f.id(0x402, "i")
        ),
    ] {
        f.exec(&sql).await;
    }
    if f.backend == Backend::Postgres {
        pg_admin(&f.url, "ANALYZE").await;
    }
}

async fn bench_list(f: &Fresh, rows: &mut Vec<Row>, label: &'static str) {
    let n = scale(1_000_000);
    big_directory(f, n).await;
    let accounts = f.app().accounts();
    let filter = UserFilter {
        search: Some("u12345".into()),
        limit: 100,
        ..UserFilter::default()
    };
    assert!(!accounts.list(&filter).await.expect("list").is_empty());
    let ours = median(21, || async {
        accounts.list(&filter).await.expect("list");
    })
    .await;
    // The library's query for this page (two ordered, limited range scans merged), with the
    // values inlined.
    let (key, email) = if f.backend == Backend::Postgres {
        ("lower(u.username) COLLATE \"C\"", "s.value COLLATE \"C\"")
    } else {
        ("lower(u.username)", "s.value")
    };
    let view = "SELECT u.id, u.username, u.role, u.is_external, u.active, (u.password_hash IS NOT NULL) AS has_password, \
         u.storage_used_bytes, u.created_at, u.last_login_at, u.deleted_at, u.purge_after, p.given_name, p.family_name, \
         p.display_name, \
         (SELECT e.value FROM passports e WHERE e.user_id = u.id AND e.kind = 'email' AND e.is_primary) AS email, \
         (SELECT t.value FROM passports t WHERE t.user_id = u.id AND t.kind = 'phone' AND t.is_primary) AS phone \
         FROM users u JOIN persons p ON p.id = u.person_id";
    let (lo, hi) = ("'u12345'", "'u12345\u{10FFFF}'");
    let outer = key.replace("u.username", "z.username");
    let sql = format!(
        "SELECT * FROM (SELECT * FROM ({view} WHERE u.deleted_at IS NULL AND {key} >= {lo} AND {key} < {hi} ORDER BY {key} LIMIT 100) x \
         UNION SELECT * FROM ({view} WHERE u.deleted_at IS NULL AND u.id IN (SELECT s.user_id FROM passports s WHERE s.kind = 'email' \
         AND {email} >= {lo} AND {email} < {hi}) ORDER BY {key} LIMIT 100) y) z ORDER BY {outer} LIMIT 100"
    );
    let baseline = median(21, || async {
        let mut tx = f.db.begin_read().await.expect("tx");
        tx.fetch_all(&sql, &[]).await.expect("select");
    })
    .await;
    rows.push(Row {
        backend: label,
        scenario: "list --search, first page, 1M users",
        ours: secs(ours),
        baseline: secs(baseline),
        ratio: format!("{:.2}x", ours.as_secs_f64() / baseline.as_secs_f64()),
        target: "milliseconds",
    });
}

async fn bench_show(f: &Fresh, rows: &mut Vec<Row>, label: &'static str) {
    new_user(&f.app(), "showme").await;
    let bin = env!("CARGO_BIN_EXE_accountctl");
    let run = |cmd: &mut std::process::Command| {
        let started = Instant::now();
        let status = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        status.ok().filter(|s| s.success()).map(|_| started.elapsed())
    };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let query = "SELECT u.id, u.username, p.value FROM users u LEFT JOIN passports p ON p.user_id = u.id WHERE lower(u.username) = 'showme'";
    for _ in 0..11 {
        if let Some(t) = run(std::process::Command::new(bin)
            .args(["user", "show", "showme", "-o", "json"])
            .env("DATABASE_URL", &f.url))
        {
            ours.push(t);
        }
        let direct = match f.backend {
            Backend::Sqlite => {
                let path = f.url.trim_start_matches("sqlite://").to_owned();
                run(std::process::Command::new("sqlite3").arg(path).arg(query))
            }
            Backend::Postgres => run(std::process::Command::new("psql").arg(&f.url).args(["-Atc", query])),
        };
        if let Some(t) = direct {
            theirs.push(t);
        }
    }
    ours.sort();
    theirs.sort();
    let (Some(o), baseline) = (ours.get(ours.len() / 2).copied(), theirs.get(theirs.len() / 2).copied()) else {
        return;
    };
    rows.push(Row {
        backend: label,
        scenario: "`user show` process start to exit",
        ours: secs(o),
        baseline: baseline.map_or_else(
            || "(sqlite3/psql not installed)".into(),
            |b| {
                format!(
                    "{} ({})",
                    secs(b),
                    if f.backend == Backend::Sqlite {
                        "sqlite3"
                    } else {
                        "psql"
                    }
                )
            },
        ),
        ratio: baseline.map_or_else(|| "-".into(), |b| format!("{:.2}x", o.as_secs_f64() / b.as_secs_f64())),
        target: "-",
    });
}

/// The login path's timing from outside: `auth check` processes for a wrong password, an
/// unknown user and a password-less one, interleaved so a busy machine slows all three alike.
/// (`tests/timing.rs` shows the cause, one verification each, by counting the work.)
async fn bench_auth(f: &Fresh, rows: &mut Vec<Row>, label: &'static str) {
    let app = f.app();
    app.bootstrap()
        .run(Some(NewUser {
            username: "admin".into(),
            password: Some(Secret::new("bench admin password".into())),
            ..Default::default()
        }))
        .await
        .expect("bootstrap");
    new_user(&app, "nopass").await;
    let bin = env!("CARGO_BIN_EXE_accountctl");
    let check = |user: &str| {
        use std::io::Write as _;
        let started = Instant::now();
        let mut child = std::process::Command::new(bin)
            .args(["auth", "check", user, "--password-stdin"])
            .env("DATABASE_URL", &f.url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn accountctl");
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(b"wrong password\n");
        }
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(4), "auth check {user}");
        started.elapsed()
    };
    let (mut wrong, mut unknown, mut nopass) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..21 {
        wrong.push(check("admin"));
        unknown.push(check("nobody"));
        nopass.push(check("nopass"));
    }
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (w, u, p) = (med(&mut wrong), med(&mut unknown), med(&mut nopass));
    for (scenario, ours) in [
        ("auth check: unknown user vs wrong password", u),
        ("auth check: password-less user vs wrong password", p),
    ] {
        rows.push(Row {
            backend: label,
            scenario,
            ours: secs(ours),
            baseline: secs(w),
            ratio: format!("{:.2}x", ours.as_secs_f64() / w.as_secs_f64()),
            target: "<= 1.1x",
        });
    }
}

async fn bench_request(f: &Fresh, rows: &mut Vec<Row>, label: &'static str) {
    let app = f.app();
    let ws = app.workspaces();
    let caps = accountctl::domain::parse_capabilities("docs.*").expect("caps");
    ws.create_type("team", "Team", &caps, false).await.expect("type");
    ws.create("Acme", "team", None, false).await.expect("workspace");
    ws.create_role("Acme", "editor", &caps, false).await.expect("role");
    app.accounts()
        .create(
            NewUser {
                username: "reader".into(),
                password: Some(Secret::new("bench password".into())),
                ..NewUser::default()
            },
            false,
        )
        .await
        .expect("user");
    app.memberships()
        .assign(&UserRef::Username("reader".into()), "Acme", "editor")
        .await
        .expect("assign");
    let token = app
        .auth()
        .login("reader", &Secret::new("bench password".into()), true)
        .await
        .expect("sign in")
        .session
        .expect("session")
        .access_token;
    let acme = app.workspace_id("Acme").await.expect("acme");
    let request = || async {
        let valid = app.sessions().validate(&token).await.expect("valid");
        let caps = app
            .authz()
            .capabilities(app.db(), valid.user.id, acme)
            .await
            .expect("caps");
        assert!(!caps.is_empty());
    };
    request().await;
    let ours = median(2001, request).await;
    // The same session and user rows by the indexed token hash, on a pool of its own.
    let sql = "SELECT s.id, s.family_id, s.created_at, s.expires_at, s.last_seen_at, s.revoked_at, s.revoke_reason, \
         u.id, u.person_id, u.username, u.role, u.is_external, u.active, (u.password_hash IS NOT NULL) AS has_password, \
         u.storage_quota_bytes, u.storage_used_bytes, u.created_at, u.updated_at, u.last_login_at, u.deleted_at, u.purge_after \
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1";
    let hash = accountctl::tokens::hash_token(&token);
    let baseline = match f.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&f.url).await.expect("pool");
            let select = || async {
                assert!(
                    sqlx::query(sql)
                        .bind(&hash)
                        .fetch_optional(&pool)
                        .await
                        .expect("select")
                        .is_some()
                );
            };
            select().await;
            let t = median(2001, select).await;
            pool.close().await;
            t
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&f.url).await.expect("pool");
            let select = || async {
                assert!(
                    sqlx::query(sql)
                        .bind(&hash)
                        .fetch_optional(&pool)
                        .await
                        .expect("select")
                        .is_some()
                );
            };
            select().await;
            let t = median(2001, select).await;
            pool.close().await;
            t
        }
    };
    rows.push(Row {
        backend: label,
        scenario: "request: validate session + capabilities (warm)",
        ours: secs(ours),
        baseline: secs(baseline),
        ratio: format!("{:.2}x", ours.as_secs_f64() / baseline.as_secs_f64()),
        target: "<= 1.5x, < 1 ms",
    });
}

/// The sizes of the growth curve when `ACCOUNTCTL_BENCH_SCALE` names sizes instead of a
/// factor: `growth` (100k, 1M and 10M users) or a list such as `100k,1m`.
fn growth_sizes() -> Option<Vec<usize>> {
    let value = std::env::var("ACCOUNTCTL_BENCH_SCALE").ok()?;
    if value.parse::<f64>().is_ok() {
        return None;
    }
    let value = if value.trim() == "growth" {
        "100k,1m,10m".to_owned()
    } else {
        value
    };
    Some(
        value
            .split(',')
            .map(|size| {
                let size = size.trim().to_ascii_lowercase();
                let (digits, unit) = match size.strip_suffix('m') {
                    Some(d) => (d.to_owned(), 1_000_000),
                    None => match size.strip_suffix('k') {
                        Some(d) => (d.to_owned(), 1_000),
                        None => (size.clone(), 1),
                    },
                };
                digits
                    .parse::<usize>()
                    .unwrap_or_else(|_| panic!("ACCOUNTCTL_BENCH_SCALE: bad size {size:?}"))
                    * unit
            })
            .collect(),
    )
}

/// Scale mode: whether `ACCOUNTCTL_BENCH_ONLY` is exactly `what` (`import`: stop after the
/// import and its baseline; `purge`: stop after the purge).
fn only(what: &str) -> bool {
    std::env::var("ACCOUNTCTL_BENCH_ONLY").is_ok_and(|only| only.trim() == what)
}

struct Growth {
    backend: &'static str,
    users: usize,
    measure: &'static str,
    value: String,
}

/// One point of the growth curve: a database of `n` users built by `accountctl user import`
/// (with a passport, a membership, a home folder and an audit row each), one session per user
/// added in bulk, then every bulk and interactive path measured on it.
async fn bench_growth(f: &Fresh, n: usize, out: &mut Vec<Growth>, label: &'static str) {
    let mut push = |measure: &'static str, value: String| {
        eprintln!("{label} {n}: {measure}: {value}");
        out.push(Growth {
            backend: label,
            users: n,
            measure,
            value,
        });
    };
    let (ws, role) = bench_workspace(f).await;
    let phc = password::hash_blocking(&Secret::new("bench password".into())).expect("hash");
    let dir = tempfile::tempdir_in(
        std::env::var("ACCOUNTCTL_BENCH_DIR").unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .expect("tempdir");
    // `ACCOUNTCTL_BENCH_FILL=bulk` builds the database with the engine's bulk load instead of
    // the import (same rows, same tables): the measures on a built database, at a size
    // whose import takes longer than the run can.
    if std::env::var("ACCOUNTCTL_BENCH_FILL").is_ok_and(|v| v == "bulk") {
        let took = engine_bulk_load(f, "u", 0x100, n, &phc, ws, role).await;
        push(
            "database built by the engine's bulk load (not measured: import)",
            format!("{:.0} rows/s ({})", n as f64 / took.as_secs_f64(), secs(took)),
        );
    } else {
        let file = import_file(dir.path(), "u", n, &phc);
        let run = run_cli(f, &["user", "import", file.to_str().expect("path"), "-q"]);
        let took = run.wall;
        std::fs::remove_file(&file).ok();
        // CPU time per row is the measure that other load on the machine does not change
        // (on SQLite it is the whole import's; on PostgreSQL the client's share only).
        push(
            "user import (password_hash + membership)",
            format!(
                "{:.0} rows/s ({}), peak RSS {}, process CPU {:.1} µs/row",
                n as f64 / took.as_secs_f64(),
                secs(took),
                mib(run.peak),
                run.cpu.as_secs_f64() * 1e6 / n as f64
            ),
        );
        // The engine's own bulk load of the same number of rows, for the ratio. The 1.2x target
        // is set at 1M rows; above `ACCOUNTCTL_BENCH_BULK_MAX` (default 1M) the baseline is
        // skipped, so a 10M database holds the imported users only and the run takes hours less.
        let bulk_max = std::env::var("ACCOUNTCTL_BENCH_BULK_MAX")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1_000_000);
        if n <= bulk_max {
            let bulk = engine_bulk_load(f, "bulk", 0x300, n, &phc, ws, role).await;
            push(
                "engine bulk load of the same rows (COPY / prepared INSERTs)",
                format!(
                    "{:.0} rows/s ({}): import is {:.2}x",
                    n as f64 / bulk.as_secs_f64(),
                    secs(bulk),
                    took.as_secs_f64() / bulk.as_secs_f64()
                ),
            );
        }
    }
    if only("import") {
        return;
    }
    f.exec(&format!(
        "INSERT INTO sessions (id, user_id, family_id, token_hash, created_at, expires_at) SELECT id, id, id, 'tok' || username, '{T}', '{FUTURE}' FROM users"
    ))
    .await;
    if f.backend == Backend::Postgres {
        // Settle the database first: freshly loaded tables are what autovacuum picks next, and
        // a vacuum of millions of rows running beside one measure (the purge's baseline, say)
        // and not the other would decide the ratio.
        pg_admin(&f.url, "VACUUM (ANALYZE)").await;
    }
    let accounts = f.app().accounts();
    // `ACCOUNTCTL_BENCH_ONLY=purge` in scale mode: build the database, measure the purge, stop.
    let purge_only = only("purge");
    if !purge_only {
        let search = UserFilter {
            search: Some(format!("u{}", n / 3)),
            ..UserFilter::default()
        };
        assert!(!accounts.list(&search).await.expect("search").is_empty());
        let t = median(11, || async {
            accounts.list(&search).await.expect("search");
        })
        .await;
        push("user list --search, first page (library call, median)", secs(t));
        let deep = UserFilter {
            after: Some(format!("u{}", n * 9 / 10)),
            ..UserFilter::default()
        };
        assert_eq!(accounts.list(&deep).await.expect("deep page").len(), 100);
        let t = median(11, || async {
            accounts.list(&deep).await.expect("deep page");
        })
        .await;
        push("user list, keyset page at 90 % (library call, median)", secs(t));
        let who = format!("u{}", n / 2);
        let mut shows: Vec<Run> = (0..7)
            .map(|_| run_cli(f, &["user", "show", &who, "-o", "json"]))
            .collect();
        shows.sort();
        push(
            "user show, one process (median of 7)",
            format!("{}, peak RSS {}", secs(shows[3].wall), mib(shows[3].peak)),
        );
    }

    // Purge: u0..u9999 trashed and due; the baseline deletes u10000..u19999 bare.
    let due = 10_000.min(n / 2);
    let mut tx = f.db.begin().await.expect("tx");
    let victims: Vec<uuid::Uuid> = tx
        .fetch_all(
            &format!(
                "SELECT id FROM users WHERE username LIKE 'u%' ORDER BY lower(username) LIMIT {}",
                2 * due
            ),
            &[],
        )
        .await
        .expect("victims")
        .iter()
        .map(|r| r.get("id").expect("id"))
        .collect();
    let (purged, bare) = victims.split_at(due);
    for id in purged {
        tx.execute(
            &format!("UPDATE users SET active = FALSE, deleted_at = '{PAST}', purge_after = '{PAST}' WHERE id = $1"),
            &[(*id).into()],
        )
        .await
        .expect("trash");
    }
    tx.commit().await.expect("commit");
    // The two run in turns, 1,000 users at a time, so whatever else the machine or the server
    // does meanwhile (a checkpoint, autovacuum) falls on both alike.
    let (mut baseline, mut ours) = (Duration::ZERO, Duration::ZERO);
    let (mut baseline_cpu, mut ours_cpu) = (Duration::ZERO, Duration::ZERO);
    let app = f.app();
    for chunk in bare.chunks(1000) {
        let started = Instant::now();
        let cpu = own_cpu();
        for id in chunk {
            let mut tx = f.db.begin().await.expect("tx");
            tx.execute("DELETE FROM users WHERE id = $1", &[(*id).into()])
                .await
                .expect("delete");
            tx.commit().await.expect("commit");
        }
        baseline += started.elapsed();
        baseline_cpu += own_cpu() - cpu;
        let started = Instant::now();
        let cpu = own_cpu();
        let report = app
            .erasure()
            .purge(
                &SweepOptions {
                    limit: chunk.len() as i64,
                    ..SweepOptions::default()
                },
                |_, _| {},
            )
            .await
            .expect("sweep");
        ours += started.elapsed();
        ours_cpu += own_cpu() - cpu;
        assert_eq!(report.purged as usize, chunk.len());
    }
    push(
        "gdpr purge of 10k due users",
        format!(
            "{:.0} users/s; bare per-user cascade DELETE {:.0} users/s ({:.2}x); client CPU {:.0} / {:.0} µs per user",
            due as f64 / ours.as_secs_f64(),
            due as f64 / baseline.as_secs_f64(),
            ours.as_secs_f64() / baseline.as_secs_f64(),
            ours_cpu.as_secs_f64() * 1e6 / due as f64,
            baseline_cpu.as_secs_f64() * 1e6 / due as f64
        ),
    );
    if purge_only {
        return;
    }

    let (a, b) = merge_fixture(f, "keepgrowth", "gonegrowth", (0x20, 0x21), 100_000).await;
    let started = Instant::now();
    let outcome = f
        .app()
        .merger()
        .merge(&UserRef::Id(a), &UserRef::Id(b), Default::default())
        .await
        .expect("merge");
    assert!(outcome.merged);
    push(
        "user merge, B owning 100k sessions+files+audit rows",
        secs(started.elapsed()),
    );

    // The whole list as an operator streams it: one `user list --all -o json` process to
    // /dev/null, its rows/s and its peak resident set.
    let users: i64 = {
        let mut tx = f.db.begin().await.expect("tx");
        let row = tx
            .fetch_one("SELECT count(*) AS n FROM users", &[])
            .await
            .expect("count");
        row.get("n").expect("n")
    };
    let run = run_cli(f, &["user", "list", "--all", "-o", "json"]);
    push(
        "user list --all -o json > /dev/null, one process",
        format!(
            "{:.0} rows/s ({users} rows, {}), peak RSS {}",
            users as f64 / run.wall.as_secs_f64(),
            secs(run.wall),
            mib(run.peak)
        ),
    );
}

async fn run_growth(sizes: &[usize]) {
    let mut out = Vec::new();
    let only = std::env::var("ACCOUNTCTL_BENCH_BACKEND").ok();
    for (backend, label) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        for &n in sizes {
            match fresh(backend).await {
                Some(db) => {
                    bench_growth(&db, n, &mut out, label).await;
                    db.drop_db().await;
                }
                None => eprintln!("{label}: unreachable, skipping"),
            }
        }
    }
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::ASCII_MARKDOWN);
    table.set_header(vec!["backend", "users", "measure", "value"]);
    for g in out {
        table.add_row(vec![
            g.backend.to_owned(),
            g.users.to_string(),
            g.measure.to_owned(),
            g.value,
        ]);
    }
    println!("{table}");
}

async fn run() {
    let mut rows = Vec::new();
    let only = std::env::var("ACCOUNTCTL_BENCH_BACKEND").ok();
    for (backend, label) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        macro_rules! scenario {
            ($name:literal, $f:ident) => {
                if wanted($name) {
                    match fresh(backend).await {
                        Some(db) => {
                            eprintln!("{label}: {} ...", $name);
                            $f(&db, &mut rows, label).await;
                            db.drop_db().await;
                        }
                        None => eprintln!("{label}: unreachable, skipping {}", $name),
                    }
                }
            };
        }
        scenario!("merge", bench_merge);
        scenario!("purge", bench_purge);
        scenario!("import", bench_import);
        if backend == Backend::Postgres {
            scenario!("import-analyze", bench_import_analyze);
        }
        scenario!("hashing", bench_hashing);
        scenario!("list", bench_list);
        scenario!("show", bench_show);
        scenario!("auth", bench_auth);
        scenario!("request", bench_request);
        scenario!("load", bench_load);
    }
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::ASCII_MARKDOWN);
    table.set_header(vec![
        "backend",
        "scenario",
        "accountctl",
        "baseline (same run)",
        "ratio",
        "target",
    ]);
    for r in rows {
        table.add_row(vec![r.backend, r.scenario, &r.ours, &r.baseline, &r.ratio, r.target]);
    }
    println!("{table}");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match growth_sizes() {
        Some(sizes) => runtime.block_on(run_growth(&sizes)),
        None => runtime.block_on(run()),
    }
}
