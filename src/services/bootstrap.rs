//! Idempotent first start: migrations, the root workspace with its `root` role (Fireback's
//! workspace model: every project has a root workspace, but not a root user), and optionally
//! the first admin.

use serde::Serialize;

use crate::app::App;
use crate::domain::{AdminOutcome, now};
use crate::error::Result;
use crate::services::accounts::{Accounts, NewUser};
use crate::services::audit;
use crate::store::workspaces::{ROOT_ROLE_NAME, ROOT_WORKSPACE_NAME};
use crate::store::{Database, MigrateReport};

/// What [`Bootstrap::run`] did. Running it again reports nothing created.
#[derive(Debug, Clone, Serialize)]
pub struct BootstrapReport {
    /// accountctl's migration versions applied by this run.
    pub migrations_applied: Vec<i64>,
    /// The application's migration versions applied by this run.
    pub app_migrations_applied: Vec<i64>,
    /// Hooks recorded in the hook registry for the first time (`lifecycle:NAME`, `merge:NAME`).
    pub hooks_recorded: Vec<String>,
    /// Whether this run created the root workspace (and its `root` role).
    pub root_workspace_created: bool,
    /// What happened about the first admin.
    pub admin: AdminOutcome,
    /// The admin created by this run, if any.
    pub admin_id: Option<uuid::Uuid>,
}

impl BootstrapReport {
    /// The report of the migration and root-workspace steps, before the admin step.
    pub(crate) fn new(migrations: MigrateReport, root_workspace_created: bool) -> Self {
        Self {
            migrations_applied: migrations.applied,
            app_migrations_applied: migrations.app_applied,
            hooks_recorded: migrations.hooks_recorded,
            root_workspace_created,
            admin: AdminOutcome::NotRequested,
            admin_id: None,
        }
    }

    /// Whether the run changed nothing at all.
    pub fn changed_nothing(&self) -> bool {
        !self.root_workspace_created
            && self.admin != AdminOutcome::Created
            && self.migrations_applied.is_empty()
            && self.app_migrations_applied.is_empty()
            && self.hooks_recorded.is_empty()
    }
}

/// The bootstrap sequence: three independent, idempotent steps.
pub struct Bootstrap {
    app: App,
    db: Database,
    accounts: Accounts,
}

impl Bootstrap {
    pub(crate) fn new(app: App) -> Self {
        Self {
            db: app.db.clone(),
            accounts: app.accounts(),
            app,
        }
    }

    /// Migrates (accountctl's and the application's migrations, recording the hook set) and
    /// ensures the root workspace. Returns what the migration did and whether the root
    /// workspace was created.
    pub async fn ensure_root(&self) -> Result<(MigrateReport, bool)> {
        self.db.retrying(|| self.ensure_root_once()).await
    }

    /// One attempt of [`Self::ensure_root`], which runs it again when the database asks.
    async fn ensure_root_once(&self) -> Result<(MigrateReport, bool)> {
        let applied = self.app.migrate().await?;
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
        let admins = self.db.read(async |tx| tx.active_admin_ids().await).await?;
        Ok(!admins.is_empty())
    }

    /// Creates `admin` as an instance admin and member of the root workspace with the `root`
    /// role, unless an active admin exists (then returns `None`): bootstrap never creates a
    /// second first admin nor resets a password. Fires `on_user_created` after commit.
    pub async fn create_first_admin(&self, admin: NewUser) -> Result<Option<uuid::Uuid>> {
        // Hashed once, not on every attempt.
        let password_hash = Accounts::hash_new_password(admin.password.as_ref()).await?;
        self.db
            .retrying(|| self.create_first_admin_once(admin.clone(), password_hash.clone()))
            .await
    }

    /// One attempt of [`Self::create_first_admin`], which runs it again when the database asks.
    async fn create_first_admin_once(
        &self,
        mut admin: NewUser,
        password_hash: Option<String>,
    ) -> Result<Option<uuid::Uuid>> {
        admin.admin = true;
        admin.external = false;
        admin.membership = Some((ROOT_WORKSPACE_NAME.to_owned(), ROOT_ROLE_NAME.to_owned()));
        let mut tx = self.db.begin().await?;
        // Checked under the instance-admins lock (an advisory lock on PostgreSQL, where
        // there is no admin row yet to lock; the write lock on SQLite), so concurrent
        // bootstraps create one admin.
        tx.lock_instance_admins().await?;
        if !tx.active_admin_ids().await?.is_empty() {
            return Ok(None);
        }
        let (user, owed) = self.accounts.create_in_tx(&mut tx, &admin, password_hash).await?;
        tx.commit().await?;
        // The hooks' failures are logged and audited; the admin stands (the hook contract).
        self.accounts.announce_created(&user, owed).await;
        Ok(Some(user.id))
    }

    /// The whole sequence: [`Bootstrap::ensure_root`], then
    /// [`Bootstrap::create_first_admin`] when `first_admin` is given.
    pub async fn run(&self, first_admin: Option<NewUser>) -> Result<BootstrapReport> {
        let (migrations, root_workspace_created) = self.ensure_root().await?;
        let mut report = BootstrapReport::new(migrations, root_workspace_created);
        let (admin, admin_id) = match first_admin {
            None => (AdminOutcome::NotRequested, None),
            Some(new) => match self.create_first_admin(new).await? {
                Some(id) => (AdminOutcome::Created, Some(id)),
                None => (AdminOutcome::Exists, None),
            },
        };
        report.admin = admin;
        report.admin_id = admin_id;
        Ok(report)
    }
}
