//! Schedulers: the one interface the daemon uses to run and follow jobs, with two real implementations —
//! Slurm through its command-line tools ([`slurm`]) and child processes on this machine ([`local`]).
//!
//! Owns: building what a job runs (the quoted `--wrap` line, the script argv), the error kinds a caller
//! branches on, and everything that differs by back end — what a preflight asks, what a dry run says it
//! would run, where jobs run — so that nothing outside this folder matches on `job.executor`. Must never:
//! touch the ledger or decide retries; it reports, the daemon decides.

pub mod array;
#[cfg(test)]
pub mod fake;
pub mod local;
pub mod slurm;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{Config, ExecutorKind, JobCommand};
use crate::engine::Rejection;
use crate::process::Invocation;
use crate::time::Millis;

/// Everything needed to submit one job for one directory.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Absolute path of the directory (`<root>/<name>`).
    pub dir_path: PathBuf,
    /// Job name (`<prefix>-<sanitised dir>`).
    pub job_name: String,
    /// The submission key, carried by the job so a lost answer can be found again.
    pub key: String,
}

/// How a submission failed, grouped by what the caller must do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// The scheduler answered and refused, or could not be reached at all: no job exists. Retry later.
    #[error("{0}")]
    Refused(String),
    /// The answer was lost (timeout, crash, garbage output): a job may exist. Look the key up before retrying.
    #[error("{0}")]
    Uncertain(String),
}

impl SubmitError {
    /// True when no job can exist (the scheduler refused, or was never reached): the next `sbatch` is safe.
    /// False when one may exist: its key is looked up first.
    pub fn is_certain(&self) -> bool {
        matches!(self, SubmitError::Refused(_))
    }
}

/// A query could not be answered (accounting down, controller down): treat every job as "unknown, keep
/// waiting", never as failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

pub use crate::engine::{JobReport, JobRow, Sightings, Source, TrackedJob};

/// A job could not be cancelled (the scheduler refused or could not be asked).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CancelError(pub String);

/// What a back end's preflight (`check-config --slurm`) found about the job the daemon would submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// There is no scheduler to ask (jobs run on this machine): why, in words.
    NothingToAsk(&'static str),
    /// The scheduler was asked about the exact job the daemon would submit, and created none.
    Asked {
        /// Who was asked, as the operator knows it (`sbatch`).
        who: &'static str,
        /// What was asked, to read or paste (a command line).
        what: String,
        /// Why asking created no job (`--test-only creates no job`).
        harmless: &'static str,
        /// What it answered.
        answer: Acceptance,
    },
}

/// A scheduler's answer to "would you take this job?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// It would (its words: when and where it would start).
    Accepted(String),
    /// It refuses; `reason` when the words say what in the config is wrong.
    Refused {
        /// What it said.
        said: String,
        /// The config problem, when known.
        reason: Option<Rejection>,
    },
    /// It could not be asked (not installed, hung, killed, unreachable).
    NotAsked(String),
}

/// Where a back end's jobs run, which decides what else can know of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobsRun {
    /// On a cluster: its accounting outlives this host and its ledger (a new ledger asks it whether the
    /// root was served before), and a daemon on another host that shares the ledger can follow them.
    OnCluster,
    /// On this machine only: nothing outside the ledger remembers them, and no other host can follow them.
    OnThisHost,
}

