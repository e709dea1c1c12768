//! Readiness rules: whether a directory's markers say it is ready, from one look the scan gathered.
//!
//! Owns: the rule set (markers as names or globs, all-of or any-of, a content check on a small file,
//! ignore patterns for transfer temporaries, quiescence), the instrument presets, glob matching, the
//! reason a directory is not ready, and the identity a ready directory hands to the stability tracker
//! and the ledger. Must never: read the clock or touch the file system (the scan gathers, this decides).
//!
//! Compatibility: the ledger stores one ready-file identity per generation. A ready directory's
//! [`ReadyDecision::Ready::primary`] is the identity of the first marker of the satisfied alternative, so
//! with the simple form (`signal_filename`, one marker) it is exactly the ready-file's identity as before.

use std::collections::hash_map::DefaultHasher;
use std::ffi::{OsStr, OsString};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::model::ReadyIdentity;

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
            || self.alternatives.iter().flatten().any(|m| is_glob(m))
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

/// A named rule set for a common instrument or transfer tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Illumina run folders (see [`Preset::rules`]).
    Illumina,
    /// Oxford Nanopore MinKNOW output folders.
    Ont,
    /// Copies made with rsync (or WinSCP, or by any tool writing `*.part`/`*.tmp`).
    Rsync,
}

/// Content check of the Illumina preset: RTA4 / NovaSeq X write `<CompletionStatus>` in
/// `RunCompletionStatus.xml`; only `SuccessfullyCompleted` is a run worth processing.
pub const ILLUMINA_STATUS_FILE: &str = "RunCompletionStatus.xml";
/// What a successful `RunCompletionStatus.xml` says.
pub const ILLUMINA_STATUS_OK: &str = "CompletionStatus>SuccessfullyCompleted<";
/// Default of `watch.stale_temporary_sec`: a temporary unchanged for an hour is said to be stale (a transfer
/// that is alive writes into its temporary far more often, even at a low `--bwlimit`).
pub const STALE_AFTER_DEFAULT: Duration = Duration::from_secs(3600);

/// Transfer temporaries: rsync's `.name.XXXXXX`, WinSCP's `*.filepart`, browsers' and tools' `*.part`,
/// `*.tmp`.
pub const TRANSFER_TEMPORARIES: [&str; 4] = [".*.??????", "*.filepart", "*.part", "*.tmp"];

impl Preset {
    /// The preset named `name` (as written in the config).
    pub fn parse(name: &str) -> Option<Preset> {
        match name {
            "illumina" => Some(Preset::Illumina),
            "ont" => Some(Preset::Ont),
            "rsync" => Some(Preset::Rsync),
            _ => None,
        }
    }

