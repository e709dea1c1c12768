//! Slurm through its command-line tools: `sbatch --parsable` to submit, `squeue -t all` and bounded
//! `sacct` calls to follow jobs and find one by its key, `scancel` to end one, `sbatch --test-only` to
//! preflight. The argument vectors and the environment of each call are built here, and run through
//! [`crate::process`]; what the tools print is read by [`super::parse`].
//!
//! Must never: go through a shell, or turn "a tool did not answer / does not know the job" into a failure
//! (a failed call is a [`QueryError`]; the back end in [`super`] decides what the outage means).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::parse::{
    SACCT_FIELDS, SQUEUE_FIELDS, array_job_ids, find_key, find_uncommented_since,
    parse_max_array_size, parse_parsable, parse_sacct, rows_for_tasks, sbatch_refusal_is_certain,
    scancel_found_it_ended, split_job_id,
};
use super::steady::Reading;
use super::{IDS_PER_CALL, by_cluster, now_ms};
use crate::config::{Config, JobCommand, JobConfig, umask_text};
use crate::engine::{JobRow, TrackedJob};
use crate::logging::show;
use crate::process::{self, Invocation, ProcessError};
use crate::scheduler::array::{self, ArraySpec};
use crate::scheduler::{
    Acceptance, CancelError, JobSpec, Preflight, QueryError, SubmitError, command_line, env_words,
    output_file, sample_spec, wrap_line,
};
use crate::time::Millis;

/// The command-line tools, as the daemon runs them for one config.
#[derive(Debug)]
pub struct Cli {
    job: JobConfig,
    root: PathBuf,
    /// Every call's time limit (`job.command_timeout_sec`).
    timeout: Duration,
}

impl Cli {
    /// The tools for this config.
    pub fn new(cfg: &Config) -> Self {
        Cli {
            job: cfg.job.clone(),
            root: cfg.watch.root.clone(),
            timeout: cfg.job.command_timeout,
        }
    }

    /// One `sbatch`, its answer classified.
    pub fn sbatch(&self, spec: &JobSpec) -> Result<String, SubmitError> {
        self.run_sbatch(&sbatch_invocation(&self.job, &self.root, spec))
    }

    fn run_sbatch(&self, inv: &Invocation) -> Result<String, SubmitError> {
        match process::run(inv, self.timeout) {
            Ok(out) => parse_parsable(&out.stdout).ok_or_else(|| {
                SubmitError::Uncertain(format!(
                    "sbatch exited 0 but printed no job id (stdout {:?}, stderr {:?})",
                    process::trim(&out.stdout),
                    process::trim(&out.stderr)
                ))
            }),
            Err(ProcessError::Failed {
                stderr,
                status_text,
                ..
            }) if sbatch_refusal_is_certain(&stderr) => Err(SubmitError::Refused(format!(
                "sbatch failed with {status_text}: {stderr}"
            ))),
            Err(e @ ProcessError::Spawn { .. }) => Err(SubmitError::Refused(format!(
                "{e}: {} (is Slurm installed and `sbatch` on PATH?)",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            ))),
            Err(e) => Err(SubmitError::Uncertain(e.to_string())),
        }
    }

    /// One `sbatch --array`: the task map written first (atomically, private), then the array submitted.
    /// A map that cannot be written is a refusal (no job exists).
    pub fn sbatch_array(&self, spec: &ArraySpec) -> Result<String, SubmitError> {
        let map = array::map_path(&self.root, &spec.key);
        let uid = crate::output_dir::my_uid();
        crate::output_dir::prepare(&self.root, array::MAP_FOLDER.as_ref(), uid).map_err(|e| {
            SubmitError::Refused(format!("cannot prepare the folder of array maps: {e}"))
        })?;
        crate::fsx::write_atomic(&map, &array::map_text(spec), 0o600).map_err(|e| {
            SubmitError::Refused(format!("cannot write the array map `{}`: {e}", show(&map)))
        })?;
        let inv = sbatch_array_invocation(&self.job, &self.root, spec, &map);
        self.run_sbatch(&inv)
    }

