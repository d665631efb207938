//! The Slack adapter: slack-morphism's Web API client and Socket Mode
//! listener, or the Events API over HTTP (see [`intake`]).
//!
//! A ticket's thread is a channel message (`thread_ref` = its `ts`). Posts
//! into a channel are paced (about one a second, as Slack allows) so that a
//! burst waits instead of meeting 429s; a 429 that comes anyway is handed to
//! the outbox with its `Retry-After`. Channel history is never read: Slack
//! throttles it to one call a minute for internal apps, and mailroom keeps
//! its own state.

pub mod board;
pub mod intake;
pub mod render;

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use slack_morphism::errors::*;
use slack_morphism::prelude::*;

use super::{ChatError, ChatPlatform, FileUpload, Member, RoomBoard, TicketCard};
use crate::chat::settings::SlackSettings;
use crate::domain::chat::{ChatThread, Platform, SharedFile};
use crate::domain::ids::{Agent, TicketId};
use crate::domain::render::{EmailView, Rendering};

pub(crate) type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;
pub(crate) type Client = SlackClient<Connector>;

/// How long what Slack said about people stays trusted.
const USER_TTL: Duration = Duration::from_secs(600);
const MEMBERS_TTL: Duration = Duration::from_secs(60);
/// A member not in the cached list triggers a fresh list at most this often.
const MEMBERS_MIN_REFRESH: Duration = Duration::from_secs(5);
/// Posts remembered by idempotency key, so a retried job reuses them.
const POSTED_KEYS: usize = 4_096;
/// The `event_type` of the metadata every outbox post carries.
pub const JOB_EVENT_TYPE: &str = "mailroom_job";
/// How far back [`ChatPlatform::find_post`] looks: the latest messages of
/// the channel (or replies of the thread). A post lost in a crash is
/// looked for right after the restart, when it is among the latest.
const FIND_WINDOW: &str = "200";

/// Mailroom's name for a Slack user (`slack:U024BE7LH`).
pub fn agent(user_id: &str) -> Option<Agent> {
    Agent::parse(&format!("slack:{user_id}")).ok()
}

/// The Slack user id of one of mailroom's agents, if it is a Slack one.
pub fn user_id(agent: &Agent) -> Option<&str> {
    agent.as_str().strip_prefix("slack:")
}

#[derive(Debug, Clone)]
struct UserInfo {
    name: String,
    active: bool,
}

struct Cached<T> {
    at: Instant,
    value: T,
}

/// Idempotency key → the message it produced, oldest forgotten first.
#[derive(Default)]
struct Posted {
    by_key: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Posted {
    fn get(&self, key: &str) -> Option<String> {
        self.by_key.get(key).cloned()
    }
    fn put(&mut self, key: String, ts: String) {
        if self.by_key.insert(key.clone(), ts).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > POSTED_KEYS {
            if let Some(old) = self.order.pop_front() {
                self.by_key.remove(&old);
            }
        }
    }
}

pub struct SlackChat {
    client: Arc<Client>,
    token: SlackApiToken,
    settings: SlackSettings,
    bot_user: String,
    http: reqwest::Client,
    pacer: DefaultKeyedRateLimiter<String>,
    users: Mutex<HashMap<String, Cached<Option<UserInfo>>>>,
    members: Mutex<HashMap<String, Cached<HashSet<String>>>>,
    posted: Mutex<Posted>,
    templates_dir: PathBuf,
    /// The workspace's address (`auth.test`), for permalinks.
    team_url: String,
    /// `views.publish` is Tier 4 (100+ calls a minute per workspace):
    /// paced below that for all viewers together.
    home_pacer: DefaultDirectRateLimiter,
    /// What each viewer's Home tab last showed, so an unchanged one is not
    /// published again.
    homes: Mutex<HashMap<String, Value>>,
}

/// `views.publish` calls a minute, all viewers together (Tier 4 allows 100+).
const HOME_PUBLISHES_PER_MINUTE: u32 = 90;

fn transient(message: impl Into<String>, retry_after_ms: Option<u64>) -> ChatError {
    ChatError::Transient {
        message: message.into(),
        retry_after_ms,
    }
}

fn permanent(message: impl Into<String>) -> ChatError {
    ChatError::Permanent {
        message: message.into(),
    }
}

/// Slack's errors that a later try may not meet.
const TRANSIENT_CODES: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "ratelimited",
    "rate_limited",
];

