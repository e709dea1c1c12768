//! One helper per kind of value (seconds, count, absolute path, file, one word of a list, words of a list):
//! each takes the [`Key`], falls back on the table's default, and says the problem and the fix in the same
//! words for every key of its kind — also when the parser refuses the value's type ([`type_error`]).
//!
//! Owns: those helpers, the lower bounds of the `*_sec` keys, and [`Word`]: the one list of words a key
//! of that kind takes. Must never: know a section; a helper is about a kind of value, whatever key carries
//! it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{DefaultValue, Key};
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
    /// The default is the table's (`DefaultValue::Seconds`).
    pub(super) fn seconds(&self, key: &Key, v: &S<f64>, min: f64) -> Result<Duration, ConfigError> {
        let DefaultValue::Seconds(default) = key.default else {
            unreachable!("`{}` is not a number of seconds in the key table", key.name)
        };
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

    /// A whole number of at least `min`, the table's default (`DefaultValue::Count`) when absent.
    pub(super) fn count(&self, key: &Key, v: &S<i64>, min: i64) -> Result<u32, ConfigError> {
        let DefaultValue::Count(default) = key.default else {
            unreachable!("`{}` is not a whole number in the key table", key.name)
        };
        self.count_or(key, v, default, min)
    }

    /// A whole number of at least `min`, `default` when absent (a default worked out at load time).
    pub(super) fn count_or(
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

    /// An absolute path; `default` stands in when the key is absent, and is the example of the fix.
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

/// A value that is one word of a fixed list (`executor: slurm`). The list is written once, as the values
/// in [`Word::ALL`] and their [`Word::word`]; reading a word and the fix that offers them both come from
/// it, so that a new word cannot be accepted without being offered, or offered without being accepted.
pub(super) trait Word: Copy + 'static {
    /// The key whose value it is.
    const KEY: &'static Key;
    /// Every value, in the order the fix offers them.
    const ALL: &'static [Self];
    /// Other words read as a value without being offered (`mattermost` is `slack`).
    const ALIASES: &'static [(&'static str, Self)] = &[];
    /// The word as written in the config.
    fn word(self) -> &'static str;
    /// What the word means, where the word alone does not say it, for the fix.
    fn gloss(self) -> Option<&'static str> {
        None
    }
    /// What is wrong with `found`, which is not one of the words.
    fn problem(found: &str) -> String;
}

/// The value `w` stands for, if it is one of `T`'s words (or aliases).
pub(super) fn parse_word<T: Word>(w: &str) -> Option<T> {
    T::ALL
        .iter()
        .copied()
        .find(|v| v.word() == w)
        .or_else(|| T::ALIASES.iter().find(|(a, _)| *a == w).map(|(_, v)| *v))
}

/// `write `key: a` (gloss), `key: b` or `key: c``, and `, or leave it out` for a key that may be absent.
pub(super) fn word_fix<T: Word>() -> String {
    let leaf = T::KEY.leaf();
    let offers: Vec<String> = T::ALL
        .iter()
        .map(|v| match v.gloss() {
            Some(g) => format!("`{leaf}: {}` ({g})", v.word()),
            None => format!("`{leaf}: {}`", v.word()),
        })
        .collect();
    let leave = if T::KEY.default == DefaultValue::Unset {
        ", or leave it out"
    } else {
        ""
    };
    format!("write {}{leave}", in_words(&offers, "or"))
}

/// `list any of `a`, `b`, `c`, e.g. `key: [example]``, for a key that takes several of `T`'s words.
pub(super) fn words_fix<T: Word>(example: &str) -> String {
    let words: Vec<String> = T::ALL.iter().map(|v| format!("`{}`", v.word())).collect();
    format!(
        "list any of {}, e.g. `{}: {example}`",
        words.join(", "),
        T::KEY.leaf()
    )
}

/// `a, b or c`.
pub(super) fn in_words(items: &[String], last: &str) -> String {
    match items.split_last() {
        Some((l, rest)) if !rest.is_empty() => format!("{} {last} {l}", rest.join(", ")),
        _ => items.join(""),
    }
}

impl Validator<'_> {
    /// One of `T`'s words; the table's default when absent (`None` when the table has none).
    pub(super) fn word<T: Word>(&self, v: &S<String>) -> Result<Option<T>, ConfigError> {
        let Some(s) = v else {
            let default = T::KEY.default.yaml();
            return Ok(default.and_then(|d| parse_word(&d)));
        };
        let w = s.value.trim();
        parse_word(w).map(Some).ok_or_else(|| {
            self.err(
                T::KEY.name,
                Some(s.referenced.line()),
                T::problem(w),
                word_fix::<T>(),
            )
        })
    }
}
