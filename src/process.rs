//! The one home of child processes: argument vectors (never a local shell), stdin from `/dev/null`, an own
//! process group, stdout/stderr drained on threads, a hard timeout, then SIGTERM → grace → SIGKILL — and
//! the one place that decides a child's environment ([`child_env`]): the daemon's, minus every variable
//! that changes what Slurm's commands submit or print and the service manager's own, plus the call's extras.
//!
//! Must never: build a command line for a shell, inherit the daemon's stdin, wait without a bound, or pass
//! a withheld variable (`SBATCH_*`, `SQUEUE_FORMAT`, `NOTIFY_SOCKET`, …) to a child.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

/// A command to run: program, arguments and extra environment.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Program name (looked up in `PATH`) or path.
    pub program: OsString,
    /// Arguments, each passed as one argv element.
    pub args: Vec<OsString>,
    /// Extra environment variables on top of the daemon's cleaned one ([`child_env`]); passed as given,
    /// even a name that would otherwise be withheld (the call asks for it, e.g. `SLURM_TIME_FORMAT=%s`).
    pub env: Vec<(OsString, OsString)>,
}

impl Invocation {
    /// A new invocation of `program` without arguments.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Invocation {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }
}

/// What a finished child produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Why running a child did not give a successful exit.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started (not installed, not executable).
    #[error("cannot run `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// It ran longer than allowed and was killed.
    #[error("`{program}` did not finish within {after:?} and was killed (stderr: {stderr:?})")]
    TimedOut {
        /// The program.
        program: String,
        /// The bound.
        after: Duration,
        /// What it wrote to stderr before it was killed.
        stderr: String,
    },
    /// It exited non-zero or was killed by a signal.
    #[error("`{program}` failed with {status_text}: {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Exit code, if it exited.
        code: Option<i32>,
        /// `exit code N` or `signal N`.
        status_text: String,
        /// Trimmed stderr.
        stderr: String,
        /// Stdout (some tools explain themselves there).
        stdout: String,
    },
}

/// Runs `inv` to completion within `timeout`; a non-zero exit is an error carrying the trimmed stderr.
pub fn run(inv: &Invocation, timeout: Duration) -> Result<Output, ProcessError> {
    run_fed(inv, None, timeout)
}

/// Like [`run`], with `input` on the child's stdin instead of `/dev/null` (written on a thread, so a child
/// that does not read it cannot block us; the pipe is closed after it). The way to hand a child a secret:
/// never on its command line, which every user can read in `/proc`.
pub fn run_with_input(
    inv: &Invocation,
    input: &[u8],
    timeout: Duration,
) -> Result<Output, ProcessError> {
    run_fed(inv, Some(input), timeout)
}

