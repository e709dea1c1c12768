//! The readiness keys of `watch:` (`ready_*`, `ignore_patterns`, `quiet_*`): when a directory counts as
//! ready, a preset expanded.
//!
//! Owns: their validation into [`ReadyRules`] and their lines of the effective config. Must never: look at a
//! directory (the engine's readiness check does).

use serde_saphyr::Spanned;

use super::keys::{self, Key};
use super::value::{Word, in_words};
use super::watch::{AnyOfItem, RawWatch};
use super::yaml::{self, EffectiveYaml};
use super::{ConfigError, Validator, WatchConfig};
use crate::engine::markers::MARKER_DEPTH_MAX;
use crate::engine::{ContentCheck, Preset, QuietScope, ReadyRules};

impl Validator<'_> {
    /// A marker or ignore pattern: one path component (a glob is fine).
    pub(super) fn marker(
        &self,
        key: &Key,
        line: Option<u64>,
        m: &str,
    ) -> Result<String, ConfigError> {
        if m.is_empty() || m.contains('/') || m == "." || m == ".." || m.contains('\0') {
            return Err(self.err(
                key.name,
                line,
                format!("must list plain file names or globs, found {m:?}"),
                format!(
                    "write names without `/`, e.g. `{}: [CopyComplete.txt]`",
                    key.leaf()
                ),
            ));
        }
        Ok(m.to_string())
    }

    /// A readiness marker: a name or glob in the directory, or a relative path below it whose components
    /// are names or globs (`*/*/final_summary_*.txt`), at most [`MARKER_DEPTH_MAX`] of them.
    pub(super) fn marker_path(
        &self,
        key: &Key,
        line: Option<u64>,
        m: &str,
    ) -> Result<String, ConfigError> {
        if !m.contains('/') {
            return self.marker(key, line, m);
        }
        let parts: Vec<&str> = m.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
            || m.contains('\0')
        {
            return Err(self.err(
                key.name,
                line,
                format!("must be a name, or a relative path below the directory, found {m:?}"),
                format!(
                    "write it without a leading `/`, `//`, `.` or `..`, e.g. `{}: [\"*/*/final_summary_*.txt\"]`",
                    key.leaf()
                ),
            ));
        }
        if parts.len() > MARKER_DEPTH_MAX {
            return Err(self.err(
                key.name,
                line,
                format!(
                    "is too deep: {m:?} has {} levels, markers are looked for at most {MARKER_DEPTH_MAX} levels \
                     below the directory",
                    parts.len()
                ),
                format!(
                    "watch the directory nearer to the marker (a deeper `watch.root`), so that the marker is \
                     at most {MARKER_DEPTH_MAX} levels below each directory"
                ),
            ));
        }
        Ok(m.to_string())
    }

    /// `watch.ready_*`, `ignore_patterns` and `quiet_*`: the readiness rules, a preset expanded.
    pub(super) fn ready(
        &self,
        w: &RawWatch,
        signal: &str,
    ) -> Result<(ReadyRules, Option<Preset>), ConfigError> {
        use keys::*;
        let preset = self.word::<Preset>(&w.ready_preset)?;
        let all_of = w.ready_all_of.as_ref().filter(|v| !v.value.is_empty());
        let any_of = w.ready_any_of.as_ref().filter(|v| !v.value.is_empty());
        if let (Some(_), Some(a)) = (all_of, any_of) {
            return Err(self.err(
                WATCH_READY_ANY_OF.name,
                Some(a.referenced.line()),
                "cannot be given together with `ready_all_of`",
                "keep one: `ready_all_of` (every marker) or `ready_any_of` (any one item)",
            ));
        }
        let content_given = w.ready_content_file.is_some() || w.ready_content_match.is_some();
        if let Some(p) = preset
            && let Some(k) = all_of
                .map(|v| (WATCH_READY_ALL_OF.name, v.referenced.line()))
                .or(any_of.map(|v| (WATCH_READY_ANY_OF.name, v.referenced.line())))
                .or(w
                    .ready_content_file
                    .as_ref()
                    .map(|v| (WATCH_READY_CONTENT_FILE.name, v.referenced.line())))
                .or(w
                    .ready_content_match
                    .as_ref()
                    .map(|v| (WATCH_READY_CONTENT_MATCH.name, v.referenced.line())))
        {
            return Err(self.err(
                k.0,
                Some(k.1),
                format!("cannot be given together with `ready_preset: {}`", p.name()),
                "remove it (the preset sets the markers; `check-config` shows them), or remove the preset and \
                 write the markers yourself",
            ));
        }
        let (mut alternatives, mut content, mut ignore) = match preset {
            Some(p) => p.rules(signal),
            None => (vec![vec![signal.to_string()]], None, Vec::new()),
        };
        if let Some(v) = all_of {
            let l = Some(v.referenced.line());
            alternatives = vec![
                v.value
                    .iter()
                    .map(|m| self.marker_path(&WATCH_READY_ALL_OF, l, m))
                    .collect::<Result<_, _>>()?,
            ];
        }
        if let Some(v) = any_of {
            alternatives = self.any_of(v)?;
        }
        if content_given {
            content = Some(self.content_check(w)?);
        }
        if let Some(v) = &w.ignore_patterns {
            let l = Some(v.referenced.line());
            for p in &v.value {
                let p = self.marker(&WATCH_IGNORE_PATTERNS, l, p)?;
                if !ignore.contains(&p) {
                    ignore.push(p);
                }
            }
        }
        let quiet = self.seconds(&WATCH_QUIET_SEC, &w.quiet_sec, 0.0)?;
        let max_entries = self.count(&WATCH_QUIET_MAX_ENTRIES, &w.quiet_max_entries, 1)? as usize;
        let scope = match self.word::<ScopeWord>(&w.quiet_scope)? {
            Some(ScopeWord::Tree) => QuietScope::Tree,
            _ => QuietScope::Top,
        };
        let stale_after = self.seconds(&WATCH_STALE_TEMPORARY_SEC, &w.stale_temporary_sec, 1.0)?;
        let stale_blocks = w
            .stale_temporaries_block
            .unwrap_or(defaults::STALE_TEMPORARIES_BLOCK);
        Ok((
            ReadyRules {
                alternatives,
                content,
                ignore,
                stale_after,
                stale_blocks,
                quiet,
                scope,
                max_entries,
            },
            preset,
        ))
    }

    /// `watch.ready_any_of`: each item a marker, or a list of markers that must all be there.
    fn any_of(&self, v: &Spanned<Vec<AnyOfItem>>) -> Result<Vec<Vec<String>>, ConfigError> {
        use keys::WATCH_READY_ANY_OF;
        let l = Some(v.referenced.line());
        let mut alts = Vec::new();
        for item in &v.value {
            let alt: Vec<String> = match item {
                AnyOfItem::One(m) => vec![self.marker_path(&WATCH_READY_ANY_OF, l, m)?],
                AnyOfItem::All(ms) => ms
                    .iter()
                    .map(|m| self.marker_path(&WATCH_READY_ANY_OF, l, m))
                    .collect::<Result<_, _>>()?,
            };
            if alt.is_empty() {
                return Err(self.err(
                    WATCH_READY_ANY_OF.name,
                    l,
                    "has an empty list as an item",
                    "remove the `[]`, or list the markers that must all be there",
                ));
            }
            alts.push(alt);
        }
        Ok(alts)
    }

    /// `ready_content_file` and `ready_content_match`: both, an exact name and a regular expression.
    fn content_check(&self, w: &RawWatch) -> Result<ContentCheck, ConfigError> {
        use keys::*;
        let (Some(f), Some(m)) = (&w.ready_content_file, &w.ready_content_match) else {
            let (k, l) = match (&w.ready_content_file, &w.ready_content_match) {
                (Some(f), None) => (WATCH_READY_CONTENT_MATCH.name, f.referenced.line()),
                (_, Some(m)) => (WATCH_READY_CONTENT_FILE.name, m.referenced.line()),
                _ => unreachable!("one of them is given"),
            };
            return Err(self.err(
                k,
                Some(l),
                "is required when the other `ready_content_*` key is given",
                "give both, e.g. `ready_content_file: RunCompletionStatus.xml` and \
                     `ready_content_match: \"CompletionStatus>SuccessfullyCompleted<\"`",
            ));
        };
        let file = self.marker(
            &WATCH_READY_CONTENT_FILE,
            Some(f.referenced.line()),
            &f.value,
        )?;
        if crate::engine::readiness::is_glob(&file) {
            return Err(self.err(
                WATCH_READY_CONTENT_FILE.name,
                Some(f.referenced.line()),
                "must be one exact file name, not a glob",
                "write the status file's name, e.g. `RunCompletionStatus.xml`",
            ));
        }
        let pattern = regex::Regex::new(&m.value).map_err(|e| {
            self.err(
                WATCH_READY_CONTENT_MATCH.name,
                Some(m.referenced.line()),
                format!(
                    "is not a regular expression: {}",
                    e.to_string().lines().last().unwrap_or_default()
                ),
                "write a regular expression: a `(`, `)`, `[`, `]`, `{`, `}`, `.`, `*`, `+`, `?`, `|`, `^`, `$` \
                 or `\\` meant literally takes a `\\` before it (`\\[`), in single quotes so that YAML keeps \
                 every `\\`, e.g. `ready_content_match: 'Status>(Completed|Succeeded)<'`",
            )
        })?;
        Ok(ContentCheck {
            file,
            pattern,
            other: None,
        })
    }
}

