//! Bulk import of users (`user import`): CSV or JSON Lines, committed in batches (each
//! table of a batch one `COPY … FROM STDIN` on PostgreSQL, one multi-row statement per 1,000
//! rows on SQLite), plaintext passwords hashed in parallel on every core off the async
//! runtime, and `on_user_created` fired per batch through the hooks' batch method.
//!
//! Each row yields a [`RowResult`]. An invalid row never takes its batch's valid rows with it:
//! when a batch's statements fail, the batch is retried one row per transaction to isolate
//! the culprit. With `atomic`, everything is one transaction and any failed row rolls all
//! back. With `on_conflict: Skip` a re-run of the same file — or of a killed import — creates
//! nothing twice.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    Email, ImportRowStatus, InstanceRole, LogoutReason, MAX_NAME_CHARS, Person, Phone, User, Username, clean_identity,
    clean_text, now,
};
use crate::error::{Error, Result};
use crate::lifecycle::UserLifecycleService;
use crate::password::{self, Secret};
use crate::store::batch::BatchUser;
use crate::store::{Database, NewUserRecord, Tx, UserRef, WRITE_ATTEMPTS, retry_pause};

mod seen;
mod spill;

use seen::Seen;
use spill::{Spill, SpilledResult, SpilledUser, StagedIn, StagedRow};

/// What to do when a row's username already exists.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// The row is an error (exit 5).
    #[default]
    Fail,
    /// The row is skipped: re-running a file is a no-op.
    Skip,
    /// The existing user's names, role, password and memberships are updated.
    Update,
}

/// The input format.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A header row naming the columns (see [`ImportRow`]); `memberships` as
    /// `Workspace:role;Other:role`; `external` as true/false/1/0/yes/no.
    Csv,
    /// One JSON object per line with the same field names; `memberships` may also be an
    /// array of `{"workspace": …, "role": …}`.
    Jsonl,
}

/// One input row. Field names are the column names of the CSV header and the JSONL keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRow {
    /// The username (rules: [`Username`]); the key `on_conflict` matches on.
    #[serde(deserialize_with = "trimmed")]
    pub username: String,
    /// The primary email passport (RFC 5321 form). An empty cell is `None`.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub email: Option<String>,
    /// The primary phone passport (E.164). An empty cell is `None`.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub phone: Option<String>,
    /// The person's given name.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub given_name: Option<String>,
    /// The person's family name.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub family_name: Option<String>,
    /// An external (federated) user: no password, never admin. `true`/`false`, `1`/`0` or
    /// `yes`/`no`. Absent or empty means internal for a new user and "unchanged" for an
    /// update.
    #[serde(default, deserialize_with = "flexible_bool")]
    pub external: Option<bool>,
    /// The identity provider of an external user (with `subject`).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub provider: Option<String>,
    /// The user's subject at `provider` (the OpenID Connect `sub` claim, for example).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub subject: Option<String>,
    /// Instance role: `admin` or `user` (default).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub role: Option<String>,
    /// Workspace memberships as (workspace, role name) pairs: `Workspace:role;Other:role`
    /// in CSV, that string or an array of `{"workspace": …, "role": …}` in JSON Lines.
    #[serde(default, deserialize_with = "memberships")]
    pub memberships: Vec<(String, String)>,
    /// Plaintext, hashed here with argon2id, taken exactly as given (spaces are part of a
    /// password). Never echoed in an error.
    #[serde(default, deserialize_with = "exact_secret_string")]
    pub password: Option<String>,
    /// Already hashed: argon2 PHC string or bcrypt `$2b$`, stored as is (within the cost
    /// bounds of [`password::check_hash`]). Never echoed in an error.
    #[serde(default, deserialize_with = "secret_string")]
    pub password_hash: Option<String>,
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(d)?;
    Ok(value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}

/// [`empty_as_none`] for a secret: a value of the wrong type (a JSON number…) is refused
/// without the deserializer's usual echo of the value.
fn secret_string<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(d)
        .map_err(|_| serde::de::Error::custom("a password field must be a string (not shown)"))?;
    Ok(value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}

/// [`secret_string`] without the trimming: a password's leading or trailing spaces are
/// part of it (a trimmed password would never verify). Only an empty cell is `None`.
fn exact_secret_string<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(d)
        .map_err(|_| serde::de::Error::custom("a password field must be a string (not shown)"))?;
    Ok(value.filter(|s| !s.is_empty()))
}

/// A username cell, without surrounding spaces (the CSV reader trims headers only, so that
/// a password cell keeps its spaces).
fn trimmed<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(String::deserialize(d)?.trim().to_owned())
}

fn flexible_bool<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Text(String),
    }
    match Option::<B>::deserialize(d)? {
        None => Ok(None),
        Some(B::Bool(b)) => Ok(Some(b)),
        Some(B::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "false" | "0" | "no" | "n" => Ok(Some(false)),
            "true" | "1" | "yes" | "y" => Ok(Some(true)),
            other => Err(serde::de::Error::custom(format!(
                "invalid boolean {}",
                crate::domain::shown(other)
            ))),
        },
    }
}

fn memberships<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<(String, String)>, D::Error> {
    #[derive(Deserialize)]
    struct Pair {
        workspace: String,
        role: String,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum M {
        Text(String),
        List(Vec<Pair>),
    }
    match Option::<M>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(M::List(pairs)) => Ok(pairs.into_iter().map(|p| (p.workspace, p.role)).collect()),
        Some(M::Text(text)) => membership_pairs(&text)
            .into_iter()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.rsplit_once(':')
                    .map(|(w, r)| (w.trim().to_owned(), r.trim().to_owned()))
                    .ok_or_else(|| serde::de::Error::custom(format!("membership {p:?} is not WORKSPACE:ROLE")))
            })
            .collect(),
    }
}

/// The `WORKSPACE:ROLE` pairs of a memberships cell, split at the `;` that end a pair: a
/// `;` right after `:` and a role name (letters, digits, `.`, `_`, `-`; spaces around
/// either allowed). A workspace name may thus hold `;` and `:` (`R&D; Europe:member` is one
/// pair), unless it holds `:`, a role-like word and `;` in that order, which reads as two.
fn membership_pairs(text: &str) -> Vec<&str> {
    let role_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut pairs = Vec::new();
    let mut start = 0;
    for (at, _) in text.match_indices(';') {
        let before = text[start..at].trim_end();
        let without_role = before.trim_end_matches(role_char);
        if without_role.len() < before.len() && without_role.trim_end().ends_with(':') {
            pairs.push(&text[start..at]);
            start = at + 1;
        }
    }
    pairs.push(&text[start..]);
    pairs
}

/// Whether a spreadsheet would run `text` as a formula once any `'` in front of it is taken
/// away: after its leading `'`s it starts with `=`, `+`, `-`, `@`, a tab or a carriage return
/// (OWASP, "CSV Injection"), and is not a plain number (`-5`, `+4915112345678`, `1.5`: no
/// formula, and phone numbers keep their E.164 form). The one rule both the CLI's
/// spreadsheet-bound output (tab-separated, `-o csv`, `user export`: it adds a `'` to such
/// text) and [`unneutralise_formula`] (which takes exactly one away) follow, so every value survives
/// an export and an import exactly, a value that itself starts with `'=` included.
pub fn formula_leading(text: &str) -> bool {
    let bare = text.trim_start_matches('\'');
    let Some(first) = bare.chars().next() else {
        return false;
    };
    if !matches!(first, '=' | '+' | '-' | '@' | '\t' | '\r') {
        return false;
    }
    let rest = &bare[first.len_utf8()..];
    let number = matches!(first, '+' | '-')
        && rest.starts_with(|c: char| c.is_ascii_digit())
        && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
        && rest.chars().filter(|c| *c == '.').count() <= 1;
    !number
}

