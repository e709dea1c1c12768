//! What a config error is and how it reads: [`ConfigError`] (file, line, key, problem, fix), and the
//! mapping of the YAML parser's own errors onto one that names the key and says what to write.
//!
//! Owns: the error type and the parser-error wording. Must never: validate a value (the sections do), or
//! read anything but the text it is given.

use std::fmt;
use std::path::PathBuf;

/// Where a validation error points: a key path (`watch.root`) and, when known, a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file the error is about.
    pub file: PathBuf,
    /// Dotted key path, e.g. `watch.poll_interval_sec`; empty when the error is about the whole file.
    pub key: String,
    /// 1-based line in the file, when the parser knows it.
    pub line: Option<u64>,
    /// What is wrong, in words.
    pub problem: String,
    /// What to write instead.
    pub fix: String,
    /// The column, and further errors found in the same pass; boxed, so that an error stays small to
    /// return.
    pub detail: Option<Box<Detail>>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config `{}`", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(column) = self.detail.as_ref().and_then(|d| d.column) {
            write!(f, " column {column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ", key `{}`", self.key)?;
        }
        write!(f, ": {}", self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        for m in self.detail.iter().flat_map(|d| &d.more) {
            write!(f, "\nerror: {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// What few config errors carry: a column, and the other errors of the same pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// 1-based column, when it matters (a tab).
    pub column: Option<u64>,
    /// Further errors found in the same pass (each said with its own line and fix).
    pub more: Vec<ConfigError>,
}

impl ConfigError {
    /// The first error, carrying the others; `None` when there are none.
    pub(super) fn all(errors: Vec<ConfigError>) -> Option<ConfigError> {
        let mut it = errors.into_iter();
        let mut first = it.next()?;
        let more: Vec<ConfigError> = it.collect();
        if !more.is_empty() {
            first.detail.get_or_insert_with(Box::default).more = more;
        }
        Some(first)
    }
}
