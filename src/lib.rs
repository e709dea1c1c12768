//! dirwatcher: run one Slurm job for every directory that is marked ready under a watched root.
//!
//! Map of the modules (see `docs/architecture.md` for the picture):
//! - [`cli`]: the command line (clap).
//! - [`config`]: YAML → validated [`config::Config`]; errors name file, line, key and fix.
//! - [`scan`]: lists the root and looks at ready-files (stat + shared `flock` probe). Read-only.
//! - [`engine`]: the pure decision core: stability, job states, outcomes, back-off, outages.
//! - [`ledger`]: the SQLite ledger; every transition is committed before the effect that depends on it.
//! - [`scheduler`]: the job back ends, [`scheduler::slurm`] (sbatch/sacct/squeue) and [`scheduler::local`].
//! - [`process`]: the one home of child processes (argv, timeout, process group).
//! - [`fsx`]: the file-system edge: the one atomic file replace (`write_atomic`).
//! - [`outcome`]: failure-log lines and the guarded deletion of finished directories.
//! - [`daemon`]: the loop that owns the state and ties the rest together.
//! - [`install`]: `install`/`uninstall` (files, service user, hardened systemd unit), the root refusal of
//!   `run`, and generated man pages, completions and package files.
//! - [`logging`]: where log lines go (journald under systemd, text or JSON on stderr).
//! - [`metrics`]: Prometheus metrics, served on `metrics.listen` and/or written to `metrics.textfile`.
//! - [`notify`]: systemd notifications (`READY=1`, `STATUS=`, watchdog, `STOPPING=1`).
//! - [`ops`]: operator commands on the ledger (`status`, `retry`, `forget`) and the `demo`.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod fsx;
pub mod install;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod outcome;
pub mod process;
pub mod scan;
pub mod scheduler;
pub mod time;
