//! Operator commands that work on the ledger beside a running daemon (`status`, `explain`, `retry`,
//! `cancel`, `forget`, `run --dry-run`), and the `demo` that shows dirwatcher working without Slurm.
//!
//! Must never: write anything but ledger rows (and, for the demo, its own folder), signal any job but the one
//! an operator cancels (by id and our job name), or touch a directory of the watched root.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::engine::patterns::glob_match;
use crate::engine::{GenState, Generation};
use crate::ledger::Ledger;
use crate::logging::show;
use crate::time::Millis;
use crate::time::wall_now;

mod dry_run;
mod explain;
pub mod recover;
mod status;

pub use dry_run::dry_run;
pub use explain::{Explanation, explain, render_explanation};
pub use status::{
    STATUS_SCHEMA_VERSION, Status, StatusQuery, WORDS, render_listing, render_status, status,
};

/// Every state word, for a listing of every directory.
pub fn status_words() -> Vec<String> {
    WORDS.iter().map(|w| w.to_string()).collect()
}

pub(crate) fn rfc3339(m: Millis) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(m.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Checks that the ledger is there and this user may reach it, in words: a directory that cannot be
/// searched hides the file (`exists()` would say "no ledger"), and the fix then is another user.
fn ledger_reachable(cfg: &Config) -> anyhow::Result<()> {
    let p = &cfg.behavior.state_file;
    match std::fs::metadata(p) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let lock = crate::state_paths::StatePaths::of(p).lock;
            match crate::ledger::identity::ledger_named_by_lock(&lock) {
                // A daemon ran here: the ledger was lost, not never made.
                Some(id) => bail!(
                    "the ledger `{}` is missing, but `{}` names ledger {id}: it was removed or its file system \
                     is not mounted; restore it from a backup, or rebuild it with `dirwatcher recover \
                     --from-slurm` (docs/safety.md: \"If the ledger is lost or damaged\")",
                    p.display(),
                    lock.display()
                ),
                None => bail!(
                    "no ledger at `{}` yet: has `dirwatcher run` been started with this config?",
                    p.display()
                ),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "permission denied: user `{}` cannot reach the ledger `{}` ({e}); run this as the service \
             user (`sudo -u dirwatcher dirwatcher …`) or as root, or join the group that owns its directory",
            current_user(),
            p.display()
        ),
        Err(e) => bail!("cannot reach the ledger `{}`: {e}", p.display()),
    }
}

/// Opens the ledger for reading only (never creates it), with a permission error said as such.
fn open_read_only(cfg: &Config) -> anyhow::Result<Ledger> {
    if let at @ crate::ledger::LedgerAt::Server(_) = crate::ledger::LedgerAt::of(&cfg.behavior) {
        return Ok(Ledger::open_read_only_at(&at)?);
    }
    ledger_reachable(cfg)?;
    let p = &cfg.behavior.state_file;
    Ledger::open_read_only(p).map_err(|e| {
        let chain = crate::logging::error_chain(&e);
        if chain.contains("unable to open") || chain.contains("readonly") || chain.contains("permission") {
            anyhow::anyhow!(
                "permission denied: user `{}` cannot read the ledger `{}` ({chain}); run this as the \
                 service user (`sudo -u dirwatcher dirwatcher …`) or as root",
                current_user(),
                p.display()
            )
        } else {
            anyhow::Error::new(e)
        }
    })
}

