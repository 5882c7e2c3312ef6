//! Invites into workspaces (Fireback's workspace/invite model: an invite targets a passport,
//! optionally forced, with a role in a workspace), safe by construction: the token is 256
//! random bits, shown once and stored only as a SHA-256 hash; acceptance is one transaction
//! and single-use.
//!
//! The library never sends mail or SMS: each invite queues a row in `notification_outbox`
//! (kind, recipient, workspace, role, expiry, inviter, link template: everything but the
//! token) for the application's mailer. The token is returned once to the caller
//! ([`IssuedInvite::token`]), which delivers it: an application's server mails the link
//! itself, and `accountctl invite create --send` mails it by SMTP.

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::domain::{Email, InviteStatus, Page, PassportKind, Person, Phone, Timestamp, now};
use crate::error::{Error, Result};
use crate::lifecycle::current_actor;
use crate::password::Secret;
use crate::services::accounts::{Accounts, NewUser};
use crate::services::audit;
use crate::store::invites::{Invite, NewInvite};
use crate::store::{Database, Tx, UserRef};
use crate::tokens;

/// Default invite lifetime: 7 days (this project's default; `invite create --expires-in`).
pub const DEFAULT_INVITE_TTL: chrono::Duration = chrono::Duration::days(7);

/// What `invite create` needs.
#[derive(Debug, Clone)]
pub struct InviteRequest {
    /// The workspace, by name (case-insensitive) or id.
    pub workspace: String,
    /// The role the invitee gets in that workspace, by name.
    pub role: String,
    /// The email address to invite (RFC 5321 form). Exactly one of `email`, `phone`.
    pub email: Option<String>,
    /// The phone number to invite (E.164). Exactly one of `email`, `phone`.
    pub phone: Option<String>,
    /// The invitee must accept with exactly this passport.
    pub force_passport: bool,
    /// How long the invite stays acceptable from now ([`DEFAULT_INVITE_TTL`] by default).
    pub expires_in: chrono::Duration,
    /// The invitee's given name, kept on a person created for them (when the passport belongs
    /// to no user yet) and used when they accept as a new user.
    pub given_name: Option<String>,
    /// The invitee's family name, kept like `given_name`.
    pub family_name: Option<String>,
}

/// A created or resent invite with its token, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedInvite {
    /// The invite as stored (its fields are flattened into the JSON object).
    #[serde(flatten)]
    pub invite: Invite,
    /// The bearer token: give it to the invitee. It is not stored and cannot be shown again.
    pub token: String,
}

/// How the invitee accepts.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum Acceptor {
    /// An existing user.
    User(UserRef),
    /// A new user created through the same path as `user create`.
    NewUser {
        /// The new user's username (see [`crate::domain::Username`]).
        username: String,
        /// The new user's password; `None` creates the user without one.
        password: Option<Secret>,
    },
}

/// The result of an acceptance.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    /// The accepted invite.
    pub invite_id: Uuid,
    /// The user who accepted it (existing or new).
    pub user_id: Uuid,
    /// That user's username.
    pub username: String,
    /// The workspace joined.
    pub workspace_id: Uuid,
    /// The role's name in that workspace.
    pub role: String,
    /// `false` when the user already held that role there (no duplicate membership).
    pub membership_created: bool,
    /// `true` when the acceptance created the user ([`Acceptor::NewUser`]).
    pub user_created: bool,
    /// The new user's `on_user_created` hooks that failed (the user stands). Absent from JSON
    /// when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hook_failures: Vec<crate::domain::HookFailure>,
}

/// Invite operations.
#[derive(Clone)]
pub struct Invites {
    db: Database,
    accounts: Accounts,
    link_template: Option<String>,
}

fn normalize(email: &Option<String>, phone: &Option<String>) -> Result<(PassportKind, String)> {
    match (email, phone) {
        (Some(e), None) => Ok((PassportKind::Email, Email::parse(e)?.as_str().to_owned())),
        (None, Some(p)) => Ok((PassportKind::Phone, Phone::parse(p)?.as_str().to_owned())),
        _ => Err(Error::Invalid("give exactly one of --email or --phone".into())),
    }
}

impl Invites {
    pub(crate) fn new(db: Database, accounts: Accounts, link_template: Option<String>) -> Self {
        Self {
            db,
            accounts,
            link_template,
        }
    }

