//! The admin command line, as a library entry point: [`run`] parses the arguments, builds
//! the [`App`] from the caller's [`AppBuilder`] (so an application's own admin binary fires
//! its own hooks, Django's `manage.py` model), runs the command, and maps the outcome to an
//! exit code. The `accountctl` binary is `run(App::builder())`.
//!
//! ```no_run
//! // src/bin/myapp-admin.rs of an application
//! # use std::sync::Arc;
//! # struct CalendarHook;
//! # fn calendar_hook() -> Arc<dyn accountctl::lifecycle::UserLifecycleHook> { unimplemented!() }
//! fn main() -> std::process::ExitCode {
//!     accountctl::cli::run(accountctl::App::builder().hook(calendar_hook()))
//! }
//! ```
//!
//! Layout: global options and the command tree here, one module per noun (`user.rs`,
//! `invite.rs`, …), results through one printer (`output.rs`), prompts in `prompt.rs`. The
//! CLI uses services and domain types only; it never writes SQL.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use crate::app::AppBuilder;
use crate::db::{Database, DatabaseUrl, InvalidationChannel};
use crate::{App, Error};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// `eprintln!` that never panics: a line for stderr, dropped when stderr is a closed pipe
/// (`accountctl … 2>&1 | head -3`), where `eprintln!` would panic (exit 101) after the work
/// was done. Stdout goes through the printer, which handles a closed pipe the same way.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod audit;
mod auth;
mod bootstrap;
mod config;
mod gdpr;
mod hooks;
mod invite;
mod mail;
mod man;
mod output;
mod paging;
mod prompt;
mod role;
mod session;
mod user;
mod workspace;

