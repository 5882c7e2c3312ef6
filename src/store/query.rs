//! Bound-parameter queries on an open [`Tx`], the same code on both backends: what an
//! application's lifecycle hooks and merge handlers use to reach their own tables inside the
//! transaction that fired them.
//!
//! Values always travel as bound parameters (`$1`, `$2`, … on both backends; SQLite binds
//! `$N` by its number), never formatted into the SQL text. Rows come back as [`Row`]s whose
//! columns are read with [`Row::get`] into ordinary Rust types, whatever the backend stores:
//! a uuid is `uuid` on PostgreSQL and hyphenated `TEXT` on SQLite, a timestamp `timestamptz`
//! or RFC 3339 `TEXT`, a boolean `boolean` or `INTEGER` 0/1.
//!
//! ```no_run
//! # async fn example(tx: &mut accountctl::db::Tx, user_id: uuid::Uuid) -> accountctl::Result<()> {
//! let moved = tx
//!     .execute("UPDATE app_calendars SET name = $2 WHERE user_id = $1", &[user_id.into(), "Default".into()])
//!     .await?;
//! for row in tx.fetch_all("SELECT id, name FROM app_calendars WHERE user_id = $1", &[user_id.into()]).await? {
//!     let id: uuid::Uuid = row.get("id")?;
//!     let name: String = row.get("name")?;
//!     println!("{id} {name} ({moved} renamed)");
//! }
//! # Ok(()) }
//! ```

use sqlx::postgres::{PgArgumentBuffer, PgRow, PgTypeInfo};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteRow, SqliteTypeInfo};
use sqlx::{Column as _, Postgres, Row as _, Sqlite, TypeInfo as _, ValueRef as _};
use uuid::Uuid;

use super::{DbId, Tx};
use crate::domain::Timestamp;
use crate::error::{Error, Result};

/// One bound parameter or one column value.
///
/// Build parameters with `.into()` from `bool`, `i32`, `i64`, `f64`, `&str`, `String`,
/// `Uuid`, [`Timestamp`], `Vec<u8>` or an `Option` of any of them (`None` is SQL `NULL`).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`. On PostgreSQL its type is left for the server to infer from the statement.
    Null,
    /// A boolean (`boolean`; SQLite `INTEGER` 0/1).
    Bool(bool),
    /// A 64-bit integer (`bigint`; SQLite `INTEGER`).
    Int(i64),
    /// A double (`double precision`; SQLite `REAL`).
    Float(f64),
    /// Text (`text`; SQLite `TEXT`).
    Text(String),
    /// A uuid (`uuid`; SQLite hyphenated `TEXT`).
    Uuid(Uuid),
    /// A point in time (`timestamptz`; SQLite RFC 3339 `TEXT`).
    Timestamp(Timestamp),
    /// Raw bytes (`bytea`; SQLite `BLOB`).
    Bytes(Vec<u8>),
}

macro_rules! value_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from($v: $t) -> Self {
                $e
            }
        }
    )*};
}

value_from! {
    bool => |v| Value::Bool(v),
    i32 => |v| Value::Int(i64::from(v)),
    i64 => |v| Value::Int(v),
    f64 => |v| Value::Float(v),
    &str => |v| Value::Text(v.to_owned()),
    String => |v| Value::Text(v),
    &String => |v| Value::Text(v.clone()),
    Uuid => |v| Value::Uuid(v),
    Timestamp => |v| Value::Timestamp(v),
    Vec<u8> => |v| Value::Bytes(v),
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A column value read into a Rust type by [`Row::get`]. Implemented for `bool`, `i32`, `i64`,
/// `f64`, `String`, `Uuid`, [`Timestamp`], `Vec<u8>`, [`Value`] and `Option` of each (for
/// nullable columns).
pub trait FromValue: Sized {
    /// Converts `value` (read from `column`). Errors: [`Error::Internal`] naming the column
    /// and the mismatch.
    fn from_value(value: &Value, column: &str) -> Result<Self>;
}

fn mismatch<T>(value: &Value, column: &str, wanted: &str) -> Result<T> {
    Err(Error::Internal(format!(
        "column {column:?} holds {value:?}, which is not {wanted}"
    )))
}

impl FromValue for Value {
    fn from_value(value: &Value, _: &str) -> Result<Self> {
        Ok(value.clone())
    }
}

impl FromValue for bool {
    fn from_value(value: &Value, column: &str) -> Result<Self> {
        match value {
            Value::Bool(b) => Ok(*b),
            Value::Int(i @ (0 | 1)) => Ok(*i == 1),
            other => mismatch(other, column, "a boolean"),
        }
    }
}

impl FromValue for i64 {
    fn from_value(value: &Value, column: &str) -> Result<Self> {
        match value {
            Value::Int(i) => Ok(*i),
            other => mismatch(other, column, "an integer"),
        }
    }
}

impl FromValue for i32 {
    fn from_value(value: &Value, column: &str) -> Result<Self> {
        match value {
            Value::Int(i) => i32::try_from(*i).or_else(|_| mismatch(value, column, "a 32-bit integer")),
            other => mismatch(other, column, "an integer"),
        }
    }
}

impl FromValue for f64 {
    fn from_value(value: &Value, column: &str) -> Result<Self> {
        match value {
            Value::Float(f) => Ok(*f),
            // Exact for every integer a column of this schema holds (|i| < 2^53).
            Value::Int(i) => Ok(*i as f64),
            other => mismatch(other, column, "a number"),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value, column: &str) -> Result<Self> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            Value::Uuid(u) => Ok(u.to_string()),
            other => mismatch(other, column, "text"),
        }
    }
}

