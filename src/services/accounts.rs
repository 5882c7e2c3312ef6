//! User accounts: create, list, show, delete (to the trash or erased), restore, disable,
//! enable, set password, convert between external and internal, instance role.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::app::PersonalData;
use crate::domain::{
    DeletedMode, DeletionMode, Email, InstanceRole, LogoutReason, MAX_NAME_CHARS, PassportKind, Person, Phone,
    Timestamp, User, UserView, Username, clean_identity, clean_text, now,
};
use crate::error::{Error, Result};
use crate::lifecycle::UserLifecycleService;
use crate::password::{self, Secret};
use crate::services::audit;
use crate::services::erasure::refuse_if_erasure_pending;
use crate::store::{Database, NewUserRecord, Tx, UserFilter, UserRef};

/// What `user create` (and bootstrap, invite acceptance, import) needs to create a user.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// The username (rules: [`crate::domain::Username`]).
    pub username: String,
    /// The primary email passport (RFC 5321 form, normalized to lower case).
    pub email: Option<String>,
    /// The primary phone passport (E.164; spaces, dashes, dots and parentheses dropped).
    pub phone: Option<String>,
    /// The person's given name.
    pub given_name: Option<String>,
    /// The person's family name.
    pub family_name: Option<String>,
    /// An external (federated) user: no password, never admin, no home folder, no storage.
    pub external: bool,
    /// The identity that signs an external user in: (provider, subject).
    pub identity: Option<(String, String)>,
    /// Create the user as instance admin (refused for an external user).
    pub admin: bool,
    /// A workspace membership to add: (workspace name or id, role name).
    pub membership: Option<(String, String)>,
    /// The password, hashed with argon2id (RFC 9106) before the transaction; `None` creates
    /// the user without one. An external user has none ([`Error::Invalid`] otherwise).
    pub password: Option<Secret>,
    /// Adopt this existing person (an invited person-to-be) instead of creating one.
    pub person_id: Option<Uuid>,
}

/// The result of [`Accounts::create`].
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// The user (its fields are flattened into the JSON object).
    #[serde(flatten)]
    pub user: UserView,
    /// `false` when `--if-not-exists` found an identical user.
    pub created: bool,
    /// The `on_user_created` hooks that failed: the user stands (the hook contract), their
    /// work stays owed (`hooks list`, `hooks replay`). Absent from JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hook_failures: Vec<crate::domain::HookFailure>,
}

/// A user with everything `user show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct UserDetails {
    /// The user as listings show it (its fields are flattened into the JSON object).
    #[serde(flatten)]
    pub user: UserView,
    /// The user's login identifiers, primary first.
    pub passports: Vec<PassportSummary>,
    /// The identity-provider accounts that sign the user in.
    pub external_identities: Vec<IdentitySummary>,
    /// The user's roles per workspace.
    pub memberships: Vec<MembershipSummary>,
    /// The home folder's name (internal users), if it exists.
    pub home_folder: Option<String>,
    /// Sessions neither revoked nor expired.
    pub live_sessions: usize,
}

/// A passport as `user show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassportSummary {
    /// `email` or `phone`.
    pub kind: PassportKind,
    /// The normalized address or number.
    pub value: String,
    /// The primary passport of its kind.
    pub is_primary: bool,
    /// When the user proved control of it (an accepted invite, a verification mail…).
    pub verified_at: Option<Timestamp>,
}

/// An external identity as `user show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentitySummary {
    /// The identity provider's name.
    pub provider: String,
    /// The user's id at the provider (OpenID Connect `sub`).
    pub subject: String,
    /// The last sign-in through it.
    pub last_verified_at: Option<Timestamp>,
}

/// One workspace role of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MembershipSummary {
    /// The workspace's name.
    pub workspace: String,
    /// The role's name.
    pub role: String,
}

/// The result of [`Accounts::delete`].
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    /// The deleted user's id (kept by the tombstone after an erasure).
    pub id: Uuid,
    /// The username it had.
    pub username: String,
    /// `admin` (to the trash) or `gdpr` (erased); `merged` when a merge removed the user.
    pub mode: DeletedMode,
    /// For the trash: when the user becomes due for purging.
    pub purge_after: Option<Timestamp>,
}

