//! The `watch:` section: the root, the ready-file and its stability.
//!
//! Owns: the raw section, its validation (the root's safety included), the validated [`WatchConfig`], and
//! the section's lines of the effective config. Must never: create or change the root; it is only looked at.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::keys::{self, defaults};
use super::value::MIN_POLL_SEC;
use super::yaml::{self, EffectiveYaml};
use super::{ConfigError, RootCheck, S, Validator};
use crate::engine::{Preset, ReadyRules};

/// One item of `watch.ready_any_of`: a marker, or a list of markers that must all be there.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum AnyOfItem {
    One(String),
    All(Vec<String>),
}

/// `watch:` section, validated.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Absolute path of the watched root; it existed and was a directory when the config was loaded.
    pub root: PathBuf,
    /// Name of the ready-file inside each subdirectory (one path component).
    pub signal_filename: OsString,
    /// Time between scans of the root when nothing is being checked for stability.
    pub poll_interval: Duration,
    /// How many consecutive identical observations make a ready-file stable (at least 1).
    pub stability_checks: u32,
    /// Minimum time between two stability observations of the same ready-file.
    pub stability_interval: Duration,
    /// The root may be a symlink, or world-writable without the sticky bit.
    pub allow_unsafe_root: bool,
    /// A finished directory's ready-file is looked at again within this period (zero: every scan).
    pub recheck: Duration,
    /// The readiness rules (the simple form: `signal_filename` alone), presets expanded.
    pub ready: ReadyRules,
    /// The preset the rules came from, if any (said by `check-config`).
    pub preset: Option<Preset>,
    /// The longest wait between two looks at a directory that is not ready.
    pub unready_backoff_max: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    pub(super) root: S<String>,
    pub(super) signal_filename: S<String>,
    pub(super) poll_interval_sec: S<f64>,
    pub(super) stability_checks: S<i64>,
    pub(super) stability_interval_sec: S<f64>,
    pub(super) allow_unsafe_root: Option<bool>,
    pub(super) recheck_sec: S<f64>,
    pub(super) ready_preset: S<String>,
    pub(super) ready_all_of: S<Vec<String>>,
    pub(super) ready_any_of: S<Vec<AnyOfItem>>,
    pub(super) ready_content_file: S<String>,
    pub(super) ready_content_match: S<String>,
    pub(super) ignore_patterns: S<Vec<String>>,
    pub(super) quiet_sec: S<f64>,
    pub(super) quiet_scope: S<String>,
    pub(super) quiet_max_entries: S<i64>,
    pub(super) stale_temporary_sec: S<f64>,
    pub(super) stale_temporaries_block: Option<bool>,
    pub(super) unready_backoff_max_sec: S<f64>,
}

