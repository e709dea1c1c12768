//! The config's tests: loading, refusing with a key, line and fix, and reading back the effective config.

use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::parse(yaml, Path::new("/etc/dirwatcher/config.yaml"))
}

#[test]
fn a_symlinked_or_world_writable_root_is_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let real = t.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let cfg = |root: &Path, extra: &str| {
        format!(
            "watch:\n  root: {:?}\n{extra}job:\n  wrap_cmd: echo\n",
            root.display().to_string()
        )
    };
    let e = parse(&cfg(&link, "")).unwrap_err();
    assert_eq!((e.key.as_str(), e.line), ("watch.root", Some(2)), "{e}");
    assert!(e.problem.contains("is a symlink"), "{e}");
    assert!(e.fix.contains("allow_unsafe_root: true"), "{e}");
    parse(&cfg(&link, "  allow_unsafe_root: true\n")).unwrap();

    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = parse(&cfg(&real, "")).unwrap_err();
    assert_eq!(e.key, "watch.root", "{e}");
    assert!(e.problem.contains("without the sticky bit"), "{e}");
    assert!(e.fix.contains("chmod +t"), "{e}");
    let c = parse(&cfg(&real, "  allow_unsafe_root: true\n")).unwrap();
    assert!(c.watch.allow_unsafe_root);
    assert!(c.to_yaml().contains("allow_unsafe_root: true"));
    // A shared drop folder with the sticky bit (like /tmp) is fine.
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert!(!parse(&cfg(&real, "")).unwrap().watch.allow_unsafe_root);
}

fn with_root(body: &str) -> String {
    format!("watch:\n  root: {}\n{body}", std::env::temp_dir().display())
}

/// A valid config with every section, for the mutation property below.
fn full_config() -> String {
    with_root(
        "  signal_filename: _READY\n  poll_interval_sec: 5\n  stability_checks: 2\n  stability_interval_sec: 1\n\
             job:\n  executor: slurm\n  wrap_cmd: python3 /opt/x.py\n  partition: main\n  account: dev\n  gres: gpu:1\n\
             \x20 time_limit: \"00:10:00\"\n  job_name_prefix: dirwatch\n  env: {A: b}\n  extra_args: [\"--nice=1\"]\n\
             \x20 chdir_to_subdir: true\n  output: .dirwatcher/logs/%x-%j.out\n  command_timeout_sec: 60\n  max_local_jobs: 2\n\
             behavior:\n  delete_on_success: false\n  state_file: /var/lib/dirwatcher/state.db\n\
             \x20 failure_log: /var/log/dirwatcher/failed_jobs.log\n  max_retries: 0\n  submit_backoff_sec: 5\n\
             \x20 submit_backoff_max_sec: 300\n  umask: \"0027\"\n\
             metrics:\n  listen: 127.0.0.1:9187\n  textfile: /var/lib/node/dirwatcher.prom\n",
    )
}

