//! The steps of one cycle. Each is short and has the same shape: observe (ledger, file system, scheduler),
//! ask the engine what it means, commit the decision to the ledger, then act. The agenda of the cycle (one
//! read of the active rows) is carried from step to step and updated as records move.

use std::ffi::OsString;

use crossbeam_channel::Receiver;

use super::tell::{EndFacts, Fact};
use super::{Daemon, Event, Flow, say};
use crate::engine::notice::EventKind;
use crate::engine::{
    self, Agenda, BackoffPolicy, GenState, Generation, GenerationVerdict, JudgePolicy, Judgement,
    LookupStep, NotReady, OutageEdge, OutcomePolicy, Readiness, ReadyDecision, ReadyIdentity,
    ReadyObservation, Sightings, StabilityPolicy, Timing, Verdict,
};
use crate::fsx::{Progress, SubDir};
use crate::ledger::{DirLatest, EndRecord, LedgerError, NewGeneration};
use crate::observe::{Call, Observer};
use crate::outcome::{self, FailureRecord};
use crate::scan;
use crate::scheduler::array::task_job_id;
use crate::scheduler::{JobReport, JobSpec, SubmitError, output_file};
use crate::time::{Millis, ms};

/// What memory alone says of a listed directory.
enum Recall {
    /// No record: looked at now, before the rechecks.
    New,
    /// In flight, or finished and its recheck not due: nothing to do.
    Idle,
    /// Finished and its recheck is due (its latest record): looked at after the new ones.
    Due(Option<DirLatest>),
}

/// What one look at a directory during a scan found.
enum Look {
    /// Nothing to do now (in flight, done, no ready-file, settling, locked, unreadable).
    Wait,
    /// Its ready-file is stable: commit an intent.
    Stable(Ready),
}

/// A directory whose ready-file is stable.
struct Ready {
    name: OsString,
    /// The record of the previous generation, if any.
    latest: Option<i64>,
    identity: ReadyIdentity,
    dir_dev_ino: (u64, u64),
}

/// Intents handed to `sbatch` together: one transaction marks them started, one records their answers.
/// Small enough that a crash in the middle leaves few records for a key lookup, large enough that a burst
/// costs about one fsync per directory.
const SUBMIT_CHUNK: usize = 32;

/// The most entries of a deletion's walk carried out in one cycle: a 100,000-level tree is a million or
/// so, deleted in slices between which the loop runs and sees a signal.
const DELETE_SLICE: usize = 32_768;

/// The most time a deletion's slice takes (checked every sixteenth of [`DELETE_SLICE`]): well within the
/// second a SIGTERM must be honoured in, on a loaded file server too.
const DELETE_SLICE_TIME: std::time::Duration = std::time::Duration::from_millis(200);

/// The marker a ready directory is tracked by: the first of the satisfied alternative.
struct Marker {
    /// Its identity (what the ledger stores).
    identity: ReadyIdentity,
    /// Its name (what the lock probe opens).
    name: OsString,
    /// All markers and, with quiescence, the directory's entries, hashed.
    fingerprint: u64,
}

/// A chunk's answers by index into it: jobs submitted, failures, and the first rate-limit refusal.
type Sorted = (
    Vec<(usize, String)>,
    Vec<(usize, SubmitError)>,
    Option<(usize, String)>,
);

/// At most this many jobs' sightings are written per cycle: with 20,000 jobs in flight, the once-a-minute
/// copies are spread over cycles instead of one transaction of 20,000 updates (a job's copy is then at most
/// a minute plus a few polls old; it only matters after a restart).
const SEEN_WRITES: usize = 1000;

/// The ledger failed; the step stops (its cause was reported).
pub(super) struct LedgerDown;

/// How a chunk of submissions ended.
pub(super) enum ChunkEnd {
    /// Every call was made and recorded.
    Done,
    /// A call failed or was rate-limited: submissions are held.
    Held,
    /// A stop or reload arrived between two calls.
    Signal(Flow),
    /// The ledger failed.
    LedgerDown,
}

impl Daemon {
    /// Records that the submissions of `ids` did not start (no `sbatch` ran for them: they are due again)
    /// and reads the records back.
    pub(super) fn unmark_started(&mut self, ids: &[i64], wall: Millis) -> Result<(), LedgerDown> {
        let r = self.ledger.unmark_sbatch_started(ids, wall);
        let unmarked = self.commit("recording submissions that did not start", r);
        self.reread(ids);
        unmarked
    }

    /// One `sbatch` answer (or its error's text) and how long it took, heard by the submit pace; a change
    /// of width is said.
    pub(super) fn pace_answered(&mut self, took: std::time::Duration, error: Option<&str>) {
        let pace = engine::pace_signal(took, error);
        if self.pacing.pace.answered(pace) {
            say::submit_pace(
                self.pacing.pace.width(),
                self.cfg.job.submit_concurrency,
                pace,
            );
        }
    }

    /// Reads the in-memory views of the directories and of the active records again when another
    /// connection wrote to the ledger (or at start, or after a failed ledger call). Returns false when the
    /// ledger could not be read (the scan then waits).
    pub(super) fn sync_known(&mut self, now: Millis) -> bool {
        match self
            .memory
            .known
            .sync(&self.ledger, now, self.cfg.watch.recheck)
        {
            Ok(read) => {
                if read {
                    self.memory.effects_due = true;
                    self.memory.flight_stale = true;
                    self.counts.stale = true;
                }
            }
            Err(e) => {
                self.ledger_failed("reading the directories", &e);
                return false;
            }
        }
        if self.memory.flight_stale {
            match self.memory.flight.load(&self.ledger) {
                Ok(()) => self.memory.flight_stale = false,
                Err(e) => self.ledger_failed("reading the active records", &e),
            }
        }
        true
    }

    /// The agenda of this cycle, from the active records in memory: what it looks up and submits (the
    /// jobs in flight are followed from memory, see [`Daemon::track`]). Empty while they cannot be read.
    pub(super) fn read_agenda(&mut self) -> Agenda {
        if self.memory.flight_stale {
            return Agenda::default();
        }
        let flight = &self.memory.flight;
        let pending = |id: &i64| flight.intent(*id).is_some();
        self.waits.held.retain(|id, _| pending(id));
        self.waits.lost.retain(|id, _| pending(id));
        let timing = Timing {
            wall: self.clock.wall(),
            mono: self.clock.mono(),
            longest: ms(self.cfg.behavior.submit_backoff_max),
            held: self.waits.held.clone(),
        };
        Agenda::new(flight.intents().into_iter().cloned().collect(), timing)
    }

    pub(super) fn ledger_failed(&mut self, what: &str, e: &LedgerError) {
        // What the daemon holds in memory of the active records may now differ from the ledger (a write
        // that may or may not have happened): read them again before anything else is submitted.
        self.memory.flight_stale = true;
        let edge = self.health.ledger.failed(self.clock.mono());
        say::ledger_failed(what, e, edge);
    }

    /// Reads back records this daemon just wrote, so the memory of the active ones follows.
    pub(super) fn reread(&mut self, ids: &[i64]) {
        if let Err(e) = self.memory.flight.reread(&self.ledger, ids) {
            self.ledger_failed("reading back the records just written", &e);
        }
    }

