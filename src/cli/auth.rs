//! `accountctl auth …`.

use crate::Error;

use super::Ctx;
use super::prompt::PasswordArgs;

#[derive(Debug, clap::Subcommand)]
pub enum AuthCmd {
    /// Check a password through the library's login path: exit 0 when it signs in, 4 when
    /// not (wrong password, unknown, disabled or trashed user: one answer for all). Like a
    /// real login it fires on_user_login and stamps last_login_at; it opens no session.
    Check {
        /// Username, email, phone (+…) or id.
        user: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

pub async fn exec(ctx: &Ctx, cmd: AuthCmd) -> Result<(), Error> {
    match cmd {
        AuthCmd::Check { user, password } => {
            let chosen = password.resolve(true, false)?.ok_or(Error::AuthenticationFailed)?;
            let outcome = ctx.app.auth().login(&user, &chosen.secret, false).await?;
            #[derive(serde::Serialize)]
            struct Checked {
                id: uuid::Uuid,
                username: String,
                authenticated: bool,
                first_login: bool,
                rehashed: bool,
            }
            ctx.out.record(
                &Checked {
                    id: outcome.user.id,
                    username: outcome.user.username,
                    authenticated: true,
                    first_login: outcome.first_login,
                    rehashed: outcome.rehashed,
                },
                "id",
            );
            Ok(())
        }
    }
}
