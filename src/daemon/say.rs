//! Every log line of the loop, in one place: what happened to which directory and job, in words, with the
//! directory (`dir`), job (`job`) and state as fields a machine can match. The steps call these; they never
//! format a log line inline. Must never: decide anything or touch state.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::engine::{
    GenState, Generation, JobReport, JobRow, OutageEdge, PaceSignal, Rejection, RejectionEdge,
    Source,
};
use crate::logging::{error_chain, field, show};
use crate::observe::Call;
use crate::outcome::KeepReason;
use crate::output_dir::FolderProblem;
use crate::scheduler::{QueryError, SubmitError};
use crate::time::{Millis, human, ms};

/// One scheduler call ended (at `-v`): what was asked, and how long the answer or the failure took. Its
/// target is still the metrics' (where the call was timed before the observers), so a `DIRWATCHER_LOG`
/// directive that picks these lines keeps working.
pub fn scheduler_call(
    call: Call,
    scheduler: &str,
    what: std::fmt::Arguments<'_>,
    took: Duration,
    failed: Option<&dyn std::fmt::Display>,
) {
    let (label, took_ms) = (call.word(), took.as_millis() as u64);
    match failed {
        None => debug!(
            target: "dirwatcher::metrics",
            call = label,
            took_ms,
            ok = true,
            "scheduler call {label} ({scheduler}) {what}: answered in {took_ms} ms"
        ),
        Some(e) => debug!(
            target: "dirwatcher::metrics",
            call = label,
            took_ms,
            ok = false,
            "scheduler call {label} ({scheduler}) {what}: failed after {took_ms} ms: {e}"
        ),
    }
}

/// One `sbatch` (or local start) ended (at `-v`): [`scheduler_call`]'s line, with the directory, the
/// job name and, when it answered, the job id as fields.
pub fn submit_call(
    scheduler: &str,
    spec: &crate::scheduler::JobSpec,
    job: Option<&str>,
    took: Duration,
    failed: Option<&dyn std::fmt::Display>,
) {
    let (label, took_ms) = (Call::Submit.word(), took.as_millis() as u64);
    let (dir, job_name) = (field(&spec.dir_path), spec.job_name.as_str());
    match (job, failed) {
        (_, Some(e)) => debug!(
            target: "dirwatcher::metrics",
            call = label, took_ms, ok = false, dir = %dir, job_name,
            "scheduler call {label} ({scheduler}) for job {job_name}: failed after {took_ms} ms: {e}"
        ),
        (job, None) => debug!(
            target: "dirwatcher::metrics",
            call = label, took_ms, ok = true, dir = %dir, job_name, job,
            "scheduler call {label} ({scheduler}) for job {job_name} ({}): answered in {took_ms} ms",
            job.unwrap_or("?")
        ),
    }
}

/// One `sbatch --array` answered (at `-v`, as every scheduler call).
pub fn array_call(
    scheduler: &str,
    spec: &crate::scheduler::array::ArraySpec,
    job: Option<&String>,
    took: Duration,
) {
    let (label, took_ms) = (Call::Submit.word(), took.as_millis() as u64);
    let (job_name, tasks) = (spec.job_name.as_str(), spec.tasks.len());
    match job {
        Some(job) => debug!(
            target: "dirwatcher::metrics",
            call = label, took_ms, ok = true, job_name, job = %job, tasks,
            "scheduler call {label} ({scheduler}) for job array {job_name} ({tasks} tasks): answered in {took_ms} ms ({job})"
        ),
        None => debug!(
            target: "dirwatcher::metrics",
            call = label, took_ms, ok = false, job_name, tasks,
            "scheduler call {label} ({scheduler}) for job array {job_name} ({tasks} tasks): failed after {took_ms} ms"
        ),
    }
}

/// A job array was submitted: one line for the array (each directory then gets its own `submitted`).
pub fn array_submitted(array_id: &str, spec: &crate::scheduler::array::ArraySpec, root: &Path) {
    let map = crate::scheduler::array::map_path(root, &spec.key);
    let (tasks, job_name, key) = (spec.tasks.len(), spec.job_name.as_str(), spec.key.as_str());
    info!(event = "array_submitted", array_job = %array_id, job_name, key, tasks, map = %field(&map),
        "submitted job array {array_id} ({job_name}, key {key}) with {tasks} tasks, one per directory: task N is job {array_id}_N; the map of tasks to directories is {}", show(&map));
}

