//! Slurm through its command-line tools: `sbatch --parsable` to submit, one `sacct` per cycle to follow all
//! jobs, `squeue -t all` + `sacct` to find a job by its key after a lost answer.
//!
//! Owns: the argument vectors and the parsing of Slurm's output (pure functions, unit-tested). Must never:
//! go through a shell, or turn "sacct did not answer / does not know the job" into a failure.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::{JobReport, JobSpec, QueryError, Scheduler, SubmitError, wrap_line};
use crate::config::{Config, JobCommand, JobConfig, umask_text};
use crate::engine::{OutageEdge, OutageLatch};
use crate::process::{self, Invocation, ProcessError};
use crate::time::Millis;

/// Slurm back end.
#[derive(Debug)]
pub struct Slurm {
    job: JobConfig,
    root: PathBuf,
    timeout: Duration,
    /// Whether `sacct` is failing (reported once when it starts and once when it ends).
    accounting: OutageLatch,
}

impl Slurm {
    /// A Slurm back end for this config.
    pub fn new(cfg: &Config) -> Self {
        Slurm {
            job: cfg.job.clone(),
            root: cfg.watch.root.clone(),
            timeout: cfg.job.command_timeout,
            accounting: OutageLatch::default(),
        }
    }
}

/// The `sbatch` invocation for one directory (argument vector and environment; no shell).
pub fn sbatch_invocation(job: &JobConfig, root: &std::path::Path, spec: &JobSpec) -> Invocation {
    let mut inv = Invocation::new("sbatch")
        .arg("--parsable")
        .arg(format!("--job-name={}", spec.job_name))
        .arg(format!("--comment={}", spec.key));
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

/// True for a plain numeric job id (`1234`; not an array or het-job id, not empty): the only kind we submit.
pub fn is_job_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

/// Parses `sbatch --parsable` output: `ID` or `ID;CLUSTER` on the last non-empty line (sbatch may print
/// warnings before it). Returns the id as stored in the ledger (`ID` or `ID;CLUSTER`).
pub fn parse_parsable(stdout: &str) -> Option<String> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())?;
    let (id, cluster) = match line.split_once(';') {
        Some((i, c)) => (i, Some(c)),
        None => (line, None),
    };
    if !is_job_id(id) {
        return None;
    }
    match cluster {
        Some(c)
            if !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Some(format!("{id};{c}"))
        }
        Some(_) => None,
        None => Some(id.to_string()),
    }
}

/// Splits a stored job id into `(id, cluster)`.
pub fn split_job_id(job_id: &str) -> (&str, Option<&str>) {
    match job_id.split_once(';') {
        Some((i, c)) => (i, Some(c)),
        None => (job_id, None),
    }
}

/// Parses `sacct -X -n -P --format=JobIDRaw,State,ExitCode` output into reports keyed by job id.
pub fn parse_sacct(stdout: &str) -> HashMap<String, JobReport> {
    let mut out = HashMap::new();
    for line in stdout.lines() {
        let mut f = line.split('|');
        let (Some(id), Some(state), Some(exit)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let id = id.trim();
        // Only whole allocations of plain jobs: skip steps (`12.batch`) and anything not ours.
        if !is_job_id(id) {
            continue;
        }
        out.insert(
            id.to_string(),
            JobReport {
                state: state.trim().to_string(),
                exit_code: exit.trim().to_string(),
            },
        );
    }
    out
}

/// Finds the job id carrying `key` in `ID|COMMENT` lines (from `squeue -o '%i|%k'` or sacct).
pub fn find_key(stdout: &str, key: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        let mut f = l.split('|');
        let (id, comment) = (f.next()?.trim(), f.next()?.trim());
        (comment == key && is_job_id(id)).then(|| id.to_string())
    })
}

/// In `ID|COMMENT|SUBMIT_EPOCH` lines, the earliest job without a comment submitted at or after `since`
/// (milliseconds; one minute of clock skew allowed).
pub fn find_uncommented_since(stdout: &str, since: Millis) -> Option<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let (id, comment, submit) = (f.next()?.trim(), f.next()?.trim(), f.next()?.trim());
            let submit_ms = submit.parse::<i64>().ok()?.checked_mul(1000)?;
            (comment.is_empty() && is_job_id(id) && submit_ms >= since - 60_000)
                .then(|| (submit_ms, id.to_string()))
        })
        .min()
        .map(|(_, id)| id)
}

