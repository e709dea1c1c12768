//! Where log lines go: journald under systemd (structured fields `DIR`, `JOB`, …), plain text on stderr
//! otherwise, or one JSON object per line with `--log-format json` for log shippers.
//!
//! Owns: choosing the sink and installing the global `tracing` subscriber. Must never: decide what is
//! logged (the daemon does) or fail the program — a journald socket that does not answer falls back to
//! stderr with a note.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write;
use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

/// journald's native protocol socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Where the log goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// journald's native protocol, one entry per event with its fields (`DIR`, `JOB`, `STATE`, …).
    Journald,
    /// Human-readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
}

/// Picks the sink. journald only when asked for text (the default) and stderr *is* the journal: systemd
/// sets `JOURNAL_STREAM=<dev>:<inode>` of the stream it connects, so a stderr redirected elsewhere (e.g.
/// `dirwatcher run 2>file` from a shell inside a unit) keeps getting plain lines; and the journald socket
/// must exist. `--log-format json` always means JSON on stderr.
pub fn choose(
    format: LogFormat,
    journal_stream: Option<&OsStr>,
    stderr_id: Option<(u64, u64)>,
    journal_socket_exists: bool,
) -> Sink {
    match format {
        LogFormat::Json => Sink::Json,
        LogFormat::Text => {
            let connected = journal_stream
                .and_then(|v| v.to_str())
                .and_then(parse_journal_stream)
                .is_some_and(|id| Some(id) == stderr_id);
            if connected && journal_socket_exists {
                Sink::Journald
            } else {
                Sink::Text
            }
        }
    }
}

/// `JOURNAL_STREAM`'s `<device>:<inode>`.
fn parse_journal_stream(v: &str) -> Option<(u64, u64)> {
    let (dev, ino) = v.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Device and inode of this process's stderr.
fn stderr_id() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Installs the global subscriber. `verbose`: 0 = info, 1 = dirwatcher's debug lines, 2+ = everything;
/// `DIRWATCHER_LOG` (an `EnvFilter` directive) overrides both.
pub fn init(format: LogFormat, verbose: u8) -> Sink {
    let sink = choose(
        format,
        std::env::var_os("JOURNAL_STREAM").as_deref(),
        stderr_id(),
        Path::new(JOURNAL_SOCKET).exists(),
    );
    let filter = || {
        let default = match verbose {
            0 => "info",
            1 => "dirwatcher=debug,info",
            _ => "trace",
        };
        EnvFilter::try_from_env("DIRWATCHER_LOG").unwrap_or_else(|_| EnvFilter::new(default))
    };
    if sink == Sink::Journald {
        // No field prefix: the daemon's `dir` and `job` fields become `DIR` and `JOB`, so
        // `journalctl -u dirwatcher JOB=1234` finds a job's lines.
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("dirwatcher".into());
                tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .init();
                return Sink::Journald;
            }
            Err(e) => crate::out::error(format_args!(
                "dirwatcher: cannot log to journald through `{JOURNAL_SOCKET}` ({e}); logging to stderr"
            )),
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if sink == Sink::Json {
        builder.json().flatten_event(true).init();
        Sink::Json
    } else {
        builder.fmt_fields(Logfmt).event_format(TextLine).init();
        Sink::Text
    }
}

/// A text line: time, level, then the message and the event's fields ([`Logfmt`]), then the fields of
/// the spans it is in (an instance's `instance=NAME`) as fields too — the default format put those in
/// front as `dirwatcher{instance=NAME}:`, which no logfmt parser reads as a field.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for TextLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing_subscriber::fmt::time::FormatTime;
        let ansi = writer.has_ansi_escapes();
        if ansi {
            writer.write_str("\x1b[2m")?;
        }
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut writer)?;
        let level = *event.metadata().level();
        if ansi {
            let colour = match level {
                tracing::Level::ERROR => "31",
                tracing::Level::WARN => "33",
                tracing::Level::INFO => "32",
                tracing::Level::DEBUG => "34",
                tracing::Level::TRACE => "35",
            };
            write!(writer, "\x1b[0m \x1b[{colour}m{level:>5}\x1b[0m ")?;
        } else {
            write!(writer, " {level:>5} ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<tracing_subscriber::fmt::FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, " {fields}")?;
                }
            }
        }
        writeln!(writer)
    }
}

/// The text sink's fields in logfmt: the message first, then `key=value`, a value in double quotes
/// (`\"`, `\\`, `\n` inside) when it is empty or holds a space, `=`, a quote, a backslash or a control
/// character. So Loki's and lnav's logfmt parsers read `dir="/data/incoming/run 2"` as one field, where
/// the default format wrote it bare and the name broke in two at the space.
#[derive(Debug, Clone, Copy, Default)]
pub struct Logfmt;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for Logfmt {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut v = LogfmtVisitor::default();
        fields.record(&mut v);
        writer.write_str(&v.line())
    }
}

/// Collects one event's (or span's) fields for [`Logfmt`].
#[derive(Debug, Default)]
struct LogfmtVisitor {
    message: Option<String>,
    fields: Vec<(&'static str, String)>,
}

impl LogfmtVisitor {
    /// `message key=value …`, as one line: a line end inside the message is written `\\n` (an error
    /// that spans lines would otherwise start what looks like another event).
    fn line(&self) -> String {
        let mut out = self
            .message
            .as_deref()
            .unwrap_or_default()
            .replace('\r', "\\r")
            .replace('\n', "\\n");
        for (k, v) in &self.fields {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(&logfmt_value(v));
        }
        out
    }
}

impl tracing::field::Visit for LogfmtVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        // A `%` field's Debug is its Display, and the message's is the text itself.
        self.put(field, format!("{value:?}"));
    }
}

