use crate::error::Error;

/// Parses a human duration such as `7d`, `30d`, `12h`, `10m` or `1w 2d` (humantime syntax).
///
/// Errors: [`Error::Invalid`] for anything humantime does not accept, or a zero duration.
pub fn parse_duration(text: &str) -> Result<chrono::Duration, Error> {
    let std = humantime::parse_duration(text.trim())
        .map_err(|e| Error::Invalid(format!("invalid duration {text:?}: {e} (examples: 7d, 12h, 10m)")))?;
    if std.is_zero() {
        return Err(Error::Invalid(format!(
            "invalid duration {text:?}: must be longer than zero"
        )));
    }
    chrono::Duration::from_std(std).map_err(|_| Error::Invalid(format!("invalid duration {text:?}: too long")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_hours_and_minutes_parse() {
        assert_eq!(parse_duration("7d").ok(), Some(chrono::Duration::days(7)));
        assert_eq!(parse_duration("10m").ok(), Some(chrono::Duration::minutes(10)));
        assert_eq!(parse_duration("1w 2d").ok(), Some(chrono::Duration::days(9)));
    }

    #[test]
    fn garbage_and_zero_are_invalid() {
        assert!(matches!(parse_duration("soon"), Err(Error::Invalid(_))));
        assert!(matches!(parse_duration("0s"), Err(Error::Invalid(_))));
    }
}
