//! The services already installed beside the one being installed (the plain `config.yaml` and every
//! instance's `NAME.yaml` in the config directory), and the rule that no two of them share a watch root,
//! a ledger, a failure log or a metrics output: two daemons on one root would submit every directory
//! twice.
//!
//! Must never: write anything, or refuse on a file it cannot read (that one is not a service we know).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, InstanceName, RootCheck};

use super::plan::staged;
use super::usage::UsageError;

/// One installed service, as its config file says.
#[derive(Debug, Clone)]
pub(super) struct Service {
    /// Its config, on the target system.
    pub(super) config: PathBuf,
    /// `dirwatcher@NAME`, or the plain `dirwatcher` (`None`).
    pub(super) instance: Option<InstanceName>,
    pub(super) watch_root: PathBuf,
    pub(super) state_file: PathBuf,
    pub(super) failure_log: PathBuf,
    pub(super) listen: Option<std::net::SocketAddr>,
    pub(super) textfile: Option<PathBuf>,
}

impl Service {
    /// What it is called in messages: `dirwatcher@NAME` or `the plain dirwatcher service`, and its file.
    fn called(&self) -> String {
        match &self.instance {
            Some(n) => format!("dirwatcher@{n} ({})", self.config.display()),
            None => format!("the dirwatcher service ({})", self.config.display()),
        }
    }

    /// Reads the config at `config` (its target path) from `at` (its staged path); `None` when it cannot
    /// be read or does not load.
    fn read(config: &Path, at: &Path) -> Option<Service> {
        let text = std::fs::read_to_string(at).ok()?;
        Service::parse(config, &text).ok()
    }

    /// The service a config text at `config` (its target path) describes.
    pub(super) fn parse(config: &Path, text: &str) -> Result<Service, crate::config::ConfigError> {
        let c = Config::parse_with_secrets(
            text,
            config,
            RootCheck::Staged,
            crate::config::Secrets::IfReadable,
        )?;
        Ok(Service {
            config: config.to_path_buf(),
            instance: c.behavior.instance.clone(),
            watch_root: c.watch.root,
            state_file: c.behavior.state_file,
            failure_log: c.behavior.failure_log,
            listen: c.metrics.listen,
            textfile: c.metrics.textfile,
        })
    }
}

/// The template unit is shared by every instance: a later instance may bring a newer unit text, but not
/// another binary, which would move every instance installed before it onto that copy.
pub(super) fn check_template(at: &Path, template: &str) -> Result<(), UsageError> {
    let exec = |u: &str| {
        u.lines()
            .find(|l| l.starts_with("ExecStart="))
            .map(str::to_string)
    };
    let Ok(installed) = std::fs::read_to_string(at) else {
        return Ok(());
    };
    let (old, new) = (exec(&installed), exec(template));
    if old == new {
        return Ok(());
    }
    let binary = |l: &Option<String>| {
        l.as_deref()
            .and_then(|l| l.strip_prefix("ExecStart="))
            .and_then(|l| l.split(" run ").next())
            .unwrap_or("?")
            .to_string()
    };
    Err(usage(
        format!(
            "the template unit `{}` that every instance shares starts `{}`, not `{}`",
            at.display(),
            binary(&old),
            binary(&new)
        ),
        format!(
            "install every instance with the same --install-root (here: --install-root {})",
            Path::new(&binary(&old))
                .parent()
                .unwrap_or(Path::new("/"))
                .display()
        ),
    ))
}

/// Every service whose config is a `*.yaml` in one of `dirs` (target paths, read under `destdir`).
pub(super) fn installed(destdir: Option<&Path>, dirs: &[PathBuf]) -> Vec<Service> {
    let mut found = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(staged(destdir, dir)) else {
            continue;
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let config = dir.join(&name);
            if config.extension().is_some_and(|e| e == "yaml")
                && !found.iter().any(|s: &Service| s.config == config)
                && let Some(s) = Service::read(&config, &staged(destdir, &config))
            {
                found.push(s);
            }
        }
    }
    found
}

fn usage(problem: String, fix: String) -> UsageError {
    UsageError { problem, fix }
}

/// True when `a` and `b` are the same directory: the same path, or the same inode where both exist (a
/// symlink or a second mount point of one root is still one root).
fn same_place(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}

