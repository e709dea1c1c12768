//! The core pipeline against the real Slurm cluster, plus the outcome scenarios shared with the local
//! executor (`scenarios`).

use std::fs::OpenOptions;
use std::time::Duration;

use crate::harness::slurm::*;
use crate::harness::*;

/// How long a Slurm test waits for a job: the one-node test cluster runs two jobs at once, and the suite
/// submits many in parallel (a job may queue a minute behind the others under CI load).
pub const SLURM_DEADLINE: Duration = Duration::from_secs(120);

macro_rules! need_slurm {
    ($name:expr) => {
        if !slurm_available($name) {
            return;
        }
    };
}

#[test]
fn stable_ready_dir_gets_exactly_one_job_matching_the_config() {
    need_slurm!("stable_ready_dir_gets_exactly_one_job_matching_the_config");
    let env = TestEnv::slurm("match")
        .job("gres: gpu:1")
        .job("time_limit: \"00:10:00\"")
        .job("wrap_cmd: printf '%s|%s|%s\\n' \"$WATCH_DIR\" \"$DW_TEST\"")
        .job("env: {DW_TEST: from-config}")
        .job("extra_args: [\"--nice=7\"]");
    let dir = env.ready_dir("case1");
    let d = env.start();
    let job = env.wait_job_id(&dir, SLURM_DEADLINE);
    let info = scontrol_job(&job);
    assert_eq!(info["Partition"], "main");
    assert_eq!(info["Account"], "dev");
    assert_eq!(info["TimeLimit"], "00:10:00");
    assert_eq!(info["JobName"], env.job_name("case1"));
    assert_eq!(info["WorkDir"], dir.to_string_lossy());
    assert_eq!(info["Nice"], "7", "extra_args not passed");
    assert!(
        info.get("TresPerNode").is_some_and(|t| t.contains("gpu:1")),
        "gres missing: {info:?}"
    );
    let g = env.wait_final(&dir, SLURM_DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    // The command reached the job with the directory as its last argument, WATCH_DIR and job.env set.
    let out = std::fs::read_to_string(env.job_output(&dir, &job)).unwrap();
    assert_eq!(out, format!("{0}|from-config|{0}\n", dir.display()));
    // Later scans must leave it alone: a directory dropped afterwards is processed (so the root was scanned
    // again, more than once), and case1 still has exactly one job.
    let probe = env.ready_dir("probe");
    env.wait_final(&probe, SLURM_DEADLINE);
    drop(d);
    assert_eq!(env.history(&dir).len(), 1);
    assert_eq!(wait_jobs_named(&env.job_name("case1")), vec![job]);
    assert!(dir.exists(), "deleted without delete_on_success");
}

#[test]
fn slurm_job_runs_with_job_umask() {
    need_slurm!("slurm_job_runs_with_job_umask");
    scenarios::job_umask(TestEnv::slurm("umask"), SLURM_DEADLINE);
}

#[test]
fn slurm_job_script_gets_the_directory_as_its_argument() {
    need_slurm!("slurm_job_script_gets_the_directory_as_its_argument");
    scenarios::job_script(TestEnv::slurm("script"), SLURM_DEADLINE);
}

/// Fault injection a real cluster cannot produce on demand: the first `sbatch` hangs (after submitting),
/// the second answers garbage (after submitting). Each lost answer is resolved by the job's key: exactly one
/// job per directory, and the hang is bounded by `command_timeout_sec`.
#[test]
fn hung_or_garbled_sbatch_answers_never_duplicate_a_job() {
    need_slurm!("hung_or_garbled_sbatch_answers_never_duplicate_a_job");
    let env = TestEnv::slurm("lost")
        .job("wrap_cmd: true")
        .job("command_timeout_sec: 2")
        .watch("stability_checks: 1");
    let calls = env.tmp.path().join("calls");
    let body = format!(
        "echo x >> '{calls}'\nn=$(wc -l < '{calls}')\nout=$(\"$REAL_SBATCH\" \"$@\")\nrc=$?\n\
         case $n in 1) exec sleep 60;; 2) echo 'Submitted batch job, probably'; exit 0;; esac\necho \"$out\"\nexit $rc\n",
        calls = calls.display()
    );
    let path = fake_sbatch(&env, &body);
    let a = env.ready_dir("hung");
    let d = env.start_env(&[], &[("PATH", path.as_ref())]);
    env.wait_final(&a, SLURM_DEADLINE);
    let b = env.ready_dir("garbled");
    env.wait_final(&b, SLURM_DEADLINE);
    for (dir, name) in [(&a, "hung"), (&b, "garbled")] {
        assert_eq!(env.history(dir).len(), 1);
        let jobs = wait_for(Duration::from_secs(30), "sacct to list the job", || {
            Some(wait_jobs_named(&env.job_name(name))).filter(|j| !j.is_empty())
        });
        assert_eq!(jobs.len(), 1, "{name}: {jobs:?}");
        assert_eq!(env.history(dir)[0].job_id.as_ref(), jobs.first());
    }
    let log = d.log();
    assert!(log.contains("did not finish within 2s"), "{log}");
    assert!(log.contains("printed no job id"), "{log}");
    assert_eq!(log.matches("adopted job").count(), 2, "{log}");
}

#[test]
fn slurm_completed_is_deleted_with_delete_on_success() {
    need_slurm!("slurm_completed_is_deleted_with_delete_on_success");
    scenarios::completed_deleted(TestEnv::slurm("del"), SLURM_DEADLINE);
}

#[test]
fn slurm_exit_3_is_a_failed_line() {
    need_slurm!("slurm_exit_3_is_a_failed_line");
    scenarios::exit_3_failed(TestEnv::slurm("fail"), SLURM_DEADLINE);
}

#[test]
fn slurm_over_time_limit_is_a_timeout_line() {
    need_slurm!("slurm_over_time_limit_is_a_timeout_line");
    // Slurm rounds limits up to a minute and checks them every ~30 s: budget two and a half minutes.
    scenarios::timeout(
        TestEnv::slurm("timeout").job("time_limit: \"1\""),
        Duration::from_secs(150),
    );
}

#[test]
fn slurm_scancel_is_a_cancelled_line() {
    need_slurm!("slurm_scancel_is_a_cancelled_line");
    scenarios::cancelled(TestEnv::slurm("cancel"), SLURM_DEADLINE, scancel);
}

#[test]
fn slurm_hostile_names_reach_the_job_as_one_argument() {
    need_slurm!("slurm_hostile_names_reach_the_job_as_one_argument");
    // ~20 of the generated names on the real cluster (sbatch, --chdir, --wrap, slurmstepd).
    let _ = scenarios::hostile_names(
        TestEnv::slurm("hostile"),
        Duration::from_secs(120),
        crate::hostile::names(20, 9),
        |env, dir, job| {
            let p = env.job_output(dir, job);
            std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"))
        },
    );
}

#[test]
fn slurm_growing_or_locked_ready_file_waits_until_stable() {
    need_slurm!("slurm_growing_or_locked_ready_file_waits_until_stable");
    scenarios::growing_and_locked(TestEnv::slurm("stab"), SLURM_DEADLINE);
}

#[test]
fn restart_neither_resubmits_nor_forgets_an_in_flight_job() {
    need_slurm!("restart_neither_resubmits_nor_forgets_an_in_flight_job");
    let env = TestEnv::slurm("restart").job("wrap_cmd: sh -c 'sleep 4' job");
    let done = env.ready_dir("finished");
    let mut d = env.start();
    env.wait_final(&done, SLURM_DEADLINE);
    let running = env.ready_dir("running");
    let job = env.wait_job_id(&running, SLURM_DEADLINE);
    let (status, took) = d.stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    assert!(
        env.history(&running).last().unwrap().finished_at.is_none(),
        "test needs the job still in flight"
    );

    let _d2 = env.start();
    let g = env.wait_final(&running, SLURM_DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    assert_eq!(g.job_id.as_deref(), Some(job.as_str()));
    assert_eq!(env.history(&running).len(), 1);
    assert_eq!(env.history(&done).len(), 1);
    assert_eq!(wait_jobs_named(&env.job_name("running")), vec![job]);
    assert_eq!(wait_jobs_named(&env.job_name("finished")).len(), 1);
}

/// Outcome scenarios run against both executors.
pub mod scenarios {
    use super::*;
    use std::path::Path;

    pub fn completed_deleted(env: TestEnv, deadline: Duration) {
        let env = env.job("wrap_cmd: ls").behavior("delete_on_success: true");
        let gone = env.ready_dir("gone");
        // A symlinked directory in the root pointing outside must never be followed or deleted.
        let outside = env.tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("_READY"), "").unwrap();
        std::fs::write(outside.join("precious"), "keep me").unwrap();
        std::os::unix::fs::symlink(&outside, env.root.join("link")).unwrap();
        let d = env.start();
        let g = env.wait_final(&gone, deadline);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
        wait_for(deadline, "the directory to be deleted", || {
            (!gone.exists()).then_some(())
        });
        d.wait_log("deleted", deadline);
        assert!(
            outside.join("precious").exists(),
            "followed a symlink out of the root"
        );
        assert!(
            env.history(&env.root.join("link")).is_empty(),
            "a symlinked directory was processed"
        );
        // The job's output was kept out of the deleted directory.
        let logs: Vec<_> = std::fs::read_dir(env.root.join(".dirwatcher/logs"))
            .unwrap()
            .collect();
        assert_eq!(
            logs.len(),
            1,
            "job output should be in <root>/.dirwatcher/logs"
        );
    }

    pub fn job_script(env: TestEnv, deadline: Duration) {
        let script = env.tmp.path().join("process.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nprintf 'script got [%s] %s args\\n' \"$1\" \"$#\" > \"$1/result\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = env.job(&format!("job_script: {}", script.display()));
        let dir = env.ready_dir("with script");
        let _d = env.start();
        let g = env.wait_final(&dir, deadline);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
        let got = std::fs::read_to_string(dir.join("result")).unwrap();
        assert_eq!(got, format!("script got [{}] 1 args\n", dir.display()));
    }

    /// `job.umask` is the job's umask, whatever the daemon's: its output and the files it makes get it
    /// (issue 14, D4: the service's `UMask=0027` reached every job).
    pub fn job_umask(env: TestEnv, deadline: Duration) {
        use std::os::unix::fs::PermissionsExt;
        let env = env
            .job("umask: \"0007\"")
            .job("wrap_cmd: sh -c 'umask; echo x > \"$1/made\"' job");
        let dir = env.ready_dir("masked");
        let _d = env.start();
        let job = env.wait_job_id(&dir, deadline);
        let g = env.wait_final(&dir, deadline);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
        let out = env
            .root
            .join(".dirwatcher/logs")
            .join(format!("{}-{job}.out", env.job_name("masked")));
        let text = std::fs::read_to_string(&out)
            .unwrap_or_else(|e| panic!("cannot read the job's output `{}`: {e}", out.display()));
        assert_eq!(text.trim(), "0007", "the umask the job saw");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("made")), 0o660, "a file the job made");
        assert_eq!(mode(&out), 0o660, "the job's output file");
    }

    pub fn exit_3_failed(env: TestEnv, deadline: Duration) {
        let env = env.job("wrap_cmd: sh -c 'exit 3' job");
        let dir = env.ready_dir("bad");
        let kept = env.ready_dir("kept-without-delete");
        let _d = env.start();
        let rec = env.wait_failure(&dir, deadline);
        assert_eq!(rec["state"], "FAILED");
        assert_eq!(rec["exit_code"], "3:0");
        assert_eq!(rec["job_name"], env.job_name("bad"));
        assert!(rec["job_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(rec["time"].as_str().is_some_and(|s| s.ends_with('Z')));
        let g = env.wait_final(&dir, deadline);
        assert_eq!(g.final_state.as_deref(), Some("FAILED"));
        assert!(
            dir.exists() && kept.exists(),
            "a failed directory must be kept"
        );
        assert_eq!(env.history(&dir).len(), 1, "resubmitted on its own");
    }

    pub fn timeout(env: TestEnv, deadline: Duration) {
        let env = env.job("wrap_cmd: sh -c 'sleep 300' job");
        let dir = env.ready_dir("slow");
        let _d = env.start();
        let rec = env.wait_failure(&dir, deadline);
        assert_eq!(rec["state"], "TIMEOUT");
    }

    pub fn cancelled(env: TestEnv, deadline: Duration, cancel: impl Fn(&str)) {
        let env = env.job("wrap_cmd: sh -c 'sleep 300' job");
        let dir = env.ready_dir("cancel-me");
        let d = env.start();
        let job = env.wait_job_id(&dir, deadline);
        d.wait_log("submitted job", deadline);
        cancel(&job);
        let rec = env.wait_failure(&dir, deadline);
        assert!(
            rec["state"].as_str().unwrap().starts_with("CANCELLED"),
            "{rec}"
        );
        assert_eq!(rec["job_id"], job.as_str());
    }

    /// The fixed hostile names every executor is tried with, and `extra` generated ones: each reaches its
    /// job as one argument with exactly its bytes, once, and nothing in any name is executed.
    pub fn hostile_names(
        env: TestEnv,
        deadline: Duration,
        extra: Vec<std::ffi::OsString>,
        output_of: impl Fn(&TestEnv, &Path, &str) -> Vec<u8>,
    ) -> TestEnv {
        use std::os::unix::ffi::OsStrExt;
        let env = env
            .job("wrap_cmd: printf '%s|'")
            .watch("stability_checks: 1");
        let mut names: Vec<std::ffi::OsString> = [
            std::ffi::OsStr::new("a b'$(touch pwned)\";x"),
            std::ffi::OsStr::new("line\nbreak `touch pwned` ; touch pwned"),
            // Not UTF-8 (Latin-1 bytes, as old instruments write them).
            std::ffi::OsStr::from_bytes(b"caf\xe9 $(touch pwned)"),
        ]
        .map(std::ffi::OsStr::to_os_string)
        .into();
        names.extend(extra);
        let dirs: Vec<_> = names.iter().map(|n| env.ready_dir(n)).collect();
        let _d = env.start();
        for (name, dir) in names.iter().zip(&dirs) {
            let g = env.wait_final(dir, deadline);
            assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{name:?}");
            assert_eq!(
                env.history(dir).len(),
                1,
                "{name:?} got more than one record"
            );
            let out = output_of(&env, dir, g.job_id.as_deref().unwrap());
            let mut want = bytes_of(dir);
            want.push(b'|');
            assert_eq!(out, want, "{name:?} did not arrive as one argument");
        }
        let injected = find_named(env.tmp.path(), "pwned");
        assert!(injected.is_empty(), "a name was executed: {injected:?}");
        assert!(!Path::new("pwned").exists());
        env
    }

    /// Every file or folder called `name` below `dir` (links not followed).
    fn find_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if e.file_name() == name {
                    found.push(p.clone());
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(p);
                }
            }
        }
        found
    }

    pub fn growing_and_locked(env: TestEnv, deadline: Duration) {
        let env = env.job("wrap_cmd: ls").watch("stability_interval_sec: 0.5");
        // A ready-file held under LOCK_EX by its writer.
        let locked = env.root.join("locked");
        std::fs::create_dir(&locked).unwrap();
        let writer = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(locked.join("_READY"))
            .unwrap();
        writer.lock().unwrap();
        // A ready-file that keeps growing.
        let growing = env.root.join("growing");
        std::fs::create_dir(&growing).unwrap();
        std::fs::write(growing.join("_READY"), "").unwrap();
        // A directory without a ready-file.
        let never = env.root.join("never");
        std::fs::create_dir(&never).unwrap();
        std::fs::write(never.join("data"), "x").unwrap();

        // The writer keeps appending (every 50 ms, ten times per stability interval) until told to stop.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer_thread = {
            let (stop, ready) = (stop.clone(), growing.join("_READY"));
            std::thread::spawn(move || {
                use std::io::Write;
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut f = OpenOptions::new().append(true).open(&ready).unwrap();
                    writeln!(f, "line {n}").unwrap();
                    n += 1;
                    std::thread::sleep(Duration::from_millis(50)); // the writer's pace, not synchronisation
                }
            })
        };
        let d = env.start_with(&["-v"]);
        d.wait_log("is locked by its writer", deadline);
        wait_for(
            deadline,
            "three observed changes of the growing ready-file",
            || (d.log().matches("changed since last look").count() >= 3).then_some(()),
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer_thread.join().unwrap();
        assert!(env.history(&growing).is_empty(), "submitted while growing");
        assert!(env.history(&locked).is_empty(), "submitted while locked");
        writer.unlock().unwrap();
        let g = env.wait_final(&growing, deadline);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
        let l = env.wait_final(&locked, deadline);
        assert_eq!(l.final_state.as_deref(), Some("COMPLETED"));
        assert!(
            env.history(&never).is_empty(),
            "a directory without a ready-file was submitted"
        );
    }
}

