//! The SMTP server: the original's `behavior.smtp_*` and `from_email` keys, which belong to e-mail.
//!
//! Owns: those keys taken out of the raw `behavior:` section, their validation into [`SmtpConfig`], and
//! their lines of the effective config. Must never: connect to the server (the mail channel does).

use super::behavior::RawBehavior;
use super::keys::{self, defaults};

use super::{ConfigError, S, Secret, Validator};

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

impl Validator<'_> {
    /// The SMTP server, when `smtp_host` is set, and where its password came from. The password is read
    /// (and its sources checked) whether or not a host is set.
    pub(super) fn smtp(
        &self,
        s: &RawSmtp,
    ) -> Result<(Option<SmtpConfig>, Option<String>), ConfigError> {
        let pass = self.secret(
            Some((&keys::BEHAVIOR_SMTP_PASS, &s.pass)),
            (&keys::BEHAVIOR_SMTP_PASS_FILE, &s.pass_file),
            (&keys::BEHAVIOR_SMTP_PASS_ENV, &s.pass_env),
        )?;
        let smtp_pass_source = pass.as_ref().map(|(_, src)| src.clone());
        let Some(h) = s.host.as_ref().filter(|h| !h.value.trim().is_empty()) else {
            return Ok((None, smtp_pass_source));
        };
        let host = h.value.trim().to_string();
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/@?#".contains(c))
        {
            return Err(self.err(
                keys::BEHAVIOR_SMTP_HOST.name,
                Some(h.referenced.line()),
                format!("{host:?} is not a host name"),
                "write the server's name or address, e.g. `smtp_host: smtp.example.org`",
            ));
        }
        let port = match &s.port {
            None => defaults::SMTP_PORT,
            Some(p) if p.value == 0 => defaults::SMTP_PORT,
            Some(p) if (1..=65535).contains(&p.value) => p.value,
            Some(p) => {
                return Err(self.err(
                    keys::BEHAVIOR_SMTP_PORT.name,
                    Some(p.referenced.line()),
                    format!("{} is not a port", p.value),
                    "write e.g. `smtp_port: 587` (STARTTLS) or `smtp_port: 465` (TLS)",
                ));
            }
        };
        let smtp = SmtpConfig {
            host,
            port: port as u16,
            user: s
                .user
                .as_ref()
                .map(|u| u.value.clone())
                .filter(|u| !u.is_empty()),
            pass: pass.map(|(p, _)| p),
            tls: s.use_tls.unwrap_or(defaults::SMTP_USE_TLS),
        };
        Ok((Some(smtp), smtp_pass_source))
    }
}
