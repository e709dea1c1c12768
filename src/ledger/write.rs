//! The ledger's writes to the generations: intents before `sbatch`, the answers and ends of jobs, the
//! effects done, an operator's cancel, retry and forget — each one committed transaction, made before
//! the action that depends on it.
//!
//! Must never hold a transaction open across a child process, or decide anything (the engine does).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use super::outbox::NewNotice;
use super::sql::{Arg, args};
use super::tx::{Said, Tx};
use super::{Ledger, Result, i, intent_err};
use crate::engine::{GenState, Generation, JobDetail, ReadyIdentity};
use crate::time::Millis;

/// The end of a job, as the daemon records it.
#[derive(Debug, Clone)]
pub struct EndRecord<'a> {
    /// Completed or Failed.
    pub state: GenState,
    /// Scheduler state word.
    pub final_state: &'a str,
    /// `code:signal`.
    pub exit_code: &'a str,
    /// The directory must still be deleted.
    pub delete_pending: bool,
    /// The failure-log line must still be appended.
    pub failure_log_pending: bool,
    /// Queue another attempt, not before this time.
    pub retry_at: Option<Millis>,
    /// Reason, nodes, run time.
    pub detail: &'a JobDetail,
    /// Notices of the end, queued in the same transaction.
    pub notices: &'a [NewNotice<'a>],
}

/// What a new generation record holds before it gets an id and a key.
#[derive(Debug, Clone)]
pub struct NewGeneration<'a> {
    /// Directory name (one component of the root).
    pub dir: &'a OsStr,
    /// The ready-file identity that made this generation.
    pub ready: ReadyIdentity,
    /// `(st_dev, st_ino)` of the directory, checked again before deleting it.
    pub dir_dev_ino: Option<(u64, u64)>,
    /// 1 for the first job of a generation.
    pub attempt: u32,
    /// Job name given to the scheduler.
    pub job_name: &'a str,
    /// Not before this time may `sbatch` run.
    pub not_before: Millis,
}

impl<'a> NewGeneration<'a> {
    /// The next attempt for the same directory generation, due at `not_before`.
    pub fn next_attempt_of(g: &'a Generation, not_before: Millis) -> Self {
        NewGeneration {
            dir: &g.dir,
            ready: g.ready,
            dir_dev_ino: g.dir_dev_ino,
            attempt: g.attempt + 1,
            job_name: &g.job_name,
            not_before,
        }
    }
}

/// A generation rebuilt from Slurm's accounting (`recover`): its directory, its ready-file as it is now, and
/// its latest job.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// Directory name.
    pub dir: OsString,
    /// The ready-file now (its job was submitted after it was last changed).
    pub ready: ReadyIdentity,
    /// The directory's identity.
    pub dir_dev_ino: Option<(u64, u64)>,
    /// Completed, failed, or submitted (in flight).
    pub state: GenState,
    /// How many jobs accounting shows for the directory.
    pub attempt: u32,
    /// The job's comment when it is one of our keys (else a key made for it).
    pub key: String,
    /// The job's name.
    pub job_name: String,
    /// Job id.
    pub job_id: String,
    /// Submit time (wall ms).
    pub submitted_at: Millis,
    /// End time, for a finished job.
    pub finished_at: Option<Millis>,
    /// Slurm's final state, for a finished job.
    pub final_state: Option<String>,
    /// `code:signal`.
    pub exit_code: String,
    /// What explains the end.
    pub detail: JobDetail,
}