/// Values a mutation puts in place of another: wrong types, bounds, YAML syntax, hostile text.
const ODD_VALUES: &[&str] = &[
    "",
    "-1",
    "0",
    "1e-9",
    "1e309",
    ".nan",
    "-.inf",
    "0x10",
    "0o17",
    "007",
    "99999999999999999999",
    "true",
    "null",
    "~",
    "[]",
    "{}",
    "[1, 2",
    "{a: [",
    "\"unterminated",
    "'x'",
    "&a",
    "*a",
    "!!binary x",
    "|",
    ">",
    "- x",
    "? x",
    "%YAML 1.2",
    "relative/path",
    "/",
    "/tmp",
    "a: b: c",
    "\t",
    "\u{202e}x",
    "0.0.0.0:1",
    "[::]:0",
    "x.txt",
    "\"1777\"",
    "UNLIMITED",
    "1-",
    "%j",
];

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(400))]
    /// The loader never panics on any text.
    #[test]
    fn the_loader_takes_any_text_without_panicking(text in "(?s).{0,400}") {
        let _ = parse(&text);
    }

    /// Mutated configs (a value replaced, a line dropped, doubled or re-indented): never a panic; a
    /// refusal always names what is wrong and how to fix it; an accepted config obeys every bound and
    /// reads back as itself from its effective form.
    #[test]
    fn mutated_configs_are_refused_with_a_fix_or_valid(
        edits in proptest::collection::vec((0usize..64, 0usize..4, 0usize..64), 1..5)
    ) {
        let mut lines: Vec<String> = full_config().lines().map(String::from).collect();
        for (at, kind, pick) in edits {
            let i = at % lines.len();
            match kind {
                0 => {
                    if let Some((k, _)) = lines[i].clone().split_once(':') {
                        lines[i] = format!("{k}: {}", ODD_VALUES[pick % ODD_VALUES.len()]);
                    }
                }
                1 => {
                    lines.remove(i);
                    if lines.is_empty() {
                        lines.push(String::new());
                    }
                }
                2 => lines.insert(i, lines[i].clone()),
                _ => lines[i] = format!("{}{}", " ".repeat(pick % 5), lines[i].trim_start()),
            }
        }
        let text = lines.join("\n");
        match parse(&text) {
            Err(e) => {
                proptest::prop_assert!(!e.problem.is_empty(), "{e}");
                proptest::prop_assert!(!e.fix.is_empty() || e.key.is_empty(), "no fix: {e}");
            }
            Ok(c) => {
                proptest::prop_assert!(c.watch.poll_interval >= Duration::from_millis(100));
                proptest::prop_assert!(c.watch.stability_checks >= 1);
                proptest::prop_assert!(c.job.command_timeout >= Duration::from_secs(1));
                proptest::prop_assert!(c.behavior.submit_backoff >= Duration::from_millis(100));
                proptest::prop_assert!(c.behavior.submit_backoff_max >= c.behavior.submit_backoff);
                proptest::prop_assert!(c.behavior.umask <= 0o777);
                proptest::prop_assert!(c.behavior.state_file.is_absolute());
                proptest::prop_assert!(c.job.max_local_jobs >= 1);
                let again = parse(&c.to_yaml());
                proptest::prop_assert!(again.is_ok(), "effective config refused: {:?}\n{}", again.err(), c.to_yaml());
                proptest::prop_assert_eq!(again.unwrap().to_yaml(), c.to_yaml());
            }
        }
    }
}

#[test]
fn umask_as_text_or_bare_digits() {
    for (text, want) in [
        ("\"0027\"", 0o027),
        ("0027", 0o027),
        ("\"077\"", 0o077),
        ("22", 0o022),
        ("\"0\"", 0),
    ] {
        let c = parse(&with_root(&format!(
            "job:\n  wrap_cmd: echo\nbehavior:\n  umask: {text}\n"
        )))
        .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(c.behavior.umask, want, "{text}");
    }
    for bad in ["\"0028\"", "\"1777\"", "\"\"", "rwx"] {
        let e = parse(&with_root(&format!(
            "job:\n  wrap_cmd: echo\nbehavior:\n  umask: {bad}\n"
        )))
        .unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("behavior.umask", Some(6)),
            "{bad}: {e}"
        );
    }
}

