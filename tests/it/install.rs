//! `dirwatcher install` / `uninstall` staged with `--destdir`, the unit checked by `systemd-analyze`, the
//! root refusal of `run`, the sample job `process_dir.py`, and the installed service's own command line
//! running as an unprivileged user against the real Slurm cluster.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use crate::harness::*;

/// The seed's installer example (its README), with our own existing root.
fn seed_flags(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = vec!["--watch-root".into(), root.to_string_lossy().into()];
    v.extend(
        [
            "--signal-file",
            "_READY",
            "--partition",
            "main",
            "--account",
            "dev",
            "--gres",
            "gpu:1",
            "--time",
            "00:10:00",
        ]
        .map(String::from),
    );
    v
}

struct Staging {
    tmp: tempfile::TempDir,
    root: PathBuf,
    dest: PathBuf,
}

impl Staging {
    fn new(name: &str) -> Staging {
        let tmp = tempfile::Builder::new()
            .prefix(&format!("dw-inst-{name}-"))
            .tempdir_in("/tmp")
            .unwrap();
        // Other users (the service user in the Slurm test) must be able to reach the staged files.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.path().join("incoming");
        std::fs::create_dir(&root).unwrap();
        let dest = tmp.path().join("stage");
        Staging { tmp, root, dest }
    }

    /// `dirwatcher install --destdir <dest> <seed flags> <extra>`.
    fn install(&self, extra: &[&str]) -> Output {
        Command::new(BIN)
            .arg("install")
            .arg("--destdir")
            .arg(&self.dest)
            .args(seed_flags(&self.root))
            .args(extra)
            .output()
            .unwrap()
    }

    fn uninstall(&self, extra: &[&str]) -> Output {
        Command::new(BIN)
            .arg("uninstall")
            .arg("--destdir")
            .arg(&self.dest)
            .args(extra)
            .output()
            .unwrap()
    }

    /// A target-system path inside the staging directory.
    fn at(&self, p: &str) -> PathBuf {
        self.dest.join(p.trim_start_matches('/'))
    }

    fn config(&self) -> PathBuf {
        self.at("/etc/dirwatcher/config.yaml")
    }

