//! What only the running daemon knows, published for `status` and `explain`: a small JSON file beside the
//! ledger (`<state_file>.status.json`) that the daemon rewrites atomically when it changes, and at least once
//! per poll interval (so its age tells whether the daemon is alive), with the last state Slurm showed of
//! each job in flight in a file of its own (`<state_file>.jobs.json`, rewritten atomically only when one
//! changed: 100,000 jobs in flight are 11 MB of it); and whether a daemon runs at all, from the
//! single-instance lock beside the ledger. The two files are written apart: a reader may see the job list
//! one write older or newer than the rest (each is whole).
//!
//! Owns: the snapshot's schema (versioned), writing and reading it, what the last query showed of each job
//! ([`SeenJobs`]), and the lock probe (the paths are [`crate::state_paths`]'). Must
//! never: hold the lock (a probe is released at once), create the lock file, or be needed for correctness —
//! the ledger is the truth, the snapshot only says what the daemon was looking at.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::{Identity, Sightings, Source, TrackedJob, identify};
use crate::state_paths::StatePaths;
use crate::time::Millis;

/// Version of the snapshot's fields; readers accept their own version only and say so otherwise (2: the
/// job list moved to a file of its own).
pub const SCHEMA_VERSION: u32 = 2;

/// Mode of the snapshot: the service's group (operators) may read it, others not (it names directories).
pub const MODE: u32 = 0o640;

/// One directory the daemon is looking at but has not submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// Directory name (one component of the root; lossy UTF-8).
    pub dir: String,
    /// `settling`, `locked` or `unreadable`.
    pub state: String,
    /// Identical looks at the ready-file so far (settling, locked).
    pub looks: u32,
    /// Looks needed (`watch.stability_checks`).
    pub needed: u32,
    /// Why, in words.
    pub reason: String,
}

/// What a scheduler source last said about one job in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSeen {
    /// Job id as the ledger stores it.
    pub job_id: String,
    /// Slurm's state word (`PENDING`, `RUNNING`, …) of the row that is provably ours.
    pub slurm_state: String,
    /// Slurm's reason with it (`Priority`, `Resources`, `NonZeroExitCode`, …); empty for none.
    #[serde(default)]
    pub slurm_reason: String,
    /// Which source said it: `controller` (squeue) or `accounting` (sacct).
    pub source: String,
    /// When it was first said so (wall ms): since when the job has been in this state, as far as the
    /// daemon saw.
    pub at: Millis,
}

/// What the last query showed of each job in flight, by a row that is provably ours, and a version that
/// moves on with every change (so the daemon copies and serializes the list only when it changed).
/// Held small: 100,000 array tasks pending for the same reason share its words.
#[derive(Debug, Default)]
pub struct SeenJobs {
    /// By job id.
    jobs: foldhash::HashMap<Box<str>, Said>,
    /// The state and reason words in use, each held once.
    words: Words,
    /// Moves on with every change of `jobs`.
    version: u64,
}

/// What a source said of one job (a [`JobSeen`] without its id, its words shared).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Said {
    state: Arc<str>,
    reason: Arc<str>,
    controller: bool,
    at: Millis,
}

/// A [`JobSeen`] as it is written, borrowed from [`SeenJobs`].
#[derive(Serialize)]
struct JobSeenRef<'a> {
    job_id: &'a str,
    slurm_state: &'a str,
    slurm_reason: &'a str,
    source: &'static str,
    at: Millis,
}

/// Words shared between entries: a few dozen states and reasons, whatever the number of jobs.
#[derive(Debug, Default)]
struct Words(std::collections::HashSet<Arc<str>>);

impl Words {
    /// Words no entry uses are dropped once there are this many (a reason can name nodes).
    const PRUNE_ABOVE: usize = 512;

    fn get(&mut self, w: &str) -> Arc<str> {
        if let Some(a) = self.0.get(w) {
            return a.clone();
        }
        if self.0.len() >= Self::PRUNE_ABOVE {
            self.0.retain(|a| Arc::strong_count(a) > 1);
        }
        let a: Arc<str> = w.into();
        self.0.insert(a.clone());
        a
    }
}

