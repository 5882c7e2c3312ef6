//! The store interface: [`Database`] (a pool on one of the two backends) and [`Tx`], the
//! backend-neutral handle to an open transaction that services and lifecycle hooks share, so
//! a hook's writes commit or roll back with the operation that fired it (the `tx` argument
//! of `on_user_deleted` in the OxiCloud user-lifecycle hook design).
//!
//! Every store operation is a method on [`Tx`], grouped by noun in the submodules
//! (`users.rs`, `sessions.rs`, …). A method's body is written once and runs on either native
//! driver through the crate-private `on_conn!` macro: it expands the body once per backend,
//! so each copy is type-checked against its own driver. sqlx's `Any` driver is not used: it
//! cannot decode a SQLite `BOOLEAN` column and has no uuid or timestamp types. SQL that is
//! the same in both dialects is written once; where the dialects differ, the method picks
//! the text by [`Tx::backend`].
//!
//! Values cross the boundary as: uuids through [`DbId`] (PostgreSQL `uuid`, SQLite
//! hyphenated `TEXT`), timestamps as `chrono::DateTime<Utc>` (`timestamptz` / RFC 3339
//! `TEXT`), booleans as `bool` (`boolean` / `INTEGER` 0–1).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{ConnectOptions as _, Postgres, Sqlite};

use crate::error::{Error, Result};

/// Runs `$body` with `$c` bound to the transaction's connection, once per backend: the body
/// is written once and type-checked against each native driver.
macro_rules! on_conn {
    ($tx:expr, |$c:ident| $body:expr) => {{
        // Audit rows waiting for a statement to ride with are written first, so every
        // statement sees the transaction's writes in the order they were made.
        $tx.flush_pending().await?;
        match &mut $tx.inner {
            $crate::store::TxInner::Sqlite(t) => {
                let $c: &mut sqlx::SqliteConnection = &mut *t;
                $body
            }
            $crate::store::TxInner::Postgres(t) => {
                let $c: &mut sqlx::PgConnection = &mut *t;
                $body
            }
        }
    }};
}

/// Runs `$body` with `$p` bound to the pool of either backend (`&SqlitePool` /
/// `&PgPool`): one statement on its own, outside any transaction, which is atomic by itself.
/// For the hot single-statement reads of a server's request path (a `BEGIN`/`ROLLBACK`
/// pair would triple their round trips).
macro_rules! on_pool {
    ($db:expr, |$p:ident| $body:expr) => {{
        match &$db.pool {
            $crate::store::Pool::Sqlite(pool) => {
                let $p: &sqlx::SqlitePool = pool;
                $body
            }
            $crate::store::Pool::Postgres(pool) => {
                let $p: &sqlx::PgPool = pool;
                $body
            }
        }
    }};
}

pub(crate) mod audit;
pub mod authz;
pub mod batch;
pub mod erasure;
mod folders;
mod identities;
pub mod invites;
mod listing;
mod locks;
mod merge;
mod migrate;
mod multihost;
pub(crate) mod owed;
mod query;
mod registry;
pub mod reports;
mod sessions;
mod users;
pub mod workspaces;

pub use crate::domain::{UserFilter, UserRef};
pub use locks::{LockHolder, LockWait};
pub(crate) use migrate::MigrationPlan;
pub use migrate::{MigrateReport, Migration, Migrations, SchemaStatus};
pub use query::{FromValue, ReadTx, Row, Value};
pub(crate) use registry::RegistrySet;
pub use registry::{MissingHook, RegistryKind};
pub(crate) use users::NewUserRecord;

/// Which database engine a [`Database`] talks to. Deliberately exhaustive: code that
/// switches SQL dialects on it should fail to compile, not fall into a wildcard arm, when an
/// engine is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (`sqlite:` URLs): the embedded default, one file, WAL mode.
    Sqlite,
    /// PostgreSQL (`postgres:`/`postgresql:` URLs): the shared production database.
    Postgres,
}