impl FromValue for Uuid {
    fn from_value(value: &Value, column: &str) -> Result<Self> {
        match value {
            Value::Uuid(u) => Ok(*u),
            Value::Text(s) => Uuid::parse_str(s).or_else(|_| mismatch(value, column, "a uuid")),
            other => mismatch(other, column, "a uuid"),
        }
    }
}

impl FromValue for Timestamp {
    fn from_value(value: &Value, column: &str) -> Result<Self> {
        match value {
            Value::Timestamp(t) => Ok(*t),
            Value::Text(s) => chrono::DateTime::parse_from_rfc3339(s)
                .or_else(|_| chrono::DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%:z"))
                .map(|t| t.with_timezone(&chrono::Utc))
                .or_else(|_| mismatch(value, column, "a timestamp")),
            other => mismatch(other, column, "a timestamp"),
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value, column: &str) -> Result<Self> {
        match value {
            Value::Bytes(b) => Ok(b.clone()),
            other => mismatch(other, column, "bytes"),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value, column: &str) -> Result<Self> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other, column).map(Some),
        }
    }
}

/// One row of a query's result: column names and their values, in select order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    columns: Vec<(String, Value)>,
}

impl Row {
    /// The value of `column` as `T`. Errors: [`Error::Internal`] when the row has no such
    /// column or its value does not convert (a `NULL` read into a non-`Option`, text that is
    /// not a uuid…).
    pub fn get<T: FromValue>(&self, column: &str) -> Result<T> {
        let value = self
            .columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::Internal(format!("the row has no column {column:?}")))?;
        T::from_value(value, column)
    }

    /// The column names and values, in select order.
    pub fn columns(&self) -> &[(String, Value)] {
        &self.columns
    }

    fn from_sqlite(row: &SqliteRow) -> Result<Self> {
        let mut columns = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let raw = row.try_get_raw(i)?;
            let value = if raw.is_null() {
                Value::Null
            } else {
                match raw.type_info().name() {
                    "INTEGER" | "BOOLEAN" => Value::Int(row.try_get(i)?),
                    "REAL" => Value::Float(row.try_get(i)?),
                    "BLOB" => Value::Bytes(row.try_get(i)?),
                    _ => Value::Text(row.try_get(i)?),
                }
            };
            columns.push((column.name().to_owned(), value));
        }
        Ok(Self { columns })
    }

    fn from_pg(row: &PgRow) -> Result<Self> {
        let mut columns = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let raw = row.try_get_raw(i)?;
            let value = if raw.is_null() {
                Value::Null
            } else {
                match column.type_info().name() {
                    "BOOL" => Value::Bool(row.try_get(i)?),
                    "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(i)?)),
                    "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(i)?)),
                    "INT8" => Value::Int(row.try_get(i)?),
                    "FLOAT4" => Value::Float(f64::from(row.try_get::<f32, _>(i)?)),
                    "FLOAT8" => Value::Float(row.try_get(i)?),
                    "UUID" => Value::Uuid(row.try_get(i)?),
                    "TIMESTAMPTZ" => Value::Timestamp(row.try_get(i)?),
                    "BYTEA" => Value::Bytes(row.try_get(i)?),
                    "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CITEXT" => Value::Text(row.try_get(i)?),
                    other => {
                        return Err(Error::Internal(format!(
                            "column {:?} has type {other}, which the query API does not read: cast it (e.g. `::text`)",
                            column.name()
                        )));
                    }
                }
            };
            columns.push((column.name().to_owned(), value));
        }
        Ok(Self { columns })
    }
}

