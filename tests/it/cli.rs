//! The command line: config validation, help, and the quick-start demo.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

fn check(yaml: &str) -> (i32, String, String) {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("config.yaml");
    std::fs::write(&p, yaml).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The seed's example, unchanged but for the root, which must exist.
fn seed_example(root: &std::path::Path) -> String {
    let seed = include_str!("../data/seed-config.yaml");
    seed.replace("/data/incoming", &root.to_string_lossy())
}

#[test]
fn seed_example_config_loads_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let (code, out, err) = check(&seed_example(t.path()));
    assert_eq!(code, 0, "{err}");
    for want in [
        "wrap_cmd: \"python3 /opt/dirwatcher/process_dir.py\"",
        "partition: \"main\"",
        "gres: \"gpu:1\"",
        "time_limit: \"00:10:00\"",
        "poll_interval_sec: 5",
        "executor: slurm",
        "state_file: \"/var/lib/dirwatcher/state.json\"",
    ] {
        assert!(
            out.contains(want),
            "effective config lacks {want:?}:\n{out}"
        );
    }
}

#[test]
fn each_kind_of_bad_config_names_key_and_line_and_exits_2() {
    let t = tempfile::tempdir().unwrap();
    let seed = seed_example(t.path());
    let cases: &[(&str, &str, &str)] = &[
        // (replace this, with this, expect in message)
        (
            "  poll_interval_sec: 5",
            "  poll_intervall_sec: 5",
            "line 4, key `watch.poll_intervall_sec`: unknown key `poll_intervall_sec` in `watch:`\n  fix: did you mean `poll_interval_sec`?",
        ),
        (
            "  poll_interval_sec: 5",
            "  poll_interval_sec: 5s",
            "line 4, key `watch.poll_interval_sec`: expected a number of seconds, found `5s`\n  fix: a number of seconds without a unit, e.g. `poll_interval_sec: 5`",
        ),
        (
            "  delete_on_success: false",
            "  delete_on_success: false\n  poll_interval_sec: 5",
            "key `behavior.poll_interval_sec`: `poll_interval_sec` belongs under `watch:`, not `behavior:`",
        ),
        (
            "  stability_checks: 2",
            "  stability_checks: 2\n  stability_checks: 3",
            "line 6, key `watch.stability_checks`: `watch.stability_checks` is given twice (first on line 5)\n  fix: keep one",
        ),
        (
            "  stability_checks: 2",
            "\tstability_checks: 2",
            "line 5 column 1: a tab in the indentation",
        ),
        (
            "  extra_args: []",
            "  extra_args: \"--qos=high\"",
            "key `job.extra_args`: expected a list, found `\"--qos=high\"`\n  fix: write the list form, one item per argument: `extra_args: [\"--qos=high\"]`",
        ),
        (
            "  stability_checks: 2",
            "  stability_checks: two",
            "line 5, key `watch.stability_checks`: expected a whole number",
        ),
        (
            "  stability_checks: 2",
            "  stability_checks: -3",
            "line 5, key `watch.stability_checks`: must be a whole number of at least 1",
        ),
        (
            "  stability_interval_sec: 1",
            "  stability_interval_sec: -0.5",
            "line 6, key `watch.stability_interval_sec`",
        ),
        (
            "  delete_on_success: false",
            "  delete_on_success: perhaps",
            "key `behavior.delete_on_success`: expected true or false",
        ),
        (
            "  wrap_cmd: python3 /opt/dirwatcher/process_dir.py\n",
            "",
            "key `job.wrap_cmd`: the job has no command",
        ),
        (
            "  time_limit: 00:10:00",
            "  time_limit: ten minutes",
            "key `job.time_limit`",
        ),
    ];
    for (from, to, expect) in cases {
        assert!(seed.contains(from), "test data lacks {from:?}");
        let (code, _, err) = check(&seed.replacen(from, to, 1));
        assert_eq!(code, 2, "{to:?}: {err}");
        assert!(
            err.contains(expect),
            "{to:?}: expected {expect:?} in:\n{err}"
        );
        assert!(err.contains("fix:"), "{to:?}: no fix suggested:\n{err}");
        assert_eq!(
            err.trim()
                .lines()
                .filter(|l| l.starts_with("error"))
                .count(),
            1,
            "one message: {err}"
        );
    }
}

