//! Slurm: the back end that follows jobs through the controller (live) and accounting (durable), through
//! its command-line tools ([`cli`]); [`parse`] reads what they print. Per tracking round, the controller
//! first and accounting only about the jobs the controller's rows do not decide; outages said once each
//! way; a controller that stopped answering asked again once a minute.
//!
//! Must never: turn "a source did not answer / does not know the job" into a failure, or decide whether a
//! row is about our job (it reports every row; the engine judges — a controller line the engine called
//! steady is remembered, and the same line in the next answer is reported as steady: [`steady`]).

use std::collections::BTreeMap;
use std::time::Duration;

pub mod cli;
pub mod history;
mod parse;
pub mod rest;
pub mod steady;
mod unix;

use super::{
    CancelError, JobRow, JobSpec, QueryError, Scheduler, Sightings, SubmitError, TrackedJob,
};
use crate::config::Config;
use crate::engine::{OutageEdge, OutageLatch};
use crate::time::Millis;
pub use cli::{
    Cli, SQUEUE_BY_USER_ABOVE, STARTTIME_MARGIN, run_test_only, sbatch_invocation,
    scancel_invocation, squeue_selections, starttime_arg, test_only_invocation,
};
pub use history::EarlierJob;
pub use parse::{
    SACCT_FIELDS, SQUEUE_FIELDS, detail_text, epoch_ms, find_key, find_uncommented_since,
    is_job_id, parse_parsable, parse_sacct, parse_squeue, parse_squeue_line, parse_squeue_of,
    sbatch_refusal_is_certain, scancel_found_it_ended, split_job_id, squeue_line_id,
    time_used_secs, wait_status,
};
use steady::{Memo, Reading};

/// The slurmrestd transport of `cfg` (`job.slurmrest_url`, the token from `job.slurmrest_token_file` or
/// the daemon's `SLURM_JWT`).
fn rest_of(cfg: &Config) -> rest::Rest {
    let source = match &cfg.job.slurmrest_token_file {
        Some(f) => rest::TokenSource::File(f.clone()),
        None => rest::TokenSource::Env(std::env::var("SLURM_JWT").unwrap_or_default()),
    };
    rest::Rest::new(cfg, &cfg.job.slurmrest_url, source)
}

/// Accounting asked about this user's jobs in a window of time (a new ledger's start, `recover
/// --from-slurm`), the way the config asks Slurm: `sacct`/`squeue`, or slurmrestd with `executor:
/// slurmrest` (a host with no Slurm client). One connection for all of its calls.
#[derive(Debug)]
pub struct History {
    how: How,
    timeout: Duration,
}

impl History {
    /// For this config.
    pub fn new(cfg: &Config) -> Self {
        let how = match cfg.job.executor {
            crate::config::ExecutorKind::SlurmRest => How::Rest(rest_of(cfg)),
            _ => How::Cli(Cli::new(cfg)),
        };
        History {
            how,
            timeout: cfg.job.command_timeout,
        }
    }

    /// `slurm` or `slurmrest`, for the log.
    pub fn name(&self) -> &'static str {
        match self.how {
            How::Cli(_) => "slurm",
            How::Rest(_) => "slurmrest",
        }
    }

    /// How accounting is asked, in the operator's words (`sacct`, `slurmrestd's slurmdb`).
    pub fn accounting_word(&self) -> String {
        format!("`{}`", self.how.accounting_word())
    }

    /// The widest window one call should ask about: `sacct` prints a line per job, any window; slurmrestd
    /// answers in JSON of a few KB per job, read up to [`rest::ANSWER_LIMIT`]: a day at a time.
    pub fn widest_window_secs(&self) -> u64 {
        match self.how {
            How::Cli(_) => u64::MAX,
            How::Rest(_) => 86400,
        }
    }

    /// The jobs that were eligible between `from_secs_ago` and `to_secs_ago` (0: now).
    pub fn jobs(&self, from_secs_ago: u64, to_secs_ago: u64) -> Result<Vec<EarlierJob>, String> {
        match &self.how {
            How::Cli(_) => history::sacct(self.timeout, from_secs_ago, to_secs_ago),
            How::Rest(r) => r.earlier_jobs(from_secs_ago, to_secs_ago),
        }
    }

    /// The comment the controller shows for job `id` (accounting may not show a running job's yet).
    pub fn controller_comment(&self, id: &str) -> Option<String> {
        match &self.how {
            How::Cli(_) => history::squeue_comment(self.timeout, id),
            How::Rest(r) => r.controller_comment(id),
        }
    }
}

/// How Slurm is asked.
#[derive(Debug)]
enum How {
    /// Its command-line tools.
    Cli(Cli),
    /// slurmrestd.
    Rest(rest::Rest),
}

/// Slurm back end.
#[derive(Debug)]
pub struct Slurm {
    /// How every call goes.
    how: How,
    /// Whether `sacct` is failing (reported once when it starts and once when it ends).
    accounting: OutageLatch,
    /// Whether `squeue` is failing.
    controller: OutageLatch,
    /// While it fails: when (wall ms) to ask the controller again.
    controller_next: Option<Millis>,
    /// The steady lines of the last answer.
    memo: Memo,
}

