//! The command line: every subcommand, flag and help text (the `install`, `uninstall` and `__generate`
//! flags too) and the defaults the flags show. Parsing only; `main.rs` dispatches.
//!
//! Must never: import anything else from the crate but the table of config keys its help and defaults come
//! from (`install` and `logging` import this, never the reverse).

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::keys::defaults;

// Defaults of the install/uninstall flags. Plain constants here, so that the flags can name them without
// `cli` importing `install` (which imports `cli`); the installer reads the same constants.

/// Default config path, as the original installer writes it.
pub const DEFAULT_CONFIG: &str = "/etc/dirwatcher/config.yaml";
/// `--install-root` default, as the original installer.
pub const DEFAULT_INSTALL_ROOT: &str = "/opt/dirwatcher";
/// `--failure-log` default: `behavior.failure_log`'s, as the original installer.
pub const DEFAULT_FAILURE_LOG: &str = defaults::FAILURE_LOG;
/// `--state-file` default: `behavior.state_file`'s (the original used `state.json`; ours is SQLite).
pub const DEFAULT_STATE_FILE: &str = defaults::STATE_FILE;
/// `--signal-file` default: `watch.signal_filename`'s.
pub const DEFAULT_SIGNAL_FILE: &str = defaults::SIGNAL_FILENAME;
/// `--user` default: the dedicated system user the service (and so every job) runs as.
pub const DEFAULT_USER: &str = "dirwatcher";

/// What `dirwatcher --version` prints after the name: the release, the commit it was built from and the
/// build date (UTC), set by `build.rs`; the commit is `unknown` in a build from a tarball without git.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("DIRWATCHER_COMMIT"),
    ", built ",
    env!("DIRWATCHER_BUILD_DATE"),
    ")"
);

/// The `dirwatcher` command line (its help text is set by the attributes below).
#[derive(Debug, Parser)]
#[command(
    name = "dirwatcher",
    version = VERSION,
    about = "Run one Slurm job for every directory that is marked ready under a watched root",
    long_about = "dirwatcher watches a root directory (NFS, Lustre, GPFS or local disk). When a direct \
subdirectory holds a ready-file (default `_READY`) that is stable — same size, mtime and inode across \
`stability_checks` looks, and not flock-locked by its writer — it submits exactly one job for it \
(`sbatch`, or a local child process), follows the job through `sacct` to its final state, deletes the \
directory after COMPLETED when `delete_on_success` is set, and appends every failed job to the failure log. \
Its ledger (behavior.state_file) makes sure that no directory is submitted twice or forgotten, across \
restarts and crashes.",
    after_help = "Quick start without Slurm:   dirwatcher demo
