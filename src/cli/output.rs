//! The one output path: results on stdout as a table, JSON, or ids only (`-q`); nothing else
//! writes to stdout. Tables and JSON are both derived from the result's `Serialize` shape, so
//! the JSON field names (the model's, snake_case) are the table's row labels too.

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
            Format::Table => {
                let mut table = new_table();
                if let Value::Object(map) = &value {
                    for (key, v) in map {
                        table.add_row(vec![key.clone(), plain(v)]);
                    }
                }
                emit(&table.to_string());
            }
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
            Format::Table => {
                let mut table = new_table();
                table.set_header(columns.to_vec());
                for v in &values {
                    table.add_row(
                        columns
                            .iter()
                            .map(|c| plain(v.get(*c).unwrap_or(&Value::Null)))
                            .collect::<Vec<_>>(),
                    );
                }
                emit(&table.to_string());
            }
        }
    }
}

fn new_table() -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table
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
        eprintln!("error: {e}");
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
