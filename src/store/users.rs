//! Users, the persons behind them, and their passports.

use uuid::Uuid;

use super::{Backend, DbId, DbRow, Tx, from_row, get_id, parse_enum};
use crate::domain::{InstanceRole, Passport, PassportKind, Person, Timestamp, User, UserFilter, UserRef, UserView};
use crate::error::{Error, Result};

/// The PostgreSQL advisory-lock key of [`Tx::lock_instance_admins`] (arbitrary, fixed:
/// "acctadm1" in ASCII).
pub(super) const INSTANCE_ADMINS_LOCK: i64 = 0x6163_6374_6164_6d31;

/// The columns of a new `users` row (the person row is inserted first).
#[derive(Debug, Clone)]
pub struct NewUserRecord {
    pub id: Uuid,
    pub person_id: Uuid,
    pub username: String,
    pub role: InstanceRole,
    pub is_external: bool,
    /// A PHC string, already hashed.
    pub password_hash: Option<String>,
    pub created_at: Timestamp,
}

pub(super) const USER_COLUMNS: &str = "u.id, u.person_id, u.username, u.role, u.is_external, u.active, \
    (u.password_hash IS NOT NULL) AS has_password, u.storage_quota_bytes, u.storage_used_bytes, \
    u.created_at, u.updated_at, u.last_login_at, u.deleted_at, u.purge_after";

from_row!(User, |r| User {
    id: get_id!(r, "id"),
    person_id: get_id!(r, "person_id"),
    username: r.try_get("username")?,
    role: parse_enum(&r.try_get::<String, _>("role")?, "role")?,
    is_external: r.try_get("is_external")?,
    active: r.try_get("active")?,
    has_password: r.try_get("has_password")?,
    storage_quota_bytes: r.try_get("storage_quota_bytes")?,
    storage_used_bytes: r.try_get("storage_used_bytes")?,
    created_at: r.try_get("created_at")?,
    updated_at: r.try_get("updated_at")?,
    last_login_at: r.try_get("last_login_at")?,
    deleted_at: r.try_get("deleted_at")?,
    purge_after: r.try_get("purge_after")?,
});

const VIEW_SELECT: &str = "SELECT u.id, u.username, u.role, u.is_external, u.active, \
    (u.password_hash IS NOT NULL) AS has_password, u.storage_used_bytes, u.created_at, \
    u.last_login_at, u.deleted_at, u.purge_after, p.given_name, p.family_name, p.display_name, \
    (SELECT e.value FROM passports e WHERE e.user_id = u.id AND e.kind = 'email' AND e.is_primary) AS email, \
    (SELECT t.value FROM passports t WHERE t.user_id = u.id AND t.kind = 'phone' AND t.is_primary) AS phone \
    FROM users u JOIN persons p ON p.id = u.person_id";

from_row!(UserView, |r| UserView {
    id: get_id!(r, "id"),
    username: r.try_get("username")?,
    email: r.try_get("email")?,
    phone: r.try_get("phone")?,
    role: parse_enum(&r.try_get::<String, _>("role")?, "role")?,
    is_external: r.try_get("is_external")?,
    active: r.try_get("active")?,
    has_password: r.try_get("has_password")?,
    given_name: r.try_get("given_name")?,
    family_name: r.try_get("family_name")?,
    display_name: r.try_get("display_name")?,
    storage_used_bytes: r.try_get("storage_used_bytes")?,
    created_at: r.try_get("created_at")?,
    last_login_at: r.try_get("last_login_at")?,
    deleted_at: r.try_get("deleted_at")?,
    purge_after: r.try_get("purge_after")?,
});

from_row!(Person, |r| Person {
    id: get_id!(r, "id"),
    given_name: r.try_get("given_name")?,
    family_name: r.try_get("family_name")?,
    display_name: r.try_get("display_name")?,
    phone: r.try_get("phone")?,
    locale: r.try_get("locale")?,
});

