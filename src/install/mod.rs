//! `dirwatcher install` / `uninstall`: put the service on a machine the way the Python original's
//! `install_service.py` did (same flags, same config layout), as a dedicated system user in a hardened
//! systemd unit; plus the least-privilege rule for `run` and the generated man pages and completions.
//!
//! Owns: the install plan (what goes where, with which mode and owner), its comparison with what is on disk
//! (so a second run changes nothing and says so), and the commands around it (useradd, systemctl). Must
//! never: overwrite an existing config without `--force`, create the watch root, touch the system
//! (users, owners, systemd) with `--destdir`, or change anything with `--dry-run`.

pub mod generate;
pub mod render;
pub mod system;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{InstallArgs, UninstallArgs};
use render::{ConfigStyle, ConfigValues, Layout, UNIT_NAME, UnitOrigin, UnitSpec};
use system::Account;

/// `run` as root: the refusal message, unless `--allow-root` was given.
pub fn root_refusal(allow_root: bool) -> Option<String> {
    (system::is_root() && !allow_root).then(|| {
        "error: refusing to run as root: every job would be submitted as root, and dirwatcher deletes \
         directories\n  fix: run it as the service user (`dirwatcher install` creates `dirwatcher`), e.g. \
         `runuser -u dirwatcher -- dirwatcher run --config FILE`; or pass --allow-root if you really mean it"
            .to_string()
    })
}

/// The warning `demo` prints as root (it only runs local jobs in its own folder).
pub fn root_warning() -> Option<&'static str> {
    system::is_root().then_some(
        "warning: running as root; the demo's jobs run as root too. `dirwatcher run` refuses this without \
         --allow-root: a real service runs as its own user (see `dirwatcher install --help`)",
    )
}

/// A refusal before anything changed: wrong flags or a missing watch root (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{problem}\n  fix: {fix}")]
pub struct UsageError {
    /// What is wrong.
    pub problem: String,
    /// What to do instead.
    pub fix: String,
}

fn usage(problem: impl Into<String>, fix: impl Into<String>) -> anyhow::Error {
    UsageError {
        problem: problem.into(),
        fix: fix.into(),
    }
    .into()
}

/// Prints the error and maps it to an exit status: 2 for a [`UsageError`], 1 for anything else.
fn finish(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<UsageError>() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": "));
            ExitCode::from(1)
        }
    }
}

/// `dirwatcher install`, with output on stdout.
pub fn run_install(args: &InstallArgs) -> ExitCode {
    finish(install(args, &mut std::io::stdout().lock()))
}

/// `dirwatcher uninstall`, with output on stdout.
pub fn run_uninstall(args: &UninstallArgs) -> ExitCode {
    finish(uninstall(args, &mut std::io::stdout().lock()))
}

/// Directories that must never become the service user's (a state or log file placed directly in them).
const SHARED_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/local",
    "/usr/local/bin",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/tmp",
];

/// Who owns an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Root,
    Service,
}

/// What to do with an existing directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirPolicy {
    /// Create it when missing; an existing one is left as it is (it may be shared, like /opt).
    Ensure,
    /// Create it, and keep its mode and owner as planned (the service's own state and log directories).
    Own,
}

/// What to do with an existing file whose content differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilePolicy {
    /// Ours: replace it (binary, sample job, unit).
    Replace,
    /// The operator's: only with `--force` (the config).
    KeepUnlessForced,
}

#[derive(Debug)]
enum What {
    Dir(DirPolicy),
    File {
        content: Vec<u8>,
        policy: FilePolicy,
    },
}

/// One thing the installer puts on the machine.
#[derive(Debug)]
struct Entry {
    /// Path on the target system (without the destdir).
    path: PathBuf,
    what: What,
    mode: u32,
    owner: Owner,
}

/// How an entry compares with the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Create,
    Update { diff: String },
    FixModeOwner,
    Unchanged,
    Keep { diff: String },
}

/// Prefixes `p` with the destdir, if any.
fn staged(destdir: Option<&Path>, p: &Path) -> PathBuf {
    match destdir {
        Some(d) => d.join(p.strip_prefix("/").unwrap_or(p)),
        None => p.to_path_buf(),
    }
}

/// Owner ids to enforce for each kind of owner (`None`: leave as created).
struct Owners {
    root: Option<(u32, u32)>,
    service: Option<(u32, u32)>,
    service_label: String,
}

