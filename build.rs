//! Build script: the commit and the build date that `dirwatcher --version` prints (`DIRWATCHER_COMMIT`,
//! `DIRWATCHER_BUILD_DATE`).
//!
//! The commit comes from `DIRWATCHER_BUILD_COMMIT` when a packager sets it, else from git when the source
//! is a git checkout of its own (not a tarball unpacked inside some other repository), else it is
//! `unknown`: a build from a release tarball without git must still work. The date is UTC, from
//! `SOURCE_DATE_EPOCH` when set (reproducible builds), else today's.
//!
//! Must never: fail the build for want of git, or make cargo run it again on every source change.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DIRWATCHER_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = match std::env::var("DIRWATCHER_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => git_commit(&manifest_dir).unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=DIRWATCHER_COMMIT={commit}");
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    let (y, m, d) = civil_from_days(epoch.div_euclid(86_400));
    println!("cargo:rustc-env=DIRWATCHER_BUILD_DATE={y:04}-{m:02}-{d:02}");
}

/// The short commit of the checkout at `dir`, and the files whose change means a new commit (so that
/// cargo runs this script again then, and only then). `None` without git or outside a checkout of `dir`.
pub(crate) fn git_commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None;
    }
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    let mut watched = vec![git(dir, &["rev-parse", "--git-path", "HEAD"])?];
    if let Some(head_ref) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(dir, &["rev-parse", "--git-path", &head_ref]));
    }
    watched.extend(git(dir, &["rev-parse", "--git-path", "packed-refs"]));
    for p in watched {
        let p = dir.join(p);
        // A path that does not exist would make cargo run the script before every build.
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
    Some(commit)
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// Days since 1970-01-01 → (year, month, day) of the proleptic Gregorian calendar (H. Hinnant's
/// `civil_from_days`), so the script needs no crate.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
