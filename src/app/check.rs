//! `dirwatcher check-config`: the config's verdict, its warnings, the effective configuration and, with
//! `--slurm`, Slurm's own answer to the job it asks for.
//!
//! Owns: what check-config prints and which verdict it returns. Must never: change anything (a check is
//! safe beside a running daemon), or submit a job (`sbatch --test-only` creates none).

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::cli::ConfigFile;
use crate::config::{Config, ConfigError, ExecutorKind, JobCommand};
use crate::ops::{self, SlurmCheck};
use crate::out;

use super::error::AppError;
use super::load;

/// `dirwatcher check-config`.
pub fn check_config(
    config: &ConfigFile,
    slurm: bool,
    quiet: bool,
    secrets: bool,
) -> Result<(), AppError> {
    let cfg = if secrets {
        load::load(config)?
    } else {
        load::load_reading(config)?
    };
    if let Some(e) = refusal(&cfg, &config.path()) {
        return Err(AppError::Config(e));
    }
    warn_smtp_user_without_password(&cfg);
    for w in crate::output_dir::warnings(&cfg) {
        out::error(format_args!("warning: {w}"));
    }
    for w in crate::scan::mount_warnings(&cfg).0 {
        out::error(format_args!("warning: {w}"));
    }
    if quiet && !slurm {
        return Ok(());
    }
    out!(
        "# effective configuration of {} (valid)\n{}",
        config.path().display(),
        cfg.to_yaml()
    );
    if !slurm {
        return Ok(());
    }
    let (verdict, out, err) = ops::check_slurm(&cfg);
    out!("{out}");
    if !err.is_empty() {
        out::error(err.trim_end());
    }
    match verdict {
        SlurmCheck::Fine => Ok(()),
        SlurmCheck::Refused => Err(AppError::SlurmRefused),
        SlurmCheck::Unknown => Err(AppError::SlurmUnknown),
    }
}

/// An SMTP user with no password: a warning inside the unit, a note outside it (where the unit's
/// credential cannot be seen).
fn warn_smtp_user_without_password(cfg: &Config) {
    let Some(s) = &cfg.notify.smtp else { return };
    if s.user.is_none() || s.pass.is_some() || !cfg.unread_secrets.is_empty() {
        return;
    }
    if std::env::var_os(crate::config::credential::DIRECTORY_VAR).is_some() {
        out::error(
            "warning: `behavior.smtp_user` is set but no password is (the unit's credential \
             `smtp_pass`, `smtp_pass_file`, `smtp_pass_env` or `smtp_pass`): the relay will refuse \
             to log in; give the password, or remove the user for a relay without AUTH",
        );
    } else {
        // Outside the unit its credentials are not here: the config may rightly name none.
        out::error(
            "note: `behavior.smtp_user` is set and the config gives no password: the service must \
             get it as its credential `smtp_pass` (`LoadCredential=smtp_pass:FILE` in the unit), \
             else the relay will refuse to log in (or set `smtp_pass_file`, or remove the user \
             for a relay without AUTH)",
        );
    }
}

