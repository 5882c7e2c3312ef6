//! User-lifecycle hooks: the observer contract through which every service reacts to a user
//! being created, logging in, logging out and being deleted: the OxiCloud user-lifecycle hook
//! design, kept exactly. The full contract, with the registry of hook names the database
//! keeps, is in `docs/hooks.md`.
//!
//! An application server links this library and registers the same hooks, so a user created
//! or deleted by `accountctl` gets exactly what the server would have done.
//!
//! # The dispatcher's semantics
//!
//! | event | awaited? | on `Err` |
//! |---|---|---|
//! | created | yes | logged (`tracing::error!`, user id) and ignored; if the *database* made it fail, the operation returns that error after the other hooks ran |
//! | login | yes, before `last_login_at` is stamped | the same as created |
//! | logout | spawned | logged, never propagated |
//! | deleted | yes, inside the delete transaction | the first `Err` aborts: everything rolls back |
//!
//! A deleted hook's `Err` is reported naming the hook: [`Error::Refused`] is a veto, a policy
//! decision ([`Error::Vetoed`], CLI exit 4); any other error is a failure ([`Error::Hook`],
//! exit 1). Either way nothing changed.
//!
//! Hooks fire in registration order, which is built in one place: [`crate::app::App`]. The
//! shipped hooks come first (`audit`, `home_folder`, `authz_cache`, `session_revocation`,
//! `external_identity`), then the application's, in the order it registered them.
//!
//! # Tips for implementors
//!
//! * **No default bodies.** Every hook declares all four methods; return `Ok(())` for events
//!   you do not care about. This forces a conscious decision per event. (Only the later
//!   batch method `on_users_created` has a default, which calls `on_user_created`.)
//! * **First-ever login.** `on_user_login` fires *before* `last_login_at` is stamped, so
//!   `user.last_login_at.is_none()` reliably means "first login since the account exists".
//! * **External users short-circuit.** A hook that provisions per-user resources (home folder,
//!   calendar, keys…) starts with `if user.is_external { return Ok(()) }`. External users are
//!   grant-only recipients: no home folder, no storage. The database's
//!   `CHECK (NOT is_external OR storage_used_bytes = 0)` catches a hook that forgets.
//! * **External users are never admin.** The database enforces
//!   `CHECK (NOT (is_external AND role = 'admin'))`. Making an external user admin takes two
//!   deliberate steps: convert to internal, then assign the role.
//! * **Idempotency is mandatory.** Any event may arrive again: login fires on every
//!   authentication, logout once per logical revoke call (not per session). Check before you
//!   create; tolerate redundant invalidations.
//! * **Conversion needs no event.** When an external user becomes internal, the next login's
//!   idempotent `on_user_login` sees `!is_external` and provisions what is missing.
//! * **Failures on create/login are swallowed.** The user is still created or logged in; only
//!   your effect is delayed until the next login retries it. Log enough to find the user.
//!   The exception is a failure the database caused ([`crate::Error::Unavailable`], a
//!   database error, a conflict that outlived the retries): the change is committed, but the
//!   operation reports that error, so a command never reports success with a hook's work
//!   (an audit row, say) silently missing.
//! * **`on_user_deleted` runs inside the delete transaction**, with the user row still present.
//!   Use the `tx` handle so your writes commit or roll back with the delete. Returning `Err`
//!   aborts the whole delete (the admin's command fails, the user stays intact): a heavy
//!   hammer. Return [`Error::Refused`] to veto by policy (a user on legal hold); return
//!   another error only when going on would lose data.
//! * **Every [`DeletionMode`] is handled explicitly:** `AdminDelete` (to the trash, restorable),
//!   `GdprPurge` (erase personal data), `Merged { into }` (data already moved to `into`).
//! * **Logout work is spawned.** The dispatcher tracks what it spawned; a short-lived process
//!   calls [`UserLifecycleService::drain`] before exiting so the work is not lost.

mod actor;
mod dispatcher;

pub use actor::{current_actor, with_actor};
pub use dispatcher::UserLifecycleService;

use crate::domain::User;
pub use crate::domain::{DeletionMode, LogoutReason};
use crate::error::Error;
use crate::store::Tx;

/// A reaction to user state transitions. See the module documentation for the contract.
#[async_trait::async_trait]
pub trait UserLifecycleHook: Send + Sync {
    /// A stable name for logs and error messages (e.g. `"home_folder"`).
    fn name(&self) -> &'static str;

    /// After the user row is committed. Awaited; an `Err` is logged and ignored.
    async fn on_user_created(&self, user: &User) -> Result<(), Error>;

    /// After credentials were verified, before `last_login_at` is stamped. Awaited; an `Err`
    /// is logged and ignored.
    async fn on_user_login(&self, user: &User) -> Result<(), Error>;

    /// After sessions ended, once per logical revoke call. Spawned; an `Err` is logged.
    async fn on_user_logout(&self, user: &User, reason: LogoutReason) -> Result<(), Error>;

    /// Inside the delete transaction, before the user row changes. The first `Err` rolls the
    /// whole delete back.
    async fn on_user_deleted(&self, user: &User, mode: DeletionMode, tx: &mut Tx) -> Result<(), Error>;

    /// `on_user_created` for a batch of committed users (bulk import). Awaited; an `Err` is
    /// logged and ignored, like `on_user_created`.
    ///
    /// The one default body of the trait (the OxiCloud design's rule for events added later:
    /// a default so existing hooks need not change): it calls [`Self::on_user_created`] for each
    /// user in order and returns the first error after trying them all. Hooks with set-based
    /// work override it with one statement per batch.
    async fn on_users_created(&self, users: &[User]) -> Result<(), Error> {
        let mut first_err = None;
        for user in users {
            if let Err(err) = self.on_user_created(user).await {
                tracing::error!(hook = self.name(), user_id = %user.id, error = %err, "on_user_created failed; will retry on next login");
                first_err.get_or_insert(err);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
