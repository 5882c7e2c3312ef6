use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use uuid::Uuid;

use super::Timestamp;
use crate::error::Error;

/// The kind of a login identifier, a "passport" in Fireback's workspace model: a user signs
/// in with an email address or a phone number.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassportKind {
    /// An email address ([`Email`]).
    Email,
    /// A phone number in E.164 form ([`Phone`]).
    Phone,
}

impl PassportKind {
    /// The stored and printed name: `email` or `phone`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
        }
    }
}

impl FromStr for PassportKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "email" => Ok(Self::Email),
            "phone" => Ok(Self::Phone),
            other => Err(Error::Invalid(format!("unknown passport kind {other:?}"))),
        }
    }
}

/// A login identifier of a user, stored normalized and unique across all users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Passport {
    /// The passport's id.
    pub id: Uuid,
    /// The user it signs in.
    pub user_id: Uuid,
    /// Email or phone.
    pub kind: PassportKind,
    /// The normalized value ([`Email`] or [`Phone`] form), unique across all users.
    pub value: String,
    /// When the user proved to own it (e.g. by accepting an invite sent to it); `None` when
    /// unverified.
    pub verified_at: Option<Timestamp>,
    /// The user's primary passport of its kind (what [`super::UserView`]'s `email` and
    /// `phone` show).
    pub is_primary: bool,
    /// When it was added.
    pub created_at: Timestamp,
}

/// A normalized email address: trimmed and lower-cased, valid by RFC 5322's `addr-spec`
/// (checked by the `email_address` crate: `a,b@example.com` and `we<ird>@ex.com` are refused,
/// so a naive mailer never sees two recipients), with a non-empty local part of at most 64
/// characters (RFC 5321 §4.5.3.1.1), at most 254 characters in all (RFC 5321 §4.5.3.1.3, less
/// the path's angle brackets), and a dotted host name whose labels are letters, digits and
/// inner hyphens (RFC 1035 §2.3.1, RFC 5321 §4.1.2). Quoted local parts, comments and
/// address literals (`user@[192.0.2.1]`) are refused: valid, but no provider issues them and
/// many mailers mishandle them. Lower-casing the local part is a deliberate simplification:
/// no mainstream provider treats it as case-sensitive, and it makes uniqueness
/// case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Errors: [`Error::Invalid`] for a malformed address, or one with a control character
    /// anywhere (a trailing newline included), which no `<user>` argument may hold
    /// ([`super::UserRef::parse`]): an address is found by the text that created it.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let value = text.trim().to_lowercase();
        let bad = || Error::Invalid(format!("invalid email address {}", super::shown(text)));
        if text.chars().any(char::is_control) {
            return Err(bad());
        }
        if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let options = email_address::Options::default()
            .without_display_text()
            .without_domain_literal();
        if email_address::EmailAddress::parse_with_options(&value, options).is_err() {
            return Err(bad());
        }
        let (local, domain) = value.rsplit_once('@').ok_or_else(bad)?;
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if local.is_empty()
            || local.len() > 64
            || local.contains(['"', '(', ')', '\\', ',', '<', '>', '[', ']', ';', ':'])
            || !domain.contains('.')
            || !domain.split('.').all(label_ok)
        {
            return Err(bad());
        }
        Ok(Self(value))
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number in E.164 form (`+` then 7 to 15 digits, ITU-T E.164). Spaces, dashes, dots
/// and parentheses are accepted on input and dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// The separators accepted between the digits (and before the `+`) and dropped.
    pub const SEPARATORS: &'static [char] = &[' ', '-', '.', '(', ')'];

    /// Errors: [`Error::Invalid`] when the number is not `+` and 7–15 digits (after the
    /// [`Phone::SEPARATORS`] and surrounding spaces are dropped; a control character, a
    /// trailing newline included, is refused as in any `<user>` argument).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let compact: String = text.trim().chars().filter(|c| !Self::SEPARATORS.contains(c)).collect();
        let digits = compact.strip_prefix('+').unwrap_or("");
        let ok = (7..=15).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0')
            && !text.chars().any(char::is_control);
        if !ok {
            return Err(Error::Invalid(format!(
                "invalid phone number {}: use E.164 form, e.g. +4915112345678",
                super::shown(text)
            )));
        }
        Ok(Self(compact))
    }

    /// The number in E.164 form (`+4915112345678`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_to_lower_case() {
        assert_eq!(
            Email::parse(" Alice@Example.COM ").map(|e| e.0).ok(),
            Some("alice@example.com".into())
        );
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a@b",
            "a@@b.c",
            "a b@c.d",
            "a@.c",
            "a@c..d",
            "a,b@example.com",
            "we<ird>@ex.com",
            "user@-bad-.com",
            "\"a b\"@example.com",
            "user@[192.0.2.1]",
            "Alice <alice@example.com>",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn ordinary_addresses_are_accepted() {
        for good in [
            "alice@example.com",
            "a.b+tag@sub.example.co.uk",
            "o'brien@xn--bcher-kva.de",
            "x_y-z@a-b.io",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn phones_are_normalized_to_e164() {
        assert_eq!(
            Phone::parse("+49 151 1234-5678").map(|p| p.0).ok(),
            Some("+4915112345678".into())
        );
        assert!(Phone::parse("015112345678").is_err());
        assert!(Phone::parse("+12").is_err());
        assert!(Phone::parse("+49abc1234567").is_err());
        // A control character, even where trimming would drop it, is refused (a `<user>`
        // argument holding it is, so the number would not be found by that text).
        assert!(Phone::parse("+4915112345678\n").is_err());
        assert!(Email::parse("alice@example.com\n").is_err());
        assert!(Email::parse("\talice@example.com").is_err());
    }
}
