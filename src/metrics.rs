//! Prometheus metrics: what the daemon counts, and the two ways out — `GET /metrics` on `metrics.listen`
//! (one small std thread, no async runtime) and `metrics.textfile`, rewritten atomically every cycle for
//! node_exporter's textfile collector. Both use the classic Prometheus text format (0.0.4).
//!
//! Counters (`*_total`) count since the daemon started, as Prometheus expects (`rate()` and `increase()`
//! handle restarts); the durable numbers come from the ledger (`dirwatcher_directories_finished`).
//!
//! Owns: the registry, the HTTP listener thread, the textfile, and [`Instrumented`], the scheduler wrapper
//! that times every `sbatch`/`sacct`/`squeue` call. Must never: block or fail a cycle (a textfile that
//! cannot be written is reported once and retried), or expose directory names (label cardinality stays
//! bounded: only call kinds and Slurm's final-state words).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tracing::{debug, info, warn};

use crate::config::{InstanceName, MetricsConfig};
use crate::engine::{GenState, Identity, Rejection, Source, identify, state_word};
use crate::ledger::Counts;
use crate::notify::Notifier;
use crate::scheduler::{
    CancelError, JobSpec, QueryError, Scheduler, Sightings, SubmitError, TrackedJob,
};
use crate::snapshot::JobSeen;
use crate::time::Millis;

/// Why metrics could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// `metrics.listen` could not be bound (in use, or not an address of this host).
    #[error(
        "cannot serve metrics on `{addr}` (`metrics.listen`): is another program using the port, or is it not an address of this host?"
    )]
    Listen {
        /// The configured address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A scheduler call kind, as the `call` label.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    /// `sbatch` (or starting a local job).
    Submit,
    /// One `sacct` for all jobs in flight (or reading local job states).
    Query,
    /// Finding a job by its submission key after a lost answer (`squeue` + `sacct`).
    Lookup,
}

impl Call {
    fn label(self) -> [(&'static str, &'static str); 1] {
        [(
            "call",
            match self {
                Call::Submit => "submit",
                Call::Query => "query",
                Call::Lookup => "lookup",
            },
        )]
    }
}

