//! dirwatcher: run one Slurm job for every directory that is marked ready under a watched root.
//!
//! Map of the modules (see `docs/architecture.md` for the picture). Dependencies point one way, from the
//! loop down to the pure core (a test, `tests/it/layering.rs`, checks it):
//! - [`app`]: one function per subcommand, the daemon's start (signal thread, demo) and the one
//!   exit-code policy ([`app::ExitKind`]); `main` only parses, sets up logging and exits.
//! - [`cli`]: the command line (clap); imports nothing but the table of config keys.
//! - [`config`]: YAML → validated [`config::Config`]; [`config::keys`] is the one table of keys, defaults
//!   and help; errors name file, line, key and fix.
//! - [`time`]: milliseconds, and the [`time::Clock`] (wall for records, monotonic for schedules).
//! - [`engine`]: the pure decision core: the generation model, stability, what a scheduler answer means,
//!   outages and back-off, a cycle's agenda and the loop's schedule. No clock, no I/O.
//! - [`scan`]: lists the root and looks at ready-files (stat + shared `flock` probe). Read-only.
//! - [`ledger`]: the SQLite ledger; every transition is committed before the effect that depends on it.
//! - [`scheduler`]: the job back ends, [`scheduler::slurm`] (sbatch/sacct/squeue) and [`scheduler::local`].
//! - [`process`]: the one home of child processes (argv, timeout, process group).
//! - [`fsx`]: the file-system edge: the one atomic file replace (`write_atomic`).
//! - [`deliver`]: notices out: e-mail (`sendmail -t` or SMTP), webhooks, the event hook; the safe read
//!   of a directory's `.dirwatch_meta.json`.
//! - [`outcome`]: failure-log lines and the guarded deletion of finished directories.
//! - [`output_dir`]: the job output folder: created by the daemon, checked (no symlink, owner, mode)
//!   before jobs are submitted, and what `check-config` warns about output places.
//! - [`daemon`]: the loop: one owner of state, built from its parts (config, scheduler, clock); its steps
//!   observe, ask the engine, commit, act.
//! - [`install`]: `install`/`uninstall` (files, service user, hardened systemd unit), the root refusal of
//!   `run`, and generated man pages, completions and package files.
//! - [`logging`]: where log lines go (journald under systemd, text or JSON on stderr), and how paths and
//!   errors are rendered in them.
//! - [`observe`]: what the loop tells those who watch it from the side (the [`observe::Observer`] trait):
//!   metrics, systemd, the snapshot.
//! - [`metrics`]: Prometheus metrics, served on `metrics.listen` and/or written to `metrics.textfile`.
//! - [`notify`]: systemd notifications (`READY=1`, `STATUS=`, watchdog, `STOPPING=1`).
//! - [`out`]: command output that never panics (a reader that went away ends it quietly).
//! - [`snapshot`]: what only the running daemon knows (its pid, last poll, settling and locked
//!   directories, the Slurm state of jobs in flight), published beside the ledger for `status` and
//!   `explain`; whether a daemon runs, from its lock.
//! - [`state_paths`]: the names beside the state file (lock, snapshot, SQLite's files, local jobs), made
//!   in one place.
//! - [`ops`]: operator commands (`status`, `explain`, `retry`, `cancel`, `forget`, `run --dry-run`) and the
//!   `demo`.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![warn(clippy::dbg_macro, clippy::todo, clippy::unimplemented)]

pub mod app;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod engine;
pub mod fsx;
pub mod install;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod notices;
pub mod notify;
pub mod observe;
pub mod ops;
pub mod out;
pub mod outcome;
pub mod output_dir;
pub mod process;
pub mod recover;
pub mod scan;
pub mod scheduler;
pub mod snapshot;
pub mod state_paths;
pub mod time;
