//! The sections that belong to the bridge as a whole: `[reactions]`,
//! `[outbox]`, `[commands]`, `[ops]` and `[board]`, each with its own rules.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::Check;
use crate::domain::settings::{Each, int, lenient, read, secs, socket_addr, want};

/// Which emoji claim, close or park a ticket.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReactionSettings {
    #[serde(deserialize_with = "emoji")]
    pub claim: Vec<String>,
    #[serde(deserialize_with = "emoji")]
    pub close: Vec<String>,
    #[serde(deserialize_with = "emoji")]
    pub pending: Vec<String>,
}

impl Default for ReactionSettings {
    fn default() -> Self {
        let one = |e: &str| vec![e.to_owned()];
        ReactionSettings {
            claim: vec!["🙋".into(), "👀".into()],
            close: one("✅"),
            pending: one("⏳"),
        }
    }
}

/// A non-empty list of reactions: `:shortcode:` entries become their emoji,
/// so one list serves Matrix (emoji keys) and Slack (names); custom emoji stay `:name:`.
fn emoji<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = read(d, |l: Vec<Each<String>>| {
        let l: Vec<String> = l.into_iter().filter_map(|e| e.0).collect();
        let l = want(!l.is_empty(), l, |_| "must list at least one value".into())?;
        want(l.iter().all(|e| !e.trim().is_empty()), l, |_| {
            "expected non-empty strings".into()
        })
    })?;
    let key = |e: String| crate::domain::command::reaction_key(e.trim());
    Ok(list.unwrap_or_default().into_iter().map(key).collect())
}

impl ReactionSettings {
    /// An emoji may do one thing only.
    pub(super) fn check(&self, c: &mut Check) {
        let mut seen = BTreeSet::new();
        let lists = [
            ("claim", &self.claim),
            ("close", &self.close),
            ("pending", &self.pending),
        ];
        for (key, e) in lists
            .iter()
            .flat_map(|(k, l)| l.iter().map(move |e| (k, e)))
        {
            if !seen.insert(e) {
                let message = format!("{e} is mapped to more than one action");
                c.problem(format!("reactions.{key}"), message);
            }
        }
    }
}

/// How sends are retried, and how many jobs run at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OutboxSettings {
    /// Mail sends and Sent filing are tried this many times on transient
    /// failures before giving up (chat jobs wait out any outage).
    #[serde(deserialize_with = "int::<1, 1000, _, _>")]
    pub max_attempts: u32,
    #[serde(rename = "retry_initial_secs", deserialize_with = "secs::<1, 3600, _>")]
    pub retry_initial: Duration,
    #[serde(rename = "retry_max_secs", deserialize_with = "secs::<1, 86_400, _>")]
    pub retry_max: Duration,
    /// A chat outage at least this long is reported in each room when
    /// posting resumes.
    #[serde(
        rename = "chat_outage_notice_secs",
        deserialize_with = "secs::<1, 86_400, _>"
    )]
    pub chat_outage_notice: Duration,
    /// Jobs performed at once, each from a different lane (a chat room,
    /// a ticket's mail, a timer): a room whose posts are paced or
    /// rate-limited holds one worker, not the others' rooms.
    #[serde(deserialize_with = "int::<1, 64, _, _>")]
    pub workers: u32,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            max_attempts: 12,
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
            chat_outage_notice: Duration::from_secs(60),
            workers: 4,
        }
    }
}

impl OutboxSettings {
    pub(super) fn check(&self, c: &mut Check) {
        if self.retry_max < self.retry_initial && c.clean("outbox") {
            let message = "must be at least retry_initial_secs";
            c.problem("outbox.retry_max_secs", message);
        }
    }
}

/// How chat commands behave, whatever the platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CommandSettings {
    /// A reply waits this long before it is sent; `!undo` cancels it meanwhile.
    #[serde(rename = "undo_secs", deserialize_with = "secs::<0, 3600, _>")]
    pub undo_window: Duration,
    /// Where `!template NAME` finds `NAME.md`.
    #[serde(deserialize_with = "lenient")]
    pub templates_dir: PathBuf,
}

impl Default for CommandSettings {
    fn default() -> Self {
        CommandSettings {
            undo_window: Duration::from_secs(10),
            templates_dir: PathBuf::from("bot-config/templates"),
        }
    }
}

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
    #[serde(rename = "stale_after_secs", deserialize_with = "secs::<2, 86_400, _>")]
    pub stale_after: Duration,
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

fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    read(d, socket_addr)
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

/// The board in the chat: a pinned message per Matrix room, edited in
/// place, and Slack's App Home.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BoardSettings {
    /// Off by default: a room gets a new pinned message when it is turned on.
    #[serde(deserialize_with = "lenient")]
    pub enabled: bool,
    /// A Matrix room's board is edited at most once per this many
    /// milliseconds; changes in between are gathered into the next edit.
    /// The first change after a quiet spell is drawn at once. Synapse's
    /// default `rc_message` allows a message every 5 s after a burst of 10,
    /// and the bot's ticket posts share that budget.
    #[serde(deserialize_with = "int::<100, 600_000, _, _>")]
    pub matrix_interval_ms: u64,
    /// Each viewer's Slack App Home is published at most once per this many
    /// milliseconds.
    #[serde(deserialize_with = "int::<100, 600_000, _, _>")]
    pub slack_interval_ms: u64,
}

impl Default for BoardSettings {
    fn default() -> Self {
        BoardSettings {
            enabled: false,
            matrix_interval_ms: 5_000,
            slack_interval_ms: 2_000,
        }
    }
}

impl BoardSettings {
    pub fn matrix_interval(&self) -> Duration {
        Duration::from_millis(self.matrix_interval_ms)
    }

    pub fn slack_interval(&self) -> Duration {
        Duration::from_millis(self.slack_interval_ms)
    }
}
