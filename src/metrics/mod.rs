//! Prometheus metrics: what the daemon counts, and the two ways out — `GET /metrics` on `metrics.listen`
//! ([`http`]) and `metrics.textfile`, rewritten atomically every cycle for node_exporter's textfile
//! collector. Both use the classic Prometheus text format (0.0.4).
//!
//! Counters (`*_total`) count since the daemon started, as Prometheus expects (`rate()` and `increase()`
//! handle restarts); the durable numbers come from the ledger (`dirwatcher_directories_finished`).
//!
//! Owns: the registry ([`registry`]), the HTTP listener, the textfile, and the [`Observer`] that turns
//! what the loop reports into samples. Must never: block or fail a cycle (a textfile that cannot be
//! written is reported once and retried), stand between the daemon and the scheduler, or expose directory
//! names (label cardinality stays bounded: only call kinds and Slurm's final-state words).

mod http;
mod registry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tracing::{debug, info, warn};

use crate::config::{InstanceName, MetricsConfig};
use crate::engine::{GenState, Rejection, state_word};
use crate::observe::{Call, CycleReport, Observer};
use crate::time::Millis;

pub use http::MetricsError;
pub use registry::INSTANCE_LABEL;
use registry::render;

/// The daemon's metrics and where they go.
#[derive(Debug)]
pub struct Metrics {
    /// Shared with the HTTP thread.
    registry: Arc<Registry>,
    /// The handles the daemon updates.
    h: registry::Handles,
    /// Where the HTTP thread listens (the bound address, so port 0 shows the real port); `None` = off.
    listening: Option<SocketAddr>,
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
        let (reg, h) = registry::new_registry(instance);
        let registry = Arc::new(reg);
        let listening = match cfg.listen {
            None => None,
            Some(addr) => Some(http::serve(addr, Arc::clone(&registry))?),
        };
        Ok(Metrics {
            registry,
            h,
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

    /// End of a cycle: the gauges from the ledger's counts (`None` when they could not be read: the old
    /// values stay) and the directories waiting in memory (settling, locked, unreadable, held by stale
    /// temporaries); then the textfile.
    fn publish(&mut self, r: &CycleReport<'_>) {
        if let Some(c) = r.counts {
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
        if let Some(n) = r.notices_waiting {
            self.h
                .notices_waiting
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for (stage, n) in [
            ("settling", r.settling),
            ("locked", r.locked),
            ("unreadable", r.unreadable),
            ("stale_temporaries", r.stale_temporaries),
        ] {
            self.h
                .pending
                .get_or_create(&[("stage", stage)])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
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

impl Observer for Metrics {
    fn called(&mut self, call: Call, took: Duration, ok: bool) {
        self.h.call(call, took, ok);
    }

    fn submitted(&mut self) {
        self.h.submitted.inc();
    }

    fn leading(&mut self, epoch: i64) {
        self.h.lease_epoch.set(epoch);
    }

    fn ended(&mut self, state: GenState, final_state: &str) {
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

    fn scanned(&mut self, dirs: usize, wall: Millis) {
        self.h.directories.set(dirs as i64);
        self.h.last_poll.set(wall as f64 / 1000.0);
    }

    fn refusing(&mut self, reason: Option<Rejection>) {
        self.h
            .blocked
            .get_or_create(&[("reason", "config")])
            .set(i64::from(reason.is_some()));
    }

    fn notice(&mut self, channel: &'static str, result: &'static str) {
        self.h
            .notices
            .get_or_create(&[("channel", channel), ("result", result)])
            .inc();
    }

    fn config_taken(&mut self, ok: bool, wall: Millis) {
        self.h.reload_ok.set(i64::from(ok));
        if ok {
            self.h.reload_at.set(wall as f64 / 1000.0);
        }
    }

    fn cycle_done(&mut self, r: &CycleReport<'_>) {
        self.publish(r);
    }
}

fn show_addr(a: Option<SocketAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_else(|| "none".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Counts;

    fn metrics() -> Metrics {
        Metrics::start(&MetricsConfig::default(), None).unwrap()
    }

    /// The value of the sample whose line starts with `series ` (name and labels exactly).
    /// A cycle's report with `[settling, locked, unreadable, stale_temporaries]`.
    fn report(counts: Option<&Counts>, n: [u64; 4]) -> CycleReport<'_> {
        CycleReport {
            counts,
            settling: n[0],
            locked: n[1],
            unreadable: n[2],
            stale_temporaries: n[3],
            notices_waiting: None,
            status: None,
        }
    }

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
        m.publish(&report(None, [0, 0, 0, 0]));
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
        m.ended(GenState::Completed, "COMPLETED");
        m.ended(GenState::Failed, "CANCELLED by 0");
        m.ended(GenState::Failed, "TIMEOUT");
        m.ended(GenState::Failed, "TIMEOUT");
        let c = Counts {
            submitting: 2,
            submitted: 3,
            completed: 40,
            failed: 5,
            lost: 1,
        };
        m.publish(&report(Some(&c), [4, 1, 3, 2]));
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
            (
                "dirwatcher_directories_pending{stage=\"stale_temporaries\"}",
                2.0,
            ),
            ("dirwatcher_directories_pending{stage=\"submitting\"}", 2.0),
            ("dirwatcher_directories_finished{state=\"completed\"}", 40.0),
            ("dirwatcher_directories_finished{state=\"failed\"}", 5.0),
        ] {
            assert_eq!(sample(&t, series), Some(want), "{series} in\n{t}");
        }
    }

    /// The outbox's waiting notices are a gauge, 0 from the start; a cycle that did not read them keeps
    /// the last value.
    #[test]
    fn notices_waiting_is_a_gauge_from_the_start() {
        let mut m = metrics();
        assert_eq!(sample(&m.render(), "dirwatcher_notices_waiting"), Some(0.0));
        let mut r = report(None, [0; 4]);
        r.notices_waiting = Some(3);
        m.publish(&r);
        assert_eq!(sample(&m.render(), "dirwatcher_notices_waiting"), Some(3.0));
        m.publish(&report(None, [0; 4]));
        assert_eq!(sample(&m.render(), "dirwatcher_notices_waiting"), Some(3.0));
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
        m.publish(&report(None, [0, 0, 0, 0]));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(sample(&text, "dirwatcher_directories"), Some(3.0));
        let names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["dirwatcher.prom"], "no temporary file left behind");
    }
}
