//! `accountctl user …`.

use crate::Error;
use crate::domain::{DeletionMode, ImportRowStatus, InstanceRole, parse_duration};
use crate::domain::{UserFilter, UserRef};
use crate::services::accounts::{Accounts, NewUser};

use super::Ctx;
use super::paging::{self, PageArgs};
use super::prompt::{PasswordArgs, confirm, confirm_typed};

/// Columns of `user list` in table form (JSON carries every field).
const LIST_COLUMNS: &[&str] = &[
    "id",
    "username",
    "email",
    "role",
    "is_external",
    "active",
    "last_login_at",
];

#[derive(Debug, clap::Subcommand)]
pub enum UserCmd {
    /// Create a user (internal by default). JSON: the user object plus `created` (and
    /// `password` with --random-password).
    Create(CreateArgs),
    /// List users (the trash is hidden unless --trashed), ordered by username; the paging
    /// cursor (--after) is a username.
    List(ListArgs),
    /// Show a user with passports, identities, memberships, home folder and live sessions.
    Show {
        /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
        user: String,
    },
    /// Delete a user: `admin` moves it to the trash (restorable), `gdpr` erases it.
    Delete {
        /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
        user: String,
        /// admin: to the trash, restorable until purge; gdpr: erase every personal row now.
        #[arg(long, value_enum)]
        mode: DeleteMode,
        /// With --mode admin: how long the user stays restorable (default 30d).
        #[arg(long, value_name = "DURATION", env = "ACCOUNTCTL_TRASH_RETENTION")]
        retention: Option<String>,
    },
    /// Bring a user back out of the trash.
    Restore {
        /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
        user: String,
    },
    /// Disable a user and revoke all of its sessions (logout reason account_disabled).
    Disable {
        /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
        user: String,
    },
    /// Enable a disabled user.
    Enable {
        /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
        user: String,
    },
    /// Set a user's password; revokes its sessions (logout reason password_changed).
    SetPassword {
        /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
        user: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Merge account B into account A in one transaction: passports, external identities,
    /// memberships, folder contents, person fields and invites move to A; B's sessions are
    /// revoked; B is deleted (a tombstone remains). Prints the plan first.
    Merge(MergeArgs),
    /// Import users from CSV or JSON Lines in batches. `-o json` prints one JSON object per
    /// row (JSON Lines: {line, username, status, id, error}); a table lists failed rows. Exit
    /// 5 when some rows failed.
    Import(ImportArgs),
    /// Export live users (the trash excluded) as CSV or JSON Lines with the columns `user
    /// import` reads, memberships included, streamed in pages of 1000: an export re-imports
    /// with the same result. Password hashes only with --with-password-hashes.
    Export(ExportArgs),
    /// Convert between external and internal. Making the user admin is a separate step.
    Convert {
        /// Username, email, phone (+…), id, or an id prefix of 8+ characters.
        user: String,
        /// The user signs in locally from now on; its home folder appears at next login.
        #[arg(long, conflicts_with = "to_external", required_unless_present = "to_external")]
        to_internal: bool,
        /// The user signs in only through its identity provider (refused for admins and
        /// users with storage in use; removes the password).
        #[arg(long)]
        to_external: bool,
    },
}

/// Options of `user import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The file to read, or `-` for stdin. Columns/keys: username, email, phone, given_name,
    /// family_name, external, provider, subject, role, memberships (Workspace:role;…),
    /// password (plaintext, hashed here) or password_hash (argon2 PHC or bcrypt $2b$).
    file: String,
    /// Input format; default from the file extension (.jsonl/.ndjson: jsonl, else csv).
    #[arg(long, value_enum)]
    format: Option<ImportFormat>,
    /// When the username exists: fail (row error), skip (re-runs are no-ops), update.
    #[arg(long, value_enum, default_value = "fail")]
    on_conflict: ConflictPolicy,
    /// Validate everything against the database; write nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// All rows or none: one transaction, rolled back if any row fails.
    #[arg(long)]
    atomic: bool,
    /// CSV field separator (one ASCII character, e.g. ';' or '\t' for a tab). Default: ','
    /// or, when the header has semicolons and no commas, ';'.
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
    delimiter: Option<u8>,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    batch_size: u32,
    /// The longest row (a line) read, in bytes; a longer one is an error row and its rest is
    /// skipped, so memory stays bounded whatever a line holds.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    max_row_bytes: u64,
}

