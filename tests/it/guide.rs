//! Issue 24, items 6 and 7: logs that tools read (plain JSON fields, logfmt text, delivery events of
//! their own, every scheduler call at `-v`), `check-config` refusing what `run` refuses, and the
//! README's commands run as written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// A job that fails (exit 1) when its directory holds a file named `fail`, and completes otherwise.
const FAIL_IF_MARKED: &str = "wrap_cmd: sh -c 'test ! -e \"$1/fail\"' job";

/// A ready directory whose job fails.
fn ready_failing(env: &TestEnv, name: &str) -> PathBuf {
    let d = env.root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("fail"), "").unwrap();
    env.ready_dir(name)
}

fn json_lines(d: &Daemon) -> Vec<Value> {
    d.log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// With `--log-format json -v`: every field is the plain value (the output file too), the FAILED `ended`
/// line names the output file, each `sbatch` (here the local executor's submit) has its `-v` line, and a
/// delivered notice is an event of its own (`delivered`, naming the directory and the event it told),
/// so `event=="submitted"` matches each job exactly once.
#[test]
fn guide_json_fields_are_plain_and_deliveries_are_their_own_events() {
    let env = TestEnv::local("guidejson")
        .job(FAIL_IF_MARKED)
        .notify("events: [submitted, completed, failed]")
        .notify("command: [\"sh\", \"-c\", \"cat > /dev/null\"]");
    let good = env.ready_dir("good run");
    let bad = ready_failing(&env, "bad");
    let mut d = env.start_with(&["-v", "--log-format", "json"]);
    let good_job = env.wait_job_id(&good, DEADLINE);
    let bad_job = env.wait_job_id(&bad, DEADLINE);
    env.wait_final(&good, DEADLINE);
    env.wait_final(&bad, DEADLINE);
    // Two `submitted` notices, one `completed`, one `failed`.
    wait_for(DEADLINE, "four delivered notices", || {
        let n = json_lines(&d)
            .iter()
            .filter(|v| v["event"] == "delivered")
            .count();
        (n >= 4).then_some(())
    });
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
    let lines = json_lines(&d);

    for (dir, job) in [(&good, &good_job), (&bad, &bad_job)] {
        let submitted: Vec<&Value> = lines
            .iter()
            .filter(|v| v["event"] == "submitted" && v["dir"] == path_str(dir))
            .collect();
        assert_eq!(
            submitted.len(),
            1,
            "one `submitted` line per job: {lines:#?}"
        );
        let output = env.job_output(dir, job);
        assert_eq!(
            submitted[0]["output"],
            path_str(&output),
            "`output` must be the plain path: {}",
            submitted[0]
        );
        let name = env.job_name(dir.file_name().unwrap().to_str().unwrap());
        let calls: Vec<&Value> = lines
            .iter()
            .filter(|v| {
                v["call"] == "submit"
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(&format!("for job {name} ")))
            })
            .collect();
        assert_eq!(calls.len(), 1, "one `-v` line per sbatch: {lines:#?}");
        assert_eq!(calls[0]["ok"], true, "{}", calls[0]);
        assert_eq!(calls[0]["level"], "DEBUG", "{}", calls[0]);
        // Matchable without reading the words: the directory, the job name and the id it got.
        assert_eq!(
            (&calls[0]["dir"], &calls[0]["job_name"], &calls[0]["job"]),
            (
                &path_str(dir).into(),
                &name.as_str().into(),
                &job.as_str().into()
            ),
            "{}",
            calls[0]
        );
    }

    let failed = lines
        .iter()
        .find(|v| v["event"] == "ended" && v["dir"] == path_str(&bad))
        .unwrap_or_else(|| panic!("no `ended` line for {bad:?}: {lines:#?}"));
    assert_eq!(failed["state"], "FAILED", "{failed}");
    let output = env.job_output(&bad, &bad_job);
    assert_eq!(failed["output"], path_str(&output), "{failed}");
    assert!(
        output.is_file(),
        "the output file it names exists: {output:?}"
    );

    let delivered = |notice: &str, dir: &Path| {
        lines
            .iter()
            .find(|v| {
                v["event"] == "delivered" && v["notice"] == notice && v["dir"] == path_str(dir)
            })
            .unwrap_or_else(|| panic!("no `delivered` line of `{notice}` for {dir:?}: {lines:#?}"))
    };
    for (notice, dir) in [
        ("submitted", &good),
        ("submitted", &bad),
        ("completed", &good),
        ("failed", &bad),
    ] {
        let l = delivered(notice, dir);
        assert_eq!(l["channel"], "command", "{l}");
        assert!(
            l["delivery_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{l}"
        );
    }
}

/// The fields of a text line as a logfmt parser (Loki's, lnav's) reads them: `key=value` or
/// `key="quoted value"`; words without `=` (the message) are skipped, as those parsers do.
fn logfmt(line: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = line.chars().peekable();
    let quoted = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => v.push('\n'),
                    Some('t') => v.push('\t'),
                    Some('r') => v.push('\r'),
                    Some(c) => v.push(c),
                    None => {}
                },
                c => v.push(c),
            }
        }
        v
    };
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        if c == '"' {
            chars.next();
            quoted(&mut chars);
            continue;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            quoted(&mut chars)
        } else {
            let mut v = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                v.push(c);
                chars.next();
            }
            v
        };
        out.insert(key, value);
    }
    out
}

