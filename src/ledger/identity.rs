//! What the ledger knows of itself: which file it is (device and inode, of it and of its directory), which
//! root it serves, and that one writer holds it — and what a start may conclude when the file is missing or
//! empty while an earlier ledger left its traces.
//!
//! Owns: the look at `behavior.state_file` before it is opened (a symlink or something other than a file is
//! refused), the exclusive lock on the ledger file itself (an inode lock: a second daemon is refused through
//! any name of the file — the lock file beside it, a hard link, another path), the check of each cycle that
//! the path still names the file held, and the list of traces of an earlier ledger. Must never: create
//! anything, or follow a symlink at the ledger's own name.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::state_paths::StatePaths;

/// What is at the ledger's path before it is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtPath {
    /// A regular file with content: an existing ledger (checked further when opened).
    Ledger,
    /// Nothing there.
    Missing,
    /// A regular file of 0 bytes (truncated, or created and never written).
    Empty,
    /// A symlink (dangling or not): never followed, never created through.
    Symlink(PathBuf),
    /// A directory, device, socket, …
    NotAFile,
}

impl AtPath {
    /// True when opening would start a new, empty ledger.
    pub fn is_fresh(&self) -> bool {
        matches!(self, AtPath::Missing | AtPath::Empty)
    }

    /// In words, for messages: "missing", "empty (0 bytes)".
    pub fn word(&self) -> &'static str {
        match self {
            AtPath::Ledger => "there",
            AtPath::Missing => "missing",
            AtPath::Empty => "empty (0 bytes)",
            AtPath::Symlink(_) => "a symlink",
            AtPath::NotAFile => "not a regular file",
        }
    }
}

/// Looks at `path` without following a symlink at its last component.
pub fn look(path: &Path) -> io::Result<AtPath> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AtPath::Missing),
        Err(e) => Err(e),
        Ok(m) if m.file_type().is_symlink() => Ok(AtPath::Symlink(
            std::fs::read_link(path).unwrap_or_default(),
        )),
        Ok(m) if !m.file_type().is_file() => Ok(AtPath::NotAFile),
        Ok(m) if m.len() == 0 => Ok(AtPath::Empty),
        Ok(_) => Ok(AtPath::Ledger),
    }
}

/// `(st_dev, st_ino)`.
pub type FileId = (u64, u64);

fn id_of(m: &std::fs::Metadata) -> FileId {
    (m.dev(), m.ino())
}

/// The exclusive lock on the ledger file itself, and the identity of the file and its directory as they
/// were when it was taken. Held for as long as this value lives.
#[derive(Debug)]
pub struct Held {
    file: File,
    path: PathBuf,
    file_id: FileId,
    dir_id: FileId,
}

