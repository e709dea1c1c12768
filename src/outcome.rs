//! The effects of a finished job on the file system: the failure-log line and the deletion of a directory
//! after success.
//!
//! Owns: the failure-log format (one JSON object per line) and every safety check before a deletion and
//! before each of its slices. Must never: delete anything but a real directory that is a direct child of
//! the root, follow a symlink, or delete a directory whose ready-file was replaced since its job was
//! submitted (that is new data).

use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::{Component, Path};

use rustix::fs::FileType;

use crate::engine::Generation;
use crate::engine::ReadyIdentity;
use crate::fsx::{Progress, Removal, RemoveError, Root};
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

/// Mode of a new failure log: the service's group may read it, no one else.
pub const FAILURE_LOG_MODE: u32 = 0o640;

/// Appends one record as one line: a single `write` of the whole line on an `O_APPEND` descriptor (so a
/// reader such as `tail -f` never sees half a record), then `fdatasync`. A write that fails or is short
/// (disk full) and a failed sync are rolled back — the file is truncated to its length before — and the
/// error returned, so the caller's retry appends the whole line exactly once. A half line that a crash
/// left at the end (no final newline) is cut off before appending: this file has one writer, the daemon.
/// A new log gets [`FAILURE_LOG_MODE`] exactly, whatever the umask.
pub fn append_failure(log: &Path, rec: &FailureRecord) -> io::Result<()> {
    let mut line = serde_json::to_vec(rec).map_err(io::Error::other)?;
    line.push(b'\n');
    let f = open_log(log)?;
    let before = drop_partial_tail(&f)?;
    let written = (&f).write(&line);
    let res = match written {
        Ok(n) if n == line.len() => f.sync_data(),
        Ok(n) => Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("only {n} of {} bytes written (disk full?)", line.len()),
        )),
        Err(e) => Err(e),
    };
    if let Err(e) = res {
        // Leave the file as it was; if even that fails, the next append cuts the half line off.
        let _ = f.set_len(before);
        return Err(e);
    }
    Ok(())
}

fn open_log(log: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(parent) = log.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(parent)?;
    }
    let mut o = std::fs::OpenOptions::new();
    // Read too: the tail is checked for a half line before appending.
    o.read(true).append(true).mode(FAILURE_LOG_MODE);
    match o.clone().create_new(true).open(log) {
        Ok(f) => {
            f.set_permissions(std::fs::Permissions::from_mode(FAILURE_LOG_MODE))?;
            Ok(f)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => o.open(log),
        Err(e) => Err(e),
    }
}

/// Cuts a last line without its newline off the log; returns the length after.
fn drop_partial_tail(f: &std::fs::File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = f.metadata()?.len();
    let mut last = [0u8; 1];
    if len == 0 || (f.read_at(&mut last, len - 1)? == 1 && last[0] == b'\n') {
        return Ok(len);
    }
    // Look back in chunks for the last newline (records are short; the search is bounded by the file).
    let mut end = len;
    let mut buf = vec![0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            let keep = start + i as u64 + 1;
            f.set_len(keep)?;
            return Ok(keep);
        }
        end = start;
    }
    f.set_len(0)?;
    Ok(0)
}

/// Why a directory was not deleted (or not wholly).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeepReason {
    /// The name is not a single plain path component (never happens for names read from the root).
    #[error("`{0}` is not a plain directory name")]
    NotAChild(String),
    /// The root cannot be trusted right now (unmounted, replaced): nothing is decided, the deletion waits.
    #[error("the root cannot be used now ({0}); the deletion waits until it is back")]
    RootUnavailable(String),
    /// It is gone already (someone else removed or renamed it).
    #[error("it no longer exists (removed, or renamed outside the root)")]
    Gone,
    /// The same directory is now in the root under another name.
    #[error("it was renamed to `{0}` while its job ran; kept under its new name")]
    Renamed(String),
    /// It is a symlink or not a directory.
    #[error("it is not a real directory (symlink or file)")]
    NotADirectory,
    /// It is a mount point: another file system, a bind mount or an automount.
    #[error("it is a mount point (another file system or a bind mount); nothing of it was deleted")]
    MountPoint,
    /// A different directory now has that name.
    #[error("it was replaced by another directory since the job was submitted")]
    Replaced,
    /// A new ready-file appeared: new data arrived while the job ran.
    #[error("its ready-file changed since the job was submitted (new data?)")]
    NewReadyFile,
    /// Parts were left (mount points inside, entries that could not be removed); the rest is deleted.
    #[error("partly deleted: {0}")]
    Left(String),
    /// The deletion itself failed.
    #[error("deleting failed: {0}")]
    Io(String),
}

