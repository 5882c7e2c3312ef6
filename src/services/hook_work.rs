//! The work hooks owe a committed change, made durable: a create (or an import batch)
//! records it in its own transaction ([`Tx::owe_created`](crate::store::Tx)), runs the
//! `on_user_created` hooks after the commit, and settles the record. A failure is reported,
//! audited (`hook.failed`) and left owed for that hook only; a process that dies before
//! settling leaves the record for the next run to complete ([`HookWork::replay`]).

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::domain::{HookFailure, OwedHookWork, User, UserRef, now};
use crate::error::Result;
use crate::lifecycle::UserLifecycleService;
use crate::services::audit;
use crate::store::owed::{owner_is_gone, this_process};
use crate::store::{Database, Tx};

/// Durable created-hook work. Built by [`crate::App::hook_work`].
#[derive(Clone)]
pub struct HookWork {
    db: Database,
    lifecycle: Arc<UserLifecycleService>,
}

/// What [`HookWork::replay`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    /// Records completed.
    pub completed: u64,
    /// Users whose hooks ran again.
    pub users: u64,
    /// Records left owed: owned by a running process, or failed again.
    pub left: u64,
    /// The hooks that failed again.
    pub hook_failures: Vec<HookFailure>,
}

impl HookWork {
    pub(crate) fn new(db: Database, lifecycle: Arc<UserLifecycleService>) -> Self {
        Self { db, lifecycle }
    }

    /// Records, inside the change's transaction `tx`, that the created hooks of `users` are
    /// owed. Returns the record for [`HookWork::created`].
    pub(crate) async fn owe(tx: &mut Tx, users: &[Uuid]) -> Result<Uuid> {
        tx.owe_created(users, None, &this_process(), now()).await
    }

    /// After the commit of the change that recorded `owed`: runs the `on_user_created` hooks
    /// of `users` and settles the record. Never fails (the change stands): the hooks'
    /// failures are returned, logged by the dispatcher, audited as `hook.failed` and left owed
    /// for the failing hook only; if the record cannot be settled (the database went away),
    /// it stays owed as a whole, and a later run completes it.
    pub(crate) async fn created(&self, owed: Uuid, users: &[User]) -> Vec<HookFailure> {
        let failures = if users.len() == 1 {
            self.lifecycle.dispatch_created(&users[0]).await
        } else {
            self.lifecycle.dispatch_created_batch(users, None).await
        };
        if let Err(err) = self.settle(owed, users, &failures).await {
            tracing::error!(error = %err, owed = %owed, "the created hooks ran but their record could not be settled; a later run re-runs them (hooks are idempotent)");
        }
        failures
    }

    /// [`HookWork::created`] for the users of several records (an import's batches): the
    /// hooks run once over all of `users`, then every record in `owed` is settled.
    pub(crate) async fn created_many(&self, owed: &[Uuid], users: &[User]) -> Vec<HookFailure> {
        let failures = self.lifecycle.dispatch_created_batch(users, None).await;
        let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
        if let Err(err) = self.settle_ids(owed, &ids, &failures).await {
            tracing::error!(error = %err, "the created hooks ran but their records could not be settled; a later run re-runs them (hooks are idempotent)");
        }
        failures
    }

    /// Settles `owed` after the hooks ran over users the caller no longer holds (an atomic
    /// import's, read back from a temporary file): failures are recorded without user ids.
    pub(crate) async fn settle_all(&self, owed: &[Uuid], failures: &[HookFailure]) {
        if owed.is_empty() {
            return;
        }
        if let Err(err) = self.settle_ids(owed, &[], failures).await {
            tracing::error!(error = %err, "the created hooks ran but their records could not be settled; a later run re-runs them (hooks are idempotent)");
        }
    }

    /// Deletes record `owed`, recording one per failing hook in its place (with an audit row
    /// each), in one transaction.
    async fn settle(&self, owed: Uuid, users: &[User], failures: &[HookFailure]) -> Result<()> {
        let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
        self.settle_ids(&[owed], &ids, failures).await
    }

    async fn settle_ids(&self, owed: &[Uuid], ids: &[Uuid], failures: &[HookFailure]) -> Result<()> {
        self.db
            .retrying(|| async {
                let mut tx = self.db.begin().await?;
                for id in owed {
                    tx.settle_owed(*id).await?;
                }
                for f in failures {
                    let at = now();
                    let id = tx.owe_created(ids, Some(&f.hook), "", at).await?;
                    tx.fail_owed(id, "hook", at).await?;
                    record_failure(&mut tx, f, ids).await?;
                }
                tx.commit().await
            })
            .await
    }

