//! The library's one error type. Each variant corresponds to one exit code of the CLI (the
//! table in `accountctl --help`); [`Error::exit_code`] is the single mapping.

/// Everything that can go wrong in a library call.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed value: username, email, duration, capability… Exit code 2.
    #[error("{0}")]
    Invalid(String),
    /// The named record does not exist. Exit code 3.
    #[error("{what} not found: {key}")]
    NotFound {
        /// What was looked up: `user`, `workspace`, `role`, `invite`…
        what: &'static str,
        /// The key it was looked up by, as given.
        key: String,
    },
    /// The record already exists or the change collides with another record. Exit code 4.
    #[error("{0}")]
    Conflict(String),
    /// Refused by an invariant (last admin, external admin, expired invite…). Exit code 4.
    /// A lifecycle hook or merge handler returns it to veto an operation by policy; the
    /// caller then reports [`Error::Vetoed`].
    #[error("{0}")]
    Refused(String),
    /// Wrong password, unknown or inactive user on the login path. One message for all, so
    /// the error tells an attacker nothing. Exit code 4.
    #[error("authentication failed")]
    AuthenticationFailed,
    /// A lifecycle hook returned an error from `on_user_deleted`, or a merge handler failed;
    /// the transaction was rolled back and nothing changed. Exit code 1.
    #[error("{hook} (lifecycle hook or merge handler) failed; nothing was changed: {source}")]
    Hook {
        /// The hook's or handler's `name()`.
        hook: &'static str,
        /// The error it returned.
        #[source]
        source: Box<Error>,
    },
    /// A lifecycle hook or merge handler refused the operation by policy (it returned
    /// [`Error::Refused`], e.g. a user on legal hold); the transaction was rolled back and
    /// nothing changed. Exit code 4.
    #[error("refused by {hook}: {reason}; nothing was changed")]
    Vetoed {
        /// The hook's or handler's `name()`.
        hook: &'static str,
        /// The hook's own message.
        reason: String,
    },
    /// The database's application registry records what this binary lacks (lifecycle
    /// hooks, merge handlers, personal-data declarations, application migrations) or belongs
    /// to another application: it may read but every write is refused, so no change skips
    /// the application's work. Exit code 6.
    #[error(
        "this binary lacks what the database's application registry records: {}. It may read but not write; use the application's own admin binary (the one that registers them)",
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    MissingHooks(Vec<crate::store::MissingHook>),
    /// Some items of a batch failed (the others were committed). Exit code 5.
    #[error("{failed} of {total} items failed")]
    Partial {
        /// Items that failed.
        failed: u64,
        /// Items in the batch.
        total: u64,
    },
    /// The database cannot be reached or opened, refuses writes (a read-only standby, a
    /// server shutting down or in recovery), or a connection pooler between us and it cannot
    /// carry what the command needs. The message says what to do. Exit code 6.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The command gave up waiting for a lock another session holds, at the limit the
    /// operator set (`--lock-timeout`, [`crate::AppBuilder::lock_timeout`]). The message
    /// names the command, the limit and, where it was seen, the lock and its holder. Nothing
    /// was changed. Exit code 6.
    #[error("{0}")]
    LockTimeout(String),
    /// A mail could not be handed to the SMTP relay (refused connection, TLS or AUTH failure,
    /// a rejected recipient). The message names the relay's answer and, where it helps, the
    /// setting to check (e.g. `tls = "none"` for a local relay). Nothing in the database
    /// depends on it: a failed invite delivery revokes its invite. Exit code 6.
    #[error("mail not delivered: {0}")]
    MailUnavailable(String),
    /// The database aborted the transaction because it conflicted with a concurrent one
    /// (SQLSTATE 40001 serialization failure, 40P01 deadlock) and it still did after the
    /// bounded retries of [`crate::store::Database::retrying`]. Nothing was changed. Exit code 4.
    #[error("{0}")]
    Serialization(String),
    /// The schema is older (or newer) than this build. Exit code 6.
    #[error("{0}")]
    Schema(String),
    /// Any other database error. Exit code 1.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// A bug or an environment failure. Exit code 1.
    #[error("{0}")]
    Internal(String),
    /// The operator interrupted the command (Ctrl-C); its open transaction was rolled back.
    /// Exit code 130.
    #[error("interrupted; the change in progress was rolled back")]
    Interrupted,
}

