//! `explain DIR`: the whole decision chain for one directory, in words — where it is, what the file system
//! shows this user (link, hidden, readable, the ready-file or its near misses, its identity and lock), what
//! the running daemon last saw (its snapshot), every ledger record, and what happens next.
//!
//! Must never: write anything, take a lock that a writer could notice for longer than a probe, follow a
//! symlink, or run a scheduler command.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::status::{reason_of, word_of};
use super::{current_user, open_read_only, rfc3339};
use crate::config::Config;
use crate::engine::{
    GenState, Generation, GenerationVerdict, LockProbe, NotReady, ReadyIdentity, generation_verdict,
};
use crate::logging::show;
use crate::snapshot::{self, Liveness, Waiting};
use crate::time::{Millis, human, wall_now};

/// One link of the chain: what was checked and what it showed.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Short name of the check (`place`, `hidden`, `type`, `readable`, `ready_file`, `lock`, `daemon`,
    /// `ledger`).
    pub check: &'static str,
    /// True when this link does not stop the directory from being picked up.
    pub ok: bool,
    /// What it found, in words.
    pub says: String,
}

/// The ready-file as this user sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyFile {
    /// Its path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (RFC 3339, with nanoseconds in `mtime_ns`).
    pub mtime: String,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Device and inode.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// `free`, `held` (a writer holds `LOCK_EX`), or why it could not be probed.
    pub lock: String,
}

/// One ledger record of the directory.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Row id.
    pub record: i64,
    /// Attempt number.
    pub attempt: u32,
    /// One of the status words.
    pub state: &'static str,
    /// Job id.
    pub job_id: Option<String>,
    /// Job name.
    pub job_name: String,
    /// Slurm's final state word.
    pub slurm_state: Option<String>,
    /// Exit code.
    pub exit_code: Option<String>,
    /// Where the job's output goes (as Slurm names it), when known.
    pub output: Option<String>,
    /// Last submission or cleanup error.
    pub last_error: Option<String>,
    /// For a queued attempt: when the next `sbatch` may run (RFC 3339).
    pub next_try_at: Option<String>,
    /// When the intent was committed (RFC 3339).
    pub created_at: String,
    /// When it ended (RFC 3339).
    pub finished_at: Option<String>,
    /// The directory was deleted after success.
    pub deleted: bool,
    /// This record was made for the ready-file that is there now.
    pub same_ready_file: Option<bool>,
}

/// The explanation of one directory.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The path asked about (under the root when it is a name).
    pub dir: String,
    /// The user this was checked as (what the daemon sees may differ: it runs as the service user).
    pub checked_as: String,
    /// The chain, in order.
    pub checks: Vec<Check>,
    /// The ready-file, when it is there.
    pub ready_file: Option<ReadyFile>,
    /// Files in the directory that look like a misspelt ready-file.
    pub near_misses: Vec<String>,
    /// What the running daemon last saw of it (from its snapshot), if it watches it.
    pub daemon_sees: Option<Waiting>,
    /// Every ledger record, oldest first.
    pub records: Vec<Record>,
    /// What happens next, in words.
    pub next: String,
}

/// Where an argument points, relative to the root.
enum Place {
    /// A direct child: its name.
    Child(OsString),
    /// Under the root, but deeper.
    Nested(PathBuf),
    /// Not under the root at all.
    Outside(PathBuf),
}

fn place(root: &Path, arg: &Path) -> Place {
    let rel = if arg.is_absolute() {
        match arg.strip_prefix(root) {
            Ok(r) => r.to_path_buf(),
            Err(_) => return Place::Outside(arg.to_path_buf()),
        }
    } else {
        arg.to_path_buf()
    };
    let comps: Vec<Component<'_>> = rel.components().collect();
    match comps.as_slice() {
        [Component::Normal(n)] => Place::Child(n.to_os_string()),
        _ => Place::Nested(root.join(rel)),
    }
}

