//! Configuration: reads the YAML file, checks every value, and turns it into types that cannot be invalid.
//!
//! Owns: the raw serde mirror of the file (`Raw*`, `deny_unknown_fields`), the validated [`Config`], the
//! effective config `check-config` prints, and the error texts; every key's name, default and help text come
//! from [`keys`]. Must never: create, touch or probe anything but the paths it is asked to check for
//! existence; nothing past this module ever sees a raw value.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub mod keys;

use keys::Key;
pub use keys::defaults;

/// Where a validation error points: a key path (`watch.root`) and, when known, a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file the error is about.
    pub file: PathBuf,
    /// Dotted key path, e.g. `watch.poll_interval_sec`; empty when the error is about the whole file.
    pub key: String,
    /// 1-based line in the file, when the parser knows it.
    pub line: Option<u64>,
    /// What is wrong, in words.
    pub problem: String,
    /// What to write instead.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config `{}`", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ", key `{}`", self.key)?;
        }
        write!(f, ": {}", self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Which back end runs the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// `sbatch` + `sacct` on a Slurm cluster (the default).
    Slurm,
    /// Child processes on this machine: for trying dirwatcher out and for sites without Slurm.
    Local,
}

impl ExecutorKind {
    /// The name written in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Slurm => "slurm",
            ExecutorKind::Local => "local",
        }
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

/// `watch:` section, validated.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Absolute path of the watched root; it existed and was a directory when the config was loaded.
    pub root: PathBuf,
    /// Name of the ready-file inside each subdirectory (one path component).
    pub signal_filename: OsString,
    /// Time between scans of the root when nothing is being checked for stability.
    pub poll_interval: Duration,
    /// How many consecutive identical observations make a ready-file stable (at least 1).
    pub stability_checks: u32,
    /// Minimum time between two stability observations of the same ready-file.
    pub stability_interval: Duration,
    /// The root may be a symlink, or world-writable without the sticky bit.
    pub allow_unsafe_root: bool,
    /// A finished directory's ready-file is looked at again within this period (zero: every scan).
    pub recheck: Duration,
}

/// `job:` section, validated.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Slurm or local child processes.
    pub executor: ExecutorKind,
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
    /// Where the job's stdout/stderr go (`sbatch --output`, with `%j`/`%x`); `None` = Slurm's default.
    pub output: Option<String>,
    /// Upper bound for one `sbatch`/`sacct`/`squeue` call.
    pub command_timeout: Duration,
    /// A job that no source (sacct, squeue) has shown for longer is `lost`.
    pub lost_after: Duration,
    /// How many local jobs may run at once (local executor only).
    pub max_local_jobs: u32,
    /// `sbatch` calls at once during a burst.
    pub submit_concurrency: u32,
    /// A token bucket for `sbatch` calls, if the site wants a budget.
    pub submit_rate: Option<SubmitRate>,
}

/// `job.submit_rate`: at most `burst` calls at once, refilled at `per_sec` calls per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubmitRate {
    /// Calls that may go at once after a quiet time (at least 1).
    pub burst: u32,
    /// Calls per second in the long run (greater than 0).
    pub per_sec: f64,
}

/// `behavior:` section, validated.
#[derive(Debug, Clone)]
pub struct BehaviorConfig {
    /// Delete a directory after its job COMPLETED.
    pub delete_on_success: bool,
    /// The ledger (an SQLite database), kept on local disk.
    pub state_file: PathBuf,
    /// One JSON line is appended here per failed job.
    pub failure_log: PathBuf,
    /// How many times a failed job is resubmitted on its own (0 = never, as the original).
    pub max_retries: u32,
    /// First delay before resubmitting after a failed `sbatch`; doubles up to `submit_backoff_max`.
    pub submit_backoff: Duration,
    /// Cap of the exponential back-off.
    pub submit_backoff_max: Duration,
}

/// `metrics:` section, validated. Both outputs are optional; without either, no metrics go anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` here: a loopback address, or a specific address of this host (never the
    /// wildcard `0.0.0.0`/`::`). Port 0 picks a free port (logged at start).
    pub listen: Option<SocketAddr>,
    /// Rewrite this `.prom` file atomically every cycle, for node_exporter's textfile collector.
    pub textfile: Option<PathBuf>,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages and reloads).
    pub source: PathBuf,
    /// `watch:`.
    pub watch: WatchConfig,
    /// `job:`.
    pub job: JobConfig,
    /// `behavior:`.
    pub behavior: BehaviorConfig,
    /// `metrics:` (optional).
    pub metrics: MetricsConfig,
}

