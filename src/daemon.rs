//! The daemon loop: the one owner of state. It waits on one channel (signals, wake-ups) with a timeout,
//! gathers observations (directory listing, ready-file looks, scheduler answers), asks the engine what they
//! mean, and carries out the result through the ledger, the scheduler and the file system.
//!
//! Order inside a cycle: resolve uncertain submissions → follow jobs → finish due effects → scan → submit.
//! Every durable step is committed to the ledger before the effect that depends on it. Must never: call
//! `sbatch` without a committed intent, declare a job failed because a query failed, or hold the ledger
//! busy across a child process.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::engine::{
    self, GenState, GenerationVerdict, JobEnd, Millis, OutageEdge, OutageLatch, OutcomePolicy,
    Readiness, ReadyObservation, StabilityPolicy, StabilityTracker, ms,
};
use crate::ledger::{Counts, EndRecord, Generation, Ledger, LedgerError, NewGeneration};
use crate::metrics::{Metrics, MetricsError};
use crate::notify::{self, Notifier};
use crate::outcome::{self, FailureRecord};
use crate::scan;
use crate::scheduler::{self, JobSpec, Scheduler, SubmitError};

/// Something that wakes the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// SIGTERM / SIGINT: finish the current step and exit.
    Terminate,
    /// SIGHUP: reload the config.
    Reload,
}

/// Milliseconds since the epoch, now. The only place the daemon reads the wall clock.
pub fn wall_now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(ms)
        .unwrap_or(0)
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another daemon holds the state file.
    #[error(
        "another dirwatcher is already running with state file `{state}` (lock `{lock}` is held); stop it first \
         (`systemctl stop dirwatcher`), or give this instance its own `behavior.state_file`"
    )]
    AlreadyRunning {
        /// The state file.
        state: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The lock file could not be opened.
    #[error("cannot open the lock file `{path}`")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// `metrics.listen` could not be bound.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// Takes the single-instance lock beside the state file; held for as long as the returned file lives.
pub fn lock_state(state_file: &Path) -> Result<File, StartError> {
    let mut name = state_file
        .file_name()
        .map(OsString::from)
        .unwrap_or_default();
    name.push(".lock");
    let path = state_file.with_file_name(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| StartError::Lock {
            path: path.clone(),
            source,
        })?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::Lock {
            path: path.clone(),
            source,
        })?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::AlreadyRunning {
            state: state_file.to_path_buf(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::Lock { path, source }),
    }
}

/// Renders a path for a log line: quoted, with control characters escaped, so a hostile name cannot forge
/// log lines.
pub fn show(p: &Path) -> String {
    format!("{p:?}")
}

/// The running daemon.
pub struct Daemon {
    /// The config in force.
    cfg: Config,
    /// The ledger (single writer: this daemon; the CLI may add retries and forgets).
    ledger: Ledger,
    /// Slurm or local.
    sched: Box<dyn Scheduler>,
    /// Ready-files being watched for stability (memory only).
    tracker: StabilityTracker,
    /// Directories already reported as waiting for a lock (so it is said once, not every scan).
    told_locked: HashSet<OsString>,
    /// Submission outage (slurmctld down, sbatch failing).
    submit_latch: OutageLatch,
    /// Query outage (slurmdbd down, sacct failing).
    query_latch: OutageLatch,
    /// Ledger writes failing (disk full, read-only).
    ledger_latch: OutageLatch,
    /// Root unreadable (file system unmounted).
    scan_latch: OutageLatch,
    /// When the next scan of the root is due.
    next_scan: Millis,
    /// When jobs are next queried.
    next_track: Millis,
    /// During a submission outage, no `sbatch` before this time (one probe per back-off step instead of
    /// one 9-second connect timeout per pending directory).
    submit_hold_until: Millis,
    /// When the earliest pending intent becomes due (computed by `submit_due`, read by `next_wake`).
    next_submit: Millis,
    /// Prometheus metrics (also wraps the scheduler to time its calls).
    metrics: Metrics,
    /// The ledger's counts as last read, for metrics and systemd's `STATUS=`.
    counts: Option<Counts>,
    /// This daemon wrote to the ledger since `counts` was read.
    counts_stale: bool,
    /// When `counts` is read again even without writes of ours (the CLI may have changed the ledger).
    counts_due: Millis,
    /// systemd notifications; a no-op outside systemd.
    notifier: Notifier,
    /// The single-instance lock; released when the daemon is dropped.
    _lock: File,
}

