//! Refusals that will not heal: an `sbatch` the controller rejects for what the config asks (an account,
//! partition, QOS, gres or time limit it does not accept, a user without an association, a bad option in
//! `job.extra_args`) fails the same way until someone changes the config. That is a configuration error, not
//! an outage: it is said at once with the key to fix, said again while it lasts ([`RejectionLatch`]), and
//! shown by `status`, systemd's `STATUS=` and a metric.
//!
//! Owns: reading Slurm's refusal words ([`classify_rejection`], on the text `sbatch` printed and the ledger
//! keeps) and the rhythm of the warnings. Must never: call a refusal that may heal by itself (controller
//! down, busy, a partition drained) a configuration error, or decide back-off: that stays with the agenda.

use std::time::Duration;

use crate::time::{Millis, ms};

/// What in the config Slurm refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The account does not exist, or the user has no association with it (or none at all).
    Account,
    /// The partition does not exist or this user may not use it.
    Partition,
    /// The QOS (`--qos` in `job.extra_args`) does not exist or is not allowed.
    Qos,
    /// The gres is unknown to the cluster or malformed.
    Gres,
    /// No node can ever satisfy the request (gres count, memory, CPUs, nodes).
    Resources,
    /// The time limit is malformed or above what the partition or QOS allows.
    TimeLimit,
    /// An association or QOS limit (job size, time, jobs per user) refuses the job.
    Policy,
    /// Something else in `job.extra_args`: an unknown option, constraint, reservation, licence, wckey.
    ExtraArgs,
    /// `job.job_script` cannot be read or is not a batch script.
    Script,
    /// A job array larger than the cluster's `MaxArraySize` (`job.array_max`).
    ArraySize,
}

impl Rejection {
    /// Short words for logs, `status` and `STATUS=`: what Slurm said is wrong.
    pub fn problem(self) -> &'static str {
        match self {
            Rejection::Account => "invalid account, or no association for this user",
            Rejection::Partition => "invalid partition",
            Rejection::Qos => "invalid QOS",
            Rejection::Gres => "invalid gres",
            Rejection::Resources => "no node offers the requested resources",
            Rejection::TimeLimit => "invalid time limit",
            Rejection::Policy => "an account or QOS limit refuses the job",
            Rejection::ExtraArgs => "an sbatch option is refused",
            Rejection::Script => "the job script cannot be submitted",
            Rejection::ArraySize => "the job array is larger than the cluster allows",
        }
    }

    /// The config key to fix.
    pub fn key(self) -> &'static str {
        match self {
            Rejection::Account => "job.account",
            Rejection::Partition => "job.partition",
            Rejection::Qos | Rejection::ExtraArgs => "job.extra_args",
            Rejection::Gres | Rejection::Resources => "job.gres",
            Rejection::TimeLimit | Rejection::Policy => "job.time_limit",
            Rejection::Script => "job.job_script",
            Rejection::ArraySize => "job.array_max",
        }
    }

    /// What to check, in words an operator can act on.
    pub fn advice(self) -> &'static str {
        match self {
            Rejection::Account => {
                "compare it with `sacctmgr show assoc user=$(whoami) format=account,partition` (run as the \
                 user that submits); a user without any association needs one from the Slurm admin, and \
                 one made before the user existed on the controller's host needs `scontrol reconfigure` \
                 (slurmctld knows it by name only until then)"
            }
            Rejection::Partition => "compare it with `sinfo -s`",
            Rejection::Qos => {
                "compare `--qos` with `sacctmgr show assoc user=$(whoami) format=qos`"
            }
            Rejection::Gres => "compare it with `sinfo -o '%P %G'`",
            Rejection::Resources => {
                "no node has that much (gres, or memory/CPUs/nodes in `job.extra_args`): compare with \
                 `sinfo -o '%P %G %m %c %D'`"
            }
            Rejection::TimeLimit => {
                "it must fit the partition's MaxTime (`sinfo -o '%P %l'`) and the QOS's MaxWall"
            }
            Rejection::Policy => {
                "see `sacctmgr show assoc user=$(whoami)` and `sacctmgr show qos` for the limit (a limit on \
                 the number of jobs clears as jobs finish)"
            }
            Rejection::ExtraArgs => "check each item against `sbatch --help` and `sinfo`",
            Rejection::Script => {
                "it must exist, be readable by the user that submits, and start with `#!`"
            }
            Rejection::ArraySize => {
                "it must be at most the cluster's `MaxArraySize` (`scontrol show config | grep MaxArraySize`; \
                 `dirwatcher check-config --slurm` compares them)"
            }
        }
    }
}

