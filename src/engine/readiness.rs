//! Readiness rules: whether a directory's markers say it is ready, from one look the scan gathered.
//!
//! Owns: the rule set (markers as names, globs or paths below, all-of or any-of, a content check on a
//! small file, ignore patterns for transfer temporaries, quiescence), the reason a directory is not ready, and the identity a ready directory hands to the stability tracker
//! and the ledger. Must never: read the clock or touch the file system (the scan gathers, this decides).
//!
//! Compatibility: the ledger stores one ready-file identity per generation. A ready directory's
//! [`ReadyDecision::Ready::primary`] is the identity of the first marker of the satisfied alternative, so
//! with the simple form (`signal_filename`, one marker) it is exactly the ready-file's identity as before.

use std::collections::hash_map::DefaultHasher;
use std::ffi::{OsStr, OsString};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::markers;
use super::model::ReadyIdentity;
pub use super::patterns::{glob_match, is_glob};

/// The most bytes of a content-checked file that are read (a status file is a few hundred bytes).
pub const CONTENT_LIMIT: u64 = 64 * 1024;

/// Default bound on the entries a look lists (`watch.quiet_max_entries`).
pub const TREE_ENTRIES_DEFAULT: usize = 100_000;

/// How many levels below a directory a look through its tree goes: one descriptor is open per level,
/// so the walk stays far below the default limit of 1,024 open files, and a deeper tree is held back
/// as "too deep" (never as a permission problem). No instrument or copy writes anywhere near this deep.
pub const TREE_DEPTH_MAX: usize = 256;

/// A content check: when `file` is present, its text must match `pattern`.
#[derive(Debug, Clone)]
pub struct ContentCheck {
    /// A plain file name directly in the directory.
    pub file: String,
    /// The regular expression the file's text must match.
    pub pattern: regex::Regex,
    /// When it does not match: what the file says instead (group 1, else the whole match), for the
    /// words of the hold (`RunErrored`). Only the presets have one; it never lets a run through.
    pub other: Option<regex::Regex>,
}

/// How much of a directory quiescence watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuietScope {
    /// The directory's own entries (names, sizes, mtimes): cheap, one listing.
    Top,
    /// Every entry below it, up to [`ReadyRules::max_entries`] (past it the directory is held back with a
    /// message).
    Tree,
}

/// The readiness rule set of a root.
#[derive(Debug, Clone)]
pub struct ReadyRules {
    /// Ready when every marker of any one alternative is a regular file in the directory. Each marker is
    /// a name or a glob (`*`, `?`). `[[m]]` is the simple form; all-of is one alternative, any-of one
    /// alternative per marker.
    pub alternatives: Vec<Vec<String>>,
    /// A status file whose text must say the run succeeded, when it is present.
    pub content: Option<ContentCheck>,
    /// Globs of transfer temporaries: while one is present anywhere in the directory's tree it is held
    /// back.
    pub ignore: Vec<String>,
    /// A temporary unchanged for this long is stale: said (once), and shown with how long it has held.
    pub stale_after: Duration,
    /// Whether a stale temporary still holds the directory back.
    pub stale_blocks: bool,
    /// How long nothing in the directory must have changed (zero: not watched).
    pub quiet: Duration,
    /// What quiescence watches.
    pub scope: QuietScope,
    /// The most entries one look lists, the whole tree's together (a directory over it is held back).
    pub max_entries: usize,
}

impl ReadyRules {
    /// The simple form: one exact marker, no content check, no temporaries, no quiescence.
    pub fn simple(marker: &str) -> ReadyRules {
        ReadyRules {
            alternatives: vec![vec![marker.to_string()]],
            content: None,
            ignore: Vec::new(),
            stale_after: STALE_AFTER_DEFAULT,
            stale_blocks: true,
            quiet: Duration::ZERO,
            scope: QuietScope::Top,
            max_entries: TREE_ENTRIES_DEFAULT,
        }
    }

    /// True when the markers alone need a listing (a glob): a finished directory's recheck, which looks
    /// at its markers only, lists it then and only then.
    pub fn markers_need_listing(&self) -> bool {
        self.alternatives.iter().flatten().any(|m| is_glob(m))
    }

