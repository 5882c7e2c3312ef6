//! What a run waits for when another session holds a lock it needs (PostgreSQL).
//!
//! A command blocked by another session's lock (a row an operator's `psql` locked, a table an
//! `ALTER` holds, a `migrate` run's advisory lock) waits as long as the server lets it: no
//! error, no output. [`Database::watch_lock_wait`] looks, over a short monitoring connection
//! of its own, at what this process's connections wait for (`pg_locks`) and who holds it
//! (`pg_blocking_pids`, `pg_stat_activity`), so the CLI can say so on stderr.

use std::fmt;
use std::time::Duration;

use sqlx::postgres::PgConnection;

use super::{Database, Pool};

/// One of this process's connections waiting for a lock another session holds, as
/// `pg_locks` shows it. Displayed as "a row of table users, held by pid 4242
/// (application_name "psql", user ops, idle in transaction)".
#[derive(Debug, Clone, PartialEq)]
pub struct LockWait {
    /// The backend process id of this process's connection that waits.
    pub pid: i32,
    /// What it waits for, in words: `a row of table users`, `table users`, `the migration
    /// lock (a migrate run is in progress)`, `advisory lock 42`, …
    pub lock: String,
    /// The lock mode it asks for, in PostgreSQL's words (`ShareLock`, `AccessShareLock`, …).
    pub mode: String,
    /// How long it has waited so far (since the lock wait began on PostgreSQL 14 and later,
    /// since its statement began on older servers).
    pub waited: Duration,
    /// The sessions it waits behind (`pg_blocking_pids`): the holders, and those queued
    /// ahead of it for a conflicting mode. Empty when the server does not say.
    pub holders: Vec<LockHolder>,
}

/// A session another one waits behind, as far as this role may see it (without
/// `pg_read_all_stats`, another role's session shows its pid and little else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// Its backend process id (`pg_terminate_backend` takes it).
    pub pid: i32,
    /// Its `application_name`, when set and visible.
    pub application_name: Option<String>,
    /// The role it is logged in as, when visible.
    pub user: Option<String>,
    /// What it is doing (`idle in transaction`, `active`, …), when visible.
    pub state: Option<String>,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        let mut details = Vec::new();
        if let Some(name) = self.application_name.as_deref().filter(|n| !n.is_empty()) {
            details.push(format!("application_name {name:?}"));
        }
        if let Some(user) = &self.user {
            details.push(format!("user {user}"));
        }
        if let Some(state) = self.state.as_deref().filter(|s| !s.is_empty()) {
            details.push(state.to_owned());
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

impl fmt::Display for LockWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lock)?;
        if !self.holders.is_empty() {
            let holders: Vec<String> = self.holders.iter().map(ToString::to_string).collect();
            write!(f, ", held by {}", holders.join("; "))?;
        }
        Ok(())
    }
}

/// What a lock is, in words, from its `pg_locks` columns.
fn describe(
    locktype: &str,
    relation: Option<&str>,
    classid: Option<i64>,
    objid: Option<i64>,
    objsubid: Option<i32>,
    xid: Option<&str>,
) -> String {
    match (locktype, relation) {
        ("relation", Some(table)) => format!("table {table}"),
        // A row lock: the waiter holds the row's tuple lock and waits for the transaction
        // that changed or locked the row to end (or, queued behind another waiter, for the
        // tuple lock itself).
        ("tuple" | "transactionid", Some(table)) => format!("a row of table {table}"),
        ("transactionid", None) => match xid {
            Some(xid) => format!("the end of transaction {xid} (a row it changed or locked)"),
            None => "the end of another transaction (a row it changed or locked)".to_owned(),
        },
        ("advisory", _) => {
            let (hi, lo) = (classid.unwrap_or_default(), objid.unwrap_or_default());
            if objsubid == Some(1) {
                // A bigint key: the high half in classid, the low half in objid.
                let key = ((hi << 32) | (lo & 0xffff_ffff)) as u64 as i64;
                match key {
                    super::migrate::MIGRATION_LOCK_KEY => {
                        "the migration lock (a `migrate` run is in progress, or is waiting for writers to finish)"
                            .to_owned()
                    }
                    super::users::INSTANCE_ADMINS_LOCK => {
                        "the instance-admin lock (another command is changing who is admin)".to_owned()
                    }
                    super::workspaces::ROOT_WORKSPACE_LOCK => {
                        "the root-workspace lock (another bootstrap is creating it)".to_owned()
                    }
                    key => format!("advisory lock {key}"),
                }
            } else {
                format!("advisory lock ({hi}, {lo})")
            }
        }
        (other, Some(table)) => format!("a {other} lock on table {table}"),
        (other, None) => format!("a {other} lock"),
    }
}

/// This process's connections that wait for a lock, with what they wait for and behind whom
/// (one row per holder). `pids` are the connections' backend ids, `name` their
/// `application_name` (a guard against a pid reused by another session).
const WAITS: &str = "\
SELECT w.pid, l.locktype, l.mode, \
       COALESCE(l.relation, t.relation)::regclass::text AS relation, \
       l.classid::int8 AS classid, l.objid::int8 AS objid, l.objsubid::int4 AS objsubid, \
       l.transactionid::text AS xid, \
       extract(epoch FROM clock_timestamp() - COALESCE((to_jsonb(l) ->> 'waitstart')::timestamptz, w.query_start, clock_timestamp()))::float8 AS waited, \
       h.pid AS holder_pid, h.application_name AS holder_name, h.usename::text AS holder_user, h.state AS holder_state \
FROM pg_stat_activity w \
JOIN pg_locks l ON l.pid = w.pid AND NOT l.granted \
LEFT JOIN LATERAL (SELECT g.relation FROM pg_locks g WHERE g.pid = w.pid AND g.locktype = 'tuple' AND g.granted LIMIT 1) t ON true \
LEFT JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid) ON true \
LEFT JOIN pg_stat_activity h ON h.pid = b.pid \
WHERE w.pid = ANY($1) AND w.application_name = $2 \
ORDER BY w.pid, b.pid";

