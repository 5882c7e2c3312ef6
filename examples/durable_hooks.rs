//! An application admin binary whose `on_user_created` hook kills the process the first time
//! it runs: it shows that the work hooks owe a committed change survives a crash.
//!
//! ```text
//! export DATABASE_URL=sqlite://demo.db CRASH_MARKER=/tmp/crashed-once
//! cargo run --example durable_hooks -- bootstrap --admin-username admin --admin-email a@example.com --random-password
//! printf 'username,email\nann,ann@example.com\n' > users.csv
//! cargo run --example durable_hooks -- user import users.csv   # dies after the batch's commit
//! cargo run --example durable_hooks -- hooks owed              # the batch's hook work, owed
//! cargo run --example durable_hooks -- user import users.csv --on-conflict skip
//! #   completes the owed work first: every user gets its hooks' work, once the hook runs
//! ```
//!
//! The import's batch transaction records the created users' hook work (`owed_hook_work`)
//! beside the users; the record goes only once the hooks ran. The process that dies leaves
//! it, and the next `user create`, `user import`, `invite accept`, `gdpr purge` or
//! `hooks replay` runs the hooks again (they are idempotent) and settles it.

use std::sync::Arc;

use accountctl::db::{Database, Tx};
use accountctl::domain::{DeletionMode, LogoutReason, User};
use accountctl::lifecycle::UserLifecycleHook;
use accountctl::{App, Result};

/// Records `welcome.sent` in the audit trail for every internal user it sees, and aborts the
/// process the first time it runs (while the file named by `CRASH_MARKER` does not exist).
struct WelcomeHook {
    db: Database,
}

#[async_trait::async_trait]
impl UserLifecycleHook for WelcomeHook {
    fn name(&self) -> &'static str {
        "welcome"
    }

    async fn on_user_created(&self, user: &User) -> Result<()> {
        self.on_users_created(std::slice::from_ref(user)).await
    }

    async fn on_users_created(&self, users: &[User]) -> Result<()> {
        if let Ok(marker) = std::env::var("CRASH_MARKER")
            && std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&marker)
                .is_ok()
        {
            eprintln!("welcome hook: crashing on purpose (marker {marker} created)");
            std::process::abort();
        }
        let mut tx = self.db.begin().await?;
        for user in users.iter().filter(|u| !u.is_external) {
            accountctl::services::audit::record(&mut tx, "welcome.sent", Some(user.id), serde_json::json!({})).await?;
        }
        tx.commit().await
    }

    async fn on_user_login(&self, _user: &User) -> Result<()> {
        Ok(())
    }

    async fn on_user_logout(&self, _user: &User, _reason: LogoutReason) -> Result<()> {
        Ok(())
    }

    async fn on_user_deleted(&self, _user: &User, _mode: DeletionMode, _tx: &mut Tx) -> Result<()> {
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    accountctl::cli::run(
        App::builder()
            .application("durable-hooks-example")
            .hook_with(|db| Arc::new(WelcomeHook { db: db.clone() })),
    )
}
