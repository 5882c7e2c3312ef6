//! `accountctl gdpr …`: erasure requests and the sweeper for cron.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Error;
use crate::domain::{parse_duration, parse_erasure_due};
use crate::services::erasure::{DEFAULT_ERASURE_DELAY, SweepOptions};

use super::Ctx;
use super::prompt::confirm;

#[derive(Debug, clap::Subcommand)]
pub enum GdprCmd {
    /// Record a right-to-erasure request and disable the account at once (sessions revoked).
    /// The sweeper purges the user when the request is due. An email or phone that no user
    /// holds erases, at once, every invite and queued notification addressed to it.
    Request {
        /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
        user: String,
        /// When the purge is due: days or weeks (30d, 2w; 0d = at the next sweep) or an RFC
        /// 3339 date (2027-01-31). GDPR Art. 12(3): within one month.
        #[arg(long, default_value = "30d", value_name = "DAYS|DATE")]
        due_in: String,
    },
    /// Withdraw a user's pending erasure request (audited). Nothing else changes: the
    /// account stays disabled until `user enable`. Exit 3 when no request is pending.
    Cancel {
        /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
        user: String,
    },
    /// The sweeper, for cron: purge due erasure requests and trash past retention (one
    /// transaction per user), mark expired invites, end expired sessions. Safe to run twice
    /// at once; SIGTERM/SIGINT finish the current user and stop. Exit 5 when a user failed.
    /// Does not ask: it only carries out what is already due.
    Purge {
        /// List what is due and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Purge at most this many users (at least 1).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
        /// Start no new user after this long, e.g. 10m.
        #[arg(long, value_name = "DURATION")]
        max_duration: Option<String>,
    },
    /// Pending requests, the trash, and the sweeper's last runs. Exits 4 when no successful
    /// run finished within --max-age, or when a request is overdue by more than that (for
    /// monitoring).
    Status {
        /// Exit 4 when no sweeper run succeeded within this long, or a pending erasure
        /// request has been due for longer than this, e.g. 2d.
        #[arg(long, default_value = "2d", value_name = "DURATION")]
        max_age: String,
    },
}

pub async fn exec(ctx: &Ctx, cmd: GdprCmd) -> Result<(), Error> {
    let erasure = ctx.app.erasure();
    match cmd {
        GdprCmd::Request { user, due_in } => {
            let now = chrono::Utc::now();
            let due_at = if due_in.is_empty() {
                now + DEFAULT_ERASURE_DELAY
            } else {
                parse_erasure_due(&due_in, now)?
            };
            let user_ref = ctx.user(&user).await?;
            match ctx.app.accounts().show(&user_ref).await {
                Ok(_) => {}
                // An invitee who never became a user: erase what the invites hold of them.
                Err(Error::NotFound { .. })
                    if matches!(
                        user_ref,
                        crate::domain::UserRef::Email(_) | crate::domain::UserRef::Phone(_)
                    ) =>
                {
                    confirm(
                        ctx.yes,
                        &format!("erase every invite and queued notification addressed to {user} now"),
                    )?;
                    let erased = erasure.erase_invitee(&user_ref).await?;
                    if !ctx.out.quiet {
                        note!(
                            "{user} is no user: erased {} invite(s), {} queued notification(s), {} invitee name record(s)",
                            erased.invites,
                            erased.notifications,
                            erased.persons
                        );
                    }
                    ctx.out.record(&erased, "invites");
                    return Ok(());
                }
                Err(err) => return Err(err),
            }
            let when = if due_at <= now {
                "at the next sweep".to_owned()
            } else {
                format!("on {} (at the first sweep after)", crate::domain::format_time(due_at))
            };
            confirm(ctx.yes, &format!("disable {user} now and erase it {when}"))?;
            let request = erasure.request_due_at(&user_ref, due_at).await?;
            if !ctx.out.quiet {
                note!("erasure of {user} due {}", crate::domain::format_time(request.due_at));
            }
            ctx.out.record(&request, "id");
        }
        GdprCmd::Cancel { user } => {
            let user_ref = ctx.user(&user).await?;
            ctx.out.record(&erasure.cancel(&user_ref).await?, "id");
        }
        GdprCmd::Status { max_age } => {
            let status = erasure.status(parse_duration(&max_age)?).await?;
            let stale = status.stale;
            let overdue = status.overdue_requests.len();
            ctx.out.record(&status, super::output::NO_ID);
            if stale {
                return Err(Error::Refused(format!(
                    "the sweeper is stale: no successful `gdpr purge` in the last {max_age}"
                )));
            }
            if overdue > 0 {
                return Err(Error::Refused(format!(
                    "{overdue} erasure request(s) overdue by more than {max_age} (see overdue_requests and each request's last_error)"
                )));
            }
        }
        GdprCmd::Purge {
            dry_run,
            limit,
            max_duration,
        } => {
            let stop = Arc::new(AtomicBool::new(false));
            spawn_stop_on_signal(stop.clone());
            let options = SweepOptions {
                dry_run,
                limit,
                max_duration: max_duration
                    .as_deref()
                    .map(parse_duration)
                    .transpose()?
                    .and_then(|d| d.to_std().ok()),
                stop,
            };
            let bar = progress_bar();
            let report = erasure
                .purge(&options, |event, total| {
                    if let Some(bar) = &bar {
                        bar.set_length(total as u64);
                        bar.inc(1);
                    }
                    // One line per user for cron mail.
                    // The reason as the JSON names it (`trash_expired`), not the Rust variant.
                    let reason = serde_json::to_value(event.reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let line = match &event.error {
                        Some(e) => format!("{} {} ({reason}): {e}", event.outcome, event.user_id),
                        None => format!("{} {} ({reason})", event.outcome, event.user_id),
                    };
                    match &bar {
                        Some(bar) => bar.println(line),
                        None => note!("{line}"),
                    }
                })
                .await?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            // Cron mails whatever reaches stderr: a run that did nothing stays silent
            // unless -v asks (the JSON summary on stdout and `sweeper_runs` still record it).
            let did_something = report.purged + report.skipped + report.failed + report.invites_expired > 0
                || report.sessions_expired > 0
                || report.stopped.is_some();
            if did_something || ctx.verbose > 0 {
                note!(
                    "sweeper run {}: purged {}, skipped {}, failed {}, invites_expired {}, sessions_expired {}{}",
                    report.run_id,
                    report.purged,
                    report.skipped,
                    report.failed,
                    report.invites_expired,
                    report.sessions_expired,
                    report.stopped.map(|s| format!(", stopped {s}")).unwrap_or_default()
                );
            }
            let (failed, total) = (report.failed, report.users.len() as u64);
            ctx.out.record(&report, "run_id");
            if failed > 0 {
                return Err(Error::Partial { failed, total });
            }
        }
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal; none when piped (cron).
fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} users, {elapsed} {msg}") {
        bar.set_style(style);
    }
    Some(bar)
}

/// Sets `stop` on SIGTERM or SIGINT: the sweeper finishes the current user and ends cleanly.
fn spawn_stop_on_signal(stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::warn!("stop requested: finishing the current user");
        stop.store(true, Ordering::SeqCst);
    });
}
