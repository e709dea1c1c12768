#!/usr/bin/env python3
"""benches/scale.py — issue 10's scale rows, each side by side with its floor, A/B alternated.

  idle    one idle cycle (daemon CPU per cycle, poll 1 s) beside N processed directories vs `ls -f` and
          `find -name _READY` of the same root; idle CPU at poll 5 s
  newdir  a new directory beside N processed ones: ready-file -> sbatch answered (real Slurm), p50/p95
  burst   N directories ready at once -> last sbatch answered, vs a bare sequential `sbatch` loop (jobs held,
          then cancelled); fsyncs per directory (perf stat tracepoints)
  local   200 directories through the local executor, ready -> completed: fsyncs per directory
  rate    300 directories ready at once with `job.submit_rate: {burst: 30, per_sec: 20}`: the most `sbatch`
          calls in any window (logged by a wrapper on PATH) beyond what the bucket allows, one job each
  track   N held jobs in flight (submitted by the daemon, cancelled at the end), nothing changing: daemon CPU
          per cycle (utime+stime of the daemon alone, from /proc) and sacct/squeue calls per cycle (counted by
          wrappers on PATH); N from DW_TRACK_N (default 20,000: needs MaxJobCount above it)
  ledger  a ledger of N rows: `dirwatcher status`, vs the same on 1,000 rows (and `select count(*)`); peak RSS, idle
          CPU with metrics at poll 5 s
  bounds  issue 22's bounded work: the idle cycle beside 100k processed directories with the rsync preset (vs
          `ls -f`); 100k directories without a ready-file, and one directory of 1M files under each rule that
          lists it (glob marker, ignore pattern, whole-tree quiescence): daemon CPU at poll 1 s, peak RSS, and
          the lines the log has about it; a 100k-level tree deleted after success (vs `rm -rf` of the same
          tree) and how long a SIGTERM in the middle of it takes. Sizes from DW_BOUNDS_N (default 100000) and
          DW_FLAT_N (default 1000000).

Usage: benches/scale.py [--quick] [--out FILE] [--check RATIOS.json]
  --quick: the CI version (10k idle, 100k-row ledger; ~1 min): with --check it fails only when a ratio is
  more than 2x worse than the recorded one (never on absolute times).
Needs the release binary (cargo build --release) and, for newdir/burst/rate/track, the test cluster.
"""
import json, math, os, re, shutil, sqlite3, statistics, subprocess, sys, tempfile, time

BIN = os.environ.get("DW_BENCH_BIN") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "target", "release", "dirwatcher"))


def ms(t):
    return t * 1000.0


