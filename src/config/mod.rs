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

pub mod credential;
mod db;
mod instance;
pub mod keys;

pub use db::DbConfig;
pub(crate) mod lint;

pub use instance::InstanceName;

use keys::Key;

use crate::engine::{ContentCheck, Preset, QuietScope, ReadyRules};
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
    /// The column, and further errors found in the same pass; boxed, so that an error stays small to
    /// return.
    pub detail: Option<Box<Detail>>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config `{}`", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(column) = self.detail.as_ref().and_then(|d| d.column) {
            write!(f, " column {column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ", key `{}`", self.key)?;
        }
        write!(f, ": {}", self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        for m in self.detail.iter().flat_map(|d| &d.more) {
            write!(f, "\nerror: {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// What few config errors carry: a column, and the other errors of the same pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    /// 1-based column, when it matters (a tab).
    pub column: Option<u64>,
    /// Further errors found in the same pass (each said with its own line and fix).
    pub more: Vec<ConfigError>,
}

impl ConfigError {
    /// The first error, carrying the others; `None` when there are none.
    fn all(errors: Vec<ConfigError>) -> Option<ConfigError> {
        let mut it = errors.into_iter();
        let mut first = it.next()?;
        let more: Vec<ConfigError> = it.collect();
        if !more.is_empty() {
            first.detail.get_or_insert_with(Box::default).more = more;
        }
        Some(first)
    }
}

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
    /// The readiness rules (the simple form: `signal_filename` alone), presets expanded.
    pub ready: ReadyRules,
    /// The preset the rules came from, if any (said by `check-config`).
    pub preset: Option<Preset>,
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
    /// The process umask the daemon sets at start (permission bits, `0o027` by default).
    pub umask: u32,
    /// This service's name when several run on one host (`dirwatcher@NAME`); `None` for the plain one.
    pub instance: Option<InstanceName>,
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

/// A password or token: shown as `<secret>` by `Debug`, never formatted anywhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that hands it to a child process (on its stdin).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// How e-mail leaves this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailVia {
    /// `sendmail -t` when it is installed, else SMTP when `behavior.smtp_host` is set (as the original).
    Auto,
    /// Always `sendmail -t`.
    Sendmail,
    /// Always SMTP to `behavior.smtp_host`.
    Smtp,
}

impl EmailVia {
    /// The word in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            EmailVia::Auto => "auto",
            EmailVia::Sendmail => "sendmail",
            EmailVia::Smtp => "smtp",
        }
    }
}

/// The SMTP server (the original's `behavior.smtp_*` keys), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Host name or address.
    pub host: String,
    /// Port (587 unless set).
    pub port: u16,
    /// User name for AUTH.
    pub user: Option<String>,
    /// Password for AUTH (from `smtp_pass`, `smtp_pass_file` or `smtp_pass_env`).
    pub pass: Option<Secret>,
    /// TLS: implicit on port 465, required STARTTLS on any other.
    pub tls: bool,
}

/// `notify:` (and the e-mail keys of `behavior:`), validated. Empty channels send nothing.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Events that are told.
    pub events: Vec<crate::engine::notice::EventKind>,
    /// E-mail the directory's `.dirwatch_meta.json` `user_email`.
    pub email_owner: bool,
    /// Fixed recipients, told of every event.
    pub email_to: Vec<String>,
    /// Transport choice.
    pub email_via: EmailVia,
    /// `behavior.from_email`, checked; `None`: `dirwatcher@<host>`.
    pub from: Option<String>,
    /// `behavior.smtp_*`, when `smtp_host` is set.
    pub smtp: Option<SmtpConfig>,
    /// Webhook URLs (`http://` or `https://`).
    pub webhooks: Vec<String>,
    /// Webhook body.
    pub webhook_format: crate::engine::notice::WebhookFormat,
    /// Bearer token for the webhooks.
    pub webhook_token: Option<Secret>,
    /// Where the token comes from, for `check-config` (`file:` path or `env:` name).
    pub webhook_token_source: Option<String>,
    /// Where the SMTP password comes from, for `check-config`.
    pub smtp_pass_source: Option<String>,
    /// The event hook: program and arguments.
    pub command: Vec<String>,
    /// Bound of one delivery.
    pub timeout: Duration,
    /// First delay after a failed delivery.
    pub retry: Duration,
    /// The original's web-app database (`db:`): every submission and end is written to its `jobs`
    /// table. Set after `notify:` is validated.
    pub db: Option<DbConfig>,
    /// Attempts per notice.
    pub max_attempts: u32,
}

impl NotifyConfig {
    /// Any channel is configured (e-mail counts when it can have a recipient).
    pub fn any_channel(&self) -> bool {
        self.email_owner
            || !self.email_to.is_empty()
            || !self.webhooks.is_empty()
            || !self.command.is_empty()
    }
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
    /// `notify:` and the e-mail keys of `behavior:`.
    pub notify: NotifyConfig,
    /// Secrets a command that sends nothing left unread ([`Config::load_without_secrets`]), in words.
    pub unread_secrets: Vec<String>,
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
    notify: Option<RawNotify>,
    db: Option<db::RawDb>,
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
    ready_preset: S<String>,
    ready_all_of: S<Vec<String>>,
    ready_any_of: S<Vec<AnyOfItem>>,
    ready_content_file: S<String>,
    ready_content_match: S<String>,
    ignore_patterns: S<Vec<String>>,
    quiet_sec: S<f64>,
    quiet_scope: S<String>,
    quiet_max_entries: S<i64>,
}

/// One item of `watch.ready_any_of`: a marker, or a list of markers that must all be there.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AnyOfItem {
    One(String),
    All(Vec<String>),
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
    output_group: S<String>,
    command_timeout_sec: S<f64>,
    lost_after_sec: S<f64>,
    max_local_jobs: S<i64>,
    umask: S<String>,
    submit_concurrency: S<i64>,
    submit_rate: Option<Spanned<RawRate>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    burst: S<i64>,
    per_sec: S<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBehavior {
    delete_on_success: Option<bool>,
    state_file: S<String>,
    failure_log: S<String>,
    instance: S<String>,
    max_retries: S<i64>,
    submit_backoff_sec: S<f64>,
    submit_backoff_max_sec: S<f64>,
    /// Octal: `"0027"`, or bare `0027` (read as text, so YAML's number rules never apply).
    umask: S<String>,
    from_email: S<String>,
    smtp_host: S<String>,
    smtp_port: S<i64>,
    smtp_user: S<String>,
    smtp_pass: S<String>,
    smtp_pass_file: S<String>,
    smtp_pass_env: S<String>,
    smtp_use_tls: Option<bool>,
}

/// The e-mail keys the original keeps under `behavior:`, taken out before that section is validated.
#[derive(Debug, Default)]
struct RawSmtp {
    from_email: S<String>,
    host: S<String>,
    port: S<i64>,
    user: S<String>,
    pass: S<String>,
    pass_file: S<String>,
    pass_env: S<String>,
    use_tls: Option<bool>,
}

impl RawSmtp {
    fn take(b: &mut RawBehavior) -> RawSmtp {
        RawSmtp {
            from_email: b.from_email.take(),
            host: b.smtp_host.take(),
            port: b.smtp_port.take(),
            user: b.smtp_user.take(),
            pass: b.smtp_pass.take(),
            pass_file: b.smtp_pass_file.take(),
            pass_env: b.smtp_pass_env.take(),
            use_tls: b.smtp_use_tls.take(),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    events: S<Vec<String>>,
    email_owner: Option<bool>,
    email_to: S<Vec<String>>,
    email_via: S<String>,
    webhooks: S<Vec<String>>,
    webhook_format: S<String>,
    webhook_token_file: S<String>,
    webhook_token_env: S<String>,
    command: S<Vec<String>>,
    timeout_sec: S<f64>,
    retry_sec: S<f64>,
    max_attempts: S<i64>,
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
        Self::parse(&read_text(path)?, path)
    }

    /// Validates YAML text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::parse_with(text, path, RootCheck::MustExist)
    }