/// A job array's `sbatch` failed: one line for the array (the first directory's line follows, as for a
/// single job; every directory of the array waits with it).
pub fn array_failed(
    spec: &crate::scheduler::array::ArraySpec,
    err: &crate::scheduler::SubmitError,
) {
    let (tasks, job_name, key) = (spec.tasks.len(), spec.job_name.as_str(), spec.key.as_str());
    warn!(
        event = "array_failed",
        job_name,
        key,
        tasks,
        "job array {job_name} (key {key}) for {tasks} directories was not submitted: {err}; all {tasks} wait and are submitted again after the back-off"
    );
}

/// The daemon starts its loop.
pub fn started(c: &Config, executor: &str) {
    info!(
        root = %field(&c.watch.root),
        executor,
        state_file = %field(&c.behavior.state_file),
        ledger = %crate::ledger::LedgerAt::of(&c.behavior),
        "dirwatcher started: watching {} for `{}` every {:?} ({} checks {:?} apart), executor {}",
        show(&c.watch.root),
        c.watch.signal_filename.to_string_lossy(),
        c.watch.poll_interval,
        c.watch.stability_checks,
        c.watch.stability_interval,
        executor,
    );
}

/// Variables of the daemon's environment that Slurm's commands would have read are not passed to them
/// (said once at start, names only).
pub fn environment_withheld(names: &[String]) {
    if !names.is_empty() {
        info!(
            "ignoring {} from the environment: sbatch, squeue, sacct and scontrol run without them, so jobs \
             get what the config says (`job.partition`, `job.account`, `job.extra_args`, `job.env`); only \
             SLURM_CONF is passed on",
            names.join(", ")
        );
    }
}

/// The loop ended.
pub fn stopped(state_file: &Path) {
    info!(
        "dirwatcher stopped: in-flight jobs stay recorded in {} and are followed after the next start",
        show(state_file)
    );
}

/// A reload tried to change a key that takes a restart.
/// `old` and `new` as they are shown (paths quoted, see [`show`]).
pub fn reload_kept(key: &str, old: &str, new: &str, why: &str) {
    warn!(
        "config reloaded, but `{key}` changed from {old} to {new}: that takes a restart{why}; keeping the old one"
    );
}

/// A reload took effect.
pub fn reloaded(source: &Path, changed: &[String]) {
    let what = if changed.is_empty() {
        "nothing changed".to_string()
    } else {
        format!("changed: {}", changed.join(", "))
    };
    info!(event = "reloaded", changed = %changed.join(","), "config reloaded from {}: {what}", show(source));
}

/// A reload was refused.
pub fn reload_refused(e: &dyn std::error::Error) {
    // A config error's `fix:` is on a line of its own: one event stays one line.
    let e: Vec<String> = e
        .to_string()
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    warn!(
        event = "reload_refused",
        "config reload refused, still running on the previous config: {}",
        e.join("; ")
    );
}

/// A ledger read or write failed.
pub fn ledger_failed(what: &str, e: &dyn std::error::Error, edge: OutageEdge) {
    match edge {
        OutageEdge::Started => warn!(
            "cannot write the ledger ({what}): {}; nothing will be submitted until it is writable again",
            error_chain(e)
        ),
        _ => debug!("the ledger still fails ({what}): {}", error_chain(e)),
    }
}

/// A ledger write worked again after failures.
pub fn ledger_back(edge: OutageEdge) {
    if let OutageEdge::Ended { lasted, failures } = edge {
        info!(
            "the ledger is writable again after {} ({failures} failed writes)",
            human(lasted)
        );
    }
}

/// The scheduler took a job again after failed submissions.
pub fn submissions_back(edge: OutageEdge) {
    if let OutageEdge::Ended { lasted, failures } = edge {
        info!(
            "submissions work again after {} ({failures} failed attempts)",
            human(lasted)
        );
    }
}

/// A lost submission's job was found by its key.
pub fn adopted(path: &Path, job: &str, key: &str) {
    info!(event = "adopted", dir = %field(path), job = %job, "adopted job {job} for {}: it was submitted before the answer was recorded (key {key})", show(path));
}

/// No job carries the key yet, inside the grace period.
pub fn lookup_waits(path: &Path, key: &str) {
    debug!(dir = %field(path), "no job carries key {key} yet; looking again after the grace period");
}

/// No job carries the key: the directory is submitted again.
pub fn lookup_cleared(path: &Path, key: &str) {
    info!(event = "lookup_cleared", dir = %field(path), "no job carries key {key} for {}: it will be submitted", show(path));
}

/// A key lookup failed (the scheduler does not answer).
pub fn lookup_failed(path: &Path, e: &QueryError, edge: OutageEdge) {
    if edge == OutageEdge::Started {
        warn!(
            "cannot look up submission keys ({e}); {} waits, nothing is resubmitted meanwhile",
            show(path)
        );
    }
}

