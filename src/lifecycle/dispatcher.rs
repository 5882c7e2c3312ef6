use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::{DeletionMode, LogoutReason, UserLifecycleHook, current_actor, with_actor};
use crate::domain::User;
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

/// A created/login hook's failure as the command's error when the database caused it, else
/// `None` (the hook's own logic failed: logged, not propagated). Unavailable stays
/// [`Error::Unavailable`] (exit 6), a conflict after retries becomes [`Error::Conflict`]
/// (exit 4), any other database error becomes [`Error::Internal`] (exit 1); each message
/// says that the change itself was committed.
///
/// Login hooks fire before the login is stamped (the OxiCloud design), so for `login`
/// nothing was committed yet and the message says so instead.
fn database_caused(hook: &'static str, event: &str, err: Error) -> Option<Error> {
    let context = |m: &str| {
        if event == "login" {
            format!(
                "the login was not recorded: the {hook} hook's login work could not be written, and nothing was committed: {m}"
            )
        } else {
            format!(
                "the change was committed, but the {hook} hook's {event} work could not be written (it is re-done idempotently at the next login): {m}"
            )
        }
    };
    match err {
        Error::Unavailable(m) => Some(Error::Unavailable(context(&m))),
        // Not Serialization: the hook already retried its own transaction, and the
        // operation that fired it must not run again over its committed change.
        Error::Serialization(m) => Some(Error::Conflict(context(&m))),
        Error::Database(e) => Some(Error::Internal(context(&e.to_string()))),
        _ => None,
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

    /// Fires `on_user_created` on every hook, awaiting each. A hook's own failure is logged
    /// and ignored (the contract). A failure the database caused (unreachable, read-only, a
    /// pooler that lost the statement) is logged too, the remaining hooks still fire, and the
    /// first such failure is returned: the user exists, but its hook work may be missing,
    /// and a command must not report plain success. Errors: [`Error::Unavailable`] (exit 6) when the database was unreachable, [`Error::Conflict`] after retries, [`Error::Internal`] for any other database error; each message says the change itself was committed.
    pub async fn dispatch_created(&self, user: &User) -> Result<(), Error> {
        let mut first = None;
        for hook in &self.hooks {
            if let Err(err) = hook.on_user_created(user).await {
                tracing::error!(hook = hook.name(), user_id = %user.id, error = %err, "on_user_created failed; will retry on next login");
                first = first.or_else(|| database_caused(hook.name(), "created", err));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Fires `on_users_created` on every hook for a batch of committed users (bulk import),
    /// awaiting each, with the error handling of [`Self::dispatch_created`].
    pub async fn dispatch_created_batch(&self, users: &[User]) -> Result<(), Error> {
        if users.is_empty() {
            return Ok(());
        }
        let mut first = None;
        for hook in &self.hooks {
            if let Err(err) = hook.on_users_created(users).await {
                tracing::error!(hook = hook.name(), users = users.len(), error = %err, "on_users_created failed; will retry on next login");
                first = first.or_else(|| database_caused(hook.name(), "created", err));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Fires `on_user_login` on every hook, awaiting each, with the error handling of
    /// [`Self::dispatch_created`]. Call it before stamping `last_login_at`.
    pub async fn dispatch_login(&self, user: &User) -> Result<(), Error> {
        let mut first = None;
        for hook in &self.hooks {
            if let Err(err) = hook.on_user_login(user).await {
                tracing::error!(hook = hook.name(), user_id = %user.id, error = %err, "on_user_login failed; will retry on next login");
                first = first.or_else(|| database_caused(hook.name(), "login", err));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Spawns `on_user_logout` on every hook (in order, in one task) and returns at once.
    /// Errors are logged. The task is tracked; see [`UserLifecycleService::drain`].
    pub fn dispatch_logout(&self, user: &User, reason: LogoutReason) {
        let hooks = self.hooks.clone();
        let user = user.clone();
        let actor = current_actor();
        self.spawned.spawn(with_actor(actor, async move {
            for hook in &hooks {
                if let Err(err) = hook.on_user_logout(&user, reason).await {
                    tracing::error!(hook = hook.name(), user_id = %user.id, %reason, error = %err, "on_user_logout failed");
                }
            }
        }));
    }

    /// Fires `on_user_deleted` on every hook inside `tx`. The first `Err` stops the fan-out
    /// and is returned as [`Error::Vetoed`] when the hook refused by policy
    /// ([`Error::Refused`]), else as [`Error::Hook`]; the caller drops `tx`, rolling
    /// everything back.
    pub async fn dispatch_deleted(&self, user: &User, mode: DeletionMode, tx: &mut Tx) -> Result<(), Error> {
        for hook in &self.hooks {
            if let Err(err) = hook.on_user_deleted(user, mode, tx).await {
                if matches!(err, Error::Refused(_)) {
                    tracing::warn!(hook = hook.name(), user_id = %user.id, %mode, reason = %err, "on_user_deleted vetoed the delete; rolling back");
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
