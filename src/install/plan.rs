//! The install plan: every entry the installer puts on the machine (path, content, mode, owner, and what
//! to do when something is already there), how one entry compares with the disk, and the change that
//! brings it there.
//!
//! Must never: print or run commands (the driver in `install/mod.rs` does), or write anything but the
//! change [`assess`] found.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::render::{self, Layout};
use super::system;

/// Who owns an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    Root,
    Service,
}

/// What to do with an existing directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirPolicy {
    /// Create it when missing; an existing one is left as it is (it may be shared, like /opt).
    Ensure,
    /// Create it, and keep its mode and owner as planned (the service's own state and log directories).
    Own,
}

/// What to do with an existing file whose content differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FilePolicy {
    /// Ours: replace it (binary, sample job, unit).
    Replace,
    /// The operator's: only with `--force` (the config).
    KeepUnlessForced,
}

#[derive(Debug)]
pub(super) enum What {
    Dir(DirPolicy),
    File {
        content: Vec<u8>,
        policy: FilePolicy,
    },
}

/// One thing the installer puts on the machine.
#[derive(Debug)]
pub(super) struct Entry {
    /// Path on the target system (without the destdir).
    pub(super) path: PathBuf,
    pub(super) what: What,
    pub(super) mode: u32,
    pub(super) owner: Owner,
}

impl Entry {
    fn dir(path: PathBuf, mode: u32, owner: Owner, policy: DirPolicy) -> Entry {
        Entry {
            path,
            what: What::Dir(policy),
            mode,
            owner,
        }
    }

    /// Every file the installer writes is root's: the service only reads them.
    fn file(path: &Path, content: Vec<u8>, mode: u32, policy: FilePolicy) -> Entry {
        Entry {
            path: path.to_path_buf(),
            what: What::File { content, policy },
            mode,
            owner: Owner::Root,
        }
    }
}

/// The contents of the files that are not fixed text.
pub(super) struct Contents {
    /// This program's own executable.
    pub(super) binary: Vec<u8>,
    /// The rendered config.
    pub(super) config: String,
    /// The rendered unit.
    pub(super) unit: String,
    /// An instance's drop-in for the template unit.
    pub(super) drop_in: Option<String>,
    /// `--smtp-pass`: the file and its content (the service user's alone; never shown in a diff).
    pub(super) smtp_pass: Option<(PathBuf, Vec<u8>)>,
    /// `--db-pass`: the same for the web-app database's password.
    pub(super) db_pass: Option<(PathBuf, Vec<u8>)>,
}

/// The entries of one install, in the order they are put in place (a directory before its files).
pub(super) fn entries(layout: &Layout, install_root: &Path, contents: Contents) -> Vec<Entry> {
    let config_dir = layout
        .config
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let mut entries = vec![
        Entry::dir(
            install_root.to_path_buf(),
            0o755,
            Owner::Root,
            DirPolicy::Ensure,
        ),
        Entry::file(&layout.binary, contents.binary, 0o755, FilePolicy::Replace),
        Entry::file(
            &layout.sample_job,
            render::SAMPLE_JOB.as_bytes().to_vec(),
            0o755,
            FilePolicy::Replace,
        ),
        Entry::dir(config_dir, 0o755, Owner::Root, DirPolicy::Ensure),
        Entry::file(
            &layout.config,
            contents.config.into_bytes(),
            0o644,
            FilePolicy::KeepUnlessForced,
        ),
        Entry::dir(layout.state_dir(), 0o750, Owner::Service, DirPolicy::Own),
        Entry::dir(layout.log_dir(), 0o750, Owner::Service, DirPolicy::Own),
        Entry::file(
            &layout.unit,
            contents.unit.into_bytes(),
            0o644,
            FilePolicy::Replace,
        ),
    ];
    for (path, secret) in contents.smtp_pass.into_iter().chain(contents.db_pass) {
        // After the config directory; `Replace` shows no diff, so the password is never printed.
        entries.push(Entry {
            path,
            what: What::File {
                content: secret,
                policy: FilePolicy::Replace,
            },
            mode: 0o600,
            owner: Owner::Service,
        });
    }
    if let (Some(path), Some(text)) = (&layout.drop_in, contents.drop_in) {
        entries.push(Entry::file(
            path,
            text.into_bytes(),
            0o644,
            FilePolicy::Replace,
        ));
    }
    entries
}

/// How an entry compares with the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    Create,
    Update { diff: String },
    FixModeOwner,
    Unchanged,
    Keep { diff: String },
}

/// Prefixes `p` with the destdir, if any.
pub(super) fn staged(destdir: Option<&Path>, p: &Path) -> PathBuf {
    match destdir {
        Some(d) => d.join(p.strip_prefix("/").unwrap_or(p)),
        None => p.to_path_buf(),
    }
}

/// Owner ids to enforce for each kind of owner (`None`: leave as created).
pub(super) struct Owners {
    pub(super) root: Option<(u32, u32)>,
    pub(super) service: Option<(u32, u32)>,
    pub(super) service_label: String,
}

impl Owners {
    fn ids(&self, o: Owner) -> Option<(u32, u32)> {
        match o {
            Owner::Root => self.root,
            Owner::Service => self.service,
        }
    }

    /// The owner as the plan shows it.
    pub(super) fn label(&self, o: Owner) -> &str {
        match o {
            Owner::Root => "root:root",
            Owner::Service => &self.service_label,
        }
    }
}

/// Compares `e` with what is at `at` (its staged path).
pub(super) fn assess(e: &Entry, at: &Path, owners: &Owners, force: bool) -> anyhow::Result<Change> {
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

/// Makes the disk at `at` what `e` plans, as `change` (from [`assess`]) says.
pub(super) fn apply(e: &Entry, at: &Path, change: &Change, owners: &Owners) -> anyhow::Result<()> {
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
