//! The controller's lines remembered between answers, so that 20,000 jobs pending or running cost a query
//! round what changed: a job whose `squeue` line the engine called steady ([`judge::steady`]: ours, one
//! row, active) is remembered by its line; the same line in the next answer (its run time aside, which
//! moves every second while it runs) is reported as steady instead of parsed, and the daemon does not
//! judge it again ([`Judgement::steady`]). Any other line is parsed and reported as a row, as before.
//!
//! Must never: call a job steady whose line differs (in anything but its run time) from one the engine
//! called steady for the same key, or that has two lines in one answer. Steadiness is a property of the
//! line and the key alone, so a memo that missed rounds (a failed `squeue`) is still right; it keeps only
//! the jobs listed once in the last answer read whole, so it never outgrows the jobs in flight.
//!
//! [`judge::steady`]: crate::engine::judge::steady
//! [`Judgement::steady`]: crate::engine::judge::Judgement::steady

use super::parse::{
    ArrayOf, SQUEUE_TIME_USED, array_record, parse_squeue_line, record_holds, split_job_id,
    squeue_line_id,
};
use crate::engine::judge;
use crate::engine::{JobRow, TrackedJob};

/// The steady lines of the last answer, by job id (as the ledger stores it).
#[derive(Debug, Default)]
pub struct Memo {
    lines: foldhash::HashMap<String, Remembered>,
}

#[derive(Debug)]
struct Remembered {
    line: Box<str>,
    key: Box<str>,
}

/// One round's reading of the controller's answers (one or more `squeue` calls) against a [`Memo`].
#[derive(Debug)]
pub struct Reading<'j> {
    jobs: &'j [TrackedJob],
    index: foldhash::HashMap<&'j str, usize>,
    /// Array tasks asked about, by their array's job id and cluster: (task index, job index). A record of
    /// tasks not yet started (`1234_[6-999]`) is one line for all of them.
    tasks: foldhash::HashMap<ArrayOf<'j>, Vec<(u64, usize)>>,
    /// Rows parsed, with the index of their job and, for a steady one, its line.
    rows: Vec<(usize, JobRow, Option<Box<str>>)>,
    /// Jobs whose line matched the memo.
    steady: Vec<usize>,
    /// Lines seen per job in this round.
    listed: Vec<u8>,
}

impl<'j> Reading<'j> {
    /// A reading of answers about `jobs`.
    pub fn new(jobs: &'j [TrackedJob]) -> Self {
        let mut tasks: foldhash::HashMap<_, Vec<(u64, usize)>> = Default::default();
        for (i, j) in jobs.iter().enumerate() {
            let (plain, cluster) = split_job_id(&j.job_id);
            if let Some((a, t)) = plain.split_once('_')
                && let Ok(t) = t.parse()
            {
                tasks.entry((a, cluster)).or_default().push((t, i));
            }
        }
        Reading {
            jobs,
            index: jobs
                .iter()
                .enumerate()
                .map(|(i, j)| (j.job_id.as_str(), i))
                .collect(),
            tasks,
            rows: Vec::new(),
            steady: Vec::new(),
            listed: vec![0; jobs.len()],
        }
    }

    /// Reads one `squeue -O <SQUEUE_FIELDS>` answer of `cluster`: lines of jobs not asked about cost a
    /// look at their first field; an array's record of tasks not yet started is parsed once, and stands
    /// for each task asked about that it holds.
    pub fn read(&mut self, stdout: &str, cluster: Option<&str>, memo: &Memo) {
        for line in stdout.lines() {
            let plain = squeue_line_id(line);
            let full;
            let id = match cluster {
                Some(c) => {
                    full = format!("{plain};{c}");
                    full.as_str()
                }
                None => plain,
            };
            if let Some(&i) = self.index.get(id) {
                self.take(i, line, cluster, memo, &mut None);
                continue;
            }
            let Some((a, spec)) = array_record(plain) else {
                continue;
            };
            let Some(members) = self.tasks.get(&(a, cluster)) else {
                continue;
            };
            let members: Vec<usize> = members
                .iter()
                .filter(|(t, _)| record_holds(spec, *t))
                .map(|(_, i)| *i)
                .collect();
            let mut parsed = None;
            for i in members {
                self.take(i, line, cluster, memo, &mut parsed);
            }
        }
    }

    /// One line about job `i`: steady if the memo holds it for the job's key, else parsed (once per line,
    /// kept in `parsed` for the other tasks of an array record) and reported with the job's own id.
    fn take(
        &mut self,
        i: usize,
        line: &str,
        cluster: Option<&str>,
        memo: &Memo,
        parsed: &mut Option<Option<JobRow>>,
    ) {
        self.listed[i] = self.listed[i].saturating_add(1);
        let job = &self.jobs[i];
        if memo
            .lines
            .get(job.job_id.as_str())
            .is_some_and(|m| *m.key == *job.key && same_but_time_used(&m.line, line))
        {
            self.steady.push(i);
            return;
        }
        let Some(row) = parsed.get_or_insert_with(|| parse_squeue_line(line, cluster)) else {
            return;
        };
        let row = if row.job_id == job.job_id {
            row.clone()
        } else {
            JobRow {
                job_id: job.job_id.clone(),
                ..row.clone()
            }
        };
        let keep = judge::steady(job, &[&row]).then(|| Box::<str>::from(line));
        self.rows.push((i, row, keep));
    }

