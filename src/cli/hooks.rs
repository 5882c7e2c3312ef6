//! `accountctl hooks …`: the hook registry.

use serde::Serialize;

use super::Ctx;
use super::prompt::confirm;
use crate::Error;

#[derive(Debug, clap::Subcommand)]
pub enum HooksCmd {
    /// List the hooks this binary registers and the hooks the database records. A recorded
    /// hook this binary lacks is `missing`: the binary may read but not write.
    /// JSON: [{kind, name, registered, recorded}].
    List,
    /// Forget a recorded hook that the application retired on purpose, so binaries without
    /// it may write again. Allowed even while writes are refused.
    Forget {
        /// The hook's or merge handler's name.
        name: String,
        /// Which registry entry: a lifecycle hook or a merge handler.
        #[arg(long, value_parser = ["lifecycle", "merge"], default_value = "lifecycle")]
        kind: String,
    },
}

/// One row of `hooks list`.
#[derive(Debug, Serialize)]
struct HookRow {
    kind: String,
    name: String,
    /// This binary registers it.
    registered: bool,
    /// The database records it (a binary that lacks a recorded hook refuses to write).
    recorded: bool,
}

pub async fn exec(ctx: &Ctx, cmd: HooksCmd) -> Result<(), Error> {
    match cmd {
        HooksCmd::List => {
            let recorded = ctx.app.recorded_hooks().await?;
            let mut rows: Vec<HookRow> = ctx
                .app
                .hook_names()
                .into_iter()
                .map(|n| ("lifecycle", n))
                .chain(ctx.app.merge_handler_names().into_iter().map(|n| ("merge", n)))
                .map(|(kind, name)| HookRow {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    registered: true,
                    recorded: recorded.iter().any(|(k, n)| k == kind && n == name),
                })
                .collect();
            for (kind, name) in recorded {
                if !rows.iter().any(|r| r.kind == kind && r.name == name) {
                    rows.push(HookRow {
                        kind,
                        name,
                        registered: false,
                        recorded: true,
                    });
                }
            }
            ctx.out.list(&rows, &["kind", "name", "registered", "recorded"], "name");
        }
        HooksCmd::Forget { name, kind } => {
            confirm(
                ctx.yes,
                &format!("forget the {kind} hook {name:?} (binaries without it may then write)"),
            )?;
            if !ctx.app.forget_hook(&kind, &name).await? {
                return Err(Error::NotFound {
                    what: "recorded hook",
                    key: format!("{kind}:{name}"),
                });
            }
            #[derive(Serialize)]
            struct Forgotten {
                kind: String,
                name: String,
                forgotten: bool,
            }
            ctx.out.record(
                &Forgotten {
                    kind,
                    name,
                    forgotten: true,
                },
                "name",
            );
        }
    }
    Ok(())
}
