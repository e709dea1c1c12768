//! Secrets (passwords, tokens): at most one source per secret — the value, a file, an environment
//! variable — with the unit's systemd credential first.
//!
//! Owns: [`Secret`] and reading one. Must never: show a secret (its `Debug` is `<secret>`), or keep an
//! environment secret where a child could inherit it.

use std::fmt;

use serde_saphyr::Spanned;

use super::keys::Key;
use super::{ConfigError, S, Secrets, Validator, credential};

/// A password or token: shown as `<secret>` by `Debug`, never formatted anywhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that hands it to a child process (on its stdin).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl Validator<'_> {
    /// A secret from at most one of: the value itself, a file, an environment variable. Returns it with
    /// where it came from (`literal`, `file:PATH`, `env:NAME`).
    pub(super) fn secret(
        &self,
        literal: Option<(&Key, &S<String>)>,
        file: (&Key, &S<String>),
        env: (&Key, &S<String>),
    ) -> Result<Option<(Secret, String)>, ConfigError> {
        let given = |v: &S<String>| v.as_ref().filter(|s| !s.value.is_empty()).is_some();
        let set: Vec<&Key> = [literal, Some(file), Some(env)]
            .into_iter()
            .flatten()
            .filter(|(_, v)| given(v))
            .map(|(k, _)| k)
            .collect();
        if set.len() > 1 {
            return Err(self.err(
                set[1].name,
                None,
                format!("`{}` and `{}` are both set", set[0].leaf(), set[1].leaf()),
                "keep one source of the secret",
            ));
        }
        // The unit's credential (`LoadCredential=smtp_pass:FILE`) comes first, whatever key the config
        // uses: the service manager read the file as root and hands it to this service alone.
        let credential = credential::name_of(file.0.name);
        if let Some(p) = credential::path(&credential) {
            return self.credential_secret(&credential, &p, file.0, env.1);
        }
        if let Some((_, Some(v))) = literal.filter(|(_, v)| given(v)) {
            return Ok(Some((Secret(v.value.clone()), "literal".into())));
        }
        if let (k, Some(v)) = file
            && !v.value.is_empty()
        {
            return self.file_secret(k, v);
        }
        if let (k, Some(v)) = env
            && !v.value.is_empty()
        {
            // Withheld from every child from now on: the secret is the daemon's alone.
            crate::process::withhold_secret(&v.value);
            // After start the variable is gone from the daemon's environment; its value was kept.
            let secret = crate::process::env_secret(&v.value);
            if secret.is_none() && self.secrets == Secrets::IfReadable {
                self.unread.borrow_mut().push(format!(
                    "`{}`: the environment variable `{}` is not set here",
                    k.name, v.value
                ));
                return Ok(None);
            }
            let Some(secret) = secret else {
                return Err(self.err(
                    k.name,
                    Some(v.referenced.line()),
                    format!("the environment variable `{}` is not set", v.value),
                    "set it for the service (systemd: `Environment=` or `EnvironmentFile=`), or use the `_file` key",
                ));
            };
            return Ok(Some((Secret(secret), format!("env:{}", v.value))));
        }
        Ok(None)
    }

    /// The secret from the unit's credential `credential` at `p` (an environment secret the config also names
    /// is withheld from children all the same).
    fn credential_secret(
        &self,
        credential: &str,
        p: &std::path::Path,
        file: &Key,
        env: &S<String>,
    ) -> Result<Option<(Secret, String)>, ConfigError> {
        if let Some(v) = env {
            crate::process::withhold_secret(&v.value);
        }
        let text = std::fs::read_to_string(p);
        let secret = text.as_deref().map(|t| t.trim_end_matches(['\n', '\r']));
        match secret {
            Ok(s) if !s.is_empty() && !s.contains(['\n', '\r']) => Ok(Some((
                Secret(s.to_string()),
                format!("credential:{credential}"),
            ))),
            Ok(_) => Err(self.err(
                file.name,
                None,
                format!(
                    "the credential `{credential}` (`{}`) must hold the secret on one line",
                    p.display()
                ),
                "give `LoadCredential=` a file that holds only the secret",
            )),
            Err(e) if self.secrets == Secrets::IfReadable => {
                self.unread.borrow_mut().push(format!(
                    "credential `{credential}` (`{}`): {e}",
                    p.display()
                ));
                Ok(None)
            }
            Err(e) => Err(self.err(
                file.name,
                None,
                format!(
                    "cannot read the credential `{credential}` (`{}`): {e}",
                    p.display()
                ),
                "check the unit's `LoadCredential=` line and its file",
            )),
        }
    }

    /// The secret in the file `v` names (key `k`): one line.
    fn file_secret(
        &self,
        k: &Key,
        v: &Spanned<String>,
    ) -> Result<Option<(Secret, String)>, ConfigError> {
        let line = Some(v.referenced.line());
        let text = match std::fs::read_to_string(&v.value) {
            Ok(t) => t,
            Err(e) if self.secrets == Secrets::IfReadable => {
                self.unread
                    .borrow_mut()
                    .push(format!("`{}` (`{}`): {e}", k.name, v.value));
                return Ok(None);
            }
            Err(e) => {
                return Err(self.err(
                    k.name,
                    line,
                    format!("cannot read `{}`: {e}", v.value),
                    "give a file the service user can read (mode 0600 or 0640), holding only the secret",
                ));
            }
        };
        let secret = text.trim_end_matches(['\n', '\r']).to_string();
        if secret.is_empty() || secret.contains(['\n', '\r']) {
            return Err(self.err(
                k.name,
                line,
                format!("`{}` must hold the secret on one line", v.value),
                "write only the secret into the file",
            ));
        }
        Ok(Some((Secret(secret), format!("file:{}", v.value))))
    }
}
