//! Account merge (after Serverpod's account merge): two accounts of one person become
//! one. `keep` (A) absorbs `remove` (B) in one transaction, through an ordered list of
//! [`MergeHandler`]s — the core-data handler, one handler per identity provider (passports,
//! federated identities), then the application's own — after which B is deleted through the
//! lifecycle dispatcher with [`DeletionMode::Merged`] and leaves a tombstone. Any handler's
//! `Err` rolls everything back.
//!
//! Every move is set-based: one statement per table, whatever B owns.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use crate::domain::{DeletionMode, InstanceRole, LogoutReason, Timestamp, User, now};
use crate::error::{Error, Result};
use crate::lifecycle::UserLifecycleService;
use crate::services::accounts::Accounts;
use crate::services::audit;
use crate::services::folders::home_folder_name;
use crate::store::{Database, Tx, UserRef};

/// The two users of a merge, locked, as handlers see them.
#[derive(Debug, Clone)]
pub struct MergeContext {
    /// A: the account that stays.
    pub keep: User,
    /// B: the account that is merged into A and then deleted.
    pub remove: User,
    /// The merge's one timestamp: every row a handler stamps uses it.
    pub at: Timestamp,
}

/// What one handler will move, for the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanItem {
    /// The handler's [`MergeHandler::name`].
    pub handler: &'static str,
    /// `passports`, `memberships`, `folder_entries`…
    pub kind: &'static str,
    /// Rows that move from B to A (or are resolved).
    pub count: i64,
    /// Collisions and how each is resolved.
    pub collisions: Vec<String>,
}

impl PlanItem {
    /// A plan line of handler `handler`: `count` rows of `kind` move from B to A, with no
    /// collisions (add them with [`PlanItem::collision`]).
    pub fn new(handler: &'static str, kind: &'static str, count: i64) -> Self {
        Self {
            handler,
            kind,
            count,
            collisions: Vec::new(),
        }
    }

    /// Adds a collision and how it is resolved (`"calendar 'Work' renamed 'Work (B)'"`).
    pub fn collision(mut self, text: impl Into<String>) -> Self {
        self.collisions.push(text.into());
        self
    }
}

/// One step of a merge. Handlers run in order inside the merge transaction; an `Err` rolls
/// the whole merge back and is reported with the handler's name ([`Error::Refused`] as a
/// policy refusal, exit 4; anything else as a failure, exit 1). Implement one for each
/// application table that references users (Serverpod's account merge: core data, each
/// identity provider, then the application's own data), e.g.
/// `tx.execute("UPDATE notes SET owner_id = $2 WHERE owner_id = $1", &[b.id.into(), a.id.into()])`.
#[async_trait::async_trait]
pub trait MergeHandler: Send + Sync {
    /// A stable name, unique among merge handlers: it names the handler in errors and in
    /// the database's hook registry (so renaming it makes older binaries refuse writes).
    fn name(&self) -> &'static str;
    /// What [`MergeHandler::merge`] would do, read-only: a dry run calls it inside a
    /// `READ ONLY` transaction (PostgreSQL), where a write fails, so that it runs on a
    /// standby too.
    async fn plan(&self, ctx: &MergeContext, tx: &mut Tx) -> Result<Vec<PlanItem>>;
    /// Moves B's rows to A inside `tx`.
    async fn merge(&self, ctx: &MergeContext, tx: &mut Tx) -> Result<()>;
}

/// One side of a merge as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergeParty {
    /// The user's id.
    pub id: uuid::Uuid,
    /// The user's username.
    pub username: String,
    /// Whether the user signs in through an identity provider only.
    pub is_external: bool,
    /// The instance role.
    pub role: InstanceRole,
}

impl MergeParty {
    fn of(user: &User) -> Self {
        Self {
            id: user.id,
            username: user.username.clone(),
            is_external: user.is_external,
            role: user.role,
        }
    }
}

/// The merge plan (`user merge … --dry-run` prints it).
#[derive(Debug, Clone, Serialize)]
pub struct MergePlan {
    /// A: the account that stays.
    pub keep: MergeParty,
    /// B: the account merged into A and deleted.
    pub remove: MergeParty,
    /// B is an admin and A is not: A becomes admin (only with `--grant-admin`).
    pub grants_admin: bool,
    /// What each handler moves, in handler order.
    pub items: Vec<PlanItem>,
    /// B's live sessions, revoked by the merge (`admin_revoked`).
    pub sessions_revoked: i64,
    /// Audit rows about B: kept under B's pseudonymous id; B's tombstone points to A.
    pub audit_references: i64,
}

