//! Slurm through slurmrestd (its OpenAPI over HTTP), for a daemon on a host that is not a Slurm client: a
//! job submitted with `POST /slurm/<v>/job/submit`, the controller asked with `GET /slurm/<v>/job/<id>`
//! (or `/jobs` for many), accounting with `GET /slurmdb/<v>/jobs?step=<id>&step=…&start_time=…`, a job ended
//! with `DELETE /slurm/<v>/job/<id>` once its name is checked. One keep-alive connection (a `ureq`
//! agent), no child process per call; the data_parser version `<v>` chosen from what the server offers
//! (`GET /openapi/v3`); the token (JWT) from `SLURM_JWT` or a file, read again before it expires.
//!
//! Must never: put the token in a log or an error, decide whether a row is about our job (it reports
//! every row, as the command-line transport does; the engine judges), or turn "slurmrestd did not answer"
//! into a failure.

use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::parse::{detail_text, split_job_id};
use super::{by_cluster, now_ms};
use crate::config::{Config, JobCommand, JobConfig, SlurmRestUrl, umask_text};
use crate::engine::{JobDetail, JobRow, Source, TrackedJob};
use crate::scheduler::{
    Acceptance, CancelError, JobSpec, Preflight, QueryError, SubmitError, wrap_line,
};
use crate::time::Millis;

/// The data_parser versions this transport reads, newest first: the fields it sends and reads (the job
/// description, `job_id`, `errors`; a job's name, comment, `job_state`, times, `exit_code`, `requeue`,
/// nodes and reason; accounting's `comment.job`, `state`, `time`; the `step`/`start_time` query) have the
/// same names, types and meaning in each. v0.0.45–v0.0.42 were checked against slurmrestd 26.05.5
/// (which offers exactly these: its OpenAPI schemas and SchedMD's parsers of the 26.05 branch, and its
/// answers in the tests below), v0.0.42 against 24.11.5 too. What differs is read either way:
/// `job_state` gains `EXPEDITING` (v0.0.44 on, see [`state_word`]) and a ping says `responding`
/// instead of `pinged` (v0.0.45). Not v0.0.41 and older (Slurm 24.05 and before): they refuse the
/// accounting query's `start_time` as a number (24.11.5: HTTP 422 "Parsing of … for timestamp failed"),
/// so no job could be judged from accounting.
pub const KNOWN_VERSIONS: [&str; 4] = ["v0.0.45", "v0.0.44", "v0.0.43", "v0.0.42"];

/// The largest answer read (bytes): a `GET jobs` of v0.0.45 is about 8 KB per job the controller holds.
pub const ANSWER_LIMIT: u64 = 64 * 1024 * 1024;

/// A token is read again when it expires within this long, so a renewed file is picked up in time.
const TOKEN_MARGIN_SEC: i64 = 300;

/// Where the JWT comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// The daemon's `SLURM_JWT` (read at start; it cannot change under a running process).
    Env(String),
    /// A file the site renews (e.g. `scontrol token lifespan=… > file` from a timer): `SLURM_JWT=<jwt>`
    /// as scontrol prints it, or the bare token.
    File(PathBuf),
}

/// The token in use and when it expires (epoch seconds, from its `exp` claim).
#[derive(Debug, Default)]
struct Held {
    token: Option<(String, Option<i64>)>,
    version: Option<&'static str>,
}

/// slurmrestd, as the daemon asks it for one config.
pub struct Rest {
    agent: ureq::Agent,
    /// What requests are sent to: `http://host:port`, no trailing slash (over a unix socket a
    /// placeholder host: the connector opens the socket whatever host a request names).
    base: String,
    /// The address in words: the URL, or `unix:/path`.
    addr: String,
    source: TokenSource,
    held: Mutex<Held>,
    job: JobConfig,
    root: PathBuf,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest").field("addr", &self.addr).finish()
    }
}

/// A failed call, in words without the token.
#[derive(Debug)]
enum CallError {
    /// Nothing was sent: the connection was refused or the name did not resolve. No job can exist.
    NotSent(String),
    /// The request may have reached the server (a timeout, a cut connection).
    Lost(String),
    /// The token is missing or expired, or the server speaks no version we read: what to do.
    Setup(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NotSent(s) | CallError::Lost(s) | CallError::Setup(s) => f.write_str(s),
        }
    }
}