    /// Records the failures of hooks on an event that has no owed record (sign-in), as
    /// `hook.failed` audit rows; best effort (a failure to record is logged).
    pub(crate) async fn record_failures(&self, user: Uuid, failures: &[HookFailure]) {
        if failures.is_empty() {
            return;
        }
        let outcome = self
            .db
            .retrying(|| async {
                let mut tx = self.db.begin().await?;
                for f in failures {
                    record_failure(&mut tx, f, &[user]).await?;
                }
                tx.commit().await
            })
            .await;
        if let Err(err) = outcome {
            tracing::error!(error = %err, "could not record the hook failures in the audit trail");
        }
    }

    /// The work still owed, oldest first.
    pub async fn owed(&self) -> Result<Vec<OwedHookWork>> {
        let rows = self.db.read(async |tx| tx.owed_work().await).await?;
        Ok(rows.into_iter().map(|(w, _, _)| w).collect())
    }

    /// Completes the owed work that no running process owns: the records of a process that
    /// died (on this host) or whose lease ran out, and failed hooks. Users erased since are
    /// skipped. Idempotent, safe beside other runs.
    ///
    /// Errors: the database's (a record it could not take stays owed);
    /// [`crate::Error::MissingHooks`] when this binary may not write.
    pub async fn replay(&self) -> Result<ReplayReport> {
        self.replay_where(false).await
    }

    /// [`HookWork::replay`] of what interrupted processes left (all hooks owed) only, not of
    /// hooks that failed (those wait for an explicit `hooks replay`, once their cause is
    /// fixed): what a command does before its own work.
    pub async fn replay_interrupted(&self) -> Result<ReplayReport> {
        self.replay_where(true).await
    }

    async fn replay_where(&self, interrupted_only: bool) -> Result<ReplayReport> {
        let mut report = ReplayReport::default();
        let me = this_process();
        let rows = self.db.read(async |tx| tx.owed_work().await).await?;
        for (work, owner, lease_until) in rows {
            if interrupted_only && work.hook.is_some() {
                report.left += 1;
                continue;
            }
            if !(owner_is_gone(&owner) || lease_until < now()) {
                report.left += 1;
                continue;
            }
            let mut tx = self.db.begin().await?;
            if !tx.take_owed(work.id, &owner, &me, now()).await? {
                tx.rollback().await?;
                report.left += 1;
                continue;
            }
            let mut users = Vec::with_capacity(work.user_ids.len());
            for id in &work.user_ids {
                if let Some(user) = tx.find_user(&UserRef::Id(*id), false).await? {
                    users.push(user);
                }
            }
            tx.commit().await?;
            if let Some(hook) = &work.hook
                && !self.lifecycle.has_hook(hook)
            {
                // Retired since (a binary lacking a recorded hook cannot write): nothing runs it.
                self.db
                    .retrying(|| async {
                        let mut tx = self.db.begin().await?;
                        tx.settle_owed(work.id).await?;
                        tx.commit().await
                    })
                    .await?;
                report.completed += 1;
                continue;
            }
            let failures = self
                .lifecycle
                .dispatch_created_batch(&users, work.hook.as_deref())
                .await;
            report.users += users.len() as u64;
            let ids: Vec<Uuid> = users.iter().map(|u| u.id).collect();
            self.db
                .retrying(|| async {
                    let mut tx = self.db.begin().await?;
                    if failures.is_empty() {
                        tx.settle_owed(work.id).await?;
                    } else {
                        tx.settle_owed(work.id).await?;
                        for f in &failures {
                            let at = now();
                            let id = tx.owe_created(&ids, Some(&f.hook), "", at).await?;
                            tx.fail_owed(id, "hook", at).await?;
                            record_failure(&mut tx, f, &ids).await?;
                        }
                    }
                    tx.commit().await
                })
                .await?;
            if failures.is_empty() {
                report.completed += 1;
            } else {
                report.left += 1;
                report.hook_failures.extend(failures);
            }
        }
        Ok(report)
    }
}

/// A `hook.failed` audit row: the hook, the event and the users (ids); never the error's
/// text, which may name the user.
async fn record_failure(tx: &mut Tx, failure: &HookFailure, users: &[Uuid]) -> Result<()> {
    let subject = (users.len() == 1).then(|| users[0]);
    audit::record(
        tx,
        "hook.failed",
        subject,
        json!({ "hook": failure.hook, "event": failure.event, "users": users.len() }),
    )
    .await
}
