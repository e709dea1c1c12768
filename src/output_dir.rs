//! The job output folder (`job.output`): where jobs running as the service user write their stdout and
//! stderr. A job opens that file by name, following symlinks and truncating, so whoever can write the
//! folder can make the job write into any file the service user may write (the ledger, or a root-only file
//! when run as root). So the folder is one the daemon creates itself and checks before jobs are submitted:
//! no symlink on its way below the root, owned by this process's user, writable by no one else.
//!
//! Owns: which folder `job.output` names ([`place`]), creating and checking it ([`prepare`]), and the
//! warnings `check-config` gives about output places it cannot check ([`warnings`]). Must never: follow a
//! symlink while creating, change the mode or owner of anything it did not create, or write a file into
//! the folder.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::config::Config;

/// Mode of the folders the daemon creates: the group may read job output, others nothing.
pub const FOLDER_MODE: u32 = 0o750;

/// Where job output goes, as far as the daemon can vouch for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A fixed folder below the root (the default `<root>/.dirwatcher/logs`): created and checked.
    Checked {
        /// The watched root.
        root: PathBuf,
        /// The folder, relative to the root (plain names only).
        rel: PathBuf,
    },
    /// `job.output: ""`: Slurm's own default, `slurm-<id>.out` in the job's working directory (the data
    /// directory with `chdir_to_subdir`).
    SlurmDefault,
    /// Directly in the root, which others may write.
    Root,
    /// The folder has `%` in it: it differs per job and cannot be created or checked beforehand.
    Pattern(PathBuf),
    /// Outside the root: the operator's to create and keep private.
    Outside(PathBuf),
}

/// Works out the place `job.output` names.
pub fn place(cfg: &Config) -> Place {
    let Some(out) = &cfg.job.output else {
        return Place::SlurmDefault;
    };
    let root = &cfg.watch.root;
    let full = root.join(out);
    let folder = full.parent().unwrap_or(root).to_path_buf();
    if folder.as_os_str().as_encoded_bytes().contains(&b'%') {
        return Place::Pattern(folder);
    }
    match folder.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => Place::Root,
        Ok(rel) if rel.components().all(|c| matches!(c, Component::Normal(_))) => Place::Checked {
            root: root.clone(),
            rel: rel.to_path_buf(),
        },
        _ => Place::Outside(folder),
    }
}

