//! Telling people: which notices an event gets (one per channel and target), what each says (the versioned
//! event document, an e-mail, a chat line), whether a recipient address is one we may put in a header, and
//! what follows a failed delivery (retry later, or give up after the last attempt).
//!
//! Must never: read the clock, the file system or the config file, or send anything; times and texts come
//! in as parameters. A notice is decided here, committed to the ledger's outbox with its event, and
//! delivered by the daemon.

use std::time::Duration;

use super::outage::backoff;
use crate::time::{Millis, ms};

/// The version of the event document every channel carries (webhook body, hook stdin).
pub const SCHEMA: &str = "dirwatcher.event/1";

/// What happened, as `notify.events` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A job was submitted for a directory.
    Submitted,
    /// Its job COMPLETED.
    Completed,
    /// Its job ended in another final state (FAILED, TIMEOUT, CANCELLED, …).
    Failed,
    /// No source has shown its job for `job.lost_after_sec`.
    Lost,
    /// `sbatch` refuses what the config asks (a configuration error): nothing is submitted until fixed.
    Blocked,
    /// An operator cancelled it (`dirwatcher cancel`): its job, or its submission.
    Cancelled,
    /// A readiness rule holds it back for good: its status file says the run did not succeed
    /// (`watch.ready_content_match`). Nothing is submitted.
    Held,
}

impl EventKind {
    /// Every kind, in the order the README lists them.
    pub const ALL: [EventKind; 7] = [
        EventKind::Submitted,
        EventKind::Completed,
        EventKind::Failed,
        EventKind::Lost,
        EventKind::Blocked,
        EventKind::Cancelled,
        EventKind::Held,
    ];

    /// The word in the config and the documents.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Submitted => "submitted",
            EventKind::Completed => "completed",
            EventKind::Failed => "failed",
            EventKind::Lost => "lost",
            EventKind::Blocked => "blocked",
            EventKind::Cancelled => "cancelled",
            EventKind::Held => "held",
        }
    }

    /// It is written to the original's database (`db:`): a submission and every end of a job.
    pub const fn reaches_database(self) -> bool {
        matches!(
            self,
            EventKind::Submitted
                | EventKind::Completed
                | EventKind::Failed
                | EventKind::Lost
                | EventKind::Cancelled
        )
    }

    /// The kind named `word`.
    pub fn parse(word: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

/// The event document (schema [`SCHEMA`]): what every channel is told. Fields that do not apply are
/// `null`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// What happened.
    pub event: EventKind,
    /// When it was recorded (RFC 3339, UTC).
    pub time: String,
    /// Full path of the directory (lossy UTF-8).
    pub dir: String,
    /// The Slurm job id.
    pub job_id: Option<String>,
    /// The job name.
    pub job_name: Option<String>,
    /// Final state word (`COMPLETED`, `FAILED`, `TIMEOUT`, …).
    pub state: Option<String>,
    /// Exit code `code:signal`.
    pub exit_code: Option<String>,
    /// Slurm's reason (sacct `Reason`), or why a submission is refused.
    pub reason: Option<String>,
    /// Nodes the job ran on.
    pub nodes: Option<String>,
    /// Run time in seconds.
    pub elapsed_sec: Option<u64>,
    /// The job's output file.
    pub output: Option<String>,
    /// Attempt of the directory generation (1 = first job).
    pub attempt: u32,
    /// Who cancelled it (`cancelled`): the operator's user name.
    #[serde(default)]
    pub by: Option<String>,
    /// What happens next, in words (`failed`: the retry and when, or that none is left and how to ask).
    #[serde(default)]
    pub next: Option<String>,
    /// The last lines of the job's output (`failed`: at most [`TAIL_LINES`] lines, [`TAIL_BYTES`] bytes,
    /// control characters shown as `?`).
    #[serde(default)]
    pub output_tail: Option<String>,
    /// The host whose daemon recorded the event (with two login nodes on one ledger: which one).
    #[serde(default)]
    pub host: Option<String>,
    /// `behavior.instance` of the service that recorded it, when several run on one host.
    #[serde(default)]
    pub instance: Option<String>,
}

