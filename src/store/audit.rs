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

/// A session revocation recorded on PostgreSQL and not yet run: the user's live sessions
/// revoked with `reason` at `at`, audited as `event` with `{"count": n, "mode": mode}`.
/// See [`Tx::revoke_sessions_audited`].
pub(crate) struct PendingRevocation {
    pub(super) user_id: Uuid,
    pub(super) reason: LogoutReason,
    pub(super) at: Timestamp,
    pub(super) actor: String,
    pub(super) event: String,
    /// The mode as a JSON string (quoted), as `json!` prints it.
    pub(super) mode: String,
}

impl PendingRevocation {
    /// Logs the revocation's audit event once its count is known, as `record` logs others.
    pub(super) fn trace(&self, count: i64) {
        let fields = format!("{{\"count\":{count},\"mode\":{}}}", self.mode);
        tracing::info!(target: "audit", event = %self.event, actor = %self.actor, subject_user_id = ?Some(self.user_id), fields = %fields);
    }
}

/// The CTEs `revoked`, `counted` and `logged` of a statement that carries a pending session
/// revocation (bound at `$n … $n+6`: user, time, reason, actor, event, mode, and whether there
/// is one) and the pending audit rows (at `$n+7 … $n+11`). `logged` writes the audit rows in
/// the order they were recorded, the revocation's own row (when there is one) last;
/// `counted.n` is the number of sessions revoked.
pub(crate) fn carried_ctes_sql(n: usize) -> String {
    let [user, at, reason, actor, event, mode, active] = std::array::from_fn(|i| n + i);
    format!(
        "revoked AS ( \
           UPDATE sessions SET revoked_at = ${at}, revoke_reason = ${reason} \
           WHERE ${active} AND user_id = ${user} AND revoked_at IS NULL AND expires_at > ${at} RETURNING 1), \
         counted AS (SELECT COUNT(*) AS n FROM revoked), \
         logged AS ( \
           INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) \
           SELECT o, a, e, s, f FROM ({pending} \
             UNION ALL SELECT ${at}, ${actor}::text, ${event}::text, ${user}::uuid, \
               '{{\"count\":' || n || ',\"mode\":' || ${mode} || '}}', 9223372036854775807 \
             FROM counted WHERE ${active}) AS r \
           ORDER BY ord)",
        pending = pending_rows_sql(n + 7)
    )
}

/// Binds a pending revocation (or, with `None`, an inactive placeholder) and the pending
/// audit rows, as [`carried_ctes_sql`] numbers them.
macro_rules! bind_carried {
    ($q:expr, $revocation:expr, $rows:expr) => {{
        let revocation: Option<&$crate::store::audit::PendingRevocation> = $revocation;
        let q = match revocation {
            Some(r) => $q
                .bind($crate::store::DbId(r.user_id))
                .bind(r.at)
                .bind(r.reason.as_str())
                .bind(r.actor.clone())
                .bind(r.event.clone())
                .bind(r.mode.clone())
                .bind(true),
            None => $q
                .bind($crate::store::DbId(uuid::Uuid::nil()))
                .bind(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH)
                .bind("")
                .bind(String::new())
                .bind(String::new())
                .bind(String::new())
                .bind(false),
        };
        $crate::store::audit::bind_pending!(q, $rows)
    }};
}
pub(crate) use bind_carried;

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
        if self.pending_revocation.is_some() {
            // Its audit row comes first.
            self.flush_pending().await?;
        }
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

    /// Runs what is pending (PostgreSQL), if anything: the session revocation with the audit
    /// rows recorded before it, in one statement, or else the audit rows alone, in one insert.
    pub(crate) async fn flush_pending(&mut self) -> Result<()> {
        if self.pending_audit.is_empty() && self.pending_revocation.is_none() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending_audit);
        let revocation = self.pending_revocation.take();
        if let TxInner::Postgres(c) = &mut self.inner {
            let Some(revocation) = revocation else {
                let sql = format!(
                    "INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) \
                     SELECT o, a, e, s, f FROM ({}) AS p ORDER BY ord",
                    pending_rows_sql(1)
                );
                bind_pending!(sqlx::query(sqlx::AssertSqlSafe(sql)), rows)
                    .execute(&mut **c)
                    .await?;
                return Ok(());
            };
            let sql = format!("WITH {} SELECT n FROM counted", carried_ctes_sql(1));
            let count: i64 = bind_carried!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)), Some(&revocation), rows)
                .fetch_one(&mut **c)
                .await?;
            revocation.trace(count);
        }
        Ok(())
    }

    /// Revokes the user's live sessions with `reason` and appends the audit event `event`
    /// with the fields `{"count": <sessions revoked>, "mode": mode}` (logged on the `audit`
    /// tracing target, like every audit event, once the count is known).
    ///
    /// On PostgreSQL the revocation waits, like audit rows (see [`Tx::insert_audit`]), for the
    /// transaction's next statement: the erase statement of a purge or merge carries it (one
    /// round trip fewer per purged user: the revocation and the erase run as one statement);
    /// any other statement, or the commit, runs it first on its own, with the audit rows
    /// recorded before it. SQLite, in-process, runs it at once as two statements.
    pub(crate) async fn revoke_sessions_audited(
        &mut self,
        user_id: Uuid,
        reason: LogoutReason,
        at: Timestamp,
        actor: &str,
        event: &str,
        mode: &str,
    ) -> Result<()> {
        let revocation = PendingRevocation {
            user_id,
            reason,
            at,
            actor: actor.to_owned(),
            event: event.to_owned(),
            mode: serde_json::Value::from(mode).to_string(),
        };
        match &mut self.inner {
            TxInner::Postgres(_) => {
                // One at a time: an earlier one runs now.
                self.flush_pending_revocation().await?;
                self.pending_revocation = Some(revocation);
            }
            TxInner::Sqlite(_) => {
                let count = self.revoke_sessions_of(user_id, reason, at).await?;
                let fields = serde_json::json!({ "count": count, "mode": mode });
                self.insert_audit(at, actor, event, Some(user_id), &fields).await?;
                revocation.trace(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
        Ok(())
    }

    async fn flush_pending_revocation(&mut self) -> Result<()> {
        if self.pending_revocation.is_some() {
            self.flush_pending().await?;
        }
        Ok(())
    }
}