use output::{Format, Printer};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  internal error (including a lifecycle hook or merge handler that failed:
     nothing changed)
  2  usage error or invalid value (malformed email, username, duration...); a
     destructive command without --yes when stdin is not a terminal; a password
     given on the command line (refused, never echoed)
  3  not found
  4  conflict or refused by an invariant (already exists, last admin, external admin,
     expired invite, wrong password, aborted at the prompt) or by a hook's veto
     (nothing changed); a conflict with concurrent transactions that persisted
     through the retries
  5  partial failure of a batch
  6  database unavailable, read-only (a standby), shutting down or in recovery, a
     connection pooler that cannot carry the command, a lock not released within
     --lock-timeout, no SQLite database at the path (only `migrate` and `bootstrap`
     create one), schema behind (run `migrate`), an SMTP relay that cannot be
     reached or refuses the mail (\"mail not delivered\"), or this binary lacks a
     lifecycle hook or merge handler the database records (use the application's
     admin binary); the message says what to do
130  interrupted (Ctrl-C): at a prompt nothing changed; during a command the
     statement in flight was canceled and its transaction rolled back

Results go to stdout; logs and prompts go to stderr.";

/// Administer application accounts directly in the shared database, firing the same
/// user-lifecycle hooks as the application server.
#[derive(Debug, Parser)]
#[command(name = "accountctl", version, about, after_long_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes, shown under their own heading in every command's help.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Global options")]
struct Global {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB. Default: the config file's
    /// database_url (or database_url_file), else sqlite://accountctl.db in the working
    /// directory. Only `migrate` and `bootstrap` create a missing SQLite file.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,
    /// Config file (TOML). Default: $XDG_CONFIG_HOME/accountctl/config.toml, else
    /// /etc/accountctl/config.toml, when present. See `config show`.
    #[arg(
        long,
        env = "ACCOUNTCTL_CONFIG",
        global = true,
        value_name = "PATH",
        hide_env_values = true
    )]
    config: Option<std::path::PathBuf>,
    /// Output format of results.
    #[arg(short, long, value_enum, default_value = "table", global = true)]
    output: Format,
    /// Print only ids (one per line).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Tables with full ids and every column, however wide.
    #[arg(long, global = true)]
    wide: bool,
    /// More logging on stderr (-v info: what each command did, summaries of runs that
    /// changed nothing included; -vv debug: statements' timing, hook calls). Env RUST_LOG
    /// overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log lines on stderr as text, or as one JSON object per line (timestamp, level,
    /// target, fields) for journald or Loki.
    #[arg(long, value_enum, default_value = "text", global = true, value_name = "FORMAT")]
    log_format: LogFormat,
    /// Answer yes to confirmations (required for destructive commands without a terminal).
    #[arg(long, global = true)]
    yes: bool,
    /// Give up waiting for a lock another session holds after this long (e.g. 5s, 2m): exit
    /// 6 naming the timeout, nothing changed. PostgreSQL: `lock_timeout` for each of the
    /// run's transactions (default: the server's, usually no limit); SQLite: the busy timeout
    /// (default 10s). Whatever the limit, a run that has waited 3 s says on stderr what it
    /// waits for and who holds it (PostgreSQL).
    #[arg(
        long,
        env = "ACCOUNTCTL_LOCK_TIMEOUT",
        global = true,
        value_name = "DURATION",
        hide_env_values = true
    )]
    lock_timeout: Option<String>,
    /// Who is acting, as recorded in the audit trail. Default: the config file's actor,
    /// else the OS user.
    #[arg(
        long,
        env = "ACCOUNTCTL_ACTOR",
        global = true,
        hide_env_values = true,
        value_name = "NAME"
    )]
    actor: Option<String>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One human-readable line per event, coloured on a terminal unless NO_COLOR is set.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations (and, with --invalidations, change the database's
    /// invalidation channel).
    Migrate(MigrateArgs),
    /// Migrate, create the root workspace and optionally the first admin (idempotent).
    Bootstrap(bootstrap::BootstrapArgs),
    /// Users: create, list, show, delete, restore, disable, enable, set-password, convert,
    /// merge, import, export.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Workspaces: create, list, show, members, delete.
    #[command(subcommand)]
    Workspace(workspace::WorkspaceCmd),
    /// Workspace types: create, list.
    #[command(subcommand)]
    WorkspaceType(workspace::WorkspaceTypeCmd),
    /// Roles of workspaces, and role assignment (instance role admin | user, or workspace roles).
    #[command(subcommand)]
    Role(role::RoleCmd),
    /// Invites into workspaces: create, list, show, revoke, resend, accept, prune. Notifications
    /// are queued for the application's mailer; `create|resend --send` mails the link by SMTP.
    #[command(subcommand)]
    Invite(invite::InviteCmd),
    /// The right to erasure: requests, the sweeper for cron, status for monitoring.
    #[command(subcommand)]
    Gdpr(gdpr::GdprCmd),
    /// Login sessions: list, revoke, prune.
    #[command(subcommand)]
    Session(session::SessionCmd),
    /// The library's login path.
    #[command(subcommand)]
    Auth(auth::AuthCmd),
    /// The audit trail: list events (filtered, paged) and show one.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to generate for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write one page per command into --dir.
    Man {
        /// Write accountctl.1, accountctl-user.1, accountctl-user-create.1, … into this
        /// directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
    /// The effective configuration: each setting, its value and where it came from (flag,
    /// env, file, default), secrets redacted.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The hook registry: which lifecycle hooks and merge handlers the database records.
    #[command(subcommand)]
    Hooks(hooks::HooksCmd),
}

/// `accountctl config …`.
#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Print each setting as {key, value, source}.
    Show,
}

/// What a command needs: the wired library, the printer and the confirmation switch.
pub(crate) struct Ctx {
    pub app: App,
    pub out: Printer,
    /// `-v` count: notes that say nothing happened appear only with it (cron mails stderr).
    pub verbose: u8,
    pub yes: bool,
    /// The settings resolved from flags, environment and config file.
    pub settings: config::Resolved,
    /// The binary's own name, for commands that stderr hints suggest.
    pub bin: String,
}

impl Ctx {
    /// A `<user>` argument as typed: username, email, phone, id or a unique id prefix (see
    /// `Accounts::resolve`).
    async fn user(&self, text: &str) -> Result<crate::domain::UserRef, Error> {
        self.app.accounts().resolve(text).await
    }
}

/// Runs the command line of this process (`std::env::args_os`) over `builder`, and returns
/// the exit code: parse, build the [`App`] (database from `--database-url`, `DATABASE_URL`,
/// the builder's own, or the SQLite default, in that order), run, drain spawned hook work,
/// map the outcome. Help, completions and man pages carry the binary's own name.
pub fn run(builder: AppBuilder) -> ExitCode {
    run_from(std::env::args_os(), builder)
}