/// Text lines are logfmt: a directory name with a space and a quote is one `dir` field, read back
/// exactly, and so is the output file.
#[test]
fn guide_text_fields_are_logfmt_quoted() {
    let env = TestEnv::local("guidetext").job(FAIL_IF_MARKED);
    let dir = env.ready_dir("run 2 \"b\"");
    let mut d = env.start();
    let job = env.wait_job_id(&dir, DEADLINE);
    env.wait_final(&dir, DEADLINE);
    d.wait_log("event=ended", DEADLINE);
    // A refused reload's error spans lines (its `fix:`): the event stays one line.
    let config = env.config_path();
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        good.replace("  poll_interval_sec:", "  poll_intervl_sec:"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_log("event=reload_refused", DEADLINE);
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
    let log = d.log();
    let fields = |event: &str| {
        log.lines()
            .map(logfmt)
            .find(|f| f.get("event").map(String::as_str) == Some(event))
            .unwrap_or_else(|| panic!("no `event={event}` line in:\n{log}"))
    };
    let submitted = fields("submitted");
    assert_eq!(submitted["dir"], path_str(&dir), "{log}");
    assert_eq!(submitted["output"], path_str(&env.job_output(&dir, &job)));
    assert_eq!(submitted["job"], job);
    let ended = fields("ended");
    assert_eq!(ended["dir"], path_str(&dir), "{log}");
    assert_eq!(ended["state"], "COMPLETED");
    assert_eq!(ended["exit_code"], "0:0");
    let refused = log
        .lines()
        .find(|l| l.contains("event=reload_refused"))
        .unwrap();
    assert!(
        refused.contains("key `watch.poll_intervl_sec`") && refused.contains("; fix: did you mean"),
        "{refused}"
    );
    assert!(
        log.lines().all(|l| !l.trim_start().starts_with("fix:")),
        "a line of the log is not an event:\n{log}"
    );
}

#[test]
fn the_test_logfmt_reader_reads_quoted_and_bare_values() {
    let f = logfmt(
        r#"submitted job 3 for "/d/a b" (attempt 1) event=submitted dir="/d/a b" q="x \"y\"""#,
    );
    assert_eq!(f["event"], "submitted");
    assert_eq!(f["dir"], "/d/a b");
    assert_eq!(f["q"], "x \"y\"");
    assert_eq!(f.len(), 3, "{f:?}");
}

/// `dirwatcher [args…]`: (exit code, stdout, stderr).
fn dirwatcher(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_config(config: &Path) -> (i32, String, String) {
    dirwatcher(&[
        "check-config".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ])
}

/// `check-config` refuses, naming the key, its line and the fix (exit 2), what `run` refuses or cannot
/// do: the Python original's `state.json` as the ledger, a `job_script` that is not there, a failure log
/// that cannot be created. It changes nothing while checking.
#[test]
fn guide_check_config_refuses_what_run_refuses() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("incoming");
    std::fs::create_dir(&root).unwrap();
    let config = t.path().join("config.yaml");
    let write = |job: &str, behavior: &str| {
        let y = format!(
            "watch:\n  root: {}\njob:\n  executor: local\n{job}behavior:\n{behavior}",
            root.display()
        );
        std::fs::write(&config, y).unwrap();
    };
    let state = t.path().join("state.db");
    let log = t.path().join("logs/failed.log");
    let good_behavior = format!(
        "  state_file: {}\n  failure_log: {}\n",
        state.display(),
        log.display()
    );
    write("  wrap_cmd: echo\n", &good_behavior);
    let (code, _, err) = check_config(&config);
    assert_eq!(code, 0, "{err}");
    assert!(
        !state.exists() && !log.exists(),
        "check-config created something"
    );

    // The original's JSON state, named as the ledger: `run` refuses it, and so does check-config.
    let json = t.path().join("state.json");
    std::fs::write(&json, "{\"processed\": {\"run-1\": \"2025-01-01\"}}\n").unwrap();
    write(
        "  wrap_cmd: echo\n",
        &format!(
            "  state_file: {}\n  failure_log: {}\n",
            json.display(),
            log.display()
        ),
    );
    let (code, _, err) = check_config(&config);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 7, key `behavior.state_file`")
            && err.contains("JSON state file of the Python dirwatcher")
            && err.contains("fix: write a new path"),
        "{err}"
    );
    let mut run = daemon_command(&[]);
    let out = run.arg("--config").arg(&config).output().unwrap();
    assert!(!out.status.success(), "run took the original's state over");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a dirwatcher ledger"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&json).unwrap(),
        "{\"processed\": {\"run-1\": \"2025-01-01\"}}\n"
    );

    // A job script that is not there.
    let script = t.path().join("process.sh");
    write(
        &format!("  job_script: {}\n", script.display()),
        &good_behavior,
    );
    let (code, _, err) = check_config(&config);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 5, key `job.job_script`")
            && err.contains("does not exist")
            && err.contains("fix: point `job_script` at an existing script"),
        "{err}"
    );
    std::fs::write(&script, "#!/bin/sh\necho \"$1\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, err) = check_config(&config);
    assert_eq!(code, 0, "the script exists now: {err}");

    // A failure log whose folder would have to be made inside a regular file: no user can create it.
    let plain = t.path().join("plain");
    std::fs::write(&plain, "").unwrap();
    write(
        "  wrap_cmd: echo\n",
        &format!(
            "  state_file: {}\n  failure_log: {}\n",
            state.display(),
            plain.join("failed.log").display()
        ),
    );
    let (code, _, err) = check_config(&config);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 8, key `behavior.failure_log`")
            && err.contains("is not a directory")
            && err.contains("fix: point `failure_log` at a file"),
        "{err}"
    );
    assert!(!state.exists(), "check-config created the ledger");

    // A ledger made for this root (one cycle of `run`), then named through a symlink, then named by
    // the config of another root: `run` refuses both, and so does check-config.
    write("  wrap_cmd: echo\n", &good_behavior);
    let out = daemon_command(&[])
        .arg("--once")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(state.is_file());
    let link = t.path().join("link.db");
    std::os::unix::fs::symlink(&state, &link).unwrap();
    let refused_by_both = |behavior: &str, want: &[&str]| {
        write("  wrap_cmd: echo\n", behavior);
        let (code, _, err) = check_config(&config);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("line 7, key `behavior.state_file`"), "{err}");
        for w in want {
            assert!(err.contains(w), "{w:?} in {err}");
        }
        let run = daemon_command(&[])
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(2), "run took it: {run:?}");
    };
    refused_by_both(
        &format!("  state_file: {}\n", link.display()),
        &[
            "is a symlink",
            &format!(
                "fix: write the real file's path: `state_file: {}`",
                state.display()
            ),
        ],
    );
    let other = t.path().join("other-root");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        &config,
        format!(
            "watch:\n  root: {}\njob:\n  executor: local\n  wrap_cmd: echo\nbehavior:\n{good_behavior}",
            other.display()
        ),
    )
    .unwrap();
    let (code, _, err) = check_config(&config);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("line 7, key `behavior.state_file`")
            && err.contains(&format!("belongs to the root `{}`", root.display()))
            && err.contains("fix: give this root its own ledger"),
        "{err}"
    );
    let run = daemon_command(&[])
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "run took it: {run:?}");
}

