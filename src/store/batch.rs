//! Batch statements for bulk import. On PostgreSQL each table of a batch is one
//! `COPY … FROM STDIN` (text format) straight into the table, so every constraint, unique
//! index and foreign key of the table still applies to every row; statements that must skip
//! existing rows (`ON CONFLICT DO NOTHING`) and the lookups bind whole arrays (`unnest`,
//! `= ANY`). On SQLite, one multi-row statement per table per 1,000 rows.

use std::collections::HashMap;
use std::fmt::Write as _;

use uuid::Uuid;

use super::{DbId, Tx, TxInner};
use crate::domain::{Person, Timestamp};
use crate::error::Result;

/// Rows per multi-row statement: keeps every statement under SQLite's 32,766 bind variables
/// (9 columns × 1,000 rows) however large the transaction.
const STATEMENT_ROWS: usize = 1000;

/// One user of an import batch, fully resolved (ids assigned, password hashed).
#[derive(Debug, Clone)]
pub struct BatchUser {
    pub person: Person,
    pub user: super::NewUserRecord,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub identity: Option<(String, String)>,
    /// (workspace id, role id) pairs.
    pub memberships: Vec<(Uuid, Uuid)>,
}

/// One key lookup of an import batch: which of `keys` match `key` (an expression over the
/// table aliased `t`) in `table`, and the `id` of each match; `kind` narrows passports to
/// one kind. Every part but `keys` is a fixed SQL fragment of this module.
struct Lookup<'a> {
    table: &'static str,
    key: &'static str,
    id: &'static str,
    kind: Option<&'static str>,
    keys: &'a [String],
}

impl Tx {
    /// Inserts a batch of users with their persons, passports, identities and memberships:
    /// five multi-row statements, whatever the batch size.
    pub(crate) async fn insert_users_batch(&mut self, batch: &[BatchUser]) -> Result<()> {
        self.flush_pending().await?;
        if let TxInner::Postgres(t) = &mut self.inner {
            return copy_users_pg(t, batch).await;
        }
        for chunk in batch.chunks(STATEMENT_ROWS) {
            self.insert_users_chunk(chunk).await?;
        }
        Ok(())
    }

