//! The daemon loop: the one owner of state. It waits on one channel (signals) with a timeout, and each
//! cycle runs the steps in [`steps`] — observe, ask the engine, commit to the ledger, act — in this order:
//! resolve lost submissions → follow jobs → finish due effects → scan → submit. What each log line says lives
//! in [`say`].
//!
//! Built from its parts ([`Daemon::with_parts`]: config, a scheduler factory, a clock), so the whole loop
//! runs in-process in tests with a scripted scheduler and a manual clock. Must never: call `sbatch` without a
//! committed intent, declare a job failed because a query failed, hold the ledger busy across a child
//! process, or decide inline what the engine decides.

mod known;
mod say;
mod steps;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::config::{Config, SubmitRate};
use crate::engine::{
    Cadence, OutageLatch, RejectionLatch, Schedule, StabilityTracker, SubmitPace, TokenBucket,
};
use crate::fsx::{Root, RootLinks};
use crate::ledger::{Counts, Ledger, LedgerError};
use crate::metrics::{Metrics, MetricsError};
use crate::notify::{self, Notifier};
use crate::scheduler::{self, Scheduler};
use crate::time::{Clock, Millis, SystemClock, ms};

/// Something that wakes the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// SIGTERM / SIGINT: finish the current step and exit.
    Terminate,
    /// SIGHUP: reload the config.
    Reload,
}

/// What the loop does after a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep running.
    Continue,
    /// A reload was requested in the middle of a step: reload now, then go on.
    Reload,
    /// A stop was requested.
    Stop,
}

