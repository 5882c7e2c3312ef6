//! `accountctl man`: the man page of the whole tool, or with `--dir` one page per command
//! (`accountctl.1`, `accountctl-user.1`, `accountctl-user-create.1`, …) as `git` ships them.
//! clap_mangen renders the sections; the exit codes (pre-formatted, so the table survives
//! roff's filling) and SEE ALSO (the parent and child pages, all of which are written) are
//! added here.

use std::path::Path;

use crate::Error;

use super::output::Printer;

/// Renders one command's page. `parent` is the page above it (none for the top page).
pub fn render(cmd: &clap::Command, parent: Option<&str>, exit_codes: &str) -> Result<Vec<u8>, Error> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    let failed = |e: std::io::Error| Error::Internal(format!("cannot render the man page: {e}"));
    man.render_title(&mut page).map_err(failed)?;
    man.render_name_section(&mut page).map_err(failed)?;
    man.render_synopsis_section(&mut page).map_err(failed)?;
    man.render_description_section(&mut page).map_err(failed)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page).map_err(failed)?;
    }
    let children = visible_subcommands(cmd);
    if !children.is_empty() {
        man.render_subcommands_section(&mut page).map_err(failed)?;
    }
    let mut extra = String::from(".SH \"EXIT STATUS\"\n.nf\n");
    for line in exit_codes.lines() {
        extra.push_str(&escape(line));
        extra.push('\n');
    }
    extra.push_str(".fi\n");
    let examples = examples_for(cmd);
    if !examples.is_empty() {
        extra.push_str(".SH EXAMPLES\n.nf\n");
        for line in examples {
            extra.push_str(&escape(&line));
            extra.push('\n');
        }
        extra.push_str(".fi\n");
    }
    extra.push_str(".SH ENVIRONMENT\n");
    for (name, text) in ENVIRONMENT {
        extra.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", escape(name), escape(text)));
    }
    extra.push_str(".SH FILES\n");
    for (name, text) in FILES {
        extra.push_str(&format!(".TP\n\\fI{}\\fR\n{}\n", escape(name), escape(text)));
    }
    let mut see_also: Vec<String> = parent.map(str::to_owned).into_iter().collect();
    see_also.extend(children.iter().map(|c| page_name(c)));
    if !see_also.is_empty() {
        extra.push_str(".SH \"SEE ALSO\"\n");
        let refs: Vec<String> = see_also.iter().map(|n| format!("\\fB{}\\fR(1)", escape(n))).collect();
        extra.push_str(&refs.join(",\n"));
        extra.push('\n');
    }
    page.extend_from_slice(extra.as_bytes());
    if cmd.get_version().is_some() {
        man.render_version_section(&mut page).map_err(failed)?;
    }
    Ok(page)
}

/// Writes a page per command into `dir` (created if missing) and prints the files written
/// (a list of `{file}`; `-q` prints the paths).
pub fn write_pages(cmd: &clap::Command, dir: &Path, out: &Printer, exit_codes: &str) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Invalid(format!("cannot create {}: {e}", dir.display())))?;
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_tree(&cmd, None, dir, exit_codes, &mut written)?;
    out.page(&written, &["file"], "file", None);
    Ok(())
}

/// One row of `man --dir`'s output.
#[derive(serde::Serialize)]
struct Written {
    file: String,
}

fn write_tree(
    cmd: &clap::Command,
    parent: Option<&str>,
    dir: &Path,
    exit_codes: &str,
    written: &mut Vec<Written>,
) -> Result<(), Error> {
    let name = page_name(cmd);
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, render(cmd, parent, exit_codes)?)
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
    written.push(Written {
        file: path.display().to_string(),
    });
    for child in visible_subcommands(cmd) {
        write_tree(child, Some(&name), dir, exit_codes, written)?;
    }
    Ok(())
}

