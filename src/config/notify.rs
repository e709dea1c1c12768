//! The `notify:` section: who is told of which events, and how.
//!
//! Owns: the raw section, its validation (with the e-mail keys of `behavior:`, through [`super::smtp`]),
//! the validated [`NotifyConfig`], and its lines of the effective config. Must never: send anything (the
//! outbox's channels do).

use std::time::Duration;

use serde::Deserialize;

use super::keys::{self, Key, defaults};
use super::smtp::{RawSmtp, SmtpConfig};
use super::value::{MIN_BACKOFF_SEC, MIN_COMMAND_TIMEOUT_SEC, Word, parse_word, words_fix};
use super::yaml::{self, EffectiveYaml};
use super::{ConfigError, DbConfig, S, Secret, Validator};
use crate::engine::notice::{EventKind, WebhookFormat};

/// How e-mail leaves this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailVia {
    /// `sendmail -t` when it is installed, else SMTP when `behavior.smtp_host` is set (as the original).
    Auto,
    /// Always `sendmail -t`.
    Sendmail,
    /// Always SMTP to `behavior.smtp_host`.
    Smtp,
}

impl EmailVia {
    /// The word in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            EmailVia::Auto => "auto",
            EmailVia::Sendmail => "sendmail",
            EmailVia::Smtp => "smtp",
        }
    }
}

/// `notify:` (and the e-mail keys of `behavior:`), validated. Empty channels send nothing.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Events that are told.
    pub events: Vec<crate::engine::notice::EventKind>,
    /// E-mail the directory's `.dirwatch_meta.json` `user_email`.
    pub email_owner: bool,
    /// Fixed recipients, told of every event.
    pub email_to: Vec<String>,
    /// Transport choice.
    pub email_via: EmailVia,
    /// `behavior.from_email`, checked; `None`: `dirwatcher@<host>`.
    pub from: Option<String>,
    /// `behavior.smtp_*`, when `smtp_host` is set.
    pub smtp: Option<SmtpConfig>,
    /// Webhook URLs (`http://` or `https://`).
    pub webhooks: Vec<String>,
    /// Webhook body.
    pub webhook_format: crate::engine::notice::WebhookFormat,
    /// Bearer token for the webhooks.
    pub webhook_token: Option<Secret>,
    /// Where the token comes from, for `check-config` (`file:` path or `env:` name).
    pub webhook_token_source: Option<String>,
    /// Where the SMTP password comes from, for `check-config`.
    pub smtp_pass_source: Option<String>,
    /// The event hook: program and arguments.
    pub command: Vec<String>,
    /// Bound of one delivery.
    pub timeout: Duration,
    /// First delay after a failed delivery.
    pub retry: Duration,
    /// The original's web-app database (`db:`): every submission and end is written to its `jobs`
    /// table. Set after `notify:` is validated.
    pub db: Option<DbConfig>,
    /// Attempts per notice.
    pub max_attempts: u32,
}

