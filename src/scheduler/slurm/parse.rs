//! What Slurm's commands print, read: `sbatch --parsable`, `sacct -P` and `squeue -O` rows (with
//! `SLURM_TIME_FORMAT=%s`), job ids, wait statuses and Slurm's words for "none".
//!
//! Owns: the field lists of the queries (defined once, looked up by name) and those pure parsing
//! functions (unit-tested here and with the back end in [`super`]). Must never:
//! run a command, or decide whether a row is about our job (the engine judges).

use std::collections::HashSet;

use crate::engine::{JobDetail, JobRow, Source};
use crate::time::Millis;

/// True for a plain numeric job id (`1234`; not an array or het-job id, not empty): the only kind we submit.
pub fn is_job_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())
}

/// True for one task of a job array as Slurm names it (`1234_5`: the array's job id, the task index).
pub fn is_task_id(id: &str) -> bool {
    id.split_once('_')
        .is_some_and(|(a, t)| is_job_id(a) && is_job_id(t))
}

/// The array's job id and task list of a record that stands for many tasks (`1234_[0-3,7,9-20%4]`: the
/// controller keeps the tasks that have not started as one record, and accounting shows it so).
pub fn array_record(id: &str) -> Option<(&str, &str)> {
    let (a, rest) = id.split_once("_[")?;
    let spec = rest.strip_suffix(']')?;
    let ok = is_job_id(a)
        && !spec.is_empty()
        && spec
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b',' | b'-' | b'%'));
    ok.then_some((a, spec))
}

/// An array record's task list (`0-3,7,9-20%4`), read once: its ranges sorted and apart, the `%N`
/// throttle and parts that are not numbers (or run backwards) ignored. A record of 100,000 tasks is a
/// range or a few, never a list of its tasks; whether it holds a task is a binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskList(Vec<(u64, u64)>);