    /// One bounded `sacct` per cluster and chunk of [`IDS_PER_CALL`] ids.
    pub fn sacct(&self, jobs: &[&TrackedJob]) -> Result<Vec<JobRow>, QueryError> {
        let oldest = jobs.iter().map(|j| j.since).min().unwrap_or_else(now_ms);
        let mut out = Vec::new();
        for (cluster, ids) in by_cluster(jobs.iter().copied()) {
            // A task that never started is only in its array's record, listed when the array is asked.
            let mut ask: Vec<&str> = ids.clone();
            ask.extend(ids.iter().filter_map(|id| Some(id.split_once('_')?.0)));
            ask.sort_unstable();
            ask.dedup();
            let asked: HashSet<&str> = jobs.iter().map(|j| j.job_id.as_str()).collect();
            let mut inv = Invocation::new("sacct")
                .arg("-X")
                .arg("-n")
                .arg("-P")
                .arg(format!("--format={SACCT_FIELDS}"))
                .arg(starttime_arg(oldest, now_ms()))
                .arg(format!("--jobs={}", ask.join(",")));
            if let Some(c) = cluster {
                inv = inv.arg(format!("--clusters={c}"));
            }
            inv.env.push(("SLURM_TIME_FORMAT".into(), "%s".into()));
            let res = process::run(&inv, self.timeout).map_err(|e| QueryError(e.to_string()))?;
            let rows = parse_sacct(&res.stdout, cluster);
            if ask.len() == ids.len() {
                out.extend(rows);
            } else {
                out.extend(rows_for_tasks(rows, &asked));
            }
        }
        Ok(out)
    }