    /// Creates an invite and queues its notification. If the passport already belongs to a
    /// user, the invite targets that user. Errors: [`Error::Invalid`], [`Error::NotFound`];
    /// [`Error::Refused`] for an invite into the root workspace without `force_passport`.
    pub async fn create(&self, req: &InviteRequest) -> Result<IssuedInvite> {
        self.db.retrying(|| self.create_once(req)).await
    }

    /// One attempt of [`Self::create`], which runs it again when the database asks.
    async fn create_once(&self, req: &InviteRequest) -> Result<IssuedInvite> {
        let (kind, passport) = normalize(&req.email, &req.phone)?;
        let given_name = match &req.given_name {
            Some(g) => crate::domain::clean_text("given name", g, crate::domain::MAX_NAME_CHARS)?,
            None => None,
        };
        let family_name = match &req.family_name {
            Some(f) => crate::domain::clean_text("family name", f, crate::domain::MAX_NAME_CHARS)?,
            None => None,
        };
        let mut tx = self.db.begin().await?;
        let workspace_id = tx.workspace_id(&req.workspace).await?;
        let role_id = tx.role_id(workspace_id, &req.role).await?;
        // A root workspace role oversees every workspace: whoever holds the token must not
        // get it, only the person at the invited address.
        if !req.force_passport
            && tx
                .root_workspace()
                .await?
                .is_some_and(|root| root.workspace_id == workspace_id)
        {
            return Err(Error::Refused(
                "an invite into the root workspace must be bound to its email or phone: add --force-passport (force_passport)".into(),
            ));
        }
        let at = now();
        let invitee_user_id = tx.user_id_by_passport(kind, &passport).await?;
        let person_id = match (&invitee_user_id, &given_name, &family_name) {
            (None, g, f) if g.is_some() || f.is_some() => {
                let person = Person {
                    id: Uuid::now_v7(),
                    given_name: g.clone(),
                    family_name: f.clone(),
                    ..Person::default()
                };
                tx.insert_person(&person, at).await?;
                Some(person.id)
            }
            _ => None,
        };
        let (token, token_hash) = tokens::new_token();
        let new = NewInvite {
            workspace_id,
            role_id,
            passport_kind: kind,
            passport,
            force_passport: req.force_passport,
            invitee_user_id,
            person_id,
            token_hash,
            expires_at: crate::domain::after(at, req.expires_in)?,
            created_by: current_actor(),
        };
        let id = tx.insert_invite(&new, at).await?;
        let invite = tx.invite(id).await?;
        self.queue_notification(&mut tx, &invite, at).await?;
        audit::record(&mut tx, "invite.created", invitee_user_id, json!({ "invite_id": id, "workspace_id": workspace_id, "role_id": role_id, "existing_user": invitee_user_id.is_some() })).await?;
        tx.commit().await?;
        Ok(IssuedInvite { invite, token })
    }

    async fn queue_notification(&self, tx: &mut Tx, invite: &Invite, at: Timestamp) -> Result<()> {
        let kind = match invite.passport_kind {
            PassportKind::Email => "invite_email",
            PassportKind::Phone => "invite_sms",
        };
        // The token is deliberately not in the payload: the database never holds it.
        let payload = json!({
            "invite_id": invite.id,
            "workspace": invite.workspace,
            "role": invite.role,
            "existing_user": invite.invitee_user_id.is_some(),
            "force_passport": invite.force_passport,
            "invited_by": invite.created_by,
            "expires_at": invite.expires_at,
            "link_template": self.link_template,
        });
        tx.insert_outbox(
            kind,
            &invite.passport,
            Some(invite.id),
            invite.invitee_user_id,
            &payload,
            at,
        )
        .await?;
        Ok(())
    }

    /// One page of invites, newest first, optionally of one workspace and/or status. The
    /// cursor ([`Page::after`]) is the last invite id of the previous page. Errors:
    /// [`Error::NotFound`] for an unknown workspace or cursor.
    pub async fn list(
        &self,
        workspace: Option<&str>,
        status: Option<InviteStatus>,
        page: &Page,
    ) -> Result<Vec<Invite>> {
        let status = status.map(InviteStatus::as_str);
        self.db
            .read(async |tx| {
                let workspace_id = match workspace {
                    Some(w) => Some(tx.workspace_id(w).await?),
                    None => None,
                };
                tx.invites_page(workspace_id, status, page).await
            })
            .await
    }

