//! The configuration file and `accountctl config show`.
//!
//! Where it is read from: `--config PATH` or `ACCOUNTCTL_CONFIG`, else
//! `$XDG_CONFIG_HOME/accountctl/config.toml` (`~/.config/…` when unset), else
//! `/etc/accountctl/config.toml`; a file named explicitly must exist, the others are optional.
//! Keys are named as the flags: `database_url` or `database_url_file` (a secret mounted by
//! systemd's `LoadCredential=` or a Kubernetes secret), `actor`, `trash_retention`,
//! `invite_link`, and an `[smtp]` table. An unknown key is an error, so a typo never falls
//! back to a default silently. Each setting resolves as flag > environment variable > file >
//! default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::db::DatabaseUrl;

/// The file's shape (TOML).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`.
    pub database_url: Option<String>,
    /// A file whose content (trimmed) is the database URL.
    pub database_url_file: Option<PathBuf>,
    /// Who is acting, as recorded in the audit trail.
    pub actor: Option<String>,
    /// How long `user delete --mode admin` keeps a user restorable, e.g. `30d`.
    pub trash_retention: Option<String>,
    /// The invite accept link; must contain `{token}`.
    pub invite_link: Option<String>,
    /// Outgoing mail for `invite create|resend --send`.
    pub smtp: Option<SmtpConfig>,
}

/// The `[smtp]` table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The mail server's host name.
    pub host: String,
    /// Its port (default: 25 for `none`, 587 for `starttls`, 465 for `tls`).
    pub port: Option<u16>,
    /// The sender address (`From:`), e.g. `Accounts <accounts@example.com>`.
    pub from: String,
    /// The login name, when the server asks for one.
    pub username: Option<String>,
    /// A file holding the password (never the password itself in the config).
    pub password_file: Option<PathBuf>,
    /// `none` (plain, for a relay on localhost), `starttls` (default) or `tls`.
    #[serde(default)]
    pub tls: SmtpTls,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text: only for a relay on the same machine or network.
    None,
    /// Upgrade with STARTTLS (RFC 3207), required.
    #[default]
    Starttls,
    /// TLS from the first byte (RFC 8314 "implicit TLS").
    Tls,
}

/// The template an invite link must follow; see [`check_invite_link`].
pub const TOKEN_PLACEHOLDER: &str = "{token}";

/// Refuses an invite link template without `{token}`: a link without the token cannot
/// accept anything. Errors: [`Error::Invalid`] (exit 2).
///
/// The link lands in every invite mail and outbox row, so it must also be an absolute
/// `https:` or `http:` URL (a `javascript:` or `data:` link is refused) without control
/// characters (a raw newline would add lines to every mail body).
pub fn check_invite_link(template: &str, source: &str) -> Result<(), Error> {
    let shown = crate::domain::shown(template);
    if template.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "invite link {shown} (from {source}) contains control characters (a newline, a tab…)"
        )));
    }
    if !template.contains(TOKEN_PLACEHOLDER) {
        return Err(Error::Invalid(format!(
            "invite link {shown} (from {source}) has no {TOKEN_PLACEHOLDER} placeholder: e.g. https://app.example.com/invites/accept?token={TOKEN_PLACEHOLDER}"
        )));
    }
    let scheme_ok = url::Url::parse(&template.replace(TOKEN_PLACEHOLDER, "token"))
        .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some());
    if !scheme_ok {
        return Err(Error::Invalid(format!(
            "invite link {shown} (from {source}) is not an https:// or http:// URL with a host"
        )));
    }
    Ok(())
}

