//! `status`: is it healthy? The ledger (read only) says what was decided; the daemon's lock says whether one
//! runs; its snapshot says what only it knows (pid, uptime, last poll, settling and locked directories, the
//! Slurm state of jobs in flight). One vocabulary for every output: [`WORDS`].
//!
//! Must never: write anything, or believe a snapshot of a daemon that is not running.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{dir_name, open_read_only, rfc3339};
use crate::config::Config;
use crate::engine::{GenState, Generation, classify_rejection};
use crate::logging::field_str as esc;
use crate::snapshot::{self, JobSeen, Liveness, Snapshot, Waiting};
use crate::time::{Millis, human, wall_now};

/// Version of `status --json`'s fields. 2: `daemon`, `healthy`, `problems`, the `settling`/`locked`/
/// `unreadable` counts, `counts.in_flight` (was `submitted`), Slurm state in `in_flight`, `waiting`.
pub const STATUS_SCHEMA_VERSION: u32 = 2;

/// The words for a directory's state, the same in text, JSON, systemd's `STATUS=` and the metrics.
pub const WORDS: [&str; 8] = [
    "settling",
    "locked",
    "unreadable",
    "submitting",
    "in_flight",
    "completed",
    "failed",
    "lost",
];

/// The word for a ledger state.
pub fn word_of(s: GenState) -> &'static str {
    match s {
        GenState::Submitting => "submitting",
        GenState::Submitted => "in_flight",
        GenState::Completed => "completed",
        GenState::Failed => "failed",
        GenState::Lost => "lost",
    }
}

/// What the operator asked to see.
#[derive(Debug, Clone, Default)]
pub struct StatusQuery {
    /// How many recent failures to list.
    pub failures: u32,
    /// Only directories in these states ([`WORDS`]).
    pub states: Vec<String>,
    /// Only directories whose latest record changed within this long.
    pub since: Option<Duration>,
    /// Only these directories.
    pub dirs: Vec<PathBuf>,
}

impl StatusQuery {
    /// True when a listing of directories was asked for.
    pub fn lists(&self) -> bool {
        !self.states.is_empty() || self.since.is_some() || !self.dirs.is_empty()
    }
}

/// The daemon, as far as this command can tell.
#[derive(Debug, Serialize)]
pub struct DaemonHealth {
    /// `running`, `not running` or `unknown` (the lock could not be probed).
    pub state: &'static str,
    /// Its pid (from a fresh snapshot).
    pub pid: Option<u32>,
    /// When it started (RFC 3339).
    pub started_at: Option<String>,
    /// Seconds since it started.
    pub uptime_sec: Option<u64>,
    /// When it last listed the root successfully (RFC 3339).
    pub last_poll_at: Option<String>,
    /// Seconds since then.
    pub last_poll_age_sec: Option<u64>,
    /// The scheduler it uses.
    pub scheduler: Option<String>,
    /// The snapshot: `fresh`, `stale` (of a daemon that stopped, or one that stopped writing it),
    /// `missing` or `unusable`.
    pub snapshot: &'static str,
    /// When the snapshot was written (RFC 3339).
    pub snapshot_written_at: Option<String>,
    /// Why the lock or the snapshot could not be read, in words.
    pub note: Option<String>,
}

/// Directories by state, in the shared vocabulary. The first three come from the daemon's snapshot
/// (`None` when no live daemon's snapshot is at hand).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Ready-files watched for stability.
    pub settling: Option<u64>,
    /// Stable ready-files that a writer holds locked.
    pub locked: Option<u64>,
    /// Directories the daemon cannot read.
    pub unreadable: Option<u64>,
    /// Intents waiting for `sbatch` (or its answer).
    pub submitting: u64,
    /// Jobs in flight.
    pub in_flight: u64,
    /// Jobs COMPLETED.
    pub completed: u64,
    /// Jobs failed.
    pub failed: u64,
    /// Jobs lost.
    pub lost: u64,
}

