//! The safe delete: removes one direct subdirectory of the root and everything in it, reached only through
//! descriptors.
//!
//! Owns: opening the directory (never through a symlink, never a mount point), checking who it is on the
//! descriptor, the walk that empties it, and the last `rmdir` by name from the root. The walk never follows
//! a link (it removes links themselves), never enters another mount (a mount point inside is left alone and
//! reported), and is iterative with a fixed budget of open directories: depth is bounded by neither the
//! stack nor the open-file limit. A directory whose descriptor was closed to stay within the budget is
//! reopened through `..` of its child and must be the same inode, so a tree moved away while it is being
//! deleted stops the walk instead of leading it elsewhere. The walk can be carried out in slices of a
//! given number of entries ([`Removal::step`]), its state kept between them, so that a caller deletes a
//! tree of any size without holding its own loop. Must never: resolve a path string, follow a symlink,
//! cross into another mount, or remove a name that no longer refers to the directory it checked.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{AtFlags, Dir, FileType};
use rustix::io::Errno;

use super::root::{FileStat, Ident, Root, open_dir_at, stat_at, stat_fd};

/// At most this many directories of the walk are open at once (the top one, the current one and the
/// nearest ancestors); deeper ancestors are closed and reopened through `..` on the way up.
const OPEN_DIRS: usize = 16;

/// Why a directory was not (or not wholly) removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// Nothing has that name.
    #[error("it no longer exists")]
    Gone,
    /// The name is a symlink or not a directory.
    #[error("it is not a real directory (symlink or file)")]
    NotADirectory,
    /// The directory is itself the root of a mount (another file system, a bind mount, an automount).
    #[error("it is a mount point (another file system or a bind mount); nothing of it was deleted")]
    MountPoint,
    /// The directory is not the one the caller expected.
    #[error("it was replaced by another directory")]
    Replaced,
    /// The walk left parts of the tree: mount points inside (never entered) and entries that could not
    /// be removed. Everything else was removed.
    #[error("{}", left_words(.mounts, .failures))]
    Left {
        /// Mount points inside, relative to the directory.
        mounts: Vec<PathBuf>,
        /// Entries that could not be removed (the first few), relative to the directory, with the cause.
        failures: Vec<(PathBuf, io::Error)>,
    },
    /// A directory of the tree moved while it was being deleted: the walk stopped there.
    #[error("`{}` moved while it was being deleted; stopped there", .0.display())]
    Moved(PathBuf),
    /// Looking at or opening the directory failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<Errno> for RemoveError {
    fn from(e: Errno) -> Self {
        RemoveError::Io(e.into())
    }
}

fn left_words(mounts: &[PathBuf], failures: &[(PathBuf, io::Error)]) -> String {
    let list = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(", ");
    let mut parts = Vec::new();
    if !mounts.is_empty() {
        parts.push(format!(
            "it holds {} mount point(s), left alone with what leads to them: {}",
            mounts.len(),
            list(&mut mounts.iter().map(|p| format!("`{}`", p.display())))
        ));
    }
    if !failures.is_empty() {
        parts.push(format!(
            "{} entr{} could not be removed: {}",
            failures.len(),
            if failures.len() == 1 { "y" } else { "ies" },
            list(
                &mut failures
                    .iter()
                    .map(|(p, e)| format!("`{}` ({e})", p.display()))
            )
        ));
    }
    parts.join("; ")
}

/// How many failures are kept for the message (the walk goes on past them).
const FAILURES_KEPT: usize = 5;

/// A direct subdirectory of the root, opened for deletion and checked: a real directory on the root's own
/// mount. Look at it ([`Doomed::ident`], [`Doomed::stat`]) before [`Doomed::remove`].
#[derive(Debug)]
pub struct Doomed<'r> {
    /// The root it is in.
    root: &'r Root,
    /// Its name in the root.
    name: OsString,
    /// The directory, opened for reading.
    fd: OwnedFd,
    /// Its identity, from the descriptor.
    ident: Ident,
}

