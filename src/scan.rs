//! The file-system edge of readiness: lists the root's direct subdirectories and looks at their ready-files,
//! all through the root's descriptor ([`fsx::Root`]), never by path.
//!
//! Owns: which entries of the root are candidates, what a ready-file's identity is, the bounded look
//! through a directory's tree, the bounded walk for path markers, the lock probe's meaning. Must never:
//! follow a symlink, cross a mount, read a directory whole or past its bound, create, modify or delete
//! anything, or sleep.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use rustix::fs::FileType;

use crate::engine::mounts::{self, MountFacts};
use crate::engine::{
    ContentLook, DirLook, EntryLook, LockProbe, NotReady, QuietScope, ReadyDecision, ReadyIdentity,
    ReadyRules, markers,
    patterns::ignore_match,
    readiness::{CONTENT_LIMIT, TREE_DEPTH_MAX, decide, glob_match, is_glob},
};
use crate::fsx::{DirStamp, FileStat, Reader, Root, SubDir};
use crate::time::Millis;

/// Lists the names of the root's direct subdirectories, skipping hidden names (`.*`) and symlinks (a symlink
/// may point anywhere, including outside the root). Sorted, so processing order is stable.
pub fn list_subdirs(root: &Root) -> io::Result<Vec<OsString>> {
    let mut l = Lister::default();
    l.list(root)?;
    Ok(l.names)
}

/// The root's listing, scan after scan, in reused buffers. An idle root lists the same bytes every time:
/// then the sorted names of the last listing are handed out again, without an allocation or a sort per
/// entry (100,000 of them cost more than the `getdents64` calls).
#[derive(Debug, Default)]
pub struct Lister {
    /// The `getdents64` buffer.
    buf: Vec<u8>,
    /// This listing, packed ([`Root::read_candidates`]).
    now: Vec<u8>,
    /// The last listing, packed; `names` was made from it.
    last: Vec<u8>,
    /// The subdirectories of the last listing, sorted.
    names: Vec<OsString>,
    /// `last` and `names` belong together (false before the first listing and after a failed one).
    valid: bool,
    /// The root's stamp taken just before `last` was read, when it was settled then
    /// ([`DirStamp::settled`]): while the root's stamp stays this, its entries are `last`'s.
    settled: Option<DirStamp>,
    /// When the root was last read whole (monotonic): it is read whole at least every
    /// [`LISTING_MAX_AGE`], whatever its stamp says (a file server's clock may be behind ours).
    read_at: Option<Millis>,
    /// How many times the root's entries were read.
    pub reads: u64,
    /// The last [`Lister::list`] read the root's entries (false: its stamp said they did not change).
    pub was_read: bool,
}

/// A change of the root is trusted to show in its stamp only when the last change before it is older
/// than this: more than a tick of any file system's clock (whole seconds on some).
const STAMP_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);
/// The root is read whole at least this often, whatever its stamp says.
pub const LISTING_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

impl Lister {
    /// Lists the root; true when the names may differ from the last listing's.
    ///
    /// An entry whose type `readdir` does not say is looked at (`lstat`) only when the listing changed: a
    /// directory replaced by a file of the same name in between is then still named, and its look finds
    /// no directory (what [`open_dir`] says of any name that is not one).
    ///
    /// The root is not read at all while its [`DirStamp`] is the settled one taken before the last
    /// listing (a root of 100,000 names costs `getdents64` of about 3 MiB every poll otherwise), and at
    /// least every [`LISTING_MAX_AGE`] it is read whole anyway.
    pub fn list(&mut self, root: &Root) -> io::Result<bool> {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let mono = crate::time::ms(ORIGIN.get_or_init(std::time::Instant::now).elapsed());
        self.list_at(root, crate::time::wall_now(), mono)
    }