/// [`run`] with explicit arguments (the first is the program name).
pub fn run_from<I, T>(args: I, builder: AppBuilder) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let branding = builder.branding().clone();
    let bin = branding.name.clone().unwrap_or_else(|| {
        args.first()
            .and_then(|a| std::path::Path::new(a).file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "accountctl".to_owned())
    });
    BRANDING.get_or_init(|| branding.clone());
    let command = cli_command(&bin);
    let parsed = command
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    init_tracing(cli.global.verbose, cli.global.log_format);
    let resolved = match resolve(&cli.global, &matches, &bin) {
        Ok(resolved) => resolved,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&Error::Internal(format!("cannot start the async runtime: {e}"))),
    };
    let actor = resolved.actor.0.clone();
    // The actor is stored in every audit row and printed back: the same rule as names.
    let actor = match crate::domain::clean_text("actor", &actor, 200) {
        Ok(Some(actor)) => actor,
        Ok(None) => os_user(),
        Err(e) => return fail(&e),
    };
    let run =
        RunInfo {
            command: command_path(&matches),
            lock_timeout_shown: cli.global.lock_timeout.as_ref().map(|text| {
                match matches.value_source("lock_timeout") {
                    Some(clap::parser::ValueSource::EnvVariable) => format!("ACCOUNTCTL_LOCK_TIMEOUT={text}"),
                    _ => format!("--lock-timeout {text}"),
                }
            }),
        };
    match runtime.block_on(crate::lifecycle::with_actor(
        actor,
        execute(cli, builder, bin, resolved, run),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// What a run's messages name about the run itself.
struct RunInfo {
    /// The command as typed, without its arguments: `user disable`, `gdpr purge`.
    command: String,
    /// `--lock-timeout 5s` or `ACCOUNTCTL_LOCK_TIMEOUT=5s`, as given, when given.
    lock_timeout_shown: Option<String>,
}

/// The subcommand names of `matches`, e.g. `user disable`.
fn command_path(matches: &clap::ArgMatches) -> String {
    let mut names = Vec::new();
    let mut current = matches;
    while let Some((name, sub)) = current.subcommand() {
        names.push(name.to_owned());
        current = sub;
    }
    names.join(" ")
}

/// How long a run waits for another session's lock before saying so on stderr:
/// `ACCOUNTCTL_LOCK_NOTICE_AFTER` (a duration, for tests and impatient operators), else 3 s.
fn lock_notice_after() -> Result<Duration, Error> {
    match std::env::var("ACCOUNTCTL_LOCK_NOTICE_AFTER") {
        Ok(text) if !text.trim().is_empty() => crate::domain::parse_duration(&text)?
            .to_std()
            .map_err(|_| Error::Invalid(format!("ACCOUNTCTL_LOCK_NOTICE_AFTER {text:?} is not a duration"))),
        _ => Ok(LOCK_NOTICE_AFTER),
    }
}

/// The default of [`lock_notice_after`].
const LOCK_NOTICE_AFTER: Duration = Duration::from_secs(3);

/// The lock-wait notice of a run ([`Database::watch_lock_wait`]): one line on stderr once
/// the run has waited long enough for a lock another session holds. What it saw is kept for
/// the message of a lock timeout. Its monitoring connection is closed by [`LockWatch::stop`].
#[derive(Clone)]
struct LockWatch {
    stop: tokio_util::sync::CancellationToken,
    tracker: tokio_util::task::TaskTracker,
    seen: std::sync::Arc<std::sync::Mutex<Option<crate::db::LockWait>>>,
}

impl LockWatch {
    /// Starts watching `db` (nothing happens before `after`); `limit` is the lock timeout as
    /// given, if any, for the notice to name.
    fn start(db: Database, after: Duration, limit: Option<String>) -> Self {
        let watch = Self {
            stop: tokio_util::sync::CancellationToken::new(),
            tracker: tokio_util::task::TaskTracker::new(),
            seen: std::sync::Arc::default(),
        };
        let (stop, seen) = (watch.stop.clone(), watch.seen.clone());
        watch.tracker.spawn(async move {
            if let Some(wait) = db.watch_lock_wait(after, &stop).await {
                let ends = match &limit {
                    Some(shown) => format!("the command goes on once it is released, or gives up at {shown}"),
                    None => "the command goes on once it is released; Ctrl-C cancels it, --lock-timeout DURATION gives up after that long".to_owned(),
                };
                note!(
                    "waiting for {} ({} s so far): {ends}",
                    output::escape_controls(&wait.to_string()),
                    wait.waited.as_secs()
                );
                *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(wait);
            }
        });
        watch.tracker.close();
        watch
    }

    /// Stops watching and waits (up to 3 s) until the monitoring connection is closed;
    /// returns the lock wait it reported, if any.
    async fn stop(&self) -> Option<crate::db::LockWait> {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.tracker.wait()).await;
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The error of a lock wait that `--lock-timeout` ended: the command, the timeout as given,
/// and what it waited for (from the notice when one was printed, else the server's words).
fn lock_timeout_error(run: &RunInfo, shown: &str, seen: Option<&crate::db::LockWait>, err: &Error) -> Error {
    let what = match (seen, err) {
        (Some(wait), _) => format!("; it waited for {wait}"),
        (None, Error::Unavailable(m)) if m.contains("SQLite") => {
            "; it waited for the SQLite write lock, which another writer held".to_owned()
        }
        (None, Error::Unavailable(m)) => m
            .split_once("(server said: ")
            .map(|(_, said)| format!("; server said: {}", said.trim_end_matches(')')))
            .unwrap_or_default(),
        (None, _) => String::new(),
    };
    Error::LockTimeout(format!(
        "`{}` gave up waiting for a lock another session holds ({shown}){what}: nothing was changed; run it again once that session is done, or allow a longer wait",
        run.command
    ))
}

/// The application's branding for this process (set once by [`run_from`]).
static BRANDING: std::sync::OnceLock<crate::app::Branding> = std::sync::OnceLock::new();

/// The command tree under the binary's own name, with the application's version and
/// description when it gave them ([`AppBuilder::version`], [`AppBuilder::about`]).
fn cli_command(bin: &str) -> clap::Command {
    let name: &'static str = Box::leak(bin.to_owned().into_boxed_str());
    let mut command = Cli::command().name(name).bin_name(name);
    if let Some(branding) = BRANDING.get() {
        if let Some(version) = &branding.version {
            // clap keeps the version for the process's life, as it does the name above.
            let version: &'static str = Box::leak(version.clone().into_boxed_str());
            command = command.version(version);
        }
        if let Some(about) = &branding.about {
            command = command.about(about.clone()).long_about(about.clone());
        }
    }
    command
}

/// How long the CLI waits at exit for spawned hook work (logout hooks) to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Each setting from flag > environment variable > config file > default.
fn resolve(global: &Global, matches: &clap::ArgMatches, bin: &str) -> Result<config::Resolved, Error> {
    use clap::parser::ValueSource;
    use config::Source;
    let source_of = |id: &str| match matches.value_source(id) {
        Some(ValueSource::CommandLine) => Source::Flag,
        Some(ValueSource::EnvVariable) => Source::Env,
        _ => Source::Default,
    };
    let branding = BRANDING.get().cloned().unwrap_or_default();
    let file = config::locate(global.config.as_deref(), &branding, bin)?;
    let loaded = file.as_deref().map(config::load).transpose()?.unwrap_or_default();
    let database_url = match (&global.database_url, &loaded.database_url, &loaded.database_url_file) {
        (Some(url), _, _) => {
            let source = source_of("database_url");
            if source == Source::Flag && DatabaseUrl::parse(url).is_ok_and(|u| u.has_secret()) {
                tracing::warn!(
                    "the database URL given with --database-url holds a password, which other local users can see in `ps`: set DATABASE_URL or database_url_file (config file) instead"
                );
            }
            (Some(url.clone()), source)
        }
        (None, Some(url), _) => (Some(url.clone()), Source::File),
        (None, None, Some(path)) => (Some(config::read_secret_file("database_url_file", path)?), Source::File),
        (None, None, None) => (None, Source::Default),
    };
    let actor = match (&global.actor, &loaded.actor) {
        (Some(actor), _) => (actor.clone(), source_of("actor")),
        (None, Some(actor)) => (actor.clone(), Source::File),
        (None, None) => (os_user(), Source::Default),
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let trash_retention = match (env("ACCOUNTCTL_TRASH_RETENTION"), &loaded.trash_retention) {
        (Some(text), _) => (Some(text), Source::Env),
        (None, Some(text)) => (Some(text.clone()), Source::File),
        (None, None) => (None, Source::Default),
    };
    if let (Some(text), Source::File) = &trash_retention {
        crate::domain::parse_duration(text)?;
    }
    let invite_link = match (env("ACCOUNTCTL_INVITE_LINK"), &loaded.invite_link) {
        (Some(link), _) => {
            config::check_invite_link(&link, "ACCOUNTCTL_INVITE_LINK")?;
            (Some(link), Source::Env)
        }
        (None, Some(link)) => (Some(link.clone()), Source::File),
        (None, None) => (None, Source::Default),
    };
    Ok(config::Resolved {
        file,
        database_url,
        actor,
        trash_retention,
        invite_link,
        smtp: loaded.smtp,
    })
}

/// The SQLite file a URL names, when it is a file (not `:memory:` or `mode=memory`).
fn sqlite_file(url: &DatabaseUrl) -> Option<std::path::PathBuf> {
    use std::str::FromStr;
    if url.backend() != crate::db::Backend::Sqlite || url.expose().contains("mode=memory") {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url.expose()).ok()?;
    let path = options.get_filename();
    (!path.as_os_str().is_empty() && path != std::path::Path::new(":memory:")).then(|| path.to_owned())
}

async fn execute(
    cli: Cli,
    mut builder: AppBuilder,
    bin: String,
    resolved: config::Resolved,
    run: RunInfo,
) -> Result<(), Error> {
    let out = Printer {
        format: cli.global.output,
        quiet: cli.global.quiet,
        wide: cli.global.wide,
        terminal: std::io::IsTerminal::is_terminal(&std::io::stdout()),
    };
    match cli.command {
        // Rendered into memory first: the generators panic or fail on a closed pipe.
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli_command(&bin), bin.clone(), &mut script);
            return output::write_stdout(&script);
        }
        Command::Man { dir: None } => {
            let mut command = cli_command(&bin).disable_help_subcommand(true);
            command.build();
            return output::write_stdout(&man::render(&command, None, EXIT_CODES)?);
        }
        Command::Man { dir: Some(dir) } => return man::write_pages(&cli_command(&bin), &dir, &out, EXIT_CODES),
        Command::Config(ConfigCmd::Show) => {
            out.page(&resolved.settings(), &["key", "value", "source"], "key", None);
            return Ok(());
        }
        _ => {}
    }
    if let Some(text) = &cli.global.lock_timeout {
        // Named as typed (and whether it came from the flag or the variable): "30d", not
        // the library's "30days".
        let out_of_range = || {
            Error::Invalid(format!(
                "--lock-timeout (or ACCOUNTCTL_LOCK_TIMEOUT) {text:?}: it must be longer than zero and at most 24 days (PostgreSQL's lock_timeout limit), e.g. 30s or 5m"
            ))
        };
        let timeout = crate::domain::parse_duration(text)?
            .to_std()
            .map_err(|_| out_of_range())?;
        if timeout.is_zero() || timeout > std::time::Duration::from_secs(24 * 24 * 3600) {
            return Err(out_of_range());
        }
        builder = builder.lock_timeout(timeout);
    }
    let notice_after = lock_notice_after()?;
    let creates_database = matches!(cli.command, Command::Migrate(_) | Command::Bootstrap(_));
    let url = match resolved.database_url.0.as_deref() {
        Some(url) => Some(DatabaseUrl::parse(url)?),
        None if builder.has_database() => None,
        None => Some(DatabaseUrl::parse(DatabaseUrl::DEFAULT)?),
    };
    // PostgreSQL `user import` takes a second connection (below); SQLite has one writer anyway.
    let postgres = url
        .as_ref()
        .is_some_and(|u| u.backend() == crate::db::Backend::Postgres);
    if let Some(url) = url {
        // A cron job started in the wrong directory must not create an empty database and
        // then advise `migrate`, which would build a second, empty instance.
        if !creates_database
            && let Some(path) = sqlite_file(&url)
            && !path.exists()
        {
            return Err(Error::Unavailable(format!(
                "no database at {}: only `migrate` and `bootstrap` create one (check --database-url, DATABASE_URL, the config file and the working directory)",
                std::path::absolute(&path).unwrap_or(path).display()
            )));
        }
        builder = builder.database_url(url.expose());
    }
    if let Some(template) = &resolved.invite_link.0 {
        // The outbox rows name the configured link for the application's mailer.
        builder.config_mut().invite_link_template = Some(template.clone());
    }
    if let Some(text) = &resolved.trash_retention.0 {
        builder.config_mut().trash_retention = crate::domain::parse_duration(text)?;
    }
    // The invalidation channel is the database's (recorded by `migrate`): the variable only
    // states what this run expects, and the App refuses to build where the record differs.
    // `migrate --invalidations` changes the record, so the variable must agree with the flag.
    let expected = match std::env::var("ACCOUNTCTL_INVALIDATIONS") {
        Ok(text) => Some(text.parse::<InvalidationChannel>()?),
        Err(_) => None,
    };
    match (&cli.command, expected) {
        (
            Command::Migrate(MigrateArgs {
                invalidations: Some(flag),
            }),
            Some(env),
        ) if env != *flag => {
            return Err(Error::Invalid(format!(
                "ACCOUNTCTL_INVALIDATIONS={env} disagrees with --invalidations {flag}: drop one"
            )));
        }
        (Command::Migrate(MigrateArgs { invalidations: Some(_) }), _) => {}
        (_, Some(channel)) => builder = builder.invalidation_channel(channel),
        (_, None) => {}
    }
    // One connection for the whole run (a short-lived process needs no more), ended cleanly
    // by the close below on every path; `user import` on PostgreSQL takes two, so each
    // batch's `on_user_created` hooks run beside the next batch's writes.
    let connections = if postgres && matches!(cli.command, Command::User(user::UserCmd::Import(_))) {
        2
    } else {
        1
    };
    let build = builder
        .max_connections(connections)
        .short_lived()
        .program_name(bin.clone())
        .build();
    // Ctrl-C while connecting (a server that does not answer, a multi-host URL probing each
    // host) ends the run at once: nothing was done and no connection is open yet.
    let app = tokio::select! {
        app = build => app?,
        signal = tokio::signal::ctrl_c() => {
            signal.map_err(|e| Error::Internal(format!("cannot watch for Ctrl-C: {e}")))?;
            return Err(Error::Interrupted);
        }
    };
    let ctx = Ctx {
        app,
        out,
        verbose: cli.global.verbose,
        yes: cli.global.yes,
        settings: resolved,
        bin,
    };
    // The sweeper stops on a signal by itself, between users; for every other command,
    // Ctrl-C cancels the statement in flight so the connection still ends cleanly.
    let own_signal_handling = matches!(cli.command, Command::Gdpr(gdpr::GdprCmd::Purge { .. }));
    let done = tokio_util::sync::CancellationToken::new();
    // A wait for another session's lock is said on stderr (PostgreSQL).
    let watch = LockWatch::start(ctx.app.db().clone(), notice_after, run.lock_timeout_shown.clone());
    if !own_signal_handling {
        spawn_interrupt_handler(ctx.app.db().clone(), done.clone(), watch.clone());
    }
    let result = match exec(&ctx, cli.command).await {
        Err(err) => Err(with_hint(&ctx, err).await),
        ok => ok,
    };
    done.cancel();
    let seen = watch.stop().await;
    let result = match (result, &run.lock_timeout_shown) {
        (Err(err), Some(shown)) if err.is_lock_timeout() => Err(lock_timeout_error(&run, shown, seen.as_ref(), &err)),
        (result, _) => result,
    };
    // A short-lived process must not lose spawned hook work: drain, bounded.
    let pending = ctx.app.lifecycle.drain(DRAIN_TIMEOUT).await;
    if pending > 0 {
        tracing::warn!(pending, "spawned hook work did not finish before exit");
    }
    ctx.app.db.close().await;
    result
}

/// How long a run waits, after Ctrl-C canceled its statement, for the command to return
/// before it closes the connection and exits anyway (130).
const INTERRUPT_GRACE: Duration = Duration::from_secs(15);

/// Ends the run at Ctrl-C without leaving the server a lost client. A statement in flight is
/// canceled on the server: the command fails with [`Error::Interrupted`] (exit 130), its
/// transaction rolls back and the run closes the connection as on any error. When no
/// statement was running (a prompt, hashing), the command is not waited for: the idle
/// connection is closed here and the process exits with 130. `done` is cancelled once
/// the command has returned.
fn spawn_interrupt_handler(db: Database, done: tokio_util::sync::CancellationToken, watch: LockWatch) {
    tokio::spawn(async move {
        tokio::select! {
            signal = tokio::signal::ctrl_c() => if signal.is_err() { return },
            () = done.cancelled() => return,
        }
        // A canceled statement makes the command return at once; on a loaded machine its
        // unwinding (the rollback, a COPY's remaining rows drained) may still take seconds,
        // and exiting under it would cut a message in half (the server then logs a lost
        // protocol synchronization). So wait generously for it.
        let grace = if db.interrupt().await {
            INTERRUPT_GRACE
        } else {
            Duration::ZERO
        };
        if tokio::time::timeout(grace, done.cancelled()).await.is_ok() {
            return;
        }
        // The lock-wait monitor's connection is ended cleanly too.
        watch.stop().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), db.close()).await;
        // A prompt may have hidden the cursor or switched echo off.
        prompt::restore_terminal();
        note!("error: {}", Error::Interrupted);
        std::process::exit(i32::from(Error::Interrupted.exit_code()));
    });
}

