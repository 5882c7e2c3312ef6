//! The composition root: [`App`], built once through [`AppBuilder`] with the database, the
//! settings and the application's own lifecycle hooks, merge handlers, migrations and
//! personal-data declarations. Every service comes from a built `App`, so no operation runs
//! without the hooks, and the CLI ([`crate::cli`]) runs on the same `App` as the server.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::lifecycle::{UserLifecycleHook, UserLifecycleService};
use crate::services::accounts::Accounts;
use crate::services::audit::AuditLifecycleHook;
use crate::services::auth::AuthService;
use crate::services::authz::{AuthzCache, AuthzCacheLifecycleHook};
use crate::services::bootstrap::Bootstrap;
use crate::services::external_identity::ExternalIdentityLifecycleHook;
use crate::services::folders::{FolderService, HomeFolderLifecycleHook};
use crate::services::memberships::Memberships;
use crate::services::merge::MergeHandler;
use crate::services::sessions::{SessionRevocationLifecycleHook, SessionService};
use crate::store::{
    Database, DatabaseUrl, InvalidationChannel, MigrateReport, MigrationPlan, Migrations, MissingHook, RegistryKind,
    RegistrySet, SchemaStatus,
};

/// Settings of the services.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long an admin-deleted user stays restorable in the trash (default 30 days).
    pub trash_retention: chrono::Duration,
    /// The accept-link template put in invite notifications for the application's mailer,
    /// e.g. `https://app.example.com/invites/accept?token={token}`. The mailer substitutes
    /// the token; the database never holds it. `None` (the default): the notification
    /// carries no link (`link_template: null`), never a placeholder a mailer would send.
    pub invite_link_template: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            trash_retention: chrono::Duration::days(30),
            invite_link_template: None,
        }
    }
}

/// Declares that rows of an application table hold personal data of the user they reference,
/// so that a GDPR purge (the right to erasure, GDPR Art. 17) deletes them in the purge
/// transaction, after the lifecycle hooks ran, even if no hook does.
///
/// ```
/// # use accountctl::app::PersonalData;
/// let calendars = PersonalData::table("app_calendars", "user_id").columns(&["name"]);
/// assert_eq!(calendars.personal_columns(), ["name"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalData {
    table: &'static str,
    user_column: &'static str,
    columns: Vec<&'static str>,
}

impl PersonalData {
    /// Rows of `table` whose `user_column` holds a user's id belong to that user.
    pub fn table(table: &'static str, user_column: &'static str) -> Self {
        Self {
            table,
            user_column,
            columns: Vec::new(),
        }
    }

    /// The columns that identify or describe the person (the others are taken to be
    /// references or operational state).
    pub fn columns(mut self, columns: &[&'static str]) -> Self {
        self.columns.extend_from_slice(columns);
        self
    }

    /// The table's name.
    pub fn table_name(&self) -> &'static str {
        self.table
    }

    /// The column holding the owning user's id.
    pub fn user_column(&self) -> &'static str {
        self.user_column
    }

    /// The columns declared personal.
    pub fn personal_columns(&self) -> &[&'static str] {
        &self.columns
    }

    /// Identifiers are formatted into the purge's SQL, so only plain lower-case SQL
    /// identifiers are accepted. Errors: [`Error::Invalid`].
    fn validate(&self) -> Result<()> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        for name in [self.table, self.user_column].iter().chain(&self.columns) {
            if !plain(name) {
                return Err(Error::Invalid(format!(
                    "personal-data declaration {}.{}: {name:?} is not a plain lower-case SQL identifier",
                    self.table, self.user_column
                )));
            }
        }
        Ok(())
    }

    /// The statement that erases the user's rows (`$1` is the user id).
    pub(crate) fn erase_sql(&self) -> String {
        format!("DELETE FROM {} WHERE {} = $1", self.table, self.user_column)
    }
}

type HookFactory = Box<dyn FnOnce(&Database) -> Arc<dyn UserLifecycleHook> + Send>;

enum DatabaseSource {
    Url(String),
    Database(Database),
}

