//! The parser's errors in words: an unknown key, a wrong type, bad YAML, each named by its key and line,
//! with the fix its kind of value (or its own list of words) gives.
//!
//! Owns: the mapping of `serde_saphyr`'s errors to [`ConfigError`]s. Must never: be needed by a section
//! (they report their own errors; this is for what the parser refused before them).

use std::path::Path;

use super::error::ConfigError;
use super::keys::{self, DefaultValue, Key};
use super::notify::EmailVia;
use super::value::{Word, parse_word, word_fix, words_fix};

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
        self::type_error(k, written.as_deref())
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

/// What the parser's type error on `key` says, by the kind of its value: the problem, with what was
/// `written`, and the fix. A key whose kind its default does not tell ([`own_shape`]) says its own.
pub(super) fn type_error(key: &Key, written: Option<&str>) -> (String, String) {
    let found = written
        .map(|w| format!(", found `{w}`"))
        .unwrap_or_default();
    let leaf = key.leaf();
    if let Some((expected, fix)) = own_shape(key, written) {
        return (format!("expected {expected}{found}"), fix);
    }
    match key.default {
        DefaultValue::Seconds(d) => (
            format!("expected a number of seconds{found}"),
            format!(
                "a number of seconds without a unit, e.g. `{leaf}: {}` (fractions like 0.5 are fine)",
                keys::seconds_text(d)
            ),
        ),
        DefaultValue::Count(n) => (
            format!("expected a whole number{found}"),
            format!("a whole number without quotes, e.g. `{leaf}: {}`", n.max(1)),
        ),
        DefaultValue::Switch(_) => (
            format!("expected true or false{found}"),
            format!("write `{leaf}: true` or `{leaf}: false`"),
        ),
        DefaultValue::EmptyList => {
            let item = written
                .map(|w| w.trim_matches(['"', '\'']).to_string())
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "--qos=high".into());
            (
                format!("expected a list{found}"),
                format!("write the list form, one item per argument: `{leaf}: [{item:?}]`"),
            )
        }
        DefaultValue::EmptyMap => (
            format!("expected a mapping of names to values{found}"),
            format!("write e.g. `{leaf}: {{NAME: value}}`, or one `NAME: value` per line below it"),
        ),
        _ => (
            format!("expected text{found}"),
            format!(
                "write the value as text, in quotes if it contains `:` or `#`: `{leaf}: \"…\"`"
            ),
        ),
    }
}

/// A word key's fix, made when asked for.
type WordFix = fn() -> String;

/// The keys whose value is not what their default's kind says (a word of a list, words of a list, a
/// mapping of its own): what they expect, and their fix.
fn own_shape(key: &Key, written: Option<&str>) -> Option<(&'static str, String)> {
    use super::job::SUBMIT_RATE_FIX;
    use super::keys::ExecutorKind;
    use super::ready::ScopeWord;
    use crate::engine::Preset;
    use crate::engine::notice::{EventKind, WebhookFormat};
    let one_word: [(&Key, WordFix); 5] = [
        (ExecutorKind::KEY, word_fix::<ExecutorKind>),
        (Preset::KEY, word_fix::<Preset>),
        (ScopeWord::KEY, word_fix::<ScopeWord>),
        (EmailVia::KEY, word_fix::<EmailVia>),
        (WebhookFormat::KEY, word_fix::<WebhookFormat>),
    ];
    if let Some((_, fix)) = one_word.iter().find(|(k, _)| *k == key) {
        return Some(("one word", fix()));
    }
    if key == EventKind::KEY {
        // What was written, as a list, when every word of it is an event (`failed` → `[failed]`): the
        // fix keeps what was meant rather than offer someone else's example.
        let words: Vec<&str> = written
            .map(|w| w.trim_matches(['"', '\'', '[', ']']))
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|w| !w.is_empty())
            .collect();
        let fix = if !words.is_empty() && words.iter().all(|w| parse_word::<EventKind>(w).is_some())
        {
            format!(
                "write it as a list: `{}: [{}]`",
                key.leaf(),
                words.join(", ")
            )
        } else {
            words_fix::<EventKind>(super::notify::EVENTS_EXAMPLE)
        };
        return Some(("a list", fix));
    }
    if key == &keys::JOB_SUBMIT_RATE {
        // A bare number is most likely meant as calls per second: that rate, with as many at once.
        let per_sec = written
            .and_then(|w| w.trim().parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n > 0.0);
        let fix = match per_sec {
            Some(n) => {
                let burst = n.ceil().max(1.0);
                format!(
                    "a rate is a mapping: for {n} calls per second write `submit_rate: {{burst: {burst}, \
                     per_sec: {n}}}` (`burst`: calls at once before the rate applies)"
                )
            }
            None => SUBMIT_RATE_FIX.to_string(),
        };
        return Some(("a mapping of `burst` and `per_sec` to numbers", fix));
    }
    None
}
