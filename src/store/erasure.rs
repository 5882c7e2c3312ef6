//! Erasure requests, the sweeper's candidates and its run records.

use serde::Serialize;
use uuid::Uuid;

use super::users::USER_COLUMNS;
use super::{Backend, DbId, DbRow, Tx, from_row, get_id, parse_enum};
use crate::domain::{ErasureRequestStatus, SweepStatus, Timestamp, User};
use crate::error::Result;

/// A pending (or finished) right-to-erasure request. `user_id` is pseudonymous: the row
/// outlives the user it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasureRequest {
    /// The request's id.
    pub id: Uuid,
    /// The user to erase (kept after the erasure as a pseudonymous id).
    pub user_id: Uuid,
    /// When the request was made.
    pub requested_at: Timestamp,
    /// When the sweeper may carry it out (one month later by default: GDPR Art. 12(3)).
    pub due_at: Timestamp,
    /// Who made the request (the actor, as in the audit trail).
    pub requested_by: String,
    /// Where the request stands.
    pub status: ErasureRequestStatus,
    /// When the user was erased.
    pub completed_at: Option<Timestamp>,
    /// Why the sweeper's last attempt failed (a hook's veto or failure, for instance); the
    /// request stays pending.
    pub last_error: Option<String>,
}

from_row!(ErasureRequest, |r| ErasureRequest {
    id: get_id!(r, "id"),
    user_id: get_id!(r, "user_id"),
    requested_at: r.try_get("requested_at")?,
    due_at: r.try_get("due_at")?,
    requested_by: r.try_get("requested_by")?,
    status: parse_enum(&r.try_get::<String, _>("status")?, "status")?,
    completed_at: r.try_get("completed_at")?,
    last_error: r.try_get("last_error")?,
});

/// One run of the sweeper.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweeperRun {
    /// The run's id (`run_id` in the sweeper's report).
    pub id: Uuid,
    /// When the run started.
    pub started_at: Timestamp,
    /// When it finished; `None` while it runs, or when it died without finishing.
    pub finished_at: Option<Timestamp>,
    /// How the run ended (`running` while it runs, or when it died without finishing).
    pub status: SweepStatus,
    /// A dry run: nothing was purged.
    pub dry_run: bool,
    /// Users purged.
    pub purged: i64,
    /// Users whose purge failed (or was vetoed by a hook).
    pub failed: i64,
    /// The rest of the report: `{skipped, stopped, invites_expired, sessions_expired,
    /// failures: [{user_id, error}]}`.
    pub summary: serde_json::Value,
}

from_row!(SweeperRun, |r| SweeperRun {
    id: get_id!(r, "id"),
    started_at: r.try_get("started_at")?,
    finished_at: r.try_get("finished_at")?,
    status: parse_enum(&r.try_get::<String, _>("status")?, "status")?,
    dry_run: r.try_get("dry_run")?,
    purged: r.try_get("purged")?,
    failed: r.try_get("failed")?,
    summary: serde_json::from_str(&r.try_get::<String, _>("summary")?).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
});

/// Why a user is due for purging.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeReason {
    /// A right-to-erasure request reached its due date.
    ErasureRequest,
    /// The user has been in the trash past its retention.
    TrashExpired,
}

