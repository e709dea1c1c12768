//! The original's `db:` section: the web application's MySQL/MariaDB database that every submission and
//! end is written to (its `jobs` table), as the Python original did.
//!
//! Owns: the raw section, its validation, and where its password comes from. Must never: connect to the
//! database (that is [`crate::bridge`]), or show the password anywhere.

use serde::Deserialize;

use super::keys;
use super::yaml::{self, EffectiveYaml};
use super::{ConfigError, S, Secret, Validator};

/// The original's `db:` section as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDb {
    host: S<String>,
    port: S<i64>,
    name: S<String>,
    user: S<String>,
    pass: S<String>,
    pass_file: S<String>,
    pass_env: S<String>,
}

/// The web application's database (`db:`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbConfig {
    /// Host name or address (`127.0.0.1` unless set, as the original).
    pub host: String,
    /// Port (3306 unless set).
    pub port: u16,
    /// Database name (`hm_app_db` unless set).
    pub name: String,
    /// User (`hmapp` unless set).
    pub user: String,
    /// Password (`pass`, `pass_file` or `pass_env`); `None`: none.
    pub pass: Option<Secret>,
    /// Where the password comes from, for `check-config` (`literal`, `file:PATH`, `env:NAME`).
    pub pass_source: Option<String>,
}

impl DbConfig {
    /// `user@host:port/name`, for logs and `status` (never the password).
    pub fn describe(&self) -> String {
        format!("{}@{}:{}/{}", self.user, self.host, self.port, self.name)
    }
}

impl Validator<'_> {
    /// `None` when the section is absent or empty (the original's `if db_raw`).
    pub(super) fn db(&self, raw: Option<RawDb>) -> Result<Option<DbConfig>, ConfigError> {
        use keys::defaults;
        let Some(d) = raw else {
            return Ok(None);
        };
        let given = |v: &S<String>| v.is_some();
        if !(given(&d.host)
            || d.port.is_some()
            || given(&d.name)
            || given(&d.user)
            || given(&d.pass)
            || given(&d.pass_file)
            || given(&d.pass_env))
        {
            return Ok(None);
        }
        let text = |v: &S<String>, key: &keys::Key, default: &str| -> Result<String, ConfigError> {
            let Some(v) = v else {
                return Ok(default.to_string());
            };
            let t = v.value.trim();
            if t.is_empty() || t.chars().any(char::is_control) {
                return Err(self.err(
                    key.name,
                    Some(v.referenced.line()),
                    format!("{:?} is empty or holds a control character", v.value),
                    format!(
                        "write e.g. `{}: {default}`, or leave the key out for that default",
                        key.leaf()
                    ),
                ));
            }
            Ok(t.to_string())
        };
        let host = text(&d.host, &keys::DB_HOST, defaults::DB_HOST)?;
        let name = text(&d.name, &keys::DB_NAME, defaults::DB_NAME)?;
        let user = text(&d.user, &keys::DB_USER, defaults::DB_USER)?;
        let port = match &d.port {
            None => defaults::DB_PORT,
            Some(p) => u16::try_from(p.value)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    self.err(
                        keys::DB_PORT.name,
                        Some(p.referenced.line()),
                        format!("{} is not a TCP port", p.value),
                        format!("write e.g. `port: {}`", defaults::DB_PORT),
                    )
                })?,
        };
        let pass = self.secret(
            Some((&keys::DB_PASS, &d.pass)),
            (&keys::DB_PASS_FILE, &d.pass_file),
            (&keys::DB_PASS_ENV, &d.pass_env),
        )?;
        Ok(Some(DbConfig {
            host,
            port,
            name,
            user,
            pass_source: pass.as_ref().map(|(_, s)| s.clone()),
            pass: pass.map(|(p, _)| p),
        }))
    }
}

/// The section's lines of the effective config; without a `db:` section every key is `null`, so that the
/// effective config read back keeps the bridge off.
pub(super) fn put(y: &mut EffectiveYaml, d: Option<&DbConfig>) {
    use keys::*;
    y.put(&DB_HOST, yaml::opt(d.map(|d| d.host.as_str())));
    y.put(&DB_PORT, d.map_or("null".into(), |d| d.port.to_string()));
    y.put(&DB_NAME, yaml::opt(d.map(|d| d.name.as_str())));
    y.put(&DB_USER, yaml::opt(d.map(|d| d.user.as_str())));
    yaml::put_secret(
        y,
        [Some(&DB_PASS), Some(&DB_PASS_FILE), Some(&DB_PASS_ENV)],
        d.and_then(|d| d.pass_source.as_deref()),
    );
}
