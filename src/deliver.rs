//! Delivering notices: e-mail through `sendmail -t` when it is installed (as the original) or SMTP, JSON
//! POSTs to webhooks, and the event hook (a configured program with the event document on stdin); and
//! reading the recipient a directory names in its `.dirwatch_meta.json`.
//!
//! SMTP goes through lettre (implicit TLS, required STARTTLS, AUTH, a message built to the RFCs), webhooks
//! through ureq: both in this process, with rustls (the *ring* provider) checking certificates against the
//! system's CA store as rustls-native-certs finds it (`SSL_CERT_FILE` and `SSL_CERT_DIR` name a site's
//! own CA). Secrets stay in memory: no child process, no argument, no file carries them.
//!
//! Owns: the transport choice, the SMTP message and session, the webhook request, the wording of their
//! failures, the safe read of the meta file. Must never: put a secret (password, token) or a webhook's
//! path or query in a log line or an error; follow a symlink to the meta file or read more than
//! [`META_LIMIT`] of it; wait much longer than `notify.timeout_sec` for one delivery; decide retries (that
//! is `engine::notice`).

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
    /// SMTP (lettre).
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

/// Why one delivery failed. Never carries a secret (password, token) or a webhook's path or query (Slack's
/// and others' URLs are the secret): the texts are ours, with the server's own reply where it says why,
/// and [`scrub`]bed of the secrets besides.
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
    /// The message cannot be written (an address the mail library does not take, though ours did).
    #[error("cannot write the message: {0}")]
    Message(String),
    /// The SMTP server could not be reached, or refused TLS, the login or the message.
    #[error("SMTP server `{server}`: {problem}")]
    Smtp {
        /// `host:port`.
        server: String,
        /// What happened, in words, with the server's reply when it gave one.
        problem: String,
    },
    /// The webhook's server could not be reached, failed TLS, or answered HTTP ≥ 400 (the log line and
    /// `status` name the server already).
    #[error("{0}")]
    Webhook(String),
    /// sendmail or the hook failed (exit status and its stderr).
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The web application's database refused or could not be reached (`db:`).
    #[error(transparent)]
    Database(#[from] crate::bridge::BridgeError),
    /// No `db:` section (any more).
    #[error("the `db:` section was removed from the config: this row is not written (given up)")]
    NoDatabase,
}

/// What a delivery needs besides the notice: the config and the e-mail transport in force, and the HTTP
/// client of the batch's webhooks (made at the first webhook).
#[derive(Debug)]
pub struct Courier<'a> {
    /// `notify:` in force.
    cfg: &'a NotifyConfig,
    /// E-mail transport in force.
    email: &'a EmailTransport,
    /// One client per batch: it reads the CA store once and keeps a connection open between posts to one
    /// server.
    http: std::cell::OnceCell<ureq::Agent>,
}