/// The result of a merge.
#[derive(Debug, Clone, Serialize)]
pub struct MergeOutcome {
    /// The plan that was carried out (or, for a dry run, would be); its fields are flattened
    /// into the JSON object.
    #[serde(flatten)]
    pub plan: MergePlan,
    /// False for a dry run.
    pub merged: bool,
}

/// Options of [`Merger::merge`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeOptions {
    /// Allow A to become admin because B was. Never implied: a merge must not silently
    /// widen anyone's rights, so without it merging an admin B into a non-admin A is refused.
    pub grant_admin: bool,
    /// Plan only; change nothing. The plan is read in a `READ ONLY` transaction (PostgreSQL)
    /// without the registry write check and without row locks, so it runs on a standby and
    /// under a binary that may not write.
    pub dry_run: bool,
}

/// Runs merges with a fixed, ordered handler list.
#[derive(Clone)]
pub struct Merger {
    db: Database,
    lifecycle: Arc<UserLifecycleService>,
    accounts: Accounts,
    handlers: Vec<Arc<dyn MergeHandler>>,
}

/// The shipped handlers in their order: core data, then the identity providers.
pub fn default_handlers() -> Vec<Arc<dyn MergeHandler>> {
    vec![
        Arc::new(CoreDataMergeHandler),
        Arc::new(PassportMergeHandler),
        Arc::new(ExternalIdentityMergeHandler),
    ]
}

impl Merger {
    /// `handlers` in firing order (see [`default_handlers`]).
    pub(crate) fn new(
        db: Database,
        lifecycle: Arc<UserLifecycleService>,
        accounts: Accounts,
        handlers: Vec<Arc<dyn MergeHandler>>,
    ) -> Self {
        Self {
            db,
            lifecycle,
            accounts,
            handlers,
        }
    }

    /// Merges `remove` into `keep`: plan, refusals, handlers, session revocation, then B's
    /// deletion with `Merged { into: A }`, all in one transaction.
    ///
    /// Errors: [`Error::NotFound`] for a missing user; [`Error::Refused`] (exit 4, nothing
    /// changed) for A = B, a trashed user, A external while B internal, B admin without
    /// `grant_admin`; [`Error::Vetoed`] (exit 4) naming a merge handler or lifecycle hook
    /// that refused by policy; [`Error::Hook`] (exit 1) naming one that failed. Either way
    /// the transaction rolls back and nothing changes.
    pub async fn merge(&self, keep: &UserRef, remove: &UserRef, options: MergeOptions) -> Result<MergeOutcome> {
        self.db.retrying(|| self.merge_once(keep, remove, options)).await
    }

