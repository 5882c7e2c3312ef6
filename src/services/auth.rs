//! The sign-in paths the application server calls (and `accountctl auth check` exposes):
//! password sign-in and external (federated) sign-in, each through the dispatcher, following
//! the OxiCloud user-lifecycle hook design's login flow: credentials are verified, the login
//! hooks fire, and only then is `last_login_at` stamped and the session issued.

use std::sync::Arc;

use crate::domain::{Email, User, clean_identity, now};
use crate::error::{Error, Result};
use crate::lifecycle::UserLifecycleService;
use crate::password::{self, Secret};
use crate::services::accounts::{Accounts, NewUser};
use crate::services::sessions::{DEFAULT_SESSION_TTL, SessionService, Tokens};

pub use crate::services::sessions::ClientInfo;
use crate::store::{Database, UserRef};

/// A successful sign-in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoginOutcome {
    /// The user as it was *before* `last_login_at` was stamped.
    pub user: User,
    /// True when this was the user's first login (`last_login_at` was empty).
    pub first_login: bool,
    /// The new session and its tokens (shown once), when one was requested.
    #[serde(skip)]
    pub session: Option<Tokens>,
    /// True when the stored hash was upgraded to the current parameters.
    pub rehashed: bool,
    /// True when an external sign-in provisioned the user just now.
    pub provisioned: bool,
    /// The created and login hooks that failed: the sign-in stands (the hook contract), each
    /// failure is logged and audited (`hook.failed`). Absent from JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hook_failures: Vec<crate::domain::HookFailure>,
}

/// Password and external sign-in.
#[derive(Clone)]
pub struct AuthService {
    db: Database,
    lifecycle: Arc<UserLifecycleService>,
    sessions: SessionService,
    accounts: Accounts,
    /// Recorded on the sessions this service issues ([`Self::with_client`]).
    client: ClientInfo,
}

impl AuthService {
    pub(crate) fn new(
        db: Database,
        lifecycle: Arc<UserLifecycleService>,
        sessions: SessionService,
        accounts: Accounts,
    ) -> Self {
        Self {
            db,
            lifecycle,
            sessions,
            accounts,
            client: ClientInfo::default(),
        }
    }

    /// This service for one client: the sessions its sign-ins issue record the client's IP
    /// address and user agent (shown by `session list`; personal data, erased with the
    /// user). A server calls it per request with what it knows of the peer:
    ///
    /// ```no_run
    /// # async fn sign_in(app: accountctl::App, password: accountctl::password::Secret) -> accountctl::Result<()> {
    /// use accountctl::services::auth::ClientInfo;
    /// let client = ClientInfo {
    ///     ip: Some("203.0.113.7".parse().expect("an address")),
    ///     user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
    /// };
    /// let outcome = app.auth().with_client(client).login("alice", &password, true).await?;
    /// # Ok(()) }
    /// ```
    pub fn with_client(mut self, client: ClientInfo) -> Self {
        self.client = client;
        self
    }

    /// Verifies `password` for the user named by `identifier` (username, email or phone
    /// passport, or id), then fires `on_user_login` *before* stamping `last_login_at` (so
    /// hooks can detect a first login: the OxiCloud user-lifecycle hook design), upgrades a
    /// weak hash to the current argon2id parameters, and, when `issue_session` is set,
    /// issues a session with an access and a refresh token. The transaction that stamps the
    /// login and issues the session locks the user and checks again that it is active, not
    /// in the trash, and still has the password that was verified: a user disabled or given
    /// a new password meanwhile gets no session.
    ///
    /// Unknown, inactive, trashed, external and password-less users take the same time as a
    /// wrong password (a dummy argon2 verification runs) and all fail with the same
    /// [`Error::AuthenticationFailed`]: no user-enumeration oracle.
    ///
    /// The session records the client given to [`Self::with_client`], if any.
    pub async fn login(&self, identifier: &str, password: &Secret, issue_session: bool) -> Result<LoginOutcome> {
        self.db
            .retrying(|| self.login_once(identifier, password, issue_session))
            .await
    }

