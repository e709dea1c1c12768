//! Service checks as a real site runs dirwatcher: the freshly built `.deb` installed in the site container
//! (`scripts/site-cluster.sh`: Debian 13 with systemd 257 as PID 1 and Slurm 24.11 with accounting, or
//! Debian sid with systemd 262 and Slurm 26.05: `DIRWATCHER_SITE_SUITE=sid`) and driven
//! with `systemctl`, `journalctl` and Slurm's own commands, the way an administrator checks a service. One
//! check per test, each from a freshly installed package; they take turns (one container, one service).
//!
//! Run by `scripts/test.sh` after `scripts/build-deb.sh`; by hand:
//! `scripts/site-cluster.sh up && cargo test --test site -- --test-threads 1`. Without the container the
//! checks are skipped, but FAIL when `CI=true` or `DIRWATCHER_REQUIRE_SLURM=1`. What they measure (READY
//! latency, the security score, stop times) is appended to `target/site-report.txt`.

mod ct;

use std::time::{Duration, Instant};

use ct::*;

const JOB_DEADLINE: Duration = Duration::from_secs(90);

macro_rules! site_check {
    ($name:expr) => {
        let _serial = serial();
        if !available($name) {
            return;
        }
    };
}

/// A directory made ready under the running service ends as a COMPLETED job; returns (job id, its
/// output). The output file is where the daemon said it would be when it submitted the job.
fn one_job(svc: &Service, name: &str) -> (String, String) {
    let dir = svc.ready_dir(name);
    let line = svc.wait_journal(&format!("for \"{dir}\" COMPLETED"), JOB_DEADLINE);
    let job = line
        .strip_prefix("job ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job id in {line:?}"))
        .to_string();
    let out = must(&format!("cat '{}'", output_of(svc, &job)));
    (job, out)
}

