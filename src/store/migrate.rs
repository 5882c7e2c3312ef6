//! Migrations and the hook registry.
//!
//! Two sets of migrations can live in one database: accountctl's own (embedded from
//! `migrations/postgres/` and `migrations/sqlite/`, history in `_sqlx_migrations`, the table
//! and format sqlx's migrator uses, so databases migrated by earlier builds carry on) and an
//! embedding application's ([`Migrations`], history in `_accountctl_app_migrations`), applied
//! after accountctl's. Each set keeps its own history, so their version numbers never collide.
//!
//! A migration run is **one transaction**: it takes the migration lock (a transaction-level
//! advisory lock on PostgreSQL, released by the commit itself, so it never outlives the
//! transaction even behind a transaction-mode pooler; `BEGIN IMMEDIATE` on SQLite), applies
//! every pending migration of both sets, records the hook set of the running binary, and
//! commits. Concurrent runs (init containers starting together) queue on the lock, and all
//! but the first find nothing to do.
//!
//! A migration run also records the running binary's application registry (see
//! `registry.rs`): a binary that lacks what the database records may not migrate it.

use std::borrow::Cow;
use std::collections::BTreeSet;

use sha2::{Digest, Sha384};
use sqlx::migrate::Migrator;

use super::registry::{RegistrySet, RegistryState};
use super::{Backend, Database, InvalidationChannel, Tx};
use crate::error::{Error, Result};

static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// History table of accountctl's own migrations (sqlx's name and layout).
const CORE_HISTORY: &str = "_sqlx_migrations";
/// History table of the embedding application's migrations.
pub(super) const APP_HISTORY: &str = "_accountctl_app_migrations";
/// The key of the PostgreSQL advisory lock that serializes migration runs ("actlmigr").
pub(super) const MIGRATION_LOCK_KEY: i64 = 0x6163_746c_6d69_6772;

/// Where a database's schema stands relative to this build's migrations (accountctl's and,
/// when the application registered some, the application's).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// Every migration this build knows is applied, and no other.
    Current,
    /// Migrations this build knows are not applied yet (versions listed).
    Behind(Vec<i64>),
    /// The database has migrations this build does not know: it was migrated by a newer one.
    Ahead(Vec<i64>),
}

/// One migration: a version (its order), a description and its SQL (several statements may
/// be separated by `;`). Runs inside the migration transaction.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Applied in ascending order; unique within its set.
    pub version: i64,
    /// Shown in the history table.
    pub description: Cow<'static, str>,
    /// The statements.
    pub sql: Cow<'static, str>,
}

/// An application's own migrations, one list per backend, applied after accountctl's by
/// `migrate` and `bootstrap`, with a history of their own (`_accountctl_app_migrations`).
#[derive(Debug, Clone, Default)]
pub struct Migrations {
    postgres: Vec<Migration>,
    sqlite: Vec<Migration>,
}

impl Migrations {
    /// From two lists (PostgreSQL, SQLite). Order does not matter; versions must be unique
    /// per list (checked when the migrations run: [`Error::Invalid`]).
    pub fn new(postgres: Vec<Migration>, sqlite: Vec<Migration>) -> Self {
        Self { postgres, sqlite }
    }

    /// From sqlx migrators, e.g. `sqlx::migrate!("migrations/postgres")` and
    /// `sqlx::migrate!("migrations/sqlite")` (files named `<VERSION>_<description>.sql`).
    pub fn from_sqlx(postgres: &Migrator, sqlite: &Migrator) -> Self {
        let list = |m: &Migrator| {
            m.iter()
                .filter(|m| m.migration_type.is_up_migration())
                .map(|m| Migration {
                    version: m.version,
                    description: Cow::Owned(m.description.to_string()),
                    sql: Cow::Owned(m.sql.as_str().to_owned()),
                })
                .collect()
        };
        Self::new(list(postgres), list(sqlite))
    }

    pub(crate) fn for_backend(&self, backend: Backend) -> &[Migration] {
        match backend {
            Backend::Postgres => &self.postgres,
            Backend::Sqlite => &self.sqlite,
        }
    }
}

fn core_migrations(backend: Backend) -> Vec<Migration> {
    let migrator = match backend {
        Backend::Postgres => &POSTGRES,
        Backend::Sqlite => &SQLITE,
    };
    Migrations::from_sqlx(migrator, migrator).postgres
}

/// What one migration run must do: the application's migrations and the registry to record.
#[derive(Debug, Clone, Default)]
pub(crate) struct MigrationPlan {
    pub app: Migrations,
    /// The running binary's declared set (application, hooks, handlers, declarations,
    /// retirements).
    pub registry: std::sync::Arc<RegistrySet>,
}

/// What a migration run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MigrateReport {
    /// accountctl's migrations applied by this run (versions).
    pub applied: Vec<i64>,
    /// The application's migrations applied by this run (versions).
    pub app_applied: Vec<i64>,
    /// Registry items recorded for the first time by this run (`lifecycle:NAME`,
    /// `merge:NAME`, `personal_data:TABLE`).
    pub hooks_recorded: Vec<String>,
    /// Registry items this binary retires, removed by this run (same form).
    pub hooks_retired: Vec<String>,
    /// The invalidation channel the database records after this run (`notify`, `table`).
    pub invalidations: Option<InvalidationChannel>,
    /// Whether this run changed the recorded invalidation channel (audited as
    /// `registry.invalidations`).
    pub invalidations_changed: bool,
}

