//! Services: the operations an operator or application performs, each in one transaction
//! (or a documented sequence of independent ones). Each service module also holds the
//! lifecycle hook for the work it owns (the OxiCloud user-lifecycle hook design's
//! owner-located convention): the home-folder hook lives in `folders`, session revocation in
//! `sessions`, and so on. `audit` is the cross-cutting exception.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod bootstrap;
pub mod erasure;
pub mod external_identity;
pub mod folders;
pub mod hook_work;
pub mod import;
pub mod invites;
pub mod memberships;
pub mod merge;
pub mod reports;
pub mod sessions;
pub mod workspaces;