/// Where systemd finds the plain `dirwatcher.service`, first match wins: the installer's (or an admin's)
/// in /etc, then a package's.
pub(super) const PLAIN_UNITS: [&str; 3] = [
    "/etc/systemd/system/dirwatcher.service",
    "/usr/lib/systemd/system/dirwatcher.service",
    "/lib/systemd/system/dirwatcher.service",
];

/// The plain service as systemd would run it: the first unit of [`PLAIN_UNITS`] present (under
/// `destdir`), and the config its `ExecStart=` names (`None` when no such unit is installed).
pub(super) fn plain_unit(destdir: Option<&Path>) -> Option<(PathBuf, Option<PathBuf>)> {
    PLAIN_UNITS.iter().find_map(|unit| {
        let text = std::fs::read_to_string(staged(destdir, Path::new(unit))).ok()?;
        Some((PathBuf::from(unit), exec_config(&text)))
    })
}

/// The `--config` of a unit's (last) `ExecStart=`.
fn exec_config(unit: &str) -> Option<PathBuf> {
    let line = unit
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("ExecStart="))?;
    let words =
        shlex::split(line).unwrap_or_else(|| line.split_whitespace().map(String::from).collect());
    let at = words.iter().position(|w| w == "--config" || w == "-c")?;
    words.get(at + 1).map(PathBuf::from)
}

/// The fix for a second plain service: there is one `dirwatcher.service`; a second root is an instance.
fn as_instance(me: &Service) -> String {
    format!(
        "to watch a second root, install it as an instance of its own: dirwatcher install --instance NAME \
         --watch-root {} … (each instance has its own config, ledger, logs and unit dirwatcher@NAME)",
        me.watch_root.display()
    )
}

/// An install that would repoint the installed service: refused unless `--force`, with the way to run a
/// second root alongside. Two ways to repoint the plain service: another `--config-path` than the one its
/// installed unit runs (the unit would be rewritten to run the new config, and the old one's root would be
/// watched by nothing), or the same config for another root. (Kept, the old config would watch one root
/// while the new unit lets the sandbox write only the other.) `unit` is the plain unit installed and the
/// config it runs ([`plain_unit`]; `None` for an instance, whose config follows from its name).
pub(super) fn check_same_root(
    me: &Service,
    installed: &[Service],
    unit: Option<&(PathBuf, Option<PathBuf>)>,
    force: bool,
) -> Result<(), UsageError> {
    if force {
        return Ok(());
    }
    if let Some((unit, Some(runs))) = unit
        && me.instance.is_none()
        && *runs != me.config
    {
        let root = installed
            .iter()
            .find(|s| s.config == *runs)
            .map(|s| s.watch_root.display().to_string());
        let watching = root
            .as_ref()
            .map(|r| format!(", which watches `{r}`"))
            .unwrap_or_default();
        let left = root.map_or("its root".to_string(), |r| format!("`{r}`"));
        return Err(usage(
            format!(
                "the dirwatcher service `{}` runs the config `{}`{watching}; installing it with --config-path `{}` \
                 would make it run that one instead and leave {left} watched by nothing",
                unit.display(),
                runs.display(),
                me.config.display()
            ),
            format!(
                "{}; to move the service to the new config instead, add --force",
                as_instance(me)
            ),
        ));
    }
    let Some(old) = installed.iter().find(|s| s.config == me.config) else {
        return Ok(());
    };
    if same_place(&old.watch_root, &me.watch_root) {
        return Ok(());
    }
    Err(usage(
        format!(
            "{} already watches `{}`; installing it for `{}` would stop watching that root",
            old.called(),
            old.watch_root.display(),
            me.watch_root.display()
        ),
        format!(
            "{}; to move this service to the new root instead, add --force",
            as_instance(me)
        ),
    ))
}

/// `me` shares nothing with any other installed service: root, ledger, failure log, metrics address or
/// textfile.
pub(super) fn check_shares_nothing(me: &Service, installed: &[Service]) -> Result<(), UsageError> {
    for other in installed.iter().filter(|s| s.config != me.config) {
        if same_place(&other.watch_root, &me.watch_root) {
            return Err(usage(
                format!(
                    "`{}` is already watched by {}: two services on one root would submit every directory twice",
                    me.watch_root.display(),
                    other.called()
                ),
                format!(
                    "give this service a root of its own (--watch-root), or remove the other first (dirwatcher \
                     uninstall{})",
                    other
                        .instance
                        .as_ref()
                        .map(|n| format!(" --instance {n}"))
                        .unwrap_or_default()
                ),
            ));
        }
        check_outputs(me, other)?;
    }
    Ok(())
}