/// A config with several mistakes: each is said at once, with its own line and fix, in the order of the
/// file, in our words (no parser option names).
#[test]
fn every_config_error_is_reported_in_one_pass() {
    let t = tempfile::tempdir().unwrap();
    let seed = seed_example(t.path())
        .replacen("  poll_interval_sec: 5", "  pol_interval_sec: 5", 1)
        .replacen("  account: dev", "\taccount: dev", 1)
        .replacen("  gres: gpu:1", "  gres: gpu:1\n  gres: gpu:2", 1)
        .replacen("behavior:", "behaviour:", 1);
    let (code, _, err) = check(&seed);
    assert_eq!(code, 2, "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 4, "{err}");
    assert!(
        errors[0].contains("line 4, key `watch.pol_interval_sec`"),
        "{err}"
    );
    assert!(errors[1].contains("line 11 column 1: a tab"), "{err}");
    assert!(errors[2].contains("line 13, key `job.gres`"), "{err}");
    assert!(errors[3].contains("unknown section `behaviour`"), "{err}");
    assert!(err.contains("did you mean `behavior:`"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("  fix:")).count(),
        4,
        "{err}"
    );
    assert!(
        !err.contains("DuplicateKeyPolicy") && !err.contains("Options"),
        "{err}"
    );
    // Errors of different sections found by the validator come together too.
    let seed = seed_example(t.path())
        .replacen("  stability_checks: 2", "  stability_checks: 0", 1)
        .replacen(
            "  state_file: /var/lib/dirwatcher/state.json",
            "  state_file: relative.db",
            1,
        );
    let (code, _, err) = check(&seed);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`watch.stability_checks`") && err.contains("`behavior.state_file`"),
        "{err}"
    );
}

#[test]
fn missing_root_is_an_error_and_is_never_created() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("not-mounted");
    let (code, _, err) = check(&seed_example(&root));
    assert_eq!(code, 2);
    assert!(
        err.contains("key `watch.root`") && err.contains("mounted"),
        "{err}"
    );
    assert!(!root.exists(), "the root was created");
}

#[test]
fn a_symlinked_or_world_writable_root_is_refused_at_start_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let real = t.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = t.path().join("incoming");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let state = t.path().join("state.db");
    let run = |root: &std::path::Path, extra: &str| {
        let p = t.path().join("c.yaml");
        std::fs::write(
            &p,
            format!(
                "watch:\n  root: {}\n{extra}job:\n  wrap_cmd: echo\nbehavior:\n  state_file: {}\n",
                root.display(),
                state.display()
            ),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&p)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err)
    };
    let (code, err) = run(&link, "");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("key `watch.root`")
            && err.contains("symlink")
            && err.contains("allow_unsafe_root"),
        "{err}"
    );
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, err) = run(&real, "");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("key `watch.root`") && err.contains("sticky"),
        "{err}"
    );
    let (code, err) = run(&real, "  allow_unsafe_root: true\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(!state.exists(), "check-config started something");
}

#[test]
fn run_with_bad_config_does_nothing_and_exits_2() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("c.yaml");
    let state = t.path().join("state.db");
    std::fs::write(
        &p,
        format!(
            "watch:\n  root: {}\n  bogus: 1\njob:\n  wrap_cmd: echo\nbehavior:\n  state_file: {}\n",
            t.path().display(),
            state.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!state.exists(), "the daemon started before validating");
}

