//! What Slurm's accounting remembers of a root: the jobs an earlier ledger submitted for its directories.
//! Used twice: at the start of a new, empty ledger (any such job means the root is not new: refuse rather
//! than run finished directories again), and by `dirwatcher recover --from-slurm`, which rebuilds the
//! generations from it.
//!
//! A job is ours when its comment is a submission key (`dw-<ledger>-<row>`), or — on a cluster that stores
//! no comments — when it has no comment and our job name. It belongs to a directory of this root when its
//! working directory is that directory (our `--chdir`) and its name is the one we give it; without
//! `chdir_to_subdir` by its name alone, when exactly one directory of the root has that name.
//! Must never: write the ledger (the caller does, in one transaction), or ask accounting without a bounded
//! `--starttime`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::engine::{GenState, ReadyIdentity};
pub use crate::scheduler::slurm::{EarlierJob, History};
use crate::time::Millis;

/// How far back a new ledger's start looks for jobs of an earlier one.
pub const START_LOOKBACK: Duration = Duration::from_secs(30 * 86400);

/// A submission key of ours: `dw-<8 hex>-<row>`.
pub fn is_our_key(comment: &str) -> bool {
    let mut parts = comment.splitn(3, '-');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some("dw"), Some(id), Some(row))
            if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit())
                && !row.is_empty() && row.bytes().all(|b| b.is_ascii_digit())
    )
}

/// The key of a job array of ours: `dw-<8 hex>-a<row>-<try>` (`job.array_max`).
pub fn is_our_array_key(comment: &str) -> bool {
    let Some(rest) = comment.strip_prefix("dw-") else {
        return false;
    };
    let Some((id, array)) = rest.split_once("-a") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    id.len() == 8
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && array
            .split_once('-')
            .is_some_and(|(r, t)| digits(r) && digits(t))
}

/// The jobs of `[since, now]` in windows of a day, newest first; `each` hears every window's jobs and
/// may stop the walk (returns false). Errors stop it too.
pub fn walk(
    history: &History,
    since: Millis,
    now: Millis,
    mut each: impl FnMut(usize, usize, Vec<EarlierJob>) -> bool,
) -> Result<(), String> {
    const DAY: u64 = 86400;
    let back = u64::try_from((now - since).max(0) / 1000).unwrap_or(0) + 60;
    let windows = back.div_ceil(DAY).max(1) as usize;
    for w in 0..windows {
        let to = w as u64 * DAY;
        let from = ((w as u64 + 1) * DAY).min(back);
        // At `-v`, as the daemon's scheduler calls are.
        let t = std::time::Instant::now();
        let answer = history.jobs(from, to);
        let took_ms = t.elapsed().as_millis() as u64;
        let window = w + 1;
        match &answer {
            Ok(jobs) => tracing::debug!(
                call = "accounting",
                took_ms,
                ok = true,
                "scheduler call accounting ({}) for day {window} of {windows}: answered in {took_ms} ms ({} job(s))",
                history.name(),
                jobs.len()
            ),
            Err(e) => tracing::debug!(
                call = "accounting",
                took_ms,
                ok = false,
                "scheduler call accounting ({}) for day {window} of {windows}: failed after {took_ms} ms: {e}",
                history.name()
            ),
        }
        if !each(w, windows, answer?) {
            break;
        }
    }
    Ok(())
}

/// What accounting says of a directory of this root.
#[derive(Debug, Clone)]
pub struct Found {
    /// The directory's name in the root.
    pub dir: OsString,
    /// Its latest job.
    pub job: EarlierJob,
    /// How many jobs accounting shows for it.
    pub jobs: u32,
}

/// A job of ours that could not be tied to one directory of this root, and why.
#[derive(Debug, Clone)]
pub struct Unmatched {
    /// The job.
    pub job: EarlierJob,
    /// Why.
    pub why: &'static str,
}

