//! `dirwatcher recover --from-slurm`: rebuilds a lost ledger's generations from Slurm's accounting, so a
//! new ledger does not run finished directories again. Every directory of the root with a job of ours in
//! accounting (see [`crate::recover`]) gets one record of its latest job: COMPLETED → completed (never
//! submitted again), a failure → failed (`dirwatcher retry` resubmits it), a job Slurm may still run → in
//! flight (the daemon follows it to its end, with every effect of that end). A directory the ledger knows
//! already is left as it is; one whose ready-file changed after its last job was submitted is not
//! recorded (new data: the daemon runs it); nothing is deleted, logged or sent.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Context;

use crate::config::Config;
use crate::engine::{GenState, ReadyIdentity};
use crate::fsx::{Root, RootLinks};
use crate::ledger::{Ledger, Recovered};
use crate::recover::{self, EarlierJob, Found, Unmatched};
use crate::time::Millis;

/// What `recover` found, and what it recorded (or, with `--dry-run`, would record).
#[derive(Debug, Default)]
pub struct Report {
    /// Accounting windows asked (a day each).
    pub windows: usize,
    /// Jobs of this user accounting listed.
    pub jobs_read: usize,
    /// Directories recorded, with their latest job.
    pub recorded: Vec<(OsString, GenState, EarlierJob)>,
    /// Directories the ledger already knew (left as they are).
    pub known: usize,
    /// Directories whose ready-file changed after their last job was submitted (new data: run again).
    pub newer: Vec<(OsString, EarlierJob)>,
    /// Directories accounting knows whose ready-file (or the directory itself) is gone now.
    pub gone: Vec<(OsString, EarlierJob)>,
    /// Jobs of ours for this root that name no one directory in it.
    pub unmatched: Vec<Unmatched>,
    /// Nothing was written.
    pub dry_run: bool,
}

/// Asks accounting since `since` (wall ms) and records what it finds; `progress(window, windows, jobs)`
/// hears each window.
pub fn recover(
    cfg: &Config,
    since: Millis,
    dry_run: bool,
    progress: &mut dyn FnMut(usize, usize, usize),
) -> anyhow::Result<Report> {
    // Held to the end: the daemon's lock file, while this writes.
    let (_lock, ledger) = open_ledger(cfg, dry_run)?;
    let links = if cfg.watch.allow_unsafe_root {
        RootLinks::Follow
    } else {
        RootLinks::Refuse
    };
    let root = Root::open(&cfg.watch.root, links)
        .with_context(|| format!("cannot open the root `{}`", cfg.watch.root.display()))?;
    let names = crate::scan::list_subdirs(&root)
        .with_context(|| format!("cannot list the root `{}`", cfg.watch.root.display()))?;
    let now = crate::time::wall_now();
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    let mut jobs = Vec::new();
    let history = recover::History::new(cfg);
    recover::walk(&history, since, now, |w, n, batch| {
        report.windows = n;
        report.jobs_read += batch.len();
        jobs.extend(batch);
        progress(w + 1, n, report.jobs_read);
        true
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "Slurm's accounting did not answer: {e}; try again when {} works",
            history.accounting_word()
        )
    })?;
    let (found, unmatched) = recover::match_to_root(cfg, &names, &jobs);
    report.unmatched = unmatched;
    let rows = rows_of(cfg, &history, ledger.as_ref(), found, now, &mut report)?;
    if let (Some(mut l), false) = (ledger, dry_run) {
        // What the ledger already held (a directory recorded meanwhile) is said as known, not recorded.
        let done = l.insert_recovered(&rows, now)?;
        let mut i = 0;
        report.recorded.retain(|_| {
            i += 1;
            done[i - 1]
        });
        report.known += done.iter().filter(|d| !**d).count();
    }
    Ok(report)
}

/// Opens the ledger: read only (if there is one) for a dry run, else as its one writer — refused while the
/// daemon runs (its lock file and the ledger's own lock). Returns the lock file with it, to hold.
fn open_ledger(
    cfg: &Config,
    dry_run: bool,
) -> anyhow::Result<(Option<std::fs::File>, Option<Ledger>)> {
    let at = crate::ledger::LedgerAt::of(&cfg.behavior);
    Ok(if dry_run {
        let l = match at.fresh()? {
            None => Some(Ledger::open_read_only_at(&at)?),
            Some(_) => None,
        };
        (None, l)
    } else {
        let mut lock = crate::ledger::identity::take_lock_file(
            &crate::state_paths::StatePaths::of(&cfg.behavior.state_file),
        )?;
        let l = Ledger::open_exclusive_at(&at, &cfg.watch.root)?;
        // A shared ledger has no file lock to keep a daemon out: its lease says whether one is active.
        if let Some(lease) = l.lease_info()?
            && lease.is_held()
        {
            anyhow::bail!(
                "{} is the active daemon on the ledger `{at}` (lease epoch {}): stop the daemons on every \
                 login node first (`systemctl stop dirwatcher`), then recover",
                lease.holder,
                lease.epoch
            );
        }
        // This is the ledger of this state directory from now on (a start would take another for a
        // replaced one).
        crate::ledger::identity::name_ledger_in_lock(&mut lock, l.id())?;
        (Some(lock), Some(l))
    })
}

