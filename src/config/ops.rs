//! `[ops]`: the `/metrics` and `/healthz` endpoints and the mailbox watchdog.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::Check;
use super::de::{Listen, lenient};

/// Operations: the `/metrics` and `/healthz` endpoints and the mailbox watchdog.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OpsSettings {
    /// Where `/metrics` and `/healthz` are served; `None`: not served.
    #[serde(deserialize_with = "listen")]
    pub listen: Option<SocketAddr>,
    /// The endpoints have no authentication and `/healthz` names the
    /// mailboxes and their errors: anything beyond this machine must be
    /// asked for explicitly.
    #[serde(deserialize_with = "lenient")]
    pub allow_non_loopback: bool,
    /// A mailbox not checked successfully for this long is stale: the chat
    /// is told once, and `/healthz` answers 503 until it recovers.
    #[serde(
        rename = "stale_after_secs",
        deserialize_with = "super::de::secs::<2, 86_400, _>"
    )]
    pub stale_after: Duration,
}

impl OpsSettings {
    /// How often a healthy IMAP session proves itself (a re-issued IDLE or a
    /// poll): well inside `stale_after`, so one slow check never makes a
    /// working mailbox look stale.
    pub fn check_every(&self) -> Duration {
        self.stale_after / 3
    }

    pub(super) fn check(&self, c: &mut Check) {
        if let Some(addr) = self.listen
            && !addr.ip().is_loopback()
            && !self.allow_non_loopback
        {
            let message = format!(
                "{addr} is not a loopback address, and /metrics and /healthz have no \
                 authentication: listen on 127.0.0.1 (behind a proxy), or set \
                 ops.allow_non_loopback = true"
            );
            c.problem("ops.listen", message);
        }
    }
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings {
            listen: None,
            allow_non_loopback: false,
            stale_after: Duration::from_secs(300),
        }
    }
}

fn listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    Ok(lenient::<Option<Listen>, D>(d)?.map(|l| l.0))
}