/// An error with what to do next: "did you mean" for a workspace or role name one or two
/// edits away from an existing one, and the 8-character minimum for a short user id prefix.
/// The exit code stays the error's.
async fn with_hint(ctx: &Ctx, err: Error) -> Error {
    let Error::NotFound { what, key } = &err else {
        return err;
    };
    let close = match *what {
        "workspace" | "role" => match ctx.app.reports().close_names(what, key).await {
            Ok(names) if !names.is_empty() => {
                let names: Vec<String> = names
                    .iter()
                    .map(|n| format!("`{}`", output::escape_controls(n)))
                    .collect();
                Some(format!("did you mean {}?", names.join(" or ")))
            }
            _ => None,
        },
        _ => None,
    };
    // Anything found by id (users, sessions, invites, workspaces, roles): a short run of hex
    // digits was most likely an id prefix cut too short.
    let short_prefix = (key.len() < crate::domain::MIN_ID_PREFIX
        && key.len() >= 4
        && key.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
    .then(|| {
        format!(
            "an id prefix needs at least {} characters",
            crate::domain::MIN_ID_PREFIX
        )
    });
    let hint = close.or(short_prefix);
    match hint {
        Some(hint) => Error::NotFound {
            what,
            key: format!("{key} ({hint})"),
        },
        None => err,
    }
}

/// Whether `command` first completes the hook work an earlier run left owed (a process that
/// died between a change's commit and its hooks): the commands that create users or purge
/// them, so re-running the command that crashed completes its work (`hooks replay` does it
/// on its own).
fn completes_owed_work(command: &Command) -> bool {
    match command {
        Command::User(user::UserCmd::Create(_)) => true,
        Command::User(user::UserCmd::Import(args)) => !args.dry_run,
        Command::Gdpr(gdpr::GdprCmd::Purge { dry_run, .. }) => !dry_run,
        Command::Invite(invite::InviteCmd::Accept { .. }) => true,
        _ => false,
    }
}

/// Completes owed hook work (see [`completes_owed_work`]); its failures are reported on
/// stderr and never stop the command.
async fn complete_owed_work(ctx: &Ctx) {
    match ctx.app.hook_work().replay_interrupted().await {
        Ok(report) => {
            if report.completed > 0 {
                note!(
                    "completed hook work an earlier run left owed: {} record(s), {} user(s)",
                    report.completed,
                    report.users
                );
            }
            warn_hook_failures(&report.hook_failures);
        }
        // The command itself reports what refuses it.
        Err(Error::MissingHooks(_)) => {}
        Err(err) => tracing::warn!(error = %err, "could not complete owed hook work (run `hooks replay` later)"),
    }
}

/// Prints a warning on stderr for each hook that failed on a change that stands (created,
/// login): the command still succeeds (the hook contract); `hooks list` shows the work owed.
pub(crate) fn warn_hook_failures(failures: &[crate::domain::HookFailure]) {
    for f in failures {
        note!(
            "warning: the {} hook failed on {} (the change stands; its work is owed, see `hooks list`): {}",
            f.hook,
            f.event,
            output::escape_controls(&f.error)
        );
    }
}

/// Runs one database command.
async fn exec(ctx: &Ctx, command: Command) -> Result<(), Error> {
    match command {
        Command::Migrate(args) => migrate(ctx, args).await,
        Command::Bootstrap(args) => bootstrap::exec(ctx, args).await,
        Command::Hooks(cmd) => hooks::exec(ctx, cmd).await,
        command => {
            ctx.app.ensure_schema_current().await?;
            if completes_owed_work(&command) {
                complete_owed_work(ctx).await;
            }
            match command {
                Command::User(cmd) => user::exec(ctx, cmd).await,
                Command::Workspace(cmd) => workspace::exec(ctx, cmd).await,
                Command::WorkspaceType(cmd) => workspace::exec_type(ctx, cmd).await,
                Command::Role(cmd) => role::exec(ctx, cmd).await,
                Command::Invite(cmd) => invite::exec(ctx, cmd).await,
                Command::Session(cmd) => session::exec(ctx, cmd).await,
                Command::Gdpr(cmd) => gdpr::exec(ctx, cmd).await,
                Command::Auth(cmd) => auth::exec(ctx, cmd).await,
                Command::Audit(cmd) => audit::exec(ctx, cmd).await,
                Command::Migrate(_)
                | Command::Bootstrap(_)
                | Command::Hooks(_)
                | Command::Completions { .. }
                | Command::Config(_)
                | Command::Man { .. } => Ok(()),
            }
        }
    }
}

/// `migrate`'s options.
#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// Change the channel that carries capability-cache invalidations between processes,
    /// which the database records: `notify` (PostgreSQL's LISTEN/NOTIFY, its default) or
    /// `table` (rows in cache_invalidations, which listeners poll; SQLite's only channel,
    /// and for engines without LISTEN/NOTIFY). Audited; running servers follow.
    #[arg(long, value_name = "CHANNEL", value_parser = parse_channel)]
    invalidations: Option<InvalidationChannel>,
}