/// The job query worked again after failures.
pub fn queries_back(edge: OutageEdge) {
    if let OutageEdge::Ended { lasted, failures } = edge {
        info!(
            "job queries work again after {} ({failures} failed)",
            human(lasted)
        );
    }
}

/// The job query failed.
pub fn query_failed(e: &QueryError, jobs: usize, edge: OutageEdge) {
    if edge == OutageEdge::Started {
        warn!(
            "cannot query job states: {e}; {jobs} job(s) keep their last known state until the scheduler answers (none is marked failed for this)"
        );
    }
}

/// A job reached a final state and it was recorded. `retry_in` is set when another attempt follows.
pub fn job_ended(
    path: &Path,
    g: &Generation,
    end: &JobReport,
    state: GenState,
    delete: bool,
    retry_in: Option<Millis>,
    output: Option<&Path>,
) {
    let job = g.job_id.as_deref().unwrap_or_default();
    let (job_name, attempt) = (g.job_name.as_str(), g.attempt);
    let output = output.map(field);
    let what = match (state, delete) {
        (GenState::Completed, true) => "the directory will be deleted",
        (GenState::Completed, false) => "the directory is kept",
        _ => "recorded in the failure log",
    };
    if state == GenState::Completed {
        info!(event = "ended", dir = %field(path), job = %job, job_name, attempt, state = %end.state, exit_code = %end.exit_code,
            output = output.as_deref(), "job {job} for {} COMPLETED; {what}", show(path));
    } else {
        let retry = retry_in
            .map(|d| format!("; attempt {} follows in {}", g.attempt + 1, human(d)))
            .unwrap_or_default();
        warn!(event = "ended", dir = %field(path), job = %job, job_name, attempt, state = %end.state, exit_code = %end.exit_code,
            output = output.as_deref(),
            "job {job} for {} ended {} (exit code {}); {what}{retry}", show(path), end.state, end.exit_code);
    }
}

/// A job ended because an operator cancelled it (`dirwatcher cancel`), seen by the daemon first.
pub fn job_cancelled_by(path: &Path, g: &Generation, operator: &str) {
    let job = g.job_id.as_deref().unwrap_or_default();
    warn!(event = "ended", dir = %field(path), job = %job, job_name = g.job_name.as_str(), attempt = g.attempt,
        state = "CANCELLED", "job {job} for {} ended CANCELLED by operator {operator}; recorded in the failure log",
        show(path));
}

/// A row with the job's id was not about our job (an old job of a reused id, or a stranger's): ignored,
/// the job is "not known yet" from that row. Said once per job.
pub fn stale_row_ignored(path: &Path, job: &str, row: &JobRow) {
    let submitted = row.submit.map(rfc3339).unwrap_or_else(|| "-".into());
    info!(dir = %field(path), job = %job, stale_state = %row.state,
        "ignored a {} row of job id {job} that is not the job of {} (name `{}`, comment `{}`, submitted {submitted}, {}): \
         Slurm reused the id; waiting for our job's own record",
        source_word(row.source), show(path), row.name, row.comment, row.state);
}

fn source_word(s: Source) -> &'static str {
    match s {
        Source::Accounting => "sacct",
        Source::Controller => "squeue",
    }
}