    /// [`Lister::list`] at `wall` (milliseconds since the epoch: compared with the file system's times)
    /// and `mono` (the monotonic clock: the age of the last read), the daemon's clocks.
    pub fn list_at(&mut self, root: &Root, wall: Millis, mono: Millis) -> io::Result<bool> {
        let fresh = self
            .read_at
            .is_some_and(|t| mono.saturating_sub(t) < crate::time::ms(LISTING_MAX_AGE));
        let last = self.settled.filter(|_| self.valid && fresh);
        self.was_read = false;
        let stamp = match root.read_candidates_since(last, &mut self.buf, &mut self.now) {
            Ok(None) => return Ok(false),
            Ok(Some(stamp)) => stamp,
            Err(e) => {
                self.valid = false;
                return Err(e);
            }
        };
        self.reads += 1;
        self.was_read = true;
        self.read_at = Some(mono);
        let margin = crate::time::ms(STAMP_MARGIN).saturating_mul(1_000_000);
        self.settled = stamp
            .settled(wall.saturating_mul(1_000_000), margin)
            .then_some(stamp);
        if self.valid && self.now == self.last {
            return Ok(false);
        }
        self.names.clear();
        for packed in self.now.split(|&b| b == 0).filter(|p| !p.is_empty()) {
            let (kind, name) = (packed[0], OsStr::from_bytes(&packed[1..]));
            // The file system did not say in `readdir`: look (without following a link).
            let is_dir = kind == crate::fsx::PACKED_DIR
                || matches!(root.stat(name), Ok(Some(s)) if s.kind == FileType::Directory);
            if is_dir {
                self.names.push(name.to_os_string());
            }
        }
        self.names.sort_unstable();
        std::mem::swap(&mut self.now, &mut self.last);
        self.valid = true;
        Ok(true)
    }

    /// The subdirectories of the last listing, sorted.
    pub fn names(&self) -> &[OsString] {
        &self.names
    }

    /// Lends the names out (the scan looks at them while it changes the daemon); give them back with
    /// [`Lister::put_back`].
    pub fn lend(&mut self) -> Vec<OsString> {
        std::mem::take(&mut self.names)
    }

    /// Takes back what [`Lister::lend`] lent.
    pub fn put_back(&mut self, names: Vec<OsString>) {
        self.names = names;
    }
}

/// A direct subdirectory, opened to be looked at; `None` when it is gone or not a real directory.
pub fn open_dir(root: &Root, dir: &OsStr) -> io::Result<Option<SubDir>> {
    root.subdir(dir)
}

/// The ready-file's identity when it is a regular file; `None` when it is absent or not a regular file
/// (a symlink, FIFO or directory with that name is ignored).
pub fn stat_ready_file(dir: &SubDir, signal: &OsStr) -> io::Result<Option<ReadyIdentity>> {
    Ok(dir
        .stat(signal)?
        .filter(|s| s.kind == FileType::RegularFile)
        .map(|s| ready_identity(&s)))
}

/// The identity fields of a ready-file, as `statx` reports them.
pub fn ready_identity(s: &FileStat) -> ReadyIdentity {
    ReadyIdentity {
        dev: s.ident.dev,
        ino: s.ident.ino,
        size: s.size,
        mtime_ns: s.mtime_ns,
    }
}

/// The identity fields of a ready-file's metadata (std's view; the same numbers as [`ready_identity`]).
pub fn identity_of(meta: &std::fs::Metadata) -> ReadyIdentity {
    ReadyIdentity {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
    }
}

/// How much of a directory a look gathers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Its markers only (named ones by `statx`, a glob by a bounded listing of its own entries): a
    /// finished directory's recheck, which only asks whether its markers were replaced. Temporaries and
    /// quiescence are looked for only in directories not yet submitted.
    Markers,
    /// Everything the rules need: markers, temporaries anywhere in its tree, quiescence.
    Full,
}

/// One full look at a directory now (for `explain` and `run --dry-run`); see [`gather_at`].
pub fn gather(dir: &SubDir, rules: &ReadyRules) -> io::Result<DirLook> {
    gather_at(dir, rules, Depth::Full, crate::time::wall_now())
}