    async fn insert_users_chunk(&mut self, batch: &[BatchUser]) -> Result<()> {
        let passports: Vec<(Uuid, &'static str, &str, Timestamp)> = batch
            .iter()
            .flat_map(|b| {
                let at = b.user.created_at;
                b.email
                    .as_deref()
                    .map(|e| (b.user.id, "email", e, at))
                    .into_iter()
                    .chain(b.phone.as_deref().map(|p| (b.user.id, "phone", p, at)))
            })
            .collect();
        let identities: Vec<(Uuid, &str, &str, Timestamp)> = batch
            .iter()
            .filter_map(|b| {
                b.identity
                    .as_ref()
                    .map(|(p, s)| (b.user.id, p.as_str(), s.as_str(), b.user.created_at))
            })
            .collect();
        let memberships: Vec<(Uuid, Uuid, Uuid, Timestamp)> = batch
            .iter()
            .flat_map(|b| {
                b.memberships
                    .iter()
                    .map(move |(w, r)| (b.user.id, *w, *r, b.user.created_at))
            })
            .collect();
        on_conn!(self, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO persons (id, given_name, family_name, display_name, phone, locale, created_at, updated_at) ",
            );
            q.push_values(batch, |mut row, b| {
                row.push_bind(DbId(b.person.id))
                    .push_bind(b.person.given_name.clone())
                    .push_bind(b.person.family_name.clone())
                    .push_bind(b.person.display_name.clone())
                    .push_bind(b.person.phone.clone())
                    .push_bind(b.person.locale.clone())
                    .push_bind(b.user.created_at)
                    .push_bind(b.user.created_at);
            });
            q.build().execute(&mut *c).await?;
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO users (id, person_id, username, role, is_external, active, password_hash, created_at, updated_at) ",
            );
            q.push_values(batch, |mut row, b| {
                row.push_bind(DbId(b.user.id))
                    .push_bind(DbId(b.user.person_id))
                    .push_bind(b.user.username.clone())
                    .push_bind(b.user.role.as_str())
                    .push_bind(b.user.is_external)
                    .push_bind(true)
                    .push_bind(b.user.password_hash.clone())
                    .push_bind(b.user.created_at)
                    .push_bind(b.user.created_at);
            });
            q.build().execute(&mut *c).await?;
            if !passports.is_empty() {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO passports (id, user_id, kind, value, is_primary, created_at) ",
                );
                q.push_values(&passports, |mut row, (user, kind, value, at)| {
                    row.push_bind(DbId(Uuid::now_v7()))
                        .push_bind(DbId(*user))
                        .push_bind(*kind)
                        .push_bind(value.to_string())
                        .push_bind(true)
                        .push_bind(*at);
                });
                q.build().execute(&mut *c).await?;
            }
            if !identities.is_empty() {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO external_identities (id, user_id, provider, subject, created_at) ",
                );
                q.push_values(&identities, |mut row, (user, provider, subject, at)| {
                    row.push_bind(DbId(Uuid::now_v7()))
                        .push_bind(DbId(*user))
                        .push_bind(provider.to_string())
                        .push_bind(subject.to_string())
                        .push_bind(*at);
                });
                q.build().execute(&mut *c).await?;
            }
            if !memberships.is_empty() {
                let mut q =
                    sqlx::QueryBuilder::new("INSERT INTO memberships (user_id, workspace_id, role_id, created_at) ");
                q.push_values(&memberships, |mut row, (user, ws, role, at)| {
                    row.push_bind(DbId(*user))
                        .push_bind(DbId(*ws))
                        .push_bind(DbId(*role))
                        .push_bind(*at);
                });
                q.push(" ON CONFLICT (user_id, workspace_id, role_id) DO NOTHING");
                q.build().execute(&mut *c).await?;
            }
        });
        Ok(())
    }

    /// Which of these lower-cased usernames exist: lower(username) → user id.
    pub(crate) async fn existing_usernames(&mut self, lowered: &[String]) -> Result<HashMap<String, Uuid>> {
        self.lookup_ids(&[Lookup {
            table: "users",
            key: "lower(t.username)",
            id: "t.id",
            kind: None,
            keys: lowered,
        }])
        .await
    }

    /// Which of these email and phone passports exist: value → owner id.
    pub(crate) async fn existing_passports(
        &mut self,
        emails: &[String],
        phones: &[String],
    ) -> Result<HashMap<String, Uuid>> {
        let passports = |kind, keys| Lookup {
            table: "passports",
            key: "t.value",
            id: "t.user_id",
            kind: Some(kind),
            keys,
        };
        self.lookup_ids(&[passports("email", emails), passports("phone", phones)])
            .await
    }

    /// Runs the `lookups` that have keys and merges what they find: key → id.
    ///
    /// PostgreSQL: one statement, a `UNION ALL` of one lateral probe per key per lookup (the
    /// keys are one array parameter, `unnest`ed), not prepared. The lateral subquery makes the
    /// plan one index probe per key whatever the table's statistics say. Every set-based
    /// form let the planner choose from statistics, and during an import those are stale by
    /// construction (the tables grow faster than autovacuum analyzes them): a cached generic
    /// plan kept scanning `passports` (up to 8 s a batch); `kind IN (…) AND value = ANY($1)`
    /// became a bitmap scan of every passport (60 ms a batch at 500k rows, growing); a join
    /// against the keys became a hash join over every email passport (80–100 ms), where the
    /// probes take about 1 ms. Inside an atomic import the statistics are worse than stale:
    /// `ANALYZE` cannot see the transaction's own rows and says "empty", so the statement runs
    /// with sequential scans off and names the passport kind through the keys, never as a
    /// constant that would make the partial `passports_email_c_idx` look usable.
    /// SQLite: one `key IN (?, …)` statement per lookup per 1,000 keys (in-process, so no round
    /// trip, and under the bind-variable limit however large the batch).
    async fn lookup_ids(&mut self, lookups: &[Lookup<'_>]) -> Result<HashMap<String, Uuid>> {
        let lookups: Vec<&Lookup> = lookups.iter().filter(|l| !l.keys.is_empty()).collect();
        if lookups.is_empty() {
            return Ok(HashMap::new());
        }
        self.flush_pending().await?;
        let rows: Vec<(String, DbId)> = match &mut self.inner {
            TxInner::Postgres(t) => {
                let mut n = 0;
                let sql = lookups
                    .iter()
                    .map(|l| {
                        // The kind comes in as a column of the keys, not a constant: a
                        // constant `kind = 'email'` implies the predicate of the partial
                        // `passports_email_c_idx`, and a planner that believes the table is
                        // tiny scans that whole index with a filter for every key.
                        let (keys, kind) = match l.kind {
                            Some(_) => {
                                n += 2;
                                (
                                    format!("unnest(${}::text[], ${}::text[]) AS k(v, kind)", n - 1, n),
                                    "t.kind = k.kind AND ",
                                )
                            }
                            None => {
                                n += 1;
                                (format!("unnest(${n}::text[]) AS k(v)"), "")
                            }
                        };
                        format!(
                            "SELECT k.v, f.id FROM {keys} CROSS JOIN LATERAL \
                             (SELECT {id} AS id FROM {table} t WHERE {kind}{key} = k.v LIMIT 1) AS f",
                            key = l.key,
                            id = l.id,
                            table = l.table,
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" UNION ALL ");
                let kinds: Vec<Vec<&str>> = lookups
                    .iter()
                    .map(|l| l.kind.map(|k| vec![k; l.keys.len()]).unwrap_or_default())
                    .collect();
                let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false);
                for (l, kinds) in lookups.iter().zip(&kinds) {
                    q = q.bind(l.keys);
                    if l.kind.is_some() {
                        q = q.bind(kinds);
                    }
                }
                // Inside a long transaction (an atomic import) the statistics describe the
                // committed table, not the rows this transaction has added: after an ANALYZE
                // (or autovacuum's) they say "empty", and a sequential scan per key looks free
                // while it reads every row written so far (quadratic). With sequential scans
                // off for this one statement, the probe is an index probe whatever they say.
                sqlx::Executor::execute(&mut **t, sqlx::raw_sql("SET LOCAL enable_seqscan = off")).await?;
                // A failed lookup has aborted the transaction: its error is the one to report.
                let rows = q.fetch_all(&mut **t).await?;
                sqlx::Executor::execute(&mut **t, sqlx::raw_sql("SET LOCAL enable_seqscan TO DEFAULT")).await?;
                rows
            }
            TxInner::Sqlite(t) => {
                let mut rows = Vec::new();
                for l in &lookups {
                    for chunk in l.keys.chunks(STATEMENT_ROWS) {
                        let mut q = sqlx::QueryBuilder::new(format!(
                            "SELECT {key}, {id} FROM {table} t WHERE {kind}{key} IN (",
                            key = l.key,
                            id = l.id,
                            table = l.table,
                            kind = l.kind.map(|k| format!("t.kind = '{k}' AND ")).unwrap_or_default(),
                        ));
                        let mut list = q.separated(", ");
                        for key in chunk {
                            list.push_bind(key.clone());
                        }
                        q.push(")");
                        rows.extend(q.build_query_as::<(String, DbId)>().fetch_all(&mut **t).await?);
                    }
                }
                rows
            }
        };
        Ok(rows.into_iter().map(|(k, id)| (k, id.0)).collect())
    }

    /// Appends many audit events (same actor and event name), 1,000 rows per statement.
    pub(crate) async fn insert_audit_batch(
        &mut self,
        at: Timestamp,
        actor: &str,
        event: &str,
        rows: &[(Uuid, serde_json::Value)],
    ) -> Result<()> {
        self.flush_pending().await?;
        if let TxInner::Postgres(t) = &mut self.inner {
            let mut copy = CopyText::default();
            for (user, fields) in rows {
                copy.time(at)
                    .text(actor)
                    .text(event)
                    .uuid(*user)
                    .text(&fields.to_string())
                    .end();
            }
            return copy
                .run(
                    t,
                    "COPY audit_events (occurred_at, actor, event, subject_user_id, fields) FROM STDIN",
                )
                .await;
        }
        for chunk in rows.chunks(STATEMENT_ROWS) {
            self.insert_audit_chunk(at, actor, event, chunk).await?;
        }
        Ok(())
    }

    async fn insert_audit_chunk(
        &mut self,
        at: Timestamp,
        actor: &str,
        event: &str,
        rows: &[(Uuid, serde_json::Value)],
    ) -> Result<()> {
        on_conn!(self, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO audit_events (occurred_at, actor, event, subject_user_id, fields) ",
            );
            q.push_values(rows, |mut row, (user, fields)| {
                row.push_bind(at)
                    .push_bind(actor.to_owned())
                    .push_bind(event.to_owned())
                    .push_bind(DbId(*user))
                    .push_bind(fields.to_string());
            });
            q.build().execute(&mut *c).await?;
        });
        Ok(())
    }

    /// Creates the missing home folders of many users, 1,000 per statement; returns how many.
    pub(crate) async fn ensure_home_folders_batch(&mut self, users: &[(Uuid, String)], at: Timestamp) -> Result<u64> {
        if users.is_empty() {
            return Ok(0);
        }
        self.flush_pending().await?;
        if let TxInner::Postgres(t) = &mut self.inner {
            // A folder may exist already (the hook may fire again, a login may have raced
            // it), so no COPY straight into the table: one set-based insert of three arrays
            // that skips the users who have one.
            let ids: Vec<Uuid> = users.iter().map(|_| Uuid::now_v7()).collect();
            let owners: Vec<Uuid> = users.iter().map(|(u, _)| *u).collect();
            let names: Vec<&str> = users.iter().map(|(_, n)| n.as_str()).collect();
            let n = sqlx::query(
                "INSERT INTO folders (id, user_id, name, is_home, created_at) \
                 SELECT f.id, f.user_id, f.name, TRUE, $4 FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS f(id, user_id, name) \
                 ON CONFLICT (user_id) WHERE is_home DO NOTHING",
            )
            .bind(&ids)
            .bind(&owners)
            .bind(&names)
            .bind(at)
            .execute(&mut **t)
            .await?
            .rows_affected();
            return Ok(n);
        }
        let mut created = 0;
        for chunk in users.chunks(STATEMENT_ROWS) {
            created += self.ensure_home_folders_chunk(chunk, at).await?;
        }
        Ok(created)
    }

    async fn ensure_home_folders_chunk(&mut self, users: &[(Uuid, String)], at: Timestamp) -> Result<u64> {
        let n = on_conn!(self, |c| {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO folders (id, user_id, name, is_home, created_at) ");
            q.push_values(users, |mut row, (user, name)| {
                row.push_bind(DbId(Uuid::now_v7()))
                    .push_bind(DbId(*user))
                    .push_bind(name.clone())
                    .push_bind(true)
                    .push_bind(at);
            });
            q.push(" ON CONFLICT (user_id) WHERE is_home DO NOTHING");
            q.build().execute(&mut *c).await?.rows_affected()
        });
        Ok(n)
    }
}

