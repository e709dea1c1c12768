//! Observability with the local executor (no Slurm, no systemd needed): systemd notifications through a
//! socket the test binds itself, JSON log lines, the metrics endpoint and the metrics textfile.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// A job that fails (exit 1) when its directory holds a file named `fail`, and completes otherwise.
const FAIL_IF_MARKED: &str = "wrap_cmd: sh -c 'test ! -e \"$1/fail\"' job";

/// Starts the daemon with a `metrics:` section (lines under it), extra arguments and environment.
fn start(env: &TestEnv, metrics: &[String], args: &[&str], vars: &[(&str, &OsStr)]) -> Daemon {
    let cfg = env.write_config();
    if !metrics.is_empty() {
        let mut y = std::fs::read_to_string(&cfg).unwrap();
        y += "metrics:\n";
        for l in metrics {
            y += &format!("  {l}\n");
        }
        std::fs::write(&cfg, y).unwrap();
    }
    let log = env.tmp.path().join(format!("daemon-{}.log", run_token()));
    let mut d = Daemon::spawn_env(&cfg, &log, args, vars);
    // Let the daemon come up (or fail at start) before the test looks at it.
    wait_for(DEADLINE, "the daemon to start or exit", || {
        let exited = d.child.as_mut().unwrap().try_wait().unwrap().is_some();
        (exited || d.log().contains("dirwatcher started")).then_some(())
    });
    d
}

/// Every datagram the daemon sends to our stand-in for systemd's notification socket, with its arrival.
struct NotifySocket {
    path: std::path::PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    done: Arc<AtomicBool>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (g, d) = (Arc::clone(&got), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !d.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    g.lock().unwrap().push((Instant::now(), msg));
                }
            }
        });
        NotifySocket { path, got, done }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for a datagram with a line satisfying `pred`; returns that line.
    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(DEADLINE, what, || {
            self.messages()
                .iter()
                .flat_map(|(_, m)| m.lines().map(str::to_string).collect::<Vec<_>>())
                .find(|l| pred(l))
        })
    }

    fn pings(&self) -> usize {
        self.messages()
            .iter()
            .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
            .count()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping() {
    // A poll interval far longer than the watchdog's half: the pings can only come often enough if the
    // loop's wait is capped by the watchdog.
    let env = TestEnv::local("notify")
        .job(FAIL_IF_MARKED)
        .watch("poll_interval_sec: 2");
    let done = env.ready_dir("done");
    let sock = NotifySocket::bind(env.tmp.path());
    // WATCHDOG_PID is optional: without it the watchdog is meant for whoever reads WATCHDOG_USEC.
    let mut d = start(
        &env,
        &[],
        &[],
        &[
            ("NOTIFY_SOCKET", sock.path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("600000")),
        ],
    );

    // READY=1 comes after the first scan, together with the first status line.
    let first = wait_for(DEADLINE, "READY=1", || {
        sock.messages()
            .into_iter()
            .find(|(_, m)| m.lines().any(|l| l == "READY=1"))
    });
    let root = env.root.display().to_string();
    assert!(
        first.1.contains(&format!("STATUS=watching {root}: ")),
        "READY without a status line: {:?}",
        first.1
    );
    assert_eq!(
        sock.messages()
            .iter()
            .filter(|(_, m)| m.contains("READY=1"))
            .count(),
        1,
        "READY=1 sent more than once"
    );

    // The status follows the counts.
    env.wait_final(&done, DEADLINE);
    sock.wait_line("a STATUS line with the completed job", |l| {
        l == format!(
            "STATUS=watching {root}: 0 settling, 0 submitting, 0 in flight, 1 completed, 0 failed"
        )
    });

    // Idle now (next scan 2 s away), yet the watchdog is pinged at least every 300 ms.
    let before = sock.pings();
    let t = Instant::now();
    wait_for(
        Duration::from_secs(4),
        "4 watchdog pings while idle",
        || (sock.pings() >= before + 4).then_some(()),
    );
    assert!(
        t.elapsed() < Duration::from_millis(3500),
        "pings too slow: {:?}",
        t.elapsed()
    );

    let (status, _) = d.stop();
    assert!(status.success(), "{status:?}");
    sock.wait_line("STOPPING=1 after SIGTERM", |l| l == "STOPPING=1");
}

#[test]
fn json_log_lines_parse_and_name_dir_and_job() {
    let env = TestEnv::local("jsonlog").job(FAIL_IF_MARKED);
    let dir = env.ready_dir("case1");
    let mut d = start(&env, &[], &["--log-format", "json"], &[]);
    let job = env.wait_job_id(&dir, DEADLINE);
    env.wait_final(&dir, DEADLINE);
    d.wait_log("COMPLETED", DEADLINE);
    let (status, _) = d.stop();
    assert!(status.success());
    let lines: Vec<Value> = d
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // Lines are found by their `event` field, as a log shipper would match them, not by their wording.
    let event = |e: &str| {
        lines
            .iter()
            .find(|v| v["event"] == e)
            .unwrap_or_else(|| panic!("no `{e}` line in {lines:#?}"))
    };
    let submitted = event("submitted");
    assert!(
        submitted["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("submitted job")),
        "{submitted}"
    );
    assert_eq!(submitted["job"], job.as_str(), "{submitted}");
    assert_eq!(submitted["job_name"], env.job_name("case1"), "{submitted}");
    assert_eq!(submitted["attempt"], 1, "{submitted}");
    let ended = event("ended");
    assert_eq!(
        (
            &ended["dir"],
            &ended["job"],
            &ended["state"],
            &ended["exit_code"]
        ),
        (
            &Value::from(dir.to_str().unwrap()),
            &Value::from(job.as_str()),
            &Value::from("COMPLETED"),
            &Value::from("0:0")
        ),
        "{ended}"
    );
    // The plain path, not a quoted rendering: a log shipper matches it exactly (issue 14, D2).
    assert_eq!(
        submitted["dir"],
        dir.to_str().unwrap(),
        "the `dir` field must hold the plain path: {submitted}"
    );
    assert_eq!(submitted["level"], "INFO");
    assert!(submitted["timestamp"].is_string(), "{submitted}");
    // The plain service names no instance: its lines are what they always were.
    for l in &lines {
        assert!(l.get("span").is_none(), "{l}");
    }
}

/// One of several services on a host (`behavior.instance`) names itself on every log line of the daemon
/// and on every series of its metrics (here its textfile).
#[test]
fn an_instance_names_itself_in_every_log_line_and_every_metric() {
    let env = TestEnv::local("instlog")
        .job(FAIL_IF_MARKED)
        .behavior("instance: cryo-em");
    let dir = env.ready_dir("case1");
    let prom = env.tmp.path().join("cryo-em.prom");
    let textfile = format!("textfile: {}", serde_json::to_string(&prom).unwrap());
    let mut d = start(&env, &[textfile], &["--log-format", "json"], &[]);
    env.wait_final(&dir, DEADLINE);
    d.wait_log("COMPLETED", DEADLINE);
    let t = wait_for(DEADLINE, "the textfile with the completed job", || {
        let t = std::fs::read_to_string(&prom).ok()?;
        let series = "dirwatcher_jobs_completed_total{dirwatcher_instance=\"cryo-em\"}";
        (sample(&t, series) == Some(1.0)).then_some(t)
    });
    let (status, _) = d.stop();
    assert!(status.success());
    for l in t.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            l.contains("{dirwatcher_instance=\"cryo-em\"")
                || l.contains(",dirwatcher_instance=\"cryo-em\""),
            "{l}"
        );
    }
    let lines: Vec<Value> = d
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["event"] == "submitted"),
        "{lines:#?}"
    );
    for l in &lines {
        assert_eq!(l["span"]["instance"], "cryo-em", "{l}");
    }
}