def cpu_of(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tck


def vm_kib(pid, field="VmHWM"):
    """A memory line of /proc/PID/status (VmHWM: the peak RSS; VmRSS: now), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def hwm_kib(pid):
    return vm_kib(pid, "VmHWM")


def config(work, root, state, poll=5, extra_job="", extra=""):
    path = os.path.join(work, "c.yaml")
    with open(path, "w") as f:
        f.write(f"""watch:
  root: {root}
  poll_interval_sec: {poll}
  stability_checks: 2
  stability_interval_sec: 1
job:
  wrap_cmd: "true"
  partition: {os.environ.get("DW_BENCH_PARTITION", "main")}
  job_name_prefix: bench
{extra_job}behavior:
  state_file: {state}
  failure_log: {work}/failed.log
{extra}""")
    return path


def held_job():
    """The job lines of the rows whose jobs must not run (burst, track, newdir): `--hold`, or with
    DW_BENCH_PARTITION a partition that is DOWN (the jobs pend there: the way to keep them for
    `executor: slurmrest`, which takes no sbatch options). DW_BENCH_EXECUTOR=slurmrest (with
    DW_BENCH_TOKEN_FILE, DW_BENCH_REST_URL) submits and follows them through slurmrestd."""
    lines = "  output: /dev/null\n"
    if not os.environ.get("DW_BENCH_PARTITION"):
        lines += "  extra_args: [\"--hold\"]\n"
    if os.environ.get("DW_BENCH_EXECUTOR") == "slurmrest":
        lines += "  executor: slurmrest\n"
        for key, var in (("slurmrest_token_file", "DW_BENCH_TOKEN_FILE"), ("slurmrest_url", "DW_BENCH_REST_URL")):
            if os.environ.get(var):
                lines += f"  {key}: {os.environ[var]}\n"
    return lines


def make_dirs(root, n, prefix="p"):
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        d = os.path.join(root, f"{prefix}{i:06}")
        os.mkdir(d)
        open(os.path.join(d, "_READY"), "w").close()


def seed_ledger(cfg, state, root, extra_rows=0):
    """The daemon creates its schema (one --once run: a first look submits nothing), then every directory of `root` gets
    a completed record with its real ready-file identity; `extra_rows` more completed, deleted records."""
    subprocess.run([BIN, "run", "--allow-root", "--once", "--config", cfg],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    c = sqlite3.connect(state)
    inst = c.execute("select value from meta where key='instance'").fetchone()[0]
    rows = []
    for i, name in enumerate(sorted(os.listdir(root))):
        st = os.stat(os.path.join(root, name, "_READY"))
        rows.append((name.encode(), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, 0, f"dw-{inst}-s{i}", f"bench-{name}"))
    for i in range(extra_rows):
        rows.append((f"gone{i:07}".encode(), 1, i, 0, 0, 1, f"dw-{inst}-g{i}", f"bench-gone{i}"))
    c.executemany("""insert into generations (dir, ready_dev, ready_ino, ready_size, ready_mtime_ns, deleted, state,
      submit_key, job_id, job_name, created_at, submitted_at, finished_at, final_state, exit_code, updated_at)
      values (?, ?, ?, ?, ?, ?, 'completed', ?, '1', ?, 0, 0, 0, 'COMPLETED', '0:0', 0)""", rows)
    c.commit()
    c.close()


def run_flags():
    """`run`'s flags: with slurmrestd also `--catch-up`, as a new ledger's start would read every job of the
    user in the last two days from slurmdbd as JSON (about 8 KB each), and the runs before (20,000 jobs and
    more) exceed what the daemon reads of one answer; the rows measure what follows the start."""
    return ["--allow-root"] + (["--catch-up"] if os.environ.get("DW_BENCH_EXECUTOR") == "slurmrest" else [])


def start(cfg, log):
    return subprocess.Popen([BIN, "run", *run_flags(), "--config", cfg], stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"))


def stop(p):
    # Under strace or perf the daemon is their child: it gets the SIGTERM (strace would only detach).
    try:
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            kids = [int(k) for k in f.read().split()]
    except OSError:
        kids = []
    if os.path.basename(p.args[0]) in ("strace", "perf"):
        for k in kids:
            os.kill(k, 15)
    else:
        p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def all_records(state, n, where):
    """Whether `n` records of the ledger at `state` match `where` (False while the daemon holds it locked)."""
    try:
        c = sqlite3.connect(state)
        k = c.execute(f"select count(*) from generations where {where}").fetchone()[0]
        c.close()
        return k == n
    except sqlite3.Error:
        return False


def all_submitted(state, n):
    """Whether all `n` records of the ledger at `state` have their job id."""
    return all_records(state, n, "job_id is not null")


def start_counting_fsyncs(cfg, counts, log):
    """The daemon under `perf stat`, counting its (and its threads') fsync and fdatasync calls into `counts`
    by kernel tracepoints: not `strace -f`, which ptrace-stops every fork and exec of each child."""
    if not shutil.which("perf"):  # e.g. in a site container: the burst is timed, its fsyncs not counted
        return start(cfg, log)
    return subprocess.Popen(["perf", "stat", "-x,", "-o", counts, "-e", "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync",
                             "--", BIN, "run", "--allow-root", "--config", cfg], stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"))


def fsyncs_counted(counts):
    """The fsyncs `perf stat` wrote into `counts` (after the daemon stopped)."""
    total = 0
    if not os.path.exists(counts):
        return float("nan")
    with open(counts) as f:
        for line in f:
            v = line.split(",")
            if len(v) > 2 and v[2].startswith("syscalls:sys_enter_f") and v[0].isdigit():
                total += int(v[0])
    return total


def wait_for(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise SystemExit(f"timeout waiting for {what}")


def timed(argv, reps):
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append(ms(time.perf_counter() - t))
    return out


def daemon_cpu_per_cycle(cfg, log, seconds, poll):
    """Starts the daemon, lets its first (loading) cycle pass, then measures CPU over `seconds`."""
    p = start(cfg, log)
    try:
        time.sleep(max(3.0, poll + 1.0))
        c0, t0 = cpu_of(p.pid), time.time()
        time.sleep(seconds)
        c1, t1 = cpu_of(p.pid), time.time()
        cycles = (t1 - t0) / poll
        return ms((c1 - c0) / cycles), (c1 - c0) / (t1 - t0) * 100.0, hwm_kib(p.pid)
    finally:
        stop(p)


def med(xs):
    return statistics.median(xs)


def spread(xs):
    return f"{min(xs):.0f}–{max(xs):.0f}" if len(xs) > 1 else f"{xs[0]:.0f}"


def bench_idle(work, n, reps):
    root, state = os.path.join(work, f"idle{n}", "root"), os.path.join(work, f"idle{n}", "state.db")
    make_dirs(root, n)
    cfg = config(os.path.dirname(root), root, state, poll=1)
    seed_ledger(cfg, state, root)
    cyc, ls, find = [], [], []
    for _ in range(reps):  # A/B alternated
        cyc.append(daemon_cpu_per_cycle(cfg, os.path.join(work, "idle.log"), 6, 1.0)[0])
        ls.extend(timed(["ls", "-f", root], 3))
        find.extend(timed(["find", root, "-maxdepth", "2", "-name", "_READY"], 1))
    cfg5 = config(os.path.dirname(root), root, state, poll=5)
    pct = daemon_cpu_per_cycle(cfg5, os.path.join(work, "idle5.log"), 20, 5.0)[1]
    shutil.rmtree(os.path.dirname(root), ignore_errors=True)
    return {"n": n, "cycle_ms": cyc, "ls_ms": ls, "find_ms": find, "cpu_pct_poll5": pct,
            "ratio": med(cyc) / med(ls)}


def ledger_setup(work, name, rows):
    base = os.path.join(work, name)
    root, state = os.path.join(base, "root"), os.path.join(base, "state.db")
    make_dirs(root, 1000)
    textfile = os.path.join(base, "m.prom")
    cfg = config(base, root, state, poll=5, extra=f"metrics:\n  textfile: {textfile}\n")
    seed_ledger(cfg, state, root, extra_rows=rows - 1000)
    return base, cfg, state


def bench_ledger(work, rows, reps):
    """`status` on a ledger of `rows` records against the same command on one of 1,000 (the floor: the command's fixed
    cost, process start included, so the ratio says whether `status` grows with the ledger); `select count(*)` of the
    big one as a reference."""
    base, cfg, state = ledger_setup(work, f"ledger{rows}", rows)
    small_base, small_cfg, _ = ledger_setup(work, "ledger1000", 1000)
    st, small, cnt = [], [], []
    for _ in range(reps):  # A/B alternated
        st.extend(timed([BIN, "status", "--config", cfg], 1))
        small.extend(timed([BIN, "status", "--config", small_cfg], 1))
        t = time.perf_counter()
        c = sqlite3.connect(state)
        c.execute("select count(*) from generations").fetchone()
        c.close()
        cnt.append(ms(time.perf_counter() - t))
    per_cycle, pct, rss = daemon_cpu_per_cycle(cfg, os.path.join(base, "d.log"), 20, 5.0)
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(small_base, ignore_errors=True)
    return {"rows": rows, "status_ms": st, "status_1000_ms": small, "count_ms": cnt, "rss_kib": rss,
            "cpu_pct_poll5": pct, "ratio": med(st) / med(small)}


def sbatch_loop(n, work):
    """A bare sequential sbatch loop, jobs held (then cancelled): the floor of a burst."""
    t = time.perf_counter()
    ids = []
    for i in range(n):
        r = subprocess.run(["sbatch", "--parsable", "--hold", "-p", "main", "-J", f"floor-{i}", f"--chdir={work}",
                            "-o", "/dev/null", "--wrap", "true"], capture_output=True, text=True, check=True)
        ids.append(r.stdout.strip().split(";")[0])
    took = ms(time.perf_counter() - t)
    for i in range(0, len(ids), 500):
        subprocess.run(["scancel"] + ids[i:i + 500], check=False)
    return took


def bench_burst(work, n, reps):
    out = {"n": n, "daemon_ms": [], "loop_ms": [], "fsyncs_per_dir": []}
    for r in range(reps):
        out["loop_ms"].append(sbatch_loop(n, work))
        base = os.path.join(work, f"burst{r}")
        root, state = os.path.join(base, "root"), os.path.join(base, "state.db")
        make_dirs(root, n, "b")
        cfg = config(base, root, state, poll=5, extra_job=held_job())
        counts = os.path.join(base, "fsyncs.txt")
        p = start_counting_fsyncs(cfg, counts, os.path.join(base, "d.log"))

        wait_for(lambda: all_submitted(state, n), 600, f"{n} submissions")
        c = sqlite3.connect(state)
        first_intent, last = c.execute("select min(created_at), max(submitted_at) from generations").fetchone()
        keys = [k for (k,) in c.execute("select job_id from generations")]
        c.close()
        stop(p)
        fsyncs = fsyncs_counted(counts)
        # From the first intent (after the stability window, which a bare loop does not have).
        out["daemon_ms"].append(last - first_intent)
        out["fsyncs_per_dir"].append(fsyncs / n)
        for i in range(0, len(keys), 500):
            subprocess.run(["scancel"] + keys[i:i + 500], check=False)
        shutil.rmtree(base, ignore_errors=True)
    out["ratio"] = med(out["daemon_ms"]) / med(out["loop_ms"])
    return out


def bench_local(work, n):
    """`n` directories through the local executor to their end (`true`, completed): fsyncs per directory
    over the daemon and its threads (perf stat tracepoints, as for the burst)."""
    base = os.path.join(work, "local")
    root, state = os.path.join(base, "root"), os.path.join(base, "state.db")
    make_dirs(root, n, "l")
    cfg = config(base, root, state, poll=1, extra_job="  executor: local\n")
    counts = os.path.join(base, "fsyncs.txt")
    p = start_counting_fsyncs(cfg, counts, os.path.join(base, "d.log"))
    try:
        wait_for(lambda: all_records(state, n, "state = 'completed'"), 600, f"{n} local jobs completed")
    finally:
        stop(p)
    fsyncs = fsyncs_counted(counts)
    shutil.rmtree(base, ignore_errors=True)
    return {"n": n, "fsyncs_per_dir": fsyncs / n}


def bench_rate(work, n, burst, per_sec):
    """A burst of `n` with `job.submit_rate: {burst, per_sec}`: when each `sbatch` started (a wrapper on PATH
    logs it), the most calls in any window against what the bucket allows there, and one job per directory."""
    base = os.path.join(work, "rate")
    root, state = os.path.join(base, "root"), os.path.join(base, "state.db")
    make_dirs(root, n, "r")
    cfg = config(base, root, state, poll=5, extra_job=f"  extra_args: [\"--hold\"]\n  output: /dev/null\n"
                 f"  submit_rate: {{burst: {burst}, per_sec: {per_sec}}}\n")
    wrap, log = os.path.join(base, "wrap"), os.path.join(base, "sbatch.log")
    os.makedirs(wrap)
    with open(os.path.join(wrap, "sbatch"), "w") as f:
        f.write(f"#!/bin/sh\necho \"$(date +%s.%N)\" >> {log}\nexec {shutil.which('sbatch')} \"$@\"\n")
    os.chmod(os.path.join(wrap, "sbatch"), 0o755)
    env = dict(os.environ, PATH=wrap + ":" + os.environ["PATH"])
    p = subprocess.Popen([BIN, "run", "--allow-root", "--config", cfg], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(base, "d.log"), "w"), env=env)
    try:
        wait_for(lambda: all_submitted(state, n), 600, f"{n} submissions")
        c = sqlite3.connect(state)
        jobs = [j for (j,) in c.execute("select job_id from generations")]
        dirs = c.execute("select count(distinct dir) from generations").fetchone()[0]
        c.close()
    finally:
        stop(p)
    for i in range(0, len(jobs), 500):
        subprocess.run(["scancel"] + jobs[i:i + 500], check=False)
    t = sorted(float(x) for x in open(log))
    # The bucket allows at most burst + per_sec * w calls in any window of w seconds: the worst window is
    # one that starts and ends at a call. A wrapper logs a call a few ms after the daemon took its token
    # (fork, exec, date): windows are read TOL longer.
    tol = 0.005
    excess = max(j - i + 1 - math.floor(burst + per_sec * (t[j] - t[i] + tol))
                 for i in range(len(t)) for j in range(i, len(t)))
    shutil.rmtree(base, ignore_errors=True)
    return {"n": n, "burst": burst, "per_sec": per_sec, "calls": len(t), "jobs": len(set(jobs)), "dirs": dirs,
            "took_s": t[-1] - t[0], "ideal_s": max(0.0, (n - burst) / per_sec), "excess": excess, "tol_ms": tol * 1000}


def counting_wrappers(base):
    """A directory of `sacct`/`squeue` wrappers that log each call (time, name) and run the real one."""
    wrap, log = os.path.join(base, "wrap"), os.path.join(base, "calls.log")
    os.makedirs(wrap)
    for tool in ("sacct", "squeue"):
        real = shutil.which(tool)
        with open(os.path.join(wrap, tool), "w") as f:
            f.write(f"#!/bin/sh\necho \"$(date +%s.%N) {tool}\" >> {log}\nexec {real} \"$@\"\n")
        os.chmod(os.path.join(wrap, tool), 0o755)
    return wrap, log


def calls_between(log, t0, t1):
    out = {"sacct": 0, "squeue": 0}
    if not os.path.exists(log):  # no call at all (slurmrestd)
        return out
    with open(log) as f:
        for line in f:
            t, tool = line.split()
            if t0 <= float(t) < t1:
                out[tool] += 1
    return out


def bench_track(work, n, cycles):
    base = os.path.join(work, "track")
    root, state = os.path.join(base, "root"), os.path.join(base, "state.db")
    make_dirs(root, n, "t")
    cfg = config(base, root, state, poll=5, extra_job=held_job())
    wrap, log = counting_wrappers(base)
    env = dict(os.environ, PATH=wrap + ":" + os.environ["PATH"])
    t_start = time.time()
    dlog = os.path.join(base, "d.log")
    p = subprocess.Popen([BIN, "-v", "run", *run_flags(), "--config", cfg], stdout=subprocess.DEVNULL,
                         stderr=open(dlog, "w"), env=env)
    # One line per query round at -v: the cycles that followed the jobs.
    rounds = lambda: sum(1 for line in open(dlog, errors="replace") if "scheduler call query" in line)
    jobs = []
    try:
        wait_for(lambda: all_submitted(state, n), 3600, f"{n} submissions")
        submit_s = time.time() - t_start
        c = sqlite3.connect(state)
        jobs = [j for (j,) in c.execute("select job_id from generations")]
        c.close()
        time.sleep(12)  # the first full query after the last submission (the snapshot's job list fills)
        per, t_prev, c_prev = [], time.time(), cpu_of(p.pid)
        c0, t0, r0 = c_prev, t_prev, rounds()
        if os.environ.get("DW_BENCH_PERF"):  # a profile of the window, for finding what a cycle spends
            subprocess.Popen(["perf", "record", "-F", "4999", "--no-inherit", "-g", "-p", str(p.pid), "-o",
                              os.environ["DW_BENCH_PERF"], "--", "sleep", str(5 * cycles)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(cycles):
            time.sleep(5.0)
            t, c_now = time.time(), cpu_of(p.pid)
            per.append(ms(c_now - c_prev))
            t_prev, c_prev = t, c_now
        t1 = time.time()
        calls = calls_between(log, t0, t1)
        ncyc = max(1, rounds() - r0)
        rss = hwm_kib(p.pid)
    finally:
        stop(p)
        for i in range(0, len(jobs), 500):
            subprocess.run(["scancel"] + jobs[i:i + 500], check=False)
        shutil.rmtree(base, ignore_errors=True)
    # /proc counts in clock ticks (10 ms): a 5 s slice reads 0, 10, 20 …; the mean over the query rounds is the
    # number.
    return {"n": n, "cycle_ms": per, "rounds": ncyc, "mean_ms": ms(c_prev - c0) / ncyc, "sacct_per_cycle": calls["sacct"] / ncyc,
            "squeue_per_cycle": calls["squeue"] / ncyc, "submit_s": submit_s, "rss_kib": rss}


def bench_newdir(work, n, samples):
    base = os.path.join(work, "newdir")
    root, state = os.path.join(base, "root"), os.path.join(base, "state.db")
    make_dirs(root, n)
    cfg = config(base, root, state, poll=5, extra_job=held_job())
    seed_ledger(cfg, state, root)
    p = start(cfg, os.path.join(base, "d.log"))
    lat, jobs = [], []
    try:
        time.sleep(8)
        for i in range(samples):
            time.sleep(1.3 * (i % 4))  # arrive at different points of the poll interval
            d = os.path.join(root, f"new{i}")
            os.mkdir(d)
            t = time.time()
            open(os.path.join(d, "_READY"), "w").close()

            def done():
                c = sqlite3.connect(state)
                r = c.execute("select submitted_at, job_id from generations where dir = ? and job_id is not null",
                              (f"new{i}".encode(),)).fetchone()
                c.close()
                return r
            wait_for(done, 60, f"new{i}")
            sub, job = done()
            lat.append(sub - ms(t))
            jobs.append(job)
    finally:
        stop(p)
        subprocess.run(["scancel"] + jobs, check=False)
        shutil.rmtree(base, ignore_errors=True)
    lat.sort()
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
    return {"n": n, "latency_ms": lat, "p95_ms": p95, "bound_ms": 5000 + 1000 + 500}


def idle_cpu(cfg, log, seconds, settle):
    """Daemon CPU (% of a core) over `seconds` after `settle` seconds, peak RSS (KiB), and its log."""
    p = start(cfg, log)
    try:
        time.sleep(settle)
        c0, t0 = cpu_of(p.pid), time.time()
        time.sleep(seconds)
        c1, t1 = cpu_of(p.pid), time.time()
        return (c1 - c0) / (t1 - t0) * 100.0, hwm_kib(p.pid), open(log).read()
    finally:
        stop(p)


def deep_tree(top, depth):
    """`depth` nested directories below `top`, made relative to descriptors (the path would pass PATH_MAX)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for i in range(depth):
        os.mkdir("d", dir_fd=fd)
        if i % 1000 == 0:
            os.close(os.open("file", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
        nxt = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)


# The bounds rows run nothing on a cluster: the local executor (`true`), where anything is run at all.
LOCAL = "  executor: local\n"


def bench_bounds(work, n, flat_n):
    base = os.path.join(work, "bounds")
    out = {"n": n, "flat_n": flat_n}
    # Idle beside n processed directories with the rsync preset: a finished directory's recheck looks at its
    # markers only; temporaries are looked for in directories not yet submitted.
    root, state = os.path.join(base, "idle", "root"), os.path.join(base, "idle", "state.db")
    make_dirs(root, n)
    for i in range(0, n, 100):  # run folders have data below them
        os.makedirs(os.path.join(root, f"p{i:06}", "reads", "L001"))
    cfg = config(os.path.dirname(root), root, state, poll=1, extra_job=LOCAL)
    text = open(cfg).read().replace("watch:\n", "watch:\n  ready_preset: rsync\n", 1)
    open(cfg, "w").write(text)
    seed_ledger(cfg, state, root)
    cyc, ls = [], []
    for _ in range(3):  # A/B alternated
        cyc.append(daemon_cpu_per_cycle(cfg, os.path.join(base, "idle.log"), 6, 1.0)[0])
        ls.extend(timed(["ls", "-f", root], 3))
    out["idle_rsync"] = {"cycle_ms": cyc, "ls_ms": ls, "ratio": med(cyc) / med(ls)}
    shutil.rmtree(os.path.dirname(root), ignore_errors=True)
    # n directories without a ready-file (anyone may make them): looked at on a back-off.
    root, state = os.path.join(base, "unready", "root"), os.path.join(base, "unready", "state.db")
    os.makedirs(root)
    for i in range(n):
        os.mkdir(os.path.join(root, f"u{i:06}"))
    cfg = config(os.path.dirname(root), root, state, poll=1, extra_job=LOCAL)
    pct, rss, _ = idle_cpu(cfg, os.path.join(base, "unready.log"), 20, 40)
    out["unready"] = {"cpu_pct": pct, "rss_kib": rss}
    shutil.rmtree(os.path.dirname(root), ignore_errors=True)
    # One directory of flat_n files under each rule that lists it.
    flat_root = os.path.join(base, "flat", "root")
    big = os.path.join(flat_root, "big")
    os.makedirs(big)
    for i in range(flat_n):
        os.close(os.open(os.path.join(big, f"f{i:07}"), os.O_CREAT | os.O_WRONLY, 0o644))
    open(os.path.join(big, "_READY"), "w").close()
    out["flat"] = {}
    for rule, lines in [("glob marker", "  ready_all_of: [\"_REA*\"]\n"),
                        ("ignore pattern", "  ignore_patterns: [\"*.part\"]\n"),
                        ("whole-tree quiescence", "  quiet_sec: 5\n  quiet_scope: tree\n")]:
        state = os.path.join(base, "flat", f"state-{len(out['flat'])}.db")
        cfg = config(os.path.join(base, "flat"), flat_root, state, poll=1, extra_job=LOCAL)
        text = open(cfg).read().replace("watch:\n", "watch:\n" + lines, 1)
        open(cfg, "w").write(text)
        log = os.path.join(base, "flat.log")
        pct, rss, text = idle_cpu(cfg, log, 20, 10)
        said = [l for l in text.splitlines() if "quiet_max_entries" in l]
        out["flat"][rule] = {"cpu_pct": pct, "rss_kib": rss, "lines": len(said)}
    shutil.rmtree(os.path.join(base, "flat"), ignore_errors=True)
    # A 100k-level tree: deleted after success (local executor), a SIGTERM in the middle, then to its end.
    d = os.path.join(base, "deep")
    root, state = os.path.join(d, "root"), os.path.join(d, "state.db")
    os.makedirs(os.path.join(root, "deep"))
    t = time.perf_counter()
    deep_tree(os.path.join(root, "deep"), n)
    made_s = time.perf_counter() - t
    floor = os.path.join(d, "floor")
    os.makedirs(floor)
    deep_tree(floor, n)
    t = time.perf_counter()
    subprocess.run(["rm", "-rf", floor], check=True)
    rm_s = time.perf_counter() - t
    open(os.path.join(root, "deep", "_READY"), "w").close()
    cfg = config(d, root, state, poll=1, extra_job=LOCAL, extra="  delete_on_success: true\n")
    log = os.path.join(d, "d.log")
    p = start(cfg, log)
    wait_for(lambda: "deleted a slice per cycle" in open(log).read(), 120, "the deletion to begin")
    t0 = time.perf_counter()
    p.terminate()
    p.wait(60)
    out["sigterm_s"] = time.perf_counter() - t0
    p = start(cfg, log)
    t0 = time.perf_counter()
    # logfmt writes a plain word unquoted (`event=deleted`); older builds quoted it.
    deleted = re.compile(r'event="?deleted"?(\s|$)', re.M)
    wait_for(lambda: deleted.search(open(log).read()), 3600, "the deletion to end")
    out["delete_rest_s"] = time.perf_counter() - t0
    stop(p)
    out["made_s"], out["rm_s"] = made_s, rm_s
    shutil.rmtree(base, ignore_errors=True)
    return out


def versions():
    def first(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "?"
    return {"dirwatcher": first([BIN, "--version"]), "slurm": first(["sbatch", "--version"]),
            "kernel": os.uname().release, "cpus": os.cpu_count(), "sqlite": sqlite3.sqlite_version,
            "load": open("/proc/loadavg").read().split()[0]}


def report(res, quick):
    v = res["versions"]
    L = ["# Scale benchmarks (issue 10)", "",
         f"`benches/scale.sh{' --quick' if quick else ''}` on {v['cpus']} cores, kernel {v['kernel']}, "
         f"{v['dirwatcher']}, {v['slurm']}, SQLite {v['sqlite']} (Python's, for seeding); load average "
         f"{v['load']} at start (the machine is shared with other sessions: spreads show the disturbance). "
         "Daemon and floor runs alternate; medians, with min–max.", "",
         "| workload | dirwatcher | floor / reference | ratio | target |", "|---|---|---|---|---|"]
    for r in res.get("idle", []):
        L.append(f"| idle cycle, {r['n']:,} processed directories (CPU per cycle, poll 1 s) | "
                 f"{med(r['cycle_ms']):.1f} ms ({spread(r['cycle_ms'])}) | `ls -f` {med(r['ls_ms']):.1f} ms "
                 f"({spread(r['ls_ms'])}); `find -name _READY` {med(r['find_ms']):.0f} ms | "
                 f"{r['ratio']:.2f}× `ls -f` | ≤ 1.5× at 100k |")
        L.append(f"| idle daemon CPU at poll 5 s, {r['n']:,} | {r['cpu_pct_poll5']:.2f} % of a core | — | — | < 2 % |")
    if "newdir" in res:
        r = res["newdir"]
        L.append(f"| new directory beside {r['n']:,} processed, ready → sbatch | p50 {med(r['latency_ms']) / 1000:.2f} s, "
                 f"p95 {r['p95_ms'] / 1000:.2f} s ({len(r['latency_ms'])} samples) | poll + window + 0.5 s = "
                 f"{r['bound_ms'] / 1000:.1f} s | — | p95 ≤ bound |")
    if "burst" in res:
        r = res["burst"]
        L.append(f"| burst {r['n']:,} → last sbatch answered (from the first intent) | {med(r['daemon_ms']) / 1000:.2f} s "
                 f"({spread(r['daemon_ms'])} ms) | bare `sbatch` loop {med(r['loop_ms']) / 1000:.2f} s "
                 f"({spread(r['loop_ms'])} ms) | {r['ratio']:.2f}× | ≤ 1.0× |")
        L.append(f"| fsyncs per directory, burst | {med(r['fsyncs_per_dir']):.2f} | — | — | ≤ 1.2 |")
    if "local" in res:
        r = res["local"]
        L.append(f"| fsyncs per directory, local executor ({r['n']} directories, ready → completed) | "
                 f"{r['fsyncs_per_dir']:.2f} | — | — | — |")
    if "rate" in res:
        r = res["rate"]
        L.append(f"| burst {r['n']:,} with `submit_rate: {{burst: {r['burst']}, per_sec: {r['per_sec']}}}`: calls beyond the "
                 f"bucket in the worst window (call times ±{r['tol_ms']:.0f} ms) | {max(0, r['excess'])} ({r['calls']} `sbatch` calls, {r['jobs']} jobs for "
                 f"{r['dirs']} directories; first to last call {r['took_s']:.2f} s) | the bucket's own pace "
                 f"{r['ideal_s']:.2f} s | — | 0, one job each |")
    if "track" in res:
        r = res["track"]
        L.append(f"| {r['n']:,} held jobs in flight, nothing changing: daemon CPU per cycle (poll 5 s) | "
                 f"{r['mean_ms']:.1f} ms (mean of {r['rounds']} query rounds; per 5 s {spread(r['cycle_ms'])}, in 10 ms ticks); peak RSS {r['rss_kib'] / 1024:.0f} MiB | "
                 f"— | — | ≤ 50 ms |")
        L.append(f"| {r['n']:,} held jobs in flight: Slurm calls per cycle | {r['sacct_per_cycle']:.1f} sacct, "
                 f"{r['squeue_per_cycle']:.1f} squeue | ids per call ≤ 2,000 | — | ≤ 1 sacct per 2,000 ids |")
        L.append(f"| {r['n']:,} directories ready at once → all submitted (held) | {r['submit_s']:.0f} s | — | — | — |")
    if "ledger" in res:
        r = res["ledger"]
        L.append(f"| ledger {r['rows']:,} rows: `status` | {med(r['status_ms']):.0f} ms ({spread(r['status_ms'])}) | "
                 f"`status` at 1,000 rows {med(r['status_1000_ms']):.0f} ms; `select count(*)` {med(r['count_ms']):.0f} ms | "
                 f"{r['ratio']:.2f}× `status` at 1,000 | ≤ 100 ms |")
        L.append(f"| ledger {r['rows']:,} rows: daemon peak RSS / idle CPU with metrics, poll 5 s | "
                 f"{r['rss_kib'] / 1024:.1f} MiB / {r['cpu_pct_poll5']:.2f} % | — | — | ≤ 64 MiB / < 1 % |")
    if "bounds" in res:
        r = res["bounds"]
        i = r["idle_rsync"]
        L.append(f"| idle cycle, {r['n']:,} processed directories, `ready_preset: rsync` (CPU per cycle, poll 1 s) | "
                 f"{med(i['cycle_ms']):.1f} ms ({spread(i['cycle_ms'])}) | `ls -f` {med(i['ls_ms']):.1f} ms | "
                 f"{i['ratio']:.2f}× `ls -f` | ≤ 2× |")
        u = r["unready"]
        L.append(f"| {r['n']:,} directories without a ready-file, poll 1 s | {u['cpu_pct']:.2f} % of a core, peak RSS "
                 f"{u['rss_kib'] / 1024:.0f} MiB | — | — | < 5 % |")
        for rule, f in r["flat"].items():
            L.append(f"| one directory of {r['flat_n']:,} files, {rule}, poll 1 s | {f['cpu_pct']:.2f} % of a core, peak RSS "
                     f"{f['rss_kib'] / 1024:.0f} MiB, {f['lines']} log line(s) naming the key | — | — | < 5 %, 1 line |")
        L.append(f"| {r['n']:,}-level tree deleted after success: SIGTERM in the middle → exit | {r['sigterm_s']:.2f} s | — | — | < 1 s |")
        L.append(f"| {r['n']:,}-level tree: the rest deleted after a restart | {r['delete_rest_s']:.1f} s | `rm -rf` of the "
                 f"whole tree {r['rm_s']:.1f} s (making it took {r['made_s']:.1f} s) | — | — |")
    L += ["", "Ratios recorded for CI (`benches/ratios.json`): "
          + ", ".join(f"{k} {v:.2f}" for k, v in sorted(ratios(res).items())), ""]
    return "\n".join(L)


def ratios(res):
    out = {}
    for r in res.get("idle", []):
        out[f"idle_{r['n']}_vs_ls"] = r["ratio"]
    if "ledger" in res:
        out[f"status_{res['ledger']['rows']}_vs_1000"] = res["ledger"]["ratio"]
    if "burst" in res:
        out[f"burst_{res['burst']['n']}_vs_loop"] = res["burst"]["ratio"]
    if "bounds" in res:
        out[f"idle_rsync_{res['bounds']['n']}_vs_ls"] = res["bounds"]["idle_rsync"]["ratio"]
    return out


def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    out = args[args.index("--out") + 1] if "--out" in args else None
    check = args[args.index("--check") + 1] if "--check" in args else None
    only = args[args.index("--only") + 1].split(",") if "--only" in args else None
    want = lambda k: only is None or k in only
    work = tempfile.mkdtemp(prefix="dw-scale.", dir=os.environ.get("DW_BENCH_DIR", "/tmp"))
    res = {"versions": versions()}
    partial = os.path.join(tempfile.gettempdir(), "dw-scale-partial.json")

    def keep(key, value):
        res[key] = value
        with open(partial, "w") as f:
            json.dump(res, f)
        print(f"{key}: {json.dumps(value)}", file=sys.stderr, flush=True)
    try:
        if quick:
            keep("idle", [bench_idle(work, 10_000, 2)])
            keep("ledger", bench_ledger(work, 100_000, 5))
        else:
            if want("idle"):
                sizes = os.environ.get("DW_IDLE_SIZES", "1000,10000,100000")
                keep("idle", [bench_idle(work, int(n), 3) for n in sizes.split(",")])
            if want("newdir"):
                keep("newdir", bench_newdir(work, 100_000, 10))
            if want("burst"):
                keep("burst", bench_burst(work, 2_000, 2))
            if want("local"):
                keep("local", bench_local(work, 200))
            if want("rate"):
                keep("rate", bench_rate(work, 300, 30, 20))
            if want("ledger"):
                keep("ledger", bench_ledger(work, 1_000_000, 3))
            if want("bounds"):
                keep("bounds", bench_bounds(work, int(os.environ.get("DW_BOUNDS_N", "100000")),
                                            int(os.environ.get("DW_FLAT_N", "1000000"))))
            if want("track"):
                keep("track", bench_track(work, int(os.environ.get("DW_TRACK_N", "20000")), 6))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(res, quick)
    print(text)
    print(json.dumps(ratios(res)))
    if out:
        with open(out, "w") as f:
            f.write(text)
    if check:
        recorded = json.load(open(check))
        bad = [f"{k}: {v:.2f} now, {recorded[k]:.2f} recorded" for k, v in ratios(res).items()
               if k in recorded and v > 2.0 * recorded[k]]
        if bad:
            raise SystemExit("ratio regression beyond 2x: " + "; ".join(bad))
        print("ratios within 2x of the recorded ones")


if __name__ == "__main__":
    main()