impl LogfmtVisitor {
    fn put(&mut self, field: &tracing::field::Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.fields.push((field.name(), value));
        }
    }
}

/// One logfmt value: bare when it can be, else quoted and escaped.
pub fn logfmt_value(v: &str) -> Cow<'_, str> {
    let bare = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'));
    if bare {
        return Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// The span the daemon runs in when it is one of several on the host: every event inside carries
/// `instance` (journald `INSTANCE=`, JSON `span.instance`, text a last field `instance=…`).
/// Disabled for the plain service, so its lines are what they always were.
pub fn instance_span(instance: Option<&str>) -> tracing::Span {
    match instance {
        Some(name) => tracing::info_span!("dirwatcher", instance = name),
        None => tracing::Span::none(),
    }
}

/// Renders a path for a log line: quoted, with control characters escaped, so a hostile name cannot forge
/// log lines.
pub fn show(p: &std::path::Path) -> String {
    format!("{p:?}")
}

/// Renders a path as a log *field* value (journald's `DIR`, JSON's `dir`): exactly the path when it is
/// UTF-8 without control characters, so `journalctl DIR=/data/incoming/case1` and a log shipper's exact
/// match find it. Anything else is escaped (`\n`, `\t`, `\r`, `\xNN` for other control characters and
/// for bytes that are not UTF-8, `\\` for a backslash), so a field never holds a raw newline or invalid
/// UTF-8. The message text keeps [`show`]'s quoted form.
pub fn field(p: &Path) -> Cow<'_, str> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = p.as_os_str().as_bytes();
    if let Ok(s) = std::str::from_utf8(bytes)
        && !s.chars().any(char::is_control)
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            crate::out::push_escaped(&mut out, c);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// A name (or path) already made text, for a row the CLI prints: as [`field`] renders it, so a name
/// holding a newline, CR or ESC shows as `\n`, `\r`, `\x1b` and cannot forge a row or drive the terminal.
pub fn field_str(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        crate::out::push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Option<(u64, u64)> = Some((8, 4242));

    fn pick(format: LogFormat, stream: Option<&str>, socket: bool) -> Sink {
        choose(format, stream.map(OsStr::new), ID, socket)
    }

    #[test]
    fn journald_when_stderr_is_the_journal_stream() {
        assert_eq!(pick(LogFormat::Text, Some("8:4242"), true), Sink::Journald);
    }

    #[test]
    fn text_without_systemd_or_without_the_socket() {
        assert_eq!(pick(LogFormat::Text, None, true), Sink::Text);
        assert_eq!(pick(LogFormat::Text, Some("8:4242"), false), Sink::Text);
    }

    #[test]
    fn text_when_stderr_was_redirected_away_from_the_journal() {
        assert_eq!(pick(LogFormat::Text, Some("8:999"), true), Sink::Text);
        assert_eq!(pick(LogFormat::Text, Some("garbage"), true), Sink::Text);
    }

    #[test]
    fn a_field_is_the_plain_path_when_it_is_utf8_without_control_characters() {
        for p in [
            "/data/incoming/case1",
            "/data/my run (2)/\"q\" 'x' $y",
            "/data/ünï/日本",
        ] {
            assert_eq!(field(Path::new(p)), p);
        }
    }

    #[test]
    fn a_field_escapes_control_characters_and_bytes_that_are_not_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(OsStr::from_bytes(b"/r/a\nb\tc\x1b[31m\\d\xff\xfe\xc3\xa9"));
        assert_eq!(field(p), "/r/a\\nb\\tc\\x1b[31m\\\\d\\xff\\xfe\u{e9}");
        // Never a raw line break or invalid UTF-8 in the value, whatever the name.
        let hostile = Path::new(OsStr::from_bytes(b"/r/x\r\nDIR=/etc\x00\x85"));
        let f = field(hostile);
        assert!(!f.chars().any(char::is_control), "{f:?}");
        assert_eq!(f, "/r/x\\r\\nDIR=/etc\\x00\\x85");
    }

    #[test]
    fn logfmt_values_are_bare_when_they_can_be_and_quoted_otherwise() {
        assert_eq!(logfmt_value("/data/incoming/case1"), "/data/incoming/case1");
        assert_eq!(
            logfmt_value("/data/incoming/run 2"),
            r#""/data/incoming/run 2""#
        );
        assert_eq!(logfmt_value(""), r#""""#);
        assert_eq!(logfmt_value("a=b"), r#""a=b""#);
        assert_eq!(logfmt_value(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(logfmt_value(r"C:\x"), r#""C:\\x""#);
        assert_eq!(logfmt_value("two\nlines"), r#""two\nlines""#);
    }

    #[test]
    fn a_logfmt_line_is_the_message_then_the_fields() {
        let v = LogfmtVisitor {
            message: Some("submitted job 3".into()),
            fields: vec![("event", "submitted".into()), ("dir", "/d/run 2".into())],
        };
        assert_eq!(
            v.line(),
            r#"submitted job 3 event=submitted dir="/d/run 2""#
        );
        let v = LogfmtVisitor {
            message: Some("refused: bad\n  fix: this".into()),
            fields: vec![],
        };
        assert_eq!(v.line(), r"refused: bad\n  fix: this");
    }

    #[test]
    fn json_is_json_even_under_systemd() {
        assert_eq!(pick(LogFormat::Json, Some("8:4242"), true), Sink::Json);
    }
}