/// `GET path` over plain HTTP/1.1: (status line, headers, body).
fn http_get(addr: &str, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.into(), headers.into(), body.into())
}

/// The value of the sample `series` (name with its labels, exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A daemon serving metrics that has ended one directory COMPLETED and one FAILED: the environment,
/// the daemon and the metrics address.
fn one_completed_one_failed(name: &str) -> (TestEnv, Daemon, String) {
    let env = TestEnv::local(name).job(FAIL_IF_MARKED);
    let good = env.ready_dir("good");
    let bad = env.ready_dir("bad");
    std::fs::write(bad.join("fail"), "").unwrap();
    // Port 0: the daemon picks a free port and logs it, so parallel tests never collide.
    let d = start(&env, &["listen: 127.0.0.1:0".into()], &[], &[]);
    let addr = wait_for(DEADLINE, "the metrics address in the log", || {
        let log = d.log();
        let rest = log.split("serving metrics on http://").nth(1)?;
        Some(rest.split("/metrics").next()?.to_string())
    });
    env.wait_final(&good, DEADLINE);
    env.wait_final(&bad, DEADLINE);
    (env, d, addr)
}

#[test]
fn metrics_endpoint_counts_a_completed_and_a_failed_directory() {
    let (_env, _d, addr) = one_completed_one_failed("metrics");

    let text = wait_for(DEADLINE, "metrics showing both ends", || {
        let (status, _, body) = http_get(&addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        let done = sample(&body, "dirwatcher_jobs_in_flight") == Some(0.0)
            && sample(&body, "dirwatcher_jobs_completed_total") == Some(1.0)
            && sample(&body, "dirwatcher_jobs_failed_total{state=\"FAILED\"}") == Some(1.0);
        done.then_some(body)
    });
    for (series, want) in [
        ("dirwatcher_jobs_submitted_total", 2.0),
        ("dirwatcher_directories", 2.0),
        ("dirwatcher_directories_finished{state=\"completed\"}", 1.0),
        ("dirwatcher_directories_finished{state=\"failed\"}", 1.0),
        ("dirwatcher_directories_pending{stage=\"settling\"}", 0.0),
        ("dirwatcher_directories_pending{stage=\"submitting\"}", 0.0),
        ("dirwatcher_scheduler_errors_total{call=\"submit\"}", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in\n{text}");
    }
    for series in [
        "dirwatcher_scheduler_calls_total{call=\"submit\"}",
        "dirwatcher_scheduler_calls_total{call=\"query\"}",
        "dirwatcher_scheduler_call_duration_seconds_count{call=\"submit\"}",
        "dirwatcher_scheduler_call_duration_seconds_count{call=\"query\"}",
    ] {
        assert!(
            sample(&text, series).is_some_and(|v| v > 0.0),
            "{series} in\n{text}"
        );
    }
    let polled = sample(&text, "dirwatcher_last_successful_poll_timestamp_seconds").unwrap();
    assert!((unix_now() - polled).abs() < 60.0, "last poll at {polled}");
    assert!(text.contains("dirwatcher_build_info{version=\""), "{text}");

    let (_, headers, _) = http_get(&addr, "/metrics");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    assert_eq!(http_get(&addr, "/nope").0, "HTTP/1.1 404 Not Found");
}

/// The Grafana dashboard shipped in `packaging/grafana/` asks only for what the daemon serves: every
/// series a query names is in the real `/metrics` output, and every label it groups by is on that
/// series' samples (`instance` and `job` are Prometheus's own target labels).
#[test]
fn the_grafana_dashboard_queries_only_series_and_labels_the_daemon_serves() {
    let (_env, _d, addr) = one_completed_one_failed("dashboard");
    let body = wait_for(DEADLINE, "metrics showing both ends", || {
        let (_, _, body) = http_get(&addr, "/metrics");
        (sample(&body, "dirwatcher_jobs_in_flight") == Some(0.0)).then_some(body)
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/grafana/dirwatcher.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dash["panels"].as_array().expect("panels");
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().expect("targets").iter())
        .map(|t| t["expr"].as_str().expect("expr"))
        .collect();
    assert!(exprs.len() >= panels.len(), "a panel without a query");
    let series = regex::Regex::new(r"dirwatcher_[a-z_]+").unwrap();
    let by = regex::Regex::new(r"by \(([^)]*)\)").unwrap();
    let samples_of = |name: &str| -> Vec<&str> {
        body.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
            })
            .collect()
    };
    for expr in &exprs {
        let names: Vec<&str> = series.find_iter(expr).map(|m| m.as_str()).collect();
        assert!(!names.is_empty(), "{expr}: names no dirwatcher series");
        let mut lines = Vec::new();
        for n in &names {
            let found = samples_of(n);
            assert!(!found.is_empty(), "{expr}: `{n}` is not served:\n{body}");
            lines.extend(found);
        }
        for group in by.captures_iter(expr) {
            for label in group[1].split(',').map(str::trim) {
                if matches!(label, "instance" | "job") {
                    continue;
                }
                assert!(
                    lines.iter().any(|l| l.contains(&format!("{label}=\""))),
                    "{expr}: no sample of {names:?} has the label `{label}`:\n{}",
                    lines.join("\n")
                );
            }
        }
    }
    // The instance picker reads a series every daemon serves.
    let picker = dash["templating"]["list"][1]["query"].as_str().unwrap();
    for n in series.find_iter(picker) {
        assert!(!samples_of(n.as_str()).is_empty(), "{picker}");
    }
}

#[test]
fn metrics_textfile_is_rewritten_every_cycle() {
    let env = TestEnv::local("textfile").job(FAIL_IF_MARKED);
    let dir = env.ready_dir("one");
    let prom_dir = env.tmp.path().join("node-exporter");
    std::fs::create_dir(&prom_dir).unwrap();
    let prom = prom_dir.join("dirwatcher.prom");
    let _d = start(
        &env,
        &[format!(
            "textfile: {}",
            serde_json::to_string(&prom).unwrap()
        )],
        &[],
        &[],
    );
    env.wait_final(&dir, DEADLINE);
    let read = || std::fs::read_to_string(&prom).unwrap_or_default();
    let first = wait_for(DEADLINE, "the textfile showing the completed job", || {
        let t = read();
        (sample(&t, "dirwatcher_jobs_completed_total") == Some(1.0)
            && sample(&t, "dirwatcher_jobs_in_flight") == Some(0.0))
        .then_some(t)
    });
    let polled = sample(&first, "dirwatcher_last_successful_poll_timestamp_seconds").unwrap();
    // Rewritten each cycle: the poll time moves on.
    wait_for(DEADLINE, "a newer poll time in the textfile", || {
        sample(&read(), "dirwatcher_last_successful_poll_timestamp_seconds").filter(|t| *t > polled)
    });
    let names: Vec<_> = std::fs::read_dir(&prom_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".prom"))
        .collect();
    assert_eq!(names, ["dirwatcher.prom"], "only the one .prom file");
}

#[test]
fn metrics_listen_on_a_busy_port_stops_at_start() {
    let env = TestEnv::local("busyport").job(FAIL_IF_MARKED);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut d = start(&env, &[format!("listen: {addr}")], &[], &[]);
    let status = d.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(1), "{}", d.log());
    assert!(
        d.log()
            .contains(&format!("cannot serve metrics on `{addr}`")),
        "{}",
        d.log()
    );
}
