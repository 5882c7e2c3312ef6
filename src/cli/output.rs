//! The one output path: results on stdout as a table, JSON, or ids only (`-q`); nothing else
//! writes to stdout. Tables and JSON are both derived from the result's `Serialize` shape, so
//! the JSON field names (the model's, snake_case) are the table's row labels too.
//!
//! Tables: on a terminal they fit its width, with ids shortened to the shortest prefix (at
//! least 8 characters) that tells the rows apart (`--wide` shows them whole); when stdout is not a terminal they are plain tab-separated
//! text with a header line and full values, one row per line (as `gh` prints for scripts).

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
            emit(&plain(value.get(id_key).unwrap_or(&Value::Null)));
            return;
        }
        match self.format {
            Format::Json => emit(&pretty(&value)),
            Format::Table if !self.terminal => {
                if let Value::Object(map) = &value {
                    let lines: Vec<String> = map.iter().map(|(k, v)| format!("{k}\t{}", cell(v))).collect();
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
            let ids: Vec<String> = values
                .iter()
                .map(|v| plain(v.get(id_key).unwrap_or(&Value::Null)))
                .collect();
            if !ids.is_empty() {
                emit(&ids.join("\n"));
            }
            return;
        }
        match self.format {
            Format::Json => emit(&pretty(&Value::Array(values))),
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
        table.set_header(columns.to_vec());
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
            table.add_row(
                columns
                    .iter()
                    .zip(&widths)
                    .map(|(c, width)| {
                        let v = v.get(*c).unwrap_or(&Value::Null);
                        if self.wide { plain(v) } else { short(c, v, *width) }
                    })
                    .collect::<Vec<_>>(),
            );
        }
        // An id broken over two lines can't be copied back: id columns keep their width and
        // the other columns wrap instead.
        for (i, c) in columns.iter().enumerate() {
            if values
                .iter()
                .any(|v| v.get(*c).and_then(Value::as_str).is_some_and(|t| is_id(c, t)))
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
            .set_content_arrangement(if self.wide {
                ContentArrangement::Disabled
            } else {
                ContentArrangement::Dynamic
            });
        table
    }
}

/// A list being written row by row; see [`Printer::stream`]. Call [`ListStream::finish`].
pub struct ListStream<'a> {
    printer: Printer,
    columns: &'a [&'a str],
    id_key: &'a str,
    count: u64,
    held: Vec<Value>,
}

impl ListStream<'_> {
    /// Writes (or, for a terminal table, holds) one more batch of rows.
    pub fn push<T: Serialize>(&mut self, items: &[T]) {
        let p = self.printer;
        let mut text = Vec::new();
        for item in items {
            let value = serde_json::to_value(item).unwrap_or(Value::Null);
            if p.quiet {
                text.push(plain(value.get(self.id_key).unwrap_or(&Value::Null)));
            } else {
                match p.format {
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

/// One tab-separated row: full values, tabs and newlines inside a value escaped.
fn tsv_row(value: &Value, columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| cell(value.get(*c).unwrap_or(&Value::Null)))
        .collect::<Vec<_>>()
        .join("\t")
}

/// A value as one tab-separated cell: arrays comma-joined, empty for null.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => plain(other),
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
    let text = plain(value);
    if is_id(column, &text) {
        text[..width.min(text.len())].to_owned()
    } else {
        text
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
    use super::distinct_prefix;

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