impl<'a> Courier<'a> {
    /// A courier for one batch.
    pub fn new(cfg: &'a NotifyConfig, email: &'a EmailTransport) -> Courier<'a> {
        Courier {
            cfg,
            email,
            http: std::cell::OnceCell::new(),
        }
    }

    /// Delivers one notice, within `notify.timeout_sec` (a second more at most).
    pub fn deliver(&self, n: &Notice) -> Result<(), DeliveryError> {
        let event: Event =
            serde_json::from_str(&n.payload).map_err(|e| DeliveryError::BadEvent(e.to_string()))?;
        let timeout = self.cfg.timeout;
        match n.channel {
            Channel::Email => self.email(n, &event, timeout),
            Channel::Webhook => {
                let body = notice::webhook_body(&event, self.cfg.webhook_format, &n.delivery_id);
                let agent = self.http.get_or_init(|| http_agent(timeout));
                let token = self.cfg.webhook_token.as_ref().map(|t| t.expose());
                post_webhook(agent, &n.target, &body, token, &n.delivery_id, timeout)
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
        let now = std::time::SystemTime::now();
        match self.email {
            EmailTransport::None => Err(DeliveryError::NoTransport),
            EmailTransport::Sendmail(p) => {
                let secs = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let date = notice::rfc5322_date(secs);
                let message = notice::email_message(event, &from, &n.target, &date, &message_id);
                // sendmail wants local line ends; `-t` takes the recipients from the headers, `-oi`
                // keeps a line with a single dot from ending the message.
                let local = message.replace("\r\n", "\n");
                let inv = Invocation::new(p).arg("-t").arg("-oi");
                process::run_with_input(&inv, local.as_bytes(), timeout)?;
                Ok(())
            }
            EmailTransport::Smtp(s) => {
                let message = smtp_message(event, &from, &n.target, now, &message_id)?;
                send_smtp(s, &message, timeout)
            }
        }
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders and list servers do not answer it.
#[derive(Clone)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// The message an SMTP delivery sends: what [`notice::email_message`] writes for sendmail (From, To with
/// its name, Subject, Date, our Message-ID, Auto-Submitted, the UTF-8 text), encoded by lettre, which
/// folds long headers and picks a transfer encoding a relay accepts (7bit, 8bit, or quoted-printable for
/// a line longer than SMTP allows).
pub fn smtp_message(
    e: &Event,
    from: &str,
    to: &str,
    date: std::time::SystemTime,
    message_id: &str,
) -> Result<lettre::Message, DeliveryError> {
    use lettre::message::{Body, Mailbox, SinglePart, header};
    let bad = |a: &str, e: lettre::address::AddressError| {
        DeliveryError::Message(format!("`{a}` is not an address lettre takes: {e}"))
    };
    let from: Mailbox = from.parse().map_err(|e| bad(from, e))?;
    let (name, addr) = notice::mailbox(to).unwrap_or((None, to));
    let to = Mailbox::new(
        name.map(str::to_string),
        addr.parse().map_err(|e| bad(to, e))?,
    );
    // SMTP's line ends, as for sendmail's message; no bare CR is left to end a line early.
    let text: String = notice::email_body(e)
        .lines()
        .flat_map(|l| [l.replace('\r', "?"), "\r\n".into()])
        .collect();
    // 7bit or 8bit when every line fits SMTP's limit of 998 octets (lettre would encode any line past 76,
    // making the text unreadable as it is stored or grepped); else lettre's quoted-printable or base64.
    let body = if text.split("\r\n").all(|l| l.len() <= 998) {
        let cte = if text.is_ascii() {
            header::ContentTransferEncoding::SevenBit
        } else {
            header::ContentTransferEncoding::EightBit
        };
        Body::dangerous_pre_encoded(text.into_bytes(), cte)
    } else {
        Body::new(text)
    };
    lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(notice::summary(e))
        .date(date)
        .message_id(Some(message_id.to_string()))
        .header(AutoSubmitted)
        .singlepart(
            SinglePart::builder()
                .header(header::ContentType::TEXT_PLAIN)
                .body(body),
        )
        .map_err(|e| DeliveryError::Message(e.to_string()))
}

/// Sends one message over SMTP: implicit TLS on port 465, required STARTTLS on any other port with
/// `smtp_use_tls` (no credentials or mail before it), plain SMTP without; certificates always checked
/// against the system's CA store (`SSL_CERT_FILE`/`SSL_CERT_DIR` name a site's own); AUTH PLAIN or LOGIN
/// when a user and a password are set. Every read and write is bounded by `timeout`.
fn send_smtp(
    s: &SmtpConfig,
    message: &lettre::Message,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    use lettre::Transport;
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    let pass = s.pass.as_ref().map(|p| p.expose()).unwrap_or_default();
    let user = s.user.as_deref().unwrap_or_default();
    let secrets = smtp_secrets(user, pass);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let fail = |problem: String| DeliveryError::Smtp {
        server: format!("{}:{}", s.host, s.port),
        problem: scrub(problem, &secrets),
    };
    let tls = || TlsParameters::new(s.host.clone()).map_err(|e| fail(smtp_problem(&e, timeout)));
    let mode = match (s.tls, s.port) {
        (false, _) => Tls::None,
        (true, 465) => Tls::Wrapper(tls()?),
        (true, _) => Tls::Required(tls()?),
    };
    // "Dangerous" only in that it starts without TLS: the mode above decides.
    let mut b = lettre::SmtpTransport::builder_dangerous(s.host.as_str())
        .port(s.port)
        .tls(mode)
        .timeout(Some(timeout))
        .hello_name(hello_name());
    if let (Some(user), Some(pass)) = (&s.user, &s.pass) {
        b = b
            .credentials(Credentials::new(user.clone(), pass.expose().to_string()))
            .authentication(vec![Mechanism::Plain, Mechanism::Login]);
    }
    b.build()
        .send(message)
        .map(drop)
        .map_err(|e| fail(smtp_problem(&e, timeout)))
}

/// The password as it may come back in a server's reply: itself, and in the forms AUTH PLAIN and LOGIN
/// send it.
fn smtp_secrets(user: &str, pass: &str) -> Vec<String> {
    if pass.is_empty() {
        return Vec::new();
    }
    vec![
        pass.to_string(),
        notice::base64(format!("\0{user}\0{pass}").as_bytes()),
        notice::base64(pass.as_bytes()),
    ]
}

/// The EHLO name: this machine's name, as curl and sendmail say it (RFC 5321 wants a name a relay can
/// look up; `[127.0.0.1]` when it has none that is a domain).
fn hello_name() -> lettre::transport::smtp::extension::ClientId {
    use lettre::transport::smtp::extension::ClientId;
    match host_name() {
        Some(h)
            if h.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }) =>
        {
            ClientId::Domain(h)
        }
        _ => ClientId::default(),
    }
}

/// This machine's host name (the kernel's), if it has one.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// An SMTP failure in words: the server's reply when it refused (with what to check for a refused
/// login), else what became of the connection.
fn smtp_problem(e: &lettre::transport::smtp::Error, timeout: Duration) -> String {
    use std::error::Error;
    if let Some(code) = e.status() {
        let reply = e.source().map(|s| s.to_string()).unwrap_or_default();
        let next = match code.to_string().as_str() {
            "535" | "534" => "; check `behavior.smtp_user` and its password",
            "530" => "; it wants a login: set `behavior.smtp_user` and a password",
            _ => "",
        };
        return format!("it refused: {code} {reply}{next}");
    }
    if e.is_timeout() {
        return no_answer(timeout);
    }
    connection_problem(e, timeout).unwrap_or_else(|| e.to_string())
}

/// An HTTP client for one batch of webhooks: the whole of each request (connect, TLS, send, answer) within
/// `timeout`; the system's CA store, read through rustls-native-certs so that `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` name a site's own CA as they do for OpenSSL; no redirects (a POST is not repeated
/// elsewhere, and the token stays with the server it was written for); HTTP ≥ 400 is an error.
fn http_agent(timeout: Duration) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&roots))
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(ring_provider()))
        .build();
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(true)
        .user_agent(format!("dirwatcher/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into()
}

/// rustls with *ring*, as lettre uses it: aws-lc-rs (rustls' default, with post-quantum key exchange,
/// hence the deprecation) needs cmake and more of a C toolchain to build; *ring* lacks only that.
#[allow(deprecated)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// POSTs a webhook's body: JSON, the delivery id in `X-Dirwatcher-Delivery` (a receiver that got it twice
/// can tell), the bearer token when one is configured.
fn post_webhook(
    agent: &ureq::Agent,
    url: &str,
    body: &str,
    token: Option<&str>,
    delivery_id: &str,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let mut req = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Dirwatcher-Delivery", delivery_id);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    match req.send(body) {
        Ok(_) => Ok(()),
        Err(e) => Err(DeliveryError::Webhook(scrub(
            http_problem(&e, timeout),
            &webhook_secrets(url, token),
        ))),
    }
}