/// One in-flight job in `status`.
#[derive(Debug, Serialize)]
pub struct InFlight {
    /// Full path of the directory.
    pub dir: String,
    /// `submitting` (no job id yet) or `in_flight`.
    pub state: &'static str,
    /// Job id, once known.
    pub job_id: Option<String>,
    /// Job name.
    pub job_name: String,
    /// Slurm's state word as the daemon last saw it (from its snapshot).
    pub slurm_state: Option<String>,
    /// Slurm's reason with that state (`Priority`, `Resources`, `ReqNodeNotAvail`, …), when it gave one.
    pub slurm_reason: Option<String>,
    /// Why it is where it is, in words.
    pub reason: String,
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

/// One directory of a filtered listing (`--state`, `--since`, `DIR…`, `-P`).
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// Full path.
    pub dir: String,
    /// Its name under the root.
    pub name: String,
    /// One of [`WORDS`].
    pub state: String,
    /// Job id.
    pub job_id: Option<String>,
    /// Job name.
    pub job_name: Option<String>,
    /// Slurm's state word: the final one, or as the daemon last saw it.
    pub slurm_state: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// Attempt number.
    pub attempt: Option<u32>,
    /// Seconds since its latest record was created (or since the daemon started watching it).
    pub age_sec: Option<u64>,
    /// When its latest record last changed (RFC 3339).
    pub updated: Option<String>,
    /// Final exit code.
    pub exit_code: Option<String>,
    /// Last error.
    pub last_error: Option<String>,
}

/// The fields `-o` may name, in their default order.
pub const FIELDS: [&str; 12] = [
    "dir",
    "name",
    "state",
    "job_id",
    "job_name",
    "slurm_state",
    "reason",
    "attempt",
    "age_sec",
    "updated",
    "exit_code",
    "last_error",
];

/// `-P` without `-o`.
pub const DEFAULT_FIELDS: [&str; 8] = [
    "dir",
    "state",
    "job_id",
    "slurm_state",
    "reason",
    "attempt",
    "age_sec",
    "exit_code",
];

impl Listed {
    /// The value of field `f` ([`FIELDS`]) as text; empty when unknown.
    pub fn field(&self, f: &str) -> String {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let n = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
        match f {
            "dir" => self.dir.clone(),
            "name" => self.name.clone(),
            "state" => self.state.clone(),
            "job_id" => o(&self.job_id),
            "job_name" => o(&self.job_name),
            "slurm_state" => o(&self.slurm_state),
            "reason" => self.reason.clone(),
            "attempt" => n(self.attempt.map(u64::from)),
            "age_sec" => n(self.age_sec),
            "updated" => o(&self.updated),
            "exit_code" => o(&self.exit_code),
            "last_error" => o(&self.last_error),
            _ => String::new(),
        }
    }
}

/// The whole `status` report.
#[derive(Debug, Serialize)]
pub struct Status {
    /// [`STATUS_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// True when the daemon runs, its snapshot is fresh, and nothing below needs an operator.
    pub healthy: bool,
    /// What is wrong, in words (empty when healthy).
    pub problems: Vec<String>,
    /// The daemon.
    pub daemon: DaemonHealth,
    /// The ledger file (the local state's place when the ledger is on a server).
    pub state_file: String,
    /// Where the ledger is and, when it is shared, which daemon is the active one.
    pub ledger: LedgerView,
    /// The watched root.
    pub root: String,
    /// Directories by state.
    pub counts: Tally,
    /// Set while submissions are refused for a configuration reason (as the ledger last saw it).
    pub submissions_refused: Option<Refusal>,
    /// Jobs in flight (and intents waiting for their job id).
    pub in_flight: Vec<InFlight>,
    /// Directories the daemon watches but has not submitted (settling, locked, unreadable).
    pub waiting: Vec<Waiting>,
    /// Most recent failures, newest first.
    pub recent_failures: Vec<Failure>,
    /// Directories whose job is lost (no source showed it for longer than `job.lost_after_sec`).
    pub lost: Vec<InFlight>,
    /// Notices (e-mail, webhooks, the command) not delivered yet, and those given up.
    pub notices: Notices,
    /// With `--state`, `--since` or `DIR…`: the matching directories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directories: Option<Vec<Listed>>,
}

/// The ledger as `status` shows it.
#[derive(Debug, Serialize)]
pub struct LedgerView {
    /// `sqlite` or `mariadb`.
    pub backend: &'static str,
    /// Its file, or its server's address (never a password).
    pub at: String,
    /// On a shared ledger: the lease.
    pub lease: Option<LeaseView>,
}

