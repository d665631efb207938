//! The Web API (`/api/{method}`), file upload/download URLs and response_urls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Map, Value, json};

use super::blocks::{BlocksError, Surface, validate_blocks, validate_view};
use super::state::{Bucket, State, StoredFile, StoredMessage};
use super::util::{chars, form_decode, guess_type, multipart_parts, rand_hex, unix_now, uuid};
use super::{Ephemeral, Inner};

mod files;
mod views;

use files::{download, upload};

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/api/{method}", any(api))
        .route("/upload/{file_id}", post(upload))
        .route("/files/{file_id}/{*rest}", get(download))
        .route("/signin", get(signin))
        .route("/response/{id}", post(response_url))
        .with_state(inner)
}

pub(crate) enum ApiError {
    Slack(String, Map<String, Value>),
    RateLimited(u64),
    /// HTTP 500 with a plain-text body, before the method did anything (an
    /// injected server failure).
    ServerError,
}

pub(crate) fn err(code: &str) -> ApiError {
    ApiError::Slack(code.to_string(), Map::new())
}

pub(crate) fn err_with(code: &str, extra: Value) -> ApiError {
    ApiError::Slack(
        code.to_string(),
        extra.as_object().cloned().unwrap_or_default(),
    )
}

pub(crate) type ApiResult = Result<Value, ApiError>;

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn rate_limited(secs: u64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (
                header::CONTENT_TYPE,
                "application/json; charset=utf-8".to_string(),
            ),
            (header::RETRY_AFTER, secs.to_string()),
        ],
        json!({"ok": false, "error": "ratelimited"}).to_string(),
    )
        .into_response()
}

/// Arguments of a Web API call, from the query string and the body.
#[derive(Default)]
pub(crate) struct Params {
    map: BTreeMap<String, Value>,
}

impl Params {
    /// A string argument; empty strings count as absent, like Slack.
    pub(crate) fn str(&self, k: &str) -> Option<String> {
        match self.map.get(k)? {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => Some(other.to_string()),
        }
    }

    /// A JSON argument: a JSON value in JSON bodies, a JSON-encoded string in forms.
    pub(crate) fn json(&self, k: &str) -> Option<Result<Value, ()>> {
        match self.map.get(k)? {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(serde_json::from_str(s).map_err(|_| ())),
            other => Some(Ok(other.clone())),
        }
    }

    fn bool(&self, k: &str) -> bool {
        match self.map.get(k) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s == "true" || s == "1",
            Some(Value::Number(n)) => n.as_i64() == Some(1),
            _ => false,
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn parse_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Params, Option<String>), ApiError> {
    let mut p = Params::default();
    for (k, v) in form_decode(uri.query().unwrap_or("")) {
        p.map.insert(k, Value::String(v));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if method == Method::POST && !body.is_empty() {
        match mime.as_str() {
            "application/json" => {
                let v: Value = serde_json::from_slice(body).map_err(|_| err("invalid_json"))?;
                let Value::Object(o) = v else {
                    return Err(err("invalid_json"));
                };
                for (k, v) in o {
                    // Slack ignores a token in a JSON body: it must be in the header.
                    if k != "token" {
                        p.map.insert(k, v);
                    }
                }
            }
            "application/x-www-form-urlencoded" => {
                let text = String::from_utf8_lossy(body);
                for (k, v) in form_decode(&text) {
                    p.map.insert(k, Value::String(v));
                }
            }
            "multipart/form-data" => {
                let parts =
                    multipart_parts(&content_type, body).ok_or_else(|| err("invalid_form_data"))?;
                for part in parts {
                    if let (Some(name), None) = (part.name, part.filename) {
                        p.map.insert(
                            name,
                            Value::String(String::from_utf8_lossy(&part.data).into()),
                        );
                    }
                }
            }
            _ => return Err(err("invalid_post_type")),
        }
    }
    let token = bearer(headers).or_else(|| p.str("token"));
    Ok((p, token))
}

#[derive(PartialEq)]
enum TokenKind {
    Bot,
    App,
}

fn required_token(method: &str) -> Option<TokenKind> {
    Some(match method {
        "apps.connections.open" => TokenKind::App,
        "auth.test"
        | "chat.postMessage"
        | "chat.update"
        | "chat.postEphemeral"
        | "chat.getPermalink"
        | "users.info"
        | "users.getPresence"
        | "dnd.info"
        | "conversations.members"
        | "conversations.info"
        | "conversations.history"
        | "conversations.replies"
        | "files.getUploadURLExternal"
        | "files.completeUploadExternal"
        | "views.open"
        | "views.update"
        | "views.publish"
        | "reactions.add"
        | "reactions.remove" => TokenKind::Bot,
        _ => return None,
    })
}

async fn api(
    AxState(inner): AxState<Arc<Inner>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = inner.call_api(&name, &method, &uri, &headers, &body);
    inner.touched();
    let hold = result.is_ok() && {
        let mut st = inner.lock();
        match st.held.get_mut(&name) {
            Some(left) if *left > 0 => {
                *left -= 1;
                st.answers_held += 1;
                true
            }
            _ => false,
        }
    };
    if hold {
        inner.touched();
        tokio::select! {
            _ = inner.release.notified() => {}
            _ = inner.cancel.cancelled() => {}
        }
    }
    match result {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("ok".into(), json!(true));
            }
            json_response(StatusCode::OK, v)
        }
        Err(ApiError::Slack(code, extra)) => {
            let mut o = Map::new();
            o.insert("ok".into(), json!(false));
            o.insert("error".into(), json!(code));
            o.extend(extra);
            json_response(StatusCode::OK, Value::Object(o))
        }
        Err(ApiError::RateLimited(secs)) => rate_limited(secs),
        Err(ApiError::ServerError) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(axum::http::header::CONTENT_TYPE, "text/plain")],
            "Internal Server Error",
        )
            .into_response(),
    }
}