    /// True when a full look goes below the directory's own entries: for transfer temporaries anywhere
    /// in its tree, or for whole-tree quiescence.
    pub fn looks_through_tree(&self) -> bool {
        !self.ignore.is_empty() || (!self.quiet.is_zero() && self.scope == QuietScope::Tree)
    }

    /// True when a look must list the directory (a glob marker, temporaries or quiescence); otherwise
    /// the scan only stats the named markers, as the simple form always did.
    pub fn needs_listing(&self) -> bool {
        !self.ignore.is_empty()
            || !self.quiet.is_zero()
            || self
                .alternatives
                .iter()
                .flatten()
                .any(|m| is_glob(m) || markers::is_nested(m))
    }

    /// Every exact marker name (for a look that does not list).
    pub fn exact_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .alternatives
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if let Some(c) = &self.content {
            v.push(&c.file);
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The rules in words, for logs and `explain` (`CopyComplete.txt, or RTAComplete.txt and …`).
    pub fn describe(&self) -> String {
        let alts: Vec<String> = self
            .alternatives
            .iter()
            .map(|a| {
                a.iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            })
            .collect();
        let mut s = alts.join(", or ");
        if let Some(c) = &self.content {
            s.push_str(&format!(
                "; `{}`, when present, must match `{}`",
                c.file,
                c.pattern.as_str()
            ));
        }
        if !self.ignore.is_empty() {
            s.push_str(&format!(
                "; held back while any of {} is present anywhere in its tree",
                self.ignore
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !self.quiet.is_zero() {
            let what = match self.scope {
                QuietScope::Top => "its entries".to_string(),
                QuietScope::Tree => {
                    format!("anything in its tree (up to {} entries)", self.max_entries)
                }
            };
            s.push_str(&format!(
                "; {what} unchanged for {}s",
                self.quiet.as_secs_f64()
            ));
        }
        s
    }
}

/// Default of `watch.stale_temporary_sec`: a temporary unchanged for an hour is said to be stale (a transfer
/// that is alive writes into its temporary far more often, even at a low `--bwlimit`).
pub const STALE_AFTER_DEFAULT: Duration = Duration::from_secs(3600);

/// What a content-checked file looked like.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ContentLook {
    /// Not there.
    #[default]
    Absent,
    /// Its first bytes (at most [`CONTENT_LIMIT`]) and whether it was longer.
    Text {
        /// The bytes read.
        bytes: Vec<u8>,
        /// It was longer than the limit.
        truncated: bool,
    },
    /// There, but not a regular file (a symlink is never followed) or unreadable: the words say which.
    Unusable(String),
}

/// One entry the scan saw (a direct child, or a path below the directory for a whole-tree look).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryLook {
    /// Name (or `a/b/c` path below the directory).
    pub name: OsString,
    /// A regular file (only those count as markers).
    pub regular: bool,
    /// Its identity.
    pub identity: ReadyIdentity,
}

/// One look at a directory, gathered by the scan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirLook {
    /// The entries seen: every direct child when the rules need a listing (and every entry below with a
    /// whole-tree scope), else only the named markers that exist.
    pub entries: Vec<EntryLook>,
    /// The transfer temporaries found anywhere in its tree (names as paths below it).
    pub temporaries: Vec<EntryLook>,
    /// The content-checked file, when the rules have one.
    pub content: ContentLook,
    /// The look stopped at its bound of entries.
    pub bound_hit: bool,
    /// The folders the walk for path markers went through (`sample1`, `sample1/run_a`), relative to the
    /// directory; their files are in `entries` as `sample1/run_a/final_summary_….txt`.
    pub dirs: Vec<OsString>,
    /// The walk for path markers stopped at this bound on the entries it listed.
    pub walk_bound: Option<usize>,
    /// The look stopped at [`TREE_DEPTH_MAX`].
    pub too_deep: bool,
    /// When the look was taken (wall clock, ns since the epoch): how long a temporary has not changed.
    pub now_ns: i64,
}

/// Why a directory is not ready yet (for the log, `explain` and `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// No alternative is complete; `missing` names what the nearest one still lacks.
    Markers {
        /// The markers of the nearest alternative that are not there (for a path marker, the first
        /// folder still without its file: `sample1/run_b/final_summary_*.txt`).
        missing: Vec<String>,
        /// The files of that alternative that are there (`RTAComplete.txt`).
        have: Vec<String>,
        /// The newest mtime among them (ns since the epoch): since when the wait is for `missing` alone.
        since_ns: Option<i64>,
    },
    /// The status file is there and does not say the run succeeded.
    ContentFailed {
        /// The file.
        file: String,
        /// The pattern it did not match.
        pattern: String,
        /// What it says instead, when the rules know how to read it (`RunErrored`).
        says: Option<String>,
        /// Its mtime (ns since the epoch), when the look saw it: since when it says so.
        since_ns: Option<i64>,
    },
    /// The status file cannot be read as a small regular file.
    ContentUnusable {
        /// The file.
        file: String,
        /// Why.
        why: String,
    },
    /// Transfer temporaries are present.
    Temporaries {
        /// Up to three of their names.
        names: Vec<String>,
    },
    /// Only temporaries that have not changed for `watch.stale_temporary_sec` are present, and
    /// `watch.stale_temporaries_block` says they still hold.
    StaleTemporaries {
        /// Up to three of their names.
        names: Vec<String>,
        /// How long the newest of them has not changed.
        unchanged: Duration,
    },
    /// The look hit its bound of entries.
    TooManyEntries {
        /// The bound.
        max_entries: usize,
    },
    /// The walk for a path marker listed more entries than its bound.
    MarkerWalkTooBig {
        /// The bound (`watch.quiet_max_entries`).
        max_entries: usize,
    },
    /// The tree is deeper than a look goes.
    TooDeep {
        /// The depth a look goes.
        max_depth: usize,
    },
}

