//! Pure renderers for what the installer and the package put on a machine: the config file, the systemd
//! unit, and a diff between two texts. Owns the layouts (where each file goes) of the two ways to install;
//! config key names and defaults come from `config::keys`.
//!
//! Must never: touch the file system or the clock; the same inputs always give the same bytes, which is
//! what keeps `packaging/dirwatcher.service` and `packaging/config.example.yaml` equal to the code (a test
//! checks).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::cli::{
    DEFAULT_CONFIG, DEFAULT_FAILURE_LOG, DEFAULT_SIGNAL_FILE, DEFAULT_STATE_FILE, DEFAULT_USER,
};
use crate::config::InstanceName;
use crate::config::keys::{self, Key};

/// Where the installer writes the unit.
pub const INSTALLER_UNIT: &str = "/etc/systemd/system/dirwatcher.service";
/// The unit's name.
pub const UNIT_NAME: &str = "dirwatcher.service";
/// The sample job, as shipped (also embedded in the binary).
pub const SAMPLE_JOB: &str = include_str!("../../packaging/process_dir.py");
/// The sample job's file name.
pub const SAMPLE_JOB_NAME: &str = "process_dir.py";

/// Where every installed file lives on the target system (never prefixed with a destdir).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The `dirwatcher` executable the unit starts.
    pub binary: PathBuf,
    /// The sample job `process_dir.py`.
    pub sample_job: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// The systemd unit file.
    pub unit: PathBuf,
    /// `behavior.state_file` (the ledger); its directory belongs to the service user.
    pub state_file: PathBuf,
    /// `behavior.failure_log`; its directory belongs to the service user.
    pub failure_log: PathBuf,
    /// An instance's drop-in for the template unit (`None` for the plain service and the package).
    pub drop_in: Option<PathBuf>,
}

impl Layout {
    /// `dirwatcher install`: binary and sample job under the install root, unit in /etc/systemd/system.
    pub fn installer(
        install_root: &Path,
        config: &Path,
        state_file: &Path,
        failure_log: &Path,
    ) -> Layout {
        Layout {
            binary: install_root.join("dirwatcher"),
            sample_job: install_root.join(SAMPLE_JOB_NAME),
            config: config.to_path_buf(),
            unit: PathBuf::from(INSTALLER_UNIT),
            state_file: state_file.to_path_buf(),
            failure_log: failure_log.to_path_buf(),
            drop_in: None,
        }
    }

    /// `dirwatcher install --instance NAME`: the same, with the instance's config, the template unit
    /// (shared by every instance) and the instance's drop-in.
    pub fn instance(
        install_root: &Path,
        name: &InstanceName,
        state_file: &Path,
        failure_log: &Path,
    ) -> Layout {
        Layout {
            config: instance_config(name),
            unit: PathBuf::from(INSTALLER_TEMPLATE_UNIT),
            drop_in: Some(instance_drop_in(name)),
            ..Layout::installer(
                install_root,
                Path::new(DEFAULT_CONFIG),
                state_file,
                failure_log,
            )
        }
    }

    /// The Debian package: Debian's places for each file.
    pub fn package() -> Layout {
        Layout {
            binary: "/usr/bin/dirwatcher".into(),
            sample_job: "/usr/share/dirwatcher/process_dir.py".into(),
            config: DEFAULT_CONFIG.into(),
            unit: "/lib/systemd/system/dirwatcher.service".into(),
            state_file: DEFAULT_STATE_FILE.into(),
            failure_log: DEFAULT_FAILURE_LOG.into(),
            drop_in: None,
        }
    }

    /// The directory holding the ledger.
    pub fn state_dir(&self) -> PathBuf {
        parent_of(&self.state_file)
    }

    /// The directory holding the failure log.
    pub fn log_dir(&self) -> PathBuf {
        parent_of(&self.failure_log)
    }

    /// The default job: the sample job run by the system's Python.
    pub fn default_wrap_cmd(&self) -> String {
        format!("python3 {}", self.sample_job.display())
    }
}

fn parent_of(p: &Path) -> PathBuf {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// The values the installer's flags put into the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValues {
    /// `watch.root`.
    pub watch_root: PathBuf,
    /// `watch.signal_filename`.
    pub signal_file: String,
    /// `job.wrap_cmd`.
    pub wrap_cmd: String,
    /// `job.partition`; omitted when `None`.
    pub partition: Option<String>,
    /// `job.account`; omitted when `None`.
    pub account: Option<String>,
    /// `job.gres`; omitted when `None`.
    pub gres: Option<String>,
    /// `job.time_limit`; omitted when `None`.
    pub time_limit: Option<String>,
    /// `behavior.delete_on_success`.
    pub delete_on_success: bool,
    /// `behavior.state_file`.
    pub state_file: PathBuf,
    /// `behavior.failure_log`.
    pub failure_log: PathBuf,
    /// `behavior.instance`; omitted for the plain service.
    pub instance: Option<InstanceName>,
    /// `metrics.listen`; no `metrics:` section without it or a textfile.
    pub metrics_listen: Option<String>,
    /// `metrics.textfile`.
    pub metrics_textfile: Option<PathBuf>,
}

/// Which kind of config file to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigStyle {
    /// Written by `dirwatcher install`: the original's layout, with a short header.
    Installed,
    /// The package's example: the same layout, every key explained.
    Example,
}

/// Renders a config in the Python original's layout (same keys, same order, same blank lines).
pub fn render_config(v: &ConfigValues, style: ConfigStyle) -> String {
    let mut y = String::new();
    put_header(&mut y, v, style);
    put_watch(&mut y, v, style);
    put_job(&mut y, v, style);
    put_behavior(&mut y, v, style);
    put_metrics(&mut y, v);
    y
}