/// What remains of a user that was erased or merged away: its tombstone, so `user show <id>`
/// can say where the account went.
#[derive(Debug, Clone, Serialize)]
pub struct Tombstone {
    /// The id the user had.
    pub id: Uuid,
    /// When it ended.
    pub deleted_at: Timestamp,
    /// [`DeletedMode::Gdpr`] (erased) or [`DeletedMode::Merged`].
    pub mode: DeletedMode,
    /// For a merge: the account it was merged into.
    pub merged_into: Option<Uuid>,
    /// That account's username, while it exists.
    pub merged_into_username: Option<String>,
}

/// The result of enable/disable/convert/restore/role changes: the user after the change and
/// whether anything changed.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    /// The user after the change (its fields are flattened into the JSON object).
    #[serde(flatten)]
    pub user: UserView,
    /// `false` when the user already was in the requested state (nothing was written).
    pub changed: bool,
}

/// Account operations. Construct through [`crate::app::App::accounts`].
#[derive(Clone)]
pub struct Accounts {
    db: Database,
    lifecycle: Arc<UserLifecycleService>,
    trash_retention: chrono::Duration,
    /// The application's personal-data declarations, erased by a GDPR purge.
    personal_data: Arc<[PersonalData]>,
}

/// A user's validated creation input, ready for the transaction.
#[derive(Clone)]
struct Validated {
    username: Username,
    email: Option<Email>,
    phone: Option<Phone>,
    password_hash: Option<String>,
}

impl Accounts {
    pub(crate) fn new(
        db: Database,
        lifecycle: Arc<UserLifecycleService>,
        trash_retention: chrono::Duration,
        personal_data: Arc<[PersonalData]>,
    ) -> Self {
        Self {
            db,
            lifecycle,
            trash_retention,
            personal_data,
        }
    }

    /// The same service with another trash retention (`user delete --retention`).
    pub fn with_trash_retention(self, trash_retention: chrono::Duration) -> Self {
        Self {
            trash_retention,
            ..self
        }
    }

    /// Validates input and hashes the password (off the runtime), before any transaction.
    async fn validate(new: &NewUser) -> Result<Validated> {
        let username = Username::parse(&new.username)?;
        for (field, value) in [("given name", &new.given_name), ("family name", &new.family_name)] {
            if let Some(value) = value {
                clean_text(field, value, MAX_NAME_CHARS)?;
            }
        }
        if let Some((provider, subject)) = &new.identity {
            clean_identity(provider, subject)?;
        }
        let email = new.email.as_deref().map(Email::parse).transpose()?;
        let phone = new.phone.as_deref().map(Phone::parse).transpose()?;
        if new.external {
            if new.admin {
                return Err(Error::Refused(
                    "an external user can never be admin: create it, convert it to internal (user convert --to-internal), then assign admin".into(),
                ));
            }
            if new.password.is_some() {
                return Err(Error::Invalid(
                    "external users sign in through their identity provider and have no password".into(),
                ));
            }
        } else if new.identity.is_some() {
            return Err(Error::Invalid(
                "--provider/--subject are for external users (--external)".into(),
            ));
        }
        let password_hash = Self::hash_new_password(new.password.as_ref()).await?;
        Ok(Validated {
            username,
            email,
            phone,
            password_hash,
        })
    }

    /// Creates a user in one transaction, then fires `on_user_created` (after commit).
    ///
    /// With `if_not_exists`, an existing user of that username with the same email,
    /// externality and role is returned with `created: false`; a different one is a
    /// conflict. Errors: [`Error::Invalid`] (exit 2) for malformed input,
    /// [`Error::Conflict`]/[`Error::Refused`] (exit 4) for taken names and invariants,
    /// [`Error::NotFound`] for an unknown workspace or role.
    pub async fn create(&self, new: NewUser, if_not_exists: bool) -> Result<Created> {
        // Validated (the password hashed) once, not on every attempt.
        let valid = Self::validate(&new).await?;
        self.db
            .retrying(|| self.create_once(new.clone(), valid.clone(), if_not_exists))
            .await
    }

    /// One attempt of [`Self::create`], which runs it again when the database asks.
    async fn create_once(&self, new: NewUser, valid: Validated, if_not_exists: bool) -> Result<Created> {
        let mut tx = self.db.begin().await?;
        if if_not_exists && let Some(existing) = tx.find_user(&UserRef::Username(new.username.clone()), false).await? {
            let view = tx.user_view(existing.id).await?;
            let same = view.email.as_deref() == valid.email.as_ref().map(Email::as_str)
                && view.is_external == new.external
                && (view.role == InstanceRole::Admin) == new.admin
                && view.deleted_at.is_none();
            if same {
                return Ok(Created {
                    user: view,
                    created: false,
                    hook_failures: Vec::new(),
                });
            }
            return Err(Error::Conflict(format!(
                "a different user named {} already exists (email, external flag, role or trash state differ)",
                view.username
            )));
        }
        Self::refuse_taken_passports(&mut tx, &valid).await?;
        let (user, owed) = self.create_in(&mut tx, &new, valid).await?;
        let view = tx.user_view(user.id).await?;
        tx.commit().await?;
        let hook_failures = self.announce_created(&user, owed).await;
        Ok(Created {
            user: view,
            created: true,
            hook_failures,
        })
    }

