//! A corpus of instrument output through the real binary (local executor): Illumina run folders as
//! NovaSeq X, NovaSeq 6000, NextSeq 2000, NextSeq 550, HiSeq and MiSeq write them (markers and
//! `RunCompletionStatus.xml` in each family's words, successful and failed), and MinKNOW's nested layout.
//! Each folder is submitted, held or left waiting exactly as docs/instruments.md says, and `explain`
//! says which rule, which file, since when and what would release it. No sleeps: the tests wait for the
//! daemon's own scans (its snapshot) or for the ledger, with deadlines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::harness::*;
use crate::readiness::{explain, says, scans};

const DEADLINE: Duration = Duration::from_secs(30);

/// NovaSeq X (RTA4), successful: the shape of miso-lims/runscanner's test fixture
/// `20240531_LH00130_0061_A22CC55LT4/RunCompletionStatus.xml`.
const RCS_NOVASEQ_X_OK: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
<RunCompletionStatus xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\n\
  <RunStartTime>2024-05-31T17:52:16.9253395-04:00</RunStartTime>\n\
  <RunEndTime>2024-06-02T11:51:29.3393731-04:00</RunEndTime>\n\
  <CompletedReads>\n    <Read ReadName=\"Read1\" Cycles=\"151\" />\n  </CompletedReads>\n\
  <RunStatus>RunCompleted</RunStatus>\n</RunCompletionStatus>\n";
/// NovaSeq X, failed: runscanner reads `RunErrored` as a failed run.
const RCS_NOVASEQ_X_ERRORED: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
<RunCompletionStatus>\n  <RunStartTime>2024-06-01T09:00:00-04:00</RunStartTime>\n\
  <RunStatus>RunErrored</RunStatus>\n</RunCompletionStatus>\n";
/// NextSeq 500/550: the shape of runscanner's fixture `170609_NB551051_0017_AHLFFJBGX2`.
const RCS_NEXTSEQ_OK: &str = "<?xml version=\"1.0\"?>\n<RunCompletionStatus>\n  <Version>1</Version>\n\
  <CompletionStatus>CompletedAsPlanned</CompletionStatus>\n  <RunId>170609_NB551051_0017_AHLFFJBGX2</RunId>\n\
  <ErrorDescription>None</ErrorDescription>\n</RunCompletionStatus>\n";
/// MiSeq, successful (`SuccessfullyCompleted`, as MiSeq pipelines grep for it).
const RCS_MISEQ_OK: &str = "<?xml version=\"1.0\"?>\n<RunCompletionStatus>\n\
  <CompletionStatus>SuccessfullyCompleted</CompletionStatus>\n</RunCompletionStatus>\n";
/// MiSeq, stopped: any word that is not one of success holds the run.
const RCS_MISEQ_STOPPED: &str = "<?xml version=\"1.0\"?>\n<RunCompletionStatus>\n\
  <CompletionStatus>ExceptionEndedEarly</CompletionStatus>\n\
  <ErrorDescription>Run stopped by user</ErrorDescription>\n</RunCompletionStatus>\n";

/// An Illumina run folder: base calls, InterOp, RunInfo/RunParameters, and `files` (name, text).
fn illumina(root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = root.join(name);
    let c = d.join("Data/Intensities/BaseCalls/L001/C1.1");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("L001_1.cbcl"), vec![7u8; 2048]).unwrap();
    std::fs::create_dir_all(d.join("InterOp")).unwrap();
    std::fs::write(d.join("InterOp/QMetricsOut.bin"), b"interop").unwrap();
    std::fs::write(d.join("RunInfo.xml"), "<RunInfo Version=\"6\"/>\n").unwrap();
    std::fs::write(d.join("RunParameters.xml"), "<RunParameters/>\n").unwrap();
    for (f, text) in files {
        std::fs::write(d.join(f), text).unwrap();
    }
    d
}

/// The daemon's status line for `dir`, when it shows one.
fn waiting(env: &TestEnv, dir: &str) -> Option<Value> {
    env.status()["waiting"]
        .as_array()?
        .iter()
        .find(|w| w["dir"].as_str().is_some_and(|d| d.ends_with(dir)))
        .cloned()
}

/// What `explain` says of the readiness rules for `dir`: (ok, words).
fn rules_say(env: &TestEnv, dir: &str) -> (bool, String) {
    says(&explain(env, dir), "ready_rules")
}

