//! The controller's lines remembered between answers, so that 100,000 jobs pending or running cost a
//! query round what changed: a line on which the engine called a job steady ([`judge::steady`]: ours, one
//! row, active) is remembered by its own id, with what made it steady; the same line in the next answer
//! (its run time aside, which moves every second while it runs) is reported as steady for each job it is
//! the only line of and that it was steady for, instead of parsed, and the daemon does not judge those
//! jobs again ([`Judgement::steady`]). Any other line is parsed (once, however many jobs it stands for)
//! and reported as a row of each of its jobs, as before.
//!
//! A round costs the lines of the answers (kept, and indexed by id in small maps) and one pass over the
//! jobs that finds each job's lines without allocating: an array's record of tasks not yet started
//! (`1234_[6-999]`) is one line for all of them, and one entry of the memo.
//!
//! Must never: call a job steady whose line differs (in anything but its run time) from one on which the
//! engine called steady a job of the same key (and, the line carrying no comment, of the same name and no
//! later `since`: see [`Remembered::admits`]), or that has two lines in one answer. Steadiness is a
//! property of the line and the job alone, so a memo that missed rounds (a failed `squeue`) is still
//! right; it keeps only lines of the last answer read whole, one entry per line, so it never outgrows
//! that answer.
//!
//! [`judge::steady`]: crate::engine::judge::steady
//! [`Judgement::steady`]: crate::engine::judge::Judgement::steady

use std::ops::Range;

use super::parse::{
    SQUEUE_TIME_USED, TaskList, array_record, parse_squeue_line, split_job_id, squeue_line_id,
};
use crate::engine::judge;
use crate::engine::{JobRow, TrackedJob};
use crate::time::Millis;

/// The steady lines of the last answer, by the line's own id with its cluster, as squeue prints it
/// (`1234_[6-999]`, `1234_5`, `42;cluster`): one entry per line, however many jobs it stands for.
#[derive(Debug, Default)]
pub struct Memo {
    lines: foldhash::HashMap<Box<str>, Remembered>,
}

impl Memo {
    /// How many lines it remembers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lines.len()
    }
}

/// A steady line and the jobs it was steady for: they all had this key and name.
#[derive(Debug)]
struct Remembered {
    line: Box<str>,
    key: Box<str>,
    name: Box<str>,
    /// The latest `since` of those jobs.
    since: Millis,
    /// The line carries a comment: it made those jobs ours by their key alone.
    by_comment: bool,
}

impl Remembered {
    /// Whether `job`, whose only line is this one (but for its run time), is steady on it: what
    /// [`judge::steady`] of the line's row would say, without parsing it. That asks that the row be the
    /// controller's (every line is), active (the line's state is the one judged), and ours
    /// (`judge::identify`). With a comment, ours means comment == key: the key of a job found steady on
    /// it. Without one, ours means the same name and a submit time no earlier than `since` (less the
    /// clock's skew): the submit time is the line's, unchanged, and a job with an earlier or equal
    /// `since` passes that test whenever a later one did, so the latest `since` found steady bounds every
    /// job admitted. The key is asked for in both cases (the engine's own test does not look at it
    /// without a comment: narrower, never wider).
    fn admits(&self, job: &TrackedJob) -> bool {
        *self.key == *job.key
            && (self.by_comment || (*self.name == *job.job_name && job.since <= self.since))
    }
}

/// One round's reading of the controller's answers (one or more `squeue` calls), matched to the jobs
/// asked about and to a [`Memo`] by [`Reading::finish`].
#[derive(Debug)]
pub struct Reading<'j> {
    jobs: &'j [TrackedJob],
    /// The answers read, one after another.
    text: String,
    /// The clusters of the answers (`None` for the default one).
    clusters: Vec<Option<Box<str>>>,
    lines: Vec<Line>,
    /// The last line of each id with its cluster (`ID`, `ID_TASK`, with `;CLUSTER`), array records
    /// aside; earlier lines of the same id are chained by [`Line::next`].
    by_id: foldhash::HashMap<Box<str>, usize>,
    /// The last record of tasks not yet started of each array, by the array's job id (of any cluster);
    /// its other records are chained by [`Line::next`].
    records: foldhash::HashMap<Box<str>, usize>,
    /// Each job's lines as [`Reading::unlisted`] found them, and how many lines had been read then: while
    /// no line was read since, [`Reading::finish`] takes them from here instead of a second pass.
    found: Option<(usize, Vec<Found1>)>,
}