impl Owners {
    fn ids(&self, o: Owner) -> Option<(u32, u32)> {
        match o {
            Owner::Root => self.root,
            Owner::Service => self.service,
        }
    }

    fn label(&self, o: Owner) -> &str {
        match o {
            Owner::Root => "root:root",
            Owner::Service => &self.service_label,
        }
    }
}

fn assess(e: &Entry, at: &Path, owners: &Owners, force: bool) -> anyhow::Result<Change> {
    let Some((mode, uid, gid)) = system::mode_owner(at) else {
        return Ok(Change::Create);
    };
    let owner_ok = owners.ids(e.owner).is_none_or(|ids| ids == (uid, gid));
    let meta_ok = mode == e.mode && owner_ok;
    match &e.what {
        What::Dir(policy) => {
            if !at.is_dir() {
                anyhow::bail!("`{}` exists but is not a directory", at.display());
            }
            Ok(if *policy == DirPolicy::Ensure || meta_ok {
                Change::Unchanged
            } else {
                Change::FixModeOwner
            })
        }
        What::File { content, policy } => {
            let old =
                std::fs::read(at).with_context(|| format!("cannot read `{}`", at.display()))?;
            if &old == content {
                return Ok(if meta_ok {
                    Change::Unchanged
                } else {
                    Change::FixModeOwner
                });
            }
            let diff = match policy {
                FilePolicy::KeepUnlessForced => render::diff(
                    &String::from_utf8_lossy(&old),
                    &String::from_utf8_lossy(content),
                    &format!("{} (installed)", at.display()),
                    &format!("{} (from these flags)", at.display()),
                ),
                FilePolicy::Replace => String::new(),
            };
            Ok(match policy {
                FilePolicy::KeepUnlessForced if !force => Change::Keep { diff },
                _ => Change::Update { diff },
            })
        }
    }
}

fn apply(e: &Entry, at: &Path, change: &Change, owners: &Owners) -> anyhow::Result<()> {
    let ids = owners.ids(e.owner);
    match (change, &e.what) {
        (Change::Unchanged | Change::Keep { .. }, _) => Ok(()),
        (Change::FixModeOwner, _) => system::set_mode_owner(at, e.mode, ids),
        (Change::Create, What::Dir(_)) => {
            std::fs::create_dir_all(at)
                .with_context(|| format!("cannot create the directory `{}`", at.display()))?;
            system::set_mode_owner(at, e.mode, ids)
        }
        (Change::Create | Change::Update { .. }, What::File { content, .. }) => {
            system::write_file(at, content, e.mode, ids)
        }
        (Change::Update { .. }, What::Dir(_)) => unreachable!("directories have no content"),
    }
}

/// An argument vector as a shell would need it typed (for messages only; never run through a shell).
fn shown(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}

fn check_user_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(usage(
            format!("--user `{name}` is not a valid user name"),
            "use letters, digits, `.`, `_` and `-`, e.g. --user dirwatcher",
        ))
    }
}

fn check_own_dir(flag: &str, file: &Path, dir: &Path) -> anyhow::Result<()> {
    if !file.is_absolute() {
        return Err(usage(
            format!("{flag} `{}` is not an absolute path", file.display()),
            format!("write the full path, e.g. {flag} /var/lib/dirwatcher/state.db"),
        ));
    }
    if SHARED_DIRS.iter().any(|s| Path::new(s) == dir) {
        return Err(usage(
            format!(
                "{flag} `{}` would hand the shared directory `{}` to the service user",
                file.display(),
                dir.display()
            ),
            format!(
                "put it in a directory of its own, e.g. {flag} {}",
                dir.join("dirwatcher")
                    .join(file.file_name().unwrap_or_default())
                    .display()
            ),
        ));
    }
    Ok(())
}