impl Slurm {
    /// A Slurm back end for this config.
    pub fn new(cfg: &Config) -> Self {
        Slurm::with(How::Cli(Cli::new(cfg)))
    }

    /// A Slurm back end that asks slurmrestd (`job.slurmrest_url`, the token from
    /// `job.slurmrest_token_file` or the daemon's `SLURM_JWT`).
    pub fn rest(cfg: &Config) -> Self {
        Slurm::with(How::Rest(rest_of(cfg)))
    }

    fn with(how: How) -> Self {
        Slurm {
            how,
            accounting: OutageLatch::default(),
            controller: OutageLatch::default(),
            controller_next: None,
            memo: Memo::default(),
        }
    }
}

/// Job ids per `sacct`/`squeue` call. One argument of all ids fails with "Argument list too long" near
/// 16,400 seven-digit ids (and tracking would stop); 2,000 ids are ~16 KB, well inside any limit, and
/// still few calls (10 for 20,000 jobs in flight).
pub const IDS_PER_CALL: usize = 2000;

/// Groups job ids by cluster (normally one group: the local cluster), in chunks of [`IDS_PER_CALL`].
pub(crate) fn by_cluster<'a>(
    jobs: impl IntoIterator<Item = &'a TrackedJob>,
) -> Vec<(Option<&'a str>, Vec<&'a str>)> {
    let mut m: BTreeMap<Option<&str>, Vec<&str>> = BTreeMap::new();
    for j in jobs {
        let (id, cluster) = split_job_id(&j.job_id);
        m.entry(cluster).or_default().push(id);
    }
    m.into_iter()
        .flat_map(|(cluster, ids)| {
            ids.chunks(IDS_PER_CALL)
                .map(|c| (cluster, c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
}

impl How {
    /// How the controller is asked, in the operator's words.
    fn controller_word(&self) -> &'static str {
        match self {
            How::Cli(_) => "squeue",
            How::Rest(_) => "slurmrestd",
        }
    }

    /// How accounting is asked, in the operator's words.
    fn accounting_word(&self) -> &'static str {
        match self {
            How::Cli(_) => "sacct",
            How::Rest(_) => "slurmrestd's slurmdb",
        }
    }

    fn submit(&self, spec: &JobSpec) -> Result<String, SubmitError> {
        match self {
            How::Cli(c) => c.sbatch(spec),
            How::Rest(r) => r.submit(spec),
        }
    }
}

/// After a failed `squeue`, the controller is asked again only this much later: a controller that is down
/// makes each call wait for its timeout (about 9 s), and accounting answers meanwhile.
const CONTROLLER_PROBE: Duration = Duration::from_secs(60);

impl Scheduler for Slurm {
    fn name(&self) -> &'static str {
        match self.how {
            How::Cli(_) => "slurm",
            How::Rest(_) => "slurmrest",
        }
    }

    fn jobs_run(&self) -> super::JobsRun {
        super::JobsRun::OnCluster
    }

    fn preflight(&mut self) -> super::Preflight {
        match &self.how {
            How::Cli(c) => c.preflight(),
            How::Rest(r) => r.preflight(),
        }
    }

    fn describe(&self, spec: &JobSpec) -> String {
        match &self.how {
            How::Cli(c) => c.describe(spec),
            How::Rest(r) => r.describe(spec),
        }
    }

    fn submit(&mut self, spec: &JobSpec) -> Result<String, SubmitError> {
        self.how.submit(spec)
    }

    fn submit_many(
        &mut self,
        specs: &[JobSpec],
        width: usize,
        answer: &mut super::Answer<'_>,
    ) -> usize {
        let this = &*self;
        super::submit_concurrently(specs, width, |spec| this.how.submit(spec), answer)
    }

    fn query(
        &mut self,
        jobs: &[TrackedJob],
        decided: &super::Decided<'_>,
    ) -> Result<Sightings, QueryError> {
        self.query_all(jobs, decided)
    }

    fn lookup(
        &mut self,
        key: &str,
        job_name: &str,
        since: Millis,
    ) -> Result<Option<String>, QueryError> {
        match &self.how {
            How::Cli(c) => c.lookup(key, job_name, since),
            How::Rest(r) => r.lookup(key, job_name, since),
        }
    }

    fn submit_array(&mut self, spec: &super::array::ArraySpec) -> Result<String, SubmitError> {
        match &self.how {
            How::Cli(c) => c.sbatch_array(spec),
            How::Rest(_) => Err(SubmitError::Refused(
                "job arrays are submitted with sbatch (`executor: slurm`)".into(),
            )),
        }
    }

    fn array_limit(&mut self) -> Option<Result<u32, String>> {
        match &self.how {
            How::Cli(c) => Some(c.max_array_size()),
            How::Rest(_) => None,
        }
    }

    fn cancel(&mut self, job: &TrackedJob) -> Result<(), CancelError> {
        match &self.how {
            How::Cli(c) => c.scancel(job),
            How::Rest(r) => r.cancel(job),
        }
    }
}

impl Slurm {
    /// The controller's view (finished jobs too, until `MinJobAge`), with the fields that tell whose job a
    /// row is and whether it may run again: see [`squeue_selections`]. A job that `--me` does not list is
    /// asked about by id: it may belong to another user (`--uid`), so only `--jobs` can say that the
    /// controller does not know it.
    /// Returns the rows parsed and the jobs whose lines were steady (see [`steady`]).
    fn query_controller(
        &mut self,
        jobs: &[TrackedJob],
    ) -> Result<(Vec<JobRow>, Vec<usize>), QueryError> {
        match &self.how {
            How::Cli(c) => {
                let mut reading = Reading::new(jobs);
                c.read_controller(jobs, &mut reading)?;
                Ok(reading.finish(&mut self.memo))
            }
            // Rows from JSON: none is remembered as a steady line (each is judged again).
            How::Rest(r) => Ok((r.controller(jobs, SQUEUE_BY_USER_ABOVE)?, Vec::new())),
        }
    }

    /// The controller first (it knows every live job at once, and is cheap), then accounting only about
    /// the jobs whose controller rows do not decide them (they left the controller, or its row of the id is
    /// not ours): with thousands of jobs pending or running, no `sacct` runs at all. When the controller
    /// does not answer, accounting is asked about every job.
    fn query_all(
        &mut self,
        jobs: &[TrackedJob],
        decided: &super::Decided<'_>,
    ) -> Result<Sightings, QueryError> {
        let ctl = self.ask_controller(jobs);
        let rest: Vec<&TrackedJob> = match &ctl {
            Ok((rows, steady)) => undecided(jobs, rows, steady, decided),
            Err(_) => jobs.iter().collect(),
        };
        let acct = if rest.is_empty() {
            Ok(Vec::new())
        } else {
            self.ask_accounting(&rest)
        };
        match (acct, ctl) {
            (Err(a), Err(c)) => Err(QueryError(format!(
                "{a}; and the controller did not answer either: {c}"
            ))),
            (a, c) => {
                let accounting = a.is_ok();
                let controller = c.is_ok();
                let (mut rows, steady) = c.unwrap_or_default();
                rows.extend(a.unwrap_or_default());
                Ok(Sightings {
                    rows,
                    accounting,
                    controller,
                    steady,
                })
            }
        }
    }

    /// `sacct` about `jobs`; an outage is said once when it starts and once when it ends.
    fn ask_accounting(&mut self, jobs: &[&TrackedJob]) -> Result<Vec<JobRow>, QueryError> {
        let acct = match &self.how {
            How::Cli(c) => c.sacct(jobs),
            How::Rest(r) => r.accounting(jobs),
        };
        let now = now_ms();
        match &acct {
            Ok(_) => {
                if let OutageEdge::Ended { failures, .. } = self.accounting.succeeded(now) {
                    tracing::info!(
                        "accounting ({}) answers again after {failures} failed queries",
                        self.how.accounting_word()
                    );
                }
            }
            // Accounting down or lagging: the controller follows the jobs meanwhile. Nothing is ever declared
            // failed for lack of an answer.
            Err(e) => {
                if self.accounting.failed(now) == OutageEdge::Started {
                    tracing::warn!(
                        "accounting ({}) is not answering: {e}; following jobs through the controller ({}) meanwhile",
                        self.how.accounting_word(),
                        self.how.controller_word()
                    );
                }
            }
        }
        acct
    }

    /// `squeue` about `jobs`, unless it failed less than [`CONTROLLER_PROBE`] ago; an outage is said once
    /// when it starts and once when it ends.
    fn ask_controller(
        &mut self,
        jobs: &[TrackedJob],
    ) -> Result<(Vec<JobRow>, Vec<usize>), QueryError> {
        let now = now_ms();
        if self.controller_next.is_some_and(|next| now < next) {
            return Err(QueryError(
                "the controller did not answer the last query".into(),
            ));
        }
        let r = self.query_controller(jobs);
        match &r {
            Ok(_) => {
                self.controller_next = None;
                if let OutageEdge::Ended { failures, .. } = self.controller.succeeded(now) {
                    tracing::info!(
                        "the controller ({}) answers again after {failures} failed queries",
                        self.how.controller_word()
                    );
                }
            }
            Err(e) => {
                self.controller_next = Some(now + crate::time::ms(CONTROLLER_PROBE));
                if self.controller.failed(now) == OutageEdge::Started {
                    tracing::warn!(
                        "the controller ({}) is not answering: {e}; following jobs through accounting \
                         meanwhile (failures are recorded only after {}; asking the controller again every {})",
                        self.how.controller_word(),
                        crate::time::human(crate::time::ms(crate::engine::judge::REQUEUE_SETTLE)),
                        crate::time::human(crate::time::ms(CONTROLLER_PROBE)),
                    );
                }
            }
        }
        r
    }
}

/// The jobs that `decided` does not settle from the controller's rows of their ids (a steady job is
/// settled: its line is one that decided it).
fn undecided<'a>(
    jobs: &'a [TrackedJob],
    controller_rows: &[JobRow],
    steady: &[usize],
    decided: &super::Decided<'_>,
) -> Vec<&'a TrackedJob> {
    let mut by_id: std::collections::HashMap<&str, Vec<&JobRow>> = Default::default();
    for r in controller_rows {
        by_id.entry(r.job_id.as_str()).or_default().push(r);
    }
    let settled = crate::engine::judge::steady_mask(steady, jobs.len());
    jobs.iter()
        .zip(settled)
        .filter(|(j, settled)| {
            !settled && !decided(j, by_id.get(j.job_id.as_str()).map_or(&[], Vec::as_slice))
        })
        .map(|(j, _)| j)
        .collect()
}

