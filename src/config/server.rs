//! Where a ledger on a server is (`behavior.ledger: mysql://USER@HOST:PORT/DATABASE`): the address as the
//! config gives it, read and checked, and how it is named in messages.
//!
//! Owns: [`MariaTarget`]. Must never: take a password from the URL (it would show in `check-config` and the
//! process list), or show the password anywhere (it is filled in from a file or a credential).

use std::fmt;

/// Where a ledger on a server is: from `mysql://USER@HOST[:PORT]/DATABASE[?tls=true]`.
#[derive(Clone, PartialEq, Eq)]
pub struct MariaTarget {
    /// Account.
    pub user: String,
    /// Server name or address.
    pub host: String,
    /// TCP port (3306 when the URL names none).
    pub port: u16,
    /// The database dirwatcher's tables live in.
    pub database: String,
    /// Password (from `behavior.ledger_password_file` or the unit's credential; never from the URL).
    pub password: Option<String>,
    /// Speak TLS to the server (`?tls=true`), checking its certificate against the system's roots.
    pub tls: bool,
}

impl fmt::Debug for MariaTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl MariaTarget {
    /// Reads `mysql://USER@HOST[:PORT]/DATABASE[?tls=true]`; the error says what is wrong, in words.
    pub fn parse(url: &str) -> Result<MariaTarget, String> {
        let rest = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
            .ok_or("it does not start with `mysql://`")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (auth, rest) = rest
            .split_once('@')
            .ok_or("it names no user (`mysql://USER@HOST/DATABASE`)")?;
        if auth.contains(':') {
            return Err(
                "it holds a password: a password never goes in the config (it would show in `check-config`); \
                 put it in the file `behavior.ledger_password_file` names"
                    .into(),
            );
        }
        let (hostport, database) = rest
            .split_once('/')
            .ok_or("it names no database (`mysql://USER@HOST/DATABASE`)")?;
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("its port `{p}` is not a number from 1 to 65535"))?,
            ),
            None => (hostport, 3306),
        };
        let tls = match query {
            "" | "tls=false" => false,
            "tls=true" => true,
            other => {
                return Err(format!(
                    "`?{other}` is not known (write `?tls=true` or nothing)"
                ));
            }
        };
        let word = |what: &str, v: &str| {
            if v.is_empty() || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
                Err(format!(
                    "its {what} is empty or holds a space or a control character"
                ))
            } else {
                Ok(v.to_string())
            }
        };
        if !database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        {
            return Err(format!(
                "the database name `{database}` may hold only letters, digits, `_` and `$`"
            ));
        }
        Ok(MariaTarget {
            user: word("user", auth)?,
            host: word("host", host)?,
            port,
            database: word("database", database)?,
            password: None,
            tls,
        })
    }

    /// `mysql://user@host:port/database` (never the password): the ledger's name in messages.
    pub fn describe(&self) -> String {
        format!(
            "mysql://{}@{}:{}/{}{}",
            self.user,
            self.host,
            self.port,
            self.database,
            if self.tls { "?tls=true" } else { "" }
        )
    }
}
