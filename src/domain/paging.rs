//! Keyset paging of listings ([`Page`]) and the unique id prefixes an operator may type
//! back from a table ([`IdPrefix`]).

use uuid::Uuid;

/// One page of a keyset-paged listing: at most `limit` rows after the row named by `after`.
/// Every page costs the same however deep it is (no `OFFSET`). What a cursor names is
/// documented by each listing: the last row's username for users, name for workspaces, slug
/// for workspace types, `USERNAME/ROLE` for the members of a workspace, id for roles,
/// invites and sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// At most this many rows (at least 1).
    pub limit: i64,
    /// The cursor of the previous page's last row; `None` for the first page.
    pub after: Option<String>,
}

impl Page {
    /// The page size of [`Page::default`] (and of every list command without `--limit`).
    pub const DEFAULT_LIMIT: i64 = 100;

    /// The first page of `limit` rows.
    pub fn first(limit: i64) -> Self {
        Self { limit, after: None }
    }

    /// The page of `limit` rows after `cursor`.
    pub fn after(limit: i64, cursor: impl Into<String>) -> Self {
        Self {
            limit,
            after: Some(cursor.into()),
        }
    }
}

impl Default for Page {
    /// The first page of [`Page::DEFAULT_LIMIT`] rows.
    fn default() -> Self {
        Self::first(Self::DEFAULT_LIMIT)
    }
}

/// The fewest characters of an id prefix that is looked up: tables show ids cut to at
/// least this many.
pub const MIN_ID_PREFIX: usize = 8;

/// A prefix of an id's hyphenated form (`0193a2b4-5c`), as tables show it: at least
/// [`MIN_ID_PREFIX`] characters, hexadecimal digits with hyphens only where the full form
/// has them. Its ids form one range of the id order, so a lookup is an index range scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdPrefix {
    /// The smallest id with the prefix.
    pub low: Uuid,
    /// The largest id with the prefix.
    pub high: Uuid,
}

impl IdPrefix {
    /// The prefix `text` stands for, or `None` when it is shorter than [`MIN_ID_PREFIX`],
    /// a whole id, or not the beginning of a hyphenated id (letters past `f`, misplaced
    /// hyphens). Upper-case hex digits are accepted.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() < MIN_ID_PREFIX || text.len() >= 36 {
            return None;
        }
        let mut digits = String::with_capacity(32);
        for (i, c) in text.chars().enumerate() {
            match (i, c) {
                (8 | 13 | 18 | 23, '-') => {}
                (8 | 13 | 18 | 23, _) => return None,
                (_, c) if c.is_ascii_hexdigit() => digits.push(c.to_ascii_lowercase()),
                _ => return None,
            }
        }
        let pad = |fill: char| {
            let mut full = digits.clone();
            full.extend(std::iter::repeat_n(fill, 32 - digits.len()));
            Uuid::parse_str(&full).ok()
        };
        Some(Self {
            low: pad('0')?,
            high: pad('f')?,
        })
    }
}

/// The error of a prefix that names more than one row: exit 2, the candidates named (as
/// git does for an ambiguous abbreviated commit).
/// The error of an argument that is both an object's name and a prefix of another object's
/// id (git's "ambiguous refname"): exit 2, both named, so the operator gives the whole id or
/// the other object's longer prefix. Names are never ids: new names of this shape are
/// refused ([`super::name_mistaken_for`]); this catches the ones created before that rule.
pub(crate) fn name_or_id(what: &str, text: &str, named: uuid::Uuid, others: &[uuid::Uuid]) -> crate::Error {
    crate::Error::Invalid(format!(
        "{what} {} is ambiguous: it is the name of {what} {named} and a prefix of the id of {}; give the whole id",
        super::shown(text),
        others.iter().map(uuid::Uuid::to_string).collect::<Vec<_>>().join(", ")
    ))
}

pub(crate) fn ambiguous(what: &str, prefix: &str, candidates: &[String]) -> crate::Error {
    crate::Error::Invalid(format!(
        "{what} id prefix {} is ambiguous; candidates: {} (give more characters)",
        super::shown(prefix),
        candidates.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_is_eight_or_more_characters_of_the_hyphenated_form() {
        assert!(IdPrefix::parse("0193a2b").is_none(), "too short");
        assert!(IdPrefix::parse("0193a2bg").is_none(), "not hex");
        assert!(IdPrefix::parse("0193a2b4x").is_none());
        assert!(IdPrefix::parse("0193a2b45").is_none(), "a hyphen belongs at 8");
        assert!(
            IdPrefix::parse("0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b").is_none(),
            "whole ids are ids"
        );
        let p = IdPrefix::parse("0193A2B4-5c").expect("prefix");
        assert_eq!(p.low.to_string(), "0193a2b4-5c00-0000-0000-000000000000");
        assert_eq!(p.high.to_string(), "0193a2b4-5cff-ffff-ffff-ffffffffffff");
        assert!(IdPrefix::parse("0193a2b4").is_some());
        assert!(IdPrefix::parse("0193a2b4-").is_some());
    }
}
