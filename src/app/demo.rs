//! `dirwatcher demo`: the watcher with the local executor in a folder of its own, a banner that says what
//! to try, and a sample directory dropped in a moment after the start.
//!
//! Owns: the banner and the side task that drops the sample. Must never: touch anything outside the demo's
//! folder, or need Slurm.

use std::path::Path;
use std::time::Duration;

use crate::{logging, ops, out};

use super::error::AppError;
use super::{load, serve};

/// `dirwatcher demo --dir DIR`.
pub fn demo(dir: &Path) -> Result<(), AppError> {
    if let Some(w) = crate::install::root_warning() {
        out::error(w);
    }
    let path = ops::prepare_demo(dir)?;
    let cfg = load::load_path(&path)?;
    out::error(banner(&cfg.watch.root, &path));
    let root = cfg.watch.root.clone();
    serve::run_daemon(
        cfg,
        false,
        false,
        &[],
        Some(Box::new(move || drop_sample(&root))),
    )
}

/// What the demo is and what to try, on stderr before its log lines.
fn banner(root: &Path, cfg_path: &Path) -> String {
    format!(
        "\ndirwatcher demo — local executor, no Slurm needed\n  root:    {root}\n  config:  {cfg_path}\n  \
         A sample directory is dropped into the root in a moment; watch it get picked up below.\n  \
         Add your own:  mkdir {root}/mine && echo data > {root}/mine/x && touch {root}/mine/_READY\n  \
         Then:          {exe} status --config {cfg_path}\n  Stop with Ctrl-C.\n",
        root = root.display(),
        cfg_path = cfg_path.display(),
        exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "dirwatcher".into())
    )
}

/// The side task: a second after the start (so its pick-up shows below the banner), a sample directory.
fn drop_sample(root: &Path) {
    std::thread::sleep(Duration::from_secs(1));
    match ops::drop_demo_sample(root) {
        Ok(d) => tracing::info!("demo: dropped sample directory {}", logging::show(&d)),
        Err(e) => tracing::warn!("demo: cannot create a sample directory: {e}"),
    }
}
