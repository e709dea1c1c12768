//! `dirwatcher check-config`: the config's verdict, its warnings, the effective configuration and, with
//! `--slurm`, Slurm's own answer to the job it asks for.
//!
//! Owns: what check-config prints and which verdict it returns. Must never: change anything (a check is
//! safe beside a running daemon), or submit a job (`sbatch --test-only` creates none).

use crate::cli::ConfigFile;
use crate::config::Config;
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