fn open_existing(cfg: &Config) -> anyhow::Result<Ledger> {
    if let at @ crate::ledger::LedgerAt::Server(_) = crate::ledger::LedgerAt::of(&cfg.behavior) {
        // Never creates the tables: the CLI writes into the ledger a daemon made.
        if at.fresh()?.is_some() {
            bail!(
                "the ledger `{at}` holds no record yet: start the daemon first (it creates its tables), \
                 or rebuild a lost ledger with `dirwatcher recover --from-slurm`"
            );
        }
        return Ok(Ledger::open_at(&at)?);
    }
    ledger_reachable(cfg)?;
    if crate::ledger::identity::look(&cfg.behavior.state_file)?
        == crate::ledger::identity::AtPath::Empty
    {
        bail!(
            "the ledger `{}` is empty (0 bytes): it was truncated, and a write now would start a new one; \
             restore it from a backup, or rebuild it with `dirwatcher recover --from-slurm`",
            cfg.behavior.state_file.display()
        );
    }
    Ledger::open(&cfg.behavior.state_file).with_context(|| {
        format!(
            "user `{}` cannot open the ledger for writing; run this as the service user (`sudo -u \
             dirwatcher dirwatcher …`) or as root",
            current_user()
        )
    })
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
            GenState::Failed | GenState::Lost => out.push(requeue(&mut ledger, &g, &shown)?),
            s => bail!(
                "{shown} is {} (job {}), not failed or lost; only those can be retried",
                s.as_str(),
                g.job_id.as_deref().unwrap_or("-")
            ),
        }
    }
    Ok(out)
}

fn requeue(ledger: &mut Ledger, g: &Generation, shown: &str) -> anyhow::Result<String> {
    let id = ledger.requeue(g, wall_now())?;
    Ok(format!(
        "{shown}: queued attempt {} (record {id}); the daemon submits it on its next cycle \
         (undo with `dirwatcher cancel` or `dirwatcher forget` before then)",
        g.attempt + 1
    ))
}

/// `retry --all-failed [--state S]`: queues a new attempt for every directory whose latest job failed —
/// only those that ended in Slurm state `S` (`TIMEOUT`, `OUT_OF_MEMORY`, …; `lost` for lost jobs) when
/// given. Returns one line per directory (none when nothing matched).
pub fn retry_all(
    cfg: &Config,
    state: Option<&str>,
    glob: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let mut ledger = open_existing(cfg)?;
    let named = |g: &Generation| glob.is_none_or(|p| glob_match(p, &g.dir));
    let wanted = |g: &Generation| {
        named(g)
            && match state {
                None => g.state == GenState::Failed,
                Some(s) if s.eq_ignore_ascii_case("lost") => g.state == GenState::Lost,
                Some(s) => {
                    g.state == GenState::Failed
                        && g.final_state.as_deref().map(crate::engine::state_word)
                            == Some(s.to_ascii_uppercase())
                }
            }
    };
    let mut out = Vec::new();
    for g in ledger.latest_per_dir()?.into_iter().filter(wanted) {
        let shown = show(&cfg.watch.root.join(&g.dir));
        out.push(requeue(&mut ledger, &g, &shown)?);
    }
    Ok(out)
}

/// Which of the directories a glob names a bulk command takes.
#[derive(Debug, Clone, Copy)]
pub enum Pick<'a> {
    /// Those whose job is in flight (or whose attempt is queued): `cancel --match`.
    InFlight,
    /// Those with nothing in flight, in this state when given: `forget --match`.
    Settled(Option<&'a str>),
}

/// The directories of the ledger whose name matches `glob` (a shell-like glob on the name under the
/// root: `*`, `?`) and that `pick` takes, sorted, as names for the per-directory commands.
pub fn matching(cfg: &Config, glob: &str, pick: Pick<'_>) -> anyhow::Result<Vec<PathBuf>> {
    let ledger = open_existing(cfg)?;
    let mut out: Vec<PathBuf> = ledger
        .latest_per_dir()?
        .into_iter()
        .filter(|g| glob_match(glob, &g.dir))
        .filter(|g| match pick {
            Pick::InFlight => g.state.is_active(),
            Pick::Settled(state) => {
                !g.state.is_active()
                    && state.is_none_or(|s| g.state.as_str().eq_ignore_ascii_case(s))
            }
        })
        .map(|g| PathBuf::from(g.dir))
        .collect();
    out.sort();
    Ok(out)
}

pub use crate::ledger::CANCELLED_BY_OPERATOR;