type CallLabel = [(&'static str, &'static str); 1];
type StateLabel = [(&'static str, String); 1];

/// Bucket bounds (seconds) for scheduler calls: a healthy `sbatch`/`sacct` takes tens of milliseconds, a
/// struggling controller seconds, a hung one runs into `job.command_timeout_sec`.
const CALL_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The metric handles (cheap clones of shared atomics).
#[derive(Debug, Clone)]
struct Handles {
    directories: Gauge,
    pending: Family<[(&'static str, &'static str); 1], Gauge>,
    in_flight: Gauge,
    lost: Gauge,
    finished: Family<[(&'static str, &'static str); 1], Gauge>,
    submitted: Counter,
    completed: Counter,
    failed: Family<StateLabel, Counter>,
    calls: Family<CallLabel, Counter>,
    errors: Family<CallLabel, Counter>,
    duration: Family<CallLabel, Histogram, fn() -> Histogram>,
    last_poll: Gauge<f64, AtomicU64>,
    blocked: Family<[(&'static str, &'static str); 1], Gauge>,
    notices: Family<[(&'static str, &'static str); 2], Counter>,
    reload_ok: Gauge,
    reload_at: Gauge<f64, AtomicU64>,
}

impl Handles {
    fn call(&self, call: Call, took: Duration, ok: bool) {
        let l = call.label();
        self.calls.get_or_create(&l).inc();
        if !ok {
            self.errors.get_or_create(&l).inc();
        }
        self.duration.get_or_create(&l).observe(took.as_secs_f64());
    }
}

fn call_histogram() -> Histogram {
    Histogram::new(CALL_BUCKETS)
}

/// The label every series carries when the daemon is one of several on the host (`behavior.instance`).
/// Not `instance`: Prometheus sets that one to the scraped target (`host:port`) and renames a clashing
/// label to `exported_instance`.
pub const INSTANCE_LABEL: &str = "dirwatcher_instance";

/// The registry: the plain service's series exactly as always; an instance's all carry its name.
fn new_registry(instance: Option<&InstanceName>) -> (Registry, Handles) {
    let mut reg = match instance {
        None => Registry::with_prefix("dirwatcher"),
        Some(name) => Registry::with_prefix_and_labels(
            "dirwatcher",
            [(INSTANCE_LABEL.into(), name.as_str().to_string().into())].into_iter(),
        ),
    };
    let h = Handles {
        directories: Gauge::default(),
        pending: Family::default(),
        in_flight: Gauge::default(),
        lost: Gauge::default(),
        finished: Family::default(),
        submitted: Counter::default(),
        completed: Counter::default(),
        failed: Family::default(),
        calls: Family::default(),
        errors: Family::default(),
        duration: Family::new_with_constructor(call_histogram as fn() -> Histogram),
        last_poll: Gauge::default(),
        blocked: Family::default(),
        notices: Family::default(),
        reload_ok: Gauge::default(),
        reload_at: Gauge::default(),
    };
    // The daemon starts on a config it validated: that counts as a successful load.
    h.reload_ok.set(1);
    reg.register(
        "notifications",
        "Notice deliveries by channel (email, webhook, command) and result (sent, failed, given_up)",
        h.notices.clone(),
    );
    reg.register(
        "directories",
        "Subdirectories of the watched root at the last scan",
        h.directories.clone(),
    );
    reg.register(
        "directories_pending",
        "Ready directories without a job yet: stage=settling (ready-file checked for stability or locked by its writer), stage=submitting (intent committed, sbatch due or backing off)",
        h.pending.clone(),
    );
    reg.register(
        "jobs_in_flight",
        "Jobs submitted and not yet in a final state",
        h.in_flight.clone(),
    );
    reg.register(
        "jobs_lost",
        "Directories whose job no source (sacct, squeue) has shown for longer than job.lost_after_sec: followed no more, never deleted; check the job, then `dirwatcher retry DIR`",
        h.lost.clone(),
    );
    reg.register(
        "directories_finished",
        "Directories whose latest job ended, by outcome (completed|failed), as recorded in the ledger: survives restarts; `dirwatcher forget` and `retry` lower it",
        h.finished.clone(),
    );
    reg.register(
        "jobs_submitted",
        "Jobs submitted since the daemon started",
        h.submitted.clone(),
    );
    reg.register(
        "jobs_completed",
        "Jobs that ended COMPLETED since the daemon started (durable count: dirwatcher_directories_finished)",
        h.completed.clone(),
    );
    reg.register(
        "jobs_failed",
        "Jobs that ended in a failure state (FAILED, TIMEOUT, CANCELLED, OUT_OF_MEMORY, ...) since the daemon started",
        h.failed.clone(),
    );
    reg.register(
        "scheduler_calls",
        "Scheduler calls since the daemon started: call=submit (sbatch), query (one sacct for all jobs in flight), lookup (squeue+sacct by submission key after a lost answer)",
        h.calls.clone(),
    );
    reg.register(
        "scheduler_errors",
        "Scheduler calls that failed (refused, timed out, unreadable answer) since the daemon started",
        h.errors.clone(),
    );
    reg.register_with_unit(
        "scheduler_call_duration",
        "How long scheduler calls took",
        Unit::Seconds,
        h.duration.clone(),
    );
    reg.register(
        "config_last_reload_successful",
        "Whether the last config reload (SIGHUP, systemctl reload) was taken: 1, or 0 when it was refused and the previous config still runs",
        h.reload_ok.clone(),
    );
    reg.register_with_unit(
        "config_last_reload_success_timestamp",
        "When the config was last loaded successfully, at start or by a reload (unix time)",
        Unit::Seconds,
        h.reload_at.clone(),
    );
    reg.register_with_unit(
        "last_successful_poll_timestamp",
        "When the watched root was last listed successfully (unix time)",
        Unit::Seconds,
        h.last_poll.clone(),
    );
    reg.register(
        "submissions_blocked",
        "1 while sbatch refuses submissions for a reason that waiting will not fix: reason=config (invalid account, partition, QOS, gres, time limit, no association; the log and `dirwatcher status` name the key to fix)",
        h.blocked.clone(),
    );
    reg.register(
        "build",
        "The running dirwatcher",
        Info::new([("version", env!("CARGO_PKG_VERSION"))]),
    );
    // Series that exist from the start, so a dashboard shows 0 rather than nothing.
    for stage in ["settling", "locked", "unreadable", "submitting"] {
        let _ = h.pending.get_or_create(&[("stage", stage)]);
    }
    let _ = h.blocked.get_or_create(&[("reason", "config")]);
    // The usual final states exist from the start too: `increase()` cannot see a series' first sample.
    for state in [
        "FAILED",
        "TIMEOUT",
        "CANCELLED",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
    ] {
        let _ = h.failed.get_or_create(&[("state", state.to_string())]);
    }
    for state in ["completed", "failed"] {
        let _ = h.finished.get_or_create(&[("state", state)]);
    }
    for call in [Call::Submit, Call::Query, Call::Lookup] {
        let _ = h.calls.get_or_create(&call.label());
        let _ = h.errors.get_or_create(&call.label());
        let _ = h.duration.get_or_create(&call.label());
    }
    (reg, h)
}

/// The daemon's metrics and where they go.
#[derive(Debug)]
pub struct Metrics {
    /// Shared with the HTTP thread.
    registry: Arc<Registry>,
    /// The handles the daemon updates.
    h: Handles,
    /// Where the HTTP thread listens (the bound address, so port 0 shows the real port); `None` = off.
    listening: Option<SocketAddr>,
    /// What the last query showed of each job (shared with every [`Instrumented`] wrapper).
    seen: SeenJobs,
    /// The configured listen address (to tell a reload that changes it apart).
    listen_config: Option<SocketAddr>,
    /// `metrics.textfile`; `None` = off.
    textfile: Option<PathBuf>,
    /// The textfile could not be written last time (reported once until it works again).
    textfile_failing: bool,
}

impl Metrics {
    /// Sets up the registry (labelled with `instance`, when there is one) and, if configured, binds
    /// `metrics.listen` and starts serving it.
    pub fn start(
        cfg: &MetricsConfig,
        instance: Option<&InstanceName>,
    ) -> Result<Metrics, MetricsError> {
        let (reg, h) = new_registry(instance);
        let registry = Arc::new(reg);
        let listening = match cfg.listen {
            None => None,
            Some(addr) => Some(serve(addr, Arc::clone(&registry))?),
        };
        Ok(Metrics {
            registry,
            h,
            seen: SeenJobs::default(),
            listening,
            listen_config: cfg.listen,
            textfile: cfg.textfile.clone(),
            textfile_failing: false,
        })
    }

    /// True when the metrics go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.listening.is_some() || self.textfile.is_some()
    }

    /// Where metrics are served, if they are.
    pub fn listening(&self) -> Option<SocketAddr> {
        self.listening
    }

    /// Wraps a scheduler so that every call is counted and timed (and pets the watchdog: a long run of
    /// submissions is progress, not a hang).
    pub fn instrument(&self, inner: Box<dyn Scheduler>, notifier: &Notifier) -> Box<dyn Scheduler> {
        Box::new(Instrumented {
            inner,
            h: self.h.clone(),
            notifier: notifier.clone(),
            seen: Arc::clone(&self.seen),
        })
    }

    /// What the last query showed of each job in flight (for the daemon's snapshot).
    pub fn jobs_seen(&self) -> Vec<JobSeen> {
        let m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        sorted_jobs(&m.jobs)
    }

    /// [`Metrics::jobs_seen`] with its version, unless it is still `version` (nothing changed since).
    pub fn jobs_seen_since(&self, version: Option<u64>) -> Option<(u64, Vec<JobSeen>)> {
        let m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if version == Some(m.version) {
            return None;
        }
        Some((m.version, sorted_jobs(&m.jobs)))
    }

    /// When the root was last listed successfully (wall ms), if it was.
    pub fn last_poll(&self) -> Option<Millis> {
        let secs = self.h.last_poll.get();
        (secs > 0.0).then_some((secs * 1000.0) as Millis)
    }

    /// The root was listed: `dirs` subdirectories, at wall-clock `now`.
    /// A config was loaded at start or by a reload (`ok`), or a reload was refused, at wall time `now`.
    pub fn reloaded(&self, ok: bool, now: Millis) {
        self.h.reload_ok.set(i64::from(ok));
        if ok {
            self.h.reload_at.set(now as f64 / 1000.0);
        }
    }

    /// The root was listed with `dirs` subdirectories at wall time `now`.
    pub fn scanned(&self, dirs: usize, now: Millis) {
        self.h.directories.set(dirs as i64);
        self.h.last_poll.set(now as f64 / 1000.0);
    }

    /// A job's end was recorded.
    pub fn job_ended(&self, state: GenState, final_state: &str) {
        match state {
            GenState::Completed => {
                self.h.completed.inc();
            }
            GenState::Failed => {
                self.h
                    .failed
                    .get_or_create(&[("state", state_word(final_state))])
                    .inc();
            }
            GenState::Submitting | GenState::Submitted | GenState::Lost => {}
        }
    }

    /// A notice delivery on `channel` ended with `result` (`sent`, `failed`, `given_up`).
    pub fn notice(&self, channel: &'static str, result: &'static str) {
        self.h
            .notices
            .get_or_create(&[("channel", channel), ("result", result)])
            .inc();
    }

    /// Whether submissions are refused for a configuration reason now (`None`: they are not).
    pub fn submissions_refused(&self, reason: Option<Rejection>) {
        self.h
            .blocked
            .get_or_create(&[("reason", "config")])
            .set(i64::from(reason.is_some()));
    }

    /// End of a cycle: the gauges from the ledger's counts (`None` when they could not be read: the old
    /// values stay) and `settling` ready-files in the stability tracker; then the textfile.
    pub fn publish(
        &mut self,
        counts: Option<&Counts>,
        settling: u64,
        locked: u64,
        unreadable: u64,
    ) {
        if let Some(c) = counts {
            let g = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            self.h.in_flight.set(g(c.submitted));
            self.h.lost.set(g(c.lost));
            self.h
                .pending
                .get_or_create(&[("stage", "submitting")])
                .set(g(c.submitting));
            self.h
                .finished
                .get_or_create(&[("state", "completed")])
                .set(g(c.completed));
            self.h
                .finished
                .get_or_create(&[("state", "failed")])
                .set(g(c.failed));
        }
        self.h
            .pending
            .get_or_create(&[("stage", "settling")])
            .set(i64::try_from(settling).unwrap_or(i64::MAX));
        self.h
            .pending
            .get_or_create(&[("stage", "locked")])
            .set(i64::try_from(locked).unwrap_or(i64::MAX));
        self.h
            .pending
            .get_or_create(&[("stage", "unreadable")])
            .set(i64::try_from(unreadable).unwrap_or(i64::MAX));
        self.write_textfile();
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        render(&self.registry)
    }

    fn write_textfile(&mut self) {
        let Some(path) = &self.textfile else { return };
        // World-readable: node_exporter reads it as its own user, whatever the daemon's umask.
        match crate::fsx::write_atomic(path, self.render().as_bytes(), 0o644) {
            Ok(()) => {
                if self.textfile_failing {
                    self.textfile_failing = false;
                    info!("metrics textfile {:?} written again", path);
                }
            }
            Err(e) => {
                if !self.textfile_failing {
                    self.textfile_failing = true;
                    warn!(
                        "cannot write the metrics textfile {:?}: {e}; trying again every cycle",
                        path
                    );
                } else {
                    debug!("metrics textfile {:?} still failing: {e}", path);
                }
            }
        }
    }

    /// A reloaded config: a new textfile path is taken at once; a new listen address takes a restart.
    pub fn reload(&mut self, cfg: &MetricsConfig) {
        if cfg.listen != self.listen_config {
            warn!(
                "config reloaded, but `metrics.listen` changed from {} to {}: that takes a restart; keeping the old one",
                show_addr(self.listen_config),
                show_addr(cfg.listen)
            );
        }
        if cfg.textfile != self.textfile {
            self.textfile = cfg.textfile.clone();
            self.textfile_failing = false;
        }
    }
}

fn show_addr(a: Option<SocketAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_else(|| "none".into())
}

fn render(registry: &Registry) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut s, registry);
    s
}