/// Explains each directory.
pub fn explain(cfg: &Config, dirs: &[PathBuf]) -> anyhow::Result<Vec<Explanation>> {
    // A ledger this user cannot read does not stop the rest of the chain: it is said as one link.
    let (ledger, ledger_error) = match open_read_only(cfg) {
        Ok(l) => (Some(l), None),
        Err(e) if e.to_string().starts_with("no ledger") => (None, None),
        Err(e) => (None, Some(crate::logging::error_chain(e.as_ref()))),
    };
    let paths = crate::state_paths::StatePaths::of(&cfg.behavior.state_file);
    let live = snapshot::liveness(&paths);
    let snap = match snapshot::read(&paths) {
        snapshot::Read::Found(s) if live != Liveness::NotRunning && s.is_fresh(wall_now()) => {
            Some(s)
        }
        _ => None,
    };
    let mut out = Vec::new();
    for d in dirs {
        let ledger = ledger.as_ref().ok_or(ledger_error.as_deref());
        out.push(explain_one(cfg, ledger, &live, snap.as_ref(), d)?);
    }
    Ok(out)
}

fn explain_one(
    cfg: &Config,
    ledger: Result<&crate::ledger::Ledger, Option<&str>>,
    live: &Liveness,
    snap: Option<&snapshot::Snapshot>,
    arg: &Path,
) -> anyhow::Result<Explanation> {
    let root = &cfg.watch.root;
    let now = wall_now();
    let mut e = Explanation::begin(current_user());
    let mut check = |e: &mut Explanation, check, ok, says: String| {
        e.checks.push(Check { check, ok, says });
    };
    let name = match place(root, arg) {
        Place::Child(n) => n,
        Place::Nested(p) | Place::Outside(p) => return Ok(misplaced(e, root, &p)),
    };
    let path = root.join(&name);
    e.dir = path.to_string_lossy().into_owned();
    check(
        &mut e,
        "place",
        true,
        format!("a direct child of the root {}", show(root)),
    );
    let hidden = name.as_encoded_bytes().first() == Some(&b'.');
    if hidden {
        check(
            &mut e,
            "hidden",
            false,
            "its name starts with `.`: hidden names are never watched (rename it without the dot)"
                .into(),
        );
    }
    // The ledger and the daemon's view, whatever the file system says now (it may be deleted after
    // success, or replaced).
    let history = match ledger {
        Ok(l) => l.history(&name)?,
        Err(_) => Vec::new(),
    };
    let name_text = name.to_string_lossy().into_owned();
    e.daemon_sees = snap.and_then(|s| s.waiting.iter().find(|w| w.dir == name_text).cloned());

    let fs = look_at(cfg, &path, &mut e, &mut check);
    let latest = history.last();
    let verdict = fs
        .identity
        .map(|id| generation_verdict(latest.map(|g| (g.state, g.ready)), id));
    for g in &history {
        e.records.push(record(cfg, g, fs.identity, now));
    }
    let ledger_says = ledger_says(ledger, &history);
    check(
        &mut e,
        "ledger",
        !matches!(ledger, Err(Some(_))),
        ledger_says,
    );
    let daemon_says = daemon_says(live, snap, e.daemon_sees.as_ref());
    let running = matches!(live, Liveness::Running);
    check(&mut e, "daemon", running, daemon_says);

    e.next = next_step(
        cfg,
        hidden,
        &fs,
        latest,
        verdict,
        e.daemon_sees.as_ref(),
        snap,
        running,
        now,
    );
    Ok(e)
}

impl Explanation {
    /// Nothing checked yet, as `checked_as`.
    fn begin(checked_as: String) -> Explanation {
        Explanation {
            dir: String::new(),
            checked_as,
            checks: Vec::new(),
            ready_file: None,
            near_misses: Vec::new(),
            daemon_sees: None,
            records: Vec::new(),
            next: String::new(),
        }
    }
}

/// The whole explanation of `p`, which is not a direct child of `root`.
fn misplaced(mut e: Explanation, root: &Path, p: &Path) -> Explanation {
    e.dir = p.to_string_lossy().into_owned();
    let says = format!(
        "{} is not a direct subdirectory of the root {}: dirwatcher looks only at the root's direct \
         children",
        show(p),
        show(root)
    );
    e.checks.push(Check {
        check: "place",
        ok: false,
        says,
    });
    e.next = "never picked up where it is: move it directly under the root".into();
    e
}

