//! THE table of config keys: every key's dotted name, its default and its one-line help text.
//!
//! Owns: the typed defaults the validator falls back on ([`defaults`]), the table built from them
//! ([`ALL`]), and how the table reads in `check-config --help` ([`help_lines`]) and in the README
//! ([`DefaultValue::readme`]). The validator, `check-config`'s effective config, the installer's config
//! renderer and its flag defaults all take names and defaults from here; tests check that the README's
//! table and the clap defaults agree with it. Must never: read files, the environment or the clock, or
//! validate anything (that is `config`'s job): this is data.

use std::borrow::Cow;
use std::fmt::Write;

/// Which back end runs the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    /// `sbatch` + `sacct` on a Slurm cluster (the default).
    Slurm,
    /// Child processes on this machine: for trying dirwatcher out and for sites without Slurm.
    Local,
    /// Slurm through slurmrestd's REST API (JWT), from a host that is not a Slurm client.
    SlurmRest,
}

impl ExecutorKind {
    /// The name written in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Slurm => "slurm",
            ExecutorKind::Local => "local",
            ExecutorKind::SlurmRest => "slurmrest",
        }
    }
}

/// Typed defaults, for the validator; the table below is built from the same constants.
pub mod defaults {
    use super::ExecutorKind;

    /// `watch.signal_filename`.
    pub const SIGNAL_FILENAME: &str = "_READY";
    /// `watch.poll_interval_sec`.
    pub const POLL_INTERVAL_SEC: f64 = 5.0;
    /// `watch.stability_checks`.
    pub const STABILITY_CHECKS: i64 = 2;
    /// `watch.stability_interval_sec`.
    pub const STABILITY_INTERVAL_SEC: f64 = 1.0;
    /// `watch.allow_unsafe_root`.
    pub const ALLOW_UNSAFE_ROOT: bool = false;
    /// `watch.recheck_sec`: a finished directory's ready-file is looked at again within this period (a
    /// slice per scan), not every poll.
    pub const RECHECK_SEC: f64 = 300.0;
    /// `job.array_max`: off, so a site that relies on one job per directory is unchanged.
    pub const ARRAY_MAX: i64 = 0;
    /// `job.array_throttle`: no `%N` limit (the cluster's own limits apply).
    pub const ARRAY_THROTTLE: i64 = 0;
    /// `job.submit_concurrency`: `sbatch` calls at once during a burst.
    pub const SUBMIT_CONCURRENCY: i64 = 4;
    /// `watch.quiet_sec`: off, as the seed (only the ready-file's own stability).
    pub const QUIET_SEC: f64 = 0.0;
    /// `watch.quiet_scope`.
    pub const QUIET_SCOPE: &str = "top";
    /// `watch.quiet_max_entries`: an Illumina run folder copied with rsync is tens of thousands of files
    /// (a MiSeq's about 15,000, a NovaSeq's more), all looked through for temporaries; a look that only
    /// reads names costs a few milliseconds per 10,000, and one that keeps them (whole-tree quiescence)
    /// about 100 bytes each.
    pub const QUIET_MAX_ENTRIES: i64 = 100_000;
    /// `watch.stale_temporary_sec`: a live transfer writes into its temporary far more often than this,
    /// even at a low `--bwlimit`.
    pub const STALE_TEMPORARY_SEC: f64 = 3600.0;
    /// `watch.stale_temporaries_block`: a stale temporary still holds. A killed transfer leaves a
    /// half-copied directory behind it: submitting it (and with `delete_on_success`, deleting it) cannot
    /// be undone, while a hold costs a person one look — and it is not silent: a warning, `status`,
    /// `explain` and a metric say how long it has held.
    pub const STALE_TEMPORARIES_BLOCK: bool = true;
    /// `watch.unready_backoff_max_sec`: the longest wait between two looks at a directory that is not
    /// ready (100,000 of them cost a core when each is looked at every poll).
    pub const UNREADY_BACKOFF_MAX_SEC: f64 = 30.0;
    /// `job.executor`.
    pub const EXECUTOR: ExecutorKind = ExecutorKind::Slurm;
    /// `job.slurmrest_url`: slurmrestd's usual port on this host.
    pub const SLURMREST_URL: &str = "http://127.0.0.1:6820";
    /// `job.job_name_prefix`.
    pub const JOB_NAME_PREFIX: &str = "dirwatch";
    /// `job.chdir_to_subdir`.
    pub const CHDIR_TO_SUBDIR: bool = true;
    /// `job.command_timeout_sec`.
    pub const COMMAND_TIMEOUT_SEC: f64 = 60.0;
    /// `job.lost_after_sec`: far above accounting's lag (seconds, minutes on a busy site).
    pub const LOST_AFTER_SEC: f64 = 3600.0;
    /// `job.umask`: what a person's login shell usually has, so job outputs are `0644` as when a person
    /// submits the same job (the service's own `UMask=0027` must not reach the jobs).
    pub const JOB_UMASK: &str = "0022";
    /// `behavior.delete_on_success`.
    pub const DELETE_ON_SUCCESS: bool = false;
    /// `behavior.state_file`. `.db`, not the Python original's `state.json`: the file is an SQLite
    /// database, and a config carried over from the original names its `state.json` explicitly, which the
    /// ledger then refuses with a clear message instead of mistaking it for its own.
    pub const STATE_FILE: &str = "/var/lib/dirwatcher/state.db";
    /// `behavior.lease_sec`: slurmctld's own `SlurmctldTimeout` is 120 s; a login node's standby may
    /// take over sooner, since the lease is renewed every cycle and a takeover never doubles a job.
    pub const LEASE_SEC: f64 = 15.0;
    /// `behavior.failure_log`.
    pub const FAILURE_LOG: &str = "/var/log/dirwatcher/failed_jobs.log";
    /// `behavior.max_retries` (0 = never, as the original).
    pub const MAX_RETRIES: i64 = 0;
    /// `behavior.submit_backoff_sec`.
    pub const SUBMIT_BACKOFF_SEC: f64 = 5.0;
    /// `behavior.submit_backoff_max_sec`.
    pub const SUBMIT_BACKOFF_MAX_SEC: f64 = 300.0;
    /// `job.output`: inside the root (a hidden folder the scanner skips, on the same shared file system as
    /// the data, so compute nodes can write it), outside every data directory (whose owner could plant a
    /// symlink named like the next job's output there), in a folder the daemon creates and checks.
    pub const OUTPUT: &str = ".dirwatcher/logs/%x-%j.out";
    /// `behavior.umask`: what the daemon creates is not writable by its group, and nothing of it is
    /// readable by others.
    pub const UMASK: u32 = 0o027;
    /// `behavior.umask` as the YAML writes it: quoted, so no YAML reader takes it for a decimal number.
    pub const UMASK_TEXT: &str = "\"0027\"";
    /// `behavior.smtp_port`: submission with STARTTLS, as the original's installer.
    pub const SMTP_PORT: i64 = 587;
    /// `behavior.smtp_use_tls`.
    pub const SMTP_USE_TLS: bool = true;
    /// `db.host`, as the original.
    pub const DB_HOST: &str = "127.0.0.1";
    /// `db.port`.
    pub const DB_PORT: u16 = 3306;
    /// `db.name`, as the original.
    pub const DB_NAME: &str = "hm_app_db";
    /// `db.user`, as the original.
    pub const DB_USER: &str = "hmapp";
    /// `notify.events`: the ends of a job people wait for (the original mailed every finished job).
    pub const NOTIFY_EVENTS: &str = "[completed, failed, lost, cancelled, held]";
    /// `notify.email_owner`.
    pub const NOTIFY_EMAIL_OWNER: bool = true;
    /// `notify.email_via`.
    pub const NOTIFY_EMAIL_VIA: &str = "auto";
    /// `notify.webhook_format`.
    pub const NOTIFY_WEBHOOK_FORMAT: &str = "dirwatcher";
    /// `notify.timeout_sec`: one delivery attempt (the loop waits for it).
    pub const NOTIFY_TIMEOUT_SEC: f64 = 10.0;
    /// `notify.retry_sec`.
    pub const NOTIFY_RETRY_SEC: f64 = 30.0;
    /// `notify.max_attempts`: with the doubling delay (capped at an hour), about 9 hours of tries.
    pub const NOTIFY_MAX_ATTEMPTS: i64 = 12;
}

