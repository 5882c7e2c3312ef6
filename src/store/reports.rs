//! Read-only reports over whole tables: the audit trail as operators page through it, and
//! users as `user export` writes them (the columns `user import` reads). Both read keyset
//! pages along an index, so a deep page costs what the first does and an export of any size
//! holds one page in memory.

use serde::Serialize;
use uuid::Uuid;

use super::{Backend, DbId, DbRow, Tx, from_row, get_opt_id};
use crate::domain::Timestamp;
use crate::error::Result;

/// One row of `audit_events`, with the subject's username while that user still exists (an
/// erased or merged user keeps only its pseudonymous id).
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// The row's sequence number: ascending in the order events were recorded, the paging
    /// cursor of `audit list` and the key of `audit show`.
    pub id: i64,
    /// When the event happened (UTC).
    pub occurred_at: Timestamp,
    /// Who acted (`--actor`, the OS user, or `system` for the sweeper).
    pub actor: String,
    /// The event name, e.g. `user.created`, `role.assigned` (the `audit list --action` key).
    pub action: String,
    /// The user the event is about, when there is one (`subject_user_id` in the table).
    pub user_id: Option<Uuid>,
    /// That user's username while it exists; `None` once the user is erased or merged away.
    pub username: Option<String>,
    /// The event's non-personal fields (ids, counts, modes), as recorded.
    pub fields: serde_json::Value,
}

from_row!(AuditEvent, |r| AuditEvent {
    id: r.try_get("id")?,
    occurred_at: r.try_get("occurred_at")?,
    actor: r.try_get("actor")?,
    action: r.try_get("event")?,
    user_id: get_opt_id!(r, "subject_user_id"),
    username: r.try_get("username")?,
    fields: serde_json::from_str(&r.try_get::<String, _>("fields")?).unwrap_or(serde_json::Value::Null),
});

/// What `audit list` selects; every field narrows the result (`None`: no filter).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Events about this user id (the subject).
    pub user_id: Option<Uuid>,
    /// Events by this actor (exact).
    pub actor: Option<String>,
    /// This event name, or every name starting with the text before a trailing `*`
    /// (`user.*`).
    pub action: Option<String>,
    /// Events at or after this time.
    pub since: Option<Timestamp>,
    /// Events before this time.
    pub until: Option<Timestamp>,
    /// Events whose fields name this workspace id (`workspace_id`).
    pub workspace_id: Option<Uuid>,
}

/// One user as `user export` writes it: the fields of an import row.
#[derive(Debug, Clone)]
pub struct ExportedUser {
    /// The username.
    pub username: String,
    /// The primary email passport.
    pub email: Option<String>,
    /// The primary phone passport (E.164).
    pub phone: Option<String>,
    /// The person's given name.
    pub given_name: Option<String>,
    /// The person's family name.
    pub family_name: Option<String>,
    /// Whether the user signs in through an identity provider only.
    pub is_external: bool,
    /// The user's first external identity (by provider, then subject): an import row
    /// carries one.
    pub provider: Option<String>,
    /// The subject at `provider`.
    pub subject: Option<String>,
    /// The instance role (`admin` or `user`).
    pub role: String,
    /// (workspace name, role name) pairs, by workspace then role.
    pub memberships: Vec<(String, String)>,
    /// The stored PHC string (argon2) or bcrypt hash, when there is one.
    pub password_hash: Option<String>,
}

/// Separators of the aggregated memberships column: control characters, which names refuse,
/// so no workspace or role name can contain them.
const PAIR: char = '\u{1e}';
const FIELD: char = '\u{1f}';

from_row!(ExportedUser, |r| ExportedUser {
    username: r.try_get("username")?,
    email: r.try_get("email")?,
    phone: r.try_get("phone")?,
    given_name: r.try_get("given_name")?,
    family_name: r.try_get("family_name")?,
    is_external: r.try_get("is_external")?,
    provider: r.try_get("provider")?,
    subject: r.try_get("subject")?,
    role: r.try_get("role")?,
    memberships: {
        let text: Option<String> = r.try_get("memberships")?;
        let mut pairs: Vec<(String, String)> = text
            .unwrap_or_default()
            .split(PAIR)
            .filter_map(|p| p.split_once(FIELD))
            .map(|(w, r)| (w.to_owned(), r.to_owned()))
            .collect();
        pairs.sort_by_key(|(w, r)| (w.to_lowercase(), r.to_lowercase()));
        pairs
    },
    password_hash: r.try_get("password_hash")?,
});