/// A job's lines in short: none, one (its index), or more (found again when needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found1 {
    None,
    One(u32),
    More,
}

/// One line of an answer.
#[derive(Debug)]
struct Line {
    /// Where it is in [`Reading::text`].
    span: Range<usize>,
    /// Its answer's cluster, in [`Reading::clusters`].
    cluster: usize,
    /// For an array's record, the tasks it holds: ranges sorted and apart. Empty for other lines.
    tasks: TaskList,
    /// The line read before it with the same id (or the same array's record read before it).
    next: Option<usize>,
}

impl<'j> Reading<'j> {
    /// A reading of answers about `jobs`.
    pub fn new(jobs: &'j [TrackedJob]) -> Self {
        Reading {
            jobs,
            text: String::new(),
            clusters: Vec::new(),
            lines: Vec::new(),
            by_id: Default::default(),
            records: Default::default(),
            found: None,
        }
    }

    /// Reads one `squeue -O <SQUEUE_FIELDS>` answer of `cluster`: each line is kept and indexed by its
    /// first field, and an array's record of tasks not yet started has its task list read once. Which
    /// lines are about which jobs is found by [`Reading::finish`].
    pub fn read(&mut self, stdout: &str, cluster: Option<&str>) {
        let c = match self.clusters.iter().position(|k| k.as_deref() == cluster) {
            Some(c) => c,
            None => {
                self.clusters.push(cluster.map(Into::into));
                self.clusters.len() - 1
            }
        };
        let base = self.text.len();
        self.text.push_str(stdout);
        let mut buf = String::new();
        for line in stdout.lines() {
            let plain = squeue_line_id(line);
            if plain.is_empty() {
                continue;
            }
            let (map, id, tasks) = match array_record(plain) {
                Some((a, spec)) => (&mut self.records, a, TaskList::parse(spec)),
                None => (
                    &mut self.by_id,
                    with_cluster(plain, cluster, &mut buf),
                    TaskList::default(),
                ),
            };
            let n = self.lines.len();
            let next = match map.get_mut(id) {
                Some(last) => Some(std::mem::replace(last, n)),
                None => {
                    map.insert(id.into(), n);
                    None
                }
            };
            let start = base + (line.as_ptr() as usize - stdout.as_ptr() as usize);
            self.lines.push(Line {
                span: start..start + line.len(),
                cluster: c,
                tasks,
                next,
            });
        }
    }