/// A CSV cell as a spreadsheet-safe export wrote it, read back: exactly one leading `'` is
/// dropped from a cell that is [`formula_leading`] (OWASP's neutralisation, which `user
/// export` and `-o csv` apply by adding one). `'=SUM(A1)` reads as `=SUM(A1)`, `''=SUM(A1)`
/// (the export of a value that starts with `'=`) as `'=SUM(A1)`; `'hello` and `'-5` stay as
/// they are. The `password` column is never passed through this: no export writes it,
/// and a `'` is part of a password.
pub fn unneutralise_formula(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if formula_leading(cell) => rest,
        _ => cell,
    }
}

/// A parsed row or the reason it could not be read, with its line number.
pub type ParsedRow = (usize, std::result::Result<ImportRow, String>);

/// The columns (CSV) or keys (JSON Lines) of an import row.
pub const COLUMNS: &[&str] = &[
    "username",
    "email",
    "phone",
    "given_name",
    "family_name",
    "external",
    "provider",
    "subject",
    "role",
    "memberships",
    "password",
    "password_hash",
];

/// Reads every row into memory: [`rows`] collected. For small inputs and tests; an import
/// of a file of any size streams [`rows`] instead.
pub fn parse(reader: impl BufRead, format: Format) -> Result<Vec<ParsedRow>> {
    Ok(rows(reader, format)?.collect())
}

/// [`parse`] with a CSV field delimiter: [`rows_with`] collected.
pub fn parse_with(reader: impl BufRead, format: Format, delimiter: Option<u8>) -> Result<Vec<ParsedRow>> {
    Ok(rows_with(reader, format, delimiter)?.collect())
}

/// [`rows_with`] with the delimiter detected.
pub fn rows<R: BufRead>(reader: R, format: Format) -> Result<Rows<R>> {
    rows_with(reader, format, None)
}

/// The rows of `reader`, read as they are consumed: memory holds one row (and the reader's
/// buffer), whatever the input's size. Line numbers are 1-based lines of the input (the CSV
/// header is line 1), whatever the line endings (`\n` or `\r\n`).
///
/// CSV: `delimiter` is the field separator (`--delimiter`); without one, a header with
/// semicolons and no commas (what spreadsheets write in locales whose decimal mark is a
/// comma) is read with `;`, and a warning says so. A UTF-8 byte-order mark (Excel's "CSV
/// UTF-8") is skipped.
///
/// Errors: [`Error::Invalid`] (exit 2, before any row is read) for an unreadable input, or a
/// CSV header with an unknown, duplicate or empty column, or without `username`. A row that
/// cannot be read is an `Err` row, and a read error of the input ends the rows with one `Err`
/// row that says so.
pub fn rows_with<R: BufRead>(reader: R, format: Format, delimiter: Option<u8>) -> Result<Rows<R>> {
    rows_capped(reader, format, delimiter, DEFAULT_MAX_ROW_BYTES)
}

/// The default of [`rows_capped`]'s `max_row_bytes` (`--max-row-bytes`): 1 MiB, some
/// thousand times a real row.
pub const DEFAULT_MAX_ROW_BYTES: usize = 1 << 20;

/// [`rows_with`] with a cap on a row's length: a line longer than `max_row_bytes` is an
/// error row (its bytes past the cap are skipped, never held), so memory stays bounded
/// whatever one line holds. A JSON Lines line that is not UTF-8 is an error row too, and the
/// rows after it are read on; a byte-order mark before the first line is skipped.
/// Errors: as [`rows_with`], and [`Error::Invalid`] for a CSV header longer than the cap.
pub fn rows_capped<R: BufRead>(
    mut reader: R,
    format: Format,
    delimiter: Option<u8>,
    max_row_bytes: usize,
) -> Result<Rows<R>> {
    let max_row_bytes = max_row_bytes.max(1);
    Ok(Rows(match format {
        Format::Jsonl => RowsInner::Jsonl {
            reader,
            line: 0,
            max: max_row_bytes,
            buf: Vec::new(),
            done: false,
        },
        Format::Csv => {
            let head = reader
                .fill_buf()
                .map_err(|e| Error::Invalid(format!("cannot read the input: {e}")))?;
            // A byte-order mark would become part of the first column's name. Line numbers
            // count newlines, so skipping it changes none.
            let bom = head.starts_with(b"\xEF\xBB\xBF");
            let header_line = head[if bom { 3 } else { 0 }..]
                .split(|b| *b == b'\n')
                .next()
                .unwrap_or_default();
            let delimiter = match delimiter {
                Some(d) => d,
                None if header_line.contains(&b';') && !header_line.contains(&b',') => {
                    tracing::warn!(
                        "the CSV header is separated by semicolons (as spreadsheets write it in many European locales): reading it with --delimiter ';'"
                    );
                    b';'
                }
                None => b',',
            };
            if bom {
                reader.consume(3);
            }
            let newlines = NewlineIndex::default();
            let mut csv = csv::ReaderBuilder::new()
                // Headers only: every field trims itself, except the password, which is
                // taken exactly.
                .trim(csv::Trim::Headers)
                .delimiter(delimiter)
                .from_reader(CountingReader {
                    inner: reader,
                    offset: 0,
                    newlines: newlines.clone(),
                    max: max_row_bytes,
                    line: 1,
                    line_len: 0,
                    dropping: false,
                });
            let headers = csv
                .headers()
                .map_err(|e| Error::Invalid(format!("cannot read the CSV header: {e}")))?
                .clone();
            if newlines.is_overlong(1) {
                return Err(Error::Invalid(format!(
                    "the CSV header is longer than {max_row_bytes} bytes (--max-row-bytes)"
                )));
            }
            check_header(&headers, delimiter)?;
            RowsInner::Csv {
                csv: Box::new(csv),
                headers,
                newlines,
                record: csv::StringRecord::new(),
                done: false,
            }
        }
    }))
}

/// The iterator of [`rows`].
pub struct Rows<R>(RowsInner<R>);

enum RowsInner<R> {
    Jsonl {
        reader: R,
        /// The 1-based number of the last line read.
        line: usize,
        max: usize,
        buf: Vec<u8>,
        done: bool,
    },
    Csv {
        csv: Box<csv::Reader<CountingReader<R>>>,
        headers: csv::StringRecord,
        newlines: NewlineIndex,
        record: csv::StringRecord,
        done: bool,
    },
}

impl<R: BufRead> Iterator for Rows<R> {
    type Item = ParsedRow;

