//! Leadership on a shared ledger: the active daemon renews its lease every third of `behavior.lease_sec`
//! at the start of a cycle, and acts (submits, deletes, writes the failure log, hands out notices) only
//! while the lease has not run out by its own monotonic clock, counted from *before* the last renewal
//! was sent — so it stops acting no later than the server lets a standby take over. Its writes are fenced
//! by the ledger besides ([`crate::ledger::lease`]).
//!
//! Must never: act on a lease it could not renew past its end, or renew from anywhere but the cycle.

use std::time::Duration;

use crate::ledger::lease::Held;
use crate::time::Millis;

use super::{Daemon, say};

/// The lease this daemon holds.
#[derive(Debug, Clone)]
pub(super) struct Lead {
    /// What it holds (holder, epoch).
    pub(super) held: Held,
    /// How long one renewal lasts.
    pub(super) lease: Duration,
    /// When (monotonic) the last renewal that worked was sent.
    pub(super) renewed: Millis,
}

impl Lead {
    /// How often the lease is renewed: a third of it, so two renewals can fail before it runs out.
    pub(super) fn every(&self) -> Duration {
        self.lease / 3
    }

    /// Until when (monotonic) this daemon may act. A tenth of the lease is kept back for the time a
    /// renewal takes to reach the server and for the two clocks' rates.
    fn until(&self) -> Millis {
        let lease = self.lease.as_millis() as Millis;
        self.renewed + lease - lease / 10
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
    /// At the start of a cycle: renews the lease when a third of it has passed. False: this daemon is no
    /// longer the active one (another took over, or the lease ran out while the server could not be
    /// reached) and must stop acting now.
    pub(super) fn keep_lease(&mut self, now: Millis) -> bool {
        let Some(lead) = self.lead.clone() else {
            return true;
        };
        if now - lead.renewed < lead.every().as_millis() as Millis {
            return true;
        }
        let lease = lead.lease;
        match self.ledger.renew_lease(lease) {
            Ok(true) => {
                if let Some(l) = &mut self.lead {
                    l.renewed = now;
                }
                self.ledger_ok();
                true
            }
            Ok(false) => {
                say::deposed(self.ledger.path(), &lead.held, "another daemon took it over");
                false
            }
            Err(e) => {
                self.ledger_failed("renewing the lease", &e);
                if self.may_act() {
                    return true;
                }
                say::deposed(
                    self.ledger.path(),
                    &lead.held,
                    "it ran out while the server could not be reached",
                );
                false
            }
        }
    }

    /// Whether this daemon may take an irreversible step now: it holds no lease (an SQLite ledger), or
    /// its lease has not run out by its own clock.
    pub(super) fn may_act(&self) -> bool {
        self.lead
            .as_ref()
            .is_none_or(|l| self.clock.mono() < l.until())
    }

    /// The longest the loop may sleep: until the next renewal is due.
    pub(super) fn cap_for_lease(&self, wait: Duration) -> Duration {
        match &self.lead {
            Some(l) => {
                let next = l.renewed + l.every().as_millis() as Millis - self.clock.mono();
                wait.min(Duration::from_millis(u64::try_from(next).unwrap_or(0)))
            }
            None => wait,
        }
    }

    /// A clean stop: the lease goes back at once, so the standby takes over at its next look.
    pub(super) fn hand_back_lease(&mut self) {
        if self.lead.take().is_some()
            && let Err(e) = self.ledger.release_lease()
        {
            say::lease_not_handed_back(&e);
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
    let at = cfg.behavior.ledger_at();
    let mut open: Option<crate::ledger::Ledger> = None;
    let mut holder = lease.holder.clone();
    let mut failing = false;
    loop {
        notifier.cycle_done(Some(&format!(
            "standby: {holder} is the active daemon"
        )));
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
