//! accountctl: the account model of an application (users and the persons behind them,
//! passports, workspaces with roles, invites, sessions, external users, home folders), its
//! user-lifecycle hooks, and the services that change accounts through them, on SQLite or
//! PostgreSQL. The application server links this library; its admin binary is the same
//! library's command line ([`cli`]), so a change made from a shell fires exactly the hooks the
//! server would have fired.
//!
//! # Wiring an application
//!
//! Build one [`App`] with the database, the settings and the application's own hooks, merge
//! handlers, migrations and personal-data declarations. The server uses its services; the
//! admin binary is three lines.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use accountctl::app::{AppBuilder, PersonalData};
//! use accountctl::db::{Database, Migration, Migrations, Tx};
//! use accountctl::domain::{DeletionMode, LogoutReason, User};
//! use accountctl::lifecycle::UserLifecycleHook;
//! use accountctl::{App, Error, Result};
//!
//! /// Gives every internal user a calendar; refuses to delete users on legal hold.
//! struct CalendarHook {
//!     db: Database,
//! }
//!
//! #[async_trait::async_trait]
//! impl UserLifecycleHook for CalendarHook {
//!     fn name(&self) -> &'static str {
//!         "calendar"
//!     }
//!     async fn on_user_created(&self, user: &User) -> Result<()> {
//!         if user.is_external {
//!             return Ok(());
//!         }
//!         let mut tx = self.db.begin().await?;
//!         tx.execute(
//!             "INSERT INTO app_calendars (id, user_id, name) SELECT $1, $2, 'Default' \
//!              WHERE NOT EXISTS (SELECT 1 FROM app_calendars WHERE user_id = $2)",
//!             &[uuid::Uuid::now_v7().into(), user.id.into()],
//!         )
//!         .await?;
//!         tx.commit().await
//!     }
//!     async fn on_user_login(&self, user: &User) -> Result<()> {
//!         self.on_user_created(user).await // idempotent: provisions what is missing
//!     }
//!     async fn on_user_logout(&self, _: &User, _: LogoutReason) -> Result<()> {
//!         Ok(())
//!     }
//!     async fn on_user_deleted(&self, user: &User, _: DeletionMode, tx: &mut Tx) -> Result<()> {
//!         if user.username.starts_with("hold-") {
//!             return Err(Error::Refused("the user is on legal hold".into())); // a veto: exit 4
//!         }
//!         tx.execute("DELETE FROM app_calendars WHERE user_id = $1", &[user.id.into()]).await?;
//!         Ok(())
//!     }
//! }
//!
//! /// The application's wiring, shared by its server and its admin binary.
//! fn wire(builder: AppBuilder) -> AppBuilder {
//!     builder
//!         .migrations(Migrations::new(
//!             vec![Migration { version: 1, description: "calendars".into(), sql: "CREATE TABLE app_calendars (…)".into() }],
//!             vec![Migration { version: 1, description: "calendars".into(), sql: "CREATE TABLE app_calendars (…)".into() }],
//!         ))
//!         .hook_with(|db| Arc::new(CalendarHook { db: db.clone() }))
//!         .personal_data(PersonalData::table("app_calendars", "user_id").columns(&["name"]))
//! }
//!
//! // The admin binary (src/bin/myapp-admin.rs): every accountctl command, with these hooks.
//! fn main() -> std::process::ExitCode {
//!     accountctl::cli::run(wire(App::builder()))
//! }
//!
//! // The server: the same wiring, its own database handle.
//! async fn server() -> Result<()> {
//!     let app = wire(App::builder().database_url("postgres://app@db/accounts")).build().await?;
//!     app.ensure_schema_current().await?;
//!     let outcome = app.auth().login("alice", &accountctl::password::Secret::new("…".into()), true).await?;
//!     # let _ = outcome;
//!     Ok(())
//! }
//! ```
//!
//! `migrate` (and `bootstrap`) record the names of the hooks and merge handlers the binary
//! registers; a binary lacking a recorded one (the plain `accountctl` pointed at this
//! application's database) may read but refuses every write. `examples/app_admin` is a
//! complete application admin binary.
//!
//! # Layout
//!
//! Dependencies point inwards: [`domain`] (plain types and rules, no SQL), the store (the
//! transaction handle and the SQL for both backends, crate-private but for [`db`]),
//! [`lifecycle`] (hook trait and dispatcher), [`services`] (operations, each beside the hook
//! for the work it owns), [`app`] (the wiring), [`cli`] (the command line over the services).
//! The repository's `docs/architecture.md` describes the layout, the two backends, the
//! migration runner and the hook registry; `docs/hooks.md` the user-lifecycle hook contract.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
/// Behind the default `cli` feature: without it (`default-features = false`) the library
/// builds alone, without the command line's crates (clap, dialoguer, indicatif, comfy-table,
/// lettre, …).
#[cfg(feature = "cli")]
pub mod cli;
pub mod domain;
pub mod error;
pub mod lifecycle;
pub mod password;
pub mod services;
pub(crate) mod store;
pub mod tokens;

pub use app::{App, Config};

/// The database handle and the transaction API that hooks and merge handlers use: a pool
/// ([`db::Database`]), an open transaction ([`db::Tx`]) with bound-parameter queries, and the
/// values and rows they exchange.
pub mod db {
    pub use crate::store::{
        Backend, Database, DatabaseUrl, FromValue, InvalidationChannel, LockHolder, LockWait, MigrateReport, Migration,
        Migrations, MissingHook, ReadTx, RegistryKind, Row, SchemaStatus, Tx, Value, WRITE_ATTEMPTS,
    };
}
pub use error::{Error, Result};

/// The `async-trait` crate the hook and merge-handler traits are written with: implement
/// them with `#[accountctl::async_trait]`, so an application need not match its version.
pub use async_trait::async_trait;
/// The `sqlx` crate (its PostgreSQL pool appears in [`db::Database::from_pg_pool`]):
/// build a pool with `accountctl::sqlx`, so an application need not match its version.
pub use sqlx;