/// The example config's words on a key (as comments above it); the installed config carries none.
fn explain(y: &mut String, style: ConfigStyle, text: &str) {
    if style == ConfigStyle::Example {
        for line in text.lines() {
            let _ = writeln!(y, "  # {line}");
        }
    }
}

/// The comment lines at the top: who wrote the file and how to check and reload it.
fn put_header(y: &mut String, v: &ConfigValues, style: ConfigStyle) {
    match style {
        ConfigStyle::Installed => {
            let unit = v
                .instance
                .as_ref()
                .map_or_else(|| "dirwatcher".to_string(), |n| format!("dirwatcher@{n}"));
            let _ = write!(
                y,
                "# dirwatcher configuration, written by `dirwatcher install`.\n\
                 # Check it: dirwatcher check-config --config <this file>; every key: dirwatcher check-config --help\n\
                 # After a change: systemctl reload {unit} (SIGHUP; a config that does not validate is refused).\n"
            );
        }
        ConfigStyle::Example => {
            *y += "# Example dirwatcher configuration. Copy it to /etc/dirwatcher/config.yaml, set watch.root and the\n\
                  # job, then check it with `dirwatcher check-config` and start the service (see\n\
                  # /usr/share/doc/dirwatcher/README.package). Every key and its default: dirwatcher check-config --help\n";
        }
    }
}

/// The `watch:` section.
fn put_watch(y: &mut String, v: &ConfigValues, style: ConfigStyle) {
    *y += "watch:\n";
    explain(
        y,
        style,
        "The directory to watch. It must exist (dirwatcher never creates it) and the service user\n\
         must be able to write it (deleting finished directories).",
    );
    put(y, &keys::WATCH_ROOT, &v.watch_root.to_string_lossy());
    explain(
        y,
        style,
        "A subdirectory is submitted once this file in it is stable (same size, mtime, inode; not locked).",
    );
    put(y, &keys::WATCH_SIGNAL_FILENAME, &v.signal_file);
    for key in [
        keys::WATCH_POLL_INTERVAL_SEC,
        keys::WATCH_STABILITY_CHECKS,
        keys::WATCH_STABILITY_INTERVAL_SEC,
    ] {
        put_default(y, &key);
    }
}

/// The `job:` section.
fn put_job(y: &mut String, v: &ConfigValues, style: ConfigStyle) {
    *y += "\njob:\n";
    explain(
        y,
        style,
        "The job's command line (run by `sbatch --wrap`); the directory is appended as one quoted word.",
    );
    put(y, &keys::JOB_WRAP_CMD, &v.wrap_cmd);
    explain(
        y,
        style,
        "sbatch --partition / --account / --gres / --time. Delete a line to use Slurm's default.",
    );
    for (key, val) in [
        (keys::JOB_PARTITION, &v.partition),
        (keys::JOB_ACCOUNT, &v.account),
        (keys::JOB_GRES, &v.gres),
        (keys::JOB_TIME_LIMIT, &v.time_limit),
    ] {
        if let Some(val) = val {
            put(y, &key, val);
        }
    }
    for key in [
        keys::JOB_JOB_NAME_PREFIX,
        keys::JOB_ENV,
        keys::JOB_EXTRA_ARGS,
        keys::JOB_CHDIR_TO_SUBDIR,
    ] {
        put_default(y, &key);
    }
}

/// The `behavior:` section.
fn put_behavior(y: &mut String, v: &ConfigValues, style: ConfigStyle) {
    *y += "\nbehavior:\n";
    explain(
        y,
        style,
        "Delete the directory after its job COMPLETED (never after a failure).",
    );
    let _ = writeln!(
        y,
        "  {}: {}",
        keys::BEHAVIOR_DELETE_ON_SUCCESS.leaf(),
        v.delete_on_success
    );
    *y += "  # An SQLite database (the ledger), not the Python original's state.json; keep it on local disk.\n";
    put(
        y,
        &keys::BEHAVIOR_STATE_FILE,
        &v.state_file.to_string_lossy(),
    );
    explain(y, style, "One JSON line per failed job.");
    put(
        y,
        &keys::BEHAVIOR_FAILURE_LOG,
        &v.failure_log.to_string_lossy(),
    );
    if let Some(name) = &v.instance {
        *y += "  # One of several services on this host: dirwatcher@NAME, its metrics and log lines carry NAME.\n";
        put(y, &keys::BEHAVIOR_INSTANCE, name.as_str());
    }
}

/// The `metrics:` section, when the values ask for one.
fn put_metrics(y: &mut String, v: &ConfigValues) {
    if v.metrics_listen.is_none() && v.metrics_textfile.is_none() {
        return;
    }
    *y += "\nmetrics:\n";
    if let Some(l) = &v.metrics_listen {
        put(y, &keys::METRICS_LISTEN, l);
    }
    if let Some(t) = &v.metrics_textfile {
        put(y, &keys::METRICS_TEXTFILE, &t.to_string_lossy());
    }
}

/// `  key: value`, the value as a YAML scalar.
fn put(y: &mut String, key: &Key, value: &str) {
    let _ = writeln!(y, "  {}: {}", key.leaf(), scalar(value));
}

/// `  key: default`, with the default written as the table gives it (`5`, `{}`, `true`).
fn put_default(y: &mut String, key: &Key) {
    let value = key.default.yaml().unwrap_or_default();
    let _ = writeln!(y, "  {}: {value}", key.leaf());
}