impl Validator<'_> {
    pub(super) fn watch(&self, raw: Option<RawWatch>) -> Result<WatchConfig, ConfigError> {
        let Some(w) = raw else {
            return Err(self.err(
                "watch",
                None,
                "the `watch:` section is missing",
                "add `watch:` with at least `root: /path/to/incoming`",
            ));
        };
        let Some(root_s) = &w.root else {
            return Err(self.err(
                keys::WATCH_ROOT.name,
                None,
                "is required",
                "add `root: /path/to/incoming` under `watch:`",
            ));
        };
        let root = self.absolute(&keys::WATCH_ROOT, &w.root, "/data/incoming")?;
        let line = Some(root_s.referenced.line());
        let allow_unsafe_root = w.allow_unsafe_root.unwrap_or(defaults::ALLOW_UNSAFE_ROOT);
        self.root_is_safe(&root, line, allow_unsafe_root)?;
        let signal = w
            .signal_filename
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_else(|| defaults::SIGNAL_FILENAME.into());
        if signal.is_empty()
            || signal.contains('/')
            || signal == "."
            || signal == ".."
            || signal.contains('\0')
        {
            return Err(self.err(
                keys::WATCH_SIGNAL_FILENAME.name,
                w.signal_filename.as_ref().map(|s| s.referenced.line()),
                format!("must be a plain file name, found {signal:?}"),
                "write a name without `/`, e.g. `signal_filename: _READY`",
            ));
        }
        let (ready, preset) = self.ready(&w, &signal)?;
        Ok(WatchConfig {
            root,
            signal_filename: signal.into(),
            poll_interval: self.seconds(
                &keys::WATCH_POLL_INTERVAL_SEC,
                &w.poll_interval_sec,
                MIN_POLL_SEC,
            )?,
            stability_checks: self.count(&keys::WATCH_STABILITY_CHECKS, &w.stability_checks, 1)?,
            stability_interval: self.seconds(
                &keys::WATCH_STABILITY_INTERVAL_SEC,
                &w.stability_interval_sec,
                0.0,
            )?,
            allow_unsafe_root,
            recheck: self.seconds(&keys::WATCH_RECHECK_SEC, &w.recheck_sec, 0.0)?,
            ready,
            preset,
            unready_backoff_max: self.seconds(
                &keys::WATCH_UNREADY_BACKOFF_MAX_SEC,
                &w.unready_backoff_max_sec,
                0.0,
            )?,
        })
    }

    /// The root must exist and be a directory (it is never created: a missing root usually means an
    /// unmounted file system). Unless `allow_unsafe` (`watch.allow_unsafe_root`), it must not be a symlink
    /// (whoever can change the link can point the daemon, and its deletions, anywhere), nor writable by
    /// every user without the sticky bit (anyone could then rename or replace anyone's directories).
    pub(super) fn root_is_safe(
        &self,
        root: &Path,
        line: Option<u64>,
        allow_unsafe: bool,
    ) -> Result<(), ConfigError> {
        use std::os::unix::fs::PermissionsExt;
        let key = keys::WATCH_ROOT.name;
        let allow = "or, if you accept the risk, set `allow_unsafe_root: true` under `watch:`";
        let link = std::fs::symlink_metadata(root).map(|m| m.file_type().is_symlink());
        if let Ok(true) = link
            && !allow_unsafe
        {
            let target = std::fs::read_link(root)
                .map(|t| format!(" (to `{}`)", t.display()))
                .unwrap_or_default();
            return Err(self.err(
                key,
                line,
                format!(
                    "`{}` is a symlink{target}, which dirwatcher does not follow",
                    root.display()
                ),
                format!("point `root` at the real directory, {allow}"),
            ));
        }
        match std::fs::metadata(root) {
            Ok(m) if m.is_dir() => {
                let mode = m.permissions().mode();
                if mode & 0o002 != 0 && mode & 0o1000 == 0 && !allow_unsafe {
                    return Err(self.err(
                        key,
                        line,
                        format!(
                            "`{}` is writable by every user (mode {:o}) without the sticky bit: anyone could \
                             rename or replace another user's directories in it",
                            root.display(),
                            mode & 0o7777
                        ),
                        format!(
                            "`chmod +t {}` (or `chmod o-w`), {allow}",
                            root.display()
                        ),
                    ));
                }
                Ok(())
            }
            Ok(_) => Err(self.err(
                key,
                line,
                format!("`{}` is not a directory", root.display()),
                "point `root` at the directory that receives the data",
            )),
            // A staged install (`--destdir`) writes a config for another machine, where the root lives.
            Err(_) if self.root == RootCheck::Staged => Ok(()),
            Err(e) => Err(self.err(
                key,
                line,
                format!("`{}` cannot be used: {e}", root.display()),
                "check that the file system is mounted and the path is right; dirwatcher never creates the root",
            )),
        }
    }
}

impl WatchConfig {
    /// The section's lines of the effective config, the readiness keys expanded.
    pub(super) fn put(&self, y: &mut EffectiveYaml) {
        use keys::*;
        y.put(&WATCH_ROOT, yaml::path(&self.root));
        y.put(
            &WATCH_SIGNAL_FILENAME,
            yaml::text(&self.signal_filename.to_string_lossy()),
        );
        y.put(&WATCH_POLL_INTERVAL_SEC, yaml::secs(self.poll_interval));
        y.put(&WATCH_STABILITY_CHECKS, self.stability_checks.to_string());
        y.put(
            &WATCH_STABILITY_INTERVAL_SEC,
            yaml::secs(self.stability_interval),
        );
        y.put(&WATCH_ALLOW_UNSAFE_ROOT, self.allow_unsafe_root.to_string());
        y.put(&WATCH_RECHECK_SEC, yaml::secs(self.recheck));
        y.put(
            &WATCH_UNREADY_BACKOFF_MAX_SEC,
            yaml::secs(self.unready_backoff_max),
        );
    }
}