fn bad_blocks(e: BlocksError) -> ApiError {
    match e {
        BlocksError::Format => err("invalid_blocks_format"),
        BlocksError::Invalid(errors) => {
            let messages: Vec<String> = errors.iter().map(|e| format!("[ERROR] {e}")).collect();
            err_with(
                "invalid_blocks",
                json!({"errors": errors, "response_metadata": {"messages": messages}}),
            )
        }
    }
}

/// text + blocks of a message-creating call, validated.
fn message_content(
    p: &Params,
    need_content: bool,
) -> Result<(Option<String>, Option<Value>), ApiError> {
    let text = p.str("text");
    let blocks = match p.json("blocks") {
        None => None,
        Some(Err(())) => return Err(err("invalid_blocks_format")),
        Some(Ok(v)) => {
            validate_blocks(&v, Surface::Message, "/blocks").map_err(bad_blocks)?;
            Some(v)
        }
    };
    let has_blocks = blocks
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|b| !b.is_empty());
    let has_attachments = p.json("attachments").is_some();
    if need_content && text.is_none() && !has_blocks && !has_attachments {
        return Err(err("no_text"));
    }
    if text.as_deref().is_some_and(|t| chars(t) > 40_000) {
        return Err(err("msg_too_long"));
    }
    Ok((text, blocks))
}

fn metadata(p: &Params) -> Result<Option<Value>, ApiError> {
    match p.json("metadata") {
        None => Ok(None),
        Some(Err(())) => Err(err("invalid_metadata_format")),
        Some(Ok(v)) => {
            let ok = v
                .get("event_type")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
                && v.get("event_payload").is_none_or(Value::is_object);
            if ok {
                Ok(Some(v))
            } else {
                Err(err("invalid_metadata_format"))
            }
        }
    }
}