impl Rest {
    /// The REST transport for this config: `url` (`http://host:port`, or a unix socket: one
    /// kept-alive connection to it as over TCP) and where the token comes from.
    pub fn new(cfg: &Config, url: &SlurmRestUrl, source: TokenSource) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.job.command_timeout))
            .max_redirects(0)
            .http_status_as_error(false)
            .user_agent(format!("dirwatcher/{}", env!("CARGO_PKG_VERSION")))
            .build();
        let (agent, base) = match url {
            SlurmRestUrl::Http(u) => (config.into(), u.trim_end_matches('/').to_string()),
            SlurmRestUrl::Unix(path) => (
                ureq::Agent::with_parts(
                    config,
                    super::unix::SocketConnector(path.clone()),
                    super::unix::NoResolver,
                ),
                "http://localhost".to_string(),
            ),
        };
        Rest {
            agent,
            base,
            addr: url.to_string(),
            source,
            held: Mutex::new(Held::default()),
            job: cfg.job.clone(),
            root: cfg.watch.root.clone(),
        }
    }

    /// `path` on this server, in words: the URL, or the path and the socket.
    fn at(&self, path: &str) -> String {
        if self.addr == self.base {
            format!("{}{path}", self.base)
        } else {
            format!("{path} on {}", self.addr)
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token to send: the one held while it is good for [`TOKEN_MARGIN_SEC`] more, else read again.
    fn token(&self) -> Result<String, CallError> {
        let now = now_ms() / 1000;
        let mut held = self.held();
        if let Some((t, exp)) = &held.token
            && exp.is_none_or(|e| e - now > TOKEN_MARGIN_SEC)
        {
            return Ok(t.clone());
        }
        let (token, whence) = match &self.source {
            TokenSource::Env(t) => (t.clone(), "the `SLURM_JWT` variable".to_string()),
            TokenSource::File(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    CallError::Setup(format!(
                        "cannot read the slurmrestd token file `{}`: {e}; write a token there \
                         (`scontrol token username=USER lifespan=SECONDS`)",
                        p.display()
                    ))
                })?;
                (bare_token(&text), format!("`{}`", p.display()))
            }
        };
        if token.is_empty() {
            return Err(CallError::Setup(format!(
                "no slurmrestd token in {whence}: set `job.slurmrest_token_file` to a file holding one \
                 (`scontrol token username=USER lifespan=SECONDS`), or give the daemon `SLURM_JWT`"
            )));
        }
        let exp = token_expiry(&token);
        if let Some(e) = exp.filter(|e| *e <= now) {
            held.token = None;
            return Err(CallError::Setup(format!(
                "the slurmrestd token from {whence} expired {} s ago: renew it (`scontrol token \
                 username=USER lifespan=SECONDS`, e.g. from a timer, into the file; a token in \
                 `SLURM_JWT` needs a restart)",
                now - e
            )));
        }
        held.token = Some((token.clone(), exp));
        Ok(token)
    }

    /// One request: `method` on `path` below the server, with the token and a JSON body; the status and
    /// the JSON answer (`Value::Null` when it is not JSON).
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), CallError> {
        self.call_as(method, path, body)
    }

    /// [`Self::call`], the answer read as `T` (its default when it is not such JSON).
    fn call_as<T: serde::de::DeserializeOwned + Default>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, T), CallError> {
        let token = self.token()?;
        let url = format!("{}{path}", self.base);
        let sent = match (method, body) {
            ("POST", Some(b)) => self
                .agent
                .post(&url)
                .header("X-SLURM-USER-TOKEN", &token)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("X-SLURM-USER-TOKEN", &token)
                .call(),
            _ => self
                .agent
                .get(&url)
                .header("X-SLURM-USER-TOKEN", &token)
                .call(),
        };
        let mut resp = sent.map_err(|e| call_error(&e, &self.addr))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(ANSWER_LIMIT)
            .read_to_string()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => CallError::Lost(format!(
                    "slurmrestd at {}: its answer to `{method} {path}` is larger than {} MiB, the most \
                     dirwatcher reads of one answer (too many jobs in it: see docs/slurm.md, what \
                     slurmrestd costs)",
                    self.addr,
                    ANSWER_LIMIT >> 20
                )),
                e => CallError::Lost(format!("slurmrestd at {}: {e}", self.addr)),
            })?;
        if status == 401 || status == 403 {
            self.held().token = None;
            return Err(CallError::Setup(format!(
                "slurmrestd at {} refused the token (HTTP {status}): check that it is a token of the \
                 user dirwatcher submits as and not expired (`scontrol token username=USER`)",
                self.addr
            )));
        }
        Ok((status, serde_json::from_str(&text).unwrap_or_default()))
    }

    /// `GET path` of the controller (`job/<id>`, `jobs`), read as [`ControllerAnswer`].
    fn get_jobs(&self, path: &str) -> Result<(u16, ControllerAnswer), CallError> {
        self.call_as("GET", path, None)
    }

    /// The data_parser version to speak: the newest of [`KNOWN_VERSIONS`] the server offers for both the
    /// controller and accounting, asked once.
    fn version(&self) -> Result<&'static str, CallError> {
        if let Some(v) = self.held().version {
            return Ok(v);
        }
        let (status, spec) = self.call("GET", "/openapi/v3", None)?;
        let paths: Vec<&str> = spec["paths"]
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let offered = |prefix: &str, v: &str| {
            paths
                .iter()
                .any(|p| p.starts_with(&format!("/{prefix}/{v}/")))
        };
        let Some(v) = KNOWN_VERSIONS
            .iter()
            .copied()
            .find(|v| offered("slurm", v) && offered("slurmdb", v))
        else {
            let mut seen: Vec<&str> = paths
                .iter()
                .filter_map(|p| p.split('/').nth(2))
                .filter(|v| v.starts_with("v0."))
                .collect();
            seen.sort_unstable();
            seen.dedup();
            return Err(CallError::Setup(format!(
                "slurmrestd at {} (HTTP {status}) offers data_parser {} and dirwatcher reads {}: load \
                 one of them in slurmrestd (`-d`), or use `executor: slurm`",
                self.addr,
                if seen.is_empty() {
                    "none".into()
                } else {
                    seen.join(", ")
                },
                KNOWN_VERSIONS.join(", ")
            )));
        };
        self.held().version = Some(v);
        Ok(v)
    }

    /// The submission body for `spec`: what `sbatch` is given on the command line, as slurmrestd's job
    /// description (the environment by the same rule as the command line's).
    pub fn submit_body(&self, spec: &JobSpec) -> Result<Value, String> {
        let j = &self.job;
        let mut env: Vec<String> = crate::process::child_env(std::env::vars_os(), &[])
            .into_iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        env.push(format!("WATCH_DIR={}", spec.dir_path.to_string_lossy()));
        env.push(format!("SLURM_UMASK={}", umask_text(j.umask)));
        env.extend(j.env.iter().map(|(k, v)| format!("{k}={v}")));
        let cwd = if j.chdir_to_subdir {
            spec.dir_path.clone()
        } else {
            std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
        };
        let mut desc = json!({
            "name": spec.job_name,
            "comment": spec.key,
            "current_working_directory": cwd.to_string_lossy(),
            "environment": env,
        });
        let d = desc.as_object_mut().expect("an object");
        match &j.command {
            JobCommand::Wrap(w) => {
                let line = wrap_line(w, spec.dir_path.as_os_str());
                d.insert(
                    "script".into(),
                    format!("#!/bin/sh\n{}\n", line.to_string_lossy()).into(),
                );
            }
            JobCommand::Script(s) => {
                let text = std::fs::read_to_string(s)
                    .map_err(|e| format!("cannot read `job.job_script` `{}`: {e}", s.display()))?;
                d.insert("script".into(), text.into());
                d.insert(
                    "argv".into(),
                    json!([s.to_string_lossy(), spec.dir_path.to_string_lossy()]),
                );
            }
        }
        if let Some(p) = &j.partition {
            d.insert("partition".into(), p.as_str().into());
        }
        if let Some(a) = &j.account {
            d.insert("account".into(), a.as_str().into());
        }
        if let Some(g) = &j.gres {
            d.insert("tres_per_node".into(), format!("gres/{g}").into());
        }
        if let Some(t) = &j.time_limit {
            d.insert(
                "time_limit".into(),
                match t.duration {
                    Some(l) => {
                        json!({"set": true, "infinite": false, "number": l.as_secs().div_ceil(60)})
                    }
                    None => json!({"set": true, "infinite": true, "number": 0}),
                },
            );
        }
        if let Some(o) = &j.output {
            d.insert(
                "standard_output".into(),
                self.root.join(o).to_string_lossy().into(),
            );
        }
        Ok(json!({ "job": desc }))
    }

    /// Submits one job; classified as the command line's answers are: refused (no job) or uncertain.
    pub fn submit(&self, spec: &JobSpec) -> Result<String, SubmitError> {
        let body = self.submit_body(spec).map_err(SubmitError::Refused)?;
        let v = self
            .version()
            .map_err(|e| SubmitError::Refused(e.to_string()))?;
        match self.call("POST", &format!("/slurm/{v}/job/submit"), Some(&body)) {
            Ok((status, answer)) => match answer["job_id"].as_u64() {
                Some(id) if status == 200 => Ok(id.to_string()),
                _ if status >= 400 && !errors(&answer).is_empty() => {
                    Err(SubmitError::Refused(format!(
                        "slurmrestd refused the job (HTTP {status}): {}",
                        errors(&answer)
                    )))
                }
                _ => Err(SubmitError::Uncertain(format!(
                    "slurmrestd answered HTTP {status} without a job id: {}",
                    errors(&answer)
                ))),
            },
            Err(e @ (CallError::NotSent(_) | CallError::Setup(_))) => {
                Err(SubmitError::Refused(e.to_string()))
            }
            Err(e @ CallError::Lost(_)) => Err(SubmitError::Uncertain(e.to_string())),
        }
    }

    /// The controller's rows of `jobs`: one `GET job/<id>` each on the kept-alive connection, or one
    /// `GET jobs` for more than `by_id_up_to` (the controller's whole list, filtered here).
    pub fn controller(
        &self,
        jobs: &[TrackedJob],
        by_id_up_to: usize,
    ) -> Result<Vec<JobRow>, QueryError> {
        let v = self.version().map_err(query_error)?;
        let mut rows = Vec::new();
        if jobs.len() > by_id_up_to {
            let (status, answer) = self
                .get_jobs(&format!("/slurm/{v}/jobs"))
                .map_err(query_error)?;
            if status != 200 {
                return Err(QueryError(format!(
                    "slurmrestd: GET jobs answered HTTP {status}: {}",
                    error_list(&answer.errors)
                )));
            }
            let asked: std::collections::HashSet<&str> =
                jobs.iter().map(|j| split_job_id(&j.job_id).0).collect();
            rows.extend(
                answer
                    .rows(now_ms())
                    .into_iter()
                    .filter(|r| asked.contains(r.job_id.as_str())),
            );
            return Ok(rows);
        }
        for j in jobs {
            let (id, _) = split_job_id(&j.job_id);
            let (status, answer) = self
                .get_jobs(&format!("/slurm/{v}/job/{id}"))
                .map_err(query_error)?;
            match status {
                200 => rows.extend(answer.rows(now_ms())),
                // The controller has forgotten it ("Invalid job id specified"): no row, no error.
                404 => {}
                _ => {
                    return Err(QueryError(format!(
                        "slurmrestd: GET job/{id} answered HTTP {status}: {}",
                        error_list(&answer.errors)
                    )));
                }
            }
        }
        Ok(rows)
    }

    /// Accounting's rows of `jobs`: one bounded `GET /slurmdb/<v>/jobs` per chunk of ids.
    pub fn accounting(&self, jobs: &[&TrackedJob]) -> Result<Vec<JobRow>, QueryError> {
        let v = self.version().map_err(query_error)?;
        let oldest = jobs.iter().map(|j| j.since).min().unwrap_or_else(now_ms);
        let start = start_time(oldest);
        let mut rows = Vec::new();
        for (_, ids) in by_cluster(jobs.iter().copied()) {
            let path = accounting_path(v, &ids, start);
            let (status, answer) = self.call("GET", &path, None).map_err(query_error)?;
            if status != 200 {
                return Err(QueryError(format!(
                    "slurmrestd: GET slurmdb jobs answered HTTP {status}: {}",
                    errors(&answer)
                )));
            }
            rows.extend(accounting_rows(&answer));
        }
        Ok(rows)
    }

    /// Accounting's jobs of the token's user (as `sacct` lists its user's) that were eligible between
    /// `from_secs_ago` and `to_secs_ago` (0: now) seconds ago: `sacct --starttime --endtime` as one
    /// `GET /slurmdb/<v>/jobs?start_time=…&end_time=…&users=…`.
    pub fn earlier_jobs(
        &self,
        from_secs_ago: u64,
        to_secs_ago: u64,
    ) -> Result<Vec<super::EarlierJob>, String> {
        let v = self.version().map_err(|e| e.to_string())?;
        let now = now_ms() / 1000;
        let ago = |s: u64| (now - i64::try_from(s).unwrap_or(i64::MAX)).max(1);
        let mut path = format!("/slurmdb/{v}/jobs?start_time={}", ago(from_secs_ago));
        if to_secs_ago > 0 {
            path.push_str(&format!("&end_time={}", ago(to_secs_ago)));
        }
        let token = self.token().map_err(|e| e.to_string())?;
        if let Some(user) = token_user(&token) {
            path.push_str(&format!("&users={user}"));
        }
        let (status, answer) = self.call("GET", &path, None).map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!(
                "slurmrestd: GET slurmdb jobs answered HTTP {status}: {}",
                errors(&answer)
            ));
        }
        Ok(earlier_jobs_of(&answer))
    }

    /// The comment the controller shows for job `id` (`GET job/<id>`).
    pub fn controller_comment(&self, id: &str) -> Option<String> {
        let v = self.version().ok()?;
        let (status, answer) = self
            .call("GET", &format!("/slurm/{v}/job/{id}"), None)
            .ok()?;
        (status == 200)
            .then(|| controller_rows(&answer, now_ms()))?
            .into_iter()
            .find(|r| r.job_id == id)
            .map(|r| r.comment)
            .filter(|c| !c.is_empty())
    }

    /// The job that carries `key`: the controller's list first, then accounting since the intent (by
    /// comment; without comments, by our exact name and a submit time after the intent).
    pub fn lookup(
        &self,
        key: &str,
        job_name: &str,
        since: Millis,
    ) -> Result<Option<String>, QueryError> {
        let v = self.version().map_err(query_error)?;
        let (status, answer) = self
            .get_jobs(&format!("/slurm/{v}/jobs"))
            .map_err(query_error)?;
        if status != 200 {
            return Err(QueryError(format!(
                "slurmrestd: GET jobs answered HTTP {status}"
            )));
        }
        let ctl = answer.rows(now_ms());
        if let Some(r) = ctl.iter().find(|r| r.comment == key) {
            return Ok(Some(r.job_id.clone()));
        }
        let path = format!("/slurmdb/{v}/jobs?start_time={}", start_time(since));
        let (status, answer) = self.call("GET", &path, None).map_err(query_error)?;
        if status != 200 {
            return Err(QueryError(format!(
                "slurmrestd: GET slurmdb jobs answered HTTP {status}"
            )));
        }
        let acct = accounting_rows(&answer);
        if let Some(r) = acct.iter().find(|r| r.comment == key) {
            return Ok(Some(r.job_id.clone()));
        }
        Ok(acct
            .iter()
            .filter(|r| {
                r.comment.is_empty()
                    && r.name == job_name
                    && r.submit.is_some_and(|s| s >= since - 60_000)
            })
            .min_by_key(|r| r.submit)
            .map(|r| r.job_id.clone()))
    }

    /// Ends `job` if the controller's job of that id still has our name (a reused id of a stranger's
    /// job is left alone); `Ok` when it had already ended or is forgotten.
    pub fn cancel(&self, job: &TrackedJob) -> Result<(), CancelError> {
        let cancel_error = |e: CallError| CancelError(e.to_string());
        let v = self.version().map_err(cancel_error)?;
        let (id, _) = split_job_id(&job.job_id);
        let (status, answer) = self
            .call("GET", &format!("/slurm/{v}/job/{id}"), None)
            .map_err(cancel_error)?;
        if status == 404 {
            return Ok(());
        }
        let rows = controller_rows(&answer, now_ms());
        if !rows.iter().any(|r| *r.name == *job.job_name) {
            return Ok(());
        }
        let (status, answer) = self
            .call("DELETE", &format!("/slurm/{v}/job/{id}"), None)
            .map_err(cancel_error)?;
        match status {
            200 => match cancel_refusal(&answer) {
                None => Ok(()),
                Some(why) => Err(CancelError(format!(
                    "slurmrestd: DELETE job/{id} was refused: {why}"
                ))),
            },
            404 => Ok(()),
            _ if errors(&answer).contains("already completing or completed") => Ok(()),
            _ => Err(CancelError(format!(
                "slurmrestd: DELETE job/{id} answered HTTP {status}: {}",
                errors(&answer)
            ))),
        }
    }

    /// `check-config --slurm` through slurmrestd: the version it speaks, the token it takes, and the
    /// controller answering (`GET ping`). slurmrestd has no `--test-only`: the job itself is not checked.
    pub fn preflight(&self) -> Preflight {
        let what = format!(
            "GET {}, then GET /slurm/<version>/ping",
            self.at("/openapi/v3")
        );
        let answer = match self.version().and_then(|v| {
            let (status, answer) = self.call("GET", &format!("/slurm/{v}/ping"), None)?;
            Ok((v, status, answer))
        }) {
            Ok((v, 200, answer)) => Acceptance::Accepted(format!(
                "slurmrestd speaks data_parser {v}, takes the token, and the controller answers ({}); \
                 the job itself is not checked (slurmrestd has no --test-only)",
                ping_word(&answer)
            )),
            Ok((_, status, answer)) => Acceptance::NotAsked(format!(
                "slurmrestd answered ping with HTTP {status}: {}",
                errors(&answer)
            )),
            Err(e) => Acceptance::NotAsked(e.to_string()),
        };
        Preflight::Asked {
            who: "slurmrestd",
            what,
            harmless: "no job is submitted",
            answer,
        }
    }

    /// What would be sent for `spec`: the URL and the job description.
    pub fn describe(&self, spec: &JobSpec) -> String {
        match self.submit_body(spec) {
            Ok(mut body) => {
                // The environment is the daemon's: long, and not the job's own words.
                if let Some(env) = body["job"]["environment"].as_array_mut() {
                    env.retain(|e| {
                        e.as_str().is_some_and(|e| {
                            e.starts_with("WATCH_DIR=")
                                || self.job.env.keys().any(|k| e.starts_with(&format!("{k}=")))
                        })
                    });
                }
                format!(
                    "would POST to {} (job {}):\n  {}",
                    self.at("/slurm/<version>/job/submit"),
                    crate::logging::field_str(&spec.job_name),
                    crate::out::json_safe(&body.to_string())
                )
            }
            Err(e) => format!("would not submit: {e}"),
        }
    }
}