/// Installs (or, with `--destdir`, stages) dirwatcher; writes what it does to `out`.
pub fn install(a: &InstallArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let destdir = a.destdir.as_deref();
    let act = if a.dry_run { "would " } else { "" };
    let verb = |now: &str, past: &str| {
        if a.dry_run {
            format!("would {now}")
        } else {
            past.to_string()
        }
    };
    check_user_name(&a.user)?;
    for (flag, p) in [
        ("--install-root", &a.install_root),
        ("--config-path", &a.config_path),
    ] {
        if !p.is_absolute() {
            return Err(usage(
                format!("{flag} `{}` is not an absolute path", p.display()),
                "write the full path",
            ));
        }
    }
    let layout = Layout::installer(
        &a.install_root,
        &a.config_path,
        &a.state_file,
        &a.failure_log,
    );
    check_own_dir("--state-file", &a.state_file, &layout.state_dir())?;
    check_own_dir("--failure-log", &a.failure_log, &layout.log_dir())?;

    // The same rule as the config: the root must exist and is never created.
    let watch_root = std::path::absolute(&a.watch_root).unwrap_or_else(|_| a.watch_root.clone());
    match std::fs::metadata(&watch_root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(usage(
                format!("--watch-root `{}` is not a directory", watch_root.display()),
                "point --watch-root at the directory that receives the data",
            ));
        }
        Err(e) => {
            return Err(usage(
                format!(
                    "--watch-root `{}` cannot be used: {e}",
                    watch_root.display()
                ),
                "check that the file system is mounted and the path is right; dirwatcher never creates the root",
            ));
        }
    }
    let values = ConfigValues {
        watch_root: watch_root.clone(),
        signal_file: a.signal_file.clone(),
        wrap_cmd: a
            .wrap_cmd
            .clone()
            .unwrap_or_else(|| layout.default_wrap_cmd()),
        partition: a.partition.clone(),
        account: a.account.clone(),
        gres: a.gres.clone(),
        time_limit: a.time.clone(),
        delete_on_success: a.delete_on_success,
        state_file: a.state_file.clone(),
        failure_log: a.failure_log.clone(),
    };
    let config_text = render::render_config(&values, ConfigStyle::Installed);
    // The written config must load: a bad --time or --signal-file is refused here, not at service start.
    if let Err(e) = crate::config::Config::parse(&config_text, &a.config_path) {
        return Err(usage(
            format!("these flags give an invalid config: {}", e.problem),
            format!("{} (config key `{}`)", e.fix, e.key),
        ));
    }

    // The service user.
    let mut account = system::lookup_user(&a.user)?;
    let useradd = [
        "useradd",
        "--system",
        "--user-group",
        "--home-dir",
        &layout.state_dir().to_string_lossy(),
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "dirwatcher service",
        &a.user,
    ]
    .map(String::from);
    if account.is_none() {
        if destdir.is_some() {
            writeln!(
                out,
                "note: user `{}` does not exist; with --destdir it is not created and files keep their owner",
                a.user
            )?;
        } else if a.dry_run || !system::is_root() {
            writeln!(out, "{act}run: {}", shown(&useradd))?;
            if !a.dry_run {
                return Err(usage(
                    format!(
                        "the user `{}` does not exist and only root can create it",
                        a.user
                    ),
                    "run the installer as root (sudo), or --destdir DIR to stage the files",
                ));
            }
        } else {
            let argv: Vec<&str> = useradd.iter().map(String::as_str).collect();
            system::run_admin(&argv)?;
            writeln!(
                out,
                "created   system user `{}` ({})",
                a.user,
                useradd.join(" ")
            )?;
            account = system::lookup_user(&a.user)?;
            if account.is_none() {
                anyhow::bail!(
                    "`useradd` succeeded but the user `{}` cannot be found",
                    a.user
                );
            }
        }
    }
    let root = system::is_root();
    let owners = Owners {
        root: root.then_some((0, 0)),
        service: account.as_ref().filter(|_| root).map(|u| (u.uid, u.gid)),
        service_label: match (&account, root) {
            (Some(u), true) => format!("{}:{}", u.name, u.group),
            (Some(u), false) => format!("owner left as is: only root can give it to `{}`", u.name),
            (None, _) if a.dry_run && destdir.is_none() => format!("{0}:{0}", a.user),
            (None, _) => format!("owner left as is: no user `{}`", a.user),
        },
    };
    let group = account
        .as_ref()
        .map(|u: &Account| u.group.clone())
        .unwrap_or_else(|| a.user.clone());
    let unit = render::render_unit(&UnitSpec {
        layout: layout.clone(),
        user: a.user.clone(),
        group,
        origin: UnitOrigin::Installer {
            watch_root: watch_root.clone(),
        },
    })
    .map_err(|e| usage(e.to_string(), "choose paths without newlines"))?;
    let exe = std::env::current_exe().context("cannot find this program's own executable")?;
    let binary = std::fs::read(&exe).with_context(|| format!("cannot read `{}`", exe.display()))?;

    let file = |path: &Path, content: Vec<u8>, mode, policy| Entry {
        path: path.to_path_buf(),
        what: What::File { content, policy },
        mode,
        owner: Owner::Root,
    };
    let dir = |path: PathBuf, mode, owner, policy| Entry {
        path,
        what: What::Dir(policy),
        mode,
        owner,
    };
    let config_dir = a
        .config_path
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let entries = vec![
        dir(
            a.install_root.clone(),
            0o755,
            Owner::Root,
            DirPolicy::Ensure,
        ),
        file(&layout.binary, binary, 0o755, FilePolicy::Replace),
        file(
            &layout.sample_job,
            render::SAMPLE_JOB.as_bytes().to_vec(),
            0o755,
            FilePolicy::Replace,
        ),
        dir(config_dir, 0o755, Owner::Root, DirPolicy::Ensure),
        file(
            &layout.config,
            config_text.into_bytes(),
            0o644,
            FilePolicy::KeepUnlessForced,
        ),
        dir(layout.state_dir(), 0o750, Owner::Service, DirPolicy::Own),
        dir(layout.log_dir(), 0o750, Owner::Service, DirPolicy::Own),
        file(&layout.unit, unit.into_bytes(), 0o644, FilePolicy::Replace),
    ];

    let mut changed = Vec::new();
    let mut kept_config = false;
    for e in &entries {
        let at = staged(destdir, &e.path);
        let change = assess(e, &at, &owners, a.force)?;
        let meta = format!("{:04o} {}", e.mode, owners.label(e.owner));
        match &change {
            Change::Create => writeln!(
                out,
                "{} {} ({meta})",
                verb("create", "created"),
                at.display()
            )?,
            Change::Update { diff } => {
                writeln!(
                    out,
                    "{} {} ({meta})",
                    verb("update", "updated"),
                    at.display()
                )?;
                out.write_all(diff.as_bytes())?;
            }
            Change::FixModeOwner => writeln!(
                out,
                "{} {} ({meta})",
                verb("fix mode/owner of", "fixed mode/owner of"),
                at.display()
            )?,
            Change::Unchanged => writeln!(out, "unchanged {}", at.display())?,
            Change::Keep { diff } => {
                kept_config = true;
                writeln!(
                    out,
                    "kept {}: it differs from what these flags give (diff below); --force replaces it",
                    at.display()
                )?;
                out.write_all(diff.as_bytes())?;
            }
        }
        if !a.dry_run {
            apply(e, &at, &change, &owners)?;
        }
        if !matches!(change, Change::Unchanged | Change::Keep { .. }) {
            changed.push(e.path.clone());
        }
    }
    // Tidy leftovers of an interrupted earlier run: nothing to do, fsx::write_atomic cleans its own.

    if changed.is_empty() {
        writeln!(
            out,
            "dirwatcher is installed{}: everything unchanged",
            if kept_config {
                " (config kept as it is)"
            } else {
                ""
            }
        )?;
    } else {
        writeln!(
            out,
            "{}{} of {} items",
            if a.dry_run {
                "would change "
            } else {
                "changed "
            },
            changed.len(),
            entries.len()
        )?;
    }

    // systemd.
    let start = ["systemctl", "enable", "--now", UNIT_NAME];
    let restart = ["systemctl", "try-restart", UNIT_NAME];
    let reload = ["systemctl", "daemon-reload"];
    if destdir.is_some() {
        writeln!(
            out,
            "staged under {}: no user created, systemd not touched",
            destdir.unwrap_or(Path::new("")).display()
        )?;
    } else if system::systemd_running() {
        let mut cmds: Vec<&[&str]> = Vec::new();
        if changed.contains(&layout.unit) {
            cmds.push(&reload);
        }
        if !changed.is_empty() {
            // A running service picks up a new binary, unit or config only on restart.
            cmds.push(&restart);
        }
        cmds.push(&start);
        for c in cmds {
            if a.dry_run {
                writeln!(out, "would run: {}", c.join(" "))?;
            } else {
                system::run_admin(c)?;
                writeln!(out, "ran: {}", c.join(" "))?;
            }
        }
        writeln!(
            out,
            "status: systemctl status dirwatcher; logs: journalctl -u dirwatcher -f"
        )?;
    } else {
        writeln!(
            out,
            "systemd is not running on this machine (/run/systemd/system is missing), so the service was not \
             started. On a systemd host run:\n  systemctl daemon-reload && systemctl enable --now {UNIT_NAME}\n\
             Without systemd, start it as the service user (under your process supervisor):\n  \
             runuser -u {} -- {} run --config {}",
            a.user,
            layout.binary.display(),
            a.config_path.display()
        )?;
    }
    if let Some(acct) = &a.account {
        writeln!(
            out,
            "jobs are submitted as `{user}`: it must be a Slurm user of account `{acct}` \
             (sacctmgr add user {user} account={acct}) and exist on the compute nodes",
            user = a.user
        )?;
    }
    Ok(())
}

