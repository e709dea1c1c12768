//! `dirwatcher install` / `uninstall`: put the service on a machine the way the Python original's
//! `install_service.py` did (same flags, same config layout), as a dedicated system user in a hardened
//! systemd unit; plus the least-privilege rule for `run` and the generated man pages and completions.
//!
//! Owns: the steps of `install` and `uninstall` (check the flags, the service user, the plan, put each
//! entry in place, systemd) and what they say; the plan itself (what goes where, with which mode and
//! owner, and its comparison with the disk, so a second run changes nothing and says so) is in `plan`.
//! Must never: overwrite an existing config without `--force`, create the watch root, touch the system
//! (users, owners, systemd) with `--destdir`, or change anything with `--dry-run`.

pub mod generate;
mod plan;
pub mod render;
mod siblings;
mod usage;

pub use usage::UsageError;
pub mod system;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::{DEFAULT_CONFIG, DEFAULT_FAILURE_LOG, DEFAULT_STATE_FILE, DEFAULT_USER};
use crate::cli::{InstallArgs, UninstallArgs};
use crate::config::InstanceName;
use plan::{Change, Entry, Owners, apply, assess, staged};
use render::{ConfigStyle, ConfigValues, Layout, UNIT_NAME, UnitOrigin, UnitShape, UnitSpec};
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

/// `--instance NAME` whose config `config` does not exist: that no such instance is installed, which ones
/// are (the services of the configs beside it, as `install` finds them), and how to install it.
pub fn missing_instance(name: &str, config: &std::path::Path) -> String {
    let dir = config.parent().unwrap_or(std::path::Path::new("/"));
    let names: Vec<String> = siblings::installed(None, &[dir.to_path_buf()])
        .into_iter()
        .filter_map(|s| s.instance.map(|n| n.to_string()))
        .collect();
    let known = if names.is_empty() {
        "no instance is installed".to_string()
    } else {
        format!("installed: {}", names.join(", "))
    };
    format!(
        "no instance `{name}`: `{}` does not exist ({known})\n  fix: name an installed one, or install \
         this one with `dirwatcher install --instance {name} --watch-root DIR …`",
        config.display()
    )
}

/// The warning `demo` prints as root (it only runs local jobs in its own folder).
pub fn root_warning() -> Option<&'static str> {
    system::is_root().then_some(
        "warning: running as root; the demo's jobs run as root too. `dirwatcher run` refuses this without \
         --allow-root: a real service runs as its own user (see `dirwatcher install --help`)",
    )
}

