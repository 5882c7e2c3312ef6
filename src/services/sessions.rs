//! Login sessions: listing, revoking (with the [`LogoutReason`]s of the hook contract),
//! pruning expired ones, and the hook that revokes a deleted user's sessions observably.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use crate::domain::{DeletionMode, LogoutReason, Page, Session, User, now};
use crate::error::{Error, Result};
use crate::lifecycle::{UserLifecycleHook, UserLifecycleService};
use crate::services::audit;
use crate::store::{Database, Tx, UserRef};

/// How long a new session lives: 30 days (this project's default).
pub const DEFAULT_SESSION_TTL: chrono::Duration = chrono::Duration::days(30);

/// How stale a session's `last_seen_at` may grow before [`SessionService::validate`] moves it
/// forward: 60 seconds. Validation runs on every request and is otherwise one read; writing
/// on each request would make it a write, so a session in steady use costs one `UPDATE` a
/// minute.
pub const LAST_SEEN_INTERVAL: chrono::Duration = chrono::Duration::seconds(60);

/// The longest user agent kept, in characters; a longer one is cut.
pub const MAX_USER_AGENT_CHARS: usize = 512;

/// What the application knows about the client signing in, recorded on the new session and
/// shown by `session list`. Both parts are optional and personal data (erased with the
/// user). The library trusts what it is given: deciding which address is the client's (the
/// socket peer, or a proxy's `X-Forwarded-For` only behind a proxy one trusts) is the
/// application's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's IP address.
    pub ip: Option<std::net::IpAddr>,
    /// The client's `User-Agent` header; control characters are dropped and it is cut to
    /// [`MAX_USER_AGENT_CHARS`] characters when stored.
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// The user agent as stored: control characters dropped, surrounding spaces trimmed, at
    /// most [`MAX_USER_AGENT_CHARS`] characters, `None` when nothing is left.
    fn stored_user_agent(&self) -> Option<String> {
        let cleaned: String = self
            .user_agent
            .as_deref()?
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_USER_AGENT_CHARS)
            .collect();
        let cleaned = cleaned.trim();
        (!cleaned.is_empty()).then(|| cleaned.to_owned())
    }
}

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

/// A session just issued or rotated, with its two bearer tokens (shown once; the database
/// holds only their SHA-256 hashes).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tokens {
    /// The session.
    pub session: Session,
    /// The access token: presented on every request (`Authorization: Bearer`, RFC 6750).
    pub access_token: String,
    /// The refresh token: exchanged once for a new pair ([`SessionService::refresh`]).
    pub refresh_token: String,
}

