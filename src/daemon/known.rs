//! The directories the daemon knows, in memory: the latest record of each (id, state, ready-file identity)
//! and when a finished one's ready-file is looked at again. Loaded with one query at start, kept current on
//! the daemon's own writes, and read again whole when another connection (the CLI's `retry`, `forget`)
//! committed — SQLite's `data_version`, checked once per cycle. The scan diffs the root's listing against it:
//! no SQL per directory, and no file-system call for a directory in flight or finished and not yet due.
//!
//! Must never: be trusted over the ledger after someone else wrote to it (it is read again first), or
//! decide anything (the engine decides, from what it holds).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::time::Duration;

use crate::engine::{self, GenState, Generation};
use crate::ledger::{DirLatest, Ledger, LedgerError};
use crate::time::{Millis, ms};

/// What is known of one directory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// Its latest record; `None`: the ledger has none (a new name).
    pub latest: Option<DirLatest>,
    /// When (monotonic) it is looked at next: a finished directory's ready-file after `watch.recheck_sec`,
    /// one that is not ready after its back-off.
    pub recheck_at: Millis,
    /// Consecutive looks that found it not ready (its back-off doubles with each).
    pub unready: u32,
}

/// The in-memory view.
#[derive(Debug, Default)]
pub(super) struct Known {
    /// SipHash (std's), not a fast hash: the names are anyone's who can write in the root.
    map: HashMap<OsString, Entry>,
    /// `data_version` when the view was read; `None` before the first read.
    version: Option<i64>,
}

impl Known {
    /// Reads the view (again) if it was never read or another connection committed since. Returns true
    /// when it was read.
    pub fn sync(
        &mut self,
        ledger: &Ledger,
        now: Millis,
        recheck: Duration,
    ) -> Result<bool, LedgerError> {
        let v = ledger.data_version()?;
        if self.version == Some(v) {
            return Ok(false);
        }
        let rows = ledger.latest_all()?;
        self.map.clear();
        self.map.reserve(rows.len());
        for (dir, latest) in rows {
            let recheck_at = engine::first_recheck(dir.as_encoded_bytes(), now, recheck);
            let latest = Some(latest);
            let unready = 0;
            self.map.insert(
                dir,
                Entry {
                    latest,
                    recheck_at,
                    unready,
                },
            );
        }
        self.version = Some(v);
        Ok(true)
    }

    /// What is known of `name`; a name the view lacks (new, or its records deleted by dirwatcher) is asked
    /// of the ledger once and remembered.
    pub fn entry(
        &mut self,
        ledger: &Ledger,
        name: &OsStr,
        now: Millis,
    ) -> Result<Entry, LedgerError> {
        if let Some(e) = self.map.get(name) {
            return Ok(*e);
        }
        let latest = ledger.latest_for_dir(name)?.map(|g| DirLatest::of(&g));
        let e = Entry {
            latest,
            recheck_at: now,
            unready: 0,
        };
        self.map.insert(name.to_owned(), e);
        Ok(e)
    }

    /// This daemon committed `g` (a new intent or retry, a state change): it is the directory's latest
    /// record unless a newer one is known. A finished one is looked at again after `recheck`.
    pub fn recorded(&mut self, g: &Generation, now: Millis, recheck: Duration) {
        self.set(&g.dir, DirLatest::of(g), now + ms(recheck));
    }

    /// This daemon moved record `id` of `dir` to `state`.
    pub fn moved(&mut self, dir: &OsStr, id: i64, state: GenState, now: Millis, recheck: Duration) {
        if let Some(e) = self.map.get_mut(dir)
            && let Some(l) = e.latest.as_mut()
            && l.id == id
        {
            l.state = state;
            e.recheck_at = now + ms(recheck);
        }
    }

    fn set(&mut self, dir: &OsStr, latest: DirLatest, recheck_at: Millis) {
        let e = self.map.entry(dir.to_owned()).or_insert(Entry {
            latest: None,
            recheck_at,
            unready: 0,
        });
        if e.latest.is_none_or(|l| l.id <= latest.id) {
            *e = Entry {
                latest: Some(latest),
                recheck_at,
                unready: 0,
            };
        }
    }

    /// A finished directory's ready-file is looked at again at `at`.
    pub fn recheck_at(&mut self, dir: &OsStr, at: Millis) {
        if let Some(e) = self.map.get_mut(dir) {
            e.recheck_at = at;
        }
    }

    /// A look found `dir` not ready: it is looked at again after its back-off ([`engine::unready_next`]).
    pub fn unready(&mut self, dir: &OsStr, now: Millis, poll: Duration, max: Duration) {
        if let Some(e) = self.map.get_mut(dir) {
            e.recheck_at = engine::unready_next(dir.as_encoded_bytes(), e.unready, now, poll, max);
            e.unready = e.unready.saturating_add(1);
        }
    }

    /// A look found `dir` ready (a new generation settling): looked at every scan until it is stable.
    pub fn looked_ready(&mut self, dir: &OsStr, now: Millis) {
        if let Some(e) = self.map.get_mut(dir) {
            e.recheck_at = now;
            e.unready = 0;
        }
    }

    /// Forgets directories that are not in the root's listing (`names`, sorted): the view holds at most
    /// one entry per directory present. Cheap when nothing went away.
    pub fn keep_only(&mut self, names: &[OsString]) {
        if self.map.len() > names.len() {
            self.map
                .retain(|k, _| names.binary_search_by(|n| n.as_os_str().cmp(k)).is_ok());
        }
    }
}
