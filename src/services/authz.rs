//! The authorization cache: what each user may do in each workspace (the union of the roles
//! they hold there and in the root workspace), cached in memory for a short TTL, and
//! invalidated across processes.
//!
//! The CLI is not the server: dropping its own cache reaches nobody. So the
//! [`AuthzCacheLifecycleHook`] also *publishes* each invalidation through the database
//! (`pg_notify` on PostgreSQL, delivered on commit; a `cache_invalidations` row on SQLite),
//! and a server runs an [`InvalidationListener`] to drop what it cached.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::domain::{Capability, DeletionMode, LogoutReason, User, now};
use crate::error::{Error, Result};
use crate::lifecycle::UserLifecycleHook;
use crate::store::authz::AUTHZ_CHANNEL;
use crate::store::{Database, Tx};

/// How long a cached capability set is trusted without an invalidation: 30 s, the TTL of the
/// OxiCloud user-lifecycle hook design's authorization cache. It bounds how long a missed
/// invalidation can let a revoked grant live on.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// A user's effective capabilities, shared between the cache and its readers.
pub type CapabilitySet = Arc<Vec<Capability>>;

/// One user's cached capability sets by workspace id, each with the time it was read.
type PerWorkspace = HashMap<Uuid, (Instant, CapabilitySet)>;

/// In-memory capability cache of one process, per (user, workspace).
#[derive(Debug)]
pub struct AuthzCache {
    ttl: Duration,
    entries: RwLock<HashMap<Uuid, PerWorkspace>>,
}

impl Default for AuthzCache {
    fn default() -> Self {
        Self::new(DEFAULT_TTL)
    }
}

impl AuthzCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// What the user may do in the workspace: the union of the capabilities of the roles the
    /// user holds in it, and of those held in the root workspace, which oversees every
    /// workspace (Fireback's workspace model: the root workspace's `root` role carries
    /// `root.*`). The instance role (`admin`) administers accounts and grants no workspace
    /// capability by itself. A disabled or trashed user may do nothing. From the cache when
    /// fresh, else from the database.
    pub async fn capabilities(&self, db: &Database, user_id: Uuid, workspace_id: Uuid) -> Result<CapabilitySet> {
        if let Some(hit) = self.cached(user_id, workspace_id) {
            return Ok(hit);
        }
        let mut tx = db.begin_read().await?;
        let lists = tx.role_capabilities_in(user_id, workspace_id).await?;
        drop(tx);
        let mut caps: Vec<Capability> = Vec::new();
        for list in lists {
            let parsed: Vec<Capability> = serde_json::from_str(&list)?;
            for cap in parsed {
                if !caps.contains(&cap) {
                    caps.push(cap);
                }
            }
        }
        let caps = Arc::new(caps);
        if let Ok(mut entries) = self.entries.write() {
            entries
                .entry(user_id)
                .or_default()
                .insert(workspace_id, (Instant::now(), caps.clone()));
        }
        Ok(caps)
    }

    /// Whether the user may do `wanted` in the workspace (a capability grants it exactly or,
    /// as `x.*`, by prefix).
    pub async fn allows(&self, db: &Database, user_id: Uuid, workspace_id: Uuid, wanted: &str) -> Result<bool> {
        let caps = self.capabilities(db, user_id, workspace_id).await?;
        Ok(caps.iter().any(|c| c.grants(wanted)))
    }

    /// A fresh cached entry, if any.
    pub fn cached(&self, user_id: Uuid, workspace_id: Uuid) -> Option<CapabilitySet> {
        let entries = self.entries.read().ok()?;
        let (at, caps) = entries.get(&user_id)?.get(&workspace_id)?;
        (at.elapsed() < self.ttl).then(|| caps.clone())
    }

    /// Drops what this process cached about the user, in every workspace.
    pub fn invalidate_user(&self, user_id: Uuid) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(&user_id);
        }
    }

    /// Drops everything this process cached (a listener that may have missed invalidations
    /// calls it).
    pub fn invalidate_all(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

/// Invalidates the cache on logout and delete, locally and for every other process (the
/// publication rides the transaction, so a rolled-back delete publishes nothing). Registered
/// third; name `authz_cache`.
pub struct AuthzCacheLifecycleHook {
    cache: Arc<AuthzCache>,
    db: Database,
}

impl AuthzCacheLifecycleHook {
    pub(crate) fn new(cache: Arc<AuthzCache>, db: Database) -> Self {
        Self { cache, db }
    }
}

#[async_trait::async_trait]
impl UserLifecycleHook for AuthzCacheLifecycleHook {
    fn name(&self) -> &'static str {
        "authz_cache"
    }

    async fn on_user_created(&self, _user: &User) -> Result<()> {
        // No stale entry can exist for a user that did not exist.
        Ok(())
    }

    async fn on_user_login(&self, _user: &User) -> Result<()> {
        Ok(())
    }

    async fn on_user_logout(&self, user: &User, reason: LogoutReason) -> Result<()> {
        self.cache.invalidate_user(user.id);
        let mut tx = self.db.begin().await?;
        tx.publish_authz_invalidation(user.id, reason.as_str(), now()).await?;
        tx.commit().await
    }

    async fn on_user_deleted(&self, user: &User, mode: DeletionMode, tx: &mut Tx) -> Result<()> {
        // Every mode ends the user's grants; the publication rides the delete transaction,
        // so a rolled-back delete publishes nothing.
        self.cache.invalidate_user(user.id);
        tx.publish_authz_invalidation(user.id, mode.as_str(), now()).await
    }
}