    fn next(&mut self) -> Option<ParsedRow> {
        match &mut self.0 {
            RowsInner::Jsonl {
                reader,
                line,
                max,
                buf,
                done,
            } => loop {
                if *done {
                    return None;
                }
                buf.clear();
                // At most `max` bytes of a line are held; the rest is skipped.
                let read = std::io::Read::take(&mut *reader, *max as u64 + 1).read_until(b'\n', buf);
                let n = match read {
                    Ok(n) => n,
                    Err(e) => {
                        *done = true;
                        return Some((*line + 1, Err(format!("cannot read the input: {e}"))));
                    }
                };
                if n == 0 {
                    return None;
                }
                *line += 1;
                let ended = buf.last() == Some(&b'\n');
                if ended {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                if !ended && buf.len() > *max {
                    if let Err(e) = skip_line(reader) {
                        *done = true;
                        return Some((*line, Err(format!("cannot read the input: {e}"))));
                    }
                    return Some((
                        *line,
                        Err(format!("the row is longer than {max} bytes (--max-row-bytes)")),
                    ));
                }
                // Excel and PowerShell write a byte-order mark before the first line.
                let bytes = if *line == 1 && buf.starts_with(b"\xEF\xBB\xBF") {
                    &buf[3..]
                } else {
                    &buf[..]
                };
                let text = match std::str::from_utf8(bytes) {
                    Ok(text) => text,
                    Err(e) => {
                        return Some((
                            *line,
                            Err(format!(
                                "the line is not UTF-8 (invalid byte at offset {})",
                                e.valid_up_to()
                            )),
                        ));
                    }
                };
                if text.trim().is_empty() {
                    continue;
                }
                return Some((
                    *line,
                    serde_json::from_str::<ImportRow>(text).map_err(|e| e.to_string()),
                ));
            },
            RowsInner::Csv {
                csv,
                headers,
                newlines,
                record,
                done,
            } => {
                if *done {
                    return None;
                }
                match csv.read_record(record) {
                    Ok(false) => None,
                    Ok(true) => {
                        let line = newlines.line_at(record.position());
                        if newlines.is_overlong(line) {
                            return Some((
                                line,
                                Err(format!(
                                    "the row is longer than {} bytes (--max-row-bytes)",
                                    newlines.max()
                                )),
                            ));
                        }
                        // A cell a spreadsheet-safe export neutralised (`'=…`, `'-…`) reads
                        // back as it was written. Not the password: no export writes one, and
                        // its `'` is part of it.
                        if record.iter().any(|f| f.starts_with('\'')) {
                            let password = headers.iter().position(|h| h == "password");
                            let mut restored = csv::StringRecord::with_capacity(record.as_slice().len(), record.len());
                            for (i, field) in record.iter().enumerate() {
                                if Some(i) == password {
                                    restored.push_field(field);
                                } else {
                                    restored.push_field(unneutralise_formula(field));
                                }
                            }
                            restored.set_position(record.position().cloned());
                            *record = restored;
                        }
                        Some((
                            line,
                            record
                                .deserialize::<ImportRow>(Some(headers))
                                .map_err(|e| e.to_string()),
                        ))
                    }
                    Err(e) => {
                        let line = newlines.line_at(e.position());
                        if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                            *done = true;
                            return Some((line, Err(format!("cannot read the input: {e}"))));
                        }
                        Some((line, Err(e.to_string())))
                    }
                }
            }
        }
    }
}

/// The byte offsets of the newlines read so far that no record has been placed after yet,
/// and how many came before them. The csv crate's own line count is off by one per record
/// with CRLF endings, so a record's line is counted here from its byte offset.
#[derive(Clone, Default)]
struct NewlineIndex(std::sync::Arc<std::sync::Mutex<NewlineState>>);

#[derive(Default)]
struct NewlineState {
    before: usize,
    pending: std::collections::VecDeque<u64>,
    /// Lines cut at the row cap (their rest was skipped), and the cap.
    overlong: std::collections::BTreeSet<usize>,
    max: usize,
}

/// Skips the rest of the current line (through its newline) without holding it.
fn skip_line<R: BufRead>(reader: &mut R) -> std::io::Result<()> {
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

impl NewlineIndex {
    /// The 1-based line of the record at `pos`. Records come in order, so the newlines
    /// before one are dropped once counted. With `\r\n` endings a record's offset can point
    /// at the `\n` that ends the line before it, so a newline *at* the offset counts as
    /// before the record.
    /// Whether line `line` was cut at the row cap. Lines before it are forgotten.
    fn is_overlong(&self, line: usize) -> bool {
        let Ok(mut state) = self.0.lock() else { return false };
        let later = state.overlong.split_off(&line);
        state.overlong = later;
        state.overlong.contains(&line)
    }

    /// The row cap, in bytes.
    fn max(&self) -> usize {
        self.0.lock().map(|s| s.max).unwrap_or_default()
    }

    fn line_at(&self, pos: Option<&csv::Position>) -> usize {
        let Some(pos) = pos else { return 0 };
        let Ok(mut state) = self.0.lock() else { return 0 };
        while state.pending.front().is_some_and(|&nl| nl <= pos.byte()) {
            state.pending.pop_front();
            state.before += 1;
        }
        state.before + 1
    }
}

/// A reader that notes the offset of every newline that passes through it, and cuts every
/// line at `max` bytes: the rest of a longer line is dropped (noted in `overlong`), so the
/// CSV parser never holds more than the cap of one line.
struct CountingReader<R> {
    inner: R,
    offset: u64,
    newlines: NewlineIndex,
    max: usize,
    /// The 1-based number of the line being read, and its bytes so far.
    line: usize,
    line_len: usize,
    /// Inside a line past the cap: bytes are dropped up to its newline.
    dropping: bool,
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.inner.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let Ok(mut state) = self.newlines.0.lock() else {
                return Err(std::io::Error::other("newline index poisoned"));
            };
            state.max = self.max;
            let mut kept = 0;
            for i in 0..n {
                let b = buf[i];
                if b == b'\n' {
                    state.pending.push_back(self.offset + kept as u64);
                    buf[kept] = b;
                    kept += 1;
                    self.line += 1;
                    self.line_len = 0;
                    self.dropping = false;
                    continue;
                }
                if self.dropping {
                    continue;
                }
                self.line_len += 1;
                if self.line_len > self.max {
                    self.dropping = true;
                    state.overlong.insert(self.line);
                    continue;
                }
                buf[kept] = b;
                kept += 1;
            }
            self.offset += kept as u64;
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

/// The whole header at once, before any row: one error naming every problem.
fn check_header(headers: &csv::StringRecord, delimiter: u8) -> Result<()> {
    let mut problems = Vec::new();
    // A hostile header may have 200,000 columns: the message names the first few.
    let listed = |names: Vec<&str>| -> String {
        const SHOWN: usize = 10;
        let mut out: Vec<String> = names.iter().take(SHOWN).map(|h| crate::domain::shown(h)).collect();
        if names.len() > SHOWN {
            out.push(format!("and {} more", names.len() - SHOWN));
        }
        out.join(", ")
    };
    let unknown: Vec<&str> = headers.iter().filter(|h| !COLUMNS.contains(h)).collect();
    if !unknown.is_empty() {
        problems.push(format!("unknown column(s) {}", listed(unknown)));
    }
    let mut seen = std::collections::HashSet::new();
    let duplicates: Vec<&str> = headers.iter().filter(|h| !seen.insert(*h)).collect();
    if !duplicates.is_empty() {
        problems.push(format!("duplicate column(s) {}", listed(duplicates)));
    }
    if !headers.iter().any(|h| h == "username") {
        problems.push("no `username` column (required)".into());
    }
    if problems.is_empty() {
        return Ok(());
    }
    let mut message = format!(
        "the CSV header is not usable: {}; the columns are: {}",
        problems.join("; "),
        COLUMNS.join(", ")
    );
    if delimiter == b',' && headers.len() == 1 && headers.iter().any(|h| h.contains(['\t', ';'])) {
        message.push_str(" (is the file separated by another character? pass --delimiter)");
    }
    Err(Error::Invalid(message))
}

/// Options of [`Importer::import`].
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// What an existing username means ([`OnConflict::Fail`] by default).
    pub on_conflict: OnConflict,
    /// Validate everything, write nothing: each batch is checked against the database in a
    /// `READ ONLY` transaction (PostgreSQL) without the registry write check, so a dry run
    /// works on a standby and under a binary that may not write. The checks are the real
    /// import's (taken usernames, emails, phones and identities, workspaces and roles, the
    /// admin, external-user and root-workspace rules) against the database as it stands,
    /// without the rows of the same input before it (duplicates within the input are still
    /// found).
    pub dry_run: bool,
    /// All rows or none.
    pub atomic: bool,
    /// Rows per transaction (default 1,000; statements are split at 1,000 rows). Memory
    /// holds about three batches (one read ahead, one waiting, one being written): 5,000-row
    /// batches cost some 25 MB more at the peak and were no faster.
    pub batch_size: usize,
    /// Counters the import advances as it goes, for a progress display (`None`: not
    /// counted).
    pub progress: Option<Arc<ImportProgress>>,
}

/// How far an import has got, counted in rows: shared with [`Importer::import`] through
/// [`ImportOptions::progress`] and read from any thread while it runs (relaxed atomic
/// counters: each read is a recent value, never a torn one).
#[derive(Debug, Default)]
pub struct ImportProgress {
    prepared: AtomicU64,
    written: AtomicU64,
}

impl ImportProgress {
    /// Rows read and validated, and — for a row with a plaintext password — hashed: the
    /// count advances row by row while a batch's passwords are hashed (seconds per thousand
    /// rows), before the batch is written. Includes rows that failed validation.
    pub fn prepared(&self) -> u64 {
        self.prepared.load(Ordering::Relaxed)
    }

    /// Rows whose result is final and reported (created, updated, skipped, failed, or with
    /// `atomic`, rolled back).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    fn add_prepared(&self, rows: u64) {
        self.prepared.fetch_add(rows, Ordering::Relaxed);
    }

    fn add_written(&self, rows: u64) {
        self.written.fetch_add(rows, Ordering::Relaxed);
    }
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            on_conflict: OnConflict::Fail,
            dry_run: false,
            atomic: false,
            batch_size: 1000,
            progress: None,
        }
    }
}