/// Options of `user export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write to this file (created readable by its owner only; refused if it exists) or `-`
    /// for stdout (the default).
    #[arg(default_value = "-")]
    file: String,
    /// Output format; default from the file extension (.jsonl/.ndjson: jsonl, else csv).
    #[arg(long, value_enum)]
    format: Option<ImportFormat>,
    /// Include each user's stored password hash (column password_hash), so the users keep
    /// their passwords on import. The file then holds credentials: keep it like one.
    #[arg(long)]
    with_password_hashes: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ImportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ConflictPolicy {
    Fail,
    Skip,
    Update,
}

/// Options of `user merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The account that stays (A).
    #[arg(long, value_name = "USER")]
    keep: String,
    /// The account merged into A and then deleted (B).
    #[arg(long, value_name = "USER")]
    remove: String,
    /// Allow A to become admin because B is (never implied).
    #[arg(long)]
    grant_admin: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DeleteMode {
    /// To the trash: inactive, hidden, restorable until purge.
    Admin,
    /// GDPR erasure: every personal row goes; a tombstone remains.
    Gdpr,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// 2–64 letters, digits, '.', '_' or '-'; unique regardless of case.
    username: String,
    /// Email address (the primary email passport); must be unused.
    #[arg(long)]
    email: Option<String>,
    /// Phone number in E.164 form (+4915112345678).
    #[arg(long)]
    phone: Option<String>,
    /// Given (first) name of the person.
    #[arg(long)]
    given_name: Option<String>,
    /// Family (last) name of the person.
    #[arg(long)]
    family_name: Option<String>,
    /// An external (federated) user: no password, never admin, no home folder.
    #[arg(long, conflicts_with = "admin")]
    external: bool,
    /// Identity provider of the external user (with --subject).
    #[arg(long, requires = "external", requires = "subject")]
    provider: Option<String>,
    /// Subject (user id at the provider) of the external user.
    #[arg(long, requires = "provider")]
    subject: Option<String>,
    /// Make the user an instance admin.
    #[arg(long)]
    admin: bool,
    /// Add a membership in this workspace (with --role).
    #[arg(long, requires = "role")]
    workspace: Option<String>,
    /// The role of the membership in --workspace.
    #[arg(long, requires = "workspace")]
    role: Option<String>,
    /// Succeed (exit 0, existing id) when an identical user exists; exit 4 when a
    /// different one holds the username.
    #[arg(long)]
    if_not_exists: bool,
    /// Create the user without a password and without asking for one at a terminal (set it
    /// later with `user set-password`). Scripts without a terminal get this by default.
    #[arg(long, conflicts_with = "password_source", conflicts_with = "external")]
    no_password: bool,
    #[command(flatten)]
    password: PasswordArgs,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// External users only.
    #[arg(long, conflicts_with = "internal")]
    external: bool,
    /// Internal users only.
    #[arg(long)]
    internal: bool,
    /// Instance role: admin or user.
    #[arg(long)]
    role: Option<String>,
    /// Members of this workspace only (name or id).
    #[arg(long)]
    workspace: Option<String>,
    /// Case-insensitive prefix of the username or email.
    #[arg(long)]
    search: Option<String>,
    /// List the trash instead.
    #[arg(long)]
    trashed: bool,
    #[command(flatten)]
    page: PageArgs,
}