/// The lease of a shared ledger: who is the active daemon, since when.
#[derive(Debug, Serialize)]
pub struct LeaseView {
    /// `instance@host` of the active daemon; `None` when no daemon holds the lease.
    pub active: Option<String>,
    /// Takeovers so far.
    pub epoch: i64,
    /// When the active daemon took it (UTC, the server's clock).
    pub since: String,
    /// Seconds until it runs out unless renewed.
    pub left_sec: f64,
}

/// The outbox as `status` shows it.
#[derive(Debug, Default, Serialize)]
pub struct Notices {
    /// Waiting for (another) delivery attempt.
    pub waiting: u64,
    /// How long the oldest waiting notice has waited.
    pub oldest_waiting_sec: Option<u64>,
    /// Given up after their last attempt (the event itself is in the ledger and the failure log).
    pub given_up: u64,
    /// The latest delivery error: `channel to target: error`.
    pub last_error: Option<String>,
}

/// A notice undelivered for this long means its channel is broken, not slow: `status` calls it a problem.
const NOTICE_STUCK: Duration = Duration::from_secs(3600);

/// The outbox's health, and the problem it is, if any.
fn notices(
    ledger: &crate::ledger::Ledger,
    now: Millis,
) -> anyhow::Result<(Notices, Option<String>)> {
    let h = ledger.outbox_health()?;
    let n = Notices {
        waiting: h.waiting,
        oldest_waiting_sec: h
            .oldest_waiting_at
            .map(|t| ((now - t).max(0) / 1000) as u64),
        given_up: h.given_up,
        last_error: h.last_error,
    };
    let why = n
        .last_error
        .as_deref()
        .map(|e| format!(" (last error: {e})"))
        .unwrap_or_default();
    let stuck = n
        .oldest_waiting_sec
        .is_some_and(|s| s >= NOTICE_STUCK.as_secs());
    let problem = if n.given_up > 0 {
        Some(format!(
            "{} notice(s) could not be delivered and were given up{why}: fix the channel in `notify:`",
            n.given_up
        ))
    } else if stuck {
        Some(format!(
            "{} notice(s) have waited {} or more for delivery{why}: fix the channel in `notify:` (they are \
             kept and retried)",
            n.waiting,
            human(crate::time::ms(NOTICE_STUCK))
        ))
    } else {
        None
    };
    Ok((n, problem))
}

/// Reads the lock and the snapshot: the daemon's health, and its snapshot when it is worth believing.
fn daemon_health(cfg: &Config, now: Millis) -> (DaemonHealth, Option<Snapshot>) {
    let paths = crate::state_paths::StatePaths::of(&cfg.behavior.state_file);
    let live = snapshot::liveness(&paths);
    let mut note = match &live {
        Liveness::Unknown(why) => Some(why.clone()),
        _ => None,
    };
    let read = snapshot::read(&paths);
    let (snap_word, snap) = match read {
        snapshot::Read::Missing => ("missing", None),
        snapshot::Read::Unusable(why) => {
            note.get_or_insert(why);
            ("unusable", None)
        }
        snapshot::Read::Found(s) => {
            let fresh = live != Liveness::NotRunning && s.is_fresh(now);
            (if fresh { "fresh" } else { "stale" }, Some(s))
        }
    };
    let fresh = snap.as_ref().filter(|_| snap_word == "fresh");
    let secs = |t: Millis| ((now - t).max(0) / 1000) as u64;
    let health = DaemonHealth {
        state: match live {
            Liveness::Running => "running",
            Liveness::NotRunning => "not running",
            Liveness::Unknown(_) => "unknown",
        },
        pid: fresh.map(|s| s.pid),
        started_at: fresh.map(|s| rfc3339(s.started_at)),
        uptime_sec: fresh.map(|s| secs(s.started_at)),
        last_poll_at: snap.as_ref().and_then(|s| s.last_poll_at).map(rfc3339),
        last_poll_age_sec: snap.as_ref().and_then(|s| s.last_poll_at).map(secs),
        scheduler: snap.as_ref().map(|s| s.scheduler.clone()),
        snapshot: snap_word,
        snapshot_written_at: snap.as_ref().map(|s| rfc3339(s.written_at)),
        note,
    };
    let believed = fresh.cloned();
    (health, believed)
}