/// One look at a directory for the readiness rules ([`crate::engine::readiness::decide`]) at wall time
/// `now`: the named markers' identities (the simple form: one `statx` per marker, as always), or, when
/// the rules need it, the directory's entries — its direct children, with their names, sizes and mtimes
/// (never their contents) — and, for temporaries or whole-tree quiescence, a walk through its tree; and
/// the content-checked file's first bytes. Everything relative to the held descriptor, nothing followed
/// through a symlink, no other mount entered. Every listing is streamed and stops at
/// `watch.quiet_max_entries` entries in all (the look then says so), and the walk at
/// [`TREE_DEPTH_MAX`] levels: whatever is in the directory, a look costs at most that.
pub fn gather_at(
    dir: &SubDir,
    rules: &ReadyRules,
    depth: Depth,
    now: Millis,
) -> io::Result<DirLook> {
    let full = depth == Depth::Full;
    let mut look = DirLook {
        now_ns: now.saturating_mul(1_000_000),
        ..DirLook::default()
    };
    if rules.markers_need_listing() || (full && rules.needs_listing()) {
        Walk {
            rules,
            tree: full && rules.looks_through_tree(),
            temporaries: full && !rules.ignore.is_empty(),
            keep_top: full && !rules.quiet.is_zero(),
            keep_below: full && !rules.quiet.is_zero() && rules.scope == QuietScope::Tree,
            listed: 0,
            look: &mut look,
        }
        .run(dir)?;
    } else {
        for name in rules.exact_names() {
            if let Some(s) = dir.stat(name.as_ref())? {
                look.entries.push(EntryLook {
                    name: name.into(),
                    regular: s.kind == FileType::RegularFile,
                    identity: ready_identity(&s),
                });
            }
        }
    }
    look.content = match &rules.content {
        None => ContentLook::Absent,
        Some(c) => match dir.read_small(c.file.as_ref(), CONTENT_LIMIT) {
            Ok(None) => ContentLook::Absent,
            Ok(Some((bytes, truncated))) => ContentLook::Text { bytes, truncated },
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                ContentLook::Unusable(e.to_string())
            }
            Err(e) => return Err(e),
        },
    };
    // The walk for path markers only when a plain marker does not already decide (a run folder
    // watched directly has its summary at the top, and its `pod5/` need not be listed).
    if !matches!(decide(rules, &look), ReadyDecision::Ready { .. }) {
        walk_markers(dir, rules, &mut look)?;
    }
    Ok(look)
}

/// A directory's ready marker by the rules: its identity, name and fingerprint, or why it is not ready.
pub fn ready_marker(
    dir: &SubDir,
    rules: &ReadyRules,
) -> io::Result<Result<(ReadyIdentity, OsString, u64), NotReady>> {
    Ok(match decide(rules, &gather(dir, rules)?) {
        ReadyDecision::Ready {
            primary,
            primary_name,
            fingerprint,
        } => Ok((primary, primary_name, fingerprint)),
        ReadyDecision::NotReady(why) => Err(why),
    })
}

/// One bounded walk: the directory's own entries, and with `tree` every level below it, depth first,
/// one open directory per level.
struct Walk<'a> {
    rules: &'a ReadyRules,
    /// Go below the directory's own entries.
    tree: bool,
    /// Look for transfer temporaries.
    temporaries: bool,
    /// Keep (and `statx`) every entry of the top, for quiescence; else only the markers among them.
    keep_top: bool,
    /// Keep (and `statx`) the entries below the top, for whole-tree quiescence.
    keep_below: bool,
    /// Entries read so far, at every level.
    listed: usize,
    look: &'a mut DirLook,
}

/// One level of the walk: its reader and its path below the directory (`None` for the directory).
struct Level {
    reader: Reader,
    prefix: Option<OsString>,
}

