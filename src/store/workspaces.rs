//! Workspace types, workspaces, roles and memberships (Fireback's workspace model).

use uuid::Uuid;

use super::{Backend, DbId, DbRow, Tx};
use crate::domain::Timestamp;
use crate::error::{Error, Result};

/// The slug of the workspace type the root workspace has.
pub const ROOT_TYPE_SLUG: &str = "root";
/// The name of the root workspace.
pub const ROOT_WORKSPACE_NAME: &str = "root";
/// The name of the root workspace's system role, which carries `root.*`.
pub const ROOT_ROLE_NAME: &str = "root";

/// The key of the PostgreSQL advisory lock that serializes root-workspace creation ("actlroot").
pub(super) const ROOT_WORKSPACE_LOCK: i64 = 0x6163_746c_726f_6f74;

/// The root workspace and its `root` role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootWorkspace {
    pub workspace_id: Uuid,
    pub root_role_id: Uuid,
}

/// The case-insensitive key of a workspace name (column `name_folded`): Unicode lower case
/// computed here rather than by the database, whose `lower()` folds only ASCII on SQLite and
/// follows the locale on PostgreSQL, so both backends agree that `Ärzte` and `ärzte` are
/// the same name.
pub(crate) fn fold_name(name: &str) -> String {
    name.to_lowercase()
}

/// A workspace by id.
const WORKSPACE_BY_ID: &str = "SELECT id FROM workspaces WHERE id = $1";
/// A workspace by case-insensitive name (`$1` folded, `$2` as given). `lower(name)` finds
/// SQLite rows folded (ASCII-only) before `name_folded` existed.
const WORKSPACE_BY_NAME: &str = "SELECT id FROM workspaces WHERE name_folded = $1 OR lower(name) = lower($2) \
     ORDER BY CASE WHEN name_folded = $1 THEN 0 ELSE 1 END LIMIT 1";

impl super::Database {
    /// Resolves a workspace by its full id or case-insensitive name, in one statement on the
    /// pool (no transaction): a server's request path naming a workspace. Callers check
    /// first that `key` cannot be an id prefix (`IdPrefix::parse`), which needs the full
    /// resolution of [`Tx::workspace_id`]. Errors: [`Error::NotFound`].
    pub(crate) async fn workspace_id_exact(&self, key: &str) -> Result<Uuid> {
        let found: Option<DbId> = match Uuid::parse_str(key) {
            Ok(id) => on_pool!(self, |p| sqlx::query_scalar(WORKSPACE_BY_ID)
                .bind(DbId(id))
                .fetch_optional(p)
                .await?),
            Err(_) => on_pool!(self, |p| sqlx::query_scalar(WORKSPACE_BY_NAME)
                .bind(fold_name(key))
                .bind(key)
                .fetch_optional(p)
                .await?),
        };
        found.map(|d| d.0).ok_or_else(|| Error::not_found("workspace", key))
    }
}

impl Tx {
    /// How many root-workspace memberships `user_id` holds, and how many other users hold:
    /// the root workspace keeps a member (a rule the database enforces too).
    pub(crate) async fn root_membership_counts(&mut self, user_id: Uuid) -> Result<(i64, i64)> {
        let row = self
            .fetch_one(
                "SELECT (SELECT COUNT(*) FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
                   WHERE w.is_root AND m.user_id = $1) AS mine, \
                 (SELECT COUNT(*) FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
                   WHERE w.is_root AND m.user_id <> $1) AS others",
                &[user_id.into()],
            )
            .await?;
        Ok((row.get("mine")?, row.get("others")?))
    }

    /// Up to `limit` workspace names (`workspaces`) or distinct role names, by name: the
    /// candidates of a did-you-mean.
    pub(crate) async fn some_names(&mut self, workspaces: bool, limit: i64) -> Result<Vec<String>> {
        let sql = if workspaces {
            "SELECT name FROM workspaces ORDER BY name LIMIT $1"
        } else {
            "SELECT DISTINCT name FROM roles ORDER BY name LIMIT $1"
        };
        let rows = self.fetch_all(sql, &[limit.into()]).await?;
        rows.iter().map(|r| r.get::<String>("name")).collect()
    }
}

