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
use crate::scheduler::fake::{Call, Fake};
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
    let mut y = format!(
        "watch:\n  root: {root:?}\n  poll_interval_sec: {poll}\n  stability_checks: 2\n  stability_interval_sec: 1\n\
         job:\n  wrap_cmd: \"true\"\n  command_timeout_sec: 10\n\
         behavior:\n  state_file: {:?}\n  failure_log: {:?}\n",
        dir.join("state.db"),
        dir.join("failed.log"),
    );
    for line in behavior {
        y.push_str(&format!("  {line}\n"));
    }
    y
}

impl Bench {
    /// Poll every 5 s, 2 stability checks 1 s apart, back-off from 5 s; `behavior` adds lines to `behavior:`.
    fn new(behavior: &[&str]) -> Bench {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let config = tmp.path().join("config.yaml");
        std::fs::write(&config, config_text(&root, tmp.path(), 5, behavior)).unwrap();
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

#[test]
fn a_failed_job_gets_one_failure_log_line_and_keeps_its_directory() {
    let mut b = Bench::new(&["delete_on_success: true"]);
    let dir = b.ready("run1");
    b.settle();
    b.fake.on_query(Ok([(
        "1001".to_string(),
        crate::engine::JobReport {
            state: "FAILED".into(),
            exit_code: "3:0".into(),
        },
    )]
    .into()));
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
