//! The `job:` section: what each job runs and how it is submitted.
//!
//! Owns: the raw section, its validation, the validated [`JobConfig`], the Slurm time-limit and umask
//! parsers, and the section's lines of the effective config. Must never: run or submit anything (that is
//! the scheduler's job).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::keys::{self, ExecutorKind, Key, defaults};
use super::value::{MIN_COMMAND_TIMEOUT_SEC, MIN_LOST_AFTER_SEC, Word};
use super::yaml::{self, EffectiveYaml};
use super::{ConfigError, S, Validator};

/// The fix of every error about `job.submit_rate`.
pub(super) const SUBMIT_RATE_FIX: &str =
    "write e.g. `submit_rate: {burst: 30, per_sec: 2}` (30 calls at once, then 2 per second)";

impl Word for ExecutorKind {
    const KEY: &'static Key = &keys::JOB_EXECUTOR;
    const ALL: &'static [Self] = &[
        ExecutorKind::Slurm,
        ExecutorKind::SlurmRest,
        ExecutorKind::Local,
    ];
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn gloss(self) -> Option<&'static str> {
        Some(match self {
            ExecutorKind::Slurm => "sbatch/sacct",
            ExecutorKind::Local => "child processes on this machine",
            ExecutorKind::SlurmRest => "slurmrestd's REST API",
        })
    }
    fn problem(found: &str) -> String {
        format!("{found:?} is not an executor")
    }
}

/// The command each job runs: the directory path is always its last argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobCommand {
    /// A shell command line, run as `<wrap_cmd> '<dir>'` (Slurm: through `sbatch --wrap`).
    Wrap(String),
    /// A script or program run as `<job_script> <dir>` (Slurm: submitted as the batch script).
    Script(PathBuf),
}

/// A Slurm time limit, kept as written for `sbatch --time` and as a duration for the local executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeLimit {
    /// Exactly what the config said (`00:10:00`, `1-00:00`, `90`).
    pub slurm: String,
    /// The same limit as a duration; `None` for `UNLIMITED`/`INFINITE`.
    pub duration: Option<Duration>,
}

/// Where slurmrestd listens (`job.slurmrest_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlurmRestUrl {
    /// `http://HOST:PORT`, as written.
    Http(String),
    /// A unix socket (`unix:/path` or `http+unix://%2Fpath`): the path.
    Unix(PathBuf),
}

impl std::fmt::Display for SlurmRestUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlurmRestUrl::Http(u) => f.write_str(u),
            SlurmRestUrl::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The longest unix socket path the kernel takes (`sun_path` is 108 bytes with its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// `job.slurmrest_url`'s value: `http://HOST:PORT` (nothing after the port), `unix:/path`, or
/// `http+unix://` and the path percent-encoded (`%2Frun%2Fslurmrestd%2Fslurmrestd.socket`, as
/// requests-unixsocket and curl's users write it) or plain.
pub fn parse_slurmrest_url(v: &str) -> Result<SlurmRestUrl, String> {
    let v = v.trim();
    let socket = v
        .strip_prefix("unix:")
        .map(str::to_string)
        .or_else(|| v.strip_prefix("http+unix://").and_then(percent_decoded));
    if let Some(path) = socket {
        let p = PathBuf::from(&path);
        return if !p.is_absolute() || path.contains('\0') {
            Err(format!("{v:?} does not name a socket by its absolute path"))
        } else if path.len() > MAX_SOCKET_PATH {
            Err(format!(
                "the socket path of {v:?} is {} bytes, and a unix socket's path is at most {MAX_SOCKET_PATH}",
                path.len()
            ))
        } else {
            Ok(SlurmRestUrl::Unix(p))
        };
    }
    let rest = v.strip_prefix("http://").unwrap_or_default();
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("{v:?} is not slurmrestd's address"));
    }
    Ok(SlurmRestUrl::Http(v.to_string()))
}