fn query_error(e: CallError) -> QueryError {
    QueryError(e.to_string())
}

/// A transport error in words, and whether the request can have been sent.
fn call_error(e: &ureq::Error, base: &str) -> CallError {
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
            CallError::NotSent(format!("slurmrestd at {base} cannot be reached: {e}"))
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            CallError::NotSent(format!("slurmrestd at {base} refused the connection: {e}"))
        }
        // Only a unix socket's connect fails so: no socket at the path, or no permission to it.
        ureq::Error::Io(io) if super::unix::not_sent(io) => CallError::NotSent(format!(
            "slurmrestd's socket {base} cannot be reached: {e}; is slurmrestd running, and may \
             dirwatcher's user open the socket (its folder's and its own permissions)?"
        )),
        _ => CallError::Lost(format!("slurmrestd at {base}: {e}")),
    }
}

/// The accounting query about `ids`: one `step=` per id. slurmrestd's query parser takes no comma (24.11
/// answers `step=1,2` with HTTP 400 "Unable to parse query", 26.05 with HTTP 500; `%2C` is refused as a
/// step id), and turns a repeated key into a list, which every version reads as the step list.
fn accounting_path(v: &str, ids: &[&str], start: i64) -> String {
    let mut path = format!("/slurmdb/{v}/jobs?");
    for id in ids {
        path.push_str("step=");
        path.push_str(id);
        path.push('&');
    }
    path.push_str(&format!("start_time={start}"));
    path
}