/// Builds the `status` report.
pub fn status(cfg: &Config, q: &StatusQuery) -> anyhow::Result<Status> {
    let ledger = open_read_only(cfg)?;
    let now = wall_now();
    let root = &cfg.watch.root;
    let (daemon, snap) = daemon_health(cfg, now);
    let row = |g: Generation| in_flight_row(root, snap.as_ref(), g, now);
    let active = ledger.active()?;
    let submissions_refused = refusal(root, &active);
    let in_flight: Vec<InFlight> = active.into_iter().map(row).collect();
    let lost: Vec<InFlight> = ledger.lost()?.into_iter().map(row).collect();
    let recent_failures = ledger
        .recent_failures(q.failures)?
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
    let c = ledger.counts()?;
    let waiting = snap.as_ref().map(|s| s.waiting.clone()).unwrap_or_default();
    let counts = tally(&c, snap.as_ref(), &waiting);
    let directories = if q.lists() {
        Some(listing(
            cfg,
            &ledger.latest_per_dir()?,
            snap.as_ref(),
            q,
            now,
        )?)
    } else {
        None
    };
    let lease = ledger.lease_info()?;
    let held_elsewhere =
        lease.as_ref().is_some_and(|l| l.is_held()) && daemon.state == "not running";
    // On a shared ledger the active daemon may run on the other login node: this one not running here
    // is then no problem of the ledger's.
    let mut problems = if held_elsewhere {
        Vec::new()
    } else {
        daemon_problems(&daemon)
    };
    if lease.as_ref().is_some_and(|l| !l.is_held()) {
        problems.push(
            "no daemon holds the shared ledger's lease: nothing is submitted; start one (`systemctl start \
             dirwatcher`) on a login node"
                .into(),
        );
    }
    let ledger_view = LedgerView {
        backend: ledger.backend().as_str(),
        at: crate::ledger::LedgerAt::of(&cfg.behavior).to_string(),
        lease: lease.map(|l| LeaseView {
            active: l.is_held().then(|| l.holder.clone()),
            epoch: l.epoch,
            since: l.since.clone(),
            left_sec: (l.left_ms.max(0) as f64) / 1000.0,
        }),
    };
    if let Some(r) = &submissions_refused {
        problems.push(format!(
            "submissions refused: {} (fix `{}`)",
            r.problem, r.key
        ));
    }
    if !lost.is_empty() {
        problems.push(format!(
            "{} lost job(s): check them, then `dirwatcher retry DIR`",
            lost.len()
        ));
    }
    let (notices, notice_problem) = notices(&ledger, now)?;
    problems.extend(notice_problem);
    if counts.unreadable.is_some_and(|n| n > 0) {
        problems.push("some directories cannot be read by the service user (see `waiting`)".into());
    }
    Ok(Status {
        schema_version: STATUS_SCHEMA_VERSION,
        healthy: problems.is_empty(),
        problems,
        daemon,
        state_file: cfg.behavior.state_file.to_string_lossy().into_owned(),
        ledger: ledger_view,
        root: root.to_string_lossy().into_owned(),
        counts,
        submissions_refused,
        in_flight,
        waiting,
        recent_failures,
        lost,
        notices,
        directories,
    })
}

/// One row of `in_flight` or `lost`: the ledger's record, with what the daemon last saw of its job.
fn in_flight_row(root: &Path, snap: Option<&Snapshot>, g: Generation, now: Millis) -> InFlight {
    let seen = |g: &Generation| -> Option<&JobSeen> {
        let id = g.job_id.as_deref()?;
        snap?.jobs.iter().find(|j| j.job_id == id)
    };
    let slurm_state = seen(&g).map(|j| j.slurm_state.clone());
    let slurm_reason = seen(&g)
        .map(|j| j.slurm_reason.clone())
        .filter(|r| !r.is_empty());
    let mut reason = reason_of(&g, slurm_state.as_deref(), now);
    if let Some(r) = &slurm_reason {
        reason.push_str(&format!(" (reason: {r})"));
    }
    InFlight {
        dir: root.join(&g.dir).to_string_lossy().into_owned(),
        state: word_of(g.state),
        reason,
        slurm_state,
        slurm_reason,
        job_id: g.job_id.clone(),
        job_name: g.scheduler_name().to_string(),
        attempt: g.attempt,
        age_sec: ((now - g.created_at).max(0) / 1000) as u64,
        last_error: g.last_error.clone(),
    }
}