    /// Reads the controller's lines about `jobs` into `reading` (see [`squeue_selections`]).
    pub fn read_controller<'j>(
        &self,
        jobs: &'j [TrackedJob],
        reading: &mut Reading<'j>,
    ) -> Result<(), QueryError> {
        for (cluster, select) in squeue_selections(jobs) {
            let out = self.squeue(cluster, &select)?;
            reading.read(&out, cluster);
            if select != "--me" {
                continue;
            }
            let mut unlisted = reading.unlisted(cluster);
            unlisted.sort_unstable();
            for ids in unlisted.chunks(IDS_PER_CALL) {
                let out = self.squeue(cluster, &jobs_selection(ids))?;
                reading.read(&out, cluster);
            }
        }
        Ok(())
    }

    /// What one `squeue -t all` call selecting `select` on `cluster` printed. A forgotten id ("Invalid job
    /// id specified") prints nothing, and is no error.
    pub fn squeue(&self, cluster: Option<&str>, select: &str) -> Result<String, QueryError> {
        let mut inv = Invocation::new("squeue")
            .arg("-h")
            .arg("-t")
            .arg("all")
            .arg(select)
            .arg("-O")
            .arg(SQUEUE_FIELDS);
        if let Some(c) = cluster {
            inv = inv.arg(format!("--clusters={c}"));
        }
        inv.env.push(("SLURM_TIME_FORMAT".into(), "%s".into()));
        match process::run(&inv, self.timeout) {
            Ok(res) => Ok(res.stdout),
            Err(ProcessError::Failed { stderr, .. })
                if stderr.contains("Invalid job id specified") =>
            {
                Ok(String::new())
            }
            Err(e) => Err(QueryError(e.to_string())),
        }
    }
    /// Finds the job that carries `key`: the controller first, then accounting (see
    /// [`crate::scheduler::Scheduler::lookup`]).
    pub fn lookup(
        &self,
        key: &str,
        job_name: &str,
        since: Millis,
    ) -> Result<Option<String>, QueryError> {
        // squeue knows a job the moment sbatch returns, and keeps finished ones for MinJobAge;
        // sacct lags a few seconds but keeps them for good. Both must answer for a "no".
        let sq = Invocation::new("squeue")
            .arg("-h")
            .arg("-t")
            .arg("all")
            .arg(format!("--name={job_name}"))
            .arg("-o")
            // `%F`: an array's job id (a plain job's own), so a key names the array, not one of its tasks.
            .arg("%F|%k");
        let sq = process::run(&sq, self.timeout).map_err(|e| QueryError(e.to_string()))?;
        if let Some(id) = find_key(&sq.stdout, key) {
            return Ok(Some(id));
        }
        let age_s = ((now_ms() - since) / 1000).max(0) + 3600;
        let sa = Invocation::new("sacct")
            .arg("-X")
            .arg("-n")
            .arg("-P")
            .arg(format!("--name={job_name}"))
            .arg(format!("--starttime=now-{age_s}"))
            .arg("--format=JobID,Comment,Submit");
        let mut sa = sa;
        // Submit times as epoch seconds, whatever the site's locale.
        sa.env.push(("SLURM_TIME_FORMAT".into(), "%s".into()));
        let mut sa = process::run(&sa, self.timeout).map_err(|e| QueryError(e.to_string()))?;
        sa.stdout = array_job_ids(&sa.stdout);
        if let Some(id) = find_key(&sa.stdout, key) {
            return Ok(Some(id));
        }
        // A cluster without `AccountingStoreFlags=job_comment` stores no comments: then the job with our
        // exact name submitted after the intent was committed is ours (the name embeds the directory).
        if let Some(id) = find_uncommented_since(&sa.stdout, since) {
            tracing::warn!(
                "job {id} named `{job_name}` carries no submission key in accounting (set \
                 AccountingStoreFlags=job_comment in slurm.conf); adopting it by name and submit time"
            );
            return Ok(Some(id));
        }
        Ok(None)
    }

    /// The controller's `MaxArraySize` (`scontrol show config`): an array's task indices run from 0 to one
    /// less than it.
    pub fn max_array_size(&self) -> Result<u32, String> {
        let inv = Invocation::new("scontrol").arg("show").arg("config");
        let out = process::run(&inv, self.timeout).map_err(|e| crate::logging::error_chain(&e))?;
        parse_max_array_size(&out.stdout)
            .ok_or_else(|| "`scontrol show config` printed no `MaxArraySize = N` line".to_string())
    }

    /// `sbatch --test-only` about the job the daemon would submit (see [`test_only_invocation`]).
    pub fn preflight(&self) -> Preflight {
        let inv = test_only_invocation(&self.job, &self.root);
        Preflight::Asked {
            who: "sbatch",
            what: command_line(&inv),
            harmless: "--test-only creates no job",
            answer: run_test_only(&inv, self.timeout),
        }
    }

    /// The `sbatch` the daemon would run for `spec`, and where its output would go.
    pub fn describe(&self, spec: &JobSpec) -> String {
        let inv = sbatch_invocation(&self.job, &self.root, spec);
        let output = output_file(&self.job, &self.root, &spec.dir_path, "%j", &spec.job_name)
            .map_or_else(|| "sbatch's working directory".into(), |p| show(&p));
        // Shell-quoted words keep a newline or an ESC of a name raw: escaped here as in the logs, so the
        // second line stays one line and the terminal is not driven by a name.
        let esc = crate::logging::field_str;
        format!(
            "would run (job {}, output {output}):\n  env {} {}",
            esc(&spec.job_name),
            esc(&env_words(&self.job, &spec.dir_path).join(" ")),
            esc(&command_line(&inv))
        )
    }

    /// `scancel` of this job (see [`scancel_invocation`]); `Ok` also when it had already ended.
    pub fn scancel(&self, job: &TrackedJob) -> Result<(), CancelError> {
        let inv = scancel_invocation(job);
        match process::run(&inv, self.timeout) {
            Ok(_) => Ok(()),
            Err(ProcessError::Failed { stderr, .. }) if scancel_found_it_ended(&stderr) => Ok(()),
            Err(e) => Err(CancelError(crate::logging::error_chain(&e))),
        }
    }
}