    /// One attempt of [`Self::merge`], which runs it again when the database asks.
    async fn merge_once(&self, keep: &UserRef, remove: &UserRef, options: MergeOptions) -> Result<MergeOutcome> {
        // A dry run only reads: a READ ONLY transaction without the registry check, so it
        // runs on a standby and takes no row lock.
        let mut tx = if options.dry_run {
            self.db.begin_dry().await?
        } else {
            self.db.begin().await?
        };
        let a = tx.require_user(keep, false).await?;
        let b = tx.require_user(remove, false).await?;
        if a.id == b.id {
            return Err(Error::Refused("cannot merge a user into itself".into()));
        }
        if !options.dry_run {
            tx.lock_users(a.id, b.id).await?;
        }
        // Re-read under the locks.
        let a = tx.require_user(&UserRef::Id(a.id), false).await?;
        let b = tx.require_user(&UserRef::Id(b.id), false).await?;
        for user in [&a, &b] {
            if user.is_trashed() {
                return Err(Error::Refused(format!(
                    "user {} is in the trash: restore it first",
                    user.username
                )));
            }
            crate::services::erasure::refuse_if_erasure_pending(&mut tx, user, "merge").await?;
        }
        if a.is_external && !b.is_external {
            return Err(Error::Refused(format!(
                "{} is external and {} is internal: convert {} to internal first (user convert --to-internal)",
                a.username, b.username, a.username
            )));
        }
        let grants_admin = b.role == InstanceRole::Admin && a.role != InstanceRole::Admin;
        if grants_admin && !options.grant_admin {
            return Err(Error::Refused(format!(
                "{} is an admin and {} is not: a merge never grants admin silently (pass --grant-admin)",
                b.username, a.username
            )));
        }
        let ctx = MergeContext {
            keep: a,
            remove: b,
            at: now(),
        };
        let plan = self.plan(&ctx, &mut tx, grants_admin).await?;
        if options.dry_run {
            tx.end().await?;
            return Ok(MergeOutcome { plan, merged: false });
        }
        let (a, b) = (&ctx.keep, &ctx.remove);
        for handler in &self.handlers {
            if let Err(err) = handler.merge(&ctx, &mut tx).await {
                tracing::error!(handler = handler.name(), keep = %a.id, remove = %b.id, error = %err, "merge handler failed; rolling back");
                return Err(Error::from_hook(handler.name(), err));
            }
        }
        // B's sessions end (admin_revoked) and move to A as history.
        let revoked = tx
            .move_rows(
                "UPDATE sessions SET user_id = $2, revoked_at = COALESCE(revoked_at, $3), \
                 revoke_reason = COALESCE(revoke_reason, 'admin_revoked') WHERE user_id = $1",
                b.id,
                a.id,
                Some(ctx.at),
            )
            .await?;
        if grants_admin {
            tx.set_user_role(a.id, InstanceRole::Admin, ctx.at).await?;
        }
        audit::record(
            &mut tx,
            "user.merged",
            Some(a.id),
            json!({ "removed_user_id": b.id, "granted_admin": grants_admin, "sessions": revoked, "handlers": self.handlers.iter().map(|h| h.name()).collect::<Vec<_>>() }),
        )
        .await?;
        self.accounts
            .delete_in(&mut tx, b, DeletionMode::Merged { into: a.id })
            .await?;
        // A gained B's memberships (and perhaps admin); B's deletion hook published for B.
        tx.publish_authz_invalidation(a.id, "merged", ctx.at).await?;
        tx.publish_authz_invalidation(b.id, "merged", ctx.at).await?;
        tx.commit().await?;
        self.lifecycle.dispatch_logout(b, LogoutReason::AdminRevoked);
        Ok(MergeOutcome { plan, merged: true })
    }

    async fn plan(&self, ctx: &MergeContext, tx: &mut Tx, grants_admin: bool) -> Result<MergePlan> {
        let mut items = Vec::new();
        for handler in &self.handlers {
            items.extend(
                handler
                    .plan(ctx, tx)
                    .await
                    .map_err(|err| Error::from_hook(handler.name(), err))?,
            );
        }
        let (a, b) = (&ctx.keep, &ctx.remove);
        let sessions_revoked = tx.live_session_count(b.id, ctx.at).await?;
        let audit_references = tx
            .count_for(
                "SELECT COUNT(*) FROM audit_events WHERE subject_user_id = $1",
                b.id,
                None,
            )
            .await?;
        Ok(MergePlan {
            keep: MergeParty::of(a),
            remove: MergeParty::of(b),
            grants_admin,
            items,
            sessions_revoked,
            audit_references,
        })
    }
}

/// Core data, moved first as in Serverpod's account merge: memberships (union), home-folder
/// contents (under `Merged from {B}`), storage counters, person fields A lacks, and invites
/// and notifications that reference B. Name `core_data`.
pub struct CoreDataMergeHandler;

