//! Delivering notices: e-mail through `sendmail -t` when it is installed (as the original) or SMTP, JSON
//! POSTs to webhooks, and the event hook (a configured program with the event document on stdin); and
//! reading the recipient a directory names in its `.dirwatch_meta.json`.
//!
//! SMTP and HTTP(S) go through `curl` (a child process, like every other tool we call): it speaks STARTTLS,
//! implicit TLS and AUTH with the system's CA store, and keeps a TLS stack out of this binary. Its whole
//! request — URL, credentials, token, body — is handed over as a config on stdin (`curl -K -`), never on
//! the command line, which every user can read in `/proc`.
//!
//! Owns: the argument vectors and curl configs of the channels, the transport choice, the safe read of the
//! meta file. Must never: put a secret in an argument, a log line or an error; follow a symlink to the meta
//! file or read more than [`META_LIMIT`] of it; wait longer than `notify.timeout_sec` for one delivery;
//! decide retries (that is `engine::notice`).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{NotifyConfig, SmtpConfig};
use crate::engine::notice::{self, Channel, Event};
use crate::ledger::Notice;
use crate::process::{self, Invocation, ProcessError};

/// The meta file the original reads in each directory.
pub const META_FILE: &str = ".dirwatch_meta.json";

/// The largest meta file read: it holds an address and a few fields, not data.
pub const META_LIMIT: u64 = 64 * 1024;

/// How e-mail leaves this machine, as resolved at start (and after a reload).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EmailTransport {
    /// `sendmail -t -oi` (this program).
    Sendmail(PathBuf),
    /// SMTP through curl.
    Smtp(SmtpConfig),
    /// Nothing to send mail with: e-mail notices are not queued.
    #[default]
    None,
}

impl EmailTransport {
    /// The transport the config asks for: `sendmail` from `PATH` (or `/usr/sbin`, `/usr/lib`) when
    /// `email_via` is `auto` or `sendmail`, else SMTP when `behavior.smtp_host` is set.
    pub fn resolve(n: &NotifyConfig) -> EmailTransport {
        use crate::config::EmailVia;
        let sendmail = || find_sendmail().map(EmailTransport::Sendmail);
        let smtp = || n.smtp.clone().map(EmailTransport::Smtp);
        let found = match n.email_via {
            EmailVia::Auto => sendmail().or_else(smtp),
            EmailVia::Sendmail => sendmail(),
            EmailVia::Smtp => smtp(),
        };
        found.unwrap_or(EmailTransport::None)
    }

    /// How it is said in the start line.
    pub fn describe(&self) -> String {
        match self {
            EmailTransport::Sendmail(p) => format!("`{} -t`", p.display()),
            EmailTransport::Smtp(s) => format!(
                "SMTP {}:{}{}",
                s.host,
                s.port,
                match (s.tls, s.port) {
                    (false, _) => " (no TLS)",
                    (true, 465) => " (TLS)",
                    (true, _) => " (STARTTLS)",
                }
            ),
            EmailTransport::None => "nothing (no sendmail, no `behavior.smtp_host`)".into(),
        }
    }
}

fn find_sendmail() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/lib")])
        .map(|d| d.join("sendmail"))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The sender: `behavior.from_email`, else `dirwatcher@<host name>` (as the original's installer).
pub fn from_address(n: &NotifyConfig) -> String {
    if let Some(f) = &n.from {
        return f.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let a = format!("dirwatcher@{host}");
    if notice::valid_address(&a) {
        a
    } else {
        "dirwatcher@localhost".into()
    }
}

/// Why a directory's meta file names no recipient.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetaProblem {
    /// A symlink, a FIFO, a directory: not read.
    #[error("`{META_FILE}` is not a regular file (a symlink is never followed)")]
    NotAFile,
    /// Larger than [`META_LIMIT`].
    #[error("`{META_FILE}` is larger than {META_LIMIT} bytes")]
    TooLarge,
    /// Not a JSON object.
    #[error("`{META_FILE}` is not a JSON object")]
    NotJson,
    /// `user_email` is not a plain address (a CR/LF, a list, a name, an option).
    #[error("`user_email` in `{META_FILE}` is not a plain e-mail address")]
    BadAddress,
    /// It could not be read.
    #[error("cannot read `{META_FILE}`: {0}")]
    Io(String),
}

/// The address in `<root>/<dir>/.dirwatch_meta.json` (`{"user_email": "…"}`), read safely: the directory
/// and the file are opened without following symlinks (the file relative to the opened directory), only a
/// regular file of at most [`META_LIMIT`] bytes is read, and the address must be plain. `Ok(None)`: no
/// file, or no `user_email` in it.
pub fn read_owner(root: &Path, dir: &std::ffi::OsStr) -> Result<Option<String>, MetaProblem> {
    let nofollow = libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let io = |e: std::io::Error| MetaProblem::Io(e.to_string());
    let d = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nofollow | libc::O_DIRECTORY)
        .open(root.join(dir))
    {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e)
            if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Err(MetaProblem::NotAFile);
        }
        Err(e) => return Err(io(e)),
    };
    // Relative to the descriptor: a directory swapped for a symlink after the open changes nothing.
    use std::os::fd::AsRawFd;
    let at = PathBuf::from(format!("/proc/self/fd/{}/{META_FILE}", d.as_raw_fd()));
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nofollow | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&at)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(MetaProblem::NotAFile),
        Err(e) => return Err(io(e)),
    };
    let m = f.metadata().map_err(io)?;
    if !m.is_file() {
        return Err(MetaProblem::NotAFile);
    }
    if m.len() > META_LIMIT {
        return Err(MetaProblem::TooLarge);
    }
    let mut buf = Vec::new();
    f.take(META_LIMIT + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > META_LIMIT {
        return Err(MetaProblem::TooLarge);
    }
    let v: serde_json::Value = serde_json::from_slice(&buf).map_err(|_| MetaProblem::NotJson)?;
    let Some(obj) = v.as_object() else {
        return Err(MetaProblem::NotJson);
    };
    match obj.get("user_email") {
        None | Some(serde_json::Value::Null) => Ok(None),
        // The original's web app writes an empty address for a user without one.
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) if notice::mailbox(s).is_some() => {
            Ok(Some(s.trim().to_string()))
        }
        Some(_) => Err(MetaProblem::BadAddress),
    }
}

