//! The SMTP server: the original's `behavior.smtp_*` and `from_email` keys, which belong to e-mail.
//!
//! Owns: those keys taken out of the raw `behavior:` section, their validation into [`SmtpConfig`], and
//! their lines of the effective config. Must never: connect to the server (the mail channel does).

use super::behavior::RawBehavior;
use super::keys;
use super::yaml::{self, EffectiveYaml};
use super::{NotifyConfig, S, Secret};

/// The SMTP server (the original's `behavior.smtp_*` keys), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Host name or address.
    pub host: String,
    /// Port (587 unless set).
    pub port: u16,
    /// User name for AUTH.
    pub user: Option<String>,
    /// Password for AUTH (from `smtp_pass`, `smtp_pass_file` or `smtp_pass_env`).
    pub pass: Option<Secret>,
    /// TLS: implicit on port 465, required STARTTLS on any other.
    pub tls: bool,
}

/// The e-mail keys the original keeps under `behavior:`, taken out before that section is validated.
#[derive(Debug, Default)]
pub(super) struct RawSmtp {
    pub(super) from_email: S<String>,
    pub(super) host: S<String>,
    pub(super) port: S<i64>,
    pub(super) user: S<String>,
    pub(super) pass: S<String>,
    pub(super) pass_file: S<String>,
    pub(super) pass_env: S<String>,
    pub(super) use_tls: Option<bool>,
}

impl RawSmtp {
    pub(super) fn take(b: &mut RawBehavior) -> RawSmtp {
        RawSmtp {
            from_email: b.from_email.take(),
            host: b.smtp_host.take(),
            port: b.smtp_port.take(),
            user: b.smtp_user.take(),
            pass: b.smtp_pass.take(),
            pass_file: b.smtp_pass_file.take(),
            pass_env: b.smtp_pass_env.take(),
            use_tls: b.smtp_use_tls.take(),
        }
    }
}

/// The e-mail keys' lines of the effective config, under `behavior:` as the original has them.
pub(super) fn put(y: &mut EffectiveYaml, n: &NotifyConfig) {
    use keys::*;
    let smtp = n.smtp.as_ref();
    y.put(&BEHAVIOR_FROM_EMAIL, yaml::opt(n.from.as_deref()));
    y.put(
        &BEHAVIOR_SMTP_HOST,
        yaml::opt(smtp.map(|s| s.host.as_str())),
    );
    y.put(
        &BEHAVIOR_SMTP_PORT,
        smtp.map_or(defaults::SMTP_PORT.to_string(), |s| s.port.to_string()),
    );
    y.put(
        &BEHAVIOR_SMTP_USER,
        yaml::opt(smtp.and_then(|s| s.user.as_deref())),
    );
    yaml::put_secret(
        y,
        [
            Some(&BEHAVIOR_SMTP_PASS),
            Some(&BEHAVIOR_SMTP_PASS_FILE),
            Some(&BEHAVIOR_SMTP_PASS_ENV),
        ],
        n.smtp_pass_source.as_deref(),
    );
    y.put(
        &BEHAVIOR_SMTP_USE_TLS,
        smtp.map_or(defaults::SMTP_USE_TLS, |s| s.tls).to_string(),
    );
}