/// The job's output file, from the daemon's `submitted job JOB … output in "PATH"` line.
fn output_of(svc: &Service, job: &str) -> String {
    let log = svc.journal(&format!("JOB={job}"));
    log.lines()
        .find(|l| l.starts_with(&format!("submitted job {job} ")))
        .and_then(|l| l.split_once("; output in \""))
        .and_then(|(_, p)| p.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no `output in` for job {job} in:\n{log}"))
        .to_string()
}

#[test]
fn installing_the_package_starts_nothing_until_configured() {
    site_check!("installing_the_package_starts_nothing_until_configured");
    let svc = Service::install(&config(&[ENV_JOB]));
    assert_ne!(
        svc.prop("ActiveState"),
        "active",
        "dpkg -i started the service"
    );
    assert_eq!(must("systemctl is-enabled dirwatcher || true"), "disabled");
    // The shipped example config validates on this system (its root exists here).
    must("dirwatcher check-config --quiet --config /usr/share/doc/dirwatcher/config.example.yaml");
}

#[test]
fn start_reaches_active_with_ready_and_a_status_line() {
    site_check!("start_reaches_active_with_ready_and_a_status_line");
    let svc = Service::install(&config(&[ENV_JOB]));
    svc.start();
    // Type=notify: active only once READY=1 arrived.
    assert_eq!(svc.prop("Type"), "notify");
    let start: u64 = svc.prop("ExecMainStartTimestampMonotonic").parse().unwrap();
    let active: u64 = svc.prop("ActiveEnterTimestampMonotonic").parse().unwrap();
    assert!(active >= start, "active {active} before exec {start}");
    record(
        "ready",
        &format!("READY=1 {} ms after exec", (active - start) / 1000),
    );
    let status = svc.prop("StatusText");
    assert!(
        status.starts_with(&format!("watching {ROOT}: ")),
        "StatusText={status:?}"
    );
    let shown = must("systemctl status dirwatcher --no-pager -l || true");
    assert!(shown.contains(&format!("Status: \"{status}\"")), "{shown}");
    // The container's systemd (257 or 262) loads the unit without a complaint.
    let (_, systemd) = lines();
    assert!(
        must("systemctl --version").starts_with(&format!("systemd {systemd} ")),
        "not the systemd of this suite"
    );
    let verify = sh("systemd-analyze verify --man=no /usr/lib/systemd/system/dirwatcher.service");
    assert!(verify.ok && verify.stderr.trim().is_empty(), "{verify}");
}

#[test]
fn a_directory_is_processed_end_to_end_on_the_sites_slurm_by_the_service_user() {
    site_check!("a_directory_is_processed_end_to_end_on_the_sites_slurm_by_the_service_user");
    let svc = Service::install(&config(&[ENV_JOB]));
    svc.start();
    let name = format!("e2e-{}", token());
    let (job, out) = one_job(&svc, &name);
    let rows = slurm::wait_final_row(&format!("dirwatch-{name}"), JOB_DEADLINE);
    assert_eq!(
        rows,
        [format!("{job}|dirwatcher|COMPLETED")],
        "exactly one job"
    );
    let (slurm, _) = lines();
    let version = must("sinfo -V");
    assert!(
        version.starts_with(&format!("slurm-wlm {slurm}.")),
        "{version}: not the Slurm of this suite"
    );
    assert!(
        out.lines().any(|l| l == format!("WATCH_DIR={ROOT}/{name}")),
        "{out}"
    );
    // D4: the job has the job's umask (job.umask, 0022), not the unit's UMask=0027, so its output is
    // 0644 as when a person submits it.
    assert!(out.lines().any(|l| l == "UMASK=0022"), "{out}");
    assert_eq!(
        must(&format!("stat -c '%U %a' '{}'", output_of(&svc, &job))),
        "dirwatcher 644"
    );
    // By default in the root's private output folder, made by the daemon (no one else can plant a
    // link there), named after the job.
    assert_eq!(
        output_of(&svc, &job),
        format!("{ROOT}/.dirwatcher/logs/dirwatch-{name}-{job}.out")
    );
    assert_eq!(
        must(&format!("stat -c '%U %a' {ROOT}/.dirwatcher/logs")),
        "dirwatcher 750"
    );
    let status = svc.prop("StatusText");
    assert!(status.contains("1 completed"), "{status}");
}

/// D3: sbatch exports the submitter's environment by default, and the daemon's holds systemd's
/// variables for the daemon alone; on a compute node they point at nothing, on the daemon's host at PID 1.
#[test]
fn the_job_environment_has_none_of_the_daemons_systemd_variables() {
    site_check!("the_job_environment_has_none_of_the_daemons_systemd_variables");
    let svc = Service::install(&config(&[ENV_JOB, "env: {SITE_VAR: kept}"]));
    svc.start();
    let (_, out) = one_job(&svc, &format!("env-{}", token()));
    let leaked: Vec<&str> = out
        .lines()
        .filter(|l| {
            [
                "NOTIFY_SOCKET=",
                "WATCHDOG_PID=",
                "WATCHDOG_USEC=",
                "JOURNAL_STREAM=",
                "INVOCATION_ID=",
                "SYSTEMD_EXEC_PID=",
                "MEMORY_PRESSURE_WATCH=",
                "MEMORY_PRESSURE_WRITE=",
            ]
            .iter()
            .any(|v| l.starts_with(v))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "the job inherited the daemon's systemd variables: {leaked:?}"
    );
    // What the job does need is there: job.env, WATCH_DIR, an ordinary PATH.
    for want in ["SITE_VAR=kept", "WATCH_DIR=", "PATH="] {
        assert!(
            out.lines().any(|l| l.starts_with(want)),
            "no {want} in:\n{out}"
        );
    }
}

/// D2: the journal fields hold the plain path and the job id, so the obvious query finds the lines.
#[test]
fn journalctl_finds_a_directory_and_its_job_by_field() {
    site_check!("journalctl_finds_a_directory_and_its_job_by_field");
    let svc = Service::install(&config(&[ENV_JOB]));
    svc.start();
    let name = format!("fields-{}", token());
    let (job, _) = one_job(&svc, &name);
    let dir = format!("{ROOT}/{name}");
    let by_dir = svc.journal(&format!("DIR={dir}"));
    assert!(
        by_dir.contains(&format!(
            "submitted job {job} (dirwatch-{name}) for \"{dir}\""
        )) && by_dir.contains("COMPLETED"),
        "journalctl -u dirwatcher DIR={dir}:\n{by_dir}\n--- verbose:\n{}",
        svc.journal(&format!("-o verbose JOB={job}"))
    );
    let by_job = svc.journal(&format!("JOB={job}"));
    assert!(
        by_job.lines().count() >= 2 && by_job.contains("COMPLETED"),
        "journalctl -u dirwatcher JOB={job}:\n{by_job}"
    );
}

#[test]
fn reload_applies_a_valid_change_and_a_broken_config_fails_the_reload_visibly() {
    site_check!("reload_applies_a_valid_change_and_a_broken_config_fails_the_reload_visibly");
    let svc = Service::install(&config(&[ENV_JOB]));
    svc.start();
    let pid = svc.prop("MainPID");
    // A valid change: a new job name prefix, taken without a restart.
    svc.write_config(&config(&[ENV_JOB, "job_name_prefix: reloaded"]));
    let t = Instant::now();
    must("systemctl reload dirwatcher");
    record(
        "reload",
        &format!("systemctl reload took {} ms", t.elapsed().as_millis()),
    );
    svc.wait_journal("config reloaded from", Duration::from_secs(10));
    assert_eq!(svc.prop("MainPID"), pid, "reload restarted the daemon");
    let name = format!("reload-{}", token());
    let (job, _) = one_job(&svc, &name);
    let rows = slurm::wait_final_row(&format!("reloaded-{name}"), JOB_DEADLINE);
    assert_eq!(rows, [format!("{job}|dirwatcher|COMPLETED")]);
    // A broken config: `systemctl reload` fails and says why; the daemon runs on, on the old config.
    svc.write_config("watch: [broken\n");
    let o = sh("systemctl reload dirwatcher");
    assert!(
        !o.ok,
        "systemctl reload succeeded with a broken config:\n{o}"
    );
    let log = svc.wait_journal("invalid config", Duration::from_secs(10));
    assert!(log.contains(CONFIG), "{log}");
    assert_eq!(svc.prop("ActiveState"), "active");
    assert_eq!(svc.prop("MainPID"), pid);
    let still = format!("after-{}", token());
    one_job(&svc, &still);
    assert_eq!(
        slurm::wait_final_row(&format!("reloaded-{still}"), JOB_DEADLINE).len(),
        1,
        "the old config's prefix should still apply"
    );
}

#[test]
fn the_watchdog_restarts_a_stopped_daemon() {
    site_check!("the_watchdog_restarts_a_stopped_daemon");
    let svc = Service::install(&config(&[ENV_JOB]));
    must(
        "printf '[Service]\\nWatchdogSec=4s\\n' | systemctl edit --stdin --drop-in=zz-watchdog dirwatcher",
    );
    svc.start();
    let pid = svc.prop("MainPID");
    let t = Instant::now();
    must(&format!("kill -STOP {pid}"));
    wait_for(Duration::from_secs(40), "a new, active daemon", || {
        let now = svc.prop("MainPID");
        (now != pid && now != "0" && svc.prop("ActiveState") == "active").then_some(())
    });
    record(
        "watchdog",
        &format!(
            "SIGSTOP -> restarted after {:.1} s (WatchdogSec=4s, RestartSec=5s)",
            t.elapsed().as_secs_f64()
        ),
    );
    svc.wait_journal("Watchdog timeout", Duration::from_secs(5));
    assert_eq!(svc.prop("NRestarts"), "1");
}

/// D1: `systemctl stop` while sbatch waits for an unreachable controller. The daemon alone gets SIGTERM
/// (KillMode=mixed), sbatch goes on, the controller comes back, and the job is recorded, not left as an
/// unknown outcome.
#[test]
fn stop_during_a_slow_sbatch_records_the_real_job() {
    site_check!("stop_during_a_slow_sbatch_records_the_real_job");
    let svc = Service::install(&config(&[ENV_JOB]));
    svc.start();
    must("systemctl stop slurmctld");
    let name = format!("stop-{}", token());
    let dir = svc.ready_dir(&name);
    wait_for(Duration::from_secs(30), "sbatch to run", || {
        sh("pgrep -u dirwatcher -x sbatch").ok.then_some(())
    });
    let t = Instant::now();
    must("systemctl stop --no-block dirwatcher");
    must("systemctl start slurmctld");
    wait_for(Duration::from_secs(60), "the daemon to stop", || {
        (svc.prop("ActiveState") == "inactive").then_some(())
    });
    record(
        "stop-during-sbatch",
        &format!(
            "systemctl stop waited {:.1} s for sbatch (KillMode={})",
            t.elapsed().as_secs_f64(),
            svc.prop("KillMode")
        ),
    );
    let log = svc.journal("");
    assert!(
        !log.contains("unknown outcome") && !log.contains("signal 15"),
        "sbatch was killed with the daemon:\n{log}"
    );
    assert!(
        log.contains(&format!("for \"{dir}\" (attempt 1)")),
        "the job was not recorded before the daemon stopped:\n{log}"
    );
    assert_eq!(svc.prop("Result"), "success");
    // And exactly one job, after the service is back.
    svc.start();
    svc.wait_journal(&format!("for \"{dir}\" COMPLETED"), JOB_DEADLINE);
    assert_eq!(
        slurm::wait_final_row(&format!("dirwatch-{name}"), JOB_DEADLINE).len(),
        1
    );
}

#[test]
fn a_reboot_catches_up_with_a_directory_made_ready_while_down() {
    site_check!("a_reboot_catches_up_with_a_directory_made_ready_while_down");
    let svc = Service::install(&config(&[ENV_JOB]));
    must("systemctl enable --now dirwatcher");
    svc.wait_active();
    must("systemctl stop dirwatcher");
    let name = format!("boot-{}", token());
    let dir = svc.ready_dir(&name);
    let t = Instant::now();
    for step in ["down", "up"] {
        let o = std::process::Command::new("bash")
            .args([SCRIPT, step])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "scripts/site-cluster.sh {step}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let line = wait_for(JOB_DEADLINE, "the job after the reboot", || {
        must("journalctl -b -u dirwatcher --no-pager -q -o cat")
            .lines()
            .find(|l| l.contains(&format!("for \"{dir}\" COMPLETED")))
            .map(str::to_string)
    });
    record(
        "reboot",
        &format!(
            "down + up + job COMPLETED in {:.1} s: {line}",
            t.elapsed().as_secs_f64()
        ),
    );
    assert_eq!(
        slurm::wait_final_row(&format!("dirwatch-{name}"), JOB_DEADLINE).len(),
        1
    );
    assert_eq!(
        must("systemctl --failed --plain --no-legend"),
        "",
        "failed units after boot"
    );
}

/// D5: a config error (exit 2) cannot be fixed by restarting: the unit ends `failed` at once instead of
/// restarting every RestartSec for ever.
#[test]
fn an_invalid_config_at_start_leaves_the_unit_failed_not_looping() {
    site_check!("an_invalid_config_at_start_leaves_the_unit_failed_not_looping");
    let svc = Service::install("watch: [broken\n");
    let o = sh("systemctl start dirwatcher");
    assert!(!o.ok, "systemctl start succeeded with a broken config");
    wait_for(Duration::from_secs(15), "the unit to be failed", || {
        (svc.prop("ActiveState") == "failed").then_some(())
    });
    assert_eq!(svc.prop("ExecMainStatus"), "2");
    assert_eq!(svc.prop("NRestarts"), "0", "restarted after a config error");
    let log = svc.journal("");
    assert_eq!(
        log.matches("invalid config").count(),
        1,
        "the error should be logged once:\n{log}"
    );
}

/// D6: every program the unit runs comes from the package or one it depends on (procps for
/// `ExecReload=/bin/kill`, absent from minimal systems).
#[test]
fn the_package_depends_on_every_program_its_unit_runs() {
    site_check!("the_package_depends_on_every_program_its_unit_runs");
    let _svc = Service::install(&config(&[ENV_JOB]));
    let depends = must("dpkg-query -W -f='${Depends}' dirwatcher");
    let names: Vec<&str> = depends
        .split(',')
        .filter_map(|d| d.split_whitespace().next())
        .collect();
    let programs = must(
        "systemctl cat dirwatcher | sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\\([^ ]*\\).*/\\1/p' | sort -u",
    );
    assert!(!programs.is_empty());
    for p in programs.lines() {
        let pkg = must(&format!(
            "dpkg -S \"$(readlink -f {p})\" 2>/dev/null || dpkg -S {p}"
        ));
        let pkg = pkg.split(':').next().unwrap_or_default().trim();
        assert!(
            pkg == "dirwatcher" || names.contains(&pkg),
            "the unit runs {p}, from package {pkg}, which is not in Depends: {depends}"
        );
    }
}

#[test]
fn systemd_analyze_security_rates_the_unit_as_documented() {
    site_check!("systemd_analyze_security_rates_the_unit_as_documented");
    let _svc = Service::install(&config(&[ENV_JOB]));
    let report = must("systemd-analyze security dirwatcher.service --no-pager");
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("exposure level for dirwatcher.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{report}"));
    record(
        "security",
        &format!(
            "systemd-analyze security (systemd {}): {score}",
            must("systemctl --version | awk 'NR==1{print $2}'")
        ),
    );
    assert!(
        score <= 2.0,
        "exposure {score} is worse than documented (2.0):\n{report}"
    );
}