/// `%XX` decoded (UTF-8); `None` when an escape is broken.
fn percent_decoded(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `job:` section, validated.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Slurm or local child processes.
    pub executor: ExecutorKind,
    /// slurmrestd's address (`executor: slurmrest`).
    pub slurmrest_url: SlurmRestUrl,
    /// The file holding slurmrestd's token; `None`: the daemon's `SLURM_JWT`.
    pub slurmrest_token_file: Option<PathBuf>,
    /// What each job runs.
    pub command: JobCommand,
    /// `sbatch --partition`.
    pub partition: Option<String>,
    /// `sbatch --account`.
    pub account: Option<String>,
    /// `sbatch --gres`.
    pub gres: Option<String>,
    /// `sbatch --time`; also enforced by the local executor.
    pub time_limit: Option<TimeLimit>,
    /// Job names are `<job_name_prefix>-<directory name>` (sanitised).
    pub job_name_prefix: String,
    /// Extra environment for the job (added to sbatch's environment, which Slurm exports by default).
    pub env: BTreeMap<String, String>,
    /// Extra `sbatch` arguments, passed verbatim as separate arguments (no shell).
    pub extra_args: Vec<String>,
    /// Run the job with the directory as its working directory (`sbatch --chdir`).
    pub chdir_to_subdir: bool,
    /// Where the job's stdout/stderr go (`sbatch --output`, relative to the root, with `%j`/`%x`); `None` =
    /// Slurm's default (`slurm-<id>.out` in the job's working directory), only when the config asks for it
    /// with `output: ""`.
    pub output: Option<String>,
    /// `job.output_group`: the group (name, id) whose members may read the job output in the daemon's own
    /// output folder.
    pub output_group: Option<(String, u32)>,
    /// Upper bound for one `sbatch`/`sacct`/`squeue` call.
    pub command_timeout: Duration,
    /// A job that no source (sacct, squeue) has shown for longer is `lost`.
    pub lost_after: Duration,
    /// How many local jobs may run at once (local executor only).
    pub max_local_jobs: u32,
    /// The job's umask (`job.umask`, default `0022`): sbatch is given `SLURM_UMASK`, the local runner sets
    /// it. Not the daemon's own umask (the unit's `UMask=`).
    pub umask: u32,
    /// `sbatch` calls at once during a burst.
    pub submit_concurrency: u32,
    /// A token bucket for `sbatch` calls, if the site wants a budget.
    pub submit_rate: Option<SubmitRate>,
    /// `job.array_max` / `job.array_throttle`: bursts as job arrays; `None` = one job per directory.
    pub arrays: Option<ArrayPolicy>,
}

/// `job.array_max` and `job.array_throttle`: directories ready together go to Slurm as job arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayPolicy {
    /// At most this many tasks (directories) per array (at least 2).
    pub max: u32,
    /// At most this many tasks of one array run at once (`%N`); `None`: no limit of ours.
    pub throttle: Option<u32>,
    /// The line of `job.array_max` in the config, for the message when the cluster allows fewer.
    pub line: Option<u64>,
}

/// `job.submit_rate`: at most `burst` calls at once, refilled at `per_sec` calls per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubmitRate {
    /// Calls that may go at once after a quiet time (at least 1).
    pub burst: u32,
    /// Calls per second in the long run (greater than 0).
    pub per_sec: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub(super) executor: S<String>,
    pub(super) slurmrest_url: S<String>,
    pub(super) slurmrest_token_file: S<String>,
    pub(super) wrap_cmd: S<String>,
    pub(super) job_script: S<String>,
    pub(super) partition: Option<String>,
    pub(super) account: Option<String>,
    pub(super) gres: Option<String>,
    pub(super) time_limit: S<String>,
    pub(super) job_name_prefix: S<String>,
    #[serde(default)]
    pub(super) env: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) extra_args: Vec<String>,
    pub(super) chdir_to_subdir: Option<bool>,
    pub(super) output: S<String>,
    pub(super) output_group: S<String>,
    pub(super) command_timeout_sec: S<f64>,
    pub(super) lost_after_sec: S<f64>,
    pub(super) max_local_jobs: S<i64>,
    pub(super) umask: S<String>,
    pub(super) submit_concurrency: S<i64>,
    pub(super) submit_rate: Option<Spanned<RawRate>>,
    pub(super) array_max: S<i64>,
    pub(super) array_throttle: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRate {
    pub(super) burst: S<i64>,
    pub(super) per_sec: S<f64>,
}

