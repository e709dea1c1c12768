//! The root handle: the watched directory opened once, and everything below it reached relative to that
//! descriptor — the listing, a subdirectory, its ready-file and the lock probe, and the streamed readers of
//! a bounded walk through a subdirectory's tree ([`Reader`]).
//!
//! Owns: opening the root without following a symlink, re-checking on every use that the path still names
//! the directory that is held (an unmounted, remounted-elsewhere or replaced root reads as a problem, never
//! as an empty directory), and the identity (device, inode, mount) of what it opens. Must never: resolve a
//! path string below the root, follow a symlink below it, or trigger an automount while looking.

use std::ffi::{OsStr, OsString};
use std::fs::{File, TryLockError};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Statx, StatxAttributes, StatxFlags,
};

/// Who a file is: device and inode (as `st_dev`/`st_ino`), and the mount it belongs to when the kernel
/// says (`STATX_MNT_ID`, Linux 5.8). Two bind mounts of one file system share a device: only the mount id
/// tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ident {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// The mount id, `None` on kernels that do not report it.
    pub mnt_id: Option<u64>,
}

impl Ident {
    /// `(st_dev, st_ino)`, as the ledger stores a directory's identity.
    pub fn dev_ino(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Whether `other` is on another mount than `self` (another device, or another mount of the same
    /// device such as a bind mount).
    pub fn other_mount(&self, other: &Ident) -> bool {
        self.dev != other.dev || matches!((self.mnt_id, other.mnt_id), (Some(a), Some(b)) if a != b)
    }
}

/// What a `statx` without following links says about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Device, inode, mount.
    pub ident: Ident,
    /// Regular file, directory, symlink, …
    pub kind: FileType,
    /// Permission bits and the sticky bit (`st_mode & 0o7777`).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// The kernel says it is the root of a mount (`STATX_ATTR_MOUNT_ROOT`) or an automount trigger.
    pub mount_root: bool,
}

const WANT: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::INO)
    .union(StatxFlags::SIZE)
    .union(StatxFlags::MTIME)
    .union(StatxFlags::MNT_ID);

fn file_stat(st: &Statx) -> FileStat {
    let dev = rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor);
    let has_mnt = st.stx_mask & StatxFlags::MNT_ID.bits() != 0;
    let mount_attrs = StatxAttributes::MOUNT_ROOT | StatxAttributes::AUTOMOUNT;
    FileStat {
        ident: Ident {
            dev,
            ino: st.stx_ino,
            mnt_id: has_mnt.then_some(st.stx_mnt_id),
        },
        kind: FileType::from_raw_mode(st.stx_mode.into()),
        mode: u32::from(st.stx_mode) & 0o7777,
        size: st.stx_size,
        mtime_ns: st
            .stx_mtime
            .tv_sec
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(st.stx_mtime.tv_nsec)),
        mount_root: st.stx_attributes.intersects(mount_attrs),
    }
}

/// `statx` of `name` in `dir` without following a symlink and without triggering an automount; `None` if
/// it does not exist.
pub(super) fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileStat>> {
    let flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT;
    match rustix::fs::statx(dir, name, flags, WANT) {
        Ok(st) => Ok(Some(file_stat(&st))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `statx` of an open descriptor.
pub(super) fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    let st = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, WANT)?;
    Ok(file_stat(&st))
}

/// Opens the directory `name` in `dir` for reading, never through a symlink (`O_NOFOLLOW|O_DIRECTORY`:
/// a symlink or anything else but a directory fails with `ENOTDIR` or `ELOOP`).
pub(super) fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let flags =
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

/// Whether a symlink as the root itself is followed (only with `watch.allow_unsafe_root`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootLinks {
    /// A symlink as the root is refused (the default).
    Refuse,
    /// The root may be a symlink: it is followed when the root is opened and checked.
    Follow,
}

/// Why the root cannot be used right now.
#[derive(Debug, thiserror::Error)]
pub enum RootProblem {
    /// The path cannot be looked at (gone, no permission, stale file handle).
    #[error("it cannot be looked at: {0}")]
    Unreachable(#[source] io::Error),
    /// The path is now a symlink.
    #[error("it is now a symlink, which is not followed")]
    Symlink,
    /// The path is not a directory any more.
    #[error("it is not a directory any more")]
    NotADirectory,
    /// The path names another directory than the one opened at start: an unmounted file system (the
    /// mount point shows through), another one mounted over it, or a directory put in its place.
    #[error(
        "it is another directory than the one opened at start (device {was_dev}, inode {was_ino}; now \
         device {now_dev}, inode {now_ino}): unmounted, mounted over or replaced"
    )]
    Replaced {
        /// Device at start.
        was_dev: u64,
        /// Inode at start.
        was_ino: u64,
        /// Device now.
        now_dev: u64,
        /// Inode now.
        now_ino: u64,
    },
}

