//! User accounts: create, list, show, delete (to the trash or erased), restore, disable,
//! enable, set password, convert between external and internal, instance role.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::domain::{
    DeletionMode, Email, InstanceRole, LogoutReason, PassportKind, Person, Phone, Timestamp, User, UserView, Username,
    now,
};
use crate::error::{Error, Result};
use crate::lifecycle::UserLifecycleService;
use crate::password::{self, Secret};
use crate::services::audit;
use crate::store::{Database, NewUserRecord, Tx, UserFilter, UserRef};

/// What `user create` (and bootstrap, invite acceptance, import) needs to create a user.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// An external (federated) user: no password, never admin, no home folder, no storage.
    pub external: bool,
    /// The identity that signs an external user in: (provider, subject).
    pub identity: Option<(String, String)>,
    pub admin: bool,
    /// A workspace membership to add: (workspace name or id, role name).
    pub membership: Option<(String, String)>,
    pub password: Option<Secret>,
    /// Adopt this existing person (an invited person-to-be) instead of creating one.
    pub person_id: Option<Uuid>,
}

/// The result of [`Accounts::create`].
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub user: UserView,
    /// `false` when `--if-not-exists` found an identical user.
    pub created: bool,
}

/// A user with everything `user show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct UserDetails {
    #[serde(flatten)]
    pub user: UserView,
    /// `{"kind", "value", "is_primary", "verified_at"}` objects.
    pub passports: Vec<serde_json::Value>,
    /// `{"provider", "subject", "last_verified_at"}` objects.
    pub external_identities: Vec<serde_json::Value>,
    /// `{"workspace": ..., "role": ...}` pairs.
    pub memberships: Vec<serde_json::Value>,
    pub home_folder: Option<String>,
    pub live_sessions: usize,
}

/// The result of [`Accounts::delete`].
#[derive(Debug, Clone, Serialize)]
pub struct Deleted {
    pub id: Uuid,
    pub username: String,
    /// `admin_delete` (to the trash) or `gdpr_purge` (erased).
    pub mode: &'static str,
    /// For the trash: when the user becomes due for purging.
    pub purge_after: Option<Timestamp>,
}

/// The result of enable/disable/convert/restore/role changes: the user after the change and
/// whether anything changed.
#[derive(Debug, Clone, Serialize)]
pub struct Changed {
    #[serde(flatten)]
    pub user: UserView,
    pub changed: bool,
}

/// Account operations. Construct through [`crate::app::App::accounts`].
#[derive(Clone)]
pub struct Accounts {
    db: Database,
    lifecycle: Arc<UserLifecycleService>,
    trash_retention: chrono::Duration,
}

/// A user's validated creation input, ready for the transaction.
struct Validated {
    username: Username,
    email: Option<Email>,
    phone: Option<Phone>,
    password_hash: Option<String>,
}

