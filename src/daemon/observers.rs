//! Those who watch the loop from the side, and how the loop tells them: the daemon calls the scheduler
//! itself, times the call ([`Observers::timed`]), and tells every [`Observer`] what happened; at the end of
//! a cycle it tells them the counts and writes the snapshot for `status` and `explain`.
//!
//! Owns: the list of observers and the snapshot's publication. Must never: let an observer change what
//! the loop does, or fail a cycle because an observer could not do its part.

use std::fmt;
use std::time::{Duration, Instant};

use super::{Daemon, say};
use crate::engine::{GenState, Rejection, Sightings, TrackedJob};
use crate::metrics::Metrics;
use crate::notify::{self, Notifier};
use crate::observe::{Call, CycleReport, Observer};
use crate::scheduler::Scheduler;
use crate::snapshot::{self, SeenJobs, Snapshot, Waiting};
use crate::time::{Millis, ms};

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
    /// As last written.
    pub(super) last: Option<Snapshot>,
    /// When (monotonic) it was written.
    pub(super) at: Millis,
    /// Writing failed last time (said once until it works again).
    pub(super) failing: bool,
    /// The version of the job list in `last` (see [`SeenJobs::since`]).
    pub(super) jobs_version: Option<u64>,
    /// That job list as JSON (made again only when it changed).
    pub(super) jobs_json: Vec<u8>,
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

impl Daemon {
    /// End of a cycle: tells the observers the counts (metrics, systemd `STATUS=`; the first time also
    /// `READY=1`, and a watchdog ping), then writes the snapshot. The ledger is only counted when someone
    /// listens.
    pub(super) fn observe(&mut self) {
        let o = &mut self.observers;
        let wanted = o.want_counts();
        let now = self.clock.mono();
        if wanted && (self.counts.stale || now >= self.counts.due) {
            if let Ok(c) = self.ledger.counts() {
                self.counts.counts = Some(c);
            }
            self.counts.stale = false;
            self.counts.due = now + ms(self.cfg.watch.poll_interval);
        }
        let counts = self.counts.counts.as_ref();
        let watched = self.settling.tracker.len() as u64;
        let told = &self.settling.told_locked;
        let locked = self
            .settling
            .tracker
            .looks()
            .filter(|(d, _)| told.contains(*d))
            .count() as u64;
        let settling = watched - locked;
        let unreadable = self.settling.unreadable.len() as u64;
        let refused = self.health.rejected.current();
        let status = counts.map(|c| {
            let line = notify::status_line(&self.cfg.watch.root, settling, locked, c);
            notify::with_refusal(line, refused)
        });
        o.cycle_done(&CycleReport {
            counts,
            settling,
            locked,
            unreadable,
            status: status.as_deref(),
        });
        self.publish_snapshot();
    }

    /// What the snapshot says of the directories not submitted yet: settling, locked, unreadable, held;
    /// by name.
    fn waiting_now(&self) -> Vec<Waiting> {
        let checks = self.cfg.watch.stability_checks;
        let mut waiting: Vec<Waiting> = self
            .settling
            .tracker
            .looks()
            .map(|(dir, looks)| {
                let locked = self.settling.told_locked.contains(dir);
                Waiting {
                    dir: dir.to_string_lossy().into_owned(),
                    state: if locked { "locked" } else { "settling" }.into(),
                    looks,
                    needed: checks,
                    reason: if locked {
                        "unchanged, but its writer holds the ready-file locked (flock)".into()
                    } else {
                        format!("seen unchanged {looks} of {checks} times")
                    },
                }
            })
            .collect();
        waiting.extend(
            self.settling
                .unreadable
                .iter()
                .map(|(dir, problem)| Waiting {
                    dir: dir.to_string_lossy().into_owned(),
                    state: "unreadable".into(),
                    looks: 0,
                    needed: checks,
                    reason: format!("{problem} (the service user must be able to read it)"),
                }),
        );
        waiting.extend(self.settling.held.iter().map(|(dir, why)| Waiting {
            dir: dir.to_string_lossy().into_owned(),
            state: "held".into(),
            looks: 0,
            needed: checks,
            reason: why.words(),
        }));
        waiting.sort_by(|a, b| a.dir.cmp(&b.dir));
        waiting
    }

    /// Writes what only the daemon knows for `status` and `explain` (`<state_file>.status.json`): when it
    /// changed, and at least once per poll interval so that its age shows the daemon is alive.
    fn publish_snapshot(&mut self) {
        let (mono, wall) = (self.clock.mono(), self.clock.wall());
        let waiting = self.waiting_now();
        let p = &mut self.observers.snapshot;
        // The job list (20,000 entries with as many jobs in flight) is copied only when it changed.
        let (jobs, jobs_version) = match p.seen.since(p.jobs_version) {
            Some((v, jobs)) => (jobs, Some(v)),
            None => (
                p.last
                    .as_mut()
                    .map(|l| std::mem::take(&mut l.jobs))
                    .unwrap_or_default(),
                p.jobs_version,
            ),
        };
        let jobs_changed = jobs_version != p.jobs_version;
        p.jobs_version = jobs_version;
        let snap = Snapshot {
            schema_version: snapshot::SCHEMA_VERSION,
            pid: std::process::id(),
            started_at: p.started_at,
            written_at: wall,
            poll_interval_ms: ms(self.cfg.watch.poll_interval) as u64,
            scheduler: self.sched.name().into(),
            last_poll_at: p.last_poll,
            waiting,
            jobs,
        };
        let changed =
            jobs_changed || p.failing || p.last.as_ref().is_none_or(|l| !l.same_but_jobs(&snap));
        if !changed && mono - p.at < ms(self.cfg.watch.poll_interval) {
            p.last = Some(snap);
            return;
        }
        if jobs_changed || p.jobs_json.is_empty() {
            p.jobs_json = snapshot::jobs_json(&snap.jobs).unwrap_or_else(|_| b"[]".to_vec());
        }
        let mut snap = snap;
        let jobs = std::mem::take(&mut snap.jobs);
        let written = snapshot::write_with_jobs(&self.paths, &snap, &p.jobs_json);
        snap.jobs = jobs;
        match written {
            Ok(()) => {
                if std::mem::take(&mut p.failing) {
                    say::snapshot_back(&self.cfg.behavior.state_file);
                }
                p.last = Some(snap);
                p.at = mono;
            }
            Err(e) => {
                // Kept (its job list is the current one); written again next cycle while failing.
                p.last = Some(snap);
                if !std::mem::replace(&mut p.failing, true) {
                    say::snapshot_failed(&self.cfg.behavior.state_file, &e);
                }
            }
        }
    }
}