    pub(super) fn ledger_ok(&mut self) {
        self.counts.stale = true;
        say::ledger_back(self.health.ledger.succeeded(self.clock.mono()));
    }

    /// Commits a ledger write; on failure reports it and says so.
    pub(super) fn commit(
        &mut self,
        what: &str,
        r: Result<(), LedgerError>,
    ) -> Result<(), LedgerDown> {
        match r {
            Ok(()) => {
                self.ledger_ok();
                Ok(())
            }
            Err(e) => {
                self.ledger_failed(what, &e);
                Err(LedgerDown)
            }
        }
    }

    pub(super) fn path_of(&self, g: &Generation) -> std::path::PathBuf {
        self.cfg.watch.root.join(&g.dir)
    }

    /// Where the job `job` of `g` writes its output (an array's task: by the array's name and the task's id).
    fn output_of(&self, g: &Generation, job: &str) -> Option<std::path::PathBuf> {
        let (cfg, path) = (&self.cfg, self.path_of(g));
        output_file(&cfg.job, &cfg.watch.root, &path, job, g.scheduler_name())
    }

    /// Step 1: intents whose `sbatch` answer was lost (crash, timeout, garbage output). Their key is looked
    /// up: found → adopted; surely absent after the grace period → cleared for a fresh `sbatch`.
    pub(super) fn resolve(
        &mut self,
        agenda: &mut Agenda,
        events: &Receiver<Event>,
    ) -> Option<Flow> {
        let grace = engine::lookup_grace(self.cfg.job.command_timeout);
        // The tasks of one array share its key: looked up once per cycle.
        let mut arrays: std::collections::HashMap<String, Option<String>> = Default::default();
        for g in agenda.lookups.clone() {
            // Each lookup is a scheduler call: a stop or a reload asked meanwhile is not kept waiting for
            // the rest (they stay uncertain, and are looked up after the restart).
            match events.try_recv() {
                Ok(Event::Terminate) => return Some(Flow::Stop),
                Ok(Event::Reload) => return Some(Flow::Reload),
                Err(_) => {}
            }
            let path = self.path_of(&g);
            let now = self.clock.mono();
            let lost_since = *self.waits.lost.entry(g.id).or_insert(now);
            let key = g.scheduler_key();
            let found = match arrays.get(key) {
                Some(known) => Ok(known.clone()),
                None => self.observers.timed(
                    self.sched.as_mut(),
                    Call::Lookup,
                    format_args!("for key {key}"),
                    |s| s.lookup(key, g.scheduler_name(), g.created_at),
                ),
            };
            let found = match found {
                Ok(found) => {
                    if let Some(a) = &g.array {
                        arrays.insert(a.key.clone(), found.clone());
                    }
                    // An array's id: this directory's job is its task.
                    let task = g.array.as_ref().map(|a| a.task);
                    found.map(|id| task.map_or_else(|| id.clone(), |t| task_job_id(&id, t)))
                }
                Err(e) => {
                    let edge = self.health.query.failed(self.clock.mono());
                    say::lookup_failed(&path, &e, edge);
                    // The scheduler is not answering: the other lookups would fail the same way.
                    return None;
                }
            };
            let wall = self.clock.wall();
            match engine::after_lookup(found, self.clock.mono() - lost_since, grace) {
                LookupStep::Adopt(job) => {
                    let q = self.notices_for(Fact {
                        job_id: Some(&job),
                        ..Fact::of(EventKind::Submitted, &g, wall)
                    });
                    let r = self.ledger.record_submitted(g.id, &job, &q.rows(), wall);
                    if self.commit("adopting a job", r).is_ok() {
                        self.moved(&g, GenState::Submitted);
                        // The scheduler did take the job: that ends a submission outage as well.
                        say::submissions_back(self.health.submit.succeeded(self.clock.mono()));
                        say::adopted(&path, &job, g.scheduler_key());
                        let now = self.clock.mono();
                        self.memory.flight.unseen_from(g.id, now);
                        agenda.adopted(g.id, &job, wall);
                    }
                }
                LookupStep::Wait => say::lookup_waits(&path, g.scheduler_key()),
                LookupStep::Clear => {
                    let r = self.ledger.record_lookup_empty(g.id, wall);
                    if self.commit("recording a lookup", r).is_ok() {
                        self.reread(&[g.id]);
                        say::lookup_cleared(&path, g.scheduler_key());
                        agenda.cleared(g.id, wall);
                    }
                }
            }
        }
        None
    }

    /// Step 2: one scheduler query for every job in flight (held in memory). The engine judges each job
    /// from its own rows: a row that is not provably ours is ignored (said once per job), a final state is
    /// recorded with its effects (and the next attempt, when retries allow) in one transaction, a job no
    /// source has shown for too long is recorded as lost. Only jobs with something to record are touched
    /// after the judgement: an unchanged job costs its rows' parse and one judgement.
    pub(super) fn track(&mut self, agenda: &mut Agenda) {
        if self.memory.flight_stale {
            return;
        }
        let (jobs, _) = self.memory.flight.tracked();
        if jobs.is_empty() {
            return;
        }
        let decided = engine::judge::controller_decides;
        let n = jobs.len();
        let answer = self.observers.timed(
            self.sched.as_mut(),
            Call::Query,
            format_args!("for {n} job(s)"),
            |s| s.query(jobs, &decided),
        );
        let sightings = match answer {
            Ok(r) => {
                self.observers.queried(jobs, &r);
                say::queries_back(self.health.query.succeeded(self.clock.mono()));
                r
            }
            Err(e) => {
                let edge = self.health.query.failed(self.clock.mono());
                return say::query_failed(&e, jobs.len(), edge);
            }
        };
        let (judged, seen) = self.judge_all(&sightings);
        drop(sightings);
        let wall = self.clock.wall();
        for (id, judged) in judged {
            // A job in flight is held as it is followed: the record is read when there is something to do.
            let g = match self.ledger.get(id) {
                Ok(Some(g)) if g.state == GenState::Submitted => g,
                Ok(_) => continue,
                Err(e) => return self.ledger_failed("reading a job's record", &e),
            };
            if let Some(row) = &judged.stale
                && self.told_stale.insert(g.id)
            {
                let job_id = g.job_id.as_deref().unwrap_or_default();
                say::stale_row_ignored(&self.path_of(&g), job_id, row);
            }
            let r = match judged.verdict {
                Verdict::Ended(rep) => self.record_end(&g, &rep, wall, agenda),
                Verdict::Lost(unseen) => self.record_lost(&g, unseen, wall),
                Verdict::Active | Verdict::Unknown => Ok(()),
            };
            if r.is_err() {
                return;
            }
        }
        // Not a change anyone counts: the cached counts stay valid.
        match self.ledger.record_seen(&seen, wall) {
            Ok(()) => self.memory.flight.seen(&seen, wall),
            Err(e) => self.ledger_failed("recording which jobs were seen", &e),
        }
    }

