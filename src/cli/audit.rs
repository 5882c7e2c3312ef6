//! `accountctl audit …`: the audit trail, read.

use crate::Error;
use crate::domain::{AuditEvent, AuditFilter, Timestamp, UserRef};

use super::Ctx;
use super::paging::{self, PageArgs};

const LIST_COLUMNS: &[&str] = &["id", "occurred_at", "actor", "action", "user", "fields"];

#[derive(Debug, clap::Subcommand)]
pub enum AuditCmd {
    /// List audit events, newest first; the paging cursor (--after) is an event id. The
    /// global --actor NAME, given on the command line, selects the events by that actor
    /// (reading records nothing, so here it names whom to look for; ACCOUNTCTL_ACTOR and
    /// the config file's actor do not filter). JSON: an array of {id, occurred_at, actor,
    /// action, user_id, username, fields, user}.
    List(ListArgs),
    /// Show one audit event by its id (the first column of `audit list`).
    Show {
        /// The event id.
        id: i64,
    },
}

/// Options of `audit list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Events about this user: username, email, phone, id or id prefix of a user that
    /// exists, or the whole id of an erased or merged one.
    #[arg(long)]
    user: Option<String>,
    /// This event name (`user.deleted`), or a prefix ending in `*` (`user.*`).
    #[arg(long)]
    action: Option<String>,
    /// Events at or after this time: RFC 3339 (2026-12-01T09:00:00Z), a date (2026-12-01,
    /// midnight UTC), or a duration ago (7d, 12h).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Events before this time (the forms of --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Events about this workspace (name or id): those whose fields name its id.
    #[arg(long)]
    workspace: Option<String>,
    #[command(flatten)]
    page: PageArgs,
}

/// An audit event as the CLI prints it: the event plus `user`, its username while the user
/// exists, else its id (an erased user keeps only its pseudonymous id).
#[derive(serde::Serialize)]
struct Shown {
    #[serde(flatten)]
    event: AuditEvent,
    user: Option<String>,
}

impl From<AuditEvent> for Shown {
    fn from(event: AuditEvent) -> Self {
        let user = event
            .username
            .clone()
            .or_else(|| event.user_id.map(|id| id.to_string()));
        Self { event, user }
    }
}

pub async fn exec(ctx: &Ctx, cmd: AuditCmd) -> Result<(), Error> {
    let reports = ctx.app.reports();
    match cmd {
        AuditCmd::Show { id } => {
            ctx.out.record(&Shown::from(reports.audit_event(id).await?), "id");
            Ok(())
        }
        AuditCmd::List(args) => {
            let now = crate::domain::now();
            let user_id = match &args.user {
                // A whole id is taken as it is: the events of an erased user outlive it.
                Some(text) => match uuid::Uuid::parse_str(text.trim()) {
                    Ok(id) => Some(id),
                    Err(_) => match ctx.user(text).await? {
                        UserRef::Id(id) => Some(id),
                        other => Some(ctx.app.accounts().show(&other).await?.user.id),
                    },
                },
                None => None,
            };
            let workspace_id = match &args.workspace {
                Some(w) => Some(ctx.app.workspace_id(w).await?),
                None => None,
            };
            // `--actor` is the global option; only a value typed for this run is a filter.
            let actor = (ctx.settings.actor.1 == super::config::Source::Flag).then(|| ctx.settings.actor.0.clone());
            if let Some(action) = &args.action {
                crate::domain::clean_text("action", action, 200)?;
            }
            let filter = AuditFilter {
                user_id,
                actor,
                action: args.action,
                since: args
                    .since
                    .as_deref()
                    .map(|t| parse_time("--since", t, now))
                    .transpose()?,
                until: args
                    .until
                    .as_deref()
                    .map(|t| parse_time("--until", t, now))
                    .transpose()?,
                workspace_id,
            };
            paging::print(
                &ctx.out,
                args.page,
                LIST_COLUMNS,
                "id",
                |e: &Shown| e.event.id.to_string(),
                async |page| {
                    Ok(reports
                        .audit(&filter, &page)
                        .await?
                        .into_iter()
                        .map(Shown::from)
                        .collect())
                },
            )
            .await
        }
    }
}

/// A point in time as `--since`/`--until` take it: RFC 3339, a date (midnight UTC), or a
/// duration before `now`. Errors: [`Error::Invalid`] naming the option.
fn parse_time(option: &str, text: &str, now: Timestamp) -> Result<Timestamp, Error> {
    let text = text.trim();
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    match crate::domain::parse_duration(text) {
        Ok(ago) => Ok(now - ago),
        Err(_) => Err(Error::Invalid(format!(
            "{option} {}: give an RFC 3339 time (2026-12-01T09:00:00Z), a date (2026-12-01) or a duration ago (7d)",
            crate::domain::shown(text)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_rfc_3339_dates_or_durations_ago() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .expect("time")
            .to_utc();
        assert_eq!(
            parse_time("--since", "2026-12-01", now).expect("date").to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("--since", "1d", now).expect("ago").to_rfc3339(),
            "2026-12-03T12:00:00+00:00"
        );
        assert_eq!(
            parse_time("--since", "2026-12-02T10:00:00+01:00", now)
                .expect("rfc3339")
                .to_rfc3339(),
            "2026-12-02T09:00:00+00:00"
        );
        assert!(parse_time("--since", "yesterday-ish", now).is_err());
    }
}
