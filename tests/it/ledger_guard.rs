//! The ledger cannot be lost, emptied, shared by two daemons or outrun by a full disk without saying so — and
//! a lost one is rebuilt from Slurm's accounting. Each case: what an unlucky admin (or an attacker) does to
//! the ledger, and that no directory runs twice and the admin is told what happened and what to do.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// A local environment whose jobs append their directory to `runs` (outside the root), with the ledger in
/// its own state directory `<tmp>/state/`.
fn counting_local(name: &str) -> (TestEnv, PathBuf) {
    counting(TestEnv::local(name))
}

/// [`counting_local`] on the real cluster.
fn counting_slurm(name: &str) -> (TestEnv, PathBuf) {
    counting(TestEnv::slurm(name))
}

fn counting(mut env: TestEnv) -> (TestEnv, PathBuf) {
    let runs = env.tmp.path().join("runs");
    env.state = env.tmp.path().join("state").join("state.db");
    let env = env
        .job("wrap_cmd: sh -c 'echo \"$1\" >> \"$RUNS\"' job")
        .job(&format!("env: {{RUNS: {:?}}}", runs.display().to_string()));
    (env, runs)
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Starts `run` and waits for it to exit on its own (a refused start); returns its status and log.
fn refused_start(env: &TestEnv, extra: &[&str]) -> (ExitStatus, String) {
    let log = env.tmp.path().join(format!("refused-{}.log", run_token()));
    let mut d = Daemon::spawn(&env.write_config(), &log, extra);
    let st = d.wait_exit(DEADLINE);
    (st, d.log())
}

/// `n` directories, processed to COMPLETED by a daemon that is then stopped.
fn processed(env: &TestEnv, n: usize) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = (0..n).map(|i| env.ready_dir(format!("d{i}"))).collect();
    let mut d = env.start();
    for dir in &dirs {
        let g = env.wait_final(dir, DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
    }
    d.stop();
    dirs
}

fn remove_ledger(p: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut f = p.as_os_str().to_owned();
        f.push(suffix);
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn a_deleted_emptied_or_symlinked_ledger_over_a_processed_root_is_refused_until_catch_up() {
    lost_ledger(counting_local("lostledger"));
}

#[test]
fn on_the_cluster_a_deleted_emptied_or_symlinked_ledger_is_refused_until_catch_up() {
    if slurm_available("on_the_cluster_a_deleted_emptied_or_symlinked_ledger") {
        lost_ledger(counting_slurm("lostledger"));
    }
}

fn lost_ledger((env, runs): (TestEnv, PathBuf)) {
    processed(&env, 3);
    assert_eq!(lines(&runs).len(), 3);
    let state = env.state_file();
    let kept = env.tmp.path().join("kept.db");
    std::fs::copy(&state, &kept).unwrap();

    // Deleted.
    remove_ledger(&state);
    let (st, log) = refused_start(&env, &[]);
    assert_eq!(st.code(), Some(2), "{log}");
    assert!(
        log.contains("is missing, but an earlier ledger served this root"),
        "{log}"
    );
    assert!(log.contains("dirwatcher recover --from-slurm"), "{log}");
    assert!(log.contains("--catch-up"), "{log}");
    assert!(
        log.contains("job output file(s)"),
        "the traces are named: {log}"
    );
    assert!(!state.exists(), "a refused start created a ledger");
    // `status` says the same, instead of "not started yet".
    let out = Command::new(BIN)
        .args(["status", "--config"])
        .arg(env.config_path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is missing, but"),
        "{err}"
    );

    // Emptied (`: > state.db`).
    std::fs::write(&state, b"").unwrap();
    let (st, log) = refused_start(&env, &[]);
    assert_eq!(st.code(), Some(2), "{log}");
    assert!(log.contains("is empty (0 bytes)"), "{log}");
    std::fs::remove_file(&state).unwrap();

    // A dangling symlink: nothing is created where it points.
    let nowhere = env.tmp.path().join("nowhere.db");
    symlink(&nowhere, &state).unwrap();
    let (st, log) = refused_start(&env, &[]);
    assert_eq!(st.code(), Some(2), "{log}");
    assert!(log.contains("is a symlink"), "{log}");
    assert!(!nowhere.exists(), "the daemon created the symlink's target");
    // A symlink to the real ledger: refused the same (the lock and the checks are on the file itself).
    std::fs::remove_file(&state).unwrap();
    symlink(&kept, &state).unwrap();
    let (st, log) = refused_start(&env, &[]);
    assert_eq!(st.code(), Some(2), "{log}");
    assert!(log.contains("is a symlink"), "{log}");
    assert_eq!(lines(&runs).len(), 3, "a refused start ran something");

    // Asked for: every ready directory is processed as new.
    std::fs::remove_file(&state).unwrap();
    let log = env.tmp.path().join("catch-up.log");
    let mut cmd = daemon_command(&[]);
    let child = cmd
        .arg("--catch-up")
        .arg("--config")
        .arg(env.config_path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let d = Daemon {
        child: Some(child),
        log,
    };
    wait_for(DEADLINE, "the three directories to run again", || {
        (lines(&runs).len() == 6).then_some(())
    });
    d.wait_log("--catch-up", DEADLINE);
}

#[test]
fn a_second_daemon_is_refused_through_a_removed_lock_file_or_a_hard_link() {
    second_daemon(counting_local("secondd"), TestEnv::local("secondd2"));
}

#[test]
fn on_the_cluster_a_second_daemon_is_refused_through_a_removed_lock_file_or_a_hard_link() {
    if slurm_available("on_the_cluster_a_second_daemon_is_refused") {
        second_daemon(counting_slurm("secondd"), TestEnv::slurm("secondd2"));
    }
}

fn second_daemon((env, runs): (TestEnv, PathBuf), mut env2: TestEnv) {
    let first = env.ready_dir("first");
    let _a = env.start();
    env.wait_final(&first, DEADLINE);
    let state = env.state_file();

    // The lock file removed: the ledger's own lock still holds.
    std::fs::remove_file(dirwatcher::state_paths::StatePaths::of(&state).lock).unwrap();
    let (st, log) = refused_start(&env, &[]);
    assert_eq!(st.code(), Some(1), "{log}");
    assert!(log.contains("another dirwatcher holds the ledger"), "{log}");

    // The same ledger through a hard link under another name (and so another lock file).
    let other = state.with_file_name("other.db");
    std::fs::hard_link(&state, &other).unwrap();
    env2.root = env.root.clone();
    env2.state = other;
    let env2 = env2.job("wrap_cmd: \"true\"");
    let (st, log) = refused_start(&env2, &[]);
    assert_eq!(st.code(), Some(1), "{log}");
    assert!(log.contains("another dirwatcher holds the ledger"), "{log}");

    // The one daemon goes on: each new directory runs once.
    let dirs: Vec<PathBuf> = (0..5).map(|i| env.ready_dir(format!("n{i}"))).collect();
    for dir in &dirs {
        env.wait_final(dir, DEADLINE);
    }
    let mut ran = lines(&runs);
    ran.sort();
    ran.dedup();
    assert_eq!((ran.len(), lines(&runs).len()), (6, 6), "{ran:?}");
}

#[test]
fn a_state_directory_removed_while_running_stops_everything_and_a_restart_is_refused() {
    state_dir_removed(counting_local("rmstate"));
}

#[test]
fn on_the_cluster_a_state_directory_removed_while_running_stops_everything() {
    if slurm_available("on_the_cluster_a_state_directory_removed_while_running") {
        state_dir_removed(counting_slurm("rmstate"));
    }
}

fn state_dir_removed((env, runs): (TestEnv, PathBuf)) {
    let dirs: Vec<PathBuf> = (0..2).map(|i| env.ready_dir(format!("d{i}"))).collect();
    let mut d = env.start();
    for dir in &dirs {
        env.wait_final(dir, DEADLINE);
    }
    // The running daemon may write its status snapshot into it meanwhile: removed again until it is gone.
    let state_dir = env.state_file().parent().unwrap().to_path_buf();
    wait_for(DEADLINE, "the state directory removed", || {
        std::fs::remove_dir_all(&state_dir).ok()
    });
    d.wait_log("cannot be trusted: the ledger file was removed", DEADLINE);
    assert!(
        d.log().contains("dirwatcher recover --from-slurm"),
        "{}",
        d.log()
    );
    let (st, _) = d.stop();
    assert!(st.success(), "SIGTERM during the outage: {st:?}");
    let (st, log) = refused_start(&env, &[]);
    assert_eq!(st.code(), Some(2), "{log}");
    assert!(log.contains("is missing"), "{log}");
    assert_eq!(lines(&runs).len(), 2, "a directory ran twice");
}

/// The ledger's file system fills up while local jobs finish: their results wait (the runner keeps them
/// until it can write them), no job is taken for a node failure, and nothing runs twice.
#[test]
fn a_full_ledger_file_system_delays_the_results_of_finished_jobs_and_runs_nothing_twice() {
    let (env, runs) = counting_local("fulldisk");
    let go = env.tmp.path().join("go");
    let ended = env.tmp.path().join("ended");
    let state_dir = env.state_file().parent().unwrap().to_path_buf();
    std::fs::create_dir(&state_dir).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&state_dir)
        .status()
        .unwrap();
    assert!(st.success(), "this test needs root to mount a tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state_dir.clone());
    let env = env
        .job(&format!(
            "wrap_cmd: sh -c 'echo \"$1\" >> \"$RUNS\"; while [ ! -e {go:?} ]; do sleep 0.1; done; echo \"$1\" >> {ended:?}' job",
            go = go.display().to_string(),
            ended = ended.display().to_string()
        ))
        .job("max_local_jobs: 4")
        .behavior("max_retries: 1");
    let dirs: Vec<PathBuf> = (0..4).map(|i| env.ready_dir(format!("d{i}"))).collect();
    let _d = env.start();
    wait_for(DEADLINE, "four jobs running", || {
        (lines(&runs).len() == 4).then_some(())
    });
    // Fill the ledger's file system to the last byte.
    let fill = state_dir.join("fill");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "status=none"])
        .arg(format!("of={}", fill.display()))
        .status();
    std::fs::write(&go, b"").unwrap();
    wait_for(DEADLINE, "the four jobs to end", || {
        (lines(&ended).len() == 4).then_some(())
    });
    // Every runner keeps its job's result while it cannot write it (before, each exited at once and the
    // job was taken for a node failure).
    let jobs_dir = dirwatcher::state_paths::StatePaths::of(&env.state_file()).local_jobs;
    let runners = || -> Vec<i32> {
        std::fs::read_dir(&jobs_dir)
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("pid")).ok())
            .filter_map(|p| p.split_whitespace().next()?.parse().ok())
            .collect()
    };
    assert_eq!(runners().len(), 4);
    holds_for(
        Duration::from_secs(3),
        "every runner alive, waiting for space",
        || {
            runners()
                .iter()
                .all(|pid| Path::new(&format!("/proc/{pid}")).exists())
        },
    );
    std::fs::remove_file(&fill).unwrap();
    for dir in &dirs {
        let g = env.wait_final(dir, DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
    }
    assert_eq!(lines(&runs).len(), 4, "a job ran twice: {:?}", lines(&runs));
    assert!(env.failures().is_empty(), "{:?}", env.failures());
}

/// Another ledger of the same root put in place of this one (an old copy of another host, a mix-up): the
/// lock file names the ledger the daemon last used, and the start is refused.
#[test]
fn a_replaced_ledger_is_refused() {
    let (env, runs) = counting_local("replaced");
    processed(&env, 1);
    let state = env.state_file();
    remove_ledger(&state);
    drop(dirwatcher::ledger::Ledger::open_exclusive(&state, &env.root).unwrap());
    let (st, log) = refused_start(&env, &[]);
    assert_eq!(st.code(), Some(2), "{log}");
    assert!(
        log.contains("is not the one the daemon here last used"),
        "{log}"
    );
    assert_eq!(lines(&runs).len(), 1);
}
