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

use crate::domain::{DeletionMode, LogoutReason, now};
use crate::error::{Error, Result};
use crate::lifecycle::{UserLifecycleService, current_actor};
use crate::services::accounts::Accounts;
use crate::services::audit;
use crate::services::invites::Invites;
use crate::services::sessions::SessionService;
use crate::store::erasure::{ErasureRequest, PurgeReason, SweeperRun};
use crate::store::{Database, UserRef};

/// Default delay between an erasure request and the purge (GDPR Art. 12(3): one month).
pub const DEFAULT_ERASURE_DELAY: chrono::Duration = chrono::Duration::days(30);

/// How the sweeper runs.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// List what is due; change nothing (the run is still recorded, as a dry run).
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
    pub user_id: Uuid,
    pub reason: PurgeReason,
    /// `purged`, `would_purge` (dry run), `skipped` (gone, restored, or locked by another
    /// sweeper) or `failed`.
    pub outcome: &'static str,
    pub error: Option<String>,
}

/// The JSON summary of a sweeper run (`gdpr purge -o json`).
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub run_id: Uuid,
    pub dry_run: bool,
    /// `ok`, `partial` (some users failed), or `interrupted` (stop requested).
    pub status: &'static str,
    pub purged: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Why the run ended before the candidates did: `signal`, `max_duration`, or null.
    pub stopped: Option<&'static str>,
    pub invites_expired: u64,
    pub sessions_expired: i64,
    pub duration_ms: u128,
    pub users: Vec<SweepEvent>,
}

/// `gdpr status`.
#[derive(Debug, Clone, Serialize)]
pub struct ErasureStatus {
    pub pending_requests: Vec<ErasureRequest>,
    pub trashed_users: i64,
    pub trash_due: i64,
    pub last_run: Option<SweeperRun>,
    pub last_successful_run: Option<SweeperRun>,
    /// True when no successful (non-dry) run finished within the threshold.
    pub stale: bool,
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

impl Erasure {
    pub fn new(
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
        self.db.retrying(|| self.request_once(user, due_in)).await
    }

    /// One attempt of [`Self::request`], which runs it again when the database asks.
    async fn request_once(&self, user: &UserRef, due_in: chrono::Duration) -> Result<ErasureRequest> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        crate::services::accounts::refuse_if_last_admin(&mut tx, &user, "request erasure of").await?;
        let at = now();
        let id = tx
            .insert_erasure_request(user.id, at + due_in, &current_actor(), at)
            .await?;
        tx.set_user_active(user.id, false, at).await?;
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

    /// Pending requests, the trash, and the sweeper's last runs; `stale` when the last
    /// successful run is older than `max_age` (or there is none).
    pub async fn status(&self, max_age: chrono::Duration) -> Result<ErasureStatus> {
        let mut tx = self.db.begin_read().await?;
        let at = now();
        let pending_requests = tx.pending_erasure_requests().await?;
        let (trashed_users, trash_due) = tx.trash_counts(at).await?;
        let (last_run, last_successful_run) = tx.last_sweeper_runs().await?;
        let stale = match &last_successful_run {
            Some(run) => run.finished_at.is_none_or(|f| at - f > max_age),
            None => true,
        };
        tx.end().await?;
        Ok(ErasureStatus {
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
    pub async fn purge(
        &self,
        options: &SweepOptions,
        mut on_event: impl FnMut(&SweepEvent, usize),
    ) -> Result<SweepReport> {
        let started = Instant::now();
        let run_id = Uuid::now_v7();
        {
            let mut tx = self.db.begin().await?;
            tx.insert_sweeper_run(run_id, options.dry_run, now()).await?;
            tx.commit().await?;
        }
        let candidates = {
            let mut tx = self.db.begin_read().await?;
            let due = tx.purge_candidates(now(), options.limit).await?;
            tx.end().await?;
            due
        };
        let total = candidates.len();
        let mut report = SweepReport {
            run_id,
            dry_run: options.dry_run,
            status: "ok",
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
                report.stopped = Some("signal");
                break;
            }
            if options.max_duration.is_some_and(|max| started.elapsed() >= max) {
                report.stopped = Some("max_duration");
                break;
            }
            let event = if options.dry_run {
                SweepEvent {
                    user_id,
                    reason,
                    outcome: "would_purge",
                    error: None,
                }
            } else {
                self.purge_one(user_id, reason).await?
            };
            match event.outcome {
                "purged" => report.purged += 1,
                "skipped" => report.skipped += 1,
                "failed" => report.failed += 1,
                _ => {}
            }
            on_event(&event, total);
            report.users.push(event);
        }
        if !options.dry_run && report.stopped != Some("signal") {
            report.invites_expired = self.invites.prune().await?;
            report.sessions_expired = self.sessions.prune().await?.sessions_expired;
            let mut tx = self.db.begin().await?;
            tx.prune_invalidations(now() - chrono::Duration::days(1)).await?;
            tx.commit().await?;
        }
        report.status = if report.stopped == Some("signal") {
            "interrupted"
        } else if report.failed > 0 {
            "partial"
        } else {
            "ok"
        };
        report.duration_ms = started.elapsed().as_millis();
        let summary = json!({
            "skipped": report.skipped,
            "stopped": report.stopped,
            "invites_expired": report.invites_expired,
            "sessions_expired": report.sessions_expired,
            "failures": report.users.iter().filter(|e| e.outcome == "failed").map(|e| json!({ "user_id": e.user_id, "error": e.error })).collect::<Vec<_>>(),
        });
        let mut tx = self.db.begin().await?;
        tx.finish_sweeper_run(
            run_id,
            report.status,
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
                    outcome: "purged",
                    error: None,
                }
            }
            Ok(false) => SweepEvent {
                user_id,
                reason,
                outcome: "skipped",
                error: None,
            },
            Err(err) if err.ends_a_batch() => return Err(err),
            Err(err) => {
                let message = err.to_string();
                tracing::error!(%user_id, error = %message, "purge failed");
                if let Ok(mut tx) = self.db.begin().await
                    && tx.note_erasure_error(user_id, &message).await.is_ok()
                {
                    let _ = tx.commit().await;
                }
                SweepEvent {
                    user_id,
                    reason,
                    outcome: "failed",
                    error: Some(message),
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