/// `--invalidations`: `notify` or `table`.
fn parse_channel(text: &str) -> Result<InvalidationChannel, String> {
    text.parse().map_err(|e: Error| e.to_string())
}

/// `migrate`. JSON: `{applied: [versions], app_applied: [versions], hooks_recorded: [names],
/// hooks_retired: [names], invalidations: "notify"|"table", invalidations_changed: bool}`.
async fn migrate(ctx: &Ctx, args: MigrateArgs) -> Result<(), Error> {
    let report = match args.invalidations {
        Some(channel) => ctx.app.migrate_with_invalidations(channel).await?,
        None => ctx.app.migrate().await?,
    };
    if report.invalidations_changed
        && let Some(channel) = report.invalidations
    {
        tracing::info!(channel = %channel, "the database's invalidation channel changed");
    }
    if report.applied.is_empty() && report.app_applied.is_empty() {
        tracing::info!("schema already current");
    }
    ctx.out.record(&report, output::NO_ID);
    Ok(())
}

/// The one mapping from an error to a message on stderr and an exit code.
fn fail(err: &Error) -> ExitCode {
    let mut message = format!("error: {}", output::escape_controls(&err.to_string()));
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(&format!(
            "\n  caused by: {}",
            output::escape_controls(&cause.to_string())
        ));
        source = cause.source();
    }
    note!("{message}");
    ExitCode::from(err.exit_code())
}

