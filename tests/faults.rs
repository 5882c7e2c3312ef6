//! Production faults on a real PostgreSQL server: Ctrl-C beside another operator's run,
//! connections that die or are ended inside a command, timeouts set on the server, servers
//! that refuse or do not answer, what every connection of a run is called, what the
//! messages claim, the atomic import while statistics change, and the table invalidation
//! channel with concurrent writers. Each test builds what it needs (a PgBouncer, a proxy, a
//! role) and removes it; none stops or reconfigures the shared server.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accountctl::db::{Database, DatabaseUrl, InvalidationChannel};
use accountctl::services::accounts::NewUser;
use accountctl::services::authz::{InvalidationListener, ListenerEvent};
use common::{Backend, Ctx, PgBouncer, admin_exec, pg_available, run_on};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `url` with `key=value` added to its query.
fn with_param(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// Starts the CLI in the background against `url` with `args` (stdin closed).
fn spawn_cli(ctx: &Ctx, url: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("accountctl"));
    cmd.args(args)
        .env("DATABASE_URL", url)
        .env("ACCOUNTCTL_ACTOR", "tester")
        .env_remove("RUST_LOG")
        .env_remove("ACCOUNTCTL_CONFIG")
        .env("XDG_CONFIG_HOME", ctx.dir.path().join("xdg"))
        .current_dir(ctx.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn accountctl")
}

fn sigint(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits for `child` (at most `within`), returning its output, or `None` while it still runs
/// at the end (it is left running).
async fn wait_for(child: Child, within: Duration) -> Result<Output, Child> {
    let deadline = Instant::now() + within;
    let mut child = child;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return Ok(tokio::task::spawn_blocking(move || child.wait_with_output())
                .await
                .expect("join")
                .expect("output"));
        }
        if Instant::now() >= deadline {
            return Err(child);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One plain connection straight to the test database.
async fn direct(ctx: &Ctx) -> sqlx::PgConnection {
    <sqlx::PgConnection as sqlx::Connection>::connect(&ctx.direct_url)
        .await
        .expect("connect")
}

/// The backend pids of this test database's sessions waiting on a lock, once there are `n`.
async fn lock_waiters(ctx: &Ctx, n: usize) -> Vec<i32> {
    let mut conn = direct(ctx).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' ORDER BY pid",
        )
        .fetch_all(&mut conn)
        .await
        .expect("pg_stat_activity");
        if pids.len() >= n {
            let _ = sqlx::Connection::close(conn).await;
            return pids;
        }
        assert!(
            Instant::now() < deadline,
            "{n} lock waiters never appeared (have {pids:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Holds `LOCK TABLE table IN ACCESS EXCLUSIVE MODE` in an open transaction until released.
struct TableLock {
    conn: sqlx::PgConnection,
}

impl TableLock {
    async fn take(ctx: &Ctx, table: &str) -> Self {
        let mut conn = direct(ctx).await;
        sqlx::Executor::execute(
            &mut conn,
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))),
        )
        .await
        .expect("lock");
        Self { conn }
    }

    async fn release(mut self) {
        sqlx::Executor::execute(&mut self.conn, sqlx::raw_sql("ROLLBACK"))
            .await
            .expect("rollback");
        let _ = sqlx::Connection::close(self.conn).await;
    }
}

// ---------------------------------------------------------------------------------------
// Item 2: Ctrl-C cancels this run's statements and nobody else's.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_only_this_runs_statements_when_the_url_names_the_application() {
    run_on(Backend::Postgres, |ctx| async move {
        ctx.bootstrap_cli();
        // Two operators' runs under the same application_name, both waiting on a lock.
        let url = with_param(&ctx.url, "application_name", "ops-console");
        let lock = TableLock::take(&ctx, "users").await;
        let mine = spawn_cli(&ctx, &url, &["user", "list"], &[]);
        let theirs = spawn_cli(&ctx, &url, &["user", "list"], &[]);
        lock_waiters(&ctx, 2).await;
        sigint(&mine);
        let mine = wait_for(mine, Duration::from_secs(10))
            .await
            .expect("the signalled run ends");
        assert_eq!(mine.status.code(), Some(130), "{}", stderr(&mine));
        // The other run was never signalled: it still waits, then finishes normally.
        let theirs = match wait_for(theirs, Duration::from_millis(700)).await {
            Ok(out) => panic!(
                "the run that was not signalled ended with {:?}: {}",
                out.status.code(),
                stderr(&out)
            ),
            Err(child) => child,
        };
        lock.release().await;
        let theirs = wait_for(theirs, Duration::from_secs(10)).await.expect("finishes");
        assert_eq!(theirs.status.code(), Some(0), "{}", stderr(&theirs));
        assert!(String::from_utf8_lossy(&theirs.stdout).contains("admin"));
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Items 4 and 8: a connection ended inside a hook, timeouts set on the server.

/// Ends the one backend waiting on a lock with `pg_terminate_backend`, as an administrator
/// (or a failover tool) would.
async fn terminate_the_waiter(ctx: &Ctx) {
    let pid = lock_waiters(ctx, 1).await[0];
    let mut conn = direct(ctx).await;
    let ok: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut conn)
        .await
        .expect("terminate");
    assert!(ok);
    let _ = sqlx::Connection::close(conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_ended_inside_a_delete_hook_or_a_merge_exits_6_and_says_who_may_have_ended_it() {
    run_on(Backend::Postgres, |ctx| async move {
        ctx.bootstrap_cli();
        for name in ["gone", "keep", "merged"] {
            ctx.cli()
                .args(["user", "create", name, "--password-stdin"])
                .write_stdin(format!("{name} password\n"))
                .assert()
                .success();
        }
        // With the table channel the AuthzCache hook inserts a row inside the delete: held
        // up by the lock, the hook's statement is the one running when the backend ends.
        ctx.cli()
            .args(["migrate", "--invalidations", "table"])
            .assert()
            .success();
        let table = [("ACCOUNTCTL_INVALIDATIONS", "table")];
        for args in [
            &["user", "delete", "gone", "--mode", "gdpr", "--yes"][..],
            &["user", "merge", "--keep", "keep", "--remove", "merged", "--yes"],
        ] {
            let lock = TableLock::take(&ctx, "cache_invalidations").await;
            let child = spawn_cli(&ctx, &ctx.url, args, &table);
            terminate_the_waiter(&ctx).await;
            let out = wait_for(child, Duration::from_secs(20)).await.expect("ends");
            lock.release().await;
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(6), "{args:?}: {err}");
            assert!(err.contains("pg_terminate_backend"), "{args:?} names the cause: {err}");
            assert!(
                !err.contains("the server is shutting down"),
                "{args:?}: a terminated backend is not a shutdown: {err}"
            );
            assert!(
                !err.contains("lifecycle hook or merge handler) failed"),
                "{args:?}: {err}"
            );
        }
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM users WHERE username IN ('gone', 'merged') AND deleted_at IS NULL")
                .await,
            2,
            "nothing was deleted"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_statement_timeouts_set_on_the_server_exit_6_naming_the_timeout() {
    run_on(Backend::Postgres, |ctx| async move {
        ctx.bootstrap_cli();
        let admin = pg_available().await.expect("postgres");
        // Set where an operator sets them (a role's or database's settings), not by the CLI.
        admin_exec(
            &admin,
            &format!("ALTER DATABASE {} SET lock_timeout = '300ms'", ctx.pg_name),
        )
        .await;
        let lock = TableLock::take(&ctx, "users").await;
        let rows: String = (0..50).map(|i| format!("{{\"username\":\"imp{i}\"}}\n")).collect();
        let out = ctx
            .cli()
            .args(["user", "import", "-", "--format", "jsonl", "--batch-size", "10"])
            .write_stdin(rows.clone())
            .output()
            .expect("run");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(err.contains("lock_timeout expired"), "{err}");
        assert!(!err.contains("at line"), "no raw driver text: {err}");
        assert!(
            err.matches("lock_timeout").count() <= 2,
            "the import stops at the first timeout instead of failing every row: {err}"
        );
        let out = ctx
            .cli()
            .args(["user", "create", "late", "--password-stdin"])
            .write_stdin("late password\n")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
        assert!(stderr(&out).contains("lock_timeout expired"), "{}", stderr(&out));

        admin_exec(&admin, &format!("ALTER DATABASE {} SET lock_timeout = 0", ctx.pg_name)).await;
        admin_exec(
            &admin,
            &format!("ALTER DATABASE {} SET statement_timeout = '300ms'", ctx.pg_name),
        )
        .await;
        let out = ctx
            .cli()
            .args(["user", "import", "-", "--format", "jsonl", "--batch-size", "10"])
            .write_stdin(rows)
            .output()
            .expect("run");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(err.contains("statement_timeout expired"), "{err}");
        lock.release().await;
        admin_exec(&admin, &format!("ALTER DATABASE {} RESET ALL", ctx.pg_name)).await;
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM users WHERE username LIKE 'imp%'").await,
            0
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Item 5: refused, full and silent servers; Ctrl-C while connecting.

/// A TCP port that accepts connections and never answers (a server that hangs, or a
/// firewall that swallows packets after the handshake). Dropped, it stops accepting.
struct Silent {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Silent {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 5449))
            .await
            .expect("bind 5449");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { port, task }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_full_or_silent_server_is_named_at_once_and_ctrl_c_ends_the_wait() {
    run_on(Backend::Postgres, |ctx| async move {
        ctx.bootstrap_cli();
        // Nothing listening.
        let started = Instant::now();
        let out = ctx
            .cli()
            .env(
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5448/{}", ctx.pg_name),
            )
            .args(["user", "list"])
            .output()
            .expect("run");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(err.contains("connection refused at 127.0.0.1:5448"), "{err}");
        assert!(!err.contains("timed out waiting for a connection"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );

        // No free slot: a role limited to no connections at all (superusers are exempt).
        let role = format!("{}_full", ctx.pg_name);
        let admin = pg_available().await.expect("postgres");
        admin_exec(&admin, &format!("CREATE ROLE {role} LOGIN CONNECTION LIMIT 0")).await;
        let started = Instant::now();
        let out = ctx
            .cli()
            .env(
                "DATABASE_URL",
                format!("postgres://{role}@127.0.0.1:5432/{}", ctx.pg_name),
            )
            .args(["user", "list"])
            .output()
            .expect("run");
        admin_exec(&admin, &format!("DROP ROLE {role}")).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(err.contains("no free connection slots"), "{err}");
        assert!(err.contains("too many connections"), "the server's own words: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );

        // A server that accepts and never answers: libpq's connect_timeout is honoured.
        let silent = Silent::start().await;
        let hung = format!("postgres://postgres@127.0.0.1:{}/{}", silent.port, ctx.pg_name);
        let started = Instant::now();
        let out = ctx
            .cli()
            .env("DATABASE_URL", with_param(&hung, "connect_timeout", "2"))
            .args(["user", "list"])
            .output()
            .expect("run");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(
            err.contains(&format!("no answer from 127.0.0.1:{} within 2 s", silent.port)),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "took {:?}",
            started.elapsed()
        );

        // Ctrl-C while it waits ends the run with 130 at once.
        let child = spawn_cli(
            &ctx,
            &with_param(&hung, "connect_timeout", "60"),
            &["user", "list"],
            &[],
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        let signalled = Instant::now();
        sigint(&child);
        let out = wait_for(child, Duration::from_secs(5))
            .await
            .expect("Ctrl-C ends the wait");
        assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
        assert!(signalled.elapsed() < Duration::from_secs(2));
        drop(silent);
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Item 7: every connection of a run carries the run's name.

/// A TCP proxy to the shared server that records the `application_name` of every
/// connection's startup message (`None` when it sends none). It runs on a thread of its own:
/// the test's own runtime is blocked while a CLI run it waits for goes through the proxy.
struct Recorder {
    port: u16,
    names: Arc<Mutex<Vec<Option<String>>>>,
}

impl Recorder {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 5447)).expect("bind 5447");
        listener.set_nonblocking(true).expect("nonblocking");
        let names: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let seen = names.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((client, _)) = listener.accept().await {
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let _ = relay(client, seen).await;
                    });
                }
            });
        });
        Self { port: 5447, names }
    }

    fn names(&self) -> Vec<Option<String>> {
        self.names.lock().expect("names").clone()
    }
}

async fn relay(mut client: tokio::net::TcpStream, seen: Arc<Mutex<Vec<Option<String>>>>) -> std::io::Result<()> {
    let mut server = tokio::net::TcpStream::connect(("127.0.0.1", 5432)).await?;
    loop {
        let len = client.read_u32().await? as usize;
        let mut body = vec![0u8; len - 4];
        client.read_exact(&mut body).await?;
        server.write_u32(len as u32).await?;
        server.write_all(&body).await?;
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if code == 80_877_103 || code == 80_877_104 {
            // SSLRequest / GSSENCRequest: one byte of answer ('N' here), then the startup.
            let answer = server.read_u8().await?;
            client.write_u8(answer).await?;
            continue;
        }
        let fields: Vec<&[u8]> = body[4..].split(|b| *b == 0).collect();
        let name = fields
            .chunks(2)
            .find(|kv| kv[0] == b"application_name")
            .and_then(|kv| kv.get(1))
            .map(|v| String::from_utf8_lossy(v).into_owned());
        seen.lock().expect("names").push(name);
        break;
    }
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_of_a_run_carries_its_application_name_probes_and_ctrl_c_included() {
    run_on(Backend::Postgres, |ctx| async move {
        ctx.bootstrap_cli();
        let recorder = Recorder::start();
        // No TLS, so the proxy can read the startup messages.
        let url = format!(
            "postgres://postgres@127.0.0.1:{}/{}?sslmode=disable&target_session_attrs=read-write",
            recorder.port, ctx.pg_name
        );
        // The probe of target_session_attrs, then the run's own connection.
        let out = ctx
            .cli()
            .env("DATABASE_URL", &url)
            .args(["user", "list"])
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        let names = recorder.names();
        assert_eq!(names.len(), 2, "a probe and the run's connection: {names:?}");
        let first = names[0].clone().expect("the probe is named");
        assert!(first.starts_with("accountctl/"), "{first}");
        assert!(names.iter().all(|n| n.as_deref() == Some(&first)), "{names:?}");

        // Ctrl-C's connection too, under the name the URL gives.
        let named = with_param(&url, "application_name", "ops-console");
        let lock = TableLock::take(&ctx, "users").await;
        // (No lock-wait notice, whose monitoring connection would be one more.)
        let quiet = [("ACCOUNTCTL_LOCK_NOTICE_AFTER", "10m")];
        let child = spawn_cli(&ctx, &named, &["user", "list"], &quiet);
        lock_waiters(&ctx, 1).await;
        sigint(&child);
        let out = wait_for(child, Duration::from_secs(10)).await.expect("ends");
        lock.release().await;
        assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
        let names = recorder.names();
        assert_eq!(names.len(), 5, "probe, run, Ctrl-C: {names:?}");
        assert!(
            names[2..].iter().all(|n| n.as_deref() == Some("ops-console")),
            "{names:?}"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Item 8: messages that claimed what did not happen.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_say_what_happened_on_a_standby_a_statement_pooler_and_a_multi_host_url() {
    run_on(Backend::Postgres, |ctx| async move {
        ctx.bootstrap_cli();
        // auth check against a read-only database (what a standby is to a login).
        let admin = pg_available().await.expect("postgres");
        admin_exec(
            &admin,
            &format!("ALTER DATABASE {} SET default_transaction_read_only = on", ctx.pg_name),
        )
        .await;
        let out = ctx
            .cli()
            .args(["auth", "check", "admin", "--password-stdin"])
            .write_stdin(format!("{}\n", common::ADMIN_PASSWORD))
            .output()
            .expect("run");
        admin_exec(&admin, &format!("ALTER DATABASE {} RESET ALL", ctx.pg_name)).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(
            !err.contains("the change was committed"),
            "nothing was committed: {err}"
        );
        assert!(err.contains("point DATABASE_URL at the primary"), "{err}");

        // A statement-mode pooler is named as such.
        let Some(pooler) = PgBouncer::start("statement", "* = host=127.0.0.1 port=5432") else {
            return;
        };
        let out = ctx
            .cli()
            .env("DATABASE_URL", pooler.url(&ctx.pg_name))
            .args(["user", "list"])
            .output()
            .expect("run");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(err.contains("pool_mode = statement"), "{err}");
        assert!(!err.contains("check that it is up"), "{err}");
        drop(pooler);

        // A multi-host URL is shown (without its password), not as "unparseable".
        let out = ctx
            .cli()
            .env(
                "DATABASE_URL",
                format!(
                    "postgres://postgres:s3cret@127.0.0.1:5448,127.0.0.1:5446/{}",
                    ctx.pg_name
                ),
            )
            .args(["user", "list"])
            .output()
            .expect("run");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(!err.contains("unparseable"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("127.0.0.1:5448,127.0.0.1:5446"), "{err}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Item 1: the atomic import while ANALYZE runs.

/// The scans of `passports_email_c_idx` and the rows read by sequential scans of `passports`
/// so far. (The server's own foreign-key checks of `users`, planned from the same stale
/// statistics, are not the lookup's and are left out.)
async fn scan_counts(ctx: &Ctx) -> (i64, i64) {
    // Statistics reach the shared counters when a backend ends; wait for them to settle.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let c_index = ctx
        .count("SELECT COALESCE(SUM(idx_scan), 0)::bigint FROM pg_stat_user_indexes WHERE indexrelname = 'passports_email_c_idx'")
        .await;
    let seq = ctx
        .count("SELECT COALESCE(SUM(seq_tup_read), 0)::bigint FROM pg_stat_user_tables WHERE relname = 'passports'")
        .await;
    (c_index, seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_import_probes_the_unique_indexes_while_analyze_runs() {
    run_on(Backend::Postgres, |ctx| async move {
        ctx.bootstrap_cli();
        let rows: String = (0..3000)
            .map(|i| format!("{{\"username\":\"bulk{i}\",\"email\":\"bulk{i}@example.com\"}}\n"))
            .collect();
        let before = scan_counts(&ctx).await;
        // ANALYZE in a loop: it sees only committed rows, so mid-import it says "empty".
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let analyzer = {
            let stop = stop.clone();
            let url = ctx.direct_url.clone();
            tokio::spawn(async move {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                    .await
                    .expect("connect");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    sqlx::Executor::execute(&mut conn, sqlx::raw_sql("ANALYZE passports; ANALYZE users"))
                        .await
                        .expect("analyze");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = sqlx::Connection::close(conn).await;
            })
        };
        // On a blocking thread: the analyzer task must keep running meanwhile.
        let mut import = ctx.cli();
        import
            .args([
                "user",
                "import",
                "-",
                "--format",
                "jsonl",
                "--atomic",
                "--batch-size",
                "100",
                "-q",
            ])
            .write_stdin(rows);
        let out = tokio::task::spawn_blocking(move || import.output())
            .await
            .expect("join")
            .expect("run");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        analyzer.await.expect("analyzer");
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM users WHERE username LIKE 'bulk%'")
                .await,
            3000
        );
        let after = scan_counts(&ctx).await;
        assert_eq!(
            after.0 - before.0,
            0,
            "the email lookup scanned passports_email_c_idx instead of probing passports_value_key"
        );
        // One probe per key reads no row by sequential scan (a few whole-table reads after
        // the import aside); a scan per key reads every row written so far, millions here.
        assert!(
            after.1 - before.1 < 10_000,
            "rows read by sequential scans of passports during the import: {}",
            after.1 - before.1
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Item 3: the table channel with commits out of id order.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_channel_delivers_an_invalidation_that_commits_after_a_higher_id_was_read() {
    run_on(Backend::Postgres, |ctx| async move {
        ctx.app()
            .await
            .migrate_with_invalidations(InvalidationChannel::Table)
            .await
            .expect("the database records the table");
        let db = Database::connect_with(&DatabaseUrl::parse(&ctx.url).expect("url"), 2)
            .await
            .expect("connect")
            .with_invalidation_channel(InvalidationChannel::Table);
        let app = accountctl::App::builder()
            .database(db.clone())
            .build()
            .await
            .expect("app");
        let mut ids = Vec::new();
        for name in ["slow", "fast"] {
            ids.push(
                app.accounts()
                    .create(
                        NewUser {
                            username: name.into(),
                            ..Default::default()
                        },
                        false,
                    )
                    .await
                    .expect("create")
                    .user
                    .id,
            );
        }
        let mut listener = InvalidationListener::start(&db).await.expect("table listener");
        // A writer takes the lower id and commits late (what a slow publishing transaction does).
        let mut slow = direct(&ctx).await;
        sqlx::Executor::execute(&mut slow, sqlx::raw_sql("BEGIN"))
            .await
            .expect("begin");
        sqlx::query(
            "INSERT INTO cache_invalidations (user_id, reason, created_at) VALUES ($1, 'admin_revoked', now())",
        )
        .bind(ids[0])
        .execute(&mut slow)
        .await
        .expect("insert");
        // Another writer takes a higher id and commits at once; the listener reads it.
        app.accounts()
            .disable(&accountctl::domain::UserRef::Id(ids[1]))
            .await
            .expect("disable");
        let got = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("in time")
            .expect("event");
        assert!(
            matches!(got, ListenerEvent::Invalidated(ref inv) if inv.user_id == ids[1]),
            "{got:?}"
        );
        // The lower id commits now: it is still delivered, once.
        sqlx::Executor::execute(&mut slow, sqlx::raw_sql("COMMIT"))
            .await
            .expect("commit");
        let _ = sqlx::Connection::close(slow).await;
        // Whatever else the disable published, the late row comes, and only once.
        let mut late = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Ok(event) = tokio::time::timeout_at(deadline.into(), listener.recv()).await {
            match event.expect("event") {
                ListenerEvent::Invalidated(inv) if inv.user_id == ids[0] => late += 1,
                ListenerEvent::Invalidated(inv) => assert_eq!(inv.user_id, ids[1]),
                other => panic!("no {other:?} on the table channel"),
            }
        }
        assert_eq!(late, 1, "the late commit is delivered, once");
        listener.close().await;
        db.close().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Item 6: the example server ends every connection on SIGTERM.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_server_ends_every_connection_cleanly_on_sigterm() {
    run_on(Backend::Postgres, |ctx| async move {
        ctx.bootstrap_cli();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = ctx.dir.path().join("server.log");
        let mut child = Command::new(common::example_bin("server"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", &ctx.url)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The listener's LISTEN connection and the pool's are open now.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        let logs = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "{logs}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let lines = common::unclean_disconnects(&ctx.pg_name).expect("the server log is readable");
        assert!(lines.is_empty(), "connections ended uncleanly:\n{}", lines.join("\n"));
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Item 9: a lock another session holds — the notice, and `--lock-timeout`.

/// Creates `name` through the CLI (password from stdin).
fn create_user(ctx: &Ctx, name: &str) {
    ctx.cli_create(name, "long enough password");
}

/// A lock held by another session of the test's own until released: on PostgreSQL the row
/// of user `username` (`SELECT … FOR UPDATE` in an open transaction, on a connection named
/// `lock-holder-ops`); on SQLite the write lock (`BEGIN IMMEDIATE`).
enum HeldLock {
    Postgres { conn: sqlx::PgConnection, pid: i32 },
    Sqlite(sqlx::SqliteConnection),
}

impl HeldLock {
    async fn take(ctx: &Ctx, username: &str) -> Self {
        use sqlx::Connection as _;
        match ctx.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&ctx.direct_url).await.expect("sqlite");
                sqlx::Executor::execute(&mut conn, sqlx::raw_sql("BEGIN IMMEDIATE"))
                    .await
                    .expect("write lock");
                Self::Sqlite(conn)
            }
            Backend::Postgres | Backend::PgBouncer => {
                let url = with_param(&ctx.direct_url, "application_name", "lock-holder-ops");
                let mut conn = sqlx::PgConnection::connect(&url).await.expect("postgres");
                sqlx::Executor::execute(&mut conn, sqlx::raw_sql("BEGIN"))
                    .await
                    .expect("begin");
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut conn)
                    .await
                    .expect("pid");
                let locked = sqlx::query("SELECT id FROM users WHERE username = $1 FOR UPDATE")
                    .bind(username)
                    .fetch_all(&mut conn)
                    .await
                    .expect("row lock");
                assert_eq!(locked.len(), 1, "{username} exists");
                Self::Postgres { conn, pid }
            }
        }
    }

    async fn release(self) {
        use sqlx::Connection as _;
        match self {
            Self::Postgres { mut conn, .. } => {
                sqlx::Executor::execute(&mut conn, sqlx::raw_sql("ROLLBACK"))
                    .await
                    .expect("rollback");
                let _ = conn.close().await;
            }
            Self::Sqlite(mut conn) => {
                sqlx::Executor::execute(&mut conn, sqlx::raw_sql("ROLLBACK"))
                    .await
                    .expect("rollback");
                let _ = conn.close().await;
            }
        }
    }
}

on_both_backends! {
    async fn lock_timeout_gives_up_on_a_held_lock_with_exit_6_naming_it_and_changes_nothing(ctx) {
        ctx.bootstrap_cli();
        create_user(&ctx, "bob");
        let lock = HeldLock::take(&ctx, "bob").await;
        for (args, env, shown) in [
            (&["--lock-timeout", "1s", "user", "disable", "bob", "--yes"][..], &[][..], "--lock-timeout 1s"),
            (&["user", "disable", "bob", "--yes"], &[("ACCOUNTCTL_LOCK_TIMEOUT", "1s")], "ACCOUNTCTL_LOCK_TIMEOUT=1s"),
        ] {
            let child = spawn_cli(&ctx, &ctx.url, args, env);
            let out = match wait_for(child, Duration::from_secs(20)).await {
                Ok(out) => out,
                Err(mut child) => {
                    let _ = child.kill();
                    panic!("{args:?} still waits for the lock after 20 s");
                }
            };
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(6), "{args:?}: {err}");
            assert!(err.contains(shown), "names the timeout as given: {err}");
            assert!(err.contains("`user disable` gave up waiting for a lock"), "names the command: {err}");
            assert!(err.contains("nothing was changed"), "{err}");
            // A lock held elsewhere is not an unavailable database: the error says what it is.
            assert!(err.contains("error: `user disable` gave up") && !err.contains("database unavailable"), "{err}");
            if ctx.backend == Backend::Postgres {
                assert!(err.contains("relation \"users\""), "says what it waited for: {err}");
            } else {
                assert!(err.contains("SQLite write lock"), "says what it waited for: {err}");
            }
        }
        lock.release().await;
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username = 'bob' AND active").await, 1, "bob unchanged");
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.disabled'").await,
            0,
            "nothing audited"
        );
        // Without a lock in the way the same run works.
        ctx.cli().args(["--lock-timeout", "1s", "user", "disable", "bob", "--yes"]).assert().success();
        ctx.cli().args(["--lock-timeout", "0s", "user", "list"]).assert().code(2);
        ctx.cli().args(["--lock-timeout", "30d", "user", "list"]).assert().code(2).stderr(
            predicates::str::contains("\"30d\": it must be longer than zero and at most 24 days"),
        );
    }

    async fn a_dry_sweep_records_no_run(ctx) {
        ctx.bootstrap_cli();
        create_user(&ctx, "gone");
        ctx.cli().args(["gdpr", "request", "gone", "--due-in", "0d", "--yes"]).assert().success();
        let out = ctx.cli().args(["gdpr", "purge", "--dry-run", "-o", "json"]).output().expect("run");
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("would_purge"));
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sweeper_runs").await, 0, "a dry run is not recorded");
        assert_eq!(ctx.count("SELECT COUNT(*) FROM users WHERE username = 'gone'").await, 1);
        ctx.cli().args(["gdpr", "purge"]).assert().success();
        assert_eq!(ctx.count("SELECT COUNT(*) FROM sweeper_runs").await, 1, "a real run is");
    }

    async fn dry_runs_work_under_a_binary_the_registry_refuses_writes(ctx) {
        // The application's binary claims the database; the plain one may read, not write.
        ctx.app_admin_bootstrap();
        ctx.app_admin_create("keep");
        ctx.app_admin_create("drop");
        ctx.app_admin().args(["gdpr", "request", "drop", "--due-in", "0d", "--yes"]).assert().success();
        let import = ctx.dir.path().join("users.csv");
        std::fs::write(&import, "username,email\nnewbie,newbie@example.com\n").expect("csv");
        let import = import.display().to_string();
        let before = ctx.dump().await;
        for args in [
            &["gdpr", "purge", "--dry-run"][..],
            &["user", "import", &import, "--dry-run"],
            &["user", "merge", "--keep", "admin", "--remove", "keep", "--dry-run"],
        ] {
            let out = ctx.cli().args(args).output().expect("run");
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        }
        for args in [&["gdpr", "purge"][..], &["user", "import", &import]] {
            let out = ctx.cli().args(args).output().expect("run");
            assert_eq!(out.status.code(), Some(6), "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains("calendar (lifecycle hook)"), "{args:?}: {}", stderr(&out));
        }
        assert_eq!(ctx.dump().await, before, "nothing written");
    }
}

/// Reads `child`'s stderr on a thread into a shared string, line by line as it comes.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    use std::io::BufRead as _;
    let text: Arc<Mutex<String>> = Arc::default();
    let pipe = child.stderr.take().expect("stderr piped");
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut all = sink.lock().expect("stderr");
            all.push_str(&line);
            all.push('\n');
        }
    });
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_on_a_lock_says_what_it_waits_for_and_who_holds_it() {
    run_on(Backend::Postgres, |ctx| async move {
        ctx.bootstrap_cli();
        create_user(&ctx, "bob");
        let lock = HeldLock::take(&ctx, "bob").await;
        let HeldLock::Postgres { pid: holder, .. } = &lock else {
            unreachable!("postgres")
        };
        let holder = *holder;
        // No limit: the run waits, says so once, and goes on when the lock is released.
        let notice = [("ACCOUNTCTL_LOCK_NOTICE_AFTER", "1s")];
        let mut child = spawn_cli(&ctx, &ctx.url, &["user", "disable", "bob", "--yes"], &notice);
        let err = collect_stderr(&mut child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !err.lock().expect("stderr").contains("waiting for") {
            assert!(
                Instant::now() < deadline,
                "no notice after 20 s: {}",
                err.lock().expect("stderr")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let shown = err.lock().expect("stderr").clone();
        assert!(shown.contains("a row of table users"), "{shown}");
        assert!(shown.contains(&format!("held by pid {holder}")), "{shown}");
        assert!(shown.contains("application_name \"lock-holder-ops\""), "{shown}");
        assert!(shown.contains("idle in transaction"), "{shown}");
        lock.release().await;
        let out = wait_for(child, Duration::from_secs(20))
            .await
            .expect("finishes once released");
        assert_eq!(out.status.code(), Some(0), "{}", err.lock().expect("stderr"));
        assert_eq!(
            err.lock().expect("stderr").matches("waiting for").count(),
            1,
            "one notice"
        );
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM users WHERE username = 'bob' AND active")
                .await,
            0
        );

        // With a limit longer than the notice's delay, the error names what it waited for.
        ctx.cli().args(["user", "enable", "bob"]).assert().success();
        let lock = HeldLock::take(&ctx, "bob").await;
        let HeldLock::Postgres { pid: holder, .. } = &lock else {
            unreachable!("postgres")
        };
        let holder = *holder;
        let child = spawn_cli(
            &ctx,
            &ctx.url,
            &["--lock-timeout", "4s", "user", "disable", "bob", "--yes"],
            &notice,
        );
        let out = wait_for(child, Duration::from_secs(20)).await.expect("gives up");
        lock.release().await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(
            err.contains(&format!(
                "it waited for a row of table users, held by pid {holder} (application_name \"lock-holder-ops\""
            )),
            "{err}"
        );
        assert!(err.contains("--lock-timeout 4s"), "{err}");
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM users WHERE username = 'bob' AND active")
                .await,
            1,
            "unchanged"
        );
        // The monitoring connections, like the runs', ended cleanly.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(lines) = common::unclean_disconnects(&ctx.pg_name) {
            assert!(lines.is_empty(), "connections ended uncleanly:\n{}", lines.join("\n"));
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Item 11: dry runs on a real streaming standby.

/// A primary and a streaming standby of the test's own (`initdb`, then `pg_basebackup -R`),
/// run as the `postgres` user on ports 5471 and 5472 with trust authentication. Dropped (also
/// on a panic), both servers are stopped and their files removed.
struct StandbyPair {
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
}

const PRIMARY_PORT: u16 = 5471;
const STANDBY_PORT: u16 = 5472;

impl StandbyPair {
    /// The newest `/usr/lib/postgresql/*/bin` holding `initdb`.
    fn pg_bin() -> Option<std::path::PathBuf> {
        let mut bins: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        bins.sort();
        bins.pop().map(|(_, bin)| bin)
    }

    /// Runs `program` of the PostgreSQL binaries as the `postgres` user.
    fn as_postgres(&self, program: &str, args: &[&str]) -> Output {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("runuser");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts a node (`primary` or `standby`), its log in `NODE.log`; waits up to 60 s.
    fn start_node(&self, node: &str) {
        let log = self.path(&format!("{node}.log"));
        self.as_postgres(
            "pg_ctl",
            &["-D", &self.path(node), "-l", &log, "-w", "-t", "60", "start"],
        );
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Builds and starts both servers; `None` (skipped, with a message) without `initdb`,
    /// `runuser` or root outside CI.
    fn start() -> Option<Self> {
        let runnable = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"))
            && Command::new("runuser").arg("--version").output().is_ok();
        let Some(bin) = Self::pg_bin().filter(|_| runnable) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "the standby test needs the PostgreSQL server binaries, runuser and root in CI"
            );
            eprintln!("skipping the standby test: no PostgreSQL server binaries, runuser or root");
            return None;
        };
        for port in [PRIMARY_PORT, STANDBY_PORT] {
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "port {port} is taken: the standby test needs 5471 and 5472"
            );
        }
        let dir = std::env::temp_dir().join(format!("accountctl-standby-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(status.success());
        // From here on, whatever happens, Drop stops what started and removes the files.
        let pair = Self { dir, bin };
        pair.as_postgres(
            "initdb",
            &[
                "-D",
                &pair.path("primary"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nshared_buffers = 16MB\nmax_connections = 30\nlog_line_prefix = '%m [%p] %q%u@%d '\n",
            pair.dir.display()
        );
        let conf = pair.dir.join("primary/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(&settings);
        text.push_str(&format!("port = {PRIMARY_PORT}\n"));
        std::fs::write(&conf, text).expect("postgresql.conf");
        pair.start_node("primary");
        pair.as_postgres(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &PRIMARY_PORT.to_string(),
                "-U",
                "postgres",
                "-D",
                &pair.path("standby"),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
        );
        let conf = pair.dir.join("standby/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("standby postgresql.conf");
        text.push_str(&format!("port = {STANDBY_PORT}\nhot_standby = on\n"));
        std::fs::write(&conf, text).expect("standby postgresql.conf");
        pair.start_node("standby");
        Some(pair)
    }

    fn url(port: u16, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{db}")
    }

    /// Waits until the standby has replayed everything the primary wrote so far.
    async fn wait_for_replay(&self) {
        use sqlx::Connection as _;
        let mut primary = sqlx::PgConnection::connect(&Self::url(PRIMARY_PORT, "postgres"))
            .await
            .expect("primary");
        let target: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&mut primary)
            .await
            .expect("lsn");
        let _ = primary.close().await;
        let mut standby = sqlx::PgConnection::connect(&Self::url(STANDBY_PORT, "postgres"))
            .await
            .expect("standby");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let done: bool = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
                .bind(&target)
                .fetch_one(&mut standby)
                .await
                .expect("replay lsn");
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "the standby did not catch up in 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut standby)
            .await
            .expect("recovery");
        assert!(in_recovery, "a standby");
        let _ = standby.close().await;
    }

    /// The server log lines that say a client's connection ended badly.
    fn unclean_lines(&self) -> Vec<String> {
        ["primary.log", "standby.log"]
            .iter()
            .flat_map(|log| {
                std::fs::read_to_string(self.dir.join(log))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("@accountctl "))
                    .filter(|l| l.contains("FATAL") || l.contains("could not receive data from client"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for StandbyPair {
    fn drop(&mut self) {
        for node in ["standby", "primary"] {
            if self.dir.join(node).join("postmaster.pid").exists() {
                let _ = Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(self.bin.join("pg_ctl"))
                    .args(["-D", &self.path(node), "-m", "fast", "-w", "-t", "60", "stop"])
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the CLI with `args` against `url` (stdin `input`), from `dir`.
fn cli_in(dir: &std::path::Path, url: &str, args: &[&str], input: &str) -> Output {
    assert_cmd::Command::new(assert_cmd::cargo::cargo_bin("accountctl"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("ACCOUNTCTL_ACTOR", "tester")
        .env_remove("RUST_LOG")
        .env_remove("ACCOUNTCTL_CONFIG")
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .current_dir(dir)
        .write_stdin(input.to_owned())
        .output()
        .expect("run accountctl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_run_on_a_streaming_standby_and_the_real_ones_exit_6() {
    let Some(pair) = StandbyPair::start() else { return };
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path();
    let primary = StandbyPair::url(PRIMARY_PORT, "accountctl");
    let standby = StandbyPair::url(STANDBY_PORT, "accountctl");
    admin_exec(
        &StandbyPair::url(PRIMARY_PORT, "postgres"),
        "CREATE DATABASE accountctl",
    )
    .await;
    let ok = |out: Output, what: &str| {
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    ok(
        cli_in(dir, &primary, &common::BOOTSTRAP_ARGS, "long enough password\n"),
        "bootstrap",
    );
    for name in ["keep", "dup", "gone"] {
        ok(
            cli_in(
                dir,
                &primary,
                &[
                    "user",
                    "create",
                    name,
                    "--email",
                    &format!("{name}@example.com"),
                    "--password-stdin",
                ],
                "long enough password\n",
            ),
            "create",
        );
    }
    ok(
        cli_in(
            dir,
            &primary,
            &["gdpr", "request", "gone", "--due-in", "0d", "--yes"],
            "",
        ),
        "request",
    );
    let csv = dir.join("users.csv");
    std::fs::write(&csv, "username,email\nnewbie,newbie@example.com\nkeep,\n").expect("csv");
    let csv = csv.display().to_string();
    // A dry sweep on the primary records nothing either.
    ok(
        cli_in(dir, &primary, &["gdpr", "purge", "--dry-run"], ""),
        "dry purge on the primary",
    );
    pair.wait_for_replay().await;

    // On the standby: the dry runs answer, with what they would do.
    let out = ok(
        cli_in(dir, &standby, &["gdpr", "purge", "--dry-run", "-o", "json"], ""),
        "dry purge",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["users"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(report["users"][0]["outcome"], "would_purge", "{report}");
    let out = ok(
        cli_in(
            dir,
            &standby,
            &[
                "user",
                "merge",
                "--keep",
                "keep",
                "--remove",
                "dup",
                "--dry-run",
                "-o",
                "json",
            ],
            "",
        ),
        "dry merge",
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(plan["merged"], false, "{plan}");
    assert_eq!(plan["remove"]["username"], "dup", "{plan}");
    let out = cli_in(
        dir,
        &standby,
        &[
            "user",
            "import",
            &csv,
            "--dry-run",
            "--on-conflict",
            "skip",
            "-o",
            "json",
        ],
        "",
    );
    let out = ok(out, "dry import");
    let rows = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(rows.contains("\"valid\"") && rows.contains("\"skipped\""), "{rows}");

    // The real ones exit 6, read-only, and write nothing.
    for (args, input) in [
        (vec!["gdpr", "purge"], ""),
        (vec!["user", "merge", "--keep", "keep", "--remove", "dup", "--yes"], ""),
        (vec!["user", "import", &csv, "--on-conflict", "skip"], ""),
    ] {
        let out = cli_in(dir, &standby, &args, input);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(6), "{args:?}: {err}");
        assert!(err.contains("read-only"), "{args:?}: {err}");
    }
    let count = |sql: &'static str| {
        let primary = primary.clone();
        async move {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&primary).await.expect("primary");
            let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.expect(sql);
            let _ = conn.close().await;
            n
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM sweeper_runs").await, 0, "no run recorded");
    assert_eq!(
        count("SELECT COUNT(*) FROM users WHERE username IN ('keep', 'dup', 'gone')").await,
        3
    );
    assert_eq!(count("SELECT COUNT(*) FROM users WHERE username = 'newbie'").await, 0);
    let lines = pair.unclean_lines();
    assert!(lines.is_empty(), "connections ended uncleanly:\n{}", lines.join("\n"));
    drop(pair);
}
