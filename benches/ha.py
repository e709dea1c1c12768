#!/usr/bin/env python3
"""benches/ha.py — the ledger on MariaDB and the active/standby pair, each row beside its floor.

  burst     N directories ready at once -> last sbatch answered (from the first intent), SQLite ledger vs MariaDB
            ledger (a private server on 127.0.0.1), alternated, jobs held (then cancelled); a bare sequential
            `sbatch` loop as the reference
  takeover  two daemons on one MariaDB ledger (lease_sec 3, poll 1 s), the active one killed (-9) ROUNDS times:
            kill -> the other logs that it is the active one (the log line's own time), p50/p95 against
            lease_sec + one look (a look: min(lease/3, poll)); the killed one is started again each round and
            must come back as the standby
  standby   CPU of the standby (utime+stime from /proc) over S seconds, % of one core; the active one's beside it

Usage: benches/ha.py [--quick] [--out FILE] [--only burst,takeover]
  --quick: a smoke run (200 directories, 5 rounds, 15 s standby; ~1.5 min). The full run: 2,000 directories
  (3 alternations), 20 rounds, 60 s standby (~5 min).
Needs the release binary (cargo build --release), the test cluster (`sinfo` answers) and mariadbd /
mariadb-install-db / mysql (mariadb-server, installed with the test cluster). Everything lives under one
temporary folder in /tmp (DW_BENCH_DIR to change), removed at the end; daemons, the server and the held jobs
(by name) are stopped on any exit, Ctrl-C included. Not run in CI.
"""
import json, os, random, shutil, signal, socket, sqlite3, subprocess, sys, tempfile, time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scale import BIN, cpu_of, make_dirs, med, ms, spread, versions  # noqa: E402

ACTIVE = "is the active one on the ledger"
STANDBY = "standby: the ledger"
DEPOSED = "is no longer the active one"
# Every job of this run carries this prefix: the final sweep cancels whatever is left by name.
PREFIX = f"habench{os.getpid()}"
LIVE = []  # the daemons started (Popen), for the final stop


def find(names, dirs):
    for d in dirs:
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p):
                return p
    raise SystemExit(f"none of {names} in {dirs} (apt-get install mariadb-server mariadb-client)")


