//! What the CLI prints cannot lie to a terminal (issue 24, item 4): directory names holding a newline, CR,
//! ESC, BEL, DEL or a C1 control are printed escaped, as the logs print them, by every command that names
//! a directory — so a crafted name can neither add a forged row to `status` nor retitle or recolour the
//! operator's terminal.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// The crafted names, each after a word of its own: a forged `status -P` row and a forged `status` row
/// behind a newline, an overwrite behind CR, a window-title escape closed by BEL, a colour and an
/// erase-line escape, an 8-bit CSI (U+009B) and DEL.
const NAMES: [&[u8]; 6] = [
    b"nl\nforged-row|completed|4242|COMPLETED|forged|1|0|0:0",
    b"rows\n  completed  job 4242       forged  forged",
    b"cr\rforged-overwrite",
    b"title\x1b]0;pwned\x07",
    b"color\x1b[31m\x1b[2K",
    b"c1\xc2\x9b31mdel\x7f",
];

fn dw(config: &Path, args: &[&OsStr]) -> (i32, Vec<u8>) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let mut both = out.stdout;
    both.extend_from_slice(&out.stderr);
    (out.status.code().unwrap_or(-1), both)
}

/// No byte that drives a terminal: C0 controls but newline and tab, DEL, and the C1 controls (as UTF-8).
fn assert_terminal_safe(what: &str, out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| c.is_control() && c != '\n' && c != '\t')
        .collect();
    assert!(bad.is_empty(), "{what} printed {bad:?}:\n{text}");
    for forged in ["forged-row|", "  completed  job 4242"] {
        assert!(
            !text.lines().any(|l| l.starts_with(forged)),
            "{what} printed a forged row starting {forged:?}:\n{text}"
        );
    }
}

#[test]
fn control_characters_in_names_are_escaped_in_everything_the_cli_prints() {
    let env = TestEnv::local("terminal").job("wrap_cmd: \"false\"");
    let config = env.write_config();
    let dirs: Vec<_> = NAMES
        .iter()
        .map(|n| env.ready_dir(OsStr::from_bytes(n)))
        .collect();
    {
        let _daemon = env.start();
        for d in &dirs {
            assert_eq!(
                env.wait_final(d, DEADLINE).final_state.as_deref(),
                Some("FAILED"),
                "{d:?}"
            );
        }
    }
    // A new one the dry run would submit: its `env WATCH_DIR=…` and argv lines, with a forged row and
    // an 8-bit CSI in the name.
    let fresh = env.ready_dir(OsStr::from_bytes(b"fresh\n  completed  job 4242\xc2\x9b2J"));
    let s = |x: &str| OsStr::new(x).to_owned();
    let mut commands: Vec<(String, Vec<std::ffi::OsString>)> = vec![
        ("status".into(), vec![s("status")]),
        ("status -P".into(), vec![s("status"), s("-P")]),
        (
            "status -o".into(),
            vec![s("status"), s("-o"), s("dir,name,job_name,reason")],
        ),
        (
            "status --state failed".into(),
            vec![s("status"), s("--state"), s("failed")],
        ),
        ("run --dry-run".into(), vec![s("run"), s("--dry-run")]),
    ];
    for d in &dirs {
        let shown = format!("{d:?}");
        commands.push((
            format!("explain {shown}"),
            vec![s("explain"), d.clone().into()],
        ));
        commands.push((
            format!("status {shown}"),
            vec![s("status"), d.clone().into()],
        ));
    }
    let (_, dry) = dw(&config, &[OsStr::new("run"), OsStr::new("--dry-run")]);
    let dry = String::from_utf8_lossy(&dry).into_owned();
    assert!(
        dry.contains("would run locally") && dry.contains("\\u009b2J"),
        "the dry run does not show the new directory's job:\n{dry}"
    );
    assert!(fresh.exists());
    for (what, args) in &commands {
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, out) = dw(&config, &args);
        assert_eq!(code, 0, "{what}:\n{}", String::from_utf8_lossy(&out));
        assert_terminal_safe(what, &out);
    }
    // One row per directory in the parsable listing, each with its eight fields, and each name there as
    // the logs write it.
    let (_, out) = dw(&config, &[OsStr::new("status"), OsStr::new("-P")]);
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), NAMES.len(), "{text}");
    assert!(rows.iter().all(|r| r.split('|').count() == 8), "{text}");
    for want in [
        "nl\\nforged-row",
        "cr\\rforged-overwrite",
        "title\\x1b]0;pwned\\x07",
        "c1\\x9b31mdel\\x7f",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    // JSON keeps the real names (escaped as JSON, C1 and DEL too): a reader gets the exact paths back.
    let (_, out) = dw(
        &config,
        &[OsStr::new("status"), OsStr::new("--json"), OsStr::new("-P")],
    );
    assert_terminal_safe("status --json", &out);
    let (_, out) = dw(
        &config,
        &[
            OsStr::new("explain"),
            OsStr::new("--json"),
            dirs[5].as_os_str(),
        ],
    );
    assert_terminal_safe("explain --json", &out);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let dir = v[0]["dir"]
        .as_str()
        .or(v["dir"].as_str())
        .unwrap_or_default()
        .to_string();
    assert_eq!(dir.as_bytes(), dirs[5].as_os_str().as_bytes(), "{v}");
    // The commands that change the ledger say what they did to which directory, escaped too.
    for (verb, d) in [
        ("retry", &dirs[0]),
        ("forget", &dirs[3]),
        ("cancel", &dirs[4]),
    ] {
        let (_, out) = dw(&config, &[OsStr::new(verb), d.as_os_str()]);
        assert_terminal_safe(verb, &out);
    }
}