impl Daemon {
    /// Takes the lock, opens the ledger and prepares the scheduler. Nothing runs yet.
    pub fn start(cfg: Config) -> Result<Daemon, StartError> {
        let lock = lock_state(&cfg.behavior.state_file)?;
        let ledger = Ledger::open(&cfg.behavior.state_file)?;
        let metrics = Metrics::start(&cfg.metrics)?;
        let notifier = Notifier::from_env();
        let sched = metrics.instrument(scheduler::from_config(&cfg), &notifier);
        prepare_output_dir(&cfg);
        Ok(Daemon {
            sched,
            cfg,
            ledger,
            tracker: StabilityTracker::default(),
            told_locked: HashSet::new(),
            submit_latch: OutageLatch::default(),
            query_latch: OutageLatch::default(),
            ledger_latch: OutageLatch::default(),
            scan_latch: OutageLatch::default(),
            next_scan: 0,
            next_track: 0,
            submit_hold_until: 0,
            next_submit: Millis::MAX,
            metrics,
            counts: None,
            counts_stale: true,
            counts_due: 0,
            notifier,
            _lock: lock,
        })
    }

    /// Runs cycles until a Terminate event arrives.
    pub fn run(&mut self, events: &Receiver<Event>) {
        let c = &self.cfg;
        info!(
            root = %c.watch.root.display(),
            executor = self.sched.name(),
            state_file = %c.behavior.state_file.display(),
            "dirwatcher started: watching {} for `{}` every {:?} ({} checks {:?} apart), executor {}",
            show(&c.watch.root),
            c.watch.signal_filename.to_string_lossy(),
            c.watch.poll_interval,
            c.watch.stability_checks,
            c.watch.stability_interval,
            self.sched.name(),
        );
        loop {
            if self.cycle(events) == Flow::Stop {
                break;
            }
            let now = wall_now();
            let wake = self.next_wake(now);
            let wait = Duration::from_millis(u64::try_from(wake - now).unwrap_or(0));
            let wait = self.notifier.cap_wait(wait);
            match events.recv_timeout(wait) {
                Ok(Event::Terminate) => break,
                Ok(Event::Reload) => {
                    self.notifier.reloading();
                    self.reload();
                    self.notifier.reloaded();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.notifier.stopping();
        info!(
            "dirwatcher stopped: in-flight jobs stay recorded in {} and are followed after the next start",
            show(&self.cfg.behavior.state_file)
        );
    }

    fn next_wake(&self, now: Millis) -> Millis {
        self.next_scan
            .min(self.next_track)
            .min(self.next_submit)
            .max(now)
    }

    fn reload(&mut self) {
        match Config::load(&self.cfg.source) {
            Ok(new) => {
                if new.behavior.state_file != self.cfg.behavior.state_file {
                    warn!(
                        "config reloaded, but `behavior.state_file` changed from {} to {}: that takes a restart; keeping the old one",
                        show(&self.cfg.behavior.state_file),
                        show(&new.behavior.state_file)
                    );
                }
                if new.watch.root != self.cfg.watch.root {
                    warn!(
                        "config reloaded, but `watch.root` changed from {} to {}: that takes a restart (jobs in flight belong to the old root); keeping the old one",
                        show(&self.cfg.watch.root),
                        show(&new.watch.root)
                    );
                }
                let (state_file, root) = (
                    self.cfg.behavior.state_file.clone(),
                    self.cfg.watch.root.clone(),
                );
                self.cfg = new;
                self.cfg.behavior.state_file = state_file;
                self.cfg.watch.root = root;
                self.sched = self
                    .metrics
                    .instrument(scheduler::from_config(&self.cfg), &self.notifier);
                self.metrics.reload(&self.cfg.metrics);
                prepare_output_dir(&self.cfg);
                self.next_scan = 0;
                info!("config reloaded from {}", show(&self.cfg.source));
            }
            Err(e) => warn!("config reload refused, still running on the previous config: {e}"),
        }
    }

    /// One cycle. Public for tests and for `run --once`.
    pub fn cycle(&mut self, events: &Receiver<Event>) -> Flow {
        let now = wall_now();
        if now >= self.next_track {
            // Once per poll interval: during an outage each lookup can take the scheduler's full timeout.
            self.resolve_uncertain(now);
            self.track(now);
            self.next_track = now + ms(self.cfg.watch.poll_interval);
        }
        self.finish_effects();
        if now >= self.next_scan {
            self.scan(now);
            let gap = if self.tracker.is_settling() {
                self.cfg.watch.stability_interval
            } else {
                self.cfg.watch.poll_interval
            };
            self.next_scan = now + ms(gap.max(Duration::from_millis(50)));
        }
        let flow = self.submit_due(events);
        self.observe();
        flow
    }

    /// End of a cycle: publishes the counts (metrics, systemd `STATUS=`; the first time also `READY=1`)
    /// and pets the watchdog. The ledger is only counted when someone listens.
    fn observe(&mut self) {
        let wanted = self.metrics.is_enabled() || self.notifier.is_enabled();
        let now = wall_now();
        // Counting walks the whole ledger: do it when this daemon changed something, and otherwise once per
        // poll interval (which also picks up `retry`/`forget` from the CLI), not on every short cycle.
        if wanted && (self.counts_stale || now >= self.counts_due) {
            if let Ok(c) = self.ledger.counts() {
                self.counts = Some(c);
            }
            self.counts_stale = false;
            self.counts_due = now + ms(self.cfg.watch.poll_interval);
        }
        let counts = self.counts.clone();
        let settling = self.tracker.len() as u64;
        self.metrics.publish(counts.as_ref(), settling);
        let status = counts
            .as_ref()
            .map(|c| notify::status_line(&self.cfg.watch.root, c.submitting + settling, c));
        self.notifier.cycle_done(status.as_deref());
    }

    /// How long after its last `sbatch` attempt an uncertain submission must be unknown to Slurm before it
    /// is submitted again: longer than any `sbatch` can still be on its way (ours are bounded by
    /// `job.command_timeout_sec`; one orphaned by a crash by Slurm's own message timeouts).
    fn lookup_grace(&self) -> Duration {
        self.cfg.job.command_timeout.max(Duration::from_secs(30))
    }

    fn ledger_failed(&mut self, what: &str, e: &LedgerError) {
        let now = wall_now();
        match self.ledger_latch.failed(now) {
            OutageEdge::Started => warn!(
                "cannot write the state file ({what}): {}; nothing will be submitted until it is writable again",
                error_chain(e)
            ),
            _ => debug!("state file still failing ({what}): {}", error_chain(e)),
        }
    }

    fn ledger_ok(&mut self) {
        self.counts_stale = true;
        if let OutageEdge::Ended { lasted, failures } = self.ledger_latch.succeeded(wall_now()) {
            info!(
                "state file writable again after {} ({failures} failed writes)",
                human_ms(lasted)
            );
        }
    }

    /// Intents whose `sbatch` answer was lost (crash, timeout): find the job by its key, or clear the way for
    /// a fresh submission when every source says there is none.
    fn resolve_uncertain(&mut self, now: Millis) {
        let Ok(active) = self.ledger.active() else {
            return;
        };
        for g in active
            .into_iter()
            .filter(|g| g.state == GenState::Submitting && g.uncertain)
        {
            let path = self.cfg.watch.root.join(&g.dir);
            match self.sched.lookup(&g.key, &g.job_name, g.created_at) {
                Ok(Some(job)) => match self.ledger.record_submitted(g.id, &job, now) {
                    Ok(()) => {
                        self.ledger_ok();
                        // The scheduler did take the job: that ends a submission outage as well.
                        if let OutageEdge::Ended { lasted, failures } =
                            self.submit_latch.succeeded(now)
                        {
                            info!(
                                "submissions work again after {} ({failures} failed attempts)",
                                human_ms(lasted)
                            );
                        }
                        info!(dir = ?path, job = %job, "adopted job {job} for {}: it was submitted before the answer was recorded (key {})", show(&path), g.key);
                    }
                    Err(e) => self.ledger_failed("adopting a job", &e),
                },
                // An `sbatch` orphaned by a crash, or one the controller is still processing, can create its
                // job a little later: a "no" is only believed once the last attempt is well in the past.
                Ok(None) if now - g.updated_at < ms(self.lookup_grace()) => {
                    debug!(dir = ?path, "no job carries key {} yet; looking again after the grace period", g.key);
                }
                Ok(None) => match self.ledger.record_lookup_empty(g.id, now) {
                    Ok(()) => {
                        self.ledger_ok();
                        info!(dir = ?path, "no job carries key {} for {}: it will be submitted", g.key, show(&path));
                    }
                    Err(e) => self.ledger_failed("recording a lookup", &e),
                },
                Err(e) => {
                    if self.query_latch.failed(now) == OutageEdge::Started {
                        warn!(
                            "cannot look up submission keys ({e}); {} waits, nothing is resubmitted meanwhile",
                            show(&path)
                        );
                    }
                    // The scheduler is not answering: the other lookups would fail the same way.
                    break;
                }
            }
        }
    }

    /// One scheduler query for every job in flight; records each end and its effects.
    fn track(&mut self, now: Millis) {
        let active = match self.ledger.active() {
            Ok(a) => a,
            Err(e) => return self.ledger_failed("reading jobs in flight", &e),
        };
        let in_flight: Vec<Generation> = active
            .into_iter()
            .filter(|g| g.state == GenState::Submitted)
            .collect();
        if in_flight.is_empty() {
            return;
        }
        let ids: Vec<String> = in_flight.iter().filter_map(|g| g.job_id.clone()).collect();
        let reports = match self.sched.query(&ids) {
            Ok(r) => {
                if let OutageEdge::Ended { lasted, failures } = self.query_latch.succeeded(now) {
                    info!(
                        "job queries work again after {} ({failures} failed)",
                        human_ms(lasted)
                    );
                }
                r
            }
            Err(e) => {
                if self.query_latch.failed(now) == OutageEdge::Started {
                    warn!(
                        "cannot query job states: {e}; {} job(s) keep their last known state until the scheduler answers (none is marked failed for this)",
                        ids.len()
                    );
                }
                return;
            }
        };
        let policy = OutcomePolicy {
            delete_on_success: self.cfg.behavior.delete_on_success,
            max_retries: self.cfg.behavior.max_retries,
            retry_backoff: self.cfg.behavior.submit_backoff,
            retry_backoff_max: self.cfg.behavior.submit_backoff_max,
        };
        for g in in_flight {
            let Some(job) = g.job_id.as_deref() else {
                continue;
            };
            let Some(rep) = reports.get(job) else {
                continue;
            };
            let end = JobEnd {
                state: rep.state.clone(),
                exit_code: rep.exit_code.clone(),
            };
            let Some(plan) = engine::plan_outcome(&end, g.attempt, now, policy) else {
                continue;
            };
            let rec = EndRecord {
                state: plan.state,
                final_state: &end.state,
                exit_code: &end.exit_code,
                delete_pending: plan.delete_dir,
                failure_log_pending: plan.log_failure,
                retry_at: plan.retry_at,
            };
            let path = self.cfg.watch.root.join(&g.dir);
            match self.ledger.record_end(&g, &rec, now) {
                Ok(retry) => {
                    self.ledger_ok();
                    self.metrics.job_ended(plan.state, &end.state);
                    let what = match (plan.state, plan.delete_dir) {
                        (GenState::Completed, true) => "the directory will be deleted",
                        (GenState::Completed, false) => "the directory is kept",
                        _ => "recorded in the failure log",
                    };
                    if plan.state == GenState::Completed {
                        info!(dir = ?path, job = %job, state = %end.state, "job {job} for {} COMPLETED; {what}", show(&path));
                    } else {
                        warn!(dir = ?path, job = %job, state = %end.state, exit_code = %end.exit_code,
                        "job {job} for {} ended {} (exit code {}); {what}{}", show(&path), end.state, end.exit_code,
                        match (retry, plan.retry_at) {
                            (Some(_), Some(at)) => format!("; attempt {} follows in {}", g.attempt + 1, human_ms(at - now)),
                            _ => String::new(),
                        });
                    }
                }
                Err(e) => self.ledger_failed("recording a job's end", &e),
            }
        }
    }

    /// Deletes directories and appends failure-log lines that the ledger says are due.
    fn finish_effects(&mut self) {
        let due = match self.ledger.pending_effects() {
            Ok(d) => d,
            Err(e) => return self.ledger_failed("reading pending effects", &e),
        };
        for g in due {
            let now = wall_now();
            let path = self.cfg.watch.root.join(&g.dir);
            let job = g.job_id.clone().unwrap_or_default();
            if g.failure_log_pending {
                let rec = FailureRecord::new(&self.cfg.watch.root, &g, SystemTime::now());
                match outcome::append_failure(&self.cfg.behavior.failure_log, &rec) {
                    Ok(()) => {
                        if let Err(e) = self.ledger.record_failure_logged(g.id, now) {
                            self.ledger_failed("recording the failure-log line", &e);
                        }
                    }
                    Err(e) => {
                        warn!(dir = ?path, job = %job, "cannot append to the failure log {}: {e}; will try again", show(&self.cfg.behavior.failure_log))
                    }
                }
            }
            if g.delete_pending {
                let res = outcome::delete_dir(
                    &self.cfg.watch.root,
                    &g.dir,
                    g.dir_dev_ino,
                    g.ready,
                    &self.cfg.watch.signal_filename,
                );
                let (deleted, err) = match &res {
                    Ok(()) => {
                        info!(dir = ?path, job = %job, "deleted {} after job {job} COMPLETED", show(&path));
                        (true, None)
                    }
                    Err(outcome::KeepReason::Gone) => (false, None),
                    Err(reason) => {
                        warn!(dir = ?path, job = %job, "not deleting {} after job {job}: {reason}", show(&path));
                        (false, Some(format!("not deleted: {reason}")))
                    }
                };
                if let Err(e) = self
                    .ledger
                    .record_cleanup(g.id, deleted, err.as_deref(), now)
                {
                    self.ledger_failed("recording a deletion", &e);
                }
            }
        }
    }

    /// Lists the root, looks at the ready-file of every directory that is not handled yet, and commits an
    /// intent for each one that became stable.
    fn scan(&mut self, now: Millis) {
        let root = self.cfg.watch.root.clone();
        let names = match scan::list_subdirs(&root) {
            Ok(n) => {
                self.metrics.scanned(n.len(), now);
                if let OutageEdge::Ended { lasted, .. } = self.scan_latch.succeeded(now) {
                    info!(
                        "the root {} is readable again after {}",
                        show(&root),
                        human_ms(lasted)
                    );
                }
                n
            }
            Err(e) => {
                if self.scan_latch.failed(now) == OutageEdge::Started {
                    warn!(
                        "cannot list the root {}: {e} (file system unmounted?); nothing is forgotten, scanning again every poll",
                        show(&root)
                    );
                }
                return;
            }
        };
        let present: HashSet<&OsStr> = names.iter().map(OsString::as_os_str).collect();
        self.tracker.retain(|d| present.contains(d));
        self.told_locked.retain(|d| present.contains(d.as_os_str()));
        let policy = StabilityPolicy {
            checks: self.cfg.watch.stability_checks,
            interval: self.cfg.watch.stability_interval,
        };
        for name in &names {
            let path = root.join(name);
            // The ledger first: a directory in flight costs no file-system call at all, a finished one a
            // single lstat, and only new candidates get the lock probe.
            let latest = match self.ledger.latest_for_dir(name) {
                Ok(l) => l,
                Err(e) => return self.ledger_failed("reading a directory's record", &e),
            };
            if latest.as_ref().is_some_and(|g| g.state.is_active()) {
                self.tracker.forget(name);
                continue;
            }
            let identity = match scan::stat_ready_file(&root, name, &self.cfg.watch.signal_filename)
            {
                Ok(Some(id)) => id,
                Ok(None) => {
                    self.tracker.forget(name);
                    continue;
                }
                Err(e) => {
                    debug!(dir = ?path, "cannot look at the ready-file of {}: {e}", show(&path));
                    continue;
                }
            };
            match engine::generation_verdict(latest.as_ref().map(|g| (g.state, g.ready)), identity)
            {
                GenerationVerdict::InFlight | GenerationVerdict::Done => {
                    self.tracker.forget(name);
                    continue;
                }
                GenerationVerdict::New => {}
            }
            let lock = match scan::probe_lock(&path.join(&self.cfg.watch.signal_filename)) {
                Ok(l) => l,
                Err(e) => {
                    debug!(dir = ?path, "cannot probe the lock of the ready-file of {}: {e}", show(&path));
                    continue;
                }
            };
            let obs = ReadyObservation {
                dir: name.clone(),
                identity,
                lock,
            };
            match self.tracker.observe(&obs, now, policy) {
                Readiness::Settling { seen, changed } => {
                    debug!(dir = ?path, "ready-file of {} seen {seen}x{}", show(&path), if changed { " (changed since last look)" } else { "" });
                }
                Readiness::Locked => {
                    if self.told_locked.insert(name.clone()) {
                        info!(dir = ?path, "waiting: the ready-file of {} is locked by its writer", show(&path));
                    }
                }
                Readiness::Stable => {
                    self.tracker.forget(name);
                    self.told_locked.remove(name);
                    if let Some(prev) = &latest {
                        info!(dir = ?path, "the ready-file of {} was replaced since job {} ({}): a new generation", show(&path),
                            prev.job_id.as_deref().unwrap_or("-"), prev.state.as_str());
                    }
                    let job_name = engine::job_name(&self.cfg.job.job_name_prefix, name);
                    let dir_id = scan::dir_identity(&root, name);
                    match self.ledger.insert_intent(
                        &NewGeneration {
                            dir: name,
                            ready: identity,
                            dir_dev_ino: dir_id,
                            attempt: 1,
                            job_name: &job_name,
                            not_before: now,
                        },
                        now,
                    ) {
                        Ok(g) => {
                            self.ledger_ok();
                            debug!(dir = ?path, "{} is ready; intent {} committed", show(&path), g.key);
                        }
                        Err(e) => return self.ledger_failed("recording a submission intent", &e),
                    }
                }
            }
        }
    }

    /// Calls the scheduler for every committed intent that is due. Checks for a stop request between two
    /// submissions, never in the middle of one.
    fn submit_due(&mut self, events: &Receiver<Event>) -> Flow {
        let start = wall_now();
        let (due, later): (Vec<Generation>, Vec<Generation>) = match self.ledger.active() {
            Ok(a) => a,
            Err(e) => {
                self.ledger_failed("reading intents", &e);
                return Flow::Continue;
            }
        }
        .into_iter()
        .filter(|g| g.state == GenState::Submitting && !g.uncertain)
        .partition(|g| g.next_try_at <= start);
        // The loop wakes for the earliest intent that is not due yet (a back-off or a delayed retry).
        self.next_submit = later
            .iter()
            .map(|g| g.next_try_at)
            .min()
            .unwrap_or(Millis::MAX);
        if start < self.submit_hold_until {
            if !due.is_empty() {
                self.next_submit = self.next_submit.min(self.submit_hold_until);
            }
            return Flow::Continue;
        }
        for g in due {
            if let Ok(Event::Terminate) = events.try_recv() {
                return Flow::Stop;
            }
            let now = wall_now();
            let path = self.cfg.watch.root.join(&g.dir);
            if let Err(e) = self.ledger.mark_sbatch_started(g.id, now) {
                self.ledger_failed("recording a submission attempt", &e);
                return Flow::Continue;
            }
            let spec = JobSpec {
                dir_path: path.clone(),
                job_name: g.job_name.clone(),
                key: g.key.clone(),
            };
            match self.sched.submit(&spec) {
                Ok(job) => {
                    if let OutageEdge::Ended { lasted, failures } = self.submit_latch.succeeded(now)
                    {
                        info!(
                            "submissions work again after {} ({failures} failed attempts)",
                            human_ms(lasted)
                        );
                    }
                    match self.ledger.record_submitted(g.id, &job, wall_now()) {
                        Ok(()) => {
                            self.ledger_ok();
                            info!(dir = ?path, job = %job, "submitted job {job} for {} (attempt {})", show(&path), g.attempt);
                        }
                        // The job exists but is not recorded: the record stays uncertain and the key lookup
                        // adopts it later; never submitted twice.
                        Err(e) => self.ledger_failed("recording a job id", &e),
                    }
                }
                Err(err) => {
                    // Back off by the longer of this record's own failures and the ongoing outage's.
                    let tries = (g.submit_tries + 1).max(
                        u32::try_from(self.submit_latch.failures())
                            .unwrap_or(u32::MAX)
                            .saturating_add(1),
                    );
                    let delay = engine::backoff(
                        tries,
                        self.cfg.behavior.submit_backoff,
                        self.cfg.behavior.submit_backoff_max,
                    );
                    let certain = matches!(err, SubmitError::Refused(_));
                    let msg = err.to_string();
                    match self.submit_latch.failed(now) {
                        OutageEdge::Started if certain => warn!(dir = ?path,
                            "cannot submit {}: {msg}; it stays pending and is retried with back-off (next in {}); further failures are quiet until submissions work again",
                            show(&path), human_ms(ms(delay))),
                        OutageEdge::Started => warn!(dir = ?path,
                            "submission of {} has an unknown outcome: {msg}; its job is looked up by its key (squeue, sacct) before anything is resubmitted; further failures are quiet until submissions work again",
                            show(&path)),
                        _ => {
                            debug!(dir = ?path, "submission of {} failed again: {msg}", show(&path))
                        }
                    }
                    if let Err(e) =
                        self.ledger
                            .record_submit_failed(g.id, &msg, certain, now + ms(delay), now)
                    {
                        self.ledger_failed("recording a failed submission", &e);
                    }
                    // The scheduler is failing: stop this round; the next try (after the back-off) is a probe.
                    self.submit_hold_until = now + ms(delay);
                    self.next_submit = self.next_submit.min(self.submit_hold_until);
                    return Flow::Continue;
                }
            }
        }
        Flow::Continue
    }
}

/// Whether the loop goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep running.
    Continue,
    /// A stop was requested.
    Stop,
}

/// Creates the directory that receives job output when it is a fixed folder inside the root (the default
/// with `delete_on_success`); Slurm does not create it, and a missing one fails the job (`FAILED 0:53`).
fn prepare_output_dir(cfg: &Config) {
    let Some(out) = &cfg.job.output else { return };
    let full = cfg.watch.root.join(out);
    let Some(parent) = full.parent() else { return };
    if parent.to_string_lossy().contains('%') || !parent.starts_with(&cfg.watch.root) {
        return;
    }
    if let Err(e) = std::fs::create_dir_all(parent) {
        warn!(
            "cannot create the job output folder {}: {e}; jobs may fail to start",
            show(parent)
        );
    }
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn human_ms(m: Millis) -> String {
    humantime::format_duration(Duration::from_secs((m.max(0) as u64).div_ceil(1000))).to_string()
}