/// The counts: the ledger's, and what only a running daemon knows (`None` without its snapshot).
fn tally(c: &crate::ledger::Counts, snap: Option<&Snapshot>, waiting: &[Waiting]) -> Tally {
    let count = |w: &str| snap.map(|_| waiting.iter().filter(|x| x.state == w).count() as u64);
    Tally {
        settling: count("settling"),
        locked: count("locked"),
        unreadable: count("unreadable"),
        submitting: c.submitting,
        in_flight: c.submitted,
        completed: c.completed,
        failed: c.failed,
        lost: c.lost,
    }
}

/// The problem with the daemon itself, if any.
fn daemon_problems(daemon: &DaemonHealth) -> Vec<String> {
    let mut problems = Vec::new();
    match daemon.state {
        "running" if daemon.snapshot != "fresh" => problems.push(format!(
            "the daemon holds its lock but its snapshot is {} (written {}): is it stuck? `journalctl -u dirwatcher`",
            daemon.snapshot,
            daemon.snapshot_written_at.as_deref().unwrap_or("never")
        )),
        "running" => {}
        "not running" => problems.push(
            "no daemon is running on this ledger: start it (`systemctl start dirwatcher`, or `dirwatcher run`)"
                .into(),
        ),
        _ => problems.push(format!(
            "cannot tell whether the daemon runs: {}",
            daemon.note.as_deref().unwrap_or("the lock could not be probed")
        )),
    }
    problems
}

/// Why a record is where it is, in words.
pub(super) fn reason_of(g: &Generation, slurm_state: Option<&str>, now: Millis) -> String {
    match g.state {
        GenState::Submitting if g.uncertain => {
            "an sbatch ran but its answer was lost: its job is looked up by key before any resubmission".into()
        }
        GenState::Submitting if g.next_try_at > now => format!(
            "waiting {} before the next sbatch{}",
            human(g.next_try_at - now),
            g.last_error
                .as_deref()
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default()
        ),
        GenState::Submitting => "due: submitted on the daemon's next cycle".into(),
        GenState::Submitted => match slurm_state {
            Some(s) => format!("slurm says {s}"),
            None => "submitted; no word from slurm yet".into(),
        },
        GenState::Completed if g.deleted => "COMPLETED; directory deleted".into(),
        GenState::Completed => "COMPLETED".into(),
        GenState::Failed => format!(
            "{} (exit {})",
            g.final_state.as_deref().unwrap_or("failed"),
            g.exit_code.as_deref().unwrap_or("-")
        ),
        GenState::Lost => "no source (sacct, squeue) showed the job for too long".into(),
    }
}