/// Why one delivery failed (never carries a secret).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The stored event is not a document of this version.
    #[error("the queued event cannot be read: {0}")]
    BadEvent(String),
    /// E-mail is queued but no transport is configured (any more).
    #[error("no way to send e-mail: install sendmail or set `behavior.smtp_host`")]
    NoTransport,
    /// The command hook is queued but `notify.command` is empty (a reload removed it).
    #[error("`notify.command` is not set (any more)")]
    NoCommand,
    /// The scratch file for the message could not be written.
    #[error("cannot write the message file `{path}`: {error}")]
    Scratch {
        /// The file.
        path: PathBuf,
        /// Cause.
        error: String,
    },
    /// The tool or hook failed (exit status and its stderr, which curl keeps free of URLs' paths and
    /// credentials).
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The web application's database refused or could not be reached (`db:`).
    #[error(transparent)]
    Database(#[from] crate::bridge::BridgeError),
    /// No `db:` section (any more).
    #[error("the `db:` section is not set (any more)")]
    NoDatabase,
}

/// What a delivery needs besides the notice: the config, the e-mail transport, and a private folder for
/// the message file of an SMTP delivery.
#[derive(Debug)]
pub struct Courier<'a> {
    /// `notify:` in force.
    pub cfg: &'a NotifyConfig,
    /// E-mail transport in force.
    pub email: &'a EmailTransport,
    /// Where the message file of an SMTP delivery is written (the state file's folder).
    pub scratch: &'a Path,
}