impl Walk<'_> {
    fn run(mut self, dir: &SubDir) -> io::Result<()> {
        let mut stack = vec![Level {
            reader: dir.reader()?,
            prefix: None,
        }];
        while let Some(level) = stack.last_mut() {
            let Some(entry) = level.reader.next_entry() else {
                stack.pop();
                continue;
            };
            let (name, kind) = entry?;
            self.listed += 1;
            if self.listed > self.rules.max_entries {
                self.look.bound_hit = true;
                return Ok(());
            }
            // Only what the rules use is looked at (`statx`) and kept: an entry that is neither a marker,
            // nor a temporary, nor watched for quiescence costs its `getdents` bytes and no more.
            let keep = match level.prefix {
                None => {
                    self.keep_top
                        || self
                            .rules
                            .alternatives
                            .iter()
                            .flatten()
                            .any(|m| glob_match(m, &name))
                }
                Some(_) => self.keep_below,
            };
            let temporary =
                self.temporaries && self.rules.ignore.iter().any(|p| ignore_match(p, &name));
            let full = |prefix: &Option<OsString>| match prefix {
                Some(p) => {
                    let mut f = p.clone();
                    f.push("/");
                    f.push(&name);
                    f
                }
                None => name.clone(),
            };
            let mut stat = None;
            if keep || temporary {
                // Gone between the listing and the look: a change the next look sees.
                let Some(s) = level.reader.stat(&name)? else {
                    continue;
                };
                let e = EntryLook {
                    name: full(&level.prefix),
                    regular: s.kind == FileType::RegularFile,
                    identity: ready_identity(&s),
                };
                if temporary {
                    self.look.temporaries.push(e.clone());
                }
                if keep {
                    self.look.entries.push(e);
                }
                stat = Some(s.kind);
            }
            let is_dir = match (kind, stat) {
                (FileType::Directory, _) => true,
                (FileType::Unknown, Some(k)) => k == FileType::Directory,
                (FileType::Unknown, None) => true, // `child` looks, and opens only a real directory
                _ => false,
            };
            if !self.tree || !is_dir {
                continue;
            }
            if stack.len() > TREE_DEPTH_MAX {
                self.look.too_deep = true;
                return Ok(());
            }
            // Never through a symlink, never into another mount: another file system is not this copy.
            let parent = stack.last().expect("the current level");
            if let Some(reader) = parent.reader.child(&name)? {
                let prefix = Some(full(&parent.prefix));
                stack.push(Level { reader, prefix });
            }
        }
        Ok(())
    }
}

/// Non-blocking *shared* `flock` probe of the ready-file (see [`SubDir::lock_is_free`]); a marker below
/// the directory (`sample/run/final_summary_….txt`) is reached folder by folder, never through a symlink.
pub fn probe_lock(dir: &SubDir, signal: &OsStr) -> io::Result<LockProbe> {
    let path = std::path::Path::new(signal);
    let free = match (path.parent(), path.file_name()) {
        (Some(parent), Some(leaf)) if !parent.as_os_str().is_empty() => {
            let mut cur: Option<SubDir> = None;
            for c in parent.iter() {
                let next = match &cur {
                    None => dir.child(c)?,
                    Some(d) => d.child(c)?,
                };
                cur = Some(next.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "its folder is gone")
                })?);
            }
            cur.as_ref().unwrap_or(dir).lock_is_free(leaf)?
        }
        _ => dir.lock_is_free(signal)?,
    };
    Ok(if free {
        LockProbe::Free
    } else {
        LockProbe::Held
    })
}

/// Looks for the rules' path markers (`*/*/final_summary_*.txt`) below the directory: each folder part
/// is opened relative to its parent's descriptor (`O_NOFOLLOW`: never through a symlink, never across a
/// mount), a globbed part is listed. The files found go into `look.entries` as `a/b/name`, the folders
/// into `look.dirs`. At most `watch.quiet_max_entries` entries are listed; past that the walk stops and
/// says so (`look.walk_bound`).
fn walk_markers(dir: &SubDir, rules: &ReadyRules, look: &mut DirLook) -> io::Result<()> {
    let mut paths: Vec<Vec<&str>> = rules
        .alternatives
        .iter()
        .flatten()
        .filter(|m| markers::is_nested(m))
        .map(|m| m.split('/').collect())
        .collect();
    if paths.is_empty() {
        return Ok(());
    }
    paths.sort_unstable();
    paths.dedup();
    let mut w = MarkerWalk {
        listed: 0,
        max: rules.max_entries,
        look,
    };
    for p in &paths {
        w.walk(dir, None, p)?;
        if w.look.walk_bound.is_some() {
            break;
        }
    }
    let l = &mut *w.look;
    l.entries.sort_by(|a, b| a.name.cmp(&b.name));
    l.entries.dedup_by(|a, b| a.name == b.name);
    l.dirs.sort_unstable();
    l.dirs.dedup();
    Ok(())
}