/// What `run` would refuse or fail at, of a config that parses: the checks that need the file system,
/// made without changing anything. The first one found is an error naming its key and line. What only
/// this user's permissions forbid is an error when this user is (or may be) the service user, and a
/// warning when the ledger belongs to another user (an operator checking the service's config).
fn refusal(cfg: &Config, file: &Path) -> Option<ConfigError> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let err = |key: &str, problem: String, fix: String| ConfigError {
        file: file.to_path_buf(),
        key: key.to_string(),
        line: key_line(&text, key),
        problem,
        fix,
        detail: None,
    };
    let b = &cfg.behavior;
    if b.ledger.is_none() && is_foreign_state(&b.state_file) {
        return Some(err(
            "behavior.state_file",
            format!(
                "`{}` is not a dirwatcher ledger (it looks like the JSON state file of the Python \
                 dirwatcher); `run` refuses it rather than take it over",
                b.state_file.display()
            ),
            "write a new path, e.g. `state_file: /var/lib/dirwatcher/state.db` (the ledger is an SQLite \
             database dirwatcher creates there)"
                .into(),
        ));
    }
    if b.ledger.is_none()
        && let Some((problem, fix)) = ledger_refusal(&b.state_file, &cfg.watch.root)
    {
        return Some(err("behavior.state_file", problem, fix));
    }
    let service_user = is_service_user(&b.state_file);
    let as_that_user = "check as that user: `sudo -u dirwatcher dirwatcher check-config`";
    if let JobCommand::Script(script) = &cfg.job.command {
        let local = cfg.job.executor == ExecutorKind::Local;
        if let Some(p) = script_problem(script, local) {
            let text = format!("`{}` {}", script.display(), p.text);
            if p.permission && !service_user {
                crate::out::error(format_args!(
                    "warning: `job.job_script` {text} (the service user may be; {as_that_user})"
                ));
            } else {
                let need = if local {
                    "readable and executable"
                } else {
                    "readable"
                };
                return Some(err(
                    "job.job_script",
                    text,
                    format!(
                        "point `job_script` at an existing script {need} by the user that runs \
                         dirwatcher ({as_that_user})"
                    ),
                ));
            }
        }
    }
    if let Some(p) = unwritable(&b.failure_log) {
        let text = format!(
            "`{}` cannot be written: {}",
            b.failure_log.display(),
            p.text
        );
        if p.permission && !service_user {
            crate::out::error(format_args!(
                "warning: `behavior.failure_log` {text} (the service user may write it; {as_that_user})"
            ));
        } else {
            return Some(err(
                "behavior.failure_log",
                format!("{text}; a failed job's line would be lost"),
                format!(
                    "point `failure_log` at a file the user that runs dirwatcher can create or append \
                     to, e.g. `failure_log: /var/log/dirwatcher/failed_jobs.log` ({as_that_user})"
                ),
            ));
        }
    }
    None
}

/// What `run` refuses of an existing ledger file: a symlink, something that is not a regular file, a
/// ledger that serves another root or was written by a newer release. (problem, fix). A ledger this user
/// cannot read is not judged here.
fn ledger_refusal(state_file: &Path, root: &Path) -> Option<(String, String)> {
    let meta = std::fs::symlink_metadata(state_file).ok()?;
    let shown = state_file.display();
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(state_file).unwrap_or_default();
        let real = std::fs::canonicalize(state_file).ok();
        return Some((
            format!(
                "`{shown}` is a symlink (to `{}`): `run` never opens or creates its ledger through a link",
                target.display()
            ),
            match real {
                Some(r) => format!("write the real file's path: `state_file: {}`", r.display()),
                None => "write the path of a real file (the link points nowhere)".into(),
            },
        ));
    }
    if !meta.is_file() {
        return Some((
            format!("`{shown}` is not a regular file"),
            "write a file path, e.g. `state_file: /var/lib/dirwatcher/state.db`".into(),
        ));
    }
    if meta.len() == 0 {
        return None;
    }
    let ledger = match crate::ledger::Ledger::open_read_only(state_file) {
        Ok(l) => l,
        Err(e @ crate::ledger::LedgerError::Newer { .. }) => {
            return Some((
                format!("{e}"),
                "run the release that wrote it, or give this config a new `state_file`".into(),
            ));
        }
        Err(_) => return None,
    };
    match ledger.served_root() {
        Ok(Some(served)) if served != root => Some((
            format!(
                "the ledger `{shown}` belongs to the root `{}`, not `{}`: `run` refuses it (its records \
                 mean nothing for this root)",
                served.display(),
                root.display()
            ),
            format!(
                "give this root its own ledger, e.g. `state_file: {}`, or point `watch.root` back at `{}`",
                state_file.with_file_name("state-2.db").display(),
                served.display()
            ),
        )),
        _ => None,
    }
}

/// Whether this user runs (or may run) the daemon: root, the owner of the ledger (or of its folder),
/// or anyone when neither exists yet.
fn is_service_user(state_file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if me == 0 {
        return true;
    }
    let owner = std::fs::metadata(state_file)
        .or_else(|_| std::fs::metadata(state_file.parent().unwrap_or(Path::new("/"))))
        .map(|m| m.uid());
    owner.map_or(true, |o| o == me)
}

/// A non-empty regular file that is not an SQLite database: what the ledger refuses to open
/// (`LedgerError::Foreign`), the Python original's `state.json` above all.
fn is_foreign_state(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() == 0 {
        return false;
    }
    let mut head = Vec::with_capacity(16);
    let read = std::fs::File::open(path).and_then(|f| f.take(16).read_to_end(&mut head));
    read.is_ok() && !head.starts_with(b"SQLite format 3\0")
}

/// What is wrong with a path the daemon needs: in words, and whether only this user's permissions
/// forbid it (another user may well be allowed).
#[derive(Debug, PartialEq, Eq)]
struct Problem {
    text: String,
    permission: bool,
}