pub async fn exec(ctx: &Ctx, cmd: UserCmd) -> Result<(), Error> {
    let accounts = ctx.app.accounts();
    match cmd {
        UserCmd::Create(args) => create(ctx, &accounts, args).await,
        UserCmd::List(args) => list(ctx, &accounts, args).await,
        UserCmd::Show { user } => {
            let user_ref = ctx.user(&user).await?;
            let err = match accounts.show(&user_ref).await {
                Ok(details) => {
                    ctx.out.record(&details, "id");
                    return Ok(());
                }
                Err(e) => e,
            };
            // An id that no longer resolves may have a tombstone saying where it went.
            let (Error::NotFound { .. }, UserRef::Id(id)) = (&err, &user_ref) else {
                return Err(err);
            };
            let Some(tombstone) = accounts.tombstone(*id).await? else {
                return Err(err);
            };
            let on = tombstone.deleted_at.format("%Y-%m-%d");
            let key = match (&tombstone.merged_into, &tombstone.merged_into_username) {
                (Some(into), Some(name)) => format!("{id}: merged into {name} ({into}) on {on}"),
                (Some(into), None) => format!("{id}: merged into {into} on {on}"),
                _ => format!("{id}: erased on {on}"),
            };
            Err(Error::NotFound { what: "user", key })
        }
        UserCmd::Delete { user, mode, retention } => {
            let user_ref = ctx.user(&user).await?;
            let (mode, question) = match mode {
                DeleteMode::Admin => (DeletionMode::AdminDelete, format!("move user {user} to the trash")),
                DeleteMode::Gdpr => (
                    DeletionMode::GdprPurge,
                    format!("erase user {user} and all personal data"),
                ),
            };
            let accounts = match retention {
                Some(text) if mode == DeletionMode::AdminDelete => {
                    accounts.with_trash_retention(parse_duration(&text)?)
                }
                _ => accounts,
            };
            // What the rules can decide is decided before anyone is asked: a typo is "not
            // found" (exit 3) and the last admin a refusal (exit 4), not a prompt first.
            let target = accounts.check_delete(&user_ref, mode).await?;
            if mode == DeletionMode::GdprPurge {
                confirm_typed(ctx.yes, &question, &target.username)?;
            } else {
                confirm(ctx.yes, &question)?;
            }
            let deleted = accounts.delete(&user_ref, mode).await?;
            ctx.out.record(&deleted, "id");
            Ok(())
        }
        UserCmd::Merge(args) => merge(ctx, args).await,
        UserCmd::Import(args) => import(ctx, args).await,
        UserCmd::Export(args) => export(ctx, args).await,
        UserCmd::Restore { user } => {
            let restored = accounts.restore(&ctx.user(&user).await?).await?;
            if !restored.changed {
                note!("user {} is not in the trash: nothing changed", restored.user.username);
            }
            ctx.out.record(&restored, "id");
            Ok(())
        }
        UserCmd::Disable { user } => {
            let user_ref = ctx.user(&user).await?;
            accounts.show(&user_ref).await?;
            confirm(ctx.yes, &format!("disable user {user} and revoke its sessions"))?;
            let changed = accounts.disable(&user_ref).await?;
            ctx.out.record(&changed, "id");
            Ok(())
        }
        UserCmd::Enable { user } => {
            let changed = accounts.enable(&ctx.user(&user).await?).await?;
            ctx.out.record(&changed, "id");
            Ok(())
        }
        UserCmd::SetPassword { user, password } => {
            let user_ref = ctx.user(&user).await?;
            accounts.show(&user_ref).await?;
            let chosen = password
                .resolve(true, true)?
                .ok_or_else(|| Error::Invalid("no password given".into()))?;
            let shown = chosen.generated.then(|| chosen.secret.expose().to_owned());
            let changed = accounts.set_password(&user_ref, chosen.secret).await?;
            print_with_password(ctx, &changed, "id", shown);
            Ok(())
        }
        UserCmd::Convert {
            user,
            to_internal: _,
            to_external,
        } => {
            let changed = accounts.convert(&ctx.user(&user).await?, to_external).await?;
            if !changed.changed {
                note!(
                    "user {} is already {}: nothing changed",
                    changed.user.username,
                    if to_external { "external" } else { "internal" }
                );
            }
            ctx.out.record(&changed, "id");
            Ok(())
        }
    }
}

async fn create(ctx: &Ctx, accounts: &Accounts, args: CreateArgs) -> Result<(), Error> {
    // External users have no password; an internal user without a password option gets a
    // prompt on a terminal, and no password (set it later) in a script.
    let chosen = if args.external {
        if args.password.given() {
            return Err(Error::Invalid(
                "external users sign in through their identity provider and have no password".into(),
            ));
        }
        None
    } else if args.no_password {
        None
    } else {
        args.password.resolve(false, true)?
    };
    let shown = chosen
        .as_ref()
        .filter(|c| c.generated)
        .map(|c| c.secret.expose().to_owned());
    let without_password = chosen.is_none() && !args.external;
    let new = NewUser {
        username: args.username,
        email: args.email,
        phone: args.phone,
        given_name: args.given_name,
        family_name: args.family_name,
        external: args.external,
        identity: args.provider.zip(args.subject),
        admin: args.admin,
        membership: args.workspace.zip(args.role),
        password: chosen.map(|c| c.secret),
        person_id: None,
    };
    let created = accounts.create(new, args.if_not_exists).await?;
    super::warn_hook_failures(&created.hook_failures);
    if !created.created {
        note!(
            "user {} already exists with the same attributes: nothing changed",
            created.user.username
        );
    } else if without_password {
        note!(
            "user {} has no password: set one with `{} user set-password`",
            created.user.username,
            ctx.bin
        );
    }
    print_with_password(ctx, &created, "id", shown);
    Ok(())
}