fn insert_row(
    tx: &Tx<'_>,
    new: &NewGeneration<'_>,
    now: Millis,
    what: &'static str,
) -> Result<i64> {
    let NewGeneration {
        dir,
        ready,
        dir_dev_ino,
        attempt,
        job_name,
        not_before,
    } = *new;
    let placeholder = format!("pending-{now}-{}-{}", std::process::id(), attempt);
    tx.execute(
        "INSERT INTO generations (dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, dir_dev, dir_ino, state,
             attempt, submit_key, job_name, created_at, next_try_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'submitting', ?8, ?9, ?10, ?11, ?12, ?11)",
        args![
            dir.as_bytes(),
            i(ready.dev),
            i(ready.ino),
            i(ready.size),
            ready.mtime_ns,
            dir_dev_ino.map(|d| i(d.0)),
            dir_dev_ino.map(|d| i(d.1)),
            attempt,
            placeholder,
            job_name,
            now,
            not_before,
        ],
        what,
    )?;
    let id = tx.last_insert_id();
    // The key is unique across ledgers (instance id) and within one (row id).
    tx.execute(
        "UPDATE generations SET submit_key = ?1 WHERE id = ?2",
        args![format!("dw-{}-{id}", tx.instance()), id],
        what,
    )?;
    Ok(id)
}

impl Tx<'_> {
    /// Inserts a new generation record with its key ([`insert_row`]); returns its id. The one-intent index
    /// refusing it means a second writer got in ([`LedgerError::DoubleIntent`](super::LedgerError)).
    pub(super) fn intent(
        &self,
        new: &NewGeneration<'_>,
        now: Millis,
        what: &'static str,
    ) -> Result<i64> {
        insert_row(self, new, now, what).map_err(intent_err(self.path()))
    }
}

impl Ledger {
    /// Commits the intents of one scan in one transaction (one fsync for all of them), each before its
    /// `sbatch`. Returns the new records, in order.
    pub fn insert_intents(
        &mut self,
        news: &[NewGeneration<'_>],
        now: Millis,
    ) -> Result<Vec<Generation>> {
        let ids = self.write(Said::commit("cannot commit the intents"), |tx| {
            let mut ids = Vec::with_capacity(news.len());
            for new in news {
                ids.push(tx.intent(new, now, "cannot record the intent")?);
            }
            Ok(ids)
        })?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.extend(self.get(id)?);
        }
        Ok(out)
    }

