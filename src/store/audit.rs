//! Durable audit events. Only pseudonymous ids and non-personal fields are written here, so
//! the rows can outlive an erased user (DESIGN.md, GdprPurge).

use serde::Serialize;
use uuid::Uuid;

use super::{DbId, DbRow, Tx, from_row, get_opt_id};
use crate::domain::Timestamp;
use crate::error::Result;

/// One row of `audit_events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub occurred_at: Timestamp,
    pub actor: String,
    pub event: String,
    pub subject_user_id: Option<Uuid>,
    /// A JSON object of non-personal values.
    pub fields: serde_json::Value,
}

from_row!(AuditRow, |r| AuditRow {
    id: r.try_get("id")?,
    occurred_at: r.try_get("occurred_at")?,
    actor: r.try_get("actor")?,
    event: r.try_get("event")?,
    subject_user_id: get_opt_id!(r, "subject_user_id"),
    fields: serde_json::from_str(&r.try_get::<String, _>("fields")?).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
});

impl Tx {
    /// Appends an audit event. `fields` must hold no personal data (names, emails, phones,
    /// addresses): ids, counts, modes and reasons only.
    pub async fn insert_audit(
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

    /// Audit events, oldest first, optionally only those about one user.
    pub async fn audit_events(&mut self, subject_user_id: Option<Uuid>, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = on_conn!(self, |c| sqlx::query(
            "SELECT id, occurred_at, actor, event, subject_user_id, fields FROM audit_events \
             WHERE ($1 IS NULL OR subject_user_id = $1) ORDER BY occurred_at, id LIMIT $2"
        )
        .bind(subject_user_id.map(DbId))
        .bind(limit)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| r.decode::<AuditRow>())
        .collect::<Result<Vec<_>, _>>()?);
        Ok(rows)
    }
}