/// `cancel`: ends what each directory has in flight. A job is cancelled through the scheduler (`scancel`),
/// then recorded as `CANCELLED by operator` so the daemon does not wait for it (and retries nothing); a
/// queued attempt that no `sbatch` has touched is withdrawn. Returns one result per directory, in order.
pub fn cancel(cfg: &Config, dirs: &[PathBuf]) -> anyhow::Result<Vec<Result<String, String>>> {
    cancel_with(cfg, crate::scheduler::from_config(cfg).as_mut(), dirs)
}

/// [`cancel`] through the given scheduler (tests: the scripted one).
pub fn cancel_with(
    cfg: &Config,
    sched: &mut dyn crate::scheduler::Scheduler,
    dirs: &[PathBuf],
) -> anyhow::Result<Vec<Result<String, String>>> {
    let mut ledger = open_existing(cfg)?;
    let mut out = Vec::new();
    for d in dirs {
        let name = dir_name(&cfg.watch.root, d)?;
        out.push(cancel_one(cfg, &mut ledger, sched, &name)?);
    }
    Ok(out)
}

/// `sched.cancel(job)`, logged at `-v` as the daemon's own scheduler calls are.
fn cancel_logged(
    sched: &mut dyn crate::scheduler::Scheduler,
    job: &crate::engine::TrackedJob,
) -> Result<(), crate::scheduler::CancelError> {
    let t = std::time::Instant::now();
    let cancelled = sched.cancel(job);
    let took_ms = t.elapsed().as_millis() as u64;
    let (name, id) = (sched.name(), &job.job_id);
    match &cancelled {
        Ok(()) => tracing::debug!(
            call = "cancel",
            took_ms,
            ok = true,
            "scheduler call cancel ({name}) for job {id} ({}): answered in {took_ms} ms",
            job.job_name
        ),
        Err(e) => tracing::debug!(
            call = "cancel",
            took_ms,
            ok = false,
            "scheduler call cancel ({name}) for job {id} ({}): failed after {took_ms} ms: {e}",
            job.job_name
        ),
    }
    cancelled
}

fn cancel_one(
    cfg: &Config,
    ledger: &mut Ledger,
    sched: &mut dyn crate::scheduler::Scheduler,
    name: &std::ffi::OsStr,
) -> anyhow::Result<Result<String, String>> {
    let shown = show(&cfg.watch.root.join(name));
    let Some(g) = ledger.latest_for_dir(name)? else {
        return Ok(Err(format!(
            "{shown} is not in the ledger; nothing to cancel"
        )));
    };
    let operator = operator();
    let by = format!("{CANCELLED_BY_OPERATOR} {operator}");
    let now = wall_now();
    // The people told of the directory's events are told of the cancel, in the transaction recording it.
    let email = crate::deliver::EmailTransport::resolve(&cfg.notify);
    let fact = |g| crate::notices::Fact {
        by: Some(&operator),
        ..crate::notices::Fact::of(crate::engine::notice::EventKind::Cancelled, g, now)
    };
    match (g.state, crate::engine::TrackedJob::of(&g)) {
        (GenState::Submitted, Some(job)) => {
            let job_id = &job.job_id;
            // The cancel is committed before the job is signalled: the daemon, seeing the job end
            // CANCELLED before this command records it, records it as this operator's cancel too.
            ledger.request_cancel(g.id, &operator, now)?;
            let cancelled = cancel_logged(sched, &job);
            if let Err(e) = cancelled {
                ledger.withdraw_cancel(g.id)?;
                return Ok(Err(format!(
                    "{shown}: cannot cancel job {job_id}: {e}; nothing was recorded, the daemon keeps following it"
                )));
            }
            let (told, _) = crate::notices::queue(cfg, &email, fact(&g));
            let recorded = ledger.record_cancelled(g.id, &by, &told.rows(), now)?
                // The daemon saw the end first and recorded it as this cancel.
                || ledger
                    .get(g.id)?
                    .is_some_and(|e| e.final_state.as_deref() == Some(by.as_str()));
            // With `max_retries`, the daemon may have recorded the end first and queued a retry: an
            // operator's cancel means no further job.
            let withdrawn = match ledger.latest_for_dir(name)? {
                Some(next) if next.id != g.id => ledger.drop_unsubmitted(next.id)?,
                _ => false,
            };
            let how = if recorded {
                "recorded as CANCELLED by operator"
            } else {
                "it had already ended (the daemon recorded it)"
            };
            let retry = if withdrawn {
                "; the automatic retry it queued is withdrawn"
            } else {
                ""
            };
            Ok(Ok(format!(
                "{shown}: cancelled job {job_id} ({}), {how}{retry}; `dirwatcher retry {}` submits it again",
                g.job_name,
                crate::logging::field(Path::new(&name))
            )))
        }
        (GenState::Submitting, _) if g.uncertain => Ok(Err(format!(
            "{shown}: an `sbatch` for it is running or its answer was lost; wait until its job id is known \
             (`dirwatcher status`), then cancel again"
        ))),
        (GenState::Submitting, _) if g.attempt > 1 && g.submit_tries == 0 => {
            if ledger.drop_unsubmitted(g.id)? {
                Ok(Ok(format!(
                    "{shown}: withdrew queued attempt {} (never submitted); it stays as it was before the retry",
                    g.attempt
                )))
            } else {
                Ok(Err(format!(
                    "{shown}: attempt {} is being submitted right now; cancel again in a moment",
                    g.attempt
                )))
            }
        }
        (GenState::Submitting, _) => {
            let (told, _) = crate::notices::queue(cfg, &email, fact(&g));
            if ledger.record_cancelled(g.id, &by, &told.rows(), now)? {
                Ok(Ok(format!(
                    "{shown}: will not be submitted (recorded as CANCELLED by operator); `dirwatcher retry {}` \
                     submits it later",
                    crate::logging::field(Path::new(&name))
                )))
            } else {
                Ok(Err(format!(
                    "{shown}: it is being submitted right now; cancel again in a moment"
                )))
            }
        }
        (s, _) => Ok(Err(format!(
            "{shown} is {} (job {}); nothing to cancel",
            s.as_str(),
            g.job_id.as_deref().unwrap_or("-")
        ))),
    }
}

