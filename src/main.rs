//! `accountctl`: the admin CLI over the accountctl library. Parse, run, map the error to an
//! exit code; everything else lives in `cli/`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
