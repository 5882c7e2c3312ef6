use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use uuid::Uuid;

use super::Timestamp;
use crate::error::Error;

/// Why a user's session ended (001 seed, kept exactly). Stored in `sessions.revoke_reason`
/// as the snake_case name.
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
    /// Refresh-token reuse was detected in the session family.
    TokenReused,
}

impl LogoutReason {
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

/// How a user is being deleted (001 seed's two modes, plus `Merged` from DESIGN.md's merge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum DeletionMode {
    /// Admin delete: the user goes to the trash, restorable until `purge_after`.
    AdminDelete,
    /// GDPR right to erasure: every row of personal data goes; a tombstone remains.
    GdprPurge,
    /// The user was merged into `into`; its data moved there before the delete.
    Merged { into: Uuid },
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
    pub id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_seen_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoke_reason: Option<LogoutReason>,
}

impl Session {
    /// Live means neither revoked nor expired at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}