fn usage(problem: impl Into<String>, fix: impl Into<String>) -> anyhow::Error {
    UsageError {
        problem: problem.into(),
        fix: fix.into(),
    }
    .into()
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

/// The same rule as the config: the root must exist and is never created. Returns it absolute. A staged
/// install (`--destdir`) is for another machine: the root is checked there, when the service starts.
fn check_watch_root(watch_root: &Path, staged: bool) -> anyhow::Result<PathBuf> {
    let watch_root = std::path::absolute(watch_root).unwrap_or_else(|_| watch_root.to_path_buf());
    match std::fs::metadata(&watch_root) {
        Err(_) if staged => Ok(watch_root),
        Ok(m) if m.is_dir() => Ok(watch_root),
        Ok(_) => Err(usage(
            format!("--watch-root `{}` is not a directory", watch_root.display()),
            "point --watch-root at the directory that receives the data",
        )),
        Err(e) => Err(usage(
            format!(
                "--watch-root `{}` cannot be used: {e}",
                watch_root.display()
            ),
            format!(
                "mount the file system that holds it, or create it (`mkdir -p {0}` and give the service user \
                 write access, e.g. `chown dirwatcher {0}`), then run install again; dirwatcher never creates \
                 the root. To stage files for another machine, add --destdir DIR",
                watch_root.display()
            ),
        )),
    }
}

/// The original's flags that mean nothing here, and `--smtp-pass`/`--smtp-setup`: said, not failed.
fn note_legacy_flags(a: &InstallArgs, config: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let l = &a.legacy;
    if l.python_bin.is_some() {
        writeln!(
            out,
            "warning: --python-bin is ignored: dirwatcher is one binary, no Python interpreter runs it"
        )?;
    }
    if [&l.db_name, &l.db_user, &l.db_pass, &l.db_host, &l.db_port]
        .iter()
        .any(|f| f.is_some())
    {
        writeln!(
            out,
            "note: --db-* write the `db:` section: every submission and end is written to the web \
             application's `jobs` table, as the original did{}",
            if db_pass_given(a) {
                format!(
                    "; --db-pass is written into its own file, {}, mode 0600, owned by the service user, and \
                     the config names it (`db.pass_file`), never into the config itself",
                    db_pass_file(config).display()
                )
            } else {
                String::new()
            }
        )?;
    }
    if a.mail.smtp_pass.is_some() {
        writeln!(
            out,
            "note: --smtp-pass is written into its own file, {}, mode 0600, owned by the service user, and \
             the config names it (`behavior.smtp_pass_file`), never into the config itself; the unit hands it \
             to the service as its credential `smtp_pass` (`LoadCredential=`), which the service prefers; a \
             password on a command line is seen by every user while install runs: next time write that \
             file yourself",
            smtp_pass_file(config).display()
        )?;
    }
    if a.mail.smtp_setup {
        writeln!(
            out,
            "note: --smtp-setup: dirwatcher sends e-mail itself, through `sendmail -t` when one is installed, \
             else SMTP (`behavior.smtp_*`, written from the --smtp-* flags); msmtp is not installed"
        )?;
    }
    Ok(())
}

/// A password flag's file beside the config and its content; nothing without the flag or with an empty one
/// (as `smtp_pass_given`, `db_pass_given`).
fn password_file(flag: Option<&str>, path: PathBuf) -> Option<(PathBuf, Vec<u8>)> {
    flag.filter(|p| !p.is_empty())
        .map(|p| (path, format!("{p}\n").into_bytes()))
}

/// `--db-pass` with a password (an empty one writes nothing).
fn db_pass_given(a: &InstallArgs) -> bool {
    a.legacy.db_pass.as_deref().is_some_and(|p| !p.is_empty())
}

/// Where `--db-pass` is written: beside the config, named after it (`config.db.pass`).
fn db_pass_file(config: &Path) -> PathBuf {
    config.with_extension("db.pass")
}

/// The `db:` section the original's --db-* flags give (none without them), as its installer writes it.
fn db_lines(a: &InstallArgs, pass_file: &Path) -> String {
    use crate::config::keys;
    let l = &a.legacy;
    if [&l.db_name, &l.db_user, &l.db_pass, &l.db_host, &l.db_port]
        .iter()
        .all(|f| f.is_none())
    {
        return String::new();
    }
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut y = String::from("\ndb:\n");
    let mut put = |k: &keys::Key, v: String| y += &format!("  {}: {v}\n", k.leaf());
    if let Some(h) = &l.db_host {
        put(&keys::DB_HOST, q(h));
    }
    if let Some(p) = &l.db_port {
        // As text when it is not a number: the config check then names the key.
        put(
            &keys::DB_PORT,
            p.trim()
                .parse::<u16>()
                .map_or_else(|_| q(p), |n| n.to_string()),
        );
    }
    if let Some(n) = &l.db_name {
        put(&keys::DB_NAME, q(n));
    }
    if let Some(u) = &l.db_user {
        put(&keys::DB_USER, q(u));
    }
    if db_pass_given(a) {
        put(&keys::DB_PASS_FILE, q(&pass_file.to_string_lossy()));
    }
    y
}

/// `--smtp-pass` with a password (an empty one writes nothing).
fn smtp_pass_given(a: &InstallArgs) -> bool {
    a.mail.smtp_pass.as_deref().is_some_and(|p| !p.is_empty())
}

/// Where `--smtp-pass` is written: beside the config, named after it (`config.smtp.pass`,
/// `NAME.smtp.pass`).
fn smtp_pass_file(config: &Path) -> PathBuf {
    config.with_extension("smtp.pass")
}

/// The `behavior:` lines the original's e-mail flags give (none without them); `pass_file`: where
/// `--smtp-pass` is written.
fn mail_lines(m: &crate::cli::MailArgs, pass_file: &Path) -> String {
    use crate::config::keys;
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut y = String::new();
    let mut put = |k: &keys::Key, v: String| y += &format!("  {}: {v}\n", k.leaf());
    if let Some(f) = &m.from_email {
        put(&keys::BEHAVIOR_FROM_EMAIL, q(f));
    }
    if let Some(h) = &m.smtp_host {
        put(&keys::BEHAVIOR_SMTP_HOST, q(h));
    }
    if let Some(p) = m.smtp_port {
        put(&keys::BEHAVIOR_SMTP_PORT, p.to_string());
    }
    if let Some(u) = &m.smtp_user {
        put(&keys::BEHAVIOR_SMTP_USER, q(u));
    }
    if m.smtp_pass.as_deref().is_some_and(|p| !p.is_empty()) {
        put(
            &keys::BEHAVIOR_SMTP_PASS_FILE,
            q(&pass_file.to_string_lossy()),
        );
    }
    if m.no_smtp_use_tls && !m.smtp_use_tls {
        put(&keys::BEHAVIOR_SMTP_USE_TLS, "false".into());
    }
    y
}

/// Which service `install`/`uninstall` is about and where its own files are: the flags, else the plain
/// service's defaults or, with `--instance NAME`, the instance's.
struct Target {
    /// `--instance`; `None` for the plain service.
    instance: Option<InstanceName>,
    config: PathBuf,
    state_file: PathBuf,
    failure_log: PathBuf,
}

impl Target {
    fn of(
        instance: Option<&str>,
        config: Option<&Path>,
        state_file: Option<&Path>,
        failure_log: Option<&Path>,
    ) -> anyhow::Result<Target> {
        let instance = instance
            .map(|n| {
                InstanceName::parse(n).map_err(|problem| {
                    usage(
                        format!("--instance: {problem}"),
                        "name it after its instrument or root, e.g. --instance microscope1 (the unit is then \
                         dirwatcher@microscope1, the config /etc/dirwatcher/microscope1.yaml)",
                    )
                })
            })
            .transpose()?;
        let pick = |given: Option<&Path>, plain: &str, own: fn(&InstanceName) -> PathBuf| {
            given
                .map(Path::to_path_buf)
                .unwrap_or_else(|| match &instance {
                    Some(n) => own(n),
                    None => PathBuf::from(plain),
                })
        };
        Ok(Target {
            config: pick(config, DEFAULT_CONFIG, render::instance_config),
            state_file: pick(state_file, DEFAULT_STATE_FILE, render::instance_state_file),
            failure_log: pick(
                failure_log,
                DEFAULT_FAILURE_LOG,
                render::instance_failure_log,
            ),
            instance,
        })
    }

    fn layout(&self, install_root: &Path) -> Layout {
        match &self.instance {
            Some(n) => Layout::instance(install_root, n, &self.state_file, &self.failure_log),
            None => Layout::installer(
                install_root,
                &self.config,
                &self.state_file,
                &self.failure_log,
            ),
        }
    }

    /// `dirwatcher.service` or `dirwatcher@NAME.service`.
    fn unit_name(&self) -> String {
        match &self.instance {
            Some(n) => render::instance_unit_name(n),
            None => UNIT_NAME.to_string(),
        }
    }
}

/// Whether this run changes the machine or only says what it would do (`--dry-run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    Apply,
    DryRun,
}