#[test]
fn time_limits_follow_slurm_formats() {
    let secs = |s| parse_time_limit(s).unwrap().duration.unwrap().as_secs();
    assert_eq!(secs("00:10:00"), 600);
    assert_eq!(secs("10"), 600);
    assert_eq!(secs("01:30"), 90);
    assert_eq!(secs("1-00"), 86400);
    assert_eq!(secs("1-02:03"), 86400 + 2 * 3600 + 180);
    assert_eq!(secs("2-00:00:05"), 2 * 86400 + 5);
    assert_eq!(parse_time_limit("UNLIMITED").unwrap().duration, None);
    for bad in ["", "abc", "1:2:3:4", "-5", "00:00:00", "1-", "10m"] {
        assert!(parse_time_limit(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn missing_command_names_the_key() {
    let e = parse(&with_root("job:\n  partition: main\n")).unwrap_err();
    assert_eq!(e.key, "job.wrap_cmd");
    assert!(e.fix.contains("job_script"));
}

#[test]
fn negative_interval_names_key_and_line() {
    let e = parse(&with_root(
        "  poll_interval_sec: -1\njob:\n  wrap_cmd: echo\n",
    ))
    .unwrap_err();
    assert_eq!(e.key, "watch.poll_interval_sec");
    assert_eq!(e.line, Some(3));
}

#[test]
fn negative_count_is_refused() {
    let e = parse(&with_root(
        "  stability_checks: -2\njob:\n  wrap_cmd: echo\n",
    ))
    .unwrap_err();
    assert_eq!(e.key, "watch.stability_checks");
    assert_eq!(e.line, Some(3));
}

#[test]
fn unknown_key_gives_its_line() {
    let e = parse(&with_root(
        "  poll_intervall_sec: 3\njob:\n  wrap_cmd: echo\n",
    ))
    .unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.problem.contains("poll_intervall_sec"), "{e}");
}

#[test]
fn wrong_type_names_the_key() {
    let e = parse(&with_root(
        "  stability_checks: two\njob:\n  wrap_cmd: echo\n",
    ))
    .unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.line),
        ("watch.stability_checks", Some(3)),
        "{e}"
    );
    let e = parse(&with_root(
        "job:\n  wrap_cmd: echo\nbehavior:\n  delete_on_success: maybe\n",
    ))
    .unwrap_err();
    assert_eq!(e.key, "behavior.delete_on_success", "{e}");
}

#[test]
fn fractional_seconds_are_accepted() {
    let c = parse(&with_root(
        "  poll_interval_sec: 0.5\n  stability_interval_sec: 0.25\njob:\n  wrap_cmd: echo\n",
    ))
    .unwrap();
    assert_eq!(c.watch.poll_interval, Duration::from_millis(500));
    assert_eq!(c.watch.stability_interval, Duration::from_millis(250));
}

#[test]
fn job_output_goes_to_the_checked_folder_unless_slurm_default_is_asked_for() {
    for behavior in ["", "behavior:\n  delete_on_success: true\n"] {
        let c = parse(&with_root(&format!("job:\n  wrap_cmd: echo\n{behavior}"))).unwrap();
        assert_eq!(
            c.job.output.as_deref(),
            Some(defaults::OUTPUT),
            "{behavior}"
        );
    }
    let c = parse(&with_root("job:\n  wrap_cmd: echo\n  output: \"\"\n")).unwrap();
    assert_eq!(c.job.output, None);
    assert_eq!(
        parse(&c.to_yaml()).unwrap().job.output,
        None,
        "lost in the round trip"
    );
}

#[test]
fn every_seconds_key_has_a_lower_bound() {
    for (section, key, bad, min) in [
        ("watch", "poll_interval_sec", "1e-9", "at least 0.1"),
        ("watch", "stability_interval_sec", "-0.5", "0 or more"),
        ("job", "command_timeout_sec", "1e-9", "at least 1"),
        ("job", "command_timeout_sec", "0.5", "at least 1"),
        ("behavior", "submit_backoff_sec", "0.01", "at least 0.1"),
        ("behavior", "submit_backoff_max_sec", "0", "at least 0.1"),
    ] {
        let mut body = format!("  {key}: {bad}\n");
        let mut yaml = String::from("watch:\n");
        yaml += &format!("  root: {}\n", std::env::temp_dir().display());
        if section == "watch" {
            yaml += &body;
            body.clear();
        }
        yaml += "job:\n  wrap_cmd: echo\n";
        if section == "job" {
            yaml += &body;
            body.clear();
        }
        if section == "behavior" {
            yaml += &format!("behavior:\n{body}");
        }
        let e = parse(&yaml).unwrap_err();
        assert_eq!(e.key, format!("{section}.{key}"), "{yaml}");
        assert!(e.problem.contains(min), "{e}");
        assert!(e.line.is_some(), "{e}");
    }
    let c = parse(&with_root(
            "  poll_interval_sec: 0.1\n  stability_interval_sec: 0\njob:\n  wrap_cmd: echo\n  command_timeout_sec: 1\n",
        ))
        .unwrap();
    assert_eq!(c.watch.stability_interval, Duration::ZERO);
}

#[test]
fn a_directory_as_state_file_or_failure_log_is_refused() {
    let t = tempfile::tempdir().unwrap();
    for key in ["state_file", "failure_log"] {
        let e = parse(&with_root(&format!(
            "job:\n  wrap_cmd: echo\nbehavior:\n  {key}: {}\n",
            t.path().display()
        )))
        .unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            (&*format!("behavior.{key}"), Some(6)),
            "{e}"
        );
        assert!(e.problem.contains("is a directory"), "{e}");
    }
}

