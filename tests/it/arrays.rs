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

/// `check-config --slurm` on `env`'s config: (exit code, stdout, stderr).
fn check_slurm(env: &TestEnv) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["check-config", "--slurm", "--config"])
        .arg(env.write_config())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_slurm_refuses_array_max_above_the_clusters_max_array_size() {
    need_slurm!("check_config_slurm_refuses_array_max_above_the_clusters_max_array_size");
    let limit = max_array_size();
    let env = TestEnv::slurm("arraymax")
        .job("wrap_cmd: true")
        .job(&format!("array_max: {}", limit + 1));
    let (code, out, err) = check_slurm(&env);
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
    let (code, out, err) = check_slurm(&env);
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

/// A burst of 200 ready directories with `array_max: 50` goes to Slurm as 4 arrays of 50 tasks (4 sbatch
/// calls), every directory exactly one task, each array carrying its own key; cancelled while its tasks
/// wait (the controller keeps them as one record), each directory gets its own outcome.
#[test]
fn a_burst_goes_as_arrays_of_array_max_one_task_per_directory() {
    need_slurm!("a_burst_goes_as_arrays_of_array_max_one_task_per_directory");
    let env = TestEnv::slurm("arrays")
        .job("wrap_cmd: true")
        .job("array_max: 50")
        .job("extra_args: [\"--hold\"]");
    let dirs: Vec<PathBuf> = (0..200)
        .map(|i| env.root.join(format!("d{i:03}")))
        .collect();
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("_READY"), "").unwrap();
    }
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
    assert_eq!(arrays.len(), 4, "{:?}", arrays.keys());
    for (array, tasks) in &arrays {
        let mut idx: Vec<u32> = tasks.iter().map(|(t, _)| *t).collect();
        idx.sort_unstable();
        assert_eq!(idx, (0..50).collect::<Vec<u32>>(), "array {array}");
        let key = &tasks[0].1.array.as_ref().unwrap().key;
        assert!(
            tasks
                .iter()
                .all(|(_, g)| &g.array.as_ref().unwrap().key == key)
        );
        // What squeue shows: the array's 50 tasks, each with the array's key.
        let listed = squeue_tasks(array);
        assert_eq!(listed.len(), 50, "{array}: {listed:?}");
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
        4,
        "4 sbatch calls: {log}"
    );
    eprintln!("200 directories submitted as 4 arrays in {took:?}");
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
    let bad = env.wait_final(&dirs[3], SLURM_DEADLINE);
    assert_eq!(bad.final_state.as_deref(), Some("FAILED"), "{bad:?}");
    let job = bad.job_id.clone().unwrap();
    let array = job.split_once('_').unwrap().0.to_string();
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