/// The options a single job and an array share: partition, account, gres, time limit.
fn with_resources(mut inv: Invocation, job: &JobConfig) -> Invocation {
    if let Some(p) = &job.partition {
        inv = inv.arg(format!("--partition={p}"));
    }
    if let Some(a) = &job.account {
        inv = inv.arg(format!("--account={a}"));
    }
    if let Some(g) = &job.gres {
        inv = inv.arg(format!("--gres={g}"));
    }
    if let Some(t) = &job.time_limit {
        inv = inv.arg(format!("--time={}", t.slurm));
    }
    inv
}

/// The `sbatch` invocation for one directory (argument vector and environment; no shell).
pub fn sbatch_invocation(job: &JobConfig, root: &std::path::Path, spec: &JobSpec) -> Invocation {
    let mut inv = Invocation::new("sbatch")
        .arg("--parsable")
        .arg(format!("--job-name={}", spec.job_name))
        .arg(format!("--comment={}", spec.key));
    inv = with_resources(inv, job);
    if job.chdir_to_subdir {
        inv = inv.arg("--chdir").arg(&spec.dir_path);
    }
    if let Some(o) = &job.output {
        inv = inv.arg("--output").arg(root.join(o));
    }
    for a in &job.extra_args {
        inv = inv.arg(a);
    }
    match &job.command {
        JobCommand::Wrap(w) => {
            let mut wrap = OsString::from("--wrap=");
            wrap.push(wrap_line(w, spec.dir_path.as_os_str()));
            inv = inv.arg(wrap);
        }
        JobCommand::Script(s) => inv = inv.arg(s).arg(&spec.dir_path),
    }
    inv.env
        .push(("WATCH_DIR".into(), spec.dir_path.clone().into_os_string()));
    // sbatch keeps a SLURM_UMASK it is given (else it records its own umask, i.e. the service's
    // `UMask=0027`), and slurmstepd applies it to the job: the job runs with `job.umask`. A
    // `job.env.SLURM_UMASK` comes later and wins.
    inv.env
        .push(("SLURM_UMASK".into(), umask_text(job.umask).into()));
    for (k, v) in &job.env {
        inv.env.push((k.into(), v.into()));
    }
    inv
}

/// The `sbatch --array=0-K[%N]` of one array: the options of a single job (partition, account, gres,
/// time, output with `%A_%a`, `extra_args`, `job.env`, `SLURM_UMASK`), one job name and key for the
/// array, and [`array::task_line`] as the batch script. No `--chdir` and no `WATCH_DIR` here: each task
/// enters its own directory and sets its own.
pub fn sbatch_array_invocation(
    job: &JobConfig,
    root: &Path,
    spec: &ArraySpec,
    map: &Path,
) -> Invocation {
    let last = spec.tasks.len().saturating_sub(1);
    let range = match spec.throttle {
        Some(t) => format!("--array=0-{last}%{t}"),
        None => format!("--array=0-{last}"),
    };
    let mut inv = Invocation::new("sbatch")
        .arg("--parsable")
        .arg(range)
        .arg(format!("--job-name={}", spec.job_name))
        .arg(format!("--comment={}", spec.key));
    inv = with_resources(inv, job);
    if let Some(o) = &job.output {
        inv = inv.arg("--output").arg(root.join(array::array_output(o)));
    }
    for a in &job.extra_args {
        inv = inv.arg(a);
    }
    let JobCommand::Wrap(w) = &job.command else {
        unreachable!("`job.array_max` is refused with `job_script` (config/job.rs)")
    };
    let mut wrap = OsString::from("--wrap=");
    wrap.push(array::task_line(w, map, job.chdir_to_subdir));
    inv = inv.arg(wrap);
    inv.env
        .push(("SLURM_UMASK".into(), umask_text(job.umask).into()));
    for (k, v) in &job.env {
        inv.env.push((k.into(), v.into()));
    }
    inv
}

/// `scancel --name=<our job name> <id>`: with a filter, scancel signals the id only if the job matches it,
/// so a reused id that now belongs to another job is not cancelled.
pub fn scancel_invocation(job: &TrackedJob) -> Invocation {
    let (id, cluster) = split_job_id(&job.job_id);
    let mut inv = Invocation::new("scancel").arg(format!("--name={}", job.job_name));
    if let Some(c) = cluster {
        inv = inv.arg(format!("--clusters={c}"));
    }
    inv.arg(id)
}

