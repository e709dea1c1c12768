//! Leadership on a shared ledger: the active daemon's heart (a thread with its own connection) renews its
//! lease every third of `behavior.lease_sec`, and the loop acts (submits, deletes, writes the failure log,
//! hands out notices) only while the lease has not run out by its own monotonic clock, counted from
//! *before* the last renewal that worked was sent — so it stops acting no later than the server lets a
//! standby take over. Its writes are fenced by the ledger besides ([`crate::ledger::lease`]). The standby's
//! wait ([`standby`]) is here too.
//!
//! Must never: act on a lease it could not renew past its end, or renew a lease it found taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::ledger::lease::Held;
use crate::ledger::{Ledger, LedgerAt};

use super::{Daemon, say};

/// The lease this daemon holds, kept alive by its heart: a thread with a connection of its own that
/// renews it every third of the lease, whatever the loop is doing (a burst of `sbatch` calls can take
/// longer than a lease). A paused process pauses its heart too, so the lease runs out and the standby
/// takes over; a loop that hangs is the watchdog's to end.
#[derive(Debug)]
pub(super) struct Lead {
    /// What it holds (holder, epoch).
    pub(super) held: Held,
    /// How long one renewal lasts.
    lease: Duration,
    /// The heart's clock's origin.
    born: Instant,
    /// When (ms after `born`) the last renewal that worked was sent.
    renewed: Arc<AtomicU64>,
    /// The heart found the lease taken by another.
    lost: Arc<AtomicBool>,
    /// Tells the heart to stop (dropped with the lead).
    _stop: crossbeam_channel::Sender<()>,
}

impl Lead {
    /// Starts the heart for a lease just claimed at `claimed` (when the claim was sent).
    pub(super) fn start(at: &LedgerAt, held: Held, lease: Duration, claimed: Instant) -> Lead {
        let born = claimed;
        let renewed = Arc::new(AtomicU64::new(0));
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let (at, h, r, l) = (at.clone(), held.clone(), renewed.clone(), lost.clone());
        std::thread::Builder::new()
            .name("lease".into())
            .spawn(move || heart(&at, h, lease, born, &r, &l, &stopped))
            .expect("a thread can be started");
        Lead {
            held,
            lease,
            born,
            renewed,
            lost,
            _stop: stop,
        }
    }

    /// Until when this daemon may act: the last renewal that worked, plus the lease, less a tenth of it
    /// for the time a renewal takes to reach the server and for the two clocks' rates.
    pub(super) fn until(&self) -> Instant {
        self.born + Duration::from_millis(self.renewed.load(Ordering::Acquire)) + self.lease
            - self.lease / 10
    }

    /// Whether the lease may still be this daemon's.
    pub(super) fn may_act(&self) -> bool {
        !self.lost.load(Ordering::Acquire) && Instant::now() < self.until()
    }
}

/// The heart: renews the lease every third of it on its own connection, until told to stop or the
/// lease is found to be another's. A failed renewal (the server away) is tried again at the next beat;
/// the loop stops acting once the lease would have run out ([`Lead::until`]).
fn heart(
    at: &LedgerAt,
    held: Held,
    lease: Duration,
    born: Instant,
    renewed: &AtomicU64,
    lost: &AtomicBool,
    stop: &crossbeam_channel::Receiver<()>,
) {
    let mut conn: Option<Ledger> = None;
    loop {
        if !matches!(
            stop.recv_timeout(lease / 3),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        ) {
            return;
        }
        let sent = born.elapsed();
        if conn.is_none() {
            conn = Ledger::open_read_only_at(at).ok().map(|mut l| {
                l.adopt_lease(held.clone());
                l
            });
        }
        let Some(l) = &mut conn else { continue };
        match l.renew_lease(lease) {
            Ok(true) => renewed.store(sent.as_millis() as u64, Ordering::Release),
            Ok(false) => {
                lost.store(true, Ordering::Release);
                return;
            }
            Err(_) => conn = None,
        }
    }
}

/// `instance@host`: who holds the lease, in `status`, the log and the lease row.
pub fn holder_name(instance: Option<&str>) -> String {
    let host = rustix_hostname();
    format!("{}@{host}", instance.unwrap_or("dirwatcher"))
}

fn rustix_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or truncates.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Daemon {
    /// At the start of a cycle: false when this daemon is no longer the active one (another took over,
    /// or the lease ran out while the server could not be reached): it must stop acting now.
    pub(super) fn keep_lease(&mut self) -> bool {
        let Some(lead) = &self.lead else {
            return true;
        };
        if lead.may_act() {
            return true;
        }
        let why = if lead.lost.load(Ordering::Acquire) {
            "another daemon took it over"
        } else {
            "it ran out before it could be renewed (this process was paused, or the server did not answer)"
        };
        say::deposed(self.ledger.path(), &lead.held, why);
        false
    }

    /// Whether this daemon may take an irreversible step now: it holds no lease (an SQLite ledger), or
    /// its lease has not run out by its own clock.
    pub(super) fn may_act(&self) -> bool {
        self.lead.as_ref().is_none_or(Lead::may_act)
    }

    /// A clean stop: the lease goes back at once, so the standby takes over at its next look.
    pub(super) fn hand_back_lease(&mut self) {
        if let Some(lead) = self.lead.take() {
            drop(lead);
            if let Err(e) = self.ledger.release_lease() {
                say::lease_not_handed_back(&e);
            }
        }
    }
}

/// Waits as standby until the shared ledger's lease is free (run out, or handed back): true then, false
/// when a stop was asked for first. Looks every third of the lease (at most every poll interval), so a
/// takeover comes within the lease and one look; tells systemd it is ready and alive meanwhile.
pub fn standby(
    cfg: &crate::config::Config,
    events: &crossbeam_channel::Receiver<super::Event>,
    ledger: &std::path::Path,
    lease: &crate::ledger::lease::LeaseInfo,
) -> bool {
    use crossbeam_channel::RecvTimeoutError;
    say::standby(ledger, lease, cfg.behavior.lease);
    let notifier = crate::notify::Notifier::from_env();
    let every = (cfg.behavior.lease / 3)
        .min(cfg.watch.poll_interval)
        .max(Duration::from_millis(100));
    let at = crate::ledger::LedgerAt::of(&cfg.behavior);
    let mut open: Option<crate::ledger::Ledger> = None;
    let mut holder = lease.holder.clone();
    let mut failing = false;
    loop {
        notifier.cycle_done(Some(&format!("standby: {holder} is the active daemon")));
        match events.recv_timeout(notifier.cap_wait(every)) {
            Ok(super::Event::Terminate) | Err(RecvTimeoutError::Disconnected) => return false,
            Ok(super::Event::Reload) | Err(RecvTimeoutError::Timeout) => {}
        }
        if open.is_none() {
            open = crate::ledger::Ledger::open_read_only_at(&at).ok();
        }
        let Some(l) = &open else { continue };
        match l.lease_info() {
            Ok(Some(info)) if info.is_held() => {
                failing = false;
                holder = info.holder;
            }
            Ok(_) => return true,
            Err(e) => {
                if !failing {
                    say::standby_cannot_look(&e);
                }
                failing = true;
                open = None;
            }
        }
    }
}
