//! External (federated) identities: (provider, subject) pairs that sign a user in.

use serde::Serialize;
use uuid::Uuid;

use super::{DbId, DbRow, Tx, from_row, get_id};
use crate::domain::Timestamp;
use crate::error::Result;

/// One row of `external_identities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalIdentity {
    pub id: Uuid,
    pub user_id: Uuid,
    pub provider: String,
    pub subject: String,
    pub created_at: Timestamp,
    pub last_verified_at: Option<Timestamp>,
}

from_row!(ExternalIdentity, |r| ExternalIdentity {
    id: get_id!(r, "id"),
    user_id: get_id!(r, "user_id"),
    provider: r.try_get("provider")?,
    subject: r.try_get("subject")?,
    created_at: r.try_get("created_at")?,
    last_verified_at: r.try_get("last_verified_at")?,
});

impl Tx {
    /// Records an identity. Errors: [`crate::Error::Conflict`] when (provider, subject)
    /// already belongs to a user.
    pub(crate) async fn insert_external_identity(
        &mut self,
        user_id: Uuid,
        provider: &str,
        subject: &str,
        at: Timestamp,
    ) -> Result<Uuid> {
        let id = Uuid::now_v7();
        on_conn!(self, |c| sqlx::query(
            "INSERT INTO external_identities (id, user_id, provider, subject, created_at) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(DbId(id))
        .bind(DbId(user_id))
        .bind(provider)
        .bind(subject)
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(id)
    }

    /// The identities of a user.
    pub(crate) async fn external_identities_of(&mut self, user_id: Uuid) -> Result<Vec<ExternalIdentity>> {
        let rows = on_conn!(self, |c| sqlx::query(
            "SELECT * FROM external_identities WHERE user_id = $1 ORDER BY provider, subject"
        )
        .bind(DbId(user_id))
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| r.decode::<ExternalIdentity>())
        .collect::<Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// The user an external identity (provider, subject) belongs to, if any.
    pub(crate) async fn user_id_by_external_identity(&mut self, provider: &str, subject: &str) -> Result<Option<Uuid>> {
        let id: Option<DbId> = on_conn!(self, |c| sqlx::query_scalar(
            "SELECT user_id FROM external_identities WHERE provider = $1 AND subject = $2"
        )
        .bind(provider)
        .bind(subject)
        .fetch_optional(&mut *c)
        .await?);
        Ok(id.map(|d| d.0))
    }

    /// Stamps `last_verified_at` on every identity of the user (a successful sign-in proves
    /// them current; the GDPR sweeper can find stale ones).
    pub(crate) async fn touch_external_identities(&mut self, user_id: Uuid, at: Timestamp) -> Result<u64> {
        let n = on_conn!(self, |c| sqlx::query(
            "UPDATE external_identities SET last_verified_at = $2 WHERE user_id = $1"
        )
        .bind(DbId(user_id))
        .bind(at)
        .execute(&mut *c)
        .await?
        .rows_affected());
        Ok(n)
    }
}