/// What a key is when the config leaves it out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DefaultValue {
    /// The key must be set.
    Required,
    /// Nothing: the feature is off, or Slurm's own default applies.
    Unset,
    /// A text value, exactly as it would be written in the YAML.
    Text(&'static str),
    /// A number of seconds.
    Seconds(f64),
    /// A whole number.
    Count(i64),
    /// `true` or `false`.
    Switch(bool),
    /// `{}`.
    EmptyMap,
    /// `[]`.
    EmptyList,
    /// Worked out when the config is loaded; the words say how (`CPU count`).
    Derived(&'static str),
}

impl DefaultValue {
    /// The default as a YAML value (`5`, `_READY`, `{}`), or `None` when it is not a single value.
    pub fn yaml(&self) -> Option<Cow<'static, str>> {
        match *self {
            DefaultValue::Required | DefaultValue::Unset | DefaultValue::Derived(_) => None,
            DefaultValue::Text(t) => Some(Cow::Borrowed(t)),
            DefaultValue::Seconds(s) => Some(Cow::Owned(seconds_text(s))),
            DefaultValue::Count(n) => Some(Cow::Owned(n.to_string())),
            DefaultValue::Switch(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
            DefaultValue::EmptyMap => Some(Cow::Borrowed("{}")),
            DefaultValue::EmptyList => Some(Cow::Borrowed("[]")),
        }
    }

    /// The words for a list of keys: the value itself, `required`, `none`, or how it is worked out.
    pub fn words(&self) -> Cow<'static, str> {
        match *self {
            DefaultValue::Required => Cow::Borrowed("required"),
            DefaultValue::Unset => Cow::Borrowed("none"),
            DefaultValue::Derived(how) => Cow::Borrowed(how),
            _ => self.yaml().unwrap_or_default(),
        }
    }

    /// The README table's default cell: a value in backticks, else `(required)`, `none` or the words.
    pub fn readme(&self) -> Cow<'static, str> {
        match (self, self.yaml()) {
            (_, Some(v)) => Cow::Owned(format!("`{v}`")),
            (DefaultValue::Required, None) => Cow::Borrowed("(required)"),
            (_, None) => self.words(),
        }
    }
}

/// Seconds as the effective config writes them: `5`, not `5.0`; fractions as they are (`0.5`).
pub fn seconds_text(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

/// One config key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Key {
    /// Dotted name: section, then key (`watch.poll_interval_sec`).
    pub name: &'static str,
    /// What it is when the config leaves it out.
    pub default: DefaultValue,
    /// What it does, in one line (markdown: `code` in backticks).
    pub help: &'static str,
}

impl Key {
    /// The section (`watch`).
    pub fn section(&self) -> &'static str {
        self.name.split_once('.').map_or(self.name, |(s, _)| s)
    }

    /// The name inside its section, as written in the YAML (`poll_interval_sec`).
    pub fn leaf(&self) -> &'static str {
        self.name.split_once('.').map_or(self.name, |(_, l)| l)
    }
}

const fn key(name: &'static str, default: DefaultValue, help: &'static str) -> Key {
    Key {
        name,
        default,
        help,
    }
}

use DefaultValue::*;