class MariaDb:
    """A private MariaDB server, as tests/it/mariadb.rs makes one: mariadb-install-db into `under`, mariadbd on
    a free port of 127.0.0.1, --no-defaults (never the cluster's accounting database)."""

    def __init__(self, under):
        self.dir = os.path.join(under, "mariadb")
        os.makedirs(self.dir)
        install = find(["mariadb-install-db", "mysql_install_db"], ["/usr/bin", "/usr/sbin"])
        server = find(["mariadbd", "mysqld"], ["/usr/sbin", "/usr/bin"])
        subprocess.run([install, "--no-defaults", f"--datadir={self.dir}/data", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([server, "--no-defaults", f"--datadir={self.dir}/data", f"--socket={self.dir}/sock",
                                      f"--pid-file={self.dir}/pid", f"--log-error={self.dir}/error.log",
                                      f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root", "--skip-log-bin",
                                      "--innodb-buffer-pool-size=16M"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.time() + 60
        while True:
            try:
                self.sql("select 1")
                break
            except subprocess.CalledProcessError:
                if time.time() > end or self.proc.poll() is not None:
                    raise SystemExit(f"MariaDB did not answer; see {self.dir}/error.log")
                time.sleep(0.2)

    def sql(self, query, db=None):
        """Rows of `query` as root (the mysql client over TCP), each a list of strings."""
        r = subprocess.run(["mysql", "--no-defaults", "--protocol=tcp", "-h", "127.0.0.1", "-P", str(self.port), "-uroot",
                            "-N", "-B", "-e", query] + ([db] if db else []), capture_output=True, text=True, check=True)
        return [line.split("\t") for line in r.stdout.splitlines()]

    def ledger(self, name, work):
        """A database and account for a ledger, the password in a 0600 file, as a site sets it up (README, "Two
        login nodes"): the `behavior` lines that name it."""
        pw = f"pw-{os.getpid()}-{name}"
        self.sql(f"CREATE DATABASE {name}")
        self.sql(f"CREATE USER 'dw_{name}'@'%' IDENTIFIED BY '{pw}'")
        self.sql(f"GRANT ALL ON {name}.* TO 'dw_{name}'@'%'")
        pass_file = os.path.join(work, f"{name}.pass")
        fd = os.open(pass_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, f"{pw}\n".encode())
        os.close(fd)
        return (f"  ledger: mysql://dw_{name}@127.0.0.1:{self.port}/{name}\n"
                f"  ledger_password_file: {pass_file}\n")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def config(base, root, state, name="c.yaml", poll=5, behavior=""):
    path = os.path.join(base, name)
    with open(path, "w") as f:
        f.write(f"""watch:
  root: {root}
  poll_interval_sec: {poll}
  stability_checks: 2
  stability_interval_sec: 1
job:
  wrap_cmd: "true"
  partition: main
  job_name_prefix: {PREFIX}
  extra_args: ["--hold"]
  output: /dev/null
behavior:
  state_file: {state}
  failure_log: {base}/failed.log
{behavior}""")
    return path


def start(cfg, log):
    p = subprocess.Popen([BIN, "run", "--allow-root", "--config", cfg], stdout=subprocess.DEVNULL,
                         stderr=open(log, "w"))
    LIVE.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_for(pred, timeout, what, every=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise SystemExit(f"timeout waiting for {what}")


def cancel(ids):
    for i in range(0, len(ids), 500):
        subprocess.run(["scancel"] + ids[i:i + 500], check=False)


def sweep():
    """Cancels every job of this run still known to Slurm (by its name's prefix)."""
    r = subprocess.run(["squeue", "--me", "-h", "-o", "%i %j"], capture_output=True, text=True)
    cancel([i for i, j in (line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
            if j.startswith(PREFIX + "-")])


def sbatch_loop(n, work):
    """A bare sequential sbatch loop, jobs held (then cancelled): the reference of a burst."""
    t = time.perf_counter()
    ids = []
    for i in range(n):
        r = subprocess.run(["sbatch", "--parsable", "--hold", "-p", "main", "-J", f"{PREFIX}-floor-{i}", f"--chdir={work}",
                            "-o", "/dev/null", "--wrap", "true"], capture_output=True, text=True, check=True)
        ids.append(r.stdout.strip().split(";")[0])
    took = ms(time.perf_counter() - t)
    cancel(ids)
    return took


SUBMITTED = "select count(*) from generations where job_id is not null"
SPAN = "select min(created_at), max(submitted_at) from generations"
JOBS = "select job_id from generations"


def burst_once(work, tag, n, mdb=None):
    """`n` ready directories, one daemon from an empty ledger (an SQLite file, or a new database on `mdb`): from
    the first intent (created_at) to the last sbatch answered (submitted_at), by the ledger's own times. Progress
    is read from the ledger every 0.25 s (sqlite3 in process, or the mysql client)."""
    base = os.path.join(work, tag)
    root, state = os.path.join(base, "root"), os.path.join(base, "state.db")
    make_dirs(root, n, "b")
    behavior = mdb.ledger(tag, base) if mdb else ""
    cfg = config(base, root, state, behavior=behavior)
    if mdb:
        def q(query):
            try:
                return mdb.sql(query, tag)
            except subprocess.CalledProcessError:  # the schema not made yet
                return []
    else:
        def q(query):
            try:
                c = sqlite3.connect(state)
                rows = [[str(v) for v in r] for r in c.execute(query).fetchall()]
                c.close()
                return rows
            except sqlite3.Error:  # not made yet, or locked
                return []
    p = start(cfg, os.path.join(base, "d.log"))
    try:
        wait_for(lambda: (r := q(SUBMITTED)) and int(r[0][0]) == n, 600, f"{n} submissions ({tag})", every=0.25)
        first_intent, last = (int(v) for v in q(SPAN)[0])
    finally:
        stop(p)
        cancel([r[0] for r in q(JOBS) if r[0] not in ("NULL", "None")])
    shutil.rmtree(base, ignore_errors=True)
    return last - first_intent


def bench_burst(work, mdb, n, reps):
    out = {"n": n, "sqlite_ms": [], "maria_ms": [], "loop_ms": []}
    for r in range(reps):  # alternated: which ledger goes first changes every rep
        order = [("sqlite", None), ("maria", mdb)] if r % 2 == 0 else [("maria", mdb), ("sqlite", None)]
        for kind, m in order:
            out[f"{kind}_ms"].append(burst_once(work, f"burst_{kind}{r}", n, m))
        out["loop_ms"].append(sbatch_loop(n, work))
        print(f"burst rep {r}: sqlite {out['sqlite_ms'][-1]} ms, maria {out['maria_ms'][-1]} ms, "
              f"loop {out['loop_ms'][-1]:.0f} ms", file=sys.stderr, flush=True)
    out["ratio"] = med(out["maria_ms"]) / med(out["sqlite_ms"])
    out["maria_vs_loop"] = med(out["maria_ms"]) / med(out["loop_ms"])
    return out


def log_time(line):
    """The wall time (s) of a text log line: tracing's `2026-12-07T04:30:00.123456Z` first field."""
    stamp = line.split()[0].rstrip("Z")
    whole, _, frac = stamp.partition(".")
    t = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def lines_with(log, needle):
    with open(log, errors="replace") as f:
        return [line for line in f if needle in line]


def bench_takeover(work, mdb, rounds, standby_s, lease=3.0, poll=1.0):
    base = os.path.join(work, "pair")
    root = os.path.join(base, "root")
    os.makedirs(base)
    ledger = mdb.ledger("dw_pair", base)
    cfg, logs, procs = {}, {}, {}
    for name in ("a", "b"):
        os.makedirs(os.path.join(base, name))
        cfg[name] = config(base, root, os.path.join(base, name, "state.db"), name=f"{name}.yaml", poll=poll,
                           behavior=ledger + f"  instance: {name}\n  lease_sec: {lease:g}\n")
        logs[name] = []

    def spawn(name):
        log = os.path.join(base, f"{name}{len(logs[name]) + 1}.log")
        logs[name].append(log)
        procs[name] = start(cfg[name], log)
        return log

    # One directory, submitted (held) by the first active daemon, so the ledger has a record: a restarted daemon
    # is refused on a ledger without one when its state folder shows it ran (see docs/benchmarks-ha.md); its job
    # stays in flight (the active one follows it) until the final sweep.
    make_dirs(root, 1, "seed")
    look = min(lease / 3, poll)
    out = {"lease_s": lease, "poll_s": poll, "look_s": look, "bound_s": lease + look, "takeover_s": [],
           "odd": []}
    log = spawn("a")
    wait_for(lambda: lines_with(log, ACTIVE), 60, "a to be the active one")
    wait_for(lambda: (r := mdb.sql(SUBMITTED, "dw_pair")) and int(r[0][0]) == 1, 60, "the seed directory's job",
             every=0.25)
    log = spawn("b")
    wait_for(lambda: lines_with(log, STANDBY), 60, "b to be the standby")
    active, standby = "a", "b"
    rng = random.Random(1)
    for i in range(rounds):
        # Kill at a different point of the active one's renewals and the standby's looks each round.
        time.sleep(1.5 + rng.random() * lease)
        if lines_with(logs[standby][-1], ACTIVE):
            raise SystemExit(f"round {i}: {standby} became active before the kill")
        t_kill = time.time()
        os.kill(procs[active].pid, signal.SIGKILL)
        procs[active].wait()
        line = wait_for(lambda: lines_with(logs[standby][-1], ACTIVE), 60, f"round {i}: {standby} to take over",
                        every=0.02)[0]
        took = log_time(line) - t_kill
        out["takeover_s"].append(took)
        print(f"takeover round {i}: {active} killed, {standby} active after {took:.3f} s", file=sys.stderr,
              flush=True)
        if took > lease + look + 0.5:
            out["odd"].append(f"round {i}: takeover {took:.2f} s > lease + look")
        # The killed one again: it must wait as the standby.
        log = spawn(active)

        def back():
            if procs[active].poll() is not None:
                raise SystemExit(f"round {i}: the restarted {active} exited: {open(log).read().strip()}")
            return lines_with(log, STANDBY) or lines_with(log, ACTIVE)
        wait_for(back, 60, f"round {i}: {active} restarted")
        if lines_with(log, ACTIVE):
            out["odd"].append(f"round {i}: the restarted {active} became active: {lines_with(log, ACTIVE)[0].strip()}")
        active, standby = standby, active

    # The standby's CPU (and the active one's, idle on an empty root), after the last takeover settled.
    time.sleep(3)
    ps, pa = procs[standby].pid, procs[active].pid
    c0s, c0a, t0 = cpu_of(ps), cpu_of(pa), time.time()
    time.sleep(standby_s)
    c1s, c1a, t1 = cpu_of(ps), cpu_of(pa), time.time()
    out.update(standby_s=t1 - t0, standby_cpu_s=c1s - c0s, standby_pct=(c1s - c0s) / (t1 - t0) * 100.0,
               active_pct=(c1a - c0a) / (t1 - t0) * 100.0)
    if lines_with(logs[standby][-1], ACTIVE) or lines_with(logs[active][-1], DEPOSED):
        out["odd"].append("the pair changed roles during the CPU window")
    for name in ("a", "b"):
        stop(procs[name])
    # Warnings and errors of every daemon run (a killed daemon writes nothing more, so its log is whole).
    warns = [f"{os.path.basename(log)}: {line.strip()}" for name in ("a", "b") for log in logs[name]
             for line in open(log, errors="replace") if " WARN " in line or " ERROR " in line]
    out["warnings"] = len(warns)
    out["odd"] += warns[:10]
    out["epoch"] = int(mdb.sql("select epoch from lease where id = 1", "dw_pair")[0][0])
    s = sorted(out["takeover_s"])
    out["p50_s"] = med(s)
    out["p95_s"] = s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]
    out["max_s"] = s[-1]
    out["ratio_p95"] = out["p95_s"] / out["bound_s"]
    return out


def report(res, quick):
    v = res["versions"]
    L = ["# The ledger on MariaDB: burst, takeover, standby", "",
         f"`benches/ha.py{' --quick' if quick else ''}` on {v['cpus']} cores, kernel {v['kernel']}, {v['dirwatcher']}, "
         f"{v['slurm']}, {v.get('mariadb', '?')} (a private server on 127.0.0.1); load average {v['load']} at start "
         "(the machine is shared with other sessions). Medians, with min–max.", "",
         "| workload | dirwatcher | floor / reference | ratio | target |", "|---|---|---|---|---|"]
    if "burst" in res:
        r = res["burst"]
        L.append(f"| burst {r['n']:,} → last sbatch answered (from the first intent), MariaDB ledger vs SQLite ledger "
                 f"({len(r['maria_ms'])} alternations) | MariaDB {med(r['maria_ms']) / 1000:.2f} s ({spread(r['maria_ms'])} ms) | "
                 f"SQLite {med(r['sqlite_ms']) / 1000:.2f} s ({spread(r['sqlite_ms'])} ms); bare `sbatch` loop "
                 f"{med(r['loop_ms']) / 1000:.2f} s ({spread(r['loop_ms'])} ms) | {r['ratio']:.2f}× SQLite "
                 f"({r['maria_vs_loop']:.2f}× the loop) | ≤ 1.5× |")
    if "takeover" in res:
        r = res["takeover"]
        n = len(r["takeover_s"])
        L.append(f"| takeover after kill -9 of the active one (lease_sec {r['lease_s']:g}, poll {r['poll_s']:g} s; {n} rounds): "
                 f"kill → the other logs it is active | p50 {r['p50_s']:.2f} s, p95 {r['p95_s']:.2f} s "
                 f"(min {min(r['takeover_s']):.2f}, max {r['max_s']:.2f}) | lease + one look = {r['bound_s']:.1f} s | "
                 f"p95 {r['ratio_p95']:.2f}× | ≤ 1.0× |")
        L.append(f"| standby CPU over {r['standby_s']:.0f} s (utime+stime, /proc) | {r['standby_pct']:.3f} % of a core "
                 f"({r['standby_cpu_s']:.2f} s) | the active one (one held job in flight): {r['active_pct']:.3f} % | — | < 1 % |")
    return "\n".join(L) + "\n"


def mariadb_version():
    try:
        return subprocess.run(["mariadbd", "--version"], capture_output=True, text=True).stdout.split(" Ver ")[1].split()[0]
    except (OSError, IndexError):
        return "?"


def interrupted(*_):
    raise KeyboardInterrupt


def main():
    args = sys.argv[1:]
    quick = "--quick" in args
    out = args[args.index("--out") + 1] if "--out" in args else None
    only = args[args.index("--only") + 1].split(",") if "--only" in args else None
    want = lambda k: only is None or k in only
    n, reps, rounds, standby_s = (200, 1, 5, 15) if quick else (2000, 3, 20, 60)
    if not os.access(BIN, os.X_OK):
        raise SystemExit(f"no {BIN}: cargo build --release")
    # A SIGTERM stops the run as Ctrl-C does: through the finally below (SIGINT too when started in the background,
    # where the shell leaves it ignored).
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    work = tempfile.mkdtemp(prefix="dw-ha.", dir=os.environ.get("DW_BENCH_DIR", "/tmp"))
    res = {"versions": dict(versions(), mariadb="MariaDB " + mariadb_version())}
    partial = os.path.join(tempfile.gettempdir(), "dw-ha-partial.json")
    mdb = None

    def keep(key, value):
        res[key] = value
        with open(partial, "w") as f:
            json.dump(res, f)
        print(f"{key}: {json.dumps(value)}", file=sys.stderr, flush=True)
    try:
        mdb = MariaDb(work)
        if want("burst"):
            keep("burst", bench_burst(work, mdb, n, reps))
        if want("takeover"):
            keep("takeover", bench_takeover(work, mdb, rounds, standby_s))
    finally:
        for p in LIVE:
            stop(p)
        if mdb:
            mdb.stop()
        sweep()
        if os.environ.get("DW_BENCH_KEEP"):  # for a look at the daemons' logs
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = report(res, quick)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
