//! The decision core: given what was observed and the time, say what to do. Pure: no clock, no I/O.
//!
//! Owns: ready-file stability tracking, the meaning of scheduler states, the outcome of a finished job
//! (record, delete, log, retry), back-off arithmetic and outage bookkeeping. Must never: read the clock,
//! touch the file system or run a process; time always comes in as a parameter, so tests never sleep.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::Duration;

/// Milliseconds since the Unix epoch: the daemon's one notion of "now", passed in from outside.
pub type Millis = i64;

/// Converts a duration into the millisecond scale used for timestamps.
pub fn ms(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The identity of one ready-file: when any of these change, it is a different file (or still being written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadyIdentity {
    /// `st_dev` of the ready-file.
    pub dev: u64,
    /// `st_ino` of the ready-file.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// Whether a writer holds the ready-file locked, as seen by a non-blocking shared `flock` probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockProbe {
    /// The shared lock was granted (and released at once): no writer holds `LOCK_EX`.
    Free,
    /// A writer holds an exclusive lock.
    Held,
}

/// One look at a ready-file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyObservation {
    /// The subdirectory's name (one path component, raw bytes allowed).
    pub dir: OsString,
    /// What `stat` said.
    pub identity: ReadyIdentity,
    /// What the lock probe said.
    pub lock: LockProbe,
}

/// What the stability tracker concluded about one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Seen unchanged `stability_checks` times, `stability_interval` apart, and unlocked: submit it.
    Stable,
    /// Not yet seen unchanged often enough (first sight, or it changed since the last look).
    Settling {
        /// Consecutive identical observations so far.
        seen: u32,
        /// True when the identity differs from the previous observation (the file is still being written).
        changed: bool,
    },
    /// Unchanged, but a writer holds it locked.
    Locked,
}

/// Stability policy (from `watch:`).
#[derive(Debug, Clone, Copy)]
pub struct StabilityPolicy {
    /// Consecutive identical observations needed (at least 1).
    pub checks: u32,
    /// Minimum spacing of counted observations.
    pub interval: Duration,
}

#[derive(Debug, Clone)]
struct Track {
    identity: ReadyIdentity,
    seen: u32,
    last_counted: Millis,
}

/// Remembers, per directory, the last identity of its ready-file and how many times in a row it was seen.
/// Lives in memory only: after a restart, stability is simply observed again (nothing was submitted yet).
#[derive(Debug, Default)]
pub struct StabilityTracker {
    tracks: HashMap<OsString, Track>,
}

impl StabilityTracker {
    /// Records one observation and says whether the ready-file is now stable.
    pub fn observe(
        &mut self,
        obs: &ReadyObservation,
        now: Millis,
        policy: StabilityPolicy,
    ) -> Readiness {
        let interval = ms(policy.interval);
        let checks = policy.checks.max(1);
        let (seen, changed) = match self.tracks.get_mut(&obs.dir) {
            Some(t) if t.identity == obs.identity => {
                // Observations closer together than the interval do not count: they prove nothing new.
                if now - t.last_counted >= interval {
                    t.seen = t.seen.saturating_add(1);
                    t.last_counted = now;
                }
                (t.seen, false)
            }
            Some(t) => {
                *t = Track {
                    identity: obs.identity,
                    seen: 1,
                    last_counted: now,
                };
                (1, true)
            }
            None => {
                self.tracks.insert(
                    obs.dir.clone(),
                    Track {
                        identity: obs.identity,
                        seen: 1,
                        last_counted: now,
                    },
                );
                (1, false)
            }
        };
        if seen < checks {
            return Readiness::Settling { seen, changed };
        }
        match obs.lock {
            LockProbe::Free => Readiness::Stable,
            LockProbe::Held => Readiness::Locked,
        }
    }

    /// Forgets a directory (submitted, vanished, or its ready-file removed).
    pub fn forget(&mut self, dir: &std::ffi::OsStr) {
        self.tracks.remove(dir);
    }

