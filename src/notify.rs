//! systemd's service notifications (`Type=notify`): `READY=1` once the ledger is open and the first scan is
//! done, a `STATUS=` line with the counts whenever they change, `WATCHDOG=1` pings from the poll loop when
//! the unit sets `WatchdogSec=`, `RELOADING=1` around a SIGHUP reload, and `STOPPING=1` on the way out.
//!
//! Owns: the notification socket protocol (through the `sd-notify` crate) and the watchdog rhythm. Must
//! never: block, fail the daemon, or do anything at all when `NOTIFY_SOCKET` is not set (not under
//! systemd, or a unit that is not `Type=notify`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::{debug, warn};

use crate::engine::Rejection;
use crate::ledger::Counts;
use crate::observe::{Call, CycleReport, Observer};
use crate::time::Millis;

/// Talks to the service manager; a cheap handle (clones share the watchdog rhythm). A no-op when the
/// daemon was not started by systemd with a notification socket.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// `None` when `NOTIFY_SOCKET` is not set: every call returns at once.
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// `WATCHDOG_USEC` (when meant for this process): pings are due at least every half of it.
    watchdog: Option<Duration>,
    /// What was sent so far.
    sent: Mutex<Sent>,
}

#[derive(Debug, Default)]
struct Sent {
    /// `READY=1` went out.
    ready: bool,
    /// The last `STATUS=` text, to send only changes.
    status: String,
    /// When the watchdog was last pinged.
    ping: Option<Instant>,
    /// A send failed and was reported (later failures are debug lines until one succeeds).
    failing: bool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (a watchdog meant for another process
    /// is ignored, as `sd_watchdog_enabled(3)` says).
    pub fn from_env() -> Notifier {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return Notifier::default();
        }
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
        if let Some(w) = watchdog {
            debug!(
                "systemd watchdog enabled: pinging at least every {:?}",
                w / 2
            );
        }
        Notifier {
            inner: Some(Arc::new(Inner {
                watchdog,
                sent: Mutex::new(Sent::default()),
            })),
        }
    }

    /// True when there is a service manager to talk to.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The longest the loop may wait before it must come round again: half the watchdog interval.
    pub fn cap_wait(&self, wait: Duration) -> Duration {
        match self.inner.as_ref().and_then(|i| i.watchdog) {
            Some(w) => wait.min(w / 2),
            None => wait,
        }
    }

    /// End of a cycle: `READY=1` the first time, `STATUS=` when `status` changed, and a watchdog ping.
    pub fn cycle_done(&self, status: Option<&str>) {
        let Some(inner) = &self.inner else { return };
        let mut sent = inner.sent.lock().unwrap_or_else(|p| p.into_inner());
        let mut msg: Vec<NotifyState<'_>> = Vec::new();
        if !sent.ready {
            msg.push(NotifyState::Ready);
        }
        let status = status.map(one_line);
        if let Some(s) = &status
            && *s != sent.status
        {
            msg.push(NotifyState::Status(s));
        }
        let ping = inner.ping_due(&sent);
        if ping {
            msg.push(NotifyState::Watchdog);
        }
        if msg.is_empty() {
            return;
        }
        if send(&mut sent, &msg) {
            sent.ready = true;
            if let Some(s) = status {
                sent.status = s;
            }
            if ping {
                sent.ping = Some(Instant::now());
            }
        }
    }

    /// A watchdog ping if one is due (a quarter of the interval has passed), for long steps inside a cycle
    /// (each scheduler call).
    pub fn watchdog(&self) {
        let Some(inner) = &self.inner else { return };
        let mut sent = inner.sent.lock().unwrap_or_else(|p| p.into_inner());
        if !inner.ping_due(&sent) {
            return;
        }
        if send(&mut sent, &[NotifyState::Watchdog]) {
            sent.ping = Some(Instant::now());
        }
    }

    /// Before a config reload (`Type=notify-reload` wants `RELOADING=1` with the monotonic time).
    pub fn reloading(&self) {
        let Some(inner) = &self.inner else { return };
        let mut sent = inner.sent.lock().unwrap_or_else(|p| p.into_inner());
        let mut msg = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            msg.push(now);
        }
        send(&mut sent, &msg);
    }

    /// After a config reload, whether it was taken or refused: ready again.
    pub fn reloaded(&self) {
        let Some(inner) = &self.inner else { return };
        let mut sent = inner.sent.lock().unwrap_or_else(|p| p.into_inner());
        if sent.ready {
            send(&mut sent, &[NotifyState::Ready]);
        }
    }

    /// On the way out.
    pub fn stopping(&self) {
        let Some(inner) = &self.inner else { return };
        let mut sent = inner.sent.lock().unwrap_or_else(|p| p.into_inner());
        send(&mut sent, &[NotifyState::Stopping]);
    }
}

/// systemd hears of a cycle's end (`READY=1`, `STATUS=`, a ping), of each scheduler call (a ping when one
/// is due: a long run of calls is progress, not a hang), of reloads and of the way out.
impl Observer for Notifier {
    fn called(&mut self, _call: Call, _took: Duration, _ok: bool) {
        self.watchdog();
    }

