//! Verdicts on the real cluster: a job Slurm requeues is one job with one outcome, recorded after its last
//! run; a job id no source ever shows becomes `lost`, loudly, and `retry` resubmits it. (Job-id reuse and node
//! failures restart or take down shared cluster parts: they are in `tests/faults`.)

use std::process::Command;
use std::time::Duration;

use crate::harness::slurm::*;
use crate::harness::*;

macro_rules! need_slurm {
    ($name:expr) => {
        if !slurm_available($name) {
            return;
        }
    };
}

#[test]
fn a_job_requeued_while_running_has_one_outcome_after_its_last_run() {
    need_slurm!("a_job_requeued_while_running_has_one_outcome_after_its_last_run");
    requeued_job_has_one_outcome(TestEnv::slurm("requeue"));
}

/// A job Slurm requeues while it runs is one job with one outcome, recorded after its last run (shared
/// with the REST back end's tests: the same rules over another transport).
pub fn requeued_job_has_one_outcome(env: TestEnv) {
    let (env, runs_file) = counting_env(env);
    let dir = env.ready_dir("case");
    let d = env.start();
    let job = env.wait_job_id(&dir, Duration::from_secs(60));
    wait_for(Duration::from_secs(60), "the first run to start", || {
        (runs(&runs_file) == 1).then_some(())
    });
    let out = Command::new("scontrol")
        .args(["requeue", &job])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scontrol requeue {job}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `scontrol requeue` kills the first run before it returns.
    start_now(&job, std::time::SystemTime::now());
    // While the job waits for its second run, nothing is recorded and nothing deleted.
    assert!(dir.exists(), "deleted while a later run could still start");
    let g = env.history(&dir).pop().unwrap();
    assert_eq!(g.finished_at, None, "an outcome before the last run: {g:?}");
    let g = env.wait_final(&dir, Duration::from_secs(90));
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
    assert_eq!(runs(&runs_file), 2, "the job did not run twice");
    assert_eq!(env.history(&dir).len(), 1, "one job, one record");
    assert!(env.failures().is_empty(), "{:?}", env.failures());
    wait_for(
        Duration::from_secs(10),
        "the directory to be deleted",
        || (!dir.exists()).then_some(()),
    );
    let log = d.log();
    assert_eq!(
        log.matches("COMPLETED; the directory will be deleted")
            .count(),
        1,
        "{log}"
    );
    assert!(!log.contains(" ended "), "{log}");
}

#[test]
fn a_job_no_source_ever_shows_becomes_lost_and_retry_resubmits_it() {
    need_slurm!("a_job_no_source_ever_shows_becomes_lost_and_retry_resubmits_it");
    // The one thing a real cluster cannot do on demand: answer sbatch with the id of a job it never
    // creates. The first sbatch prints such an id; later ones are the real sbatch.
    let env = TestEnv::slurm("lost");
    let calls = env.tmp.path().join("calls");
    let body = format!(
        "echo x >> '{calls}'\nif [ \"$(wc -l < '{calls}')\" = 1 ]; then echo {LOST_ID}; exit 0; fi\nexec \"$REAL_SBATCH\" \"$@\"\n",
        calls = calls.display()
    );
    let path = fake_sbatch(&env, body.as_str());
    lost_job_is_said_and_retry_resubmits_it(env, &[("PATH", path.as_ref())]);
}

/// The id the first submission is answered with: no job has it, ever.
pub const LOST_ID: &str = "66999999";

