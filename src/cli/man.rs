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
