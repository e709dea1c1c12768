//! The agenda of one cycle and the loop's schedule: which records need a key lookup, which jobs are
//! queried, which intents are submitted now, and when the loop must come round again. Built from one read of
//! the ledger's active rows per cycle; the daemon's steps move records along it as they act.
//!
//! Two clocks meet here and are kept apart: records carry wall-clock times (they outlive the process), the
//! [`Schedule`] runs on the monotonic clock (a clock step must not fire or freeze it). Where a record's
//! wall time decides a wait — an intent's `next_try_at` — a back-off this process set itself is timed on
//! the monotonic clock instead ([`Timing::held`]), and any other wait is capped at the longest back-off
//! ([`Timing::longest`]): a wall clock stepped back an hour cannot freeze a record for an hour.

use std::collections::HashMap;
use std::time::Duration;

use super::model::{GenState, Generation};
use super::outage::backoff;
use crate::time::{Millis, ms};

/// The times an agenda is sorted by.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Wall time of the cycle (what the records' times are compared with).
    pub wall: Millis,
    /// Monotonic time of the cycle.
    pub mono: Millis,
    /// The longest a record may wait by its own wall time (`behavior.submit_backoff_max_sec`, the cap of
    /// every back-off): after a wall-clock step back its `next_try_at` lies further ahead than it should.
    pub longest: Millis,
    /// Monotonic due times of the back-offs this process set itself, by record id: no wall step, either
    /// way, moves them.
    pub held: HashMap<i64, Millis>,
}

impl Timing {
    /// Records sorted by their wall times alone (no back-off known, no cap).
    pub fn wall_only(wall: Millis) -> Timing {
        Timing {
            wall,
            mono: 0,
            longest: Millis::MAX,
            held: HashMap::new(),
        }
    }

    /// How long from now until intent `g` may be submitted (zero or less: now).
    fn wait(&self, g: &Generation, wall: Millis) -> Millis {
        match self.held.get(&g.id) {
            Some(&due) => due - self.mono,
            None => g.next_try_at.saturating_sub(wall).min(self.longest),
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing::wall_only(0)
    }
}

/// What one cycle works through, in order: lookups → in flight → due.
#[derive(Debug, Default)]
pub struct Agenda {
    /// Intents whose `sbatch` answer was lost (crash, timeout, garbage): their key is looked up before anything
    /// is submitted again.
    pub lookups: Vec<Generation>,
    /// Jobs in flight: one scheduler query for all of them.
    pub in_flight: Vec<Generation>,
    /// Intents whose `sbatch` is due now (not backing off).
    pub due: Vec<Generation>,
    /// The earliest wall time at which an intent that is not due yet becomes due.
    pub next_due: Option<Millis>,
    /// What the rows were sorted by.
    timing: Timing,
}

impl Agenda {
    /// Sorts the active rows (`Ledger::active`, oldest first) by `timing`.
    pub fn new(active: Vec<Generation>, timing: Timing) -> Agenda {
        let wall = timing.wall;
        let mut a = Agenda {
            timing,
            ..Agenda::default()
        };
        for g in active {
            a.place(g, wall);
        }
        a
    }

    fn place(&mut self, g: Generation, wall: Millis) {
        match g.state {
            GenState::Submitted => self.in_flight.push(g),
            GenState::Submitting if g.uncertain => self.lookups.push(g),
            GenState::Submitting => match self.timing.wait(&g, wall) {
                wait if wait <= 0 => self.due.push(g),
                wait => {
                    let at = wall.saturating_add(wait);
                    self.next_due = Some(self.next_due.map_or(at, |t| t.min(at)));
                }
            },
            GenState::Completed | GenState::Failed | GenState::Lost => {}
        }
    }

    /// A new intent (a stable directory, a retry): due now or later.
    pub fn add(&mut self, g: Generation, wall: Millis) {
        self.place(g, wall);
    }

