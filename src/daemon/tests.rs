//! The loop's test bench: the whole daemon in-process — a temporary root, a real temporary ledger, a
//! scripted scheduler and a manual clock. No Slurm, no sleeps: time moves when a test says so. Every loop
//! rule gets its case here first (and its real-cluster test in `tests/` second).

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::{Daemon, Event, Flow};
use crate::config::Config;
use crate::engine::{GenState, Generation};
use crate::engine::{JobRow, Source};
use crate::scheduler::fake::{Call, Fake, Scripted, ours};
use crate::scheduler::{QueryError, SubmitError};
use crate::time::{Clock, ManualClock, Millis};

/// A plausible wall time to start from (2027-01-15).
const T0: Millis = 1_800_000_000_000;
const SEC: Duration = Duration::from_secs(1);

struct Bench {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    fake: Fake,
    clock: ManualClock,
    /// How many times the daemon built a scheduler (1 at start, +1 per reload).
    built: Arc<AtomicUsize>,
    daemon: Daemon,
    tx: Sender<Event>,
    rx: Receiver<Event>,
}

fn config_text(
    root: &std::path::Path,
    dir: &std::path::Path,
    poll: u32,
    behavior: &[&str],
) -> String {
    config_text_with(root, dir, poll, &[], &[], behavior)
}

/// [`config_text`] with lines added to `watch:` and `job:` as well.
fn config_text_with(
    root: &std::path::Path,
    dir: &std::path::Path,
    poll: u32,
    watch: &[&str],
    job: &[&str],
    behavior: &[&str],
) -> String {
    let lines = |l: &[&str]| l.iter().map(|l| format!("  {l}\n")).collect::<String>();
    format!(
        "watch:\n  root: {root:?}\n  poll_interval_sec: {poll}\n  stability_checks: 2\n  stability_interval_sec: 1\n{}\
         job:\n  wrap_cmd: \"true\"\n  command_timeout_sec: 10\n  lost_after_sec: 600\n{}\
         behavior:\n  state_file: {:?}\n  failure_log: {:?}\n{}",
        lines(watch),
        lines(job),
        dir.join("state.db"),
        dir.join("failed.log"),
        lines(behavior),
    )
}

impl Bench {
    /// Poll every 5 s, 2 stability checks 1 s apart, back-off from 5 s; `behavior` adds lines to `behavior:`.
    fn new(behavior: &[&str]) -> Bench {
        Bench::full(&[], &[], behavior, |_| String::new())
    }

    /// Like [`Bench::new`], with more of the config (a `notify:` section) made from the bench's folder.
    fn build(behavior: &[&str], more: impl Fn(&std::path::Path) -> String) -> Bench {
        Bench::full(&[], &[], behavior, more)
    }

    /// Like [`Bench::new`], with lines added to `watch:` and `job:` too.
    fn with(watch: &[&str], job: &[&str], behavior: &[&str]) -> Bench {
        Bench::full(watch, job, behavior, |_| String::new())
    }

    /// Like [`Bench::new`], with `watch` lines added to `watch:` (readiness rules, quiescence).
    fn with_watch(watch: &[&str]) -> Bench {
        Bench::full(watch, &[], &[], |_| String::new())
    }

    fn full(
        watch: &[&str],
        job: &[&str],
        behavior: &[&str],
        more: impl Fn(&std::path::Path) -> String,
    ) -> Bench {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let config = tmp.path().join("config.yaml");
        let text = config_text_with(&root, tmp.path(), 5, watch, job, behavior) + &more(tmp.path());
        std::fs::write(&config, text).unwrap();
        let cfg = Config::load(&config).unwrap();
        let fake = Fake::default();
        let clock = ManualClock::new(T0);
        let built = Arc::new(AtomicUsize::new(0));
        let (f, b) = (fake.clone(), Arc::clone(&built));
        let daemon = Daemon::with_parts(
            cfg,
            Box::new(move |_| {
                b.fetch_add(1, Ordering::SeqCst);
                Box::new(f.clone())
            }),
            Box::new(clock.clone()),
        )
        .unwrap();
        let (tx, rx) = unbounded();
        Bench {
            _tmp: tmp,
            root,
            config,
            fake,
            clock,
            built,
            daemon,
            tx,
            rx,
        }
    }