    /// Keeps only the directories for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&std::ffi::OsStr) -> bool) {
        self.tracks.retain(|d, _| keep(d));
    }

    /// True while some ready-file is being watched for stability (the daemon then scans at the stability
    /// interval instead of the poll interval).
    pub fn is_settling(&self) -> bool {
        !self.tracks.is_empty()
    }

    /// How many directories are being watched.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// True when no directory is being watched.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

/// What a scheduler state means for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPhase {
    /// Not final yet (PENDING, RUNNING, REQUEUED, SUSPENDED, …, or a state we do not know).
    Active,
    /// COMPLETED.
    Completed,
    /// A final state that is not success.
    Failed,
}

/// Classifies a scheduler state word (`sacct` State column, also `CANCELLED by 0`).
///
/// Unknown words are Active: following a job longer is recoverable, declaring it finished is not.
pub fn classify_state(state: &str) -> JobPhase {
    let word = state
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches('+')
        .to_ascii_uppercase();
    match word.as_str() {
        "COMPLETED" => JobPhase::Completed,
        "FAILED" | "CANCELLED" | "TIMEOUT" | "OUT_OF_MEMORY" | "NODE_FAIL" | "PREEMPTED"
        | "BOOT_FAIL" | "DEADLINE" | "REVOKED" | "SPECIAL_EXIT" => JobPhase::Failed,
        _ => JobPhase::Active,
    }
}

/// Lifecycle of one directory generation in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GenState {
    /// The intent to submit is committed; no job id is known yet.
    Submitting,
    /// A job id is known and the job has not reached a final state.
    Submitted,
    /// The job COMPLETED.
    Completed,
    /// The job ended in a failure state.
    Failed,
}

impl GenState {
    /// The word stored in the ledger and shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            GenState::Submitting => "submitting",
            GenState::Submitted => "submitted",
            GenState::Completed => "completed",
            GenState::Failed => "failed",
        }
    }

    /// Parses the stored word.
    pub fn parse(s: &str) -> Option<GenState> {
        Some(match s {
            "submitting" => GenState::Submitting,
            "submitted" => GenState::Submitted,
            "completed" => GenState::Completed,
            "failed" => GenState::Failed,
            _ => return None,
        })
    }

    /// True for states that still need the daemon's attention.
    pub fn is_active(self) -> bool {
        matches!(self, GenState::Submitting | GenState::Submitted)
    }
}

/// What to do with a directory whose ready-file is present, given the latest ledger record for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationVerdict {
    /// Never seen, or the ready-file was replaced since the last finished job: check stability, then submit.
    New,
    /// The latest record is still active: nothing to do here, the job is followed elsewhere.
    InFlight,
    /// Already handled (same ready-file as the finished record): leave it alone.
    Done,
}

/// Decides whether a present ready-file starts a new generation. A finished directory whose ready-file is
/// replaced (new inode, size or mtime: an instrument reusing the name, or an operator touching it again) is
/// a new generation; an unchanged one is never submitted twice.
pub fn generation_verdict(
    latest: Option<(GenState, ReadyIdentity)>,
    current: ReadyIdentity,
) -> GenerationVerdict {
    match latest {
        None => GenerationVerdict::New,
        Some((state, _)) if state.is_active() => GenerationVerdict::InFlight,
        Some((_, id)) if id == current => GenerationVerdict::Done,
        Some(_) => GenerationVerdict::New,
    }
}

/// The final result of a job as reported by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    /// State word as reported (`COMPLETED`, `CANCELLED by 0`, `TIMEOUT`, …).
    pub state: String,
    /// Exit code as `code:signal`.
    pub exit_code: String,
}

/// Outcome policy (from `behavior:`).
#[derive(Debug, Clone, Copy)]
pub struct OutcomePolicy {
    /// Delete the directory after COMPLETED.
    pub delete_on_success: bool,
    /// How many automatic resubmissions a failed generation gets.
    pub max_retries: u32,
    /// Delay before an automatic resubmission (doubled per attempt, capped).
    pub retry_backoff: Duration,
    /// Cap of that delay.
    pub retry_backoff_max: Duration,
}