/// Builds an [`App`]: the one door through which an application wires accountctl.
///
/// ```no_run
/// # use std::sync::Arc;
/// # async fn example(my_hook: Arc<dyn accountctl::lifecycle::UserLifecycleHook>) -> accountctl::Result<()> {
/// use accountctl::{App, Config};
///
/// let app = App::builder()
///     .database_url("postgres://app@db.internal/accounts")
///     .config(Config::default())
///     .hook(my_hook)
///     .build()
///     .await?;
/// app.ensure_schema_current().await?;
/// let users = app.accounts().list(&Default::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct AppBuilder {
    database: Option<DatabaseSource>,
    max_connections: Option<u32>,
    short_lived: bool,
    lock_timeout: Option<std::time::Duration>,
    invalidations: Option<InvalidationChannel>,
    config: Config,
    hooks: Vec<HookFactory>,
    merge_handlers: Vec<Arc<dyn MergeHandler>>,
    migrations: Migrations,
    personal_data: Vec<PersonalData>,
    application: Option<String>,
    retired: Vec<(RegistryKind, String)>,
    merge_replacements: Vec<Arc<dyn MergeHandler>>,
    merge_removals: Vec<&'static str>,
    program: Option<String>,
    /// The admin binary's identity (issue 23's block below).
    branding: Branding,
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("hooks", &self.hooks.len())
            .field(
                "merge_handlers",
                &self.merge_handlers.iter().map(|h| h.name()).collect::<Vec<_>>(),
            )
            .field("personal_data", &self.personal_data)
            .finish_non_exhaustive()
    }
}

