//! The local executor: jobs run as child processes of this machine, with the same pipeline, quoting, time
//! limit (→ TIMEOUT), failure log and cleanup as Slurm. For trying dirwatcher out and for sites without Slurm.
//!
//! Each job lives in its own folder under `<state file>.local-jobs/<job id>/`: `spec.json` (what to run,
//! written at submit), `launched` (written just before the runner starts), `pid` (the runner), `status.json`
//! (the end, written atomically by the runner). The runner is `dirwatcher __local-job <folder>`, a separate
//! process in its own process group, so a job survives a restart of the daemon and its outcome is still
//! collected. Jobs beyond `job.max_local_jobs` wait as PENDING. Must never: run a job through a shell other
//! than the `sh -c` of `wrap_cmd`, or report a job it cannot see as failed before its runner is proven gone.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wait_timeout::ChildExt;

use super::{
    CancelError, JobReport, JobRow, JobSpec, JobsRun, Preflight, QueryError, Scheduler, Sightings,
    Source, SubmitError, TrackedJob, env_words, local_argv,
};
use crate::config::{Config, JobConfig};
use crate::logging::show;
use crate::state_paths::StatePaths;
use crate::time::Millis;

/// How long a launched runner may take to write its pid file before it counts as never started.
const LAUNCH_GRACE: Duration = Duration::from_secs(30);
/// How many times a job whose runner never wrote its pid is launched before it counts as lost. A runner
/// writes its pid before anything of the job runs, so a silent one never started the job: the daemon that
/// launched it was killed between `launched` and the spawn (or the spawn failed). Once more is safe (the
/// runners of one job take one lock); a second silence is a lost job, said as NODE_FAIL.
const MAX_LAUNCHES: u32 = 2;
/// SIGTERM → SIGKILL grace for timed-out or cancelled jobs (Slurm's KillWait).
const KILL_WAIT: Duration = Duration::from_secs(2);

/// What a local job runs; stored as `spec.json`. Byte vectors so non-UTF-8 paths survive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalSpec {
    /// The job's argv (`sh -c '<line>'` or `<script> <dir>`).
    pub argv: Vec<Vec<u8>>,
    /// Working directory, if `chdir_to_subdir`.
    pub chdir: Option<Vec<u8>>,
    /// File that receives stdout and stderr.
    pub output: Vec<u8>,
    /// Extra environment (WATCH_DIR and `job.env`).
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// Time limit in milliseconds.
    pub time_limit_ms: Option<u64>,
    /// The job's umask (`job.umask`); absent in specs written before the key existed (the runner's
    /// inherited umask then applies, as it did).
    #[serde(default)]
    pub umask: Option<u32>,
}

/// The end of a local job; stored as `status.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LocalStatus {
    /// COMPLETED, FAILED, TIMEOUT or CANCELLED.
    pub state: String,
    /// `code:signal`, as Slurm writes it.
    pub exit_code: String,
}

/// The local back end.
#[derive(Debug)]
pub struct Local {
    jobs_dir: PathBuf,
    job: JobConfig,
    root: PathBuf,
    /// When (monotonic) this process launched each runner.
    launched: HashMap<String, Instant>,
}

impl Local {
    /// A local back end for this config.
    pub fn new(cfg: &Config) -> Self {
        Local {
            jobs_dir: StatePaths::of(&cfg.behavior.state_file).local_jobs,
            job: cfg.job.clone(),
            root: cfg.watch.root.clone(),
            launched: HashMap::new(),
        }
    }

    fn job_dir(&self, id: &str) -> PathBuf {
        self.jobs_dir.join(id)
    }

