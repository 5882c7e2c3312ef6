//! `accountctl auth …`.

use crate::Error;

use super::Ctx;
use super::prompt::PasswordArgs;

#[derive(Debug, clap::Subcommand)]
pub enum AuthCmd {
    /// Check a password through the library's login path: exit 0 when it signs in, 4 when
    /// not (wrong password, unknown, disabled or trashed user: one answer for all). Like a
    /// real login it fires on_user_login and stamps last_login_at; it opens no session.
    /// An external user has no password to check: exit 2, naming its identity provider.
    Check {
        /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
        user: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

pub async fn exec(ctx: &Ctx, cmd: AuthCmd) -> Result<(), Error> {
    match cmd {
        AuthCmd::Check { user, password } => {
            // An id prefix typed by the operator becomes the whole id the sign-in path takes.
            let user = match ctx.user(&user).await {
                Ok(crate::domain::UserRef::Id(id)) => id.to_string(),
                _ => user,
            };
            if let Ok(user_ref) = crate::domain::UserRef::parse(&user)
                && let Ok(details) = ctx.app.accounts().show(&user_ref).await
                && details.user.is_external
            {
                let providers: Vec<String> = details.external_identities.iter().map(|i| i.provider.clone()).collect();
                let via = if providers.is_empty() {
                    "its identity provider".to_owned()
                } else {
                    format!("its identity provider ({})", providers.join(", "))
                };
                return Err(Error::Invalid(format!(
                    "user {} is external: it signs in through {via}, not with a password, so there is no password to check (the application's external sign-in path signs it in; `user convert --to-internal` and `user set-password` give it one)",
                    details.user.username
                )));
            }
            let chosen = password.resolve(true, false)?.ok_or(Error::AuthenticationFailed)?;
            let outcome = ctx.app.auth().login(&user, &chosen.secret, false).await?;
            super::warn_hook_failures(&outcome.hook_failures);
            #[derive(serde::Serialize)]
            struct Checked {
                id: uuid::Uuid,
                username: String,
                authenticated: bool,
                first_login: bool,
                rehashed: bool,
                #[serde(skip_serializing_if = "Vec::is_empty")]
                hook_failures: Vec<crate::domain::HookFailure>,
            }
            ctx.out.record(
                &Checked {
                    id: outcome.user.id,
                    username: outcome.user.username,
                    authenticated: true,
                    first_login: outcome.first_login,
                    rehashed: outcome.rehashed,
                    hook_failures: outcome.hook_failures,
                },
                "id",
            );
            Ok(())
        }
    }
}
