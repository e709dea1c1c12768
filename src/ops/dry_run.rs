//! `run --dry-run`: one scan as the daemon would do it — which directories are new, whether their
//! ready-files become stable — and the exact command each would be submitted with. Nothing is submitted,
//! no lock is taken, the ledger is only read (and never created).
//!
//! Must never: run `sbatch` or a job, write the ledger, or hold a lock a writer would notice for longer
//! than a probe.

use std::ffi::{OsStr, OsString};
use std::time::Instant;

use super::{command_line, open_read_only};
use crate::config::{Config, ExecutorKind};
use crate::engine::{
    GenerationVerdict, Readiness, ReadyObservation, StabilityPolicy, StabilityTracker,
    generation_verdict, job_name,
};
use crate::fsx::{Root, RootLinks};
use crate::ledger::Ledger;
use crate::logging::show;
use crate::scan;
use crate::scheduler::{JobSpec, local_argv, output_file, shell_quote, slurm};
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
    for (name, verdict) in candidates.iter().zip(verdicts) {
        let path = root.join(name);
        match verdict {
            Some(Readiness::Stable) => out.push(would_submit(cfg, name, &path)),
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

/// The command a stable directory would be submitted with, as a block of lines.
fn would_submit(cfg: &Config, name: &std::ffi::OsStr, path: &std::path::Path) -> String {
    let job_name = job_name(&cfg.job.job_name_prefix, name);
    let spec = JobSpec {
        dir_path: path.to_path_buf(),
        job_name: job_name.clone(),
        key: DRY_RUN_KEY.into(),
    };
    let q = |s: &std::ffi::OsStr| shell_quote(s).to_string_lossy().into_owned();
    let mut env = vec![format!("WATCH_DIR={}", q(path.as_os_str()))];
    env.extend(
        cfg.job
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", q(std::ffi::OsStr::new(v)))),
    );
    match cfg.job.executor {
        ExecutorKind::Slurm => {
            let inv = slurm::sbatch_invocation(&cfg.job, &cfg.watch.root, &spec);
            let output = output_file(&cfg.job, &cfg.watch.root, path, "%j", &job_name)
                .map_or_else(|| "sbatch's working directory".into(), |p| show(&p));
            // Shell-quoted words keep a newline or an ESC of a name raw: escaped here as in the logs, so
            // the second line stays one line and the terminal is not driven by a name.
            let esc = crate::logging::field_str;
            format!(
                "{}: stable; would run (job {}, output {output}):\n  env {} {}",
                show(path),
                esc(&job_name),
                esc(&env.join(" ")),
                esc(&command_line(&inv))
            )
        }
        ExecutorKind::Local => {
            // The argument vector itself, one JSON string per argument: no shell reads it. JSON leaves
            // DEL and the C1 controls raw: `\u00NN` keeps each a JSON string a terminal shows as text.
            let argv: Vec<String> = local_argv(&cfg.job.command, path.as_os_str())
                .iter()
                .map(|a| {
                    let json = serde_json::to_string(&a.to_string_lossy()).unwrap_or_default();
                    crate::out::json_safe(&json).into_owned()
                })
                .collect();
            let cwd = if cfg.job.chdir_to_subdir {
                show(path)
            } else {
                show(&cfg.watch.root)
            };
            format!(
                "{}: stable; would run locally (job {}, in {cwd}):\n  env {}\n  argv [{}]",
                show(path),
                crate::logging::field_str(&job_name),
                crate::logging::field_str(&env.join(" ")),
                argv.join(", ")
            )
        }
    }
}