#[test]
fn illumina_run_folders_of_each_family_are_submitted_held_or_waiting_as_documented() {
    let env = TestEnv::local("illumina-corpus")
        .job("wrap_cmd: \"true\"")
        .watch("ready_preset: illumina");
    let r = &env.root;
    let x_ok = illumina(
        r,
        "20240531_LH00130_0061_A22CC55LT4",
        &[
            ("RunCompletionStatus.xml", RCS_NOVASEQ_X_OK),
            ("CopyComplete.txt", ""),
        ],
    );
    let x_failed = illumina(
        r,
        "20240601_LH00130_0062_B22CC55LT4",
        &[
            ("RunCompletionStatus.xml", RCS_NOVASEQ_X_ERRORED),
            ("CopyComplete.txt", ""),
        ],
    );
    // NovaSeq 6000 mid-copy: RTAComplete.txt, the copy still going (CopyComplete.txt came 93 min later in
    // EdinburghGenomics/illuminatus doc/CopyComplete.txt).
    let n6000 = illumina(
        r,
        "240722_A00291_0576_AHVHL5DMXY",
        &[("RTAComplete.txt", "RTA 3.4.4\n")],
    );
    // NextSeq 2000: RTAComplete.txt at 00:44, RunCompletionStatus.xml and CopyComplete.txt at 03:01.
    let n2000 = illumina(
        r,
        "230710_VH00464_302_AACJ3MWM5",
        &[
            ("RTAComplete.txt", "\n"),
            ("RunCompletionStatus.xml", RCS_NEXTSEQ_OK),
        ],
    );
    // A MiSeq under `illumina`: it never writes CopyComplete.txt.
    let miseq = illumina(
        r,
        "250101_M01234_0042_000000000-ABCDE",
        &[
            ("RTAComplete.txt", ""),
            ("RunCompletionStatus.xml", RCS_MISEQ_OK),
        ],
    );
    let d = env.start();

    let g = env.wait_final(&x_ok, DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    scans(&env, 4);
    for (run, what) in [
        (&x_failed, "a failed NovaSeq X run"),
        (&n6000, "a NovaSeq 6000 run before CopyComplete.txt"),
        (
            &n2000,
            "a NextSeq 2000 run with RunCompletionStatus.xml but no CopyComplete.txt",
        ),
        (&miseq, "a MiSeq run under `illumina`"),
    ] {
        assert!(env.history(run).is_empty(), "{what} was submitted");
    }

    // The failed run: held, said, shown, and explained with its file, word, time and release.
    d.wait_log("it says `RunErrored`", DEADLINE);
    let held = waiting(&env, "B22CC55LT4").expect("the failed run in status");
    assert_eq!(held["state"], "held", "{held}");
    assert!(
        held["reason"].as_str().unwrap().contains("RunErrored"),
        "{held}"
    );
    let (ok, words) = rules_say(&env, "20240601_LH00130_0062_B22CC55LT4");
    assert!(!ok, "{words}");
    for part in [
        "`RunCompletionStatus.xml`",
        "it says `RunErrored`",
        " since ",
        "replaced by one that says it succeeded",
    ] {
        assert!(words.contains(part), "no {part:?} in: {words}");
    }

    // Waiting for CopyComplete.txt: which file, and what releases it.
    let (ok, words) = rules_say(&env, "240722_A00291_0576_AHVHL5DMXY");
    assert!(
        !ok && words.contains("waiting for `CopyComplete.txt`"),
        "{words}"
    );
    assert!(
        words.contains("illumina-rta"),
        "the MiSeq way out is named: {words}"
    );
    let (_, words) = rules_say(&env, "250101_M01234_0042_000000000-ABCDE");
    assert!(words.contains("`ready_preset: illumina-rta`"), "{words}");

    // The copies end: both are submitted.
    std::fs::write(n6000.join("CopyComplete.txt"), "").unwrap();
    std::fs::write(n2000.join("CopyComplete.txt"), "").unwrap();
    for run in [&n6000, &n2000] {
        let g = env.wait_final(run, DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    }
    scans(&env, 2);
    assert!(
        env.history(&x_failed).is_empty(),
        "the failed run went through"
    );
    assert!(env.history(&miseq).is_empty());
}

#[test]
fn rta_complete_only_instruments_are_submitted_on_rta_complete_and_a_stopped_run_is_held() {
    let env = TestEnv::local("illumina-rta-corpus")
        .job("wrap_cmd: \"true\"")
        .watch("ready_preset: illumina-rta");
    let r = &env.root;
    let miseq_ok = illumina(
        r,
        "250101_M01234_0042_000000000-ABCDE",
        &[
            ("RTAComplete.txt", "RTA 1.18.54\n"),
            ("RunCompletionStatus.xml", RCS_MISEQ_OK),
        ],
    );
    let miseq_stopped = illumina(
        r,
        "250102_M01234_0043_000000000-FGHIJ",
        &[
            ("RTAComplete.txt", "RTA 1.18.54\n"),
            ("RunCompletionStatus.xml", RCS_MISEQ_STOPPED),
        ],
    );
    let miseq_running = illumina(r, "250103_M01234_0044_000000000-KLMNO", &[]);
    let nextseq = illumina(
        r,
        "170609_NB551051_0017_AHLFFJBGX2",
        &[
            (
                "RTAComplete.txt",
                "RTA 2.4.11 completed on 6/10/2017 2:09:31 PM\n",
            ),
            ("RunCompletionStatus.xml", RCS_NEXTSEQ_OK),
        ],
    );
    // HiSeq 2500: RTAComplete.txt and no status file.
    let hiseq = illumina(
        r,
        "140923_SN7001179_0208_BC59Y4ACXX",
        &[("RTAComplete.txt", "RTA 1.18.64\n")],
    );
    let _d = env.start();
    for run in [&miseq_ok, &nextseq, &hiseq] {
        let g = env.wait_final(run, DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{run:?}");
    }
    scans(&env, 3);
    assert!(
        env.history(&miseq_stopped).is_empty(),
        "a stopped run was submitted"
    );
    assert!(
        env.history(&miseq_running).is_empty(),
        "a running run was submitted"
    );
    let held = waiting(&env, "000000000-FGHIJ").expect("the stopped run in status");
    assert_eq!(held["state"], "held", "{held}");
    let (_, words) = rules_say(&env, "250102_M01234_0043_000000000-FGHIJ");
    assert!(words.contains("it says `ExceptionEndedEarly`"), "{words}");
    let (_, words) = rules_say(&env, "250103_M01234_0044_000000000-KLMNO");
    assert!(words.contains("waiting for `RTAComplete.txt`"), "{words}");
}

/// A MinKNOW run folder (nanoporetech.github.io/ont-output-specifications, minknow/output_structure):
/// `pod5/`, `fastq_pass/`, the sequencing summary, and with `done` its final summary.
fn minknow_run(dir: &Path, flow_cell: &str, run: &str, done: bool) {
    std::fs::create_dir_all(dir.join("pod5")).unwrap();
    std::fs::write(dir.join(format!("pod5/{flow_cell}_{run}_0.pod5")), b"pod5").unwrap();
    std::fs::create_dir_all(dir.join("fastq_pass")).unwrap();
    std::fs::write(
        dir.join(format!("fastq_pass/{flow_cell}_pass_{run}_0.fastq.gz")),
        b"@r\nA\n+\nI\n",
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("sample_sheet_{flow_cell}_{run}.csv")),
        b"x",
    )
    .unwrap();
    if done {
        std::fs::write(
            dir.join(format!("final_summary_{flow_cell}_{run}_1a2b3c4d.txt")),
            format!("instrument=P2S-01234\nflow_cell_id={flow_cell}\nacquisition_stopped=2025-06-03T18:00:00Z\n"),
        )
        .unwrap();
    }
}

#[test]
fn minknow_experiments_samples_and_runs_are_ready_when_every_run_below_has_ended() {
    let env = TestEnv::local("ont-corpus")
        .job("wrap_cmd: \"true\"")
        .watch("ready_preset: ont");
    let r = &env.root;
    // An experiment (protocol group) of two samples, every run ended.
    let done = r.join("exp_done");
    minknow_run(
        &done.join("sampleA/20250603_1201_3E_PAA12345_e05460c6"),
        "PAA12345",
        "e05460c6",
        true,
    );
    minknow_run(
        &done.join("sampleB/20250603_1202_3F_PAA67890_0a1b2c3d"),
        "PAA67890",
        "0a1b2c3d",
        true,
    );
    // A hidden folder beside the samples is no sample.
    std::fs::create_dir_all(done.join(".Trash-1000/old")).unwrap();
    // An experiment with a second flow cell still running.
    let half = r.join("exp_half");
    minknow_run(
        &half.join("s1/20250604_0900_1A_PAB11111_11111111"),
        "PAB11111",
        "11111111",
        true,
    );
    let run_b = half.join("s1/20250604_1300_1B_PAB22222_22222222");
    minknow_run(&run_b, "PAB22222", "22222222", false);
    // A run folder whose final summary is reached only through a symlink: never followed.
    let outside = env.tmp.path().join("outside_run");
    minknow_run(&outside, "PAC33333", "33333333", true);
    let linked = r.join("exp_linked/s1");
    std::fs::create_dir_all(&linked).unwrap();
    std::os::unix::fs::symlink(&outside, linked.join("20250605_0800_2A_PAC33333_33333333"))
        .unwrap();
    // The old layout: a run folder directly in the root.
    let run_dir = r.join("20250606_1000_MN12345_FAQ12345_abcdef12");
    minknow_run(&run_dir, "FAQ12345", "abcdef12", true);

    let _d = env.start();
    for dir in [&done, &run_dir] {
        let g = env.wait_final(dir, DEADLINE);
        assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{dir:?}");
    }
    scans(&env, 4);
    assert!(
        env.history(&half).is_empty(),
        "submitted while a run was going"
    );
    assert!(
        env.history(&r.join("exp_linked")).is_empty(),
        "followed a symlink"
    );
    let (ok, words) = rules_say(&env, "exp_half");
    assert!(!ok, "{words}");
    assert!(
        words.contains("`s1/20250604_1300_1B_PAB22222_22222222/final_summary_*.txt`"),
        "the run still going is named: {words}"
    );
    let (_, words) = rules_say(&env, "exp_linked");
    assert!(words.contains("waiting for"), "{words}");

    std::fs::write(
        run_b.join("final_summary_PAB22222_22222222_1a2b3c4d.txt"),
        "instrument=P2S-01234\n",
    )
    .unwrap();
    let g = env.wait_final(&half, DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
}
