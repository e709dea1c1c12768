//! Lifecycle and operator commands on a running daemon: single instance, signals, status, retry, forget,
//! automatic retries.

use std::process::Command;
use std::time::Duration;

use crate::harness::slurm::*;
use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn a_second_daemon_on_the_same_state_file_refuses_to_start() {
    let env = TestEnv::local("two").job("wrap_cmd: true");
    let d1 = env.start();
    d1.wait_log("dirwatcher started", DEADLINE);
    let mut d2 = env.start();
    let status = d2.wait_exit(DEADLINE);
    let err = d2.log();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("another dirwatcher is already running"),
        "{err}"
    );
    // The first one is unaffected.
    let dir = env.ready_dir("still-works");
    assert_eq!(
        env.wait_final(&dir, DEADLINE).final_state.as_deref(),
        Some("COMPLETED")
    );
}

#[test]
fn sighup_with_a_bad_config_keeps_the_old_one_and_a_good_one_is_applied() {
    let env = TestEnv::local("hup").job("wrap_cmd: sh -c 'echo old > \"$1/which\"' job");
    let d = env.start();
    d.wait_log("dirwatcher started", DEADLINE);
    let good = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        good.replace("watch:", "watch:\n  bogus_key: 1"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("config reload refused", DEADLINE);
    assert!(
        d.log().contains("bogus_key"),
        "the refusal should name the key"
    );
    let a = env.ready_dir("after-bad-reload");
    env.wait_final(&a, DEADLINE);
    assert_eq!(
        std::fs::read_to_string(a.join("which")).unwrap().trim(),
        "old"
    );

    std::fs::write(env.config_path(), good.replace("echo old", "echo new")).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("config reloaded", DEADLINE);
    let b = env.ready_dir("after-good-reload");
    env.wait_final(&b, DEADLINE);
    assert_eq!(
        std::fs::read_to_string(b.join("which")).unwrap().trim(),
        "new"
    );
}

#[test]
fn status_json_reports_counts_in_flight_and_failures() {
    let env = TestEnv::local("status")
        .job("wrap_cmd: sh -c 'case \"$1\" in *bad) exit 3;; *slow) sleep 60;; esac' job");
    let ok = env.ready_dir("ok");
    let bad = env.ready_dir("bad");
    let slow = env.ready_dir("slow");
    let _d = env.start();
    env.wait_final(&ok, DEADLINE);
    env.wait_final(&bad, DEADLINE);
    let job = env.wait_job_id(&slow, DEADLINE);
    let s = env.status();
    assert_eq!(s["counts"]["completed"], 1, "{s}");
    assert_eq!(s["counts"]["failed"], 1, "{s}");
    assert_eq!(s["counts"]["in_flight"], 1, "{s}");
    let inflight = s["in_flight"].as_array().unwrap();
    assert_eq!(inflight.len(), 1);
    assert_eq!(inflight[0]["dir"], slow.to_string_lossy().as_ref());
    assert_eq!(inflight[0]["job_id"], job.as_str());
    assert!(inflight[0]["age_sec"].as_u64().is_some());
    let fails = s["recent_failures"].as_array().unwrap();
    assert_eq!(fails.len(), 1);
    assert_eq!(fails[0]["dir"], bad.to_string_lossy().as_ref());
    assert_eq!(fails[0]["state"], "FAILED");
    assert_eq!(fails[0]["exit_code"], "3:0");
    // The text form says the same for people.
    let out = Command::new(BIN)
        .args(["status", "--config"])
        .arg(env.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 in flight, 1 completed, 1 failed"),
        "{text}"
    );
}

#[test]
fn retry_and_forget_work_on_a_running_daemon() {
    // Fails until the operator fixes the data (creates `fixed`).
    let env = TestEnv::local("retry").job("wrap_cmd: sh -c 'test -e \"$1/fixed\"' job");
    let dir = env.ready_dir("needs-fix");
    let _d = env.start();
    env.wait_failure(&dir, DEADLINE);
    std::fs::write(dir.join("fixed"), "").unwrap();
    let out = Command::new(BIN)
        .args(["retry", "--config"])
        .arg(env.config_path())
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = wait_for(DEADLINE, "the retried attempt to complete", || {
        env.history(&dir)
            .into_iter()
            .last()
            .filter(|g| g.attempt == 2 && g.finished_at.is_some())
    });
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    assert_eq!(env.history(&dir).len(), 2, "each attempt is its own record");
    assert_eq!(env.failures().len(), 1);

    // Retrying a completed directory is refused with a reason.
    let out = Command::new(BIN)
        .args(["retry", "--config"])
        .arg(env.config_path())
        .arg("needs-fix")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not failed"));

    // Forget: the records go, and since the ready-file is still there the directory is processed anew.
    let out = Command::new(BIN)
        .args(["forget", "--config"])
        .arg(env.config_path())
        .arg("needs-fix")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("submitted again"));
    let g = wait_for(
        DEADLINE,
        "the forgotten directory to be processed again",
        || {
            let h = env.history(&dir);
            (h.len() == 1 && h[0].finished_at.is_some()).then(|| h[0].clone())
        },
    );
    assert_eq!(
        (g.attempt, g.final_state.as_deref()),
        (1, Some("COMPLETED"))
    );
}