#[test]
fn job_umask_defaults_to_0022_and_reads_octal_quoted_or_not() {
    let c = parse(&with_root("job:\n  wrap_cmd: echo\n")).unwrap();
    assert_eq!(c.job.umask, 0o022);
    for (text, mask) in [
        ("0027", 0o027),
        ("\"0027\"", 0o027),
        ("'077'", 0o077),
        ("0002", 0o002),
    ] {
        let c = parse(&with_root(&format!(
            "job:\n  wrap_cmd: echo\n  umask: {text}\n"
        )))
        .unwrap();
        assert_eq!(c.job.umask, mask, "{text}");
        assert!(
            c.to_yaml().contains(&format!("umask: \"{mask:04o}\"")),
            "{}",
            c.to_yaml()
        );
    }
}

#[test]
fn a_job_umask_that_is_not_octal_names_key_line_and_fix() {
    for bad in ["22", "0089", "rw-r--r--", "\"\"", "00022"] {
        let e = parse(&with_root(&format!(
            "job:\n  wrap_cmd: echo\n  umask: {bad}\n"
        )))
        .unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("job.umask", Some(5)),
            "{bad}: {e}"
        );
        assert!(e.fix.contains("umask: \"0022\""), "{e}");
    }
}

#[test]
fn slurmrestd_is_reached_over_tcp_or_its_unix_socket_and_a_bad_address_names_key_line_and_fix() {
    let url = |v: &str| {
        parse(&with_root(&format!(
            "job:\n  wrap_cmd: echo\n  executor: slurmrest\n  slurmrest_url: {v}\n"
        )))
    };
    for (written, want) in [
        (
            "http://slurm-head:6820",
            SlurmRestUrl::Http("http://slurm-head:6820".into()),
        ),
        (
            "unix:/run/slurmrestd/slurmrestd.socket",
            SlurmRestUrl::Unix("/run/slurmrestd/slurmrestd.socket".into()),
        ),
        (
            "http+unix://%2Frun%2Fslurmrestd%2Fslurmrestd.socket",
            SlurmRestUrl::Unix("/run/slurmrestd/slurmrestd.socket".into()),
        ),
        (
            "http+unix:///run/slurmrestd.sock",
            SlurmRestUrl::Unix("/run/slurmrestd.sock".into()),
        ),
    ] {
        let c = url(written).unwrap_or_else(|e| panic!("{written}: {e}"));
        assert_eq!(c.job.slurmrest_url, want, "{written}");
        // The effective config reads back as itself.
        assert_eq!(parse(&c.to_yaml()).unwrap().job.slurmrest_url, want);
    }
    let long = format!("unix:/{}", "s".repeat(120));
    for bad in [
        "unix:run/slurmrestd.socket",
        "http+unix://run%2Fsock",
        "http+unix://%2Frun%zz",
        "https://slurm-head:6820",
        "http://slurm-head:6820/slurm",
        "slurm-head:6820",
        long.as_str(),
    ] {
        let e = url(bad).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line),
            ("job.slurmrest_url", Some(6)),
            "{bad}: {e}"
        );
        assert!(
            e.fix.contains("unix:/PATH") && e.fix.contains("http://HOST:PORT"),
            "{e}"
        );
    }
    let e = url(&long).unwrap_err();
    assert!(e.to_string().contains("at most 107"), "{e}");
}

#[test]
fn effective_config_round_trips() {
    let c = parse(&with_root(
        "job:\n  wrap_cmd: echo hi\n  env: {A: b}\n  extra_args: [--qos=x]\n",
    ))
    .unwrap();
    let again = parse(&c.to_yaml()).unwrap();
    assert_eq!(again.to_yaml(), c.to_yaml());
    assert_eq!(again.metrics, MetricsConfig::default());
}

#[test]
fn effective_config_round_trips_metrics() {
    let c = parse(&with_root(
            "job:\n  wrap_cmd: echo\nmetrics:\n  listen: 127.0.0.1:9187\n  textfile: /var/lib/node/dirwatcher.prom\n",
        ))
        .unwrap();
    assert_eq!(c.metrics.listen, Some("127.0.0.1:9187".parse().unwrap()));
    let again = parse(&c.to_yaml()).unwrap();
    assert_eq!(again.metrics, c.metrics);
    assert_eq!(again.to_yaml(), c.to_yaml());
    let c = parse(&with_root(
        "job:\n  wrap_cmd: echo\nmetrics:\n  listen: \"[::1]:0\"\n",
    ))
    .unwrap();
    assert_eq!(parse(&c.to_yaml()).unwrap().metrics, c.metrics);
}