/// The file that applies, if any: the explicit path (which must exist), else the first of
/// the per-user and system-wide paths that exists.
pub fn locate(explicit: Option<&Path>, branding: &crate::app::Branding, bin: &str) -> Result<Option<PathBuf>, Error> {
    if let Some(path) = explicit {
        if !path.exists() {
            return Err(Error::Invalid(format!("no config file at {}", path.display())));
        }
        return Ok(Some(path.to_owned()));
    }
    // An application's admin binary reads its own file: the one it names, else one under
    // its own name (`/etc/myapp-admin/config.toml`).
    if let Some(path) = &branding.config_file {
        return Ok(path.is_file().then(|| path.clone()));
    }
    let user_dir = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    let candidates = user_dir
        .map(|d| d.join(bin).join("config.toml"))
        .into_iter()
        .chain([PathBuf::from(format!("/etc/{bin}/config.toml"))]);
    for path in candidates {
        if path.is_file() {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Reads and checks a config file. Errors: [`Error::Invalid`] for unreadable files, TOML
/// errors (naming the line and column, never echoing the line, which may hold a secret), unknown keys, both `database_url` and `database_url_file`, or an `invite_link`
/// without `{token}`.
pub fn load(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Invalid(format!("cannot read config file {}: {e}", path.display())))?;
    let config: FileConfig = toml::from_str(&text).map_err(|e| {
        // Where, never what: the line may hold a secret (a database URL with its password).
        let at = e
            .span()
            .map(|span| {
                let end = (0..=span.start.min(text.len()))
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                let before = &text[..end];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" line {line}, column {column}:")
            })
            .unwrap_or_default();
        Error::Invalid(format!("config file {}:{at} {}", path.display(), e.message()))
    })?;
    if config.database_url.is_some() && config.database_url_file.is_some() {
        return Err(Error::Invalid(format!(
            "config file {}: set database_url or database_url_file, not both",
            path.display()
        )));
    }
    if let Some(link) = &config.invite_link {
        check_invite_link(link, &path.display().to_string())?;
    }
    Ok(config)
}

/// Reads a `*_file` secret: the file's content without surrounding whitespace.
/// Errors: [`Error::Invalid`] when it cannot be read, is empty, or other users may read it.
pub fn read_secret_file(key: &str, path: &Path) -> Result<String, Error> {
    refuse_shared_secret_file(key, path)?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::Invalid(format!("{key} {}: {e}", path.display())))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::Invalid(format!("{key} {} is empty", path.display())));
    }
    Ok(text.to_owned())
}

/// Refuses a secret file that its group or other users may read, write or run (mode bits
/// `0o077`), as ssh refuses such a private key: anyone who can read it holds the secret.
/// Errors: [`Error::Invalid`] (exit 2) naming the `chmod` that fixes it.
#[cfg(unix)]
fn refuse_shared_secret_file(key: &str, path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::Invalid(format!("{key} {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Invalid(format!(
            "{key} {} is accessible by other users (mode {:03o}): a secret file must be its owner's only; run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_shared_secret_file(_key: &str, _path: &Path) -> Result<(), Error> {
    Ok(())
}

/// Where a setting's value came from, as `config show` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env,
    /// The config file.
    File,
    /// The built-in default.
    Default,
}

/// One row of `config show`: `{key, value, source}`; secrets are redacted.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    /// The key, named as in the file.
    pub key: &'static str,
    /// The effective value (`null` when unset); passwords shown as `***`.
    pub value: Option<String>,
    /// Where it came from.
    pub source: Source,
}

/// Everything the CLI resolved from flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// The database URL (password included: never print it as is).
    pub database_url: (Option<String>, Source),
    /// The audit actor.
    pub actor: (String, Source),
    /// The trash retention text, e.g. `30d`.
    pub trash_retention: (Option<String>, Source),
    /// The invite link template.
    pub invite_link: (Option<String>, Source),
    /// The SMTP settings.
    pub smtp: Option<SmtpConfig>,
}

impl Resolved {
    /// The rows of `config show`, secrets redacted.
    pub fn settings(&self) -> Vec<Setting> {
        let redacted_url = self.database_url.0.as_deref().map(|u| match DatabaseUrl::parse(u) {
            Ok(url) => url.to_string(),
            Err(_) => "***".to_owned(),
        });
        let mut rows = vec![
            Setting {
                key: "config_file",
                value: self.file.as_ref().map(|p| p.display().to_string()),
                source: if self.file.is_some() {
                    Source::File
                } else {
                    Source::Default
                },
            },
            Setting {
                key: "database_url",
                value: redacted_url.or_else(|| Some(DatabaseUrl::DEFAULT.to_owned())),
                source: self.database_url.1,
            },
            Setting {
                key: "actor",
                value: Some(self.actor.0.clone()),
                source: self.actor.1,
            },
            Setting {
                key: "trash_retention",
                value: self.trash_retention.0.clone().or_else(|| Some("30d".into())),
                source: self.trash_retention.1,
            },
            Setting {
                key: "invite_link",
                value: self.invite_link.0.clone(),
                source: self.invite_link.1,
            },
        ];
        let smtp = self.smtp.as_ref();
        let file_or_default = if smtp.is_some() { Source::File } else { Source::Default };
        for (key, value) in [
            ("smtp.host", smtp.map(|s| s.host.clone())),
            ("smtp.port", smtp.and_then(|s| s.port).map(|p| p.to_string())),
            ("smtp.from", smtp.map(|s| s.from.clone())),
            ("smtp.username", smtp.and_then(|s| s.username.clone())),
            (
                "smtp.password_file",
                smtp.and_then(|s| s.password_file.as_ref())
                    .map(|p| p.display().to_string()),
            ),
            (
                "smtp.tls",
                smtp.map(|s| {
                    serde_json::to_value(s.tls)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                }),
            ),
        ] {
            rows.push(Setting {
                key,
                value,
                source: file_or_default,
            });
        }
        rows
    }
}
