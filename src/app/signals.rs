//! The signal thread: SIGTERM and SIGINT become [`Event::Terminate`], SIGHUP [`Event::Reload`], sent to the
//! daemon's channel.
//!
//! Owns: the signal handlers of a running daemon and the one log line of a stop request. Must never: act on
//! a signal itself (the daemon finishes its step and decides), or outlive the daemon's channel.

use anyhow::Context;
use crossbeam_channel::Sender;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::daemon::Event;

/// Installs the handlers and starts the thread that forwards signals to `tx`; its log lines are in `span`.
pub(super) fn spawn(tx: Sender<Event>, span: tracing::Span) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("cannot install signal handlers")?;
    std::thread::spawn(move || {
        let _in_span = span.entered();
        for s in signals.forever() {
            let ev = if s == SIGHUP {
                Event::Reload
            } else {
                Event::Terminate
            };
            if ev == Event::Terminate {
                tracing::info!(
                    "received {}: finishing the current step, then exiting",
                    if s == SIGINT { "SIGINT" } else { "SIGTERM" }
                );
            }
            // The daemon is gone: nobody is left to tell.
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    Ok(())
}
