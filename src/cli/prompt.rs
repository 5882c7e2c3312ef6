//! Everything that may ask the operator something: passwords and confirmations. Prompts go
//! to stderr; without a terminal nothing is asked.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use crate::Error;
use crate::password::Secret;
use dialoguer::console::Term;

/// The password options: never a password on argv, where other local users can read it in
/// the process list and shells keep it in their history. Without any of them, a
/// terminal gets a prompt with confirmation.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "password_source", multiple = false)]
pub struct PasswordArgs {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Read the password from the first line of this file.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Read the password from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// Generate a random 24-character password and print it once with the result.
    #[arg(long)]
    pub random_password: bool,
    /// Never accepted: a password on the command line is refused without being echoed
    /// (hidden; it exists so that `--password X` gets that answer, not a suggestion of
    /// `--password-env` that would echo X back).
    #[arg(long, hide = true, value_name = "NEVER")]
    pub password: Option<String>,
}

/// The refusal of a password given on the command line. The value is never shown.
fn password_on_argv() -> Error {
    Error::Invalid(
        "passwords are never taken from the command line (other users can read it in the process list, and the shell keeps it in its history); the value is not shown. Use --password-stdin (a prompt without echo at a terminal), --password-file PATH, or no option for a prompt".into(),
    )
}

/// A password and whether it was generated (and so must be shown once).
pub struct Chosen {
    pub secret: Secret,
    pub generated: bool,
}

impl PasswordArgs {
    /// Whether any option was given.
    pub fn given(&self) -> bool {
        self.password_stdin
            || self.password_file.is_some()
            || self.password_env.is_some()
            || self.random_password
            || self.password.is_some()
    }

    /// Resolves the password. Without an option: a prompt (with confirmation when `new`) on a
    /// terminal; otherwise `Ok(None)` when `required` is false, else [`Error::Invalid`].
    pub fn resolve(&self, required: bool, new: bool) -> Result<Option<Chosen>, Error> {
        let given = |s: String| {
            Ok(Some(Chosen {
                secret: Secret::new(s),
                generated: false,
            }))
        };
        if self.password.is_some() {
            return Err(password_on_argv());
        }
        if self.random_password {
            return Ok(Some(Chosen {
                secret: Secret::random(),
                generated: true,
            }));
        }
        // At a terminal, --password-stdin is the prompt without echo: the typing is not
        // shown as a plain read of the line would show it.
        if self.password_stdin && !std::io::stdin().is_terminal() {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Error::Invalid(format!("cannot read the password from stdin: {e}")))?;
            return given(strip_newline(line));
        }
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Invalid(format!("cannot read the password file {}: {e}", path.display())))?;
            return given(strip_newline(text.lines().next().unwrap_or_default().to_owned()));
        }
        if let Some(var) = &self.password_env {
            // The name is not echoed: an operator who typed the password itself after
            // --password-env would see it printed back.
            let value = std::env::var(var).map_err(|_| {
                Error::Invalid(
                    "the environment variable that --password-env names is not set or not UTF-8 (its name is not shown, in case it is the password itself): export the password in a variable and pass its name, or use --password-stdin or the prompt".into(),
                )
            })?;
            return given(value);
        }
        if std::io::stdin().is_terminal() && (std::io::stderr().is_terminal() || self.password_stdin) {
            let _guard = InterruptGuard::new();
            loop {
                let mut prompt = dialoguer::Password::new().with_prompt("Password");
                if new {
                    prompt = prompt.with_confirmation("Repeat password", "The passwords do not match");
                }
                let text = prompt
                    .allow_empty_password(true)
                    .interact_on(&Term::stderr())
                    .map_err(prompt_error)?;
                let secret = Secret::new(text);
                // A new password that the policy refuses is asked again, like a mismatch.
                if new && let Err(e) = secret.validate_new() {
                    note!("{e}; try again (Ctrl-C to stop)");
                    continue;
                }
                return Ok(Some(Chosen {
                    secret,
                    generated: false,
                }));
            }
        }
        if required {
            return Err(Error::Invalid(
                "no password given and stdin is not a terminal: use --password-stdin, --password-file, --password-env or --random-password".into(),
            ));
        }
        Ok(None)
    }
}

