//! `accountctl invite …`. The library never sends mail or SMS; `create|resend --send`
//! delivers the link by SMTP from the CLI (see `mail.rs`).

use crate::Error;
use crate::domain::PassportKind;
use crate::domain::parse_duration;
use crate::services::invites::{Acceptor, DEFAULT_INVITE_TTL, InviteRequest, IssuedInvite};

use super::paging::{self, PageArgs};
use super::prompt::{PasswordArgs, confirm};
use super::{Ctx, mail};

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
    /// field `token`, and `link` when an invite link is configured; `-q` prints the token, or
    /// the link with --link); only its hash is stored. With --send the link is mailed by SMTP
    /// ([smtp] in the config file); otherwise the notification queued in
    /// notification_outbox (everything but the token) is for the application's mailer.
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
        #[command(flatten)]
        delivery: Delivery,
    },
    /// List invites, newest first; the paging cursor (--after) is an invite id.
    List {
        /// Only invites into this workspace (name or id).
        #[arg(long)]
        workspace: Option<String>,
        /// pending, accepted, revoked or expired.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one invite.
    Show {
        /// The invite's id, or an id prefix of 8+ characters.
        id: String,
    },
    /// Revoke a pending invite.
    Revoke {
        /// The invite's id, or an id prefix of 8+ characters.
        id: String,
    },
    /// Rotate a pending invite's token, extend its expiry and queue a new notification.
    /// Prints the new token as `invite create` does (the old one stops working).
    Resend {
        /// The invite's id, or an id prefix of 8+ characters.
        id: String,
        /// How long the new token is valid, from now.
        #[arg(long, default_value = "7d", value_name = "DURATION")]
        expires_in: String,
        #[command(flatten)]
        delivery: Delivery,
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

/// How the token reaches the invitee.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Delivery {
    /// Mail the accept link to the invitee's email by SMTP, using [smtp] and invite_link from
    /// the config file (or ACCOUNTCTL_INVITE_LINK). Email invites only.
    #[arg(long)]
    send: bool,
    /// With -q, print the accept link (invite_link with the token) instead of the token.
    #[arg(long)]
    link: bool,
}

/// Checks, before anything is written, that the delivery asked for can start: `--send` needs
/// an email invitee, `[smtp]` settings that pass [`mail::check_settings`] and `invite_link`;
/// `--link` needs `invite_link`. Errors: [`Error::Invalid`] (exit 2); nothing was changed.
fn check_delivery(ctx: &Ctx, delivery: Delivery, kind: PassportKind) -> Result<(), Error> {
    let template = ctx.settings.invite_link.0.as_deref();
    if delivery.send {
        let smtp = ctx.settings.smtp.as_ref().ok_or_else(|| {
            Error::Invalid("--send needs an [smtp] table in the config file (see `config show`)".into())
        })?;
        mail::check_settings(smtp)?;
        if template.is_none() {
            return Err(Error::Invalid(
                "--send needs invite_link (config file or ACCOUNTCTL_INVITE_LINK) containing {token}".into(),
            ));
        }
        if kind != PassportKind::Email {
            return Err(Error::Invalid(
                "--send mails email invites only; the application's SMS sender delivers phone invites".into(),
            ));
        }
    }
    if delivery.link && template.is_none() {
        return Err(Error::Invalid(
            "--link needs invite_link (config file or ACCOUNTCTL_INVITE_LINK)".into(),
        ));
    }
    Ok(())
}

/// Prints an issued invite (with `link` when a template is configured) and delivers it with
/// --send ([`check_delivery`] ran before the invite was written). When the mail cannot be
/// delivered the invite is revoked at once, so no pending invite is left whose token nobody
/// has; the error says so (exit 6), and `invite create` (or `resend`) can be run again.
async fn deliver(ctx: &Ctx, issued: IssuedInvite, delivery: Delivery) -> Result<(), Error> {
    let template = ctx.settings.invite_link.0.as_deref();
    let link = template.map(|t| mail::invite_link(t, &issued.token));
    if template.is_none() && !ctx.out.quiet {
        note!(
            "note: no invite_link is configured, so the notification queued for the application's mailer carries no link (set invite_link in the config file or ACCOUNTCTL_INVITE_LINK)"
        );
    }
    if delivery.send {
        let (Some(smtp), Some(link)) = (ctx.settings.smtp.as_ref(), link.as_deref()) else {
            return Err(Error::Internal(
                "delivery settings vanished after they were checked".into(),
            ));
        };
        if let Err(e) = mail::send_invite(smtp, &issued.invite, link).await {
            let id = issued.invite.id;
            let revoked = match ctx.app.invites().revoke(id).await {
                Ok(_) => "revoked, since nobody has its token".to_owned(),
                Err(revoke) => format!("could not be revoked ({revoke}): run `invite revoke {id}`"),
            };
            let why = match e {
                Error::MailUnavailable(why) => why,
                other => other.to_string(),
            };
            return Err(Error::MailUnavailable(format!(
                "invite {id} was not sent ({why}) and was {revoked}; fix the mail settings and create it again"
            )));
        }
        if !ctx.out.quiet {
            note!("invite sent to {}", issued.invite.passport);
        }
    }
    if delivery.link && link.is_none() {
        return Err(Error::Invalid(
            "--link needs invite_link (config file or ACCOUNTCTL_INVITE_LINK)".into(),
        ));
    }
    let mut value = serde_json::to_value(&issued).map_err(|e| Error::Internal(e.to_string()))?;
    if let serde_json::Value::Object(map) = &mut value {
        if let Some(link) = link {
            map.insert("link".into(), link.into());
        }
        map.insert("sent".into(), delivery.send.into());
    }
    ctx.out.record(&value, if delivery.link { "link" } else { "token" });
    Ok(())
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
            delivery,
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
            let kind = if req.email.is_some() {
                PassportKind::Email
            } else {
                PassportKind::Phone
            };
            check_delivery(ctx, delivery, kind)?;
            deliver(ctx, invites.create(&req).await?, delivery).await?;
        }
        InviteCmd::List {
            workspace,
            status,
            page,
        } => {
            let status = status.as_deref().map(str::parse).transpose()?;
            paging::print(
                &ctx.out,
                page,
                LIST_COLUMNS,
                "id",
                |i: &crate::domain::Invite| i.id.to_string(),
                async |page| invites.list(workspace.as_deref(), status, &page).await,
            )
            .await?;
        }
        InviteCmd::Show { id } => ctx
            .out
            .record(&invites.show(invites.resolve_id(&id).await?).await?, "id"),
        InviteCmd::Revoke { id } => {
            let id = invites.resolve_id(&id).await?;
            invites.show(id).await?;
            confirm(ctx.yes, &format!("revoke invite {id}"))?;
            ctx.out.record(&invites.revoke(id).await?, "id");
        }
        InviteCmd::Resend {
            id,
            expires_in,
            delivery,
        } => {
            let expires_in = if expires_in.is_empty() {
                DEFAULT_INVITE_TTL
            } else {
                parse_duration(&expires_in)?
            };
            let id = invites.resolve_id(&id).await?;
            check_delivery(ctx, delivery, invites.show(id).await?.passport_kind)?;
            deliver(ctx, invites.resend(id, expires_in).await?, delivery).await?;
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
            // A generated password is shown once, with the result, as `user create` shows it.
            let mut generated = None;
            let acceptor = match (user, new_username) {
                (Some(user), _) => Acceptor::User(ctx.user(&user).await?),
                (None, Some(username)) => {
                    let chosen = password.resolve(false, true)?;
                    generated = chosen
                        .as_ref()
                        .filter(|c| c.generated)
                        .map(|c| c.secret.expose().to_owned());
                    Acceptor::NewUser {
                        username,
                        password: chosen.map(|c| c.secret),
                    }
                }
                (None, None) => return Err(Error::Invalid("give --user or --new-username".into())),
            };
            let accepted = invites.accept(&token, acceptor).await?;
            super::warn_hook_failures(&accepted.hook_failures);
            super::user::print_with_password(ctx, &accepted, "user_id", generated);
        }
        InviteCmd::Prune => {
            let expired = invites.prune().await?;
            ctx.out
                .record(&serde_json::json!({ "expired": expired }), super::output::NO_ID);
        }
    }
    Ok(())
}