/// Sorts what accounting found into `report` (known, gone, newer, recorded) and returns the records to
/// write, one per recorded directory.
fn rows_of(
    cfg: &Config,
    history: &recover::History,
    ledger: Option<&Ledger>,
    found: Vec<Found>,
    now: Millis,
    report: &mut Report,
) -> anyhow::Result<Vec<Recovered>> {
    let mut rows = Vec::new();
    for Found { dir, job, jobs } in found {
        if let Some(l) = ledger
            && l.latest_for_dir(&dir)?.is_some()
        {
            report.known += 1;
            continue;
        }
        let Some((ready, dir_ident)) =
            recover::ready_now(&cfg.watch.root, &dir, &cfg.watch.signal_filename)
        else {
            report.gone.push((dir, job));
            continue;
        };
        if recover::changed_after(&ready, &job) {
            report.newer.push((dir, job));
            continue;
        }
        let state = recover::state_of(&job.state);
        // Accounting may not show a running job's comment yet: the controller does, and the daemon will
        // follow the job by that key.
        let mut job = job;
        if state == GenState::Submitted
            && !recover::is_our_key(&job.comment)
            && let Some(key) = recover::controller_comment(history, &job.job_id)
        {
            job.comment = key;
        }
        report.recorded.push((dir.clone(), state, job.clone()));
        rows.push(row_of(dir, ready, dir_ident, state, jobs, &job, now));
    }
    Ok(rows)
}

/// The record of a directory's latest job (`jobs` jobs in all).
fn row_of(
    dir: OsString,
    ready: ReadyIdentity,
    dir_ident: (u64, u64),
    state: GenState,
    jobs: u32,
    job: &EarlierJob,
    now: Millis,
) -> Recovered {
    Recovered {
        dir,
        ready,
        dir_dev_ino: Some(dir_ident),
        state,
        attempt: jobs,
        key: if recover::is_our_key(&job.comment) {
            job.comment.clone()
        } else {
            format!("dw-recovered-{}-{}", job.job_id, job.submit)
        },
        job_name: job.name.clone(),
        job_id: job.job_id.clone(),
        submitted_at: job.submit,
        finished_at: (state != GenState::Submitted).then(|| job.end.unwrap_or(now)),
        final_state: (state != GenState::Submitted).then(|| job.state.clone()),
        exit_code: job.exit_code.clone(),
        detail: job.detail.clone(),
    }
}

/// The report in words.
pub fn render(r: &Report, root: &Path) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let verb = if r.dry_run {
        "would record"
    } else {
        "recorded"
    };
    let count = |st: GenState| r.recorded.iter().filter(|(_, s, _)| *s == st).count();
    let _ = writeln!(
        s,
        "read {} job(s) of this user from Slurm's accounting ({} day(s)); root `{}`",
        r.jobs_read,
        r.windows,
        root.display()
    );
    let _ = writeln!(
        s,
        "{verb} {} directorie(s): {} completed (not submitted again), {} failed (`dirwatcher retry` resubmits), {} in flight (followed to their end)",
        r.recorded.len(),
        count(GenState::Completed),
        count(GenState::Failed),
        count(GenState::Submitted),
    );
    for (dir, state, job) in &r.recorded {
        let _ = writeln!(
            s,
            "  {}  job {}  {}  → {}",
            dir.to_string_lossy(),
            job.job_id,
            job.state,
            state.as_str()
        );
    }
    if r.known > 0 {
        let _ = writeln!(
            s,
            "{} directorie(s) already in the ledger: left as they are",
            r.known
        );
    }
    if !r.newer.is_empty() {
        let _ = writeln!(
            s,
            "not recorded, new data since their last job (the daemon runs them again): {}",
            r.newer.len()
        );
        for (dir, job) in &r.newer {
            let _ = writeln!(
                s,
                "  {}: its ready-file changed after job {} was submitted",
                dir.to_string_lossy(),
                job.job_id
            );
        }
    }
    if !r.gone.is_empty() {
        let _ = writeln!(
            s,
            "{} directorie(s) of accounting no longer hold a ready-file (deleted, or moved): nothing to do",
            r.gone.len()
        );
    }
    if !r.unmatched.is_empty() {
        let _ = writeln!(
            s,
            "could not match {} job(s) of ours to one directory (not recorded):",
            r.unmatched.len()
        );
        for u in &r.unmatched {
            let _ = writeln!(
                s,
                "  job {} `{}` in `{}`: {}",
                u.job.job_id,
                u.job.name,
                u.job.work_dir.display(),
                u.why
            );
        }
    }
    if r.dry_run {
        s.push_str("dry run: nothing was written\n");
    }
    s
}

/// `--since`: a date (`2026-11-01`, `2026-11-01 08:00:00`) or a time ago (`90d`, `12weeks`), as wall ms.
pub fn parse_since(s: &str, now: Millis) -> anyhow::Result<Millis> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now - d.as_millis() as Millis);
    }
    let full = if s.len() == 10 {
        format!("{s} 00:00:00")
    } else {
        s.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&full).with_context(|| {
        format!("`--since {s}`: write a date such as `2026-11-01`, or a time ago such as `90d`")
    })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis);
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_date_or_a_time_ago() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since("1d", now).unwrap(), now - 86_400_000);
        assert_eq!(parse_since("2026-11-01", now).unwrap(), 1_793_491_200_000);
        assert!(parse_since("last tuesday", now).is_err());
    }
}
