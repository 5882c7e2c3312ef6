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
        let lists = db.role_capabilities_in(user_id, workspace_id).await?;
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
#[non_exhaustive]
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
/// How far back (by the publisher's `created_at`) the table channel's listener reads again on
/// every poll: a publishing transaction that commits within this time of writing its row is
/// never missed, however its id compares with rows already read. Longer-running publishers
/// (and clocks further apart than this) can still be missed.
const TABLE_LOOK_BACK: Duration = Duration::from_secs(120);
/// The first pause before reconnecting after a lost connection; it doubles up to
/// [`MAX_BACKOFF`], with jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a listener polling the table reads the invalidation channel the database
/// records, to follow a `migrate --invalidations notify` (a listener on `NOTIFY` hears of a
/// change at once, by a notification the change sends).
pub const CHANNEL_CHECK: Duration = Duration::from_secs(5);

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
        /// Ids read within the look-back window, with when they were read: a row the
        /// look-back reads again is not delivered twice.
        seen: HashMap<i64, Instant>,
        pending: VecDeque<Invalidation>,
        /// When the recorded channel was last read (PostgreSQL only: SQLite has no other).
        checked_at: Instant,
    },
}

impl Source {
    /// Starts listening on `channel`: `LISTEN` over `listen_url`, or the table through `db`.
    async fn open(db: &Database, listen_url: &DatabaseUrl, channel: InvalidationChannel) -> Result<Self> {
        Ok(match channel {
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
                // What the look-back would read again was published before the start.
                let since = now() - chrono::Duration::from_std(TABLE_LOOK_BACK).unwrap_or_default();
                let started = Instant::now();
                let seen = tx
                    .invalidations_since(since, last_id)
                    .await?
                    .into_iter()
                    .map(|(id, _, _)| (id, started))
                    .collect();
                tx.end().await?;
                Source::Table {
                    db: db.clone(),
                    last_id,
                    seen,
                    pending: VecDeque::new(),
                    checked_at: started,
                }
            }
        })
    }

    fn channel(&self) -> InvalidationChannel {
        match self {
            Self::Notify { .. } => InvalidationChannel::Notify,
            Self::Table { .. } => InvalidationChannel::Table,
        }
    }

    /// Ends the source's own connection cleanly (the table source has none).
    async fn close(self) {
        if let Source::Notify { own, listener, .. } = self {
            if let Some(mut listener) = listener {
                let _ = listener.unlisten_all().await;
            }
            own.close().await;
        }
    }
}

/// What one turn of [`InvalidationListener::recv`] found.
enum Step {
    Event(ListenerEvent),
    /// The database records another channel: listen there.
    Switch,
}

/// Receives invalidations published by any process (the CLI included), from the moment
/// [`InvalidationListener::start`] returns, on the channel the database records (see
/// [`InvalidationChannel`]).
///
/// With `NOTIFY` (PostgreSQL's default) it `LISTEN`s on the channel `accountctl_authz_invalidation` over a connection of
/// its own, which must be direct or through a session-mode pooler: a transaction-mode pooler
/// hands `LISTEN` to a server connection the listener does not keep. At start-up it sends
/// itself a test notification and fails unless it comes back. After a lost connection it
/// reconnects with backoff and reports [`ListenerEvent::Resync`]. With the table channel
/// (SQLite, or a PostgreSQL database that records `table`) it polls `cache_invalidations`
/// past the last id seen and, for rows whose transaction committed after a higher id was
/// read, again over the last two minutes (by `created_at`), delivering each id once; it
/// rides out database errors with the same backoff.
///
/// When `migrate --invalidations` changes the recorded channel, the listener follows: on
/// `NOTIFY` at once (the change notifies it), on the table within [`CHANNEL_CHECK`]; it
/// starts listening on the new channel, then reports [`ListenerEvent::Resync`], since what
/// was published in between may not have been heard.
pub struct InvalidationListener {
    db: Database,
    listen_url: DatabaseUrl,
    source: Source,
    poll: Duration,
}

