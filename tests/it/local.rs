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
    *state.borrow_mut() = Some(dirwatcher::scheduler::local::jobs_dir_for(
        &env.state_file(),
    ));
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
    scenarios::hostile_names(TestEnv::local("hostile"), DEADLINE, |_, dir, job| {
        std::fs::read(dir.join(format!("slurm-{job}.out"))).unwrap()
    });
}

#[test]
fn local_growing_or_locked_ready_file_waits_until_stable() {
    scenarios::growing_and_locked(TestEnv::local("stab"), DEADLINE);
}

#[test]
fn local_jobs_beyond_the_cap_wait() {
    let env = TestEnv::local("cap")
        .job("max_local_jobs: 1")
        .job("wrap_cmd: sh -c 'sleep 1' job");
    let a = env.ready_dir("a");
    let b = env.ready_dir("b");
    let _d = env.start();
    let ga = env.wait_final(&a, DEADLINE);
    let gb = env.wait_final(&b, DEADLINE);
    assert_eq!(
        (ga.final_state.as_deref(), gb.final_state.as_deref()),
        (Some("COMPLETED"), Some("COMPLETED"))
    );
    // With one slot the second job can only finish a full job length after the first.
    let (fa, fb) = (ga.finished_at.unwrap(), gb.finished_at.unwrap());
    assert!(
        (fb - fa).abs() >= 900,
        "jobs overlapped: finished {fa} and {fb}"
    );
}
