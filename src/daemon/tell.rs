//! Telling people, the loop's side: the notices of an event (built by [`crate::notices`]), committed by
//! the steps in the same transaction as the event; and the delivery step, which hands due notices from the
//! ledger's outbox to the delivery workers ([`super::dispatch`]) and records what they answered.
//!
//! Must never: wait for a delivery, lose a notice (it leaves the outbox only when delivered or given up
//! after `notify.max_attempts`), or log a secret.

use super::{Daemon, say};
use crate::engine::notice::{self, AfterFailure, RETRY_CAP, RetryPolicy};
pub(super) use crate::notices::Fact;

pub(super) use crate::notices::{EndFacts, Queued};

/// How many due notices one cycle reads; the rest wait for the next cycle.
const BATCH: u32 = 64;

impl Daemon {
    /// The notices `kind` gets for `g` (nothing when `notify.events` does not list it); a meta file that
    /// names no usable owner is said.
    pub(super) fn notices_for(&mut self, f: Fact<'_>) -> Queued {
        let (q, problem) = crate::notices::queue(&self.cfg, &self.telling.email, f);
        if let Some(p) = problem {
            say::meta_refused(&self.cfg.watch.root.join(f.dir), &p);
        }
        q
    }

    /// The delivery step, which never waits for a delivery: records what the worker delivered or failed
    /// to deliver since the last cycle, and when it is idle hands it the due notices of the outbox, oldest
    /// first (see [`super::dispatch`]).
    pub(super) fn deliver_notices(&mut self) {
        self.record_deliveries();
        self.prune_delivered();
        let idle = self.telling.dispatch.idle_channels();
        if idle.is_empty() {
            return;
        }
        let wall = self.clock.wall();
        let due = match self.ledger.due_notices_on(&idle, wall, BATCH) {
            Ok(d) if d.is_empty() => return,
            Ok(d) => d,
            Err(e) => return self.ledger_failed("reading the outbox", &e),
        };
        self.telling
            .dispatch
            .hand_over(due, &self.cfg.notify, &self.telling.email);
        // Inline deliveries (tests) answered already.
        self.record_deliveries();
    }

    /// At most once an hour: notices delivered more than [`crate::ledger::DELIVERED_KEPT`] ago leave the
    /// outbox (a thousand at a time: a long-running daemon's backlog goes over a few hours, each step short).
    fn prune_delivered(&mut self) {
        let now = self.clock.mono();
        if now < self.telling.next_prune {
            return;
        }
        self.telling.next_prune = now + 3_600_000;
        let before = self.clock.wall() - crate::time::ms(crate::ledger::DELIVERED_KEPT);
        if let Err(e) = self.ledger.prune_delivered(before, 1000) {
            self.ledger_failed("pruning delivered notices", &e);
        }
    }

    pub(super) fn record_deliveries(&mut self) {
        let policy = RetryPolicy {
            base: self.cfg.notify.retry,
            max: RETRY_CAP,
            attempts: self.cfg.notify.max_attempts,
        };
        for a in self.telling.dispatch.answers() {
            let Some(result) = a.result else {
                continue;
            };
            let (n, label) = (&a.notice, &a.label);
            let (now, wall) = (self.clock.mono(), self.clock.wall());
            let latch = self.telling.outages.entry(a.latch_key.clone()).or_default();
            match result {
                Ok(()) => {
                    say::delivery_back(n.channel, label, latch.succeeded(now));
                    say::notice_sent(n, label);
                    self.observers.metrics.notice(n.channel.as_str(), "sent");
                    if let Err(e) = self.ledger.notice_sent(n.id, wall) {
                        return self.ledger_failed("recording a delivered notice", &e);
                    }
                }
                Err(err) => {
                    let edge = latch.failed(now);
                    let after = notice::after_failure(n.attempts + 1, wall, policy);
                    say::delivery_failed(n, label, &err, edge, after, wall);
                    let (retry_at, result) = match after {
                        AfterFailure::RetryAt(at) => (Some(at), "failed"),
                        AfterFailure::GiveUp => (None, "given_up"),
                    };
                    self.observers.metrics.notice(n.channel.as_str(), result);
                    let msg = crate::logging::error_chain(&err);
                    if let Err(e) = self.ledger.notice_failed(n.id, &msg, retry_at, wall) {
                        return self.ledger_failed("recording a failed delivery", &e);
                    }
                }
            }
        }
    }
}
