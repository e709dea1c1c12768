//! Command output that never panics: `dirwatcher status | head -3` must end quietly when `head` goes away,
//! as `ls | head` does, not with "failed printing to stdout: Broken pipe" and a backtrace.
//!
//! Owns: the writers every subcommand prints through. A reader that went away (`EPIPE`) makes the rest of
//! the output vanish and the command finish its work with its own exit status; any other write error (a
//! full disk behind a redirect) is still an error. Must never: be used for log lines (those go through
//! `logging`).

use std::io::{self, Write};

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

/// Standard output for a command's results.
pub fn stdout() -> Quiet<io::StdoutLock<'static>> {
    Quiet::new(io::stdout().lock())
}

/// Writes a message to standard error; if even that is closed there is no one left to tell.
pub fn error(msg: impl std::fmt::Display) {
    let _ = writeln!(Quiet::new(io::stderr().lock()), "{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

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