fn run_fed(
    inv: &Invocation,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, ProcessError> {
    let program = inv.program.to_string_lossy().into_owned();
    let env = child_env(std::env::vars_os(), &inv.env);
    let mut cmd = Command::new(on_path(&inv.program, &env));
    cmd.args(&inv.args)
        .env_clear()
        .envs(env)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let input = input.to_vec();
        // A child that exits without reading makes the write fail (EPIPE): its exit status says why.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let deadline = std::time::Instant::now() + timeout;
    let out_t = drain(child.stdout.take());
    let err_t = drain(child.stderr.take());
    let status = match child.wait_timeout(timeout) {
        Ok(Some(s)) => s,
        Ok(None) | Err(_) => {
            terminate_group(&mut child, Duration::from_secs(2));
            let soon = std::time::Instant::now() + LEFT_OPEN_GRACE;
            let stderr = trim(&err_t.until(soon).unwrap_or_default());
            let _ = out_t.until(soon);
            return Err(ProcessError::TimedOut {
                program,
                after: timeout,
                stderr,
            });
        }
    };
    // The child has exited, but something it started in the background may hold its output open (a
    // hook's `sleep 30 &`): its output is read for a moment more (within the deadline), then its process
    // group is killed, and what still holds the pipe (a `setsid` child has left the group) is left
    // behind — never waited for.
    let after_exit = deadline.min(std::time::Instant::now() + AFTER_EXIT_GRACE);
    let (mut stdout, mut stderr) = (out_t.until(after_exit), err_t.until(after_exit));
    if stdout.is_none() || stderr.is_none() {
        // SAFETY: kill(2) on the process group this child led; what is left of it is ours to end.
        unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
        let soon = std::time::Instant::now() + LEFT_OPEN_GRACE;
        stdout = stdout.or_else(|| out_t.until(soon));
        stderr = stderr.or_else(|| err_t.until(soon));
    }
    let stdout = stdout.unwrap_or_default();
    let stderr = stderr.unwrap_or_default();
    if status.success() {
        return Ok(Output {
            status,
            stdout,
            stderr,
        });
    }
    Err(ProcessError::Failed {
        program,
        code: status.code(),
        status_text: status_text(status),
        stderr: trim(&stderr),
        stdout: trim(&stdout),
    })
}

/// The file a bare program name runs, looked up in the child's own `PATH` (the last one in `env`, as the
/// child would see it; `/bin:/usr/bin` without one, as execvp(3)); a name with a `/`, or one found nowhere,
/// is returned as given (the spawn then fails and says so). Relative `PATH` entries are skipped: what runs
/// must not depend on the daemon's working directory.
///
/// Why not leave it to the child: given a bare name and a `PATH` of its own, `std` forks the daemon
/// instead of using posix_spawn(3) (vfork), copying the page tables of a daemon that holds 20,000 jobs in
/// memory for every `squeue` and `sbatch`, and paying a copy-on-write fault for each page it writes until
/// the child has exec'd.
pub fn on_path(program: &OsStr, env: &[(OsString, OsString)]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    if program.as_bytes().contains(&b'/') || program.is_empty() {
        return program.to_owned();
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(OsStr::new("/bin:/usr/bin"), |(_, v)| v.as_os_str());
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|f| {
            std::fs::metadata(f).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map_or_else(|| program.to_owned(), std::path::PathBuf::into_os_string)
}

/// Why a variable of the daemon's environment is not passed to a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// It changes what `sbatch` submits (`SBATCH_PARTITION`, `SBATCH_EXPORT=NONE`), what `squeue`, `sacct`
    /// or `scontrol` print (`SQUEUE_FORMAT`, `SACCT_FORMAT`, `SLURM_TIME_FORMAT`), or what `srun` does inside
    /// the job (`SRUN_*`, `SALLOC_*`). The config says what a job gets; the shell that started the daemon
    /// must not.
    Slurm,
    /// The service manager's handles for this daemon (`NOTIFY_SOCKET`, `WATCHDOG_*`, `LISTEN_*`,
    /// `JOURNAL_STREAM`, …): a job holding them could notify systemd as the daemon, take a socket meant for
    /// it, or log to the journal instead of its output file.
    ServiceManager,
    /// A secret the config reads from the environment (`behavior.smtp_pass_env`,
    /// `notify.webhook_token_env`): for the daemon alone, never for a job, `sbatch` (which would export it
    /// into every Slurm job), a hook or a helper.
    Secret,
}

/// The names of the variables the config reads secrets from, as registered by [`withhold_secret`].
static SECRET_NAMES: std::sync::RwLock<Vec<OsString>> = std::sync::RwLock::new(Vec::new());

/// Registers `name` as a variable that holds a secret: from now on it is withheld from every child of this
/// process (called when the config reads a secret from the environment, at start and at each reload).
pub fn withhold_secret(name: &str) {
    let mut names = SECRET_NAMES.write().unwrap_or_else(|e| e.into_inner());
    if !names.iter().any(|n| n == name) {
        names.push(name.into());
    }
}

/// The values of the secret variables this process removed from its own environment at start
/// ([`take_env_secrets`]), by name: what a reload reads instead of the variable, which is gone by then.
static KEPT_SECRETS: std::sync::RwLock<Vec<(OsString, String)>> =
    std::sync::RwLock::new(Vec::new());

/// The secret in the environment variable `name`: the value kept when it was taken out of this process's
/// environment ([`take_env_secrets`]), else the variable's own; `None` when neither is there (or empty).
pub fn env_secret(name: &str) -> Option<String> {
    let kept = KEPT_SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if let Some((_, v)) = kept.iter().find(|(n, _)| n == name) {
        return Some(v.clone());
    }
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// Takes every secret variable registered so far ([`withhold_secret`], by the config just read) out of
/// this process's environment, keeping its value for [`env_secret`]: then nothing that reads the
/// environment later — a library, a child spawned without [`child_env`], a core dump's reader — finds it.
/// Returns the names taken, for the log. (On Linux `/proc/PID/environ` still shows the block the process
/// was started with: that is the kernel's copy, readable only by the same user and root.)
///
/// # Safety
/// No other thread may exist, or at least none that reads or writes the environment meanwhile
/// (`std::env::remove_var`'s contract): call it at start, before the daemon spawns any.
pub unsafe fn take_env_secrets() -> Vec<String> {
    let names = SECRET_NAMES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut kept = KEPT_SECRETS.write().unwrap_or_else(|e| e.into_inner());
    let mut taken = Vec::new();
    for name in names {
        let Some(value) = std::env::var_os(&name) else {
            continue;
        };
        if let Some(v) = value.to_str().filter(|v| !v.is_empty())
            && !kept.iter().any(|(n, _)| *n == name)
        {
            kept.push((name.clone(), v.to_string()));
        }
        // SAFETY: the caller's promise: no other thread touches the environment.
        unsafe { std::env::remove_var(&name) };
        taken.push(name.to_string_lossy().into_owned());
    }
    taken
}

/// Prefixes of the variables that Slurm's client commands read (sbatch(1), squeue(1), sacct(1),
/// scontrol(1), sinfo(1), salloc(1), srun(1): "INPUT ENVIRONMENT VARIABLES"). `SLURM_CONF` is kept.
const SLURM_PREFIXES: [&str; 8] = [
    "SBATCH_",
    "SALLOC_",
    "SRUN_",
    "SQUEUE_",
    "SACCT_",
    "SCONTROL_",
    "SINFO_",
    "SLURM_",
];

/// The one Slurm variable that is passed on: which cluster's `slurm.conf` the commands read.
const SLURM_KEPT: &str = "SLURM_CONF";

/// What systemd sets for a service (systemd.exec(5), "Environment Variables in Spawned Processes") that
/// belongs to the daemon alone.
const SERVICE_MANAGER: [&str; 9] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
    "SYSTEMD_EXEC_PID",
    "MEMORY_PRESSURE_WATCH",
    "MEMORY_PRESSURE_WRITE",
    // Where the unit's credentials are (`LoadCredential=`, e.g. the SMTP password): a job or hook run
    // inside the unit as the same user could read them there.
    "CREDENTIALS_DIRECTORY",
];

/// Whether (and why) the daemon's variable `name` is kept from children.
pub fn withheld(name: &OsStr) -> Option<Withheld> {
    let name = name.as_encoded_bytes();
    let starts = |p: &str| name.starts_with(p.as_bytes());
    if name != SLURM_KEPT.as_bytes() && SLURM_PREFIXES.iter().any(|p| starts(p)) {
        return Some(Withheld::Slurm);
    }
    if starts("LISTEN_") || SERVICE_MANAGER.iter().any(|v| name == v.as_bytes()) {
        return Some(Withheld::ServiceManager);
    }
    let secrets = SECRET_NAMES.read().unwrap_or_else(|e| e.into_inner());
    if secrets.iter().any(|s| s.as_encoded_bytes() == name) {
        return Some(Withheld::Secret);
    }
    None
}

/// The environment of a child: `daemon`'s variables (normally `std::env::vars_os()`) without the withheld
/// ones, then `extra` (later entries win, as with `Command::env`). For `sbatch`, whose default
/// `--export=ALL` hands its environment to the job, this is also the job's: the cleaned daemon environment,
/// `WATCH_DIR` and `job.env`.
pub fn child_env(
    daemon: impl IntoIterator<Item = (OsString, OsString)>,
    extra: &[(OsString, OsString)],
) -> Vec<(OsString, OsString)> {
    daemon
        .into_iter()
        .filter(|(k, _)| withheld(k).is_none())
        .chain(extra.iter().cloned())
        .collect()
}

/// The names of `daemon`'s variables that are withheld from Slurm commands for changing what they do
/// (sorted; for one line at start, so an operator knows their `SBATCH_PARTITION` is not used).
pub fn withheld_slurm_names(daemon: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<String> {
    let mut names: Vec<String> = daemon
        .into_iter()
        .filter(|(k, _)| withheld(k) == Some(Withheld::Slurm))
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `exit code N` or `signal N`.
pub fn status_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown status".into(),
    }
}

/// SIGTERM to the child's process group, then SIGKILL after `grace`; always reaps the child.
pub fn terminate_group(child: &mut Child, grace: Duration) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: kill(2) with a negative pid signals the process group we created for this child.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    if let Ok(Some(_)) = child.wait_timeout(grace) {
        // The leader is gone; make sure no member of its group lingers.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        return;
    }
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
}

/// How long output is still read after the child exited, while something it left holds the pipe open.
const AFTER_EXIT_GRACE: Duration = Duration::from_secs(1);

/// How long output is still read after the process group that held it open was killed.
const LEFT_OPEN_GRACE: Duration = Duration::from_millis(200);

/// A child's output, read to its end on a thread of its own.
struct Drain(Option<crossbeam_channel::Receiver<String>>);

fn drain<R: Read + Send + 'static>(r: Option<R>) -> Drain {
    Drain(r.map(|mut r| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            // No copy of a valid answer (sacct/squeue print megabytes for 20,000 jobs).
            let _ = tx.send(
                String::from_utf8(buf)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            );
        });
        rx
    }))
}