/// The outcome of one row.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    /// The row's line number in the input (1-based, the CSV header being line 1).
    pub line: usize,
    /// The row's username, as given.
    pub username: String,
    /// `created`, `updated`, `skipped`, `error`; with `dry_run`: `valid` (would be created or
    /// updated); with `atomic` and any error: `rolled_back` for rows that were fine. Serialized
    /// as those names.
    pub status: ImportRowStatus,
    /// The user's id for a `created`, `updated`, `skipped` or `valid` row.
    pub id: Option<Uuid>,
    /// Why the row failed (`status` is `error`).
    pub error: Option<String>,
}

/// Totals of an import.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSummary {
    /// Rows read.
    pub rows: usize,
    /// Users created (0 in a dry run, whose rows are `valid`).
    pub created: usize,
    /// Existing users updated ([`OnConflict::Update`]).
    pub updated: usize,
    /// Rows skipped ([`OnConflict::Skip`]).
    pub skipped: usize,
    /// Rows that failed.
    pub failed: usize,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// The `on_user_created` hooks that failed (the first failure of each hook): the users
    /// stand (the hook contract), the work stays owed (`hooks list`, `hooks replay`).
    /// Absent from JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hook_failures: Vec<crate::domain::HookFailure>,
}

/// A row that passed validation, ready for the database.
struct Prepared {
    line: usize,
    username: Username,
    email: Option<Email>,
    phone: Option<Phone>,
    row: ImportRow,
    /// `None` when the row has no role: `user` for a new user, unchanged for an update.
    role: Option<InstanceRole>,
    password_hash: Option<String>,
    plaintext: Option<Secret>,
}

/// Bulk import.
#[derive(Clone)]
pub struct Importer {
    db: Database,
    lifecycle: Arc<UserLifecycleService>,
}

/// The most memberships one row may carry: far above any real user's, and low enough that
/// a row's lookups fit every backend's statement limits (SQLite binds at most 32,766
/// parameters), so a row is refused the same way on both.
pub const MAX_ROW_MEMBERSHIPS: usize = 1000;

/// The longest row error message reported, in characters.
const MAX_ERROR_CHARS: usize = 300;

/// A failed row. The username and message are cut to bounded lengths: a hostile file must
/// not turn a megabyte value into megabytes of output (values are echoed through
/// [`crate::domain::shown`] already; this also bounds the parsers' own messages).
fn error(line: usize, username: &str, message: impl Into<String>) -> RowResult {
    let cut = |text: &str, max: usize| -> String {
        if text.chars().count() <= max {
            text.to_owned()
        } else {
            let head: String = text.chars().take(max).collect();
            format!("{head}…")
        }
    };
    RowResult {
        line,
        username: cut(username, crate::domain::ECHO_CHARS),
        status: ImportRowStatus::Error,
        id: None,
        error: Some(cut(&message.into(), MAX_ERROR_CHARS)),
    }
}

fn prepare(line: usize, row: ImportRow) -> std::result::Result<Prepared, RowResult> {
    let fail = |e: Error| error(line, &row.username, e.to_string());
    let username = Username::parse(&row.username).map_err(fail)?;
    let email = row.email.as_deref().map(Email::parse).transpose().map_err(fail)?;
    let phone = row.phone.as_deref().map(Phone::parse).transpose().map_err(fail)?;
    let role = row
        .role
        .as_deref()
        .map(str::parse::<InstanceRole>)
        .transpose()
        .map_err(fail)?;
    for (field, value) in [("given name", &row.given_name), ("family name", &row.family_name)] {
        if let Some(value) = value {
            clean_text(field, value, MAX_NAME_CHARS).map_err(fail)?;
        }
    }
    if let (Some(provider), Some(subject)) = (&row.provider, &row.subject) {
        clean_identity(provider, subject).map_err(fail)?;
    }
    if row.memberships.len() > MAX_ROW_MEMBERSHIPS {
        return Err(error(
            line,
            &row.username,
            format!(
                "{} memberships: at most {MAX_ROW_MEMBERSHIPS} per row",
                row.memberships.len()
            ),
        ));
    }
    for (workspace, role) in &row.memberships {
        clean_text("membership workspace", workspace, 200).map_err(fail)?;
        clean_text("membership role", role, 64).map_err(fail)?;
    }
    let external = row.external == Some(true);
    if external && role == Some(InstanceRole::Admin) {
        return Err(error(line, &row.username, "an external user can never be admin"));
    }
    if external && (row.password.is_some() || row.password_hash.is_some()) {
        return Err(error(line, &row.username, "external users have no password"));
    }
    if row.provider.is_some() != row.subject.is_some() || (row.provider.is_some() && !external) {
        return Err(error(
            line,
            &row.username,
            "provider and subject go together, for external users only",
        ));
    }
    if row.password.is_some() && row.password_hash.is_some() {
        return Err(error(line, &row.username, "give password or password_hash, not both"));
    }
    if let Some(hash) = &row.password_hash {
        password::validate_imported_hash(hash).map_err(fail)?;
    }
    let plaintext = match &row.password {
        Some(p) => {
            let secret = Secret::new(p.clone());
            secret.validate_new().map_err(fail)?;
            Some(secret)
        }
        None => None,
    };
    let password_hash = row.password_hash.clone();
    Ok(Prepared {
        line,
        username,
        email,
        phone,
        row,
        role,
        password_hash,
        plaintext,
    })
}

impl Importer {
    pub(crate) fn new(db: Database, lifecycle: Arc<UserLifecycleService>) -> Self {
        Self { db, lifecycle }
    }