impl AppBuilder {
    /// The database to connect to at [`AppBuilder::build`]: `sqlite://PATH` or
    /// `postgres://USER@HOST/DB`.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database = Some(DatabaseSource::Url(url.into()));
        self
    }

    /// An already open database (see [`Database::from_pg_pool`] and
    /// [`Database::from_sqlite_pool`] to wrap the application's own pool).
    pub fn database(mut self, db: Database) -> Self {
        self.database = Some(DatabaseSource::Database(db));
        self
    }

    /// Whether a database was given (the CLI falls back to its default when not).
    pub fn has_database(&self) -> bool {
        self.database.is_some()
    }

    /// The pool size when connecting by URL (default 8).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// Connects by URL as a short-lived process (one admin command), through
    /// [`Database::connect_short_lived`]: no check before reusing a connection, and
    /// connections Ctrl-C can cancel ([`Database::interrupt`]). The CLI builds its `App` so.
    pub fn short_lived(mut self) -> Self {
        self.short_lived = true;
        self
    }

    /// Gives up waiting for a lock another session holds after `timeout` (1 ms to 24 days),
    /// with [`Error::Unavailable`] (exit 6; [`Error::is_lock_timeout`] tells it apart) and
    /// nothing changed. PostgreSQL: every transaction of the `App` sets `lock_timeout` for
    /// itself (`SET LOCAL`, sent with its `BEGIN`, so a transaction-mode pooler carries it);
    /// without this the server's setting applies (by default, wait as long as it takes).
    /// SQLite: the busy timeout of the connections (default 10 s), which applies when the
    /// builder connects by URL; a SQLite pool given to [`AppBuilder::database`] keeps its own
    /// (`build` then fails with [`Error::Invalid`]). The CLI's `--lock-timeout` sets this.
    pub fn lock_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// The invalidation channel this process expects (see [`InvalidationChannel`]: the
    /// database records it, `NOTIFY` on PostgreSQL unless changed, the table on SQLite).
    /// [`AppBuilder::build`] refuses with [`Error::Invalid`] (exit 2), naming both, when the
    /// database records another; on a database that records none yet, this is the channel
    /// used and the one its first `migrate` records. Change a database's channel with
    /// [`App::migrate_with_invalidations`] (`migrate --invalidations`).
    pub fn invalidation_channel(mut self, channel: InvalidationChannel) -> Self {
        self.invalidations = Some(channel);
        self
    }

    /// The admin binary's name, used in messages that tell the operator what to run (e.g.
    /// "run `NAME migrate`"). Default `accountctl`; the CLI sets it to its own name.
    pub fn program_name(mut self, name: impl Into<String>) -> Self {
        self.program = Some(name.into());
        self
    }

    /// The services' settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The settings, to adjust before [`AppBuilder::build`].
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Registers an application lifecycle hook. Application hooks fire after every shipped
    /// hook, in the order registered.
    pub fn hook(self, hook: Arc<dyn UserLifecycleHook>) -> Self {
        self.hook_with(move |_| hook)
    }

    /// Registers a lifecycle hook built from the database once it is open (for hooks that
    /// write outside the delete transaction, on created or login). Fires in registration
    /// order among the application's hooks.
    pub fn hook_with(mut self, make: impl FnOnce(&Database) -> Arc<dyn UserLifecycleHook> + Send + 'static) -> Self {
        self.hooks.push(Box::new(make));
        self
    }

    /// Registers an application merge handler, run after the shipped ones (core data,
    /// passports, external identities) in the order registered.
    pub fn merge_handler(mut self, handler: Arc<dyn MergeHandler>) -> Self {
        self.merge_handlers.push(handler);
        self
    }

    /// The application's own migrations, applied by [`App::migrate`] (and so by `migrate`
    /// and `bootstrap`) after accountctl's, with a history of their own.
    pub fn migrations(mut self, migrations: Migrations) -> Self {
        self.migrations = migrations;
        self
    }

    /// Names the application that owns the database. Its first `migrate` claims an
    /// unowned database for it (audited as `registry.claimed`); from then on a binary of
    /// another application, or the plain `accountctl`, may read but never write. A name is
    /// 1–128 characters; pick one and keep it (it is the database's record of its owner).
    pub fn application(mut self, name: impl Into<String>) -> Self {
        self.application = Some(name.into());
        self
    }

    /// Retires the lifecycle hook `name` that earlier builds registered: this build's
    /// `migrate` removes it from the database's registry (audited as `registry.retired`,
    /// naming this binary and the actor), after which binaries without it may write again.
    /// Until that `migrate`, this build may not write either. No command removes a hook
    /// this way: the retirement is part of the application's code.
    pub fn retired_hook(mut self, name: impl Into<String>) -> Self {
        self.retired.push((RegistryKind::Lifecycle, name.into()));
        self
    }

    /// Retires the merge handler `name` (as [`AppBuilder::retired_hook`] does for a hook).
    pub fn retired_merge_handler(mut self, name: impl Into<String>) -> Self {
        self.retired.push((RegistryKind::Merge, name.into()));
        self
    }

    /// Retires the personal-data declaration of `table` (as [`AppBuilder::retired_hook`]
    /// does for a hook), for an application that dropped the table.
    pub fn retired_personal_data(mut self, table: impl Into<String>) -> Self {
        self.retired.push((RegistryKind::PersonalData, table.into()));
        self
    }

    /// Replaces a shipped merge handler with the application's own of the same `name()`
    /// (e.g. an application with its own notion of memberships or folders), keeping its
    /// place in the running order. Errors at [`AppBuilder::build`]: [`Error::Invalid`] when
    /// no shipped handler has that name.
    pub fn replace_merge_handler(mut self, handler: Arc<dyn MergeHandler>) -> Self {
        self.merge_replacements.push(handler);
        self
    }

    /// Removes the shipped merge handler `name` and retires it from the registry (see
    /// [`AppBuilder::retired_merge_handler`]): the application moves that data itself, in a
    /// handler of its own, or not at all. Errors at [`AppBuilder::build`]:
    /// [`Error::Invalid`] when no shipped handler has that name.
    pub fn without_merge_handler(mut self, name: &'static str) -> Self {
        self.merge_removals.push(name);
        self.retired.push((RegistryKind::Merge, name.to_owned()));
        self
    }

    /// Declares an application table holding personal data (see [`PersonalData`]).
    pub fn personal_data(mut self, declaration: PersonalData) -> Self {
        self.personal_data.push(declaration);
        self
    }

    /// Opens the database (when given by URL), builds the dispatcher with the shipped hooks
    /// followed by the application's, and checks the hook set the database records: when
    /// this binary lacks one, the `App` may read but every write fails with
    /// [`Error::MissingHooks`] (exit 6).
    ///
    /// It also reads the invalidation channel the database records
    /// ([`Database::check_invalidation_channel`]).
    ///
    /// Errors: [`Error::Invalid`] for no database, a malformed URL, duplicate hook names, an
    /// invalid personal-data declaration, an [`AppBuilder::invalidation_channel`] (or
    /// [`Database::with_invalidation_channel`]) other than the one the database records, or a
    /// lock timeout out of range or for a given SQLite pool ([`AppBuilder::lock_timeout`]);
    /// [`Error::Unavailable`] when the database cannot be reached.
    pub async fn build(self) -> Result<App> {
        let db = match self.database {
            Some(DatabaseSource::Database(db)) => match self.lock_timeout {
                Some(timeout) => db.with_lock_timeout(timeout)?,
                None => db,
            },
            Some(DatabaseSource::Url(url)) => {
                let (url, n) = (DatabaseUrl::parse(&url)?, self.max_connections.unwrap_or(8));
                Database::connect_with_lock_timeout(&url, n, self.short_lived, self.lock_timeout).await?
            }
            None => return Err(Error::Invalid("no database given: set a database URL or pool".into())),
        };
        let db = match self.invalidations {
            Some(channel) => db.with_invalidation_channel(channel),
            None => db,
        };
        // The invalidation channel is the database's: read it, and refuse a process that
        // asks for another (its revocations would reach no listener).
        db.check_invalidation_channel().await?;
        // This App's handle (and every clone its hooks get) is checked against its own
        // declared set, armed below once the set is known.
        let db = db.with_own_guard();
        for declaration in &self.personal_data {
            declaration.validate()?;
        }
        let authz = Arc::new(AuthzCache::default());
        // Registration order is firing order, and it is decided here only:
        // 1. audit first, so even an event a later hook aborts is traced (the durable row
        //    rolls back with it);
        // 2. home folder: later hooks that seed resources *inside* the folder must come after
        //    their producer;
        // 3. authz cache: invalidate once the state changes are queued;
        // 4. session revocation: revokes in the delete transaction before the row changes;
        // 5. external identity;
        // then the application's hooks, in the order registered.
        let mut hooks: Vec<Arc<dyn UserLifecycleHook>> = vec![
            Arc::new(AuditLifecycleHook::new(db.clone())),
            Arc::new(HomeFolderLifecycleHook::new(FolderService::new(db.clone()))),
            Arc::new(AuthzCacheLifecycleHook::new(authz.clone(), db.clone())),
            Arc::new(SessionRevocationLifecycleHook),
            Arc::new(ExternalIdentityLifecycleHook::new(db.clone())),
        ];
        hooks.extend(self.hooks.into_iter().map(|make| make(&db)));
        let mut merge_handlers = crate::services::merge::default_handlers();
        for replacement in self.merge_replacements {
            let slot = merge_handlers
                .iter_mut()
                .find(|h| h.name() == replacement.name())
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "replace_merge_handler: no shipped merge handler is named {:?}",
                        replacement.name()
                    ))
                })?;
            *slot = replacement;
        }
        for name in &self.merge_removals {
            let before = merge_handlers.len();
            merge_handlers.retain(|h| h.name() != *name);
            if merge_handlers.len() == before {
                return Err(Error::Invalid(format!(
                    "without_merge_handler: no shipped merge handler is named {name:?}"
                )));
            }
        }
        merge_handlers.extend(self.merge_handlers);
        let mut items: Vec<(RegistryKind, String)> = Vec::new();
        for (kind, name) in hooks
            .iter()
            .map(|h| (RegistryKind::Lifecycle, h.name()))
            .chain(merge_handlers.iter().map(|h| (RegistryKind::Merge, h.name())))
            .chain(
                self.personal_data
                    .iter()
                    .map(|d| (RegistryKind::PersonalData, d.table_name())),
            )
        {
            if items.iter().any(|(k, n)| *k == kind && n == name) {
                return Err(Error::Invalid(format!(
                    "two {kind} entries are named {name:?}: names identify them in the database's registry"
                )));
            }
            if self.retired.iter().any(|(k, n)| *k == kind && n == name) {
                return Err(Error::Invalid(format!(
                    "{kind} {name:?} is both registered and retired: drop one of the two"
                )));
            }
            items.push((kind, name.to_owned()));
        }
        if let Some(app) = &self.application
            && !(1..=128).contains(&app.chars().count())
        {
            return Err(Error::Invalid(
                "the application name must be 1 to 128 characters".into(),
            ));
        }
        let program: Arc<str> = self.program.unwrap_or_else(|| "accountctl".to_owned()).into();
        let versions = |list: &[crate::store::Migration]| list.iter().map(|m| m.version).collect::<Vec<_>>();
        let registry = Arc::new(RegistrySet {
            application: self.application,
            items,
            migrations_postgres: versions(self.migrations.for_backend(crate::store::Backend::Postgres)),
            migrations_sqlite: versions(self.migrations.for_backend(crate::store::Backend::Sqlite)),
            retired: self.retired,
            binary: format!("{program} (accountctl {})", env!("CARGO_PKG_VERSION")),
        });
        db.arm_guard(registry.clone());
        let lifecycle = Arc::new(UserLifecycleService::new(hooks));
        let app = App {
            db,
            config: self.config,
            lifecycle,
            authz,
            merge_handlers: merge_handlers.into(),
            plan: Arc::new(MigrationPlan {
                app: self.migrations,
                registry,
            }),
            personal_data: self.personal_data.into(),
            program,
        };
        Ok(app)
    }
}

