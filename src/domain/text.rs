//! Free text that comes from an operator or an import file (person names, provider ids…):
//! the checks every such field goes through, and how a rejected value is echoed back.

use crate::error::Error;

/// How many characters of a rejected value an error message repeats: enough to recognise
/// it, never enough to flood a terminal or a log with a hostile megabyte.
pub const ECHO_CHARS: usize = 64;

/// A value as an error message shows it: quoted and escaped like `{:?}` (so control
/// characters cannot reach the terminal) and cut after [`ECHO_CHARS`] characters with the
/// total length noted.
pub fn shown(text: &str) -> String {
    let count = text.chars().count();
    if count <= ECHO_CHARS {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(ECHO_CHARS).collect();
        format!("{head:?}… ({count} characters)")
    }
}

/// Checks one free-text field: at most `max_chars` characters, no control characters
/// (Unicode category Cc: NUL, ESC, newlines, DEL…) and no invisible or text-direction
/// characters ([`is_invisible`]). Control characters are refused rather
/// than stored because they rewrite an operator's terminal when printed, break table output,
/// and NUL cannot be stored in PostgreSQL `text` at all, so both backends refuse the same
/// input. Returns the value trimmed, or `None` when it is empty.
///
/// Errors: [`Error::Invalid`] naming the field and the rule.
pub fn clean_text(field: &str, value: &str, max_chars: usize) -> Result<Option<String>, Error> {
    if value.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "invalid {field} {}: control characters are not allowed (text copied from a table? take the value from -o json or --wide output)",
            shown(value)
        )));
    }
    if value.chars().any(is_invisible) {
        return Err(Error::Invalid(format!(
            "invalid {field} {}: invisible or text-direction characters are not allowed",
            shown(value)
        )));
    }
    let value = value.trim();
    if value.chars().count() > max_chars {
        return Err(Error::Invalid(format!(
            "invalid {field} {}: at most {max_chars} characters",
            shown(value)
        )));
    }
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// Whether `c` is invisible or changes the direction of the text around it: zero-width
/// characters (U+200B–U+200D, U+2060–U+2064, U+FEFF, U+180E, U+034F, U+00AD), bidi marks,
/// embeddings, overrides and isolates (U+200E, U+200F, U+061C, U+202A–U+202E, U+2066–U+2069),
/// and the line and paragraph separators U+2028, U+2029. Such a character makes two names
/// that print alike differ, or reorders what a terminal shows (the "Trojan Source" trick,
/// CVE-2021-42574), so names refuse it as they refuse control characters.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// The longest person name part (given or family name) accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// The longest identity-provider name accepted, in characters (the column's limit).
pub const MAX_PROVIDER_CHARS: usize = 128;
/// The longest subject accepted, in characters: OpenID Connect Core 1.0 §2 caps `sub` at
/// 255 ASCII characters.
pub const MAX_SUBJECT_CHARS: usize = 255;

/// Checks an external identity (provider, subject) and returns it trimmed. Errors:
/// [`Error::Invalid`] for an empty part, control characters, or a part longer than
/// [`MAX_PROVIDER_CHARS`] / [`MAX_SUBJECT_CHARS`].
pub fn clean_identity(provider: &str, subject: &str) -> Result<(String, String), Error> {
    let provider = clean_text("provider", provider, MAX_PROVIDER_CHARS)?
        .ok_or_else(|| Error::Invalid("the provider is empty".into()))?;
    let subject = clean_text("subject", subject, MAX_SUBJECT_CHARS)?
        .ok_or_else(|| Error::Invalid("the subject is empty".into()))?;
    Ok((provider, subject))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_when_shown() {
        let long = "x".repeat(10_000);
        let s = shown(&long);
        assert!(s.len() < 120, "{s}");
        assert!(s.contains("10000 characters"));
        assert_eq!(shown("a\u{1b}b"), "\"a\\u{1b}b\"");
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(clean_text("given name", "a\u{1b}]0;owned\u{7}", 10).is_err());
        assert!(clean_text("given name", "a\0b", 10).is_err());
        assert!(clean_text("given name", "a\nb", 10).is_err());
        assert_eq!(clean_text("given name", " Zoë ", 10).ok(), Some(Some("Zoë".into())));
        assert_eq!(clean_text("given name", "  ", 10).ok(), Some(None));
        assert!(clean_text("given name", "abc", 2).is_err());
    }
}