    /// Imports `rows`, calling `on_results` with each batch's results as they are final.
    ///
    /// The rows are read, validated and hashed on a thread of their own while the previous
    /// batch is written, with at most one batch waiting between the two: memory holds about
    /// three batches, whatever the number of rows. A username, email or phone that appeared
    /// earlier in the input is an error row naming the line of its first occurrence; the
    /// keys seen are kept in a temporary file, not in memory (only a fixed-size filter is).
    ///
    /// A row whose username exists is, with [`OnConflict::Update`], applied through the same
    /// rules and events as the single-user commands: an absent column changes nothing; a
    /// role goes through `role assign|revoke`'s rules (never an external admin, never the
    /// last admin demoted, audited), a password through `set-password`'s (refused for
    /// external users, sessions revoked, audited, one spawned logout), a membership through
    /// `role assign`'s (audited, invalidation published). A refused row is an error row.
    ///
    /// Passwords are hashed before the write transaction begins, so the database's write
    /// lock (SQLite) is never held while hashing. With `atomic`, every row is read,
    /// validated and hashed first into a temporary file (password hashes only, never a
    /// plaintext), then written in one transaction; the results, known only at its end, wait
    /// in a temporary file too and are reported in line order after the commit or rollback.
    /// The temporary files are anonymous (unlinked at creation) and go when the import ends.
    pub async fn import<I>(
        &self,
        rows: I,
        options: &ImportOptions,
        mut on_results: impl FnMut(&[RowResult]),
    ) -> Result<ImportSummary>
    where
        I: IntoIterator<Item = ParsedRow>,
        I::IntoIter: Send + 'static,
    {
        let mut summary = ImportSummary {
            dry_run: options.dry_run,
            ..ImportSummary::default()
        };
        let mut chunks = prepare_in_background(rows.into_iter(), options.batch_size.max(1), options.progress.clone());
        if options.atomic && !options.dry_run {
            return self.import_atomic(chunks, options, summary, on_results).await;
        }
        let mut directory = Directory::default();
        // The previous batch's `on_user_created` hooks, running on a connection of their own
        // (when the pool has two) while this batch is written.
        let mut hooks = CreatedHooks::default();
        while let Some(chunk) = chunks.recv().await {
            let PreparedChunk {
                rows,
                mut results,
                prepared,
            } = match chunk {
                Ok(chunk) => chunk,
                Err(err) => return Err(hooks.finish_after(err).await),
            };
            summary.rows += rows;
            let written = match self.write_batch_isolated(&prepared, options, &mut directory).await {
                Ok(written) => written,
                Err(err) => return Err(hooks.finish_after(err).await),
            };
            results.extend(written.results);
            results.sort_by_key(|r| r.line);
            tally(&mut summary, &results);
            on_results(&results);
            if let Some(progress) = &options.progress {
                progress.add_written(results.len() as u64);
            }
            hooks.wait(&mut summary).await;
            hooks
                .start(
                    &self.hook_work(),
                    written.owed,
                    written.created,
                    self.db.backend(),
                    &mut summary,
                )
                .await;
            for user in &written.logouts {
                self.lifecycle.dispatch_logout(user, LogoutReason::PasswordChanged);
            }
        }
        hooks.wait(&mut summary).await;
        Ok(summary)
    }

    fn hook_work(&self) -> crate::services::hook_work::HookWork {
        crate::services::hook_work::HookWork::new(self.db.clone(), self.lifecycle.clone())
    }