    /// [`Ledger::mark_sbatch_started`] for several records in one transaction: the ones handed to a batch
    /// of concurrent `sbatch` calls. Returns, for each id, whether it was still waiting (an operator may
    /// have cancelled or forgotten it since the cycle read it: then no `sbatch` may run for it).
    pub fn mark_sbatch_started_many(&mut self, ids: &[i64], now: Millis) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let what = "cannot record the submission attempts";
        self.write(Said::all(what), |tx| {
            let mut marked = Vec::with_capacity(ids.len());
            for id in ids {
                // Submitted alone from here: an array it was in before (never answered, cleared by a key
                // lookup) is no longer its; [`Ledger::assign_arrays`] gives it a new one.
                let n = tx.execute(
                    "UPDATE generations SET uncertain = 1, submit_tries = submit_tries + 1, updated_at = ?2,
                         array_key = NULL, array_task = NULL, array_name = NULL
                         WHERE id = ?1 AND state = 'submitting'",
                    args![*id, now],
                    what,
                )?;
                marked.push(n == 1);
            }
            Ok(marked)
        })
    }

    /// Commits, in one transaction and before their `sbatch --array`, the job arrays a chunk of records
    /// just marked started goes in: each group becomes one array, its records task 0, 1, … in order, all
    /// with the array's key and job name (each record keeps its directory's own) (`<prefix>-array-<first id>-<try>`, the key
    /// `dw-<ledger>-a<first id>-<try>`: a new one for each try of the first record, so an array that was
    /// never answered and cleared is never confused with the next). Returns each array's key and name.
    pub fn assign_arrays(
        &mut self,
        groups: &[Vec<i64>],
        prefix: &str,
        now: Millis,
    ) -> Result<Vec<(String, String)>> {
        let what = "cannot record the job arrays";
        self.write(Said::all(what), |tx| {
            let mut out = Vec::with_capacity(groups.len());
            for ids in groups {
                let Some(&first) = ids.first() else {
                    out.push((String::new(), String::new()));
                    continue;
                };
                let tries: i64 = match tx
                    .query(
                        "SELECT submit_tries FROM generations WHERE id = ?1",
                        args![first],
                        what,
                    )?
                    .first()
                {
                    Some(r) => r.get(0).map_err(tx.sql(what))?,
                    None => 0,
                };
                let key = format!("dw-{}-a{first}-{tries}", tx.instance());
                let name = format!("{prefix}-array-{first}-{tries}");
                for (task, id) in ids.iter().enumerate() {
                    tx.execute(
                        "UPDATE generations SET array_key = ?1, array_task = ?2, array_name = ?3, updated_at = ?5
                             WHERE id = ?4 AND state = 'submitting'",
                        args![key.as_str(), task as i64, name.as_str(), *id, now],
                        what,
                    )?;
                }
                out.push((key, name));
            }
            Ok(out)
        })
    }

    /// Undoes [`Ledger::mark_sbatch_started_many`] for records whose `sbatch` never started (a stop or a
    /// failure ended the batch first): no job can exist for them, so no key lookup is needed.
    pub fn unmark_sbatch_started(&mut self, ids: &[i64], now: Millis) -> Result<()> {
        self.each_in_one_transaction(
            ids,
            "UPDATE generations SET uncertain = 0,
                 submit_tries = CASE WHEN submit_tries > 0 THEN submit_tries - 1 ELSE 0 END, updated_at = ?2
                 WHERE id = ?1 AND state = 'submitting'",
            now,
            "cannot record the submissions that did not start",
        )
    }

    fn each_in_one_transaction(
        &mut self,
        ids: &[i64],
        stmt: &str,
        now: Millis,
        what: &'static str,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.write(Said::all(what), |tx| {
            for id in ids {
                tx.execute(stmt, args![*id, now], what)?;
            }
            Ok(())
        })
    }

    /// Commits the intent to submit a new job, before `sbatch` is called. Returns the new record.
    pub fn insert_intent(&mut self, new: &NewGeneration<'_>, now: Millis) -> Result<Generation> {
        let id = self.write(Said::commit("cannot commit the intent"), |tx| {
            tx.intent(new, now, "cannot record the intent")
        })?;
        self.get(id).map(|g| g.expect("row just inserted"))
    }

    /// Records generations rebuilt from Slurm's accounting (`recover`), in one transaction; a directory
    /// that has a record already keeps it (as does a key the ledger holds). Returns, per row, whether it
    /// was recorded.
    pub fn insert_recovered(&mut self, rows: &[Recovered], now: Millis) -> Result<Vec<bool>> {
        let what = "cannot record the recovered jobs";
        self.write(Said::all(what), |tx| {
            let mut done = Vec::with_capacity(rows.len());
            for r in rows {
                let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
                let n = tx.execute(
                    "INSERT OR IGNORE INTO generations (dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, dir_dev,
                         dir_ino, state, attempt, submit_key, job_id, job_name, created_at, submitted_at,
                         finished_at, final_state, exit_code, updated_at, seen_at, reason, nodes, elapsed_sec)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15, ?16, ?17,
                         ?17, ?18, ?19, ?20
                     WHERE NOT EXISTS (SELECT 1 FROM generations WHERE dir = ?1)",
                    args![
                        r.dir.as_bytes(),
                        i(r.ready.dev),
                        i(r.ready.ino),
                        i(r.ready.size),
                        r.ready.mtime_ns,
                        r.dir_dev_ino.map(|d| i(d.0)),
                        r.dir_dev_ino.map(|d| i(d.1)),
                        r.state.as_str(),
                        r.attempt,
                        &r.key,
                        &r.job_id,
                        &r.job_name,
                        r.submitted_at,
                        r.finished_at,
                        r.final_state.clone(),
                        text(&r.exit_code),
                        now,
                        text(&r.detail.reason),
                        text(&r.detail.nodes),
                        r.detail.elapsed_sec.map(i),
                    ],
                    what,
                )?;
                done.push(n == 1);
            }
            Ok(done)
        })
    }

    /// Marks that `sbatch` is about to run for `id`: until its answer is recorded, the outcome is uncertain.
    /// Returns false when the record is no longer waiting for a job (an operator cancelled or forgot it
    /// since the cycle read it): then `sbatch` must not run.
    pub fn mark_sbatch_started(&self, id: i64, now: Millis) -> Result<bool> {
        Ok(self.run(
            "UPDATE generations SET uncertain = 1, submit_tries = submit_tries + 1, updated_at = ?2,
                 array_key = NULL, array_task = NULL, array_name = NULL
                 WHERE id = ?1 AND state = 'submitting'",
            args![id, now],
            "cannot record the submission attempt",
        )? == 1)
    }

    /// Records the job id of a submission (fresh or adopted after a lookup), with its notices.
    pub fn record_submitted(
        &mut self,
        id: i64,
        job_id: &str,
        notices: &[NewNotice<'_>],
        now: Millis,
    ) -> Result<()> {
        self.transition(
            "UPDATE generations SET state = 'submitted', job_id = ?2, submitted_at = ?3, uncertain = 0,
                 last_error = NULL, updated_at = ?3 WHERE id = ?1 AND state = 'submitting'",
            args![id, job_id, now],
            (id, notices, now),
            "cannot record the job id",
        )
        .map(|_| ())
    }

    /// One guarded transition of record `id` (`update`, which names the state it must be in) and, only
    /// if it took place, the notices of its event — in one transaction. Returns whether it took place.
    fn transition(
        &mut self,
        update: &str,
        p: &[Arg],
        (id, notices, now): (i64, &[NewNotice<'_>], Millis),
        what: &'static str,
    ) -> Result<bool> {
        self.write(Said::all(what), |tx| {
            let changed = tx.execute(update, p, what)? > 0;
            if changed {
                tx.notices(Some(id), notices, now)?;
            }
            Ok(changed)
        })
    }

    /// [`Ledger::record_submitted`] for the answers of one batch of `sbatch` calls, each with its notices,
    /// in one transaction.
    pub fn record_submitted_many(
        &mut self,
        done: &[(i64, &str, Vec<NewNotice<'_>>)],
        now: Millis,
    ) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let what = "cannot record the job ids";
        self.write(Said::all(what), |tx| {
            for (id, job, notices) in done {
                let n = tx.execute(
                    "UPDATE generations SET state = 'submitted', job_id = ?2, submitted_at = ?3, uncertain = 0,
                         last_error = NULL, updated_at = ?3 WHERE id = ?1 AND state = 'submitting'",
                    args![*id, *job, now],
                    what,
                )?;
                if n > 0 {
                    tx.notices(Some(*id), notices, now)?;
                }
            }
            Ok(())
        })
    }

    /// Records a submission that failed. `certain` = the scheduler said no (no job can exist); otherwise
    /// the record stays uncertain and the key is looked up before the next try.
    pub fn record_submit_failed(
        &self,
        id: i64,
        error: &str,
        certain: bool,
        next_try_at: Millis,
        now: Millis,
    ) -> Result<()> {
        self.exec(
            "UPDATE generations SET last_error = ?2, uncertain = CASE WHEN ?3 THEN 0 ELSE 1 END,
                 next_try_at = ?4, updated_at = ?5 WHERE id = ?1",
            args![id, error, certain, next_try_at, now],
            "cannot record the failed submission",
        )
    }

    /// Makes every waiting intent whose last `sbatch` was refused (not an uncertain one) due at `now`: after
    /// a reload that may have fixed the config they need not sit out their back-off. `updated_at` is left
    /// alone (it still says when the last refusal happened). Returns how many records were moved.
    pub fn make_refused_due(&self, now: Millis) -> Result<usize> {
        self.run(
            "UPDATE generations SET next_try_at = ?1
                 WHERE state = 'submitting' AND uncertain = 0 AND last_error IS NOT NULL AND next_try_at > ?1",
            args![now],
            "cannot make the refused submissions due",
        )
    }

    /// Records that a key lookup found no job: the next `sbatch` is safe.
    pub fn record_lookup_empty(&self, id: i64, now: Millis) -> Result<()> {
        self.exec(
            "UPDATE generations SET uncertain = 0, updated_at = ?2 WHERE id = ?1",
            args![id, now],
            "cannot record the lookup",
        )
    }

    /// Records a final state, with the effects still to do flagged, and (when the policy asks for one) the
    /// next attempt as a new generation record, all in one transaction.
    pub fn record_end(
        &mut self,
        g: &Generation,
        end: &EndRecord<'_>,
        now: Millis,
    ) -> Result<Option<i64>> {
        self.write(Said::commit("cannot commit the job's end"), |tx| {
            let d = end.detail;
            let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
            let changed = tx.execute(
                "UPDATE generations SET state = ?2, final_state = ?3, exit_code = ?4, delete_pending = ?5,
                 failure_log_pending = ?6, finished_at = ?7, updated_at = ?7, reason = ?8, nodes = ?9,
                 elapsed_sec = ?10 WHERE id = ?1 AND state IN ('submitting', 'submitted')",
                args![g.id, end.state.as_str(), end.final_state, end.exit_code, end.delete_pending,
                    end.failure_log_pending, now, text(&d.reason), text(&d.nodes), d.elapsed_sec.map(i)],
                "cannot record the job's end",
            )?;
            if changed == 0 {
                // Already ended (an operator's `cancel` recorded it first): one outcome, no second retry.
                // The transaction changed nothing: committing it is the same as rolling it back.
                return Ok(None);
            }
            tx.notices(Some(g.id), end.notices, now)?;
            let retry = match end.retry_at {
                Some(at) => Some(tx.intent(
                    &NewGeneration {
                        not_before: at,
                        ..NewGeneration::next_attempt_of(g, at)
                    },
                    now,
                    "cannot record the retry",
                )?),
                None => None,
            };
            Ok(retry)
        })
    }

    /// Records that a scheduler source showed these jobs at `now` (one statement for all of them).
    pub fn record_seen(&self, ids: &[i64], now: Millis) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // The ids are the ledger's own integers, never input.
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        self.exec(
            &format!(
                "UPDATE generations SET seen_at = ?1 WHERE state = 'submitted' AND id IN ({})",
                list.join(",")
            ),
            args![now],
            "cannot record which jobs were seen",
        )
    }

    /// Records that no source has shown the job for too long: it is followed no more. With its notices.
    pub fn record_lost(&mut self, id: i64, notices: &[NewNotice<'_>], now: Millis) -> Result<()> {
        self.transition(
            "UPDATE generations SET state = 'lost', finished_at = ?2, updated_at = ?2
                 WHERE id = ?1 AND state = 'submitted'",
            args![id, now],
            (id, notices, now),
            "cannot record the lost job",
        )
        .map(|_| ())
    }

    /// Records that an operator cancelled `id` (`dirwatcher cancel`): its job was `scancel`led, or it had no
    /// job yet and never will. Final like any failure, with `final_state` saying who ended it and the exit
    /// code of a job ended by SIGTERM (`0:15`, as Slurm and the local runner report it); the failure-log
    /// line is due only when a job existed. Returns false when the record was no longer waiting
    /// (the daemon recorded its end first, or an `sbatch` for it is running right now).
    pub fn record_cancelled(
        &mut self,
        id: i64,
        final_state: &str,
        notices: &[NewNotice<'_>],
        now: Millis,
    ) -> Result<bool> {
        // Told only when this was the end: a job that had ended already was told of its own end.
        self.transition(
            "UPDATE generations SET state = 'failed', final_state = ?2, uncertain = 0,
                 exit_code = CASE WHEN job_id IS NULL THEN NULL ELSE '0:15' END,
                 failure_log_pending = (job_id IS NOT NULL), finished_at = ?3, updated_at = ?3
             WHERE id = ?1 AND (state = 'submitted' OR (state = 'submitting' AND uncertain = 0))",
            args![id, final_state, now],
            (id, notices, now),
            "cannot record the cancellation",
        )
    }

    /// Commits an operator's cancel of `id` before its job is signalled: from now on an end `CANCELLED` of
    /// that job is the operator's (`cancel_requested`). False when the record is not in flight.
    pub fn request_cancel(&self, id: i64, operator: &str, now: Millis) -> Result<bool> {
        // `REPLACE` (both databases' word): a second cancel of the same job takes the place of the first.
        // MariaDB counts a replaced row twice (deleted, inserted): any count means it is in flight.
        Ok(self.run(
            "REPLACE INTO cancel_requests(gen_id, operator, at)
                 SELECT id, ?2, ?3 FROM generations WHERE id = ?1 AND state = 'submitted'",
            args![id, operator, now],
            "cannot record the cancel request",
        )? >= 1)
    }

    /// Takes back a cancel request whose signal could not be sent: the job runs on and its end is its own.
    pub fn withdraw_cancel(&self, id: i64) -> Result<()> {
        self.exec(
            "DELETE FROM cancel_requests WHERE gen_id = ?1",
            args![id],
            "cannot withdraw the cancel request",
        )
    }

    /// The operator who asked to cancel `id`, if one did.
    pub fn cancel_requested(&self, id: i64) -> Result<Option<String>> {
        let what = "cannot read the cancel requests";
        self.row(
            "SELECT operator FROM cancel_requests WHERE gen_id = ?1",
            args![id],
            what,
        )?
        .map(|r| r.get(0))
        .transpose()
        .map_err(self.sql(what))
    }

    /// Removes a queued attempt that was never handed to the scheduler (no `sbatch` ever ran for it, none
    /// may be running): an accidental `retry` undone. Returns false when it is no longer such a record.
    pub fn drop_unsubmitted(&self, id: i64) -> Result<bool> {
        Ok(self.run(
            "DELETE FROM generations WHERE id = ?1 AND state = 'submitting' AND uncertain = 0
                 AND submit_tries = 0 AND attempt > 1",
            args![id],
            "cannot remove the queued attempt",
        )? == 1)
    }

    /// Queues a new attempt for a finished generation (operator `retry`). Returns the new record id.
    pub fn requeue(&mut self, g: &Generation, now: Millis) -> Result<i64> {
        self.insert_intent(&NewGeneration::next_attempt_of(g, now), now)
            .map(|g| g.id)
    }

    /// Clears the failure-log flag after the line was appended.
    pub fn record_failure_logged(&self, id: i64, now: Millis) -> Result<()> {
        self.exec(
            "UPDATE generations SET failure_log_pending = 0, updated_at = ?2 WHERE id = ?1",
            args![id, now],
            "cannot record the failure-log line",
        )
    }

    /// Records the outcome of a cleanup: deleted, or refused/failed with the reason.
    pub fn record_cleanup(
        &self,
        id: i64,
        deleted: bool,
        error: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        self.exec(
            "UPDATE generations SET delete_pending = 0, deleted = ?2, last_error = COALESCE(?3, last_error),
                 updated_at = ?4 WHERE id = ?1",
            args![id, deleted, error, now],
            "cannot record the cleanup",
        )
    }

    /// Removes every record of `dir`; returns how many there were. Nothing is removed (0) while a job of it
    /// is in flight or an `sbatch` for it may be running — checked in the same statement, so a daemon
    /// submitting at that moment cannot slip between check and delete. A queued intent that no `sbatch`
    /// has touched yet may go.
    pub fn forget(&self, dir: &OsStr) -> Result<usize> {
        self.run(
            "DELETE FROM generations WHERE dir = ?1 AND NOT EXISTS (SELECT 1 FROM generations h
                 WHERE h.dir = ?1 AND (h.state = 'submitted' OR (h.state = 'submitting' AND h.uncertain = 1)))",
            args![dir.as_bytes()],
            "cannot forget",
        )
    }
}
