//! The name of one of several dirwatcher services on a host (`dirwatcher@NAME.service`, config
//! `/etc/dirwatcher/NAME.yaml`): one rule for `behavior.instance` and for `install --instance`.
//!
//! Must never: touch the file system; this is a rule about text.

use std::fmt;

/// The longest name: far below systemd's unit-name limit, short enough for a label and a path.
const MAX_LEN: usize = 64;

/// The one name an instance may not take: its config would be the plain service's `config.yaml`.
const RESERVED: &str = "config";

/// A valid instance name: 1–64 of ASCII letters, digits, `_`, `.`, `-`, starting with a letter or a
/// digit, and not `config`. Safe as a systemd instance (no escaping: `%i` is the name itself), a file
/// name and a metric label value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceName(String);

impl InstanceName {
    /// Checks `name`; the error says what is wrong with it (the caller adds where it came from).
    pub fn parse(name: &str) -> Result<InstanceName, String> {
        let first_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !first_ok || !rest_ok || name.len() > MAX_LEN {
            return Err(format!(
                "`{name}` is not an instance name: it must be 1 to {MAX_LEN} letters, digits, `_`, `.` or `-`, \
                 starting with a letter or a digit"
            ));
        }
        if name == RESERVED {
            return Err(format!(
                "`{name}` cannot be an instance name: its config would be the plain service's \
                 /etc/dirwatcher/config.yaml"
            ));
        }
        Ok(InstanceName(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_safe_as_a_unit_instance_a_file_and_a_label_are_taken() {
        for n in [
            "a",
            "microscope1",
            "cryo-em_2",
            "beamline.7",
            "0day",
            &"x".repeat(64),
        ] {
            assert_eq!(InstanceName::parse(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn names_that_need_escaping_or_clash_are_refused() {
        for n in [
            "",
            "-a",
            ".a",
            "_a",
            "a b",
            "a/b",
            "a@b",
            "ä",
            "a\\x2d",
            "a%i",
            &"x".repeat(65),
            "config",
        ] {
            assert!(InstanceName::parse(n).is_err(), "{n:?} was taken");
        }
    }
}