    /// `atomic`: every row prepared and hashed into a temporary file first, then one
    /// transaction writes them batch by batch; results and the events to fire after the
    /// commit wait in temporary files.
    async fn import_atomic(
        &self,
        mut chunks: tokio::sync::mpsc::Receiver<Result<PreparedChunk>>,
        options: &ImportOptions,
        mut summary: ImportSummary,
        mut on_results: impl FnMut(&[RowResult]),
    ) -> Result<ImportSummary> {
        let batch_size = options.batch_size.max(1);
        let mut refused = Spill::new()?;
        let mut staged = Spill::new()?;
        let mut failed = false;
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk?;
            summary.rows += chunk.rows;
            failed |= !chunk.results.is_empty();
            for r in &chunk.results {
                refused.write(&SpilledResult::from(r))?;
            }
            for p in &chunk.prepared {
                staged.write(&StagedRow::from(p))?;
            }
        }
        let mut staged = staged.read::<StagedIn>()?;
        let mut results = Spill::new()?;
        let mut created = Spill::new()?;
        let mut logouts = Spill::new()?;
        let mut directory = Directory::default();
        let mut owed = Vec::new();
        let mut tx = self.db.begin().await?;
        loop {
            let mut batch = Vec::with_capacity(batch_size);
            while batch.len() < batch_size {
                match staged.next()? {
                    Some(row) => batch.push(row.restage()?),
                    None => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            let mut written = self.write_batch(&mut tx, &batch, options, &mut directory).await?;
            written.results.sort_by_key(|r| r.line);
            failed |= written.results.iter().any(|r| r.status == ImportRowStatus::Error);
            for r in &written.results {
                results.write(&SpilledResult::from(r))?;
            }
            for user in &written.created {
                created.write(&SpilledUser::from(user))?;
            }
            for user in &written.logouts {
                logouts.write(&user.id)?;
            }
            owed.extend(written.owed);
        }
        if failed {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        // Both files are in line order: merge them.
        let (mut refused, mut results) = (refused.read::<SpilledResult>()?, results.read::<SpilledResult>()?);
        let (mut a, mut b) = (refused.next()?, results.next()?);
        let mut out = Vec::with_capacity(batch_size);
        loop {
            let next = match (&a, &b) {
                (None, None) => break,
                (Some(x), Some(y)) if x.line <= y.line => std::mem::replace(&mut a, refused.next()?),
                (Some(_), None) => std::mem::replace(&mut a, refused.next()?),
                _ => std::mem::replace(&mut b, results.next()?),
            };
            let Some(next) = next else { break };
            let mut r = next.into_result();
            if failed && r.status != ImportRowStatus::Error {
                r.status = ImportRowStatus::RolledBack;
                r.id = None;
            }
            out.push(r);
            if out.len() == batch_size {
                tally(&mut summary, &out);
                on_results(&out);
                if let Some(progress) = &options.progress {
                    progress.add_written(out.len() as u64);
                }
                out.clear();
            }
        }
        tally(&mut summary, &out);
        on_results(&out);
        if let Some(progress) = &options.progress {
            progress.add_written(out.len() as u64);
        }
        if failed {
            return Ok(summary);
        }
        let mut created = created.read::<SpilledUser>()?;
        loop {
            let mut users = Vec::with_capacity(batch_size);
            while users.len() < batch_size {
                match created.next()? {
                    Some(user) => users.push(user.into_user()),
                    None => break,
                }
            }
            if users.is_empty() {
                break;
            }
            let failures = self.lifecycle.dispatch_created_batch(&users, None).await;
            add_failures(&mut summary, failures);
        }
        // Every batch's hooks ran (their failures are reported, not fatal): the owed records
        // go, with a record for each failing hook in their place.
        self.hook_work().settle_all(&owed, &summary.hook_failures).await;
        let mut logouts = logouts.read::<Uuid>()?;
        while let Some(id) = logouts.next()? {
            let mut tx = self.db.begin_read_tx().await?;
            let user = tx.require_user(&UserRef::Id(id), false).await;
            tx.rollback().await?;
            self.lifecycle.dispatch_logout(&user?, LogoutReason::PasswordChanged);
        }
        Ok(summary)
    }

    /// One batch in its own transaction; when the transaction fails, each row is retried in
    /// a transaction of its own so one bad row costs only itself.
    async fn write_batch_isolated(
        &self,
        prepared: &[Prepared],
        options: &ImportOptions,
        directory: &mut Directory,
    ) -> Result<Written> {
        let mut tries = 1;
        let outcome = loop {
            match self.write_batch_once(prepared, options, directory).await {
                Err(err) if err.is_retryable() && tries < WRITE_ATTEMPTS => {
                    tracing::info!(error = %err, attempt = tries, "batch conflicted with a concurrent transaction; retrying");
                    tokio::time::sleep(retry_pause(tries)).await;
                    tries += 1;
                }
                outcome => break outcome,
            }
        };
        match outcome {
            Ok(done) => Ok(done),
            // Unreachable, read-only, shutting down: every next row would fail the same way, so
            // the import stops here instead of reporting each row as bad; so does Ctrl-C.
            Err(err) if err.ends_a_batch() => Err(err),
            Err(err) if prepared.len() > 1 => {
                tracing::warn!(error = %err, rows = prepared.len(), "batch failed; retrying its rows one by one");
                let mut all = Written::default();
                for one in prepared.chunks(1) {
                    match self.write_batch_once(one, options, directory).await {
                        Ok(done) => {
                            all.results.extend(done.results);
                            all.created.extend(done.created);
                            all.logouts.extend(done.logouts);
                            all.owed.extend(done.owed);
                        }
                        Err(err) if err.ends_a_batch() => return Err(err),
                        Err(err) => all
                            .results
                            .push(error(one[0].line, one[0].username.as_str(), err.to_string())),
                    }
                }
                Ok(all)
            }
            Err(err) => Ok(Written {
                results: vec![error(prepared[0].line, prepared[0].username.as_str(), err.to_string())],
                ..Written::default()
            }),
        }
    }

    /// One batch in one transaction, committed; on a dry run checked in a read-only
    /// transaction, with only the results kept.
    async fn write_batch_once(
        &self,
        prepared: &[Prepared],
        options: &ImportOptions,
        directory: &mut Directory,
    ) -> Result<Written> {
        if options.dry_run {
            let mut tx = self.db.begin_dry().await?;
            let done = self.write_batch(&mut tx, prepared, options, directory).await?;
            tx.end().await?;
            return Ok(Written {
                results: done.results,
                ..Written::default()
            });
        }
        let mut tx = self.db.begin().await?;
        let done = self.write_batch(&mut tx, prepared, options, directory).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Writes one batch inside `tx`: conflicts resolved per `on_conflict` (looked up for the
    /// whole batch in two statements), new users in one statement per table (`COPY` on
    /// PostgreSQL, multi-row `INSERT` on SQLite), updates per row. Returns the results and the created users.
    async fn write_batch(
        &self,
        tx: &mut Tx,
        prepared: &[Prepared],
        options: &ImportOptions,
        directory: &mut Directory,
    ) -> Result<Written> {
        let lowered: Vec<String> = prepared.iter().map(|p| p.username.as_str().to_lowercase()).collect();
        let existing = tx.existing_usernames(&lowered).await?;
        let emails: Vec<String> = prepared
            .iter()
            .filter_map(|p| p.email.as_ref().map(|e| e.as_str().to_owned()))
            .collect();
        let phones: Vec<String> = prepared
            .iter()
            .filter_map(|p| p.phone.as_ref().map(|ph| ph.as_str().to_owned()))
            .collect();
        let owners = tx.existing_passports(&emails, &phones).await?;
        // A dry run writes nothing, so what the database's constraints would refuse at the
        // insert is looked up instead (the root workspace for the external-user rule).
        let root = if options.dry_run {
            tx.root_workspace().await?.map(|r| r.workspace_id)
        } else {
            None
        };
        let at = now();
        let mut results = Vec::with_capacity(prepared.len());
        let mut batch = Vec::new();
        let mut updates = Vec::new();
        for p in prepared {
            let name = p.username.as_str();
            let existing_id = existing.get(&name.to_lowercase()).copied();
            let memberships = match directory.resolve(tx, &p.row.memberships).await {
                Ok(m) => m,
                Err(e) => {
                    results.push(error(p.line, name, e.to_string()));
                    continue;
                }
            };
            let taken = p
                .email
                .iter()
                .map(|e| e.as_str())
                .chain(p.phone.iter().map(|ph| ph.as_str()))
                .find(|v| owners.get(*v).is_some_and(|owner| Some(*owner) != existing_id));
            match (existing_id, options.on_conflict) {
                (Some(id), OnConflict::Skip) => results.push(RowResult {
                    line: p.line,
                    username: name.to_owned(),
                    status: ImportRowStatus::Skipped,
                    id: Some(id),
                    error: None,
                }),
                (Some(_), OnConflict::Fail) => results.push(error(
                    p.line,
                    name,
                    "a user with that username already exists (use --on-conflict skip or update)",
                )),
                _ if taken.is_some() => results.push(error(
                    p.line,
                    name,
                    format!("{} already belongs to another user", taken.unwrap_or_default()),
                )),
                (Some(id), OnConflict::Update) => updates.push((p, id, memberships)),
                (None, _) => {
                    if options.dry_run
                        && let Some(refusal) = dry_refusal(tx, p, &memberships, root).await?
                    {
                        results.push(error(p.line, name, refusal));
                        continue;
                    }
                    let person = Person {
                        id: Uuid::now_v7(),
                        given_name: p.row.given_name.clone(),
                        family_name: p.row.family_name.clone(),
                        display_name: match (&p.row.given_name, &p.row.family_name) {
                            (Some(g), Some(f)) => Some(format!("{g} {f}")),
                            (Some(one), None) | (None, Some(one)) => Some(one.clone()),
                            (None, None) => None,
                        },
                        ..Person::default()
                    };
                    let user = NewUserRecord {
                        id: Uuid::now_v7(),
                        person_id: person.id,
                        username: name.to_owned(),
                        role: p.role.unwrap_or(InstanceRole::User),
                        is_external: p.row.external == Some(true),
                        password_hash: p.password_hash.clone(),
                        created_at: at,
                    };
                    results.push(RowResult {
                        line: p.line,
                        username: name.to_owned(),
                        status: if options.dry_run {
                            ImportRowStatus::Valid
                        } else {
                            ImportRowStatus::Created
                        },
                        id: Some(user.id),
                        error: None,
                    });
                    batch.push(BatchUser {
                        person,
                        user,
                        email: p.email.as_ref().map(|e| e.as_str().to_owned()),
                        phone: p.phone.as_ref().map(|ph| ph.as_str().to_owned()),
                        identity: p.row.provider.clone().zip(p.row.subject.clone()),
                        memberships,
                    });
                }
            }
        }
        if !options.dry_run {
            tx.insert_users_batch(&batch).await?;
        }
        let mut logouts = Vec::new();
        for (p, id, memberships) in updates {
            let outcome = if options.dry_run {
                check_update(tx, p, id, &memberships, root).await?
            } else {
                update_existing(tx, p, id, &memberships, at).await?
            };
            match outcome {
                Ok(logout) => {
                    logouts.extend(logout);
                    results.push(RowResult {
                        line: p.line,
                        username: p.username.as_str().to_owned(),
                        status: if options.dry_run {
                            ImportRowStatus::Valid
                        } else {
                            ImportRowStatus::Updated
                        },
                        id: Some(id),
                        error: None,
                    });
                }
                Err(refusal) => results.push(error(p.line, p.username.as_str(), refusal)),
            }
        }
        // The users as the database now holds them, built from what was just inserted rather
        // than read back (the hooks get exactly these values).
        let created = if options.dry_run {
            Vec::new()
        } else {
            batch.iter().map(created_user).collect()
        };
        // The created users' hook work, recorded in this transaction: a crash between its
        // commit and the hooks leaves it for the next run (`hooks replay`).
        let owed = if created.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<Uuid> = created.iter().map(|u: &User| u.id).collect();
            vec![crate::services::hook_work::HookWork::owe(tx, &ids).await?]
        };
        Ok(Written {
            results,
            created,
            logouts,
            owed,
        })
    }
}

/// The `on_user_created` hooks of the last batch written. On PostgreSQL they run in a task
/// of their own so that the next batch is written meanwhile: with a pool of two connections
/// or more (`user import` takes two), the hooks' transactions (the audit rows, the home
/// folders) and the next batch's run at the same time, on two server processes. Batches
/// still reach the hooks in order, one at a time, each after its commit, and the import ends
/// only when the last batch's hooks have. With one connection the two take turns. On
/// SQLite, whose one writer would make them wait on each other's lock, the hooks run before
/// the next batch, as they always did.
///
/// The work is durable: each batch's transaction recorded it (`owed_hook_work`), and the
/// record is settled once the hooks ran. A failing hook never fails the import (the hook
/// contract): its failure is reported in the summary and its work stays owed.
#[derive(Default)]
struct CreatedHooks(Option<tokio::task::JoinHandle<Vec<crate::domain::HookFailure>>>);

impl CreatedHooks {
    /// Fires the hooks for `users` (none: nothing to do) and settles `owed`, as the current
    /// actor: in a task on PostgreSQL, at once on SQLite.
    async fn start(
        &mut self,
        work: &crate::services::hook_work::HookWork,
        owed: Vec<Uuid>,
        users: Vec<User>,
        backend: crate::store::Backend,
        summary: &mut ImportSummary,
    ) {
        if users.is_empty() && owed.is_empty() {
            return;
        }
        if backend == crate::store::Backend::Sqlite {
            add_failures(summary, work.created_many(&owed, &users).await);
            return;
        }
        let work = work.clone();
        let actor = crate::lifecycle::current_actor();
        self.0 = Some(tokio::spawn(crate::lifecycle::with_actor(actor, async move {
            work.created_many(&owed, &users).await
        })));
    }

    /// Waits for the hooks in flight and adds their failures to `summary`.
    async fn wait(&mut self, summary: &mut ImportSummary) {
        if let Some(task) = self.0.take() {
            match task.await {
                Ok(failures) => add_failures(summary, failures),
                Err(e) => {
                    tracing::error!(error = %e, "on_user_created hooks task failed; its work stays owed (hooks replay)")
                }
            }
        }
    }

    /// Waits for the hooks in flight before the import ends with `err` (the connection they
    /// hold goes back to the pool first); `err` is what the caller returns.
    async fn finish_after(&mut self, err: Error) -> Error {
        let mut ignored = ImportSummary::default();
        self.wait(&mut ignored).await;
        err
    }
}

/// Adds hook failures to the summary, the first of each hook only.
fn add_failures(summary: &mut ImportSummary, failures: Vec<crate::domain::HookFailure>) {
    for f in failures {
        if !summary.hook_failures.iter().any(|h| h.hook == f.hook) {
            summary.hook_failures.push(f);
        }
    }
}

/// What writing a batch did: its row results, the users it created (for
/// `on_user_created`) and the users whose password it changed (for one spawned logout each).
#[derive(Default)]
struct Written {
    results: Vec<RowResult>,
    created: Vec<User>,
    logouts: Vec<User>,
    /// The records of the created users' owed hook work (one per transaction's batch).
    owed: Vec<Uuid>,
}

/// One batch of rows, read, validated and hashed.
struct PreparedChunk {
    /// Rows read (valid or not).
    rows: usize,
    /// The error rows.
    results: Vec<RowResult>,
    prepared: Vec<Prepared>,
}

/// Reads, validates and hashes `rows` on a blocking thread, one batch at a time, handing
/// each batch over a channel of one: the reader is at most one batch ahead of the writer.
/// Dropping the receiver stops the thread at its next batch.
fn prepare_in_background(
    mut rows: impl Iterator<Item = ParsedRow> + Send + 'static,
    batch_size: usize,
    progress: Option<Arc<ImportProgress>>,
) -> tokio::sync::mpsc::Receiver<Result<PreparedChunk>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        let mut seen = Seen::new();
        loop {
            let chunk: Vec<ParsedRow> = rows.by_ref().take(batch_size).collect();
            if chunk.is_empty() {
                return;
            }
            let rows = chunk.len();
            let prepared =
                prepare_chunk(chunk, &mut seen, progress.as_deref()).map(|(results, prepared)| PreparedChunk {
                    rows,
                    results,
                    prepared,
                });
            let failed = prepared.is_err();
            if sender.blocking_send(prepared).is_err() || failed {
                return;
            }
        }
    });
    receiver
}