/// The watched root, held open.
#[derive(Debug)]
pub struct Root {
    /// The configured path: for logs, for the job, and to check that it still names `fd`.
    path: PathBuf,
    /// The directory, opened once.
    fd: OwnedFd,
    /// Its identity when it was opened.
    ident: Ident,
    /// Whether the path may be a symlink.
    links: RootLinks,
}

impl Root {
    /// Opens `path` as the root: a directory, and not a symlink unless `links` says so.
    pub fn open(path: &Path, links: RootLinks) -> io::Result<Root> {
        let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOCTTY;
        if links == RootLinks::Refuse {
            flags |= OFlags::NOFOLLOW;
        }
        let fd = rustix::fs::openat(rustix::fs::CWD, path, flags, Mode::empty())?;
        let ident = stat_fd(fd.as_fd())?.ident;
        Ok(Root {
            path: path.to_path_buf(),
            fd,
            ident,
            links,
        })
    }

    /// The configured path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's identity when it was opened.
    pub fn ident(&self) -> Ident {
        self.ident
    }

    /// The held descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Checks that the configured path still names the directory that is held: a real directory (not a
    /// symlink, unless allowed) with the same device and inode. Called before every scan and deletion, so
    /// that what is read or removed through the descriptor is what the path shows to jobs and people.
    pub fn check(&self) -> Result<(), RootProblem> {
        // No `AT_NO_AUTOMOUNT` here: an automounted root is looked at as a job would reach it (the held
        // descriptor keeps the mount busy, so it does not expire under us).
        let mut flags = AtFlags::empty();
        if self.links == RootLinks::Refuse {
            flags |= AtFlags::SYMLINK_NOFOLLOW;
        }
        let st = rustix::fs::statx(rustix::fs::CWD, &self.path, flags, WANT)
            .map_err(|e| RootProblem::Unreachable(e.into()))?;
        let now = file_stat(&st);
        match now.kind {
            FileType::Directory => {}
            FileType::Symlink => return Err(RootProblem::Symlink),
            _ => return Err(RootProblem::NotADirectory),
        }
        if now.ident.dev_ino() != self.ident.dev_ino() {
            return Err(RootProblem::Replaced {
                was_dev: self.ident.dev,
                was_ino: self.ident.ino,
                now_dev: now.ident.dev,
                now_ino: now.ident.ino,
            });
        }
        Ok(())
    }

    /// The names of every entry of the root (`.` and `..` left out) with what `readdir` says of its
    /// type (`Unknown` on file systems that do not say). Unsorted.
    pub fn entries(&self) -> io::Result<Vec<(OsString, FileType)>> {
        entries_of(&self.fd)
    }

    /// The root's entries that may be subdirectories — not hidden (`.*`), and a directory or of a type
    /// `readdir` does not say — packed into `out` in `readdir` order as `kind, name bytes, NUL` (`kind`
    /// [`PACKED_DIR`] or [`PACKED_UNKNOWN`]), read with `getdents64` into the reused `buf`: no allocation
    /// per entry, and two listings compare as bytes.
    pub fn read_candidates(&self, buf: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<()> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(self.fd(), ".", flags, Mode::empty())?;
        read_packed(&fd, buf, out)
    }

    /// [`Root::read_candidates`], unless the root's [`DirStamp`] is still `last`: then its entries are
    /// surely those of the listing that `last` was taken before, and nothing is read (`Ok(None)`). Else
    /// the stamp taken just before this listing, to be handed in next time. The stamp is asked of the file
    /// system itself (`AT_STATX_FORCE_SYNC`: an NFS client asks the server, never its attribute cache).
    pub fn read_candidates_since(
        &self,
        last: Option<DirStamp>,
        buf: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> io::Result<Option<DirStamp>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(self.fd(), ".", flags, Mode::empty())?;
        let st = rustix::fs::statx(
            &fd,
            "",
            AtFlags::EMPTY_PATH | AtFlags::STATX_FORCE_SYNC,
            STAMP,
        )?;
        let stamp = DirStamp::of(&st);
        if last == Some(stamp) {
            return Ok(None);
        }
        read_packed(&fd, buf, out)?;
        Ok(Some(stamp))
    }
}

