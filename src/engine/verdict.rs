//! What a scheduler's state word means: its phase (active, completed, failed, may be requeued), and the
//! outcome of a finished job (record, delete, log, retry). Whether a row is about our job at all, and when
//! a requeue-able end is final, is [`super::judge`]'s.

use std::time::Duration;

use super::model::GenState;
pub use super::model::JobDetail;
use super::outage::backoff;
use crate::time::{Millis, ms};

/// One job's state as the scheduler reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    /// State word as reported (`RUNNING`, `COMPLETED`, `CANCELLED by 0`, `TIMEOUT`, …).
    pub state: String,
    /// Exit code as `code:signal`.
    pub exit_code: String,
    /// What explains the end, for the failure log and the notices.
    pub detail: JobDetail,
}

/// Slurm's state word without decorations, upper-case (`CANCELLED by 0` → `CANCELLED`, `FAILED+` →
/// `FAILED`); `UNKNOWN` for an empty one. The one normal form for classifying, labels and logs.
pub fn state_word(state: &str) -> String {
    let w = state
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches('+')
        .to_ascii_uppercase();
    if w.is_empty() { "UNKNOWN".into() } else { w }
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
    /// A failure after which Slurm may run the same job again (NODE_FAIL, PREEMPTED, BOOT_FAIL: batch jobs
    /// are requeued by default, `JobRequeue=1`). Final only once the controller says no run follows, or
    /// after a settle period (see [`super::judge`]).
    MayRequeue,
}

/// Classifies a scheduler state word (`sacct` State column, also `CANCELLED by 0`).
///
/// Unknown words are Active: following a job longer is recoverable, declaring it finished is not. So are
/// the states of a job that is still Slurm's to run: REQUEUED, REQUEUE_HOLD, REQUEUE_FED, SPECIAL_EXIT (held
/// after a requeue), RESIZING, REVOKED (a federation sibling runs it), SUSPENDED, STOPPED (Slurm's
/// `job_state_string`, src/common/slurm_protocol_defs.c).
pub fn classify_state(state: &str) -> JobPhase {
    match state_word(state).as_str() {
        "COMPLETED" => JobPhase::Completed,
        "FAILED" | "CANCELLED" | "TIMEOUT" | "OUT_OF_MEMORY" | "DEADLINE" => JobPhase::Failed,
        "NODE_FAIL" | "PREEMPTED" | "BOOT_FAIL" => JobPhase::MayRequeue,
        _ => JobPhase::Active,
    }
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
    end: &JobReport,
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
        // A requeue-able failure reaches here only once it is known to be final.
        JobPhase::Failed | JobPhase::MayRequeue => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn state_words_lose_their_decorations() {
        assert_eq!(state_word("CANCELLED by 0"), "CANCELLED");
        assert_eq!(state_word("FAILED+"), "FAILED");
        assert_eq!(state_word("timeout"), "TIMEOUT");
        assert_eq!(state_word(""), "UNKNOWN");
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
            "REQUEUE_HOLD",
            "REQUEUE_FED",
            "SPECIAL_EXIT",
            "REVOKED",
            "STOPPED",
            // Slurm 25.11 and later (26.05 too): a job of `--requeue=expedite` being requeued, to run again.
            "EXPEDITING",
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
            "DEADLINE",
        ] {
            assert_eq!(classify_state(s), JobPhase::Failed, "{s}");
        }
        for s in ["NODE_FAIL", "PREEMPTED", "BOOT_FAIL"] {
            assert_eq!(classify_state(s), JobPhase::MayRequeue, "{s}");
        }
    }

    const OUT: OutcomePolicy = OutcomePolicy {
        delete_on_success: true,
        max_retries: 0,
        retry_backoff: Duration::from_secs(10),
        retry_backoff_max: Duration::from_secs(60),
    };

    fn end(state: &str) -> JobReport {
        JobReport {
            state: state.into(),
            exit_code: "0:0".into(),
            detail: JobDetail::default(),
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

    proptest! {
        /// Never delete unless the job COMPLETED, whatever the state word.
        #[test]
        fn never_delete_unless_completed(state in "[A-Z_ a-z0-9]{0,20}", attempt in 1u32..5, del in any::<bool>()) {
            let policy = OutcomePolicy { delete_on_success: del, ..OUT };
            if let Some(p) = plan_outcome(&end(&state), attempt, 0, policy) {
                prop_assert!(!p.delete_dir || classify_state(&state) == JobPhase::Completed);
            }
        }
    }
}