/// What the daemon must do once a job has ended, in this order: record (with pending effects), then effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomePlan {
    /// The ledger state to commit.
    pub state: GenState,
    /// Delete the directory (only after COMPLETED, only with `delete_on_success`).
    pub delete_dir: bool,
    /// Append a line to the failure log.
    pub log_failure: bool,
    /// Queue a new attempt (a new ledger record) no earlier than this time.
    pub retry_at: Option<Millis>,
}

/// Decides what a finished job means. `attempt` is 1 for the first job of a generation.
pub fn plan_outcome(
    end: &JobEnd,
    attempt: u32,
    now: Millis,
    policy: OutcomePolicy,
) -> Option<OutcomePlan> {
    match classify_state(&end.state) {
        JobPhase::Active => None,
        JobPhase::Completed => Some(OutcomePlan {
            state: GenState::Completed,
            delete_dir: policy.delete_on_success,
            log_failure: false,
            retry_at: None,
        }),
        JobPhase::Failed => {
            let retry_at = (attempt <= policy.max_retries).then(|| {
                now + ms(backoff(
                    attempt,
                    policy.retry_backoff,
                    policy.retry_backoff_max,
                ))
            });
            Some(OutcomePlan {
                state: GenState::Failed,
                delete_dir: false,
                log_failure: true,
                retry_at,
            })
        }
    }
}

/// Capped exponential back-off: `base`, `2·base`, `4·base`, … never above `max`. `failures` counts from 1.
pub fn backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << exp).min(max.max(base))
}

/// Tracks whether a dependency (slurmctld, slurmdbd, the ledger) is failing, so that an outage is reported
/// once when it starts and once when it ends, not on every cycle.
#[derive(Debug, Default, Clone)]
pub struct OutageLatch {
    down_since: Option<Millis>,
    failures: u64,
}

/// What the latch says about the latest call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageEdge {
    /// First failure after a good period: warn now.
    Started,
    /// Another failure during a known outage: stay quiet.
    Continuing,
    /// First success after an outage: say it is over (with its length and failure count).
    Ended {
        /// How long it lasted.
        lasted: Millis,
        /// How many calls failed meanwhile.
        failures: u64,
    },
    /// Success, as before.
    Fine,
}

impl OutageLatch {
    /// Records a failed call.
    pub fn failed(&mut self, now: Millis) -> OutageEdge {
        self.failures += 1;
        if self.down_since.is_none() {
            self.down_since = Some(now);
            OutageEdge::Started
        } else {
            OutageEdge::Continuing
        }
    }

    /// Records a successful call.
    pub fn succeeded(&mut self, now: Millis) -> OutageEdge {
        match self.down_since.take() {
            Some(since) => {
                let failures = std::mem::take(&mut self.failures);
                OutageEdge::Ended {
                    lasted: now - since,
                    failures,
                }
            }
            None => OutageEdge::Fine,
        }
    }

    /// Failed calls since the outage started (0 when there is none).
    pub fn failures(&self) -> u64 {
        self.failures
    }
}

