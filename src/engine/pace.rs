//! The pace of the loop's work at scale: how many `sbatch` calls may go now (the optional token bucket of
//! `job.submit_rate`, and how many at once while the controller is slow or rate-limits), and when a finished
//! directory's ready-file is looked at again (`watch.recheck_sec`, spread over the period), and when one that is
//! not ready is (`watch.unready_backoff_max_sec`).
//!
//! Pure: time comes in as monotonic milliseconds. Must never: read the clock, sleep, or decide that a
//! directory failed — a controller that slows down or says "rate limit" lowers the pace, nothing else.

use std::time::Duration;

use crate::time::{Millis, ms};

/// A token bucket: at most `burst` calls at once, refilled at `per_sec` calls per second. In any window of
/// length `t` it allows at most `burst + per_sec × t` calls.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    per_sec: f64,
    tokens: f64,
    at: Millis,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(burst: u32, per_sec: f64, now: Millis) -> TokenBucket {
        TokenBucket {
            burst: f64::from(burst.max(1)),
            per_sec,
            tokens: f64::from(burst.max(1)),
            at: now,
        }
    }

    fn refill(&mut self, now: Millis) {
        if now > self.at {
            let gained = (now - self.at) as f64 / 1000.0 * self.per_sec;
            self.tokens = (self.tokens + gained).min(self.burst);
            self.at = now;
        }
    }

    /// Takes up to `want` tokens at `now`; returns how many were taken.
    pub fn take(&mut self, want: usize, now: Millis) -> usize {
        self.refill(now);
        // A token is whole or absent: the small epsilon keeps 0.9999… from a float sum counting as none.
        let whole = (self.tokens + 1e-9).floor().max(0.0) as usize;
        let n = want.min(whole);
        self.tokens -= n as f64;
        n
    }

    /// Gives back `n` tokens taken but not used (a stop came before the calls started).
    pub fn give_back(&mut self, n: usize) {
        self.tokens = (self.tokens + n as f64).min(self.burst);
    }

    /// When (monotonic) the next whole token is there, from `now`.
    pub fn next_token(&self, now: Millis) -> Millis {
        let missing = (1.0 - self.tokens).max(0.0);
        let wait = (missing / self.per_sec * 1000.0).ceil() as Millis;
        now.max(self.at) + wait.max(1)
    }
}

/// What an `sbatch` answer says about the controller's pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaceSignal {
    /// Answered (job id or refusal) in the usual time.
    Quick,
    /// Answered, but slowly (the controller is busy, or Slurm's limiter made the client wait).
    Slow,
    /// The controller said it is busy or rate-limiting: no job was created, try again shortly.
    Limited,
}

/// How slow an answer must be to count as [`PaceSignal::Slow`].
pub const SLOW_ANSWER: Duration = Duration::from_secs(2);

/// How long submissions pause after the controller said "rate limit" or "busy".
pub const LIMITED_PAUSE: Duration = Duration::from_secs(2);

/// Whether an `sbatch` error text says the controller is rate-limiting or too busy (Slurm's
/// `rl_enable` limiter, `ESLURM_RPC_RATE_LIMITED`, `EAGAIN` from a saturated controller).
pub fn is_rate_limited(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("rate limit")
        || e.contains("rpc_rate_limit")
        || e.contains("resource temporarily unavailable")
        || e.contains("slurmctld is busy")
        || e.contains("too many pending rpcs")
}

/// The number of `sbatch` calls at once: additive increase while answers are quick, halved when the
/// controller is slow or limits, never above the configured `job.submit_concurrency`, never below 1.
#[derive(Debug, Clone)]
pub struct SubmitPace {
    max: usize,
    width: usize,
}

impl SubmitPace {
    /// At full width `max` (`job.submit_concurrency`).
    pub fn new(max: u32) -> SubmitPace {
        let max = (max as usize).max(1);
        SubmitPace { max, width: max }
    }

    /// Calls at once now.
    pub fn width(&self) -> usize {
        self.width
    }

    /// A new configured maximum (after a reload); the width stays as low as it was, if lower.
    pub fn set_max(&mut self, max: u32) {
        self.max = (max as usize).max(1);
        self.width = self.width.min(self.max);
    }

    /// One answer's signal. Returns true when the width changed.
    pub fn answered(&mut self, s: PaceSignal) -> bool {
        let before = self.width;
        self.width = match s {
            PaceSignal::Quick => (self.width + 1).min(self.max),
            PaceSignal::Slow | PaceSignal::Limited => (self.width / 2).max(1),
        };
        self.width != before
    }
}

/// What an answer that took `took` says, for `error` (the text of a failed call, if it failed).
pub fn pace_signal(took: Duration, error: Option<&str>) -> PaceSignal {
    if error.is_some_and(is_rate_limited) {
        PaceSignal::Limited
    } else if took >= SLOW_ANSWER {
        PaceSignal::Slow
    } else {
        PaceSignal::Quick
    }
}

/// When a finished directory's ready-file is first looked at again, after the ledger was loaded at `now`:
/// spread over `period` by a hash of the name, so a restart beside 100,000 finished directories looks at
/// a slice per scan instead of all of them at once.
pub fn first_recheck(name: &[u8], now: Millis, period: Duration) -> Millis {
    let p = ms(period);
    if p <= 0 {
        return now;
    }
    // FNV-1a: stable across runs and platforms (the std hasher is seeded per process).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    now + (h % (p as u64)) as Millis
}