/// Issue 13: two roots on one host, as README.package says, from the package's template unit: each
/// instance processes its own root with its own ledger, its journal lines carry its name, and stopping one
/// leaves the other running.
#[test]
fn two_instances_of_the_template_unit_each_process_their_own_root_and_removal_stops_both() {
    site_check!(
        "two_instances_of_the_template_unit_each_process_their_own_root_and_removal_stops_both"
    );
    let _svc = Service::install(&config(&[ENV_JOB]));
    let t = token();
    let names = ["a", "b"];
    for n in names {
        let root = format!("{ROOT}-{n}");
        let yaml = config(&[ENV_JOB]).replace(ROOT, &root)
            + &format!(
                "behavior:\n  instance: {n}\n  state_file: /var/lib/dirwatcher/{n}/state.db\n  \
                 failure_log: /var/log/dirwatcher/{n}/failed_jobs.log\n"
            );
        let o = sh_with_input(
            &format!(
                "set -e; mkdir -p {root}; chown dirwatcher:dirwatcher {root}
install -m 0640 -g dirwatcher /dev/stdin /etc/dirwatcher/{n}.yaml"
            ),
            yaml.as_bytes(),
        );
        assert!(o.ok, "cannot set up instance {n}:\n{o}");
        must(&format!(
            "printf '[Service]\\nReadWritePaths={root}\\n' | systemctl edit --stdin --drop-in=local-root dirwatcher@{n}
systemctl start dirwatcher@{n}"
        ));
    }
    for n in names {
        wait_for(
            Duration::from_secs(30),
            &format!("dirwatcher@{n} to be active"),
            || {
                (must(&format!("systemctl show -P ActiveState dirwatcher@{n}")) == "active")
                    .then_some(())
            },
        );
        let verify = sh(&format!(
            "systemd-analyze verify --man=no dirwatcher@{n}.service"
        ));
        assert!(verify.ok && verify.stderr.trim().is_empty(), "{verify}");
        must(&format!(
            "runuser -u dirwatcher -- sh -c 'mkdir {ROOT}-{n}/inst-{t} && touch {ROOT}-{n}/inst-{t}/_READY'"
        ));
    }
    for n in names {
        let dir = format!("{ROOT}-{n}/inst-{t}");
        // The instance's own journal, matched by its field: its directory ended, the other's is not there.
        let mine = wait_for(
            JOB_DEADLINE,
            &format!("dirwatcher@{n} to finish {dir}"),
            || {
                let log = must(&format!(
                    "journalctl -u dirwatcher@{n} INSTANCE={n} --no-pager -q -o cat"
                ));
                log.contains(&format!("for \"{dir}\" COMPLETED"))
                    .then_some(log)
            },
        );
        let other = if n == "a" { "b" } else { "a" };
        assert!(
            !mine.contains(&format!("{ROOT}-{other}/")),
            "dirwatcher@{n} logged the other root:\n{mine}"
        );
        let state = must(&format!("stat -c '%U %a' /var/lib/dirwatcher/{n}/state.db"));
        assert_eq!(state, "dirwatcher 640", "instance {n}'s ledger");
    }
    // One job per directory, whichever instance ran it: neither saw the other's root.
    for n in names {
        let rows = slurm::wait_final_row(&format!("dirwatch-inst-{t}"), JOB_DEADLINE);
        assert_eq!(
            rows.len(),
            2,
            "one job per instance's directory, not more:\n{rows:?} ({n})"
        );
    }
    must("systemctl stop dirwatcher@a");
    assert_eq!(must("systemctl show -P ActiveState dirwatcher@b"), "active");
    assert_eq!(must("systemctl show -P ActiveState dirwatcher"), "inactive");
    // Removing the package stops and disables every instance before its binary goes: `a` enabled but
    // stopped, `b` running and enabled. Nothing is left to start at boot, nothing runs a deleted binary.
    must("systemctl enable dirwatcher@a dirwatcher@b 2>/dev/null");
    must("apt-get remove -y -q dirwatcher >/dev/null 2>&1");
    for n in names {
        let unit = format!("dirwatcher@{n}");
        assert_eq!(
            must(&format!("systemctl show -P ActiveState {unit}")),
            "inactive",
            "{unit} after the package was removed"
        );
        let link = sh(&format!(
            "test -e /etc/systemd/system/multi-user.target.wants/{unit}.service"
        ));
        assert!(
            !link.ok,
            "{unit} is still enabled after the package was removed"
        );
    }
}