const README: &str = include_str!("../../README.md");

/// The first fenced block (its lines) after the heading `## {section}` of the README.
fn readme_block(section: &str) -> Vec<&'static str> {
    let part = README
        .split(&format!("\n## {section}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README.md has no `## {section}`"));
    let part = part.split("\n## ").next().unwrap();
    let body = part
        .split("\n```")
        .nth(1)
        .unwrap_or_else(|| panic!("`## {section}` has no code block"));
    body.lines().skip(1).collect()
}

/// A command line of a README block, without its `# comment`.
fn command(line: &str) -> &str {
    line.split(" #").next().unwrap().trim()
}

/// The README's quick start, as written: its two commands are the demo and the test suite, and the demo
/// does what the README says — `./dirwatcher-demo/` in the current folder, the sample's `_DONE`, a
/// directory of your own by the printed command, `status` by the printed command, Ctrl-C stops it.
#[test]
fn guide_readme_quick_start_runs_as_written() {
    let cmds: Vec<&str> = readme_block("Quick start (fresh Debian/Ubuntu machine with Rust)")
        .into_iter()
        .map(command)
        .collect();
    assert_eq!(cmds, ["cargo run -- demo", "./scripts/test.sh"]);
    use std::os::unix::fs::PermissionsExt;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test.sh");
    let mode = std::fs::metadata(&script).unwrap().permissions().mode();
    assert!(mode & 0o111 != 0, "scripts/test.sh is not executable");

    // `cargo run -- ARGS` is the binary with ARGS, in the current folder.
    let args: Vec<&str> = cmds[0].split(" -- ").nth(1).unwrap().split(' ').collect();
    let cwd = tempfile::tempdir().unwrap();
    let log = cwd.path().join("demo.log");
    let banner = cwd.path().join("demo.out");
    let child = std::process::Command::new(BIN)
        .args(&args)
        .current_dir(cwd.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&banner).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child: Some(child),
        log,
    };
    let demo = cwd.path().join("dirwatcher-demo");
    let sample = demo.join("incoming/sample-001/_DONE");
    wait_for(DEADLINE, "the sample's _DONE", || {
        sample.is_file().then_some(())
    });
    d.wait_log("COMPLETED", DEADLINE);
    assert!(d.log().contains("event=submitted"), "{}", d.log());

    // "Drop your own directory in (the command to do so is printed)".
    let printed = std::fs::read_to_string(&banner).unwrap() + &d.log();
    let line = |label: &str| {
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .unwrap_or_else(|| panic!("the demo prints no `{label}`:\n{printed}"))
            .trim()
            .to_string()
    };
    let own = line("Add your own:");
    let st = std::process::Command::new("sh")
        .args(["-c", &own])
        .status()
        .unwrap();
    assert!(st.success(), "{own}");
    let mine = demo.join("incoming/mine/_DONE");
    wait_for(DEADLINE, "your own directory's _DONE", || {
        mine.is_file().then_some(())
    });
    // "look at `… status --config dirwatcher-demo/config.yaml`": the printed command, run as printed.
    let status = line("Then:");
    assert!(
        status.ends_with(&format!(
            "status --config {}",
            demo.join("config.yaml").display()
        )),
        "{status}"
    );
    // The job writes `_DONE` a moment before the daemon records its end: ask until both are recorded.
    wait_for(
        DEADLINE,
        "`status` to show both directories completed",
        || {
            let out = std::process::Command::new("sh")
                .args(["-c", &status])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "{out:?}");
            assert!(text.contains("dirwatcher is running"), "{text}");
            text.contains("2 completed").then_some(())
        },
    );
    d.signal(libc::SIGINT);
    let st = d.wait_exit(Duration::from_secs(10));
    assert!(
        st.success(),
        "the demo did not stop cleanly on Ctrl-C: {st:?}"
    );
}