/// The directories a filtered `status` lists: the ledger's latest record of each, with what the daemon
/// watches and has not recorded yet.
fn listing(
    cfg: &Config,
    latest: &[Generation],
    snap: Option<&Snapshot>,
    q: &StatusQuery,
    now: Millis,
) -> anyhow::Result<Vec<Listed>> {
    for s in &q.states {
        if !WORDS.contains(&s.as_str()) {
            anyhow::bail!(
                "unknown state `{s}` for --state: use one of {}",
                WORDS.join(", ")
            );
        }
    }
    let root = &cfg.watch.root;
    let wanted_names: Vec<OsString> = q
        .dirs
        .iter()
        .map(|d| dir_name(root, d))
        .collect::<anyhow::Result<_>>()?;
    let mut out: Vec<Listed> = Vec::new();
    let watching = snap.map(|s| s.waiting.as_slice()).unwrap_or_default();
    for g in latest {
        let name = g.dir.to_string_lossy().into_owned();
        if watching.iter().any(|w| w.dir == name) {
            continue; // a new generation is being watched: listed below
        }
        let slurm_state = match g.state {
            GenState::Submitted => g.job_id.as_deref().and_then(|id| {
                snap.and_then(|s| s.jobs.iter().find(|j| j.job_id == id))
                    .map(|j| j.slurm_state.clone())
            }),
            _ => g.final_state.clone(),
        };
        out.push(Listed {
            dir: root.join(&g.dir).to_string_lossy().into_owned(),
            name,
            state: word_of(g.state).into(),
            job_id: g.job_id.clone(),
            job_name: Some(g.scheduler_name().to_string()),
            reason: reason_of(g, slurm_state.as_deref(), now),
            slurm_state,
            attempt: Some(g.attempt),
            age_sec: Some(((now - g.created_at).max(0) / 1000) as u64),
            updated: Some(rfc3339(g.updated_at)),
            exit_code: g.exit_code.clone(),
            last_error: g.last_error.clone(),
        });
    }
    for w in watching {
        out.push(Listed {
            dir: root.join(&w.dir).to_string_lossy().into_owned(),
            name: w.dir.clone(),
            state: w.state.clone(),
            job_id: None,
            job_name: None,
            slurm_state: None,
            reason: w.reason.clone(),
            attempt: None,
            age_sec: None,
            updated: None,
            exit_code: None,
            last_error: None,
        });
    }
    let since = q.since.map(|d| now - d.as_millis() as Millis);
    out.retain(|l| {
        (q.states.is_empty() || q.states.contains(&l.state))
            && (wanted_names.is_empty()
                || wanted_names.iter().any(|n| n.to_string_lossy() == l.name))
            && since.is_none_or(|t| {
                // A watched directory has no record yet: it changed just now.
                l.updated.is_none()
                    || latest
                        .iter()
                        .any(|g| g.dir.to_string_lossy() == l.name && g.updated_at >= t)
            })
    });
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
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

fn opt(n: Option<u64>) -> String {
    n.map_or_else(|| "?".into(), |n| n.to_string())
}

/// Renders the report for people.
pub fn render_status(s: &Status) -> String {
    let mut o = String::new();
    render_daemon(&mut o, &s.daemon);
    render_health(&mut o, s);
    render_jobs(&mut o, s);
    render_notices(&mut o, &s.notices);
    render_failures(&mut o, s);
    o
}

/// The first line: whether the daemon runs, and how it is doing.
fn render_daemon(o: &mut String, d: &DaemonHealth) {
    use std::fmt::Write;
    let ago = |n: Option<u64>| n.map(|n| human(n as Millis * 1000)).unwrap_or("-".into());
    match (d.state, d.snapshot) {
        ("running", "fresh") => {
            let _ = writeln!(
                o,
                "dirwatcher is running: pid {}, up {}, last poll {} ago (scheduler {})",
                d.pid.map_or("?".into(), |p| p.to_string()),
                ago(d.uptime_sec),
                ago(d.last_poll_age_sec),
                d.scheduler.as_deref().unwrap_or("?")
            );
        }
        ("running", snap) => {
            let _ = writeln!(
                o,
                "dirwatcher holds its lock, but its snapshot is {snap} (written {}): it may be stuck",
                d.snapshot_written_at.as_deref().unwrap_or("never")
            );
        }
        ("not running", _) => {
            let last = d
                .snapshot_written_at
                .as_deref()
                .map(|t| format!("; last seen alive {t} (its snapshot is stale)"))
                .unwrap_or_default();
            let _ = writeln!(o, "dirwatcher is NOT running on this ledger{last}");
        }
        _ => {
            let _ = writeln!(
                o,
                "cannot tell whether dirwatcher runs: {}",
                d.note.as_deref().unwrap_or("?")
            );
        }
    }
}

/// Where, the counts, and the verdict: healthy, or each problem (with the refusal of submissions).
fn render_health(o: &mut String, s: &Status) {
    use std::fmt::Write;
    let _ = writeln!(o, "root {}  (ledger {})", s.root, s.ledger.at);
    if let Some(l) = &s.ledger.lease {
        match &l.active {
            Some(a) => {
                let _ = writeln!(
                    o,
                    "shared ledger: {a} is the active daemon (lease epoch {}, since {} UTC, {:.1} s left)",
                    l.epoch, l.since, l.left_sec
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "shared ledger: no daemon is active (the lease of epoch {} ran out or was handed back)",
                    l.epoch
                );
            }
        }
    }
    let c = &s.counts;
    let _ = writeln!(
        o,
        "directories: {} settling, {} locked, {} unreadable, {} submitting, {} in flight, {} completed, {} failed, {} lost",
        opt(c.settling),
        opt(c.locked),
        opt(c.unreadable),
        c.submitting,
        c.in_flight,
        c.completed,
        c.failed,
        c.lost
    );
    if s.healthy {
        let _ = writeln!(o, "healthy");
    } else {
        for p in &s.problems {
            let _ = writeln!(o, "problem: {p}");
        }
    }
    if let Some(r) = &s.submissions_refused {
        let _ = writeln!(
            o,
            "\nsubmissions refused by Slurm: {} — a configuration error: fix `{}` ({}), then reload the \
             daemon (`systemctl reload dirwatcher` or SIGHUP); {} directories wait meanwhile\n  \
             last refused: {} at {}\n  sbatch said: {}",
            r.problem, r.key, r.advice, r.waiting, r.dir, r.at, r.error
        );
    }
}

/// The directories waiting, the jobs in flight, and the lost ones.
fn render_jobs(o: &mut String, s: &Status) {
    use std::fmt::Write;
    if !s.waiting.is_empty() {
        let _ = writeln!(o, "\nwaiting (not submitted yet):");
        for w in &s.waiting {
            let _ = writeln!(o, "  {:<10} {}  {}", w.state, esc(&w.dir), esc(&w.reason));
        }
    }
    if !s.in_flight.is_empty() {
        let _ = writeln!(o, "\nin flight:");
        for j in &s.in_flight {
            let _ = writeln!(
                o,
                "  job {:<10} {:<10} {:>6}s  attempt {}  {}  {}",
                j.job_id.as_deref().unwrap_or("-"),
                j.slurm_state.as_deref().unwrap_or(j.state),
                j.age_sec,
                j.attempt,
                esc(&j.dir),
                esc(&j.reason)
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
                esc(&j.dir)
            );
        }
    }
}

/// The outbox, when something in it was not delivered.
fn render_notices(o: &mut String, n: &Notices) {
    use std::fmt::Write;
    if n.waiting > 0 || n.given_up > 0 {
        let _ = writeln!(
            o,
            "\nnotices: {} waiting for delivery{}, {} given up",
            n.waiting,
            n.oldest_waiting_sec
                .map(|t| format!(" (oldest {})", human(t as Millis * 1000)))
                .unwrap_or_default(),
            n.given_up
        );
        if let Some(e) = &n.last_error {
            let _ = writeln!(o, "  last error: {}", esc(e));
        }
    }
}

/// The recent failures, and the directories a filtered `status` matched.
fn render_failures(o: &mut String, s: &Status) {
    use std::fmt::Write;
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
                esc(&f.dir)
            );
        }
    }
    if let Some(dirs) = &s.directories {
        let _ = writeln!(o, "\nmatching directories ({}):", dirs.len());
        for l in dirs {
            let _ = writeln!(
                o,
                "  {:<10} job {:<10} {}  {}",
                l.state,
                l.job_id.as_deref().unwrap_or("-"),
                esc(&l.dir),
                esc(&l.reason)
            );
        }
    }
}

