//! `[database]`: where tickets are kept.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::domain::settings::{Secret, int, lenient, secs};

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    #[serde(deserialize_with = "lenient")]
    pub url: DatabaseUrl,
    #[serde(default = "eight", deserialize_with = "int::<1, 1000, _, _>")]
    pub max_connections: u32,
    /// How long a query waits for a connection before it fails (an
    /// unreachable database fails every store call after this long).
    #[serde(
        rename = "acquire_timeout_secs",
        default = "thirty",
        deserialize_with = "secs::<1, 600, _>"
    )]
    pub acquire_timeout: Duration,
    /// Where chat commands that arrive while the database is unavailable
    /// are kept until it is back (an append-only file, fsynced).
    #[serde(default = "spool_dir", deserialize_with = "lenient")]
    pub spool_dir: PathBuf,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: DatabaseUrl::default(),
            max_connections: eight(),
            acquire_timeout: thirty(),
            spool_dir: spool_dir(),
        }
    }
}

fn eight() -> u32 {
    8
}

fn thirty() -> Duration {
    Duration::from_secs(30)
}

fn spool_dir() -> PathBuf {
    "state/spool".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum DatabaseUrl {
    /// `sqlite://path` (created on first use) or `sqlite::memory:` (`path: None`).
    Sqlite { path: Option<PathBuf> },
    /// `postgres://…`; may carry a password, hence a secret.
    Postgres(Secret),
}

/// Only a stand-in while a failing load goes on.
impl Default for DatabaseUrl {
    fn default() -> Self {
        DatabaseUrl::Sqlite { path: None }
    }
}

impl DatabaseUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "sqlite::memory:" || s == "sqlite://:memory:" {
            return Ok(DatabaseUrl::Sqlite { path: None });
        }
        if let Some(rest) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or("");
            if path.is_empty() {
                return Err("expected sqlite://PATH".into());
            }
            return Ok(DatabaseUrl::Sqlite {
                path: Some(PathBuf::from(path)),
            });
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(Secret::new(s)));
        }
        Err("expected sqlite://PATH, sqlite::memory: or postgres://…".into())
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        DatabaseUrl::parse(&s)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite { path: None } => f.write_str("sqlite::memory:"),
            DatabaseUrl::Sqlite { path: Some(p) } => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(url) => {
                // Show host and database, never the credentials.
                let s = url.expose();
                let after_scheme = s.split_once("://").map(|(_, r)| r).unwrap_or(s);
                let host_db = after_scheme
                    .rsplit_once('@')
                    .map(|(_, r)| r)
                    .unwrap_or(after_scheme);
                write!(f, "postgres://{}", host_db.split('?').next().unwrap_or(""))
            }
        }
    }
}
