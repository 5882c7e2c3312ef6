//! The one output path: results on stdout as a table, JSON, or ids only (`-q`); nothing else
//! writes to stdout. Tables and JSON are both derived from the result's `Serialize` shape, so
//! the JSON field names (the model's, snake_case) are the table's row labels too.
//!
//! Tables: on a terminal they fit its width (80 columns when the terminal reports none),
//! one line per row with long cells cut short by `…` as `gh` does, and ids shortened to the
//! shortest prefix (at least 8 characters) that tells the rows apart; `--wide` shows
//! everything. When stdout is not a terminal they are tab-separated text with a header line
//! and full values, one row per line, escaped as PostgreSQL's `COPY` text format escapes
//! (`\t`, `\n`, `\r`, `\\`), lists in one cell, and formula-leading cells neutralised
//! ([`neutralise_formula`]). `-o csv` writes the same rows as RFC 4180 CSV.
//!
//! `-q` prints ids, one per line: a command's `id_key` names the field (a JSON pointer such
//! as `/keep/id` for a nested one); a field that holds no id (a count, a flag) prints
//! nothing, and an id repeated on consecutive rows is printed once.

use std::io::Write;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use serde::Serialize;
use serde_json::Value;

/// `-o/--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// JSON: one object per result, an array for lists.
    Json,
    /// CSV (RFC 4180) with a header row: the table's columns, full values, formula-leading
    /// cells neutralised.
    Csv,
}

/// Writes results in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
    pub quiet: bool,
    /// `--wide`: full ids and no width limit in terminal tables.
    pub wide: bool,
    /// Whether stdout is a terminal (tables drawn) or not (tab-separated text).
    pub terminal: bool,
}

impl Printer {
    /// One result object. `-q` prints its `id_key` field.
    pub fn record<T: Serialize>(&self, item: &T, id_key: &str) {
        let value = serde_json::to_value(item).unwrap_or(Value::Null);
        if self.quiet {
            let ids = quiet_ids(lookup(&value, id_key));
            if !ids.is_empty() {
                emit(&ids.join("\n"));
            }
            return;
        }
        match self.format {
            Format::Json => emit(&pretty(&value)),
            Format::Csv => {
                if let Value::Object(map) = &value {
                    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                    let mut text = csv_line(keys.iter().map(|k| (*k).to_owned()));
                    text.push_str(&csv_row(&value, &keys));
                    emit(text.trim_end_matches('\n'));
                }
            }
            Format::Table if !self.terminal => {
                if let Value::Object(map) = &value {
                    let lines: Vec<String> = map
                        .iter()
                        .map(|(k, v)| format!("{}\t{}", tsv_escape(k), cell(v)))
                        .collect();
                    emit(&lines.join("\n"));
                }
            }
            Format::Table => {
                let mut table = self.new_table();
                if let Value::Object(map) = &value {
                    for (key, v) in map {
                        table.add_row(vec![key.clone(), plain(v)]);
                    }
                }
                emit(&table.to_string());
            }
        }
    }

    /// One page of a list, then (when more rows follow) the next-page hint on stderr, after
    /// the results, in every format: `next page: --after CURSOR`.
    pub fn page<T: Serialize>(&self, items: &[T], columns: &[&str], id_key: &str, next: Option<String>) {
        self.list(items, columns, id_key);
        if let Some(cursor) = next {
            note!("more rows follow; next page: --after {cursor} (or --all for every row)");
        }
    }

