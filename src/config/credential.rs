//! systemd credentials (`LoadCredential=NAME:FILE`): where the service manager put a secret for this
//! service, `$CREDENTIALS_DIRECTORY/NAME`.
//!
//! Owns: the name of the credential that stands for a secret key (`behavior.smtp_pass_file` →
//! `smtp_pass`, `notify.webhook_token_file` → `webhook_token`, `db.pass_file` → `db_pass`) and finding it. Must never: read the
//! secret (the config's secret reader does, with the same one-line rule as for a file), look anywhere but
//! the directory systemd names, or say the value.

use std::path::{Path, PathBuf};

/// The variable systemd sets for every command of a unit that has credentials (`ExecStart=`,
/// `ExecReload=`, …; systemd.exec(5), "Credentials").
pub const DIRECTORY_VAR: &str = "CREDENTIALS_DIRECTORY";

/// The credential that stands for the secret file key `key` (dotted): its leaf without `_file`
/// (`behavior.smtp_pass_file` → `smtp_pass`), prefixed by the section where the leaf alone would not say
/// whose secret it is (`db.pass_file` → `db_pass`).
pub fn name_of(key: &str) -> String {
    let (section, leaf) = key.split_once('.').unwrap_or(("", key));
    let name = leaf.strip_suffix("_file").unwrap_or(leaf);
    match section {
        "db" => format!("db_{name}"),
        _ => name.to_string(),
    }
}

/// `$CREDENTIALS_DIRECTORY/name`, when this process runs in a unit that was given that credential;
/// `None` anywhere else (an operator's shell, a unit without it).
pub fn path(name: &str) -> Option<PathBuf> {
    in_dir(
        std::env::var_os(DIRECTORY_VAR).as_deref().map(Path::new),
        name,
    )
}

fn in_dir(dir: Option<&Path>, name: &str) -> Option<PathBuf> {
    let p = dir.filter(|d| d.is_absolute())?.join(name);
    p.exists().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_is_named_after_the_file_key() {
        assert_eq!(name_of("behavior.smtp_pass_file"), "smtp_pass");
        assert_eq!(name_of("notify.webhook_token_file"), "webhook_token");
        assert_eq!(name_of("db.pass_file"), "db_pass");
    }

    #[test]
    fn a_credential_counts_only_when_systemd_gave_it() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("smtp_pass"), "pw\n").unwrap();
        assert_eq!(
            in_dir(Some(d.path()), "smtp_pass"),
            Some(d.path().join("smtp_pass"))
        );
        assert_eq!(in_dir(Some(d.path()), "webhook_token"), None);
        assert_eq!(in_dir(None, "smtp_pass"), None);
        assert_eq!(in_dir(Some(Path::new("relative")), "smtp_pass"), None);
    }
}
