//! Readiness rules through the real binary with the local executor, on realistic trees: an Illumina run
//! folder whose `CopyComplete.txt` arrives after `RTAComplete.txt`, a failed `RunCompletionStatus.xml`, an
//! ONT folder with its `final_summary_*.txt`, a real rsync copy in progress, and a copy that goes on beside
//! a stable `_READY` with `quiet_sec`. No sleeps as synchronisation: the tests wait for the daemon's own
//! snapshot to show it scanned again (or for the ledger), with deadlines.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// The daemon's snapshot (`<state_file>.status.json`), once it exists.
pub(crate) fn snapshot(env: &TestEnv) -> Option<Value> {
    let mut p = env.state_file().into_os_string();
    p.push(".status.json");
    let text = std::fs::read_to_string(p).ok()?;
    serde_json::from_str(&text).ok()
}

/// Waits until the daemon has finished `n` more scans than now (its snapshot's `last_poll_at` moved `n`
/// times): whatever it was going to do with the tree as it is, it has done.
pub(crate) fn scans(env: &TestEnv, n: usize) {
    let mut last = None;
    let mut seen = 0;
    wait_for(DEADLINE, &format!("{n} scans of the daemon"), || {
        let at = snapshot(env).and_then(|s| s["last_poll_at"].as_i64());
        if at.is_some() && at != last {
            if last.is_some() {
                seen += 1;
            }
            last = at;
        }
        (seen >= n).then_some(())
    });
}

pub(crate) fn explain(env: &TestEnv, dir: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_dirwatcher"))
        .args(["explain", "--json", "--config"])
        .arg(env.config_path())
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "explain: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all[0].clone()
}

/// The words of one check of an explanation.
pub(crate) fn says(e: &Value, check: &str) -> (bool, String) {
    let c = e["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no `{check}` in {e:#}"));
    (
        c["ok"].as_bool().unwrap(),
        c["says"].as_str().unwrap().into(),
    )
}

/// An Illumina run folder in the middle of its copy: RTA done, data there, no CopyComplete.txt yet.
fn illumina_run(root: &Path, name: &str) -> std::path::PathBuf {
    let d = root.join(name);
    for lane in ["L001", "L002"] {
        let c = d.join("Data/Intensities/BaseCalls").join(lane);
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("s_1_1101.cbcl"), vec![7u8; 4096]).unwrap();
    }
    std::fs::create_dir_all(d.join("InterOp")).unwrap();
    std::fs::write(d.join("InterOp/QMetricsOut.bin"), b"interop").unwrap();
    std::fs::write(d.join("RunInfo.xml"), "<RunInfo Version=\"6\"/>\n").unwrap();
    std::fs::write(d.join("RunParameters.xml"), "<RunParameters/>\n").unwrap();
    std::fs::write(d.join("RTAComplete.txt"), "RTA 3.4.4\n").unwrap();
    d
}

