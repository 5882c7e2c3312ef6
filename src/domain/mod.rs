//! Plain domain types and the validation rules of the account model: users and the persons
//! behind them, passports (login identifiers), capabilities, the lifecycle enums. Nothing here
//! knows about SQL or the CLI.

mod duration;
mod lifecycle;
mod names;
mod paging;
mod passport;
mod status;
mod text;
mod user;
mod user_ref;

pub use duration::{MAX_DURATION, after, parse_duration, parse_erasure_due};
pub use lifecycle::{DeletionMode, HookFailure, LogoutReason, OwedHookWork, Session};
pub use names::{
    Capability, name_mistaken_for, parse_capabilities, validate_role_name, validate_slug, validate_workspace_name,
};
pub use paging::{IdPrefix, MIN_ID_PREFIX, Page};
pub(crate) use paging::{ambiguous, name_or_id};
pub use passport::{Email, Passport, PassportKind, Phone};
pub use status::{
    AdminOutcome, DeletedMode, ErasureRequestStatus, ImportRowStatus, InviteStatus, SweepOutcome, SweepStatus,
    SweepStop,
};
pub use text::{
    ECHO_CHARS, MAX_NAME_CHARS, MAX_PROVIDER_CHARS, MAX_SUBJECT_CHARS, clean_identity, clean_text, is_invisible, shown,
};
pub use user::{InstanceRole, Person, User, UserView, Username};
pub use user_ref::{UserFilter, UserRef};

// Records read from the database, as services return them (defined beside their SQL).
pub use crate::store::erasure::{ErasureRequest, PurgeReason, SweeperRun};
pub use crate::store::invites::Invite;
pub use crate::store::reports::{AuditEvent, AuditFilter, ExportedUser};
pub use crate::store::workspaces::{Member, Role, Workspace, WorkspaceType};

/// A point in time, UTC, at microsecond precision (what PostgreSQL's `timestamptz` keeps).
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// A point in time as every output writes it: RFC 3339 in UTC with `Z` and as many
/// fractional digits as it has (0, 3, 6 or 9), the form JSON results use
/// (`2026-12-04T16:48:34.123456Z`), so stderr notes, tables and JSON agree.
pub fn format_time(at: Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The current time truncated to whole microseconds, so a value read back from either backend
/// equals the value written.
pub fn now() -> Timestamp {
    let t = chrono::Utc::now();
    let micros = t.timestamp_micros();
    chrono::DateTime::from_timestamp_micros(micros).unwrap_or(t)
}