impl Problem {
    fn any(text: impl Into<String>) -> Option<Problem> {
        Some(Problem {
            text: text.into(),
            permission: false,
        })
    }
    fn permission(text: impl Into<String>) -> Option<Problem> {
        Some(Problem {
            text: text.into(),
            permission: true,
        })
    }
}

/// Why `script` cannot be the job: missing, not a file, or not readable (and, for the local executor,
/// executable) by this user.
fn script_problem(script: &Path, local: bool) -> Option<Problem> {
    match std::fs::metadata(script) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Problem::any("does not exist"),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Problem::permission(format!("cannot be looked at by this user: {e}"))
        }
        Err(e) => Problem::any(format!("cannot be looked at: {e}")),
        Ok(m) if !m.is_file() => Problem::any("is not a regular file"),
        Ok(_) if !access(script, libc::R_OK) => Problem::permission("is not readable by this user"),
        Ok(_) if local && !access(script, libc::X_OK) => {
            Problem::permission("is not executable by this user (the local executor runs it)")
        }
        Ok(_) => None,
    }
}

/// Why the failure log cannot be appended to (it is created, with its folders, on the first failure).
fn unwritable(log: &Path) -> Option<Problem> {
    match std::fs::symlink_metadata(log) {
        Ok(m) if m.is_dir() => return Problem::any("it is a directory"),
        Ok(_) if !access(log, libc::W_OK) => {
            return Problem::permission("not writable by this user");
        }
        Ok(_) => return None,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Problem::permission(format!("this user cannot reach it: {e}"));
        }
        Err(_) => {}
    }
    // The nearest folder that exists must be a folder this user may create entries in.
    let mut dir = log.parent();
    while let Some(d) = dir {
        match std::fs::metadata(d) {
            Ok(m) if !m.is_dir() => {
                return Problem::any(format!("`{}` is not a directory", d.display()));
            }
            Ok(_) if !access(d, libc::W_OK | libc::X_OK) => {
                return Problem::permission(format!(
                    "this user cannot create files in `{}`",
                    d.display()
                ));
            }
            Ok(_) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Problem::permission(format!(
                    "this user cannot reach `{}`: {e}",
                    d.display()
                ));
            }
            Err(_) => dir = d.parent(),
        }
    }
    None
}

/// `access(2)` as this process's effective user (a read-only file system says no, even to root).
fn access(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

/// The 1-based line where `section.key` is written (`key:` indented under `section:`), if it is.
fn key_line(text: &str, dotted: &str) -> Option<u64> {
    let (section, leaf) = dotted.split_once('.')?;
    let mut inside = false;
    for (i, l) in text.lines().enumerate() {
        let indent = l.len() - l.trim_start().len();
        let t = l.trim_start();
        if indent == 0 && !t.is_empty() && !t.starts_with('#') {
            inside = t
                .strip_prefix(section)
                .is_some_and(|r| r.trim_start().starts_with(':'));
        } else if inside
            && t.strip_prefix(leaf)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        {
            return Some(i as u64 + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_on_its_line_under_its_section() {
        let text = "watch:\n  root: /x\njob:\n  wrap_cmd: echo\nbehavior:\n  # note\n  state_file: /s.json\n";
        assert_eq!(key_line(text, "behavior.state_file"), Some(7));
        assert_eq!(key_line(text, "job.wrap_cmd"), Some(4));
        assert_eq!(key_line(text, "behavior.failure_log"), None);
        assert_eq!(key_line(text, "watch.wrap_cmd"), None);
    }

    #[test]
    fn the_originals_json_state_is_foreign_and_a_missing_or_empty_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("state.json");
        std::fs::write(&json, "{\"processed\": {}}").unwrap();
        assert!(is_foreign_state(&json));
        assert!(!is_foreign_state(&dir.path().join("none.db")));
        let empty = dir.path().join("empty.db");
        std::fs::write(&empty, "").unwrap();
        assert!(!is_foreign_state(&empty));
    }

    #[test]
    fn a_failure_log_below_a_file_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, "").unwrap();
        let p = unwritable(&file.join("logs/failed.log")).unwrap();
        assert!(!p.permission, "no user can: {p:?}");
        assert_eq!(unwritable(&dir.path().join("new/failed.log")), None);
        assert!(unwritable(dir.path()).is_some(), "a directory");
    }
}