    /// Starts a list written as it is produced (`--all`): a JSON array streamed object by
    /// object, ids line by line, or tab-separated rows; only a terminal table is collected
    /// first, since it needs every row to size its columns.
    pub fn stream<'a>(&self, columns: &'a [&'a str], id_key: &'a str) -> ListStream<'a> {
        ListStream {
            printer: *self,
            columns,
            id_key,
            count: 0,
            held: Vec::new(),
            last_id: None,
        }
    }

    /// A list. The table shows `columns`; JSON is an array of whole objects; `-q` prints the
    /// `id_key` of each, one per line.
    pub fn list<T: Serialize>(&self, items: &[T], columns: &[&str], id_key: &str) {
        let values: Vec<Value> = items
            .iter()
            .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
            .collect();
        if self.quiet {
            let mut ids: Vec<String> = values.iter().flat_map(|v| quiet_ids(lookup(v, id_key))).collect();
            ids.dedup();
            if !ids.is_empty() {
                emit(&ids.join("\n"));
            }
            return;
        }
        match self.format {
            Format::Json => emit(&pretty(&Value::Array(values))),
            Format::Csv => {
                let mut text = csv_line(columns.iter().map(|c| (*c).to_owned()));
                for v in &values {
                    text.push_str(&csv_row(v, columns));
                }
                emit(text.trim_end_matches('\n'));
            }
            Format::Table if !self.terminal => {
                let mut lines = vec![columns.join("\t")];
                lines.extend(values.iter().map(|v| tsv_row(v, columns)));
                emit(&lines.join("\n"));
            }
            Format::Table => emit(&self.terminal_table(&values, columns)),
        }
    }

    fn terminal_table(&self, values: &[Value], columns: &[&str]) -> String {
        let mut table = self.new_table();
        let mut header = comfy_table::Row::from(columns.to_vec());
        if !self.wide {
            header.max_height(1);
        }
        table.set_header(header);
        // Per id column, the shortest prefix (at least 8 characters) that tells its rows
        // apart: ids made in the same minute share their first 8 (time-ordered uuids).
        let widths: Vec<usize> = columns
            .iter()
            .map(|c| {
                let ids: Vec<&str> = values
                    .iter()
                    .filter_map(|v| v.get(*c).and_then(Value::as_str))
                    .filter(|text| is_id(c, text))
                    .collect();
                distinct_prefix(&ids)
            })
            .collect();
        for v in values {
            let mut row = comfy_table::Row::from(
                columns
                    .iter()
                    .zip(&widths)
                    .map(|(c, width)| {
                        let v = v.get(*c).unwrap_or(&Value::Null);
                        if self.wide { inline(v) } else { short(c, v, *width) }
                    })
                    .collect::<Vec<_>>(),
            );
            // One line per row, as gh prints: a long cell is cut short with `…` instead of
            // wrapping over several lines (`--wide` shows it whole).
            if !self.wide {
                row.max_height(1);
            }
            table.add_row(row);
        }
        // An id cut short can't be copied back: id columns keep their width, and so do
        // short-named columns whose cells are no wider than their name (`is_external`,
        // `active`), so neither the name nor a flag is cut; the other columns share the rest.
        for (i, c) in columns.iter().enumerate() {
            let id_column = values
                .iter()
                .any(|v| v.get(*c).and_then(Value::as_str).is_some_and(|t| is_id(c, t)));
            let narrow = c.len() <= NARROW_HEADER
                && values
                    .iter()
                    .all(|v| inline(v.get(*c).unwrap_or(&Value::Null)).chars().count() <= c.len());
            if (id_column || narrow)
                && let Some(column) = table.column_mut(i)
            {
                column.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
            }
        }
        table.to_string()
    }

    fn new_table(&self) -> Table {
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_truncation_indicator("…")
            .set_content_arrangement(if self.wide {
                ContentArrangement::Disabled
            } else {
                ContentArrangement::Dynamic
            });
        if !self.wide {
            // A terminal that reports no width (0 columns under `docker exec -t`, or none at
            // all) gets 80, not one character per column.
            let width = table.width().filter(|w| *w >= 20).unwrap_or(FALLBACK_WIDTH);
            table.set_width(width);
        }
        table
    }
}

/// The longest column name kept whole when its cells are no wider (`is_external`).
const NARROW_HEADER: usize = 11;

/// The width of a terminal table when the terminal reports none (or fewer than 20 columns).
const FALLBACK_WIDTH: u16 = 80;

/// A list being written row by row; see [`Printer::stream`]. Call [`ListStream::finish`].
pub struct ListStream<'a> {
    printer: Printer,
    columns: &'a [&'a str],
    id_key: &'a str,
    count: u64,
    held: Vec<Value>,
    /// The last id printed with `-q`, so an id on consecutive rows is printed once.
    last_id: Option<String>,
}