/// Slurm's words for each refusal (lowercase; from `src/common/slurm_errno.c` and sbatch's own option
/// checks), first match wins. The more specific account/partition words come before the generic ones.
const WORDS: &[(&str, Rejection)] = &[
    (
        "invalid account or account/partition combination",
        Rejection::Account,
    ),
    ("invalid or unknown association", Rejection::Account),
    ("invalid user id", Rejection::Account),
    ("invalid partition name", Rejection::Partition),
    ("invalid partition specified", Rejection::Partition),
    (
        "user's group not permitted to use this partition",
        Rejection::Partition,
    ),
    ("invalid qos specification", Rejection::Qos),
    (
        "requested account has breached requested qos usage threshold",
        Rejection::Qos,
    ),
    ("invalid generic resource", Rejection::Gres),
    ("invalid gres specification", Rejection::Gres),
    ("invalid trackable resource", Rejection::Gres),
    (
        "requested node configuration is not available",
        Rejection::Resources,
    ),
    (
        "memory required by task is not available",
        Rejection::Resources,
    ),
    (
        "memory specification can not be satisfied",
        Rejection::Resources,
    ),
    (
        "more processors requested than permitted",
        Rejection::Resources,
    ),
    ("node count specification invalid", Rejection::Resources),
    ("cpu count specification invalid", Rejection::Resources),
    ("requested time limit is invalid", Rejection::TimeLimit),
    ("invalid --time specification", Rejection::TimeLimit),
    ("job violates accounting/qos policy", Rejection::Policy),
    ("invalid feature specification", Rejection::ExtraArgs),
    ("requested reservation is invalid", Rejection::ExtraArgs),
    ("invalid wckey specification", Rejection::ExtraArgs),
    ("invalid license specification", Rejection::ExtraArgs),
    ("unrecognized option", Rejection::ExtraArgs),
    ("invalid option", Rejection::ExtraArgs),
    ("unable to open file", Rejection::Script),
    ("this does not look like a batch script", Rejection::Script),
    ("batch script contains dos line breaks", Rejection::Script),
    ("invalid job array specification", Rejection::ArraySize),
];

/// What in the config a refusal's text (sbatch's stderr, or the error the ledger kept) says is wrong;
/// `None` for anything that may heal by waiting (controller down or busy, timeouts, a drained partition).
pub fn classify_rejection(message: &str) -> Option<Rejection> {
    let m = message.to_ascii_lowercase();
    WORDS
        .iter()
        .find(|(words, _)| m.contains(words))
        .map(|&(_, r)| r)
}

/// What to say about a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionEdge {
    /// The first refusal for this reason: warn now.
    New,
    /// Still refused, and `repeat` has passed since it was last said: warn again.
    Again {
        /// Since when (monotonic) submissions have been refused for this reason.
        since: Millis,
        /// Refusals so far, this one included.
        refusals: u64,
    },
    /// Said recently: a debug line only.
    Quiet,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    reason: Rejection,
    since: Millis,
    said_at: Millis,
    refusals: u64,
}

/// Whether submissions are refused for a configuration reason, and when that was last said: warned when
/// it starts, again every `repeat` while it lasts (not once, as an outage is: nothing heals it but an
/// operator), and ended by the next submission that is not refused for it. Times are monotonic.
#[derive(Debug, Default, Clone)]
pub struct RejectionLatch {
    block: Option<Block>,
}

impl RejectionLatch {
    /// Records a refusal for `reason` at `now`.
    pub fn refused(&mut self, reason: Rejection, now: Millis, repeat: Duration) -> RejectionEdge {
        match &mut self.block {
            Some(b) if b.reason == reason => {
                b.refusals += 1;
                if now - b.said_at >= ms(repeat) {
                    b.said_at = now;
                    RejectionEdge::Again {
                        since: b.since,
                        refusals: b.refusals,
                    }
                } else {
                    RejectionEdge::Quiet
                }
            }
            _ => {
                self.block = Some(Block {
                    reason,
                    since: now,
                    said_at: now,
                    refusals: 1,
                });
                RejectionEdge::New
            }
        }
    }

    /// A submission was accepted, or failed for another reason: the block (if any) is over. Returns what
    /// it was, how long it lasted and how many refusals it saw.
    pub fn cleared(&mut self, now: Millis) -> Option<(Rejection, Millis, u64)> {
        self.block
            .take()
            .map(|b| (b.reason, now - b.since, b.refusals))
    }