    /// Refuses a new user's email or phone that another user already holds, naming that user
    /// (and, when the owner is in the trash, the two ways to free the address), so an operator
    /// knows whom to look at instead of reading the unique index's name. The unique index on
    /// `passports.value` stays the guarantee under concurrency; this is the message.
    ///
    /// Errors: [`Error::Conflict`] (exit code 4), e.g. "the email address a@example.com already
    /// belongs to user alice".
    async fn refuse_taken_passports(tx: &mut Tx, valid: &Validated) -> Result<()> {
        let wanted = [
            valid
                .email
                .clone()
                .map(|e| ("email address", e.as_str().to_owned(), UserRef::Email(e))),
            valid
                .phone
                .clone()
                .map(|p| ("phone number", p.as_str().to_owned(), UserRef::Phone(p))),
        ];
        for (what, value, by) in wanted.into_iter().flatten() {
            if let Some(owner) = tx.find_user(&by, false).await? {
                let trash = if owner.deleted_at.is_some() {
                    " (in the trash: `user restore` brings it back, `user delete --mode gdpr` frees the address)"
                } else {
                    ""
                };
                return Err(Error::Conflict(format!(
                    "the {what} {value} already belongs to user {}{trash}",
                    owner.username
                )));
            }
        }
        Ok(())
    }

    /// The transactional part of [`Accounts::create`], for callers that compose it with more
    /// work in the same transaction (bootstrap, invite acceptance). The caller fires
    /// `dispatch_created` after its commit.
    ///
    /// `password_hash` is the new password already hashed with [`Accounts::hash_new_password`]
    /// *before* the transaction began (SQLite's write lock is never held while hashing);
    /// `new.password` is not looked at.
    /// Returns the user and the record of its owed created-hook work, for
    /// [`Accounts::announce_created`].
    pub(crate) async fn create_in_tx(
        &self,
        tx: &mut Tx,
        new: &NewUser,
        password_hash: Option<String>,
    ) -> Result<(User, Uuid)> {
        let unhashed = NewUser {
            password: None,
            ..new.clone()
        };
        let mut valid = Self::validate(&unhashed).await?;
        if new.external && password_hash.is_some() {
            return Err(Error::Invalid(
                "external users sign in through their identity provider and have no password".into(),
            ));
        }
        valid.password_hash = password_hash;
        self.create_in(tx, new, valid).await
    }

    /// Checks a new password against the policy and hashes it (off the runtime), for
    /// [`Accounts::create_in_tx`]. Call it before beginning the transaction. Errors:
    /// [`Error::Invalid`] for a password against policy.
    pub(crate) async fn hash_new_password(password: Option<&Secret>) -> Result<Option<String>> {
        match password {
            Some(pw) => {
                pw.validate_new()?;
                Ok(Some(password::hash_async(pw.clone()).await?))
            }
            None => Ok(None),
        }
    }

    /// Fires `on_user_created` for a user created with [`Accounts::create_in_tx`], after the
    /// caller committed, and settles its owed record `owed`. Never fails (the user stands):
    /// returns the hooks that failed.
    pub(crate) async fn announce_created(&self, user: &User, owed: Uuid) -> Vec<crate::domain::HookFailure> {
        crate::services::hook_work::HookWork::new(self.db.clone(), self.lifecycle.clone())
            .created(owed, std::slice::from_ref(user))
            .await
    }

