//! The composition root: builds the services over one [`Database`] and registers the
//! lifecycle hooks. An application server builds the same [`App`] and so fires the same
//! hooks as `accountctl`.

use std::sync::Arc;

use crate::lifecycle::{UserLifecycleHook, UserLifecycleService};
use crate::services::accounts::Accounts;
use crate::services::audit::AuditLifecycleHook;
use crate::services::auth::AuthService;
use crate::services::authz::{AuthzCache, AuthzCacheLifecycleHook};
use crate::services::bootstrap::Bootstrap;
use crate::services::external_identity::ExternalIdentityLifecycleHook;
use crate::services::folders::{FolderService, HomeFolderLifecycleHook};
use crate::services::memberships::Memberships;
use crate::services::sessions::{SessionRevocationLifecycleHook, SessionService};
use crate::store::Database;

/// Settings of the services.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long an admin-deleted user stays restorable in the trash (default 30 days).
    pub trash_retention: chrono::Duration,
    /// The accept-link template put in invite notifications for the application's mailer,
    /// e.g. `https://app.example.com/invites/accept?token={token}`. The mailer substitutes
    /// the token; the database never holds it.
    pub invite_link_template: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            trash_retention: chrono::Duration::days(30),
            invite_link_template: "https://app.example.com/invites/accept?token={token}".to_owned(),
        }
    }
}

/// The library, wired: one database, one dispatcher, the services.
#[derive(Clone)]
pub struct App {
    pub db: Database,
    pub config: Config,
    pub lifecycle: Arc<UserLifecycleService>,
    pub authz: Arc<AuthzCache>,
    /// Merge handlers the application added; they run after the shipped ones.
    pub merge_handlers: Vec<Arc<dyn crate::services::merge::MergeHandler>>,
}

impl App {
    /// Wires the services with the shipped hooks.
    pub fn new(db: Database, config: Config) -> Self {
        Self::with_hooks(db, config, Vec::new())
    }

    /// Wires the services with the shipped hooks followed by `extra` (an application's own),
    /// which therefore fire after every shipped hook.
    pub fn with_hooks(db: Database, config: Config, extra: Vec<Arc<dyn UserLifecycleHook>>) -> Self {
        let authz = Arc::new(AuthzCache::default());
        // Registration order is firing order, and it is decided here only:
        // 1. audit first, so even an event a later hook aborts is traced (the durable row
        //    rolls back with it);
        // 2. home folder: later hooks that seed resources *inside* the folder must come after
        //    their producer;
        // 3. authz cache: invalidate once the state changes are queued;
        // 4. session revocation: revokes in the delete transaction before the row changes;
        // 5. external identity;
        // then the application's hooks.
        let mut hooks: Vec<Arc<dyn UserLifecycleHook>> = vec![
            Arc::new(AuditLifecycleHook::new(db.clone())),
            Arc::new(HomeFolderLifecycleHook::new(FolderService::new(db.clone()))),
            Arc::new(AuthzCacheLifecycleHook::new(authz.clone(), db.clone())),
            Arc::new(SessionRevocationLifecycleHook),
            Arc::new(ExternalIdentityLifecycleHook::new(db.clone())),
        ];
        hooks.extend(extra);
        let lifecycle = Arc::new(UserLifecycleService::new(hooks));
        Self {
            db,
            config,
            lifecycle,
            authz,
            merge_handlers: Vec::new(),
        }
    }

    /// Adds an application merge handler, run after the shipped ones (core data, passports,
    /// external identities) in the order added.
    pub fn with_merge_handler(mut self, handler: Arc<dyn crate::services::merge::MergeHandler>) -> Self {
        self.merge_handlers.push(handler);
        self
    }

    /// Account merge with the shipped handlers followed by the application's.
    pub fn merger(&self) -> crate::services::merge::Merger {
        let mut handlers = crate::services::merge::default_handlers();
        handlers.extend(self.merge_handlers.iter().cloned());
        crate::services::merge::Merger::new(self.db.clone(), self.lifecycle.clone(), self.accounts(), handlers)
    }

    pub fn accounts(&self) -> Accounts {
        Accounts::new(self.db.clone(), self.lifecycle.clone(), self.config.trash_retention)
    }

    pub fn sessions(&self) -> SessionService {
        SessionService::new(self.db.clone(), self.lifecycle.clone())
    }

    pub fn auth(&self) -> AuthService {
        AuthService::new(self.db.clone(), self.lifecycle.clone(), self.sessions())
    }

    pub fn bootstrap(&self) -> Bootstrap {
        Bootstrap::new(self.db.clone(), self.accounts())
    }

    pub fn folders(&self) -> FolderService {
        FolderService::new(self.db.clone())
    }

    pub fn workspaces(&self) -> crate::services::workspaces::Workspaces {
        crate::services::workspaces::Workspaces::new(self.db.clone())
    }

    pub fn invites(&self) -> crate::services::invites::Invites {
        crate::services::invites::Invites::new(
            self.db.clone(),
            self.lifecycle.clone(),
            self.accounts(),
            self.config.invite_link_template.clone(),
        )
    }

    pub fn erasure(&self) -> crate::services::erasure::Erasure {
        crate::services::erasure::Erasure::new(
            self.db.clone(),
            self.lifecycle.clone(),
            self.accounts(),
            self.sessions(),
            self.invites(),
        )
    }

    pub fn importer(&self) -> crate::services::import::Importer {
        crate::services::import::Importer::new(self.db.clone(), self.lifecycle.clone())
    }

    pub fn memberships(&self) -> Memberships {
        Memberships::new(self.db.clone())
    }

    /// Resolves a workspace by id or case-insensitive name. Errors: [`crate::Error::NotFound`].
    pub async fn workspace_id(&self, key: &str) -> crate::Result<uuid::Uuid> {
        let mut tx = self.db.begin_read().await?;
        let id = tx.workspace_id(key).await?;
        tx.end().await?;
        Ok(id)
    }
}
