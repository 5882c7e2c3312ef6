//! The statuses and outcomes that services report, as enums: each serializes (JSON, tables)
//! and is stored as its snake_case name.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::Error;

/// Declares a fieldless enum whose values are snake_case names: `as_str`, `Display`,
/// `FromStr` ([`Error::Invalid`] for another name) and `Serialize` as that name.
macro_rules! string_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// The snake_case name (as stored and printed).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $($text => Ok(Self::$variant),)*
                    other => Err(Error::Invalid(format!(
                        concat!("unknown ", stringify!($name), " {:?}: use one of {}"),
                        other,
                        [$($text),*].join(", ")
                    ))),
                }
            }
        }
    };
}

string_enum! {
    /// Where an invite stands (Fireback's invite lifecycle).
    #[non_exhaustive]
    pub enum InviteStatus {
        /// Sent and not yet answered; acceptable until it expires.
        Pending => "pending",
        /// Accepted: the membership exists.
        Accepted => "accepted",
        /// Revoked by an admin before it was accepted.
        Revoked => "revoked",
        /// Past its expiry without being accepted.
        Expired => "expired",
    }
}

string_enum! {
    /// Where an erasure request stands.
    #[non_exhaustive]
    pub enum ErasureRequestStatus {
        /// Waiting for its due date; the sweeper purges the user then.
        Pending => "pending",
        /// The user was erased.
        Completed => "completed",
        /// Withdrawn before it was carried out.
        Cancelled => "cancelled",
    }
}

string_enum! {
    /// How one sweeper run ended.
    #[non_exhaustive]
    pub enum SweepStatus {
        /// Still running (or died without finishing: a stale run).
        Running => "running",
        /// Every due user was handled.
        Ok => "ok",
        /// Some users failed (or were vetoed by a hook); the others were purged.
        Partial => "partial",
        /// The run itself failed.
        Failed => "failed",
        /// Stopped by a signal after finishing its current user.
        Interrupted => "interrupted",
    }
}

string_enum! {
    /// What the sweeper did with one due user.
    #[non_exhaustive]
    pub enum SweepOutcome {
        /// Erased, in its own transaction.
        Purged => "purged",
        /// No longer due when locked (restored, cancelled, or purged by another sweeper).
        Skipped => "skipped",
        /// The purge failed or a hook vetoed it; the user is whole and its request pending.
        Failed => "failed",
        /// Dry run: would be purged.
        WouldPurge => "would_purge",
    }
}

string_enum! {
    /// Why a sweeper run stopped before handling every due user.
    #[non_exhaustive]
    pub enum SweepStop {
        /// SIGTERM or SIGINT.
        Signal => "signal",
        /// `--max-duration` ran out.
        MaxDuration => "max_duration",
    }
}

string_enum! {
    /// How a user left, in the words of `user delete --mode` (the JSON of a delete and of a
    /// tombstone reads as the command was typed).
    #[non_exhaustive]
    pub enum DeletedMode {
        /// To the trash, restorable until its purge date.
        Admin => "admin",
        /// Erased (GDPR Art. 17): a tombstone with the id is all that remains.
        Gdpr => "gdpr",
        /// Merged into another account, which the tombstone names.
        Merged => "merged",
    }
}

impl From<crate::domain::DeletionMode> for DeletedMode {
    fn from(mode: crate::domain::DeletionMode) -> Self {
        match mode {
            crate::domain::DeletionMode::AdminDelete => Self::Admin,
            crate::domain::DeletionMode::GdprPurge => Self::Gdpr,
            crate::domain::DeletionMode::Merged { .. } => Self::Merged,
        }
    }
}

string_enum! {
    /// What bootstrap did about the first admin.
    #[non_exhaustive]
    pub enum AdminOutcome {
        /// The first admin was created by this run.
        Created => "created",
        /// An active admin already existed: nothing done, no password changed.
        Exists => "exists",
        /// No admin was asked for.
        NotRequested => "not_requested",
    }
}

string_enum! {
    /// The outcome of one row of a bulk import.
    #[non_exhaustive]
    pub enum ImportRowStatus {
        /// A new user was created.
        Created => "created",
        /// An existing user was updated (`--on-conflict update`).
        Updated => "updated",
        /// The user exists and was left alone (`--on-conflict skip`).
        Skipped => "skipped",
        /// The row failed; its `error` says why.
        Error => "error",
        /// Dry run: the row would be created or updated.
        Valid => "valid",
        /// Atomic import with an error elsewhere: this row was fine but nothing was written.
        RolledBack => "rolled_back",
    }
}