/// Prints a result that may carry a generated password, shown exactly once: a `password`
/// field in JSON and tables, and a second line after the id with `-q`. `id` names the
/// result's id field (what `-q` prints first).
pub(super) fn print_with_password<T: serde::Serialize>(
    ctx: &Ctx,
    result: &T,
    id: &'static str,
    password: Option<String>,
) {
    #[derive(serde::Serialize)]
    struct WithPassword<'a, T> {
        #[serde(flatten)]
        result: &'a T,
        password: String,
    }
    match password {
        Some(password) if ctx.out.quiet => {
            ctx.out.record(result, id);
            ctx.out.record(&serde_json::json!({ "password": password }), "password");
        }
        Some(password) => ctx.out.record(&WithPassword { result, password }, id),
        None => ctx.out.record(result, id),
    }
}

async fn list(ctx: &Ctx, accounts: &Accounts, args: ListArgs) -> Result<(), Error> {
    let workspace_id = match &args.workspace {
        Some(w) => Some(ctx.app.workspace_id(w).await?),
        None => None,
    };
    let filter = UserFilter {
        external: if args.external {
            Some(true)
        } else if args.internal {
            Some(false)
        } else {
            None
        },
        role: args.role.as_deref().map(str::parse::<InstanceRole>).transpose()?,
        workspace_id,
        search: args.search,
        trashed: args.trashed,
        ..UserFilter::default()
    };
    let Some(workspace_id) = workspace_id else {
        return paging::print(
            &ctx.out,
            args.page,
            LIST_COLUMNS,
            "id",
            |u: &crate::domain::UserView| u.username.clone(),
            async |page| {
                let filter = UserFilter {
                    limit: page.limit,
                    after: page.after,
                    ..filter.clone()
                };
                accounts.list(&filter).await
            },
        )
        .await;
    };
    // In one workspace's list the role that matters is the one held there: `role` is the
    // workspace role (comma-separated when several) and `instance_role` the instance role.
    let reports = ctx.app.reports();
    paging::print(
        &ctx.out,
        args.page,
        LIST_COLUMNS,
        "id",
        |u: &serde_json::Value| {
            u.get("username")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        },
        async |page| {
            let filter = UserFilter {
                limit: page.limit,
                after: page.after,
                ..filter.clone()
            };
            let users = accounts.list(&filter).await?;
            let ids: Vec<uuid::Uuid> = users.iter().map(|u| u.id).collect();
            let roles = reports.workspace_roles(workspace_id, &ids).await?;
            Ok(users
                .into_iter()
                .map(|u| {
                    let held: Vec<&str> = roles
                        .iter()
                        .filter(|(id, _)| *id == u.id)
                        .map(|(_, r)| r.as_str())
                        .collect();
                    let mut value = serde_json::to_value(&u).unwrap_or_default();
                    if let serde_json::Value::Object(map) = &mut value {
                        let instance = map.get("role").cloned().unwrap_or_default();
                        map.insert("role".into(), held.join(",").into());
                        map.insert("instance_role".into(), instance);
                    }
                    value
                })
                .collect())
        },
    )
    .await
}

