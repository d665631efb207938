//! A fake Slack for integration tests: the Web API, Socket Mode and the
//! Events API, speaking Slack's documented wire format on 127.0.0.1.
//!
//! Teammates act through [`FakeSlack`] methods (post, upload, react, run a
//! slash command or a message shortcut, submit a modal); each produces the
//! payload Slack would send and delivers it to the app, over Socket Mode by
//! default or as signed HTTP POSTs once [`FakeSlack::set_events_url`] names
//! the app's endpoint, and returns once the app acknowledged it. What the app
//! does through the Web API is recorded and can be inspected.
//!
//! It rejects what real Slack rejects (auth and token types, membership,
//! Block Kit and modal limits, trigger expiry and reuse, rate limits), so the
//! app's mistakes show up in tests.
//!
//! Web API methods: auth.test, apps.connections.open, chat.postMessage,
//! chat.update, chat.postEphemeral, chat.getPermalink, users.info,
//! conversations.members/.info/.history/.replies (the last two: one call a
//! minute), files.getUploadURLExternal, files.completeUploadExternal,
//! views.open, views.update, views.publish (a user's App Home tab),
//! reactions.add/.remove; anything else answers
//! `unknown_method`.
//!
//! Deliberate simplifications:
//! - redeliveries follow each other at once (Slack waits up to minutes
//!   between Events API retries); only events are redelivered, slash commands
//!   and interactivity payloads are not (Slack shows the user an error);
//! - `disconnect_sockets` closes the connections right after the
//!   `disconnect` envelope, whatever the reason (Slack keeps a "warning"ed
//!   connection open for a while);
//! - message metadata is returned by the Web API but not put in events;
//! - public channels only: no private channels, DMs or Enterprise Grid.

#![allow(dead_code)]

mod blocks;
mod delivery;
mod home;
mod payloads;
mod presence;
mod socket;
mod state;
mod util;
mod web;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use delivery::{Kind, MAX_RETRIES, QUEUE_WAIT};
use state::{Channel, ConnCmd, ResponseUrl, State, StoredFile, StoredMessage, Trigger, User};
use util::{rand_hex, rand_id_chars, unix_now, uuid};

/// A message in a channel (top level or thread reply).
#[derive(Debug, Clone)]
pub struct Message {
    pub ts: String,
    pub thread_ts: Option<String>,
    pub user: String,
    pub bot: bool,
    pub text: String,
    /// The blocks as stored (`Null` when the message has none).
    pub blocks: Value,
    pub files: Vec<FileInfo>,
    /// How many times chat.update changed it.
    pub edits: u32,
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct FileInfo {
    pub id: String,
    pub name: String,
    pub title: String,
    pub mimetype: String,
    pub data: Vec<u8>,
}

/// A message only one user sees: chat.postEphemeral, or an ephemeral answer
/// to that user's command (response_url post or acknowledgement payload).
#[derive(Debug, Clone)]
pub struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Value,
}

/// A modal opened with views.open; `view` is its latest version (views.update
/// and `response_action: update` replace it).
#[derive(Debug, Clone)]
pub struct OpenedView {
    pub view_id: String,
    pub user: String,
    pub view: Value,
}

impl OpenedView {
    /// Whether the modal is still shown (a submission the app answers without
    /// `response_action` errors/update/push closes it).
    pub fn is_open(&self, slack: &FakeSlack) -> bool {
        slack
            .inner
            .lock()
            .views
            .iter()
            .any(|v| v.view_id == self.view_id && v.open)
    }
}

#[derive(Debug, Clone)]
pub struct FakeSlackOptions {
    /// Slack's ~1 message/s per channel for chat.postMessage: a token bucket
    /// per channel (burst 4, refill 1/s); beyond it HTTP 429, Retry-After: 1.
    pub pace_posts: bool,
    /// How long an envelope (Socket Mode) or POST (Events API) may stay
    /// unacknowledged before Slack gives up on that attempt.
    pub ack_timeout: Duration,
    /// A workspace that restricts uploads of large files: a longer
    /// `files.getUploadURLExternal` gets `file_upload_size_restricted`.
    pub max_upload_bytes: Option<usize>,
}