/// Why the ledger's path no longer names the ledger held open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The file was removed (its directory may be gone too): what is written now is lost at a restart.
    #[error("the ledger file was removed (the daemon still holds the deleted file open)")]
    Removed,
    /// Another file (or a symlink) is at the path now.
    #[error(
        "another file was put in place of the ledger (device/inode {now:?}, the ledger's {was:?})"
    )]
    Replaced {
        /// The ledger held open.
        was: FileId,
        /// What the path names now.
        now: FileId,
    },
    /// The directory of the ledger was removed or replaced.
    #[error("the directory of the ledger was removed or replaced")]
    DirReplaced,
    /// The path cannot be looked at (permissions changed, I/O error).
    #[error("the ledger's path cannot be looked at: {0}")]
    Unreadable(String),
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it: a second daemon on the same ledger, through any name of the file.
    #[error("another process holds the ledger")]
    Held,
    /// The file could not be opened or locked.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Held {
    /// Takes the exclusive lock on the file at `path` (not following a symlink), without waiting. SQLite's
    /// own locks are POSIX record locks, which `flock` does not touch: readers (`status`) and the CLI's
    /// writes (`retry`, `forget`) go on while the daemon holds this.
    pub fn take(path: &Path) -> Result<Held, LockError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(LockError::Held),
            Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        let file_id = id_of(&file.metadata()?);
        let dir_id = id_of(&std::fs::metadata(parent_of(path))?);
        Ok(Held {
            file,
            path: path.to_path_buf(),
            file_id,
            dir_id,
        })
    }

    /// Whether the path still names the file held (and its directory the directory it was in).
    pub fn check(&self) -> Result<(), Problem> {
        let held = self
            .file
            .metadata()
            .map_err(|e| Problem::Unreadable(e.to_string()))?;
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if id_of(&m) == self.file_id && !m.file_type().is_symlink() => {}
            Ok(m) => {
                return Err(Problem::Replaced {
                    was: self.file_id,
                    now: id_of(&m),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound || held.nlink() == 0 => {
                return Err(Problem::Removed);
            }
            Err(e) => return Err(Problem::Unreadable(e.to_string())),
        }
        if held.nlink() == 0 {
            return Err(Problem::Removed);
        }
        match std::fs::metadata(parent_of(&self.path)) {
            Ok(m) if id_of(&m) == self.dir_id => Ok(()),
            Ok(_) => Err(Problem::DirReplaced),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Problem::DirReplaced),
            Err(e) => Err(Problem::Unreadable(e.to_string())),
        }
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Traces an earlier ledger leaves beside its file and in the root, each in words. Empty when none is
/// found: the root is new to this ledger's directory.
pub fn traces_on_disk(paths: &StatePaths, output_folder: Option<&Path>) -> Vec<String> {
    let mut found = Vec::new();
    let lock = &paths.lock;
    if let Some(id) = ledger_named_by_lock(lock) {
        found.push(format!(
            "the lock file `{}` names ledger {id}",
            lock.display()
        ));
    }
    let snap = &paths.status_json;
    if snap.exists() {
        found.push(format!(
            "the status snapshot `{}` of a daemon that ran",
            snap.display()
        ));
    }
    let jobs = &paths.local_jobs;
    let n = entries(jobs);
    if n > 0 {
        found.push(format!("{n} local job folder(s) in `{}`", jobs.display()));
    }
    // Only a folder the daemon made counts (its own, writable by no one else): anyone who may write the
    // root could plant one, and a planted folder must not keep the daemon from starting.
    if let Some(out) = output_folder.filter(|o| is_ours(o)) {
        let n = entries(out);
        if n > 0 {
            found.push(format!("{n} job output file(s) in `{}`", out.display()));
        }
    }
    found
}

/// How many files a folder the daemon made (its own, writable by no one else) holds, up to 1,000; 0 for
/// a folder that is missing or not provably the daemon's.
pub fn files_in_own_folder(dir: &Path) -> usize {
    if is_ours(dir) { entries(dir) } else { 0 }
}

fn is_ours(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| {
        m.file_type().is_dir() && m.uid() == unsafe { libc::geteuid() } && m.mode() & 0o022 == 0
    })
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |r| r.take(1000).count())
}

/// Mode of the lock file: only the service user may open it (and so hold the lock).
pub const LOCK_MODE: u32 = 0o600;

/// Why the lock file beside the ledger could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockFileError {
    /// Another process holds it.
    #[error(
        "another dirwatcher is running with this ledger (lock `{lock}` is held); stop it first (`systemctl stop dirwatcher`)"
    )]
    Held {
        /// The lock file.
        lock: PathBuf,
    },
    /// It could not be created or opened.
    #[error("cannot open the lock file `{path}`")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Takes the lock file beside the state file (creating it, and its directory, if needed); held for as
/// long as the returned file lives.
pub fn take_lock_file(paths: &StatePaths) -> Result<File, LockFileError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = paths.lock.clone();
    let io_err = |source| LockFileError::Io {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(super::LEDGER_DIR_MODE)
            .create(parent)
            .map_err(io_err)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .mode(LOCK_MODE)
        .open(&path)
        .map_err(io_err)?;
    // Exactly that mode, also for a lock file left with a wider one: whoever can open it can take the lock
    // and keep the daemon from starting. (Not possible on a lock file of another user: left as it is.)
    let _ = f.set_permissions(std::fs::Permissions::from_mode(LOCK_MODE));
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockFileError::Held { lock: path }),
        Err(std::fs::TryLockError::Error(source)) => Err(LockFileError::Io { path, source }),
    }
}