#[test]
fn metrics_section_is_optional_and_may_be_empty() {
    for body in ["", "metrics:\n", "metrics: {}\n"] {
        let c = parse(&with_root(&format!("job:\n  wrap_cmd: echo\n{body}"))).unwrap();
        assert_eq!(c.metrics, MetricsConfig::default(), "{body:?}");
    }
}

#[test]
fn bad_metrics_keys_name_key_line_and_fix() {
    let cases = [
        ("  listen: localhost:9187\n", "metrics.listen", "IP address"),
        (
            "  listen: 0.0.0.0:9187\n",
            "metrics.listen",
            "every network interface",
        ),
        (
            "  textfile: dirwatcher.prom\n",
            "metrics.textfile",
            "absolute path",
        ),
        (
            "  textfile: /var/lib/node/dirwatcher.txt\n",
            "metrics.textfile",
            ".prom",
        ),
        ("  listn: 127.0.0.1:9187\n", "metrics.listn", "unknown key"),
    ];
    for (line, key, problem) in cases {
        let e = parse(&with_root(&format!(
            "job:\n  wrap_cmd: echo\nmetrics:\n{line}"
        )))
        .unwrap_err();
        assert_eq!((e.key.as_str(), e.line), (key, Some(6)), "{e}");
        assert!(e.problem.contains(problem), "{e}");
        assert!(!e.fix.is_empty(), "{e}");
    }
}

/// Every key the Python original reads, as its installer writes them: with values, and with the
/// empty values it writes when a flag was not given (`from_email: ` is null, `smtp_port: 0`).
#[test]
fn the_originals_whole_config_loads() {
    let root = std::env::temp_dir();
    let full = include_str!("../../tests/data/original-full-config.yaml")
        .replace("/data/incoming", &root.to_string_lossy());
    let c = parse(&full).unwrap();
    let db = c.notify.db.as_ref().expect("the `db:` section is read");
    assert_eq!(
        (
            db.host.as_str(),
            db.port,
            db.name.as_str(),
            db.user.as_str()
        ),
        ("127.0.0.1", 3306, "hm_app_db", "hmapp")
    );
    let smtp = c.notify.smtp.as_ref().unwrap();
    assert_eq!(
        (
            smtp.host.as_str(),
            smtp.port,
            smtp.user.as_deref(),
            smtp.tls
        ),
        ("smtp.example.org", 587, Some("dirwatcher"), true)
    );
    assert_eq!(smtp.pass.as_ref().unwrap().expose(), "s3cret-Passw0rd");
    assert_eq!(c.notify.from.as_deref(), Some("dirwatcher@example.org"));
    let shown = c.to_yaml();
    assert!(!shown.contains("s3cret"), "the password is shown:\n{shown}");
    assert!(shown.contains("smtp_pass: \"<secret>\""), "{shown}");
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "Debug shows the password"
    );
    let empty = format!(
        "watch:\n  root: {}\njob:\n  wrap_cmd: echo\nbehavior:\n  from_email: \n  smtp_host: \n  smtp_port: 0\n  \
             smtp_user: \n  smtp_pass: \n  smtp_use_tls: true\ndb:\n  host: 127.0.0.1\n  port: 3306\n  name: hm_app_db\n  \
             user: hmapp\n  pass: \n",
        root.display()
    );
    let c = parse(&empty).unwrap();
    assert!(c.notify.smtp.is_none() && c.notify.from.is_none());
    let db = c
        .notify
        .db
        .as_ref()
        .expect("the installer's `db:` section is read");
    assert!(db.pass.is_none(), "an empty `pass:` is no password");
    // Read back, the effective config of a config without `db:` keeps the bridge off.
    let plain = parse(&with_root("job:\n  wrap_cmd: echo\n")).unwrap();
    assert!(plain.notify.db.is_none());
    let again = Config::parse(&plain.to_yaml(), Path::new("/x.yaml")).unwrap();
    assert!(again.notify.db.is_none(), "{}", plain.to_yaml());
}

