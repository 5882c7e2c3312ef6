//! `accountctl role …`.

use crate::Error;
use crate::domain::{InstanceRole, parse_capabilities};

use super::Ctx;
use super::paging::{self, PageArgs};
use super::prompt::confirm;

const LIST_COLUMNS: &[&str] = &["id", "workspace", "name", "capabilities", "is_system", "members"];

#[derive(Debug, clap::Subcommand)]
pub enum RoleCmd {
    /// Create a role in a workspace. Capabilities are dotted keys; a trailing `*` is a prefix
    /// wildcard (`root.*`).
    Create {
        /// The role's name, unique in its workspace.
        name: String,
        /// Workspace name or id.
        #[arg(long)]
        workspace: String,
        /// Comma-separated, e.g. docs.read,docs.write,billing.*
        #[arg(long)]
        capabilities: String,
        /// Exit 0 with the existing role when an identical one exists (4 if different).
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List roles, of one workspace or of all, by workspace (oldest first) then name; the
    /// paging cursor (--after) is a role id.
    List {
        /// Only the roles of this workspace (name or id).
        #[arg(long)]
        workspace: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Delete a role with its memberships (never the root role).
    Delete {
        /// The role's name, id, or an id prefix of 8+ characters (a name wins).
        name: String,
        /// Workspace name or id.
        #[arg(long)]
        workspace: String,
    },
    /// Give a user a role. Without --workspace, ROLE is the instance role (admin | user).
    Assign(AssignArgs),
    /// Take a role from a user. Without --workspace, revoking `admin` demotes to `user`.
    Revoke(AssignArgs),
}

#[derive(Debug, clap::Args)]
pub struct AssignArgs {
    /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
    user: String,
    /// admin | user (instance role), or a role of --workspace.
    role: String,
    /// The workspace whose ROLE is meant.
    #[arg(long)]
    workspace: Option<String>,
}

pub async fn exec(ctx: &Ctx, cmd: RoleCmd) -> Result<(), Error> {
    let workspaces = ctx.app.workspaces();
    match cmd {
        RoleCmd::Create {
            name,
            workspace,
            capabilities,
            if_not_exists,
        } => {
            let role = workspaces
                .create_role(&workspace, &name, &parse_capabilities(&capabilities)?, if_not_exists)
                .await?;
            ctx.out.record(&role, "id");
            Ok(())
        }
        RoleCmd::List { workspace, page } => {
            paging::print(
                &ctx.out,
                page,
                LIST_COLUMNS,
                "id",
                |r: &crate::domain::Role| r.id.to_string(),
                async |page| workspaces.roles(workspace.as_deref(), &page).await,
            )
            .await
        }
        RoleCmd::Delete { name, workspace } => {
            let role = workspaces.role(&workspace, &name).await?;
            confirm(
                ctx.yes,
                &format!(
                    "delete role {name} of {workspace} and its {} membership(s)",
                    role.members
                ),
            )?;
            ctx.out.record(&workspaces.delete_role(&workspace, &name).await?, "id");
            Ok(())
        }
        RoleCmd::Assign(args) => assign(ctx, args, true).await,
        RoleCmd::Revoke(args) => assign(ctx, args, false).await,
    }
}

async fn assign(ctx: &Ctx, args: AssignArgs, assign: bool) -> Result<(), Error> {
    let user = ctx.user(&args.user).await?;
    match &args.workspace {
        None => {
            let role: InstanceRole = args.role.parse()?;
            let target = match (assign, role) {
                (true, r) => r,
                (false, InstanceRole::Admin) => InstanceRole::User,
                (false, InstanceRole::User) => {
                    return Err(Error::Invalid(
                        "`user` is the base instance role and cannot be revoked; delete or disable the user instead"
                            .into(),
                    ));
                }
            };
            if !assign {
                confirm(ctx.yes, &format!("revoke admin from {}", args.user))?;
            }
            let changed = ctx.app.accounts().set_instance_role(&user, target).await?;
            if !changed.changed {
                note!(
                    "user {} already has instance role {target}: nothing changed",
                    changed.user.username
                );
            }
            // One shape for both kinds of role: {user_id, username, workspace_id, role, changed}
            // (workspace_id null for the instance role).
            let result = serde_json::json!({
                "user_id": changed.user.id,
                "username": changed.user.username,
                "workspace_id": null,
                "role": target.to_string(),
                "changed": changed.changed,
            });
            ctx.out.record(&result, "user_id");
        }
        Some(workspace) => {
            let changed = if assign {
                ctx.app.memberships().assign(&user, workspace, &args.role).await?
            } else {
                confirm(
                    ctx.yes,
                    &format!("revoke role {} in {workspace} from {}", args.role, args.user),
                )?;
                ctx.app.memberships().revoke(&user, workspace, &args.role).await?
            };
            if !changed.changed {
                note!("nothing changed");
            }
            ctx.out.record(&changed, "user_id");
        }
    }
    Ok(())
}