Validate a config:           dirwatcher check-config --config /etc/dirwatcher/config.yaml
Run in the foreground:       dirwatcher run --config /etc/dirwatcher/config.yaml
See what it did:             dirwatcher status --config /etc/dirwatcher/config.yaml"
)]
pub struct Cli {
    /// Log format on stderr: `text` for people, `json` (one object per line) for log shippers. Under systemd
    /// (stderr is the journal), `text` goes to journald with `DIR` and `JOB` as fields.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// More detail in the log (`-v`: every stability check and query; `-vv`: everything).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `check-config --help`: what the command does, then every key with its default, from the one table of
/// keys (`config::keys`).
fn check_config_about() -> String {
    use crate::config::keys::{self, defaults};
    format!(
        "Validate a config file and print the effective configuration, with every default filled in. Exit \
status 0 when valid, 2 with one message naming the key, its line and the fix when not.\n\n\
With --slurm it then asks Slurm whether it would take the job: it runs the exact `sbatch` the daemon would \
run (same arguments, same cleaned environment, the root as a sample directory) with `--test-only`, which \
creates no job, as the user running the command (run it as the service user: `sudo -u dirwatcher \
dirwatcher check-config --slurm`). An invalid account, partition, QOS, gres or time limit, or a user without an \
association, is reported with the key to fix and exit status 2; exit status 1 when Slurm could not be asked.\n\n\
Keys (defaults in brackets):\n{keys}\n\
Job output goes to {default} in the root, a folder the daemon creates and checks (owned by it, \
writable by no one else, no symlink on the way), outside every data directory; `{output}: \"\"` asks \
for Slurm's own default inside the data directory (check-config warns: its owner can plant symlinks \
there).\n\n\
Metrics: *_total counters count since the daemon started (rate() copes with restarts); \
dirwatcher_directories_finished{{state}} holds the durable counts from the ledger.",
        keys = keys::help_lines(),
        output = keys::JOB_OUTPUT.name,
        default = defaults::OUTPUT,
    )
}

const STATUS_ABOUT: &str = "Is it healthy? Whether the daemon runs (its pid and uptime, from the \
single-instance lock beside the ledger and the snapshot it writes every poll, `<state_file>.status.json`), \
when it last listed the root, how many directories are settling, locked by their writer or unreadable, the \
jobs in flight with their Slurm state and age, submissions Slurm refuses and why, lost jobs and recent \
failures.\n\n\
The same words everywhere — text, JSON (`schema_version`), systemd's STATUS= and the metrics: settling, \
locked, unreadable, submitting, in_flight, completed, failed, lost.\n\n\
With --state, --since or DIR… it lists the matching directories; -P prints that list in Slurm's parsable \
style (`|`-separated, a header line), -o chooses its fields: dir, name, state, job_id, job_name, \
slurm_state, reason, attempt, age_sec, updated, exit_code, last_error. Exit status 1 when the ledger cannot \
be read (a permission error says so).";

const EXPLAIN_ABOUT: &str = "Why is this directory (not) picked up? Prints the whole decision chain, \
in words: is it a direct child of the root, hidden, a symlink, readable by you; is the ready-file there \
(or a near miss such as `READY`, `_ready`, `_READY.txt`), its identity (size, mtime, inode) and whether a \
writer holds it locked; what the running daemon last saw of it (its stability looks, from the daemon's \
snapshot); every ledger record of it (job, state, attempt, output file, last error, next retry); and what \
happens next.\n\n\
Read-only: it takes no lock, writes nothing, and runs no Slurm command. Run it as the service user \
(`sudo -u dirwatcher dirwatcher explain DIR`) to see what the daemon can read.";

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with `dir` and `job` fields.
    Json,
}

/// Which service's config a command reads: `--config FILE`, or `--instance NAME` for the config of
/// `dirwatcher@NAME`; the plain service's without either.
#[derive(Debug, Clone, Args)]
pub struct ConfigFile {
    /// The YAML config file [default: /etc/dirwatcher/config.yaml].
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The service `dirwatcher@NAME` (installed with `install --instance NAME`): its config
    /// /etc/dirwatcher/NAME.yaml.
    #[arg(long, value_name = "NAME", conflicts_with = "config", value_parser = instance_name)]
    instance: Option<String>,
}

impl ConfigFile {
    /// The config file's path.
    pub fn path(&self) -> PathBuf {
        match (&self.config, &self.instance) {
            (Some(c), _) => c.clone(),
            (None, Some(name)) => Path::new(DEFAULT_CONFIG).with_file_name(format!("{name}.yaml")),
            (None, None) => PathBuf::from(DEFAULT_CONFIG),
        }
    }

    /// The instance named by `--instance`, if that is how the config was chosen.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref().filter(|_| self.config.is_none())
    }
}

/// `--instance NAME`: the installer's rule for names, so no name reaches outside /etc/dirwatcher.
fn instance_name(name: &str) -> Result<String, String> {
    crate::config::InstanceName::parse(name).map(|n| n.as_str().to_string())
}