    /// A directory with data and a ready-file, as an instrument leaves it.
    fn ready(&self, name: &str) -> PathBuf {
        let d = self.root.join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("data.bin"), b"payload").unwrap();
        std::fs::write(d.join("_READY"), b"").unwrap();
        d
    }

    fn cycle(&mut self) -> Flow {
        self.daemon.cycle(&self.rx)
    }

    /// Moves time by `d`, then runs one cycle.
    fn after(&mut self, d: Duration) -> Flow {
        self.clock.advance(d);
        self.cycle()
    }

    /// Cycles once per second for `d`.
    fn run_for(&mut self, d: Duration) {
        for _ in 0..d.as_secs() {
            self.after(SEC);
        }
    }

    /// The first look, then the second one a stability interval later: a fresh ready-file is stable.
    fn settle(&mut self) {
        self.cycle();
        self.after(SEC);
    }

    fn history(&self, name: &str) -> Vec<Generation> {
        self.daemon.ledger.history(OsStr::new(name)).unwrap()
    }

    fn latest(&self, name: &str) -> Generation {
        self.history(name).pop().expect("a record")
    }

    fn submits(&self) -> usize {
        self.fake.count(|c| matches!(c, Call::Submit { .. }))
    }

    /// Stops the daemon and starts another one on the same config and ledger, as a restart does.
    fn restart(&mut self) {
        let cfg = Config::load(&self.config).unwrap();
        // The old process lets go of the single-instance locks first (the lock file's and the ledger's).
        self.daemon._lock = std::fs::File::open("/dev/null").unwrap();
        self.daemon.ledger.let_go();
        let f = self.fake.clone();
        let fresh = Daemon::with_parts(
            cfg,
            Box::new(move |_| Box::new(f.clone())),
            Box::new(self.clock.clone()),
        )
        .unwrap();
        self.daemon = fresh;
    }

    /// The job ids the last query asked about.
    fn last_query(&self) -> Vec<String> {
        self.fake
            .calls()
            .into_iter()
            .rev()
            .find_map(|c| match c {
                Call::Query(ids) => Some(ids),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn lookups(&self) -> usize {
        self.fake.count(|c| matches!(c, Call::Lookup(_)))
    }
}

#[test]
fn one_stable_directory_gets_exactly_one_submission() {
    let mut b = Bench::new(&[]);
    b.ready("run1");
    b.cycle();
    assert_eq!(
        b.submits(),
        0,
        "submitted at first sight, before the ready-file proved stable"
    );
    b.after(SEC);
    assert_eq!(b.submits(), 1);
    let g = b.latest("run1");
    assert_eq!(
        (g.state, g.job_id.as_deref()),
        (GenState::Submitted, Some("1001"))
    );
    assert_eq!(b.fake.submitted_keys(), std::slice::from_ref(&g.key));
    b.run_for(Duration::from_secs(60));
    assert_eq!(b.submits(), 1, "submitted again while in flight");
    assert!(b.fake.calls().contains(&Call::Query(vec!["1001".into()])));
}

/// The loop tells its observers what it did, in order: a scan, a submission (the call, then the job), a
/// query and what it showed, the job's end; every cycle ends with its counts.
#[test]
fn the_observers_hear_each_call_submission_query_and_end() {
    use crate::observe::{Call as Kind, Capture, Event as Heard};
    let mut b = Bench::new(&[]);
    let capture = Capture::default();
    b.daemon.observers.more.push(Box::new(capture.clone()));
    b.ready("run1");
    b.settle();
    b.fake.on_query_states(&[("1001", "COMPLETED")]);
    b.after(Duration::from_secs(5));
    let heard: Vec<Heard> = capture
        .events()
        .into_iter()
        .filter(|e| !matches!(e, Heard::CycleDone(_) | Heard::Scanned(_)))
        .collect();
    assert_eq!(
        heard,
        [
            Heard::Called(Kind::Submit, true),
            Heard::Submitted,
            Heard::Called(Kind::Query, true),
            Heard::Queried(1),
            Heard::Ended(GenState::Completed, "COMPLETED".into()),
        ]
    );
    let all = capture.events();
    assert_eq!(all.first(), Some(&Heard::Scanned(1)), "{all:?}");
    // Counted for the observer that asked, though neither metrics nor systemd listen in the bench.
    assert!(
        matches!(all.last(), Some(Heard::CycleDone(Some(s))) if s.contains("1 completed")),
        "{all:?}"
    );
}

#[test]
fn a_lost_answer_is_adopted_by_key_and_never_submitted_twice() {
    let mut b = Bench::new(&[]);
    b.fake
        .on_submit(Err(SubmitError::Uncertain(
            "sbatch timed out after 10s".into(),
        )))
        .on_lookup(Ok(Some("4242".into())));
    b.ready("run1");
    b.settle();
    assert_eq!(b.submits(), 1);
    assert!(b.latest("run1").uncertain);
    b.after(Duration::from_secs(5));
    let g = b.latest("run1");
    assert_eq!(
        (g.state, g.job_id.as_deref(), g.uncertain),
        (GenState::Submitted, Some("4242"), false)
    );
    assert!(
        b.fake.calls().contains(&Call::Query(vec!["4242".into()])),
        "the adopted job is followed in the same cycle"
    );
    b.run_for(Duration::from_secs(120));
    assert_eq!(b.submits(), 1, "a second sbatch for a job that exists");
}

#[test]
fn a_stop_asked_while_lost_answers_are_looked_up_ends_the_cycle_before_the_next_lookup() {
    let mut b = Bench::new(&[]);
    b.fake.on_submit(Err(SubmitError::Uncertain(
        "sbatch timed out after 10s".into(),
    )));
    b.ready("run1");
    b.settle();
    assert_eq!(b.submits(), 1);
    // Each lookup is a scheduler call (a takeover may find hundreds): a stop does not wait for them.
    b.tx.send(Event::Terminate).unwrap();
    assert_eq!(b.after(Duration::from_secs(5)), Flow::Stop);
    assert_eq!(b.lookups(), 0, "looked up after the stop was asked");
    assert!(
        b.latest("run1").uncertain,
        "stays uncertain, looked up after the restart"
    );
    b.after(SEC);
    assert_eq!(b.lookups(), 1, "the next cycle looks it up");
}

#[test]
fn no_job_found_waits_out_the_grace_period_then_resubmits_the_same_intent() {
    let mut b = Bench::new(&[]);
    b.fake.on_submit(Err(SubmitError::Uncertain(
        "sbatch printed no job id".into(),
    )));
    b.ready("run1");
    b.settle();
    let first = b.clock.mono();
    // Lookups answer "no such key" (the default). Grace = max(command_timeout 10 s, 30 s).
    while b.submits() < 2 {
        b.after(SEC);
        assert!(b.clock.mono() - first < 60_000, "never resubmitted");
    }
    let waited = b.clock.mono() - first;
    assert!(
        waited >= 30_000,
        "resubmitted {waited} ms after a lost answer, inside the grace period"
    );
    assert!(b.lookups() >= 2, "looked up only {} times", b.lookups());
    let keys = b.fake.submitted_keys();
    assert_eq!(
        keys[0], keys[1],
        "the retry carries the same submission key"
    );
    assert_eq!(b.history("run1").len(), 1, "one record for one generation");
    assert_eq!(b.latest("run1").state, GenState::Submitted);
}

#[test]
fn a_failing_query_fails_no_job() {
    let mut b = Bench::new(&[]);
    b.ready("run1");
    b.settle();
    for _ in 0..10 {
        b.fake
            .on_query(Err(QueryError("sacct: slurmdbd not responding".into())));
    }
    b.run_for(Duration::from_secs(50));
    let g = b.latest("run1");
    assert_eq!(
        g.state,
        GenState::Submitted,
        "a job was given up because accounting did not answer"
    );
    assert!(
        !b.daemon.cfg.behavior.failure_log.exists(),
        "a failure-log line without a failure"
    );
    b.fake.on_query_states(&[("1001", "COMPLETED")]);
    b.run_for(Duration::from_secs(10));
    assert_eq!(b.latest("run1").state, GenState::Completed);
    assert_eq!(b.submits(), 1);
}

#[test]
fn a_refused_submission_holds_every_submission_until_its_back_off_ends() {
    let mut b = Bench::new(&[]);
    b.fake.on_submit(Err(SubmitError::Refused(
        "sbatch failed with exit code 1: Unable to contact slurm controller".into(),
    )));
    for d in ["a", "b", "c"] {
        b.ready(d);
    }
    b.settle();
    assert_eq!(
        b.submits(),
        1,
        "kept calling sbatch after the controller refused"
    );
    let refused = b.clock.mono();
    while b.submits() == 1 {
        b.after(Duration::from_millis(500));
        assert!(b.clock.mono() - refused < 30_000, "never tried again");
    }
    let held = b.clock.mono() - refused;
    assert!(
        held >= 5_000,
        "tried again after {held} ms, inside the 5 s back-off"
    );
    assert_eq!(
        b.submits(),
        4,
        "after the hold every pending directory is submitted"
    );
    for d in ["a", "b", "c"] {
        let g = b.latest(d);
        assert_eq!(g.state, GenState::Submitted, "{d}");
        assert_eq!(b.history(d).len(), 1, "{d}");
    }
}

#[test]
fn completed_with_delete_on_success_deletes_the_directory_and_clears_its_flag() {
    let mut b = Bench::new(&["delete_on_success: true"]);
    let dir = b.ready("run1");
    b.settle();
    b.fake.on_query_states(&[("1001", "RUNNING")]);
    b.after(Duration::from_secs(5));
    assert!(dir.exists(), "deleted while the job was running");
    b.fake.on_query_states(&[("1001", "COMPLETED")]);
    b.after(Duration::from_secs(5));
    assert!(!dir.exists(), "not deleted after COMPLETED");
    let g = b.latest("run1");
    assert_eq!(
        (g.state, g.deleted, g.delete_pending),
        (GenState::Completed, true, false)
    );
    b.run_for(Duration::from_secs(20));
    assert_eq!(b.submits(), 1);
}

/// `depth` nested directories `d/d/…` under `top`, each with a file, made relative to a descriptor (the
/// path would pass `PATH_MAX` long before).
fn deep_tree(top: &std::path::Path, depth: usize) {
    use rustix::fs::{Mode, OFlags, mkdirat, openat};
    let mut fd = rustix::fs::open(top, OFlags::DIRECTORY, Mode::empty()).unwrap();
    for _ in 0..depth {
        let f = openat(&fd, "f", OFlags::CREATE | OFlags::WRONLY, Mode::RUSR).unwrap();
        drop(f);
        mkdirat(&fd, "d", Mode::RWXU).unwrap();
        fd = openat(&fd, "d", OFlags::DIRECTORY, Mode::empty()).unwrap();
    }
}

#[test]
fn a_deep_tree_is_deleted_a_slice_per_cycle_and_a_restart_carries_on() {
    let mut b = Bench::new(&["delete_on_success: true"]);
    let dir = b.ready("run1");
    // Several slices' worth of walk (each level is a handful of its steps).
    deep_tree(&dir, 5_000);
    b.settle();
    b.fake.on_query_states(&[("1001", "COMPLETED")]);
    let log = logs_of(|| {
        b.after(Duration::from_secs(5));
    });
    assert!(dir.exists(), "deleted whole in one cycle");
    assert!(log.contains("deleted a slice per cycle"), "{log}");
    let g = b.latest("run1");
    assert_eq!(
        (g.deleted, g.delete_pending),
        (false, true),
        "pending until gone"
    );
    // Stopped here: the next daemon carries on, from the ledger's flag.
    b.restart();
    let mut cycles = 0;
    while dir.exists() {
        b.after(Duration::from_millis(10));
        cycles += 1;
        assert!(cycles < 100, "the deletion does not progress");
    }
    let g = b.latest("run1");
    assert_eq!((g.deleted, g.delete_pending), (true, false));
    assert_eq!(b.submits(), 1);
}

#[test]
fn a_directory_over_its_bound_is_held_with_the_key_said_once_under_each_rule() {
    for rule in [
        "ready_all_of: [\"_REA*\"]",
        "ignore_patterns: [\"*.part\"]",
        "quiet_sec: 5\n  quiet_scope: tree",
    ] {
        let mut b = Bench::with_watch(&[rule, "quiet_max_entries: 100"]);
        let d = b.ready("run1");
        for i in 0..500 {
            std::fs::write(d.join(format!("tile_{i}.cbcl")), b"").unwrap();
        }
        let log = logs_of(|| b.run_for(Duration::from_secs(120)));
        assert_eq!(b.submits(), 0, "{rule}: submitted past its bound");
        let held = b.daemon.settling.held.get(OsStr::new("run1"));
        assert_eq!(held.map(|h| h.code()), Some("too_many_entries"), "{rule}");
        assert_eq!(
            log.matches("`watch.quiet_max_entries`").count(),
            1,
            "{rule}: one line naming the key, not one per look: {log}"
        );
    }
}

#[test]
fn a_9000_level_tree_under_a_whole_tree_look_is_too_deep_not_unreadable() {
    let mut b = Bench::with_watch(&["quiet_sec: 5", "quiet_scope: tree"]);
    let d = b.ready("run1");
    deep_tree(&d, 9_000);
    let log = logs_of(|| b.run_for(Duration::from_secs(30)));
    assert_eq!(b.submits(), 0);
    let held = b.daemon.settling.held.get(OsStr::new("run1"));
    assert_eq!(held.map(|h| h.code()), Some("too_deep"), "{log}");
    assert!(log.contains("too deep"), "{log}");
    assert!(!log.to_lowercase().contains("permission"), "{log}");
    assert!(b.daemon.settling.unreadable.is_empty());
}

#[test]
fn a_failed_job_gets_one_failure_log_line_and_keeps_its_directory() {
    let mut b = Bench::new(&["delete_on_success: true"]);
    let dir = b.ready("run1");
    b.settle();
    b.fake
        .on_query_rows(vec![ours("1001", Source::Controller, "FAILED", "3:0")]);
    b.run_for(Duration::from_secs(30));
    assert!(dir.exists(), "a failed job's directory was deleted");
    let log = std::fs::read_to_string(&b.daemon.cfg.behavior.failure_log).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    let line: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
    assert_eq!(
        (
            line["job_id"].as_str(),
            line["state"].as_str(),
            line["exit_code"].as_str()
        ),
        (Some("1001"), Some("FAILED"), Some("3:0"))
    );
    let g = b.latest("run1");
    assert_eq!((g.state, g.failure_log_pending), (GenState::Failed, false));
}

#[test]
fn a_reload_requested_during_a_batch_of_submissions_is_carried_out() {
    let mut b = Bench::new(&[]);
    for d in ["a", "b"] {
        b.ready(d);
    }
    b.cycle();
    // The operator edits the config and sends SIGHUP while the first sbatch runs; the second sbatch's
    // answer comes with SIGTERM.
    std::fs::write(&b.config, config_text(&b.root, b._tmp.path(), 7, &[])).unwrap();
    let (tx, n) = (b.tx.clone(), Arc::new(AtomicUsize::new(0)));
    b.fake.after_submit(move || {
        let ev = match n.fetch_add(1, Ordering::SeqCst) {
            0 => Event::Reload,
            _ => Event::Terminate,
        };
        tx.send(ev).unwrap();
    });
    b.clock.advance(SEC);
    b.daemon.run(&b.rx);
    assert_eq!(b.built.load(Ordering::SeqCst), 2, "the reload was lost");
    assert_eq!(b.daemon.cfg.watch.poll_interval, Duration::from_secs(7));
    assert_eq!(b.submits(), 2, "the batch went on after the reload");
    assert_eq!(b.latest("a").state, GenState::Submitted);
    assert_eq!(b.latest("b").state, GenState::Submitted);
}

/// Log lines (INFO and above) written while `f` runs on this thread.
fn logs_of(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // tracing caches per call site, process-wide, whether anyone listens, and while at most one dispatcher
    // is registered it asks only the registering thread's: a site first hit by a parallel test without a
    // subscriber was cached as unheard, and this capture lost the line (a missing "submissions work again"
    // in a loaded CI run). A second dispatcher that listens to everything, held for the whole test binary,
    // makes every site ask all of them; the rebuild re-asks the sites registered before it existed.
    static ANCHOR: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    ANCHOR.get_or_init(|| tracing::Dispatch::new(tracing_subscriber::registry()));
    tracing::subscriber::with_default(subscriber, || {
        tracing::callsite::rebuild_interest_cache();
        f()
    });
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

const INVALID_ACCOUNT: &str = "sbatch failed with exit code 1: sbatch: error: Batch job submission failed: \
                               Invalid account or account/partition combination specified";

fn warnings_naming(log: &str, key: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains(&format!("`{key}`")))
        .count()
}

#[test]
fn a_configuration_refusal_is_said_again_every_repeat_interval_until_a_submission_works() {
    // Back-off 5, 10, 20, 20 … s; the warning repeats every submit_backoff_max_sec = 20 s.
    let mut b = Bench::new(&["submit_backoff_sec: 5", "submit_backoff_max_sec: 20"]);
    for _ in 0..5 {
        b.fake
            .on_submit(Err(SubmitError::Refused(INVALID_ACCOUNT.into())));
    }
    b.ready("run1");
    let log = logs_of(|| b.settle());
    assert_eq!(b.submits(), 1);
    assert_eq!(warnings_naming(&log, "job.account"), 1, "{log}");
    assert!(
        !log.contains("further failures are quiet"),
        "a configuration error announced as an outage: {log}"
    );
    let metrics = b.daemon.observers.metrics.render();
    assert!(
        metrics.contains("dirwatcher_submissions_blocked{reason=\"config\"} 1"),
        "{metrics}"
    );
    let status = crate::ops::status(
        &b.daemon.cfg,
        &crate::ops::StatusQuery {
            failures: 10,
            ..Default::default()
        },
    )
    .unwrap();
    let refused = status
        .submissions_refused
        .as_ref()
        .expect("status shows the refusal");
    assert_eq!((refused.reason, refused.key), ("config", "job.account"));
    assert!(crate::ops::render_status(&status).contains("fix `job.account`"));

    // Tries at +5 s and +15 s stay quiet (inside 20 s of the warning); the one at +35 s says it again.
    let log = logs_of(|| b.run_for(Duration::from_secs(19)));
    assert_eq!(b.submits(), 3, "tries at +5 s and +15 s");
    assert_eq!(warnings_naming(&log, "job.account"), 0, "{log}");
    let log = logs_of(|| b.run_for(Duration::from_secs(17)));
    assert_eq!(b.submits(), 4, "the try at +35 s");
    assert_eq!(warnings_naming(&log, "job.account"), 1, "{log}");
    assert!(log.contains("still, after"), "{log}");

    // Still refused at +55 s (said again: 20 s since the last warning); the try at +75 s is accepted.
    let log = logs_of(|| b.run_for(Duration::from_secs(40)));
    assert_eq!(b.submits(), 6);
    assert_eq!(warnings_naming(&log, "job.account"), 1, "{log}");
    assert!(log.contains("submissions work again"), "{log}");
    let g = b.latest("run1");
    assert_eq!(
        (g.state, g.job_id.as_deref(), b.history("run1").len()),
        (GenState::Submitted, Some("1001"), 1)
    );
    let metrics = b.daemon.observers.metrics.render();
    assert!(
        metrics.contains("dirwatcher_submissions_blocked{reason=\"config\"} 0"),
        "{metrics}"
    );
    let status = crate::ops::status(
        &b.daemon.cfg,
        &crate::ops::StatusQuery {
            failures: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(status.submissions_refused.is_none());
    let log = logs_of(|| b.run_for(Duration::from_secs(60)));
    assert_eq!(warnings_naming(&log, "job.account"), 0, "{log}");
}

#[test]
fn an_outage_after_a_configuration_refusal_is_announced_as_one() {
    let mut b = Bench::new(&["submit_backoff_sec: 5", "submit_backoff_max_sec: 20"]);
    b.fake
        .on_submit(Err(SubmitError::Refused(INVALID_ACCOUNT.into())))
        .on_submit(Err(SubmitError::Refused(
            "sbatch failed with exit code 1: sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)".into(),
        )));
    b.ready("run1");
    b.settle();
    let log = logs_of(|| b.run_for(Duration::from_secs(6)));
    assert_eq!(b.submits(), 2);
    assert!(
        log.contains("cannot submit") && log.contains("Unable to contact slurm controller"),
        "the outage went unsaid: {log}"
    );
    let metrics = b.daemon.observers.metrics.render();
    assert!(
        metrics.contains("dirwatcher_submissions_blocked{reason=\"config\"} 0"),
        "an outage is not a configuration error: {metrics}"
    );
}

#[test]
fn a_reload_during_a_configuration_refusal_tries_again_at_once() {
    let mut b = Bench::new(&["submit_backoff_sec: 60", "submit_backoff_max_sec: 600"]);
    b.fake
        .on_submit(Err(SubmitError::Refused(INVALID_ACCOUNT.into())));
    b.ready("run1");
    b.ready("run2");
    b.settle();
    assert_eq!(b.submits(), 1);
    b.run_for(Duration::from_secs(10));
    assert_eq!(b.submits(), 1, "inside the 60 s back-off");
    // The operator fixes `job.account` and reloads: both directories go out in the next cycle.
    let log = logs_of(|| {
        b.daemon.reload();
        b.after(SEC);
    });
    assert_eq!(b.submits(), 3, "{log}");
    assert!(log.contains("tried again now"), "{log}");
    for d in ["run1", "run2"] {
        assert_eq!(b.latest(d).state, GenState::Submitted, "{d}");
    }
}

#[test]
fn an_unsafe_job_output_folder_holds_every_submission_until_it_is_fixed() {
    let mut b = Bench::new(&[]);
    // Someone who can write the root planted the output folder as a link to a place of their choosing.
    let elsewhere = b._tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::create_dir(b.root.join(".dirwatcher")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, b.root.join(".dirwatcher/logs")).unwrap();
    for d in ["a", "b"] {
        b.ready(d);
    }
    b.settle();
    b.run_for(Duration::from_secs(20));
    assert_eq!(
        b.submits(),
        0,
        "submitted with job output going through a symlink"
    );
    for d in ["a", "b"] {
        assert_eq!(b.history(d).len(), 1, "{d}");
        assert_eq!(
            b.latest(d).state,
            GenState::Submitting,
            "{d} is no longer pending"
        );
    }
    std::fs::remove_file(b.root.join(".dirwatcher/logs")).unwrap();
    b.run_for(Duration::from_secs(6));
    assert_eq!(b.submits(), 2, "not submitted after the folder was fixed");
    let logs = std::fs::symlink_metadata(b.root.join(".dirwatcher/logs")).unwrap();
    assert!(logs.is_dir(), "the daemon did not create a real folder");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

const HOUR: Millis = 3_600_000;

/// Runs cycles every 500 ms until `done`, failing after `limit` of monotonic time; returns the time taken.
fn until(b: &mut Bench, limit: Duration, what: &str, done: impl Fn(&Bench) -> bool) -> Millis {
    let start = b.clock.mono();
    while !done(b) {
        b.after(Duration::from_millis(500));
        let took = b.clock.mono() - start;
        assert!(
            took < crate::time::ms(limit),
            "{what}: not within {limit:?}"
        );
    }
    b.clock.mono() - start
}

#[test]
fn a_wall_clock_step_either_way_moves_no_submission_back_off() {
    for step in [-HOUR, HOUR] {
        let mut b = Bench::new(&[]);
        b.fake.on_submit(Err(SubmitError::Refused(
            "sbatch failed with exit code 1: Unable to contact slurm controller".into(),
        )));
        b.ready("run1");
        b.settle();
        assert_eq!(b.submits(), 1);
        b.clock.step_wall(step);
        let took = until(&mut b, Duration::from_secs(30), "the retry", |b| {
            b.submits() == 2
        });
        assert!(
            (5_000..7_000).contains(&took),
            "step {step} ms: retried {took} ms after a 5 s back-off"
        );
        assert_eq!(b.latest("run1").state, GenState::Submitted);
    }
}

#[test]
fn a_reload_during_an_outage_keeps_the_back_off() {
    let mut b = Bench::new(&["submit_backoff_sec: 60", "submit_backoff_max_sec: 600"]);
    b.fake.on_submit(Err(SubmitError::Refused(
        "sbatch failed with exit code 1: sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)".into(),
    )));
    b.ready("run1");
    b.settle();
    b.daemon.reload();
    b.run_for(Duration::from_secs(10));
    assert_eq!(
        b.submits(),
        1,
        "a reload does not bring the controller back"
    );
}

/// The old record of a reused id in accounting: another job's key, submitted long before our intent.
fn old_row(job_id: &str, state: &str) -> Scripted {
    Scripted::Row(JobRow {
        source: Source::Accounting,
        job_id: job_id.into(),
        name: "dirwatch-run1".into(),
        comment: "dw-0ld1ed9e-16".into(),
        submit: Some(T0 - 86_400_000),
        end: Some(T0 - 86_000_000),
        state: state.into(),
        exit_code: "0:0".into(),
        requeue: None,
        detail: Default::default(),
    })
}

#[test]
fn a_stale_completed_row_of_a_reused_id_neither_deletes_nor_ends_the_job() {
    let mut b = Bench::new(&["delete_on_success: true"]);
    let dir = b.ready("run1");
    b.settle();
    // Accounting answers with the old job 1001 (COMPLETED); the controller has ours, pending, then running.
    for _ in 0..3 {
        b.fake.on_query_rows(vec![
            old_row("1001", "COMPLETED"),
            ours("1001", Source::Controller, "PENDING", "0:0"),
        ]);
    }
    // Then accounting alone (the controller not answering) with only the stale row: not known yet.
    for _ in 0..3 {
        b.fake
            .on_query(Ok((vec![old_row("1001", "COMPLETED")], true, false)));
    }
    b.run_for(Duration::from_secs(40));
    assert!(dir.exists(), "deleted on the COMPLETED of another job");
    let g = b.latest("run1");
    assert_eq!(g.state, GenState::Submitted, "{g:?}");
    b.fake.on_query_rows(vec![
        old_row("1001", "COMPLETED"),
        ours("1001", Source::Accounting, "COMPLETED", "0:0"),
    ]);
    b.after(Duration::from_secs(5));
    assert!(!dir.exists(), "our own COMPLETED did not delete");
    assert_eq!(b.latest("run1").state, GenState::Completed);
    assert_eq!(b.submits(), 1);
}

#[test]
fn a_requeued_node_fail_gives_one_outcome_after_the_last_run() {
    let mut b = Bench::new(&["delete_on_success: true", "max_retries: 2"]);
    let dir = b.ready("run1");
    b.settle();
    let acct_fail = || ours("1001", Source::Accounting, "NODE_FAIL", "0:0");
    // The node fails: accounting says NODE_FAIL at once, the controller first still shows the failed run
    // (requeue on), then the job pending and running again.
    b.fake
        .on_query_rows(vec![
            acct_fail(),
            ours("1001", Source::Controller, "NODE_FAIL", "0:0"),
        ])
        .on_query_rows(vec![
            acct_fail(),
            ours("1001", Source::Controller, "PENDING", "0:0"),
        ])
        .on_query_rows(vec![
            ours("1001", Source::Accounting, "REQUEUED", "0:0"),
            ours("1001", Source::Controller, "RUNNING", "0:0"),
        ])
        .on_query_rows(vec![ours("1001", Source::Accounting, "RUNNING", "0:0")]);
    b.run_for(Duration::from_secs(20));
    assert!(dir.exists(), "deleted while a later run could still start");
    assert!(
        !b.daemon.cfg.behavior.failure_log.exists(),
        "a failure-log line for a run Slurm requeued"
    );
    let g = b.latest("run1");
    assert_eq!((g.state, b.history("run1").len()), (GenState::Submitted, 1));
    b.fake.on_query_rows(vec![
        acct_fail(),
        ours("1001", Source::Controller, "COMPLETED", "0:0"),
    ]);
    b.after(Duration::from_secs(5));
    let g = b.latest("run1");
    assert_eq!(
        (g.state, g.final_state.as_deref()),
        (GenState::Completed, Some("COMPLETED"))
    );
    assert_eq!(b.history("run1").len(), 1, "a retry for a requeued job");
    assert!(!dir.exists());
    assert_eq!(b.submits(), 1);
}

#[test]
fn a_job_no_source_shows_becomes_lost_after_lost_after_sec_and_retry_resubmits_it() {
    let mut b = Bench::new(&["delete_on_success: true"]);
    let dir = b.ready("run1");
    b.settle();
    let submitted = b.clock.mono();
    // Every query answers (both sources), none shows the job. lost_after_sec is 600.
    while b.latest("run1").state == GenState::Submitted {
        b.after(Duration::from_secs(5));
        assert!(b.clock.mono() - submitted < 700_000, "never declared lost");
    }
    let waited = b.clock.mono() - submitted;
    assert!(
        waited > 600_000,
        "lost after {waited} ms, before lost_after_sec"
    );
    let g = b.latest("run1");
    assert_eq!((g.state, g.deleted), (GenState::Lost, false));
    assert!(dir.exists(), "a lost job's directory was deleted");
    assert!(
        !b.daemon.cfg.behavior.failure_log.exists(),
        "a lost job is not known to have failed"
    );
    let queries = b.fake.count(|c| matches!(c, Call::Query(_)));
    b.run_for(Duration::from_secs(30));
    assert_eq!(
        b.fake.count(|c| matches!(c, Call::Query(_))),
        queries,
        "a lost job is still queried"
    );
    assert_eq!(b.daemon.ledger.counts().unwrap().lost, 1);
    assert_eq!(b.submits(), 1, "resubmitted without the operator");
    let out = crate::ops::retry(&b.daemon.cfg, std::slice::from_ref(&dir)).unwrap();
    assert!(out[0].contains("queued attempt 2"), "{out:?}");
    b.after(Duration::from_secs(5));
    assert_eq!(b.submits(), 2);
    let g = b.latest("run1");
    assert_eq!((g.state, g.attempt), (GenState::Submitted, 2));
}

#[test]
fn a_job_reported_steady_is_followed_as_active_and_seen_until_its_line_changes() {
    let mut b = Bench::new(&["delete_on_success: true"]);
    let dir = b.ready("run1");
    b.settle();
    b.fake
        .on_query_rows(vec![ours("1001", Source::Controller, "PENDING", "0:0")]);
    b.after(Duration::from_secs(5));
    // Twenty minutes of answers with no row of it, only "steady" (lost_after_sec is 600): never lost,
    // nothing ended, and its sighting keeps being recorded.
    for _ in 0..240 {
        b.fake.on_query_rows(vec![Scripted::Steady("1001".into())]);
        b.after(Duration::from_secs(5));
    }
    let g = b.latest("run1");
    assert_eq!(g.state, GenState::Submitted, "a steady job was judged");
    assert!(
        g.seen_at.is_some_and(|s| b.clock.wall() - s < 120_000),
        "a steady job's sighting was not recorded: {:?}",
        g.seen_at
    );
    assert!(dir.exists());
    b.fake.on_query_states(&[("1001", "COMPLETED")]);
    b.run_for(Duration::from_secs(30));
    let g = b.latest("run1");
    assert_eq!((g.state, g.deleted), (GenState::Completed, true));
}

#[test]
fn a_job_seen_now_and_then_is_never_lost_and_a_failing_source_does_not_count() {
    let mut b = Bench::new(&[]);
    b.ready("run1");
    b.settle();
    // For 20 minutes: seen every 8th query; the rest answer empty, or with the controller failing.
    for i in 0..240 {
        match i % 8 {
            0 => b
                .fake
                .on_query_rows(vec![ours("1001", Source::Accounting, "RUNNING", "0:0")]),
            1..=3 => b.fake.on_query(Ok((vec![], true, false))),
            _ => b.fake.on_query_rows(vec![]),
        };
        b.after(Duration::from_secs(5));
    }
    assert_eq!(b.latest("run1").state, GenState::Submitted);
    // Now 11 minutes in which the controller never answers: still not lost (absence is not proven).
    for _ in 0..132 {
        b.fake.on_query(Ok((vec![], true, false)));
        b.after(Duration::from_secs(5));
    }
    assert_eq!(b.latest("run1").state, GenState::Submitted);
}

#[test]
fn a_replaced_root_keeps_its_pending_deletion_and_does_it_when_the_root_is_back() {
    let mut b = Bench::new(&["delete_on_success: true"]);
    let dir = b.ready("run1");
    b.settle();
    assert_eq!(b.submits(), 1);
    // The root goes away (unmounted, say) and another directory shows at its path, with data of its own
    // and a directory of the same name.
    let away = b._tmp.path().join("root-away");
    std::fs::rename(&b.root, &away).unwrap();
    std::fs::create_dir(&b.root).unwrap();
    let impostor = b.ready("run1");
    b.ready("other");
    b.fake.on_query_states(&[("1001", "COMPLETED")]);
    b.run_for(Duration::from_secs(30));
    let g = b.latest("run1");
    assert_eq!(
        (g.state, g.delete_pending, g.deleted),
        (GenState::Completed, true, false),
        "the deletion was given up while the root was away"
    );
    assert!(
        impostor.join("data.bin").exists(),
        "the impostor was touched"
    );
    assert!(
        away.join("run1/data.bin").exists(),
        "deleted while the root was away"
    );
    assert!(
        b.history("other").is_empty(),
        "a directory of the impostor root was processed"
    );
    assert_eq!(b.submits(), 1);
    // The real root is back.
    std::fs::remove_dir_all(&b.root).unwrap();
    std::fs::rename(&away, &b.root).unwrap();
    b.after(SEC);
    let g = b.latest("run1");
    assert_eq!((g.deleted, g.delete_pending), (true, false));
    assert!(!dir.exists(), "not deleted after the root came back");
}

#[test]
fn pending_intents_wait_while_the_root_is_away() {
    let mut b = Bench::new(&[]);
    b.fake
        .on_submit(Err(SubmitError::Refused("controller down".into())));
    b.ready("run1");
    b.settle();
    assert_eq!(b.submits(), 1, "the first try");
    let away = b._tmp.path().join("root-away");
    std::fs::rename(&b.root, &away).unwrap();
    b.run_for(Duration::from_secs(60));
    assert_eq!(
        b.submits(),
        1,
        "submitted for a directory whose root is away"
    );
    std::fs::rename(&away, &b.root).unwrap();
    b.run_for(Duration::from_secs(10));
    assert_eq!(b.submits(), 2);
    assert_eq!(b.latest("run1").state, GenState::Submitted);
}

#[test]
fn a_directory_renamed_while_its_job_runs_is_not_submitted_again_and_its_delete_is_recorded() {
    let mut b = Bench::new(&["delete_on_success: true"]);
    let dir = b.ready("d");
    b.settle();
    assert_eq!(b.submits(), 1);
    let renamed = b.root.join("d-NEW");
    std::fs::rename(&dir, &renamed).unwrap();
    b.run_for(Duration::from_secs(20));
    assert_eq!(b.submits(), 1, "the renamed directory got a second job");
    assert!(b.history("d-NEW").is_empty());
    b.fake.on_query_states(&[("1001", "COMPLETED")]);
    b.run_for(Duration::from_secs(20));
    let g = b.latest("d");
    assert_eq!(
        (g.state, g.deleted, g.delete_pending),
        (GenState::Completed, false, false)
    );
    let why = g.last_error.unwrap_or_default();
    assert!(why.contains("renamed to `d-NEW`"), "{why}");
    assert!(
        renamed.join("data.bin").exists(),
        "the renamed directory was deleted"
    );
    assert_eq!(b.submits(), 1, "submitted after its job ended");
    // New data in it (a new ready-file) is a new generation under the new name.
    std::fs::remove_file(renamed.join("_READY")).unwrap();
    std::fs::write(renamed.join("_READY"), b"again").unwrap();
    b.run_for(Duration::from_secs(10));
    assert_eq!(b.submits(), 2);
    assert_eq!(b.history("d-NEW").len(), 1);
}

#[test]
fn a_wall_clock_step_either_way_moves_no_lookup_grace() {
    for step in [-HOUR, HOUR] {
        let mut b = Bench::new(&[]);
        b.fake.on_submit(Err(SubmitError::Uncertain(
            "sbatch timed out after 10s".into(),
        )));
        b.ready("run1");
        b.settle();
        b.clock.step_wall(step);
        // Lookups answer "no such key"; the grace is 30 s after the lost answer, by the monotonic clock.
        let took = until(&mut b, Duration::from_secs(60), "the resubmission", |b| {
            b.submits() == 2
        });
        assert!(
            (30_000..37_000).contains(&took),
            "step {step} ms: resubmitted {took} ms after the lost answer (grace 30 s)"
        );
        assert_eq!(b.history("run1").len(), 1);
    }
}

#[test]
fn a_wall_clock_step_either_way_stops_neither_scanning_nor_tracking() {
    for step in [-HOUR, HOUR] {
        let mut b = Bench::new(&[]);
        b.ready("before");
        b.settle();
        b.clock.step_wall(step);
        b.ready("after");
        until(
            &mut b,
            Duration::from_secs(8),
            "the new directory's submission",
            |b| b.submits() == 2,
        );
        b.fake
            .on_query_states(&[("1001", "COMPLETED"), ("1002", "COMPLETED")]);
        until(&mut b, Duration::from_secs(6), "both jobs' ends", |b| {
            b.latest("before").state == GenState::Completed
                && b.latest("after").state == GenState::Completed
        });
    }
}

/// A bench whose `notify.command` appends each event document it gets, one per line, to `hook.log` in the
/// bench's folder, and fails (exit 1) while a file `hook.down` exists there.
fn hook_bench(behavior: &[&str], notify: &[&str]) -> Bench {
    let notify: Vec<String> = notify.iter().map(|l| format!("  {l}\n")).collect();
    Bench::build(behavior, |dir| {
        let script = format!(
            "if [ -e {down:?} ]; then echo down >> {tries:?}; exit 1; fi; cat >> {log:?}; echo >> {log:?}",
            down = dir.join("hook.down"),
            tries = dir.join("hook.tries"),
            log = dir.join("hook.log"),
        );
        format!(
            "notify:\n  command: [\"sh\", \"-c\", {script:?}]\n  retry_sec: 10\n{}",
            notify.concat()
        )
    })
}

impl Bench {
    fn dir(&self) -> PathBuf {
        self.config.parent().unwrap().to_path_buf()
    }

    /// The event documents the hook received.
    fn told(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir().join("hook.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn hook_down(&self, down: bool) {
        let p = self.dir().join("hook.down");
        if down {
            std::fs::write(p, "").unwrap();
        } else {
            let _ = std::fs::remove_file(p);
        }
    }

    fn hook_tries(&self) -> usize {
        std::fs::read_to_string(self.dir().join("hook.tries"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

/// Completes job `job_id` at the next query (5 s later).
fn complete(b: &mut Bench, job_id: &str) {
    b.fake.on_query_states(&[(job_id, "COMPLETED")]);
    b.after(Duration::from_secs(5));
}

#[test]
fn a_finished_directory_is_looked_at_again_within_recheck_sec_and_a_new_one_at_once() {
    let mut b = Bench::with(&["recheck_sec: 60"], &[], &[]);
    let old = b.ready("old");
    b.settle();
    complete(&mut b, "1001");
    assert_eq!(b.latest("old").state, GenState::Completed);
    // The instrument writes a second run into the finished directory, and a new directory appears.
    std::fs::write(old.join("_READY"), b"second run").unwrap();
    b.ready("new");
    b.run_for(Duration::from_secs(7));
    assert_eq!(
        b.latest("new").state,
        GenState::Submitted,
        "a new directory waited behind the finished ones"
    );
    b.run_for(Duration::from_secs(45));
    assert_eq!(
        b.history("old").len(),
        1,
        "a finished directory was looked at before its recheck was due"
    );
    b.run_for(Duration::from_secs(15));
    let h = b.history("old");
    assert_eq!(
        (h.len(), h[1].state),
        (2, GenState::Submitted),
        "the new generation was not found within watch.recheck_sec"
    );
    assert_eq!(b.submits(), 3);
}

#[test]
fn recheck_sec_zero_looks_at_finished_directories_every_scan() {
    let mut b = Bench::with(&["recheck_sec: 0"], &[], &[]);
    let d = b.ready("run1");
    b.settle();
    complete(&mut b, "1001");
    std::fs::write(d.join("_READY"), b"again").unwrap();
    b.run_for(Duration::from_secs(7));
    assert_eq!(b.history("run1").len(), 2);
}

#[test]
fn a_directory_forgotten_by_the_cli_is_new_again_at_the_next_scan() {
    let mut b = Bench::new(&[]);
    b.ready("run1");
    b.settle();
    complete(&mut b, "1001");
    // `dirwatcher forget run1`: another connection deletes its records while the daemon runs.
    let cli = crate::ledger::Ledger::open(&b._tmp.path().join("state.db")).unwrap();
    assert_eq!(cli.forget(OsStr::new("run1")).unwrap(), 1);
    b.run_for(Duration::from_secs(7));
    let h = b.history("run1");
    assert_eq!(
        (h.len(), h[0].state, b.submits()),
        (1, GenState::Submitted, 2),
        "the forgotten directory was not submitted as new: the daemon kept its old view"
    );
}

#[test]
fn a_retry_by_the_cli_is_submitted_and_its_directory_not_looked_at_meanwhile() {
    let mut b = Bench::new(&[]);
    b.ready("run1");
    b.settle();
    b.fake.on_query_states(&[("1001", "FAILED")]);
    b.after(Duration::from_secs(5));
    let mut cli = crate::ledger::Ledger::open(&b._tmp.path().join("state.db")).unwrap();
    cli.requeue(&b.latest("run1"), T0).unwrap();
    b.run_for(Duration::from_secs(2));
    let h = b.history("run1");
    assert_eq!(
        (h.len(), h[1].state, h[1].attempt),
        (2, GenState::Submitted, 2)
    );
    b.run_for(Duration::from_secs(30));
    assert_eq!(b.submits(), 2);
}

#[test]
fn a_burst_follows_the_submit_rate_bucket_exactly_and_loses_nothing() {
    let mut b = Bench::with(&[], &["submit_rate: {burst: 3, per_sec: 2}"], &[]);
    for n in 0..20 {
        b.ready(&format!("run{n:02}"));
    }
    let times = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (t, clock) = (Arc::clone(&times), b.clock.clone());
    b.fake
        .after_submit(move || t.lock().unwrap().push(clock.mono()));
    b.settle();
    assert_eq!(b.submits(), 3, "the burst");
    for _ in 0..80 {
        b.after(Duration::from_millis(125));
    }
    let times = times.lock().unwrap().clone();
    assert_eq!(times.len(), 20, "every directory submitted once");
    for (i, start) in times.iter().enumerate() {
        for (j, end) in times.iter().enumerate().skip(i) {
            let allowed = 3.0 + 2.0 * (end - start) as f64 / 1000.0;
            assert!(
                (j - i + 1) as f64 <= allowed,
                "{} calls in {} ms",
                j - i + 1,
                end - start
            );
        }
    }
    let last = times[19] - times[0];
    assert!(
        last <= 8_600,
        "the bucket was followed too slowly: {last} ms"
    );
    for n in 0..20 {
        let h = b.history(&format!("run{n:02}"));
        assert_eq!((h.len(), h[0].state), (1, GenState::Submitted));
    }
}

#[test]
fn a_finished_job_is_told_once_with_its_state_reason_and_output() {
    let mut b = hook_bench(&[], &["events: [completed, failed]"]);
    b.ready("run1");
    b.settle();
    let detail = crate::engine::JobDetail {
        reason: "NonZeroExitCode".into(),
        nodes: "node7".into(),
        elapsed_sec: Some(42),
    };
    b.fake.on_query_rows(vec![crate::scheduler::fake::ours_with(
        "1001",
        Source::Controller,
        "FAILED",
        "3:0",
        detail,
    )]);
    b.run_for(Duration::from_secs(10));
    let told = b.told();
    assert_eq!(told.len(), 1, "{told:?}");
    let e = &told[0];
    assert_eq!(
        (
            &e["schema"],
            &e["event"],
            &e["job_id"],
            &e["state"],
            &e["exit_code"]
        ),
        (
            &"dirwatcher.event/1".into(),
            &"failed".into(),
            &"1001".into(),
            &"FAILED".into(),
            &"3:0".into()
        )
    );
    assert_eq!(
        (&e["reason"], &e["nodes"], &e["elapsed_sec"]),
        (&"NonZeroExitCode".into(), &"node7".into(), &42.into())
    );
    assert_eq!(e["dir"], b.root.join("run1").to_string_lossy().as_ref());
    assert_eq!(
        e["output"],
        b.root
            .join(".dirwatcher/logs/dirwatch-run1-1001.out")
            .to_string_lossy()
            .as_ref()
    );
    let line = std::fs::read_to_string(&b.daemon.cfg.behavior.failure_log).unwrap();
    let rec: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(
        (
            &rec["reason"],
            &rec["nodes"],
            &rec["elapsed_sec"],
            &rec["state"]
        ),
        (
            &"NonZeroExitCode".into(),
            &"node7".into(),
            &42.into(),
            &"FAILED".into()
        ),
        "the failure-log line explains the failure: {line}"
    );
    b.run_for(Duration::from_secs(120));
    assert_eq!(b.told().len(), 1, "told twice");
    assert_eq!(b.daemon.ledger.notice_counts().unwrap().sent, 1);
}

#[test]
fn events_not_listed_are_not_told_and_submitted_is_told_when_listed() {
    let mut b = hook_bench(&[], &["events: [submitted]"]);
    b.ready("run1");
    b.settle();
    b.fake.on_query_states(&[("1001", "COMPLETED")]);
    b.run_for(Duration::from_secs(10));
    let told = b.told();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (&told[0]["event"], &told[0]["job_id"], &told[0]["state"]),
        (
            &"submitted".into(),
            &"1001".into(),
            &serde_json::Value::Null
        )
    );
}

#[test]
fn a_failing_channel_is_retried_with_back_off_nothing_is_lost_and_it_is_given_up_after_max_attempts()
 {
    let mut b = hook_bench(&[], &["max_attempts: 4"]);
    b.hook_down(true);
    b.ready("run1");
    b.settle();
    b.fake.on_query_states(&[("1001", "COMPLETED")]);
    while b.hook_tries() == 0 {
        b.after(SEC);
        assert!(b.clock.mono() < 60_000, "never tried");
    }
    b.run_for(Duration::from_secs(9));
    assert_eq!(b.hook_tries(), 1, "tried again inside its back-off");
    b.run_for(Duration::from_secs(2));
    assert_eq!(
        b.hook_tries(),
        2,
        "not tried again 10 s after the first failure"
    );
    b.run_for(Duration::from_secs(18));
    assert_eq!(b.hook_tries(), 2, "the second delay is not doubled");
    assert!(b.told().is_empty());
    assert_eq!(b.daemon.ledger.notice_counts().unwrap().pending, 1);
    b.hook_down(false);
    b.run_for(Duration::from_secs(60));
    assert_eq!(b.told().len(), 1, "delivered once the hook works again");
    assert_eq!(b.daemon.ledger.notice_counts().unwrap().pending, 0);

    // Given up after the last attempt, and said so.
    let mut b = hook_bench(&[], &["max_attempts: 2"]);
    b.hook_down(true);
    b.ready("run1");
    b.settle();
    b.fake.on_query_states(&[("1001", "FAILED")]);
    b.run_for(Duration::from_secs(600));
    assert_eq!(b.hook_tries(), 2);
    let c = b.daemon.ledger.notice_counts().unwrap();
    assert_eq!((c.pending, c.given_up), (0, 1));
    // `status` says so, as a problem, with the channel's last error.
    let s = crate::ops::status(&b.daemon.cfg, &Default::default()).unwrap();
    assert_eq!((s.notices.waiting, s.notices.given_up), (0, 1));
    let e = s.notices.last_error.clone().unwrap_or_default();
    assert!(e.starts_with("command to "), "{e}");
    assert!(
        s.problems
            .iter()
            .any(|p| p.contains("1 notice(s) could not be delivered and were given up")),
        "{:?}",
        s.problems
    );
    assert!(crate::ops::render_status(&s).contains("notices: 0 waiting for delivery, 1 given up"));
}

#[test]
fn a_refused_configuration_tells_the_operators_once() {
    let mut b = hook_bench(&[], &["events: [blocked]"]);
    for _ in 0..20 {
        b.fake
            .on_submit(Err(SubmitError::Refused(INVALID_ACCOUNT.into())));
    }
    b.ready("run1");
    b.settle();
    b.run_for(Duration::from_secs(900));
    let told = b.told();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["event"], "blocked");
    let reason = told[0]["reason"].as_str().unwrap();
    assert!(reason.contains("job.account"), "{reason}");
}

#[test]
fn the_snapshot_shows_status_what_settles_and_what_slurm_said_of_each_job() {
    let mut b = Bench::new(&[]);
    b.ready("run1");
    b.cycle();
    let crate::snapshot::Read::Found(snap) = crate::snapshot::read(&b.daemon.paths) else {
        panic!("no snapshot after a cycle")
    };
    assert_eq!(snap.pid, std::process::id());
    assert_eq!(snap.last_poll_at, Some(T0));
    let w = &snap.waiting;
    assert_eq!(
        (w.len(), w[0].dir.as_str(), w[0].state.as_str(), w[0].looks),
        (1, "run1", "settling", 1)
    );
    b.after(SEC);
    b.fake.on_query_states(&[("1001", "RUNNING")]);
    b.after(Duration::from_secs(5));
    let q = crate::ops::StatusQuery::default();
    let status = crate::ops::status(&b.daemon.cfg, &q).unwrap();
    assert_eq!(status.daemon.state, "running", "the daemon's own lock");
    assert_eq!(status.daemon.pid, Some(std::process::id()));
    assert_eq!(status.counts.settling, Some(0));
    assert_eq!(status.in_flight.len(), 1);
    assert_eq!(status.in_flight[0].slurm_state.as_deref(), Some("RUNNING"));
    assert!(status.healthy, "{:?}", status.problems);
}

#[test]
fn an_intent_cancelled_between_the_agenda_and_its_sbatch_is_not_submitted() {
    // More intents than one chunk of submissions: while the first chunk's first sbatch runs, an operator
    // cancels a directory of the next chunk, whose intent the cycle already holds but has not marked yet.
    let mut b = Bench::new(&[]);
    let names: Vec<String> = (0..33).map(|i| format!("d{i:02}")).collect();
    for n in &names {
        b.ready(n);
    }
    let later = b.root.join("d32");
    let cfg = b.daemon.cfg.clone();
    let once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    b.fake.after_submit(move || {
        if once.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut f = Fake::default();
        let out = crate::ops::cancel_with(&cfg, &mut f, std::slice::from_ref(&later)).unwrap();
        assert!(
            out[0]
                .as_ref()
                .is_ok_and(|l| l.contains("will not be submitted")),
            "{out:?}"
        );
    });
    let log = logs_of(|| b.settle());
    assert_eq!(b.submits(), 32, "the cancelled intent was submitted: {log}");
    assert!(
        log.contains("an operator cancelled or forgot it meanwhile"),
        "{log}"
    );
    let g = b.latest("d32");
    assert_eq!(g.state, GenState::Failed);
    assert!(g.final_state.unwrap().starts_with("CANCELLED by operator"));
    b.run_for(Duration::from_secs(30));
    assert_eq!(b.submits(), 32, "a cancelled directory came back");
}

#[test]
fn a_job_cancelled_by_an_operator_is_final_at_once_and_gets_no_automatic_retry() {
    let mut b = Bench::new(&["max_retries: 2"]);
    let dir = b.ready("run1");
    b.settle();
    let cfg = b.daemon.cfg.clone();
    let out =
        crate::ops::cancel_with(&cfg, &mut b.fake.clone(), std::slice::from_ref(&dir)).unwrap();
    assert!(
        out[0]
            .as_ref()
            .is_ok_and(|l| l.contains("cancelled job 1001")),
        "{out:?}"
    );
    assert_eq!(b.fake.count(|c| *c == Call::Cancel("1001".into())), 1);
    // Slurm then reports the cancellation too; the operator's record stands, no retry is queued.
    b.fake.on_query_states(&[("1001", "CANCELLED by 0")]);
    b.run_for(Duration::from_secs(30));
    let h = b.history("run1");
    assert_eq!(h.len(), 1, "retried after an operator's cancel: {h:?}");
    assert_eq!(b.submits(), 1);
    let lines = std::fs::read_to_string(&cfg.behavior.failure_log).unwrap();
    assert!(lines.contains("CANCELLED by operator"), "{lines}");
}

#[test]
fn an_accidental_retry_is_undone_by_cancel_or_forget_before_it_is_submitted() {
    let mut b = Bench::new(&[]);
    let dir = b.ready("run1");
    b.settle();
    b.fake.on_query_states(&[("1001", "FAILED")]);
    b.after(Duration::from_secs(5));
    assert_eq!(b.latest("run1").state, GenState::Failed);
    let cfg = b.daemon.cfg.clone();
    let one = std::slice::from_ref(&dir);
    crate::ops::retry(&cfg, one).unwrap();
    let out = crate::ops::cancel_with(&cfg, &mut b.fake.clone(), one).unwrap();
    assert!(
        out[0]
            .as_ref()
            .is_ok_and(|l| l.contains("withdrew queued attempt 2")),
        "{out:?}"
    );
    b.run_for(Duration::from_secs(30));
    assert_eq!((b.submits(), b.history("run1").len()), (1, 1));
    // The same with forget: a queued attempt no sbatch touched does not block it.
    crate::ops::retry(&cfg, one).unwrap();
    let out = crate::ops::forget(&cfg, one).unwrap();
    assert!(out[0].contains("forgot 2 record(s)"), "{out:?}");
}

#[test]
fn a_reload_names_the_keys_it_changed_and_a_refused_one_shows_in_the_metrics() {
    let mut b = Bench::new(&[]);
    b.cycle();
    std::fs::write(
        &b.config,
        config_text(&b.root, b._tmp.path(), 7, &["max_retries: 2"]),
    )
    .unwrap();
    let log = logs_of(|| b.daemon.reload());
    assert!(
        log.contains("changed: watch.poll_interval_sec, behavior.max_retries"),
        "{log}"
    );
    let metrics = b.daemon.observers.metrics.render();
    assert!(
        metrics.contains("dirwatcher_config_last_reload_successful 1"),
        "{metrics}"
    );
    let took = |m: &str| {
        m.lines()
            .find_map(|l| {
                l.strip_prefix("dirwatcher_config_last_reload_success_timestamp_seconds ")
            })
            .and_then(|v| v.parse::<f64>().ok())
    };
    let first = took(&metrics).expect("a reload timestamp");

    std::fs::write(&b.config, "watch:\n  poll_interval_sec: -1\n").unwrap();
    b.clock.advance(Duration::from_secs(10));
    let log = logs_of(|| b.daemon.reload());
    assert!(log.contains("config reload refused"), "{log}");
    let metrics = b.daemon.observers.metrics.render();
    assert!(
        metrics.contains("dirwatcher_config_last_reload_successful 0"),
        "{metrics}"
    );
    assert_eq!(
        took(&metrics),
        Some(first),
        "a refused reload is no success"
    );
    assert_eq!(
        b.daemon.cfg.watch.poll_interval,
        Duration::from_secs(7),
        "the old config stays"
    );
}

#[test]
fn a_rate_limited_sbatch_lowers_the_pace_and_fails_no_directory() {
    let mut b = Bench::new(&[]);
    for d in ["a", "b", "c"] {
        b.ready(d);
    }
    b.fake.on_submit(Err(SubmitError::Refused(
        "sbatch: error: Batch job submission failed: RPC rate limit exceeded".into(),
    )));
    let log = logs_of(|| b.settle());
    assert_eq!(
        b.submits(),
        1,
        "more calls went to a controller that said it limits"
    );
    for d in ["a", "b", "c"] {
        let g = b.latest(d);
        assert_eq!(
            (g.state, g.uncertain, g.submit_tries, g.last_error.is_none()),
            (GenState::Submitting, false, 0, true),
            "{d}: a rate limit counted against the directory"
        );
    }
    assert!(log.contains("limits submissions"), "{log}");
    assert!(
        !log.contains("WARN"),
        "a rate limit is not an outage: {log}"
    );
    b.run_for(Duration::from_secs(3));
    assert_eq!(b.submits(), 4);
    for d in ["a", "b", "c"] {
        assert_eq!(b.latest(d).state, GenState::Submitted);
    }
    assert_eq!(b.lookups(), 0, "a refused call needs no lookup");
}

#[test]
fn a_stop_in_the_middle_of_a_burst_leaves_the_rest_certain_and_waiting() {
    let mut b = Bench::new(&[]);
    for n in 0..5 {
        b.ready(&format!("run{n}"));
    }
    let tx = b.tx.clone();
    b.fake
        .after_submit(move || tx.send(Event::Terminate).unwrap());
    b.cycle();
    assert_eq!(b.after(SEC), Flow::Stop);
    assert_eq!(
        b.submits(),
        1,
        "a stop was not honoured between two submissions"
    );
    assert_eq!(b.latest("run0").state, GenState::Submitted);
    for n in 1..5 {
        let g = b.latest(&format!("run{n}"));
        assert_eq!(
            (g.state, g.uncertain, g.submit_tries),
            (GenState::Submitting, false, 0),
            "run{n}: an sbatch that never started must not need a key lookup after a restart"
        );
    }
}

// Readiness rules (issue 13): instrument markers, a content check, transfer temporaries, quiescence.

/// A run folder as an instrument writes it: `files` (name, content) in a new directory.
fn run_folder(b: &Bench, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = b.root.join(name);
    std::fs::create_dir_all(d.join("Data/Intensities")).unwrap();
    std::fs::write(d.join("Data/Intensities/s_1.bcl"), b"bcl").unwrap();
    for (f, text) in files {
        std::fs::write(d.join(f), text).unwrap();
    }
    d
}

const RCS_OK: &str = "<?xml version=\"1.0\"?>\n<RunCompletionStatus>\n  <CompletionStatus>SuccessfullyCompleted</CompletionStatus>\n</RunCompletionStatus>\n";
const RCS_FAILED: &str = "<?xml version=\"1.0\"?>\n<RunCompletionStatus>\n  <CompletionStatus>ExceptionEndedEarly</CompletionStatus>\n  <ErrorDescription>Run stopped by user</ErrorDescription>\n</RunCompletionStatus>\n";

#[test]
fn illumina_is_not_submitted_on_rta_complete_but_once_copy_complete_arrives() {
    let mut b = Bench::with_watch(&["ready_preset: illumina"]);
    let d = run_folder(
        &b,
        "250101_NB551234_0042_AHXXXXXXX",
        &[("RTAComplete.txt", "RTA 2.11\n")],
    );
    // The copy goes on for minutes after RTAComplete.txt.
    b.run_for(Duration::from_secs(600));
    assert_eq!(b.submits(), 0, "submitted on RTAComplete.txt alone");
    assert!(b.history("250101_NB551234_0042_AHXXXXXXX").is_empty());
    std::fs::write(d.join("CopyComplete.txt"), b"").unwrap();
    b.run_for(Duration::from_secs(10));
    assert_eq!(b.submits(), 1);
    let g = b.latest("250101_NB551234_0042_AHXXXXXXX");
    let m = std::fs::symlink_metadata(d.join("CopyComplete.txt")).unwrap();
    assert_eq!(
        g.ready,
        crate::scan::identity_of(&m),
        "the ledger stores the marker's identity"
    );
    b.run_for(Duration::from_secs(30));
    assert_eq!(b.submits(), 1, "submitted twice");
}

#[test]
fn a_failed_run_completion_status_is_never_submitted_and_is_said_once() {
    let mut b = Bench::with_watch(&["ready_preset: illumina"]);
    let name = "20250101_LH00123_0007_A22XXXXXX";
    let log = logs_of(|| {
        run_folder(
            &b,
            name,
            &[
                ("RTAComplete.txt", ""),
                ("CopyComplete.txt", ""),
                ("RunCompletionStatus.xml", RCS_FAILED),
            ],
        );
        b.run_for(Duration::from_secs(60));
    });
    assert_eq!(b.submits(), 0, "a failed run was submitted");
    assert_eq!(
        log.matches("does not say the run succeeded").count(),
        1,
        "said once, not every scan: {log}"
    );
    assert!(
        log.contains("reason=\"content_failed\"") || log.contains("reason=content_failed"),
        "{log}"
    );
    let held = b
        .daemon
        .settling
        .held
        .get(OsStr::new(name))
        .expect("held, for status");
    assert_eq!(held.code(), "content_failed");
    // The same run with a successful status (NovaSeq X words), its copy complete, is submitted.
    let ok = "20250102_LH00123_0008_B22XXXXXX";
    run_folder(
        &b,
        ok,
        &[
            ("RTAComplete.txt", ""),
            ("RunCompletionStatus.xml", RCS_NOVASEQ_X_OK),
            ("CopyComplete.txt", ""),
        ],
    );
    b.run_for(Duration::from_secs(10));
    assert_eq!(b.submits(), 1);
    assert_eq!(b.latest(ok).state, GenState::Submitted);
}

const RCS_NOVASEQ_X_OK: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<RunCompletionStatus>\n  <RunStatus>RunCompleted</RunStatus>\n</RunCompletionStatus>\n";

#[test]
fn a_miseq_run_is_submitted_on_rta_complete_with_illumina_rta_and_waits_with_illumina() {
    // MiSeq writes RTAComplete.txt and RunCompletionStatus.xml, never CopyComplete.txt.
    let files = [
        ("RTAComplete.txt", "RTA 1.18.54\n"),
        ("RunCompletionStatus.xml", RCS_OK),
    ];
    let mut rta = Bench::with_watch(&["ready_preset: illumina-rta"]);
    run_folder(&rta, "250101_M01234_0042_000000000-ABCDE", &files);
    rta.run_for(Duration::from_secs(10));
    assert_eq!(rta.submits(), 1);
    let mut copy = Bench::with_watch(&["ready_preset: illumina"]);
    run_folder(&copy, "250101_M01234_0042_000000000-ABCDE", &files);
    copy.run_for(Duration::from_secs(600));
    assert_eq!(copy.submits(), 0, "`illumina` waits for CopyComplete.txt");
}

#[test]
fn an_ont_run_is_ready_on_its_final_summary_with_a_variable_name() {
    let mut b = Bench::with_watch(&["ready_preset: ont"]);
    let d = b.root.join("PAQ12345_run");
    std::fs::create_dir_all(d.join("fastq_pass")).unwrap();
    std::fs::write(d.join("fastq_pass/reads_0.fastq.gz"), b"x").unwrap();
    std::fs::write(d.join("sequencing_summary_FAQ12345_abcdef.txt"), b"x").unwrap();
    b.run_for(Duration::from_secs(20));
    assert_eq!(b.submits(), 0, "submitted without a final summary");
    std::fs::write(
        d.join("final_summary_FAQ12345_abcdef.txt"),
        b"instrument=MN1\n",
    )
    .unwrap();
    // Unready for a while, it is looked at on its back-off: seen within poll + its cap, then settled.
    b.run_for(SEEN_WITHIN);
    assert_eq!(b.submits(), 1);
}

/// A directory that was not ready is seen ready within poll (5 s) + `unready_backoff_max_sec` (30 s),
/// then two looks settle it.
const SEEN_WITHIN: Duration = Duration::from_secs(5 + 30 + 2);

/// Sets a file's mtime to the bench's wall clock (the bench's clock is not the file system's).
fn touch_at(p: &std::path::Path, wall: Millis) {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(wall as u64);
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_modified(t).unwrap();
}

#[test]
fn rsync_temporaries_hold_a_directory_back_until_the_copy_renames_them() {
    let mut b = Bench::with_watch(&["ready_preset: rsync"]);
    let d = b.ready("run1");
    let tmp = d.join(".reads.fastq.gz.Xy12Ab");
    std::fs::write(&tmp, b"partial").unwrap();
    touch_at(&tmp, b.clock.wall());
    b.run_for(Duration::from_secs(30));
    assert_eq!(b.submits(), 0, "submitted during the copy");
    assert_eq!(
        b.daemon
            .settling
            .held
            .get(OsStr::new("run1"))
            .map(|h| h.code()),
        Some("temporaries")
    );
    std::fs::rename(&tmp, d.join("reads.fastq.gz")).unwrap();
    b.run_for(SEEN_WITHIN);
    assert_eq!(b.submits(), 1);
    assert!(b.daemon.settling.held.is_empty(), "still shown as held");
}

#[test]
fn a_stale_temporary_deep_in_the_tree_still_holds_and_is_said_once_with_how_long() {
    let mut b = Bench::with_watch(&["ready_preset: rsync"]);
    let d = b.ready("run1");
    std::fs::create_dir_all(d.join("Data/L001")).unwrap();
    let tmp = d.join("Data/L001/.s_1.cbcl.mecvPV");
    std::fs::write(&tmp, b"partial").unwrap();
    touch_at(&tmp, b.clock.wall());
    let log = logs_of(|| b.run_for(Duration::from_secs(2 * 3600 + 60)));
    assert_eq!(b.submits(), 0, "submitted a half copy");
    let held = b
        .daemon
        .settling
        .held
        .get(OsStr::new("run1"))
        .expect("held");
    assert_eq!(held.code(), "stale_temporaries");
    // What `status` and `explain` show: the snapshot's reason, with how long.
    let words = held.words();
    assert!(words.contains("held back for 2h"), "{words}");
    assert!(words.contains("Data/L001/.s_1.cbcl.mecvPV"), "{words}");
    assert_eq!(
        log.matches("has not changed for").count(),
        1,
        "one warning, not one per look: {log}"
    );
    assert!(log.contains("event=\"stale_temporaries\"") || log.contains("event=stale_temporaries"));
    assert_eq!(
        b.daemon.settling.told_stale.len(),
        1,
        "counted by the metric"
    );
    // The copy is resumed: the temporary changes again, a live transfer; then renamed at its end.
    touch_at(&tmp, b.clock.wall());
    b.run_for(SEEN_WITHIN);
    assert_eq!(
        b.daemon
            .settling
            .held
            .get(OsStr::new("run1"))
            .map(|h| h.code()),
        Some("temporaries")
    );
    assert!(b.daemon.settling.told_stale.is_empty());
    std::fs::rename(&tmp, d.join("Data/L001/s_1.cbcl")).unwrap();
    b.run_for(SEEN_WITHIN);
    assert_eq!(b.submits(), 1);
}

#[test]
fn told_that_stale_temporaries_do_not_hold_a_directory_is_submitted_past_one() {
    let mut b = Bench::with_watch(&[
        "ready_preset: rsync",
        "stale_temporary_sec: 600",
        "stale_temporaries_block: false",
    ]);
    let d = b.ready("run1");
    let tmp = d.join(".left.behind.Ab12Cd");
    std::fs::write(&tmp, b"partial").unwrap();
    touch_at(&tmp, b.clock.wall());
    let log = logs_of(|| b.run_for(Duration::from_secs(600 + SEEN_WITHIN.as_secs())));
    assert_eq!(b.submits(), 1);
    assert!(log.contains("is no longer held back by it"), "{log}");
}

#[test]
fn an_empty_directory_is_looked_at_on_a_back_off_and_still_seen_within_poll_and_its_cap() {
    let mut b = Bench::new(&[]);
    let d = b.root.join("run1");
    std::fs::create_dir(&d).unwrap();
    // A day without a ready-file: the waits between looks have long reached their cap.
    for _ in 0..24 * 60 {
        b.after(Duration::from_secs(60));
    }
    std::fs::write(d.join("_READY"), b"").unwrap();
    b.run_for(SEEN_WITHIN);
    assert_eq!(
        b.submits(),
        1,
        "not seen within poll + unready_backoff_max_sec"
    );
}

/// An unchanged root is not read again each poll (its stamp is asked for; it is read whole every
/// `LISTING_MAX_AGE`): only the names whose look is due are looked at. Each waiting directory is still
/// seen within poll + its back-off cap, and a new one at the next poll.
#[test]
fn an_unchanged_root_is_not_read_each_poll_and_every_waiting_directory_is_still_seen() {
    let mut b = Bench::new(&[]);
    for i in 0..200 {
        std::fs::create_dir(b.root.join(format!("u{i:03}"))).unwrap();
    }
    // An hour without a ready-file: the waits between looks have reached their cap.
    for _ in 0..60 {
        b.after(Duration::from_secs(60));
    }
    let reads = b.daemon.memory.listing.reads;
    b.run_for(Duration::from_secs(120));
    let read = b.daemon.memory.listing.reads - reads;
    let at_most = 120 / crate::scan::LISTING_MAX_AGE.as_secs() + 1;
    assert!(
        (1..=at_most).contains(&read),
        "the unchanged root was read {read} times in 120 s at poll 5 s (at most {at_most})"
    );
    // Ready-files in waiting directories: the root's listing does not change, their looks find them.
    for i in [0, 77, 199] {
        std::fs::write(b.root.join(format!("u{i:03}/_READY")), b"").unwrap();
    }
    b.run_for(SEEN_WITHIN);
    assert_eq!(b.submits(), 3, "a waiting directory was not seen ready");
    // A new directory changes the root: read at the next poll, and settled by two looks.
    b.ready("new");
    b.run_for(Duration::from_secs(5 + 2));
    assert_eq!(b.submits(), 4, "a new directory waited");
}

#[test]
fn a_copy_beside_a_stable_ready_file_is_held_back_until_quiet_sec_after_it_stops() {
    let mut b = Bench::with_watch(&["quiet_sec: 60"]);
    let d = b.ready("run1");
    let data = d.join("data.bin");
    // The copy goes on for two minutes beside an unchanged `_READY`: one more block every 10 s.
    for i in 0..12 {
        std::fs::write(&data, vec![b'x'; 100 * (i + 1)]).unwrap();
        b.run_for(Duration::from_secs(10));
        assert_eq!(b.submits(), 0, "submitted while the copy went on ({i})");
    }
    // It stopped: not before quiet_sec has passed.
    b.run_for(Duration::from_secs(50));
    assert_eq!(b.submits(), 0, "submitted before quiet_sec");
    b.run_for(Duration::from_secs(15));
    assert_eq!(b.submits(), 1);
}

#[test]
fn without_quiet_sec_a_copy_beside_the_ready_file_is_the_seeds_behaviour() {
    // The default: only the ready-file's own stability (documented; `quiet_sec` is the opt-in).
    let mut b = Bench::new(&[]);
    let d = b.ready("run1");
    b.cycle();
    std::fs::write(d.join("data.bin"), b"more payload").unwrap();
    b.after(SEC);
    assert_eq!(b.submits(), 1);
}

/// `behavior.instance` names every metric and log line from the start: a reload that changes it keeps
/// the old name and says so, instead of relabelling half of the series.
#[test]
fn a_reload_keeps_the_instance_name_and_says_it_takes_a_restart() {
    let mut b = Bench::new(&["instance: cryo"]);
    b.cycle();
    std::fs::write(
        &b.config,
        config_text(&b.root, b._tmp.path(), 5, &["instance: tomo"]),
    )
    .unwrap();
    let log = logs_of(|| b.daemon.reload());
    assert!(
        log.contains("`behavior.instance` changed from `cryo` to `tomo`: that takes a restart"),
        "{log}"
    );
    assert_eq!(
        b.daemon.cfg.behavior.instance.as_ref().map(|n| n.as_str()),
        Some("cryo")
    );
    let metrics = b.daemon.observers.metrics.render();
    assert!(
        metrics.contains("dirwatcher_instance=\"cryo\""),
        "{metrics}"
    );
    assert!(!metrics.contains("tomo"), "{metrics}");
}

#[test]
fn jobs_in_flight_are_followed_from_memory_and_only_the_one_that_ended_is_recorded() {
    let mut b = Bench::new(&[]);
    for n in 0..1000 {
        b.ready(&format!("run{n:04}"));
    }
    b.settle();
    assert_eq!(b.submits(), 1000);
    let ids: Vec<String> = (1001..=2000).map(|n| n.to_string()).collect();
    let running = |except: &str| -> Vec<(String, &'static str)> {
        ids.iter()
            .filter(|i| *i != except)
            .map(|i| (i.clone(), "RUNNING"))
            .collect()
    };
    let loads = b.daemon.memory.flight.loads();
    for _ in 0..3 {
        let states = running("");
        let states: Vec<(&str, &str)> = states.iter().map(|(i, s)| (i.as_str(), *s)).collect();
        b.fake.on_query_states(&states);
        b.after(Duration::from_secs(5));
        assert_eq!(b.last_query().len(), 1000);
    }
    assert_eq!(
        b.daemon.memory.flight.loads(),
        loads,
        "a quiet cycle read every active record again"
    );
    let mut states = running("1500");
    states.push(("1500".into(), "COMPLETED"));
    let states: Vec<(&str, &str)> = states.iter().map(|(i, s)| (i.as_str(), *s)).collect();
    b.fake.on_query_states(&states);
    b.after(Duration::from_secs(5));
    assert_eq!(b.latest("run0499").state, GenState::Completed);
    assert_eq!(b.latest("run0498").state, GenState::Submitted);
    b.after(Duration::from_secs(5));
    let asked = b.last_query();
    assert_eq!(asked.len(), 999);
    assert!(
        !asked.contains(&"1500".to_string()),
        "an ended job is still asked about"
    );
    assert_eq!(b.daemon.memory.flight.loads(), loads);
}

#[test]
fn a_job_cancelled_by_the_cli_leaves_the_daemons_memory_at_the_next_cycle() {
    let mut b = Bench::new(&[]);
    b.ready("run1");
    let dir2 = b.ready("run2");
    b.settle();
    b.after(Duration::from_secs(5));
    assert_eq!(b.last_query(), ["1001", "1002"]);
    let cfg = b.daemon.cfg.clone();
    crate::ops::cancel_with(&cfg, &mut b.fake.clone(), std::slice::from_ref(&dir2)).unwrap();
    b.after(Duration::from_secs(5));
    assert_eq!(
        b.last_query(),
        ["1001"],
        "the daemon kept following a job the CLI recorded as cancelled"
    );
    assert_eq!(b.latest("run2").state, GenState::Failed);
    assert_eq!(b.submits(), 2);
}

#[test]
fn a_restarted_daemon_follows_the_jobs_in_flight_and_submits_none_again() {
    let mut b = Bench::new(&[]);
    b.ready("run1");
    b.ready("run2");
    b.settle();
    b.restart();
    b.fake
        .on_query_states(&[("1001", "RUNNING"), ("1002", "COMPLETED")]);
    b.after(Duration::from_secs(5));
    assert_eq!(b.last_query(), ["1001", "1002"]);
    assert_eq!(b.latest("run2").state, GenState::Completed);
    b.run_for(Duration::from_secs(20));
    assert_eq!(b.last_query(), ["1001"]);
    assert_eq!(b.submits(), 2, "a restart submitted a directory again");
}

/// An operator's `cancel` is committed before its job is signalled: when the daemon sees the job end
/// `CANCELLED` before the command records it, the end is still the operator's — recorded as `CANCELLED by
/// operator NAME`, told once as `cancelled` with the name, never as a failure, and nothing is retried.
/// Without the request, the same end is a failure like any other.
#[test]
fn a_cancel_the_daemon_sees_first_is_still_the_operators() {
    let mut b = hook_bench(&["max_retries: 2"], &["events: [failed, cancelled]"]);
    b.ready("asked");
    b.ready("other");
    b.settle();
    let asked = b.latest("asked");
    let other = b.latest("other");
    assert!(
        b.daemon
            .ledger
            .request_cancel(asked.id, "alice (as root)", 0)
            .unwrap()
    );
    b.fake.on_query_states(&[
        (asked.job_id.as_deref().unwrap(), "CANCELLED by 0"),
        (other.job_id.as_deref().unwrap(), "CANCELLED by 0"),
    ]);
    b.run_for(Duration::from_secs(10));
    let g = b.latest("asked");
    assert_eq!(g.id, asked.id, "no retry of an operator's cancel");
    assert_eq!(
        g.final_state.as_deref(),
        Some("CANCELLED by operator alice (as root)")
    );
    let told = b.told();
    let of = |dir: &str| -> Vec<serde_json::Value> {
        told.iter()
            .filter(|e| e["dir"].as_str().is_some_and(|d| d.ends_with(dir)))
            .cloned()
            .collect()
    };
    let asked_told = of("/asked");
    assert_eq!(asked_told.len(), 1, "{told:?}");
    assert_eq!(asked_told[0]["event"], "cancelled");
    assert_eq!(asked_told[0]["by"], "alice (as root)");
    // Cancelled by someone else (no request): a failure, retried as the config says.
    let other_told = of("/other");
    assert_eq!(other_told.len(), 1, "{told:?}");
    assert_eq!(other_told[0]["event"], "failed");
    assert_eq!(b.history("other").len(), 2, "the failure is retried");
}

/// Rows for the web app's database queued while a `db:` section was there, and found after it was removed:
/// nowhere to go, so each is given up at its first try instead of waiting out its attempts behind the others.
#[test]
fn database_rows_left_without_a_db_section_are_given_up_at_once() {
    use crate::engine::notice::{Channel, EventKind};
    use crate::ledger::NewNotice;
    let mut b = hook_bench(&[], &["events: [completed]"]);
    let row = NewNotice {
        event: EventKind::Submitted,
        channel: Channel::Database,
        target: "",
        payload: "{}",
    };
    b.daemon
        .ledger
        .queue_notices(None, &[row.clone(), row], 0)
        .unwrap();
    b.run_for(Duration::from_secs(5));
    let c = b.daemon.ledger.notice_counts().unwrap();
    assert_eq!((c.pending, c.given_up), (0, 2), "{c:?}");
}

/// Bursts as job arrays (`job.array_max`): the first attempts due in one cycle go as arrays of up to
/// `array_max`, about even in size (an odd one left over with `array_max: 2` goes alone), each directory
/// recorded with its task's job id and followed by it; one that fails is retried alone, as a single job.
#[test]
fn a_burst_goes_as_even_arrays_and_a_retry_goes_alone() {
    let mut b = Bench::with(&[], &["array_max: 2"], &["max_retries: 1"]);
    for n in ["a", "b", "c", "d", "e"] {
        b.ready(n);
    }
    b.settle();
    let arrays: Vec<Vec<String>> = b
        .fake
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::SubmitArray { dirs, .. } => Some(dirs),
            _ => None,
        })
        .collect();
    assert_eq!(
        arrays,
        [vec!["a", "b"], vec!["c", "d"]],
        "{:?}",
        b.fake.calls()
    );
    assert_eq!(b.submits(), 1, "the one left over goes alone");
    let (a, d) = (b.latest("a"), b.latest("d"));
    assert_eq!(a.job_id.as_deref(), Some("1001_0"));
    assert_eq!(d.job_id.as_deref(), Some("1002_1"));
    let task = d.array.clone().unwrap();
    assert_eq!(task.task, 1);
    assert_eq!(d.scheduler_key(), task.key);
    assert_ne!(
        a.scheduler_key(),
        d.scheduler_key(),
        "each array its own key"
    );
    assert_eq!(b.latest("e").array, None);
    // Task 1 of the first array fails; the others complete: the failed one is retried alone.
    b.fake.on_query_states(&[
        ("1001_0", "COMPLETED"),
        ("1001_1", "FAILED"),
        ("1002_0", "COMPLETED"),
        ("1002_1", "COMPLETED"),
        ("1003", "COMPLETED"),
    ]);
    b.after(Duration::from_secs(5));
    assert_eq!(b.history("a").len(), 1);
    assert_eq!(b.latest("a").state, GenState::Completed);
    b.run_for(Duration::from_secs(30));
    let retried = b.latest("b");
    assert_eq!(retried.attempt, 2, "{retried:?}");
    assert_eq!(retried.array, None, "a retry goes alone");
    assert!(
        b.fake
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Submit { job_name, .. } if job_name.ends_with("-b"))),
        "{:?}",
        b.fake.calls()
    );
}

/// An array's `sbatch` answer is lost: its key is looked up once for all its tasks, and each directory is
/// adopted as its task of the array found; nothing is submitted again.
#[test]
fn a_lost_array_answer_is_looked_up_once_and_each_task_adopted() {
    let mut b = Bench::with(&[], &["array_max: 10"], &[]);
    b.fake
        .on_submit(Err(SubmitError::Uncertain(
            "sbatch timed out after 10s".into(),
        )))
        .on_lookup(Ok(Some("4242".into())));
    for n in ["a", "b", "c"] {
        b.ready(n);
    }
    b.settle();
    assert!(["a", "b", "c"].iter().all(|n| b.latest(n).uncertain));
    b.after(Duration::from_secs(5));
    assert_eq!(b.lookups(), 1, "one lookup for the array");
    for (n, want) in [("a", "4242_0"), ("b", "4242_1"), ("c", "4242_2")] {
        let g = b.latest(n);
        assert_eq!(
            (g.state, g.job_id.as_deref()),
            (GenState::Submitted, Some(want))
        );
    }
    b.run_for(Duration::from_secs(120));
    let arrays = b.fake.count(|c| matches!(c, Call::SubmitArray { .. }));
    assert_eq!((arrays, b.submits()), (1, 0), "submitted again");
}