    /// Creates the user's rows in `tx` and records its owed created-hook work there.
    async fn create_in(&self, tx: &mut Tx, new: &NewUser, valid: Validated) -> Result<(User, Uuid)> {
        let at = now();
        let person = Person {
            id: new.person_id.unwrap_or_else(Uuid::now_v7),
            given_name: clean(&new.given_name),
            family_name: clean(&new.family_name),
            display_name: display_name(&new.given_name, &new.family_name),
            phone: None,
            locale: None,
        };
        if new.person_id.is_none() {
            tx.insert_person(&person, at).await?;
        }
        let user = tx
            .insert_user(&NewUserRecord {
                id: Uuid::now_v7(),
                person_id: person.id,
                username: valid.username.as_str().to_owned(),
                role: if new.admin {
                    InstanceRole::Admin
                } else {
                    InstanceRole::User
                },
                is_external: new.external,
                password_hash: valid.password_hash,
                created_at: at,
            })
            .await?;
        if let Some(email) = &valid.email {
            tx.insert_passport(user.id, PassportKind::Email, email.as_str(), true, at)
                .await?;
        }
        if let Some(phone) = &valid.phone {
            tx.insert_passport(user.id, PassportKind::Phone, phone.as_str(), true, at)
                .await?;
        }
        if let Some((provider, subject)) = &new.identity {
            tx.insert_external_identity(user.id, provider.trim(), subject.trim(), at)
                .await?;
        }
        if let Some((workspace, role)) = &new.membership {
            let workspace_id = tx.workspace_id(workspace).await?;
            let role_id = tx.role_id(workspace_id, role).await?;
            tx.insert_membership(user.id, workspace_id, role_id, at).await?;
        }
        let owed = crate::services::hook_work::HookWork::owe(tx, &[user.id]).await?;
        Ok((user, owed))
    }

    /// One page of users (see [`UserFilter`]). Errors: [`Error::Invalid`] for control
    /// characters in the search text or cursor (no username or email has any).
    pub async fn list(&self, filter: &UserFilter) -> Result<Vec<UserView>> {
        for (field, value) in [("search", &filter.search), ("cursor", &filter.after)] {
            if let Some(value) = value {
                clean_text(field, value, 254)?;
            }
        }
        let users = self.db.read(async |tx| tx.list_users(filter).await).await?;
        Ok(users)
    }

    /// A `<user>` argument as an operator types it: a username, email, phone or id
    /// ([`UserRef::parse`]), or a unique prefix of at least 8 characters of an id, as tables
    /// show ids. A username wins over an id prefix it looks like (a user named `deadbeef`
    /// is that user); a prefix that fits no id stays a username. Errors: as
    /// [`UserRef::parse`]; [`Error::Invalid`] (exit 2) naming the candidates when the prefix
    /// fits several users.
    pub async fn resolve(&self, text: &str) -> Result<UserRef> {
        let user = self.db.read(async |tx| tx.resolve_user_arg(text).await).await?;
        Ok(user)
    }

    /// Everything about one user. Errors: [`Error::NotFound`].
    pub async fn show(&self, user: &UserRef) -> Result<UserDetails> {
        let mut tx = self.db.begin_read_tx().await?;
        let user = tx.require_user(user, false).await?;
        let view = tx.user_view(user.id).await?;
        let passports = tx
            .passports_of(user.id)
            .await?
            .into_iter()
            .map(|p| PassportSummary {
                kind: p.kind,
                value: p.value,
                is_primary: p.is_primary,
                verified_at: p.verified_at,
            })
            .collect();
        let external_identities = tx
            .external_identities_of(user.id)
            .await?
            .into_iter()
            .map(|i| IdentitySummary {
                provider: i.provider,
                subject: i.subject,
                last_verified_at: i.last_verified_at,
            })
            .collect();
        let memberships = tx
            .membership_names_of(user.id)
            .await?
            .into_iter()
            .map(|(workspace, role)| MembershipSummary { workspace, role })
            .collect();
        let home_folder = tx.home_folder_name(user.id).await?;
        let live_sessions = tx.live_session_count(user.id, now()).await? as usize;
        tx.end().await?;
        Ok(UserDetails {
            user: view,
            passports,
            external_identities,
            memberships,
            home_folder,
            live_sessions,
        })
    }

    /// Deletes a user in one transaction: the hooks fire with `mode` inside it (sessions
    /// revoked, invalidations published, audit), then `AdminDelete` moves the user to the
    /// trash (restorable until `purge_after`) and `GdprPurge` erases every row of personal
    /// data, leaving a tombstone. A trashed user can be purged; it cannot be trashed twice.
    ///
    /// Errors: [`Error::NotFound`]; [`Error::Refused`] for the last active admin or a user
    /// already in the trash; [`Error::Vetoed`] when a hook refused by policy and
    /// [`Error::Hook`] when one failed (nothing changed either way).
    pub async fn delete(&self, user: &UserRef, mode: DeletionMode) -> Result<Deleted> {
        self.db.retrying(|| self.delete_once(user, mode)).await
    }