impl Inner {
    fn call_api(
        self: &Arc<Self>,
        name: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> ApiResult {
        {
            let mut st = self.lock();
            *st.calls.entry(name.to_string()).or_default() += 1;
            if let Some((left, secs)) = st.injected_429.get_mut(name)
                && *left > 0
            {
                *left -= 1;
                return Err(ApiError::RateLimited(*secs));
            }
            if let Some(left) = st.injected_500.get_mut(name)
                && *left > 0
            {
                *left -= 1;
                return Err(ApiError::ServerError);
            }
            if let Some((left, code)) = st.injected_errors.get_mut(name)
                && *left > 0
            {
                *left -= 1;
                return Err(err(code.as_str()));
            }
        }
        let Some(kind) = required_token(name) else {
            return Err(err("unknown_method"));
        };
        let (p, token) = parse_request(method, uri, headers, body)?;
        let token = token.ok_or_else(|| err("not_authed"))?;
        let given = if token == self.bot_token {
            TokenKind::Bot
        } else if token == self.app_token {
            TokenKind::App
        } else {
            return Err(err("invalid_auth"));
        };
        if given != kind {
            return Err(err("not_allowed_token_type"));
        }
        match name {
            "auth.test" => Ok(json!({
                "url": format!("https://{}.slack.com/", self.team_domain),
                "team": self.team_name,
                "user": self.bot_name,
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": false
            })),
            "apps.connections.open" => {
                let ticket = uuid();
                self.lock().tickets.insert(ticket.clone(), false);
                Ok(json!({
                    "url": format!(
                        "ws://127.0.0.1:{}/link/?ticket={ticket}&app_id={}",
                        self.ws_port, self.app_hash
                    )
                }))
            }
            "chat.postMessage" => self.chat_post_message(&p),
            "chat.update" => self.chat_update(&p),
            "chat.postEphemeral" => self.chat_post_ephemeral(&p),
            "chat.getPermalink" => self.chat_get_permalink(&p),
            "users.info" => {
                let st = self.lock();
                let user = p.str("user").ok_or_else(|| err("user_not_found"))?;
                let u = st.users.get(&user).ok_or_else(|| err("user_not_found"))?;
                Ok(json!({"user": self.user_json(u)}))
            }
            "users.getPresence" | "dnd.info" => self.presence_api(name, &p),
            "conversations.members" => self.conversations_members(&p),
            "conversations.info" => {
                let st = self.lock();
                let c = p
                    .str("channel")
                    .and_then(|c| st.channel_id(&c))
                    .ok_or_else(|| err("channel_not_found"))?;
                Ok(json!({"channel": self.channel_json(&st.channels[&c])}))
            }
            "conversations.history" | "conversations.replies" => self.history(name, &p),
            "files.getUploadURLExternal" => self.files_get_upload_url(&p),
            "files.completeUploadExternal" => self.files_complete_upload(&p),
            "views.open" => self.views_open(&p),
            "views.update" => self.views_update(&p),
            "views.publish" => self.views_publish(&p),
            "reactions.add" | "reactions.remove" => self.reactions(name == "reactions.add", &p),
            _ => Err(err("unknown_method")),
        }
    }

    /// Resolves `channel` to an ID the bot is a member of.
    fn bot_channel(&self, st: &State, channel: Option<String>) -> Result<String, ApiError> {
        let id = channel
            .and_then(|c| st.channel_id(&c))
            .ok_or_else(|| err("channel_not_found"))?;
        if !st.channels[&id].members.contains(&self.bot_user_id) {
            return Err(err("not_in_channel"));
        }
        Ok(id)
    }

    fn pace(&self, st: &mut State, channel: &str) -> Result<(), ApiError> {
        if !self.opts.pace_posts {
            return Ok(());
        }
        let now = Instant::now();
        let b = st.buckets.entry(channel.to_string()).or_insert(Bucket {
            tokens: 4.0,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64()).min(4.0);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(ApiError::RateLimited(1))
        }
    }

    fn chat_post_message(self: &Arc<Self>, p: &Params) -> ApiResult {
        let mut st = self.lock();
        let channel = self.bot_channel(&st, p.str("channel"))?;
        self.pace(&mut st, &channel)?;
        let (text, blocks) = message_content(p, true)?;
        let metadata = metadata(p)?;
        let thread_ts = p.str("thread_ts");
        let broadcast = thread_ts.is_some() && p.bool("reply_broadcast");
        let ts = st.next_ts();
        let m = StoredMessage {
            channel: channel.clone(),
            ts: ts.clone(),
            thread_ts,
            user: self.bot_user_id.clone(),
            bot: true,
            text: text.unwrap_or_default(),
            blocks: blocks.unwrap_or(Value::Null),
            files: Vec::new(),
            edits: 0,
            metadata,
            subtype: broadcast.then(|| "thread_broadcast".to_string()),
            edited: None,
            reactions: Default::default(),
            client_msg_id: None,
        };
        let message = self.message_json(&st, &m, true);
        let event = self.message_event(&st, &m);
        st.push_message(m);
        drop(st);
        self.emit_event(event);
        Ok(json!({"channel": channel, "ts": ts, "message": message}))
    }

    fn chat_update(self: &Arc<Self>, p: &Params) -> ApiResult {
        let mut st = self.lock();
        let channel = p
            .str("channel")
            .and_then(|c| st.channel_id(&c))
            .ok_or_else(|| err("channel_not_found"))?;
        let ts = p.str("ts").ok_or_else(|| err("message_not_found"))?;
        let before = st
            .find_message(&channel, &ts)
            .cloned()
            .ok_or_else(|| err("message_not_found"))?;
        if !before.bot || before.user != self.bot_user_id {
            return Err(err("cant_update_message"));
        }
        let (text, blocks) = message_content(p, true)?;
        let metadata = metadata(p)?;
        let edit_ts = st.next_ts();
        let bot_user = self.bot_user_id.clone();
        let after = {
            let m = st.find_message_mut(&channel, &ts).expect("message");
            if let Some(t) = text {
                m.text = t;
            }
            if let Some(b) = blocks {
                // An empty array removes the blocks; no `blocks` keeps them.
                m.blocks = if b.as_array().is_some_and(Vec::is_empty) {
                    Value::Null
                } else {
                    b
                };
            }
            if metadata.is_some() {
                m.metadata = metadata;
            }
            m.edits += 1;
            m.edited = Some((bot_user, edit_ts.clone()));
            m.clone()
        };
        let event = self.message_changed_event(&st, &before, &after, &edit_ts);
        let message = self.message_json(&st, &after, true);
        drop(st);
        self.emit_event(event);
        Ok(json!({"channel": channel, "ts": ts, "text": after.text, "message": message}))
    }

    fn chat_post_ephemeral(self: &Arc<Self>, p: &Params) -> ApiResult {
        let mut st = self.lock();
        let channel = self.bot_channel(&st, p.str("channel"))?;
        let user = p.str("user").ok_or_else(|| err("user_not_in_channel"))?;
        if !st.channels[&channel].members.contains(&user) {
            return Err(err("user_not_in_channel"));
        }
        let (text, blocks) = message_content(p, true)?;
        let ts = st.next_ts();
        st.ephemerals.push(Ephemeral {
            channel,
            user,
            thread_ts: p.str("thread_ts"),
            text: text.unwrap_or_default(),
            blocks: blocks.unwrap_or(Value::Null),
        });
        Ok(json!({"message_ts": ts}))
    }

    fn chat_get_permalink(&self, p: &Params) -> ApiResult {
        let st = self.lock();
        let channel = p
            .str("channel")
            .and_then(|c| st.channel_id(&c))
            .ok_or_else(|| err("channel_not_found"))?;
        let ts = p
            .str("message_ts")
            .ok_or_else(|| err("message_not_found"))?;
        let m = st
            .find_message(&channel, &ts)
            .ok_or_else(|| err("message_not_found"))?;
        let mut link = format!(
            "https://{}.slack.com/archives/{channel}/p{}",
            self.team_domain,
            ts.replace('.', "")
        );
        if let Some(t) = m.thread_ts.as_ref().filter(|t| **t != ts) {
            link.push_str(&format!("?thread_ts={t}&cid={channel}"));
        }
        Ok(json!({"channel": channel, "permalink": link}))
    }

    fn conversations_members(&self, p: &Params) -> ApiResult {
        let st = self.lock();
        let channel = p
            .str("channel")
            .and_then(|c| st.channel_id(&c))
            .ok_or_else(|| err("channel_not_found"))?;
        let limit = match p.str("limit") {
            None => 100,
            Some(l) => match l.parse::<usize>() {
                Ok(0) => 100,
                Ok(n) => n.min(1000),
                Err(_) => return Err(err("invalid_limit")),
            },
        };
        let start = match p.str("cursor") {
            None => 0,
            Some(c) => c
                .strip_prefix("dXNlcjpV")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| err("invalid_cursor"))?,
        };
        let members = &st.channels[&channel].members;
        let page: Vec<&String> = members.iter().skip(start).take(limit).collect();
        let next = if start + limit < members.len() {
            format!("dXNlcjpV{}", start + limit)
        } else {
            String::new()
        };
        Ok(json!({"members": page, "response_metadata": {"next_cursor": next}}))
    }

