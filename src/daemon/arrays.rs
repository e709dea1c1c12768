//! Step 5 for bursts as job arrays (`job.array_max`): the due first attempts, when two or more, go to the
//! scheduler as arrays of up to `array_max` directories each, one `sbatch --array` per array. Each array
//! is committed before its call (the records marked started, then its key, name and task indices in one
//! transaction), and its answer gives every directory its own job id (`<array id>_<task>`), from which
//! each is followed and judged alone. A retry (a later attempt) is always submitted alone.

use crossbeam_channel::Receiver;

use super::steps::{ChunkEnd, LedgerDown};
use super::{Daemon, Event, Flow, say};
use crate::engine::{self, Agenda, Generation};
use crate::observe::{Call, Observer};
use crate::scheduler::SubmitError;
use crate::scheduler::array::{ArraySpec, task_job_id};
use crate::time::ms;

impl Daemon {
    /// The due intents as arrays (each at least two records, at most `job.array_max`, about even in
    /// size) and the rest, submitted alone: later attempts (a retry resubmits its directory alone), and
    /// all of them when arrays are off or fewer than two could go in one.
    pub(super) fn array_groups(
        &self,
        due: Vec<Generation>,
    ) -> (Vec<Vec<Generation>>, Vec<Generation>) {
        let Some(policy) = self.cfg.job.arrays else {
            return (Vec::new(), due);
        };
        let (mut firsts, alone): (Vec<_>, Vec<_>) = due
            .into_iter()
            .partition(|g| g.attempt == 1 && g.dir_dev_ino.is_some());
        if firsts.len() < 2 {
            let mut alone = alone;
            alone.append(&mut firsts);
            return (Vec::new(), alone);
        }
        let max = policy.max as usize;
        let n = firsts.len().div_ceil(max);
        let (base, extra) = (firsts.len() / n, firsts.len() % n);
        let mut groups: Vec<Vec<Generation>> = Vec::with_capacity(n);
        let mut alone = alone;
        let mut rest = firsts.into_iter();
        for k in 0..n {
            let size = base + usize::from(k < extra);
            let group: Vec<Generation> = rest.by_ref().take(size).collect();
            // `array_max: 2` and an odd number: the one left over goes alone (an array of one is a job).
            if group.len() < 2 {
                alone.extend(group);
            } else {
                groups.push(group);
            }
        }
        (groups, alone)
    }

    /// Submits `arrays` one after the other, each one call of the budget (`job.submit_rate`); returns the
    /// loop's flow when the step must end here (a signal, a hold, the ledger down): the intents left stay
    /// committed and are submitted when due again.
    pub(super) fn submit_arrays(
        &mut self,
        arrays: &[Vec<Generation>],
        agenda: &Agenda,
        events: &Receiver<Event>,
    ) -> Option<Flow> {
        for rows in arrays {
            match events.try_recv() {
                Ok(Event::Terminate) => return Some(Flow::Stop),
                Ok(Event::Reload) => return Some(Flow::Reload),
                Err(_) => {}
            }
            if !self.may_act() {
                return Some(Flow::Continue);
            }
            let now = self.clock.mono();
            if let Some(b) = &mut self.pacing.bucket
                && b.take(1, now) == 0
            {
                let wait =
                    std::time::Duration::from_millis((b.next_token(now) - now).max(0) as u64);
                say::submit_budget_spent(rows.len(), wait);
                self.schedule.hold(now, wait);
                self.schedule.intents(agenda.next_due, true);
                return Some(Flow::Continue);
            }
            match self.submit_array(rows) {
                ChunkEnd::Done => {}
                ChunkEnd::Held => {
                    self.schedule.intents(agenda.next_due, true);
                    return Some(Flow::Continue);
                }
                ChunkEnd::Signal(flow) => return Some(flow),
                ChunkEnd::LedgerDown => return Some(Flow::Continue),
            }
        }
        None
    }