impl NotifyConfig {
    /// The e-mail keys' lines of the effective config, under `behavior:` as the original has them.
    pub(super) fn put_mail(&self, y: &mut EffectiveYaml) {
        let n = self;
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

    /// Any channel is configured (e-mail counts when it can have a recipient).
    pub fn any_channel(&self) -> bool {
        self.email_owner
            || !self.email_to.is_empty()
            || !self.webhooks.is_empty()
            || !self.command.is_empty()
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    pub(super) events: S<Vec<String>>,
    pub(super) email_owner: Option<bool>,
    pub(super) email_to: S<Vec<String>>,
    pub(super) email_via: S<String>,
    pub(super) webhooks: S<Vec<String>>,
    pub(super) webhook_format: S<String>,
    pub(super) webhook_token_file: S<String>,
    pub(super) webhook_token_env: S<String>,
    pub(super) command: S<Vec<String>>,
    pub(super) timeout_sec: S<f64>,
    pub(super) retry_sec: S<f64>,
    pub(super) max_attempts: S<i64>,
}

impl Validator<'_> {
    pub(super) fn address(
        &self,
        key: &Key,
        line: Option<u64>,
        a: &str,
    ) -> Result<String, ConfigError> {
        let a = a.trim();
        if crate::engine::notice::valid_address(a) {
            Ok(a.to_string())
        } else {
            Err(self.err(
                key.name,
                line,
                format!("{a:?} is not a plain e-mail address"),
                format!("write one address such as `user@example.org` (no name, no `<>`), e.g. `{}: dirwatcher@example.org`", key.leaf()),
            ))
        }
    }

    /// The section, with the e-mail keys of `behavior:`; its errors come in the order of its keys.
    pub(super) fn notify(&self, n: RawNotify, s: RawSmtp) -> Result<NotifyConfig, ConfigError> {
        let events = self.events(&n.events)?;
        let email_to = self.email_to(&n.email_to)?;
        let from = match &s.from_email {
            Some(f) if !f.value.trim().is_empty() => Some(self.address(
                &keys::BEHAVIOR_FROM_EMAIL,
                Some(f.referenced.line()),
                &f.value,
            )?),
            _ => None,
        };
        let email_via = self.word(&n.email_via)?.unwrap_or(EmailVia::Auto);
        let (smtp, smtp_pass_source) = self.smtp(&s)?;
        if email_via == EmailVia::Smtp && smtp.is_none() {
            return Err(self.err(
                keys::NOTIFY_EMAIL_VIA.name,
                n.email_via.as_ref().map(|v| v.referenced.line()),
                "`email_via: smtp` needs an SMTP server",
                "set `behavior.smtp_host` (and `smtp_port`, `smtp_user`, `smtp_pass_file`)",
            ));
        }
        let webhooks = self.webhooks(&n.webhooks)?;
        let webhook_format = self.word(&n.webhook_format)?.unwrap_or_default();
        let token = self.secret(
            None,
            (&keys::NOTIFY_WEBHOOK_TOKEN_FILE, &n.webhook_token_file),
            (&keys::NOTIFY_WEBHOOK_TOKEN_ENV, &n.webhook_token_env),
        )?;
        let command = self.hook_command(&n.command)?;
        Ok(NotifyConfig {
            events,
            email_owner: n.email_owner.unwrap_or(defaults::NOTIFY_EMAIL_OWNER),
            email_to,
            email_via,
            from,
            smtp,
            webhooks,
            webhook_format,
            webhook_token_source: token.as_ref().map(|(_, s)| s.clone()),
            webhook_token: token.map(|(t, _)| t),
            smtp_pass_source,
            command,
            db: None,
            timeout: self.seconds(
                &keys::NOTIFY_TIMEOUT_SEC,
                &n.timeout_sec,
                MIN_COMMAND_TIMEOUT_SEC,
            )?,
            retry: self.seconds(&keys::NOTIFY_RETRY_SEC, &n.retry_sec, MIN_BACKOFF_SEC)?,
            max_attempts: self.count(&keys::NOTIFY_MAX_ATTEMPTS, &n.max_attempts, 1)?,
        })
    }

    /// `notify.events`: words of [`EventKind`], each once; the table's default when absent.
    fn events(&self, v: &S<Vec<String>>) -> Result<Vec<EventKind>, ConfigError> {
        let words: Vec<&str> = match v {
            Some(v) => v.value.iter().map(|w| w.as_str()).collect(),
            None => defaults::NOTIFY_EVENTS
                .trim_matches(['[', ']'])
                .split(", ")
                .collect(),
        };
        let mut out = Vec::new();
        for w in words {
            let k = parse_word::<EventKind>(w.trim()).ok_or_else(|| {
                self.err(
                    keys::NOTIFY_EVENTS.name,
                    line(v),
                    EventKind::problem(w),
                    words_fix::<EventKind>(EVENTS_EXAMPLE),
                )
            })?;
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// `notify.email_to`: addresses, each with or without a name.
    fn email_to(&self, v: &S<Vec<String>>) -> Result<Vec<String>, ConfigError> {
        let mut email_to = Vec::new();
        for a in v.as_ref().map(|v| v.value.as_slice()).unwrap_or_default() {
            // A recipient may carry a name, as a meta file's may: `Ops Team <ops@example.org>`.
            match crate::engine::notice::mailbox(a) {
                Some(_) => email_to.push(a.trim().to_string()),
                None => {
                    return Err(self.err(
                        keys::NOTIFY_EMAIL_TO.name,
                        line(v),
                        format!("{a:?} is not an e-mail address"),
                        "write one address per item, such as `ops@example.org` or `Ops Team <ops@example.org>`",
                    ));
                }
            }
        }
        Ok(email_to)
    }

    /// `notify.webhooks`: `http://` or `https://` URLs, never repeated in a message.
    fn webhooks(&self, v: &S<Vec<String>>) -> Result<Vec<String>, ConfigError> {
        let mut webhooks = Vec::new();
        for u in v.as_ref().map(|v| v.value.as_slice()).unwrap_or_default() {
            let u = u.trim();
            let ok = (u.starts_with("http://") || u.starts_with("https://"))
                && u.len() > "https://".len()
                && !u
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\');
            if !ok {
                // The URL may hold a secret (Slack's do): not repeated in the message.
                return Err(self.err(
                    keys::NOTIFY_WEBHOOKS.name,
                    line(v),
                    "a webhook is not an `http://` or `https://` URL without spaces or quotes",
                    "write e.g. `webhooks: [\"https://hooks.example.org/dirwatcher\"]`",
                ));
            }
            webhooks.push(u.to_string());
        }
        Ok(webhooks)
    }

    /// `notify.command`: a program and its arguments.
    fn hook_command(&self, v: &S<Vec<String>>) -> Result<Vec<String>, ConfigError> {
        let command: Vec<String> = v.as_ref().map(|v| v.value.clone()).unwrap_or_default();
        if command.first().is_some_and(|p| p.trim().is_empty()) {
            return Err(self.err(
                keys::NOTIFY_COMMAND.name,
                line(v),
                "the program name is empty",
                "write the program and its arguments as a list, e.g. `command: [/usr/local/bin/dw-hook, --db, jobs]`",
            ));
        }
        Ok(command)
    }
}

/// The line of a list key, when it is given.
fn line(v: &S<Vec<String>>) -> Option<u64> {
    v.as_ref().map(|s| s.referenced.line())
}

/// The example of `notify.events`' fix.
pub(super) const EVENTS_EXAMPLE: &str = "[completed, failed]";

impl Word for EventKind {
    const KEY: &'static Key = &keys::NOTIFY_EVENTS;
    const ALL: &'static [Self] = &EventKind::ALL;
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn problem(found: &str) -> String {
        format!("{found:?} is not an event")
    }
}

impl Word for EmailVia {
    const KEY: &'static Key = &keys::NOTIFY_EMAIL_VIA;
    const ALL: &'static [Self] = &[EmailVia::Auto, EmailVia::Sendmail, EmailVia::Smtp];
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn gloss(self) -> Option<&'static str> {
        (self == EmailVia::Auto).then_some("sendmail when installed, else SMTP")
    }
    fn problem(found: &str) -> String {
        format!("{found:?} is not a way to send mail")
    }
}

impl Word for WebhookFormat {
    const KEY: &'static Key = &keys::NOTIFY_WEBHOOK_FORMAT;
    const ALL: &'static [Self] = &[WebhookFormat::Dirwatcher, WebhookFormat::Slack];
    const ALIASES: &'static [(&'static str, Self)] = &[
        ("mattermost", WebhookFormat::Slack),
        ("teams", WebhookFormat::Slack),
    ];
    fn word(self) -> &'static str {
        self.as_str()
    }
    fn gloss(self) -> Option<&'static str> {
        Some(match self {
            WebhookFormat::Dirwatcher => "the event document",
            WebhookFormat::Slack => "`{\"text\": …}`",
        })
    }
    fn problem(found: &str) -> String {
        format!("{found:?} is not a webhook format")
    }
}