fn rfc3339(m: Millis) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(m.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// No source has shown a job for longer than `job.lost_after_sec`: it is recorded as lost.
pub fn job_lost(path: &Path, g: &Generation, unseen: Millis) {
    let job = g.job_id.as_deref().unwrap_or_default();
    warn!(event = "lost", dir = %field(path), job = %job, job_name = %g.job_name, attempt = g.attempt, state = "lost",
        "job {job} for {} is lost: neither sacct nor squeue has shown it for {}; it is followed no more and its \
         directory is kept. Check it (`sacct -j {job}`), then resubmit with `dirwatcher retry {}`",
        show(path), human(unseen), show(path));
}

/// The failure log could not be appended to (said once per outage; the line is kept and retried).
pub fn failure_log_failed(
    path: &Path,
    job: &str,
    log: &Path,
    e: &std::io::Error,
    edge: OutageEdge,
) {
    match edge {
        OutageEdge::Started => warn!(dir = %field(path), job = %job,
            "cannot append to the failure log {}: {e}; the record of job {job} for {} is kept and written \
             when the log can be written again (further failures are quiet until then)",
            show(log), show(path)),
        _ => debug!(dir = %field(path), job = %job, "failure log {} still failing: {e}", show(log)),
    }
}

/// The failure log could be written again after failures.
pub fn failure_log_back(log: &Path, edge: OutageEdge) {
    if let OutageEdge::Ended { lasted, failures } = edge {
        info!(
            "the failure log {} is writable again after {} ({failures} failed writes); pending records are written",
            show(log),
            human(lasted)
        );
    }
}

/// A finished directory's deletion did not end in its first slice: it goes on a slice per cycle.
pub fn deleting_in_slices(path: &Path, job: &str) {
    info!(event = "deleting", dir = %field(path), job = %job,
        "deleting {} after job {job} COMPLETED: a large tree, deleted a slice per cycle", show(path));
}

/// The daemon stops with a deletion under way: the ledger still has it pending.
pub fn deletion_interrupted(path: &Path, id: i64) {
    info!(event = "deletion_interrupted", dir = %field(path), record = id,
        "stopped while deleting {}: part of it is left, and its deletion goes on at the next start", show(path));
}

/// A finished directory was deleted.
pub fn deleted(path: &Path, job: &str) {
    info!(event = "deleted", dir = %field(path), job = %job, "deleted {} after job {job} COMPLETED", show(path));
}

/// A finished directory was kept although deletion was due (recorded in the ledger, not tried again).
/// Gone or renamed is what someone did on purpose; anything else an operator should look at.
pub fn not_deleted(path: &Path, job: &str, reason: &KeepReason) {
    match reason {
        KeepReason::Gone | KeepReason::Renamed(_) => {
            info!(event = "kept", dir = %field(path), job = %job, reason = %reason, "not deleting {} after job {job}: {reason}", show(path));
        }
        _ => {
            warn!(event = "kept", dir = %field(path), job = %job, reason = %reason, "not deleting {} after job {job}: {reason}", show(path))
        }
    }
}

/// A directory without a record of its own is one with a record renamed within the root (said once).
pub fn renamed(path: &Path, old: &Path, prev: &Generation) {
    info!(dir = %field(path), job = %prev.job_id.as_deref().unwrap_or("-"),
        "{} is {} renamed (same directory and ready-file; job {}, {}): not submitted again",
        show(path), show(old), prev.job_id.as_deref().unwrap_or("-"), prev.state.as_str());
}

/// The root's path no longer names the directory held open.
pub fn root_unusable(root: &Path, problem: &crate::fsx::RootProblem, edge: OutageEdge) {
    if edge == OutageEdge::Started {
        warn!(
            root = %field(root),
            "the root {} cannot be trusted: {problem}; nothing is scanned, submitted or deleted until it is \
             back (pending deletions wait, nothing is forgotten); if the root was replaced on purpose, restart dirwatcher",
            show(root)
        );
    }
}

/// The root's path names the directory held open again.
pub fn root_usable_again(root: &Path, edge: OutageEdge) {
    if let OutageEdge::Ended { lasted, .. } = edge {
        info!(
            root = %field(root),
            "the root {} is back after {}: scanning, submitting and pending deletions resume",
            show(root),
            human(lasted)
        );
    }
}

/// The root is readable again.
pub fn root_back(root: &Path, edge: OutageEdge) {
    if let OutageEdge::Ended { lasted, .. } = edge {
        info!(
            "the root {} is readable again after {}",
            show(root),
            human(lasted)
        );
    }
}

/// The root cannot be listed.
pub fn root_failed(root: &Path, e: &std::io::Error, edge: OutageEdge) {
    if edge == OutageEdge::Started {
        warn!(
            "cannot list the root {}: {e} (file system unmounted?); nothing is forgotten, scanning again every poll",
            show(root)
        );
    }
}

/// A ready-file could not be looked at (or its lock probed).
pub fn look_failed(path: &Path, what: &str, e: &std::io::Error) {
    debug!(dir = %field(path), "cannot {what} of {}: {e}", show(path));
}

/// A ready-file cannot be looked at (said once per directory): it is never submitted until it can be.
pub fn unreadable(path: &Path, what: &str, e: &std::io::Error) {
    warn!(dir = %field(path), "cannot {what} of {}: {e}; it is not submitted until the service user can read it \
        (the writer's umask? `chmod o+r`, or the service's group); looking again every scan", show(path));
}

/// A ready-file that could not be looked at can be again.
pub fn readable_again(path: &Path) {
    info!(dir = %field(path), "the ready-file of {} can be read again", show(path));
}

/// One more look at a settling ready-file.
pub fn settling(path: &Path, seen: u32, changed: bool) {
    debug!(dir = %field(path), "ready-file of {} seen {seen}x{}", show(path), if changed { " (changed since last look)" } else { "" });
}

/// A directory's markers are stable, but something in it changed less than `watch.quiet_sec` ago.
pub fn quieting(path: &Path, unchanged: Millis, quiet: Duration) {
    debug!(dir = %field(path), unchanged_ms = unchanged, "{} is unchanged for {} of the {} `watch.quiet_sec` asks",
        show(path), human(unchanged), human(ms(quiet)));
}

/// A readiness rule holds a directory back for more than a missing marker (said once per reason).
pub fn held_back(path: &Path, why: &crate::engine::NotReady) {
    info!(dir = %field(path), reason = why.code(), "not submitting {}: {}", show(path), why.words());
}

/// Transfer temporaries in a directory have not changed for `watch.stale_temporary_sec` (said once per
/// directory, while they stay).
pub fn stale_temporaries(path: &Path, names: &[String], unchanged: Duration, blocks: bool) {
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    let held = humantime::format_duration(Duration::from_secs(unchanged.as_secs()));
    let what = if blocks {
        "it stays held back (`watch.stale_temporaries_block: true`): remove the temporary once the copy is \
         known complete or abandoned"
    } else {
        "it is no longer held back by it (`watch.stale_temporaries_block: false`)"
    };
    warn!(event = "stale_temporaries", dir = %field(path), unchanged_sec = unchanged.as_secs(),
        "a transfer temporary in {} has not changed for {held} ({}): the transfer that wrote it was probably \
         killed; {what}", show(path), names.join(", "));
}

/// A directory held back by a readiness rule is no longer (its markers decide again).
pub fn no_longer_held(path: &Path, was: &crate::engine::NotReady) {
    info!(dir = %field(path), reason = was.code(), "{} is no longer held back ({} is over)", show(path), was.code());
}

/// A ready-file is stable but locked by its writer (said once per directory).
pub fn locked(path: &Path) {
    info!(event = "locked", dir = %field(path), "waiting: the ready-file of {} is locked by its writer", show(path));
}

/// A finished directory's ready-file was replaced: a new generation.
pub fn new_generation(path: &Path, prev: &Generation) {
    info!(dir = %field(path), "the ready-file of {} was replaced since job {} ({}): a new generation", show(path),
        prev.job_id.as_deref().unwrap_or("-"), prev.state.as_str());
}

/// An intent was committed for a stable directory.
pub fn intent(path: &Path, key: &str) {
    debug!(dir = %field(path), "{} is ready; intent {key} committed", show(path));
}

/// A job was submitted: its name and where its output goes, so the operator can find both.
pub fn submitted(path: &Path, job: &str, job_name: &str, output: Option<&Path>, attempt: u32) {
    let out = output.map_or_else(|| "sbatch's working directory".into(), show);
    // The field is the plain path (as `dir`), the message keeps the quoted form.
    let output_field = output.map_or(Cow::Borrowed("sbatch's working directory"), field);
    info!(event = "submitted", dir = %field(path), job = %job, job_name, attempt, output = %output_field,
        "submitted job {job} ({job_name}) for {} (attempt {attempt}); output in {out}", show(path));
}

/// The snapshot for `status`/`explain` cannot be written (said once until it works again).
pub fn snapshot_failed(state_file: &Path, e: &std::io::Error) {
    warn!(
        "cannot write the status snapshot beside {}: {e}; `dirwatcher status` will call it stale \
        (jobs are not affected)",
        show(state_file)
    );
}

/// The snapshot is written again.
pub fn snapshot_back(state_file: &Path) {
    info!(
        "the status snapshot beside {} is written again",
        show(state_file)
    );
}

/// An intent was cancelled or forgotten by an operator between the cycle's read and its `sbatch`.
pub fn submission_withdrawn(path: &Path) {
    info!(dir = %field(path), "not submitting {}: an operator cancelled or forgot it meanwhile", show(path));
}

/// The number of `sbatch` calls at once changed: the controller answered slowly or said it limits (down),
/// or answers quickly again (up).
pub fn submit_pace(width: usize, max: u32, signal: PaceSignal) {
    let why = match signal {
        PaceSignal::Quick => "the controller answers quickly again",
        PaceSignal::Slow => "the controller answers slowly",
        PaceSignal::Limited => "the controller limits the rate of submissions",
    };
    if width as u32 >= max || signal != PaceSignal::Quick {
        info!(
            width,
            "submitting {width} at a time (of `job.submit_concurrency` {max}): {why}"
        );
    } else {
        debug!(
            width,
            "submitting {width} at a time (of `job.submit_concurrency` {max}): {why}"
        );
    }
}

/// sbatch said the controller limits the rate (or is too busy): no job was created; the directories wait
/// `pause` and go at a lower pace, none is failed.
pub fn submit_rate_limited(path: &Path, err: &str, waiting: usize, pause: Duration) {
    info!(event = "rate_limited", dir = %field(path), waiting, "the controller limits submissions ({}); {waiting} directories wait {} and go at a lower pace",
        err.trim(), human(ms(pause)));
}

/// The budget of `job.submit_rate` is spent: the rest go as it refills.
pub fn submit_budget_spent(waiting: usize, wait: Duration) {
    debug!(
        waiting,
        "`job.submit_rate` budget spent; {waiting} directories go as it refills (next in {})",
        human(ms(wait))
    );
}

/// A submission failed; `delay` until the next try.
pub fn submit_failed(path: &Path, err: &SubmitError, edge: OutageEdge, delay: Duration) {
    match edge {
        OutageEdge::Started if err.is_certain() => {
            warn!(event = "submit_failed", dir = %field(path),
            "cannot submit {}: {err}; it stays pending and is retried with back-off (next in {}); further failures are quiet until submissions work again",
            show(path), human(ms(delay)))
        }
        OutageEdge::Started => warn!(event = "submit_uncertain", dir = %field(path),
            "submission of {} has an unknown outcome: {err}; its job is looked up by its key (squeue, sacct) before anything is resubmitted; further failures are quiet until submissions work again",
            show(path)),
        _ => debug!(dir = %field(path), "submission of {} failed again: {err}", show(path)),
    }
}

/// Slurm refused a submission for what the config asks; said at once and again every `repeat`.
pub fn submit_refused(
    path: &Path,
    err: &SubmitError,
    reason: Rejection,
    said: RejectionEdge,
    now: Millis,
    delay: Duration,
    repeat: Duration,
) {
    let (key, problem, advice) = (reason.key(), reason.problem(), reason.advice());
    // sbatch often says it in two lines (`invalid partition specified: x` / `submission failed: …`).
    let slurm = err.to_string().replace('\n', " / ");
    let again = match said {
        RejectionEdge::New => String::new(),
        RejectionEdge::Again { since, refusals } => {
            format!(
                " still, after {} and {refusals} refusals",
                human(now - since)
            )
        }
        RejectionEdge::Quiet => {
            return debug!(dir = %field(path), reason = "config", key,
                "submission of {} refused again ({problem}): {slurm}", show(path));
        }
    };
    warn!(event = "refused", dir = %field(path), reason = "config", key,
        "sbatch refuses {}{again}: {problem}, a configuration error that waiting will not fix: fix `{key}` \
         ({advice}), then reload (`systemctl reload dirwatcher` or SIGHUP). Every ready directory stays \
         pending; the next try is in {}, and this is said again every {} until it works. Slurm said: {slurm}",
        show(path), human(ms(delay)), human(ms(repeat)));
}

/// A reload came while submissions were refused: the waiting directories are tried again now.
pub fn refused_retried(reason: Rejection, refused: usize) {
    info!(
        "config reloaded while sbatch refused it ({}, `{}`): the waiting directories are tried again now \
         ({refused} refused before), not after their back-off",
        reason.problem(),
        reason.key(),
    );
}

/// The job output folder failed its check: no submissions until it passes (said once).
pub fn output_refused(problem: &FolderProblem, edge: OutageEdge) {
    match edge {
        OutageEdge::Started => warn!(
            folder = %problem.path().display(),
            "not submitting any job: the job output folder is unsafe: {problem}; directories stay pending \
             and are submitted once it is fixed"
        ),
        _ => debug!("job output folder still unsafe: {problem}"),
    }
}

/// The job output folder passes its check again.
pub fn output_back(folder: &Path, edge: OutageEdge) {
    if let OutageEdge::Ended { lasted, .. } = edge {
        info!(
            folder = %field(folder),
            "the job output folder {} is safe again after {}; submitting",
            show(folder),
            human(lasted)
        );
    }
}

/// A config that loads, but with a risk worth saying (the same words as `check-config`'s).
pub fn config_warning(w: &str) {
    warn!("config: {w}");
}

/// At start: who is told of what, and the original's keys that are not used.
pub fn telling(c: &Config, email: &crate::deliver::EmailTransport) {
    use crate::deliver::EmailTransport;
    if let Some(db) = &c.notify.db {
        info!(
            db = %db.describe(),
            "every submission and end is written to the web application's database (`db:`, its `jobs` table)"
        );
    }
    let n = &c.notify;
    if !n.any_channel() || n.events.is_empty() {
        return;
    }
    let events: Vec<&str> = n.events.iter().map(|e| e.as_str()).collect();
    let mut channels = Vec::new();
    if *email != EmailTransport::None && (n.email_owner || !n.email_to.is_empty()) {
        let who = match (n.email_owner, n.email_to.len()) {
            (true, 0) => "the address in each directory's `.dirwatch_meta.json`".to_string(),
            (true, k) => format!("the address in `.dirwatch_meta.json` and {k} fixed"),
            (false, k) => format!("{k} fixed address(es)"),
        };
        channels.push(format!("e-mail to {who} via {}", email.describe()));
    }
    if !n.webhooks.is_empty() {
        channels.push(format!("{} webhook(s)", n.webhooks.len()));
    }
    if let Some(p) = n.command.first() {
        channels.push(format!("the command `{p}`"));
    }
    if *email == EmailTransport::None && (!n.email_to.is_empty() || n.from.is_some()) {
        warn!(
            "no e-mail will be sent: no `sendmail` is installed and `behavior.smtp_host` is not set; \
             install one (e.g. `apt install msmtp-mta`) or set `behavior.smtp_host`"
        );
    }
    if !channels.is_empty() {
        info!(
            "telling of {} through {}",
            events.join(", "),
            channels.join(", ")
        );
    }
}

/// A directory's `.dirwatch_meta.json` was not used.
pub fn meta_refused(path: &Path, problem: &crate::deliver::MetaProblem) {
    warn!(dir = %field(path), "not e-mailing the owner of {}: {problem}", show(path));
}

/// The directory a notice is about, as a log field: the event document's `dir` (none for a blocked
/// submission, which is about the config).
fn notice_dir(n: &crate::ledger::Notice) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(&n.payload).ok()?;
    let dir = doc.get("dir")?.as_str()?;
    Some(field(Path::new(dir)).into_owned())
}

