//! PostgreSQL as production runs it: through PgBouncer in transaction mode, against a
//! read-only server, with multi-host URLs, with connections that must end cleanly, with
//! transactions the engine aborts for conflicts, and with a listener that loses its
//! connection. (Session-mode PgBouncer runs the CLI end-to-end scenarios in `cli.rs`.)
//!
//! The read-only server is a database with `default_transaction_read_only = on`: it refuses
//! writes with the same SQLSTATE (25006) and the same `transaction_read_only` answer as a hot
//! standby, without a second cluster to build in every CI run. A multi-host URL reaches such
//! a "standby" through a PgBouncer that maps the test database's name to the read-only copy.

mod common;

use std::process::Output;
use std::time::Duration;

use accountctl::Error;
use accountctl::db::{Database, DatabaseUrl, InvalidationChannel};
use accountctl::services::accounts::NewUser;
use accountctl::services::authz::{InvalidationListener, ListenerEvent};
use common::{Backend, Ctx, PgBouncer, admin_exec, pg_available, pg_url_for, run_on};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the CLI with `args` against `url`, with `stdin`.
fn cli_at(ctx: &Ctx, url: &str, args: &[&str], stdin: &str) -> Output {
    ctx.cli()
        .env("DATABASE_URL", url)
        .args(args)
        .write_stdin(stdin.to_owned())
        .output()
        .expect("run accountctl")
}

/// A copy of the test database, bootstrapped through the CLI and then made read-only the
/// way a standby is: every transaction in it is read-only.
async fn read_only_twin(ctx: &Ctx) -> (String, String) {
    let admin = pg_available().await.expect("postgres");
    let name = format!("{}_ro", ctx.pg_name);
    admin_exec(&admin, &format!("CREATE DATABASE {name}")).await;
    let url = pg_url_for(&name);
    let out = cli_at(ctx, &url, &common::BOOTSTRAP_ARGS, "admin password\n");
    assert!(out.status.success(), "{}", stderr(&out));
    admin_exec(
        &admin,
        &format!("ALTER DATABASE {name} SET default_transaction_read_only = on"),
    )
    .await;
    (name, url)
}