    fn unit(&self) -> PathBuf {
        self.at("/etc/systemd/system/dirwatcher.service")
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// The staged files: what, where, which mode.
const STAGED: &[(&str, u32)] = &[
    ("/opt/dirwatcher/dirwatcher", 0o755),
    ("/opt/dirwatcher/process_dir.py", 0o755),
    ("/etc/dirwatcher/config.yaml", 0o644),
    ("/var/lib/dirwatcher", 0o750),
    ("/var/log/dirwatcher", 0o750),
    ("/etc/systemd/system/dirwatcher.service", 0o644),
];

#[test]
fn install_with_the_seed_flags_stages_binary_job_config_dirs_and_unit() {
    let s = Staging::new("seed");
    let out = ok(s.install(&[]));
    for (p, m) in STAGED {
        assert_eq!(mode(&s.at(p)), *m, "mode of {p}\n{out}");
    }
    assert_eq!(
        std::fs::read(s.at("/opt/dirwatcher/dirwatcher")).unwrap(),
        std::fs::read(BIN).unwrap(),
        "the installed binary is this binary"
    );
    assert_eq!(
        std::fs::read_to_string(s.at("/opt/dirwatcher/process_dir.py")).unwrap(),
        include_str!("../../packaging/process_dir.py")
    );
    // The config is the seed's example with these values: same keys, order and blank lines, but our
    // state file is SQLite (state.db), which a comment says.
    let config = std::fs::read_to_string(s.config()).unwrap();
    let expected = include_str!("../data/seed-config.yaml")
        .replace("/data/incoming", &s.root.to_string_lossy())
        .replace("state.json", "state.db");
    let without_comments: String = config
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(without_comments, expected);
    assert!(config.contains("# An SQLite database"), "{config}");
    let check = ok(Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(s.config())
        .output()
        .unwrap());
    assert!(check.contains("gres: \"gpu:1\""), "{check}");
    // The unit starts the installed binary with the installed config, as the service user.
    let unit = std::fs::read_to_string(s.unit()).unwrap();
    for line in [
        "ExecStart=/opt/dirwatcher/dirwatcher run --config /etc/dirwatcher/config.yaml",
        "User=dirwatcher",
        "Type=notify",
        "WatchdogSec=300",
        "ProtectSystem=strict",
        // The root is under /tmp here, so a private /tmp would hide it.
        "PrivateTmp=no",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "unit lacks {line:?}:\n{unit}"
        );
    }
    assert!(
        unit.lines().any(|l| l
            == format!(
                "ReadWritePaths={} /var/lib/dirwatcher /var/log/dirwatcher",
                s.root.display()
            )),
        "{unit}"
    );
    assert!(out.contains("created"), "{out}");
    assert!(
        out.contains("no user created, systemd not touched"),
        "{out}"
    );
}

#[test]
fn a_second_install_with_the_same_flags_changes_nothing_and_says_unchanged() {
    let s = Staging::new("again");
    ok(s.install(&[]));
    let before: Vec<(SystemTime, u32)> = STAGED
        .iter()
        .map(|(p, _)| (mtime(&s.at(p)), mode(&s.at(p))))
        .collect();
    let contents: Vec<Option<Vec<u8>>> = STAGED
        .iter()
        .map(|(p, _)| std::fs::read(s.at(p)).ok())
        .collect();
    let out = ok(s.install(&[]));
    for (p, _) in STAGED {
        assert!(
            out.lines()
                .any(|l| l == format!("unchanged {}", s.at(p).display())),
            "{p} not reported unchanged:\n{out}"
        );
    }
    assert!(out.contains("everything unchanged"), "{out}");
    let after: Vec<(SystemTime, u32)> = STAGED
        .iter()
        .map(|(p, _)| (mtime(&s.at(p)), mode(&s.at(p))))
        .collect();
    assert_eq!(before, after, "a file was rewritten");
    let contents_after: Vec<Option<Vec<u8>>> = STAGED
        .iter()
        .map(|(p, _)| std::fs::read(s.at(p)).ok())
        .collect();
    assert!(contents == contents_after, "content changed");
    // No stray temporary files either.
    for d in ["/opt/dirwatcher", "/etc/dirwatcher", "/etc/systemd/system"] {
        let names: Vec<String> = std::fs::read_dir(s.at(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains("dirwatcher-install")),
            "{names:?}"
        );
    }
}

#[test]
fn an_existing_different_config_is_kept_with_a_diff_unless_forced() {
    let s = Staging::new("keep");
    ok(s.install(&[]));
    let mine = std::fs::read_to_string(s.config())
        .unwrap()
        .replace("partition: main", "partition: mine");
    std::fs::write(s.config(), &mine).unwrap();

    let out = ok(s.install(&[]));
    assert_eq!(
        std::fs::read_to_string(s.config()).unwrap(),
        mine,
        "overwritten without --force"
    );
    assert!(out.contains("--force replaces it"), "{out}");
    assert!(out.contains("-  partition: mine"), "no diff shown:\n{out}");
    assert!(out.contains("+  partition: main"), "no diff shown:\n{out}");

    let dry = ok(s.install(&["--force", "--dry-run"]));
    assert!(dry.contains("would update"), "{dry}");
    assert_eq!(
        std::fs::read_to_string(s.config()).unwrap(),
        mine,
        "--dry-run wrote"
    );

    let out = ok(s.install(&["--force"]));
    assert!(out.contains("-  partition: mine"), "{out}");
    assert!(
        std::fs::read_to_string(s.config())
            .unwrap()
            .contains("partition: main\n"),
        "--force did not replace the config"
    );
}

#[test]
fn dry_run_prints_the_plan_and_creates_nothing() {
    let s = Staging::new("dry");
    let out = ok(s.install(&["--dry-run"]));
    assert!(!s.dest.exists(), "--dry-run created {}", s.dest.display());
    for (p, _) in STAGED {
        assert!(
            out.contains(&format!("would create {}", s.at(p).display())),
            "plan lacks {p}:\n{out}"
        );
    }
}

/// A real install (here its dry run) refuses a missing root; a staged one (`--destdir`) is for another
/// machine and does not look (`notify::a_staged_install_does_not_need_the_watch_root…`).
#[test]
fn install_refuses_a_watch_root_that_does_not_exist() {
    let s = Staging::new("noroot");
    let missing = s.tmp.path().join("not-mounted");
    let o = Command::new(BIN)
        .arg("install")
        .arg("--dry-run")
        .arg("--watch-root")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--watch-root") && err.contains("never creates the root"),
        "{err}"
    );
    assert!(
        !missing.exists() && !s.dest.exists(),
        "something was created"
    );
}

