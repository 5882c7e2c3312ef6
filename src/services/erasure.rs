//! The right to erasure (GDPR Art. 17): erasure requests, and the sweeper that cron runs to
//! purge due requests and trash past retention.
//!
//! The sweeper works one transaction per user and re-checks each user's state inside it, so
//! two sweepers at once never purge a user twice nor fail because of each other (PostgreSQL:
//! `FOR UPDATE SKIP LOCKED`; SQLite: the write lock). A stop request (SIGTERM/SIGINT in the
//! CLI) lets the current user finish and ends the run cleanly. Every run is recorded in
//! `sweeper_runs`, so `gdpr status` can tell when the sweeper went stale.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::domain::{DeletionMode, LogoutReason, SweepOutcome, SweepStatus, SweepStop, User, now};
use crate::error::{Error, Result};
use crate::lifecycle::{UserLifecycleService, current_actor};
use crate::services::accounts::Accounts;
use crate::services::audit;
use crate::services::invites::Invites;
use crate::services::sessions::SessionService;
use crate::store::erasure::{ErasureRequest, PurgeReason, SweeperRun};
use crate::store::{Database, Tx, UserRef};

/// A `running` sweeper run recorded without an owner (or by another host) is taken for
/// abandoned after this long: no cron schedule runs a sweep for a day.
pub const ABANDONED_AFTER: chrono::Duration = chrono::Duration::hours(24);

/// Which process runs a sweeper run: recorded in the run's summary while it runs.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct RunOwner {
    host: String,
    pid: u32,
}

impl RunOwner {
    fn this_process() -> Self {
        Self {
            host: whoami::hostname().unwrap_or_default(),
            pid: std::process::id(),
        }
    }
}

/// Whether process `pid` exists on this host (Linux: `/proc/PID`; elsewhere it cannot be
/// told without a system call this crate does not make, so every process counts as alive
/// and only [`ABANDONED_AFTER`] applies).
fn process_exists(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        std::path::Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Default delay between an erasure request and the purge (GDPR Art. 12(3): one month).
pub const DEFAULT_ERASURE_DELAY: chrono::Duration = chrono::Duration::days(30);

/// How the sweeper runs.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// List what is due; change nothing and record nothing (no `sweeper_runs` row, no
    /// abandoned run marked): the candidates are read in a `READ ONLY` transaction
    /// (PostgreSQL) without the registry write check, so a dry run works on a standby and
    /// under a binary that may not write.
    pub dry_run: bool,
    /// Purge at most this many users.
    pub limit: i64,
    /// Stop starting new users after this long.
    pub max_duration: Option<Duration>,
    /// Set to stop after the current user (the CLI sets it on SIGTERM/SIGINT).
    pub stop: Arc<AtomicBool>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            limit: 10_000,
            max_duration: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// One user the sweeper handled.
#[derive(Debug, Clone, Serialize)]
pub struct SweepEvent {
    /// The user's id (pseudonymous once the user is erased).
    pub user_id: Uuid,
    /// Why the user was due: an erasure request or the trash's retention.
    pub reason: PurgeReason,
    /// What the sweeper did with the user.
    pub outcome: SweepOutcome,
    /// Why the purge failed or was vetoed (`failed` only): the whole message, for the
    /// operator watching this run; it is never written to the database.
    pub error: Option<String>,
    /// What the database keeps of `error` (on the erasure request and in the run's record):
    /// a reason code that names no user, see [`stored_reason`].
    #[serde(skip)]
    pub stored_error: Option<String>,
}

/// The JSON summary of a sweeper run (`gdpr purge -o json`).
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// The run's id in `sweeper_runs` (`gdpr status` shows the last runs). A dry run is not
    /// recorded: its id names it in the output only.
    pub run_id: Uuid,
    /// Nothing was changed and nothing recorded: the users are listed as `would_purge`.
    pub dry_run: bool,
    /// `ok`, `partial` (some users failed or were vetoed), or `interrupted` (stop requested).
    pub status: SweepStatus,
    /// Users erased, each in its own transaction.
    pub purged: u64,
    /// Users no longer due when locked.
    pub skipped: u64,
    /// Users whose purge failed or was vetoed by a hook (still whole, request pending).
    pub failed: u64,
    /// Why the run ended before the candidates did: `signal`, `max_duration`, or null.
    pub stopped: Option<SweepStop>,
    /// Pending invites past their expiry, marked `expired` by this run.
    pub invites_expired: u64,
    /// Sessions past their expiry, ended by this run (`session_expired`).
    pub sessions_expired: i64,
    /// The run's wall-clock time in milliseconds.
    pub duration_ms: u128,
    /// One event per user handled, in order.
    pub users: Vec<SweepEvent>,
}