impl Tx {
    /// Sets the given name and/or family name of a person (`None` leaves a name as it is)
    /// and recomputes the display name from the result.
    pub(crate) async fn update_person_names(
        &mut self,
        person_id: Uuid,
        given_name: Option<&str>,
        family_name: Option<&str>,
        at: Timestamp,
    ) -> Result<()> {
        if given_name.is_none() && family_name.is_none() {
            return Ok(());
        }
        on_conn!(self, |c| sqlx::query(
            "UPDATE persons SET given_name = COALESCE($2, given_name), family_name = COALESCE($3, family_name), \
             display_name = CASE \
               WHEN COALESCE($2, given_name) IS NOT NULL AND COALESCE($3, family_name) IS NOT NULL \
                 THEN COALESCE($2, given_name) || ' ' || COALESCE($3, family_name) \
               ELSE COALESCE($2, given_name, $3, family_name) END, \
             updated_at = $4 WHERE id = $1",
        )
        .bind(DbId(person_id))
        .bind(given_name)
        .bind(family_name)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }
}

/// Writes a batch of new users on PostgreSQL: one `COPY … FROM STDIN` per table, straight
/// into the table. The caller has checked the usernames and passports against the database
/// already; a row that still breaks a constraint (another writer took the username
/// meanwhile) fails the whole `COPY` with that constraint's error, like a multi-row `INSERT`
/// would, and the import retries the batch row by row to report it on its line.
async fn copy_users_pg(c: &mut sqlx::PgConnection, batch: &[BatchUser]) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut persons = CopyText::default();
    let mut users = CopyText::default();
    let mut passports = CopyText::default();
    let mut identities = CopyText::default();
    let mut memberships = CopyText::default();
    for b in batch {
        let (p, u, at) = (&b.person, &b.user, b.user.created_at);
        persons
            .uuid(p.id)
            .opt(p.given_name.as_deref())
            .opt(p.family_name.as_deref())
            .opt(p.display_name.as_deref())
            .opt(p.phone.as_deref())
            .opt(p.locale.as_deref())
            .time(at)
            .time(at)
            .end();
        users
            .uuid(u.id)
            .uuid(u.person_id)
            .text(&u.username)
            .text(u.role.as_str())
            .bool(u.is_external)
            .bool(true)
            .opt(u.password_hash.as_deref())
            .time(at)
            .time(at)
            .end();
        for (kind, value) in [("email", &b.email), ("phone", &b.phone)] {
            if let Some(value) = value {
                passports
                    .uuid(Uuid::now_v7())
                    .uuid(u.id)
                    .text(kind)
                    .text(value)
                    .bool(true)
                    .time(at)
                    .end();
            }
        }
        if let Some((provider, subject)) = &b.identity {
            identities
                .uuid(Uuid::now_v7())
                .uuid(u.id)
                .text(provider)
                .text(subject)
                .time(at)
                .end();
        }
        // The same membership named twice in a row is one membership (the multi-row insert
        // said `ON CONFLICT DO NOTHING`; a new user has no other).
        for (i, (w, r)) in b.memberships.iter().enumerate() {
            if b.memberships[..i].contains(&(*w, *r)) {
                continue;
            }
            memberships.uuid(u.id).uuid(*w).uuid(*r).time(at).end();
        }
    }
    persons
        .run(
            c,
            "COPY persons (id, given_name, family_name, display_name, phone, locale, created_at, updated_at) FROM STDIN",
        )
        .await?;
    users
        .run(
            c,
            "COPY users (id, person_id, username, role, is_external, active, password_hash, created_at, updated_at) FROM STDIN",
        )
        .await?;
    passports
        .run(
            c,
            "COPY passports (id, user_id, kind, value, is_primary, created_at) FROM STDIN",
        )
        .await?;
    identities
        .run(
            c,
            "COPY external_identities (id, user_id, provider, subject, created_at) FROM STDIN",
        )
        .await?;
    memberships
        .run(
            c,
            "COPY memberships (user_id, workspace_id, role_id, created_at) FROM STDIN",
        )
        .await
}