#[test]
fn install_refuses_flags_that_make_an_invalid_config() {
    let s = Staging::new("badtime");
    let o = Command::new(BIN)
        .arg("install")
        .arg("--destdir")
        .arg(&s.dest)
        .arg("--watch-root")
        .arg(&s.root)
        .args(["--time", "ten minutes"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("job.time_limit"),
        "{}",
        text(&o)
    );
    let o = s.install(&["--state-file", "/var/lib/state.db"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!s.dest.exists());
}

#[test]
fn uninstall_removes_the_service_and_keeps_config_state_and_logs_unless_purged() {
    let s = Staging::new("uninst");
    ok(s.install(&[
        "--smtp-host",
        "smtp.example.org",
        "--smtp-user",
        "dw",
        "--smtp-pass",
        "pw",
    ]));
    std::fs::write(s.at("/var/log/dirwatcher/failed_jobs.log"), "{}\n").unwrap();
    // What a daemon that ran leaves beside its ledger.
    std::fs::write(s.at("/var/lib/dirwatcher/state.db"), "").unwrap();
    std::fs::write(s.at("/var/lib/dirwatcher/state.db.status.json"), "{}").unwrap();
    std::fs::write(s.at("/var/lib/dirwatcher/state.db.jobs.json"), "[]").unwrap();
    std::fs::write(
        s.at("/var/lib/dirwatcher/state.db.lock"),
        "ledger abcd1234\n",
    )
    .unwrap();
    // SQLite's files after a crash, and a local job's folder.
    for f in ["state.db-wal", "state.db-shm", "state.db-journal"] {
        std::fs::write(s.at(&format!("/var/lib/dirwatcher/{f}")), "").unwrap();
    }
    let job = s.at("/var/lib/dirwatcher/state.db.local-jobs/local-a-1");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::write(job.join("spec.json"), "{}").unwrap();
    let out = ok(s.uninstall(&[]));
    for gone in [
        "/opt/dirwatcher/dirwatcher",
        "/opt/dirwatcher/process_dir.py",
        "/opt/dirwatcher",
        "/etc/systemd/system/dirwatcher.service",
    ] {
        assert!(!s.at(gone).exists(), "{gone} still there:\n{out}");
    }
    for kept in [
        "/etc/dirwatcher/config.yaml",
        "/var/lib/dirwatcher",
        "/var/log/dirwatcher/failed_jobs.log",
    ] {
        assert!(
            s.at(kept).exists(),
            "{kept} removed without --purge:\n{out}"
        );
    }
    assert!(out.contains("--purge removes them"), "{out}");
    let out = ok(s.uninstall(&["--purge"]));
    // All of it: the password file beside the config and the status snapshot beside the ledger too.
    for gone in [
        "/etc/dirwatcher",
        "/var/lib/dirwatcher",
        "/var/log/dirwatcher",
    ] {
        assert!(
            !s.at(gone).exists(),
            "{gone} still there after --purge:\n{out}"
        );
    }
    assert!(s.root.exists(), "the watch root must never be removed");
}

/// The staged unit with its ExecStart and ExecReload pointing at the staged binary (verify needs it to exist), and
/// nothing else changed.
fn verifiable_copy(s: &Staging) -> PathBuf {
    let unit = std::fs::read_to_string(s.unit()).unwrap();
    let staged_bin = s.at("/opt/dirwatcher/dirwatcher");
    let adjusted = unit.replace(
        "=/opt/dirwatcher/dirwatcher ",
        &format!("={} ", staged_bin.display()),
    );
    assert_ne!(adjusted, unit, "ExecStart not found:\n{unit}");
    let dir = s.tmp.path().join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("dirwatcher.service");
    std::fs::write(&p, adjusted).unwrap();
    p
}

fn systemd_analyze_present(test: &str) -> bool {
    let present = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var("CI").is_err(),
            "{test}: systemd-analyze is required in CI (apt-get install systemd)"
        );
        eprintln!("SKIPPED {test}: systemd-analyze is not installed");
    }
    present
}

#[test]
fn the_installed_unit_passes_systemd_analyze_verify() {
    let s = Staging::new("verify");
    ok(s.install(&[]));
    if !systemd_analyze_present("the_installed_unit_passes_systemd_analyze_verify") {
        return;
    }
    let p = verifiable_copy(&s);
    // --man=no: the man page is installed by the .deb, not by `install` (scripts/build-deb.sh --check
    // verifies the packaged unit with it).
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify:\n{}",
        text(&o)
    );
    // And it is as locked down as documented in docs/install.md.
    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&p)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("exposure level for dirwatcher.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{}", text(&o)));
    assert!(
        score <= 2.0,
        "exposure {score} is worse than documented:\n{report}"
    );
}

/// `--smtp-pass` writes the password into its own file (0600, named by the config) and the unit hands that
/// file to the service as its credential `smtp_pass`, which the daemon prefers; the unit still verifies.
#[test]
fn install_with_smtp_pass_gives_the_password_file_to_the_unit_as_its_credential() {
    let s = Staging::new("cred");
    let out = ok(s.install(&[
        "--smtp-host",
        "smtp.example.org",
        "--smtp-user",
        "dw",
        "--smtp-pass",
        "pw",
    ]));
    assert!(out.contains("credential `smtp_pass`"), "{out}");
    let pass = s.at("/etc/dirwatcher/config.smtp.pass");
    assert_eq!(std::fs::read_to_string(&pass).unwrap(), "pw\n");
    assert_eq!(mode(&pass), 0o600);
    assert!(has_line(
        &s.config(),
        "  smtp_pass_file: \"/etc/dirwatcher/config.smtp.pass\""
    ));
    assert!(has_line(
        &s.unit(),
        "LoadCredential=smtp_pass:/etc/dirwatcher/config.smtp.pass"
    ));
    if systemd_analyze_present(
        "install_with_smtp_pass_gives_the_password_file_to_the_unit_as_its_credential",
    ) {
        let o = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(verifiable_copy(&s))
            .output()
            .unwrap();
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "systemd-analyze verify:\n{}",
            text(&o)
        );
    }
    // Without a password there is no credential: systemd would refuse to start a unit whose
    // `LoadCredential=` file is missing.
    let s = Staging::new("nocred");
    ok(s.install(&["--smtp-host", "smtp.example.org"]));
    let unit = std::fs::read_to_string(s.unit()).unwrap();
    assert!(!unit.contains("LoadCredential"), "{unit}");
}

