//! Login sessions: listing, revoking (with the [`LogoutReason`]s of the hook contract),
//! pruning expired ones, and the hook that revokes a deleted user's sessions observably.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use crate::domain::{DeletionMode, LogoutReason, Session, User, now};
use crate::error::{Error, Result};
use crate::lifecycle::{UserLifecycleHook, UserLifecycleService};
use crate::services::audit;
use crate::store::{Database, Tx, UserRef};

/// How long a new session lives: 30 days (this project's default).
pub const DEFAULT_SESSION_TTL: chrono::Duration = chrono::Duration::days(30);

/// Session operations. Every revocation fires `on_user_logout` once per call (spawned).
#[derive(Clone)]
pub struct SessionService {
    db: Database,
    lifecycle: Arc<UserLifecycleService>,
}

/// The result of `session revoke --user U --all` and similar calls.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RevokeResult {
    /// The user whose sessions were revoked.
    pub user_id: Uuid,
    /// That user's username.
    pub username: String,
    /// How many sessions this call revoked (0 when none was live).
    pub revoked: u64,
    /// The reason recorded on each session and passed to `on_user_logout`.
    pub reason: LogoutReason,
}

/// The result of `session prune`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneResult {
    /// Expired sessions ended by this call.
    pub sessions_expired: i64,
    /// Distinct users they belonged to (each got one `on_user_logout`).
    pub users: usize,
}

impl SessionService {
    pub(crate) fn new(db: Database, lifecycle: Arc<UserLifecycleService>) -> Self {
        Self { db, lifecycle }
    }

    /// Creates a session for `user` and returns it with its token (shown once). Errors:
    /// [`crate::Error::Invalid`] for a `ttl` outside (0, [`crate::domain::MAX_DURATION`]].
    pub async fn create(&self, tx: &mut Tx, user: &User, ttl: chrono::Duration) -> Result<(Session, String)> {
        let (token, hash) = crate::tokens::new_token();
        let at = now();
        let session = Session {
            id: Uuid::now_v7(),
            user_id: user.id,
            family_id: Uuid::now_v7(),
            created_at: at,
            expires_at: crate::domain::after(at, ttl)?,
            last_seen_at: None,
            revoked_at: None,
            revoke_reason: None,
        };
        tx.insert_session(&session, &hash).await?;
        Ok((session, token))
    }

    /// A user's sessions, newest first. Errors: [`Error::NotFound`].
    pub async fn list(&self, user: &UserRef) -> Result<Vec<Session>> {
        let mut tx = self.db.begin_read().await?;
        let user = tx.require_user(user, false).await?;
        let sessions = tx.sessions_of(user.id).await?;
        tx.end().await?;
        Ok(sessions)
    }

    /// Revokes one session ([`LogoutReason::AdminRevoked`]). Errors: [`Error::NotFound`];
    /// [`Error::Conflict`] when it was already revoked.
    pub async fn revoke(&self, session_id: Uuid) -> Result<RevokeResult> {
        self.db.retrying(|| self.revoke_once(session_id)).await
    }

    /// One attempt of [`Self::revoke`], which runs it again when the database asks.
    async fn revoke_once(&self, session_id: Uuid) -> Result<RevokeResult> {
        let mut tx = self.db.begin().await?;
        let session = tx
            .session(session_id)
            .await?
            .ok_or_else(|| Error::not_found("session", session_id.to_string()))?;
        let user = tx.require_user(&UserRef::Id(session.user_id), true).await?;
        let reason = LogoutReason::AdminRevoked;
        if !tx.revoke_session(session_id, reason, now()).await? {
            return Err(Error::Conflict(format!("session {session_id} is already revoked")));
        }
        audit::record(
            &mut tx,
            "session.revoked",
            Some(user.id),
            json!({ "session_id": session_id, "reason": reason }),
        )
        .await?;
        tx.commit().await?;
        self.lifecycle.dispatch_logout(&user, reason);
        Ok(RevokeResult {
            user_id: user.id,
            username: user.username,
            revoked: 1,
            reason,
        })
    }

    /// Revokes every live session of a user with `reason`, in one statement.
    pub async fn revoke_all(&self, user: &UserRef, reason: LogoutReason) -> Result<RevokeResult> {
        self.db.retrying(|| self.revoke_all_once(user, reason)).await
    }

    /// One attempt of [`Self::revoke_all`], which runs it again when the database asks.
    async fn revoke_all_once(&self, user: &UserRef, reason: LogoutReason) -> Result<RevokeResult> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        let revoked = tx.revoke_sessions_of(user.id, reason, now()).await?;
        audit::record(
            &mut tx,
            "session.revoked_all",
            Some(user.id),
            json!({ "count": revoked, "reason": reason }),
        )
        .await?;
        tx.commit().await?;
        self.lifecycle.dispatch_logout(&user, reason);
        Ok(RevokeResult {
            user_id: user.id,
            username: user.username,
            revoked,
            reason,
        })
    }

    /// Ends every expired, unrevoked session ([`LogoutReason::SessionExpired`]) and fires one
    /// logout per affected user.
    pub async fn prune(&self) -> Result<PruneResult> {
        self.db.retrying(|| self.prune_once()).await
    }

    /// One attempt of [`Self::prune`], which runs it again when the database asks.
    async fn prune_once(&self) -> Result<PruneResult> {
        let mut tx = self.db.begin().await?;
        let per_user = tx.expire_sessions(now()).await?;
        let mut users = Vec::with_capacity(per_user.len());
        for (user_id, _) in &per_user {
            if let Some(user) = tx.user_by_id(*user_id).await? {
                users.push(user);
            }
        }
        let sessions_expired = per_user.iter().map(|(_, n)| n).sum();
        if sessions_expired > 0 {
            audit::record(
                &mut tx,
                "session.pruned",
                None,
                json!({ "count": sessions_expired, "users": users.len() }),
            )
            .await?;
        }
        tx.commit().await?;
        for user in &users {
            self.lifecycle.dispatch_logout(user, LogoutReason::SessionExpired);
        }
        Ok(PruneResult {
            sessions_expired,
            users: users.len(),
        })
    }
}

/// Revokes a deleted user's sessions inside the delete transaction and audits how many,
/// instead of letting `ON DELETE CASCADE` remove them silently (the OxiCloud user-lifecycle
/// hook design's SessionRevocation hook). Registered fourth; name `session_revocation`.
pub struct SessionRevocationLifecycleHook;

#[async_trait::async_trait]
impl UserLifecycleHook for SessionRevocationLifecycleHook {
    fn name(&self) -> &'static str {
        "session_revocation"
    }

    async fn on_user_created(&self, _user: &User) -> Result<()> {
        Ok(())
    }

    async fn on_user_login(&self, _user: &User) -> Result<()> {
        Ok(())
    }

    async fn on_user_logout(&self, _user: &User, _reason: LogoutReason) -> Result<()> {
        Ok(())
    }

    async fn on_user_deleted(&self, user: &User, mode: DeletionMode, tx: &mut Tx) -> Result<()> {
        // Same treatment for every mode: a trashed, purged or merged-away user keeps no
        // live session.
        let count = tx
            .revoke_sessions_of(user.id, LogoutReason::AdminRevoked, now())
            .await?;
        audit::record(
            tx,
            "user.sessions_revoked_on_delete",
            Some(user.id),
            json!({ "count": count, "mode": mode.as_str() }),
        )
        .await
    }
}