/// The `ledger` link: the directory's records, or why there are none to show.
fn ledger_says(
    ledger: Result<&crate::ledger::Ledger, Option<&str>>,
    history: &[Generation],
) -> String {
    match (ledger, history.last()) {
        (Err(Some(why)), _) => why.to_string(),
        (Err(None), _) => "no ledger yet: no daemon has run with this config".to_string(),
        (Ok(_), None) => "not in the ledger: no job was ever submitted for it".into(),
        (Ok(_), Some(g)) => format!(
            "{} record(s); the latest: attempt {}, {}{}",
            history.len(),
            g.attempt,
            word_of(g.state),
            g.job_id
                .as_deref()
                .map(|j| format!(", job {j}"))
                .unwrap_or_default()
        ),
    }
}

/// The `daemon` link: whether a daemon runs, and what it last saw of the directory.
fn daemon_says(
    live: &Liveness,
    snap: Option<&snapshot::Snapshot>,
    sees: Option<&Waiting>,
) -> String {
    match live {
        Liveness::Running if snap.is_some() => match sees {
            Some(w) => format!("the running daemon watches it: {} ({})", w.state, w.reason),
            None => "the running daemon is not watching it for stability right now".into(),
        },
        Liveness::Running => "a daemon holds the lock, but its snapshot is stale or missing".into(),
        Liveness::NotRunning => "no daemon is running on this ledger".into(),
        Liveness::Unknown(why) => format!("cannot tell whether a daemon runs: {why}"),
    }
}

/// What the file system showed this user.
#[derive(Default)]
struct FsView {
    /// A real directory (not a link, not a file).
    is_dir: bool,
    /// Why not, when it is not one (in words).
    blocker: Option<String>,
    /// The ready-file's identity, when it is a regular file this user can see.
    identity: Option<ReadyIdentity>,
    /// Its lock, when probed.
    lock: Option<Result<LockProbe, String>>,
}

fn look_at(
    cfg: &Config,
    path: &Path,
    e: &mut Explanation,
    check: &mut impl FnMut(&mut Explanation, &'static str, bool, String),
) -> FsView {
    let mut v = FsView::default();
    if let Err(blocker) = look_at_type(path, e, check) {
        v.blocker = Some(blocker);
        return v;
    }
    v.is_dir = true;
    let entries: Vec<OsString> = match std::fs::read_dir(path) {
        Ok(rd) => rd.filter_map(|x| x.ok()).map(|x| x.file_name()).collect(),
        Err(err) => {
            v.blocker = Some(format!(
                "user `{}` cannot read it: {err}; the daemon's user (the service user) must be able to \
                 read it and its ready-file (`sudo -u dirwatcher dirwatcher explain …` shows what it sees)",
                e.checked_as
            ));
            check(e, "readable", false, v.blocker.clone().unwrap_or_default());
            return v;
        }
    };
    check(
        e,
        "readable",
        true,
        format!("user `{}` can list it", e.checked_as),
    );
    match look_at_rules(cfg, path, e, check) {
        Ok(signal) => look_at_ready_file(cfg, path, &signal, &entries, e, check, &mut v),
        Err(blocker) => v.blocker = Some(blocker),
    }
    v
}

/// The `type` link: a real directory, or (`Err`) why it is not one.
fn look_at_type(
    path: &Path,
    e: &mut Explanation,
    check: &mut impl FnMut(&mut Explanation, &'static str, bool, String),
) -> Result<(), String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let blocker = "it does not exist (deleted, renamed, or not created yet)".to_string();
            check(e, "type", false, blocker.clone());
            return Err(blocker);
        }
        Err(err) => {
            let blocker = format!("cannot look at it: {err}");
            check(e, "type", false, blocker.clone());
            return Err(blocker);
        }
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| show(&t))
            .unwrap_or_else(|_| "?".into());
        let blocker = format!(
            "it is a symlink (to {target}): never followed, since a link may point outside the root; put \
             the real directory under the root"
        );
        check(e, "type", false, blocker.clone());
        return Err(blocker);
    }
    if !meta.is_dir() {
        let blocker = "it is not a directory".to_string();
        check(e, "type", false, blocker.clone());
        return Err(blocker);
    }
    check(
        e,
        "type",
        true,
        format!(
            "a real directory (owner uid {}, mode {:04o})",
            meta.uid(),
            meta.permissions().mode() & 0o7777
        ),
    );
    Ok(())
}

