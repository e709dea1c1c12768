//! What the daemon's own environment and a wrong config do to Slurm submissions, on the real cluster: the
//! shell's `SBATCH_*`/`SQUEUE_*`/`SACCT_*`/`SLURM_*` variables change nothing, a refused account is a
//! configuration error said again and again (log, `status`, systemd's `STATUS=`, metrics) until fixed, and
//! `check-config --slurm` finds such errors before anything runs, without creating a job.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::slurm::*;
use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(60);

macro_rules! need_slurm {
    ($name:expr) => {
        if !slurm_available($name) {
            return;
        }
    };
}

/// A stand-in for systemd's notification socket: every datagram the daemon sent so far.
struct NotifySocket {
    sock: UnixDatagram,
    got: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> (NotifySocket, std::path::PathBuf) {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_nonblocking(true).unwrap();
        (NotifySocket { sock, got: vec![] }, path)
    }

    /// The `STATUS=` lines received so far.
    fn statuses(&mut self) -> Vec<String> {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = self.sock.recv(&mut buf) {
            self.got
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        self.got
            .iter()
            .flat_map(|m| m.lines())
            .filter_map(|l| l.strip_prefix("STATUS="))
            .map(str::to_string)
            .collect()
    }
}

/// Starts the daemon on `env`'s config with `metrics:` lines appended and extra environment.
fn start(env: &TestEnv, metrics: &[String], vars: &[(&str, &OsStr)]) -> Daemon {
    let cfg = env.write_config();
    let mut y = std::fs::read_to_string(&cfg).unwrap();
    if !metrics.is_empty() {
        y += "metrics:\n";
        for l in metrics {
            y += &format!("  {l}\n");
        }
    }
    std::fs::write(&cfg, y).unwrap();
    let log = env.tmp.path().join(format!("daemon-{}.log", run_token()));
    Daemon::spawn_env(&cfg, &log, &[], vars)
}

/// The job's environment as `NAME=value` lines, written by the job into its directory.
fn job_env(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("job-env.txt"))
        .unwrap_or_else(|e| panic!("the job wrote no environment into {}: {e}", dir.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn slurm_variables_in_the_daemons_environment_change_nothing() {
    need_slurm!("slurm_variables_in_the_daemons_environment_change_nothing");
    // No `job.partition`: the job goes to the cluster's default partition (`main`), which a leaked
    // SBATCH_PARTITION would override; SBATCH_EXPORT=NONE would drop WATCH_DIR and job.env from the job.
    let mut env = TestEnv::slurm("env")
        .job("wrap_cmd: sh -c 'env > job-env.txt' job")
        .job("env: {DW_TEST: from-config}");
    env.job.retain(|l| !l.starts_with("partition:"));
    let dir = env.ready_dir("case1");
    let (_sock, sock_path) = NotifySocket::bind(env.tmp.path());
    let leaks: [(&str, &OsStr); 7] = [
        ("SBATCH_PARTITION", OsStr::new("bogus")),
        ("SBATCH_EXPORT", OsStr::new("NONE")),
        ("SQUEUE_FORMAT", OsStr::new("%i")),
        ("SACCT_FORMAT", OsStr::new("JobID")),
        ("SLURM_TIME_FORMAT", OsStr::new("relative")),
        ("NOTIFY_SOCKET", sock_path.as_os_str()),
        ("DW_SITE_VAR", OsStr::new("kept")),
    ];
    let d = start(&env, &[], &leaks);
    let job = env.wait_job_id(&dir, DEADLINE);
    let g = env.wait_final(&dir, DEADLINE);
    assert_eq!(
        (g.final_state.as_deref(), g.exit_code.as_deref()),
        (Some("COMPLETED"), Some("0:0"))
    );
    assert_eq!(scontrol_job(&job)["Partition"], "main");
    let vars = job_env(&dir);
    let has = |line: &str| vars.iter().any(|v| v == line);
    assert!(has(&format!("WATCH_DIR={}", dir.display())), "{vars:?}");
    assert!(has("DW_TEST=from-config"), "{vars:?}");
    assert!(
        has("DW_SITE_VAR=kept"),
        "the rest of the environment is kept"
    );
    assert!(has("SLURM_JOB_PARTITION=main"), "{vars:?}");
    for name in [
        "SBATCH_PARTITION=",
        "SBATCH_EXPORT=",
        "SQUEUE_FORMAT=",
        "SACCT_FORMAT=",
        "NOTIFY_SOCKET=",
    ] {
        assert!(
            !vars.iter().any(|v| v.starts_with(name)),
            "{name} reached the job: {vars:?}"
        );
    }
    let log = d.log();
    let said = log
        .lines()
        .find(|l| l.contains("ignoring") && l.contains("from the environment"))
        .unwrap_or_else(|| panic!("the ignored variables went unsaid: {log}"));
    for name in [
        "SACCT_FORMAT",
        "SBATCH_EXPORT",
        "SBATCH_PARTITION",
        "SLURM_TIME_FORMAT",
        "SQUEUE_FORMAT",
    ] {
        assert!(said.contains(name), "{said}");
    }
    assert!(
        !said.contains("NOTIFY_SOCKET"),
        "systemd's own variables are not news: {said}"
    );
    assert_eq!(env.history(&dir).len(), 1);
    assert_eq!(wait_jobs_named(&env.job_name("case1")), vec![job]);
}

#[test]
fn an_invalid_account_is_said_again_until_fixed_and_shown_in_status() {
    need_slurm!("an_invalid_account_is_said_again_until_fixed_and_shown_in_status");
    // The warning repeats every submit_backoff_max_sec: 2 s here, minutes by default.
    let env = TestEnv::slurm("acct")
        .job("account: nosuch-account")
        .job("wrap_cmd: true")
        .behavior("submit_backoff_sec: 1")
        .behavior("submit_backoff_max_sec: 2");
    let dir = env.ready_dir("case1");
    let prom = env.tmp.path().join("dirwatcher.prom");
    let (mut sock, sock_path) = NotifySocket::bind(env.tmp.path());
    let d = start(
        &env,
        &[format!("textfile: {:?}", prom)],
        &[("NOTIFY_SOCKET", sock_path.as_os_str())],
    );
    let refusals = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains("WARN") && l.contains("sbatch refuses") && l.contains("`job.account`")
            })
            .count()
    };
    wait_for(DEADLINE, "the refusal to be said twice", || {
        (refusals(&d.log()) >= 2).then_some(())
    });
    let log = d.log();
    assert!(log.contains("still, after"), "{log}");
    assert!(
        log.contains("Invalid account or account/partition combination specified"),
        "{log}"
    );
    assert!(!log.contains("further failures are quiet"), "{log}");