/// Checksums (SHA-384, hex) that accountctl's own migrations had before an edit of their
/// comments only; a database migrated before the edit still matches. Never list an edit that
/// changes a statement: that needs a new migration.
const COMMENT_ONLY_EDITS: &[(i64, &str)] = &[(
    20261122000001,
    "e4a5e6ca575e804ab6bde1133986a5412ae51545a24ba2293e9f6a57269e7e1d89a7facad35c6dd886eeca873ae1edc6",
)];

/// Whether `stored` (the checksum recorded when version `version` was applied) matches `sql`.
fn checksum_matches(version: i64, stored: &[u8], sql: &str) -> bool {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    stored == checksum(sql).as_slice()
        || COMMENT_ONLY_EDITS
            .iter()
            .any(|(v, old)| *v == version && hex(stored) == *old)
}

fn checksum(sql: &str) -> Vec<u8> {
    Sha384::digest(sql.as_bytes()).to_vec()
}

impl Database {
    /// Applies pending migrations (accountctl's, then `plan.app`) and records `plan.registry`,
    /// in one transaction under the migration lock (module docs); `actor` is named in the
    /// audit rows of what the run retires or claims.
    ///
    /// `invalidations` (`migrate --invalidations`) records that invalidation channel. Without
    /// it, a run that first records a channel (the migration adding the record is applied by
    /// it) records the one this process asked for ([`Database::with_invalidation_channel`],
    /// `ACCOUNTCTL_INVALIDATIONS`), else the backend's default; a recorded one is kept. A
    /// change is audited (`registry.invalidations`) and bumps the registry generation.
    ///
    /// Errors: [`Error::MissingHooks`] when the database records what `plan` lacks (another
    /// application, a hook, handler or declaration it neither registers nor retires, an
    /// application migration it does not know; nothing applied); [`Error::Invalid`] for the
    /// `notify` channel on SQLite (which has no `NOTIFY`), asked for by `invalidations` or by
    /// this process; [`Error::Schema`] when the
    /// database holds migrations this build does not know or one whose SQL changed since it
    /// was applied; [`Error::Invalid`] for duplicate versions; the database's errors otherwise
    /// (the run rolls back whole).
    pub(crate) async fn migrate_with(
        &self,
        plan: &MigrationPlan,
        actor: &str,
        invalidations: Option<InvalidationChannel>,
    ) -> Result<MigrateReport> {
        // Refused before anything is applied (a bootstrap would otherwise migrate, then fail
        // its first write on the channel mismatch).
        if self.backend() == Backend::Sqlite
            && invalidations.or(self.invalidations) == Some(InvalidationChannel::Notify)
        {
            return Err(Error::Invalid(
                "SQLite has no NOTIFY: a SQLite database always carries invalidations through its table (`--invalidations table`, ACCOUNTCTL_INVALIDATIONS=table or unset)".into(),
            ));
        }
        let mut tx = self.begin_unguarded().await?;
        if tx.backend() == Backend::Postgres {
            on_conn!(tx, |c| sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *c)
                .await?
                .rows_affected());
        }
        let backend = tx.backend();
        let before = tx.registry_state().await?;
        let missing = before.missing_for(&plan.registry, backend, true);
        if !missing.is_empty() {
            return Err(Error::MissingHooks(missing));
        }
        let mut report = MigrateReport {
            applied: tx.apply(CORE_HISTORY, &core_migrations(backend)).await?,
            ..MigrateReport::default()
        };
        let app = plan.app.for_backend(backend);
        if !app.is_empty() {
            report.app_applied = tx.apply(APP_HISTORY, app).await?;
        }
        let (recorded, retired) = tx
            .record_registry(&plan.registry, actor, !report.app_applied.is_empty())
            .await?;
        report.hooks_recorded = recorded;
        report.hooks_retired = retired;
        // The channel to record: the one asked for by `--invalidations`, or, when this run
        // creates the record, the one this process uses (a deployment that set
        // ACCOUNTCTL_INVALIDATIONS=table keeps it across the upgrade).
        let wanted = invalidations.or(match before.invalidations {
            None => self.invalidations.filter(|_| backend == Backend::Postgres),
            Some(_) => None,
        });
        let mut recorded = tx.recorded_invalidations().await?;
        if let (Some(from), Some(to)) = (recorded, wanted)
            && from != to
        {
            tx.record_invalidations(from, to, actor, &plan.registry.binary).await?;
            report.invalidations_changed = true;
            recorded = Some(to);
        }
        report.invalidations = recorded;
        tx.commit().await?;
        if let Some(channel) = recorded {
            self.recorded.set(channel);
        }
        self.guard.invalidate();
        Ok(report)
    }

    /// Compares the applied migrations with this build's (accountctl's and `app`'s).
    pub(crate) async fn schema_status_with(&self, app: &Migrations) -> Result<SchemaStatus> {
        let mut tx = self.begin_read_unguarded().await?;
        let backend = tx.backend();
        let mut ahead = Vec::new();
        let mut behind = Vec::new();
        let mut sets = vec![(CORE_HISTORY, core_migrations(backend))];
        if !app.for_backend(backend).is_empty() {
            sets.push((APP_HISTORY, app.for_backend(backend).to_vec()));
        }
        for (table, known) in sets {
            let applied: Vec<i64> = tx.applied(table).await?.into_iter().map(|(v, _)| v).collect();
            ahead.extend(applied.iter().filter(|v| !known.iter().any(|m| m.version == **v)));
            behind.extend(known.iter().map(|m| m.version).filter(|v| !applied.contains(v)));
        }
        tx.rollback().await?;
        Ok(if !ahead.is_empty() {
            SchemaStatus::Ahead(ahead)
        } else if behind.is_empty() {
            SchemaStatus::Current
        } else {
            SchemaStatus::Behind(behind)
        })
    }

    /// The registry as the database holds it (empty before the first migration).
    pub(crate) async fn registry(&self) -> Result<RegistryState> {
        let mut tx = self.begin_read_unguarded().await?;
        let state = tx.registry_state().await;
        tx.rollback().await?;
        state
    }
}

