//! Login sessions. Tokens are stored as SHA-256 hex only.

use uuid::Uuid;

use super::{Backend, DbId, DbRow, Tx, from_row, get_id, parse_enum};
use crate::domain::{LogoutReason, Session, Timestamp};
use crate::error::Result;

from_row!(Session, |r| Session {
    id: get_id!(r, "id"),
    user_id: get_id!(r, "user_id"),
    family_id: get_id!(r, "family_id"),
    created_at: r.try_get("created_at")?,
    expires_at: r.try_get("expires_at")?,
    last_seen_at: r.try_get("last_seen_at")?,
    ip_address: r.try_get("ip_address")?,
    user_agent: r.try_get("user_agent")?,
    revoked_at: r.try_get("revoked_at")?,
    revoke_reason: match r.try_get::<Option<String>, _>("revoke_reason")? {
        Some(s) => Some(parse_enum::<LogoutReason>(&s, "revoke_reason")?),
        None => None,
    },
});

pub(super) const SESSION_COLUMNS: &str =
    "id, user_id, family_id, created_at, expires_at, last_seen_at, ip_address, user_agent, revoked_at, revoke_reason";

impl Tx {
    /// Inserts a session whose token hashes to `token_hash`.
    pub(crate) async fn insert_session(&mut self, session: &Session, token_hash: &str) -> Result<()> {
        on_conn!(self, |c| {
            sqlx::query(
            "INSERT INTO sessions (id, user_id, family_id, token_hash, created_at, expires_at, last_seen_at, ip_address, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )
        .bind(DbId(session.id))
        .bind(DbId(session.user_id))
        .bind(DbId(session.family_id))
        .bind(token_hash)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.last_seen_at)
        .bind(&session.ip_address)
        .bind(&session.user_agent)
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    /// One session by id.
    pub(crate) async fn session(&mut self, id: Uuid) -> Result<Option<Session>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1");
        let row = on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
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
        // SQLite, left to itself, reads every session in `user_id` order through the paging
        // index to save the grouping's sort (116 ms at 1M sessions, per sweeper run); the
        // live-expiry index finds the few expired ones (2 ms). PostgreSQL picks it unasked.
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT user_id, COUNT(*) FROM sessions INDEXED BY sessions_live_expiry_idx \
                 WHERE revoked_at IS NULL AND expires_at <= $1 GROUP BY user_id"
            }
            Backend::Postgres => {
                "SELECT user_id, COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at <= $1 GROUP BY user_id"
            }
        };
        let users: Vec<(DbId, i64)> = on_conn!(self, |c| sqlx::query_as(sql).bind(at).fetch_all(&mut *c).await?);
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

/// A session found by one of its tokens, with its user.
pub(crate) struct SessionWithUser {
    pub session: Session,
    pub user: crate::domain::User,
}

struct Joined(SessionWithUser);

from_row!(Joined, |r| Joined(SessionWithUser {
    session: Session {
        id: get_id!(r, "session_id"),
        user_id: get_id!(r, "id"),
        family_id: get_id!(r, "family_id"),
        created_at: r.try_get("session_created_at")?,
        expires_at: r.try_get("expires_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
        ip_address: r.try_get("ip_address")?,
        user_agent: r.try_get("user_agent")?,
        revoked_at: r.try_get("revoked_at")?,
        revoke_reason: match r.try_get::<Option<String>, _>("revoke_reason")? {
            Some(s) => Some(parse_enum::<LogoutReason>(&s, "revoke_reason")?),
            None => None,
        },
    },
    user: r.decode::<crate::domain::User>()?,
}));

/// The session columns (renamed where they collide with the user's) joined to the user's.
fn joined_select(by: &str) -> String {
    format!(
        "SELECT s.id AS session_id, s.family_id, s.created_at AS session_created_at, s.expires_at, \
         s.last_seen_at, s.ip_address, s.user_agent, s.revoked_at, s.revoke_reason, {} \
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.{by} = $1",
        super::users::USER_COLUMNS
    )
}

impl super::Database {
    /// The session whose access token hashes to `token_hash`, with its user: one indexed
    /// lookup on the pool, outside any transaction (the per-request read of a server).
    pub(crate) async fn session_by_access_token(&self, token_hash: &str) -> Result<Option<SessionWithUser>> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| joined_select("token_hash"));
        let sql = SQL.as_str();
        let found = match &self.pool {
            super::Pool::Sqlite(p) => sqlx::query(sql)
                .bind(token_hash)
                .fetch_optional(p)
                .await?
                .map(|r| r.decode::<Joined>())
                .transpose()?,
            super::Pool::Postgres(p) => sqlx::query(sql)
                .bind(token_hash)
                .fetch_optional(p)
                .await?
                .map(|r| r.decode::<Joined>())
                .transpose()?,
        };
        Ok(found.map(|j| j.0))
    }
}

impl super::Database {
    /// Moves a session's `last_seen_at` to `at` unless another request already moved it past
    /// `stale_before` (so concurrent requests write once); returns whether it wrote. One
    /// statement on the pool, outside any transaction.
    pub(crate) async fn touch_session(&self, id: Uuid, at: Timestamp, stale_before: Timestamp) -> Result<bool> {
        const SQL: &str = "UPDATE sessions SET last_seen_at = $2 \
            WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at < $3)";
        let n = match &self.pool {
            super::Pool::Sqlite(p) => sqlx::query(SQL)
                .bind(DbId(id))
                .bind(at)
                .bind(stale_before)
                .execute(p)
                .await?
                .rows_affected(),
            super::Pool::Postgres(p) => sqlx::query(SQL)
                .bind(DbId(id))
                .bind(at)
                .bind(stale_before)
                .execute(p)
                .await?
                .rows_affected(),
        };
        Ok(n == 1)
    }
}

impl Tx {
    /// The session one of whose tokens hashes to `token_hash` (`refresh` selects the refresh
    /// token, else the access token), with its user; on PostgreSQL the session row is locked.
    pub(crate) async fn session_by_token(
        &mut self,
        token_hash: &str,
        refresh: bool,
    ) -> Result<Option<SessionWithUser>> {
        let mut sql = joined_select(if refresh { "refresh_hash" } else { "token_hash" });
        if self.backend() == super::Backend::Postgres {
            sql.push_str(" FOR UPDATE OF s");
        }
        let found = on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.decode::<Joined>())
            .transpose()?);
        Ok(found.map(|j| j.0))
    }

    /// Sets the refresh token hash of a new session.
    pub(crate) async fn set_refresh_hash(&mut self, session_id: Uuid, refresh_hash: &str) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "UPDATE sessions SET refresh_hash = $2 WHERE id = $1"
        )
        .bind(DbId(session_id))
        .bind(refresh_hash)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Rotates a live session's tokens in place if its refresh token is still `old_refresh`
    /// and keeps the old hash as rotated away; returns whether it rotated (false when a
    /// concurrent refresh got there first).
    pub(crate) async fn rotate_session_tokens(
        &mut self,
        session_id: Uuid,
        old_refresh: &str,
        access_hash: &str,
        refresh_hash: &str,
        expires_at: Timestamp,
        at: Timestamp,
    ) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE sessions SET token_hash = $3, refresh_hash = $4, expires_at = $5, last_seen_at = $6 \
             WHERE id = $1 AND refresh_hash = $2 AND revoked_at IS NULL"
        )
        .bind(DbId(session_id))
        .bind(old_refresh)
        .bind(access_hash)
        .bind(refresh_hash)
        .bind(expires_at)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        if n == 1 {
            on_conn!(self, |c| sqlx::query(
                "INSERT INTO rotated_refresh_tokens (token_hash, session_id, rotated_at) VALUES ($1, $2, $3)"
            )
            .bind(old_refresh)
            .bind(DbId(session_id))
            .bind(at)
            .execute(&mut *c)
            .await?
            .rows_affected());
        }
        Ok(n == 1)
    }

    /// The session a rotated-away refresh token belonged to: `(user_id, family_id)`.
    pub(crate) async fn rotated_refresh_owner(&mut self, token_hash: &str) -> Result<Option<(Uuid, Uuid)>> {
        let row: Option<(DbId, DbId)> = on_conn!(self, |c| sqlx::query_as(
            "SELECT s.user_id, s.family_id FROM rotated_refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             WHERE r.token_hash = $1"
        )
        .bind(token_hash)
        .fetch_optional(&mut *c)
        .await?);
        Ok(row.map(|(u, f)| (u.0, f.0)))
    }

    /// Revokes every unrevoked session of a family; returns how many.
    pub(crate) async fn revoke_family(&mut self, family_id: Uuid, reason: LogoutReason, at: Timestamp) -> Result<u64> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE family_id = $1 AND revoked_at IS NULL"
        )
        .bind(DbId(family_id))
        .bind(at)
        .bind(reason.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n)
    }
}