/// A YAML scalar: plain when that reads back as the same string (as the original wrote its values), else
/// double-quoted (JSON string syntax is valid YAML).
pub fn scalar(s: &str) -> String {
    let plain_char = |c: char| c.is_ascii_alphanumeric() || "_./:@+,=- ~".contains(c);
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '.');
    let keyword = matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
    );
    let numeric = s.parse::<f64>().is_ok() || s.starts_with("0x") || s.starts_with("0o");
    if first_ok
        && !keyword
        && !numeric
        && s.chars().all(plain_char)
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !s.ends_with(' ')
    {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// Who the unit is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitOrigin {
    /// Written by `dirwatcher install`.
    Installer,
    /// Shipped by the Debian package: the watch root is added by the admin in a drop-in.
    Package,
}

/// One service, or a template for several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitShape {
    /// `dirwatcher.service`: the layout's config, state and log directories.
    Single {
        /// The watched root, made writable in the sandbox (`None`: the package's, in a drop-in).
        watch_root: Option<PathBuf>,
        /// The SMTP password's file (`install --smtp-pass`), given to the service as its credential.
        smtp_pass: Option<PathBuf>,
    },
    /// `dirwatcher@.service`: `dirwatcher@NAME` runs `/etc/dirwatcher/NAME.yaml` with its state and logs
    /// in `dirwatcher/NAME` under /var/lib and /var/log; its root (and user) come from a drop-in.
    Template,
}

/// Everything the unit depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSpec {
    /// Where the files are (a template uses only the binary).
    pub layout: Layout,
    /// `User=`.
    pub user: String,
    /// `Group=`.
    pub group: String,
    /// Installer or package.
    pub origin: UnitOrigin,
    /// One service or a template.
    pub shape: UnitShape,
}

/// A path that cannot be written into a unit file.
#[derive(Debug, thiserror::Error)]
#[error("the path `{0}` cannot be used in a systemd unit (it contains a newline or is not UTF-8)")]
pub struct UnitPathError(pub PathBuf);

/// One word for a unit file: quoted when it has spaces or quotes, with `%` (specifiers) and `$`
/// (variable expansion in Exec lines) escaped.
fn unit_word(p: &Path) -> Result<String, UnitPathError> {
    let s = p.to_str().ok_or_else(|| UnitPathError(p.into()))?;
    if s.contains('\n') || s.contains('\r') {
        return Err(UnitPathError(p.into()));
    }
    let escaped = s.replace('%', "%%").replace('$', "$$");
    if escaped
        .chars()
        .all(|c| !c.is_whitespace() && c != '"' && c != '\'' && c != '\\' && c != ';')
    {
        Ok(escaped)
    } else {
        Ok(format!(
            "\"{}\"",
            escaped.replace('\\', "\\\\").replace('"', "\\\"")
        ))
    }
}

fn under_tmp(p: &Path) -> bool {
    p.starts_with("/tmp") || p.starts_with("/var/tmp")
}

/// The template's config, `%i` the instance name (a valid [`crate::config::InstanceName`] needs no
/// escaping, so `%i` and `%I` are the same).
pub const TEMPLATE_CONFIG: &str = "/etc/dirwatcher/%i.yaml";

/// The template's state and log directories below /var/lib and /var/log (`StateDirectory=`,
/// `LogsDirectory=`), as [`instance_state_file`] and [`instance_failure_log`] place them.
const TEMPLATE_DIRS: &str = "dirwatcher/%i";

/// The first lines: who wrote the unit and where local changes go.
fn unit_header(origin: UnitOrigin, shape: &UnitShape) -> &'static str {
    match (origin, shape) {
        (UnitOrigin::Installer, UnitShape::Single { .. }) => {
            "# Written by `dirwatcher install`. Re-run the installer instead of editing this file; put local\n\
             # changes in a drop-in: systemctl edit dirwatcher\n"
        }
        (UnitOrigin::Package, UnitShape::Single { .. }) => {
            "# dirwatcher.service from the package (.deb or .rpm). The watched root must be made writable\n\
             # in the sandbox with a drop-in (systemctl edit dirwatcher):\n\
             #   [Service]\n\
             #   ReadWritePaths=/data/incoming\n\
             # See /usr/share/doc/dirwatcher/README.package.\n"
        }
        (UnitOrigin::Installer, UnitShape::Template) => {
            "# Written by `dirwatcher install --instance NAME`, one for every instance: dirwatcher@NAME runs\n\
             # /etc/dirwatcher/NAME.yaml; its root, user and own paths are in the drop-in\n\
             # /etc/systemd/system/dirwatcher@NAME.service.d/instance.conf. Re-run the installer instead of\n\
             # editing either; put local changes in another drop-in: systemctl edit dirwatcher@NAME\n"
        }
        (UnitOrigin::Package, UnitShape::Template) => {
            "# dirwatcher@.service from the package (.deb or .rpm): dirwatcher@NAME runs\n\
             # /etc/dirwatcher/NAME.yaml, with behavior.state_file in /var/lib/dirwatcher/NAME/ and\n\
             # behavior.failure_log in /var/log/dirwatcher/NAME/ (created at start). Its watched root must\n\
             # be made writable in the sandbox with a drop-in (systemctl edit dirwatcher@NAME):\n\
             #   [Service]\n\
             #   ReadWritePaths=/data/incoming\n\
             # See /usr/share/doc/dirwatcher/README.package.\n"
        }
    }
}

/// What differs between the plain unit and the template: the config, the name in comments, and where
/// the sandbox may write.
struct UnitWords {
    /// `dirwatcher` or `dirwatcher@%i`, for comments and the description.
    name: &'static str,
    exec: String,
    config: String,
    /// The lines that open the sandbox for the service's own files (`ReadWritePaths=`, or systemd's
    /// `StateDirectory=`/`LogsDirectory=` for a template), and `PrivateTmp=`.
    writable: String,
    /// `LoadCredential=` with its comment, or nothing.
    credentials: String,
}

