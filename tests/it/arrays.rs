//! Bursts as job arrays (`job.array_max`), on the real cluster: the limit is the cluster's
//! `MaxArraySize`, and a burst goes to Slurm as arrays, one task per directory, each judged on its own.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dirwatcher::engine::Generation;

use crate::harness::slurm::*;
use crate::harness::*;
use crate::slurm_pipeline::SLURM_DEADLINE;

macro_rules! need_slurm {
    ($name:expr) => {
        if !slurm_available($name) {
            return;
        }
    };
}

#[test]
fn check_config_slurm_refuses_array_max_above_the_clusters_max_array_size() {
    need_slurm!("check_config_slurm_refuses_array_max_above_the_clusters_max_array_size");
    let limit = max_array_size();
    let env = TestEnv::slurm("arraymax")
        .job("wrap_cmd: true")
        .job(&format!("array_max: {}", limit + 1));
    let (code, out, err) = env.check_slurm();
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("key `job.array_max`"), "{err}");
    assert!(err.contains(" line "), "the line is named: {err}");
    assert!(
        err.contains(&format!("`MaxArraySize` ({limit}")),
        "the cluster's limit is said: {err}"
    );
    assert!(
        err.contains(&format!("fix: write `array_max: {limit}` or less")),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "one message: {err}");

    let env = TestEnv::slurm("arraymax")
        .job("wrap_cmd: true")
        .job(&format!("array_max: {limit}"));
    let (code, out, err) = env.check_slurm();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("slurm accepts the job"), "{out}");
}

/// The cluster's `MaxArraySize`, as `scontrol` says.
fn max_array_size() -> u32 {
    let out = Command::new("scontrol")
        .args(["show", "config"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "MaxArraySize").then(|| v.trim().parse().ok())?
        })
        .expect("scontrol shows MaxArraySize")
}

/// The job output of `g`: `<root>/.dirwatcher/logs/<job name>-<job id>.out` (an array's tasks write to
/// `%x-%A_%a.out`, named by the array's name and the task's job id).
fn output_of(env: &TestEnv, g: &Generation) -> PathBuf {
    env.root.join(".dirwatcher/logs").join(format!(
        "{}-{}.out",
        g.scheduler_name(),
        g.job_id.as_deref().unwrap()
    ))
}

/// Every job id the ledger holds for `dirs` (latest record each), waiting until all have one.
fn wait_all_submitted(env: &TestEnv, dirs: &[PathBuf], deadline: Duration) -> Vec<Generation> {
    wait_for(deadline, "a job id for every directory", || {
        let l = env.open_ledger();
        let gens: Vec<Generation> = dirs
            .iter()
            .filter_map(|d| l.history(d.file_name().unwrap()).ok()?.pop())
            .filter(|g| g.job_id.is_some())
            .collect();
        (gens.len() == dirs.len()).then_some(gens)
    })
}

/// `squeue -r` (one line per task) of the array `array_id`: (task job id, comment).
fn squeue_tasks(array_id: &str) -> Vec<(String, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-t", "all", "-o", "%i|%k"])
        .arg(format!("--jobs={array_id}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (i, k) = l.split_once('|')?;
            Some((i.trim().to_string(), k.trim().to_string()))
        })
        .collect()
}

