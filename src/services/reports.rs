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
        let rows = self
            .db
            .read(async |tx| tx.audit_page(filter, after, page.limit).await)
            .await?;
        Ok(rows)
    }

    /// One audit event. Errors: [`Error::NotFound`].
    pub async fn audit_event(&self, id: i64) -> Result<AuditEvent> {
        let row = self.db.read(async |tx| tx.audit_event(id).await).await?;
        row.ok_or_else(|| Error::not_found("audit event", id.to_string()))
    }

    /// One page of live users (the trash excluded) by username, as an import row holds
    /// them; the cursor is the previous page's last username.
    pub async fn export(&self, page: &Page) -> Result<Vec<ExportedUser>> {
        let rows = self
            .db
            .read(async |tx| tx.export_page(page.after.as_deref(), page.limit).await)
            .await?;
        Ok(rows)
    }

    /// The roles each of `users` holds in `workspace_id`, as (user id, role name) pairs.
    pub async fn workspace_roles(
        &self,
        workspace_id: uuid::Uuid,
        users: &[uuid::Uuid],
    ) -> Result<Vec<(uuid::Uuid, String)>> {
        let rows = self
            .db
            .read(async |tx| tx.workspace_roles(workspace_id, users).await)
            .await?;
        Ok(rows)
    }

    /// Up to three names of `kind` (`workspace` or `role`) close to `key`: the same but for
    /// case, or within two edits (Levenshtein), closest first: what a not-found error
    /// suggests. Reads at most 10,000 names; other kinds have no suggestions.
    pub async fn close_names(&self, kind: &str, key: &str) -> Result<Vec<String>> {
        if !matches!(kind, "workspace" | "role") {
            return Ok(Vec::new());
        }
        let names = self
            .db
            .read(async |tx| tx.some_names(kind == "workspace", 10_000).await)
            .await?;
        let key = key.to_lowercase();
        let mut close: Vec<(usize, String)> = names
            .into_iter()
            .map(|name| (edit_distance(&key, &name.to_lowercase()), name))
            .filter(|(d, _)| *d <= 2)
            .collect();
        close.sort();
        close.dedup_by(|a, b| a.1 == b.1);
        Ok(close.into_iter().take(3).map(|(_, name)| name).collect())
    }
}

/// The Levenshtein distance of two strings, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb)).min(row[j] + 1).min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("acem", "acme"), 2);
        assert_eq!(edit_distance("editr", "editor"), 1);
        assert_eq!(edit_distance("acme", "acme"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