    /// The invite id `text` names: a whole id, or a unique prefix of at least 8 characters
    /// (as tables show ids). Errors: [`Error::NotFound`]; [`Error::Invalid`] naming the
    /// candidates when the prefix fits several invites.
    pub async fn resolve_id(&self, text: &str) -> Result<Uuid> {
        let id = self
            .db
            .read(async |tx| tx.resolve_id("invites", "invite", text, None).await)
            .await?;
        Ok(id)
    }

    /// One invite. Errors: [`Error::NotFound`].
    pub async fn show(&self, id: Uuid) -> Result<Invite> {
        let invite = self.db.read(async |tx| tx.invite(id).await).await?;
        Ok(invite)
    }

    /// Revokes a pending invite. Errors: [`Error::NotFound`]; [`Error::Refused`] when it is
    /// no longer pending.
    pub async fn revoke(&self, id: Uuid) -> Result<Invite> {
        self.db.retrying(|| self.revoke_once(id)).await
    }

    /// One attempt of [`Self::revoke`], which runs it again when the database asks.
    async fn revoke_once(&self, id: Uuid) -> Result<Invite> {
        let mut tx = self.db.begin().await?;
        let invite = tx.invite(id).await?;
        if !tx.close_invite(id, crate::domain::InviteStatus::Revoked).await? {
            return Err(Error::Refused(format!("invite {id} is {}, not pending", invite.status)));
        }
        audit::record(
            &mut tx,
            "invite.revoked",
            invite.invitee_user_id,
            json!({ "invite_id": id }),
        )
        .await?;
        let invite = tx.invite(id).await?;
        tx.commit().await?;
        Ok(invite)
    }

    /// Rotates a pending invite's token, extends its expiry by `expires_in` from now, and
    /// queues a new notification. The old token stops working.
    pub async fn resend(&self, id: Uuid, expires_in: chrono::Duration) -> Result<IssuedInvite> {
        self.db.retrying(|| self.resend_once(id, expires_in)).await
    }

    /// One attempt of [`Self::resend`], which runs it again when the database asks.
    async fn resend_once(&self, id: Uuid, expires_in: chrono::Duration) -> Result<IssuedInvite> {
        let mut tx = self.db.begin().await?;
        let invite = tx.invite(id).await?;
        let (token, token_hash) = tokens::new_token();
        let at = now();
        if !tx
            .rotate_invite_token(id, &token_hash, crate::domain::after(at, expires_in)?)
            .await?
        {
            return Err(Error::Refused(format!("invite {id} is {}, not pending", invite.status)));
        }
        let invite = tx.invite(id).await?;
        self.queue_notification(&mut tx, &invite, at).await?;
        audit::record(
            &mut tx,
            "invite.resent",
            invite.invitee_user_id,
            json!({ "invite_id": id }),
        )
        .await?;
        tx.commit().await?;
        Ok(IssuedInvite { invite, token })
    }

    /// Marks expired pending invites `expired`; returns how many.
    pub async fn prune(&self) -> Result<u64> {
        self.db.retrying(|| self.prune_once()).await
    }