/// A burst of 1,000 ready directories with `array_max: 200` goes to Slurm as 5 arrays of 200 tasks (5
/// sbatch calls), every directory exactly one task, each array carrying its own key; cancelled while its tasks
/// wait (the controller keeps them as one record), each directory gets its own outcome.
#[test]
fn a_burst_goes_as_arrays_of_array_max_one_task_per_directory() {
    need_slurm!("a_burst_goes_as_arrays_of_array_max_one_task_per_directory");
    let env = TestEnv::slurm("arrays")
        .job("wrap_cmd: true")
        .job("array_max: 200")
        .job("extra_args: [\"--hold\"]");
    let dirs: Vec<PathBuf> = (0..1000)
        .map(|i| env.root.join(format!("d{i:04}")))
        .collect();
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("_READY"), "").unwrap();
    }
    // `run --dry-run` says how the burst would go.
    let out = Command::new(BIN)
        .args(["run", "--dry-run", "--config"])
        .arg(env.write_config())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "with `job.array_max: 200`, these 1000 directories would go in up to 5 job array(s)"
        ),
        "{text}"
    );
    let started = Instant::now();
    let d = env.start();
    let gens = wait_all_submitted(&env, &dirs, Duration::from_secs(60));
    let took = started.elapsed();
    let mut arrays: BTreeMap<String, Vec<(u32, &Generation)>> = BTreeMap::new();
    for g in &gens {
        let job = g.job_id.as_deref().unwrap();
        let (array, task) = job.split_once('_').expect("a task's job id is ARRAY_TASK");
        let a = g.array.as_ref().expect("the record names its array");
        assert_eq!(task, a.task.to_string(), "{g:?}");
        arrays
            .entry(array.to_string())
            .or_default()
            .push((a.task, g));
    }
    assert_eq!(arrays.len(), 5, "{:?}", arrays.keys());
    for (array, tasks) in &arrays {
        let mut idx: Vec<u32> = tasks.iter().map(|(t, _)| *t).collect();
        idx.sort_unstable();
        assert_eq!(idx, (0..200).collect::<Vec<u32>>(), "array {array}");
        let key = &tasks[0].1.array.as_ref().unwrap().key;
        assert!(
            tasks
                .iter()
                .all(|(_, g)| &g.array.as_ref().unwrap().key == key)
        );
        // What squeue shows: the array's 200 tasks, each with the array's key.
        let listed = squeue_tasks(array);
        assert_eq!(listed.len(), 200, "{array}: {listed:?}");
        assert!(listed.iter().all(|(_, k)| k == key), "{listed:?}");
        // The map names each task's directory.
        let map =
            std::fs::read_to_string(env.root.join(format!(".dirwatcher/arrays/{key}.sh"))).unwrap();
        for (t, g) in tasks {
            let dir = env.root.join(&g.dir);
            assert!(
                map.contains(&format!("\n{t}) dw_dir={} ", dir.display())),
                "task {t} of {array}: {map}"
            );
        }
        let mode = std::fs::metadata(env.root.join(format!(".dirwatcher/arrays/{key}.sh")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the map is private");
    }
    let log = d.log();
    assert_eq!(
        log.matches("submitted job array ").count(),
        5,
        "5 sbatch calls: {log}"
    );
    // `explain` names the task and its array.
    let g = arrays.values().next().unwrap()[0].1;
    let out = Command::new(BIN)
        .args(["explain", "--config"])
        .arg(env.config_path())
        .arg(env.root.join(&g.dir))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let a = g.array.as_ref().unwrap();
    let want = format!(
        "(job {}, task {} of the job array {} (key {}))",
        g.job_id.as_deref().unwrap(),
        a.task,
        a.name,
        a.key
    );
    assert!(text.contains(&want), "{text}");
    eprintln!("1000 directories submitted as 5 arrays in {took:?}");
    if std::env::var_os("DW_SHOW_LOG").is_some() {
        eprintln!("{log}");
    }

    // Cancelled while held: each directory gets its own outcome, from the array's one record.
    for array in arrays.keys() {
        scancel(array);
    }
    for dir in &dirs {
        let g = env.wait_final(dir, Duration::from_secs(60));
        assert_eq!(g.final_state.as_deref(), Some("CANCELLED"), "{g:?}");
        assert_eq!(
            env.history(dir).len(),
            1,
            "one record for {}",
            dir.display()
        );
    }
}

/// Each task runs the command exactly as a single job would (inside its directory, `WATCH_DIR` and the
/// directory as one argument, whatever its name), and is judged alone: the one that fails is the only
/// directory that fails (its failure-log line names the task's job), the others complete and are deleted;
/// `retry` of the failed one resubmits it alone, as a single job.
#[test]
fn each_task_is_its_directorys_own_job_and_a_failed_one_is_retried_alone() {
    need_slurm!("each_task_is_its_directorys_own_job_and_a_failed_one_is_retried_alone");
    let env = TestEnv::slurm("arrtask")
        .job("wrap_cmd: sh -c 'printf \"%s|%s|%s\\n\" \"$PWD\" \"$WATCH_DIR\" \"$1\"; test ! -e \"$1/fail\"' job")
        .job("array_max: 10")
        .job("array_throttle: 2")
        .behavior("delete_on_success: true");
    let names = ["plain", "with space", "it's \"quoted\"", "bad"];
    let dirs: Vec<PathBuf> = names.iter().map(|n| env.ready_dir(n)).collect();
    std::fs::write(dirs[3].join("fail"), "").unwrap();
    let d = env.start();
    let first = env.wait_job_id(&dirs[0], SLURM_DEADLINE);
    let array = first.split_once('_').unwrap().0.to_string();
    assert_eq!(
        scontrol_job(&array)["ArrayTaskThrottle"],
        "2",
        "array_throttle"
    );
    let bad = env.wait_final(&dirs[3], SLURM_DEADLINE);
    assert_eq!(bad.final_state.as_deref(), Some("FAILED"), "{bad:?}");
    let job = bad.job_id.clone().unwrap();
    assert!(job.starts_with(&format!("{array}_")), "one array: {job}");
    for dir in &dirs[..3] {
        let g = env.wait_final(dir, SLURM_DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
        assert!(
            g.job_id
                .as_deref()
                .unwrap()
                .starts_with(&format!("{array}_")),
            "one array: {g:?}"
        );
        let out = std::fs::read_to_string(output_of(&env, &g)).unwrap();
        let p = dir.display();
        assert_eq!(out, format!("{p}|{p}|{p}\n"), "{}", dir.display());
        wait_for(
            Duration::from_secs(10),
            "the directory to be deleted",
            || (!dir.exists()).then_some(()),
        );
    }
    // The failed task: its own failure-log line, naming the task; its directory stays.
    let failures = env.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["dir"], dirs[3].to_string_lossy().as_ref());
    assert_eq!(failures[0]["job_id"], job.as_str(), "{failures:?}");
    assert!(dirs[3].exists());
    let status = env.status();
    let text = status.to_string();
    assert!(text.contains(&job), "status names the task's job: {text}");
    assert!(d.log().contains(&format!("job={job}")), "{}", d.log());

    // Fixed and retried: resubmitted alone, as a single job with the directory's own name.
    std::fs::remove_file(dirs[3].join("fail")).unwrap();
    let out = Command::new(BIN)
        .args(["retry", "--config"])
        .arg(env.config_path())
        .arg(&dirs[3])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = wait_for(SLURM_DEADLINE, "the retried attempt to complete", || {
        env.history(&dirs[3])
            .into_iter()
            .last()
            .filter(|g| g.attempt == 2 && g.finished_at.is_some())
    });
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
    assert_eq!(g.array, None, "{g:?}");
    assert!(
        !g.job_id.as_deref().unwrap().contains('_'),
        "a single job: {g:?}"
    );
    assert_eq!(g.job_name, env.job_name("bad"));
    assert_eq!(wait_jobs_named(&env.job_name("bad")).len(), 1);
}

/// The daemon is killed (SIGKILL) after the array's `sbatch` created it and before its answer came back:
/// started again, it finds the array by its key and adopts it — every directory gets its task, no second
/// array is submitted, and each directory's job runs once.
#[test]
fn a_daemon_killed_during_the_arrays_sbatch_adopts_the_array_and_submits_no_second() {
    need_slurm!("a_daemon_killed_during_the_arrays_sbatch_adopts_the_array_and_submits_no_second");
    let env = TestEnv::slurm("arrkill")
        .job("wrap_cmd: true")
        .job("array_max: 10");
    let answered = env.tmp.path().join("answered");
    // The real sbatch submits the array; its answer never reaches the daemon, which is killed meanwhile.
    let body = format!(
        "out=$(\"$REAL_SBATCH\" \"$@\")\necho \"$out\" > '{a}'\nexec sleep 30\n",
        a = answered.display()
    );
    let path = fake_sbatch(&env, &body);
    let dirs: Vec<PathBuf> = (0..6).map(|i| env.root.join(format!("k{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("_READY"), "").unwrap();
    }
    let mut d = env.start_env(&[], &[("PATH", path.as_ref())]);
    let array = wait_for(Duration::from_secs(60), "the array to be submitted", || {
        std::fs::read_to_string(&answered)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    d.kill9();
    // Killed between the commit and the answer: every record is uncertain, in the one array.
    let l = env.open_ledger();
    let gens: Vec<Generation> = dirs
        .iter()
        .map(|d| l.history(d.file_name().unwrap()).unwrap().pop().unwrap())
        .collect();
    drop(l);
    assert!(
        gens.iter().all(|g| g.uncertain && g.job_id.is_none()),
        "{gens:?}"
    );
    let name = gens[0].scheduler_name().to_string();
    assert!(gens.iter().all(|g| g.scheduler_name() == name));

    let d = env.start();
    for dir in &dirs {
        let g = env.wait_final(dir, SLURM_DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
        let task = g.array.as_ref().unwrap().task;
        assert_eq!(g.job_id, Some(format!("{array}_{task}")), "{g:?}");
        assert_eq!(
            env.history(dir).len(),
            1,
            "one record for {}",
            dir.display()
        );
    }
    let log = d.log();
    assert_eq!(log.matches("adopted job").count(), 6, "{log}");
    assert!(
        !log.contains("submitted job array"),
        "a second array: {log}"
    );
    // Slurm's own word: one array with this name, six tasks, each run once.
    let jobs = wait_for(
        Duration::from_secs(30),
        "accounting to list the 6 tasks",
        || {
            let out = Command::new("sacct")
                .args(["-X", "-n", "-P", "--format=JobID", "--starttime=now-3600"])
                .arg(format!("--name={name}"))
                .output()
                .unwrap();
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
            (ids.len() == 6 && ids.iter().all(|i| !i.contains('['))).then_some(ids)
        },
    );
    assert!(
        jobs.iter().all(|j| j.starts_with(&format!("{array}_"))),
        "{jobs:?}"
    );
}

/// A task Slurm requeues while it runs is one job with one outcome, recorded after its last run: the
/// directory is deleted once, after the second run, and the array's other task is not disturbed.
#[test]
fn a_task_requeued_while_running_has_one_outcome_after_its_last_run() {
    need_slurm!("a_task_requeued_while_running_has_one_outcome_after_its_last_run");
    let runs = |env: &TestEnv, dir: &PathBuf| {
        std::fs::read_to_string(env.tmp.path().join("runs"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == dir.to_string_lossy())
            .count()
    };
    let env = TestEnv::slurm("arrrequeue")
        .job("wrap_cmd: sh -c 'echo \"$1\" >> \"$RUNS\"; sleep 6; test -f \"$1/data.txt\"' job")
        .job("array_max: 10")
        .behavior("delete_on_success: true");
    let runs_at = env.tmp.path().join("runs").display().to_string();
    let env = env.job(&format!("env: {{RUNS: {runs_at:?}}}"));
    let dirs = [env.root.join("a"), env.root.join("b")];
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("data.txt"), "payload\n").unwrap();
        std::fs::write(d.join("_READY"), "").unwrap();
    }
    let d = env.start();
    let job = env.wait_job_id(&dirs[0], Duration::from_secs(60));
    assert!(job.contains('_'), "a task: {job}");
    wait_for(Duration::from_secs(60), "the first run to start", || {
        (runs(&env, &dirs[0]) == 1).then_some(())
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
    start_now(&job, std::time::SystemTime::now());
    assert!(
        dirs[0].exists(),
        "deleted while a later run could still start"
    );
    let g = env.history(&dirs[0]).pop().unwrap();
    assert_eq!(g.finished_at, None, "an outcome before the last run: {g:?}");
    let g = env.wait_final(&dirs[0], Duration::from_secs(90));
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
    assert_eq!(runs(&env, &dirs[0]), 2, "the task did not run twice");
    assert_eq!(env.history(&dirs[0]).len(), 1, "one job, one record");
    let other = env.wait_final(&dirs[1], Duration::from_secs(90));
    assert_eq!(other.final_state.as_deref(), Some("COMPLETED"), "{other:?}");
    assert_eq!(runs(&env, &dirs[1]), 1);
    assert!(env.failures().is_empty(), "{:?}", env.failures());
    for dir in &dirs {
        wait_for(
            Duration::from_secs(10),
            "the directory to be deleted",
            || (!dir.exists()).then_some(()),
        );
    }
    let log = d.log();
    assert_eq!(
        log.matches("COMPLETED; the directory will be deleted")
            .count(),
        2,
        "{log}"
    );
}

/// An array larger than the cluster's `MaxArraySize` (a config `check-config --slurm` would have refused)
/// is refused by Slurm as a configuration error: said once per array with the key to fix, shown by
/// `status`, and no job is created; the directories wait.
#[test]
fn an_array_above_max_array_size_is_a_configuration_error_naming_array_max() {
    need_slurm!("an_array_above_max_array_size_is_a_configuration_error_naming_array_max");
    let limit = max_array_size() as usize;
    let env = TestEnv::slurm("arrtoobig")
        .job("wrap_cmd: true")
        .job(&format!("array_max: {}", limit + 100))
        .behavior("submit_backoff_sec: 30");
    for i in 0..=limit {
        let d = env.root.join(format!("b{i:04}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("_READY"), "").unwrap();
    }
    let d = env.start();
    d.wait_log("was not submitted", Duration::from_secs(60));
    let s = wait_for(Duration::from_secs(30), "status to say why", || {
        let s = env.status();
        (!s["submissions_refused"].is_null()).then_some(s)
    });
    assert_eq!(s["submissions_refused"]["key"], "job.array_max", "{s}");
    let log = d.log();
    assert!(log.contains("Invalid job array specification"), "{log}");
    assert_eq!(
        log.matches("was not submitted").count(),
        1,
        "one line for the array: {log}"
    );
    assert!(
        log.lines()
            .filter(|l| l.contains("`job.array_max`"))
            .count()
            >= 1,
        "the key to fix: {log}"
    );
    assert_eq!(env.submitted_count(), 0);
}

/// A lost ledger over a root whose directories went as job arrays: a new ledger is refused (the arrays'
/// maps in the root are the trace, even with the job output kept elsewhere), and `recover --from-slurm`
/// names each task it does not rebuild instead of passing over it.
#[test]
fn a_lost_ledger_over_arrays_is_refused_and_recover_names_the_tasks_it_does_not_rebuild() {
    need_slurm!(
        "a_lost_ledger_over_arrays_is_refused_and_recover_names_the_tasks_it_does_not_rebuild"
    );
    let out_dir = tempfile::Builder::new()
        .prefix("dw-arrout-")
        .tempdir_in("/tmp")
        .unwrap();
    let env = TestEnv::slurm("arrlost")
        .job("wrap_cmd: true")
        .job("array_max: 10")
        .job(&format!(
            "output: {:?}",
            out_dir.path().join("%x-%j.out").display().to_string()
        ));
    let dirs: Vec<PathBuf> = (0..3).map(|i| env.root.join(format!("l{i}"))).collect();
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("_READY"), "").unwrap();
    }
    let mut d = env.start();
    let mut array_name = String::new();
    for dir in &dirs {
        let g = env.wait_final(dir, SLURM_DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
        array_name = g.scheduler_name().to_string();
    }
    d.stop();
    // Another ledger file (nothing beside it) over the same root.
    let mut env = env;
    let other = env.tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    env.state = other.join("state.db");
    let log = env.tmp.path().join("refused.log");
    let mut d = Daemon::spawn(&env.write_config(), &log, &[]);
    let st = d.wait_exit(Duration::from_secs(60));
    let text = d.log();
    assert_eq!(st.code(), Some(2), "{text}");
    assert!(
        text.contains("job array map(s) in"),
        "the trace is named: {text}"
    );
    assert!(!env.tmp.path().join("other/state.db").exists());

    // Accounting lags the controller: recover reads it once it lists the three tasks.
    wait_for(
        Duration::from_secs(30),
        "accounting to list the tasks",
        || (jobs_named(&array_name).len() == 3).then_some(()),
    );
    let out = Command::new(BIN)
        .args(["recover", "--from-slurm", "--dry-run", "--config"])
        .arg(env.config_path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.matches("a task of a job array (`job.array_max`): `recover` does not rebuild")
            .count()
            >= 3,
        "each task is named: {text}"
    );
}
