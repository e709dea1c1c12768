//! Progress on stderr — `recover`'s over the accounting windows, `ledger copy`'s over the records: a bar
//! on a terminal, a plain line per step on a pipe.
//!
//! Owns: how that progress looks on stderr. Must never: write to stdout (the report goes there).

/// The progress of one `recover` run.
pub(super) struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub(super) fn new() -> Progress {
        Progress::with("sacct {bar:30} day {pos}/{len}  {msg}")
    }

    /// For `ledger copy`.
    pub(super) fn copying() -> Progress {
        Progress::with("copying {bar:30} {pos}/{len} record(s)")
    }

    fn with(template: &str) -> Progress {
        use std::io::IsTerminal;
        Progress(std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        }))
    }

    /// `done` of `total` records copied.
    pub(super) fn copied(&mut self, done: u64, total: u64) {
        match &self.0 {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                if done >= total {
                    bar.finish_and_clear();
                }
            }
            None => crate::out::error(format_args!("copied {done} of {total} record(s)")),
        }
    }

    /// `window` of `windows` read, `jobs` found so far.
    pub(super) fn step(&mut self, window: usize, windows: usize, jobs: usize) {
        match &self.0 {
            Some(bar) => {
                bar.set_length(windows as u64);
                bar.set_position(window as u64);
                bar.set_message(format!("{jobs} job(s)"));
                if window == windows {
                    bar.finish_and_clear();
                }
            }
            None => crate::out::error(format_args!(
                "sacct: day {window} of {windows}, {jobs} job(s) so far"
            )),
        }
    }
}
