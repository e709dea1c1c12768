//! The registry: every series the daemon exports, with its name, help text and labels, and the handles the
//! daemon updates. The names, help texts and labels are an interface (dashboards, alerts, the README):
//! changing one is a change for every site.
//!
//! Owns: which series exist and which exist from the start. Must never: grow a label whose values are
//! unbounded (directory names, job ids).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::config::InstanceName;
use crate::observe::Call;

/// The label every series carries when the daemon is one of several on the host (`behavior.instance`).
/// Not `instance`: Prometheus sets that one to the scraped target (`host:port`) and renames a clashing
/// label to `exported_instance`.
pub const INSTANCE_LABEL: &str = "dirwatcher_instance";

pub(super) type CallLabel = [(&'static str, &'static str); 1];
type StateLabel = [(&'static str, String); 1];

/// The `call` label of a call kind.
pub(super) fn call_label(call: Call) -> CallLabel {
    [("call", call.word())]
}

/// Bucket bounds (seconds) for scheduler calls: a healthy `sbatch`/`sacct` takes tens of milliseconds, a
/// struggling controller seconds, a hung one runs into `job.command_timeout_sec`.
const CALL_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The metric handles (cheap clones of shared atomics).
#[derive(Debug, Clone)]
pub(super) struct Handles {
    pub(super) directories: Gauge,
    pub(super) pending: Family<[(&'static str, &'static str); 1], Gauge>,
    pub(super) in_flight: Gauge,
    pub(super) lost: Gauge,
    pub(super) finished: Family<[(&'static str, &'static str); 1], Gauge>,
    pub(super) submitted: Counter,
    pub(super) completed: Counter,
    pub(super) failed: Family<StateLabel, Counter>,
    pub(super) calls: Family<CallLabel, Counter>,
    pub(super) errors: Family<CallLabel, Counter>,
    pub(super) duration: Family<CallLabel, Histogram, fn() -> Histogram>,
    pub(super) last_poll: Gauge<f64, AtomicU64>,
    pub(super) blocked: Family<[(&'static str, &'static str); 1], Gauge>,
    pub(super) notices: Family<[(&'static str, &'static str); 2], Counter>,
    pub(super) notices_waiting: Gauge,
    pub(super) reload_ok: Gauge,
    pub(super) leader: Gauge,
    pub(super) lease_epoch: Gauge,
    pub(super) reload_at: Gauge<f64, AtomicU64>,
}

impl Handles {
    /// One scheduler call: counted, counted as an error unless `ok`, and timed.
    pub(super) fn call(&self, call: Call, took: Duration, ok: bool) {
        let l = call_label(call);
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

/// The registry: the plain service's series exactly as always; an instance's all carry its name.
pub(super) fn new_registry(instance: Option<&InstanceName>) -> (Registry, Handles) {
    let mut reg = match instance {
        None => Registry::with_prefix("dirwatcher"),
        Some(name) => Registry::with_prefix_and_labels(
            "dirwatcher",
            [(INSTANCE_LABEL.into(), name.as_str().to_string().into())].into_iter(),
        ),
    };
    let h = new_handles();
    // The daemon starts on a config it validated: that counts as a successful load.
    h.reload_ok.set(1);
    register_directories(&mut reg, &h);
    register_jobs(&mut reg, &h);
    register_health(&mut reg, &h);
    create_from_the_start(&h);
    (reg, h)
}

fn new_handles() -> Handles {
    Handles {
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
        notices_waiting: Gauge::default(),
        reload_ok: Gauge::default(),
        leader: Gauge::default(),
        lease_epoch: Gauge::default(),
        reload_at: Gauge::default(),
    }
}

/// Notices, and the directories of the root by stage.
fn register_directories(reg: &mut Registry, h: &Handles) {
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
        "Ready directories without a job yet: stage=settling (ready-file checked for stability or locked by its writer), stage=submitting (intent committed, sbatch due or backing off), stage=stale_temporaries (a transfer temporary in it has not changed for watch.stale_temporary_sec: a killed copy?)",
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
}

/// Jobs and the scheduler calls that run and follow them.
fn register_jobs(reg: &mut Registry, h: &Handles) {
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
}

/// The daemon's own health: config reloads, the last poll, refused submissions, the build.
fn register_health(reg: &mut Registry, h: &Handles) {
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
        "notices_waiting",
        "Notices (e-mail, webhook, command, the web application's database) waiting in the outbox for their first or another delivery; given-up ones are not counted",
        h.notices_waiting.clone(),
    );
    reg.register(
        "leader",
        "1 while this daemon is the active one (it holds the shared ledger's lease, or its SQLite ledger's lock); a standby serves no metrics until it takes over",
        h.leader.clone(),
    );
    reg.register(
        "lease_epoch",
        "The epoch of the shared ledger's lease this daemon holds: it grows by one at every takeover (0 on an SQLite ledger)",
        h.lease_epoch.clone(),
    );
    reg.register(
        "build",
        "The running dirwatcher",
        Info::new([("version", env!("CARGO_PKG_VERSION"))]),
    );
}

/// Series that exist from the start, so a dashboard shows 0 rather than nothing.
fn create_from_the_start(h: &Handles) {
    // A daemon that serves metrics is the active one (a standby has not started its loop).
    h.leader.set(1);
    for stage in [
        "settling",
        "locked",
        "unreadable",
        "submitting",
        "stale_temporaries",
    ] {
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
    for call in Call::ALL {
        let _ = h.calls.get_or_create(&call_label(call));
        let _ = h.errors.get_or_create(&call_label(call));
        let _ = h.duration.get_or_create(&call_label(call));
    }
}

/// The registry in Prometheus' text format.
pub(super) fn render(registry: &Registry) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut s, registry);
    s
}
