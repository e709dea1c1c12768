//! Operator commands that work on the ledger beside a running daemon (`status`, `retry`, `forget`), and the
//! `demo` that shows dirwatcher working without Slurm.
//!
//! Must never: write anything but ledger rows (and, for the demo, its own folder), or touch a directory of
//! the watched root.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::config::Config;
use crate::engine::{GenState, Generation, classify_rejection};
use crate::ledger::{Counts, Ledger};
use crate::logging::show;
use crate::time::Millis;
use crate::time::wall_now;

/// One in-flight job in `status`.
#[derive(Debug, Serialize)]
pub struct InFlight {
    /// Full path of the directory.
    pub dir: String,
    /// `submitting` (no job id yet) or `submitted`.
    pub state: String,
    /// Job id, once known.
    pub job_id: Option<String>,
    /// Job name.
    pub job_name: String,
    /// Attempt number (1 = first job).
    pub attempt: u32,
    /// Seconds since the intent was committed.
    pub age_sec: u64,
    /// Last submission error, if any.
    pub last_error: Option<String>,
}

/// One failure in `status`.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// Full path of the directory.
    pub dir: String,
    /// Job id.
    pub job_id: Option<String>,
    /// Final state.
    pub state: Option<String>,
    /// Exit code.
    pub exit_code: Option<String>,
    /// Attempt number.
    pub attempt: u32,
    /// When it ended (RFC 3339).
    pub finished_at: Option<String>,
}

/// Why submissions are refused, in `status`: the latest `sbatch` was refused for what the config asks.
#[derive(Debug, Serialize)]
pub struct Refusal {
    /// `config`: a configuration error that waiting will not fix.
    pub reason: &'static str,
    /// What Slurm says is wrong, in words.
    pub problem: &'static str,
    /// The config key to fix.
    pub key: &'static str,
    /// What to check.
    pub advice: &'static str,
    /// The directory whose submission was refused last.
    pub dir: String,
    /// What `sbatch` said.
    pub error: String,
    /// When it was refused (RFC 3339).
    pub at: String,
    /// Directories waiting for a job meanwhile.
    pub waiting: usize,
}

/// The whole `status` report.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The ledger file.
    pub state_file: String,
    /// The watched root.
    pub root: String,
    /// Directories by the state of their latest generation.
    pub counts: Counts,
    /// Set while submissions are refused for a configuration reason (as the ledger last saw it).
    pub submissions_refused: Option<Refusal>,
    /// Jobs in flight (and intents waiting for their job id).
    pub in_flight: Vec<InFlight>,
    /// Most recent failures, newest first.
    pub recent_failures: Vec<Failure>,
    /// Directories whose job is lost (no source showed it for longer than `job.lost_after_sec`).
    pub lost: Vec<InFlight>,
    /// Directories whose ready-file the daemon cannot look at (they wait, unsubmitted).
    pub unreadable: Vec<Unreadable>,
}

/// A directory the daemon cannot look at, in `status`.
#[derive(Debug, Serialize)]
pub struct Unreadable {
    /// Full path of the directory.
    pub dir: String,
    /// What failed.
    pub problem: String,
}