/// The submission `check-config --slurm` asks about: the exact `sbatch` the daemon would run (same
/// function, same environment) for the root as a sample directory, with `--test-only` first, so Slurm
/// checks it and creates no job.
pub fn test_only_invocation(job: &JobConfig, root: &Path) -> Invocation {
    let spec = sample_spec(job, root, "dw-check-config");
    let mut inv = sbatch_invocation(job, root, &spec);
    // Before every other option: with `job_script`, what follows the script is its arguments.
    inv.args.insert(0, "--test-only".into());
    inv
}

/// Runs `inv` (from [`test_only_invocation`]) within `timeout` and says what Slurm answered.
pub fn run_test_only(inv: &Invocation, timeout: Duration) -> Acceptance {
    match process::run(inv, timeout) {
        // sbatch --test-only answers on stderr ("sbatch: Job 5 to start at … in partition main").
        Ok(out) => Acceptance::Accepted(process::trim(&format!("{}{}", out.stdout, out.stderr))),
        Err(ProcessError::Failed { stderr, stdout, .. }) => {
            let said = process::trim(&format!("{stdout}\n{stderr}"));
            let reason = crate::engine::classify_rejection(&said);
            Acceptance::Refused { said, reason }
        }
        Err(e) => Acceptance::NotAsked(crate::logging::error_chain(&e)),
    }
}

/// How far before the oldest intent in flight a query's `sacct --starttime` reaches: well beyond any clock
/// skew, and still hours instead of sacct's default of 1970 (with `--jobs`), which reads every old job of
/// a reused id and scans the whole database.
pub const STARTTIME_MARGIN: Duration = Duration::from_secs(3600);

/// `sacct --starttime` for jobs whose oldest intent was committed at `oldest` (wall ms), asked at `now`:
/// `now-<seconds>`, a form every sacct accepts whatever the locale and `SLURM_TIME_FORMAT`.
pub fn starttime_arg(oldest: Millis, now: Millis) -> String {
    let back = ((now - oldest).max(0) / 1000) + STARTTIME_MARGIN.as_secs() as i64;
    format!("--starttime=now-{back}")
}

/// `--jobs=<ids>`, with a single id given twice: alone, squeue fails with "Invalid job id specified" once
/// the controller has forgotten it; twice, it lists what it knows, as for several ids.
fn jobs_selection(ids: &[&str]) -> String {
    match ids {
        [one] => format!("--jobs={one},{one}"),
        _ => format!("--jobs={}", ids.join(",")),
    }
}

/// Above this many jobs of one cluster, the controller is asked for all of this user's jobs at once instead
/// of by id: squeue filters `--jobs` on the client against every job the controller holds (2,000 ids among
/// 22,000 jobs: 1.5 s of squeue CPU, against 0.3 s for `--me` and all 22,000 rows), and `--me` is filtered
/// by the controller.
pub const SQUEUE_BY_USER_ABOVE: usize = 100;

/// What each `squeue` call selects, per cluster: `--me` for many jobs, else `--jobs=<ids>` (see
/// [`jobs_selection`]).
pub fn squeue_selections(jobs: &[TrackedJob]) -> Vec<(Option<&str>, String)> {
    // Counted first: 100,000 jobs of one cluster are one `--me`, not a list of their ids.
    let mut m: BTreeMap<Option<&str>, usize> = BTreeMap::new();
    for j in jobs {
        *m.entry(split_job_id(&j.job_id).1).or_default() += 1;
    }
    m.into_iter()
        .map(|(cluster, n)| {
            if n > SQUEUE_BY_USER_ABOVE {
                return (cluster, "--me".to_string());
            }
            let ids: Vec<&str> = jobs
                .iter()
                .map(|j| split_job_id(&j.job_id))
                .filter(|(_, c)| *c == cluster)
                .map(|(id, _)| id)
                .collect();
            (cluster, jobs_selection(&ids))
        })
        .collect()
}