    /// One attempt of [`Self::delete`], which runs it again when the database asks.
    async fn delete_once(&self, user: &UserRef, mode: DeletionMode) -> Result<Deleted> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        let deleted = self.delete_in(&mut tx, &user, mode).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// The transactional part of [`Accounts::delete`] for an already locked user.
    pub(crate) async fn delete_in(&self, tx: &mut Tx, user: &User, mode: DeletionMode) -> Result<Deleted> {
        if mode == DeletionMode::AdminDelete && user.is_trashed() {
            return Err(Error::Refused(format!(
                "user {} is already in the trash",
                user.username
            )));
        }
        refuse_if_last_admin(tx, user, "delete").await?;
        self.lifecycle.dispatch_deleted(user, mode, tx).await?;
        let at = now();
        match mode {
            DeletionMode::AdminDelete => {
                let purge_after = crate::domain::after(at, self.trash_retention)?;
                tx.trash_user(user.id, at, purge_after).await?;
                Ok(Deleted {
                    id: user.id,
                    username: user.username.clone(),
                    mode: mode.into(),
                    purge_after: Some(purge_after),
                })
            }
            DeletionMode::GdprPurge | DeletionMode::Merged { .. } => {
                if mode == DeletionMode::GdprPurge {
                    // The application's declared personal data goes too, whatever its hooks did.
                    for declaration in self.personal_data.iter() {
                        tx.execute(&declaration.erase_sql(), &[user.id.into()]).await?;
                    }
                }
                let merged_into = match mode {
                    DeletionMode::Merged { into } => Some(into),
                    _ => None,
                };
                let root = tx.erase_user(user, mode.as_str(), merged_into, at).await?;
                // Only a root member's removal can leave the root workspace empty.
                if let Some(root) = root {
                    tx.refuse_if_root_emptied(root, true).await?;
                }
                Ok(Deleted {
                    id: user.id,
                    username: user.username.clone(),
                    mode: mode.into(),
                    purge_after: None,
                })
            }
        }
    }

    /// What the rules decide about deleting `user` before anyone is asked to confirm it: the
    /// user exists, is not in the trash already (`AdminDelete`), is not the last active
    /// admin, and is not the root workspace's only member (`GdprPurge`). One read
    /// transaction; the delete checks again under its locks, and a hook may still veto.
    /// Returns the user (its username is what a typed confirmation asks for).
    ///
    /// Errors: [`Error::NotFound`]; [`Error::Refused`] naming the rule.
    pub async fn check_delete(&self, user: &UserRef, mode: DeletionMode) -> Result<User> {
        let mut tx = self.db.begin_read_tx().await?;
        let user = tx.require_user(user, false).await?;
        if mode == DeletionMode::AdminDelete && user.is_trashed() {
            return Err(Error::Refused(format!(
                "user {} is already in the trash",
                user.username
            )));
        }
        if user.role == InstanceRole::Admin && user.active && !user.is_trashed() {
            let admins = tx.active_admin_ids().await?;
            if admins.iter().all(|id| *id == user.id) {
                return Err(Error::Refused(format!(
                    "refusing to delete {}: it is the last active admin (make another user admin first)",
                    user.username
                )));
            }
        }
        if mode == DeletionMode::GdprPurge {
            let (mine, others) = tx.root_membership_counts(user.id).await?;
            if mine > 0 && others == 0 {
                return Err(Error::Refused(
                    "the root workspace must keep at least one member: add another member first".into(),
                ));
            }
        }
        tx.end().await?;
        Ok(user)
    }

    /// The tombstone of a user id that no longer exists, if it ever did (erased or merged).
    /// Personal data is gone with the user: the id is all the tombstone knows about it.
    pub async fn tombstone(&self, id: Uuid) -> Result<Option<Tombstone>> {
        let row = self.db.read(async |tx| tx.tombstone(id).await).await?;
        let Some((deleted_at, mode, merged_into, merged_into_username)) = row else {
            return Ok(None);
        };
        Ok(Some(Tombstone {
            id,
            deleted_at,
            // As stored: the `DeletionMode` words (`gdpr_purge`, `merged`).
            mode: match mode.as_str() {
                "merged" => DeletedMode::Merged,
                "gdpr_purge" => DeletedMode::Gdpr,
                _ => DeletedMode::Admin,
            },
            merged_into,
            merged_into_username,
        }))
    }