/// A database URL whose `Debug` and `Display` never show the password (lldap's habit), so it
/// can be logged and put in error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The default when neither `--database-url` nor `DATABASE_URL` is given: a SQLite file
    /// in the working directory. [`Database::connect`] creates it when missing; the CLI
    /// lets only `migrate` and `bootstrap` do so.
    pub const DEFAULT: &'static str = "sqlite://accountctl.db";

    /// Accepts `sqlite:` and `postgres:`/`postgresql:` URLs. Errors: [`Error::Invalid`].
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let scheme = text.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" | "postgres" | "postgresql" => Ok(Self(text.to_owned())),
            // The value is not echoed: it may be a libpq `key=value` string with a
            // password, or a bare password (a `database_url_file` holding only that).
            _ => Err(Error::Invalid(
                "the database URL is not a sqlite://PATH or postgres://USER@HOST/DB URL (its value is not shown: it may hold a password)".into(),
            )),
        }
    }

    /// Whether the URL carries a secret (a password in its user part or its query).
    pub fn has_secret(&self) -> bool {
        !self.secrets().is_empty()
    }

    /// The secrets this URL's text may carry, longest first: the user part's password (all
    /// of it and each piece between URL delimiters, since a parser that misreads an
    /// unescaped `/` or `,` in a password echoes a piece of it, as `invalid port "S3c"`),
    /// the values of query or libpq `key=value` parameters whose name says secret, and the
    /// whole text when it is no URL at all (a bare password).
    fn secrets(&self) -> Vec<String> {
        fn secret_key(key: &str) -> bool {
            let key = key.to_ascii_lowercase();
            ["password", "secret", "token"].iter().any(|s| key.contains(s))
        }
        let text = self.0.as_str();
        let mut found: Vec<String> = Vec::new();
        let mut add = |value: &str| {
            // As given, and without the quotes of a libpq `password='…'` (a password may
            // start or end with a quote of its own).
            let unquoted = value.trim_matches(|c| c == '\'' || c == '"');
            for whole in [value, unquoted] {
                if whole.is_empty() {
                    continue;
                }
                found.push(whole.to_owned());
                // As a driver decodes it: percent escapes, and in a query `+` as a space too.
                for plus_is_space in [false, true] {
                    if let Some(decoded) = percent_decode(whole, plus_is_space) {
                        found.push(decoded);
                    }
                }
                for piece in whole.split([':', '/', ',', '?', '#', '@', '&', '=', ';']) {
                    if !piece.is_empty() {
                        found.push(piece.to_owned());
                    }
                }
            }
        };
        match text.split_once("://") {
            Some((_, rest)) => {
                if let Some((userinfo, _)) = rest.rsplit_once('@')
                    && let Some((_, password)) = userinfo.split_once(':')
                {
                    add(password);
                }
                if let Some((_, query)) = rest.split_once('?') {
                    for pair in query.split('&') {
                        if let Some((k, v)) = pair.split_once('=')
                            && secret_key(k)
                        {
                            add(v);
                        }
                    }
                }
            }
            None => {
                // libpq's `key=value key=value` form, or no URL at all.
                let mut any_pair = false;
                for pair in text.split_whitespace() {
                    if let Some((k, v)) = pair.split_once('=') {
                        any_pair = true;
                        if secret_key(k) {
                            add(v);
                        }
                    }
                }
                if !any_pair && !text.starts_with("sqlite:") {
                    add(text);
                }
            }
        }
        found.sort_by_key(|s| std::cmp::Reverse(s.len()));
        found.dedup();
        found
    }

    /// `message` with every secret of this URL replaced by `***`: pieces of three or more
    /// characters wherever they appear, shorter ones where they appear quoted (as a parser
    /// quotes the value it refuses). Where secrets overlap (two readings of a malformed URL)
    /// everything either covers is replaced. Every error that may carry text from the URL
    /// goes through it.
    pub fn scrub(&self, message: &str) -> String {
        let mut found: Vec<(usize, usize)> = Vec::new();
        for secret in self.secrets() {
            let (needle, quote) = if secret.chars().count() >= 3 {
                (secret, 0)
            } else {
                (format!("\"{secret}\""), 1)
            };
            for (at, _) in message.match_indices(&needle) {
                found.push((at + quote, at + needle.len() - quote));
            }
        }
        hide(message, found)
    }

    /// [`DatabaseUrl::scrub`] applied to an error's message, keeping its kind (and exit code).
    fn scrub_error(&self, err: Error) -> Error {
        match err {
            Error::Invalid(m) => Error::Invalid(self.scrub(&m)),
            Error::Unavailable(m) => Error::Unavailable(self.scrub(&m)),
            Error::Internal(m) => Error::Internal(self.scrub(&m)),
            Error::Database(e) => {
                let text = e.to_string();
                let scrubbed = self.scrub(&text);
                if scrubbed == text {
                    Error::Database(e)
                } else {
                    Error::Internal(format!("database error: {scrubbed}"))
                }
            }
            other => other,
        }
    }

    /// The backend the URL's scheme names.
    pub fn backend(&self) -> Backend {
        if self.0.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// The URL itself, password included: pass it to a driver, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with every secret replaced by `***`: the password of `user:pass@`, and the
    /// query parameters that carry one (`password`, `sslpassword`, and any other whose name
    /// contains "password", "secret" or "token"), which libpq and sqlx accept as well.
    ///
    /// Whatever the text's shape, no secret [`DatabaseUrl::secrets`] finds in it is shown: a
    /// malformed URL (a password with an unescaped `?`, `#` or `/`, which a URL parser reads
    /// as the end of the host) is redacted by hand, and every secret left in the result is
    /// replaced last.
    fn redacted(&self) -> String {
        self.scrub(&self.redacted_by_shape())
    }

    /// [`DatabaseUrl::redacted`] before its last pass.
    fn redacted_by_shape(&self) -> String {
        fn secret_key(key: &str) -> bool {
            let key = key.to_ascii_lowercase();
            ["password", "secret", "token"].iter().any(|s| key.contains(s))
        }
        // An `@` after the host (in the path, query or fragment, as the `url` crate reads the
        // text) means the user part may reach further than the crate thinks: an unescaped
        // `?`, `#` or `/` in a password ends its host early (`app:12?x@db` is host `app`, port
        // 12). Such text is redacted by hand, up to its last `@`.
        let parsed = url::Url::parse(&self.0).ok().filter(|u| {
            ![
                u.path(),
                u.query().unwrap_or_default(),
                u.fragment().unwrap_or_default(),
            ]
            .iter()
            .any(|part| part.contains('@'))
        });
        if let Some(mut u) = parsed {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query_pairs().any(|(k, _)| secret_key(&k)) {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if secret_key(&k) {
                            "***".to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            return u.to_string();
        }
        // A libpq multi-host URL (`host1:5432,host2:5433`), which the `url` crate cannot
        // parse, or a malformed one: redacted by hand. Its reading is ambiguous (is a `?`
        // part of the password or the start of the query? is an `@` the end of the user part
        // or part of a query value?), so what either reading calls a secret is hidden: the
        // password of a user part that reaches to the last `@`, and the values of secret
        // query parameters after the first `?`. Any other unparseable text may be anything, a
        // password or a libpq `key=value` string included: never shown.
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "<unparseable database URL>".to_owned();
        };
        let mut hidden: Vec<(usize, usize)> = Vec::new();
        if let Some(at) = rest.rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            hidden.push((colon + 1, at));
        }
        if let Some(question) = rest.find('?') {
            let mut start = question + 1;
            for pair in rest[question + 1..].split('&') {
                if let Some(equals) = pair.find('=')
                    && secret_key(&pair[..equals])
                {
                    hidden.push((start + equals + 1, start + pair.len()));
                }
                start += pair.len() + 1;
            }
        }
        format!("{scheme}://{}", hide(rest, hidden))
    }
}

/// `text` with each of the byte ranges `hidden` (on character boundaries) replaced by `***`;
/// overlapping or adjacent ranges become one.
fn hide(text: &str, mut hidden: Vec<(usize, usize)>) -> String {
    hidden.sort_unstable();
    let mut shown = String::with_capacity(text.len());
    let mut at = 0;
    for (from, to) in hidden {
        if to < at {
            continue;
        }
        if from >= at {
            shown.push_str(&text[at..from]);
            shown.push_str("***");
        }
        at = to;
    }
    shown.push_str(&text[at..]);
    shown
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Percent-decodes `text` (`%41` is `A`; invalid sequences are kept as they are; `&` is
/// itself, not a separator as in a form; `+` a space when `plus_is_space`, as in a query
/// string, else itself).
fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let escaped = text.replace('&', "%26");
    let escaped = if plus_is_space {
        escaped
    } else {
        escaped.replace('+', "%2B")
    };
    url::form_urlencoded::parse(format!("k={escaped}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// How the AuthzCache hook publishes an invalidation to other processes.
///
/// A property of the database, recorded in it (`accountctl_registry.invalidations`:
/// PostgreSQL `notify` unless changed, SQLite always `table`) and changed only by `migrate
/// --invalidations notify|table`: every process publishes and listens on the recorded one,
/// and a process that asks for another ([`Database::with_invalidation_channel`],
/// `ACCOUNTCTL_INVALIDATIONS`) is refused ([`Database::check_invalidation_channel`]), since
/// its publications would reach no listener and revoked capabilities would stay cached.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidationChannel {
    /// PostgreSQL: `pg_notify` inside the transaction (delivered on commit). SQLite always
    /// uses the table.
    #[default]
    Notify,
    /// A row in `cache_invalidations` inside the transaction, which listeners poll: for
    /// PostgreSQL-compatible engines without `LISTEN`/`NOTIFY` (CockroachDB, YugabyteDB), or
    /// when no listener can keep a direct connection open.
    Table,
}

impl InvalidationChannel {
    /// `notify` or `table`: the recorded text, and what `ACCOUNTCTL_INVALIDATIONS` and
    /// `--invalidations` take.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::Table => "table",
        }
    }
}

impl fmt::Display for InvalidationChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The refusal of a process that asks for `requested` where the database records `recorded`.
pub(crate) fn channel_mismatch(requested: InvalidationChannel, recorded: InvalidationChannel) -> Error {
    Error::Invalid(format!(
        "this process asks for the `{requested}` invalidation channel (ACCOUNTCTL_INVALIDATIONS, --invalidations or invalidation_channel) but the database records `{recorded}`: every process uses the database's channel, or revoked capabilities stay cached elsewhere; drop the setting, or change the database's channel with `migrate --invalidations {requested}`"
    ))
}

/// The channel a database records, as a process last read it (shared by a handle's clones):
/// 0 unknown (not read yet, or not recorded), 1 `notify`, 2 `table`.
#[derive(Debug, Default)]
struct RecordedChannel(std::sync::atomic::AtomicU8);

impl RecordedChannel {
    fn get(&self) -> Option<InvalidationChannel> {
        match self.0.load(std::sync::atomic::Ordering::Acquire) {
            1 => Some(InvalidationChannel::Notify),
            2 => Some(InvalidationChannel::Table),
            _ => None,
        }
    }

    fn set(&self, channel: InvalidationChannel) {
        let code = match channel {
            InvalidationChannel::Notify => 1,
            InvalidationChannel::Table => 2,
        };
        self.0.store(code, std::sync::atomic::Ordering::Release);
    }
}

impl FromStr for InvalidationChannel {
    type Err = Error;

    /// `notify` or `table`. Errors: [`Error::Invalid`].
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "notify" => Ok(Self::Notify),
            "table" => Ok(Self::Table),
            other => Err(Error::Invalid(format!(
                "unknown invalidation channel {other:?}: use notify or table"
            ))),
        }
    }
}

