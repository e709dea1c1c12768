#!/usr/bin/env bash
# benches/scale.sh — issue 10's scale rows, each side by side with its floor (see benches/scale.py), written to
# docs/benchmarks-scale.md. Needs the test cluster for the burst and new-directory rows
# (scripts/slurm-dev-cluster.sh up). Usage:
#   benches/scale.sh                 every row (~15 min: 100k directories, a 1M-row ledger, a 2,000 burst)
#   benches/scale.sh --only idle,ledger   (rows: idle, newdir, burst, local, rate, ledger, track; DW_TRACK_N=2000 for a
#                                    smaller track row; DW_IDLE_SIZES=100000 for one idle size)
#   benches/scale.sh --quick --check benches/ratios.json   the CI version (~1.5 min): fails only when a
#                                    ratio is more than 2x worse than the recorded one, never on absolute times
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
args=("$@")
case " ${args[*]-} " in
  *" --quick "*) ;;
  *) args+=(--out docs/benchmarks-scale.md) ;;
esac
exec python3 benches/scale.py "${args[@]}"