impl SeenJobs {
    /// The jobs seen as [`jobs_json`] writes them (in job id order), with their version, unless it is
    /// still `version` (nothing changed since). Made from the entries in place: no copy of the list.
    pub fn since(&self, version: Option<u64>) -> Option<(u64, io::Result<Vec<u8>>)> {
        if version == Some(self.version) {
            return None;
        }
        let mut v: Vec<(&Box<str>, &Said)> = self.jobs.iter().collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let v: Vec<JobSeenRef<'_>> = v
            .into_iter()
            .map(|(id, s)| JobSeenRef {
                job_id: id,
                slurm_state: &s.state,
                slurm_reason: &s.reason,
                source: if s.controller {
                    "controller"
                } else {
                    "accounting"
                },
                at: s.at,
            })
            .collect();
        Some((self.version, jobs_json(&v)))
    }

    /// Keeps, for each asked job, the state of its own row (the controller's over accounting's), and
    /// forgets jobs no longer asked about. An entry changes only when what it says does (its `at` is when
    /// that was first said): with thousands of jobs in flight and nothing changing, nothing is allocated
    /// here.
    pub fn remember(&mut self, jobs: &[TrackedJob], sightings: &Sightings) {
        let now = crate::time::wall_now();
        let rows_of = sightings.by_id();
        let SeenJobs {
            jobs: m,
            words,
            version,
        } = self;
        let mut present = 0;
        let steady = sightings.steady_mask(jobs.len());
        for (j, steady) in jobs.iter().zip(steady) {
            // Its line is as it was when its entry was made: nothing to change, and no lookup (100,000
            // array tasks held are 100,000 of them a round). A steady line is one whose row was ours
            // when it was read, and that round made the entry; it stays while the job is asked about.
            if steady {
                present += 1;
                continue;
            }
            let ours = rows_of.get(j.job_id.as_str()).and_then(|rows| {
                rows.iter()
                    .filter(|r| identify(j, r) == Identity::Ours)
                    .min_by_key(|r| (r.source != Source::Controller, std::cmp::Reverse(r.submit)))
            });
            let entry = m.get_mut(j.job_id.as_str());
            present += usize::from(entry.is_some() || ours.is_some());
            let Some(r) = ours else { continue };
            let controller = r.source == Source::Controller;
            match entry {
                Some(e)
                    if *e.state == *r.state
                        && *e.reason == *r.detail.reason
                        && e.controller == controller => {}
                Some(e) => {
                    *e = said(words, r, controller, now);
                    *version += 1;
                }
                None => {
                    m.insert(j.job_id.as_str().into(), said(words, r, controller, now));
                    *version += 1;
                }
            }
        }
        // Entries of jobs no longer asked about: only then is a set of the asked ones built.
        if m.len() > present {
            let asked: std::collections::HashSet<&str> =
                jobs.iter().map(|j| j.job_id.as_str()).collect();
            m.retain(|id, _| asked.contains(&**id));
            *version += 1;
        }
    }
}

fn said(words: &mut Words, r: &crate::engine::JobRow, controller: bool, at: Millis) -> Said {
    Said {
        state: words.get(&r.state),
        reason: words.get(&r.detail.reason),
        controller,
        at,
    }
}

/// The snapshot the daemon publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The daemon's process id.
    pub pid: u32,
    /// When the daemon started (wall ms).
    pub started_at: Millis,
    /// When this snapshot was written (wall ms).
    pub written_at: Millis,
    /// `watch.poll_interval_sec` in ms (how fresh a live daemon's snapshot is).
    pub poll_interval_ms: u64,
    /// The scheduler in use (`slurm`, `local`).
    pub scheduler: String,
    /// When the root was last listed successfully (wall ms).
    pub last_poll_at: Option<Millis>,
    /// Directories being watched for stability, locked by their writer, or unreadable.
    pub waiting: Vec<Waiting>,
    /// The last state a scheduler source showed for each job in flight: read from the job list's own
    /// file ([`write_jobs`]), never written with the rest.
    #[serde(skip_serializing, default)]
    pub jobs: Vec<JobSeen>,
}