impl NotReady {
    /// In words, lowercase, objects in backticks.
    pub fn words(&self) -> String {
        let list = |v: &[String]| {
            v.iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            NotReady::Markers { missing, have, .. } if have.is_empty() => {
                format!("waiting for {}", list(missing))
            }
            NotReady::Markers { missing, have, .. } => {
                format!("waiting for {} ({} there)", list(missing), list(have))
            }
            NotReady::ContentFailed {
                file,
                pattern,
                says: None,
                ..
            } => format!(
                "`{file}` does not say the run succeeded (no match for `{pattern}`): not processed \
                 unless it is replaced by one that does"
            ),
            NotReady::ContentFailed {
                file,
                pattern,
                says: Some(word),
                ..
            } => format!(
                "`{file}` does not say the run succeeded: it says `{word}` (success is a match for \
                 `{pattern}`): the run is held, not processed unless the file is replaced by one that says \
                 it succeeded"
            ),
            NotReady::ContentUnusable { file, why } => {
                format!("`{file}` cannot be checked: {why}")
            }
            NotReady::Temporaries { names } => {
                format!(
                    "a transfer is still writing into it ({} present)",
                    list(names)
                )
            }
            NotReady::StaleTemporaries { names, unchanged } => format!(
                "held back for {} by a transfer temporary that has not changed since ({} present): the \
                 transfer that wrote it was probably killed; once the copy is known complete or abandoned, \
                 remove the temporary, or set `watch.stale_temporaries_block: false` to submit past stale \
                 ones",
                humantime::format_duration(Duration::from_secs(unchanged.as_secs())),
                list(names)
            ),
            NotReady::TooManyEntries { max_entries } => format!(
                "it has more than {max_entries} entries to look through, the bound of \
                 `watch.quiet_max_entries`: raise it if such a directory is expected"
            ),
            NotReady::TooDeep { max_depth } => format!(
                "its tree is too deep: more than {max_depth} levels, past what a look through it goes \
                 (`watch.ignore_patterns`, `watch.quiet_scope: tree`); not submitted while it is so deep"
            ),
            NotReady::MarkerWalkTooBig { max_entries } => format!(
                "looking for its path markers went through more than {max_entries} entries, the bound of \
                 `watch.quiet_max_entries`: raise it (it applies with `watch.quiet_scope: tree`; with `top` \
                 the bound is {TREE_ENTRIES_DEFAULT}), or name the folders in the marker instead of `*`"
            ),
        }
    }

    /// A short word for machines (`reason=` field, status).
    pub fn code(&self) -> &'static str {
        match self {
            NotReady::Markers { .. } => "markers",
            NotReady::ContentFailed { .. } => "content_failed",
            NotReady::ContentUnusable { .. } => "content_unusable",
            NotReady::Temporaries { .. } => "temporaries",
            NotReady::StaleTemporaries { .. } => "stale_temporaries",
            NotReady::TooManyEntries { .. } => "too_many_entries",
            NotReady::MarkerWalkTooBig { .. } => "marker_walk_too_big",
            NotReady::TooDeep { .. } => "too_deep",
        }
    }
}