/// `dirwatcher ledger …`.
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Copy every record of a ledger into a new, empty one: an SQLite file to a MariaDB database (two
    /// login nodes), or back.
    #[command(
        long_about = "Copy every record of a ledger into a new, empty one: from an SQLite file to a MariaDB/MySQL \
database (for two login nodes sharing one ledger), or back.\n\n\
Each record keeps its id, the ledger keeps its id (the middle of every submission key, so jobs in flight are \
still recognised) and the next id it gives; the notices and the operators' cancel requests come along. All in \
one transaction: a copy that fails leaves the new ledger empty. Refused while a daemon uses either ledger \
(the file's lock, the server's lease), and into a ledger that holds a record. Then point `behavior.ledger` \
(or `behavior.state_file`) at the new one and start the daemons.",
        after_help = "Example:\n  systemctl stop dirwatcher\n  sudo -u dirwatcher dirwatcher ledger copy --from /var/lib/dirwatcher/state.db \\\n    \
--to mysql://dirwatcher@db.cluster:3306/dirwatcher --password-file /etc/dirwatcher/ledger.pass\n  \
# set behavior.ledger and behavior.ledger_password_file in the config, then on both login nodes:\n  \
systemctl start dirwatcher"
    )]
    Copy {
        /// The ledger to copy: an SQLite file, or `mysql://USER@HOST:PORT/DATABASE`.
        #[arg(long, value_name = "FILE|URL")]
        from: String,
        /// The new ledger: a path where no file is, or an empty database.
        #[arg(long, value_name = "FILE|URL")]
        to: String,
        /// The file holding the password of the `mysql://` side's user (one line).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the watcher in the foreground until SIGINT or SIGTERM (SIGHUP reloads the config).
    #[command(
        long_about = "Run the watcher in the foreground until SIGINT or SIGTERM.\n\n\
Each cycle it follows the jobs in flight (one `sacct` call for all of them), finishes due deletions and \
failure-log lines, scans the root, and submits every directory whose ready-file became stable. The config is \
checked before anything runs: a bad one exits with status 2 and a message naming the key and line.\n\n\
Signals: SIGTERM/SIGINT stop scanning, let a running `sbatch` finish and be recorded, and exit 0. SIGHUP \
reloads the config file; a config that does not validate is refused and the old one stays in force.\n\n\
A second instance on the same state file refuses to start."
    )]
    Run {
        /// Which config: `--config FILE` or `--instance NAME`.
        #[command(flatten)]
        config: ConfigFile,
        /// Run a single cycle (follow jobs, scan, submit) and exit; for cron-style use and debugging.
        #[arg(long)]
        once: bool,
        /// Run even as root. Without it, root is refused: jobs would be submitted as root. Run as a service
        /// user instead (`dirwatcher install` creates one).
        #[arg(long)]
        allow_root: bool,
        /// Scan once, watch each new ready-file until it is stable (or say why not), and print the exact
        /// `sbatch` argument vector (or local command) each would get — without submitting anything or
        /// writing the ledger (it is only read, if it exists). Takes no lock: safe beside a running daemon.
        #[arg(long, conflicts_with = "once")]
        dry_run: bool,
        /// Start a new ledger even though an earlier one served this root (its lock file, status snapshot
        /// or job output are there, or Slurm's accounting shows its jobs): every ready directory is then
        /// processed as new. Without it such a start is refused; `dirwatcher recover --from-slurm` rebuilds
        /// the ledger instead.
        #[arg(long, conflicts_with = "dry_run")]
        catch_up: bool,
    },
    /// Validate a config file and print the effective configuration (every default filled in).
    #[command(long_about = check_config_about())]
    CheckConfig {
        /// Which config: `--config FILE` or `--instance NAME`.
        #[command(flatten)]
        config: ConfigFile,
        /// Also ask Slurm (`sbatch --test-only`, no job is created) whether it accepts the job the daemon
        /// would submit, as the user running this command.
        #[arg(long)]
        slurm: bool,
        /// Print nothing when the config is valid (errors still go to stderr, exit status 2); the unit's
        /// `ExecReload=` uses it so a broken config fails `systemctl reload`.
        #[arg(short, long)]
        quiet: bool,
        /// Also require every secret (`smtp_pass_file`, `webhook_token_file`, their `_env` variables) to
        /// be readable here, as the daemon does. Without it, a secret this user cannot read is said and
        /// left unread (an operator may check a config whose secrets only the service user reads).
        #[arg(long)]
        secrets: bool,
    },
    /// Is it healthy: the daemon (pid, uptime, last poll), counts by state, jobs in flight with their Slurm
    /// state, blocked submissions, lost jobs and recent failures (works while the daemon runs).
    #[command(long_about = STATUS_ABOUT)]
    Status {
        /// Which config: `--config FILE` or `--instance NAME`.
        #[command(flatten)]
        config: ConfigFile,
        /// Print JSON instead of text (with a `schema_version`).
        #[arg(long, conflicts_with = "parsable")]
        json: bool,
        /// How many recent failures to list.
        #[arg(long, default_value_t = 10)]
        failures: u32,
        /// List only directories in this state (repeatable, or comma-separated): settling, locked,
        /// unreadable, submitting, in_flight, completed, failed, lost.
        #[arg(long, value_name = "STATE", value_delimiter = ',')]
        state: Vec<String>,
        /// List only directories whose latest record changed within this long (`30m`, `2h`, `1d`).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Parsable output in Slurm's style: one directory per line, fields separated by `|`, a header
        /// line first (see --format).
        #[arg(short = 'P', long)]
        parsable: bool,
        /// The fields of the listing, comma-separated (default: dir,state,job_id,slurm_state,reason,
        /// attempt,age_sec,exit_code).
        #[arg(
            short = 'o',
            long = "format",
            value_name = "FIELDS",
            value_delimiter = ','
        )]
        format: Vec<String>,
        /// Only these directories (names or paths under the root).
        dirs: Vec<PathBuf>,
    },
    /// Why is this directory (not) picked up: the whole decision chain, in words.
    #[command(long_about = EXPLAIN_ABOUT)]
    Explain {
        /// Which config: `--config FILE` or `--instance NAME`.
        #[command(flatten)]
        config: ConfigFile,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Directory names or paths under the root.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Queue failed directories for another job (works while the daemon runs; it picks them up next cycle).
    Retry {
        /// Which config: `--config FILE` or `--instance NAME`.
        #[command(flatten)]
        config: ConfigFile,
        /// Every directory whose latest job failed (with --state: only those that ended so).
        #[arg(long, conflicts_with = "dirs")]
        all_failed: bool,
        /// Every failed directory whose name matches GLOB (`*` any run, `?` one character; quote it so the
        /// shell does not expand it); with --state: only those that ended so.
        #[arg(long = "match", value_name = "GLOB", conflicts_with = "dirs")]
        matching: Option<String>,
        /// With --all-failed or --match: only jobs that ended in this Slurm state (TIMEOUT,
        /// OUT_OF_MEMORY, FAILED, CANCELLED, …), or `lost`.
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        /// Directory names or paths under the root (or --all-failed, or --match GLOB).
        dirs: Vec<PathBuf>,
    },
    /// Cancel what a directory has in flight: its job (`scancel`), or a queued attempt not submitted yet.
    /// Recorded as CANCELLED by operator, so the daemon does not wait for it and retries nothing.
    Cancel {
        /// Which config: `--config FILE` or `--instance NAME`.
        #[command(flatten)]
        config: ConfigFile,
        /// Every directory in flight whose name matches GLOB (`*` any run, `?` one character; quote it
        /// so the shell does not expand it).
        #[arg(long = "match", value_name = "GLOB", conflicts_with = "dirs")]
        matching: Option<String>,
        /// Directory names or paths under the root.
        #[arg(required_unless_present = "matching")]
        dirs: Vec<PathBuf>,
    },
    /// Remove directories from the ledger. If a ready-file is still there, the directory counts as new and
    /// is submitted again. Refused for a job in flight (cancel it first); a queued attempt that was never
    /// submitted may be forgotten.
    Forget {
        /// Which config: `--config FILE` or `--instance NAME`.
        #[command(flatten)]
        config: ConfigFile,
        /// Every directory of the ledger whose name matches GLOB and that has no job in flight (`*` any
        /// run, `?` one character; quote it so the shell does not expand it).
        #[arg(long = "match", value_name = "GLOB", conflicts_with = "dirs")]
        matching: Option<String>,
        /// With --match: only directories whose latest record is in this state (completed, failed, lost,
        /// …).
        #[arg(long, value_name = "STATE", requires = "matching")]
        state: Option<String>,
        /// Directory names or paths under the root.
        #[arg(required_unless_present = "matching")]
        dirs: Vec<PathBuf>,
    },
    /// Rebuild a lost ledger from Slurm's accounting, so finished directories are not run again.
    #[command(
        long_about = "Rebuild a lost ledger from Slurm's accounting, so finished directories are not run again.\n\n\
Reads the jobs of this user from `sacct` (a day per call, from --since to now) and keeps those of dirwatcher \
(the submission key in their comment) whose working directory is a directory of this root and whose name is \
the one dirwatcher gives it (without `chdir_to_subdir`: by name, when exactly one directory has it). Each such \
directory gets one record of its latest job: COMPLETED → completed (never submitted again), a failure → failed \
(`dirwatcher retry` resubmits it), a job Slurm may still run → in flight (the daemon follows it to its end). A \
directory the ledger knows is left as it is; one whose ready-file changed after its last job was submitted is \
not recorded (new data: the daemon runs it). Nothing is deleted, logged or sent. A report says what was \
recorded and which jobs could not be matched.\n\n\
Run it with the daemon stopped, as the service user. A missing ledger is created; a ledger file that is a \
symlink is refused.",
        after_help = "Example:\n  systemctl stop dirwatcher\n  sudo -u dirwatcher dirwatcher recover --from-slurm --since 2026-09-01 \\\n    --config /etc/dirwatcher/config.yaml --dry-run\n  sudo -u dirwatcher dirwatcher recover --from-slurm --since 2026-09-01 --config /etc/dirwatcher/config.yaml\n  systemctl start dirwatcher"
    )]
    Recover {
        /// Which config: `--config FILE` or `--instance NAME`.
        #[command(flatten)]
        config: ConfigFile,
        /// Rebuild from Slurm's accounting (`sacct`; the only source there is).
        #[arg(long, required = true)]
        from_slurm: bool,
        /// How far back: a date (`2026-11-01`) or a time ago (`90d`); default 30 days, the window a new
        /// ledger's start looks at.
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// Say what would be recorded; write nothing (works beside a running daemon).
        #[arg(long)]
        dry_run: bool,
    },
    /// Work on the ledger itself (`ledger copy`: move it between an SQLite file and a MariaDB server).
    Ledger {
        /// What to do.
        #[command(subcommand)]
        cmd: LedgerCommand,
    },
    /// Try dirwatcher without Slurm: creates an example root, drops a sample directory into it, and runs the
    /// watcher with the local executor until Ctrl-C.
    Demo {
        /// Where to create the demo (root, config, state and logs).
        #[arg(long, default_value = "dirwatcher-demo")]
        dir: PathBuf,
    },
    /// Install the service: binary, sample job, config, state and log directories, a system user and a
    /// hardened systemd unit (the Python original's installer flags).
    #[command(
        long_about = "Install dirwatcher as a service, with the Python original's installer flags.\n\n\
Copies this binary and the sample job `process_dir.py` to the install root, writes the config (the \
original's layout with the given values; an existing config is never replaced without --force, and a diff \
shows what differs), creates the service user (`useradd --system`) and its state and log directories (mode \
0750), writes /etc/systemd/system/dirwatcher.service, and enables and starts it when systemd runs (else it \
prints what to run). A second run with the same flags changes nothing and says so; a run for another \
root than the installed config watches is refused (--force moves the service there).\n\n\
Several roots on one host: --instance NAME installs `dirwatcher@NAME` from the shared template unit \
/etc/systemd/system/dirwatcher@.service, with its root and user in a drop-in, its config \
/etc/dirwatcher/NAME.yaml, its ledger in /var/lib/dirwatcher/NAME/, its log in /var/log/dirwatcher/NAME/ and its \
own metrics (--metrics-listen, --metrics-textfile), labelled with NAME; `dirwatcher status --config \
/etc/dirwatcher/NAME.yaml` reads it. Two services on one root, ledger, log or metrics output are refused: they \
would submit every directory twice.\n\n\
--destdir DIR stages every file under DIR without touching the system; --dry-run only prints the plan.",
        after_help = "Example (the original's):\n  dirwatcher install --watch-root /data/incoming --signal-file _READY \\\n    \
--partition main --account dev --gres gpu:1 --time 00:10:00\n\
A second root:\n  dirwatcher install --instance tomo --watch-root /data/tomo --partition cpu \\\n    \
--metrics-listen 127.0.0.1:9188"
    )]
    Install(Box<InstallArgs>),
    /// Remove the service, its unit, binary and sample job; keep config, ledger and logs unless --purge.
    Uninstall(UninstallArgs),
    /// Internal: writes man pages, shell completions and the package's static files (for packaging).
    #[command(name = "__generate", hide = true)]
    Generate(GenerateArgs),
    /// Internal: runs one local-executor job (started by the daemon).
    #[command(name = "__local-job", hide = true)]
    LocalJob {
        /// The job's folder.
        dir: PathBuf,
    },
}

