//! The active records in memory: intents waiting for (or lost by) `sbatch`, and jobs in flight. Loaded at
//! start (a page of records at a time) and read again whole when another connection (the CLI's `retry`,
//! `forget`, `cancel`) committed — the same `data_version` check as the directory view ([`super::known`]);
//! kept current on the daemon's own writes by reading back just the records it wrote. A cycle builds its
//! agenda from the intents held here and asks the scheduler about the jobs held here: no read of every
//! active row per cycle, so 100,000 jobs in flight cost a cycle what changed, plus reading the scheduler's
//! answer and one pass over three lists.
//!
//! An intent is held whole (there are few, and submitting one needs all of it). A job in flight is held as
//! the scheduler is asked about it and what the lost-job rule needs (when it was last seen), in lists in
//! record id order: a record that ends is read from the ledger when it is acted on, so memory grows with
//! the jobs in flight by a few hundred bytes each, and a quiet round walks the lists without a lookup.
//!
//! Must never: be trusted after another connection wrote (it is read again first), or miss a write of the
//! daemon's own (every step that commits a record's change reads that record back).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::{GenState, Generation, TrackedJob};
use crate::ledger::{Ledger, LedgerError};
use crate::time::Millis;

/// The active records and the query list built from them.
#[derive(Debug, Default)]
pub(super) struct Flight {
    /// Every record in state `submitting`, by id.
    intents: foldhash::HashMap<i64, Generation>,
    /// The jobs in flight, in id order, as of the last [`Flight::tracked`]; changes since wait in
    /// `changes`.
    list: Tracked,
    /// Jobs that came, changed or left since `list` was built: record id → the job now (`None`: it left).
    changes: BTreeMap<i64, Option<Followed>>,
    /// How many times every active record was read (tests check that a quiet cycle reads none).
    loads: u64,
    /// The last key and name given to a job here.
    shared: Shared,
    /// How long each job in flight was unseen, kept from a [`Flight::load`] that failed (the lists were
    /// dropped before the read) for the next one: a failed read of the ledger never restarts a job's
    /// clock towards "lost".
    unseen_kept: Vec<(i64, Option<(Millis, Millis)>)>,
}

/// The jobs in flight as the scheduler is asked about them, with their record ids and what the daemon
/// knows of their sightings (three lists, same order).
#[derive(Debug, Default)]
struct Tracked {
    jobs: Vec<TrackedJob>,
    ids: Vec<i64>,
    sightings: Vec<Sighting>,
}

/// What the lost-job rule knows of one job in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sighting {
    /// When the ledger says a scheduler source last showed the job (written at most once a minute).
    pub seen_at: Option<Millis>,
    /// When its id became known (else when its intent was committed).
    pub submitted_at: Millis,
    /// How long it was unseen when this process began to follow it (from the ledger's wall times), and the
    /// monotonic time of that moment or of its last sighting: "lost" is measured on the monotonic clock,
    /// so a wall-clock step cannot make a job lost. `None` until the first round judges it.
    pub unseen: Option<(Millis, Millis)>,
}

/// One job in flight: what the scheduler is asked, and its sighting.
#[derive(Debug)]
struct Followed {
    job: TrackedJob,
    sighting: Sighting,
}

/// The tasks of one array share their key and job name: consecutive records (an array's tasks are read
/// and written together) are given one copy of each.
#[derive(Debug, Default)]
struct Shared {
    key: Option<Arc<str>>,
    name: Option<Arc<str>>,
}

impl Shared {
    fn followed(&mut self, g: &Generation) -> Option<Followed> {
        let mut job = TrackedJob::of(g)?;
        job.key = share(&mut self.key, job.key);
        job.job_name = share(&mut self.name, job.job_name);
        Some(Followed {
            job,
            sighting: Sighting {
                seen_at: g.seen_at,
                submitted_at: g.submitted_at.unwrap_or(g.created_at),
                unseen: None,
            },
        })
    }
}

/// `s`, or the copy in `last` when it is the same text (which `s` then becomes).
fn share(last: &mut Option<Arc<str>>, s: Arc<str>) -> Arc<str> {
    match last {
        Some(l) if **l == *s => l.clone(),
        _ => last.insert(s).clone(),
    }
}