/// A valid session, as [`SessionService::validate`] answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ValidSession {
    /// The signed-in user.
    pub user: User,
    /// The session's id.
    pub session_id: Uuid,
    /// When the session ends unless refreshed.
    pub expires_at: crate::domain::Timestamp,
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
        self.create_for(tx, user, ttl, &ClientInfo::default()).await
    }

    /// [`Self::create`] recording the client the session is for (IP address, user agent);
    /// `last_seen_at` starts at the creation time. Errors: as [`Self::create`].
    pub async fn create_for(
        &self,
        tx: &mut Tx,
        user: &User,
        ttl: chrono::Duration,
        client: &ClientInfo,
    ) -> Result<(Session, String)> {
        let (token, hash) = crate::tokens::new_token();
        let at = now();
        let session = Session {
            id: Uuid::now_v7(),
            user_id: user.id,
            family_id: Uuid::now_v7(),
            created_at: at,
            expires_at: crate::domain::after(at, ttl)?,
            last_seen_at: Some(at),
            ip_address: client.ip.map(|ip| ip.to_string()),
            user_agent: client.stored_user_agent(),
            revoked_at: None,
            revoke_reason: None,
        };
        tx.insert_session(&session, &hash).await?;
        Ok((session, token))
    }

    /// Creates a session for `user` with an access token and a refresh token (the session
    /// family starts here; see [`SessionService::refresh`]). Errors: as [`Self::create`].
    pub(crate) async fn issue(
        &self,
        tx: &mut Tx,
        user: &User,
        ttl: chrono::Duration,
        client: &ClientInfo,
    ) -> Result<Tokens> {
        let (session, access_token) = self.create_for(tx, user, ttl, client).await?;
        let (refresh_token, refresh_hash) = crate::tokens::new_token();
        tx.set_refresh_hash(session.id, &refresh_hash).await?;
        Ok(Tokens {
            session,
            access_token,
            refresh_token,
        })
    }

    /// The session an access token opens, with its user: one indexed read, no transaction
    /// (the per-request check of a server). A session past its expiry is ended here, once,
    /// with [`LogoutReason::SessionExpired`] (one spawned logout). A valid session whose
    /// `last_seen_at` is older than [`LAST_SEEN_INTERVAL`] has it moved to now by one
    /// `UPDATE` (at most one a minute per session, whatever the request rate); when that
    /// write fails (a read-only standby, a lock held too long) the request is still answered
    /// and the failure logged as a warning.
    ///
    /// Errors: [`Error::AuthenticationFailed`] for an unknown, revoked or expired token and
    /// for a disabled or trashed user (one answer for all).
    pub async fn validate(&self, access_token: &str) -> Result<ValidSession> {
        let hash = crate::tokens::hash_token(access_token);
        let Some(found) = self.db.session_by_access_token(&hash).await? else {
            return Err(Error::AuthenticationFailed);
        };
        let (session, user) = (found.session, found.user);
        if session.revoked_at.is_some() || !user.active || user.is_trashed() {
            return Err(Error::AuthenticationFailed);
        }
        let at = now();
        if session.expires_at <= at {
            self.end_expired(&session, &user).await?;
            return Err(Error::AuthenticationFailed);
        }
        let stale_before = at - LAST_SEEN_INTERVAL;
        if session.last_seen_at.is_none_or(|seen| seen < stale_before)
            && let Err(err) = self.db.touch_session(session.id, at, stale_before).await
        {
            tracing::warn!(session_id = %session.id, error = %err, "cannot record when the session was last seen");
        }
        Ok(ValidSession {
            user,
            session_id: session.id,
            expires_at: session.expires_at,
        })
    }

    /// Ends one expired session with [`LogoutReason::SessionExpired`]; only the caller whose
    /// update ended it fires the logout, so concurrent requests end it once.
    async fn end_expired(&self, session: &Session, user: &User) -> Result<()> {
        let reason = LogoutReason::SessionExpired;
        let mut tx = self.db.begin().await?;
        let at = now();
        if !end_one(&mut tx, session.id, user.id, reason, "session.expired", at).await? {
            return Ok(());
        }
        tx.commit().await?;
        self.lifecycle.dispatch_logout(user, reason);
        Ok(())
    }

    /// Ends the session an access token opens ([`LogoutReason::UserInitiated`]: the user
    /// logging out), audited as `session.logout`, with one spawned logout.
    ///
    /// Errors: [`Error::AuthenticationFailed`] when the token opens no live session.
    pub async fn logout(&self, access_token: &str) -> Result<RevokeResult> {
        self.db.retrying(|| self.logout_once(access_token)).await
    }

    /// One attempt of [`Self::logout`], which runs it again when the database asks.
    async fn logout_once(&self, access_token: &str) -> Result<RevokeResult> {
        let hash = crate::tokens::hash_token(access_token);
        let reason = LogoutReason::UserInitiated;
        let mut tx = self.db.begin().await?;
        let Some(found) = tx.session_by_token(&hash, false).await? else {
            return Err(Error::AuthenticationFailed);
        };
        let (session, user) = (found.session, found.user);
        let at = now();
        if session.expires_at <= at || !end_one(&mut tx, session.id, user.id, reason, "session.logout", at).await? {
            return Err(Error::AuthenticationFailed);
        }
        tx.commit().await?;
        self.lifecycle.dispatch_logout(&user, reason);
        Ok(RevokeResult {
            user_id: user.id,
            username: user.username,
            revoked: 1,
            reason,
        })
    }

    /// Exchanges a refresh token for a new access token and refresh token (rotation: the
    /// session's expiry starts again from now). Presenting a refresh token that was already
    /// rotated away is taken as theft (RFC 6749 §10.4, RFC 6819 §5.2.2.3): the whole session
    /// family is revoked with [`LogoutReason::TokenReused`], audited as
    /// `session.token_reused`, with one spawned logout.
    ///
    /// Errors: [`Error::AuthenticationFailed`] for an unknown, reused, revoked or expired
    /// refresh token and for a disabled or trashed user.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        self.db.retrying(|| self.refresh_once(refresh_token)).await
    }

    /// One attempt of [`Self::refresh`], which runs it again when the database asks.
    async fn refresh_once(&self, refresh_token: &str) -> Result<Tokens> {
        let old = crate::tokens::hash_token(refresh_token);
        let mut tx = self.db.begin().await?;
        let at = now();
        if let Some(found) = tx.session_by_token(&old, true).await? {
            let (session, user) = (found.session, found.user);
            if session.revoked_at.is_some() || session.expires_at <= at || !user.active || user.is_trashed() {
                return Err(Error::AuthenticationFailed);
            }
            let (access_token, access_hash) = crate::tokens::new_token();
            let (refresh_token, refresh_hash) = crate::tokens::new_token();
            let expires_at = crate::domain::after(at, DEFAULT_SESSION_TTL)?;
            if tx
                .rotate_session_tokens(session.id, &old, &access_hash, &refresh_hash, expires_at, at)
                .await?
            {
                tx.commit().await?;
                return Ok(Tokens {
                    session: Session {
                        expires_at,
                        last_seen_at: Some(at),
                        ..session
                    },
                    access_token,
                    refresh_token,
                });
            }
            // A concurrent refresh rotated it first: this presentation is a reuse.
        }
        let Some((user_id, family_id)) = tx.rotated_refresh_owner(&old).await? else {
            return Err(Error::AuthenticationFailed);
        };
        let reason = LogoutReason::TokenReused;
        let revoked = tx.revoke_family(family_id, reason, at).await?;
        tx.publish_authz_invalidation(user_id, reason.as_str(), at).await?;
        audit::record(
            &mut tx,
            "session.token_reused",
            Some(user_id),
            json!({ "family_id": family_id, "count": revoked, "reason": reason }),
        )
        .await?;
        let user = tx.user_by_id(user_id).await?;
        tx.commit().await?;
        tracing::warn!(%user_id, %family_id, revoked, "refresh token reused: session family revoked");
        if let Some(user) = user {
            self.lifecycle.dispatch_logout(&user, reason);
        }
        Err(Error::AuthenticationFailed)
    }

    /// One page of a user's sessions, newest first. The cursor ([`Page::after`]) is the last
    /// session id of the previous page. Errors: [`Error::NotFound`] for an unknown user or
    /// cursor.
    pub async fn list(&self, user: &UserRef, page: &Page) -> Result<Vec<Session>> {
        self.db
            .read(async |tx| {
                let user = tx.require_user(user, false).await?;
                tx.sessions_page(user.id, page).await
            })
            .await
    }

    /// The session id `text` names: a whole id, or a unique prefix of at least 8 characters
    /// (as tables show ids). Errors: [`Error::NotFound`]; [`Error::Invalid`] naming the
    /// candidates when the prefix fits several sessions.
    pub async fn resolve_id(&self, text: &str) -> Result<Uuid> {
        let id = self
            .db
            .read(async |tx| tx.resolve_id("sessions", "session", text, None).await)
            .await?;
        Ok(id)
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
        let at = now();
        if !end_one(&mut tx, session_id, user.id, reason, "session.revoked", at).await? {
            return Err(Error::Conflict(format!("session {session_id} is already revoked")));
        }
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
        let at = now();
        let revoked = tx.revoke_sessions_of(user.id, reason, at).await?;
        tx.publish_authz_invalidation(user.id, reason.as_str(), at).await?;
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
        let at = now();
        let per_user = tx.expire_sessions(at).await?;
        let mut users = Vec::with_capacity(per_user.len());
        for (user_id, _) in &per_user {
            tx.publish_authz_invalidation(*user_id, LogoutReason::SessionExpired.as_str(), at)
                .await?;
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
        // live session. The audit row says how many, zero included.
        audit::record_sessions_revoked(
            tx,
            user.id,
            LogoutReason::AdminRevoked,
            "user.sessions_revoked_on_delete",
            mode,
        )
        .await
        .map(drop)
    }
}

/// Ends one session inside `tx`: revoked with `reason`, an authorization invalidation
/// published, audited as `event`. Returns `false`, with nothing written, when the session was
/// already revoked (the caller decides what that means). The caller commits and fires the
/// logout.
async fn end_one(
    tx: &mut Tx,
    session_id: Uuid,
    user_id: Uuid,
    reason: LogoutReason,
    event: &str,
    at: crate::domain::Timestamp,
) -> Result<bool> {
    if !tx.revoke_session(session_id, reason, at).await? {
        return Ok(false);
    }
    tx.publish_authz_invalidation(user_id, reason.as_str(), at).await?;
    audit::record(
        tx,
        event,
        Some(user_id),
        json!({ "session_id": session_id, "reason": reason }),
    )
    .await?;
    Ok(true)
}