/// `dirwatcher install` flags: the original installer's, plus `--user`, `--state-file`, `--force`,
/// `--destdir` and `--dry-run`.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// Directory to watch (`watch.root`). Must exist (dirwatcher never creates it), except when staging
    /// with --destdir for another machine.
    #[arg(long, value_name = "DIR")]
    pub watch_root: PathBuf,
    /// Ready-file name (`watch.signal_filename`).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SIGNAL_FILE)]
    pub signal_file: String,
    /// Slurm partition (`job.partition`, sbatch --partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm account (`job.account`, sbatch --account). The service user must belong to it.
    #[arg(long)]
    pub account: Option<String>,
    /// Generic resources (`job.gres`, sbatch --gres), e.g. gpu:1.
    #[arg(long)]
    pub gres: Option<String>,
    /// Time limit (`job.time_limit`, sbatch --time), e.g. 00:10:00.
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Delete a directory after its job COMPLETED (`behavior.delete_on_success`).
    #[arg(long)]
    pub delete_on_success: bool,
    /// The job's command line (`job.wrap_cmd`); the directory is appended. Default: the sample job,
    /// `python3 <install-root>/process_dir.py`.
    #[arg(long, value_name = "CMD")]
    pub wrap_cmd: Option<String>,
    /// Where the binary and the sample job are installed.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_INSTALL_ROOT)]
    pub install_root: PathBuf,
    /// Install one of several services on this host, for another root with its own job: the template
    /// unit `dirwatcher@.service` (shared) and `dirwatcher@NAME`, with the config /etc/dirwatcher/NAME.yaml,
    /// the ledger in /var/lib/dirwatcher/NAME/, the failure log in /var/log/dirwatcher/NAME/, its own
    /// metrics (--metrics-listen, --metrics-textfile) and `behavior.instance: NAME` on its metrics and
    /// log lines. NAME: letters, digits, `_`, `.`, `-`. Without it: the one plain `dirwatcher.service`.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// The config file to write [default: /etc/dirwatcher/config.yaml; with --instance NAME it is
    /// /etc/dirwatcher/NAME.yaml, which the template unit reads, and cannot be changed].
    #[arg(long, value_name = "FILE", conflicts_with = "instance")]
    pub config_path: Option<PathBuf>,
    /// Where failed jobs are recorded (`behavior.failure_log`); its directory belongs to the service user
    /// [default: /var/log/dirwatcher/failed_jobs.log; with --instance NAME:
    /// /var/log/dirwatcher/NAME/failed_jobs.log].
    #[arg(long, value_name = "FILE")]
    pub failure_log: Option<PathBuf>,
    /// The ledger (`behavior.state_file`, SQLite); its directory belongs to the service user [default:
    /// /var/lib/dirwatcher/state.db; with --instance NAME: /var/lib/dirwatcher/NAME/state.db].
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// Serve Prometheus metrics here (`metrics.listen`), e.g. 127.0.0.1:9187; refused when another
    /// service installed here already uses it (give each instance its own port).
    #[arg(long, value_name = "ADDRESS")]
    pub metrics_listen: Option<String>,
    /// Write the metrics to this `.prom` file for node_exporter (`metrics.textfile`); refused when
    /// another service installed here already writes it.
    #[arg(long, value_name = "FILE")]
    pub metrics_textfile: Option<PathBuf>,
    /// The system user the service runs as, and so submits every job as (created with `useradd
    /// --system` when missing).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_USER)]
    pub user: String,
    /// Replace an existing config that differs from what these flags give (also to point the plain
    /// service at another root; a second root alongside is `--instance NAME`).
    #[arg(long)]
    pub force: bool,
    /// Stage every file under DIR instead of the system: no useradd, no chown to a missing user, no
    /// systemctl. For packagers and tests.
    #[arg(long, value_name = "DIR")]
    pub destdir: Option<PathBuf>,
    /// Print what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The original's e-mail flags, written into the config (`behavior.from_email`, `smtp_*`).
    #[command(flatten)]
    pub mail: MailArgs,
    /// The original's flags that do not apply to dirwatcher: accepted, with a warning.
    #[command(flatten)]
    pub legacy: LegacyInstallArgs,
}