/// The examples of the man pages, as the README shows them, without the binary's name: a
/// page lists those that start with its command's words (the top page, the first
/// [`TOP_EXAMPLES`]), each under the binary's own name.
const EXAMPLES: &[&str] = &[
    "bootstrap --admin-username admin --admin-email admin@example.com --password-stdin < admin-password",
    "user create alice --email alice@example.com --given-name Alice --random-password",
    "user list --all -o json | jq length",
    "workspace create Acme --type team",
    "role assign alice editor --workspace Acme",
    "invite create --workspace Acme --role editor --email carol@example.com -q > token.txt",
    "user delete bob --mode admin --yes",
    "gdpr purge -o json",
    "audit list --user alice --since 7d",
    "user export users.csv",
    "user import users.csv --on-conflict skip",
    "config show",
    "user show alice@example.com",
    "user list --workspace Acme --search al --limit 50",
    "user delete alice --mode gdpr --yes",
    "user restore bob",
    "user disable bob --yes",
    "user set-password bob --password-stdin < new-password",
    "user convert fed --to-internal",
    "user merge --keep alice --remove alice-sso --dry-run",
    "user import users.jsonl --atomic -o json",
    "user export - --format jsonl --with-password-hashes > users.jsonl",
    "workspace-type create team --title Team --capabilities 'docs.*'",
    "workspace show Acme",
    "workspace members Acme --all -o json",
    "workspace delete 'Acme Berlin' --yes",
    "role create editor --workspace Acme --capabilities docs.read,docs.write",
    "role list --workspace Acme",
    "role revoke alice admin --yes",
    "invite list --workspace Acme --status pending",
    "invite accept --token-file token.txt --new-username carol --random-password",
    "invite revoke 01a2b3c4 --yes",
    "gdpr request alice --due-in 30d --yes",
    "gdpr status --max-age 2d",
    "gdpr purge --dry-run",
    "session list alice",
    "session revoke --user alice --all --yes",
    "session prune",
    "auth check alice --password-stdin < password",
    "audit list --action 'user.*' --all -o json",
    "audit list --actor cron --limit 20",
    "audit show 42",
    "hooks list",
    "completions bash > /etc/bash_completion.d/accountctl",
    "man --dir /usr/local/share/man/man1",
    "migrate",
];

/// How many of [`EXAMPLES`] the top page shows.
const TOP_EXAMPLES: usize = 12;

/// The environment variables every command reads.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "DATABASE_URL",
        "The database (--database-url): sqlite://PATH or postgres://USER@HOST/DB.",
    ),
    ("ACCOUNTCTL_CONFIG", "The config file (--config)."),
    (
        "ACCOUNTCTL_ACTOR",
        "Who is acting, as recorded in the audit trail (--actor).",
    ),
    (
        "ACCOUNTCTL_TRASH_RETENTION",
        "How long user delete --mode admin keeps a user restorable (30d).",
    ),
    (
        "ACCOUNTCTL_INVITE_LINK",
        "The accept link of invites; must contain {token}.",
    ),
    (
        "ACCOUNTCTL_INVALIDATIONS",
        "notify or table: the invalidation channel this run expects; it must match the one the database records (else exit 2). Change that with migrate --invalidations.",
    ),
    ("XDG_CONFIG_HOME", "Where the per-user config file is looked for."),
    ("RUST_LOG", "The log filter, overriding -v."),
    ("NO_COLOR", "When set and not empty, log lines are not coloured."),
];

/// The files the tool reads or creates.
const FILES: &[(&str, &str)] = &[
    (
        "$XDG_CONFIG_HOME/accountctl/config.toml",
        "The per-user config file (~/.config/accountctl/config.toml).",
    ),
    (
        "/etc/accountctl/config.toml",
        "The system-wide config file, read when there is no per-user one.",
    ),
    (
        "./accountctl.db",
        "The default SQLite database; only migrate and bootstrap create it.",
    ),
];

/// The examples of `cmd`'s page, under the binary's own name.
fn examples_for(cmd: &clap::Command) -> Vec<String> {
    let path = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name()).to_owned();
    let (bin, words) = path.split_once(' ').unwrap_or((path.as_str(), ""));
    let chosen: Vec<&str> = if words.is_empty() {
        EXAMPLES.iter().take(TOP_EXAMPLES).copied().collect()
    } else {
        EXAMPLES
            .iter()
            .filter(|e| *e == &words || e.starts_with(&format!("{words} ")))
            .copied()
            .collect()
    };
    chosen.into_iter().map(|e| format!("{bin} {e}")).collect()
}

fn visible_subcommands(cmd: &clap::Command) -> Vec<&clap::Command> {
    cmd.get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        .collect()
}

/// `accountctl-user-create`: the display name clap gives a built subcommand.
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_owned()
}

/// Text safe on a roff line: backslashes doubled, hyphens literal, a leading `.` or `'`
/// protected so it is not read as a request.
fn escape(line: &str) -> String {
    let text = line.replace('\\', "\\e").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}