/// `watch.root`.
pub const WATCH_ROOT: Key = key(
    "watch.root",
    Required,
    "directory to watch; must exist — never created (a missing root usually means an unmounted file system)",
);
/// `watch.signal_filename`.
pub const WATCH_SIGNAL_FILENAME: Key = key(
    "watch.signal_filename",
    Text(defaults::SIGNAL_FILENAME),
    "the ready-file, directly inside each subdirectory",
);
/// `watch.poll_interval_sec`.
pub const WATCH_POLL_INTERVAL_SEC: Key = key(
    "watch.poll_interval_sec",
    Seconds(defaults::POLL_INTERVAL_SEC),
    "seconds between scans (fractions allowed); at least 0.1",
);
/// `watch.stability_checks`.
pub const WATCH_STABILITY_CHECKS: Key = key(
    "watch.stability_checks",
    Count(defaults::STABILITY_CHECKS),
    "identical looks (size, mtime, inode) needed before submitting; at least 1",
);
/// `watch.stability_interval_sec`.
pub const WATCH_STABILITY_INTERVAL_SEC: Key = key(
    "watch.stability_interval_sec",
    Seconds(defaults::STABILITY_INTERVAL_SEC),
    "seconds between two looks; 0 or more",
);
/// `watch.allow_unsafe_root`.
pub const WATCH_ALLOW_UNSAFE_ROOT: Key = key(
    "watch.allow_unsafe_root",
    Switch(defaults::ALLOW_UNSAFE_ROOT),
    "accept a root that is a symlink, or writable by every user without the sticky bit (refused otherwise)",
);
/// `watch.recheck_sec`.
pub const WATCH_RECHECK_SEC: Key = key(
    "watch.recheck_sec",
    Seconds(defaults::RECHECK_SEC),
    "a finished directory's ready-file is looked at again for a new generation within this period, a slice per scan (0: every scan); one not yet submitted: `unready_backoff_max_sec`",
);
/// `watch.unready_backoff_max_sec`.
pub const WATCH_UNREADY_BACKOFF_MAX_SEC: Key = key(
    "watch.unready_backoff_max_sec",
    Seconds(defaults::UNREADY_BACKOFF_MAX_SEC),
    "a directory that is not ready is looked at again after a wait that doubles from the poll interval up to this (a new one at once, a ready one seen within poll + this)",
);
/// `watch.ready_preset`.
pub const WATCH_READY_PRESET: Key = key(
    "watch.ready_preset",
    Unset,
    "`illumina`, `illumina-rta`, `ont` or `rsync`: a named set of the readiness keys below (docs/instruments.md); `check-config` shows it expanded, with its source",
);
/// `watch.ready_all_of`.
pub const WATCH_READY_ALL_OF: Key = key(
    "watch.ready_all_of",
    Derived("`[signal_filename]`"),
    "markers that must all be regular files: names or globs in the directory (`final_summary_*.txt`), or paths below it (`*/*/final_summary_*.txt`, at most 4 levels, found in every folder they match)",
);
/// `watch.ready_any_of`.
pub const WATCH_READY_ANY_OF: Key = key(
    "watch.ready_any_of",
    EmptyList,
    "instead of `ready_all_of`: ready when any one item is there; an item may be a list (all of it)",
);
/// `watch.ready_content_file`.
pub const WATCH_READY_CONTENT_FILE: Key = key(
    "watch.ready_content_file",
    Unset,
    "a small status file (read up to 64 KiB, never through a symlink) that, when present, must match `ready_content_match`",
);
/// `watch.ready_content_match`.
pub const WATCH_READY_CONTENT_MATCH: Key = key(
    "watch.ready_content_match",
    Unset,
    "regular expression the status file must match, e.g. `CompletionStatus>SuccessfullyCompleted<`",
);
/// `watch.ignore_patterns`.
pub const WATCH_IGNORE_PATTERNS: Key = key(
    "watch.ignore_patterns",
    EmptyList,
    "globs of transfer temporaries (`*.filepart`, `*.part`, `*.tmp`), or `<rsync>` for rsync's `.name.XXXXXX`: a directory is held back while one is present anywhere in its tree (looked for up to `quiet_max_entries`)",
);
/// `watch.stale_temporary_sec`.
pub const WATCH_STALE_TEMPORARY_SEC: Key = key(
    "watch.stale_temporary_sec",
    Seconds(defaults::STALE_TEMPORARY_SEC),
    "a transfer temporary unchanged for this long is stale: a warning (once), `status` and `explain` say how long it has held; `dirwatcher_directories_pending{stage=\"stale_temporaries\"}` counts them",
);
/// `watch.stale_temporaries_block`.
pub const WATCH_STALE_TEMPORARIES_BLOCK: Key = key(
    "watch.stale_temporaries_block",
    Switch(defaults::STALE_TEMPORARIES_BLOCK),
    "a stale temporary still holds its directory back (a killed copy is half a copy); `false`: submitted past stale ones",
);
/// `watch.quiet_sec`.
pub const WATCH_QUIET_SEC: Key = key(
    "watch.quiet_sec",
    Seconds(defaults::QUIET_SEC),
    "seconds nothing in the directory may change (names, sizes, mtimes; contents never read) before it is submitted; 0 = off",
);
/// `watch.quiet_scope`.
pub const WATCH_QUIET_SCOPE: Key = key(
    "watch.quiet_scope",
    Text(defaults::QUIET_SCOPE),
    "`top` (the directory's own entries) or `tree` (everything below it, up to `quiet_max_entries`)",
);
/// `watch.quiet_max_entries`.
pub const WATCH_QUIET_MAX_ENTRIES: Key = key(
    "watch.quiet_max_entries",
    Count(defaults::QUIET_MAX_ENTRIES),
    "the most entries one look lists (the directory's own, and its tree's for `ignore_patterns` or `quiet_scope: tree`); a bigger directory is held back with a message",
);
/// `job.executor`.
pub const JOB_EXECUTOR: Key = key(
    "job.executor",
    Text(defaults::EXECUTOR.as_str()),
    "`slurm` (sbatch/sacct), `slurmrest` (slurmrestd's REST API, see `job.slurmrest_url`) or `local` (child processes on this machine)",
);
/// `job.slurmrest_url`.
pub const JOB_SLURMREST_URL: Key = key(
    "job.slurmrest_url",
    Text(defaults::SLURMREST_URL),
    "with `executor: slurmrest`: slurmrestd's address, `http://HOST:PORT` or its unix socket `unix:/PATH` (one kept-alive connection)",
);
/// `job.slurmrest_token_file`.
pub const JOB_SLURMREST_TOKEN_FILE: Key = key(
    "job.slurmrest_token_file",
    Unset,
    "with `executor: slurmrest`: a file holding the JWT (`scontrol token` output or the bare token), read again before the token expires; none: the daemon's `SLURM_JWT`",
);
/// `job.wrap_cmd`.
pub const JOB_WRAP_CMD: Key = key(
    "job.wrap_cmd",
    Unset,
    "command line; the directory is appended as one quoted word (`sbatch --wrap`); this or `job_script` is required",
);
/// `job.job_script`.
pub const JOB_JOB_SCRIPT: Key = key(
    "job.job_script",
    Unset,
    "instead of `wrap_cmd`: a script submitted with the directory as its argument",
);
/// `job.partition`.
pub const JOB_PARTITION: Key = key("job.partition", Unset, "`sbatch --partition`");
/// `job.account`.
pub const JOB_ACCOUNT: Key = key("job.account", Unset, "`sbatch --account`");
/// `job.gres`.
pub const JOB_GRES: Key = key("job.gres", Unset, "`sbatch --gres`, e.g. `gpu:1`");
/// `job.time_limit`.
pub const JOB_TIME_LIMIT: Key = key(
    "job.time_limit",
    Unset,
    "`sbatch --time` (`MM`, `MM:SS`, `HH:MM:SS`, `D-HH[:MM[:SS]]`); the local executor enforces it (TIMEOUT)",
);
/// `job.job_name_prefix`.
pub const JOB_JOB_NAME_PREFIX: Key = key(
    "job.job_name_prefix",
    Text(defaults::JOB_NAME_PREFIX),
    "job name `<prefix>-<directory name>` (characters outside `A-Za-z0-9._+-` become `_`)",
);
/// `job.env`.
pub const JOB_ENV: Key = key(
    "job.env",
    EmptyMap,
    "extra environment for the job; `WATCH_DIR=<dir>` is always set (passed as written, on top of the cleaned environment below)",
);
/// `job.extra_args`.
pub const JOB_EXTRA_ARGS: Key = key(
    "job.extra_args",
    EmptyList,
    "extra `sbatch` arguments, passed verbatim, one per list item",
);
/// `job.chdir_to_subdir`.
pub const JOB_CHDIR_TO_SUBDIR: Key = key(
    "job.chdir_to_subdir",
    Switch(defaults::CHDIR_TO_SUBDIR),
    "run the job inside the directory (`sbatch --chdir`)",
);
/// `job.output`.
pub const JOB_OUTPUT: Key = key(
    "job.output",
    Text(defaults::OUTPUT),
    "job stdout/stderr, relative to the root; `%j` job id, `%x` job name; `\"\"`: Slurm's own default, inside the data directory (see below)",
);
/// `job.output_group`.
pub const JOB_OUTPUT_GROUP: Key = key(
    "job.output_group",
    Unset,
    "a group whose members may read the job output in the daemon's own output folder (the folders get this group and the setgid bit, so each output file is created with it; the job's umask decides its group bits); none: the service's own group",
);
/// `job.command_timeout_sec`.
pub const JOB_COMMAND_TIMEOUT_SEC: Key = key(
    "job.command_timeout_sec",
    Seconds(defaults::COMMAND_TIMEOUT_SEC),
    "bound for every `sbatch`/`sacct`/`squeue` call; at least 1",
);
/// `job.lost_after_sec`.
pub const JOB_LOST_AFTER_SEC: Key = key(
    "job.lost_after_sec",
    Seconds(defaults::LOST_AFTER_SEC),
    "a job that no source (sacct, squeue) has shown for longer is `lost`: warned about, never deleted; `dirwatcher retry` resubmits it; at least 1",
);
/// `job.max_local_jobs`.
pub const JOB_MAX_LOCAL_JOBS: Key = key(
    "job.max_local_jobs",
    Derived("CPU count"),
    "local executor: jobs running at once (the rest wait as PENDING)",
);
/// `job.umask`.
pub const JOB_UMASK: Key = key(
    "job.umask",
    // Quoted: unquoted, YAML reads `0022` as the number 22.
    Text("\"0022\""),
    "the job's umask (octal; Slurm's `SLURM_UMASK`), whatever the daemon's own; `0022` makes outputs `0644`",
);
/// `job.submit_concurrency`.
pub const JOB_SUBMIT_CONCURRENCY: Key = key(
    "job.submit_concurrency",
    Count(defaults::SUBMIT_CONCURRENCY),
    "`sbatch` calls running at once during a burst; lowered by itself while the controller is slow or rate-limits",
);
/// `job.submit_rate`.
pub const JOB_SUBMIT_RATE: Key = key(
    "job.submit_rate",
    Unset,
    "a budget of `sbatch` calls: `{burst: 30, per_sec: 2}` (a token bucket; like Slurm's `rl_enable` limiter)",
);
/// `job.array_max`.
pub const JOB_ARRAY_MAX: Key = key(
    "job.array_max",
    Count(defaults::ARRAY_MAX),
    "0 = off; N: directories ready in one cycle (at least 2) go to Slurm as job arrays of up to N tasks, one task per directory (`sbatch --array`, one call per array); at most the cluster's `MaxArraySize`; `executor: slurm` with `wrap_cmd` only",
);
/// `job.array_throttle`.
pub const JOB_ARRAY_THROTTLE: Key = key(
    "job.array_throttle",
    Count(defaults::ARRAY_THROTTLE),
    "0 = no limit; N: at most N tasks of one array run at once (`--array=0-K%N`)",
);
/// `behavior.delete_on_success`.
pub const BEHAVIOR_DELETE_ON_SUCCESS: Key = key(
    "behavior.delete_on_success",
    Switch(defaults::DELETE_ON_SUCCESS),
    "delete the directory after COMPLETED",
);
/// `behavior.state_file`.
pub const BEHAVIOR_STATE_FILE: Key = key(
    "behavior.state_file",
    Text(defaults::STATE_FILE),
    "the ledger (an SQLite database, whatever the name); keep it on local disk",
);
/// `behavior.ledger`.
pub const BEHAVIOR_LEDGER: Key = key(
    "behavior.ledger",
    Unset,
    "the ledger on a MariaDB/MySQL server instead of the SQLite `state_file`: \
     `mysql://USER@HOST:PORT/DATABASE` (add `?tls=true` for TLS); two login nodes with the same config \
     share it, one active at a time",
);
/// `behavior.ledger_password_file`.
pub const BEHAVIOR_LEDGER_PASSWORD_FILE: Key = key(
    "behavior.ledger_password_file",
    Unset,
    "file holding the password of `behavior.ledger`'s user (one line, mode 0600); the unit's credential \
     `ledger_password` comes first",
);
/// `behavior.lease_sec`.
pub const BEHAVIOR_LEASE_SEC: Key = key(
    "behavior.lease_sec",
    Seconds(defaults::LEASE_SEC),
    "with a shared `behavior.ledger`: how long the active daemon's lease lasts without a renewal; the \
     standby takes over once it has run out",
);
/// `behavior.failure_log`.
pub const BEHAVIOR_FAILURE_LOG: Key = key(
    "behavior.failure_log",
    Text(defaults::FAILURE_LOG),
    "one JSON line per failed job",
);
/// `behavior.instance`.
pub const BEHAVIOR_INSTANCE: Key = key(
    "behavior.instance",
    Unset,
    "this service's name when several run on one host (`install --instance NAME` writes it): the \
     `dirwatcher_instance` label of every metric and the `instance` field of the daemon's log lines; read at start",
);
/// `behavior.max_retries`.
pub const BEHAVIOR_MAX_RETRIES: Key = key(
    "behavior.max_retries",
    Count(defaults::MAX_RETRIES),
    "automatic resubmissions of a failed directory",
);
/// `behavior.submit_backoff_sec`.
pub const BEHAVIOR_SUBMIT_BACKOFF_SEC: Key = key(
    "behavior.submit_backoff_sec",
    Seconds(defaults::SUBMIT_BACKOFF_SEC),
    "first delay after a failed submission or job (doubles per failure); at least 0.1",
);
/// `behavior.submit_backoff_max_sec`.
pub const BEHAVIOR_SUBMIT_BACKOFF_MAX_SEC: Key = key(
    "behavior.submit_backoff_max_sec",
    Seconds(defaults::SUBMIT_BACKOFF_MAX_SEC),
    "cap of that delay (at least 0.1); also how often a refusal that is a configuration error is warned about again",
);
/// `behavior.umask`.
pub const BEHAVIOR_UMASK: Key = key(
    "behavior.umask",
    Text(defaults::UMASK_TEXT),
    "the daemon's file-creation mask, octal (read at start); its own files get fixed modes whatever it is",
);
/// `behavior.from_email`.
pub const BEHAVIOR_FROM_EMAIL: Key = key(
    "behavior.from_email",
    Derived("`dirwatcher@<host>`"),
    "sender of the notification e-mails (as the original)",
);
/// `behavior.smtp_host`.
pub const BEHAVIOR_SMTP_HOST: Key = key(
    "behavior.smtp_host",
    Unset,
    "SMTP server for e-mail when `sendmail` is not installed (or with `notify.email_via: smtp`)",
);
/// `behavior.smtp_port`.
pub const BEHAVIOR_SMTP_PORT: Key = key(
    "behavior.smtp_port",
    Count(defaults::SMTP_PORT),
    "its port (`0`: the default)",
);
/// `behavior.smtp_user`.
pub const BEHAVIOR_SMTP_USER: Key = key(
    "behavior.smtp_user",
    Unset,
    "SMTP user name; with a password, dirwatcher authenticates",
);
/// `behavior.smtp_pass`.
pub const BEHAVIOR_SMTP_PASS: Key = key(
    "behavior.smtp_pass",
    Unset,
    "SMTP password (as the original); better `smtp_pass_file` or `smtp_pass_env`. Never logged; `check-config` shows `<secret>`",
);
/// `behavior.smtp_pass_file`.
pub const BEHAVIOR_SMTP_PASS_FILE: Key = key(
    "behavior.smtp_pass_file",
    Unset,
    "read the SMTP password from this file (mode 0600); under systemd the unit's credential `smtp_pass` wins (docs/notifications.md, \"Secrets\")",
);
/// `behavior.smtp_pass_env`.
pub const BEHAVIOR_SMTP_PASS_ENV: Key = key(
    "behavior.smtp_pass_env",
    Unset,
    "read the SMTP password from this environment variable (removed from the daemon's environment at start, never passed on)",
);
/// `behavior.smtp_use_tls`.
pub const BEHAVIOR_SMTP_USE_TLS: Key = key(
    "behavior.smtp_use_tls",
    Switch(defaults::SMTP_USE_TLS),
    "TLS to the SMTP server: implicit TLS on port 465, required STARTTLS on any other; `false`: plain SMTP",
);
/// `metrics.listen`.
pub const METRICS_LISTEN: Key = key(
    "metrics.listen",
    Unset,
    "serve Prometheus metrics at `http://ADDRESS/metrics`, e.g. `127.0.0.1:9187` (port 0: any free port, logged); \
     `0.0.0.0` and `::` are refused (every interface, no authentication): name one address",
);
/// `metrics.textfile`.
pub const METRICS_TEXTFILE: Key = key(
    "metrics.textfile",
    Unset,
    "rewrite this `.prom` file every cycle (atomically), for node_exporter's textfile collector",
);

