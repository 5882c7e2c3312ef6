//! Workspace memberships: which role a user holds in which workspace (Fireback's
//! workspace/role model: a user's capabilities are the union of its roles' capabilities).

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::domain::now;
use crate::error::{Error, Result};
use crate::services::audit;
use crate::store::{Database, UserRef};

/// The result of assigning or revoking a workspace role.
#[derive(Debug, Clone, Serialize)]
pub struct MembershipChange {
    /// The member.
    pub user_id: Uuid,
    /// The member's username.
    pub username: String,
    /// The workspace.
    pub workspace_id: Uuid,
    /// The role's name in that workspace.
    pub role: String,
    /// `false` when the user already held (assign) or did not hold (revoke) the role.
    pub changed: bool,
}

/// Membership operations. Each publishes an AuthzCache invalidation for the user, in the
/// same transaction, since its capabilities change.
#[derive(Clone)]
pub struct Memberships {
    db: Database,
}

impl Memberships {
    pub(crate) fn new(db: Database) -> Self {
        Self { db }
    }

    /// Gives `user` the role `role` in `workspace` (idempotent). Errors: [`Error::NotFound`]
    /// for an unknown user, workspace or role; [`Error::Refused`] for a trashed user.
    pub async fn assign(&self, user: &UserRef, workspace: &str, role: &str) -> Result<MembershipChange> {
        self.db.retrying(|| self.assign_once(user, workspace, role)).await
    }

    /// One attempt of [`Self::assign`], which runs it again when the database asks.
    async fn assign_once(&self, user: &UserRef, workspace: &str, role: &str) -> Result<MembershipChange> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        if user.is_trashed() {
            return Err(Error::Refused(format!(
                "user {} is in the trash: restore it first",
                user.username
            )));
        }
        let workspace_id = tx.workspace_id(workspace).await?;
        let role_id = tx.role_id(workspace_id, role).await?;
        let at = now();
        let changed = tx.insert_membership(user.id, workspace_id, role_id, at).await?;
        if changed {
            audit::record(
                &mut tx,
                "membership.assigned",
                Some(user.id),
                json!({ "workspace_id": workspace_id, "role_id": role_id }),
            )
            .await?;
            tx.publish_authz_invalidation(user.id, "membership_changed", at).await?;
        }
        tx.commit().await?;
        Ok(MembershipChange {
            user_id: user.id,
            username: user.username,
            workspace_id,
            role: role.to_owned(),
            changed,
        })
    }

    /// Takes the role `role` in `workspace` from `user`. Errors: [`Error::NotFound`];
    /// [`Error::Refused`] when it would leave the root workspace without members.
    pub async fn revoke(&self, user: &UserRef, workspace: &str, role: &str) -> Result<MembershipChange> {
        self.db.retrying(|| self.revoke_once(user, workspace, role)).await
    }

    /// One attempt of [`Self::revoke`], which runs it again when the database asks.
    async fn revoke_once(&self, user: &UserRef, workspace: &str, role: &str) -> Result<MembershipChange> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        let workspace_id = tx.workspace_id(workspace).await?;
        let role_id = tx.role_id(workspace_id, role).await?;
        let at = now();
        let had_members = tx.has_members(workspace_id).await?;
        let changed = tx.delete_membership(user.id, workspace_id, role_id).await?;
        if changed {
            tx.refuse_if_root_emptied(workspace_id, had_members).await?;
            audit::record(
                &mut tx,
                "membership.revoked",
                Some(user.id),
                json!({ "workspace_id": workspace_id, "role_id": role_id }),
            )
            .await?;
            tx.publish_authz_invalidation(user.id, "membership_changed", at).await?;
        }
        tx.commit().await?;
        Ok(MembershipChange {
            user_id: user.id,
            username: user.username,
            workspace_id,
            role: role.to_owned(),
            changed,
        })
    }
}
