//! Read-only reports for operators: the audit trail (`audit list`, `audit show`) and the
//! users as `user export` writes them. Each call is one read transaction; an export reads
//! page after page, so memory holds one page however many users there are.

use crate::domain::{AuditEvent, AuditFilter, ExportedUser, Page};
use crate::error::{Error, Result};
use crate::store::Database;

/// The reports; see [`crate::App::reports`].
#[derive(Clone)]
pub struct Reports {
    db: Database,
}

impl Reports {
    pub(crate) fn new(db: Database) -> Self {
        Self { db }
    }

    /// One page of audit events matching `filter`, newest first. The cursor
    /// ([`Page::after`]) is the previous page's last event id. Errors: [`Error::Invalid`]
    /// for a cursor that is not an event id.
    pub async fn audit(&self, filter: &AuditFilter, page: &Page) -> Result<Vec<AuditEvent>> {
        let after = page
            .after
            .as_deref()
            .map(|a| {
                a.trim()
                    .parse::<i64>()
                    .map_err(|_| Error::Invalid(format!("audit cursor {} is not an event id", crate::domain::shown(a))))
            })
            .transpose()?;
        let mut tx = self.db.begin_read().await?;
        let rows = tx.audit_page(filter, after, page.limit).await?;
        tx.end().await?;
        Ok(rows)
    }

    /// One audit event. Errors: [`Error::NotFound`].
    pub async fn audit_event(&self, id: i64) -> Result<AuditEvent> {
        let mut tx = self.db.begin_read().await?;
        let row = tx.audit_event(id).await?;
        tx.end().await?;
        row.ok_or_else(|| Error::not_found("audit event", id.to_string()))
    }

    /// One page of live users (the trash excluded) by username, as an import row holds
    /// them; the cursor is the previous page's last username.
    pub async fn export(&self, page: &Page) -> Result<Vec<ExportedUser>> {
        let mut tx = self.db.begin_read().await?;
        let rows = tx.export_page(page.after.as_deref(), page.limit).await?;
        tx.end().await?;
        Ok(rows)
    }

    /// The roles each of `users` holds in `workspace_id`, as (user id, role name) pairs.
    pub async fn workspace_roles(
        &self,
        workspace_id: uuid::Uuid,
        users: &[uuid::Uuid],
    ) -> Result<Vec<(uuid::Uuid, String)>> {
        let mut tx = self.db.begin_read().await?;
        let rows = tx.workspace_roles(workspace_id, users).await?;
        tx.end().await?;
        Ok(rows)
    }
}