    /// Judges every job in flight from one answer; returns the judgements with something to act on or to
    /// say (an end, a loss, a stale row), and the jobs whose sighting is due to be written (the ledger's
    /// copy is for a restart: written once a minute per job, at most [`SEEN_WRITES`] per cycle, not every
    /// poll).
    fn judge_all(&mut self, sightings: &Sightings) -> (Vec<(i64, Judgement)>, Vec<i64>) {
        let (wall, now) = (self.clock.wall(), self.clock.mono());
        let policy = JudgePolicy {
            lost_after: self.cfg.job.lost_after,
            settle: engine::judge::REQUEUE_SETTLE,
        };
        let rows_of = sightings.by_id();
        let (jobs, ids, sightings_of) = self.memory.flight.tracked_now();
        let steady = sightings.steady_mask(jobs.len());
        let (mut act, mut seen) = (Vec::new(), Vec::new());
        let each = jobs.iter().zip(ids).zip(sightings_of.iter_mut());
        for (((job, &id), s), steady) in each.zip(steady) {
            let recorded = s.seen_at.unwrap_or(s.submitted_at);
            let slot = s.unseen.get_or_insert(((wall - recorded).max(0), now));
            let judged = if steady {
                Judgement::steady()
            } else {
                let last_seen = wall - (slot.0 + (now - slot.1));
                let rows = rows_of
                    .get(job.job_id.as_str())
                    .map_or(&[][..], Vec::as_slice);
                engine::judge::judge_rows(job, rows, sightings, last_seen, wall, policy)
            };
            if judged.seen {
                *slot = (0, now);
                let due = s
                    .seen_at
                    .is_none_or(|at| wall - at >= super::SEEN_WRITE_GAP);
                if due && seen.len() < SEEN_WRITES {
                    seen.push(id);
                }
            }
            let quiet = matches!(judged.verdict, Verdict::Active | Verdict::Unknown);
            if !quiet || judged.stale.is_some() {
                act.push((id, judged));
            }
        }
        (act, seen)
    }

    /// Records that no source has shown a job for longer than `job.lost_after_sec`.
    fn record_lost(
        &mut self,
        g: &Generation,
        unseen: Millis,
        wall: Millis,
    ) -> Result<(), LedgerDown> {
        let q = self.notices_for(Fact::of(EventKind::Lost, g, wall));
        let r = self.ledger.record_lost(g.id, &q.rows(), wall);
        self.commit("recording a lost job", r)?;
        self.moved(g, GenState::Lost);
        say::job_lost(&self.path_of(g), g, unseen);
        Ok(())
    }

    fn outcome_policy(&self) -> OutcomePolicy {
        OutcomePolicy {
            delete_on_success: self.cfg.behavior.delete_on_success,
            max_retries: self.cfg.behavior.max_retries,
            retry_backoff: self.cfg.behavior.submit_backoff,
            retry_backoff_max: self.cfg.behavior.submit_backoff_max,
        }
    }

    /// Records a job's end if the engine says the report is one; a queued retry joins the agenda.
    fn record_end(
        &mut self,
        g: &Generation,
        rep: &JobReport,
        wall: Millis,
        agenda: &mut Agenda,
    ) -> Result<(), LedgerDown> {
        let Some(plan) = engine::plan_outcome(rep, g.attempt, wall, self.outcome_policy()) else {
            return Ok(());
        };
        // The job ended because an operator's `cancel` signalled it (committed before the signal): that
        // is how it is recorded and told, whoever sees the end first.
        if rep.state.starts_with("CANCELLED") {
            match self.ledger.cancel_requested(g.id) {
                Ok(Some(operator)) => return self.record_operator_cancel(g, rep, &operator, wall),
                Ok(None) => {}
                Err(e) => {
                    self.ledger_failed("reading the cancel requests", &e);
                    return Err(LedgerDown);
                }
            }
        }
        let kind = match plan.state {
            engine::GenState::Completed => EventKind::Completed,
            _ => EventKind::Failed,
        };
        let facts = EndFacts {
            state: &rep.state,
            exit_code: &rep.exit_code,
            detail: &rep.detail,
        };
        // A failure says what happens next, and carries the end of the job's output.
        let next = (kind == EventKind::Failed).then(|| match plan.retry_at {
            Some(at) => format!(
                "dirwatcher submits it again at {} (attempt {} of {})",
                crate::notices::rfc3339(at),
                g.attempt + 1,
                self.cfg.behavior.max_retries + 1
            ),
            None => format!(
                "no automatic retry is left; ask the facility to run `dirwatcher retry {}`",
                self.path_of(g).display()
            ),
        });
        let q = self.notices_for(Fact {
            end: Some(facts),
            next: next.as_deref(),
            with_tail: kind == EventKind::Failed,
            ..Fact::of(kind, g, wall)
        });
        let notices = q.rows();
        let rec = EndRecord {
            state: plan.state,
            final_state: &rep.state,
            exit_code: &rep.exit_code,
            delete_pending: plan.delete_dir,
            failure_log_pending: plan.log_failure,
            retry_at: plan.retry_at,
            detail: &rep.detail,
            notices: &notices,
        };
        let retry = match self.ledger.record_end(g, &rec, wall) {
            Ok(retry) => retry,
            Err(e) => {
                self.ledger_failed("recording a job's end", &e);
                return Err(LedgerDown);
            }
        };
        self.ledger_ok();
        self.moved(g, plan.state);
        if plan.delete_dir || plan.log_failure {
            self.memory.effects_due = true;
        }
        self.observers.ended(plan.state, &rep.state);
        let retry_in = retry.and(plan.retry_at).map(|at| at - wall);
        let path = self.path_of(g);
        let output = g.job_id.as_deref().and_then(|id| self.output_of(g, id));
        say::job_ended(
            &path,
            g,
            rep,
            plan.state,
            plan.delete_dir,
            retry_in,
            output.as_deref(),
        );
        if let Some(Ok(Some(next))) = retry.map(|id| self.ledger.get(id)) {
            let wait = next.next_try_at - wall;
            self.waits.held.insert(next.id, self.clock.mono() + wait);
            let (now, recheck) = (self.clock.mono(), self.cfg.watch.recheck);
            self.memory.known.recorded(&next, now, recheck);
            self.memory.flight.put(next.clone());
            agenda.add(next, wall);
        }
        Ok(())
    }

