//! The `behavior:` section (its own keys; the e-mail keys the original keeps there are [`super::smtp`]'s).
//!
//! Owns: the raw section, its validation, the validated [`BehaviorConfig`], and its lines of the effective
//! config. Must never: apply the umask or open the ledger (the daemon does, at start).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::MariaTarget;
use super::keys::{self, defaults};
use super::value::MIN_BACKOFF_SEC;
use super::yaml::{self, EffectiveYaml};
use super::{ConfigError, InstanceName, S, Validator};

/// `behavior:` section, validated.
#[derive(Debug, Clone)]
pub struct BehaviorConfig {
    /// Delete a directory after its job COMPLETED.
    pub delete_on_success: bool,
    /// The ledger (an SQLite database), kept on local disk; with `ledger`, the local state's place (the
    /// lock, the status snapshot, the local executor's jobs) and nothing more.
    pub state_file: PathBuf,
    /// The ledger on a server (`behavior.ledger`), its password filled in.
    pub ledger: Option<MariaTarget>,
    /// Where the ledger's password came from, for `check-config` (`file:PATH`, `credential:NAME`).
    pub ledger_password_source: Option<String>,
    /// How long the active daemon's lease on a shared ledger lasts without a renewal.
    pub lease: Duration,
    /// One JSON line is appended here per failed job.
    pub failure_log: PathBuf,
    /// How many times a failed job is resubmitted on its own (0 = never, as the original).
    pub max_retries: u32,
    /// First delay before resubmitting after a failed `sbatch`; doubles up to `submit_backoff_max`.
    pub submit_backoff: Duration,
    /// Cap of the exponential back-off.
    pub submit_backoff_max: Duration,
    /// The process umask the daemon sets at start (permission bits, `0o027` by default).
    pub umask: u32,
    /// This service's name when several run on one host (`dirwatcher@NAME`); `None` for the plain one.
    pub instance: Option<InstanceName>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBehavior {
    pub(super) delete_on_success: Option<bool>,
    pub(super) state_file: S<String>,
    pub(super) ledger: S<String>,
    pub(super) ledger_password_file: S<String>,
    pub(super) lease_sec: S<f64>,
    pub(super) failure_log: S<String>,
    pub(super) instance: S<String>,
    pub(super) max_retries: S<i64>,
    pub(super) submit_backoff_sec: S<f64>,
    pub(super) submit_backoff_max_sec: S<f64>,
    /// Octal: `"0027"`, or bare `0027` (read as text, so YAML's number rules never apply).
    pub(super) umask: S<String>,
    pub(super) from_email: S<String>,
    pub(super) smtp_host: S<String>,
    pub(super) smtp_port: S<i64>,
    pub(super) smtp_user: S<String>,
    pub(super) smtp_pass: S<String>,
    pub(super) smtp_pass_file: S<String>,
    pub(super) smtp_pass_env: S<String>,
    pub(super) smtp_use_tls: Option<bool>,
}

impl Validator<'_> {
    pub(super) fn behavior(&self, raw: Option<RawBehavior>) -> Result<BehaviorConfig, ConfigError> {
        let b = raw.unwrap_or_default();
        let submit_backoff = self.seconds(
            &keys::BEHAVIOR_SUBMIT_BACKOFF_SEC,
            &b.submit_backoff_sec,
            MIN_BACKOFF_SEC,
        )?;
        let submit_backoff_max = self.seconds(
            &keys::BEHAVIOR_SUBMIT_BACKOFF_MAX_SEC,
            &b.submit_backoff_max_sec,
            MIN_BACKOFF_SEC,
        )?;
        let (ledger, ledger_password_source) = self.ledger(&b)?;
        Ok(BehaviorConfig {
            ledger,
            ledger_password_source,
            lease: self.seconds(&keys::BEHAVIOR_LEASE_SEC, &b.lease_sec, 2.0)?,
            delete_on_success: b.delete_on_success.unwrap_or(defaults::DELETE_ON_SUCCESS),
            state_file: self.file(
                &keys::BEHAVIOR_STATE_FILE,
                &b.state_file,
                defaults::STATE_FILE,
            )?,
            failure_log: self.file(
                &keys::BEHAVIOR_FAILURE_LOG,
                &b.failure_log,
                defaults::FAILURE_LOG,
            )?,
            max_retries: self.count(&keys::BEHAVIOR_MAX_RETRIES, &b.max_retries, 0)?,
            submit_backoff,
            submit_backoff_max: submit_backoff_max.max(submit_backoff),
            umask: self.umask(&b.umask)?,
            instance: self.instance(&b.instance)?,
        })
    }