    /// One array: its records marked started, its key and tasks committed, one `sbatch --array`, every
    /// directory's job id recorded (or the failure, for each of them).
    fn submit_array(&mut self, rows: &[Generation]) -> ChunkEnd {
        let Ok(live) = self.mark_chunk(rows) else {
            return ChunkEnd::LedgerDown;
        };
        let ids: Vec<i64> = live.iter().map(|g| g.id).collect();
        if live.len() < 2 {
            // An operator withdrew the others meanwhile: the one left goes alone when due again.
            let _ = self.unmark_started(&ids, self.clock.wall());
            return ChunkEnd::Done;
        }
        let Ok(live) = self.commit_array(&ids) else {
            return ChunkEnd::LedgerDown;
        };
        if !self.may_act() {
            let r = self.ledger.unmark_sbatch_started(&ids, self.clock.wall());
            let _ = self.commit("recording submissions that did not start", r);
            return ChunkEnd::LedgerDown;
        }
        let Some(a) = live[0].array.clone() else {
            return ChunkEnd::LedgerDown;
        };
        let spec = ArraySpec {
            key: a.key,
            job_name: a.name,
            tasks: live
                .iter()
                .map(|g| (self.path_of(g), g.dir_dev_ino.map_or(0, |d| d.1)))
                .collect(),
            throttle: self.cfg.job.arrays.and_then(|p| p.throttle),
        };
        let t = std::time::Instant::now();
        let r = self.sched.submit_array(&spec);
        let took = t.elapsed();
        self.observers.called(Call::Submit, took, r.is_ok());
        let text = r.as_ref().err().map(ToString::to_string);
        self.pace_answered(took, text.as_deref());
        say::array_call(self.sched.name(), &spec, r.as_ref().ok(), took);
        let (now, wall) = (self.clock.mono(), self.clock.wall());
        match r {
            Ok(array_id) => {
                for _ in &live {
                    self.observers.submitted();
                }
                say::array_submitted(&array_id, &spec, &self.cfg.watch.root);
                let done: Vec<(usize, String)> = live
                    .iter()
                    .enumerate()
                    .map(|(i, g)| {
                        (
                            i,
                            task_job_id(&array_id, g.array.as_ref().map_or(0, |a| a.task)),
                        )
                    })
                    .collect();
                match self.record_answers(&live, &done, wall) {
                    Ok(()) => ChunkEnd::Done,
                    Err(LedgerDown) => ChunkEnd::LedgerDown,
                }
            }
            Err(SubmitError::Refused(m)) if engine::pace::is_rate_limited(&m) => {
                let _ = self.unmark_started(&ids, wall);
                say::submit_rate_limited(
                    &self.path_of(&live[0]),
                    &m,
                    live.len(),
                    engine::pace::LIMITED_PAUSE,
                );
                self.schedule.hold(now, engine::pace::LIMITED_PAUSE);
                ChunkEnd::Held
            }
            Err(err) => {
                self.array_failed(&live, &spec, &err);
                ChunkEnd::Held
            }
        }
    }

    /// A failed `sbatch --array`: said once for the array (with the key to fix for a refusal, as for a
    /// single job), and recorded for each of its directories, which wait for the back-off (or, when the
    /// answer was lost, for the key lookup) together.
    fn array_failed(&mut self, live: &[Generation], spec: &ArraySpec, err: &SubmitError) {
        let (now, wall) = (self.clock.mono(), self.clock.wall());
        say::array_failed(spec, err);
        self.submit_failed(&live[0], &self.path_of(&live[0]), err, now, wall);
        let (msg, certain) = (err.to_string(), err.is_certain());
        let policy = engine::BackoffPolicy {
            base: self.cfg.behavior.submit_backoff,
            max: self.cfg.behavior.submit_backoff_max,
        };
        for g in &live[1..] {
            let delay =
                engine::submit_backoff(g.submit_tries + 1, self.health.submit.failures(), policy);
            let r = self
                .ledger
                .record_submit_failed(g.id, &msg, certain, wall + ms(delay), wall);
            if let Err(e) = r {
                self.ledger_failed("recording a failed submission", &e);
                return;
            }
            self.reread(&[g.id]);
            self.waits.held.insert(g.id, now + ms(delay));
            if !certain {
                self.waits.lost.insert(g.id, now);
            }
        }
    }

    /// The array's intent: its key, name and task indices on every record, in one transaction, read back.
    fn commit_array(&mut self, ids: &[i64]) -> Result<Vec<Generation>, LedgerDown> {
        let wall = self.clock.wall();
        let prefix = self.cfg.job.job_name_prefix.clone();
        let r = self
            .ledger
            .assign_arrays(&[ids.to_vec()], &prefix, wall)
            .map(|_| ());
        self.commit("recording a job array", r)?;
        self.reread(ids);
        let live: Vec<Generation> = ids
            .iter()
            .filter_map(|id| self.memory.flight.intent(*id).cloned())
            .collect();
        if self.memory.flight_stale
            || live.len() != ids.len()
            || live.iter().any(|g| g.array.is_none())
        {
            return Err(LedgerDown);
        }
        Ok(live)
    }
}