/// Ledger, failure log and metrics outputs of `me` against one other service.
fn check_outputs(me: &Service, other: &Service) -> Result<(), UsageError> {
    // A plain service beside another is a second `dirwatcher.service`: its own ledger would not make it
    // one (following `--state-file`'s hint ended in the one unit repointed); an instance would.
    let taken = |what: &str, value: String, flag: &str, example: String| {
        let fix = match me.instance {
            Some(_) => format!("give this service its own: {flag} {example}"),
            None => as_instance(me),
        };
        Err(usage(
            format!("{what} `{value}` is already {}'s", other.called()),
            fix,
        ))
    };
    let name = me
        .instance
        .as_ref()
        .map_or("plain".to_string(), |n| n.to_string());
    if me.state_file == other.state_file {
        let example = format!("/var/lib/dirwatcher/{name}/state.db");
        return taken(
            "the ledger",
            me.state_file.display().to_string(),
            "--state-file",
            example,
        );
    }
    if me.failure_log == other.failure_log {
        let example = format!("/var/log/dirwatcher/{name}/failed_jobs.log");
        let log = me.failure_log.display().to_string();
        return taken("the failure log", log, "--failure-log", example);
    }
    if let (Some(a), Some(b)) = (me.listen, other.listen)
        && a == b
        && a.port() != 0
    {
        let mut free = a;
        free.set_port(a.port().wrapping_add(1));
        return taken(
            "the metrics address",
            a.to_string(),
            "--metrics-listen",
            free.to_string(),
        );
    }
    if me.textfile.is_some() && me.textfile == other.textfile {
        let example = format!("/var/lib/prometheus/node-exporter/dirwatcher-{name}.prom");
        let file = me
            .textfile
            .as_deref()
            .unwrap_or(Path::new(""))
            .display()
            .to_string();
        return taken("the metrics textfile", file, "--metrics-textfile", example);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(config: &str, instance: Option<&str>, root: &str) -> Service {
        let name = instance.map(|n| InstanceName::parse(n).unwrap());
        let dir = name.as_ref().map_or("".to_string(), |n| format!("{n}/"));
        Service {
            config: config.into(),
            instance: name,
            watch_root: root.into(),
            state_file: format!("/var/lib/dirwatcher/{dir}state.db").into(),
            failure_log: format!("/var/log/dirwatcher/{dir}failed_jobs.log").into(),
            listen: None,
            textfile: None,
        }
    }

    #[test]
    fn a_service_is_not_repointed_at_another_root_without_force() {
        let old = service("/etc/dirwatcher/config.yaml", None, "/data/a");
        let again = service("/etc/dirwatcher/config.yaml", None, "/data/a");
        let moved = service("/etc/dirwatcher/config.yaml", None, "/data/b");
        let all = [old];
        assert!(check_same_root(&again, &all, None, false).is_ok());
        let e = check_same_root(&moved, &all, None, false).unwrap_err();
        assert!(
            e.fix.contains("--instance NAME") && e.fix.contains("--force"),
            "{e}"
        );
        assert!(check_same_root(&moved, &all, None, true).is_ok());
        let inst = service("/etc/dirwatcher/a.yaml", Some("a"), "/data/a");
        let inst_moved = service("/etc/dirwatcher/a.yaml", Some("a"), "/data/b");
        let e = check_same_root(&inst_moved, &[inst], None, false).unwrap_err();
        assert!(e.problem.contains("dirwatcher@a"), "{e}");
    }

    /// Issue 24: `--config-path second.yaml` over the installed plain service rewrote its unit to run the
    /// new config; the installed unit, not the config path given, says what the service runs.
    #[test]
    fn the_installed_unit_says_which_config_the_plain_service_runs() {
        let first = service("/etc/dirwatcher/config.yaml", None, "/data/a");
        let second = service("/etc/dirwatcher/second.yaml", None, "/data/b");
        let unit = (
            PathBuf::from(PLAIN_UNITS[0]),
            Some(PathBuf::from("/etc/dirwatcher/config.yaml")),
        );
        let e =
            check_same_root(&second, std::slice::from_ref(&first), Some(&unit), false).unwrap_err();
        assert!(
            e.problem
                .contains("runs the config `/etc/dirwatcher/config.yaml`, which watches `/data/a`")
                && e.problem
                    .contains("--config-path `/etc/dirwatcher/second.yaml`"),
            "{e}"
        );
        assert!(
            e.fix.contains("--instance NAME --watch-root /data/b"),
            "{e}"
        );
        assert!(check_same_root(&second, std::slice::from_ref(&first), Some(&unit), true).is_ok());
        // The config it runs, again: no repointing. No unit installed, or an instance: nothing to repoint.
        assert!(check_same_root(&first, std::slice::from_ref(&first), Some(&unit), false).is_ok());
        assert!(check_same_root(&second, std::slice::from_ref(&first), None, false).is_ok());
        let inst = service("/etc/dirwatcher/b.yaml", Some("b"), "/data/b");
        assert!(check_same_root(&inst, &[first], Some(&unit), false).is_ok());
    }

    #[test]
    fn exec_config_reads_the_last_exec_start() {
        let unit = "[Service]\nExecStart=/usr/bin/dirwatcher run --config /etc/a.yaml\n\
                    ExecReload=/usr/bin/dirwatcher check-config --config /etc/x.yaml\n";
        assert_eq!(exec_config(unit), Some("/etc/a.yaml".into()));
        let dropped = format!("{unit}ExecStart=\nExecStart=/opt/dw run -c '/etc/my dir/b.yaml'\n");
        assert_eq!(exec_config(&dropped), Some("/etc/my dir/b.yaml".into()));
        assert_eq!(exec_config("[Service]\nExecStart=/bin/true\n"), None);
    }

    /// A second plain service clashing with the first's ledger or log is told to be an instance, not to
    /// take a ledger of its own (which led to the one unit repointed).
    #[test]
    fn a_plain_clash_with_the_plain_service_points_to_an_instance() {
        let first = service("/etc/dirwatcher/config.yaml", None, "/data/a");
        let second = service("/etc/dirwatcher/second.yaml", None, "/data/b");
        let e = check_shares_nothing(&second, std::slice::from_ref(&first)).unwrap_err();
        assert!(e.problem.contains("the ledger"), "{e}");
        assert!(e.fix.contains("--instance NAME"), "{e}");
        assert!(!e.fix.contains("--state-file"), "{e}");
        let mut own_ledger = second.clone();
        own_ledger.state_file = "/var/lib/dirwatcher/b.db".into();
        let e = check_shares_nothing(&own_ledger, &[first]).unwrap_err();
        assert!(
            e.problem.contains("the failure log") && e.fix.contains("--instance NAME"),
            "{e}"
        );
    }

    #[test]
    fn no_two_services_share_a_root_a_ledger_or_a_metrics_output() {
        let a = service("/etc/dirwatcher/a.yaml", Some("a"), "/data/a");
        let plain = service("/etc/dirwatcher/config.yaml", None, "/data/p");
        let all = [a.clone(), plain];
        assert!(
            check_shares_nothing(&a, &all[..1]).is_ok(),
            "itself is no other"
        );
        let b = service("/etc/dirwatcher/b.yaml", Some("b"), "/data/b");
        assert!(check_shares_nothing(&b, &all).is_ok());
        let on_plain = service("/etc/dirwatcher/b.yaml", Some("b"), "/data/p");
        let e = check_shares_nothing(&on_plain, &all).unwrap_err();
        assert!(e.problem.contains("submit every directory twice"), "{e}");
        let mut same_ledger = b.clone();
        same_ledger.state_file = a.state_file.clone();
        assert!(
            check_shares_nothing(&same_ledger, &all)
                .unwrap_err()
                .fix
                .contains("--state-file")
        );
        let (mut x, mut y) = (a.clone(), b.clone());
        x.listen = Some("127.0.0.1:9187".parse().unwrap());
        y.listen = x.listen;
        let e = check_shares_nothing(&y, &[x.clone()]).unwrap_err();
        assert!(e.fix.contains("--metrics-listen 127.0.0.1:9188"), "{e}");
        y.listen = Some("127.0.0.1:9188".parse().unwrap());
        assert!(check_shares_nothing(&y, &[x.clone()]).is_ok());
        x.textfile = Some("/n/d.prom".into());
        y.textfile = x.textfile.clone();
        assert!(
            check_shares_nothing(&y, &[x])
                .unwrap_err()
                .fix
                .contains("--metrics-textfile")
        );
    }
}