    /// Brings a user back out of the trash, active again. Restoring a user that is not in
    /// the trash changes nothing (`changed: false`), like enabling an enabled user.
    /// Errors: [`Error::NotFound`]; [`Error::Refused`] when the user has a pending erasure
    /// request.
    pub async fn restore(&self, user: &UserRef) -> Result<Changed> {
        self.db.retrying(|| self.restore_once(user)).await
    }

    /// One attempt of [`Self::restore`], which runs it again when the database asks.
    async fn restore_once(&self, user: &UserRef) -> Result<Changed> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        if !user.is_trashed() {
            let view = tx.user_view(user.id).await?;
            return Ok(Changed {
                user: view,
                changed: false,
            });
        }
        refuse_if_erasure_pending(&mut tx, &user, "restore").await?;
        tx.restore_user(user.id, now()).await?;
        audit::record(&mut tx, "user.restored", Some(user.id), json!({})).await?;
        let view = tx.user_view(user.id).await?;
        tx.commit().await?;
        Ok(Changed {
            user: view,
            changed: true,
        })
    }

    /// Disables a user and revokes every session ([`LogoutReason::AccountDisabled`], one
    /// spawned logout). Disabling a disabled user changes nothing. Errors: [`Error::Refused`]
    /// for a trashed user or the last active admin.
    pub async fn disable(&self, user: &UserRef) -> Result<Changed> {
        self.db.retrying(|| self.disable_once(user)).await
    }

    /// One attempt of [`Self::disable`], which runs it again when the database asks.
    async fn disable_once(&self, user: &UserRef) -> Result<Changed> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        refuse_if_trashed(&user)?;
        if !user.active {
            let view = tx.user_view(user.id).await?;
            return Ok(Changed {
                user: view,
                changed: false,
            });
        }
        refuse_if_last_admin(&mut tx, &user, "disable").await?;
        let at = now();
        tx.set_user_active(user.id, false, at).await?;
        let revoked = tx
            .revoke_sessions_of(user.id, LogoutReason::AccountDisabled, at)
            .await?;
        tx.publish_authz_invalidation(user.id, LogoutReason::AccountDisabled.as_str(), at)
            .await?;
        audit::record(
            &mut tx,
            "user.disabled",
            Some(user.id),
            json!({ "sessions_revoked": revoked }),
        )
        .await?;
        let view = tx.user_view(user.id).await?;
        tx.commit().await?;
        self.lifecycle
            .dispatch_logout(&User { active: false, ..user }, LogoutReason::AccountDisabled);
        Ok(Changed {
            user: view,
            changed: true,
        })
    }

    /// Re-enables a disabled user (publishing an invalidation: its grants count again).
    /// Errors: [`Error::Refused`] for a trashed user (restore it)
    /// or one with a pending erasure request (`gdpr cancel` it first).
    pub async fn enable(&self, user: &UserRef) -> Result<Changed> {
        self.db.retrying(|| self.enable_once(user)).await
    }

    /// One attempt of [`Self::enable`], which runs it again when the database asks.
    async fn enable_once(&self, user: &UserRef) -> Result<Changed> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        refuse_if_trashed(&user)?;
        let changed = !user.active;
        if changed {
            refuse_if_erasure_pending(&mut tx, &user, "enable").await?;
            let at = now();
            tx.set_user_active(user.id, true, at).await?;
            tx.publish_authz_invalidation(user.id, "enabled", at).await?;
            audit::record(&mut tx, "user.enabled", Some(user.id), json!({})).await?;
        }
        let view = tx.user_view(user.id).await?;
        tx.commit().await?;
        Ok(Changed { user: view, changed })
    }

    /// Sets a new password and revokes the user's sessions
    /// ([`LogoutReason::PasswordChanged`], one spawned logout). Errors: [`Error::Invalid`] for
    /// a password against policy; [`Error::Refused`] for external or trashed users.
    pub async fn set_password(&self, user: &UserRef, password: Secret) -> Result<Changed> {
        // Hashed once, not on every attempt.
        password.validate_new()?;
        let phc = password::hash_async(password).await?;
        self.db.retrying(|| self.set_password_once(user, &phc)).await
    }

    /// One attempt of [`Self::set_password`], which runs it again when the database asks.
    async fn set_password_once(&self, user: &UserRef, phc: &str) -> Result<Changed> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        refuse_if_trashed(&user)?;
        change_password_in(&mut tx, &user, phc).await?;
        let view = tx.user_view(user.id).await?;
        tx.commit().await?;
        self.lifecycle.dispatch_logout(&user, LogoutReason::PasswordChanged);
        Ok(Changed {
            user: view,
            changed: true,
        })
    }

    /// Converts between external and internal in one transaction, audited. To internal is a
    /// flag flip and fires no event: the next login's idempotent `on_user_login` provisions
    /// what is missing (the OxiCloud user-lifecycle hook design); admin stays a separate
    /// second step. To external is refused
    /// for an admin or a user with storage in use; it removes the password (external users
    /// sign in through their provider) and the empty home folder, and revokes every session
    /// ([`LogoutReason::AdminRevoked`], one spawned logout). Both directions publish an
    /// invalidation in the transaction.
    pub async fn convert(&self, user: &UserRef, to_external: bool) -> Result<Changed> {
        self.db.retrying(|| self.convert_once(user, to_external)).await
    }

    /// One attempt of [`Self::convert`], which runs it again when the database asks.
    async fn convert_once(&self, user: &UserRef, to_external: bool) -> Result<Changed> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        refuse_if_trashed(&user)?;
        if user.is_external == to_external {
            let view = tx.user_view(user.id).await?;
            return Ok(Changed {
                user: view,
                changed: false,
            });
        }
        let at = now();
        if to_external {
            if user.role == InstanceRole::Admin {
                return Err(Error::Refused(format!(
                    "user {} is an admin and external users can never be admin: demote first (role revoke {} admin)",
                    user.username, user.username
                )));
            }
            if user.storage_used_bytes > 0 {
                return Err(Error::Refused(format!(
                    "user {} uses {} bytes of storage and external users use none: move or delete the files first",
                    user.username, user.storage_used_bytes
                )));
            }
            tx.set_password_hash(user.id, None, at).await?;
            tx.remove_empty_home_folder(user.id).await?;
        }
        tx.set_user_external(user.id, to_external, at).await?;
        // A password session must not outlive the password: to external ends every session.
        let revoked = if to_external {
            tx.revoke_sessions_of(user.id, LogoutReason::AdminRevoked, at).await?
        } else {
            0
        };
        let to = if to_external { "external" } else { "internal" };
        tx.publish_authz_invalidation(user.id, "converted", at).await?;
        audit::record(
            &mut tx,
            "user.converted",
            Some(user.id),
            json!({ "to": to, "sessions_revoked": revoked }),
        )
        .await?;
        let view = tx.user_view(user.id).await?;
        tx.commit().await?;
        if to_external {
            self.lifecycle.dispatch_logout(
                &User {
                    is_external: true,
                    ..user
                },
                LogoutReason::AdminRevoked,
            );
        }
        Ok(Changed {
            user: view,
            changed: true,
        })
    }

    /// Sets the instance role (`admin | user`). Errors: [`Error::Refused`] when making an
    /// external user admin ("convert to internal first": the friction is intentional, as in
    /// the OxiCloud user-lifecycle hook design, so an identity provider's account never
    /// becomes admin by accident) or demoting the last active admin.
    pub async fn set_instance_role(&self, user: &UserRef, role: InstanceRole) -> Result<Changed> {
        self.db.retrying(|| self.set_instance_role_once(user, role)).await
    }

    /// One attempt of [`Self::set_instance_role`], which runs it again when the database asks.
    async fn set_instance_role_once(&self, user: &UserRef, role: InstanceRole) -> Result<Changed> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        refuse_if_trashed(&user)?;
        let changed = change_instance_role_in(&mut tx, &user, role).await?;
        let view = tx.user_view(user.id).await?;
        if changed {
            tx.commit().await?;
        }
        Ok(Changed { user: view, changed })
    }
}