impl ListStream<'_> {
    /// Writes (or, for a terminal table, holds) one more batch of rows.
    pub fn push<T: Serialize>(&mut self, items: &[T]) {
        let p = self.printer;
        let mut text = Vec::new();
        for item in items {
            let value = serde_json::to_value(item).unwrap_or(Value::Null);
            if p.quiet {
                for id in quiet_ids(lookup(&value, self.id_key)) {
                    if self.last_id.as_ref() != Some(&id) {
                        text.push(id.clone());
                        self.last_id = Some(id);
                    }
                }
            } else {
                match p.format {
                    Format::Csv => {
                        if self.count == 0 {
                            text.push(
                                csv_line(self.columns.iter().map(|c| (*c).to_owned()))
                                    .trim_end()
                                    .to_owned(),
                            );
                        }
                        text.push(csv_row(&value, self.columns).trim_end_matches('\n').to_owned());
                    }
                    Format::Json => {
                        let object = serde_json::to_string(&value).unwrap_or_default();
                        text.push(if self.count == 0 {
                            format!("[{object}")
                        } else {
                            format!(",{object}")
                        });
                    }
                    Format::Table if !p.terminal => {
                        if self.count == 0 {
                            text.push(self.columns.join("\t"));
                        }
                        text.push(tsv_row(&value, self.columns));
                    }
                    Format::Table => self.held.push(value),
                }
            }
            self.count += 1;
        }
        if !text.is_empty() {
            emit(&text.join("\n"));
        }
    }

    /// Ends the list (closes the JSON array, draws the held table). Returns the row count.
    pub fn finish(self) -> u64 {
        let p = self.printer;
        if p.quiet {
            return self.count;
        }
        match p.format {
            Format::Json if self.count == 0 => emit("[]"),
            Format::Json => emit("]"),
            Format::Csv => {
                if self.count == 0 {
                    emit(csv_line(self.columns.iter().map(|c| (*c).to_owned())).trim_end());
                }
            }
            Format::Table if !p.terminal => {
                if self.count == 0 {
                    emit(&self.columns.join("\t"));
                }
            }
            Format::Table => emit(&p.terminal_table(&self.held, self.columns)),
        }
        self.count
    }
}

/// One tab-separated row: full values, each cell as [`cell`] writes it.
fn tsv_row(value: &Value, columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| cell(value.get(*c).unwrap_or(&Value::Null)))
        .collect::<Vec<_>>()
        .join("\t")
}

/// A value as one tab-separated cell: formula-leading text neutralised, then escaped as
/// PostgreSQL's `COPY` text format escapes it, so a cell never holds a raw tab or newline.
fn cell(value: &Value) -> String {
    tsv_escape(&neutralise_formula(&raw(value)))
}

/// A value as the raw text of one cell: strings as they are, null empty, arrays
/// comma-joined (a list stays in one cell), objects as `key=value` pairs.
fn raw(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(raw).collect::<Vec<_>>().join(","),
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}={}", raw(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// Escapes text for one tab-separated cell as PostgreSQL's `COPY … (FORMAT text)` does:
/// backslash `\\`, tab `\t`, newline `\n`, carriage return `\r`, and every other control
/// character as `\xHH` per UTF-8 byte, so the cell neither splits the row nor drives the
/// terminal. `awk -F'\t'` and `cut` see one field per column.
pub fn tsv_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// A cell as a spreadsheet may open it without running it (OWASP, "CSV Injection"): text
/// that starts with `=`, `+`, `-`, `@`, a tab or a carriage return, after any leading `'`s,
/// gets one `'` more in front, which spreadsheets show as text
/// ([`crate::services::import::formula_leading`]). A plain number (`-5`, `+4915112345678`,
/// `1.5`) is left as it is: it cannot be a formula, and phone numbers keep their E.164 form.
/// `user import` removes exactly that one `'` again
/// ([`crate::services::import::unneutralise_formula`]), so an export re-imports unchanged,
/// a value that itself starts with `'=` included (exported as `''=`).
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    if crate::services::import::formula_leading(cell) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// One CSV line (RFC 4180, `\n`-terminated) of already neutralised cells.
fn csv_line(cells: impl Iterator<Item = String>) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let cells: Vec<String> = cells.collect();
    let _ = writer.write_record(&cells);
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One CSV row of `columns`: raw values (lists comma-joined), formula-leading cells
/// neutralised.
fn csv_row(value: &Value, columns: &[&str]) -> String {
    csv_line(
        columns
            .iter()
            .map(|c| neutralise_formula(&raw(value.get(*c).unwrap_or(&Value::Null))).into_owned()),
    )
}

/// The field `-q` prints: `key` of the object, or a JSON pointer (`/keep/id`).
fn lookup<'v>(value: &'v Value, key: &str) -> &'v Value {
    let found = if key.starts_with('/') {
        value.pointer(key)
    } else {
        value.get(key)
    };
    found.unwrap_or(&Value::Null)
}

/// The `id_key` of a result that has no id: `-q` prints nothing for it (a count, a status).
pub const NO_ID: &str = "";

/// The ids `-q` prints for one field: a string or number (audit event ids are numbers), or
/// each of an array. Flags and nulls are not ids and print nothing.
fn quiet_ids(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![escape_controls(s)],
        Value::Number(n) => vec![n.to_string()],
        Value::Array(items) => items.iter().flat_map(quiet_ids).collect(),
        _ => Vec::new(),
    }
}

/// Whether a cell holds an id: a column named `id` or ending in `_id`, and a hyphenated uuid.
fn is_id(column: &str, text: &str) -> bool {
    (column == "id" || column.ends_with("_id")) && text.len() == 36 && text.chars().nth(8) == Some('-')
}

