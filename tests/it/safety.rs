//! A watch root is shared ground: other users can create folders and links in it, and the daemon may
//! start under any umask. What the daemon creates is private with a documented mode, and no job writes
//! anywhere but into the daemon's own output folder.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::slurm::*;
use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// Starts the daemon for `env` with the process umask `mask` (what it inherits from its parent), and
/// `extra` appended to the config file.
fn start_with_umask(env: &TestEnv, mask: u32, extra: &str) -> Daemon {
    start_as(env, mask, extra, None)
}

/// Like [`start_with_umask`], as user and group `uid` when given (the test runs as root).
fn start_as(env: &TestEnv, mask: u32, extra: &str, uid: Option<u32>) -> Daemon {
    let cfg = env.write_config();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += extra;
    std::fs::write(&cfg, text).unwrap();
    let log = env.tmp.path().join(format!("daemon-{}.log", run_token()));
    let f = std::fs::File::create(&log).unwrap();
    let mut cmd = daemon_command(&[]);
    cmd.arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f);
    // SAFETY: umask is async-signal-safe and touches nothing but the child's own mask.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask as libc::mode_t);
            if let Some(u) = uid
                && (libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(u) != 0
                    || libc::setuid(u) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Daemon {
        child: Some(cmd.spawn().unwrap()),
        log,
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

/// Under umask 000 (a careless unit, a shell with `umask 0`), every file and folder the daemon creates has
/// its documented mode; the jobs get `job.umask` (default 0022, as a person's shell), never the daemon's
/// own (`behavior.umask`, default 0027); and with `umask: "0000"` in the config the daemon's own files
/// still get exactly their modes.
#[test]
fn every_file_the_daemon_creates_has_its_documented_mode_under_umask_000() {
    for (config_umask, job_file_mode) in [("", 0o644), ("  umask: \"0000\"\n", 0o644)] {
        let mut env = TestEnv::local("modes").job(
            "wrap_cmd: sh -c 'touch \"$1/made-by-job\"; test -e \"$1/fail\" && exit 3; exit 0' job",
        );
        // The ledger in a folder that does not exist yet: the daemon creates it.
        env.state = env.tmp.path().join("var/state.db");
        if !config_umask.is_empty() {
            env.behavior.push(config_umask.trim().into());
        }
        let textfile = env.tmp.path().join("dirwatcher.prom");
        let good = env.ready_dir("good");
        let bad = env.ready_dir("bad");
        std::fs::write(bad.join("fail"), "").unwrap();
        let d = start_with_umask(&env, 0, &format!("metrics:\n  textfile: {:?}\n", textfile));
        let g = env.wait_final(&good, DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{}", d.log());
        env.wait_failure(&bad, DEADLINE);
        wait_for(DEADLINE, "the metrics textfile", || {
            textfile.exists().then_some(())
        });

        let state = env.state_file();
        let jobs = dirwatcher::state_paths::StatePaths::of(&state).local_jobs;
        let job = g.job_id.clone().unwrap();
        let mut want: Vec<(PathBuf, u32)> = vec![
            (state.parent().unwrap().to_path_buf(), 0o750),
            (state.clone(), 0o640),
            (state.with_file_name("state.db.lock"), 0o600),
            (env.failure_log(), 0o640),
            (textfile.clone(), 0o644),
            (jobs.clone(), 0o750),
            (jobs.join(&job), 0o750),
            (env.root.join(".dirwatcher"), 0o750),
            (env.root.join(".dirwatcher/logs"), 0o750),
            (env.job_output(&good, &job), job_file_mode),
            (good.join("made-by-job"), job_file_mode),
        ];
        for f in ["spec.json", "launched", "pid", "status.json"] {
            want.push((jobs.join(&job).join(f), 0o640));
        }
        for suffix in ["-wal", "-shm"] {
            let p = state.with_file_name(format!("state.db{suffix}"));
            if p.exists() {
                want.push((p, 0o640));
            }
        }
        let wrong: Vec<String> = want
            .iter()
            .filter(|(p, m)| mode(p) != *m)
            .map(|(p, m)| format!("{} is {:04o}, documented {m:04o}", p.display(), mode(p)))
            .collect();
        assert!(
            wrong.is_empty(),
            "config umask {config_umask:?}:\n{}",
            wrong.join("\n")
        );
    }
}

/// Another user pre-creates `<root>/.dirwatcher/logs` (their own, open to all, full of links named like
/// the next jobs' output) and plants `slurm-<id>.out` links in their data directory: the daemon refuses to
/// submit while the folder is not its own, says so once naming the folder, submits once it is fixed, and
/// no job writes into any file but its own output.
#[test]
fn a_planted_output_folder_and_output_links_make_no_job_write_outside_its_own_files() {
    if !slurm_available("a_planted_output_folder_and_output_links") {
        return;
    }
    let env = TestEnv::slurm("hijack").job("wrap_cmd: echo job-output");
    let victim = env.tmp.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let planted = env.root.join(".dirwatcher/logs");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).unwrap();
    let as_root = unsafe { libc::geteuid() } == 0;
    if as_root {
        // nobody: a user other than the daemon's.
        for p in [env.root.join(".dirwatcher"), planted.clone()] {
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        }
    }
    let dir = env.ready_dir("case1");
    // Links for the next job ids (any ids the cluster hands out meanwhile, too).
    let next = next_job_id();
    let name = env.job_name("case1");
    for id in next..next + 300 {
        std::os::unix::fs::symlink(&victim, planted.join(format!("{name}-{id}.out"))).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(format!("slurm-{id}.out"))).unwrap();
    }
    let d = env.start();
    d.wait_log("the job output folder is unsafe", DEADLINE);
    // For several polls (0.3 s each): nothing submitted, the directory still pending.
    let window = std::time::Instant::now();
    while window.elapsed() < Duration::from_secs(2) {
        assert!(
            squeue_named(&name).is_empty(),
            "submitted into a planted folder"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(env.history(&dir).len(), 1);
    assert!(env.history(&dir)[0].job_id.is_none());
    let log = d.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("the job output folder is unsafe"))
        .unwrap();
    let named = if as_root {
        ".dirwatcher"
    } else {
        ".dirwatcher/logs"
    };
    assert!(
        refusal.contains(&env.root.join(named).display().to_string()),
        "the refusal does not name the folder: {refusal}"
    );
    assert_eq!(
        log.matches("the job output folder is unsafe").count(),
        1,
        "{log}"
    );

    std::fs::remove_dir_all(env.root.join(".dirwatcher")).unwrap();
    let g = env.wait_final(&dir, SLURM_DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    d.wait_log("is safe again", DEADLINE);
    let job = g.job_id.unwrap();
    let out = env.job_output(&dir, &job);
    let listing = || {
        std::fs::read_dir(env.root.join(".dirwatcher/logs"))
            .map(|r| r.map(|e| e.unwrap().file_name()).collect::<Vec<_>>())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        std::fs::read_to_string(&out).unwrap_or_else(|e| panic!(
            "{}: {e}; {:?}",
            out.display(),
            listing()
        )),
        format!("job-output {}\n", dir.display())
    );
    assert!(
        !std::fs::symlink_metadata(&out)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(mode(&victim), 0o600);
}

/// An id the cluster has not handed out yet: one above a held job submitted (and cancelled) for the purpose.
/// (Accounting's newest id says nothing after the controller's counter was reset: ids are reused.)
fn next_job_id() -> u64 {
    let out = std::process::Command::new("sbatch")
        .args([
            "--parsable",
            "--hold",
            "-p",
            "main",
            "-A",
            "dev",
            "-J",
            "dw-probe-next-id",
            "--wrap",
            "true",
        ])
        .output()
        .unwrap();
    let id: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .split(';')
        .next()
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "sbatch gave no id: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let _ = std::process::Command::new("scancel")
        .arg(id.to_string())
        .status();
    id + 1
}

use crate::slurm_pipeline::SLURM_DEADLINE;

/// A ready-file the service user cannot read (an instrument with umask 077): warned about once, shown by
/// `status`, and submitted once it can be read (said once too). Runs the daemon as `nobody`, so the test
/// must run as root (root reads every file).
#[test]
fn an_unreadable_ready_file_is_warned_about_once_shown_in_status_and_submitted_when_readable() {
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            !slurm_required(),
            "this test needs root (it runs the daemon as nobody)"
        );
        eprintln!("SKIPPED an_unreadable_ready_file: needs root");
        return;
    }
    const NOBODY: u32 = 65534;
    let env = TestEnv::local("unreadable").job("wrap_cmd: true");
    for p in [env.tmp.path(), env.root.as_path()] {
        std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let dir = env.ready_dir("umask-077");
    let ready = dir.join("_READY");
    std::fs::set_permissions(&ready, std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = start_as(&env, 0o022, "", Some(NOBODY));
    d.wait_log("cannot open the ready-file", DEADLINE);
    // `status` shows it as waiting, unreadable, with the reason, and counts it.
    let unreadable = |status: &serde_json::Value| -> Vec<serde_json::Value> {
        status["waiting"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter(|x| x["state"] == "unreadable")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let status = wait_for(DEADLINE, "status to list the unreadable directory", || {
        let s = env.status();
        (!unreadable(&s).is_empty()).then_some(s)
    });
    let listed = unreadable(&status);
    assert_eq!(listed.len(), 1, "{status}");
    assert_eq!(listed[0]["dir"], "umask-077", "{status}");
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("ermission denied"),
        "{status}"
    );
    assert_eq!(status["counts"]["unreadable"], 1, "{status}");
    // Looked at again every scan (0.3 s) for a while: still one warning, nothing submitted.
    let window = std::time::Instant::now();
    while window.elapsed() < Duration::from_secs(2) {
        assert!(env.history(&dir).is_empty(), "submitted without reading it");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        d.log().matches("cannot open the ready-file").count(),
        1,
        "{}",
        d.log()
    );

    std::fs::set_permissions(&ready, std::fs::Permissions::from_mode(0o644)).unwrap();
    let g = env.wait_final(&dir, DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{}", d.log());
    d.wait_log("can be read again", DEADLINE);
    wait_for(DEADLINE, "status to list nothing unreadable", || {
        unreadable(&env.status()).is_empty().then_some(())
    });
}

/// `job.output_group`: the members of the group the admin chooses may read the job output (the scientist
/// whose directory it is, when the group is theirs), and no one else may.
#[test]
fn job_output_is_readable_by_the_output_group_and_no_one_else() {
    if unsafe { libc::geteuid() } != 0 {
        assert!(!slurm_required(), "needs root (runuser)");
        return;
    }
    // dwtest's own group: dwtest stands for the scientist, `nobody` for anyone else.
    let env = TestEnv::local("outgroup")
        .job("wrap_cmd: echo output-of-the-job")
        .job("output_group: dwtest");
    for p in [env.tmp.path(), env.root.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let dir = env.ready_dir("case");
    let _d = env.start();
    let g = env.wait_final(&dir, DEADLINE);
    let out = env.job_output(&dir, g.job_id.as_deref().unwrap());
    let logs = out.parent().unwrap();
    let m = std::fs::metadata(logs).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o2750, "{:o}", m.mode());
    let gid = std::fs::metadata(env.root.join(".dirwatcher"))
        .unwrap()
        .gid();
    assert_eq!(m.gid(), gid);
    let read_as = |user: &str| {
        std::process::Command::new("runuser")
            .args(["-u", user, "--", "cat"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let r = read_as("dwtest");
    assert!(r.status.success(), "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.stdout).starts_with("output-of-the-job "),
        "{r:?}"
    );
    let r = read_as("nobody");
    assert!(!r.status.success(), "another user read the job output");
}
