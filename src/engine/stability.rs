//! Ready-file stability: a ready-file is submitted only after `stability_checks` identical looks,
//! `stability_interval` apart, with no writer holding it locked. Times are monotonic milliseconds.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::Duration;

use super::model::{LockProbe, ReadyIdentity};
use crate::time::{Millis, ms};

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
    /// Every ready-file being watched, with its consecutive identical looks so far (for the daemon's
    /// snapshot; order unspecified).
    pub fn looks(&self) -> impl Iterator<Item = (&OsString, u32)> + '_ {
        self.tracks.iter().map(|(d, t)| (d, t.seen))
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(size: u64, mtime: i64) -> ReadyIdentity {
        ReadyIdentity::sample(size, mtime)
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

    proptest! {
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
    }
}