/// A notice went out. Its own `event` (`delivered`), so a match on job events (`event=submitted`)
/// never picks a delivery; `notice` is the event it told of.
pub fn notice_sent(n: &crate::ledger::Notice, label: &str) {
    let dir = notice_dir(n);
    info!(
        event = "delivered",
        notice = n.event.as_str(),
        channel = n.channel.as_str(),
        dir = dir.as_deref(),
        delivery_id = n.delivery_id.as_str(),
        "told {label} by {} of `{}`{} (notice {})",
        n.channel.as_str(),
        n.event.as_str(),
        about(dir.as_deref()),
        n.id
    );
}

/// ` for "DIR"` when a notice is about a directory.
fn about(dir: Option<&str>) -> String {
    dir.map(|d| format!(" for {}", show(Path::new(d))))
        .unwrap_or_default()
}

/// A delivery failed: warned once per outage of that target; a given-up notice is always said.
pub fn delivery_failed(
    n: &crate::ledger::Notice,
    label: &str,
    err: &dyn std::error::Error,
    edge: OutageEdge,
    after: crate::engine::notice::AfterFailure,
    wall: Millis,
) {
    use crate::engine::notice::AfterFailure;
    let channel = n.channel.as_str();
    let e = error_chain(err);
    let dir = notice_dir(n);
    let (notice, delivery_id) = (n.event.as_str(), n.delivery_id.as_str());
    match after {
        AfterFailure::GiveUp => warn!(
            event = "delivery_given_up",
            notice,
            channel,
            dir = dir.as_deref(),
            delivery_id,
            "gave up telling {label} by {channel} of `{notice}`{} (notice {}) after {} attempts: {e}",
            about(dir.as_deref()),
            n.id,
            n.attempts + 1
        ),
        AfterFailure::RetryAt(at) => match edge {
            OutageEdge::Started => warn!(
                event = "delivery_failed",
                notice,
                channel,
                dir = dir.as_deref(),
                delivery_id,
                "cannot deliver to {label} by {channel}: {e}; notices wait in the state file and are \
                 retried (next in {}); said again when it works",
                human(at - wall)
            ),
            _ => debug!(
                event = "delivery_failed",
                notice,
                channel,
                dir = dir.as_deref(),
                delivery_id,
                "delivery to {label} failed again: {e}"
            ),
        },
    }
}

