//! The daemon loop: the one owner of state. It waits on one channel (signals) with a timeout, and each
//! cycle runs the steps in [`steps`] — observe, ask the engine, commit to the ledger, act — in this order:
//! resolve lost submissions → follow jobs → finish due effects → scan → submit. What each log line says lives
//! in [`say`].
//!
//! Built from its parts ([`Daemon::with_parts`]: config, a scheduler factory, a clock), so the whole loop
//! runs in-process in tests with a scripted scheduler and a manual clock. Must never: call `sbatch` without a
//! committed intent, declare a job failed because a query failed, hold the ledger busy across a child
//! process, or decide inline what the engine decides.

mod arrays;
mod dispatch;
mod flight;
mod known;
mod lead;
mod observers;
mod publish;
mod say;
mod steps;
mod tell;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::config::{Config, SubmitRate};
use crate::deliver::EmailTransport;
use crate::engine::{
    Cadence, NotReady, OutageLatch, RejectionLatch, Schedule, StabilityTracker, SubmitPace,
    TokenBucket,
};
use crate::fsx::{Root, RootLinks};
use crate::ledger::{Counts, Ledger, LedgerAt, LedgerError};
use crate::logging::show;
use crate::metrics::{Metrics, MetricsError};
use crate::notify::Notifier;
use crate::observe::Observer;
use crate::output_dir::{self, Place};
use crate::scheduler::{self, Scheduler};
use crate::state_paths::StatePaths;
use crate::time::{Clock, Millis, SystemClock};
use observers::{Observers, Published};

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
    /// This daemon is no longer the active one on a shared ledger: stop acting, wait as standby.
    Deposed,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// A stop was asked for (a signal, the end of the events).
    Stopped,
    /// Another daemon took over the shared ledger.
    Deposed,
}

pub use crate::ledger::lease::LeaseInfo;
pub use lead::{holder_name, standby};

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
    /// Another daemon holds the shared ledger's lease: this one waits as standby.
    #[error(
        "the ledger `{ledger}` is held by {} (epoch {}, since {} UTC): this daemon is the standby",
        .lease.holder, .lease.epoch, .lease.since
    )]
    Standby {
        /// The ledger.
        ledger: PathBuf,
        /// The lease as the server shows it.
        lease: LeaseInfo,
    },
    /// The ledger is missing or empty, while an earlier one left its traces: a new one would run finished
    /// directories again.
    #[error(
        "the ledger `{path}` is {found}, but an earlier ledger served this root: {traces}. A new, empty ledger \
         would submit every ready directory again. Restore the ledger from a backup; or rebuild it from Slurm's \
         accounting with `dirwatcher recover --from-slurm --config {config}`; or, to process every ready \
         directory as new, start once with `dirwatcher run --catch-up --config {config}`",
        traces = traces.join("; ")
    )]
    LedgerLost {
        /// The state file.
        path: PathBuf,
        /// "missing", "empty (0 bytes)".
        found: &'static str,
        /// What shows that a ledger existed, in words.
        traces: Vec<String>,
        /// The config file, for the commands to run.
        config: PathBuf,
    },
    /// Another ledger than the one this state directory last used is at the state file.
    #[error(
        "the ledger `{path}` (id {found}) is not the one the daemon here last used (id {last}, named in `{lock}`): \
         it was replaced, perhaps by an older copy or another site's ledger, and its records may not be this \
         root's; put the right ledger back, or, if this one is right (a restored backup of another host), \
         remove `{lock}` and start again"
    )]
    LedgerReplaced {
        /// The state file.
        path: PathBuf,
        /// The id of the ledger found.
        found: String,
        /// The id the lock file names.
        last: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// A new ledger cannot tell whether this root's directories ran before: accounting does not answer.
    #[error(
        "the ledger `{path}` is new, and Slurm's accounting cannot say whether this root's directories ran \
         before ({error}); dirwatcher starts once accounting answers (`sacct`, or slurmrestd with `executor: \
         slurmrest`; or start with `--catch-up` to process every ready directory as new)"
    )]
    AccountingUnknown {
        /// The state file.
        path: PathBuf,
        /// What accounting (sacct or slurmrestd) said.
        error: String,
    },
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