    fn launch(&mut self, id: &str) -> io::Result<()> {
        let dir = self.job_dir(id);
        let n = launches(&dir) + 1;
        crate::fsx::write_atomic(
            &dir.join("launched"),
            n.to_string().as_bytes(),
            JOB_FILE_MODE,
        )?;
        self.launched.insert(id.to_string(), Instant::now());
        let exe = std::env::current_exe()?;
        // The job inherits the runner's environment: the same cleaned one Slurm jobs get.
        let mut child = Command::new(exe)
            .arg("__local-job")
            .arg(&dir)
            .env_clear()
            .envs(crate::process::child_env(std::env::vars_os(), &[]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        // Reap the runner when it ends; after a daemon restart, init does.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(())
    }

    fn report(&self, id: &str) -> Probe {
        probe(&self.job_dir(id), self.launched.get(id).copied())
    }
}

/// How many times the job in `dir` was launched (`launched` holds the count; empty, as an older release
/// wrote it, is once).
fn launches(dir: &Path) -> u32 {
    fs::read_to_string(dir.join("launched")).map_or(0, |s| s.trim().parse().unwrap_or(1))
}

/// Where the job in `dir` is, from its files; `launched_at` is when this process launched its runner.
fn probe(dir: &Path, launched_at: Option<Instant>) -> Probe {
    if let Some(st) = read_status(dir) {
        return Probe::Ended(st);
    }
    if let Ok(pid) = fs::read_to_string(dir.join("pid")) {
        if runner_alive(&pid) {
            return Probe::Running;
        }
        // The runner may have finished between the two reads.
        if let Some(st) = read_status(dir) {
            return Probe::Ended(st);
        }
        return Probe::Lost;
    }
    if let Ok(m) = fs::metadata(dir.join("launched")) {
        // Launched by this process: its own monotonic clock says how long ago (a wall-clock step must
        // not make a runner that is starting look lost). After a restart, the file's time is all there is.
        let age = match launched_at {
            Some(at) => at.elapsed(),
            None => m
                .modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default(),
        };
        return if age < LAUNCH_GRACE {
            Probe::Running
        } else if launches(dir) < MAX_LAUNCHES {
            Probe::Queued
        } else {
            Probe::Lost
        };
    }
    if dir.join("spec.json").exists() {
        Probe::Queued
    } else {
        Probe::Unknown
    }
}

enum Probe {
    Ended(LocalStatus),
    Running,
    Queued,
    Lost,
    Unknown,
}

fn read_status(dir: &Path) -> Option<LocalStatus> {
    let text = fs::read(dir.join("status.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// `pid starttime` of a runner → is that very process still alive (not a reused pid, not a zombie)?
fn runner_alive(pid_file: &str) -> bool {
    let mut it = pid_file.split_whitespace();
    let (Some(pid), Some(start)) = (it.next(), it.next()) else {
        return false;
    };
    match proc_start_and_state(pid) {
        Some((s, state)) => s == start && state != "Z" && state != "X",
        None => false,
    }
}

fn proc_start_and_state(pid: &str) -> Option<(String, String)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: field 3 is the state (index 0), field 22 is starttime (index 19).
    Some((fields.get(19)?.to_string(), fields.first()?.to_string()))
}

/// Mode of a job's bookkeeping files: the spec holds `job.env`, so no one outside the service's group.
const JOB_FILE_MODE: u32 = 0o640;
/// Mode of a job's output file when the runner creates it, before the job's umask (`job.umask`) cuts it, as
/// slurmstepd does: `0644` with the default `0022`. The output folder (`0750`) keeps others out.
const OUTPUT_MODE: u32 = 0o666;

/// Mode of the jobs' folders (`<state file>.local-jobs` and one per job).
const JOB_DIR_MODE: u32 = 0o750;

/// Creates a job's folder (and the folder of all jobs) with [`JOB_DIR_MODE`] exactly, whatever the umask.
fn make_job_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent()
        && !parent.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(JOB_DIR_MODE)
            .create(parent)?;
        fs::set_permissions(parent, fs::Permissions::from_mode(JOB_DIR_MODE))?;
    }
    match fs::DirBuilder::new().mode(JOB_DIR_MODE).create(dir) {
        // Left by a submission that crashed before its spec was written: used again, if it is a folder.
        Err(e)
            if e.kind() == io::ErrorKind::AlreadyExists && fs::symlink_metadata(dir)?.is_dir() => {}
        r => r?,
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(JOB_DIR_MODE))
}

/// Refuses to run a job whose spec someone else could have written: the spec says what runs, as the
/// service user. The spec (opened without following a link), its folder and the folder of all jobs must
/// belong to this user and be writable by no one else. Returns the spec's bytes, read from the very file
/// that was checked.
fn read_trusted_spec(dir: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let check = |what: &Path, m: &fs::Metadata| -> io::Result<()> {
        let mode = m.mode() & 0o7777;
        if m.uid() != me || mode & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refusing to run: `{}` belongs to uid {} with mode {mode:04o}, and must belong to uid {me} \
                     and be writable by no one else (someone could have changed what the job runs)",
                    what.display(),
                    m.uid()
                ),
            ));
        }
        Ok(())
    };
    for folder in [dir.parent(), Some(dir)].into_iter().flatten() {
        let m = fs::symlink_metadata(folder)?;
        if !m.is_dir() {
            return Err(io::Error::other(format!(
                "refusing to run: `{}` is not a real folder",
                folder.display()
            )));
        }
        check(folder, &m)?;
    }
    let path = dir.join("spec.json");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    check(&path, &f.metadata()?)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Expands `%j` (job id) and `%x` (job name) in an output pattern, as Slurm does.