/// The `ready_rules` link, when the config has more than a ready-file name: the marker the directory is
/// tracked by, or (`Err`) why it is not ready. With the simple rule, the ready-file's name.
fn look_at_rules(
    cfg: &Config,
    path: &Path,
    e: &mut Explanation,
    check: &mut impl FnMut(&mut Explanation, &'static str, bool, String),
) -> Result<OsString, String> {
    let simple = crate::engine::ReadyRules::simple(&cfg.watch.signal_filename.to_string_lossy());
    let rules = &cfg.watch.ready;
    let is_simple = rules.alternatives == simple.alternatives
        && rules.content.is_none()
        && rules.ignore.is_empty()
        && rules.quiet.is_zero();
    if is_simple {
        return Ok(cfg.watch.signal_filename.clone());
    }
    match rules_say(cfg, path) {
        Ok(Ok(marker)) => {
            check(
                e,
                "ready_rules",
                true,
                format!(
                    "the readiness rules ({}) are met; `{}` is the marker it is tracked by",
                    rules.describe(),
                    marker.to_string_lossy()
                ),
            );
            Ok(marker)
        }
        Ok(Err(why)) => {
            let words = hold_words(cfg, &why, wall_now());
            check(
                e,
                "ready_rules",
                false,
                format!("{words} (rules: {})", rules.describe()),
            );
            Err(words)
        }
        Err(err) => {
            let words = format!("the readiness rules cannot be checked: {err}");
            check(e, "ready_rules", false, words.clone());
            Err(words)
        }
    }
}

/// A hold in words for `explain`: which rule and file, since when (the file's mtime, as the daemon would
/// see it), and what would release it.
fn hold_words(cfg: &Config, why: &NotReady, now: Millis) -> String {
    let since = |ns: &Option<i64>| match ns {
        Some(ns) => {
            let at = ns / 1_000_000;
            format!(" since {} ({} ago)", rfc3339(at), human((now - at).max(0)))
        }
        None => String::new(),
    };
    match why {
        NotReady::Markers {
            missing,
            have,
            since_ns,
        } => {
            let shown: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
            let mut s = format!("waiting for {}", shown.join(", "));
            if !have.is_empty() {
                let had: Vec<String> = have.iter().map(|m| format!("`{m}`")).collect();
                s += &format!(" ({} there{})", had.join(", "), since(since_ns));
            }
            s += &format!(
                "; released once {} {} there as a regular file (then the usual stability checks)",
                shown.join(" and "),
                if shown.len() == 1 { "is" } else { "are" }
            );
            if let Some(hint) = cfg.watch.preset.and_then(|p| p.hint(missing)) {
                s += &format!(" ({hint})");
            }
            s
        }
        NotReady::ContentFailed { file, since_ns, .. } => match since_ns {
            Some(_) => format!("{}; `{file}` says so{}", why.words(), since(since_ns)),
            None => why.words(),
        },
        other => other.words(),
    }
}

/// The `ready_file` link (and `lock`, when it is there): the ready-file `signal` in the directory at
/// `path`, or what is there instead.
fn look_at_ready_file(
    cfg: &Config,
    path: &Path,
    signal: &OsStr,
    entries: &[OsString],
    e: &mut Explanation,
    check: &mut impl FnMut(&mut Explanation, &'static str, bool, String),
    v: &mut FsView,
) {
    let ready = path.join(signal);
    let signal_shown = signal.to_string_lossy();
    // A marker below the directory: each folder on the way must be a real one (the daemon's walk never
    // goes through a symlink; neither does this look).
    let mut folder = path.to_path_buf();
    for c in Path::new(signal)
        .parent()
        .into_iter()
        .flat_map(Path::components)
    {
        folder.push(c);
        if !std::fs::symlink_metadata(&folder).is_ok_and(|m| m.is_dir()) {
            check(
                e,
                "ready_file",
                false,
                format!(
                    "`{}` is not a real folder: a marker below it is never looked at",
                    folder.display()
                ),
            );
            return;
        }
    }
    match std::fs::symlink_metadata(&ready) {
        Ok(m) if m.file_type().is_file() => {
            let id = crate::scan::identity_of(&m);
            v.identity = Some(id);
            v.lock = Some(ready_file_there(cfg, &ready, id, &signal_shown, e, check));
        }
        Ok(m) => {
            let kind = if m.file_type().is_symlink() {
                "a symlink"
            } else if m.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            check(
                e,
                "ready_file",
                false,
                format!("`{signal_shown}` is {kind}: only a regular file counts"),
            );
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            e.near_misses = near_misses(signal, entries);
            let hint = if e.near_misses.is_empty() {
                String::new()
            } else {
                format!(
                    "; did you mean it? found {} (the name must be exactly `{signal_shown}`, \
                     `watch.signal_filename`)",
                    e.near_misses
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            check(
                e,
                "ready_file",
                false,
                format!("no `{signal_shown}` in it{hint}"),
            );
        }
        Err(err) => {
            check(
                e,
                "ready_file",
                false,
                format!("cannot look at `{signal_shown}`: {err}"),
            );
        }
    }
}

/// The `ready_file` and `lock` links of a ready-file that is there (a regular file, identity `id`);
/// returns its lock probe.
fn ready_file_there(
    cfg: &Config,
    ready: &Path,
    id: ReadyIdentity,
    signal_shown: &str,
    e: &mut Explanation,
    check: &mut impl FnMut(&mut Explanation, &'static str, bool, String),
) -> Result<LockProbe, String> {
    // Where flock is answered locally, a free lock proves nothing: say so, as the daemon does.
    let lock = if crate::scan::mount_warnings(cfg).1 {
        probe_lock_at(ready).map_err(|err| err.to_string())
    } else {
        Ok(LockProbe::CannotCheck)
    };
    let lock_word = match &lock {
        Ok(LockProbe::Free) => "free".to_string(),
        Ok(LockProbe::Held) => "held".to_string(),
        Ok(LockProbe::CannotCheck) => "cannot check".to_string(),
        Err(err) => format!("cannot be probed: {err}"),
    };
    e.ready_file = Some(ReadyFile {
        path: ready.to_string_lossy().into_owned(),
        size: id.size,
        mtime: rfc3339(id.mtime_ns / 1_000_000),
        mtime_ns: id.mtime_ns,
        dev: id.dev,
        ino: id.ino,
        lock: lock_word,
    });
    check(
        e,
        "ready_file",
        true,
        format!(
            "`{signal_shown}` is there: {} bytes, modified {}, inode {}",
            id.size,
            rfc3339(id.mtime_ns / 1_000_000),
            id.ino
        ),
    );
    let (ok, says) = match &lock {
        Ok(LockProbe::Free) => (true, "no writer holds it locked".to_string()),
        Ok(LockProbe::CannotCheck) => (
            true,
            "cannot check: the root's file system answers flock locally, a writer on another \
             node is invisible (stability alone decides)"
                .to_string(),
        ),
        Ok(LockProbe::Held) => (
            false,
            "a writer holds it locked (flock LOCK_EX): it is submitted once released".into(),
        ),
        Err(err) => (
            false,
            format!("its lock cannot be probed: {err} (the daemon waits the same way)"),
        ),
    };
    check(e, "lock", ok, says);
    lock
}

/// What the readiness rules say of the directory at `path` (a direct child of the root), looked at as the
/// daemon looks: through the root's descriptor.
fn rules_say(cfg: &Config, path: &Path) -> std::io::Result<Result<OsString, NotReady>> {
    use crate::fsx::{Root, RootLinks};
    let links = if cfg.watch.allow_unsafe_root {
        RootLinks::Follow
    } else {
        RootLinks::Refuse
    };
    let root = Root::open(&cfg.watch.root, links)?;
    let name = path.file_name().unwrap_or_default();
    let Some(sub) = crate::scan::open_dir(&root, name)? else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "it is not a real directory under the root",
        ));
    };
    Ok(crate::scan::ready_marker(&sub, &cfg.watch.ready)?.map(|(_, marker, _)| marker))
}

/// Names that look like a misspelt ready-file: the same letters in another case, with or without the
/// leading `_` or `.`, with an extension, with spaces around it, or one or two letters off.
pub fn near_misses(signal: &OsStr, entries: &[OsString]) -> Vec<String> {
    let norm = |s: &str| {
        let s = s.trim().to_lowercase();
        let s = s.trim_start_matches(['_', '.']).to_string();
        match s.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_string(),
            _ => s,
        }
    };
    let want = signal.to_string_lossy();
    let key = norm(&want);
    let mut out: Vec<String> = entries
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| *n != want)
        .filter(|n| {
            let k = norm(n);
            k == key || (key.len() >= 4 && crate::config::lint::edit_distance(&k, &key) <= 1)
        })
        .collect();
    out.sort();
    out
}