#[test]
fn run_as_root_is_refused_without_allow_root() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED run_as_root_is_refused_without_allow_root: not running as root");
        return;
    }
    let env = TestEnv::local("rootrefusal").job("wrap_cmd: true");
    let cfg = env.write_config();
    let o = Command::new(BIN)
        .args(["run", "--once", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusing to run as root") && err.contains("--allow-root"),
        "{err}"
    );
    assert!(!env.state_file().exists(), "it started before refusing");
    let o = Command::new(BIN)
        .args(["run", "--once", "--allow-root", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(env.state_file().exists());
}

// ------------------------------------------------------------------ the sample job

fn process_dir(dir: &Path) -> Output {
    Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/process_dir.py"
        ))
        .arg(dir)
        .output()
        .unwrap()
}

fn sha256sum(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn sample_job_prints_a_manifest_and_writes_a_done_summary() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("case 1");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.txt"), "hello\n").unwrap();
    std::fs::write(d.join("sub/b.bin"), vec![7u8; 70_000]).unwrap();
    std::fs::write(d.join("_READY"), "").unwrap();
    let o = process_dir(&d);
    let out = ok(o);
    assert!(out.contains("3 files, 70006 bytes"), "{out}");
    let a_sum = sha256sum(&d.join("a.txt"));
    assert!(out.contains(&format!("{a_sum}  a.txt")), "{out}");
    let done: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("_DONE")).unwrap()).unwrap();
    assert_eq!(done["files"], 3);
    assert_eq!(done["bytes"], 70006);
    assert_eq!(done["dir"], d.to_string_lossy().as_ref());
    let manifest = done["manifest"].as_array().unwrap();
    let b = manifest.iter().find(|e| e["path"] == "sub/b.bin").unwrap();
    assert_eq!(b["sha256"], sha256sum(&d.join("sub/b.bin")).as_str());
    // A second run does not count its own _DONE.
    let out = ok(process_dir(&d));
    assert!(out.contains("3 files, 70006 bytes"), "{out}");
}

#[test]
fn sample_job_fails_clearly_on_a_missing_directory() {
    let t = tempfile::tempdir().unwrap();
    let o = process_dir(&t.path().join("gone"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not exist") && err.contains("gone"),
        "{err}"
    );
}

#[test]
fn sample_job_fails_clearly_on_an_unreadable_file() {
    let t = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    let d = t.path().join("case");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("ok.txt"), "x").unwrap();
    let secret = d.join("secret.dat");
    std::fs::write(&secret, "no").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/process_dir.py");
    let o = if unsafe { libc::geteuid() } == 0 {
        // Root reads anything: run as the unprivileged test user, who can enter the directory but not
        // read the file.
        for p in [t.path(), &d] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let copy = t.path().join("process_dir.py");
        std::fs::copy(script, &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        Command::new("runuser")
            .args(["-u", "dwtest", "--", "/usr/bin/python3"])
            .arg(&copy)
            .arg(&d)
            .output()
            .unwrap()
    } else {
        Command::new("python3")
            .arg(script)
            .arg(&d)
            .output()
            .unwrap()
    };
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot read") && err.contains("secret.dat"),
        "{err}"
    );
    assert!(!d.join("_DONE").exists(), "a failed job wrote _DONE");
}

// ------------------------------------------------------------------ end to end as the service user

/// A process started in its own process group; the whole group is killed when dropped (runuser forks).
struct Group {
    child: Option<Child>,
    log: PathBuf,
}

impl Group {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM to the service itself (runuser's child); runuser then exits with its status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", c.id()))
            .unwrap_or_default();
        let service: i32 = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("runuser has started the service");
        unsafe { libc::kill(service, libc::SIGTERM) };
        wait_for(Duration::from_secs(30), "the service to stop", || {
            c.try_wait().unwrap()
        })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
            if std::thread::panicking() {
                eprintln!("---- service log ----\n{}", self.log());
            }
        }
    }
}

fn user_ids(name: &str) -> Option<(u32, u32)> {
    let o = Command::new("id").args(["-u", name]).output().ok()?;
    let g = Command::new("id").args(["-g", name]).output().ok()?;
    if !o.status.success() || !g.status.success() {
        return None;
    }
    let n = |o: &Output| String::from_utf8_lossy(&o.stdout).trim().parse().ok();
    Some((n(&o)?, n(&g)?))
}