/// What changes when a directory's entries change: a new, removed or renamed entry sets its
/// modification and change times (the change time cannot be set back by anyone), a subdirectory made or
/// removed its link count on most file systems. Equal stamps say "no entry changed" only when no change
/// can have fallen in the same tick of the file system's clock as the last one: see
/// [`DirStamp::settled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirStamp {
    dev: u64,
    ino: u64,
    nlink: u32,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

const STAMP: StatxFlags = StatxFlags::INO
    .union(StatxFlags::NLINK)
    .union(StatxFlags::SIZE)
    .union(StatxFlags::MTIME)
    .union(StatxFlags::CTIME);

impl DirStamp {
    fn of(st: &Statx) -> DirStamp {
        let ns = |t: &rustix::fs::StatxTimestamp| {
            t.tv_sec
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(t.tv_nsec))
        };
        DirStamp {
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            nlink: st.stx_nlink,
            size: st.stx_size,
            mtime_ns: ns(&st.stx_mtime),
            ctime_ns: ns(&st.stx_ctime),
        }
    }

    /// Whether the last change this stamp shows is older than `margin` at `taken_ns` (the wall clock
    /// when the stamp was taken): then any later change gets a later time, even on a file system whose
    /// clock ticks coarsely (jiffies, or whole seconds), and an equal stamp means no change. A change
    /// time in the future (a clock stepped back) is never settled.
    pub fn settled(&self, taken_ns: i64, margin_ns: i64) -> bool {
        self.mtime_ns.max(self.ctime_ns) < taken_ns.saturating_sub(margin_ns)
    }
}

/// Reads the candidates of the directory open at `fd` (see [`Root::read_candidates`]).
fn read_packed(fd: &OwnedFd, buf: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<()> {
    if buf.capacity() < LISTING_BUF {
        buf.reserve(LISTING_BUF);
    }
    out.clear();
    let mut dir = rustix::fs::RawDir::new(fd, buf.spare_capacity_mut());
    while let Some(entry) = dir.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name.first() == Some(&b'.') {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Directory => PACKED_DIR,
            FileType::Unknown => PACKED_UNKNOWN,
            _ => continue,
        };
        out.push(kind);
        out.extend_from_slice(name);
        out.push(0);
    }
    Ok(())
}

impl Root {
    /// `statx` of an entry of the root, without following a symlink; `None` if it does not exist.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        stat_at(self.fd(), name)
    }

    /// Whether `file` exists in the subdirectory `dir`, in one `openat2` that refuses any symlink on the way
    /// and any mount crossed (`RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV | RESOLVE_BENEATH`): `Some(false)` when
    /// it surely does not, `Some(true)` when something is there, `None` when this cannot tell (a symlink or
    /// a mount on the way, a kernel without `openat2`): then look the usual way. The cheap first look at a
    /// directory that is not ready.
    pub fn has_in(&self, dir: &OsStr, file: &OsStr) -> Option<bool> {
        let mut path = dir.to_os_string();
        path.push("/");
        path.push(file);
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let resolve = ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_XDEV
            | ResolveFlags::BENEATH
            | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(self.fd(), &path, flags, Mode::empty(), resolve) {
            Ok(_) => Some(true),
            Err(rustix::io::Errno::NOENT) => Some(false),
            Err(_) => None,
        }
    }

    /// Opens the subdirectory `name` for looking at what it holds (`O_PATH`: no read permission needed,
    /// no automount triggered). `None` when it is gone or is not a real directory (a symlink is never
    /// followed).
    pub fn subdir(&self, name: &OsStr) -> io::Result<Option<SubDir>> {
        subdir_at(self.fd(), name)
    }
}

/// Opens the directory `name` below `dir` (`O_PATH`, never through a symlink); `None` when it is gone or
/// is not a real directory.
fn subdir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<SubDir>> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let st = stat_fd(fd.as_fd())?;
    // `O_PATH|O_NOFOLLOW` may open a symlink itself instead of failing: check what was opened.
    if st.kind != FileType::Directory {
        return Ok(None);
    }
    Ok(Some(SubDir {
        fd,
        ident: st.ident,
    }))
}

/// A direct subdirectory of the root, held open (`O_PATH`).
#[derive(Debug)]
pub struct SubDir {
    /// The directory.
    fd: OwnedFd,
    /// Its identity.
    ident: Ident,
}

impl SubDir {
    /// Its identity.
    pub fn ident(&self) -> Ident {
        self.ident
    }