    /// The jobs of `cluster` that no answer read so far listed, by their id without the cluster: the
    /// ones to ask about by id. The pass finds every job's lines, kept for [`Reading::finish`].
    pub fn unlisted(&mut self, cluster: Option<&str>) -> Vec<&'j str> {
        let jobs: &'j [TrackedJob] = self.jobs;
        let mut last = None;
        let mut found = Vec::with_capacity(jobs.len());
        let mut out = Vec::new();
        for j in jobs {
            let f = self.found1(j, &mut last);
            found.push(f);
            let (id, c) = split_job_id(&j.job_id);
            if f == Found1::None && c == cluster {
                out.push(id);
            }
        }
        self.found = Some((self.lines.len(), found));
        out
    }

    /// [`Reading::lines_of`] in short.
    fn found1<'r>(
        &'r self,
        job: &'r TrackedJob,
        last: &mut Option<(&'r str, Option<usize>)>,
    ) -> Found1 {
        let mut lines = self.lines_of(job, last);
        match (lines.next(), lines.next()) {
            (None, _) => Found1::None,
            (Some(l), None) => u32::try_from(l).map_or(Found1::More, Found1::One),
            (Some(_), Some(_)) => Found1::More,
        }
    }

    /// The lines about `job`: those of its id, and the records of its array on its cluster that hold its
    /// task. `last` keeps the array looked up last, with its records: the tasks of an array come one
    /// after another in the jobs, and then cost no look-up each.
    fn lines_of<'r>(
        &'r self,
        job: &'r TrackedJob,
        last: &mut Option<(&'r str, Option<usize>)>,
    ) -> LinesOf<'r> {
        let (plain, cluster) = split_job_id(&job.job_id);
        let task = plain
            .split_once('_')
            .and_then(|(a, t)| Some((a, t.parse::<u64>().ok()?)));
        let record = task.and_then(|(a, _)| match *last {
            Some((b, r)) if a == b => r,
            _ => {
                let r = self.records.get(a).copied();
                *last = Some((a, r));
                r
            }
        });
        let own = match self.by_id.is_empty() {
            true => None,
            false => self.by_id.get(job.job_id.as_str()).copied(),
        };
        LinesOf {
            reading: self,
            own,
            record,
            task: task.map_or(0, |(_, t)| t),
            cluster,
        }
    }

    fn text_of(&self, l: usize) -> &str {
        &self.text[self.lines[l].span.clone()]
    }

    fn cluster_of(&self, l: usize) -> Option<&str> {
        self.clusters[self.lines[l].cluster].as_deref()
    }

    /// The rows parsed and the jobs steady (in the order of `jobs`), with `memo` replaced for the next
    /// round by the lines steady in this one. One pass over the jobs: a job with one line that the memo
    /// holds for it is steady; any other line of a job is parsed (once per line) and reported with the
    /// job's id, rows in the order of the lines.
    pub fn finish(self, memo: &mut Memo) -> (Vec<JobRow>, Vec<usize>) {
        let old = std::mem::take(&mut memo.lines);
        let mut slots = self.slots(&old);
        let mut rows = Vec::new();
        let mut steady = Vec::new();
        let mut last = None;
        let found = match &self.found {
            Some((n, found)) if *n == self.lines.len() => Some(found),
            _ => None,
        };
        for i in 0..self.jobs.len() {
            let job = &self.jobs[i];
            let f = match found {
                Some(found) => found[i],
                None => self.found1(job, &mut last),
            };
            match f {
                Found1::None => {}
                Found1::One(l) => {
                    let l = l as usize;
                    if self.one(i, l, &mut slots[l], &mut rows) {
                        steady.push(i);
                    }
                }
                // Listed twice: never steady, and each line is a row.
                Found1::More => {
                    for l in self.lines_of(job, &mut None) {
                        if let Some(row) = self.parsed(&mut slots[l], l) {
                            rows.push((l, i, row_of(job, row)));
                        }
                    }
                }
            }
        }
        memo.lines = self.remember(slots);
        rows.sort_unstable_by_key(|&(l, i, _)| (l, i));
        (rows.into_iter().map(|(_, _, r)| r).collect(), steady)
    }

    /// A slot per line, with the memo's entry of its id when the line is that entry's but for its run time.
    fn slots<'m>(&self, old: &'m foldhash::HashMap<Box<str>, Remembered>) -> Vec<Slot<'m, 'j>> {
        let mut buf = String::new();
        (0..self.lines.len())
            .map(|l| {
                let text = self.text_of(l);
                let id = with_cluster(squeue_line_id(text), self.cluster_of(l), &mut buf);
                Slot {
                    hit: old.get(id).filter(|m| same_but_time_used(&m.line, text)),
                    row: None,
                    steady: Steady::None,
                }
            })
            .collect()
    }

    /// Job `i` whose only line is `l`: true when the memo holds the line for it (no parse); otherwise the
    /// line's row, given the job's id, is added to `rows`. Either way a job steady on it is noted in
    /// `slot` for the next round.
    fn one(
        &self,
        i: usize,
        l: usize,
        slot: &mut Slot<'_, 'j>,
        rows: &mut Vec<(usize, usize, JobRow)>,
    ) -> bool {
        let jobs: &'j [TrackedJob] = self.jobs;
        let job = &jobs[i];
        if let Some(m) = slot.hit.filter(|m| m.admits(job)) {
            slot.steady.add(job, m.by_comment);
            return true;
        }
        let Some(row) = self.parsed(slot, l).map(|r| row_of(job, r)) else {
            return false;
        };
        if judge::steady(job, &[&row]) {
            slot.steady.add(job, !row.comment.is_empty());
        }
        rows.push((l, i, row));
        false
    }

    /// Line `l`'s row, parsed on first use.
    fn parsed<'s>(&self, slot: &'s mut Slot<'_, 'j>, l: usize) -> Option<&'s JobRow> {
        let row: &Option<JobRow> = slot.row.get_or_insert_with(|| {
            Box::new(parse_squeue_line(self.text_of(l), self.cluster_of(l)))
        });
        row.as_ref()
    }

    /// The memo of the next round: the lines on which the jobs found steady all had one key and name.
    fn remember(&self, slots: Vec<Slot<'_, 'j>>) -> foldhash::HashMap<Box<str>, Remembered> {
        let mut out: foldhash::HashMap<Box<str>, Remembered> = Default::default();
        let mut twice = Vec::new();
        let mut buf = String::new();
        for (l, slot) in slots.into_iter().enumerate() {
            let Steady::One(s) = slot.steady else {
                continue;
            };
            let text = self.text_of(l);
            let id: Box<str> =
                with_cluster(squeue_line_id(text), self.cluster_of(l), &mut buf).into();
            let m = Remembered {
                line: text.into(),
                key: s.key.into(),
                name: s.name.into(),
                since: s.since,
                by_comment: s.by_comment,
            };
            if out.insert(id.clone(), m).is_some() {
                twice.push(id);
            }
        }
        // Two lines of one id cannot both be some job's only line; were they, neither is remembered.
        for id in twice {
            out.remove(&id);
        }
        out
    }
}