impl Validator<'_> {
    pub(super) fn job(&self, raw: Option<RawJob>) -> Result<JobConfig, ConfigError> {
        let Some(j) = raw else {
            return Err(self.err(
                "job",
                None,
                "the `job:` section is missing",
                "add `job:` with `wrap_cmd: <command>` (the directory is appended) or `job_script: /path/to/script`",
            ));
        };
        let executor = self.word(&j.executor)?.unwrap_or(defaults::EXECUTOR);
        let command = self.job_command(&j)?;
        let time_limit = match &j.time_limit {
            None => None,
            Some(t) => Some(parse_time_limit(&t.value).map_err(|p| {
                self.err(
                    keys::JOB_TIME_LIMIT.name,
                    Some(t.referenced.line()),
                    p,
                    "use a Slurm time: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS` or `UNLIMITED` (quote it: `\"00:10:00\"`)",
                )
            })?),
        };
        let prefix = self.job_name_prefix(&j.job_name_prefix)?;
        self.env_names(&j.env)?;
        let output = match &j.output {
            Some(o) if o.value.trim().is_empty() => None,
            Some(o) => Some(o.value.clone()),
            None => Some(defaults::OUTPUT.to_string()),
        };
        let output_group = self.output_group(&j.output_group)?;
        let (slurmrest_url, slurmrest_token_file) = self.slurmrest(&j, executor)?;
        let umask = self.job_umask(&j.umask)?;
        let arrays = self.arrays(&j, executor, &command)?;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1);
        Ok(JobConfig {
            executor,
            slurmrest_url,
            slurmrest_token_file,
            command,
            partition: j.partition.filter(|s| !s.is_empty()),
            account: j.account.filter(|s| !s.is_empty()),
            gres: j.gres.filter(|s| !s.is_empty()),
            time_limit,
            job_name_prefix: prefix,
            env: j.env,
            extra_args: j.extra_args,
            chdir_to_subdir: j.chdir_to_subdir.unwrap_or(defaults::CHDIR_TO_SUBDIR),
            output,
            output_group,
            command_timeout: self.seconds(
                &keys::JOB_COMMAND_TIMEOUT_SEC,
                &j.command_timeout_sec,
                MIN_COMMAND_TIMEOUT_SEC,
            )?,
            lost_after: self.seconds(
                &keys::JOB_LOST_AFTER_SEC,
                &j.lost_after_sec,
                MIN_LOST_AFTER_SEC,
            )?,
            max_local_jobs: self.count_or(&keys::JOB_MAX_LOCAL_JOBS, &j.max_local_jobs, cpus, 1)?,
            umask,
            submit_concurrency: self.count(
                &keys::JOB_SUBMIT_CONCURRENCY,
                &j.submit_concurrency,
                1,
            )?,
            submit_rate: self.submit_rate(j.submit_rate.as_ref())?,
            arrays,
        })
    }

    /// `job.array_max` (0 = off, else at least 2) and `job.array_throttle` (0 = none); arrays only with
    /// `executor: slurm` and `wrap_cmd` (a `job_script`'s `#SBATCH` lines and arguments are per job, and
    /// an array's batch script is dirwatcher's own wrapper).
    fn arrays(
        &self,
        j: &RawJob,
        executor: ExecutorKind,
        command: &JobCommand,
    ) -> Result<Option<ArrayPolicy>, ConfigError> {
        let max = self.count(&keys::JOB_ARRAY_MAX, &j.array_max, 0)?;
        let throttle = self.count(&keys::JOB_ARRAY_THROTTLE, &j.array_throttle, 0)?;
        let line = j.array_max.as_ref().map(|v| v.referenced.line());
        if max == 0 {
            if throttle > 0 {
                return Err(self.err(
                    keys::JOB_ARRAY_THROTTLE.name,
                    j.array_throttle.as_ref().map(|v| v.referenced.line()),
                    "`array_throttle` limits job arrays, and `array_max` is 0 (off)",
                    "set `array_max: 1000` (or the cluster's `MaxArraySize`) too, or drop `array_throttle`",
                ));
            }
            return Ok(None);
        }
        if max == 1 {
            return Err(self.err(
                keys::JOB_ARRAY_MAX.name,
                line,
                "an array of 1 task is one job per directory",
                "write `array_max: 0` (off) or at least 2, e.g. `array_max: 1000`",
            ));
        }
        if executor != ExecutorKind::Slurm {
            return Err(self.err(
                keys::JOB_ARRAY_MAX.name,
                line,
                format!(
                    "job arrays are submitted with `sbatch --array`, and `executor: {}` does not run sbatch",
                    executor.as_str()
                ),
                "write `array_max: 0`, or use `executor: slurm`",
            ));
        }
        if let JobCommand::Script(_) = command {
            return Err(self.err(
                keys::JOB_ARRAY_MAX.name,
                line,
                "job arrays run `wrap_cmd` (an array has one batch script, dirwatcher's wrapper, so a \
                 `job_script`'s own `#SBATCH` lines would not apply)",
                "write `array_max: 0`, or `wrap_cmd: /path/to/script` instead of `job_script` (the directory is its one argument, as now)",
            ));
        }
        if matches!(&j.output, Some(o) if o.value.trim().is_empty()) {
            return Err(self.err(
                keys::JOB_ARRAY_MAX.name,
                line,
                "`output: \"\"` puts a job's output in its directory, and an array's tasks share one working directory for it",
                "drop `output: \"\"` (the default puts each task's output under the root's `.dirwatcher/logs`), or write `array_max: 0`",
            ));
        }
        Ok(Some(ArrayPolicy {
            max,
            throttle: (throttle > 0).then_some(throttle),
            line,
        }))
    }

    /// `slurmrest_url` (`http://HOST:PORT`) and `slurmrest_token_file` (absolute); with `slurmrest`,
    /// no `extra_args` (slurmrestd takes a job description, not sbatch's options).
    fn slurmrest(
        &self,
        j: &RawJob,
        executor: ExecutorKind,
    ) -> Result<(SlurmRestUrl, Option<PathBuf>), ConfigError> {
        let url = match &j.slurmrest_url {
            Some(u) => parse_slurmrest_url(&u.value).map_err(|problem| {
                self.err(
                    keys::JOB_SLURMREST_URL.name,
                    Some(u.referenced.line()),
                    problem,
                    "write `http://HOST:PORT` (e.g. `http://slurm-head:6820`, nothing after the port) or \
                     `unix:/PATH` of slurmrestd's socket (e.g. `unix:/run/slurmrestd/slurmrestd.socket`)",
                )
            })?,
            None => SlurmRestUrl::Http(defaults::SLURMREST_URL.to_string()),
        };
        let file = match &j.slurmrest_token_file {
            Some(f) if !f.value.trim().is_empty() => Some(self.absolute(
                &keys::JOB_SLURMREST_TOKEN_FILE,
                &j.slurmrest_token_file,
                "/etc/dirwatcher/slurm.jwt",
            )?),
            _ => None,
        };
        if executor == ExecutorKind::SlurmRest && !j.extra_args.is_empty() {
            return Err(self.err(
                keys::JOB_EXTRA_ARGS.name,
                None,
                "`extra_args` are sbatch options, and `executor: slurmrest` does not run sbatch",
                "drop `extra_args` (partition, account, gres and time_limit have keys of their own), or use `executor: slurm`",
            ));
        }
        Ok((url, file))
    }

    /// `wrap_cmd` or `job_script`: exactly one.
    fn job_command(&self, j: &RawJob) -> Result<JobCommand, ConfigError> {
        let command = match (&j.wrap_cmd, &j.job_script) {
            (Some(w), Some(s)) => {
                return Err(self.err(
                    keys::JOB_JOB_SCRIPT.name,
                    Some(s.referenced.line()).or(Some(w.referenced.line())),
                    "`wrap_cmd` and `job_script` are both set",
                    "keep one: `wrap_cmd` runs a command line, `job_script` submits a script",
                ));
            }
            (Some(w), None) if !w.value.trim().is_empty() => {
                JobCommand::Wrap(w.value.trim().to_string())
            }
            (None, Some(s)) if !s.value.trim().is_empty() => JobCommand::Script(self.absolute(
                &keys::JOB_JOB_SCRIPT,
                &j.job_script,
                "/opt/dirwatcher/process_dir.py",
            )?),
            (w, s) => {
                let line = w.as_ref().or(s.as_ref()).map(|x| x.referenced.line());
                return Err(self.err(
                    keys::JOB_WRAP_CMD.name,
                    line,
                    "the job has no command: neither `wrap_cmd` nor `job_script` is set",
                    "add `wrap_cmd: python3 /opt/dirwatcher/process_dir.py` (the directory is appended) or `job_script: /path/to/script`",
                ));
            }
        };
        Ok(command)
    }

    /// `job.job_name_prefix`: one word, no commas (Slurm's job name lists).
    fn job_name_prefix(&self, v: &S<String>) -> Result<String, ConfigError> {
        let prefix = v
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_else(|| defaults::JOB_NAME_PREFIX.into());
        if prefix.is_empty()
            || prefix
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == ',')
        {
            return Err(self.err(
                keys::JOB_JOB_NAME_PREFIX.name,
                v.as_ref().map(|s| s.referenced.line()),
                format!("must be a non-empty word without spaces or commas, found {prefix:?}"),
                "write e.g. `job_name_prefix: dirwatch`",
            ));
        }
        Ok(prefix)
    }

    /// `job.env`: names a shell takes as variables.
    fn env_names(&self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        for k in env.keys() {
            let ok = !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(self.err(
                    &format!("job.env.{k}"),
                    None,
                    format!("{k:?} is not a valid environment variable name"),
                    "use letters, digits and `_`, not starting with a digit",
                ));
            }
        }
        Ok(())
    }

    /// `job.output_group`: an existing group, with its id.
    fn output_group(&self, v: &S<String>) -> Result<Option<(String, u32)>, ConfigError> {
        let output_group = match v.as_ref().filter(|g| !g.value.trim().is_empty()) {
            None => None,
            Some(g) => {
                let name = g.value.trim().to_string();
                let gid = crate::fsx::group_id(&name).ok_or_else(|| {
                    self.err(
                        keys::JOB_OUTPUT_GROUP.name,
                        Some(g.referenced.line()),
                        format!("there is no group {name:?} on this machine"),
                        "name an existing group whose members may read job output (`getent group NAME`), \
                         e.g. the group the instruments' users share",
                    )
                })?;
                Some((name, gid))
            }
        };
        Ok(output_group)
    }

    /// `job.umask`: 3 or 4 octal digits.
    fn job_umask(&self, v: &S<String>) -> Result<u32, ConfigError> {
        let umask = match v {
            None => parse_umask(defaults::JOB_UMASK).expect("the default umask parses"),
            Some(u) => parse_umask(&u.value).ok_or_else(|| {
                self.err(
                    keys::JOB_UMASK.name,
                    Some(u.referenced.line()),
                    format!(
                        "must be an octal umask of 3 or 4 digits 0-7, found {:?}",
                        u.value
                    ),
                    "write e.g. `umask: \"0022\"` (outputs 0644) or `umask: \"0027\"` (0640)",
                )
            })?,
        };
        Ok(umask)
    }

    /// `job.submit_rate`: both fields, each a positive number.
    pub(super) fn submit_rate(
        &self,
        v: Option<&Spanned<RawRate>>,
    ) -> Result<Option<SubmitRate>, ConfigError> {
        let Some(r) = v else { return Ok(None) };
        let line = Some(r.referenced.line());
        let fix = SUBMIT_RATE_FIX;
        let key = keys::JOB_SUBMIT_RATE.name;
        let (Some(burst), Some(per_sec)) = (&r.value.burst, &r.value.per_sec) else {
            return Err(self.err(key, line, "needs both `burst` and `per_sec`", fix));
        };
        if burst.value < 1 || burst.value > i64::from(u32::MAX) {
            let line = Some(burst.referenced.line());
            let problem = format!(
                "`burst` must be a whole number of at least 1, found {}",
                burst.value
            );
            return Err(self.err(key, line, problem, fix));
        }
        if !per_sec.value.is_finite() || per_sec.value <= 0.0 || per_sec.value > 1e6 {
            let line = Some(per_sec.referenced.line());
            let problem = format!(
                "`per_sec` must be a number greater than 0, found {}",
                per_sec.value
            );
            return Err(self.err(key, line, problem, fix));
        }
        Ok(Some(SubmitRate {
            burst: burst.value as u32,
            per_sec: per_sec.value,
        }))
    }
}