impl Root {
    /// Opens the subdirectory `name` for deletion: not through a symlink, not a mount point (checked
    /// before it is opened, so no automount is triggered, and again on the descriptor).
    pub fn open_for_removal(&self, name: &OsStr) -> Result<Doomed<'_>, RemoveError> {
        let Some(seen) = stat_at(self.fd(), name)? else {
            return Err(RemoveError::Gone);
        };
        if seen.kind != FileType::Directory {
            return Err(RemoveError::NotADirectory);
        }
        if seen.mount_root || self.ident().other_mount(&seen.ident) {
            return Err(RemoveError::MountPoint);
        }
        let fd = match open_dir_at(self.fd(), name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(RemoveError::Gone),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                return Err(RemoveError::NotADirectory);
            }
            Err(e) => return Err(e.into()),
        };
        let ident = stat_fd(fd.as_fd())?.ident;
        if self.ident().other_mount(&ident) {
            return Err(RemoveError::MountPoint);
        }
        if ident.dev_ino() != seen.ident.dev_ino() {
            // Swapped between the look and the open.
            return Err(RemoveError::Replaced);
        }
        Ok(Doomed {
            root: self,
            name: name.to_os_string(),
            fd,
            ident,
        })
    }

    /// The name of a direct subdirectory whose device and inode are `dev_ino`, if there is one (a
    /// directory renamed within the root keeps them).
    pub fn find_dir(&self, dev_ino: (u64, u64)) -> io::Result<Option<OsString>> {
        for (name, kind) in self.entries()? {
            if !matches!(kind, FileType::Directory | FileType::Unknown) {
                continue;
            }
            if let Some(st) = self.stat(&name)?
                && st.kind == FileType::Directory
                && st.ident.dev_ino() == dev_ino
            {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }
}

impl Doomed<'_> {
    /// Its identity, from the descriptor.
    pub fn ident(&self) -> Ident {
        self.ident
    }

    /// `statx` of `name` inside it, without following a symlink; `None` if it does not exist.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        stat_at(self.fd.as_fd(), name)
    }

    /// Removes everything in it, then the directory itself by name from the root — only if that name still
    /// refers to the same directory. On [`RemoveError::Left`] everything else is gone and the directory
    /// stays (it is not empty).
    pub fn remove(self) -> Result<(), RemoveError> {
        let root = self.root;
        let mut r = self.start()?;
        while r.step(root, usize::MAX)? == Progress::More {}
        Ok(())
    }

    /// The removal as a walk that can be carried out in slices ([`Removal::step`]), between which the
    /// caller does other work and checks that the directory is still the one it means to delete.
    pub fn start(self) -> Result<Removal, RemoveError> {
        let Doomed {
            root: _,
            name,
            fd,
            ident,
        } = self;
        Ok(Removal {
            name,
            ident,
            stack: vec![Frame::new(OsString::new(), ident, fd)?],
            report: Report::default(),
        })
    }
}

/// A removal under way: the walk's state between two slices (the path down, a fixed number of its
/// directories open, and what it must report). Dropped before its end, it leaves the rest of the
/// tree in place; a later removal of the same directory starts again from its top.
pub struct Removal {
    /// Its name in the root.
    name: OsString,
    /// Its identity.
    ident: Ident,
    /// The path down from it to the directory being read; empty once it is emptied.
    stack: Vec<Frame>,
    /// What the walk left.
    report: Report,
}

impl std::fmt::Debug for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Removal")
            .field("name", &self.name)
            .field("depth", &self.stack.len())
            .finish()
    }
}

/// Where a removal stands after a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The directory is gone.
    Done,
    /// There is more to remove.
    More,
}

impl Removal {
    /// The directory's identity.
    pub fn ident(&self) -> Ident {
        self.ident
    }

    /// The name it had in the root.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// Carries the walk on for at most `budget` entries (each unlinked file, entered or left directory
    /// counts one); when the tree is empty, removes the directory itself from `root` by name — only if
    /// that name still refers to it. On [`RemoveError::Left`] everything else is gone and the directory
    /// stays.
    pub fn step(&mut self, root: &Root, budget: usize) -> Result<Progress, RemoveError> {
        if !empty_tree(&mut self.stack, &mut self.report, self.ident, budget)? {
            return Ok(Progress::More);
        }
        let report = std::mem::take(&mut self.report);
        if !report.mounts.is_empty() || report.failed != 0 {
            return Err(RemoveError::Left {
                mounts: report.mounts,
                failures: report.failures,
            });
        }
        let now = stat_at(root.fd(), &self.name)?;
        if now.map(|s| s.ident.dev_ino()) != Some(self.ident.dev_ino()) {
            return Err(RemoveError::Replaced);
        }
        rustix::fs::unlinkat(root.fd(), &self.name, AtFlags::REMOVEDIR).map_err(io::Error::from)?;
        Ok(Progress::Done)
    }
}