/// The library, wired: one database, one dispatcher (shipped hooks, then the application's),
/// the merge handlers, and the services. Cheap to clone. Build it with [`App::builder`].
#[derive(Clone)]
pub struct App {
    pub(crate) db: Database,
    pub(crate) config: Config,
    pub(crate) lifecycle: Arc<UserLifecycleService>,
    pub(crate) authz: Arc<AuthzCache>,
    merge_handlers: Arc<[Arc<dyn MergeHandler>]>,
    plan: Arc<MigrationPlan>,
    personal_data: Arc<[PersonalData]>,
    program: Arc<str>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("db", &self.db)
            .field("hooks", &self.lifecycle.hook_names())
            .field("merge_handlers", &self.merge_handler_names())
            .finish_non_exhaustive()
    }
}

impl App {
    /// A builder with no database, default settings and no application hooks.
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
    }

    /// The database.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The dispatcher (to fire events from the application's own paths, and to drain
    /// spawned logout work before a process exits).
    pub fn lifecycle(&self) -> &Arc<UserLifecycleService> {
        &self.lifecycle
    }

    /// The authorization cache the AuthzCache hook invalidates (a server answers
    /// capability checks from it and runs the invalidation listener on it).
    pub fn authz(&self) -> &Arc<AuthzCache> {
        &self.authz
    }

    /// The lifecycle hooks' names, in firing order.
    pub fn hook_names(&self) -> Vec<&'static str> {
        self.lifecycle.hook_names()
    }

    /// The merge handlers' names, in running order.
    pub fn merge_handler_names(&self) -> Vec<&'static str> {
        self.merge_handlers.iter().map(|h| h.name()).collect()
    }

    /// The application's personal-data declarations.
    pub fn personal_data(&self) -> &[PersonalData] {
        &self.personal_data
    }

    /// Applies pending migrations (accountctl's, then the application's) and records this
    /// binary's hook set, in one transaction under a migration lock: safe to run from several
    /// processes at once. Idempotent.
    ///
    /// Errors: [`Error::MissingHooks`] when the database records what this binary lacks
    /// (another application, hooks it neither registers nor retires, application migrations
    /// it does not know: a binary without them must not migrate on their behalf); [`Error::Schema`] when the
    /// database is ahead of this build or a migration was edited after it was applied.
    pub async fn migrate(&self) -> Result<MigrateReport> {
        self.db
            .migrate_with(&self.plan, &crate::lifecycle::current_actor(), None)
            .await
    }

    /// [`App::migrate`], then records `channel` as the database's invalidation channel
    /// (`migrate --invalidations`), in the same transaction: audited as
    /// `registry.invalidations` (from, to, binary, actor) when it changes. Every process
    /// follows: guarded writers at their next write transaction, listeners on `NOTIFY` at
    /// once (a notification of the change), listeners polling the table within
    /// [`crate::services::authz::CHANNEL_CHECK`]; each drops its whole capability cache when
    /// it switches. A process that asked for the old channel explicitly is refused from then
    /// on (exit 2) until its setting changes.
    ///
    /// Errors: [`Error::Invalid`] for `notify` on SQLite; those of [`App::migrate`].
    pub async fn migrate_with_invalidations(&self, channel: InvalidationChannel) -> Result<MigrateReport> {
        self.db
            .migrate_with(&self.plan, &crate::lifecycle::current_actor(), Some(channel))
            .await
    }

    /// Where the schema stands against this build's migrations (accountctl's and the
    /// application's).
    pub async fn schema_status(&self) -> Result<SchemaStatus> {
        self.db.schema_status_with(&self.plan.app).await
    }

    /// Refuses to go on against a schema that is not exactly this build's.
    ///
    /// Errors: [`Error::Schema`] (exit code 6) naming `migrate` when the schema is behind, or
    /// asking for a newer build when it is ahead.
    pub async fn ensure_schema_current(&self) -> Result<()> {
        match self.schema_status().await? {
            SchemaStatus::Current => Ok(()),
            SchemaStatus::Behind(v) => Err(Error::Schema(format!(
                "the database schema at {} is behind this build ({} migration(s) pending): run `{} migrate` first",
                self.db.url(),
                v.len(),
                self.program
            ))),
            SchemaStatus::Ahead(v) => Err(Error::Schema(format!(
                "the database schema at {} is newer than this build (unknown migration(s) {v:?}): upgrade {}",
                self.db.url(),
                self.program
            ))),
        }
    }

    /// Whether this binary may write here now: begins a write transaction (which checks the
    /// application registry) and rolls it back. Errors: [`Error::MissingHooks`] (exit 6)
    /// naming what this binary lacks; the database's errors (a read-only standby…).
    pub async fn ensure_writable(&self) -> Result<()> {
        self.db.begin().await?.rollback().await
    }

    /// What the database's registry records that this binary lacks (empty when nothing, or
    /// before the first migration): while not empty, every write is refused.
    pub async fn missing_hooks(&self) -> Result<Vec<MissingHook>> {
        let state = self.db.registry().await?;
        Ok(state.missing_for(&self.plan.registry, self.db.backend(), false))
    }

    /// The registry as the database records it: `(kind, name)` of the hooks, merge handlers
    /// and personal-data declarations, ordered.
    pub async fn recorded_hooks(&self) -> Result<Vec<(RegistryKind, String)>> {
        Ok(self.db.registry().await?.items)
    }

    /// The application that owns the database, as recorded (`None`: unowned, or before the
    /// first migration).
    pub async fn recorded_application(&self) -> Result<Option<String>> {
        Ok(self.db.registry().await?.application)
    }

    /// The application this binary belongs to ([`AppBuilder::application`]).
    pub fn application(&self) -> Option<&str> {
        self.plan.registry.application.as_deref()
    }

    /// What this binary retires from the registry at its next `migrate`.
    pub fn retired(&self) -> &[(RegistryKind, String)] {
        &self.plan.registry.retired
    }

    /// Account merge with the shipped handlers followed by the application's.
    pub fn merger(&self) -> crate::services::merge::Merger {
        crate::services::merge::Merger::new(
            self.db.clone(),
            self.lifecycle.clone(),
            self.accounts(),
            self.merge_handlers.to_vec(),
        )
    }

    /// Users: create, list, show, delete, restore, disable, enable, passwords, conversion.
    pub fn accounts(&self) -> Accounts {
        Accounts::new(
            self.db.clone(),
            self.lifecycle.clone(),
            self.config.trash_retention,
            self.personal_data.clone(),
        )
    }

    /// Sessions: list, revoke, prune.
    pub fn sessions(&self) -> SessionService {
        SessionService::new(self.db.clone(), self.lifecycle.clone())
    }

    /// The sign-in paths: password and external (federated).
    pub fn auth(&self) -> AuthService {
        AuthService::new(
            self.db.clone(),
            self.lifecycle.clone(),
            self.sessions(),
            self.accounts(),
        )
    }

    /// Idempotent first start: migrations, root workspace, first admin.
    pub fn bootstrap(&self) -> Bootstrap {
        Bootstrap::new(self.clone())
    }

    /// Home folders.
    pub fn folders(&self) -> FolderService {
        FolderService::new(self.db.clone())
    }

    /// Workspaces, workspace types and roles.
    pub fn workspaces(&self) -> crate::services::workspaces::Workspaces {
        crate::services::workspaces::Workspaces::new(self.db.clone())
    }

    /// Invites into workspaces.
    pub fn invites(&self) -> crate::services::invites::Invites {
        crate::services::invites::Invites::new(
            self.db.clone(),
            self.accounts(),
            self.config.invite_link_template.clone(),
        )
    }

    /// Erasure requests and the sweeper.
    pub fn erasure(&self) -> crate::services::erasure::Erasure {
        crate::services::erasure::Erasure::new(
            self.db.clone(),
            self.lifecycle.clone(),
            self.accounts(),
            self.sessions(),
            self.invites(),
        )
    }

    /// The work lifecycle hooks owe committed changes: list it, replay it.
    pub fn hook_work(&self) -> crate::services::hook_work::HookWork {
        crate::services::hook_work::HookWork::new(self.db.clone(), self.lifecycle.clone())
    }

    /// Bulk import.
    pub fn importer(&self) -> crate::services::import::Importer {
        crate::services::import::Importer::new(self.db.clone(), self.lifecycle.clone())
    }

    /// Workspace role assignment.
    pub fn memberships(&self) -> Memberships {
        Memberships::new(self.db.clone())
    }

    /// Resolves a workspace by id or case-insensitive name. Errors: [`crate::Error::NotFound`].
    pub async fn workspace_id(&self, key: &str) -> crate::Result<uuid::Uuid> {
        // A key that cannot be an id prefix is a name or a full id: one statement, no
        // transaction (the server resolves one per capabilities request).
        if crate::domain::IdPrefix::parse(key).is_none() {
            return self.db.workspace_id_exact(key).await;
        }
        let id = self.db.read(async |tx| tx.workspace_id(key).await).await?;
        Ok(id)
    }
}

