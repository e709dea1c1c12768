//! The names beside the state file: the ledger and every file or folder the daemon (and SQLite for it)
//! keeps next to it — `<state_file>-wal`, `-shm`, `-journal`, `.lock`, `.status.json`, `.local-jobs/`.
//!
//! Owns: how those names are made, in one place, so that the daemon, the snapshot, the lock, the local
//! executor, `status` and `uninstall --purge` cannot disagree (they each built them before, and drifted).
//! Must never: touch the disk — it names, others create, read and remove.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Every path beside one state file, made once from `behavior.state_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    /// The ledger itself (`behavior.state_file`).
    pub ledger: PathBuf,
    /// SQLite's write-ahead log (`<ledger>-wal`): there while a connection is open, or after a crash.
    pub wal: PathBuf,
    /// SQLite's shared-memory index of the WAL (`<ledger>-shm`).
    pub shm: PathBuf,
    /// SQLite's rollback journal (`<ledger>-journal`): only while a new ledger is switched to WAL, left
    /// behind by a crash in that instant.
    pub journal: PathBuf,
    /// The single-instance lock the daemon holds while it runs, naming the ledger it last used
    /// (`<ledger>.lock`).
    pub lock: PathBuf,
    /// The daemon's snapshot for `status` and `explain` (`<ledger>.status.json`).
    pub status_json: PathBuf,
    /// The snapshot's job list, written apart when it changes (`<ledger>.jobs.json`).
    pub jobs_json: PathBuf,
    /// The local executor's job folders (`<ledger>.local-jobs/<job id>/`).
    pub local_jobs: PathBuf,
}

/// How a path beside the state file is removed (by `uninstall --purge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A file.
    File,
    /// A folder and all it holds.
    Tree,
}

impl StatePaths {
    /// The paths beside `state_file`: its name with a suffix, in the same directory.
    pub fn of(state_file: &Path) -> StatePaths {
        let beside = |suffix: &str| {
            // A state file is an absolute path to a file (the config checks it); a name-less path would
            // make `.lock` a hidden file of its directory rather than fail.
            let mut name = state_file
                .file_name()
                .map(OsString::from)
                .unwrap_or_default();
            name.push(suffix);
            state_file.with_file_name(name)
        };
        StatePaths {
            ledger: state_file.to_path_buf(),
            wal: beside("-wal"),
            shm: beside("-shm"),
            journal: beside("-journal"),
            lock: beside(".lock"),
            status_json: beside(".status.json"),
            jobs_json: beside(".jobs.json"),
            local_jobs: beside(".local-jobs"),
        }
    }

    /// Every path, the ledger first, each with how it is removed: what `uninstall --purge` removes.
    pub fn all(&self) -> [(&Path, Kind); 8] {
        [
            (&self.ledger, Kind::File),
            (&self.wal, Kind::File),
            (&self.shm, Kind::File),
            (&self.journal, Kind::File),
            (&self.lock, Kind::File),
            (&self.status_json, Kind::File),
            (&self.jobs_json, Kind::File),
            (&self.local_jobs, Kind::Tree),
        ]
        .map(|(p, k)| (p.as_path(), k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_the_state_files_with_a_suffix() {
        let p = StatePaths::of(Path::new("/var/lib/dw/state.db"));
        let names: Vec<_> = p
            .all()
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "/var/lib/dw/state.db",
                "/var/lib/dw/state.db-wal",
                "/var/lib/dw/state.db-shm",
                "/var/lib/dw/state.db-journal",
                "/var/lib/dw/state.db.lock",
                "/var/lib/dw/state.db.status.json",
                "/var/lib/dw/state.db.jobs.json",
                "/var/lib/dw/state.db.local-jobs",
            ]
        );
    }
}