    let s = env.status();
    let r = &s["submissions_refused"];
    assert_eq!(r["reason"], "config", "{s}");
    assert_eq!(r["key"], "job.account", "{s}");
    assert_eq!(r["dir"], dir.to_string_lossy().as_ref(), "{s}");
    let text = Command::new(BIN)
        .args(["status", "--config"])
        .arg(env.config_path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("fix `job.account`"), "{text}");
    let status = wait_for(DEADLINE, "STATUS= to say why", || {
        sock.statuses()
            .into_iter()
            .find(|l| l.contains("submissions refused"))
    });
    assert!(status.contains("(fix `job.account`)"), "{status}");
    let metrics = wait_for(DEADLINE, "the metric", || {
        std::fs::read_to_string(&prom)
            .ok()
            .filter(|m| m.contains("dirwatcher_submissions_blocked{reason=\"config\"} 1"))
    });
    assert!(metrics.contains("dirwatcher_submissions_blocked"));
    assert!(
        squeue_named(&env.job_name("case1")).is_empty()
            && jobs_named(&env.job_name("case1")).is_empty(),
        "a refused submission created a job"
    );

    // The operator fixes the account and reloads: the directory is submitted and completes, once.
    let cfg = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replace("account: nosuch-account", "account: dev");
    std::fs::write(env.config_path(), cfg).unwrap();
    d.signal(libc::SIGHUP);
    let g = env.wait_final(&dir, DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    assert!(env.status()["submissions_refused"].is_null());
    wait_for(DEADLINE, "the metric to clear", || {
        std::fs::read_to_string(&prom)
            .ok()
            .filter(|m| m.contains("dirwatcher_submissions_blocked{reason=\"config\"} 0"))
    });
    assert!(d.log().contains("submissions work again"), "{}", d.log());
    assert_eq!(env.history(&dir).len(), 1);
    assert_eq!(wait_jobs_named(&env.job_name("case1")).len(), 1);
}

#[test]
fn check_config_slurm_names_an_invalid_account_and_a_bad_gres_without_creating_a_job() {
    need_slurm!(
        "check_config_slurm_names_an_invalid_account_and_a_bad_gres_without_creating_a_job"
    );
    let env = TestEnv::slurm("check").job("wrap_cmd: true");
    // The sample directory is the root itself: the job would be named `<prefix>-root`.
    let name = env.job_name("root");

    let (code, out, err) = env.check_slurm();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("slurm accepts the job"), "{out}");
    assert!(out.contains("in partition main"), "{out}");
    assert!(out.contains("--test-only"), "the command is shown: {out}");