pub fn expand_output(pattern: &str, job_id: &str, job_name: &str) -> String {
    pattern.replace("%j", job_id).replace("%x", job_name)
}

impl Scheduler for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn jobs_run(&self) -> JobsRun {
        JobsRun::OnThisHost
    }

    fn preflight(&mut self) -> Preflight {
        Preflight::NothingToAsk("`job.executor` is `local` (jobs run on this machine)")
    }

    fn describe(&self, spec: &JobSpec) -> String {
        // The argument vector itself, one JSON string per argument: no shell reads it.
        let argv: Vec<String> = local_argv(&self.job.command, spec.dir_path.as_os_str())
            .iter()
            .map(|a| {
                // JSON leaves DEL and the C1 controls raw: `\u00NN` keeps each a JSON string a
                // terminal shows as text.
                let json = serde_json::to_string(&a.to_string_lossy()).unwrap_or_default();
                crate::out::json_safe(&json).into_owned()
            })
            .collect();
        let cwd = if self.job.chdir_to_subdir {
            show(&spec.dir_path)
        } else {
            show(&self.root)
        };
        format!(
            "would run locally (job {}, in {cwd}):\n  env {}\n  argv [{}]",
            crate::logging::field_str(&spec.job_name),
            crate::logging::field_str(&env_words(&self.job, &spec.dir_path).join(" ")),
            argv.join(", ")
        )
    }

    fn submit(&mut self, spec: &JobSpec) -> Result<String, SubmitError> {
        let id = spec.key.replacen("dw-", "local-", 1);
        let dir = self.job_dir(&id);
        let fail = |what: &str, e: io::Error| {
            SubmitError::Refused(format!("cannot {what} `{}`: {e}", dir.display()))
        };
        make_job_dir(&dir).map_err(|e| fail("create the local job folder", e))?;
        // As Slurm names it; without `--chdir` a local job's working directory is the root.
        let output = super::output_file(&self.job, &self.root, &spec.dir_path, &id, &spec.job_name)
            .unwrap_or_else(|| self.root.join(format!("slurm-{id}.out")));
        let mut env = vec![(
            b"WATCH_DIR".to_vec(),
            spec.dir_path.clone().into_os_string().into_vec(),
        )];
        env.extend(
            self.job
                .env
                .iter()
                .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes())),
        );
        let local = LocalSpec {
            argv: local_argv(&self.job.command, spec.dir_path.as_os_str())
                .into_iter()
                .map(OsString::into_vec)
                .collect(),
            chdir: self
                .job
                .chdir_to_subdir
                .then(|| spec.dir_path.clone().into_os_string().into_vec()),
            output: output.into_os_string().into_vec(),
            env,
            time_limit_ms: self
                .job
                .time_limit
                .as_ref()
                .and_then(|t| t.duration)
                .map(|d| d.as_millis() as u64),
            umask: Some(self.job.umask),
        };
        let json = serde_json::to_vec(&local).map_err(|e| SubmitError::Refused(e.to_string()))?;
        crate::fsx::write_atomic(&dir.join("spec.json"), &json, JOB_FILE_MODE)
            .map_err(|e| fail("write the job spec in", e))?;
        Ok(id)
    }

    fn query(
        &mut self,
        jobs: &[TrackedJob],
        _decided: &super::Decided<'_>,
    ) -> Result<Sightings, QueryError> {
        let job_ids: Vec<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
        let out = self.states(&job_ids)?;
        // A local job's id is made from its key, so every report is about our job; the local executor
        // never requeues, and it is accounting and controller in one.
        let rows = jobs
            .iter()
            .filter_map(|j| {
                let rep = out.get(&j.job_id)?;
                Some(JobRow {
                    source: Source::Controller,
                    job_id: j.job_id.clone(),
                    name: j.job_name.to_string(),
                    comment: j.key.to_string(),
                    submit: Some(j.since),
                    end: None,
                    state: rep.state.clone(),
                    exit_code: rep.exit_code.clone(),
                    requeue: Some(false),
                    detail: Default::default(),
                })
            })
            .collect();
        Ok(Sightings {
            rows,
            accounting: true,
            controller: true,
            steady: Vec::new(),
        })
    }

    fn lookup(
        &mut self,
        key: &str,
        _job_name: &str,
        _since: Millis,
    ) -> Result<Option<String>, QueryError> {
        let id = key.replacen("dw-", "local-", 1);
        Ok(self.job_dir(&id).join("spec.json").exists().then_some(id))
    }

    /// A running job: SIGTERM to its runner's process group (the runner ends the job's own group and
    /// records CANCELLED). A job not started yet: its end is written at once, so it never starts.
    fn cancel(&mut self, job: &TrackedJob) -> Result<(), CancelError> {
        let dir = self.job_dir(&job.job_id);
        let fail = |what: &str, e: io::Error| {
            CancelError(format!("cannot {what} local job `{}`: {e}", dir.display()))
        };
        match self.report(&job.job_id) {
            Probe::Ended(_) | Probe::Lost | Probe::Unknown => Ok(()),
            Probe::Queued => write_status(&dir, "CANCELLED", "0:15").map_err(|e| fail("cancel", e)),
            Probe::Running => {
                let pid = match runner_pid(&dir) {
                    Some(pid) => pid,
                    None => {
                        // Launched, but its runner has not written its pid yet: it checks for an end
                        // before it starts the job. If it wrote its pid meanwhile, it is signalled too.
                        write_status(&dir, "CANCELLED", "0:15").map_err(|e| fail("cancel", e))?;
                        match runner_pid(&dir) {
                            Some(pid) => pid,
                            None => return Ok(()),
                        }
                    }
                };
                // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
                if unsafe { libc::kill(-pid, libc::SIGTERM) } != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::ESRCH) {
                        return Err(fail("signal", e));
                    }
                }
                Ok(())
            }
        }
    }
}