impl Drain {
    /// The whole output, if the pipe was closed by `deadline` (empty when there was no pipe); `None` while
    /// something still holds it open.
    fn until(&self, deadline: std::time::Instant) -> Option<String> {
        match &self.0 {
            None => Some(String::new()),
            Some(rx) => rx.recv_deadline(deadline).ok(),
        }
    }
}

/// Trims and bounds a child's output for logs and error messages.
pub fn trim(s: &str) -> String {
    let t = s.trim();
    if t.len() <= 2000 {
        return t.to_string();
    }
    let mut cut = 2000;
    while !t.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &t[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A hook that exits at once but leaves a child holding its output (in its group, or in a session of
    /// its own): the call returns by its deadline with the hook's own exit status, never after the child.
    #[test]
    fn a_background_child_holding_the_output_open_is_not_waited_for() {
        for script in [
            "sleep 30 &",
            "setsid sleep 30 &",
            "echo hi; exec 2>&-; sleep 30 &",
        ] {
            let t = Instant::now();
            let inv = Invocation::new("sh").arg("-c").arg(script);
            let out = run(&inv, Duration::from_secs(1));
            assert!(out.is_ok(), "{script}: {out:?}");
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{script}: waited {:?} for a background child",
                t.elapsed()
            );
        }
    }

    #[test]
    fn captures_output_and_failure_status() {
        let ok = run(
            &Invocation::new("sh")
                .arg("-c")
                .arg("echo out; echo err >&2"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!((ok.stdout.trim(), ok.stderr.trim()), ("out", "err"));
        let e = run(
            &Invocation::new("sh").arg("-c").arg("echo bad >&2; exit 3"),
            Duration::from_secs(5),
        )
        .unwrap_err();
        match e {
            ProcessError::Failed { code, stderr, .. } => {
                assert_eq!((code, stderr.as_str()), (Some(3), "bad"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn hung_child_and_its_group_are_killed_at_the_deadline() {
        let t = Instant::now();
        let e = run(
            &Invocation::new("sh").arg("-c").arg("sleep 30 & sleep 30"),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(e, ProcessError::TimedOut { .. }), "{e:?}");
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "took {:?}",
            t.elapsed()
        );
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn slurm_and_service_manager_variables_are_withheld_and_the_rest_kept() {
        for name in [
            "SBATCH_PARTITION",
            "SBATCH_EXPORT",
            "SALLOC_ACCOUNT",
            "SRUN_CPUS_PER_TASK",
            "SQUEUE_FORMAT",
            "SACCT_FORMAT",
            "SCONTROL_ALL",
            "SINFO_FORMAT",
            "SLURM_TIME_FORMAT",
            "SLURM_CLUSTERS",
            "SLURM_JOB_ID",
        ] {
            assert_eq!(withheld(OsStr::new(name)), Some(Withheld::Slurm), "{name}");
        }
        for name in [
            "NOTIFY_SOCKET",
            "WATCHDOG_PID",
            "WATCHDOG_USEC",
            "JOURNAL_STREAM",
            "INVOCATION_ID",
            "MEMORY_PRESSURE_WATCH",
            "MEMORY_PRESSURE_WRITE",
            "CREDENTIALS_DIRECTORY",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
        ] {
            assert_eq!(
                withheld(OsStr::new(name)),
                Some(Withheld::ServiceManager),
                "{name}"
            );
        }
        for name in [
            "SLURM_CONF",
            "PATH",
            "HOME",
            "LANG",
            "SLURMX",
            "MY_SBATCH_PARTITION",
            "WATCH_DIR",
        ] {
            assert_eq!(withheld(OsStr::new(name)), None, "{name}");
        }
    }

    #[test]
    fn child_env_drops_the_withheld_and_adds_the_extras_last() {
        let daemon = vars(&[
            ("PATH", "/usr/bin"),
            ("SBATCH_PARTITION", "bogus"),
            ("SLURM_CONF", "/etc/slurm/slurm.conf"),
            ("SLURM_TIME_FORMAT", "relative"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("DW_SITE", "x"),
        ]);
        let extra = vars(&[("WATCH_DIR", "/data/a"), ("SLURM_TIME_FORMAT", "%s")]);
        assert_eq!(
            child_env(daemon.clone(), &extra),
            vars(&[
                ("PATH", "/usr/bin"),
                ("SLURM_CONF", "/etc/slurm/slurm.conf"),
                ("DW_SITE", "x"),
                ("WATCH_DIR", "/data/a"),
                ("SLURM_TIME_FORMAT", "%s"),
            ])
        );
        assert_eq!(
            withheld_slurm_names(daemon),
            ["SBATCH_PARTITION", "SLURM_TIME_FORMAT"]
        );
    }

    #[test]
    fn a_bare_name_runs_the_first_executable_of_the_childs_own_path() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        // In `a` but not executable; in `b` executable: `b`'s is the one execvp would run.
        std::fs::write(a.join("tool"), "#!/bin/sh\necho a\n").unwrap();
        std::fs::write(b.join("tool"), "#!/bin/sh\necho b\n").unwrap();
        std::fs::set_permissions(b.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("relative:{}:{}", a.display(), b.display());
        let env = vars(&[("PATH", "/nowhere"), ("PATH", &path)]);
        assert_eq!(
            on_path(OsStr::new("tool"), &env),
            b.join("tool").into_os_string()
        );
        assert_eq!(
            on_path(OsStr::new("./tool"), &env),
            OsString::from("./tool")
        );
        assert_eq!(
            on_path(OsStr::new("absent"), &env),
            OsString::from("absent")
        );
        let mut inv = Invocation::new("tool");
        inv.env.push(("PATH".into(), path.into()));
        assert_eq!(run(&inv, Duration::from_secs(5)).unwrap().stdout, "b\n");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let e = run(
            &Invocation::new("/nonexistent/prog"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(e, ProcessError::Spawn { .. }));
    }
}
