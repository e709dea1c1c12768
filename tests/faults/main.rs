//! Fault tests on the real Slurm cluster: SIGKILL at random moments (also between `sbatch` and the ledger
//! write), slurmctld and slurmdbd stopped, the state store full. They stop cluster daemons, so they run one
//! at a time, in their own test binary (cargo runs test binaries one after another, so no other test sees
//! the outages). None may skip in CI.

#[path = "../it/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../it/mariadb.rs"]
mod mariadb;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use harness::slurm::*;
use harness::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-dev-cluster.sh")
}

fn cluster(args: &[&str]) {
    let out = Command::new("bash")
        .arg(cluster_script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "slurm-dev-cluster.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stops one cluster daemon; brings the whole cluster back when dropped, even if the test fails.
struct Outage;

impl Outage {
    fn stop(daemon: &str) -> Outage {
        cluster(&["stop", daemon]);
        Outage
    }
    fn end(self) {
        cluster(&["up"]);
        std::mem::forget(self);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(cluster_script())
            .arg("up")
            .output();
    }
}

/// Every directory of `names` has exactly one job in accounting (polls while sacct catches up).
fn assert_one_job_each(env: &TestEnv, names: &[String]) {
    let all: BTreeMap<String, Vec<String>> = wait_for(
        Duration::from_secs(60),
        "sacct to list a job for every directory",
        || {
            let m: BTreeMap<String, Vec<String>> = names
                .iter()
                .map(|n| (n.clone(), jobs_named(&env.job_name(n))))
                .collect();
            m.values().all(|j| !j.is_empty()).then_some(m)
        },
    );
    let dupes: Vec<_> = all.iter().filter(|(_, j)| j.len() != 1).collect();
    assert!(
        dupes.is_empty(),
        "directories with more than one job: {dupes:?}"
    );
    for n in names {
        let h = env.history(&env.root.join(n));
        assert_eq!(h.len(), 1, "{n}: ledger records {h:?}");
        assert_eq!(
            h[0].job_id.as_ref(),
            all[n].first(),
            "{n}: the ledger's job is not the one in sacct"
        );
    }
}

/// A fault-injecting `sbatch`: runs the real one, and when armed, reports that it returned and then hangs,
/// so the test can SIGKILL the daemon between sbatch's answer and the ledger write.
fn sbatch_wrapper(env: &TestEnv) -> (String, PathBuf, PathBuf) {
    let arm = env.tmp.path().join("arm");
    let hit = env.tmp.path().join("hit");
    let body = format!(
        "\"$REAL_SBATCH\" \"$@\"\nrc=$?\nif [ -e '{arm}' ]; then : > '{hit}'; exec sleep 120; fi\nexit $rc\n",
        arm = arm.display(),
        hit = hit.display()
    );
    (fake_sbatch(env, &body), arm, hit)
}

#[test]
fn kill_9_torture_every_directory_gets_exactly_one_job() {
    let _s = serial();
    if !slurm_available("kill_9_torture") {
        return;
    }
    kill_9_torture(TestEnv::slurm("torture"));
}

/// The same torture with the ledger on a MariaDB server (`behavior.ledger`).
#[test]
fn kill_9_torture_on_a_mariadb_ledger_every_directory_gets_exactly_one_job() {
    let _s = serial();
    let test = "kill_9_torture_mariadb";
    if !slurm_available(test) {
        return;
    }
    let env = TestEnv::slurm("torture-db");
    let Some(db) = mariadb::MariaDb::start(test, env.tmp.path()) else {
        return;
    };
    kill_9_torture(db.ledger_for(env, "dw_torture"));
}

/// Ten rounds of a burst and a kill -9 of the daemon (every other one right after `sbatch` answered and
/// before the ledger recorded it); then every directory has exactly one job.
fn kill_9_torture(env: TestEnv) {
    let env = env
        .job("wrap_cmd: true")
        .watch("stability_checks: 1")
        .watch("poll_interval_sec: 0.2");
    let (path, arm, hit) = sbatch_wrapper(&env);
    let envs = [("PATH", std::ffi::OsStr::new(&path))];
    let mut names = Vec::new();
    let rounds = 10;
    let per_round = 12;
    let mut crashes_after_sbatch = 0;
    for round in 0..rounds {
        for i in 0..per_round {
            let n = format!("r{round:02}-d{i:02}");
            env.ready_dir(&n);
            names.push(n);
        }
        let mut d = env.start_env(&[], &envs);
        if round % 2 == 1 {
            // The dangerous moment: sbatch has answered, the ledger has not recorded it yet.
            std::fs::write(&arm, "").unwrap();
            wait_for(Duration::from_secs(60), "an armed sbatch to return", || {
                hit.exists().then_some(())
            });
            d.kill9();
            crashes_after_sbatch += 1;
            std::fs::remove_file(&arm).unwrap();
            std::fs::remove_file(&hit).unwrap();
        } else {
            // Some other moment: after a round-dependent number of new submissions.
            let before = env.submitted_count();
            let k = 1 + (round as u64 * 7) % 9;
            wait_for(Duration::from_secs(60), "submissions to progress", || {
                (env.submitted_count() >= (before + k).min(names.len() as u64)).then_some(())
            });
            d.kill9();
        }
    }
    assert!(crashes_after_sbatch >= 5);
    let _d = env.start_env(&[], &envs);
    for n in &names {
        let g = env.wait_final(&env.root.join(n), Duration::from_secs(240));
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{n}");
    }
    assert_one_job_each(&env, &names);
    // Each crash between sbatch's answer and the ledger write was resolved by finding the job by its key.
    let adopted: usize = std::fs::read_dir(env.tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("daemon-"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .matches("adopted job")
                .count()
        })
        .sum();
    // (Other kills can land inside an sbatch call too: sbatch runs in its own process group and finishes.)
    assert!(
        adopted >= crashes_after_sbatch,
        "{adopted} adoptions for {crashes_after_sbatch} crashes after sbatch"
    );
}

#[test]
fn slurmctld_outage_during_a_burst_loses_nothing_and_duplicates_nothing() {
    let _s = serial();
    if !slurm_available("slurmctld_outage") {
        return;
    }
    let env = TestEnv::slurm("ctld")
        .job("wrap_cmd: true")
        .job("command_timeout_sec: 30")
        .watch("stability_checks: 1")
        .behavior("submit_backoff_sec: 1")
        .behavior("submit_backoff_max_sec: 4");
    let d = env.start_with(&["-v"]);
    d.wait_log("dirwatcher started", Duration::from_secs(10));
    let names: Vec<String> = (0..20).map(|i| format!("burst-{i:02}")).collect();
    let outage = Outage::stop("slurmctld");
    for n in &names {
        env.ready_dir(n);
    }
    d.wait_log("cannot submit", Duration::from_secs(60));
    // Keep the controller down for a while: two more (quiet) failed probes.
    wait_for(
        Duration::from_secs(90),
        "two more failed submission probes",
        || (d.log().matches("failed again").count() >= 2).then_some(()),
    );
    outage.end();
    for n in &names {
        env.wait_final(&env.root.join(n), Duration::from_secs(180));
    }
    assert_one_job_each(&env, &names);
    let log = d.log();
    assert_eq!(
        log.matches("cannot submit").count(),
        1,
        "one warning when the outage starts:\n{log}"
    );
    assert_eq!(
        log.matches("submissions work again after").count(),
        1,
        "one note when it ends:\n{log}"
    );
}

#[test]
fn slurmdbd_outage_marks_no_job_failed_and_records_every_outcome() {
    let _s = serial();
    if !slurm_available("slurmdbd_outage") {
        return;
    }
    slurmdbd_outage(TestEnv::slurm("dbd"));
}

/// The same slurmdbd outage with the ledger on a MariaDB server.
#[test]
fn slurmdbd_outage_on_a_mariadb_ledger_marks_no_job_failed_and_records_every_outcome() {
    let _s = serial();
    let test = "slurmdbd_outage_mariadb";
    if !slurm_available(test) {
        return;
    }
    let env = TestEnv::slurm("dbd-db");
    let Some(db) = mariadb::MariaDb::start(test, env.tmp.path()) else {
        return;
    };
    slurmdbd_outage(db.ledger_for(env, "dw_dbd"));
}

/// slurmdbd stopped while jobs run and end: no job is marked failed, every outcome is recorded once it
/// is back.
fn slurmdbd_outage(env: TestEnv) {
    let env = env
        .job("wrap_cmd: sh -c 'sleep 3' job")
        .watch("stability_checks: 1");
    let names: Vec<String> = (0..4).map(|i| format!("run-{i}")).collect();
    for n in &names {
        env.ready_dir(n);
    }
    let _daemon = env.start();
    let jobs: Vec<String> = names
        .iter()
        .map(|n| env.wait_job_id(&env.root.join(n), Duration::from_secs(60)))
        .collect();
    let outage = Outage::stop("slurmdbd");
    // The jobs run to their end while accounting is down.
    wait_for(
        Duration::from_secs(120),
        "the jobs to finish (seen by the controller)",
        || {
            let out = Command::new("squeue")
                .args(["-h", "-t", "all", "-o", "%T", "-j", &jobs.join(",")])
                .output()
                .unwrap();
            let states = String::from_utf8_lossy(&out.stdout).into_owned();
            (states.lines().count() == jobs.len()
                && states.lines().all(|s| s.trim() == "COMPLETED"))
            .then_some(())
        },
    );
    // Followed through the controller meanwhile (accounting is asked only about jobs the controller does
    // not show as ours, so with these in `squeue` the outage may go unnoticed): every outcome is recorded,
    // none as a failure.
    for n in &names {
        let g = env.wait_final(&env.root.join(n), Duration::from_secs(60));
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{n}");
    }
    assert!(
        env.failures().is_empty(),
        "a job was declared failed during the accounting outage"
    );
    outage.end();
    for (j, n) in jobs.iter().zip(&names) {
        let name = env.job_name(n);
        let st = wait_for(Duration::from_secs(30), "accounting to catch up", || {
            Some(sacct_field(j, &name, "State"))
                .filter(|s| !s.is_empty() && s != "PENDING" && s != "RUNNING")
        });
        assert_eq!(st, "COMPLETED", "job {j}");
    }
}

/// A state store that cannot be written (its file system is full): nothing is submitted without a committed
/// intent, nothing already stored is damaged, and after the fault clears nothing is lost.
#[test]
fn full_state_store_submits_nothing_and_loses_nothing() {
    let _s = serial();
    if !slurm_available("full_state_store") {
        return;
    }
    let mut env = TestEnv::slurm("full")
        .job("wrap_cmd: true")
        .watch("stability_checks: 1");
    let fs = env.tmp.path().join("statefs");
    std::fs::create_dir(&fs).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&fs)
        .status()
        .unwrap();
    assert!(st.success(), "this test needs root to mount a small tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _u = Unmount(fs.clone());
    env.state = fs.join("state.db");
    let state_db = fs.join("state.db");
    let d = env.start();
    let first = env.ready_dir("before");
    let first_gen = wait_for(
        Duration::from_secs(60),
        "the first directory to complete",
        || {
            let l = dirwatcher::ledger::Ledger::open(&state_db).ok()?;
            l.history(first.file_name().unwrap())
                .ok()?
                .into_iter()
                .find(|g| g.finished_at.is_some())
        },
    );
    // Fill the file system.
    let filler = fs.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    use std::io::Write;
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    drop(f);
    let names: Vec<String> = (0..3).map(|i| format!("during-{i}")).collect();
    for n in &names {
        env.ready_dir(n);
    }
    d.wait_log("cannot write the ledger", Duration::from_secs(60));
    for n in &names {
        assert!(
            squeue_named(&env.job_name(n)).is_empty(),
            "{n} was submitted without a committed intent"
        );
    }
    std::fs::remove_file(&filler).unwrap();
    for n in &names {
        let g = wait_for(
            Duration::from_secs(90),
            "the directory to complete after the fault cleared",
            || {
                let l = dirwatcher::ledger::Ledger::open(&state_db).ok()?;
                l.history(std::ffi::OsStr::new(n))
                    .ok()?
                    .into_iter()
                    .find(|g| g.finished_at.is_some())
            },
        );
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
        let jobs = wait_for(Duration::from_secs(30), "sacct to list the job", || {
            Some(jobs_named(&env.job_name(n))).filter(|j| !j.is_empty())
        });
        assert_eq!(jobs.len(), 1, "{n}: {jobs:?}");
    }
    let l = dirwatcher::ledger::Ledger::open(&state_db).unwrap();
    assert_eq!(
        l.history(first.file_name().unwrap()).unwrap(),
        vec![first_gen],
        "stored state changed"
    );
    assert!(d.log().contains("writable again"));
}

fn node() -> String {
    let out = Command::new("hostname").arg("-s").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn node_usable() -> bool {
    let out = Command::new("sinfo")
        .args(["-h", "-n", &node(), "-o", "%T"])
        .output()
        .unwrap();
    matches!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "idle" | "mixed" | "allocated" | "completing"
    )
}

/// Takes the cluster's only node down; resumes it when dropped, even if the test fails.
struct NodeDown;

impl NodeDown {
    fn now() -> NodeDown {
        let st = Command::new("scontrol")
            .args(["update", &format!("nodename={}", node()), "state=down"])
            .arg("reason=dirwatcher-test")
            .status()
            .unwrap();
        assert!(st.success(), "scontrol update state=down");
        NodeDown
    }

    fn end(self) {
        drop(self);
        wait_for(
            Duration::from_secs(60),
            "the node to be usable again",
            || node_usable().then_some(()),
        );
    }
}

impl Drop for NodeDown {
    fn drop(&mut self) {
        // "Invalid node state specified" when it already came back: fine.
        let _ = Command::new("scontrol")
            .args(["update", &format!("nodename={}", node()), "state=resume"])
            .output();
    }
}

/// sacct's rows for a job id since `secs` ago, as `STATE|COMMENT`.
fn sacct_rows(id: &str, secs: u64) -> Vec<String> {
    let out = Command::new("sacct")
        .args(["-X", "-n", "-P", "--format=State,Comment"])
        .arg(format!("--starttime=now-{secs}"))
        .arg(format!("--jobs={id}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A node failure while the job runs: Slurm requeues it (JobRequeue=1), sacct shows NODE_FAIL for a while.
/// One outcome, after the second run; no failure line and no deletion in between. (Here, not in `tests/it`:
/// it takes the cluster's only node down.)
#[test]
fn a_node_failure_requeues_the_job_and_it_has_one_outcome() {
    let _s = serial();
    if !slurm_available("node_failure") {
        return;
    }
    let (env, runs_file) = counting_env(TestEnv::slurm("nodefail"));
    let dir = env.ready_dir("case");
    let d = env.start();
    let job = env.wait_job_id(&dir, Duration::from_secs(60));
    wait_for(Duration::from_secs(60), "the first run to start", || {
        (runs(&runs_file) == 1).then_some(())
    });
    let down = NodeDown::now();
    // The moment a blind reader fails the job: accounting says NODE_FAIL, the controller has it pending.
    wait_for(Duration::from_secs(30), "sacct to show NODE_FAIL", || {
        sacct_rows(&job, 600)
            .iter()
            .any(|r| r.starts_with("NODE_FAIL"))
            .then_some(())
    });
    let killed_by = std::time::SystemTime::now();
    wait_for(
        Duration::from_secs(30),
        "sacct to show the requeued job",
        || {
            sacct_rows(&job, 600)
                .iter()
                .any(|r| r.starts_with("PENDING"))
                .then_some(())
        },
    );
    let g = env.history(&dir).pop().unwrap();
    assert_eq!(
        g.finished_at, None,
        "an outcome while the job was requeued: {g:?}"
    );
    assert!(dir.exists(), "deleted while a later run could still start");
    assert!(env.failures().is_empty(), "{:?}", env.failures());
    down.end();
    // The first run was killed when its node failed, before accounting showed NODE_FAIL above.
    start_now(&job, killed_by);
    let g = env.wait_final(&dir, Duration::from_secs(90));
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
    assert_eq!(runs(&runs_file), 2, "the job did not run again");
    assert_eq!(env.history(&dir).len(), 1);
    assert!(env.failures().is_empty(), "{:?}", env.failures());
    wait_for(
        Duration::from_secs(10),
        "the directory to be deleted",
        || (!dir.exists()).then_some(()),
    );
    assert!(!d.log().contains(" ended "), "{}", d.log());
}

/// Which controller a test resets: the host's test cluster (`scripts/slurm-dev-cluster.sh`), or the site
/// container's, from inside it (where `scripts/site-cluster.sh run-tests` runs this binary).
#[derive(Clone, Copy)]
enum Controller {
    Host,
    Site,
}

/// The site container's StateSaveLocation (`scripts/site-cluster.sh`'s slurm.conf).
const SITE_STATE: &str = "/var/lib/slurm/slurmctld";

fn systemctl(args: &[&str]) {
    let st = Command::new("systemctl").args(args).status().unwrap();
    assert!(st.success(), "systemctl {args:?}");
}

impl Controller {
    /// Makes slurmctld forget its jobs and start job ids again at FirstJobId, accounting keeping every old
    /// job.
    fn reset_job_ids(self) {
        match self {
            Controller::Host => cluster(&["reset-job-ids"]),
            Controller::Site => {
                // The job counter is kept in job_state (`-c` alone keeps it); Slurm 26.05's slurmctld
                // refuses to start without that file (22.05 took a deleted one), and `-c` starts it
                // afresh on purpose, for this start only.
                systemctl(&["stop", "slurmctld"]);
                for e in std::fs::read_dir(SITE_STATE).unwrap().flatten() {
                    if e.file_name().to_string_lossy().starts_with("job_state") {
                        std::fs::remove_file(e.path()).unwrap();
                    }
                }
                systemctl(&["set-environment", "SLURMCTLD_OPTIONS=-c"]);
                let started = Command::new("systemctl")
                    .args(["start", "slurmctld"])
                    .status()
                    .unwrap();
                systemctl(&["unset-environment", "SLURMCTLD_OPTIONS"]);
                assert!(started.success(), "systemctl start slurmctld (-c)");
                wait_for(
                    Duration::from_secs(60),
                    "slurmctld and the node to answer",
                    || {
                        let node = Command::new("sinfo")
                            .args(["-h", "-o", "%T"])
                            .output()
                            .ok()?;
                        let node = String::from_utf8_lossy(&node.stdout).into_owned();
                        ["idle", "mixed", "allocated"]
                            .iter()
                            .any(|s| node.lines().next() == Some(*s))
                            .then_some(())
                    },
                );
            }
        }
    }

    fn restore(self) {
        match self {
            Controller::Host => {
                let _ = Command::new("bash")
                    .arg(cluster_script())
                    .arg("up")
                    .output();
            }
            Controller::Site => {
                let _ = Command::new("systemctl")
                    .args(["start", "slurmctld"])
                    .status();
            }
        }
    }
}

/// Restarts the controller without its job state; brings it back up when dropped.
struct JobIdReset(Controller);

impl JobIdReset {
    fn now(c: Controller) -> JobIdReset {
        c.reset_job_ids();
        JobIdReset(c)
    }
}

impl Drop for JobIdReset {
    fn drop(&mut self) {
        self.0.restore();
    }
}

/// The reproduction: the controller's job counter is reset while accounting keeps recent jobs with
/// the same ids, names and (other ledgers') keys. A burst of directories with `delete_on_success`: every job
/// runs on its data (none deleted early), each exactly once, and each directory is deleted after COMPLETED.
#[test]
fn reused_job_ids_never_delete_a_directory_before_its_job_ran() {
    let _s = serial();
    if !slurm_available("job_id_reuse") {
        return;
    }
    reused_job_ids(TestEnv::slurm("reuse"), Controller::Host, None);
}

/// The same job-ID reuse with the burst submitted as job arrays (`job.array_max: 6`): arrays whose ids
/// older jobs in accounting hold run every task on its data before any directory is deleted; each task
/// is judged by its array's key, never by an old record of its id.
#[test]
fn reused_job_ids_for_job_arrays_never_delete_a_directory_before_its_task_ran() {
    let _s = serial();
    if !slurm_available("job_id_reuse_arrays") {
        return;
    }
    reused_job_ids(TestEnv::slurm("reuse-arr"), Controller::Host, Some(6));
}

/// The same job-ID reuse with the ledger on a MariaDB server.
#[test]
fn reused_job_ids_on_a_mariadb_ledger_never_delete_a_directory_before_its_job_ran() {
    let _s = serial();
    let test = "job_id_reuse_mariadb";
    if !slurm_available(test) {
        return;
    }
    let env = TestEnv::slurm("reuse-db");
    let Some(db) = mariadb::MariaDb::start(test, env.tmp.path()) else {
        return;
    };
    reused_job_ids(db.ledger_for(env, "dw_reuse"), Controller::Host, None);
}

/// The same job-ID reuse through slurmrestd (`executor: slurmrest`): the site container's controller reset
/// from inside it (`scripts/site-cluster.sh --suite sid run-tests <this binary> over_slurmrestd`; on the
/// host, with no slurmrestd, it says SKIPPED unless `DIRWATCHER_REQUIRE_SLURMREST=1`).
#[test]
fn reused_job_ids_over_slurmrestd_never_delete_a_directory_before_its_job_ran() {
    let _s = serial();
    let test = "reused_job_ids_over_slurmrestd_never_delete_a_directory_before_its_job_ran";
    if !harness::rest::slurmrest_available(test) {
        return;
    }
    let (env, _token) = harness::rest::rest_env("rest-reuse");
    reused_job_ids(env, Controller::Site, None);
}

/// Old jobs in accounting hold the ids a new burst gets (the controller's id counter reset): no directory
/// is deleted before its own job ran. With `array_max`, the burst goes as job arrays of that size.
fn reused_job_ids(env: TestEnv, controller: Controller, array_max: Option<u32>) {
    let marks = tempfile::Builder::new()
        .prefix("dw-marks-")
        .tempdir_in("/tmp")
        .unwrap();
    let env = env
        .job(
            "wrap_cmd: sh -c 'sleep 5; test -f \"$1/data.txt\" && echo ok > \"$MARKS/${1##*/}\"' job",
        )
        .job(&format!(
            "env: {{MARKS: {:?}}}",
            marks.path().display().to_string()
        ))
        .behavior("delete_on_success: true");
    let env = match array_max {
        Some(n) => env.job(&format!("array_max: {n}")),
        None => env,
    };
    let names: Vec<String> = (0..12).map(|i| format!("dir{i:02}")).collect();
    let _reset = JobIdReset::now(controller);
    // Old jobs with the ids the burst will get: same names, another ledger's keys, COMPLETED.
    let mut old = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let out = Command::new("sbatch")
            .args([
                "--parsable",
                "-p",
                "main",
                "-A",
                "dev",
                "--output=/dev/null",
            ])
            .args(["--wrap", "true"])
            .arg(format!("--job-name={}", env.job_name(n)))
            .arg(format!("--comment=dw-0ldledger-{i}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "sbatch: {out:?}");
        old.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    for id in &old {
        wait_for(
            Duration::from_secs(60),
            "the old jobs to be COMPLETED in sacct",
            || {
                sacct_rows(id, 600)
                    .iter()
                    .any(|r| r.starts_with("COMPLETED|dw-0ldledger-"))
                    .then_some(())
            },
        );
    }
    controller.reset_job_ids();
    let dirs: Vec<_> = names.iter().map(|n| env.ready_dir(n)).collect();
    let d = env.start();
    let mut ours = Vec::new();
    for (n, dir) in names.iter().zip(&dirs) {
        let g = env.wait_final(dir, Duration::from_secs(180));
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{n}: {g:?}");
        assert_eq!(env.history(dir).len(), 1, "{n}");
        ours.push(g.job_id.unwrap());
    }
    let ran: Vec<&String> = names
        .iter()
        .filter(|n| marks.path().join(n).exists())
        .collect();
    assert_eq!(
        ran.len(),
        names.len(),
        "jobs that did not find their data (deleted before they ran): ran only {ran:?}"
    );
    if let Some(n) = array_max {
        // `1234_5`: each directory a task; the burst of 12 went as arrays of `n`.
        let mut arrays: Vec<&str> = ours
            .iter()
            .filter_map(|id| Some(id.split_once('_')?.0))
            .collect();
        assert_eq!(
            arrays.len(),
            names.len(),
            "every directory a task of an array: {ours:?}"
        );
        arrays.dedup();
        assert_eq!(arrays.len(), names.len().div_ceil(n as usize), "{ours:?}");
    }
    // An array's id (before `_`) is the id the counter gave it, as a single job's is.
    let reused: Vec<&String> = ours
        .iter()
        .filter(|id| old.iter().any(|o| id.split('_').next() == Some(o.as_str())))
        .collect();
    assert!(
        !reused.is_empty(),
        "no job id was reused (old {old:?}, ours {ours:?}): the test proves nothing"
    );
    for dir in &dirs {
        wait_for(
            Duration::from_secs(10),
            "the directory to be deleted",
            || (!dir.exists()).then_some(()),
        );
    }
    // The old jobs' accounting rows would be refused if they were read (the judge's tests), but while
    // the controller shows a job as ours (until `MinJobAge` after its end) accounting is not asked about it:
    // what this test holds is the outcome above, every job ran on its data and then its directory went.
    drop(d);
}

/// Mounts a tmpfs of `size` at `at`; unmounted when dropped, even if the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "this test needs root to mount a small tmpfs");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The failure log's file system fills up while jobs keep failing: a line cut short by the full disk is
/// rolled back, the daemon says so once (not every cycle), keeps every record, and once there is room again
/// writes each one exactly once — every line of the log is a valid JSON record. (Local executor: the
/// failure log is the daemon's own, whatever runs the jobs.)
#[test]
fn full_disk_under_the_failure_log_keeps_every_line_whole_and_warns_once() {
    let _s = serial();
    let mut env = TestEnv::local("fulllog")
        .job("wrap_cmd: sh -c 'exit 3' job")
        .watch("stability_checks: 1");
    let fs = env.tmp.path().join("logfs");
    let _m = Tmpfs::mount(&fs, "64k");
    env.failure_log_at = fs.join("failed.log");
    let pad = "x".repeat(180);
    let first = env.ready_dir(format!("first-{pad}"));
    let d = env.start();
    env.wait_failure(&first, Duration::from_secs(30));
    // Fill the file system: the log keeps only the slack of its last page, a few records' worth.
    let filler = fs.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    use std::io::Write;
    while f.write_all(&[0u8; 4096]).is_ok() {}
    drop(f);
    let names: Vec<String> = (0..12).map(|i| format!("during-{i:02}-{pad}")).collect();
    for n in &names {
        env.ready_dir(n);
    }
    d.wait_log("cannot append to the failure log", Duration::from_secs(30));
    // The loop retries every cycle (0.3 s): over a few seconds, still one warning.
    let window = std::time::Instant::now();
    while window.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(300));
        let warned = d.log().matches("cannot append to the failure log").count();
        assert_eq!(warned, 1, "warned again during the same outage");
    }
    // Some records fitted into the slack of the log's last page, so the first that did not was cut short
    // by the full disk (a short write), and rolled back: the lines read below are all whole.
    let lines_while_full = env.failures().len();
    assert!(
        (2..names.len() + 1).contains(&lines_while_full),
        "the disk did not fill in the middle of a record: {lines_while_full} lines"
    );
    std::fs::remove_file(&filler).unwrap();
    for n in &names {
        env.wait_failure(&env.root.join(n), Duration::from_secs(30));
    }
    // Every line is one whole record (failures() panics on a line that is not JSON), each once.
    let text = std::fs::read_to_string(env.failure_log()).unwrap();
    assert!(text.ends_with('\n'), "a half line at the end");
    let records = env.failures();
    assert_eq!(records.len(), names.len() + 1, "{text}");
    for n in &names {
        let want = env.root.join(n).to_string_lossy().into_owned();
        assert_eq!(
            records.iter().filter(|r| r["dir"] == want.as_str()).count(),
            1,
            "{n}"
        );
    }
    let log = d.log();
    assert_eq!(
        log.matches("cannot append to the failure log").count(),
        1,
        "one warning per outage:\n{log}"
    );
    assert_eq!(log.matches("is writable again").count(), 1, "{log}");
}

/// 50 processed, kept directories; the whole state directory lost. The next start finds the jobs in Slurm's
/// accounting and refuses; `recover --from-slurm` rebuilds the ledger; then nothing of them runs again, and
/// a new directory does.
#[test]
fn recover_from_slurm_rebuilds_a_lost_ledger_and_nothing_runs_twice() {
    // Here, one test at a time, not among the integration tests: its 50 jobs would hold the cluster's
    // CPUs for a while, and others' jobs (a TIMEOUT test's) wait for them.
    let _s = serial();
    if !slurm_available("recover_from_slurm_rebuilds_a_lost_ledger_and_nothing_runs_twice") {
        return;
    }
    recover_rebuilds_a_lost_ledger(TestEnv::slurm("recover"), 50, &[]);
}

/// The same on a host that is not a Slurm client: `executor: slurmrest`, and the daemon and `recover`
/// run with a `PATH` that has no `sbatch`, `squeue`, `sacct`, `scancel` or `scontrol` (only `sh` and
/// `sleep`, which the jobs run): the first start asks accounting through slurmrestd, and so does
/// `recover --from-slurm` (in the site container: `scripts/site-cluster.sh run-tests <this binary>
/// over_slurmrestd`).
#[test]
fn recover_from_slurm_over_slurmrestd_on_a_host_without_slurm_tools() {
    let _s = serial();
    let test = "recover_from_slurm_over_slurmrestd_on_a_host_without_slurm_tools";
    if !harness::rest::slurmrest_available(test) {
        return;
    }
    let (env, _token) = harness::rest::rest_env("rest-recover");
    let bin = env.tmp.path().join("no-slurm-bin");
    std::fs::create_dir(&bin).unwrap();
    for tool in ["sh", "sleep"] {
        let at = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let at = String::from_utf8(at.stdout).unwrap();
        std::os::unix::fs::symlink(at.trim(), bin.join(tool)).unwrap();
    }
    for tool in ["sbatch", "squeue", "sacct", "scancel", "scontrol"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .env("PATH", &bin)
            .output()
            .unwrap();
        assert!(!found.status.success(), "{tool} is on the test's PATH");
    }
    recover_rebuilds_a_lost_ledger(env, 12, &[("PATH", bin.as_os_str())]);
}

/// `n` processed, kept directories (and one still running); the whole state directory lost. The next
/// start (the daemon's environment `envs`) finds the jobs in accounting and refuses; `recover
/// --from-slurm` rebuilds the ledger; then nothing of them runs again, the running one is followed to its
/// end, and a new directory runs.
fn recover_rebuilds_a_lost_ledger(env: TestEnv, n: usize, envs: &[(&str, &std::ffi::OsStr)]) {
    let mut env = env;
    env.state = env.tmp.path().join("state").join("state.db");
    // Slurm's own output place (in the data directory): the root holds no trace of the ledger but the data.
    let go = env.tmp.path().join("go");
    let env = env
        .job(&format!(
            "wrap_cmd: \"sh -c 'if [ -e SLOW ]; then while [ ! -e {} ]; do sleep 0.2; done; fi' job\"",
            go.display()
        ))
        .job("output: \"\"")
        .watch("stability_checks: 1");
    let dirs: Vec<PathBuf> = (0..n).map(|i| env.ready_dir(format!("r{i:02}"))).collect();
    // One more still runs when the ledger is lost: recovered as in flight, followed to its end.
    let running = env.root.join("running");
    std::fs::create_dir(&running).unwrap();
    std::fs::write(running.join("SLOW"), "").unwrap();
    let running = env.ready_dir("running");
    let mut d = env.start_env(&[], envs);
    for dir in &dirs {
        let g = env.wait_final(dir, Duration::from_secs(120));
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
    }
    let running_job = env.wait_job_id(&running, Duration::from_secs(60));
    // However the test ends, the slow job ends: it would hold a CPU of the cluster's only node.
    struct Release(PathBuf, String);
    impl Drop for Release {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.0, "");
            let _ = Command::new("scancel").arg(&self.1).status();
        }
    }
    let _release = Release(go.clone(), running_job.clone());
    wait_for(Duration::from_secs(60), "the slow job to run", || {
        (squeue_state(&running_job) == "RUNNING").then_some(())
    });
    d.stop();
    let last_job = env.history(&dirs[n - 1]).pop().unwrap().job_id.unwrap();
    // Accounting has the job (and its comment) before the test goes on.
    wait_for(
        Duration::from_secs(60),
        "sacct to show the last job's comment",
        || {
            sacct_field(
                &last_job,
                &env.job_name(&format!("r{:02}", n - 1)),
                "Comment",
            )
            .starts_with("dw-")
            .then_some(())
        },
    );
    std::fs::remove_dir_all(env.state_file().parent().unwrap()).unwrap();

    let log = env.tmp.path().join("refused.log");
    let mut refused = Daemon::spawn_env(&env.write_config(), &log, &[], envs);
    let st = refused.wait_exit(Duration::from_secs(30));
    let log = refused.log();
    assert_eq!(st.code(), Some(2), "{log}");
    assert!(
        log.contains("Slurm's accounting shows jobs of an earlier ledger"),
        "{log}"
    );

    let out = Command::new(BIN)
        .args(["recover", "--from-slurm", "--config"])
        .arg(env.config_path())
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "recover: {report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.contains(&format!("recorded {} directorie(s): {n} completed", n + 1))
            && report.contains(" 1 in flight"),
        "{report}"
    );
    let g = env.history(&running).pop().unwrap();
    assert_eq!(
        (g.job_id.as_deref(), g.state.as_str()),
        (Some(running_job.as_str()), "submitted"),
        "{g:?}"
    );
    assert!(
        g.key.starts_with("dw-") && !g.key.starts_with("dw-recovered"),
        "{g:?}"
    );
    for dir in &dirs {
        let h = env.history(dir);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h[0].final_state.as_deref(), Some("COMPLETED"));
    }

    let new = env.ready_dir("new");
    let _d = env.start_env(&[], envs);
    let g = env.wait_final(&new, Duration::from_secs(120));
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
    // The recovered job in flight is followed to its end, by the daemon of the new ledger.
    std::fs::write(&go, "").unwrap();
    let g = env.wait_final(&running, Duration::from_secs(120));
    assert_eq!(
        (g.final_state.as_deref(), g.job_id.as_deref()),
        (Some("COMPLETED"), Some(running_job.as_str())),
        "{g:?}"
    );
    assert_eq!(env.history(&running).len(), 1, "submitted again");
    for (i, dir) in dirs.iter().enumerate() {
        assert_eq!(
            env.history(dir).len(),
            1,
            "{} was submitted again",
            dir.display()
        );
        if i % 10 == 0 {
            assert_eq!(jobs_named(&env.job_name(&format!("r{i:02}"))).len(), 1);
        }
    }
}