/// The first submission of `env` is answered with [`LOST_ID`] and creates no job (the daemon started
/// with `envs`): the job becomes `lost` after `lost_after_sec`, once, loudly (log, metric, status), its
/// directory kept and no failure recorded; `dirwatcher retry` resubmits it and the new job completes
/// (shared with the REST back end's tests: the same rules over another transport).
pub fn lost_job_is_said_and_retry_resubmits_it(env: TestEnv, envs: &[(&str, &std::ffi::OsStr)]) {
    let env = env
        .job("wrap_cmd: true")
        .job("lost_after_sec: 4")
        .behavior("delete_on_success: true");
    let prom = env.tmp.path().join("metrics.prom");
    let mut y = std::fs::read_to_string(env.write_config()).unwrap();
    y += &format!("metrics:\n  textfile: {:?}\n", prom.display().to_string());
    let cfg = env.config_path();
    let dir = env.ready_dir("case");
    std::fs::write(&cfg, y).unwrap();
    let d = Daemon::spawn_env(&cfg, &env.tmp.path().join("daemon.log"), &[], envs);
    let g = env.wait_final(&dir, Duration::from_secs(60));
    assert_eq!(
        (g.state.as_str(), g.job_id.as_deref()),
        ("lost", Some(LOST_ID))
    );
    let waited = g.finished_at.unwrap() - g.submitted_at.unwrap();
    assert!(
        waited >= 4000,
        "lost after {waited} ms, before lost_after_sec"
    );
    d.wait_log("is lost", Duration::from_secs(5));
    let log = d.log();
    assert_eq!(log.matches("is lost").count(), 1, "{log}");
    assert!(log.contains("dirwatcher retry"), "{log}");
    wait_for(Duration::from_secs(10), "dirwatcher_jobs_lost 1", || {
        std::fs::read_to_string(&prom)
            .ok()
            .filter(|t| t.lines().any(|l| l == "dirwatcher_jobs_lost 1"))
    });
    let st = env.status();
    assert_eq!(st["counts"]["lost"], 1, "{st}");
    assert_eq!(st["lost"][0]["job_id"], LOST_ID, "{st}");
    assert!(dir.exists(), "a lost job's directory was deleted");
    assert!(
        env.failures().is_empty(),
        "a lost job is not known to have failed"
    );

    let out = Command::new(BIN)
        .args(["retry", "--config"])
        .arg(&cfg)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "retry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = wait_for(Duration::from_secs(60), "the retried job to end", || {
        env.history(&dir)
            .pop()
            .filter(|g| g.attempt == 2 && g.finished_at.is_some())
    });
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
    assert_eq!(wait_jobs_named(&env.job_name("case")).len(), 1);
    wait_for(Duration::from_secs(10), "dirwatcher_jobs_lost 0", || {
        std::fs::read_to_string(&prom)
            .ok()
            .filter(|t| t.lines().any(|l| l == "dirwatcher_jobs_lost 0"))
    });
}

/// Above 100 jobs in flight the controller is asked with one `squeue --me`, which lists only the daemon
/// user's jobs. Jobs of ours that run as another user (`sbatch --uid`) are not among them, and are asked
/// about by id: followed through the controller (as held, then cancelled), never through accounting alone
/// (which, during a requeue, could show a NODE_FAIL as if it were the end).
#[test]
fn many_jobs_that_run_as_another_user_are_followed_through_the_controller() {
    need_slurm!("many_jobs_that_run_as_another_user_are_followed_through_the_controller");
    let env = TestEnv::slurm("uid")
        .job("wrap_cmd: true")
        .job("extra_args: [\"--uid=dwtest\", \"--hold\"]")
        .watch("stability_checks: 1");
    let names: Vec<String> = (0..105).map(|n| format!("u{n:03}")).collect();
    let dirs: Vec<_> = names.iter().map(|n| env.ready_dir(n)).collect();
    let _d = env.start();
    wait_for(Duration::from_secs(120), "105 submissions", || {
        (env.submitted_count() >= 105).then_some(())
    });
    let jobs: Vec<String> = dirs
        .iter()
        .map(|d| env.wait_job_id(d, Duration::from_secs(5)))
        .collect();
    // Held jobs stay until cancelled: they are, however the test ends.
    struct Cancel(Vec<String>);
    impl Drop for Cancel {
        fn drop(&mut self) {
            let _ = Command::new("scancel").args(&self.0).status();
        }
    }
    let _cancel = Cancel(jobs.clone());
    let owner = Command::new("squeue")
        .args(["-h", "-o", "%u", &format!("--jobs={}", jobs[0])])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&owner.stdout).trim(), "dwtest");
    // Every job seen, and seen by the controller (the snapshot says which source showed each).
    let seen = |state: &str| {
        let dirwatcher::snapshot::Read::Found(s) =
            dirwatcher::snapshot::read(&dirwatcher::state_paths::StatePaths::of(&env.state_file()))
        else {
            return None;
        };
        let ok = jobs.iter().all(|j| {
            s.jobs
                .iter()
                .any(|r| &r.job_id == j && r.slurm_state == state && r.source == "controller")
        });
        ok.then_some(s.jobs.len())
    };
    wait_for(
        Duration::from_secs(120),
        "all 105 held jobs seen by the controller",
        || seen("PENDING"),
    );
    scancel(&jobs[7]);
    let g = env.wait_final(&dirs[7], Duration::from_secs(120));
    assert_eq!(g.final_state.as_deref(), Some("CANCELLED"), "{g:?}");
}
