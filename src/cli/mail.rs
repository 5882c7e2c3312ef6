//! `invite create|resend --send`: the CLI delivers the accept link by SMTP itself, with the
//! config file's `[smtp]` settings. The library never sends mail (an application delivers
//! its own, with the token the library returns to it); the token exists only in this
//! process and in the message.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::Error;
use crate::store::invites::Invite;

use super::config::{SmtpConfig, SmtpTls, TOKEN_PLACEHOLDER, read_secret_file};

/// How long one delivery may take (connect, TLS, the whole SMTP dialogue).
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The accept link: the template with `{token}` replaced by the token (URL-safe base64, so
/// it needs no escaping).
pub fn invite_link(template: &str, token: &str) -> String {
    template.replace(TOKEN_PLACEHOLDER, token)
}

/// Sends the invite's link to its email passport. Errors: [`Error::Invalid`] for a bad
/// `from` address or an unreadable password file; [`Error::Unavailable`] (exit 6) when the
/// server cannot be reached or refuses the message.
pub async fn send_invite(smtp: &SmtpConfig, invite: &Invite, link: &str) -> Result<(), Error> {
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| Error::Invalid(format!("smtp.from {:?}: {e}", smtp.from)))?;
    let to: Mailbox = invite
        .passport
        .parse()
        .map_err(|e| Error::Invalid(format!("cannot mail {}: {e}", invite.passport)))?;
    let body = format!(
        "You have been invited to join {workspace} as {role}.\n\nAccept the invitation here:\n{link}\n\nThe link works once and expires on {expires}.\nIf you did not expect this invitation, ignore this message.\n",
        workspace = invite.workspace,
        role = invite.role,
        expires = invite.expires_at.format("%Y-%m-%d %H:%M UTC"),
    );
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(format!("Invitation to {}", invite.workspace))
        .body(body)
        .map_err(|e| Error::Invalid(format!("cannot build the invite message: {e}")))?;
    let unavailable = |e: lettre::transport::smtp::Error| {
        Error::Unavailable(format!(
            "SMTP server {} (not the database): {e}; check [smtp] host, port and tls in the config file (a local relay without TLS takes tls = \"none\")",
            smtp.host
        ))
    };
    let builder = match smtp.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(unavailable)?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(unavailable)?,
    };
    let port = smtp.port.unwrap_or(match smtp.tls {
        SmtpTls::None => 25,
        SmtpTls::Starttls => 587,
        SmtpTls::Tls => 465,
    });
    let mut builder = builder.port(port).timeout(Some(SMTP_TIMEOUT));
    match (&smtp.username, &smtp.password_file) {
        (Some(user), Some(path)) => {
            let password = read_secret_file("smtp.password_file", path)?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        (None, None) => {}
        _ => {
            return Err(Error::Invalid(
                "[smtp] needs both username and password_file, or neither".into(),
            ));
        }
    }
    builder.build().send(message).await.map_err(unavailable)?;
    Ok(())
}