    /// A lookup found the job of record `id`: it is in flight from now on, and queried in this cycle.
    pub fn adopted(&mut self, id: i64, job_id: &str, wall: Millis) {
        if let Some(mut g) = take(&mut self.lookups, id) {
            g.state = GenState::Submitted;
            g.job_id = Some(job_id.to_string());
            g.submitted_at = Some(wall);
            g.uncertain = false;
            self.in_flight.push(g);
        }
    }

    /// A lookup proved that record `id` has no job: it may be submitted (now, or after its back-off).
    pub fn cleared(&mut self, id: i64, wall: Millis) {
        if let Some(mut g) = take(&mut self.lookups, id) {
            g.uncertain = false;
            self.place(g, wall);
        }
    }

    /// Takes the intents due now, leaving the agenda without them.
    pub fn take_due(&mut self) -> Vec<Generation> {
        std::mem::take(&mut self.due)
    }
}

fn take(list: &mut Vec<Generation>, id: i64) -> Option<Generation> {
    let at = list.iter().position(|g| g.id == id)?;
    Some(list.remove(at))
}

/// What a key lookup's answer means for an uncertain record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupStep {
    /// The job exists: record its id.
    Adopt(String),
    /// No job carries the key yet, but an orphaned or slow `sbatch` may still create it: ask again later.
    Wait,
    /// Every source answered, none has it, and the last attempt is older than the grace period: submit again.
    Clear,
}

/// Decides what a lookup answer means. `unknown_for` is how long (monotonic) the answer has been known to
/// be lost: since the `sbatch` that lost it ended in this process, or since the first lookup after a
/// restart — never less than the real time since that `sbatch`, and moved by no wall-clock step.
pub fn after_lookup(found: Option<String>, unknown_for: Millis, grace: Duration) -> LookupStep {
    match found {
        Some(job) => LookupStep::Adopt(job),
        None if unknown_for < ms(grace) => LookupStep::Wait,
        None => LookupStep::Clear,
    }
}

/// How long after its last `sbatch` attempt an uncertain submission must be unknown to the scheduler before
/// it is submitted again: longer than any `sbatch` can still be on its way (ours are bounded by
/// `job.command_timeout_sec`; one orphaned by a crash by Slurm's own message timeouts, under 30 s).
pub fn lookup_grace(command_timeout: Duration) -> Duration {
    command_timeout.max(Duration::from_secs(30))
}

/// Back-off policy for failed submissions (from `behavior:`).
#[derive(Debug, Clone, Copy)]
pub struct BackoffPolicy {
    /// First delay.
    pub base: Duration,
    /// Cap.
    pub max: Duration,
}

/// How long to wait after a failed `sbatch`: by the longer of the record's own failures (`record_tries`,
/// counting this one) and the ongoing outage's (`outage_failures` before this one), so that a new intent
/// arriving in a long outage does not probe at the base rate.
pub fn submit_backoff(record_tries: u32, outage_failures: u64, policy: BackoffPolicy) -> Duration {
    let outage = u32::try_from(outage_failures)
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    backoff(record_tries.max(outage), policy.base, policy.max)
}

/// Cadence policy (from `watch:`).
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// `watch.poll_interval_sec`: between scans, and between job queries.
    pub poll: Duration,
    /// `watch.stability_interval_sec`: between scans while a ready-file is settling.
    pub stability: Duration,
}

/// The loop's in-memory schedule, in monotonic milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    /// When the root is scanned next.
    next_scan: Millis,
    /// When uncertain submissions are looked up and jobs queried next.
    next_track: Millis,
    /// No `sbatch` before this time: during a submission outage, one probe per back-off step instead of
    /// one connect timeout per pending directory.
    hold_until: Millis,
    /// The earliest wall time at which an intent becomes due, as the last submit step saw it.
    next_due_wall: Option<Millis>,
    /// Intents are due but held: wake when the hold ends.
    due_but_held: bool,
}

/// Scans are never closer together than this, whatever the config says.
const MIN_SCAN_GAP: Duration = Duration::from_millis(50);

impl Schedule {
    /// True when lookups and the job query are due (once per poll interval: during an outage each can take
    /// the scheduler's full timeout).
    pub fn track_due(&self, now: Millis) -> bool {
        now >= self.next_track
    }

