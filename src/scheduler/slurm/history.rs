//! What accounting remembers of this user's jobs in a window of time, read into [`EarlierJob`]s: through
//! `sacct` (and `squeue` for a running job's comment); slurmrestd's answers are read into them by
//! [`super::rest`].
//! For a new ledger's start and `dirwatcher recover --from-slurm` (`crate::recover` decides which jobs
//! are ours and of which directory).
//!
//! Must never: ask accounting without a bounded start time, or decide whether a job is ours.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::JobDetail;
use crate::process::{self, Invocation};
use crate::time::Millis;

/// The accounting fields asked for, in this order; the separator is ASCII's unit separator, which no
/// field of ours holds (a directory name may hold `|`).
const FIELDS: &str =
    "JobIDRaw,Submit,End,State,ExitCode,ElapsedRaw,NodeList,Reason,Comment,JobName,WorkDir";
/// The separator of sacct's fields: ASCII's unit separator.
pub const SEP: char = '\u{1f}';

/// One job in accounting (a whole allocation; the latest record of its id in the window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierJob {
    /// Job id.
    pub job_id: String,
    /// Submit time (wall ms).
    pub submit: Millis,
    /// End time, when it ended.
    pub end: Option<Millis>,
    /// Slurm's state word (`COMPLETED`, `CANCELLED by 0` → `CANCELLED`).
    pub state: String,
    /// `code:signal`.
    pub exit_code: String,
    /// What explains its end.
    pub detail: JobDetail,
    /// The comment (our submission key).
    pub comment: String,
    /// The job name.
    pub name: String,
    /// Its working directory.
    pub work_dir: PathBuf,
}

/// Parses the output of `sacct -X -n -P --delimiter=<SEP> --format=<FIELDS>` (`SLURM_TIME_FORMAT=%s`).
pub fn parse(stdout: &str) -> Vec<EarlierJob> {
    stdout
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.splitn(11, SEP).collect();
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
                work_dir,
            ] = f.as_slice()
            else {
                return None;
            };
            let id = id.trim();
            if !super::is_job_id(id) {
                return None;
            }
            use super::{detail_text, epoch_ms};
            Some(EarlierJob {
                job_id: id.to_string(),
                submit: epoch_ms(submit)?,
                end: epoch_ms(end),
                state: state.split_whitespace().next().unwrap_or("").to_string(),
                exit_code: exit.trim().to_string(),
                detail: JobDetail {
                    reason: detail_text(reason),
                    nodes: detail_text(nodes),
                    elapsed_sec: elapsed.trim().parse().ok(),
                },
                comment: detail_text(comment),
                name: name.to_string(),
                work_dir: PathBuf::from(work_dir),
            })
        })
        .collect()
}

/// One bounded `sacct` of the jobs of this user that were eligible between `from` and `to` seconds ago.
pub fn sacct(
    timeout: Duration,
    from_secs_ago: u64,
    to_secs_ago: u64,
) -> Result<Vec<EarlierJob>, String> {
    let mut inv = Invocation::new("sacct")
        .arg("-X")
        .arg("-n")
        .arg("-P")
        .arg(format!("--delimiter={SEP}"))
        .arg(format!("--format={FIELDS}"))
        .arg(format!("--starttime=now-{from_secs_ago}"));
    if to_secs_ago > 0 {
        inv = inv.arg(format!("--endtime=now-{to_secs_ago}"));
    }
    inv.env.push(("SLURM_TIME_FORMAT".into(), "%s".into()));
    process::run(&inv, timeout)
        .map(|out| parse(&out.stdout))
        .map_err(|e| e.to_string())
}

/// The comment the controller shows for job `id` (`squeue`).
pub fn squeue_comment(timeout: Duration, id: &str) -> Option<String> {
    let inv = Invocation::new("squeue")
        .arg("-h")
        .arg("-t")
        .arg("all")
        .arg(format!("--jobs={id}"))
        .arg("-o")
        .arg("%k");
    let out = process::run(&inv, timeout).ok()?;
    Some(out.stdout.trim().to_string()).filter(|c| !c.is_empty())
}
