//! The same outcome scenarios with the local executor (no Slurm needed).

use std::time::Duration;

use crate::harness::*;
use crate::slurm_pipeline::scenarios;

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn local_completed_is_deleted_with_delete_on_success() {
    scenarios::completed_deleted(TestEnv::local("del"), DEADLINE);
}

#[test]
fn local_job_script_gets_the_directory_as_its_argument() {
    scenarios::job_script(TestEnv::local("script"), DEADLINE);
}

#[test]
fn local_job_runs_with_job_umask() {
    scenarios::job_umask(TestEnv::local("umask"), DEADLINE);
}

/// systemd's SYSTEMD_EXEC_PID is the daemon's, not the job's (issue 14, D3).
#[test]
fn jobs_do_not_inherit_systemd_exec_pid() {
    let env = TestEnv::local("execpid").job("wrap_cmd: sh -c 'env > \"$1/env.txt\"' job");
    let dir = env.ready_dir("e");
    let _d = env.start_env(&[], &[("SYSTEMD_EXEC_PID", std::ffi::OsStr::new("4242"))]);
    let g = env.wait_final(&dir, DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    let job_env = std::fs::read_to_string(dir.join("env.txt")).unwrap();
    assert!(
        job_env.lines().any(|l| l.starts_with("WATCH_DIR=")),
        "{job_env}"
    );
    assert!(
        !job_env.lines().any(|l| l.starts_with("SYSTEMD_EXEC_PID=")),
        "{job_env}"
    );
}

#[test]
fn local_exit_3_is_a_failed_line() {
    scenarios::exit_3_failed(TestEnv::local("fail"), DEADLINE);
}

#[test]
fn local_over_time_limit_is_a_timeout_line() {
    scenarios::timeout(
        TestEnv::local("timeout").job("time_limit: \"00:01\""),
        DEADLINE,
    );
}

#[test]
fn local_cancel_is_a_cancelled_line() {
    let state = std::cell::RefCell::new(None::<std::path::PathBuf>);
    let env = TestEnv::local("cancel");
    *state.borrow_mut() =
        Some(dirwatcher::state_paths::StatePaths::of(&env.state_file()).local_jobs);
    let jobs = state.borrow().clone().unwrap();
    scenarios::cancelled(env, DEADLINE, move |job| {
        // What `scancel` is to Slurm: SIGTERM to the job's runner.
        let pid_file = jobs.join(job).join("pid");
        let pid: i32 = wait_for(DEADLINE, "the runner's pid file", || {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
        });
        unsafe { libc::kill(pid, libc::SIGTERM) };
    });
}

#[test]
fn local_hostile_names_reach_the_job_as_one_argument() {
    let _ = scenarios::hostile_names(
        TestEnv::local("hostile"),
        DEADLINE,
        Vec::new(),
        |env, dir, job| std::fs::read(env.job_output(dir, job)).unwrap(),
    );
}

/// 1,080 generated hostile names through the local executor: each reaches its job as exact bytes, once.
#[test]
fn local_a_thousand_hostile_names_reach_their_jobs_as_exact_bytes_once() {
    let env = TestEnv::local("hostile1k")
        .job("max_local_jobs: 64")
        .watch("poll_interval_sec: 0.2");
    let names = crate::hostile::names(1_080, 9);
    let jobs = dirwatcher::state_paths::StatePaths::of(&env.state_file()).local_jobs;
    let env = scenarios::hostile_names(
        env,
        Duration::from_secs(300),
        names.clone(),
        |env, dir, job| std::fs::read(env.job_output(dir, job)).unwrap(),
    );
    let ran = std::fs::read_dir(&jobs).unwrap().count();
    assert_eq!(ran, names.len() + 3, "one local job per directory");
    drop(env);
}

#[test]
fn local_growing_or_locked_ready_file_waits_until_stable() {
    scenarios::growing_and_locked(TestEnv::local("stab"), DEADLINE);
}

#[test]
fn local_jobs_beyond_the_cap_wait() {
    // Each job records when it ran, by its own clock.
    let env = TestEnv::local("cap")
        .job("max_local_jobs: 1")
        .job("wrap_cmd: sh -c 'date +%s%N > \"$1/start\"; sleep 1; date +%s%N > \"$1/end\"' job");
    let a = env.ready_dir("a");
    let b = env.ready_dir("b");
    let _d = env.start();
    for d in [&a, &b] {
        assert_eq!(
            env.wait_final(d, DEADLINE).final_state.as_deref(),
            Some("COMPLETED")
        );
    }
    let t = |d: &std::path::Path, f: &str| -> u128 {
        std::fs::read_to_string(d.join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (a0, a1, b0, b1) = (t(&a, "start"), t(&a, "end"), t(&b, "start"), t(&b, "end"));
    assert!(
        b0 >= a1 || a0 >= b1,
        "with one slot the jobs ran at the same time: a {a0}..{a1}, b {b0}..{b1}"
    );
}