impl sqlx::Type<Postgres> for Value {
    fn type_info() -> PgTypeInfo {
        <String as sqlx::Type<Postgres>>::type_info()
    }
    fn compatible(_: &PgTypeInfo) -> bool {
        true
    }
}

impl sqlx::Encode<'_, Postgres> for Value {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        match self {
            Value::Null => Ok(sqlx::encode::IsNull::Yes),
            Value::Bool(v) => <bool as sqlx::Encode<Postgres>>::encode_by_ref(v, buf),
            Value::Int(v) => <i64 as sqlx::Encode<Postgres>>::encode_by_ref(v, buf),
            Value::Float(v) => <f64 as sqlx::Encode<Postgres>>::encode_by_ref(v, buf),
            Value::Text(v) => <String as sqlx::Encode<Postgres>>::encode_by_ref(v, buf),
            Value::Uuid(v) => <Uuid as sqlx::Encode<Postgres>>::encode_by_ref(v, buf),
            Value::Timestamp(v) => <Timestamp as sqlx::Encode<Postgres>>::encode_by_ref(v, buf),
            Value::Bytes(v) => <Vec<u8> as sqlx::Encode<Postgres>>::encode_by_ref(v, buf),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(match self {
            // Oid 0: "unspecified", so the server infers the type of a NULL from the statement.
            Value::Null => PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0)),
            Value::Bool(_) => <bool as sqlx::Type<Postgres>>::type_info(),
            Value::Int(_) => <i64 as sqlx::Type<Postgres>>::type_info(),
            Value::Float(_) => <f64 as sqlx::Type<Postgres>>::type_info(),
            Value::Text(_) => <String as sqlx::Type<Postgres>>::type_info(),
            Value::Uuid(_) => <Uuid as sqlx::Type<Postgres>>::type_info(),
            Value::Timestamp(_) => <Timestamp as sqlx::Type<Postgres>>::type_info(),
            Value::Bytes(_) => <Vec<u8> as sqlx::Type<Postgres>>::type_info(),
        })
    }
}

impl sqlx::Type<Sqlite> for Value {
    fn type_info() -> SqliteTypeInfo {
        <String as sqlx::Type<Sqlite>>::type_info()
    }
    fn compatible(_: &SqliteTypeInfo) -> bool {
        true
    }
}

impl sqlx::Encode<'_, Sqlite> for Value {
    fn encode_by_ref(
        &self,
        buf: &mut SqliteArgumentsBuffer,
    ) -> std::result::Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        match self {
            Value::Null => Ok(sqlx::encode::IsNull::Yes),
            Value::Bool(v) => <bool as sqlx::Encode<Sqlite>>::encode(*v, buf),
            Value::Int(v) => <i64 as sqlx::Encode<Sqlite>>::encode(*v, buf),
            Value::Float(v) => <f64 as sqlx::Encode<Sqlite>>::encode(*v, buf),
            Value::Text(v) => <String as sqlx::Encode<Sqlite>>::encode(v.clone(), buf),
            Value::Uuid(v) => <DbId as sqlx::Encode<Sqlite>>::encode(DbId(*v), buf),
            Value::Timestamp(v) => <Timestamp as sqlx::Encode<Sqlite>>::encode(*v, buf),
            Value::Bytes(v) => <Vec<u8> as sqlx::Encode<Sqlite>>::encode(v.clone(), buf),
        }
    }
}

