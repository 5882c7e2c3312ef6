use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use uuid::Uuid;

use super::Timestamp;
use crate::error::Error;

/// Why a user's session ended: the six reasons of the OxiCloud user-lifecycle hook design,
/// kept exactly. Stored in `sessions.revoke_reason` as the snake_case name and passed to
/// `on_user_logout`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogoutReason {
    /// Explicit logout by the user.
    UserInitiated,
    /// The session's TTL passed (`session prune`).
    SessionExpired,
    /// An admin revoked the session (`session revoke`).
    AdminRevoked,
    /// The account was disabled (`user disable`): every session revoked.
    AccountDisabled,
    /// The password changed (`user set-password`): sibling sessions invalidated.
    PasswordChanged,
    /// Refresh-token reuse was detected in the session family: the whole family is revoked
    /// (refresh-token rotation: RFC 6749 §10.4, RFC 6819 §5.2.2.3).
    TokenReused,
}

impl LogoutReason {
    /// The stored name (`user_initiated`, `session_expired`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserInitiated => "user_initiated",
            Self::SessionExpired => "session_expired",
            Self::AdminRevoked => "admin_revoked",
            Self::AccountDisabled => "account_disabled",
            Self::PasswordChanged => "password_changed",
            Self::TokenReused => "token_reused",
        }
    }
}

impl FromStr for LogoutReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "user_initiated" => Self::UserInitiated,
            "session_expired" => Self::SessionExpired,
            "admin_revoked" => Self::AdminRevoked,
            "account_disabled" => Self::AccountDisabled,
            "password_changed" => Self::PasswordChanged,
            "token_reused" => Self::TokenReused,
            other => return Err(Error::Invalid(format!("unknown logout reason {other:?}"))),
        })
    }
}

impl fmt::Display for LogoutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a user is being deleted: the two modes of the OxiCloud user-lifecycle hook design, plus
/// `Merged` for the account merge (after Serverpod's account merge). Passed to
/// `on_user_deleted`; every hook handles each mode explicitly.
///
/// Deliberately exhaustive (no `#[non_exhaustive]`, unlike the crate's other growing
/// enums): a hook that must act on every deletion should fail to compile, not fall into a
/// wildcard arm, when a mode is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum DeletionMode {
    /// Admin delete: the user goes to the trash, restorable until `purge_after`.
    AdminDelete,
    /// GDPR right to erasure: every row of personal data goes; a tombstone remains.
    GdprPurge,
    /// The user was merged into `into`; its data moved there before the delete.
    Merged {
        /// The id of the user that was kept (A in `user merge --keep A --remove B`).
        into: Uuid,
    },
}

impl DeletionMode {
    /// The name stored in tombstones and audit rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AdminDelete => "admin_delete",
            Self::GdprPurge => "gdpr_purge",
            Self::Merged { .. } => "merged",
        }
    }
}

impl fmt::Display for DeletionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A login session. The token is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// The session's id.
    pub id: Uuid,
    /// The user it signs in.
    pub user_id: Uuid,
    /// The refresh-token family: sessions rotated from one sign-in share it, so an
    /// application that detects reuse of a rotated-out refresh token can revoke the whole
    /// family ([`LogoutReason::TokenReused`]). A new session starts a family of its own.
    pub family_id: Uuid,
    /// When the session was opened.
    pub created_at: Timestamp,
    /// When it stops being valid (its TTL passed).
    pub expires_at: Timestamp,
    /// When the session was last used: set at sign-in and by a refresh, and moved forward by
    /// validation at most once a minute ([`crate::services::sessions::LAST_SEEN_INTERVAL`]),
    /// so it may lag the latest request by up to that long.
    pub last_seen_at: Option<Timestamp>,
    /// The client's IP address at sign-in, as the application passed it
    /// ([`crate::services::auth::ClientInfo`]); `None` when it passed none. Personal data:
    /// erased with the user.
    pub ip_address: Option<String>,
    /// The client's `User-Agent` at sign-in, as the application passed it (at most 512
    /// characters); `None` when it passed none. Personal data: erased with the user.
    pub user_agent: Option<String>,
    /// When it was revoked; `None` while not revoked.
    pub revoked_at: Option<Timestamp>,
    /// Why it was revoked; set together with `revoked_at`.
    pub revoke_reason: Option<LogoutReason>,
}

impl Session {
    /// Live means neither revoked nor expired at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// A lifecycle hook that failed on an event whose change stands (created, login): the hook
/// contract logs such a failure and never fails the operation, so the operation reports it
/// beside its result (`hook_failures` in JSON) and the audit trail keeps a `hook.failed` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookFailure {
    /// The hook's `name()`.
    pub hook: String,
    /// `created` or `login`.
    pub event: String,
    /// The hook's error, as the hook put it (shown to the operator; never stored).
    pub error: String,
}

/// Work that lifecycle hooks owe a committed change (the `on_user_created` hooks of a create
/// or an import batch), recorded in the change's own transaction and completed after it, or
/// by a later run if the process died in between (`hooks replay`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OwedHookWork {
    /// The record's id.
    pub id: Uuid,
    /// The event whose hooks are owed (`created`).
    pub event: String,
    /// The users the event is about (ids only).
    pub user_ids: Vec<Uuid>,
    /// `None`: every hook; else only this one (it failed, the others completed).
    pub hook: Option<String>,
    /// When the change recorded it.
    pub recorded_at: Timestamp,
    /// Failed attempts so far.
    pub attempts: i64,
    /// The kind of the last failure (`database`, `unavailable`, `hook`), never its text.
    pub last_error: Option<String>,
}