#[async_trait::async_trait]
impl MergeHandler for CoreDataMergeHandler {
    fn name(&self) -> &'static str {
        "core_data"
    }

    async fn plan(&self, ctx: &MergeContext, tx: &mut Tx) -> Result<Vec<PlanItem>> {
        let (a, b) = (ctx.keep.id, ctx.remove.id);
        let memberships = tx
            .count_for("SELECT COUNT(*) FROM memberships WHERE user_id = $1", b, None)
            .await?;
        let same = tx
            .count_for("SELECT COUNT(*) FROM memberships m WHERE m.user_id = $1 AND EXISTS (SELECT 1 FROM memberships k WHERE k.user_id = $2 AND k.workspace_id = m.workspace_id AND k.role_id = m.role_id)", b, Some(a))
            .await?;
        let other_role = tx
            .count_for("SELECT COUNT(*) FROM memberships m WHERE m.user_id = $1 AND EXISTS (SELECT 1 FROM memberships k WHERE k.user_id = $2 AND k.workspace_id = m.workspace_id) AND NOT EXISTS (SELECT 1 FROM memberships k WHERE k.user_id = $2 AND k.workspace_id = m.workspace_id AND k.role_id = m.role_id)", b, Some(a))
            .await?;
        let mut membership_collisions = Vec::new();
        if same > 0 {
            membership_collisions.push(format!(
                "{same} membership(s) A already holds with the same role: kept once"
            ));
        }
        if other_role > 0 {
            membership_collisions.push(format!(
                "{other_role} membership(s) in a workspace where A has another role: both roles kept"
            ));
        }
        let folders = tx
            .count_for(
                "SELECT COUNT(*) FROM folders WHERE user_id = $1 AND NOT is_home",
                b,
                None,
            )
            .await?;
        let files = tx
            .count_for("SELECT COUNT(*) FROM files WHERE user_id = $1", b, None)
            .await?;
        let invites = tx
            .count_for(
                "SELECT COUNT(*) FROM invites WHERE invitee_user_id = $1 OR accepted_by_user_id = $1",
                b,
                None,
            )
            .await?;
        let (pa, pb) = (
            tx.person(ctx.keep.person_id).await?,
            tx.person(ctx.remove.person_id).await?,
        );
        let mut filled = Vec::new();
        if let (Some(pa), Some(pb)) = (pa, pb) {
            for (field, mine, theirs) in [
                ("given_name", &pa.given_name, &pb.given_name),
                ("family_name", &pa.family_name, &pb.family_name),
                ("display_name", &pa.display_name, &pb.display_name),
                ("phone", &pa.phone, &pb.phone),
                ("locale", &pa.locale, &pb.locale),
            ] {
                match (mine, theirs) {
                    (None, Some(_)) => filled.push(format!("{field}: filled from B")),
                    (Some(x), Some(y)) if x != y => filled.push(format!("{field}: differs, A's kept")),
                    _ => {}
                }
            }
        }
        Ok(vec![
            PlanItem {
                handler: self.name(),
                kind: "memberships",
                count: memberships,
                collisions: membership_collisions,
            },
            PlanItem {
                handler: self.name(),
                kind: "folder_entries",
                count: folders + files,
                collisions: if folders + files > 0 {
                    vec![format!(
                        "moved under \"Merged from {}\" in A's home folder",
                        ctx.remove.username
                    )]
                } else {
                    vec![]
                },
            },
            PlanItem {
                handler: self.name(),
                kind: "person_fields",
                count: filled.iter().filter(|f| f.ends_with("from B")).count() as i64,
                collisions: filled,
            },
            PlanItem {
                handler: self.name(),
                kind: "invites",
                count: invites,
                collisions: vec![],
            },
        ])
    }

    async fn merge(&self, ctx: &MergeContext, tx: &mut Tx) -> Result<()> {
        let (a, b, at) = (ctx.keep.id, ctx.remove.id, ctx.at);
        tx.move_rows(
            "INSERT INTO memberships (user_id, workspace_id, role_id, created_at) \
             SELECT $2, workspace_id, role_id, created_at FROM memberships WHERE user_id = $1 \
             ON CONFLICT (user_id, workspace_id, role_id) DO NOTHING",
            b,
            a,
            None,
        )
        .await?;
        // B's own membership rows go with B's row (ON DELETE CASCADE) at the end of the merge.
        // Folder contents go under "Merged from {B}" in A's home folder.
        if let Some(b_home) = tx.home_folder_id(b).await? {
            let has_contents = tx
                .count_for("SELECT COUNT(*) FROM folders WHERE parent_id = $1", b_home, None)
                .await?
                + tx.count_for("SELECT COUNT(*) FROM files WHERE folder_id = $1", b_home, None)
                    .await?
                + tx.count_for("SELECT COUNT(*) FROM files WHERE user_id = $1", b, None)
                    .await?;
            if has_contents > 0 {
                if ctx.keep.is_external {
                    return Err(Error::Refused(format!(
                        "{} is external and cannot own files",
                        ctx.keep.username
                    )));
                }
                tx.ensure_home_folder(a, &home_folder_name(&ctx.keep.username), at)
                    .await?;
                let a_home = tx
                    .home_folder_id(a)
                    .await?
                    .ok_or_else(|| Error::Internal("home folder vanished".into()))?;
                let target = tx
                    .insert_folder(a, a_home, &format!("Merged from {}", ctx.remove.username), at)
                    .await?;
                tx.move_folder_contents(b, a, b_home, target).await?;
            }
        }
        tx.move_rows(
            "UPDATE users SET storage_used_bytes = storage_used_bytes + (SELECT storage_used_bytes FROM users WHERE id = $1) WHERE id = $2",
            b,
            a,
            None,
        )
        .await?;
        tx.move_rows(
            "UPDATE persons SET \
               given_name = COALESCE(given_name, (SELECT p.given_name FROM persons p JOIN users u ON u.person_id = p.id WHERE u.id = $1)), \
               family_name = COALESCE(family_name, (SELECT p.family_name FROM persons p JOIN users u ON u.person_id = p.id WHERE u.id = $1)), \
               display_name = COALESCE(display_name, (SELECT p.display_name FROM persons p JOIN users u ON u.person_id = p.id WHERE u.id = $1)), \
               phone = COALESCE(phone, (SELECT p.phone FROM persons p JOIN users u ON u.person_id = p.id WHERE u.id = $1)), \
               locale = COALESCE(locale, (SELECT p.locale FROM persons p JOIN users u ON u.person_id = p.id WHERE u.id = $1)) \
             WHERE id = (SELECT person_id FROM users WHERE id = $2)",
            b,
            a,
            None,
        )
        .await?;
        tx.move_rows(
            "UPDATE invites SET invitee_user_id = $2 WHERE invitee_user_id = $1",
            b,
            a,
            None,
        )
        .await?;
        tx.move_rows(
            "UPDATE invites SET accepted_by_user_id = $2 WHERE accepted_by_user_id = $1",
            b,
            a,
            None,
        )
        .await?;
        tx.move_rows(
            "UPDATE notification_outbox SET user_id = $2 WHERE user_id = $1",
            b,
            a,
            None,
        )
        .await?;
        Ok(())
    }
}