// ---------------------------------------------------------------- raw mirror of the YAML

type S<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    watch: Option<RawWatch>,
    job: Option<RawJob>,
    behavior: Option<RawBehavior>,
    metrics: Option<RawMetrics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    root: S<String>,
    signal_filename: S<String>,
    poll_interval_sec: S<f64>,
    stability_checks: S<i64>,
    stability_interval_sec: S<f64>,
    allow_unsafe_root: Option<bool>,
    recheck_sec: S<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    executor: Option<ExecutorKind>,
    wrap_cmd: S<String>,
    job_script: S<String>,
    partition: Option<String>,
    account: Option<String>,
    gres: Option<String>,
    time_limit: S<String>,
    job_name_prefix: S<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    extra_args: Vec<String>,
    chdir_to_subdir: Option<bool>,
    output: S<String>,
    command_timeout_sec: S<f64>,
    lost_after_sec: S<f64>,
    max_local_jobs: S<i64>,
    submit_concurrency: S<i64>,
    submit_rate: Option<Spanned<RawRate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    burst: S<i64>,
    per_sec: S<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBehavior {
    delete_on_success: Option<bool>,
    state_file: S<String>,
    failure_log: S<String>,
    max_retries: S<i64>,
    submit_backoff_sec: S<f64>,
    submit_backoff_max_sec: S<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: S<String>,
    textfile: S<String>,
}

impl Config {
    /// Reads and validates `path`. Checks that `watch.root` exists (and never creates it).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            line: None,
            problem: format!("cannot read the file: {e}"),
            fix: "pass an existing, readable YAML file with --config".into(),
        })?;
        Self::parse(&text, path)
    }

    /// Validates YAML text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            serde_saphyr::from_str(text).map_err(|e| serde_error(path, text, &e))?;
        Validator { file: path }.config(raw)
    }

    /// Renders the effective configuration as YAML (all defaults filled in), for `check-config`: every key
    /// of [`keys::ALL`] in its order, under its section.
    pub fn to_yaml(&self) -> String {
        use keys::*;
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let opt = |o: Option<&str>| o.map(q).unwrap_or_else(|| "null".into());
        let path = |p: &Path| q(&p.to_string_lossy());
        let secs = |d: Duration| seconds_text(d.as_secs_f64());
        let mut y = EffectiveYaml::default();
        let w = &self.watch;
        y.put(&WATCH_ROOT, path(&w.root));
        y.put(
            &WATCH_SIGNAL_FILENAME,
            q(&w.signal_filename.to_string_lossy()),
        );
        y.put(&WATCH_POLL_INTERVAL_SEC, secs(w.poll_interval));
        y.put(&WATCH_STABILITY_CHECKS, w.stability_checks.to_string());
        y.put(&WATCH_STABILITY_INTERVAL_SEC, secs(w.stability_interval));
        y.put(&WATCH_ALLOW_UNSAFE_ROOT, w.allow_unsafe_root.to_string());
        y.put(&WATCH_RECHECK_SEC, secs(w.recheck));
        let j = &self.job;
        y.put(&JOB_EXECUTOR, j.executor.as_str().into());
        match &j.command {
            JobCommand::Wrap(c) => y.put(&JOB_WRAP_CMD, q(c)),
            JobCommand::Script(p) => y.put(&JOB_JOB_SCRIPT, path(p)),
        }
        y.put(&JOB_PARTITION, opt(j.partition.as_deref()));
        y.put(&JOB_ACCOUNT, opt(j.account.as_deref()));
        y.put(&JOB_GRES, opt(j.gres.as_deref()));
        y.put(
            &JOB_TIME_LIMIT,
            opt(j.time_limit.as_ref().map(|t| t.slurm.as_str())),
        );
        y.put(&JOB_JOB_NAME_PREFIX, q(&j.job_name_prefix));
        let env = if j.env.is_empty() {
            "{}".to_string()
        } else {
            // One entry per line below the key, as a block mapping.
            j.env
                .iter()
                .map(|(k, v)| format!("\n    {}: {}", q(k), q(v)))
                .collect()
        };
        y.put(&JOB_ENV, env);
        let args: Vec<String> = j.extra_args.iter().map(|a| q(a)).collect();
        y.put(&JOB_EXTRA_ARGS, format!("[{}]", args.join(", ")));
        y.put(&JOB_CHDIR_TO_SUBDIR, j.chdir_to_subdir.to_string());
        y.put(&JOB_OUTPUT, opt(j.output.as_deref()));
        y.put(&JOB_COMMAND_TIMEOUT_SEC, secs(j.command_timeout));
        y.put(&JOB_LOST_AFTER_SEC, secs(j.lost_after));
        y.put(&JOB_MAX_LOCAL_JOBS, j.max_local_jobs.to_string());
        y.put(&JOB_SUBMIT_CONCURRENCY, j.submit_concurrency.to_string());
        let rate = j.submit_rate.map(|r| {
            format!(
                "{{burst: {}, per_sec: {}}}",
                r.burst,
                seconds_text(r.per_sec)
            )
        });
        y.put(&JOB_SUBMIT_RATE, rate.unwrap_or_else(|| "null".into()));
        let b = &self.behavior;
        y.put(&BEHAVIOR_DELETE_ON_SUCCESS, b.delete_on_success.to_string());
        y.put(&BEHAVIOR_STATE_FILE, path(&b.state_file));
        y.put(&BEHAVIOR_FAILURE_LOG, path(&b.failure_log));
        y.put(&BEHAVIOR_MAX_RETRIES, b.max_retries.to_string());
        y.put(&BEHAVIOR_SUBMIT_BACKOFF_SEC, secs(b.submit_backoff));
        y.put(&BEHAVIOR_SUBMIT_BACKOFF_MAX_SEC, secs(b.submit_backoff_max));
        let m = &self.metrics;
        y.put(
            &METRICS_LISTEN,
            opt(m.listen.map(|a| a.to_string()).as_deref()),
        );
        y.put(
            &METRICS_TEXTFILE,
            m.textfile.as_deref().map_or("null".into(), path),
        );
        y.text
    }
}