/// The rules and events of an instance-role change, for a user whose row the caller locked
/// inside its write transaction (`role assign|revoke`, `user import --on-conflict update`):
/// an external user is never made admin ("convert to internal first"), the last
/// active admin is never demoted, and a change is audited as `user.role_changed`. Returns
/// whether the role changed. Errors: [`Error::Refused`], with nothing written.
pub(crate) async fn change_instance_role_in(tx: &mut Tx, user: &User, role: InstanceRole) -> Result<bool> {
    if user.role == role {
        return Ok(false);
    }
    refuse_external_admin(user, role)?;
    if role == InstanceRole::User {
        refuse_if_last_admin(tx, user, "demote").await?;
    }
    let at = now();
    tx.set_user_role(user.id, role, at).await?;
    tx.publish_authz_invalidation(user.id, "role_changed", at).await?;
    audit::record(
        tx,
        "user.role_changed",
        Some(user.id),
        json!({ "from": user.role, "to": role }),
    )
    .await?;
    Ok(true)
}

/// Refuses a password for an external user (it signs in through its identity provider).
pub(crate) fn refuse_password_for_external(user: &User) -> Result<()> {
    if user.is_external {
        return Err(Error::Refused(format!(
            "user {} is external and signs in through its identity provider: convert it to internal first",
            user.username
        )));
    }
    Ok(())
}