/// One row of [`WAITS`].
type WaitRow = (
    i32,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i32>,
    Option<String>,
    f64,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The longest wait among this process's connections, if any waits.
async fn current_wait(conn: &mut PgConnection, pids: &[i32], name: &str) -> Result<Option<LockWait>, sqlx::Error> {
    let rows: Vec<WaitRow> = sqlx::query_as(WAITS)
        .bind(pids)
        .bind(name)
        .fetch_all(&mut *conn)
        .await?;
    let mut waits: Vec<LockWait> = Vec::new();
    for (pid, locktype, mode, relation, classid, objid, objsubid, xid, waited, hpid, hname, huser, hstate) in rows {
        if waits.last().is_none_or(|w| w.pid != pid) {
            waits.push(LockWait {
                pid,
                lock: describe(&locktype, relation.as_deref(), classid, objid, objsubid, xid.as_deref()),
                mode,
                waited: Duration::from_secs_f64(waited.max(0.0)),
                holders: Vec::new(),
            });
        }
        if let (Some(wait), Some(hpid)) = (waits.last_mut(), hpid)
            && !wait.holders.iter().any(|h| h.pid == hpid)
        {
            wait.holders.push(LockHolder {
                pid: hpid,
                application_name: hname,
                user: huser,
                state: hstate,
            });
        }
    }
    Ok(waits.into_iter().max_by_key(|w| w.waited))
}

/// How often [`Database::watch_lock_wait`] looks again while nothing waits long enough.
const WATCH_EVERY: Duration = Duration::from_millis(500);

impl Database {
    /// Waits until one of this process's connections has waited `after` for a lock another
    /// session holds, and returns what it waits for; `None` once `done` is cancelled (the
    /// command finished) first, on SQLite, on a pool that records no backends (a
    /// long-running process's), and when the server cannot be asked (the monitoring
    /// connection is refused, or this role may not read `pg_locks`).
    ///
    /// PostgreSQL only. Nothing is opened before `after` has passed; then one monitoring
    /// connection (the pool's connect options, so it carries the run's `application_name`)
    /// reads `pg_locks`, `pg_blocking_pids` and `pg_stat_activity` every 0.5 s (sooner when
    /// a wait is due to reach `after`), and is closed with the protocol's goodbye before this
    /// returns, whichever way it ends. Through a transaction-mode pooler the recorded backend
    /// ids may be stale; the answer is then `None` or describes the server connection the
    /// pooler used first.
    pub async fn watch_lock_wait(
        &self,
        after: Duration,
        done: &tokio_util::sync::CancellationToken,
    ) -> Option<LockWait> {
        use sqlx::Connection as _;
        let Pool::Postgres(pool) = &self.pool else {
            return None;
        };
        tokio::select! {
            () = tokio::time::sleep(after) => {}
            () = done.cancelled() => return None,
        }
        if self.recorded_backends().is_empty() {
            return None;
        }
        let options = pool.connect_options();
        let name = options.get_application_name().unwrap_or_default().to_owned();
        // Not raced with `done`: a connection dropped half-way through its start-up would
        // be a lost client in the server's log. Once open, it is always closed below.
        let mut conn = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options))
            .await
            .ok()?
            .ok()?;
        let found = loop {
            if done.is_cancelled() {
                break None;
            }
            let pause = match current_wait(&mut conn, &self.recorded_backends(), &name).await {
                Ok(Some(wait)) if wait.waited >= after => break Some(wait),
                Ok(Some(wait)) => (after - wait.waited).min(WATCH_EVERY),
                Ok(None) => WATCH_EVERY,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read pg_locks: no lock-wait notice");
                    break None;
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause.max(Duration::from_millis(20))) => {}
                () = done.cancelled() => break None,
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
        found
    }

    /// The backend process ids of this pool's connections so far.
    fn recorded_backends(&self) -> Vec<i32> {
        self.backends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_described_in_words() {
        assert_eq!(
            describe("transactionid", Some("users"), None, None, None, Some("741")),
            "a row of table users"
        );
        assert_eq!(
            describe("relation", Some("users"), None, None, None, None),
            "table users"
        );
        let key = super::super::migrate::MIGRATION_LOCK_KEY;
        let (hi, lo) = (key >> 32, key & 0xffff_ffff);
        assert!(describe("advisory", None, Some(hi), Some(lo), Some(1), None).starts_with("the migration lock"));
        assert_eq!(
            describe("advisory", None, Some(0), Some(42), Some(1), None),
            "advisory lock 42"
        );
        let wait = LockWait {
            pid: 1,
            lock: "a row of table users".into(),
            mode: "ShareLock".into(),
            waited: Duration::from_secs(3),
            holders: vec![LockHolder {
                pid: 4242,
                application_name: Some("psql".into()),
                user: Some("ops".into()),
                state: Some("idle in transaction".into()),
            }],
        };
        assert_eq!(
            wait.to_string(),
            "a row of table users, held by pid 4242 (application_name \"psql\", user ops, idle in transaction)"
        );
    }
}
