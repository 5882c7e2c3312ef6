//! `accountctl session …`.

use crate::Error;
use crate::domain::LogoutReason;
use crate::domain::UserRef;
use uuid::Uuid;

use super::Ctx;
use super::prompt::confirm;

const LIST_COLUMNS: &[&str] = &["id", "created_at", "expires_at", "revoked_at", "revoke_reason"];

#[derive(Debug, clap::Subcommand)]
pub enum SessionCmd {
    /// List a user's sessions, newest first.
    List {
        /// Username, email, phone (+…) or id.
        user: String,
    },
    /// Revoke one session by id, or every session of --user with --all (admin_revoked).
    Revoke {
        /// The session id.
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<Uuid>,
        /// Revoke the sessions of this user (with --all).
        #[arg(long, requires = "all")]
        user: Option<String>,
        /// All sessions of --user.
        #[arg(long, requires = "user")]
        all: bool,
    },
    /// End every expired session (session_expired) and fire one logout per user.
    Prune,
}

pub async fn exec(ctx: &Ctx, cmd: SessionCmd) -> Result<(), Error> {
    let sessions = ctx.app.sessions();
    match cmd {
        SessionCmd::List { user } => {
            let list = sessions.list(&UserRef::parse(&user)?).await?;
            ctx.out.list(&list, LIST_COLUMNS, "id");
        }
        SessionCmd::Revoke { id: Some(id), .. } => {
            confirm(ctx.yes, &format!("revoke session {id}"))?;
            let result = sessions.revoke(id).await?;
            ctx.out.record(&result, "user_id");
        }
        SessionCmd::Revoke { id: None, user, .. } => {
            let user = user.ok_or_else(|| Error::Invalid("give a session id or --user U --all".into()))?;
            let user_ref = UserRef::parse(&user)?;
            sessions.list(&user_ref).await?;
            confirm(ctx.yes, &format!("revoke every session of {user}"))?;
            let result = sessions.revoke_all(&user_ref, LogoutReason::AdminRevoked).await?;
            ctx.out.record(&result, "user_id");
        }
        SessionCmd::Prune => {
            let result = sessions.prune().await?;
            ctx.out.record(&result, "sessions_expired");
        }
    }
    Ok(())
}