impl Flight {
    /// Reads every active record (at start, and after another connection committed), a page at a time:
    /// a job in flight is kept as it is followed, never the whole list of records at once.
    pub fn load(&mut self, ledger: &Ledger) -> Result<(), LedgerError> {
        let old = std::mem::take(&mut self.list).merged(std::mem::take(&mut self.changes));
        let mut unseen: Vec<(i64, Option<(Millis, Millis)>)> = old
            .ids
            .iter()
            .zip(&old.sightings)
            .map(|(id, s)| (*id, s.unseen))
            .collect();
        let kept = std::mem::take(&mut self.unseen_kept);
        if !kept.is_empty() {
            // A job put while the flight was stale could not find its clock (nothing was held): it has
            // the kept one, unless it has one of its own.
            unseen.extend(kept);
            unseen.sort_by_key(|(id, _)| *id);
            unseen.dedup_by(|later, first| {
                if later.0 != first.0 {
                    return false;
                }
                first.1 = first.1.or(later.1);
                true
            });
        }
        // Dropped before the read (held twice, a burst's records would double the peak); nothing reads
        // them until a load succeeds (the caller marks the flight stale).
        drop(old);
        self.intents.clear();
        let mut intents = foldhash::HashMap::default();
        let mut list = Tracked::default();
        let shared = &mut self.shared;
        let read = ledger.each_active(|g| match g.state {
            GenState::Submitting => {
                intents.insert(g.id, g);
            }
            _ => {
                if let Some(f) = shared.followed(&g) {
                    list.push(g.id, f);
                }
            }
        });
        if let Err(e) = read {
            self.unseen_kept = unseen;
            return Err(e);
        }
        list.shrink();
        list.keep_unseen(&unseen);
        self.intents = intents;
        self.list = list;
        self.loads += 1;
        Ok(())
    }

    /// Reads back the records this daemon just wrote: an active one is kept as the ledger has it, any
    /// other leaves.
    pub fn reread(&mut self, ledger: &Ledger, ids: &[i64]) -> Result<(), LedgerError> {
        for &id in ids {
            match ledger.get(id)? {
                Some(g) => self.put(g),
                None => self.drop_id(id),
            }
        }
        Ok(())
    }

    /// A record as the ledger holds it now (e.g. a new intent, as inserted).
    pub fn put(&mut self, g: Generation) {
        if !g.state.is_active() {
            return self.drop_id(g.id);
        }
        if g.state == GenState::Submitting {
            self.leave(g.id);
            self.intents.insert(g.id, g);
            return;
        }
        if self.intents.remove(&g.id).is_some() {
            self.shrink_intents();
        }
        match self.shared.followed(&g) {
            Some(mut f) => {
                f.sighting.unseen = self.sighting(g.id).and_then(|s| s.unseen);
                self.changes.insert(g.id, Some(f));
            }
            None => self.leave(g.id),
        }
    }

    fn drop_id(&mut self, id: i64) {
        self.intents.remove(&id);
        self.leave(id);
    }

    /// After a burst (100,000 intents submitted), the room it took is given back: the map of intents
    /// keeps the capacity of its largest size otherwise.
    fn shrink_intents(&mut self) {
        let (n, room) = (self.intents.len(), self.intents.capacity());
        if room > 4096 && n * 8 < room {
            self.intents.shrink_to_fit();
        }
    }

    /// The job of record `id` is no longer followed (if it was).
    fn leave(&mut self, id: i64) {
        if self.sighting(id).is_some() {
            self.changes.insert(id, None);
        }
    }

    /// The sighting of the job of record `id`, if it is followed.
    fn sighting(&self, id: i64) -> Option<&Sighting> {
        match self.changes.get(&id) {
            Some(change) => change.as_ref().map(|f| &f.sighting),
            None => self.list.find(id).map(|i| &self.list.sightings[i]),
        }
    }

    fn sighting_mut(&mut self, id: i64) -> Option<&mut Sighting> {
        match self.changes.get_mut(&id) {
            Some(change) => change.as_mut().map(|f| &mut f.sighting),
            None => self.list.find(id).map(|i| &mut self.list.sightings[i]),
        }
    }

    /// The ledger now says these jobs were seen at `wall` (written by the daemon itself).
    pub fn seen(&mut self, ids: &[i64], wall: Millis) {
        for &id in ids {
            if let Some(s) = self.sighting_mut(id) {
                s.seen_at = Some(wall);
            }
        }
    }

    /// The job of record `id` is unseen from `now` (monotonic): it was just submitted or adopted.
    pub fn unseen_from(&mut self, id: i64, now: Millis) {
        if let Some(s) = self.sighting_mut(id) {
            s.unseen = Some((0, now));
        }
    }