/// Reads one chunk's rows into validated [`Prepared`] rows (and error rows for the rest),
/// then hashes their plaintext passwords, all outside any transaction. A username or
/// passport seen earlier in the input makes the row an error naming the first line.
/// `progress` counts each row once: the rows without a password to hash when validated, the
/// others one by one as their hashes are done.
fn prepare_chunk(
    chunk: Vec<ParsedRow>,
    seen: &mut Seen,
    progress: Option<&ImportProgress>,
) -> Result<(Vec<RowResult>, Vec<Prepared>)> {
    let mut results = Vec::new();
    let mut prepared = Vec::with_capacity(chunk.len());
    for (line, parsed) in chunk {
        match parsed {
            Err(message) => results.push(error(line, "", message)),
            Ok(row) => {
                if let Some(first) = seen.first_line(&format!("u:{}", row.username.to_lowercase()), line)? {
                    results.push(error(
                        line,
                        &row.username,
                        format!("duplicate username in the input (first on line {first})"),
                    ));
                    continue;
                }
                let p = match prepare(line, row) {
                    Ok(p) => p,
                    Err(r) => {
                        results.push(r);
                        continue;
                    }
                };
                let passports = p
                    .email
                    .iter()
                    .map(|e| ("email", e.as_str()))
                    .chain(p.phone.iter().map(|ph| ("phone", ph.as_str())));
                let mut duplicate = None;
                for (kind, value) in passports {
                    if let Some(first) = seen.first_line(&format!("p:{value}"), line)? {
                        duplicate = Some(format!("duplicate {kind} in the input (first on line {first})"));
                        break;
                    }
                }
                match duplicate {
                    Some(message) => results.push(error(line, p.username.as_str(), message)),
                    None => prepared.push(p),
                }
            }
        }
    }
    if let Some(progress) = progress {
        let unhashed = prepared.iter().filter(|p| p.plaintext.is_none()).count();
        progress.add_prepared((results.len() + unhashed) as u64);
    }
    hash_plaintexts(&mut prepared, progress)?;
    Ok((results, prepared))
}

/// Applies an `--on-conflict update` row to the existing user `id` with the rules of the
/// single-user commands (see [`Importer::import`]). Every check runs before the first
/// write, so a refused row changes nothing. Returns `Ok(Err(reason))` for a refusal and
/// `Ok(Ok(Some(user)))` when the password changed (the caller fires the logout after commit).
/// What the database's constraints would refuse in a new row that a dry run does not insert:
/// an external identity that already belongs to a user, an external user in the root
/// workspace. The messages are the real import's.
async fn dry_refusal(
    tx: &mut Tx,
    p: &Prepared,
    memberships: &[(Uuid, Uuid)],
    root: Option<Uuid>,
) -> Result<Option<String>> {
    if let (Some(provider), Some(subject)) = (&p.row.provider, &p.row.subject)
        && tx.user_id_by_external_identity(provider, subject).await?.is_some()
    {
        return Ok(Some(
            "that (provider, subject) identity already belongs to a user".into(),
        ));
    }
    Ok((p.row.external == Some(true) && in_root(memberships, root)).then(|| EXTERNAL_IN_ROOT.to_owned()))
}

/// The message of the `memberships_external_not_in_root` constraint (as the real import
/// reports it).
const EXTERNAL_IN_ROOT: &str = "refused by the database: external users cannot join the root workspace or hold its roles (convert the user to internal first)";

/// Whether one of `memberships` is in the root workspace `root`.
fn in_root(memberships: &[(Uuid, Uuid)], root: Option<Uuid>) -> bool {
    root.is_some_and(|root| memberships.iter().any(|(ws, _)| *ws == root))
}

/// The user a conflicting row updates (locked for the update when `lock`), or the row's
/// refusal: what [`update_refusal`] refuses, and a password for an external user. Shared
/// by the dry run ([`check_update`]) and the import ([`update_existing`]).
async fn update_preflight(
    tx: &mut Tx,
    p: &Prepared,
    id: Uuid,
    lock: bool,
) -> Result<std::result::Result<User, String>> {
    let user = tx.require_user(&UserRef::Id(id), lock).await?;
    if let Some(refusal) = update_refusal(tx, p, &user).await? {
        return Ok(Err(refusal));
    }
    if p.password_hash.is_some()
        && let Err(e) = crate::services::accounts::refuse_password_for_external(&user)
    {
        return Ok(Err(e.to_string()));
    }
    Ok(Ok(user))
}

