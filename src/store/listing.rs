//! Keyset pages of the listings other than users (workspaces, workspace types, roles, the
//! members of a workspace, invites, sessions), each ordered by an index so a page costs the
//! same however deep it is, and the lookup of ids by a unique prefix.

use uuid::Uuid;

use super::invites::{INVITE_SELECT, Invite};
use super::sessions::SESSION_COLUMNS;
use super::workspaces::{Member, ROLE_SELECT, Role, WORKSPACE_SELECT, Workspace, WorkspaceType, fold_name};
use super::{DbId, DbRow, Tx};
use crate::domain::{IdPrefix, Page, Session, Timestamp, UserRef};
use crate::error::{Error, Result};

/// How many candidates an ambiguous prefix lookup names at most.
const CANDIDATES: i64 = 5;

impl Tx {
    /// Workspaces by case-insensitive name (index `workspaces_name_folded_key`); the cursor
    /// is the previous page's last name.
    pub(crate) async fn workspaces_page(&mut self, page: &Page) -> Result<Vec<Workspace>> {
        let sql = match page.after {
            Some(_) => format!("{WORKSPACE_SELECT} WHERE w.name_folded > $1 ORDER BY w.name_folded LIMIT $2"),
            None => format!("{WORKSPACE_SELECT} ORDER BY w.name_folded LIMIT $1"),
        };
        let after = page.after.as_deref().map(fold_name);
        let rows = on_conn!(self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            if let Some(after) = &after {
                q = q.bind(after.clone());
            }
            q.bind(page.limit)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| r.decode::<Workspace>())
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Workspace types by slug (its unique index); the cursor is the previous page's last slug.
    pub(crate) async fn workspace_types_page(&mut self, page: &Page) -> Result<Vec<WorkspaceType>> {
        let sql = match page.after {
            Some(_) => "SELECT * FROM workspace_types WHERE slug > $1 ORDER BY slug LIMIT $2",
            None => "SELECT * FROM workspace_types ORDER BY slug LIMIT $1",
        };
        let rows = on_conn!(self, |c| {
            let mut q = sqlx::query(sql);
            if let Some(after) = &page.after {
                q = q.bind(after.clone());
            }
            q.bind(page.limit)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| r.decode::<WorkspaceType>())
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Roles of one workspace or of all, by workspace (oldest first) then case-insensitive
    /// name: the order of index `roles_name_ci_key`. The cursor is the previous page's last
    /// role id. Errors: [`Error::NotFound`] for a cursor that names no role.
    pub(crate) async fn roles_page(&mut self, workspace_id: Option<Uuid>, page: &Page) -> Result<Vec<Role>> {
        let cursor = match &page.after {
            Some(after) => {
                let id = self.resolve_id("roles", "role", after, None).await?;
                let key: Option<(DbId, String)> = on_conn!(self, |c| sqlx::query_as(
                    "SELECT workspace_id, lower(name) FROM roles WHERE id = $1"
                )
                .bind(DbId(id))
                .fetch_optional(&mut *c)
                .await?);
                Some(key.ok_or_else(|| Error::not_found("role", after.clone()))?)
            }
            None => None,
        };
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if workspace_id.is_some() {
            conditions.push(format!("r.workspace_id = {}", next()));
        }
        if cursor.is_some() {
            conditions.push(format!("(r.workspace_id, lower(r.name)) > ({}, {})", next(), next()));
        }
        let limit = next();
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!("{ROLE_SELECT}{filter} ORDER BY r.workspace_id, lower(r.name) LIMIT {limit}");
        let rows = on_conn!(self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            if let Some(ws) = workspace_id {
                q = q.bind(DbId(ws));
            }
            if let Some((ws, name)) = &cursor {
                q = q.bind(DbId(ws.0)).bind(name.clone());
            }
            q.bind(page.limit)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| r.decode::<Role>())
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// The memberships of a workspace by member username, then role name (case-insensitive),
    /// found through index `memberships_workspace_idx` and sorted per page (the cost grows
    /// with the workspace's membership, not the database). The cursor is `USERNAME/ROLE` of
    /// the previous page's last row (usernames and role names contain no `/`), or a
    /// username alone for the rows after all of that user's.
    pub(crate) async fn members_page(&mut self, workspace_id: Uuid, page: &Page) -> Result<Vec<Member>> {
        let cursor = page.after.as_deref().map(|after| match after.split_once('/') {
            Some((user, role)) => (user.to_owned(), Some(role.to_owned())),
            None => (after.to_owned(), None),
        });
        let keyset = match &cursor {
            None => "",
            Some((_, Some(_))) => " AND (lower(u.username), lower(r.name)) > (lower($2), lower($3))",
            Some((_, None)) => " AND lower(u.username) > lower($2)",
        };
        let limit = match &cursor {
            None => "$2",
            Some((_, Some(_))) => "$4",
            Some((_, None)) => "$3",
        };
        let sql = format!(
            "SELECT m.user_id, u.username, r.name AS role, m.created_at FROM memberships m \
             JOIN users u ON u.id = m.user_id JOIN roles r ON r.id = m.role_id \
             WHERE m.workspace_id = $1{keyset} ORDER BY lower(u.username), lower(r.name) LIMIT {limit}"
        );
        let rows = on_conn!(self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(DbId(workspace_id));
            if let Some((user, role)) = &cursor {
                q = q.bind(user.clone());
                if let Some(role) = role {
                    q = q.bind(role.clone());
                }
            }
            q.bind(page.limit)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| r.decode::<Member>())
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// Invites, newest first (index `invites_created_idx`, or `invites_workspace_created_idx`
    /// for one workspace), optionally of one status. The cursor is the previous page's last
    /// invite id. Errors: [`Error::NotFound`] for a cursor that names no invite.
    pub(crate) async fn invites_page(
        &mut self,
        workspace_id: Option<Uuid>,
        status: Option<&str>,
        page: &Page,
    ) -> Result<Vec<Invite>> {
        let cursor = match &page.after {
            Some(after) => {
                let id = self.resolve_id("invites", "invite", after, None).await?;
                let at: Option<Timestamp> = on_conn!(self, |c| sqlx::query_scalar(
                    "SELECT created_at FROM invites WHERE id = $1"
                )
                .bind(DbId(id))
                .fetch_optional(&mut *c)
                .await?);
                Some((at.ok_or_else(|| Error::not_found("invite", after.clone()))?, id))
            }
            None => None,
        };
        let mut conditions = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if workspace_id.is_some() {
            conditions.push(format!("i.workspace_id = {}", next()));
        }
        if status.is_some() {
            conditions.push(format!("i.status = {}", next()));
        }
        if cursor.is_some() {
            conditions.push(format!("(i.created_at, i.id) < ({}, {})", next(), next()));
        }
        let limit = next();
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!("{INVITE_SELECT}{filter} ORDER BY i.created_at DESC, i.id DESC LIMIT {limit}");
        let rows = on_conn!(self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            if let Some(ws) = workspace_id {
                q = q.bind(DbId(ws));
            }
            if let Some(status) = status {
                q = q.bind(status.to_owned());
            }
            if let Some((at, id)) = cursor {
                q = q.bind(at).bind(DbId(id));
            }
            q.bind(page.limit)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| r.decode::<Invite>())
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// A user's sessions, newest first (index `sessions_user_created_idx`). The cursor is
    /// the previous page's last session id. Errors: [`Error::NotFound`] for a cursor that
    /// names no session of the user.
    pub(crate) async fn sessions_page(&mut self, user_id: Uuid, page: &Page) -> Result<Vec<Session>> {
        let cursor = match &page.after {
            Some(after) => {
                let id = self
                    .resolve_id("sessions", "session", after, Some(("user_id", user_id)))
                    .await?;
                let at: Option<Timestamp> = on_conn!(self, |c| sqlx::query_scalar(
                    "SELECT created_at FROM sessions WHERE id = $1 AND user_id = $2"
                )
                .bind(DbId(id))
                .bind(DbId(user_id))
                .fetch_optional(&mut *c)
                .await?);
                Some((at.ok_or_else(|| Error::not_found("session", after.clone()))?, id))
            }
            None => None,
        };
        let sql = match cursor {
            Some(_) => format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND (created_at, id) < ($2, $3) \
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            None => format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
            ),
        };
        let rows = on_conn!(self, |c| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(DbId(user_id));
            if let Some((at, id)) = cursor {
                q = q.bind(at).bind(DbId(id));
            }
            q.bind(page.limit)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(|r| r.decode::<Session>())
                .collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    /// A `<user>` argument as typed: [`UserRef::parse`], then, for text that is both a
    /// possible username and an id prefix (8 or more hex digits, as tables show ids), the
    /// username when a user has it (trashed or not), else the one user whose id starts with
    /// it. Git's order: an exact name, then a whole id, then a prefix. A prefix that fits no
    /// id stays a username, so the error is the usual not found. Errors: as
    /// [`UserRef::parse`]; [`Error::Invalid`] naming the candidates when the prefix fits
    /// several users.
    pub(crate) async fn resolve_user_arg(&mut self, text: &str) -> Result<UserRef> {
        let parsed = UserRef::parse(text)?;
        let UserRef::Username(name) = &parsed else {
            return Ok(parsed);
        };
        let Some(prefix) = IdPrefix::parse(name) else {
            return Ok(parsed);
        };
        let ids = self.ids_with_prefix("users", &prefix, None).await?;
        if let Some(named) = self.find_user(&parsed, false).await? {
            let others: Vec<Uuid> = ids.into_iter().filter(|id| *id != named.id).collect();
            if others.is_empty() {
                return Ok(parsed);
            }
            return Err(crate::domain::name_or_id("user", name, named.id, &others));
        }
        match ids.as_slice() {
            [] => Ok(parsed),
            [one] => Ok(UserRef::Id(*one)),
            many => Err(crate::domain::ambiguous(
                "user",
                name,
                &many.iter().map(Uuid::to_string).collect::<Vec<_>>(),
            )),
        }
    }

    /// The ids of `table` (one of accountctl's tables, named by the caller) that start with
    /// `prefix`, in id order, at most [`CANDIDATES`] of them; `scope` restricts them to rows
    /// whose column equals a uuid. One range scan of the primary key.
    pub(crate) async fn ids_with_prefix(
        &mut self,
        table: &'static str,
        prefix: &IdPrefix,
        scope: Option<(&'static str, Uuid)>,
    ) -> Result<Vec<Uuid>> {
        let sql = match scope {
            Some((column, _)) => {
                format!(
                    "SELECT id FROM {table} WHERE id >= $1 AND id <= $2 AND {column} = $3 ORDER BY id LIMIT {CANDIDATES}"
                )
            }
            None => format!("SELECT id FROM {table} WHERE id >= $1 AND id <= $2 ORDER BY id LIMIT {CANDIDATES}"),
        };
        let ids: Vec<DbId> = on_conn!(self, |c| {
            let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(DbId(prefix.low))
                .bind(DbId(prefix.high));
            if let Some((_, value)) = scope {
                q = q.bind(DbId(value));
            }
            q.fetch_all(&mut *c).await?
        });
        Ok(ids.into_iter().map(|d| d.0).collect())
    }

    /// The id `text` names in `table`: a whole id as it is, or the one id that starts with
    /// the prefix `text` (see [`IdPrefix`]). Errors: [`Error::NotFound`] when no id starts
    /// with it or it is neither an id nor a prefix; [`Error::Invalid`] (exit 2) naming the
    /// candidates when several do.
    pub(crate) async fn resolve_id(
        &mut self,
        table: &'static str,
        what: &'static str,
        text: &str,
        scope: Option<(&'static str, Uuid)>,
    ) -> Result<Uuid> {
        if let Ok(id) = Uuid::parse_str(text.trim()) {
            return Ok(id);
        }
        let Some(prefix) = IdPrefix::parse(text) else {
            return Err(Error::not_found(what, text));
        };
        match self.ids_with_prefix(table, &prefix, scope).await?.as_slice() {
            [] => Err(Error::not_found(what, text)),
            [one] => Ok(*one),
            many => Err(crate::domain::ambiguous(
                what,
                text,
                &many.iter().map(Uuid::to_string).collect::<Vec<_>>(),
            )),
        }
    }
}