/// Builds the scheduler for a config: at start and after every reload.
pub type SchedulerFactory = Box<dyn Fn(&Config) -> Box<dyn Scheduler> + Send>;

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
    /// The root could not be opened (it was checked when the config was loaded: it changed since).
    #[error(
        "cannot open the root `{path}`; check that it is a mounted, real directory (not a symlink)"
    )]
    Root {
        /// `watch.root`.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Takes the single-instance lock beside the state file; held for as long as the returned file lives.
pub fn lock_state(state_file: &Path) -> Result<File, StartError> {
    let mut name = state_file
        .file_name()
        .map(OsString::from)
        .unwrap_or_default();
    name.push(".lock");
    let path = state_file.with_file_name(name);
    let lock_err = |source| StartError::Lock {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(lock_err)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(lock_err)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::AlreadyRunning {
            state: state_file.to_path_buf(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::Lock { path, source }),
    }
}

/// Ready-files being watched for stability (memory only: after a restart stability is observed again).
#[derive(Debug, Default)]
struct Settling {
    /// Consecutive identical looks per directory.
    tracker: StabilityTracker,
    /// Directories already reported as waiting for a lock (said once, not every scan).
    told_locked: HashSet<OsString>,
    /// Directories already reported as another one renamed (said once, not every scan).
    told_renamed: HashSet<OsString>,
}

impl Settling {
    /// Forgets directories that are no longer in the root (`names` is sorted: a binary search each, no
    /// set of 100,000 names built per scan).
    fn keep_only(&mut self, names: &[OsString]) {
        let present = |d: &OsStr| names.binary_search_by(|n| n.as_os_str().cmp(d)).is_ok();
        self.tracker.retain(present);
        self.told_locked.retain(|d| present(d));
        self.told_renamed.retain(|d| present(d));
    }

    /// Forgets one directory (submitted, in flight, done, or its ready-file removed).
    fn forget(&mut self, name: &OsStr) {
        self.tracker.forget(name);
        self.told_locked.remove(name);
    }
}

/// Whether each dependency is failing, so an outage is said once when it starts and once when it ends.
#[derive(Debug, Default)]
struct Health {
    /// Submissions (slurmctld down, sbatch failing).
    submit: OutageLatch,
    /// Submissions refused for what the config asks (invalid account, partition, gres, …): not an outage,
    /// said again every `behavior.submit_backoff_max_sec` until a submission gets through.
    rejected: RejectionLatch,
    /// Queries and key lookups (slurmdbd down, sacct failing).
    query: OutageLatch,
    /// Ledger writes (disk full, read-only).
    ledger: OutageLatch,
    /// Listing the root (file system unmounted).
    scan: OutageLatch,
    /// The root's path no longer names the directory held open (unmounted, mounted over, replaced by a
    /// symlink or another directory): nothing is scanned, submitted or deleted meanwhile.
    root: OutageLatch,
}

/// The ledger's counts, for metrics and systemd's `STATUS=`: counting walks the whole ledger, so it is
/// re-read only after this daemon wrote, or once per poll interval (which picks up the CLI's changes).
#[derive(Debug)]
struct CachedCounts {
    /// As last read.
    counts: Option<Counts>,
    /// This daemon wrote to the ledger since.
    stale: bool,
    /// When (monotonic) to read them again anyway.
    due: Millis,
}

impl Default for CachedCounts {
    fn default() -> Self {
        CachedCounts {
            counts: None,
            stale: true,
            due: 0,
        }
    }
}

/// What the loop keeps in memory so that a cycle costs what changed, not what the ledger holds.
#[derive(Debug, Default)]
struct Memory {
    /// The latest record of every directory in the root, and when a finished one is looked at again.
    known: known::Known,
    /// Pending effects may exist (at start, after a job's end with effects, after another connection
    /// wrote, or while one keeps failing): only then are they read.
    effects_due: bool,
    /// When a scheduler source last showed each job in flight (record id → wall ms). The ledger's
    /// `seen_at` is written only when it is older than [`SEEN_WRITE_GAP`]: one write per job a minute,
    /// not per poll.
    seen: HashMap<i64, Millis>,
}

/// How stale the ledger's `seen_at` of a job in flight may be: the lost-job rule works from memory, so this
/// only matters after a restart (a job may then be declared lost this much early, against
/// `job.lost_after_sec` of an hour by default).
const SEEN_WRITE_GAP: Millis = 60_000;

/// How fast submissions go: the configured width lowered while the controller is slow or limits, and the
/// optional token bucket of `job.submit_rate`.
#[derive(Debug)]
struct Pacing {
    /// `sbatch` calls at once.
    pace: SubmitPace,
    /// `job.submit_rate`, if set.
    bucket: Option<TokenBucket>,
    /// The rate the bucket was made for.
    rate: Option<SubmitRate>,
}

impl Pacing {
    fn new(cfg: &Config, now: Millis) -> Pacing {
        let rate = cfg.job.submit_rate;
        Pacing {
            pace: SubmitPace::new(cfg.job.submit_concurrency),
            bucket: rate.map(|r| TokenBucket::new(r.burst, r.per_sec, now)),
            rate,
        }
    }

    /// After a reload: a new width at once; a new bucket only for a new rate (a reload must not hand
    /// out a fresh burst).
    fn reconfigure(&mut self, cfg: &Config, now: Millis) {
        self.pace.set_max(cfg.job.submit_concurrency);
        if cfg.job.submit_rate != self.rate {
            *self = Pacing {
                pace: self.pace.clone(),
                ..Pacing::new(cfg, now)
            };
        }
    }
}

/// Who watches from the side: Prometheus metrics and systemd.
#[derive(Debug)]
struct Observers {
    /// Prometheus metrics (they also wrap the scheduler to time its calls).
    metrics: Metrics,
    /// systemd notifications; a no-op outside systemd.
    notifier: Notifier,
}

/// The running daemon.
pub struct Daemon {
    /// The config in force.
    cfg: Config,
    /// The ledger (single writer: this daemon; the CLI may add retries and forgets).
    ledger: Ledger,
    /// The watched root, opened once: every scan and deletion goes through its descriptor, after checking
    /// that the configured path still names it.
    root: Root,
    /// The scheduler in use, wrapped so its calls are timed and counted.
    sched: Box<dyn Scheduler>,
    /// Builds the scheduler for a config (again on every reload).
    make_sched: SchedulerFactory,
    /// Where time comes from: wall clock for records, monotonic for schedules.
    clock: Box<dyn Clock>,
    /// When the loop scans, queries, may submit, and wakes.
    schedule: Schedule,
    /// Ready-files being watched for stability.
    settling: Settling,
    /// Outage latches of the dependencies.
    health: Health,
    /// The ledger's counts as last read.
    counts: CachedCounts,
    /// Metrics and systemd notifications.
    observers: Observers,
    /// Records whose job id showed a row of another job (a reused id): said once per job, not every poll.
    told_stale: HashSet<i64>,
    /// The in-memory view of the ledger and what is due.
    memory: Memory,
    /// The pace of submissions.
    pacing: Pacing,
    /// The single-instance lock; released when the daemon is dropped.
    _lock: File,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("config", &self.cfg.source)
            .field("scheduler", &self.sched.name())
            .field("schedule", &self.schedule)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl Daemon {
    /// Takes the lock, opens the ledger and prepares the real scheduler, clock and systemd notifier.
    /// Nothing runs yet.
    pub fn start(cfg: Config) -> Result<Daemon, StartError> {
        Daemon::assemble(
            cfg,
            Box::new(scheduler::from_config),
            Box::new(SystemClock::default()),
            Notifier::from_env(),
        )
    }

    /// Like [`Daemon::start`], with the scheduler and the clock given (tests: a scripted scheduler and a
    /// manual clock) and no systemd notifications.
    pub fn with_parts(
        cfg: Config,
        make_sched: SchedulerFactory,
        clock: Box<dyn Clock>,
    ) -> Result<Daemon, StartError> {
        Daemon::assemble(cfg, make_sched, clock, Notifier::default())
    }

    fn assemble(
        cfg: Config,
        make_sched: SchedulerFactory,
        clock: Box<dyn Clock>,
        notifier: Notifier,
    ) -> Result<Daemon, StartError> {
        let lock = lock_state(&cfg.behavior.state_file)?;
        let links = if cfg.watch.allow_unsafe_root {
            RootLinks::Follow
        } else {
            RootLinks::Refuse
        };
        let root = Root::open(&cfg.watch.root, links).map_err(|source| StartError::Root {
            path: cfg.watch.root.clone(),
            source,
        })?;
        let ledger = Ledger::open(&cfg.behavior.state_file)?;
        let metrics = Metrics::start(&cfg.metrics)?;
        let sched = metrics.instrument(make_sched(&cfg), &notifier);
        prepare_output_dir(&cfg);
        let pacing = Pacing::new(&cfg, clock.mono());
        Ok(Daemon {
            cfg,
            ledger,
            root,
            sched,
            make_sched,
            clock,
            schedule: Schedule::default(),
            settling: Settling::default(),
            health: Health::default(),
            counts: CachedCounts::default(),
            observers: Observers { metrics, notifier },
            told_stale: HashSet::new(),
            memory: Memory {
                effects_due: true,
                ..Memory::default()
            },
            pacing,
            _lock: lock,
        })
    }

    /// Runs cycles until a Terminate event arrives.
    pub fn run(&mut self, events: &Receiver<Event>) {
        say::started(&self.cfg, self.sched.name());
        say::environment_withheld(&crate::process::withheld_slurm_names(std::env::vars_os()));
        loop {
            match self.cycle(events) {
                Flow::Stop => break,
                Flow::Reload => {
                    self.reload();
                    continue;
                }
                Flow::Continue => {}
            }
            let now = self.clock.mono();
            let wake = self.schedule.wake(now, self.clock.wall());
            let wait = Duration::from_millis(u64::try_from(wake - now).unwrap_or(0));
            match events.recv_timeout(self.observers.notifier.cap_wait(wait)) {
                Ok(Event::Terminate) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(Event::Reload) => self.reload(),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        self.observers.notifier.stopping();
        say::stopped(&self.cfg.behavior.state_file);
    }

    /// Re-reads the config file; an invalid one is refused and the old one stays. `watch.root` and
    /// `behavior.state_file` take a restart.
    fn reload(&mut self) {
        self.observers.notifier.reloading();
        match Config::load(&self.cfg.source) {
            Ok(mut new) => {
                if new.behavior.state_file != self.cfg.behavior.state_file {
                    say::reload_kept(
                        "behavior.state_file",
                        &self.cfg.behavior.state_file,
                        &new.behavior.state_file,
                        "",
                    );
                }
                if new.watch.root != self.cfg.watch.root {
                    say::reload_kept(
                        "watch.root",
                        &self.cfg.watch.root,
                        &new.watch.root,
                        " (jobs in flight belong to the old root)",
                    );
                }
                new.behavior.state_file = self.cfg.behavior.state_file.clone();
                new.watch.root = self.cfg.watch.root.clone();
                self.cfg = new;
                self.sched = self
                    .observers
                    .metrics
                    .instrument((self.make_sched)(&self.cfg), &self.observers.notifier);
                self.observers.metrics.reload(&self.cfg.metrics);
                prepare_output_dir(&self.cfg);
                self.pacing.reconfigure(&self.cfg, self.clock.mono());
                self.schedule.rescan();
                say::reloaded(&self.cfg.source);
                self.retry_refused();
            }
            Err(e) => say::reload_refused(&e),
        }
        self.observers.notifier.reloaded();
    }

    /// After a reload while sbatch refused what the config asked: the new config may fix it, so the
    /// refused intents are tried at once instead of after their back-off (up to
    /// `behavior.submit_backoff_max_sec`). An outage is not fixed by a reload and keeps its back-off.
    fn retry_refused(&mut self) {
        let Some(reason) = self.health.rejected.current() else {
            return;
        };
        match self.ledger.make_refused_due(self.clock.wall()) {
            Ok(n) => {
                self.schedule.hold(self.clock.mono(), Duration::ZERO);
                say::refused_retried(reason, n);
            }
            Err(e) => self.ledger_failed("retrying refused submissions", &e),
        }
    }

    /// One cycle: every step once, in order. Public for tests and for `run --once`.
    pub fn cycle(&mut self, events: &Receiver<Event>) -> Flow {
        let now = self.clock.mono();
        self.sync_known(now);
        let mut agenda = self.read_agenda();
        if self.schedule.track_due(now) {
            self.resolve(&mut agenda);
            self.track(&mut agenda);
            self.schedule.tracked(now, self.cadence());
        }
        self.finish_effects();
        if self.schedule.scan_due(now) {
            self.scan(&mut agenda, now);
            let settling = self.settling.tracker.is_settling();
            self.schedule.scanned(now, settling, self.cadence());
        }
        let flow = self.submit(agenda, events);
        self.observe();
        flow
    }

    fn cadence(&self) -> Cadence {
        Cadence {
            poll: self.cfg.watch.poll_interval,
            stability: self.cfg.watch.stability_interval,
        }
    }

    /// End of a cycle: publishes the counts (metrics, systemd `STATUS=`; the first time also `READY=1`)
    /// and pets the watchdog. The ledger is only counted when someone listens.
    fn observe(&mut self) {
        let o = &mut self.observers;
        let wanted = o.metrics.is_enabled() || o.notifier.is_enabled();
        let now = self.clock.mono();
        if wanted && (self.counts.stale || now >= self.counts.due) {
            if let Ok(c) = self.ledger.counts() {
                self.counts.counts = Some(c);
            }
            self.counts.stale = false;
            self.counts.due = now + ms(self.cfg.watch.poll_interval);
        }
        let counts = self.counts.counts.as_ref();
        let settling = self.settling.tracker.len() as u64;
        o.metrics.publish(counts, settling);
        let refused = self.health.rejected.current();
        let status = counts.map(|c| {
            let line = notify::status_line(&self.cfg.watch.root, c.submitting + settling, c);
            notify::with_refusal(line, refused)
        });
        o.notifier.cycle_done(status.as_deref());
    }
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
        say::output_dir_failed(parent, &e);
    }
}
