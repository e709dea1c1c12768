#!/usr/bin/env bash
# benches/site-rest.sh — the CLI-vs-REST rows of docs/benchmarks-scale.md, measured in a site container
# (default sid: Slurm 26.05 with slurmrestd and JWT, `scripts/site-cluster.sh --suite sid up` first):
# benches/scale.py's `track` (N jobs kept pending, nothing changing: daemon CPU per query round) and
# `burst` (2,000 directories ready at once: first intent → last submission answered), once through
# sbatch/squeue/sacct and once through slurmrestd. The jobs pend in a partition that is DOWN (created
# here, as `executor: slurmrest` takes no `--hold`). Prints scale.py's report for each; copy the rows into
# the doc by hand (scale.sh --out would overwrite it).
# Usage: benches/site-rest.sh [ROWS]     ROWS: scale.py rows, default track,burst; DW_TRACK_NS: the track
#        row's sizes (default 20000); DW_BENCH_EXECUTORS (default "slurm slurmrest")
set -euo pipefail
cd "$(dirname "$0")/.."
export DIRWATCHER_SITE_SUITE=${DIRWATCHER_SITE_SUITE:-sid}
cargo build --release --quiet --locked
site() { bash scripts/site-cluster.sh run -- "$@"; }
here=$(pwd -P)
site mkdir -p "$here/target/release" "$here/benches"
tar -C / -cf - "${here#/}/target/release/dirwatcher" "${here#/}/benches/scale.py" | site tar -C / -xf -
site sh -c 'umask 077; scontrol token username=root lifespan=14400 > /root/dwbench.jwt'
# Each row starts on a controller without earlier jobs: cancelled ones stay for MinJobAge (300 s in the
# container), and both `squeue -t all --me` and slurmrestd's `GET jobs` would read them too. For the bench
# MinJobAge is 10 s (slurm.conf edited inside and reconfigured; put back at the end).
site sed -i 's/^MinJobAge=.*/MinJobAge=10/' /etc/slurm/slurm.conf
site scontrol reconfigure
# (A reconfigure drops a partition made by `scontrol create`: made after it, and gone with the last one.)
site scontrol create PartitionName=dwbench Nodes=ALL State=DOWN MaxTime=INFINITE
trap 'site sed -i "s/^MinJobAge=.*/MinJobAge=300/" /etc/slurm/slurm.conf; site scontrol reconfigure' EXIT
clean() {
  local t=0
  while [ "$(site squeue -h -t all | wc -l)" -gt 50 ]; do
    [ $t -lt 900 ] || { echo "the controller still holds earlier jobs after 900 s" >&2; exit 1; }
    sleep 5; t=$((t + 5))
  done
}
for executor in ${DW_BENCH_EXECUTORS:-slurm slurmrest}; do
  for row in $(echo "${1:-track,burst}" | tr , ' '); do
    for n in ${DW_TRACK_NS:-20000}; do
      clean
      echo "== executor: $executor, row: $row, n $n ($(date -u +%T))" >&2
      site env DW_BENCH_PARTITION=dwbench DW_BENCH_EXECUTOR=$executor DW_BENCH_TOKEN_FILE=/root/dwbench.jwt \
        DW_TRACK_N="$n" DW_BENCH_DIR=/var/tmp python3 "$here/benches/scale.py" --only "$row"
      [ "$row" = track ] || break
    done
  done
done