    /// Lookups and the query ran at `now`.
    pub fn tracked(&mut self, now: Millis, c: Cadence) {
        self.next_track = now + ms(c.poll);
    }

    /// True when the root is to be listed.
    pub fn scan_due(&self, now: Millis) -> bool {
        now >= self.next_scan
    }

    /// The root was scanned at `now`; while some ready-file is settling the next look comes at the stability
    /// interval, else at the poll interval.
    pub fn scanned(&mut self, now: Millis, settling: bool, c: Cadence) {
        let gap = if settling { c.stability } else { c.poll };
        self.next_scan = now + ms(gap.max(MIN_SCAN_GAP));
    }

    /// Scan at the next cycle (after a reload).
    pub fn rescan(&mut self) {
        self.next_scan = 0;
    }

    /// True while submissions are held after a failed `sbatch`.
    pub fn held(&self, now: Millis) -> bool {
        now < self.hold_until
    }

    /// Holds every submission for `delay` from `now`.
    pub fn hold(&mut self, now: Millis, delay: Duration) {
        self.hold_until = now + ms(delay);
    }

    /// What the submit step left for later: the earliest wall time an intent becomes due, and whether
    /// intents are due but held.
    pub fn intents(&mut self, next_due_wall: Option<Millis>, due_but_held: bool) {
        self.next_due_wall = next_due_wall;
        self.due_but_held = due_but_held;
    }