/// Binds `addr` and serves the registry from one thread, one connection at a time (a scrape every few
/// seconds needs nothing more); returns the bound address.
fn serve(addr: SocketAddr, registry: Arc<Registry>) -> Result<SocketAddr, MetricsError> {
    let listener =
        TcpListener::bind(addr).map_err(|source| MetricsError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Listen { addr, source })?;
    if !bound.ip().is_loopback() {
        warn!(
            "metrics are served on {bound}, which is not a loopback address: anyone who can reach it can read them (no authentication)"
        );
    }
    info!(listen = %bound, "serving metrics on http://{bound}/metrics");
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = answer(stream, &registry) {
                            debug!("metrics request failed: {e}");
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: do not spin.
                        debug!("cannot accept a metrics connection: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(|source| MetricsError::Listen { addr, source })?;
    Ok(bound)
}

/// One HTTP/1.x request: `GET /metrics` (or `HEAD`); anything else gets a short error. Bounded in time and
/// size so a stuck client cannot hold the thread for long.
fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 16 * 1024 {
            break;
        }
    }
    let (status, content_type, body, head_only) = respond(&head, || render(registry));
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

/// The response to a request head: (status line, content type, body, HEAD request).
fn respond(
    head: &[u8],
    metrics: impl FnOnce() -> String,
) -> (&'static str, &'static str, String, bool) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return ("400 Bad Request", TEXT, "bad request\n".into(), false);
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return (
            "405 Method Not Allowed",
            TEXT,
            "only GET /metrics\n".into(),
            false,
        );
    }
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/metrics" => (
            "200 OK",
            prometheus_text::CONTENT_TYPE,
            metrics(),
            head_only,
        ),
        "/" => (
            "200 OK",
            TEXT,
            "dirwatcher: metrics are at /metrics\n".into(),
            head_only,
        ),
        _ => (
            "404 Not Found",
            TEXT,
            "not found; metrics are at /metrics\n".into(),
            head_only,
        ),
    }
}