/// Parses an octal umask of 3 or 4 digits (`022`, `0022`, `0027`); `None` for anything else.
pub fn parse_umask(s: &str) -> Option<u32> {
    let t = s.trim();
    let octal = (3..=4).contains(&t.len()) && t.bytes().all(|b| (b'0'..=b'7').contains(&b));
    octal.then(|| u32::from_str_radix(t, 8).ok()).flatten()
}

/// A umask as written in the config and in `SLURM_UMASK`: four octal digits (`0022`).
pub fn umask_text(mask: u32) -> String {
    format!("{mask:04o}")
}

/// Parses a Slurm `--time` value into a duration (`None` = unlimited).
pub fn parse_time_limit(s: &str) -> Result<TimeLimit, String> {
    let t = s.trim();
    let unlimited = t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("infinite");
    if unlimited {
        return Ok(TimeLimit {
            slurm: t.to_string(),
            duration: None,
        });
    }
    let bad = || format!("{t:?} is not a Slurm time limit");
    let num = |x: &str| -> Result<u64, String> {
        if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) || x.len() > 9 {
            Err(bad())
        } else {
            x.parse::<u64>().map_err(|_| bad())
        }
    };
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(num(d)?), r),
        None => (None, t),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => num(m)? * 60,
        (None, [m, s]) => num(m)? * 60 + num(s)?,
        (None, [h, m, s]) => num(h)? * 3600 + num(m)? * 60 + num(s)?,
        (Some(d), [h]) => d * 86400 + num(h)? * 3600,
        (Some(d), [h, m]) => d * 86400 + num(h)? * 3600 + num(m)? * 60,
        (Some(d), [h, m, s]) => d * 86400 + num(h)? * 3600 + num(m)? * 60 + num(s)?,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(format!("{t:?} is a time limit of zero"));
    }
    Ok(TimeLimit {
        slurm: t.to_string(),
        duration: Some(Duration::from_secs(secs)),
    })
}