/// The Python original's e-mail flags of `install_service.py`.
#[derive(Debug, Clone, Default, Args)]
pub struct MailArgs {
    /// Sender of the notification e-mails (`behavior.from_email`).
    #[arg(long, value_name = "ADDRESS")]
    pub from_email: Option<String>,
    /// SMTP server, used when sendmail is not installed (`behavior.smtp_host`).
    #[arg(long, value_name = "HOST")]
    pub smtp_host: Option<String>,
    /// SMTP port (`behavior.smtp_port`).
    #[arg(long, value_name = "PORT")]
    pub smtp_port: Option<u16>,
    /// SMTP user (`behavior.smtp_user`).
    #[arg(long, value_name = "NAME")]
    pub smtp_user: Option<String>,
    /// Accepted for the original's command lines, but never written into the (world-readable) config:
    /// put the password in a file only the service user reads and set `behavior.smtp_pass_file`.
    #[arg(long, value_name = "PASSWORD")]
    pub smtp_pass: Option<String>,
    /// TLS to the SMTP server (the default; `behavior.smtp_use_tls`).
    #[arg(long, overrides_with = "no_smtp_use_tls")]
    pub smtp_use_tls: bool,
    /// Plain SMTP (`behavior.smtp_use_tls: false`).
    #[arg(long)]
    pub no_smtp_use_tls: bool,
    /// The original installed and configured msmtp; dirwatcher sends mail itself (sendmail when present,
    /// else SMTP with the flags above): accepted, with a note.
    #[arg(long)]
    pub smtp_setup: bool,
}