/// One directory on the way down.
struct Frame {
    /// Its name in its parent (empty for the top).
    name: OsString,
    /// Its identity.
    ident: Ident,
    /// Its reader, `None` while closed to stay within [`OPEN_DIRS`].
    dir: Option<Dir>,
    /// Entries that stay: mount points and entries that could not be removed (never tried twice).
    left: HashSet<OsString>,
    /// Reading it failed: what remains in it stays.
    unreadable: bool,
    /// Something was removed in this pass over it: it is read once more, since removing entries while
    /// reading a directory may hide others from the reader.
    removed: bool,
}

impl Frame {
    fn new(name: OsString, ident: Ident, fd: OwnedFd) -> io::Result<Frame> {
        Ok(Frame {
            name,
            ident,
            dir: Some(Dir::new(fd)?),
            left: HashSet::new(),
            unreadable: false,
            removed: false,
        })
    }

    /// The open reader of the current directory.
    fn reader(&mut self) -> &mut Dir {
        self.dir.as_mut().expect("the current directory is open")
    }

    /// Whether it ends the walk non-empty.
    fn keeps_something(&self) -> bool {
        self.unreadable || !self.left.is_empty()
    }
}

/// What the walk found that it must report.
#[derive(Default)]
struct Report {
    mounts: Vec<PathBuf>,
    failures: Vec<(PathBuf, io::Error)>,
    failed: usize,
}

impl Report {
    fn failed(&mut self, path: PathBuf, e: io::Error) {
        self.failed += 1;
        if self.failures.len() < FAILURES_KEPT {
            self.failures.push((path, e));
        }
    }
}

/// The path of `name` inside the frame on top of `stack`, relative to the top directory (for messages).
fn rel_path(stack: &[Frame], name: &OsStr) -> PathBuf {
    let mut p: PathBuf = stack.iter().skip(1).map(|f| f.name.as_os_str()).collect();
    p.push(name);
    p
}

/// What to do with one entry of the current directory.
enum Step {
    /// Handled (removed, or vanished meanwhile).
    Done,
    /// A real directory on the same mount, opened: go down into it.
    Enter(Ident, OwnedFd),
}

/// Empties the directory at the bottom of `stack` (`top`): iterative, depth-first, within [`OPEN_DIRS`],
/// for at most `budget` entries. True when it is empty (the stack too); what stays is in `report`.
fn empty_tree(
    stack: &mut Vec<Frame>,
    report: &mut Report,
    top: Ident,
    budget: usize,
) -> Result<bool, RemoveError> {
    let mut spent = 0;
    while let Some(frame) = stack.last_mut() {
        if spent >= budget {
            return Ok(false);
        }
        spent += 1;
        let entry = match frame.reader().read() {
            Some(Ok(entry)) => entry,
            Some(Err(e)) => {
                // The reader stops at its first error (it then reads as the end).
                frame.unreadable = true;
                let (up, me) = stack.split_at(stack.len() - 1);
                report.failed(rel_path(up, &me[0].name), e.into());
                continue;
            }
            None if frame.removed && !frame.unreadable => {
                frame.removed = false;
                frame.reader().rewind();
                continue;
            }
            None => {
                climb(stack, report)?;
                continue;
            }
        };
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." || frame.left.contains(name) {
            continue;
        }
        let name = name.to_os_string();
        let dirfd = frame.reader().fd()?;
        match step(dirfd, &name, entry.file_type(), top) {
            Ok(Step::Done) => frame.removed = true,
            Ok(Step::Enter(ident, fd)) => {
                stack.push(Frame::new(name, ident, fd)?);
                keep_open_within_budget(stack);
            }
            Err(left) => {
                let path = rel_path(stack, &name);
                match left {
                    Left::Mount => report.mounts.push(path),
                    Left::Failed(e) => report.failed(path, e),
                }
                stack.last_mut().expect("non-empty").left.insert(name);
            }
        }
    }
    Ok(true)
}