impl NotifyConfig {
    /// The section's lines of the effective config (the e-mail keys of `behavior:` are [`super::smtp`]'s).
    pub(super) fn put(&self, y: &mut EffectiveYaml) {
        use keys::*;
        use yaml::list;
        let events: Vec<String> = self.events.iter().map(|e| e.as_str().to_string()).collect();
        y.put(&NOTIFY_EVENTS, list(&events));
        y.put(&NOTIFY_EMAIL_OWNER, self.email_owner.to_string());
        y.put(&NOTIFY_EMAIL_TO, list(&self.email_to));
        y.put(&NOTIFY_EMAIL_VIA, self.email_via.as_str().into());
        y.put(&NOTIFY_WEBHOOKS, list(&self.webhooks));
        y.put(&NOTIFY_WEBHOOK_FORMAT, self.webhook_format.as_str().into());
        yaml::put_secret(
            y,
            [
                None,
                Some(&NOTIFY_WEBHOOK_TOKEN_FILE),
                Some(&NOTIFY_WEBHOOK_TOKEN_ENV),
            ],
            self.webhook_token_source.as_deref(),
        );
        y.put(&NOTIFY_COMMAND, list(&self.command));
        y.put(&NOTIFY_TIMEOUT_SEC, yaml::secs(self.timeout));
        y.put(&NOTIFY_RETRY_SEC, yaml::secs(self.retry));
        y.put(&NOTIFY_MAX_ATTEMPTS, self.max_attempts.to_string());
    }
}
