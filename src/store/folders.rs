//! Home folders (`My Folder - {username}`, internal users only, one per user).

use uuid::Uuid;

use super::{DbId, Tx};
use crate::domain::Timestamp;
use crate::error::Result;

impl Tx {
    /// Creates the user's home folder unless one exists; returns whether it was created.
    /// Idempotent by the partial unique index `folders_one_home_per_user`.
    pub(crate) async fn ensure_home_folder(&mut self, user_id: Uuid, name: &str, at: Timestamp) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "INSERT INTO folders (id, user_id, name, is_home, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) WHERE is_home DO NOTHING"
        )
        .bind(DbId(Uuid::now_v7()))
        .bind(DbId(user_id))
        .bind(name)
        .bind(true)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// The name of the user's home folder, if it has one.
    pub(crate) async fn home_folder_name(&mut self, user_id: Uuid) -> Result<Option<String>> {
        let name = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT name FROM folders WHERE user_id = $1 AND is_home"
        )
        .bind(DbId(user_id))
        .fetch_optional(&mut *c)
        .await?);
        Ok(name)
    }
}

impl Tx {
    /// Removes the user's home folder if it holds no files and no subfolders (used when a
    /// user becomes external, who has no home folder). Returns whether it was removed.
    pub(crate) async fn remove_empty_home_folder(&mut self, user_id: Uuid) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "DELETE FROM folders WHERE user_id = $1 AND is_home \
             AND NOT EXISTS (SELECT 1 FROM files f WHERE f.folder_id = folders.id) \
             AND NOT EXISTS (SELECT 1 FROM folders s WHERE s.parent_id = folders.id)"
        )
        .bind(DbId(user_id))
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n == 1)
    }
}