impl Tx {
    /// The root workspace, if bootstrap created it.
    pub(crate) async fn root_workspace(&mut self) -> Result<Option<RootWorkspace>> {
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
    pub(crate) async fn ensure_root_workspace(&mut self, at: Timestamp) -> Result<(RootWorkspace, bool)> {
        // Concurrent bootstraps (init containers) queue here, so only the first creates the
        // root workspace and the others find it (SQLite's BEGIN IMMEDIATE already serializes).
        if self.backend() == Backend::Postgres {
            on_conn!(self, |c| sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ROOT_WORKSPACE_LOCK)
                .execute(&mut *c)
                .await?
                .rows_affected());
        }
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
                "INSERT INTO workspaces (id, name, type_id, parent_id, is_root, created_at, name_folded) VALUES ($1, $2, $3, NULL, $4, $5, $6)",
            )
            .bind(DbId(workspace_id))
            .bind(ROOT_WORKSPACE_NAME)
            .bind(type_id)
            .bind(true)
            .bind(at)
            .bind(fold_name(ROOT_WORKSPACE_NAME))
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
    pub(crate) async fn insert_membership(
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
    pub(crate) async fn membership_names_of(&mut self, user_id: Uuid) -> Result<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = on_conn!(self, |c| sqlx::query_as(
            "SELECT w.name, r.name FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
             JOIN roles r ON r.id = m.role_id WHERE m.user_id = $1 ORDER BY lower(w.name), lower(r.name)"
        )
        .bind(DbId(user_id))
        .fetch_all(&mut *c)
        .await?);
        Ok(rows)
    }

    /// Resolves a workspace by case-insensitive name, else by id, else by a unique id prefix
    /// of at least 8 characters (as tables show ids): a name wins over a prefix it looks
    /// like. Errors: [`Error::NotFound`]; [`Error::Invalid`] naming the candidates when a
    /// prefix fits several workspaces.
    pub(crate) async fn workspace_id(&mut self, key: &str) -> Result<Uuid> {
        let Some(prefix) = crate::domain::IdPrefix::parse(key) else {
            return self.workspace_id_exact(key).await;
        };
        match self.workspace_id_exact(key).await {
            Err(Error::NotFound { .. }) => self.resolve_id("workspaces", "workspace", key, None).await,
            Ok(named) => {
                let others: Vec<Uuid> = self
                    .ids_with_prefix("workspaces", &prefix, None)
                    .await?
                    .into_iter()
                    .filter(|id| *id != named)
                    .collect();
                if others.is_empty() {
                    Ok(named)
                } else {
                    Err(crate::domain::name_or_id("workspace", key, named, &others))
                }
            }
            other => other,
        }
    }

    /// Resolves a workspace by id or case-insensitive name. Errors: [`Error::NotFound`].
    async fn workspace_id_exact(&mut self, key: &str) -> Result<Uuid> {
        let found: Option<DbId> = match Uuid::parse_str(key) {
            Ok(id) => on_conn!(self, |c| sqlx::query_scalar(WORKSPACE_BY_ID)
                .bind(DbId(id))
                .fetch_optional(&mut *c)
                .await?),
            Err(_) => on_conn!(self, |c| sqlx::query_scalar(WORKSPACE_BY_NAME)
                .bind(fold_name(key))
                .bind(key)
                .fetch_optional(&mut *c)
                .await?),
        };
        found.map(|d| d.0).ok_or_else(|| Error::not_found("workspace", key))
    }

    /// Resolves a role of a workspace by case-insensitive name, else by its id or a unique
    /// id prefix of at least 8 characters among the workspace's roles. Errors:
    /// [`Error::NotFound`]; [`Error::Invalid`] naming the candidates when a prefix fits
    /// several roles.
    pub(crate) async fn role_id(&mut self, workspace_id: Uuid, name: &str) -> Result<Uuid> {
        if let Some(prefix) = crate::domain::IdPrefix::parse(name)
            && let Ok(named) = self.role_id_by_name(workspace_id, name).await
        {
            let others: Vec<Uuid> = self
                .ids_with_prefix("roles", &prefix, Some(("workspace_id", workspace_id)))
                .await?
                .into_iter()
                .filter(|id| *id != named)
                .collect();
            if !others.is_empty() {
                return Err(crate::domain::name_or_id("role", name, named, &others));
            }
        }
        match self.role_id_by_name(workspace_id, name).await {
            Err(Error::NotFound { .. })
                if Uuid::parse_str(name).is_ok() || crate::domain::IdPrefix::parse(name).is_some() =>
            {
                let id = self
                    .resolve_id("roles", "role", name, Some(("workspace_id", workspace_id)))
                    .await?;
                let found: Option<DbId> = on_conn!(self, |c| sqlx::query_scalar(
                    "SELECT id FROM roles WHERE id = $1 AND workspace_id = $2"
                )
                .bind(DbId(id))
                .bind(DbId(workspace_id))
                .fetch_optional(&mut *c)
                .await?);
                found.map(|d| d.0).ok_or_else(|| Error::not_found("role", name))
            }
            other => other,
        }
    }

