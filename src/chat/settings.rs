//! `[matrix]`, `[slack]` and `[chat]`: the chat platforms' settings. Which
//! secrets a platform needs (by `mode`, or one of two for Matrix) is checked
//! by the load's cross-field pass.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::domain::settings::{Secret, http_url, int, lenient, read, text, want};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MatrixSettings {
    #[serde(deserialize_with = "http_url")]
    pub homeserver: String,
    #[serde(deserialize_with = "user_id")]
    pub user_id: String,
    /// Set by the load from `password` or `access_token` (each also as
    /// `…_env` or `…_file`): exactly one.
    #[serde(skip)]
    pub auth: MatrixAuth,
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) password: Option<Secret>,
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) access_token: Option<Secret>,
    #[serde(default = "state_dir", deserialize_with = "lenient")]
    pub state_dir: PathBuf,
    /// Room power level needed to claim, reply or change a ticket.
    #[serde(default, deserialize_with = "int::<-1_000_000, 1_000_000, _, _>")]
    pub min_power_level: i64,
    #[serde(default = "device_name", deserialize_with = "lenient")]
    pub device_name: String,
}

#[derive(Debug, Clone)]
pub enum MatrixAuth {
    Password(Secret),
    AccessToken(Secret),
}

impl Default for MatrixAuth {
    fn default() -> Self {
        MatrixAuth::Password(Secret::default())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    #[default]
    Socket,
    Events,
}

/// Each secret is given as `KEY`, `KEY_env` or `KEY_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SlackSettings {
    #[serde(deserialize_with = "lenient")]
    pub mode: SlackMode,
    /// Always needed; empty only until the load reports it missing.
    #[serde(deserialize_with = "lenient")]
    pub bot_token: Secret,
    /// Needed by Socket Mode.
    #[serde(deserialize_with = "lenient")]
    pub app_token: Option<Secret>,
    /// Needed by the Events API.
    #[serde(deserialize_with = "lenient")]
    pub signing_secret: Option<Secret>,
    #[serde(deserialize_with = "listen")]
    pub listen: SocketAddr,
    /// Web API base without a trailing slash; `None`: Slack's own.
    #[serde(deserialize_with = "api_url")]
    pub api_url: Option<String>,
    /// Posts per second into one channel (Slack allows about 1), and how
    /// many may go at once after a quiet spell. Bursts wait, never drop.
    #[serde(deserialize_with = "int::<1, 1000, _, _>")]
    pub posts_per_second: u32,
    #[serde(deserialize_with = "int::<1, 1000, _, _>")]
    pub post_burst: u32,
    /// Slack user id → the name outgoing mail is signed with
    /// ("Alice Martin via Example Support"); others use their Slack name.
    #[serde(deserialize_with = "lenient")]
    pub signature_names: BTreeMap<String, String>,
}

impl Default for SlackSettings {
    fn default() -> Self {
        SlackSettings {
            mode: SlackMode::Socket,
            bot_token: Secret::default(),
            app_token: None,
            signing_secret: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            api_url: None,
            posts_per_second: 1,
            post_burst: 4,
            signature_names: BTreeMap::new(),
        }
    }
}

/// Chat posting, whatever the platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ChatSettings {
    /// Attachments up to this size are uploaded into the thread; larger ones
    /// are listed with their name, type and size.
    #[serde(rename = "max_attachment_mb", deserialize_with = "mib")]
    pub max_attachment_bytes: u64,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            max_attachment_bytes: 10 * 1024 * 1024,
        }
    }
}

fn user_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let why = |u: &String| format!("expected @user:server, got {u:?}");
    text(d, |u| want(u.starts_with('@') && u.contains(':'), u, why))
}

fn listen<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    Ok(read(d, crate::domain::settings::socket_addr)?.unwrap_or(SlackSettings::default().listen))
}

fn api_url<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    http_url(d).map(Some)
}

fn mib<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    int::<0, 1024, u64, D>(d).map(|mb| mb * 1024 * 1024)
}

fn state_dir() -> PathBuf {
    "state/matrix".into()
}
fn device_name() -> String {
    "mailroom".into()
}