/// A back end that runs jobs.
pub trait Scheduler: Send {
    /// Short name for logs (`slurm`, `local`).
    fn name(&self) -> &'static str;
    /// Where its jobs run.
    fn jobs_run(&self) -> JobsRun;
    /// Asks the scheduler, without creating a job, whether it would take the job the daemon submits (for
    /// the root as a sample directory): `check-config --slurm`.
    fn preflight(&mut self) -> Preflight;
    /// What would be run for `spec`, for `run --dry-run`: how (`would run …`), then the environment and
    /// the command, as lines to read or paste.
    fn describe(&self, spec: &JobSpec) -> String;
    /// Submits one job; returns its id.
    fn submit(&mut self, spec: &JobSpec) -> Result<String, SubmitError>;
    /// Submits `specs` in order, at most `width` at once (a back end that cannot runs them one at a
    /// time). `answer(i, result, took)` is called on the caller's thread for each answer as it comes and
    /// says whether more may start: after a `false` (a stop, a failure) nothing new starts, those running
    /// finish and are answered. Returns how many were started: the first that many of `specs`.
    fn submit_many(&mut self, specs: &[JobSpec], width: usize, answer: &mut Answer<'_>) -> usize {
        let _ = width;
        submit_one_at_a_time(self, specs, answer)
    }
    /// Every row its sources print for the ids of the given jobs, in one call per source and chunk of ids
    /// where the back end allows, and which sources answered. It reports; whether a row is about our job,
    /// and what it means, is the engine's (`engine::judge`): a back end with a live source (the
    /// controller) and a lagging one (accounting) may ask the lagging one only about the jobs whose live
    /// rows `decided` (the engine's [`crate::engine::judge::controller_decides`]) does not call decisive.
    /// A back end that remembers its answers may report a job whose live line is unchanged and was
    /// [`crate::engine::judge::steady`] in [`Sightings::steady`] instead of by its rows ([`slurm::steady`]).
    /// An error only when no source answered.
    fn query(
        &mut self,
        jobs: &[TrackedJob],
        decided: &Decided<'_>,
    ) -> Result<Sightings, QueryError>;
    /// Finds the job that carries `key`, if one was ever submitted (`since` = when the intent was committed).
    /// `Ok(None)` only when every source answered and none has it.
    fn lookup(
        &mut self,
        key: &str,
        job_name: &str,
        since: Millis,
    ) -> Result<Option<String>, QueryError>;
    /// Submits one job array ([`array::ArraySpec`]: task `i` for directory `i`); returns the array's job id.
    /// A back end without arrays refuses (the daemon submits arrays only where the config allows them).
    fn submit_array(&mut self, spec: &array::ArraySpec) -> Result<String, SubmitError> {
        let _ = spec;
        Err(SubmitError::Refused(format!(
            "the {} back end submits no job arrays",
            self.name()
        )))
    }
    /// The most tasks one job array may have here (Slurm's `MaxArraySize`), asked of the scheduler, for
    /// the check of `job.array_max`; `None` for a back end that submits no arrays, `Some(Err)` with the
    /// reason when it could not be asked.
    fn array_limit(&mut self) -> Option<Result<u32, String>> {
        None
    }
    /// Ends this job (`scancel`, restricted to its job name so a reused id of a stranger's job is left
    /// alone; the local runner is sent SIGTERM and records CANCELLED). `Ok` also when the job had already
    /// ended: either way it runs no more.
    fn cancel(&mut self, job: &TrackedJob) -> Result<(), CancelError>;
}

/// Whether the controller's rows of a job (those with its id) decide it, so accounting need not be asked.
pub type Decided<'a> = dyn Fn(&TrackedJob, &[&JobRow]) -> bool + 'a;

/// What [`Scheduler::submit_many`] tells its caller of each answer: the index in `specs`, the result and
/// how long the call took; the caller returns whether more may start.
pub type Answer<'a> = dyn FnMut(usize, Result<String, SubmitError>, Duration) -> bool + 'a;

/// [`Scheduler::submit_many`] one call at a time.
pub fn submit_one_at_a_time<S: Scheduler + ?Sized>(
    s: &mut S,
    specs: &[JobSpec],
    answer: &mut Answer<'_>,
) -> usize {
    for (i, spec) in specs.iter().enumerate() {
        let t = Instant::now();
        let r = s.submit(spec);
        if !answer(i, r, t.elapsed()) {
            return i + 1;
        }
    }
    specs.len()
}

