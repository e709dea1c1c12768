#!/usr/bin/env bash
# scripts/test.sh — the whole test suite, on a fresh Debian/Ubuntu machine with Rust installed.
#
# Installs and starts what the tests need, then runs them:
#   1. the single-node Slurm test cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd) from Debian's
#      packages, via scripts/slurm-dev-cluster.sh up (idempotent; needs root, or sudo), libfaketime
#      (Debian's `faketime`) for the clock-step test, and aiosmtpd (PyPI, in target/test-venv) for the
#      SMTP server with STARTTLS and AUTH the notice tests start;
#   2. Rust dependencies (cargo fetches them);
#   3. formatting and lint checks, then every unit, property and integration test;
#   4. the .deb (cargo-deb is installed from crates.io if missing), installed and tried when run as root,
#      and the .rpm beside it (rpmbuild and rpmlint from Debian's rpm and rpmlint packages): linted, and as
#      root its files compared with the .deb's and its scriptlets run in a scratch root (rpm --root);
#   5. the site lines, one container at a time (up, tests, down: memory and CPU stay low), with
#      scripts/site-cluster.sh: trixie (Debian 13, systemd 257, Slurm 24.11) and sid (systemd 262,
#      Slurm 26.05). On trixie (see DIRWATCHER_SITE_CHECKS_ON): the service checks of tests/site with that
#      .deb (systemd as PID 1); on each: the integration suite (tests/it) against the container's Slurm. A container's first `up` builds
#      its root file system (about 1-2 min, then cached); later ones take 15 s. Its root file system
#      stays for the next run.
# So tests/it runs on three Slurm lines: 22.05 (host), 24.11 (trixie) and 26.05 (sid). Every part runs
# even when an earlier one fails, and the report at the end names each line's result.
# DIRWATCHER_SITE_SUITES (default "trixie sid") picks the containers; DIRWATCHER_SITE_CHECKS_ON (default:
# trixie) the ones that also run the service checks: with both, the whole run passes the 35 minutes CI
# allows on a fresh machine (sid's first root file system alone takes about 4 min to build). Run
# `DIRWATCHER_SITE_CHECKS_ON="trixie sid" scripts/test.sh` for the service checks under systemd 262 too.
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

say "test tools"
# libfaketime: the clock-step test fakes the daemon's wall clock with it.
if ! dpkg -s faketime >/dev/null 2>&1; then
  { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q faketime ||
    { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q faketime; }; } >/dev/null
fi

