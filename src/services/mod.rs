//! Services: the operations an operator or application performs, each in one transaction
//! (or a documented sequence of independent ones). Each service module also holds the
//! lifecycle hook for the work it owns (OxiCloud's owner-located convention, 001 seed).

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod bootstrap;
pub mod erasure;
pub mod external_identity;
pub mod folders;
pub mod import;
pub mod invites;
pub mod memberships;
pub mod merge;
pub mod sessions;
pub mod workspaces;