    /// Resolves a role of a workspace by case-insensitive name. Errors: [`Error::NotFound`].
    async fn role_id_by_name(&mut self, workspace_id: Uuid, name: &str) -> Result<Uuid> {
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
    pub(crate) async fn delete_membership(&mut self, user_id: Uuid, workspace_id: Uuid, role_id: Uuid) -> Result<bool> {
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

    /// Refuses (this project's rule: the root workspace keeps at least one member, so someone
    /// can always administer it) when `workspace_id` is the root workspace and had members
    /// before a removal but has none after it. Call it inside the removing transaction with
    /// [`Tx::has_members`] taken before; an `Err` rolls it back.
    ///
    /// The root workspace's row is locked (`FOR NO KEY UPDATE` on PostgreSQL, which still
    /// lets others add members; SQLite's write lock) before members are counted, so of two
    /// concurrent removals of the last two members the second counts after the first
    /// committed and is refused.
    pub(crate) async fn refuse_if_root_emptied(&mut self, workspace_id: Uuid, had_members: bool) -> Result<()> {
        if !had_members {
            return Ok(());
        }
        let lock = match self.backend() {
            super::Backend::Postgres => " FOR NO KEY UPDATE",
            super::Backend::Sqlite => "",
        };
        let sql = format!("SELECT id FROM workspaces WHERE is_root{lock}");
        let root: Option<DbId> = on_conn!(self, |c| sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_optional(&mut *c)
            .await?);
        let is_root = root.is_some_and(|r| r.0 == workspace_id);
        if is_root && !self.has_members(workspace_id).await? {
            return Err(Error::Refused(
                "the root workspace must keep at least one member: add another member first".into(),
            ));
        }
        Ok(())
    }

    /// Whether `user_id` is the root workspace's only member (it holds a membership there and
    /// no other user does). Locks the root workspace's row as [`Tx::refuse_if_root_emptied`]
    /// does, so a concurrent removal of the other members is decided before or after this.
    pub(crate) async fn is_only_root_member(&mut self, user_id: Uuid) -> Result<bool> {
        let lock = match self.backend() {
            super::Backend::Postgres => " FOR NO KEY UPDATE",
            super::Backend::Sqlite => "",
        };
        let sql = format!("SELECT id FROM workspaces WHERE is_root{lock}");
        let root: Option<DbId> = on_conn!(self, |c| sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_optional(&mut *c)
            .await?);
        let Some(root) = root else { return Ok(false) };
        let (mine, others): (bool, bool) = on_conn!(self, |c| sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM memberships WHERE workspace_id = $1 AND user_id = $2), \
                    EXISTS (SELECT 1 FROM memberships WHERE workspace_id = $1 AND user_id <> $2)"
        )
        .bind(root)
        .bind(DbId(user_id))
        .fetch_one(&mut *c)
        .await?);
        Ok(mine && !others)
    }

    /// Whether anyone holds a membership in the workspace (one index probe).
    pub(crate) async fn has_members(&mut self, workspace_id: Uuid) -> Result<bool> {
        let found: bool = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM memberships WHERE workspace_id = $1)"
        )
        .bind(DbId(workspace_id))
        .fetch_one(&mut *c)
        .await?);
        Ok(found)
    }
}

/// A workspace type (Fireback's workspace model): what public sign-up creates workspaces of.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkspaceType {
    /// The type's id.
    pub id: Uuid,
    /// Its key: lower-case letters, digits, `_` and `-` (unique).
    pub slug: String,
    /// Its human-readable title.
    pub title: String,
    /// The capabilities template of workspaces of this type.
    pub capabilities: Vec<String>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A workspace with its type and parent, as `workspace list` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Workspace {
    /// The workspace's id.
    pub id: Uuid,
    /// Its name (unique case-insensitively).
    pub name: String,
    /// Its type's slug.
    pub type_slug: String,
    /// The parent workspace's name, for a nested workspace.
    pub parent: Option<String>,
    /// The root workspace (exactly one exists; it can never be deleted).
    pub is_root: bool,
    /// How many distinct users are members.
    pub members: i64,
    /// When it was created.
    pub created_at: Timestamp,
}