/// `gdpr status`.
#[derive(Debug, Clone, Serialize)]
pub struct ErasureStatus {
    /// Erasure requests not carried out yet, due or not.
    pub pending_requests: Vec<ErasureRequest>,
    /// Users in the trash.
    pub trashed_users: i64,
    /// Users in the trash whose `purge_after` has passed (the next sweep purges them).
    pub trash_due: i64,
    /// The sweeper's latest run, dry runs included.
    pub last_run: Option<SweeperRun>,
    /// The latest run that was not a dry run and finished (`ok`, `partial` or `interrupted`).
    pub last_successful_run: Option<SweeperRun>,
    /// True when no successful (non-dry) run finished within the threshold.
    pub stale: bool,
    /// Pending requests due longer ago than the threshold (failing ones included): the
    /// sweeper ran, yet these were not carried out. `gdpr status` exits 4 when there are any.
    pub overdue_requests: Vec<Uuid>,
}

/// What the database keeps of a failed purge (`erasure_requests.last_error`, the failures in
/// `sweeper_runs.summary`): a reason code built from the error's kind and the name of the hook
/// that vetoed or failed, never the error's text. Those rows outlive the user once a later
/// sweep erases it, and a message (a hook's "user hold-x is on legal hold", a refusal naming
/// the username) would keep an identifier of an erased person (GDPR Art. 17).
pub fn stored_reason(err: &Error) -> String {
    match err {
        Error::Vetoed { hook, .. } => format!("vetoed by hook {hook}"),
        Error::Hook { hook, .. } => format!("hook {hook} failed"),
        Error::Invalid(_) => "invalid".into(),
        Error::NotFound { what, .. } => format!("{what} not found"),
        Error::Conflict(_) => "conflict".into(),
        Error::Refused(_) => "refused by an invariant".into(),
        Error::AuthenticationFailed => "authentication failed".into(),
        Error::MissingHooks(_) => "hooks missing".into(),
        Error::Partial { .. } => "partial".into(),
        Error::Unavailable(_) => "database unavailable".into(),
        Error::MailUnavailable(_) => "mail not delivered".into(),
        Error::LockTimeout(_) => "lock timeout".into(),
        Error::Serialization(_) => "serialization conflict".into(),
        Error::Schema(_) => "schema mismatch".into(),
        Error::Database(_) => "database error".into(),
        Error::Internal(_) => "internal error".into(),
        Error::Interrupted => "interrupted".into(),
    }
}

/// Erasure requests and the sweeper.
#[derive(Clone)]
pub struct Erasure {
    db: Database,
    lifecycle: Arc<UserLifecycleService>,
    accounts: Accounts,
    sessions: SessionService,
    invites: Invites,
}