impl Error {
    /// The CLI exit code for this error: 1 internal (a hook that failed included),
    /// 2 invalid, 3 not found, 4 conflict/refused (a hook's veto included), 5 partial
    /// failure, 6 database or mail relay unavailable, schema behind or ahead, or hooks missing, 130
    /// interrupted at a prompt.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_) => 2,
            Self::NotFound { .. } => 3,
            Self::Conflict(_)
            | Self::Refused(_)
            | Self::AuthenticationFailed
            | Self::Vetoed { .. }
            | Self::Serialization(_) => 4,
            Self::Partial { .. } => 5,
            Self::Unavailable(_)
            | Self::LockTimeout(_)
            | Self::MailUnavailable(_)
            | Self::Schema(_)
            | Self::MissingHooks(_) => 6,
            Self::Hook { .. } | Self::Database(_) | Self::Internal(_) => 1,
            Self::Interrupted => 130,
        }
    }

    /// The error a command reports when hook or handler `hook` returned `err` inside a
    /// transaction: a policy refusal ([`Error::Refused`]) becomes [`Error::Vetoed`] (exit 4),
    /// anything else [`Error::Hook`] (exit 1). Either way the transaction rolls back.
    ///
    /// What the database did to the hook's statement is passed through unchanged: the
    /// connection dying, the server going read-only or a timeout firing inside a hook is
    /// the database's state, not the hook's failure (exit 6, not 1), a conflict is retried
    /// with the whole transaction, and Ctrl-C stays exit 130.
    pub(crate) fn from_hook(hook: &'static str, err: Error) -> Self {
        match err {
            Self::Refused(reason) => Self::Vetoed { hook, reason },
            vetoed @ Self::Vetoed { .. } => vetoed,
            state if state.is_unavailable() || matches!(state, Self::Interrupted | Self::Serialization(_)) => state,
            other => Self::Hook {
                hook,
                source: Box::new(other),
            },
        }
    }

    /// A [`Error::NotFound`] whose key is shown escaped and cut to a bounded length, since
    /// it echoes what the caller typed.
    pub(crate) fn not_found(what: &'static str, key: impl Into<String>) -> Self {
        let key: String = key.into();
        let key = if key.chars().count() > crate::domain::ECHO_CHARS || key.chars().any(char::is_control) {
            crate::domain::shown(&key)
        } else {
            key
        };
        Self::NotFound { what, key }
    }

    /// Whether the database, not the input, made this fail in a way that will fail the same
    /// way for the next item: unreachable, read-only, shutting down, a pooler that cannot
    /// carry the command. Bulk commands stop at the first such error instead of failing
    /// every remaining row.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::LockTimeout(_) | Self::Schema(_) | Self::MissingHooks(_)
        )
    }

    /// Whether a bulk command (import, the sweeper) stops at this error instead of going on
    /// with the next item: the database is unavailable ([`Error::is_unavailable`]) or the
    /// operator interrupted the command.
    pub fn ends_a_batch(&self) -> bool {
        self.is_unavailable() || matches!(self, Self::Interrupted)
    }

    /// Whether this is a lock wait that timed out: PostgreSQL's `lock_timeout` (SQLSTATE
    /// 55P03), or SQLite's busy timeout (another writer held the write lock). Both are
    /// [`Error::Unavailable`] (exit 6), with nothing changed; so is [`Error::LockTimeout`],
    /// the CLI's report of its own `--lock-timeout`.
    pub fn is_lock_timeout(&self) -> bool {
        matches!(self, Self::LockTimeout(_))
            || matches!(self, Self::Unavailable(m) if m.starts_with(LOCK_TIMEOUT_ADVICE) || m.starts_with(SQLITE_BUSY_ADVICE))
    }

    /// Whether this error means "the database gave up on this transaction because of a
    /// concurrent one; run it again" (SQLSTATE 40001 or 40P01).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Serialization(_))
    }
}

