//! `accountctl hooks …`: the hook registry.

use serde::Serialize;

use super::Ctx;
use crate::Error;
use crate::db::RegistryKind;

#[derive(Debug, clap::Subcommand)]
pub enum HooksCmd {
    /// List the database's application registry beside what this binary carries: lifecycle
    /// hooks, merge handlers and personal-data declarations. A recorded entry this binary
    /// lacks is `missing`: the binary may read but not write. Entries this binary retires
    /// are removed by its next `migrate`. No command removes an entry: an application
    /// retires one in its code (`AppBuilder::retired_hook`).
    /// Work the hooks still owe committed changes (a crash between a change and its hooks,
    /// a failing hook) follows on stderr, with `hooks replay` to complete it.
    /// JSON: [{kind, name, registered, recorded, retiring}].
    List,
    /// Complete the hook work committed changes still owe: the `on_user_created` hooks of
    /// users whose create or import was interrupted between its commit and its hooks, and of
    /// hooks that failed. Work that a running process owns is left to it. Idempotent (hooks
    /// are). `user create`, `user import`, `invite accept` and `gdpr purge` do this first on
    /// their own. Exits 0 when nothing is left owed, 5 when some work failed again.
    /// JSON: {completed, users, left, hook_failures}.
    Replay,
    /// List the hook work still owed, oldest first. JSON: [{id, event, user_ids, hook,
    /// recorded_at, attempts, last_error}].
    Owed,
}

/// One row of `hooks list`.
#[derive(Debug, Serialize)]
struct HookRow {
    kind: String,
    name: String,
    /// This binary registers it.
    registered: bool,
    /// The database records it (a binary that lacks a recorded entry refuses to write).
    recorded: bool,
    /// This binary retires it at its next `migrate`.
    retiring: bool,
}

pub async fn exec(ctx: &Ctx, cmd: HooksCmd) -> Result<(), Error> {
    match cmd {
        HooksCmd::List => {
            let recorded = ctx.app.recorded_hooks().await?;
            let retired = ctx.app.retired();
            let is_recorded = |kind: RegistryKind, name: &str| recorded.iter().any(|(k, n)| *k == kind && n == name);
            let mut rows: Vec<HookRow> = ctx
                .app
                .hook_names()
                .into_iter()
                .map(|n| (RegistryKind::Lifecycle, n))
                .chain(
                    ctx.app
                        .merge_handler_names()
                        .into_iter()
                        .map(|n| (RegistryKind::Merge, n)),
                )
                .chain(
                    ctx.app
                        .personal_data()
                        .iter()
                        .map(|d| (RegistryKind::PersonalData, d.table_name())),
                )
                .map(|(kind, name)| HookRow {
                    kind: kind.to_string(),
                    name: name.to_owned(),
                    registered: true,
                    recorded: is_recorded(kind, name),
                    retiring: false,
                })
                .collect();
            for (kind, name) in &recorded {
                if !rows.iter().any(|r| r.kind == kind.as_str() && r.name == *name) {
                    rows.push(HookRow {
                        kind: kind.to_string(),
                        name: name.clone(),
                        registered: false,
                        recorded: true,
                        retiring: retired.iter().any(|(k, n)| k == kind && n == name),
                    });
                }
            }
            ctx.out
                .list(&rows, &["kind", "name", "registered", "recorded", "retiring"], "name");
            if let Some(owner) = ctx.app.recorded_application().await? {
                note!("the database belongs to the application {owner:?}");
            }
            let owed = ctx.app.hook_work().owed().await?;
            if !owed.is_empty() {
                let users: usize = owed.iter().map(|w| w.user_ids.len()).sum();
                note!(
                    "hook work still owed: {} record(s) for {users} user(s); see `hooks owed`, complete it with `hooks replay`",
                    owed.len()
                );
            }
        }
        HooksCmd::Owed => {
            #[derive(Serialize)]
            struct OwedRow {
                id: uuid::Uuid,
                event: String,
                users: usize,
                hook: String,
                recorded_at: String,
                attempts: i64,
                last_error: String,
            }
            let owed = ctx.app.hook_work().owed().await?;
            if ctx.out.format == super::output::Format::Json {
                ctx.out.list(&owed, &[], "id");
            } else {
                let rows: Vec<OwedRow> = owed
                    .into_iter()
                    .map(|w| OwedRow {
                        id: w.id,
                        event: w.event,
                        users: w.user_ids.len(),
                        hook: w.hook.unwrap_or_else(|| "(all)".into()),
                        recorded_at: w.recorded_at.to_rfc3339(),
                        attempts: w.attempts,
                        last_error: w.last_error.unwrap_or_default(),
                    })
                    .collect();
                ctx.out.list(
                    &rows,
                    &["id", "event", "users", "hook", "recorded_at", "attempts", "last_error"],
                    "id",
                );
            }
        }
        HooksCmd::Replay => {
            ctx.app.ensure_schema_current().await?;
            ctx.app.ensure_writable().await?;
            let report = ctx.app.hook_work().replay().await?;
            super::warn_hook_failures(&report.hook_failures);
            note!(
                "hook work completed: {} record(s), {} user(s); {} left owed",
                report.completed, report.users, report.left
            );
            let failed = report.hook_failures.len() as u64;
            ctx.out.record(&report, "completed");
            if failed > 0 {
                return Err(Error::Partial {
                    failed,
                    total: report.completed + report.left,
                });
            }
        }
    }
    Ok(())
}
