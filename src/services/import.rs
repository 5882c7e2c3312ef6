//! Bulk import of users (`user import`): CSV or JSON Lines, committed in batches with
//! multi-row statements, plaintext passwords hashed in parallel on every core off the async
//! runtime, and `on_user_created` fired per batch through the hooks' batch method.
//!
//! Each row yields a [`RowResult`]. An invalid row never takes its batch's valid rows with it:
//! when a batch's statements fail, the batch is retried one row per transaction to isolate
//! the culprit. With `atomic`, everything is one transaction and any failed row rolls all
//! back. With `on_conflict: Skip` a re-run of the same file — or of a killed import — creates
//! nothing twice.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Email, InstanceRole, Person, Phone, User, Username, now};
use crate::error::{Error, Result};
use crate::lifecycle::UserLifecycleService;
use crate::password::{self, Secret};
use crate::store::batch::BatchUser;
use crate::store::{Database, NewUserRecord, Tx, WRITE_ATTEMPTS, retry_pause};

/// What to do when a row's username already exists.
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
    pub username: String,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub given_name: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub family_name: Option<String>,
    #[serde(default, deserialize_with = "flexible_bool")]
    pub external: bool,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub provider: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub subject: Option<String>,
    /// Instance role: `admin` or `user` (default).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub role: Option<String>,
    #[serde(default, deserialize_with = "memberships")]
    pub memberships: Vec<(String, String)>,
    /// Plaintext, hashed here with argon2id.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub password: Option<String>,
    /// Already hashed: argon2 PHC string or bcrypt `$2b$`, stored as is.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub password_hash: Option<String>,
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let value: Option<String> = Option::deserialize(d)?;
    Ok(value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}