/// The installed service's own command line, run as its (unprivileged) user, takes a directory through
/// the real Slurm cluster: the job runs as that user and the sample job writes its summary.
#[test]
fn installed_service_runs_as_its_user_and_processes_a_directory_on_slurm() {
    const TEST: &str = "installed_service_runs_as_its_user_and_processes_a_directory_on_slurm";
    if !slurm_available(TEST) {
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        assert!(!slurm_required(), "{TEST}: needs root (runuser, chown)");
        eprintln!("SKIPPED {TEST}: needs root");
        return;
    }
    let (uid, gid) = user_ids("dwtest").unwrap_or_else(|| {
        panic!("{TEST}: the user `dwtest` is missing; `scripts/slurm-dev-cluster.sh up` creates it")
    });
    let s = Staging::new("e2e");
    std::os::unix::fs::chown(&s.root, Some(uid), Some(gid)).unwrap();
    let o = Command::new(BIN)
        .arg("install")
        .arg("--destdir")
        .arg(&s.dest)
        .arg("--user")
        .arg("dwtest")
        .arg("--watch-root")
        .arg(&s.root)
        .args([
            "--partition",
            "main",
            "--account",
            "dev",
            "--time",
            "00:10:00",
        ])
        .output()
        .unwrap();
    let out = ok(o);
    // The service user owns its state and log directories.
    for d in ["/var/lib/dirwatcher", "/var/log/dirwatcher"] {
        let m = std::fs::metadata(s.at(d)).unwrap();
        assert_eq!((m.uid(), m.gid()), (uid, gid), "owner of {d}\n{out}");
    }
    assert!(
        std::fs::read_to_string(s.unit())
            .unwrap()
            .contains("\nUser=dwtest\n")
    );

    // Only the paths under the destdir move: the config's and the unit's /opt, /var/lib, /var/log, /etc.
    let stage = |p: &str| s.at(p).to_string_lossy().into_owned();
    let config = std::fs::read_to_string(s.config())
        .unwrap()
        .replace("/opt/dirwatcher", &stage("/opt/dirwatcher"))
        .replace("/var/lib/dirwatcher", &stage("/var/lib/dirwatcher"))
        .replace("/var/log/dirwatcher", &stage("/var/log/dirwatcher"));
    std::fs::write(s.config(), config).unwrap();
    let unit = std::fs::read_to_string(s.unit()).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let argv: Vec<String> = exec
        .split_whitespace()
        .map(|w| {
            if w.starts_with("/opt/") || w.starts_with("/etc/") {
                stage(w)
            } else {
                w.to_string()
            }
        })
        .collect();
    assert_eq!(argv[1..3], ["run", "--config"], "{exec}");

    let log = s.tmp.path().join("service.log");
    use std::os::unix::process::CommandExt;
    let child = Command::new("runuser")
        .args(["-u", "dwtest", "--"])
        .args(&argv)
        .current_dir(s.tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut svc = Group {
        child: Some(child),
        log,
    };

    let name = format!("case-{}", run_token());
    let dir = s.root.join(&name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("data.txt"), "payload\n").unwrap();
    std::fs::write(dir.join("_READY"), "").unwrap();
    for p in [dir.clone(), dir.join("data.txt"), dir.join("_READY")] {
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
    }

    let done_path = dir.join("_DONE");
    let done: serde_json::Value = wait_for(Duration::from_secs(120), "the job's _DONE", || {
        let t = std::fs::read_to_string(&done_path).ok()?;
        serde_json::from_str(&t).ok()
    });
    assert_eq!(done["user"], "dwtest", "{done}");
    assert_eq!(done["files"], 2, "{done}");
    let job = done["job_id"]
        .as_str()
        .expect("SLURM_JOB_ID in _DONE")
        .to_string();
    wait_for(
        Duration::from_secs(60),
        "COMPLETED in the service log",
        || svc.log().contains("COMPLETED").then_some(()),
    );
    let job_name = dirwatcher::engine::job_name("dirwatch", std::ffi::OsStr::new(&name));
    let user = wait_for(Duration::from_secs(30), "the job in sacct", || {
        Some(slurm::sacct_field(&job, &job_name, "User")).filter(|u| !u.is_empty())
    });
    assert_eq!(user, "dwtest", "job {job} ran as {user}");
    assert_eq!(slurm::sacct_field(&job, &job_name, "Account"), "dev");
    // The daemon itself ran as the service user: its ledger is the user's.
    let ledger = s.at("/var/lib/dirwatcher/state.db");
    assert_eq!(std::fs::metadata(&ledger).unwrap().uid(), uid);
    let st = svc.stop();
    assert!(st.success(), "service exit {st:?}:\n{}", svc.log());
    assert!(dir.exists(), "deleted without --delete-on-success");
}

// ------------------------------------------------------------------ several instances

impl Staging {
    /// Another existing root beside the first, in the same temporary directory.
    fn another_root(&self, name: &str) -> PathBuf {
        let r = self.tmp.path().join(name);
        std::fs::create_dir(&r).unwrap();
        r
    }

    /// `dirwatcher install --destdir <dest> <seed flags for root> <extra>`.
    fn install_for(&self, root: &Path, extra: &[&str]) -> Output {
        Command::new(BIN)
            .arg("install")
            .arg("--destdir")
            .arg(&self.dest)
            .args(seed_flags(root))
            .args(extra)
            .output()
            .unwrap()
    }

    /// Every file and directory under the staging directory: content and mtime (files), mode. A
    /// directory's mtime is left out: a new entry beside the old ones changes it.
    fn snapshot(&self) -> std::collections::BTreeMap<PathBuf, (Option<Vec<u8>>, u32, SystemTime)> {
        let mut out = std::collections::BTreeMap::new();
        let mut todo = vec![self.dest.clone()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let content = m.is_file().then(|| std::fs::read(&p).unwrap());
                if m.is_dir() {
                    todo.push(p.clone());
                }
                let mtime = match m.is_dir() {
                    true => SystemTime::UNIX_EPOCH,
                    false => m.modified().unwrap(),
                };
                out.insert(p, (content, m.mode() & 0o7777, mtime));
            }
        }
        out
    }
}