impl Tx {
    /// One page of the audit trail, newest first (by row id, the primary key); the cursor
    /// is the previous page's last id.
    pub(crate) async fn audit_page(
        &mut self,
        filter: &AuditFilter,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        // Bind order below must follow the order the placeholders are handed out here.
        if filter.user_id.is_some() {
            conditions.push(format!("a.subject_user_id = {}", next()));
        }
        if filter.actor.is_some() {
            conditions.push(format!("a.actor = {}", next()));
        }
        let action = filter.action.as_deref().map(|a| match a.strip_suffix('*') {
            Some(prefix) => (prefix.to_owned(), Some(format!("{prefix}\u{10FFFF}"))),
            None => (a.to_owned(), None),
        });
        match &action {
            Some((_, Some(_))) => conditions.push(format!("a.event >= {} AND a.event < {}", next(), next())),
            Some((_, None)) => conditions.push(format!("a.event = {}", next())),
            None => {}
        }
        if filter.since.is_some() {
            conditions.push(format!("a.occurred_at >= {}", next()));
        }
        if filter.until.is_some() {
            conditions.push(format!("a.occurred_at < {}", next()));
        }
        // The fields are compact JSON written by serde_json: `"workspace_id":"<uuid>"`.
        let workspace = filter
            .workspace_id
            .map(|w| format!("%\"workspace_id\":\"{}\"%", w.hyphenated()));
        if workspace.is_some() {
            conditions.push(format!("a.fields LIKE {}", next()));
        }
        if after.is_some() {
            conditions.push(format!("a.id < {}", next()));
        }
        let limit_at = next();
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT a.id, a.occurred_at, a.actor, a.event, a.subject_user_id, u.username, a.fields \
             FROM audit_events a LEFT JOIN users u ON u.id = a.subject_user_id{filter_sql} \
             ORDER BY a.id DESC LIMIT {limit_at}"
        );
        let rows = on_conn!(self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            if let Some(id) = filter.user_id {
                q = q.bind(DbId(id));
            }
            if let Some(actor) = &filter.actor {
                q = q.bind(actor.clone());
            }
            if let Some((lo, hi)) = &action {
                q = q.bind(lo.clone());
                if let Some(hi) = hi {
                    q = q.bind(hi.clone());
                }
            }
            if let Some(since) = filter.since {
                q = q.bind(since);
            }
            if let Some(until) = filter.until {
                q = q.bind(until);
            }
            if let Some(pattern) = &workspace {
                q = q.bind(pattern.clone());
            }
            if let Some(after) = after {
                q = q.bind(after);
            }
            q.bind(limit)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| r.decode::<AuditEvent>())
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// One audit row by id, `None` when there is none.
    pub(crate) async fn audit_event(&mut self, id: i64) -> Result<Option<AuditEvent>> {
        let row = on_conn!(self, |c| sqlx::query(
            "SELECT a.id, a.occurred_at, a.actor, a.event, a.subject_user_id, u.username, a.fields \
             FROM audit_events a LEFT JOIN users u ON u.id = a.subject_user_id WHERE a.id = $1"
        )
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
        .map(|r| r.decode::<AuditEvent>())
        .transpose()?);
        Ok(row)
    }

    /// One page of live users (the trash excluded) for an export, by lower-cased username
    /// (the unique index `user list` pages along); the cursor is the previous page's last
    /// username.
    pub(crate) async fn export_page(&mut self, after: Option<&str>, limit: i64) -> Result<Vec<ExportedUser>> {
        let (key, memberships) = match self.backend() {
            Backend::Postgres => (
                "lower(u.username) COLLATE \"C\"",
                "(SELECT string_agg(w.name || chr(31) || r.name, chr(30)) FROM memberships m \
                   JOIN workspaces w ON w.id = m.workspace_id JOIN roles r ON r.id = m.role_id WHERE m.user_id = u.id)",
            ),
            Backend::Sqlite => (
                "lower(u.username)",
                "(SELECT group_concat(w.name || char(31) || r.name, char(30)) FROM memberships m \
                   JOIN workspaces w ON w.id = m.workspace_id JOIN roles r ON r.id = m.role_id WHERE m.user_id = u.id)",
            ),
        };
        let keyset = if after.is_some() {
            format!(" AND {key} > lower($1)")
        } else {
            String::new()
        };
        let limit_at = if after.is_some() { "$2" } else { "$1" };
        let sql = format!(
            "SELECT u.username, u.role, u.is_external, u.password_hash, p.given_name, p.family_name, \
               (SELECT e.value FROM passports e WHERE e.user_id = u.id AND e.kind = 'email' AND e.is_primary) AS email, \
               (SELECT t.value FROM passports t WHERE t.user_id = u.id AND t.kind = 'phone' AND t.is_primary) AS phone, \
               (SELECT x.provider FROM external_identities x WHERE x.user_id = u.id ORDER BY x.provider, x.subject LIMIT 1) AS provider, \
               (SELECT x.subject FROM external_identities x WHERE x.user_id = u.id ORDER BY x.provider, x.subject LIMIT 1) AS subject, \
               {memberships} AS memberships \
             FROM users u JOIN persons p ON p.id = u.person_id \
             WHERE u.deleted_at IS NULL{keyset} ORDER BY {key} LIMIT {limit_at}"
        );
        let rows = on_conn!(self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            if let Some(after) = after {
                q = q.bind(after.to_owned());
            }
            q.bind(limit)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| r.decode::<ExportedUser>())
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// The names of the roles each of `users` holds in one workspace, as (user id, role
    /// name) pairs by role name: what `user list --workspace` shows in its role column.
    pub(crate) async fn workspace_roles(&mut self, workspace_id: Uuid, users: &[Uuid]) -> Result<Vec<(Uuid, String)>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..users.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT m.user_id, r.name FROM memberships m JOIN roles r ON r.id = m.role_id \
             WHERE m.workspace_id = $1 AND m.user_id IN ({}) ORDER BY lower(r.name)",
            placeholders.join(", ")
        );
        let rows = on_conn!(self, |c| {
            let mut q = sqlx::query_as::<_, (DbId, String)>(sqlx::AssertSqlSafe(sql)).bind(DbId(workspace_id));
            for id in users {
                q = q.bind(DbId(*id));
            }
            q.fetch_all(&mut *c).await?
        });
        Ok(rows.into_iter().map(|(id, name)| (id.0, name)).collect())
    }
}
