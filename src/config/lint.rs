//! A look at the config's text before the YAML parser: what the parser would stop at one by one, or report
//! in its own words, is found here all at once, with the real line and column and a fix in ours — a tab in
//! the indentation, a key that appears twice, a misspelt key (did you mean …), a key in the wrong section
//! (it belongs under `behavior:`), an unknown section.
//!
//! Owns: that line-based pass over the block-style YAML the config is written in. Must never: decide what a
//! value means (the parser and the validator do), or refuse what the parser would accept (flow style, quoted
//! keys and anything it does not understand are left alone).

use std::collections::HashMap;

use super::keys::{self, Key};

/// One problem found in the text: 1-based line, 1-based column, the dotted key (when known), what is
/// wrong, what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line.
    pub line: u64,
    /// 1-based column, where it tells more than the line (a tab).
    pub column: Option<u64>,
    /// Dotted key, or empty.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// What to write instead.
    pub fix: String,
}

/// The sections of the key table, in its order (`watch`, `job`, `behavior`, …).
fn sections() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in keys::ALL {
        if !out.contains(&k.section()) {
            out.push(k.section());
        }
    }
    out
}

/// `watch, job, behavior and metrics`, from the table.
fn sections_in_words() -> String {
    let s = sections();
    match s.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => s.join(""),
    }
}