/// The pid of a job's runner, if it is the very process that wrote the pid file and still alive.
fn runner_pid(dir: &Path) -> Option<i32> {
    let text = fs::read_to_string(dir.join("pid")).ok()?;
    if !runner_alive(&text) {
        return None;
    }
    text.split_whitespace().next()?.parse().ok()
}

fn write_status(dir: &Path, state: &str, exit_code: &str) -> io::Result<()> {
    let st = LocalStatus {
        state: state.into(),
        exit_code: exit_code.into(),
    };
    crate::fsx::write_atomic(
        &dir.join("status.json"),
        &serde_json::to_vec(&st).map_err(io::Error::other)?,
        JOB_FILE_MODE,
    )
}

impl Local {
    /// The state of each known job, starting queued ones while slots are free.
    fn states(&mut self, job_ids: &[String]) -> Result<HashMap<String, JobReport>, QueryError> {
        let mut out = HashMap::new();
        let mut running = 0usize;
        let mut queued = Vec::new();
        for id in job_ids {
            let rep = match self.report(id) {
                Probe::Ended(s) => JobReport {
                    state: s.state,
                    exit_code: s.exit_code,
                    detail: Default::default(),
                },
                Probe::Running => {
                    running += 1;
                    JobReport {
                        state: "RUNNING".into(),
                        exit_code: "0:0".into(),
                        detail: Default::default(),
                    }
                }
                Probe::Queued => {
                    queued.push(id.clone());
                    JobReport {
                        state: "PENDING".into(),
                        exit_code: "0:0".into(),
                        detail: Default::default(),
                    }
                }
                // The runner was killed (or the machine rebooted) before it could record the end.
                Probe::Lost => JobReport {
                    state: "NODE_FAIL".into(),
                    exit_code: "0:0".into(),
                    detail: Default::default(),
                },
                Probe::Unknown => continue,
            };
            out.insert(id.clone(), rep);
        }
        // Oldest first: ids end in the ledger's row number.
        queued.sort_by_key(|id| {
            id.rsplit('-')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        });
        for id in queued {
            if running >= self.job.max_local_jobs as usize {
                break;
            }
            match self.launch(&id) {
                Ok(()) => {
                    running += 1;
                    out.insert(
                        id,
                        JobReport {
                            state: "RUNNING".into(),
                            exit_code: "0:0".into(),
                            detail: Default::default(),
                        },
                    );
                }
                Err(e) => return Err(QueryError(format!("cannot start local job {id}: {e}"))),
            }
        }
        Ok(out)
    }
}

