//! The model: what one directory generation is, its lifecycle, and whether a present ready-file starts a
//! new one. Plain data and pure functions; the ledger stores these types, the engine reasons about them.

use std::ffi::OsString;

use crate::time::Millis;

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

#[cfg(test)]
impl ReadyIdentity {
    /// A ready-file identity for tests: fixed device and inode, the given size and mtime.
    pub(crate) fn sample(size: u64, mtime_ns: i64) -> ReadyIdentity {
        ReadyIdentity {
            dev: 1,
            ino: 7,
            size,
            mtime_ns,
        }
    }
}

/// Whether a writer holds the ready-file locked, as seen by a non-blocking shared `flock` probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockProbe {
    /// The shared lock was granted (and released at once): no writer holds `LOCK_EX`.
    Free,
    /// A writer holds an exclusive lock.
    Held,
    /// The root's file system answers `flock` locally (Lustre `localflock`, NFS `nolock` or
    /// `local_lock=all`): a writer on another node is invisible, so the probe says "cannot check" rather
    /// than a false "free". Stability alone decides then.
    CannotCheck,
}

/// What a scheduler says about a job's run besides its state (empty when it does not say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobDetail {
    /// Slurm's reason (`sacct` `Reason`, `squeue` `Reason`): `NonZeroExitCode`, `TimeLimit`, …
    pub reason: String,
    /// The nodes it ran on (`NodeList`).
    pub nodes: String,
    /// Its run time in seconds (`ElapsedRaw`, `squeue` `TimeUsed`).
    pub elapsed_sec: Option<u64>,
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
    /// No source (accounting, controller) showed the job for longer than `job.lost_after_sec`: followed no
    /// more, never deleted, resubmitted only by `dirwatcher retry`.
    Lost,
}

impl GenState {
    /// The word stored in the ledger and shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            GenState::Submitting => "submitting",
            GenState::Submitted => "submitted",
            GenState::Completed => "completed",
            GenState::Failed => "failed",
            GenState::Lost => "lost",
        }
    }

    /// Parses the stored word.
    pub fn parse(s: &str) -> Option<GenState> {
        Some(match s {
            "submitting" => GenState::Submitting,
            "submitted" => GenState::Submitted,
            "completed" => GenState::Completed,
            "failed" => GenState::Failed,
            "lost" => GenState::Lost,
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

/// One directory generation: a ready-file identity in one directory and the job submitted for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Row id.
    pub id: i64,
    /// Directory name (one component of the root).
    pub dir: OsString,
    /// The ready-file identity that made this generation.
    pub ready: ReadyIdentity,
    /// `(st_dev, st_ino)` of the directory at submission, checked again before deleting it.
    pub dir_dev_ino: Option<(u64, u64)>,
    /// Lifecycle state.
    pub state: GenState,
    /// Job attempt for this generation: 1 for the first job, 2 for the first retry, …
    pub attempt: u32,
    /// How many times `sbatch` was called for this record.
    pub submit_tries: u32,
    /// The submission key the job carries (`--comment`), unique across ledgers.
    pub key: String,
    /// Job id once known.
    pub job_id: Option<String>,
    /// Job name given to the scheduler.
    pub job_name: String,
    /// When the intent was committed.
    pub created_at: Millis,
    /// When the job id became known.
    pub submitted_at: Option<Millis>,
    /// When a final state was recorded.
    pub finished_at: Option<Millis>,
    /// When a scheduler source last showed the job (`None`: not since its id became known).
    pub seen_at: Option<Millis>,
    /// Not before this time may `sbatch` be tried again (back-off).
    pub next_try_at: Millis,
    /// Final scheduler state word.
    pub final_state: Option<String>,
    /// Final exit code `code:signal`.
    pub exit_code: Option<String>,
    /// The last submission or cleanup error, for operators.
    pub last_error: Option<String>,
    /// An `sbatch` may have run whose answer was never recorded: look the key up before submitting again.
    pub uncertain: bool,
    /// Deleting the directory is due (committed before it is done, cleared after).
    pub delete_pending: bool,
    /// Appending the failure-log line is due (committed before it is done, cleared after).
    pub failure_log_pending: bool,
    /// The directory was deleted after success.
    pub deleted: bool,
    /// The last change of this record (for an uncertain one: when its last `sbatch` started or failed).
    pub updated_at: Millis,
    /// What the scheduler said about the job's end besides its state (reason, nodes, run time).
    pub detail: JobDetail,
    /// The job array this record was submitted in, if any (`job.array_max`).
    pub array: Option<ArrayTask>,
}

/// A directory's place in a job array: the array's key (its `--comment`, shared by every task) and the
/// task index (`SLURM_ARRAY_TASK_ID`); the job id is then `<array id>_<task>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayTask {
    /// The array's submission key.
    pub key: String,
    /// The task index.
    pub task: u32,
    /// The array's job name (what `squeue` shows for every task; the record's own `job_name` stays the
    /// directory's, which a retry, submitted alone, goes by).
    pub name: String,
}

impl Generation {
    /// The key the scheduler's record of this job carries: the array's for a task, else the record's own.
    pub fn scheduler_key(&self) -> &str {
        self.array.as_ref().map_or(&self.key, |a| &a.key)
    }

    /// The job name the scheduler's record of this job carries: the array's for a task, else the record's.
    pub fn scheduler_name(&self) -> &str {
        self.array.as_ref().map_or(&self.job_name, |a| &a.name)
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
        ReadyIdentity::sample(size, mtime)
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

    #[test]
    fn job_names_are_sanitised() {
        assert_eq!(job_name("dirwatch", "case1".as_ref()), "dirwatch-case1");
        assert_eq!(job_name("dw", "a b'$(x)\";\n".as_ref()), "dw-a_b___x____");
    }

    proptest! {
        /// One directory generation never gets a second submission.
        #[test]
        fn one_generation_one_job(size in 0u64..5, mtime in 0i64..5, state_ix in 0usize..5) {
            let states = [GenState::Submitting, GenState::Submitted, GenState::Completed, GenState::Failed, GenState::Lost];
            let ident = id(size, mtime);
            prop_assert_ne!(generation_verdict(Some((states[state_ix], ident)), ident), GenerationVerdict::New);
        }
    }
}