/// The effective config being written: a section header before the first key of each section.
#[derive(Default)]
struct EffectiveYaml {
    /// The YAML so far.
    text: String,
    /// The section of the last key written (`""` before the first).
    section: &'static str,
}

impl EffectiveYaml {
    /// Writes `key: value`; a `value` starting with a newline (a block mapping) follows the colon directly.
    fn put(&mut self, key: &Key, value: String) {
        if key.section() != self.section {
            if !self.text.is_empty() {
                self.text.push('\n');
            }
            self.section = key.section();
            self.text += self.section;
            self.text += ":\n";
        }
        let gap = if value.starts_with('\n') { "" } else { " " };
        self.text += &format!("  {}:{gap}{value}\n", key.leaf());
    }
}

/// Turns a parser error (unknown key, wrong type, bad YAML) into a [`ConfigError`] that names the key.
fn serde_error(path: &Path, text: &str, e: &serde_saphyr::Error) -> ConfigError {
    let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
    // The crate's Display renders a source snippet; the first line is the message itself.
    let full = e.to_string();
    let mut problem = full
        .lines()
        .next()
        .unwrap_or("cannot parse the YAML")
        .trim()
        .to_string();
    for prefix in ["error: ", "Error: "] {
        if let Some(p) = problem.strip_prefix(prefix) {
            problem = p.to_string();
        }
    }
    // Drop the crate's own "line N column M: " (the line is reported separately).
    if let Some(rest) = problem.strip_prefix("line ")
        && let Some((_, msg)) = rest.split_once(": ")
    {
        problem = msg.to_string();
    }
    let key = line.and_then(|l| key_at_line(text, l)).unwrap_or_default();
    let (problem, fix) = if problem.contains("unknown field") {
        (problem, "remove the key or correct its spelling; `dirwatcher check-config --help` lists every key".to_string())
    } else if problem.contains("invalid i64") || problem.contains("invalid u") {
        (
            "expected a whole number".into(),
            format!("write a number without quotes, e.g. `{}: 2`", leaf(&key)),
        )
    } else if problem.contains("invalid f64") {
        (
            "expected a number of seconds".into(),
            format!("write a number without quotes, e.g. `{}: 0.5`", leaf(&key)),
        )
    } else if problem.contains("invalid bool") {
        (
            "expected true or false".into(),
            format!("write `{}: true` or `{}: false`", leaf(&key), leaf(&key)),
        )
    } else if problem.contains("invalid type") || problem.contains("invalid value") {
        (problem, "give the value the type shown (numbers without quotes, `true`/`false` for switches, a list in `[...]`)".into())
    } else {
        (problem, "fix the YAML syntax at that line".to_string())
    };
    ConfigError {
        file: path.to_path_buf(),
        key,
        line,
        problem,
        fix,
    }
}

