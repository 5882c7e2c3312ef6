//! The authorization cache: what each user may do in each workspace (the union of the roles
//! they hold there and in the root workspace), cached in memory for a short TTL, and
//! invalidated across processes.
//!
//! The CLI is not the server: dropping its own cache reaches nobody. So the
//! [`AuthzCacheLifecycleHook`] also *publishes* each invalidation through the database
//! (`pg_notify` on PostgreSQL, delivered on commit; a `cache_invalidations` row on SQLite, or
//! on PostgreSQL with the table channel configured), and a server runs an
//! [`InvalidationListener`] to drop what it cached.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::domain::{Capability, DeletionMode, LogoutReason, User, now};
use crate::error::{Error, Result};
use crate::lifecycle::UserLifecycleHook;
use crate::store::authz::AUTHZ_CHANNEL;
use crate::store::{Database, DatabaseUrl, InvalidationChannel, Tx};

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
        let mut tx = db.begin_read_tx().await?;
        let lists = tx.role_capabilities_in(user_id, workspace_id).await?;
        tx.end().await?;
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

    /// Drops everything this process cached: what a listener does after it reconnects,
    /// since it cannot know what it missed.
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
        self.db
            .retrying(|| async {
                let mut tx = self.db.begin().await?;
                tx.publish_authz_invalidation(user.id, reason.as_str(), now()).await?;
                tx.commit().await
            })
            .await
    }

    async fn on_user_deleted(&self, user: &User, mode: DeletionMode, tx: &mut Tx) -> Result<()> {
        // Every mode ends the user's grants; the publication rides the delete transaction,
        // so a rolled-back delete publishes nothing.
        self.cache.invalidate_user(user.id);
        if user.is_trashed() {
            // Purging a trashed user changes no answer: the transaction that trashed it
            // published its invalidation, and a trashed user has held no capability since
            // (every cache computes "nothing" for it), so no other process can hold a
            // stale entry. Publishing again would only cost the sweeper a round trip (and,
            // on PostgreSQL, the commit-time lock every notifying transaction takes).
            return Ok(());
        }
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

/// What an [`InvalidationListener`] hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerEvent {
    /// Drop what is cached about this user.
    Invalidated(Invalidation),
    /// The listener lost its connection and has a new one: invalidations published in
    /// between were not heard, so drop everything cached ([`AuthzCache::invalidate_all`]).
    Resync,
}

/// How long the start-up (and reconnect) check waits for its own test notification.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);
/// The first pause before reconnecting after a lost connection; it doubles up to
/// [`MAX_BACKOFF`], with jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

enum Source {
    Notify {
        /// The listener's own one-connection database handle, on the URL given to it.
        own: Database,
        pool: sqlx::PgPool,
        /// `None` while reconnecting.
        listener: Option<Box<PgListener>>,
        /// Invalidations heard while waiting for the round-trip check.
        pending: VecDeque<Invalidation>,
    },
    Table {
        db: Database,
        last_id: i64,
        pending: VecDeque<Invalidation>,
    },
}

/// Receives invalidations published by any process (the CLI included), from the moment
/// [`InvalidationListener::start`] returns.
///
/// With `NOTIFY` (PostgreSQL's default) it `LISTEN`s on the channel `accountctl_authz_invalidation` over a connection of
/// its own, which must be direct or through a session-mode pooler: a transaction-mode pooler
/// hands `LISTEN` to a server connection the listener does not keep. At start-up it sends
/// itself a test notification and fails unless it comes back. After a lost connection it
/// reconnects with backoff and reports [`ListenerEvent::Resync`]. With the table channel
/// (SQLite, or [`crate::store::InvalidationChannel::Table`]) it polls `cache_invalidations`
/// past the last id seen, riding out database errors with the same backoff.
pub struct InvalidationListener {
    source: Source,
    poll: Duration,
}

impl InvalidationListener {
    /// Starts listening over `db`'s own URL. Errors: [`Error::Unavailable`] when the
    /// database is unreachable or the test notification does not come back.
    pub async fn start(db: &Database) -> Result<Self> {
        Self::start_at(db, db.url()).await
    }