impl Pass {
    fn of(dry_run: bool) -> Pass {
        if dry_run { Pass::DryRun } else { Pass::Apply }
    }

    /// `would <now>` on a dry run, else `<past>`.
    fn says(self, now: &str, past: &str) -> String {
        match self {
            Pass::DryRun => format!("would {now}"),
            Pass::Apply => past.to_string(),
        }
    }

    /// Runs an administrative command and says so; on a dry run only says it would.
    fn run(self, argv: &[&str], out: &mut dyn Write) -> anyhow::Result<()> {
        if self == Pass::Apply {
            system::run_admin(argv)?;
        }
        writeln!(out, "{}: {}", self.says("run", "ran"), argv.join(" "))?;
        Ok(())
    }
}

/// What the install flags give once checked; nothing on the machine has changed yet.
struct Checked {
    target: Target,
    layout: Layout,
    /// The watch root, absolute.
    watch_root: PathBuf,
    /// The config file to write; it loads.
    config_text: String,
}

/// Installs (or, with `--destdir`, stages) dirwatcher; writes what it does to `out`.
///
/// The steps, in this order: check the flags (a refusal changes nothing), make sure the service user
/// exists, build the plan, put each entry in place (saying what changes), then start the service.
pub fn install(a: &InstallArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let checked = check_install_args(a)?;
    note_legacy_flags(a, &checked.layout.config, out)?;
    let account = ensure_user(a, &checked.layout, out)?;
    let owners = owners(a, account.as_ref());
    let entries = plan_install(a, &checked, account.as_ref())?;
    let changed = place(a, &entries, &owners, out)?;
    start_service(a, &checked, &changed, out)?;
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

/// Every refusal that needs nothing but the flags and a look at the watch root.
fn check_install_args(a: &InstallArgs) -> anyhow::Result<Checked> {
    check_user_name(&a.user)?;
    let target = Target::of(
        a.instance.as_deref(),
        a.config_path.as_deref(),
        a.state_file.as_deref(),
        a.failure_log.as_deref(),
    )?;
    for (flag, p) in [
        ("--install-root", &a.install_root),
        ("--config-path", &target.config),
    ] {
        if !p.is_absolute() {
            return Err(usage(
                format!("{flag} `{}` is not an absolute path", p.display()),
                "write the full path",
            ));
        }
    }
    let layout = target.layout(&a.install_root);
    check_own_dir("--state-file", &layout.state_file, &layout.state_dir())?;
    check_own_dir("--failure-log", &layout.failure_log, &layout.log_dir())?;
    let watch_root = check_watch_root(&a.watch_root, a.destdir.is_some())?;
    let checked = Checked {
        config_text: config_text(a, &layout, &target, &watch_root)?,
        target,
        layout,
        watch_root,
    };
    check_neighbours(a, &checked)?;
    Ok(checked)
}

/// Refusals that look at what is installed already (under the destdir): the plain service repointed
/// at another root, a root, ledger, log or metrics output two services would share, and an instance
/// whose binary is not the one the shared template starts.
fn check_neighbours(a: &InstallArgs, c: &Checked) -> anyhow::Result<()> {
    let destdir = a.destdir.as_deref();
    let me = siblings::Service::parse(&c.layout.config, &c.config_text)
        .context("the config these flags give does not load")?;
    // The plain service's config directory and this one's (the same, unless --config-path moved it).
    let dirs: Vec<PathBuf> = [Path::new(DEFAULT_CONFIG), c.layout.config.as_path()]
        .iter()
        .map(|p| p.parent().unwrap_or(Path::new("/")).to_path_buf())
        .collect();
    let installed = siblings::installed(destdir, &dirs);
    let unit = siblings::plain_unit(destdir);
    siblings::check_same_root(&me, &installed, unit.as_ref(), a.force)?;
    siblings::check_shares_nothing(&me, &installed)?;
    if c.target.instance.is_some() {
        let template = render::render_unit(&unit_spec(a, c, DEFAULT_USER.into()))
            .map_err(|e| usage(e.to_string(), "choose paths without newlines"))?;
        siblings::check_template(&staged(destdir, &c.layout.unit), &template)?;
    }
    Ok(())
}

/// The config these flags give. It must load: a bad --time or --signal-file is refused here, not at
/// service start.
fn config_text(
    a: &InstallArgs,
    layout: &Layout,
    target: &Target,
    watch_root: &Path,
) -> anyhow::Result<String> {
    let values = ConfigValues {
        watch_root: watch_root.to_path_buf(),
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
        state_file: layout.state_file.clone(),
        failure_log: layout.failure_log.clone(),
        instance: target.instance.clone(),
        metrics_listen: a.metrics_listen.clone(),
        metrics_textfile: a.metrics_textfile.clone(),
    };
    let mut text = render::render_config(&values, ConfigStyle::Installed);
    let mail = mail_lines(&a.mail, &smtp_pass_file(&layout.config));
    if !mail.is_empty() {
        // Right after the original's last `behavior:` key, where its installer writes them.
        let at = text
            .find("\n  failure_log:")
            .and_then(|i| text[i + 1..].find('\n').map(|j| i + 1 + j + 1))
            .unwrap_or(text.len());
        text.insert_str(at, &mail);
    }
    text += &db_lines(a, &db_pass_file(&layout.config));
    let root_check = match a.destdir {
        Some(_) => crate::config::RootCheck::Staged,
        None => crate::config::RootCheck::MustExist,
    };
    // The password file is written with the rest: not there yet.
    let secrets = crate::config::Secrets::IfReadable;
    if let Err(e) =
        crate::config::Config::parse_with_secrets(&text, &layout.config, root_check, secrets)
    {
        return Err(usage(
            format!("these flags give an invalid config: {}", e.problem),
            format!("{} (config key `{}`)", e.fix, e.key),
        ));
    }
    Ok(text)
}

/// The service user: looked up, and created with `useradd --system` when missing (as root, and neither
/// staging nor on a dry run). `None` when it does not exist (and was not created).
fn ensure_user(
    a: &InstallArgs,
    layout: &Layout,
    out: &mut dyn Write,
) -> anyhow::Result<Option<Account>> {
    let account = system::lookup_user(&a.user)?;
    if account.is_some() {
        return Ok(account);
    }
    if a.destdir.is_some() {
        writeln!(
            out,
            "note: user `{}` does not exist; with --destdir it is not created and files keep their owner",
            a.user
        )?;
        return Ok(None);
    }
    let useradd = useradd_argv(&a.user, layout);
    let pass = Pass::of(a.dry_run);
    if pass == Pass::DryRun || !system::is_root() {
        writeln!(out, "{}: {}", pass.says("run", "run"), shown(&useradd))?;
        return match pass {
            Pass::DryRun => Ok(None),
            Pass::Apply => Err(usage(
                format!(
                    "the user `{}` does not exist and only root can create it",
                    a.user
                ),
                "run the installer as root (sudo), or --destdir DIR to stage the files",
            )),
        };
    }
    let argv: Vec<&str> = useradd.iter().map(String::as_str).collect();
    system::run_admin(&argv)?;
    writeln!(
        out,
        "created   system user `{}` ({})",
        a.user,
        useradd.join(" ")
    )?;
    match system::lookup_user(&a.user)? {
        Some(account) => Ok(Some(account)),
        None => anyhow::bail!(
            "`useradd` succeeded but the user `{}` cannot be found",
            a.user
        ),
    }
}

/// `useradd` for the service user: a system user and group, its home the state directory (an
/// instance's parent, which every instance shares; not created by useradd), no login shell.
fn useradd_argv(user: &str, layout: &Layout) -> [String; 11] {
    let state_dir = layout.state_dir();
    let home = match layout.drop_in {
        Some(_) => state_dir.parent().unwrap_or(&state_dir),
        None => &state_dir,
    };
    [
        "useradd",
        "--system",
        "--user-group",
        "--home-dir",
        &home.to_string_lossy(),
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "dirwatcher service",
        user,
    ]
    .map(String::from)
}

/// The owners to enforce: only root can give a file away, so as another user they are left as created.
fn owners(a: &InstallArgs, account: Option<&Account>) -> Owners {
    let root = system::is_root();
    Owners {
        root: root.then_some((0, 0)),
        service: account.filter(|_| root).map(|u| (u.uid, u.gid)),
        service_label: match (account, root) {
            (Some(u), true) => format!("{}:{}", u.name, u.group),
            (Some(u), false) => format!("owner left as is: only root can give it to `{}`", u.name),
            (None, _) if a.dry_run && a.destdir.is_none() => format!("{0}:{0}", a.user),
            (None, _) => format!("owner left as is: no user `{}`", a.user),
        },
    }
}

/// The unit these flags give: the plain service's for its root, or the template every instance shares
/// (its user and root are the instance's drop-in's, so the template is the same for all).
fn unit_spec(a: &InstallArgs, c: &Checked, group: String) -> UnitSpec {
    let (user, group, shape) = match c.target.instance {
        Some(_) => (
            DEFAULT_USER.into(),
            DEFAULT_USER.into(),
            UnitShape::Template,
        ),
        None => (
            a.user.clone(),
            group,
            UnitShape::Single {
                watch_root: Some(c.watch_root.clone()),
                smtp_pass: smtp_pass_given(a).then(|| smtp_pass_file(&c.layout.config)),
            },
        ),
    };
    UnitSpec {
        layout: c.layout.clone(),
        user,
        group,
        origin: UnitOrigin::Installer,
        shape,
    }
}

/// The plan: renders the unit (and an instance's drop-in) and reads this program's own executable, the
/// binary to install.
fn plan_install(
    a: &InstallArgs,
    c: &Checked,
    account: Option<&Account>,
) -> anyhow::Result<Vec<Entry>> {
    let group = account
        .map(|u| u.group.clone())
        .unwrap_or_else(|| a.user.clone());
    let bad_path = |e: render::UnitPathError| usage(e.to_string(), "choose paths without newlines");
    let unit = render::render_unit(&unit_spec(a, c, group.clone())).map_err(bad_path)?;
    let drop_in = match &c.target.instance {
        Some(name) => Some(
            render::render_drop_in(&render::DropInSpec {
                instance: name.clone(),
                layout: c.layout.clone(),
                user: a.user.clone(),
                group,
                watch_root: c.watch_root.clone(),
                smtp_pass: smtp_pass_given(a).then(|| smtp_pass_file(&c.layout.config)),
            })
            .map_err(bad_path)?,
        ),
        None => None,
    };
    let exe = std::env::current_exe().context("cannot find this program's own executable")?;
    let binary = std::fs::read(&exe).with_context(|| format!("cannot read `{}`", exe.display()))?;
    let smtp_pass = password_file(
        a.mail.smtp_pass.as_deref(),
        smtp_pass_file(&c.layout.config),
    );
    let db_pass = password_file(a.legacy.db_pass.as_deref(), db_pass_file(&c.layout.config));
    let contents = plan::Contents {
        smtp_pass,
        db_pass,
        binary,
        config: c.config_text.clone(),
        unit,
        drop_in,
    };
    Ok(plan::entries(&c.layout, &a.install_root, contents))
}

/// Puts the entries in place one after the other: compares each with the disk, says what changes, and
/// changes it (not on a dry run). Ends with a summary line; returns the paths that changed.
fn place(
    a: &InstallArgs,
    entries: &[Entry],
    owners: &Owners,
    out: &mut dyn Write,
) -> anyhow::Result<Vec<PathBuf>> {
    let pass = Pass::of(a.dry_run);
    let mut changed = Vec::new();
    let mut kept_config = false;
    for e in entries {
        let at = staged(a.destdir.as_deref(), &e.path);
        let change = assess(e, &at, owners, a.force)?;
        let meta = format!("{:04o} {}", e.mode, owners.label(e.owner));
        say_change(out, pass, &change, &at, &meta)?;
        if pass == Pass::Apply {
            apply(e, &at, &change, owners)?;
        }
        match change {
            Change::Unchanged => {}
            Change::Keep { .. } => kept_config = true,
            _ => changed.push(e.path.clone()),
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
            "{} {} of {} items",
            pass.says("change", "changed"),
            changed.len(),
            entries.len()
        )?;
    }
    Ok(changed)
}

/// One line (and a diff, when there is one) for an entry's change.
fn say_change(
    out: &mut dyn Write,
    pass: Pass,
    change: &Change,
    at: &Path,
    meta: &str,
) -> std::io::Result<()> {
    let at = at.display();
    match change {
        Change::Create => writeln!(out, "{} {at} ({meta})", pass.says("create", "created")),
        Change::Update { diff } => {
            writeln!(out, "{} {at} ({meta})", pass.says("update", "updated"))?;
            out.write_all(diff.as_bytes())
        }
        Change::FixModeOwner => writeln!(
            out,
            "{} {at} ({meta})",
            pass.says("fix mode/owner of", "fixed mode/owner of")
        ),
        Change::Unchanged => writeln!(out, "unchanged {at}"),
        Change::Keep { diff } => {
            writeln!(
                out,
                "kept {at}: it differs from what these flags give (diff below); --force replaces it"
            )?;
            out.write_all(diff.as_bytes())
        }
    }
}

/// Enables and starts the service under systemd (reloading a changed unit and restarting a running
/// service that changed); says what to run when staging or without systemd.
fn start_service(
    a: &InstallArgs,
    c: &Checked,
    changed: &[PathBuf],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (layout, unit) = (&c.layout, c.target.unit_name());
    if let Some(destdir) = &a.destdir {
        writeln!(
            out,
            "staged under {}: no user created, systemd not touched",
            destdir.display()
        )?;
        return Ok(());
    }
    if !system::systemd_running() {
        writeln!(
            out,
            "systemd is not running on this machine (/run/systemd/system is missing), so the service was not \
             started. On a systemd host run:\n  systemctl daemon-reload && systemctl enable --now {unit}\n\
             Without systemd, start it as the service user (under your process supervisor):\n  \
             runuser -u {} -- {} run --config {}",
            a.user,
            layout.binary.display(),
            layout.config.display()
        )?;
        return Ok(());
    }
    let pass = Pass::of(a.dry_run);
    if changed.contains(&layout.unit)
        || layout.drop_in.as_ref().is_some_and(|d| changed.contains(d))
    {
        pass.run(&["systemctl", "daemon-reload"], out)?;
    }
    if !changed.is_empty() {
        // A running service picks up a new binary, unit or config only on restart.
        pass.run(&["systemctl", "try-restart", &unit], out)?;
    }
    pass.run(&["systemctl", "enable", "--now", &unit], out)?;
    let short = unit.trim_end_matches(".service");
    writeln!(
        out,
        "status: systemctl status {short}; logs: journalctl -u {short} -f"
    )?;
    Ok(())
}

/// How `uninstall` removes a path.
enum Removal {
    File,
    Tree,
    EmptyDir,
}

/// Removes what `install` put on the machine; config, ledger and logs only with `--purge`. With
/// `--instance NAME` only that instance; the binary, the sample job and the template unit stay while
/// another service installed here uses them.
pub fn uninstall(a: &UninstallArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let pass = Pass::of(a.dry_run);
    let destdir = a.destdir.as_deref();
    let mut target = Target::of(
        a.instance.as_deref(),
        a.config_path.as_deref(),
        a.state_file.as_deref(),
        a.failure_log.as_deref(),
    )?;
    let config_at = staged(destdir, &target.config);
    if let Ok(c) = crate::config::Config::load(&config_at) {
        (target.state_file, target.failure_log) = (c.behavior.state_file, c.behavior.failure_log);
    }
    let layout = target.layout(&a.install_root);
    let systemd = destdir.is_none() && system::systemd_running();
    let own_unit = layout.drop_in.as_ref().unwrap_or(&layout.unit);
    if systemd && staged(destdir, own_unit).exists() {
        pass.run(&["systemctl", "disable", "--now", &target.unit_name()], out)?;
    }
    let others = other_units(destdir, target.instance.as_ref());
    for (path, how) in removals(a, &layout, &others, out)? {
        remove(pass, &staged(destdir, &path), how, out)?;
    }
    if !a.purge {
        writeln!(
            out,
            "kept the config {}, the ledger {} and the failure log {} (--purge removes them)",
            config_at.display(),
            staged(destdir, &target.state_file).display(),
            staged(destdir, &target.failure_log).display()
        )?;
    }
    if systemd {
        pass.run(&["systemctl", "daemon-reload"], out)?;
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

/// The services installed here besides `me` (`None`: the plain one), as their unit files say: the
/// plain unit, and every instance's drop-in.
struct OtherUnits {
    /// The plain `dirwatcher.service` is installed (and `me` is an instance).
    plain: bool,
    /// Other instances' units, `dirwatcher@NAME.service`.
    instances: Vec<String>,
}

fn other_units(destdir: Option<&Path>, me: Option<&InstanceName>) -> OtherUnits {
    let units_dir = Path::new(render::INSTALLER_TEMPLATE_UNIT)
        .parent()
        .unwrap_or(Path::new("/"));
    let mine = me.map(render::instance_unit_name);
    let mut instances: Vec<String> = std::fs::read_dir(staged(destdir, units_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let unit = name.strip_suffix(".d")?.to_string();
            let ours = unit.starts_with("dirwatcher@") && e.path().join("instance.conf").is_file();
            (ours && Some(&unit) != mine.as_ref()).then_some(unit)
        })
        .collect();
    instances.sort();
    OtherUnits {
        plain: me.is_some() && staged(destdir, Path::new(render::INSTALLER_UNIT)).exists(),
        instances,
    }
}

/// What `uninstall` removes, in order (files before their directories): the service's own unit (an
/// instance's drop-in), the shared files unless another service uses them, and with `--purge` the config,
/// the ledger (with SQLite's and the local executor's companions) and the failure log.
fn removals(
    a: &UninstallArgs,
    layout: &Layout,
    others: &OtherUnits,
    out: &mut dyn Write,
) -> anyhow::Result<Vec<(PathBuf, Removal)>> {
    let mut items = match &layout.drop_in {
        Some(d) => vec![
            (d.clone(), Removal::File),
            (
                d.parent().unwrap_or(Path::new("/")).into(),
                Removal::EmptyDir,
            ),
        ],
        None => vec![(layout.unit.clone(), Removal::File)],
    };
    let users: Vec<&str> = others
        .instances
        .iter()
        .map(String::as_str)
        .chain(others.plain.then_some(UNIT_NAME))
        .collect();
    if others.instances.is_empty() {
        items.push((render::INSTALLER_TEMPLATE_UNIT.into(), Removal::File));
    }
    if users.is_empty() {
        items.extend([
            (layout.binary.clone(), Removal::File),
            (layout.sample_job.clone(), Removal::File),
            (a.install_root.clone(), Removal::EmptyDir),
        ]);
    } else {
        writeln!(
            out,
            "kept {} and {}: in use by {}",
            layout.binary.display(),
            layout.sample_job.display(),
            users.join(", ")
        )?;
    }
    if a.purge {
        items.extend(purged(layout));
    }
    Ok(items)
}

/// What `--purge` removes besides: the config, the ledger and everything beside it (one list,
/// [`crate::state_paths::StatePaths::all`], so nothing the daemon leaves there is forgotten), the failure log, and their
/// directories when empty.
fn purged(layout: &Layout) -> Vec<(PathBuf, Removal)> {
    let mut items = vec![
        (layout.config.clone(), Removal::File),
        (smtp_pass_file(&layout.config), Removal::File),
        (db_pass_file(&layout.config), Removal::File),
        (
            layout.config.parent().unwrap_or(Path::new("/")).into(),
            Removal::EmptyDir,
        ),
    ];
    let beside = crate::state_paths::StatePaths::of(&layout.state_file);
    items.extend(beside.all().map(|(p, kind)| {
        let how = match kind {
            crate::state_paths::Kind::File => Removal::File,
            crate::state_paths::Kind::Tree => Removal::Tree,
        };
        (p.to_path_buf(), how)
    }));
    items.extend([
        (layout.state_dir(), Removal::EmptyDir),
        (layout.failure_log.clone(), Removal::File),
        (layout.log_dir(), Removal::EmptyDir),
    ]);
    items
}

/// Removes `at` (its staged path) if it is there and, for a directory to remove when empty, is empty.
/// Nothing is removed through a symbolic link: not below a linked directory (a state or log directory
/// that points elsewhere holds someone else's files), nor a link where the installer made a directory.
fn remove(pass: Pass, at: &Path, how: Removal, out: &mut dyn Write) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(at) else {
        return Ok(());
    };
    if let Some(link) = at
        .ancestors()
        .skip(1)
        .find(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()))
    {
        writeln!(
            out,
            "kept {}: reached through the symbolic link {} (remove it yourself if it is dirwatcher's)",
            at.display(),
            link.display()
        )?;
        return Ok(());
    }
    if meta.file_type().is_symlink() && !matches!(how, Removal::File) {
        writeln!(
            out,
            "kept {}: a symbolic link where dirwatcher made a directory (remove it yourself)",
            at.display()
        )?;
        return Ok(());
    }
    if let Removal::EmptyDir = how
        && std::fs::read_dir(at)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        writeln!(out, "kept {}: not empty", at.display())?;
        return Ok(());
    }
    writeln!(out, "{} {}", pass.says("remove", "removed"), at.display())?;
    if pass == Pass::DryRun {
        return Ok(());
    }
    match how {
        Removal::File => std::fs::remove_file(at),
        Removal::Tree => std::fs::remove_dir_all(at),
        Removal::EmptyDir => std::fs::remove_dir(at),
    }
    .with_context(|| format!("cannot remove `{}`", at.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_instance_is_told_with_the_instances_the_configs_beside_it_name() {
        let t = tempfile::tempdir().unwrap();
        let cfg = |instance: &str| {
            format!(
                "watch:\n  root: {}\njob:\n  wrap_cmd: \"true\"\nbehavior:\n  instance: {instance}\n",
                t.path().display()
            )
        };
        std::fs::write(t.path().join("cryo.yaml"), cfg("cryo")).unwrap();
        std::fs::write(t.path().join("tomo.yaml"), cfg("tomo")).unwrap();
        // Not services: a config without an instance (the plain one) and a file that does not load.
        std::fs::write(t.path().join("config.yaml"), cfg("\"\"")).unwrap();
        std::fs::write(t.path().join("notes.yaml"), "- not a config\n").unwrap();
        let m = super::missing_instance("nope", &t.path().join("nope.yaml"));
        assert!(m.contains("no instance `nope`"), "{m}");
        assert!(m.contains("(installed: cryo, tomo)"), "{m}");
        assert!(m.contains("dirwatcher install --instance nope"), "{m}");
        let empty = tempfile::tempdir().unwrap();
        let m = super::missing_instance("nope", &empty.path().join("nope.yaml"));
        assert!(m.contains("(no instance is installed)"), "{m}");
    }
}
