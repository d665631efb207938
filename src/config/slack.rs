//! `[slack]`: the Slack app, over Socket Mode or the Events API.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use super::Check;
use super::de::{HttpUrl, Int, Key, Line, Listen};
use super::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    Socket,
    Events,
}

#[derive(Debug, Clone)]
pub struct SlackSettings {
    pub mode: SlackMode,
    pub bot_token: Secret,
    pub app_token: Option<Secret>,
    pub signing_secret: Option<Secret>,
    pub listen: SocketAddr,
    /// Web API base without a trailing slash; `None`: Slack's own.
    pub api_url: Option<String>,
    /// Posts per second into one channel (Slack allows about 1), and how
    /// many may go at once after a quiet spell. Bursts wait, never drop.
    pub posts_per_second: u32,
    pub post_burst: u32,
    /// Slack user id → the name outgoing mail is signed with
    /// ("Alice Martin via Example Support"); others use their Slack name.
    pub signature_names: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct SlackFile {
    mode: Key<SlackMode>,
    bot_token_env: Key<String>,
    app_token_env: Key<String>,
    signing_secret_env: Key<String>,
    listen: Key<Listen>,
    api_url: Key<HttpUrl>,
    posts_per_second: Key<Int<1, 1000>>,
    post_burst: Key<Int<1, 1000>>,
    signature_names: Key<BTreeMap<String, Key<Line>>>,
}

impl SlackFile {
    pub(super) fn settle(self, c: &mut Check) -> Option<SlackSettings> {
        let mode = self.mode.or(SlackMode::Socket);
        // The app token is needed by Socket Mode, the signing secret by the Events API.
        let mut env = |key: &str, var: Key<String>, needed: bool| match needed || var.given() {
            true => c.env(&format!("slack.{key}"), var),
            false => None,
        };
        let bot_token = env("bot_token_env", self.bot_token_env, true);
        let app_token = env(
            "app_token_env",
            self.app_token_env,
            mode == SlackMode::Socket,
        );
        let signing_secret = env(
            "signing_secret_env",
            self.signing_secret_env,
            mode == SlackMode::Events,
        );
        let mut signature_names = BTreeMap::new();
        for (user, name) in self.signature_names.get().unwrap_or_default() {
            let id_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
            if !(user.len() >= 2 && user.starts_with(['U', 'W']) && user.chars().all(id_char)) {
                let message = "expected a Slack user id such as U024BE7LH as the key";
                c.problem(format!("slack.signature_names.{user}"), message);
            }
            signature_names.extend(name.get().map(|n| (user, n.0)));
        }
        Some(SlackSettings {
            mode,
            bot_token: bot_token?,
            app_token,
            signing_secret,
            listen: self
                .listen
                .get()
                .map_or(SocketAddr::from(([127, 0, 0, 1], 3000)), |l| l.0),
            api_url: self.api_url.get().map(|u| u.0),
            posts_per_second: self.posts_per_second.num_or(1),
            post_burst: self.post_burst.num_or(4),
            signature_names,
        })
    }
}
