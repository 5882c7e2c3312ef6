//! Batch statements for bulk import: one multi-row statement per table per batch.

use std::collections::HashMap;

use uuid::Uuid;

use super::{DbId, Tx};
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

impl Tx {
    /// Inserts a batch of users with their persons, passports, identities and memberships:
    /// five multi-row statements, whatever the batch size.
    pub(crate) async fn insert_users_batch(&mut self, batch: &[BatchUser]) -> Result<()> {
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
        self.lookup_ids(
            "SELECT lower(username), id FROM users WHERE lower(username) IN (",
            lowered,
        )
        .await
    }

    /// Which of these passport values (emails and phones) exist: value → owner id.
    pub(crate) async fn existing_passports(&mut self, values: &[String]) -> Result<HashMap<String, Uuid>> {
        // The unique index is on (kind, value): without the kind the lookup is a scan of
        // every passport, once per batch, and an import slows down as the table grows.
        self.lookup_ids(
            "SELECT value, user_id FROM passports WHERE kind IN ('email', 'phone') AND value IN (",
            values,
        )
        .await
    }

    /// Runs `select_in` (a `SELECT key, id … IN (` prefix) over `keys` in one statement.
    async fn lookup_ids(&mut self, select_in: &str, keys: &[String]) -> Result<HashMap<String, Uuid>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(String, DbId)> = on_conn!(self, |c| {
            let mut q = sqlx::QueryBuilder::new(select_in);
            let mut list = q.separated(", ");
            for key in keys {
                list.push_bind(key.clone());
            }
            q.push(")");
            q.build_query_as().fetch_all(&mut *c).await?
        });
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
