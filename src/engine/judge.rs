//! What the scheduler's rows say about one of our jobs: is a row provably about the job we submitted (job ids
//! are reused), has the job ended for good (Slurm requeues after NODE_FAIL and preemption), or has no source
//! shown it for so long that it is lost. The scheduler reports rows; this module judges them.
//!
//! Must never: turn a row that is not provably ours into a verdict, call a requeue-able end final while the
//! controller may still run the job again, or call a job lost on a cycle in which a source did not answer.

use std::collections::HashMap;
use std::time::Duration;

use super::model::Generation;
use super::verdict::{JobDetail, JobPhase, JobReport, classify_state};
use crate::time::{Millis, ms};

/// One of our jobs in flight, as the scheduler is asked about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedJob {
    /// The job id `sbatch` gave (`ID` or `ID;CLUSTER`).
    pub job_id: String,
    /// Our submission key, carried in the job's comment (shared by the tasks of one array).
    pub key: std::sync::Arc<str>,
    /// The job name we gave (shared by the tasks of one array).
    pub job_name: std::sync::Arc<str>,
    /// When the intent was committed (wall clock): the job cannot have been submitted before.
    pub since: Millis,
}

impl TrackedJob {
    /// What the scheduler is asked about record `g`'s job (none before its id is known).
    pub fn of(g: &Generation) -> Option<TrackedJob> {
        Some(TrackedJob {
            job_id: g.job_id.clone()?,
            key: g.scheduler_key().into(),
            job_name: g.scheduler_name().into(),
            since: g.created_at,
        })
    }
}

/// Which part of the scheduler a row came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Accounting (`sacct`): durable, but lags, and keeps old jobs of a reused id.
    Accounting,
    /// The controller (`squeue -t all`): live, knows a job from the moment `sbatch` returns, forgets it
    /// `MinJobAge` after its end. The local executor reports as a controller.
    Controller,
}

/// One row a scheduler printed for a job id. Fields a source does not give are empty / `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Where it came from.
    pub source: Source,
    /// The job id, in the form the ledger stores (`ID` or `ID;CLUSTER`).
    pub job_id: String,
    /// Job name.
    pub name: String,
    /// Job comment (our submission key, for our jobs; empty in accounting while a job runs, and on sites
    /// without `AccountingStoreFlags=job_comment`).
    pub comment: String,
    /// Submit time, wall clock (a requeue moves it to the requeue time).
    pub submit: Option<Millis>,
    /// End time of the last run, wall clock; `None` while it has not ended.
    pub end: Option<Millis>,
    /// State word as printed.
    pub state: String,
    /// Exit code as `code:signal`.
    pub exit_code: String,
    /// The controller's word on whether the job would be requeued after a failure (`squeue -O Requeue`);
    /// `None` when the source does not say.
    pub requeue: Option<bool>,
    /// Reason, nodes, run time.
    pub detail: JobDetail,
}

/// Everything one query returned: the rows, and which sources answered (a source that failed shows
/// nothing, and that proves nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sightings {
    /// Every row, of every source, for any of the asked ids (several per id: old jobs of a reused id).
    pub rows: Vec<JobRow>,
    /// Accounting answered.
    pub accounting: bool,
    /// The controller answered.
    pub controller: bool,
    /// Jobs (indices into the list asked about) whose controller line is what it was in the last answer,
    /// where it was [`steady`]: the back end parsed no row for them, and nothing about them changed (see
    /// [`Judgement::steady`]). Empty from a back end that does not remember its answers.
    pub steady: Vec<usize>,
}

/// Whether a row is about our job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Same id and our key in the comment, or (no comment) our name and a submit time after our intent.
    Ours,
    /// Accounting's placeholder for a job it has not fully recorded yet (`JobName=allocation`, no comment):
    /// says nothing about anyone.
    Placeholder,
    /// Another job with the same id (a reused id): an old record in accounting, or a stranger's job.
    Stale,
}

/// Slurm's clocks and ours may differ: a submit time this much before our intent still counts as after it.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Without a word from the controller, a requeue-able end (NODE_FAIL, PREEMPTED, BOOT_FAIL) or any failure
/// seen only in accounting is final this long after the run ended: a requeued job is back in the controller
/// (and accounting) well within it.
pub const REQUEUE_SETTLE: Duration = Duration::from_secs(300);