impl Tx {
    /// Runs one statement with `params` bound to `$1`, `$2`, …; returns the rows it affected.
    ///
    /// `sql` is run as given: write it as a constant and pass every value in `params`, never
    /// formatted into the text (the same holds for the `fetch_*` methods).
    ///
    /// One data statement only: `SELECT`, `INSERT`, `UPDATE`, `DELETE`, `WITH` or
    /// `VALUES`. A handle that a hook or merge handler gets belongs to the operation that
    /// fired it, so it never ends that transaction (`COMMIT`, `ROLLBACK`, `SAVEPOINT`…),
    /// changes the schema or its triggers (`ALTER`, `DROP`, `CREATE`, `TRUNCATE`…), changes
    /// the session (`SET`, `PRAGMA`, `ATTACH`…) or runs a second statement after a `;`. The
    /// invariants that matter are enforced by the database itself (triggers), so a data
    /// statement that would break one fails too.
    ///
    /// Errors: [`Error::Invalid`] for a statement of another kind (checked before anything
    /// is sent); the database's, classified like every store error (a unique violation is
    /// [`Error::Conflict`], a check violation or a refusing trigger [`Error::Refused`], …).
    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        check_statement(sql, DATA_STATEMENTS)?;
        Ok(on_conn!(self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in params {
                q = q.bind(p.clone());
            }
            q.execute(&mut *c).await?.rows_affected()
        }))
    }

    /// The rows a query returns, in order. Errors: as [`Tx::execute`], and
    /// [`Error::Internal`] for a PostgreSQL column type the API does not read (cast it).
    pub async fn fetch_all(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        check_statement(sql, DATA_STATEMENTS)?;
        on_conn!(self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in params {
                q = q.bind(p.clone());
            }
            q.fetch_all(&mut *c).await?.iter().map(row_of).collect()
        })
    }

    /// The first row a query returns, if any. Errors: as [`Tx::fetch_all`].
    pub async fn fetch_optional(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        check_statement(sql, DATA_STATEMENTS)?;
        on_conn!(self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in params {
                q = q.bind(p.clone());
            }
            q.fetch_optional(&mut *c).await?.as_ref().map(row_of).transpose()
        })
    }

    /// Exactly one row. Errors: [`Error::NotFound`] (`what` = "row") when the query returns
    /// none; otherwise as [`Tx::fetch_all`].
    pub async fn fetch_one(&mut self, sql: &str, params: &[Value]) -> Result<Row> {
        self.fetch_optional(sql, params)
            .await?
            .ok_or_else(|| Error::not_found("row", sql.chars().take(80).collect::<String>()))
    }
}

/// The statements [`Tx::execute`] and the `fetch_*` methods run (see there).
const DATA_STATEMENTS: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES"];
/// The statements a [`ReadTx`] runs.
const READ_STATEMENTS: &[&str] = &["SELECT", "WITH", "VALUES"];

/// A read-only transaction: what [`super::Database::begin_read`] gives. It runs queries
/// (`SELECT`, `WITH`, `VALUES`), never a write: the type has no `execute` and no `commit`,
/// and the database refuses a write hidden in a query too (PostgreSQL: `BEGIN READ ONLY`;
/// SQLite: its `WITH` cannot write, and only queries are let through). End it with
/// [`ReadTx::end`].
pub struct ReadTx(pub(super) Tx);

impl std::fmt::Debug for ReadTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadTx({:?})", self.0.backend())
    }
}

impl ReadTx {
    /// The backend, for SQL whose dialects differ.
    pub fn backend(&self) -> super::Backend {
        self.0.backend()
    }

    /// The rows a query returns, in order. Errors: [`Error::Invalid`] for a statement that
    /// is not one query; otherwise as [`Tx::fetch_all`].
    pub async fn fetch_all(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        check_statement(sql, READ_STATEMENTS)?;
        self.0.fetch_all(sql, params).await
    }

    /// The first row a query returns, if any. Errors: as [`ReadTx::fetch_all`].
    pub async fn fetch_optional(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        check_statement(sql, READ_STATEMENTS)?;
        self.0.fetch_optional(sql, params).await
    }

    /// Exactly one row. Errors: [`Error::NotFound`] when the query returns none; otherwise
    /// as [`ReadTx::fetch_all`].
    pub async fn fetch_one(&mut self, sql: &str, params: &[Value]) -> Result<Row> {
        check_statement(sql, READ_STATEMENTS)?;
        self.0.fetch_one(sql, params).await
    }

    /// Ends the transaction (a rollback, waited for, so the connection goes back clean).
    pub async fn end(self) -> Result<()> {
        self.0.end().await
    }
}