/// The most lines of a job's output a failure notice carries.
pub const TAIL_LINES: usize = 40;
/// The most bytes of a job's output a failure notice carries.
pub const TAIL_BYTES: usize = 8 * 1024;

/// The end of `output` as a notice carries it: its last [`TAIL_LINES`] lines within its last [`TAIL_BYTES`]
/// bytes (a first line cut short is dropped: `cut` says the output began before these bytes), control
/// characters other than tabs as `?`, invalid UTF-8 replaced. `None` when nothing is left.
pub fn output_tail(output: &[u8], cut: bool) -> Option<String> {
    let start = output.len().saturating_sub(TAIL_BYTES);
    let mut bytes = &output[start..];
    if (cut || start > 0)
        && let Some(nl) = bytes.iter().position(|b| *b == b'\n')
    {
        bytes = &bytes[nl + 1..];
    }
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let keep = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    let out: Vec<String> = keep
        .iter()
        .map(|l| {
            l.chars()
                .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
                .collect()
        })
        .collect();
    let out = out.join("\n");
    (!out.trim().is_empty()).then_some(out)
}

/// A delivery channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// An e-mail (`sendmail -t`, else SMTP); the target is the comma-separated recipients.
    Email,
    /// A JSON POST; the target is the URL.
    Webhook,
    /// `notify.command` with the event on stdin; no target.
    Command,
    /// The original's web-app database (`db:`): the event upserted into its `jobs` table; the target is
    /// the directory owner's address from its meta file (the original's `users` lookup), or empty.
    Database,
}

impl Channel {
    /// The word in the ledger, logs and the `channel` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::Command => "command",
            Channel::Database => "database",
        }
    }

    /// Every channel.
    pub const ALL: [Channel; 4] = [
        Channel::Email,
        Channel::Webhook,
        Channel::Command,
        Channel::Database,
    ];

    /// The channel named `word`.
    pub fn parse(word: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == word)
    }

    /// Its notices are delivered in the order they were queued (the outbox gives none while an earlier one
    /// waits for its retry): the database's rows are a record kept in step (an upsert, idempotent), not a
    /// message, and a submission applied after its job's end would undo the end.
    pub const fn in_order(self) -> bool {
        matches!(self, Channel::Database)
    }
}

/// Who is told what (from `notify:`), with the recipient found in the directory, if any.
#[derive(Debug, Clone, Default)]
pub struct Audience<'a> {
    /// `notify.events`.
    pub events: &'a [EventKind],
    /// E-mail can be sent at all (a transport is configured).
    pub email: bool,
    /// `notify.email_to`: told of every event.
    pub email_to: &'a [String],
    /// The address of `.dirwatch_meta.json` (`user_email`), already checked: told of its directory's
    /// events, but not of a blocked submission (that is for the operators).
    pub owner: Option<&'a str>,
    /// `notify.webhooks`.
    pub webhooks: &'a [String],
    /// The owner's address for the database's `users` lookup (read even when no e-mail goes out).
    pub owner_address: Option<&'a str>,
    /// `notify.command` is set.
    pub command: bool,
    /// The original's database bridge (`db:`) is configured: told of every submission and end,
    /// whatever `notify.events` says (as the original).
    pub database: bool,
}

/// One notice to commit to the outbox: a channel and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// How it goes out.
    pub channel: Channel,
    /// Recipients (e-mail), URL (webhook), or empty (command).
    pub target: String,
}