/// The dotted key defined on a 1-based line (`watch.stability_checks`), found from indentation.
fn key_at_line(text: &str, line: u64) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let idx = usize::try_from(line).ok()?.checked_sub(1)?;
    let key_of = |l: &str| -> Option<(usize, String)> {
        let indent = l.len() - l.trim_start().len();
        let (k, _) = l.trim_start().split_once(':')?;
        let k = k.trim();
        (!k.is_empty()
            && !k.starts_with('#')
            && !k.starts_with('-')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| (indent, k.to_string()))
    };
    let (mut indent, key) = key_of(lines.get(idx)?)?;
    let mut parts = vec![key];
    for l in lines[..idx].iter().rev() {
        if indent == 0 {
            break;
        }
        if let Some((i, k)) = key_of(l)
            && i < indent
        {
            parts.push(k);
            indent = i;
        }
    }
    parts.reverse();
    Some(parts.join("."))
}

struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    fn err(
        &self,
        key: &str,
        line: Option<u64>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            line: line.filter(|l| *l > 0),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    fn seconds(
        &self,
        key: &Key,
        v: &S<f64>,
        default: f64,
        min_positive: bool,
    ) -> Result<Duration, ConfigError> {
        let (value, line) = match v {
            Some(s) => (s.value, Some(s.referenced.line())),
            None => (default, None),
        };
        if !value.is_finite() || value < 0.0 || (min_positive && value == 0.0) {
            let bound = if min_positive {
                "greater than 0"
            } else {
                "0 or more"
            };
            return Err(self.err(
                key.name,
                line,
                format!("must be a number of seconds {bound}, found {value}"),
                format!(
                    "write e.g. `{}: {}` (fractions like 0.5 are fine)",
                    key.leaf(),
                    default
                ),
            ));
        }
        if value > 1e9 {
            return Err(self.err(
                key.name,
                line,
                format!("{value} seconds is too long"),
                "use a value below 1e9",
            ));
        }
        Ok(Duration::from_secs_f64(value))
    }

    fn count(&self, key: &Key, v: &S<i64>, default: i64, min: i64) -> Result<u32, ConfigError> {
        let (value, line) = match v {
            Some(s) => (s.value, Some(s.referenced.line())),
            None => (default, None),
        };
        if value < min || value > i64::from(u32::MAX) {
            return Err(self.err(
                key.name,
                line,
                format!("must be a whole number of at least {min}, found {value}"),
                format!("write e.g. `{}: {}`", key.leaf(), default.max(min)),
            ));
        }
        Ok(value as u32)
    }

    fn absolute(&self, key: &Key, v: &S<String>, default: &str) -> Result<PathBuf, ConfigError> {
        let (value, line) = match v {
            Some(s) => (s.value.clone(), Some(s.referenced.line())),
            None => (default.to_string(), None),
        };
        let p = PathBuf::from(&value);
        if value.is_empty() || !p.is_absolute() {
            return Err(self.err(
                key.name,
                line,
                format!("must be an absolute path, found {value:?}"),
                format!("write the full path, e.g. `{}: {}`", key.leaf(), default),
            ));
        }
        Ok(p)
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let watch = self.watch(raw.watch)?;
        let behavior = self.behavior(raw.behavior)?;
        let job = self.job(raw.job, &behavior)?;
        let metrics = self.metrics(raw.metrics)?;
        Ok(Config {
            source: self.file.to_path_buf(),
            watch,
            job,
            behavior,
            metrics,
        })
    }

    fn metrics(&self, raw: Option<RawMetrics>) -> Result<MetricsConfig, ConfigError> {
        let Some(m) = raw else {
            return Ok(MetricsConfig::default());
        };
        let listen = match &m.listen {
            None => None,
            Some(l) if l.value.trim().is_empty() => None,
            Some(l) => {
                let line = Some(l.referenced.line());
                let addr: SocketAddr = l.value.trim().parse().map_err(|_| {
                    self.err(
                        keys::METRICS_LISTEN.name,
                        line,
                        format!("must be an IP address and a port, found {:?}", l.value),
                        "write e.g. `listen: 127.0.0.1:9187` (IPv6 in quotes: `listen: \"[::1]:9187\"`)",
                    )
                })?;
                if addr.ip().is_unspecified() {
                    return Err(self.err(
                        keys::METRICS_LISTEN.name,
                        line,
                        format!(
                            "`{addr}` would serve the metrics on every network interface, without authentication"
                        ),
                        "write `listen: 127.0.0.1:9187` and let Prometheus scrape through node_exporter's textfile \
                         (`textfile:`) or a proxy, or name the one address Prometheus reaches, e.g. `listen: 10.0.0.5:9187`",
                    ));
                }
                Some(addr)
            }
        };
        let textfile = match &m.textfile {
            None => None,
            Some(t) if t.value.trim().is_empty() => None,
            Some(t) => {
                let example = "/var/lib/prometheus/node-exporter/dirwatcher.prom";
                let p = self.absolute(&keys::METRICS_TEXTFILE, &m.textfile, example)?;
                if p.extension().is_none_or(|e| e != "prom") {
                    return Err(self.err(
                        keys::METRICS_TEXTFILE.name,
                        Some(t.referenced.line()),
                        format!(
                            "must end in `.prom` (node_exporter's textfile collector reads only those), found {:?}",
                            t.value
                        ),
                        format!("write e.g. `textfile: {example}`"),
                    ));
                }
                Some(p)
            }
        };
        Ok(MetricsConfig { listen, textfile })
    }

    fn watch(&self, raw: Option<RawWatch>) -> Result<WatchConfig, ConfigError> {
        let Some(w) = raw else {
            return Err(self.err(
                "watch",
                None,
                "the `watch:` section is missing",
                "add `watch:` with at least `root: /path/to/incoming`",
            ));
        };
        let Some(root_s) = &w.root else {
            return Err(self.err(
                keys::WATCH_ROOT.name,
                None,
                "is required",
                "add `root: /path/to/incoming` under `watch:`",
            ));
        };
        let root = self.absolute(&keys::WATCH_ROOT, &w.root, "/data/incoming")?;
        let line = Some(root_s.referenced.line());
        let allow_unsafe_root = w.allow_unsafe_root.unwrap_or(defaults::ALLOW_UNSAFE_ROOT);
        self.root_is_safe(&root, line, allow_unsafe_root)?;
        let signal = w
            .signal_filename
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_else(|| defaults::SIGNAL_FILENAME.into());
        if signal.is_empty()
            || signal.contains('/')
            || signal == "."
            || signal == ".."
            || signal.contains('\0')
        {
            return Err(self.err(
                keys::WATCH_SIGNAL_FILENAME.name,
                w.signal_filename.as_ref().map(|s| s.referenced.line()),
                format!("must be a plain file name, found {signal:?}"),
                "write a name without `/`, e.g. `signal_filename: _READY`",
            ));
        }
        Ok(WatchConfig {
            root,
            signal_filename: signal.into(),
            poll_interval: self.seconds(
                &keys::WATCH_POLL_INTERVAL_SEC,
                &w.poll_interval_sec,
                defaults::POLL_INTERVAL_SEC,
                true,
            )?,
            stability_checks: self.count(
                &keys::WATCH_STABILITY_CHECKS,
                &w.stability_checks,
                defaults::STABILITY_CHECKS,
                1,
            )?,
            stability_interval: self.seconds(
                &keys::WATCH_STABILITY_INTERVAL_SEC,
                &w.stability_interval_sec,
                defaults::STABILITY_INTERVAL_SEC,
                false,
            )?,
            allow_unsafe_root,
            recheck: self.seconds(
                &keys::WATCH_RECHECK_SEC,
                &w.recheck_sec,
                defaults::RECHECK_SEC,
                false,
            )?,
        })
    }

    /// The root must exist and be a directory (it is never created: a missing root usually means an
    /// unmounted file system). Unless `allow_unsafe` (`watch.allow_unsafe_root`), it must not be a symlink
    /// (whoever can change the link can point the daemon, and its deletions, anywhere), nor writable by
    /// every user without the sticky bit (anyone could then rename or replace anyone's directories).
    fn root_is_safe(
        &self,
        root: &Path,
        line: Option<u64>,
        allow_unsafe: bool,
    ) -> Result<(), ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let key = keys::WATCH_ROOT.name;
        let allow = "or, if you accept the risk, set `allow_unsafe_root: true` under `watch:`";
        let link = std::fs::symlink_metadata(root).map(|m| m.file_type().is_symlink());
        if let Ok(true) = link
            && !allow_unsafe
        {
            let target = std::fs::read_link(root)
                .map(|t| format!(" (to `{}`)", t.display()))
                .unwrap_or_default();
            return Err(self.err(
                key,
                line,
                format!(
                    "`{}` is a symlink{target}, which dirwatcher does not follow",
                    root.display()
                ),
                format!("point `root` at the real directory, {allow}"),
            ));
        }
        match std::fs::metadata(root) {
            Ok(m) if m.is_dir() => {
                let mode = m.permissions().mode();
                if mode & 0o002 != 0 && mode & 0o1000 == 0 && !allow_unsafe {
                    return Err(self.err(
                        key,
                        line,
                        format!(
                            "`{}` is writable by every user (mode {:o}) without the sticky bit: anyone could \
                             rename or replace another user's directories in it",
                            root.display(),
                            mode & 0o7777
                        ),
                        format!(
                            "`chmod +t {}` (or `chmod o-w`), {allow}",
                            root.display()
                        ),
                    ));
                }
                Ok(())
            }
            Ok(_) => Err(self.err(
                key,
                line,
                format!("`{}` is not a directory", root.display()),
                "point `root` at the directory that receives the data",
            )),
            Err(e) => Err(self.err(
                key,
                line,
                format!("`{}` cannot be used: {e}", root.display()),
                "check that the file system is mounted and the path is right; dirwatcher never creates the root",
            )),
        }
    }

    fn behavior(&self, raw: Option<RawBehavior>) -> Result<BehaviorConfig, ConfigError> {
        let b = raw.unwrap_or(RawBehavior {
            delete_on_success: None,
            state_file: None,
            failure_log: None,
            max_retries: None,
            submit_backoff_sec: None,
            submit_backoff_max_sec: None,
        });
        let submit_backoff = self.seconds(
            &keys::BEHAVIOR_SUBMIT_BACKOFF_SEC,
            &b.submit_backoff_sec,
            defaults::SUBMIT_BACKOFF_SEC,
            true,
        )?;
        let submit_backoff_max = self.seconds(
            &keys::BEHAVIOR_SUBMIT_BACKOFF_MAX_SEC,
            &b.submit_backoff_max_sec,
            defaults::SUBMIT_BACKOFF_MAX_SEC,
            true,
        )?;
        Ok(BehaviorConfig {
            delete_on_success: b.delete_on_success.unwrap_or(defaults::DELETE_ON_SUCCESS),
            state_file: self.absolute(
                &keys::BEHAVIOR_STATE_FILE,
                &b.state_file,
                defaults::STATE_FILE,
            )?,
            failure_log: self.absolute(
                &keys::BEHAVIOR_FAILURE_LOG,
                &b.failure_log,
                defaults::FAILURE_LOG,
            )?,
            max_retries: self.count(
                &keys::BEHAVIOR_MAX_RETRIES,
                &b.max_retries,
                defaults::MAX_RETRIES,
                0,
            )?,
            submit_backoff,
            submit_backoff_max: submit_backoff_max.max(submit_backoff),
        })
    }

    fn job(
        &self,
        raw: Option<RawJob>,
        behavior: &BehaviorConfig,
    ) -> Result<JobConfig, ConfigError> {
        let Some(j) = raw else {
            return Err(self.err(
                "job",
                None,
                "the `job:` section is missing",
                "add `job:` with `wrap_cmd: <command>` (the directory is appended) or `job_script: /path/to/script`",
            ));
        };
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
        let prefix = j
            .job_name_prefix
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
                j.job_name_prefix.as_ref().map(|s| s.referenced.line()),
                format!("must be a non-empty word without spaces or commas, found {prefix:?}"),
                "write e.g. `job_name_prefix: dirwatch`",
            ));
        }
        for k in j.env.keys() {
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
        let output = match &j.output {
            Some(o) if o.value.trim().is_empty() => None,
            Some(o) => Some(o.value.clone()),
            None if behavior.delete_on_success => Some(defaults::OUTPUT_WITH_DELETE.to_string()),
            None => None,
        };
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1);
        Ok(JobConfig {
            executor: j.executor.unwrap_or(defaults::EXECUTOR),
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
            command_timeout: self.seconds(
                &keys::JOB_COMMAND_TIMEOUT_SEC,
                &j.command_timeout_sec,
                defaults::COMMAND_TIMEOUT_SEC,
                true,
            )?,
            lost_after: self.seconds(
                &keys::JOB_LOST_AFTER_SEC,
                &j.lost_after_sec,
                defaults::LOST_AFTER_SEC,
                true,
            )?,
            max_local_jobs: self.count(&keys::JOB_MAX_LOCAL_JOBS, &j.max_local_jobs, cpus, 1)?,
            submit_concurrency: self.count(
                &keys::JOB_SUBMIT_CONCURRENCY,
                &j.submit_concurrency,
                defaults::SUBMIT_CONCURRENCY,
                1,
            )?,
            submit_rate: self.submit_rate(j.submit_rate.as_ref())?,
        })
    }

    /// `job.submit_rate`: both fields, each a positive number.
    fn submit_rate(&self, v: Option<&Spanned<RawRate>>) -> Result<Option<SubmitRate>, ConfigError> {
        let Some(r) = v else { return Ok(None) };
        let line = Some(r.referenced.line());
        let fix = "write e.g. `submit_rate: {burst: 30, per_sec: 2}` (30 calls at once, then 2 per second)";
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

fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::parse(yaml, Path::new("/etc/dirwatcher/config.yaml"))
    }

    #[test]
    fn a_symlinked_or_world_writable_root_is_refused_unless_allowed() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let cfg = |root: &Path, extra: &str| {
            format!(
                "watch:\n  root: {:?}\n{extra}job:\n  wrap_cmd: echo\n",
                root.display().to_string()
            )
        };
        let e = parse(&cfg(&link, "")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("watch.root", Some(2)), "{e}");
        assert!(e.problem.contains("is a symlink"), "{e}");
        assert!(e.fix.contains("allow_unsafe_root: true"), "{e}");
        parse(&cfg(&link, "  allow_unsafe_root: true\n")).unwrap();

        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = parse(&cfg(&real, "")).unwrap_err();
        assert_eq!(e.key, "watch.root", "{e}");
        assert!(e.problem.contains("without the sticky bit"), "{e}");
        assert!(e.fix.contains("chmod +t"), "{e}");
        let c = parse(&cfg(&real, "  allow_unsafe_root: true\n")).unwrap();
        assert!(c.watch.allow_unsafe_root);
        assert!(c.to_yaml().contains("allow_unsafe_root: true"));
        // A shared drop folder with the sticky bit (like /tmp) is fine.
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(!parse(&cfg(&real, "")).unwrap().watch.allow_unsafe_root);
    }

    fn with_root(body: &str) -> String {
        format!("watch:\n  root: {}\n{body}", std::env::temp_dir().display())
    }

    #[test]
    fn time_limits_follow_slurm_formats() {
        let secs = |s| parse_time_limit(s).unwrap().duration.unwrap().as_secs();
        assert_eq!(secs("00:10:00"), 600);
        assert_eq!(secs("10"), 600);
        assert_eq!(secs("01:30"), 90);
        assert_eq!(secs("1-00"), 86400);
        assert_eq!(secs("1-02:03"), 86400 + 2 * 3600 + 180);
        assert_eq!(secs("2-00:00:05"), 2 * 86400 + 5);
        assert_eq!(parse_time_limit("UNLIMITED").unwrap().duration, None);
        for bad in ["", "abc", "1:2:3:4", "-5", "00:00:00", "1-", "10m"] {
            assert!(parse_time_limit(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn missing_command_names_the_key() {
        let e = parse(&with_root("job:\n  partition: main\n")).unwrap_err();
        assert_eq!(e.key, "job.wrap_cmd");
        assert!(e.fix.contains("job_script"));
    }

    #[test]
    fn negative_interval_names_key_and_line() {
        let e = parse(&with_root(
            "  poll_interval_sec: -1\njob:\n  wrap_cmd: echo\n",
        ))
        .unwrap_err();
        assert_eq!(e.key, "watch.poll_interval_sec");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn negative_count_is_refused() {
        let e = parse(&with_root(
            "  stability_checks: -2\njob:\n  wrap_cmd: echo\n",
        ))
        .unwrap_err();
        assert_eq!(e.key, "watch.stability_checks");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn unknown_key_gives_its_line() {
        let e = parse(&with_root(
            "  poll_intervall_sec: 3\njob:\n  wrap_cmd: echo\n",
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.problem.contains("poll_intervall_sec"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse(&with_root(
            "  stability_checks: two\njob:\n  wrap_cmd: echo\n",
        ))
        .unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("watch.stability_checks", Some(3)),
            "{e}"
        );
        let e = parse(&with_root(
            "job:\n  wrap_cmd: echo\nbehavior:\n  delete_on_success: maybe\n",
        ))
        .unwrap_err();
        assert_eq!(e.key, "behavior.delete_on_success", "{e}");
    }

    #[test]
    fn fractional_seconds_are_accepted() {
        let c = parse(&with_root(
            "  poll_interval_sec: 0.5\n  stability_interval_sec: 0.25\njob:\n  wrap_cmd: echo\n",
        ))
        .unwrap();
        assert_eq!(c.watch.poll_interval, Duration::from_millis(500));
        assert_eq!(c.watch.stability_interval, Duration::from_millis(250));
    }

    #[test]
    fn delete_on_success_moves_default_output_out_of_the_directory() {
        let c = parse(&with_root(
            "job:\n  wrap_cmd: echo\nbehavior:\n  delete_on_success: true\n",
        ))
        .unwrap();
        assert_eq!(c.job.output.as_deref(), Some(defaults::OUTPUT_WITH_DELETE));
        let c = parse(&with_root("job:\n  wrap_cmd: echo\n")).unwrap();
        assert_eq!(c.job.output, None);
    }

    #[test]
    fn effective_config_round_trips() {
        let c = parse(&with_root(
            "job:\n  wrap_cmd: echo hi\n  env: {A: b}\n  extra_args: [--qos=x]\n",
        ))
        .unwrap();
        let again = parse(&c.to_yaml()).unwrap();
        assert_eq!(again.to_yaml(), c.to_yaml());
        assert_eq!(again.metrics, MetricsConfig::default());
    }

    #[test]
    fn effective_config_round_trips_metrics() {
        let c = parse(&with_root(
            "job:\n  wrap_cmd: echo\nmetrics:\n  listen: 127.0.0.1:9187\n  textfile: /var/lib/node/dirwatcher.prom\n",
        ))
        .unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9187".parse().unwrap()));
        let again = parse(&c.to_yaml()).unwrap();
        assert_eq!(again.metrics, c.metrics);
        assert_eq!(again.to_yaml(), c.to_yaml());
        let c = parse(&with_root(
            "job:\n  wrap_cmd: echo\nmetrics:\n  listen: \"[::1]:0\"\n",
        ))
        .unwrap();
        assert_eq!(parse(&c.to_yaml()).unwrap().metrics, c.metrics);
    }

    #[test]
    fn metrics_section_is_optional_and_may_be_empty() {
        for body in ["", "metrics:\n", "metrics: {}\n"] {
            let c = parse(&with_root(&format!("job:\n  wrap_cmd: echo\n{body}"))).unwrap();
            assert_eq!(c.metrics, MetricsConfig::default(), "{body:?}");
        }
    }

    #[test]
    fn bad_metrics_keys_name_key_line_and_fix() {
        let cases = [
            ("  listen: localhost:9187\n", "metrics.listen", "IP address"),
            (
                "  listen: 0.0.0.0:9187\n",
                "metrics.listen",
                "every network interface",
            ),
            (
                "  textfile: dirwatcher.prom\n",
                "metrics.textfile",
                "absolute path",
            ),
            (
                "  textfile: /var/lib/node/dirwatcher.txt\n",
                "metrics.textfile",
                ".prom",
            ),
            (
                "  listn: 127.0.0.1:9187\n",
                "metrics.listn",
                "unknown field",
            ),
        ];
        for (line, key, problem) in cases {
            let e = parse(&with_root(&format!(
                "job:\n  wrap_cmd: echo\nmetrics:\n{line}"
            )))
            .unwrap_err();
            assert_eq!((e.key.as_str(), e.line), (key, Some(6)), "{e}");
            assert!(e.problem.contains(problem), "{e}");
            assert!(!e.fix.is_empty(), "{e}");
        }
    }
}