/// The length of the shortest prefix, at least [`crate::domain::MIN_ID_PREFIX`] characters,
/// that no two of `ids` share (every id's whole length when two are equal). Sorted, only
/// neighbours need comparing.
fn distinct_prefix(ids: &[&str]) -> usize {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let common = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let longest = sorted.windows(2).map(|w| common(w[0], w[1])).max().unwrap_or(0);
    let mut width = (longest + 1).clamp(crate::domain::MIN_ID_PREFIX, 36);
    // A prefix ending in a hyphen reads as cut short: take the digit after it too.
    if ids
        .first()
        .is_some_and(|id| id.as_bytes().get(width - 1) == Some(&b'-'))
    {
        width += 1;
    }
    width
}

/// A terminal-table cell with ids (see [`is_id`]) cut to `width` characters, enough to tell
/// the rows apart at 80 columns and to be typed back (any unique prefix of 8 or more
/// characters names the row); JSON, `-q` and `--wide` keep them whole.
fn short(column: &str, value: &Value, width: usize) -> String {
    let text = inline(value);
    if is_id(column, &text) {
        text[..width.min(text.len())].to_owned()
    } else {
        text
    }
}

/// [`plain`] on one line: list items joined by `, ` (a list-table row is one line).
fn inline(value: &Value) -> String {
    match value {
        Value::Array(items) if !items.is_empty() => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        other => plain(other),
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A value as table text: strings bare, null as `-`, arrays one item per line, objects as
/// `key=value` pairs.
fn plain(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => escape_controls(s),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join("\n"),
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// Writes one block to stdout. A closed pipe (`| head`) is not an error worth a panic.
/// Text with every control character (ESC, BEL, CR, newline, NUL…) written as a visible
/// escape (`\u{1b}`), so a stored value can neither drive the terminal (retitle, clear,
/// move the cursor) nor break a table's rows. Input validation already refuses control
/// characters; this covers rows written before that rule or by other programs.
pub fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn emit(text: &str) {
    let mut line = text.as_bytes().to_vec();
    line.push(b'\n');
    if let Err(e) = write_stdout(&line) {
        note!("error: {e}");
    }
}

/// Writes `bytes` to stdout. A reader that went away (`accountctl … | head -1`) is not an
/// error: the rest of the output is dropped quietly and the command finishes normally, as
/// ripgrep does. Errors: [`crate::Error::Internal`] for any other write failure.
pub fn write_stdout(bytes: &[u8]) -> Result<(), crate::Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(crate::Error::Internal(format!("cannot write to stdout: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::{distinct_prefix, neutralise_formula};
    use crate::services::import::unneutralise_formula;

    #[test]
    fn formula_cells_are_neutralised_and_read_back_exactly() {
        for (value, written) in [
            ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"),
            ("@home", "'@home"),
            ("-Bob", "'-Bob"),
            ("+sub-1", "'+sub-1"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("'=HYPERLINK(\"x\")", "''=HYPERLINK(\"x\")"),
            ("''@x", "'''@x"),
            ("-5", "-5"),
            ("+4915112345678", "+4915112345678"),
            ("'-5", "'-5"),
            ("'hello", "'hello"),
            ("'", "'"),
            ("", ""),
            ("plain", "plain"),
            ("-", "'-"),
        ] {
            assert_eq!(neutralise_formula(value), written, "{value:?}");
            assert_eq!(unneutralise_formula(written), value, "{written:?} reads back");
        }
    }

    #[test]
    fn a_neutralised_cell_reads_back_whole_through_the_import() {
        for cell in [
            "=1+1",
            "+x",
            "-x",
            "@x",
            "'=x",
            "''=x",
            "'''@x",
            "'-5",
            "'x",
            "''x",
            "'",
            "-5",
            "+4915112345678",
            "plain",
            "",
        ] {
            let written = super::neutralise_formula(cell);
            assert_eq!(
                crate::services::import::unneutralise_formula(&written),
                cell,
                "{cell:?} → {written:?}"
            );
        }
    }

    #[test]
    fn ids_are_cut_where_they_stop_sharing_a_prefix_but_never_below_8() {
        assert_eq!(distinct_prefix(&[]), 8);
        assert_eq!(distinct_prefix(&["0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b"]), 8);
        let same_minute = [
            "0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b",
            "0193a2b4-5c7e-7e8f-9a0b-1c2d3e4f5a6b",
        ];
        assert_eq!(distinct_prefix(&same_minute), 12);
        let hyphen = [
            "0193a2b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b",
            "0193a2b4-5c6d-8e8f-9a0b-1c2d3e4f5a6b",
        ];
        assert_eq!(distinct_prefix(&hyphen), 15, "not cut at a hyphen");
    }
}
