//! The ledger's queries: one generation, a directory's history, the daemon's in-memory view of every
//! directory, the active rows and the pending effects, the counts for `status`.
//!
//! Must never write: every query here runs as well on a ledger opened read-only (`status`, `explain`).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::sql::{Arg, DbError, Row, args};
use super::{Ledger, Result, i, u};
use crate::engine::{ArrayTask, GenState, Generation, JobDetail, ReadyIdentity};

/// Counts by state and the in-flight generations, for `status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counts {
    /// Intents committed, no job id yet.
    pub submitting: u64,
    /// Jobs in flight.
    pub submitted: u64,
    /// Jobs COMPLETED.
    pub completed: u64,
    /// Jobs failed.
    pub failed: u64,
    /// Jobs lost (no source showed them for longer than `job.lost_after_sec`).
    pub lost: u64,
}

pub(super) const COLUMNS: &str = "id, dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, dir_dev, dir_ino, state, attempt, \
    submit_tries, submit_key, job_id, job_name, created_at, submitted_at, finished_at, next_try_at, final_state, \
    exit_code, last_error, uncertain, delete_pending, failure_log_pending, deleted, updated_at, seen_at, reason, \
    nodes, elapsed_sec, array_key, array_task, array_name";

/// The latest record of one directory, as the daemon keeps it in memory (a few dozen bytes a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirLatest {
    /// Record id.
    pub id: i64,
    /// Its state.
    pub state: GenState,
    /// The ready-file identity that made it.
    pub ready: ReadyIdentity,
}

impl DirLatest {
    /// The in-memory view of a full record.
    pub fn of(g: &Generation) -> DirLatest {
        DirLatest {
            id: g.id,
            state: g.state,
            ready: g.ready,
        }
    }
}

fn row_to_gen(r: &Row) -> std::result::Result<Generation, DbError> {
    let dir_dev: Option<i64> = r.get(6)?;
    let dir_ino: Option<i64> = r.get(7)?;
    let state: String = r.get(8)?;
    Ok(Generation {
        id: r.get(0)?,
        dir: OsString::from_vec(r.get::<Vec<u8>>(1)?),
        ready: ReadyIdentity {
            dev: u(r.get(2)?),
            ino: u(r.get(3)?),
            size: u(r.get(4)?),
            mtime_ns: r.get(5)?,
        },
        dir_dev_ino: dir_dev.zip(dir_ino).map(|(d, n)| (u(d), u(n))),
        state: GenState::parse(&state)
            .ok_or_else(|| DbError::Type(format!("unknown state {state:?}")))?,
        attempt: r.get(9)?,
        submit_tries: r.get(10)?,
        key: r.get(11)?,
        job_id: r.get(12)?,
        job_name: r.get(13)?,
        created_at: r.get(14)?,
        submitted_at: r.get(15)?,
        finished_at: r.get(16)?,
        next_try_at: r.get(17)?,
        final_state: r.get(18)?,
        exit_code: r.get(19)?,
        last_error: r.get(20)?,
        uncertain: r.get(21)?,
        delete_pending: r.get(22)?,
        failure_log_pending: r.get(23)?,
        deleted: r.get(24)?,
        updated_at: r.get(25)?,
        seen_at: r.get(26)?,
        detail: JobDetail {
            reason: r.get::<Option<String>>(27)?.unwrap_or_default(),
            nodes: r.get::<Option<String>>(28)?.unwrap_or_default(),
            elapsed_sec: r.get::<Option<i64>>(29)?.map(u),
        },
        array: match (
            r.get::<Option<String>>(30)?,
            r.get::<Option<i64>>(31)?,
            r.get::<Option<String>>(32)?,
        ) {
            (Some(key), Some(task), Some(name)) => Some(ArrayTask {
                key,
                task: task as u32,
                name,
            }),
            _ => None,
        },
    })
}

impl Ledger {
    /// The latest generation of `dir`, if any.
    pub fn latest_for_dir(&self, dir: &OsStr) -> Result<Option<Generation>> {
        Ok(self
            .select(
                "WHERE dir = ?1 ORDER BY id DESC LIMIT 1",
                args![dir.as_bytes()],
            )?
            .pop())
    }

    /// All generations of `dir`, oldest first.
    pub fn history(&self, dir: &OsStr) -> Result<Vec<Generation>> {
        self.select("WHERE dir = ?1 ORDER BY id", args![dir.as_bytes()])
    }

    /// The latest generation of whichever directory had the device and inode `dev_ino` when its intent
    /// was recorded (a directory renamed within the root keeps them), if any.
    pub fn latest_for_dir_ident(&self, dev_ino: (u64, u64)) -> Result<Option<Generation>> {
        Ok(self
            .select(
                "WHERE dir_ino = ?1 AND dir_dev = ?2 ORDER BY id DESC LIMIT 1",
                args![i(dev_ino.1), i(dev_ino.0)],
            )?
            .pop())
    }