fn rfc3339(m: Millis) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(m.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Builds the `status` report.
pub fn status(cfg: &Config, failures: u32) -> anyhow::Result<Status> {
    let ledger = open_existing(cfg)?;
    let now = wall_now();
    let root = &cfg.watch.root;
    let row = |g: Generation| InFlight {
        dir: root.join(&g.dir).to_string_lossy().into_owned(),
        state: g.state.as_str().into(),
        job_id: g.job_id.clone(),
        job_name: g.job_name.clone(),
        attempt: g.attempt,
        age_sec: ((now - g.created_at).max(0) / 1000) as u64,
        last_error: g.last_error.clone(),
    };
    let active = ledger.active()?;
    let submissions_refused = refusal(root, &active);
    let in_flight = active.into_iter().map(row).collect();
    let lost = ledger.lost()?.into_iter().map(row).collect();
    let recent_failures = ledger
        .recent_failures(failures)?
        .into_iter()
        .map(|g| Failure {
            dir: root.join(&g.dir).to_string_lossy().into_owned(),
            job_id: g.job_id,
            state: g.final_state,
            exit_code: g.exit_code,
            attempt: g.attempt,
            finished_at: g.finished_at.map(rfc3339),
        })
        .collect();
    Ok(Status {
        state_file: cfg.behavior.state_file.to_string_lossy().into_owned(),
        root: root.to_string_lossy().into_owned(),
        counts: ledger.counts()?,
        submissions_refused,
        in_flight,
        recent_failures,
        lost,
        unreadable: ledger
            .unreadable()?
            .into_iter()
            .map(|(d, problem)| Unreadable {
                dir: root.join(d).to_string_lossy().into_owned(),
                problem,
            })
            .collect(),
    })
}

/// Whether the ledger says submissions are refused for a configuration reason: the most recent failed
/// `sbatch` among the waiting intents was, and no job was submitted after it.
fn refusal(root: &Path, active: &[Generation]) -> Option<Refusal> {
    let waiting: Vec<&Generation> = active
        .iter()
        .filter(|g| g.state == GenState::Submitting)
        .collect();
    let last = waiting
        .iter()
        .filter(|g| g.last_error.is_some())
        .max_by_key(|g| g.updated_at)?;
    let error = last.last_error.clone()?;
    let reason = classify_rejection(&error)?;
    let last_submitted = active.iter().filter_map(|g| g.submitted_at).max();
    if last_submitted.is_some_and(|t| t >= last.updated_at) {
        return None;
    }
    Some(Refusal {
        reason: "config",
        problem: reason.problem(),
        key: reason.key(),
        advice: reason.advice(),
        dir: root.join(&last.dir).to_string_lossy().into_owned(),
        error,
        at: rfc3339(last.updated_at),
        waiting: waiting.len(),
    })
}

/// Renders the report for people.
pub fn render_status(s: &Status) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let c = &s.counts;
    let _ = writeln!(o, "root {}  (ledger {})", s.root, s.state_file);
    let _ = writeln!(
        o,
        "directories: {} submitting, {} in flight, {} completed, {} failed, {} lost",
        c.submitting, c.submitted, c.completed, c.failed, c.lost
    );
    if let Some(r) = &s.submissions_refused {
        let _ = writeln!(
            o,
            "\nsubmissions refused by Slurm: {} — a configuration error: fix `{}` ({}), then reload the \
             daemon (`systemctl reload dirwatcher` or SIGHUP); {} directories wait meanwhile\n  \
             last refused: {} at {}\n  sbatch said: {}",
            r.problem, r.key, r.advice, r.waiting, r.dir, r.at, r.error
        );
    }
    if !s.in_flight.is_empty() {
        let _ = writeln!(o, "\nin flight:");
        for j in &s.in_flight {
            let _ = writeln!(
                o,
                "  job {:<10} {:<10} {:>6}s  attempt {}  {}{}",
                j.job_id.as_deref().unwrap_or("-"),
                j.state,
                j.age_sec,
                j.attempt,
                j.dir,
                j.last_error
                    .as_deref()
                    .map(|e| format!("  (last error: {e})"))
                    .unwrap_or_default()
            );
        }
    }
    if !s.lost.is_empty() {
        let _ = writeln!(
            o,
            "\nlost: no source (sacct, squeue) shows these jobs; check them, then `dirwatcher retry DIR`:"
        );
        for j in &s.lost {
            let _ = writeln!(
                o,
                "  job {:<10} attempt {}  {}",
                j.job_id.as_deref().unwrap_or("-"),
                j.attempt,
                j.dir
            );
        }
    }
    if !s.unreadable.is_empty() {
        let _ = writeln!(
            o,
            "\nnot submitted: the daemon cannot read their ready-file (check the permissions):"
        );
        for u in &s.unreadable {
            let _ = writeln!(o, "  {}  ({})", u.dir, u.problem);
        }
    }
    if !s.recent_failures.is_empty() {
        let _ = writeln!(o, "\nrecent failures (retry with `dirwatcher retry DIR`):");
        for f in &s.recent_failures {
            let _ = writeln!(
                o,
                "  {}  job {}  {} (exit {})  {}",
                f.finished_at.as_deref().unwrap_or("-"),
                f.job_id.as_deref().unwrap_or("-"),
                f.state.as_deref().unwrap_or("-"),
                f.exit_code.as_deref().unwrap_or("-"),
                f.dir
            );
        }
    }
    o
}

fn open_existing(cfg: &Config) -> anyhow::Result<Ledger> {
    let p = &cfg.behavior.state_file;
    if !p.exists() {
        bail!(
            "no ledger at `{}` yet: has `dirwatcher run` been started with this config?",
            p.display()
        );
    }
    Ok(Ledger::open(p)?)
}