impl InvalidationListener {
    /// Starts listening over `db`'s own URL. Errors: [`Error::Unavailable`] when the
    /// database is unreachable or the test notification does not come back;
    /// [`Error::Invalid`] when `db` asks for another invalidation channel than the database
    /// records.
    pub async fn start(db: &Database) -> Result<Self> {
        Self::start_at(db, db.url()).await
    }

    /// Starts listening over `listen_url` (a direct or session-mode connection to the same
    /// database as `db`; `db` may go through a transaction-mode pooler). Only used with
    /// `NOTIFY`; the table channel polls through `db`.
    ///
    /// Errors: [`Error::Invalid`] when `db` asks for another invalidation channel than the
    /// database records ([`Database::check_invalidation_channel`]); [`Error::Unavailable`]
    /// when the database is unreachable or the test notification does not come back within
    /// 5 s (the URL goes through a transaction-mode pooler, or the engine has no
    /// `LISTEN`/`NOTIFY`).
    pub async fn start_at(db: &Database, listen_url: &DatabaseUrl) -> Result<Self> {
        let channel = db.check_invalidation_channel().await?;
        let source = Source::open(db, listen_url, channel).await?;
        Ok(Self {
            db: db.clone(),
            listen_url: listen_url.clone(),
            source,
            poll: Duration::from_millis(250),
        })
    }

    /// The channel the listener listens on now.
    pub fn channel(&self) -> InvalidationChannel {
        self.source.channel()
    }

    /// Waits for the next event. Connection losses are ridden out inside (reconnecting with
    /// backoff, reported as [`ListenerEvent::Resync`]), and so is a change of the recorded
    /// channel, so this only fails if the listener was unusable from the start.
    pub async fn recv(&mut self) -> Result<ListenerEvent> {
        match self.next().await? {
            Step::Event(event) => Ok(event),
            Step::Switch => {
                self.switch().await;
                Ok(ListenerEvent::Resync)
            }
        }
    }