fn refused(o: Output) -> String {
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn has_line(file: &Path, line: &str) -> bool {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .any(|l| l == line)
}

/// What the issue asks to show: two instances installed side by side, each with its own config, state,
/// logs, drop-in and metrics port, one shared template unit, and the second install changes not one byte
/// (nor a mode or mtime) of what the first put there.
#[test]
fn two_instances_install_side_by_side_and_the_second_touches_nothing_of_the_first() {
    let s = Staging::new("twoinst");
    let (root_a, root_b) = (s.root.clone(), s.another_root("tomo-incoming"));
    ok(s.install_for(
        &root_a,
        &["--instance", "cryo", "--metrics-listen", "127.0.0.1:9187"],
    ));
    let first = s.snapshot();
    let out = ok(s.install_for(
        &root_b,
        &["--instance", "tomo", "--metrics-listen", "127.0.0.1:9188"],
    ));
    let second = s.snapshot();
    for (p, before) in &first {
        assert!(
            second.get(p) == Some(before),
            "installing tomo changed {}:\n{out}",
            p.display()
        );
    }
    assert!(second.len() > first.len(), "tomo added nothing:\n{out}");

    for (name, root, port) in [("cryo", &root_a, 9187), ("tomo", &root_b, 9188)] {
        let config = s.at(&format!("/etc/dirwatcher/{name}.yaml"));
        for line in [
            format!("  root: {}", root.display()),
            format!("  state_file: /var/lib/dirwatcher/{name}/state.db"),
            format!("  failure_log: /var/log/dirwatcher/{name}/failed_jobs.log"),
            format!("  instance: {name}"),
            format!("  listen: 127.0.0.1:{port}"),
        ] {
            assert!(has_line(&config, &line), "{name}.yaml lacks {line:?}");
        }
        let check = ok(Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap());
        assert!(check.contains(&format!("instance: \"{name}\"")), "{check}");
        for d in ["/var/lib/dirwatcher", "/var/log/dirwatcher"] {
            assert_eq!(mode(&s.at(&format!("{d}/{name}"))), 0o750, "{d}/{name}");
        }
        let drop_in = s.at(&format!(
            "/etc/systemd/system/dirwatcher@{name}.service.d/instance.conf"
        ));
        assert!(
            has_line(&drop_in, &format!("ReadWritePaths={}", root.display())),
            "{name}"
        );
        assert!(has_line(&drop_in, "User=dirwatcher"), "{name}");
    }
    let template = s.at("/etc/systemd/system/dirwatcher@.service");
    assert!(has_line(
        &template,
        "ExecStart=/opt/dirwatcher/dirwatcher run --config /etc/dirwatcher/%i.yaml"
    ));
    let units: Vec<String> = std::fs::read_dir(s.at("/etc/systemd/system"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut units = units;
    units.sort();
    assert_eq!(
        units,
        [
            "dirwatcher@.service",
            "dirwatcher@cryo.service.d",
            "dirwatcher@tomo.service.d"
        ],
        "one template, one drop-in per instance, no plain unit"
    );
    assert!(!s.config().exists(), "an instance wrote the plain config");
    // Again, the same flags: idempotent, as the plain install.
    let again = ok(s.install_for(
        &root_a,
        &["--instance", "cryo", "--metrics-listen", "127.0.0.1:9187"],
    ));
    assert!(again.contains("everything unchanged"), "{again}");
    assert!(
        s.snapshot() == second,
        "a repeated install rewrote something"
    );
}

/// The complaint: a second plain install for another root silently repointed the one service.
#[test]
fn a_second_plain_install_for_another_root_is_refused_and_names_instance() {
    let s = Staging::new("secondroot");
    ok(s.install(&[]));
    let before = s.snapshot();
    let other = s.another_root("second");
    let err = refused(s.install_for(&other, &[]));
    assert!(
        err.contains("--instance NAME") && err.contains("--force"),
        "{err}"
    );
    assert!(
        err.contains(&s.root.display().to_string()),
        "names the root it watches: {err}"
    );
    assert!(
        s.snapshot() == before,
        "a refused install changed something"
    );
    // The same root again is the idempotent re-install; --force moves the service on purpose.
    assert!(ok(s.install(&[])).contains("everything unchanged"));
    ok(s.install_for(&other, &["--force"]));
    assert!(has_line(
        &s.config(),
        &format!("  root: {}", other.display())
    ));
}

/// Issue 24, item 5: following the installer's own `fix:` hints (`--state-file`, `--failure-log`) with
/// `--config-path second.yaml` ended in the plain unit rewritten to run second.yaml, and the first root
/// watched by nothing. The unit installed says which config the service runs: refused, naming
/// `--instance NAME`; and a clash with the plain service's ledger or log points there too.
#[test]
fn a_config_path_over_the_installed_plain_service_is_refused_and_names_instance() {
    let s = Staging::new("cfgpath");
    ok(s.install(&[]));
    let before = s.snapshot();
    let unit_before = std::fs::read_to_string(s.unit()).unwrap();
    let second = s.another_root("second");
    // The clash first: the plain service's ledger and log, and the fix is an instance (no --state-file).
    let err = refused(s.install_for(&second, &["--config-path", "/etc/dirwatcher/second.yaml"]));
    assert!(err.contains("--instance NAME"), "{err}");
    // Then the exact path: own ledger and log given, as the old hints said.
    let err = refused(s.install_for(
        &second,
        &[
            "--config-path",
            "/etc/dirwatcher/second.yaml",
            "--state-file",
            "/var/lib/dirwatcher/second/state.db",
            "--failure-log",
            "/var/log/dirwatcher/second/failed_jobs.log",
        ],
    ));
    assert!(
        err.contains("runs the config `/etc/dirwatcher/config.yaml`")
            && err.contains(&format!("which watches `{}`", s.root.display()))
            && err.contains("--instance NAME"),
        "{err}"
    );
    assert!(
        s.snapshot() == before,
        "a refused install changed something"
    );
    // The way it says works, and leaves the plain service as it was.
    ok(s.install_for(&second, &["--instance", "second"]));
    assert_eq!(std::fs::read_to_string(s.unit()).unwrap(), unit_before);
    assert!(has_line(
        &s.at("/etc/dirwatcher/second.yaml"),
        &format!("  root: {}", second.display())
    ));
}

/// The unit a package installed counts as much as the installer's: over the .deb's or the .rpm's
/// `dirwatcher.service` (no installer unit in /etc), another --config-path is refused the same way.
#[test]
fn a_config_path_over_a_packaged_service_is_refused_too() {
    let s = Staging::new("cfgpkg");
    let unit = s.at("/usr/lib/systemd/system/dirwatcher.service");
    std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
    std::fs::write(&unit, include_str!("../../packaging/dirwatcher.service")).unwrap();
    let second = s.another_root("second");
    let err = refused(s.install_for(
        &second,
        &[
            "--config-path",
            "/etc/dirwatcher/second.yaml",
            "--state-file",
            "/var/lib/dirwatcher/second/state.db",
            "--failure-log",
            "/var/log/dirwatcher/second/failed_jobs.log",
        ],
    ));
    assert!(
        err.contains("/usr/lib/systemd/system/dirwatcher.service")
            && err.contains("runs the config `/etc/dirwatcher/config.yaml`")
            && err.contains("--instance NAME"),
        "{err}"
    );
    assert!(!s.unit().exists(), "a refused install wrote a unit");
}

/// `uninstall --purge` removes nothing through a symbolic link: a state directory that points elsewhere
/// (another disk, someone else's files) keeps everything below it, and says so; the rest is removed.
#[test]
fn uninstall_purge_removes_nothing_through_a_symlink() {
    let s = Staging::new("purgelink");
    ok(s.install(&[]));
    let elsewhere = s.another_root("elsewhere");
    for f in ["state.db", "state.db.status.json", "state.db.lock"] {
        std::fs::write(elsewhere.join(f), "keep").unwrap();
    }
    let state_dir = s.at("/var/lib/dirwatcher");
    std::fs::remove_dir(&state_dir).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &state_dir).unwrap();
    std::fs::write(s.at("/var/log/dirwatcher/failed_jobs.log"), "{}\n").unwrap();
    let out = ok(s.uninstall(&["--purge"]));
    for f in ["state.db", "state.db.status.json", "state.db.lock"] {
        assert!(
            elsewhere.join(f).exists(),
            "{f} removed through the link:\n{out}"
        );
    }
    assert!(
        out.contains("reached through the symbolic link") && out.contains("a symbolic link where"),
        "{out}"
    );
    assert!(
        std::fs::symlink_metadata(&state_dir).is_ok(),
        "the link itself is the admin's"
    );
    for gone in ["/var/log/dirwatcher", "/etc/dirwatcher/config.yaml"] {
        assert!(!s.at(gone).exists(), "{gone} still there:\n{out}");
    }
}

/// One root, one daemon: that is the promise (never submit a directory twice), whatever --force says.
#[test]
fn an_instance_on_a_root_already_watched_or_a_port_already_taken_is_refused() {
    let s = Staging::new("taken");
    ok(s.install(&["--metrics-listen", "127.0.0.1:9187"]));
    let err = refused(s.install(&["--instance", "dup", "--force"]));
    assert!(
        err.contains("submit every directory twice") && err.contains("config.yaml"),
        "{err}"
    );
    let b = s.another_root("b");
    ok(s.install_for(&b, &["--instance", "b"]));
    let before = s.snapshot();
    let err = refused(s.install_for(&b, &["--instance", "c"]));
    assert!(err.contains("dirwatcher@b"), "{err}");
    // The plain service cannot move onto an instance's root either.
    let err = refused(s.install_for(&b, &["--force"]));
    assert!(err.contains("dirwatcher@b"), "{err}");
    let d = s.another_root("d");
    let err = refused(s.install_for(
        &d,
        &["--instance", "d", "--metrics-listen", "127.0.0.1:9187"],
    ));
    assert!(err.contains("--metrics-listen 127.0.0.1:9188"), "{err}");
    assert!(
        s.snapshot() == before,
        "a refused install changed something"
    );
}

#[test]
fn a_bad_instance_name_is_refused_with_the_rule() {
    let s = Staging::new("badname");
    for name in ["a b", "../etc", "-x", "x/y", "config", ""] {
        let err = refused(s.install(&[&format!("--instance={name}")]));
        assert!(
            err.contains("--instance") && err.contains("fix:"),
            "{name:?}: {err}"
        );
    }
    // The template reads /etc/dirwatcher/NAME.yaml: another config path cannot work.
    let err = refused(s.install(&["--instance", "a", "--config-path", "/etc/x.yaml"]));
    assert!(err.contains("--config-path"), "{err}");
    assert!(
        !s.dest.exists(),
        "a refused install created {}",
        s.dest.display()
    );
}

#[test]
fn uninstalling_one_instance_leaves_the_other_and_the_shared_files() {
    let s = Staging::new("uninst2");
    let b = s.another_root("b");
    ok(s.install(&["--instance", "a"]));
    ok(s.install_for(&b, &["--instance", "b"]));
    let before = s.snapshot();
    let out = ok(s.uninstall(&["--instance", "a", "--purge"]));
    let of_a = [
        "/etc/dirwatcher/a.yaml",
        "/etc/systemd/system/dirwatcher@a.service.d",
        "/var/lib/dirwatcher/a",
        "/var/log/dirwatcher/a",
    ];
    for gone in of_a {
        assert!(!s.at(gone).exists(), "{gone} still there:\n{out}");
    }
    let after = s.snapshot();
    let not_a = |p: &PathBuf| !of_a.iter().any(|g| p.starts_with(s.at(g)));
    for (p, v) in before.iter().filter(|(p, _)| not_a(p)) {
        assert!(
            after.get(p) == Some(v),
            "uninstalling a touched {}:\n{out}",
            p.display()
        );
    }
    assert!(out.contains("in use by dirwatcher@b.service"), "{out}");
    ok(s.uninstall(&["--instance", "b"]));
    for gone in [
        "/etc/systemd/system/dirwatcher@.service",
        "/opt/dirwatcher/dirwatcher",
    ] {
        assert!(!s.at(gone).exists(), "{gone} outlived the last instance");
    }
}

#[test]
fn the_installed_template_passes_systemd_analyze_verify() {
    let s = Staging::new("verifytpl");
    ok(s.install(&["--instance", "cryo"]));
    if !systemd_analyze_present("the_installed_template_passes_systemd_analyze_verify") {
        return;
    }
    let template =
        std::fs::read_to_string(s.at("/etc/systemd/system/dirwatcher@.service")).unwrap();
    let staged_bin = s.at("/opt/dirwatcher/dirwatcher");
    let adjusted = template.replace(
        "=/opt/dirwatcher/dirwatcher ",
        &format!("={} ", staged_bin.display()),
    );
    let dir = s.tmp.path().join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dirwatcher@.service"), adjusted).unwrap();
    std::os::unix::fs::symlink("dirwatcher@.service", dir.join("dirwatcher@cryo.service")).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("dirwatcher@cryo.service"))
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "systemd-analyze verify:\n{}",
        text(&o)
    );
}
