use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;

use super::{DeletionMode, LogoutReason, UserLifecycleHook, current_actor, with_actor};
use crate::domain::{HookFailure, User};
use crate::error::Error;
use crate::store::Tx;

/// Fans lifecycle events out to the registered hooks with the per-event semantics of the
/// contract (module docs). Cheap to share behind an `Arc`.
pub struct UserLifecycleService {
    hooks: Vec<Arc<dyn UserLifecycleHook>>,
    spawned: TaskTracker,
}

impl std::fmt::Debug for UserLifecycleService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserLifecycleService")
            .field("hooks", &self.hook_names())
            .finish()
    }
}

impl UserLifecycleService {
    /// A dispatcher firing `hooks` in the given order.
    pub fn new(hooks: Vec<Arc<dyn UserLifecycleHook>>) -> Self {
        Self {
            hooks,
            spawned: TaskTracker::new(),
        }
    }

    /// The registered hooks' names, in firing order.
    pub fn hook_names(&self) -> Vec<&'static str> {
        self.hooks.iter().map(|h| h.name()).collect()
    }

    /// Fires `on_user_created` on every hook, awaiting each. A failure (the hook's own or a
    /// database error inside it) never fails the create, whose change is committed (the
    /// hook contract): it is logged at error with the hook's name, the remaining hooks still
    /// fire, and the failures are returned for the caller to report and record.
    pub(crate) async fn dispatch_created(&self, user: &User) -> Vec<HookFailure> {
        let mut failures = Vec::new();
        for hook in &self.hooks {
            let started = Instant::now();
            let result = hook.on_user_created(user).await;
            called(hook.name(), "created", started, result.is_ok());
            if let Err(err) = result {
                tracing::error!(hook = hook.name(), user_id = %user.id, error = %err, "on_user_created failed; the user stands, the hook's work is owed");
                failures.push(failure(hook.name(), "created", &err));
            }
        }
        failures
    }

    /// Fires `on_users_created` on every hook (or only on the hook named `only`) for a batch
    /// of committed users (bulk import, a replay of owed work), awaiting each, with the
    /// failure handling of [`Self::dispatch_created`]. A failing hook's whole batch is
    /// reported as that hook's failure.
    pub(crate) async fn dispatch_created_batch(&self, users: &[User], only: Option<&str>) -> Vec<HookFailure> {
        let mut failures = Vec::new();
        if users.is_empty() {
            return failures;
        }
        for hook in self.hooks.iter().filter(|h| only.is_none_or(|n| n == h.name())) {
            let started = Instant::now();
            let result = hook.on_users_created(users).await;
            called(hook.name(), "created (batch)", started, result.is_ok());
            if let Err(err) = result {
                tracing::error!(hook = hook.name(), users = users.len(), error = %err, "on_users_created failed; the users stand, the hook's work is owed");
                failures.push(failure(hook.name(), "created", &err));
            }
        }
        failures
    }

    /// Fires `on_user_login` on every hook, awaiting each; call it before stamping
    /// `last_login_at`. A failure never fails the sign-in (the hook contract): it is logged
    /// at error with the hook's name and returned for the caller to report and record.
    pub(crate) async fn dispatch_login(&self, user: &User) -> Vec<HookFailure> {
        let mut failures = Vec::new();
        for hook in &self.hooks {
            let started = Instant::now();
            let result = hook.on_user_login(user).await;
            called(hook.name(), "login", started, result.is_ok());
            if let Err(err) = result {
                tracing::error!(hook = hook.name(), user_id = %user.id, error = %err, "on_user_login failed; the sign-in stands");
                failures.push(failure(hook.name(), "login", &err));
            }
        }
        failures
    }

    /// Whether a hook of that name is registered.
    pub(crate) fn has_hook(&self, name: &str) -> bool {
        self.hooks.iter().any(|h| h.name() == name)
    }

    /// Spawns `on_user_logout` on every hook (in order, in one task) and returns at once.
    /// Errors are logged. The task is tracked; see [`UserLifecycleService::drain`].
    pub(crate) fn dispatch_logout(&self, user: &User, reason: LogoutReason) {
        let hooks = self.hooks.clone();
        let user = user.clone();
        let actor = current_actor();
        self.spawned.spawn(with_actor(actor, async move {
            for hook in &hooks {
                let started = Instant::now();
                let result = hook.on_user_logout(&user, reason).await;
                called(hook.name(), "logout", started, result.is_ok());
                if let Err(err) = result {
                    tracing::error!(hook = hook.name(), user_id = %user.id, %reason, error = %err, "on_user_logout failed");
                }
            }
        }));
    }

    /// Fires `on_user_deleted` on every hook inside `tx`. The first `Err` stops the fan-out
    /// and is returned as [`Error::Vetoed`] when the hook refused by policy
    /// ([`Error::Refused`]), else as [`Error::Hook`]; the caller drops `tx`, rolling
    /// everything back.
    pub(crate) async fn dispatch_deleted(&self, user: &User, mode: DeletionMode, tx: &mut Tx) -> Result<(), Error> {
        for hook in &self.hooks {
            let started = Instant::now();
            let result = hook.on_user_deleted(user, mode, tx).await;
            called(hook.name(), "deleted", started, result.is_ok());
            if let Err(err) = result {
                // A veto is the returned error, which the caller reports (the CLI's error
                // line, the sweeper's per-user line): logged here at debug, so it is not
                // reported twice.
                if matches!(err, Error::Refused(_)) {
                    tracing::debug!(hook = hook.name(), user_id = %user.id, %mode, reason = %err, "on_user_deleted vetoed the delete; rolling back");
                } else {
                    tracing::error!(hook = hook.name(), user_id = %user.id, %mode, error = %err, "on_user_deleted failed; rolling back");
                }
                return Err(Error::from_hook(hook.name(), err));
            }
        }
        Ok(())
    }

    /// Waits up to `within` for every spawned task (logout hooks) to finish. Returns how many
    /// were still running when the time ran out (0 when all finished). A short-lived process
    /// calls this before exiting so spawned work is not lost (the CLI waits up to 10 s).
    pub async fn drain(&self, within: Duration) -> usize {
        self.spawned.close();
        let finished = tokio::time::timeout(within, self.spawned.wait()).await.is_ok();
        self.spawned.reopen();
        if finished { 0 } else { self.spawned.len() }
    }
}

/// One debug line per hook call (`-vv`): the hook, the event, how long it took in
/// milliseconds and whether it returned `Ok`. Never the user's identifiers or the error's
/// text (the error is logged on its own line at its own level).
fn called(hook: &str, event: &str, started: Instant, ok: bool) {
    tracing::debug!(
        hook,
        event,
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        ok,
        "hook called"
    );
}

fn failure(hook: &str, event: &str, err: &Error) -> HookFailure {
    HookFailure {
        hook: hook.to_owned(),
        event: event.to_owned(),
        error: err.to_string(),
    }
}
