//! Integration tests: the real `dirwatcher` binary against a real single-node Slurm cluster (started by
//! `scripts/slurm-dev-cluster.sh up`) and against the local executor. Slurm tests fail, not skip, when
//! `CI=true` or `DIRWATCHER_REQUIRE_SLURM=1` and the cluster is missing.

mod arrays;
mod bridge;
mod cli;
mod clock;
mod fs_edge;
mod guide;
mod harness;
mod hostile;
mod install;
mod instruments;
mod layering;
mod ledger_guard;
mod ledger_server;
mod local;
mod mariadb;
mod notify;
mod observe;
mod ops;
mod pkg;
mod readiness;
mod safety;
mod slurm_config;
mod slurm_pipeline;
mod slurmrest;
mod terminal;
mod verdicts;