/// A scheduler whose every call is counted and timed, and which pets the systemd watchdog after each.
pub struct Instrumented {
    inner: Box<dyn Scheduler>,
    h: Handles,
    notifier: Notifier,
    /// What the last query showed of each job, shared with [`Metrics::jobs_seen`].
    seen: SeenJobs,
}

/// The state word each job in flight was last shown in, by a row that is provably ours.
type SeenJobs = Arc<std::sync::Mutex<Seen>>;

/// The state word each job in flight was last shown in, and a version that moves on with every change.
#[derive(Debug, Default)]
struct Seen {
    /// By job id.
    jobs: foldhash::HashMap<String, JobSeen>,
    /// Moves on with every change of `jobs`.
    version: u64,
}

impl std::fmt::Debug for Instrumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumented")
            .field("inner", &self.inner.name())
            .finish()
    }
}

impl Instrumented {
    /// Runs one call, counts and times it, and logs it at `-v` with its duration (`what`: what was asked).
    fn timed<T, E: std::fmt::Display>(
        &mut self,
        call: Call,
        what: std::fmt::Arguments<'_>,
        f: impl FnOnce(&mut dyn Scheduler) -> Result<T, E>,
    ) -> Result<T, E> {
        let t = Instant::now();
        let r = f(self.inner.as_mut());
        let took = t.elapsed();
        self.h.call(call, took, r.is_ok());
        let (label, took_ms) = (call.label()[0].1, took.as_millis() as u64);
        match &r {
            Ok(_) => debug!(
                call = label,
                took_ms,
                ok = true,
                "scheduler call {label} ({}) {what}: answered in {took_ms} ms",
                self.inner.name()
            ),
            Err(e) => debug!(
                call = label,
                took_ms,
                ok = false,
                "scheduler call {label} ({}) {what}: failed after {took_ms} ms: {e}",
                self.inner.name()
            ),
        }
        self.notifier.watchdog();
        r
    }
}

