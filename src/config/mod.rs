//! Configuration: reads the YAML file, checks every value, and turns it into types that cannot be invalid.
//!
//! Owns: the flow from text to [`Config`] (a look at the text, the parser, then one validation pass over
//! every section), and the public types by re-export. The parts: [`keys`] (THE table of names, defaults
//! and help), one file per section (`watch`, `ready`, `job`, `behavior`, `smtp`, `metrics`, `notify`,
//! `db`: its raw struct, its validation, its validated type, its effective-config lines), `raw` (the top
//! level of the mirror), `value` (one helper per kind of value), `secret`, `error` (the error type),
//! `parse_error` (the parser's errors in words), `yaml` (the writer), `effective` (the sections in order), `lint`. A new
//! key is a row in `keys.rs`, and in its section's file a raw field, a validation line, a typed field and
//! an effective-config line; then its consumer. Must never: create,
//! touch or probe anything but the paths it is asked to check for existence; nothing past this module ever
//! sees a raw value.

use std::path::{Path, PathBuf};

mod behavior;
pub mod credential;
mod db;
mod effective;
mod error;
mod instance;
mod job;
pub mod keys;
pub(crate) mod lint;
mod metrics;
mod notify;
mod parse_error;
mod raw;
mod ready;
mod secret;
mod server;
mod smtp;
mod value;
mod watch;
mod yaml;

pub use behavior::BehaviorConfig;
pub use db::DbConfig;
pub use error::{ConfigError, Detail};
pub use instance::InstanceName;
pub use job::{
    ArrayPolicy, JobCommand, JobConfig, SubmitRate, TimeLimit, parse_time_limit, parse_umask,
    umask_text,
};
pub use keys::{ExecutorKind, defaults};
pub use metrics::MetricsConfig;
pub use notify::{EmailVia, NotifyConfig};
pub use secret::Secret;
pub use server::MariaTarget;
pub use smtp::SmtpConfig;
pub use watch::WatchConfig;

// slurmrestd's address (`job.slurmrest_url`): TCP or a unix socket.
pub use job::{SlurmRestUrl, parse_slurmrest_url};

use raw::{RawConfig, S};

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages and reloads).
    pub source: PathBuf,
    /// `watch:`.
    pub watch: WatchConfig,
    /// `job:`.
    pub job: JobConfig,
    /// `behavior:`.
    pub behavior: BehaviorConfig,
    /// `metrics:` (optional).
    pub metrics: MetricsConfig,
    /// `notify:` and the e-mail keys of `behavior:`.
    pub notify: NotifyConfig,
    /// Secrets a command that sends nothing left unread ([`Config::load_without_secrets`]), in words.
    pub unread_secrets: Vec<String>,
}

impl Config {
    /// Reads and validates `path`. Checks that `watch.root` exists (and never creates it).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::parse(&read_text(path)?, path)
    }

    /// Validates YAML text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        Self::parse_with(text, path, RootCheck::MustExist)
    }

    /// Like [`Config::parse`]; with [`RootCheck::Staged`] a missing `watch.root` is accepted (a config
    /// staged for another machine, `install --destdir`).
    pub fn parse_with(text: &str, path: &Path, root: RootCheck) -> Result<Config, ConfigError> {
        Self::parse_inner(text, path, root, Secrets::Required)
    }

    /// Like [`Config::parse_with`], reading secrets as `secrets` says (`install` checks a config whose
    /// password file it has not written yet).
    pub fn parse_with_secrets(
        text: &str,
        path: &Path,
        root: RootCheck,
        secrets: Secrets,
    ) -> Result<Config, ConfigError> {
        Self::parse_inner(text, path, root, secrets)
    }

    fn parse_inner(
        text: &str,
        path: &Path,
        root: RootCheck,
        secrets: Secrets,
    ) -> Result<Config, ConfigError> {
        // What a look at the text finds (tabs, duplicates, misspelt or misplaced keys) is said all at once,
        // before the parser would stop at the first of them in its own words.
        let found: Vec<ConfigError> = lint::lint(text)
            .into_iter()
            .map(|f| ConfigError {
                file: path.to_path_buf(),
                key: f.key,
                line: Some(f.line),
                problem: f.problem,
                fix: f.fix,
                detail: f.column.map(|column| {
                    Box::new(Detail {
                        column: Some(column),
                        more: Vec::new(),
                    })
                }),
            })
            .collect();
        if let Some(e) = ConfigError::all(found) {
            return Err(e);
        }
        let raw: RawConfig =
            serde_saphyr::from_str(text).map_err(|e| parse_error::serde_error(path, text, &e))?;
        Validator {
            file: path,
            root,
            secrets,
            unread: Default::default(),
        }
        .config(raw)
    }

    /// Like [`Config::load`], for a command that does not send anything: secrets it cannot read are left
    /// unread and listed in [`Config::unread_secrets`], instead of refusing the config.
    pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
        Self::parse_inner(
            &read_text(path)?,
            path,
            RootCheck::MustExist,
            Secrets::IfReadable,
        )
    }
}

/// Whether `watch.root` must exist when the config is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootCheck {
    /// It must be an existing directory (every config the daemon and `check-config` read).
    MustExist,
    /// The config is for another machine: the root is checked there.
    Staged,
}

/// The config file's text, or the error that says it cannot be read.
fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        key: String::new(),
        line: None,
        problem: format!("cannot read the file: {e}"),
        fix: "pass an existing, readable YAML file with --config".into(),
        detail: None,
    })
}

struct Validator<'a> {
    file: &'a Path,
    root: RootCheck,
    secrets: Secrets,
    /// Secrets left unread ([`Secrets::IfReadable`]), each in words.
    unread: std::cell::RefCell<Vec<String>>,
}

/// Whether loading a config must read its secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// Every secret must be readable (the daemon, `check-config --secrets`).
    Required,
    /// A secret file this user cannot read, or a variable that is not set, is left unread and said
    /// (`status`, `explain`, `check-config`: an operator who may not read the secrets still uses them).
    IfReadable,
}

impl Validator<'_> {
    /// Every section is validated, so that one pass reports an error of each (a section stops at its first).
    fn config(&self, mut raw: RawConfig) -> Result<Config, ConfigError> {
        let smtp = raw
            .behavior
            .as_mut()
            .map(smtp::RawSmtp::take)
            .unwrap_or_default();
        let watch = self.watch(raw.watch);
        let behavior = self.behavior(raw.behavior);
        let job = self.job(raw.job);
        let metrics = self.metrics(raw.metrics);
        let notify = self.notify(raw.notify.unwrap_or_default(), smtp);
        let db = self.db(raw.db);
        match (watch, behavior, job, metrics, notify, db) {
            (Ok(watch), Ok(behavior), Ok(job), Ok(metrics), Ok(mut notify), Ok(db)) => {
                notify.db = db;
                Ok(Config {
                    source: self.file.to_path_buf(),
                    watch,
                    job,
                    behavior,
                    metrics,
                    notify,
                    unread_secrets: self.unread.take(),
                })
            }
            (w, b, j, m, n, d) => {
                let mut errors: Vec<ConfigError> =
                    [w.err(), b.err(), j.err(), m.err(), n.err(), d.err()]
                        .into_iter()
                        .flatten()
                        .collect();
                errors.sort_by_key(|e| e.line.unwrap_or(u64::MAX));
                Err(ConfigError::all(errors).expect("one section failed"))
            }
        }
    }
}

#[cfg(test)]
mod tests;