/// Why an entry stays.
enum Left {
    Mount,
    Failed(io::Error),
}

/// Removes a non-directory entry, or opens a directory entry to go down into it.
fn step(dir: BorrowedFd<'_>, name: &OsStr, kind: FileType, top: Ident) -> Result<Step, Left> {
    if kind != FileType::Directory && kind != FileType::Unknown {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => return Ok(Step::Done),
            // It is a directory after all (replaced since readdir): look at it below.
            Err(Errno::ISDIR) => {}
            Err(e) => return Err(Left::Failed(e.into())),
        }
    }
    let st = match stat_at(dir, name) {
        Ok(Some(st)) => st,
        Ok(None) => return Ok(Step::Done),
        Err(e) => return Err(Left::Failed(e)),
    };
    if st.kind != FileType::Directory {
        return match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(Step::Done),
            Err(e) => Err(Left::Failed(e.into())),
        };
    }
    if st.mount_root || top.other_mount(&st.ident) {
        return Err(Left::Mount);
    }
    let fd = match open_dir_at(dir, name) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Step::Done),
        Err(e) => return Err(Left::Failed(e)),
    };
    let opened = stat_fd(fd.as_fd()).map_err(Left::Failed)?;
    if top.other_mount(&opened.ident) {
        return Err(Left::Mount);
    }
    if opened.ident.dev_ino() != st.ident.dev_ino() {
        let e = io::Error::other("it was replaced while being deleted");
        return Err(Left::Failed(e));
    }
    Ok(Step::Enter(opened.ident, fd))
}

/// Keeps at most [`OPEN_DIRS`] directories of the walk open: closes the oldest open one but the top.
///
/// Constant time: the open frames are the first one and a run of at most `OPEN_DIRS - 1` at the top
/// of the stack (a frame is closed only at the bottom of that run, and reopened only when it is the
/// top), so after a push the only one that can be over the budget is the `OPEN_DIRS`-th from the top.
fn keep_open_within_budget(stack: &mut [Frame]) {
    if stack.len() > OPEN_DIRS {
        stack[stack.len() - OPEN_DIRS].dir = None;
    }
}