/// Decides whether `row` is about `job`. The id is compared by the caller (rows are looked up by id).
pub fn identify(job: &TrackedJob, row: &JobRow) -> Identity {
    if !row.comment.is_empty() {
        return if *row.comment == *job.key {
            Identity::Ours
        } else {
            Identity::Stale
        };
    }
    if row.source == Source::Accounting && row.name == "allocation" && *row.name != *job.job_name {
        return Identity::Placeholder;
    }
    let after_intent = row.submit.is_some_and(|s| s >= job.since - ms(CLOCK_SKEW));
    if *row.name == *job.job_name && after_intent {
        Identity::Ours
    } else {
        Identity::Stale
    }
}

/// The policy of a judgement.
#[derive(Debug, Clone, Copy)]
pub struct JudgePolicy {
    /// `job.lost_after_sec`: a job no source has shown for longer is lost.
    pub lost_after: Duration,
    /// How long after its end a possibly requeued job is final without the controller's word.
    pub settle: Duration,
}

/// What the rows mean for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It ended for good: record this end.
    Ended(JobReport),
    /// It is ours and not final (or a later run of it may still start): keep following it.
    Active,
    /// No row is provably ours: not known yet, keep waiting.
    Unknown,
    /// No source has shown it for longer than `lost_after` (this long, in ms), while every source answered.
    Lost(Millis),
}

/// A judgement of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// What to do.
    pub verdict: Verdict,
    /// Some source showed the job (its last-seen time moves on).
    pub seen: bool,
    /// A row with the job's id that is not ours was ignored (the first one), for the log.
    pub stale: Option<JobRow>,
}

impl Sightings {
    /// Whether each of the `n` jobs asked about was reported [`steady`](Sightings::steady).
    pub fn steady_mask(&self, n: usize) -> Vec<bool> {
        steady_mask(&self.steady, n)
    }

    /// The rows of each job id: many jobs are judged from one answer without a pass over every row per job.
    pub fn by_id(&self) -> HashMap<&str, Vec<&JobRow>> {
        let mut m: HashMap<&str, Vec<&JobRow>> = HashMap::with_capacity(self.rows.len());
        for r in &self.rows {
            m.entry(r.job_id.as_str()).or_default().push(r);
        }
        m
    }
}

/// Whether the controller's rows decide `job` whatever accounting says: one of them is ours (the controller
/// is the live truth, see [`judge`]). Accounting need not be asked about such a job.
pub fn controller_decides(job: &TrackedJob, controller_rows: &[&JobRow]) -> bool {
    controller_rows
        .iter()
        .any(|r| r.source == Source::Controller && identify(job, r) == Identity::Ours)
}

/// Whether each of `n` jobs is among the indices `steady`.
pub fn steady_mask(steady: &[usize], n: usize) -> Vec<bool> {
    let mut mask = vec![false; n];
    for &i in steady {
        if let Some(m) = mask.get_mut(i) {
            *m = true;
        }
    }
    mask
}

/// Whether the controller's rows of a job say something that only a change of those rows can change:
/// its one row is ours and in an active phase (pending, running, suspended …), so [`judge_rows`] says
/// "active, seen" whatever the time, whatever accounting holds (the controller is the live truth). A
/// requeue-able end is not steady (it becomes final with time), nor is an id with two rows.
pub fn steady(job: &TrackedJob, controller_rows: &[&JobRow]) -> bool {
    match controller_rows {
        [r] => {
            r.source == Source::Controller
                && identify(job, r) == Identity::Ours
                && classify_state(&r.state) == JobPhase::Active
        }
        _ => false,
    }
}

impl Judgement {
    /// The judgement of a job whose controller rows were [`steady`] in the last answer and are unchanged
    /// in this one: what [`judge_rows`] said of them then.
    pub fn steady() -> Judgement {
        Judgement {
            verdict: Verdict::Active,
            seen: true,
            stale: None,
        }
    }
}

/// Judges `job` from `sightings` at wall time `now`; `last_seen` is when a source last showed it (or when
/// its id became known).
pub fn judge(
    job: &TrackedJob,
    sightings: &Sightings,
    last_seen: Millis,
    now: Millis,
    policy: JudgePolicy,
) -> Judgement {
    let rows: Vec<&JobRow> = sightings
        .rows
        .iter()
        .filter(|r| r.job_id == job.job_id)
        .collect();
    judge_rows(job, &rows, sightings, last_seen, now, policy)
}

