//! `accountctl role …`.

use accountctl::Error;
use accountctl::domain::InstanceRole;
use accountctl::store::UserRef;

use super::Ctx;

#[derive(Debug, clap::Subcommand)]
pub enum RoleCmd {
    /// Give a user a role. Without --workspace, ROLE is the instance role (admin | user).
    Assign(AssignArgs),
    /// Take a role from a user. Without --workspace, revoking `admin` demotes to `user`.
    Revoke(AssignArgs),
}

#[derive(Debug, clap::Args)]
pub struct AssignArgs {
    /// Username, email, phone (+…) or id.
    user: String,
    /// admin | user (instance role), or a role of --workspace.
    role: String,
    /// The workspace whose ROLE is meant.
    #[arg(long)]
    workspace: Option<String>,
}

pub async fn exec(ctx: &Ctx, cmd: RoleCmd) -> Result<(), Error> {
    let (args, assign) = match cmd {
        RoleCmd::Assign(a) => (a, true),
        RoleCmd::Revoke(a) => (a, false),
    };
    let user = UserRef::parse(&args.user)?;
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
                super::prompt::confirm(ctx.yes, &format!("revoke admin from {}", args.user))?;
            }
            let changed = ctx.app.accounts().set_instance_role(&user, target).await?;
            if !changed.changed {
                eprintln!(
                    "user {} already has instance role {target}: nothing changed",
                    changed.user.username
                );
            }
            ctx.out.record(&changed, "id");
            Ok(())
        }
        Some(workspace) => {
            let changed = if assign {
                ctx.app.memberships().assign(&user, workspace, &args.role).await?
            } else {
                super::prompt::confirm(
                    ctx.yes,
                    &format!("revoke role {} in {workspace} from {}", args.role, args.user),
                )?;
                ctx.app.memberships().revoke(&user, workspace, &args.role).await?
            };
            ctx.out.record(&changed, "user_id");
            Ok(())
        }
    }
}
