//! What a config error is and how it reads: [`ConfigError`] (file, line, key, problem, fix), and the
//! mapping of the YAML parser's own errors onto one that names the key and says what to write.
//!
//! Owns: the error type and the parser-error wording. Must never: validate a value (the sections do), or
//! read anything but the text it is given.

use std::fmt;
use std::path::{Path, PathBuf};

use super::keys;

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

/// Turns a parser error (unknown key, wrong type, bad YAML) into a [`ConfigError`] that names the key.
pub(super) fn serde_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> ConfigError {
    let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
    // The crate's Display renders a source snippet; the first line is the message itself.
    let full = e.to_string();
    let mut problem = full
        .lines()
        .next()
        .unwrap_or("cannot parse the YAML")
        .trim()
        .to_string();
    for prefix in ["error: ", "Error: "] {
        if let Some(p) = problem.strip_prefix(prefix) {
            problem = p.to_string();
        }
    }
    // Drop the crate's own "line N column M: " (the line is reported separately).
    if let Some(rest) = problem.strip_prefix("line ")
        && let Some((_, msg)) = rest.split_once(": ")
    {
        problem = msg.to_string();
    }
    let key = line.and_then(|l| key_at_line(text, l)).unwrap_or_default();
    // What was written, for the fix line (`5s`, `"--qos=high"`).
    let written = line
        .and_then(|l| text.lines().nth(usize::try_from(l).ok()?.checked_sub(1)?))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let known = keys::ALL.iter().find(|k| k.name == key);
    // The parser's words for a value of the wrong type (`invalid f64`, `invalid floating point`, `invalid
    // type: string …, expected a sequence`, `expected string scalar`, …).
    let type_error = problem.contains("invalid")
        || problem.contains("expected string")
        || problem.contains("expected a")
        || problem.contains("expected sequence")
        || problem.contains("expected mapping");
    let (problem, fix) = if problem.contains("unknown field") {
        (problem, "remove the key or correct its spelling; `dirwatcher check-config --help` lists every key".to_string())
    } else if let (true, Some(k)) = (type_error, known) {
        super::value::type_error(k, written.as_deref())
    } else if type_error {
        (problem, "give the value the type shown (numbers without quotes, `true`/`false` for switches, a list in `[...]`)".into())
    } else {
        (problem, "fix the YAML syntax at that line".to_string())
    };
    ConfigError {
        file: path.to_path_buf(),
        key,
        line,
        problem,
        fix,
        detail: None,
    }
}

/// The dotted key defined on a 1-based line (`watch.stability_checks`), found from indentation.
fn key_at_line(text: &str, line: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = usize::try_from(line).ok()?.checked_sub(1)?;
    let key_of = |l: &str| -> Option<(usize, String)> {
        let indent = l.len() - l.trim_start().len();
        let (k, _) = l.trim_start().split_once(':')?;
        let k = k.trim();
        (!k.is_empty()
            && !k.starts_with('#')
            && !k.starts_with('-')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| (indent, k.to_string()))
    };
    let (mut indent, key) = key_of(lines.get(idx)?)?;
    let mut parts = vec![key];
    for l in lines[..idx].iter().rev() {
        if indent == 0 {
            break;
        }
        if let Some((i, k)) = key_of(l)
            && i < indent
        {
            parts.push(k);
            indent = i;
        }
    }
    parts.reverse();
    Some(parts.join("."))
}