#[test]
fn help_teaches_each_command() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "run",
        "check-config",
        "status",
        "explain",
        "retry",
        "cancel",
        "forget",
        "demo",
    ] {
        assert!(text.contains(cmd), "--help lacks {cmd}");
    }
    let out = Command::new(BIN)
        .args(["check-config", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Every key of the table, with its default in brackets on the same line.
    for key in dirwatcher::config::keys::ALL {
        let bracket = format!(" [{}] ", key.default.words());
        assert!(
            text.lines().any(|l| l
                .trim_start()
                .strip_prefix(key.name)
                .is_some_and(|rest| rest.starts_with(' ') && rest.contains(&bracket))),
            "check-config --help lacks `{}{bracket}`:\n{text}",
            key.name
        );
    }
}

/// A config that sets only what it must: `check-config` shows the documented defaults, among them the
/// ledger at `state.db`.
#[test]
fn check_config_fills_in_the_documented_defaults() {
    let t = tempfile::tempdir().unwrap();
    let yaml = format!(
        "watch:\n  root: {}\njob:\n  wrap_cmd: echo\n",
        t.path().display()
    );
    let (code, out, err) = check(&yaml);
    assert_eq!(code, 0, "{err}");
    for want in [
        "  signal_filename: \"_READY\"\n",
        "  poll_interval_sec: 5\n",
        "  stability_checks: 2\n",
        "  executor: slurm\n",
        "  job_name_prefix: \"dirwatch\"\n",
        "  command_timeout_sec: 60\n",
        "  delete_on_success: false\n",
        "  state_file: \"/var/lib/dirwatcher/state.db\"\n",
        "  failure_log: \"/var/log/dirwatcher/failed_jobs.log\"\n",
        "  submit_backoff_max_sec: 300\n",
        "  listen: null\n",
    ] {
        assert!(
            out.contains(want),
            "effective config lacks {want:?}:\n{out}"
        );
    }
}

/// The README's first command: the demo picks up a sample directory, processes it and stops on Ctrl-C.
#[test]
fn demo_processes_a_sample_and_stops_on_sigint() {
    let t = tempfile::tempdir().unwrap();
    let base = t.path().join("demo");
    let log = t.path().join("demo.log");
    let child = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&base)
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child: Some(child),
        log,
    };
    d.wait_log("COMPLETED", Duration::from_secs(30));
    let done = base.join("incoming/sample-001/_DONE");
    let summary = std::fs::read_to_string(&done).unwrap();
    assert!(summary.contains("files"), "{summary}");
    d.signal(libc::SIGINT);
    let st = d.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "demo exit {st:?}");
}

/// Every command that prints, with its standard output a pipe whose reader is already gone
/// (`dirwatcher status | head -0`): no panic, no backtrace, and the exit status it has with a reader.
#[test]
fn a_reader_that_went_away_ends_every_command_quietly() {
    let env = TestEnv::local("closed-pipe").job("wrap_cmd: \"true\"");
    let config = env.write_config();
    let dir = env.ready_dir("case1");
    let stage = tempfile::tempdir().unwrap();
    let c = config.to_str().unwrap();
    let d = dir.to_str().unwrap();
    let staged = stage.path().join("staged");
    let man = stage.path().join("man");
    let root = env.root.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["--version"],
        vec!["check-config", "--help"],
        vec!["check-config", "--config", c],
        vec!["check-config", "--slurm", "--config", c],
        vec!["run", "--once", "--allow-root", "--config", c],
        vec!["status", "--config", c],
        vec!["status", "--json", "--config", c],
        vec!["status", "-P", "--config", c],
        vec!["status", "--state", "failed", "--config", c],
        vec!["explain", "--config", c, d],
        vec!["explain", "--json", "--config", c, d],
        vec!["run", "--dry-run", "--config", c],
        vec!["retry", "--config", c, d],
        vec!["retry", "--all-failed", "--config", c],
        vec!["cancel", "--config", c, d],
        vec!["forget", "--config", c, d],
        vec![
            "install",
            "--dry-run",
            "--watch-root",
            root,
            "--destdir",
            staged.to_str().unwrap(),
        ],
        vec!["__generate", "man", man.to_str().unwrap()],
    ];
    for args in commands {
        let with_reader = Command::new(BIN)
            .args(&args)
            .stdout(std::process::Stdio::null())
            .output()
            .unwrap();
        let shown = args.join(" ");
        // Each one does its work (a refused retry or cancel of a directory that did not fail or run exits 1).
        let refused = (args[0] == "retry" && args[1] != "--all-failed") || args[0] == "cancel";
        let want = if refused { Some(1) } else { Some(0) };
        assert_eq!(
            with_reader.status.code(),
            want,
            "`dirwatcher {shown}`: {}",
            String::from_utf8_lossy(&with_reader.stderr)
        );
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let gone = Command::new(BIN)
            .args(&args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&gone.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "`dirwatcher {shown}` into a closed pipe: {err}"
        );
        assert_eq!(
            gone.status.code(),
            with_reader.status.code(),
            "`dirwatcher {shown}` exits otherwise into a closed pipe: {err}"
        );
    }
}

#[test]
fn an_instance_that_is_not_installed_is_named_with_how_to_install_it() {
    for cmd in ["status", "check-config", "run"] {
        let out = Command::new(BIN)
            .args([cmd, "--instance", "zz-never-installed"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("no instance `zz-never-installed`")
                && err.contains("/etc/dirwatcher/zz-never-installed.yaml")
                && err.contains("dirwatcher install --instance zz-never-installed"),
            "{cmd}: {err}"
        );
        assert!(
            !err.contains("--config"),
            "{cmd}: the fix points at --config: {err}"
        );
    }
}
