#!/usr/bin/env bash
# scripts/test.sh — the whole test suite, on a fresh Debian/Ubuntu machine with Rust installed.
#
# Installs and starts what the tests need, then runs them:
#   1. the single-node Slurm test cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd) from Debian's
#      packages, via scripts/slurm-dev-cluster.sh up (idempotent; needs root, or sudo);
#   2. Rust dependencies (cargo fetches them);
#   3. formatting and lint checks, then every unit, property and integration test;
#   4. the .deb (cargo-deb is installed from crates.io if missing), installed and tried when run as root.
# Slurm tests FAIL (not skip) here: DIRWATCHER_REQUIRE_SLURM=1.
# Stop the cluster afterwards with: scripts/slurm-dev-cluster.sh down
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

command -v cargo >/dev/null || { echo "error: cargo not found; install Rust first (https://rustup.rs)" >&2; exit 1; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

say "Slurm test cluster"
$SUDO bash scripts/slurm-dev-cluster.sh up

say "format and lint"
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

say "tests (unit, property, integration against the real cluster)"
export DIRWATCHER_REQUIRE_SLURM=1
# Most integration tests wait on Slurm, not on the CPU: run many at once so the ~90 s TIMEOUT test
# overlaps the others.
cargo test --all-targets --locked -- --test-threads "${DIRWATCHER_TEST_THREADS:-16}"

say "scale benchmark, short version (fails only on a ratio more than 2x worse than recorded)"
bash benches/scale.sh --quick --check benches/ratios.json

say "Debian package (built, and as root also installed, run and removed)"
bash scripts/build-deb.sh $([ "$(id -u)" = 0 ] && echo --check)

say "all tests passed"