impl UnitWords {
    fn of(spec: &UnitSpec) -> Result<UnitWords, UnitPathError> {
        let l = &spec.layout;
        let exec = unit_word(&l.binary)?;
        Ok(match &spec.shape {
            UnitShape::Single {
                watch_root,
                smtp_pass,
            } => {
                let mut paths: Vec<PathBuf> = watch_root.iter().cloned().collect();
                paths.extend([l.state_dir(), l.log_dir()]);
                UnitWords {
                    name: "dirwatcher",
                    exec,
                    config: unit_word(&l.config)?,
                    writable: writable_lines(&paths)?,
                    credentials: credential_lines(smtp_pass.as_deref())?,
                }
            }
            UnitShape::Template => UnitWords {
                name: "dirwatcher@%i",
                exec,
                config: TEMPLATE_CONFIG.into(),
                writable: format!(
                    "# The instance's own state and log directories, made by systemd (owned by User=).\n\
                     StateDirectory={TEMPLATE_DIRS}\nStateDirectoryMode=0750\n\
                     LogsDirectory={TEMPLATE_DIRS}\nLogsDirectoryMode=0750\n\
                     ProtectHome=read-only\nPrivateTmp=yes\n"
                ),
                // An instance's password is its own: in its drop-in.
                credentials: String::new(),
            },
        })
    }
}

/// The credential the SMTP password file `smtp_pass` is handed to the service as: systemd reads the file
/// as root when the service starts and puts a copy in the service's own `$CREDENTIALS_DIRECTORY/smtp_pass`
/// (the name the config reader looks for). The file stays readable by the service user and named by the
/// config too: some systemd versions do not give `ExecReload=` the credentials in a unit with a mount
/// namespace (systemd issue 35227), and its `check-config --secrets` then reads the file. Nothing without
/// a file.
fn credential_lines(smtp_pass: Option<&Path>) -> Result<String, UnitPathError> {
    let Some(file) = smtp_pass else {
        return Ok(String::new());
    };
    let name =
        crate::config::credential::name_of(crate::config::keys::BEHAVIOR_SMTP_PASS_FILE.name);
    // `ID:PATH` is one word: quoted as a whole when the path needs it.
    let text = file.to_str().ok_or_else(|| UnitPathError(file.into()))?;
    let word =
        unit_word(Path::new(&format!("{name}:{text}"))).map_err(|_| UnitPathError(file.into()))?;
    Ok(format!(
        "# The SMTP password: systemd reads this file (as root) at start and gives it to the service as its\n\
         # credential `{name}`, which dirwatcher prefers to `behavior.smtp_pass_file`.\n\
         LoadCredential={word}\n"
    ))
}

/// `ReadWritePaths=` for `paths`, each once, in order.
fn read_write_line(paths: &[PathBuf]) -> Result<String, UnitPathError> {
    let mut unique: Vec<&PathBuf> = Vec::new();
    for p in paths {
        if !unique.contains(&p) {
            unique.push(p);
        }
    }
    let words = unique
        .iter()
        .map(|p| unit_word(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("ReadWritePaths={}\n", words.join(" ")))
}

/// `PrivateTmp=no` with its reason when one of `paths` is under /tmp (a private /tmp would hide it).
fn private_tmp_off(paths: &[PathBuf]) -> Option<&'static str> {
    paths.iter().any(|p| under_tmp(p)).then_some(
        "# The root, the state or the log directory is under /tmp or /var/tmp: a private /tmp would hide it.\n\
         PrivateTmp=no\n",
    )
}

/// The sandbox's writable paths for one service, then `ProtectHome=` and `PrivateTmp=`.
fn writable_lines(paths: &[PathBuf]) -> Result<String, UnitPathError> {
    let rw = read_write_line(paths)?;
    let tmp = private_tmp_off(paths).unwrap_or("PrivateTmp=yes\n");
    Ok(format!("{rw}ProtectHome=read-only\n{tmp}"))
}

/// The sandbox after the writable paths: the same for every unit, so the plain service and every
/// instance are hardened alike.
const HARDENING: &str = "PrivateDevices=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictSUIDSGID=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
LockPersonality=yes
# Drop this line (drop-in: MemoryDenyWriteExecute=no) for executor: local with JIT runtimes (Java, Node).
MemoryDenyWriteExecute=yes
RestrictRealtime=yes
RestrictNamespaces=yes
RemoveIPC=yes
PrivateMounts=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
";