impl Courier<'_> {
    /// Delivers one notice, within `notify.timeout_sec`.
    pub fn deliver(&self, n: &Notice) -> Result<(), DeliveryError> {
        let event: Event =
            serde_json::from_str(&n.payload).map_err(|e| DeliveryError::BadEvent(e.to_string()))?;
        let timeout = self.cfg.timeout;
        match n.channel {
            Channel::Email => self.email(n, &event, timeout),
            Channel::Webhook => {
                let body = notice::webhook_body(&event, self.cfg.webhook_format, &n.delivery_id);
                let conf = webhook_curl_config(
                    &n.target,
                    &body,
                    self.cfg.webhook_token.as_ref().map(|t| t.expose()),
                    timeout,
                    &n.delivery_id,
                );
                process::run_with_input(&curl(), conf.as_bytes(), timeout + GRACE)?;
                Ok(())
            }
            Channel::Database => {
                let db = self.cfg.db.as_ref().ok_or(DeliveryError::NoDatabase)?;
                crate::bridge::upsert(db, &event, &n.target, timeout)?;
                Ok(())
            }
            Channel::Command => {
                let Some((program, args)) = self.cfg.command.split_first() else {
                    return Err(DeliveryError::NoCommand);
                };
                let mut inv = Invocation::new(program);
                inv.args = args.iter().map(Into::into).collect();
                inv.env
                    .push(("DIRWATCHER_EVENT".into(), event.event.as_str().into()));
                inv.env.push((
                    "DIRWATCHER_DELIVERY_ID".into(),
                    n.delivery_id.clone().into(),
                ));
                process::run_with_input(&inv, n.payload.as_bytes(), timeout)?;
                Ok(())
            }
        }
    }

    fn email(&self, n: &Notice, event: &Event, timeout: Duration) -> Result<(), DeliveryError> {
        let from = from_address(self.cfg);
        // The same Message-ID for every attempt of this notice: a receiver that got it twice can tell.
        let domain = from.rsplit('@').next().unwrap_or("localhost");
        let message_id = format!("<{}@{domain}>", n.delivery_id);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let date = notice::rfc5322_date(now);
        let message = notice::email_message(event, &from, &n.target, &date, &message_id);
        let rcpt = notice::mailbox(&n.target).map_or(n.target.as_str(), |(_, a)| a);
        let rcpts = [rcpt];
        match self.email {
            EmailTransport::None => Err(DeliveryError::NoTransport),
            EmailTransport::Sendmail(p) => {
                // sendmail wants local line ends; `-t` takes the recipients from the headers, `-oi`
                // keeps a line with a single dot from ending the message.
                let local = message.replace("\r\n", "\n");
                let inv = Invocation::new(p).arg("-t").arg("-oi");
                process::run_with_input(&inv, local.as_bytes(), timeout)?;
                Ok(())
            }
            EmailTransport::Smtp(s) => {
                let file =
                    self.scratch
                        .join(format!(".dirwatcher-mail-{}-{}", std::process::id(), n.id));
                write_private(&file, message.as_bytes()).map_err(|e| DeliveryError::Scratch {
                    path: file.clone(),
                    error: e.to_string(),
                })?;
                let conf = smtp_curl_config(s, &from, &rcpts, &file, timeout);
                let r = process::run_with_input(&curl(), conf.as_bytes(), timeout + GRACE);
                let _ = std::fs::remove_file(&file);
                r?;
                Ok(())
            }
        }
    }
}

/// curl enforces `--max-time` itself; our bound is a little longer so its own message wins.
const GRACE: Duration = Duration::from_secs(2);

fn curl() -> Invocation {
    // Everything else comes in the config on stdin.
    Invocation::new("curl").arg("--disable").arg("-K").arg("-")
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(data)
}