/// A burst at Slurm's pace: 40 directories ready at once, up to 4 `sbatch` at a time within a bucket of 10
/// at once and 10 a second: every directory gets exactly one job, and the bucket held the pace back.
#[test]
fn a_burst_gets_one_job_per_directory_within_the_submit_rate() {
    need_slurm!("a_burst_gets_one_job_per_directory_within_the_submit_rate");
    let env = TestEnv::slurm("burst")
        .job("wrap_cmd: true")
        .job("submit_concurrency: 4")
        .job("submit_rate: {burst: 10, per_sec: 10}")
        .watch("stability_checks: 1");
    let names: Vec<String> = (0..40).map(|n| format!("b{n:02}")).collect();
    let dirs: Vec<_> = names.iter().map(|n| env.ready_dir(n)).collect();
    let _d = env.start();
    wait_for(SLURM_DEADLINE, "40 submissions", || {
        (env.submitted_count() >= 40).then_some(())
    });
    let mut at = Vec::new();
    for (name, dir) in names.iter().zip(&dirs) {
        let h = env.history(dir);
        assert_eq!(h.len(), 1, "{name}: {h:?}");
        at.push(h[0].submitted_at.expect("a submission time"));
        let jobs = wait_jobs_named(&env.job_name(name));
        assert_eq!(jobs.len(), 1, "{name}: jobs {jobs:?}");
    }
    at.sort();
    // 40 calls from a bucket of 10 refilled at 10/s take at least 3 s from the first call to the last.
    // `submitted_at` is written when a chunk's answers are recorded, after its slowest call: the first
    // chunk (the burst of 10) is recorded up to its own duration after its first call, hence the margin.
    // Without the bucket the 40 calls, 4 at a time, take a fraction of a second on an idle cluster; the
    // exact pace (no window holds more calls than the bucket allows) is the bench's test.
    assert!(
        at[39] - at[0] >= 2_000,
        "the bucket was not followed: {} ms",
        at[39] - at[0]
    );
}