    /// `statx` of `name` inside it, without following a symlink; `None` if it does not exist.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        stat_at(self.fd.as_fd(), name)
    }

    /// Non-blocking *shared* `flock` probe of the file `name` inside it: `Ok(true)` when free. A shared
    /// lock conflicts only with a writer's exclusive lock, and it can be taken on a read-only descriptor,
    /// which also works over NFS (where `flock` maps to POSIX locks and an exclusive lock needs write
    /// access). Never follows a symlink; never blocks on a FIFO (`O_NONBLOCK`).
    pub fn lock_is_free(&self, name: &OsStr) -> io::Result<bool> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(self.fd.as_fd(), name, flags, Mode::empty())?;
        let file = File::from(fd);
        match file.try_lock_shared() {
            Ok(()) => Ok(true), // released when `file` is dropped
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// The names of its entries (`.` and `..` left out) with what `readdir` says of their type.
    /// Unsorted. Listed through a fresh read-only descriptor of the held directory, never by path.
    pub fn entries(&self) -> io::Result<Vec<(OsString, FileType)>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(self.fd.as_fd(), ".", flags, Mode::empty())?;
        entries_of(&fd)
    }

    /// The directory `name` inside it (for a bounded whole-tree look); never through a symlink.
    pub fn child(&self, name: &OsStr) -> io::Result<Option<SubDir>> {
        subdir_at(self.fd.as_fd(), name)
    }

    /// A reader of its entries, one at a time (streamed: a directory of a million files is never read
    /// whole), through a fresh read-only descriptor of the held directory, never by path.
    pub fn reader(&self) -> io::Result<Reader> {
        Ok(Reader {
            dir: Dir::new(open_dir_at(self.fd.as_fd(), OsStr::new("."))?)?,
            ident: self.ident,
        })
    }

    /// The first `limit` bytes of the regular file `name` inside it, and whether it is longer. `None`
    /// when it does not exist; an error `InvalidInput` when it is not a regular file (a symlink is never
    /// followed, a FIFO never blocks).
    pub fn read_small(&self, name: &OsStr, limit: u64) -> io::Result<Option<(Vec<u8>, bool)>> {
        use std::io::Read;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(self.fd.as_fd(), name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "it is a symlink, which is never followed",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if stat_fd(fd.as_fd())?.kind != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is not a regular file",
            ));
        }
        let mut bytes = Vec::new();
        File::from(fd).take(limit + 1).read_to_end(&mut bytes)?;
        let longer = bytes.len() as u64 > limit;
        bytes.truncate(limit as usize);
        Ok(Some((bytes, longer)))
    }
}

/// A directory below the root read one entry at a time, for a bounded look through a tree: its entries
/// are looked at and its subdirectories opened relative to its descriptor, never through a symlink and
/// never into another mount. One descriptor per reader: a walk holds one per level it is in.
#[derive(Debug)]
pub struct Reader {
    /// The open directory stream.
    dir: Dir,
    /// Its identity (a subdirectory on another mount than this is not entered).
    ident: Ident,
}

impl Reader {
    /// The next entry (`.` and `..` left out) with what `readdir` says of its type; `None` at the end.
    pub fn next_entry(&mut self) -> Option<io::Result<(OsString, FileType)>> {
        loop {
            let entry = match self.dir.read()? {
                Ok(e) => e,
                Err(e) => return Some(Err(e.into())),
            };
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                return Some(Ok((name.to_os_string(), entry.file_type())));
            }
        }
    }

    /// `statx` of `name` inside it, without following a symlink; `None` if it does not exist.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        stat_at(self.dir.fd()?, name)
    }

    /// The real directory `name` inside it, opened for reading; `None` when it is gone, is not a real
    /// directory (a symlink is never followed), or is on another mount (a mount point, a bind mount:
    /// another file system is not part of this directory's data).
    pub fn child(&self, name: &OsStr) -> io::Result<Option<Reader>> {
        // Looked at first without triggering an automount: opening one would mount it.
        let seen = match stat_at(self.dir.fd()?, name)? {
            Some(st) if st.kind == FileType::Directory => st,
            _ => return Ok(None),
        };
        if seen.mount_root || self.ident.other_mount(&seen.ident) {
            return Ok(None);
        }
        let fd = match open_dir_at(self.dir.fd()?, name) {
            Ok(fd) => fd,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let st = stat_fd(fd.as_fd())?;
        // Swapped for something else between the look and the open: not entered.
        if st.ident.dev_ino() != seen.ident.dev_ino() || self.ident.other_mount(&st.ident) {
            return Ok(None);
        }
        Ok(Some(Reader {
            dir: Dir::new(fd)?,
            ident: st.ident,
        }))
    }
}