/// [`judge`] with the rows of `job`'s id already picked out (from [`Sightings::by_id`]); `answered` says
/// which sources answered (its rows are not read).
pub fn judge_rows(
    job: &TrackedJob,
    rows: &[&JobRow],
    answered: &Sightings,
    last_seen: Millis,
    now: Millis,
    policy: JudgePolicy,
) -> Judgement {
    let sightings = answered;
    let mut controller: Option<&JobRow> = None;
    let mut accounting: Option<&JobRow> = None;
    let mut stale = None;
    for &row in rows.iter().filter(|r| r.job_id == job.job_id) {
        match identify(job, row) {
            Identity::Ours => {
                let slot = match row.source {
                    Source::Controller => &mut controller,
                    Source::Accounting => &mut accounting,
                };
                // Several rows of ours (a requeued job's runs): the latest submission is the current one.
                if slot.is_none_or(|s| row.submit > s.submit) {
                    *slot = Some(row);
                }
            }
            Identity::Placeholder => {}
            Identity::Stale => {
                stale.get_or_insert_with(|| row.clone());
            }
        }
    }
    let settled = |row: &JobRow| row.end.is_some_and(|e| now - e >= ms(policy.settle));
    let verdict = match (controller, accounting) {
        // The controller is the live truth: accounting may still show a run that was requeued.
        (Some(c), _) => match classify_state(&c.state) {
            JobPhase::Active => Verdict::Active,
            JobPhase::Completed | JobPhase::Failed => Verdict::Ended(report(c)),
            JobPhase::MayRequeue if c.requeue == Some(false) || settled(c) => {
                Verdict::Ended(report(c))
            }
            JobPhase::MayRequeue => Verdict::Active,
        },
        // The controller answered without it: it has left the controller, so no later run can start, and
        // accounting's last record is its end.
        (None, Some(a)) if sightings.controller => match classify_state(&a.state) {
            JobPhase::Active => Verdict::Active,
            _ => Verdict::Ended(report(a)),
        },
        // Only accounting answered: COMPLETED is final; a failure may still be undone by a requeue the
        // controller would show, so it waits out the settle period.
        (None, Some(a)) => match classify_state(&a.state) {
            JobPhase::Active => Verdict::Active,
            JobPhase::Completed => Verdict::Ended(report(a)),
            JobPhase::Failed | JobPhase::MayRequeue if settled(a) => Verdict::Ended(report(a)),
            JobPhase::Failed | JobPhase::MayRequeue => Verdict::Active,
        },
        (None, None) => {
            let unseen = now - last_seen;
            if sightings.accounting && sightings.controller && unseen > ms(policy.lost_after) {
                Verdict::Lost(unseen)
            } else {
                Verdict::Unknown
            }
        }
    };
    Judgement {
        verdict,
        seen: controller.is_some() || accounting.is_some(),
        stale,
    }
}

