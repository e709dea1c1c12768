//! Outages and back-off: a failing dependency (slurmctld, slurmdbd, the ledger, the root) is reported
//! once when it starts and once when it ends, and retried with capped exponential back-off.

use std::time::Duration;

use crate::time::Millis;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
