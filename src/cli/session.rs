//! `accountctl session …`.

use crate::Error;
use crate::domain::{LogoutReason, Session, Timestamp};

use super::Ctx;
use super::paging::{self, PageArgs};
use super::prompt::confirm;

/// The columns of `session list` in a terminal table: short values that fit 80 columns.
const LIST_COLUMNS: &[&str] = &["id", "created", "last_seen", "ip_address", "user_agent", "status"];
/// The columns with `--wide` and in tab-separated output: every field, whole.
const WIDE_COLUMNS: &[&str] = &[
    "id",
    "family_id",
    "created_at",
    "expires_at",
    "last_seen_at",
    "ip_address",
    "user_agent",
    "revoked_at",
    "revoke_reason",
];

/// The characters of a user agent a terminal table shows (`--wide` shows it whole).
const SHORT_USER_AGENT: usize = 16;

#[derive(Debug, clap::Subcommand)]
pub enum SessionCmd {
    /// List a user's sessions, newest first: created, last seen, the client's IP address and
    /// user agent as the application recorded them at sign-in, and whether the session is
    /// live. Terminal tables show ages and a shortened user agent; --wide, tab-separated
    /// output and JSON show every field whole. The paging cursor (--after) is a session id.
    List {
        /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
        user: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Revoke one session by id, or every session of --user with --all (admin_revoked).
    Revoke {
        /// The session id, or an id prefix of 8+ characters.
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<String>,
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

/// A session as a terminal table row.
#[derive(serde::Serialize)]
struct ShortRow {
    id: uuid::Uuid,
    created: String,
    last_seen: String,
    ip_address: Option<String>,
    user_agent: Option<String>,
    status: &'static str,
}

impl ShortRow {
    fn new(session: Session, at: Timestamp) -> Self {
        let status = if session.revoked_at.is_some() {
            "revoked"
        } else if session.expires_at <= at {
            "expired"
        } else {
            "live"
        };
        let user_agent = session.user_agent.map(|ua| {
            if ua.chars().count() > SHORT_USER_AGENT {
                let cut: String = ua.chars().take(SHORT_USER_AGENT - 1).collect();
                format!("{cut}…")
            } else {
                ua
            }
        });
        Self {
            id: session.id,
            created: ago(session.created_at, at),
            last_seen: session
                .last_seen_at
                .map_or_else(|| "-".to_owned(), |seen| ago(seen, at)),
            ip_address: session.ip_address,
            user_agent,
            status,
        }
    }
}

/// How long before `at` a time was, in its largest whole unit: `40s ago`, `5m ago`, `3h ago`,
/// `12d ago`.
fn ago(then: Timestamp, at: Timestamp) -> String {
    let secs = (at - then).num_seconds().max(0);
    match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

pub async fn exec(ctx: &Ctx, cmd: SessionCmd) -> Result<(), Error> {
    let sessions = ctx.app.sessions();
    match cmd {
        SessionCmd::List { user, page } => {
            let user = ctx.user(&user).await?;
            let short =
                ctx.out.terminal && !ctx.out.wide && !ctx.out.quiet && ctx.out.format == super::output::Format::Table;
            if short {
                let at = crate::domain::now();
                paging::print(
                    &ctx.out,
                    page,
                    LIST_COLUMNS,
                    "id",
                    |row: &ShortRow| row.id.to_string(),
                    async |page| {
                        let list = sessions.list(&user, &page).await?;
                        Ok(list.into_iter().map(|s| ShortRow::new(s, at)).collect())
                    },
                )
                .await?;
            } else {
                paging::print(
                    &ctx.out,
                    page,
                    WIDE_COLUMNS,
                    "id",
                    |s: &Session| s.id.to_string(),
                    async |page| sessions.list(&user, &page).await,
                )
                .await?;
            }
        }
        SessionCmd::Revoke { id: Some(id), .. } => {
            let id = sessions.resolve_id(&id).await?;
            confirm(ctx.yes, &format!("revoke session {id}"))?;
            let result = sessions.revoke(id).await?;
            ctx.out.record(&result, "user_id");
        }
        SessionCmd::Revoke { id: None, user, .. } => {
            let user = user.ok_or_else(|| Error::Invalid("give a session id or --user U --all".into()))?;
            let user_ref = ctx.user(&user).await?;
            sessions.list(&user_ref, &crate::domain::Page::first(1)).await?;
            confirm(ctx.yes, &format!("revoke every session of {user}"))?;
            let result = sessions.revoke_all(&user_ref, LogoutReason::AdminRevoked).await?;
            ctx.out.record(&result, "user_id");
        }
        SessionCmd::Prune => {
            let result = sessions.prune().await?;
            ctx.out.record(&result, super::output::NO_ID);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ago;

    #[test]
    fn ages_are_in_their_largest_whole_unit() {
        let at = crate::domain::now();
        let before = |s: i64| at - chrono::Duration::seconds(s);
        assert_eq!(ago(before(5), at), "5s ago");
        assert_eq!(ago(before(125), at), "2m ago");
        assert_eq!(ago(before(3 * 3600 + 5), at), "3h ago");
        assert_eq!(ago(before(12 * 86_400), at), "12d ago");
        assert_eq!(ago(at + chrono::Duration::seconds(3), at), "0s ago");
    }
}