    /// Starts listening over `listen_url` (a direct or session-mode connection to the same
    /// database as `db`; `db` may go through a transaction-mode pooler). Only used with
    /// `NOTIFY`; the table channel polls through `db`.
    ///
    /// Errors: [`Error::Unavailable`] when the database is unreachable or the test
    /// notification does not come back within 5 s (the URL goes through a transaction-mode
    /// pooler, or the engine has no `LISTEN`/`NOTIFY`).
    pub async fn start_at(db: &Database, listen_url: &DatabaseUrl) -> Result<Self> {
        let source = match db.invalidation_channel() {
            InvalidationChannel::Notify => {
                let own = Database::connect(listen_url).await?;
                let Some(pool) = own.pg_pool().cloned() else {
                    return Err(Error::Invalid(format!(
                        "the listener URL {listen_url} is not a PostgreSQL URL"
                    )));
                };
                let mut pending = VecDeque::new();
                let listener = match establish(&pool, &mut pending).await {
                    Ok(listener) => listener,
                    Err(err) => {
                        own.close().await;
                        return Err(err);
                    }
                };
                Source::Notify {
                    own,
                    pool,
                    listener: Some(Box::new(listener)),
                    pending,
                }
            }
            InvalidationChannel::Table => {
                let mut tx = db.begin_read_tx().await?;
                let last_id = tx.last_invalidation_id().await?;
                tx.end().await?;
                Source::Table {
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

    /// Waits for the next event. Connection losses are ridden out inside (reconnecting with
    /// backoff, reported as [`ListenerEvent::Resync`]), so this only fails if the listener
    /// was unusable from the start.
    pub async fn recv(&mut self) -> Result<ListenerEvent> {
        match &mut self.source {
            Source::Notify {
                pool,
                listener,
                pending,
                ..
            } => loop {
                if let Some(next) = pending.pop_front() {
                    return Ok(ListenerEvent::Invalidated(next));
                }
                let Some(active) = listener.as_mut() else {
                    let mut backoff = FIRST_BACKOFF;
                    loop {
                        tokio::time::sleep(jittered(backoff)).await;
                        match establish(pool, pending).await {
                            Ok(fresh) => {
                                *listener = Some(Box::new(fresh));
                                tracing::warn!("invalidation listener reconnected; dropping every cached entry");
                                return Ok(ListenerEvent::Resync);
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "invalidation listener cannot reconnect yet");
                                backoff = (backoff * 2).min(MAX_BACKOFF);
                            }
                        }
                    }
                };
                match active.try_recv().await {
                    Ok(Some(note)) => {
                        if let Some(inv) = parse_payload(note.payload()) {
                            return Ok(ListenerEvent::Invalidated(inv));
                        }
                    }
                    Ok(None) => {
                        tracing::warn!("invalidation listener lost its connection; reconnecting");
                        *listener = None;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "invalidation listener failed; reconnecting");
                        *listener = None;
                    }
                }
            },
            Source::Table { db, last_id, pending } => {
                let mut backoff = FIRST_BACKOFF;
                loop {
                    if let Some(next) = pending.pop_front() {
                        return Ok(ListenerEvent::Invalidated(next));
                    }
                    let polled = async {
                        let mut tx = db.begin_read_tx().await?;
                        let rows = tx.invalidations_after(*last_id).await?;
                        tx.end().await?;
                        Ok::<_, Error>(rows)
                    }
                    .await;
                    match polled {
                        Ok(rows) => {
                            backoff = FIRST_BACKOFF;
                            for (id, user_id, reason) in rows {
                                *last_id = id;
                                pending.push_back(Invalidation { user_id, reason });
                            }
                            if pending.is_empty() {
                                tokio::time::sleep(self.poll).await;
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "invalidation poll failed");
                            tokio::time::sleep(jittered(backoff)).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
        }
    }

    /// Stops listening and ends the listener's connection cleanly.
    pub async fn close(self) {
        if let Source::Notify { own, listener, .. } = self.source {
            if let Some(mut listener) = listener {
                let _ = listener.unlisten_all().await;
            }
            own.close().await;
        }
    }

    /// Applies every event to `cache`, forever (run it as a task). Returns only on an
    /// error [`InvalidationListener::recv`] cannot ride out.
    pub async fn run(mut self, cache: Arc<AuthzCache>) -> Result<()> {
        loop {
            match self.recv().await? {
                ListenerEvent::Invalidated(inv) => {
                    tracing::debug!(user_id = %inv.user_id, reason = %inv.reason, "authz invalidation received");
                    cache.invalidate_user(inv.user_id);
                }
                ListenerEvent::Resync => cache.invalidate_all(),
            }
        }
    }
}

/// A payload on the channel: an invalidation, or `None` for a listener's test notification
/// (or anything else this version does not understand, which is logged).
fn parse_payload(payload: &str) -> Option<Invalidation> {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(v) if v.get("probe").is_some() => None,
        Ok(v) => match serde_json::from_value(v) {
            Ok(inv) => Some(inv),
            Err(e) => {
                tracing::warn!(error = %e, payload, "ignoring a malformed invalidation payload");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, payload, "ignoring a malformed invalidation payload");
            None
        }
    }
}

/// Opens a listening connection and proves it hears: `LISTEN`, then a test notification
/// that must come back within [`ROUND_TRIP_TIMEOUT`]. Invalidations heard meanwhile go to
/// `pending`.
async fn establish(pool: &sqlx::PgPool, pending: &mut VecDeque<Invalidation>) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(AUTHZ_CHANNEL).await?;
    let probe = serde_json::json!({ "probe": Uuid::new_v4() }).to_string();
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(AUTHZ_CHANNEL)
        .bind(&probe)
        .execute(&mut listener)
        .await?;
    let heard = tokio::time::timeout(ROUND_TRIP_TIMEOUT, async {
        loop {
            match listener.try_recv().await? {
                Some(note) if note.payload() == probe => return Ok::<bool, Error>(true),
                Some(note) => pending.extend(parse_payload(note.payload())),
                None => return Ok(false),
            }
        }
    })
    .await;
    match heard {
        Ok(Ok(true)) => Ok(listener),
        Ok(Err(err)) => Err(err),
        Ok(Ok(false)) | Err(_) => Err(Error::Unavailable(format!(
            "the invalidation listener's test notification did not come back within {}s: give the listener a direct or session-mode connection (a transaction-mode pooler does not keep LISTEN), or publish invalidations through the table (invalidations = \"table\")",
            ROUND_TRIP_TIMEOUT.as_secs()
        ))),
    }
}

/// `base` scaled by a random factor in [0.5, 1].
fn jittered(base: Duration) -> Duration {
    use rand::RngExt as _;
    base.mul_f64(rand::rng().random_range(0.5..=1.0))
}
