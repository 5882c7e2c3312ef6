//! The application registry: which application owns the database and everything its binaries
//! must carry to write to it.
//!
//! The database records, in `accountctl_registry` and `accountctl_hooks`:
//! - the owning **application**'s name (set by the first `migrate` of a binary that names
//!   one with [`crate::app::AppBuilder::application`]);
//! - its **lifecycle hooks**, **merge handlers** and **personal-data declarations** by name;
//! - (in `_accountctl_app_migrations`) its applied **application migrations**;
//! - the **invalidation channel** every process publishes and listens on
//!   ([`super::InvalidationChannel`], column `invalidations`; changed by `migrate
//!   --invalidations`);
//! - a **generation** counter, bumped by every migration run that changes any of the above.
//!
//! A binary whose declared set ([`RegistrySet`]) lacks any recorded item, whose application
//! differs from the recorded one, or which does not know an applied application migration may
//! read but never write: every write transaction fails with [`Error::MissingHooks`] (exit 6),
//! `migrate`, `bootstrap` and the registry itself included. No command drops a recorded item;
//! an application retires one by declaring it in its code
//! ([`crate::app::AppBuilder::retired_hook`] and its siblings), and that build's `migrate`
//! removes it, with an audit row naming the binary and the actor.
//!
//! The check runs at every write transaction ([`WriteGuard`]): the transaction reads the
//! generation (PostgreSQL: `accountctl_write_guard()`, under the registry lock in shared mode,
//! which a migration run holds exclusively; SQLite: inside `BEGIN IMMEDIATE`, which serializes
//! every writer), and only when it changed since the last check is the whole registry read
//! again. So a server started before an application's `migrate` stops writing at its next
//! write transaction after that `migrate` commits.

use std::sync::{Arc, Mutex, OnceLock};

use super::{Backend, InvalidationChannel, Tx};
use crate::error::{Error, Result};

/// What a registry entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RegistryKind {
    /// A user-lifecycle hook, by its `name()`.
    Lifecycle,
    /// A merge handler, by its `name()`.
    Merge,
    /// A personal-data declaration, by its table's name.
    PersonalData,
    /// An applied application migration, by its version (never recorded in
    /// `accountctl_hooks`: its history table is the record).
    Migration,
    /// The owning application, by its name.
    Application,
}

impl RegistryKind {
    /// The name stored in `accountctl_hooks.kind` and printed by `hooks list`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lifecycle => "lifecycle",
            Self::Merge => "merge",
            Self::PersonalData => "personal_data",
            Self::Migration => "migration",
            Self::Application => "application",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "lifecycle" => Self::Lifecycle,
            "merge" => Self::Merge,
            "personal_data" => Self::PersonalData,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RegistryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RegistryKind {
    type Err = Error;

    /// `lifecycle`, `merge` or `personal_data`. Errors: [`Error::Invalid`].
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s).ok_or_else(|| {
            Error::Invalid(format!(
                "unknown registry kind {s:?}: use lifecycle, merge or personal_data"
            ))
        })
    }
}

/// Something the database records that the running binary does not carry (or, for
/// [`RegistryKind::Application`], the application the database belongs to when the binary is
/// another one's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingHook {
    /// What it is.
    pub kind: RegistryKind,
    /// The hook's, handler's or table's name, the migration's version, or the application's
    /// name.
    pub name: String,
}

impl std::fmt::Display for MissingHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            RegistryKind::Lifecycle => write!(f, "{} (lifecycle hook)", self.name),
            RegistryKind::Merge => write!(f, "{} (merge handler)", self.name),
            RegistryKind::PersonalData => write!(f, "{} (personal-data declaration)", self.name),
            RegistryKind::Migration => write!(f, "application migration {}", self.name),
            RegistryKind::Application => write!(f, "the application {:?} (the database's owner)", self.name),
        }
    }
}

/// What one binary declares: its application, its recorded items and the application
/// migrations it knows, and what it retires. Built by [`crate::app::AppBuilder::build`].
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistrySet {
    /// The application's name; `None` for the plain library (it never claims a database).
    pub application: Option<String>,
    /// `(kind, name)` of the hooks, merge handlers and personal-data declarations.
    pub items: Vec<(RegistryKind, String)>,
    /// Versions of the application migrations this binary knows, per backend.
    pub migrations_postgres: Vec<i64>,
    pub migrations_sqlite: Vec<i64>,
    /// `(kind, name)` this binary retires: removed from the registry by its `migrate`.
    pub retired: Vec<(RegistryKind, String)>,
    /// The binary's name and version, for the audit rows of a migration run.
    pub binary: String,
}