/// The start of the message of a PostgreSQL `lock_timeout` that expired (SQLSTATE 55P03).
const LOCK_TIMEOUT_ADVICE: &str = "lock_timeout expired while the command waited for a lock another session holds: nothing was changed; run it again when that session is done, or raise lock_timeout for this role";

/// The start of the message of a SQLite busy timeout that expired (`SQLITE_BUSY`).
const SQLITE_BUSY_ADVICE: &str = "the SQLite database stayed locked by another writer past the busy timeout";

/// What to do about a PostgreSQL error that is the server's state rather than the command's
/// input, by SQLSTATE (PostgreSQL manual, appendix A "Error Codes"). `None`: not such an
/// error. The returned message is the whole advice; the server's text is appended by the
/// caller.
fn server_state_advice(code: &str, message: &str) -> Option<&'static str> {
    Some(match code {
        // read_only_sql_transaction: a hot standby, or default_transaction_read_only.
        "25006" => {
            "this server is read-only (a standby, or default_transaction_read_only is on): point DATABASE_URL at the primary, or list the primary in a multi-host URL with target_session_attrs=read-write"
        }
        // admin_shutdown: the same code and text for a fast shutdown and for an
        // administrator's pg_terminate_backend, so the advice covers both.
        "57P01" => {
            "the server ended this connection (an administrator's pg_terminate_backend, or a shutdown for a restart or failover): nothing more was done; run the command again, against the new primary if the server is going away"
        }
        // crash_shutdown
        "57P02" => {
            "the server crashed and ended every connection (it restarts or fails over): run the command again once it is up"
        }
        // lock_not_available: lock_timeout, set on the role, the database or in DATABASE_URL.
        "55P03" if message.contains("lock timeout") => LOCK_TIMEOUT_ADVICE,
        // query_canceled by statement_timeout (a cancel by Ctrl-C is told apart by the caller).
        "57014" if message.contains("statement timeout") => {
            "statement_timeout expired while a statement of the command was running or waiting for a lock: nothing was changed; run it again, or raise statement_timeout for this role"
        }
        // idle_in_transaction_session_timeout
        "25P03" => {
            "idle_in_transaction_session_timeout ended the connection while the command held a transaction open (waiting for its own input or work): nothing was changed; run it again, or raise the timeout for this role"
        }
        // cannot_connect_now: starting up or in recovery.
        "57P03" => {
            "the server is starting up or in recovery and does not accept connections yet: wait, or point DATABASE_URL at the primary"
        }
        // invalid_catalog_name
        "3D000" => "the database does not exist: check the database name in DATABASE_URL",
        // invalid_authorization_specification, invalid_password
        "28000" | "28P01" => {
            "the server refused the login: check the user and password in DATABASE_URL (or database_url_file)"
        }
        // too_many_connections
        "53300" => "the server has no free connection slots: retry later, or go through a connection pooler",
        // duplicate_prepared_statement, invalid_sql_statement_name: a transaction-mode
        // pooler sent our named prepared statements to another server connection.
        "42P05" | "26000" if message.contains("sqlx_") => {
            "a transaction-mode connection pooler does not keep prepared statements: use PgBouncer >= 1.21 with max_prepared_statements > 0 (e.g. 200), or pool_mode = session, or connect directly"
        }
        // PgBouncer in pool_mode = statement refuses every transaction block.
        "08P01" if message.contains("statement pooling mode") => {
            "the connection pooler runs pool_mode = statement, which refuses transactions: accountctl needs pool_mode = session or transaction (or a direct connection)"
        }
        // The protocol violation PgBouncer reports for an unsupported startup parameter.
        "08P01" if message.contains("unsupported startup parameter") => {
            "the connection pooler rejected a startup parameter: add it to the pooler's ignore_startup_parameters"
        }
        // connection_exception and its subclasses
        c if c.starts_with("08") => {
            "the connection to the server failed: check that it is up and that DATABASE_URL points at it"
        }
        _ => return None,
    })
}