/// Refuses an operation that would defeat a pending right-to-erasure request (GDPR Art. 17):
/// reactivating the user (the sweeper would then erase an active account) or merging it
/// (its personal data would move into the kept user and survive). `verb` names the refused
/// operation. Call it with the user's row locked. Errors: [`Error::Refused`] naming the
/// request and `gdpr cancel`.
pub(crate) async fn refuse_if_erasure_pending(tx: &mut Tx, user: &User, verb: &str) -> Result<()> {
    if let Some(request) = tx.pending_erasure_request_of(user.id).await? {
        return Err(Error::Refused(format!(
            "refusing to {verb} {}: erasure request {} is pending (due {}); withdraw it first with `gdpr cancel {}`",
            user.username,
            request.id,
            request.due_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            user.username
        )));
    }
    Ok(())
}

impl Erasure {
    pub(crate) fn new(
        db: Database,
        lifecycle: Arc<UserLifecycleService>,
        accounts: Accounts,
        sessions: SessionService,
        invites: Invites,
    ) -> Self {
        Self {
            db,
            lifecycle,
            accounts,
            sessions,
            invites,
        }
    }

    /// Records a durable erasure request due after `due_in` and disables the account at once
    /// (sessions revoked, logout reason `account_disabled`). Errors: [`Error::NotFound`];
    /// [`Error::Conflict`] when a request is already pending.
    pub async fn request(&self, user: &UserRef, due_in: chrono::Duration) -> Result<ErasureRequest> {
        self.request_due_at(user, crate::domain::after(now(), due_in)?).await
    }

    /// [`Erasure::request`] due at `due_at` (see [`crate::domain::parse_erasure_due`]): a
    /// time at or before now means "at the next sweep". Errors: as [`Erasure::request`].
    pub async fn request_due_at(&self, user: &UserRef, due_at: crate::domain::Timestamp) -> Result<ErasureRequest> {
        self.db.retrying(|| self.request_once(user, due_at)).await
    }