    /// SQLite's `PRAGMA data_version`: changes when another connection (the CLI's `retry` or `forget`)
    /// committed since the last call on this one; never for this connection's own commits. Checked once per
    /// cycle, it tells the daemon when its in-memory view must be read again.
    pub fn data_version(&self) -> Result<i64> {
        self.db
            .borrow_mut()
            .data_version()
            .map_err(self.sql("cannot read"))
    }

    /// The latest record of every directory that was not deleted by dirwatcher, in one query: what the
    /// daemon keeps in memory so a scan needs no SQL per directory.
    pub fn latest_all(&self) -> Result<Vec<(OsString, DirLatest)>> {
        let what = "cannot read the directories";
        let rows = self.rows(
            "SELECT g.dir, g.id, g.state, g.ready_dev, g.ready_ino, g.ready_size, g.ready_mtime_ns
                 FROM generations g JOIN (SELECT MAX(id) AS id FROM generations GROUP BY dir) m ON g.id = m.id
                 WHERE g.deleted = 0",
            &[],
            what,
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let read = || -> std::result::Result<_, DbError> {
                Ok((
                    OsString::from_vec(r.get::<Vec<u8>>(0)?),
                    r.get::<i64>(1)?,
                    r.get::<String>(2)?,
                    ReadyIdentity {
                        dev: u(r.get(3)?),
                        ino: u(r.get(4)?),
                        size: u(r.get(5)?),
                        mtime_ns: r.get(6)?,
                    },
                ))
            };
            let (dir, id, state, ready) = read().map_err(self.sql(what))?;
            if let Some(state) = GenState::parse(&state) {
                out.push((dir, DirLatest { id, state, ready }));
            }
        }
        Ok(out)
    }

    /// One generation by id.
    pub fn get(&self, id: i64) -> Result<Option<Generation>> {
        Ok(self.select("WHERE id = ?1", args![id])?.into_iter().next())
    }

    /// Generations that need the daemon: intents without job id, and jobs in flight.
    pub fn active(&self) -> Result<Vec<Generation>> {
        self.select(
            "WHERE state IN ('submitting', 'submitted') ORDER BY id",
            &[],
        )
    }

    /// [`Ledger::active`] a page at a time, in id order: the daemon keeps of 100,000 jobs in flight what it
    /// follows them by, and never holds every record (and every row's columns) at once.
    pub fn each_active(&self, mut f: impl FnMut(Generation)) -> Result<()> {
        const PAGE: i64 = 2_000;
        let mut after = i64::MIN;
        loop {
            let page = self.select(
                "WHERE state IN ('submitting', 'submitted') AND id > ?1 ORDER BY id LIMIT ?2",
                args![after, PAGE],
            )?;
            let full = page.len() as i64 == PAGE;
            for g in page {
                after = g.id;
                f(g);
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Finished generations whose effects (delete, failure-log line) are still due.
    pub fn pending_effects(&self) -> Result<Vec<Generation>> {
        self.select(
            "WHERE delete_pending = 1 OR failure_log_pending = 1 ORDER BY id",
            &[],
        )
    }

    /// Counts by state (of the latest generation per directory, so a retried directory counts once), from
    /// the table the triggers keep: a few rows, whatever the size of the ledger.
    pub fn counts(&self) -> Result<Counts> {
        let mut c = Counts::default();
        for r in self.rows("SELECT state, n FROM state_counts", &[], "cannot read")? {
            let (s, n) = (|| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)))()
                .map_err(self.sql::<DbError>("cannot read"))?;
            let n = n.max(0) as u64;
            match GenState::parse(&s) {
                Some(GenState::Submitting) => c.submitting = n,
                Some(GenState::Submitted) => c.submitted = n,
                Some(GenState::Completed) => c.completed = n,
                Some(GenState::Failed) => c.failed = n,
                Some(GenState::Lost) => c.lost = n,
                None => {}
            }
        }
        Ok(c)
    }

    /// The most recent failed generations, newest first.
    pub fn recent_failures(&self, limit: u32) -> Result<Vec<Generation>> {
        self.select(
            "WHERE state = 'failed' ORDER BY finished_at DESC, id DESC LIMIT ?1",
            args![limit],
        )
    }

    /// The directories whose latest job is lost, oldest first.
    pub fn lost(&self) -> Result<Vec<Generation>> {
        self.select(
            "g WHERE state = 'lost' AND id = (SELECT MAX(id) FROM generations h WHERE h.dir = g.dir) ORDER BY id",
            &[],
        )
    }

    /// The latest generation of every directory, by directory name.
    pub fn latest_per_dir(&self) -> Result<Vec<Generation>> {
        self.select(
            "g WHERE id = (SELECT MAX(id) FROM generations h WHERE h.dir = g.dir) ORDER BY dir",
            &[],
        )
    }

    pub(super) fn select(&self, tail: &str, p: &[Arg]) -> Result<Vec<Generation>> {
        let q = format!("SELECT {COLUMNS} FROM generations {tail}");
        self.rows(&q, p, "cannot read")?
            .iter()
            .map(row_to_gen)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(self.sql("cannot read"))
    }
}
