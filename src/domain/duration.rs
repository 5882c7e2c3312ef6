use crate::error::Error;

/// The longest duration accepted anywhere (invite expiry, erasure delay, trash retention,
/// sweeper budget, monitoring window): 1,000 years. Longer values are typos or attacks: they
/// overflow the timestamp arithmetic, or reach dates past year 9999, whose RFC 3339 text
/// (`+10027-…`, SQLite's storage) sorts before today's and would be pruned at once.
pub const MAX_DURATION: chrono::Duration = chrono::Duration::days(365_250);

/// Parses a human duration such as `7d`, `30d`, `12h`, `10m` or `1w 2d` (humantime syntax).
///
/// Errors: [`Error::Invalid`] for anything humantime does not accept, a zero duration, or one
/// longer than [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<chrono::Duration, Error> {
    let shown = super::shown(text);
    let std = humantime::parse_duration(text.trim())
        .map_err(|e| Error::Invalid(format!("invalid duration {shown}: {e} (examples: 7d, 12h, 10m)")))?;
    if std.is_zero() {
        return Err(Error::Invalid(format!(
            "invalid duration {shown}: must be longer than zero"
        )));
    }
    match chrono::Duration::from_std(std) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(Error::Invalid(format!("invalid duration {shown}: at most 1000 years"))),
    }
}

/// `at + duration`, refusing a duration outside (0, [`MAX_DURATION`]] instead of
/// overflowing. Library callers pass `chrono::Duration`s that never went through
/// [`parse_duration`]; this is where they are bounded. Errors: [`Error::Invalid`].
pub fn after(at: super::Timestamp, duration: chrono::Duration) -> Result<super::Timestamp, Error> {
    if duration <= chrono::Duration::zero() || duration > MAX_DURATION {
        return Err(Error::Invalid(
            "a duration must be longer than zero and at most 1000 years".into(),
        ));
    }
    at.checked_add_signed(duration)
        .ok_or_else(|| Error::Invalid("the duration reaches past the representable dates".into()))
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
        assert!(matches!(parse_duration("270000y"), Err(Error::Invalid(_))));
        assert!(matches!(parse_duration("1001y"), Err(Error::Invalid(_))));
        assert!(parse_duration("1000y").is_ok());
    }
}
