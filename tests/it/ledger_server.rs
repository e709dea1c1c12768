//! The ledger on a MariaDB server (`behavior.ledger`), as a site sets it up: its own database and account,
//! the password in a 0600 file. The promise holds as on the SQLite file: every directory exactly one job
//! across a kill -9 and a restart; the operator's commands read and write the same ledger; a server that
//! goes away mid-run loses and doubles nothing.

use std::path::Path;
use std::time::Duration;

use crate::harness::slurm::{scancel, squeue_named};
use crate::harness::*;
use crate::mariadb::MariaDb;

const DEADLINE: Duration = Duration::from_secs(90);

/// Each run appends a line to `runs` (outside the root), so a second run of a directory shows.
fn counting(env: TestEnv) -> (TestEnv, std::path::PathBuf) {
    let runs = env.tmp.path().join("runs");
    let env = env.job(&format!(
        "wrap_cmd: sh -c 'sleep 0.3; basename \"$1\" >> {}' job",
        runs.display()
    ));
    (env, runs)
}

fn runs_per_dir(runs: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for l in std::fs::read_to_string(runs).unwrap_or_default().lines() {
        *m.entry(l.to_string()).or_default() += 1;
    }
    m
}

#[test]
fn a_ledger_on_mariadb_gives_each_directory_one_job_across_a_kill_9_and_a_restart() {
    let test = "ledger_server_kill9";
    let env = TestEnv::local("ledger-server");
    let Some(db) = MariaDb::start(test, env.tmp.path()) else {
        return;
    };
    let (env, runs) = counting(db.ledger_for(env, "dw_kill9"));
    let dirs: Vec<_> = (0..30)
        .map(|i| env.ready_dir(format!("run{i:02}")))
        .collect();
    let mut daemon = env.start();
    wait_for(DEADLINE, "a third of the directories submitted", || {
        (env.submitted_count() >= 10).then_some(())
    });
    daemon.kill9();
    let mut daemon = env.start();
    for d in &dirs {
        let g = env.wait_final(d, DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{d:?}");
    }
    daemon.stop();
    for d in &dirs {
        assert_eq!(env.history(d).len(), 1, "one record for {d:?}");
    }
    let runs = runs_per_dir(&runs);
    assert_eq!(runs.len(), dirs.len(), "every directory ran: {runs:?}");
    assert!(runs.values().all(|n| *n == 1), "one run each: {runs:?}");
    // The SQLite file was never made: the ledger is the server's.
    assert!(!env.state_file().exists());
    // The operator's commands read the same ledger.
    let status = env.status();
    assert_eq!(status["counts"]["completed"], 30, "{status}");
}

#[test]
fn a_mariadb_restart_mid_burst_loses_and_doubles_nothing() {
    let test = "ledger_server_restart";
    let env = TestEnv::local("ledger-restart");
    let Some(mut db) = MariaDb::start(test, env.tmp.path()) else {
        return;
    };
    let (env, runs) = counting(db.ledger_for(env, "dw_restart"));
    let dirs: Vec<_> = (0..20)
        .map(|i| env.ready_dir(format!("run{i:02}")))
        .collect();
    let mut daemon = env.start();
    wait_for(DEADLINE, "some directories submitted", || {
        (env.submitted_count() >= 3).then_some(())
    });
    db.stop();
    // New directories arrive while the ledger's server is down: none may run before it is back.
    let late: Vec<_> = (0..5).map(|i| env.ready_dir(format!("late{i}"))).collect();
    daemon.wait_log("cannot", DEADLINE);
    db.launch();
    for d in dirs.iter().chain(&late) {
        let g = env.wait_final(d, DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{d:?}");
        assert_eq!(env.history(d).len(), 1, "one record for {d:?}");
    }
    daemon.stop();
    if std::env::var_os("SHOW_LOG").is_some() {
        eprintln!("{}", daemon.log());
    }
    let runs = runs_per_dir(&runs);
    assert_eq!(runs.len(), dirs.len() + late.len(), "{runs:?}");
    assert!(runs.values().all(|n| *n == 1), "one run each: {runs:?}");
}

/// Waits until `d`'s log holds `needle` at least `n` times.
fn wait_count(d: &Daemon, needle: &str, n: usize, deadline: Duration) {
    wait_for(deadline, &format!("{n}× {needle:?} in the log"), || {
        (d.log().matches(needle).count() >= n).then_some(())
    });
}

/// `n` new ready directories named `{round}-{i}`.
fn burst(env: &TestEnv, round: &str, n: usize) -> Vec<std::path::PathBuf> {
    (0..n)
        .map(|i| env.ready_dir(format!("{round}-{i:02}")))
        .collect()
}

const ACTIVE: &str = "is the active one on the ledger";
const STANDBY: &str = "standby: the ledger";
const DEPOSED: &str = "is no longer the active one";

/// One of the pair: its config, and the process running it now with how often its log said each word.
struct Node {
    cfg: std::path::PathBuf,
    name: &'static str,
    d: Daemon,
    /// Processes started so far (each logs to a file of its own).
    starts: usize,
}

impl Node {
    fn spawn(env: &TestEnv, cfg: std::path::PathBuf, name: &'static str) -> Node {
        let d = Daemon::spawn(
            &cfg,
            &env.tmp.path().join(format!("daemon-{name}1.log")),
            &[],
        );
        Node {
            cfg,
            name,
            d,
            starts: 1,
        }
    }

    /// Starts its process again (after a kill or a stop).
    fn respawn(&mut self, env: &TestEnv) {
        self.starts += 1;
        let log = env
            .tmp
            .path()
            .join(format!("daemon-{}{}.log", self.name, self.starts));
        self.d = Daemon::spawn(&self.cfg, &log, &[]);
    }

    fn said(&self, needle: &str) -> usize {
        self.d.log().matches(needle).count()
    }
}

impl Drop for Node {
    /// A failed round shows what each of the pair said, every process of it.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in 1..=self.starts {
                let log = self
                    .d
                    .log
                    .with_file_name(format!("daemon-{}{n}.log", self.name));
                eprintln!(
                    "---- {} (process {n}) ----\n{}",
                    self.name,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
    }
}

/// Two daemons (two processes, one config but for their instance name and local state) on one MariaDB
/// ledger, against the real Slurm: one is active, the other waits. Round after round, a burst of
/// directories in flight, the active one is killed (-9), paused past its lease (SIGSTOP, then SIGCONT), or
/// stopped cleanly: the other takes over every time, the paused one steps down without a word to Slurm,
/// and every directory gets exactly one job. The jobs are submitted held (`--hold`): what counts is how
/// many Slurm has for each directory, and a held job takes no slot of the one-node cluster the other
/// tests wait on.
#[test]
fn two_daemons_on_one_ledger_take_over_from_each_other_and_run_every_directory_once() {
    let test = "ledger_pair";
    if !slurm_available(test) {
        return;
    }
    let env = TestEnv::slurm("pair");
    let Some(db) = MariaDb::start(test, env.tmp.path()) else {
        return;
    };
    let env = db
        .ledger_for(env, "dw_pair")
        .behavior("lease_sec: 4")
        .behavior("instance: a")
        .job("wrap_cmd: \"true\"")
        .job("extra_args: [\"--hold\"]");
    let cfg_a = env.write_config();
    let text = std::fs::read_to_string(&cfg_a).unwrap();
    let state_b = env.tmp.path().join("b").join("state.db");
    let cfg_b = env.tmp.path().join("b.yaml");
    std::fs::write(
        &cfg_b,
        text.replace(
            &env.state_file().display().to_string(),
            &state_b.display().to_string(),
        )
        .replace("instance: a", "instance: b"),
    )
    .unwrap();
    let mut active = Node::spawn(&env, cfg_a, "a");
    wait_count(&active.d, ACTIVE, 1, DEADLINE);
    let mut standby = Node::spawn(&env, cfg_b, "b");
    wait_count(&standby.d, STANDBY, 1, DEADLINE);
    let mut all = Vec::new();
    for (round, kind) in ["kill", "stop", "term"].repeat(2).into_iter().enumerate() {
        let dirs = burst(&env, &format!("{kind}{round}"), 8);
        wait_for(DEADLINE, "a submission of this burst", || {
            dirs.iter()
                .any(|d| !env.history(d).is_empty())
                .then_some(())
        });
        let took_over = standby.said(ACTIVE) + 1;
        match kind {
            // The active one dies; it comes back as the standby.
            "kill" => {
                active.d.kill9();
                wait_count(&standby.d, ACTIVE, took_over, DEADLINE);
                active.respawn(&env);
                wait_count(&active.d, STANDBY, 1, DEADLINE);
            }
            // Paused past its lease: woken up, it steps down and submits nothing more.
            "stop" => {
                let (deposed, waits) = (active.said(DEPOSED) + 1, active.said(STANDBY) + 1);
                active.d.signal(libc::SIGSTOP);
                wait_count(&standby.d, ACTIVE, took_over, DEADLINE);
                active.d.signal(libc::SIGCONT);
                wait_count(&active.d, DEPOSED, deposed, DEADLINE);
                wait_count(&active.d, STANDBY, waits, DEADLINE);
            }
            // A clean stop hands the lease over at once.
            _ => {
                active.d.stop();
                wait_count(&standby.d, ACTIVE, took_over, DEADLINE);
                active.respawn(&env);
                wait_count(&active.d, STANDBY, 1, DEADLINE);
            }
        }
        std::mem::swap(&mut active, &mut standby);
        all.extend(dirs);
    }
    // `status` from the standby's config names the active daemon, on the other "host".
    let st = env.status();
    assert_eq!(st["ledger"]["backend"], "mariadb", "{st}");
    let holder = st["ledger"]["lease"]["active"].as_str().unwrap_or_default();
    assert!(holder.starts_with(&format!("{}@", active.name)), "{st}");
    let mut ids = Vec::new();
    for d in &all {
        ids.push(env.wait_job_id(d, DEADLINE));
        assert_eq!(env.history(d).len(), 1, "one record for {d:?}");
    }
    active.d.stop();
    standby.d.stop();
    for d in &all {
        let name = env.job_name(&d.file_name().unwrap().to_string_lossy());
        // Held, so still in the controller's queue (accounting may list a held job late).
        let jobs = squeue_named(&name);
        assert_eq!(jobs.len(), 1, "Slurm has one job for {d:?}: {jobs:?}");
    }
    for id in &ids {
        scancel(id);
    }
}

/// A daemon that started and stopped before its first record left a ledger on the server, not a loss: it
/// starts again (the lock file beside the state names that ledger; a database without dirwatcher's tables
/// would be a new one).
#[test]
fn a_daemon_stopped_before_its_first_record_starts_again_on_its_mariadb_ledger() {
    let test = "ledger_server_restart_empty";
    let env = TestEnv::local("ledger-empty");
    let Some(db) = MariaDb::start(test, env.tmp.path()) else {
        return;
    };
    let env = db.ledger_for(env.job("wrap_cmd: \"true\""), "dw_empty");
    // A root with a trace of earlier work (job output in the daemon's folder), as a restarted site has.
    std::fs::create_dir_all(env.root.join(".dirwatcher/logs")).unwrap();
    let mut d = env.start();
    d.wait_log("dirwatcher started", DEADLINE);
    d.stop();
    let mut d = env.start();
    d.wait_log("dirwatcher started", DEADLINE);
    let dir = env.ready_dir("after");
    let g = env.wait_final(&dir, DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    d.stop();
}