/// A value of a curl config line: in double quotes, with `\` and `"` escaped and line ends written as
/// escapes (curl(1), `-K`: "\\, \", \t, \n, \r and \v").
fn cq(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out += "\\\\",
            '"' => out += "\\\"",
            '\n' => out += "\\n",
            '\r' => out += "\\r",
            '\t' => out += "\\t",
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The curl config of an SMTP delivery: implicit TLS on port 465, required STARTTLS on any other port
/// with `smtp_use_tls`, plain SMTP without; AUTH when a user is set.
pub fn smtp_curl_config(
    s: &SmtpConfig,
    from: &str,
    rcpts: &[&str],
    message: &Path,
    timeout: Duration,
) -> String {
    let scheme = if s.tls && s.port == 465 {
        "smtps"
    } else {
        "smtp"
    };
    let mut c = String::new();
    c += "silent\nshow-error\n";
    c += &format!("max-time = {}\n", timeout.as_secs().max(1));
    c += &format!(
        "url = {}\n",
        cq(&format!("{scheme}://{}:{}", s.host, s.port))
    );
    if s.tls && s.port != 465 {
        c += "ssl-reqd\n";
    }
    c += &format!("mail-from = {}\n", cq(from));
    for r in rcpts {
        c += &format!("mail-rcpt = {}\n", cq(r));
    }
    c += &format!("upload-file = {}\n", cq(&message.to_string_lossy()));
    if let Some(user) = &s.user {
        let pass = s.pass.as_ref().map(|p| p.expose()).unwrap_or_default();
        c += &format!("user = {}\n", cq(&format!("{user}:{pass}")));
    }
    c
}

/// The curl config of a webhook POST: JSON body, bearer token when configured, failure on HTTP ≥ 400.
pub fn webhook_curl_config(
    url: &str,
    body: &str,
    token: Option<&str>,
    timeout: Duration,
    delivery_id: &str,
) -> String {
    let mut c = String::new();
    c += "silent\nshow-error\nfail\n";
    c += &format!("max-time = {}\n", timeout.as_secs().max(1));
    c += &format!("url = {}\n", cq(url));
    c += "request = \"POST\"\n";
    c += "header = \"Content-Type: application/json\"\n";
    c += &format!(
        "header = {}\n",
        cq(&format!(
            "User-Agent: dirwatcher/{}",
            env!("CARGO_PKG_VERSION")
        ))
    );
    c += &format!(
        "header = {}\n",
        cq(&format!("X-Dirwatcher-Delivery: {delivery_id}"))
    );
    if let Some(t) = token {
        c += &format!("header = {}\n", cq(&format!("Authorization: Bearer {t}")));
    }
    c += &format!("data-binary = {}\n", cq(body));
    c
}

/// A notice's target as logs may show it: the recipients, the webhook's scheme and host (its path and
/// query may be a secret, as Slack's are), the hook's program.
pub fn target_label(n: &Notice, cfg: &NotifyConfig) -> String {
    match n.channel {
        Channel::Email => n.target.clone(),
        Channel::Webhook => url_origin(&n.target),
        Channel::Command => cfg.command.first().cloned().unwrap_or_default(),
        Channel::Database => cfg.db.as_ref().map(|d| d.describe()).unwrap_or_default(),
    }
}

/// `https://hooks.example.org/services/T0/B0/xyz` → `https://hooks.example.org`.
pub fn url_origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // user:password@host → host
    let host = host.rsplit('@').next().unwrap_or(host);
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn curl_config_values_cannot_break_out_of_their_line() {
        assert_eq!(cq("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        let c = webhook_curl_config(
            "https://h/x",
            "{\"a\":\"\\n\"}",
            Some("tok"),
            Duration::from_secs(5),
            "ab-1",
        );
        assert_eq!(
            c.lines().filter(|l| l.starts_with("data-binary")).count(),
            1
        );
        assert!(
            c.contains("header = \"Authorization: Bearer tok\"\n"),
            "{c}"
        );
        assert!(c.contains("fail\n"));
    }

    #[test]
    fn smtp_uses_implicit_tls_on_465_and_requires_starttls_elsewhere() {
        let s = SmtpConfig {
            host: "mail.example.org".into(),
            port: 587,
            user: Some("dw".into()),
            pass: None,
            tls: true,
        };
        let c = smtp_curl_config(&s, "a@b", &["c@d"], Path::new("/x"), Duration::from_secs(3));
        assert!(
            c.contains("url = \"smtp://mail.example.org:587\"") && c.contains("ssl-reqd"),
            "{c}"
        );
        let c = smtp_curl_config(
            &SmtpConfig {
                port: 465,
                ..s.clone()
            },
            "a@b",
            &["c@d"],
            Path::new("/x"),
            Duration::from_secs(3),
        );
        assert!(c.contains("smtps://") && !c.contains("ssl-reqd"), "{c}");
        let plain = SmtpConfig {
            tls: false,
            ..s.clone()
        };
        let c = smtp_curl_config(
            &plain,
            "a@b",
            &["c@d"],
            Path::new("/x"),
            Duration::from_secs(3),
        );
        assert!(c.contains("smtp://") && !c.contains("ssl-reqd"));
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "<secret>");
    }

    #[test]
    fn logs_show_a_webhooks_origin_only() {
        assert_eq!(
            url_origin("https://hooks.slack.com/services/T0/B0/secret?x=1"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            url_origin("http://u:pw@127.0.0.1:8080/h"),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn the_meta_file_is_read_only_when_it_is_a_small_regular_json_file_with_a_plain_address() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let mk = |name: &str, content: &[u8]| {
            std::fs::create_dir(root.join(name)).unwrap();
            std::fs::write(root.join(name).join(META_FILE), content).unwrap();
        };
        mk("good", br#"{"user_email":"a@example.org","game_id":3}"#);
        mk("empty", br#"{"user_email":""}"#);
        mk("notjson", b"user_email=a@example.org");
        mk(
            "inject",
            b"{\"user_email\":\"a@example.org\\r\\nBcc: v@example.org\"}",
        );
        mk("list", br#"{"user_email":"a@example.org, b@example.org"}"#);
        mk("huge", &vec![b' '; META_LIMIT as usize + 10]);
        std::fs::create_dir(root.join("link")).unwrap();
        std::os::unix::fs::symlink(
            root.join("good").join(META_FILE),
            root.join("link").join(META_FILE),
        )
        .unwrap();
        std::fs::create_dir(root.join("none")).unwrap();
        let r = |d: &str| read_owner(root, d.as_ref());
        assert_eq!(r("good"), Ok(Some("a@example.org".into())));
        assert_eq!(r("empty"), Ok(None));
        assert_eq!(r("none"), Ok(None));
        assert_eq!(r("notjson"), Err(MetaProblem::NotJson));
        assert_eq!(r("inject"), Err(MetaProblem::BadAddress));
        assert_eq!(r("list"), Err(MetaProblem::BadAddress));
        assert_eq!(r("huge"), Err(MetaProblem::TooLarge));
        assert_eq!(r("link"), Err(MetaProblem::NotAFile));
        std::os::unix::fs::symlink(root.join("good"), root.join("dirlink")).unwrap();
        assert_eq!(
            r("dirlink"),
            Err(MetaProblem::NotAFile),
            "a symlinked directory is not entered"
        );
    }
}
