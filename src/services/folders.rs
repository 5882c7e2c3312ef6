//! Home folders: `My Folder - {username}` for every internal user (the OxiCloud
//! user-lifecycle hook design's HomeFolder hook; external users get none), and the hook
//! that provisions them idempotently on creation and on every login (the safety net that
//! also covers external users converted to internal).

use crate::domain::{DeletionMode, LogoutReason, User, now};
use crate::error::Result;
use crate::lifecycle::UserLifecycleHook;
use crate::store::{Database, Tx};

/// The home folder's name for `username`: `My Folder - {username}`.
pub fn home_folder_name(username: &str) -> String {
    format!("My Folder - {username}")
}

/// Owner of home-folder policy.
#[derive(Clone)]
pub struct FolderService {
    pub(crate) db: Database,
}

impl FolderService {
    pub(crate) fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates the user's home folder unless it exists; returns whether it was created.
    /// External users never get one (returns `false`).
    pub async fn ensure_home_folder(&self, user: &User) -> Result<bool> {
        self.db.retrying(|| self.ensure_home_folder_once(user)).await
    }

    /// One attempt of [`Self::ensure_home_folder`], which runs it again when the database asks.
    async fn ensure_home_folder_once(&self, user: &User) -> Result<bool> {
        if user.is_external {
            return Ok(false);
        }
        let mut tx = self.db.begin().await?;
        let created = tx
            .ensure_home_folder(user.id, &home_folder_name(&user.username), now())
            .await?;
        tx.commit().await?;
        if created {
            tracing::info!(user_id = %user.id, "home folder created");
        }
        Ok(created)
    }
}

/// Provisions the home folder on `on_user_created` and `on_user_login` (idempotent, so the
/// next login repairs a failed creation or a converted external user). Registered second;
/// name `home_folder`.
pub struct HomeFolderLifecycleHook {
    folders: FolderService,
}

impl HomeFolderLifecycleHook {
    pub(crate) fn new(folders: FolderService) -> Self {
        Self { folders }
    }
}

#[async_trait::async_trait]
impl UserLifecycleHook for HomeFolderLifecycleHook {
    fn name(&self) -> &'static str {
        "home_folder"
    }

    async fn on_user_created(&self, user: &User) -> Result<()> {
        if user.is_external {
            return Ok(());
        }
        self.folders.ensure_home_folder(user).await.map(drop)
    }

    async fn on_user_login(&self, user: &User) -> Result<()> {
        if user.is_external {
            return Ok(());
        }
        self.folders.ensure_home_folder(user).await.map(drop)
    }

    async fn on_users_created(&self, users: &[User]) -> Result<()> {
        // External users short-circuit here too; the rest get their folders in one statement.
        let internal: Vec<(uuid::Uuid, String)> = users
            .iter()
            .filter(|u| !u.is_external)
            .map(|u| (u.id, home_folder_name(&u.username)))
            .collect();
        let db = &self.folders.db;
        db.retrying(|| async {
            let mut tx = db.begin().await?;
            tx.ensure_home_folders_batch(&internal, now()).await?;
            tx.commit().await
        })
        .await
    }

    async fn on_user_logout(&self, _user: &User, _reason: LogoutReason) -> Result<()> {
        Ok(())
    }

    async fn on_user_deleted(&self, user: &User, mode: DeletionMode, _tx: &mut Tx) -> Result<()> {
        match mode {
            DeletionMode::AdminDelete => {
                tracing::info!(user_id = %user.id, "home folder kept in the trash with its user")
            }
            DeletionMode::GdprPurge => {
                tracing::info!(user_id = %user.id, "home folder and files go with the user row (ON DELETE CASCADE)")
            }
            DeletionMode::Merged { into } => {
                tracing::info!(user_id = %user.id, %into, "home folder contents were moved by the merge")
            }
        }
        Ok(())
    }
}
