//! The file-system edge of readiness: lists the root's direct subdirectories and looks at their ready-files,
//! all through the root's descriptor ([`fsx::Root`]), never by path.
//!
//! Owns: which entries of the root are candidates, what a ready-file's identity is, the lock probe's
//! meaning. Must never: follow a symlink, descend below the root's direct children, create, modify or
//! delete anything, or sleep.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::MetadataExt;

use rustix::fs::FileType;

use crate::engine::{LockProbe, ReadyIdentity};
use crate::fsx::{FileStat, Root, SubDir};

/// Lists the names of the root's direct subdirectories, skipping hidden names (`.*`) and symlinks (a symlink
/// may point anywhere, including outside the root). Sorted, so processing order is stable.
pub fn list_subdirs(root: &Root) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for (name, kind) in root.entries()? {
        if name.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        let is_dir = match kind {
            FileType::Directory => true,
            // The file system did not say in `readdir`: look (without following a link).
            FileType::Unknown => {
                matches!(root.stat(&name), Ok(Some(s)) if s.kind == FileType::Directory)
            }
            _ => false,
        };
        if is_dir {
            out.push(name);
        }
    }
    out.sort_unstable();
    Ok(out)
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

/// Non-blocking *shared* `flock` probe of the ready-file (see [`SubDir::lock_is_free`]).
pub fn probe_lock(dir: &SubDir, signal: &OsStr) -> io::Result<LockProbe> {
    Ok(if dir.lock_is_free(signal)? {
        LockProbe::Free
    } else {
        LockProbe::Held
    })
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