    /// The intents (waiting for `sbatch`, or for a lookup of a lost answer), oldest first.
    pub fn intents(&self) -> Vec<&Generation> {
        let mut v: Vec<&Generation> = self.intents.values().collect();
        v.sort_unstable_by_key(|g| g.id);
        v
    }

    /// How many times every active record was read.
    #[cfg(test)]
    pub fn loads(&self) -> u64 {
        self.loads
    }

    /// An intent held here.
    pub fn intent(&self, id: i64) -> Option<&Generation> {
        self.intents.get(&id)
    }

    /// The jobs in flight as the scheduler is asked about them, and their record ids (same order).
    pub fn tracked(&mut self) -> (&[TrackedJob], &[i64]) {
        if !self.changes.is_empty() {
            let changes = std::mem::take(&mut self.changes);
            self.list = std::mem::take(&mut self.list).merged(changes);
        }
        (&self.list.jobs, &self.list.ids)
    }

    /// The list [`Flight::tracked`] gave last, with the sightings (same order) to judge its jobs by: an
    /// answer about that list is judged against that list. Empty when a change came since (never merged
    /// here: the answer's job indices would then point at other jobs).
    pub fn tracked_now(&mut self) -> (&[TrackedJob], &[i64], &mut [Sighting]) {
        if !self.changes.is_empty() {
            return (&[], &[], &mut []);
        }
        let Tracked {
            jobs,
            ids,
            sightings,
        } = &mut self.list;
        (jobs, ids, sightings)
    }
}

impl Tracked {
    fn push(&mut self, id: i64, f: Followed) {
        self.jobs.push(f.job);
        self.ids.push(id);
        self.sightings.push(f.sighting);
    }

    fn shrink(&mut self) {
        self.jobs.shrink_to_fit();
        self.ids.shrink_to_fit();
        self.sightings.shrink_to_fit();
    }

    /// Keeps what `old` measured of how long each job has been unseen (a job unseen for a while stays
    /// so across a reload, on the monotonic clock).
    fn keep_unseen(&mut self, old: &[(i64, Option<(Millis, Millis)>)]) {
        let mut j = 0;
        for (i, id) in self.ids.iter().enumerate() {
            while j < old.len() && old[j].0 < *id {
                j += 1;
            }
            if let Some((oid, unseen)) = old.get(j)
                && oid == id
            {
                self.sightings[i].unseen = *unseen;
            }
        }
    }

    /// The position of record `id` (the lists are in id order).
    fn find(&self, id: i64) -> Option<usize> {
        self.ids.binary_search(&id).ok()
    }