impl Scheduler for Instrumented {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn submit(&mut self, spec: &JobSpec) -> Result<String, SubmitError> {
        let r = self.timed(
            Call::Submit,
            format_args!("for job {}", spec.job_name),
            |s| s.submit(spec),
        );
        if r.is_ok() {
            self.h.submitted.inc();
        }
        r
    }

    fn submit_many(
        &mut self,
        specs: &[JobSpec],
        width: usize,
        answer: &mut crate::scheduler::Answer<'_>,
    ) -> usize {
        let (h, notifier) = (self.h.clone(), &self.notifier);
        self.inner.submit_many(specs, width, &mut |i, r, took| {
            h.call(Call::Submit, took, r.is_ok());
            if r.is_ok() {
                h.submitted.inc();
            }
            notifier.watchdog();
            answer(i, r, took)
        })
    }

    fn query(
        &mut self,
        jobs: &[TrackedJob],
        decided: &crate::scheduler::Decided<'_>,
    ) -> Result<Sightings, QueryError> {
        let n = jobs.len();
        let r = self.timed(Call::Query, format_args!("for {n} job(s)"), |s| {
            s.query(jobs, decided)
        });
        if let Ok(sightings) = &r {
            remember_seen(&self.seen, jobs, sightings);
        }
        r
    }