/// [`Scheduler::submit_many`] with up to `width` threads, each running `call` (one `sbatch`) for the next
/// spec; answers reach `answer` on this thread in the order they come. No async runtime: a burst needs a
/// handful of waiting child processes, and threads are the plain way to wait for them.
pub fn submit_concurrently<F>(
    specs: &[JobSpec],
    width: usize,
    call: F,
    answer: &mut Answer<'_>,
) -> usize
where
    F: Fn(&JobSpec) -> Result<String, SubmitError> + Sync,
{
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::scope(|scope| {
        for _ in 0..width.clamp(1, specs.len().max(1)) {
            let (tx, next, stop, call) = (tx.clone(), &next, &stop, &call);
            scope.spawn(move || {
                // An index taken is a call made: the caller counts it as started.
                while !stop.load(SeqCst) {
                    let i = next.fetch_add(1, SeqCst);
                    let Some(spec) = specs.get(i) else { break };
                    let t = Instant::now();
                    let r = call(spec);
                    if tx.send((i, r, t.elapsed())).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, r, took) in rx.iter() {
            if !answer(i, r, took) {
                stop.store(true, SeqCst);
            }
        }
    });
    next.load(SeqCst).min(specs.len())
}

/// Builds the scheduler the config asks for.
pub fn from_config(cfg: &Config) -> Box<dyn Scheduler> {
    match cfg.job.executor {
        ExecutorKind::Slurm => Box::new(slurm::Slurm::new(cfg)),
        ExecutorKind::SlurmRest => Box::new(slurm::Slurm::rest(cfg)),
        ExecutorKind::Local => Box::new(local::Local::new(cfg)),
    }
}

/// The environment a job is given beyond the daemon's own (`WATCH_DIR`, then `job.env`), as shell words.
pub fn env_words(job: &crate::config::JobConfig, dir: &Path) -> Vec<String> {
    let q = |s: &OsStr| shell_quote(s).to_string_lossy().into_owned();
    let mut env = vec![format!("WATCH_DIR={}", q(dir.as_os_str()))];
    env.extend(
        job.env
            .iter()
            .map(|(k, v)| format!("{k}={}", q(OsStr::new(v)))),
    );
    env
}

/// An invocation as one shell-quoted line, for people to read or paste.
pub fn command_line(inv: &Invocation) -> String {
    std::iter::once(&inv.program)
        .chain(&inv.args)
        .map(|a| shell_quote(a).to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The sample job a preflight asks about: the root itself as the directory.
pub fn sample_spec(job: &crate::config::JobConfig, root: &Path, key: &str) -> JobSpec {
    let sample = root.file_name().unwrap_or(root.as_os_str());
    JobSpec {
        dir_path: root.to_path_buf(),
        job_name: crate::engine::job_name(&job.job_name_prefix, sample),
        key: key.into(),
    }
}

/// The file a job's stdout/stderr go to, as Slurm names it: `job.output` under the root with `%j` (job id)
/// and `%x` (job name) expanded, else Slurm's `slurm-<id>.out` in the working directory — the directory
/// itself with `job.chdir_to_subdir`; `None` without it (sbatch's working directory, the daemon's).
pub fn output_file(
    job: &crate::config::JobConfig,
    root: &Path,
    dir_path: &Path,
    job_id: &str,
    job_name: &str,
) -> Option<PathBuf> {
    let (id, _) = slurm::split_job_id(job_id);
    match &job.output {
        Some(o) => Some(root.join(local::expand_output(o, id, job_name))),
        None if job.chdir_to_subdir => Some(dir_path.join(format!("slurm-{id}.out"))),
        None => None,
    }
}

/// Shell-quotes `word` so that `sh` reads it back as exactly one literal word, whatever bytes it holds
/// (spaces, quotes, `$()`, `;`, newlines, non-UTF-8). Paths cannot contain NUL, the one unquotable byte.
pub fn shell_quote(word: &OsStr) -> OsString {
    match shlex::bytes::try_quote(word.as_encoded_bytes()) {
        Ok(q) => OsString::from_vec(q.into_owned()),
        // Unreachable for paths; fall back to something that cannot run anything.
        Err(_) => OsString::from("''"),
    }
}

/// The command line run for a directory with `wrap_cmd`: the command as written (so `&&` and pipes keep
/// working), then the directory as one quoted word.
pub fn wrap_line(wrap_cmd: &str, dir: &OsStr) -> OsString {
    let mut s = OsString::from(wrap_cmd);
    s.push(" ");
    s.push(shell_quote(dir));
    s
}

/// The argv of the job itself for the local executor: `sh -c '<wrap line>'` or `<script> <dir>`.
pub fn local_argv(cmd: &JobCommand, dir: &OsStr) -> Vec<OsString> {
    match cmd {
        JobCommand::Wrap(w) => vec!["sh".into(), "-c".into(), wrap_line(w, dir)],
        JobCommand::Script(s) => vec![s.clone().into_os_string(), dir.to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::ffi::OsStrExt;
    use std::process::Command;

    fn through_sh(line: &OsStr) -> Vec<u8> {
        // printf runs inside the shell; the quoted word must reach it as one argument.
        let script = {
            let mut s = OsString::from("printf '%s|' ");
            s.push(line);
            s
        };
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
            .stdout
    }

    #[test]
    fn hostile_name_stays_one_literal_word() {
        let t = tempfile::tempdir().unwrap();
        let marker = t.path().join("X");
        let name = format!("a b'$(touch {})\";x\nnext", marker.display());
        let out = through_sh(&shell_quote(OsStr::new(&name)));
        assert_eq!(out, format!("{name}|").into_bytes());
        assert!(!marker.exists(), "the name was executed");
    }

    #[test]
    fn wrap_cmd_keeps_its_own_shell_syntax() {
        let line = wrap_line("echo one && printf '%s|'", OsStr::new("my dir"));
        let out = Command::new("sh")
            .arg("-c")
            .arg(&line)
            .output()
            .unwrap()
            .stdout;
        assert_eq!(out, b"one\nmy dir|");
    }

    proptest! {
        /// Any path (any bytes but NUL) survives the round trip through `sh` as exactly one word.
        #[test]
        fn quoting_round_trip(bytes in proptest::collection::vec(1u8..=255, 0..64)) {
            let word = OsStr::from_bytes(&bytes);
            let out = through_sh(&shell_quote(word));
            let mut expect = bytes.clone();
            expect.push(b'|');
            prop_assert_eq!(out, expect);
        }
    }
}