/// Turns a `DIR` argument (a name, or a path under the root) into the directory name the ledger uses.
pub fn dir_name(root: &Path, arg: &Path) -> anyhow::Result<OsString> {
    let rel = if arg.is_absolute() {
        arg.strip_prefix(root).with_context(|| {
            format!(
                "`{}` is not under the watched root `{}`",
                arg.display(),
                root.display()
            )
        })?
    } else {
        arg
    };
    let mut comps = rel.components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(n)), None) => Ok(n.to_os_string()),
        _ => bail!(
            "`{}` is not a directory directly under the root `{}`",
            arg.display(),
            root.display()
        ),
    }
}

/// `retry`: queues a new attempt for each failed or lost directory. Returns one line per directory.
pub fn retry(cfg: &Config, dirs: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut ledger = open_existing(cfg)?;
    let mut out = Vec::new();
    for d in dirs {
        let name = dir_name(&cfg.watch.root, d)?;
        let shown = show(&cfg.watch.root.join(&name));
        let Some(g) = ledger.latest_for_dir(&name)? else {
            bail!(
                "{shown} is not in the ledger; nothing to retry (a directory with a ready-file is picked up on its own)"
            );
        };
        match g.state {
            GenState::Failed | GenState::Lost => {
                let id = ledger.requeue(&g, wall_now())?;
                out.push(format!("{shown}: queued attempt {} (record {id}); the daemon submits it on its next cycle", g.attempt + 1));
            }
            s => bail!(
                "{shown} is {} (job {}), not failed or lost; only those can be retried",
                s.as_str(),
                g.job_id.as_deref().unwrap_or("-")
            ),
        }
    }
    Ok(out)
}

/// `forget`: removes each directory's records. Refused while its job is in flight.
pub fn forget(cfg: &Config, dirs: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let ledger = open_existing(cfg)?;
    let mut out = Vec::new();
    for d in dirs {
        let name = dir_name(&cfg.watch.root, d)?;
        let path = cfg.watch.root.join(&name);
        let shown = show(&path);
        let history: Vec<Generation> = ledger.history(&name)?;
        if let Some(g) = history.iter().find(|g| g.state.is_active()) {
            bail!(
                "{shown} has job {} in flight ({}); forgetting it would lose its outcome. Cancel the job (`scancel`) and wait for it to be recorded first",
                g.job_id.as_deref().unwrap_or("-"),
                g.state.as_str()
            );
        }
        let n = ledger.forget(&name)?;
        let again = if path.join(&cfg.watch.signal_filename).exists() {
            " — its ready-file is still there, so it will be submitted again"
        } else {
            ""
        };
        out.push(format!("{shown}: forgot {n} record(s){again}"));
    }
    Ok(out)
}

/// What `check-config --slurm` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlurmCheck {
    /// Slurm would take the job, or there is no Slurm to ask (local executor).
    Fine,
    /// Slurm refuses the job for what the config asks: a configuration error.
    Refused,
    /// Slurm refused for another reason, or could not be asked: nothing is proven about the config.
    Unknown,
}

/// `check-config --slurm`: asks `sbatch --test-only` (no job is created) about the exact job the daemon
/// would submit, as the user running the command. Returns the verdict and what to print: `out` for
/// stdout, `err` for stderr.
pub fn check_slurm(cfg: &Config) -> (SlurmCheck, String, String) {
    use crate::scheduler::slurm::{TestOnly, run_test_only, test_only_invocation};
    if cfg.job.executor == crate::config::ExecutorKind::Local {
        return (
            SlurmCheck::Fine,
            "# slurm: nothing to check, `job.executor` is `local` (jobs run on this machine)\n"
                .into(),
            String::new(),
        );
    }
    let inv = test_only_invocation(cfg);
    let user = current_user();
    let mut out = format!(
        "# slurm: asking sbatch about the job dirwatcher submits (for the root as a sample directory), \
         as user `{user}`; --test-only creates no job:\n#   {}\n",
        command_line(&inv)
    );
    let fix = |key: &str| match configured(cfg, key) {
        Some(v) => format!("`{key}` (now {v})"),
        None => format!("`{key}` (not set)"),
    };
    match run_test_only(&inv, cfg.job.command_timeout) {
        TestOnly::Accepted(said) => {
            out.push_str(&format!("slurm accepts the job: {said}\n"));
            (SlurmCheck::Fine, out, String::new())
        }
        TestOnly::Refused {
            said,
            reason: Some(r),
        } => (
            SlurmCheck::Refused,
            out,
            format!(
                "error: slurm refuses the job dirwatcher would submit as `{user}`: {}\n  fix: {}: {}\n  \
                 sbatch said: {said}\n",
                r.problem(),
                fix(r.key()),
                r.advice()
            ),
        ),
        TestOnly::Refused { said, reason: None } => (
            SlurmCheck::Unknown,
            out,
            format!(
                "error: slurm did not accept the test submission, for a reason that is not clearly about the \
                 config: {said}\n  check that the controller answers (`sinfo`), then `job.partition`, \
                 `job.account`, `job.gres`, `job.time_limit` and `job.extra_args`\n"
            ),
        ),
        TestOnly::NotAsked(e) => (
            SlurmCheck::Unknown,
            out,
            format!("error: cannot ask slurm: {e}\n"),
        ),
    }
}

