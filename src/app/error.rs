//! The one exit-code policy: every way a command can fail, what it says on stderr, and which of the three
//! exit statuses it means.
//!
//! Owns: [`AppError`], [`ExitKind`] and the mapping from one to the other ([`AppError::kind`]), and the
//! words of a failure that the command has not said itself ([`AppError::message`]). Must never: print
//! anything but in [`AppError::report`], or exit the process (`main` does, with [`ExitKind::code`]).

use crate::config::ConfigError;
use crate::daemon::StartError;
use crate::install::UsageError;
use crate::ledger::LedgerError;

/// What the exit status tells the caller (a shell, systemd: the unit restarts on 1, not on 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// 0: the command did what it was asked.
    Success,
    /// 1: it failed at run time; trying again later may work.
    Failure,
    /// 2: the config, the flags or the state the admin left need a change first.
    Usage,
}

impl ExitKind {
    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Success => 0,
            ExitKind::Failure => 1,
            ExitKind::Usage => 2,
        }
    }
}

/// Why a command failed.
#[derive(Debug)]
pub enum AppError {
    /// The config does not validate or cannot be read: refused before anything runs.
    Config(ConfigError),
    /// `--instance NAME` names no installed instance (the words say which ones are).
    NoInstance(String),
    /// `run` as root without `--allow-root` (the refusal, `error:` included).
    RootRefused(String),
    /// The daemon did not start.
    Start(StartError),
    /// `check-config --slurm`: Slurm refuses the job the config asks for (its answer is printed already).
    SlurmRefused,
    /// `check-config --slurm`: Slurm could not say (its answer is printed already).
    SlurmUnknown,
    /// `cancel`: this many directories could not be cancelled (each said already).
    Cancel {
        /// How many failed.
        failed: usize,
    },
    /// Anything else; an [`install::UsageError`](UsageError) in it means wrong flags (nothing changed).
    Command(anyhow::Error),
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> AppError {
        AppError::Command(e)
    }
}

impl From<serde_json::Error> for AppError {
    fn from(e: serde_json::Error) -> AppError {
        AppError::Command(e.into())
    }
}

impl AppError {
    /// The exit-code policy, in one place.
    pub fn kind(&self) -> ExitKind {
        match self {
            AppError::Config(_)
            | AppError::NoInstance(_)
            | AppError::RootRefused(_)
            | AppError::SlurmRefused => ExitKind::Usage,
            AppError::Start(e) => start_kind(e).unwrap_or(ExitKind::Failure),
            AppError::SlurmUnknown | AppError::Cancel { .. } => ExitKind::Failure,
            AppError::Command(e) if e.is::<UsageError>() => ExitKind::Usage,
            AppError::Command(_) => ExitKind::Failure,
        }
    }

    /// What to say on stderr, the whole line; `None` when the command said it already.
    pub fn message(&self) -> Option<String> {
        Some(match self {
            AppError::Config(e) => format!("error: {e}"),
            AppError::NoInstance(why) => format!("error: {why}"),
            AppError::RootRefused(refusal) => refusal.clone(),
            AppError::Start(e) if start_kind(e).is_some() => format!("error: {e}"),
            AppError::Start(e) => {
                format!("error: cannot start: {}", crate::logging::error_chain(e))
            }
            AppError::SlurmRefused | AppError::SlurmUnknown | AppError::Cancel { .. } => {
                return None;
            }
            // The fix of a usage error is its own second line; no cause is pasted after it.
            AppError::Command(e) if e.is::<UsageError>() => format!("error: {e}"),
            AppError::Command(e) => format!("error: {}", crate::logging::error_chain(e.as_ref())),
        })
    }

    /// Says [`message`](Self::message) on stderr, if there is one.
    pub fn report(&self) {
        if let Some(m) = self.message() {
            crate::out::error(m);
        }
    }
}

/// The start failures said plainly, with their exit status; `None`: an unexpected one, said with its causes.
fn start_kind(e: &StartError) -> Option<ExitKind> {
    match e {
        // Another daemon runs, or accounting does not answer yet: systemd may try again later.
        StartError::AlreadyRunning { .. }
        | StartError::AccountingUnknown { .. }
        | StartError::Ledger(LedgerError::InUse(_)) => Some(ExitKind::Failure),
        // The admin must act (restore, recover, or say --catch-up): 2, which the unit does not restart.
        StartError::LedgerLost { .. }
        | StartError::LedgerReplaced { .. }
        | StartError::Ledger(
            LedgerError::OtherRoot { .. }
            | LedgerError::Symlink { .. }
            | LedgerError::NotAFile(_)
            | LedgerError::Newer { .. },
        ) => Some(ExitKind::Usage),
        _ => None,
    }
}

/// The exit status of a command's result.
pub fn exit_kind(r: &Result<(), AppError>) -> ExitKind {
    match r {
        Ok(()) => ExitKind::Success,
        Err(e) => e.kind(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    fn usage() -> anyhow::Error {
        UsageError {
            problem: "`--user` is empty".into(),
            fix: "name the service user".into(),
        }
        .into()
    }

    #[test]
    fn each_failure_has_its_exit_status_and_its_words() {
        let io = || std::io::Error::other("disk full");
        let cases: Vec<(AppError, u8, Option<&str>)> = vec![
            (
                AppError::NoInstance("no instance `x`".into()),
                2,
                Some("error: no instance `x`"),
            ),
            (
                AppError::RootRefused("error: refusing to run as root".into()),
                2,
                Some("error: refusing to run as root"),
            ),
            (AppError::SlurmRefused, 2, None),
            (AppError::SlurmUnknown, 1, None),
            (AppError::Cancel { failed: 2 }, 1, None),
            (
                AppError::Command(usage()),
                2,
                Some("error: `--user` is empty\n  fix: name the service user"),
            ),
            (
                AppError::Command(Err::<(), _>(io()).context("cannot write `x`").unwrap_err()),
                1,
                Some("error: cannot write `x`: disk full"),
            ),
            (
                AppError::Start(StartError::Ledger(LedgerError::InUse("/s.db".into()))),
                1,
                None,
            ),
            (
                AppError::Start(StartError::Ledger(LedgerError::NotAFile("/s.db".into()))),
                2,
                None,
            ),
        ];
        for (e, code, words) in cases {
            assert_eq!(e.kind().code(), code, "{e:?}");
            if let Some(w) = words {
                assert_eq!(e.message().as_deref(), Some(w), "{e:?}");
            }
        }
    }

    #[test]
    fn a_start_failure_said_plainly_has_no_prefix_and_an_unexpected_one_its_causes() {
        let plain = AppError::Start(StartError::Ledger(LedgerError::InUse("/s.db".into())));
        let m = plain.message().unwrap();
        assert!(
            m.starts_with("error: another dirwatcher holds the ledger `/s.db`"),
            "{m}"
        );
        assert_eq!(exit_kind(&Ok(())), ExitKind::Success);
        assert_eq!(ExitKind::Success.code(), 0);
    }
}
