//! `accountctl`: the admin CLI with the shipped lifecycle hooks only. An application builds
//! its own admin binary the same way, passing a builder with its hooks to
//! [`accountctl::cli::run`].
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

fn main() -> std::process::ExitCode {
    accountctl::cli::run(accountctl::App::builder())
}
