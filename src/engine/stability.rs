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
    /// Every marker's identity and, with quiescence, the directory's entries, hashed
    /// ([`super::ReadyDecision::Ready`]); `0` when the rules have neither (the simple form).
    pub fingerprint: u64,
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
    /// Seen unchanged often enough, but the directory has not been quiet for `watch.quiet_sec` yet.
    Quieting {
        /// How long it has been seen unchanged so far.
        unchanged: Millis,
    },
}

/// Stability policy (from `watch:`).
#[derive(Debug, Clone, Copy)]
pub struct StabilityPolicy {
    /// Consecutive identical observations needed (at least 1).
    pub checks: u32,
    /// Minimum spacing of counted observations.
    pub interval: Duration,
    /// How long the directory must have been seen unchanged (`watch.quiet_sec`; zero: not required).
    pub quiet: Duration,
}

#[derive(Debug, Clone)]
struct Track {
    identity: ReadyIdentity,
    fingerprint: u64,
    seen: u32,
    last_counted: Millis,
    /// When this identity and fingerprint were first seen: quiet since then, as far as we know.
    since: Millis,
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
        let fresh = Track {
            identity: obs.identity,
            fingerprint: obs.fingerprint,
            seen: 1,
            last_counted: now,
            since: now,
        };
        let (seen, changed, since) = match self.tracks.get_mut(&obs.dir) {
            Some(t) if t.identity == obs.identity && t.fingerprint == obs.fingerprint => {
                // Observations closer together than the interval do not count: they prove nothing new.
                if now - t.last_counted >= interval {
                    t.seen = t.seen.saturating_add(1);
                    t.last_counted = now;
                }
                (t.seen, false, t.since)
            }
            Some(t) => {
                *t = fresh;
                (1, true, now)
            }
            None => {
                self.tracks.insert(obs.dir.clone(), fresh);
                (1, false, now)
            }
        };
        if seen < checks {
            return Readiness::Settling { seen, changed };
        }
        // Quiet since first seen unchanged: what happened before the first look is unknown.
        let unchanged = now - since;
        if unchanged < ms(policy.quiet) {
            return Readiness::Quieting { unchanged };
        }
        match obs.lock {
            LockProbe::Free | LockProbe::CannotCheck => Readiness::Stable,
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
            fingerprint: 0,
        }
    }
    const POLICY: StabilityPolicy = StabilityPolicy {
        checks: 2,
        interval: Duration::from_secs(1),
        quiet: Duration::ZERO,
    };

    #[test]
    fn quiet_sec_waits_until_nothing_changed_for_that_long() {
        let p = StabilityPolicy {
            quiet: Duration::from_secs(10),
            ..POLICY
        };
        let mut t = StabilityTracker::default();
        let at = |fp| ReadyObservation {
            fingerprint: fp,
            ..obs("a", id(0, 5), LockProbe::Free)
        };
        t.observe(&at(1), 0, p);
        assert_eq!(
            t.observe(&at(1), 1000, p),
            Readiness::Quieting { unchanged: 1000 }
        );
        // The copy beside the ready-file goes on: the count and the quiet time start again.
        assert!(matches!(
            t.observe(&at(2), 5000, p),
            Readiness::Settling { changed: true, .. }
        ));
        assert_eq!(
            t.observe(&at(2), 14_000, p),
            Readiness::Quieting { unchanged: 9000 }
        );
        assert_eq!(t.observe(&at(2), 15_000, p), Readiness::Stable);
    }

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
            quiet: Duration::ZERO,
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
            let policy = StabilityPolicy { checks, interval: Duration::from_millis(interval), quiet: Duration::ZERO };
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