    /// Its name in the config.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Illumina => "illumina",
            Preset::Ont => "ont",
            Preset::Rsync => "rsync",
        }
    }

    /// Markers (alternatives), content check and ignore patterns of the preset. `marker` is
    /// `signal_filename`, for the presets that only add to it.
    ///
    /// - `illumina`: the instrument control software writes `CopyComplete.txt` once the run folder is
    ///   completely copied to its output folder (NextSeq 1000/2000, NovaSeq 6000/X, MiSeq i100);
    ///   `RTAComplete.txt` is written when primary analysis ends and can precede the end of the copy by
    ///   hours. So: `CopyComplete.txt`, or `RTAComplete.txt` together with `RunCompletionStatus.xml` (RTA4,
    ///   written last); and a `RunCompletionStatus.xml` that is present must say
    ///   `SuccessfullyCompleted` (a failed or stopped run is never processed).
    /// - `ont`: MinKNOW writes `final_summary_<flow cell>_<run id>.txt` when a run has ended and its
    ///   files are written.
    /// - `rsync`: `signal_filename`, held back while transfer temporaries are present.
    pub fn rules(self, marker: &str) -> (Vec<Vec<String>>, Option<ContentCheck>, Vec<String>) {
        let s = |v: &[&str]| v.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        match self {
            Preset::Illumina => (
                vec![
                    s(&["CopyComplete.txt"]),
                    s(&["RTAComplete.txt", ILLUMINA_STATUS_FILE]),
                ],
                Some(ContentCheck {
                    file: ILLUMINA_STATUS_FILE.into(),
                    pattern: regex::Regex::new(ILLUMINA_STATUS_OK).expect("a valid pattern"),
                }),
                Vec::new(),
            ),
            Preset::Ont => (vec![s(&["final_summary_*.txt"])], None, Vec::new()),
            Preset::Rsync => (
                vec![vec![marker.to_string()]],
                None,
                s(&TRANSFER_TEMPORARIES),
            ),
        }
    }
}

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
        /// The markers of the nearest alternative that are not there.
        missing: Vec<String>,
    },
    /// The status file is there and does not say the run succeeded.
    ContentFailed {
        /// The file.
        file: String,
        /// The pattern it did not match.
        pattern: String,
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
            NotReady::Markers { missing } => format!("waiting for {}", list(missing)),
            NotReady::ContentFailed { file, pattern } => format!(
                "`{file}` does not say the run succeeded (no match for `{pattern}`): not processed \
                 unless it is replaced by one that does"
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

/// Whether `name` matches the glob `pattern` (`*` any run, `?` one byte; everything else literal).
pub fn glob_match(pattern: &str, name: &OsStr) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_encoded_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether a marker is a glob rather than an exact name.
pub fn is_glob(marker: &str) -> bool {
    marker.contains(['*', '?'])
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
    if let Some(c) = &rules.content {
        match &look.content {
            ContentLook::Absent => {}
            ContentLook::Text { bytes, .. } => {
                if !c.pattern.is_match(&String::from_utf8_lossy(bytes)) {
                    return ReadyDecision::NotReady(NotReady::ContentFailed {
                        file: c.file.clone(),
                        pattern: c.pattern.as_str().to_string(),
                    });
                }
            }
            ContentLook::Unusable(why) => {
                return ReadyDecision::NotReady(NotReady::ContentUnusable {
                    file: c.file.clone(),
                    why: why.clone(),
                });
            }
        }
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
    // Only direct children count as markers.
    let top = |e: &&EntryLook| e.regular && !e.name.as_encoded_bytes().contains(&b'/');
    let mut nearest: Option<Vec<String>> = None;
    for alt in &rules.alternatives {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for m in alt {
            // A glob may match several files: all of them, sorted, are part of the identity.
            let mut hits: Vec<&EntryLook> = look
                .entries
                .iter()
                .filter(top)
                .filter(|e| glob_match(m, &e.name))
                .collect();
            hits.sort_by(|a, b| a.name.cmp(&b.name));
            if hits.is_empty() {
                missing.push(m.clone());
            } else {
                found.extend(hits);
            }
        }
        if missing.is_empty() {
            let first = found[0];
            let mut h = DefaultHasher::new();
            for e in &found {
                e.name.hash(&mut h);
                e.identity.hash(&mut h);
            }
            if !rules.quiet.is_zero() {
                // The look holds entries below the top only with a whole-tree scope.
                let mut all: Vec<&EntryLook> = look.entries.iter().collect();
                all.sort_by(|a, b| a.name.cmp(&b.name));
                for e in all {
                    e.name.hash(&mut h);
                    (e.identity.size, e.identity.mtime_ns).hash(&mut h);
                }
            }
            return ReadyDecision::Ready {
                primary: first.identity,
                primary_name: first.name.clone(),
                fingerprint: h.finish(),
            };
        }
        if nearest.as_ref().is_none_or(|n| missing.len() < n.len()) {
            nearest = Some(missing);
        }
    }
    ReadyDecision::NotReady(NotReady::Markers {
        missing: nearest.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
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
                missing: vec!["_READY".into()]
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
