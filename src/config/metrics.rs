//! The `metrics:` section: where metrics go, if anywhere.
//!
//! Owns: the raw section, its validation, the validated [`MetricsConfig`], and its lines of the effective
//! config. Must never: bind the address or write the file (the observers do).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::keys;
use super::yaml::{self, EffectiveYaml};
use super::{ConfigError, S, Validator};

/// `metrics:` section, validated. Both outputs are optional; without either, no metrics go anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` here: a loopback address, or a specific address of this host (never the
    /// wildcard `0.0.0.0`/`::`). Port 0 picks a free port (logged at start).
    pub listen: Option<SocketAddr>,
    /// Rewrite this `.prom` file atomically every cycle, for node_exporter's textfile collector.
    pub textfile: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: S<String>,
    pub(super) textfile: S<String>,
}

impl Validator<'_> {
    pub(super) fn metrics(&self, raw: Option<RawMetrics>) -> Result<MetricsConfig, ConfigError> {
        let Some(m) = raw else {
            return Ok(MetricsConfig::default());
        };
        let listen = match &m.listen {
            None => None,
            Some(l) if l.value.trim().is_empty() => None,
            Some(l) => {
                let line = Some(l.referenced.line());
                let addr: SocketAddr = l.value.trim().parse().map_err(|_| {
                    self.err(
                        keys::METRICS_LISTEN.name,
                        line,
                        format!("must be an IP address and a port, found {:?}", l.value),
                        "write e.g. `listen: 127.0.0.1:9187` (IPv6 in quotes: `listen: \"[::1]:9187\"`)",
                    )
                })?;
                if addr.ip().is_unspecified() {
                    return Err(self.err(
                        keys::METRICS_LISTEN.name,
                        line,
                        format!(
                            "`{addr}` would serve the metrics on every network interface, without authentication"
                        ),
                        "write `listen: 127.0.0.1:9187` and let Prometheus scrape through node_exporter's textfile \
                         (`textfile:`) or a proxy, or name the one address Prometheus reaches, e.g. `listen: 10.0.0.5:9187`",
                    ));
                }
                Some(addr)
            }
        };
        let textfile = match &m.textfile {
            None => None,
            Some(t) if t.value.trim().is_empty() => None,
            Some(t) => {
                let example = "/var/lib/prometheus/node-exporter/dirwatcher.prom";
                let p = self.absolute(&keys::METRICS_TEXTFILE, &m.textfile, example)?;
                if p.extension().is_none_or(|e| e != "prom") {
                    return Err(self.err(
                        keys::METRICS_TEXTFILE.name,
                        Some(t.referenced.line()),
                        format!(
                            "must end in `.prom` (node_exporter's textfile collector reads only those), found {:?}",
                            t.value
                        ),
                        format!("write e.g. `textfile: {example}`"),
                    ));
                }
                Some(p)
            }
        };
        Ok(MetricsConfig { listen, textfile })
    }
}

impl MetricsConfig {
    /// The section's lines of the effective config.
    pub(super) fn put(&self, y: &mut EffectiveYaml) {
        y.put(
            &keys::METRICS_LISTEN,
            yaml::opt(self.listen.map(|a| a.to_string()).as_deref()),
        );
        y.put(
            &keys::METRICS_TEXTFILE,
            self.textfile.as_deref().map_or("null".into(), yaml::path),
        );
    }
}