fn record(cfg: &Config, g: &Generation, now_id: Option<ReadyIdentity>, now: Millis) -> Record {
    let path = cfg.watch.root.join(&g.dir);
    let output = g.job_id.as_deref().and_then(|id| {
        crate::scheduler::output_file(&cfg.job, &cfg.watch.root, &path, id, g.scheduler_name())
            .map(|p| p.to_string_lossy().into_owned())
    });
    Record {
        record: g.id,
        attempt: g.attempt,
        state: word_of(g.state),
        job_id: g.job_id.clone(),
        job_name: g.scheduler_name().to_string(),
        slurm_state: g.final_state.clone(),
        exit_code: g.exit_code.clone(),
        output,
        last_error: g.last_error.clone(),
        next_try_at: (g.state == GenState::Submitting && g.next_try_at > now)
            .then(|| rfc3339(g.next_try_at)),
        created_at: rfc3339(g.created_at),
        finished_at: g.finished_at.map(rfc3339),
        deleted: g.deleted,
        same_ready_file: now_id.map(|id| id == g.ready),
    }
}

#[allow(clippy::too_many_arguments)]
fn next_step(
    cfg: &Config,
    hidden: bool,
    fs: &FsView,
    latest: Option<&Generation>,
    verdict: Option<GenerationVerdict>,
    sees: Option<&Waiting>,
    snap: Option<&snapshot::Snapshot>,
    running: bool,
    now: Millis,
) -> String {
    let daemon = if running {
        ""
    } else {
        " — but no daemon is running, so nothing happens until one is started"
    };
    if hidden {
        return "never picked up: hidden names are skipped".into();
    }
    if let Some(g) = latest.filter(|g| g.state.is_active()) {
        let job = g.job_id.as_deref().unwrap_or("-");
        let slurm = g.job_id.as_deref().and_then(|id| {
            snap.and_then(|s| s.jobs.iter().find(|j| j.job_id == id))
                .map(|j| j.slurm_state.as_str())
        });
        let how = reason_of(g, slurm, now);
        let task = g.array.as_ref().map_or_else(String::new, |a| {
            format!(
                ", task {} of the job array {} (key {})",
                a.task,
                crate::logging::field_str(&a.name),
                a.key
            )
        });
        return format!(
            "attempt {} (job {job}{task}) is {}: {how}; the daemon follows it to its end{daemon}",
            g.attempt,
            word_of(g.state)
        );
    }
    if let Some(why) = &fs.blocker {
        return match latest {
            Some(g) if g.deleted => {
                "nothing: it was deleted after its job COMPLETED (`behavior.delete_on_success`)"
                    .into()
            }
            _ => format!("not picked up: {why}"),
        };
    }
    let signal = cfg.watch.signal_filename.to_string_lossy();
    let Some(verdict) = verdict else {
        return format!(
            "not picked up until a regular file `{signal}` appears in it (write it last, after the data){daemon}"
        );
    };
    match (verdict, latest) {
        (GenerationVerdict::Done, Some(g)) => format!(
            "nothing: attempt {} (job {}) already ended {} for this very ready-file; it runs again only if \
             the ready-file is replaced (a new one, or `touch` it) or with `dirwatcher retry {}`",
            g.attempt,
            g.job_id.as_deref().unwrap_or("-"),
            g.final_state.as_deref().unwrap_or(word_of(g.state)),
            g.dir.to_string_lossy()
        ),
        _ => {
            let new = if latest.is_some() {
                "its ready-file was replaced since the last job: a new generation; "
            } else {
                ""
            };
            let checks = cfg.watch.stability_checks;
            let wait = match (sees, &fs.lock) {
                (_, Some(Ok(LockProbe::Held))) => {
                    "it waits until the writer releases its lock on the ready-file".to_string()
                }
                (Some(w), _) if w.state == "locked" => {
                    "the daemon saw the ready-file locked; it is submitted once the lock is released".into()
                }
                (Some(w), _) => format!(
                    "the daemon has seen it unchanged {} of {checks} times; it is submitted after {checks} \
                     identical looks {} apart",
                    w.looks,
                    human(crate::time::ms(cfg.watch.stability_interval))
                ),
                (None, _) => format!(
                    "the daemon looks at it on its next scan (every {}) and submits it after {checks} \
                     identical looks {} apart",
                    human(crate::time::ms(cfg.watch.poll_interval)),
                    human(crate::time::ms(cfg.watch.stability_interval))
                ),
            };
            format!("{new}{wait}{daemon}")
        }
    }
}

