//! What Slurm's commands print, read: `sbatch --parsable`, `sacct -P` and `squeue -O` rows (with
//! `SLURM_TIME_FORMAT=%s`), job ids, wait statuses and Slurm's words for "none".
//!
//! Owns: those pure parsing functions (unit-tested with the back end in [`super::slurm`]). Must never:
//! run a command, or decide whether a row is about our job (the engine judges).

use std::collections::HashSet;

use super::{JobRow, Source};
use crate::engine::JobDetail;
use crate::time::Millis;

/// True for a plain numeric job id (`1234`; not an array or het-job id, not empty): the only kind we submit.
pub fn is_job_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

/// Parses `sbatch --parsable` output: `ID` or `ID;CLUSTER` on the last non-empty line (sbatch may print
/// warnings before it). Returns the id as stored in the ledger (`ID` or `ID;CLUSTER`).
pub fn parse_parsable(stdout: &str) -> Option<String> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())?;
    let (id, cluster) = match line.split_once(';') {
        Some((i, c)) => (i, Some(c)),
        None => (line, None),
    };
    if !is_job_id(id) {
        return None;
    }
    match cluster {
        Some(c)
            if !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Some(format!("{id};{c}"))
        }
        Some(_) => None,
        None => Some(id.to_string()),
    }
}

/// Splits a stored job id into `(id, cluster)`.
pub fn split_job_id(job_id: &str) -> (&str, Option<&str>) {
    match job_id.split_once(';') {
        Some((i, c)) => (i, Some(c)),
        None => (job_id, None),
    }
}

/// The `sacct --format` of a query: the free-text fields last, so a `|` in a stranger's job name cannot
/// shift the fields before it.
pub const SACCT_FIELDS: &str =
    "JobIDRaw,Submit,End,State,ExitCode,ElapsedRaw,NodeList,Reason,Comment,JobName";

/// The `squeue -O` of a query (every field ends in `|`; no widths, so nothing is truncated). `exit_code` is
/// the raw wait status in Slurm 22.05 (`code:signal` from 23.02 on), `Requeue` the controller's word on a requeue
/// after a failure.
pub const SQUEUE_FIELDS: &str = "JobID:|,SubmitTime:|,EndTime:|,State:|,exit_code:|,Requeue:|,TimeUsed:|,\
     NodeList:|,Reason:|,Comment:|,Name:|";

/// Slurm's words for "none" in the reason and node columns.
pub fn detail_text(s: &str) -> String {
    match s.trim() {
        "None" | "(null)" | "None assigned" | "N/A" => String::new(),
        t => t.to_string(),
    }
}

/// squeue's `TimeUsed` (`[D-][HH:]MM:SS`) in seconds.
pub fn time_used_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, s),
    };
    let mut secs = 0u64;
    for part in rest.split(':') {
        secs = secs
            .checked_mul(60)?
            .checked_add(part.parse::<u64>().ok()?)?;
    }
    Some(days * 86400 + secs)
}

/// A time printed with `SLURM_TIME_FORMAT=%s`: epoch seconds, or a word (`Unknown`, `N/A`, `NONE`) for none.
pub fn epoch_ms(s: &str) -> Option<Millis> {
    let secs = s.trim().parse::<i64>().ok().filter(|&t| t > 0)?;
    secs.checked_mul(1000)
}

/// Parses `sacct -X -n -P --format=<SACCT_FIELDS>` output (with `SLURM_TIME_FORMAT=%s`): every row of a
/// whole allocation, several per id when the id was reused. `cluster` is appended to the id (`ID;CLUSTER`).
pub fn parse_sacct(stdout: &str, cluster: Option<&str>) -> Vec<JobRow> {
    stdout
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(10, '|').collect();
            let [
                id,
                submit,
                end,
                state,
                exit,
                elapsed,
                nodes,
                reason,
                comment,
                name,
            ] = f.as_slice()
            else {
                return None;
            };
            let id = id.trim();
            // Only whole allocations of plain jobs: skip steps (`12.batch`) and anything else.
            is_job_id(id).then(|| JobRow {
                source: Source::Accounting,
                job_id: with_cluster(id, cluster),
                name: name.trim().to_string(),
                comment: comment.trim().to_string(),
                submit: epoch_ms(submit),
                end: epoch_ms(end),
                state: state.trim().to_string(),
                exit_code: exit.trim().to_string(),
                requeue: None,
                detail: JobDetail {
                    reason: detail_text(reason),
                    nodes: detail_text(nodes),
                    elapsed_sec: elapsed.trim().parse().ok(),
                },
            })
        })
        .collect()
}

/// Parses `squeue -h -t all -O <SQUEUE_FIELDS>` output (with `SLURM_TIME_FORMAT=%s`).
pub fn parse_squeue(stdout: &str, cluster: Option<&str>) -> Vec<JobRow> {
    parse_squeue_of(stdout, cluster, None)
}

/// [`parse_squeue`] of the lines whose id is in `asked` (all lines when `None`): a line of another job
/// costs a look at its first field, no allocation.
pub fn parse_squeue_of(
    stdout: &str,
    cluster: Option<&str>,
    asked: Option<&HashSet<&str>>,
) -> Vec<JobRow> {
    stdout
        .lines()
        .filter(|line| asked.is_none_or(|a| a.contains(squeue_line_id(line))))
        .filter_map(|line| parse_squeue_line(line, cluster))
        .collect()
}

/// The job id a `squeue -O <SQUEUE_FIELDS>` line is about (its first field, trimmed).
pub fn squeue_line_id(line: &str) -> &str {
    line.split('|').next().unwrap_or_default().trim()
}

/// One `squeue -O <SQUEUE_FIELDS>` line as a row (`None` for a line that is not a job's).
pub fn parse_squeue_line(line: &str, cluster: Option<&str>) -> Option<JobRow> {
    let line = line.strip_suffix('|').unwrap_or(line);
    let f: Vec<&str> = line.splitn(11, '|').collect();
    let [
        id,
        submit,
        end,
        state,
        exit,
        requeue,
        used,
        nodes,
        reason,
        comment,
        name,
    ] = f.as_slice()
    else {
        return None;
    };
    let id = id.trim();
    is_job_id(id).then(|| JobRow {
        source: Source::Controller,
        job_id: with_cluster(id, cluster),
        name: name.trim().to_string(),
        // squeue's word for no comment; sacct prints an empty field.
        comment: match comment.trim() {
            "(null)" => String::new(),
            c => c.to_string(),
        },
        submit: epoch_ms(submit),
        end: epoch_ms(end),
        state: state.trim().to_string(),
        exit_code: wait_status(exit.trim()),
        requeue: match requeue.trim() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        },
        detail: JobDetail {
            reason: detail_text(reason),
            nodes: detail_text(nodes),
            elapsed_sec: time_used_secs(used),
        },
    })
}

/// squeue's `exit_code` is the raw wait status (`768` for exit 3) in Slurm 22.05; from 23.02 on (24.11,
/// 26.05) squeue prints sacct's form, `code:signal`, which is kept as it is.
pub fn wait_status(raw: &str) -> String {
    if raw.contains(':') {
        return raw.to_string();
    }
    match raw.parse::<u32>() {
        Ok(w) => format!("{}:{}", (w >> 8) & 0xff, w & 0x7f),
        Err(_) => String::new(),
    }
}

fn with_cluster(id: &str, cluster: Option<&str>) -> String {
    match cluster {
        Some(c) => format!("{id};{c}"),
        None => id.to_string(),
    }
}
