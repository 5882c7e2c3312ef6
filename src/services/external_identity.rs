//! External (federated) identities: the (provider, subject) pairs that sign external users
//! in, and their lifecycle hook.

use crate::domain::{DeletionMode, LogoutReason, User, now};
use crate::error::Result;
use crate::lifecycle::UserLifecycleHook;
use crate::store::{Database, Tx};

/// Keeps `last_verified_at` of a user's identities current at every login of an external
/// user, so federated accounts nobody signs in with any more can be found and erased (GDPR
/// Art. 5(1)(e), storage limitation). Registered fifth; name `external_identity`.
pub struct ExternalIdentityLifecycleHook {
    db: Database,
}

impl ExternalIdentityLifecycleHook {
    pub(crate) fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl UserLifecycleHook for ExternalIdentityLifecycleHook {
    fn name(&self) -> &'static str {
        "external_identity"
    }

    async fn on_user_created(&self, _user: &User) -> Result<()> {
        // The identity row is written by `user create` in the same transaction as the user,
        // so a (provider, subject) collision refuses the create instead of leaving a user
        // without its identity. Nothing is left to do here.
        Ok(())
    }

    async fn on_user_login(&self, user: &User) -> Result<()> {
        if !user.is_external {
            return Ok(());
        }
        self.db
            .retrying(|| async {
                let mut tx = self.db.begin().await?;
                tx.touch_external_identities(user.id, now()).await?;
                tx.commit().await
            })
            .await
    }

    async fn on_user_logout(&self, _user: &User, _reason: LogoutReason) -> Result<()> {
        Ok(())
    }

    async fn on_user_deleted(&self, _user: &User, mode: DeletionMode, _tx: &mut Tx) -> Result<()> {
        match mode {
            // The trash keeps identities so a restore brings sign-in back.
            DeletionMode::AdminDelete => Ok(()),
            // The rows go with the user (ON DELETE CASCADE).
            DeletionMode::GdprPurge => Ok(()),
            // The merge moved them to the kept user before the delete.
            DeletionMode::Merged { .. } => Ok(()),
        }
    }
}
