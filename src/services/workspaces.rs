//! Workspace types, workspaces and their roles (Fireback's workspace model: typed, nested
//! workspaces, each with named roles carrying capability lists). The root workspace and its
//! `root` role are created by bootstrap and can never be deleted (the database refuses too).

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::domain::{Capability, Page, now, validate_role_name, validate_slug, validate_workspace_name};
use crate::error::{Error, Result};
use crate::services::audit;
use crate::store::Database;
use crate::store::workspaces::{Member, Role, Workspace, WorkspaceType};

/// `workspace show`: the workspace with its roles and members.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceDetails {
    /// The workspace (its fields are flattened into the JSON object).
    #[serde(flatten)]
    pub workspace: Workspace,
    /// The workspace's roles.
    pub roles: Vec<RoleSummary>,
    /// The members with their roles, by username.
    pub member_list: Vec<Member>,
}

/// A role as `workspace show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleSummary {
    /// The role's name.
    pub name: String,
    /// What the role allows (`workspace.invite`, `files.*`…).
    pub capabilities: Vec<String>,
    /// How many members hold it.
    pub members: i64,
}

/// What deleting a workspace took with it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceDeleted {
    /// The deleted workspace's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// How many of its roles were deleted with it.
    pub roles_deleted: usize,
    /// How many memberships (users holding those roles) were deleted with it.
    pub memberships_deleted: usize,
}

/// Workspace and role administration.
#[derive(Clone)]
pub struct Workspaces {
    db: Database,
}

fn capability_strings(caps: &[Capability]) -> Vec<String> {
    caps.iter().map(|c| c.as_str().to_owned()).collect()
}

impl Workspaces {
    pub(crate) fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates a workspace type. Errors: [`Error::Invalid`] for a bad slug or title;
    /// [`Error::Conflict`] for a taken slug.
    ///
    /// With `if_not_exists`, an identical type (same title and capabilities) is returned as
    /// is; a different one with the slug is a conflict.
    pub async fn create_type(
        &self,
        slug: &str,
        title: &str,
        capabilities: &[Capability],
        if_not_exists: bool,
    ) -> Result<WorkspaceType> {
        self.db
            .retrying(|| self.create_type_once(slug, title, capabilities, if_not_exists))
            .await
    }

