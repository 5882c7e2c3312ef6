//! How callers name users: [`UserRef`] (a `<user>` argument) and [`UserFilter`] (a listing).

use uuid::Uuid;

use super::{Email, InstanceRole, Phone};
use crate::error::Result;

/// How a `<user>` argument names a user: by id, username, email passport or phone passport.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// The user's id.
    Id(Uuid),
    /// The username, matched case-insensitively.
    Username(String),
    /// An email passport of the user (any of them, not only the primary).
    Email(Email),
    /// A phone passport of the user.
    Phone(Phone),
}

impl UserRef {
    /// A uuid is an id, text with `@` an email, text starting with `+` a phone number (after
    /// the separators [`Phone::parse`] drops, so `(+49) 151…` is a phone as it is when a
    /// user is created with it), and anything else a username. Errors:
    /// [`crate::Error::Invalid`] for a malformed email/phone, or for control characters,
    /// which no form can contain (and PostgreSQL cannot even compare: a NUL is an encoding
    /// error there, so it is refused here on both backends).
    pub fn parse(text: &str) -> Result<Self> {
        if text.chars().any(char::is_control) {
            return Err(crate::Error::Invalid(format!(
                "invalid user {}: control characters are not allowed (text copied from a table? take the value from -o json or --wide output)",
                super::shown(text)
            )));
        }
        let text = text.trim();
        if let Ok(id) = Uuid::parse_str(text) {
            Ok(Self::Id(id))
        } else if text.contains('@') {
            Ok(Self::Email(Email::parse(text)?))
        } else if text.trim_start_matches(Phone::SEPARATORS).starts_with('+') {
            Ok(Self::Phone(Phone::parse(text)?))
        } else {
            Ok(Self::Username(text.to_owned()))
        }
    }
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Username(u) => f.write_str(u),
            Self::Email(e) => write!(f, "{e}"),
            Self::Phone(p) => write!(f, "{p}"),
        }
    }
}

/// Filters and keyset pagination of a user listing (`Accounts::list`).
#[derive(Debug, Clone)]
pub struct UserFilter {
    /// `Some(true)` external users only, `Some(false)` internal only.
    pub external: Option<bool>,
    /// Users with this instance role only.
    pub role: Option<InstanceRole>,
    /// Members of this workspace only.
    pub workspace_id: Option<Uuid>,
    /// Case-insensitive prefix of the username or of the primary email.
    pub search: Option<String>,
    /// List the trash instead of live users.
    pub trashed: bool,
    /// Page size: at most this many users ([`UserFilter::DEFAULT_LIMIT`] by default).
    pub limit: i64,
    /// Usernames after this one (lower-cased comparison): the cursor of the previous page.
    pub after: Option<String>,
}

impl UserFilter {
    /// The page size of [`UserFilter::default`] (and of `user list` without `--limit`).
    pub const DEFAULT_LIMIT: i64 = 100;
}

impl Default for UserFilter {
    /// Every live user, first page of [`UserFilter::DEFAULT_LIMIT`] rows.
    fn default() -> Self {
        Self {
            external: None,
            role: None,
            workspace_id: None,
            search: None,
            trashed: false,
            limit: Self::DEFAULT_LIMIT,
            after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_is_read_as_a_phone_whatever_separator_comes_first() {
        for text in [
            "+4915112345678",
            "(+49) 151 1234 5678",
            "-+4915112345678",
            " .+49 151 12345678",
        ] {
            assert_eq!(
                UserRef::parse(text).ok(),
                Phone::parse(text).ok().map(UserRef::Phone),
                "{text:?}"
            );
        }
        assert_eq!(UserRef::parse("-alice").ok(), Some(UserRef::Username("-alice".into())));
    }
}
