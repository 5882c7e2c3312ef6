//! Durable audit events. Only pseudonymous ids and non-personal fields are written here, so
//! the rows can outlive an erased user: a GDPR purge keeps them under the pseudonymous user
//! id (GDPR Art. 4(5), pseudonymisation), with nothing that identifies the person.

use uuid::Uuid;

use super::{DbId, Tx};
use crate::domain::Timestamp;
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
}