fn report(row: &JobRow) -> JobReport {
    JobReport {
        state: row.state.clone(),
        exit_code: row.exit_code.clone(),
        detail: row.detail.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Source::{Accounting as A, Controller as C};
    use proptest::prelude::*;

    const T: Millis = 1_800_000_000_000;
    const MIN: Millis = 60_000;

    fn job() -> TrackedJob {
        TrackedJob {
            job_id: "16".into(),
            key: "dw-abcd-7".into(),
            job_name: "dw-case1".into(),
            since: T,
        }
    }

    /// A row for id 16: `who` is `ours` (our key), `named` (our name, no comment), `old` (another key),
    /// `placeholder`; `submit` relative to the intent in minutes.
    fn row(source: Source, who: &str, submit: i64, state: &str) -> JobRow {
        let (name, comment) = match who {
            "ours" => ("dw-case1", "dw-abcd-7"),
            "named" => ("dw-case1", ""),
            "old" => ("dw-case1", "dw-ffff-3"),
            "stranger" => ("other-job", ""),
            "placeholder" => ("allocation", ""),
            _ => unreachable!(),
        };
        JobRow {
            source,
            job_id: "16".into(),
            name: name.into(),
            comment: comment.into(),
            submit: Some(T + submit * MIN),
            end: None,
            state: state.into(),
            exit_code: "0:0".into(),
            requeue: (source == C).then_some(true),
            detail: JobDetail::default(),
        }
    }

    fn ended(mut r: JobRow, minutes_ago: i64, now: Millis) -> JobRow {
        r.end = Some(now - minutes_ago * MIN);
        r
    }

    const POLICY: JudgePolicy = JudgePolicy {
        lost_after: Duration::from_secs(3600),
        settle: REQUEUE_SETTLE,
    };

    fn both(rows: Vec<JobRow>) -> Sightings {
        Sightings {
            rows,
            accounting: true,
            controller: true,
            steady: Vec::new(),
        }
    }

    fn verdict(s: &Sightings, now: Millis) -> Verdict {
        judge(&job(), s, T, now, POLICY).verdict
    }

    #[test]
    fn which_rows_are_ours() {
        let j = job();
        let cases = [
            (row(A, "ours", 0, "COMPLETED"), Identity::Ours),
            (row(A, "named", 0, "RUNNING"), Identity::Ours),
            (row(A, "named", -1, "RUNNING"), Identity::Ours), // within the clock skew
            (row(A, "named", -2, "COMPLETED"), Identity::Stale), // before our intent
            (row(A, "old", 5, "COMPLETED"), Identity::Stale), // another key, whatever the time
            (row(C, "old", 5, "RUNNING"), Identity::Stale),
            (row(A, "stranger", 5, "COMPLETED"), Identity::Stale),
            (row(A, "placeholder", 0, "PENDING"), Identity::Placeholder),
            (row(C, "placeholder", 0, "PENDING"), Identity::Stale),
        ];
        for (r, want) in cases {
            assert_eq!(identify(&j, &r), want, "{r:?}");
        }
        let mut no_time = row(A, "named", 0, "RUNNING");
        no_time.submit = None;
        assert_eq!(identify(&j, &no_time), Identity::Stale);
    }

    #[test]
    fn a_stale_completed_row_of_a_reused_id_is_no_verdict() {
        let now = T + MIN;
        let old = row(A, "old", -60 * 24, "COMPLETED");
        let s = both(vec![old.clone(), row(C, "ours", 0, "PENDING")]);
        let j = judge(&job(), &s, T, now, POLICY);
        assert_eq!(
            (j.verdict, j.seen, j.stale),
            (Verdict::Active, true, Some(old.clone()))
        );
        // Accounting alone, with only the old row: not known yet.
        let s = Sightings {
            rows: vec![old, row(A, "placeholder", 0, "PENDING")],
            accounting: true,
            controller: false,
            steady: Vec::new(),
        };
        let j = judge(&job(), &s, T, now, POLICY);
        assert_eq!((j.verdict, j.seen), (Verdict::Unknown, false));
    }

    #[test]
    fn the_controller_overrules_accounting_after_a_requeue() {
        let now = T + 10 * MIN;
        // sacct still shows the failed run, the controller has the job pending again.
        let s = both(vec![
            ended(row(A, "ours", 0, "NODE_FAIL"), 0, now),
            row(C, "ours", 1, "PENDING"),
        ]);
        assert_eq!(verdict(&s, now), Verdict::Active);
        let s = both(vec![
            ended(row(A, "ours", 0, "REQUEUED"), 0, now),
            row(C, "ours", 1, "RUNNING"),
        ]);
        assert_eq!(verdict(&s, now), Verdict::Active);
    }

    #[test]
    fn requeue_able_ends_are_final_only_when_no_run_can_follow() {
        let now = T + 60 * MIN;
        let c = |requeue, ago| {
            let mut r = ended(row(C, "ours", 0, "NODE_FAIL"), ago, now);
            r.requeue = requeue;
            both(vec![r])
        };
        assert_eq!(verdict(&c(Some(true), 1), now), Verdict::Active);
        assert_eq!(verdict(&c(None, 1), now), Verdict::Active);
        assert!(matches!(
            verdict(&c(Some(false), 0), now),
            Verdict::Ended(_)
        ));
        assert!(matches!(verdict(&c(Some(true), 6), now), Verdict::Ended(_)));
        // The controller answered without the job: it has left, its accounting end is final.
        let gone = both(vec![ended(row(A, "ours", 0, "PREEMPTED"), 0, now)]);
        assert!(matches!(verdict(&gone, now), Verdict::Ended(_)));
        // The controller did not answer: any failure waits out the settle period, COMPLETED does not.
        let only_acct = |state: &str, ago| Sightings {
            rows: vec![ended(row(A, "ours", 0, state), ago, now)],
            accounting: true,
            controller: false,
            steady: Vec::new(),
        };
        assert_eq!(verdict(&only_acct("BOOT_FAIL", 1), now), Verdict::Active);
        assert_eq!(verdict(&only_acct("FAILED", 1), now), Verdict::Active);
        assert!(matches!(
            verdict(&only_acct("FAILED", 6), now),
            Verdict::Ended(_)
        ));
        assert!(matches!(
            verdict(&only_acct("COMPLETED", 0), now),
            Verdict::Ended(_)
        ));
    }

    #[test]
    fn the_states_that_mean_wait() {
        let now = T + MIN;
        for st in [
            "PENDING",
            "RUNNING",
            "REQUEUED",
            "REQUEUE_HOLD",
            "REQUEUE_FED",
            "SPECIAL_EXIT",
            "RESIZING",
            "REVOKED",
            "SUSPENDED",
            "STOPPED",
            "SOMETHING_NEW",
        ] {
            let s = both(vec![ended(row(C, "ours", 0, st), 10, now)]);
            assert_eq!(verdict(&s, now), Verdict::Active, "{st}");
        }
    }

    #[test]
    fn a_job_no_source_shows_is_lost_only_after_lost_after_and_only_when_every_source_answered() {
        let hour = 60 * MIN;
        let empty = both(vec![]);
        assert_eq!(verdict(&empty, T + hour), Verdict::Unknown);
        assert_eq!(verdict(&empty, T + hour + 1), Verdict::Lost(hour + 1));
        for (accounting, controller) in [(false, true), (true, false)] {
            let half = Sightings {
                rows: vec![],
                accounting,
                controller,
                steady: Vec::new(),
            };
            assert_eq!(verdict(&half, T + 2 * hour), Verdict::Unknown);
        }
        // Only stale rows: as good as not shown.
        let stale = both(vec![row(A, "old", -600, "COMPLETED")]);
        assert_eq!(verdict(&stale, T + 2 * hour), Verdict::Lost(2 * hour));
    }

    proptest! {
        /// Whatever the rows say, a row with another key never makes a verdict, and nothing is final while
        /// the controller shows the job in a state that means wait.
        #[test]
        fn stale_rows_never_decide(state in "[A-Z_]{0,12}", c_state in "(PENDING|RUNNING|REQUEUED|SUSPENDED)", ago in 0i64..100) {
            let now = T + 200 * MIN;
            let old = ended(row(A, "old", -5, &state), ago, now);
            let s = both(vec![old.clone(), row(C, "ours", 1, &c_state)]);
            prop_assert_eq!(verdict(&s, now), Verdict::Active);
            let alone = both(vec![old]);
            prop_assert!(matches!(verdict(&alone, now), Verdict::Unknown | Verdict::Lost(_)));
        }

        /// A steady row means "active, seen" at any time, with or without accounting's rows, and from
        /// then on the same row needs no judging: what the back ends rely on when they skip it.
        #[test]
        fn a_steady_row_is_judged_active_whenever_it_is_judged(
            state in "[A-Z_]{0,12}",
            who in "(ours|named|old|stranger|placeholder)",
            a_state in "[A-Z_]{0,12}",
            later in 0i64..100_000,
            unseen in 0i64..100_000,
            requeue in proptest::option::of(any::<bool>()),
        ) {
            let c = JobRow { requeue, ..ended(row(C, &who, 1, &state), 3, T + 10 * MIN) };
            if !steady(&job(), &[&c]) {
                return Ok(());
            }
            prop_assert_eq!(classify_state(&state), JobPhase::Active);
            let now = T + later * MIN;
            let last_seen = now - unseen * MIN;
            let a = ended(row(A, "ours", 1, &a_state), 2, now);
            for rows in [vec![&c], vec![&c, &a]] {
                for (accounting, controller) in [(true, true), (false, true)] {
                    let s = Sightings { rows: vec![], accounting, controller, steady: vec![] };
                    prop_assert_eq!(judge_rows(&job(), &rows, &s, last_seen, now, POLICY), Judgement::steady());
                }
            }
        }
    }

    #[test]
    fn a_final_or_requeueable_or_doubled_or_foreign_row_is_not_steady() {
        let now = T + 10 * MIN;
        for state in [
            "COMPLETED",
            "FAILED",
            "TIMEOUT",
            "NODE_FAIL",
            "PREEMPTED",
            "BOOT_FAIL",
        ] {
            assert!(
                !steady(&job(), &[&ended(row(C, "ours", 1, state), 1, now)]),
                "{state}"
            );
        }
        let pending = row(C, "ours", 1, "PENDING");
        assert!(steady(&job(), &[&pending]));
        assert!(!steady(&job(), &[&pending, &pending]));
        assert!(!steady(&job(), &[&row(A, "ours", 1, "PENDING")]));
        assert!(!steady(&job(), &[&row(C, "old", 1, "PENDING")]));
        assert!(!steady(&job(), &[]));
    }
}