    /// One attempt of [`Self::prune`], which runs it again when the database asks.
    async fn prune_once(&self) -> Result<u64> {
        let mut tx = self.db.begin().await?;
        let n = tx.expire_invites(now()).await?;
        if n > 0 {
            audit::record(&mut tx, "invite.pruned", None, json!({ "count": n })).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Accepts an invite in one transaction: single use; expired, revoked and used tokens are
    /// refused; a forced passport must be the accepting user's; an invite addressed to an
    /// existing user can only be accepted by that user. A new user is created through the same
    /// path as `user create` (`on_user_created` fires after commit) with the invite's passport,
    /// marked verified. The membership is added unless the user already holds it.
    ///
    /// Errors: [`Error::Refused`] (exit 4) for every refusal above and an unknown token.
    pub async fn accept(&self, token: &str, acceptor: Acceptor) -> Result<Accepted> {
        // A new user's password is hashed once, before any attempt's transaction begins.
        let password_hash = match &acceptor {
            Acceptor::NewUser { password, .. } => Accounts::hash_new_password(password.as_ref()).await?,
            Acceptor::User(_) => None,
        };
        self.db
            .retrying(|| self.accept_once(token, acceptor.clone(), password_hash.clone()))
            .await
    }

    /// One attempt of [`Self::accept`], which runs it again when the database asks.
    async fn accept_once(&self, token: &str, acceptor: Acceptor, password_hash: Option<String>) -> Result<Accepted> {
        let hash = tokens::hash_token(token);
        let mut tx = self.db.begin().await?;
        let invite = tx
            .invite_by_token_hash_locked(&hash)
            .await?
            .ok_or_else(|| Error::Refused("unknown invite token (it may have been rotated by a resend)".into()))?;
        let at = now();
        if invite.status != InviteStatus::Pending {
            return Err(Error::Refused(format!(
                "this invite is {} and cannot be accepted",
                invite.status
            )));
        }
        if invite.expires_at <= at {
            return Err(Error::Refused(format!(
                "this invite expired at {}",
                crate::domain::format_time(invite.expires_at)
            )));
        }
        // Who owns the invite's passport *now*: it may have been registered by someone since
        // the invite was created, and then only that owner may accept (and verify) it.
        let owner = tx.user_id_by_passport(invite.passport_kind, &invite.passport).await?;
        let mut owed_work = None;
        let (user, created) = match acceptor {
            Acceptor::User(user_ref) => {
                let user = tx.require_user(&user_ref, true).await?;
                if !user.active || user.is_trashed() {
                    return Err(Error::Refused(format!(
                        "user {} is disabled or in the trash",
                        user.username
                    )));
                }
                if let Some(invitee) = invite.invitee_user_id
                    && invitee != user.id
                {
                    return Err(Error::Refused("this invite is addressed to another user".into()));
                }
                if let Some(owner) = owner
                    && owner != user.id
                {
                    return Err(Error::Refused(format!(
                        "the invite's {} now belongs to another user, and only that user can accept it",
                        invite.passport_kind.as_str()
                    )));
                }
                if invite.force_passport {
                    let owns = tx
                        .passports_of(user.id)
                        .await?
                        .iter()
                        .any(|p| p.kind == invite.passport_kind && p.value == invite.passport);
                    if !owns {
                        return Err(Error::Refused(format!(
                            "this invite requires the {} {}, which user {} does not have",
                            invite.passport_kind.as_str(),
                            invite.passport,
                            user.username
                        )));
                    }
                }
                (user, false)
            }
            Acceptor::NewUser { username, password } => {
                if invite.invitee_user_id.is_some() || owner.is_some() {
                    return Err(Error::Refused(
                        "this invite is addressed to an existing user: accept it with --user".into(),
                    ));
                }
                let person = match invite.person_id {
                    Some(id) => tx.person(id).await?,
                    None => None,
                };
                let (email, phone) = match invite.passport_kind {
                    PassportKind::Email => (Some(invite.passport.clone()), None),
                    PassportKind::Phone => (None, Some(invite.passport.clone())),
                };
                let new = NewUser {
                    username,
                    email,
                    phone,
                    given_name: person.as_ref().and_then(|p| p.given_name.clone()),
                    family_name: person.as_ref().and_then(|p| p.family_name.clone()),
                    person_id: invite.person_id,
                    password,
                    ..NewUser::default()
                };
                let (user, owed) = self.accounts.create_in_tx(&mut tx, &new, password_hash).await?;
                owed_work = Some(owed);
                (user, true)
            }
        };
        tx.mark_passport_verified(user.id, invite.passport_kind, &invite.passport, at)
            .await?;
        let membership_created = tx
            .insert_membership(user.id, invite.workspace_id, invite.role_id, at)
            .await?;
        if !tx.accept_invite(invite.id, user.id, at).await? {
            return Err(Error::Refused("this invite was accepted concurrently".into()));
        }
        if membership_created {
            tx.publish_authz_invalidation(user.id, "membership_changed", at).await?;
        }
        audit::record(&mut tx, "invite.accepted", Some(user.id), json!({ "invite_id": invite.id, "workspace_id": invite.workspace_id, "role_id": invite.role_id, "membership_created": membership_created, "user_created": created })).await?;
        tx.commit().await?;
        let hook_failures = match owed_work {
            Some(owed) => self.accounts.announce_created(&user, owed).await,
            None => Vec::new(),
        };
        Ok(Accepted {
            invite_id: invite.id,
            user_id: user.id,
            username: user.username,
            workspace_id: invite.workspace_id,
            role: invite.role,
            membership_created,
            user_created: created,
            hook_failures,
        })
    }
}
