//! The command line: every subcommand, flag and help text. Parsing only; `main.rs` dispatches.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Default config path, as the original installer writes it.
pub const DEFAULT_CONFIG: &str = "/etc/dirwatcher/config.yaml";

#[derive(Debug, Parser)]
#[command(
    name = "dirwatcher",
    version,
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

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with `dir` and `job` fields.
    Json,
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
        /// The YAML config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Run a single cycle (follow jobs, scan, submit) and exit; for cron-style use and debugging.
        #[arg(long)]
        once: bool,
        /// Run even as root. Without it, root is refused: jobs would be submitted as root. Run as a service
        /// user instead (`dirwatcher install` creates one).
        #[arg(long)]
        allow_root: bool,
    },
    /// Validate a config file and print the effective configuration (every default filled in).
    #[command(
        long_about = "Validate a config file and print the effective configuration, with every \
default filled in. Exit status 0 when valid, 2 with one message naming the key, its line and the fix when not.\n\n\
Keys (defaults in brackets):\n\
  watch.root                      directory to watch; must exist, never created\n\
  watch.signal_filename           [_READY] ready-file name\n\
  watch.poll_interval_sec         [5] seconds between scans (fractions allowed)\n\
  watch.stability_checks          [2] identical looks needed before submitting\n\
  watch.stability_interval_sec    [1] seconds between two looks\n\
  job.executor                    [slurm] `slurm` or `local`\n\
  job.wrap_cmd                    command line; the directory is appended as one quoted word\n\
  job.job_script                  script submitted instead, with the directory as its argument\n\
  job.partition / account / gres  sbatch --partition / --account / --gres\n\
  job.time_limit                  sbatch --time (also enforced by the local executor)\n\
  job.job_name_prefix             [dirwatch] job name is <prefix>-<directory name>\n\
  job.env                         [{}] extra environment for the job (WATCH_DIR is always set)\n\
  job.extra_args                  [[]] extra sbatch arguments, passed verbatim\n\
  job.chdir_to_subdir             [true] run the job inside the directory (sbatch --chdir)\n\
  job.output                      job stdout/stderr, relative to the root (%j = job id, %x = job name);\n\
                                  default: Slurm's slurm-%j.out in the directory, or\n\
                                  .dirwatcher/logs/%x-%j.out in the root with delete_on_success\n\
  job.command_timeout_sec         [60] bound for each sbatch/sacct/squeue call\n\
  job.lost_after_sec              [3600] a job no source (sacct, squeue) shows for longer is `lost`\n\
  job.max_local_jobs              [CPU count] local executor: jobs running at once\n\
  behavior.delete_on_success      [false] delete the directory after COMPLETED\n\
  behavior.state_file             [/var/lib/dirwatcher/state.json] the ledger (SQLite); keep it on local disk\n\
  behavior.failure_log            [/var/log/dirwatcher/failed_jobs.log] one JSON line per failed job\n\
  behavior.max_retries            [0] automatic resubmissions of a failed directory\n\
  behavior.submit_backoff_sec     [5] first delay after a failed submission (doubles)\n\
  behavior.submit_backoff_max_sec [300] cap of that delay\n\
  metrics.listen                  [off] serve Prometheus metrics at http://ADDRESS/metrics, e.g.\n\
                                  127.0.0.1:9187 (port 0: any free port, logged); another address\n\
                                  of this host is allowed with a warning, 0.0.0.0 is refused\n\
  metrics.textfile                [off] rewrite this .prom file every cycle, for node_exporter's\n\
                                  textfile collector (written atomically)\n\
  Metrics: *_total counters count since the daemon started (rate() copes with restarts);\n\
  dirwatcher_directories_finished{state} holds the durable counts from the ledger."
    )]
    CheckConfig {
        /// The YAML config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show counts by state, jobs in flight with their ages, and recent failures (works while the daemon runs).
    Status {
        /// The YAML config file (its `behavior.state_file` is read).
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// How many recent failures to list.
        #[arg(long, default_value_t = 10)]
        failures: u32,
    },
    /// Queue failed directories for another job (works while the daemon runs; it picks them up next cycle).
    Retry {
        /// The YAML config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Directory names or paths under the root.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Remove directories from the ledger. If a ready-file is still there, the directory counts as new and
    /// is submitted again. Refused for a job in flight.
    Forget {
        /// The YAML config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Directory names or paths under the root.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
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
prints what to run). A second run with the same flags changes nothing and says so.\n\n\
--destdir DIR stages every file under DIR without touching the system; --dry-run only prints the plan.",
        after_help = "Example (the original's):\n  dirwatcher install --watch-root /data/incoming --signal-file _READY \\\n    \
--partition main --account dev --gres gpu:1 --time 00:10:00"
    )]
    Install(crate::install::InstallArgs),
    /// Remove the service, its unit, binary and sample job; keep config, ledger and logs unless --purge.
    Uninstall(crate::install::UninstallArgs),
    /// Internal: writes man pages, shell completions and the package's static files (for packaging).
    #[command(name = "__generate", hide = true)]
    Generate(crate::install::generate::GenerateArgs),
    /// Internal: runs one local-executor job (started by the daemon).
    #[command(name = "__local-job", hide = true)]
    LocalJob {
        /// The job's folder.
        dir: PathBuf,
    },
}