/// The ledger id written in the lock file by the daemon that last held it (`ledger <id>`), if any.
pub fn ledger_named_by_lock(lock: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("ledger "))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Writes `ledger <id>` into the (held) lock file, so that a start after the ledger was lost or replaced
/// can tell.
pub fn name_ledger_in_lock(lock: &mut File, id: &str) -> io::Result<()> {
    use std::io::{Seek, Write};
    lock.set_len(0)?;
    lock.seek(io::SeekFrom::Start(0))?;
    lock.write_all(format!("ledger {id}\n").as_bytes())?;
    lock.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_at_the_path() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state.db");
        assert_eq!(look(&p).unwrap(), AtPath::Missing);
        std::fs::write(&p, b"").unwrap();
        assert_eq!(look(&p).unwrap(), AtPath::Empty);
        std::fs::write(&p, b"SQLite format 3\0").unwrap();
        assert_eq!(look(&p).unwrap(), AtPath::Ledger);
        let l = t.path().join("link.db");
        std::os::unix::fs::symlink(t.path().join("nowhere.db"), &l).unwrap();
        assert!(matches!(look(&l).unwrap(), AtPath::Symlink(_)));
        assert!(!t.path().join("nowhere.db").exists());
        assert_eq!(look(t.path()).unwrap(), AtPath::NotAFile);
    }

    #[test]
    fn one_holder_through_every_name_of_the_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state.db");
        std::fs::write(&p, b"x").unwrap();
        let held = Held::take(&p).unwrap();
        let other = t.path().join("other-name.db");
        std::fs::hard_link(&p, &other).unwrap();
        assert!(matches!(Held::take(&other), Err(LockError::Held)));
        assert!(matches!(Held::take(&p), Err(LockError::Held)));
        assert_eq!(held.check(), Ok(()));
        drop(held);
        Held::take(&other).expect("free once the holder is gone");
    }

    #[test]
    fn a_removed_or_replaced_file_is_noticed() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("state");
        std::fs::create_dir(&d).unwrap();
        let p = d.join("state.db");
        std::fs::write(&p, b"x").unwrap();
        let held = Held::take(&p).unwrap();
        std::fs::rename(&p, d.join("moved.db")).unwrap();
        std::fs::write(&p, b"y").unwrap();
        assert!(matches!(held.check(), Err(Problem::Replaced { .. })));
        std::fs::remove_file(&p).unwrap();
        assert_eq!(held.check(), Err(Problem::Removed));
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(held.check(), Err(Problem::Removed));
    }

    #[test]
    fn traces_of_an_earlier_ledger() {
        let t = tempfile::tempdir().unwrap();
        let p = crate::state_paths::StatePaths::of(&t.path().join("state.db"));
        assert!(traces_on_disk(&p, None).is_empty());
        // An empty lock file (a start that failed before its ledger opened) is no trace.
        std::fs::write(&p.lock, b"").unwrap();
        assert!(traces_on_disk(&p, None).is_empty());
        let mut lock = std::fs::OpenOptions::new()
            .write(true)
            .open(&p.lock)
            .unwrap();
        name_ledger_in_lock(&mut lock, "abcd1234").unwrap();
        let out = t.path().join("logs");
        std::fs::create_dir(&out).unwrap();
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .unwrap();
        std::fs::write(out.join("dirwatch-a-1.out"), b"").unwrap();
        let found = traces_on_disk(&p, Some(&out));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("abcd1234"), "{found:?}");
        // A folder others may write (planted) is no trace.
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        assert_eq!(traces_on_disk(&p, Some(&out)).len(), 1);
    }
}
