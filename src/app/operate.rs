//! The operator commands: `status`, `explain`, `retry`, `cancel`, `forget`, `recover --from-slurm`.
//!
//! Owns: which config each loads (with or without its secrets) and how their results are printed (text,
//! JSON, a listing). Must never: decide what a command does to the ledger (that is `ops`).

use std::path::PathBuf;

use crate::cli::ConfigFile;
use crate::ops;

use super::error::AppError;
use super::load;
use super::progress::Progress;

/// How `status` prints what it found.
#[derive(Debug, Clone, Default)]
pub struct StatusView {
    /// `--json`.
    pub json: bool,
    /// `-P`: a parsable listing.
    pub parsable: bool,
    /// `-o FIELDS`: the listing's fields (a listing even without `-P`).
    pub format: Vec<String>,
}

/// `dirwatcher status`.
pub fn status(config: &ConfigFile, q: ops::StatusQuery, view: StatusView) -> Result<(), AppError> {
    let cfg = load::load_reading(config)?;
    let listing = view.parsable || !view.format.is_empty();
    let q = if listing && !q.lists() {
        // A listing of everything.
        ops::StatusQuery {
            states: ops::status_words(),
            ..q
        }
    } else {
        q
    };
    let s = ops::status(&cfg, &q)?;
    if view.json {
        out_json!(&s);
    } else if listing {
        let rows = s.directories.as_deref().unwrap_or_default();
        out!(
            "{}",
            ops::render_listing(rows, &view.format, view.parsable)?
        );
    } else {
        out!("{}", ops::render_status(&s));
    }
    Ok(())
}

/// `dirwatcher explain`.
pub fn explain(config: &ConfigFile, json: bool, dirs: &[PathBuf]) -> Result<(), AppError> {
    let cfg = load::load_reading(config)?;
    let all = ops::explain(&cfg, dirs)?;
    if json {
        out_json!(&all);
    } else {
        for e in &all {
            out!("{}", ops::render_explanation(e));
        }
    }
    Ok(())
}

/// `dirwatcher retry`: `dirs`, or with `all_failed` every failed directory (of Slurm state `state`).
pub fn retry(
    config: &ConfigFile,
    dirs: &[PathBuf],
    all_failed: bool,
    matching: Option<&str>,
    state: Option<&str>,
) -> Result<(), AppError> {
    let bulk = all_failed || matching.is_some();
    let refuse = |problem: &str, fix: &str| {
        AppError::Command(
            crate::install::UsageError {
                problem: problem.into(),
                fix: fix.into(),
            }
            .into(),
        )
    };
    if state.is_some() && !bulk {
        return Err(refuse(
            "`--state` picks among many directories",
            "add `--all-failed` or `--match GLOB`, or leave out `--state` and name the directories",
        ));
    }
    if !bulk && dirs.is_empty() {
        return Err(refuse(
            "which directories?",
            "name them (`dirwatcher retry DIR…`), or use `--all-failed` or `--match GLOB`",
        ));
    }
    let cfg = load::load(config)?;
    let lines = if bulk {
        ops::retry_all(&cfg, state, matching)?
    } else {
        ops::retry(&cfg, dirs)?
    };
    if bulk && lines.is_empty() {
        out!(
            "no failed directories{}{} to retry\n",
            matching
                .map(|g| format!(" matching `{}`", crate::logging::field_str(g)))
                .unwrap_or_default(),
            state.map(|s| format!(" in state {s}")).unwrap_or_default()
        );
    }
    for line in lines {
        out!("{line}\n");
    }
    Ok(())
}

/// `dirwatcher cancel`: every directory is tried; each that fails is said, and the status is then 1.
pub fn cancel(
    config: &ConfigFile,
    dirs: &[PathBuf],
    matching: Option<&str>,
) -> Result<(), AppError> {
    let cfg = load::load(config)?;
    let picked;
    let dirs = match matching {
        Some(glob) => {
            picked = ops::matching(&cfg, glob, ops::Pick::InFlight)?;
            if picked.is_empty() {
                out!(
                    "no directory in flight matches `{}`\n",
                    crate::logging::field_str(glob)
                );
            }
            &picked[..]
        }
        None => dirs,
    };
    let mut failed = 0;
    for r in ops::cancel(&cfg, dirs)? {
        match r {
            Ok(line) => out!("{line}\n"),
            Err(why) => {
                crate::out::error(format_args!("error: {why}"));
                failed += 1;
            }
        }
    }
    match failed {
        0 => Ok(()),
        failed => Err(AppError::Cancel { failed }),
    }
}

/// `dirwatcher forget`.
pub fn forget(
    config: &ConfigFile,
    dirs: &[PathBuf],
    matching: Option<&str>,
    state: Option<&str>,
) -> Result<(), AppError> {
    let cfg = load::load(config)?;
    let picked;
    let dirs = match matching {
        Some(glob) => {
            picked = ops::matching(&cfg, glob, ops::Pick::Settled(state))?;
            if picked.is_empty() {
                out!(
                    "no directory without a job in flight matches `{}`{}\n",
                    crate::logging::field_str(glob),
                    state.map(|s| format!(" in state {s}")).unwrap_or_default()
                );
            }
            &picked[..]
        }
        None => dirs,
    };
    for line in ops::forget(&cfg, dirs)? {
        out!("{line}\n");
    }
    Ok(())
}

/// `dirwatcher recover --from-slurm`: from `since` (a date or a time ago; default the window a new
/// ledger's start looks at), or with `dry_run` only what would be recorded.
pub fn recover(config: &ConfigFile, since: Option<&str>, dry_run: bool) -> Result<(), AppError> {
    let cfg = load::load(config)?;
    let now = crate::time::wall_now();
    let since = match since {
        Some(s) => ops::recover::parse_since(s, now)?,
        None => now - crate::recover::START_LOOKBACK.as_millis() as i64,
    };
    let report = {
        let mut bar = Progress::new();
        ops::recover::recover(&cfg, since, dry_run, &mut |w, n, jobs| bar.step(w, n, jobs))?
    };
    out!("{}", ops::recover::render(&report, &cfg.watch.root));
    Ok(())
}

/// `dirwatcher ledger copy`: with a bar on a terminal, and what was copied on stdout.
pub fn ledger(cmd: &crate::cli::LedgerCommand) -> Result<(), AppError> {
    let crate::cli::LedgerCommand::Copy {
        from,
        to,
        password_file,
    } = cmd;
    let at = |s: &str| {
        crate::ledger::copy::at_of(s, password_file.as_deref())
            .map_err(|e| anyhow::anyhow!("`{s}`: {e}"))
    };
    let (from_at, to_at) = (at(from)?, at(to)?);
    let copied = {
        let mut bar = Progress::copying();
        crate::ledger::copy::copy(&from_at, &to_at, &mut |done, total| bar.copied(done, total))
            .map_err(anyhow::Error::new)?
    };
    out!(
        "copied {} record(s) of directories, {} notice(s) and {} cancel request(s) from {from_at} to {to_at}; \
         point the config at the new ledger, then start the daemon(s)\n",
        copied.generations,
        copied.notices,
        copied.cancels
    );
    Ok(())
}