impl KeepReason {
    /// Whether the decision stands (the deletion is recorded as not done), rather than waiting for the
    /// root to come back.
    pub fn is_final(&self) -> bool {
        !matches!(self, KeepReason::RootUnavailable(_))
    }
}

/// Deletes `<root>/<dir>` after a COMPLETED job, if and only if it is still the same real directory, a
/// direct child of the root on the root's own mount, with the same ready-file (or none, if the job removed
/// it). Everything is reached through the root's descriptor ([`fsx::Root`]): the checks are made on the
/// opened directory, so a directory swapped in by name after the check is never what is deleted, and the
/// walk never follows a link or enters a mount point.
pub fn delete_dir(
    root: &Root,
    dir: &OsStr,
    expect_dir: Option<(u64, u64)>,
    ready: ReadyIdentity,
    signal: &OsStr,
) -> Result<(), KeepReason> {
    let mut removal = start_delete(root, dir, expect_dir, ready, signal)?;
    while delete_slice(root, &mut removal, expect_dir, ready, signal, usize::MAX)? == Progress::More
    {
    }
    Ok(())
}

/// The checks of [`delete_dir`], then the deletion as a walk to carry out in slices ([`delete_slice`]):
/// a tree of a million entries or levels never holds the loop (nor a SIGTERM) for long.
pub fn start_delete(
    root: &Root,
    dir: &OsStr,
    expect_dir: Option<(u64, u64)>,
    ready: ReadyIdentity,
    signal: &OsStr,
) -> Result<Removal, KeepReason> {
    let mut comps = Path::new(dir).components();
    match (comps.next(), comps.next()) {
        (Some(Component::Normal(_)), None) => {}
        _ => return Err(KeepReason::NotAChild(dir.to_string_lossy().into_owned())),
    }
    // The path must still name the directory held: an unmounted root would show "nothing there".
    root.check()
        .map_err(|p| KeepReason::RootUnavailable(p.to_string()))?;
    let doomed = match root.open_for_removal(dir) {
        Ok(d) => d,
        Err(RemoveError::Gone) => return Err(gone(root, dir, expect_dir)),
        Err(e) => return Err(keep(e)),
    };
    if let Some(expect) = expect_dir
        && doomed.ident().dev_ino() != expect
    {
        return Err(KeepReason::Replaced);
    }
    match doomed.stat(signal) {
        Ok(Some(now))
            if now.kind != FileType::RegularFile || scan::ready_identity(&now) != ready =>
        {
            return Err(KeepReason::NewReadyFile);
        }
        Ok(_) => {}
        Err(e) => return Err(KeepReason::Io(e.to_string())),
    }
    doomed.start().map_err(keep)
}