/// The email/phone identity provider: B's passports become A's. A keeps its primary
/// passport of each kind; B's primary becomes A's primary only where A has none. Name
/// `passports`.
pub struct PassportMergeHandler;

#[async_trait::async_trait]
impl MergeHandler for PassportMergeHandler {
    fn name(&self) -> &'static str {
        "passports"
    }

    async fn plan(&self, ctx: &MergeContext, tx: &mut Tx) -> Result<Vec<PlanItem>> {
        let (a, b) = (ctx.keep.id, ctx.remove.id);
        let count = tx
            .count_for("SELECT COUNT(*) FROM passports WHERE user_id = $1", b, None)
            .await?;
        let demoted = tx
            .count_for("SELECT COUNT(*) FROM passports p WHERE p.user_id = $1 AND p.is_primary AND EXISTS (SELECT 1 FROM passports k WHERE k.user_id = $2 AND k.kind = p.kind AND k.is_primary)", b, Some(a))
            .await?;
        let collisions = if demoted > 0 {
            vec![format!(
                "{demoted} primary passport(s) of B become non-primary: A's primary stays"
            )]
        } else {
            vec![]
        };
        Ok(vec![PlanItem {
            handler: self.name(),
            kind: "passports",
            count,
            collisions,
        }])
    }

    async fn merge(&self, ctx: &MergeContext, tx: &mut Tx) -> Result<()> {
        let (a, b) = (ctx.keep.id, ctx.remove.id);
        // Release B's primary flags first where A has a primary, so the move cannot collide
        // with the one-primary-per-kind index.
        tx.move_rows(
            "UPDATE passports SET is_primary = FALSE WHERE user_id = $1 AND is_primary \
             AND kind IN (SELECT kind FROM passports WHERE user_id = $2 AND is_primary)",
            b,
            a,
            None,
        )
        .await?;
        tx.move_rows("UPDATE passports SET user_id = $2 WHERE user_id = $1", b, a, None)
            .await?;
        Ok(())
    }
}

/// Federated identity providers: B's (provider, subject) identities move to A, so B's
/// sign-in keeps working and now signs in A. Name `external_identities`.
pub struct ExternalIdentityMergeHandler;

#[async_trait::async_trait]
impl MergeHandler for ExternalIdentityMergeHandler {
    fn name(&self) -> &'static str {
        "external_identities"
    }

    async fn plan(&self, ctx: &MergeContext, tx: &mut Tx) -> Result<Vec<PlanItem>> {
        let count = tx
            .count_for(
                "SELECT COUNT(*) FROM external_identities WHERE user_id = $1",
                ctx.remove.id,
                None,
            )
            .await?;
        Ok(vec![PlanItem {
            handler: self.name(),
            kind: "external_identities",
            count,
            collisions: vec![],
        }])
    }

    async fn merge(&self, ctx: &MergeContext, tx: &mut Tx) -> Result<()> {
        tx.move_rows(
            "UPDATE external_identities SET user_id = $2 WHERE user_id = $1",
            ctx.remove.id,
            ctx.keep.id,
            None,
        )
        .await?;
        Ok(())
    }
}