/// What of a webhook never shows: the token, the URL, its user info, path and query.
fn webhook_secrets<'u>(url: &'u str, token: Option<&'u str>) -> Vec<&'u str> {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, rest) = after_scheme.split_at(
        after_scheme
            .find(['/', '?', '#'])
            .unwrap_or(after_scheme.len()),
    );
    let mut v = vec![url];
    // A bare `/` is no secret, and hiding it would garble every text.
    if rest.len() > 1 {
        v.push(rest);
    }
    v.extend(authority.rsplit_once('@').map(|(userinfo, _)| userinfo));
    v.extend(token);
    v
}

/// A webhook failure in words.
fn http_problem(e: &ureq::Error, timeout: Duration) -> String {
    use ureq::Error as E;
    match e {
        E::StatusCode(c) => {
            let reason = ureq::http::StatusCode::from_u16(*c)
                .ok()
                .and_then(|s| s.canonical_reason())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            format!("the server answered HTTP {c}{reason}")
        }
        E::Timeout(_) => no_answer(timeout),
        E::HostNotFound => "its host name does not resolve".into(),
        E::BadUri(_) | E::Http(_) => "the URL or a header is not valid".into(),
        E::ConnectionFailed => "cannot connect to it".into(),
        E::Rustls(r) => tls_problem(r),
        E::Io(io) => connection_problem(io, timeout).unwrap_or_else(|| io.to_string()),
        other => connection_problem(other, timeout).unwrap_or_else(|| other.to_string()),
    }
}