    /// These lists with `changes` applied, in one pass (both are in id order).
    fn merged(self, changes: BTreeMap<i64, Option<Followed>>) -> Tracked {
        let mut out = Tracked {
            jobs: Vec::with_capacity(self.jobs.len() + changes.len()),
            ids: Vec::with_capacity(self.jobs.len() + changes.len()),
            sightings: Vec::with_capacity(self.jobs.len() + changes.len()),
        };
        let old = self.ids.into_iter().zip(self.jobs).zip(self.sightings);
        let mut old = old.map(|((id, job), sighting)| (id, Followed { job, sighting }));
        let mut next = old.next();
        for (id, change) in changes {
            while let Some((oid, f)) = next.take_if(|(oid, _)| *oid <= id) {
                if oid < id {
                    out.push(oid, f);
                }
                next = old.next();
            }
            if let Some(f) = change {
                out.push(id, f);
            }
        }
        while let Some((oid, f)) = next {
            out.push(oid, f);
            next = old.next();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ReadyIdentity;
    use crate::ledger::NewGeneration;

    /// A read of the ledger that fails between two good ones (the table gone for a moment) leaves the
    /// flight empty, and the next read finds each job with the clock it had towards "lost".
    #[test]
    fn how_long_a_job_was_unseen_survives_a_failed_read_of_the_ledger() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.db");
        let mut l = Ledger::open(&path).unwrap();
        let mut ids = Vec::new();
        for (n, dir) in ["a", "b"].into_iter().enumerate() {
            let new = NewGeneration {
                dir: dir.as_ref(),
                ready: ReadyIdentity {
                    dev: 1,
                    ino: n as u64,
                    size: 0,
                    mtime_ns: 1,
                },
                dir_dev_ino: None,
                attempt: 1,
                job_name: "dw-job",
                not_before: 10,
            };
            let g = l.insert_intent(&new, 10).unwrap();
            l.mark_sbatch_started(g.id, 11).unwrap();
            l.record_submitted(g.id, &format!("{}", 40 + n), &[], 12)
                .unwrap();
            ids.push(g.id);
        }
        let mut f = Flight::default();
        f.load(&l).unwrap();
        assert_eq!(f.tracked().1, ids);
        f.unseen_from(ids[1], 500);
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch("ALTER TABLE generations RENAME TO away")
            .unwrap();
        assert!(f.load(&l).is_err());
        assert!(f.tracked().1.is_empty());
        // A record read back while the flight is stale (after a write of this daemon) knows no clock.
        raw.execute_batch("ALTER TABLE away RENAME TO generations")
            .unwrap();
        f.reread(&l, &[ids[1]]).unwrap();
        raw.execute_batch("ALTER TABLE generations RENAME TO away")
            .unwrap();
        assert!(f.load(&l).is_err());
        raw.execute_batch("ALTER TABLE away RENAME TO generations")
            .unwrap();
        f.load(&l).unwrap();
        assert_eq!(f.tracked().1, ids);
        assert_eq!(f.sighting(ids[0]).map(|s| s.unseen), Some(None));
        assert_eq!(f.sighting(ids[1]).map(|s| s.unseen), Some(Some((0, 500))));
    }

    fn job(id: i64) -> Followed {
        Followed {
            job: TrackedJob {
                job_id: format!("{}", 100 + id),
                key: format!("k{id}").into(),
                job_name: "dw-a".into(),
                since: 1,
            },
            sighting: Sighting {
                seen_at: None,
                submitted_at: 2,
                unseen: Some((0, id)),
            },
        }
    }

    #[test]
    fn changes_are_merged_into_the_lists_in_record_order() {
        let mut t = Tracked::default();
        for id in [1, 3, 5, 7] {
            t.push(id, job(id));
        }
        let changes: BTreeMap<i64, Option<Followed>> = [
            (0, Some(job(0))),
            (3, None),
            (5, Some(job(50))),
            (6, Some(job(6))),
            (9, Some(job(9))),
            (10, None),
        ]
        .into_iter()
        .collect();
        let t = t.merged(changes);
        assert_eq!(t.ids, [0, 1, 5, 6, 7, 9]);
        let jobs: Vec<&str> = t.jobs.iter().map(|j| j.job_id.as_str()).collect();
        assert_eq!(jobs, ["100", "101", "150", "106", "107", "109"]);
        assert_eq!(t.sightings[2].unseen, Some((0, 50)));
        assert_eq!(t.find(6), Some(3));
        assert_eq!(t.find(3), None);
        let t = t.merged(BTreeMap::new());
        assert_eq!(t.ids, [0, 1, 5, 6, 7, 9]);
    }

    #[test]
    fn how_long_a_job_was_unseen_survives_a_reload_and_a_recorded_sighting() {
        let mut t = Tracked::default();
        for id in [2, 4, 6] {
            t.push(id, job(id));
        }
        t.sightings[1].unseen = None;
        // Read again: 2 and 6 keep their clocks, 4 had none, and 3 (gone) is ignored.
        t.keep_unseen(&[(2, Some((5, 7))), (3, Some((1, 1))), (6, Some((0, 9)))]);
        assert_eq!(t.sightings[0].unseen, Some((5, 7)));
        assert_eq!(t.sightings[1].unseen, None);
        assert_eq!(t.sightings[2].unseen, Some((0, 9)));
        // A sighting written to the ledger moves `seen_at`, not the clock.
        let mut f = Flight {
            list: t,
            ..Flight::default()
        };
        f.unseen_from(4, 11);
        f.seen(&[4], 100);
        assert_eq!(
            f.sighting(4).map(|s| (s.seen_at, s.unseen)),
            Some((Some(100), Some((0, 11))))
        );
        let (_, ids, sightings) = f.tracked_now();
        assert_eq!(ids, [2, 4, 6]);
        assert_eq!(sightings[1].unseen, Some((0, 11)));
        // A job that left since the list was given: an answer about the old list is judged against none.
        f.leave(6);
        assert!(f.tracked_now().1.is_empty());
        assert_eq!(f.tracked().1, [2, 4]);
        assert_eq!(f.tracked_now().1, [2, 4]);
    }
}
