#!/usr/bin/env python3
"""benches/arrays.py — issue 23's rows (bursts as job arrays), printed for docs/benchmarks-scale.md (pasted by
hand: benches/scale.sh rewrites that file).

  N directories ready at once with `job.array_max: M` and `extra_args: ["--hold"]`: from the daemon's start
  to every directory's job id recorded (the stability window included), and the `sbatch` calls it took
  (counted by a wrapper on PATH); then, with the N tasks held in flight and nothing changing, the daemon's
  CPU per query round (utime+stime from /proc, the mean over the rounds), its RSS then (the rounds start
  once the daemon's once-a-minute return of freed memory has run after the burst) and its peak
  (VmHWM: the submission included), and the
  squeue/sacct calls per round. The arrays are cancelled at the end.

Usage: DW_ARRAY_N=20000 DW_ARRAY_MAX=1000 benches/arrays.py   (needs the release binary and the test cluster)
"""
import os, shutil, sqlite3, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale import BIN, all_submitted, config, cpu_of, hwm_kib, make_dirs, ms, stop, vm_kib, wait_for  # noqa: E402


def wrappers(base):
    """`sbatch`, `squeue` and `sacct` wrappers that log each call (time, name) and run the real one."""
    wrap, log = os.path.join(base, "wrap"), os.path.join(base, "calls.log")
    os.makedirs(wrap)
    for tool in ("sbatch", "sacct", "squeue"):
        real = shutil.which(tool)
        with open(os.path.join(wrap, tool), "w") as f:
            f.write(f"#!/bin/sh\necho \"$(date +%s.%N) {tool}\" >> {log}\nexec {real} \"$@\"\n")
        os.chmod(os.path.join(wrap, tool), 0o755)
    return wrap, log


def calls_between(log, t0, t1):
    out = {"sbatch": 0, "sacct": 0, "squeue": 0}
    with open(log) as f:
        for line in f:
            t, tool = line.split()
            if t0 <= float(t) < t1:
                out[tool] += 1
    return out


def main():
    n = int(os.environ.get("DW_ARRAY_N", "20000"))
    max_ = int(os.environ.get("DW_ARRAY_MAX", "1000"))
    cycles = int(os.environ.get("DW_ARRAY_ROUNDS", "6"))
    work = tempfile.mkdtemp(prefix="dw-bench-arrays-", dir="/tmp")
    root, state = os.path.join(work, "root"), os.path.join(work, "state.db")
    make_dirs(root, n, "a")
    cfg = config(work, root, state, poll=5,
                 extra_job=f"  extra_args: [\"--hold\"]\n  array_max: {max_}\n")
    wrap, log = wrappers(work)
    env = dict(os.environ, PATH=wrap + ":" + os.environ["PATH"])
    dlog = os.path.join(work, "d.log")
    t_start = time.time()
    p = subprocess.Popen([BIN, "-v", "run", "--allow-root", "--config", cfg], stdout=subprocess.DEVNULL,
                         stderr=open(dlog, "w"), env=env)
    rounds = lambda: sum(1 for line in open(dlog, errors="replace") if "scheduler call query" in line)
    arrays = []
    try:
        wait_for(lambda: all_submitted(state, n), 3600, f"{n} submissions")
        submit_s = time.time() - t_start
        t_sub = time.time()
        sbatch = calls_between(log, t_start, t_sub)["sbatch"]
        c = sqlite3.connect(state)
        arrays = sorted({j.split("_")[0] for (j,) in c.execute("select job_id from generations")})
        first_intent = c.execute("select min(created_at) from generations").fetchone()[0] / 1000.0
        last_id = c.execute("select max(submitted_at) from generations").fetchone()[0] / 1000.0
        c.close()
        # The first full query after the last submission, and the daemon's once-a-minute return of freed
        # memory to the system at least once after the burst (its first runs at the daemon's start): the
        # held state is what follows.
        time.sleep(max(12.0, 66.0 - (time.time() - t_start)))
        per, c_prev, rss_seen = [], cpu_of(p.pid), []
        c0, t0, r0 = c_prev, time.time(), rounds()
        for _ in range(cycles):
            time.sleep(5.0)
            c_now = cpu_of(p.pid)
            per.append(ms(c_now - c_prev))
            rss_seen.append(vm_kib(p.pid, "VmRSS"))
            c_prev = c_now
        t1 = time.time()
        calls = calls_between(log, t0, t1)
        ncyc = max(1, rounds() - r0)
        rss, now_rss = hwm_kib(p.pid), vm_kib(p.pid, "VmRSS")
    finally:
        stop(p)
        for i in range(0, len(arrays), 200):
            subprocess.run(["scancel"] + arrays[i:i + 200], check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(f"| {n:,} directories ready at once, `array_max: {max_}` → all submitted (held) | "
          f"{submit_s:.1f} s from the daemon's start ({last_id - first_intent:.1f} s from the first intent to the "
          f"last job id); {sbatch} `sbatch` calls, {len(arrays)} arrays | 64 s and 20,000 calls one job per "
          f"directory | — | ≤ 10 s, ≤ 25 calls |")
    print(f"| {n:,} array tasks held in flight, nothing changing: daemon CPU per query round (poll 5 s) | "
          f"{ms(c_prev - c0) / ncyc:.1f} ms (mean of {ncyc} rounds; per 5 s {min(per):.0f}–{max(per):.0f}); RSS "
          f"{now_rss / 1024:.0f} MiB ({min(rss_seen) / 1024:.0f}–{max(rss_seen) / 1024:.0f} over the rounds), peak {rss / 1024:.0f} MiB (submission included); {calls['squeue'] / ncyc:.1f} squeue, {calls['sacct'] / ncyc:.1f} sacct per round | "
          f"— | — | ≤ 50 ms, ≤ 128 MiB |")


if __name__ == "__main__":
    main()