#[test]
fn notify_keys_are_checked_and_secrets_come_from_files_or_the_environment() {
    let t = tempfile::tempdir().unwrap();
    let token = t.path().join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    let c = parse(&with_root(&format!(
            "job:\n  wrap_cmd: echo\nnotify:\n  events: [completed, blocked]\n  email_to: [ops@example.org]\n  \
             webhooks: [\"https://hooks.example.org/x\"]\n  webhook_format: slack\n  webhook_token_file: {}\n  \
             command: [/usr/local/bin/hook, --db]\n",
            token.display()
        )))
        .unwrap();
    assert_eq!(c.notify.webhook_token.as_ref().unwrap().expose(), "tok-123");
    assert!(!c.to_yaml().contains("tok-123"));
    assert_eq!(parse(&c.to_yaml()).unwrap().to_yaml(), c.to_yaml());
    for (body, key, problem) in [
        ("  events: [done]\n", "notify.events", "not an event"),
        (
            "  email_to: [\"a@b\\nBcc: c@d\"]\n",
            "notify.email_to",
            "not an e-mail address",
        ),
        ("  webhooks: [\"ftp://x\"]\n", "notify.webhooks", "http"),
        ("  email_via: smtp\n", "notify.email_via", "SMTP server"),
        (
            "  webhook_token_env: DW_SURELY_UNSET_TOKEN\n",
            "notify.webhook_token_env",
            "not set",
        ),
        (
            "  webhook_token_file: /nonexistent/token\n",
            "notify.webhook_token_file",
            "cannot read",
        ),
    ] {
        let e = parse(&with_root(&format!(
            "job:\n  wrap_cmd: echo\nnotify:\n{body}"
        )))
        .unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.problem.contains(problem), "{e}");
    }
    let e = parse(&with_root(
            "job:\n  wrap_cmd: echo\nbehavior:\n  smtp_host: h\n  smtp_pass: x\n  smtp_pass_env: HOME\n",
        ))
        .unwrap_err();
    assert_eq!(e.key, "behavior.smtp_pass_env", "{e}");
}

#[test]
fn a_staged_config_may_name_a_root_that_does_not_exist_here() {
    let yaml = "watch:\n  root: /surely/not/here/incoming\njob:\n  wrap_cmd: echo\n";
    assert_eq!(parse(yaml).unwrap_err().key, "watch.root");
    let c = Config::parse_with(yaml, Path::new("/x.yaml"), RootCheck::Staged).unwrap();
    assert_eq!(c.watch.root, Path::new("/surely/not/here/incoming"));
}