from_row!(Passport, |r| Passport {
    id: get_id!(r, "id"),
    user_id: get_id!(r, "user_id"),
    kind: parse_enum(&r.try_get::<String, _>("kind")?, "kind")?,
    value: r.try_get("value")?,
    verified_at: r.try_get("verified_at")?,
    is_primary: r.try_get("is_primary")?,
    created_at: r.try_get("created_at")?,
});

impl Tx {
    /// The tombstone of a user id that no longer exists: when it ended, its mode as stored
    /// (`gdpr_purge`, `merged`), and for a merge the surviving account's id and username
    /// (while it exists). `None` when the id never had one.
    pub(crate) async fn tombstone(
        &mut self,
        id: Uuid,
    ) -> Result<Option<(Timestamp, String, Option<Uuid>, Option<String>)>> {
        let Some(row) = self
            .fetch_optional(
                "SELECT t.deleted_at, t.mode, t.merged_into, u.username AS merged_into_username \
                 FROM user_tombstones t LEFT JOIN users u ON u.id = t.merged_into WHERE t.user_id = $1",
                &[id.into()],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((
            row.get("deleted_at")?,
            row.get("mode")?,
            row.get("merged_into")?,
            row.get("merged_into_username")?,
        )))
    }

    /// Inserts a person (the human behind a user, or an invited person-to-be).
    pub(crate) async fn insert_person(&mut self, person: &Person, at: Timestamp) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "INSERT INTO persons (id, given_name, family_name, display_name, phone, locale, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
        )
        .bind(DbId(person.id))
        .bind(&person.given_name)
        .bind(&person.family_name)
        .bind(&person.display_name)
        .bind(&person.phone)
        .bind(&person.locale)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The person row, if any.
    pub(crate) async fn person(&mut self, id: Uuid) -> Result<Option<Person>> {
        let row = on_conn!(self, |c| sqlx::query("SELECT * FROM persons WHERE id = $1")
            .bind(DbId(id))
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.decode::<Person>())
            .transpose()?);
        Ok(row)
    }

    /// Inserts a user row and returns it as read back.
    /// Errors: [`Error::Conflict`] when the username is taken (case-insensitively),
    /// [`Error::Refused`] when a database invariant forbids the row (external admin).
    pub(crate) async fn insert_user(&mut self, new: &NewUserRecord) -> Result<User> {
        on_conn!(self, |c| {
            sqlx::query(
            "INSERT INTO users (id, person_id, username, role, is_external, active, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
        )
        .bind(DbId(new.id))
        .bind(DbId(new.person_id))
        .bind(&new.username)
        .bind(new.role.as_str())
        .bind(new.is_external)
        .bind(true)
        .bind(&new.password_hash)
        .bind(new.created_at)
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        self.user_by_id(new.id)
            .await?
            .ok_or_else(|| Error::Internal("inserted user vanished".into()))
    }

    /// Adds a passport to a user. Errors: [`Error::Conflict`] when the value already belongs
    /// to any user.
    pub(crate) async fn insert_passport(
        &mut self,
        user_id: Uuid,
        kind: PassportKind,
        value: &str,
        is_primary: bool,
        at: Timestamp,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        on_conn!(self, |c| sqlx::query(
            "INSERT INTO passports (id, user_id, kind, value, is_primary, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(DbId(id))
        .bind(DbId(user_id))
        .bind(kind.as_str())
        .bind(value)
        .bind(is_primary)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(id)
    }

    /// The passports of a user, primary first.
    pub(crate) async fn passports_of(&mut self, user_id: Uuid) -> Result<Vec<Passport>> {
        let rows = on_conn!(self, |c| sqlx::query(
            "SELECT * FROM passports WHERE user_id = $1 ORDER BY is_primary DESC, kind, value"
        )
        .bind(DbId(user_id))
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| r.decode::<Passport>())
        .collect::<Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// The user with this id, trashed or not.
    pub(crate) async fn user_by_id(&mut self, id: Uuid) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1");
        let user = on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(DbId(id))
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.decode::<User>())
            .transpose()?);
        Ok(user)
    }

    /// Resolves a `<user>` argument, trashed users included. On PostgreSQL the row is locked
    /// (`FOR UPDATE`) when `lock` is set, so concurrent changes to the same user queue; on
    /// SQLite the write transaction already excludes other writers.
    pub(crate) async fn find_user(&mut self, user: &UserRef, lock: bool) -> Result<Option<User>> {
        let (condition, key): (&str, String) = match user {
            UserRef::Id(id) => ("u.id = $1", id.to_string()),
            UserRef::Username(name) => ("lower(u.username) = lower($1)", name.clone()),
            UserRef::Email(email) => (
                "u.id = (SELECT user_id FROM passports WHERE kind = 'email' AND value = $1)",
                email.as_str().to_owned(),
            ),
            UserRef::Phone(phone) => (
                "u.id = (SELECT user_id FROM passports WHERE kind = 'phone' AND value = $1)",
                phone.as_str().to_owned(),
            ),
        };
        let lock_clause = if lock && self.backend() == Backend::Postgres {
            " FOR UPDATE OF u"
        } else {
            ""
        };
        let sql = format!("SELECT {USER_COLUMNS} FROM users u WHERE {condition}{lock_clause}");
        let found = match user {
            UserRef::Id(id) => on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(DbId(*id))
                .fetch_optional(&mut *c)
                .await?
                .map(|r| r.decode::<User>())
                .transpose()?),
            _ => on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&key)
                .fetch_optional(&mut *c)
                .await?
                .map(|r| r.decode::<User>())
                .transpose()?),
        };
        Ok(found)
    }

    /// Like [`Tx::find_user`], but a missing user is [`Error::NotFound`] (exit code 3).
    pub(crate) async fn require_user(&mut self, user: &UserRef, lock: bool) -> Result<User> {
        self.find_user(user, lock)
            .await?
            .ok_or_else(|| Error::not_found("user", user.to_string()))
    }

    /// The list/show shape of one user.
    pub(crate) async fn user_view(&mut self, id: Uuid) -> Result<UserView> {
        let sql = format!("{VIEW_SELECT} WHERE u.id = $1");
        let view = on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(DbId(id))
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.decode::<UserView>())
            .transpose()?);
        view.ok_or_else(|| Error::not_found("user", id.to_string()))
    }

    /// One page of users ordered by lower-cased username (keyset pagination on the unique
    /// index, so every page costs the same however deep).
    pub(crate) async fn list_users(&mut self, filter: &UserFilter) -> Result<Vec<UserView>> {
        // Bytewise order on both backends (the indexes of migration 2), so that prefix search
        // is an index range: [prefix, prefix + U+10FFFF).
        let (key, email) = match self.backend() {
            Backend::Postgres => ("lower(u.username) COLLATE \"C\"", "s.value COLLATE \"C\""),
            Backend::Sqlite => ("lower(u.username)", "s.value"),
        };
        let mut conditions: Vec<String> = vec![if filter.trashed {
            "u.deleted_at IS NOT NULL".into()
        } else {
            "u.deleted_at IS NULL".into()
        }];
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        // Bind order below must follow the order the placeholders are handed out here.
        if filter.external.is_some() {
            conditions.push(format!("u.is_external = {}", next()));
        }
        if filter.role.is_some() {
            conditions.push(format!("u.role = {}", next()));
        }
        if filter.workspace_id.is_some() {
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id AND m.workspace_id = {})",
                next()
            ));
        }
        let search_bounds = filter.search.is_some().then(|| (next(), next()));
        if filter.after.is_some() {
            conditions.push(format!("{key} > lower({})", next()));
        }
        let limit = next();
        let base = conditions.join(" AND ");
        let sql = match &search_bounds {
            None => format!("{VIEW_SELECT} WHERE {base} ORDER BY {key} LIMIT {limit}"),
            // Two index range scans, each ordered and limited, then merged: an OR of the two
            // ranges would make the planner walk the whole username index in order.
            Some((lo, hi)) => {
                let outer_key = key.replace("u.username", "z.username");
                format!(
                    "SELECT * FROM (\
                       SELECT * FROM ({VIEW_SELECT} WHERE {base} AND {key} >= {lo} AND {key} < {hi} ORDER BY {key} LIMIT {limit}) x \
                       UNION \
                       SELECT * FROM ({VIEW_SELECT} WHERE {base} AND u.id IN (SELECT s.user_id FROM passports s \
                         WHERE s.kind = 'email' AND {email} >= {lo} AND {email} < {hi}) ORDER BY {key} LIMIT {limit}) y\
                     ) z ORDER BY {outer_key} LIMIT {limit}"
                )
            }
        };
        let search = filter.search.as_ref().map(|s| {
            let lo = s.trim().to_lowercase();
            let hi = format!("{lo}\u{10FFFF}");
            (lo, hi)
        });
        let rows = on_conn!(self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            if let Some(external) = filter.external {
                q = q.bind(external);
            }
            if let Some(role) = filter.role {
                q = q.bind(role.as_str());
            }
            if let Some(ws) = filter.workspace_id {
                q = q.bind(DbId(ws));
            }
            if let Some((lo, hi)) = &search {
                q = q.bind(lo.clone()).bind(hi.clone());
            }
            if let Some(after) = &filter.after {
                q = q.bind(after.clone());
            }
            q.bind(filter.limit)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| r.decode::<UserView>())
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// The stored PHC string, if the user has a password.
    pub(crate) async fn password_hash_of(&mut self, user_id: Uuid) -> Result<Option<String>> {
        let hash: Option<Option<String>> = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT password_hash FROM users WHERE id = $1"
        )
        .bind(DbId(user_id))
        .fetch_optional(&mut *c)
        .await?);
        Ok(hash.flatten())
    }

    /// Replaces the password hash (a PHC string, or `None` to remove the password).
    pub(crate) async fn set_password_hash(&mut self, user_id: Uuid, phc: Option<&str>, at: Timestamp) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(DbId(user_id))
        .bind(phc)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Sets `active`.
    pub(crate) async fn set_user_active(&mut self, user_id: Uuid, active: bool, at: Timestamp) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "UPDATE users SET active = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(DbId(user_id))
        .bind(active)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Sets the instance role. Errors: [`Error::Refused`] when the database forbids it (an
    /// external admin).
    pub(crate) async fn set_user_role(&mut self, user_id: Uuid, role: InstanceRole, at: Timestamp) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "UPDATE users SET role = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(DbId(user_id))
        .bind(role.as_str())
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Sets `is_external`. Errors: [`Error::Refused`] when the database forbids it.
    pub(crate) async fn set_user_external(&mut self, user_id: Uuid, external: bool, at: Timestamp) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "UPDATE users SET is_external = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(DbId(user_id))
        .bind(external)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Stamps `last_login_at`, after `on_user_login` has fired, so hooks can detect a first
    /// login (the OxiCloud user-lifecycle hook design).
    pub(crate) async fn stamp_last_login(&mut self, user_id: Uuid, at: Timestamp) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "UPDATE users SET last_login_at = $2 WHERE id = $1"
        )
        .bind(DbId(user_id))
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Moves a user to the trash: inactive, `deleted_at` and `purge_after` set. Username and
    /// passports stay, so they remain reserved.
    pub(crate) async fn trash_user(&mut self, user_id: Uuid, at: Timestamp, purge_after: Timestamp) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "UPDATE users SET active = $2, deleted_at = $3, purge_after = $4, updated_at = $3 WHERE id = $1"
        )
        .bind(DbId(user_id))
        .bind(false)
        .bind(at)
        .bind(purge_after)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Takes a user out of the trash and makes it active again.
    pub(crate) async fn restore_user(&mut self, user_id: Uuid, at: Timestamp) -> Result<()> {
        on_conn!(self, |c| sqlx::query(
            "UPDATE users SET active = $2, deleted_at = NULL, purge_after = NULL, updated_at = $3 WHERE id = $1"
        )
        .bind(DbId(user_id))
        .bind(true)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Erases every row of the user's personal data and leaves its tombstone (`mode`, and
    /// `merged_into` for a merge), in set-based statements: outbox rows and invites addressed
    /// to its passports (and the persons-to-be they created, when nothing else refers to
    /// them), then the user row (passports, identities, memberships, sessions, folders and
    /// files follow by `ON DELETE CASCADE`) and the person behind it. Pending erasure
    /// requests for the user are marked completed. Audit rows hold only the pseudonymous id
    /// and stay.
    ///
    /// Returns the root workspace's id when the user was one of its members (read before the
    /// deletes, inside this transaction), so the caller can refuse a removal that empties it
    /// ([`Tx::refuse_if_root_emptied`]).
    ///
    /// PostgreSQL runs all of it as one statement (data-modifying CTEs: one round trip; the
    /// foreign-key checks run at its end, when the user and its person are both gone). SQLite
    /// has no data-modifying CTEs and runs one statement per table, in-process.
    pub(crate) async fn erase_user(
        &mut self,
        user: &User,
        mode: &str,
        merged_into: Option<Uuid>,
        at: Timestamp,
    ) -> Result<Option<Uuid>> {
        let id = DbId(user.id);
        let root = match &mut self.inner {
            super::TxInner::Postgres(t) => {
                let c: &mut sqlx::PgConnection = &mut *t;
                // Every sub-statement sees the snapshot taken at the statement's start, so
                // the persons-to-be check names the invites deleted alongside it.
                // What the hooks left pending (the session revocation and the audit rows
                // recorded before this statement: `user.deleted` and the revocation's own) is
                // written by it, in the same round trip.
                let pending = std::mem::take(&mut self.pending_audit);
                let revocation = self.pending_revocation.take();
                let sql = format!(
                    // Each delete names its rows through an index (a union of index lookups,
                    // never an `OR` across columns, which PostgreSQL answers with a
                    // sequential scan: on a million persons that was half a second per purge).
                    "WITH outbox AS ( \
                       DELETE FROM notification_outbox WHERE id IN ( \
                         SELECT id FROM notification_outbox WHERE user_id = $1 \
                         UNION SELECT o.id FROM notification_outbox o JOIN passports p ON o.recipient = p.value \
                           WHERE p.user_id = $1)), \
                     invited AS ( \
                       DELETE FROM invites WHERE id IN ( \
                         SELECT id FROM invites WHERE invitee_user_id = $1 \
                         UNION SELECT id FROM invites WHERE accepted_by_user_id = $1 \
                         UNION SELECT i.id FROM invites i JOIN passports p \
                           ON p.kind = i.passport_kind AND p.value = i.passport_value WHERE p.user_id = $1) \
                       RETURNING id, person_id), \
                     gone AS (DELETE FROM users WHERE id = $1 RETURNING person_id), \
                     people AS ( \
                       DELETE FROM persons WHERE id IN ( \
                         SELECT person_id FROM gone \
                         UNION SELECT v.person_id FROM invited v WHERE v.person_id IS NOT NULL \
                           AND NOT EXISTS (SELECT 1 FROM users x WHERE x.person_id = v.person_id AND x.id <> $1) \
                           AND NOT EXISTS (SELECT 1 FROM invites i WHERE i.person_id = v.person_id \
                                           AND i.id NOT IN (SELECT id FROM invited)))), \
                     requests AS ( \
                       UPDATE erasure_requests SET status = 'completed', completed_at = $2 \
                       WHERE user_id = $1 AND status = 'pending'), \
                     tombstone AS ( \
                       INSERT INTO user_tombstones (user_id, deleted_at, mode, merged_into) VALUES ($1, $2, $3, $4) \
                       ON CONFLICT (user_id) DO NOTHING), \
                     {carried} \
                     SELECT (SELECT w.id FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
                             WHERE m.user_id = $1 AND w.is_root LIMIT 1), \
                            (SELECT n FROM counted)",
                    carried = super::audit::carried_ctes_sql(5)
                );
                let q = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(at)
                    .bind(mode)
                    .bind(merged_into.map(DbId));
                let (root, revoked): (Option<DbId>, i64) = super::audit::bind_carried!(q, revocation.as_ref(), pending)
                    .fetch_one(&mut *c)
                    .await?;
                if let Some(revocation) = &revocation {
                    revocation.trace(revoked);
                }
                root
            }
            super::TxInner::Sqlite(t) => {
                let c: &mut sqlx::SqliteConnection = &mut *t;
                // Only a root member's removal can leave the root workspace empty.
                let root: Option<DbId> = sqlx::query_scalar(
                    "SELECT w.id FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
                     WHERE m.user_id = $1 AND w.is_root LIMIT 1",
                )
                .bind(id)
                .fetch_optional(&mut *c)
                .await?;
                // Notifications to the person (those of the invites below go with them by cascade).
                sqlx::query(
                    "DELETE FROM notification_outbox WHERE user_id = $1 \
                     OR recipient IN (SELECT value FROM passports WHERE user_id = $1)",
                )
                .bind(id)
                .execute(&mut *c)
                .await?;
                // Invites addressed to the person: by invitee, by acceptor, or by passport value;
                // the persons-to-be they created come back for cleanup.
                let persons: Vec<Option<DbId>> = sqlx::query_scalar(
                    "DELETE FROM invites WHERE invitee_user_id = $1 OR accepted_by_user_id = $1 \
                     OR EXISTS (SELECT 1 FROM passports p WHERE p.user_id = $1 AND p.kind = invites.passport_kind \
                     AND p.value = invites.passport_value) RETURNING person_id",
                )
                .bind(id)
                .fetch_all(&mut *c)
                .await?;
                sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
                sqlx::query("DELETE FROM persons WHERE id = $1")
                    .bind(DbId(user.person_id))
                    .execute(&mut *c)
                    .await?;
                for person in persons.into_iter().flatten() {
                    sqlx::query(
                        "DELETE FROM persons WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM users WHERE person_id = $1) \
                         AND NOT EXISTS (SELECT 1 FROM invites WHERE person_id = $1)",
                    )
                    .bind(person)
                    .execute(&mut *c)
                    .await?;
                }
                sqlx::query(
                    "UPDATE erasure_requests SET status = 'completed', completed_at = $2 WHERE user_id = $1 AND status = 'pending'",
                )
                .bind(id)
                .bind(at)
                .execute(&mut *c)
                .await?;
                sqlx::query(
                    "INSERT INTO user_tombstones (user_id, deleted_at, mode, merged_into) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(id)
                .bind(at)
                .bind(mode)
                .bind(merged_into.map(DbId))
                .execute(&mut *c)
                .await?;
                root
            }
        };
        Ok(root.map(|r| r.0))
    }

    /// Serializes every decision about the set of instance admins ("there is always one
    /// active admin", "bootstrap creates the first admin only") until the transaction ends.
    /// The rule is about a set of rows that may be empty, so there is no row to lock:
    /// PostgreSQL takes a transaction-scoped advisory lock; SQLite's write transaction
    /// (`BEGIN IMMEDIATE`) already excludes every other writer. Read the admins with
    /// [`Tx::active_admin_ids`] *after* this: under READ COMMITTED that statement sees what a
    /// transaction that held the lock before committed.
    ///
    /// Lock order: a caller locks the user rows it changes first, then this, so two callers
    /// never wait on each other in a cycle.
    pub(crate) async fn lock_instance_admins(&mut self) -> Result<()> {
        if self.backend() == Backend::Postgres {
            on_conn!(self, |c| sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(INSTANCE_ADMINS_LOCK)
                .execute(&mut *c)
                .await?
                .rows_affected());
        }
        Ok(())
    }

    /// Active, untrashed admins. A decision based on them takes
    /// [`Tx::lock_instance_admins`] first.
    pub(crate) async fn active_admin_ids(&mut self) -> Result<Vec<Uuid>> {
        let ids: Vec<DbId> = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT id FROM users WHERE role = 'admin' AND active AND deleted_at IS NULL ORDER BY id"
        )
        .fetch_all(&mut *c)
        .await?);
        Ok(ids.into_iter().map(|d| d.0).collect())
    }
}