/// A failing delivery target works again.
pub fn delivery_back(channel: crate::engine::notice::Channel, label: &str, edge: OutageEdge) {
    if let OutageEdge::Ended { lasted, failures } = edge {
        info!(
            event = "delivery_back",
            channel = channel.as_str(),
            "delivery to {label} by {} works again after {} and {failures} failed attempts",
            channel.as_str(),
            human(lasted)
        );
    }
}

/// A new ledger was started with `--catch-up` over a root an earlier ledger served.
pub fn caught_up(state_file: &Path, traces: &[String]) {
    warn!(
        state_file = %field(state_file),
        "started a new ledger `{}` although an earlier one served this root ({}): every ready directory is \
         processed as new (--catch-up)",
        state_file.display(),
        traces.join("; ")
    );
}

/// The ledger's path no longer names the file held open: nothing is done until a restart.
pub fn ledger_file_unusable(
    state_file: &Path,
    problem: &crate::ledger::identity::Problem,
    edge: OutageEdge,
) {
    if edge == OutageEdge::Started {
        error!(
            state_file = %field(state_file),
            "the ledger `{}` cannot be trusted: {problem}; nothing is scanned, submitted or deleted, since what \
             is recorded now would be lost. Stop dirwatcher, put the ledger back (from a backup, or rebuild it \
             with `dirwatcher recover --from-slurm`), then start it again",
            state_file.display()
        );
    }
}

