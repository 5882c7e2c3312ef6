//! The command line: global options, the command tree (one module per noun), and the one
//! place where an error becomes a message and an exit code.

use std::process::ExitCode;
use std::time::Duration;

use accountctl::store::{Database, DatabaseUrl, InvalidationChannel};
use accountctl::{App, Config, Error};
use clap::{CommandFactory, Parser, Subcommand};

mod auth;
mod bootstrap;
mod gdpr;
mod invite;
mod output;
mod prompt;
mod role;
mod session;
mod user;
mod workspace;

use output::{Format, Printer};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  internal error (including a lifecycle hook that aborted a delete)
  2  usage error or invalid value (malformed email, username, duration...);
     also a destructive command without --yes when stdin is not a terminal
  3  not found
  4  conflict or refused by an invariant (already exists, last admin, external admin,
     expired invite, wrong password, aborted at the prompt, a conflict with a
     concurrent transaction that persisted through retries)
  5  partial failure of a batch
  6  database unavailable or read-only (a standby), a connection pooler that cannot
     carry the command, or schema behind (run `accountctl migrate`)
130  interrupted (Ctrl-C); the transaction in progress was rolled back

Results go to stdout; logs and prompts go to stderr.";

/// Administer application accounts directly in the shared database, firing the same
/// user-lifecycle hooks as the application server.
#[derive(Debug, Parser)]
#[command(name = "accountctl", version, about, after_long_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Database URL: sqlite://PATH (created if missing) or postgres://USER@HOST/DB.
    /// Default: sqlite://accountctl.db in the working directory.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Output format of results.
    #[arg(short, long, value_enum, default_value = "table", global = true)]
    output: Format,
    /// Print only ids (one per line).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Answer yes to confirmations (required for destructive commands without a terminal).
    #[arg(long, global = true)]
    yes: bool,
    /// Who is acting, as recorded in the audit trail. Default: the OS user.
    #[arg(long, env = "ACCOUNTCTL_ACTOR", global = true)]
    actor: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending database migrations.
    Migrate,
    /// Migrate, create the root workspace and optionally the first admin (idempotent).
    Bootstrap(bootstrap::BootstrapArgs),
    /// Users: create, list, show, delete, restore, disable, enable, set-password, convert.
    #[command(subcommand)]
    User(user::UserCmd),
    /// Workspaces: create, list, show, delete.
    #[command(subcommand)]
    Workspace(workspace::WorkspaceCmd),
    /// Workspace types: create, list.
    #[command(subcommand)]
    WorkspaceType(workspace::WorkspaceTypeCmd),
    /// Roles of workspaces, and role assignment (instance role admin | user, or workspace roles).
    #[command(subcommand)]
    Role(role::RoleCmd),
    /// Invites into workspaces: create, list, show, revoke, resend, accept, prune.
    /// accountctl never sends mail or SMS: notifications are queued for the application.
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

/// What a command needs: the wired library, the printer and the confirmation switch.
pub struct Ctx {
    pub app: App,
    pub out: Printer,
    pub yes: bool,
}

/// Parses the command line, runs the command, drains spawned hook work, and maps the
/// outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&Error::Internal(format!("cannot start the async runtime: {e}"))),
    };
    let actor = cli.global.actor.clone().unwrap_or_else(os_user);
    match runtime.block_on(accountctl::lifecycle::with_actor(actor, run(cli))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// How long the CLI waits at exit for spawned hook work (logout hooks) to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

async fn run(cli: Cli) -> Result<(), Error> {
    let out = Printer {
        format: cli.global.output,
        quiet: cli.global.quiet,
    };
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "accountctl", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| Error::Internal(format!("cannot render the man page: {e}")))?;
            return Ok(());
        }
        _ => {}
    }
    let url = DatabaseUrl::parse(cli.global.database_url.as_deref().unwrap_or(DatabaseUrl::DEFAULT))?;
    let channel = match std::env::var("ACCOUNTCTL_INVALIDATIONS") {
        Ok(text) => text.parse()?,
        Err(_) => InvalidationChannel::default(),
    };
    // One connection for the whole run, ended cleanly below on every path.
    let db = Database::connect(&url).await?.with_invalidation_channel(channel);
    let mut config = Config::default();
    if let Ok(template) = std::env::var("ACCOUNTCTL_INVITE_LINK") {
        config.invite_link_template = template;
    }
    let ctx = Ctx {
        app: App::new(db.clone(), config),
        out,
        yes: cli.global.yes,
    };
    // The sweeper stops on a signal by itself, between users; every other command is
    // abandoned at Ctrl-C (its transaction rolls back) so the connection still ends cleanly.
    let own_signal_handling = matches!(cli.command, Command::Gdpr(gdpr::GdprCmd::Purge { .. }));
    let interrupted = tokio_util::sync::CancellationToken::new();
    if !own_signal_handling {
        spawn_interrupt_handler(db.clone(), interrupted.clone());
    }
    let result = exec(&ctx, &db, cli.command).await;
    interrupted.cancel();
    // A short-lived process must not lose spawned hook work (DESIGN.md): drain, bounded.
    let pending = ctx.app.lifecycle.drain(DRAIN_TIMEOUT).await;
    if pending > 0 {
        tracing::warn!(pending, "spawned hook work did not finish before exit");
    }
    db.close().await;
    result
}

