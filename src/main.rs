//! The `dirwatcher` binary: parses the command line, sets up logging, calls the library's `app` layer and
//! turns its result into the exit status (the one policy is `app::ExitKind`'s: 0 fine, 1 runtime error,
//! 2 bad config or usage).

use std::process::ExitCode;

use clap::Parser;

use dirwatcher::cli::{Cli, Command};
use dirwatcher::{app, logging, scheduler};

fn main() -> ExitCode {
    // systemd gives every process it starts SYSTEMD_EXEC_PID; dirwatcher never reads it, and left in the
    // environment it reaches every job through sbatch's default `--export=ALL` (issue 14, D3). The systemd
    // variables the daemon does use (NOTIFY_SOCKET, WATCHDOG_*, …) are kept out of its children instead.
    // SAFETY: the first statement of main, before any other thread exists.
    unsafe { std::env::remove_var("SYSTEMD_EXEC_PID") };
    let cli = Cli::parse();
    if let Command::LocalJob { dir } = &cli.command {
        // A job's own exit status, passed on as it is (no policy of ours).
        return ExitCode::from(scheduler::local::run_job(dir) as u8);
    }
    logging::init(cli.log_format, cli.verbose);
    // SAFETY: still the only thread (logging starts none); `app::run` needs that for `run`'s secrets.
    let result = unsafe { app::run(cli.command) };
    if let Err(e) = &result {
        e.report();
    }
    ExitCode::from(app::exit_kind(&result).code())
}
