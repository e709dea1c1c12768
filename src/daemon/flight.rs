//! The active records in memory: intents waiting for (or lost by) `sbatch`, and jobs in flight. Loaded with
//! one query at start and read again whole when another connection (the CLI's `retry`, `forget`, `cancel`)
//! committed — the same `data_version` check as the directory view ([`super::known`]); kept current on the
//! daemon's own writes by reading back just the records it wrote. A cycle builds its agenda from the
//! intents held here and asks the scheduler about the jobs held here: no read of every active row per
//! cycle, so 20,000 jobs in flight cost a cycle what changed, plus reading the scheduler's answer.
//!
//! Must never: be trusted after another connection wrote (it is read again first), or miss a write of the
//! daemon's own (every step that commits a record's change reads that record back).

use crate::engine::{GenState, Generation, TrackedJob};
use crate::ledger::{Ledger, LedgerError};
use crate::time::Millis;

/// The active records and the query list built from them.
#[derive(Debug, Default)]
pub(super) struct Flight {
    /// Every record in state `submitting` or `submitted`, by id (a hash map: 20,000 lookups per cycle).
    rows: foldhash::HashMap<i64, Generation>,
    /// The jobs in flight as the scheduler is asked about them, with their record ids, in id order;
    /// `None` after a change, built again when asked for.
    tracked: Option<(Vec<TrackedJob>, Vec<i64>)>,
    /// How many times every active record was read (tests check that a quiet cycle reads none).
    loads: u64,
}

/// What the scheduler is asked about a job in flight (none before its id is known).
pub(super) fn tracked(g: &Generation) -> Option<TrackedJob> {
    Some(TrackedJob {
        job_id: g.job_id.clone()?,
        key: g.scheduler_key().to_string(),
        job_name: g.scheduler_name().to_string(),
        since: g.created_at,
    })
}

impl Flight {
    /// Reads every active record (at start, and after another connection committed).
    pub fn load(&mut self, ledger: &Ledger) -> Result<(), LedgerError> {
        let rows = ledger.active()?;
        self.rows = rows.into_iter().map(|g| (g.id, g)).collect();
        self.tracked = None;
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
        let was_job = self.rows.get(&g.id).and_then(|o| o.job_id.clone());
        if g.state == GenState::Submitted || was_job.is_some() {
            self.tracked = None;
        }
        self.rows.insert(g.id, g);
    }

    fn drop_id(&mut self, id: i64) {
        if self.rows.remove(&id).is_some_and(|g| g.job_id.is_some()) {
            self.tracked = None;
        }
    }

    /// The ledger now says these jobs were seen at `wall` (written by the daemon itself).
    pub fn seen(&mut self, ids: &[i64], wall: Millis) {
        for id in ids {
            if let Some(g) = self.rows.get_mut(id) {
                g.seen_at = Some(wall);
            }
        }
    }

    /// The intents (waiting for `sbatch`, or for a lookup of a lost answer), oldest first.
    pub fn intents(&self) -> Vec<&Generation> {
        let mut v: Vec<&Generation> = self
            .rows
            .values()
            .filter(|g| g.state == GenState::Submitting)
            .collect();
        v.sort_unstable_by_key(|g| g.id);
        v
    }

    /// How many times every active record was read.
    #[cfg(test)]
    pub fn loads(&self) -> u64 {
        self.loads
    }

    /// A record held here.
    pub fn get(&self, id: i64) -> Option<&Generation> {
        self.rows.get(&id)
    }

    /// Whether `id` is held here.
    pub fn contains(&self, id: i64) -> bool {
        self.rows.contains_key(&id)
    }

    /// The list [`Flight::tracked`] built last (empty when none was built since the last change).
    pub fn tracked_now(&self) -> (&[TrackedJob], &[i64]) {
        match &self.tracked {
            Some((jobs, ids)) => (jobs, ids),
            None => (&[], &[]),
        }
    }

    /// The jobs in flight as the scheduler is asked about them, and their record ids (same order).
    pub fn tracked(&mut self) -> (&[TrackedJob], &[i64]) {
        let rows = &self.rows;
        let (jobs, ids) = self.tracked.get_or_insert_with(|| {
            let mut live: Vec<&Generation> = rows
                .values()
                .filter(|g| g.state == GenState::Submitted)
                .collect();
            live.sort_unstable_by_key(|g| g.id);
            live.into_iter()
                .filter_map(|g| Some((tracked(g)?, g.id)))
                .unzip()
        });
        (jobs, ids)
    }
}