/// `user export`: page after page of users, each written as an import row, so memory holds
/// one page whatever the number of users.
async fn export(ctx: &Ctx, args: ExportArgs) -> Result<(), Error> {
    use std::io::Write;
    let jsonl = match args.format {
        Some(ImportFormat::Jsonl) => true,
        Some(ImportFormat::Csv) => false,
        None => args.file.ends_with(".jsonl") || args.file.ends_with(".ndjson"),
    };
    let columns: Vec<&str> = crate::services::import::COLUMNS
        .iter()
        .copied()
        // The plaintext is never stored; the hash only on request.
        .filter(|c| *c != "password" && (args.with_password_hashes || *c != "password_hash"))
        .collect();
    let mut file = if args.file == "-" {
        None
    } else {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let f = options.open(&args.file).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
                ": an export never overwrites a file; remove it or give another name (or `-` for stdout)"
            } else {
                ""
            };
            Error::Invalid(format!("cannot create {}: {e}{hint}", crate::domain::shown(&args.file)))
        })?;
        Some(std::io::BufWriter::new(f))
    };
    let mut write = |bytes: &[u8]| -> Result<(), Error> {
        match &mut file {
            Some(f) => f
                .write_all(bytes)
                .map_err(|e| Error::Internal(format!("cannot write {}: {e}", crate::domain::shown(&args.file)))),
            None => super::output::write_stdout(bytes),
        }
    };
    if !jsonl {
        write(csv_record(columns.iter().map(|c| (*c).to_owned())).as_bytes())?;
    }
    let reports = ctx.app.reports();
    let mut page = crate::domain::Page::first(super::paging::ALL_PAGE);
    let mut count = 0u64;
    loop {
        let users = reports.export(&page).await?;
        let mut text = String::new();
        for u in &users {
            if jsonl {
                text.push_str(&export_json(u, &columns));
                text.push('\n');
            } else {
                text.push_str(&export_csv(u, &columns));
            }
        }
        write(text.as_bytes())?;
        count += users.len() as u64;
        match users.last() {
            Some(last) if users.len() as i64 == page.limit => page.after = Some(last.username.clone()),
            _ => break,
        }
    }
    if let Some(f) = &mut file {
        f.flush()
            .map_err(|e| Error::Internal(format!("cannot write {}: {e}", crate::domain::shown(&args.file))))?;
    }
    if !ctx.out.quiet {
        note!("exported {count} users");
    }
    Ok(())
}

/// One exported user's value of an import column, as CSV text (before neutralising).
fn export_cell(u: &crate::domain::ExportedUser, column: &str) -> String {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    match column {
        "username" => u.username.clone(),
        "email" => text(&u.email),
        "phone" => text(&u.phone),
        "given_name" => text(&u.given_name),
        "family_name" => text(&u.family_name),
        "external" => u.is_external.to_string(),
        "provider" => text(&u.provider),
        "subject" => text(&u.subject),
        "role" => u.role.clone(),
        "memberships" => u
            .memberships
            .iter()
            .map(|(w, r)| format!("{w}:{r}"))
            .collect::<Vec<_>>()
            .join(";"),
        "password_hash" => text(&u.password_hash),
        _ => String::new(),
    }
}

/// One CSV line of an exported user, formula-leading cells neutralised (OWASP; `user import`
/// reads them back unchanged).
fn export_csv(u: &crate::domain::ExportedUser, columns: &[&str]) -> String {
    csv_record(
        columns
            .iter()
            .map(|c| super::output::neutralise_formula(&export_cell(u, c)).into_owned()),
    )
}

/// One JSON Lines object of an exported user: the import keys, memberships as an array of
/// `{workspace, role}`, `external` a boolean, absent values null.
fn export_json(u: &crate::domain::ExportedUser, columns: &[&str]) -> String {
    let mut object = serde_json::Map::new();
    for c in columns {
        let value = match *c {
            "external" => serde_json::Value::Bool(u.is_external),
            "memberships" => serde_json::Value::Array(
                u.memberships
                    .iter()
                    .map(|(w, r)| serde_json::json!({ "workspace": w, "role": r }))
                    .collect(),
            ),
            c => {
                let text = export_cell(u, c);
                if text.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(text)
                }
            }
        };
        object.insert((*c).to_owned(), value);
    }
    serde_json::Value::Object(object).to_string()
}

/// One CSV record (RFC 4180: quoted where needed), `\n`-terminated.
fn csv_record(cells: impl Iterator<Item = String>) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let cells: Vec<String> = cells.collect();
    let _ = writer.write_record(&cells);
    String::from_utf8_lossy(&writer.into_inner().unwrap_or_default()).into_owned()
}

/// `--delimiter`: one ASCII character; `\t` and `tab` mean a tab.
fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "\\t" | "tab" | "\t" => Ok(b'\t'),
        _ if text.len() == 1 && text.is_ascii() && text != "\"" && text != "\n" => Ok(text.as_bytes()[0]),
        _ => Err(format!("{text:?} is not one ASCII character (e.g. ';' or '\\t')")),
    }
}