/// The configured value of a `job.*` key that a refusal names, for the fix line.
fn configured(cfg: &Config, key: &str) -> Option<String> {
    let j = &cfg.job;
    let q = |s: &str| format!("`{s}`");
    match key {
        "job.account" => j.account.as_deref().map(q),
        "job.partition" => j.partition.as_deref().map(q),
        "job.gres" => j.gres.as_deref().map(q),
        "job.time_limit" => j.time_limit.as_ref().map(|t| q(&t.slurm)),
        "job.extra_args" => (!j.extra_args.is_empty()).then(|| q(&j.extra_args.join(" "))),
        "job.job_script" => match &j.command {
            crate::config::JobCommand::Script(p) => Some(q(&p.to_string_lossy())),
            crate::config::JobCommand::Wrap(_) => None,
        },
        _ => None,
    }
}

/// An invocation as one shell-quoted line, for people to read or paste.
fn command_line(inv: &crate::process::Invocation) -> String {
    use crate::scheduler::shell_quote;
    std::iter::once(&inv.program)
        .chain(&inv.args)
        .map(|a| shell_quote(a).to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The name of the user this process runs as (its uid when it has no name).
fn current_user() -> String {
    // SAFETY: geteuid cannot fail; getpwuid's result is read at once, on this (single CLI) thread.
    unsafe {
        let uid = libc::geteuid();
        let pw = libc::getpwuid(uid);
        if pw.is_null() || (*pw).pw_name.is_null() {
            return uid.to_string();
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}

/// Prepares the demo folder and returns the path of its config.
pub fn prepare_demo(base: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(base.join("incoming"))
        .with_context(|| format!("cannot create `{}`", base.display()))?;
    let base = base.canonicalize()?;
    let root = base.join("incoming");
    let config = base.join("config.yaml");
    let yaml = format!(
        "# dirwatcher demo: the local executor runs each job as a child process of this machine.\n\
         # Reuse it with: dirwatcher run --config {cfg}\n\
         watch:\n  root: {root}\n  signal_filename: _READY\n  poll_interval_sec: 1\n  stability_checks: 2\n  stability_interval_sec: 0.5\n\
         job:\n  executor: local\n  # the directory is appended as one quoted word: it becomes $1 of this little script\n  \
         wrap_cmd: sh -c 'cd \"$1\" && echo \"$(ls | wc -l) files, $(du -sk . | cut -f1) KiB\" > _DONE && cat _DONE' demo-job\n  \
         job_name_prefix: demo\n  time_limit: \"00:05:00\"\n\
         behavior:\n  delete_on_success: false\n  state_file: {state}\n  failure_log: {fail}\n",
        cfg = config.display(),
        root = serde_json::to_string(&root.to_string_lossy()).unwrap_or_default(),
        state = serde_json::to_string(&base.join("state/state.db").to_string_lossy())
            .unwrap_or_default(),
        fail = serde_json::to_string(&base.join("failed_jobs.log").to_string_lossy())
            .unwrap_or_default(),
    );
    std::fs::write(&config, yaml)?;
    Ok(config)
}

/// Drops one sample directory into the demo root (as an instrument would: data first, ready-file last).
pub fn drop_demo_sample(root: &Path) -> anyhow::Result<PathBuf> {
    let mut n = 1;
    let dir = loop {
        let d = root.join(format!("sample-{n:03}"));
        if !d.exists() {
            break d;
        }
        n += 1;
    };
    std::fs::create_dir(&dir)?;
    for i in 1..=3 {
        std::fs::write(dir.join(format!("reads_{i}.txt")), "ACGT\n".repeat(100 * i))?;
    }
    std::fs::write(dir.join("_READY"), b"")?;
    Ok(dir)
}