/// The jobs of `jobs` that belong to this root, the latest per directory; and those of ours that name
/// this root but no one directory in it. Jobs of other roots (another instance) are left out of both.
pub fn match_to_root(
    cfg: &Config,
    names: &[OsString],
    jobs: &[EarlierJob],
) -> (Vec<Found>, Vec<Unmatched>) {
    let root = &cfg.watch.root;
    let prefix = &cfg.job.job_name_prefix;
    let mut by_name: HashMap<String, Vec<&OsString>> = HashMap::new();
    for n in names {
        by_name
            .entry(crate::engine::job_name(prefix, n))
            .or_default()
            .push(n);
    }
    let mut latest: HashMap<OsString, Found> = HashMap::new();
    let mut unmatched = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for j in jobs {
        if !seen.insert((j.job_id.clone(), j.submit)) {
            continue;
        }
        // A task of one of this root's job arrays (its map is in the root): said, not rebuilt.
        if is_our_array_key(&j.comment)
            && crate::scheduler::array::map_path(root, &j.comment).exists()
        {
            unmatched.push(Unmatched {
                job: j.clone(),
                why: "a task of a job array (`job.array_max`): `recover` does not rebuild array tasks yet; \
                      the task's directory is in the array's map, `.dirwatcher/arrays/<its comment>.sh` in the root",
            });
            continue;
        }
        let ours = is_our_key(&j.comment)
            || (j.comment.is_empty() && j.name.starts_with(&format!("{prefix}-")));
        if !ours {
            continue;
        }
        let dir: Result<OsString, &'static str> = if cfg.job.chdir_to_subdir {
            match (j.work_dir.parent(), j.work_dir.file_name()) {
                (Some(p), Some(d)) if p == root => {
                    if crate::engine::job_name(prefix, d) == j.name {
                        Ok(d.to_owned())
                    } else {
                        Err(
                            "its working directory is in this root, but its name is not the one given to it",
                        )
                    }
                }
                _ => continue, // another root's job
            }
        } else {
            match by_name.get(&j.name).map(Vec::as_slice) {
                Some([d]) => Ok((*d).clone()),
                Some(_) => Err("several directories of this root have its job name"),
                None => Err("no directory of this root has its job name now"),
            }
        };
        match dir {
            Ok(d) => {
                let e = latest.entry(d.clone()).or_insert_with(|| Found {
                    dir: d,
                    job: j.clone(),
                    jobs: 0,
                });
                e.jobs += 1;
                if j.submit > e.job.submit {
                    e.job = j.clone();
                }
            }
            Err(why) => unmatched.push(Unmatched {
                job: j.clone(),
                why,
            }),
        }
    }
    let mut found: Vec<Found> = latest.into_values().collect();
    found.sort_by(|a, b| a.dir.cmp(&b.dir));
    (found, unmatched)
}

/// The comment the controller shows for job `id`, when it is one of our keys.
pub fn controller_comment(history: &History, id: &str) -> Option<String> {
    history.controller_comment(id).filter(|c| is_our_key(c))
}

/// The ledger state a job's last Slurm state means here: COMPLETED is done, a state Slurm may still run
/// the job from is in flight, anything else failed.
pub fn state_of(slurm: &str) -> GenState {
    match slurm {
        "COMPLETED" => GenState::Completed,
        "PENDING" | "RUNNING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SUSPENDED"
        | "CONFIGURING" | "COMPLETING" | "RESIZING" | "SIGNALING" | "STAGE_OUT" | "STOPPED"
        | "RESV_DEL_HOLD" | "SPECIAL_EXIT" | "EXPEDITING" => GenState::Submitted,
        _ => GenState::Failed,
    }
}