impl RegistrySet {
    fn migrations(&self, backend: Backend) -> &[i64] {
        match backend {
            Backend::Postgres => &self.migrations_postgres,
            Backend::Sqlite => &self.migrations_sqlite,
        }
    }

    fn retires(&self, kind: RegistryKind, name: &str) -> bool {
        self.retired.iter().any(|(k, n)| *k == kind && n == name)
    }
}

/// The registry as the database holds it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistryState {
    /// Whether the registry tables exist (not before the first migration).
    pub present: bool,
    pub generation: i64,
    pub application: Option<String>,
    pub items: Vec<(RegistryKind, String)>,
    /// Applied application migrations (`_accountctl_app_migrations`).
    pub migrations: Vec<i64>,
    /// The recorded invalidation channel (`None` before the migration that records it).
    pub invalidations: Option<InvalidationChannel>,
}

impl RegistryState {
    /// What `set` lacks to write here. `retiring`: the items `set` retires are not counted
    /// (its own migration run is about to remove them).
    pub fn missing_for(&self, set: &RegistrySet, backend: Backend, retiring: bool) -> Vec<MissingHook> {
        let mut missing = Vec::new();
        if let Some(owner) = &self.application
            && set.application.as_deref() != Some(owner.as_str())
        {
            missing.push(MissingHook {
                kind: RegistryKind::Application,
                name: owner.clone(),
            });
        }
        for (kind, name) in &self.items {
            let carried = set.items.iter().any(|(k, n)| k == kind && n == name);
            if !(carried || (retiring && set.retires(*kind, name))) {
                missing.push(MissingHook {
                    kind: *kind,
                    name: name.clone(),
                });
            }
        }
        let known = set.migrations(backend);
        for version in &self.migrations {
            if !known.contains(version) {
                missing.push(MissingHook {
                    kind: RegistryKind::Migration,
                    name: version.to_string(),
                });
            }
        }
        missing
    }
}

/// The per-database write guard: the binary's declared set and the outcome of the last full
/// check, by registry generation. Shared by every clone of a [`super::Database`].
#[derive(Debug, Default)]
pub(crate) struct WriteGuard {
    set: OnceLock<Arc<RegistrySet>>,
    checked: Mutex<Option<Checked>>,
}

#[derive(Debug, Clone)]
struct Checked {
    /// `None`: the registry did not exist yet (checked again at every write).
    generation: Option<i64>,
    missing: Vec<MissingHook>,
    invalidations: Option<InvalidationChannel>,
}

impl WriteGuard {
    /// Arms the guard with the binary's set (once; later calls are ignored).
    pub fn arm(&self, set: Arc<RegistrySet>) {
        let _ = self.set.set(set);
    }

    /// Forgets the last check (after this process's own migration run).
    pub fn invalidate(&self) {
        if let Ok(mut c) = self.checked.lock() {
            *c = None;
        }
    }

    fn cached(&self, generation: Option<i64>) -> Option<Checked> {
        let c = self.checked.lock().ok()?;
        match &*c {
            Some(checked) if checked.generation.is_some() && checked.generation == generation => Some(checked.clone()),
            _ => None,
        }
    }

    fn store(&self, checked: Checked) {
        if let Ok(mut c) = self.checked.lock() {
            *c = Some(checked);
        }
    }

    /// Whether the registry was present at the last check (a cheap generation read is then
    /// enough at the next write).
    fn present(&self) -> bool {
        self.checked
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.generation.is_some()))
            .unwrap_or(false)
    }

    /// Checks `tx` (a write transaction just begun) against the registry; returns the
    /// invalidation channel the registry records (`None` when the guard is not armed or
    /// nothing is recorded yet). Errors: [`Error::MissingHooks`] when this binary may not
    /// write; the database's errors.
    pub async fn check(&self, tx: &mut Tx) -> Result<Option<InvalidationChannel>> {
        let Some(set) = self.set.get() else {
            return Ok(None);
        };
        let generation = if self.present() {
            Some(tx.registry_generation().await?)
        } else {
            None
        };
        let checked = match self.cached(generation) {
            Some(checked) => checked,
            None => {
                let state = tx.registry_state().await?;
                let missing = state.missing_for(set, tx.backend(), false);
                if !missing.is_empty() {
                    tracing::info!(missing = %missing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "), "this binary lacks what the database's registry records: writes are refused");
                }
                let checked = Checked {
                    generation: state.present.then_some(state.generation),
                    missing,
                    invalidations: state.invalidations,
                };
                self.store(checked.clone());
                checked
            }
        };
        if checked.missing.is_empty() {
            Ok(checked.invalidations)
        } else {
            Err(Error::MissingHooks(checked.missing))
        }
    }
}