impl Accounts {
    pub fn new(db: Database, lifecycle: Arc<UserLifecycleService>, trash_retention: chrono::Duration) -> Self {
        Self {
            db,
            lifecycle,
            trash_retention,
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
        let password_hash = match &new.password {
            Some(pw) => {
                pw.validate_new()?;
                Some(password::hash_async(pw.clone()).await?)
            }
            None => None,
        };
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
        self.db.retrying(|| self.create_once(new.clone(), if_not_exists)).await
    }

    /// One attempt of [`Self::create`], which runs it again when the database asks.
    async fn create_once(&self, new: NewUser, if_not_exists: bool) -> Result<Created> {
        let valid = Self::validate(&new).await?;
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
                });
            }
            return Err(Error::Conflict(format!(
                "a different user named {} already exists (email, external flag, role or trash state differ)",
                view.username
            )));
        }
        let user = self.create_in(&mut tx, &new, valid).await?;
        let view = tx.user_view(user.id).await?;
        tx.commit().await?;
        self.lifecycle.dispatch_created(&user).await?;
        Ok(Created {
            user: view,
            created: true,
        })
    }

    /// The transactional part of [`Accounts::create`], for callers that compose it with more
    /// work in the same transaction (bootstrap, invite acceptance). The caller fires
    /// `dispatch_created` after its commit.
    pub async fn create_in_tx(&self, tx: &mut Tx, new: &NewUser) -> Result<User> {
        let valid = Self::validate(new).await?;
        self.create_in(tx, new, valid).await
    }

    /// Fires `on_user_created` for a user created with [`Accounts::create_in_tx`], after the
    /// caller committed.
    pub async fn announce_created(&self, user: &User) -> Result<()> {
        self.lifecycle.dispatch_created(user).await
    }

    async fn create_in(&self, tx: &mut Tx, new: &NewUser, valid: Validated) -> Result<User> {
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
        Ok(user)
    }

    /// One page of users (see [`UserFilter`]).
    pub async fn list(&self, filter: &UserFilter) -> Result<Vec<UserView>> {
        let mut tx = self.db.begin_read().await?;
        let users = tx.list_users(filter).await?;
        tx.end().await?;
        Ok(users)
    }

    /// Everything about one user. Errors: [`Error::NotFound`].
    pub async fn show(&self, user: &UserRef) -> Result<UserDetails> {
        let mut tx = self.db.begin_read().await?;
        let user = tx.require_user(user, false).await?;
        let view = tx.user_view(user.id).await?;
        let passports = tx
            .passports_of(user.id)
            .await?
            .into_iter()
            .map(|p| json!({ "kind": p.kind, "value": p.value, "is_primary": p.is_primary, "verified_at": p.verified_at }))
            .collect();
        let external_identities = tx
            .external_identities_of(user.id)
            .await?
            .into_iter()
            .map(|i| json!({ "provider": i.provider, "subject": i.subject, "last_verified_at": i.last_verified_at }))
            .collect();
        let memberships = tx
            .membership_names_of(user.id)
            .await?
            .into_iter()
            .map(|(w, r)| json!({ "workspace": w, "role": r }))
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
    /// already in the trash; [`Error::Hook`] when a hook aborted (nothing changed).
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
    pub async fn delete_in(&self, tx: &mut Tx, user: &User, mode: DeletionMode) -> Result<Deleted> {
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
                let purge_after = at + self.trash_retention;
                tx.trash_user(user.id, at, purge_after).await?;
                Ok(Deleted {
                    id: user.id,
                    username: user.username.clone(),
                    mode: mode.as_str(),
                    purge_after: Some(purge_after),
                })
            }
            DeletionMode::GdprPurge | DeletionMode::Merged { .. } => {
                // Only a root member's removal can leave the root workspace empty.
                let root = tx.root_membership_of(user.id).await?;
                tx.erase_personal_data(user).await?;
                if let Some(root) = root {
                    tx.refuse_if_root_emptied(root, true).await?;
                }
                let merged_into = match mode {
                    DeletionMode::Merged { into } => Some(into),
                    _ => None,
                };
                tx.insert_tombstone(user.id, mode.as_str(), merged_into, at).await?;
                Ok(Deleted {
                    id: user.id,
                    username: user.username.clone(),
                    mode: mode.as_str(),
                    purge_after: None,
                })
            }
        }
    }

    /// Brings a user back out of the trash, active again. Errors: [`Error::NotFound`];
    /// [`Error::Refused`] when the user is not in the trash.
    pub async fn restore(&self, user: &UserRef) -> Result<Changed> {
        self.db.retrying(|| self.restore_once(user)).await
    }

    /// One attempt of [`Self::restore`], which runs it again when the database asks.
    async fn restore_once(&self, user: &UserRef) -> Result<Changed> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        if !user.is_trashed() {
            return Err(Error::Refused(format!("user {} is not in the trash", user.username)));
        }
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

    /// Re-enables a disabled user. Errors: [`Error::Refused`] for a trashed user (restore it).
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
            tx.set_user_active(user.id, true, now()).await?;
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
        self.db
            .retrying(|| self.set_password_once(user, password.clone()))
            .await
    }

    /// One attempt of [`Self::set_password`], which runs it again when the database asks.
    async fn set_password_once(&self, user: &UserRef, password: Secret) -> Result<Changed> {
        password.validate_new()?;
        let phc = password::hash_async(password).await?;
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        refuse_if_trashed(&user)?;
        if user.is_external {
            return Err(Error::Refused(format!(
                "user {} is external and signs in through its identity provider: convert it to internal first",
                user.username
            )));
        }
        let at = now();
        tx.set_password_hash(user.id, Some(&phc), at).await?;
        let revoked = tx
            .revoke_sessions_of(user.id, LogoutReason::PasswordChanged, at)
            .await?;
        audit::record(
            &mut tx,
            "user.password_changed",
            Some(user.id),
            json!({ "sessions_revoked": revoked }),
        )
        .await?;
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
    /// what is missing (001 seed); admin stays a separate second step. To external is refused
    /// for an admin or a user with storage in use; it removes the password (external users
    /// sign in through their provider) and the empty home folder.
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
        let to = if to_external { "external" } else { "internal" };
        audit::record(&mut tx, "user.converted", Some(user.id), json!({ "to": to })).await?;
        let view = tx.user_view(user.id).await?;
        tx.commit().await?;
        Ok(Changed {
            user: view,
            changed: true,
        })
    }

    /// Sets the instance role (`admin | user`). Errors: [`Error::Refused`] when making an
    /// external user admin ("convert to internal first": the friction is intentional, 001
    /// seed) or demoting the last active admin.
    pub async fn set_instance_role(&self, user: &UserRef, role: InstanceRole) -> Result<Changed> {
        self.db.retrying(|| self.set_instance_role_once(user, role)).await
    }

    /// One attempt of [`Self::set_instance_role`], which runs it again when the database asks.
    async fn set_instance_role_once(&self, user: &UserRef, role: InstanceRole) -> Result<Changed> {
        let mut tx = self.db.begin().await?;
        let user = tx.require_user(user, true).await?;
        refuse_if_trashed(&user)?;
        if user.role == role {
            let view = tx.user_view(user.id).await?;
            return Ok(Changed {
                user: view,
                changed: false,
            });
        }
        if role == InstanceRole::Admin && user.is_external {
            return Err(Error::Refused(format!(
                "user {} is external and external users can never be admin: convert to internal first (user convert {} --to-internal)",
                user.username, user.username
            )));
        }
        if role == InstanceRole::User {
            refuse_if_last_admin(&mut tx, &user, "demote").await?;
        }
        tx.set_user_role(user.id, role, now()).await?;
        audit::record(
            &mut tx,
            "user.role_changed",
            Some(user.id),
            json!({ "from": user.role, "to": role }),
        )
        .await?;
        let view = tx.user_view(user.id).await?;
        tx.commit().await?;
        Ok(Changed {
            user: view,
            changed: true,
        })
    }
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

/// Refuses to remove the last active admin (DESIGN.md: the instance always keeps one).
pub(crate) async fn refuse_if_last_admin(tx: &mut Tx, user: &User, verb: &str) -> Result<()> {
    if user.role != InstanceRole::Admin || !user.active || user.is_trashed() {
        return Ok(());
    }
    let admins = tx.active_admin_ids().await?;
    if admins.iter().all(|id| *id == user.id) {
        return Err(Error::Refused(format!(
            "refusing to {verb} {}: it is the last active admin (make another user admin first)",
            user.username
        )));
    }
    Ok(())
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
