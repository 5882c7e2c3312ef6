//! `accountctl workspace …` and `accountctl workspace-type …`.

use crate::Error;
use crate::domain::parse_capabilities;

use super::Ctx;
use super::paging::{self, PageArgs};
use super::prompt::confirm;

const LIST_COLUMNS: &[&str] = &["id", "name", "type_slug", "parent", "is_root", "members"];
const TYPE_COLUMNS: &[&str] = &["id", "slug", "title", "capabilities"];
const MEMBER_COLUMNS: &[&str] = &["user_id", "username", "role", "since"];

/// Memberships `workspace show` lists unless --members-limit says otherwise.
const SHOW_MEMBERS: i64 = 20;

#[derive(Debug, clap::Subcommand)]
pub enum WorkspaceCmd {
    /// Create a workspace of a type, optionally under a parent workspace.
    Create {
        /// The workspace's name, unique among its siblings.
        name: String,
        /// The workspace type's slug.
        #[arg(long = "type", value_name = "SLUG")]
        kind: String,
        /// Parent workspace (name or id).
        #[arg(long)]
        parent: Option<String>,
        /// Exit 0 with the existing workspace when an identical one exists (4 if different).
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List workspaces by name (case-insensitive); the paging cursor (--after) is a name.
    List(PageArgs),
    /// Show a workspace with its roles and its first memberships by username (20 unless
    /// --members-limit says otherwise). When there are more, stderr names the
    /// `workspace members` command that pages through the rest.
    Show {
        /// Workspace name or id.
        workspace: String,
        /// How many memberships to list (0–10000); `members` counts them all.
        #[arg(long, value_name = "N", default_value_t = SHOW_MEMBERS, value_parser = clap::value_parser!(i64).range(0..=10_000))]
        members_limit: i64,
    },
    /// List the memberships of a workspace (a member with two roles has two rows), by
    /// username then role; the paging cursor (--after) is USERNAME/ROLE.
    Members {
        /// Workspace name or id.
        workspace: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Delete a workspace with its roles, memberships and invites (never the root).
    Delete {
        /// Workspace name or id.
        workspace: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum WorkspaceTypeCmd {
    /// Create a workspace type (what public sign-up creates workspaces of).
    Create {
        /// Lower-case letters, digits, '_' and '-'.
        slug: String,
        /// Human-readable name, e.g. "Team".
        #[arg(long)]
        title: String,
        /// Comma-separated capability template, e.g. docs.read,docs.*
        #[arg(long, default_value = "")]
        capabilities: String,
        /// Exit 0 with the existing type when an identical one exists (4 if different).
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List workspace types by slug; the paging cursor (--after) is a slug.
    List(PageArgs),
}

pub async fn exec(ctx: &Ctx, cmd: WorkspaceCmd) -> Result<(), Error> {
    let workspaces = ctx.app.workspaces();
    match cmd {
        WorkspaceCmd::Create {
            name,
            kind,
            parent,
            if_not_exists,
        } => {
            let created = workspaces
                .create(&name, &kind, parent.as_deref(), if_not_exists)
                .await?;
            ctx.out.record(&created, "id");
        }
        WorkspaceCmd::List(page) => {
            paging::print(
                &ctx.out,
                page,
                LIST_COLUMNS,
                "id",
                |w: &crate::domain::Workspace| w.name.clone(),
                async |page| workspaces.list(&page).await,
            )
            .await?;
        }
        WorkspaceCmd::Show {
            workspace,
            members_limit,
        } => {
            // One membership more than shown says whether any follow.
            let mut details = workspaces.show_with(&workspace, members_limit + 1).await?;
            let more = details.member_list.len() as i64 > members_limit;
            details
                .member_list
                .truncate(usize::try_from(members_limit).unwrap_or(usize::MAX));
            ctx.out.record(&details, "id");
            if more {
                let rest = match details.member_list.last() {
                    Some(last) => format!(" --after {}", paging::shell_word(&last.cursor())),
                    None => String::new(),
                };
                note!(
                    "more memberships follow ({} members in all); the rest: {} workspace members {}{rest} (or --all)",
                    details.workspace.members,
                    ctx.bin,
                    paging::shell_word(&details.workspace.name),
                );
            }
        }
        WorkspaceCmd::Members { workspace, page } => {
            paging::print(
                &ctx.out,
                page,
                MEMBER_COLUMNS,
                "user_id",
                crate::domain::Member::cursor,
                async |page| workspaces.members(&workspace, &page).await,
            )
            .await?;
        }
        WorkspaceCmd::Delete { workspace } => {
            let details = workspaces.show_with(&workspace, 0).await?;
            let members: i64 = details.roles.iter().map(|r| r.members).sum();
            let question = if members > 0 {
                format!(
                    "delete workspace {} with its {} role(s) and {members} membership(s)",
                    details.workspace.name,
                    details.roles.len()
                )
            } else {
                format!(
                    "delete workspace {} with its {} role(s)",
                    details.workspace.name,
                    details.roles.len()
                )
            };
            confirm(ctx.yes, &question)?;
            ctx.out.record(&workspaces.delete(&workspace).await?, "id");
        }
    }
    Ok(())
}

pub async fn exec_type(ctx: &Ctx, cmd: WorkspaceTypeCmd) -> Result<(), Error> {
    let workspaces = ctx.app.workspaces();
    match cmd {
        WorkspaceTypeCmd::Create {
            slug,
            title,
            capabilities,
            if_not_exists,
        } => {
            let created = workspaces
                .create_type(&slug, &title, &parse_capabilities(&capabilities)?, if_not_exists)
                .await?;
            ctx.out.record(&created, "id");
        }
        WorkspaceTypeCmd::List(page) => {
            paging::print(
                &ctx.out,
                page,
                TYPE_COLUMNS,
                "id",
                |t: &crate::domain::WorkspaceType| t.slug.clone(),
                async |page| workspaces.types(&page).await,
            )
            .await?;
        }
    }
    Ok(())
}
