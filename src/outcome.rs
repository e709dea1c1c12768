//! The effects of a finished job on the file system: the failure-log line and the deletion of a directory
//! after success.
//!
//! Owns: the failure-log format (one JSON object per line) and every safety check before a deletion. Must
//! never: delete anything but a real directory that is a direct child of the root, follow a symlink, or
//! delete a directory whose ready-file was replaced since its job was submitted (that is new data).

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path};

use crate::engine::Generation;
use crate::engine::ReadyIdentity;
use crate::scan;

/// One failure-log record.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct FailureRecord {
    /// When the failure was recorded (RFC 3339, UTC).
    pub time: String,
    /// Full path of the directory (lossy UTF-8 for display; see `dir_bytes` for exact bytes when not UTF-8).
    pub dir: String,
    /// Exact bytes of the path when it is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dir_bytes: Option<Vec<u8>>,
    /// Scheduler job id.
    pub job_id: String,
    /// Job name.
    pub job_name: String,
    /// Final state (`FAILED`, `TIMEOUT`, `CANCELLED by 0`, …).
    pub state: String,
    /// Exit code `code:signal`.
    pub exit_code: String,
    /// Attempt number of the generation (1 = first job).
    pub attempt: u32,
    /// Slurm's reason for the end (sacct `Reason`: `NonZeroExitCode`, `TimeLimit`, …).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// The nodes the job ran on (sacct `NodeList`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nodes: Option<String>,
    /// The job's run time in seconds (sacct `ElapsedRaw`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub elapsed_sec: Option<u64>,
    /// The job's output file (stdout and stderr).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output: Option<String>,
}

impl FailureRecord {
    /// The record for a failed generation.
    pub fn new(root: &Path, g: &Generation, now: std::time::SystemTime) -> Self {
        let path = root.join(&g.dir);
        let bytes = path.as_os_str().as_encoded_bytes();
        FailureRecord {
            time: humantime::format_rfc3339_seconds(now).to_string(),
            dir: path.to_string_lossy().into_owned(),
            dir_bytes: std::str::from_utf8(bytes).is_err().then(|| bytes.to_vec()),
            job_id: g.job_id.clone().unwrap_or_default(),
            job_name: g.job_name.clone(),
            state: g.final_state.clone().unwrap_or_default(),
            exit_code: g.exit_code.clone().unwrap_or_default(),
            attempt: g.attempt,
            reason: Some(g.detail.reason.clone()).filter(|s| !s.is_empty()),
            nodes: Some(g.detail.nodes.clone()).filter(|s| !s.is_empty()),
            elapsed_sec: g.detail.elapsed_sec,
            output: None,
        }
    }
}

/// Appends one record as one line (a single `write` of the whole line, so concurrent readers such as
/// `tail -f` never see half a record), then fsyncs.
pub fn append_failure(log: &Path, rec: &FailureRecord) -> io::Result<()> {
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut line = serde_json::to_vec(rec).map_err(io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    f.write_all(&line)?;
    f.sync_data()
}

/// Why a directory was not deleted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeepReason {
    /// The name is not a single plain path component (never happens for names read from the root).
    #[error("`{0}` is not a plain directory name")]
    NotAChild(String),
    /// It is gone already (someone else removed it).
    #[error("it no longer exists")]
    Gone,
    /// It is a symlink or not a directory.
    #[error("it is not a real directory (symlink or file)")]
    NotADirectory,
    /// A different directory now has that name.
    #[error("it was replaced by another directory since the job was submitted")]
    Replaced,
    /// A new ready-file appeared: new data arrived while the job ran.
    #[error("its ready-file changed since the job was submitted (new data?)")]
    NewReadyFile,
    /// The deletion itself failed.
    #[error("deleting failed: {0}")]
    Io(String),
}