#[test]
fn illumina_copy_complete_arriving_after_rta_complete_is_waited_for() {
    let env = TestEnv::local("illumina")
        .job("wrap_cmd: \"true\"")
        .watch("ready_preset: illumina");
    let run = illumina_run(&env.root, "250101_VH00123_42_AAAXXXXM5");
    let _d = env.start();
    scans(&env, 5);
    assert!(
        env.history(&run).is_empty(),
        "submitted on RTAComplete.txt alone"
    );
    let e = explain(&env, "250101_VH00123_42_AAAXXXXM5");
    let (ok, words) = says(&e, "ready_rules");
    assert!(!ok && words.contains("`CopyComplete.txt`"), "{words}");
    std::fs::write(run.join("CopyComplete.txt"), "").unwrap();
    let g = env.wait_final(&run, DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    assert_eq!(env.history(&run).len(), 1);
}

#[test]
fn a_failed_run_completion_status_is_not_submitted_and_explain_and_status_say_why() {
    let told = tempfile::NamedTempFile::new().unwrap();
    let env = TestEnv::local("rcsfail")
        .job("wrap_cmd: \"true\"")
        .watch("ready_preset: illumina")
        .notify(&format!(
            "command: [\"sh\", \"-c\", \"cat >> {0}; echo >> {0}\"]",
            told.path().display()
        ));
    let run = illumina_run(&env.root, "20250101_LH00123_0007_A22XXXXXX");
    std::fs::write(run.join("CopyComplete.txt"), "").unwrap();
    std::fs::write(
        run.join("RunCompletionStatus.xml"),
        "<?xml version=\"1.0\"?>\n<RunCompletionStatus>\n  <CompletionStatus>ExceptionEndedEarly</CompletionStatus>\n\
         \x20 <ErrorDescription>Run stopped by user</ErrorDescription>\n</RunCompletionStatus>\n",
    )
    .unwrap();
    let d = env.start();
    scans(&env, 5);
    assert!(env.history(&run).is_empty(), "a failed run was submitted");
    d.wait_log("does not say the run succeeded", DEADLINE);
    let e = explain(&env, "20250101_LH00123_0007_A22XXXXXX");
    let (ok, words) = says(&e, "ready_rules");
    assert!(!ok && words.contains("RunCompletionStatus.xml"), "{words}");
    let status = env.status();
    let held = status["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["dir"].as_str().unwrap().ends_with("A22XXXXXX"))
        .unwrap_or_else(|| panic!("not in status: {status:#}"));
    assert_eq!(held["state"], "held", "{held}");
    assert!(
        held["reason"]
            .as_str()
            .unwrap()
            .contains("does not say the run succeeded"),
        "{held}"
    );
    // Its people are told, once (`held` is one of the default events).
    let events = |t: &str| -> Vec<serde_json::Value> {
        t.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let e = wait_for(DEADLINE, "the held notice", || {
        events(&std::fs::read_to_string(told.path()).unwrap_or_default())
            .into_iter()
            .next()
    });
    assert_eq!(e["event"], "held", "{e}");
    assert_eq!(e["dir"], run.to_string_lossy().as_ref(), "{e}");
    assert!(
        e["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("RunCompletionStatus.xml"),
        "{e}"
    );
    scans(&env, 3);
    let all = events(&std::fs::read_to_string(told.path()).unwrap());
    assert_eq!(all.len(), 1, "told again on a later scan: {all:?}");
}

#[test]
fn an_ont_run_is_submitted_on_final_summary() {
    let env = TestEnv::local("ont")
        .job("wrap_cmd: \"true\"")
        .watch("ready_preset: ont");
    let run = env.root.join("20250101_1200_MN12345_FAQ12345_abcdef12");
    std::fs::create_dir_all(run.join("fastq_pass/barcode01")).unwrap();
    std::fs::write(
        run.join("fastq_pass/barcode01/FAQ12345_pass_0.fastq.gz"),
        b"x",
    )
    .unwrap();
    std::fs::write(run.join("sequencing_summary_FAQ12345_abcdef12.txt"), b"x").unwrap();
    let _d = env.start();
    scans(&env, 4);
    assert!(
        env.history(&run).is_empty(),
        "submitted without a final summary"
    );
    std::fs::write(
        run.join("final_summary_FAQ12345_abcdef.txt"),
        "instrument=MN12345\nflow_cell_id=FAQ12345\n",
    )
    .unwrap();
    let g = env.wait_final(&run, DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
}

#[test]
fn a_real_rsync_copy_in_progress_is_held_back_until_it_ends() {
    let env = TestEnv::local("rsync")
        .job("wrap_cmd: \"true\"")
        .watch("ready_preset: rsync");
    let src = env.tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("reads.fastq.gz"), vec![b'A'; 1 << 20]).unwrap();
    // Marked ready before the data is there (a script that writes `_READY` first).
    let dest = env.root.join("run1");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("_READY"), "").unwrap();
    let _d = env.start();
    // 1 MiB at 256 KiB/s: about 4 s, during which rsync's `.reads.fastq.gz.XXXXXX` is there.
    let mut rsync = Command::new("rsync")
        .args(["-a", "--bwlimit=256"])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dest.display()))
        .spawn()
        .unwrap();
    wait_for(DEADLINE, "rsync's temporary file", || {
        std::fs::read_dir(&dest)
            .unwrap()
            .filter_map(Result::ok)
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".reads.fastq.gz.")
            })
            .map(|_| ())
    });
    let status = rsync.wait().unwrap();
    let done = dirwatcher::time::wall_now();
    assert!(status.success());
    let g = env.wait_final(&dest, DEADLINE);
    assert!(
        g.created_at >= done - 50,
        "submitted during the copy: intent at {}, rsync ended at {done}",
        g.created_at
    );
    assert_eq!(
        std::fs::metadata(dest.join("reads.fastq.gz"))
            .unwrap()
            .len(),
        1 << 20
    );
}