impl JobConfig {
    /// The section's lines of the effective config.
    pub(super) fn put(&self, y: &mut EffectiveYaml) {
        use keys::*;
        use yaml::{opt, text as q};
        y.put(&JOB_EXECUTOR, self.executor.as_str().into());
        y.put(&JOB_SLURMREST_URL, q(&self.slurmrest_url.to_string()));
        y.put(
            &JOB_SLURMREST_TOKEN_FILE,
            opt(self
                .slurmrest_token_file
                .as_ref()
                .map(|p| p.to_string_lossy())
                .as_deref()),
        );
        match &self.command {
            JobCommand::Wrap(c) => y.put(&JOB_WRAP_CMD, q(c)),
            JobCommand::Script(p) => y.put(&JOB_JOB_SCRIPT, yaml::path(p)),
        }
        y.put(&JOB_PARTITION, opt(self.partition.as_deref()));
        y.put(&JOB_ACCOUNT, opt(self.account.as_deref()));
        y.put(&JOB_GRES, opt(self.gres.as_deref()));
        y.put(
            &JOB_TIME_LIMIT,
            opt(self.time_limit.as_ref().map(|t| t.slurm.as_str())),
        );
        y.put(&JOB_JOB_NAME_PREFIX, q(&self.job_name_prefix));
        let env = if self.env.is_empty() {
            "{}".to_string()
        } else {
            // One entry per line below the key, as a block mapping.
            self.env
                .iter()
                .map(|(k, v)| format!("\n    {}: {}", q(k), q(v)))
                .collect()
        };
        y.put(&JOB_ENV, env);
        y.put(&JOB_EXTRA_ARGS, yaml::list(&self.extra_args));
        y.put(&JOB_CHDIR_TO_SUBDIR, self.chdir_to_subdir.to_string());
        // `""` asks for Slurm's own default; `null` would read back as dirwatcher's default.
        y.put(&JOB_OUTPUT, q(self.output.as_deref().unwrap_or("")));
        y.put(
            &JOB_OUTPUT_GROUP,
            opt(self.output_group.as_ref().map(|(n, _)| n.as_str())),
        );
        y.put(&JOB_COMMAND_TIMEOUT_SEC, yaml::secs(self.command_timeout));
        y.put(&JOB_LOST_AFTER_SEC, yaml::secs(self.lost_after));
        y.put(&JOB_MAX_LOCAL_JOBS, self.max_local_jobs.to_string());
        y.put(&JOB_UMASK, q(&umask_text(self.umask)));
        y.put(&JOB_SUBMIT_CONCURRENCY, self.submit_concurrency.to_string());
        let rate = self.submit_rate.map(|r| {
            format!(
                "{{burst: {}, per_sec: {}}}",
                r.burst,
                seconds_text(r.per_sec)
            )
        });
        y.put(&JOB_SUBMIT_RATE, rate.unwrap_or_else(|| "null".into()));
        let a = self.arrays;
        y.put(&JOB_ARRAY_MAX, a.map_or(0, |a| a.max).to_string());
        let throttle = a.and_then(|a| a.throttle).unwrap_or(0);
        y.put(&JOB_ARRAY_THROTTLE, throttle.to_string());
    }
}