/// Creates a missing SQLite database file readable and writable by its owner only (0600):
/// it holds password hashes and personal data, and a process umask of 022 would otherwise
/// leave it world-readable. SQLite gives the `-wal` and `-shm` files it creates later the
/// permissions of the database file, so they are private too. An existing file is left as
/// it is (its owner chose its mode); `:memory:` and other non-files are skipped.
fn create_private(path: &std::path::Path) -> Result<()> {
    if path.as_os_str().is_empty() || path.to_string_lossy().starts_with(':') || path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        // Another process created it first: it is that process's file now.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Unavailable(format!(
            "cannot create the SQLite database {}: {e}",
            path.display()
        ))),
    }
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection pool on SQLite or PostgreSQL. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    url: DatabaseUrl,
    /// The invalidation channel this process asked for (`None`: the recorded one).
    invalidations: Option<InvalidationChannel>,
    /// The invalidation channel the database records, as last read; shared by every clone.
    recorded: Arc<RecordedChannel>,
    /// The application registry check of every write transaction (`registry.rs`), armed by
    /// the `App` that owns this handle; shared by its clones.
    guard: Arc<registry::WriteGuard>,
    /// PostgreSQL, short-lived processes: the backend process id of every connection the
    /// pool opened, which [`Database::interrupt`] cancels (and nothing else).
    backends: Backends,
    /// PostgreSQL: the `lock_timeout` every transaction this handle begins sets for itself
    /// (`SET LOCAL`, sent with the `BEGIN`); `None` leaves the server's setting alone.
    /// SQLite's counterpart, the busy timeout, is set on the connections when they open.
    lock_timeout: Option<Duration>,
    /// PostgreSQL, long-running pools on a multi-host URL: what keeps the pool on the
    /// primary across failovers (told of failed `BEGIN`s here).
    follower: Option<Arc<multihost::PrimaryFollower>>,
}

/// The backend process ids of a pool's connections (see [`Database::interrupt`]).
type Backends = Arc<std::sync::Mutex<Vec<i32>>>;

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database").field("url", &self.url).finish()
    }
}

/// How long a SQLite writer waits for another writer's lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Statements slower than this are logged by sqlx at debug level (seen with `-v`), not as
/// a warning carrying the whole statement: a long migration on a busy machine is not an
/// operator's problem, and its text (the whole schema) would bury the command's output.
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

/// How many times [`Database::retrying`] runs a write transaction the database aborted for
/// a conflict with a concurrent one (the first run included).
pub const WRITE_ATTEMPTS: u32 = 5;

/// The pause before retry `n` (1-based): 20 ms doubling per retry, each drawn uniformly
/// from half to all of that ("equal jitter"), so colliding transactions spread out.
pub(crate) fn retry_pause(n: u32) -> Duration {
    use rand::RngExt as _;
    let ceiling = 20u64 << n.min(6);
    Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling))
}

/// The longest lock timeout: PostgreSQL's `lock_timeout` is a 32-bit count of milliseconds
/// (about 24.8 days); 24 days keeps to it.
const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(24 * 24 * 3600);

/// Refuses a lock timeout of zero (PostgreSQL reads 0 as "wait forever") or longer than
/// [`MAX_LOCK_TIMEOUT`]. Errors: [`Error::Invalid`].
fn check_lock_timeout(timeout: Duration) -> Result<()> {
    if timeout.is_zero() || timeout > MAX_LOCK_TIMEOUT {
        return Err(Error::Invalid(format!(
            "invalid lock timeout {}: it must be longer than zero and at most 24 days",
            humantime::format_duration(timeout)
        )));
    }
    Ok(())
}

/// A connection failure as [`Error::Unavailable`] naming the (password-free) URL.
fn unavailable(url: &DatabaseUrl, e: sqlx::Error) -> Error {
    match Error::from(e) {
        Error::Database(inner) => Error::Unavailable(format!("{url}: {inner}")),
        Error::Unavailable(m) => Error::Unavailable(format!("{url}: {m}")),
        other => other,
    }
}

/// How long the pool gets to open its first connection before a direct attempt asks the
/// server why it has not: sqlx retries a refused connection and a full server ("too many
/// clients already") quietly until its acquire timeout, which hid the cause behind "timed out
/// waiting for a connection" after 5 s.
const DIAGNOSE_AFTER: Duration = Duration::from_millis(200);

/// Opens the pool on `options`, failing at once with the real cause when the server refuses
/// (nothing listening, no free slot, starting up) and after `timeout` (libpq's
/// `connect_timeout`, else [`multihost::HOST_TIMEOUT`]) when it does not answer at all.
async fn connect_pg(
    url: &DatabaseUrl,
    pool_options: PgPoolOptions,
    options: sqlx::postgres::PgConnectOptions,
    timeout: Duration,
) -> Result<PgPool> {
    use sqlx::Connection as _;
    let at = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let no_answer = || {
        Error::Unavailable(format!(
            "{url}: no answer from {at} within {} s (connect_timeout): check that the server is up and reachable",
            timeout.as_secs()
        ))
    };
    let failed = |e: sqlx::Error| match e {
        sqlx::Error::PoolTimedOut => no_answer(),
        e => connect_failure(url, &at, e),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let pool = pool_options.connect_with(options.clone());
    tokio::pin!(pool);
    tokio::select! {
        result = &mut pool => return result.map_err(failed),
        () = tokio::time::sleep(DIAGNOSE_AFTER) => {}
    }
    // Still connecting: ask directly, once. A server that answers now is left to the pool
    // (its connection is ended cleanly); one that refuses says why.
    let diagnose = async {
        match tokio::time::timeout_at(deadline, sqlx::postgres::PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                None
            }
            Ok(Err(e)) => Some(e),
            Err(_) => None,
        }
    };
    tokio::select! {
        result = &mut pool => result.map_err(failed),
        Some(e) = diagnose => Err(failed(e)),
        () = tokio::time::sleep_until(deadline) => Err(no_answer()),
    }
}