/// One published invalidation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Invalidation {
    /// The user whose cached capabilities are stale.
    pub user_id: Uuid,
    /// The logout reason or deletion mode that caused it (`admin_revoked`, `gdpr_purge`…).
    pub reason: String,
}

enum Source {
    Postgres(Box<PgListener>),
    Sqlite {
        db: Database,
        last_id: i64,
        pending: VecDeque<Invalidation>,
    },
}

/// Receives invalidations published by any process (the CLI included). On PostgreSQL it
/// `LISTEN`s on the channel `accountctl_authz_invalidation`; on SQLite it polls
/// `cache_invalidations` past the last id seen. Only invalidations published after [`InvalidationListener::start`] are received.
pub struct InvalidationListener {
    source: Source,
    poll: Duration,
}

impl InvalidationListener {
    /// Starts listening. Errors: [`Error::Unavailable`] when the database is unreachable.
    pub async fn start(db: &Database) -> Result<Self> {
        let source = match db.pg_pool() {
            Some(pool) => {
                let mut listener = PgListener::connect_with(pool).await?;
                listener.listen(AUTHZ_CHANNEL).await?;
                Source::Postgres(Box::new(listener))
            }
            None => {
                let mut tx = db.begin_read().await?;
                let last_id = tx.last_invalidation_id().await?;
                Source::Sqlite {
                    db: db.clone(),
                    last_id,
                    pending: VecDeque::new(),
                }
            }
        };
        Ok(Self {
            source,
            poll: Duration::from_millis(250),
        })
    }

    /// Waits for the next invalidation.
    pub async fn recv(&mut self) -> Result<Invalidation> {
        match &mut self.source {
            Source::Postgres(listener) => {
                let note = listener.recv().await?;
                serde_json::from_str(note.payload())
                    .map_err(|e| Error::Internal(format!("malformed invalidation payload: {e}")))
            }
            Source::Sqlite { db, last_id, pending } => loop {
                if let Some(next) = pending.pop_front() {
                    return Ok(next);
                }
                let mut tx = db.begin_read().await?;
                let rows = tx.invalidations_after(*last_id).await?;
                drop(tx);
                for (id, user_id, reason) in rows {
                    *last_id = id;
                    pending.push_back(Invalidation { user_id, reason });
                }
                if pending.is_empty() {
                    tokio::time::sleep(self.poll).await;
                }
            },
        }
    }

    /// Applies every invalidation to `cache` until an error occurs (run it as a task).
    pub async fn run(mut self, cache: Arc<AuthzCache>) -> Result<()> {
        loop {
            let inv = self.recv().await?;
            tracing::debug!(user_id = %inv.user_id, reason = %inv.reason, "authz invalidation received");
            cache.invalidate_user(inv.user_id);
        }
    }
}