    /// Listens on the channel the database records now (retrying with backoff until it
    /// can), and closes the old source.
    async fn switch(&mut self) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let opened = async {
                let channel = self
                    .db
                    .recorded_invalidation_channel()
                    .await?
                    .unwrap_or(self.source.channel());
                if let Some(requested) = self.db.requested_invalidation_channel()
                    && requested != channel
                {
                    tracing::error!(requested = %requested, recorded = %channel, "the database's invalidation channel changed: this process's writes are refused until its setting matches");
                }
                if channel == self.source.channel() {
                    return Ok(None);
                }
                Source::open(&self.db, &self.listen_url, channel).await.map(Some)
            }
            .await;
            match opened {
                Ok(fresh) => {
                    if let Some(fresh) = fresh {
                        tracing::warn!(channel = %fresh.channel(), "the database's invalidation channel changed; listening there and dropping every cached entry");
                        let old = std::mem::replace(&mut self.source, fresh);
                        old.close().await;
                    }
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "invalidation listener cannot switch channels yet");
                    tokio::time::sleep(jittered(backoff)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn next(&mut self) -> Result<Step> {
        let poll = self.poll;
        match &mut self.source {
            Source::Notify {
                pool,
                listener,
                pending,
                ..
            } => loop {
                if let Some(next) = pending.pop_front() {
                    return Ok(Step::Event(ListenerEvent::Invalidated(next)));
                }
                let Some(active) = listener.as_mut() else {
                    let mut backoff = FIRST_BACKOFF;
                    loop {
                        tokio::time::sleep(jittered(backoff)).await;
                        match establish(pool, pending).await {
                            Ok(fresh) => {
                                *listener = Some(Box::new(fresh));
                                tracing::warn!("invalidation listener reconnected; dropping every cached entry");
                                // A change of channel may have been missed meanwhile.
                                if let Ok(Some(InvalidationChannel::Table)) =
                                    self.db.recorded_invalidation_channel().await
                                {
                                    return Ok(Step::Switch);
                                }
                                return Ok(Step::Event(ListenerEvent::Resync));
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
                        if channel_change(note.payload()).is_some_and(|c| c != InvalidationChannel::Notify) {
                            return Ok(Step::Switch);
                        }
                        if let Some(inv) = parse_payload(note.payload()) {
                            return Ok(Step::Event(ListenerEvent::Invalidated(inv)));
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
            Source::Table {
                db,
                last_id,
                seen,
                pending,
                checked_at,
            } => {
                let mut backoff = FIRST_BACKOFF;
                loop {
                    if let Some(next) = pending.pop_front() {
                        return Ok(Step::Event(ListenerEvent::Invalidated(next)));
                    }
                    let check =
                        db.backend() == crate::store::Backend::Postgres && checked_at.elapsed() >= CHANNEL_CHECK;
                    let polled = async {
                        let mut tx = db.begin_read_tx().await?;
                        // Ids are handed out at insert, rows become visible at commit: with
                        // concurrent writers a lower id can commit after a higher one was
                        // read. Rows past the last id, then the window's rows below it.
                        let mut rows = tx.invalidations_after(*last_id).await?;
                        let since = now() - chrono::Duration::from_std(TABLE_LOOK_BACK).unwrap_or_default();
                        rows.extend(tx.invalidations_since(since, *last_id).await?);
                        let recorded = if check {
                            tx.recorded_invalidations().await?
                        } else {
                            None
                        };
                        tx.end().await?;
                        Ok::<_, Error>((rows, recorded))
                    }
                    .await;
                    match polled {
                        Ok((rows, recorded)) => {
                            backoff = FIRST_BACKOFF;
                            let read_at = Instant::now();
                            // Forget ids once the look-back can no longer return them.
                            seen.retain(|_, at| read_at.duration_since(*at) < 2 * TABLE_LOOK_BACK);
                            for (id, user_id, reason) in rows {
                                *last_id = (*last_id).max(id);
                                if seen.insert(id, read_at).is_none() {
                                    pending.push_back(Invalidation { user_id, reason });
                                }
                            }
                            if recorded == Some(InvalidationChannel::Notify) {
                                // What was published through the table so far is delivered
                                // first; the next poll checks again.
                                if pending.is_empty() {
                                    return Ok(Step::Switch);
                                }
                            } else if check {
                                *checked_at = read_at;
                            }
                            if pending.is_empty() {
                                tokio::time::sleep(poll).await;
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
        self.source.close().await;
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

/// The channel named by a change-of-channel notification (`{"invalidations": "table"}`,
/// sent by `migrate --invalidations`), if `payload` is one.
fn channel_change(payload: &str) -> Option<InvalidationChannel> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    value.get("invalidations")?.as_str()?.parse().ok()
}

/// A payload on the channel: an invalidation, or `None` for a listener's test notification,
/// a change of channel (see [`channel_change`]), or anything else this version does not
/// understand (which is logged).
fn parse_payload(payload: &str) -> Option<Invalidation> {
    match serde_json::from_str::<serde_json::Value>(payload) {
        Ok(v) if v.get("probe").is_some() || v.get("invalidations").is_some() => None,
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
            "the invalidation listener's test notification did not come back within {}s: give the listener a direct or session-mode connection (a transaction-mode pooler does not keep LISTEN), or have the database carry invalidations through its table (`migrate --invalidations table`)",
            ROUND_TRIP_TIMEOUT.as_secs()
        ))),
    }
}

/// `base` scaled by a random factor in [0.5, 1].
fn jittered(base: Duration) -> Duration {
    use rand::RngExt as _;
    base.mul_f64(rand::rng().random_range(0.5..=1.0))
}