    /// `behavior.ledger` and its password: the server's address (never with a password in it), and the
    /// password from the unit's credential or `behavior.ledger_password_file`.
    fn ledger(
        &self,
        b: &RawBehavior,
    ) -> Result<(Option<MariaTarget>, Option<String>), ConfigError> {
        let Some(url) = b.ledger.as_ref().filter(|v| !v.value.is_empty()) else {
            return Ok((None, None));
        };
        let mut target = MariaTarget::parse(&url.value).map_err(|problem| {
            self.err(
                keys::BEHAVIOR_LEDGER.name,
                Some(url.referenced.line()),
                format!("`{}`: {problem}", url.value),
                "write e.g. `ledger: mysql://dirwatcher@db.cluster:3306/dirwatcher`, and the password into the \
                 file `ledger_password_file` names",
            )
        })?;
        let pass = self.secret(
            None,
            (
                &keys::BEHAVIOR_LEDGER_PASSWORD_FILE,
                &b.ledger_password_file,
            ),
            (&keys::BEHAVIOR_LEDGER_PASSWORD_FILE, &None),
        )?;
        target.password = pass.as_ref().map(|(p, _)| p.expose().to_string());
        Ok((Some(target), pass.map(|(_, s)| s)))
    }

    /// `behavior.instance`: a name [`InstanceName`] takes, or none (empty counts as none).
    pub(super) fn instance(&self, v: &S<String>) -> Result<Option<InstanceName>, ConfigError> {
        let Some(n) = v.as_ref().filter(|n| !n.value.is_empty()) else {
            return Ok(None);
        };
        InstanceName::parse(&n.value).map(Some).map_err(|problem| {
            self.err(
                keys::BEHAVIOR_INSTANCE.name,
                Some(n.referenced.line()),
                problem,
                "write the name of the instance, as in `dirwatcher@NAME.service`, e.g. `instance: microscope1`",
            )
        })
    }

    /// `behavior.umask`: octal permission bits, at most `0777`.
    pub(super) fn umask(&self, v: &S<String>) -> Result<u32, ConfigError> {
        let Some(u) = v else {
            return Ok(defaults::UMASK);
        };
        let digits = u.value.trim();
        let digits = digits.strip_prefix("0o").unwrap_or(digits);
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(m),
            _ => Err(self.err(
                keys::BEHAVIOR_UMASK.name,
                Some(u.referenced.line()),
                format!("must be an octal file-creation mask such as \"0027\", found {:?}", u.value),
                "write e.g. `umask: \"0027\"` (group may read, others nothing) or `umask: \"0022\"`",
            )),
        }
    }
}

impl BehaviorConfig {
    /// The section's own lines of the effective config (the e-mail keys follow, from [`super::smtp`]).
    pub(super) fn put(&self, y: &mut EffectiveYaml) {
        use keys::*;
        y.put(
            &BEHAVIOR_DELETE_ON_SUCCESS,
            self.delete_on_success.to_string(),
        );
        y.put(&BEHAVIOR_STATE_FILE, yaml::path(&self.state_file));
        y.put(
            &BEHAVIOR_LEDGER,
            yaml::opt(self.ledger.as_ref().map(MariaTarget::describe).as_deref()),
        );
        yaml::put_secret(
            y,
            [None, Some(&BEHAVIOR_LEDGER_PASSWORD_FILE), None],
            self.ledger_password_source.as_deref(),
        );
        y.put(&BEHAVIOR_LEASE_SEC, yaml::secs(self.lease));
        y.put(&BEHAVIOR_FAILURE_LOG, yaml::path(&self.failure_log));
        y.put(
            &BEHAVIOR_INSTANCE,
            yaml::opt(self.instance.as_ref().map(InstanceName::as_str)),
        );
        y.put(&BEHAVIOR_MAX_RETRIES, self.max_retries.to_string());
        y.put(
            &BEHAVIOR_SUBMIT_BACKOFF_SEC,
            yaml::secs(self.submit_backoff),
        );
        y.put(
            &BEHAVIOR_SUBMIT_BACKOFF_MAX_SEC,
            yaml::secs(self.submit_backoff_max),
        );
        y.put(&BEHAVIOR_UMASK, yaml::text(&format!("{:04o}", self.umask)));
    }
}