/// A role of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Role {
    /// The role's id.
    pub id: Uuid,
    /// Its workspace.
    pub workspace_id: Uuid,
    /// That workspace's name.
    pub workspace: String,
    /// Its name (unique case-insensitively within the workspace).
    pub name: String,
    /// The capabilities it grants (`x.*` a prefix wildcard).
    pub capabilities: Vec<String>,
    /// A role the system created and keeps (the root workspace's `root`): the database
    /// refuses to delete it.
    pub is_system: bool,
    /// How many users hold it.
    pub members: i64,
}

/// A member of a workspace with one of its roles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    /// The member.
    pub user_id: Uuid,
    /// The member's username.
    pub username: String,
    /// The name of the role held.
    pub role: String,
    /// When the membership was created.
    pub since: Timestamp,
}

impl Member {
    /// This row's paging cursor, `USERNAME/ROLE` (neither contains a `/`).
    pub fn cursor(&self) -> String {
        format!("{}/{}", self.username, self.role)
    }
}

fn caps_from_json(text: &str) -> Result<Vec<String>, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

super::from_row!(WorkspaceType, |r| WorkspaceType {
    id: super::get_id!(r, "id"),
    slug: r.try_get("slug")?,
    title: r.try_get("title")?,
    capabilities: caps_from_json(&r.try_get::<String, _>("capabilities")?)?,
    created_at: r.try_get("created_at")?,
});

super::from_row!(Workspace, |r| Workspace {
    id: super::get_id!(r, "id"),
    name: r.try_get("name")?,
    type_slug: r.try_get("type_slug")?,
    parent: r.try_get("parent")?,
    is_root: r.try_get("is_root")?,
    members: r.try_get("members")?,
    created_at: r.try_get("created_at")?,
});

super::from_row!(Role, |r| Role {
    id: super::get_id!(r, "id"),
    workspace_id: super::get_id!(r, "workspace_id"),
    workspace: r.try_get("workspace")?,
    name: r.try_get("name")?,
    capabilities: caps_from_json(&r.try_get::<String, _>("capabilities")?)?,
    is_system: r.try_get("is_system")?,
    members: r.try_get("members")?,
});

super::from_row!(Member, |r| Member {
    user_id: super::get_id!(r, "user_id"),
    username: r.try_get("username")?,
    role: r.try_get("role")?,
    since: r.try_get("created_at")?,
});

pub(super) const WORKSPACE_SELECT: &str = "SELECT w.id, w.name, t.slug AS type_slug, p.name AS parent, w.is_root, w.created_at, \
    (SELECT COUNT(DISTINCT m.user_id) FROM memberships m WHERE m.workspace_id = w.id) AS members \
    FROM workspaces w JOIN workspace_types t ON t.id = w.type_id LEFT JOIN workspaces p ON p.id = w.parent_id";

pub(super) const ROLE_SELECT: &str = "SELECT r.id, r.workspace_id, w.name AS workspace, r.name, r.capabilities, r.is_system, \
    (SELECT COUNT(*) FROM memberships m WHERE m.role_id = r.id) AS members \
    FROM roles r JOIN workspaces w ON w.id = r.workspace_id";