impl Snapshot {
    /// The same snapshot without its write time: what decides whether it changed.
    pub fn content_eq(&self, other: &Snapshot) -> bool {
        self.same_but_jobs(other) && self.jobs == other.jobs
    }

    /// [`Snapshot::content_eq`] without the job list (which has a version of its own).
    pub fn same_but_jobs(&self, other: &Snapshot) -> bool {
        // Field by field, without a copy.
        let Snapshot {
            schema_version,
            pid,
            started_at,
            written_at: _,
            poll_interval_ms,
            scheduler,
            last_poll_at,
            waiting,
            jobs: _,
        } = self;
        (schema_version, pid, started_at, poll_interval_ms, scheduler)
            == (
                &other.schema_version,
                &other.pid,
                &other.started_at,
                &other.poll_interval_ms,
                &other.scheduler,
            )
            && (last_poll_at, waiting) == (&other.last_poll_at, &other.waiting)
    }

    /// True when a live daemon would have rewritten it by `now`: at most one poll interval apart, with
    /// room for a long cycle (three intervals, at least 30 s).
    pub fn is_fresh(&self, now: Millis) -> bool {
        let allowed = (3 * self.poll_interval_ms as Millis).max(30_000);
        now - self.written_at <= allowed
    }
}

/// Writes the snapshot but its job list atomically (mode [`MODE`]).
pub fn write(paths: &StatePaths, s: &Snapshot) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(s).map_err(io::Error::other)?;
    crate::fsx::write_atomic(&paths.status_json, &json, MODE)
}

/// Writes the job list, as [`SeenJobs::since`] or [`jobs_json`] made it, atomically (mode [`MODE`]).
pub fn write_jobs(paths: &StatePaths, jobs: &[u8]) -> io::Result<()> {
    crate::fsx::write_atomic(&paths.jobs_json, jobs, MODE)
}

/// A job list as [`write_jobs`] takes it (tests; the daemon's comes from [`SeenJobs::since`]).
pub fn jobs_json<T: Serialize>(jobs: &[T]) -> io::Result<Vec<u8>> {
    let mut v = serde_json::to_vec(jobs).map_err(io::Error::other)?;
    v.shrink_to_fit();
    Ok(v)
}

/// What reading the snapshot found.
#[derive(Debug)]
pub enum Read {
    /// There is none (no daemon has run with this ledger since snapshots exist).
    Missing,
    /// It was read.
    Found(Snapshot),
    /// It exists but could not be used (permission denied, another schema version, garbage).
    Unusable(String),
}

/// Reads the snapshot of the daemon on this ledger.
pub fn read(paths: &StatePaths) -> Read {
    let path = &paths.status_json;
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Read::Missing,
        Err(e) => return Read::Unusable(format!("cannot read `{}`: {e}", path.display())),
    };
    let v: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return Read::Unusable(format!("`{}` is not JSON: {e}", path.display())),
    };
    if v["schema_version"] != SCHEMA_VERSION {
        return Read::Unusable(format!(
            "`{}` has schema_version {} (this dirwatcher reads {SCHEMA_VERSION}): daemon and CLI differ in version",
            path.display(),
            v["schema_version"]
        ));
    }
    let mut s: Snapshot = match serde_json::from_value(v) {
        Ok(s) => s,
        Err(e) => return Read::Unusable(format!("`{}`: {e}", path.display())),
    };
    // The job list: none yet when the daemon has not written it (it does at its first publish).
    let path = &paths.jobs_json;
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(jobs) => s.jobs = jobs,
            Err(e) => return Read::Unusable(format!("`{}`: {e}", path.display())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Read::Unusable(format!("cannot read `{}`: {e}", path.display())),
    }
    Read::Found(s)
}

/// Whether a daemon runs on this ledger, as its lock says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// The lock is held: a daemon runs.
    Running,
    /// The lock is free, or there is no lock file: no daemon runs.
    NotRunning,
    /// The lock could not be probed (permission denied, …), in words.
    Unknown(String),
}

