//! `run --dry-run`: one scan as the daemon would do it — which directories are new, whether their
//! ready-files become stable — and the exact command each would be submitted with. Nothing is submitted,
//! no lock is taken, the ledger is only read (and never created).
//!
//! Must never: run `sbatch` or a job, write the ledger, or hold a lock a writer would notice for longer
//! than a probe.

use std::ffi::{OsStr, OsString};
use std::time::Instant;

use super::open_read_only;
use crate::config::Config;
use crate::engine::{
    GenerationVerdict, Readiness, ReadyObservation, StabilityPolicy, StabilityTracker,
    generation_verdict, job_name,
};
use crate::fsx::{Root, RootLinks};
use crate::ledger::Ledger;
use crate::logging::show;
use crate::scan;
use crate::scheduler::{JobSpec, Scheduler};
use crate::time::Millis;

/// The key a dry run shows in place of the submission key the ledger would assign.
pub const DRY_RUN_KEY: &str = "dw-<key assigned at submission>";

/// Runs the dry run and returns what it would do, one line (or block) per directory.
pub fn dry_run(cfg: &Config) -> anyhow::Result<Vec<String>> {
    let root = &cfg.watch.root;
    let ledger = match std::fs::symlink_metadata(&cfg.behavior.state_file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        _ => Some(open_read_only(cfg)?),
    };
    let links = if cfg.watch.allow_unsafe_root {
        RootLinks::Follow
    } else {
        RootLinks::Refuse
    };
    let held = Root::open(root, links)
        .map_err(|e| anyhow::anyhow!("cannot open the root `{}`: {e}", root.display()))?;
    let names = scan::list_subdirs(&held)
        .map_err(|e| anyhow::anyhow!("cannot list the root `{}`: {e}", root.display()))?;
    let mut out = vec![format!(
        "# dry run: nothing is submitted and the ledger is not written; {} director{} under {}",
        names.len(),
        if names.len() == 1 { "y" } else { "ies" },
        show(root)
    )];
    let mut candidates = Vec::new();
    for name in &names {
        match first_look(cfg, ledger.as_ref(), &held, name)? {
            Some(skipped) => out.push(skipped),
            None => candidates.push(name.clone()),
        }
    }
    // The daemon's stability rule, in real time: `stability_checks` looks, `stability_interval` apart.
    let policy = StabilityPolicy {
        checks: cfg.watch.stability_checks,
        interval: cfg.watch.stability_interval,
        // A dry run does not wait minutes for quiescence: it says so instead (below).
        quiet: std::time::Duration::ZERO,
    };
    let verdicts = watch_settle(cfg, &held, &candidates, policy);
    let sched = crate::scheduler::from_config(cfg);
    let mut stable: usize = 0;
    for (name, verdict) in candidates.iter().zip(verdicts) {
        let path = root.join(name);
        match verdict {
            Some(Readiness::Stable) => {
                stable += 1;
                out.push(would_submit(cfg, sched.as_ref(), name, &path));
            }
            Some(Readiness::Locked) => out.push(format!(
                "{}: not submitted yet, its writer holds the ready-file locked",
                show(&path)
            )),
            _ => out.push(format!(
                "{}: not submitted yet, its ready-file changed or vanished during {} looks {:?} apart",
                show(&path),
                policy.checks,
                policy.interval
            )),
        }
    }
    if let Some(a) = cfg.job.arrays.filter(|_| stable >= 2) {
        let arrays = stable.div_ceil(a.max as usize);
        out.push(format!(
            "# with `job.array_max: {}`, these {stable} directories would go in up to {arrays} job array(s), one \
             `sbatch --array` each; every task runs the command above for its own directory",
            a.max
        ));
    }
    Ok(out)
}

