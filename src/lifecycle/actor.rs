//! Who is acting, for audit rows. The hook trait carries no actor (the OxiCloud hook contract
//! is kept exactly), so the caller scopes one around its work; the dispatcher carries it into
//! the logout tasks it spawns.

use std::future::Future;

tokio::task_local! {
    static ACTOR: String;
}

/// Runs `fut` with `actor` as the current actor (a CLI run, a server request).
pub async fn with_actor<F: Future>(actor: String, fut: F) -> F::Output {
    ACTOR.scope(actor, fut).await
}

/// The current actor, or `"system"` outside any [`with_actor`] scope.
pub fn current_actor() -> String {
    ACTOR.try_with(Clone::clone).unwrap_or_else(|_| "system".to_owned())
}