/// The rules of [`update_existing`] without its writes, for a dry run (reads only, no lock
/// taken): `Ok(Err(refusal))` for a row the real import would refuse.
async fn check_update(
    tx: &mut Tx,
    p: &Prepared,
    id: Uuid,
    memberships: &[(Uuid, Uuid)],
    root: Option<Uuid>,
) -> Result<std::result::Result<Option<User>, String>> {
    use crate::services::accounts::check_instance_role_change;
    let user = match update_preflight(tx, p, id, false).await? {
        Ok(user) => user,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if let Some(role) = p.role {
        match check_instance_role_change(tx, &user, role).await {
            Ok(_) => {}
            Err(e @ (Error::Refused(_) | Error::Invalid(_))) => return Ok(Err(e.to_string())),
            Err(e) => return Err(e),
        }
    }
    if user.is_external && in_root(memberships, root) {
        return Ok(Err(EXTERNAL_IN_ROOT.to_owned()));
    }
    Ok(Ok(None))
}

/// The refusals of an update that depend on the user as stored: in the trash, a different
/// `external` value, an identity or a contact the user does not hold.
async fn update_refusal(tx: &mut Tx, p: &Prepared, user: &User) -> Result<Option<String>> {
    if user.is_trashed() {
        return Ok(Some(format!(
            "user {} is in the trash: restore it first (user restore)",
            user.username
        )));
    }
    if let Some(external) = p.row.external
        && external != user.is_external
    {
        return Ok(Some(format!(
            "user {} is {}: an import does not convert users (use user convert)",
            user.username,
            if user.is_external { "external" } else { "internal" }
        )));
    }
    if let (Some(provider), Some(subject)) = (&p.row.provider, &p.row.subject)
        && tx.user_id_by_external_identity(provider, subject).await? != Some(user.id)
    {
        return Ok(Some(format!(
            "an import does not change the external identities of existing user {}",
            user.username
        )));
    }
    // The email and phone cells are keys of the user, not columns an update sets: a value
    // the user does not hold is refused rather than ignored under an `updated` status.
    let contact = [
        ("email", p.email.as_ref().map(|e| e.as_str().to_owned())),
        ("phone", p.phone.as_ref().map(|ph| ph.as_str().to_owned())),
    ];
    if contact.iter().any(|(_, v)| v.is_some()) {
        let passports = tx.passports_of(user.id).await?;
        for (kind, value) in contact {
            if let Some(value) = value
                && !passports.iter().any(|pp| pp.value == value)
            {
                return Ok(Some(format!(
                    "an import does not change the {kind} of existing user {}: the {kind} cell differs from the user's; leave it empty",
                    user.username
                )));
            }
        }
    }
    Ok(None)
}

async fn update_existing(
    tx: &mut Tx,
    p: &Prepared,
    id: Uuid,
    memberships: &[(Uuid, Uuid)],
    at: crate::domain::Timestamp,
) -> Result<std::result::Result<Option<User>, String>> {
    use crate::services::accounts::{change_instance_role_in, change_password_in};
    let user = match update_preflight(tx, p, id, true).await? {
        Ok(user) => user,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if let Some(role) = p.role {
        match change_instance_role_in(tx, &user, role).await {
            Ok(_) => {}
            Err(e @ (Error::Refused(_) | Error::Invalid(_))) => return Ok(Err(e.to_string())),
            Err(e) => return Err(e),
        }
    }
    tx.update_person_names(
        user.person_id,
        p.row.given_name.as_deref(),
        p.row.family_name.as_deref(),
        at,
    )
    .await?;
    for (workspace_id, role_id) in memberships {
        if tx.insert_membership(user.id, *workspace_id, *role_id, at).await? {
            crate::services::audit::record(
                tx,
                "membership.assigned",
                Some(user.id),
                serde_json::json!({ "workspace_id": workspace_id, "role_id": role_id }),
            )
            .await?;
            tx.publish_authz_invalidation(user.id, "membership_changed", at).await?;
        }
    }
    match &p.password_hash {
        Some(phc) => {
            change_password_in(tx, &user, phc).await?;
            Ok(Ok(Some(user)))
        }
        None => Ok(Ok(None)),
    }
}

fn created_user(b: &BatchUser) -> User {
    User {
        id: b.user.id,
        person_id: b.user.person_id,
        username: b.user.username.clone(),
        role: b.user.role,
        is_external: b.user.is_external,
        active: true,
        has_password: b.user.password_hash.is_some(),
        storage_quota_bytes: None,
        storage_used_bytes: 0,
        created_at: b.user.created_at,
        updated_at: b.user.created_at,
        last_login_at: None,
        deleted_at: None,
        purge_after: None,
    }
}

fn tally(summary: &mut ImportSummary, results: &[RowResult]) {
    for r in results {
        match r.status {
            ImportRowStatus::Created => summary.created += 1,
            ImportRowStatus::Updated => summary.updated += 1,
            ImportRowStatus::Skipped => summary.skipped += 1,
            ImportRowStatus::Error => summary.failed += 1,
            ImportRowStatus::Valid | ImportRowStatus::RolledBack => {}
        }
    }
}

/// Hashes every plaintext password of the batch in parallel on all cores (rayon). Called
/// on the preparing thread, never on the async runtime. Each finished hash adds one row to
/// `progress`.
fn hash_plaintexts(prepared: &mut [Prepared], progress: Option<&ImportProgress>) -> Result<()> {
    let hashed: Vec<(usize, Result<String>)> = prepared
        .par_iter()
        .enumerate()
        .filter_map(|(i, p)| {
            p.plaintext.as_ref().map(|secret| {
                let hash = password::hash_blocking(secret);
                if let Some(progress) = progress {
                    progress.add_prepared(1);
                }
                (i, hash)
            })
        })
        .collect();
    for (i, hash) in hashed {
        prepared[i].password_hash = Some(hash?);
        prepared[i].plaintext = None;
    }
    Ok(())
}

/// Workspace and role ids by name, resolved once per import.
#[derive(Default)]
struct Directory {
    known: HashMap<(String, String), (Uuid, Uuid)>,
}

impl Directory {
    async fn resolve(&mut self, tx: &mut Tx, pairs: &[(String, String)]) -> Result<Vec<(Uuid, Uuid)>> {
        let mut out = Vec::with_capacity(pairs.len());
        for (workspace, role) in pairs {
            let key = (workspace.to_lowercase(), role.to_lowercase());
            if let Some(ids) = self.known.get(&key) {
                out.push(*ids);
                continue;
            }
            let ws = tx.workspace_id(workspace).await?;
            let role_id = tx.role_id(ws, role).await?;
            self.known.insert(key, (ws, role_id));
            out.push((ws, role_id));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_password_keeps_its_leading_quote_and_other_cells_lose_a_neutralising_one() {
        let csv = "username,given_name,password\nalice,'=Alice,'=secret pass\nbob,''=Bob,'-another one\n";
        let rows = parse(std::io::Cursor::new(csv), Format::Csv).expect("rows");
        let rows: Vec<ImportRow> = rows.into_iter().map(|(_, r)| r.expect("row")).collect();
        assert_eq!(rows[0].given_name.as_deref(), Some("=Alice"));
        assert_eq!(rows[0].password.as_deref(), Some("'=secret pass"));
        assert_eq!(
            rows[1].given_name.as_deref(),
            Some("'=Bob"),
            "the export's '' reads back as one"
        );
        assert_eq!(rows[1].password.as_deref(), Some("'-another one"));
    }

    #[test]
    fn a_workspace_name_with_a_semicolon_is_one_membership() {
        fn pairs(text: &str) -> Vec<&str> {
            membership_pairs(text).into_iter().map(str::trim).collect()
        }
        assert_eq!(pairs("Acme:member;Beta:admin"), ["Acme:member", "Beta:admin"]);
        assert_eq!(
            pairs(" Acme : member ; Beta:admin ;"),
            ["Acme : member", "Beta:admin", ""]
        );
        assert_eq!(pairs("R&D; Europe:member;Acme:x.y"), ["R&D; Europe:member", "Acme:x.y"]);
        assert_eq!(pairs("a:b:c;d:e"), ["a:b:c", "d:e"]);
        assert_eq!(pairs("nothing"), ["nothing"]);
    }
}