async fn drop_database(name: &str) {
    let admin = pg_available().await.expect("postgres");
    admin_exec(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// Every write command the CLI has, as (args, stdin).
fn write_commands() -> Vec<(Vec<&'static str>, &'static str)> {
    vec![
        (
            vec![
                "user",
                "create",
                "zed",
                "--email",
                "zed@example.com",
                "--password-stdin",
            ],
            "zed password\n",
        ),
        (vec!["user", "disable", "admin", "--yes"], ""),
        (vec!["user", "enable", "admin"], ""),
        (
            vec!["user", "set-password", "admin", "--password-stdin"],
            "another password\n",
        ),
        (vec!["user", "delete", "admin", "--mode", "admin", "--yes"], ""),
        (
            vec!["user", "import", "-", "--format", "jsonl"],
            "{\"username\":\"i1\"}\n{\"username\":\"i2\"}\n{\"username\":\"i3\"}\n",
        ),
        (vec!["auth", "check", "admin", "--password-stdin"], "admin password\n"),
        (vec!["workspace-type", "create", "team", "--title", "Team"], ""),
        (vec!["role", "assign", "admin", "user"], ""),
        (vec!["session", "prune"], ""),
        (vec!["invite", "prune"], ""),
        (vec!["gdpr", "request", "admin", "--yes"], ""),
        (vec!["gdpr", "purge"], ""),
        (vec!["migrate"], ""),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_gives_exit_6_with_what_to_do_on_every_write_command() {
    run_on(Backend::Postgres, |ctx| async move {
        let (name, url) = read_only_twin(&ctx).await;
        for (args, stdin) in write_commands() {
            let out = cli_at(&ctx, &url, &args, stdin);
            let err = stderr(&out);
            if args == ["migrate"] || args[..2] == ["user", "enable"] || args[..2] == ["role", "assign"] {
                // Nothing to change (no migration pending, already enabled, already a user):
                // a no-op may succeed without writing; anything that writes gets exit 6.
                assert!(matches!(out.status.code(), Some(0 | 6)), "{args:?}: {err}");
                assert!(
                    out.status.success() || err.contains("point DATABASE_URL at the primary"),
                    "{args:?}: {err}"
                );
                continue;
            }
            if args[..2] == ["user", "delete"] {
                // The rules are decided before anything is asked of the database (or of the
                // operator): deleting the only admin is refused by the rule, exit 4.
                assert_eq!(out.status.code(), Some(4), "{args:?}: {err}");
                assert!(err.contains("last active admin"), "{args:?}: {err}");
                continue;
            }
            assert_eq!(out.status.code(), Some(6), "{args:?}: {err}");
            assert!(err.contains("point DATABASE_URL at the primary"), "{args:?}: {err}");
            assert!(!err.contains("caused by"), "one message, no raw driver chain: {err}");
            if args[1] == "import" {
                assert_eq!(
                    err.matches("server said").count(),
                    1,
                    "the import stops at the first row: {err}"
                );
            }
        }
        // Reading still works against a standby.
        let out = cli_at(&ctx, &url, &["user", "show", "admin"], "");
        assert!(out.status.success(), "{}", stderr(&out));
        drop_database(&name).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_host_url_reaches_the_primary_when_asked_for_read_write() {
    run_on(Backend::Postgres, |ctx| async move {
        let (ro_name, _) = read_only_twin(&ctx).await;
        // The "standby" answers under the test database's own name.
        let Some(standby) = PgBouncer::start(
            "session",
            &format!("{} = {} dbname={ro_name}", ctx.pg_name, common::pg_server_conninfo()),
        ) else {
            return;
        };
        ctx.bootstrap_cli();
        let hosts = format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{}",
            standby.port,
            common::pg_server_host_port().1,
            ctx.pg_name
        );
        let rw = format!("{hosts}?target_session_attrs=read-write");
        let out = cli_at(
            &ctx,
            &rw,
            &["user", "create", "multi", "--password-stdin"],
            "multi password\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM users WHERE username = 'multi'").await,
            1
        );
        // `any` takes the first host that answers: the read-only one.
        let out = cli_at(
            &ctx,
            &format!("{hosts}?target_session_attrs=any"),
            &["user", "create", "other", "--password-stdin"],
            "other password\n",
        );
        assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("point DATABASE_URL at the primary"),
            "{}",
            stderr(&out)
        );
        // Hosts that do not answer are skipped, in order.
        let out = cli_at(
            &ctx,
            &format!(
                "postgres://postgres@127.0.0.1:1,127.0.0.1:{}/{}",
                common::pg_server_host_port().1,
                ctx.pg_name
            ),
            &["user", "show", "multi"],
            "",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        // No writable host at all: exit 6 naming each host.
        let only_standby = format!(
            "postgres://postgres@127.0.0.1:1,127.0.0.1:{}/{}?target_session_attrs=read-write",
            standby.port, ctx.pg_name
        );
        let out = cli_at(&ctx, &only_standby, &["user", "list"], "");
        assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("no listed host accepts writes"),
            "{}",
            stderr(&out)
        );
        drop(standby);
        drop_database(&ro_name).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_transaction_pooler_every_command_works_or_exits_6_naming_the_setting() {
    // Tagged: behind PgBouncer < 1.21 in transaction mode the pooler itself drops a server
    // connection whose client left after a prepared-statement error, which the server logs
    // as FATAL; `.ci/run` leaves this database's lines out of its no-FATAL check.
    common::run_on_tagged(Backend::Postgres, "txpool", |ctx| async move {
        let Some(version) = PgBouncer::version() else {
            assert!(std::env::var_os("CI").is_none(), "PgBouncer is required in CI");
            return;
        };
        // PgBouncer 1.21 and later keep prepared statements in transaction mode when allowed to.
        let keeps_statements = version >= (1, 21);
        let extra = if keeps_statements { "max_prepared_statements = 200" } else { "" };
        let Some(pooler) = PgBouncer::start_with("transaction", &format!("* = {}", common::pg_server_conninfo()), extra) else {
            return;
        };
        ctx.bootstrap_cli();
        // What the commands below act on is set up directly, so each command stands alone.
        for name in ["t1", "t2"] {
            ctx.cli().args(["user", "create", name, "--password-stdin"]).write_stdin(format!("{name} password\n")).assert().success();
        }
        let url = pooler.url(&ctx.pg_name);
        let commands: Vec<(Vec<&str>, &str)> = vec![
            (vec!["user", "list"], ""),
            (vec!["user", "create", "t4", "--email", "t4@example.com", "--password-stdin"], "t4 password\n"),
            (vec!["user", "create", "t5", "--password-stdin"], "t5 password\n"),
            (vec!["user", "show", "t1"], ""),
            (vec!["auth", "check", "t1", "--password-stdin"], "t1 password\n"),
            (vec!["user", "disable", "t2", "--yes"], ""),
            (vec!["workspace-type", "create", "team", "--title", "Team"], ""),
            (vec!["user", "create", "t3", "--password-stdin"], "t3 password\n"),
            (vec!["session", "prune"], ""),
            (vec!["user", "delete", "t1", "--mode", "gdpr", "--yes"], ""),
        ];
        for (args, stdin) in commands {
            let out = cli_at(&ctx, &url, &args, stdin);
            let err = stderr(&out);
            match out.status.code() {
                Some(0) => {
                    if args[..2] == ["user", "create"] {
                        let sql = format!(
                            "SELECT COUNT(*) FROM audit_events a JOIN users u ON u.id = a.subject_user_id WHERE a.event = 'user.created' AND u.username = '{}'",
                            args[2]
                        );
                        assert_eq!(ctx.count(&sql).await, 1, "{args:?} exited 0, so its audit row exists");
                    }
                }
                Some(6) if !keeps_statements => {
                    assert!(err.contains("max_prepared_statements"), "{args:?}: {err}");
                    eprintln!("{args:?} through a transaction pooler without prepared statements: exit 6");
                }
                other => panic!("{args:?} exited {other:?} through a transaction pooler: {err}"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_runs_end_their_connection_cleanly_even_on_errors_and_ctrl_c() {
    run_on(Backend::Postgres, |ctx| async move {
        ctx.bootstrap_cli();
        ctx.cli()
            .args(["user", "create", "clean", "--password-stdin"])
            .write_stdin("clean password\n")
            .assert()
            .success();
        ctx.cli()
            .args(["user", "show", "clean", "-o", "json"])
            .assert()
            .success();
        ctx.cli().args(["user", "list"]).assert().success();
        ctx.cli().args(["user", "show", "nobody"]).assert().code(3);
        ctx.cli()
            .args(["user", "create", "clean", "--password-stdin"])
            .write_stdin("clean password\n")
            .assert()
            .code(4);
        ctx.cli()
            .args(["user", "delete", "admin", "--mode", "gdpr", "--yes"])
            .assert()
            .code(4);
        ctx.cli()
            .args(["session", "revoke", "--user", "clean", "--all", "--yes"])
            .assert()
            .success();

        // Ctrl-C while the command waits on a lock another transaction holds.
        // One plain connection, closed explicitly: a pool could drop it uncleanly at close.
        let mut holder_conn = <sqlx::PgConnection as sqlx::Connection>::connect(&ctx.direct_url)
            .await
            .expect("connect");
        let mut holder = sqlx::Connection::begin(&mut holder_conn).await.expect("tx");
        sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *holder)
            .await
            .expect("lock");
        let bin = assert_cmd::cargo::cargo_bin("accountctl");
        let mut child = std::process::Command::new(bin)
            .args(["user", "list"])
            .env("DATABASE_URL", &ctx.url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        tokio::time::sleep(Duration::from_millis(700)).await;
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        assert_eq!(status.code(), Some(130));
        holder.rollback().await.expect("release");
        sqlx::Connection::close(holder_conn).await.expect("close");

        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(lines) = common::unclean_disconnects(&ctx.pg_name) {
            assert!(lines.is_empty(), "connections ended uncleanly:\n{}", lines.join("\n"));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_the_engine_reports_are_retried_and_finally_exit_4() {
    run_on(Backend::Postgres, |ctx| async move {
        // The first two inserts into users fail as a serialization failure would; a
        // sequence counts attempts (nextval is not rolled back).
        for sql in [
            "CREATE SEQUENCE conflict_attempts",
            "CREATE TABLE conflict_budget (n bigint)",
            "INSERT INTO conflict_budget VALUES (2)",
            "CREATE FUNCTION fail_as_conflict() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF nextval('conflict_attempts') <= (SELECT n FROM conflict_budget) THEN \
             RAISE EXCEPTION 'could not serialize access due to concurrent update' USING ERRCODE = '40001'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER users_conflict BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION fail_as_conflict()",
        ] {
            ctx.exec(sql).await.expect(sql);
        }
        let app = ctx.app().await;
        let created = app
            .accounts()
            .create(
                NewUser {
                    username: "retried".into(),
                    ..Default::default()
                },
                false,
            )
            .await
            .expect("third attempt succeeds");
        assert!(created.created);
        assert_eq!(ctx.count("SELECT last_value FROM conflict_attempts").await, 3);
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM audit_events WHERE event = 'user.created'")
                .await,
            1,
            "hooks fired once"
        );

        ctx.exec("UPDATE conflict_budget SET n = 1000000")
            .await
            .expect("always conflict");
        let err = app
            .accounts()
            .create(
                NewUser {
                    username: "doomed".into(),
                    ..Default::default()
                },
                false,
            )
            .await
            .expect_err("gives up");
        assert!(matches!(err, Error::Serialization(_)), "{err:?}");
        ctx.cli()
            .args(["user", "create", "doomed", "--password-stdin"])
            .write_stdin("doomed password\n")
            .assert()
            .code(4)
            .stderr(predicates::str::contains("serialization failure"));
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM users WHERE username = 'doomed'").await,
            0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_losing_its_connection_and_asks_for_a_resync() {
    run_on(Backend::Postgres, |ctx| async move {
        let Some(pooler) = PgBouncer::start("session", &format!("* = {}", common::pg_server_conninfo())) else {
            return;
        };
        let app = ctx.app().await;
        let id = app
            .accounts()
            .create(
                NewUser {
                    username: "watched".into(),
                    ..Default::default()
                },
                false,
            )
            .await
            .expect("create")
            .user
            .id;
        let listen_url = DatabaseUrl::parse(&pooler.url(&ctx.pg_name)).expect("url");
        let mut listener = InvalidationListener::start_at(&ctx.db, &listen_url)
            .await
            .expect("listen with a round trip");
        pooler.restart();
        let first = tokio::time::timeout(Duration::from_secs(20), listener.recv())
            .await
            .expect("in time")
            .expect("event");
        assert_eq!(first, ListenerEvent::Resync);
        app.sessions()
            .revoke_all(
                &accountctl::domain::UserRef::Id(id),
                accountctl::domain::LogoutReason::AdminRevoked,
            )
            .await
            .expect("revoke");
        app.accounts()
            .disable(&accountctl::domain::UserRef::Id(id))
            .await
            .expect("disable");
        assert!(app.lifecycle().drain(Duration::from_secs(5)).await == 0);
        let next = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("in time")
            .expect("event");
        match next {
            ListenerEvent::Invalidated(inv) => assert_eq!(inv.user_id, id),
            other => panic!("expected the invalidation, got {other:?}"),
        }
        listener.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_cannot_hear_its_own_notification_fails_at_start() {
    run_on(Backend::Postgres, |ctx| async move {
        // A database that publishes through the table has no NOTIFY to listen to; the
        // listener must poll it instead, and a NOTIFY listener pointed at a URL that hears
        // nothing must say so. An unreachable listener URL fails the start-up too.
        let unreachable = DatabaseUrl::parse("postgres://postgres@127.0.0.1:1/none").expect("url");
        let err = InvalidationListener::start_at(&ctx.db, &unreachable)
            .await
            .err()
            .expect("fails");
        assert_eq!(err.exit_code(), 6, "{err}");

        let db = Database::connect_with(&DatabaseUrl::parse(&ctx.url).expect("url"), 2)
            .await
            .expect("connect")
            .with_invalidation_channel(InvalidationChannel::Table);
        // The channel is the database's: while it records NOTIFY, a process that asks for the
        // table is refused (its revocations would reach no listener), naming both.
        let err = InvalidationListener::start(&db).await.err().expect("refused");
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(
            err.to_string().contains("`table`") && err.to_string().contains("`notify`"),
            "{err}"
        );
        ctx.app()
            .await
            .migrate_with_invalidations(InvalidationChannel::Table)
            .await
            .expect("the database records the table");
        let mut listener = InvalidationListener::start(&db).await.expect("table listener");
        let app = accountctl::App::builder()
            .database(db.clone())
            .build()
            .await
            .expect("app");
        let id = app
            .accounts()
            .create(
                NewUser {
                    username: "tabled".into(),
                    ..Default::default()
                },
                false,
            )
            .await
            .expect("create")
            .user
            .id;
        app.accounts()
            .delete(
                &accountctl::domain::UserRef::Id(id),
                accountctl::domain::DeletionMode::GdprPurge,
            )
            .await
            .expect("purge");
        let got = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("in time")
            .expect("event");
        assert!(
            matches!(got, ListenerEvent::Invalidated(ref inv) if inv.user_id == id),
            "{got:?}"
        );
        assert_eq!(
            ctx.count("SELECT COUNT(*) FROM cache_invalidations").await,
            1,
            "published through the table, not NOTIFY"
        );
        listener.close().await;
        db.close().await;
    })
    .await;
}

/// The TCP sockets this process holds to `port` (on 127.0.0.1 or ::1), each with whether
/// `TCP_NODELAY` is set on it.
#[cfg(target_os = "linux")]
fn tcp_sockets_to(port: u16) -> Vec<(i32, bool)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let Ok(fd) = entry.expect("fd entry").file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: every pointer passed below points to a live, correctly sized local; a fd that
        // closed meanwhile only makes the calls fail, which is checked.
        unsafe {
            let mut addr: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            if libc::getpeername(fd, (&raw mut addr).cast(), &mut len) != 0 {
                continue;
            }
            let peer_port = match i32::from(addr.ss_family) {
                libc::AF_INET => u16::from_be((*(&raw const addr).cast::<libc::sockaddr_in>()).sin_port),
                libc::AF_INET6 => u16::from_be((*(&raw const addr).cast::<libc::sockaddr_in6>()).sin6_port),
                _ => continue,
            };
            if peer_port != port {
                continue;
            }
            let mut on: libc::c_int = 0;
            let mut on_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            if libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw mut on).cast(),
                &mut on_len,
            ) == 0
            {
                out.push((fd, on != 0));
            }
        }
    }
    out
}

/// Nagle's algorithm is off on every connection to the server: with it on, a message written
/// right after another (a `COPY`'s end after its data) waits for the server's delayed
/// acknowledgement, ~40 ms a time (sqlx-core 0.9.0 dropped the option; 0.9.1 sets it again,
/// and Cargo.toml asks for at least that). Checked directly on the sockets, for the pool's
/// connections and the invalidation listener's own connection, straight to the server and
/// through a PgBouncer: the test fails if any of them lacks the option.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_the_server_are_tcp_nodelay() {
    for backend in [Backend::Postgres, Backend::PgBouncer] {
        run_on(backend, |ctx| async move {
            let port = url::Url::parse(&ctx.url).expect("url").port().unwrap_or(5432);
            // Hold connections while looking: the listener's (a pool of its own), and the
            // pool's, busy in a transaction.
            let listener = InvalidationListener::start(&ctx.db).await.expect("listener");
            let mut tx = ctx.db.begin().await.expect("begin");
            tx.fetch_one("SELECT 1 AS one", &[]).await.expect("select");
            let sockets = tcp_sockets_to(port);
            tx.end().await.expect("end");
            listener.close().await;
            assert!(
                sockets.len() >= 2,
                "expected the pool's and the listener's sockets to port {port}, found {sockets:?}"
            );
            let delayed: Vec<i32> = sockets.iter().filter(|(_, on)| !on).map(|(fd, _)| *fd).collect();
            assert!(
                delayed.is_empty(),
                "sockets to port {port} without TCP_NODELAY: fds {delayed:?}"
            );
        })
        .await;
    }
}