/// A failure to open a connection to `at` (HOST:PORT or a socket path) as
/// [`Error::Unavailable`] naming it: "connection refused at HOST:PORT" rather than the
/// driver's bare OS error.
fn connect_failure(url: &DatabaseUrl, at: &str, e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => Error::Unavailable(format!(
            "{url}: connection refused at {at}: no server listens there; check that it is up and that DATABASE_URL points at it"
        )),
        sqlx::Error::Io(io) => Error::Unavailable(format!(
            "{url}: the connection to {at} failed ({io}): check that the server is up and that DATABASE_URL points at it"
        )),
        _ => unavailable(url, e),
    }
}

impl Database {
    /// Opens the database for a short-lived process such as the CLI: exactly one connection,
    /// ended cleanly by [`Database::close`]. SQLite files are created when missing, in WAL
    /// mode with foreign keys on and a 10 s busy timeout, so concurrent writers queue instead of
    /// failing. Does not migrate; see [`crate::App::migrate`] and
    /// [`crate::App::ensure_schema_current`].
    ///
    /// PostgreSQL URLs are libpq's: `postgres://USER@HOST[:PORT][,HOST[:PORT]...]/DB`, with
    /// `target_session_attrs=any|read-write|read-only|primary|standby|prefer-standby`
    /// choosing among several hosts as libpq does (hosts are tried in order).
    ///
    /// Errors: [`Error::Invalid`] for a malformed URL, [`Error::Unavailable`] when the
    /// database cannot be reached or no listed host has the requested attributes.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self> {
        Self::open(url, 1, false, None).await
    }

    /// The `application_name` of this process's connection when the URL names none:
    /// `accountctl/<process id>`, so [`Database::interrupt`] can find it.
    fn session_name() -> String {
        format!("accountctl/{}", std::process::id())
    }

    /// Cancels the statement this process's connections are running (PostgreSQL's
    /// `pg_cancel_backend`, sent over a second, short connection that carries the run's
    /// `application_name` and is ended cleanly). Only this process's backends are touched:
    /// each connection's backend process id is recorded when it opens, so another run under
    /// the same `application_name` (one set in `DATABASE_URL`) is never canceled.
    /// Between two statements of a transaction it waits (up to 3 s) for the next one, so a
    /// transaction in progress is always the one interrupted. The statement fails with
    /// SQLSTATE 57014, which is [`Error::Interrupted`], and its transaction rolls back
    /// through the normal path. Returns whether a statement was canceled; `false` at once
    /// when the connection is idle outside a transaction (a prompt), and always on SQLite
    /// and on a pool that records no backends (a long-running process's).
    pub async fn interrupt(&self) -> bool {
        use sqlx::Connection as _;
        let Pool::Postgres(pool) = &self.pool else {
            return false;
        };
        let pids = self
            .backends
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if pids.is_empty() {
            return false;
        }
        let options = pool.connect_options();
        let name = options.get_application_name().unwrap_or_default().to_owned();
        let Ok(mut conn) = sqlx::PgConnection::connect_with(&options).await else {
            return false;
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let canceled = loop {
            // Every connection of this process (an import holds two): `active` ones are
            // canceled; while none is and one is `idle in transaction`, its next statement
            // comes soon. The name check guards against a process id reused by a backend
            // that is not ours.
            let state: Result<(Option<bool>, Option<bool>), _> = sqlx::query_as(
                "SELECT bool_or(state = 'active' AND pg_cancel_backend(pid)), \
                        bool_or(state LIKE 'idle in transaction%') FROM pg_stat_activity \
                 WHERE pid = ANY($1) AND application_name = $2 AND pid <> pg_backend_pid()",
            )
            .bind(&pids)
            .bind(&name)
            .fetch_one(&mut conn)
            .await;
            match state {
                Ok((Some(true), _)) => break true,
                Ok((_, Some(true))) => {
                    if std::time::Instant::now() >= deadline {
                        break false;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(_) | Err(_) => break false,
            }
        };
        let _ = conn.close().await;
        canceled
    }

    /// [`Database::connect`] with a pool of at most `max_connections`, for a long-running
    /// process (an application server): connections are opened on demand and, with more than
    /// one, checked before reuse, so one lost in a failover is replaced. With one it is
    /// exactly [`Database::connect`] (no check: a short-lived process pays no extra round
    /// trip per transaction).
    pub async fn connect_with(url: &DatabaseUrl, max_connections: u32) -> Result<Self> {
        Self::open(url, max_connections, max_connections > 1, None).await
    }

    /// [`Database::connect`] with a pool of at most `max_connections`, for a short-lived
    /// process (one CLI run): connections are not checked before reuse (no extra round trip
    /// per transaction) and, on PostgreSQL, carry the process's `application_name` (unless
    /// the URL names one) so [`Database::interrupt`] finds every one of them.
    pub async fn connect_short_lived(url: &DatabaseUrl, max_connections: u32) -> Result<Self> {
        Self::open(url, max_connections, false, None).await
    }

    /// Opens the pool as [`Database::connect_with`] (`short_lived: false`) or
    /// [`Database::connect_short_lived`] does, with a lock timeout (see
    /// [`crate::app::AppBuilder::lock_timeout`]): SQLite's busy timeout on every connection,
    /// PostgreSQL's `lock_timeout` on every transaction. Errors: theirs, and
    /// [`Error::Invalid`] for a timeout outside 1 ms..=24 days.
    pub(crate) async fn connect_with_lock_timeout(
        url: &DatabaseUrl,
        max_connections: u32,
        short_lived: bool,
        lock_timeout: Option<Duration>,
    ) -> Result<Self> {
        let test_before_acquire = !short_lived && max_connections > 1;
        Self::open(url, max_connections, test_before_acquire, lock_timeout).await
    }

    /// The same handle with a PostgreSQL `lock_timeout` for every transaction it begins
    /// (see [`Database::lock_timeout`]). Errors: [`Error::Invalid`] on SQLite, whose busy
    /// timeout belongs to the connections and is set when they open
    /// ([`crate::app::AppBuilder::lock_timeout`] with a URL, or the pool's own
    /// `busy_timeout`), and for a timeout outside 1 ms..=24 days.
    pub(crate) fn with_lock_timeout(mut self, timeout: Duration) -> Result<Self> {
        check_lock_timeout(timeout)?;
        if self.backend() == Backend::Sqlite {
            return Err(Error::Invalid(
                "a lock timeout for a given SQLite pool: set busy_timeout on the pool's connect options instead (or let the builder connect by URL)".into(),
            ));
        }
        self.lock_timeout = Some(timeout);
        Ok(self)
    }

    /// The lock timeout this handle's transactions set (PostgreSQL) or its connections
    /// were opened with (SQLite), when one was asked for.
    pub fn lock_timeout(&self) -> Option<Duration> {
        self.lock_timeout
    }

    async fn open(
        url: &DatabaseUrl,
        max_connections: u32,
        test_before_acquire: bool,
        lock_timeout: Option<Duration>,
    ) -> Result<Self> {
        if let Some(timeout) = lock_timeout {
            check_lock_timeout(timeout)?;
        }
        // A driver or the multi-host parser may quote part of a misparsed URL, password
        // included: every error of the connection goes out scrubbed.
        Self::open_unscrubbed(url, max_connections, test_before_acquire, lock_timeout)
            .await
            .map_err(|e| url.scrub_error(e))
    }

    async fn open_unscrubbed(
        url: &DatabaseUrl,
        max_connections: u32,
        test_before_acquire: bool,
        lock_timeout: Option<Duration>,
    ) -> Result<Self> {
        let backends: Backends = Arc::default();
        let mut follower = None;
        let invalid = |e: sqlx::Error| Error::Invalid(format!("invalid database URL {url}: {e}"));
        let pool = match url.backend() {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url.expose()).map_err(invalid)?;
                create_private(options.get_filename())?;
                let options = options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .busy_timeout(lock_timeout.unwrap_or(SQLITE_BUSY_TIMEOUT))
                    .log_slow_statements(log::LevelFilter::Debug, SLOW_STATEMENT);
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(30))
                    .test_before_acquire(test_before_acquire)
                    .connect_with(options)
                    .await
                    .map_err(|e| unavailable(url, e))?;
                Pool::Sqlite(pool)
            }
            Backend::Postgres => {
                let mut targets = multihost::parse(url.expose())
                    .map_err(|e| Error::Invalid(format!("invalid database URL {url}: {e}")))?;
                // A short-lived process's connections (never checked before reuse) carry one
                // name, the probes of a multi-host URL included, so an operator looking at
                // `pg_stat_activity` sees every connection of the run under it.
                if !test_before_acquire && targets.application_name().is_none() {
                    targets.set_application_name(&Self::session_name());
                }
                let options = multihost::choose(url, &targets)
                    .await?
                    .log_slow_statements(log::LevelFilter::Debug, SLOW_STATEMENT);
                let mut pool_options = PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(targets.connect_timeout.unwrap_or_default().max(multihost::HOST_TIMEOUT))
                    .test_before_acquire(test_before_acquire);
                if !test_before_acquire {
                    // Each connection's backend process id, for `interrupt` to cancel exactly
                    // this process's statements. A simple-protocol query: no prepared
                    // statement for a transaction-mode pooler to lose.
                    let backends = backends.clone();
                    pool_options = pool_options.after_connect(move |conn, _| {
                        let backends = backends.clone();
                        Box::pin(async move {
                            use sqlx::Row as _;
                            let row =
                                sqlx::Executor::fetch_one(&mut *conn, sqlx::raw_sql("SELECT pg_backend_pid()")).await?;
                            let pid: i32 = row.try_get(0)?;
                            backends
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push(pid);
                            Ok(())
                        })
                    });
                }
                let timeout = targets.connect_timeout.unwrap_or(multihost::HOST_TIMEOUT);
                // A long-running pool on several hosts follows the primary: every connection
                // is checked to accept writes when it opens and before each reuse (the check
                // replaces the pool's ping: still one round trip).
                if test_before_acquire && targets.follows_primary() {
                    let f = Arc::new(multihost::PrimaryFollower::new(url.clone(), targets));
                    let (on_connect, on_acquire) = (f.clone(), f.clone());
                    pool_options = pool_options
                        .test_before_acquire(false)
                        .after_connect(move |conn, _| {
                            let f = on_connect.clone();
                            Box::pin(async move {
                                if multihost::PrimaryFollower::read_only(conn).await? {
                                    // The pool retries the connection, with the new host.
                                    f.follow().await;
                                    return Err(sqlx::Error::Io(std::io::Error::other(
                                        "the host no longer accepts writes (a failover?): looking for the primary",
                                    )));
                                }
                                Ok(())
                            })
                        })
                        .before_acquire(move |conn, _| {
                            let f = on_acquire.clone();
                            Box::pin(async move {
                                match multihost::PrimaryFollower::read_only(conn).await {
                                    Ok(false) => Ok(true),
                                    Ok(true) => {
                                        f.follow_later();
                                        Ok(false)
                                    }
                                    Err(err) => {
                                        f.follow_later();
                                        Err(err)
                                    }
                                }
                            })
                        });
                    follower = Some(f);
                }
                let pool = connect_pg(url, pool_options, options, timeout).await?;
                if let Some(f) = &follower {
                    f.attach(pool.clone());
                }
                Pool::Postgres(pool)
            }
        };
        let mut db = Self::with_pool(pool, url.clone());
        db.follower = follower;
        db.backends = backends;
        db.lock_timeout = lock_timeout;
        Ok(db)
    }

    /// The same database, with this process asking for `channel` (`ACCOUNTCTL_INVALIDATIONS`
    /// in the CLI). The channel is the database's, recorded in it (see
    /// [`InvalidationChannel`]): the request only confirms it, and where it disagrees with
    /// the record, [`Database::check_invalidation_channel`], `App::build`, the invalidation
    /// listener and every write transaction refuse to go on ([`Error::Invalid`], exit 2). On
    /// a database that records none yet (before its first `migrate`), the request is used,
    /// and the first `migrate` records it.
    pub fn with_invalidation_channel(mut self, channel: InvalidationChannel) -> Self {
        self.invalidations = Some(channel);
        self
    }

    /// How this database publishes invalidations: always [`InvalidationChannel::Table`] on
    /// SQLite; on PostgreSQL the channel the database records (as last read by this handle
    /// or a clone: [`Database::check_invalidation_channel`], and every write transaction
    /// after a change of the registry), else the one asked for, else `NOTIFY`.
    pub fn invalidation_channel(&self) -> InvalidationChannel {
        match self.pool {
            Pool::Sqlite(_) => InvalidationChannel::Table,
            Pool::Postgres(_) => self.recorded.get().or(self.invalidations).unwrap_or_default(),
        }
    }

    /// The channel this process asked for with [`Database::with_invalidation_channel`].
    pub fn requested_invalidation_channel(&self) -> Option<InvalidationChannel> {
        self.invalidations
    }

    /// Reads the invalidation channel the database records (`None` before the migration
    /// that records it) and remembers it for [`Database::invalidation_channel`]. Errors: the
    /// database's.
    pub async fn recorded_invalidation_channel(&self) -> Result<Option<InvalidationChannel>> {
        let mut tx = self.begin_read_unguarded().await?;
        let recorded = tx.recorded_invalidations().await;
        tx.end().await?;
        let recorded = recorded?;
        if let Some(channel) = recorded {
            self.recorded.set(channel);
        }
        Ok(recorded)
    }

    /// Reads the channel the database records and checks this process's request against
    /// it; returns the channel to use (the recorded one, else the one asked for, else the
    /// backend's default). Errors: [`Error::Invalid`] (exit 2) naming both when this process
    /// asked for another channel than the recorded one; the database's errors.
    pub async fn check_invalidation_channel(&self) -> Result<InvalidationChannel> {
        if let Some(recorded) = self.recorded_invalidation_channel().await? {
            self.adopt_recorded_channel(recorded)?;
        }
        Ok(self.invalidation_channel())
    }

    /// Remembers `recorded` (read from the registry). Errors: [`Error::Invalid`] when this
    /// process asked for another channel.
    pub(crate) fn adopt_recorded_channel(&self, recorded: InvalidationChannel) -> Result<()> {
        self.recorded.set(recorded);
        match self.invalidations {
            Some(requested) if requested != recorded => Err(channel_mismatch(requested, recorded)),
            _ => Ok(()),
        }
    }

    /// Runs `attempt` (one whole write transaction: begin, work, commit) again when the
    /// database aborted it for conflicting with a concurrent transaction (SQLSTATE 40001
    /// serialization failure or 40P01 deadlock; the engine asks for exactly this), up to
    /// [`WRITE_ATTEMPTS`] times with a jittered, growing pause in between. Any other outcome is
    /// returned at once.
    ///
    /// `attempt` must do nothing outside its transaction that cannot be repeated. Errors:
    /// the last attempt's, which after the last retry is [`Error::Serialization`] (exit 4,
    /// naming the conflict).
    pub async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(err) if err.is_retryable() && tries < WRITE_ATTEMPTS => {
                    let pause = retry_pause(tries);
                    tracing::info!(attempt = tries, pause_ms = pause.as_millis() as u64, error = %err, "transaction conflicted with a concurrent one; retrying");
                    tokio::time::sleep(pause).await;
                    tries += 1;
                }
                outcome => return outcome,
            }
        }
    }

    fn with_pool(pool: Pool, url: DatabaseUrl) -> Self {
        Self {
            pool,
            url,
            invalidations: None,
            recorded: Arc::default(),
            guard: Arc::default(),
            backends: Arc::default(),
            lock_timeout: None,
            follower: None,
        }
    }

    /// Wraps an application's existing PostgreSQL pool (its settings are kept as they are).
    pub fn from_pg_pool(pool: PgPool) -> Self {
        Self::with_pool(
            Pool::Postgres(pool),
            DatabaseUrl("postgres://(application pool)".into()),
        )
    }

    /// Wraps an application's existing SQLite pool. Open it with foreign keys on (sqlx's
    /// default) and, for concurrent writers, WAL mode and a busy timeout.
    pub fn from_sqlite_pool(pool: SqlitePool) -> Self {
        Self::with_pool(Pool::Sqlite(pool), DatabaseUrl("sqlite://(application pool)".into()))
    }

    /// The same pool with a registry check of its own (not armed yet): each `App` guards its
    /// handle, and the clones it hands its hooks, with its own declared set.
    pub(crate) fn with_own_guard(&self) -> Self {
        Self {
            guard: Arc::default(),
            ..self.clone()
        }
    }

    /// Arms the registry check of every write transaction with the binary's declared set
    /// (once: a handle belongs to one `App`; later calls are ignored).
    pub(crate) fn arm_guard(&self, set: Arc<RegistrySet>) {
        self.guard.arm(set);
    }

    /// The backend of the pool.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The URL the pool was opened with (a placeholder for a wrapped application pool).
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Begins a transaction for work that writes. On SQLite this is `BEGIN IMMEDIATE`: the
    /// write lock is taken up front, so two writers queue on the busy timeout instead of one
    /// failing when it upgrades a read lock (which WAL mode cannot wait for).
    ///
    /// Every write transaction is checked against the database's application registry
    /// (read with the transaction: one statement, a whole read only when the registry
    /// changed), so a long-running process stops writing as soon as an application's
    /// `migrate` records what it lacks.
    ///
    /// Errors: [`Error::MissingHooks`] (exit 6) when this binary lacks something the
    /// database's registry records (a hook, a merge handler, a personal-data declaration, an
    /// application migration) or belongs to another application; the database's errors
    /// otherwise.
    pub async fn begin(&self) -> Result<Tx> {
        // One statement more per write transaction (the generation read). Sending it with
        // BEGIN in one simple query would save the round trip, but a failed check there
        // leaves the pooled connection inside an aborted transaction that sqlx does not roll
        // back (it never counted the transaction as begun).
        let mut tx = self.begin_unguarded().await?;
        // The guard reads the registry again whenever it changed, the recorded invalidation
        // channel included: a `migrate --invalidations` reaches every writer at its next
        // write transaction.
        if let Some(recorded) = self.guard.check(&mut tx).await? {
            if let Err(err) = self.adopt_recorded_channel(recorded) {
                tx.rollback().await?;
                return Err(err);
            }
            tx.invalidations = self.invalidation_channel();
        }
        Ok(tx)
    }

    /// [`Database::begin`] without the hook-set check: migrations and the hook registry only.
    pub(crate) async fn begin_unguarded(&self) -> Result<Tx> {
        let inner = match &self.pool {
            Pool::Sqlite(p) => TxInner::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => TxInner::Postgres(self.pg_begin(p, "BEGIN").await?),
        };
        Ok(Tx {
            inner,
            invalidations: self.invalidation_channel(),
            pending_audit: audit::PendingAudit::default(),
            pending_revocation: None,
        })
    }

    /// Begins a read-only transaction ([`ReadTx`]: queries only; `BEGIN READ ONLY` on
    /// PostgreSQL, a deferred `BEGIN` on SQLite). End it with [`ReadTx::end`] rather than
    /// dropping it: a dropped transaction's `ROLLBACK` is only sent when the connection is
    /// next used, which keeps a pooler's server connection pinned and may never happen at
    /// process exit.
    pub async fn begin_read(&self) -> Result<ReadTx> {
        let inner = match &self.pool {
            Pool::Sqlite(p) => TxInner::Sqlite(p.begin().await?),
            Pool::Postgres(p) => TxInner::Postgres(self.pg_begin(p, "BEGIN READ ONLY").await?),
        };
        Ok(ReadTx(Tx {
            inner,
            invalidations: self.invalidation_channel(),
            pending_audit: audit::PendingAudit::default(),
            pending_revocation: None,
        }))
    }

    /// A transaction for the crate's own reads (the store's typed queries; a deferred `BEGIN`
    /// on SQLite). End it with [`Tx::end`].
    pub(crate) async fn begin_read_tx(&self) -> Result<Tx> {
        self.begin_read_unguarded().await
    }

    /// Runs `read` in a read transaction ([`Database::begin_read_tx`]) and ends it whatever
    /// `read` returned, so an early `?` inside cannot skip the end. Errors: `read`'s first,
    /// else the end's.
    pub(crate) async fn read<T>(&self, read: impl AsyncFnOnce(&mut Tx) -> Result<T>) -> Result<T> {
        let mut tx = self.begin_read_tx().await?;
        let out = read(&mut tx).await;
        let ended = tx.end().await;
        let out = out?;
        ended?;
        Ok(out)
    }

    pub(crate) async fn begin_read_unguarded(&self) -> Result<Tx> {
        let inner = match &self.pool {
            Pool::Sqlite(p) => TxInner::Sqlite(p.begin().await?),
            Pool::Postgres(p) => TxInner::Postgres(self.pg_begin(p, "BEGIN").await?),
        };
        Ok(Tx {
            inner,
            invalidations: self.invalidation_channel(),
            pending_audit: audit::PendingAudit::default(),
            pending_revocation: None,
        })
    }

    /// A transaction for a dry run (`gdpr purge --dry-run`, `user merge --dry-run`, `user
    /// import --dry-run`): `BEGIN READ ONLY` on PostgreSQL, a deferred `BEGIN` on SQLite, and
    /// no registry check ([`Database::begin`]'s): a dry run writes nothing, so it runs on a
    /// standby and under a binary that may not write. A statement that tries to write fails
    /// (SQLSTATE 25006). End it with [`Tx::end`].
    pub(crate) async fn begin_dry(&self) -> Result<Tx> {
        let inner = match &self.pool {
            Pool::Sqlite(p) => TxInner::Sqlite(p.begin().await?),
            Pool::Postgres(p) => TxInner::Postgres(self.pg_begin(p, "BEGIN READ ONLY").await?),
        };
        Ok(Tx {
            inner,
            invalidations: self.invalidation_channel(),
            pending_audit: audit::PendingAudit::default(),
            pending_revocation: None,
        })
    }

    /// Begins a PostgreSQL transaction with `begin` (`BEGIN` or `BEGIN READ ONLY`), followed
    /// in the same simple query (one round trip, nothing a transaction-mode pooler could
    /// separate) by `SET LOCAL lock_timeout` when this handle has one.
    async fn pg_begin(&self, pool: &PgPool, begin: &'static str) -> Result<sqlx::Transaction<'static, Postgres>> {
        let begun = self.pg_begin_once(pool, begin).await;
        // A pool that follows the primary looks for it again when a transaction cannot
        // begin for the connection's sake (the host went away or is read-only now).
        if let (Err(err), Some(f)) = (&begun, &self.follower)
            && matches!(err, Error::Unavailable(_))
        {
            f.follow_later();
        }
        begun
    }

    async fn pg_begin_once(&self, pool: &PgPool, begin: &'static str) -> Result<sqlx::Transaction<'static, Postgres>> {
        Ok(match self.lock_timeout {
            None if begin == "BEGIN" => pool.begin().await?,
            None => pool.begin_with(begin).await?,
            Some(timeout) => {
                let millis = timeout.as_millis().max(1);
                pool.begin_with(sqlx::AssertSqlSafe(format!(
                    "{begin}; SET LOCAL lock_timeout = {millis}"
                )))
                .await?
            }
        })
    }

    /// The PostgreSQL pool, for what only PostgreSQL offers (a `LISTEN` connection).
    pub(crate) fn pg_pool(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(_) => None,
        }
    }

    /// Closes the pool, waiting for connections to be returned, and ends each connection
    /// with the protocol's goodbye so the server logs no lost client.
    ///
    /// Waits (up to 5 s) until no connection is left. sqlx 0.9's own close waits for the
    /// connections in use to come back before ending them; 0.8's could return while one was
    /// still on its way back (a dropped transaction returns its connection from a spawned
    /// task), which then stayed open, and a process that exited then, or a database dropped
    /// then, left the server a lost client (`connection to client lost`). The check stays as
    /// a guard; it costs nothing when the pool is empty.
    pub async fn close(&self) {
        if let Some(f) = &self.follower {
            f.detach();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        if let Pool::Postgres(p) = &self.pool {
            // A transaction dropped after an error (a refused statement, a canceled one)
            // queues its ROLLBACK on the connection without reading the reply. Closing then
            // sends the goodbye and shuts the socket while the server is still answering, and
            // the server logs a lost client. Each idle connection is settled first: a ping
            // sends what is queued and reads every reply owed before it.
            // A dropped transaction's connection comes back to the pool from a spawned task:
            // wait (briefly) until every connection is back.
            let settle_by = std::time::Instant::now() + Duration::from_millis(500);
            while p.num_idle() < p.size() as usize && std::time::Instant::now() < settle_by {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut idle = Vec::new();
            while let Some(conn) = p.try_acquire() {
                idle.push(conn);
            }
            for conn in &mut idle {
                let _ = tokio::time::timeout(Duration::from_secs(2), sqlx::Connection::ping(&mut **conn)).await;
            }
            drop(idle);
        }
        loop {
            let left = match &self.pool {
                Pool::Sqlite(p) => {
                    p.close().await;
                    p.size()
                }
                Pool::Postgres(p) => {
                    p.close().await;
                    p.size()
                }
            };
            if left == 0 || std::time::Instant::now() >= deadline {
                return;
            }
            // Usually the last connection is only finishing its return-to-pool round trip:
            // poll at the timer's resolution so a short-lived process is not held up.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

enum TxInner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// An open transaction on either backend. Dropping it without [`Tx::commit`] rolls back.
pub struct Tx {
    inner: TxInner,
    invalidations: InvalidationChannel,
    /// PostgreSQL: audit rows recorded but not yet sent. They go with the transaction's next
    /// statement: inside it when it is one that carries them (the session revocation and the
    /// erase statement of a delete), else just before it, and before the commit at the latest.
    pending_audit: audit::PendingAudit,
    /// PostgreSQL: a session revocation recorded but not yet run, carried the same way (see
    /// [`Tx::revoke_sessions_audited`]).
    pending_revocation: Option<audit::PendingRevocation>,
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tx({:?})", self.backend())
    }
}

impl Tx {
    /// The backend of the transaction, for SQL whose dialects differ.
    pub fn backend(&self) -> Backend {
        match self.inner {
            TxInner::Sqlite(_) => Backend::Sqlite,
            TxInner::Postgres(_) => Backend::Postgres,
        }
    }

    /// Commits, after writing what the transaction still holds back (PostgreSQL: audit rows
    /// and a session revocation waiting for a statement to ride with). Errors: the
    /// database's, mapped by [`Error::from`].
    pub async fn commit(mut self) -> Result<()> {
        self.flush_pending().await?;
        match self.inner {
            TxInner::Sqlite(t) => t.commit().await?,
            TxInner::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Ends a read transaction: rolls back and waits for the server's answer, so the
    /// connection is clean when it goes back to the pool.
    pub async fn end(self) -> Result<()> {
        self.rollback().await
    }

    /// Rolls back explicitly (dropping does the same, without waiting).
    pub async fn rollback(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(t) => t.rollback().await?,
            TxInner::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }

    /// Runs one statement without parameters and returns the rows it affected (the crate's
    /// own fixed statements only; callers outside the crate bind values with [`Tx::execute`]).
    pub(crate) async fn execute_raw(&mut self, sql: &str) -> Result<u64> {
        Ok(on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *c)
            .await?
            .rows_affected()))
    }
}

/// A uuid as the store binds and reads it: native `uuid` on PostgreSQL, hyphenated `TEXT` on
/// SQLite (readable in the `sqlite3` shell, unlike sqlx's default 16-byte BLOB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DbId(pub uuid::Uuid);

impl sqlx::Type<Sqlite> for DbId {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as sqlx::Type<Sqlite>>::type_info()
    }
}

impl sqlx::Encode<'_, Sqlite> for DbId {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::sqlite::SqliteArgumentsBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'_, Sqlite>>::encode(self.0.hyphenated().to_string(), buf)
    }
}

impl<'r> sqlx::Decode<'r, Sqlite> for DbId {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<'r, Sqlite>>::decode(value)?;
        Ok(Self(uuid::Uuid::parse_str(text)?))
    }
}