fn classify(method: &str, e: SlackClientError) -> ChatError {
    match e {
        SlackClientError::RateLimitError(r) => transient(
            format!("{method}: rate limited"),
            // Slack always says when; if a proxy ate the header, wait a second.
            Some(r.retry_after.map(|d| d.as_millis() as u64).unwrap_or(1_000)),
        ),
        SlackClientError::ApiError(a) => {
            if TRANSIENT_CODES.contains(&a.code.as_str()) {
                transient(format!("{method}: {}", a.code), None)
            } else {
                permanent(format!("{method}: {}", a.code))
            }
        }
        SlackClientError::HttpError(h) if h.status_code.is_server_error() => {
            transient(format!("{method}: HTTP {}", h.status_code), None)
        }
        SlackClientError::HttpError(h) => permanent(format!("{method}: HTTP {}", h.status_code)),
        SlackClientError::HttpProtocolError(p) => transient(format!("{method}: {p}"), None),
        SlackClientError::EndOfStream(p) => transient(format!("{method}: {p}"), None),
        other => permanent(format!("{method}: {other}")),
    }
}

fn str_field<'v>(v: &'v Value, method: &str, field: &str) -> Result<&'v str, ChatError> {
    v[field]
        .as_str()
        .ok_or_else(|| permanent(format!("{method}: the answer has no {field:?}")))
}

