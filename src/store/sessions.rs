//! Login sessions. Tokens are stored as SHA-256 hex only.

use uuid::Uuid;

use super::{DbId, DbRow, Tx, from_row, get_id, parse_enum};
use crate::domain::{LogoutReason, Session, Timestamp};
use crate::error::Result;

from_row!(Session, |r| Session {
    id: get_id!(r, "id"),
    user_id: get_id!(r, "user_id"),
    family_id: get_id!(r, "family_id"),
    created_at: r.try_get("created_at")?,
    expires_at: r.try_get("expires_at")?,
    last_seen_at: r.try_get("last_seen_at")?,
    revoked_at: r.try_get("revoked_at")?,
    revoke_reason: match r.try_get::<Option<String>, _>("revoke_reason")? {
        Some(s) => Some(parse_enum::<LogoutReason>(&s, "revoke_reason")?),
        None => None,
    },
});

const SESSION_COLUMNS: &str = "id, user_id, family_id, created_at, expires_at, last_seen_at, revoked_at, revoke_reason";

impl Tx {
    /// Inserts a session whose token hashes to `token_hash`.
    pub(crate) async fn insert_session(&mut self, session: &Session, token_hash: &str) -> Result<()> {
        on_conn!(self, |c| {
            sqlx::query(
            "INSERT INTO sessions (id, user_id, family_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(DbId(session.id))
        .bind(DbId(session.user_id))
        .bind(DbId(session.family_id))
        .bind(token_hash)
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    /// A user's sessions, newest first.
    pub(crate) async fn sessions_of(&mut self, user_id: Uuid) -> Result<Vec<Session>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id");
        let rows = on_conn!(self, |c| sqlx::query(&sql)
            .bind(DbId(user_id))
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| r.decode::<Session>())
            .collect::<Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// One session by id.
    pub(crate) async fn session(&mut self, id: Uuid) -> Result<Option<Session>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        let row = on_conn!(self, |c| sqlx::query(&sql)
            .bind(DbId(id))
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.decode::<Session>())
            .transpose()?);
        Ok(row)
    }

    /// How many sessions of the user are live (unrevoked, unexpired) at `at`.
    pub(crate) async fn live_session_count(&mut self, user_id: Uuid, at: Timestamp) -> Result<i64> {
        let n = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2"
        )
        .bind(DbId(user_id))
        .bind(at)
        .fetch_one(&mut *c)
        .await?);
        Ok(n)
    }

    /// Revokes one session if it is not revoked yet; returns whether it was.
    pub(crate) async fn revoke_session(&mut self, id: Uuid, reason: LogoutReason, at: Timestamp) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL"
        )
        .bind(DbId(id))
        .bind(at)
        .bind(reason.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Revokes every unrevoked, unexpired session of a user in one statement; returns how many.
    pub(crate) async fn revoke_sessions_of(
        &mut self,
        user_id: Uuid,
        reason: LogoutReason,
        at: Timestamp,
    ) -> Result<u64> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 \
             WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2"
        )
        .bind(DbId(user_id))
        .bind(at)
        .bind(reason.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n)
    }

    /// Marks every unrevoked session that expired by `at` as ended with
    /// [`LogoutReason::SessionExpired`]; returns `(user_id, sessions ended)` per user.
    pub(crate) async fn expire_sessions(&mut self, at: Timestamp) -> Result<Vec<(Uuid, i64)>> {
        let users: Vec<(DbId, i64)> = on_conn!(self, |c| sqlx::query_as(
            "SELECT user_id, COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at <= $1 GROUP BY user_id"
        )
        .bind(at)
        .fetch_all(&mut *c)
        .await?);
        on_conn!(self, |c| sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE revoked_at IS NULL AND expires_at <= $1"
        )
        .bind(at)
        .bind(LogoutReason::SessionExpired.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(users.into_iter().map(|(id, n)| (id.0, n)).collect())
    }
}