/// One walk for path markers: what it found so far and how much it listed.
struct MarkerWalk<'a> {
    /// Entries listed so far (of globbed folders).
    listed: usize,
    /// The bound on `listed`.
    max: usize,
    /// Where the files and folders found go.
    look: &'a mut DirLook,
}

impl MarkerWalk<'_> {
    /// Follows the components `comps` from `dir` (named `prefix` below the directory). Depth is bounded
    /// by the config ([`markers::MARKER_DEPTH_MAX`]), so the recursion is too.
    fn walk(&mut self, dir: &SubDir, prefix: Option<&OsStr>, comps: &[&str]) -> io::Result<()> {
        let Some((part, rest)) = comps.split_first() else {
            return Ok(());
        };
        let names: Vec<OsString> = if is_glob(part) {
            // Streamed, and stopped at the bound: a folder of a million entries costs the bound, no more.
            let mut r = dir.reader()?;
            let mut names = Vec::new();
            while let Some(entry) = r.next_entry() {
                let (n, _) = entry?;
                self.listed += 1;
                if self.listed > self.max {
                    self.look.walk_bound = Some(self.max);
                    return Ok(());
                }
                if markers::component_match(part, &n) {
                    names.push(n);
                }
            }
            names.sort_unstable();
            names
        } else {
            vec![OsString::from(part)]
        };
        for name in names {
            // Gone between the listing and the look: a change the next look sees.
            let Some(s) = dir.stat(&name)? else { continue };
            let full = match prefix {
                Some(p) => std::path::Path::new(p).join(&name).into_os_string(),
                None => name.clone(),
            };
            if rest.is_empty() {
                if s.kind == FileType::RegularFile {
                    self.look.entries.push(EntryLook {
                        name: full,
                        regular: true,
                        identity: ready_identity(&s),
                    });
                }
            } else if s.kind == FileType::Directory
                && !s.mount_root
                && let Some(child) = dir.child(&name)?
            {
                self.look.dirs.push(full.clone());
                self.walk(&child, Some(&full), rest)?;
                if self.look.walk_bound.is_some() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// The root's mount, as `/proc/self/mountinfo` says, with what it means for settling; `None` when it
/// cannot be read (not Linux, no `/proc`).
pub fn root_mount(root: &std::path::Path) -> Option<(std::path::PathBuf, MountFacts)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let real = std::fs::canonicalize(root).ok()?;
    let all = mounts::parse(&text);
    let m = mounts::mount_of(&all, &real)?;
    Some((m.mount_point.clone(), mounts::facts(m)))
}

/// What `check-config` and the daemon at start say about the root's mount (attribute caching longer
/// than the stability checks, `flock` answered locally), and whether the lock probe can be trusted.
pub fn mount_warnings(cfg: &crate::config::Config) -> (Vec<String>, bool) {
    let Some((at, f)) = root_mount(&cfg.watch.root) else {
        return (Vec::new(), true);
    };
    let settle = cfg.watch.stability_interval * cfg.watch.stability_checks.max(1);
    let settle = settle.max(cfg.watch.ready.quiet);
    (mounts::warnings(&f, &at, settle), f.flock_local.is_none())
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;
    use crate::fsx::RootLinks;

    fn root(p: &std::path::Path) -> Root {
        Root::open(p, RootLinks::Refuse).unwrap()
    }

    #[test]
    fn lists_only_real_visible_subdirectories() {
        let t = tempfile::tempdir().unwrap();
        for d in ["b", "a", ".hidden"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("file"), "x").unwrap();
        std::os::unix::fs::symlink("/", t.path().join("link")).unwrap();
        let names = list_subdirs(&root(t.path())).unwrap();
        assert_eq!(names, vec![OsString::from("a"), OsString::from("b")]);
    }

    #[test]
    fn an_unchanged_root_hands_out_the_last_names_and_any_change_lists_again() {
        let t = tempfile::tempdir().unwrap();
        for d in ["b", "a"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
        }
        let r = root(t.path());
        let mut l = Lister::default();
        assert!(l.list(&r).unwrap(), "the first listing is a change");
        assert!(!l.list(&r).unwrap());
        assert_eq!(l.names(), [OsString::from("a"), OsString::from("b")]);
        std::fs::create_dir(t.path().join("c")).unwrap();
        std::fs::write(t.path().join("file"), "x").unwrap();
        assert!(l.list(&r).unwrap());
        assert_eq!(l.names().len(), 3);
        std::fs::remove_dir(t.path().join("a")).unwrap();
        assert!(l.list(&r).unwrap());
        assert_eq!(l.names(), [OsString::from("b"), OsString::from("c")]);
        // A file added beside them is no candidate: the listing is the same.
        std::fs::write(t.path().join("file2"), "x").unwrap();
        assert!(!l.list(&r).unwrap());
    }

    /// A settled root is not read again while its stamp stays; every kind of change of its entries
    /// (a subdirectory made, renamed, removed, a file replaced by a directory) is read at the next listing;
    /// a root changed within the margin is read every time; and it is read whole after
    /// [`LISTING_MAX_AGE`] whatever its stamp says.
    #[test]
    fn a_settled_root_is_read_again_only_when_its_stamp_changes_or_the_listing_is_old() {
        let secs = |n: i64| n * 1000;
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        std::fs::write(t.path().join("f"), "x").unwrap();
        let r = root(t.path());
        let mut l = Lister::default();
        let mono = 0;
        // Just changed: not settled, so read every time.
        let now = crate::time::wall_now();
        assert!(l.list_at(&r, now, mono).unwrap());
        assert!(!l.list_at(&r, now, mono).unwrap());
        assert_eq!(
            l.reads, 2,
            "a root changed within the margin is read each time"
        );
        // Seen 10 s later (the clock moved on, the root did not): read once more, then not again.
        let later = now + secs(10);
        assert!(!l.list_at(&r, later, mono).unwrap());
        assert_eq!(l.reads, 3);
        assert!(!l.list_at(&r, later, mono).unwrap());
        assert!(!l.list_at(&r, later, mono + secs(29)).unwrap());
        assert_eq!(l.reads, 3, "a settled, unchanged root is not read");
        type Change = fn(&std::path::Path);
        let changes: [(&str, Change); 3] = [
            ("a subdirectory made", |p| {
                std::fs::create_dir(p.join("b")).unwrap()
            }),
            ("one renamed", |p| {
                std::fs::rename(p.join("b"), p.join("c")).unwrap()
            }),
            ("a file replaced by a directory", |p| {
                std::fs::remove_file(p.join("f")).unwrap();
                std::fs::create_dir(p.join("f")).unwrap();
            }),
        ];
        for (what, change) in changes {
            // Settle what was read before (seen from far enough ahead), then change the root.
            let ahead = crate::time::wall_now() + secs(10);
            l.list_at(&r, ahead, mono).unwrap();
            let reads = l.reads;
            change(t.path());
            assert!(l.list_at(&r, ahead, mono).unwrap(), "{what}: not seen");
            assert_eq!(l.reads, reads + 1, "{what}");
        }
        assert_eq!(
            l.names(),
            [
                OsString::from("a"),
                OsString::from("c"),
                OsString::from("f")
            ]
        );
        // An old listing is read whole again whatever the stamp says.
        let ahead = crate::time::wall_now() + secs(10);
        l.list_at(&r, ahead, mono).unwrap();
        let reads = l.reads;
        assert!(!l.list_at(&r, ahead, mono + secs(1)).unwrap());
        assert_eq!(l.reads, reads);
        assert!(
            !l.list_at(&r, ahead, mono + crate::time::ms(LISTING_MAX_AGE))
                .unwrap()
        );
        assert_eq!(l.reads, reads + 1, "read whole after LISTING_MAX_AGE");
    }

    #[test]
    fn ready_file_symlink_is_not_a_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("a/_READY")).unwrap();
        std::fs::create_dir(t.path().join("c")).unwrap();
        std::fs::write(t.path().join("c/_READY"), "x").unwrap();
        let r = root(t.path());
        let stat = |d: &str| {
            let sub = open_dir(&r, d.as_ref()).unwrap()?;
            stat_ready_file(&sub, "_READY".as_ref()).unwrap()
        };
        assert_eq!(stat("a"), None, "a symlinked ready-file is ignored");
        assert_eq!(stat("b"), None, "no directory, no ready-file");
        assert_eq!(stat("c").map(|i| i.size), Some(1));
        let m = std::fs::symlink_metadata(t.path().join("c/_READY")).unwrap();
        assert_eq!(stat("c"), Some(identity_of(&m)));
    }

    #[test]
    fn a_ready_file_behind_a_symlinked_directory_is_not_seen() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("_READY"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("evil")).unwrap();
        assert!(
            open_dir(&root(t.path()), "evil".as_ref())
                .unwrap()
                .is_none()
        );
    }

    fn rules_of(markers: &[&str], max: usize) -> ReadyRules {
        ReadyRules {
            alternatives: vec![markers.iter().map(|m| m.to_string()).collect()],
            max_entries: max,
            ..ReadyRules::simple("_READY")
        }
    }

    fn rsync_rules() -> ReadyRules {
        let (alternatives, content, ignore) = crate::engine::Preset::Rsync.rules("_READY");
        ReadyRules {
            alternatives,
            content,
            ignore,
            ..ReadyRules::simple("_READY")
        }
    }

    #[test]
    fn a_path_marker_is_walked_to_never_through_a_symlink_and_within_its_bound() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("run")).unwrap();
        std::fs::write(outside.path().join("run/final_summary_X.txt"), "x").unwrap();
        std::fs::create_dir_all(t.path().join("exp/s1/run_a")).unwrap();
        std::fs::write(t.path().join("exp/s1/run_a/final_summary_A.txt"), "a").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("exp/s2")).unwrap();
        let r = root(t.path());
        let sub = open_dir(&r, "exp".as_ref()).unwrap().unwrap();
        let rules = rules_of(&["*/*/final_summary_*.txt"], 100);
        let look = gather(&sub, &rules).unwrap();
        let names: Vec<_> = look
            .entries
            .iter()
            .filter(|e| e.name.as_encoded_bytes().contains(&b'/'))
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, [OsString::from("s1/run_a/final_summary_A.txt")]);
        assert_eq!(
            look.dirs,
            [OsString::from("s1"), OsString::from("s1/run_a")]
        );
        assert!(matches!(decide(&rules, &look), ReadyDecision::Ready { .. }));
        // The lock probe reaches the marker folder by folder.
        assert_eq!(
            probe_lock(&sub, "s1/run_a/final_summary_A.txt".as_ref()).unwrap(),
            LockProbe::Free
        );
        assert!(probe_lock(&sub, "s2/run/final_summary_X.txt".as_ref()).is_err());
        // Past its bound the walk stops and says so.
        for i in 0..5 {
            std::fs::write(t.path().join(format!("exp/s1/f{i}")), "").unwrap();
        }
        let look = gather(&sub, &rules_of(&["*/*/final_summary_*.txt"], 3)).unwrap();
        assert_eq!(look.walk_bound, Some(3));
    }

    fn decide_in(t: &std::path::Path, d: &str, rules: &ReadyRules) -> ReadyDecision {
        let r = root(t);
        let sub = open_dir(&r, d.as_ref()).unwrap().unwrap();
        decide(rules, &gather(&sub, rules).unwrap())
    }

    #[test]
    fn a_temporary_deep_in_the_tree_holds_and_a_finished_recheck_does_not_look_for_it() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("run/Data/Intensities/BaseCalls/L001");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(t.path().join("run/_READY"), "").unwrap();
        std::fs::write(deep.join(".s_1_1101.cbcl.mecvPV"), "half").unwrap();
        let rules = rsync_rules();
        match decide_in(t.path(), "run", &rules) {
            ReadyDecision::NotReady(NotReady::Temporaries { names }) => assert_eq!(
                names,
                ["Data/Intensities/BaseCalls/L001/.s_1_1101.cbcl.mecvPV"]
            ),
            other => panic!("{other:?}"),
        }
        // The markers alone (a finished directory's recheck): one statx, no walk.
        let r = root(t.path());
        let sub = open_dir(&r, "run".as_ref()).unwrap().unwrap();
        let look = gather_at(&sub, &rules, Depth::Markers, 0).unwrap();
        assert!(look.temporaries.is_empty());
        assert!(matches!(decide(&rules, &look), ReadyDecision::Ready { .. }));
        std::fs::rename(
            deep.join(".s_1_1101.cbcl.mecvPV"),
            deep.join("s_1_1101.cbcl"),
        )
        .unwrap();
        assert!(matches!(
            decide_in(t.path(), "run", &rules),
            ReadyDecision::Ready { .. }
        ));
    }

    #[test]
    fn a_temporary_behind_a_symlink_is_not_looked_for() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x.filepart"), "").unwrap();
        std::fs::create_dir(t.path().join("run")).unwrap();
        std::fs::write(t.path().join("run/_READY"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("run/link")).unwrap();
        assert!(matches!(
            decide_in(t.path(), "run", &rsync_rules()),
            ReadyDecision::Ready { .. }
        ));
    }

    #[test]
    fn a_listing_stops_at_its_bound_at_the_top_and_below() {
        let t = tempfile::tempdir().unwrap();
        for d in ["flat", "nested/sub"] {
            let p = t.path().join(d);
            std::fs::create_dir_all(&p).unwrap();
            for i in 0..50 {
                std::fs::write(p.join(format!("f{i}")), "").unwrap();
            }
        }
        std::fs::write(t.path().join("flat/_READY"), "").unwrap();
        std::fs::write(t.path().join("nested/_READY"), "").unwrap();
        let rules = ReadyRules {
            max_entries: 20,
            ..rsync_rules()
        };
        for d in ["flat", "nested"] {
            let r = root(t.path());
            let sub = open_dir(&r, d.as_ref()).unwrap().unwrap();
            let look = gather(&sub, &rules).unwrap();
            assert!(look.bound_hit, "{d}");
            assert!(look.entries.len() <= 20, "{d}: {}", look.entries.len());
            match decide(&rules, &look) {
                ReadyDecision::NotReady(why @ NotReady::TooManyEntries { .. }) => {
                    assert!(why.words().contains("`watch.quiet_max_entries`"))
                }
                other => panic!("{d}: {other:?}"),
            }
        }
        // A glob marker lists the directory too: the same bound.
        let glob = ReadyRules {
            alternatives: vec![vec!["_REA*".into()]],
            max_entries: 20,
            ..ReadyRules::simple("_READY")
        };
        assert!(matches!(
            decide_in(t.path(), "flat", &glob),
            ReadyDecision::NotReady(NotReady::TooManyEntries { max_entries: 20 })
        ));
    }

    #[test]
    fn a_tree_past_the_depth_a_look_goes_is_too_deep_not_unreadable() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("deep");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("_READY"), "").unwrap();
        // Built relative to a descriptor: the path would pass PATH_MAX long before.
        let mut fd =
            rustix::fs::open(&p, rustix::fs::OFlags::DIRECTORY, rustix::fs::Mode::empty()).unwrap();
        for _ in 0..TREE_DEPTH_MAX + 5 {
            rustix::fs::mkdirat(&fd, "d", rustix::fs::Mode::RWXU).unwrap();
            fd = rustix::fs::openat(
                &fd,
                "d",
                rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
        }
        let rules = ReadyRules {
            max_entries: 1_000_000,
            ..rsync_rules()
        };
        match decide_in(t.path(), "deep", &rules) {
            ReadyDecision::NotReady(why @ NotReady::TooDeep { .. }) => {
                assert!(why.words().contains("too deep"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exclusive_lock_of_a_writer_is_seen() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        let p = t.path().join("d/_READY");
        std::fs::write(&p, "").unwrap();
        let r = root(t.path());
        let sub = open_dir(&r, "d".as_ref()).unwrap().unwrap();
        let probe = || probe_lock(&sub, "_READY".as_ref()).unwrap();
        assert_eq!(probe(), LockProbe::Free);
        let writer = OpenOptions::new().write(true).open(&p).unwrap();
        writer.lock().unwrap();
        assert_eq!(probe(), LockProbe::Held);
        writer.unlock().unwrap();
        assert_eq!(probe(), LockProbe::Free);
    }
}