/// Ends the run at Ctrl-C without leaving the server a lost client. A statement in flight is
/// canceled on the server: the command fails with [`Error::Interrupted`] (exit 130), its
/// transaction rolls back and [`run`] closes the connection as on any error. When no
/// statement was running (a prompt, hashing), the command is not waited for: the idle
/// connection is closed here and the process exits with 130. `done` is cancelled by
/// [`run`] once the command has returned.
fn spawn_interrupt_handler(db: Database, done: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        tokio::select! {
            signal = tokio::signal::ctrl_c() => if signal.is_err() { return },
            () = done.cancelled() => return,
        }
        let grace = if db.interrupt().await {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        };
        if tokio::time::timeout(grace, done.cancelled()).await.is_ok() {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), db.close()).await;
        eprintln!("error: {}", Error::Interrupted);
        std::process::exit(i32::from(Error::Interrupted.exit_code()));
    });
}

/// Runs one database command.
async fn exec(ctx: &Ctx, db: &Database, command: Command) -> Result<(), Error> {
    match command {
        Command::Migrate => migrate(ctx).await,
        Command::Bootstrap(args) => bootstrap::exec(ctx, args).await,
        command => {
            db.ensure_schema_current().await?;
            match command {
                Command::User(cmd) => user::exec(ctx, cmd).await,
                Command::Workspace(cmd) => workspace::exec(ctx, cmd).await,
                Command::WorkspaceType(cmd) => workspace::exec_type(ctx, cmd).await,
                Command::Role(cmd) => role::exec(ctx, cmd).await,
                Command::Invite(cmd) => invite::exec(ctx, cmd).await,
                Command::Session(cmd) => session::exec(ctx, cmd).await,
                Command::Gdpr(cmd) => gdpr::exec(ctx, cmd).await,
                Command::Auth(cmd) => auth::exec(ctx, cmd).await,
                Command::Migrate | Command::Bootstrap(_) | Command::Completions { .. } | Command::Man => Ok(()),
            }
        }
    }
}

async fn migrate(ctx: &Ctx) -> Result<(), Error> {
    let applied = ctx.app.db.migrate().await?;
    #[derive(serde::Serialize)]
    struct Migrated {
        applied: Vec<i64>,
    }
    if applied.is_empty() {
        tracing::info!("schema already current");
    }
    ctx.out.record(&Migrated { applied }, "applied");
    Ok(())
}

/// The one mapping from an error to a message on stderr and an exit code.
fn fail(err: &Error) -> ExitCode {
    let mut message = format!("error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    eprintln!("{message}");
    ExitCode::from(err.exit_code())
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug,sqlx=warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The OS account running the command, the default `--actor`.
fn os_user() -> String {
    whoami::fallible::username().unwrap_or_else(|_| "unknown".into())
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
                assert_eq!(token, "-X16LyNLOzQ");
                assert_eq!(new_username.as_deref(), Some("alice"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn unknown_output_formats_are_usage_errors() {
        let err = Cli::try_parse_from(["accountctl", "-o", "yaml", "user", "list"]).expect_err("rejected");
        assert_eq!(err.exit_code(), 2);
    }
}
