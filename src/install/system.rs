//! The installer's contact with the machine: users and groups (through NSS, so LDAP users count), files
//! with modes and owners (written atomically through [`crate::fsx`]), and `useradd`/`systemctl` through
//! [`crate::process`].
//!
//! Must never: decide anything (the plan in `install/mod.rs` does), or follow a path outside what it is
//! given.

use std::ffi::{CStr, CString};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::process::{self, Invocation};

/// A resolved user: ids and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// User name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Primary group name (the gid as text when it has no name).
    pub group: String,
}

/// Looks `name` up through NSS; `None` when there is no such user.
pub fn lookup_user(name: &str) -> anyhow::Result<Option<Account>> {
    let cname = CString::new(name).context("a user name cannot contain a NUL byte")?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; the buffer outlives every read of `pwd`.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if result.is_null() {
        if rc == 0 || rc == libc::ENOENT || rc == libc::ESRCH {
            return Ok(None);
        }
        return Err(std::io::Error::from_raw_os_error(rc))
            .with_context(|| format!("cannot look up the user `{name}`"));
    }
    let (uid, gid) = (pwd.pw_uid, pwd.pw_gid);
    Ok(Some(Account {
        name: name.to_string(),
        uid,
        gid,
        group: group_name(gid).unwrap_or_else(|| gid.to_string()),
    }))
}

fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as above.
    let rc = unsafe {
        libc::getgrgid_r(
            gid,
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: gr_name points into `buf`, NUL-terminated.
    let name = unsafe { CStr::from_ptr(grp.gr_name) };
    Some(name.to_string_lossy().into_owned())
}

/// True when this process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when systemd manages this machine (the check `sd_booted()` makes).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The mode bits (permissions only) and owner of an existing path.
pub fn mode_owner(p: &Path) -> Option<(u32, u32, u32)> {
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.mode() & 0o7777, m.uid(), m.gid()))
}

/// Sets mode and (when given) owner.
pub fn set_mode_owner(p: &Path, mode: u32, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(p, Some(uid), Some(gid))
            .with_context(|| format!("cannot change the owner of `{}`", p.display()))?;
    }
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot change the mode of `{}`", p.display()))
}

/// Puts `content` at `path` with `mode` and (when given) `owner`, through [`crate::fsx::write_atomic`], so
/// a reader (or the running service, for the binary) never sees half a file. Creates the parent
/// directory (the unit's, under a destdir, may be missing).
pub fn write_file(
    path: &Path,
    content: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory `{}`", dir.display()))?;
    crate::fsx::write_atomic(path, content, mode)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    // The new file is already ours (root's, when an owner is asked for); this settles a setgid parent.
    match owner {
        Some(_) => set_mode_owner(path, mode, owner),
        None => Ok(()),
    }
}

/// Runs an administrative command (useradd, systemctl) with a bound; stdout is returned.
pub fn run_admin(argv: &[&str]) -> anyhow::Result<String> {
    let mut inv = Invocation::new(argv[0]);
    for a in &argv[1..] {
        inv = inv.arg(a);
    }
    let out = process::run(&inv, Duration::from_secs(120))
        .with_context(|| format!("`{}` failed", argv.join(" ")))?;
    Ok(out.stdout)
}