    /// Like [`Config::parse`]; with [`RootCheck::Staged`] a missing `watch.root` is accepted (a config
    /// staged for another machine, `install --destdir`).
    pub fn parse_with(text: &str, path: &Path, root: RootCheck) -> Result<Config, ConfigError> {
        Self::parse_inner(text, path, root, Secrets::Required)
    }

    /// Like [`Config::parse_with`], reading secrets as `secrets` says (`install` checks a config whose
    /// password file it has not written yet).
    pub fn parse_with_secrets(
        text: &str,
        path: &Path,
        root: RootCheck,
        secrets: Secrets,
    ) -> Result<Config, ConfigError> {
        Self::parse_inner(text, path, root, secrets)
    }

    fn parse_inner(
        text: &str,
        path: &Path,
        root: RootCheck,
        secrets: Secrets,
    ) -> Result<Config, ConfigError> {
        // What a look at the text finds (tabs, duplicates, misspelt or misplaced keys) is said all at once,
        // before the parser would stop at the first of them in its own words.
        let found: Vec<ConfigError> = lint::lint(text)
            .into_iter()
            .map(|f| ConfigError {
                file: path.to_path_buf(),
                key: f.key,
                line: Some(f.line),
                problem: f.problem,
                fix: f.fix,
                detail: f.column.map(|column| {
                    Box::new(Detail {
                        column: Some(column),
                        more: Vec::new(),
                    })
                }),
            })
            .collect();
        if let Some(e) = ConfigError::all(found) {
            return Err(e);
        }
        let raw: RawConfig =
            serde_saphyr::from_str(text).map_err(|e| serde_error(path, text, &e))?;
        Validator {
            file: path,
            root,
            secrets,
            unread: Default::default(),
        }
        .config(raw)
    }

    /// Like [`Config::load`], for a command that does not send anything: secrets it cannot read are left
    /// unread and listed in [`Config::unread_secrets`], instead of refusing the config.
    pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
        Self::parse_inner(
            &read_text(path)?,
            path,
            RootCheck::MustExist,
            Secrets::IfReadable,
        )
    }

    /// The keys whose effective value differs between `self` and `other`, in table order (for the reload
    /// log line). Compared on the effective config `check-config` prints, so defaults count as values.
    pub fn changed_keys(&self, other: &Config) -> Vec<String> {
        fn values(yaml: &str) -> Vec<(String, String)> {
            let mut section = "";
            let mut out = Vec::new();
            for l in yaml.lines() {
                if let Some(s) = l.strip_suffix(':').filter(|s| !s.starts_with(' ')) {
                    section = s;
                } else if let Some((k, v)) = l.strip_prefix("  ").and_then(|l| l.split_once(':'))
                    && !k.starts_with(' ')
                {
                    out.push((format!("{section}.{k}"), v.trim().to_string()));
                }
            }
            out
        }
        let (a, b) = (values(&self.to_yaml()), values(&other.to_yaml()));
        let mut changed: Vec<String> = a
            .iter()
            .filter(|(k, v)| {
                b.iter()
                    .find(|(k2, _)| k2 == k)
                    .is_none_or(|(_, v2)| v2 != v)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (k, _) in &b {
            if !a.iter().any(|(k2, _)| k2 == k) {
                changed.push(k.clone());
            }
        }
        changed
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
        put_ready(&mut y, w);
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
        // `""` asks for Slurm's own default; `null` would read back as dirwatcher's default.
        y.put(&JOB_OUTPUT, q(j.output.as_deref().unwrap_or("")));
        y.put(
            &JOB_OUTPUT_GROUP,
            opt(j.output_group.as_ref().map(|(n, _)| n.as_str())),
        );
        y.put(&JOB_COMMAND_TIMEOUT_SEC, secs(j.command_timeout));
        y.put(&JOB_LOST_AFTER_SEC, secs(j.lost_after));
        y.put(&JOB_MAX_LOCAL_JOBS, j.max_local_jobs.to_string());
        y.put(&JOB_UMASK, q(&umask_text(j.umask)));
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
        y.put(
            &BEHAVIOR_INSTANCE,
            opt(b.instance.as_ref().map(InstanceName::as_str)),
        );
        y.put(&BEHAVIOR_MAX_RETRIES, b.max_retries.to_string());
        y.put(&BEHAVIOR_SUBMIT_BACKOFF_SEC, secs(b.submit_backoff));
        y.put(&BEHAVIOR_SUBMIT_BACKOFF_MAX_SEC, secs(b.submit_backoff_max));
        y.put(&BEHAVIOR_UMASK, q(&format!("{:04o}", b.umask)));
        let n = &self.notify;
        let smtp = n.smtp.as_ref();
        let src = |s: Option<&str>, prefix: &str| opt(s.and_then(|s| s.strip_prefix(prefix)));
        y.put(&BEHAVIOR_FROM_EMAIL, opt(n.from.as_deref()));
        y.put(&BEHAVIOR_SMTP_HOST, opt(smtp.map(|s| s.host.as_str())));
        y.put(
            &BEHAVIOR_SMTP_PORT,
            smtp.map_or(defaults::SMTP_PORT.to_string(), |s| s.port.to_string()),
        );
        y.put(
            &BEHAVIOR_SMTP_USER,
            opt(smtp.and_then(|s| s.user.as_deref())),
        );
        let literal = n.smtp_pass_source.as_deref() == Some("literal");
        y.put(
            &BEHAVIOR_SMTP_PASS,
            if literal {
                q("<secret>")
            } else {
                "null".into()
            },
        );
        y.put(
            &BEHAVIOR_SMTP_PASS_FILE,
            src(n.smtp_pass_source.as_deref(), "file:"),
        );
        y.put(
            &BEHAVIOR_SMTP_PASS_ENV,
            src(n.smtp_pass_source.as_deref(), "env:"),
        );
        y.put(
            &BEHAVIOR_SMTP_USE_TLS,
            smtp.map_or(defaults::SMTP_USE_TLS, |s| s.tls).to_string(),
        );
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|a| q(a)).collect();
            format!("[{}]", items.join(", "))
        };
        let m = &self.metrics;
        y.put(
            &METRICS_LISTEN,
            opt(m.listen.map(|a| a.to_string()).as_deref()),
        );
        y.put(
            &METRICS_TEXTFILE,
            m.textfile.as_deref().map_or("null".into(), path),
        );
        let events: Vec<String> = n.events.iter().map(|e| e.as_str().to_string()).collect();
        y.put(&NOTIFY_EVENTS, list(&events));
        y.put(&NOTIFY_EMAIL_OWNER, n.email_owner.to_string());
        y.put(&NOTIFY_EMAIL_TO, list(&n.email_to));
        y.put(&NOTIFY_EMAIL_VIA, n.email_via.as_str().into());
        y.put(&NOTIFY_WEBHOOKS, list(&n.webhooks));
        y.put(&NOTIFY_WEBHOOK_FORMAT, n.webhook_format.as_str().into());
        y.put(
            &NOTIFY_WEBHOOK_TOKEN_FILE,
            src(n.webhook_token_source.as_deref(), "file:"),
        );
        y.put(
            &NOTIFY_WEBHOOK_TOKEN_ENV,
            src(n.webhook_token_source.as_deref(), "env:"),
        );
        y.put(&NOTIFY_COMMAND, list(&n.command));
        y.put(&NOTIFY_TIMEOUT_SEC, secs(n.timeout));
        y.put(&NOTIFY_RETRY_SEC, secs(n.retry));
        y.put(&NOTIFY_MAX_ATTEMPTS, n.max_attempts.to_string());
        // Without a `db:` section every key is `null`: the effective config read back keeps the bridge off.
        let d = n.db.as_ref();
        y.put(&DB_HOST, opt(d.map(|d| d.host.as_str())));
        y.put(&DB_PORT, d.map_or("null".into(), |d| d.port.to_string()));
        y.put(&DB_NAME, opt(d.map(|d| d.name.as_str())));
        y.put(&DB_USER, opt(d.map(|d| d.user.as_str())));
        let dsrc = d.and_then(|d| d.pass_source.as_deref());
        y.put(
            &DB_PASS,
            if dsrc == Some("literal") {
                q("<secret>")
            } else {
                "null".into()
            },
        );
        y.put(&DB_PASS_FILE, src(dsrc, "file:"));
        y.put(&DB_PASS_ENV, src(dsrc, "env:"));
        y.text
    }
}