/// Deletes `<root>/<dir>` after a COMPLETED job, if and only if it is still the same real directory, a
/// direct child of the root, with the same ready-file (or none, if the job removed it).
pub fn delete_dir(
    root: &Path,
    dir: &OsStr,
    expect_dir: Option<(u64, u64)>,
    ready: ReadyIdentity,
    signal: &OsStr,
) -> Result<(), KeepReason> {
    let mut comps = Path::new(dir).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(_)), None) => {}
        _ => return Err(KeepReason::NotAChild(dir.to_string_lossy().into_owned())),
    }
    let path = root.join(dir);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(KeepReason::Gone),
        Err(e) => return Err(KeepReason::Io(e.to_string())),
    };
    if !meta.file_type().is_dir() {
        return Err(KeepReason::NotADirectory);
    }
    if let Some(expect) = expect_dir
        && (meta.dev(), meta.ino()) != expect
    {
        return Err(KeepReason::Replaced);
    }
    match std::fs::symlink_metadata(path.join(signal)) {
        Ok(m) if scan::identity_of(&m) != ready => return Err(KeepReason::NewReadyFile),
        _ => {}
    }
    // std's remove_dir_all never follows symlinks inside the tree (it removes the links themselves).
    std::fs::remove_dir_all(&path).map_err(|e| KeepReason::Io(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn ready_of(p: &Path) -> ReadyIdentity {
        scan::identity_of(&std::fs::symlink_metadata(p).unwrap())
    }
    fn dev_ino(p: &Path) -> Option<(u64, u64)> {
        let m = std::fs::symlink_metadata(p).unwrap();
        Some((m.dev(), m.ino()))
    }

    #[test]
    fn deletes_the_directory_but_not_what_its_symlinks_point_to() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), "x").unwrap();
        let root = t.path().join("root");
        let d = root.join("case1");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("_READY"), "").unwrap();
        symlink(&outside, d.join("link")).unwrap();
        let (ready, di) = (ready_of(&d.join("_READY")), dev_ino(&d));
        delete_dir(&root, "case1".as_ref(), di, ready, "_READY".as_ref()).unwrap();
        assert!(!d.exists());
        assert!(outside.join("precious").exists());
    }

    #[test]
    fn refuses_symlinked_directory_and_non_children() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        symlink(&outside, root.join("evil")).unwrap();
        let r = ReadyIdentity {
            dev: 0,
            ino: 0,
            size: 0,
            mtime_ns: 0,
        };
        assert_eq!(
            delete_dir(&root, "evil".as_ref(), None, r, "_READY".as_ref()),
            Err(KeepReason::NotADirectory)
        );
        assert!(matches!(
            delete_dir(&root, "../outside".as_ref(), None, r, "_READY".as_ref()),
            Err(KeepReason::NotAChild(_))
        ));
        assert!(outside.exists());
    }

    #[test]
    fn keeps_a_directory_that_received_a_new_ready_file() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("case1");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("_READY"), "").unwrap();
        let (ready, di) = (ready_of(&d.join("_READY")), dev_ino(&d));
        std::fs::remove_file(d.join("_READY")).unwrap();
        std::fs::write(d.join("_READY"), "new run").unwrap();
        assert_eq!(
            delete_dir(t.path(), "case1".as_ref(), di, ready, "_READY".as_ref()),
            Err(KeepReason::NewReadyFile)
        );
        assert!(d.exists());
    }

    #[test]
    fn failure_lines_are_json() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("logs/failed.log");
        let rec = FailureRecord {
            time: "2026-01-01T00:00:00Z".into(),
            dir: "/r/a".into(),
            dir_bytes: None,
            job_id: "5".into(),
            job_name: "dw-a".into(),
            state: "FAILED".into(),
            exit_code: "3:0".into(),
            attempt: 1,
            reason: Some("NonZeroExitCode".into()),
            nodes: Some("node1".into()),
            elapsed_sec: Some(3),
            output: Some("/r/a/slurm-5.out".into()),
        };
        append_failure(&log, &rec).unwrap();
        append_failure(&log, &rec).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<FailureRecord> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, vec![rec.clone(), rec]);
    }
}