/// True when sbatch's error proves no job was created (the controller refused it or was never reached).
pub fn sbatch_refusal_is_certain(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("batch job submission failed") && !s.contains("timed out") && !s.contains("timeout")
}

impl Slurm {
    /// One `sacct` call per cluster (normally exactly one call for all jobs).
    fn query_sacct(&self, job_ids: &[String]) -> Result<HashMap<String, JobReport>, QueryError> {
        let mut by_cluster: BTreeMap<Option<&str>, Vec<&str>> = BTreeMap::new();
        for j in job_ids {
            let (id, cluster) = split_job_id(j);
            by_cluster.entry(cluster).or_default().push(id);
        }
        let mut out = HashMap::new();
        for (cluster, ids) in by_cluster {
            let mut inv = Invocation::new("sacct")
                .arg("-X")
                .arg("-n")
                .arg("-P")
                .arg("--format=JobIDRaw,State,ExitCode")
                .arg(format!("--jobs={}", ids.join(",")));
            if let Some(c) = cluster {
                inv = inv.arg(format!("--clusters={c}"));
            }
            let res = process::run(&inv, self.timeout).map_err(|e| QueryError(e.to_string()))?;
            for (id, rep) in parse_sacct(&res.stdout) {
                let key = match cluster {
                    Some(c) => format!("{id};{c}"),
                    None => id,
                };
                out.insert(key, rep);
            }
        }
        Ok(out)
    }

    /// The controller's view: one `squeue -t all` for all local-cluster jobs, and `scontrol show job` for
    /// the exit code of each job squeue shows as finished (they are few per cycle).
    fn query_controller(
        &self,
        job_ids: &[String],
    ) -> Result<HashMap<String, JobReport>, QueryError> {
        let ids: Vec<&str> = job_ids
            .iter()
            .map(|j| split_job_id(j))
            .filter(|(_, c)| c.is_none())
            .map(|(i, _)| i)
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sq = Invocation::new("squeue")
            .arg("-h")
            .arg("-t")
            .arg("all")
            .arg(format!("--jobs={}", ids.join(",")))
            .arg("-o")
            .arg("%i|%T");
        let sq = process::run(&sq, self.timeout).map_err(|e| QueryError(e.to_string()))?;
        let mut out = HashMap::new();
        for (id, state) in parse_squeue(&sq.stdout) {
            let exit_code = if crate::engine::classify_state(&state)
                == crate::engine::JobPhase::Active
            {
                "0:0".to_string()
            } else {
                let sc = Invocation::new("scontrol")
                    .arg("show")
                    .arg("job")
                    .arg("-o")
                    .arg(&id);
                let sc = process::run(&sc, self.timeout).map_err(|e| QueryError(e.to_string()))?;
                match parse_scontrol_exit(&sc.stdout) {
                    Some(e) => e,
                    None => continue,
                }
            };
            out.insert(id, JobReport { state, exit_code });
        }
        Ok(out)
    }
}

/// Parses `squeue -h -o '%i|%T'` lines into `(id, state)`.
pub fn parse_squeue(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (id, st) = l.split_once('|')?;
            let id = id.trim();
            is_job_id(id).then(|| (id.to_string(), st.trim().to_string()))
        })
        .collect()
}

/// The `ExitCode=` of `scontrol show job -o` output.
pub fn parse_scontrol_exit(stdout: &str) -> Option<String> {
    stdout
        .split_whitespace()
        .find_map(|t| t.strip_prefix("ExitCode="))
        .map(str::to_string)
}