    /// The reason submissions are refused now, if they are.
    pub fn current(&self) -> Option<Rejection> {
        self.block.map(|b| b.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produced on the project's test cluster (Slurm 22.05) with the options named, and Slurm's error table.
    #[test]
    fn slurm_refusals_name_the_key_to_fix() {
        let cases = [
            // sbatch -A nosuch
            (
                "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
                Rejection::Account,
                "job.account",
            ),
            // sbatch --test-only as a user without an association
            (
                "allocation failure: Invalid account or account/partition combination specified",
                Rejection::Account,
                "job.account",
            ),
            // sbatch -p nosuch
            (
                "sbatch: error: invalid partition specified: nosuch\nsbatch: error: Batch job submission failed: Invalid partition name specified",
                Rejection::Partition,
                "job.partition",
            ),
            // sbatch --gres=nosuch:1
            (
                "sbatch: error: Invalid generic resource (gres) specification",
                Rejection::Gres,
                "job.gres",
            ),
            // sbatch --gres=gpu:5 on a node with one gpu
            (
                "sbatch: error: Batch job submission failed: Requested node configuration is not available",
                Rejection::Resources,
                "job.gres",
            ),
            // sbatch --mem=999999999
            (
                "sbatch: error: Memory specification can not be satisfied\nsbatch: error: Batch job submission failed: Requested node configuration is not available",
                Rejection::Resources,
                "job.gres",
            ),
            // sbatch --qos=nosuch with AccountingStorageEnforce=qos
            (
                "sbatch: error: Batch job submission failed: Invalid qos specification",
                Rejection::Qos,
                "job.extra_args",
            ),
            // sbatch --time=99999-0 with EnforcePartLimits
            (
                "sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)",
                Rejection::TimeLimit,
                "job.time_limit",
            ),
            // sbatch --time=abc
            (
                "sbatch: error: Invalid --time specification",
                Rejection::TimeLimit,
                "job.time_limit",
            ),
            (
                "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)",
                Rejection::Policy,
                "job.time_limit",
            ),
            // sbatch --bogus (exit 255)
            (
                "sbatch: unrecognized option '--bogus'\nTry \"sbatch --help\" for more information",
                Rejection::ExtraArgs,
                "job.extra_args",
            ),
            // sbatch --constraint=nosuch
            (
                "sbatch: error: Batch job submission failed: Invalid feature specification",
                Rejection::ExtraArgs,
                "job.extra_args",
            ),
            // sbatch --reservation=nosuch
            (
                "sbatch: error: Batch job submission failed: Requested reservation is invalid",
                Rejection::ExtraArgs,
                "job.extra_args",
            ),
            // sbatch /nonexistent/script.sh
            (
                "sbatch: error: Unable to open file /nonexistent/script.sh",
                Rejection::Script,
                "job.job_script",
            ),
            (
                "sbatch: error: This does not look like a batch script.  The first\nsbatch: error: line must start with #! followed by the path to an interpreter.",
                Rejection::Script,
                "job.job_script",
            ),
        ];
        let cases = cases.into_iter().chain([
            // sbatch --array=0-1500 with MaxArraySize=1001 (Slurm 22.05)
            (
                "sbatch: error: Batch job submission failed: Invalid job array specification",
                Rejection::ArraySize,
                "job.array_max",
            ),
        ]);
        for (text, reason, key) in cases {
            assert_eq!(classify_rejection(text), Some(reason), "{text}");
            assert_eq!(reason.key(), key, "{text}");
        }
    }

    #[test]
    fn refusals_that_heal_by_waiting_are_not_configuration_errors() {
        for text in [
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
            "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation",
            "sbatch: error: Slurm temporarily unable to accept job, sleeping and retrying",
            "sbatch: error: Batch job submission failed: Required partition not available (inactive or drain)",
            "sbatch: error: Batch job submission failed: Partition in DOWN state",
            "`sbatch` did not finish within 60s and was killed",
            "sbatch exited 0 but printed no job id",
            "",
        ] {
            assert_eq!(classify_rejection(text), None, "{text}");
        }
    }

    #[test]
    fn a_block_is_said_at_once_then_every_repeat_interval_until_it_clears() {
        let repeat = Duration::from_secs(300);
        let mut l = RejectionLatch::default();
        assert_eq!(l.current(), None);
        assert_eq!(
            l.refused(Rejection::Account, 1_000, repeat),
            RejectionEdge::New
        );
        assert_eq!(l.current(), Some(Rejection::Account));
        assert_eq!(
            l.refused(Rejection::Account, 150_000, repeat),
            RejectionEdge::Quiet
        );
        assert_eq!(
            l.refused(Rejection::Account, 301_000, repeat),
            RejectionEdge::Again {
                since: 1_000,
                refusals: 3
            }
        );
        assert_eq!(
            l.refused(Rejection::Account, 302_000, repeat),
            RejectionEdge::Quiet,
            "the repeat counts from the last warning"
        );
        assert_eq!(
            l.refused(Rejection::Gres, 303_000, repeat),
            RejectionEdge::New,
            "another reason is news"
        );
        assert_eq!(l.cleared(310_000), Some((Rejection::Gres, 7_000, 1)));
        assert_eq!(l.current(), None);
        assert_eq!(l.cleared(311_000), None);
    }
}