/// `dirwatcher __local-job <folder>`: runs one local job to its end and records it. Returns the exit code
/// of the runner itself (0 when the end was recorded, whatever the job's outcome).
pub fn run_job(dir: &Path) -> i32 {
    match run_job_inner(dir) {
        Ok(()) => 0,
        Err(e) => {
            crate::out::error(format_args!(
                "dirwatcher local job `{}`: {e}",
                dir.display()
            ));
            let st = LocalStatus {
                state: "FAILED".into(),
                exit_code: "1:0".into(),
            };
            let _ = crate::fsx::write_atomic(
                &dir.join("status.json"),
                &serde_json::to_vec(&st).unwrap_or_default(),
                JOB_FILE_MODE,
            );
            1
        }
    }
}

/// One runner per job, ever: a runner launched again (the first never wrote its pid: see `probe`) and a
/// first one that was only slow cannot both run it. `None`: another runner holds the job, or got here
/// first (it ran the job, or ended before it, and said so itself).
fn claim_job(dir: &Path) -> io::Result<Option<fs::File>> {
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(JOB_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join("runner.lock"))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Ok(None),
        Err(fs::TryLockError::Error(e)) => return Err(e),
    }
    if dir.join("pid").exists() || read_status(dir).is_some() {
        return Ok(None);
    }
    Ok(Some(lock))
}

