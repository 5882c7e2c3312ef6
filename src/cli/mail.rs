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

/// Checks the `[smtp]` settings before anything is written, so an invite is never created
/// for a delivery that cannot start: the `from` address parses, `username` and
/// `password_file` come together, the password file is readable by its owner only, and a
/// password is never sent in clear: with `tls = "none"` AUTH is allowed only to a loopback
/// host (the relay on this machine). Returns the credentials to log in with, if any.
/// Errors: [`Error::Invalid`] (exit 2) naming the setting.
pub fn check_settings(smtp: &SmtpConfig) -> Result<Option<Credentials>, Error> {
    smtp.from
        .parse::<Mailbox>()
        .map_err(|e| Error::Invalid(format!("smtp.from {:?}: {e}", smtp.from)))?;
    match (&smtp.username, &smtp.password_file) {
        (Some(user), Some(path)) => {
            if smtp.tls == SmtpTls::None && !is_loopback(&smtp.host) {
                return Err(Error::Invalid(format!(
                    "[smtp] would send the password in clear to {}: set tls = \"starttls\" or \"tls\" (tls = \"none\" with a login is allowed only to a relay on this machine: localhost, 127.0.0.1, ::1)",
                    smtp.host
                )));
            }
            let password = read_secret_file("smtp.password_file", path)?;
            Ok(Some(Credentials::new(user.clone(), password)))
        }
        (None, None) => Ok(None),
        _ => Err(Error::Invalid(
            "[smtp] needs both username and password_file, or neither".into(),
        )),
    }
}

/// Whether `host` names this machine: `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Sends the invite's link to its email passport. Errors: [`Error::Invalid`] for a bad
/// `from` address or an unreadable password file; [`Error::MailUnavailable`] (exit 6) when
/// the relay cannot be reached or refuses the message.
pub async fn send_invite(smtp: &SmtpConfig, invite: &Invite, link: &str) -> Result<(), Error> {
    let credentials = check_settings(smtp)?;
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
        Error::MailUnavailable(format!(
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
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    builder.build().send(message).await.map_err(unavailable)?;
    Ok(())
}