/// `start_time` for accounting: an hour before `oldest` (seconds since the epoch), never 1970.
fn start_time(oldest: Millis) -> i64 {
    (oldest / 1000 - super::STARTTIME_MARGIN.as_secs() as i64).max(1)
}

/// The first controller's ping in words: `pinged` ("UP"/"DOWN") up to v0.0.44, `responding` (a bool)
/// from v0.0.45 on.
fn ping_word(answer: &Value) -> &str {
    let ping = &answer["pings"][0];
    match (ping["pinged"].as_str(), ping["responding"].as_bool()) {
        (Some(w), _) => w,
        (None, Some(true)) => "UP",
        (None, Some(false)) => "DOWN",
        (None, None) => "?",
    }
}

/// Why a `DELETE job/<id>` answered with HTTP 200 did not end the job, if it did not: slurmrestd puts
/// scancel's refusals (e.g. "Access/permission denied", 2002, for another user's job) in the answer's
/// `status` list, not in its HTTP status or `errors`. A job that had already ended (2021, "Job/step
/// already completing or completed") or is forgotten (2017, "Invalid job id specified") is not a refusal,
/// as for scancel.
pub fn cancel_refusal(answer: &Value) -> Option<String> {
    const ENDED: [i64; 2] = [2017, 2021];
    let refusals: Vec<String> = answer["status"]
        .as_array()?
        .iter()
        .filter_map(|s| {
            let code = s["error"]["code"].as_i64().unwrap_or(0);
            (code != 0 && !ENDED.contains(&code)).then(|| {
                let words = s["error"]["message"]
                    .as_str()
                    .or(s["error"]["string"].as_str())
                    .unwrap_or("?");
                format!("{words} (Slurm error {code})")
            })
        })
        .collect();
    (!refusals.is_empty()).then(|| refusals.join("; "))
}