/// The human message for a violated constraint, by its name in the migrations. Constraint
/// names are the same on both backends so one table serves both.
fn constraint_message(name: &str) -> Option<&'static str> {
    Some(match name {
        "users_username_ci_key" => "that username is already taken (usernames are unique regardless of case)",
        "passports_value_key" => "that email address or phone number already belongs to a user",
        "users_external_never_admin" => {
            "an external user can never be admin: convert the user to internal first (user convert --to-internal), then assign admin"
        }
        "users_external_no_storage" => "an external user cannot use storage",
        "external_identities_provider_subject_key" => "that (provider, subject) identity already belongs to a user",
        "workspaces_name_ci_key" => "a workspace with that name already exists",
        "workspaces_one_root" => "there is already a root workspace",
        "roles_name_ci_key" => "a role with that name already exists in the workspace",
        "workspace_types_slug_key" => "a workspace type with that slug already exists",
        "erasure_requests_one_pending" => "an erasure request for that user is already pending",
        "folders_one_home_per_user" => "the user already has a home folder",
        "users_username_not_an_id" => {
            "a username may not have the shape of a user id (uuid), an email or a phone number"
        }
        "workspaces_name_folded_key" => {
            "a workspace with that name already exists (names are unique regardless of case)"
        }
        "users_keep_an_active_admin" => {
            "refusing: it is the last active admin, and the instance must keep at least one (make another user admin first; refused by the database)"
        }
        "users_erasure_pending_inactive" => {
            "refused by the database: a user with a pending erasure request stays inactive (cancel the request first)"
        }
        "memberships_root_keeps_a_member" => {
            "the root workspace must keep at least one member: add another member first (refused by the database)"
        }
        "memberships_external_not_in_root" => {
            "refused by the database: external users cannot join the root workspace or hold its roles (convert the user to internal first)"
        }
        _ => return None,
    })
}

const CONSTRAINT_NAMES: &[&str] = &[
    "users_username_ci_key",
    "passports_value_key",
    "users_external_never_admin",
    "users_external_no_storage",
    "external_identities_provider_subject_key",
    "workspaces_name_ci_key",
    "workspaces_one_root",
    "roles_name_ci_key",
    "workspace_types_slug_key",
    "erasure_requests_one_pending",
    "folders_one_home_per_user",
    "users_username_not_an_id",
    "workspaces_name_folded_key",
    "users_keep_an_active_admin",
    "users_erasure_pending_inactive",
    "memberships_root_keeps_a_member",
    "memberships_external_not_in_root",
];