/// Renders explanations for people.
pub fn render_explanation(e: &Explanation) -> String {
    use crate::logging::field_str as esc;
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "{}  (checked as user `{}`)", esc(&e.dir), e.checked_as);
    for c in &e.checks {
        let _ = writeln!(
            o,
            "  {} {:<10} {}",
            if c.ok { "ok " } else { "NO " },
            c.check,
            esc(&c.says)
        );
    }
    for r in &e.records {
        let _ = writeln!(
            o,
            "  record {} attempt {}: {}{}{}{}{}{}{}",
            r.record,
            r.attempt,
            r.state,
            r.job_id
                .as_deref()
                .map(|j| format!(", job {j} ({})", esc(&r.job_name)))
                .unwrap_or_default(),
            r.slurm_state
                .as_deref()
                .map(|s| format!(", {s} exit {}", r.exit_code.as_deref().unwrap_or("-")))
                .unwrap_or_default(),
            r.output
                .as_deref()
                .map(|p| format!(", output {}", esc(p)))
                .unwrap_or_default(),
            r.last_error
                .as_deref()
                .map(|x| format!(", last error: {}", esc(x)))
                .unwrap_or_default(),
            r.next_try_at
                .as_deref()
                .map(|t| format!(", next try {t}"))
                .unwrap_or_default(),
            match r.same_ready_file {
                Some(false) => ", for an older ready-file",
                _ => "",
            }
        );
    }
    let _ = writeln!(o, "  next: {}", esc(&e.next));
    o
}

/// The daemon's lock probe (a non-blocking shared `flock`, released at once) on a ready-file found by path:
/// `explain` is a read-only look for an operator, not the daemon's descriptor-relative scan.
fn probe_lock_at(ready: &std::path::Path) -> std::io::Result<LockProbe> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(ready)?;
    match f.try_lock_shared() {
        Ok(()) => Ok(LockProbe::Free),
        Err(std::fs::TryLockError::WouldBlock) => Ok(LockProbe::Held),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_of_the_ready_file_are_found() {
        let names: Vec<OsString> = [
            "READY",
            "_ready",
            "_READY.txt",
            "_READY ",
            "_REDY",
            "data.txt",
            "_DONE",
            "ready.sh",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(
            near_misses(OsStr::new("_READY"), &names),
            [
                "READY",
                "_READY ",
                "_READY.txt",
                "_REDY",
                "_ready",
                "ready.sh"
            ]
        );
    }
}
