//! Bursts as job arrays (`job.array_max`), on the real cluster: the limit is the cluster's
//! `MaxArraySize`, and a burst goes to Slurm as arrays, one task per directory, each judged on its own.

use std::process::Command;

use crate::harness::*;

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