/// The README's minimal config passes `check-config` (with a root that exists here) and means what the
/// README says around it: the ledger, the failure log and the job output where it says; and its sample
/// mistake gets exactly the message the README shows.
#[test]
fn guide_readme_minimal_config_passes_check_config() {
    let yaml: String = readme_block("A minimal config")
        .into_iter()
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(yaml.contains("root: /data/incoming"), "{yaml}");
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("incoming");
    std::fs::create_dir(&root).unwrap();
    let config = t.path().join("config.yaml");
    std::fs::write(
        &config,
        yaml.replace("/data/incoming", root.to_str().unwrap()),
    )
    .unwrap();
    let (code, out, err) = check_config(&config);
    assert_eq!(code, 0, "{err}");
    for want in [
        "state_file: \"/var/lib/dirwatcher/state.db\"",
        "failure_log: \"/var/log/dirwatcher/failed_jobs.log\"",
        "output: \".dirwatcher/logs/%x-%j.out\"",
        "delete_on_success: false",
        "partition: \"main\"",
        "account: \"dev\"",
        "time_limit: \"01:00:00\"",
    ] {
        assert!(
            out.contains(want),
            "effective config lacks {want:?}:\n{out}"
        );
    }
    assert!(
        README.contains(
            "The ledger is `/var/lib/dirwatcher/state.db`, the failure log `/var/log/dirwatcher/failed_jobs.log`, and each\njob's output `<root>/.dirwatcher/logs/<job name>-<job id>.out`"
        ),
        "the README's sentence about the defaults changed: check it against the effective config"
    );

    // The README's sample mistake, made in the README's config, at the line it names.
    let shown: Vec<&str> = README
        .split("(exit status 2):\n\n```\n")
        .nth(1)
        .expect("the README shows a config error")
        .split("\n```")
        .next()
        .unwrap()
        .lines()
        .collect();
    let bad = yaml
        .replace("/data/incoming", root.to_str().unwrap())
        .replace("time_limit: \"01:00:00\"", "time_limit: 1 hour");
    std::fs::write(&config, bad).unwrap();
    let (code, _, err) = check_config(&config);
    assert_eq!(code, 2, "{err}");
    let got: Vec<String> = err
        .lines()
        .map(|l| l.replace(config.to_str().unwrap(), "/etc/dirwatcher/config.yaml"))
        .collect();
    assert_eq!(
        got, shown,
        "the README's error is not what check-config says"
    );
}