/// Refuses anything but one data statement (see [`Tx::execute`]): its first keyword must be
/// one of [`DATA_STATEMENTS`] and nothing but blanks and comments may follow a `;`. String
/// literals (`'…'`, `E'…'`), quoted identifiers and PostgreSQL dollar quotes are skipped, so
/// a `;` inside them is no separator. Errors: [`Error::Invalid`].
fn check_statement(sql: &str, allowed: &[&str]) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::Invalid(format!(
            "the transaction handle runs one data statement ({}): {why}",
            allowed.join(", ")
        )))
    };
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut first: Option<String> = None;
    let mut ended = false;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // PostgreSQL nests block comments; SQLite does not, and a nested opener
                // there ends at the first closer (counting deeper is the stricter reading).
                let mut depth = 0usize;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                if depth > 0 {
                    return refuse("an unterminated comment");
                }
                continue;
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if ended {
            return refuse("several statements separated by ';'");
        }
        if first.is_none() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
                i += 1;
            }
            let word = sql[start..i].to_ascii_uppercase();
            if !allowed.contains(&word.as_str()) {
                let shown = if word.is_empty() {
                    "an empty statement".to_owned()
                } else {
                    format!("{word} is not one")
                };
                return refuse(&shown);
            }
            first = Some(word);
            continue;
        }
        match c {
            b';' => {
                ended = true;
                i += 1;
            }
            b'\'' => {
                let escapes = i > 0 && matches!(bytes[i - 1], b'E' | b'e');
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return refuse("an unterminated string"),
                        Some(b'\\') if escapes => i += 2,
                        Some(b'\'') if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'"' | b'`' => {
                let quote = c;
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                if i >= bytes.len() {
                    return refuse("an unterminated quoted identifier");
                }
                i += 1;
            }
            b'$' => {
                // `$1` is a parameter; `$tag$ … $tag$` (tag empty or an identifier) a
                // dollar-quoted string.
                let start = i;
                let mut j = i + 1;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                let tag_is_word = j == i + 1 || !bytes[i + 1].is_ascii_digit();
                if j < bytes.len() && bytes[j] == b'$' && tag_is_word {
                    let tag = &sql[start..=j];
                    match sql[j + 1..].find(tag) {
                        Some(end) => i = j + 1 + end + tag.len(),
                        None => return refuse("an unterminated dollar-quoted string"),
                    }
                } else {
                    i = j;
                }
            }
            _ => i += 1,
        }
    }
    if first.is_none() {
        return refuse("an empty statement");
    }
    Ok(())
}

/// Decoding into [`Row`] for whichever backend produced the row.
trait IntoRow {
    // Named for what it yields; the driver's row stays borrowed (it owns the buffer).
    #[allow(clippy::wrong_self_convention)]
    fn into_row(&self) -> Result<Row>;
}

impl IntoRow for SqliteRow {
    fn into_row(&self) -> Result<Row> {
        Row::from_sqlite(self)
    }
}

impl IntoRow for PgRow {
    fn into_row(&self) -> Result<Row> {
        Row::from_pg(self)
    }
}

fn row_of<R: IntoRow>(row: &R) -> Result<Row> {
    row.into_row()
}

#[cfg(test)]
mod statement_tests {
    use super::check_statement;

    #[test]
    fn the_handle_runs_one_data_statement() {
        for ok in [
            "SELECT 1",
            "  -- a comment\n insert into t (a) values ($1);",
            "UPDATE t SET a = 'x; COMMIT' WHERE b = $2",
            "WITH d AS (DELETE FROM t RETURNING id) SELECT count(*) FROM d",
            "SELECT $tag$ ; drop table x $tag$, $1 /* ; */",
            "SELECT E'it\\'s; fine'",
            "delete from \"odd;name\" where id = $1 ;  -- trailing",
        ] {
            assert!(check_statement(ok, super::DATA_STATEMENTS).is_ok(), "{ok:?}");
        }
        for bad in [
            "COMMIT",
            "rollback",
            "  /* x */ SAVEPOINT s",
            "ALTER TABLE users DISABLE TRIGGER ALL",
            "DROP TABLE users",
            "SET session_replication_role = replica",
            "PRAGMA foreign_keys = OFF",
            "SELECT 1; COMMIT",
            "UPDATE t SET a = 1; DELETE FROM users",
            "",
            "SELECT 'unterminated",
            "TRUNCATE users",
            "DO $$ BEGIN END $$",
        ] {
            assert!(check_statement(bad, super::DATA_STATEMENTS).is_err(), "{bad:?}");
        }
        for bad in ["DELETE FROM users", "insert into t values (1)", "UPDATE t SET a = 1"] {
            assert!(check_statement(bad, super::READ_STATEMENTS).is_err(), "{bad:?}");
        }
    }
}
