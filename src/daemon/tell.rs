//! Telling people, the loop's side: the notices of an event (built by [`crate::notices`]), committed by
//! the steps in the same transaction as the event; and the delivery step, which hands due notices from the
//! ledger's outbox to the delivery workers ([`super::dispatch`]) and records what they answered.
//!
//! Must never: wait for a delivery, lose a notice (it leaves the outbox only when delivered or given up
//! after `notify.max_attempts`), or log a secret.

use super::{Daemon, say};
use crate::engine::notice::{self, AfterFailure, Channel, RETRY_CAP, RetryPolicy};
pub(super) use crate::notices::Fact;
use crate::observe::Observer;

pub(super) use crate::notices::{EndFacts, Queued};

/// How many due notices one cycle reads; the rest wait for the next cycle.
const BATCH: u32 = 64;

/// How many unknown database rows are said one by one at start.
const SYNC_SAID: usize = 20;

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
        self.check_db_sync();
        self.record_deliveries();
        self.prune_delivered();
        let idle = self.telling.dispatch.idle_channels();
        if idle.is_empty() || !self.may_act() {
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

    /// With a `db:` section: reads the web application's active rows once, beside the loop (the database
    /// may be slow or down; the loop never waits for it), as the original's `sync_active_from_db` did.
    pub(super) fn start_db_sync(&mut self) {
        let Some(db) = self.cfg.notify.db.clone() else {
            return;
        };
        let timeout = self.cfg.notify.timeout;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let span = tracing::Span::current();
        let started = std::thread::Builder::new()
            .name("db-sync".into())
            .spawn(move || {
                let _in_span = span.entered();
                let _ = tx.send(crate::bridge::active_rows(&db, timeout));
            });
        if started.is_ok() {
            self.telling.db_sync = Some(rx);
        }
    }

    /// What the start-up read of the database found, once it is there: its active rows that the ledger
    /// does not know are said, one by one (the first [`SYNC_SAID`]), then how many in all.
    fn check_db_sync(&mut self) {
        let Some(rx) = &self.telling.db_sync else {
            return;
        };
        let got = match rx.try_recv() {
            Ok(got) => got,
            Err(crossbeam_channel::TryRecvError::Empty) => return,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                self.telling.db_sync = None;
                return;
            }
        };
        self.telling.db_sync = None;
        let rows = match got {
            Ok(rows) => rows,
            Err(e) => return say::db_sync_failed(&e),
        };
        let mut unknown = 0usize;
        for r in &rows {
            if self.ledger_knows(r) {
                continue;
            }
            unknown += 1;
            if unknown <= SYNC_SAID {
                say::db_row_unknown(r);
            }
        }
        say::db_synced(rows.len(), unknown);
    }

    /// The ledger has a record of `r`: its directory is in this root, and (when the row has a job id) one
    /// of the directory's generations ran that job.
    fn ledger_knows(&self, r: &crate::bridge::ActiveRow) -> bool {
        let Ok(rel) = std::path::Path::new(&r.dir).strip_prefix(&self.cfg.watch.root) else {
            return false;
        };
        let Some(name) = rel.to_str().filter(|n| !n.is_empty() && !n.contains('/')) else {
            return false;
        };
        match self.ledger.history(std::ffi::OsStr::new(name)) {
            Ok(h) => match &r.job_id {
                Some(j) => h.iter().any(|g| g.job_id.as_deref() == Some(j.as_str())),
                None => !h.is_empty(),
            },
            // Unreadable now: not said to be unknown.
            Err(_) => true,
        }
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
            // The database's rows are retried until it takes them, while there is one: a `db:` section
            // removed since they were queued leaves them nowhere to go, given up at once (else each
            // would wait out every attempt, in order, behind the one before).
            let policy = match n.channel {
                Channel::Database if self.cfg.notify.db.is_some() => RetryPolicy {
                    attempts: u32::MAX,
                    ..policy
                },
                Channel::Database => RetryPolicy {
                    attempts: 1,
                    ..policy
                },
                _ => policy,
            };
            let (now, wall) = (self.clock.mono(), self.clock.wall());
            let latch = self.telling.outages.entry(a.latch_key.clone()).or_default();
            match result {
                Ok(()) => {
                    say::delivery_back(n.channel, label, latch.succeeded(now));
                    say::notice_sent(n, label);
                    self.observers.notice(n.channel.as_str(), "sent");
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
                    self.observers.notice(n.channel.as_str(), result);
                    let msg = crate::logging::error_chain(&err);
                    if let Err(e) = self.ledger.notice_failed(n.id, &msg, retry_at, wall) {
                        return self.ledger_failed("recording a failed delivery", &e);
                    }
                }
            }
        }
    }
}