    /// conversations.history / .replies: 1 request per minute, as for
    /// non-Marketplace apps since 2025.
    fn history(&self, name: &str, p: &Params) -> ApiResult {
        let mut st = self.lock();
        let now = Instant::now();
        match st.minute_windows.get(name) {
            Some(start) if now.duration_since(*start) < Duration::from_secs(60) => {
                let left = 60 - now.duration_since(*start).as_secs();
                return Err(ApiError::RateLimited(left.max(1)));
            }
            _ => {
                st.minute_windows.insert(name.to_string(), now);
            }
        }
        let channel = p
            .str("channel")
            .and_then(|c| st.channel_id(&c))
            .ok_or_else(|| err("channel_not_found"))?;
        let limit = p
            .str("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0)
            .unwrap_or(100)
            .min(1000);
        let all = st.messages.get(&channel).cloned().unwrap_or_default();
        let picked: Vec<Value> = if name == "conversations.history" {
            all.iter()
                .rev()
                .filter(|m| {
                    m.thread_ts.is_none()
                        || m.thread_ts.as_deref() == Some(m.ts.as_str())
                        || m.subtype.as_deref() == Some("thread_broadcast")
                })
                .take(limit)
                .map(|m| self.message_json(&st, m, true))
                .collect()
        } else {
            let ts = p.str("ts").ok_or_else(|| err("thread_not_found"))?;
            let root = st
                .find_message(&channel, &ts)
                .ok_or_else(|| err("thread_not_found"))?;
            std::iter::once(root)
                .chain(
                    all.iter()
                        .filter(|m| m.thread_ts.as_deref() == Some(ts.as_str()) && m.ts != ts),
                )
                .take(limit)
                .map(|m| self.message_json(&st, m, true))
                .collect()
        };
        // Metadata is in the answer only when asked for.
        let with_metadata = p.bool("include_all_metadata");
        let picked: Vec<Value> = picked
            .into_iter()
            .map(|mut m| {
                if !with_metadata && let Some(o) = m.as_object_mut() {
                    o.remove("metadata");
                }
                m
            })
            .collect();
        Ok(json!({
            "messages": picked,
            "has_more": false,
            "response_metadata": {"next_cursor": ""}
        }))
    }

    fn reactions(self: &Arc<Self>, add: bool, p: &Params) -> ApiResult {
        let mut st = self.lock();
        let channel = self.bot_channel(&st, p.str("channel"))?;
        let name = p.str("name").ok_or_else(|| err("invalid_name"))?;
        let ts = p.str("timestamp").ok_or_else(|| err("message_not_found"))?;
        let bot = self.bot_user_id.clone();
        let m = st
            .find_message_mut(&channel, &ts)
            .ok_or_else(|| err("message_not_found"))?;
        let users = m.reactions.entry(name.clone()).or_default();
        if add {
            if users.contains(&bot) {
                return Err(err("already_reacted"));
            }
            users.push(bot.clone());
        } else {
            if !users.contains(&bot) {
                return Err(err("no_reaction"));
            }
            users.retain(|u| *u != bot);
            if users.is_empty() {
                m.reactions.remove(&name);
            }
        }
        let item = m.clone();
        let event_ts = st.next_ts();
        drop(st);
        self.emit_event(self.reaction_event(add, &bot, &name, &item, &event_ts));
        Ok(json!({}))
    }
}

async fn signin() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to your workspace</body></html>",
    )
        .into_response()
}

