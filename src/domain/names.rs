use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A capability key: dotted lower-case segments (`docs.read`), where a trailing `*` segment
/// is a prefix wildcard (`root.*` grants everything under `root`: the capability of the root
/// workspace's `root` role, as in Fireback's workspace model).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Capability(String);

impl Capability {
    /// Errors: [`Error::Invalid`] for an empty segment, characters outside `[a-z0-9_-]`, or a
    /// `*` anywhere but as the whole last segment.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let bad = |why: &str| Error::Invalid(format!("invalid capability {}: {why}", super::shown(text)));
        if text.is_empty() || text.len() > 128 {
            return Err(bad("must be 1 to 128 characters"));
        }
        let segments: Vec<&str> = text.split('.').collect();
        for (i, seg) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            if *seg == "*" && last {
                continue;
            }
            if seg.is_empty()
                || !seg
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                return Err(bad(
                    "segments are lower-case letters, digits, '_' or '-'; '*' only as the last segment",
                ));
            }
        }
        Ok(Self(text.to_owned()))
    }

    /// The key as given (`docs.read`, `root.*`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this capability grants `wanted` (exact match, or prefix match for `x.*`).
    pub fn grants(&self, wanted: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => wanted.starts_with(prefix) || self.0 == "*",
            None => self.0 == wanted,
        }
    }
}

/// Parses a comma-separated capability list (`a.read,b.*`), dropping duplicates and keeping
/// the order given.
pub fn parse_capabilities(text: &str) -> Result<Vec<Capability>, Error> {
    let mut out: Vec<Capability> = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let cap = Capability::parse(part)?;
        if !out.contains(&cap) {
            out.push(cap);
        }
    }
    Ok(out)
}

/// A workspace-type slug: lower-case letters, digits, `_`, `-`, 1–64 characters, starting
/// with a letter or digit.
pub fn validate_slug(text: &str) -> Result<(), Error> {
    let ok = (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid slug {}: lower-case letters, digits, '_' and '-', 1 to 64 characters",
            super::shown(text)
        )))
    }
}

/// Why `text` could be mistaken for something other than a name, if it could: names are
/// never ids. Tables print ids shortened to 8 or more characters and every `<user>`, `<W>` or
/// `<role>` argument accepts such a prefix, so a name of 8 or more hex digits (dashes
/// allowed, any case) could be another object's id prefix, and a command given it could act
/// on that object; a name starting with `-` reads as an option. Refused for new user,
/// workspace and role names everywhere (external sign-in picks another username).
pub fn name_mistaken_for(text: &str) -> Option<&'static str> {
    if text.starts_with('-') {
        return Some("it starts with '-', so it would read as an option");
    }
    let digits = text.chars().filter(char::is_ascii_hexdigit).count();
    if digits >= 8 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Some(
            "it has the shape of an id or an id prefix (8 or more hex digits), so it could be taken for another object's id",
        );
    }
    None
}

/// A role name: letters, digits, `.`, `_`, `-`, 1–64 characters, not mistakable for an id
/// ([`name_mistaken_for`]).
pub fn validate_role_name(text: &str) -> Result<(), Error> {
    if let Some(why) = name_mistaken_for(text) {
        return Err(Error::Invalid(format!(
            "invalid role name {}: {why}",
            super::shown(text)
        )));
    }
    let ok = (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid role name {}: letters, digits, '.', '_' and '-', 1 to 64 characters",
            super::shown(text)
        )))
    }
}

/// A workspace name: 1–200 characters, no control characters, no invisible or
/// text-direction characters ([`super::text::is_invisible`]), not a uuid (so a `<W>`
/// argument is never ambiguous).
pub fn validate_workspace_name(text: &str) -> Result<(), Error> {
    if let Some(why) = name_mistaken_for(text.trim()) {
        return Err(Error::Invalid(format!(
            "invalid workspace name {}: {why}",
            super::shown(text)
        )));
    }
    let ok = (1..=200).contains(&text.chars().count())
        && !text.chars().any(char::is_control)
        && !text.chars().any(super::text::is_invisible)
        && text.trim() == text
        && uuid::Uuid::parse_str(text).is_err();
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid workspace name {}: 1 to 200 characters, no control, invisible or text-direction characters, no surrounding spaces, not a uuid",
            super::shown(text)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_capabilities_grant_by_prefix() {
        let root = Capability::parse("root.*").expect("valid");
        assert!(root.grants("root.users.delete"));
        assert!(!root.grants("rootless.x"));
        let exact = Capability::parse("docs.read").expect("valid");
        assert!(exact.grants("docs.read"));
        assert!(!exact.grants("docs.write"));
    }

    #[test]
    fn names_that_read_as_ids_or_options_are_refused() {
        for bad in [
            "deadbeef",
            "DEADBEEF",
            "0192f3a1-7c2b",
            "01234567",
            "-admin",
            "--yes",
            "abcdef01-",
        ] {
            assert!(name_mistaken_for(bad).is_some(), "{bad:?}");
            assert!(validate_role_name(bad).is_err(), "{bad:?}");
            assert!(validate_workspace_name(bad).is_err(), "{bad:?}");
        }
        for good in ["deadbee", "alice", "abcdefg1", "a-b", "Acme", "team-2024"] {
            assert!(name_mistaken_for(good).is_none(), "{good:?}");
        }
        assert!(
            name_mistaken_for("dead-beef-cafe").is_some(),
            "12 hex digits with dashes"
        );
    }

    #[test]
    fn malformed_capabilities_are_rejected() {
        for bad in ["", "a..b", "A.b", "a.*.b", "a b"] {
            assert!(Capability::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_capabilities("a.read, a.read,b.*").map(|v| v.len()).ok(), Some(2));
    }
}
