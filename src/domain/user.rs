use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use uuid::Uuid;

use super::Timestamp;
use crate::error::Error;

/// A validated username: 2–64 characters of ASCII letters, digits, `.`, `_` and `-` (this
/// project's rule, chosen so a username is safe in URLs, paths and shells). No `@` (so a
/// `<user>` argument with `@` is always an email) and no spaces. Uniqueness is
/// case-insensitive; the stored spelling keeps the case it was created with.
///
/// A username may not have the shape of another `<user>` form either: a uuid (32 hex digits,
/// or 36 with hyphens) would be resolved as an id, so `user delete` would act on a different
/// user. Emails (`@`) and phone numbers (`+`) are already outside the alphabet. The database
/// enforces the same rule (constraint `users_username_not_an_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Validates `text`. Errors: [`Error::Invalid`] naming the rule that failed.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let len = text.chars().count();
        if !(2..=64).contains(&len) {
            return Err(Error::Invalid(format!(
                "invalid username {}: must be 2 to 64 characters long",
                super::shown(text)
            )));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(Error::Invalid(format!(
                "invalid username {}: {bad:?} is not allowed (letters, digits, '.', '_' and '-' only)",
                super::shown(text)
            )));
        }
        if Uuid::parse_str(text).is_ok() {
            return Err(Error::Invalid(format!(
                "invalid username {}: it has the shape of a user id (uuid), so it could not be told apart from one",
                super::shown(text)
            )));
        }
        if let Some(why) = super::names::name_mistaken_for(text) {
            return Err(Error::Invalid(format!(
                "invalid username {}: {why}",
                super::shown(text)
            )));
        }
        Ok(Self(text.to_owned()))
    }

    /// The username as given at creation (case kept).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The instance-wide role of a user (`users.role`): `admin` administers the whole instance;
/// `user` is everyone else. Workspace roles are separate (memberships). An external user is
/// never `admin` (the database's `CHECK (NOT (is_external AND role = 'admin'))`), and the
/// instance always keeps one active admin.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceRole {
    /// Administers the whole instance (`admin`).
    Admin,
    /// Everyone else (`user`), the default.
    User,
}

impl InstanceRole {
    /// The stored and printed name: `admin` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::User => "user",
        }
    }
}

impl FromStr for InstanceRole {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "admin" => Ok(Self::Admin),
            "user" => Ok(Self::User),
            other => Err(Error::Invalid(format!(
                "unknown instance role {other:?} (expected admin or user; for a role of a workspace, add --workspace W)"
            ))),
        }
    }
}

impl fmt::Display for InstanceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user account as hooks and services see it. The password hash is deliberately absent:
/// it is read only by the login path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The user's id (a uuid v7, so ids sort by creation time).
    pub id: Uuid,
    /// The [`Person`] behind the user.
    pub person_id: Uuid,
    /// The username as created (unique case-insensitively; see [`Username`]).
    pub username: String,
    /// The instance role.
    pub role: InstanceRole,
    /// A federated user known by an external identity provider: a grant-only recipient with
    /// no home folder and no storage, never admin (both enforced by the database).
    pub is_external: bool,
    /// `false` when disabled, in the trash or awaiting erasure: such a user cannot log in.
    pub active: bool,
    /// Whether a password hash is stored (external users and users created without a
    /// password have none and cannot sign in with a password).
    pub has_password: bool,
    /// Storage quota in bytes; `None` means the instance default.
    pub storage_quota_bytes: Option<i64>,
    /// Storage in use, in bytes; always 0 for an external user.
    pub storage_used_bytes: i64,
    /// When the user was created.
    pub created_at: Timestamp,
    /// When the user row last changed.
    pub updated_at: Timestamp,
    /// `None` until the first successful login. `on_user_login` fires before it is stamped,
    /// so hooks can detect a first login (the OxiCloud user-lifecycle hook design).
    pub last_login_at: Option<Timestamp>,
    /// Set while the user is in the trash (admin delete).
    pub deleted_at: Option<Timestamp>,
    /// When a trashed user becomes due for purging.
    pub purge_after: Option<Timestamp>,
}

impl User {
    /// True when the user is in the trash (admin-deleted, restorable until `purge_after`).
    pub fn is_trashed(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// The human behind a user (Fireback's person/user split). A person may exist without a user
/// (an invited person who has not signed up yet). Every field but the id is personal data,
/// erased by a GDPR purge (GDPR Art. 17).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Person {
    /// The person's id.
    pub id: Uuid,
    /// Given (first) name.
    pub given_name: Option<String>,
    /// Family (last) name.
    pub family_name: Option<String>,
    /// The name to show; derived from the given and family names at creation.
    pub display_name: Option<String>,
    /// A contact phone number; a phone used to log in is a [`super::Passport`] instead.
    pub phone: Option<String>,
    /// Preferred locale, as the application stores it (e.g. a BCP 47 tag such as `de-DE`).
    pub locale: Option<String>,
}

/// A user with the person behind it and its primary passports: the shape `user list` and
/// `user show` print. The JSON field names are the field names below and are kept stable
/// (scripts read them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    /// [`User::id`].
    pub id: Uuid,
    /// [`User::username`].
    pub username: String,
    /// The primary email passport, normalized.
    pub email: Option<String>,
    /// The primary phone passport (E.164).
    pub phone: Option<String>,
    /// [`User::role`].
    pub role: InstanceRole,
    /// [`User::is_external`].
    pub is_external: bool,
    /// [`User::active`].
    pub active: bool,
    /// [`User::has_password`].
    pub has_password: bool,
    /// [`Person::given_name`].
    pub given_name: Option<String>,
    /// [`Person::family_name`].
    pub family_name: Option<String>,
    /// [`Person::display_name`].
    pub display_name: Option<String>,
    /// [`User::storage_used_bytes`], in bytes.
    pub storage_used_bytes: i64,
    /// [`User::created_at`].
    pub created_at: Timestamp,
    /// [`User::last_login_at`].
    pub last_login_at: Option<Timestamp>,
    /// [`User::deleted_at`]: set while the user is in the trash.
    pub deleted_at: Option<Timestamp>,
    /// [`User::purge_after`]: when a trashed user becomes due for purging.
    pub purge_after: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_documented_alphabet() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("a.b_c-9").is_ok());
        assert!(Username::parse("a").is_err());
        assert!(Username::parse(&"x".repeat(65)).is_err());
        assert!(Username::parse("alice@example.com").is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse("jösé").is_err());
        assert!(Username::parse("01a2024e284076eb8268c1520941d089").is_err());
        assert!(Username::parse("01a2024e-2840-76eb-8268-c1520941d089").is_err());
        assert!(
            Username::parse("01a2024e284076eb8268c1520941d08").is_err(),
            "an id prefix's shape"
        );
        assert!(
            Username::parse("01a2024e-2840").is_err(),
            "an id prefix's shape, dashed"
        );
        assert!(Username::parse("-alice").is_err(), "an option's shape");
        assert!(Username::parse("facade").is_ok(), "hex letters, too short for a prefix");
    }

    #[test]
    fn instance_roles_round_trip() {
        for role in [InstanceRole::Admin, InstanceRole::User] {
            assert_eq!(role.as_str().parse::<InstanceRole>().ok(), Some(role));
        }
        assert!("root".parse::<InstanceRole>().is_err());
    }
}