#[test]
fn forget_is_refused_for_a_job_in_flight() {
    let env = TestEnv::local("forget-busy").job("wrap_cmd: sh -c 'sleep 60' job");
    let dir = env.ready_dir("busy");
    let _d = env.start();
    env.wait_job_id(&dir, DEADLINE);
    let out = Command::new(BIN)
        .args(["forget", "--config"])
        .arg(env.config_path())
        .arg("busy")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in flight"));
    assert_eq!(env.history(&dir).len(), 1);
}

#[test]
fn max_retries_resubmits_failed_jobs_with_a_record_and_line_each() {
    let env = TestEnv::local("maxretry")
        .job("wrap_cmd: sh -c 'exit 4' job")
        .behavior("max_retries: 2")
        .behavior("submit_backoff_sec: 0.2");
    let dir = env.ready_dir("flaky");
    let _d = env.start();
    let lines = wait_for(DEADLINE, "three failure-log lines", || {
        let f = env.failures();
        (f.len() >= 3).then_some(f)
    });
    let attempts: Vec<u64> = lines
        .iter()
        .map(|l| l["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    let h = wait_for(DEADLINE, "the third attempt recorded", || {
        let h = env.history(&dir);
        h.last()
            .is_some_and(|g| g.finished_at.is_some() && g.attempt == 3)
            .then_some(h)
    });
    assert_eq!(h.len(), 3, "no fourth attempt beyond max_retries");
}

#[test]
fn sigterm_mid_burst_exits_cleanly_and_records_every_submission() {
    if !slurm_available("sigterm_mid_burst_exits_cleanly_and_records_every_submission") {
        return;
    }
    let env = TestEnv::slurm("sigterm")
        .job("wrap_cmd: true")
        .watch("stability_checks: 1");
    let names: Vec<String> = (0..30).map(|i| format!("burst-{i:02}")).collect();
    for n in &names {
        env.ready_dir(n);
    }
    let mut d = env.start();
    wait_for(DEADLINE, "the burst to start", || {
        (env.submitted_count() >= 1).then_some(())
    });
    let (status, took) = d.stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Every sbatch that ran was recorded: no intent is left uncertain.
    for n in &names {
        for g in env.history(&env.root.join(n)) {
            assert!(!g.uncertain, "{n}: sbatch outcome not recorded before exit");
        }
    }
    // After a restart each directory ends with exactly one job.
    let _d2 = env.start();
    for n in &names {
        env.wait_final(&env.root.join(n), Duration::from_secs(120));
    }
    let all = wait_for(Duration::from_secs(30), "sacct to list every job", || {
        let v: Vec<Vec<String>> = names.iter().map(|n| jobs_named(&env.job_name(n))).collect();
        v.iter().all(|j| !j.is_empty()).then_some(v)
    });
    for (n, jobs) in names.iter().zip(all) {
        assert_eq!(jobs.len(), 1, "{n}: jobs {jobs:?}");
    }
}
