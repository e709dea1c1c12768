//! The SMTP server: the original's `behavior.smtp_*` and `from_email` keys, which belong to e-mail.
//!
//! Owns: those keys taken out of the raw `behavior:` section, their validation into [`SmtpConfig`], and
//! their lines of the effective config. Must never: connect to the server (the mail channel does).

use super::behavior::RawBehavior;
use super::{S, Secret};

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