async fn merge(ctx: &Ctx, args: MergeArgs) -> Result<(), Error> {
    use crate::services::merge::MergeOptions;
    let merger = ctx.app.merger();
    let (keep, remove) = (ctx.user(&args.keep).await?, ctx.user(&args.remove).await?);
    let options = MergeOptions {
        grant_admin: args.grant_admin,
        dry_run: true,
    };
    let planned = merger.merge(&keep, &remove, options).await?;
    if args.dry_run {
        ctx.out.record(&planned, "/keep/id");
        return Ok(());
    }
    if !ctx.out.quiet {
        for item in &planned.plan.items {
            note!("  {:<20} {:>8}  {}", item.kind, item.count, item.collisions.join("; "));
        }
        note!("  {:<20} {:>8}  revoked", "sessions", planned.plan.sessions_revoked);
    }
    let removed = ctx.app.accounts().show(&remove).await?;
    confirm_typed(
        ctx.yes,
        &format!("merge {} into {} and delete {}", args.remove, args.keep, args.remove),
        &removed.user.username,
    )?;
    let merged = merger
        .merge(
            &keep,
            &remove,
            MergeOptions {
                dry_run: false,
                ..options
            },
        )
        .await?;
    ctx.out.record(&merged, "/keep/id");
    Ok(())
}

async fn import(ctx: &Ctx, args: ImportArgs) -> Result<(), Error> {
    use crate::services::import::{self, Format, ImportOptions, ImportProgress, OnConflict};
    use std::io::{BufReader, IsTerminal, Write};

    let format = match args.format {
        Some(ImportFormat::Csv) => Format::Csv,
        Some(ImportFormat::Jsonl) => Format::Jsonl,
        None if args.file.ends_with(".jsonl") || args.file.ends_with(".ndjson") => Format::Jsonl,
        None => Format::Csv,
    };
    // Rows are read as the import consumes them: memory does not grow with the input.
    let input: Box<dyn std::io::BufRead + Send> = if args.file == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file =
            std::fs::File::open(&args.file).map_err(|e| Error::Invalid(format!("cannot open {}: {e}", args.file)))?;
        Box::new(BufReader::new(file))
    };
    let rows = import::rows_capped(input, format, args.delimiter, args.max_row_bytes as usize)?;
    let options = ImportOptions {
        on_conflict: match args.on_conflict {
            ConflictPolicy::Fail => OnConflict::Fail,
            ConflictPolicy::Skip => OnConflict::Skip,
            ConflictPolicy::Update => OnConflict::Update,
        },
        dry_run: args.dry_run,
        atomic: args.atomic,
        batch_size: args.batch_size as usize,
        progress: None,
    };
    let progress = std::sync::Arc::new(ImportProgress::default());
    let bar = std::io::stderr().is_terminal().then(|| {
        // The number of rows is known only at the end of the input.
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {pos} rows read and hashed, {msg} written, {elapsed}, {per_sec}",
        ) {
            bar.set_style(style);
        }
        bar.set_message("0");
        // Passwords are hashed before a batch is written, which takes seconds per thousand
        // rows: the bar follows the hashing row by row (the import's counters, read here
        // every 120 ms), not only the batches written.
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let ticker = {
            let (bar, progress) = (bar.clone(), progress.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(std::time::Duration::from_millis(120));
                loop {
                    every.tick().await;
                    bar.set_position(progress.prepared());
                    bar.set_message(progress.written().to_string());
                }
            })
        };
        (bar, ticker)
    });
    let options = ImportOptions {
        progress: bar.is_some().then(|| progress.clone()),
        ..options
    };
    let mut failures = Vec::new();
    let summary = ctx
        .app
        .importer()
        .import(rows, &options, |results| {
            let mut out = std::io::stdout().lock();
            for r in results {
                if ctx.out.quiet {
                    if let Some(id) =
                        r.id.filter(|_| !matches!(r.status, ImportRowStatus::Error | ImportRowStatus::RolledBack))
                    {
                        let _ = writeln!(out, "{id}");
                    }
                } else if ctx.out.format == super::output::Format::Json {
                    let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default());
                } else if r.status == ImportRowStatus::Error {
                    failures.push(r.clone());
                }
            }
        })
        .await;
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    let summary = summary?;
    if !ctx.out.quiet && ctx.out.format == super::output::Format::Table {
        if !failures.is_empty() {
            ctx.out.list(&failures, &["line", "username", "error"], "line");
        }
        ctx.out.record(&summary, "created");
    }
    note!(
        "{} rows: {} created, {} updated, {} skipped, {} failed{}",
        summary.rows,
        summary.created,
        summary.updated,
        summary.skipped,
        summary.failed,
        if summary.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    super::warn_hook_failures(&summary.hook_failures);
    if summary.failed > 0 {
        return Err(Error::Partial {
            failed: summary.failed as u64,
            total: summary.rows as u64,
        });
    }
    Ok(())
}
