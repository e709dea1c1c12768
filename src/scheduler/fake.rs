//! A scripted scheduler for in-process loop tests: each call takes the next queued answer for its kind
//! (or a default: a fresh job id, "no news", "no such key"), and every call is logged for the test to check.
//! Clones share one script, so a test keeps a handle while the daemon owns another. Test-only: a real
//! cluster is tested against real Slurm (`tests/it`), this is for what a cluster cannot do on demand.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{JobReport, JobSpec, QueryError, Scheduler, SubmitError};
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
    /// `query`, with the job ids asked for.
    Query(Vec<String>),
    /// `lookup`, with the key.
    Lookup(String),
}

/// What a submit answers.
pub type SubmitAnswer = Result<String, SubmitError>;
/// What a query answers.
pub type QueryAnswer = Result<HashMap<String, JobReport>, QueryError>;
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

    /// Queues a query answer in which each `(job id, state)` has exit code `0:0`.
    pub fn on_query_states(&self, states: &[(&str, &str)]) -> &Self {
        let map = states
            .iter()
            .map(|(id, st)| {
                (
                    id.to_string(),
                    JobReport {
                        state: st.to_string(),
                        exit_code: "0:0".into(),
                    },
                )
            })
            .collect();
        self.on_query(Ok(map))
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

impl Scheduler for Fake {
    fn name(&self) -> &'static str {
        "fake"
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

    fn query(&mut self, job_ids: &[String]) -> Result<HashMap<String, JobReport>, QueryError> {
        let mut s = self.script();
        s.calls.push(Call::Query(job_ids.to_vec()));
        s.queries.pop_front().unwrap_or_else(|| Ok(HashMap::new()))
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
}