/// Probes the single-instance lock with a non-blocking *shared* lock on a read-only descriptor: refused
/// while the daemon holds its exclusive lock. A granted probe is released at once (a daemon starting in
/// that instant would see the lock taken and refuse to start: run it again).
pub fn liveness(paths: &StatePaths) -> Liveness {
    let path = &paths.lock;
    let file: File = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Liveness::NotRunning,
        Err(e) => {
            return Liveness::Unknown(format!("cannot open the lock `{}`: {e}", path.display()));
        }
    };
    match file.try_lock_shared() {
        Ok(()) => Liveness::NotRunning,
        Err(TryLockError::WouldBlock) => Liveness::Running,
        Err(TryLockError::Error(e)) => {
            Liveness::Unknown(format!("cannot probe the lock `{}`: {e}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            schema_version: SCHEMA_VERSION,
            pid: 42,
            started_at: 1_000,
            written_at: 2_000,
            poll_interval_ms: 5_000,
            scheduler: "local".into(),
            last_poll_at: Some(1_900),
            waiting: vec![Waiting {
                dir: "a".into(),
                state: "settling".into(),
                looks: 1,
                needed: 2,
                reason: "seen once".into(),
            }],
            jobs: vec![],
        }
    }

    #[test]
    fn the_job_list_is_written_in_a_file_of_its_own_and_read_back_with_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let state = StatePaths::of(&t.path().join("state.db"));
        let mut s = sample();
        s.jobs = vec![JobSeen {
            job_id: "17".into(),
            slurm_state: "PENDING".into(),
            slurm_reason: "Priority".into(),
            source: "controller".into(),
            at: 5,
        }];
        // The rest is written without the list; the list apart, and read back with it.
        write(&state, &s).unwrap();
        let status = std::fs::read_to_string(&state.status_json).unwrap();
        assert!(
            !status.contains("\"jobs\"") && !status.contains("PENDING"),
            "{status}"
        );
        match read(&state) {
            Read::Found(back) => assert_eq!(back.jobs, []),
            other => panic!("{other:?}"),
        }
        write_jobs(&state, &jobs_json(&s.jobs).unwrap()).unwrap();
        match read(&state) {
            Read::Found(back) => assert_eq!(back, s),
            other => panic!("{other:?}"),
        }
        // A list that is not one is said, naming its file.
        std::fs::write(&state.jobs_json, b"[{").unwrap();
        match read(&state) {
            Read::Unusable(why) => assert!(why.contains(".jobs.json"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trips_and_says_when_it_is_stale() {
        let t = tempfile::tempdir().unwrap();
        let state = StatePaths::of(&t.path().join("state.db"));
        assert!(matches!(read(&state), Read::Missing));
        write(&state, &sample()).unwrap();
        let Read::Found(s) = read(&state) else {
            panic!("not read back")
        };
        assert_eq!(s, sample());
        assert!(s.is_fresh(2_000 + 30_000));
        assert!(!s.is_fresh(2_000 + 30_001));
        let later = Snapshot {
            written_at: 9_000,
            ..sample()
        };
        assert!(later.content_eq(&sample()));
    }

    #[test]
    fn another_schema_version_is_refused_in_words() {
        let t = tempfile::tempdir().unwrap();
        let state = StatePaths::of(&t.path().join("state.db"));
        std::fs::write(&state.status_json, r#"{"schema_version": 99}"#).unwrap();
        match read(&state) {
            Read::Unusable(why) => assert!(why.contains("schema_version 99"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_lock_tells_whether_a_daemon_runs() {
        let t = tempfile::tempdir().unwrap();
        let state = StatePaths::of(&t.path().join("state.db"));
        assert_eq!(liveness(&state), Liveness::NotRunning, "no lock file");
        let held = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&state.lock)
            .unwrap();
        assert_eq!(liveness(&state), Liveness::NotRunning, "lock free");
        // Blocking: a child another test forks in this process may hold the probe's descriptor (and its
        // lock) for the moment between fork and exec.
        held.lock().unwrap();
        assert_eq!(liveness(&state), Liveness::Running);
        held.unlock().unwrap();
        assert_eq!(liveness(&state), Liveness::NotRunning);
    }
}
