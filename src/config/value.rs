//! One helper per kind of value (seconds, count, absolute path, file, …): each takes the [`Key`] and says
//! the problem and the fix from the key table, so that every key of a kind reads alike.
//!
//! Owns: those helpers and the lower bounds of the `*_sec` keys. Must never: know a section; a helper is
//! about a kind of value, whatever key carries it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::Key;
use super::{ConfigError, S, Validator};

/// Shortest `watch.poll_interval_sec`: below it the loop would call `sacct` many times a second.
pub(super) const MIN_POLL_SEC: f64 = 0.1;
/// Shortest `job.command_timeout_sec`: `sbatch` and `sacct` take tens of milliseconds when all is well,
/// and a lost answer costs a key lookup.
pub(super) const MIN_COMMAND_TIMEOUT_SEC: f64 = 1.0;
/// Shortest `behavior.submit_backoff_sec` and `submit_backoff_max_sec`.
pub(super) const MIN_BACKOFF_SEC: f64 = 0.1;
/// `job.lost_after_sec`: a job unseen for less than a second is not lost, it is between two looks.
pub(super) const MIN_LOST_AFTER_SEC: f64 = 1.0;

impl Validator<'_> {
    pub(super) fn err(
        &self,
        key: &str,
        line: Option<u64>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            line: line.filter(|l| *l > 0),
            problem: problem.into(),
            fix: fix.into(),
            detail: None,
        }
    }

    /// A number of seconds of at least `min`: a lower bound on every `*_sec` key, so that a typo such as
    /// `1e-9` cannot turn a poll into a busy loop or a timeout into an instant failure.
    pub(super) fn seconds(
        &self,
        key: &Key,
        v: &S<f64>,
        default: f64,
        min: f64,
    ) -> Result<Duration, ConfigError> {
        let (value, line) = match v {
            Some(s) => (s.value, Some(s.referenced.line())),
            None => (default, None),
        };
        if !value.is_finite() || value < min {
            let bound = if min == 0.0 {
                "0 or more".to_string()
            } else {
                format!("at least {min}")
            };
            return Err(self.err(
                key.name,
                line,
                format!("must be a number of seconds {bound}, found {value}"),
                format!(
                    "write e.g. `{}: {}` (fractions like 0.5 are fine)",
                    key.leaf(),
                    default
                ),
            ));
        }
        if value > 1e9 {
            return Err(self.err(
                key.name,
                line,
                format!("{value} seconds is too long"),
                "use a value below 1e9",
            ));
        }
        Ok(Duration::from_secs_f64(value))
    }

    pub(super) fn count(
        &self,
        key: &Key,
        v: &S<i64>,
        default: i64,
        min: i64,
    ) -> Result<u32, ConfigError> {
        let (value, line) = match v {
            Some(s) => (s.value, Some(s.referenced.line())),
            None => (default, None),
        };
        if value < min || value > i64::from(u32::MAX) {
            return Err(self.err(
                key.name,
                line,
                format!("must be a whole number of at least {min}, found {value}"),
                format!("write e.g. `{}: {}`", key.leaf(), default.max(min)),
            ));
        }
        Ok(value as u32)
    }

    pub(super) fn absolute(
        &self,
        key: &Key,
        v: &S<String>,
        default: &str,
    ) -> Result<PathBuf, ConfigError> {
        let (value, line) = match v {
            Some(s) => (s.value.clone(), Some(s.referenced.line())),
            None => (default.to_string(), None),
        };
        let p = PathBuf::from(&value);
        if value.is_empty() || !p.is_absolute() {
            return Err(self.err(
                key.name,
                line,
                format!("must be an absolute path, found {value:?}"),
                format!("write the full path, e.g. `{}: {}`", key.leaf(), default),
            ));
        }
        Ok(p)
    }

    /// An absolute path to a file: also refused when a directory is there already (the daemon would fail
    /// on it at once, or at the first failed job).
    pub(super) fn file(
        &self,
        key: &Key,
        v: &S<String>,
        default: &str,
    ) -> Result<PathBuf, ConfigError> {
        let p = self.absolute(key, v, default)?;
        if std::fs::metadata(&p).is_ok_and(|m| m.is_dir()) {
            return Err(self.err(
                key.name,
                v.as_ref().map(|s| s.referenced.line()),
                format!("`{}` is a directory, not a file", p.display()),
                format!(
                    "name a file, e.g. `{}: {}`",
                    key.leaf(),
                    p.join(Path::new(default).file_name().unwrap_or_default())
                        .display()
                ),
            ));
        }
        Ok(p)
    }
}