/// What a round found of one line.
struct Slot<'m, 'j> {
    /// The memo's entry of its id, when the entry's line is this one but for its run time.
    hit: Option<&'m Remembered>,
    /// Its row, once parsed (`None` inside for a line that is no job's); boxed, most lines are not.
    row: Option<Box<Option<JobRow>>>,
    /// The jobs steady on it.
    steady: Steady<'j>,
}

/// The jobs found steady on one line: none, some of one key and name, or some of several.
enum Steady<'j> {
    None,
    One(Found<'j>),
    Mixed,
}

/// Jobs of one key and name found steady on a line, the latest `since` among them.
struct Found<'j> {
    key: &'j str,
    name: &'j str,
    since: Millis,
    by_comment: bool,
}

impl<'j> Steady<'j> {
    /// Notes `job` steady on the line (`by_comment`: the line carries a comment).
    fn add(&mut self, job: &'j TrackedJob, by_comment: bool) {
        match self {
            Steady::None => {
                *self = Steady::One(Found {
                    key: &job.key,
                    name: &job.job_name,
                    since: job.since,
                    by_comment,
                });
            }
            Steady::One(f) if *f.key == *job.key && *f.name == *job.job_name => {
                f.since = f.since.max(job.since);
                f.by_comment &= by_comment;
            }
            Steady::One(_) | Steady::Mixed => *self = Steady::Mixed,
        }
    }
}

/// The lines of one job (see [`Reading::lines_of`]), found without allocating.
struct LinesOf<'r> {
    reading: &'r Reading<'r>,
    own: Option<usize>,
    record: Option<usize>,
    task: u64,
    cluster: Option<&'r str>,
}