pub(crate) fn now_ms() -> Millis {
    crate::time::wall_now()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::Source;
    use super::*;
    use crate::config::{ExecutorKind, JobCommand, JobConfig, TimeLimit};
    use crate::engine::JobDetail;

    proptest::proptest! {
        /// The parsers take whatever Slurm (or a broken wrapper) prints without panicking, and never invent
        /// a job id that is not all digits.
        #[test]
        fn parsers_survive_any_output(out in "(?s).{0,300}", key in "[a-z0-9-]{1,12}") {
            // A row's id is a job's, an array task's (`12_3`) or an array's record of tasks (`12_[3-9]`).
            if let Some(id) = parse_parsable(&out) {
                proptest::prop_assert!(id.split(';').next().unwrap().bytes().all(|b| b.is_ascii_digit()));
            }
            for row in parse_sacct(&out, None).iter().chain(&parse_squeue(&out, None)) {
                let id = row.job_id.as_str();
                proptest::prop_assert!(is_job_id(id) || parse::is_task_id(id) || parse::array_record(id).is_some(), "{id}");
            }
            let _ = wait_status(&out);
            let _ = find_key(&out, &key);
            let _ = find_uncommented_since(&out, 0);
        }
    }

    /// Output shaped like Slurm's (fields, separators, ids, steps, states, stray spaces and garbage), so that
    /// the parsers' inner branches run, not only their first check.
    fn slurmish() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let field = prop_oneof![
            "[0-9]{1,9}",
            "[0-9]{1,6}\\.(batch|extern|[0-9])",
            "[0-9]{1,6}_[0-9]{1,3}",
            "[0-9]{1,6};[a-z_-]{0,8}",
            "(COMPLETED|FAILED|CANCELLED by [0-9]+|TIMEOUT|PENDING|RUNNING|OUT_OF_MEMORY|NODE_FAIL)",
            "[0-9]{1,3}:[0-9]{1,3}",
            "dw-[a-z0-9]{1,6}-[0-9]{1,4}",
            "[ \t]{0,3}",
            "(?s).{0,12}",
        ];
        let sep = prop_oneof!["\\|", ";", " ", "\n", ""];
        proptest::collection::vec((field, sep), 0..40)
            .prop_map(|parts| parts.into_iter().map(|(f, s)| f + &s).collect())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]
        /// Every id a parser returns is a plain job id that the output really contains, and a key is matched
        /// only on its own line with exactly that comment.
        #[test]
        fn parsers_return_only_ids_the_output_holds(out in slurmish(), key in "dw-[a-z0-9]{1,6}-[0-9]{1,4}") {
            let holds = |id: &str| is_job_id(id) && out.contains(id);
            if let Some(id) = parse_parsable(&out) {
                proptest::prop_assert!(holds(split_job_id(&id).0), "{id}");
            }
            for row in parse_sacct(&out, None).into_iter().chain(parse_squeue(&out, None)) {
                let id = row.job_id.as_str();
                let array = parse::is_task_id(id) || parse::array_record(id).is_some();
                proptest::prop_assert!(holds(id) || (array && out.contains(id)), "{id}");
                proptest::prop_assert!(!row.state.contains('|'));
            }
            if let Some(id) = find_key(&out, &key) {
                proptest::prop_assert!(holds(&id));
                let with_key = out.lines().any(|l| {
                    let mut f = l.split('|');
                    f.next().map(str::trim) == Some(id.as_str()) && f.next().map(str::trim) == Some(key.as_str())
                });
                proptest::prop_assert!(with_key, "{id} matched {key} on no line of its own");
            }
            if let Some(id) = find_uncommented_since(&out, 0) {
                proptest::prop_assert!(holds(&id));
            }
        }
    }

    #[test]
    fn accounting_is_asked_only_about_jobs_the_controller_does_not_show_as_ours() {
        let job = |id: &str| TrackedJob {
            job_id: id.into(),
            key: format!("dw-{id}").into(),
            job_name: format!("dw-run{id}").into(),
            since: 1_800_000_000_000,
        };
        let jobs = [job("1"), job("2"), job("3")];
        let line = |id: &str, comment: &str| {
            format!("{id}|1800000000|0|PENDING|0|1|0:00|(null)|Priority|{comment}|dw-run{id}|")
        };
        // 1 is ours and pending; 2 is another job that has our id now (a reused id); 3 left the controller.
        let out = format!("{}\n{}\n", line("1", "dw-1"), line("2", "someone-else"));
        let mut memo = Memo::default();
        // The same answer twice: the second time 1 is steady (not parsed), and still settled.
        for steady in [&[][..], &[0][..]] {
            let mut reading = Reading::new(&jobs);
            reading.read(&out, None);
            let (rows, now_steady) = reading.finish(&mut memo);
            assert_eq!(now_steady, steady);
            let rest = undecided(
                &jobs,
                &rows,
                &now_steady,
                &crate::engine::judge::controller_decides,
            );
            let ids: Vec<&str> = rest.iter().map(|j| j.job_id.as_str()).collect();
            assert_eq!(ids, ["2", "3"]);
        }
    }

    #[test]
    fn many_jobs_are_asked_of_the_controller_by_user_few_by_id() {
        let job = |id: String| TrackedJob {
            job_id: id,
            key: "k".into(),
            job_name: "n".into(),
            since: 0,
        };
        let mut jobs: Vec<TrackedJob> = (0..=SQUEUE_BY_USER_ABOVE)
            .map(|n| job(format!("{}", 1_000 + n)))
            .collect();
        jobs.push(job("7;other".into()));
        let sel = squeue_selections(&jobs);
        assert_eq!(
            sel,
            [(None, "--me".into()), (Some("other"), "--jobs=7,7".into())]
        );
        let few = squeue_selections(&jobs[..3]);
        assert_eq!(few, [(None, "--jobs=1000,1001,1002".to_string())]);
        // With `--me`, the lines of other jobs of the user are skipped.
        let line = |id: u32| format!("{id}|1|0|PENDING|0|1|0:00|(null)|None|(null)|x|");
        let out = format!("{}\n{}\n", line(1000), line(99));
        let asked: HashSet<&str> = ["1000"].into();
        let rows = parse_squeue_of(&out, None, Some(&asked));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].job_id, "1000");
    }

    #[test]
    fn ids_go_to_slurm_in_chunks_of_two_thousand_per_cluster() {
        let job = |id: String| TrackedJob {
            job_id: id,
            key: "k".into(),
            job_name: "n".into(),
            since: 0,
        };
        let mut jobs: Vec<TrackedJob> = (0..4500)
            .map(|n| job(format!("{}", 1_000_000 + n)))
            .collect();
        jobs.push(job("7;other".into()));
        let calls = by_cluster(&jobs);
        let sizes: Vec<(Option<&str>, usize)> =
            calls.iter().map(|(c, ids)| (*c, ids.len())).collect();
        assert_eq!(
            sizes,
            vec![(None, 2000), (None, 2000), (None, 500), (Some("other"), 1)]
        );
        let all: usize = calls.iter().map(|(_, ids)| ids.len()).sum();
        assert_eq!(all, jobs.len(), "no id is left out");
        let longest = calls
            .iter()
            .map(|(_, ids)| ids.join(",").len())
            .max()
            .unwrap();
        assert!(longest < 20_000, "one argument of {longest} bytes");
    }

    #[test]
    fn max_array_size_is_read_from_scontrol_show_config() {
        let out = "MaxArraySize            = 1001\nMaxJobCount             = 50000\n";
        assert_eq!(parse::parse_max_array_size(out), Some(1001));
        assert_eq!(parse::parse_max_array_size("MaxJobCount = 5\n"), None);
        assert_eq!(parse::parse_max_array_size("MaxArraySize = x\n"), None);
    }

    #[test]
    fn parsable_output_gives_the_id() {
        assert_eq!(parse_parsable("12345\n").as_deref(), Some("12345"));
        assert_eq!(
            parse_parsable("12345;cluster_a\n").as_deref(),
            Some("12345;cluster_a")
        );
        assert_eq!(
            parse_parsable("sbatch: warning: x\n77\n").as_deref(),
            Some("77")
        );
        for bad in ["", "\n", "Submitted batch job 5", "12a", ";c", "5;"] {
            assert_eq!(parse_parsable(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn sacct_rows_keep_every_record_of_an_id() {
        // A reused id: the old job's record and the new one's, then a step and garbage.
        let out = "16|1700000000|1700000060|COMPLETED|0:0|60|vm|None|dw-old-3|dw-case1\n\
                   16|1796107598|Unknown|RUNNING|0:0|3|vm|None||dw-case1\n\
                   16.batch|1796107598|Unknown|RUNNING|0:0|3|vm||batch\n\
                   17|1796107598|Unknown|PENDING|0:0|0|None assigned|Priority||allocation\n\
                   18|1796107599|1796107602|CANCELLED by 0|0:15|3|vm|None|dw-a-1|a|b\n\
                   19|1796107599|1796107602|FAILED|3:0|75|node[1-2]|NonZeroExitCode|dw-a-2|f\n\
                   garbage\n";
        let rows = parse_sacct(out, None);
        assert_eq!(rows.len(), 5, "{rows:?}");
        assert_eq!(
            rows[4].detail,
            JobDetail {
                reason: "NonZeroExitCode".into(),
                nodes: "node[1-2]".into(),
                elapsed_sec: Some(75)
            }
        );
        assert_eq!(rows[2].detail.nodes, "", "`None assigned` is no node");
        assert_eq!(
            (rows[0].comment.as_str(), rows[0].submit, rows[0].end),
            ("dw-old-3", Some(1_700_000_000_000), Some(1_700_000_060_000))
        );
        assert_eq!(
            (
                rows[1].comment.as_str(),
                rows[1].end,
                rows[1].state.as_str()
            ),
            ("", None, "RUNNING")
        );
        assert_eq!(rows[3].state, "CANCELLED by 0");
        assert_eq!(rows[3].name, "a|b", "a `|` in a name stays in the name");
        assert!(
            rows.iter()
                .all(|r| r.source == Source::Accounting && r.requeue.is_none())
        );
        assert_eq!(parse_sacct(out, Some("c2"))[0].job_id, "16;c2");
    }

    #[test]
    fn squeue_rows_carry_requeue_and_the_exit_code_as_code_and_signal() {
        // As Slurm 22.05 prints them (checked on the test cluster).
        let out = "19|1796107613|1796107613|FAILED|768|1|1:05|vm|NonZeroExitCode|dw-probe-2|probe-y|\n\
                   22|1796107664|NONE|PENDING|0|1|0:00||Priority|dw-probe-4|probe-nf|\n\
                   23|1796107664|N/A|NODE_FAIL|0|0|1-02:00:00|vm|None||x|\n";
        let rows = parse_squeue(out, None);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].exit_code.as_str(), rows[0].requeue, rows[0].end),
            ("3:0", Some(true), Some(1_796_107_613_000))
        );
        assert_eq!(
            (rows[1].state.as_str(), rows[1].end, rows[1].name.as_str()),
            ("PENDING", None, "probe-nf")
        );
        assert_eq!(
            (rows[2].requeue, rows[2].comment.as_str()),
            (Some(false), "")
        );
        assert_eq!(
            (rows[0].detail.elapsed_sec, rows[0].detail.reason.as_str()),
            (Some(65), "NonZeroExitCode")
        );
        assert_eq!(rows[2].detail.elapsed_sec, Some(93_600));
        assert_eq!(wait_status("9"), "0:9");
        assert_eq!(wait_status("2:0"), "2:0");
        assert_eq!(wait_status("N/A"), "");
    }

    #[test]
    fn every_sacct_is_bounded_to_hours_before_the_oldest_intent() {
        let now = 1_800_000_000_000;
        assert_eq!(starttime_arg(now - 120_000, now), "--starttime=now-3720");
        assert_eq!(starttime_arg(now + 5_000, now), "--starttime=now-3600");
    }

    #[test]
    fn key_lookup_matches_exactly() {
        let out = "5|dw-ab-1\n6|dw-ab-12\n7|\n8|dw-ab-3|1700000000\n";
        assert_eq!(find_key(out, "dw-ab-3").as_deref(), Some("8"));
        assert_eq!(find_key(out, "dw-ab-12").as_deref(), Some("6"));
        assert_eq!(find_key(out, "dw-ab-2"), None);
    }

    #[test]
    fn without_stored_comments_a_job_is_adopted_by_name_and_time_only_after_the_intent() {
        let out = "10||1000\n11||1100\n12|dw-other-1|1200\n";
        assert_eq!(
            find_uncommented_since(out, 1_100_000 + 60_000).as_deref(),
            Some("11")
        );
        assert_eq!(
            find_uncommented_since(out, 1_200_000 + 60_000),
            None,
            "a job older than the intent is not ours"
        );
        assert_eq!(
            find_uncommented_since(out, 0).as_deref(),
            Some("10"),
            "the earliest one"
        );
    }

    #[test]
    fn refusals_versus_lost_answers() {
        assert!(sbatch_refusal_is_certain(
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"
        ));
        assert!(sbatch_refusal_is_certain(
            "sbatch: error: Batch job submission failed: Invalid account"
        ));
        assert!(!sbatch_refusal_is_certain(
            "sbatch: error: Batch job submission failed: Socket timed out on send/recv"
        ));
        assert!(!sbatch_refusal_is_certain("Segmentation fault"));
        // Refused by sbatch itself, before the controller (Slurm 22.05): no job, so no key lookup.
        assert!(sbatch_refusal_is_certain(
            "sbatch: error: Invalid generic resource (gres) specification"
        ));
        assert!(sbatch_refusal_is_certain(
            "sbatch: unrecognized option '--bogus'\nTry \"sbatch --help\" for more information"
        ));
    }

    #[test]
    fn the_check_asks_about_the_daemons_own_argv_with_test_only_first() {
        let t = tempfile::tempdir().unwrap();
        let yaml = format!(
            "watch:\n  root: {:?}\njob:\n  job_script: /opt/job.sh\n  account: dev\n  extra_args: [\"--qos=x\"]\n",
            t.path()
        );
        let cfg = Config::parse(&yaml, &t.path().join("c.yaml")).unwrap();
        let inv = test_only_invocation(&cfg.job, &cfg.watch.root);
        let args: Vec<String> = inv
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let root = t.path().to_string_lossy().into_owned();
        let name = t.path().file_name().unwrap().to_string_lossy().into_owned();
        let spec = JobSpec {
            dir_path: t.path().into(),
            job_name: crate::engine::job_name("dirwatch", name.as_ref()),
            key: "dw-check-config".into(),
        };
        let daemon = sbatch_invocation(&cfg.job, t.path(), &spec);
        assert_eq!(args[0], "--test-only");
        assert_eq!(inv.args[1..], daemon.args[..], "not the daemon's own argv");
        assert_eq!(inv.env, daemon.env);
        assert_eq!(args[args.len() - 2..], ["/opt/job.sh".to_string(), root]);
    }

    /// Slurm 24.11.5 (Debian 13, in the site container of `scripts/site-cluster.sh`) prints the same state
    /// words, exit codes, steps and `(null)` comments as 22.05.8 for the calls dirwatcher makes (the
    /// integration suite runs against both: `scripts/site-cluster.sh run-tests`), but for squeue's
    /// `exit_code`, `code:signal` since 23.02 where 22.05 prints the raw wait status; here those words in
    /// the field layouts of today's queries.
    #[test]
    fn slurm_24_11_output_parses_like_22_05() {
        let sacct = "75|1796109494|1796109497|FAILED|3:0|3|vm|NonZeroExitCode|dw-x-1|dw-a\n\
                     75.batch|1796109494|1796109497|FAILED|3:0|3|vm|||batch\n\
                     76|1796109494|1796109497|CANCELLED by 0|0:0|3|vm|None|dw-x-2|dw-b\n\
                     76.batch|1796109494|1796109497|CANCELLED|0:15|3|vm|||batch\n\
                     77|1796109494|1796109497|COMPLETED|0:0|3|vm|None|dw-x-3|dw-c\n";
        let r = parse_sacct(sacct, None);
        let by_id = |id: &str| r.iter().find(|row| row.job_id == id).unwrap();
        assert_eq!(r.len(), 3, "steps are not jobs: {r:?}");
        assert_eq!(
            (by_id("75").state.as_str(), by_id("75").exit_code.as_str()),
            ("FAILED", "3:0")
        );
        assert_eq!(by_id("76").state, "CANCELLED by 0");
        assert_eq!(by_id("77").state, "COMPLETED");
        // squeue's exit_code as 24.11.5 prints it (`code:signal` since 23.02), beside 22.05's raw
        // wait status for the same exit.
        let squeue = "76|1796109494|1796109497|CANCELLED|0:0|1|0:03|dwsite|None|(null)|dw-b|\n\
                      75|1796109494|1796109497|FAILED|3:0|1|0:03|dwsite|NonZeroExitCode|dw-x-1|dw-a|\n\
                      78|1796109494|1796109497|FAILED|768|1|0:03|vm|NonZeroExitCode|dw-x-4|dw-d|\n";
        let q = parse_squeue(squeue, None);
        assert_eq!(
            q.iter()
                .map(|row| (
                    row.job_id.as_str(),
                    row.state.as_str(),
                    row.exit_code.as_str(),
                    row.comment.as_str()
                ))
                .collect::<Vec<_>>(),
            [
                ("76", "CANCELLED", "0:0", ""),
                ("75", "FAILED", "3:0", "dw-x-1"),
                ("78", "FAILED", "3:0", "dw-x-4")
            ]
        );
        // squeue shows a job without a comment as `(null)`, sacct as an empty field.
        assert_eq!(
            find_key("76|(null)\n77|(null)\n75|dw-x-1\n", "dw-x-1").as_deref(),
            Some("75")
        );
        let sacct_keys = "75|dw-x-1|1796109494\n76||1796109494\n77||1796109494\n";
        assert_eq!(find_key(sacct_keys, "dw-x-1").as_deref(), Some("75"));
        assert_eq!(
            find_uncommented_since(sacct_keys, 1_796_109_494_000).as_deref(),
            Some("76")
        );
        assert_eq!(parse_parsable("75\n").as_deref(), Some("75"));
        for refused in [
            "sbatch: error: invalid partition specified: nopart\nsbatch: error: Batch job submission failed: Invalid partition name specified",
            "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
        ] {
            assert!(sbatch_refusal_is_certain(refused), "{refused}");
        }
    }

    /// Slurm 26.05.5 (Debian sid, `scripts/site-cluster.sh --suite sid`), verbatim: squeue's `exit_code`
    /// is `code:signal` like sacct's (as since 23.02; 22.05 prints the raw wait status, `768`), and sacct
    /// names a fresh job at once (no `allocation` placeholder row). Everything else dirwatcher reads is
    /// as in 22.05, including a requeued job's accounting: the old run REQUEUED, the new one PENDING
    /// without its comment until it ends.
    #[test]
    fn slurm_26_05_output_parses_like_22_05() {
        let squeue = "20|1796626523|1796626524|FAILED|3:0|1|0:00|dwsid|NonZeroExitCode|dw-shape-a|dwshape-a|\n\
                      22|1796626523|1796626524|FAILED|0:9|1|0:00|dwsid|RaisedSignal:9(Killed)|dw-shape-c|dwshape-c|\n\
                      21|1796626523|N/A|PENDING|0:0|1|0:00||JobHeldUser|(null)|dwshape-b|\n\
                      52|1796626542|NONE|PENDING|0:0|1|0:00||BeginTime|dw-shape-r|dwshape-r|\n";
        let q = parse_squeue(squeue, None);
        assert_eq!(
            q.iter()
                .map(|row| (
                    row.job_id.as_str(),
                    row.state.as_str(),
                    row.exit_code.as_str(),
                    row.comment.as_str(),
                    row.end,
                    row.requeue
                ))
                .collect::<Vec<_>>(),
            [
                (
                    "20",
                    "FAILED",
                    "3:0",
                    "dw-shape-a",
                    Some(1_796_626_524_000),
                    Some(true)
                ),
                (
                    "22",
                    "FAILED",
                    "0:9",
                    "dw-shape-c",
                    Some(1_796_626_524_000),
                    Some(true)
                ),
                ("21", "PENDING", "0:0", "", None, Some(true)),
                ("52", "PENDING", "0:0", "dw-shape-r", None, Some(true)),
            ]
        );
        assert_eq!(q[1].detail.reason, "RaisedSignal:9(Killed)");
        assert_eq!(q[2].detail.nodes, "");
        let sacct = "20|1796626523|1796626524|FAILED|3:0|0|dwsid|None|dw-shape-a|dwshape-a\n\
                     20.batch|1796626524|1796626524|FAILED|3:0|0|dwsid|||batch\n\
                     21|1796626523|Unknown|PENDING|0:0|0|None assigned|None||dwshape-b\n\
                     52|1796626541|1796626541|REQUEUED|0:0|0|dwsid|None|dw-shape-r|dwshape-r\n\
                     52|1796626542|Unknown|PENDING|0:0|0|None assigned|None||dwshape-r\n";
        let r = parse_sacct(sacct, None);
        assert_eq!(
            r.iter()
                .map(|row| (
                    row.job_id.as_str(),
                    row.state.as_str(),
                    row.exit_code.as_str(),
                    row.comment.as_str(),
                    row.end
                ))
                .collect::<Vec<_>>(),
            [
                ("20", "FAILED", "3:0", "dw-shape-a", Some(1_796_626_524_000)),
                ("21", "PENDING", "0:0", "", None),
                (
                    "52",
                    "REQUEUED",
                    "0:0",
                    "dw-shape-r",
                    Some(1_796_626_541_000)
                ),
                ("52", "PENDING", "0:0", "", None),
            ],
            "steps are not jobs; every record of a requeued id is kept"
        );
        assert_eq!(r[1].detail.nodes, "");
        assert_eq!(
            find_key("20|dw-shape-a\n22|dw-shape-c\n21|(null)\n", "dw-shape-c").as_deref(),
            Some("22")
        );
        assert_eq!(parse_parsable("20\n").as_deref(), Some("20"));
        for refused in [
            "sbatch: error: invalid partition specified: nopart\nsbatch: error: Batch job submission failed: Invalid partition name specified",
            "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
        ] {
            assert!(sbatch_refusal_is_certain(refused), "{refused}");
        }
    }

    #[test]
    fn sbatch_argv_matches_the_seed_example() {
        let job = JobConfig {
            executor: ExecutorKind::Slurm,
            slurmrest_url: crate::config::SlurmRestUrl::Http(String::new()),
            slurmrest_token_file: None,
            command: JobCommand::Wrap("python3 /opt/dirwatcher/process_dir.py".into()),
            partition: Some("main".into()),
            account: Some("dev".into()),
            gres: Some("gpu:1".into()),
            time_limit: Some(TimeLimit {
                slurm: "00:10:00".into(),
                duration: Some(Duration::from_secs(600)),
            }),
            job_name_prefix: "dirwatch".into(),
            env: [("A".to_string(), "b".to_string())].into(),
            extra_args: vec!["--qos=normal".into()],
            chdir_to_subdir: true,
            output: None,
            output_group: None,
            command_timeout: Duration::from_secs(5),
            lost_after: Duration::from_secs(3600),
            max_local_jobs: 1,
            umask: 0o022,
            submit_concurrency: 4,
            submit_rate: None,
            arrays: None,
        };
        let spec = JobSpec {
            dir_path: "/data/incoming/case 1".into(),
            job_name: "dirwatch-case_1".into(),
            key: "dw-k-1".into(),
        };
        let inv = sbatch_invocation(&job, "/data/incoming".as_ref(), &spec);
        let args: Vec<String> = inv
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--parsable",
                "--job-name=dirwatch-case_1",
                "--comment=dw-k-1",
                "--partition=main",
                "--account=dev",
                "--gres=gpu:1",
                "--time=00:10:00",
                "--chdir",
                "/data/incoming/case 1",
                "--qos=normal",
                "--wrap=python3 /opt/dirwatcher/process_dir.py '/data/incoming/case 1'",
            ]
        );
        assert!(
            inv.env
                .contains(&("WATCH_DIR".into(), "/data/incoming/case 1".into()))
        );
        assert!(inv.env.contains(&("A".into(), "b".into())));
        // The job's umask, not the daemon's (issue 14, D4).
        assert!(inv.env.contains(&("SLURM_UMASK".into(), "0022".into())));
    }
}