/// `forget`: removes each directory's records. Refused while its job is in flight or an `sbatch` for it
/// may be running; a queued attempt that was never submitted (an accidental `retry`) may be forgotten.
pub fn forget(cfg: &Config, dirs: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let ledger = open_existing(cfg)?;
    let mut out = Vec::new();
    for d in dirs {
        let name = dir_name(&cfg.watch.root, d)?;
        let path = cfg.watch.root.join(&name);
        let shown = show(&path);
        let history: Vec<Generation> = ledger.history(&name)?;
        let busy = |g: &&Generation| {
            g.state == GenState::Submitted || (g.state == GenState::Submitting && g.uncertain)
        };
        if let Some(g) = history.iter().find(busy) {
            bail!(
                "{shown} has job {} in flight ({}); forgetting it would lose its outcome. Cancel it first \
                 (`dirwatcher cancel {}`)",
                g.job_id.as_deref().unwrap_or("-"),
                g.state.as_str(),
                crate::logging::field(Path::new(&name))
            );
        }
        let n = ledger.forget(&name)?;
        if n == 0 && !history.is_empty() {
            bail!("{shown} is being submitted right now; try again in a moment");
        }
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

/// `check-config --slurm`: asks the scheduler, through the daemon's own back end and without creating a
/// job (`sbatch --test-only`), about the exact job the daemon would submit, as the user running the
/// command. Returns the verdict and what to print: `out` for stdout, `err` for stderr.
pub fn check_slurm(cfg: &Config) -> (SlurmCheck, String, String) {
    use crate::scheduler::{Acceptance, Preflight};
    let mut sched = crate::scheduler::from_config(cfg);
    if let Some(refusal) = array_limit_refusal(cfg, sched.as_mut()) {
        return refusal;
    }
    let t = std::time::Instant::now();
    let preflight = sched.preflight();
    let took_ms = t.elapsed().as_millis() as u64;
    if matches!(preflight, Preflight::Asked { .. }) {
        // At `-v`, as the daemon's scheduler calls are.
        tracing::debug!(
            call = "preflight",
            took_ms,
            "scheduler call preflight ({}) for the sample job: answered in {took_ms} ms",
            sched.name()
        );
    }
    let (who, what, harmless, answer) = match preflight {
        Preflight::NothingToAsk(why) => {
            return (
                SlurmCheck::Fine,
                format!("# slurm: nothing to check, {why}\n"),
                String::new(),
            );
        }
        Preflight::Asked {
            who,
            what,
            harmless,
            answer,
        } => (who, what, harmless, answer),
    };
    let user = current_user();
    let mut out = format!(
        "# slurm: asking {who} about the job dirwatcher submits (for the root as a sample directory), \
         as user `{user}`; {harmless}:\n#   {what}\n"
    );
    let fix = |key: &str| match configured(cfg, key) {
        Some(v) => format!("`{key}` (now {v})"),
        None => format!("`{key}` (not set)"),
    };
    match answer {
        Acceptance::Accepted(said) => {
            out.push_str(&format!("slurm accepts the job: {said}\n"));
            (SlurmCheck::Fine, out, String::new())
        }
        Acceptance::Refused {
            said,
            reason: Some(r),
        } => (
            SlurmCheck::Refused,
            out,
            format!(
                "error: slurm refuses the job dirwatcher would submit as `{user}`: {}\n  fix: {}: {}\n  \
                 {who} said: {said}\n",
                r.problem(),
                fix(r.key()),
                r.advice()
            ),
        ),
        Acceptance::Refused { said, reason: None } => (
            SlurmCheck::Unknown,
            out,
            format!(
                "error: slurm did not accept the test submission, for a reason that is not clearly about the \
                 config: {said}\n  check that the controller answers (`sinfo`), then `job.partition`, \
                 `job.account`, `job.gres`, `job.time_limit` and `job.extra_args`\n"
            ),
        ),
        Acceptance::NotAsked(e) => (
            SlurmCheck::Unknown,
            out,
            format!("error: cannot ask slurm: {e}\n"),
        ),
    }
}

/// `job.array_max` against the cluster's `MaxArraySize` (read from the controller): above it, every array
/// would be refused, which is a configuration error (exit 2) named by its key and line.
fn array_limit_refusal(
    cfg: &Config,
    sched: &mut dyn crate::scheduler::Scheduler,
) -> Option<(SlurmCheck, String, String)> {
    let arrays = cfg.job.arrays?;
    match sched.array_limit()? {
        Ok(limit) if arrays.max <= limit => None,
        Ok(limit) => {
            let e = crate::config::ConfigError {
                file: cfg.source.clone(),
                key: crate::config::keys::JOB_ARRAY_MAX.name.into(),
                line: arrays.line,
                problem: format!(
                    "{} tasks per array is above this cluster's `MaxArraySize` ({limit}, from `scontrol show config`): slurm would refuse every array",
                    arrays.max
                ),
                fix: format!(
                    "write `array_max: {limit}` or less (or raise `MaxArraySize` in slurm.conf)"
                ),
                detail: None,
            };
            Some((SlurmCheck::Refused, String::new(), format!("error: {e}\n")))
        }
        Err(why) => Some((
            SlurmCheck::Unknown,
            String::new(),
            format!(
                "error: cannot read the cluster's `MaxArraySize` for `job.array_max`: {why}\n  check that the controller answers (`scontrol show config`)\n"
            ),
        )),
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
        "job.array_max" => j.arrays.map(|a| q(&a.max.to_string())),
        "job.job_script" => match &j.command {
            crate::config::JobCommand::Script(p) => Some(q(&p.to_string_lossy())),
            crate::config::JobCommand::Wrap(_) => None,
        },
        _ => None,
    }
}

/// The name of the user this process runs as (its uid when it has no name).
/// Who runs this command, as a cancel names them: the user, and the one who ran it through `sudo`.
fn operator() -> String {
    let me = current_user();
    match std::env::var("SUDO_USER") {
        Ok(u) if !u.is_empty() && u != me => format!("{u} (as {me})"),
        _ => me,
    }
}

pub(crate) fn current_user() -> String {
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