/// The `errors` of an answer, in words.
fn errors(answer: &Value) -> String {
    error_list(&answer["errors"])
}

/// An `errors` list, in words.
fn error_list(list: &Value) -> String {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let d = e["description"].as_str().unwrap_or_default();
                    let w = e["error"].as_str().unwrap_or_default();
                    match (d.is_empty(), w.is_empty()) {
                        (false, false) => format!("{d}: {w}"),
                        (true, _) => w.to_string(),
                        (false, true) => d.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// The token in a file: `SLURM_JWT=<token>` as `scontrol token` prints it, or the bare token.
pub fn bare_token(text: &str) -> String {
    let t = text.trim();
    t.strip_prefix("SLURM_JWT=").unwrap_or(t).trim().to_string()
}

/// A JWT's `exp` claim (epoch seconds), read without checking the signature (the server checks it).
pub fn token_expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64url(payload)?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["exp"].as_i64()
}

/// A JWT's user (`sun`, the claim `scontrol token username=…` writes), when it is a plain user name.
pub fn token_user(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&base64url(payload)?).ok()?;
    claims["sun"]
        .as_str()
        .filter(|u| {
            !u.is_empty()
                && u.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .map(str::to_string)
}

fn base64url(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// `{set, infinite, number}` (or a bare number) as epoch milliseconds; none when unset or 0.
fn time_ms(v: &Value) -> Option<Millis> {
    let n = match v {
        Value::Object(o) if o.get("set").and_then(Value::as_bool) == Some(false) => return None,
        Value::Object(o) => o.get("number")?.as_i64()?,
        v => v.as_i64()?,
    };
    (n > 0 && n < u32::MAX as i64 - 1).then(|| n * 1000)
}

/// An exit code object as `code:signal`.
pub fn exit_code(v: &Value) -> String {
    let code = v["return_code"]["number"].as_i64().unwrap_or(0);
    let sig = if v["signal"]["id"]["set"].as_bool() == Some(true) {
        v["signal"]["id"]["number"].as_i64().unwrap_or(0)
    } else {
        0
    };
    format!("{code}:{sig}")
}

/// The state word squeue would print for a `job_state` list: the flag that names a
/// transition (`COMPLETING`, `REQUEUED`, …) before the base state, in the order of Slurm's
/// `job_state_string` (26.05; 24.11's is the same without `EXPEDITING`, which data_parser v0.0.44 and
/// later list). Flags it never prints (`RECONFIG_FAIL`, `LAUNCH_FAILED`, `POWER_UP_NODE`) leave the base
/// state.
pub fn state_word(states: &[&str]) -> String {
    const FLAGS: [&str; 13] = [
        "COMPLETING",
        "STAGE_OUT",
        "CONFIGURING",
        "EXPEDITING",
        "RESIZING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "SPECIAL_EXIT",
        "STOPPED",
        "REVOKED",
        "RESV_DEL_HOLD",
        "SIGNALING",
    ];
    FLAGS
        .iter()
        .find(|f| states.contains(f))
        .or(states.first())
        .map_or_else(String::new, |s| s.to_string())
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A `GET job/<id>` or `GET jobs` answer, read for the fields a row needs: serde skips the rest of
/// each job (about 8 KB of JSON in v0.0.45) without building values of it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ControllerAnswer {
    jobs: Vec<ControllerJob>,
    errors: Value,
}

/// The fields of a controller's job that a row is made of.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ControllerJob {
    job_id: Value,
    name: Value,
    comment: Value,
    submit_time: Value,
    start_time: Value,
    end_time: Value,
    job_state: Value,
    exit_code: Value,
    requeue: Value,
    nodes: Value,
    state_reason: Value,
}

impl ControllerAnswer {
    /// Its rows, `now` for the time a running job has used.
    pub fn rows(&self, now: Millis) -> Vec<JobRow> {
        self.jobs
            .iter()
            .filter_map(|j| {
                let id = j.job_id.as_u64()?;
                let start = time_ms(&j.start_time);
                let end = time_ms(&j.end_time);
                let elapsed = start
                    .map(|s| ((end.filter(|e| *e <= now).unwrap_or(now) - s).max(0) / 1000) as u64);
                Some(JobRow {
                    source: Source::Controller,
                    job_id: id.to_string(),
                    name: j.name.as_str().unwrap_or_default().to_string(),
                    comment: j.comment.as_str().unwrap_or_default().to_string(),
                    submit: time_ms(&j.submit_time),
                    end,
                    state: state_word(&strs(&j.job_state)),
                    exit_code: exit_code(&j.exit_code),
                    requeue: j.requeue.as_bool(),
                    detail: JobDetail {
                        reason: detail_text(j.state_reason.as_str().unwrap_or_default()),
                        nodes: detail_text(j.nodes.as_str().unwrap_or_default()),
                        elapsed_sec: elapsed,
                    },
                })
            })
            .collect()
    }
}

/// The controller's rows in a `GET job/<id>` or `GET jobs` answer.
pub fn controller_rows(answer: &Value, now: Millis) -> Vec<JobRow> {
    use serde::Deserialize;
    ControllerAnswer::deserialize(answer)
        .map(|a| a.rows(now))
        .unwrap_or_default()
}

/// The jobs in a `GET /slurmdb/<v>/jobs` answer, as [`super::history::parse`] reads sacct's (the comment is
/// `comment.job`, the working directory `working_directory`; times in epoch seconds).
pub fn earlier_jobs_of(answer: &Value) -> Vec<super::EarlierJob> {
    let Some(jobs) = answer["jobs"].as_array() else {
        return Vec::new();
    };
    let secs = |v: &Value| {
        v.as_i64()
            .filter(|n| *n > 0 && *n < i64::from(u32::MAX) - 1)
            .map(|n| n * 1000)
    };
    jobs.iter()
        .filter_map(|j| {
            let id = j["job_id"].as_u64()?;
            let states: Vec<&str> = j["state"]["current"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            Some(super::EarlierJob {
                job_id: id.to_string(),
                submit: secs(&j["time"]["submission"])?,
                end: secs(&j["time"]["end"]),
                state: state_word(&states),
                exit_code: exit_code(&j["exit_code"]),
                detail: JobDetail {
                    reason: detail_text(j["state"]["reason"].as_str().unwrap_or_default()),
                    nodes: detail_text(j["nodes"].as_str().unwrap_or_default()),
                    elapsed_sec: j["time"]["elapsed"].as_u64(),
                },
                comment: detail_text(j["comment"]["job"].as_str().unwrap_or_default()),
                name: j["name"].as_str().unwrap_or_default().to_string(),
                work_dir: PathBuf::from(j["working_directory"].as_str().unwrap_or_default()),
            })
        })
        .collect()
}

/// Accounting's rows in a `GET /slurmdb/<v>/jobs` answer (the comment is `comment.job`, as sacct's
/// `Comment`).
pub fn accounting_rows(answer: &Value) -> Vec<JobRow> {
    let Some(jobs) = answer["jobs"].as_array() else {
        return Vec::new();
    };
    jobs.iter()
        .filter_map(|j| {
            let id = j["job_id"].as_u64()?;
            Some(JobRow {
                source: Source::Accounting,
                job_id: id.to_string(),
                name: j["name"].as_str().unwrap_or_default().to_string(),
                comment: j["comment"]["job"].as_str().unwrap_or_default().to_string(),
                submit: time_ms(&j["time"]["submission"]),
                end: time_ms(&j["time"]["end"]),
                state: state_word(&strs(&j["state"]["current"])),
                exit_code: exit_code(&j["exit_code"]),
                requeue: None,
                detail: JobDetail {
                    reason: detail_text(j["state"]["reason"].as_str().unwrap_or_default()),
                    nodes: detail_text(j["nodes"].as_str().unwrap_or_default()),
                    elapsed_sec: j["time"]["elapsed"].as_u64(),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As slurmrestd 24.11.5 (v0.0.42) answered `GET /slurm/v0.0.42/job/<id>` for a held job, trimmed to
    /// the fields read.
    const HELD: &str = r#"{"jobs":[{"job_id":2590,"name":"dw-probe","comment":"dw-probe-key",
        "job_state":["PENDING"],"submit_time":{"set":true,"infinite":false,"number":1796627486},
        "end_time":{"set":true,"infinite":false,"number":0},"start_time":{"set":true,"infinite":false,"number":0},
        "exit_code":{"status":["SUCCESS"],"return_code":{"set":true,"infinite":false,"number":0},
        "signal":{"id":{"set":false,"infinite":false,"number":0},"name":""}},"requeue":true,"nodes":"",
        "state_reason":"JobHeldUser"}]}"#;

    /// As it answered `GET /slurmdb/v0.0.42/jobs?step=<id>` once that job was cancelled.
    const ACCT: &str = r#"{"jobs":[{"job_id":2590,"name":"dw-probe","comment":{"administrator":"",
        "job":"dw-probe-key","system":""},"state":{"current":["CANCELLED"],"reason":"None"},
        "time":{"elapsed":0,"end":1796627486,"start":4294967294,"submission":1796627486},
        "exit_code":{"status":["SUCCESS"],"return_code":{"set":true,"infinite":false,"number":0},
        "signal":{"id":{"set":false,"infinite":false,"number":0},"name":""}},"nodes":"None assigned"}]}"#;

    /// As slurmrestd 26.05.5 (v0.0.45, the newest it offers) answered `GET /slurm/v0.0.45/job/<id>` for a
    /// held job, trimmed to the fields read: the same shape as v0.0.42's.
    const HELD_45: &str = r#"{"jobs":[{"job_id":920,"name":"dw-probe","comment":"dw-probe-key",
        "job_state":["PENDING"],"submit_time":{"set":true,"infinite":false,"number":1796629514},
        "start_time":{"set":true,"infinite":false,"number":0},"end_time":{"set":true,"infinite":false,"number":0},
        "exit_code":{"status":["SUCCESS"],"return_code":{"set":true,"infinite":false,"number":0},
        "signal":{"id":{"set":false,"infinite":false,"number":0},"name":""}},"requeue":true,"nodes":"",
        "state_reason":"JobHeldUser"}],"errors":[],"warnings":[]}"#;

    /// As it answered `GET /slurmdb/v0.0.45/jobs?step=<id>&start_time=…` once that job was cancelled.
    const ACCT_45: &str = r#"{"jobs":[{"job_id":920,"name":"dw-probe","comment":{"administrator":"",
        "job":"dw-probe-key","system":""},"state":{"current":["CANCELLED"],"reason":"None"},
        "time":{"elapsed":0,"eligible":0,"end":1796629514,"planned":{"set":true,"infinite":false,"number":0},
        "start":4294967294,"submission":1796629514,"suspended":0},
        "exit_code":{"status":["SUCCESS"],"return_code":{"set":true,"infinite":false,"number":0},
        "signal":{"id":{"set":false,"infinite":false,"number":0},"name":""}},"nodes":"None assigned"}],
        "errors":[],"warnings":[]}"#;

    /// As it answered `GET /slurm/v0.0.45/jobs/` about a job that killed itself with SIGKILL (sacct:
    /// FAILED 0:9) and one that exited 3 (FAILED 3:0).
    const ENDED_45: &str = r#"{"jobs":[{"job_id":924,"name":"dw-kill","comment":"dw-kill-key",
        "job_state":["FAILED"],"submit_time":{"set":true,"infinite":false,"number":1796629542},
        "start_time":{"set":true,"infinite":false,"number":1796629542},
        "end_time":{"set":true,"infinite":false,"number":1796629543},
        "exit_code":{"status":["SIGNALED"],"return_code":{"set":false,"infinite":false,"number":0},
        "signal":{"id":{"set":true,"infinite":false,"number":9},"name":"KILL"}},"requeue":true,
        "nodes":"dwsid","state_reason":"RaisedSignal"},
        {"job_id":923,"name":"dw-fail","comment":"dw-fail-key","job_state":["FAILED"],
        "submit_time":{"set":true,"infinite":false,"number":1796629542},
        "start_time":{"set":true,"infinite":false,"number":1796629542},
        "end_time":{"set":true,"infinite":false,"number":1796629543},
        "exit_code":{"status":["ERROR"],"return_code":{"set":true,"infinite":false,"number":3},
        "signal":{"id":{"set":false,"infinite":false,"number":0},"name":""}},"requeue":true,
        "nodes":"dwsid","state_reason":"NonZeroExitCode"}],"errors":[],"warnings":[]}"#;

    /// As it answered `GET /slurm/v0.0.45/ping/`: `responding`, where v0.0.44 and earlier said `pinged`.
    const PING_45: &str = r#"{"pings":[{"hostname":"dwsid","responding":true,"latency":583,
        "primary":true,"status":"No error"}],"errors":[],"warnings":[]}"#;

    #[test]
    fn slurm_26_05s_newest_answers_read_as_24_11s() {
        let held = controller_rows(&serde_json::from_str(HELD_45).unwrap(), 1_796_629_600_000);
        let r = &held[0];
        assert_eq!(
            (
                r.job_id.as_str(),
                r.name.as_str(),
                r.comment.as_str(),
                r.state.as_str(),
                r.exit_code.as_str(),
                r.detail.reason.as_str()
            ),
            (
                "920",
                "dw-probe",
                "dw-probe-key",
                "PENDING",
                "0:0",
                "JobHeldUser"
            )
        );
        assert_eq!(
            (r.submit, r.end, r.requeue, r.detail.elapsed_sec),
            (Some(1_796_629_514_000), None, Some(true), None)
        );

        let acct = accounting_rows(&serde_json::from_str(ACCT_45).unwrap());
        let r = &acct[0];
        assert_eq!(
            (r.job_id.as_str(), r.comment.as_str(), r.state.as_str()),
            ("920", "dw-probe-key", "CANCELLED")
        );
        assert_eq!(
            (r.submit, r.end, r.detail.nodes.as_str()),
            (Some(1_796_629_514_000), Some(1_796_629_514_000), "")
        );

        // The exit codes as sacct prints them: code:signal.
        let ended = controller_rows(&serde_json::from_str(ENDED_45).unwrap(), 1_796_629_600_000);
        let words: Vec<_> = ended
            .iter()
            .map(|r| {
                (
                    r.job_id.as_str(),
                    r.state.as_str(),
                    r.exit_code.as_str(),
                    r.detail.elapsed_sec,
                )
            })
            .collect();
        assert_eq!(
            words,
            [
                ("924", "FAILED", "0:9", Some(1)),
                ("923", "FAILED", "3:0", Some(1))
            ]
        );

        assert_eq!(ping_word(&serde_json::from_str(PING_45).unwrap()), "UP");
        assert_eq!(
            ping_word(&json!({"pings": [{"pinged": "UP", "responding": true}]})),
            "UP"
        );
        assert_eq!(
            ping_word(&json!({"pings": [{"responding": false}]})),
            "DOWN"
        );
    }

    #[test]
    fn a_controller_answer_reads_as_squeue_reads() {
        let rows = controller_rows(&serde_json::from_str(HELD).unwrap(), 1_796_627_500_000);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (
                r.job_id.as_str(),
                r.name.as_str(),
                r.comment.as_str(),
                r.state.as_str()
            ),
            ("2590", "dw-probe", "dw-probe-key", "PENDING")
        );
        assert_eq!(
            (r.submit, r.end, r.requeue),
            (Some(1_796_627_486_000), None, Some(true))
        );
        assert_eq!(
            (r.exit_code.as_str(), r.detail.reason.as_str()),
            ("0:0", "JobHeldUser")
        );
        assert_eq!(r.detail.elapsed_sec, None, "not started");
    }

    #[test]
    fn an_accounting_answer_reads_as_sacct_reads() {
        let rows = accounting_rows(&serde_json::from_str(ACCT).unwrap());
        let r = &rows[0];
        assert_eq!(
            (r.comment.as_str(), r.state.as_str()),
            ("dw-probe-key", "CANCELLED")
        );
        assert_eq!(
            (r.end, r.detail.nodes.as_str()),
            (Some(1_796_627_486_000), "")
        );
        assert_eq!(r.source, Source::Accounting);
    }

    #[test]
    fn accounting_is_asked_about_several_jobs_with_one_step_each() {
        assert_eq!(
            accounting_path("v0.0.45", &["920", "921"], 1_796_625_990),
            "/slurmdb/v0.0.45/jobs?step=920&step=921&start_time=1796625990"
        );
        assert_eq!(
            accounting_path("v0.0.42", &["7"], 1),
            "/slurmdb/v0.0.42/jobs?step=7&start_time=1"
        );
    }

    #[test]
    fn a_refused_cancel_is_told_from_one_of_a_job_already_ended() {
        // As slurmrestd 26.05.5 (v0.0.45) answered DELETE job/<id>, each with HTTP 200: another user's
        // job (a token of dwtest), a job already cancelled, a held job cancelled.
        let denied = r#"{"status":[{"error":{"string":"Access/permission denied","code":2002,
            "message":"Access/permission denied"},"step_id":"1280","job_id":{"set":true,
            "infinite":false,"number":1280},"federation":{"sibling":""}}],"errors":[],"warnings":[]}"#;
        let done = r#"{"status":[{"error":{"string":"Job/step already completing or completed",
            "code":2021,"message":"Job/step already completing or completed"},"step_id":"920",
            "job_id":{"set":true,"infinite":false,"number":920},"federation":{"sibling":""}}],
            "errors":[],"warnings":[]}"#;
        let ended = r#"{"status":[],"errors":[],"warnings":[]}"#;
        let refusal = |t: &str| cancel_refusal(&serde_json::from_str(t).unwrap());
        assert_eq!(
            refusal(denied).as_deref(),
            Some("Access/permission denied (Slurm error 2002)")
        );
        assert_eq!(refusal(done), None);
        assert_eq!(refusal(ended), None);
    }

    #[test]
    fn the_flag_of_a_transition_is_the_state_word() {
        assert_eq!(state_word(&["PENDING", "REQUEUED"]), "REQUEUED");
        assert_eq!(state_word(&["RUNNING", "COMPLETING"]), "COMPLETING");
        assert_eq!(state_word(&["FAILED"]), "FAILED");
        assert_eq!(state_word(&[]), "");
        // Slurm 25.11 and later (v0.0.44+): a job of `--requeue=expedite` being requeued.
        assert_eq!(
            state_word(&["PENDING", "REQUEUED", "EXPEDITING"]),
            "EXPEDITING"
        );
        assert_eq!(state_word(&["PENDING", "RESV_DEL_HOLD"]), "RESV_DEL_HOLD");
        assert_eq!(state_word(&["COMPLETED", "STAGE_OUT"]), "STAGE_OUT");
        assert_eq!(
            state_word(&["PENDING", "CONFIGURING", "STAGE_OUT"]),
            "STAGE_OUT"
        );
        assert_eq!(state_word(&["PENDING", "RECONFIG_FAIL"]), "PENDING");
    }

    #[test]
    fn a_token_is_read_as_scontrol_prints_it_and_its_expiry_decoded() {
        // {"alg":"HS256","typ":"JWT"} . {"exp":1796628086,"iat":1796627486,"sun":"root"}
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                 eyJleHAiOjE3OTY2MjgwODYsImlhdCI6MTc5NjYyNzQ4Niwic3VuIjoicm9vdCJ9.sig";
        assert_eq!(bare_token(&format!("SLURM_JWT={t}\n")), t);
        assert_eq!(token_expiry(t), Some(1_796_628_086));
        assert_eq!(token_user(t).as_deref(), Some("root"));
        assert_eq!(token_expiry("garbage"), None);
    }

    #[test]
    fn slurmdbs_rest_answer_reads_as_sacct_reads() {
        // As slurmrestd 26.05.5 (v0.0.45) answered `GET /slurmdb/v0.0.45/jobs?start_time=…`, trimmed to
        // the fields read; the same job as sacct prints it with `recover`'s fields.
        let answer: Value = serde_json::from_str(
            r#"{"jobs":[{"job_id":920,"name":"dw-probe","comment":{"administrator":"",
            "job":"dw-0a1b2c3d-7","system":""},"state":{"current":["CANCELLED"],"reason":"None"},
            "time":{"elapsed":0,"end":1796629514,"start":4294967294,"submission":1796629514},
            "exit_code":{"status":["SUCCESS"],"return_code":{"set":true,"infinite":false,"number":0},
            "signal":{"id":{"set":false,"infinite":false,"number":0},"name":""}},
            "nodes":"None assigned","working_directory":"/data/in/a|b"}],"errors":[],"warnings":[]}"#,
        )
        .unwrap();
        let line = [
            "920",
            "1796629514",
            "1796629514",
            "CANCELLED by 0",
            "0:0",
            "0",
            "None assigned",
            "None",
            "dw-0a1b2c3d-7",
            "dw-probe",
            "/data/in/a|b",
        ]
        .join(&crate::scheduler::slurm::history::SEP.to_string());
        assert_eq!(
            earlier_jobs_of(&answer),
            crate::scheduler::slurm::history::parse(&line)
        );
        assert_eq!(
            earlier_jobs_of(&answer)[0].work_dir,
            std::path::PathBuf::from("/data/in/a|b")
        );
        assert!(earlier_jobs_of(&serde_json::json!({"errors": []})).is_empty());
    }
}