/// `dirwatcher_notices_waiting` counts the notices in the outbox that wait for a delivery: up while the
/// hook fails, back to 0 once it works and they went out.
#[test]
fn guide_notices_waiting_gauge_follows_the_outbox() {
    let t = tempfile::tempdir().unwrap();
    let flag = t.path().join("hook-works");
    let prom = t.path().join("dirwatcher.prom");
    let env = TestEnv::local("guidewaiting")
        .job("wrap_cmd: \"true\"")
        .notify("events: [submitted, completed]")
        .notify(&format!(
            "command: [\"sh\", \"-c\", \"cat > /dev/null; test -e {}\"]",
            flag.display()
        ))
        .notify("retry_sec: 0.2")
        .section(&format!("metrics:\n  textfile: {}\n", prom.display()));
    let dir = env.ready_dir("case1");
    let mut d = env.start();
    env.wait_final(&dir, DEADLINE);
    let gauge = || {
        let t = std::fs::read_to_string(&prom).ok()?;
        t.lines().find_map(|l| {
            l.strip_prefix("dirwatcher_notices_waiting ")?
                .parse::<f64>()
                .ok()
        })
    };
    wait_for(DEADLINE, "both notices counted as waiting", || {
        (gauge() == Some(2.0)).then_some(())
    });
    std::fs::write(&flag, "").unwrap();
    wait_for(
        DEADLINE,
        "the waiting notices delivered and the gauge at 0",
        || (gauge() == Some(0.0)).then_some(()),
    );
    d.wait_log("event=delivered", DEADLINE);
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
}

/// The event document (the webhook's body and the hook's stdin) names the host and the instance whose
/// daemon recorded the event, so a receiver fed by several services can tell them apart.
#[test]
fn guide_the_event_document_names_host_and_instance() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("events.jsonl");
    let env = TestEnv::local("guidehost")
        .job("wrap_cmd: \"true\"")
        .behavior("instance: cryo")
        .notify("events: [completed]")
        .notify(&format!(
            "command: [\"sh\", \"-c\", \"cat >> {0}; echo >> {0}\"]",
            out.display()
        ));
    let dir = env.ready_dir("case1");
    let mut d = env.start();
    let doc: Value = wait_for(DEADLINE, "the completed notice", || {
        let text = std::fs::read_to_string(&out).ok()?;
        let line = text.lines().find(|l| !l.is_empty())?;
        Some(serde_json::from_str(line).unwrap())
    });
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(doc["event"], "completed", "{doc}");
    assert_eq!(doc["dir"], path_str(&dir), "{doc}");
    assert_eq!(doc["host"], host.trim(), "{doc}");
    assert_eq!(doc["instance"], "cryo", "{doc}");
}

