//! The example application's calendars: a lifecycle hook, a merge handler, migrations and a
//! personal-data declaration, wired into an [`AppBuilder`] by [`wire`].

use std::sync::Arc;

use accountctl::app::{AppBuilder, PersonalData};
use accountctl::db::{Database, Migration, Migrations, Tx};
use accountctl::domain::{DeletionMode, LogoutReason, User};
use accountctl::lifecycle::UserLifecycleHook;
use accountctl::services::merge::{MergeContext, MergeHandler, PlanItem};
use accountctl::{Error, Result};

/// Usernames with this prefix are on legal hold: they may not be deleted in any mode.
pub const LEGAL_HOLD_PREFIX: &str = "hold-";

/// The application's name in the database's registry: its first `migrate` claims the
/// database, and from then on only this application's binaries write to it.
pub const APPLICATION: &str = "calendar-example";

/// The application's wiring: its name, migrations, the `calendar` hook, the `calendars`
/// merge handler, the personal data of `app_calendars`, and a hook an earlier build had.
pub fn wire(builder: AppBuilder) -> AppBuilder {
    wire_without_calendar_hook(builder).hook_with(|db| Arc::new(CalendarHook { db: db.clone() }))
}

/// [`wire`] without the `calendar` hook: what a build that retires it starts from (it then
/// declares `.retired_hook("calendar")`).
pub fn wire_without_calendar_hook(builder: AppBuilder) -> AppBuilder {
    builder
        .application(APPLICATION)
        .migrations(migrations())
        .merge_handler(Arc::new(CalendarMergeHandler))
        .personal_data(personal_data())
        // An earlier build sent reminders through a `reminders` hook; this build dropped it.
        // Declaring the retirement is the only way to take it out of the registry: this
        // build's `migrate` removes it (audited as `registry.retired`), so binaries without
        // it may write again. No command removes a registered hook.
        .retired_hook("reminders")
}

/// The application's migrations, one list per backend (applied after accountctl's).
pub fn migrations() -> Migrations {
    Migrations::new(
        vec![Migration {
            version: 1,
            description: "calendars".into(),
            sql: include_str!("migrations/postgres/0001_calendars.sql").into(),
        }],
        vec![Migration {
            version: 1,
            description: "calendars".into(),
            sql: include_str!("migrations/sqlite/0001_calendars.sql").into(),
        }],
    )
}

/// A calendar's name is the user's own text: personal data (erased by a GDPR purge).
pub fn personal_data() -> PersonalData {
    PersonalData::table("app_calendars", "user_id").columns(&["name"])
}

/// Gives every internal user a `Default` calendar (at creation, and again at login if it is
/// missing, like the home folder), removes a user's calendars when the user is deleted, and
/// vetoes deleting a user on legal hold.
pub struct CalendarHook {
    db: Database,
}

impl CalendarHook {
    /// Creates the `Default` calendar unless the user has one (idempotent).
    async fn ensure_default(&self, user: &User) -> Result<()> {
        if user.is_external {
            return Ok(());
        }
        let mut tx = self.db.begin().await?;
        tx.execute(
            "INSERT INTO app_calendars (id, user_id, name) \
             SELECT $1, $2, 'Default' WHERE NOT EXISTS (SELECT 1 FROM app_calendars WHERE user_id = $2)",
            &[uuid::Uuid::now_v7().into(), user.id.into()],
        )
        .await?;
        tx.commit().await
    }
}

#[accountctl::async_trait]
impl UserLifecycleHook for CalendarHook {
    fn name(&self) -> &'static str {
        "calendar"
    }

    async fn on_user_created(&self, user: &User) -> Result<()> {
        self.ensure_default(user).await
    }

    async fn on_user_login(&self, user: &User) -> Result<()> {
        self.ensure_default(user).await
    }

    async fn on_user_logout(&self, _user: &User, _reason: LogoutReason) -> Result<()> {
        Ok(())
    }

    async fn on_user_deleted(&self, user: &User, mode: DeletionMode, tx: &mut Tx) -> Result<()> {
        if user.username.starts_with(LEGAL_HOLD_PREFIX) {
            // A policy decision: `Refused` is a veto (exit 4, nothing changed), not a failure.
            return Err(Error::Refused(format!("user {} is on legal hold", user.username)));
        }
        // Every mode: a merge moved B's calendars to A already; the trash and an erasure both
        // take them (a restored user gets a fresh Default at its next login).
        let removed = tx
            .execute("DELETE FROM app_calendars WHERE user_id = $1", &[user.id.into()])
            .await?;
        tracing::info!(user_id = %user.id, %mode, removed, "calendars removed");
        Ok(())
    }
}

/// Moves B's calendars to A; a calendar whose name A already uses is renamed
/// `NAME (from B)`.
pub struct CalendarMergeHandler;

const COLLIDING: &str = "SELECT b.name FROM app_calendars b WHERE b.user_id = $1 \
     AND EXISTS (SELECT 1 FROM app_calendars a WHERE a.user_id = $2 AND a.name = b.name) ORDER BY b.name";

#[accountctl::async_trait]
impl MergeHandler for CalendarMergeHandler {
    fn name(&self) -> &'static str {
        "calendars"
    }

    async fn plan(&self, ctx: &MergeContext, tx: &mut Tx) -> Result<Vec<PlanItem>> {
        let (a, b) = (ctx.keep.id, ctx.remove.id);
        let count: i64 = tx
            .fetch_one(
                "SELECT COUNT(*) AS n FROM app_calendars WHERE user_id = $1",
                &[b.into()],
            )
            .await?
            .get("n")?;
        let mut item = PlanItem::new(self.name(), "calendars", count);
        for row in tx.fetch_all(COLLIDING, &[b.into(), a.into()]).await? {
            let name: String = row.get("name")?;
            item = item.collision(format!(
                "calendar {name:?} exists in both: B's becomes \"{name} (from {})\"",
                ctx.remove.username
            ));
        }
        Ok(vec![item])
    }

    async fn merge(&self, ctx: &MergeContext, tx: &mut Tx) -> Result<()> {
        let (a, b) = (ctx.keep.id, ctx.remove.id);
        tx.execute(
            "UPDATE app_calendars SET name = name || ' (from ' || $3 || ')' WHERE user_id = $1 \
             AND name IN (SELECT name FROM app_calendars WHERE user_id = $2)",
            &[b.into(), a.into(), ctx.remove.username.clone().into()],
        )
        .await?;
        tx.execute(
            "UPDATE app_calendars SET user_id = $2 WHERE user_id = $1",
            &[b.into(), a.into()],
        )
        .await?;
        Ok(())
    }
}