fn run_job_inner(dir: &Path) -> io::Result<()> {
    let spec: LocalSpec =
        serde_json::from_slice(&read_trusted_spec(dir)?).map_err(io::Error::other)?;
    // Signals first: whoever reads the pid file may cancel at once, and a SIGTERM before the handler is
    // in place would kill the runner without an end (read as NODE_FAIL instead of CANCELLED).
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&cancel))?;
    }
    // The lock is held until this process ends.
    let Some(_lock) = claim_job(dir)? else {
        return Ok(());
    };
    let me = std::process::id().to_string();
    let (start, _) = proc_start_and_state(&me).unwrap_or_default();
    crate::fsx::write_atomic(
        &dir.join("pid"),
        format!("{me} {start}\n").as_bytes(),
        JOB_FILE_MODE,
    )?;
    if read_status(dir).is_some() {
        // Cancelled before it started (`dirwatcher cancel`): its end is already recorded.
        return Ok(());
    }
    if let Some(mask) = spec.umask {
        // Before the output file is opened: like slurmstepd, the job's files (its output included) get
        // the job's umask, not the daemon's.
        // SAFETY: umask(2) only sets this process's file mode creation mask.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    let output = PathBuf::from(OsString::from_vec(spec.output.clone()));
    // The folder is the daemon's (created and checked before submitting); a symlink planted at the file
    // itself (`job.output: ""` puts it in the data directory) is refused rather than written through.
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(OUTPUT_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&output)?;
    let argv: Vec<OsString> = spec.argv.iter().cloned().map(OsString::from_vec).collect();
    let Some((prog, args)) = argv.split_first() else {
        return Err(io::Error::other("empty command"));
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    if let Some(c) = &spec.chdir {
        cmd.current_dir(OsString::from_vec(c.clone()));
    }
    for (k, v) in &spec.env {
        cmd.env(OsString::from_vec(k.clone()), OsString::from_vec(v.clone()));
    }
    let status = match cmd.spawn() {
        Ok(mut child) => {
            let started = Instant::now();
            let limit = spec.time_limit_ms.map(Duration::from_millis);
            let mut ended_by: Option<&str> = None;
            let status = loop {
                if let Some(s) = child.wait_timeout(Duration::from_millis(100))? {
                    break s;
                }
                let why = if cancel.load(Ordering::Relaxed) {
                    Some("CANCELLED")
                } else if limit.is_some_and(|l| started.elapsed() >= l) {
                    Some("TIMEOUT")
                } else {
                    None
                };
                if let Some(w) = why {
                    ended_by = Some(w);
                    crate::process::terminate_group(&mut child, KILL_WAIT);
                    break child.wait()?;
                }
            };
            LocalStatus {
                state: ended_by.map_or_else(|| state_of(status), String::from),
                exit_code: exit_code_of(status),
            }
        }
        Err(e) => {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&output)?;
            let _ = writeln!(f, "dirwatcher: cannot start {:?}: {e}", prog);
            LocalStatus {
                state: "FAILED".into(),
                exit_code: "127:0".into(),
            }
        }
    };
    record_end(dir, &status, &cancel)
}

