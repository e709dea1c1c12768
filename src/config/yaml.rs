//! The effective config `check-config` prints: every key of the table in its order, under its section,
//! defaults filled in; read back, it loads to the same config.
//!
//! Owns: the writer ([`EffectiveYaml`]), the order of the sections, and the comparison of two configs by
//! their effective values (the reload's log line). Must never: show a secret (`<secret>` stands for one).

use std::path::Path;
use std::time::Duration;

use super::keys::{self, Key};
use super::{Config, InstanceName, JobCommand, umask_text};

impl Config {
    /// The keys whose effective value differs between `self` and `other`, in table order (for the reload
    /// log line). Compared on the effective config `check-config` prints, so defaults count as values.
    pub fn changed_keys(&self, other: &Config) -> Vec<String> {
        fn values(yaml: &str) -> Vec<(String, String)> {
            let mut section = "";
            let mut out = Vec::new();
            for l in yaml.lines() {
                if let Some(s) = l.strip_suffix(':').filter(|s| !s.starts_with(' ')) {
                    section = s;
                } else if let Some((k, v)) = l.strip_prefix("  ").and_then(|l| l.split_once(':'))
                    && !k.starts_with(' ')
                {
                    out.push((format!("{section}.{k}"), v.trim().to_string()));
                }
            }
            out
        }
        let (a, b) = (values(&self.to_yaml()), values(&other.to_yaml()));
        let mut changed: Vec<String> = a
            .iter()
            .filter(|(k, v)| {
                b.iter()
                    .find(|(k2, _)| k2 == k)
                    .is_none_or(|(_, v2)| v2 != v)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (k, _) in &b {
            if !a.iter().any(|(k2, _)| k2 == k) {
                changed.push(k.clone());
            }
        }
        changed
    }

    /// Renders the effective configuration as YAML (all defaults filled in), for `check-config`: every key
    /// of [`keys::ALL`] in its order, under its section.
    pub fn to_yaml(&self) -> String {
        use keys::*;
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let opt = |o: Option<&str>| o.map(q).unwrap_or_else(|| "null".into());
        let path = |p: &Path| q(&p.to_string_lossy());
        let secs = |d: Duration| seconds_text(d.as_secs_f64());
        let mut y = EffectiveYaml::default();
        let w = &self.watch;
        y.put(&WATCH_ROOT, path(&w.root));
        y.put(
            &WATCH_SIGNAL_FILENAME,
            q(&w.signal_filename.to_string_lossy()),
        );
        y.put(&WATCH_POLL_INTERVAL_SEC, secs(w.poll_interval));
        y.put(&WATCH_STABILITY_CHECKS, w.stability_checks.to_string());
        y.put(&WATCH_STABILITY_INTERVAL_SEC, secs(w.stability_interval));
        y.put(&WATCH_ALLOW_UNSAFE_ROOT, w.allow_unsafe_root.to_string());
        y.put(&WATCH_RECHECK_SEC, secs(w.recheck));
        super::ready::put_ready(&mut y, w);
        let j = &self.job;
        y.put(&JOB_EXECUTOR, j.executor.as_str().into());
        match &j.command {
            JobCommand::Wrap(c) => y.put(&JOB_WRAP_CMD, q(c)),
            JobCommand::Script(p) => y.put(&JOB_JOB_SCRIPT, path(p)),
        }
        y.put(&JOB_PARTITION, opt(j.partition.as_deref()));
        y.put(&JOB_ACCOUNT, opt(j.account.as_deref()));
        y.put(&JOB_GRES, opt(j.gres.as_deref()));
        y.put(
            &JOB_TIME_LIMIT,
            opt(j.time_limit.as_ref().map(|t| t.slurm.as_str())),
        );
        y.put(&JOB_JOB_NAME_PREFIX, q(&j.job_name_prefix));
        let env = if j.env.is_empty() {
            "{}".to_string()
        } else {
            // One entry per line below the key, as a block mapping.
            j.env
                .iter()
                .map(|(k, v)| format!("\n    {}: {}", q(k), q(v)))
                .collect()
        };
        y.put(&JOB_ENV, env);
        let args: Vec<String> = j.extra_args.iter().map(|a| q(a)).collect();
        y.put(&JOB_EXTRA_ARGS, format!("[{}]", args.join(", ")));
        y.put(&JOB_CHDIR_TO_SUBDIR, j.chdir_to_subdir.to_string());
        // `""` asks for Slurm's own default; `null` would read back as dirwatcher's default.
        y.put(&JOB_OUTPUT, q(j.output.as_deref().unwrap_or("")));
        y.put(
            &JOB_OUTPUT_GROUP,
            opt(j.output_group.as_ref().map(|(n, _)| n.as_str())),
        );
        y.put(&JOB_COMMAND_TIMEOUT_SEC, secs(j.command_timeout));
        y.put(&JOB_LOST_AFTER_SEC, secs(j.lost_after));
        y.put(&JOB_MAX_LOCAL_JOBS, j.max_local_jobs.to_string());
        y.put(&JOB_UMASK, q(&umask_text(j.umask)));
        y.put(&JOB_SUBMIT_CONCURRENCY, j.submit_concurrency.to_string());
        let rate = j.submit_rate.map(|r| {
            format!(
                "{{burst: {}, per_sec: {}}}",
                r.burst,
                seconds_text(r.per_sec)
            )
        });
        y.put(&JOB_SUBMIT_RATE, rate.unwrap_or_else(|| "null".into()));
        let b = &self.behavior;
        y.put(&BEHAVIOR_DELETE_ON_SUCCESS, b.delete_on_success.to_string());
        y.put(&BEHAVIOR_STATE_FILE, path(&b.state_file));
        y.put(&BEHAVIOR_FAILURE_LOG, path(&b.failure_log));
        y.put(
            &BEHAVIOR_INSTANCE,
            opt(b.instance.as_ref().map(InstanceName::as_str)),
        );
        y.put(&BEHAVIOR_MAX_RETRIES, b.max_retries.to_string());
        y.put(&BEHAVIOR_SUBMIT_BACKOFF_SEC, secs(b.submit_backoff));
        y.put(&BEHAVIOR_SUBMIT_BACKOFF_MAX_SEC, secs(b.submit_backoff_max));
        y.put(&BEHAVIOR_UMASK, q(&format!("{:04o}", b.umask)));
        let n = &self.notify;
        let smtp = n.smtp.as_ref();
        let src = |s: Option<&str>, prefix: &str| opt(s.and_then(|s| s.strip_prefix(prefix)));
        y.put(&BEHAVIOR_FROM_EMAIL, opt(n.from.as_deref()));
        y.put(&BEHAVIOR_SMTP_HOST, opt(smtp.map(|s| s.host.as_str())));
        y.put(
            &BEHAVIOR_SMTP_PORT,
            smtp.map_or(defaults::SMTP_PORT.to_string(), |s| s.port.to_string()),
        );
        y.put(
            &BEHAVIOR_SMTP_USER,
            opt(smtp.and_then(|s| s.user.as_deref())),
        );
        let literal = n.smtp_pass_source.as_deref() == Some("literal");
        y.put(
            &BEHAVIOR_SMTP_PASS,
            if literal {
                q("<secret>")
            } else {
                "null".into()
            },
        );
        y.put(
            &BEHAVIOR_SMTP_PASS_FILE,
            src(n.smtp_pass_source.as_deref(), "file:"),
        );
        y.put(
            &BEHAVIOR_SMTP_PASS_ENV,
            src(n.smtp_pass_source.as_deref(), "env:"),
        );
        y.put(
            &BEHAVIOR_SMTP_USE_TLS,
            smtp.map_or(defaults::SMTP_USE_TLS, |s| s.tls).to_string(),
        );
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|a| q(a)).collect();
            format!("[{}]", items.join(", "))
        };
        let m = &self.metrics;
        y.put(
            &METRICS_LISTEN,
            opt(m.listen.map(|a| a.to_string()).as_deref()),
        );
        y.put(
            &METRICS_TEXTFILE,
            m.textfile.as_deref().map_or("null".into(), path),
        );
        let events: Vec<String> = n.events.iter().map(|e| e.as_str().to_string()).collect();
        y.put(&NOTIFY_EVENTS, list(&events));
        y.put(&NOTIFY_EMAIL_OWNER, n.email_owner.to_string());
        y.put(&NOTIFY_EMAIL_TO, list(&n.email_to));
        y.put(&NOTIFY_EMAIL_VIA, n.email_via.as_str().into());
        y.put(&NOTIFY_WEBHOOKS, list(&n.webhooks));
        y.put(&NOTIFY_WEBHOOK_FORMAT, n.webhook_format.as_str().into());
        y.put(
            &NOTIFY_WEBHOOK_TOKEN_FILE,
            src(n.webhook_token_source.as_deref(), "file:"),
        );
        y.put(
            &NOTIFY_WEBHOOK_TOKEN_ENV,
            src(n.webhook_token_source.as_deref(), "env:"),
        );
        y.put(&NOTIFY_COMMAND, list(&n.command));
        y.put(&NOTIFY_TIMEOUT_SEC, secs(n.timeout));
        y.put(&NOTIFY_RETRY_SEC, secs(n.retry));
        y.put(&NOTIFY_MAX_ATTEMPTS, n.max_attempts.to_string());
        // Without a `db:` section every key is `null`: the effective config read back keeps the bridge off.
        let d = n.db.as_ref();
        y.put(&DB_HOST, opt(d.map(|d| d.host.as_str())));
        y.put(&DB_PORT, d.map_or("null".into(), |d| d.port.to_string()));
        y.put(&DB_NAME, opt(d.map(|d| d.name.as_str())));
        y.put(&DB_USER, opt(d.map(|d| d.user.as_str())));
        let dsrc = d.and_then(|d| d.pass_source.as_deref());
        y.put(
            &DB_PASS,
            if dsrc == Some("literal") {
                q("<secret>")
            } else {
                "null".into()
            },
        );
        y.put(&DB_PASS_FILE, src(dsrc, "file:"));
        y.put(&DB_PASS_ENV, src(dsrc, "env:"));
        y.text
    }
}

/// The effective config being written: a section header before the first key of each section.
#[derive(Default)]
pub(super) struct EffectiveYaml {
    /// The YAML so far.
    text: String,
    /// The section of the last key written (`""` before the first).
    section: &'static str,
}

impl EffectiveYaml {
    /// Writes `key: value`; a `value` starting with a newline (a block mapping) follows the colon directly.
    pub(super) fn put(&mut self, key: &Key, value: String) {
        if key.section() != self.section {
            if !self.text.is_empty() {
                self.text.push('\n');
            }
            self.section = key.section();
            self.text += self.section;
            self.text += ":\n";
        }
        let gap = if value.starts_with('\n') { "" } else { " " };
        self.text += &format!("  {}:{gap}{value}\n", key.leaf());
    }
}