/// `notify.events`.
pub const NOTIFY_EVENTS: Key = key(
    "notify.events",
    Text(defaults::NOTIFY_EVENTS),
    "what people are told of: any of `submitted`, `completed`, `failed`, `lost`, `blocked` (sbatch refuses the config), `cancelled` (an operator's `dirwatcher cancel`), `held` (a status file says the run failed: not submitted)",
);
/// `notify.email_owner`.
pub const NOTIFY_EMAIL_OWNER: Key = key(
    "notify.email_owner",
    Switch(defaults::NOTIFY_EMAIL_OWNER),
    "e-mail `user_email` of the directory's `.dirwatch_meta.json` (as the original)",
);
/// `notify.email_to`.
pub const NOTIFY_EMAIL_TO: Key = key(
    "notify.email_to",
    EmptyList,
    "addresses e-mailed of every event",
);
/// `notify.email_via`.
pub const NOTIFY_EMAIL_VIA: Key = key(
    "notify.email_via",
    Text(defaults::NOTIFY_EMAIL_VIA),
    "`auto`: `sendmail -t` when installed, else SMTP (`behavior.smtp_host`); or `sendmail`, `smtp`",
);
/// `notify.webhooks`.
pub const NOTIFY_WEBHOOKS: Key = key(
    "notify.webhooks",
    EmptyList,
    "URLs that get a JSON POST per event",
);
/// `notify.webhook_format`.
pub const NOTIFY_WEBHOOK_FORMAT: Key = key(
    "notify.webhook_format",
    Text(defaults::NOTIFY_WEBHOOK_FORMAT),
    "`dirwatcher` (the event document, schema `dirwatcher.event/1`) or `slack` (`{\"text\": …}` for Slack, Mattermost, Teams)",
);
/// `notify.webhook_token_file`.
pub const NOTIFY_WEBHOOK_TOKEN_FILE: Key = key(
    "notify.webhook_token_file",
    Unset,
    "send `Authorization: Bearer <token>` with the token in this file (never logged); under systemd the unit's credential `webhook_token` wins",
);
/// `notify.webhook_token_env`.
pub const NOTIFY_WEBHOOK_TOKEN_ENV: Key = key(
    "notify.webhook_token_env",
    Unset,
    "the same, with the token in this environment variable (removed from the daemon's environment at start, never passed on)",
);
/// `notify.command`.
pub const NOTIFY_COMMAND: Key = key(
    "notify.command",
    EmptyList,
    "a program and its arguments (no shell), run per event with the event document on stdin",
);
/// `notify.timeout_sec`.
pub const NOTIFY_TIMEOUT_SEC: Key = key(
    "notify.timeout_sec",
    Seconds(defaults::NOTIFY_TIMEOUT_SEC),
    "bound of one delivery (e-mail, POST, command)",
);
/// `notify.retry_sec`.
pub const NOTIFY_RETRY_SEC: Key = key(
    "notify.retry_sec",
    Seconds(defaults::NOTIFY_RETRY_SEC),
    "first delay after a failed delivery (doubles per failure, at most an hour)",
);
/// `notify.max_attempts`.
pub const NOTIFY_MAX_ATTEMPTS: Key = key(
    "notify.max_attempts",
    Count(defaults::NOTIFY_MAX_ATTEMPTS),
    "deliveries tried per notice before it is given up (logged, counted)",
);
/// `db.host`.
pub const DB_HOST: Key = key(
    "db.host",
    Derived("`127.0.0.1` once the section is there"),
    "the original's web-app database (MySQL/MariaDB): with a `db:` section, every submission and end is written to its `jobs` table",
);
/// `db.port`.
pub const DB_PORT: Key = key(
    "db.port",
    Derived("`3306` once the section is there"),
    "its port",
);
/// `db.name`.
pub const DB_NAME: Key = key(
    "db.name",
    Derived("`hm_app_db` once the section is there"),
    "the database",
);
/// `db.user`.
pub const DB_USER: Key = key(
    "db.user",
    Derived("`hmapp` once the section is there"),
    "the user dirwatcher logs in as",
);
/// `db.pass`.
pub const DB_PASS: Key = key(
    "db.pass",
    Unset,
    "its password (as the original); better `pass_file` or `pass_env`. Never logged; `check-config` shows `<secret>`",
);
/// `db.pass_file`.
pub const DB_PASS_FILE: Key = key(
    "db.pass_file",
    Unset,
    "read the database password from this file",
);
/// `db.pass_env`.
pub const DB_PASS_ENV: Key = key(
    "db.pass_env",
    Unset,
    "read the database password from this environment variable",
);

