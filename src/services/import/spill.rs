//! Temporary files of an atomic import: what waits between reading the input and the
//! transaction's end (staged rows, results, users to announce), one JSON value per line.
//! Files are anonymous (unlinked at creation), so they vanish with the process whatever
//! happens. A staged row holds the password hash, never a plaintext.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ImportRow, Prepared, RowResult};
use crate::domain::{Email, ImportRowStatus, InstanceRole, Phone, Timestamp, User, Username};
use crate::error::{Error, Result};

/// A temporary file being written.
pub(super) struct Spill(BufWriter<File>);

impl Spill {
    pub(super) fn new() -> Result<Self> {
        Ok(Self(BufWriter::new(tempfile::tempfile().map_err(io_error)?)))
    }

    pub(super) fn write<T: Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer(&mut self.0, value)
            .map_err(|e| Error::Internal(format!("cannot write the import's temporary file: {e}")))?;
        self.0.write_all(b"\n").map_err(io_error)
    }

    /// The values written, from the first.
    pub(super) fn read<T: DeserializeOwned>(self) -> Result<SpillReader<T>> {
        let mut file = self.0.into_inner().map_err(|e| io_error(e.into_error()))?;
        file.rewind().map_err(io_error)?;
        Ok(SpillReader {
            lines: BufReader::new(file).lines(),
            _values: std::marker::PhantomData,
        })
    }
}

/// The values of a [`Spill`], in the order written.
pub(super) struct SpillReader<T> {
    lines: std::io::Lines<BufReader<File>>,
    _values: std::marker::PhantomData<T>,
}

impl<T: DeserializeOwned> SpillReader<T> {
    pub(super) fn next(&mut self) -> Result<Option<T>> {
        match self.lines.next() {
            None => Ok(None),
            Some(line) => {
                let line = line.map_err(io_error)?;
                serde_json::from_str(&line)
                    .map(Some)
                    .map_err(|e| Error::Internal(format!("cannot read the import's temporary file: {e}")))
            }
        }
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Internal(format!("the import's temporary file failed: {e}"))
}

/// A [`RowResult`] on disk.
#[derive(Serialize, Deserialize)]
pub(super) struct SpilledResult {
    pub(super) line: usize,
    username: String,
    status: String,
    id: Option<Uuid>,
    error: Option<String>,
}

impl From<&RowResult> for SpilledResult {
    fn from(r: &RowResult) -> Self {
        Self {
            line: r.line,
            username: r.username.clone(),
            status: r.status.as_str().to_owned(),
            id: r.id,
            error: r.error.clone(),
        }
    }
}

impl SpilledResult {
    pub(super) fn into_result(self) -> RowResult {
        RowResult {
            line: self.line,
            username: self.username,
            // Written by `from` just above, so it parses; an unreadable one reads as a failure.
            status: self.status.parse().unwrap_or(ImportRowStatus::Error),
            id: self.id,
            error: self.error,
        }
    }
}

/// A user the import created, on disk until the commit announces it (`on_user_created`).
#[derive(Serialize, Deserialize)]
pub(super) struct SpilledUser {
    id: Uuid,
    person_id: Uuid,
    username: String,
    admin: bool,
    is_external: bool,
    has_password: bool,
    created_at: Timestamp,
}

impl From<&User> for SpilledUser {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            person_id: u.person_id,
            username: u.username.clone(),
            admin: u.role == InstanceRole::Admin,
            is_external: u.is_external,
            has_password: u.has_password,
            created_at: u.created_at,
        }
    }
}

impl SpilledUser {
    /// The user as just created (the fields a new user cannot differ in are defaults).
    pub(super) fn into_user(self) -> User {
        User {
            id: self.id,
            person_id: self.person_id,
            username: self.username,
            role: if self.admin {
                InstanceRole::Admin
            } else {
                InstanceRole::User
            },
            is_external: self.is_external,
            active: true,
            has_password: self.has_password,
            storage_quota_bytes: None,
            storage_used_bytes: 0,
            created_at: self.created_at,
            updated_at: self.created_at,
            last_login_at: None,
            deleted_at: None,
            purge_after: None,
        }
    }
}

/// A validated, hashed row on disk: the input row with its plaintext password replaced by
/// the hash.
#[derive(Serialize)]
pub(super) struct StagedRow<'a> {
    line: usize,
    username: &'a str,
    email: Option<&'a str>,
    phone: Option<&'a str>,
    given_name: Option<&'a str>,
    family_name: Option<&'a str>,
    external: Option<bool>,
    provider: Option<&'a str>,
    subject: Option<&'a str>,
    admin: Option<bool>,
    memberships: &'a [(String, String)],
    password_hash: Option<&'a str>,
}

impl<'a> From<&'a Prepared> for StagedRow<'a> {
    fn from(p: &'a Prepared) -> Self {
        Self {
            line: p.line,
            username: p.username.as_str(),
            email: p.email.as_ref().map(Email::as_str),
            phone: p.phone.as_ref().map(Phone::as_str),
            given_name: p.row.given_name.as_deref(),
            family_name: p.row.family_name.as_deref(),
            external: p.row.external,
            provider: p.row.provider.as_deref(),
            subject: p.row.subject.as_deref(),
            admin: p.role.map(|r| r == InstanceRole::Admin),
            memberships: &p.row.memberships,
            password_hash: p.password_hash.as_deref(),
        }
    }
}

/// A [`StagedRow`] read back.
#[derive(Deserialize)]
pub(super) struct StagedIn {
    line: usize,
    username: String,
    email: Option<String>,
    phone: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    external: Option<bool>,
    provider: Option<String>,
    subject: Option<String>,
    admin: Option<bool>,
    memberships: Vec<(String, String)>,
    password_hash: Option<String>,
}

impl StagedIn {
    /// The row as it was prepared: its values were validated before they were staged, so
    /// a failure here means the file was damaged.
    pub(super) fn restage(self) -> Result<Prepared> {
        let damaged = |e: Error| Error::Internal(format!("the import's temporary file holds an invalid row: {e}"));
        Ok(Prepared {
            line: self.line,
            username: Username::parse(&self.username).map_err(damaged)?,
            email: self.email.as_deref().map(Email::parse).transpose().map_err(damaged)?,
            phone: self.phone.as_deref().map(Phone::parse).transpose().map_err(damaged)?,
            role: self
                .admin
                .map(|admin| if admin { InstanceRole::Admin } else { InstanceRole::User }),
            password_hash: self.password_hash,
            plaintext: None,
            row: ImportRow {
                username: self.username,
                email: self.email,
                phone: self.phone,
                given_name: self.given_name,
                family_name: self.family_name,
                external: self.external,
                provider: self.provider,
                subject: self.subject,
                role: None,
                memberships: self.memberships,
                password: None,
                password_hash: None,
            },
        })
    }
}
