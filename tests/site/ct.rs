//! The site container and the service in it, as an administrator reaches them: shell commands run inside
//! through `scripts/site-cluster.sh run` (systemctl, journalctl, sacct, dpkg), the freshly built `.deb`
//! installed from scratch for every check, and polling with a deadline (never a bare sleep as
//! synchronisation).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The project's site script.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/site-cluster.sh");
/// The watched root inside the container (the package's example uses it too).
pub const ROOT: &str = "/data/incoming";
/// The config the package's unit reads.
pub const CONFIG: &str = "/etc/dirwatcher/config.yaml";

/// The Slurm and systemd lines of the container under test (`DIRWATCHER_SITE_SUITE`, as
/// `scripts/site-cluster.sh` reads it): trixie (the default) has Slurm 24.11 and systemd 257, sid Slurm
/// 26.05 and systemd 262.
pub fn lines() -> (&'static str, &'static str) {
    match std::env::var("DIRWATCHER_SITE_SUITE").as_deref() {
        Ok("sid") => ("26.05", "262"),
        Ok("trixie") | Err(_) => ("24.11", "257"),
        Ok(other) => panic!("DIRWATCHER_SITE_SUITE={other}: the site checks know trixie and sid"),
    }
}

/// What a command inside the container did.
#[derive(Debug)]
pub struct Out {
    /// It exited 0.
    pub ok: bool,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok={}\n--- stdout\n{}\n--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

/// Runs `script` with bash inside the container, `input` on its stdin.
pub fn sh_with_input(script: &str, input: &[u8]) -> Out {
    let mut child = Command::new("bash")
        .args([SCRIPT, "run", "bash", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/site-cluster.sh");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(input)
        .expect("write to the command's stdin");
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    Out {
        ok: o.status.success(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs `script` with bash inside the container.
pub fn sh(script: &str) -> Out {
    sh_with_input(script, b"")
}

/// Runs `script` inside; panics with its output unless it exits 0. Returns its stdout, trimmed.
pub fn must(script: &str) -> String {
    let o = sh(script);
    assert!(o.ok, "inside the site container, `{script}` failed:\n{o}");
    o.stdout.trim().to_string()
}

/// Polls `cond` every 250 ms until it returns `Some`, or panics with `what` after `deadline`.
pub fn wait_for<T>(deadline: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() >= deadline {
            panic!(
                "timed out after {deadline:?} waiting for {what}\n{}",
                site_state()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What an administrator looks at when a job does not come: the service's last lines, the queue with
/// its reasons, the node, the service user's association, the controller's last lines. For the message
/// of a check that timed out (each part best effort).
pub fn site_state() -> String {
    let o = sh(r#"exec 2>&1
echo "--- site state at $(date -u +%FT%TZ)"
echo "--- journalctl -u 'dirwatcher*' -n 40"; journalctl -u 'dirwatcher*' -n 40 --no-pager -q -o short-precise
echo "--- squeue"; squeue -a -o '%i %j %u %T %r %V' | tail -n 20
echo "--- sacct (last 30 min)"; sacct -a -X -P -n -S now-1800 -o JobIDRaw,JobName%40,User,State,Reason | tail -n 20
echo "--- sinfo"; sinfo -N -o '%N %T %E'
echo "--- the service user in slurmctld"; id dirwatcher; scontrol show assoc_mgr users=dirwatcher flags=assoc | grep UserName=dirwatcher
echo "--- journalctl -u slurmctld -n 20"; journalctl -u slurmctld -n 20 --no-pager -q -o short-precise
true"#);
    format!("{}{}", o.stdout, o.stderr)
}

/// One check at a time: there is one container and one service.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when the site checks must run (CI, or asked for explicitly).
fn required() -> bool {
    std::env::var("DIRWATCHER_REQUIRE_SLURM").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether the container runs with a usable cluster. When it does not: panics if the checks are
/// required, else says that the check is skipped and returns false.
pub fn available(test: &str) -> bool {
    static UP: OnceLock<bool> = OnceLock::new();
    let up = *UP.get_or_init(|| {
        Command::new("bash")
            .args([SCRIPT, "status"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !up {
        assert!(
            !required(),
            "{test}: the site container is required (CI=true or DIRWATCHER_REQUIRE_SLURM=1) but does \
             not run; start it with `scripts/site-cluster.sh up`"
        );
        eprintln!("SKIPPED {test}: no site container (start it with `scripts/site-cluster.sh up`)");
    }
    up
}

/// The `.deb` under test: `DIRWATCHER_SITE_DEB`, else the newest `target/debian/dirwatcher_*.deb`. It
/// must be newer than every source file, so a stale package is never what passes.
pub fn deb() -> PathBuf {
    if let Some(p) = std::env::var_os("DIRWATCHER_SITE_DEB") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    let newest = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dirwatcher_"))
                && p.extension().is_some_and(|x| x == "deb")
        })
        .max_by_key(|p| mtime(p))
        .unwrap_or_else(|| {
            panic!(
                "no .deb in `{}`: build it with `scripts/build-deb.sh`",
                dir.display()
            )
        });
    let built = mtime(&newest);
    for src in ["src", "packaging", "Cargo.toml"] {
        if let Some((p, t)) = newest_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join(src))
            && t > built
        {
            panic!(
                "`{}` is older than `{}`: rebuild it with `scripts/build-deb.sh`",
                newest.display(),
                p.display()
            );
        }
    }
    newest
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH)
}

fn newest_in(p: &Path) -> Option<(PathBuf, std::time::SystemTime)> {
    let meta = std::fs::symlink_metadata(p).ok()?;
    if !meta.is_dir() {
        return Some((p.to_path_buf(), mtime(p)));
    }
    std::fs::read_dir(p)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| newest_in(&e.path()))
        .max_by_key(|(_, t)| *t)
}

/// The previous release's `.deb` (`scripts/build-prev-deb.sh` puts it in `target/debian/previous/`).
pub fn previous_deb() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian/previous");
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .unwrap_or_else(|| {
            panic!(
                "no .deb in `{}`: build the previous release's with `scripts/build-prev-deb.sh`",
                dir.display()
            )
        })
}

/// Copies the previous release's package into the container (`/root/dirwatcher-previous.deb`); returns
/// that path.
pub fn previous_deb_inside() -> &'static str {
    const AT: &str = "/root/dirwatcher-previous.deb";
    let p = previous_deb();
    let o = sh_with_input(&format!("cat > {AT}"), &std::fs::read(&p).unwrap());
    assert!(
        o.ok,
        "cannot copy `{}` into the container:\n{o}",
        p.display()
    );
    AT
}

/// Copies the package into the container once per test run (`/root/dirwatcher.deb`).
pub fn deb_inside() {
    static COPIED: OnceLock<()> = OnceLock::new();
    COPIED.get_or_init(|| {
        let p = deb();
        let bytes = std::fs::read(&p).unwrap();
        let o = sh_with_input("cat > /root/dirwatcher.deb", &bytes);
        assert!(
            o.ok,
            "cannot copy `{}` into the container:\n{o}",
            p.display()
        );
    });
}

/// A config for the checks: the site's partition and account, quick polling.
pub fn config(job_lines: &[&str]) -> String {
    let mut y = format!(
        "watch:\n  root: {ROOT}\n  poll_interval_sec: 0.5\n  stability_checks: 2\n  stability_interval_sec: 0.3\n\
         job:\n  partition: main\n  account: dev\n"
    );
    for l in job_lines {
        y += &format!("  {l}\n");
    }
    y
}

/// A job that prints what a user would look at: its umask and its environment.
pub const ENV_JOB: &str = "wrap_cmd: sh -c 'echo UMASK=$(umask); env | sort' job";

/// A unique-per-run token for directory names (sacct keeps every earlier run's jobs).
pub fn token() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{:x}", n as u64)
}

/// The controller accepts jobs of the service user (README.package, step 3), as an administrator checks
/// it: the association is known to slurmctld *with the user's uid* (one added before the user existed on
/// this host is held as uid 4294967294 until `scontrol reconfigure`: every `sbatch` is then "Invalid
/// account"), and `sbatch --test-only` as the user passes. Said on stderr when a reconfigure was needed;
/// fails with Slurm's own view when the controller still refuses after 60 s.
const ASSOCIATION_READY: &str = r#"uid=$(id -u dirwatcher)
ok=0 reconfigured=0
for i in $(seq 1 200); do
  if scontrol show assoc_mgr users=dirwatcher accounts=dev flags=assoc | grep -q "UserName=dirwatcher($uid)" \
    && (cd / && runuser -u dirwatcher -- sbatch --test-only -A dev -p main --wrap true >/dev/null 2>&1); then
    ok=1; break
  fi
  if [ "$i" = 30 ] && [ "$reconfigured" = 0 ]; then
    echo "site setup: slurmctld does not accept jobs of dirwatcher (uid $uid) 9 s after sacctmgr: scontrol reconfigure" >&2
    scontrol show assoc_mgr users=dirwatcher accounts=dev flags=assoc | grep 'UserName=dirwatcher' >&2 || true
    scontrol reconfigure >&2 || true
    reconfigured=1
  fi
  sleep 0.3
done
if [ "$ok" != 1 ]; then
  echo "site setup: slurmctld still refuses jobs of dirwatcher (uid $uid) after 60 s:" >&2
  (cd / && runuser -u dirwatcher -- sbatch --test-only -A dev -p main --wrap true) >&2 || true
  scontrol show assoc_mgr users=dirwatcher accounts=dev flags=assoc >&2 || true
  sinfo -N -o '%N %T %E' >&2 || true
  exit 1
fi"#;

/// The service as the package sets it up, following README.package: installed from the `.deb` on a
/// clean slate, `config` as `/etc/dirwatcher/config.yaml`, the root made writable by a drop-in, the
/// service user a Slurm user of account `dev`. Not started.
pub struct Service {
    /// The journal cursor when the check began: only this check's lines are read.
    pub cursor: String,
}

impl Service {
    /// Installs the package afresh with `config`.
    pub fn install(config: &str) -> Service {
        deb_inside();
        Service::install_from("/root/dirwatcher.deb", config)
    }

    /// Installs the package at `deb` (a path inside the container) afresh with `config`.
    pub fn install_from(deb: &str, config: &str) -> Service {
        let setup = format!(
            r#"set -e
systemctl stop dirwatcher 'dirwatcher@*' 2>/dev/null || true
if dpkg-query -W -f='${{Status}}' dirwatcher 2>/dev/null | grep -q 'install ok'; then apt-get purge -y -q dirwatcher >/dev/null; fi
rm -rf /etc/systemd/system/dirwatcher.service.d /etc/systemd/system/dirwatcher@*.service.d /etc/dirwatcher \
  /var/lib/dirwatcher /var/log/dirwatcher {ROOT} {ROOT}-*
systemctl daemon-reload
systemctl reset-failed dirwatcher 2>/dev/null || true
dpkg -i {deb} >/root/dpkg.log 2>&1 || {{ cat /root/dpkg.log >&2; exit 1; }}
mkdir -p {ROOT}
chown dirwatcher:dirwatcher {ROOT}
printf '[Service]\nReadWritePaths={ROOT}\n' | systemctl edit --stdin --drop-in=local-root dirwatcher
if ! sacctmgr -n -P show assoc where user=dirwatcher account=dev format=user | grep -qx dirwatcher; then
  sacctmgr -i add user dirwatcher account=dev >/dev/null
fi
{ASSOCIATION_READY}
journalctl --show-cursor -n 0 -q | sed -n 's/^-- cursor: //p'
"#
        );
        let o = sh(&setup);
        assert!(
            o.ok,
            "inside the site container, the package setup failed:\n{o}"
        );
        for l in o.stderr.lines().filter(|l| l.starts_with("site setup: ")) {
            record("site-setup", l);
        }
        let cursor = o.stdout.trim().to_string();
        let svc = Service { cursor };
        svc.write_config(config);
        svc
    }

    /// Replaces the config (mode 0640, group dirwatcher, as an administrator would).
    pub fn write_config(&self, config: &str) {
        let o = sh_with_input(
            &format!("install -m 0640 -g dirwatcher /dev/stdin {CONFIG}"),
            config.as_bytes(),
        );
        assert!(o.ok, "cannot write the config:\n{o}");
    }

    /// `systemctl start dirwatcher`, then waits until it is active.
    pub fn start(&self) {
        must("systemctl start dirwatcher");
        self.wait_active();
    }

    /// Waits (bounded) until the unit is active.
    pub fn wait_active(&self) {
        wait_for(Duration::from_secs(30), "dirwatcher to be active", || {
            (self.prop("ActiveState") == "active").then_some(())
        });
    }

    /// `systemctl show -P NAME dirwatcher`.
    pub fn prop(&self, name: &str) -> String {
        must(&format!("systemctl show -P {name} dirwatcher"))
    }

    /// The unit's journal since the check began (`journalctl -u dirwatcher`: dirwatcher's lines and
    /// systemd's about the unit, message text only), with extra `journalctl` arguments such as field
    /// matches.
    pub fn journal(&self, extra: &str) -> String {
        must(&format!(
            "journalctl -u dirwatcher --after-cursor='{}' --no-pager -q -o cat {extra}",
            self.cursor
        ))
    }

    /// Waits until the unit's journal has a line containing `needle`; returns that line.
    pub fn wait_journal(&self, needle: &str, deadline: Duration) -> String {
        wait_for(deadline, &format!("a journal line with {needle:?}"), || {
            self.journal("")
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })
    }

    /// Makes `<root>/<name>` as the service user, with data and a ready-file; returns its path.
    pub fn ready_dir(&self, name: &str) -> String {
        let dir = format!("{ROOT}/{name}");
        must(&format!(
            "runuser -u dirwatcher -- sh -c 'mkdir {dir} && echo payload > {dir}/data.txt && touch {dir}/_READY'"
        ));
        dir
    }
}

/// Slurm's view, as a user checks it.
pub mod slurm {
    use super::*;

    /// One accounting row of a job named `name`: `JobID|User|State` lines, every job with that name.
    pub fn jobs_named(name: &str) -> Vec<String> {
        must(&format!(
            "sacct -X -n -P -S now-86400 --name={name} --format=JobIDRaw,User,State"
        ))
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// The job's one accounting row, waited for (sacct lags a few seconds behind sbatch).
    pub fn wait_final_row(name: &str, deadline: Duration) -> Vec<String> {
        wait_for(
            deadline,
            &format!("a final accounting row for {name}"),
            || {
                let rows = jobs_named(name);
                rows.iter()
                    .all(|r| !r.ends_with("|PENDING") && !r.ends_with("|RUNNING"))
                    .then_some(rows)
                    .filter(|r| !r.is_empty())
            },
        )
    }
}

/// Appends a line to `target/site-report.txt` (what the checks measured: READY latency, the security
/// score, stop times), printed by `scripts/test.sh` after the run.
pub fn record(check: &str, line: &str) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/site-report.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
    {
        let _ = writeln!(f, "{check}: {line}");
    }
    eprintln!("{check}: {line}");
}
