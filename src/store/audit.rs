//! Durable audit events. Only pseudonymous ids and non-personal fields are written here, so
//! the rows can outlive an erased user: a GDPR purge keeps them under the pseudonymous user
//! id (GDPR Art. 4(5), pseudonymisation), with nothing that identifies the person.

use uuid::Uuid;

use super::{DbId, Tx, TxInner};
use crate::domain::{LogoutReason, Timestamp};
use crate::error::Result;

/// Audit rows recorded on PostgreSQL and not yet sent, column by column (bound as arrays).
/// See [`Tx::insert_audit`].
#[derive(Default)]
pub(crate) struct PendingAudit {
    pub(super) at: Vec<Timestamp>,
    pub(super) actor: Vec<String>,
    pub(super) event: Vec<String>,
    pub(super) subject: Vec<Option<Uuid>>,
    pub(super) fields: Vec<String>,
}

impl PendingAudit {
    fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// The `SELECT` that yields the pending rows bound at `$n … $n+4`, in the order they were
/// recorded (column `ord`), for an `INSERT INTO audit_events (occurred_at, actor, event,
/// subject_user_id, fields)`.
pub(crate) fn pending_rows_sql(n: usize) -> String {
    format!(
        "SELECT d.o, d.a, d.e, d.s, d.f, d.ord FROM unnest(${}::timestamptz[], ${}::text[], ${}::text[], ${}::uuid[], ${}::text[]) \
         WITH ORDINALITY AS d(o, a, e, s, f, ord)",
        n,
        n + 1,
        n + 2,
        n + 3,
        n + 4
    )
}

/// Binds the pending rows (taken out of the transaction) as the five arrays of
/// [`pending_rows_sql`].
macro_rules! bind_pending {
    ($q:expr, $rows:expr) => {{
        let rows = $rows;
        let subject: Vec<Option<uuid::Uuid>> = rows.subject;
        $q.bind(rows.at)
            .bind(rows.actor)
            .bind(rows.event)
            .bind(subject)
            .bind(rows.fields)
    }};
}
pub(crate) use bind_pending;

impl Tx {
    /// Appends an audit event. `fields` must hold no personal data (names, emails, phones,
    /// addresses): ids, counts, modes and reasons only.
    ///
    /// On PostgreSQL the row is not sent at once: it goes with the transaction's next
    /// statement, inside it when that statement carries pending rows (the session revocation
    /// of a delete and the erase statement of a purge or merge), otherwise as its own insert
    /// just before it, and before the commit at the latest. A delete's audit row then costs
    /// no round trip of its own. Rows keep the order they were recorded in, and no statement
    /// of the transaction runs before the rows recorded ahead of it are written. On SQLite,
    /// in-process, the row is inserted at once.
    pub(crate) async fn insert_audit(
        &mut self,
        at: Timestamp,
        actor: &str,
        event: &str,
        subject_user_id: Option<Uuid>,
        fields: &serde_json::Value,
    ) -> Result<()> {
        let fields = fields.to_string();
        match &mut self.inner {
            TxInner::Postgres(_) => {
                let p = &mut self.pending_audit;
                p.at.push(at);
                p.actor.push(actor.to_owned());
                p.event.push(event.to_owned());
                p.subject.push(subject_user_id);
                p.fields.push(fields);
            }
            TxInner::Sqlite(c) => {
                sqlx::query(
                    "INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(at)
                .bind(actor)
                .bind(event)
                .bind(subject_user_id.map(DbId))
                .bind(&fields)
                .execute(&mut **c)
                .await?;
            }
        }
        Ok(())
    }

    /// Writes the pending audit rows (PostgreSQL), if any: one insert of five arrays.
    pub(crate) async fn flush_audit(&mut self) -> Result<()> {
        if self.pending_audit.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending_audit);
        if let TxInner::Postgres(c) = &mut self.inner {
            let sql = format!(
                "INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) \
                 SELECT o, a, e, s, f FROM ({}) AS p ORDER BY ord",
                pending_rows_sql(1)
            );
            bind_pending!(sqlx::query(sqlx::AssertSqlSafe(sql)), rows)
                .execute(&mut **c)
                .await?;
        }
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
                // The audit rows recorded before this statement (a delete's `user.deleted`)
                // ride with it, ahead of its own row.
                let pending = std::mem::take(&mut self.pending_audit);
                let sql = format!(
                    "WITH revoked AS ( \
                       UPDATE sessions SET revoked_at = $2, revoke_reason = $3 \
                       WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 RETURNING 1), \
                     counted AS (SELECT COUNT(*) AS n FROM revoked), \
                     logged AS ( \
                       INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) \
                       SELECT o, a, e, s, f FROM ({pending} \
                         UNION ALL SELECT $2, $4::text, $5::text, $1::uuid, \
                           '{{\"count\":' || n || ',\"mode\":' || $6 || '}}', 9223372036854775807 FROM counted) AS r \
                       ORDER BY ord) \
                     SELECT n FROM counted",
                    pending = pending_rows_sql(7)
                );
                let q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(DbId(user_id))
                    .bind(at)
                    .bind(reason.as_str())
                    .bind(actor)
                    .bind(event)
                    .bind(&mode);
                let count: i64 = bind_pending!(q, pending).fetch_one(&mut *c).await?;
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
