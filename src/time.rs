//! Time, in one place: the millisecond scale every timestamp uses, and the [`Clock`] the daemon reads.
//!
//! Two clocks, never compared with each other: the **wall** clock for what is recorded (the ledger's
//! timestamps, the failure log, `sbatch`'s submit times) and the **monotonic** clock for what is scheduled
//! in memory (the next scan, the next query, a submission hold, stability spacing), so a clock step (NTP,
//! an operator's `date -s`) neither fires nor freezes a schedule. Must never: be read by the engine (time
//! reaches the engine as a parameter).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds: since the Unix epoch on the wall clock, or since an arbitrary origin on the monotonic one.
pub type Millis = i64;

/// Converts a duration into milliseconds (saturating).
pub fn ms(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A length of time in milliseconds as a person reads it, rounded up to whole seconds (`1m 5s`).
pub fn human(m: Millis) -> String {
    humantime::format_duration(Duration::from_secs((m.max(0) as u64).div_ceil(1000))).to_string()
}

/// Milliseconds since the epoch, now, on the system's wall clock. For commands that record or show a time
/// (the CLI, the scheduler's own bookkeeping); the daemon reads its [`Clock`] instead.
pub fn wall_now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(ms)
        .unwrap_or(0)
}

/// Where the daemon gets the time from.
pub trait Clock: Send {
    /// Milliseconds since the epoch, for records.
    fn wall(&self) -> Millis;
    /// Milliseconds on a clock that never jumps, for schedules.
    fn mono(&self) -> Millis;
}

/// The real clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn wall(&self) -> Millis {
        wall_now()
    }

    fn mono(&self) -> Millis {
        ms(self.origin.elapsed())
    }
}

/// A clock that moves only when told to: for tests that drive the loop without sleeping. Clones share the
/// same time, so a test keeps one handle and gives another to the daemon.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<(Millis, Millis)>>,
}

impl ManualClock {
    /// A clock whose wall time starts at `wall` and whose monotonic time starts at 0.
    pub fn new(wall: Millis) -> ManualClock {
        ManualClock {
            now: Arc::new(Mutex::new((wall, 0))),
        }
    }

    /// Moves both clocks forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut t = self.now.lock().unwrap_or_else(|p| p.into_inner());
        t.0 += ms(d);
        t.1 += ms(d);
    }

    /// Steps the wall clock alone by `delta` milliseconds (either way), as NTP or an operator would.
    pub fn step_wall(&self, delta: Millis) {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).0 += delta;
    }
}

impl Clock for ManualClock {
    fn wall(&self) -> Millis {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn mono(&self) -> Millis {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let c = ManualClock::new(1_000);
        let d: Box<dyn Clock> = Box::new(c.clone());
        assert_eq!((d.wall(), d.mono()), (1_000, 0));
        c.advance(Duration::from_millis(1_500));
        assert_eq!((d.wall(), d.mono()), (2_500, 1_500));
        c.step_wall(-10_000);
        assert_eq!(
            (d.wall(), d.mono()),
            (-7_500, 1_500),
            "a wall step leaves the monotonic clock alone"
        );
    }

    #[test]
    fn system_monotonic_clock_starts_near_zero_and_never_goes_back() {
        let c = SystemClock::default();
        let a = c.mono();
        let b = c.mono();
        assert!((0..60_000).contains(&a) && b >= a);
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(65_000), "1m 5s");
        assert_eq!(human(1), "1s");
        assert_eq!(human(-5), "0s");
    }
}
