#!/usr/bin/env bash
# benches/pipeline.sh — end-to-end latency and cost of dirwatcher against the real Slurm test cluster, in
# the scenarios where the Python original was measured slow (see docs/benchmarks.md for the report).
#
#   A. 30 directories become ready at once: time from daemon start to the last submission.
#   B. A new directory beside N already processed ones: time from its ready-file to its submission.
#   C. One full cycle (scan + tracking) with 10,000 processed directories: wall time and peak RSS.
#
# Uses the seed's default timing (poll 5 s, 2 stability checks 1 s apart). Needs the cluster:
# scripts/slurm-dev-cluster.sh up. Usage: benches/pipeline.sh [N_PROCESSED_FOR_B (default 1000)]
set -euo pipefail
cd "$(dirname "$0")/.."
N_B=${1:-1000}
cargo build --release --quiet
BIN=$PWD/target/release/dirwatcher
WORK=$(mktemp -d /tmp/dw-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

config() { # root state wrap
  cat >"$WORK/c.yaml" <<EOC
watch:
  root: $1
  poll_interval_sec: 5
  stability_checks: 2
  stability_interval_sec: 1
job:
  wrap_cmd: ${3:-true}
  partition: main
  account: dev
  job_name_prefix: bench
behavior:
  state_file: $2
  failure_log: $WORK/failed.log
EOC
}
now_ms() { date +%s%3N; }
sql() { python3 - "$1" "$2" <<'EOP'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute(sys.argv[2]).fetchone()[0])
EOP
}
wait_sql() { # db query expected timeout_s
  local end=$(( $(date +%s) + $4 ))
  until [ -f "$1" ] && [ "$(sql "$1" "$2" 2>/dev/null || echo x)" = "$3" ]; do
    [ "$(date +%s)" -lt "$end" ] || { echo "timeout waiting for: $2 = $3" >&2; exit 1; }
    sleep 0.05
  done
}

echo "== A: 30 directories ready at once"
mkdir -p "$WORK/a/root"; for i in $(seq -w 1 30); do mkdir "$WORK/a/root/d$i"; touch "$WORK/a/root/d$i/_READY"; done
config "$WORK/a/root" "$WORK/a/state.db"
t0=$(now_ms); "$BIN" run --allow-root --config "$WORK/c.yaml" 2>"$WORK/a.log" & pid=$!
wait_sql "$WORK/a/state.db" "select count(*) from generations where job_id is not null" 30 120
last=$(sql "$WORK/a/state.db" "select max(submitted_at) from generations")
kill -TERM $pid; wait $pid || true
echo "A: all 30 submitted $(( last - t0 )) ms after start (Python original: 86 s)"

echo "== B: a new directory beside $N_B processed ones"
mkdir -p "$WORK/b/root"; for i in $(seq 1 "$N_B"); do mkdir "$WORK/b/root/p$i"; touch "$WORK/b/root/p$i/_READY"; done
config "$WORK/b/root" "$WORK/b/state.db" true
# Mark them processed the way the daemon would: run it until every one is recorded as submitted.
"$BIN" run --allow-root --config "$WORK/c.yaml" 2>"$WORK/b-prep.log" & pid=$!
wait_sql "$WORK/b/state.db" "select count(*) from generations where job_id is not null" "$N_B" 900
wait_sql "$WORK/b/state.db" "select count(*) from generations where finished_at is null" 0 900
sleep 6   # let one more full poll pass, so the new directory arrives mid-interval as in real life
mkdir "$WORK/b/root/new"; t1=$(now_ms); touch "$WORK/b/root/new/_READY"
wait_sql "$WORK/b/state.db" "select count(*) from generations where job_id is not null and dir = cast('new' as blob)" 1 60
sub=$(sql "$WORK/b/state.db" "select submitted_at from generations where dir = cast('new' as blob)")
kill -TERM $pid; wait $pid || true
echo "B: new directory submitted $(( sub - t1 )) ms after its ready-file appeared (poll 5 s + 1 s stability; Python original: 113 s beside 30)"

echo "== C: one cycle over 10,000 processed directories"
mkdir -p "$WORK/c/root"
python3 - "$WORK/c/root" "$WORK/c/state.db" <<'EOP'
import os, sqlite3, sys, time
root, db = sys.argv[1], sys.argv[2]
for i in range(10000):
    d = os.path.join(root, f"x{i:05}"); os.mkdir(d); open(os.path.join(d, "_READY"), "w").close()
EOP
config "$WORK/c/root" "$WORK/c/state.db" true
# Seed the ledger with 10,000 completed generations through the daemon's own schema.
"$BIN" run --allow-root --once --config "$WORK/c.yaml" 2>/dev/null || true
python3 - "$WORK/c/root" "$WORK/c/state.db" <<'EOP'
import os, sqlite3, sys
root, db = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db)
inst = c.execute("select value from meta where key='instance'").fetchone()[0]
rows = []
for i, name in enumerate(sorted(os.listdir(root))):
    st = os.stat(os.path.join(root, name, "_READY"))
    rows.append((name.encode(), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, f"dw-{inst}-b{i}", f"bench-{name}"))
c.executemany("""insert into generations (dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, state, submit_key,
  job_id, job_name, created_at, submitted_at, finished_at, final_state, exit_code, updated_at)
  values (?, ?, ?, ?, ?, 'completed', ?, '1', ?, 0, 0, 0, 'COMPLETED', '0:0', 0)""", rows)
c.commit()
EOP
/usr/bin/time -f "C: one cycle over 10,000 processed directories: %e s wall, %M KiB peak RSS" \
  "$BIN" run --allow-root --once --config "$WORK/c.yaml" 2>&1 | grep -E "^C:" || true