/// SQLite names a violated plain UNIQUE index or constraint by its columns
/// ("UNIQUE constraint failed: passports.kind, passports.value"), not by its name; this maps
/// those column lists to the constraint names PostgreSQL reports, so both backends print
/// the same message.
fn sqlite_unique_columns(columns: &str) -> Option<&'static str> {
    Some(match columns {
        "users.username" => "users_username_ci_key",
        "passports.kind, passports.value" => "passports_value_key",
        "external_identities.provider, external_identities.subject" => "external_identities_provider_subject_key",
        "workspace_types.slug" => "workspace_types_slug_key",
        "workspaces.is_root" => "workspaces_one_root",
        "workspaces.name_folded" => "workspaces_name_folded_key",
        "erasure_requests.user_id" => "erasure_requests_one_pending",
        "folders.user_id" => "folders_one_home_per_user",
        _ => return None,
    })
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::error::ErrorKind;
        match &err {
            sqlx::Error::Io(e) => Self::Unavailable(format!(
                "the connection to the database failed ({e}): check that the server is up and that DATABASE_URL points at it"
            )),
            sqlx::Error::Tls(e) => Self::Unavailable(format!("TLS: {e}")),
            sqlx::Error::PoolTimedOut => Self::Unavailable("timed out waiting for a connection".into()),
            // What sqlx reports when the server connection is not in a transaction right after
            // `BEGIN`: a transaction-mode pooler that lost or switched the server connection.
            sqlx::Error::BeginFailed => Self::Unavailable(
                "the server connection was not in a transaction right after BEGIN (a transaction-mode connection pooler switched or lost it): nothing was changed; run the command again, or connect directly or through pool_mode = session".into(),
            ),
            sqlx::Error::WorkerCrashed => Self::Unavailable("the database driver's connection worker stopped: run the command again".into()),
            sqlx::Error::PoolClosed => Self::Unavailable("connection pool closed".into()),
            // What sqlx reports when a notification arrives where a query's reply belongs: the
            // connection went through a transaction-mode pooler to a server connection on
            // which someone else LISTENs.
            sqlx::Error::Protocol(m) if m.contains("NotificationResponse") => Self::Unavailable(format!(
                "the connection pooler handed this command a server connection with a LISTEN on it: run listeners over a direct or session-mode connection ({m})"
            )),
            // The stream carried something the protocol does not allow there: the connection
            // is unusable, whatever the command was doing.
            sqlx::Error::Protocol(m) => Self::Unavailable(format!(
                "the connection to the database broke mid-command (protocol error: {m}): nothing more was done; run the command again"
            )),
            sqlx::Error::Database(db) => {
                // PostgreSQL names the constraint; SQLite puts it in the message.
                let message = db.message().to_owned();
                let name = db
                    .constraint()
                    .map(str::to_owned)
                    .or_else(|| {
                        CONSTRAINT_NAMES
                            .iter()
                            .find(|n| message.contains(*n))
                            .map(|n| (*n).to_owned())
                    })
                    .or_else(|| {
                        message
                            .strip_prefix("UNIQUE constraint failed: ")
                            .and_then(sqlite_unique_columns)
                            .map(str::to_owned)
                    });
                let friendly = name.as_deref().and_then(constraint_message).map(str::to_owned);
                let sqlite_trigger = db.code().as_deref() == Some("1811");
                match db.kind() {
                    ErrorKind::UniqueViolation | ErrorKind::ForeignKeyViolation => {
                        Self::Conflict(friendly.unwrap_or(message))
                    }
                    ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                        Self::Refused(friendly.unwrap_or(message))
                    }
                    _ if sqlite_trigger => Self::Refused(friendly.unwrap_or(message)),
                    _ => match db.code().as_deref() {
                        // SQLITE_BUSY (5) and its extended codes: another writer kept the
                        // database locked for longer than the busy timeout.
                        Some("5" | "261" | "517" | "773") => Self::Unavailable(format!(
                            "{SQLITE_BUSY_ADVICE} ({message}); try again"
                        )),
                        // SQLITE_READONLY (8) and its extended codes: a `?mode=ro` URL, a
                        // read-only file or directory; the counterpart of a standby.
                        Some(code)
                            if code.parse::<i64>().is_ok_and(|c| c & 0xff == 8)
                                && !code.starts_with('0')
                                && code.len() <= 4 =>
                        {
                            Self::Unavailable(format!(
                                "the SQLite database is read-only (a ?mode=ro URL, or a file or directory this user may not write): point DATABASE_URL at a writable database ({message})"
                            ))
                        }
                        // query_canceled by Database::interrupt (not by a statement_timeout).
                        Some("57014") if message.contains("user request") => Self::Interrupted,
                        // serialization_failure, deadlock_detected: the transaction may
                        // succeed when run again (see Database::retrying).
                        Some(code @ ("40001" | "40P01")) => Self::Serialization(format!(
                            "the transaction conflicted with a concurrent one ({}, SQLSTATE {code}) and still did after retrying; nothing was changed, run the command again: {message}",
                            if code == "40001" {
                                "serialization failure"
                            } else {
                                "deadlock"
                            }
                        )),
                        Some(code) => match server_state_advice(code, &message) {
                            Some(advice) => {
                                // A row lock's timeout says which row's table it waited for
                                // ("while locking tuple (0,3) in relation \"users\"").
                                let context = db
                                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                                    .and_then(|e| e.r#where())
                                    .filter(|w| code == "55P03" && w.starts_with("while "))
                                    .map(|w| format!("; {w}"))
                                    .unwrap_or_default();
                                Self::Unavailable(format!("{advice} (server said: {message}{context})"))
                            }
                            None => Self::Database(err),
                        },
                        None => Self::Database(err),
                    },
                }
            }
            _ => Self::Database(err),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(e) => Self::from(e),
            other => Self::Schema(format!("migration failed: {other}")),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Self::Internal(format!("JSON: {err}"))
    }
}

