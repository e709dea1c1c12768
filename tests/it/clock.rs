//! The wall clock stepping under a running daemon (NTP, an operator's `date -s`): libfaketime fakes the
//! daemon's wall clock alone (`FAKETIME_DONT_FAKE_MONOTONIC=1`), an hour back and then an hour forward,
//! and scanning and tracking go on as before.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// libfaketime's preload library, where Debian's `faketime` package puts it.
fn libfaketime() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

#[test]
fn wall_clock_stepped_back_and_forward_an_hour_scanning_and_tracking_go_on() {
    let Some(lib) = libfaketime() else {
        assert!(
            !slurm_required(),
            "libfaketime is missing: install Debian's `faketime` package (scripts/test.sh does)"
        );
        eprintln!("SKIPPED wall_clock_stepped: no libfaketime (apt-get install faketime)");
        return;
    };
    let env = TestEnv::local("clock").job("wrap_cmd: true");
    // The offset is read from this file on every clock call, so the test can step the clock at will.
    let offset = env.tmp.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let vars: Vec<(&str, &OsStr)> = vec![
        ("LD_PRELOAD", lib.as_os_str()),
        ("FAKETIME_TIMESTAMP_FILE", offset.as_os_str()),
        ("FAKETIME_NO_CACHE", OsStr::new("1")),
        ("FAKETIME_DONT_FAKE_MONOTONIC", OsStr::new("1")),
    ];
    let d = env.start_env(&[], &vars);
    let before = env.ready_dir("before");
    let g = env.wait_final(&before, DEADLINE);
    assert_eq!(g.final_state.as_deref(), Some("COMPLETED"), "{}", d.log());

    for (spec, name, shift) in [
        ("-1h", "after-step-back", -3600),
        ("+1h", "after-step-forward", 3600),
    ] {
        std::fs::write(&offset, format!("{spec}\n")).unwrap();
        let dir = env.ready_dir(name);
        let g = env.wait_final(&dir, DEADLINE);
        assert_eq!(
            g.final_state.as_deref(),
            Some("COMPLETED"),
            "{name}:\n{}",
            d.log()
        );
        assert_eq!(env.history(&dir).len(), 1, "{name}");
        // The step really reached the daemon: it recorded the intent at the faked wall time.
        let real = dirwatcher::time::wall_now() / 1000;
        let recorded = g.created_at / 1000;
        assert!(
            (recorded - (real + shift)).abs() < 120,
            "{name}: recorded at {recorded}, real time {real}: the clock was not stepped by {shift} s"
        );
    }
    assert_eq!(
        env.history(&before).len(),
        1,
        "resubmitted after a clock step"
    );
}