/// The notices an event gets: none unless `notify.events` lists it; then one e-mail to every recipient
/// together, one per webhook, one for the command.
pub fn notices_for(kind: EventKind, a: &Audience<'_>) -> Vec<Notice> {
    let mut out = Vec::new();
    if a.database && kind.reaches_database() {
        out.push(Notice {
            channel: Channel::Database,
            target: a.owner_address.unwrap_or_default().to_string(),
        });
    }
    if !a.events.contains(&kind) {
        return out;
    }
    let mut to: Vec<&str> = Vec::new();
    if kind != EventKind::Blocked
        && let Some(o) = a.owner
    {
        to.push(o);
    }
    let addr = |m: &str| mailbox(m).map_or(m.to_string(), |(_, a)| a.to_ascii_lowercase());
    for r in a.email_to {
        if !to.iter().any(|t| addr(t) == addr(r)) {
            to.push(r);
        }
    }
    // One message per recipient: nobody sees who else was told, and one bad address fails alone.
    if a.email {
        for t in to {
            out.push(Notice {
                channel: Channel::Email,
                target: t.to_string(),
            });
        }
    }
    for url in a.webhooks {
        out.push(Notice {
            channel: Channel::Webhook,
            target: url.clone(),
        });
    }
    if a.command {
        out.push(Notice {
            channel: Channel::Command,
            target: String::new(),
        });
    }
    out
}

/// How long a notice is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay after a failed delivery (`notify.retry_sec`); doubles per failure.
    pub base: Duration,
    /// Cap of that delay.
    pub max: Duration,
    /// Attempts in all (`notify.max_attempts`); after the last failure the notice is given up.
    pub attempts: u32,
}

/// The longest wait between two attempts of one notice.
pub const RETRY_CAP: Duration = Duration::from_secs(3600);

/// What follows a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again, not before this wall time.
    RetryAt(Millis),
    /// That was the last attempt: record it as given up (and say so).
    GiveUp,
}

/// After the `failed`-th failed attempt (counting from 1) at `now`.
pub fn after_failure(failed: u32, now: Millis, p: RetryPolicy) -> AfterFailure {
    if failed >= p.attempts {
        AfterFailure::GiveUp
    } else {
        AfterFailure::RetryAt(now + ms(backoff(failed, p.base, p.max)))
    }
}

/// Whether `addr` is a plain address we may put in a `To:` header and hand to `sendmail`/SMTP: one
/// `local@domain`, printable ASCII, no spaces, no characters that end or extend a header or an address
/// list (CR, LF, `,`, `;`, `<`, `>`, quotes, parentheses), and not an option (`-`).
/// A mailbox as the original passed it on: `addr`, `Name <addr>` or `"Name" <addr>`. Returns the name (if
/// any) and the address, when the address is valid and the name is plain text (no control characters,
/// angle brackets, quotes or backslashes, at most 100 characters).
pub fn mailbox(s: &str) -> Option<(Option<&str>, &str)> {
    let s = s.trim();
    if valid_address(s) {
        return Some((None, s));
    }
    let (name, rest) = s.split_once('<')?;
    let addr = rest.strip_suffix('>')?;
    let name = name.trim();
    let name = name
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(name)
        .trim();
    let plain = !name.is_empty()
        && name.chars().count() <= 100
        && !name
            .chars()
            .any(|c| c.is_control() || matches!(c, '<' | '>' | '"' | '\\'));
    (plain && valid_address(addr)).then_some((Some(name), addr))
}

/// A `To:`/`From:` header value for a mailbox: `addr`, or `"Name" <addr>` (RFC 2047 encoded when the name
/// is not ASCII).
pub fn mailbox_header(m: &str) -> String {
    match mailbox(m) {
        Some((Some(name), addr)) if name.is_ascii() => format!("\"{name}\" <{addr}>"),
        Some((Some(name), addr)) => format!("=?UTF-8?B?{}?= <{addr}>", base64(name.as_bytes())),
        Some((None, addr)) => addr.to_string(),
        None => one_line(m),
    }
}

/// `Sun, 06 Dec 2026 23:12:00 +0000`: an RFC 5322 date of `secs` after the epoch, in UTC.
pub fn rfc5322_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Whether `addr` is a plain address (`local@domain`, no name).
pub fn valid_address(addr: &str) -> bool {
    if addr.is_empty() || addr.len() > 254 || addr.starts_with('-') {
        return false;
    }
    let Some((local, domain)) = addr.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let domain_ok = !domain.is_empty()
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    local_ok && domain_ok
}