/// A failure below the protocol — refused, unreachable, timed out, TLS — found anywhere in the chain of
/// causes (the libraries wrap the I/O and TLS errors their own ways).
fn connection_problem(e: &(dyn std::error::Error + 'static), timeout: Duration) -> Option<String> {
    use std::io::ErrorKind;
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(tls_problem(r));
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(tls_problem(r));
            }
            return Some(match io.kind() {
                ErrorKind::ConnectionRefused => {
                    "connection refused: nothing listens there (is the server up, is the port right?)"
                        .into()
                }
                ErrorKind::TimedOut | ErrorKind::WouldBlock => no_answer(timeout),
                ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                    format!("cannot reach it: {io}")
                }
                ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof => {
                    "it closed the connection".into()
                }
                _ => io.to_string(),
            });
        }
        cur = c.source();
    }
    None
}

fn tls_problem(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "TLS: its certificate is not signed \
            by a CA this machine trusts: add that CA to the system's store, or name a CA file with \
            `SSL_CERT_FILE` in the service's environment"
                .into()
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => "TLS: its certificate is for another name: configure the name the certificate carries"
            .into(),
        rustls::Error::InvalidCertificate(why) => {
            format!("TLS: its certificate is not accepted ({why:?})")
        }
        other => format!("TLS failed: {other}"),
    }
}

fn no_answer(timeout: Duration) -> String {
    format!(
        "no answer within {} (`notify.timeout_sec`)",
        humantime::format_duration(timeout)
    )
}

