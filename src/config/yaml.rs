//! The effective config `check-config` prints: every key of the table in its order, under its section,
//! defaults filled in; read back, it loads to the same config.
//!
//! Owns: the writer ([`EffectiveYaml`]), the order of the sections, and the comparison of two configs by
//! their effective values (the reload's log line). Must never: show a secret (`<secret>` stands for one).

use std::path::Path;
use std::time::Duration;

use super::keys::{self, Key};

/// A text value, quoted (JSON's quoting is valid YAML).
pub(super) fn text(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A text value, or `null`.
pub(super) fn opt(o: Option<&str>) -> String {
    o.map(text).unwrap_or_else(|| "null".into())
}

/// A path, quoted.
pub(super) fn path(p: &Path) -> String {
    text(&p.to_string_lossy())
}

/// A duration in seconds, as the `*_sec` keys take it.
pub(super) fn secs(d: Duration) -> String {
    keys::seconds_text(d.as_secs_f64())
}

/// A list of text values in flow style: `["a", "b"]`.
pub(super) fn list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|a| text(a)).collect();
    format!("[{}]", items.join(", "))
}

/// A secret's three keys from where it came from (`literal`, `file:PATH`, `env:NAME`): the literal shows
/// as `<secret>`, the file's path and the variable's name as they were written.
pub(super) fn put_secret(y: &mut EffectiveYaml, keys: [Option<&Key>; 3], source: Option<&str>) {
    let [literal, file, env] = keys;
    let from = |prefix: &str| opt(source.and_then(|s| s.strip_prefix(prefix)));
    if let Some(k) = literal {
        let shown = if source == Some("literal") {
            text("<secret>")
        } else {
            "null".into()
        };
        y.put(k, shown);
    }
    if let Some(k) = file {
        y.put(k, from("file:"));
    }
    if let Some(k) = env {
        y.put(k, from("env:"));
    }
}

/// The effective config being written: a section header before the first key of each section.
#[derive(Default)]
pub(super) struct EffectiveYaml {
    /// The YAML so far.
    pub(super) text: String,
    /// The section of the last key written (`""` before the first).
    section: &'static str,
}

impl EffectiveYaml {
    /// Writes `key: value`; a `value` starting with a newline (a block mapping) follows the colon directly.
    pub(super) fn put(&mut self, key: &Key, value: String) {
        if key.section() != self.section {
            if !self.text.is_empty() {
                self.text.push('\n');
            }
            self.section = key.section();
            self.text += self.section;
            self.text += ":\n";
        }
        let gap = if value.starts_with('\n') { "" } else { " " };
        self.text += &format!("  {}:{gap}{value}\n", key.leaf());
    }
}