/// A one-line summary: the e-mail subject and the chat line.
pub fn summary(e: &Event) -> String {
    let dir = one_line(&e.dir);
    let job = e.job_id.as_deref().unwrap_or("-");
    let line = match e.event {
        EventKind::Submitted => format!("submitted: {dir} (job {job})"),
        EventKind::Completed => format!("COMPLETED: {dir} (job {job})"),
        EventKind::Failed => format!(
            "{}: {dir} (job {job}, exit code {})",
            e.state.as_deref().unwrap_or("FAILED"),
            e.exit_code.as_deref().unwrap_or("-")
        ),
        EventKind::Lost => format!("lost: {dir} (job {job} is shown by no Slurm source)"),
        EventKind::Blocked => format!(
            "submissions blocked: {}",
            one_line(e.reason.as_deref().unwrap_or("sbatch refuses the job"))
        ),
        EventKind::Cancelled => format!(
            "cancelled: {dir} (job {job}, by {})",
            one_line(e.by.as_deref().unwrap_or("an operator"))
        ),
        EventKind::Held => {
            format!("held back: {dir} (its status file says the run did not succeed)")
        }
    };
    format!("[dirwatcher] {line}")
}

/// Control characters (a newline in a directory name) would end a header or forge a line: shown as `?`.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The e-mail's text: what happened, then every field of the event, one per line.
pub fn email_body(e: &Event) -> String {
    let mut b = String::new();
    let what = match e.event {
        EventKind::Submitted => "A job was submitted for this directory.",
        EventKind::Completed => "The job for this directory COMPLETED.",
        EventKind::Failed => "The job for this directory did not complete.",
        EventKind::Lost => {
            "The job for this directory is no longer shown by Slurm; an administrator can resubmit it with \
             `dirwatcher retry`."
        }
        EventKind::Blocked => {
            "Slurm refuses the jobs dirwatcher submits, for what its configuration asks; directories wait \
             until an administrator fixes it."
        }
        EventKind::Cancelled => {
            "An operator cancelled the job for this directory; nothing more runs for it."
        }
        EventKind::Held => {
            "This directory is not processed: its status file says the run on the instrument did not succeed."
        }
    };
    b += what;
    b += "\n\n";
    let fields: [(&str, Option<String>); 12] = [
        ("directory", Some(one_line(&e.dir))),
        ("next", e.next.as_deref().map(one_line)),
        ("cancelled by", e.by.as_deref().map(one_line)),
        ("job id", e.job_id.clone()),
        ("job name", e.job_name.clone()),
        ("state", e.state.clone()),
        ("exit code", e.exit_code.clone()),
        ("reason", e.reason.as_deref().map(one_line)),
        ("nodes", e.nodes.clone()),
        ("elapsed", e.elapsed_sec.map(elapsed_text)),
        ("output file", e.output.as_deref().map(one_line)),
        ("attempt", Some(e.attempt.to_string())),
    ];
    for (k, v) in fields {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            b += &format!("{k:<12} {v}\n");
        }
    }
    b += &format!("{:<12} {}\n", "time", e.time);
    if let Some(t) = &e.output_tail {
        b += &format!("\nThe last lines of the job's output:\n\n{t}\n");
    }
    b
}

/// `HH:MM:SS` (days as `D-HH:MM:SS`), as Slurm writes run times.
pub fn elapsed_text(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// The whole message (headers, blank line, body) with CRLF line ends, as SMTP wants it; the subject is
/// RFC 2047-encoded when it is not plain ASCII. `from` and every address of `to` are valid addresses.
pub fn email_message(e: &Event, from: &str, to: &str, date: &str, message_id: &str) -> String {
    let subject = summary(e);
    let subject = if subject.is_ascii() {
        subject
    } else {
        format!("=?UTF-8?B?{}?=", base64(subject.as_bytes()))
    };
    let to = mailbox_header(to);
    let (date, message_id) = (one_line(date), one_line(message_id));
    let mut m = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: {message_id}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\
         Auto-Submitted: auto-generated\r\n\r\n"
    );
    for line in email_body(e).lines() {
        m += line;
        m += "\r\n";
    }
    m
}