/// The readiness keys, presets expanded: what the daemon really checks, and a config that loads to the
/// same rules.
pub(super) fn put(y: &mut EffectiveYaml, w: &WatchConfig) {
    use keys::*;
    let (q, list) = (yaml::text, yaml::list);
    let r = &w.ready;
    y.put(
        &WATCH_READY_PRESET,
        match w.preset {
            Some(p) => format!(
                "null  # `{}`, expanded into the keys below; source: {}",
                p.name(),
                p.source()
            ),
            None => "null".into(),
        },
    );
    if let [one] = r.alternatives.as_slice() {
        y.put(&WATCH_READY_ALL_OF, list(one));
        y.put(&WATCH_READY_ANY_OF, "[]".into());
    } else {
        let items: Vec<String> = r
            .alternatives
            .iter()
            .map(|a| match a.as_slice() {
                [m] => q(m),
                _ => list(a),
            })
            .collect();
        y.put(&WATCH_READY_ALL_OF, "[]".into());
        y.put(&WATCH_READY_ANY_OF, format!("[{}]", items.join(", ")));
    }
    match &r.content {
        Some(c) => {
            y.put(&WATCH_READY_CONTENT_FILE, q(&c.file));
            y.put(&WATCH_READY_CONTENT_MATCH, q(c.pattern.as_str()));
        }
        None => {
            y.put(&WATCH_READY_CONTENT_FILE, "null".into());
            y.put(&WATCH_READY_CONTENT_MATCH, "null".into());
        }
    }
    y.put(&WATCH_IGNORE_PATTERNS, list(&r.ignore));
    y.put(&WATCH_QUIET_SEC, seconds_text(r.quiet.as_secs_f64()));
    let scope = match r.scope {
        QuietScope::Top => "top",
        QuietScope::Tree => "tree",
    };
    y.put(&WATCH_QUIET_SCOPE, scope.into());
    y.put(&WATCH_QUIET_MAX_ENTRIES, r.max_entries.to_string());
    y.put(&WATCH_STALE_TEMPORARY_SEC, yaml::secs(r.stale_after));
    y.put(&WATCH_STALE_TEMPORARIES_BLOCK, r.stale_blocks.to_string());
}