impl Tx {
    /// Records an erasure request. Errors: [`crate::Error::Conflict`] when one is already
    /// pending for the user.
    pub(crate) async fn insert_erasure_request(
        &mut self,
        user_id: Uuid,
        due_at: Timestamp,
        requested_by: &str,
        at: Timestamp,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        on_conn!(self, |c| {
            sqlx::query(
            "INSERT INTO erasure_requests (id, user_id, requested_at, due_at, requested_by, status) VALUES ($1, $2, $3, $4, $5, 'pending')"
        )
        .bind(DbId(id))
        .bind(DbId(user_id))
        .bind(at)
        .bind(due_at)
        .bind(requested_by)
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        Ok(id)
    }

    /// One erasure request by id, if it exists.
    pub(crate) async fn erasure_request(&mut self, id: Uuid) -> Result<Option<ErasureRequest>> {
        let row = on_conn!(self, |c| sqlx::query("SELECT * FROM erasure_requests WHERE id = $1")
            .bind(DbId(id))
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.decode::<ErasureRequest>())
            .transpose()?);
        Ok(row)
    }

    /// The user's pending erasure request, if any (at most one: `erasure_requests_one_pending`).
    pub(crate) async fn pending_erasure_request_of(&mut self, user_id: Uuid) -> Result<Option<ErasureRequest>> {
        let row = on_conn!(self, |c| sqlx::query(
            "SELECT * FROM erasure_requests WHERE user_id = $1 AND status = 'pending'"
        )
        .bind(DbId(user_id))
        .fetch_optional(&mut *c)
        .await?
        .map(|r| r.decode::<ErasureRequest>())
        .transpose()?);
        Ok(row)
    }

    /// Marks a pending erasure request `cancelled`; returns whether it was pending.
    pub(crate) async fn cancel_erasure_request(&mut self, id: Uuid) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE erasure_requests SET status = 'cancelled' WHERE id = $1 AND status = 'pending'"
        )
        .bind(DbId(id))
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Pending erasure requests, soonest due first.
    pub(crate) async fn pending_erasure_requests(&mut self) -> Result<Vec<ErasureRequest>> {
        let rows = on_conn!(self, |c| sqlx::query(
            "SELECT * FROM erasure_requests WHERE status = 'pending' ORDER BY due_at, id"
        )
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| r.decode::<ErasureRequest>())
        .collect::<Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// Users due for purging at `at`: due erasure requests first, then trash past retention;
    /// at most `limit`.
    pub(crate) async fn purge_candidates(&mut self, at: Timestamp, limit: i64) -> Result<Vec<(Uuid, PurgeReason)>> {
        let rows: Vec<(DbId, i64)> = on_conn!(self, |c| {
            sqlx::query_as(
            "SELECT user_id, CAST(0 AS BIGINT) AS why, due_at AS due FROM erasure_requests WHERE status = 'pending' AND due_at <= $1 \
             UNION ALL \
             SELECT id, CAST(1 AS BIGINT), purge_after FROM users WHERE deleted_at IS NOT NULL AND purge_after <= $1 \
             ORDER BY 2, 3 LIMIT $2"
        )
        .bind(at)
        .bind(limit)
        .fetch_all(&mut *c)
        .await?
        .into_iter()
        .map(|r: (DbId, i64, Timestamp)| (r.0, r.1))
        .collect()
        });
        let mut out: Vec<(Uuid, PurgeReason)> = Vec::with_capacity(rows.len());
        for (id, why) in rows {
            if out.iter().all(|(seen, _)| *seen != id.0) {
                out.push((
                    id.0,
                    if why == 0 {
                        PurgeReason::ErasureRequest
                    } else {
                        PurgeReason::TrashExpired
                    },
                ));
            }
        }
        Ok(out)
    }

    /// Locks the user for purging and re-checks, inside this transaction, that it is still
    /// due. `None` when the user is gone (purged by a concurrent sweeper), no longer due
    /// (restored, request cancelled), or — on PostgreSQL — locked by another sweeper right now
    /// (`FOR UPDATE SKIP LOCKED`; SQLite's write lock already excludes other writers).
    pub(crate) async fn lock_user_if_purge_due(&mut self, user_id: Uuid, at: Timestamp) -> Result<Option<User>> {
        // One statement: lock, re-check and read. PostgreSQL re-evaluates the condition on the
        // row version it locks, so a user restored meanwhile is not purged.
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE OF u SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1 AND ((u.deleted_at IS NOT NULL AND u.purge_after <= $2) \
             OR EXISTS (SELECT 1 FROM erasure_requests e WHERE e.user_id = u.id AND e.status = 'pending' AND e.due_at <= $2)){lock}"
        );
        let user = on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(DbId(user_id))
            .bind(at)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.decode::<User>())
            .transpose()?);
        Ok(user)
    }

    /// Notes the last purge error on the user's pending erasure request.
    pub(crate) async fn note_erasure_error(&mut self, user_id: Uuid, error: &str) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "UPDATE erasure_requests SET last_error = $2 WHERE user_id = $1 AND status = 'pending'"
        )
        .bind(DbId(user_id))
        .bind(error)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Trashed users: (total, due by `at`).
    pub(crate) async fn trash_counts(&mut self, at: Timestamp) -> Result<(i64, i64)> {
        let row: (i64, i64) = on_conn!(self, |c| {
            sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN purge_after <= $1 THEN 1 ELSE 0 END), 0) FROM users WHERE deleted_at IS NOT NULL"
        )
        .bind(at)
        .fetch_one(&mut *c)
        .await?
        });
        Ok(row)
    }

    /// Starts a sweeper run record.
    pub(crate) async fn insert_sweeper_run(&mut self, id: Uuid, dry_run: bool, at: Timestamp) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "INSERT INTO sweeper_runs (id, started_at, status, dry_run) VALUES ($1, $2, 'running', $3)"
        )
        .bind(DbId(id))
        .bind(at)
        .bind(dry_run)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Runs still marked `running`, oldest first (live ones and ones whose process died).
    pub(crate) async fn running_sweeper_runs(&mut self) -> Result<Vec<SweeperRun>> {
        let runs = on_conn!(self, |c| sqlx::query(
            "SELECT * FROM sweeper_runs WHERE status = 'running' ORDER BY started_at, id"
        )
        .fetch_all(&mut *c)
        .await?
        .into_iter()
        .map(|r| r.decode::<SweeperRun>())
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?);
        Ok(runs)
    }

    /// Records the owner of a running sweeper run in its summary (`{"owner": {...}}`), so a
    /// later run can tell whether that process is gone.
    pub(crate) async fn set_sweeper_run_summary(&mut self, id: Uuid, summary: &serde_json::Value) -> Result<()> {
        let summary = summary.to_string();
        on_conn!(self, |c| sqlx::query(
            "UPDATE sweeper_runs SET summary = $2 WHERE id = $1 AND status = 'running'"
        )
        .bind(DbId(id))
        .bind(&summary)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Ends a run whose process died: `failed`, with `summary` saying it was abandoned.
    /// Only while it is still `running` (a run that finished meanwhile keeps its record).
    pub(crate) async fn abandon_sweeper_run(
        &mut self,
        id: Uuid,
        summary: &serde_json::Value,
        at: Timestamp,
    ) -> Result<bool> {
        let summary = summary.to_string();
        let n = on_conn!(self, |c| {
            sqlx::query(
            "UPDATE sweeper_runs SET finished_at = $2, status = 'failed', summary = $3 WHERE id = $1 AND status = 'running'"
        )
        .bind(DbId(id))
        .bind(at)
        .bind(&summary)
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        Ok(n == 1)
    }

    /// Finishes a sweeper run record.
    pub(crate) async fn finish_sweeper_run(
        &mut self,
        id: Uuid,
        status: &str,
        purged: i64,
        failed: i64,
        summary: &serde_json::Value,
        at: Timestamp,
    ) -> Result<()> {
        let summary = summary.to_string();
        on_conn!(self, |c| {
            sqlx::query(
            "UPDATE sweeper_runs SET finished_at = $2, status = $3, purged = $4, failed = $5, summary = $6 WHERE id = $1"
        )
        .bind(DbId(id))
        .bind(at)
        .bind(status)
        .bind(purged)
        .bind(failed)
        .bind(&summary)
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    /// The latest run, and the latest finished non-dry run that did not fail outright.
    pub(crate) async fn last_sweeper_runs(&mut self) -> Result<(Option<SweeperRun>, Option<SweeperRun>)> {
        let last = on_conn!(self, |c| sqlx::query(
            "SELECT * FROM sweeper_runs ORDER BY started_at DESC, id DESC LIMIT 1"
        )
        .fetch_optional(&mut *c)
        .await?
        .map(|r| r.decode::<SweeperRun>())
        .transpose()?);
        let ok = on_conn!(self, |c| {
            sqlx::query(
            "SELECT * FROM sweeper_runs WHERE NOT dry_run AND status IN ('ok', 'partial', 'interrupted') ORDER BY started_at DESC, id DESC LIMIT 1"
        )
        .fetch_optional(&mut *c)
        .await?
        .map(|r| r.decode::<SweeperRun>())
        .transpose()?
        });
        Ok((last, ok))
    }

    /// Drops table-published cache invalidations older than `before` (listeners poll recent
    /// ones).
    pub(crate) async fn prune_invalidations(&mut self, before: Timestamp) -> Result<u64> {
        let n = on_conn!(self, |c| sqlx::query(
            "DELETE FROM cache_invalidations WHERE created_at < $1"
        )
        .bind(before)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n)
    }
}
