//! `accountctl workspace …` and `accountctl workspace-type …`.

use crate::Error;
use crate::domain::parse_capabilities;

use super::Ctx;
use super::prompt::confirm;

const LIST_COLUMNS: &[&str] = &["id", "name", "type_slug", "parent", "is_root", "members"];
const TYPE_COLUMNS: &[&str] = &["id", "slug", "title", "capabilities"];

#[derive(Debug, clap::Subcommand)]
pub enum WorkspaceCmd {
    /// Create a workspace of a type, optionally under a parent workspace.
    Create {
        /// The workspace's name, unique among its siblings.
        name: String,
        /// The workspace type's slug.
        #[arg(long = "type", value_name = "SLUG")]
        kind: String,
        /// Parent workspace (name or id).
        #[arg(long)]
        parent: Option<String>,
        /// Exit 0 with the existing workspace when an identical one exists (4 if different).
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List workspaces, the root first.
    List,
    /// Show a workspace with its roles and members.
    Show {
        /// Workspace name or id.
        workspace: String,
    },
    /// Delete a workspace with its roles, memberships and invites (never the root).
    Delete {
        /// Workspace name or id.
        workspace: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum WorkspaceTypeCmd {
    /// Create a workspace type (what public sign-up creates workspaces of).
    Create {
        /// Lower-case letters, digits, '_' and '-'.
        slug: String,
        /// Human-readable name, e.g. "Team".
        #[arg(long)]
        title: String,
        /// Comma-separated capability template, e.g. docs.read,docs.*
        #[arg(long, default_value = "")]
        capabilities: String,
        /// Exit 0 with the existing type when an identical one exists (4 if different).
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List workspace types.
    List,
}

pub async fn exec(ctx: &Ctx, cmd: WorkspaceCmd) -> Result<(), Error> {
    let workspaces = ctx.app.workspaces();
    match cmd {
        WorkspaceCmd::Create {
            name,
            kind,
            parent,
            if_not_exists,
        } => {
            let created = workspaces
                .create(&name, &kind, parent.as_deref(), if_not_exists)
                .await?;
            ctx.out.record(&created, "id");
        }
        WorkspaceCmd::List => ctx.out.list(&workspaces.list().await?, LIST_COLUMNS, "id"),
        WorkspaceCmd::Show { workspace } => ctx.out.record(&workspaces.show(&workspace).await?, "id"),
        WorkspaceCmd::Delete { workspace } => {
            let details = workspaces.show(&workspace).await?;
            let members = details.member_list.len();
            let question = if members > 0 {
                format!(
                    "delete workspace {} with its {} role(s) and {members} membership(s)",
                    details.workspace.name,
                    details.roles.len()
                )
            } else {
                format!(
                    "delete workspace {} with its {} role(s)",
                    details.workspace.name,
                    details.roles.len()
                )
            };
            confirm(ctx.yes, &question)?;
            ctx.out.record(&workspaces.delete(&workspace).await?, "id");
        }
    }
    Ok(())
}

pub async fn exec_type(ctx: &Ctx, cmd: WorkspaceTypeCmd) -> Result<(), Error> {
    let workspaces = ctx.app.workspaces();
    match cmd {
        WorkspaceTypeCmd::Create {
            slug,
            title,
            capabilities,
            if_not_exists,
        } => {
            let created = workspaces
                .create_type(&slug, &title, &parse_capabilities(&capabilities)?, if_not_exists)
                .await?;
            ctx.out.record(&created, "id");
        }
        WorkspaceTypeCmd::List => ctx.out.list(&workspaces.types().await?, TYPE_COLUMNS, "id"),
    }
    Ok(())
}