/// One slice of a deletion [`start_delete`] began: the checks again first — the root is still the one
/// held, its name still refers to the directory, no new ready-file came — since the loop ran between two
/// slices; then at most `budget` entries of the walk.
pub fn delete_slice(
    root: &Root,
    removal: &mut Removal,
    expect_dir: Option<(u64, u64)>,
    ready: ReadyIdentity,
    signal: &OsStr,
    budget: usize,
) -> Result<Progress, KeepReason> {
    root.check()
        .map_err(|p| KeepReason::RootUnavailable(p.to_string()))?;
    let dir = removal.name();
    let sub = match root.subdir(dir) {
        Ok(Some(sub)) => sub,
        Ok(None) => return Err(gone(root, dir, expect_dir)),
        Err(e) => return Err(KeepReason::Io(e.to_string())),
    };
    if sub.ident().dev_ino() != removal.ident().dev_ino() {
        return Err(match expect_dir.map(|id| root.find_dir(id)) {
            Some(Ok(Some(new))) if new != dir => {
                KeepReason::Renamed(new.to_string_lossy().into_owned())
            }
            _ => KeepReason::Replaced,
        });
    }
    match sub.stat(signal) {
        // The walk may have removed it already: its absence is no news.
        Ok(Some(now))
            if now.kind != FileType::RegularFile || scan::ready_identity(&now) != ready =>
        {
            return Err(KeepReason::NewReadyFile);
        }
        Ok(_) => {}
        Err(e) => return Err(KeepReason::Io(e.to_string())),
    }
    removal.step(root, budget).map_err(keep)
}

/// The name is gone: renamed within the root (found by its device and inode), or gone for good.
fn gone(root: &Root, dir: &OsStr, expect_dir: Option<(u64, u64)>) -> KeepReason {
    match expect_dir.map(|id| root.find_dir(id)) {
        Some(Ok(Some(new))) if new != dir => {
            KeepReason::Renamed(new.to_string_lossy().into_owned())
        }
        _ => KeepReason::Gone,
    }
}