impl SlackChat {
    /// Builds the client and asks Slack who the bot is (`auth.test`), which
    /// also proves the token.
    pub async fn connect(
        settings: &SlackSettings,
        templates_dir: PathBuf,
    ) -> Result<Arc<SlackChat>, ChatError> {
        let roots = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| permanent(format!("slack: no system TLS roots: {e}")))?;
        // Plain HTTP only when slack.api_url asks for it (a local test server).
        let https = if settings
            .api_url
            .as_deref()
            .is_some_and(|u| u.starts_with("http://"))
        {
            roots.https_or_http().enable_http1().build()
        } else {
            roots.https_only().enable_http1().build()
        };
        let mut connector = SlackClientHyperConnector::with_connector(https);
        if let Some(url) = &settings.api_url {
            connector = connector.with_slack_api_url(url);
        }
        let client = Arc::new(SlackClient::new(connector));
        let token = SlackApiToken::new(settings.bot_token.expose().into());
        let session = client.open_session(&token);
        let me = session
            .auth_test()
            .await
            .map_err(|e| match classify("auth.test", e) {
                ChatError::Permanent { message } => permanent(format!(
                    "slack.bot_token_env: Slack refused the bot token ({message})"
                )),
                t => t,
            })?;
        let per_second = NonZeroU32::new(settings.posts_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.post_burst).unwrap_or(NonZeroU32::MIN);
        Ok(Arc::new(SlackChat {
            client,
            token,
            settings: settings.clone(),
            bot_user: me.user_id.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .map_err(|e| permanent(format!("slack: HTTP client: {e}")))?,
            pacer: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            users: Mutex::new(HashMap::new()),
            members: Mutex::new(HashMap::new()),
            posted: Mutex::new(Posted::default()),
            templates_dir,
            team_url: me.url.0.to_string(),
            home_pacer: RateLimiter::direct(
                Quota::per_minute(
                    NonZeroU32::new(HOME_PUBLISHES_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
                )
                .allow_burst(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN)),
            ),
            homes: Mutex::new(HashMap::new()),
        }))
    }

    /// The bot's own user id.
    pub fn bot_user(&self) -> &str {
        &self.bot_user
    }

    pub(crate) fn client(&self) -> &Arc<Client> {
        &self.client
    }

    pub(crate) fn settings(&self) -> &SlackSettings {
        &self.settings
    }

    pub(crate) fn templates_dir(&self) -> &PathBuf {
        &self.templates_dir
    }

    /// A Web API call with a JSON body.
    pub(crate) async fn call(&self, method: &str, body: &Value) -> Result<Value, ChatError> {
        let session = self.client.open_session(&self.token);
        session
            .http_session_api
            .http_post(method, body, None)
            .await
            .map_err(|e| classify(method, e))
    }

    /// A read-only Web API call with query parameters.
    async fn get(&self, method: &str, params: &[(&str, &str)]) -> Result<Value, ChatError> {
        let session = self.client.open_session(&self.token);
        let params: Vec<(&str, Option<&&str>)> =
            params.iter().map(|(k, v)| (*k, Some(v))).collect();
        session
            .http_session_api
            .http_get(method, &params, None)
            .await
            .map_err(|e| classify(method, e))
    }

    /// Posts a message (a thread reply with `thread_ts`), paced per channel.
    /// A post made for an outbox job carries its idempotency `key` in the
    /// message's metadata ([`JOB_EVENT_TYPE`]), so that after a restart
    /// [`ChatPlatform::find_post`] can find a post whose answer was lost.
    async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        post: &render::Post,
        key: Option<&str>,
    ) -> Result<String, ChatError> {
        self.pacer.until_key_ready(&channel.to_owned()).await;
        let mut body = json!({
            "channel": channel,
            "text": post.text,
            "unfurl_links": false,
            "unfurl_media": false,
        });
        if let Some(b) = &post.blocks {
            body["blocks"] = b.clone();
        }
        if !post.mrkdwn {
            body["mrkdwn"] = json!(false);
        }
        if let Some(t) = thread_ts {
            body["thread_ts"] = json!(t);
        }
        if let Some(key) = key {
            body["metadata"] = json!({
                "event_type": JOB_EVENT_TYPE,
                "event_payload": {"key": key},
            });
        }
        let r = self.call("chat.postMessage", &body).await?;
        Ok(str_field(&r, "chat.postMessage", "ts")?.to_owned())
    }

    /// Posts once per idempotency key within this process: a job retried
    /// after its post went through (but its bookkeeping did not) reuses it.
    async fn post_once(
        &self,
        key: &str,
        channel: &str,
        thread_ts: Option<&str>,
        post: &render::Post,
    ) -> Result<String, ChatError> {
        if let Some(ts) = self.posted.lock().map_err(poisoned)?.get(key) {
            return Ok(ts);
        }
        let ts = self.post(channel, thread_ts, post, Some(key)).await?;
        self.posted
            .lock()
            .map_err(poisoned)?
            .put(key.to_owned(), ts.clone());
        Ok(ts)
    }

    /// Uploads one file into a thread: an upload URL, the bytes, then
    /// `files.completeUploadExternal` to share it there. Once per
    /// idempotency key within this process, like posts.
    async fn upload_into_thread(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        file: FileUpload,
        key: &str,
    ) -> Result<(), ChatError> {
        if self.posted.lock().map_err(poisoned)?.get(key).is_some() {
            return Ok(());
        }
        let session = self.client.open_session(&self.token);
        let name = if file.name.trim().is_empty() {
            "attachment".to_owned()
        } else {
            file.name.clone()
        };
        let url = session
            .get_upload_url_external(&SlackApiFilesGetUploadUrlExternalRequest::new(
                name.clone(),
                file.data.len(),
            ))
            .await
            .map_err(|e| classify("files.getUploadURLExternal", e))?;
        session
            .files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
                url.upload_url,
                file.data,
                file.content_type.clone(),
            ))
            .await
            .map_err(|e| classify("files.upload", e))?;
        self.pacer.until_key_ready(&channel.to_owned()).await;
        let mut complete = SlackApiFilesCompleteUploadExternalRequest::new(vec![
            SlackApiFilesComplete::new(url.file_id).with_title(name),
        ])
        .with_channel_id(SlackChannelId(channel.to_owned()));
        if let Some(ts) = thread_ts {
            complete = complete.with_thread_ts(SlackTs(ts.to_owned()));
        }
        session
            .files_complete_upload_external(&complete)
            .await
            .map_err(|e| classify("files.completeUploadExternal", e))?;
        self.posted
            .lock()
            .map_err(poisoned)?
            .put(key.to_owned(), String::new());
        Ok(())
    }

    async fn user(&self, user: &str) -> Result<Option<UserInfo>, ChatError> {
        if let Some(c) = self.users.lock().map_err(poisoned)?.get(user)
            && c.at.elapsed() < USER_TTL
        {
            return Ok(c.value.clone());
        }
        let info = match self.get("users.info", &[("user", user)]).await {
            Ok(v) => {
                let u = &v["user"];
                let profile = &u["profile"];
                let name = [
                    &profile["real_name"],
                    &u["real_name"],
                    &profile["display_name"],
                    &u["name"],
                ]
                .into_iter()
                .filter_map(|v| v.as_str())
                .find(|s| !s.trim().is_empty())
                .unwrap_or(user)
                .to_owned();
                let active = !u["deleted"].as_bool().unwrap_or(false)
                    && !u["is_bot"].as_bool().unwrap_or(false);
                Some(UserInfo { name, active })
            }
            Err(ChatError::Permanent { message }) if message.ends_with("user_not_found") => None,
            Err(e) => return Err(e),
        };
        self.users.lock().map_err(poisoned)?.insert(
            user.to_owned(),
            Cached {
                at: Instant::now(),
                value: info.clone(),
            },
        );
        Ok(info)
    }

    /// The name a teammate's replies are signed with, which a reply that
    /// mentions them shows too: `[slack.signature_names]`, else Slack's.
    fn signature_name(&self, user: &str, info: UserInfo) -> String {
        self.settings
            .signature_names
            .get(user)
            .cloned()
            .unwrap_or(info.name)
    }

    async fn channel_members(&self, channel: &str) -> Result<HashSet<String>, ChatError> {
        let mut all = HashSet::new();
        let mut cursor = String::new();
        loop {
            let mut params = vec![("channel", channel), ("limit", "500")];
            if !cursor.is_empty() {
                params.push(("cursor", cursor.as_str()));
            }
            let v = self.get("conversations.members", &params).await?;
            for m in v["members"].as_array().into_iter().flatten() {
                if let Some(id) = m.as_str() {
                    all.insert(id.to_owned());
                }
            }
            match v["response_metadata"]["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = c.to_owned(),
                _ => break,
            }
        }
        Ok(all)
    }

    async fn is_member(&self, channel: &str, user: &str) -> Result<bool, ChatError> {
        let cached = {
            let members = self.members.lock().map_err(poisoned)?;
            members
                .get(channel)
                .map(|c| (c.value.contains(user), c.at.elapsed()))
        };
        match cached {
            Some((true, age)) if age < MEMBERS_TTL => return Ok(true),
            Some((false, age)) if age < MEMBERS_MIN_REFRESH => return Ok(false),
            _ => {}
        }
        let fresh = self.channel_members(channel).await?;
        let yes = fresh.contains(user);
        self.members.lock().map_err(poisoned)?.insert(
            channel.to_owned(),
            Cached {
                at: Instant::now(),
                value: fresh,
            },
        );
        Ok(yes)
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> ChatError {
    permanent("slack: internal state lock poisoned")
}

#[async_trait]
impl ChatPlatform for SlackChat {
    fn platform(&self) -> Platform {
        Platform::Slack
    }

    async fn find_post(
        &self,
        room: &str,
        thread_ref: Option<&str>,
        keys: &[String],
    ) -> Result<Option<(String, String)>, ChatError> {
        // Metadata is returned only when asked for (`include_all_metadata`).
        let v = match thread_ref {
            None => {
                let params = [
                    ("channel", room),
                    ("limit", FIND_WINDOW),
                    ("include_all_metadata", "true"),
                ];
                self.get("conversations.history", &params).await?
            }
            Some(ts) => {
                let params = [
                    ("channel", room),
                    ("ts", ts),
                    ("limit", FIND_WINDOW),
                    ("include_all_metadata", "true"),
                ];
                self.get("conversations.replies", &params).await?
            }
        };
        let found = v["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["metadata"]["event_type"] == JOB_EVENT_TYPE)
            .find_map(|m| {
                let key = m["metadata"]["event_payload"]["key"].as_str()?;
                let ts = m["ts"].as_str()?;
                keys.iter()
                    .any(|k| k == key)
                    .then(|| (ts.to_owned(), key.to_owned()))
            });
        if let Some((ts, key)) = &found {
            self.posted
                .lock()
                .map_err(poisoned)?
                .put(key.clone(), ts.clone());
        }
        Ok(found)
    }

    fn workspace_url(&self) -> Option<String> {
        Some(self.team_url.clone())
    }

    async fn post_ticket(
        &self,
        room: &str,
        card: &TicketCard<'_>,
        email: &EmailView,
        rendering: Rendering,
        idempotency_key: &str,
    ) -> Result<ChatThread, ChatError> {
        let post = render::root_post(card, email, rendering);
        let ts = self.post_once(idempotency_key, room, None, &post).await?;
        Ok(ChatThread {
            platform: Platform::Slack,
            room: room.to_owned(),
            thread_ref: ts,
        })
    }

    async fn post_follow_up(
        &self,
        thread: &ChatThread,
        ticket: TicketId,
        email: &EmailView,
        owner: Option<&Agent>,
        rendering: Rendering,
        idempotency_key: &str,
    ) -> Result<(), ChatError> {
        let post = render::follow_up_post(ticket, email, owner.map(|o| o.as_str()), rendering);
        self.post_once(
            idempotency_key,
            &thread.room,
            Some(&thread.thread_ref),
            &post,
        )
        .await?;
        Ok(())
    }

    async fn update_card(
        &self,
        thread: &ChatThread,
        card: &TicketCard<'_>,
        email: &EmailView,
        rendering: Rendering,
    ) -> Result<(), ChatError> {
        let post = render::root_post(card, email, rendering);
        let mut body = json!({
            "channel": thread.room,
            "ts": thread.thread_ref,
            "text": post.text,
        });
        // An update without blocks must say so, or Slack keeps the old ones.
        body["blocks"] = post.blocks.unwrap_or_else(|| json!([]));
        if !post.mrkdwn {
            body["mrkdwn"] = json!(false);
        }
        self.call("chat.update", &body).await?;
        Ok(())
    }

    async fn upload(
        &self,
        thread: &ChatThread,
        file: FileUpload,
        idempotency_key: &str,
    ) -> Result<(), ChatError> {
        self.upload_into_thread(
            &thread.room,
            Some(&thread.thread_ref),
            file,
            idempotency_key,
        )
        .await
    }

    async fn room_upload(&self, room: &str, file: FileUpload) -> Result<(), ChatError> {
        // Each answer is its own upload: a key no other upload shares.
        let key = format!("room-upload:{room}:{}", hex::encode(file_key(&file.data)));
        self.upload_into_thread(room, None, file, &key).await
    }

    fn body_limit(&self) -> usize {
        render::MAX_BODY_CHARS
    }

    async fn notice(
        &self,
        thread: &ChatThread,
        text: &str,
        idempotency_key: &str,
    ) -> Result<(), ChatError> {
        let post = render::Post {
            text: render::mrkdwn(text),
            blocks: None,
            mrkdwn: true,
        };
        self.post_once(
            idempotency_key,
            &thread.room,
            Some(&thread.thread_ref),
            &post,
        )
        .await?;
        Ok(())
    }

    /// `users.getPresence` (scope `users:read`) and `dnd.info` (scope
    /// `dnd:read`). A call the app may not make (a scope missing) tells
    /// nothing rather than failing the assignment.
    async fn availability(
        &self,
        agent: &Agent,
    ) -> Result<Option<crate::chat::Availability>, ChatError> {
        use crate::chat::Availability;
        let Some(user) = user_id(agent) else {
            return Ok(None);
        };
        let told = |r: Result<Value, ChatError>| match r {
            Ok(v) => Ok(Some(v)),
            Err(ChatError::Permanent { message }) => {
                tracing::debug!(%agent, %message, "slack: availability not told");
                Ok(None)
            }
            Err(e) => Err(e),
        };
        let presence = told(self.get("users.getPresence", &[("user", user)]).await)?;
        let dnd = told(self.get("dnd.info", &[("user", user)]).await)?;
        if presence.is_none() && dnd.is_none() {
            return Ok(None);
        }
        if let Some(d) = &dnd {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let snoozed = d["snooze_enabled"].as_bool().unwrap_or(false);
            let (start, end) = (
                d["next_dnd_start_ts"].as_i64().unwrap_or(0),
                d["next_dnd_end_ts"].as_i64().unwrap_or(0),
            );
            let scheduled =
                d["dnd_enabled"].as_bool().unwrap_or(false) && start <= now && now < end;
            if snoozed || scheduled {
                return Ok(Some(Availability::Unavailable(
                    "do not disturb on Slack".into(),
                )));
            }
        }
        if presence.as_ref().and_then(|p| p["presence"].as_str()) == Some("away") {
            return Ok(Some(Availability::Unavailable("away on Slack".into())));
        }
        Ok(Some(Availability::Available))
    }

    async fn room_notice(&self, room: &str, text: &str) -> Result<(), ChatError> {
        let post = render::Post {
            text: render::mrkdwn(text),
            blocks: None,
            mrkdwn: true,
        };
        self.post(room, None, &post, None).await?;
        Ok(())
    }

    async fn room_alert(
        &self,
        room: &str,
        text: &str,
        room_mention: bool,
        users: &[String],
    ) -> Result<(), ChatError> {
        let mut calls = String::new();
        if room_mention {
            calls.push_str("<!channel> ");
        }
        let id_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
        for u in users.iter().filter(|u| u.chars().all(id_char)) {
            calls.push_str(&format!("<@{u}> "));
        }
        let post = render::Post {
            text: format!("{calls}{}", render::mrkdwn(text)),
            blocks: None,
            mrkdwn: true,
        };
        self.post(room, None, &post, None).await?;
        Ok(())
    }

    async fn download(&self, file: &SharedFile) -> Result<Vec<u8>, ChatError> {
        let resp = self
            .http
            .get(&file.source)
            .bearer_auth(self.settings.bot_token.expose())
            .send()
            .await
            .map_err(|e| transient(format!("download {}: {e}", file.name), None))?;
        let status = resp.status();
        if !status.is_success() {
            let msg = format!("download {}: HTTP {status}", file.name);
            return Err(if status.is_server_error() {
                transient(msg, None)
            } else {
                permanent(msg)
            });
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transient(format!("download {}: {e}", file.name), None))?;
        Ok(bytes.to_vec())
    }

    async fn member(&self, room: &str, agent: &Agent) -> Result<Option<Member>, ChatError> {
        let Some(user) = user_id(agent) else {
            return Ok(None);
        };
        let Some(info) = self.user(user).await? else {
            return Ok(None);
        };
        if !info.active || !self.is_member(room, user).await? {
            return Ok(None);
        }
        Ok(Some(Member {
            power: 0,
            display_name: Some(self.signature_name(user, info)),
        }))
    }

    async fn names_for_mail(&self, text: &str) -> String {
        let ids: HashSet<&str> = render::mentioned_users(text).into_iter().collect();
        let mut names = HashMap::new();
        for id in ids {
            match self.user(id).await {
                Ok(Some(info)) => {
                    names.insert(id, self.signature_name(id, info));
                }
                // Unknown to Slack: `name_mentions` leaves `@` and the id.
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(user = id, error = %e, "could not look up a mentioned user's name for a reply")
                }
            }
        }
        render::name_mentions(text, &names)
    }

    async fn whisper(
        &self,
        thread: &ChatThread,
        agent: &Agent,
        text: &str,
    ) -> Result<bool, ChatError> {
        let Some(user) = user_id(agent) else {
            return Ok(false);
        };
        self.call(
            "chat.postEphemeral",
            &json!({
                "channel": thread.room,
                "user": user,
                "thread_ts": thread.thread_ref,
                "text": render::mrkdwn(text),
            }),
        )
        .await?;
        Ok(true)
    }

    fn has_home(&self) -> bool {
        true
    }

    async fn publish_home(&self, viewer: &Agent, boards: &[RoomBoard]) -> Result<(), ChatError> {
        let Some(user) = user_id(viewer) else {
            return Ok(());
        };
        let view = board::home_view(&self.team_url, boards);
        if self.homes.lock().map_err(poisoned)?.get(user) == Some(&view) {
            return Ok(());
        }
        self.home_pacer.until_ready().await;
        self.call("views.publish", &json!({"user_id": user, "view": view}))
            .await?;
        self.homes
            .lock()
            .map_err(poisoned)?
            .insert(user.to_owned(), view);
        Ok(())
    }

    async fn direct(&self, room: &str, agent: &Agent, text: &str) -> Result<bool, ChatError> {
        let Some(user) = user_id(agent) else {
            return Ok(false);
        };
        self.call(
            "chat.postEphemeral",
            &json!({
                "channel": room,
                "user": user,
                "text": render::mrkdwn(text),
            }),
        )
        .await?;
        Ok(true)
    }

    async fn respond(&self, respond_to: &str, text: &str) -> Result<(), ChatError> {
        let url: url::Url = respond_to
            .parse()
            .map_err(|e| permanent(format!("response_url {respond_to:?}: {e}")))?;
        let session = self.client.open_session(&self.token);
        let _: Value = session
            .http_session_api
            .http_post_uri(
                url,
                &json!({"response_type": "ephemeral", "text": render::mrkdwn(text)}),
                None,
            )
            .await
            .map_err(|e| classify("response_url", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_round_trip_through_slack_ids() {
        let a = agent("U024BE7LH").unwrap();
        assert_eq!(a.as_str(), "slack:U024BE7LH");
        assert_eq!(user_id(&a), Some("U024BE7LH"));
        assert_eq!(user_id(&Agent::parse("@alice:example.org").unwrap()), None);
    }

    #[test]
    fn remembered_posts_are_bounded() {
        let mut p = Posted::default();
        for i in 0..(POSTED_KEYS + 10) {
            p.put(format!("k{i}"), format!("{i}"));
        }
        assert_eq!(p.by_key.len(), POSTED_KEYS);
        assert!(p.get("k0").is_none());
        assert_eq!(
            p.get(&format!("k{}", POSTED_KEYS + 9)).as_deref(),
            Some("4105")
        );
    }

    #[test]
    fn rate_limits_and_outages_are_retried_with_slacks_delay() {
        let e = classify(
            "chat.postMessage",
            SlackClientError::RateLimitError(
                SlackRateLimitError::new().with_retry_after(Duration::from_secs(3)),
            ),
        );
        assert!(matches!(
            e,
            ChatError::Transient {
                retry_after_ms: Some(3_000),
                ..
            }
        ));
        let e = classify(
            "chat.postMessage",
            SlackClientError::ApiError(SlackClientApiError::new("channel_not_found".into())),
        );
        assert!(
            matches!(e, ChatError::Permanent { ref message } if message == "chat.postMessage: channel_not_found")
        );
        let e = classify(
            "chat.postMessage",
            SlackClientError::ApiError(SlackClientApiError::new("service_unavailable".into())),
        );
        assert!(e.is_transient());
    }
}

/// A digest of an upload's bytes and the time, for a key that is new for
/// each answer (two identical charts asked twice are two uploads).
fn file_key(data: &[u8]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(data);
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            .to_be_bytes(),
    );
    let mut key = [0u8; 16];
    key.copy_from_slice(&h.finalize()[..16]);
    key
}