#[test]
fn a_marker_may_be_a_path_below_the_directory_up_to_its_depth_bound() {
    let c = parse(&with_root(
        "  ready_any_of: [\"*/*/final_summary_*.txt\", Reports/done.txt]\njob:\n  wrap_cmd: echo\n",
    ))
    .unwrap();
    assert_eq!(
        c.watch.ready.alternatives,
        vec![
            vec!["*/*/final_summary_*.txt".to_string()],
            vec!["Reports/done.txt".to_string()]
        ]
    );
    let deep = parse(&with_root(
        "  ready_all_of: [\"a/b/c/d/final_summary_*.txt\"]\njob:\n  wrap_cmd: echo\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(deep.contains("watch.ready_all_of"), "{deep}");
    assert!(deep.contains("too deep"), "{deep}");
    assert!(deep.contains("line 3"), "{deep}");
    assert!(!deep.contains("permission"), "{deep}");
    for bad in ["../x", "/etc/x", "a//b", "a/./b"] {
        let e = parse(&with_root(&format!(
            "  ready_all_of: [\"{bad}\"]\njob:\n  wrap_cmd: echo\n"
        )))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("relative path below the directory"),
            "{bad}: {e}"
        );
    }
    // Temporaries and the content file stay plain names.
    let e = parse(&with_root(
        "  ignore_patterns: [\"a/*.tmp\"]\njob:\n  wrap_cmd: echo\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("watch.ignore_patterns"), "{e}");
}

#[test]
fn every_preset_expands_with_its_source_and_reloads_to_the_same_rules() {
    for p in crate::engine::Preset::ALL {
        let c = parse(&with_root(&format!(
            "  ready_preset: {}\njob:\n  wrap_cmd: echo\n",
            p.name()
        )))
        .unwrap();
        let y = c.to_yaml();
        assert!(
            y.contains(&format!(
                "`{}`, expanded into the keys below; source: ",
                p.name()
            )),
            "{y}"
        );
        let again = parse(&y).unwrap();
        assert_eq!(
            again.watch.ready.describe(),
            c.watch.ready.describe(),
            "{}",
            p.name()
        );
    }
    let rsync = parse(&with_root(
        "  ready_preset: rsync\njob:\n  wrap_cmd: echo\n",
    ))
    .unwrap();
    assert!(rsync.watch.ready.ignore.contains(&"<rsync>".to_string()));
    let e = parse(&with_root(
        "  ready_preset: miseq\njob:\n  wrap_cmd: echo\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("illumina-rta"),
        "the fix offers the presets: {e}"
    );
}

/// The fix says what to write for what was meant (issue 24): the event given as a word becomes that
/// event as a list, a bare rate becomes a rate of that many calls per second, a bad regular expression
/// gets how to write one (it was told to quote what was already quoted).
#[test]
fn fixes_keep_what_was_meant() {
    let fix = |body: &str| parse(&with_root(body)).unwrap_err();
    let e = fix("job:\n  wrap_cmd: echo\nnotify:\n  events: failed\n");
    assert_eq!(e.key, "notify.events", "{e}");
    assert_eq!(e.fix, "write it as a list: `events: [failed]`", "{e}");
    let e = fix("job:\n  wrap_cmd: echo\nnotify:\n  events: sent\n");
    assert!(e.fix.starts_with("list any of `submitted`"), "{e}");
    let e = fix("job:\n  wrap_cmd: echo\n  submit_rate: 5\n");
    assert_eq!(e.key, "job.submit_rate", "{e}");
    assert!(
        e.fix.contains("`submit_rate: {burst: 5, per_sec: 5}`"),
        "{e}"
    );
    // What the fix says to write loads.
    parse(&with_root(
        "job:\n  wrap_cmd: echo\n  submit_rate: {burst: 5, per_sec: 5}\nnotify:\n  events: [failed]\n",
    ))
    .unwrap();
    let e =
        fix("  ready_content_file: s.xml\n  ready_content_match: '(['\njob:\n  wrap_cmd: echo\n");
    assert_eq!(
        (e.key.as_str(), e.line),
        ("watch.ready_content_match", Some(4)),
        "{e}"
    );
    assert!(
        e.fix.contains("takes a `\\` before it") && !e.fix.starts_with("quote it"),
        "{e}"
    );
    let example = "  ready_content_file: s.xml\n  ready_content_match: 'Status>(Completed|Succeeded)<'\njob:\n  wrap_cmd: echo\n";
    parse(&with_root(example)).unwrap();
}

/// Job arrays are off unless asked for; a value that cannot work is refused with its key, line and fix.
#[test]
fn array_keys_are_off_by_default_and_refused_where_arrays_cannot_work() {
    let cfg = parse(&with_root("job:\n  wrap_cmd: echo\n")).unwrap();
    assert_eq!(cfg.job.arrays, None);
    let cfg = parse(&with_root(
        "job:\n  wrap_cmd: echo\n  array_max: 200\n  array_throttle: 20\n",
    ))
    .unwrap();
    let a = cfg.job.arrays.unwrap();
    assert_eq!((a.max, a.throttle), (200, Some(20)));
    let yaml = cfg.to_yaml();
    assert!(
        yaml.contains("array_max: 200") && yaml.contains("array_throttle: 20"),
        "{yaml}"
    );
    let refused = [
        (
            "job:\n  wrap_cmd: echo\n  array_throttle: 5\n",
            "job.array_throttle",
            "array_max: 1000",
        ),
        (
            "job:\n  wrap_cmd: echo\n  array_max: 1\n",
            "job.array_max",
            "array_max: 0",
        ),
        (
            "job:\n  wrap_cmd: echo\n  array_max: -3\n",
            "job.array_max",
            "array_max: 0",
        ),
        (
            "job:\n  wrap_cmd: echo\n  executor: local\n  array_max: 10\n",
            "job.array_max",
            "executor: slurm",
        ),
        (
            "job:\n  job_script: /bin/true\n  array_max: 10\n",
            "job.array_max",
            "wrap_cmd: /path/to/script",
        ),
    ];
    for (body, key, fix) in refused {
        let e = parse(&with_root(body)).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.line.is_some(), "{e}");
        assert!(e.fix.contains(fix), "{e}");
    }
}