    /// One attempt of [`Self::create_type`], which runs it again when the database asks.
    async fn create_type_once(
        &self,
        slug: &str,
        title: &str,
        capabilities: &[Capability],
        if_not_exists: bool,
    ) -> Result<WorkspaceType> {
        validate_slug(slug)?;
        let title = crate::domain::clean_text("title", title, 200)?
            .ok_or_else(|| Error::Invalid("the title must be 1 to 200 characters".into()))?;
        let title = title.as_str();
        let mut tx = self.db.begin().await?;
        if if_not_exists && let Ok(existing) = tx.workspace_type(slug).await {
            if existing.title == title && existing.capabilities == capability_strings(capabilities) {
                return Ok(existing);
            }
            return Err(Error::Conflict(format!(
                "a different workspace type {slug} exists (title or capabilities differ)"
            )));
        }
        let created = tx
            .insert_workspace_type(slug, title, &capability_strings(capabilities), now())
            .await?;
        audit::record(
            &mut tx,
            "workspace_type.created",
            None,
            json!({ "workspace_type_id": created.id, "slug": slug }),
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    /// One page of workspace types, by slug; the cursor ([`Page::after`]) is the last slug
    /// of the previous page.
    pub async fn types(&self, page: &Page) -> Result<Vec<WorkspaceType>> {
        let types = self.db.read(async |tx| tx.workspace_types_page(page).await).await?;
        Ok(types)
    }

    /// Creates a workspace of type `type_slug` under `parent` (default: none). Errors:
    /// [`Error::NotFound`] for an unknown type or parent; [`Error::Conflict`] for a taken name.
    ///
    /// With `if_not_exists`, an identical workspace (same type and parent) is returned as is;
    /// a different one with the name is a conflict.
    pub async fn create(
        &self,
        name: &str,
        type_slug: &str,
        parent: Option<&str>,
        if_not_exists: bool,
    ) -> Result<Workspace> {
        self.db
            .retrying(|| self.create_once(name, type_slug, parent, if_not_exists))
            .await
    }

    /// One attempt of [`Self::create`], which runs it again when the database asks.
    async fn create_once(
        &self,
        name: &str,
        type_slug: &str,
        parent: Option<&str>,
        if_not_exists: bool,
    ) -> Result<Workspace> {
        validate_workspace_name(name)?;
        let mut tx = self.db.begin().await?;
        let kind = tx.workspace_type(type_slug).await?;
        let parent_id = match parent {
            Some(p) => Some(tx.workspace_id(p).await?),
            None => None,
        };
        if if_not_exists && let Ok(id) = tx.workspace_id(name).await {
            let existing = tx.workspace(id).await?;
            let parent_name = match parent_id {
                Some(p) => Some(tx.workspace(p).await?.name),
                None => None,
            };
            if existing.type_slug == type_slug && existing.parent == parent_name {
                return Ok(existing);
            }
            return Err(Error::Conflict(format!(
                "a different workspace {name} exists (type or parent differ)"
            )));
        }
        let id = tx.insert_workspace(name, kind.id, parent_id, now()).await?;
        audit::record(
            &mut tx,
            "workspace.created",
            None,
            json!({ "workspace_id": id, "type": type_slug }),
        )
        .await?;
        let created = tx.workspace(id).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// One page of workspaces, by case-insensitive name; the cursor ([`Page::after`]) is the
    /// last name of the previous page.
    pub async fn list(&self, page: &Page) -> Result<Vec<Workspace>> {
        let workspaces = self.db.read(async |tx| tx.workspaces_page(page).await).await?;
        Ok(workspaces)
    }

    /// One page of a workspace's memberships (a member holding two roles has two rows), by
    /// username then role name. The cursor ([`Page::after`]) is `USERNAME/ROLE` of the
    /// previous page's last row ([`Member::cursor`]). Errors: [`Error::NotFound`].
    pub async fn members(&self, workspace: &str, page: &Page) -> Result<Vec<Member>> {
        self.db
            .read(async |tx| {
                let id = tx.workspace_id(workspace).await?;
                tx.members_page(id, page).await
            })
            .await
    }

    /// A workspace with its roles and the first `members` of its memberships (by username;
    /// [`Workspace::members`] counts them all, [`Self::members`] pages through the rest).
    /// Errors: [`Error::NotFound`].
    pub async fn show_with(&self, workspace: &str, members: i64) -> Result<WorkspaceDetails> {
        self.details(workspace, Some(members)).await
    }

    /// A workspace with its roles and all of its memberships. Errors: [`Error::NotFound`].
    pub async fn show(&self, workspace: &str) -> Result<WorkspaceDetails> {
        self.details(workspace, None).await
    }

    /// [`Self::show_with`] for `Some(members)`, [`Self::show`] for `None` (every membership).
    async fn details(&self, workspace: &str, members: Option<i64>) -> Result<WorkspaceDetails> {
        let mut tx = self.db.begin_read_tx().await?;
        let id = tx.workspace_id(workspace).await?;
        let workspace = tx.workspace(id).await?;
        let roles = tx
            .roles(Some(id))
            .await?
            .into_iter()
            .map(|r: Role| RoleSummary {
                name: r.name,
                capabilities: r.capabilities,
                members: r.members,
            })
            .collect();
        let member_list = match members {
            None => tx.workspace_members(id).await?,
            Some(n) if n > 0 => tx.members_page(id, &Page::first(n)).await?,
            Some(_) => Vec::new(),
        };
        tx.end().await?;
        Ok(WorkspaceDetails {
            workspace,
            roles,
            member_list,
        })
    }

    /// Deletes a workspace with its roles, memberships and invites, publishing an
    /// invalidation for each former member in the same transaction. Errors:
    /// [`Error::Refused`] for the root workspace or one with child workspaces.
    pub async fn delete(&self, workspace: &str) -> Result<WorkspaceDeleted> {
        self.db.retrying(|| self.delete_once(workspace)).await
    }

    /// One attempt of [`Self::delete`], which runs it again when the database asks.
    async fn delete_once(&self, workspace: &str) -> Result<WorkspaceDeleted> {
        let mut tx = self.db.begin().await?;
        let id = tx.workspace_id(workspace).await?;
        let details = tx.workspace(id).await?;
        if details.is_root {
            return Err(Error::Refused("the root workspace can never be deleted".into()));
        }
        let children: Vec<String> = tx
            .workspaces()
            .await?
            .into_iter()
            .filter(|w| w.parent.as_deref() == Some(details.name.as_str()))
            .map(|w| w.name)
            .collect();
        if !children.is_empty() {
            return Err(Error::Refused(format!(
                "workspace {} has child workspaces ({}): delete them first",
                details.name,
                children.join(", ")
            )));
        }
        let roles = tx.roles(Some(id)).await?;
        let memberships = tx.workspace_members(id).await?.len();
        let members = tx.workspace_member_ids(id).await?;
        tx.delete_workspace(id).await?;
        // Their roles there are gone: every process drops what it cached about them.
        let at = now();
        for user_id in members {
            tx.publish_authz_invalidation(user_id, "workspace_deleted", at).await?;
        }
        audit::record(
            &mut tx,
            "workspace.deleted",
            None,
            json!({ "workspace_id": id, "memberships_deleted": memberships }),
        )
        .await?;
        tx.commit().await?;
        Ok(WorkspaceDeleted {
            id,
            name: details.name,
            roles_deleted: roles.len(),
            memberships_deleted: memberships,
        })
    }

    /// Creates a role in a workspace. Its capabilities must stay within the template of the
    /// workspace's type (a template entry `x.*` admits `x.y` and `x.*`); the root workspace
    /// is not bound by one. A new role has no holder yet, so no cached answer changes.
    ///
    /// Errors: [`Error::Invalid`] for a bad name; [`Error::NotFound`] for an unknown
    /// workspace; [`Error::Conflict`] for a taken name; [`Error::Refused`] naming the first
    /// capability outside the template.
    ///
    /// With `if_not_exists`, an identical role (same capabilities) is returned as is; a
    /// different one with the name is a conflict.
    pub async fn create_role(
        &self,
        workspace: &str,
        name: &str,
        capabilities: &[Capability],
        if_not_exists: bool,
    ) -> Result<Role> {
        self.db
            .retrying(|| self.create_role_once(workspace, name, capabilities, if_not_exists))
            .await
    }

    /// One attempt of [`Self::create_role`], which runs it again when the database asks.
    async fn create_role_once(
        &self,
        workspace: &str,
        name: &str,
        capabilities: &[Capability],
        if_not_exists: bool,
    ) -> Result<Role> {
        validate_role_name(name)?;
        let mut tx = self.db.begin().await?;
        let workspace_id = tx.workspace_id(workspace).await?;
        let details = tx.workspace(workspace_id).await?;
        if !details.is_root {
            let kind = tx.workspace_type(&details.type_slug).await?;
            let template = kind
                .capabilities
                .iter()
                .map(|c| Capability::parse(c))
                .collect::<Result<Vec<_>>>()?;
            if let Some(outside) = capabilities
                .iter()
                .find(|c| !template.iter().any(|t| t.grants(c.as_str())))
            {
                let allowed = if kind.capabilities.is_empty() {
                    "none".to_owned()
                } else {
                    kind.capabilities.join(", ")
                };
                return Err(Error::Refused(format!(
                    "capability {} is outside the template of workspace type {} (allowed: {allowed}): widen the type's template or choose another capability",
                    outside.as_str(),
                    kind.slug
                )));
            }
        }
        if if_not_exists && let Ok(id) = tx.role_id(workspace_id, name).await {
            let existing = tx.role(id).await?;
            if existing.capabilities == capability_strings(capabilities) {
                return Ok(existing);
            }
            return Err(Error::Conflict(format!(
                "a different role {name} exists in {workspace} (capabilities differ)"
            )));
        }
        let id = tx
            .insert_role(workspace_id, name, &capability_strings(capabilities), now())
            .await?;
        audit::record(
            &mut tx,
            "role.created",
            None,
            json!({ "role_id": id, "workspace_id": workspace_id }),
        )
        .await?;
        let role = tx.role(id).await?;
        tx.commit().await?;
        Ok(role)
    }

    /// One page of the roles of one workspace or of all, by workspace (oldest first) then
    /// name. The cursor ([`Page::after`]) is the last role id of the previous page. Errors:
    /// [`Error::NotFound`] for an unknown workspace or cursor.
    pub async fn roles(&self, workspace: Option<&str>, page: &Page) -> Result<Vec<Role>> {
        self.db
            .read(async |tx| {
                let id = match workspace {
                    Some(w) => Some(tx.workspace_id(w).await?),
                    None => None,
                };
                tx.roles_page(id, page).await
            })
            .await
    }

    /// The role as it stands (for confirmation prompts that say what goes).
    pub async fn role(&self, workspace: &str, name: &str) -> Result<Role> {
        self.db
            .read(async |tx| {
                let workspace_id = tx.workspace_id(workspace).await?;
                let id = tx.role_id(workspace_id, name).await?;
                tx.role(id).await
            })
            .await
    }

    /// Deletes a role with its memberships and invites, publishing an invalidation for each
    /// former holder in the same transaction. Errors: [`Error::Refused`] for the
    /// root role, or when it would leave the root workspace without members.
    pub async fn delete_role(&self, workspace: &str, name: &str) -> Result<Role> {
        self.db.retrying(|| self.delete_role_once(workspace, name)).await
    }

    /// One attempt of [`Self::delete_role`], which runs it again when the database asks.
    async fn delete_role_once(&self, workspace: &str, name: &str) -> Result<Role> {
        let mut tx = self.db.begin().await?;
        let workspace_id = tx.workspace_id(workspace).await?;
        let id = tx.role_id(workspace_id, name).await?;
        let role = tx.role(id).await?;
        if role.is_system {
            return Err(Error::Refused("the root role can never be deleted".into()));
        }
        let had_members = tx.has_members(workspace_id).await?;
        let holders = tx.role_member_ids(id).await?;
        tx.delete_role(id).await?;
        tx.refuse_if_root_emptied(workspace_id, had_members).await?;
        let at = now();
        for user_id in holders {
            tx.publish_authz_invalidation(user_id, "role_deleted", at).await?;
        }
        audit::record(
            &mut tx,
            "role.deleted",
            None,
            json!({ "role_id": id, "workspace_id": workspace_id, "memberships_deleted": role.members }),
        )
        .await?;
        tx.commit().await?;
        Ok(role)
    }
}
