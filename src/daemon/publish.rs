//! The end of a cycle, as the observers see it: the counts they are told (metrics, systemd `STATUS=`, the
//! first `READY=1`, the watchdog) and the snapshot written for `status` and `explain`.
//!
//! Owns: when the ledger is counted for them, and the snapshot's writing. Must never: fail a cycle because
//! an observer or the snapshot file could not do its part.

use super::{Daemon, say};
use crate::notify::{self};
use crate::observe::{CycleReport, Observer};
use crate::snapshot::{self, Snapshot, Waiting};
use crate::time::ms;

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
            if let Ok(n) = self.ledger.notices_waiting() {
                self.counts.notices_waiting = Some(n);
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
            stale_temporaries: self.settling.told_stale.len() as u64,
            notices_waiting: self.counts.notices_waiting,
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

    /// Writes what only the daemon knows for `status` and `explain`: the last state of each job in flight
    /// (`<state_file>.jobs.json`) when one changed, the rest (`<state_file>.status.json`) when it changed
    /// and at least once per poll interval so that its age shows the daemon is alive.
    fn publish_snapshot(&mut self) {
        let (mono, wall) = (self.clock.mono(), self.clock.wall());
        let waiting = self.waiting_now();
        let p = &mut self.observers.snapshot;
        // The job list (11 MB of JSON with 100,000 jobs in flight) is serialized and written only when it
        // changed, and not kept: one that could not be written is made again next cycle (the version
        // written stays behind). The first publish always writes one (no version was written yet).
        let mut jobs_failed = None;
        if let Some((v, json)) = p.seen.since(p.jobs_version) {
            match json.and_then(|j| snapshot::write_jobs(&self.paths, &j)) {
                Ok(()) => p.jobs_version = Some(v),
                Err(e) => jobs_failed = Some(e),
            }
        }
        let snap = Snapshot {
            schema_version: snapshot::SCHEMA_VERSION,
            pid: std::process::id(),
            started_at: p.started_at,
            written_at: wall,
            poll_interval_ms: ms(self.cfg.watch.poll_interval) as u64,
            scheduler: self.sched.name().into(),
            last_poll_at: p.last_poll,
            waiting,
            jobs: Vec::new(),
        };
        let changed = p.failing || p.last.as_ref().is_none_or(|l| !l.same_but_jobs(&snap));
        if jobs_failed.is_none() && !changed && mono - p.at < ms(self.cfg.watch.poll_interval) {
            p.last = Some(snap);
            return;
        }
        let written = snapshot::write(&self.paths, &snap);
        if written.is_ok() {
            p.at = mono;
        }
        p.last = Some(snap);
        match jobs_failed.map_or(written, Err) {
            Ok(()) => {
                if std::mem::take(&mut p.failing) {
                    say::snapshot_back(&self.cfg.behavior.state_file);
                }
            }
            Err(e) => {
                // Written again next cycle while failing.
                if !std::mem::replace(&mut p.failing, true) {
                    say::snapshot_failed(&self.cfg.behavior.state_file, &e);
                }
            }
        }
    }
}