    /// One attempt of [`Self::login`], which runs it again when the database asks.
    async fn login_once(&self, identifier: &str, password: &Secret, issue_session: bool) -> Result<LoginOutcome> {
        let found = match UserRef::parse(identifier) {
            Ok(user_ref) => {
                let mut tx = self.db.begin_read_tx().await?;
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
        if !verified || !user.active || user.is_trashed() || user.is_external {
            return Err(Error::AuthenticationFailed);
        }
        // Login hooks open transactions of their own, so they run before the issuing
        // transaction (SQLite admits one writer at a time). Their failures never refuse the
        // sign-in.
        let hook_failures = self.lifecycle.dispatch_login(&user).await;
        self.hook_work().record_failures(user.id, &hook_failures).await;
        let new_hash = if password::needs_rehash(&stored) {
            Some(password::hash_async(password.clone()).await?)
        } else {
            None
        };
        let mut tx = self.db.begin().await?;
        let current = tx.require_user(&UserRef::Id(user.id), true).await?;
        if !current.active
            || current.is_trashed()
            || current.is_external
            || tx.password_hash_of(user.id).await?.as_deref() != Some(stored.as_str())
        {
            return Err(Error::AuthenticationFailed);
        }
        let at = now();
        tx.stamp_last_login(user.id, at).await?;
        if let Some(phc) = &new_hash {
            tx.set_password_hash(user.id, Some(phc), at).await?;
        }
        let session = if issue_session {
            Some(
                self.sessions
                    .issue(&mut tx, &user, DEFAULT_SESSION_TTL, &self.client)
                    .await?,
            )
        } else {
            None
        };
        tx.commit().await?;
        Ok(LoginOutcome {
            first_login: user.last_login_at.is_none(),
            user,
            session,
            rehashed: new_hash.is_some(),
            provisioned: false,
            hook_failures,
        })
    }

    /// Signs in the user of an identity provider's account (`provider`, `subject`: OpenID
    /// Connect's issuer and `sub`), after the caller verified the provider's assertion, and
    /// issues a session with an access and a refresh token.
    ///
    /// An unknown identity is provisioned just in time as an external user (never admin, no
    /// home folder), fired as created then login (the OxiCloud user-lifecycle hook design's
    /// just-in-time flow). Its username comes from the `email` claim's local part (else the
    /// subject), made unique; the email becomes its passport unless another user holds it
    /// (an unverified claim never links two accounts). A known identity fires login, where
    /// the `external_identity` hook bumps `last_verified_at`; a user converted to internal
    /// since keeps signing in through its identity.
    ///
    /// Errors: [`Error::Invalid`] for an empty or malformed provider, subject or email;
    /// [`Error::AuthenticationFailed`] for a disabled or trashed user.
    ///
    /// The session records the client given to [`Self::with_client`], if any.
    pub async fn login_external(&self, provider: &str, subject: &str, email: Option<&str>) -> Result<LoginOutcome> {
        self.db
            .retrying(|| self.login_external_once(provider, subject, email))
            .await
    }

    /// One attempt of [`Self::login_external`], which runs it again when the database asks.
    async fn login_external_once(&self, provider: &str, subject: &str, email: Option<&str>) -> Result<LoginOutcome> {
        let (provider, subject) = clean_identity(provider, subject)?;
        let email = email
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(Email::parse)
            .transpose()?;
        let mut provisioned = false;
        let mut hook_failures = Vec::new();
        let user = match self.identity_owner(&provider, &subject).await? {
            Some(user) => user,
            None => match self.provision(&provider, &subject, email.as_ref()).await {
                Ok((user, owed)) => {
                    provisioned = true;
                    hook_failures = self.accounts.announce_created(&user, owed).await;
                    user
                }
                // A concurrent first sign-in of the same identity created it first.
                Err(Error::Conflict(_)) => self
                    .identity_owner(&provider, &subject)
                    .await?
                    .ok_or(Error::AuthenticationFailed)?,
                Err(other) => return Err(other),
            },
        };
        if !user.active || user.is_trashed() {
            return Err(Error::AuthenticationFailed);
        }
        let login_failures = self.lifecycle.dispatch_login(&user).await;
        self.hook_work().record_failures(user.id, &login_failures).await;
        hook_failures.extend(login_failures);
        let mut tx = self.db.begin().await?;
        let current = tx.require_user(&UserRef::Id(user.id), true).await?;
        if !current.active
            || current.is_trashed()
            || tx.user_id_by_external_identity(&provider, &subject).await? != Some(user.id)
        {
            return Err(Error::AuthenticationFailed);
        }
        let at = now();
        if !current.is_external {
            // The hook bumps identities of external users only; a converted user's sign-in
            // through its identity proves it current all the same.
            tx.touch_external_identities(user.id, at).await?;
        }
        tx.stamp_last_login(user.id, at).await?;
        let session = self
            .sessions
            .issue(&mut tx, &user, DEFAULT_SESSION_TTL, &self.client)
            .await?;
        tx.commit().await?;
        Ok(LoginOutcome {
            first_login: user.last_login_at.is_none(),
            user,
            session: Some(session),
            rehashed: false,
            provisioned,
            hook_failures,
        })
    }

    async fn identity_owner(&self, provider: &str, subject: &str) -> Result<Option<User>> {
        self.db
            .read(
                async |tx| match tx.user_id_by_external_identity(provider, subject).await? {
                    Some(id) => tx.user_by_id(id).await,
                    None => Ok(None),
                },
            )
            .await
    }

    /// Creates the external user of a new identity in one transaction.
    async fn provision(&self, provider: &str, subject: &str, email: Option<&Email>) -> Result<(User, uuid::Uuid)> {
        let mut tx = self.db.begin().await?;
        let base = username_base(email.map(|e| e.as_str()).unwrap_or(subject));
        let mut username = base.clone();
        while tx
            .find_user(&UserRef::Username(username.clone()), false)
            .await?
            .is_some()
        {
            // The `x` keeps the suffix from making a name of hex digits (names are never ids).
            username = format!("{base}-x{:06x}", rand::random::<u32>() & 0xff_ffff);
        }
        let email = match email {
            Some(e) if tx.find_user(&UserRef::Email(e.clone()), false).await?.is_none() => Some(e.as_str().to_owned()),
            _ => None,
        };
        let new = NewUser {
            username,
            email,
            external: true,
            identity: Some((provider.to_owned(), subject.to_owned())),
            ..NewUser::default()
        };
        let (user, owed) = self.accounts.create_in_tx(&mut tx, &new, None).await?;
        crate::services::audit::record(
            &mut tx,
            "user.provisioned",
            Some(user.id),
            serde_json::json!({ "provider": provider }),
        )
        .await?;
        tx.commit().await?;
        Ok((user, owed))
    }

    fn hook_work(&self) -> crate::services::hook_work::HookWork {
        crate::services::hook_work::HookWork::new(self.db.clone(), self.lifecycle.clone())
    }
}

/// A username from an email's local part or a subject: the allowed characters (letters,
/// digits, `.`, `_`, `-`), at most 40 of them; `user` when that is no valid username (fewer
/// than two characters, or the shape of a uuid).
fn username_base(text: &str) -> String {
    let local = text.split('@').next().unwrap_or(text);
    let cleaned: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(40)
        .collect::<String>()
        .to_ascii_lowercase();
    if crate::domain::Username::parse(&cleaned).is_err() {
        "user".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::username_base;

    #[test]
    fn usernames_of_provisioned_users_keep_only_allowed_characters() {
        assert_eq!(username_base("Ann.Lee+x@corp.example"), "ann.leex");
        assert_eq!(username_base("é"), "user");
        assert_eq!(username_base(&"x".repeat(99)).len(), 40);
        assert_eq!(username_base("0123456789abcdef0123456789abcdef"), "user");
        assert_eq!(username_base("deadbeef@corp.example"), "user", "an id prefix's shape");
        assert_eq!(username_base("-admin"), "user", "an option's shape");
    }
}
