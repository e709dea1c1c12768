//! The effective config `check-config` prints, and what a reload changed: every section's lines in the
//! table's order.
//!
//! Owns: the order of the sections. Must never: show a secret (each section writes `<secret>` for one).

use super::Config;
use super::yaml::EffectiveYaml;

impl Config {
    /// The keys whose effective value differs between `self` and `other`, in table order (for the reload
    /// log line). Compared on the effective config `check-config` prints, so defaults count as values.
    pub fn changed_keys(&self, other: &Config) -> Vec<String> {
        fn values(yaml: &str) -> Vec<(String, String)> {
            let mut section = "";
            let mut out = Vec::new();
            for l in yaml.lines() {
                if let Some(s) = l.strip_suffix(':').filter(|s| !s.starts_with(' ')) {
                    section = s;
                } else if let Some((k, v)) = l.strip_prefix("  ").and_then(|l| l.split_once(':'))
                    && !k.starts_with(' ')
                {
                    out.push((format!("{section}.{k}"), v.trim().to_string()));
                }
            }
            out
        }
        let (a, b) = (values(&self.to_yaml()), values(&other.to_yaml()));
        let mut changed: Vec<String> = a
            .iter()
            .filter(|(k, v)| {
                b.iter()
                    .find(|(k2, _)| k2 == k)
                    .is_none_or(|(_, v2)| v2 != v)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (k, _) in &b {
            if !a.iter().any(|(k2, _)| k2 == k) {
                changed.push(k.clone());
            }
        }
        changed
    }

    /// Renders the effective configuration as YAML (all defaults filled in), for `check-config`: every key
    /// of [`keys::ALL`] in its order, under its section.
    pub fn to_yaml(&self) -> String {
        let mut y = EffectiveYaml::default();
        self.watch.put(&mut y);
        super::ready::put(&mut y, &self.watch);
        self.job.put(&mut y);
        self.behavior.put(&mut y);
        self.notify.put_mail(&mut y);
        self.metrics.put(&mut y);
        self.notify.put(&mut y);
        super::db::put(&mut y, self.notify.db.as_ref());
        y.text
    }
}