/// What the rules say of one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyDecision {
    /// Not ready, and why.
    NotReady(NotReady),
    /// The markers say ready.
    Ready {
        /// The identity of the first marker of the satisfied alternative: what the ledger stores.
        primary: ReadyIdentity,
        /// The name of that marker (the file the lock probe looks at).
        primary_name: OsString,
        /// Every matched marker's identity and, with quiescence, the entries' names, sizes and mtimes,
        /// hashed: the stability tracker counts identical looks of this.
        fingerprint: u64,
    },
}

/// Whether a temporary is stale at the look's time.
fn is_stale(rules: &ReadyRules, look: &DirLook, e: &EntryLook) -> bool {
    let stale_ns = i64::try_from(rules.stale_after.as_nanos()).unwrap_or(i64::MAX);
    look.now_ns.saturating_sub(e.identity.mtime_ns) >= stale_ns
}

/// The stale temporaries of a look, when there are any and no fresh one: up to three names and how
/// long the newest has not changed. The daemon says it once, whether or not they still hold.
pub fn stale_temporaries(rules: &ReadyRules, look: &DirLook) -> Option<(Vec<String>, Duration)> {
    let t = &look.temporaries;
    if t.is_empty() || t.iter().any(|e| !is_stale(rules, look, e)) {
        return None;
    }
    let newest = t.iter().map(|e| e.identity.mtime_ns).max().unwrap_or(0);
    let unchanged = Duration::from_nanos(look.now_ns.saturating_sub(newest).max(0) as u64);
    Some((names_of(t), unchanged))
}

/// Up to three names, for messages.
fn names_of(v: &[EntryLook]) -> Vec<String> {
    v.iter()
        .take(3)
        .map(|e| e.name.to_string_lossy().into_owned())
        .collect()
}

/// Decides from one look. Order: a failed status file (final until it is replaced), temporaries, the
/// bounds, then the markers.
pub fn decide(rules: &ReadyRules, look: &DirLook) -> ReadyDecision {
    if let Some(hold) = content_hold(rules, look) {
        return ReadyDecision::NotReady(hold);
    }
    if !look.temporaries.is_empty() {
        match stale_temporaries(rules, look) {
            None => {
                let names = names_of(&look.temporaries);
                return ReadyDecision::NotReady(NotReady::Temporaries { names });
            }
            Some((names, unchanged)) if rules.stale_blocks => {
                return ReadyDecision::NotReady(NotReady::StaleTemporaries { names, unchanged });
            }
            Some(_) => {}
        }
    }
    if look.bound_hit {
        let max_entries = rules.max_entries;
        return ReadyDecision::NotReady(NotReady::TooManyEntries { max_entries });
    }
    if look.too_deep {
        let max_depth = TREE_DEPTH_MAX;
        return ReadyDecision::NotReady(NotReady::TooDeep { max_depth });
    }
    // The nearest alternative: the fewest missing, then the most progress (files found, or a path
    // marker that names the one folder still without its file).
    let mut nearest: Option<(Vec<String>, Vec<&EntryLook>, usize)> = None;
    for alt in &rules.alternatives {
        // A walk cut short may have missed a folder: a path marker cannot be satisfied by it.
        if look.walk_bound.is_some() && alt.iter().any(|m| markers::is_nested(m)) {
            continue;
        }
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for m in alt {
            match marker_hits(m, look) {
                Ok(hits) => found.extend(hits),
                Err(what) => missing.push(what),
            }
        }
        if missing.is_empty() {
            return ready(rules, look, &found);
        }
        let progress = found.len() + missing.iter().filter(|w| !alt.contains(w)).count();
        let nearer = nearest.as_ref().is_none_or(|n| {
            missing.len() < n.0.len() || (missing.len() == n.0.len() && progress > n.2)
        });
        if nearer {
            nearest = Some((missing, found, progress));
        }
    }
    if let Some(max_entries) = look.walk_bound {
        return ReadyDecision::NotReady(NotReady::MarkerWalkTooBig { max_entries });
    }
    let (missing, have, _) = nearest.unwrap_or_default();
    ReadyDecision::NotReady(NotReady::Markers {
        missing,
        have: have
            .iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect(),
        since_ns: have.iter().map(|e| e.identity.mtime_ns).max(),
    })
}