/// `dirwatcher -v cancel` logs its scheduler call (scancel, here the local executor's stop) as the
/// daemon logs its own: what, for which job, how long.
#[test]
fn guide_cancel_logs_its_scheduler_call_at_v() {
    let env = TestEnv::local("guidecancel").job("wrap_cmd: sh -c 'sleep 60' job");
    let dir = env.ready_dir("long");
    let mut d = env.start();
    let job = env.wait_job_id(&dir, DEADLINE);
    let config = env.config_path();
    let (code, _, err) = dirwatcher(&[
        "-v".as_ref(),
        "cancel".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        dir.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let name = env.job_name("long");
    assert!(
        err.contains(&format!(
            "scheduler call cancel (local) for job {job} ({name}): answered in"
        )),
        "{err}"
    );
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
}

/// Against the real cluster: each `sbatch` has its `-v` line (with the job id Slurm gave), and the
/// `submitted` line's `output` is the plain path of the file Slurm will write. The job is submitted held
/// (it only needs to be queued) and cancelled at the end.
#[test]
fn guide_slurm_sbatch_is_logged_at_v_with_plain_fields() {
    if !slurm_available("guide_slurm_sbatch_is_logged_at_v_with_plain_fields") {
        return;
    }
    let env = TestEnv::slurm("guidesbatch")
        .job("wrap_cmd: \"true\"")
        .job("extra_args: [\"--hold\"]");
    let dir = env.ready_dir("run 1");
    let mut d = env.start_with(&["-v", "--log-format", "json"]);
    let job = env.wait_job_id(&dir, DEADLINE);
    // Cancelled however the test ends: the held job must not stay in the shared cluster's queue.
    struct Cancel(String);
    impl Drop for Cancel {
        fn drop(&mut self) {
            slurm::scancel(&self.0);
        }
    }
    let _cancel = Cancel(job.clone());
    wait_for(DEADLINE, "the `submitted` line", || {
        d.log().contains("\"event\":\"submitted\"").then_some(())
    });
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
    let lines = json_lines(&d);
    let name = env.job_name("run 1");
    let call = lines
        .iter()
        .find(|v| v["call"] == "submit")
        .unwrap_or_else(|| panic!("no `-v` line for the sbatch: {lines:#?}"));
    assert_eq!(
        call["message"]
            .as_str()
            .unwrap()
            .split(": answered in")
            .next(),
        Some(format!("scheduler call submit (slurm) for job {name} ({job})").as_str()),
        "{call}"
    );
    assert_eq!(call["ok"], true, "{call}");
    assert_eq!(
        (&call["dir"], &call["job"]),
        (&path_str(&dir).into(), &job.as_str().into()),
        "{call}"
    );
    let submitted = lines.iter().find(|v| v["event"] == "submitted").unwrap();
    assert_eq!(submitted["dir"], path_str(&dir), "{submitted}");
    assert_eq!(
        submitted["output"],
        path_str(&env.job_output(&dir, &job)),
        "{submitted}"
    );
}

/// What the README's install block names is what the package ships: the example config and the sample
/// job at the paths it gives (the `.deb`'s assets in Cargo.toml), the build script, the unit to edit.
/// (The block itself needs a package build and a systemd host; the site tests install that package.)
#[test]
fn guide_readme_install_block_names_what_the_package_ships() {
    let block = readme_block("Install on a cluster in five minutes");
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let block_text = block.join("\n");
    // Each path the README gives, where it gives it, and the asset that puts it there.
    for (text, path, asset) in [
        (
            block_text.as_str(),
            "/usr/share/doc/dirwatcher/config.example.yaml",
            "[\"packaging/config.example.yaml\", \"usr/share/doc/dirwatcher/\",",
        ),
        (
            README,
            "python3 /usr/share/dirwatcher/process_dir.py",
            "[\"packaging/process_dir.py\", \"usr/share/dirwatcher/\",",
        ),
        (
            block_text.as_str(),
            "sudo systemctl edit dirwatcher",
            "[\"packaging/dirwatcher.service\", \"lib/systemd/system/\",",
        ),
    ] {
        assert!(text.contains(path), "the README no longer says {path:?}");
        assert!(
            manifest.contains(asset),
            "the package no longer ships what {path:?} needs ({asset})"
        );
    }
    assert!(block.iter().any(|l| command(l) == "scripts/build-deb.sh"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-deb.sh");
    assert!(script.is_file(), "{script:?}");
    // The config the block copies is valid as shipped once its root exists (as the site tests check
    // on the installed package).
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.example.yaml"),
    )
    .unwrap();
    let t = tempfile::tempdir().unwrap();
    let config = t.path().join("config.yaml");
    std::fs::write(
        &config,
        example.replace("/data/incoming", t.path().to_str().unwrap()),
    )
    .unwrap();
    let (code, _, err) = check_config(&config);
    assert_eq!(code, 0, "{err}");
}

/// One of several services (`behavior.instance`): its text lines carry `instance=NAME` as a logfmt field
/// (it used to be a `dirwatcher{instance=NAME}:` prefix no logfmt parser reads).
#[test]
fn guide_an_instance_is_a_logfmt_field_of_every_text_line() {
    let env = TestEnv::local("guideinst")
        .job("wrap_cmd: \"true\"")
        .behavior("instance: cryo");
    let dir = env.ready_dir("case1");
    let mut d = env.start();
    env.wait_final(&dir, DEADLINE);
    d.wait_log("event=ended", DEADLINE);
    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
    let log = d.log();
    assert!(!log.contains("dirwatcher{"), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 3, "{log}");
    for l in lines {
        assert_eq!(
            logfmt(l).get("instance").map(String::as_str),
            Some("cryo"),
            "{l}"
        );
    }
    let submitted = log
        .lines()
        .map(logfmt)
        .find(|f| f.get("event").map(String::as_str) == Some("submitted"))
        .unwrap();
    assert_eq!(submitted["dir"], path_str(&dir));
}

/// The commands that ask Slurm themselves log their calls at `-v` too: `check-config --slurm`'s
/// `sbatch --test-only` and `recover --from-slurm`'s `sacct` per day (a dry run: nothing written).
#[test]
fn guide_cli_scheduler_calls_are_logged_at_v() {
    if !slurm_available("guide_cli_scheduler_calls_are_logged_at_v") {
        return;
    }
    let env = TestEnv::slurm("guidecli").job("wrap_cmd: \"true\"");
    let config = env.write_config();
    let (code, _, err) = dirwatcher(&[
        "-v".as_ref(),
        "check-config".as_ref(),
        "--quiet".as_ref(),
        "--slurm".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("scheduler call preflight (slurm) for the sample job: answered in"),
        "{err}"
    );
    let today = {
        let out = std::process::Command::new("date")
            .args(["-u", "+%F"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (code, _, err) = dirwatcher(&[
        "-v".as_ref(),
        "recover".as_ref(),
        "--from-slurm".as_ref(),
        "--dry-run".as_ref(),
        "--since".as_ref(),
        today.as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("scheduler call accounting (slurm) for day 1 of "),
        "{err}"
    );
    assert!(!env.state_file().exists(), "a dry run wrote a ledger");
}

/// What only permissions forbid is judged for the service user: `check-config` run by the user who will
/// run the daemon (no ledger yet, or its own) refuses a failure log it cannot create; an operator
/// checking the service's config (the ledger is another user's) gets a warning instead, and exit 0.
#[test]
fn guide_check_config_judges_permissions_for_the_service_user() {
    use std::os::unix::fs::PermissionsExt;
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED guide_check_config_judges_permissions_for_the_service_user: needs root for runuser"
        );
        return;
    }
    let t = tempfile::Builder::new()
        .prefix("dw-guideperm-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = t.path().join("incoming");
    let logs = t.path().join("logs");
    let state = t.path().join("state");
    for d in [&root, &logs] {
        std::fs::create_dir(d).unwrap();
        // root's, readable by all, writable by root alone
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = t.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "watch:\n  root: {}\njob:\n  wrap_cmd: echo\nbehavior:\n  state_file: {}\n  failure_log: {}\n",
            root.display(),
            state.join("state.db").display(),
            logs.join("failed.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let as_dwtest = || {
        let out = std::process::Command::new("runuser")
            .args([
                "-u",
                "dwtest",
                "--",
                BIN,
                "check-config",
                "--quiet",
                "--config",
            ])
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // No ledger nor its folder yet: nothing says whose the service is, so this user may be it.
    let (code, err) = as_dwtest();
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("key `behavior.failure_log`")
            && err.contains("this user cannot create files in")
            && err.contains("fix: point `failure_log` at a file"),
        "{err}"
    );
    // A ledger that is root's (made by one cycle of `run` as root): dwtest is an operator here,
    // warned, not refused.
    let (code, _, err) = check_config(&config);
    assert_eq!(code, 0, "{err}");
    let out = daemon_command(&[])
        .arg("--once")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        state.join("state.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, err) = as_dwtest();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("warning: `behavior.failure_log`") && err.contains("sudo -u dirwatcher"),
        "{err}"
    );
}