/// The webhook body: the event document itself (`dirwatcher`), or `{"text": …}` for chat incoming
/// webhooks (`slack`: Slack, Mattermost, Teams, Rocket.Chat).
pub fn webhook_body(e: &Event, format: WebhookFormat, delivery_id: &str) -> String {
    match format {
        WebhookFormat::Dirwatcher => {
            let mut doc = serde_json::to_value(e).unwrap_or_default();
            doc["delivery_id"] = delivery_id.into();
            doc.to_string()
        }
        WebhookFormat::Slack => {
            let mut text = summary(e);
            for (k, v) in [
                ("state", e.state.as_deref()),
                ("exit code", e.exit_code.as_deref()),
                ("reason", e.reason.as_deref()),
                ("next", e.next.as_deref()),
                ("output", e.output.as_deref()),
            ] {
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    text += &format!("\n{k}: {}", one_line(v));
                }
            }
            // Slack reads `<…>` as a mention or a link and `&` as the start of an entity: a directory
            // named `<!channel>` or `<https://x|fix>` must stay text.
            let text = text
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            serde_json::json!({ "text": text }).to_string()
        }
    }
}

/// The body a webhook gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookFormat {
    /// The event document (schema [`SCHEMA`]).
    #[default]
    Dirwatcher,
    /// `{"text": "<summary and fields>"}`.
    Slack,
}

impl WebhookFormat {
    /// The word in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Dirwatcher => "dirwatcher",
            WebhookFormat::Slack => "slack",
        }
    }
}