impl Tx {
    pub(super) async fn table_exists(&mut self, table: &str) -> Result<bool> {
        let sql = match self.backend() {
            Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
            // The catalog directly: `information_schema.tables` is a view that checks
            // privileges on every relation and costs several milliseconds per call, paid by
            // every command at start-up.
            Backend::Postgres => {
                "SELECT COUNT(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relname = $1 AND c.relkind IN ('r', 'p')"
            }
        };
        let n: i64 = on_conn!(self, |c| sqlx::query_scalar(sql).bind(table).fetch_one(&mut *c).await?);
        Ok(n > 0)
    }

    /// The versions applied successfully in `table` (empty when it does not exist).
    pub(super) async fn applied_versions(&mut self, table: &str) -> Result<Vec<i64>> {
        Ok(self.applied(table).await?.into_iter().map(|(v, _)| v).collect())
    }

    /// `(version, checksum)` of the successfully applied migrations in `table`; empty when
    /// the table does not exist.
    async fn applied(&mut self, table: &str) -> Result<Vec<(i64, Vec<u8>)>> {
        if !self.table_exists(table).await? {
            return Ok(Vec::new());
        }
        // `table` is one of the two constants above, never input.
        let sql = format!("SELECT version, checksum FROM {table} WHERE success ORDER BY version");
        Ok(on_conn!(self, |c| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *c)
            .await?))
    }

    /// Applies the pending ones of `migrations` and records them in `table`.
    async fn apply(&mut self, table: &str, migrations: &[Migration]) -> Result<Vec<i64>> {
        let create = match self.backend() {
            Backend::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
                 installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, \
                 checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)"
            ),
            Backend::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {table} (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
                 installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
                 checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)"
            ),
        };
        self.execute_raw(&create).await?;
        let applied = self.applied(table).await?;
        let mut seen = BTreeSet::new();
        for m in migrations {
            if !seen.insert(m.version) {
                return Err(Error::Invalid(format!(
                    "two migrations have version {} in {table}",
                    m.version
                )));
            }
        }
        let ahead: Vec<i64> = applied.iter().map(|(v, _)| *v).filter(|v| !seen.contains(v)).collect();
        if !ahead.is_empty() {
            return Err(Error::Schema(format!(
                "the database has migrations this build does not know ({table}: {ahead:?}): it was migrated by a newer build; upgrade this one"
            )));
        }
        let mut pending: Vec<&Migration> = Vec::new();
        for m in migrations {
            match applied.iter().find(|(v, _)| *v == m.version) {
                Some((_, sum)) if !checksum_matches(m.version, sum, &m.sql) => {
                    return Err(Error::Schema(format!(
                        "migration {} ({}) in {table} was changed after it was applied: restore its original SQL and add a new migration instead",
                        m.version, m.description
                    )));
                }
                Some(_) => {}
                None => pending.push(m),
            }
        }
        pending.sort_by_key(|m| m.version);
        let mut done = Vec::new();
        for m in pending {
            let started = std::time::Instant::now();
            let sql: &str = &m.sql;
            // No parameters: the simple-query protocol, which runs several statements.
            on_conn!(self, |c| sqlx::Executor::execute(&mut *c, sqlx::AssertSqlSafe(sql))
                .await?
                .rows_affected());
            let elapsed = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
            let insert = format!(
                "INSERT INTO {table} (version, description, success, checksum, execution_time) VALUES ($1, $2, TRUE, $3, $4)"
            );
            let description: &str = &m.description;
            let sum = checksum(sql);
            on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(m.version)
                .bind(description)
                .bind(&sum)
                .bind(elapsed)
                .execute(&mut *c)
                .await?
                .rows_affected());
            tracing::info!(version = m.version, description, table, "applied migration");
            done.push(m.version);
        }
        Ok(done)
    }
}