/// Every key, in the order of the sections and of `check-config`'s output.
pub const ALL: &[Key] = &[
    WATCH_ROOT,
    WATCH_SIGNAL_FILENAME,
    WATCH_POLL_INTERVAL_SEC,
    WATCH_STABILITY_CHECKS,
    WATCH_STABILITY_INTERVAL_SEC,
    WATCH_ALLOW_UNSAFE_ROOT,
    WATCH_RECHECK_SEC,
    WATCH_UNREADY_BACKOFF_MAX_SEC,
    WATCH_READY_PRESET,
    WATCH_READY_ALL_OF,
    WATCH_READY_ANY_OF,
    WATCH_READY_CONTENT_FILE,
    WATCH_READY_CONTENT_MATCH,
    WATCH_IGNORE_PATTERNS,
    WATCH_QUIET_SEC,
    WATCH_QUIET_SCOPE,
    WATCH_QUIET_MAX_ENTRIES,
    WATCH_STALE_TEMPORARY_SEC,
    WATCH_STALE_TEMPORARIES_BLOCK,
    JOB_EXECUTOR,
    JOB_SLURMREST_URL,
    JOB_SLURMREST_TOKEN_FILE,
    JOB_WRAP_CMD,
    JOB_JOB_SCRIPT,
    JOB_PARTITION,
    JOB_ACCOUNT,
    JOB_GRES,
    JOB_TIME_LIMIT,
    JOB_JOB_NAME_PREFIX,
    JOB_ENV,
    JOB_EXTRA_ARGS,
    JOB_CHDIR_TO_SUBDIR,
    JOB_OUTPUT,
    JOB_OUTPUT_GROUP,
    JOB_COMMAND_TIMEOUT_SEC,
    JOB_LOST_AFTER_SEC,
    JOB_MAX_LOCAL_JOBS,
    JOB_UMASK,
    JOB_SUBMIT_CONCURRENCY,
    JOB_SUBMIT_RATE,
    JOB_ARRAY_MAX,
    JOB_ARRAY_THROTTLE,
    BEHAVIOR_DELETE_ON_SUCCESS,
    BEHAVIOR_STATE_FILE,
    BEHAVIOR_LEDGER,
    BEHAVIOR_LEDGER_PASSWORD_FILE,
    BEHAVIOR_LEASE_SEC,
    BEHAVIOR_FAILURE_LOG,
    BEHAVIOR_INSTANCE,
    BEHAVIOR_MAX_RETRIES,
    BEHAVIOR_SUBMIT_BACKOFF_SEC,
    BEHAVIOR_SUBMIT_BACKOFF_MAX_SEC,
    BEHAVIOR_UMASK,
    BEHAVIOR_FROM_EMAIL,
    BEHAVIOR_SMTP_HOST,
    BEHAVIOR_SMTP_PORT,
    BEHAVIOR_SMTP_USER,
    BEHAVIOR_SMTP_PASS,
    BEHAVIOR_SMTP_PASS_FILE,
    BEHAVIOR_SMTP_PASS_ENV,
    BEHAVIOR_SMTP_USE_TLS,
    METRICS_LISTEN,
    METRICS_TEXTFILE,
    NOTIFY_EVENTS,
    NOTIFY_EMAIL_OWNER,
    NOTIFY_EMAIL_TO,
    NOTIFY_EMAIL_VIA,
    NOTIFY_WEBHOOKS,
    NOTIFY_WEBHOOK_FORMAT,
    NOTIFY_WEBHOOK_TOKEN_FILE,
    NOTIFY_WEBHOOK_TOKEN_ENV,
    NOTIFY_COMMAND,
    NOTIFY_TIMEOUT_SEC,
    NOTIFY_RETRY_SEC,
    NOTIFY_MAX_ATTEMPTS,
    DB_HOST,
    DB_PORT,
    DB_NAME,
    DB_USER,
    DB_PASS,
    DB_PASS_FILE,
    DB_PASS_ENV,
];

