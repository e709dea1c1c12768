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

/// `dirwatcher <args…> --config <env's config>`: (exit code, stdout, stderr).
fn dw(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    dw_as(env, None, args)
}

/// Like [`dw`], as another user (`setpriv`), for what a non-root operator or the service user sees.
fn dw_as(env: &TestEnv, user: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args(["--reuid", u, "--regid", "nogroup", "--clear-groups", BIN]);
            c
        }
        None => Command::new(BIN),
    };
    let out = cmd
        .args(args)
        .arg("--config")
        .arg(env.config_path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// `explain --json` of one directory.
fn explain(env: &TestEnv, user: Option<&str>, dir: &str) -> serde_json::Value {
    let (code, out, err) = dw_as(env, user, &["explain", "--json", dir]);
    assert_eq!(code, 0, "explain {dir}: {err}");
    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
    all[0].clone()
}

/// The `ok` flag and the words of one link of an explanation's chain.
fn link(e: &serde_json::Value, check: &str) -> (bool, String) {
    let c = e["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no `{check}` check in {e:#}"));
    (
        c["ok"].as_bool().unwrap(),
        c["says"].as_str().unwrap().to_string(),
    )
}

#[test]
fn explain_says_why_each_directory_is_or_is_not_picked_up() {
    let env = TestEnv::local("explain")
        .job("wrap_cmd: sh -c 'case \"$1\" in *bad) exit 3;; esac' job")
        .behavior("max_retries: 1")
        .behavior("submit_backoff_sec: 600")
        .behavior("submit_backoff_max_sec: 600");
    let good = env.ready_dir("good");
    let bad = env.ready_dir("bad");
    env.ready_dir(".hidden");
    std::os::unix::fs::symlink(&good, env.root.join("link")).unwrap();
    std::fs::create_dir(env.root.join("typo")).unwrap();
    std::fs::write(env.root.join("typo/READY"), "").unwrap();
    // A writer that keeps appending to its ready-file: never stable while it writes.
    let growing = env.root.join("growing");
    std::fs::create_dir(&growing).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, file) = (stop.clone(), growing.join("_READY"));
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::File::create(file).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(b"x").unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // A writer that holds its ready-file locked.
    let locked = env.ready_dir("locked");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(locked.join("_READY"))
        .unwrap();
    lock.lock().unwrap();
    let _d = env.start();
    env.wait_final(&good, DEADLINE);
    wait_for(DEADLINE, "bad's retry to be queued", || {
        (env.history(&bad).len() == 2).then_some(())
    });
    wait_for(
        DEADLINE,
        "the daemon to report `locked` and `growing`",
        || {
            let s = env.status();
            let w = s["waiting"].as_array().cloned().unwrap_or_default();
            let has = |d: &str, st: &str| w.iter().any(|x| x["dir"] == d && x["state"] == st);
            (has("locked", "locked") && has("growing", "settling")).then_some(())
        },
    );

    let e = explain(&env, None, "link");
    let (ok, says) = link(&e, "type");
    assert!(!ok && says.contains("symlink"), "{e:#}");
    assert!(
        e["next"].as_str().unwrap().contains("not picked up"),
        "{e:#}"
    );

    let e = explain(&env, None, ".hidden");
    assert!(!link(&e, "hidden").0, "{e:#}");
    assert!(e["next"].as_str().unwrap().contains("hidden"), "{e:#}");

    let e = explain(&env, None, "typo");
    let (ok, says) = link(&e, "ready_file");
    assert!(!ok && says.contains("did you mean"), "{e:#}");
    assert_eq!(e["near_misses"], serde_json::json!(["READY"]));

    let e = explain(&env, None, "growing");
    assert_eq!(e["daemon_sees"]["state"], "settling", "{e:#}");
    assert!(
        e["next"].as_str().unwrap().contains("identical looks"),
        "{e:#}"
    );

    let e = explain(&env, None, locked.to_str().unwrap());
    let (ok, says) = link(&e, "lock");
    assert!(!ok && says.contains("locked"), "{e:#}");
    assert_eq!(e["ready_file"]["lock"], "held");
    assert!(e["next"].as_str().unwrap().contains("lock"), "{e:#}");

    let e = explain(&env, None, "good");
    let r = &e["records"][0];
    assert_eq!(
        (r["state"].as_str(), r["slurm_state"].as_str()),
        (Some("completed"), Some("COMPLETED"))
    );
    let out = r["output"].as_str().unwrap();
    assert!(
        std::path::Path::new(out).exists(),
        "output file {out} in {e:#}"
    );
    assert!(e["next"].as_str().unwrap().starts_with("nothing"), "{e:#}");

    let e = explain(&env, None, "bad");
    let recs = e["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "{e:#}");
    assert_eq!(
        (recs[0]["state"].as_str(), recs[0]["exit_code"].as_str()),
        (Some("failed"), Some("3:0"))
    );
    assert_eq!(recs[1]["state"], "submitting");
    assert!(
        recs[1]["next_try_at"].is_string(),
        "the retry's time: {e:#}"
    );
    assert!(e["next"].as_str().unwrap().contains("attempt 2"), "{e:#}");

    // A directory this user cannot read.
    let secret = env.ready_dir("secret");
    use std::os::unix::fs::PermissionsExt;
    let user = if is_root() {
        // `nobody` must reach the config, the root and the ledger's folder to get that far.
        for p in [env.tmp.path(), env.root.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(env.config_path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
        Some("nobody")
    } else {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
        None
    };
    let e = explain(&env, user, "secret");
    let (ok, says) = link(&e, "readable");
    assert!(!ok && says.contains("cannot read"), "{e:#}");
    if !is_root() {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // The text form says the same in words.
    let (_, text, _) = dw(&env, &["explain", "typo", "link"]);
    assert!(text.contains("did you mean it? found `READY`"), "{text}");
    assert!(text.contains("symlink"), "{text}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}

#[test]
fn status_says_whether_the_daemon_runs_and_lists_directories_in_slurms_parsable_style() {
    let env = TestEnv::local("health")
        .job("wrap_cmd: sh -c 'case \"$1\" in *bad) exit 3;; *slow) sleep 60;; esac' job");
    env.write_config();
    let (code, _, err) = dw(&env, &["status"]);
    assert_eq!(code, 1);
    assert!(err.contains("no ledger"), "{err}");
    let ok = env.ready_dir("ok");
    let bad = env.ready_dir("bad");
    let slow = env.ready_dir("slow");
    let mut d = env.start();
    env.wait_final(&ok, DEADLINE);
    env.wait_final(&bad, DEADLINE);
    env.wait_job_id(&slow, DEADLINE);
    let s = wait_for(
        DEADLINE,
        "the snapshot to show the slow job running",
        || {
            let s = env.status();
            (s["in_flight"][0]["slurm_state"] == "RUNNING").then_some(s)
        },
    );
    assert_eq!(s["schema_version"], 2);
    assert_eq!(s["daemon"]["state"], "running", "{s:#}");
    assert_eq!(s["daemon"]["pid"], d.pid(), "{s:#}");
    assert!(
        s["daemon"]["last_poll_age_sec"].as_u64().unwrap() < 10,
        "{s:#}"
    );
    assert_eq!(s["healthy"], true, "{s:#}");
    for w in [
        "settling",
        "locked",
        "unreadable",
        "submitting",
        "in_flight",
        "completed",
        "failed",
        "lost",
    ] {
        assert!(s["counts"][w].is_u64(), "counts.{w} in {s:#}");
    }
    let (_, text, _) = dw(&env, &["status"]);
    assert!(
        text.contains(&format!("dirwatcher is running: pid {}", d.pid())),
        "{text}"
    );

    let (code, out, err) = dw(&env, &["status", "-P", "-o", "name,state,exit_code"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "name|state|exit_code",
            "bad|failed|3:0",
            "ok|completed|0:0",
            "slow|in_flight|"
        ]
    );
    let (_, out, _) = dw(&env, &["status", "-P", "--state", "failed", "-o", "dir"]);
    assert_eq!(out, format!("dir\n{}\n", bad.display()));
    let (_, out, _) = dw(&env, &["status", "-P", "-o", "name", "slow"]);
    assert_eq!(out, "name\nslow\n");
    let (code, _, err) = dw(&env, &["status", "-P", "-o", "colour"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown field `colour`"), "{err}");

    // A stopped daemon: said so, and its snapshot is called stale.
    d.stop();
    let s = env.status();
    assert_eq!(s["daemon"]["state"], "not running", "{s:#}");
    assert_eq!(s["daemon"]["snapshot"], "stale", "{s:#}");
    assert_eq!(s["healthy"], false);
    let (_, text, _) = dw(&env, &["status"]);
    assert!(text.contains("dirwatcher is NOT running"), "{text}");

    // An operator who may not read the ledger is told so, not that there is none.
    if is_root() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(env.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(env.config_path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let state_dir = env.tmp.path().join("private");
        std::fs::create_dir(&state_dir).unwrap();
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::rename(env.state_file(), state_dir.join("state.db")).unwrap();
        let cfg = std::fs::read_to_string(env.config_path()).unwrap();
        let moved = cfg.replace(
            &env.state_file().display().to_string(),
            &state_dir.join("state.db").display().to_string(),
        );
        std::fs::write(env.config_path(), moved).unwrap();
        let (code, _, err) = dw_as(&env, Some("nobody"), &["status"]);
        assert_eq!(code, 1);
        assert!(
            err.contains("permission denied") && !err.contains("no ledger"),
            "{err}"
        );
    }
}

#[test]
fn cancel_ends_a_job_and_undoes_a_retry_and_retry_all_failed_picks_by_state() {
    let env = TestEnv::local("cancel").job("wrap_cmd: sh -c 'sleep 60' job");
    let slow = env.ready_dir("slow");
    let _d = env.start();
    let job = env.wait_job_id(&slow, DEADLINE);
    wait_for(DEADLINE, "the job to run", || {
        (env.status()["in_flight"][0]["slurm_state"] == "RUNNING").then_some(())
    });
    let (code, out, err) = dw(&env, &["cancel", "slow"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("cancelled job {job}")), "{out}");
    let g = env.history(&slow).pop().unwrap();
    assert_eq!(g.state, dirwatcher::engine::GenState::Failed);
    assert!(g.final_state.unwrap().starts_with("CANCELLED by operator"));
    // The job itself is gone: its runner recorded the cancellation.
    let status = env
        .state_file()
        .with_extension("db.local-jobs")
        .join(&job)
        .join("status.json");
    let end = wait_for(DEADLINE, "the runner to record its end", || {
        std::fs::read_to_string(&status).ok()
    });
    assert!(end.contains("CANCELLED"), "{end}");
    env.wait_failure(&slow, DEADLINE);

    // Nothing else failed in state TIMEOUT; the cancelled one is retried, and that retry withdrawn.
    let (_, out, _) = dw(&env, &["retry", "--all-failed", "--state", "TIMEOUT"]);
    assert!(
        out.contains("no failed directories in state TIMEOUT"),
        "{out}"
    );
    let (code, out, _) = dw(&env, &["cancel", "slow"]);
    assert_eq!(code, 1, "a finished directory has nothing to cancel: {out}");
    // Stop the daemon first so the queued retry is not submitted before it is withdrawn.
    drop(_d);
    let (_, out, _) = dw(&env, &["retry", "--all-failed", "--state", "cancelled"]);
    assert!(out.contains("queued attempt 2"), "{out}");
    let (code, out, err) = dw(&env, &["cancel", "slow"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("withdrew queued attempt 2"), "{out}");
    assert_eq!(env.history(&slow).len(), 1);
}

/// `cancel`, `retry` and `forget` take many directories by a glob on their names (`--match`), each only
/// the ones it may act on: cancel those in flight, retry the failed ones (by state too), forget those with
/// nothing in flight. The glob is matched inside the root by dirwatcher, not expanded by a shell.
#[test]
fn cancel_retry_and_forget_take_directories_by_a_glob_each_only_those_it_may_act_on() {
    let env = TestEnv::local("bulk").job(
        "wrap_cmd: sh -c 'if [ -e \"$1/fail\" ]; then exit 1; fi; while [ ! -e \"$1/go\" ]; do sleep 0.2; done' job",
    );
    let failing = ["run-1", "run-2", "keep-1"].map(|n| {
        let d = env.ready_dir(n);
        std::fs::write(d.join("fail"), "").unwrap();
        d
    });
    let run_slow = env.ready_dir("run-slow");
    let keep_slow = env.ready_dir("keep-slow");
    let d = env.start();
    for f in &failing {
        env.wait_failure(f, DEADLINE);
    }
    wait_for(DEADLINE, "two jobs running", || {
        let st = env.status();
        let running = st["in_flight"]
            .as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|j| j["slurm_state"] == "RUNNING"));
        running.then_some(())
    });
    // cancel: the one in flight that matches; the other in flight and the failed ones are not touched.
    let (code, out, err) = dw(&env, &["cancel", "--match", "run-*"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("run-slow") && out.contains("cancelled job"),
        "{out}"
    );
    env.wait_failure(&run_slow, DEADLINE);
    assert!(env.history(&keep_slow).pop().unwrap().state.is_active());
    let (code, out, _) = dw(&env, &["cancel", "--match", "nothing-*"]);
    assert_eq!(
        (code, out.trim()),
        (0, "no directory in flight matches `nothing-*`")
    );
    // Stopped, so the queued retries stay queued while the test looks.
    drop(d);
    // retry: the failed ones that match and ended FAILED (run-slow ended CANCELLED).
    let (code, out, err) = dw(&env, &["retry", "--match", "run-*", "--state", "FAILED"]);
    assert_eq!(code, 0, "{err}");
    let mut retried: Vec<&str> = out
        .lines()
        .map(|l| {
            let shown = l.split(':').next().unwrap().trim_matches('"');
            shown.rsplit('/').next().unwrap()
        })
        .collect();
    retried.sort_unstable();
    assert_eq!(retried, ["run-1", "run-2"], "{out}");
    // --state alone would pick among many: refused with the fix.
    let (code, _, err) = dw(&env, &["retry", "--state", "FAILED"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("fix: add `--all-failed` or `--match GLOB`"),
        "{err}"
    );
    // forget: keep-1 (failed) goes; keep-slow has its job in flight and stays.
    let (code, out, err) = dw(&env, &["forget", "--match", "keep-*"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        env.history(&failing[2]).is_empty(),
        "keep-1 still in the ledger"
    );
    assert_eq!(
        env.history(&keep_slow).len(),
        1,
        "a job in flight was forgotten"
    );
    // The job left running ends.
    std::fs::write(keep_slow.join("go"), "").unwrap();
}

#[test]
fn run_dry_run_prints_the_exact_command_and_writes_nothing() {
    let env = TestEnv::local("dry").job("wrap_cmd: echo hi");
    env.write_config();
    let dir = env.ready_dir("case 1");
    let (code, out, err) = dw(&env, &["run", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stable; would run locally"), "{out}");
    assert!(
        out.contains(&format!("WATCH_DIR='{}'", dir.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "argv [\"sh\", \"-c\", \"echo hi '{}'\"]",
            dir.display()
        )),
        "{out}"
    );
    assert!(!env.state_file().exists(), "a dry run created the ledger");
    assert!(!dir.join("slurm-").exists());

    // With Slurm as the executor: the sbatch argument vector, and still nothing is submitted.
    let slurm = TestEnv::slurm("dry-slurm")
        .job("wrap_cmd: echo hi")
        .job("time_limit: \"00:05:00\"");
    slurm.write_config();
    slurm.ready_dir("case1");
    let (code, out, err) = dw(&slurm, &["run", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let name = slurm.job_name("case1");
    assert!(
        out.contains(&format!("sbatch --parsable '--job-name={name}' ")),
        "{out}"
    );
    assert!(
        out.contains("'--partition=main' '--account=dev' '--time=00:05:00'"),
        "{out}"
    );
    assert!(!slurm.state_file().exists());
}

#[test]
fn cancel_scancels_a_real_slurm_job_and_the_daemon_does_not_retry_it() {
    if !slurm_available("cancel_scancels_a_real_slurm_job_and_the_daemon_does_not_retry_it") {
        return;
    }
    let env = TestEnv::slurm("cancel-slurm")
        .job("wrap_cmd: sh -c 'sleep 120' job")
        .behavior("max_retries: 2");
    let dir = env.ready_dir("long");
    let d = env.start();
    let job = env.wait_job_id(&dir, Duration::from_secs(60));
    wait_for(
        Duration::from_secs(60),
        "the job to be known to the controller",
        || {
            let s = squeue_state(&job);
            (s == "RUNNING" || s == "PENDING").then_some(())
        },
    );
    let (code, out, err) = dw(&env, &["cancel", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("cancelled job {job}")), "{out}");
    wait_for(
        Duration::from_secs(30),
        "slurm to show the job cancelled",
        || squeue_state(&job).starts_with("CANCELLED").then_some(()),
    );
    let g = env.history(&dir).pop().unwrap();
    assert!(
        g.final_state
            .as_deref()
            .unwrap()
            .starts_with("CANCELLED by operator"),
        "{g:?}"
    );
    // The daemon writes the failure-log line of the cancelled job, and queues no retry for it.
    env.wait_failure(&dir, Duration::from_secs(30));
    assert_eq!(env.history(&dir).len(), 1, "{}", d.log());
    assert_eq!(
        wait_jobs_named(&env.job_name("long")),
        std::slice::from_ref(&job)
    );
}