    fn lookup(
        &mut self,
        key: &str,
        job_name: &str,
        since: Millis,
    ) -> Result<Option<String>, QueryError> {
        self.timed(Call::Lookup, format_args!("for key {key}"), |s| {
            s.lookup(key, job_name, since)
        })
    }

    fn cancel(&mut self, job: &TrackedJob) -> Result<(), CancelError> {
        self.inner.cancel(job)
    }
}

/// The jobs seen, in job id order (as text).
fn sorted_jobs(m: &foldhash::HashMap<String, JobSeen>) -> Vec<JobSeen> {
    let mut v: Vec<JobSeen> = m.values().cloned().collect();
    v.sort_unstable_by(|a, b| a.job_id.cmp(&b.job_id));
    v
}

/// Keeps, for each asked job, the state of its own row (the controller's over accounting's), and forgets
/// jobs no longer asked about. An entry changes only when what it says does (its `at` is when that was
/// first said): with thousands of jobs in flight and nothing changing, nothing is allocated here.
fn remember_seen(seen: &SeenJobs, jobs: &[TrackedJob], sightings: &Sightings) {
    let now = crate::time::wall_now();
    let rows_of = sightings.by_id();
    let mut guard = seen.lock().unwrap_or_else(|p| p.into_inner());
    let Seen { jobs: m, version } = &mut *guard;
    let mut present = 0;
    let steady = sightings.steady_mask(jobs.len());
    for (j, steady) in jobs.iter().zip(steady) {
        // Its line is as it was when its entry was made: nothing to change.
        if steady {
            present += usize::from(m.contains_key(&j.job_id));
            continue;
        }
        let ours = rows_of.get(j.job_id.as_str()).and_then(|rows| {
            rows.iter()
                .filter(|r| identify(j, r) == Identity::Ours)
                .min_by_key(|r| (r.source != Source::Controller, std::cmp::Reverse(r.submit)))
        });
        let entry = m.get_mut(&j.job_id);
        present += usize::from(entry.is_some() || ours.is_some());
        let Some(r) = ours else { continue };
        let source = match r.source {
            Source::Controller => "controller",
            Source::Accounting => "accounting",
        };
        let new = || JobSeen {
            job_id: j.job_id.clone(),
            slurm_state: r.state.clone(),
            slurm_reason: r.detail.reason.clone(),
            source: source.into(),
            at: now,
        };
        match entry {
            Some(e)
                if e.slurm_state == r.state
                    && e.slurm_reason == r.detail.reason
                    && e.source == source => {}
            Some(e) => {
                *e = new();
                *version += 1;
            }
            None => {
                m.insert(j.job_id.clone(), new());
                *version += 1;
            }
        }
    }
    // Entries of jobs no longer asked about: only then is a set of the asked ones built.
    if m.len() > present {
        let asked: std::collections::HashSet<&str> =
            jobs.iter().map(|j| j.job_id.as_str()).collect();
        m.retain(|id, _| asked.contains(id.as_str()));
        *version += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        Metrics::start(&MetricsConfig::default(), None).unwrap()
    }

    /// The value of the sample whose line starts with `series ` (name and labels exactly).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn renders_classic_text_format_with_every_series_from_the_start() {
        let m = metrics();
        let t = m.render();
        for series in [
            "dirwatcher_directories",
            "dirwatcher_jobs_in_flight",
            "dirwatcher_jobs_submitted_total",
            "dirwatcher_jobs_completed_total",
            "dirwatcher_jobs_failed_total{state=\"TIMEOUT\"}",
            "dirwatcher_directories_pending{stage=\"settling\"}",
            "dirwatcher_directories_finished{state=\"failed\"}",
            "dirwatcher_scheduler_calls_total{call=\"submit\"}",
            "dirwatcher_scheduler_errors_total{call=\"query\"}",
            "dirwatcher_scheduler_call_duration_seconds_count{call=\"lookup\"}",
            "dirwatcher_last_successful_poll_timestamp_seconds",
        ] {
            assert_eq!(sample(&t, series), Some(0.0), "{series} in\n{t}");
        }
        assert!(
            t.contains(&format!(
                "dirwatcher_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{t}"
        );
        // node_exporter's textfile collector reads the classic format only: no OpenMetrics `# EOF`,
        // no `info`/`unknown` types.
        assert!(!t.contains("# EOF") && !t.contains(" info\n"), "{t}");
    }

    /// An instance's series all carry its name, so two daemons' textfiles can sit side by side in one
    /// node_exporter; the plain service's carry no such label (its output is what it always was).
    #[test]
    fn every_series_of_an_instance_carries_its_name_and_the_plain_service_none() {
        let name = InstanceName::parse("cryo-em").unwrap();
        let mut m = Metrics::start(&MetricsConfig::default(), Some(&name)).unwrap();
        m.scanned(7, 0);
        m.publish(None, 0, 0, 0);
        let t = m.render();
        let samples: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(samples.len() > 20, "{t}");
        for l in &samples {
            assert!(l.contains("dirwatcher_instance=\"cryo-em\""), "{l}");
        }
        assert_eq!(
            sample(
                &t,
                "dirwatcher_directories{dirwatcher_instance=\"cryo-em\"}"
            ),
            Some(7.0),
            "{t}"
        );
        assert!(!metrics().render().contains(INSTANCE_LABEL));
    }

    #[test]
    fn counts_and_ends_show_up() {
        let mut m = metrics();
        m.scanned(7, 1_700_000_000_500);
        m.job_ended(GenState::Completed, "COMPLETED");
        m.job_ended(GenState::Failed, "CANCELLED by 0");
        m.job_ended(GenState::Failed, "TIMEOUT");
        m.job_ended(GenState::Failed, "TIMEOUT");
        let c = Counts {
            submitting: 2,
            submitted: 3,
            completed: 40,
            failed: 5,
            lost: 1,
        };
        m.publish(Some(&c), 4, 1, 3);
        let t = m.render();
        for (series, want) in [
            ("dirwatcher_directories", 7.0),
            (
                "dirwatcher_last_successful_poll_timestamp_seconds",
                1_700_000_000.5,
            ),
            ("dirwatcher_jobs_completed_total", 1.0),
            ("dirwatcher_jobs_failed_total{state=\"CANCELLED\"}", 1.0),
            ("dirwatcher_jobs_failed_total{state=\"TIMEOUT\"}", 2.0),
            ("dirwatcher_jobs_in_flight", 3.0),
            ("dirwatcher_jobs_lost", 1.0),
            ("dirwatcher_directories_pending{stage=\"settling\"}", 4.0),
            ("dirwatcher_directories_pending{stage=\"locked\"}", 1.0),
            ("dirwatcher_directories_pending{stage=\"unreadable\"}", 3.0),
            ("dirwatcher_directories_pending{stage=\"submitting\"}", 2.0),
            ("dirwatcher_directories_finished{state=\"completed\"}", 40.0),
            ("dirwatcher_directories_finished{state=\"failed\"}", 5.0),
        ] {
            assert_eq!(sample(&t, series), Some(want), "{series} in\n{t}");
        }
    }

    #[test]
    fn http_answers_get_metrics_and_refuses_the_rest() {
        let body = || "x 1\n".to_string();
        let (s, ct, b, _) = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", body);
        assert_eq!(
            (s, ct, b.as_str()),
            ("200 OK", prometheus_text::CONTENT_TYPE, "x 1\n")
        );
        assert!(respond(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", body).3);
        assert_eq!(
            respond(b"POST /metrics HTTP/1.1\r\n\r\n", body).0,
            "405 Method Not Allowed"
        );
        assert_eq!(
            respond(b"GET /secrets HTTP/1.1\r\n\r\n", body).0,
            "404 Not Found"
        );
        assert_eq!(respond(b"\r\n", body).0, "400 Bad Request");
    }

    #[test]
    fn textfile_is_replaced_whole() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("dirwatcher.prom");
        let cfg = MetricsConfig {
            listen: None,
            textfile: Some(path.clone()),
        };
        let mut m = Metrics::start(&cfg, None).unwrap();
        m.scanned(3, 0);
        m.publish(None, 0, 0, 0);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(sample(&text, "dirwatcher_directories"), Some(3.0));
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["dirwatcher.prom"], "no temporary file left behind");
    }
}