#[test]
fn a_copy_beside_a_stable_ready_file_holds_it_back_for_quiet_sec_after_it_stops() {
    let env = TestEnv::local("quiet")
        .job("wrap_cmd: \"true\"")
        .watch("quiet_sec: 1.5");
    let dir = env.ready_dir("run1");
    let _d = env.start();
    // A copy that goes on for 3 s beside the unchanged `_READY`.
    let data = dir.join("data.txt");
    let start = Instant::now();
    let mut size = 0;
    let mut last_write = dirwatcher::time::wall_now();
    while start.elapsed() < Duration::from_secs(3) {
        size += 512;
        std::fs::write(&data, vec![b'x'; size]).unwrap();
        last_write = dirwatcher::time::wall_now();
        assert!(
            env.history(&dir).is_empty(),
            "submitted while the copy went on"
        );
        // The writer's own pace, not a synchronisation: a copy writes a block now and then.
        std::thread::sleep(Duration::from_millis(200));
    }
    let g = env.wait_final(&dir, DEADLINE);
    assert!(
        g.created_at >= last_write + 1500,
        "submitted {} ms after the last write, before quiet_sec (1.5 s)",
        g.created_at - last_write
    );
}

/// The sizes of a nested run folder's data files: what a job that finds it complete reads.
const NESTED: [(&str, usize); 3] = [
    ("reads/L001/a.fastq.gz", 96 * 1024),
    ("reads/L002/b.fastq.gz", 96 * 1024),
    ("InterOp/QMetricsOut.bin", 32 * 1024),
];

/// A job that succeeds only on complete data: every file of [`NESTED`] whole, no temporary left (the
/// directory, appended to the command, is what it says complete).
fn job_checking_the_data() -> String {
    let files: Vec<&str> = NESTED.iter().map(|(p, _)| *p).collect();
    let total: usize = NESTED.iter().map(|(_, n)| n).sum();
    format!(
        "wrap_cmd: \"test $(cat {} | wc -c) -eq {total} && test $(find . -mindepth 1 -name '.*' -o -name '*.filepart' | wc -l) -eq 0 && echo complete:\"",
        files.join(" ")
    )
}

/// A nested run folder to copy, with its `_READY`.
fn nested_source(at: &Path) {
    for (i, (p, n)) in NESTED.iter().enumerate() {
        let f = at.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, vec![b'A' + i as u8; *n]).unwrap();
    }
    std::fs::write(at.join("_READY"), "").unwrap();
}

fn rsync(args: &[&str], from: &Path, to: &Path) {
    let st = Command::new("rsync")
        .args(args)
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "rsync {args:?}");
}

#[test]
fn real_rsync_copies_of_nested_run_folders_are_never_submitted_before_they_end() {
    // A second between two looks, as by default. `_READY` first is one rsync run of the whole folder
    // (rsync sends the top level's files, `_READY` among them, before the nested data): the copy is seen
    // going on below it. (Two rsync runs, `_READY` alone and then the data, leave a gap in which nothing
    // is being copied at all; no look at the folder can tell it from the end of a copy, and on a loaded
    // machine the second rsync's start took longer than the stability interval.)
    let job = job_checking_the_data();
    let env = TestEnv::local("rsync-rounds")
        .job(&job)
        .watch("ready_preset: rsync")
        .watch("stability_interval_sec: 1");
    let _d = env.start();
    // 20 rounds, five at a time: `_READY` sent first (the copy must be seen going on below it) or last.
    for wave in 0..4 {
        let copies: Vec<_> = (0..5)
            .map(|i| {
                let n = wave * 5 + i;
                let src = env.tmp.path().join(format!("src{n}"));
                nested_source(&src);
                let dest = env.root.join(format!("run{n}"));
                let ready_first = n % 2 == 0;
                std::thread::spawn(move || {
                    std::fs::create_dir(&dest).unwrap();
                    // 224 KiB at 128 KiB/s: about two seconds of temporaries below `reads/` and `InterOp/`.
                    if ready_first {
                        rsync(&["-a", "--bwlimit=128"], &src.join(""), &dest.join(""));
                    } else {
                        let data = ["-a", "--bwlimit=128", "--exclude=_READY"];
                        rsync(&data, &src.join(""), &dest.join(""));
                    }
                    let copied = dirwatcher::time::wall_now();
                    if !ready_first {
                        rsync(&["-a"], &src.join("_READY"), &dest);
                    }
                    (dest, copied)
                })
            })
            .collect();
        for c in copies {
            let (dest, copied) = c.join().unwrap();
            let g = env.wait_final(&dest, DEADLINE);
            assert_eq!(
                g.final_state.as_deref(),
                Some("COMPLETED"),
                "the job of {} found the data incomplete",
                dest.display()
            );
            assert!(
                g.created_at >= copied - 50,
                "{}: submitted during the copy (intent at {}, copy ended at {copied})",
                dest.display(),
                g.created_at
            );
            assert_eq!(env.history(&dest).len(), 1);
        }
    }
}