/// What an application's admin binary says about itself: its name (help, completions, man
/// pages and the commands messages suggest), version, description, and where its config
/// file lives. Unset fields are accountctl's. Django's `manage.py` belongs to its project
/// the same way.
#[derive(Debug, Clone, Default)]
pub struct Branding {
    /// The command's name; default: the name the binary was started under.
    pub name: Option<String>,
    /// `--version`'s answer; default: accountctl's version.
    pub version: Option<String>,
    /// The description at the top of `--help` and the man page.
    pub about: Option<String>,
    /// The config file read when neither `--config` nor `ACCOUNTCTL_CONFIG` names one;
    /// default: `$XDG_CONFIG_HOME/NAME/config.toml`, else `/etc/NAME/config.toml`.
    pub config_file: Option<std::path::PathBuf>,
}

// The admin binary's branding (issue 23), kept apart from the registry and wiring above.
impl AppBuilder {
    /// The admin binary's name, as help, completions, man pages and messages show it
    /// (default: the name it was started under).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.branding.name = Some(name.into());
        self
    }

    /// The version `--version` and the man page print (e.g. `env!("CARGO_PKG_VERSION")`
    /// of the application).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.branding.version = Some(version.into());
        self
    }

    /// The description `--help` and the man page start with.
    pub fn about(mut self, about: impl Into<String>) -> Self {
        self.branding.about = Some(about.into());
        self
    }

    /// The config file the CLI reads when `--config` and `ACCOUNTCTL_CONFIG` name none
    /// (instead of `$XDG_CONFIG_HOME/NAME/config.toml` and `/etc/NAME/config.toml`).
    pub fn config_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.branding.config_file = Some(path.into());
        self
    }

    /// The branding set so far.
    pub fn branding(&self) -> &Branding {
        &self.branding
    }
}

// Operators' read-only reports (issue 23), kept apart from the registry and wiring above.
impl App {
    /// The audit trail and the user export.
    pub fn reports(&self) -> crate::services::reports::Reports {
        crate::services::reports::Reports::new(self.db.clone())
    }
}

#[cfg(test)]
mod send_check {
    fn is_send<T: Send>(_: T) {}
    #[allow(dead_code)]
    fn check(app: &super::App, db: &crate::store::Database) {
        is_send(app.migrate());
        is_send(db.migrate_with(&Default::default(), "actor", None));
        is_send(app.schema_status());
        is_send(app.missing_hooks());
        is_send(super::App::builder().build());
    }
}