    /// Records the end of `g`'s job as `operator`'s cancel, as `dirwatcher cancel` itself would: the same
    /// final state and notice, no retry. Nothing when the command recorded it first.
    fn record_operator_cancel(
        &mut self,
        g: &Generation,
        rep: &JobReport,
        operator: &str,
        wall: Millis,
    ) -> Result<(), LedgerDown> {
        let q = self.notices_for(Fact {
            by: Some(operator),
            ..Fact::of(EventKind::Cancelled, g, wall)
        });
        let final_state = format!("{} {operator}", crate::ledger::CANCELLED_BY_OPERATOR);
        match self
            .ledger
            .record_cancelled(g.id, &final_state, &q.rows(), wall)
        {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                self.ledger_failed("recording an operator's cancel", &e);
                return Err(LedgerDown);
            }
        }
        self.ledger_ok();
        self.moved(g, GenState::Failed);
        self.memory.effects_due = true;
        self.observers.ended(GenState::Failed, &rep.state);
        say::job_cancelled_by(&self.path_of(g), g, operator);
        Ok(())
    }

    /// This daemon committed a new state for `g`: the in-memory view follows (a job that left the
    /// scheduler's queue also leaves the memory of when it was last seen).
    pub(super) fn moved(&mut self, g: &Generation, state: GenState) {
        let (now, recheck) = (self.clock.mono(), self.cfg.watch.recheck);
        self.memory.known.moved(&g.dir, g.id, state, now, recheck);
        self.reread(&[g.id]);
    }

    /// Step 3: failure-log lines and deletions that the ledger says are due; each flag is cleared after its
    /// effect (at least once for the log line, an idempotent delete).
    /// They are read only when some may be due (a job ended with effects, another connection wrote, or
    /// one is still waiting after a failure): an idle cycle reads nothing.
    pub(super) fn finish_effects(&mut self) {
        if !self.memory.effects_due || !self.may_act() {
            return;
        }
        let due = match self.ledger.pending_effects() {
            Ok(d) => d,
            Err(e) => return self.ledger_failed("reading pending effects", &e),
        };
        // Deletions wait while the root cannot be trusted: "not there" would mean nothing then.
        let deletes = due.iter().any(|g| g.delete_pending) && self.root_usable();
        // A deletion under way whose record no longer asks for it (`forget`, `retry`) stops.
        if let Some((id, _)) = &self.memory.deleting
            && !due.iter().any(|g| g.id == *id && g.delete_pending)
        {
            self.memory.deleting = None;
        }
        let mut left = false;
        for g in due {
            if g.failure_log_pending {
                left |= !self.log_failure(&g);
            }
            if g.delete_pending {
                left |= !(deletes && self.delete(&g));
            }
        }
        self.memory.effects_due = left;
    }

    /// Whether the root's path still names the directory held open; says so once when that stops being
    /// true and once when it is true again.
    fn root_usable(&mut self) -> bool {
        let now = self.clock.mono();
        match self.root.check() {
            Ok(()) => {
                say::root_usable_again(self.root.path(), self.health.root.succeeded(now));
                true
            }
            Err(problem) => {
                say::root_unusable(self.root.path(), &problem, self.health.root.failed(now));
                false
            }
        }
    }

    /// A refusal that a config change must fix has begun: the operators' channels are told once.
    fn tell_blocked(
        &mut self,
        g: &Generation,
        reason: engine::Rejection,
        slurm: &str,
        wall: Millis,
    ) {
        let why = format!(
            "{}: fix `{}`; Slurm said: {}",
            reason.problem(),
            reason.key(),
            slurm.replace('\n', " / ")
        );
        let q = self.notices_for(Fact {
            reason: Some(&why),
            ..Fact::of(EventKind::Blocked, g, wall)
        });
        let r = self.ledger.queue_notices(Some(g.id), &q.rows(), wall);
        if let Err(e) = r {
            self.ledger_failed("queueing a notice", &e);
        }
    }

    /// Appends the failure-log line; true when it is done and recorded.
    fn log_failure(&mut self, g: &Generation) -> bool {
        let mut rec = FailureRecord::new(&self.cfg.watch.root, g, std::time::SystemTime::now());
        rec.output = g.job_id.as_deref().and_then(|id| {
            crate::scheduler::output_file(
                &self.cfg.job,
                &self.cfg.watch.root,
                &self.cfg.watch.root.join(&g.dir),
                id,
                g.scheduler_name(),
            )
            .map(|p| p.to_string_lossy().into_owned())
        });
        let log = &self.cfg.behavior.failure_log;
        let now = self.clock.mono();
        match outcome::append_failure(log, &rec) {
            Ok(()) => {
                say::failure_log_back(log, self.health.failure_log.succeeded(now));
                let r = self.ledger.record_failure_logged(g.id, self.clock.wall());
                if let Err(e) = &r {
                    self.ledger_failed("recording the failure-log line", e);
                }
                r.is_ok()
            }
            Err(e) => {
                let job = g.job_id.as_deref().unwrap_or_default();
                let edge = self.health.failure_log.failed(now);
                say::failure_log_failed(&self.path_of(g), job, log, &e, edge);
                false
            }
        }
    }

    /// Deletes the directory, a slice per cycle (or records why not); true when that is settled and
    /// recorded. One deletion at a time: the others wait for it.
    fn delete(&mut self, g: &Generation) -> bool {
        let path = self.path_of(g);
        let job = g.job_id.as_deref().unwrap_or_default();
        let res = match self.delete_slice(g) {
            Ok(Progress::More) => return false,
            Ok(Progress::Done) => Ok(()),
            Err(reason) => Err(reason),
        };
        let (deleted, err) = match &res {
            Ok(()) => {
                say::deleted(&path, job);
                (true, None)
            }
            // The root went away between the check and the deletion: the flag stays, tried again later.
            Err(reason) if !reason.is_final() => return false,
            Err(reason) => {
                say::not_deleted(&path, job, reason);
                (false, Some(format!("not deleted: {reason}")))
            }
        };
        let r = self
            .ledger
            .record_cleanup(g.id, deleted, err.as_deref(), self.clock.wall());
        if let Err(e) = &r {
            self.ledger_failed("recording a deletion", e);
        }
        r.is_ok()
    }

    /// One slice of `g`'s deletion, begun now or carried on: at most [`DELETE_SLICE`] of the walk's
    /// entries, and no more than [`DELETE_SLICE_TIME`] of work, so that the loop (and a SIGTERM) waits
    /// for no tree, however large or deep.
    fn delete_slice(&mut self, g: &Generation) -> Result<Progress, outcome::KeepReason> {
        let signal = &self.cfg.watch.signal_filename;
        let (mut removal, first) = match self.memory.deleting.take() {
            Some((id, r)) if id == g.id => (r, false),
            Some(other) => {
                self.memory.deleting = Some(other);
                return Ok(Progress::More);
            }
            None => {
                let r = outcome::start_delete(&self.root, &g.dir, g.dir_dev_ino, g.ready, signal)?;
                (r, true)
            }
        };
        let started = self.clock.mono();
        let mut spent = 0;
        loop {
            let step = DELETE_SLICE / 16;
            let p = outcome::delete_slice(
                &self.root,
                &mut removal,
                g.dir_dev_ino,
                g.ready,
                signal,
                step,
            )?;
            spent += step;
            if p == Progress::Done {
                return Ok(p);
            }
            if spent >= DELETE_SLICE || self.clock.mono() - started >= ms(DELETE_SLICE_TIME) {
                break;
            }
        }
        if first {
            say::deleting_in_slices(&self.path_of(g), g.job_id.as_deref().unwrap_or_default());
        }
        self.memory.deleting = Some((g.id, removal));
        Ok(Progress::More)
    }

    /// Step 4: lists the root and diffs it against the directories known in memory: new names are looked
    /// at first, a directory in flight not at all, a finished one only when its recheck is due (a slice
    /// per scan, every one within `watch.recheck_sec`). The intents of every directory that became stable
    /// are committed in one transaction (they join the agenda, to be submitted now).
    pub(super) fn scan(&mut self, agenda: &mut Agenda, now: Millis) {
        let Some(changed) = self.list_root(now) else {
            return;
        };
        let names = self.memory.listing.lend();
        if changed {
            self.settling.keep_only(&names);
        }
        self.memory.known.keep_only(&names);
        // A root read again (changed, or read whole after a while) or a view read again: every name is
        // passed over. Else only the names whose look is due.
        let whole = changed || self.memory.listing.was_read || self.memory.known.reloaded;
        let stable = if whole {
            self.memory.known.reloaded = false;
            self.look_these(names.iter(), now)
        } else {
            self.look_due(&names, now)
        };
        self.memory.listing.put_back(names);
        if let Some(stable) = stable {
            self.commit_intents(stable, agenda);
        }
    }

    /// Looks at the directories whose look is due while the root's listing is unchanged: the same looks
    /// as a pass over every name, for the names taken from the schedule ([`super::known::Known::take_due`]);
    /// every one still due afterwards is put back (also when the ledger failed halfway).
    fn look_due(&mut self, names: &[OsString], now: Millis) -> Option<Vec<Ready>> {
        let due = self.memory.known.take_due(now);
        let listed = due.iter().filter(|n| names.binary_search(n).is_ok());
        let stable = self.look_these(listed, now);
        for name in &due {
            self.memory.known.still_due(name, now);
        }
        stable
    }

    /// Looks at each of `names` whose look is due, new names first (a new directory never waits behind the
    /// rechecks of finished ones); returns the stable ones, or `None` when the ledger failed.
    fn look_these<'n>(
        &mut self,
        names: impl Iterator<Item = &'n OsString>,
        now: Millis,
    ) -> Option<Vec<Ready>> {
        let mut due = Vec::new();
        let mut stable = Vec::new();
        for name in names {
            let latest = match self.recall(name, now) {
                Ok(Recall::Idle) => continue,
                Ok(Recall::Due(latest)) => {
                    due.push((name, latest));
                    continue;
                }
                Ok(Recall::New) => None,
                Err(LedgerDown) => return None,
            };
            match self.look(name, latest, now) {
                Ok(Look::Stable(ready)) => stable.push(ready),
                Ok(Look::Wait) => {}
                Err(LedgerDown) => return None,
            }
        }
        for (name, latest) in due {
            match self.look(name, latest, now) {
                Ok(Look::Stable(ready)) => stable.push(ready),
                Ok(Look::Wait) => {}
                Err(LedgerDown) => return None,
            }
        }
        Some(stable)
    }

    /// Lists the root into the reused listing; `Some(changed)` when it was listed.
    fn list_root(&mut self, now: Millis) -> Option<bool> {
        // Listing the held descriptor of a root that was unmounted or replaced would show the old tree (or
        // nothing) instead of what the path shows to jobs: check first.
        if !self.root_usable() {
            return None;
        }
        let root = &self.cfg.watch.root;
        let (wall, mono) = (self.clock.wall(), self.clock.mono());
        match self.memory.listing.list_at(&self.root, wall, mono) {
            Ok(changed) => {
                let n = self.memory.listing.names().len();
                self.observers.scanned(n, self.clock.wall());
                say::root_back(root, self.health.scan.succeeded(now));
                Some(changed)
            }
            Err(e) => {
                say::root_failed(root, &e, self.health.scan.failed(now));
                None
            }
        }
    }

    /// What memory says of a listed directory, before any file-system call (one lookup): a directory in
    /// flight needs nothing, a finished one nothing until its recheck is due.
    fn recall(&mut self, name: &OsString, now: Millis) -> Result<Recall, LedgerDown> {
        let entry = match self.memory.known.entry(&self.ledger, name, now) {
            Ok(e) => e,
            Err(e) => {
                self.ledger_failed("reading a directory's record", &e);
                return Err(LedgerDown);
            }
        };
        let Some(l) = entry.latest else {
            // Not ready when last looked at: again after its back-off.
            if now < entry.recheck_at {
                return Ok(Recall::Idle);
            }
            return Ok(Recall::New);
        };
        if l.state.is_active() {
            if self.settling.tracker.is_settling() {
                self.settling.tracker.forget(name);
            }
            return Ok(Recall::Idle);
        }
        if now < entry.recheck_at {
            return Ok(Recall::Idle);
        }
        let next = now + ms(self.cfg.watch.recheck);
        self.memory.known.recheck_at(name, next);
        Ok(Recall::Due(entry.latest))
    }

    /// Looks at one directory that [`Daemon::recall`] did not settle from memory (`latest`: its latest
    /// record): a single lstat of a finished one's ready-file, and only new candidates get the lock probe.
    fn look(
        &mut self,
        name: &OsString,
        latest: Option<DirLatest>,
        now: Millis,
    ) -> Result<Look, LedgerDown> {
        // Only now, for a directory that is looked at: 100,000 paths built per scan would cost more than
        // the listing.
        let path = self.cfg.watch.root.join(name);
        if latest.is_none() && self.surely_unready(name, &path, now) {
            return Ok(Look::Wait);
        }
        let sub = match scan::open_dir(&self.root, name) {
            Ok(Some(sub)) => sub,
            Ok(None) => {
                self.settling.tracker.forget(name);
                return Ok(Look::Wait);
            }
            Err(e) => {
                say::look_failed(&path, "open the directory", &e);
                return Ok(Look::Wait);
            }
        };
        // A finished directory: its markers first; temporaries and quiescence only for a new generation.
        let depth = match latest {
            Some(_) => scan::Depth::Markers,
            None => scan::Depth::Full,
        };
        let Some(mut marker) = self.markers(name, &path, &sub, depth, now) else {
            return Ok(Look::Wait);
        };
        let dir_dev_ino = sub.ident().dev_ino();
        if latest.is_none() && self.renamed(name, dir_dev_ino, marker.identity)? {
            self.settling.tracker.forget(name);
            return Ok(Look::Wait);
        }
        let verdict =
            |m: &Marker| engine::generation_verdict(latest.map(|l| (l.state, l.ready)), m.identity);
        if verdict(&marker) != GenerationVerdict::New {
            self.settling.tracker.forget(name);
            return Ok(Look::Wait);
        }
        if depth == scan::Depth::Markers {
            match self.markers(name, &path, &sub, scan::Depth::Full, now) {
                Some(m) if verdict(&m) == GenerationVerdict::New => marker = m,
                _ => return Ok(Look::Wait),
            }
        }
        // A new generation is looked at every scan until it is stable.
        self.memory.known.looked_ready(name, now);
        self.settle(name, &sub, latest.map(|l| l.id), marker, now)
    }

    /// With markers that are plain names and nothing else to look for (the simple form), a directory
    /// none of whose markers exists is not ready: one `openat2` per marker instead of a look (100,000
    /// empty directories are 100,000 looks per back-off). True when that settled it.
    fn surely_unready(&mut self, name: &OsString, path: &std::path::Path, now: Millis) -> bool {
        let rules = &self.cfg.watch.ready;
        if rules.needs_listing() {
            return false;
        }
        let markers = rules.alternatives.iter().flatten();
        for m in markers {
            if self.root.has_in(name, m.as_ref()) != Some(false) {
                return false;
            }
        }
        let missing = rules.alternatives.iter().min_by_key(|a| a.len()).cloned();
        let why = NotReady::Markers {
            missing: missing.unwrap_or_default(),
            have: Vec::new(),
            since_ns: None,
        };
        self.not_ready(name, path, why);
        self.back_off(name, scan::Depth::Full, now);
        true
    }

    /// One look at a directory's markers by the readiness rules (`depth`: the markers alone, or all the
    /// rules ask for); `None` when it is not ready (said, and its next look put off) or cannot be looked at.
    fn markers(
        &mut self,
        name: &OsString,
        path: &std::path::Path,
        sub: &SubDir,
        depth: scan::Depth,
        now: Millis,
    ) -> Option<Marker> {
        let rules = &self.cfg.watch.ready;
        let seen = match scan::gather_at(sub, rules, depth, self.clock.wall()) {
            Ok(seen) => seen,
            Err(e) => {
                self.cannot_look(name, path, "look at the ready-file", &e);
                // 100,000 directories nobody may read would otherwise cost a core.
                self.back_off(name, depth, now);
                return None;
            }
        };
        let decision = engine::readiness::decide(rules, &seen);
        if depth == scan::Depth::Full {
            let stale = engine::readiness::stale_temporaries(rules, &seen);
            self.stale(name, path, stale);
        }
        match decision {
            ReadyDecision::Ready {
                primary,
                primary_name,
                fingerprint,
            } => {
                if let Some(was) = self.settling.held.remove(name) {
                    say::no_longer_held(path, &was);
                }
                Some(Marker {
                    identity: primary,
                    name: primary_name,
                    fingerprint,
                })
            }
            ReadyDecision::NotReady(why) => {
                self.not_ready(name, path, why);
                self.back_off(name, depth, now);
                None
            }
        }
    }

    /// A look found `name` not ready, or could not look: its next look is put off (a finished directory's
    /// markers alone keep their recheck period).
    fn back_off(&mut self, name: &OsString, depth: scan::Depth, now: Millis) {
        if depth == scan::Depth::Full {
            let w = &self.cfg.watch;
            let (poll, max) = (w.poll_interval, w.unready_backoff_max);
            self.memory.known.unready(name, now, poll, max);
        }
    }

    /// Transfer temporaries in `name` that have not changed for `watch.stale_temporary_sec` (or none):
    /// said once, as a warning, with how long; counted by the metrics while they are there.
    fn stale(
        &mut self,
        name: &OsString,
        path: &std::path::Path,
        stale: Option<(Vec<String>, std::time::Duration)>,
    ) {
        match stale {
            Some((names, unchanged)) => {
                if self.settling.told_stale.insert(name.clone()) {
                    let blocks = self.cfg.watch.ready.stale_blocks;
                    say::stale_temporaries(path, &names, unchanged, blocks);
                }
            }
            None => {
                self.settling.told_stale.remove(name);
            }
        }
    }

    /// A directory the readiness rules do not call ready: a missing marker is the normal wait (silent); a
    /// failed status file, transfer temporaries or too many entries are said once per reason and shown by
    /// `status`.
    fn not_ready(&mut self, name: &OsString, path: &std::path::Path, why: NotReady) {
        self.settling.forget(name);
        if matches!(why, NotReady::Markers { .. }) {
            if let Some(was) = self.settling.held.remove(name) {
                say::no_longer_held(path, &was);
            }
            return;
        }
        let again = self
            .settling
            .held
            .get(name)
            .is_some_and(|w| w.code() == why.code());
        if !again {
            say::held_back(path, &why);
            // A status file that says the run failed is an end: its people are told (once per reason,
            // as it is said; a restart may tell them again).
            if matches!(why, NotReady::ContentFailed { .. }) {
                let wall = self.clock.wall();
                let reason = why.words();
                let q = self.notices_for(Fact::held(name, &reason, wall));
                if let Err(e) = self.ledger.queue_notices(None, &q.rows(), wall) {
                    self.ledger_failed("queueing a notice", &e);
                }
            }
        }
        self.settling.held.insert(name.clone(), why);
    }

    /// A new generation's markers: probe the lock of the first one and count the look toward stability.
    fn settle(
        &mut self,
        name: &OsString,
        sub: &SubDir,
        latest: Option<i64>,
        marker: Marker,
        now: Millis,
    ) -> Result<Look, LedgerDown> {
        let identity = marker.identity;
        let path = self.cfg.watch.root.join(name);
        let probe = if self.flock_works {
            scan::probe_lock(sub, &marker.name)
        } else {
            Ok(engine::LockProbe::CannotCheck)
        };
        let lock = match probe {
            Ok(l) => l,
            Err(e) => {
                self.cannot_look(name, &path, "open the ready-file", &e);
                return Ok(Look::Wait);
            }
        };
        if self.settling.unreadable.remove(name).is_some() {
            say::readable_again(&path);
        }
        let obs = ReadyObservation {
            dir: name.clone(),
            identity,
            lock,
            fingerprint: marker.fingerprint,
        };
        let policy = StabilityPolicy {
            checks: self.cfg.watch.stability_checks,
            interval: self.cfg.watch.stability_interval,
            quiet: self.cfg.watch.ready.quiet,
        };
        Ok(match self.settling.tracker.observe(&obs, now, policy) {
            Readiness::Settling { seen, changed } => {
                say::settling(&path, seen, changed);
                Look::Wait
            }
            Readiness::Locked => {
                if self.settling.told_locked.insert(name.clone()) {
                    say::locked(&path);
                }
                Look::Wait
            }
            Readiness::Quieting { unchanged } => {
                say::quieting(&path, unchanged, self.cfg.watch.ready.quiet);
                Look::Wait
            }
            Readiness::Stable => Look::Stable(Ready {
                name: name.clone(),
                latest,
                identity,
                dir_dev_ino: sub.ident().dev_ino(),
            }),
        })
    }

    /// Whether `name`, which has no record of its own, is a directory with a record under another name:
    /// the same directory (device and inode) renamed within the root, with the same ready-file, or with
    /// its job still in flight. Such a directory is not submitted again (said once).
    fn renamed(
        &mut self,
        name: &OsString,
        dir_dev_ino: (u64, u64),
        identity: ReadyIdentity,
    ) -> Result<bool, LedgerDown> {
        let prev = match self.ledger.latest_for_dir_ident(dir_dev_ino) {
            Ok(p) => p,
            Err(e) => {
                self.ledger_failed("reading a directory's record", &e);
                return Err(LedgerDown);
            }
        };
        let Some(prev) = prev.filter(|p| p.dir != *name) else {
            return Ok(false);
        };
        // A ready-file replaced after the rename, with the old job finished, is new data.
        if !prev.state.is_active() && prev.ready != identity {
            return Ok(false);
        }
        if self.settling.told_renamed.insert(name.clone()) {
            say::renamed(&self.cfg.watch.root.join(name), &self.path_of(&prev), &prev);
        }
        Ok(true)
    }

    /// A ready-file that cannot be looked at (the instrument's umask 077, a directory without `x` for the
    /// service): said once per directory (the rest at debug), shown by `status` through the daemon's
    /// snapshot; looked at again on the back-off of a directory that is not ready.
    fn cannot_look(
        &mut self,
        name: &OsString,
        path: &std::path::Path,
        what: &str,
        e: &std::io::Error,
    ) {
        let problem = format!("cannot {what}: {e}");
        if self
            .settling
            .unreadable
            .insert(name.clone(), problem)
            .is_none()
        {
            say::unreadable(path, what, e);
        } else {
            say::look_failed(path, what, e);
        }
    }

    /// Commits the intents of one scan in one transaction; each joins the agenda.
    fn commit_intents(&mut self, stable: Vec<Ready>, agenda: &mut Agenda) {
        if stable.is_empty() {
            return;
        }
        for r in &stable {
            self.settling.forget(&r.name);
            self.settling.told_stale.remove(&r.name);
            if let Some(Ok(Some(prev))) = r.latest.map(|id| self.ledger.get(id)) {
                say::new_generation(&self.cfg.watch.root.join(&r.name), &prev);
            }
        }
        let prefix = &self.cfg.job.job_name_prefix;
        let job_names: Vec<String> = stable
            .iter()
            .map(|r| engine::job_name(prefix, &r.name))
            .collect();
        let wall = self.clock.wall();
        let news: Vec<NewGeneration<'_>> = stable
            .iter()
            .zip(&job_names)
            .map(|(r, job_name)| NewGeneration {
                dir: &r.name,
                ready: r.identity,
                dir_dev_ino: Some(r.dir_dev_ino),
                attempt: 1,
                job_name,
                not_before: wall,
            })
            .collect();
        match self.ledger.insert_intents(&news, wall) {
            Ok(records) => {
                self.ledger_ok();
                let (now, recheck) = (self.clock.mono(), self.cfg.watch.recheck);
                for g in records {
                    say::intent(&self.path_of(&g), &g.key);
                    self.memory.known.recorded(&g, now, recheck);
                    self.memory.flight.put(g.clone());
                    agenda.add(g, wall);
                }
            }
            Err(e) => self.ledger_failed("recording submission intents", &e),
        }
    }

    /// Step 5: `sbatch` for every intent that is due, unless submissions are held after a failure, in
    /// chunks of [`SUBMIT_CHUNK`] with up to `job.submit_concurrency` calls at once (fewer while the
    /// controller is slow), within the budget of `job.submit_rate` if one is set. Every intent is
    /// committed, and marked started, before its `sbatch`. A signal is honoured between two submissions,
    /// never inside one: a stop ends the batch (calls running finish and are recorded), a reload ends it
    /// too and is carried out at once by the loop (the rest follow with the new config).
    pub(super) fn submit(&mut self, mut agenda: Agenda, events: &Receiver<Event>) -> Flow {
        let now = self.clock.mono();
        let due = agenda.take_due();
        if self.schedule.held(now) {
            self.schedule.intents(agenda.next_due, !due.is_empty());
            return Flow::Continue;
        }
        // A job for a directory under a root that is not there would fail (or run elsewhere): the intents
        // stay committed and are submitted once the root is back.
        if !due.is_empty() && !self.root_usable() {
            self.schedule.intents(agenda.next_due, false);
            return Flow::Continue;
        }
        if !due.is_empty() && !self.output_ready() {
            // Checked again when the hold ends; the intents stay as they are.
            self.schedule.hold(now, self.cfg.watch.poll_interval);
            self.schedule.intents(agenda.next_due, true);
            return Flow::Continue;
        }
        self.schedule.intents(agenda.next_due, false);
        let (arrays, due) = self.array_groups(due);
        if let Some(flow) = self.submit_arrays(&arrays, &agenda, events) {
            return flow;
        }
        let mut rest = &due[..];
        while !rest.is_empty() {
            match events.try_recv() {
                Ok(Event::Terminate) => return Flow::Stop,
                Ok(Event::Reload) => return Flow::Reload,
                Err(_) => {}
            }
            if !self.may_act() {
                // The lease may have run out: the next cycle renews it, or steps down.
                return Flow::Continue;
            }
            let now = self.clock.mono();
            let want = rest.len().min(SUBMIT_CHUNK);
            let n = match &mut self.pacing.bucket {
                Some(b) => b.take(want, now),
                None => want,
            };
            if n == 0 {
                // The budget is spent: the rest go when the bucket holds a token again.
                let at = self
                    .pacing
                    .bucket
                    .as_ref()
                    .map_or(now, |b| b.next_token(now));
                let wait = std::time::Duration::from_millis((at - now).max(0) as u64);
                say::submit_budget_spent(rest.len(), wait);
                self.schedule.hold(now, wait);
                self.schedule.intents(agenda.next_due, true);
                return Flow::Continue;
            }
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            match self.submit_chunk(chunk, events) {
                ChunkEnd::Done => {}
                ChunkEnd::Held => {
                    // The scheduler failed or limits: the rest wait for the hold to end.
                    self.schedule.intents(agenda.next_due, true);
                    return Flow::Continue;
                }
                ChunkEnd::Signal(flow) => return flow,
                ChunkEnd::LedgerDown => return Flow::Continue,
            }
        }
        Flow::Continue
    }

    /// One chunk: marked started in one transaction, submitted (concurrently where the scheduler can),
    /// the job ids recorded in one transaction. A record an operator cancelled or forgot since the cycle
    /// read it is not submitted; a call that never started is unmarked (no job can exist); a failure holds
    /// submissions; a rate limit lowers the pace and pauses, failing nothing.
    fn submit_chunk(&mut self, chunk: &[Generation], events: &Receiver<Event>) -> ChunkEnd {
        let Ok(live) = self.mark_chunk(chunk) else {
            return ChunkEnd::LedgerDown;
        };
        if live.is_empty() {
            return ChunkEnd::Done;
        }
        let ids: Vec<i64> = live.iter().map(|g| g.id).collect();
        if !self.may_act() {
            // Paused between the marks and here past the lease: another daemon may own these records
            // now. No `sbatch`; the marks go back if the ledger still lets this daemon write.
            let r = self.ledger.unmark_sbatch_started(&ids, self.clock.wall());
            let _ = self.commit("recording submissions that did not start", r);
            return ChunkEnd::LedgerDown;
        }
        let specs: Vec<JobSpec> = live
            .iter()
            .map(|g| JobSpec {
                dir_path: self.path_of(g),
                job_name: g.job_name.clone(),
                key: g.key.clone(),
            })
            .collect();
        let mut answers = Vec::with_capacity(live.len());
        let mut signal = None;
        let width = self.pacing.pace.width();
        let observers = &mut self.observers;
        let lead = self.lead.as_ref();
        let scheduler = self.sched.name();
        let started = self.sched.submit_many(&specs, width, &mut |i, r, took| {
            let ok = r.is_ok();
            // At `-v`, as queries and lookups are (`observers.timed`): submissions run in parallel,
            // so each is said when its answer comes back.
            let failed = r.as_ref().err().map(|e| e as &dyn std::fmt::Display);
            let job = r.as_ref().ok().map(String::as_str);
            say::submit_call(scheduler, &specs[i], job, took, failed);
            observers.called(Call::Submit, took, ok);
            if ok {
                observers.submitted();
            }
            answers.push((i, r, took));
            // No further `sbatch` once the lease may have run out (the marks of the rest go back).
            if !ok || lead.is_some_and(|l| !l.may_act()) {
                return false;
            }
            match events.try_recv() {
                Ok(Event::Terminate) => signal = Some(Flow::Stop),
                Ok(Event::Reload) => signal = Some(Flow::Reload),
                Err(_) => return true,
            }
            false
        });
        let (now, wall) = (self.clock.mono(), self.clock.wall());
        let mut unmark: Vec<i64> = ids[started..].to_vec();
        if let Some(b) = &mut self.pacing.bucket {
            b.give_back(unmark.len());
        }
        let (done, failed, limited) = self.sort_answers(answers, &live, &mut unmark);
        let recorded = self.record_answers(&live, &done, wall);
        let unmarked = self.unmark_started(&unmark, wall);
        if recorded.is_err() || unmarked.is_err() {
            return ChunkEnd::LedgerDown;
        }
        let held = !failed.is_empty() || limited.is_some();
        for (i, err) in failed {
            let g = &live[i];
            self.submit_failed(g, &self.path_of(g), &err, now, wall);
        }
        if let Some((i, m)) = limited {
            let waiting = unmark.len();
            say::submit_rate_limited(
                &self.path_of(&live[i]),
                &m,
                waiting,
                engine::pace::LIMITED_PAUSE,
            );
            let until = now + ms(engine::pace::LIMITED_PAUSE);
            if !self.schedule.held(until - 1) {
                self.schedule.hold(now, engine::pace::LIMITED_PAUSE);
            }
        }
        match signal {
            _ if held => ChunkEnd::Held,
            Some(flow) => ChunkEnd::Signal(flow),
            None => ChunkEnd::Done,
        }
    }

    /// Marks a chunk's intents started in one transaction; returns those still waiting (an intent an
    /// operator cancelled or forgot since the cycle read it is not submitted, and said so).
    pub(super) fn mark_chunk(
        &mut self,
        chunk: &[Generation],
    ) -> Result<Vec<Generation>, LedgerDown> {
        let ids: Vec<i64> = chunk.iter().map(|g| g.id).collect();
        let marked = match self
            .ledger
            .mark_sbatch_started_many(&ids, self.clock.wall())
        {
            Ok(m) => m,
            Err(e) => {
                self.ledger_failed("recording submission attempts", &e);
                return Err(LedgerDown);
            }
        };
        self.ledger_ok();
        // Uncertain from now until the answers are recorded: in memory too, before any `sbatch` runs.
        self.reread(&ids);
        if self.memory.flight_stale {
            return Err(LedgerDown);
        }
        let mut live = Vec::with_capacity(chunk.len());
        for (g, waiting) in chunk.iter().zip(marked) {
            if waiting {
                live.push(g.clone());
            } else {
                say::submission_withdrawn(&self.path_of(g));
            }
        }
        Ok(live)
    }

    /// Sorts a chunk's answers into jobs, failures and (the first) rate-limit refusal, adjusting the pace
    /// by each answer's time and words; a rate-limited intent joins `unmark` (no job exists for it).
    fn sort_answers(
        &mut self,
        answers: Vec<(usize, Result<String, SubmitError>, std::time::Duration)>,
        live: &[Generation],
        unmark: &mut Vec<i64>,
    ) -> Sorted {
        let mut sorted: Sorted = (Vec::new(), Vec::new(), None);
        for (i, r, took) in answers {
            let text = r.as_ref().err().map(ToString::to_string);
            self.pace_answered(took, text.as_deref());
            match r {
                Ok(job) => sorted.0.push((i, job)),
                // Refused for the rate: no job exists, and the directory has done nothing wrong.
                Err(SubmitError::Refused(m)) if engine::pace::is_rate_limited(&m) => {
                    unmark.push(live[i].id);
                    sorted.2.get_or_insert((i, m));
                }
                Err(err) => sorted.1.push((i, err)),
            }
        }
        sorted
    }

    /// Records the job ids of a chunk's successful calls, each with its notices, in one transaction, then
    /// says so (job name and output file included).
    pub(super) fn record_answers(
        &mut self,
        chunk: &[Generation],
        done: &[(usize, String)],
        wall: Millis,
    ) -> Result<(), LedgerDown> {
        if done.is_empty() {
            return Ok(());
        }
        let now = self.clock.mono();
        say::submissions_back(self.health.submit.succeeded(now));
        if self.health.rejected.cleared(now).is_some() {
            self.observers.refusing(None);
        }
        let queued: Vec<_> = done
            .iter()
            .map(|(i, job)| {
                self.notices_for(Fact {
                    job_id: Some(job),
                    ..Fact::of(EventKind::Submitted, &chunk[*i], wall)
                })
            })
            .collect();
        let rows: Vec<(i64, &str, Vec<crate::ledger::NewNotice<'_>>)> = done
            .iter()
            .zip(&queued)
            .map(|((i, job), q)| (chunk[*i].id, job.as_str(), q.rows()))
            .collect();
        // If this write fails the jobs exist but are not recorded: the records stay uncertain and the key
        // lookup adopts them later; never submitted twice.
        let r = self.ledger.record_submitted_many(&rows, wall);
        drop(rows);
        self.commit("recording job ids", r)?;
        for (i, job) in done {
            let g = &chunk[*i];
            self.moved(g, GenState::Submitted);
            // Unseen from now, on the monotonic clock (see `flight::Sighting::unseen`).
            self.memory.flight.unseen_from(g.id, now);
            let path = self.path_of(g);
            let out = self.output_of(g, job);
            say::submitted(&path, job, g.scheduler_name(), out.as_deref(), g.attempt);
        }
        Ok(())
    }

    /// A failed `sbatch`: back off (all submissions are held), say it — a refusal the config must fix with
    /// its key, again every repeat interval; anything else once per outage — and record it.
    pub(super) fn submit_failed(
        &mut self,
        g: &Generation,
        path: &std::path::Path,
        err: &SubmitError,
        now: Millis,
        wall: Millis,
    ) {
        let policy = BackoffPolicy {
            base: self.cfg.behavior.submit_backoff,
            max: self.cfg.behavior.submit_backoff_max,
        };
        let delay =
            engine::submit_backoff(g.submit_tries + 1, self.health.submit.failures(), policy);
        let edge = self.health.submit.failed(now);
        let (msg, certain) = (err.to_string(), err.is_certain());
        match engine::classify_rejection(&msg).filter(|_| certain) {
            // What the config asks is refused: said with the key to fix, and again every
            // `submit_backoff_max` (the longest gap between two tries) until fixed.
            Some(reason) => {
                let b = &self.cfg.behavior;
                let repeat = b.submit_backoff_max.max(b.submit_backoff);
                let said = self.health.rejected.refused(reason, now, repeat);
                say::submit_refused(path, err, reason, said, now, delay, repeat);
                if said == engine::RejectionEdge::New {
                    self.tell_blocked(g, reason, &msg, wall);
                }
            }
            // Another failure: a configuration refusal seen before no longer explains it, so an
            // outage that follows one is announced as new.
            None => {
                let edge = match self.health.rejected.cleared(now) {
                    Some(_) => OutageEdge::Started,
                    None => edge,
                };
                say::submit_failed(path, err, edge, delay);
            }
        }
        self.observers.refusing(self.health.rejected.current());
        let r = self
            .ledger
            .record_submit_failed(g.id, &msg, certain, wall + ms(delay), wall);
        match r {
            Ok(()) => self.reread(&[g.id]),
            Err(e) => self.ledger_failed("recording a failed submission", &e),
        }
        self.schedule.hold(now, delay);
        // Our own back-off and lost answer run on the monotonic clock from here (a wall step cannot
        // shorten or freeze them).
        self.waits.held.insert(g.id, now + ms(delay));
        if !certain {
            self.waits.lost.insert(g.id, now);
        }
    }
}