impl Iterator for LinesOf<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let lines = &self.reading.lines;
        if let Some(l) = self.own {
            self.own = lines[l].next;
            return Some(l);
        }
        while let Some(l) = self.record {
            self.record = lines[l].next;
            if self.reading.cluster_of(l) == self.cluster && lines[l].tasks.holds(self.task) {
                return Some(l);
            }
        }
        None
    }
}

/// A line's row as a row of `job` (an array's record carries the array's id).
fn row_of(job: &TrackedJob, row: &JobRow) -> JobRow {
    if row.job_id == job.job_id {
        row.clone()
    } else {
        JobRow {
            job_id: job.job_id.clone(),
            ..row.clone()
        }
    }
}

/// `id` with `cluster` as the ledger stores it (`ID;CLUSTER`), written in `buf` when there is one.
fn with_cluster<'a>(id: &'a str, cluster: Option<&str>, buf: &'a mut String) -> &'a str {
    match cluster {
        Some(c) => {
            buf.clear();
            buf.push_str(id);
            buf.push(';');
            buf.push_str(c);
            buf
        }
        None => id,
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
            r.read(a, None);
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
        assert_eq!(steady, [0, 1, 2]);
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

    /// 1,000 tasks waiting in one record: parsed once in the first round, steady for each task from the
    /// second, with one line remembered.
    #[test]
    fn a_record_of_many_tasks_is_one_line_of_the_memo() {
        let jobs: Vec<TrackedJob> = (0..1000).map(|t| job(&format!("9_{t}"), "k9")).collect();
        let mut memo = Memo::default();
        let a = line("9_[0-999%50]", "PENDING", "0:00", "k9");
        let (rows, steady) = round(&mut memo, &jobs, &[&a]);
        assert_eq!(rows.len(), 1000);
        assert_eq!(rows[999], "9_999 PENDING");
        assert!(steady.is_empty());
        assert_eq!(memo.len(), 1);
        for _ in 0..2 {
            let (rows, steady) = round(&mut memo, &jobs, &[&a]);
            assert!(rows.is_empty(), "{rows:?}");
            assert_eq!(steady, (0..1000).collect::<Vec<_>>());
            assert_eq!(memo.len(), 1);
        }
    }

    /// A task that has its own line while a record still holds it is listed twice: never steady, a row
    /// from each line; the record stays steady for the other tasks.
    #[test]
    fn a_task_with_its_own_line_and_a_record_holding_it_is_listed_twice() {
        let jobs = [job("5_0", "ka"), job("5_1", "ka"), job("5_2", "ka")];
        let mut memo = Memo::default();
        let a = format!(
            "{}\n{}\n",
            line("5_[0-2]", "PENDING", "0:00", "ka"),
            line("5_1", "RUNNING", "0:01", "ka")
        );
        let (rows, steady) = round(&mut memo, &jobs, &[&a]);
        assert_eq!(
            rows,
            ["5_0 PENDING", "5_1 PENDING", "5_2 PENDING", "5_1 RUNNING"]
        );
        assert!(steady.is_empty());
        let (rows, steady) = round(&mut memo, &jobs, &[&a]);
        assert_eq!(rows, ["5_1 PENDING", "5_1 RUNNING"]);
        assert_eq!(steady, [0, 2]);
        assert_eq!(memo.len(), 1);
    }

    /// A record of another array, or of the same array on another cluster, is no line of these tasks:
    /// they are unlisted (asked about by id next), and have no row.
    #[test]
    fn a_record_of_another_array_or_cluster_is_no_row_of_these_tasks() {
        let jobs = [
            job("5_0;c1", "ka"),
            job("5_1", "ka"),
            job("7", "k7"),
            job("8", "k8"),
        ];
        let mut r = Reading::new(&jobs);
        r.read(&line("6_[0-9]", "PENDING", "0:00", "ka"), None);
        r.read(&line("5_[0-9]", "PENDING", "0:00", "ka"), Some("c2"));
        r.read(&line("7", "PENDING", "0:00", "k7"), None);
        assert_eq!(r.unlisted(None), ["5_1", "8"]);
        assert_eq!(r.unlisted(Some("c1")), ["5_0"]);
        assert!(r.unlisted(Some("c2")).is_empty());
        r.read(&line("5_[0]", "PENDING", "0:00", "ka"), Some("c1"));
        assert!(r.unlisted(Some("c1")).is_empty());
        let (rows, steady) = r.finish(&mut Memo::default());
        let ids: Vec<&str> = rows.iter().map(|r| r.job_id.as_str()).collect();
        assert_eq!(ids, ["7", "5_0;c1"]);
        assert!(steady.is_empty());
    }

    /// A line with no comment is ours by name and submit time: a job is steady on the remembered line
    /// only with the same name and a `since` no later than one found steady on it; one with a later
    /// `since` is parsed and judged again (and, ours, moves the bound).
    #[test]
    fn without_a_comment_the_name_and_the_latest_since_found_steady_bound_the_memo() {
        let at = |id: &str, since: Millis, name: &str| TrackedJob {
            since,
            job_name: name.into(),
            ..job(id, "k5")
        };
        // The line's submit time is 1,700,000,001 s.
        let early = 1_699_999_000_000;
        let a = line("5_[0-3]", "PENDING", "0:00", "(null)");
        let mut memo = Memo::default();
        let first = [at("5_0", early, "dw-a"), at("5_1", early + 1, "dw-a")];
        round(&mut memo, &first, &[&a]);
        assert_eq!(round(&mut memo, &first, &[&a]), (vec![], vec![0, 1]));
        // Another name, a `since` after the submit (not ours), a later one still ours.
        let jobs = [
            at("5_0", early, "dw-a"),
            at("5_1", early, "dw-b"),
            at("5_2", 1_800_000_000_000, "dw-a"),
            at("5_3", early + 5, "dw-a"),
        ];
        let (rows, steady) = round(&mut memo, &jobs, &[&a]);
        assert_eq!(rows, ["5_1 PENDING", "5_2 PENDING", "5_3 PENDING"]);
        assert_eq!(steady, [0]);
        // 5_3 moved the bound; 5_1 (another name) and 5_2 (too late) are not ours without a comment.
        let (rows, steady) = round(&mut memo, &jobs, &[&a]);
        assert_eq!(rows, ["5_1 PENDING", "5_2 PENDING"]);
        assert_eq!(steady, [0, 3]);
        assert_eq!(memo.len(), 1);
    }

    /// Jobs of two names found steady on one line: it is not remembered.
    #[test]
    fn a_line_steady_for_jobs_of_two_names_is_not_remembered() {
        let b = TrackedJob {
            job_name: "dw-b".into(),
            ..job("5_1", "ka")
        };
        let jobs = [job("5_0", "ka"), b];
        let a = line("5_[0-1]", "PENDING", "0:00", "ka");
        let mut memo = Memo::default();
        round(&mut memo, &jobs, &[&a]);
        assert_eq!(memo.len(), 0);
        assert_eq!(round(&mut memo, &jobs, &[&a]).0.len(), 2);
    }

    /// The same id on two clusters is two lines, each steady for its own job.
    #[test]
    fn an_id_on_two_clusters_is_two_lines_of_the_memo() {
        let jobs = [job("7", "k7"), job("7;c1", "k8")];
        let mut memo = Memo::default();
        for steady in [&[][..], &[0, 1][..]] {
            let mut r = Reading::new(&jobs);
            r.read(&line("7", "PENDING", "0:00", "k7"), None);
            r.read(&line("7", "RUNNING", "0:03", "k8"), Some("c1"));
            let (rows, now) = r.finish(&mut memo);
            assert_eq!(now, steady);
            assert_eq!(rows.len(), 2 - now.len());
            assert_eq!(memo.len(), 2);
        }
    }
}