/// When a directory that is not ready (no marker yet, or held back) is looked at again, after `looks`
/// consecutive looks that found it so: the wait doubles from `poll` with each one, up to `max`, and is
/// spread by the name over its second half so that 100,000 such directories do not all come due in one
/// scan. A new directory is looked at in its first scan, and one that became ready is seen within
/// `poll + max`. `max` zero: every scan.
pub fn unready_next(name: &[u8], looks: u32, now: Millis, poll: Duration, max: Duration) -> Millis {
    let cap = ms(max);
    if cap <= 0 {
        return now;
    }
    let wait = ms(poll).max(1).saturating_mul(1 << looks.min(30)).min(cap);
    let half = wait / 2;
    let spread = first_recheck(name, 0, Duration::from_millis(half as u64 + 1));
    now + wait - half + spread.min(half)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_unready_directory_is_looked_at_less_and_less_often_but_within_the_cap() {
        let (poll, max) = (Duration::from_secs(1), Duration::from_secs(30));
        let waits: Vec<Millis> = (0..10)
            .map(|k| unready_next(b"run", k, 1_000, poll, max) - 1_000)
            .collect();
        assert!(waits[0] >= 500 && waits[0] <= 1_000, "{waits:?}");
        assert!(waits[3] >= 4_000 && waits[3] <= 8_000, "{waits:?}");
        assert!(waits.iter().all(|w| *w <= 30_000), "{waits:?}");
        assert!(waits[9] >= 15_000, "{waits:?}");
        // 100,000 directories at the cap come due spread over its second half, not at once.
        let at: Vec<Millis> = (0..100_000)
            .map(|n| unready_next(format!("d{n}").as_bytes(), 20, 0, poll, max))
            .collect();
        let in_one_second = at.iter().filter(|t| (20_000..21_000).contains(*t)).count();
        assert!(in_one_second < 10_000, "{in_one_second} due in one second");
        assert_eq!(unready_next(b"run", 5, 7, poll, Duration::ZERO), 7);
    }

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let mut b = TokenBucket::new(30, 2.0, 0);
        assert_eq!(b.take(100, 0), 30);
        assert_eq!(b.take(100, 0), 0);
        assert_eq!(b.next_token(0), 500);
        assert_eq!(b.take(100, 499), 0);
        assert_eq!(b.take(100, 500), 1);
        assert_eq!(b.take(100, 1500), 2);
        b.give_back(2);
        assert_eq!(b.take(100, 1500), 2);
        assert_eq!(
            b.take(1, 1_000_000),
            1,
            "a long quiet time refills to the burst only"
        );
        assert_eq!(b.take(100, 1_000_000), 29);
    }

    proptest! {
        /// Whatever the demand and the times asked, no window of `t` ms holds more than `burst + rate × t`
        /// calls.
        #[test]
        fn no_window_exceeds_the_bucket(steps in proptest::collection::vec((0i64..400, 0usize..10), 1..200)) {
            let (burst, rate) = (5u32, 2.0);
            let mut b = TokenBucket::new(burst, rate, 0);
            let mut now = 0;
            let mut calls: Vec<Millis> = Vec::new();
            for (dt, want) in steps {
                now += dt;
                for _ in 0..b.take(want, now) {
                    calls.push(now);
                }
            }
            for (i, start) in calls.iter().enumerate() {
                for (j, end) in calls.iter().enumerate().skip(i) {
                    let allowed = f64::from(burst) + rate * (end - start) as f64 / 1000.0;
                    prop_assert!((j - i + 1) as f64 <= allowed + 1e-6, "{} calls in {} ms", j - i + 1, end - start);
                }
            }
        }
    }

    #[test]
    fn the_pace_halves_when_slow_or_limited_and_climbs_back_one_at_a_time() {
        let mut p = SubmitPace::new(4);
        assert!(p.answered(pace_signal(Duration::from_secs(3), None)));
        assert_eq!(p.width(), 2);
        p.answered(pace_signal(
            Duration::from_millis(5),
            Some("sbatch: error: Batch job submission failed: RPC rate limit exceeded"),
        ));
        assert_eq!(p.width(), 1);
        p.answered(PaceSignal::Limited);
        assert_eq!(p.width(), 1, "never below one");
        for _ in 0..10 {
            p.answered(PaceSignal::Quick);
        }
        assert_eq!(p.width(), 4, "never above the configured width");
        assert!(!is_rate_limited(
            "Invalid account or account/partition combination"
        ));
    }

    #[test]
    fn rechecks_spread_over_the_period_and_stay_put_across_runs() {
        let period = Duration::from_secs(300);
        let at: Vec<Millis> = (0..1000)
            .map(|n| first_recheck(format!("run{n}").as_bytes(), 10, period))
            .collect();
        assert!(at.iter().all(|t| (10..10 + 300_000).contains(t)));
        let first_tenth = at.iter().filter(|t| **t < 10 + 30_000).count();
        assert!(
            (50..150).contains(&first_tenth),
            "{first_tenth} of 1000 in the first tenth"
        );
        assert_eq!(first_recheck(b"run1", 10, period), at[1]);
        assert_eq!(first_recheck(b"x", 10, Duration::ZERO), 10);
    }
}