    let env = env.job("account: nosuch-account");
    let (code, _, err) = env.check_slurm();
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("fix: `job.account` (now `nosuch-account`)"),
        "{err}"
    );
    assert!(
        err.contains("Invalid account or account/partition combination specified"),
        "what Slurm said: {err}"
    );

    let env = env.job("account: dev").job("gres: nosuch:1");
    let (code, _, err) = env.check_slurm();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("fix: `job.gres` (now `nosuch:1`)"), "{err}");

    let env = env.job("gres: gpu:64");
    let (code, _, err) = env.check_slurm();
    assert_eq!(code, 2, "more gpus than any node has: {err}");
    assert!(err.contains("`job.gres`"), "{err}");

    // The controller lists a job the moment sbatch creates it (and keeps ended ones for MinJobAge).
    assert!(squeue_named(&name).is_empty(), "check-config created a job");
}

#[test]
fn check_config_slurm_under_the_local_executor_has_nothing_to_check() {
    let env = TestEnv::local("checklocal").job("wrap_cmd: true");
    let (code, out, err) = env.check_slurm();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to check"), "{out}");
}

/// Secrets the config reads from the environment (`behavior.smtp_pass_env`, `notify.webhook_token_env`)
/// stay the daemon's: neither a real Slurm job (sbatch exports its whole environment), a local job nor the
/// event hook gets them.
#[test]
fn secrets_read_from_the_environment_reach_no_job_and_no_hook() {
    need_slurm!("secrets_read_from_the_environment_reach_no_job_and_no_hook");
    let secrets: [(&str, &OsStr); 2] = [
        ("DW_SMTP_SECRET", OsStr::new("smtp-s3cret-value")),
        ("DW_TOKEN_SECRET", OsStr::new("t0ken-s3cret-value")),
    ];
    for env in [TestEnv::slurm("secret"), TestEnv::local("secret")] {
        let hook_env = env.tmp.path().join("hook-env.txt");
        let env = env
            .job("wrap_cmd: sh -c 'env > job-env.txt' job")
            .behavior("smtp_host: 127.0.0.1")
            .behavior("smtp_user: dw")
            .behavior("smtp_pass_env: DW_SMTP_SECRET")
            .notify("email_via: smtp")
            .notify("webhooks: [\"http://127.0.0.1:9/h\"]")
            .notify("webhook_token_env: DW_TOKEN_SECRET")
            .notify("events: [completed]")
            .notify(&format!(
                "command: [\"sh\", \"-c\", \"env > {}\"]",
                hook_env.display()
            ));
        let dir = env.ready_dir("case1");
        let _d = start(&env, &[], &secrets);
        let g = env.wait_final(&dir, DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{g:?}");
        wait_for(DEADLINE, "the hook to run", || {
            hook_env.exists().then_some(())
        });
        let hook = std::fs::read_to_string(&hook_env).unwrap();
        let job = job_env(&dir);
        assert!(job.iter().any(|v| v.starts_with("WATCH_DIR=")), "{job:?}");
        for (name, value) in secrets {
            let value = value.to_str().unwrap();
            assert!(
                !job.iter().any(|v| v.contains(value) || v.starts_with(name)),
                "{name} reached the job: {job:?}"
            );
            assert!(!hook.contains(value), "{name} reached the hook: {hook}");
        }
    }
}
