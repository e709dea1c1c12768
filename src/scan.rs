//! The file-system edge of readiness: lists the root's direct subdirectories and looks at their ready-files.
//!
//! Owns: `readdir` of the root, `lstat` of ready-files and the non-blocking shared `flock` probe. Must never:
//! follow a symlink, descend below the root's direct children, create, modify or delete anything, or sleep.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::engine::{LockProbe, ReadyIdentity};

/// Lists the names of the root's direct subdirectories, skipping hidden names (`.*`) and symlinks (a symlink
/// may point anywhere, including outside the root). Sorted, so processing order is stable.
pub fn list_subdirs(root: &Path) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = match entry {
            Ok(e) => e,
            // An entry that vanished between readdir and its stat is not an error of the scan.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let name = entry.file_name();
        if name.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        // `file_type` does not follow symlinks.
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.push(name),
            _ => {}
        }
    }
    out.sort();
    Ok(out)
}

/// `lstat` of the ready-file: its identity when it is a regular file; `None` when it is absent or not a
/// regular file (a symlink or a directory with that name is ignored).
pub fn stat_ready_file(
    root: &Path,
    dir: &OsStr,
    signal: &OsStr,
) -> io::Result<Option<ReadyIdentity>> {
    match std::fs::symlink_metadata(root.join(dir).join(signal)) {
        Ok(m) if m.file_type().is_file() => Ok(Some(identity_of(&m))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The identity fields of a ready-file's metadata.
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

/// Non-blocking *shared* `flock` probe. A shared lock conflicts only with a writer's exclusive lock, and it
/// can be taken on a read-only descriptor, which also works over NFS (where `flock` maps to POSIX locks and
/// an exclusive lock needs write access).
pub fn probe_lock(path: &Path) -> io::Result<LockProbe> {
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(LockProbe::Free), // released when `file` is dropped
        Err(TryLockError::WouldBlock) => Ok(LockProbe::Held),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// `(st_dev, st_ino)` of `<root>/<dir>` without following a symlink; `None` if it is gone or not a directory.
pub fn dir_identity(root: &Path, dir: &OsStr) -> Option<(u64, u64)> {
    let m = std::fs::symlink_metadata(root.join(dir)).ok()?;
    m.file_type().is_dir().then(|| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_real_visible_subdirectories() {
        let t = tempfile::tempdir().unwrap();
        for d in ["b", "a", ".hidden"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
        }
        std::fs::write(t.path().join("file"), "x").unwrap();
        std::os::unix::fs::symlink("/", t.path().join("link")).unwrap();
        let names = list_subdirs(t.path()).unwrap();
        assert_eq!(names, vec![OsString::from("a"), OsString::from("b")]);
    }

    #[test]
    fn ready_file_symlink_is_not_a_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("a/_READY")).unwrap();
        std::fs::create_dir(t.path().join("c")).unwrap();
        std::fs::write(t.path().join("c/_READY"), "x").unwrap();
        let stat = |d: &str| stat_ready_file(t.path(), d.as_ref(), "_READY".as_ref()).unwrap();
        assert_eq!(stat("a"), None, "a symlinked ready-file is ignored");
        assert_eq!(stat("b"), None, "no directory, no ready-file");
        assert_eq!(stat("c").map(|i| i.size), Some(1));
    }

    #[test]
    fn exclusive_lock_of_a_writer_is_seen() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("_READY");
        std::fs::write(&p, "").unwrap();
        assert_eq!(probe_lock(&p).unwrap(), LockProbe::Free);
        let writer = OpenOptions::new().write(true).open(&p).unwrap();
        writer.lock().unwrap();
        assert_eq!(probe_lock(&p).unwrap(), LockProbe::Held);
        writer.unlock().unwrap();
        assert_eq!(probe_lock(&p).unwrap(), LockProbe::Free);
    }
}
