//! The audit trail: admin actions recorded by services, lifecycle events recorded by
//! [`AuditLifecycleHook`]. Each event goes to the tracing target `audit` and to a durable
//! `audit_events` row holding only pseudonymous ids and non-personal fields.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::{DeletionMode, LogoutReason, User, now};
use crate::error::Result;
use crate::lifecycle::{UserLifecycleHook, current_actor};
use crate::store::{Database, Tx};

/// Records one audit event inside `tx`: a `tracing` event on target `audit` and a durable
/// row, attributed to [`current_actor`]. `fields` must be non-personal (ids, counts, modes).
pub async fn record(tx: &mut Tx, event: &str, subject: Option<Uuid>, fields: Value) -> Result<()> {
    let actor = current_actor();
    tracing::info!(target: "audit", event, actor = %actor, subject_user_id = ?subject, fields = %fields);
    tx.insert_audit(now(), &actor, event, subject, &fields).await
}

/// Revokes the user's live sessions with `reason` inside `tx` and records `event` with the
/// fields `{"count": <sessions revoked>, "mode": mode}`, as [`record`] would. On PostgreSQL
/// it rides with the transaction's next statement (a purge's erase statement runs it); see
/// [`Tx::revoke_sessions_audited`](crate::store::Tx).
pub(crate) async fn record_sessions_revoked(
    tx: &mut Tx,
    user_id: Uuid,
    reason: LogoutReason,
    event: &str,
    mode: DeletionMode,
) -> Result<()> {
    let actor = current_actor();
    tx.revoke_sessions_audited(user_id, reason, now(), &actor, event, mode.as_str())
        .await
}

/// [`record`] in a transaction of its own, for events that happen outside one (run again
/// when the database asks, see [`Database::retrying`]).
pub async fn record_standalone(db: &Database, event: &str, subject: Option<Uuid>, fields: Value) -> Result<()> {
    db.retrying(|| async {
        let mut tx = db.begin().await?;
        record(&mut tx, event, subject, fields.clone()).await?;
        tx.commit().await
    })
    .await
}

/// Audits all four lifecycle events (`user.created`, `user.login`, `user.logout`,
/// `user.deleted`) with `is_external` as a field. Cross-cutting, so it lives with the audit
/// trail rather than with a domain owner (the exception to the OxiCloud user-lifecycle hook
/// design's owner-located convention). Registered first, so even an event a later hook
/// aborts is traced; name `audit`.
pub struct AuditLifecycleHook {
    db: Database,
}

impl AuditLifecycleHook {
    pub(crate) fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl UserLifecycleHook for AuditLifecycleHook {
    fn name(&self) -> &'static str {
        "audit"
    }

    async fn on_user_created(&self, user: &User) -> Result<()> {
        record_standalone(
            &self.db,
            "user.created",
            Some(user.id),
            json!({ "is_external": user.is_external, "role": user.role }),
        )
        .await
    }

    async fn on_user_login(&self, user: &User) -> Result<()> {
        let fields = json!({ "is_external": user.is_external, "first_login": user.last_login_at.is_none() });
        record_standalone(&self.db, "user.login", Some(user.id), fields).await
    }

    async fn on_user_logout(&self, user: &User, reason: LogoutReason) -> Result<()> {
        record_standalone(
            &self.db,
            "user.logout",
            Some(user.id),
            json!({ "is_external": user.is_external, "reason": reason }),
        )
        .await
    }

    async fn on_users_created(&self, users: &[User]) -> Result<()> {
        // One multi-row insert per batch instead of one transaction per user.
        let actor = current_actor();
        let rows: Vec<(Uuid, Value)> = users
            .iter()
            .map(|u| (u.id, json!({ "is_external": u.is_external, "role": u.role })))
            .collect();
        for (id, fields) in &rows {
            tracing::info!(target: "audit", event = "user.created", actor = %actor, subject_user_id = %id, fields = %fields);
        }
        self.db
            .retrying(|| async {
                let mut tx = self.db.begin().await?;
                tx.insert_audit_batch(now(), &actor, "user.created", &rows).await?;
                tx.commit().await
            })
            .await
    }

    async fn on_user_deleted(&self, user: &User, mode: DeletionMode, tx: &mut Tx) -> Result<()> {
        let merged_into = match mode {
            DeletionMode::Merged { into } => Some(into),
            DeletionMode::AdminDelete | DeletionMode::GdprPurge => None,
        };
        let fields = json!({ "is_external": user.is_external, "mode": mode.as_str(), "merged_into": merged_into });
        record(tx, "user.deleted", Some(user.id), fields).await
    }
}