impl Tx {
    /// Inserts a workspace type. Errors: [`Error::Conflict`] for a taken slug.
    pub(crate) async fn insert_workspace_type(
        &mut self,
        slug: &str,
        title: &str,
        capabilities: &[String],
        at: Timestamp,
    ) -> Result<WorkspaceType> {
        let id = Uuid::now_v7();
        let caps = serde_json::to_string(capabilities)?;
        on_conn!(self, |c| sqlx::query(
            "INSERT INTO workspace_types (id, slug, title, capabilities, created_at) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(DbId(id))
        .bind(slug)
        .bind(title)
        .bind(&caps)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(WorkspaceType {
            id,
            slug: slug.to_owned(),
            title: title.to_owned(),
            capabilities: capabilities.to_vec(),
            created_at: at,
        })
    }

    /// One workspace type by slug. Errors: [`Error::NotFound`].
    pub(crate) async fn workspace_type(&mut self, slug: &str) -> Result<WorkspaceType> {
        let row = on_conn!(self, |c| sqlx::query("SELECT * FROM workspace_types WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.decode::<WorkspaceType>())
            .transpose()?);
        row.ok_or_else(|| Error::not_found("workspace type", slug))
    }

    /// Inserts a workspace. Errors: [`Error::Conflict`] for a taken name.
    pub(crate) async fn insert_workspace(
        &mut self,
        name: &str,
        type_id: Uuid,
        parent_id: Option<Uuid>,
        at: Timestamp,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        on_conn!(self, |c| {
            sqlx::query(
            "INSERT INTO workspaces (id, name, type_id, parent_id, is_root, created_at, name_folded) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(DbId(id))
        .bind(name)
        .bind(DbId(type_id))
        .bind(parent_id.map(DbId))
        .bind(false)
        .bind(at)
        .bind(fold_name(name))
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        Ok(id)
    }

    /// Every workspace, by name.
    pub(crate) async fn workspaces(&mut self) -> Result<Vec<Workspace>> {
        let sql = format!("{WORKSPACE_SELECT} ORDER BY w.is_root DESC, lower(w.name)");
        let rows = on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| r.decode::<Workspace>())
            .collect::<Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// One workspace by id. Errors: [`Error::NotFound`].
    pub(crate) async fn workspace(&mut self, id: Uuid) -> Result<Workspace> {
        let sql = format!("{WORKSPACE_SELECT} WHERE w.id = $1");
        let row = on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(DbId(id))
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.decode::<Workspace>())
            .transpose()?);
        row.ok_or_else(|| Error::not_found("workspace", id.to_string()))
    }

    /// The members of a workspace with their roles, by username.
    pub(crate) async fn workspace_members(&mut self, workspace_id: Uuid) -> Result<Vec<Member>> {
        let rows = on_conn!(self, |c| sqlx::query(
            "SELECT m.user_id, u.username, r.name AS role, m.created_at FROM memberships m \
             JOIN users u ON u.id = m.user_id JOIN roles r ON r.id = m.role_id \
             WHERE m.workspace_id = $1 ORDER BY lower(u.username), lower(r.name)"
        )
        .bind(DbId(workspace_id))
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| r.decode::<Member>())
        .collect::<Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// Deletes a workspace (its roles, memberships and invites follow by cascade).
    /// Errors: [`Error::Refused`] for the root workspace; [`Error::Conflict`] while child
    /// workspaces exist.
    pub(crate) async fn delete_workspace(&mut self, id: Uuid) -> Result<()> {
        on_conn!(self, |c| sqlx::query("DELETE FROM workspaces WHERE id = $1")
            .bind(DbId(id))
            .execute(&mut *c)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Inserts a role. Errors: [`Error::Conflict`] for a taken name in the workspace.
    pub(crate) async fn insert_role(
        &mut self,
        workspace_id: Uuid,
        name: &str,
        capabilities: &[String],
        at: Timestamp,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        let caps = serde_json::to_string(capabilities)?;
        on_conn!(self, |c| {
            sqlx::query(
            "INSERT INTO roles (id, workspace_id, name, capabilities, is_system, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(DbId(id))
        .bind(DbId(workspace_id))
        .bind(name)
        .bind(&caps)
        .bind(false)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        Ok(id)
    }

    /// Roles, of one workspace or of all, by workspace then name.
    pub(crate) async fn roles(&mut self, workspace_id: Option<Uuid>) -> Result<Vec<Role>> {
        let sql =
            format!("{ROLE_SELECT} WHERE ($1 IS NULL OR r.workspace_id = $1) ORDER BY lower(w.name), lower(r.name)");
        let rows = on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(workspace_id.map(DbId))
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| r.decode::<Role>())
            .collect::<Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// One role by id. Errors: [`Error::NotFound`].
    pub(crate) async fn role(&mut self, id: Uuid) -> Result<Role> {
        let sql = format!("{ROLE_SELECT} WHERE r.id = $1");
        let row = on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(DbId(id))
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.decode::<Role>())
            .transpose()?);
        row.ok_or_else(|| Error::not_found("role", id.to_string()))
    }

    /// Deletes a role (its memberships and invites follow by cascade). Errors:
    /// [`Error::Refused`] for the root role.
    pub(crate) async fn delete_role(&mut self, id: Uuid) -> Result<()> {
        on_conn!(self, |c| sqlx::query("DELETE FROM roles WHERE id = $1")
            .bind(DbId(id))
            .execute(&mut *c)
            .await?
            .rows_affected());
        Ok(())
    }
}