pub(crate) fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            schema: SCHEMA.into(),
            event: kind,
            time: "2027-01-15T08:00:00Z".into(),
            dir: "/data/incoming/case1".into(),
            job_id: Some("1234".into()),
            job_name: Some("dirwatch-case1".into()),
            state: Some("FAILED".into()),
            exit_code: Some("3:0".into()),
            reason: Some("NonZeroExitCode".into()),
            nodes: Some("node1".into()),
            elapsed_sec: Some(75),
            output: Some("/data/incoming/case1/slurm-1234.out".into()),
            attempt: 1,
            by: None,
            next: None,
            output_tail: None,
            host: Some("login1".into()),
            instance: Some("cryo".into()),
        }
    }

    #[test]
    fn an_event_not_listed_gets_no_notice() {
        let a = Audience {
            events: &[EventKind::Completed],
            email: true,
            owner: Some("a@example.org"),
            command: true,
            ..Audience::default()
        };
        assert!(notices_for(EventKind::Failed, &a).is_empty());
        assert_eq!(notices_for(EventKind::Completed, &a).len(), 2);
    }

    #[test]
    fn one_mail_to_the_owner_and_each_fixed_recipient_one_notice_per_webhook() {
        let fixed = vec!["ops@example.org".to_string(), "A@example.org".to_string()];
        let hooks = vec!["http://a/".to_string(), "http://b/".to_string()];
        let a = Audience {
            events: &EventKind::ALL,
            email: true,
            email_to: &fixed,
            owner: Some("a@example.org"),
            webhooks: &hooks,
            ..Audience::default()
        };
        let n = notices_for(EventKind::Completed, &a);
        assert_eq!(
            n,
            vec![
                Notice {
                    channel: Channel::Email,
                    target: "a@example.org".into()
                },
                Notice {
                    channel: Channel::Email,
                    target: "ops@example.org".into()
                },
                Notice {
                    channel: Channel::Webhook,
                    target: "http://a/".into()
                },
                Notice {
                    channel: Channel::Webhook,
                    target: "http://b/".into()
                },
            ]
        );
        let blocked = notices_for(EventKind::Blocked, &a);
        assert_eq!(
            (blocked[0].target.as_str(), blocked[1].target.as_str()),
            ("ops@example.org", "A@example.org"),
            "a blocked submission is for the operators, not the directory's owner"
        );
        let no_transport = Audience { email: false, ..a };
        assert!(
            notices_for(EventKind::Completed, &no_transport)
                .iter()
                .all(|n| n.channel != Channel::Email)
        );
    }

    #[test]
    fn retries_back_off_and_give_up_after_the_last_attempt() {
        let p = RetryPolicy {
            base: Duration::from_secs(30),
            max: RETRY_CAP,
            attempts: 3,
        };
        assert_eq!(after_failure(1, 0, p), AfterFailure::RetryAt(30_000));
        assert_eq!(after_failure(2, 0, p), AfterFailure::RetryAt(60_000));
        assert_eq!(after_failure(3, 0, p), AfterFailure::GiveUp);
    }

    #[test]
    fn addresses_that_could_inject_headers_or_options_are_refused() {
        for ok in [
            "a@example.org",
            "first.last+tag@sub.example.co",
            "x@localhost",
        ] {
            assert!(valid_address(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@b",
            "a@b@c",
            "a@example.org\r\nBcc: victim@example.org",
            "a@example.org\nBcc: x@y",
            "a@example.org, b@example.org",
            "Name <a@example.org>",
            "-oQ/tmp/x@example.org",
            "a b@example.org",
            "a@exa_mple.org",
            "a..b@example.org",
            "\"q\"@example.org",
        ] {
            assert!(!valid_address(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_mail_names_directory_job_state_exit_code_reason_elapsed_and_output() {
        let m = email_message(
            &event(EventKind::Failed),
            "dw@example.org",
            "a@example.org",
            "Thu, 01 Jan 1970 00:00:00 +0000",
            "<x@example.org>",
        );
        let (head, body) = m.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(
            "Subject: [dirwatcher] FAILED: /data/incoming/case1 (job 1234, exit code 3:0)"
        ));
        assert!(head.contains("To: a@example.org\r\n"));
        for want in [
            "/data/incoming/case1",
            "1234",
            "FAILED",
            "3:0",
            "NonZeroExitCode",
            "00:01:15",
            "slurm-1234.out",
        ] {
            assert!(body.contains(want), "{want} missing:\n{body}");
        }
        assert!(m.split("\r\n").all(|l| !l.contains('\n')), "a bare LF");
    }

    #[test]
    fn a_mail_has_a_date_a_message_id_and_its_one_recipient_with_a_name() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_796_598_720),
            "Sun, 06 Dec 2026 23:12:00 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        let m = email_message(
            &event(EventKind::Completed),
            "dw@example.org",
            "Dana Scully <dana@example.org>",
            &rfc5322_date(1_796_598_720),
            "<dw-ab12cd34-7@example.org>",
        );
        let (head, _) = m.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains("\r\nTo: \"Dana Scully\" <dana@example.org>\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\nDate: Sun, 06 Dec 2026 23:12:00 +0000\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\nMessage-ID: <dw-ab12cd34-7@example.org>\r\n"),
            "{head}"
        );
        assert_eq!(
            mailbox("\"Dana Scully\" <dana@example.org>"),
            Some((Some("Dana Scully"), "dana@example.org"))
        );
        for bad in [
            "Eve <a@b.org>, x@y.org",
            "Eve\r\nBcc: x <a@b.org>",
            "<>",
            "Eve <not an address>",
        ] {
            assert_eq!(mailbox(bad), None, "{bad:?}");
        }
        assert!(mailbox_header("Jürgen <j@example.org>").starts_with("=?UTF-8?B?"));
        // One notice per recipient, the owner's and the team's, the same address once.
        let a = Audience {
            events: &[EventKind::Completed],
            email: true,
            email_to: &["team@example.org".into(), "DANA@example.org".into()],
            owner: Some("Dana <dana@example.org>"),
            ..Audience::default()
        };
        let n = notices_for(EventKind::Completed, &a);
        let targets: Vec<&str> = n.iter().map(|n| n.target.as_str()).collect();
        assert_eq!(targets, ["Dana <dana@example.org>", "team@example.org"]);
    }

    #[test]
    fn a_newline_in_a_directory_name_cannot_forge_a_header() {
        let mut e = event(EventKind::Completed);
        e.dir = "/data/x\r\nBcc: victim@example.org".into();
        let m = email_message(
            &e,
            "dw@example.org",
            "a@example.org",
            "d",
            "<x@example.org>",
        );
        let (head, _) = m.split_once("\r\n\r\n").unwrap();
        assert!(!head.lines().any(|l| l.starts_with("Bcc")), "{head}");
        let mut e = event(EventKind::Completed);
        e.dir = "/data/Übung".into();
        let m = email_message(
            &e,
            "dw@example.org",
            "a@example.org",
            "d",
            "<x@example.org>",
        );
        assert!(m.contains("Subject: =?UTF-8?B?"), "{m}");
    }

    #[test]
    fn an_output_tail_is_bounded_and_shows_no_control_characters() {
        let mut out = Vec::new();
        for i in 0..100 {
            out.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        out.extend_from_slice(b"Traceback \x1b[31mred\x1b[0m\tend\n");
        let t = output_tail(&out, false).unwrap();
        assert_eq!(t.lines().count(), TAIL_LINES);
        assert!(t.starts_with("line 61\n"), "{t}");
        assert!(t.ends_with("Traceback ?[31mred?[0m\tend"), "{t}");
        let big = vec![b'x'; 3 * TAIL_BYTES];
        let t = output_tail(&[&big[..], b"\nlast words"].concat(), false).unwrap();
        assert_eq!(t, "last words", "a line cut short is dropped");
        assert_eq!(
            output_tail(b"partial\nwhole\n", true).as_deref(),
            Some("whole")
        );
        assert_eq!(output_tail(b"  \n", false), None);
    }

    #[test]
    fn a_chat_line_carries_no_mention_or_link_a_name_smuggles_in() {
        let mut e = event(EventKind::Failed);
        e.dir = "/data/<!channel> <@U123> <https://evil.example|click to fix> & co".into();
        let chat: serde_json::Value =
            serde_json::from_str(&webhook_body(&e, WebhookFormat::Slack, "x")).unwrap();
        let text = chat["text"].as_str().unwrap();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(text.contains("&lt;!channel&gt;"), "{text}");
        assert!(text.contains("&amp; co"), "{text}");
    }

    #[test]
    fn webhook_bodies_are_the_versioned_document_or_a_chat_line() {
        let e = event(EventKind::Completed);
        let doc: serde_json::Value =
            serde_json::from_str(&webhook_body(&e, WebhookFormat::Dirwatcher, "ab12cd34-7"))
                .unwrap();
        assert_eq!(doc["schema"], SCHEMA);
        assert_eq!(doc["delivery_id"], "ab12cd34-7");
        assert_eq!(doc["event"], "completed");
        assert_eq!(doc["elapsed_sec"], 75);
        assert_eq!(
            (&doc["host"], &doc["instance"]),
            (&"login1".into(), &"cryo".into())
        );
        // A notice queued by an earlier release has neither: they read as null.
        let mut old = serde_json::to_value(&e).unwrap();
        let o = old.as_object_mut().unwrap();
        o.remove("host");
        o.remove("instance");
        let e: Event = serde_json::from_value(old).unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(&webhook_body(&e, WebhookFormat::Dirwatcher, "x")).unwrap();
        assert!(doc["host"].is_null() && doc["instance"].is_null(), "{doc}");
        let chat: serde_json::Value =
            serde_json::from_str(&webhook_body(&e, WebhookFormat::Slack, "x")).unwrap();
        assert!(
            chat["text"]
                .as_str()
                .unwrap()
                .starts_with("[dirwatcher] COMPLETED")
        );
    }

    #[test]
    fn base64_matches_the_rfc_examples() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