/// Every entry of the directory open at `fd` (`.` and `..` left out), with `readdir`'s idea of its type.
/// The `getdents64` buffer of [`Root::read_candidates`]: 100,000 entries in about 100 calls.
const LISTING_BUF: usize = 256 * 1024;
/// A packed entry that `readdir` says is a directory.
pub const PACKED_DIR: u8 = b'd';
/// A packed entry whose type `readdir` does not say.
pub const PACKED_UNKNOWN: u8 = b'?';

fn entries_of(fd: &impl AsFd) -> io::Result<Vec<(OsString, FileType)>> {
    let mut dir = Dir::read_from(fd)?;
    let mut out = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        out.push((name.to_os_string(), entry.file_type()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn identity_and_times_match_what_std_reports() {
        // The ledger holds identities recorded through std: ours must be the same numbers, or every
        // finished directory would look like new data after an upgrade.
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/_READY"), b"abc").unwrap();
        let root = Root::open(t.path(), RootLinks::Refuse).unwrap();
        let sub = root.subdir("d".as_ref()).unwrap().unwrap();
        let m = std::fs::symlink_metadata(t.path().join("d")).unwrap();
        assert_eq!(sub.ident().dev_ino(), (m.dev(), m.ino()));
        let f = sub.stat("_READY".as_ref()).unwrap().unwrap();
        let m = std::fs::symlink_metadata(t.path().join("d/_READY")).unwrap();
        assert_eq!(
            (f.ident.dev, f.ident.ino, f.size, f.mtime_ns),
            (
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime() * 1_000_000_000 + m.mtime_nsec()
            )
        );
    }

    #[test]
    fn a_symlinked_root_is_refused_unless_allowed() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", t.path().join("link")).unwrap();
        let e = Root::open(&t.path().join("link"), RootLinks::Refuse).unwrap_err();
        // `O_NOFOLLOW|O_DIRECTORY` on a symlink: ENOTDIR (ELOOP without `O_DIRECTORY`).
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)),
            "{e}"
        );
        let r = Root::open(&t.path().join("link"), RootLinks::Follow).unwrap();
        r.check().unwrap();
    }

    #[test]
    fn a_root_replaced_by_a_symlink_or_another_directory_fails_the_check() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("root");
        std::fs::create_dir(&path).unwrap();
        let root = Root::open(&path, RootLinks::Refuse).unwrap();
        root.check().unwrap();
        std::fs::rename(&path, t.path().join("moved")).unwrap();
        assert!(matches!(root.check(), Err(RootProblem::Unreachable(_))));
        std::os::unix::fs::symlink("moved", &path).unwrap();
        assert!(matches!(root.check(), Err(RootProblem::Symlink)));
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(matches!(root.check(), Err(RootProblem::Replaced { .. })));
        std::fs::remove_dir(&path).unwrap();
        std::fs::rename(t.path().join("moved"), &path).unwrap();
        root.check().unwrap();
    }

    #[test]
    fn the_cheap_look_for_a_marker_never_goes_through_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("_READY"), "").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("link")).unwrap();
        std::fs::create_dir(t.path().join("empty")).unwrap();
        std::fs::create_dir(t.path().join("ready")).unwrap();
        std::fs::write(t.path().join("ready/_READY"), "").unwrap();
        let root = Root::open(t.path(), RootLinks::Refuse).unwrap();
        let has = |d: &str| root.has_in(d.as_ref(), "_READY".as_ref());
        assert_eq!(has("empty"), Some(false));
        assert_eq!(has("ready"), Some(true));
        assert_eq!(
            has("link"),
            None,
            "a symlink on the way: cannot tell, never followed"
        );
        assert_eq!(has("absent"), Some(false));
    }

    #[test]
    fn a_subdir_is_never_reached_through_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", t.path().join("link")).unwrap();
        std::fs::write(t.path().join("file"), "").unwrap();
        let root = Root::open(t.path(), RootLinks::Refuse).unwrap();
        assert!(root.subdir("link".as_ref()).unwrap().is_none());
        assert!(root.subdir("file".as_ref()).unwrap().is_none());
        assert!(root.subdir("absent".as_ref()).unwrap().is_none());
        assert!(root.subdir("real".as_ref()).unwrap().is_some());
    }
}
