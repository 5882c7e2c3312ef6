//! Authorization data (capabilities through memberships) and the cross-process invalidation
//! channel of the AuthzCache: `pg_notify` on PostgreSQL, a table on SQLite, and
//! the table on PostgreSQL too when [`InvalidationChannel::Table`] is configured.

use uuid::Uuid;

use super::{DbId, InvalidationChannel, Tx};
use crate::domain::Timestamp;
use crate::error::Result;

/// The PostgreSQL `LISTEN` channel carrying AuthzCache invalidations. The payload is a JSON
/// object `{"user_id": "<uuid>", "reason": "<text>"}`.
pub const AUTHZ_CHANNEL: &str = "accountctl_authz_invalidation";

impl super::Database {
    /// The capability lists (JSON arrays) of the roles an active, untrashed user holds in
    /// the workspace or in the root workspace. The root workspace's system role (`root`)
    /// grants every capability in every workspace (`["*"]`): the root workspace carries
    /// every feature of the instance. One statement on the pool, outside any transaction
    /// (a capability-cache miss on a server's request path).
    pub(crate) async fn role_capabilities_in(&self, user_id: Uuid, workspace_id: Uuid) -> Result<Vec<String>> {
        let rows: Vec<String> = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT CASE WHEN w.is_root AND r.is_system THEN '[\"*\"]' ELSE r.capabilities END FROM memberships m \
             JOIN roles r ON r.id = m.role_id \
             JOIN users u ON u.id = m.user_id \
             JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 AND (m.workspace_id = $2 OR w.is_root) \
               AND u.active AND u.deleted_at IS NULL"
        )
        .bind(DbId(user_id))
        .bind(DbId(workspace_id))
        .fetch_all(p)
        .await?);
        Ok(rows)
    }
}

impl Tx {
    /// Publishes "drop what you cached about this user" to every process. On PostgreSQL this
    /// is `pg_notify` inside the transaction, so listeners hear it only if the transaction
    /// commits; on SQLite (and with [`InvalidationChannel::Table`]) it is a row in
    /// `cache_invalidations`, equally transactional.
    pub(crate) async fn publish_authz_invalidation(
        &mut self,
        user_id: Uuid,
        reason: &str,
        at: Timestamp,
    ) -> Result<()> {
        match self.invalidations {
            InvalidationChannel::Notify => {
                let payload = serde_json::json!({ "user_id": user_id, "reason": reason }).to_string();
                on_conn!(self, |c| sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(AUTHZ_CHANNEL)
                    .bind(&payload)
                    .execute(&mut *c)
                    .await?
                    .rows_affected());
            }
            InvalidationChannel::Table => {
                on_conn!(self, |c| sqlx::query(
                    "INSERT INTO cache_invalidations (user_id, reason, created_at) VALUES ($1, $2, $3)"
                )
                .bind(DbId(user_id))
                .bind(reason)
                .bind(at)
                .execute(&mut *c)
                .await?
                .rows_affected());
            }
        }
        Ok(())
    }

    /// Invalidations published through the table with an id above `after`, oldest first,
    /// as (id, user_id, reason).
    pub(crate) async fn invalidations_after(&mut self, after: i64) -> Result<Vec<(i64, Uuid, String)>> {
        let rows: Vec<(i64, DbId, String)> = on_conn!(self, |c| sqlx::query_as(
            "SELECT id, user_id, reason FROM cache_invalidations WHERE id > $1 ORDER BY id LIMIT 1000"
        )
        .bind(after)
        .fetch_all(&mut *c)
        .await?);
        Ok(rows.into_iter().map(|(id, u, r)| (id, u.0, r)).collect())
    }

    /// Invalidations published through the table at or after `since` (the publisher's
    /// clock) with an id at most `up_to`: the look-back that catches a row whose
    /// transaction committed after a row with a higher id was read.
    pub(crate) async fn invalidations_since(
        &mut self,
        since: Timestamp,
        up_to: i64,
    ) -> Result<Vec<(i64, Uuid, String)>> {
        let rows: Vec<(i64, DbId, String)> = on_conn!(self, |c| sqlx::query_as(
            "SELECT id, user_id, reason FROM cache_invalidations WHERE created_at >= $1 AND id <= $2 ORDER BY id"
        )
        .bind(since)
        .bind(up_to)
        .fetch_all(&mut *c)
        .await?);
        Ok(rows.into_iter().map(|(id, u, r)| (id, u.0, r)).collect())
    }

    /// The highest invalidation id in the table so far (0 when none); a listener starts
    /// after it.
    pub(crate) async fn last_invalidation_id(&mut self) -> Result<i64> {
        let id: Option<i64> = on_conn!(self, |c| sqlx::query_scalar("SELECT MAX(id) FROM cache_invalidations")
            .fetch_one(&mut *c)
            .await?);
        Ok(id.unwrap_or(0))
    }

    /// The users holding a role (their capabilities change with it).
    pub(crate) async fn role_member_ids(&mut self, role_id: Uuid) -> Result<Vec<Uuid>> {
        let rows: Vec<DbId> = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM memberships WHERE role_id = $1"
        )
        .bind(DbId(role_id))
        .fetch_all(&mut *c)
        .await?);
        Ok(rows.into_iter().map(|d| d.0).collect())
    }

    /// The users holding any role in a workspace.
    pub(crate) async fn workspace_member_ids(&mut self, workspace_id: Uuid) -> Result<Vec<Uuid>> {
        let rows: Vec<DbId> = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM memberships WHERE workspace_id = $1"
        )
        .bind(DbId(workspace_id))
        .fetch_all(&mut *c)
        .await?);
        Ok(rows.into_iter().map(|d| d.0).collect())
    }
}