/// Shorthand used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_server_is_told_apart_from_bad_input() {
        let advice = server_state_advice("25006", "cannot execute INSERT in a read-only transaction").expect("advice");
        assert!(advice.contains("point DATABASE_URL at the primary"), "{advice}");
        for code in ["57P01", "57P03", "08006", "08001", "53300"] {
            assert!(server_state_advice(code, "").is_some(), "{code}");
        }
        assert!(server_state_advice("23505", "duplicate key").is_none());
    }

    #[test]
    fn lock_timeouts_are_told_apart_on_both_backends() {
        let advice = server_state_advice("55P03", "canceling statement due to lock timeout").expect("advice");
        assert!(
            Error::Unavailable(format!(
                "{advice} (server said: canceling statement due to lock timeout)"
            ))
            .is_lock_timeout()
        );
        assert!(Error::Unavailable(format!("{SQLITE_BUSY_ADVICE} (database is locked); try again")).is_lock_timeout());
        let standby = server_state_advice("25006", "read-only").expect("advice");
        assert!(!Error::Unavailable(standby.to_owned()).is_lock_timeout());
        assert!(server_state_advice("55P03", "could not obtain lock on row in relation \"users\"").is_none());
    }

    #[test]
    fn lost_prepared_statements_name_the_pooler_setting() {
        let advice = server_state_advice("42P05", r#"prepared statement "sqlx_s_1" already exists"#).expect("advice");
        assert!(advice.contains("max_prepared_statements"), "{advice}");
        let advice = server_state_advice("26000", r#"prepared statement "sqlx_s_3" does not exist"#).expect("advice");
        assert!(advice.contains("max_prepared_statements"), "{advice}");
    }

    #[test]
    fn connection_level_failures_and_timeouts_exit_6_naming_the_cause() {
        // What sqlx reports when a transaction-mode pooler switched the server connection
        // after BEGIN (seen once in 160 commands through PgBouncer 1.18).
        let err = Error::from(sqlx::Error::BeginFailed);
        assert_eq!(err.exit_code(), 6, "{err}");
        assert!(err.to_string().contains("after BEGIN"), "{err}");
        let err = Error::from(sqlx::Error::Protocol("unexpected message".into()));
        assert_eq!(err.exit_code(), 6, "{err}");
        let advice = server_state_advice("57014", "canceling statement due to statement timeout").expect("advice");
        assert!(advice.contains("statement_timeout"), "{advice}");
        let advice = server_state_advice("55P03", "canceling statement due to lock timeout").expect("advice");
        assert!(advice.contains("lock_timeout"), "{advice}");
        let advice =
            server_state_advice("57P01", "terminating connection due to administrator command").expect("advice");
        assert!(advice.contains("pg_terminate_backend"), "{advice}");
        let advice =
            server_state_advice("08P01", "transaction blocks not allowed in statement pooling mode").expect("advice");
        assert!(advice.contains("pool_mode = statement"), "{advice}");
        // A hook's statement that the database failed keeps the database's classification.
        let err = Error::from_hook("audit", Error::Unavailable("gone".into()));
        assert_eq!(err.exit_code(), 6, "{err}");
    }

    #[test]
    fn conflicts_with_concurrent_transactions_exit_4_and_are_retryable() {
        let err = Error::Serialization("conflict".into());
        assert_eq!(err.exit_code(), 4);
        assert!(err.is_retryable());
        assert!(!Error::Conflict("taken".into()).is_retryable());
        assert!(Error::Unavailable("read-only".into()).is_unavailable());
    }
}