    /// Whether job `i` had a line in any answer read so far.
    pub fn listed(&self, i: usize) -> bool {
        self.listed[i] > 0
    }

    /// The rows parsed and the jobs steady, with `memo` updated for the next round: it keeps the steady
    /// lines of this round only.
    pub fn finish(self, memo: &mut Memo) -> (Vec<JobRow>, Vec<usize>) {
        let Reading {
            jobs,
            index,
            tasks: _,
            rows,
            steady,
            listed,
        } = self;
        let once = |i: usize| listed[i] == 1;
        let mut out = Vec::with_capacity(rows.len());
        // A job with two lines in one answer is never steady: a line it matched is parsed again from the
        // memo, so its row is reported with the other.
        let mut still = Vec::with_capacity(steady.len());
        for i in steady {
            let id = jobs[i].job_id.as_str();
            if once(i) {
                still.push(i);
            } else if let Some(m) = memo.lines.get(id) {
                let cluster = id.split_once(';').map(|(_, c)| c);
                // An array record's line carries the array's id: the row is the task's.
                out.extend(parse_squeue_line(&m.line, cluster).map(|r| JobRow {
                    job_id: id.to_string(),
                    ..r
                }));
            }
        }
        for (i, row, keep) in rows {
            let id = &jobs[i].job_id;
            match keep {
                Some(line) if once(i) => {
                    let key = jobs[i].key.as_str().into();
                    memo.lines.insert(id.clone(), Remembered { line, key });
                }
                _ => {
                    memo.lines.remove(id.as_str());
                }
            }
            out.push(row);
        }
        // Jobs listed twice or not at all, and jobs no longer asked about, are forgotten.
        memo.lines
            .retain(|id, _| index.get(id.as_str()).is_some_and(|&i| listed[i] == 1));
        (out, still)
    }
}