/// Renders a listing with the given fields: `|`-separated with a header line (`parsable`, Slurm's `-P`),
/// else in aligned columns. Unknown field names are refused with the list of known ones.
pub fn render_listing(
    rows: &[Listed],
    fields: &[String],
    parsable: bool,
) -> anyhow::Result<String> {
    let fields: Vec<&str> = if fields.is_empty() {
        DEFAULT_FIELDS.to_vec()
    } else {
        fields.iter().map(String::as_str).collect()
    };
    for f in &fields {
        if !FIELDS.contains(f) {
            anyhow::bail!(
                "unknown field `{f}` for -o: use some of {}",
                FIELDS.join(",")
            );
        }
    }
    let header: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            fields
                .iter()
                .map(|f| {
                    // One line per directory, whatever a name or an error holds: control characters
                    // escaped as in the logs (a newline is `\n`), and no `|` inside a parsable field.
                    let cell = r.field(f);
                    let cell = esc(&cell);
                    match parsable {
                        true => cell.replace('|', " "),
                        false => cell.into_owned(),
                    }
                })
                .collect()
        })
        .collect();
    let mut o = String::new();
    if parsable {
        for line in std::iter::once(&header).chain(&body) {
            o.push_str(&line.join("|"));
            o.push('\n');
        }
        return Ok(o);
    }
    let widths: Vec<usize> = (0..fields.len())
        .map(|i| {
            std::iter::once(&header)
                .chain(&body)
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in std::iter::once(&header).chain(&body) {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        o.push_str(cells.join("  ").trim_end());
        o.push('\n');
    }
    Ok(o)
}