/// The rules and events of a password change, for a user whose row the caller locked inside
/// its write transaction (`set-password`, `user import --on-conflict update`): refused for an
/// external user; the new PHC string is stored, every session is revoked
/// ([`LogoutReason::PasswordChanged`]) and the change audited as `user.password_changed`.
/// Returns the number of sessions revoked; the caller fires the one spawned logout after
/// its commit. Errors: [`Error::Refused`], with nothing written.
pub(crate) async fn change_password_in(tx: &mut Tx, user: &User, phc: &str) -> Result<u64> {
    refuse_password_for_external(user)?;
    let at = now();
    tx.set_password_hash(user.id, Some(phc), at).await?;
    let revoked = tx
        .revoke_sessions_of(user.id, LogoutReason::PasswordChanged, at)
        .await?;
    tx.publish_authz_invalidation(user.id, LogoutReason::PasswordChanged.as_str(), at)
        .await?;
    audit::record(
        tx,
        "user.password_changed",
        Some(user.id),
        json!({ "sessions_revoked": revoked }),
    )
    .await?;
    Ok(revoked)
}

fn refuse_if_trashed(user: &User) -> Result<()> {
    if user.is_trashed() {
        return Err(Error::Refused(format!(
            "user {} is in the trash: restore it first (user restore)",
            user.username
        )));
    }
    Ok(())
}

/// The rules of [`change_instance_role_in`] without the change, for a dry run: reads only
/// and takes no lock, so it runs in a read-only transaction (a standby). Returns whether the
/// role would change. Errors: [`Error::Refused`] as the change would.
pub(crate) async fn check_instance_role_change(tx: &mut Tx, user: &User, role: InstanceRole) -> Result<bool> {
    if user.role == role {
        return Ok(false);
    }
    refuse_external_admin(user, role)?;
    if role == InstanceRole::User && counts_as_admin(user) {
        let admins = tx.active_admin_ids().await?;
        refuse_last_admin(user, &admins, "demote")?;
    }
    Ok(true)
}

/// Refuses admin for an external user (they sign in through an identity provider).
fn refuse_external_admin(user: &User, role: InstanceRole) -> Result<()> {
    if role == InstanceRole::Admin && user.is_external {
        return Err(Error::Refused(format!(
            "user {} is external and external users can never be admin: convert to internal first (user convert {} --to-internal)",
            user.username, user.username
        )));
    }
    Ok(())
}

/// Whether `user` is one of the active admins the last-admin rule keeps.
fn counts_as_admin(user: &User) -> bool {
    user.role == InstanceRole::Admin && user.active && !user.is_trashed()
}

/// Refuses when `admins` (the active admins) holds no one but `user`.
fn refuse_last_admin(user: &User, admins: &[Uuid], verb: &str) -> Result<()> {
    if admins.iter().all(|id| *id == user.id) {
        return Err(Error::Refused(format!(
            "refusing to {verb} {}: it is the last active admin (make another user admin first)",
            user.username
        )));
    }
    Ok(())
}

/// Refuses to remove the last active admin (this project's rule: the instance always keeps
/// one, so it can always be administered). The decision is serialized with every other one
/// about the admins ([`Tx::lock_instance_admins`]), so two concurrent removals of the last
/// two admins cannot both pass: the second sees the first's commit and is refused.
pub(crate) async fn refuse_if_last_admin(tx: &mut Tx, user: &User, verb: &str) -> Result<()> {
    if !counts_as_admin(user) {
        return Ok(());
    }
    tx.lock_instance_admins().await?;
    let admins = tx.active_admin_ids().await?;
    refuse_last_admin(user, &admins, verb)
}

fn clean(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn display_name(given: &Option<String>, family: &Option<String>) -> Option<String> {
    match (clean(given), clean(family)) {
        (Some(g), Some(f)) => Some(format!("{g} {f}")),
        (Some(one), None) | (None, Some(one)) => Some(one),
        (None, None) => None,
    }
}