/// Whether `watch.root` must exist when the config is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootCheck {
    /// It must be an existing directory (every config the daemon and `check-config` read).
    MustExist,
    /// The config is for another machine: the root is checked there.
    Staged,
}

/// The config file's text, or the error that says it cannot be read.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        key: String::new(),
        line: None,
        problem: format!("cannot read the file: {e}"),
        fix: "pass an existing, readable YAML file with --config".into(),
        detail: None,
    })
}

/// The readiness keys, presets expanded: what the daemon really checks, and a config that loads to the
/// same rules.
fn put_ready(y: &mut EffectiveYaml, w: &WatchConfig) {
    use keys::*;
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let list = |v: &[String]| {
        format!(
            "[{}]",
            v.iter().map(|m| q(m)).collect::<Vec<_>>().join(", ")
        )
    };
    let r = &w.ready;
    y.put(
        &WATCH_READY_PRESET,
        match w.preset {
            Some(p) => format!("null  # `{}`, expanded into the keys below", p.name()),
            None => "null".into(),
        },
    );
    if let [one] = r.alternatives.as_slice() {
        y.put(&WATCH_READY_ALL_OF, list(one));
        y.put(&WATCH_READY_ANY_OF, "[]".into());
    } else {
        let items: Vec<String> = r
            .alternatives
            .iter()
            .map(|a| match a.as_slice() {
                [m] => q(m),
                _ => list(a),
            })
            .collect();
        y.put(&WATCH_READY_ALL_OF, "[]".into());
        y.put(&WATCH_READY_ANY_OF, format!("[{}]", items.join(", ")));
    }
    match &r.content {
        Some(c) => {
            y.put(&WATCH_READY_CONTENT_FILE, q(&c.file));
            y.put(&WATCH_READY_CONTENT_MATCH, q(c.pattern.as_str()));
        }
        None => {
            y.put(&WATCH_READY_CONTENT_FILE, "null".into());
            y.put(&WATCH_READY_CONTENT_MATCH, "null".into());
        }
    }
    y.put(&WATCH_IGNORE_PATTERNS, list(&r.ignore));
    y.put(&WATCH_QUIET_SEC, seconds_text(r.quiet.as_secs_f64()));
    let (scope, max) = match r.scope {
        QuietScope::Top => ("top", defaults::QUIET_MAX_ENTRIES as usize),
        QuietScope::Tree { max_entries } => ("tree", max_entries),
    };
    y.put(&WATCH_QUIET_SCOPE, scope.into());
    y.put(&WATCH_QUIET_MAX_ENTRIES, max.to_string());
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
    // What was written, for the fix line (`5s`, `"--qos=high"`).
    let written = line
        .and_then(|l| text.lines().nth(usize::try_from(l).ok()?.checked_sub(1)?))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty());
    let found = written
        .as_deref()
        .map(|w| format!(", found `{w}`"))
        .unwrap_or_default();
    let known = keys::ALL.iter().find(|k| k.name == key);
    let leaf_name = leaf(&key).to_string();
    // The parser's words for a value of the wrong type (`invalid f64`, `invalid floating point`, `invalid
    // type: string …, expected a sequence`, …).
    let type_error = problem.contains("invalid")
        || problem.contains("expected a")
        || problem.contains("expected sequence")
        || problem.contains("expected mapping");
    let (problem, fix) = if problem.contains("unknown field") {
        (problem, "remove the key or correct its spelling; `dirwatcher check-config --help` lists every key".to_string())
    } else if let (true, Some(k)) = (type_error, known) {
        use keys::DefaultValue as D;
        match k.default {
            D::Seconds(d) => (
                format!("expected a number of seconds{found}"),
                format!(
                    "a number of seconds without a unit, e.g. `{leaf_name}: {}` (fractions like 0.5 are fine)",
                    keys::seconds_text(d)
                ),
            ),
            D::Count(n) => (
                format!("expected a whole number{found}"),
                format!(
                    "a whole number without quotes, e.g. `{leaf_name}: {}`",
                    n.max(1)
                ),
            ),
            D::Switch(_) => (
                format!("expected true or false{found}"),
                format!("write `{leaf_name}: true` or `{leaf_name}: false`"),
            ),
            D::EmptyList => {
                let item = written
                    .as_deref()
                    .map(|w| w.trim_matches(['"', '\'']).to_string())
                    .filter(|w| !w.is_empty())
                    .unwrap_or_else(|| "--qos=high".into());
                (
                    format!("expected a list{found}"),
                    format!(
                        "write the list form, one item per argument: `{leaf_name}: [{item:?}]`"
                    ),
                )
            }
            D::EmptyMap => (
                format!("expected a mapping of names to values{found}"),
                format!(
                    "write e.g. `{leaf_name}: {{NAME: value}}`, or one `NAME: value` per line below it"
                ),
            ),
            _ => (
                format!("expected text{found}"),
                format!(
                    "write the value as text, in quotes if it contains `:` or `#`: `{leaf_name}: \"…\"`"
                ),
            ),
        }
    } else if type_error {
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
        detail: None,
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

/// Shortest `watch.poll_interval_sec`: below it the loop would call `sacct` many times a second.
const MIN_POLL_SEC: f64 = 0.1;
/// Shortest `job.command_timeout_sec`: `sbatch` and `sacct` take tens of milliseconds when all is well,
/// and a lost answer costs a key lookup.
const MIN_COMMAND_TIMEOUT_SEC: f64 = 1.0;
/// Shortest `behavior.submit_backoff_sec` and `submit_backoff_max_sec`.
const MIN_BACKOFF_SEC: f64 = 0.1;
/// `job.lost_after_sec`: a job unseen for less than a second is not lost, it is between two looks.
const MIN_LOST_AFTER_SEC: f64 = 1.0;

struct Validator<'a> {
    file: &'a Path,
    root: RootCheck,
    secrets: Secrets,
    /// Secrets left unread ([`Secrets::IfReadable`]), each in words.
    unread: std::cell::RefCell<Vec<String>>,
}

