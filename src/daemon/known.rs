//! The directories the daemon knows, in memory: the latest record of each (id, state, ready-file identity)
//! and when a finished one's ready-file is looked at again. Loaded with one query at start, kept current on
//! the daemon's own writes, and read again whole when another connection (the CLI's `retry`, `forget`)
//! committed — SQLite's `data_version`, checked once per cycle. The scan diffs the root's listing against it:
//! no SQL per directory, and no file-system call for a directory in flight or finished and not yet due.
//!
//! Must never: be trusted over the ledger after someone else wrote to it (it is read again first), or
//! decide anything (the engine decides, from what it holds).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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
    /// Every name's next look, by time: a name may be here more than once or no longer due at that time
    /// (checked when it is taken). While the root's listing is unchanged, a scan takes the due names from
    /// here instead of passing over every name: 100,000 directories waiting for a ready-file cost their
    /// due looks, not 100,000 lookups per poll.
    due: BinaryHeap<Reverse<(Millis, OsString)>>,
    /// The view was read again since the last pass over every listed name: names it lacks are not in
    /// `due`, so the next scan passes over every name.
    pub reloaded: bool,
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
        self.due.clear();
        self.reloaded = true;
        self.map.reserve(rows.len());
        for (dir, latest) in rows {
            let recheck_at = engine::first_recheck(dir.as_encoded_bytes(), now, recheck);
            let latest = Some(latest);
            let unready = 0;
            self.due.push(Reverse((recheck_at, dir.clone())));
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
        self.due.push(Reverse((now, name.to_owned())));
        Ok(e)
    }

    /// The names whose look is due at `now`, each once, taken out of the schedule (a look puts each
    /// back at its next time; [`Known::still_due`] puts back one whose look did not).
    pub fn take_due(&mut self, now: Millis) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        while let Some(Reverse((at, _))) = self.due.peek()
            && *at <= now
        {
            let Some(Reverse((at, name))) = self.due.pop() else {
                break;
            };
            let current = self.map.get(&name).is_some_and(|e| e.recheck_at == at);
            if current && out.last() != Some(&name) {
                out.push(name);
            }
        }
        out
    }

    /// A name taken by [`Known::take_due`] that is still due after its look (a directory not settled
    /// either way, looked at again next scan, as a pass over every name would): put back. One in flight
    /// is not: its end ([`Known::moved`]) schedules it again.
    pub fn still_due(&mut self, name: &OsStr, now: Millis) {
        if let Some(e) = self.map.get(name)
            && e.recheck_at <= now
            && !e.latest.is_some_and(|l| l.state.is_active())
        {
            self.due.push(Reverse((e.recheck_at, name.to_owned())));
        }
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
            self.due.push(Reverse((e.recheck_at, dir.to_owned())));
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
            self.due.push(Reverse((recheck_at, dir.to_owned())));
        }
    }

    /// A finished directory's ready-file is looked at again at `at`.
    pub fn recheck_at(&mut self, dir: &OsStr, at: Millis) {
        if let Some(e) = self.map.get_mut(dir) {
            e.recheck_at = at;
            self.due.push(Reverse((at, dir.to_owned())));
        }
    }

    /// A look found `dir` not ready: it is looked at again after its back-off ([`engine::unready_next`]).
    pub fn unready(&mut self, dir: &OsStr, now: Millis, poll: Duration, max: Duration) {
        if let Some(e) = self.map.get_mut(dir) {
            e.recheck_at = engine::unready_next(dir.as_encoded_bytes(), e.unready, now, poll, max);
            e.unready = e.unready.saturating_add(1);
            self.due.push(Reverse((e.recheck_at, dir.to_owned())));
        }
    }

    /// A look found `dir` ready (a new generation settling): looked at every scan until it is stable.
    pub fn looked_ready(&mut self, dir: &OsStr, now: Millis) {
        if let Some(e) = self.map.get_mut(dir) {
            e.recheck_at = now;
            e.unready = 0;
            self.due.push(Reverse((now, dir.to_owned())));
        }
    }

    /// Forgets directories that are not in the root's listing (`names`, sorted): the view holds at most
    /// one entry per directory present. Cheap when nothing went away.
    pub fn keep_only(&mut self, names: &[OsString]) {
        if self.map.len() > names.len() {
            self.map
                .retain(|k, _| names.binary_search_by(|n| n.as_os_str().cmp(k)).is_ok());
        }
        // The schedule holds at most a few entries per name: drop those of names gone, now and then.
        if self.due.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            self.due
                .retain(|Reverse((at, n))| map.get(n).is_some_and(|e| e.recheck_at == *at));
        }
    }
}