/// Writes the job's end, waiting while the file system is full: a job that ran is never reported as lost
/// (NODE_FAIL, and then perhaps run again) because its result could not be written at once. Meanwhile the
/// runner lives on, so the daemon sees the job as still running; a cancel while waiting gives up.
fn record_end(dir: &Path, status: &LocalStatus, cancel: &AtomicBool) -> io::Result<()> {
    let bytes = serde_json::to_vec(status).map_err(io::Error::other)?;
    let mut pause = Duration::from_millis(100);
    loop {
        match crate::fsx::write_atomic(&dir.join("status.json"), &bytes, JOB_FILE_MODE) {
            Err(e) if is_full(&e) && !cancel.load(Ordering::Relaxed) => {
                // Not a synchronisation: the runner has nothing else to do until space is back.
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// No space or no quota left.
fn is_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

fn state_of(status: ExitStatus) -> String {
    if status.success() {
        "COMPLETED".into()
    } else {
        "FAILED".into()
    }
}

fn exit_code_of(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("{c}:0"),
        (None, Some(s)) => format!("0:{s}"),
        _ => "0:0".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_patterns_expand_like_slurm() {
        assert_eq!(
            expand_output(".dirwatcher/logs/%x-%j.out", "local-a-1", "dw-x"),
            ".dirwatcher/logs/dw-x-local-a-1.out"
        );
    }

    /// A job folder as `submit` leaves it: its spec, running `sh -c 'echo run >> RUNS'`.
    fn submitted(t: &Path) -> (PathBuf, PathBuf) {
        let dir = t.join("state.db.local-jobs").join("local-x-1");
        make_job_dir(&dir).unwrap();
        let runs = t.join("runs");
        let spec = LocalSpec {
            argv: vec![
                b"sh".to_vec(),
                b"-c".to_vec(),
                format!("echo run >> '{}'", runs.display()).into_bytes(),
            ],
            chdir: None,
            output: t.join("out").into_os_string().into_vec(),
            env: vec![],
            time_limit_ms: None,
            umask: None,
        };
        let json = serde_json::to_vec(&spec).unwrap();
        crate::fsx::write_atomic(&dir.join("spec.json"), &json, JOB_FILE_MODE).unwrap();
        (dir, runs)
    }

    /// Makes `launched` (holding `n`) as if written `ago` before now.
    fn launched(dir: &Path, n: &str, ago: Duration) {
        crate::fsx::write_atomic(&dir.join("launched"), n.as_bytes(), JOB_FILE_MODE).unwrap();
        let f = fs::File::options()
            .write(true)
            .open(dir.join("launched"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - ago).unwrap();
    }

    #[test]
    fn a_runner_a_killed_daemon_never_spawned_is_launched_once_more_then_lost() {
        let t = tempfile::tempdir().unwrap();
        let (dir, _) = submitted(t.path());
        assert!(matches!(probe(&dir, None), Probe::Queued));
        // Launched, then the daemon was killed before the runner started: within the grace it may still
        // come; past it, it never will, and the job never ran (a runner writes its pid first).
        launched(&dir, "1", Duration::from_secs(1));
        assert!(matches!(probe(&dir, None), Probe::Running));
        launched(&dir, "1", LAUNCH_GRACE + Duration::from_secs(5));
        assert!(matches!(probe(&dir, None), Probe::Queued));
        // As an older release wrote it (empty): once.
        launched(&dir, "", LAUNCH_GRACE + Duration::from_secs(5));
        assert!(matches!(probe(&dir, None), Probe::Queued));
        // Launched again by this process: its own clock says the runner is starting.
        assert!(matches!(probe(&dir, Some(Instant::now())), Probe::Running));
        // Silent twice: lost.
        launched(&dir, "2", LAUNCH_GRACE + Duration::from_secs(5));
        assert!(matches!(probe(&dir, None), Probe::Lost));
    }

    #[test]
    fn two_runners_of_one_job_run_it_once() {
        let t = tempfile::tempdir().unwrap();
        let (dir, runs) = submitted(t.path());
        // The first runner holds the job's lock (it is starting, slowly): a second one does nothing.
        let held = fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("runner.lock"))
            .unwrap();
        held.lock().unwrap();
        assert_eq!(run_job(&dir), 0);
        assert!(!runs.exists(), "a second runner ran the job");
        assert!(!dir.join("pid").exists());
        drop(held);
        // The lock is free: this runner runs it, once; one that comes after it finds its pid and ends.
        assert_eq!(run_job(&dir), 0);
        assert_eq!(read_status(&dir).unwrap().state, "COMPLETED");
        fs::remove_file(dir.join("status.json")).unwrap();
        assert_eq!(run_job(&dir), 0);
        assert_eq!(fs::read_to_string(&runs).unwrap(), "run\n");
    }

    #[test]
    fn a_spec_someone_else_could_write_is_not_run() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let (dir, marker) = submitted(t.path());
        fs::set_permissions(dir.join("spec.json"), fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(run_job(&dir), 1);
        assert!(!marker.exists(), "a spec writable by others was run");
        let st = read_status(&dir).unwrap();
        assert_eq!(st.state, "FAILED");

        // The same spec with its mode, in a folder others may write: refused too.
        fs::remove_file(dir.join("status.json")).unwrap();
        fs::set_permissions(
            dir.join("spec.json"),
            fs::Permissions::from_mode(JOB_FILE_MODE),
        )
        .unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(run_job(&dir), 1);
        assert!(
            !marker.exists(),
            "a spec in a folder writable by others was run"
        );

        // As written by the daemon: it runs.
        fs::remove_file(dir.join("status.json")).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(JOB_DIR_MODE)).unwrap();
        assert_eq!(run_job(&dir), 0);
        assert!(marker.exists());
        assert_eq!(read_status(&dir).unwrap().state, "COMPLETED");
    }
}