/// What the daemon's start asks of accounting for a new, empty ledger: a job of ours for a directory of
/// this root that a new ledger would run again — the directory still holds the very ready-file the job was
/// submitted for (not changed since) — within [`START_LOOKBACK`] (the last two days first, then the rest,
/// in windows as wide as the way of asking takes), in words. Jobs of directories deleted since, or with new data since, are no trace: nothing would run
/// twice for them.
pub fn first_trace(cfg: &Config, names: &[OsString]) -> Result<Option<String>, String> {
    let two_days = 2 * 86400;
    let all = START_LOOKBACK.as_secs();
    let history = History::new(cfg);
    let widest = history.widest_window_secs();
    for (from, to) in windows(two_days.min(widest), all, widest) {
        let jobs = history.jobs(from, to)?;
        let (hits, _) = match_to_root(cfg, names, &jobs);
        let again: Vec<&Found> = hits.iter().filter(|f| would_run_again(cfg, f)).collect();
        if let Some(f) = again.first() {
            return Ok(Some(format!(
                "Slurm's accounting shows jobs of an earlier ledger for {} directorie(s) still in this root, \
                 unchanged since (e.g. job {} for `{}`, {})",
                again.len(),
                f.job.job_id,
                f.dir.to_string_lossy(),
                f.job.state
            )));
        }
    }
    Ok(None)
}

/// The windows (from, to seconds ago) a start asks about: the last `first` seconds, then back to `all`
/// in windows of at most `widest`.
fn windows(first: u64, all: u64, widest: u64) -> Vec<(u64, u64)> {
    let mut out = vec![(first.min(all), 0)];
    while let Some(&(reached, _)) = out.last().filter(|(from, _)| *from < all) {
        out.push((reached.saturating_add(widest).min(all), reached));
    }
    out
}

/// True when `f`'s directory still holds a ready-file last changed before its latest job was submitted: a
/// ledger without a record of it would submit it again.
pub fn would_run_again(cfg: &Config, f: &Found) -> bool {
    ready_now(&cfg.watch.root, &f.dir, &cfg.watch.signal_filename)
        .is_some_and(|(ready, _)| !changed_after(&ready, &f.job))
}

/// The ready-file was changed after the job was submitted (accounting keeps seconds: a second's slack).
pub fn changed_after(ready: &ReadyIdentity, job: &EarlierJob) -> bool {
    ready.mtime_ns / 1_000_000 > job.submit + 999
}