    /// When the loop must wake (monotonic), at monotonic `now` and wall time `wall`: the next scan, the
    /// next query, the next intent that becomes due, and the end of a hold that keeps due intents waiting.
    pub fn wake(&self, now: Millis, wall: Millis) -> Millis {
        let mut wake = self.next_scan.min(self.next_track);
        if let Some(at) = self.next_due_wall {
            wake = wake.min(now.saturating_add((at - wall).max(0)));
        }
        if self.due_but_held {
            wake = wake.min(self.hold_until);
        }
        wake.max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::ReadyIdentity;

    fn row(id: i64, state: GenState, uncertain: bool, next_try_at: Millis) -> Generation {
        Generation {
            id,
            dir: format!("d{id}").into(),
            ready: ReadyIdentity {
                dev: 1,
                ino: id as u64,
                size: 0,
                mtime_ns: 0,
            },
            dir_dev_ino: None,
            state,
            attempt: 1,
            submit_tries: 0,
            key: format!("dw-x-{id}"),
            job_id: (state == GenState::Submitted).then(|| format!("{}", 100 + id)),
            job_name: format!("dirwatch-d{id}"),
            created_at: 0,
            submitted_at: None,
            finished_at: None,
            seen_at: None,
            next_try_at,
            final_state: None,
            exit_code: None,
            last_error: None,
            uncertain,
            delete_pending: false,
            failure_log_pending: false,
            deleted: false,
            updated_at: 0,
            detail: Default::default(),
            array: None,
        }
    }

    #[test]
    fn one_read_sorts_every_active_row_into_its_step() {
        let a = Agenda::new_at(
            vec![
                row(1, GenState::Submitting, true, 0),
                row(2, GenState::Submitted, false, 0),
                row(3, GenState::Submitting, false, 1_000),
                row(4, GenState::Submitting, false, 9_000),
                row(5, GenState::Submitting, false, 7_000),
            ],
            1_000,
        );
        let ids = |v: &[Generation]| v.iter().map(|g| g.id).collect::<Vec<_>>();
        assert_eq!(ids(&a.lookups), [1]);
        assert_eq!(ids(&a.in_flight), [2]);
        assert_eq!(ids(&a.due), [3]);
        assert_eq!(a.next_due, Some(7_000));
    }

    #[test]
    fn an_adopted_job_is_queried_and_a_cleared_intent_is_submitted_in_the_same_cycle() {
        let mut a = Agenda::new_at(
            vec![
                row(1, GenState::Submitting, true, 0),
                row(2, GenState::Submitting, true, 5_000),
            ],
            1_000,
        );
        a.adopted(1, "77", 1_000);
        assert_eq!(a.in_flight[0].job_id.as_deref(), Some("77"));
        assert_eq!(a.in_flight[0].state, GenState::Submitted);
        a.cleared(2, 1_000);
        assert!(a.due.is_empty(), "still backing off");
        assert_eq!(a.next_due, Some(5_000));
        assert!(a.lookups.is_empty());
    }

    #[test]
    fn a_missing_job_is_believed_only_after_the_grace_period() {
        let grace = Duration::from_secs(30);
        assert_eq!(
            after_lookup(Some("5".into()), 1, grace),
            LookupStep::Adopt("5".into())
        );
        assert_eq!(after_lookup(None, 29_999, grace), LookupStep::Wait);
        assert_eq!(after_lookup(None, 30_000, grace), LookupStep::Clear);
        assert_eq!(lookup_grace(Duration::from_secs(5)), grace);
        assert_eq!(
            lookup_grace(Duration::from_secs(90)),
            Duration::from_secs(90)
        );
    }

    impl Agenda {
        fn new_at(rows: Vec<Generation>, wall: Millis) -> Agenda {
            Agenda::new(rows, Timing::wall_only(wall))
        }
    }

    #[test]
    fn a_wall_clock_step_back_waits_no_longer_than_the_longest_back_off() {
        let hour = 3_600_000;
        // Written at wall 1_000 with a 5 s back-off; the clock then went back an hour.
        let rows = || vec![row(1, GenState::Submitting, false, 6_000)];
        let t = Timing {
            longest: 300_000,
            ..Timing::wall_only(1_000 - hour)
        };
        let a = Agenda::new(rows(), t.clone());
        assert_eq!(
            a.next_due,
            Some(1_000 - hour + 300_000),
            "capped at the longest back-off"
        );
        // The same back-off set by this process: its own monotonic due time holds, whatever the wall says.
        let mut held = t.clone();
        held.mono = 50_000;
        held.held.insert(1, 52_000);
        let a = Agenda::new(rows(), held.clone());
        assert_eq!(a.next_due, Some(1_000 - hour + 2_000));
        held.mono = 52_000;
        assert_eq!(Agenda::new(rows(), held.clone()).due.len(), 1);
        // Stepped forward an hour instead: a back-off this process set is not cut short.
        held.wall = 1_000 + hour;
        held.mono = 51_000;
        let a = Agenda::new(rows(), held);
        assert!(a.due.is_empty());
        assert_eq!(a.next_due, Some(1_000 + hour + 1_000));
    }

    #[test]
    fn a_long_outage_backs_off_new_intents_too() {
        let p = BackoffPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(300),
        };
        assert_eq!(submit_backoff(1, 0, p), Duration::from_secs(5));
        assert_eq!(submit_backoff(3, 0, p), Duration::from_secs(20));
        assert_eq!(
            submit_backoff(1, 3, p),
            Duration::from_secs(40),
            "fourth failure of the outage"
        );
        assert_eq!(submit_backoff(1, 1_000, p), Duration::from_secs(300));
    }

    #[test]
    fn schedule_wakes_for_the_earliest_of_scan_query_and_due_intent() {
        let c = Cadence {
            poll: Duration::from_secs(5),
            stability: Duration::from_secs(1),
        };
        let mut s = Schedule::default();
        assert!(s.scan_due(0) && s.track_due(0));
        s.tracked(0, c);
        s.scanned(0, true, c);
        assert_eq!(s.wake(0, 50_000), 1_000, "settling: the stability interval");
        s.scanned(0, false, c);
        assert_eq!(s.wake(0, 50_000), 5_000);
        s.intents(Some(52_500), false);
        assert_eq!(
            s.wake(0, 50_000),
            2_500,
            "an intent due in 2.5 s (wall) wakes the loop in 2.5 s (monotonic)"
        );
        s.hold(0, Duration::from_secs(3));
        assert!(s.held(2_999) && !s.held(3_000));
        s.intents(None, true);
        assert_eq!(s.wake(0, 50_000), 3_000);
        s.intents(Some(1), false);
        assert_eq!(s.wake(9_000, 50_000), 9_000, "never in the past");
    }
}
