//! Invites into workspaces (Fireback's workspace/invite model) and the notification outbox.
//! Tokens are stored only as SHA-256 hashes.

use serde::Serialize;
use uuid::Uuid;

use super::{Backend, DbId, DbRow, Tx, from_row, get_id, get_opt_id, parse_enum};
use crate::domain::{InviteStatus, PassportKind, Timestamp};
use crate::error::{Error, Result};

/// An invite as `invite list/show` prints it (no token: it is not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invite {
    /// The invite's id.
    pub id: Uuid,
    /// The workspace the invitee joins.
    pub workspace_id: Uuid,
    /// That workspace's name.
    pub workspace: String,
    /// The role the invitee gets there.
    pub role_id: Uuid,
    /// That role's name.
    pub role: String,
    /// Whether the invite was sent to an email address or a phone number.
    pub passport_kind: PassportKind,
    /// The invited email address or phone number, normalized.
    pub passport: String,
    /// The invitee must accept with exactly this passport (a company address, say).
    pub force_passport: bool,
    /// The existing user the invite targets, when its passport already belonged to one.
    pub invitee_user_id: Option<Uuid>,
    /// The person-to-be (names given at invite time), for invites to non-users.
    pub person_id: Option<Uuid>,
    /// Where the invite stands.
    pub status: InviteStatus,
    /// After this the invite can no longer be accepted (`invite prune` marks it expired).
    pub expires_at: Timestamp,
    /// Who created it (the actor, as in the audit trail).
    pub created_by: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was accepted.
    pub accepted_at: Option<Timestamp>,
    /// The user who accepted it.
    pub accepted_by_user_id: Option<Uuid>,
}

/// What erasing an invitee who is not a user removed (`gdpr request EMAIL|PHONE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InviteeErasure {
    /// Invites addressed to the passport, of every status.
    pub invites: u64,
    /// Queued notifications to the address (or about those invites).
    pub notifications: u64,
    /// Persons-to-be (the names given at invite time) that only those invites referred to.
    pub persons: u64,
}

from_row!(Invite, |r| Invite {
    id: get_id!(r, "id"),
    workspace_id: get_id!(r, "workspace_id"),
    workspace: r.try_get("workspace")?,
    role_id: get_id!(r, "role_id"),
    role: r.try_get("role")?,
    passport_kind: parse_enum(&r.try_get::<String, _>("passport_kind")?, "passport_kind")?,
    passport: r.try_get("passport_value")?,
    force_passport: r.try_get("force_passport")?,
    invitee_user_id: get_opt_id!(r, "invitee_user_id"),
    person_id: get_opt_id!(r, "person_id"),
    status: parse_enum(&r.try_get::<String, _>("status")?, "status")?,
    expires_at: r.try_get("expires_at")?,
    created_by: r.try_get("created_by")?,
    created_at: r.try_get("created_at")?,
    accepted_at: r.try_get("accepted_at")?,
    accepted_by_user_id: get_opt_id!(r, "accepted_by_user_id"),
});

pub(super) const INVITE_SELECT: &str = "SELECT i.*, w.name AS workspace, r.name AS role FROM invites i \
    JOIN workspaces w ON w.id = i.workspace_id JOIN roles r ON r.id = i.role_id";

/// The columns of a new invite.
#[derive(Debug, Clone)]
pub struct NewInvite {
    pub workspace_id: Uuid,
    pub role_id: Uuid,
    pub passport_kind: PassportKind,
    pub passport: String,
    pub force_passport: bool,
    pub invitee_user_id: Option<Uuid>,
    pub person_id: Option<Uuid>,
    pub token_hash: String,
    pub expires_at: Timestamp,
    pub created_by: String,
}

impl Tx {
    /// Inserts an invite; returns its id.
    pub(crate) async fn insert_invite(&mut self, new: &NewInvite, at: Timestamp) -> Result<Uuid> {
        let id = Uuid::now_v7();
        on_conn!(self, |c| sqlx::query(
            "INSERT INTO invites (id, workspace_id, role_id, passport_kind, passport_value, force_passport, \
             invitee_user_id, person_id, token_hash, status, expires_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12)"
        )
        .bind(DbId(id))
        .bind(DbId(new.workspace_id))
        .bind(DbId(new.role_id))
        .bind(new.passport_kind.as_str())
        .bind(&new.passport)
        .bind(new.force_passport)
        .bind(new.invitee_user_id.map(DbId))
        .bind(new.person_id.map(DbId))
        .bind(&new.token_hash)
        .bind(new.expires_at)
        .bind(&new.created_by)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(id)
    }

    /// One invite by id. Errors: [`Error::NotFound`].
    pub(crate) async fn invite(&mut self, id: Uuid) -> Result<Invite> {
        let sql = format!("{INVITE_SELECT} WHERE i.id = $1");
        let row = on_conn!(self, |c| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(DbId(id))
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.decode::<Invite>())
            .transpose()?);
        row.ok_or_else(|| Error::not_found("invite", id.to_string()))
    }

