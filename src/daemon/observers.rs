//! Those who watch the loop from the side, and how the loop tells them: the daemon calls the scheduler
//! itself, times the call ([`Observers::timed`]), and tells every [`Observer`] what happened; at the end of
//! a cycle it tells them the counts and writes the snapshot for `status` and `explain`.
//!
//! Owns: the list of observers and the snapshot's publication. Must never: let an observer change what
//! the loop does, or fail a cycle because an observer could not do its part.

use std::fmt;
use std::time::{Duration, Instant};

use super::say;
use crate::engine::{GenState, Rejection, Sightings, TrackedJob};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::observe::{Call, CycleReport, Observer};
use crate::scheduler::Scheduler;
use crate::snapshot::{SeenJobs, Snapshot};
use crate::time::Millis;

/// Who watches from the side: Prometheus metrics, systemd, and `status`/`explain` (the snapshot); each is
/// told every event, in this order.
pub(super) struct Observers {
    /// Prometheus metrics.
    pub(super) metrics: Metrics,
    /// systemd notifications; a no-op outside systemd.
    pub(super) notifier: Notifier,
    /// The snapshot for `status` and `explain`: what was last written, and when (monotonic).
    pub(super) snapshot: Published,
    /// More observers (the bench's [`crate::observe::Capture`]).
    pub(super) more: Vec<Box<dyn Observer + Send>>,
}

/// The last snapshot written beside the ledger.
#[derive(Debug, Default)]
pub(super) struct Published {
    /// When the daemon started (wall ms).
    pub(super) started_at: Millis,
    /// As last written, without its job list (written apart, not held).
    pub(super) last: Option<Snapshot>,
    /// When (monotonic) it was written.
    pub(super) at: Millis,
    /// Writing failed last time (said once until it works again).
    pub(super) failing: bool,
    /// The version of the job list last written (see [`SeenJobs::since`]).
    pub(super) jobs_version: Option<u64>,
    /// What the last query showed of each job in flight.
    pub(super) seen: SeenJobs,
    /// When the root was last listed successfully (wall ms), if it was.
    pub(super) last_poll: Option<Millis>,
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observers")
            .field("metrics", &self.metrics)
            .field("notifier", &self.notifier)
            .field("snapshot", &self.snapshot)
            .field("more", &self.more.len())
            .finish()
    }
}

impl Observers {
    /// Whether anyone wants the ledger's counts at the end of a cycle (counting walks the ledger).
    pub(super) fn want_counts(&self) -> bool {
        self.metrics.is_enabled() || self.notifier.is_enabled() || !self.more.is_empty()
    }

    /// Runs one scheduler call, times it, tells the observers, and logs it at `-v` with its duration
    /// (`what`: what was asked).
    pub(super) fn timed<T, E: fmt::Display>(
        &mut self,
        sched: &mut dyn Scheduler,
        call: Call,
        what: fmt::Arguments<'_>,
        f: impl FnOnce(&mut dyn Scheduler) -> Result<T, E>,
    ) -> Result<T, E> {
        let t = Instant::now();
        let r = f(sched);
        let took = t.elapsed();
        let failed = r.as_ref().err().map(|e| e as &dyn fmt::Display);
        say::scheduler_call(call, sched.name(), what, took, failed);
        self.called(call, took, r.is_ok());
        r
    }

    /// Every observer, in order.
    fn each(&mut self) -> impl Iterator<Item = &mut dyn Observer> {
        let fixed: [&mut dyn Observer; 3] =
            [&mut self.metrics, &mut self.notifier, &mut self.snapshot];
        fixed.into_iter().chain(
            self.more
                .iter_mut()
                .map(|o| o.as_mut() as &mut dyn Observer),
        )
    }
}

/// Tells each observer in turn.
impl Observer for Observers {
    fn called(&mut self, call: Call, took: Duration, ok: bool) {
        self.each().for_each(|o| o.called(call, took, ok));
    }
    fn submitted(&mut self) {
        self.each().for_each(|o| o.submitted());
    }
    fn queried(&mut self, jobs: &[TrackedJob], sightings: &Sightings) {
        self.each().for_each(|o| o.queried(jobs, sightings));
    }
    fn ended(&mut self, state: GenState, final_state: &str) {
        self.each().for_each(|o| o.ended(state, final_state));
    }
    fn scanned(&mut self, dirs: usize, wall: Millis) {
        self.each().for_each(|o| o.scanned(dirs, wall));
    }
    fn refusing(&mut self, reason: Option<Rejection>) {
        self.each().for_each(|o| o.refusing(reason));
    }
    fn notice(&mut self, channel: &'static str, result: &'static str) {
        self.each().for_each(|o| o.notice(channel, result));
    }
    fn reloading(&mut self) {
        self.each().for_each(|o| o.reloading());
    }
    fn config_taken(&mut self, ok: bool, wall: Millis) {
        self.each().for_each(|o| o.config_taken(ok, wall));
    }
    fn cycle_done(&mut self, report: &CycleReport<'_>) {
        self.each().for_each(|o| o.cycle_done(report));
    }
    fn stalled(&mut self, why: &str) {
        self.each().for_each(|o| o.stalled(why));
    }
    fn stopping(&mut self) {
        self.each().for_each(|o| o.stopping());
    }
    fn leading(&mut self, epoch: i64) {
        self.each().for_each(|o| o.leading(epoch));
    }
}

/// The snapshot keeps what only the daemon saw: each job's last state, and the last listing's time.
impl Observer for Published {
    fn queried(&mut self, jobs: &[TrackedJob], sightings: &Sightings) {
        self.seen.remember(jobs, sightings);
    }
    fn scanned(&mut self, _dirs: usize, wall: Millis) {
        self.last_poll = Some(wall);
    }
}
