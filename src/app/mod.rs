//! The commands: one function per subcommand, from its parsed arguments to what it prints, and one
//! exit-code policy for them all ([`AppError::kind`] → [`ExitKind`]).
//!
//! Owns: the dispatch of subcommands ([`run`]), the config each command loads, the daemon's start with its
//! signal thread, the demo, and the words of every failure the command does not say itself. Must never:
//! parse the command line or set up logging (`main` does), decide what a command does (`ops`, `install`,
//! `daemon` do), or exit the process: it returns, `main` exits.

/// Prints to standard output, terminal-safe ([`crate::out::terminal_safe`]); a reader that went away ends
/// the output quietly (see [`crate::out`]).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($t)*);
        anyhow::Context::context(
            write!(crate::out::stdout(), "{}", crate::out::terminal_safe(&text)),
            "cannot write to standard output",
        )?
    }};
}

/// Prints JSON to standard output, its DEL and C1 controls escaped ([`crate::out::json_safe`]).
macro_rules! out_json {
    ($value:expr) => {{
        use std::io::Write as _;
        let text = serde_json::to_string_pretty($value)?;
        anyhow::Context::context(
            writeln!(crate::out::stdout(), "{}", crate::out::json_safe(&text)),
            "cannot write to standard output",
        )?
    }};
}

mod check;
mod demo;
mod error;
mod load;
mod operate;
mod progress;
mod serve;
mod signals;

pub use check::check_config;
pub use demo::demo;
pub use error::{AppError, ExitKind, exit_kind};
pub use operate::{StatusView, cancel, explain, forget, ledger, recover, retry, status};
pub use serve::run_watcher;

use crate::cli::Command;

/// Runs one subcommand to its end.
///
/// # Safety
/// Call it while no other thread of the process exists (as `main` does): `run` takes the secrets out of
/// the environment (see [`run_watcher`]).
pub unsafe fn run(cmd: Command) -> Result<(), AppError> {
    match cmd {
        Command::CheckConfig {
            config,
            slurm,
            quiet,
            secrets,
        } => check_config(&config, slurm, quiet, secrets),
        Command::Run {
            config,
            once,
            allow_root,
            dry_run,
            catch_up,
        } => {
            // SAFETY: this function's contract.
            unsafe { run_watcher(&config, once, allow_root, dry_run, catch_up) }
        }
        Command::Status {
            config,
            json,
            failures,
            state,
            since,
            parsable,
            format,
            dirs,
        } => {
            let q = crate::ops::StatusQuery {
                failures,
                states: state,
                since,
                dirs,
            };
            let view = StatusView {
                json,
                parsable,
                format,
            };
            status(&config, q, view)
        }
        Command::Explain { config, json, dirs } => explain(&config, json, &dirs),
        Command::Retry {
            config,
            dirs,
            all_failed,
            matching,
            state,
        } => retry(
            &config,
            &dirs,
            all_failed,
            matching.as_deref(),
            state.as_deref(),
        ),
        Command::Cancel {
            config,
            matching,
            dirs,
        } => cancel(&config, &dirs, matching.as_deref()),
        Command::Forget {
            config,
            matching,
            state,
            dirs,
        } => forget(&config, &dirs, matching.as_deref(), state.as_deref()),
        Command::Recover {
            config,
            from_slurm: _,
            since,
            dry_run,
        } => recover(&config, since.as_deref(), dry_run),
        Command::Ledger { cmd } => ledger(&cmd),
        Command::Demo { dir } => demo(&dir),
        Command::Install(args) => install(&args),
        Command::Uninstall(args) => uninstall(&args),
        Command::Generate(args) => Ok(crate::install::generate::generate(&args)?),
        Command::LocalJob { .. } => {
            unreachable!("`main` runs a local job before logging is set up")
        }
    }
}

/// `dirwatcher install`, with output on stdout (wrong flags: an [`install::UsageError`], status 2).
///
/// [`install::UsageError`]: crate::install::UsageError
pub fn install(args: &crate::cli::InstallArgs) -> Result<(), AppError> {
    Ok(crate::install::install(args, &mut crate::out::stdout())?)
}

/// `dirwatcher uninstall`, with output on stdout.
pub fn uninstall(args: &crate::cli::UninstallArgs) -> Result<(), AppError> {
    Ok(crate::install::uninstall(args, &mut crate::out::stdout())?)
}