impl Tx {
    /// The registry generation, read under the registry lock in shared mode (module docs).
    async fn registry_generation(&mut self) -> Result<i64> {
        let sql = match self.backend() {
            Backend::Postgres => "SELECT accountctl_write_guard()",
            Backend::Sqlite => "SELECT generation FROM accountctl_registry",
        };
        Ok(on_conn!(self, |c| sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut *c)
            .await?))
    }

    /// The whole registry (its tables may not exist yet: then an empty state, but the
    /// applied application migrations are still read).
    pub(crate) async fn registry_state(&mut self) -> Result<RegistryState> {
        let mut state = RegistryState {
            migrations: self.applied_versions(super::migrate::APP_HISTORY).await?,
            ..RegistryState::default()
        };
        if self.table_exists("accountctl_hooks").await? {
            let rows: Vec<(String, String)> = on_conn!(self, |c| sqlx::query_as(
                "SELECT kind, name FROM accountctl_hooks ORDER BY kind, name"
            )
            .fetch_all(&mut *c)
            .await?);
            state.items = rows
                .into_iter()
                .filter_map(|(k, n)| RegistryKind::parse(&k).map(|k| (k, n)))
                .collect();
        }
        if self.table_exists("accountctl_registry").await? {
            let (generation, application): (i64, Option<String>) = on_conn!(self, |c| sqlx::query_as(
                "SELECT generation, application FROM accountctl_registry"
            )
            .fetch_one(&mut *c)
            .await?);
            state.present = true;
            state.generation = generation;
            state.application = application;
            state.invalidations = self.recorded_invalidations().await?;
        }
        Ok(state)
    }

    /// The invalidation channel the registry records; `None` before the migration that
    /// records it (no registry, or no `invalidations` column yet). Errors: [`Error::Schema`]
    /// for a value this build does not know; the database's errors.
    pub(crate) async fn recorded_invalidations(&mut self) -> Result<Option<InvalidationChannel>> {
        // The catalog, not a failing SELECT: a failed statement would abort the transaction
        // on PostgreSQL (and be logged by the server).
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM pragma_table_info('accountctl_registry') WHERE name = 'invalidations'"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relname = 'accountctl_registry' \
                 AND a.attname = 'invalidations' AND NOT a.attisdropped"
            }
        };
        let columns: i64 = on_conn!(self, |c| sqlx::query_scalar(sql).fetch_one(&mut *c).await?);
        if columns == 0 {
            return Ok(None);
        }
        let text: Option<String> = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT invalidations FROM accountctl_registry"
        )
        .fetch_optional(&mut *c)
        .await?);
        text.map(|t| {
            t.parse::<InvalidationChannel>().map_err(|_| {
                Error::Schema(format!(
                    "the database records the invalidation channel {:?}, which this build does not know: upgrade it",
                    crate::domain::shown(&t)
                ))
            })
        })
        .transpose()
    }

    /// Records `to` as the database's invalidation channel (inside a migration run), where
    /// it records `from`: audited as `registry.invalidations` naming both, the binary and
    /// `actor`; the generation bumped, so every guarded process reads the registry again at
    /// its next write; and on PostgreSQL a notification on the `NOTIFY` channel, delivered
    /// at commit, so listeners on it switch at once (the table listener checks the record
    /// as it polls).
    pub(crate) async fn record_invalidations(
        &mut self,
        from: InvalidationChannel,
        to: InvalidationChannel,
        actor: &str,
        binary: &str,
    ) -> Result<()> {
        let at = crate::domain::now();
        on_conn!(self, |c| sqlx::query(
            "UPDATE accountctl_registry SET invalidations = $1, generation = generation + 1, updated_at = $2"
        )
        .bind(to.as_str())
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        self.insert_audit(
            at,
            actor,
            "registry.invalidations",
            None,
            &serde_json::json!({ "from": from.as_str(), "to": to.as_str(), "binary": binary }),
        )
        .await?;
        if self.backend() == Backend::Postgres {
            let payload = serde_json::json!({ "invalidations": to.as_str() }).to_string();
            on_conn!(self, |c| sqlx::query("SELECT pg_notify($1, $2)")
                .bind(super::authz::AUTHZ_CHANNEL)
                .bind(&payload)
                .execute(&mut *c)
                .await?
                .rows_affected());
        }
        Ok(())
    }

    /// Records `set` in the registry (inside a migration run, after the migrations): claims
    /// an unowned database for the set's application, records its items, removes what it
    /// retires (each removal audited, naming the binary and `actor`), and bumps the
    /// generation when anything changed. Returns the items recorded and retired
    /// (`kind:name`).
    pub(crate) async fn record_registry(
        &mut self,
        set: &RegistrySet,
        actor: &str,
        applied_app_migrations: bool,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let before = self.registry_state().await?;
        let at = crate::domain::now();
        let mut changed = applied_app_migrations;
        if before.application.is_none()
            && let Some(app) = &set.application
        {
            on_conn!(self, |c| sqlx::query("UPDATE accountctl_registry SET application = $1")
                .bind(app.as_str())
                .execute(&mut *c)
                .await?
                .rows_affected());
            self.insert_audit(
                at,
                actor,
                "registry.claimed",
                None,
                &serde_json::json!({ "application": app, "binary": set.binary }),
            )
            .await?;
            changed = true;
        }
        let mut recorded = Vec::new();
        for (kind, name) in &set.items {
            if before.items.iter().any(|(k, n)| k == kind && n == name) {
                continue;
            }
            let sql = match self.backend() {
                Backend::Postgres => {
                    "INSERT INTO accountctl_hooks (kind, name, recorded_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
                }
                Backend::Sqlite => {
                    "INSERT OR IGNORE INTO accountctl_hooks (kind, name, recorded_at) VALUES ($1, $2, $3)"
                }
            };
            on_conn!(self, |c| sqlx::query(sql)
                .bind(kind.as_str())
                .bind(name.as_str())
                .bind(at)
                .execute(&mut *c)
                .await?
                .rows_affected());
            recorded.push(format!("{kind}:{name}"));
            changed = true;
        }
        let mut retired = Vec::new();
        for (kind, name) in &set.retired {
            if set.items.iter().any(|(k, n)| k == kind && n == name) {
                // Declared and registered at once: the registration wins (AppBuilder refuses
                // this combination; a guard for direct callers).
                continue;
            }
            let n = on_conn!(self, |c| sqlx::query(
                "DELETE FROM accountctl_hooks WHERE kind = $1 AND name = $2"
            )
            .bind(kind.as_str())
            .bind(name.as_str())
            .execute(&mut *c)
            .await?
            .rows_affected());
            if n > 0 {
                self.insert_audit(
                    at,
                    actor,
                    "registry.retired",
                    None,
                    &serde_json::json!({ "kind": kind.as_str(), "name": name, "binary": set.binary }),
                )
                .await?;
                retired.push(format!("{kind}:{name}"));
                changed = true;
            }
        }
        if changed {
            on_conn!(self, |c| sqlx::query(
                "UPDATE accountctl_registry SET generation = generation + 1, updated_at = $1"
            )
            .bind(at)
            .execute(&mut *c)
            .await?
            .rows_affected());
        }
        Ok((recorded, retired))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(app: Option<&str>, items: &[(RegistryKind, &str)]) -> RegistrySet {
        RegistrySet {
            application: app.map(str::to_owned),
            items: items.iter().map(|(k, n)| (*k, (*n).to_owned())).collect(),
            ..RegistrySet::default()
        }
    }

    #[test]
    fn a_binary_lacking_an_item_another_application_or_a_migration_may_not_write() {
        let state = RegistryState {
            present: true,
            generation: 3,
            application: Some("calendar-app".into()),
            items: vec![
                (RegistryKind::Lifecycle, "audit".into()),
                (RegistryKind::Lifecycle, "calendar".into()),
                (RegistryKind::PersonalData, "app_calendars".into()),
            ],
            migrations: vec![1],
            invalidations: None,
        };
        let plain = set(None, &[(RegistryKind::Lifecycle, "audit")]);
        let missing = state.missing_for(&plain, Backend::Sqlite, false);
        let kinds: Vec<RegistryKind> = missing.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                RegistryKind::Application,
                RegistryKind::Lifecycle,
                RegistryKind::PersonalData,
                RegistryKind::Migration
            ]
        );
        let mut full = set(
            Some("calendar-app"),
            &[
                (RegistryKind::Lifecycle, "audit"),
                (RegistryKind::Lifecycle, "calendar"),
                (RegistryKind::PersonalData, "app_calendars"),
            ],
        );
        full.migrations_sqlite = vec![1];
        assert!(state.missing_for(&full, Backend::Sqlite, false).is_empty());
        assert_eq!(
            state.missing_for(&full, Backend::Postgres, false).len(),
            1,
            "migrations are per backend"
        );
        // Retiring: only the binary that declares the retirement, only in its own run.
        let mut retiring = full.clone();
        retiring.migrations_postgres = vec![1];
        retiring.items.retain(|(_, n)| n != "calendar");
        retiring.retired.push((RegistryKind::Lifecycle, "calendar".into()));
        assert_eq!(state.missing_for(&retiring, Backend::Postgres, false).len(), 1);
        assert!(state.missing_for(&retiring, Backend::Postgres, true).is_empty());
    }
}