# aiosmtpd (from PyPI, in a venv of its own): the tests' SMTP server with STARTTLS and AUTH.
venv=target/test-venv
if ! "$venv/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
  command -v python3 >/dev/null || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 >/dev/null
  rm -rf "$venv"
  python3 -m venv "$venv" 2>/dev/null || {
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install -q --disable-pip-version-check aiosmtpd
fi
export DIRWATCHER_TEST_PYTHON="$PWD/$venv/bin/python"

say "format and lint"
cargo fmt --check
cargo clippy --all-targets --test site --locked -- -D warnings

say "tests (unit, property, integration against the real cluster: Slurm $(sinfo -V 2>/dev/null | awk '{print $2}'))"
export DIRWATCHER_REQUIRE_SLURM=1
# Every part below runs even when one fails; each adds a line to the report printed at the end.
report=()
failed=0
result() { # what rc seconds
  local r=passed; [ "$2" = 0 ] || { r=FAILED; failed=1; }
  report+=("$(printf '%-48s %s (%s s)' "$1" "$r" "$3")")
}
# Most integration tests wait on Slurm, not on the CPU: run many at once so the ~90 s TIMEOUT test
# overlaps the others.
t=$(date +%s); rc=0
cargo test --all-targets --locked -- --test-threads "${DIRWATCHER_TEST_THREADS:-16}" || rc=$?
result "unit, property, tests/it on Slurm 22.05 (host)" "$rc" "$(( $(date +%s) - t ))"

say "scale benchmark, short version (fails only on a ratio more than 2x worse than recorded)"
t=$(date +%s); rc=0
bash benches/scale.sh --quick --check benches/ratios.json || rc=$?
result "scale benchmark (ratios)" "$rc" "$(( $(date +%s) - t ))"

say "Debian package (built, and as root also installed, run and removed)"
t=$(date +%s); rc=0
bash scripts/build-deb.sh $([ "$(id -u)" = 0 ] && echo --check) || rc=$?
result ".deb (built, installed, run, removed)" "$rc" "$(( $(date +%s) - t ))"

[ "$(id -u)" = 0 ] || { echo "error: the site tests boot a container: run as root (sudo ./scripts/test.sh)" >&2; exit 1; }
# The previous release's package, for the upgrade check of the site tests: built while the first
# container boots (that mostly waits), taken before its checks.
say "the previous release's Debian package (in the background; log: target/build-prev-deb.log)"
prev_start=$(date +%s)
bash scripts/build-prev-deb.sh >target/build-prev-deb.log 2>&1 &
prev_pid=$!
prev_taken=0
take_prev() {
  [ "$prev_taken" = 0 ] || return 0
  prev_taken=1
  local rc=0
  wait "$prev_pid" || rc=$?
  tail -n 1 target/build-prev-deb.log
  [ "$rc" = 0 ] || tail -n 30 target/build-prev-deb.log
  result ".deb of the previous release (packaging/previous-release)" "$rc" "$(( $(date +%s) - prev_start ))"
}
it_bin=$(cargo test --test it --no-run --locked --message-format=json \
    | grep '"name":"it"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$it_bin" ] || { echo "error: cannot find the integration test binary" >&2; exit 1; }
faults_bin=$(cargo test --test faults --no-run --locked --message-format=json \
    | grep '"name":"faults"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -x "$faults_bin" ] || { echo "error: cannot find the fault test binary" >&2; exit 1; }
rm -f target/site-report.txt
site_start=$(date +%s)
# One container at a time: up, its tests, down.
for suite in ${DIRWATCHER_SITE_SUITES:-trixie sid}; do
  case $suite in
    trixie) line="Slurm 24.11, systemd 257";;
    sid) line="Slurm 26.05, systemd 262";;
    *) line="$suite";;
  esac
  say "site $suite: the .deb under systemd as PID 1, tests/it on the container's Slurm ($line)"
  export DIRWATCHER_SITE_SUITE=$suite
  t=$(date +%s); rc=0
  # A fresh root file system (unpacked from the cached tarball): no jobs in the container's accounting, no
  # files, from an earlier run; the suite sees what a new machine would.
  bash scripts/site-cluster.sh up --fresh || rc=$?
  trap 'bash scripts/site-cluster.sh down' EXIT
  if [ "$rc" != 0 ]; then
    result "site-cluster.sh up ($suite)" "$rc" "$(( $(date +%s) - t ))"
  else
    case " ${DIRWATCHER_SITE_CHECKS_ON:-trixie} " in
      *" $suite "*)
        take_prev
        t=$(date +%s); rc=0
        echo "[$suite]" >>target/site-report.txt
        # One check at a time: one container, one service.
        cargo test --test site --locked -- --test-threads 1 || rc=$?
        result "tests/site on $suite ($line)" "$rc" "$(( $(date +%s) - t ))";;
    esac
    t=$(date +%s); rc=0
    bash scripts/site-cluster.sh run-tests "$it_bin" --test-threads 8 || rc=$?
    result "tests/it on $suite ($line)" "$rc" "$(( $(date +%s) - t ))"
    # The fault tests that reset the controller, through slurmrestd: alone in the container, after
    # tests/it (on sid, where they were run; DIRWATCHER_SITE_FAULTS_ON="trixie sid" for both).
    case " ${DIRWATCHER_SITE_FAULTS_ON:-sid} " in
      *" $suite "*)
        t=$(date +%s); rc=0
        bash scripts/site-cluster.sh run-tests "$faults_bin" over_slurmrestd --test-threads 1 || rc=$?
        result "tests/faults over slurmrestd on $suite ($line)" "$rc" "$(( $(date +%s) - t ))";;
    esac
  fi
  t=$(date +%s); rc=0
  bash scripts/site-cluster.sh down || { rc=$?; result "site-cluster.sh down ($suite)" "$rc" "$(( $(date +%s) - t ))"; }
  trap - EXIT
done
unset DIRWATCHER_SITE_SUITE
take_prev
cat target/site-report.txt 2>/dev/null || true
echo "site lines took $(( $(date +%s) - site_start )) s"

# After the site lines: its scratch root comes from their cached Debian 13 root file system.
say "RPM (built and linted; as root also compared with the .deb and its scriptlets run in a scratch root)"
t=$(date +%s); rc=0
bash scripts/build-rpm.sh $([ "$(id -u)" = 0 ] && echo --check) || rc=$?
result ".rpm (built, linted, files and scriptlets checked)" "$rc" "$(( $(date +%s) - t ))"

say "results"
printf '  %s\n' "${report[@]}"
[ "$failed" = 0 ] || { echo "error: some tests failed (see the parts marked FAILED above)" >&2; exit 1; }

say "all tests passed"