/// The original's installer flags beyond e-mail: its interpreter (meaningless here) and its web-app database.
#[derive(Debug, Clone, Default, Args)]
pub struct LegacyInstallArgs {
    /// Ignored: dirwatcher is one binary, no Python interpreter runs it.
    #[arg(long, value_name = "PATH", hide = true)]
    pub python_bin: Option<String>,
    /// The original's web-app database (writes the `db:` section): its name [default: hm_app_db].
    #[arg(long, value_name = "NAME")]
    pub db_name: Option<String>,
    /// Its user [default: hmapp].
    #[arg(long, value_name = "NAME")]
    pub db_user: Option<String>,
    /// Its password: written into its own file beside the config (mode 0600), named by `db.pass_file`.
    #[arg(long, value_name = "PASSWORD")]
    pub db_pass: Option<String>,
    /// Its host [default: 127.0.0.1].
    #[arg(long, value_name = "HOST")]
    pub db_host: Option<String>,
    /// Its port [default: 3306].
    #[arg(long, value_name = "PORT")]
    pub db_port: Option<String>,
}

/// `dirwatcher uninstall` flags.
#[derive(Debug, Clone, Args)]
pub struct UninstallArgs {
    /// Where the binary and the sample job were installed (removed only when no other service
    /// installed here uses them).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_INSTALL_ROOT)]
    pub install_root: PathBuf,
    /// Remove the instance `dirwatcher@NAME` (its drop-in; its config /etc/dirwatcher/NAME.yaml, ledger
    /// and log with --purge) and leave the plain service and every other instance alone.
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// The config file (kept unless --purge; its state_file and failure_log are used when it loads)
    /// [default: /etc/dirwatcher/config.yaml; with --instance NAME: /etc/dirwatcher/NAME.yaml].
    #[arg(long, value_name = "FILE", conflicts_with = "instance")]
    pub config_path: Option<PathBuf>,
    /// The ledger, if the config does not say [default: /var/lib/dirwatcher/state.db; with --instance
    /// NAME: /var/lib/dirwatcher/NAME/state.db].
    #[arg(long, value_name = "FILE")]
    pub state_file: Option<PathBuf>,
    /// The failure log, if the config does not say [default: /var/log/dirwatcher/failed_jobs.log; with
    /// --instance NAME: /var/log/dirwatcher/NAME/failed_jobs.log].
    #[arg(long, value_name = "FILE")]
    pub failure_log: Option<PathBuf>,
    /// Also remove the config, the ledger and the failure log (and their directories when empty).
    #[arg(long)]
    pub purge: bool,
    /// Remove from a staging directory made by `install --destdir` instead of the system.
    #[arg(long, value_name = "DIR")]
    pub destdir: Option<PathBuf>,
    /// Print what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What to generate.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// The kind of files.
    #[command(subcommand)]
    pub what: Generate,
}

