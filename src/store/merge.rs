//! Set-based statements that move one user's rows to another (the account merge). Each is
//! one statement per table, whatever the row count.

use uuid::Uuid;

use super::{Backend, DbId, Tx};
use crate::domain::Timestamp;
use crate::error::Result;

impl Tx {
    /// Locks both users in id order (PostgreSQL `FOR UPDATE`), so two merges, or a merge and
    /// a delete, touching the same users serialize instead of deadlocking or interleaving.
    pub(crate) async fn lock_users(&mut self, a: Uuid, b: Uuid) -> Result<()> {
        if self.backend() == Backend::Postgres {
            on_conn!(self, |c| sqlx::query(
                "SELECT id FROM users WHERE id = $1 OR id = $2 ORDER BY id FOR UPDATE"
            )
            .bind(DbId(a))
            .bind(DbId(b))
            .fetch_all(&mut *c)
            .await?
            .len());
        }
        Ok(())
    }

    /// A single `COUNT(*)` with one or two uuid parameters (`$1`, `$2`), for merge plans.
    pub(crate) async fn count_for(&mut self, sql: &str, a: Uuid, b: Option<Uuid>) -> Result<i64> {
        let n: i64 = match b {
            Some(b) => on_conn!(self, |c| sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(DbId(a))
                .bind(DbId(b))
                .fetch_one(&mut *c)
                .await?),
            None => on_conn!(self, |c| sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(DbId(a))
                .fetch_one(&mut *c)
                .await?),
        };
        Ok(n)
    }

    /// Runs one statement binding `$1` = from, `$2` = into (and `$3` = `at` when `with_time`);
    /// returns the rows affected. The building block of merge handlers, application ones
    /// included (`UPDATE my_table SET user_id = $2 WHERE user_id = $1`).
    pub(crate) async fn move_rows(&mut self, sql: &str, from: Uuid, into: Uuid, at: Option<Timestamp>) -> Result<u64> {
        let n = match at {
            Some(at) => on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(DbId(from))
                .bind(DbId(into))
                .bind(at)
                .execute(&mut *c)
                .await?
                .rows_affected()),
            None => on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(DbId(from))
                .bind(DbId(into))
                .execute(&mut *c)
                .await?
                .rows_affected()),
        };
        Ok(n)
    }

    /// The id of the user's home folder, if it has one.
    pub(crate) async fn home_folder_id(&mut self, user_id: Uuid) -> Result<Option<Uuid>> {
        let id: Option<DbId> = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT id FROM folders WHERE user_id = $1 AND is_home"
        )
        .bind(DbId(user_id))
        .fetch_optional(&mut *c)
        .await?);
        Ok(id.map(|d| d.0))
    }

    /// Creates a (non-home) folder; returns its id.
    pub(crate) async fn insert_folder(
        &mut self,
        user_id: Uuid,
        parent_id: Uuid,
        name: &str,
        at: Timestamp,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        on_conn!(self, |c| sqlx::query(
            "INSERT INTO folders (id, user_id, parent_id, name, is_home, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(DbId(id))
        .bind(DbId(user_id))
        .bind(DbId(parent_id))
        .bind(name)
        .bind(false)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(id)
    }

    /// Moves B's folder tree and files into `target` (a folder of A): top-level children of
    /// B's home folder are re-parented under `target`, every folder and file of B changes
    /// owner. Returns (folders moved, files moved).
    pub(crate) async fn move_folder_contents(
        &mut self,
        from: Uuid,
        into: Uuid,
        from_home: Uuid,
        target: Uuid,
    ) -> Result<(u64, u64)> {
        let (folders, files) = on_conn!(self, |c| {
            let folders = sqlx::query(
                "UPDATE folders SET user_id = $2, parent_id = CASE WHEN parent_id = $3 THEN $4 ELSE parent_id END \
                 WHERE user_id = $1 AND NOT is_home",
            )
            .bind(DbId(from))
            .bind(DbId(into))
            .bind(DbId(from_home))
            .bind(DbId(target))
            .execute(&mut *c)
            .await?
            .rows_affected();
            let files = sqlx::query(
                "UPDATE files SET user_id = $2, folder_id = CASE WHEN folder_id = $3 THEN $4 ELSE folder_id END WHERE user_id = $1",
            )
            .bind(DbId(from))
            .bind(DbId(into))
            .bind(DbId(from_home))
            .bind(DbId(target))
            .execute(&mut *c)
            .await?
            .rows_affected();
            (folders, files)
        });
        Ok((folders, files))
    }
}
