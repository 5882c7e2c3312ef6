//! `accountctl bootstrap`.

use crate::Error;
use crate::domain::AdminOutcome;
use crate::services::accounts::NewUser;
use crate::services::bootstrap::BootstrapReport;

use super::Ctx;
use super::prompt::PasswordArgs;

#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    /// Username of the first admin (created only if no active admin exists).
    #[arg(long, requires = "admin_email")]
    admin_username: Option<String>,
    /// Email of the first admin.
    #[arg(long, requires = "admin_username")]
    admin_email: Option<String>,
    #[command(flatten)]
    password: PasswordArgs,
}

/// Migrates, ensures the root workspace, and creates the first admin unless an active admin
/// exists. Running it again changes nothing and says so; it never resets a password.
/// JSON: `{migrations_applied, app_migrations_applied, hooks_recorded, root_workspace_created, admin: created|exists|not_requested,
/// admin_id, password?}` (`password` only with `--random-password`).
pub async fn exec(ctx: &Ctx, args: BootstrapArgs) -> Result<(), Error> {
    let bootstrap = ctx.app.bootstrap();
    let (migrations, root_workspace_created) = bootstrap.ensure_root().await?;
    let mut report = BootstrapReport::new(migrations, root_workspace_created);
    let mut generated = None;
    if let (Some(username), Some(email)) = (&args.admin_username, &args.admin_email) {
        report.admin = AdminOutcome::Exists;
        // Ask for a password only when an admin will actually be created.
        if !bootstrap.has_admin().await? {
            let chosen = args
                .password
                .resolve(true, true)?
                .ok_or_else(|| Error::Invalid("the first admin needs a password".into()))?;
            if chosen.generated {
                generated = Some(chosen.secret.expose().to_owned());
            }
            let admin = NewUser {
                username: username.clone(),
                email: Some(email.clone()),
                password: Some(chosen.secret),
                ..NewUser::default()
            };
            if let Some(id) = bootstrap.create_first_admin(admin).await? {
                report.admin = AdminOutcome::Created;
                report.admin_id = Some(id);
            }
        }
        if report.admin == AdminOutcome::Exists {
            note!("an active admin already exists: no admin created, no password changed");
        }
    }
    if report.changed_nothing() {
        note!("already bootstrapped: nothing changed");
    }
    #[derive(serde::Serialize)]
    struct Out {
        #[serde(flatten)]
        report: BootstrapReport,
        #[serde(skip_serializing_if = "Option::is_none")]
        password: Option<String>,
    }
    ctx.out.record(
        &Out {
            report,
            password: generated,
        },
        "admin_id",
    );
    Ok(())
}
