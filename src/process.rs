//! The one home of child processes: argument vectors (never a local shell), stdin from `/dev/null`, an own
//! process group, stdout/stderr drained on threads, a hard timeout, then SIGTERM → grace → SIGKILL.
//!
//! Must never: build a command line for a shell, inherit the daemon's stdin, or wait without a bound.

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
    /// Extra environment variables on top of the daemon's.
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
    let program = inv.program.to_string_lossy().into_owned();
    let mut cmd = Command::new(&inv.program);
    cmd.args(&inv.args)
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    let out_t = drain(child.stdout.take());
    let err_t = drain(child.stderr.take());
    let status = match child.wait_timeout(timeout) {
        Ok(Some(s)) => s,
        Ok(None) | Err(_) => {
            terminate_group(&mut child, Duration::from_secs(2));
            let stderr = trim(&join(err_t));
            let _ = join(out_t);
            return Err(ProcessError::TimedOut {
                program,
                after: timeout,
                stderr,
            });
        }
    };
    let stdout = join(out_t);
    let stderr = join(err_t);
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

fn drain<R: Read + Send + 'static>(r: Option<R>) -> Option<std::thread::JoinHandle<String>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

fn join(h: Option<std::thread::JoinHandle<String>>) -> String {
    h.and_then(|h| h.join().ok()).unwrap_or_default()
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
