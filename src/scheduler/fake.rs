//! A scripted scheduler for in-process loop tests: each call takes the next queued answer for its kind
//! (or a default: a fresh job id, "no news", "no such key"), and every call is logged for the test to check.
//! Clones share one script, so a test keeps a handle while the daemon owns another. Test-only: a real
//! cluster is tested against real Slurm (`tests/it`), this is for what a cluster cannot do on demand.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    CancelError, JobRow, JobSpec, QueryError, Scheduler, Sightings, Source, SubmitError, TrackedJob,
};
use crate::time::Millis;

/// One call the daemon made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `submit`, with the submission key and the job name.
    Submit {
        /// `JobSpec::key`.
        key: String,
        /// `JobSpec::job_name`.
        job_name: String,
    },
    /// `submit_array`, with the array's key, job name and the directories of its tasks, in task order.
    SubmitArray {
        /// `ArraySpec::key`.
        key: String,
        /// `ArraySpec::job_name`.
        job_name: String,
        /// The task's directories (their last component), task 0 first.
        dirs: Vec<String>,
    },
    /// `query`, with the job ids asked for.
    Query(Vec<String>),
    /// `lookup`, with the key.
    Lookup(String),
    /// `cancel`, with the job id.
    Cancel(String),
}

/// What a submit answers.
pub type SubmitAnswer = Result<String, SubmitError>;
/// One row of a scripted query answer.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// A row that is provably about the tracked job with this id (its key, name and intent time), from
    /// `source`.
    Ours {
        /// Job id.
        job_id: String,
        /// Where the row comes from.
        source: Source,
        /// State word.
        state: String,
        /// `code:signal`.
        exit_code: String,
        /// The controller's requeue flag.
        requeue: Option<bool>,
        /// Reason, nodes, run time.
        detail: crate::engine::JobDetail,
    },
    /// A row as given (e.g. an old job of a reused id).
    Row(JobRow),
    /// The job with this id reported steady (its line unchanged since the last answer, see
    /// [`Sightings::steady`]): no row.
    Steady(String),
}

/// What a query answers: the rows, and which sources answered (both, unless a test says otherwise).
pub type QueryAnswer = Result<(Vec<Scripted>, bool, bool), QueryError>;
/// What a lookup answers.
pub type LookupAnswer = Result<Option<String>, QueryError>;

#[derive(Default)]
struct Script {
    submits: VecDeque<SubmitAnswer>,
    queries: VecDeque<QueryAnswer>,
    lookups: VecDeque<LookupAnswer>,
    calls: Vec<Call>,
    next_id: u64,
    /// Called after each submit (e.g. to send a signal event in the middle of a batch).
    after_submit: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// The scripted scheduler (a cheap handle).
#[derive(Clone, Default)]
pub struct Fake {
    script: Arc<Mutex<Script>>,
}

impl std::fmt::Debug for Fake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fake")
            .field("calls", &self.script().calls)
            .finish()
    }
}

impl Fake {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the answer of a later `submit`.
    pub fn on_submit(&self, a: SubmitAnswer) -> &Self {
        self.script().submits.push_back(a);
        self
    }

    /// Queues the answer of a later `query`.
    pub fn on_query(&self, a: QueryAnswer) -> &Self {
        self.script().queries.push_back(a);
        self
    }

    /// Queues a query answer in which the controller shows each `(job id, state)` as our job, exit code
    /// `0:0`, requeue on.
    pub fn on_query_states(&self, states: &[(&str, &str)]) -> &Self {
        let rows = states
            .iter()
            .map(|(id, st)| ours(id, Source::Controller, st, "0:0"))
            .collect();
        self.on_query(Ok((rows, true, true)))
    }

    /// Queues a query answer of these rows, both sources answering.
    pub fn on_query_rows(&self, rows: Vec<Scripted>) -> &Self {
        self.on_query(Ok((rows, true, true)))
    }

    /// Queues the answer of a later `lookup`.
    pub fn on_lookup(&self, a: LookupAnswer) -> &Self {
        self.script().lookups.push_back(a);
        self
    }

    /// Runs `hook` after every submit.
    pub fn after_submit(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.script().after_submit = Some(Arc::new(hook));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.script().calls.clone()
    }

    /// The keys submitted so far, in order.
    pub fn submitted_keys(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Submit { key, .. } => Some(key),
                _ => None,
            })
            .collect()
    }

    /// How many calls of the kind `pick` selects were made.
    pub fn count(&self, pick: impl Fn(&Call) -> bool) -> usize {
        self.script().calls.iter().filter(|c| pick(c)).count()
    }
}