/// Kinds of generated files.
#[derive(Debug, Clone, Subcommand)]
pub enum Generate {
    /// Man pages: dirwatcher.1 and one per subcommand (dirwatcher-run.1, …).
    Man {
        /// Output directory (created).
        dir: PathBuf,
    },
    /// Shell completions for bash (dirwatcher.bash), zsh (_dirwatcher) and fish (dirwatcher.fish).
    Completions {
        /// Output directory (created).
        dir: PathBuf,
    },
    /// The package's dirwatcher.service, dirwatcher@.service and config.example.yaml (the checked-in copies
    /// in packaging/).
    PackageFiles {
        /// Output directory (created).
        dir: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys;

    /// `--instance NAME` reads that instance's config, as `install --instance NAME` wrote it; without a
    /// flag the plain service's; a name that could reach outside /etc/dirwatcher is refused.
    #[test]
    fn instance_names_the_config_of_that_service() {
        let config_of = |args: &[&str]| -> Result<PathBuf, String> {
            let cli =
                Cli::try_parse_from([&["dirwatcher"], args].concat()).map_err(|e| e.to_string())?;
            match cli.command {
                Command::Status { config, .. } | Command::Explain { config, .. } => {
                    Ok(config.path())
                }
                other => panic!("parsed as {other:?}"),
            }
        };
        assert_eq!(
            config_of(&["status", "--instance", "tomo"]),
            Ok("/etc/dirwatcher/tomo.yaml".into())
        );
        assert_eq!(
            config_of(&["explain", "--instance", "a.1", "d"]),
            Ok("/etc/dirwatcher/a.1.yaml".into())
        );
        assert_eq!(config_of(&["status"]), Ok(DEFAULT_CONFIG.into()));
        assert_eq!(config_of(&["status", "-c", "x.yaml"]), Ok("x.yaml".into()));
        for bad in ["../etc/passwd", "a/b", ".hidden", "config"] {
            let e = config_of(&["status", "--instance", bad]).unwrap_err();
            assert!(e.contains("instance name"), "{bad}: {e}");
        }
        let e = config_of(&["status", "--instance", "a", "-c", "x.yaml"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
    }

    /// The installer's flags that fill config keys default to the table's values, wherever the clap
    /// structs live.
    #[test]
    fn installer_flags_default_to_the_table() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let arg = |sub: &str, flag: &str| {
            cli.find_subcommand(sub)
                .and_then(|s| s.get_arguments().find(|a| a.get_id() == flag))
                .unwrap_or_else(|| panic!("`{sub} --{flag}` is gone"))
                .clone()
        };
        let signal = arg("install", "signal_file");
        let got: Vec<_> = signal.get_default_values().iter().collect();
        assert_eq!(
            got,
            [keys::WATCH_SIGNAL_FILENAME.default.yaml().unwrap().as_ref()]
        );
        // These default by --instance: the help names the table's default (the installer takes the
        // same constants, see `install::tests`).
        for (sub, flag, key) in [
            ("install", "state_file", &keys::BEHAVIOR_STATE_FILE),
            ("install", "failure_log", &keys::BEHAVIOR_FAILURE_LOG),
            ("uninstall", "state_file", &keys::BEHAVIOR_STATE_FILE),
            ("uninstall", "failure_log", &keys::BEHAVIOR_FAILURE_LOG),
        ] {
            let a = arg(sub, flag);
            let help = a.get_long_help().or(a.get_help()).unwrap().to_string();
            let default = key.default.yaml().unwrap();
            assert!(
                help.replace('\n', " ")
                    .contains(&format!("[default: {default};")),
                "`{sub} --{flag}` help: {help}"
            );
        }
    }
}
