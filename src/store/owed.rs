//! Work that lifecycle hooks owe a committed change (`owed_hook_work`): recorded in the
//! change's transaction, deleted once the hooks ran, taken over by another process when the
//! one that recorded it is gone.

use uuid::Uuid;

use super::{DbId, DbRow, Tx, from_row, get_id};
use crate::domain::{OwedHookWork, Timestamp};
use crate::error::Result;

/// How long the recording process owns its work before a process on another host may take it
/// over (a process on the same host takes it over as soon as the owner is gone).
pub(crate) const LEASE: chrono::Duration = chrono::Duration::minutes(10);

from_row!(OwedHookWork, |r| OwedHookWork {
    id: get_id!(r, "id"),
    event: r.try_get("event")?,
    user_ids: {
        let text: String = r.try_get("user_ids")?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
            index: "user_ids".into(),
            source: Box::new(e),
        })?
    },
    hook: r.try_get("hook")?,
    recorded_at: r.try_get("recorded_at")?,
    attempts: r.try_get("attempts")?,
    last_error: r.try_get("last_error")?,
});

const COLUMNS: &str = "id, event, user_ids, hook, recorded_at, attempts, last_error";

impl Tx {
    /// Records that the `on_user_created` hooks of `user_ids` are owed (`hook` `None`: all of
    /// them), owned by `owner` until the lease runs out. Returns the record's id.
    pub(crate) async fn owe_created(
        &mut self,
        user_ids: &[Uuid],
        hook: Option<&str>,
        owner: &str,
        at: Timestamp,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        let ids = serde_json::to_string(user_ids)?;
        on_conn!(self, |c| sqlx::query(
            "INSERT INTO owed_hook_work (id, event, user_ids, hook, recorded_at, owner, lease_until) \
             VALUES ($1, 'created', $2, $3, $4, $5, $6)"
        )
        .bind(DbId(id))
        .bind(&ids)
        .bind(hook)
        .bind(at)
        .bind(owner)
        .bind(at + LEASE)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(id)
    }

    /// Deletes a record whose hooks ran. Returns whether it was there.
    pub(crate) async fn settle_owed(&mut self, id: Uuid) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query("DELETE FROM owed_hook_work WHERE id = $1")
            .bind(DbId(id))
            .execute(&mut *c)
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    /// Counts a failed attempt on a record (`kind` names the failure's kind, never its
    /// text) and hands it back: no owner, lease over.
    pub(crate) async fn fail_owed(&mut self, id: Uuid, kind: &str, at: Timestamp) -> Result<()> {
        on_conn!(self, |c| {
            sqlx::query(
            "UPDATE owed_hook_work SET attempts = attempts + 1, last_error = $2, owner = '', lease_until = $3 WHERE id = $1"
        )
        .bind(DbId(id))
        .bind(kind)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    /// Every record, oldest first, with its owner and lease.
    pub(crate) async fn owed_work(&mut self) -> Result<Vec<(OwedHookWork, String, Timestamp)>> {
        let sql = format!("SELECT {COLUMNS}, owner, lease_until FROM owed_hook_work ORDER BY recorded_at, id");
        let rows = on_conn!(self, |c| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *c).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                use sqlx::Row as _;
                let work: OwedHookWork = r.decode()?;
                out.push((
                    work,
                    r.try_get::<String, _>("owner")?,
                    r.try_get::<Timestamp, _>("lease_until")?,
                ));
            }
            out
        });
        Ok(rows)
    }

    /// Takes record `id` over for `owner` if it is still owned by `previous` (another
    /// process may have taken it first). Returns whether this one got it.
    pub(crate) async fn take_owed(&mut self, id: Uuid, previous: &str, owner: &str, at: Timestamp) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE owed_hook_work SET owner = $3, lease_until = $4 WHERE id = $1 AND owner = $2"
        )
        .bind(DbId(id))
        .bind(previous)
        .bind(owner)
        .bind(at + LEASE)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n > 0)
    }
}

/// This process as an owner of owed work: `host/pid/start`, where `start` tells a process
/// from a later one that reuses its pid (Linux: the start time in `/proc/self/stat`).
pub(crate) fn this_process() -> String {
    let pid = std::process::id();
    format!("{}/{pid}/{}", host(), start_time(pid).unwrap_or_default())
}

/// Whether the owner recorded as `owner` is certainly gone: a process of this host that no
/// longer runs (or whose pid now belongs to another process), or no owner at all.
pub(crate) fn owner_is_gone(owner: &str) -> bool {
    if owner.is_empty() {
        return true;
    }
    let mut parts = owner.rsplitn(3, '/');
    let (Some(start), Some(pid), Some(owner_host)) = (parts.next(), parts.next(), parts.next()) else {
        return true;
    };
    if owner_host != host() {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return true;
    };
    match start_time(pid) {
        Some(now) => now != start,
        // Off Linux a process cannot be looked up this way: wait for the lease.
        None => cfg!(target_os = "linux"),
    }
}

fn host() -> String {
    whoami::hostname().unwrap_or_else(|_| "localhost".to_owned())
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`), `None` when it does not
/// run (or off Linux).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_owned)
}
