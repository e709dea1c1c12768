//! The ledger on a MariaDB server (`behavior.ledger`), as a site sets it up: its own database and account,
//! the password in a 0600 file. The promise holds as on the SQLite file: every directory exactly one job
//! across a kill -9 and a restart; the operator's commands read and write the same ledger; a server that
//! goes away mid-run loses and doubles nothing.

use std::path::Path;
use std::time::Duration;

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