/// The identity of the ready-file of `root/dir` now, if it is a real directory holding one.
pub fn ready_now(root: &Path, dir: &OsStr, signal: &OsStr) -> Option<(ReadyIdentity, (u64, u64))> {
    let d = root.join(dir);
    let dm = std::fs::symlink_metadata(&d).ok()?;
    if !dm.file_type().is_dir() {
        return None;
    }
    let m = std::fs::symlink_metadata(d.join(signal)).ok()?;
    if !m.file_type().is_file() {
        return None;
    }
    Some((
        ReadyIdentity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        },
        (dm.dev(), dm.ino()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::slurm::history::{SEP, parse};

    fn line(id: &str, state: &str, comment: &str, name: &str, wd: &str) -> String {
        let submit = (1_800_000_000 + id.parse::<u64>().unwrap()).to_string();
        [
            id,
            submit.as_str(),
            "1800000100",
            state,
            "0:0",
            "100",
            "node1",
            "None",
            comment,
            name,
            wd,
        ]
        .join(&SEP.to_string())
    }

    #[test]
    fn a_start_asks_two_days_then_the_rest_in_windows_as_wide_as_allowed() {
        assert_eq!(windows(2, 30, u64::MAX), [(2, 0), (30, 2)]);
        assert_eq!(windows(2, 5, 1), [(2, 0), (3, 2), (4, 3), (5, 4)]);
        assert_eq!(windows(2, 2, 1), [(2, 0)]);
    }

    #[test]
    fn keys_of_ours() {
        assert!(is_our_array_key("dw-0a1b2c3d-a17-2"));
        assert!(!is_our_array_key("dw-0a1b2c3d-17"));
        assert!(!is_our_array_key("dw-0a1b2c3d-a17"));
        assert!(!is_our_array_key("dw-0a1b2c3d-a-2"));
        assert!(!is_our_key("dw-0a1b2c3d-a17-2"));
        assert!(is_our_key("dw-0a1b2c3d-17"));
        assert!(!is_our_key("dw-0a1b2c3d-"));
        assert!(!is_our_key("dw-x-17"));
        assert!(!is_our_key("someone else's comment"));
    }

    #[test]
    fn jobs_are_tied_to_their_directories_by_working_directory_and_name() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_string_lossy().to_string();
        let yaml = format!(
            "watch:\n  root: {root:?}\njob:\n  wrap_cmd: \"true\"\n  chdir_to_subdir: true\n"
        );
        let cfg = crate::config::Config::parse(&yaml, &t.path().join("c.yaml")).unwrap();
        let out = [
            line(
                "10",
                "FAILED",
                "dw-0a1b2c3d-1",
                "dirwatch-a_b",
                &format!("{root}/a|b"),
            ),
            line(
                "11",
                "COMPLETED",
                "dw-0a1b2c3d-2",
                "dirwatch-a_b",
                &format!("{root}/a|b"),
            ),
            line(
                "12",
                "CANCELLED by 0",
                "dw-0a1b2c3d-3",
                "dirwatch-c",
                &format!("{root}/c"),
            ),
            line(
                "13",
                "COMPLETED",
                "dw-0a1b2c3d-4",
                "dirwatch-x",
                "/elsewhere/x",
            ),
            line(
                "14",
                "COMPLETED",
                "not ours",
                "dirwatch-d",
                &format!("{root}/d"),
            ),
            line(
                "15",
                "COMPLETED",
                "dw-0a1b2c3d-5",
                "renamed",
                &format!("{root}/e"),
            ),
            "12.batch\u{1f}garbage".to_string(),
        ]
        .join("\n");
        let jobs = parse(&out);
        assert_eq!(jobs.len(), 6);
        assert_eq!(jobs[2].state, "CANCELLED");
        let (found, unmatched) = match_to_root(&cfg, &[], &jobs);
        let got: Vec<(String, String, u32)> = found
            .iter()
            .map(|f| {
                (
                    f.dir.to_string_lossy().into_owned(),
                    f.job.job_id.clone(),
                    f.jobs,
                )
            })
            .collect();
        assert_eq!(
            got,
            [("a|b".into(), "11".into(), 2), ("c".into(), "12".into(), 1)]
        );
        assert_eq!(unmatched.len(), 1);
        assert_eq!(unmatched[0].job.job_id, "15");
        assert_eq!(state_of("COMPLETED"), GenState::Completed);
        assert_eq!(state_of("REQUEUED"), GenState::Submitted);
        // Slurm 25.11 and later: a job of `--requeue=expedite` being requeued, to run again.
        assert_eq!(state_of("EXPEDITING"), GenState::Submitted);
        assert_eq!(state_of("NODE_FAIL"), GenState::Failed);
    }
}

#[cfg(test)]
mod array_tests {
    use super::*;
    use crate::scheduler::slurm::history::{SEP, parse};

    /// A task of one of this root's job arrays (its map in the root) is named as not rebuilt; one of an
    /// array whose map is not in this root (another root's) is left out.
    #[test]
    fn array_tasks_of_this_root_are_named_not_rebuilt() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_string_lossy().to_string();
        let yaml = format!("watch:\n  root: {root:?}\njob:\n  wrap_cmd: \"true\"\n");
        let cfg = crate::config::Config::parse(&yaml, &t.path().join("c.yaml")).unwrap();
        let map = crate::scheduler::array::map_path(t.path(), "dw-0a1b2c3d-a1-1");
        std::fs::create_dir_all(map.parent().unwrap()).unwrap();
        std::fs::write(&map, "").unwrap();
        let row = |id: &str, key: &str| {
            [
                id,
                "1800000000",
                "1800000100",
                "COMPLETED",
                "0:0",
                "1",
                "n",
                "None",
                key,
                "dirwatch-array-1-1",
                "/",
            ]
            .join(&SEP.to_string())
        };
        let out = [row("20", "dw-0a1b2c3d-a1-1"), row("21", "dw-0a1b2c3d-a9-1")].join("\n");
        let (found, unmatched) = match_to_root(&cfg, &[], &parse(&out));
        assert!(found.is_empty());
        let ids: Vec<&str> = unmatched.iter().map(|u| u.job.job_id.as_str()).collect();
        assert_eq!(ids, ["20"]);
        assert!(unmatched[0].why.contains("a task of a job array"));
    }
}
