//! Command output that never panics: `dirwatcher status | head -3` must end quietly when `head` goes away,
//! as `ls | head` does, not with "failed printing to stdout: Broken pipe" and a backtrace.
//!
//! Owns: the writers every subcommand prints through. A reader that went away (`EPIPE`) makes the rest of
//! the output vanish and the command finish its work with its own exit status; any other write error (a
//! full disk behind a redirect) is still an error. Owns too: what may reach a terminal — every control
//! character but newline and tab is escaped ([`terminal_safe`]), so a directory name holding ESC, CR or
//! BEL cannot recolour, overwrite or retitle the operator's screen. Must never: be used for log lines
//! (those go through `logging`).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Appends `c`, escaped the way log fields are when it is a control character or a backslash (`\\`,
/// `\n`, `\t`, `\r`, `\xNN` for the other C0 and C1 controls, `\u{NNNN}` above).
pub fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c.is_control() && (c as u32) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// `s` for a terminal: unchanged but for control characters other than newline and tab (ESC, CR, BEL,
/// DEL, the C1 controls), which are escaped as [`push_escaped`] does. A last guard for whatever a command
/// prints; a name in a row is escaped whole before (`logging::field_str`), newline included.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A writer that treats a closed pipe as "nobody is listening any more".
#[derive(Debug)]
pub struct Quiet<W> {
    inner: W,
    /// The reader went away: drop everything from now on.
    gone: bool,
}

impl<W: Write> Quiet<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Quiet<W> {
        Quiet { inner, gone: false }
    }
}

impl<W: Write> Write for Quiet<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.gone {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.gone = true;
                Ok(buf.len())
            }
            r => r,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.gone {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.gone = true;
                Ok(())
            }
            r => r,
        }
    }
}

/// JSON text for a terminal: serde_json escapes U+0000..U+001F but writes DEL and the C1 controls (U+0080
/// ..U+009F, where U+009B is a CSI) as they are; they can only stand inside strings, so they become
/// `\u00NN`, which any JSON reader decodes to the same string.
pub fn json_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\n' {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Standard output for a command's results.
pub fn stdout() -> Quiet<io::StdoutLock<'static>> {
    Quiet::new(io::stdout().lock())
}

/// Writes a message to standard error (terminal-safe: [`terminal_safe`]); if even that is closed there is
/// no one left to tell.
pub fn error(msg: impl std::fmt::Display) {
    let msg = msg.to_string();
    let _ = writeln!(Quiet::new(io::stderr().lock()), "{}", terminal_safe(&msg));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_safe_escapes_every_control_but_newline_and_tab() {
        let s = "a\tb\nc\rd\x1b]0;t\x07e\u{9b}31m\x7f";
        let t = terminal_safe(s);
        assert_eq!(t, "a\tb\nc\\rd\\x1b]0;t\\x07e\\x9b31m\\x7f");
        assert!(matches!(terminal_safe("plain/é 日本"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_safe_keeps_the_same_json_value() {
        let v = serde_json::json!({"dir": "/r/a\u{9b}b\x7fc\x1b\n"});
        let text = serde_json::to_string_pretty(&v).unwrap();
        let safe = json_safe(&text);
        assert!(!safe.chars().any(|c| c.is_control() && c != '\n'), "{safe}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&safe).unwrap(), v);
    }

    #[test]
    fn a_reader_that_went_away_swallows_the_rest_but_other_errors_stay_errors() {
        let (reader, writer) = io::pipe().unwrap();
        drop(reader);
        let mut w = Quiet::new(writer);
        assert_eq!(w.write(b"hello").unwrap(), 5);
        writeln!(w, "more").unwrap();
        w.flush().unwrap();

        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(libc::ENOSPC))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(
            Quiet::new(Full).write(b"x").is_err(),
            "a full disk is not a closed pipe"
        );
    }
}
