//! Markers below the directory (`*/*/final_summary_*.txt`): a relative path of names or globs, its
//! bound, and when such a marker is satisfied — by names only.
//!
//! Owns: path-marker matching (a `*` never matches a leading `.`, as in the shell), the depth bound, and
//! the rule "found in every directory its folder part matches". Must never: look at a directory (the scan
//! walks, relative to the directory's descriptor, never through a symlink) or read the clock.

use std::ffi::OsStr;
use std::path::Path;

use super::patterns::glob_match;

/// The most path components a marker may have (`a/b/c/final_summary_*.txt` is 4): the scan's walk
/// opens one directory per level and lists each globbed one.
pub const MARKER_DEPTH_MAX: usize = 4;

/// Whether a marker names a path below the directory rather than one of its own entries.
pub fn is_nested(marker: &str) -> bool {
    marker.contains('/')
}

/// Whether the name `n` matches the component `p`: a glob as [`glob_match`], except that a name starting
/// with `.` matches only a component that starts with `.` (hidden folders such as `.Trash-1000` or
/// `.snapshot` are not run folders).
pub fn component_match(p: &str, n: &OsStr) -> bool {
    if n.as_encoded_bytes().first() == Some(&b'.') && !p.starts_with('.') {
        return false;
    }
    glob_match(p, n)
}

/// Whether `name` (`a/b/c`) matches the path marker `pattern` component by component.
pub fn path_match(pattern: &str, name: &OsStr) -> bool {
    let mut names = Path::new(name).components();
    for p in pattern.split('/') {
        match names.next() {
            Some(c) if component_match(p, c.as_os_str()) => {}
            _ => return false,
        }
    }
    names.next().is_none()
}

/// The folder part and the file part of a path marker (`*/*` and `final_summary_*.txt`).
pub fn split(marker: &str) -> (&str, &str) {
    marker.rsplit_once('/').unwrap_or(("", marker))
}

/// Which of `files` satisfy the path marker `marker`, given the `dirs` the walk went through: a file
/// must be found in *every* folder the marker's folder part matches (an experiment is ready when each of
/// its runs is, not when the first one is), and in at least one. `Err` names what is missing: the
/// marker itself when no folder matches yet, else the first folder still without one.
pub fn satisfied<'a>(
    marker: &str,
    files: impl Iterator<Item = (usize, &'a OsStr)>,
    dirs: &[std::ffi::OsString],
) -> Result<Vec<usize>, String> {
    let (folder, leaf) = split(marker);
    let hits: Vec<(usize, &OsStr)> = files.filter(|(_, n)| path_match(marker, n)).collect();
    let mut folders: Vec<&OsStr> = dirs
        .iter()
        .map(|d| d.as_os_str())
        .filter(|d| path_match(folder, d))
        .collect();
    folders.sort_unstable();
    folders.dedup();
    if folders.is_empty() || hits.is_empty() {
        return Err(marker.to_string());
    }
    for f in folders {
        let has = hits
            .iter()
            .any(|(_, h)| Path::new(h).parent().map(Path::as_os_str) == Some(f));
        if !has {
            return Err(format!("{}/{leaf}", f.to_string_lossy()));
        }
    }
    Ok(hits.into_iter().map(|(i, _)| i).collect())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn a_path_marker_matches_component_by_component_and_never_a_hidden_folder() {
        let m = |p: &str, n: &str| path_match(p, n.as_ref());
        let ont = "*/*/final_summary_*.txt";
        assert!(m(
            ont,
            "sample1/20250603_1201_3E_PAA12345_e05460c6/final_summary_PAA12345_e05460c6_1a2b3c4d.txt"
        ));
        assert!(!m(ont, "sample1/final_summary_PAA12345_e05460c6.txt"));
        assert!(!m(ont, "a/b/c/final_summary_x.txt"));
        assert!(!m(ont, ".Trash-1000/run/final_summary_x.txt"));
        assert!(m(".snap/*/x.txt", ".snap/a/x.txt"));
        assert!(m("Reports/done.txt", "Reports/done.txt"));
    }

    #[test]
    fn every_folder_the_marker_matches_needs_its_own_file() {
        let dirs: Vec<OsString> = ["s1", "s1/run_a", "s1/run_b"]
            .iter()
            .map(OsString::from)
            .collect();
        let files = ["s1/run_a/final_summary_A.txt", "s1/run_a/report.html"];
        let names = || files.iter().enumerate().map(|(i, f)| (i, OsStr::new(*f)));
        assert_eq!(
            satisfied("*/*/final_summary_*.txt", names(), &dirs),
            Err("s1/run_b/final_summary_*.txt".into()),
            "the second run is still going"
        );
        let both = [
            "s1/run_a/final_summary_A.txt",
            "s1/run_b/final_summary_B.txt",
        ];
        let names = both.iter().enumerate().map(|(i, f)| (i, OsStr::new(*f)));
        assert_eq!(
            satisfied("*/*/final_summary_*.txt", names, &dirs),
            Ok(vec![0, 1])
        );
        // No run folder yet: the marker itself is what is missing.
        assert_eq!(
            satisfied("*/*/final_summary_*.txt", std::iter::empty(), &dirs[..1]),
            Err("*/*/final_summary_*.txt".into())
        );
    }
}