/// A `key:` at the start of a line (after its indentation), if the line is one.
fn key_of(line: &str) -> Option<(usize, &str)> {
    let body = line.trim_start_matches(' ');
    let indent = line.len() - body.len();
    let (k, _) = body.split_once(':')?;
    let k = k.trim_end();
    (!k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some((indent, k))
}

/// Levenshtein distance between two words (for "did you mean"), in characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `candidates` to `word`, if it is close enough to be a misspelling.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.len() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

fn keys_of(section: &str) -> impl Iterator<Item = &'static Key> + '_ {
    keys::ALL.iter().filter(move |k| k.section() == section)
}

/// Every problem the pass finds, in the order of the file.
pub fn lint(text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut section: Option<(&str, bool)> = None; // (name, known)
    let mut seen: HashMap<String, u64> = HashMap::new();
    // Indentation of the current section's keys: deeper lines belong to a key's value (env, lists).
    let mut key_indent: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let lead: String = line
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .collect();
        if let Some(col) = lead.find('\t') {
            out.push(Finding {
                line: n,
                column: Some(col as u64 + 1),
                key: String::new(),
                problem: "a tab in the indentation: YAML indents with spaces only".into(),
                fix: "replace the tab with spaces (two per level, as in the rest of the file)"
                    .into(),
            });
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let Some((indent, k)) = key_of(line) else {
            continue;
        };
        if indent == 0 {
            key_indent = None;
            let known = sections().contains(&k);
            section = Some((k, known));
            if !seen.contains_key(k) {
                seen.insert(k.to_string(), n);
            } else {
                out.push(duplicate(k, seen[k], n));
            }
            if !known {
                out.push(unknown_section(n, k));
            }
            continue;
        }
        let Some((sec, true)) = section else { continue };
        match key_indent {
            None => key_indent = Some(indent),
            Some(ki) if indent > ki => continue, // inside a value (`env:` entries, a list)
            Some(ki) if indent < ki => {
                out.push(Finding {
                    line: n,
                    column: None,
                    key: format!("{sec}.{k}"),
                    problem: format!(
                        "`{k}` is indented less than the other keys of `{sec}:` ({ki} spaces)"
                    ),
                    fix: format!("indent it by {ki} spaces, like the keys above it"),
                });
                continue;
            }
            Some(_) => {}
        }
        let dotted = format!("{sec}.{k}");
        if let Some(first) = seen.get(&dotted) {
            out.push(duplicate(&dotted, *first, n));
            continue;
        }
        seen.insert(dotted.clone(), n);
        if keys_of(sec).any(|x| x.leaf() == k) {
            continue;
        }
        let (problem, fix) = unknown_key(sec, k);
        out.push(Finding {
            line: n,
            column: None,
            key: dotted,
            problem,
            fix,
        });
    }
    out
}

/// A top-level `k:` that is not a section: a key written as one, a misspelt section, or nothing we know.
fn unknown_section(line: u64, k: &str) -> Finding {
    let (problem, fix) = match keys::ALL.iter().find(|x| x.leaf() == k) {
        Some(x) => (
            format!(
                "`{k}` is not a section: it is a key that belongs under `{}:`",
                x.section()
            ),
            format!("indent it under `{}:`, as `  {k}: …`", x.section()),
        ),
        None => match closest(k, sections().into_iter()) {
            Some(s) => (
                format!("unknown section `{k}`"),
                format!(
                    "did you mean `{s}:`? The sections are {}",
                    sections_in_words()
                ),
            ),
            None => (
                format!("unknown section `{k}`"),
                format!("remove it; the sections are {}", sections_in_words()),
            ),
        },
    };
    Finding {
        line,
        column: None,
        key: k.to_string(),
        problem,
        fix,
    }
}

/// What is wrong with `k` in section `sec`, which has no such key, and the fix: it belongs to another
/// section, or it is misspelt (here or in another section), or it is unknown.
fn unknown_key(sec: &str, k: &str) -> (String, String) {
    let elsewhere = keys::ALL.iter().find(|x| x.leaf() == k);
    match (elsewhere, closest(k, keys_of(sec).map(Key::leaf))) {
        (Some(x), _) => (
            format!("`{k}` belongs under `{}:`, not `{sec}:`", x.section()),
            format!("move the line to the `{}:` section", x.section()),
        ),
        (None, Some(c)) => (
            format!("unknown key `{k}` in `{sec}:`"),
            format!("did you mean `{c}`? (`dirwatcher check-config --help` lists every key)"),
        ),
        (None, None) => match closest(k, keys::ALL.iter().map(Key::leaf)) {
            // Misspelt and in the wrong section.
            Some(c) => (
                format!("unknown key `{k}` in `{sec}:`"),
                format!(
                    "did you mean `{c}`? It belongs under `{}:`",
                    keys::ALL.iter().find(|x| x.leaf() == c).map_or("", |x| x.section())
                ),
            ),
            None => (
                format!("unknown key `{k}` in `{sec}:`"),
                "remove it or correct its spelling; `dirwatcher check-config --help` lists every key"
                    .into(),
            ),
        },
    }
}

fn duplicate(key: &str, first: u64, line: u64) -> Finding {
    Finding {
        line,
        column: None,
        key: key.to_string(),
        problem: format!("`{key}` is given twice (first on line {first})"),
        fix: "keep one of the two lines".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(u64, Option<u64>, String, String)> {
        lint(text)
            .into_iter()
            .map(|f| (f.line, f.column, f.key, f.problem))
            .collect()
    }

    #[test]
    fn a_clean_config_has_no_findings() {
        let text = "watch:\n  root: /data\n  # a comment\njob:\n  wrap_cmd: echo\n  env:\n    A: b\n  extra_args:\n    - --qos=high\nbehavior:\n  max_retries: 1\n";
        assert_eq!(problems(text), []);
    }

    #[test]
    fn every_problem_is_found_in_one_pass_with_its_real_line() {
        let text = "watch:\n  root: /data\n  pol_interval_sec: 5\n\tstability_checks: 2\njob:\n  wrap_cmd: echo\n  delete_on_success: true\n  wrap_cmd: again\nbehaviour:\n  max_retries: 1\n";
        let p = problems(text);
        assert_eq!(p.len(), 5, "{p:#?}");
        assert_eq!((p[0].0, p[0].2.as_str()), (3, "watch.pol_interval_sec"));
        assert!(
            lint(text)[0]
                .fix
                .contains("did you mean `poll_interval_sec`")
        );
        assert_eq!(
            (p[1].0, p[1].1),
            (4, Some(1)),
            "the tab's own line and column"
        );
        assert!(p[2].3.contains("belongs under `behavior:`"), "{p:?}");
        assert!(p[3].3.contains("given twice (first on line 6)"), "{p:?}");
        assert_eq!(p[4].2, "behaviour");
        assert!(lint(text)[4].fix.contains("did you mean `behavior:`"));
    }

    #[test]
    fn a_misspelt_key_in_the_wrong_section_is_found_in_its_own() {
        let f = &lint("behavior:\n  poll_intervl_sec: 5\n")[0];
        assert_eq!(
            f.fix,
            "did you mean `poll_interval_sec`? It belongs under `watch:`"
        );
    }

    #[test]
    fn a_key_written_as_a_section_is_placed() {
        let f = &lint("delete_on_success: true\n")[0];
        assert!(f.problem.contains("belongs under `behavior:`"), "{f:?}");
    }
}