pub use crate::ledger::identity::LOCK_MODE;

/// Takes the single-instance lock beside the state file; held for as long as the returned file lives.
pub fn lock_state(paths: &StatePaths) -> Result<File, StartError> {
    use crate::ledger::identity::LockFileError;
    crate::ledger::identity::take_lock_file(paths).map_err(|e| match e {
        LockFileError::Held { lock } => StartError::AlreadyRunning {
            state: paths.ledger.clone(),
            lock,
        },
        LockFileError::Io { path, source } => StartError::Lock { path, source },
    })
}

/// How the daemon starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// `run --catch-up`: a new ledger over a root an earlier ledger served processes every ready directory
    /// as new (without it, that start is refused).
    pub catch_up: bool,
    /// Ask Slurm's accounting whether a new ledger's root was served before (the real start with the Slurm
    /// executor; in-process tests have no cluster).
    pub ask_accounting: bool,
}

/// Before a new ledger is created (nothing, or 0 bytes, at the state file): looks for traces of an earlier
/// one — beside the state file, in the job output folder, and (Slurm) in accounting. Any trace refuses the
/// start, unless `--catch-up` asked for it; then the traces are returned, to be said. `Ok(None)`: an
/// existing ledger, or a new one over a root that is new.
fn fresh_ledger_gate(
    cfg: &Config,
    paths: &StatePaths,
    opts: &StartOptions,
    root: &Root,
    jobs_run: scheduler::JobsRun,
) -> Result<Option<Vec<String>>, StartError> {
    let at = LedgerAt::of(&cfg.behavior);
    let path = &at.name();
    let Some(found) = at.fresh()? else {
        return Ok(None);
    };
    let output = match output_dir::place(cfg) {
        Place::Checked { root, rel } => Some(root.join(rel)),
        _ => None,
    };
    let mut traces = crate::ledger::identity::traces_on_disk(paths, output.as_deref());
    // Job arrays' maps (`job.array_max`): their tasks' jobs carry the array's name, not the directory's,
    // so accounting below does not tie them to directories; their maps in the root do.
    let maps = cfg.watch.root.join(scheduler::array::MAP_FOLDER);
    let n = crate::ledger::identity::files_in_own_folder(&maps);
    if n > 0 {
        traces.push(format!("{n} job array map(s) in `{}`", maps.display()));
    }
    if traces.is_empty() && opts.ask_accounting && jobs_run == scheduler::JobsRun::OnCluster {
        let names = crate::scan::list_subdirs(root).unwrap_or_default();
        match crate::recover::first_trace(cfg, &names) {
            Ok(Some(t)) => traces.push(t),
            Ok(None) => {}
            Err(error) if !opts.catch_up => {
                return Err(StartError::AccountingUnknown {
                    path: path.clone(),
                    error,
                });
            }
            Err(_) => {}
        }
    }
    if traces.is_empty() {
        return Ok(None);
    }
    if opts.catch_up {
        return Ok(Some(traces));
    }
    Err(StartError::LedgerLost {
        path: path.clone(),
        found,
        traces,
        config: cfg.source.clone(),
    })
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
    /// Directories whose ready-file cannot be looked at (permissions), with what failed: said once, and
    /// once when it works again; `status` shows them (through the snapshot).
    unreadable: BTreeMap<OsString, String>,
    /// Directories a readiness rule holds back for more than a missing marker (a failed status file,
    /// transfer temporaries, too many entries): said once per reason; `status` shows them.
    held: BTreeMap<OsString, NotReady>,
    /// Directories with transfer temporaries unchanged for `watch.stale_temporary_sec` (said once, as a
    /// warning; counted by `dirwatcher_stale_temporaries`).
    told_stale: HashSet<OsString>,
}

impl Settling {
    /// Forgets directories that are no longer in the root (`names` is sorted: a binary search each, no
    /// set of 100,000 names built per scan).
    fn keep_only(&mut self, names: &[OsString]) {
        if self.tracker.is_settling()
            || !self.told_locked.is_empty()
            || !self.told_renamed.is_empty()
            || !self.unreadable.is_empty()
            || !self.held.is_empty()
            || !self.told_stale.is_empty()
        {
            self.keep_only_present(names);
        }
    }