impl sqlx::Type<Postgres> for DbId {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <uuid::Uuid as sqlx::Type<Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, Postgres> for DbId {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <uuid::Uuid as sqlx::Encode<'_, Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for DbId {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Self(<uuid::Uuid as sqlx::Decode<'r, Postgres>>::decode(value)?))
    }
}

/// Decoding a domain type from a row of either backend. Implemented with [`from_row!`],
/// which writes the body once for both row types.
pub(crate) trait FromDbRow: Sized {
    fn from_sqlite(row: &SqliteRow) -> Result<Self, sqlx::Error>;
    fn from_pg(row: &PgRow) -> Result<Self, sqlx::Error>;
}

/// A row of either backend that can decode itself into a [`FromDbRow`] type.
pub(crate) trait DbRow {
    fn decode<T: FromDbRow>(&self) -> Result<T, sqlx::Error>;
}

impl DbRow for SqliteRow {
    fn decode<T: FromDbRow>(&self) -> Result<T, sqlx::Error> {
        T::from_sqlite(self)
    }
}

impl DbRow for PgRow {
    fn decode<T: FromDbRow>(&self) -> Result<T, sqlx::Error> {
        T::from_pg(self)
    }
}

/// Implements [`FromDbRow`] for `$ty` from one body; `$r` is the row, with `Row::try_get`
/// in scope.
macro_rules! from_row {
    ($ty:ty, |$r:ident| $body:expr) => {
        impl $crate::store::FromDbRow for $ty {
            fn from_sqlite($r: &sqlx::sqlite::SqliteRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok($body)
            }
            fn from_pg($r: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok($body)
            }
        }
    };
}
pub(crate) use from_row;

