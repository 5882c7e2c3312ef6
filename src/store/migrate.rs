//! Embedded migrations (`migrations/postgres/`, `migrations/sqlite/`) and the check every
//! command but `migrate` and `bootstrap` makes before it touches the database.

use sqlx::migrate::Migrator;

use super::{Database, Pool};
use crate::error::{Error, Result};

static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Where a database's schema stands relative to this build's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// Every migration this build knows is applied, and no other.
    Current,
    /// Migrations this build knows are not applied yet (versions listed).
    Behind(Vec<i64>),
    /// The database has migrations this build does not know: it was migrated by a newer one.
    Ahead(Vec<i64>),
}

impl Database {
    fn migrator(&self) -> &'static Migrator {
        match self.pool {
            Pool::Sqlite(_) => &SQLITE,
            Pool::Postgres(_) => &POSTGRES,
        }
    }

    /// Applies pending migrations; returns the versions it applied. Safe to run while
    /// another process runs it too (sqlx takes a migration lock).
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        let before = self.applied_versions().await?;
        match &self.pool {
            Pool::Sqlite(p) => self.migrator().run(p).await?,
            Pool::Postgres(p) => self.migrator().run(p).await?,
        }
        let after = self.applied_versions().await?;
        Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
    }

    /// Compares the applied migrations with this build's.
    pub async fn schema_status(&self) -> Result<SchemaStatus> {
        let applied = self.applied_versions().await?;
        let known: Vec<i64> = self.migrator().iter().map(|m| m.version).collect();
        let ahead: Vec<i64> = applied.iter().copied().filter(|v| !known.contains(v)).collect();
        if !ahead.is_empty() {
            return Ok(SchemaStatus::Ahead(ahead));
        }
        let behind: Vec<i64> = known.into_iter().filter(|v| !applied.contains(v)).collect();
        Ok(if behind.is_empty() {
            SchemaStatus::Current
        } else {
            SchemaStatus::Behind(behind)
        })
    }

    /// Refuses to go on against a schema that is not exactly this build's.
    ///
    /// Errors: [`Error::Schema`] (exit code 6) naming `accountctl migrate` when the schema is
    /// behind, or asking for a newer accountctl when it is ahead.
    pub async fn ensure_schema_current(&self) -> Result<()> {
        match self.schema_status().await? {
            SchemaStatus::Current => Ok(()),
            SchemaStatus::Behind(v) => Err(Error::Schema(format!(
                "the database schema at {} is behind this accountctl ({} migration(s) pending): run `accountctl migrate` first",
                self.url,
                v.len()
            ))),
            SchemaStatus::Ahead(v) => Err(Error::Schema(format!(
                "the database schema at {} is newer than this accountctl (unknown migration(s) {v:?}): upgrade accountctl",
                self.url
            ))),
        }
    }

    /// Successfully applied migration versions; empty when the database was never migrated.
    async fn applied_versions(&self) -> Result<Vec<i64>> {
        let mut tx = self.begin_read().await?;
        let exists_sql = match tx.backend() {
            super::Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            super::Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
            }
        };
        let exists: i64 = super::on_conn!(tx, |c| sqlx::query_scalar(exists_sql).fetch_one(&mut *c).await?);
        if exists == 0 {
            return Ok(Vec::new());
        }
        let versions: Vec<i64> = super::on_conn!(tx, |c| sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version"
        )
        .fetch_all(&mut *c)
        .await?);
        Ok(versions)
    }
}