    fn keep_only_present(&mut self, names: &[OsString]) {
        let present: HashSet<&OsStr> = names.iter().map(OsString::as_os_str).collect();
        self.tracker.retain(|d| present.contains(d));
        self.told_locked.retain(|d| present.contains(d.as_os_str()));
        self.told_renamed
            .retain(|d| present.contains(d.as_os_str()));
        self.unreadable
            .retain(|d, _| present.contains(d.as_os_str()));
        self.held.retain(|d, _| present.contains(d.as_os_str()));
        self.told_stale.retain(|d| present.contains(d.as_os_str()));
    }

    /// Forgets one directory (submitted, in flight, done, or its ready-file removed).
    fn forget(&mut self, name: &OsStr) {
        self.tracker.forget(name);
        self.told_locked.remove(name);
    }
}

/// Waits this process times itself on the monotonic clock, so that no wall-clock step moves them (memory
/// only: after a restart the ledger's wall times take over, capped at the longest back-off).
#[derive(Debug, Default)]
struct Waits {
    /// Back-offs this process set (a failed `sbatch`, a retry after a failed job): record id → monotonic
    /// time at which the intent is due.
    held: HashMap<i64, Millis>,
    /// Lost `sbatch` answers: record id → since when (monotonic) this process has known the answer was
    /// lost (the `sbatch` ended, or the first lookup after a restart).
    lost: HashMap<i64, Millis>,
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
    /// The ledger's path no longer names the file held (removed, replaced, its directory gone): nothing is
    /// done until a restart.
    ledger_file: OutageLatch,
    /// Listing the root (file system unmounted).
    scan: OutageLatch,
    /// The root's path no longer names the directory held open (unmounted, mounted over, replaced by a
    /// symlink or another directory): nothing is scanned, submitted or deleted meanwhile.
    root: OutageLatch,
    /// The job output folder (missing, someone else's, a symlink): no submissions meanwhile.
    output: OutageLatch,
    /// Appending to the failure log (disk full, read-only).
    failure_log: OutageLatch,
}

/// Telling people: how e-mail leaves (resolved at start and on reload) and whether each delivery target is
/// failing, so an outage of a mail server or webhook is said once when it starts and once when it ends.
#[derive(Debug)]
struct Telling {
    /// `sendmail`, SMTP, or nothing.
    email: EmailTransport,
    /// One latch per channel and target (`webhook https://hooks.example.org`).
    outages: HashMap<String, OutageLatch>,
    /// The deliveries beside the loop.
    dispatch: dispatch::Dispatch,
    /// When delivered notices are pruned next (monotonic).
    next_prune: Millis,
    /// The web application's active rows, read once at start beside the loop (`db:`).
    db_sync: Option<crossbeam_channel::Receiver<crate::bridge::ActiveRead>>,
}

impl Telling {
    fn new(cfg: &Config, dispatch: dispatch::Dispatch) -> Telling {
        Telling {
            email: EmailTransport::resolve(&cfg.notify),
            outages: HashMap::new(),
            dispatch,
            next_prune: 0,
            db_sync: None,
        }
    }
}

/// The ledger's counts, for metrics and systemd's `STATUS=`: counting walks the whole ledger, so it is
/// re-read only after this daemon wrote, or once per poll interval (which picks up the CLI's changes).
#[derive(Debug)]
struct CachedCounts {
    /// As last read.
    counts: Option<Counts>,
    /// Notices waiting in the outbox, as last read.
    notices_waiting: Option<u64>,
    /// This daemon wrote to the ledger since.
    stale: bool,
    /// When (monotonic) to read them again anyway.
    due: Millis,
}

