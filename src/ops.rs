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
use crate::engine::{GenState, Generation};
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

/// The whole `status` report.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The ledger file.
    pub state_file: String,
    /// The watched root.
    pub root: String,
    /// Directories by the state of their latest generation.
    pub counts: Counts,
    /// Jobs in flight (and intents waiting for their job id).
    pub in_flight: Vec<InFlight>,
    /// Most recent failures, newest first.
    pub recent_failures: Vec<Failure>,
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
    let in_flight = ledger
        .active()?
        .into_iter()
        .map(|g| InFlight {
            dir: root.join(&g.dir).to_string_lossy().into_owned(),
            state: g.state.as_str().into(),
            job_id: g.job_id.clone(),
            job_name: g.job_name.clone(),
            attempt: g.attempt,
            age_sec: ((now - g.created_at).max(0) / 1000) as u64,
            last_error: g.last_error.clone(),
        })
        .collect();
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
        in_flight,
        recent_failures,
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

/// Renders the report for people.
pub fn render_status(s: &Status) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let c = &s.counts;
    let _ = writeln!(o, "root {}  (ledger {})", s.root, s.state_file);
    let _ = writeln!(
        o,
        "directories: {} submitting, {} in flight, {} completed, {} failed",
        c.submitting, c.submitted, c.completed, c.failed
    );
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

/// `retry`: queues a new attempt for each failed directory. Returns one line per directory.
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
            GenState::Failed => {
                let id = ledger.requeue(&g, wall_now())?;
                out.push(format!("{shown}: queued attempt {} (record {id}); the daemon submits it on its next cycle", g.attempt + 1));
            }
            s => bail!(
                "{shown} is {} (job {}), not failed; only failed directories can be retried",
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
