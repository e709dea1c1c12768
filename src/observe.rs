//! What the loop tells those who watch it from the side — Prometheus metrics, systemd, the snapshot for
//! `status` — as one trait, [`Observer`]: the daemon calls the scheduler itself and then says what happened
//! (a call made and how long it took, a submission, an end, a scan, a cycle done, …).
//!
//! Owns: the list of events and the call kinds. Must never: decide or change anything the loop does (an
//! observer cannot fail a cycle, nor answer in its place), or wrap the scheduler.

use std::time::Duration;

use crate::engine::{GenState, Rejection, Sightings, TrackedJob};
use crate::ledger::Counts;
use crate::time::Millis;

/// A scheduler call kind, as the metrics' `call` label and the debug log's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `sbatch` (or starting a local job).
    Submit,
    /// One `sacct` for all jobs in flight (or reading local job states).
    Query,
    /// Finding a job by its submission key after a lost answer (`squeue` + `sacct`).
    Lookup,
}

impl Call {
    /// Every kind, in label order.
    pub const ALL: [Call; 3] = [Call::Submit, Call::Query, Call::Lookup];

    /// The word for it (`submit`, `query`, `lookup`).
    pub fn word(self) -> &'static str {
        match self {
            Call::Submit => "submit",
            Call::Query => "query",
            Call::Lookup => "lookup",
        }
    }
}

/// The end of a cycle, as the observers see it.
#[derive(Debug, Clone, Copy)]
pub struct CycleReport<'a> {
    /// The ledger's counts (`None` when they could not be read, or nobody wanted them).
    pub counts: Option<&'a Counts>,
    /// Ready-files watched for stability, not locked.
    pub settling: u64,
    /// Ready-files held locked by their writer.
    pub locked: u64,
    /// Ready-files that cannot be looked at.
    pub unreadable: u64,
    /// Directories with transfer temporaries unchanged for `watch.stale_temporary_sec`.
    pub stale_temporaries: u64,
    /// Notices waiting in the outbox for (another) delivery (`None`: not read this time).
    pub notices_waiting: Option<u64>,
    /// The one-line summary (systemd's `STATUS=`), when the counts are known.
    pub status: Option<&'a str>,
}

/// One who watches the loop. Every event has a default that ignores it: an observer takes what it needs.
pub trait Observer {
    /// A scheduler call ended after `took`: `ok` when it answered. Also said between the calls of a
    /// burst of submissions (a long run of them is progress, not a hang).
    fn called(&mut self, call: Call, took: Duration, ok: bool) {
        let _ = (call, took, ok);
    }
    /// A job was submitted (after its [`Observer::called`]).
    fn submitted(&mut self) {}
    /// A query answered: what it showed of `jobs`.
    fn queried(&mut self, jobs: &[TrackedJob], sightings: &Sightings) {
        let _ = (jobs, sightings);
    }
    /// A job's end was recorded (`final_state` as the scheduler said it).
    fn ended(&mut self, state: GenState, final_state: &str) {
        let _ = (state, final_state);
    }
    /// The root was listed with `dirs` subdirectories at wall time `wall`.
    fn scanned(&mut self, dirs: usize, wall: Millis) {
        let _ = (dirs, wall);
    }
    /// Whether submissions are refused for a configuration reason now (`None`: they are not).
    fn refusing(&mut self, reason: Option<Rejection>) {
        let _ = reason;
    }
    /// A notice delivery on `channel` ended with `result` (`sent`, `failed`, `given_up`).
    fn notice(&mut self, channel: &'static str, result: &'static str) {
        let _ = (channel, result);
    }
    /// A config reload begins.
    fn reloading(&mut self) {}
    /// A config was taken (at start, or by a reload), or a reload was refused (`ok` false), at wall time
    /// `wall`.
    fn config_taken(&mut self, ok: bool, wall: Millis) {
        let _ = (ok, wall);
    }
    /// A cycle ended.
    fn cycle_done(&mut self, report: &CycleReport<'_>) {
        let _ = report;
    }
    /// A cycle did nothing, for the reason given (the ledger file is gone): only that it lives is said.
    fn stalled(&mut self, why: &str) {
        let _ = why;
    }
    /// The daemon is on its way out.
    fn stopping(&mut self) {}
    /// On a shared ledger: this daemon took the lease of `epoch` (it is the active one).
    fn leading(&mut self, epoch: i64) {
        let _ = epoch;
    }
}

/// An observer that writes down what it was told, for the loop's in-process tests.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// What was told so far, shared by the clones (the test keeps one, the daemon another).
    pub events: std::sync::Arc<std::sync::Mutex<Vec<Event>>>,
}

/// One event as [`Capture`] keeps it.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// [`Observer::called`] (without its duration).
    Called(Call, bool),
    /// [`Observer::submitted`].
    Submitted,
    /// [`Observer::queried`], with how many jobs were asked about.
    Queried(usize),
    /// [`Observer::ended`].
    Ended(GenState, String),
    /// [`Observer::scanned`].
    Scanned(usize),
    /// [`Observer::refusing`].
    Refusing(bool),
    /// [`Observer::notice`].
    Notice(&'static str, &'static str),
    /// [`Observer::config_taken`].
    ConfigTaken(bool),
    /// [`Observer::cycle_done`], with the status line.
    CycleDone(Option<String>),
    /// [`Observer::stalled`].
    Stalled(String),
}

#[cfg(test)]
impl Capture {
    /// Everything told so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e);
    }
}

#[cfg(test)]
impl Observer for Capture {
    fn called(&mut self, call: Call, _took: Duration, ok: bool) {
        self.push(Event::Called(call, ok));
    }
    fn submitted(&mut self) {
        self.push(Event::Submitted);
    }
    fn queried(&mut self, jobs: &[TrackedJob], _sightings: &Sightings) {
        self.push(Event::Queried(jobs.len()));
    }
    fn ended(&mut self, state: GenState, final_state: &str) {
        self.push(Event::Ended(state, final_state.into()));
    }
    fn scanned(&mut self, dirs: usize, _wall: Millis) {
        self.push(Event::Scanned(dirs));
    }
    fn refusing(&mut self, reason: Option<Rejection>) {
        self.push(Event::Refusing(reason.is_some()));
    }
    fn notice(&mut self, channel: &'static str, result: &'static str) {
        self.push(Event::Notice(channel, result));
    }
    fn config_taken(&mut self, ok: bool, _wall: Millis) {
        self.push(Event::ConfigTaken(ok));
    }
    fn cycle_done(&mut self, report: &CycleReport<'_>) {
        self.push(Event::CycleDone(report.status.map(str::to_string)));
    }
    fn stalled(&mut self, why: &str) {
        self.push(Event::Stalled(why.into()));
    }
}
