//! Idempotent first start: migrations, the root workspace with its `root` role (000 seed:
//! every project has a root workspace, but not a root user), and optionally the first admin.

use serde::Serialize;

use crate::domain::now;
use crate::error::Result;
use crate::services::accounts::{Accounts, NewUser};
use crate::services::audit;
use crate::store::Database;
use crate::store::workspaces::{ROOT_ROLE_NAME, ROOT_WORKSPACE_NAME};

/// What [`Bootstrap::run`] did. Running it again reports nothing created.
#[derive(Debug, Clone, Serialize)]
pub struct BootstrapReport {
    /// Migration versions applied by this run.
    pub migrations_applied: Vec<i64>,
    pub root_workspace_created: bool,
    /// `created`, `exists` (an active admin already exists: nothing done), or `not_requested`.
    pub admin: &'static str,
    /// The admin created by this run, if any.
    pub admin_id: Option<uuid::Uuid>,
}

/// The bootstrap sequence: three independent, idempotent steps.
pub struct Bootstrap {
    db: Database,
    accounts: Accounts,
}

impl Bootstrap {
    pub fn new(db: Database, accounts: Accounts) -> Self {
        Self { db, accounts }
    }

    /// Migrates and ensures the root workspace. Returns the applied migrations and whether
    /// the root workspace was created.
    pub async fn ensure_root(&self) -> Result<(Vec<i64>, bool)> {
        self.db.retrying(|| self.ensure_root_once()).await
    }

    /// One attempt of [`Self::ensure_root`], which runs it again when the database asks.
    async fn ensure_root_once(&self) -> Result<(Vec<i64>, bool)> {
        let applied = self.db.migrate().await?;
        let mut tx = self.db.begin().await?;
        let (_, created) = tx.ensure_root_workspace(now()).await?;
        if created {
            audit::record(&mut tx, "bootstrap.root_workspace_created", None, serde_json::json!({})).await?;
        }
        tx.commit().await?;
        Ok((applied, created))
    }

    /// Whether an active admin exists (then no first admin will be created).
    pub async fn has_admin(&self) -> Result<bool> {
        let mut tx = self.db.begin_read().await?;
        let admins = tx.active_admin_ids().await?;
        tx.end().await?;
        Ok(!admins.is_empty())
    }

    /// Creates `admin` as an instance admin and member of the root workspace with the `root`
    /// role, unless an active admin exists (then returns `None`): bootstrap never creates a
    /// second first admin nor resets a password. Fires `on_user_created` after commit.
    pub async fn create_first_admin(&self, admin: NewUser) -> Result<Option<uuid::Uuid>> {
        self.db.retrying(|| self.create_first_admin_once(admin.clone())).await
    }

    /// One attempt of [`Self::create_first_admin`], which runs it again when the database asks.
    async fn create_first_admin_once(&self, mut admin: NewUser) -> Result<Option<uuid::Uuid>> {
        admin.admin = true;
        admin.external = false;
        admin.membership = Some((ROOT_WORKSPACE_NAME.to_owned(), ROOT_ROLE_NAME.to_owned()));
        let mut tx = self.db.begin().await?;
        // Checked inside the write transaction (admin rows locked on PostgreSQL, the write
        // lock on SQLite), so two concurrent bootstraps create one admin.
        if !tx.active_admin_ids().await?.is_empty() {
            return Ok(None);
        }
        let user = self.accounts.create_in_tx(&mut tx, &admin).await?;
        tx.commit().await?;
        self.accounts.announce_created(&user).await?;
        Ok(Some(user.id))
    }

    /// The whole sequence: [`Bootstrap::ensure_root`], then
    /// [`Bootstrap::create_first_admin`] when `first_admin` is given.
    pub async fn run(&self, first_admin: Option<NewUser>) -> Result<BootstrapReport> {
        let (migrations_applied, root_workspace_created) = self.ensure_root().await?;
        let (admin, admin_id) = match first_admin {
            None => ("not_requested", None),
            Some(new) => match self.create_first_admin(new).await? {
                Some(id) => ("created", Some(id)),
                None => ("exists", None),
            },
        };
        Ok(BootstrapReport {
            migrations_applied,
            root_workspace_created,
            admin,
            admin_id,
        })
    }
}