/// `text` with every secret in it replaced by `<secret>`.
fn scrub(text: String, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text, |t, s| t.replace(s, "<secret>"))
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

    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    fn event(dir: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "schema": notice::SCHEMA, "event": "failed", "time": "2027-01-15T08:00:00Z",
            "dir": dir, "job_id": "1234", "job_name": "dirwatch-case1", "state": "FAILED",
            "exit_code": "3:0", "reason": "NonZeroExitCode", "nodes": "node1", "elapsed_sec": 75,
            "output": format!("{dir}/slurm-1234.out"), "attempt": 1,
        }))
        .unwrap()
    }

    fn formatted(m: &lettre::Message) -> String {
        String::from_utf8(m.formatted()).unwrap()
    }

    #[test]
    fn an_smtp_message_has_the_headers_sendmail_s_has_and_the_text_as_written() {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(951_782_400);
        let dir = "/data/incoming/case1";
        let m = smtp_message(
            &event(dir),
            "dw@example.org",
            "Ops Team <ops@example.org>",
            at,
            "<d-1@example.org>",
        )
        .unwrap();
        let text = formatted(&m);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        for want in [
            "From: dw@example.org\r\n",
            "To: \"Ops Team\" <ops@example.org>\r\n",
            "Subject: [dirwatcher] FAILED: /data/incoming/case1 (job 1234, exit code 3:0)\r\n",
            "Date: Tue, 29 Feb 2000 00:00:00 +0000\r\n",
            "Message-ID: <d-1@example.org>\r\n",
            "Auto-Submitted: auto-generated\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Content-Transfer-Encoding: 7bit\r\n",
        ] {
            assert!(
                format!("{head}\r\n").contains(want),
                "{want:?} missing:\n{head}"
            );
        }
        assert_eq!(
            body.replace("\r\n", "\n").trim_end(),
            notice::email_body(&event(dir)).trim_end(),
            "the text is sent as written"
        );
        let env = m.envelope();
        assert_eq!(env.from().unwrap().to_string(), "dw@example.org");
        assert_eq!(
            env.to().iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["ops@example.org"],
            "only the named recipient gets it"
        );
    }

    #[test]
    fn a_non_ascii_message_goes_as_8bit_text_and_a_line_too_long_for_smtp_is_encoded() {
        let dir = "/data/Ergebnisse/Größe-ü";
        let m = smtp_message(
            &event(dir),
            "dw@example.org",
            "Jürgen <j@example.org>",
            std::time::SystemTime::now(),
            "<x@example.org>",
        )
        .unwrap();
        let text = formatted(&m);
        assert!(
            text.contains("Content-Transfer-Encoding: 8bit\r\n"),
            "{text}"
        );
        assert!(text.contains(dir), "the UTF-8 path as it is: {text}");
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.is_ascii(), "headers are RFC 2047 encoded: {head}");
        let long = format!("/data/{}", "x".repeat(1200));
        let text = formatted(
            &smtp_message(
                &event(&long),
                "dw@example.org",
                "a@example.org",
                std::time::SystemTime::now(),
                "<x@example.org>",
            )
            .unwrap(),
        );
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            body.lines().all(|l| l.len() <= 998),
            "no line of the text longer than SMTP allows"
        );
        assert!(
            head.contains("Content-Transfer-Encoding: quoted-printable")
                || head.contains("Content-Transfer-Encoding: base64"),
            "{head}"
        );
    }

    #[test]
    fn a_newline_in_a_directory_name_cannot_forge_an_smtp_header() {
        let m = smtp_message(
            &event("/data/x\r\nBcc: victim@example.org"),
            "dw@example.org",
            "a@example.org",
            std::time::SystemTime::now(),
            "<x@example.org>",
        )
        .unwrap();
        let text = formatted(&m);
        let (head, _) = text.split_once("\r\n\r\n").unwrap();
        assert!(!head.lines().any(|l| l.starts_with("Bcc")), "{head}");
    }

    #[test]
    fn secrets_and_a_webhooks_path_are_scrubbed_from_any_text() {
        let url = "https://hooks.example.org/services/T0/B0/s3cr3t?x=1";
        let secrets = webhook_secrets(url, Some("t0ken"));
        let t = scrub(
            format!("failed: {url} (path /services/T0/B0/s3cr3t?x=1, Bearer t0ken)"),
            &secrets,
        );
        assert_eq!(t, "failed: <secret> (path <secret>, Bearer <secret>)");
        let secrets = webhook_secrets("http://u:pw@127.0.0.1:8080/", None);
        assert_eq!(scrub("u:pw rejected".into(), &secrets), "<secret> rejected");
        let secrets = smtp_secrets("dw", "hunter2");
        let plain = notice::base64(b"\0dw\0hunter2");
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        assert_eq!(
            scrub(format!("535 no: hunter2 {plain}"), &secrets),
            "535 no: <secret> <secret>"
        );
        assert_eq!(
            format!("{:?}", crate::config::Secret::new("hunter2")),
            "<secret>"
        );
    }

    /// A server on 127.0.0.1 that runs `session` on its first connection.
    fn server(session: impl FnOnce(TcpStream) + Send + 'static) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                session(s);
            }
        });
        port
    }

    fn closed_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn post(url: &str, timeout: Duration) -> Result<(), DeliveryError> {
        post_webhook(
            &http_agent(timeout),
            url,
            "{}",
            Some("t0ken"),
            "d-1",
            timeout,
        )
    }

    fn smtp(port: u16, tls: bool, timeout: Duration) -> Result<(), DeliveryError> {
        let s = SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            user: Some("dw".into()),
            pass: Some(crate::config::Secret::new("hunter2")),
            tls,
        };
        let m = smtp_message(
            &event("/d"),
            "dw@example.org",
            "a@example.org",
            std::time::SystemTime::now(),
            "<x@example.org>",
        )
        .unwrap();
        send_smtp(&s, &m, timeout)
    }

    #[test]
    fn a_webhook_error_says_what_happened_without_the_path_or_the_token() {
        let port = server(|s| {
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let mut l = String::new();
            while r.read_line(&mut l).is_ok_and(|n| n > 2) {
                l.clear();
            }
            let _ = w.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        });
        let url = format!("http://127.0.0.1:{port}/hooks/secret-path?k=v");
        let e = post(&url, Duration::from_secs(5)).unwrap_err().to_string();
        assert_eq!(e, "the server answered HTTP 500 (Internal Server Error)");
        let e = post(
            &format!("http://127.0.0.1:{}/hooks/secret-path", closed_port()),
            Duration::from_secs(5),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("connection refused"), "{e}");
        for secret in ["secret-path", "t0ken", "k=v"] {
            assert!(!e.contains(secret), "{e}");
        }
    }

    #[test]
    fn an_smtp_error_carries_the_servers_reply_but_never_the_password() {
        // A server that refuses the login and, carelessly, repeats what it got.
        let port = server(|s| {
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let _ = w.write_all(b"220 test ESMTP\r\n");
            let mut l = String::new();
            while r.read_line(&mut l).is_ok_and(|n| n > 0) {
                let reply = if l.starts_with("EHLO") {
                    "250-test\r\n250 AUTH PLAIN LOGIN\r\n".to_string()
                } else if l.starts_with("AUTH") {
                    format!("535 5.7.8 not you: {}\r\n", l.trim())
                } else {
                    "221 bye\r\n".to_string()
                };
                let _ = w.write_all(reply.as_bytes());
                l.clear();
            }
        });
        let e =
            crate::logging::error_chain(&smtp(port, false, Duration::from_secs(5)).unwrap_err());
        assert!(
            e.starts_with(&format!(
                "SMTP server `127.0.0.1:{port}`: it refused: 535 5.7.8 not you: AUTH PLAIN <secret>"
            )),
            "{e}"
        );
        assert!(e.contains("check `behavior.smtp_user`"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = smtp(closed_port(), false, Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(e.contains("connection refused"), "{e}");
    }

    #[test]
    fn required_starttls_is_never_given_up_for_a_plain_login() {
        let got_auth = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = got_auth.clone();
        let port = server(move |s| {
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            let _ = w.write_all(b"220 test ESMTP\r\n");
            let mut l = String::new();
            while r.read_line(&mut l).is_ok_and(|n| n > 0) {
                if l.starts_with("AUTH") || l.starts_with("MAIL") {
                    seen.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                let _ = w.write_all(b"250-test\r\n250 AUTH PLAIN\r\n");
                l.clear();
            }
        });
        let e = smtp(port, true, Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(e.contains("STARTTLS"), "{e}");
        assert!(
            !got_auth.load(std::sync::atomic::Ordering::SeqCst),
            "credentials sent in the clear"
        );
    }

    #[test]
    fn a_server_that_accepts_and_never_answers_holds_a_delivery_only_for_the_timeout() {
        let timeout = Duration::from_secs(1);
        for channel in ["smtp", "webhook"] {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let port = server(move |s| {
                // Hold the connection, say nothing, until the test is over.
                let _ = rx.recv();
                drop(s);
            });
            let t = Instant::now();
            let e = match channel {
                "smtp" => smtp(port, false, timeout),
                _ => post(&format!("http://127.0.0.1:{port}/h"), timeout),
            }
            .unwrap_err()
            .to_string();
            let took = t.elapsed();
            drop(tx);
            // Ended on its own, not held: lettre bounds each step (connect, greeting, …) by the timeout, so a
            // silent server costs a step or two; the margin is for a loaded machine, not a speed target.
            assert!(
                took < timeout * 3 + Duration::from_secs(2),
                "{channel}: {took:?}"
            );
            assert!(e.contains("no answer within 1s"), "{channel}: {e}");
        }
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
