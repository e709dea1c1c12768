//! Packaging: what `dirwatcher --version` says about the build, and where its commit comes from (the
//! build script, run here on real git checkouts and on a tree without one, as a release tarball is).
//! The packages themselves are checked by `scripts/build-deb.sh --check` and `scripts/build-rpm.sh --check`.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

/// The build script itself, so its rules are tested on real directories (its `main` is not called).
#[allow(dead_code)]
#[path = "../../build.rs"]
mod build_script;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn git_present() -> bool {
    Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `dirwatcher --version` (and `-V`) names the release, the commit and the build date, as an admin
/// comparing two hosts or filing a bug reads it.
#[test]
fn version_names_release_commit_and_build_date() {
    let re = regex::Regex::new(
        r"^dirwatcher (\d+\.\d+\.\d+\S*) \(commit ([0-9a-f]{12}|unknown), built (\d{4})-(\d{2})-(\d{2})\)\n$",
    )
    .unwrap();
    for flag in ["--version", "-V"] {
        let out = Command::new(BIN).arg(flag).output().unwrap();
        assert!(out.status.success());
        let line = String::from_utf8(out.stdout).unwrap();
        let c = re
            .captures(&line)
            .unwrap_or_else(|| panic!("{flag} printed {line:?}"));
        assert_eq!(&c[1], env!("CARGO_PKG_VERSION"), "{line}");
        let (y, m, d): (u32, u32, u32) = (
            c[3].parse().unwrap(),
            c[4].parse().unwrap(),
            c[5].parse().unwrap(),
        );
        assert!(
            y >= 2025 && (1..=12).contains(&m) && (1..=31).contains(&d),
            "{line}"
        );
        // Built from this checkout (cargo test rebuilds after every commit): its HEAD, when git can say.
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        if git_present() && here.join(".git").exists() {
            let head = git(here, &["rev-parse", "--short=12", "HEAD"]);
            assert_eq!(&c[2], head, "{line}");
        }
    }
}

/// A tree without git (a release tarball) builds with `commit unknown`; so does a tarball unpacked
/// inside some other repository (that repository's commit would be a lie); a checkout gets its own.
#[test]
fn version_commit_comes_only_from_the_source_tree_own_checkout() {
    let t = tempfile::tempdir().unwrap();
    let plain = t.path().join("dirwatcher-0.1.0");
    std::fs::create_dir(&plain).unwrap();
    assert_eq!(build_script::git_commit(&plain), None, "no git at all");
    if !git_present() {
        assert!(std::env::var("CI").is_err(), "git is required in CI");
        eprintln!("SKIPPED the checkout half: git is not installed");
        return;
    }
    let repo = t.path();
    git(repo, &["init", "-q"]);
    std::fs::write(repo.join("f"), "x").unwrap();
    git(repo, &["add", "f"]);
    git(repo, &["commit", "-q", "-m", "one"]);
    let head = git(repo, &["rev-parse", "--short=12", "HEAD"]);
    assert_eq!(
        build_script::git_commit(repo),
        Some(head),
        "a checkout of its own"
    );
    assert_eq!(
        build_script::git_commit(&plain),
        None,
        "a tarball unpacked inside another repository"
    );
}

/// The build date is a calendar date in UTC, right across leap days and centuries.
#[test]
fn version_build_date_is_the_utc_calendar_date() {
    for (days, want) in [
        (0, (1970, 1, 1)),
        (11_016, (2000, 2, 29)),
        (11_017, (2000, 3, 1)),
        (20_429, (2025, 12, 7)),
        (20_794, (2026, 12, 7)),
        (-1, (1969, 12, 31)),
    ] {
        assert_eq!(build_script::civil_from_days(days), want, "day {days}");
    }
}
