//! The config as each command needs it: with its secrets (whatever sends), or without (what only reads).
//!
//! Owns: turning `--config FILE` / `--instance NAME` into a [`Config`] or an [`AppError`] (exit status 2).
//! Must never: print an error itself (the caller's [`AppError::report`] does), or go on with a config that
//! did not load.

use std::path::Path;

use crate::cli::ConfigFile;
use crate::config::{Config, ConfigError};

use super::error::AppError;

/// The config with its secrets read, for a command that may send or submit.
pub(super) fn load(config: &ConfigFile) -> Result<Config, AppError> {
    load_with(config, Config::load)
}

/// [`load`] for a command that sends nothing: a secret this user cannot read is said and left unread.
pub(super) fn load_reading(config: &ConfigFile) -> Result<Config, AppError> {
    let cfg = load_with(config, Config::load_without_secrets)?;
    for s in &cfg.unread_secrets {
        crate::out::error(format_args!(
            "note: secret {s}; not needed here, left unread (the service user reads it)"
        ));
    }
    Ok(cfg)
}

fn load_with(
    config: &ConfigFile,
    loader: fn(&Path) -> Result<Config, ConfigError>,
) -> Result<Config, AppError> {
    let path = config.path();
    if let Some(name) = config.instance()
        && !path.exists()
    {
        return Err(AppError::NoInstance(crate::install::missing_instance(
            name, &path,
        )));
    }
    loader(&path).map_err(AppError::Config)
}

/// The config at `path` (the demo's own), with its secrets.
pub(super) fn load_path(path: &Path) -> Result<Config, AppError> {
    Config::load(path).map_err(AppError::Config)
}