impl Default for FakeSlackOptions {
    fn default() -> Self {
        FakeSlackOptions {
            pace_posts: false,
            ack_timeout: Duration::from_secs(3),
            max_upload_bytes: None,
        }
    }
}

struct Inner {
    opts: FakeSlackOptions,
    http_port: u16,
    ws_port: u16,
    bot_token: String,
    app_token: String,
    signing_secret: String,
    verification_token: String,
    bot_user_id: String,
    bot_id: String,
    bot_name: String,
    app_id: String,
    /// The opaque app identifier Slack puts in Socket Mode URLs.
    app_hash: String,
    team_id: String,
    team_domain: String,
    team_name: String,
    started_at: i64,
    state: Mutex<State>,
    /// Signalled on every state change (for `wait_until`).
    changed: Notify,
    /// Wakes the Socket Mode dispatcher.
    dispatch: Notify,
    /// Lets held-back answers go ([`FakeSlack::hold_answers`]).
    release: Notify,
    cancel: CancellationToken,
    http: reqwest::Client,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touched(&self) {
        self.changed.notify_waiters();
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn new_trigger(&self, st: &mut State, user: &str) -> String {
        let n = u64::from_str_radix(&rand_hex(4), 16).unwrap_or(0);
        let id = format!("{}.{}.{}", 1_000_000_000 + n, unix_now(), rand_hex(16));
        st.triggers.insert(
            id.clone(),
            Trigger {
                user: user.to_string(),
                issued: Instant::now(),
                used: false,
            },
        );
        id
    }

    fn new_response_url(&self, st: &mut State, user: &str, channel: &str) -> String {
        let id = format!("{}-{}", st.next_id("B"), rand_hex(12));
        st.response_urls.insert(
            id.clone(),
            ResponseUrl {
                user: user.to_string(),
                channel: channel.to_string(),
                uses: 0,
                issued: Instant::now(),
            },
        );
        format!("{}/response/{id}", self.base())
    }
}

/// `application/x-www-form-urlencoded` encoding, as Slack encodes slash
/// command and interactivity bodies (for hand-made `post_raw_events` bodies).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    util::form_encode(pairs)
}

struct ShutdownGuard(CancellationToken);

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The fake Slack workspace. Cheap to clone; everything stops when the last
/// clone is dropped or [`FakeSlack::shutdown`] is called.
#[derive(Clone)]
pub struct FakeSlack {
    inner: Arc<Inner>,
    _guard: Arc<ShutdownGuard>,
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack")
            .field("api_url", &self.api_url())
            .field("team_id", &self.inner.team_id)
            .finish_non_exhaustive()
    }
}

impl FakeSlack {
    pub async fn start(opts: FakeSlackOptions) -> FakeSlack {
        let http_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Slack Web API");
        let ws_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Slack Socket Mode endpoint");
        let cancel = CancellationToken::new();
        let app_id = "A0FAKEAPP01".to_string();
        let inner = Arc::new(Inner {
            opts,
            http_port: http_listener.local_addr().expect("addr").port(),
            ws_port: ws_listener.local_addr().expect("addr").port(),
            bot_token: format!(
                "xoxb-1000000001-2000000002-{}",
                rand_id_chars(24).to_lowercase()
            ),
            app_token: format!("xapp-1-{app_id}-3000000003-{}", rand_hex(32)),
            signing_secret: rand_hex(16),
            verification_token: rand_id_chars(24),
            bot_user_id: "U0BOT00001".into(),
            bot_id: "B0BOT00001".into(),
            bot_name: "mailroom".into(),
            app_id,
            app_hash: rand_hex(32),
            team_id: "T0FAKE0001".into(),
            team_domain: "fake-team".into(),
            team_name: "Fake Team".into(),
            started_at: unix_now(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            dispatch: Notify::new(),
            release: Notify::new(),
            cancel: cancel.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
        });
        inner.lock().users.insert(
            inner.bot_user_id.clone(),
            User {
                id: inner.bot_user_id.clone(),
                name: inner.bot_name.clone(),
                real_name: "Mailroom".into(),
                is_bot: true,
            },
        );

        let app = web::router(inner.clone());
        let stop = cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(http_listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
        });
        tokio::spawn(socket::run_listener(inner.clone(), ws_listener));
        tokio::spawn(inner.clone().run_dispatcher());

        FakeSlack {
            inner,
            _guard: Arc::new(ShutdownGuard(cancel)),
        }
    }