/// A response_url from a slash command or shortcut: JSON message posts.
async fn response_url(
    AxState(inner): AxState<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    };
    let (user, channel) = {
        let mut st = inner.lock();
        match st.response_urls.get_mut(&id) {
            None => return (StatusCode::NOT_FOUND, "no_service").into_response(),
            Some(r) if r.issued.elapsed() > Duration::from_secs(30 * 60) => {
                return (StatusCode::NOT_FOUND, "expired_url").into_response();
            }
            Some(r) if r.uses >= 5 => return (StatusCode::NOT_FOUND, "used_url").into_response(),
            Some(r) => {
                r.uses += 1;
                (r.user.clone(), r.channel.clone())
            }
        }
    };
    if v.get("delete_original").and_then(Value::as_bool) == Some(true) {
        return (StatusCode::OK, "ok").into_response();
    }
    match inner.record_response(&user, &channel, &v) {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

impl Inner {
    /// Records a message sent as a response to a user's command or shortcut
    /// (response_url post or immediate ack payload): in_channel ones become
    /// bot messages, the others ephemerals for that user.
    pub(crate) fn record_response(
        self: &Arc<Self>,
        user: &str,
        channel: &str,
        v: &Value,
    ) -> Result<(), &'static str> {
        let text = v
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let blocks = v.get("blocks").cloned().unwrap_or(Value::Null);
        if !blocks.is_null() {
            validate_blocks(&blocks, Surface::Message, "/blocks").map_err(|_| "invalid_blocks")?;
        }
        if text.is_empty() && blocks.as_array().is_none_or(Vec::is_empty) {
            return Err("no_text");
        }
        let thread_ts = v
            .get("thread_ts")
            .and_then(Value::as_str)
            .map(str::to_string);
        let in_channel = v.get("response_type").and_then(Value::as_str) == Some("in_channel");
        let mut st = self.lock();
        if in_channel {
            let ts = st.next_ts();
            let m = StoredMessage {
                channel: channel.to_string(),
                ts,
                thread_ts,
                user: self.bot_user_id.clone(),
                bot: true,
                text,
                blocks,
                files: Vec::new(),
                edits: 0,
                metadata: None,
                subtype: None,
                edited: None,
                reactions: Default::default(),
                client_msg_id: None,
            };
            let event = self.message_event(&st, &m);
            st.push_message(m);
            drop(st);
            self.emit_event(event);
        } else {
            st.ephemerals.push(Ephemeral {
                channel: channel.to_string(),
                user: user.to_string(),
                thread_ts,
                text,
                blocks,
            });
            drop(st);
        }
        self.touched();
        Ok(())
    }
}