/// Width of a line of `check-config --help`: clap re-wraps longer lines without keeping the indent.
const HELP_WIDTH: usize = 100;

/// The table for `check-config --help`: one key per line, `[default]` and help, wrapped with the help
/// column kept.
pub fn help_lines() -> String {
    let name_width = ALL.iter().map(|k| k.name.len()).max().unwrap_or(0);
    let indent = 2 + name_width + 1;
    let mut out = String::new();
    for k in ALL {
        let mut line = format!("  {:<name_width$} ", k.name);
        let mut column = indent;
        let words = std::iter::once(format!("[{}]", k.default.words()))
            .chain(k.help.split(' ').map(str::to_string));
        for (i, word) in words.enumerate() {
            if i > 0 && column + 1 + word.chars().count() > HELP_WIDTH {
                out += line.trim_end();
                out.push('\n');
                line = " ".repeat(indent);
                column = indent;
            } else if i > 0 {
                line.push(' ');
                column += 1;
            }
            column += word.chars().count();
            line += &word;
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, JobCommand};
    use std::path::Path;

    #[test]
    fn names_are_unique_dotted_and_in_section_order() {
        let mut seen = std::collections::BTreeSet::new();
        let mut sections: Vec<&str> = Vec::new();
        for k in ALL {
            assert!(seen.insert(k.name), "{} twice", k.name);
            assert_eq!(k.name.matches('.').count(), 1, "{}", k.name);
            if sections.last() != Some(&k.section()) {
                assert!(!sections.contains(&k.section()), "{} out of order", k.name);
                sections.push(k.section());
            }
        }
        assert_eq!(
            sections,
            ["watch", "job", "behavior", "metrics", "notify", "db"]
        );
    }

    #[test]
    fn the_umask_text_is_the_umask() {
        let digits = defaults::UMASK_TEXT.trim_matches('"');
        assert_eq!(u32::from_str_radix(digits, 8), Ok(defaults::UMASK));
    }

    #[test]
    fn defaults_read_as_yaml_values() {
        assert_eq!(WATCH_POLL_INTERVAL_SEC.default.yaml().unwrap(), "5");
        assert_eq!(Seconds(0.5).yaml().unwrap(), "0.5");
        assert_eq!(JOB_EXECUTOR.default.readme(), "`slurm`");
        assert_eq!(WATCH_ROOT.default.readme(), "(required)");
        assert_eq!(JOB_PARTITION.default.readme(), "none");
        assert_eq!(JOB_MAX_LOCAL_JOBS.default.words(), "CPU count");
    }

    /// Rows `| `key` | default | meaning |` of `section` (its `## ` heading to the next) in `doc`.
    fn table_rows(doc: &str, name: &str, section: &str) -> Vec<(String, String, String)> {
        let part = doc
            .split(&format!("\n## {section}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("{name} has a `## {section}` section"))
            .split("\n## ")
            .next()
            .unwrap_or_default();
        key_rows(part, name)
    }

    /// Every line of `text` that is a key row: `| `a.b` | … |`.
    fn key_rows(text: &str, name: &str) -> Vec<(String, String, String)> {
        text.lines()
            .filter(|l| {
                l.starts_with("| `") && l.split('`').nth(1).is_some_and(|k| k.contains('.'))
            })
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
                assert_eq!(
                    cells.len(),
                    3,
                    "{name}: a key row is not `| key | default | meaning |`: {l}"
                );
                (
                    cells[0].trim_matches('`').to_string(),
                    cells[1].to_string(),
                    cells[2].to_string(),
                )
            })
            .collect()
    }

    /// docs/configuration.md's table is the table: same keys in the same order, same defaults, same
    /// help, and nothing else in its `## Keys` section that looks like a key row. On a mismatch the
    /// message carries the rows to paste.
    #[test]
    fn the_configuration_doc_table_matches_the_key_table() {
        const DOC: &str = "docs/configuration.md";
        let doc = include_str!("../../docs/configuration.md");
        let want: Vec<(String, String, String)> = ALL
            .iter()
            .map(|k| (k.name.into(), k.default.readme().into(), k.help.into()))
            .collect();
        let got = table_rows(doc, DOC, "Keys");
        let rows: String = want
            .iter()
            .map(|(k, d, m)| format!("| `{k}` | {d} | {m} |\n"))
            .collect();
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(
                g, w,
                "{DOC}'s key table disagrees with src/config/keys.rs; its rows should be:\n{rows}"
            );
        }
        assert_eq!(
            got.len(),
            want.len(),
            "{DOC}'s key table has other keys than src/config/keys.rs; its rows should be:\n{rows}"
        );
        // One table, in one place: no second copy to drift (the README's was, with a stray row).
        assert_eq!(
            key_rows(doc, DOC).len(),
            want.len(),
            "{DOC} has key rows outside its `## Keys` table"
        );
        let readme = include_str!("../../README.md");
        assert!(
            key_rows(readme, "README.md").is_empty(),
            "README.md has a key table again: the table lives in {DOC}"
        );
    }

    /// A row that is not the table's is caught, whatever it holds (the stray `right: (…` row of issue
    /// 24 was one): the reader sees every key row, and a malformed one fails loudly.
    #[test]
    #[should_panic(expected = "a key row is not")]
    fn a_malformed_key_row_is_refused() {
        key_rows("| `watch.root` | (required) |\n", "doc");
    }

    /// What `check-config` prints for a config that sets only what it must is the table's defaults.
    #[test]
    fn a_minimal_config_gets_the_table_defaults() {
        let root = std::env::temp_dir();
        let yaml = format!(
            "watch:\n  root: {}\njob:\n  wrap_cmd: echo\n",
            root.display()
        );
        let c = Config::parse(&yaml, Path::new("/etc/dirwatcher/config.yaml")).unwrap();
        let effective: serde_json::Value = serde_saphyr::from_str(&c.to_yaml()).unwrap();
        for k in ALL {
            let got = &effective[k.section()][k.leaf()];
            match k.default {
                Required => assert!(!got.is_null(), "{}", k.name),
                Unset if *k == JOB_WRAP_CMD => assert_eq!(got, "echo"),
                Unset => assert!(got.is_null(), "{} is {got}, not unset", k.name),
                Derived(_) => {}
                d => {
                    let want: serde_json::Value =
                        serde_saphyr::from_str(&d.yaml().unwrap()).unwrap();
                    assert_eq!(got, &want, "{}", k.name);
                }
            }
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(c.job.max_local_jobs as usize, cpus);
        assert_eq!(c.job.output.as_deref(), Some(defaults::OUTPUT));
        assert_eq!(c.job.command, JobCommand::Wrap("echo".into()));
    }

    /// The effective config names every key of the table once, in the table's order (the job's command
    /// under whichever of `wrap_cmd` and `job_script` is set).
    #[test]
    fn effective_config_lists_every_key_in_table_order() {
        let yaml = format!(
            "watch:\n  root: {}\njob:\n  job_script: /opt/x.sh\n",
            std::env::temp_dir().display()
        );
        let c = Config::parse(&yaml, Path::new("/x.yaml")).unwrap();
        let mut section = "";
        let mut listed = Vec::new();
        for l in c.to_yaml().lines() {
            if let Some(s) = l.strip_suffix(':').filter(|s| !s.starts_with(' ')) {
                section = s;
            } else if let Some((leaf, _)) = l.strip_prefix("  ").and_then(|l| l.split_once(':'))
                && !leaf.starts_with(' ')
            {
                listed.push(format!("{section}.{leaf}"));
            }
        }
        let want: Vec<&str> = ALL
            .iter()
            .map(|k| k.name)
            .filter(|n| *n != JOB_WRAP_CMD.name)
            .collect();
        assert_eq!(listed, want);
    }

    #[test]
    fn help_lists_every_key_with_its_default_within_the_width() {
        let h = help_lines();
        for k in ALL {
            let line = h
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{} ", k.name)))
                .unwrap_or_else(|| panic!("{} missing:\n{h}", k.name));
            assert!(
                line.contains(&format!(" [{}] ", k.default.words())),
                "{line}"
            );
        }
        assert!(
            h.contains(
                "  behavior.state_file             [/var/lib/dirwatcher/state.db] the ledger"
            ),
            "{h}"
        );
        assert!(h.lines().all(|l| l.chars().count() <= HELP_WIDTH), "{h}");
    }

    /// docs/install.md's flag table shows the same defaults for the flags that fill config keys.
    #[test]
    fn install_doc_flag_defaults_match_the_table() {
        let doc = include_str!("../../docs/install.md");
        for (flag, key) in [
            ("--signal-file NAME", &WATCH_SIGNAL_FILENAME),
            ("--state-file FILE", &BEHAVIOR_STATE_FILE),
            ("--failure-log FILE", &BEHAVIOR_FAILURE_LOG),
        ] {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{flag}` |")))
                .unwrap_or_else(|| panic!("docs/install.md has no row for `{flag}`"));
            let want = format!("| {} |", key.default.readme());
            assert!(
                row.contains(&want),
                "docs/install.md: {row}\n  should show {want}"
            );
        }
    }
}