/// The rows of one `COPY … FROM STDIN` in PostgreSQL's text format: fields separated by a
/// tab, rows ended by a newline, `\N` for NULL, and a backslash, tab, newline or carriage
/// return inside a value escaped with a backslash, so any text (a name with a tab, a
/// backslash in an email's quoted local part) arrives as it was.
#[derive(Default)]
struct CopyText {
    buf: String,
    rows: u64,
    /// Whether the current row has a field yet (the next one is preceded by a tab).
    open: bool,
    /// The last timestamp written and its text: a batch shares one creation time.
    last_time: Option<(Timestamp, String)>,
}

impl CopyText {
    fn sep(&mut self) {
        if self.open {
            self.buf.push('\t');
        }
        self.open = true;
    }

    fn text(&mut self, value: &str) -> &mut Self {
        self.sep();
        if !value.contains(['\\', '\t', '\n', '\r']) {
            self.buf.push_str(value);
            return self;
        }
        for ch in value.chars() {
            match ch {
                '\\' => self.buf.push_str("\\\\"),
                '\t' => self.buf.push_str("\\t"),
                '\n' => self.buf.push_str("\\n"),
                '\r' => self.buf.push_str("\\r"),
                other => self.buf.push(other),
            }
        }
        self
    }

    fn opt(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.text(v),
            None => {
                self.sep();
                self.buf.push_str("\\N");
                self
            }
        }
    }

    fn uuid(&mut self, id: Uuid) -> &mut Self {
        self.sep();
        let _ = write!(self.buf, "{}", id.hyphenated());
        self
    }

    fn bool(&mut self, value: bool) -> &mut Self {
        self.sep();
        self.buf.push(if value { 't' } else { 'f' });
        self
    }

    /// A timestamp in RFC 3339 with microseconds (what the store keeps; see `domain::now`).
    fn time(&mut self, at: Timestamp) -> &mut Self {
        self.sep();
        match &self.last_time {
            Some((t, text)) if *t == at => self.buf.push_str(text),
            _ => {
                let text = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                self.buf.push_str(&text);
                self.last_time = Some((at, text));
            }
        }
        self
    }

    fn end(&mut self) {
        self.buf.push('\n');
        self.rows += 1;
        self.open = false;
    }

    /// Runs `statement` (a `COPY table (columns) FROM STDIN`) with these rows, unless there
    /// are none. Errors: the table's constraint violations and the connection's errors, as
    /// [`crate::Error`] (a failed `COPY` writes no row).
    async fn run(&self, c: &mut sqlx::PgConnection, statement: &str) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut copy = c.copy_in_raw(statement).await?;
        if let Err(e) = copy.send(self.buf.as_bytes()).await {
            // Ends the COPY on the server so the connection stays usable; its error is
            // the one that matters.
            let _ = copy.abort(e.to_string()).await;
            return Err(e.into());
        }
        let written = copy.finish().await?;
        debug_assert_eq!(written, self.rows);
        Ok(())
    }
}