impl Scheduler for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn submit(&mut self, spec: &JobSpec) -> Result<String, SubmitError> {
        let inv = sbatch_invocation(&self.job, &self.root, spec);
        match process::run(&inv, self.timeout) {
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

    fn query(&mut self, job_ids: &[String]) -> Result<HashMap<String, JobReport>, QueryError> {
        let now = crate::time::wall_now();
        match self.query_sacct(job_ids) {
            Ok(r) => {
                if let OutageEdge::Ended { failures, .. } = self.accounting.succeeded(now) {
                    tracing::info!(
                        "accounting (sacct) answers again after {failures} failed queries"
                    );
                }
                Ok(r)
            }
            // Accounting down or lagging: follow the jobs through the controller meanwhile. If that fails
            // too, the caller keeps waiting; nothing is ever declared failed for lack of an answer.
            Err(sacct_err) => {
                if self.accounting.failed(now) == OutageEdge::Started {
                    tracing::warn!(
                        "accounting (sacct) is not answering: {sacct_err}; following jobs through the controller (squeue/scontrol) meanwhile"
                    );
                }
                self.query_controller(job_ids).map_err(|ctl| {
                    QueryError(format!(
                        "{sacct_err}; and the controller fallback failed too: {ctl}"
                    ))
                })
            }
        }
    }

    fn lookup(
        &mut self,
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
            .arg("%i|%k");
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
            .arg("--format=JobIDRaw,Comment,Submit");
        let mut sa = sa;
        // Submit times as epoch seconds, whatever the site's locale.
        sa.env.push(("SLURM_TIME_FORMAT".into(), "%s".into()));
        let sa = process::run(&sa, self.timeout).map_err(|e| QueryError(e.to_string()))?;
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
}

fn now_ms() -> Millis {
    crate::time::wall_now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ExecutorKind, TimeLimit};

    proptest::proptest! {
        /// The parsers take whatever Slurm (or a broken wrapper) prints without panicking, and never invent
        /// a job id that is not all digits.
        #[test]
        fn parsers_survive_any_output(out in "(?s).{0,300}", key in "[a-z0-9-]{1,12}") {
            if let Some(id) = parse_parsable(&out) {
                proptest::prop_assert!(id.split(';').next().unwrap().bytes().all(|b| b.is_ascii_digit()));
            }
            for id in parse_sacct(&out).keys() {
                proptest::prop_assert!(id.bytes().all(|b| b.is_ascii_digit()));
            }
            let _ = parse_squeue(&out);
            let _ = parse_scontrol_exit(&out);
            let _ = find_key(&out, &key);
            let _ = find_uncommented_since(&out, 0);
        }
    }

    #[test]
    fn parsable_output_gives_the_id() {
        assert_eq!(parse_parsable("12345\n").as_deref(), Some("12345"));
        assert_eq!(
            parse_parsable("12345;cluster_a\n").as_deref(),
            Some("12345;cluster_a")
        );
        assert_eq!(
            parse_parsable("sbatch: warning: x\n77\n").as_deref(),
            Some("77")
        );
        for bad in ["", "\n", "Submitted batch job 5", "12a", ";c", "5;"] {
            assert_eq!(parse_parsable(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sacct_rows_are_keyed_by_allocation_id() {
        let out = "101|COMPLETED|0:0\n101.batch|COMPLETED|0:0\n102|CANCELLED by 0|0:0\n103|PENDING|0:0\ngarbage\n";
        let m = parse_sacct(out);
        assert_eq!(m.len(), 3);
        assert_eq!(m["102"].state, "CANCELLED by 0");
        assert_eq!(m["101"].exit_code, "0:0");
    }

    #[test]
    fn controller_fallback_parsers() {
        assert_eq!(
            parse_squeue("7|RUNNING\n8|COMPLETED\njunk\n"),
            vec![
                ("7".to_string(), "RUNNING".to_string()),
                ("8".to_string(), "COMPLETED".to_string())
            ]
        );
        let sc = "JobId=8 JobName=x UserId=root(0) JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 Restarts=0";
        assert_eq!(parse_scontrol_exit(sc).as_deref(), Some("3:0"));
        assert_eq!(parse_scontrol_exit(""), None);
    }

    #[test]
    fn key_lookup_matches_exactly() {
        let out = "5|dw-ab-1\n6|dw-ab-12\n7|\n8|dw-ab-3|1700000000\n";
        assert_eq!(find_key(out, "dw-ab-3").as_deref(), Some("8"));
        assert_eq!(find_key(out, "dw-ab-12").as_deref(), Some("6"));
        assert_eq!(find_key(out, "dw-ab-2"), None);
    }

    #[test]
    fn without_stored_comments_a_job_is_adopted_by_name_and_time_only_after_the_intent() {
        let out = "10||1000\n11||1100\n12|dw-other-1|1200\n";
        assert_eq!(
            find_uncommented_since(out, 1_100_000 + 60_000).as_deref(),
            Some("11")
        );
        assert_eq!(
            find_uncommented_since(out, 1_200_000 + 60_000),
            None,
            "a job older than the intent is not ours"
        );
        assert_eq!(
            find_uncommented_since(out, 0).as_deref(),
            Some("10"),
            "the earliest one"
        );
    }

    #[test]
    fn refusals_versus_lost_answers() {
        assert!(sbatch_refusal_is_certain(
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"
        ));
        assert!(sbatch_refusal_is_certain(
            "sbatch: error: Batch job submission failed: Invalid account"
        ));
        assert!(!sbatch_refusal_is_certain(
            "sbatch: error: Batch job submission failed: Socket timed out on send/recv"
        ));
        assert!(!sbatch_refusal_is_certain("Segmentation fault"));
    }

    /// Output of Slurm 24.11.5 (Debian 13), captured in the site container (`scripts/site-cluster.sh`)
    /// for the calls dirwatcher makes; 22.05.8 prints the same for each of them (checked on the host's
    /// test cluster), and the integration suite runs against both.
    #[test]
    fn slurm_24_11_output_parses_like_22_05() {
        let sacct = "75|FAILED|3:0\n75.batch|FAILED|3:0\n76|CANCELLED by 0|0:0\n76.batch|CANCELLED|0:15\n77|COMPLETED|0:0\n";
        let r = parse_sacct(sacct);
        assert_eq!(r.len(), 3, "steps are not jobs: {r:?}");
        assert_eq!(
            (r["75"].state.as_str(), r["75"].exit_code.as_str()),
            ("FAILED", "3:0")
        );
        assert_eq!(r["76"].state, "CANCELLED by 0");
        assert_eq!(r["77"].state, "COMPLETED");
        assert_eq!(
            parse_squeue("76|CANCELLED\n77|COMPLETED\n75|FAILED\n"),
            [("76", "CANCELLED"), ("77", "COMPLETED"), ("75", "FAILED")]
                .map(|(i, s)| (i.to_string(), s.to_string()))
        );
        // squeue shows a job without a comment as `(null)`, sacct as an empty field.
        assert_eq!(
            find_key("76|(null)\n77|(null)\n75|dw-x-1\n", "dw-x-1").as_deref(),
            Some("75")
        );
        let sacct_keys = "75|dw-x-1|1796109494\n76||1796109494\n77||1796109494\n";
        assert_eq!(find_key(sacct_keys, "dw-x-1").as_deref(), Some("75"));
        assert_eq!(
            find_uncommented_since(sacct_keys, 1_796_109_494_000).as_deref(),
            Some("76")
        );
        let scontrol = "JobId=75 JobName=wrap UserId=root(0) JobState=FAILED Reason=NonZeroExitCode \
                        Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 Comment=dw-x-1";
        assert_eq!(parse_scontrol_exit(scontrol).as_deref(), Some("3:0"));
        assert_eq!(parse_parsable("75\n").as_deref(), Some("75"));
        for refused in [
            "sbatch: error: invalid partition specified: nopart\nsbatch: error: Batch job submission failed: Invalid partition name specified",
            "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
        ] {
            assert!(sbatch_refusal_is_certain(refused), "{refused}");
        }
    }

    #[test]
    fn sbatch_argv_matches_the_seed_example() {
        let job = JobConfig {
            executor: ExecutorKind::Slurm,
            command: JobCommand::Wrap("python3 /opt/dirwatcher/process_dir.py".into()),
            partition: Some("main".into()),
            account: Some("dev".into()),
            gres: Some("gpu:1".into()),
            time_limit: Some(TimeLimit {
                slurm: "00:10:00".into(),
                duration: Some(Duration::from_secs(600)),
            }),
            job_name_prefix: "dirwatch".into(),
            env: [("A".to_string(), "b".to_string())].into(),
            extra_args: vec!["--qos=normal".into()],
            chdir_to_subdir: true,
            output: None,
            command_timeout: Duration::from_secs(5),
            max_local_jobs: 1,
            umask: 0o022,
        };
        let spec = JobSpec {
            dir_path: "/data/incoming/case 1".into(),
            job_name: "dirwatch-case_1".into(),
            key: "dw-k-1".into(),
        };
        let inv = sbatch_invocation(&job, "/data/incoming".as_ref(), &spec);
        let args: Vec<String> = inv
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--parsable",
                "--job-name=dirwatch-case_1",
                "--comment=dw-k-1",
                "--partition=main",
                "--account=dev",
                "--gres=gpu:1",
                "--time=00:10:00",
                "--chdir",
                "/data/incoming/case 1",
                "--qos=normal",
                "--wrap=python3 /opt/dirwatcher/process_dir.py '/data/incoming/case 1'",
            ]
        );
        assert!(
            inv.env
                .contains(&("WATCH_DIR".into(), "/data/incoming/case 1".into()))
        );
        assert!(inv.env.contains(&("A".into(), "b".into())));
        // The job's umask, not the daemon's (issue 14, D4).
        assert!(inv.env.contains(&("SLURM_UMASK".into(), "0022".into())));
    }
}
