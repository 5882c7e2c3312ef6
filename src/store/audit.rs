//! Durable audit events. Only pseudonymous ids and non-personal fields are written here, so
//! the rows can outlive an erased user: a GDPR purge keeps them under the pseudonymous user
//! id (GDPR Art. 4(5), pseudonymisation), with nothing that identifies the person.

use uuid::Uuid;

use super::{DbId, Tx, TxInner};
use crate::domain::{LogoutReason, Timestamp};
use crate::error::Result;

impl Tx {
    /// Appends an audit event. `fields` must hold no personal data (names, emails, phones,
    /// addresses): ids, counts, modes and reasons only.
    pub(crate) async fn insert_audit(
        &mut self,
        at: Timestamp,
        actor: &str,
        event: &str,
        subject_user_id: Option<Uuid>,
        fields: &serde_json::Value,
    ) -> Result<()> {
        let fields = fields.to_string();
        on_conn!(self, |c| sqlx::query(
            "INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(at)
        .bind(actor)
        .bind(event)
        .bind(subject_user_id.map(DbId))
        .bind(&fields)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Revokes the user's live sessions with `reason` and appends the audit event `event`
    /// with the fields `{"count": <sessions revoked>, "mode": mode}`; returns the count.
    /// PostgreSQL runs both as one statement (a data-modifying CTE: one round trip); SQLite,
    /// which has none, as two.
    pub(crate) async fn revoke_sessions_audited(
        &mut self,
        user_id: Uuid,
        reason: LogoutReason,
        at: Timestamp,
        actor: &str,
        event: &str,
        mode: &str,
    ) -> Result<u64> {
        match &mut self.inner {
            TxInner::Postgres(t) => {
                let c: &mut sqlx::PgConnection = &mut *t;
                // The fields text is built exactly as `json!({"count": n, "mode": mode})` prints.
                let mode = serde_json::Value::from(mode).to_string();
                let count: i64 = sqlx::query_scalar(
                    "WITH revoked AS ( \
                       UPDATE sessions SET revoked_at = $2, revoke_reason = $3 \
                       WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 RETURNING 1), \
                     counted AS (SELECT COUNT(*) AS n FROM revoked) \
                     INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) \
                     SELECT $2, $4, $5, $1, '{\"count\":' || n || ',\"mode\":' || $6 || '}' FROM counted \
                     RETURNING (SELECT n FROM counted)",
                )
                .bind(DbId(user_id))
                .bind(at)
                .bind(reason.as_str())
                .bind(actor)
                .bind(event)
                .bind(&mode)
                .fetch_one(&mut *c)
                .await?;
                Ok(u64::try_from(count).unwrap_or_default())
            }
            TxInner::Sqlite(_) => {
                let count = self.revoke_sessions_of(user_id, reason, at).await?;
                let fields = serde_json::json!({ "count": count, "mode": mode });
                self.insert_audit(at, actor, event, Some(user_id), &fields).await?;
                Ok(count)
            }
        }
    }
}
