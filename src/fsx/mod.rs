//! The file-system edge: how dirwatcher reaches and changes files, in one place. Below the watched root
//! everything is reached relative to a descriptor ([`Root`], opened once and re-checked before each use):
//! the listing, a subdirectory's ready-file and lock probe ([`SubDir`]), and the safe delete
//! ([`Root::open_for_removal`], [`Doomed::remove`], or in slices between which the caller does other work:
//! [`Doomed::start`], [`Removal::step`]; never through a link, never into another mount, depth bounded by
//! neither the stack nor the open-file limit). Outside the root: the atomic replace that the local
//! executor's job files, the metrics textfile and the installer use.
//!
//! Built on `rustix` (already in the build through `tempfile`): safe wrappers over `openat`, `statx` (with
//! `STATX_MNT_ID` and `STATX_ATTR_MOUNT_ROOT`, which tell a bind mount of the same file system apart, where
//! `st_dev` cannot), `unlinkat` and `getdents`, without hand-written `unsafe`.
//!
//! Must never: resolve a path string below the root, follow a link it was not asked to, let a reader see
//! half a file, or decide anything (callers choose names, bytes and modes).

mod remove;
mod root;

pub use remove::{Doomed, Progress, Removal, RemoveError};
pub use root::{
    DirStamp, FileStat, Ident, PACKED_DIR, PACKED_UNKNOWN, Reader, Root, RootLinks, RootProblem,
    SubDir,
};

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use atomic_write_file::OpenOptions;
use atomic_write_file::unix::OpenOptionsExt;

/// Replaces `path` with `bytes`, with exactly the permission bits `mode` (the umask does not apply), so
/// that a reader sees the old file or the new one, never half of one.
///
/// The bytes go to a hidden temporary sibling (`.<name>.<random>`, which a textfile collector reading
/// `*.prom` ignores), are synced, and the sibling is renamed over `path`; on any error the temporary file
/// is removed and `path` is untouched. The new file belongs to this process's user and group: nothing of
/// an old file's mode or owner is kept. The directory must exist. A symlink at `path` is replaced, not
/// followed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_parts(path, &[bytes], mode)
}

/// [`write_atomic`] of the concatenation of `parts`, written one after the other (a large part is not
/// copied to join them).
pub fn write_atomic_parts(path: &Path, parts: &[&[u8]], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .preserve_mode(false)
        .preserve_owner(false)
        .open(path)?;
    for part in parts {
        file.write_all(part)?;
    }
    // Set on the temporary file, before the rename: the file never shows up with another mode.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.commit()
}

/// Returns the heap's free pages to the system (glibc keeps those below the top of the heap otherwise:
/// a daemon that held 100,000 intents for a minute would keep their pages for good). A pass over the
/// allocator's free lists: for once a minute, not for every cycle.
pub fn give_back_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The id of the group `name`, looked up through NSS; `None` when there is no such group (or the name
/// holds a NUL).
pub fn group_id(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: a zeroed `group` is a valid out-parameter; every pointer is valid for the call and the
    // buffer outlives the one field read.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_new_file_gets_the_bytes_and_exactly_the_mode_whatever_the_umask() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("metrics.prom");
        // 0o666 is what a umask (022 or 027) would cut down: the mode must be set, not requested.
        write_atomic(&p, b"up 1\n", 0o666).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"up 1\n");
        assert_eq!(mode_of(&p), 0o666);
        assert_eq!(
            names_in(t.path()),
            ["metrics.prom"],
            "no temporary file left"
        );
    }

    #[test]
    fn an_existing_file_is_replaced_whole_and_takes_the_new_mode() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("status.json");
        std::fs::write(&p, b"a much longer old content that must not leave a tail").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let old_inode = std::fs::metadata(&p).unwrap().ino();

        write_atomic(&p, b"new", 0o755).unwrap();

        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(mode_of(&p), 0o755);
        // A rename, not a rewrite in place: a reader holding the old file keeps reading the old bytes.
        assert_ne!(std::fs::metadata(&p).unwrap().ino(), old_inode);
        assert_eq!(
            names_in(t.path()),
            ["status.json"],
            "no temporary file left"
        );
    }

    #[test]
    fn a_missing_directory_is_an_error_and_creates_nothing() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("no-such-dir").join("pid");
        let e = write_atomic(&p, b"1 2\n", 0o644).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(names_in(t.path()).is_empty());
    }
}