/// The start-up read of the web application's database failed: its active rows are not compared.
pub fn db_sync_failed(e: &crate::bridge::BridgeError) {
    warn!(
        "cannot read the active rows of the web application's `jobs` table ({e}); the ledger alone \
         decides what is in flight, and rows are written as the database takes them (`status` shows what \
         waits); if this site has no such database, remove the `db:` section"
    );
}

/// An active row of the web application's database that the ledger has no record of.
pub fn db_row_unknown(r: &crate::bridge::ActiveRow) {
    let job = r.job_id.as_deref().unwrap_or("");
    warn!(
        dir = %r.dir,
        job_id = job,
        db_status = %r.status,
        "the web application's database shows job {} for {:?} as {}, but the ledger has no record of it: \
         its row is left as it is; if that job ran for this root, `dirwatcher recover --from-slurm` \
         records it, else correct the row in the web application",
        if job.is_empty() { "(none)" } else { job },
        r.dir,
        r.status
    );
}

/// The start-up comparison of the database's active rows with the ledger is done.
pub fn db_synced(rows: usize, unknown: usize) {
    if unknown == 0 {
        info!(
            rows,
            "the web application's database has {rows} active row(s), each known to the ledger"
        );
    } else {
        warn!(
            rows,
            unknown,
            "the web application's database has {rows} active row(s), {unknown} of them unknown to the ledger"
        );
    }
}