fn keep(e: RemoveError) -> KeepReason {
    match e {
        RemoveError::Gone => KeepReason::Gone,
        RemoveError::NotADirectory => KeepReason::NotADirectory,
        RemoveError::MountPoint => KeepReason::MountPoint,
        RemoveError::Replaced => KeepReason::Replaced,
        e @ (RemoveError::Left { .. } | RemoveError::Moved(_)) => KeepReason::Left(e.to_string()),
        RemoveError::Io(e) => KeepReason::Io(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsx::RootLinks;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn open(p: &Path) -> Root {
        Root::open(p, RootLinks::Refuse).unwrap()
    }

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
        delete_dir(&open(&root), "case1".as_ref(), di, ready, "_READY".as_ref()).unwrap();
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
            delete_dir(&open(&root), "evil".as_ref(), None, r, "_READY".as_ref()),
            Err(KeepReason::NotADirectory)
        );
        assert!(matches!(
            delete_dir(
                &open(&root),
                "../outside".as_ref(),
                None,
                r,
                "_READY".as_ref()
            ),
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
            delete_dir(
                &open(t.path()),
                "case1".as_ref(),
                di,
                ready,
                "_READY".as_ref()
            ),
            Err(KeepReason::NewReadyFile)
        );
        assert!(d.exists());
    }

    /// One run of the swap race: 20 directories being deleted while another thread keeps exchanging each
    /// with a hidden victim directory beside it (`renameat2(RENAME_EXCHANGE)`). Returns (deleted, kept).
    fn swap_race_run() -> (usize, usize) {
        use std::collections::HashSet;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        const PAIRS: usize = 20;
        let t = tempfile::tempdir().unwrap();
        let root_path = t.path().join("root");
        std::fs::create_dir(&root_path).unwrap();
        let mut expect = Vec::new();
        let mut victims = HashSet::new();
        for i in 0..PAIRS {
            let d = root_path.join(format!("t{i}"));
            std::fs::create_dir(&d).unwrap();
            for k in 0..40 {
                std::fs::write(d.join(format!("data{k}")), b"job output").unwrap();
            }
            std::fs::write(d.join("_READY"), b"").unwrap();
            expect.push((dev_ino(&d), ready_of(&d.join("_READY"))));
            let v = root_path.join(format!(".v{i}"));
            std::fs::create_dir(&v).unwrap();
            for k in 0..5 {
                std::fs::write(v.join(format!("keep{k}")), format!("victim {i}")).unwrap();
            }
            victims.insert(dev_ino(&v).unwrap());
        }
        let root = open(&root_path);
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicUsize::new(0));
        // The attacker watches which directory is being deleted and keeps swapping that pair: the
        // strongest form of the race (any moment of the delete may find the other directory by name).
        let current = Arc::new(AtomicUsize::new(0));
        let swapper = {
            let (stop, swaps, current) =
                (Arc::clone(&stop), Arc::clone(&swaps), Arc::clone(&current));
            let dir = std::fs::File::open(&root_path).unwrap();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = current.load(Ordering::Relaxed);
                    let flags = rustix::fs::RenameFlags::EXCHANGE;
                    let (a, b) = (format!("t{i}"), format!(".v{i}"));
                    if rustix::fs::renameat_with(&dir, &a, &dir, &b, flags).is_ok() {
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        while swaps.load(Ordering::Relaxed) < PAIRS {
            std::thread::yield_now();
        }
        let before = swaps.load(Ordering::Relaxed);
        let mut deleted = 0;
        for (i, (dir, ready)) in expect.iter().enumerate() {
            current.store(i, Ordering::Relaxed);
            // Wait until the attacker is swapping this very pair (a busy machine may not have scheduled
            // it yet); it goes on swapping while the delete runs.
            let seen = swaps.load(Ordering::Relaxed);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while swaps.load(Ordering::Relaxed) < seen + 2 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the attacker stopped swapping"
                );
                std::thread::yield_now();
            }
            let name = format!("t{i}");
            if delete_dir(&root, name.as_ref(), *dir, *ready, "_READY".as_ref()).is_ok() {
                deleted += 1;
            }
        }
        let during = swaps.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        assert!(
            during > 0,
            "no swap happened while the deletes ran: the race was not run"
        );
        // Every victim, wherever the swaps left it, still holds exactly what it held.
        let mut found = 0;
        for e in std::fs::read_dir(&root_path).unwrap() {
            let p = e.unwrap().path();
            if !victims.contains(&dev_ino(&p).unwrap()) {
                continue;
            }
            found += 1;
            let mut names: Vec<String> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(
                names,
                ["keep0", "keep1", "keep2", "keep3", "keep4"],
                "victim {p:?} touched"
            );
        }
        assert_eq!(found, PAIRS, "a victim directory was removed");
        (deleted, PAIRS - deleted)
    }

    #[test]
    fn swapping_directories_during_deletes_never_touches_a_victim() {
        for run in 0..3 {
            let (deleted, kept) = swap_race_run();
            eprintln!("swap race run {run}: {deleted} deleted, {kept} kept (swapped away)");
        }
    }

    #[test]
    fn a_half_line_left_at_the_end_is_cut_off_before_the_next_record() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("failed.log");
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
            nodes: Some("vm".into()),
            elapsed_sec: Some(3),
            output: None,
        };
        append_failure(&log, &rec).unwrap();
        let whole = std::fs::read(&log).unwrap();
        // What a write cut short by a full disk (and a failed rollback, or a crash) leaves behind.
        let mut torn = whole.clone();
        torn.extend_from_slice(&whole[..whole.len() / 2]);
        std::fs::write(&log, &torn).unwrap();
        append_failure(&log, &rec).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        for l in text.lines() {
            assert_eq!(serde_json::from_str::<FailureRecord>(l).unwrap(), rec);
        }
    }

    #[test]
    fn a_new_failure_log_gets_its_mode_exactly() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("logs/failed.log");
        let rec = FailureRecord {
            time: String::new(),
            dir: String::new(),
            dir_bytes: None,
            job_id: String::new(),
            job_name: String::new(),
            state: String::new(),
            exit_code: String::new(),
            attempt: 1,
            reason: None,
            nodes: None,
            elapsed_sec: None,
            output: None,
        };
        append_failure(&log, &rec).unwrap();
        let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, FAILURE_LOG_MODE);
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