impl Word for Preset {
    const KEY: &'static Key = &keys::WATCH_READY_PRESET;
    const ALL: &'static [Self] = Preset::ALL;
    fn word(self) -> &'static str {
        self.name()
    }
    fn gloss(self) -> Option<&'static str> {
        Some(match self {
            Preset::Illumina => "NovaSeq 6000/X, NextSeq 1000/2000: waits for `CopyComplete.txt`",
            Preset::IlluminaRta => "MiSeq, HiSeq, NextSeq 500/550: waits for `RTAComplete.txt`",
            Preset::Ont => "MinKNOW: `final_summary_*.txt` in every run folder",
            Preset::Rsync => "`signal_filename`, held while rsync/WinSCP temporaries are there",
        })
    }
    fn problem(found: &str) -> String {
        format!("is not a preset: {found:?}")
    }
}

/// The words of `watch.quiet_scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScopeWord {
    Top,
    Tree,
}

impl Word for ScopeWord {
    const KEY: &'static Key = &keys::WATCH_QUIET_SCOPE;
    const ALL: &'static [Self] = &[ScopeWord::Top, ScopeWord::Tree];
    fn word(self) -> &'static str {
        match self {
            ScopeWord::Top => "top",
            ScopeWord::Tree => "tree",
        }
    }
    fn gloss(self) -> Option<&'static str> {
        (self == ScopeWord::Top).then_some("the directory's own entries")
    }
    fn problem(found: &str) -> String {
        let words: Vec<String> = Self::ALL
            .iter()
            .map(|w| format!("`{}`", w.word()))
            .collect();
        format!("must be {}, found {found:?}", in_words(&words, "or"))
    }
}
