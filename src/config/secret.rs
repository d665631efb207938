//! Secrets: a type that never shows them, and where they come from.

use std::fmt;
use std::path::PathBuf;

use super::Check;
use super::de::Key;

/// A secret value (password, token). Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to read the value: greppable, so every use is deliberate.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One secret as `KEY = "…"`, `KEY_env = "VAR"` or `KEY_file = "PATH"`
/// (trailing newline dropped): at most one of the three.
pub(super) struct SecretKeys(pub Key<String>, pub Key<String>, pub Key<PathBuf>);

impl SecretKeys {
    /// `Ok(None)`: none given; `Err(())`: a problem is recorded.
    pub(super) fn resolve(self, c: &mut Check, at: &str, key: &str) -> Result<Option<Secret>, ()> {
        let keys = [key.to_owned(), format!("{key}_env"), format!("{key}_file")];
        let given = [self.0.given(), self.1.given(), self.2.given()];
        let given: Vec<&str> = keys
            .iter()
            .zip(given)
            .filter(|k| k.1)
            .map(|k| k.0.as_str())
            .collect();
        if given.len() > 1 {
            c.problem(
                format!("{at}.{key}"),
                format!("give only one of {}", given.join(", ")),
            );
            return Err(());
        }
        match self {
            SecretKeys(Key::Is(s), ..) => Ok(Some(Secret::new(s))),
            SecretKeys(_, Key::Is(var), _) => c
                .env(&format!("{at}.{key}_env"), Key::Is(var))
                .map(Some)
                .ok_or(()),
            SecretKeys(.., Key::Is(file)) => match std::fs::read_to_string(&file) {
                Ok(s) => Ok(Some(Secret::new(s.trim_end_matches(['\r', '\n'])))),
                Err(e) => {
                    let message = format!("cannot read {}: {e}", file.display());
                    c.problem(format!("{at}.{key}_file"), message);
                    Err(())
                }
            },
            SecretKeys(Key::Absent, Key::Absent, Key::Absent) => Ok(None),
            _ => Err(()),
        }
    }
}

impl Check<'_> {
    /// The secret in the environment variable that the key at `path` names;
    /// `None` and a problem if the key is wrong, or required and absent, or
    /// the variable is unset.
    pub(super) fn env(&mut self, path: &str, var: Key<String>) -> Option<Secret> {
        let var = self.need(var, path)?;
        match (self.env)(&var) {
            Some(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                self.problem(path, format!("environment variable {var} is not set"));
                None
            }
        }
    }
}