/// The status file's hold, when it is there and does not say success (or cannot be read).
fn content_hold(rules: &ReadyRules, look: &DirLook) -> Option<NotReady> {
    let c = rules.content.as_ref()?;
    match &look.content {
        ContentLook::Absent => None,
        ContentLook::Text { bytes, .. } => {
            let text = String::from_utf8_lossy(bytes);
            if c.pattern.is_match(&text) {
                return None;
            }
            let says = c.other.as_ref().and_then(|o| {
                let m = o.captures(&text)?;
                Some(m.get(1).or(m.get(0))?.as_str().to_string())
            });
            let since_ns = look
                .entries
                .iter()
                .find(|e| e.name == OsStr::new(&c.file))
                .map(|e| e.identity.mtime_ns);
            Some(NotReady::ContentFailed {
                file: c.file.clone(),
                pattern: c.pattern.as_str().to_string(),
                says,
                since_ns,
            })
        }
        ContentLook::Unusable(why) => Some(NotReady::ContentUnusable {
            file: c.file.clone(),
            why: why.clone(),
        }),
    }
}

/// The files that satisfy marker `m`, sorted (a glob may match several: all are part of the identity),
/// or what is missing. A plain marker counts only among the directory's own regular files; a path
/// marker below it, in every folder its folder part matches ([`markers::satisfied`]).
fn marker_hits<'a>(m: &str, look: &'a DirLook) -> Result<Vec<&'a EntryLook>, String> {
    let mut hits: Vec<&EntryLook> = if markers::is_nested(m) {
        let files = look
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.regular)
            .map(|(i, e)| (i, e.name.as_os_str()));
        markers::satisfied(m, files, &look.dirs)?
            .into_iter()
            .map(|i| &look.entries[i])
            .collect()
    } else {
        look.entries
            .iter()
            .filter(|e| e.regular && !e.name.as_encoded_bytes().contains(&b'/'))
            .filter(|e| glob_match(m, &e.name))
            .collect()
    };
    if hits.is_empty() {
        return Err(m.to_string());
    }
    hits.sort_by(|a, b| a.name.cmp(&b.name));
    hits.dedup_by(|a, b| a.name == b.name);
    Ok(hits)
}