    /// One attempt of [`Self::request_due_at`], which runs it again when the database asks.
    async fn request_once(&self, user: &UserRef, due_at: crate::domain::Timestamp) -> Result<ErasureRequest> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        crate::services::accounts::refuse_if_last_admin(&mut tx, &user, "request erasure of").await?;
        // The purge would empty the root workspace, which the database refuses: a request
        // accepted now could never run, and the sweeper would fail on it at every run.
        if tx.is_only_root_member(user.id).await? {
            return Err(Error::Refused(format!(
                "refusing to request erasure of {}: it is the root workspace's only member, and the root workspace must keep one (add another member first)",
                user.username
            )));
        }
        let at = now();
        // Inactive first: the database refuses a pending request for an active user.
        tx.set_user_active(user.id, false, at).await?;
        let id = tx
            .insert_erasure_request(user.id, due_at.max(at), &current_actor(), at)
            .await?;
        let revoked = tx
            .revoke_sessions_of(user.id, LogoutReason::AccountDisabled, at)
            .await?;
        audit::record(
            &mut tx,
            "erasure.requested",
            Some(user.id),
            json!({ "request_id": id, "sessions_revoked": revoked }),
        )
        .await?;
        let request = tx
            .erasure_request(id)
            .await?
            .ok_or_else(|| Error::Internal("request vanished".into()))?;
        tx.commit().await?;
        if user.active {
            self.lifecycle.dispatch_logout(&user, LogoutReason::AccountDisabled);
        }
        Ok(request)
    }

    /// Erases an invitee who never became a user (GDPR Art. 17 reaches them too): every
    /// invite addressed to the email address or phone number, whatever its status, the names
    /// given at invite time, and every queued notification to the address, at once (there is
    /// no account to disable first). Audited as `invitee.erased` with the counts only.
    ///
    /// Errors: [`Error::Invalid`] when `passport` is not an email or phone; [`Error::Refused`]
    /// when a user holds the passport (request that user's erasure); [`Error::NotFound`] when
    /// nothing is addressed to it.
    pub async fn erase_invitee(&self, passport: &UserRef) -> Result<crate::store::invites::InviteeErasure> {
        let (kind, value) = match passport {
            UserRef::Email(e) => (crate::domain::PassportKind::Email, e.as_str().to_owned()),
            UserRef::Phone(p) => (crate::domain::PassportKind::Phone, p.as_str().to_owned()),
            other => {
                return Err(Error::Invalid(format!(
                    "{other} is not an email address or phone number"
                )));
            }
        };
        self.db
            .retrying(|| async {
                let mut tx = self.db.begin().await?;
                if tx.user_id_by_passport(kind, &value).await?.is_some() {
                    return Err(Error::Refused(
                        "that address belongs to a user: request the user's erasure (gdpr request USER)".into(),
                    ));
                }
                let erased = tx.erase_invitee(kind, &value).await?;
                if erased.invites == 0 && erased.notifications == 0 {
                    return Err(Error::not_found("user, invite or notification for", value.clone()));
                }
                audit::record(
                    &mut tx,
                    "invitee.erased",
                    None,
                    json!({ "invites": erased.invites, "notifications": erased.notifications, "persons": erased.persons }),
                )
                .await?;
                tx.commit().await?;
                Ok(erased)
            })
            .await
    }

    /// Withdraws the user's pending erasure request (the person changed their mind, or it was
    /// filed by mistake), audited as `erasure.cancelled`. Nothing else happens: the account
    /// stays disabled until `user enable`, and no lifecycle hook fires. Returns the request as
    /// it is now (`status: cancelled`).
    ///
    /// Errors: [`Error::NotFound`] for an unknown user or when no request is pending.
    pub async fn cancel(&self, user: &UserRef) -> Result<ErasureRequest> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        let request = tx
            .pending_erasure_request_of(user.id)
            .await?
            .ok_or_else(|| Error::not_found("pending erasure request for user", user.username.clone()))?;
        tx.cancel_erasure_request(request.id).await?;
        audit::record(
            &mut tx,
            "erasure.cancelled",
            Some(user.id),
            json!({ "request_id": request.id }),
        )
        .await?;
        let request = tx
            .erasure_request(request.id)
            .await?
            .ok_or_else(|| Error::Internal("request vanished".into()))?;
        tx.commit().await?;
        Ok(request)
    }

    /// Pending requests, the trash, and the sweeper's last runs; `stale` when the last
    /// successful run is older than `max_age` (or there is none); `overdue_requests` names
    /// the pending requests due more than `max_age` ago.
    pub async fn status(&self, max_age: chrono::Duration) -> Result<ErasureStatus> {
        let mut tx = self.db.begin_read_tx().await?;
        let at = now();
        let pending_requests = tx.pending_erasure_requests().await?;
        let (trashed_users, trash_due) = tx.trash_counts(at).await?;
        let (last_run, last_successful_run) = tx.last_sweeper_runs().await?;
        let stale = match &last_successful_run {
            Some(run) => run.finished_at.is_none_or(|f| at - f > max_age),
            None => true,
        };
        tx.end().await?;
        let overdue_requests = pending_requests
            .iter()
            .filter(|r| at - r.due_at > max_age)
            .map(|r| r.id)
            .collect();
        Ok(ErasureStatus {
            overdue_requests,
            pending_requests,
            trashed_users,
            trash_due,
            last_run,
            last_successful_run,
            stale,
        })
    }

    /// Runs the sweeper: purges due users one transaction each, then marks expired invites
    /// and ends expired sessions. `on_event` is called once per user handled (the CLI logs a
    /// line and advances its progress bar). Per-user failures are recorded and do not stop
    /// the run; the report says how many failed.
    ///
    /// Errors: [`Error::Invalid`] for a `limit` below 1 (nothing is purged, no run recorded).
    pub async fn purge(
        &self,
        options: &SweepOptions,
        mut on_event: impl FnMut(&SweepEvent, usize),
    ) -> Result<SweepReport> {
        if options.limit < 1 {
            return Err(Error::Invalid(format!("invalid limit {}: at least 1", options.limit)));
        }
        let started = Instant::now();
        let run_id = Uuid::now_v7();
        if options.dry_run {
            // Reads only, in a READ ONLY transaction, recorded nowhere: a dry run runs on a
            // standby and under a binary that may not write.
            return self.sweep(run_id, started, options, &mut on_event).await;
        }
        self.abandon_dead_runs().await?;
        {
            let mut tx = self.db.begin().await?;
            tx.insert_sweeper_run(run_id, options.dry_run, now()).await?;
            tx.set_sweeper_run_summary(run_id, &json!({ "owner": RunOwner::this_process() }))
                .await?;
            tx.commit().await?;
        }
        match self.sweep(run_id, started, options, &mut on_event).await {
            Ok(report) => Ok(report),
            Err(err) => {
                // The run is recorded as failed, not left `running` (best effort: when the
                // database itself is gone, the next run marks this one abandoned instead).
                let summary = json!({ "error": err.to_string(), "owner": RunOwner::this_process() });
                let finished = async {
                    let mut tx = self.db.begin().await?;
                    tx.finish_sweeper_run(run_id, SweepStatus::Failed.as_str(), 0, 0, &summary, now())
                        .await?;
                    tx.commit().await
                }
                .await;
                if let Err(e) = finished {
                    tracing::warn!(%run_id, error = %e, "could not record the failed sweeper run");
                }
                Err(err)
            }
        }
    }

    /// Marks `failed` (with `"abandoned": true` in its summary) every run still `running`
    /// whose process is gone: one on this host whose process id no longer exists (a sweeper
    /// killed by SIGKILL, OOM or a reboot never finishes its record), or one recorded without
    /// an owner that started more than [`ABANDONED_AFTER`] ago. A run of another host is
    /// left alone unless that old: its process cannot be checked from here.
    async fn abandon_dead_runs(&self) -> Result<()> {
        let running = self.db.read(async |tx| tx.running_sweeper_runs().await).await?;
        let this = RunOwner::this_process();
        for run in running {
            let owner: Option<RunOwner> = run
                .summary
                .get("owner")
                .and_then(|o| serde_json::from_value(o.clone()).ok());
            let dead = match &owner {
                Some(o) if o.host == this.host => !process_exists(o.pid),
                _ => now().signed_duration_since(run.started_at) > ABANDONED_AFTER,
            };
            if !dead {
                continue;
            }
            tracing::warn!(run_id = %run.id, started_at = %run.started_at, "sweeper run died without finishing: marked abandoned");
            let summary = json!({ "abandoned": true, "owner": owner, "abandoned_by": this });
            let mut tx = self.db.begin().await?;
            tx.abandon_sweeper_run(run.id, &summary, now()).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// The body of [`Self::purge`] once its run is recorded.
    async fn sweep(
        &self,
        run_id: Uuid,
        started: Instant,
        options: &SweepOptions,
        on_event: &mut impl FnMut(&SweepEvent, usize),
    ) -> Result<SweepReport> {
        let candidates = {
            let mut tx = if options.dry_run {
                self.db.begin_dry().await?
            } else {
                self.db.begin_read_tx().await?
            };
            let due = tx.purge_candidates(now(), options.limit).await?;
            tx.end().await?;
            due
        };
        let total = candidates.len();
        let mut report = SweepReport {
            run_id,
            dry_run: options.dry_run,
            status: SweepStatus::Ok,
            purged: 0,
            skipped: 0,
            failed: 0,
            stopped: None,
            invites_expired: 0,
            sessions_expired: 0,
            duration_ms: 0,
            users: Vec::with_capacity(total),
        };
        for (user_id, reason) in candidates {
            if options.stop.load(Ordering::SeqCst) {
                report.stopped = Some(SweepStop::Signal);
                break;
            }
            if options.max_duration.is_some_and(|max| started.elapsed() >= max) {
                report.stopped = Some(SweepStop::MaxDuration);
                break;
            }
            let event = if options.dry_run {
                SweepEvent {
                    user_id,
                    reason,
                    outcome: SweepOutcome::WouldPurge,
                    error: None,
                    stored_error: None,
                }
            } else {
                self.purge_one(user_id, reason).await?
            };
            match event.outcome {
                SweepOutcome::Purged => report.purged += 1,
                SweepOutcome::Skipped => report.skipped += 1,
                SweepOutcome::Failed => report.failed += 1,
                SweepOutcome::WouldPurge => {}
            }
            on_event(&event, total);
            report.users.push(event);
        }
        if !options.dry_run && report.stopped != Some(SweepStop::Signal) {
            report.invites_expired = self.invites.prune().await?;
            report.sessions_expired = self.sessions.prune().await?.sessions_expired;
            let mut tx = self.db.begin().await?;
            tx.prune_invalidations(now() - chrono::Duration::days(1)).await?;
            tx.commit().await?;
        }
        report.status = if report.stopped == Some(SweepStop::Signal) {
            SweepStatus::Interrupted
        } else if report.failed > 0 {
            SweepStatus::Partial
        } else {
            SweepStatus::Ok
        };
        report.duration_ms = started.elapsed().as_millis();
        if options.dry_run {
            return Ok(report);
        }
        let summary = json!({
            "skipped": report.skipped,
            "stopped": report.stopped,
            "invites_expired": report.invites_expired,
            "sessions_expired": report.sessions_expired,
            "failures": report.users.iter().filter(|e| e.outcome == SweepOutcome::Failed).map(|e| json!({ "user_id": e.user_id, "error": e.stored_error })).collect::<Vec<_>>(),
        });
        let mut tx = self.db.begin().await?;
        tx.finish_sweeper_run(
            run_id,
            report.status.as_str(),
            report.purged as i64,
            report.failed as i64,
            &summary,
            now(),
        )
        .await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Purges one user in its own transaction, re-checking inside it that the purge is due.
    /// A failure is the user's event, except when the database is unavailable or read-only:
    /// every next user would fail the same way, so that error stops the run.
    async fn purge_one(&self, user_id: Uuid, reason: PurgeReason) -> Result<SweepEvent> {
        let result = self.db.retrying(|| self.purge_attempt(user_id)).await;
        Ok(match result {
            Ok(true) => {
                tracing::info!(%user_id, ?reason, "purged");
                SweepEvent {
                    user_id,
                    reason,
                    outcome: SweepOutcome::Purged,
                    error: None,
                    stored_error: None,
                }
            }
            Ok(false) => SweepEvent {
                user_id,
                reason,
                outcome: SweepOutcome::Skipped,
                error: None,
                stored_error: None,
            },
            Err(err) if err.ends_a_batch() => return Err(err),
            Err(err) => {
                let message = err.to_string();
                // Reported once, by the caller's per-user line (the event below) and the
                // run's summary: at debug here so a vetoed user is not told four times.
                tracing::debug!(%user_id, error = %message, "purge failed");
                // The request outlives the user once a later sweep erases it, so the database
                // keeps a reason code, never the message (a hook's text may name the user).
                let code = stored_reason(&err);
                if let Ok(mut tx) = self.db.begin().await
                    && tx.note_erasure_error(user_id, &code).await.is_ok()
                {
                    let _ = tx.commit().await;
                }
                SweepEvent {
                    user_id,
                    reason,
                    outcome: SweepOutcome::Failed,
                    error: Some(message),
                    stored_error: Some(code),
                }
            }
        })
    }

    /// One transaction of [`Self::purge_one`]: `false` when the user is no longer due.
    async fn purge_attempt(&self, user_id: Uuid) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let Some(user) = tx.lock_user_if_purge_due(user_id, now()).await? else {
            return Ok(false);
        };
        self.accounts.delete_in(&mut tx, &user, DeletionMode::GdprPurge).await?;
        tx.commit().await?;
        Ok(true)
    }
}