#[test]
fn a_winscp_filepart_below_the_ready_file_holds_until_it_is_renamed() {
    let job = job_checking_the_data();
    let env = TestEnv::local("filepart")
        .job(&job)
        .watch("ready_preset: rsync");
    let src = env.tmp.path().join("src");
    nested_source(&src);
    let dest = env.root.join("run1");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("_READY"), "").unwrap();
    // Everything but the first file, then that one half-way, under WinSCP's temporary name.
    rsync(&["-a", "--exclude=_READY"], &src.join(""), &dest.join(""));
    let (first, size) = NESTED[0];
    let part = dest.join(format!("{first}.filepart"));
    std::fs::rename(dest.join(first), &part).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&part)
        .unwrap()
        .set_len(size as u64 / 2)
        .unwrap();
    let _d = env.start();
    wait_for(
        DEADLINE,
        "the daemon to hold run1 for its temporary",
        || {
            let s = snapshot(&env)?;
            let w = s["waiting"]
                .as_array()?
                .iter()
                .find(|w| w["dir"] == "run1")?
                .clone();
            let reason = w["reason"].as_str()?.to_string();
            (w["state"] == "held").then_some(reason)
        },
    );
    let e = explain(&env, "run1");
    let (ok, words) = says(&e, "ready_rules");
    assert!(!ok && words.contains("a.fastq.gz.filepart"), "{words}");
    scans(&env, 3);
    assert!(env.history(&dest).is_empty(), "submitted with a .filepart");
    // The transfer ends: the whole file, renamed to its name.
    std::fs::copy(src.join(first), &part).unwrap();
    std::fs::rename(&part, dest.join(first)).unwrap();
    let renamed = dirwatcher::time::wall_now();
    let g = env.wait_final(&dest, DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    assert!(g.created_at >= renamed);
}

#[test]
fn a_cp_r_after_the_ready_file_is_waited_for_with_whole_tree_quiescence() {
    // `cp -r` writes under the final names: no temporary to see. Whole-tree quiescence is what holds
    // it; `cp --copy-contents` reads a FIFO of the source as a file, so the copy goes at the pace the
    // test feeds it.
    let job = job_checking_the_data();
    let env = TestEnv::local("cp-r")
        .job(&job)
        .watch("quiet_sec: 1.5")
        .watch("quiet_scope: tree");
    let src = env.tmp.path().join("src");
    nested_source(&src);
    std::fs::remove_file(src.join("_READY")).unwrap();
    let (first, size) = NESTED[0];
    std::fs::remove_file(src.join(first)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join(first),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let dest = env.root.join("run1");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("_READY"), "").unwrap();
    let _d = env.start();
    let mut cp = Command::new("cp")
        .args(["-r", "--copy-contents"])
        .arg(src.join("."))
        .arg(&dest)
        .spawn()
        .unwrap();
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(src.join(first))
        .unwrap();
    // Three seconds of copy, in 16 pieces: the writer's own pace, not a synchronisation.
    for _ in 0..16 {
        use std::io::Write;
        fifo.write_all(&vec![b'A'; size / 16]).unwrap();
        assert!(env.history(&dest).is_empty(), "submitted during the cp -r");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(fifo);
    assert!(cp.wait().unwrap().success());
    let copied = dirwatcher::time::wall_now();
    let g = env.wait_final(&dest, DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"));
    assert!(
        g.created_at >= copied - 50,
        "submitted {} ms before the cp -r ended",
        copied - g.created_at
    );
}