    fn reloading(&mut self) {
        Notifier::reloading(self);
    }

    /// Ready again after a reload, taken or refused (at start, before the first `READY=1`, nothing).
    fn config_taken(&mut self, _ok: bool, _wall: Millis) {
        self.reloaded();
    }

    fn cycle_done(&mut self, report: &CycleReport<'_>) {
        Notifier::cycle_done(self, report.status);
    }

    fn stalled(&mut self, why: &str) {
        Notifier::cycle_done(self, Some(why));
    }

    fn stopping(&mut self) {
        Notifier::stopping(self);
    }
}

impl Inner {
    /// A ping is due when the watchdog is on and a quarter of its interval has passed since the last one
    /// (the loop comes round at least every half, so a missed beat still leaves a margin).
    fn ping_due(&self, sent: &Sent) -> bool {
        self.watchdog
            .is_some_and(|w| sent.ping.is_none_or(|p| p.elapsed() >= w / 4))
    }
}

/// Sends one datagram; says once when the socket stops working and once when it works again.
fn send(sent: &mut Sent, msg: &[NotifyState<'_>]) -> bool {
    match sd_notify::notify(msg) {
        Ok(()) => {
            if sent.failing {
                sent.failing = false;
                debug!("systemd notifications work again");
            }
            true
        }
        Err(e) => {
            if !sent.failing {
                sent.failing = true;
                warn!(
                    "cannot notify systemd through NOTIFY_SOCKET: {e}; the service may be reported as not ready or be stopped by the watchdog"
                );
            } else {
                debug!("systemd notification failed again: {e}");
            }
            false
        }
    }
}

/// The `STATUS=` text: what `systemctl status dirwatcher` shows under the unit's name, in the words of
/// `dirwatcher status` and the metrics (settling, locked, submitting, in flight, completed, failed, lost;
/// locked and lost only when there are any).
pub fn status_line(root: &Path, settling: u64, locked: u64, counts: &Counts) -> String {
    let locked = match locked {
        0 => String::new(),
        n => format!(", {n} locked"),
    };
    let lost = match counts.lost {
        0 => String::new(),
        n => format!(", {n} lost (see `dirwatcher status`)"),
    };
    format!(
        "watching {}: {} settling{locked}, {} submitting, {} in flight, {} completed, {} failed{lost}",
        root.display(),
        settling,
        counts.submitting,
        counts.submitted,
        counts.completed,
        counts.failed
    )
}

/// The `STATUS=` text with the reason submissions are refused, if they are: `systemctl status` is where an
/// operator looks first.
pub fn with_refusal(line: String, refused: Option<Rejection>) -> String {
    match refused {
        Some(r) => format!(
            "{line}; submissions refused: {} (fix `{}`)",
            r.problem(),
            r.key()
        ),
        None => line,
    }
}

/// A notification is newline-separated `KEY=value` lines: a newline in a value (a hostile root path)
/// would forge another key.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_names_root_and_counts() {
        let c = Counts {
            submitting: 1,
            submitted: 3,
            completed: 120,
            failed: 2,
            lost: 0,
        };
        assert_eq!(
            status_line(Path::new("/data/incoming"), 2, 0, &c),
            "watching /data/incoming: 2 settling, 1 submitting, 3 in flight, 120 completed, 2 failed"
        );
        let lost = Counts { lost: 1, ..c };
        assert_eq!(
            status_line(Path::new("/d"), 0, 1, &lost),
            "watching /d: 0 settling, 1 locked, 1 submitting, 3 in flight, 120 completed, 2 failed, 1 lost (see `dirwatcher status`)"
        );
    }

    #[test]
    fn status_line_says_why_submissions_are_refused() {
        let line =
            "watching /data/incoming: 2 pending, 0 in flight, 0 completed, 0 failed".to_string();
        assert_eq!(with_refusal(line.clone(), None), line);
        assert_eq!(
            with_refusal(line.clone(), Some(Rejection::Account)),
            format!(
                "{line}; submissions refused: invalid account, or no association for this user (fix `job.account`)"
            )
        );
    }

    #[test]
    fn status_cannot_forge_another_key() {
        assert_eq!(one_line("a\nREADY=1"), "a?READY=1");
    }

    #[test]
    fn without_a_socket_nothing_is_capped() {
        let n = Notifier::default();
        assert!(!n.is_enabled());
        assert_eq!(
            n.cap_wait(Duration::from_secs(300)),
            Duration::from_secs(300)
        );
        n.cycle_done(Some("x"));
        n.stopping();
    }

    #[test]
    fn watchdog_caps_the_wait_at_half_its_interval() {
        let n = Notifier {
            inner: Some(Arc::new(Inner {
                watchdog: Some(Duration::from_secs(10)),
                sent: Mutex::new(Sent::default()),
            })),
        };
        assert_eq!(n.cap_wait(Duration::from_secs(300)), Duration::from_secs(5));
        assert_eq!(n.cap_wait(Duration::from_secs(1)), Duration::from_secs(1));
    }
}