/// This daemon took the shared ledger's lease: it is the active one.
pub fn leading(ledger: &Path, held: &crate::ledger::lease::Held) {
    info!(
        event = "leading",
        holder = %held.holder,
        epoch = held.epoch,
        "this daemon ({}) is the active one on the ledger {} (lease epoch {}): it scans, submits, deletes and tells",
        held.holder,
        show(ledger),
        held.epoch
    );
}

/// This daemon lost the shared ledger's lease.
pub fn deposed(ledger: &Path, held: &crate::ledger::lease::Held, why: &str) {
    warn!(
        event = "deposed",
        holder = %held.holder,
        epoch = held.epoch,
        "this daemon ({}) is no longer the active one on the ledger {} (lease epoch {}): {why}; it stops \
         acting and waits as standby",
        held.holder,
        show(ledger),
        held.epoch
    );
}

/// The lease could not be handed back at a stop: the standby takes over once it runs out.
pub fn lease_not_handed_back(e: &dyn std::error::Error) {
    warn!(
        "could not hand the ledger's lease back at this stop ({}): the standby takes over once it runs out",
        error_chain(e)
    );
}

/// This daemon waits as standby.
pub fn standby(
    ledger: &Path,
    lease: &crate::ledger::lease::LeaseInfo,
    lease_sec: std::time::Duration,
) {
    info!(
        event = "standby",
        active = %lease.holder,
        epoch = lease.epoch,
        "standby: the ledger {} is held by {} (lease epoch {}, since {} UTC); this daemon takes over when \
         that lease runs out (it lasts {} without a renewal) or is handed back",
        show(ledger),
        lease.holder,
        lease.epoch,
        lease.since,
        human(lease_sec.as_millis() as i64)
    );
}

/// The standby cannot read the lease (the server is away): it keeps looking.
pub fn standby_cannot_look(e: &dyn std::error::Error) {
    warn!(
        "standby: cannot read the ledger's lease ({}); looking again, and taking over once it is free",
        error_chain(e)
    );
}