fn strip_newline(mut line: String) -> String {
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    line
}

/// Asks before a destructive action. With `--yes` it proceeds; without a terminal it refuses
/// with exit code 2, so a script never destroys by accident; a "no" at the prompt aborts with
/// exit code 4, nothing changed.
pub fn confirm(yes: bool, question: &str) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(Error::Invalid(format!(
            "refusing to {question} without confirmation: stdin is not a terminal, pass --yes"
        )));
    }
    let _guard = InterruptGuard::new();
    let ok = dialoguer::Confirm::new()
        .with_prompt(format!("{question}?"))
        .default(false)
        .interact_on(&Term::stderr())
        .map_err(prompt_error)?;
    if ok {
        Ok(())
    } else {
        Err(Error::Refused("aborted at the prompt; nothing was changed".into()))
    }
}

/// Asks before an irreversible action (GDPR erasure, merge) by having the operator type
/// `expected` (the username), as `mmctl` and `gh repo delete` do: one stray keypress cannot
/// erase a person. Without a terminal it behaves as [`confirm`] (`--yes` required).
pub fn confirm_typed(yes: bool, question: &str, expected: &str) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(Error::Invalid(format!(
            "refusing to {question} without confirmation: stdin is not a terminal, pass --yes"
        )));
    }
    let _guard = InterruptGuard::new();
    note!("This will {question}. It cannot be undone.");
    let typed: String = dialoguer::Input::new()
        .with_prompt(format!("Type {expected} to confirm"))
        .allow_empty(true)
        .interact_text_on(&Term::stderr())
        .map_err(prompt_error)?;
    if typed.trim() == expected {
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "you typed {:?}, not {expected:?}: aborted; nothing was changed",
            typed.trim()
        )))
    }
}

/// A prompt that failed. Ctrl-C (which dialoguer reports as an interrupted read, leaving the
/// cursor hidden) ends the process as [`exit_interrupted`] does.
fn prompt_error(e: dialoguer::Error) -> Error {
    let dialoguer::Error::IO(io) = e;
    if io.kind() == std::io::ErrorKind::Interrupted {
        exit_interrupted()
    }
    Error::Invalid(format!("no answer read: {io}"))
}

/// Restores the terminal, reports [`Error::Interrupted`] and exits with 130. Called from the
/// prompt or from the SIGINT watcher, whichever sees Ctrl-C first; the other waits here
/// while the process ends, so the message is printed once. Safe because every prompt comes
/// before the command's transaction: nothing has changed.
fn exit_interrupted() -> ! {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        restore_terminal();
        note!("error: interrupted at the prompt; nothing was changed");
        std::process::exit(i32::from(Error::Interrupted.exit_code()));
    });
    loop {
        std::thread::park();
    }
}

/// Shows the cursor and turns echo back on: dialoguer hides the cursor for its prompts and
/// switches echo off while a password is typed, and a Ctrl-C must not leave the shell so.
pub(crate) fn restore_terminal() {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let _ = Term::stderr().show_cursor();
    note!();
    if let Ok(tty) = std::fs::File::open("/dev/tty") {
        let _ = std::process::Command::new("stty")
            .arg("echo")
            .stdin(tty)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// While a prompt is open, SIGINT ends the process with exit code 130 after restoring the
/// terminal. A prompt comes before any transaction opens, so nothing has changed yet. (In
/// raw mode, as for a yes/no question, Ctrl-C arrives as a key instead; see
/// [`prompt_error`].)
struct InterruptGuard(Option<tokio::task::JoinHandle<()>>);

impl InterruptGuard {
    fn new() -> Self {
        let task = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            runtime.spawn(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    exit_interrupted();
                }
            })
        });
        Self(task)
    }
}

impl Drop for InterruptGuard {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