/// Renders `dirwatcher.service` or `dirwatcher@.service`: `Type=notify` with a watchdog, run as the
/// service user, sandboxed.
pub fn render_unit(spec: &UnitSpec) -> Result<String, UnitPathError> {
    let UnitWords {
        name,
        exec,
        config,
        writable,
        credentials,
    } = UnitWords::of(spec)?;
    let described = match spec.shape {
        UnitShape::Single { .. } => "dirwatcher",
        UnitShape::Template => "dirwatcher %i",
    };
    let mut u = unit_header(spec.origin, &spec.shape).to_string();
    let _ = write!(
        u,
        "[Unit]
Description={described}: one Slurm job for every directory marked ready
Documentation=man:dirwatcher(1)
# sbatch and sacct need munged and the network to slurmctld; the root may be on a network file system.
Wants=network-online.target
After=network-online.target remote-fs.target munge.service
ConditionPathExists={config}

[Service]
Type=notify
NotifyAccess=main
# Above the longest single scheduler call (2 × job.command_timeout_sec for a key lookup, 60 s each by
# default): the loop pings after every call, never in the middle of one.
WatchdogSec=300
ExecStart={exec} run --config {config}
# A broken config fails `systemctl reload` (the reason is in the journal) before the daemon is asked;
# the daemon checks it again and keeps the old one if it is refused.
ExecReload={exec} check-config --quiet --secrets --config {config}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
# Exit status 2 is a config or usage error: restarting cannot help, so the unit ends `failed` at once
# (fix the config, then `systemctl restart {name}`).
RestartPreventExitStatus=2
# SIGTERM to the daemon only: it lets a running sbatch finish and records its answer (bounded by
# job.command_timeout_sec). The default control-group mode would signal sbatch too and turn a known
# outcome into an unknown one. Nothing else is killed: a local job (job.executor: local) runs on across
# a restart or an upgrade and the next daemon follows it to its end (`systemctl kill dirwatcher` ends
# them all).
KillMode=process
TimeoutStopSec=90s
# Jobs are submitted as this user: it must be a Slurm user (sacctmgr add user NAME account=ACCOUNT) and
# exist on the compute nodes.
User={user}
Group={group}
UMask=0027
{credentials}
# Sandbox. sbatch reaches munged through its Unix socket in /run/munge and slurmctld over TCP, so the
# host network and AF_UNIX/AF_INET/AF_INET6 stay.
ProtectSystem=strict
{writable}{HARDENING}",
        user = spec.user,
        group = spec.group,
    );
    Ok(u)
}

/// Where the installer writes the template unit.
pub const INSTALLER_TEMPLATE_UNIT: &str = "/etc/systemd/system/dirwatcher@.service";

/// An instance's unit name, `dirwatcher@NAME.service`.
pub fn instance_unit_name(name: &InstanceName) -> String {
    format!("dirwatcher@{name}.service")
}

/// An instance's config: `NAME.yaml` beside the plain service's config (the template's `%i.yaml`).
pub fn instance_config(name: &InstanceName) -> PathBuf {
    parent_of(Path::new(DEFAULT_CONFIG)).join(format!("{name}.yaml"))
}

/// An instance's ledger: `state.db` in a directory of its own, named after it, beside the plain one's.
pub fn instance_state_file(name: &InstanceName) -> PathBuf {
    in_own_dir(Path::new(DEFAULT_STATE_FILE), name)
}

/// An instance's failure log: in a directory of its own, named after it, beside the plain one's.
pub fn instance_failure_log(name: &InstanceName) -> PathBuf {
    in_own_dir(Path::new(DEFAULT_FAILURE_LOG), name)
}

fn in_own_dir(plain: &Path, name: &InstanceName) -> PathBuf {
    parent_of(plain)
        .join(name.as_str())
        .join(plain.file_name().unwrap_or_default())
}

/// The installer's drop-in for one instance of the template: its user, and the paths it writes (the
/// root, and state or log directories outside the template's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropInSpec {
    /// The instance.
    pub instance: InstanceName,
    /// Its layout (state file and failure log).
    pub layout: Layout,
    /// `User=`.
    pub user: String,
    /// `Group=`.
    pub group: String,
    /// The watched root.
    pub watch_root: PathBuf,
    /// The instance's SMTP password file (`install --instance NAME --smtp-pass`), given as its credential.
    pub smtp_pass: Option<PathBuf>,
}

/// Where the installer writes an instance's drop-in.
pub fn instance_drop_in(name: &InstanceName) -> PathBuf {
    parent_of(Path::new(INSTALLER_TEMPLATE_UNIT))
        .join(format!("{}.d", instance_unit_name(name)))
        .join("instance.conf")
}

/// Renders an instance's drop-in (`User=`, `Group=`, `ReadWritePaths=` and, when needed, `PrivateTmp=no`).
pub fn render_drop_in(spec: &DropInSpec) -> Result<String, UnitPathError> {
    let l = &spec.layout;
    let own = [
        parent_of(&instance_state_file(&spec.instance)),
        parent_of(&instance_failure_log(&spec.instance)),
    ];
    let mut paths = vec![spec.watch_root.clone()];
    paths.extend(
        [l.state_dir(), l.log_dir()]
            .into_iter()
            .filter(|d| !own.contains(d)),
    );
    let rw = read_write_line(&paths)?;
    let tmp = private_tmp_off(&paths).unwrap_or_default();
    let credentials = credential_lines(spec.smtp_pass.as_deref())?;
    Ok(format!(
        "# Written by `dirwatcher install --instance {name}`: what dirwatcher@{name} has of its own. Re-run\n\
         # the installer instead of editing this file; put local changes in another drop-in:\n\
         # systemctl edit dirwatcher@{name}\n\
         [Service]\nUser={user}\nGroup={group}\n{rw}{tmp}{credentials}",
        name = spec.instance,
        user = spec.user,
        group = spec.group,
    ))
}

/// The package's unit, as checked in at `packaging/dirwatcher.service`.
pub fn package_unit() -> String {
    package_unit_shaped(UnitShape::Single {
        watch_root: None,
        smtp_pass: None,
    })
}

/// The package's template unit, as checked in at `packaging/dirwatcher@.service`.
pub fn package_template_unit() -> String {
    package_unit_shaped(UnitShape::Template)
}

fn package_unit_shaped(shape: UnitShape) -> String {
    render_unit(&UnitSpec {
        layout: Layout::package(),
        user: DEFAULT_USER.into(),
        group: DEFAULT_USER.into(),
        origin: UnitOrigin::Package,
        shape,
    })
    .expect("the package layout has plain paths")
}