/// Reads a uuid column (helper for [`from_row!`] bodies).
macro_rules! get_id {
    ($r:ident, $col:literal) => {
        $r.try_get::<$crate::store::DbId, _>($col)?.0
    };
}
pub(crate) use get_id;

/// Reads a nullable uuid column.
macro_rules! get_opt_id {
    ($r:ident, $col:literal) => {
        $r.try_get::<Option<$crate::store::DbId>, _>($col)?.map(|d| d.0)
    };
}
pub(crate) use get_opt_id;

/// Parses a text column holding one of the domain's enums.
pub(crate) fn parse_enum<T: FromStr<Err = Error>>(text: &str, column: &str) -> Result<T, sqlx::Error> {
    text.parse::<T>().map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(std::io::Error::other(e.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_hide_their_password() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db.example:5432/accounts").expect("valid");
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db.example"));
        assert_eq!(url.backend(), Backend::Postgres);
        let url =
            DatabaseUrl::parse("postgres://app@db.example/accounts?sslmode=require&password=s3cret").expect("valid");
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("sslmode=require"), "{shown}");
    }

    #[test]
    fn multi_host_urls_are_shown_without_their_password() {
        let url = DatabaseUrl::parse(
            "postgres://app:s3cret@db1:5432,db2:5433/accounts?password=hunter2&target_session_attrs=read-write",
        )
        .expect("valid");
        let shown = url.to_string();
        assert_eq!(
            shown,
            "postgres://app:***@db1:5432,db2:5433/accounts?password=***&target_session_attrs=read-write"
        );
    }

    #[test]
    fn a_password_that_ends_the_host_early_is_not_shown() {
        for (text, password) in [
            ("postgres://app:12?x9@db.example/accounts", "12?x9"),
            ("postgres://app:ab?cd@db.example/accounts", "ab?cd"),
            ("postgres://app:12#x9@db.example/accounts", "12#x9"),
            ("postgres://app:12/x9@db.example/accounts", "12/x9"),
            ("postgres://app:p@ss:12/x@db.example/accounts", "p@ss:12/x"),
            ("postgres://app@db.example/accounts?password=a1@b2", "a1@b2"),
            ("postgres://app@db.example:1/a?password=a@A0/", "A0/"),
        ] {
            let url = DatabaseUrl::parse(text).expect("valid");
            let shown = format!("{url} {url:?}");
            assert!(!shown.contains(password), "{text} shown as {shown}");
            assert!(shown.contains("db.example"), "{shown}");
        }
    }

    #[test]
    fn a_password_is_scrubbed_from_messages_however_it_is_written() {
        let url = DatabaseUrl::parse("postgres://app:&%20Ab@db.example/accounts").expect("valid");
        let scrubbed = url.scrub("password authentication failed for \"& Ab\"");
        assert!(!scrubbed.contains("& Ab"), "{scrubbed}");
        // A password that starts with a quote is scrubbed with its quote.
        let url = DatabaseUrl::parse("postgres://app:'a @db.example/accounts").expect("valid");
        let scrubbed = url.scrub("near postgres://app:'a @db.example/accounts");
        assert!(!scrubbed.contains("'a "), "{scrubbed}");
        // In a query, `+` is a space to the driver: the password is "  Ab".
        let url = DatabaseUrl::parse("postgres://app@db.example/accounts?password=++Ab").expect("valid");
        let scrubbed = url.scrub("password authentication failed for \"  Ab\"");
        assert!(!scrubbed.contains("  Ab"), "{scrubbed}");
    }

    #[test]
    fn unknown_schemes_are_invalid() {
        assert!(matches!(DatabaseUrl::parse("mysql://x/y"), Err(Error::Invalid(_))));
        assert_eq!(
            DatabaseUrl::parse("sqlite://a.db").map(|u| u.backend()).ok(),
            Some(Backend::Sqlite)
        );
    }
}
