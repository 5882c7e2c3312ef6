//! Workspace types, workspaces, roles and memberships (000 seed).

use uuid::Uuid;

use super::{DbId, Tx};
use crate::domain::Timestamp;
use crate::error::{Error, Result};

/// The slug of the workspace type the root workspace has.
pub const ROOT_TYPE_SLUG: &str = "root";
/// The name of the root workspace.
pub const ROOT_WORKSPACE_NAME: &str = "root";
/// The name of the root workspace's system role, which carries `root.*` (000 seed).
pub const ROOT_ROLE_NAME: &str = "root";

/// The root workspace and its `root` role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootWorkspace {
    pub workspace_id: Uuid,
    pub root_role_id: Uuid,
}

impl Tx {
    /// The root workspace, if bootstrap created it.
    pub async fn root_workspace(&mut self) -> Result<Option<RootWorkspace>> {
        let row: Option<(DbId, DbId)> = on_conn!(self, |c| sqlx::query_as(
            "SELECT w.id, r.id FROM workspaces w JOIN roles r ON r.workspace_id = w.id AND r.is_system \
             WHERE w.is_root"
        )
        .fetch_optional(&mut *c)
        .await?);
        Ok(row.map(|(w, r)| RootWorkspace {
            workspace_id: w.0,
            root_role_id: r.0,
        }))
    }

    /// Creates the root workspace type, the root workspace and its `root` role (`root.*`)
    /// unless they exist. Returns them and whether anything was created.
    pub async fn ensure_root_workspace(&mut self, at: Timestamp) -> Result<(RootWorkspace, bool)> {
        if let Some(root) = self.root_workspace().await? {
            return Ok((root, false));
        }
        let type_id = Uuid::now_v7();
        let workspace_id = Uuid::now_v7();
        let root_role_id = Uuid::now_v7();
        let caps = r#"["root.*"]"#;
        on_conn!(self, |c| {
            sqlx::query(
                "INSERT INTO workspace_types (id, slug, title, capabilities, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (slug) DO NOTHING",
            )
            .bind(DbId(type_id))
            .bind(ROOT_TYPE_SLUG)
            .bind("Root")
            .bind(caps)
            .bind(at)
            .execute(&mut *c)
            .await?;
            let type_id: DbId = sqlx::query_scalar("SELECT id FROM workspace_types WHERE slug = $1")
                .bind(ROOT_TYPE_SLUG)
                .fetch_one(&mut *c)
                .await?;
            sqlx::query(
                "INSERT INTO workspaces (id, name, type_id, parent_id, is_root, created_at) VALUES ($1, $2, $3, NULL, $4, $5)",
            )
            .bind(DbId(workspace_id))
            .bind(ROOT_WORKSPACE_NAME)
            .bind(type_id)
            .bind(true)
            .bind(at)
            .execute(&mut *c)
            .await?;
            sqlx::query(
                "INSERT INTO roles (id, workspace_id, name, capabilities, is_system, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(DbId(root_role_id))
            .bind(DbId(workspace_id))
            .bind(ROOT_ROLE_NAME)
            .bind(caps)
            .bind(true)
            .bind(at)
            .execute(&mut *c)
            .await?;
        });
        Ok((
            RootWorkspace {
                workspace_id,
                root_role_id,
            },
            true,
        ))
    }

    /// Adds a membership unless the user already holds that role there; returns whether it
    /// was added. Errors: [`Error::Conflict`] when the role is not in the workspace.
    pub async fn insert_membership(
        &mut self,
        user_id: Uuid,
        workspace_id: Uuid,
        role_id: Uuid,
        at: Timestamp,
    ) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "INSERT INTO memberships (user_id, workspace_id, role_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, workspace_id, role_id) DO NOTHING"
        )
        .bind(DbId(user_id))
        .bind(DbId(workspace_id))
        .bind(DbId(role_id))
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// The (workspace name, role name) pairs of a user, ordered by workspace.
    pub async fn membership_names_of(&mut self, user_id: Uuid) -> Result<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = on_conn!(self, |c| sqlx::query_as(
            "SELECT w.name, r.name FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             JOIN roles r ON r.id = m.role_id WHERE m.user_id = $1 ORDER BY lower(w.name), lower(r.name)"
        )
        .bind(DbId(user_id))
        .fetch_all(&mut *c)
        .await?);
        Ok(rows)
    }

    /// Resolves a workspace by id or case-insensitive name. Errors: [`Error::NotFound`].
    pub async fn workspace_id(&mut self, key: &str) -> Result<Uuid> {
        let found: Option<DbId> = match Uuid::parse_str(key) {
            Ok(id) => on_conn!(self, |c| sqlx::query_scalar("SELECT id FROM workspaces WHERE id = $1")
                .bind(DbId(id))
                .fetch_optional(&mut *c)
                .await?),
            Err(_) => on_conn!(self, |c| sqlx::query_scalar(
                "SELECT id FROM workspaces WHERE lower(name) = lower($1)"
            )
            .bind(key)
            .fetch_optional(&mut *c)
            .await?),
        };
        found.map(|d| d.0).ok_or_else(|| Error::not_found("workspace", key))
    }

    /// Resolves a role of a workspace by case-insensitive name. Errors: [`Error::NotFound`].
    pub async fn role_id(&mut self, workspace_id: Uuid, name: &str) -> Result<Uuid> {
        let found: Option<DbId> = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT id FROM roles WHERE workspace_id = $1 AND lower(name) = lower($2)"
        )
        .bind(DbId(workspace_id))
        .bind(name)
        .fetch_optional(&mut *c)
        .await?);
        found.map(|d| d.0).ok_or_else(|| Error::not_found("role", name))
    }
}

impl Tx {
    /// Removes one membership; returns whether it existed.
    pub async fn delete_membership(&mut self, user_id: Uuid, workspace_id: Uuid, role_id: Uuid) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "DELETE FROM memberships WHERE user_id = $1 AND workspace_id = $2 AND role_id = $3"
        )
        .bind(DbId(user_id))
        .bind(DbId(workspace_id))
        .bind(DbId(role_id))
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// How many distinct users hold a membership in the workspace.
    pub async fn member_count(&mut self, workspace_id: Uuid) -> Result<i64> {
        let n = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT COUNT(DISTINCT user_id) FROM memberships WHERE workspace_id = $1"
        )
        .bind(DbId(workspace_id))
        .fetch_one(&mut *c)
        .await?);
        Ok(n)
    }
}