/// What the ledger and one look at the directory `name` say: `None` when it is a candidate (new, with its
/// ready-file there), else the line that says why it is skipped.
fn first_look(
    cfg: &Config,
    ledger: Option<&Ledger>,
    held: &Root,
    name: &OsStr,
) -> anyhow::Result<Option<String>> {
    let path = cfg.watch.root.join(name);
    let latest = match ledger {
        Some(l) => l.latest_for_dir(name)?,
        None => None,
    };
    if let Some(g) = latest.as_ref().filter(|g| g.state.is_active()) {
        return Ok(Some(format!(
            "{}: skipped, attempt {} is in flight (job {})",
            show(&path),
            g.attempt,
            g.job_id.as_deref().unwrap_or("-")
        )));
    }
    let rules = &cfg.watch.ready;
    let id = match scan::open_dir(held, name)
        .and_then(|d| d.map_or(Ok(None), |d| scan::ready_marker(&d, rules).map(Some)))
    {
        Ok(Some(Ok((id, _, _)))) => id,
        Ok(Some(Err(why))) => {
            return Ok(Some(format!(
                "{}: skipped, {} (`dirwatcher explain` says more)",
                show(&path),
                why.words()
            )));
        }
        Ok(None) => {
            return Ok(Some(format!(
                "{}: skipped, no `{}` (`dirwatcher explain` says more)",
                show(&path),
                cfg.watch.signal_filename.to_string_lossy()
            )));
        }
        Err(e) => {
            return Ok(Some(format!(
                "{}: skipped, cannot look at the ready-file: {e}",
                show(&path)
            )));
        }
    };
    Ok(
        match generation_verdict(latest.as_ref().map(|g| (g.state, g.ready)), id) {
            GenerationVerdict::New => None,
            _ => {
                let g = latest.as_ref();
                Some(format!(
                    "{}: skipped, already handled (job {} ended {}) for this ready-file",
                    show(&path),
                    g.and_then(|g| g.job_id.as_deref()).unwrap_or("-"),
                    g.and_then(|g| g.final_state.as_deref()).unwrap_or("-")
                ))
            }
        },
    )
}

/// Looks at the candidates `policy.checks` times, `policy.interval` apart (sleeping in between, as the
/// daemon's cycles would), and returns the stability verdict of each after the last look.
fn watch_settle(
    cfg: &Config,
    held: &Root,
    candidates: &[OsString],
    policy: StabilityPolicy,
) -> Vec<Option<Readiness>> {
    let start = Instant::now();
    let mut tracker = StabilityTracker::default();
    let mut verdicts = vec![None; candidates.len()];
    for round in 0..policy.checks.max(1) {
        if round > 0 {
            std::thread::sleep(policy.interval);
        }
        let now = start.elapsed().as_millis() as Millis;
        for (i, name) in candidates.iter().enumerate() {
            let look = scan::open_dir(held, name).ok().flatten().and_then(|d| {
                let (identity, marker, fingerprint) =
                    scan::ready_marker(&d, &cfg.watch.ready).ok()?.ok()?;
                Some((identity, fingerprint, scan::probe_lock(&d, &marker).ok()?))
            });
            verdicts[i] = Some(match look {
                Some((identity, fingerprint, lock)) => {
                    let obs = ReadyObservation {
                        dir: name.clone(),
                        identity,
                        lock,
                        fingerprint,
                    };
                    tracker.observe(&obs, now, policy)
                }
                None => Readiness::Settling {
                    seen: 0,
                    changed: true,
                },
            });
        }
    }
    verdicts
}

/// The command a stable directory would be submitted with, as a block of lines: the back end's own words
/// (the `sbatch` line, or the local argv).
fn would_submit(
    cfg: &Config,
    sched: &dyn Scheduler,
    name: &OsStr,
    path: &std::path::Path,
) -> String {
    let spec = JobSpec {
        dir_path: path.to_path_buf(),
        job_name: job_name(&cfg.job.job_name_prefix, name),
        key: DRY_RUN_KEY.into(),
    };
    format!("{}: stable; {}", show(path), sched.describe(&spec))
}