/// Removes what `install` put on the machine; config, ledger and logs only with `--purge`.
pub fn uninstall(a: &UninstallArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let destdir = a.destdir.as_deref();
    let config_at = staged(destdir, &a.config_path);
    let (state_file, failure_log) = match crate::config::Config::load(&config_at) {
        Ok(c) => (c.behavior.state_file, c.behavior.failure_log),
        Err(_) => (a.state_file.clone(), a.failure_log.clone()),
    };
    let layout = Layout::installer(&a.install_root, &a.config_path, &state_file, &failure_log);
    let unit_at = staged(destdir, &layout.unit);
    let systemd = destdir.is_none() && system::systemd_running();
    if systemd && unit_at.exists() {
        let c = ["systemctl", "disable", "--now", UNIT_NAME];
        if a.dry_run {
            writeln!(out, "would run: {}", c.join(" "))?;
        } else {
            system::run_admin(&c)?;
            writeln!(out, "ran: {}", c.join(" "))?;
        }
    }

    enum Removal {
        File,
        Tree,
        EmptyDir,
    }
    let mut items = vec![
        (layout.unit.clone(), Removal::File),
        (layout.binary.clone(), Removal::File),
        (layout.sample_job.clone(), Removal::File),
        (a.install_root.clone(), Removal::EmptyDir),
    ];
    if a.purge {
        let with_suffix = |s: &str| {
            let mut n = state_file.clone().into_os_string();
            n.push(s);
            PathBuf::from(n)
        };
        items.extend([
            (layout.config.clone(), Removal::File),
            (
                a.config_path.parent().unwrap_or(Path::new("/")).into(),
                Removal::EmptyDir,
            ),
            (state_file.clone(), Removal::File),
            (with_suffix("-wal"), Removal::File),
            (with_suffix("-shm"), Removal::File),
            (with_suffix(".lock"), Removal::File),
            (
                crate::scheduler::local::jobs_dir_for(&state_file),
                Removal::Tree,
            ),
            (layout.state_dir(), Removal::EmptyDir),
            (failure_log.clone(), Removal::File),
            (layout.log_dir(), Removal::EmptyDir),
        ]);
    }
    for (path, how) in items {
        let at = staged(destdir, &path);
        if std::fs::symlink_metadata(&at).is_err() {
            continue;
        }
        if let Removal::EmptyDir = how
            && std::fs::read_dir(&at)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            writeln!(out, "kept {}: not empty", at.display())?;
            continue;
        }
        writeln!(
            out,
            "{} {}",
            if a.dry_run { "would remove" } else { "removed" },
            at.display()
        )?;
        if a.dry_run {
            continue;
        }
        match how {
            Removal::File => std::fs::remove_file(&at),
            Removal::Tree => std::fs::remove_dir_all(&at),
            Removal::EmptyDir => std::fs::remove_dir(&at),
        }
        .with_context(|| format!("cannot remove `{}`", at.display()))?;
    }
    if !a.purge {
        writeln!(
            out,
            "kept the config {}, the ledger {} and the failure log {} (--purge removes them)",
            config_at.display(),
            staged(destdir, &state_file).display(),
            staged(destdir, &failure_log).display()
        )?;
    }
    if systemd {
        let c = ["systemctl", "daemon-reload"];
        if a.dry_run {
            writeln!(out, "would run: {}", c.join(" "))?;
        } else {
            system::run_admin(&c)?;
            writeln!(out, "ran: {}", c.join(" "))?;
        }
    } else if destdir.is_none() {
        writeln!(
            out,
            "systemd is not running here: stop any `dirwatcher run` you started yourself"
        )?;
    }
    if destdir.is_none() {
        writeln!(
            out,
            "the system user is kept (remove it with `userdel` if nothing else uses it)"
        )?;
    }
    Ok(())
}