/// Why the output folder cannot be used; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FolderProblem {
    /// A symlink on the way (planted, or left by an operator).
    #[error(
        "`{0}` is a symlink: a job would write wherever it points; remove it, and dirwatcher creates a real folder"
    )]
    Symlink(PathBuf),
    /// Something other than a directory.
    #[error("`{0}` is not a directory; move it away, and dirwatcher creates the folder")]
    NotADirectory(PathBuf),
    /// Someone else's folder (created before the daemon could).
    #[error(
        "`{path}` belongs to uid {owner}, not to this service (uid {me}): its owner could plant symlinks in it; \
         remove it (after checking what is inside), and dirwatcher creates its own"
    )]
    Owner {
        /// The folder.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's user.
        me: u32,
    },
    /// Writable by the group or by others.
    #[error(
        "`{path}` is writable by others (mode {mode:04o}): they could plant symlinks in it; `chmod go-w` it"
    )]
    Writable {
        /// The folder.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Creating or looking at it failed.
    #[error("cannot create or check `{path}`: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

impl FolderProblem {
    /// The folder the problem is about.
    pub fn path(&self) -> &Path {
        match self {
            FolderProblem::Symlink(p) | FolderProblem::NotADirectory(p) => p,
            FolderProblem::Owner { path, .. }
            | FolderProblem::Writable { path, .. }
            | FolderProblem::Io { path, .. } => path,
        }
    }
}

/// Creates `<root>/<rel>` one level at a time where it is missing (mode [`FOLDER_MODE`], exactly), and
/// checks every level below the root: a real directory (never a symlink), owned by `uid`, not writable by
/// group or others. The root itself is not checked here (it is shared by design).
///
/// Each level is looked at without following links before the next is created inside it, so nothing is
/// ever created through a planted link. What stays is the window between this check and the job opening
/// its file; a root with the sticky bit (or writable by no one else) closes it: nobody else can rename the
/// daemon's own folder away and put another in its place.
pub fn prepare(root: &Path, rel: &Path, uid: u32) -> Result<(), FolderProblem> {
    prepare_for(root, rel, uid, None)
}

/// [`prepare`], and with `group` (`job.output_group`) every level gets that group and the setgid bit
/// (mode 02750), so the output files created inside carry it: its members may read them, others not.
pub fn prepare_for(
    root: &Path,
    rel: &Path,
    uid: u32,
    group: Option<u32>,
) -> Result<(), FolderProblem> {
    let mut path = root.to_path_buf();
    for c in rel.components() {
        path.push(c);
        let io = |source| FolderProblem::Io {
            path: path.clone(),
            source,
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // mkdir never follows a link at its last component: a link planted meanwhile is EEXIST.
                std::fs::DirBuilder::new()
                    .mode(FOLDER_MODE)
                    .create(&path)
                    .map_err(io)?;
                // The umask may have cut the mode down further; make it exactly the documented one.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(FOLDER_MODE))
                    .map_err(io)?;
                std::fs::symlink_metadata(&path).map_err(io)?
            }
            Err(e) => return Err(io(e)),
        };
        check(&path, &meta, uid)?;
        if let Some(gid) = group
            && (meta.gid() != gid || meta.mode() & 0o2000 == 0)
        {
            // Ours (checked above): the group, then setgid on top of the mode it has.
            std::os::unix::fs::chown(&path, None, Some(gid)).map_err(io)?;
            let mode = (meta.mode() & 0o7777) | 0o2000;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        }
    }
    Ok(())
}

