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
}

/// A password and whether it was generated (and so must be shown once).
pub struct Chosen {
    pub secret: Secret,
    pub generated: bool,
}

impl PasswordArgs {
    /// Whether any option was given.
    pub fn given(&self) -> bool {
        self.password_stdin || self.password_file.is_some() || self.password_env.is_some() || self.random_password
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
        if self.random_password {
            return Ok(Some(Chosen {
                secret: Secret::random(),
                generated: true,
            }));
        }
        if self.password_stdin {
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
            let value = std::env::var(var)
                .map_err(|_| Error::Invalid(format!("environment variable {var} is not set or not UTF-8")))?;
            return given(value);
        }
        if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            let mut prompt = dialoguer::Password::new().with_prompt("Password");
            if new {
                prompt = prompt.with_confirmation("Repeat password", "The passwords do not match");
            }
            let text = prompt
                .allow_empty_password(true)
                .interact_on(&Term::stderr())
                .map_err(|e| Error::Invalid(format!("no password read: {e}")))?;
            return given(text);
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
    let ok = dialoguer::Confirm::new()
        .with_prompt(format!("{question}?"))
        .default(false)
        .interact_on(&Term::stderr())
        .map_err(|e| Error::Invalid(format!("no answer read: {e}")))?;
    if ok {
        Ok(())
    } else {
        Err(Error::Refused("aborted at the prompt; nothing was changed".into()))
    }
}
