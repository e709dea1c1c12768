//! `dirwatcher run`: the daemon in the foreground (or its `--dry-run`), and the start shared with `demo`.
//!
//! Owns: the order of a start (config, root refusal, secrets out of the environment, the daemon, the
//! signal thread, the side task) and the run until a signal. Must never: decide what a start failure means
//! (that is [`AppError::kind`]) or start a thread before the secrets are out of the environment.

use crossbeam_channel::unbounded;

use crate::cli::ConfigFile;
use crate::config::Config;
use crate::daemon::{Daemon, Ended, Flow, StartError, StartOptions, standby};
use crate::logging;

use super::error::AppError;
use super::{load, signals};

/// `dirwatcher run`.
///
/// # Safety
/// Call it while no other thread of the process exists (as `main` does): it takes the secrets out of the
/// environment, which is only sound then.
pub unsafe fn run_watcher(
    config: &ConfigFile,
    once: bool,
    allow_root: bool,
    dry_run: bool,
    catch_up: bool,
) -> Result<(), AppError> {
    let cfg = load::load(config)?;
    if dry_run {
        for line in crate::ops::dry_run(&cfg)? {
            out!("{line}\n");
        }
        return Ok(());
    }
    if let Some(refusal) = crate::install::root_refusal(allow_root) {
        return Err(AppError::RootRefused(refusal));
    }
    // Read once, kept for reloads, gone from the environment: nothing this process does later
    // (a library, a child spawned past `process::child_env`) can find it there.
    // SAFETY: single-threaded still (this function's contract): logging (tracing-subscriber's fmt or
    // journald layer) and the config load spawn no thread and run no child; the daemon's threads
    // (dispatch, metrics, signals, child drains) all start after this line, in `run_daemon`.
    let taken = unsafe { crate::process::take_env_secrets() };
    run_daemon(cfg, once, catch_up, &taken, None)
}

/// Starts the daemon and runs it until a signal (or one cycle, `once`); `side_task` runs on its own thread
/// once the daemon has started. `taken`: the secret variables removed from the environment at start, said
/// once.
pub(super) fn run_daemon(
    cfg: Config,
    once: bool,
    catch_up: bool,
    taken: &[String],
    side_task: Option<Box<dyn FnOnce() + Send>>,
) -> Result<(), AppError> {
    let (tx, rx) = unbounded();
    // An instance's log lines carry its name (journald `INSTANCE=`, JSON `span.instance`); the plain
    // service's stay as they always were.
    let span = logging::instance_span(cfg.behavior.instance.as_ref().map(|n| n.as_str()));
    let _in_span = span.clone().entered();
    for name in taken {
        tracing::info!(
            "read the secret in the environment variable `{name}` and removed the variable from this \
             process's environment (the value is kept for reloads; no child ever gets it)"
        );
    }
    let opts = StartOptions {
        catch_up,
        ask_accounting: true,
    };
    let shared = cfg.behavior.ledger.is_some();
    let mut first = Some(Daemon::start(cfg.clone(), opts));
    signals::spawn(tx.clone(), span)?;
    let mut side_task = side_task;
    // The lease as last seen, once this daemon has waited as standby.
    let mut waited: Option<(std::path::PathBuf, crate::ledger::lease::LeaseInfo)> = None;
    loop {
        let started = first
            .take()
            .unwrap_or_else(|| Daemon::start(cfg.clone(), opts));
        let mut daemon = match started {
            Ok(d) => d,
            // Two login nodes, one ledger: this one waits until the other's lease is free, then starts.
            Err(StartError::Standby { ledger, lease }) if shared && !once => {
                let go_on = standby(&cfg, &rx, &ledger, &lease);
                waited = Some((ledger, lease));
                if go_on {
                    continue;
                }
                break;
            }
            // A takeover the server did not let through (it went away, a lock wait ran out): a standby
            // stays the standby and looks again, as it would have while waiting.
            Err(StartError::Ledger(e)) if waited.is_some() && !once => {
                tracing::warn!(
                    "could not take over the ledger: {}; waiting as standby again",
                    logging::error_chain(&e)
                );
                let (ledger, lease) = waited.as_ref().expect("checked above");
                if standby(&cfg, &rx, ledger, lease) {
                    continue;
                }
                break;
            }
            Err(e) => return Err(AppError::Start(e)),
        };
        if let Some(task) = side_task.take() {
            std::thread::spawn(task);
        }
        if once {
            let _: Flow = daemon.cycle(&rx);
            break;
        }
        match daemon.run(&rx) {
            Ended::Stopped => break,
            // Another daemon took over: this one lets go of everything and waits as standby.
            Ended::Deposed => drop(daemon),
        }
    }
    drop(tx);
    Ok(())
}
