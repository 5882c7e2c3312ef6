//! `accountctl invite …`. accountctl never sends mail or SMS itself.

use crate::Error;
use crate::domain::UserRef;
use crate::domain::parse_duration;
use crate::services::invites::{Acceptor, DEFAULT_INVITE_TTL, InviteRequest};
use uuid::Uuid;

use super::Ctx;
use super::prompt::{PasswordArgs, confirm};

const LIST_COLUMNS: &[&str] = &[
    "id",
    "workspace",
    "role",
    "passport",
    "status",
    "expires_at",
    "created_by",
];

#[derive(Debug, clap::Subcommand)]
pub enum InviteCmd {
    /// Invite an email or phone into a workspace with a role. Prints the token once (JSON
    /// field `token`); only its hash is stored. accountctl never sends mail or SMS: the
    /// notification is queued in notification_outbox for the application's mailer.
    Create {
        /// The workspace to join (name or id).
        #[arg(long)]
        workspace: String,
        /// The role the invitee gets in --workspace.
        #[arg(long)]
        role: String,
        /// The invitee's email address.
        #[arg(long, required_unless_present = "phone", conflicts_with = "phone")]
        email: Option<String>,
        /// E.164 form, e.g. +4915112345678.
        #[arg(long)]
        phone: Option<String>,
        /// The invitee must accept with exactly this email/phone.
        #[arg(long)]
        force_passport: bool,
        /// How long the invite is valid.
        #[arg(long, default_value = "7d", value_name = "DURATION")]
        expires_in: String,
        /// The invitee's given name, for the person created on accept.
        #[arg(long)]
        given_name: Option<String>,
        /// The invitee's family name, for the person created on accept.
        #[arg(long)]
        family_name: Option<String>,
    },
    /// List invites, newest first.
    List {
        /// Only invites into this workspace (name or id).
        #[arg(long)]
        workspace: Option<String>,
        /// pending, accepted, revoked or expired.
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one invite.
    Show {
        /// The invite's id.
        id: Uuid,
    },
    /// Revoke a pending invite.
    Revoke {
        /// The invite's id.
        id: Uuid,
    },
    /// Rotate a pending invite's token, extend its expiry and queue a new notification.
    Resend {
        /// The invite's id.
        id: Uuid,
        /// How long the new token is valid, from now.
        #[arg(long, default_value = "7d", value_name = "DURATION")]
        expires_in: String,
    },
    /// Accept an invite with its token, as an existing user or as a new one.
    ///
    /// Prefer `-` (the token read from stdin) or `--token-file`: a token given as an
    /// argument is visible to other local users in `ps` while the command runs.
    Accept {
        /// The token from `invite create`, or `-` to read it from stdin (preferred). Tokens
        /// are URL-safe base64 and may start with `-`; that is accepted as the token.
        #[arg(
            allow_hyphen_values = true,
            required_unless_present = "token_file",
            conflicts_with = "token_file"
        )]
        token: Option<String>,
        /// Read the token from this file (its first line), e.g. one only its owner can read.
        #[arg(long, value_name = "PATH")]
        token_file: Option<std::path::PathBuf>,
        /// Accept as this existing user.
        #[arg(long, required_unless_present = "new_username", conflicts_with = "new_username")]
        user: Option<String>,
        /// Accept as a new user with this username (created like `user create`).
        #[arg(long)]
        new_username: Option<String>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Mark expired pending invites as expired.
    Prune,
}

pub async fn exec(ctx: &Ctx, cmd: InviteCmd) -> Result<(), Error> {
    let invites = ctx.app.invites();
    match cmd {
        InviteCmd::Create {
            workspace,
            role,
            email,
            phone,
            force_passport,
            expires_in,
            given_name,
            family_name,
        } => {
            let req = InviteRequest {
                workspace,
                role,
                email,
                phone,
                force_passport,
                expires_in: parse_duration(&expires_in)?,
                given_name,
                family_name,
            };
            ctx.out.record(&invites.create(&req).await?, "id");
        }
        InviteCmd::List { workspace, status } => {
            ctx.out.list(
                &invites
                    .list(workspace.as_deref(), status.as_deref().map(str::parse).transpose()?)
                    .await?,
                LIST_COLUMNS,
                "id",
            );
        }
        InviteCmd::Show { id } => ctx.out.record(&invites.show(id).await?, "id"),
        InviteCmd::Revoke { id } => {
            invites.show(id).await?;
            confirm(ctx.yes, &format!("revoke invite {id}"))?;
            ctx.out.record(&invites.revoke(id).await?, "id");
        }
        InviteCmd::Resend { id, expires_in } => {
            let expires_in = if expires_in.is_empty() {
                DEFAULT_INVITE_TTL
            } else {
                parse_duration(&expires_in)?
            };
            ctx.out.record(&invites.resend(id, expires_in).await?, "id");
        }
        InviteCmd::Accept {
            token,
            token_file,
            user,
            new_username,
            password,
        } => {
            let token = match (token.as_deref(), token_file) {
                (_, Some(path)) => std::fs::read_to_string(&path)
                    .map_err(|e| Error::Invalid(format!("cannot read the token from {}: {e}", path.display())))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
                (Some("-"), None) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| Error::Invalid(format!("cannot read the token from stdin: {e}")))?;
                    line.trim().to_owned()
                }
                (Some(token), None) => {
                    tracing::warn!(
                        "the invite token was given as an argument, which other local users can see in `ps`: pass `-` and the token on stdin, or --token-file"
                    );
                    token.to_owned()
                }
                (None, None) => return Err(Error::Invalid("give the token, `-` (stdin) or --token-file".into())),
            };
            let acceptor = match (user, new_username) {
                (Some(user), _) => Acceptor::User(UserRef::parse(&user)?),
                (None, Some(username)) => {
                    let password = password.resolve(false, true)?.map(|c| c.secret);
                    Acceptor::NewUser { username, password }
                }
                (None, None) => return Err(Error::Invalid("give --user or --new-username".into())),
            };
            ctx.out.record(&invites.accept(&token, acceptor).await?, "user_id");
        }
        InviteCmd::Prune => {
            let expired = invites.prune().await?;
            ctx.out.record(&serde_json::json!({ "expired": expired }), "expired");
        }
    }
    Ok(())
}