/// Builds the job name `<prefix>-<dir>`, with every character Slurm or a terminal could trip over replaced
/// by `_`, and bounded in length.
pub fn job_name(prefix: &str, dir: &std::ffi::OsStr) -> String {
    let raw = dir.to_string_lossy();
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    format!("{prefix}-{clean}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(size: u64, mtime: i64) -> ReadyIdentity {
        ReadyIdentity {
            dev: 1,
            ino: 7,
            size,
            mtime_ns: mtime,
        }
    }
    fn obs(dir: &str, identity: ReadyIdentity, lock: LockProbe) -> ReadyObservation {
        ReadyObservation {
            dir: dir.into(),
            identity,
            lock,
        }
    }
    const POLICY: StabilityPolicy = StabilityPolicy {
        checks: 2,
        interval: Duration::from_secs(1),
    };

    #[test]
    fn stable_after_two_identical_observations_an_interval_apart() {
        let mut t = StabilityTracker::default();
        let o = obs("a", id(0, 5), LockProbe::Free);
        assert_eq!(
            t.observe(&o, 0, POLICY),
            Readiness::Settling {
                seen: 1,
                changed: false
            }
        );
        assert_eq!(
            t.observe(&o, 500, POLICY),
            Readiness::Settling {
                seen: 1,
                changed: false
            },
            "too soon"
        );
        assert_eq!(t.observe(&o, 1000, POLICY), Readiness::Stable);
    }

    #[test]
    fn growing_file_restarts_the_count() {
        let mut t = StabilityTracker::default();
        assert!(matches!(
            t.observe(&obs("a", id(1, 5), LockProbe::Free), 0, POLICY),
            Readiness::Settling { .. }
        ));
        assert_eq!(
            t.observe(&obs("a", id(2, 6), LockProbe::Free), 1000, POLICY),
            Readiness::Settling {
                seen: 1,
                changed: true
            }
        );
        assert_eq!(
            t.observe(&obs("a", id(2, 6), LockProbe::Free), 2000, POLICY),
            Readiness::Stable
        );
    }

    #[test]
    fn locked_file_waits_and_is_not_dropped() {
        let mut t = StabilityTracker::default();
        let held = obs("a", id(0, 5), LockProbe::Held);
        t.observe(&held, 0, POLICY);
        assert_eq!(t.observe(&held, 1000, POLICY), Readiness::Locked);
        assert_eq!(t.observe(&held, 2000, POLICY), Readiness::Locked);
        assert_eq!(
            t.observe(&obs("a", id(0, 5), LockProbe::Free), 3000, POLICY),
            Readiness::Stable
        );
    }

    #[test]
    fn one_check_means_stable_at_first_sight_when_unlocked() {
        let p = StabilityPolicy {
            checks: 1,
            interval: Duration::ZERO,
        };
        let mut t = StabilityTracker::default();
        assert_eq!(
            t.observe(&obs("a", id(0, 5), LockProbe::Free), 0, p),
            Readiness::Stable
        );
    }

    #[test]
    fn states_are_classified_like_slurm_documents_them() {
        for s in [
            "PENDING",
            "RUNNING",
            "REQUEUED",
            "SUSPENDED",
            "COMPLETING",
            "CONFIGURING",
            "RESIZING",
            "",
            "WEIRD",
        ] {
            assert_eq!(classify_state(s), JobPhase::Active, "{s}");
        }
        assert_eq!(classify_state("COMPLETED"), JobPhase::Completed);
        for s in [
            "FAILED",
            "CANCELLED",
            "CANCELLED by 0",
            "CANCELLED by 1001",
            "TIMEOUT",
            "OUT_OF_MEMORY",
            "NODE_FAIL",
            "PREEMPTED",
            "BOOT_FAIL",
            "DEADLINE",
        ] {
            assert_eq!(classify_state(s), JobPhase::Failed, "{s}");
        }
    }

    #[test]
    fn finished_generation_is_not_resubmitted_but_a_new_ready_file_is() {
        let a = id(0, 5);
        assert_eq!(generation_verdict(None, a), GenerationVerdict::New);
        assert_eq!(
            generation_verdict(Some((GenState::Submitted, a)), id(9, 9)),
            GenerationVerdict::InFlight
        );
        assert_eq!(
            generation_verdict(Some((GenState::Completed, a)), a),
            GenerationVerdict::Done
        );
        assert_eq!(
            generation_verdict(Some((GenState::Failed, a)), a),
            GenerationVerdict::Done
        );
        assert_eq!(
            generation_verdict(Some((GenState::Completed, a)), id(0, 6)),
            GenerationVerdict::New
        );
    }

    const OUT: OutcomePolicy = OutcomePolicy {
        delete_on_success: true,
        max_retries: 0,
        retry_backoff: Duration::from_secs(10),
        retry_backoff_max: Duration::from_secs(60),
    };

    fn end(state: &str) -> JobEnd {
        JobEnd {
            state: state.into(),
            exit_code: "0:0".into(),
        }
    }

    #[test]
    fn completed_deletes_only_when_asked() {
        let p = plan_outcome(&end("COMPLETED"), 1, 0, OUT).unwrap();
        assert!(p.delete_dir && !p.log_failure);
        let keep = OutcomePolicy {
            delete_on_success: false,
            ..OUT
        };
        assert!(
            !plan_outcome(&end("COMPLETED"), 1, 0, keep)
                .unwrap()
                .delete_dir
        );
    }

    #[test]
    fn failure_is_logged_and_retried_only_within_budget() {
        let p = plan_outcome(&end("TIMEOUT"), 1, 0, OUT).unwrap();
        assert_eq!(
            (p.state, p.log_failure, p.delete_dir, p.retry_at),
            (GenState::Failed, true, false, None)
        );
        let two = OutcomePolicy {
            max_retries: 2,
            ..OUT
        };
        assert_eq!(
            plan_outcome(&end("FAILED"), 1, 0, two).unwrap().retry_at,
            Some(10_000)
        );
        assert_eq!(
            plan_outcome(&end("FAILED"), 2, 0, two).unwrap().retry_at,
            Some(20_000)
        );
        assert_eq!(
            plan_outcome(&end("FAILED"), 3, 0, two).unwrap().retry_at,
            None
        );
        assert_eq!(plan_outcome(&end("RUNNING"), 1, 0, two), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = |n| backoff(n, Duration::from_secs(5), Duration::from_secs(60)).as_secs();
        assert_eq!(
            (b(1), b(2), b(3), b(4), b(5), b(100)),
            (5, 10, 20, 40, 60, 60)
        );
    }

    #[test]
    fn outage_is_reported_once_each_way() {
        let mut l = OutageLatch::default();
        assert_eq!(l.succeeded(0), OutageEdge::Fine);
        assert_eq!(l.failed(10), OutageEdge::Started);
        assert_eq!(l.failed(20), OutageEdge::Continuing);
        assert_eq!(
            l.succeeded(50),
            OutageEdge::Ended {
                lasted: 40,
                failures: 2
            }
        );
        assert_eq!(l.succeeded(60), OutageEdge::Fine);
    }

    #[test]
    fn job_names_are_sanitised() {
        assert_eq!(job_name("dirwatch", "case1".as_ref()), "dirwatch-case1");
        assert_eq!(job_name("dw", "a b'$(x)\";\n".as_ref()), "dw-a_b___x____");
    }

    proptest! {
        /// Never delete unless the job COMPLETED, whatever the state word.
        #[test]
        fn never_delete_unless_completed(state in "[A-Z_ a-z0-9]{0,20}", attempt in 1u32..5, del in any::<bool>()) {
            let policy = OutcomePolicy { delete_on_success: del, ..OUT };
            if let Some(p) = plan_outcome(&end(&state), attempt, 0, policy) {
                prop_assert!(!p.delete_dir || classify_state(&state) == JobPhase::Completed);
            }
        }

        /// A ready-file is never declared stable before `checks` observations spanning `(checks-1)·interval`.
        #[test]
        fn never_stable_too_early(checks in 1u32..5, interval in 0u64..2000, steps in proptest::collection::vec(0i64..1500, 1..12)) {
            let policy = StabilityPolicy { checks, interval: Duration::from_millis(interval) };
            let mut t = StabilityTracker::default();
            let o = obs("a", id(0, 5), LockProbe::Free);
            let mut now = 0;
            for (i, step) in steps.iter().enumerate() {
                if i > 0 { now += step; }
                if t.observe(&o, now, policy) == Readiness::Stable {
                    prop_assert!(now >= i64::from(checks - 1) * interval as i64);
                    prop_assert!(i + 1 >= checks as usize);
                    break;
                }
            }
        }

        /// One directory generation never gets a second submission.
        #[test]
        fn one_generation_one_job(size in 0u64..5, mtime in 0i64..5, state_ix in 0usize..4) {
            let states = [GenState::Submitting, GenState::Submitted, GenState::Completed, GenState::Failed];
            let ident = id(size, mtime);
            prop_assert_ne!(generation_verdict(Some((states[state_ix], ident)), ident), GenerationVerdict::New);
        }
    }
}