/// Whether loading a config must read its secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Every secret must be readable (the daemon, `check-config --secrets`).
    Required,
    /// A secret file this user cannot read, or a variable that is not set, is left unread and said
    /// (`status`, `explain`, `check-config`: an operator who may not read the secrets still uses them).
    IfReadable,
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
            detail: None,
        }
    }

    /// A number of seconds of at least `min`: a lower bound on every `*_sec` key, so that a typo such as
    /// `1e-9` cannot turn a poll into a busy loop or a timeout into an instant failure.
    fn seconds(
        &self,
        key: &Key,
        v: &S<f64>,
        default: f64,
        min: f64,
    ) -> Result<Duration, ConfigError> {
        let (value, line) = match v {
            Some(s) => (s.value, Some(s.referenced.line())),
            None => (default, None),
        };
        if !value.is_finite() || value < min {
            let bound = if min == 0.0 {
                "0 or more".to_string()
            } else {
                format!("at least {min}")
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

    /// Every section is validated, so that one pass reports an error of each (a section stops at its first).
    fn config(&self, mut raw: RawConfig) -> Result<Config, ConfigError> {
        let smtp = raw.behavior.as_mut().map(RawSmtp::take).unwrap_or_default();
        let watch = self.watch(raw.watch);
        let behavior = self.behavior(raw.behavior);
        let job = self.job(raw.job);
        let metrics = self.metrics(raw.metrics);
        let notify = self.notify(raw.notify.unwrap_or_default(), smtp);
        let db = self.db(raw.db);
        match (watch, behavior, job, metrics, notify, db) {
            (Ok(watch), Ok(behavior), Ok(job), Ok(metrics), Ok(mut notify), Ok(db)) => {
                notify.db = db;
                Ok(Config {
                    source: self.file.to_path_buf(),
                    watch,
                    job,
                    behavior,
                    metrics,
                    notify,
                    unread_secrets: self.unread.take(),
                })
            }
            (w, b, j, m, n, d) => {
                let mut errors: Vec<ConfigError> =
                    [w.err(), b.err(), j.err(), m.err(), n.err(), d.err()]
                        .into_iter()
                        .flatten()
                        .collect();
                errors.sort_by_key(|e| e.line.unwrap_or(u64::MAX));
                Err(ConfigError::all(errors).expect("one section failed"))
            }
        }
    }

    /// A secret from at most one of: the value itself, a file, an environment variable. Returns it with
    /// where it came from (`literal`, `file:PATH`, `env:NAME`).
    fn secret(
        &self,
        literal: Option<(&Key, &S<String>)>,
        file: (&Key, &S<String>),
        env: (&Key, &S<String>),
    ) -> Result<Option<(Secret, String)>, ConfigError> {
        let given = |v: &S<String>| v.as_ref().filter(|s| !s.value.is_empty()).is_some();
        let set: Vec<&Key> = [literal, Some(file), Some(env)]
            .into_iter()
            .flatten()
            .filter(|(_, v)| given(v))
            .map(|(k, _)| k)
            .collect();
        if set.len() > 1 {
            return Err(self.err(
                set[1].name,
                None,
                format!("`{}` and `{}` are both set", set[0].leaf(), set[1].leaf()),
                "keep one source of the secret",
            ));
        }
        // The unit's credential (`LoadCredential=smtp_pass:FILE`) comes first, whatever key the config
        // uses: the service manager read the file as root and hands it to this service alone.
        let credential = credential::name_of(file.0.name);
        if let Some(p) = credential::path(&credential) {
            if let (_, Some(v)) = env {
                crate::process::withhold_secret(&v.value);
            }
            let text = std::fs::read_to_string(&p);
            let secret = text.as_deref().map(|t| t.trim_end_matches(['\n', '\r']));
            return match secret {
                Ok(s) if !s.is_empty() && !s.contains(['\n', '\r']) => Ok(Some((
                    Secret(s.to_string()),
                    format!("credential:{credential}"),
                ))),
                Ok(_) => Err(self.err(
                    file.0.name,
                    None,
                    format!(
                        "the credential `{credential}` (`{}`) must hold the secret on one line",
                        p.display()
                    ),
                    "give `LoadCredential=` a file that holds only the secret",
                )),
                Err(e) if self.secrets == Secrets::IfReadable => {
                    self.unread.borrow_mut().push(format!(
                        "credential `{credential}` (`{}`): {e}",
                        p.display()
                    ));
                    Ok(None)
                }
                Err(e) => Err(self.err(
                    file.0.name,
                    None,
                    format!(
                        "cannot read the credential `{credential}` (`{}`): {e}",
                        p.display()
                    ),
                    "check the unit's `LoadCredential=` line and its file",
                )),
            };
        }
        if let Some((_, Some(v))) = literal.filter(|(_, v)| given(v)) {
            return Ok(Some((Secret(v.value.clone()), "literal".into())));
        }
        if let (k, Some(v)) = file
            && !v.value.is_empty()
        {
            let line = Some(v.referenced.line());
            let text = match std::fs::read_to_string(&v.value) {
                Ok(t) => t,
                Err(e) if self.secrets == Secrets::IfReadable => {
                    self.unread
                        .borrow_mut()
                        .push(format!("`{}` (`{}`): {e}", k.name, v.value));
                    return Ok(None);
                }
                Err(e) => {
                    return Err(self.err(
                        k.name,
                        line,
                        format!("cannot read `{}`: {e}", v.value),
                        "give a file the service user can read (mode 0600 or 0640), holding only the secret",
                    ));
                }
            };
            let secret = text.trim_end_matches(['\n', '\r']).to_string();
            if secret.is_empty() || secret.contains(['\n', '\r']) {
                return Err(self.err(
                    k.name,
                    line,
                    format!("`{}` must hold the secret on one line", v.value),
                    "write only the secret into the file",
                ));
            }
            return Ok(Some((Secret(secret), format!("file:{}", v.value))));
        }
        if let (k, Some(v)) = env
            && !v.value.is_empty()
        {
            // Withheld from every child from now on: the secret is the daemon's alone.
            crate::process::withhold_secret(&v.value);
            // After start the variable is gone from the daemon's environment; its value was kept.
            let secret = crate::process::env_secret(&v.value);
            if secret.is_none() && self.secrets == Secrets::IfReadable {
                self.unread.borrow_mut().push(format!(
                    "`{}`: the environment variable `{}` is not set here",
                    k.name, v.value
                ));
                return Ok(None);
            }
            let Some(secret) = secret else {
                return Err(self.err(
                    k.name,
                    Some(v.referenced.line()),
                    format!("the environment variable `{}` is not set", v.value),
                    "set it for the service (systemd: `Environment=` or `EnvironmentFile=`), or use the `_file` key",
                ));
            };
            return Ok(Some((Secret(secret), format!("env:{}", v.value))));
        }
        Ok(None)
    }

    fn address(&self, key: &Key, line: Option<u64>, a: &str) -> Result<String, ConfigError> {
        let a = a.trim();
        if crate::engine::notice::valid_address(a) {
            Ok(a.to_string())
        } else {
            Err(self.err(
                key.name,
                line,
                format!("{a:?} is not a plain e-mail address"),
                format!("write one address such as `user@example.org` (no name, no `<>`), e.g. `{}: dirwatcher@example.org`", key.leaf()),
            ))
        }
    }

    fn notify(&self, n: RawNotify, s: RawSmtp) -> Result<NotifyConfig, ConfigError> {
        use crate::engine::notice::{EventKind, WebhookFormat};
        let line = |v: &Option<Spanned<Vec<String>>>| v.as_ref().map(|s| s.referenced.line());
        let events = match &n.events {
            None => vec![
                EventKind::Completed,
                EventKind::Failed,
                EventKind::Lost,
                EventKind::Cancelled,
                EventKind::Held,
            ],
            Some(v) => {
                let mut out = Vec::new();
                for w in &v.value {
                    let k = EventKind::parse(w.trim()).ok_or_else(|| {
                        self.err(
                            keys::NOTIFY_EVENTS.name,
                            line(&n.events),
                            format!("{w:?} is not an event"),
                            "list any of `submitted`, `completed`, `failed`, `lost`, `blocked`, e.g. `events: [completed, failed]`",
                        )
                    })?;
                    if !out.contains(&k) {
                        out.push(k);
                    }
                }
                out
            }
        };
        let mut email_to = Vec::new();
        for a in n
            .email_to
            .as_ref()
            .map(|v| v.value.as_slice())
            .unwrap_or_default()
        {
            // A recipient may carry a name, as a meta file's may: `Ops Team <ops@example.org>`.
            match crate::engine::notice::mailbox(a) {
                Some(_) => email_to.push(a.trim().to_string()),
                None => {
                    return Err(self.err(
                        keys::NOTIFY_EMAIL_TO.name,
                        line(&n.email_to),
                        format!("{a:?} is not an e-mail address"),
                        "write one address per item, such as `ops@example.org` or `Ops Team <ops@example.org>`",
                    ));
                }
            }
        }
        let from = match &s.from_email {
            Some(f) if !f.value.trim().is_empty() => Some(self.address(
                &keys::BEHAVIOR_FROM_EMAIL,
                Some(f.referenced.line()),
                &f.value,
            )?),
            _ => None,
        };
        let email_via = match n.email_via.as_ref().map(|v| v.value.trim()) {
            None | Some("auto") => EmailVia::Auto,
            Some("sendmail") => EmailVia::Sendmail,
            Some("smtp") => EmailVia::Smtp,
            Some(other) => {
                return Err(self.err(
                    keys::NOTIFY_EMAIL_VIA.name,
                    n.email_via.as_ref().map(|v| v.referenced.line()),
                    format!("{other:?} is not a way to send mail"),
                    "write `email_via: auto` (sendmail when installed, else SMTP), `sendmail` or `smtp`",
                ));
            }
        };
        let pass = self.secret(
            Some((&keys::BEHAVIOR_SMTP_PASS, &s.pass)),
            (&keys::BEHAVIOR_SMTP_PASS_FILE, &s.pass_file),
            (&keys::BEHAVIOR_SMTP_PASS_ENV, &s.pass_env),
        )?;
        let smtp_pass_source = pass.as_ref().map(|(_, src)| src.clone());
        let smtp = match s.host.as_ref().filter(|h| !h.value.trim().is_empty()) {
            None => None,
            Some(h) => {
                let host = h.value.trim().to_string();
                if host
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "/@?#".contains(c))
                {
                    return Err(self.err(
                        keys::BEHAVIOR_SMTP_HOST.name,
                        Some(h.referenced.line()),
                        format!("{host:?} is not a host name"),
                        "write the server's name or address, e.g. `smtp_host: smtp.example.org`",
                    ));
                }
                let port = match &s.port {
                    None => defaults::SMTP_PORT,
                    Some(p) if p.value == 0 => defaults::SMTP_PORT,
                    Some(p) if (1..=65535).contains(&p.value) => p.value,
                    Some(p) => {
                        return Err(self.err(
                            keys::BEHAVIOR_SMTP_PORT.name,
                            Some(p.referenced.line()),
                            format!("{} is not a port", p.value),
                            "write e.g. `smtp_port: 587` (STARTTLS) or `smtp_port: 465` (TLS)",
                        ));
                    }
                };
                Some(SmtpConfig {
                    host,
                    port: port as u16,
                    user: s
                        .user
                        .as_ref()
                        .map(|u| u.value.clone())
                        .filter(|u| !u.is_empty()),
                    pass: pass.map(|(p, _)| p),
                    tls: s.use_tls.unwrap_or(defaults::SMTP_USE_TLS),
                })
            }
        };
        if email_via == EmailVia::Smtp && smtp.is_none() {
            return Err(self.err(
                keys::NOTIFY_EMAIL_VIA.name,
                n.email_via.as_ref().map(|v| v.referenced.line()),
                "`email_via: smtp` needs an SMTP server",
                "set `behavior.smtp_host` (and `smtp_port`, `smtp_user`, `smtp_pass_file`)",
            ));
        }
        let mut webhooks = Vec::new();
        for u in n
            .webhooks
            .as_ref()
            .map(|v| v.value.as_slice())
            .unwrap_or_default()
        {
            let u = u.trim();
            let ok = (u.starts_with("http://") || u.starts_with("https://"))
                && u.len() > "https://".len()
                && !u
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\');
            if !ok {
                // The URL may hold a secret (Slack's do): not repeated in the message.
                return Err(self.err(
                    keys::NOTIFY_WEBHOOKS.name,
                    line(&n.webhooks),
                    "a webhook is not an `http://` or `https://` URL without spaces or quotes",
                    "write e.g. `webhooks: [\"https://hooks.example.org/dirwatcher\"]`",
                ));
            }
            webhooks.push(u.to_string());
        }
        let webhook_format = match n.webhook_format.as_ref().map(|v| v.value.trim()) {
            None | Some("dirwatcher") => WebhookFormat::Dirwatcher,
            Some("slack") | Some("mattermost") | Some("teams") => WebhookFormat::Slack,
            Some(other) => {
                return Err(self.err(
                    keys::NOTIFY_WEBHOOK_FORMAT.name,
                    n.webhook_format.as_ref().map(|v| v.referenced.line()),
                    format!("{other:?} is not a webhook format"),
                    "write `webhook_format: dirwatcher` (the event document) or `webhook_format: slack` (`{\"text\": …}`)",
                ));
            }
        };
        let token = self.secret(
            None,
            (&keys::NOTIFY_WEBHOOK_TOKEN_FILE, &n.webhook_token_file),
            (&keys::NOTIFY_WEBHOOK_TOKEN_ENV, &n.webhook_token_env),
        )?;
        let command: Vec<String> = n
            .command
            .as_ref()
            .map(|v| v.value.clone())
            .unwrap_or_default();
        if command.first().is_some_and(|p| p.trim().is_empty()) {
            return Err(self.err(
                keys::NOTIFY_COMMAND.name,
                line(&n.command),
                "the program name is empty",
                "write the program and its arguments as a list, e.g. `command: [/usr/local/bin/dw-hook, --db, jobs]`",
            ));
        }
        Ok(NotifyConfig {
            events,
            email_owner: n.email_owner.unwrap_or(defaults::NOTIFY_EMAIL_OWNER),
            email_to,
            email_via,
            from,
            smtp,
            webhooks,
            webhook_format,
            webhook_token_source: token.as_ref().map(|(_, s)| s.clone()),
            webhook_token: token.map(|(t, _)| t),
            smtp_pass_source,
            command,
            db: None,
            timeout: self.seconds(
                &keys::NOTIFY_TIMEOUT_SEC,
                &n.timeout_sec,
                defaults::NOTIFY_TIMEOUT_SEC,
                MIN_COMMAND_TIMEOUT_SEC,
            )?,
            retry: self.seconds(
                &keys::NOTIFY_RETRY_SEC,
                &n.retry_sec,
                defaults::NOTIFY_RETRY_SEC,
                MIN_BACKOFF_SEC,
            )?,
            max_attempts: self.count(
                &keys::NOTIFY_MAX_ATTEMPTS,
                &n.max_attempts,
                defaults::NOTIFY_MAX_ATTEMPTS,
                1,
            )?,
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
        let (ready, preset) = self.ready(&w, &signal)?;
        Ok(WatchConfig {
            root,
            signal_filename: signal.into(),
            poll_interval: self.seconds(
                &keys::WATCH_POLL_INTERVAL_SEC,
                &w.poll_interval_sec,
                defaults::POLL_INTERVAL_SEC,
                MIN_POLL_SEC,
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
                0.0,
            )?,
            allow_unsafe_root,
            recheck: self.seconds(
                &keys::WATCH_RECHECK_SEC,
                &w.recheck_sec,
                defaults::RECHECK_SEC,
                0.0,
            )?,
            ready,
            preset,
        })
    }

    /// A marker or ignore pattern: one path component (a glob is fine).
    fn marker(&self, key: &Key, line: Option<u64>, m: &str) -> Result<String, ConfigError> {
        if m.is_empty() || m.contains('/') || m == "." || m == ".." || m.contains('\0') {
            return Err(self.err(
                key.name,
                line,
                format!("must list plain file names or globs, found {m:?}"),
                format!(
                    "write names without `/`, e.g. `{}: [CopyComplete.txt]`",
                    key.leaf()
                ),
            ));
        }
        Ok(m.to_string())
    }

    /// `watch.ready_*`, `ignore_patterns` and `quiet_*`: the readiness rules, a preset expanded.
    fn ready(
        &self,
        w: &RawWatch,
        signal: &str,
    ) -> Result<(ReadyRules, Option<Preset>), ConfigError> {
        use keys::*;
        let line = |l: Option<u64>| l;
        let preset = match &w.ready_preset {
            None => None,
            Some(p) => Some(Preset::parse(&p.value).ok_or_else(|| {
                self.err(
                    WATCH_READY_PRESET.name,
                    line(Some(p.referenced.line())),
                    format!("is not a preset: {:?}", p.value),
                    "write one of `illumina`, `ont`, `rsync`, or leave it out",
                )
            })?),
        };
        let all_of = w.ready_all_of.as_ref().filter(|v| !v.value.is_empty());
        let any_of = w.ready_any_of.as_ref().filter(|v| !v.value.is_empty());
        if let (Some(_), Some(a)) = (all_of, any_of) {
            return Err(self.err(
                WATCH_READY_ANY_OF.name,
                Some(a.referenced.line()),
                "cannot be given together with `ready_all_of`",
                "keep one: `ready_all_of` (every marker) or `ready_any_of` (any one item)",
            ));
        }
        let content_given = w.ready_content_file.is_some() || w.ready_content_match.is_some();
        if let Some(p) = preset
            && let Some(k) = all_of
                .map(|v| (WATCH_READY_ALL_OF.name, v.referenced.line()))
                .or(any_of.map(|v| (WATCH_READY_ANY_OF.name, v.referenced.line())))
                .or(w
                    .ready_content_file
                    .as_ref()
                    .map(|v| (WATCH_READY_CONTENT_FILE.name, v.referenced.line())))
                .or(w
                    .ready_content_match
                    .as_ref()
                    .map(|v| (WATCH_READY_CONTENT_MATCH.name, v.referenced.line())))
        {
            return Err(self.err(
                k.0,
                Some(k.1),
                format!("cannot be given together with `ready_preset: {}`", p.name()),
                "remove it (the preset sets the markers; `check-config` shows them), or remove the preset and \
                 write the markers yourself",
            ));
        }
        let (mut alternatives, mut content, mut ignore) = match preset {
            Some(p) => p.rules(signal),
            None => (vec![vec![signal.to_string()]], None, Vec::new()),
        };
        if let Some(v) = all_of {
            let l = Some(v.referenced.line());
            alternatives = vec![
                v.value
                    .iter()
                    .map(|m| self.marker(&WATCH_READY_ALL_OF, l, m))
                    .collect::<Result<_, _>>()?,
            ];
        }
        if let Some(v) = any_of {
            let l = Some(v.referenced.line());
            let mut alts = Vec::new();
            for item in &v.value {
                let alt: Vec<String> = match item {
                    AnyOfItem::One(m) => vec![self.marker(&WATCH_READY_ANY_OF, l, m)?],
                    AnyOfItem::All(ms) => ms
                        .iter()
                        .map(|m| self.marker(&WATCH_READY_ANY_OF, l, m))
                        .collect::<Result<_, _>>()?,
                };
                if alt.is_empty() {
                    return Err(self.err(
                        WATCH_READY_ANY_OF.name,
                        l,
                        "has an empty list as an item",
                        "remove the `[]`, or list the markers that must all be there",
                    ));
                }
                alts.push(alt);
            }
            alternatives = alts;
        }
        if content_given {
            let (Some(f), Some(m)) = (&w.ready_content_file, &w.ready_content_match) else {
                let (k, l) = match (&w.ready_content_file, &w.ready_content_match) {
                    (Some(f), None) => (WATCH_READY_CONTENT_MATCH.name, f.referenced.line()),
                    (_, Some(m)) => (WATCH_READY_CONTENT_FILE.name, m.referenced.line()),
                    _ => unreachable!("one of them is given"),
                };
                return Err(self.err(
                    k,
                    Some(l),
                    "is required when the other `ready_content_*` key is given",
                    "give both, e.g. `ready_content_file: RunCompletionStatus.xml` and \
                     `ready_content_match: \"CompletionStatus>SuccessfullyCompleted<\"`",
                ));
            };
            let file = self.marker(
                &WATCH_READY_CONTENT_FILE,
                Some(f.referenced.line()),
                &f.value,
            )?;
            if crate::engine::readiness::is_glob(&file) {
                return Err(self.err(
                    WATCH_READY_CONTENT_FILE.name,
                    Some(f.referenced.line()),
                    "must be one exact file name, not a glob",
                    "write the status file's name, e.g. `RunCompletionStatus.xml`",
                ));
            }
            let pattern = regex::Regex::new(&m.value).map_err(|e| {
                self.err(
                    WATCH_READY_CONTENT_MATCH.name,
                    Some(m.referenced.line()),
                    format!(
                        "is not a regular expression: {}",
                        e.to_string().lines().last().unwrap_or_default()
                    ),
                    "quote it in single quotes and escape special characters with `\\`",
                )
            })?;
            content = Some(ContentCheck { file, pattern });
        }
        if let Some(v) = &w.ignore_patterns {
            let l = Some(v.referenced.line());
            for p in &v.value {
                let p = self.marker(&WATCH_IGNORE_PATTERNS, l, p)?;
                if !ignore.contains(&p) {
                    ignore.push(p);
                }
            }
        }
        let quiet = self.seconds(&WATCH_QUIET_SEC, &w.quiet_sec, defaults::QUIET_SEC, 0.0)?;
        let max_entries = self.count(
            &WATCH_QUIET_MAX_ENTRIES,
            &w.quiet_max_entries,
            defaults::QUIET_MAX_ENTRIES,
            1,
        )? as usize;
        let scope = match w.quiet_scope.as_ref().map(|s| (s.value.as_str(), s)) {
            None | Some(("top", _)) => QuietScope::Top,
            Some(("tree", _)) => QuietScope::Tree { max_entries },
            Some((other, s)) => {
                return Err(self.err(
                    WATCH_QUIET_SCOPE.name,
                    Some(s.referenced.line()),
                    format!("must be `top` or `tree`, found {other:?}"),
                    "write `quiet_scope: top` (the directory's own entries) or `quiet_scope: tree`",
                ));
            }
        };
        Ok((
            ReadyRules {
                alternatives,
                content,
                ignore,
                quiet,
                scope,
            },
            preset,
        ))
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
            // A staged install (`--destdir`) writes a config for another machine, where the root lives.
            Err(_) if self.root == RootCheck::Staged => Ok(()),
            Err(e) => Err(self.err(
                key,
                line,
                format!("`{}` cannot be used: {e}", root.display()),
                "check that the file system is mounted and the path is right; dirwatcher never creates the root",
            )),
        }
    }

    fn behavior(&self, raw: Option<RawBehavior>) -> Result<BehaviorConfig, ConfigError> {
        let b = raw.unwrap_or_default();
        let submit_backoff = self.seconds(
            &keys::BEHAVIOR_SUBMIT_BACKOFF_SEC,
            &b.submit_backoff_sec,
            defaults::SUBMIT_BACKOFF_SEC,
            MIN_BACKOFF_SEC,
        )?;
        let submit_backoff_max = self.seconds(
            &keys::BEHAVIOR_SUBMIT_BACKOFF_MAX_SEC,
            &b.submit_backoff_max_sec,
            defaults::SUBMIT_BACKOFF_MAX_SEC,
            MIN_BACKOFF_SEC,
        )?;
        Ok(BehaviorConfig {
            delete_on_success: b.delete_on_success.unwrap_or(defaults::DELETE_ON_SUCCESS),
            state_file: self.file(
                &keys::BEHAVIOR_STATE_FILE,
                &b.state_file,
                defaults::STATE_FILE,
            )?,
            failure_log: self.file(
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
            umask: self.umask(&b.umask)?,
            instance: self.instance(&b.instance)?,
        })
    }

    /// `behavior.instance`: a name [`InstanceName`] takes, or none (empty counts as none).
    fn instance(&self, v: &S<String>) -> Result<Option<InstanceName>, ConfigError> {
        let Some(n) = v.as_ref().filter(|n| !n.value.is_empty()) else {
            return Ok(None);
        };
        InstanceName::parse(&n.value).map(Some).map_err(|problem| {
            self.err(
                keys::BEHAVIOR_INSTANCE.name,
                Some(n.referenced.line()),
                problem,
                "write the name of the instance, as in `dirwatcher@NAME.service`, e.g. `instance: microscope1`",
            )
        })
    }

    /// `behavior.umask`: octal permission bits, at most `0777`.
    fn umask(&self, v: &S<String>) -> Result<u32, ConfigError> {
        let Some(u) = v else {
            return Ok(defaults::UMASK);
        };
        let digits = u.value.trim();
        let digits = digits.strip_prefix("0o").unwrap_or(digits);
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(m),
            _ => Err(self.err(
                keys::BEHAVIOR_UMASK.name,
                Some(u.referenced.line()),
                format!("must be an octal file-creation mask such as \"0027\", found {:?}", u.value),
                "write e.g. `umask: \"0027\"` (group may read, others nothing) or `umask: \"0022\"`",
            )),
        }
    }

    /// An absolute path to a file: also refused when a directory is there already (the daemon would fail
    /// on it at once, or at the first failed job).
    fn file(&self, key: &Key, v: &S<String>, default: &str) -> Result<PathBuf, ConfigError> {
        let p = self.absolute(key, v, default)?;
        if std::fs::metadata(&p).is_ok_and(|m| m.is_dir()) {
            return Err(self.err(
                key.name,
                v.as_ref().map(|s| s.referenced.line()),
                format!("`{}` is a directory, not a file", p.display()),
                format!(
                    "name a file, e.g. `{}: {}`",
                    key.leaf(),
                    p.join(Path::new(default).file_name().unwrap_or_default())
                        .display()
                ),
            ));
        }
        Ok(p)
    }

    fn job(&self, raw: Option<RawJob>) -> Result<JobConfig, ConfigError> {
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
            None => Some(defaults::OUTPUT.to_string()),
        };
        let output_group = match j
            .output_group
            .as_ref()
            .filter(|g| !g.value.trim().is_empty())
        {
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
        let umask = match &j.umask {
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
            output_group,
            command_timeout: self.seconds(
                &keys::JOB_COMMAND_TIMEOUT_SEC,
                &j.command_timeout_sec,
                defaults::COMMAND_TIMEOUT_SEC,
                MIN_COMMAND_TIMEOUT_SEC,
            )?,
            lost_after: self.seconds(
                &keys::JOB_LOST_AFTER_SEC,
                &j.lost_after_sec,
                defaults::LOST_AFTER_SEC,
                MIN_LOST_AFTER_SEC,
            )?,
            max_local_jobs: self.count(&keys::JOB_MAX_LOCAL_JOBS, &j.max_local_jobs, cpus, 1)?,
            umask,
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

    /// A valid config with every section, for the mutation property below.
    fn full_config() -> String {
        with_root(
            "  signal_filename: _READY\n  poll_interval_sec: 5\n  stability_checks: 2\n  stability_interval_sec: 1\n\
             job:\n  executor: slurm\n  wrap_cmd: python3 /opt/x.py\n  partition: main\n  account: dev\n  gres: gpu:1\n\
             \x20 time_limit: \"00:10:00\"\n  job_name_prefix: dirwatch\n  env: {A: b}\n  extra_args: [\"--nice=1\"]\n\
             \x20 chdir_to_subdir: true\n  output: .dirwatcher/logs/%x-%j.out\n  command_timeout_sec: 60\n  max_local_jobs: 2\n\
             behavior:\n  delete_on_success: false\n  state_file: /var/lib/dirwatcher/state.db\n\
             \x20 failure_log: /var/log/dirwatcher/failed_jobs.log\n  max_retries: 0\n  submit_backoff_sec: 5\n\
             \x20 submit_backoff_max_sec: 300\n  umask: \"0027\"\n\
             metrics:\n  listen: 127.0.0.1:9187\n  textfile: /var/lib/node/dirwatcher.prom\n",
        )
    }

    /// Values a mutation puts in place of another: wrong types, bounds, YAML syntax, hostile text.
    const ODD_VALUES: &[&str] = &[
        "",
        "-1",
        "0",
        "1e-9",
        "1e309",
        ".nan",
        "-.inf",
        "0x10",
        "0o17",
        "007",
        "99999999999999999999",
        "true",
        "null",
        "~",
        "[]",
        "{}",
        "[1, 2",
        "{a: [",
        "\"unterminated",
        "'x'",
        "&a",
        "*a",
        "!!binary x",
        "|",
        ">",
        "- x",
        "? x",
        "%YAML 1.2",
        "relative/path",
        "/",
        "/tmp",
        "a: b: c",
        "\t",
        "\u{202e}x",
        "0.0.0.0:1",
        "[::]:0",
        "x.txt",
        "\"1777\"",
        "UNLIMITED",
        "1-",
        "%j",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(400))]
        /// The loader never panics on any text.
        #[test]
        fn the_loader_takes_any_text_without_panicking(text in "(?s).{0,400}") {
            let _ = parse(&text);
        }

        /// Mutated configs (a value replaced, a line dropped, doubled or re-indented): never a panic; a
        /// refusal always names what is wrong and how to fix it; an accepted config obeys every bound and
        /// reads back as itself from its effective form.
        #[test]
        fn mutated_configs_are_refused_with_a_fix_or_valid(
            edits in proptest::collection::vec((0usize..64, 0usize..4, 0usize..64), 1..5)
        ) {
            let mut lines: Vec<String> = full_config().lines().map(String::from).collect();
            for (at, kind, pick) in edits {
                let i = at % lines.len();
                match kind {
                    0 => {
                        if let Some((k, _)) = lines[i].clone().split_once(':') {
                            lines[i] = format!("{k}: {}", ODD_VALUES[pick % ODD_VALUES.len()]);
                        }
                    }
                    1 => {
                        lines.remove(i);
                        if lines.is_empty() {
                            lines.push(String::new());
                        }
                    }
                    2 => lines.insert(i, lines[i].clone()),
                    _ => lines[i] = format!("{}{}", " ".repeat(pick % 5), lines[i].trim_start()),
                }
            }
            let text = lines.join("\n");
            match parse(&text) {
                Err(e) => {
                    proptest::prop_assert!(!e.problem.is_empty(), "{e}");
                    proptest::prop_assert!(!e.fix.is_empty() || e.key.is_empty(), "no fix: {e}");
                }
                Ok(c) => {
                    proptest::prop_assert!(c.watch.poll_interval >= Duration::from_millis(100));
                    proptest::prop_assert!(c.watch.stability_checks >= 1);
                    proptest::prop_assert!(c.job.command_timeout >= Duration::from_secs(1));
                    proptest::prop_assert!(c.behavior.submit_backoff >= Duration::from_millis(100));
                    proptest::prop_assert!(c.behavior.submit_backoff_max >= c.behavior.submit_backoff);
                    proptest::prop_assert!(c.behavior.umask <= 0o777);
                    proptest::prop_assert!(c.behavior.state_file.is_absolute());
                    proptest::prop_assert!(c.job.max_local_jobs >= 1);
                    let again = parse(&c.to_yaml());
                    proptest::prop_assert!(again.is_ok(), "effective config refused: {:?}\n{}", again.err(), c.to_yaml());
                    proptest::prop_assert_eq!(again.unwrap().to_yaml(), c.to_yaml());
                }
            }
        }
    }

    #[test]
    fn umask_as_text_or_bare_digits() {
        for (text, want) in [
            ("\"0027\"", 0o027),
            ("0027", 0o027),
            ("\"077\"", 0o077),
            ("22", 0o022),
            ("\"0\"", 0),
        ] {
            let c = parse(&with_root(&format!(
                "job:\n  wrap_cmd: echo\nbehavior:\n  umask: {text}\n"
            )))
            .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.behavior.umask, want, "{text}");
        }
        for bad in ["\"0028\"", "\"1777\"", "\"\"", "rwx"] {
            let e = parse(&with_root(&format!(
                "job:\n  wrap_cmd: echo\nbehavior:\n  umask: {bad}\n"
            )))
            .unwrap_err();
            assert_eq!(
                (e.key.as_str(), e.line),
                ("behavior.umask", Some(6)),
                "{bad}: {e}"
            );
        }
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
    fn job_output_goes_to_the_checked_folder_unless_slurm_default_is_asked_for() {
        for behavior in ["", "behavior:\n  delete_on_success: true\n"] {
            let c = parse(&with_root(&format!("job:\n  wrap_cmd: echo\n{behavior}"))).unwrap();
            assert_eq!(
                c.job.output.as_deref(),
                Some(defaults::OUTPUT),
                "{behavior}"
            );
        }
        let c = parse(&with_root("job:\n  wrap_cmd: echo\n  output: \"\"\n")).unwrap();
        assert_eq!(c.job.output, None);
        assert_eq!(
            parse(&c.to_yaml()).unwrap().job.output,
            None,
            "lost in the round trip"
        );
    }

    #[test]
    fn every_seconds_key_has_a_lower_bound() {
        for (section, key, bad, min) in [
            ("watch", "poll_interval_sec", "1e-9", "at least 0.1"),
            ("watch", "stability_interval_sec", "-0.5", "0 or more"),
            ("job", "command_timeout_sec", "1e-9", "at least 1"),
            ("job", "command_timeout_sec", "0.5", "at least 1"),
            ("behavior", "submit_backoff_sec", "0.01", "at least 0.1"),
            ("behavior", "submit_backoff_max_sec", "0", "at least 0.1"),
        ] {
            let mut body = format!("  {key}: {bad}\n");
            let mut yaml = String::from("watch:\n");
            yaml += &format!("  root: {}\n", std::env::temp_dir().display());
            if section == "watch" {
                yaml += &body;
                body.clear();
            }
            yaml += "job:\n  wrap_cmd: echo\n";
            if section == "job" {
                yaml += &body;
                body.clear();
            }
            if section == "behavior" {
                yaml += &format!("behavior:\n{body}");
            }
            let e = parse(&yaml).unwrap_err();
            assert_eq!(e.key, format!("{section}.{key}"), "{yaml}");
            assert!(e.problem.contains(min), "{e}");
            assert!(e.line.is_some(), "{e}");
        }
        let c = parse(&with_root(
            "  poll_interval_sec: 0.1\n  stability_interval_sec: 0\njob:\n  wrap_cmd: echo\n  command_timeout_sec: 1\n",
        ))
        .unwrap();
        assert_eq!(c.watch.stability_interval, Duration::ZERO);
    }

    #[test]
    fn a_directory_as_state_file_or_failure_log_is_refused() {
        let t = tempfile::tempdir().unwrap();
        for key in ["state_file", "failure_log"] {
            let e = parse(&with_root(&format!(
                "job:\n  wrap_cmd: echo\nbehavior:\n  {key}: {}\n",
                t.path().display()
            )))
            .unwrap_err();
            assert_eq!(
                (e.key.as_str(), e.line),
                (&*format!("behavior.{key}"), Some(6)),
                "{e}"
            );
            assert!(e.problem.contains("is a directory"), "{e}");
        }
    }

    #[test]
    fn job_umask_defaults_to_0022_and_reads_octal_quoted_or_not() {
        let c = parse(&with_root("job:\n  wrap_cmd: echo\n")).unwrap();
        assert_eq!(c.job.umask, 0o022);
        for (text, mask) in [
            ("0027", 0o027),
            ("\"0027\"", 0o027),
            ("'077'", 0o077),
            ("0002", 0o002),
        ] {
            let c = parse(&with_root(&format!(
                "job:\n  wrap_cmd: echo\n  umask: {text}\n"
            )))
            .unwrap();
            assert_eq!(c.job.umask, mask, "{text}");
            assert!(
                c.to_yaml().contains(&format!("umask: \"{mask:04o}\"")),
                "{}",
                c.to_yaml()
            );
        }
    }

    #[test]
    fn a_job_umask_that_is_not_octal_names_key_line_and_fix() {
        for bad in ["22", "0089", "rw-r--r--", "\"\"", "00022"] {
            let e = parse(&with_root(&format!(
                "job:\n  wrap_cmd: echo\n  umask: {bad}\n"
            )))
            .unwrap_err();
            assert_eq!(
                (e.key.as_str(), e.line),
                ("job.umask", Some(5)),
                "{bad}: {e}"
            );
            assert!(e.fix.contains("umask: \"0022\""), "{e}");
        }
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
            ("  listn: 127.0.0.1:9187\n", "metrics.listn", "unknown key"),
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

    /// Every key the Python original reads, as its installer writes them: with values, and with the
    /// empty values it writes when a flag was not given (`from_email: ` is null, `smtp_port: 0`).
    #[test]
    fn the_originals_whole_config_loads() {
        let root = std::env::temp_dir();
        let full = include_str!("../../tests/data/original-full-config.yaml")
            .replace("/data/incoming", &root.to_string_lossy());
        let c = parse(&full).unwrap();
        let db = c.notify.db.as_ref().expect("the `db:` section is read");
        assert_eq!(
            (
                db.host.as_str(),
                db.port,
                db.name.as_str(),
                db.user.as_str()
            ),
            ("127.0.0.1", 3306, "hm_app_db", "hmapp")
        );
        let smtp = c.notify.smtp.as_ref().unwrap();
        assert_eq!(
            (
                smtp.host.as_str(),
                smtp.port,
                smtp.user.as_deref(),
                smtp.tls
            ),
            ("smtp.example.org", 587, Some("dirwatcher"), true)
        );
        assert_eq!(smtp.pass.as_ref().unwrap().expose(), "s3cret-Passw0rd");
        assert_eq!(c.notify.from.as_deref(), Some("dirwatcher@example.org"));
        let shown = c.to_yaml();
        assert!(!shown.contains("s3cret"), "the password is shown:\n{shown}");
        assert!(shown.contains("smtp_pass: \"<secret>\""), "{shown}");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug shows the password"
        );
        let empty = format!(
            "watch:\n  root: {}\njob:\n  wrap_cmd: echo\nbehavior:\n  from_email: \n  smtp_host: \n  smtp_port: 0\n  \
             smtp_user: \n  smtp_pass: \n  smtp_use_tls: true\ndb:\n  host: 127.0.0.1\n  port: 3306\n  name: hm_app_db\n  \
             user: hmapp\n  pass: \n",
            root.display()
        );
        let c = parse(&empty).unwrap();
        assert!(c.notify.smtp.is_none() && c.notify.from.is_none());
        let db = c
            .notify
            .db
            .as_ref()
            .expect("the installer's `db:` section is read");
        assert!(db.pass.is_none(), "an empty `pass:` is no password");
        // Read back, the effective config of a config without `db:` keeps the bridge off.
        let plain = parse(&with_root("job:\n  wrap_cmd: echo\n")).unwrap();
        assert!(plain.notify.db.is_none());
        let again = Config::parse(&plain.to_yaml(), Path::new("/x.yaml")).unwrap();
        assert!(again.notify.db.is_none(), "{}", plain.to_yaml());
    }

    #[test]
    fn notify_keys_are_checked_and_secrets_come_from_files_or_the_environment() {
        let t = tempfile::tempdir().unwrap();
        let token = t.path().join("token");
        std::fs::write(&token, "tok-123\n").unwrap();
        let c = parse(&with_root(&format!(
            "job:\n  wrap_cmd: echo\nnotify:\n  events: [completed, blocked]\n  email_to: [ops@example.org]\n  \
             webhooks: [\"https://hooks.example.org/x\"]\n  webhook_format: slack\n  webhook_token_file: {}\n  \
             command: [/usr/local/bin/hook, --db]\n",
            token.display()
        )))
        .unwrap();
        assert_eq!(c.notify.webhook_token.as_ref().unwrap().expose(), "tok-123");
        assert!(!c.to_yaml().contains("tok-123"));
        assert_eq!(parse(&c.to_yaml()).unwrap().to_yaml(), c.to_yaml());
        for (body, key, problem) in [
            ("  events: [done]\n", "notify.events", "not an event"),
            (
                "  email_to: [\"a@b\\nBcc: c@d\"]\n",
                "notify.email_to",
                "not an e-mail address",
            ),
            ("  webhooks: [\"ftp://x\"]\n", "notify.webhooks", "http"),
            ("  email_via: smtp\n", "notify.email_via", "SMTP server"),
            (
                "  webhook_token_env: DW_SURELY_UNSET_TOKEN\n",
                "notify.webhook_token_env",
                "not set",
            ),
            (
                "  webhook_token_file: /nonexistent/token\n",
                "notify.webhook_token_file",
                "cannot read",
            ),
        ] {
            let e = parse(&with_root(&format!(
                "job:\n  wrap_cmd: echo\nnotify:\n{body}"
            )))
            .unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.problem.contains(problem), "{e}");
        }
        let e = parse(&with_root(
            "job:\n  wrap_cmd: echo\nbehavior:\n  smtp_host: h\n  smtp_pass: x\n  smtp_pass_env: HOME\n",
        ))
        .unwrap_err();
        assert_eq!(e.key, "behavior.smtp_pass_env", "{e}");
    }

    #[test]
    fn a_staged_config_may_name_a_root_that_does_not_exist_here() {
        let yaml = "watch:\n  root: /surely/not/here/incoming\njob:\n  wrap_cmd: echo\n";
        assert_eq!(parse(yaml).unwrap_err().key, "watch.root");
        let c = Config::parse_with(yaml, Path::new("/x.yaml"), RootCheck::Staged).unwrap();
        assert_eq!(c.watch.root, Path::new("/surely/not/here/incoming"));
    }
}