fn init_tracing(verbose: u8, format: LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        // sqlx logs each statement with its elapsed time at debug.
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => {
            // https://no-color.org: any non-empty NO_COLOR turns colour off.
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            builder
                .with_ansi(!no_color && std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
        }
    }
}

/// The OS account running the command, the default `--actor`.
fn os_user() -> String {
    whoami::username().unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_token_starting_with_a_hyphen_is_a_token_not_a_flag() {
        let cli = Cli::try_parse_from([
            "accountctl",
            "invite",
            "accept",
            "-X16LyNLOzQ",
            "--new-username",
            "alice",
        ])
        .expect("parses");
        match cli.command {
            Command::Invite(invite::InviteCmd::Accept {
                token, new_username, ..
            }) => {
                assert_eq!(token.as_deref(), Some("-X16LyNLOzQ"));
                assert_eq!(new_username.as_deref(), Some("alice"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn every_option_and_argument_of_every_command_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if arg.is_hide_set() || matches!(arg.get_id().as_str(), "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no summary)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "accountctl", &mut missing);
        assert!(missing.is_empty(), "undocumented:\n{}", missing.join("\n"));
    }

    #[test]
    fn unknown_output_formats_are_usage_errors() {
        let err = Cli::try_parse_from(["accountctl", "-o", "yaml", "user", "list"]).expect_err("rejected");
        assert_eq!(err.exit_code(), 2);
    }
}