impl TaskList {
    /// Reads a task list (what is inside an array record's brackets).
    pub fn parse(spec: &str) -> TaskList {
        let spec = spec.split_once('%').map_or(spec, |(s, _)| s);
        let mut parts: Vec<(u64, u64)> = spec
            .split(',')
            .filter_map(|part| {
                let (lo, hi) = part.split_once('-').unwrap_or((part, part));
                Some((lo.parse().ok()?, hi.parse().ok()?)).filter(|(lo, hi)| lo <= hi)
            })
            .collect();
        parts.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(parts.len());
        for (lo, hi) in parts {
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        TaskList(out)
    }

    /// Whether the list holds task `task`.
    pub fn holds(&self, task: u64) -> bool {
        let i = self.0.partition_point(|&(lo, _)| lo <= task);
        i > 0 && task <= self.0[i - 1].1
    }
}

/// `sacct` lines with their first field (`JobID`) cut to the array's job id: `1234_5` and `1234_[6-9]`
/// become `1234`, a plain job's id stays. For finding an array by its key.
pub fn array_job_ids(stdout: &str) -> String {
    let mut out = String::with_capacity(stdout.len());
    for line in stdout.lines() {
        let (id, rest) = line.split_once('|').unwrap_or((line, ""));
        let id = id.trim();
        let base = id.split_once('_').map_or(id, |(a, _)| a);
        out.push_str(base);
        if line.contains('|') {
            out.push('|');
            out.push_str(rest);
        }
        out.push('\n');
    }
    out
}

/// An array's job id and its cluster (`None` for the default one).
pub type ArrayOf<'a> = (&'a str, Option<&'a str>);

/// The rows of `asked` ids among `rows`, with an array record (`1234_[6-9]`) given to each asked task it
/// holds (`1234_7`, its id rewritten): accounting lists a task that never started only inside its array's
/// record, and only when asked for the array. Rows of ids not asked (other tasks, an old job of a reused
/// id) are dropped. `asked` holds ids as the ledger stores them (`ID`, `ID_TASK`, with `;CLUSTER`).
pub fn rows_for_tasks(rows: Vec<JobRow>, asked: &HashSet<&str>) -> Vec<JobRow> {
    let mut tasks: std::collections::HashMap<ArrayOf<'_>, Vec<(u64, &str)>> = Default::default();
    for id in asked {
        let (plain, cluster) = split_job_id(id);
        if let Some((a, t)) = plain.split_once('_')
            && let Ok(t) = t.parse()
        {
            tasks.entry((a, cluster)).or_default().push((t, id));
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if asked.contains(row.job_id.as_str()) {
            out.push(row);
            continue;
        }
        let (plain, cluster) = split_job_id(&row.job_id);
        let Some((a, spec)) = array_record(plain) else {
            continue;
        };
        let Some(asked_tasks) = tasks.get(&(a, cluster)) else {
            continue;
        };
        let list = TaskList::parse(spec);
        for (t, id) in asked_tasks {
            if list.holds(*t) {
                out.push(JobRow {
                    job_id: (*id).to_string(),
                    ..row.clone()
                });
            }
        }
    }
    out
}

/// A row id the parsers keep: a plain job, an array task, or an array record of tasks not yet started.
fn is_row_id(id: &str) -> bool {
    is_job_id(id) || is_task_id(id) || array_record(id).is_some()
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

/// `MaxArraySize` from `scontrol show config` (`MaxArraySize           = 1001`).
pub fn parse_max_array_size(stdout: &str) -> Option<u32> {
    stdout.lines().find_map(|l| {
        let (name, value) = l.split_once('=')?;
        (name.trim() == "MaxArraySize").then(|| value.trim().parse().ok())?
    })
}

/// Splits a stored job id into `(id, cluster)`.
pub fn split_job_id(job_id: &str) -> (&str, Option<&str>) {
    match job_id.split_once(';') {
        Some((i, c)) => (i, Some(c)),
        None => (job_id, None),
    }
}

/// Declares a query's field list once: the names in order (looked up by name with [`field`]) and the
/// text Slurm is given, built from the same names at compile time.
macro_rules! field_list {
    ($(#[$doc:meta])* $names:ident, $text:ident = [$first:literal $(, $rest:literal)* $(,)?], $suffix:literal) => {
        $(#[$doc])*
        pub const $names: &[&str] = &[$first $(, $rest)*];
        /// The same fields as the tool's argument (see the list of names).
        pub const $text: &str = concat!($first, $suffix $(, ",", $rest, $suffix)*);
    };
}

field_list!(
    /// The `sacct --format` of a query: the free-text fields last, so a `|` in a stranger's job name
    /// cannot shift the fields before it.
    SACCT_NAMES, SACCT_FIELDS = [
        "JobID", "Submit", "End", "State", "ExitCode", "ElapsedRaw", "NodeList", "Reason", "Comment",
        "JobName",
    ],
    ""
);

field_list!(
    /// The `squeue -O` of a query (every field ends in `|`; no widths, so nothing is truncated).
    /// `exit_code` is the raw wait status in Slurm 22.05 (`code:signal` from 23.02 on), `Requeue` the controller's word on a
/// requeue after a failure.
    SQUEUE_NAMES, SQUEUE_FIELDS = [
        "JobArrayID", "SubmitTime", "EndTime", "State", "exit_code", "Requeue", "TimeUsed", "NodeList", "Reason",
        "Comment", "Name",
    ],
    ":|"
);

/// Where the field `name` is in `names`, counted from 0. Used in constants, so a name that is not in the
/// list stops the build instead of reading another field.
pub const fn field(names: &[&str], name: &str) -> usize {
    let mut i = 0;
    while i < names.len() {
        if same(names[i].as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("no such field in the query's list")
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The fields of a `sacct` row, by name.
mod sacct {
    use super::{SACCT_NAMES as N, field};
    // `JobID`, not `JobIDRaw`: an array's task is `1234_5` (its raw id is another number), its tasks not
    // yet started one record `1234_[6-999]`; a plain job's is the same either way.
    pub const ID: usize = field(N, "JobID");
    pub const SUBMIT: usize = field(N, "Submit");
    pub const END: usize = field(N, "End");
    pub const STATE: usize = field(N, "State");
    pub const EXIT: usize = field(N, "ExitCode");
    pub const ELAPSED: usize = field(N, "ElapsedRaw");
    pub const NODES: usize = field(N, "NodeList");
    pub const REASON: usize = field(N, "Reason");
    pub const COMMENT: usize = field(N, "Comment");
    pub const NAME: usize = field(N, "JobName");
    // The name is free text and may hold `|`: it must be last, where `splitn` keeps it whole.
    const _: () = assert!(NAME == N.len() - 1);
}

/// The fields of a `squeue` line, by name.
mod squeue {
    use super::{SQUEUE_NAMES as N, field};
    // `JobArrayID`: a task `1234_5`, the tasks not yet started `1234_[6-999]`, a plain job its id.
    pub const ID: usize = field(N, "JobArrayID");
    pub const SUBMIT: usize = field(N, "SubmitTime");
    pub const END: usize = field(N, "EndTime");
    pub const STATE: usize = field(N, "State");
    pub const EXIT: usize = field(N, "exit_code");
    pub const REQUEUE: usize = field(N, "Requeue");
    pub const TIME_USED: usize = field(N, "TimeUsed");
    pub const NODES: usize = field(N, "NodeList");
    pub const REASON: usize = field(N, "Reason");
    pub const COMMENT: usize = field(N, "Comment");
    pub const NAME: usize = field(N, "Name");
    const _: () = assert!(NAME == N.len() - 1);
}

/// The `squeue` field that changes every second while a job runs (its run time), by position.
pub const SQUEUE_TIME_USED: usize = squeue::TIME_USED;

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
            let f: Vec<&str> = line.splitn(SACCT_NAMES.len(), '|').collect();
            if f.len() != SACCT_NAMES.len() {
                return None;
            }
            let at = |i: usize| f[i].trim();
            let id = at(sacct::ID);
            // Only whole allocations of jobs and array tasks: skip steps (`12.batch`) and anything else.
            is_row_id(id).then(|| JobRow {
                source: Source::Accounting,
                job_id: with_cluster(id, cluster),
                name: at(sacct::NAME).to_string(),
                comment: at(sacct::COMMENT).to_string(),
                submit: epoch_ms(at(sacct::SUBMIT)),
                end: epoch_ms(at(sacct::END)),
                state: at(sacct::STATE).to_string(),
                exit_code: at(sacct::EXIT).to_string(),
                requeue: None,
                detail: JobDetail {
                    reason: detail_text(at(sacct::REASON)),
                    nodes: detail_text(at(sacct::NODES)),
                    elapsed_sec: at(sacct::ELAPSED).parse().ok(),
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

/// The job id a `squeue -O <SQUEUE_FIELDS>` line is about (its `JobID` field, trimmed).
pub fn squeue_line_id(line: &str) -> &str {
    line.split('|').nth(squeue::ID).unwrap_or_default().trim()
}

/// One `squeue -O <SQUEUE_FIELDS>` line as a row (`None` for a line that is not a job's).
pub fn parse_squeue_line(line: &str, cluster: Option<&str>) -> Option<JobRow> {
    let line = line.strip_suffix('|').unwrap_or(line);
    let f: Vec<&str> = line.splitn(SQUEUE_NAMES.len(), '|').collect();
    if f.len() != SQUEUE_NAMES.len() {
        return None;
    }
    let at = |i: usize| f[i].trim();
    let id = at(squeue::ID);
    is_row_id(id).then(|| JobRow {
        source: Source::Controller,
        job_id: with_cluster(id, cluster),
        name: at(squeue::NAME).to_string(),
        // squeue's word for no comment; sacct prints an empty field.
        comment: match at(squeue::COMMENT) {
            "(null)" => String::new(),
            c => c.to_string(),
        },
        submit: epoch_ms(at(squeue::SUBMIT)),
        end: epoch_ms(at(squeue::END)),
        state: at(squeue::STATE).to_string(),
        exit_code: wait_status(at(squeue::EXIT)),
        requeue: match at(squeue::REQUEUE) {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        },
        detail: JobDetail {
            reason: detail_text(at(squeue::REASON)),
            nodes: detail_text(at(squeue::NODES)),
            elapsed_sec: time_used_secs(at(squeue::TIME_USED)),
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

/// Finds the job id carrying `key` in `ID|COMMENT` lines (from `squeue -o '%i|%k'` or sacct).
pub fn find_key(stdout: &str, key: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        let mut f = l.split('|');
        let (id, comment) = (f.next()?.trim(), f.next()?.trim());
        (comment == key && is_job_id(id)).then(|| id.to_string())
    })
}

/// In `ID|COMMENT|SUBMIT_EPOCH` lines, the earliest job without a comment submitted at or after `since`
/// (milliseconds; one minute of clock skew allowed).
pub fn find_uncommented_since(stdout: &str, since: Millis) -> Option<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let (id, comment, submit) = (f.next()?.trim(), f.next()?.trim(), f.next()?.trim());
            let submit_ms = submit.parse::<i64>().ok()?.checked_mul(1000)?;
            (comment.is_empty() && is_job_id(id) && submit_ms >= since - 60_000)
                .then(|| (submit_ms, id.to_string()))
        })
        .min()
        .map(|(_, id)| id)
}

/// True when sbatch's error proves no job was created: the controller refused it or was never reached, or
/// sbatch itself refused what the config asks before sending anything (an unknown gres or option, an
/// unreadable script: these lack the "submission failed" words).
pub fn sbatch_refusal_is_certain(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    let refused = s.contains("batch job submission failed")
        || crate::engine::classify_rejection(&s).is_some();
    refused && !s.contains("timed out") && !s.contains("timeout")
}

/// scancel's words for a job that had already ended (or that the controller forgot long ago).
pub fn scancel_found_it_ended(stderr: &str) -> bool {
    stderr.contains("already completing or completed")
        || stderr.contains("Invalid job id specified")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_field_lists_give_slurm_the_arguments_it_was_always_given() {
        // Built from the lists of names: each squeue field ends in `|` (no widths), no trailing comma.
        // The id fields name an array's task as `ARRAY_TASK` (for a plain job they print what `JobID` and
        // `JobIDRaw` print: its id).
        assert_eq!(
            SQUEUE_FIELDS,
            "JobArrayID:|,SubmitTime:|,EndTime:|,State:|,exit_code:|,Requeue:|,TimeUsed:|,NodeList:|,\
             Reason:|,Comment:|,Name:|"
        );
        assert_eq!(
            SACCT_FIELDS,
            "JobID,Submit,End,State,ExitCode,ElapsedRaw,NodeList,Reason,Comment,JobName"
        );
    }

    proptest::proptest! {
        /// A record's task list read in place says of every task what the list written out says, for
        /// any list of ranges Slurm could print (with or without a throttle), and any text is no panic.
        #[test]
        fn a_record_holds_exactly_the_tasks_its_ranges_name(
            ranges in proptest::collection::vec((0u64..60, 0u64..5), 1..6),
            throttle in proptest::option::of(1u32..9),
            task in 0u64..80,
            junk in "[0-9,%\\-]{0,12}",
        ) {
            let mut parts = Vec::new();
            let mut named = HashSet::new();
            for (lo, len) in &ranges {
                let hi = lo + len;
                parts.push(if *len == 0 { lo.to_string() } else { format!("{lo}-{hi}") });
                named.extend(*lo..=hi);
            }
            let mut spec = parts.join(",");
            if let Some(t) = throttle {
                spec += &format!("%{t}");
            }
            proptest::prop_assert_eq!(TaskList::parse(&spec).holds(task), named.contains(&task), "{}", spec);
            let id = format!("7_[{spec}]");
            proptest::prop_assert_eq!(array_record(&id), Some(("7", spec.as_str())));
            let _ = TaskList::parse(&junk).holds(task);
            let _ = array_record(&format!("7_[{junk}]"));
        }
    }

    #[test]
    fn array_ids_are_a_task_or_a_record_of_tasks_read_in_place() {
        assert!(is_task_id("632_2") && !is_task_id("632_") && !is_task_id("632_[1-3]"));
        assert_eq!(array_record("636_[0,2-5%2]"), Some(("636", "0,2-5%2")));
        assert_eq!(array_record("636_[]"), None);
        assert_eq!(array_record("636_3"), None);
        assert_eq!(array_record("x_[1]"), None);
        let spec = "0,2-5,99999%2";
        let list = TaskList::parse(spec);
        let holds: Vec<u64> = (0..8).filter(|t| list.holds(*t)).collect();
        assert_eq!(holds, vec![0, 2, 3, 4, 5]);
        assert!(list.holds(99_999) && !list.holds(100_000));
        // Overlapping and unsorted parts are merged; a part that is not a range of numbers, or runs
        // backwards, holds nothing.
        for (spec, want) in [
            ("0-2,1-5,9", &[0, 1, 2, 3, 4, 5, 9][..]),
            ("10-12,0-1,11-14", &[0, 1, 10, 11, 12, 13, 14]),
            ("3-1,4", &[4]),
            ("x,3", &[3]),
            ("2-", &[]),
            ("7%2,9", &[7]),
        ] {
            let list = TaskList::parse(spec);
            let holds: Vec<u64> = (0..20).filter(|t| list.holds(*t)).collect();
            assert_eq!(holds, want, "{spec}");
        }
        // As Slurm 22.05 printed them: a task that ran, and the tasks still waiting, held, as one record.
        let squeue = "633_2|1796107598|1796107600|COMPLETED|0|1|0:01|vm|None|dw-k-a1-1|dw-array-1-1|\n\
                      632_[0-1,3-4]|1796107598|N/A|PENDING|0|1|0:00|(null)|JobHeldUser|dw-k-a1-1|dw-array-1-1|\n";
        let rows = parse_squeue(squeue, None);
        let ids: Vec<&str> = rows.iter().map(|r| r.job_id.as_str()).collect();
        assert_eq!(ids, ["633_2", "632_[0-1,3-4]"]);
        // sacct's record of the waiting tasks is given to each task asked about that it holds, and only
        // to those; rows of ids not asked about (another task, an old job of a reused id) are dropped.
        let sacct = "636_1|1796107598|1796107600|COMPLETED|0:0|1|vm|None|dw-k|dw-array\n\
                     636_[0,2-5%2]|1796107598|Unknown|CANCELLED by 0|0:0|0|None assigned|None||dw-array\n\
                     636|1700000000|1700000100|COMPLETED|0:0|100|vm|None|dw-old|other\n";
        let asked: HashSet<&str> = ["636_1", "636_3", "636_9"].into();
        let got = rows_for_tasks(parse_sacct(sacct, None), &asked);
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|r| (r.job_id.as_str(), r.state.as_str()))
            .collect();
        assert_eq!(got, [("636_1", "COMPLETED"), ("636_3", "CANCELLED by 0")]);
        assert_eq!(
            array_job_ids("636_1|dw-k|1\n636_[0,2]|dw-k|1\n7|x|2\n"),
            "636|dw-k|1\n636|dw-k|1\n7|x|2\n"
        );
    }

    #[test]
    fn a_line_with_a_field_too_few_is_no_row() {
        let line = "7|1700000001|Unknown|PENDING|0|1|0:00|(null)|None|dw-k|dw-a|";
        assert_eq!(parse_squeue_line(line, None).unwrap().name, "dw-a");
        let short = "7|1700000001|Unknown|PENDING|0|1|0:00|(null)|None|dw-k";
        assert!(parse_squeue_line(short, None).is_none());
        let acct = "7|1700000001|Unknown|PENDING|0:0|0|None assigned|Priority|dw-k|a|b";
        assert_eq!(parse_sacct(acct, None)[0].name, "a|b");
        assert!(
            parse_sacct(
                "7|1700000001|Unknown|PENDING|0:0|0|None assigned|Priority|dw-k",
                None
            )
            .is_empty()
        );
    }
}
