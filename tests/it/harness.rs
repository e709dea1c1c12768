#![allow(dead_code)] // helpers are shared by test modules; not every module uses every one
//! The test environment: a temporary root, a config, the real `dirwatcher` binary, and helpers that poll
//! for a condition with a deadline (never a bare sleep as synchronisation).

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_dirwatcher");

/// Polls `cond` every 100 ms until it returns `Some`, or panics with `what` after `deadline`.
pub fn wait_for<T>(deadline: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `cond` every 100 ms for `period` and panics with `what` the first time it is false: for what must
/// stay true for a while (a negative that a bare check at one moment could not show).
pub fn holds_for(period: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < period {
        assert!(cond(), "no longer true after {:?}: {what}", start.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True when the tests must have Slurm (CI, or asked for explicitly).
pub fn slurm_required() -> bool {
    std::env::var("DIRWATCHER_REQUIRE_SLURM").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Checks that the Slurm test cluster answers. When it does not: fails if Slurm is required, else returns
/// false and the caller skips (with a line saying so).
pub fn slurm_available(test: &str) -> bool {
    let ok = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .map(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).trim().is_empty())
        .unwrap_or(false);
    if !ok {
        if slurm_required() {
            panic!(
                "{test}: Slurm is required (CI=true or DIRWATCHER_REQUIRE_SLURM=1) but `sinfo` does not answer; \
                 start the test cluster with `scripts/slurm-dev-cluster.sh up`"
            );
        }
        eprintln!(
            "SKIPPED {test}: no Slurm cluster (start one with `scripts/slurm-dev-cluster.sh up`)"
        );
    }
    ok
}

/// A unique-per-run token, so job names never collide with earlier runs in sacct's history.
pub fn run_token() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}", (n as u64) ^ u64::from(std::process::id()))
}

/// A test environment: temporary folder with `root/`, `state.db`, `failed.log` and a config.
pub struct TestEnv {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub prefix: String,
    pub watch: Vec<String>,
    pub job: Vec<String>,
    pub behavior: Vec<String>,
    /// Lines of a `notify:` section (none: no section).
    pub notify: Vec<String>,
    /// The ledger path (default `<tmp>/state.db`).
    pub state: PathBuf,
    /// The failure log (default `<tmp>/failed.log`).
    pub failure_log_at: PathBuf,
    /// Whole sections written after the others, as YAML (e.g. the original's `db:`).
    pub more: String,
    /// The ledger on a server, for the test's own reads (the config names it for the daemon); `None`:
    /// the SQLite file `state`.
    pub ledger: Option<dirwatcher::ledger::maria::MariaTarget>,
}

impl TestEnv {
    /// A Slurm environment with the seed's job flags and fast polling.
    pub fn slurm(name: &str) -> TestEnv {
        let mut env = TestEnv::base(name);
        env.job
            .extend(["executor: slurm", "partition: main", "account: dev"].map(String::from));
        env
    }

    /// A local-executor environment with fast polling.
    pub fn local(name: &str) -> TestEnv {
        let mut env = TestEnv::base(name);
        env.job.push("executor: local".into());
        env
    }

    fn base(name: &str) -> TestEnv {
        // Under /tmp: Slurm jobs (run as the same user here) must reach the paths.
        let tmp = tempfile::Builder::new()
            .prefix(&format!("dw-{name}-"))
            .tempdir_in("/tmp")
            .unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let prefix = format!("t{}-{}", run_token(), name.replace('_', "-"));
        TestEnv {
            root,
            watch: vec![
                "poll_interval_sec: 0.3".into(),
                "stability_checks: 2".into(),
                "stability_interval_sec: 0.2".into(),
                // A test writes its markers seconds after the daemon first saw a directory: the default
                // cap of the back-off (30 s) would only make it wait. The cap itself is tested in-process.
                "unready_backoff_max_sec: 2".into(),
            ],
            job: vec![format!("job_name_prefix: {prefix}")],
            behavior: vec![],
            notify: vec![],
            prefix,
            state: tmp.path().join("state.db"),
            failure_log_at: tmp.path().join("failed.log"),
            more: String::new(),
            ledger: None,
            tmp,
        }
    }

    /// Adds a whole section (YAML, each line ending in a newline).
    pub fn section(mut self, yaml: &str) -> Self {
        self.more += yaml;
        self
    }

    pub fn job(mut self, line: &str) -> Self {
        set_key(&mut self.job, line);
        self
    }

    pub fn behavior(mut self, line: &str) -> Self {
        set_key(&mut self.behavior, line);
        self
    }

    pub fn notify(mut self, line: &str) -> Self {
        set_key(&mut self.notify, line);
        self
    }

    pub fn watch(mut self, line: &str) -> Self {
        set_key(&mut self.watch, line);
        self
    }

    pub fn state_file(&self) -> PathBuf {
        self.state.clone()
    }

    pub fn failure_log(&self) -> PathBuf {
        self.failure_log_at.clone()
    }

    pub fn config_path(&self) -> PathBuf {
        self.tmp.path().join("config.yaml")
    }

    /// `dirwatcher check-config --slurm` on this config: (exit code, stdout, stderr).
    pub fn check_slurm(&self) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(["check-config", "--slurm", "--config"])
            .arg(self.write_config())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Writes the config file and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let q = |p: &Path| serde_json::to_string(&p.to_string_lossy()).unwrap();
        let mut y = format!("watch:\n  root: {}\n", q(&self.root));
        for l in &self.watch {
            y += &format!("  {l}\n");
        }
        y += "job:\n";
        for l in &self.job {
            y += &format!("  {l}\n");
        }
        y += &format!(
            "behavior:\n  state_file: {}\n  failure_log: {}\n",
            q(&self.state_file()),
            q(&self.failure_log())
        );
        for l in &self.behavior {
            y += &format!("  {l}\n");
        }
        if !self.notify.is_empty() {
            y += "notify:\n";
            for l in &self.notify {
                y += &format!("  {l}\n");
            }
        }
        y += &self.more;
        std::fs::write(self.config_path(), y).unwrap();
        self.config_path()
    }

    /// Makes `<root>/<name>` with a data file and a ready-file; returns its path.
    pub fn ready_dir(&self, name: impl AsRef<OsStr>) -> PathBuf {
        let d = self.root.join(name.as_ref());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("data.txt"), "payload\n").unwrap();
        std::fs::write(d.join("_READY"), "").unwrap();
        d
    }

    /// Starts the daemon (`run --config`), logging to a file.
    pub fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    pub fn start_with(&self, extra: &[&str]) -> Daemon {
        self.start_env(extra, &[])
    }

    /// Starts the daemon with extra arguments and environment (e.g. a `PATH` with a fault-injecting wrapper).
    pub fn start_env(&self, extra: &[&str], envs: &[(&str, &OsStr)]) -> Daemon {
        let cfg = self.write_config();
        Daemon::spawn_env(
            &cfg,
            &self.tmp.path().join(format!("daemon-{}.log", run_token())),
            extra,
            envs,
        )
    }

    /// Where the ledger is, as the test reads it.
    pub fn ledger_at(&self) -> dirwatcher::ledger::LedgerAt {
        match &self.ledger {
            Some(t) => dirwatcher::ledger::LedgerAt::Server(t.clone()),
            None => dirwatcher::ledger::LedgerAt::File(self.state_file()),
        }
    }

    /// The ledger, opened for the test's reads.
    pub fn open_ledger(&self) -> dirwatcher::ledger::Ledger {
        dirwatcher::ledger::Ledger::open_at(&self.ledger_at()).unwrap()
    }

    /// Number of directories with a job id in the ledger.
    pub fn submitted_count(&self) -> u64 {
        if self.ledger.is_none() && !self.state_file().exists() {
            return 0;
        }
        let c = self.open_ledger().counts().unwrap();
        c.submitted + c.completed + c.failed
    }

    /// `dirwatcher status --json`.
    pub fn status(&self) -> Value {
        let out = Command::new(BIN)
            .args(["status", "--json", "--config"])
            .arg(self.config_path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Failure-log records.
    pub fn failures(&self) -> Vec<Value> {
        std::fs::read_to_string(self.failure_log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("failure log line is JSON"))
            .collect()
    }

    /// Waits for a failure-log record about `dir`.
    pub fn wait_failure(&self, dir: &Path, deadline: Duration) -> Value {
        let want = dir.to_string_lossy().into_owned();
        wait_for(deadline, &format!("a failure-log line for {want}"), || {
            self.failures()
                .into_iter()
                .find(|r| r["dir"] == want.as_str())
        })
    }

    /// All ledger rows of one directory, via `sqlite3`-free access: the library itself.
    pub fn history(&self, dir: &Path) -> Vec<dirwatcher::engine::Generation> {
        let l = self.open_ledger();
        l.history(dir.file_name().unwrap()).unwrap()
    }

    /// Waits until `dir`'s latest generation has a final state; returns it.
    pub fn wait_final(&self, dir: &Path, deadline: Duration) -> dirwatcher::engine::Generation {
        wait_for(
            deadline,
            &format!("a final state for {}", dir.display()),
            || {
                self.history(dir)
                    .into_iter()
                    .last()
                    .filter(|g| g.finished_at.is_some())
            },
        )
    }

    /// Waits until `dir` has a job id; returns it.
    pub fn wait_job_id(&self, dir: &Path, deadline: Duration) -> String {
        wait_for(deadline, &format!("a job id for {}", dir.display()), || {
            self.history(dir).into_iter().last().and_then(|g| g.job_id)
        })
    }

    pub fn job_name(&self, dir: &str) -> String {
        dirwatcher::engine::job_name(&self.prefix, OsStr::new(dir))
    }

    /// Where the job `job` of `dir` wrote its output: the default `<root>/.dirwatcher/logs/%x-%j.out`.
    pub fn job_output(&self, dir: &Path, job: &str) -> PathBuf {
        let name = dirwatcher::engine::job_name(&self.prefix, dir.file_name().unwrap());
        self.root
            .join(".dirwatcher/logs")
            .join(format!("{name}-{job}.out"))
    }
}

/// Installs a fault-injecting `sbatch` in front of the real one — only for faults a real cluster cannot
/// produce on demand (a lost answer). `body` is shell script; `$REAL_SBATCH` is the real sbatch. Returns the
/// `PATH` to start the daemon with.
pub fn fake_sbatch(env: &TestEnv, body: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", "command -v sbatch"])
        .output()
        .unwrap();
    let real = String::from_utf8(out.stdout).unwrap();
    assert!(!real.trim().is_empty(), "no sbatch on PATH");
    let bin = env.tmp.path().join("fake-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!("#!/bin/sh\nREAL_SBATCH='{}'\n{body}", real.trim());
    std::fs::write(bin.join("sbatch"), script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("sbatch"), std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Sets `key: value` in a section, replacing an earlier line with the same key.
fn set_key(lines: &mut Vec<String>, line: &str) {
    let key = line.split(':').next().unwrap_or(line);
    lines.retain(|l| l.split(':').next() != Some(key));
    lines.push(line.to_string());
}

/// `dirwatcher [extra…] run`, plus `--allow-root` when the tests run as root (`run` refuses root without it).
pub fn daemon_command(extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(extra).arg("run");
    if unsafe { libc::geteuid() } == 0 {
        cmd.arg("--allow-root");
    }
    cmd
}

/// A running daemon; killed when dropped.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(config: &Path, log: &Path, extra: &[&str]) -> Daemon {
        Daemon::spawn_env(config, log, extra, &[])
    }

    pub fn spawn_env(config: &Path, log: &Path, extra: &[&str], envs: &[(&str, &OsStr)]) -> Daemon {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = daemon_command(extra);
        cmd.envs(envs.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap();
        Daemon {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, deadline: Duration) {
        wait_for(deadline, &format!("log line containing {needle:?}"), || {
            self.log().contains(needle).then_some(())
        });
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Sends SIGTERM and waits for the exit (bounded).
    pub fn stop(&mut self) -> (ExitStatus, Duration) {
        let t = Instant::now();
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(20));
        (status, t.elapsed())
    }

    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = wait_for(deadline, "the daemon to exit", || child.try_wait().unwrap());
        self.child = None;
        status
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
            if std::thread::panicking() {
                eprintln!(
                    "---- daemon log {} ----\n{}",
                    self.log.display(),
                    self.log()
                );
            }
        }
    }
}

/// Slurm helpers: what a user would type to check.
pub mod slurm {
    use super::*;
    use std::collections::HashMap;

    /// `scontrol show job ID` as key → value.
    pub fn scontrol_job(id: &str) -> HashMap<String, String> {
        let out = Command::new("scontrol")
            .args(["show", "job", "-o", id])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scontrol show job {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut m = HashMap::new();
        // One line of `Key=Value` pairs; values may contain spaces only in a few keys we do not read.
        for tok in text.split_whitespace() {
            if let Some((k, v)) = tok.split_once('=') {
                m.entry(k.to_string()).or_insert_with(|| v.to_string());
            }
        }
        m
    }

    /// All job ids with this exact name in accounting (since yesterday).
    pub fn jobs_named(name: &str) -> Vec<String> {
        let out = Command::new("sacct")
            .args([
                "-X",
                "-n",
                "-P",
                "--format=JobIDRaw,JobName",
                "--starttime=now-86400",
            ])
            .arg(format!("--name={name}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sacct: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .filter(|(_, n)| *n == name)
            .map(|(i, _)| i.to_string())
            .collect()
    }

    /// Like [`jobs_named`], but waits (bounded) until accounting lists at least one: sacct finds a job by
    /// name only a few seconds after submission.
    pub fn wait_jobs_named(name: &str) -> Vec<String> {
        wait_for(
            Duration::from_secs(30),
            &format!("sacct to list a job named {name}"),
            || Some(jobs_named(name)).filter(|j| !j.is_empty()),
        )
    }

    /// Jobs with this name known to the controller right now (any state).
    pub fn squeue_named(name: &str) -> Vec<String> {
        let out = Command::new("squeue")
            .args(["-h", "-t", "all", "-o", "%i"])
            .arg(format!("--name={name}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// One accounting field of the job with this id *and* this name (empty until accounting has it): Slurm
    /// reuses ids (the fault tests reset the counter), and `sacct -j N` alone answers with every job N ever
    /// had — an old record may show before ours reaches slurmdbd.
    pub fn sacct_field(id: &str, job_name: &str, field: &str) -> String {
        let out = Command::new("sacct")
            .args(["-X", "-n", "-P", "-j", id, "--starttime=now-7days"])
            .arg(format!("--format=Submit,JobName,{field}"))
            .env("SLURM_TIME_FORMAT", "%s")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, '|');
                let (submit, name, value) = (f.next()?, f.next()?, f.next()?);
                (name.trim() == job_name)
                    .then(|| (submit.trim().parse::<i64>().unwrap_or(0), value))
            })
            .max_by_key(|(submit, _)| *submit)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    }

    /// The controller's state word for a job (`squeue -t all`), empty when it does not know the job.
    pub fn squeue_state(id: &str) -> String {
        let out = Command::new("squeue")
            .args(["-h", "-t", "all", "-o", "%T"])
            .arg(format!("--jobs={id},{id}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn scontrol(args: &[&str]) -> std::process::Output {
        Command::new("scontrol").args(args).output().unwrap()
    }

    /// Requeued jobs become eligible only 2 minutes later: start this one now (as an operator may) — once
    /// Slurm can run it again. `killed_by` is a moment at or after the first run was killed.
    ///
    /// Two things must be true first, or Slurm ends the second run FAILED 1:0 on its own
    /// (slurmd: "Job N already killed, do not launch batch job"):
    /// - the controller has the job PENDING, not COMPLETING: slurmd is done with the first run (its epilog
    ///   ran and was reported);
    /// - the controller's clock has passed the second of the kill: slurmd revoked the job's credentials up to
    ///   that second, and a launch credential made within it counts as revoked (Slurm's own delay on requeue
    ///   is what normally keeps the two apart).
    pub fn start_now(id: &str, killed_by: std::time::SystemTime) {
        wait_for(
            Duration::from_secs(30),
            "the requeued job to be pending (slurmd done with its first run)",
            || (squeue_state(id) == "PENDING").then_some(()),
        );
        let second = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_secs()
        };
        let kill_second = second(killed_by);
        wait_for(
            Duration::from_secs(5),
            "the clock to pass the second the first run was killed in",
            || (second(std::time::SystemTime::now()) > kill_second).then_some(()),
        );
        let out = scontrol(&["update", &format!("jobid={id}"), "StartTime=now"]);
        assert!(
            out.status.success(),
            "scontrol update jobid={id} StartTime=now: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The job of each run appends a line to `runs` (outside the directory, which is deleted at the end), then
    /// checks that its data is still there.
    pub fn counting_env(env: TestEnv) -> (TestEnv, std::path::PathBuf) {
        let runs = env.tmp.path().join("runs");
        let env = env
            .job("wrap_cmd: sh -c 'echo run >> \"$RUNS\"; sleep 6; test -f \"$1/data.txt\"' job")
            .job(&format!("env: {{RUNS: {:?}}}", runs.display().to_string()))
            .behavior("delete_on_success: true");
        (env, runs)
    }

    pub fn runs(path: &std::path::Path) -> usize {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count()
    }

    pub fn scancel(id: &str) {
        let st = Command::new("scancel").arg(id).status().unwrap();
        assert!(st.success(), "scancel {id}");
    }
}

pub fn bytes_of(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

/// slurmrestd (`executor: slurmrest`): the site container's (JWT, `127.0.0.1:6820` and a unix socket, set
/// up by `scripts/site-cluster.sh`). Where none answers, a test says SKIPPED, and fails instead with
/// `DIRWATCHER_REQUIRE_SLURMREST=1` (`site-cluster.sh run-tests` sets it).
pub mod rest {
    use super::*;
    use std::net::{SocketAddr, TcpStream};

    pub const REST: &str = "127.0.0.1:6820";
    /// slurmrestd's unix socket in the site container (the same slurmrestd listens on both).
    pub const REST_SOCKET: &str = "/run/slurmrestd/slurmrestd.socket";

    /// The REST tests one at a time: one of them stops slurmrestd, which the others would take for an outage.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn slurmrest_available(test: &str) -> bool {
        let addr: SocketAddr = REST.parse().unwrap();
        let ok = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
        if !ok {
            if std::env::var("DIRWATCHER_REQUIRE_SLURMREST").is_ok_and(|v| v == "1") {
                panic!(
                    "{test}: slurmrestd is required (DIRWATCHER_REQUIRE_SLURMREST=1) but nothing answers on {REST}; \
                     run the suite in the site container (`scripts/site-cluster.sh up`, then `run-tests`)"
                );
            }
            eprintln!("SKIPPED {test}: no slurmrestd on {REST} (the site container has one)");
        }
        ok
    }

    /// A token for the user running the tests, as `scontrol token` prints it (`SLURM_JWT=…`).
    pub fn token(lifespan_sec: u32) -> String {
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let out = Command::new("scontrol")
            .args([
                "token",
                &format!("username={}", user.trim()),
                &format!("lifespan={lifespan_sec}"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "scontrol token: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// A Slurm environment that submits through slurmrestd, its token in a private file; returns the file.
    pub fn rest_env(name: &str) -> (TestEnv, PathBuf) {
        let env = TestEnv::slurm(name);
        let file = env.config_path().parent().unwrap().join("slurm.jwt");
        write_token(&file, &token(600));
        let env = env.job("executor: slurmrest").job(&format!(
            "slurmrest_token_file: {}",
            serde_json::to_string(&file.to_string_lossy()).unwrap()
        ));
        (env, file)
    }

    pub fn write_token(file: &Path, text: &str) {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = file.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        std::fs::rename(tmp, file).unwrap();
    }
}