/// The decision for a satisfied alternative whose markers are `found`.
fn ready(rules: &ReadyRules, look: &DirLook, found: &[&EntryLook]) -> ReadyDecision {
    let first = found[0];
    let mut h = DefaultHasher::new();
    for e in found {
        e.name.hash(&mut h);
        e.identity.hash(&mut h);
    }
    if !rules.quiet.is_zero() {
        let mut all: Vec<&EntryLook> = look.entries.iter().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.dedup_by(|a, b| a.name == b.name);
        for e in all {
            e.name.hash(&mut h);
            (e.identity.size, e.identity.mtime_ns).hash(&mut h);
        }
    }
    ReadyDecision::Ready {
        primary: first.identity,
        primary_name: first.name.clone(),
        fingerprint: h.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::presets::{ILLUMINA_STATUS_FILE, Preset};
    use super::*;

    fn file(name: &str, size: u64, mtime: i64) -> EntryLook {
        EntryLook {
            name: name.into(),
            regular: true,
            identity: ReadyIdentity {
                dev: 1,
                ino: size + 100,
                size,
                mtime_ns: mtime,
            },
        }
    }
    fn look(entries: Vec<EntryLook>) -> DirLook {
        DirLook {
            entries,
            ..DirLook::default()
        }
    }
    fn preset(p: Preset) -> ReadyRules {
        let (alternatives, content, ignore) = p.rules("_READY");
        ReadyRules {
            alternatives,
            content,
            ignore,
            ..ReadyRules::simple("_READY")
        }
    }

    #[test]
    fn globs_match_like_the_shell() {
        let m = |p: &str, n: &str| glob_match(p, n.as_ref());
        assert!(m(
            "final_summary_*.txt",
            "final_summary_FAQ12345_abcdef.txt"
        ));
        assert!(!m(
            "final_summary_*.txt",
            "final_summary_FAQ12345_abcdef.txt.bak"
        ));
        assert!(m(".*.??????", ".sample.fastq.gz.a1B2c3"));
        assert!(!m(".*.??????", ".hidden"));
        assert!(m("*.filepart", "run.bcl.filepart"));
        assert!(m("_READY", "_READY"));
        assert!(!m("_READY", "_READY2"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
    }

    #[test]
    fn the_simple_form_is_the_ready_file_itself() {
        let r = ReadyRules::simple("_READY");
        assert!(!r.needs_listing());
        let f = file("_READY", 0, 5);
        match decide(&r, &look(vec![f.clone()])) {
            ReadyDecision::Ready { primary, .. } => assert_eq!(primary, f.identity),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(&r, &look(vec![])),
            ReadyDecision::NotReady(NotReady::Markers {
                missing: vec!["_READY".into()],
                have: Vec::new(),
                since_ns: None,
            })
        );
    }

    #[test]
    fn illumina_waits_for_copy_complete_after_rta_complete() {
        let r = preset(Preset::Illumina);
        let rta = file("RTAComplete.txt", 10, 1);
        let d = decide(&r, &look(vec![rta.clone()]));
        assert!(
            matches!(d, ReadyDecision::NotReady(NotReady::Markers { .. })),
            "{d:?}"
        );
        let copy = file("CopyComplete.txt", 0, 2);
        match decide(&r, &look(vec![rta, copy.clone()])) {
            ReadyDecision::Ready { primary, .. } => assert_eq!(primary, copy.identity),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_illumina_run_is_never_ready() {
        let r = preset(Preset::Illumina);
        let mut l = look(vec![
            file("CopyComplete.txt", 0, 2),
            file(ILLUMINA_STATUS_FILE, 80, 3),
        ]);
        l.content = ContentLook::Text {
            bytes: b"<RunCompletionStatus><CompletionStatus>ExceptionEndedEarly</CompletionStatus>"
                .to_vec(),
            truncated: false,
        };
        let d = decide(&r, &l);
        assert!(
            matches!(d, ReadyDecision::NotReady(NotReady::ContentFailed { .. })),
            "{d:?}"
        );
        l.content = ContentLook::Text {
            bytes: b"<CompletionStatus>SuccessfullyCompleted</CompletionStatus>".to_vec(),
            truncated: false,
        };
        assert!(matches!(decide(&r, &l), ReadyDecision::Ready { .. }));
    }

    #[test]
    fn ont_final_summary_has_a_variable_name() {
        let r = preset(Preset::Ont);
        assert!(r.needs_listing());
        let d = decide(
            &r,
            &look(vec![file("final_summary_FAQ12345_abcdef.txt", 900, 4)]),
        );
        assert!(matches!(d, ReadyDecision::Ready { .. }), "{d:?}");
    }

    #[test]
    fn rsync_temporaries_hold_a_directory_back() {
        let r = preset(Preset::Rsync);
        let mut top = look(vec![file("_READY", 0, 1)]);
        top.temporaries = vec![file(".reads.fastq.Xy12Ab", 5, 2)];
        let d = decide(&r, &top);
        assert_eq!(
            d,
            ReadyDecision::NotReady(NotReady::Temporaries {
                names: vec![".reads.fastq.Xy12Ab".into()]
            })
        );
        let mut nested = look(vec![file("_READY", 0, 1)]);
        nested.temporaries = vec![file("sub/x.filepart", 5, 2)];
        assert!(matches!(decide(&r, &nested), ReadyDecision::NotReady(_)));
    }

    const HOUR_NS: i64 = 3_600_000_000_000;

    #[test]
    fn a_temporary_unchanged_for_long_is_stale_and_still_holds_unless_told_otherwise() {
        let mut r = preset(Preset::Rsync);
        // Written at 0; looked at 2 h later (the default says stale after 1 h).
        let mut l = look(vec![file("_READY", 0, 1)]);
        l.temporaries = vec![file("reads/.a.fastq.gz.mecvPV", 5, 0)];
        l.now_ns = 2 * HOUR_NS;
        let d = decide(&r, &l);
        let ReadyDecision::NotReady(why @ NotReady::StaleTemporaries { .. }) = &d else {
            panic!("{d:?}")
        };
        let words = why.words();
        assert!(words.contains("held back for 2h"), "{words}");
        assert!(words.contains("reads/.a.fastq.gz.mecvPV"), "{words}");
        assert!(words.contains("watch.stale_temporaries_block"), "{words}");
        assert_eq!(why.code(), "stale_temporaries");
        // A fresh one beside it: a transfer is alive, not stale.
        l.temporaries
            .push(file("reads/.b.fastq.gz.Ab12Cd", 5, 2 * HOUR_NS - 1));
        assert!(stale_temporaries(&r, &l).is_none());
        assert!(matches!(
            decide(&r, &l),
            ReadyDecision::NotReady(NotReady::Temporaries { .. })
        ));
        l.temporaries.pop();
        // Told that stale ones do not hold: submitted, and still reported as stale.
        r.stale_blocks = false;
        assert!(matches!(decide(&r, &l), ReadyDecision::Ready { .. }));
        let (names, unchanged) = stale_temporaries(&r, &l).expect("stale");
        assert_eq!(names, ["reads/.a.fastq.gz.mecvPV"]);
        assert_eq!(unchanged, Duration::from_secs(7200));
    }

    #[test]
    fn a_look_cut_short_holds_with_the_key_or_the_depth() {
        let r = preset(Preset::Rsync);
        let mut l = look(vec![file("_READY", 0, 1)]);
        l.bound_hit = true;
        let d = decide(&r, &l);
        let ReadyDecision::NotReady(why) = d else {
            panic!("{d:?}")
        };
        assert!(why.words().contains("`watch.quiet_max_entries`"));
        l.bound_hit = false;
        l.too_deep = true;
        let d = decide(&r, &l);
        let ReadyDecision::NotReady(why) = d else {
            panic!("{d:?}")
        };
        assert_eq!(why.code(), "too_deep");
        assert!(why.words().contains("too deep"), "{}", why.words());
        assert!(!why.words().contains("permission"));
    }

    #[test]
    fn with_quiescence_a_growing_neighbour_changes_the_fingerprint() {
        let r = ReadyRules {
            quiet: Duration::from_secs(60),
            ..ReadyRules::simple("_READY")
        };
        let fp = |size| match decide(
            &r,
            &look(vec![file("_READY", 0, 1), file("data.bin", size, 9)]),
        ) {
            ReadyDecision::Ready { fingerprint, .. } => fingerprint,
            other => panic!("{other:?}"),
        };
        assert_ne!(fp(10), fp(20));
        assert_eq!(fp(20), fp(20));
        // Without quiescence the neighbour does not matter (the seed's behaviour).
        let s = ReadyRules::simple("_READY");
        let fp0 = |size| match decide(
            &s,
            &look(vec![file("_READY", 0, 1), file("data.bin", size, 9)]),
        ) {
            ReadyDecision::Ready { fingerprint, .. } => fingerprint,
            other => panic!("{other:?}"),
        };
        assert_eq!(fp0(10), fp0(20));
    }

    #[test]
    fn the_tree_bound_holds_back_with_its_key() {
        let r = ReadyRules {
            quiet: Duration::from_secs(1),
            scope: QuietScope::Tree,
            max_entries: 5,
            ..ReadyRules::simple("_READY")
        };
        let mut l = look(vec![file("_READY", 0, 1)]);
        l.bound_hit = true;
        let d = decide(&r, &l);
        assert_eq!(
            d,
            ReadyDecision::NotReady(NotReady::TooManyEntries { max_entries: 5 })
        );
        if let ReadyDecision::NotReady(n) = d {
            assert!(n.words().contains("watch.quiet_max_entries"));
        }
    }

    fn status(l: &mut DirLook, text: &str) {
        l.content = ContentLook::Text {
            bytes: text.as_bytes().to_vec(),
            truncated: false,
        };
    }

    #[test]
    fn each_illumina_family_is_submitted_on_its_own_words_of_success_and_held_on_others() {
        let copy = preset(Preset::Illumina);
        let rta = preset(Preset::IlluminaRta);
        let rcs = file(ILLUMINA_STATUS_FILE, 600, 7);
        // NovaSeq X (RTA4): `<RunStatus>`; NextSeq 500/550: `CompletedAsPlanned`; MiSeq:
        // `SuccessfullyCompleted`.
        for (rules, marker, text) in [
            (
                &copy,
                "CopyComplete.txt",
                "<RunStatus>RunCompleted</RunStatus>",
            ),
            (
                &rta,
                "RTAComplete.txt",
                "<CompletionStatus>CompletedAsPlanned</CompletionStatus>",
            ),
            (
                &rta,
                "RTAComplete.txt",
                "<CompletionStatus>SuccessfullyCompleted</CompletionStatus>",
            ),
        ] {
            let mut l = look(vec![file(marker, 0, 5), rcs.clone()]);
            status(&mut l, text);
            assert!(
                matches!(decide(rules, &l), ReadyDecision::Ready { .. }),
                "{text}"
            );
        }
        let mut l = look(vec![file("CopyComplete.txt", 0, 5), rcs.clone()]);
        status(&mut l, "<RunStatus>RunErrored</RunStatus>");
        match decide(&copy, &l) {
            ReadyDecision::NotReady(n @ NotReady::ContentFailed { .. }) => {
                assert!(n.words().contains("it says `RunErrored`"), "{}", n.words());
                assert!(matches!(
                    n,
                    NotReady::ContentFailed {
                        since_ns: Some(7),
                        ..
                    }
                ));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn illumina_no_longer_takes_rta_complete_and_a_status_file_for_a_finished_copy() {
        let r = preset(Preset::Illumina);
        let mut l = look(vec![
            file("RTAComplete.txt", 1, 3),
            file(ILLUMINA_STATUS_FILE, 600, 4),
        ]);
        status(
            &mut l,
            "<CompletionStatus>CompletedAsPlanned</CompletionStatus>",
        );
        let d = decide(&r, &l);
        assert!(
            matches!(&d, ReadyDecision::NotReady(NotReady::Markers { missing, .. }) if missing == &["CopyComplete.txt"]),
            "{d:?}"
        );
    }

    #[test]
    fn an_ont_experiment_is_ready_when_every_run_folder_has_its_final_summary() {
        let r = preset(Preset::Ont);
        let run_a = "sample1/20250603_1201_3E_PAA12345_e05460c6";
        let run_b = "sample1/20250604_0900_3F_PAA67890_0a1b2c3d";
        let mut l = look(vec![file(
            &format!("{run_a}/final_summary_PAA12345_e05460c6_1.txt"),
            9,
            11,
        )]);
        l.dirs = vec!["sample1".into(), run_a.into(), run_b.into()];
        match decide(&r, &l) {
            ReadyDecision::NotReady(NotReady::Markers { missing, .. }) => {
                assert_eq!(missing, vec![format!("{run_b}/final_summary_*.txt")]);
            }
            other => panic!("{other:?}"),
        }
        l.entries.push(file(
            &format!("{run_b}/final_summary_PAA67890_0a1b2c3d_1.txt"),
            8,
            12,
        ));
        match decide(&r, &l) {
            ReadyDecision::Ready { primary_name, .. } => {
                assert!(
                    primary_name.to_string_lossy().starts_with(run_a),
                    "{primary_name:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        // A run folder itself (the directory watched is the run) still works as before.
        let d = decide(
            &r,
            &look(vec![file("final_summary_PAA12345_e05460c6_1.txt", 9, 1)]),
        );
        assert!(matches!(d, ReadyDecision::Ready { .. }), "{d:?}");
        // Too much to walk: said, not silently skipped; a plain marker still decides.
        let mut big = look(vec![file(&format!("{run_a}/final_summary_A.txt"), 9, 11)]);
        big.dirs = vec!["sample1".into(), run_a.into()];
        big.walk_bound = Some(10);
        let d = decide(&r, &big);
        assert_eq!(
            d,
            ReadyDecision::NotReady(NotReady::MarkerWalkTooBig { max_entries: 10 })
        );
        big.entries
            .push(file("final_summary_PAA12345_e05460c6_1.txt", 9, 1));
        assert!(matches!(decide(&r, &big), ReadyDecision::Ready { .. }));
    }

    #[test]
    fn any_of_takes_the_first_complete_alternative() {
        let r = ReadyRules {
            alternatives: vec![vec!["A".into()], vec!["B".into()]],
            ..ReadyRules::simple("_READY")
        };
        let b = file("B", 3, 1);
        match decide(&r, &look(vec![b.clone()])) {
            ReadyDecision::Ready { primary, .. } => assert_eq!(primary, b.identity),
            other => panic!("{other:?}"),
        }
    }
}
