//! The login path the application server calls (and `accountctl auth check` exposes).

use std::sync::Arc;

use crate::domain::{Session, User, now};
use crate::error::{Error, Result};
use crate::lifecycle::UserLifecycleService;
use crate::password::{self, Secret};
use crate::services::sessions::{DEFAULT_SESSION_TTL, SessionService};
use crate::store::{Database, UserRef};

/// A successful login.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoginOutcome {
    /// The user as it was *before* `last_login_at` was stamped.
    pub user: User,
    /// True when this was the user's first login (`last_login_at` was empty).
    pub first_login: bool,
    /// The new session and its token (shown once), when one was requested.
    #[serde(skip)]
    pub session: Option<(Session, String)>,
    /// True when the stored hash was upgraded to the current parameters.
    pub rehashed: bool,
}

/// Password login.
#[derive(Clone)]
pub struct AuthService {
    db: Database,
    lifecycle: Arc<UserLifecycleService>,
    sessions: SessionService,
}

impl AuthService {
    pub(crate) fn new(db: Database, lifecycle: Arc<UserLifecycleService>, sessions: SessionService) -> Self {
        Self {
            db,
            lifecycle,
            sessions,
        }
    }

    /// Verifies `password` for the user named by `identifier` (username, email or phone
    /// passport, or id), then fires `on_user_login` *before* stamping `last_login_at` (so
    /// hooks can detect a first login: the OxiCloud user-lifecycle hook design), upgrades a
    /// weak hash to the current argon2id parameters, and creates a session when
    /// `issue_session` is set.
    ///
    /// Unknown, inactive, trashed and password-less users take the same time as a wrong
    /// password (a dummy argon2 verification runs) and all fail with the same
    /// [`Error::AuthenticationFailed`]: no user-enumeration oracle.
    pub async fn login(&self, identifier: &str, password: &Secret, issue_session: bool) -> Result<LoginOutcome> {
        self.db
            .retrying(|| self.login_once(identifier, password, issue_session))
            .await
    }

    /// One attempt of [`Self::login`], which runs it again when the database asks.
    async fn login_once(&self, identifier: &str, password: &Secret, issue_session: bool) -> Result<LoginOutcome> {
        let found = match UserRef::parse(identifier) {
            Ok(user_ref) => {
                let mut tx = self.db.begin_read().await?;
                let found = match tx.find_user(&user_ref, false).await? {
                    Some(user) => {
                        let hash = tx.password_hash_of(user.id).await?;
                        Some((user, hash))
                    }
                    None => None,
                };
                tx.end().await?;
                found
            }
            Err(_) => None,
        };
        let hash = found.as_ref().and_then(|(_, h)| h.clone());
        let verified = password::verify_async(hash.clone(), password.clone()).await?;
        let Some((user, Some(stored))) = found else {
            return Err(Error::AuthenticationFailed);
        };
        if !verified || !user.active || user.is_trashed() {
            return Err(Error::AuthenticationFailed);
        }
        self.lifecycle.dispatch_login(&user).await?;
        let new_hash = if password::needs_rehash(&stored) {
            Some(password::hash_async(password.clone()).await?)
        } else {
            None
        };
        let mut tx = self.db.begin().await?;
        let at = now();
        tx.stamp_last_login(user.id, at).await?;
        if let Some(phc) = &new_hash {
            tx.set_password_hash(user.id, Some(phc), at).await?;
        }
        let session = if issue_session {
            Some(self.sessions.create(&mut tx, &user, DEFAULT_SESSION_TTL).await?)
        } else {
            None
        };
        tx.commit().await?;
        Ok(LoginOutcome {
            first_login: user.last_login_at.is_none(),
            user,
            session,
            rehashed: new_hash.is_some(),
        })
    }
}