fn check(path: &Path, meta: &std::fs::Metadata, uid: u32) -> Result<(), FolderProblem> {
    if meta.file_type().is_symlink() {
        return Err(FolderProblem::Symlink(path.to_path_buf()));
    }
    if !meta.is_dir() {
        return Err(FolderProblem::NotADirectory(path.to_path_buf()));
    }
    if meta.uid() != uid {
        return Err(FolderProblem::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me: uid,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(FolderProblem::Writable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// This process's effective user: the owner the output folder must have.
pub fn my_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// What `check-config` (and the daemon at start) warns about: output places that cannot be checked, or
/// that sit where others can plant symlinks.
pub fn warnings(cfg: &Config) -> Vec<String> {
    let key = crate::config::keys::JOB_OUTPUT.name;
    let risk = "whoever can write there can plant a symlink named like the next job's output, and the job \
                (running as the service user) writes through it";
    let fix = format!(
        "remove `{key}` to use the default `<root>/{}`",
        crate::config::defaults::OUTPUT
    );
    match place(cfg) {
        Place::Checked { rel, .. } => {
            let first = rel.components().next().map(|c| c.as_os_str().to_owned());
            match first {
                Some(f) if !f.as_encoded_bytes().starts_with(b".") => vec![format!(
                    "`{key}` puts job output in `{}`, inside `{}`, which the watcher treats as a data directory: \
                     a data directory belongs to whoever made it, so dirwatcher refuses to submit while that \
                     folder is not its own; start the folder's first name with `.`, or {fix}",
                    cfg.watch.root.join(&rel).display(),
                    cfg.watch.root.join(&f).display(),
                )],
                _ => Vec::new(),
            }
        }
        Place::SlurmDefault => {
            let into = if cfg.job.chdir_to_subdir {
                "each data directory"
            } else {
                "the daemon's working directory"
            };
            vec![format!(
                "`{key}` is empty: Slurm writes `slurm-<id>.out` into {into}; {risk}; {fix}"
            )]
        }
        Place::Root => vec![format!(
            "`{key}` puts job output directly into the root `{}`: {risk}; {fix}",
            cfg.watch.root.display()
        )],
        Place::Pattern(folder) => vec![format!(
            "`{key}`'s folder `{}` has `%` in it, so dirwatcher can neither create nor check it; make sure no \
             one else can write there, or {fix}",
            folder.display()
        )],
        Place::Outside(folder) => match std::fs::symlink_metadata(&folder) {
            Ok(m) if m.file_type().is_symlink() || m.mode() & 0o022 != 0 => vec![format!(
                "`{key}`'s folder `{}` is a symlink or writable by others: {risk}; `chmod go-w` it, or {fix}",
                folder.display()
            )],
            _ => Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn cfg(root: &Path, output_line: &str) -> Config {
        let y = format!(
            "watch:\n  root: {root:?}\njob:\n  wrap_cmd: echo\n{output_line}behavior:\n  state_file: {:?}\n",
            root.join("state.db")
        );
        Config::parse(&y, Path::new("/x.yaml")).unwrap()
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn the_default_is_a_checked_hidden_folder_and_warns_nothing() {
        let t = tempfile::tempdir().unwrap();
        let c = cfg(t.path(), "");
        assert_eq!(
            place(&c),
            Place::Checked {
                root: t.path().to_path_buf(),
                rel: PathBuf::from(".dirwatcher/logs")
            }
        );
        assert!(warnings(&c).is_empty(), "{:?}", warnings(&c));
    }

    #[test]
    fn places_that_cannot_be_checked_are_warned_about() {
        let t = tempfile::tempdir().unwrap();
        let cases = [
            ("  output: \"\"\n", "each data directory"),
            ("  output: \"%j.out\"\n", "directly into the root"),
            (
                "  output: \"case1/logs/%j.out\"\n",
                "treats as a data directory",
            ),
            ("  output: \".logs/%u/%j.out\"\n", "has `%` in it"),
        ];
        for (line, says) in cases {
            let w = warnings(&cfg(t.path(), line));
            assert_eq!(w.len(), 1, "{line}: {w:?}");
            assert!(w[0].contains(says), "{line}: {}", w[0]);
            assert!(w[0].contains("job.output"), "{}", w[0]);
        }
        let outside = t.path().join("shared-logs");
        std::fs::create_dir(&outside).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o777)).unwrap();
        let line = format!("  output: {:?}\n", outside.join("%j.out"));
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let w = warnings(&cfg(&root, &line));
        assert!(w.len() == 1 && w[0].contains("writable by others"), "{w:?}");
    }

    #[test]
    fn prepare_creates_every_missing_level_with_its_mode_whatever_the_umask() {
        let t = tempfile::tempdir().unwrap();
        prepare(t.path(), Path::new(".dirwatcher/logs"), my_uid()).unwrap();
        for p in [".dirwatcher", ".dirwatcher/logs"] {
            assert_eq!(mode_of(&t.path().join(p)), FOLDER_MODE, "{p}");
        }
        // Again: nothing to create, everything checks out.
        prepare(t.path(), Path::new(".dirwatcher/logs"), my_uid()).unwrap();
    }

    #[test]
    fn a_planted_symlink_is_refused_and_nothing_is_created_through_it() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        symlink(&elsewhere, root.join(".dirwatcher")).unwrap();
        let e = prepare(&root, Path::new(".dirwatcher/logs"), my_uid()).unwrap_err();
        assert!(
            matches!(&e, FolderProblem::Symlink(p) if p == &root.join(".dirwatcher")),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        assert_eq!(e.path(), root.join(".dirwatcher"));
    }

    #[test]
    fn a_folder_of_someone_else_or_writable_by_others_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let logs = t.path().join(".dirwatcher/logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare(t.path(), Path::new(".dirwatcher/logs"), my_uid()).unwrap_err();
        assert!(
            matches!(e, FolderProblem::Writable { mode: 0o777, .. }),
            "{e}"
        );
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(t.path(), Path::new(".dirwatcher/logs"), my_uid()).unwrap();
        let e = prepare(t.path(), Path::new(".dirwatcher/logs"), my_uid() + 1).unwrap_err();
        assert!(matches!(e, FolderProblem::Owner { .. }), "{e}");
        assert!(
            e.to_string().contains(".dirwatcher`"),
            "names the folder: {e}"
        );
    }
}