/// The directory on top of `stack` is read to its end: leave it for its parent, removing it when it is
/// empty (by name from the parent, only if the name still refers to it).
fn climb(stack: &mut Vec<Frame>, report: &mut Report) -> Result<(), RemoveError> {
    let done = stack.pop().expect("non-empty");
    // Built only when something is said about it: building it at every level would make a deep
    // tree's walk quadratic in its depth.
    let Some(parent) = stack.last_mut() else {
        // The top: the caller removes it from the root.
        return Ok(());
    };
    if parent.dir.is_none() {
        let child = done.dir.as_ref().expect("the current directory is open");
        let fd = open_dir_at(child.fd()?, OsStr::new(".."))?;
        if stat_fd(fd.as_fd())?.ident.dev_ino() != parent.ident.dev_ino() {
            return Err(RemoveError::Moved(rel_path(stack, &done.name)));
        }
        // A fresh reader starts from the beginning: a new pass over the parent.
        parent.dir = Some(Dir::new(fd)?);
    }
    if done.keeps_something() {
        parent.left.insert(done.name);
        return Ok(());
    }
    let pfd = parent.dir.as_ref().expect("open").fd()?;
    let now = stat_at(pfd, &done.name)?;
    let failed = if now.map(|s| s.ident.dev_ino()) != Some(done.ident.dev_ino()) {
        io::Error::other("it was replaced while being deleted")
    } else {
        match rustix::fs::unlinkat(pfd, &done.name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => {
                parent.removed = true;
                return Ok(());
            }
            Err(e) => e.into(),
        }
    };
    report.failed(rel_path(stack, &done.name), failed);
    stack.last_mut().expect("the parent").left.insert(done.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use super::*;
    use crate::fsx::RootLinks;

    fn root_of(p: &Path) -> Root {
        Root::open(p, RootLinks::Refuse).unwrap()
    }

    /// `depth` nested directories `n/n/…` under `top`, each with a file; returns the deepest.
    fn nest(top: &Path, depth: usize) -> PathBuf {
        let mut p = top.to_path_buf();
        for i in 0..depth {
            p.push("n");
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join(format!("f{i}")), b"x").unwrap();
        }
        p
    }

    #[test]
    fn removes_a_tree_of_files_links_and_fifos_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), b"keep").unwrap();
        let root = t.path().join("root");
        let d = root.join("case");
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/data"), b"1").unwrap();
        symlink(&outside, d.join("a/to-dir")).unwrap();
        symlink(outside.join("precious"), d.join("a/b/to-file")).unwrap();
        symlink("/nonexistent", d.join("dangling")).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, d.join("fifo"), rustix::fs::Mode::RUSR).unwrap();
        let r = root_of(&root);
        r.open_for_removal("case".as_ref())
            .unwrap()
            .remove()
            .unwrap();
        assert!(!d.exists());
        assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep");
    }

    #[test]
    fn a_tree_deeper_than_the_open_directory_budget_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("case");
        std::fs::create_dir(&d).unwrap();
        nest(&d, OPEN_DIRS * 4 + 3);
        let r = root_of(t.path());
        r.open_for_removal("case".as_ref())
            .unwrap()
            .remove()
            .unwrap();
        assert!(!d.exists());
    }

    #[test]
    fn a_deep_tree_that_branches_after_climbing_is_removed_within_the_budget() {
        // Down past the budget, back up part way, then down again in a sibling: the walk closes and
        // reopens directories in both directions.
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("case");
        std::fs::create_dir(&d).unwrap();
        let deep = nest(&d, OPEN_DIRS * 3);
        let mut mid = deep.clone();
        for _ in 0..OPEN_DIRS * 2 {
            mid.pop();
        }
        for b in ["a", "b"] {
            std::fs::create_dir(mid.join(b)).unwrap();
            nest(&mid.join(b), OPEN_DIRS * 2);
        }
        let r = root_of(t.path());
        r.open_for_removal("case".as_ref())
            .unwrap()
            .remove()
            .unwrap();
        assert!(!d.exists());
    }

    #[test]
    fn a_removal_in_slices_goes_on_where_it_stopped() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("case");
        std::fs::create_dir(&d).unwrap();
        let depth = OPEN_DIRS * 20;
        nest(&d, depth);
        let r = root_of(t.path());
        let mut removal = r
            .open_for_removal("case".as_ref())
            .unwrap()
            .start()
            .unwrap();
        let mut slices = 0;
        while removal.step(&r, 50).unwrap() == Progress::More {
            slices += 1;
            assert!(d.exists(), "gone before its last slice");
        }
        assert!(!d.exists());
        // Each level is a handful of steps (its entries, `.` and `..` read twice: a pass after a removal
        // reads it again). Started again from the top at each slice, the walk would take depth²/2 steps.
        assert!(
            slices * 50 <= depth * 12,
            "{slices} slices of 50 for {depth} levels"
        );
    }

    #[test]
    fn refuses_a_symlink_a_file_and_a_missing_name() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("precious"), b"keep").unwrap();
        symlink(outside.path(), t.path().join("link")).unwrap();
        std::fs::write(t.path().join("file"), b"").unwrap();
        let r = root_of(t.path());
        let e = |n: &str| r.open_for_removal(n.as_ref()).unwrap_err();
        assert!(matches!(e("link"), RemoveError::NotADirectory));
        assert!(matches!(e("file"), RemoveError::NotADirectory));
        assert!(matches!(e("absent"), RemoveError::Gone));
        assert!(outside.path().join("precious").exists());
    }

    #[test]
    fn the_emptied_directory_is_not_removed_when_its_name_now_means_another() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("case")).unwrap();
        std::fs::write(t.path().join("case/data"), b"1").unwrap();
        let r = root_of(t.path());
        let doomed = r.open_for_removal("case".as_ref()).unwrap();
        // Renamed away after it was opened, and another directory took the name.
        std::fs::rename(t.path().join("case"), t.path().join("moved")).unwrap();
        std::fs::create_dir(t.path().join("case")).unwrap();
        std::fs::write(t.path().join("case/other"), b"2").unwrap();
        assert!(matches!(doomed.remove(), Err(RemoveError::Replaced)));
        assert!(
            t.path().join("case/other").exists(),
            "the newcomer was touched"
        );
        // What was opened is what was emptied: the directory itself, wherever it went.
        assert!(t.path().join("moved").exists());
        assert!(!t.path().join("moved/data").exists());
    }
}