impl Default for CachedCounts {
    fn default() -> Self {
        CachedCounts {
            counts: None,
            notices_waiting: None,
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
    /// The active records: intents and jobs in flight.
    flight: flight::Flight,
    /// The root's last listing, in reused buffers.
    listing: crate::scan::Lister,
    /// When (monotonic) the allocator last gave freed pages back (see [`Daemon::give_back_memory`]).
    trimmed_at: Option<Millis>,
    /// The active records must be read again (at start, after another connection wrote, after a failed
    /// ledger call): until they are, nothing is submitted or followed.
    flight_stale: bool,
    /// Pending effects may exist (at start, after a job's end with effects, after another connection
    /// wrote, or while one keeps failing): only then are they read.
    effects_due: bool,
    /// A deletion carried out a slice per cycle (record id, the walk): the ledger's `delete_pending`
    /// stays set until the directory is gone, so a stop in between leaves it to the next start.
    deleting: Option<(i64, crate::fsx::Removal)>,
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

/// The running daemon.
pub struct Daemon {
    /// The config in force.
    cfg: Config,
    /// The names beside the state file (which a reload cannot change).
    paths: StatePaths,
    /// The ledger (single writer: this daemon; the CLI may add retries and forgets).
    ledger: Ledger,
    /// The watched root, opened once: every scan and deletion goes through its descriptor, after checking
    /// that the configured path still names it.
    root: Root,
    /// The scheduler in use (the daemon times its calls and tells the observers, see `observers`).
    sched: Box<dyn Scheduler>,
    /// Builds the scheduler for a config (again on every reload).
    make_sched: SchedulerFactory,
    /// Where time comes from: wall clock for records, monotonic for schedules.
    clock: Box<dyn Clock>,
    /// When the loop scans, queries, may submit, and wakes.
    schedule: Schedule,
    /// Ready-files being watched for stability.
    settling: Settling,
    /// The root's mount answers `flock` across nodes (false on Lustre `localflock`, NFS `nolock` or
    /// `local_lock=all|flock`: the lock probe then says "cannot check", never a false "free").
    flock_works: bool,
    /// Outage latches of the dependencies.
    health: Health,
    /// Back-offs and lost answers timed on the monotonic clock.
    waits: Waits,
    /// The ledger's counts as last read.
    counts: CachedCounts,
    /// Who watches from the side: metrics, systemd notifications, the snapshot.
    observers: Observers,
    /// Notices: e-mail transport and delivery outages.
    telling: Telling,
    /// Records whose job id showed a row of another job (a reused id): said once per job, not every poll.
    told_stale: HashSet<i64>,
    /// The in-memory view of the ledger and what is due.
    memory: Memory,
    /// The pace of submissions.
    pacing: Pacing,
    /// The lease held on a shared ledger (`None`: an SQLite ledger, its file lock is enough).
    lead: Option<lead::Lead>,
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
    pub fn start(cfg: Config, opts: StartOptions) -> Result<Daemon, StartError> {
        // First, before anything is created: the mask applies to every file and folder of the daemon, its
        // jobs' output (Slurm passes it on as SLURM_UMASK) and the local jobs. Only here, not in
        // `with_parts`: the mask is the process's, and tests run many daemons in one process.
        // SAFETY: umask has no preconditions and cannot fail.
        unsafe { libc::umask(cfg.behavior.umask as libc::mode_t) };
        Daemon::assemble(
            cfg,
            Box::new(scheduler::from_config),
            Box::new(SystemClock::default()),
            Notifier::from_env(),
            opts,
            dispatch::Dispatch::start(),
        )
    }

    /// Like [`Daemon::start`], with the scheduler and the clock given (tests: a scripted scheduler and a
    /// manual clock) and no systemd notifications.
    pub fn with_parts(
        cfg: Config,
        make_sched: SchedulerFactory,
        clock: Box<dyn Clock>,
    ) -> Result<Daemon, StartError> {
        Daemon::assemble(
            cfg,
            make_sched,
            clock,
            Notifier::default(),
            StartOptions::default(),
            dispatch::Dispatch::inline(),
        )
    }

    fn assemble(
        cfg: Config,
        make_sched: SchedulerFactory,
        clock: Box<dyn Clock>,
        notifier: Notifier,
        opts: StartOptions,
        dispatch: dispatch::Dispatch,
    ) -> Result<Daemon, StartError> {
        let paths = StatePaths::of(&cfg.behavior.state_file);
        let mut lock = lock_state(&paths)?;
        let links = if cfg.watch.allow_unsafe_root {
            RootLinks::Follow
        } else {
            RootLinks::Refuse
        };
        let root = Root::open(&cfg.watch.root, links).map_err(|source| StartError::Root {
            path: cfg.watch.root.clone(),
            source,
        })?;
        let sched = make_sched(&cfg);
        let fresh = fresh_ledger_gate(&cfg, &paths, &opts, &root, sched.jobs_run())?;
        let last_used = crate::ledger::identity::ledger_named_by_lock(&paths.lock);
        let mut ledger = Ledger::open_exclusive_at(&LedgerAt::of(&cfg.behavior), &cfg.watch.root)?;
        let lead = Daemon::lead(&cfg, &mut ledger)?;
        if let Some(last) = last_used.filter(|l| l != ledger.id() && fresh.is_none()) {
            return Err(StartError::LedgerReplaced {
                path: ledger.path().to_path_buf(),
                found: ledger.id().to_string(),
                last,
                lock: paths.lock.clone(),
            });
        }
        if let Err(e) = crate::ledger::identity::name_ledger_in_lock(&mut lock, ledger.id()) {
            say::config_warning(&format!(
                "cannot write the ledger's id into the lock file `{}`: {e}",
                paths.lock.display()
            ));
        }
        if let Some(traces) = fresh {
            say::caught_up(&cfg.behavior.state_file, &traces);
        }
        let mut observers = Observers {
            metrics: Metrics::start(&cfg.metrics, cfg.behavior.instance.as_ref())?,
            notifier,
            snapshot: Published::default(),
            more: Vec::new(),
        };
        observers.config_taken(true, clock.wall());
        if let Some(l) = &lead {
            observers.leading(l.held.epoch);
        }
        let telling = Telling::new(&cfg, dispatch);
        observers.snapshot.started_at = clock.wall();
        let pacing = Pacing::new(&cfg, clock.mono());
        let cfg_for_mount = cfg.clone();
        Ok(Daemon {
            cfg,
            paths,
            ledger,
            root,
            sched,
            make_sched,
            clock,
            schedule: Schedule::default(),
            settling: Settling::default(),
            flock_works: crate::scan::mount_warnings(&cfg_for_mount).1,
            health: Health::default(),
            waits: Waits::default(),
            counts: CachedCounts::default(),
            observers,
            told_stale: HashSet::new(),
            telling,
            memory: Memory {
                effects_due: true,
                flight_stale: true,
                ..Memory::default()
            },
            pacing,
            lead,
            _lock: lock,
        })
    }

    /// On a shared ledger: takes the lease, or says who holds it ([`StartError::Standby`]).
    fn lead(cfg: &Config, ledger: &mut Ledger) -> Result<Option<lead::Lead>, StartError> {
        if !ledger.is_shared() {
            return Ok(None);
        }
        let holder = holder_name(cfg.behavior.instance.as_ref().map(|n| n.as_str()));
        let claimed = std::time::Instant::now();
        match ledger.claim_lease(&holder, cfg.behavior.lease)? {
            Some(held) => {
                say::leading(ledger.path(), &held);
                Ok(Some(lead::Lead::start(
                    &LedgerAt::of(&cfg.behavior),
                    held,
                    cfg.behavior.lease,
                    claimed,
                )))
            }
            None => Err(StartError::Standby {
                ledger: ledger.path().to_path_buf(),
                lease: ledger.lease_info()?.unwrap_or(LeaseInfo {
                    holder: String::new(),
                    epoch: 0,
                    since: String::new(),
                    left_ms: 0,
                }),
            }),
        }
    }

    /// Runs cycles until a Terminate event arrives, or another daemon takes the shared ledger over.
    pub fn run(&mut self, events: &Receiver<Event>) -> Ended {
        say::started(&self.cfg, self.sched.name());
        say::environment_withheld(&crate::process::withheld_slurm_names(std::env::vars_os()));
        for w in output_dir::warnings(&self.cfg) {
            say::config_warning(&w);
        }
        for w in crate::scan::mount_warnings(&self.cfg).0 {
            say::config_warning(&w);
        }
        if self.lead.is_some() && self.sched.jobs_run() == scheduler::JobsRun::OnThisHost {
            say::config_warning(
                "the ledger is shared (`behavior.ledger`), but `job.executor` is `local`: a daemon on another \
                 login node that takes over cannot follow this node's local jobs (they end as lost); use \
                 `executor: slurm` for two login nodes",
            );
        }
        // Said now rather than at the first submission: an operator starting the daemon sees it at once.
        self.output_ready();
        say::telling(&self.cfg, &self.telling.email);
        self.start_db_sync();
        let ended = loop {
            match self.cycle(events) {
                Flow::Stop => break Ended::Stopped,
                Flow::Deposed => break Ended::Deposed,
                Flow::Reload => {
                    self.reload();
                    continue;
                }
                Flow::Continue => {}
            }
            let now = self.clock.mono();
            let wake = self.schedule.wake(now, self.clock.wall());
            let wait = Duration::from_millis(u64::try_from(wake - now).unwrap_or(0));
            // A deletion under way goes on with its next slice at once (a signal is seen in between).
            let wait = if self.memory.deleting.is_some() {
                Duration::ZERO
            } else {
                wait
            };
            match events.recv_timeout(self.observers.notifier.cap_wait(wait)) {
                Ok(Event::Terminate) | Err(RecvTimeoutError::Disconnected) => break Ended::Stopped,
                Ok(Event::Reload) => self.reload(),
                Err(RecvTimeoutError::Timeout) => {}
            }
        };
        // What the delivery workers finished meanwhile is recorded (never waited for: a delivery still
        // running stays in the outbox and is sent after the restart).
        self.record_deliveries();
        if let Some((id, removal)) = &self.memory.deleting {
            say::deletion_interrupted(&self.cfg.watch.root.join(removal.name()), *id);
        }
        if ended == Ended::Stopped {
            self.hand_back_lease();
            self.observers.stopping();
            say::stopped(&LedgerAt::of(&self.cfg.behavior).name());
        }
        ended
    }

    /// Re-reads the config file; an invalid one is refused and the old one stays. `watch.root` and
    /// `behavior.state_file` take a restart.
    fn reload(&mut self) {
        self.observers.reloading();
        match Config::load(&self.cfg.source) {
            Ok(mut new) => {
                self.keep_restart_keys(&mut new);
                let changed = self.cfg.changed_keys(&new);
                self.cfg = new;
                self.sched = (self.make_sched)(&self.cfg);
                self.observers.metrics.reload(&self.cfg.metrics);
                for w in output_dir::warnings(&self.cfg) {
                    say::config_warning(&w);
                }
                self.output_ready();
                self.telling.email = EmailTransport::resolve(&self.cfg.notify);
                self.pacing.reconfigure(&self.cfg, self.clock.mono());
                self.schedule.rescan();
                say::reloaded(&self.cfg.source, &changed);
                self.observers.config_taken(true, self.clock.wall());
                self.retry_refused();
            }
            Err(e) => {
                say::reload_refused(&e);
                self.observers.config_taken(false, self.clock.wall());
            }
        }
    }

    /// The keys a reload cannot change (the ledger, the root its jobs belong to, the name on every metric
    /// and log line) keep their old values in `new`, each with a warning that names it.
    fn keep_restart_keys(&self, new: &mut Config) {
        let (old_b, old_w) = (&self.cfg.behavior, &self.cfg.watch);
        if new.behavior.state_file != old_b.state_file {
            let (o, n) = (show(&old_b.state_file), show(&new.behavior.state_file));
            say::reload_kept("behavior.state_file", &o, &n, "");
        }
        if new.watch.root != old_w.root {
            let (o, n) = (show(&old_w.root), show(&new.watch.root));
            say::reload_kept(
                "watch.root",
                &o,
                &n,
                " (jobs in flight belong to the old root)",
            );
        }
        if new.behavior.instance != old_b.instance {
            let name = |i: &Option<crate::config::InstanceName>| {
                i.as_ref().map_or("none".to_string(), |n| format!("`{n}`"))
            };
            let (o, n) = (name(&old_b.instance), name(&new.behavior.instance));
            say::reload_kept(
                "behavior.instance",
                &o,
                &n,
                " (it names every metric and log line)",
            );
        }
        let where_ = |b: &crate::config::BehaviorConfig| LedgerAt::of(b).to_string();
        let shared = new.behavior.ledger.is_some() || old_b.ledger.is_some();
        if shared && where_(&new.behavior) != where_(old_b) {
            let (o, n) = (where_(old_b), where_(&new.behavior));
            say::reload_kept(
                "behavior.ledger",
                &format!("`{o}`"),
                &format!("`{n}`"),
                " (the ledger is open, and a shared one's lease held)",
            );
        }
        if new.behavior.lease != old_b.lease {
            let secs = |d: std::time::Duration| format!("{}s", d.as_secs_f64());
            say::reload_kept(
                "behavior.lease_sec",
                &secs(old_b.lease),
                &secs(new.behavior.lease),
                " (the lease is held for its length)",
            );
        }
        new.behavior.state_file = old_b.state_file.clone();
        new.behavior.ledger = old_b.ledger.clone();
        new.behavior.ledger_password_source = old_b.ledger_password_source.clone();
        new.behavior.lease = old_b.lease;
        new.watch.root = old_w.root.clone();
        new.behavior.instance = old_b.instance.clone();
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
                self.memory.flight_stale = true;
                // The ledger made the refused intents due; the monotonic back-offs this process set would
                // still hold them (the others fall back to their recorded times, capped).
                self.waits.held.clear();
                self.schedule.hold(self.clock.mono(), Duration::ZERO);
                say::refused_retried(reason, n);
            }
            Err(e) => self.ledger_failed("retrying refused submissions", &e),
        }
    }

    /// One cycle: every step once, in order. Public for tests and for `run --once`.
    pub fn cycle(&mut self, events: &Receiver<Event>) -> Flow {
        let now = self.clock.mono();
        if !self.keep_lease() {
            return Flow::Deposed;
        }
        if let Err(problem) = self.ledger.check_file() {
            // What would be written now is lost at the next start: nothing is scanned, submitted or
            // deleted, and the loop only keeps telling systemd it lives.
            let edge = self.health.ledger_file.failed(now);
            say::ledger_file_unusable(&self.cfg.behavior.state_file, &problem, edge);
            let cadence = self.cadence();
            self.schedule.tracked(now, cadence);
            self.schedule.scanned(now, false, cadence);
            self.observers
                .stalled("the ledger file was removed or replaced: stopped; see the log");
            return Flow::Continue;
        }
        self.sync_known(now);
        let mut agenda = self.read_agenda();
        if self.schedule.track_due(now) {
            if let Some(flow) = self.resolve(&mut agenda, events) {
                return flow;
            }
            self.track(&mut agenda);
            self.schedule.tracked(now, self.cadence());
        }
        self.finish_effects();
        self.deliver_notices();
        if self.schedule.scan_due(now) {
            self.scan(&mut agenda, now);
            let settling = self.settling.tracker.is_settling();
            self.schedule.scanned(now, settling, self.cadence());
        }
        let flow = self.submit(agenda, events);
        self.observe();
        self.give_back_memory(now);
        flow
    }

    /// Once a minute, the allocator gives the pages freed since back to the system: a burst of 100,000
    /// directories, or a rewritten list of 100,000 jobs, otherwise keeps its peak resident for good.
    fn give_back_memory(&mut self, now: Millis) {
        const EVERY: Millis = 60_000;
        if self.memory.trimmed_at.is_none_or(|t| now - t >= EVERY) {
            crate::fsx::give_back_freed_memory();
            self.memory.trimmed_at = Some(now);
        }
    }

    fn cadence(&self) -> Cadence {
        Cadence {
            poll: self.cfg.watch.poll_interval,
            stability: self.cfg.watch.stability_interval,
        }
    }

    /// Creates and checks the job output folder when it is one the daemon manages (said once when it fails
    /// and once when it is fixed). False: nothing may be submitted now.
    fn output_ready(&mut self) -> bool {
        let Place::Checked { root, rel } = output_dir::place(&self.cfg) else {
            return true;
        };
        let now = self.clock.mono();
        let group = self.cfg.job.output_group.as_ref().map(|(_, gid)| *gid);
        match output_dir::prepare_for(&root, &rel, output_dir::my_uid(), group) {
            Ok(()) => {
                say::output_back(&root.join(&rel), self.health.output.succeeded(now));
                true
            }
            Err(problem) => {
                say::output_refused(&problem, self.health.output.failed(now));
                false
            }
        }
    }
}