    /// The invite whose token hashes to `token_hash`, locked on PostgreSQL (`FOR UPDATE`) so
    /// two concurrent accepts of one token serialize; SQLite's write lock does the same.
    pub(crate) async fn invite_by_token_hash_locked(&mut self, token_hash: &str) -> Result<Option<Invite>> {
        let id: Option<DbId> = match self.backend() {
            Backend::Postgres => on_conn!(self, |c| sqlx::query_scalar(
                "SELECT id FROM invites WHERE token_hash = $1 FOR UPDATE"
            )
            .bind(token_hash)
            .fetch_optional(&mut *c)
            .await?),
            Backend::Sqlite => on_conn!(self, |c| sqlx::query_scalar(
                "SELECT id FROM invites WHERE token_hash = $1"
            )
            .bind(token_hash)
            .fetch_optional(&mut *c)
            .await?),
        };
        match id {
            Some(id) => Ok(Some(self.invite(id.0).await?)),
            None => Ok(None),
        }
    }

    /// Sets a pending invite's status (`revoked` or `expired`); returns whether it was pending.
    pub(crate) async fn close_invite(&mut self, id: Uuid, status: crate::domain::InviteStatus) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE invites SET status = $2 WHERE id = $1 AND status = 'pending'"
        )
        .bind(DbId(id))
        .bind(status.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Marks a pending invite accepted by `user_id`; returns whether it was pending.
    pub(crate) async fn accept_invite(&mut self, id: Uuid, user_id: Uuid, at: Timestamp) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE invites SET status = 'accepted', accepted_at = $3, accepted_by_user_id = $2, person_id = NULL \
             WHERE id = $1 AND status = 'pending'"
        )
        .bind(DbId(id))
        .bind(DbId(user_id))
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Replaces a pending invite's token and expiry (`invite resend`).
    pub(crate) async fn rotate_invite_token(
        &mut self,
        id: Uuid,
        token_hash: &str,
        expires_at: Timestamp,
    ) -> Result<bool> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE invites SET token_hash = $2, expires_at = $3 WHERE id = $1 AND status = 'pending'"
        )
        .bind(DbId(id))
        .bind(token_hash)
        .bind(expires_at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    /// Marks every pending invite past its expiry as `expired`; returns how many.
    pub(crate) async fn expire_invites(&mut self, at: Timestamp) -> Result<u64> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE invites SET status = 'expired' WHERE status = 'pending' AND expires_at <= $1"
        )
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n)
    }

    /// Queues a notification for the application's mailer.
    pub(crate) async fn insert_outbox(
        &mut self,
        kind: &str,
        recipient: &str,
        invite_id: Option<Uuid>,
        user_id: Option<Uuid>,
        payload: &serde_json::Value,
        at: Timestamp,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        let payload = payload.to_string();
        on_conn!(self, |c| {
            sqlx::query(
            "INSERT INTO notification_outbox (id, kind, recipient, invite_id, user_id, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(DbId(id))
        .bind(kind)
        .bind(recipient)
        .bind(invite_id.map(DbId))
        .bind(user_id.map(DbId))
        .bind(&payload)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        Ok(id)
    }

    /// Erases what the database holds about an invitee who is not a user: every invite
    /// addressed to the passport `(kind, value)` that no user holds (whatever its status), the
    /// persons-to-be (names given at invite time) those invites alone referred to, and every
    /// queued notification to that address. Returns what went, as counts.
    pub(crate) async fn erase_invitee(&mut self, kind: PassportKind, value: &str) -> Result<InviteeErasure> {
        let notifications = on_conn!(self, |c| sqlx::query(
            "DELETE FROM notification_outbox WHERE recipient = $1 \
             OR invite_id IN (SELECT id FROM invites WHERE passport_kind = $2 AND passport_value = $1)"
        )
        .bind(value)
        .bind(kind.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected());
        let persons: Vec<Option<DbId>> = on_conn!(self, |c| sqlx::query_scalar(
            "DELETE FROM invites WHERE passport_kind = $1 AND passport_value = $2 RETURNING person_id"
        )
        .bind(kind.as_str())
        .bind(value)
        .fetch_all(&mut *c)
        .await?);
        let invites = persons.len() as u64;
        let mut erased_persons = 0;
        for person in persons.into_iter().flatten() {
            erased_persons += on_conn!(self, |c| sqlx::query(
                "DELETE FROM persons WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM users WHERE person_id = $1) \
                 AND NOT EXISTS (SELECT 1 FROM invites WHERE person_id = $1)"
            )
            .bind(person)
            .execute(&mut *c)
            .await?
            .rows_affected());
        }
        Ok(InviteeErasure {
            invites,
            notifications,
            persons: erased_persons,
        })
    }

    /// The user owning a passport, if any.
    pub(crate) async fn user_id_by_passport(&mut self, kind: PassportKind, value: &str) -> Result<Option<Uuid>> {
        let id: Option<DbId> = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT user_id FROM passports WHERE kind = $1 AND value = $2"
        )
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(&mut *c)
        .await?);
        Ok(id.map(|d| d.0))
    }

    /// Stamps `verified_at` on a passport of `user_id` (accepting an invite proves control
    /// of it). A passport of that value owned by anyone else is left alone.
    pub(crate) async fn mark_passport_verified(
        &mut self,
        user_id: Uuid,
        kind: PassportKind,
        value: &str,
        at: Timestamp,
    ) -> Result<()> {
        on_conn!(self, |c| {
            sqlx::query(
            "UPDATE passports SET verified_at = $3 WHERE kind = $1 AND value = $2 AND user_id = $4 AND verified_at IS NULL"
        )
        .bind(kind.as_str())
        .bind(value)
        .bind(at)
        .bind(DbId(user_id))
        .execute(&mut *c)
        .await?
        .rows_affected()
        });
        Ok(())
    }
}
