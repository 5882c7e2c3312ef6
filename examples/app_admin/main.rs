//! An application's own admin binary, built from accountctl's public API only: the whole
//! `accountctl` command line, firing the application's calendar hook and merge handler too.
//!
//! ```text
//! cargo run --example app_admin -- migrate
//! cargo run --example app_admin -- user create alice --email alice@example.com --random-password
//! cargo run --example app_admin -- user delete hold-x --mode gdpr --yes   # exit 4: legal hold
//! ```
//!
//! It takes every `accountctl` option (`DATABASE_URL` included). The plain `accountctl`
//! pointed at a database this binary migrated may read, but refuses to write (exit 6),
//! because it lacks the `calendar` hook the database records.

mod calendar;

fn main() -> std::process::ExitCode {
    // The binary is the application's: its version and description in --help, --version
    // and the man pages; its config file under its own name.
    let builder = accountctl::App::builder()
        .version("1.0.0-calendar")
        .about("Administer the calendar application's accounts.");
    accountctl::cli::run(calendar::wire(builder))
}