/// A row about our job `job_id`, from `source`, in `state` with `exit_code`.
pub fn ours(job_id: &str, source: Source, state: &str, exit_code: &str) -> Scripted {
    Scripted::Ours {
        job_id: job_id.into(),
        source,
        state: state.into(),
        exit_code: exit_code.into(),
        requeue: (source == Source::Controller).then_some(true),
        detail: Default::default(),
    }
}

/// Like [`ours`], with the reason, nodes and run time the scheduler reports.
pub fn ours_with(
    job_id: &str,
    source: Source,
    state: &str,
    exit_code: &str,
    detail: crate::engine::JobDetail,
) -> Scripted {
    match ours(job_id, source, state, exit_code) {
        Scripted::Ours {
            job_id,
            source,
            state,
            exit_code,
            requeue,
            ..
        } => Scripted::Ours {
            job_id,
            source,
            state,
            exit_code,
            requeue,
            detail,
        },
        row => row,
    }
}

impl Scheduler for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn jobs_run(&self) -> super::JobsRun {
        super::JobsRun::OnCluster
    }

    fn preflight(&mut self) -> super::Preflight {
        super::Preflight::NothingToAsk("the scheduler is scripted")
    }

    fn describe(&self, spec: &JobSpec) -> String {
        format!("would submit {} (scripted)", spec.job_name)
    }

    fn submit(&mut self, spec: &JobSpec) -> Result<String, SubmitError> {
        let (answer, hook) = {
            let mut s = self.script();
            s.calls.push(Call::Submit {
                key: spec.key.clone(),
                job_name: spec.job_name.clone(),
            });
            let a = s.submits.pop_front().unwrap_or_else(|| {
                s.next_id += 1;
                Ok(format!("{}", 1000 + s.next_id))
            });
            (a, s.after_submit.clone())
        };
        if let Some(h) = hook {
            h();
        }
        answer
    }

    fn submit_array(&mut self, spec: &super::array::ArraySpec) -> Result<String, SubmitError> {
        let mut s = self.script();
        let dirs = spec
            .tasks
            .iter()
            .map(|(p, _)| {
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        s.calls.push(Call::SubmitArray {
            key: spec.key.clone(),
            job_name: spec.job_name.clone(),
            dirs,
        });
        s.submits.pop_front().unwrap_or_else(|| {
            s.next_id += 1;
            Ok(format!("{}", 1000 + s.next_id))
        })
    }

    fn query(
        &mut self,
        jobs: &[TrackedJob],
        _decided: &super::Decided<'_>,
    ) -> Result<Sightings, QueryError> {
        let mut s = self.script();
        s.calls
            .push(Call::Query(jobs.iter().map(|j| j.job_id.clone()).collect()));
        let (scripted, accounting, controller) = s
            .queries
            .pop_front()
            .unwrap_or_else(|| Ok((Vec::new(), true, true)))?;
        let steady = scripted
            .iter()
            .filter_map(|r| match r {
                Scripted::Steady(id) => jobs.iter().position(|j| j.job_id == *id),
                _ => None,
            })
            .collect();
        let rows = scripted
            .into_iter()
            .filter_map(|r| match r {
                Scripted::Steady(_) => None,
                Scripted::Row(row) => Some(row),
                Scripted::Ours {
                    job_id,
                    source,
                    state,
                    exit_code,
                    requeue,
                    detail,
                } => {
                    let j = jobs.iter().find(|j| j.job_id == job_id)?;
                    Some(JobRow {
                        source,
                        job_id,
                        name: j.job_name.to_string(),
                        comment: j.key.to_string(),
                        submit: Some(j.since),
                        end: None,
                        state,
                        exit_code,
                        requeue,
                        detail,
                    })
                }
            })
            .collect();
        Ok(Sightings {
            rows,
            accounting,
            controller,
            steady,
        })
    }

    fn lookup(
        &mut self,
        key: &str,
        _job_name: &str,
        _since: Millis,
    ) -> Result<Option<String>, QueryError> {
        let mut s = self.script();
        s.calls.push(Call::Lookup(key.to_string()));
        s.lookups.pop_front().unwrap_or(Ok(None))
    }

    fn cancel(&mut self, job: &TrackedJob) -> Result<(), CancelError> {
        self.script().calls.push(Call::Cancel(job.job_id.clone()));
        Ok(())
    }
}
