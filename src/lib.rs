//! accountctl's shared library: the account model, the stores for PostgreSQL and SQLite, the
//! user-lifecycle hook trait and dispatcher, and the services. The `accountctl` binary is a
//! thin CLI over it; an application server links it and fires the same hooks.
//!
//! Layout (dependencies point inwards): [`domain`] (plain types and rules), `store` (the
//! transaction handle and SQL for both backends, crate-private; hooks reach it through
//! [`db::Tx`]), [`lifecycle`] (hook trait, dispatcher), [`services`] (operations, each beside
//! the hook for the work it owns), [`app`] (wiring), [`cli`] (the admin command line). The
//! repository's `docs/architecture.md` and `docs/hooks.md` describe both at length.
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
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
        Backend, Database, DatabaseUrl, FromValue, MigrateReport, Migration, Migrations, MissingHook, Row,
        SchemaStatus, Tx, Value,
    };
}
pub use error::{Error, Result};