/// Local jobs are not the service's to kill: `systemctl restart` while a local job runs leaves the job
/// running (the unit's `KillMode=process`), the new daemon finds it again, and it ends COMPLETED, once —
/// not NODE_FAIL because systemd killed what was left in the unit's control group.
#[test]
fn a_restart_while_a_local_job_runs_keeps_the_job_and_records_it_completed() {
    site_check!("a_restart_while_a_local_job_runs_keeps_the_job_and_records_it_completed");
    let t = token();
    // The job waits for a gate file the check makes after the restart (hidden: never a candidate).
    let gate = format!("{ROOT}/.gate-{t}");
    let job =
        format!("wrap_cmd: sh -c 'while [ ! -e {gate} ]; do sleep 0.2; done; echo through' job");
    let svc = Service::install(&config(&["executor: local", &job]));
    svc.start();
    let name = format!("local-{t}");
    let dir = svc.ready_dir(&name);
    let submitted = svc.wait_journal(&format!("\"{dir}\""), JOB_DEADLINE);
    let pid_before = svc.prop("MainPID");
    wait_for(JOB_DEADLINE, "the local job to run", || {
        sh(&format!(
            "pgrep -u dirwatcher -f 'while \\[ ! -e {gate} \\]'"
        ))
        .ok
        .then_some(())
    });
    must("systemctl restart dirwatcher");
    svc.wait_active();
    assert_ne!(svc.prop("MainPID"), pid_before, "not restarted");
    assert!(
        sh(&format!(
            "pgrep -u dirwatcher -f 'while \\[ ! -e {gate} \\]'"
        ))
        .ok,
        "the restart killed the local job (after {submitted:?})"
    );
    must(&format!("runuser -u dirwatcher -- touch {gate}"));
    let line = svc.wait_journal(&format!("for \"{dir}\" COMPLETED"), JOB_DEADLINE);
    let log = svc.journal("");
    let ends: Vec<&str> = log
        .lines()
        .filter(|l| {
            ["COMPLETED", "FAILED", "NODE_FAIL", "CANCELLED", "TIMEOUT"]
                .iter()
                .any(|s| l.contains(&format!("for \"{dir}\" {s}")))
        })
        .collect();
    assert_eq!(
        ends,
        [line.as_str()],
        "one end, COMPLETED, for {dir}:\n{log}"
    );
    record(
        "a_restart_while_a_local_job_runs_keeps_the_job_and_records_it_completed",
        &format!("local job kept across a restart: {line}"),
    );
}