    // ---- identity ----

    /// "http://127.0.0.1:PORT/api"; methods live at `{api_url}/chat.postMessage` etc.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.inner.base())
    }

    pub fn bot_token(&self) -> &str {
        &self.inner.bot_token
    }

    pub fn app_token(&self) -> &str {
        &self.inner.app_token
    }

    pub fn signing_secret(&self) -> &str {
        &self.inner.signing_secret
    }

    pub fn bot_user_id(&self) -> &str {
        &self.inner.bot_user_id
    }

    pub fn bot_id(&self) -> &str {
        &self.inner.bot_id
    }

    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    pub fn team_id(&self) -> &str {
        &self.inner.team_id
    }

    // ---- workspace set-up ----

    /// Adds a teammate; returns the user ID.
    pub fn add_user(&self, name: &str, real_name: &str) -> String {
        let mut st = self.inner.lock();
        let id = st.next_id("U");
        st.users.insert(
            id.clone(),
            User {
                id: id.clone(),
                name: name.to_string(),
                real_name: real_name.to_string(),
                is_bot: false,
            },
        );
        drop(st);
        self.inner.touched();
        id
    }

    /// Adds a public channel with these members (user IDs); the bot is a
    /// member only if its ID is listed. Panics on an unknown user ID.
    /// `#support` with alice (Alice Martin) and the bot in it.
    pub fn support_channel(&self) -> String {
        let alice = self.add_user("alice", "Alice Martin");
        self.add_channel("support", &[&alice, self.bot_user_id()])
    }

    pub fn add_channel(&self, name: &str, members: &[&str]) -> String {
        let mut st = self.inner.lock();
        for m in members {
            assert!(st.users.contains_key(*m), "add_channel: unknown user {m}");
        }
        let id = st.next_id("C");
        st.channels.insert(
            id.clone(),
            Channel {
                id: id.clone(),
                name: name.to_string(),
                members: members.iter().map(|m| m.to_string()).collect(),
                created: unix_now(),
            },
        );
        drop(st);
        self.inner.touched();
        id
    }

    /// None (the default): deliver over Socket Mode. Some("http://127.0.0.1:P"):
    /// Events API mode, signed POSTs to {base}/slack/events, /slack/commands,
    /// /slack/interactive.
    pub fn set_events_url(&self, base: Option<String>) {
        self.inner.lock().events_url = base.map(|b| b.trim_end_matches('/').to_string());
    }

    // ---- teammates' actions ----

    async fn deliver_and_wait(&self, kind: Kind, payload: Value) -> anyhow::Result<Value> {
        let rx = self.inner.deliver(kind, payload);
        let bound =
            (QUEUE_WAIT + self.inner.opts.ack_timeout) * (MAX_RETRIES + 1) + Duration::from_secs(5);
        match tokio::time::timeout(bound, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(anyhow!(e)),
            Ok(Err(_)) => bail!("the fake Slack stopped before the delivery was acknowledged"),
            Err(_) => bail!("no acknowledgement within {bound:?}"),
        }
    }

    fn check_user(st: &State, user: &str) -> anyhow::Result<()> {
        if st.users.contains_key(user) {
            Ok(())
        } else {
            bail!("unknown user {user}")
        }
    }

    fn resolve_channel(st: &State, channel: &str) -> anyhow::Result<String> {
        st.channel_id(channel)
            .ok_or_else(|| anyhow!("unknown channel {channel}"))
    }

    /// A teammate posts a message (a thread reply with `thread_ts`); returns
    /// its ts once the app acknowledged the `message` event.
    pub async fn post_message(
        &self,
        user: &str,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
    ) -> anyhow::Result<String> {
        self.user_post(user, channel, thread_ts, text, None).await
    }

    /// A teammate uploads a file into the channel/thread: a `message` with
    /// subtype `file_share` whose `files[]` point at this fake (the download
    /// URLs need the bot token as Bearer).
    #[allow(clippy::too_many_arguments)]
    pub async fn post_file(
        &self,
        user: &str,
        channel: &str,
        thread_ts: Option<&str>,
        name: &str,
        mimetype: &str,
        data: Vec<u8>,
        text: &str,
    ) -> anyhow::Result<String> {
        let file_id = {
            let mut st = self.inner.lock();
            Self::check_user(&st, user)?;
            let id = st.next_id("F");
            let (_, filetype) = util::guess_type(name);
            st.files.insert(
                id.clone(),
                StoredFile {
                    id: id.clone(),
                    name: name.to_string(),
                    title: name.to_string(),
                    mimetype: mimetype.to_string(),
                    filetype: filetype.to_string(),
                    declared_len: data.len(),
                    data: Some(data),
                    user: user.to_string(),
                    created: unix_now(),
                    completed: true,
                },
            );
            id
        };
        self.user_post(user, channel, thread_ts, text, Some(file_id))
            .await
    }

    async fn user_post(
        &self,
        user: &str,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        file: Option<String>,
    ) -> anyhow::Result<String> {
        let (ts, event) = {
            let mut st = self.inner.lock();
            Self::check_user(&st, user)?;
            let channel = Self::resolve_channel(&st, channel)?;
            let ts = st.next_ts();
            let m = StoredMessage {
                channel,
                ts: ts.clone(),
                thread_ts: thread_ts.map(str::to_string),
                user: user.to_string(),
                bot: false,
                text: text.to_string(),
                blocks: if text.is_empty() {
                    Value::Null
                } else {
                    payloads::rich_text_blocks(text)
                },
                files: file.iter().cloned().collect(),
                edits: 0,
                metadata: None,
                subtype: file.as_ref().map(|_| "file_share".to_string()),
                edited: None,
                reactions: Default::default(),
                client_msg_id: Some(uuid()),
            };
            let event = self.inner.message_event(&st, &m);
            st.push_message(m);
            (ts, event)
        };
        self.inner.touched();
        let payload = self.inner.event_callback(event);
        self.deliver_and_wait(Kind::Event, payload)
            .await
            .with_context(|| format!("message {ts}"))?;
        Ok(ts)
    }

    /// `reaction_added` by a teammate.
    pub async fn react(
        &self,
        user: &str,
        channel: &str,
        ts: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        self.reaction(true, user, channel, ts, name).await
    }

    /// `reaction_removed` by a teammate.
    pub async fn unreact(
        &self,
        user: &str,
        channel: &str,
        ts: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        self.reaction(false, user, channel, ts, name).await
    }

    async fn reaction(
        &self,
        add: bool,
        user: &str,
        channel: &str,
        ts: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        let event = {
            let mut st = self.inner.lock();
            Self::check_user(&st, user)?;
            let channel = Self::resolve_channel(&st, channel)?;
            let m = st
                .find_message_mut(&channel, ts)
                .ok_or_else(|| anyhow!("no message {ts} in {channel}"))?;
            let users = m.reactions.entry(name.to_string()).or_default();
            if add {
                if users.iter().any(|u| u == user) {
                    bail!("{user} already reacted :{name}: to {ts}");
                }
                users.push(user.to_string());
            } else {
                if !users.iter().any(|u| u == user) {
                    bail!("{user} has no :{name}: reaction on {ts}");
                }
                users.retain(|u| u != user);
                if users.is_empty() {
                    m.reactions.remove(name);
                }
            }
            let item = m.clone();
            let event_ts = st.next_ts();
            self.inner.reaction_event(add, user, name, &item, &event_ts)
        };
        self.inner.touched();
        let payload = self.inner.event_callback(event);
        self.deliver_and_wait(Kind::Event, payload).await?;
        Ok(())
    }

    /// A teammate runs a slash command. Returns the acknowledgement payload
    /// (Socket Mode; `Null` without one) or the HTTP response body (JSON, a
    /// string for a plain-text body, `Null` when empty). A text/blocks answer
    /// in it is shown like Slack does: recorded as an ephemeral for the user,
    /// or as a channel message for `response_type: in_channel`.
    pub async fn slash_command(
        &self,
        user: &str,
        channel: &str,
        command: &str,
        text: &str,
    ) -> anyhow::Result<Value> {
        let (payload, channel_id) = {
            let mut st = self.inner.lock();
            Self::check_user(&st, user)?;
            let channel = Self::resolve_channel(&st, channel)?;
            let trigger_id = self.inner.new_trigger(&mut st, user);
            let response_url = self.inner.new_response_url(&mut st, user, &channel);
            let payload = json!({
                "token": self.inner.verification_token,
                "team_id": self.inner.team_id,
                "team_domain": self.inner.team_domain,
                "channel_id": channel,
                "channel_name": st.channels[&channel].name,
                "user_id": user,
                "user_name": st.users[user].name,
                "command": command,
                "text": text,
                "api_app_id": self.inner.app_id,
                "is_enterprise_install": "false",
                "response_url": response_url,
                "trigger_id": trigger_id
            });
            (payload, channel)
        };
        let ack = self.deliver_and_wait(Kind::Command, payload).await?;
        let answer = match &ack {
            Value::String(s) if !s.trim().is_empty() => Some(json!({"text": s})),
            Value::Object(o) if o.contains_key("text") || o.contains_key("blocks") => {
                Some(ack.clone())
            }
            _ => None,
        };
        if let Some(answer) = answer {
            self.inner
                .record_response(user, &channel_id, &answer)
                .map_err(|e| anyhow!("command acknowledgement rejected by Slack: {e}"))?;
        }
        Ok(ack)
    }

    /// A teammate picks a message shortcut (`message_action`) on a message;
    /// returns the trigger_id handed to the app.
    pub async fn message_shortcut(
        &self,
        user: &str,
        channel: &str,
        message_ts: &str,
        callback_id: &str,
    ) -> anyhow::Result<String> {
        let (payload, trigger_id) = {
            let mut st = self.inner.lock();
            Self::check_user(&st, user)?;
            let channel = Self::resolve_channel(&st, channel)?;
            let m = st
                .find_message(&channel, message_ts)
                .cloned()
                .ok_or_else(|| anyhow!("no message {message_ts} in {channel}"))?;
            let trigger_id = self.inner.new_trigger(&mut st, user);
            let response_url = self.inner.new_response_url(&mut st, user, &channel);
            let mut message = self.inner.message_json(&st, &m, true);
            if let Some(o) = message.as_object_mut() {
                o.remove("channel");
            }
            let action_ts = st.next_ts();
            let payload = json!({
                "type": "message_action",
                "token": self.inner.verification_token,
                "action_ts": action_ts,
                "team": self.inner.team_brief(),
                "user": self.inner.user_brief(&st.users[user]),
                "channel": {"id": channel, "name": st.channels[&channel].name},
                "is_enterprise_install": false,
                "enterprise": null,
                "callback_id": callback_id,
                "trigger_id": trigger_id,
                "response_url": response_url,
                "message_ts": message_ts,
                "message": message
            });
            (payload, trigger_id)
        };
        self.deliver_and_wait(
            Kind::Interactive {
                accepts_response: false,
            },
            payload,
        )
        .await?;
        Ok(trigger_id)
    }

    /// A teammate submits a modal opened with views.open (`view_submission`
    /// with the stored view and `values` as `view.state.values`). Returns the
    /// acknowledgement payload / response body (e.g. `{"response_action":...}`).
    pub async fn submit_view(
        &self,
        user: &str,
        view_id: &str,
        values: Value,
    ) -> anyhow::Result<Value> {
        let payload = {
            let mut st = self.inner.lock();
            Self::check_user(&st, user)?;
            let rec = st
                .views
                .iter()
                .find(|v| v.view_id == view_id)
                .ok_or_else(|| anyhow!("no view {view_id} was opened"))?;
            if rec.user != user {
                bail!("view {view_id} is open for {}, not {user}", rec.user);
            }
            if !rec.open {
                bail!("view {view_id} was already closed");
            }
            let mut view = rec.view.clone();
            view["state"] = json!({ "values": values });
            let trigger_id = self.inner.new_trigger(&mut st, user);
            json!({
                "type": "view_submission",
                "team": self.inner.team_brief(),
                "user": self.inner.user_brief(&st.users[user]),
                "api_app_id": self.inner.app_id,
                "token": self.inner.verification_token,
                "trigger_id": trigger_id,
                "view": view,
                "response_urls": [],
                "is_enterprise_install": false,
                "enterprise": null
            })
        };
        let ack = self
            .deliver_and_wait(
                Kind::Interactive {
                    accepts_response: true,
                },
                payload,
            )
            .await?;
        let action = ack.get("response_action").and_then(Value::as_str);
        let replacement = match action {
            Some("update") => {
                let new = ack.get("view").cloned().unwrap_or(Value::Null);
                blocks::validate_view(&new).map_err(|e| {
                    anyhow!(
                        "response_action update with an invalid view: {}",
                        e.join("; ")
                    )
                })?;
                Some(self.inner.stored_view(view_id, new))
            }
            _ => None,
        };
        {
            let mut st = self.inner.lock();
            if let Some(rec) = st.views.iter_mut().find(|v| v.view_id == view_id) {
                match (action, replacement) {
                    (Some("errors"), _) | (Some("push"), _) => {}
                    (_, Some(view)) => rec.view = view,
                    _ => rec.open = false,
                }
            }
        }
        self.inner.touched();
        Ok(ack)
    }

    /// Events API mode: Slack's `url_verification` challenge; (status, body).
    pub async fn send_url_verification(&self) -> anyhow::Result<(u16, String)> {
        let body = json!({
            "token": self.inner.verification_token,
            "challenge": rand_id_chars(40),
            "type": "url_verification"
        })
        .to_string();
        let status_body = self
            .post_signed("/slack/events", &body, "application/json", unix_now(), None)
            .await?;
        Ok(status_body)
    }

    /// POSTs `body` to `{events base}{path}`; `signature` None signs it
    /// correctly with `timestamp`. Returns the HTTP status.
    pub async fn post_raw_events(
        &self,
        path: &str,
        body: &str,
        content_type: &str,
        timestamp: i64,
        signature: Option<String>,
    ) -> anyhow::Result<u16> {
        let (status, _) = self
            .post_signed(path, body, content_type, timestamp, signature)
            .await?;
        Ok(status)
    }

    async fn post_signed(
        &self,
        path: &str,
        body: &str,
        content_type: &str,
        timestamp: i64,
        signature: Option<String>,
    ) -> anyhow::Result<(u16, String)> {
        let base = self
            .inner
            .lock()
            .events_url
            .clone()
            .ok_or_else(|| anyhow!("no events URL: call set_events_url first"))?;
        let signature = signature.unwrap_or_else(|| self.sign(timestamp, body));
        let resp = self
            .inner
            .http
            .post(format!("{base}{path}"))
            .timeout(self.inner.opts.ack_timeout)
            .header("Content-Type", content_type)
            .header("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
            .header("X-Slack-Request-Timestamp", timestamp.to_string())
            .header("X-Slack-Signature", signature)
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("POST {base}{path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Ok((status, text))
    }

    /// "v0=" + hex(HMAC-SHA256(signing secret, "v0:{timestamp}:{body}")).
    pub fn sign(&self, timestamp: i64, body: &str) -> String {
        util::sign(&self.inner.signing_secret, timestamp, body)
    }

    // ---- inspection ----

    /// Every message in the channel (top level and replies) in ts order; no ephemerals.
    pub fn messages(&self, channel: &str) -> Vec<Message> {
        let st = self.inner.lock();
        let Some(id) = st.channel_id(channel) else {
            return Vec::new();
        };
        let mut all: Vec<&StoredMessage> = st
            .messages
            .get(&id)
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        all.sort_by_key(|m| util::ts_key(&m.ts));
        all.into_iter().map(|m| st.public_message(m)).collect()
    }

    /// The thread's root (when it exists) then its replies, in ts order.
    pub fn thread(&self, channel: &str, thread_ts: &str) -> Vec<Message> {
        let mut all = self.messages(channel);
        all.retain(|m| m.ts == thread_ts || m.thread_ts.as_deref() == Some(thread_ts));
        all.sort_by_key(|m| (m.ts != thread_ts, util::ts_key(&m.ts)));
        all
    }

    pub fn ephemerals(&self, user: &str) -> Vec<Ephemeral> {
        self.inner
            .lock()
            .ephemerals
            .iter()
            .filter(|e| e.user == user)
            .cloned()
            .collect()
    }

    pub fn views(&self) -> Vec<OpenedView> {
        self.inner
            .lock()
            .views
            .iter()
            .map(|v| OpenedView {
                view_id: v.view_id.clone(),
                user: v.user.clone(),
                view: v.view.clone(),
            })
            .collect()
    }

    /// How many times a Web API method was called, rejected calls included.
    pub fn calls(&self, method: &str) -> usize {
        self.inner.lock().calls.get(method).copied().unwrap_or(0)
    }

    pub fn socket_connections_opened(&self) -> usize {
        self.inner.lock().socket_connections_opened
    }

    /// Socket Mode connections currently open.
    pub fn socket_connections_open(&self) -> usize {
        self.inner.lock().conns.len()
    }

    /// Waits until `f` holds, re-checking on every state change and every 50 ms.
    pub async fn wait_until<F: Fn(&FakeSlack) -> bool>(
        &self,
        what: &str,
        timeout: Duration,
        f: F,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if f(self) {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            let nap = (deadline - now).min(Duration::from_millis(50));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    // ---- faults ----

    /// The next `count` calls to `method` get HTTP 429 with Retry-After.
    pub fn inject_429(&self, method: &str, count: u32, retry_after_secs: u64) {
        self.inner
            .lock()
            .injected_429
            .insert(method.to_string(), (count, retry_after_secs));
    }

    /// The next `count` calls to `method` are carried out (a message is
    /// posted) but their answer is held back — what a caller sees when the
    /// connection dies after Slack accepted the request, or when it is
    /// killed while waiting. [`FakeSlack::release_answers`] lets them go.
    pub fn hold_answers(&self, method: &str, count: u32) {
        self.inner.lock().held.insert(method.to_string(), count);
    }

    /// How many answers were held back so far.
    pub fn answers_held(&self) -> usize {
        self.inner.lock().answers_held
    }

    /// Sends the answers held back now.
    pub fn release_answers(&self) {
        self.inner.release.notify_waiters();
    }

    /// The next `count` calls to `method` get HTTP 500 (plain text body),
    /// without doing anything: a Slack-side failure, to be retried.
    pub fn inject_500(&self, method: &str, count: u32) {
        self.inner
            .lock()
            .injected_500
            .insert(method.to_string(), count);
    }

    /// The next `count` calls to `method` answer `{"ok": false, "error":
    /// code}` without doing anything (a refusal, e.g. `msg_too_long`).
    pub fn inject_error(&self, method: &str, count: u32, code: &str) {
        self.inner
            .lock()
            .injected_errors
            .insert(method.to_string(), (count, code.to_string()));
    }

    /// Sends every Socket Mode connection a `disconnect` envelope with
    /// `reason` (e.g. "refresh_requested", "warning", "link_disabled"), then
    /// closes it. Returns once they are closed (at most ~2 s).
    pub async fn disconnect_sockets(&self, reason: &str) {
        self.close_sockets(|| ConnCmd::Disconnect(reason.to_string()))
            .await;
    }

    /// Closes every Socket Mode connection abruptly (no disconnect envelope,
    /// no close handshake).
    pub async fn drop_sockets(&self) {
        self.close_sockets(|| ConnCmd::Drop).await;
    }

    async fn close_sockets(&self, cmd: impl Fn() -> ConnCmd) {
        let ids: Vec<u64> = {
            let mut st = self.inner.lock();
            let conns = std::mem::take(&mut st.conns);
            for tx in conns.values() {
                let _ = tx.send(cmd());
            }
            conns.keys().copied().collect()
        };
        let _ = self
            .wait_until("socket connections to close", Duration::from_secs(3), |s| {
                let st = s.inner.lock();
                ids.iter().all(|id| !st.live_conns.contains(id))
            })
            .await;
    }

    /// Stops the servers and every delivery (also happens on drop).
    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
    }
}
