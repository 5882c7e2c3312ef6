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

/// Parses when an erasure request falls due, relative to `now`: whole days and weeks (`30d`,
/// `2w`, `1w 2d`; `0d` means "at the next sweep"), or an RFC 3339 date (`2027-01-31`,
/// midnight UTC) or date-time (`2027-01-31T12:00:00Z`). Minutes, hours and months are
/// refused on purpose: `1m` read as a month by one operator is 60 seconds to humantime, and
/// GDPR Art. 12(3) counts the deadline in days and months.
///
/// Errors: [`Error::Invalid`] for any other text, a date in the past, or a delay longer than
/// [`MAX_DURATION`].
pub fn parse_erasure_due(text: &str, now: super::Timestamp) -> Result<super::Timestamp, Error> {
    let shown = super::shown(text);
    let text = text.trim();
    let date = chrono::DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&chrono::Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        });
    if let Some(due) = date {
        if due.date_naive() < now.date_naive() {
            return Err(Error::Invalid(format!("invalid due date {shown}: it is in the past")));
        }
        if due - now > MAX_DURATION {
            return Err(Error::Invalid(format!(
                "invalid due date {shown}: at most 1000 years ahead"
            )));
        }
        return Ok(due.max(now));
    }
    let bad = || {
        Error::Invalid(format!(
            "invalid due time {shown}: use days or weeks (30d, 2w, 0d for the next sweep) or an RFC 3339 date (2027-01-31)"
        ))
    };
    let mut days: i64 = 0;
    let mut any = false;
    for token in text.split_whitespace() {
        let split = token.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = token.split_at(split);
        let number: i64 = number.parse().map_err(|_| bad())?;
        let per = match unit {
            "d" | "day" | "days" => 1,
            "w" | "week" | "weeks" => 7,
            _ => return Err(bad()),
        };
        days = number
            .checked_mul(per)
            .and_then(|n| days.checked_add(n))
            .filter(|d| *d <= MAX_DURATION.num_days())
            .ok_or_else(|| Error::Invalid(format!("invalid due time {shown}: at most 1000 years")))?;
        any = true;
    }
    if !any {
        return Err(bad());
    }
    now.checked_add_signed(chrono::Duration::days(days)).ok_or_else(|| {
        Error::Invalid(format!(
            "invalid due time {shown}: it reaches past the representable dates"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erasure_due_times_are_days_weeks_or_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .expect("date")
            .with_timezone(&chrono::Utc);
        let due = |t: &str| parse_erasure_due(t, now).map(|d| d.to_rfc3339());
        assert_eq!(due("0d").ok(), Some(now.to_rfc3339()));
        assert_eq!(due("30d").ok(), Some("2027-01-01T10:00:00+00:00".into()));
        assert_eq!(due("1w 2d").ok(), Some("2026-12-11T10:00:00+00:00".into()));
        assert_eq!(due("2027-01-31").ok(), Some("2027-01-31T00:00:00+00:00".into()));
        assert_eq!(due("2026-12-02").ok(), Some(now.to_rfc3339()));
        assert_eq!(
            due("2027-01-31T12:00:00Z").ok(),
            Some("2027-01-31T12:00:00+00:00".into())
        );
        for bad in ["1m", "12h", "1 month", "soon", "", "2020-01-01", "-1d", "400000d"] {
            assert!(matches!(due(bad), Err(Error::Invalid(_))), "{bad:?} should be refused");
        }
        // Past the last representable date: refused, not an overflow panic.
        let end = chrono::DateTime::<chrono::Utc>::MAX_UTC;
        assert!(matches!(parse_erasure_due("30d", end), Err(Error::Invalid(_))));
    }

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