/// Whether two lines are the same but for the run time.
fn same_but_time_used(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (mut fa, mut fb) = (a.split('|'), b.split('|'));
    let mut k = 0;
    loop {
        match (fa.next(), fb.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y || k == SQUEUE_TIME_USED => {}
            _ => return false,
        }
        k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, key: &str) -> TrackedJob {
        TrackedJob {
            job_id: id.into(),
            key: key.into(),
            job_name: "dw-a".into(),
            since: 1_700_000_000_000,
        }
    }

    /// A line as `squeue -O <SQUEUE_FIELDS>` prints it (`SLURM_TIME_FORMAT=%s`).
    fn line(id: &str, state: &str, used: &str, key: &str) -> String {
        format!("{id}|1700000001|Unknown|{state}|0|1|{used}|(null)|JobHeldUser|{key}|dw-a|")
    }

    fn round(memo: &mut Memo, jobs: &[TrackedJob], answers: &[&str]) -> (Vec<String>, Vec<usize>) {
        let mut r = Reading::new(jobs);
        for a in answers {
            r.read(a, None, memo);
        }
        let (rows, steady) = r.finish(memo);
        (
            rows.into_iter()
                .map(|r| format!("{} {}", r.job_id, r.state))
                .collect(),
            steady,
        )
    }

    /// The controller keeps an array's tasks that have not started as one line (`5_[0-2,4]`): parsed once,
    /// it stands for each task asked about that it holds, and, unchanged, is steady for each of them; a
    /// task it no longer holds is reported from its own line.
    #[test]
    fn an_arrays_record_of_waiting_tasks_stands_for_each_task_it_holds() {
        let jobs = [
            job("5_0", "ka"),
            job("5_3", "ka"),
            job("5_4", "ka"),
            job("9", "k9"),
        ];
        let mut memo = Memo::default();
        let a = format!(
            "{}\n{}\n",
            line("5_[0-2,4]", "PENDING", "0:00", "ka"),
            line("5_3", "RUNNING", "0:01", "ka")
        );
        let (rows, steady) = round(&mut memo, &jobs, &[&a]);
        assert_eq!(rows, ["5_0 PENDING", "5_4 PENDING", "5_3 RUNNING"]);
        assert!(steady.is_empty());
        let (rows, steady) = round(&mut memo, &jobs, &[&a]);
        assert!(rows.is_empty(), "{rows:?}");
        assert_eq!(steady, [0, 2, 1]);
        // Task 0 started: the record changed (parsed again, once) and task 0 has its own line.
        let b = format!(
            "{}\n{}\n{}\n",
            line("5_[1-2,4]", "PENDING", "0:00", "ka"),
            line("5_0", "RUNNING", "0:00", "ka"),
            line("5_3", "RUNNING", "0:02", "ka")
        );
        let (rows, steady) = round(&mut memo, &jobs, &[&b]);
        assert_eq!(rows, ["5_4 PENDING", "5_0 RUNNING"]);
        assert_eq!(steady, [1]);
        // Another array's record, or another key, is no row of these tasks.
        let c = line("6_[0-9]", "PENDING", "0:00", "ka");
        let (rows, _) = round(&mut Memo::default(), &jobs, &[&c]);
        assert!(rows.is_empty(), "{rows:?}");
    }

    #[test]
    fn an_unchanged_line_of_an_active_job_of_ours_is_steady_from_the_second_answer() {
        let jobs = [job("7", "k7"), job("8", "k8")];
        let mut memo = Memo::default();
        let a = format!(
            "{}\n{}\n",
            line("7", "PENDING", "0:00", "k7"),
            line("8", "RUNNING", "0:05", "k8")
        );
        assert_eq!(
            round(&mut memo, &jobs, &[&a]),
            (vec!["7 PENDING".into(), "8 RUNNING".into()], vec![])
        );
        // The run time moves; nothing else does.
        let b = format!(
            "{}\n{}\n",
            line("7", "PENDING", "0:00", "k7"),
            line("8", "RUNNING", "0:10", "k8")
        );
        assert_eq!(round(&mut memo, &jobs, &[&b]), (vec![], vec![0, 1]));
        assert_eq!(round(&mut memo, &jobs, &[&b]), (vec![], vec![0, 1]));
    }

    #[test]
    fn a_changed_state_a_final_one_another_key_or_a_stranger_is_parsed() {
        let jobs = [job("7", "k7")];
        let mut memo = Memo::default();
        round(&mut memo, &jobs, &[&line("7", "PENDING", "0:00", "k7")]);
        // Completed: parsed, and not remembered (a final row is not steady).
        let done = line("7", "COMPLETED", "0:00", "k7");
        assert_eq!(
            round(&mut memo, &jobs, &[&done]),
            (vec!["7 COMPLETED".into()], vec![])
        );
        assert_eq!(
            round(&mut memo, &jobs, &[&done]),
            (vec!["7 COMPLETED".into()], vec![])
        );
        // A NODE_FAIL that may be requeued becomes final with time: never steady.
        let failed = line("7", "NODE_FAIL", "0:00", "k7");
        round(&mut memo, &jobs, &[&failed]);
        assert_eq!(round(&mut memo, &jobs, &[&failed]).1, Vec::<usize>::new());
        // Remembered for key k7; the same line asked about for another record (key k9) is parsed.
        let pending = line("7", "PENDING", "0:00", "k7");
        round(&mut memo, &jobs, &[&pending]);
        let other = [job("7", "k9")];
        assert_eq!(
            round(&mut memo, &other, &[&pending]),
            (vec!["7 PENDING".into()], vec![])
        );
        // A stranger's line with our id (comment of another key) is never steady.
        let stranger = line("7", "PENDING", "0:00", "kx");
        round(&mut memo, &jobs, &[&stranger]);
        assert_eq!(round(&mut memo, &jobs, &[&stranger]).1, Vec::<usize>::new());
    }

    #[test]
    fn a_job_missing_from_one_answer_or_listed_twice_is_parsed_again() {
        let jobs = [job("7", "k7")];
        let mut memo = Memo::default();
        let pending = line("7", "PENDING", "0:00", "k7");
        round(&mut memo, &jobs, &[&pending]);
        assert_eq!(round(&mut memo, &jobs, &[""]), (vec![], vec![]));
        assert_eq!(
            round(&mut memo, &jobs, &[&pending]),
            (vec!["7 PENDING".into()], vec![])
        );
        // Matched in the first answer, listed again in the second: both rows are reported.
        let again = line("7", "RUNNING", "0:01", "k7");
        assert_eq!(
            round(&mut memo, &jobs, &[&pending, &again]),
            (vec!["7 PENDING".into(), "7 RUNNING".into()], vec![])
        );
        // The remembered line twice in one answer: both rows are reported, and it is forgotten.
        round(&mut memo, &jobs, &[&pending]);
        assert_eq!(
            round(&mut memo, &jobs, &[&pending, &pending]),
            (vec!["7 PENDING".into(), "7 PENDING".into()], vec![])
        );
        assert!(memo.lines.is_empty());
        // And nothing is remembered from that answer.
        assert_eq!(
            round(&mut memo, &jobs, &[&pending]),
            (vec!["7 PENDING".into()], vec![])
        );
    }

    #[test]
    fn a_job_no_longer_asked_about_is_forgotten() {
        let mut memo = Memo::default();
        round(
            &mut memo,
            &[job("7", "k7")],
            &[&line("7", "PENDING", "0:00", "k7")],
        );
        round(&mut memo, &[job("8", "k8")], &[""]);
        assert!(memo.lines.is_empty());
    }
}