/// The schema version this checkout's ledger code writes (`SCHEMA_VERSION` in its source).
fn schema_of_this_checkout() -> i64 {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/ledger/schema.rs"))
        .unwrap();
    src.lines()
        .find_map(|l| l.strip_prefix("pub const SCHEMA_VERSION: i64 = "))
        .and_then(|v| v.trim_end_matches(';').parse().ok())
        .expect("SCHEMA_VERSION in src/ledger/schema.rs")
}

/// The newest schema version the service's ledger records.
fn ledger_schema() -> i64 {
    must(
        "python3 -c \"import sqlite3; print(sqlite3.connect('file:/var/lib/dirwatcher/state.db?mode=ro', \
         uri=True).execute('SELECT MAX(version) FROM schema_version').fetchone()[0])\"",
    )
    .trim()
    .parse()
    .unwrap()
}

/// Issue 24: the previous release's package installed and running with jobs in flight on the site's
/// Slurm, this checkout's package installed over it: the service restarts on the new binary, the ledger
/// is brought to the new schema, every directory (those in flight, and those made ready after) has exactly
/// one job and one COMPLETED end. Then the previous package over the new one is refused, and the new one
/// stays installed and running.
#[test]
fn an_upgrade_with_jobs_in_flight_runs_each_directory_once_and_a_downgrade_is_refused() {
    site_check!(
        "an_upgrade_with_jobs_in_flight_runs_each_directory_once_and_a_downgrade_is_refused"
    );
    let t = token();
    // The jobs wait for a gate file the check makes after the upgrade (hidden: never a candidate).
    let gate = format!("{ROOT}/.gate-{t}");
    let job =
        format!("wrap_cmd: sh -c 'while [ ! -e {gate} ]; do sleep 0.5; done; echo through' job");
    let previous = previous_deb_inside();
    deb_inside();
    let svc = Service::install_from(previous, &config(&[&job]));
    let old_version = must("dirwatcher --version");
    svc.start();
    let mut dirs: Vec<(String, String)> = Vec::new();
    for i in 0..4 {
        let name = format!("upgrade-{t}-{i}");
        dirs.push((svc.ready_dir(&name), name));
    }
    for (dir, _) in &dirs {
        svc.wait_journal(&format!("\"{dir}\""), JOB_DEADLINE);
    }
    wait_for(
        JOB_DEADLINE,
        "every job of the old release in Slurm",
        || {
            dirs.iter()
                .all(|(_, n)| slurm::jobs_named(&format!("dirwatch-{n}")).len() == 1)
                .then_some(())
        },
    );
    let pid_before = svc.prop("MainPID");

    let o = sh("dpkg -i /root/dirwatcher.deb");
    assert!(o.ok, "the upgrade failed:\n{o}");
    let new_version = must("dirwatcher --version");
    assert_ne!(new_version, old_version, "the binary was not replaced");
    svc.wait_active();
    assert_ne!(
        svc.prop("MainPID"),
        pid_before,
        "the upgrade did not restart the service"
    );
    assert_eq!(
        ledger_schema(),
        schema_of_this_checkout(),
        "the ledger was not migrated"
    );
    for i in 4..6 {
        let name = format!("upgrade-{t}-{i}");
        dirs.push((svc.ready_dir(&name), name));
    }
    for (dir, _) in &dirs[4..] {
        svc.wait_journal(&format!("\"{dir}\""), JOB_DEADLINE);
    }
    must(&format!("runuser -u dirwatcher -- touch {gate}"));
    for (dir, name) in &dirs {
        svc.wait_journal(&format!("for \"{dir}\" COMPLETED"), JOB_DEADLINE);
        let rows = slurm::wait_final_row(&format!("dirwatch-{name}"), JOB_DEADLINE);
        assert_eq!(rows.len(), 1, "one job for {dir}: {rows:?}");
        assert!(rows[0].ends_with("|COMPLETED"), "{rows:?}");
    }
    let log = svc.journal("");
    for (dir, _) in &dirs {
        let ends = log
            .lines()
            .filter(|l| {
                [
                    "COMPLETED",
                    "FAILED",
                    "NODE_FAIL",
                    "CANCELLED",
                    "TIMEOUT",
                    "LOST",
                ]
                .iter()
                .any(|s| l.contains(&format!("for \"{dir}\" {s}")))
            })
            .count();
        assert_eq!(ends, 1, "one end for {dir}:\n{log}");
    }

    // The previous release over this one: refused by this package, which stays and keeps running.
    let pid_after = svc.prop("MainPID");
    let o = sh(&format!("dpkg -i {previous}"));
    assert!(!o.ok, "a downgrade was let through:\n{o}");
    assert!(
        o.stderr.contains("refusing to downgrade")
            && o.stderr.contains("DIRWATCHER_ALLOW_DOWNGRADE=1"),
        "the refusal does not say why or what to do:\n{o}"
    );
    assert_eq!(must("dirwatcher --version"), new_version);
    assert_eq!(
        must("dpkg-query -W -f='${Status}' dirwatcher"),
        "install ok installed",
        "the refused downgrade left the package half-installed"
    );
    assert_eq!(svc.prop("ActiveState"), "active");
    assert_eq!(
        svc.prop("MainPID"),
        pid_after,
        "the refused downgrade touched the service"
    );
    record(
        "an_upgrade_with_jobs_in_flight_runs_each_directory_once_and_a_downgrade_is_refused",
        &format!("{old_version} -> {new_version}: 6 directories, 6 jobs; downgrade refused"),
    );
}