fn flexible_bool<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Text(String),
    }
    match Option::<B>::deserialize(d)? {
        None => Ok(false),
        Some(B::Bool(b)) => Ok(b),
        Some(B::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" | "n" => Ok(false),
            "true" | "1" | "yes" | "y" => Ok(true),
            other => Err(serde::de::Error::custom(format!("invalid boolean {other:?}"))),
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
        Some(M::Text(text)) => text
            .split(';')
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

/// A parsed row or the reason it could not be read, with its line number.
pub type ParsedRow = (usize, std::result::Result<ImportRow, String>);

/// Reads every row. CSV line numbers count the header as line 1.
pub fn parse(reader: impl BufRead, format: Format) -> Result<Vec<ParsedRow>> {
    match format {
        Format::Jsonl => {
            let mut out = Vec::new();
            for (i, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| Error::Invalid(format!("cannot read the input: {e}")))?;
                if line.trim().is_empty() {
                    continue;
                }
                out.push((
                    i + 1,
                    serde_json::from_str::<ImportRow>(&line).map_err(|e| e.to_string()),
                ));
            }
            Ok(out)
        }
        Format::Csv => {
            let mut csv = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(reader);
            let headers = csv
                .headers()
                .map_err(|e| Error::Invalid(format!("cannot read the CSV header: {e}")))?
                .clone();
            if !headers.iter().any(|h| h == "username") {
                return Err(Error::Invalid("the CSV header has no `username` column".into()));
            }
            let mut out = Vec::new();
            for record in csv.records() {
                match record {
                    Ok(record) => {
                        let line = record.position().map_or(0, |p| p.line() as usize);
                        out.push((
                            line,
                            record
                                .deserialize::<ImportRow>(Some(&headers))
                                .map_err(|e| e.to_string()),
                        ));
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line() as usize);
                        out.push((line, Err(e.to_string())));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Options of [`Importer::import`].
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub on_conflict: OnConflict,
    /// Validate everything, write nothing.
    pub dry_run: bool,
    /// All rows or none.
    pub atomic: bool,
    /// Rows per transaction (default 5,000; statements are split at 1,000 rows).
    pub batch_size: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            on_conflict: OnConflict::Fail,
            dry_run: false,
            atomic: false,
            batch_size: 5000,
        }
    }
}

/// The outcome of one row.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    pub line: usize,
    pub username: String,
    /// `created`, `updated`, `skipped`, `error`; with `dry_run`: `valid` (would be created or
    /// updated); with `atomic` and any error: `rolled_back` for rows that were fine.
    pub status: &'static str,
    pub id: Option<Uuid>,
    pub error: Option<String>,
}

/// Totals of an import.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSummary {
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    pub skipped: usize,
    pub failed: usize,
    pub dry_run: bool,
}

/// A row that passed validation, ready for the database.
struct Prepared {
    line: usize,
    username: Username,
    email: Option<Email>,
    phone: Option<Phone>,
    row: ImportRow,
    role: InstanceRole,
    password_hash: Option<String>,
    plaintext: Option<Secret>,
}

/// Bulk import.
#[derive(Clone)]
pub struct Importer {
    db: Database,
    lifecycle: Arc<UserLifecycleService>,
}

fn error(line: usize, username: &str, message: impl Into<String>) -> RowResult {
    RowResult {
        line,
        username: username.to_owned(),
        status: "error",
        id: None,
        error: Some(message.into()),
    }
}

fn prepare(line: usize, row: ImportRow) -> std::result::Result<Prepared, RowResult> {
    let fail = |e: Error| error(line, &row.username, e.to_string());
    let username = Username::parse(&row.username).map_err(fail)?;
    let email = row.email.as_deref().map(Email::parse).transpose().map_err(fail)?;
    let phone = row.phone.as_deref().map(Phone::parse).transpose().map_err(fail)?;
    let role = match &row.role {
        Some(r) => r.parse::<InstanceRole>().map_err(fail)?,
        None => InstanceRole::User,
    };
    if row.external && role == InstanceRole::Admin {
        return Err(error(line, &row.username, "an external user can never be admin"));
    }
    if row.external && (row.password.is_some() || row.password_hash.is_some()) {
        return Err(error(line, &row.username, "external users have no password"));
    }
    if row.provider.is_some() != row.subject.is_some() || (row.provider.is_some() && !row.external) {
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
    pub fn new(db: Database, lifecycle: Arc<UserLifecycleService>) -> Self {
        Self { db, lifecycle }
    }

    /// Imports `rows`, calling `on_results` with each batch's results as they are final.
    pub async fn import(
        &self,
        rows: Vec<ParsedRow>,
        options: &ImportOptions,
        mut on_results: impl FnMut(&[RowResult]),
    ) -> Result<ImportSummary> {
        let mut summary = ImportSummary {
            rows: rows.len(),
            dry_run: options.dry_run,
            ..ImportSummary::default()
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut directory = Directory::default();
        let mut atomic_tx = if options.atomic && !options.dry_run {
            Some(self.db.begin().await?)
        } else {
            None
        };
        let mut atomic_results: Vec<RowResult> = Vec::new();
        let mut atomic_users: Vec<User> = Vec::new();
        for chunk in rows.chunks(options.batch_size.max(1)) {
            let mut results = Vec::with_capacity(chunk.len());
            let mut prepared = Vec::with_capacity(chunk.len());
            for (line, parsed) in chunk {
                match parsed {
                    Err(message) => results.push(error(*line, "", message.clone())),
                    Ok(row) => {
                        if !seen.insert(row.username.to_lowercase()) {
                            results.push(error(*line, &row.username, "duplicate username in the input"));
                            continue;
                        }
                        match prepare(*line, row.clone()) {
                            Ok(p) => prepared.push(p),
                            Err(r) => results.push(r),
                        }
                    }
                }
            }
            hash_plaintexts(&mut prepared).await?;
            let (batch_results, users) = match atomic_tx.as_mut() {
                Some(tx) => self.write_batch(tx, &prepared, options, &mut directory).await?,
                None => self.write_batch_isolated(&prepared, options, &mut directory).await?,
            };
            results.extend(batch_results);
            results.sort_by_key(|r| r.line);
            if atomic_tx.is_some() {
                atomic_results.extend(results);
                atomic_users.extend(users);
            } else {
                tally(&mut summary, &results);
                on_results(&results);
                self.lifecycle.dispatch_created_batch(&users).await?;
            }
        }
        if let Some(tx) = atomic_tx {
            if atomic_results.iter().any(|r| r.status == "error") {
                tx.rollback().await?;
                for r in atomic_results.iter_mut().filter(|r| r.status != "error") {
                    r.status = "rolled_back";
                    r.id = None;
                }
            } else {
                tx.commit().await?;
                self.lifecycle.dispatch_created_batch(&atomic_users).await?;
            }
            tally(&mut summary, &atomic_results);
            on_results(&atomic_results);
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
    ) -> Result<(Vec<RowResult>, Vec<User>)> {
        let mut tries = 1;
        let outcome = loop {
            let outcome = self.write_batch_once(prepared, options, directory).await;
            match outcome {
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
                let mut results = Vec::new();
                let mut users = Vec::new();
                for one in prepared.chunks(1) {
                    match self.write_batch_once(one, options, directory).await {
                        Ok((r, u)) => {
                            results.extend(r);
                            users.extend(u);
                        }
                        Err(err) if err.ends_a_batch() => return Err(err),
                        Err(err) => results.push(error(one[0].line, one[0].username.as_str(), err.to_string())),
                    }
                }
                Ok((results, users))
            }
            Err(err) => Ok((
                vec![error(prepared[0].line, prepared[0].username.as_str(), err.to_string())],
                Vec::new(),
            )),
        }
    }

    /// One batch in one transaction, committed (rolled back on a dry run).
    async fn write_batch_once(
        &self,
        prepared: &[Prepared],
        options: &ImportOptions,
        directory: &mut Directory,
    ) -> Result<(Vec<RowResult>, Vec<User>)> {
        let mut tx = self.db.begin().await?;
        let done = self.write_batch(&mut tx, prepared, options, directory).await?;
        if options.dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(done)
    }

    /// Writes one batch inside `tx`: conflicts resolved per `on_conflict`, new users in five
    /// multi-row statements, updates per row. Returns the results and the created users.
    async fn write_batch(
        &self,
        tx: &mut Tx,
        prepared: &[Prepared],
        options: &ImportOptions,
        directory: &mut Directory,
    ) -> Result<(Vec<RowResult>, Vec<User>)> {
        let lowered: Vec<String> = prepared.iter().map(|p| p.username.as_str().to_lowercase()).collect();
        let existing = tx.existing_usernames(&lowered).await?;
        let values: Vec<String> = prepared
            .iter()
            .flat_map(|p| {
                p.email
                    .iter()
                    .map(|e| e.as_str().to_owned())
                    .chain(p.phone.iter().map(|ph| ph.as_str().to_owned()))
            })
            .collect();
        let owners = tx.existing_passports(&values).await?;
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
                    status: "skipped",
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
                        role: p.role,
                        is_external: p.row.external,
                        password_hash: p.password_hash.clone(),
                        created_at: at,
                    };
                    results.push(RowResult {
                        line: p.line,
                        username: name.to_owned(),
                        status: if options.dry_run { "valid" } else { "created" },
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
        tx.insert_users_batch(&batch).await?;
        for (p, id, memberships) in updates {
            let changed = tx
                .update_imported_user(
                    id,
                    p.row.given_name.as_deref(),
                    p.row.family_name.as_deref(),
                    p.role,
                    p.password_hash.as_deref(),
                    &memberships,
                    at,
                )
                .await;
            match changed {
                Ok(()) => results.push(RowResult {
                    line: p.line,
                    username: p.username.as_str().to_owned(),
                    status: if options.dry_run { "valid" } else { "updated" },
                    id: Some(id),
                    error: None,
                }),
                Err(e) => return Err(e),
            }
        }
        // The users as the database now holds them, built from what was just inserted rather
        // than read back (the hooks get exactly these values).
        let users = if options.dry_run {
            Vec::new()
        } else {
            batch.iter().map(created_user).collect()
        };
        Ok((results, users))
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
            "created" => summary.created += 1,
            "updated" => summary.updated += 1,
            "skipped" => summary.skipped += 1,
            "error" => summary.failed += 1,
            _ => {}
        }
    }
}

/// Hashes every plaintext password of the batch in parallel on all cores (rayon), on a
/// blocking thread so the async runtime keeps serving.
async fn hash_plaintexts(prepared: &mut [Prepared]) -> Result<()> {
    let jobs: Vec<(usize, Secret)> = prepared
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.plaintext.clone().map(|s| (i, s)))
        .collect();
    if jobs.is_empty() {
        return Ok(());
    }
    let hashed: Vec<(usize, Result<String>)> = tokio::task::spawn_blocking(move || {
        jobs.into_par_iter()
            .map(|(i, secret)| (i, password::hash_blocking(&secret)))
            .collect()
    })
    .await
    .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))?;
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