/// The package's example config, as checked in at `packaging/config.example.yaml`.
pub fn package_example_config() -> String {
    let l = Layout::package();
    render_config(
        &ConfigValues {
            watch_root: "/data/incoming".into(),
            signal_file: DEFAULT_SIGNAL_FILE.into(),
            wrap_cmd: l.default_wrap_cmd(),
            partition: Some("main".into()),
            account: Some("dev".into()),
            gres: Some("gpu:1".into()),
            time_limit: Some("00:10:00".into()),
            delete_on_success: false,
            state_file: l.state_file.clone(),
            failure_log: l.failure_log.clone(),
            instance: None,
            metrics_listen: None,
            metrics_textfile: None,
        },
        ConfigStyle::Example,
    )
}

/// A unified diff of `old` → `new` (empty when equal), with `---`/`+++` naming the two sides.
pub fn diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header(old_name, new_name)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The installer's unit for `watch_root`, with every other default.
    fn installer_unit(watch_root: &str) -> String {
        render_unit(&UnitSpec {
            layout: default_layout(),
            user: "dirwatcher".into(),
            group: "dirwatcher".into(),
            origin: UnitOrigin::Installer,
            shape: UnitShape::Single {
                watch_root: Some(watch_root.into()),
                smtp_pass: None,
            },
        })
        .unwrap()
    }

    /// The installer's template unit with every default.
    fn installer_template() -> String {
        render_unit(&UnitSpec {
            layout: default_layout(),
            user: "dirwatcher".into(),
            group: "dirwatcher".into(),
            origin: UnitOrigin::Installer,
            shape: UnitShape::Template,
        })
        .unwrap()
    }

    /// The installer's layout with every default path.
    fn default_layout() -> Layout {
        Layout::installer(
            Path::new(crate::cli::DEFAULT_INSTALL_ROOT),
            Path::new("/etc/dirwatcher/config.yaml"),
            Path::new(DEFAULT_STATE_FILE),
            Path::new(DEFAULT_FAILURE_LOG),
        )
    }
    use crate::config::Config;

    fn seed_values(root: &Path) -> ConfigValues {
        let l = default_layout();
        ConfigValues {
            watch_root: root.into(),
            signal_file: DEFAULT_SIGNAL_FILE.into(),
            wrap_cmd: l.default_wrap_cmd(),
            partition: Some("main".into()),
            account: Some("dev".into()),
            gres: Some("gpu:1".into()),
            time_limit: Some("00:10:00".into()),
            delete_on_success: false,
            state_file: DEFAULT_STATE_FILE.into(),
            failure_log: DEFAULT_FAILURE_LOG.into(),
            instance: None,
            metrics_listen: None,
            metrics_textfile: None,
        }
    }

    /// The seed's example, but for the state file (ours is SQLite) and comment lines.
    #[test]
    fn installed_config_is_the_seed_example_with_the_flags() {
        let seed =
            include_str!("../../tests/data/seed-config.yaml").replace("state.json", "state.db");
        let ours = render_config(
            &seed_values(Path::new("/data/incoming")),
            ConfigStyle::Installed,
        );
        let without_comments: String = ours
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(without_comments, seed);
    }

    #[test]
    fn rendered_config_reads_back_as_the_same_values() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("odd root: #1 'x'");
        std::fs::create_dir(&root).unwrap();
        let mut v = seed_values(&root);
        v.wrap_cmd = "sh -c 'echo \"$1\" # not a comment' job".into();
        v.partition = Some("true".into());
        v.time_limit = Some("90".into());
        v.gres = None;
        for style in [ConfigStyle::Installed, ConfigStyle::Example] {
            let c = Config::parse(&render_config(&v, style), Path::new("/x.yaml")).unwrap();
            assert_eq!(c.watch.root, root);
            assert_eq!(
                c.job.command,
                crate::config::JobCommand::Wrap(v.wrap_cmd.clone())
            );
            assert_eq!(c.job.partition.as_deref(), Some("true"));
            assert_eq!(c.job.gres, None);
            assert_eq!(c.job.time_limit.unwrap().slurm, "90");
        }
    }

    #[test]
    fn scalars_stay_plain_when_the_original_wrote_them_plain() {
        for s in [
            "main",
            "gpu:1",
            "00:10:00",
            "/data/incoming",
            "python3 /opt/x.py",
            "_READY",
        ] {
            assert_eq!(scalar(s), s);
        }
        for s in [
            "", "yes", "10", "a: b", "x #y", "'q'", "*star", "-dash", "tail ",
        ] {
            assert!(scalar(s).starts_with('"'), "{s:?} must be quoted");
        }
    }

    #[test]
    fn unit_words_are_quoted_and_escaped() {
        assert_eq!(unit_word(Path::new("/opt/dw")).unwrap(), "/opt/dw");
        assert_eq!(
            unit_word(Path::new("/data/my root/100%")).unwrap(),
            "\"/data/my root/100%%\""
        );
        assert!(unit_word(Path::new("/a\nb")).is_err());
    }

    #[test]
    fn unit_has_the_contract() {
        let u = installer_unit("/data/incoming");
        for line in [
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=300",
            "ExecStart=/opt/dirwatcher/dirwatcher run --config /etc/dirwatcher/config.yaml",
            "ExecReload=/opt/dirwatcher/dirwatcher check-config --quiet --secrets --config /etc/dirwatcher/config.yaml",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=on-failure",
            "RestartPreventExitStatus=2",
            "KillMode=process",
            "User=dirwatcher",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=/data/incoming /var/lib/dirwatcher /var/log/dirwatcher",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "UMask=0027",
        ] {
            assert!(u.lines().any(|l| l == line), "unit lacks {line:?}:\n{u}");
        }
        assert!(!u.contains("PrivateNetwork"), "sbatch needs the network");
    }

    /// Every program the packaged unit runs, besides dirwatcher itself, must come from a package the
    /// `.deb` depends on: without procps (absent from minimal systems and container images) `systemctl
    /// reload` fails with 203/EXEC (issue 14, D6). Programs and the Debian package that ships them.
    #[test]
    fn every_program_the_packaged_unit_runs_is_in_the_package_depends() {
        const SHIPPED_BY: &[(&str, &str)] = &[("/bin/kill", "procps")];
        let cargo = include_str!("../../Cargo.toml");
        let depends = cargo
            .lines()
            .find_map(|l| l.strip_prefix("depends = "))
            .expect("Cargo.toml has [package.metadata.deb] depends");
        let depends: Vec<&str> = depends
            .trim_matches('"')
            .split(',')
            .map(|d| d.split_whitespace().next().unwrap_or(""))
            .collect();
        let unit = package_unit();
        for line in unit.lines().filter(|l| l.starts_with("Exec")) {
            let program = line
                .split_once('=')
                .and_then(|(_, cmd)| cmd.split_whitespace().next())
                .unwrap_or_default();
            if program == "/usr/bin/dirwatcher" {
                continue;
            }
            let (_, package) = SHIPPED_BY
                .iter()
                .find(|(p, _)| *p == program)
                .unwrap_or_else(|| {
                    panic!("{line:?} runs {program}: add it and its package to SHIPPED_BY and to depends")
                });
            assert!(
                depends.contains(package),
                "{line:?} needs {package}, but Cargo.toml's depends are {depends:?}"
            );
        }
    }

    /// The sandbox lines both shapes share: from `ProtectSystem=` on, less the lines that say where the
    /// service writes.
    fn hardening_of(unit: &str) -> Vec<&str> {
        let placement = [
            "ReadWritePaths=",
            "StateDirectory",
            "LogsDirectory",
            "# The instance's own",
        ];
        unit.lines()
            .skip_while(|l| !l.starts_with("ProtectSystem="))
            .filter(|l| !placement.iter().any(|p| l.starts_with(p)))
            .collect()
    }

    #[test]
    fn the_template_runs_each_instance_on_its_own_config_state_and_logs() {
        let u = installer_template();
        for line in [
            "Description=dirwatcher %i: one Slurm job for every directory marked ready",
            "ConditionPathExists=/etc/dirwatcher/%i.yaml",
            "ExecStart=/opt/dirwatcher/dirwatcher run --config /etc/dirwatcher/%i.yaml",
            "ExecReload=/opt/dirwatcher/dirwatcher check-config --quiet --secrets --config /etc/dirwatcher/%i.yaml",
            "StateDirectory=dirwatcher/%i",
            "StateDirectoryMode=0750",
            "LogsDirectory=dirwatcher/%i",
            "LogsDirectoryMode=0750",
            "# (fix the config, then `systemctl restart dirwatcher@%i`).",
        ] {
            assert!(
                u.lines().any(|l| l == line),
                "template lacks {line:?}:\n{u}"
            );
        }
        // The root (and any other path) is the instance's drop-in's: an empty ReadWritePaths= in the
        // template would also reset what a drop-in adds before it.
        assert!(!u.contains("ReadWritePaths"), "{u}");
        let name = InstanceName::parse("cryo").unwrap();
        let dir = |p: PathBuf| p.parent().unwrap().to_path_buf();
        assert_eq!(
            dir(instance_state_file(&name)),
            Path::new("/var/lib/dirwatcher/cryo")
        );
        assert_eq!(
            dir(instance_failure_log(&name)),
            Path::new("/var/log/dirwatcher/cryo")
        );
        assert_eq!(
            instance_config(&name),
            Path::new("/etc/dirwatcher/cryo.yaml")
        );
    }

    /// One renderer for both: every hardening line of the plain unit is in the template, in order.
    #[test]
    fn the_template_is_hardened_exactly_as_the_plain_unit() {
        let plain = installer_unit("/data/incoming");
        let template = installer_template();
        assert_eq!(hardening_of(&template), hardening_of(&plain));
        assert!(hardening_of(&plain).len() > 25, "{plain}");
        for l in [
            "User=dirwatcher",
            "Type=notify",
            "KillMode=process",
            "WatchdogSec=300",
            "UMask=0027",
        ] {
            assert!(template.lines().any(|t| t == l), "{l}");
        }
        assert_eq!(
            hardening_of(&package_template_unit()),
            hardening_of(&package_unit())
        );
    }

    #[test]
    fn an_instance_drop_in_names_its_user_and_root_and_only_paths_of_its_own() {
        let name = InstanceName::parse("cryo").unwrap();
        let layout = |state: &str, log: &str| {
            Layout::instance(
                Path::new("/opt/dirwatcher"),
                &name,
                Path::new(state),
                Path::new(log),
            )
        };
        let spec = |layout: Layout, root: &str| DropInSpec {
            instance: name.clone(),
            layout,
            user: "svc-cryo".into(),
            group: "svc".into(),
            watch_root: root.into(),
            smtp_pass: None,
        };
        let standard = layout(
            "/var/lib/dirwatcher/cryo/state.db",
            "/var/log/dirwatcher/cryo/failed_jobs.log",
        );
        let d = render_drop_in(&spec(standard.clone(), "/data/cryo")).unwrap();
        let body: Vec<&str> = d.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            [
                "[Service]",
                "User=svc-cryo",
                "Group=svc",
                "ReadWritePaths=/data/cryo"
            ]
        );
        assert_eq!(
            standard.drop_in.as_deref(),
            Some(Path::new(
                "/etc/systemd/system/dirwatcher@cryo.service.d/instance.conf"
            ))
        );
        let elsewhere = layout(
            "/srv/cryo/state.db",
            "/var/log/dirwatcher/cryo/failed_jobs.log",
        );
        let d = render_drop_in(&spec(elsewhere, "/tmp/cryo")).unwrap();
        assert!(
            d.lines().any(|l| l == "ReadWritePaths=/tmp/cryo /srv/cryo"),
            "{d}"
        );
        assert!(d.lines().any(|l| l == "PrivateTmp=no"), "{d}");
    }

    #[test]
    fn the_smtp_password_file_is_the_units_credential_and_an_instances_in_its_drop_in() {
        let file = Path::new("/etc/dirwatcher/config.smtp.pass");
        let u = render_unit(&UnitSpec {
            layout: default_layout(),
            user: "dirwatcher".into(),
            group: "dirwatcher".into(),
            origin: UnitOrigin::Installer,
            shape: UnitShape::Single {
                watch_root: Some("/data/incoming".into()),
                smtp_pass: Some(file.into()),
            },
        })
        .unwrap();
        let creds: Vec<&str> = u
            .lines()
            .filter(|l| l.starts_with("LoadCredential"))
            .collect();
        assert_eq!(
            creds,
            ["LoadCredential=smtp_pass:/etc/dirwatcher/config.smtp.pass"]
        );
        // In [Service], before the sandbox (which needs no path for it: systemd reads the file as root).
        let at = |l: &str| u.find(l).unwrap();
        assert!(
            at("[Service]") < at("LoadCredential=") && at("LoadCredential=") < at("ProtectSystem=")
        );
        assert!(!installer_unit("/data/incoming").contains("LoadCredential"));
        assert!(!installer_template().contains("LoadCredential"));

        let name = InstanceName::parse("cryo").unwrap();
        let d = render_drop_in(&DropInSpec {
            instance: name.clone(),
            layout: Layout::instance(
                Path::new("/opt/dirwatcher"),
                &name,
                Path::new("/var/lib/dirwatcher/cryo/state.db"),
                Path::new("/var/log/dirwatcher/cryo/failed_jobs.log"),
            ),
            user: "dirwatcher".into(),
            group: "dirwatcher".into(),
            watch_root: "/data/cryo".into(),
            smtp_pass: Some("/etc/dirwatcher/cryo.smtp.pass".into()),
        })
        .unwrap();
        assert!(
            d.lines()
                .any(|l| l == "LoadCredential=smtp_pass:/etc/dirwatcher/cryo.smtp.pass"),
            "{d}"
        );
        // A path with a space is one quoted word.
        let spaced = credential_lines(Some(Path::new("/etc/dw x/p"))).unwrap();
        assert!(
            spaced.contains("LoadCredential=\"smtp_pass:/etc/dw x/p\"\n"),
            "{spaced}"
        );
    }

    #[test]
    fn an_instance_config_names_the_instance_and_its_metrics() {
        let mut v = seed_values(&std::env::temp_dir());
        v.instance = Some(InstanceName::parse("cryo").unwrap());
        v.metrics_listen = Some("127.0.0.1:9188".into());
        v.metrics_textfile = Some("/var/lib/prometheus/node-exporter/dirwatcher-cryo.prom".into());
        let text = render_config(&v, ConfigStyle::Installed);
        assert!(text.contains("systemctl reload dirwatcher@cryo "), "{text}");
        let c = Config::parse(&text, Path::new("/etc/dirwatcher/cryo.yaml")).unwrap();
        assert_eq!(
            c.behavior.instance.as_ref().map(|n| n.as_str()),
            Some("cryo")
        );
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9188".parse().unwrap()));
        assert!(c.metrics.textfile.is_some());
        let plain = render_config(&seed_values(&std::env::temp_dir()), ConfigStyle::Installed);
        assert!(
            !plain.contains("instance") && !plain.contains("metrics"),
            "{plain}"
        );
    }

    #[test]
    fn a_root_under_tmp_turns_private_tmp_off() {
        let u = installer_unit("/tmp/incoming");
        assert!(u.lines().any(|l| l == "PrivateTmp=no"), "{u}");
    }

    /// The package ships checked-in copies; they must be what the code renders (regenerate with
    /// `cargo run -- __generate package-files packaging`).
    #[test]
    fn packaged_unit_and_example_config_match_the_renderer() {
        assert_eq!(
            include_str!("../../packaging/dirwatcher.service"),
            package_unit(),
            "packaging/dirwatcher.service is stale: run `cargo run -- __generate package-files packaging`"
        );
        assert_eq!(
            include_str!("../../packaging/dirwatcher@.service"),
            package_template_unit(),
            "packaging/dirwatcher@.service is stale: run `cargo run -- __generate package-files packaging`"
        );
        assert_eq!(
            include_str!("../../packaging/config.example.yaml"),
            package_example_config(),
            "packaging/config.example.yaml is stale: run `cargo run -- __generate package-files packaging`"
        );
    }

    #[test]
    fn diff_names_both_sides_and_shows_changed_lines() {
        let d = diff("a\nb\nc\n", "a\nB\nc\n", "old", "new");
        assert!(d.contains("--- old") && d.contains("+++ new"), "{d}");
        assert!(d.contains("-b\n") && d.contains("+B\n"), "{d}");
        assert_eq!(diff("x\n", "x\n", "a", "b"), "");
    }
}
