//! Self-test of the fake Slack the Slack adapter's integration tests run
//! against: real HTTP and WebSocket clients, and every payload it emits
//! checked against slack-morphism's models.

mod commands;
mod errors;
mod events_api;
#[path = "../fake_slack/mod.rs"]
mod fake_slack;
mod morphism_client;
mod socket_mode;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fake_slack::{FakeSlack, FakeSlackOptions, form_encode};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SECOND: Duration = Duration::from_secs(1);

// slack-morphism keeps its Socket Mode envelope enum private to the crate;
// this mirrors `SlackSocketModeEvent` (same tag, same payload models).
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
#[allow(dead_code, clippy::large_enum_variant)]
enum SocketEvent {
    #[serde(rename = "hello")]
    Hello {
        connection_info: ConnectionInfo,
        num_connections: u32,
        debug_info: DebugInfo,
    },
    #[serde(rename = "disconnect")]
    Disconnect {
        reason: String,
        debug_info: DebugInfo,
    },
    #[serde(rename = "interactive")]
    Interactive {
        envelope_id: String,
        accepts_response_payload: bool,
        payload: SlackInteractionEvent,
    },
    #[serde(rename = "events_api")]
    EventsApi {
        envelope_id: String,
        accepts_response_payload: bool,
        payload: SlackPushEventCallback,
    },
    #[serde(rename = "slash_commands")]
    SlashCommands {
        envelope_id: String,
        accepts_response_payload: bool,
        payload: SlackCommandEvent,
    },
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct ConnectionInfo {
    app_id: String,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct DebugInfo {
    host: String,
    build_number: Option<u64>,
    approximate_connection_time: Option<u64>,
}

fn socket_event(v: &Value) -> SocketEvent {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("not a Socket Mode envelope ({e}): {v}"))
}

fn model<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("does not match {} ({e}): {v}", std::any::type_name::<T>()))
}

/// The inner event of an events_api envelope, checked to be modelled (not Unknown).
fn pushed_event(v: &Value) -> SlackEventCallbackBody {
    match socket_event(v) {
        SocketEvent::EventsApi { payload, .. } => {
            assert!(
                !matches!(payload.event, SlackEventCallbackBody::Unknown(_)),
                "event not understood by slack-morphism: {v}"
            );
            payload.event
        }
        other => panic!("expected events_api, got {other:?}"),
    }
}

async fn start(opts: FakeSlackOptions) -> FakeSlack {
    FakeSlack::start(opts).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(5 * SECOND)
        .build()
        .unwrap()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

/// POST application/json with the bot token.
async fn post_json(slack: &FakeSlack, method: &str, body: Value) -> Answer {
    post_json_as(slack, method, Some(slack.bot_token()), body).await
}

async fn post_json_as(slack: &FakeSlack, method: &str, token: Option<&str>, body: Value) -> Answer {
    let mut req = http()
        .post(format!("{}/{method}", slack.api_url()))
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    answer(req.send().await.unwrap()).await
}

/// POST application/x-www-form-urlencoded, token as a form field.
async fn post_form(slack: &FakeSlack, method: &str, token: &str, pairs: &[(&str, &str)]) -> Answer {
    let mut all = vec![("token", token)];
    all.extend_from_slice(pairs);
    let req = http()
        .post(format!("{}/{method}", slack.api_url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form_encode(&all));
    answer(req.send().await.unwrap()).await
}

/// GET with a query string and the bot token in the header.
async fn get(slack: &FakeSlack, method: &str, query: &[(&str, &str)]) -> Answer {
    let req = http()
        .get(format!(
            "{}/{method}?{}",
            slack.api_url(),
            form_encode(query)
        ))
        .header("Authorization", format!("Bearer {}", slack.bot_token()));
    answer(req.send().await.unwrap()).await
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}

fn assert_error(a: &Answer, error: &str) {
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["ok"], json!(false), "{}", a.body);
    assert_eq!(a.body["error"], json!(error), "{}", a.body);
}

fn assert_ok(a: &Answer) {
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["ok"], json!(true), "{}", a.body);
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

enum Frame {
    Json(Value),
    Closed,
    Timeout,
}

async fn open_socket(slack: &FakeSlack) -> (Ws, Value) {
    let a = post_json_as(
        slack,
        "apps.connections.open",
        Some(slack.app_token()),
        json!({}),
    )
    .await;
    assert_ok(&a);
    let _: SlackApiAppsConnectionOpenResponse = model(&a.body);
    let url = a.body["url"].as_str().unwrap().to_string();
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let Frame::Json(hello) = next_frame(&mut ws, 2 * SECOND).await else {
        panic!("no hello");
    };
    (ws, hello)
}

async fn next_frame(ws: &mut Ws, within: Duration) -> Frame {
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => return Frame::Timeout,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(WsMessage::Close(_)))) => {
                return Frame::Closed;
            }
            Ok(Some(Ok(WsMessage::Text(t)))) => {
                return Frame::Json(serde_json::from_str(&t).unwrap());
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn expect_frame(ws: &mut Ws) -> Value {
    match next_frame(ws, 3 * SECOND).await {
        Frame::Json(v) => v,
        Frame::Closed => panic!("socket closed"),
        Frame::Timeout => panic!("no frame"),
    }
}

async fn ack(ws: &mut Ws, envelope: &Value, payload: Option<Value>) {
    let mut frame = json!({"envelope_id": envelope["envelope_id"]});
    if let Some(p) = payload {
        frame["payload"] = p;
    }
    ws.send(WsMessage::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// Workspace: alice and bob, #support with the bot, #random without it.
struct Team {
    slack: FakeSlack,
    alice: String,
    bob: String,
    support: String,
    random: String,
}

async fn team(opts: FakeSlackOptions) -> Team {
    let slack = start(opts).await;
    let alice = slack.add_user("alice", "Alice Liddell");
    let bob = slack.add_user("bob", "Bob Dylan");
    let support = slack.add_channel("support", &[&alice, &bob, slack.bot_user_id()]);
    let random = slack.add_channel("random", &[&alice]);
    Team {
        slack,
        alice,
        bob,
        support,
        random,
    }
}

fn quick_acks() -> FakeSlackOptions {
    FakeSlackOptions {
        ack_timeout: Duration::from_millis(300),
        ..Default::default()
    }
}

#[tokio::test]
async fn auth_errors_and_identity() {
    let t = team(FakeSlackOptions::default()).await;
    let s = &t.slack;
    assert_error(
        &post_json_as(s, "auth.test", None, json!({})).await,
        "not_authed",
    );
    assert_error(
        &post_json_as(s, "auth.test", Some("xoxb-nope"), json!({})).await,
        "invalid_auth",
    );
    assert_error(
        &post_json(s, "chat.frobnicate", json!({})).await,
        "unknown_method",
    );
    // A token in a JSON body does not count: it belongs in the header.
    let a = post_json_as(s, "auth.test", None, json!({"token": s.bot_token()})).await;
    assert_error(&a, "not_authed");
    // ...but a form field does.
    let a = post_form(s, "auth.test", s.bot_token(), &[]).await;
    assert_ok(&a);
    let me: SlackApiAuthTestResponse = model(&a.body);
    assert_eq!(me.user_id.to_string(), s.bot_user_id());
    assert_eq!(me.team_id.to_string(), s.team_id());
    assert!(me.bot_id.is_some());
    // Token types.
    let a = post_json(s, "apps.connections.open", json!({})).await;
    assert_error(&a, "not_allowed_token_type");
    let a = post_json_as(s, "auth.test", Some(s.app_token()), json!({})).await;
    assert_error(&a, "not_allowed_token_type");
    assert!(s.bot_token().starts_with("xoxb-") && s.app_token().starts_with("xapp-"));
    assert_eq!(s.calls("auth.test"), 5);
    assert_eq!(s.calls("chat.frobnicate"), 1);

    // users.info (GET, as slack-morphism sends it)
    let a = get(s, "users.info", &[("user", &t.alice)]).await;
    assert_ok(&a);
    let u: SlackApiUsersInfoResponse = model(&a.body);
    assert_eq!(u.user.real_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(a.body["user"]["profile"]["display_name"], json!("alice"));
    assert_eq!(a.body["user"]["tz"], json!("Europe/Paris"));
    assert_error(
        &get(s, "users.info", &[("user", "U0NOBODY")]).await,
        "user_not_found",
    );

    // conversations.members, paginated
    let a = get(
        s,
        "conversations.members",
        &[("channel", &t.support), ("limit", "2")],
    )
    .await;
    assert_ok(&a);
    let page: SlackApiConversationsMembersResponse = model(&a.body);
    assert_eq!(page.members.len(), 2);
    let cursor = a.body["response_metadata"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!cursor.is_empty());
    let a = get(
        s,
        "conversations.members",
        &[("channel", &t.support), ("limit", "2"), ("cursor", &cursor)],
    )
    .await;
    assert_eq!(a.body["members"], json!([s.bot_user_id()]));
    assert_eq!(a.body["response_metadata"]["next_cursor"], json!(""));
    assert_error(
        &get(s, "conversations.members", &[("channel", "C0NOPE")]).await,
        "channel_not_found",
    );

    let a = get(s, "conversations.info", &[("channel", &t.random)]).await;
    assert_ok(&a);
    let c: SlackApiConversationsInfoResponse = model(&a.body);
    assert_eq!(c.channel.flags.is_member, Some(false));
}

#[tokio::test]
async fn post_message_validation() {
    let t = team(FakeSlackOptions::default()).await;
    let s = &t.slack;
    let post = |body: Value| post_json(s, "chat.postMessage", body);
    let section =
        |text: String| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}});

    assert_error(
        &post(json!({"channel": "C0NOPE", "text": "x"})).await,
        "channel_not_found",
    );
    assert_error(
        &post(json!({"channel": t.random, "text": "x"})).await,
        "not_in_channel",
    );
    assert_error(&post(json!({"channel": t.support})).await, "no_text");
    assert_error(
        &post(json!({"channel": t.support, "blocks": []})).await,
        "no_text",
    );
    let long = "x".repeat(40_001);
    assert_error(
        &post(json!({"channel": t.support, "text": long})).await,
        "msg_too_long",
    );

    let invalid = [
        json!([{"type": "carousel_of_doom"}]),
        json!([{"text": "no type"}]),
        json!(
            (0..51)
                .map(|_| json!({"type": "divider"}))
                .collect::<Vec<_>>()
        ),
        json!([section("y".repeat(3001))]),
        json!([{"type": "header", "text": {"type": "plain_text", "text": "h".repeat(151)}}]),
        json!([{"type": "header", "text": {"type": "mrkdwn", "text": "*bold*"}}]),
        json!([{"type": "context", "elements": (0..11).map(|_| json!({"type": "mrkdwn", "text": "c"})).collect::<Vec<_>>()}]),
        json!([{"type": "divider", "block_id": "b".repeat(256)}]),
        json!([{"type": "divider", "block_id": "same"}, {"type": "divider", "block_id": "same"}]),
        json!([{"type": "section", "text": {"type": "mrkdwn", "text": "x", "emoji": true}}]),
        json!([{"type": "section"}]),
    ];
    for blocks in invalid {
        let a = post(json!({"channel": t.support, "text": "fallback", "blocks": blocks})).await;
        assert_error(&a, "invalid_blocks");
        assert!(
            a.body["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{}",
            a.body
        );
    }
    let a = post_form(
        s,
        "chat.postMessage",
        s.bot_token(),
        &[
            ("channel", &t.support),
            ("text", "x"),
            ("blocks", "not json"),
        ],
    )
    .await;
    assert_error(&a, "invalid_blocks_format");
    assert!(s.messages(&t.support).is_empty());

    // Limits exactly met are fine.
    let full: Vec<Value> = (0..50)
        .map(|i| json!({"type": "section", "block_id": format!("b{i}"), "text": {"type": "mrkdwn", "text": "y".repeat(3000)}}))
        .collect();
    let a = post(json!({
        "channel": t.support,
        "text": "fallback",
        "blocks": full,
        "unfurl_links": false,
        "metadata": {"event_type": "ticket", "event_payload": {"id": "42"}}
    }))
    .await;
    assert_ok(&a);
    let r: SlackApiChatPostMessageResponse = model(&a.body);
    assert_eq!(r.channel.to_string(), t.support);
    assert_eq!(
        r.message
            .sender
            .bot_id
            .as_ref()
            .map(|b| b.to_string())
            .as_deref(),
        Some("B0BOT00001")
    );

    // Form encoding: blocks as a JSON string; a thread_ts naming nothing is accepted.
    let blocks =
        json!([{"type": "header", "text": {"type": "plain_text", "text": "Hi"}}]).to_string();
    let a = post_form(
        s,
        "chat.postMessage",
        s.bot_token(),
        &[
            ("channel", &t.support),
            ("text", "hi"),
            ("blocks", &blocks),
            ("thread_ts", "1.000001"),
        ],
    )
    .await;
    assert_ok(&a);
    let msgs = s.messages(&t.support);
    assert_eq!(msgs.len(), 2);
    assert!(msgs[0].ts < msgs[1].ts);
    assert_eq!(
        msgs[0].metadata.as_ref().unwrap()["event_type"],
        json!("ticket")
    );
    assert_eq!(msgs[1].thread_ts.as_deref(), Some("1.000001"));
    assert_eq!(msgs[1].blocks[0]["type"], json!("header"));
    assert!(msgs.iter().all(|m| m.bot && m.user == s.bot_user_id()));
    assert_eq!(s.calls("chat.postMessage"), 19);
}

#[tokio::test]
async fn threads_updates_ephemerals() {
    let t = team(FakeSlackOptions::default()).await;
    let s = &t.slack;
    let root = post_json(
        s,
        "chat.postMessage",
        json!({"channel": t.support, "text": "New mail"}),
    )
    .await;
    let root_ts = root.body["ts"].as_str().unwrap().to_string();
    for text in ["first", "second"] {
        let a = post_json(
            s,
            "chat.postMessage",
            json!({"channel": t.support, "thread_ts": root_ts, "text": text}),
        )
        .await;
        assert_ok(&a);
        assert_eq!(a.body["message"]["thread_ts"], json!(root_ts));
    }
    let other = post_json(
        s,
        "chat.postMessage",
        json!({"channel": t.support, "text": "other"}),
    )
    .await;
    assert_ok(&other);
    let thread = s.thread(&t.support, &root_ts);
    let texts: Vec<&str> = thread.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["New mail", "first", "second"]);
    let a = get(
        s,
        "conversations.replies",
        &[("channel", &t.support), ("ts", &root_ts)],
    )
    .await;
    assert_ok(&a);
    assert_eq!(a.body["messages"][0]["reply_count"], json!(2));
    assert_eq!(
        a.body["messages"][2]["parent_user_id"],
        json!(s.bot_user_id())
    );
    let _: SlackMessage = model(&a.body["messages"][1]);

    // chat.update
    let a = post_json(
        s,
        "chat.update",
        json!({"channel": t.support, "ts": root_ts, "text": "Claimed", "blocks": [{"type": "divider"}]}),
    )
    .await;
    assert_ok(&a);
    let _: SlackApiChatUpdateResponse = model(&a.body);
    let root_now = &s.thread(&t.support, &root_ts)[0];
    assert_eq!((root_now.text.as_str(), root_now.edits), ("Claimed", 1));
    let a = post_json(
        s,
        "chat.update",
        json!({"channel": t.support, "ts": "1.2", "text": "x"}),
    )
    .await;
    assert_error(&a, "message_not_found");

    // A teammate's message cannot be updated by the bot (posting needs no socket:
    // the event waits in the queue, so do not await the delivery here).
    let poster = {
        let s = s.clone();
        let (alice, support) = (t.alice.clone(), t.support.clone());
        tokio::spawn(async move { s.post_message(&alice, &support, None, "hello").await })
    };
    s.wait_until("alice's message", 2 * SECOND, |s| {
        s.messages(&t.support).len() == 5
    })
    .await
    .unwrap();
    let alice_ts = s.messages(&t.support)[4].ts.clone();
    let a = post_json(
        s,
        "chat.update",
        json!({"channel": t.support, "ts": alice_ts, "text": "x"}),
    )
    .await;
    assert_error(&a, "cant_update_message");
    poster.abort();

    // chat.postEphemeral
    let a = post_json(
        s,
        "chat.postEphemeral",
        json!({"channel": t.support, "user": s.bot_user_id(), "text": "x"}),
    )
    .await;
    assert_ok(&a);
    let outsider = s.add_user("carol", "Carol");
    let a = post_json(
        s,
        "chat.postEphemeral",
        json!({"channel": t.support, "user": outsider, "text": "x"}),
    )
    .await;
    assert_error(&a, "user_not_in_channel");
    let a = post_json(
        s,
        "chat.postEphemeral",
        json!({"channel": t.support, "user": t.bob, "text": "only you", "thread_ts": root_ts}),
    )
    .await;
    assert_ok(&a);
    assert!(a.body["message_ts"].is_string());
    let eph = s.ephemerals(&t.bob);
    assert_eq!(eph.len(), 1);
    assert_eq!(
        (eph[0].text.as_str(), eph[0].thread_ts.as_deref()),
        ("only you", Some(root_ts.as_str()))
    );
    assert_eq!(
        s.messages(&t.support).len(),
        5,
        "ephemerals are not channel messages"
    );
}

#[tokio::test]
async fn upload_flow() {
    let t = team(FakeSlackOptions::default()).await;
    let s = &t.slack;
    let root = post_json(
        s,
        "chat.postMessage",
        json!({"channel": t.support, "text": "mail"}),
    )
    .await;
    let root_ts = root.body["ts"].as_str().unwrap().to_string();
    let data = b"%PDF-1.4 fake invoice".to_vec();
    let len = data.len().to_string();

    assert_error(
        &get(
            s,
            "files.getUploadURLExternal",
            &[("filename", "invoice.pdf")],
        )
        .await,
        "invalid_arguments",
    );
    let a = get(
        s,
        "files.getUploadURLExternal",
        &[("filename", "invoice.pdf"), ("length", &len)],
    )
    .await;
    assert_ok(&a);
    let up: SlackApiFilesGetUploadUrlExternalResponse = model(&a.body);
    let file_id = up.file_id.to_string();

    // Completing before the bytes are there fails.
    let a = post_json(
        s,
        "files.completeUploadExternal",
        json!({"files": [{"id": file_id}]}),
    )
    .await;
    assert_error(&a, "file_not_found");

    let resp = http()
        .post(up.upload_url.0.to_string())
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), format!("OK - {}", data.len()));

    let a = post_json(
        s,
        "files.completeUploadExternal",
        json!({
            "files": [{"id": file_id, "title": "Invoice"}],
            "channel_id": t.support,
            "thread_ts": root_ts,
            "initial_comment": "Attachments"
        }),
    )
    .await;
    assert_ok(&a);
    let done: SlackApiFilesCompleteUploadExternalResponse = model(&a.body);
    assert_eq!(done.files[0].title.as_deref(), Some("Invoice"));
    // Only once.
    let a = post_json(
        s,
        "files.completeUploadExternal",
        json!({"files": [{"id": file_id}]}),
    )
    .await;
    assert_error(&a, "file_not_found");

    let thread = s.thread(&t.support, &root_ts);
    assert_eq!(thread.len(), 2);
    let f = &thread[1].files[0];
    assert_eq!(
        (f.name.as_str(), f.title.as_str(), f.mimetype.as_str()),
        ("invoice.pdf", "Invoice", "application/pdf")
    );
    assert_eq!(f.data, data);
    assert_eq!(thread[1].text, "Attachments");

    // Multipart upload, declared length that does not match.
    let a = get(
        s,
        "files.getUploadURLExternal",
        &[("filename", "a.txt"), ("length", "99")],
    )
    .await;
    let (url, id2) = (
        a.body["upload_url"].as_str().unwrap().to_string(),
        a.body["file_id"].as_str().unwrap().to_string(),
    );
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n";
    let resp = http()
        .post(url)
        .header("Content-Type", "multipart/form-data; boundary=XyZ")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "OK - 5");
    let a = post_form(
        s,
        "files.completeUploadExternal",
        s.bot_token(),
        &[
            ("files", &json!([{"id": id2}]).to_string()),
            ("channel_id", &t.support),
        ],
    )
    .await;
    assert_error(&a, "file_upload_size_mismatch");

    // Download: the bot token is needed.
    let msg = post_json(
        s,
        "conversations.replies",
        json!({"channel": t.support, "ts": root_ts}),
    )
    .await;
    assert_ok(&msg);
    let file = &msg.body["messages"][1]["files"][0];
    let _: SlackFile = model(file);
    let download = file["url_private_download"].as_str().unwrap();
    let resp = http()
        .get(download)
        .header("Authorization", format!("Bearer {}", s.bot_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.unwrap().to_vec(), data);
    let resp = http().get(download).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let following = reqwest::Client::new().get(download).send().await.unwrap();
    assert!(
        following.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_ne!(following.bytes().await.unwrap().to_vec(), data);
}

#[tokio::test]
async fn reactions_files_and_waiting() {
    let t = team(quick_acks()).await;
    let s = &t.slack;
    let (mut ws, _) = open_socket(s).await;
    let root = post_json(
        s,
        "chat.postMessage",
        json!({"channel": t.support, "text": "mail"}),
    )
    .await;
    let root_ts = root.body["ts"].as_str().unwrap().to_string();
    let echo = expect_frame(&mut ws).await;
    ack(&mut ws, &echo, None).await;

    let react = {
        let (s, alice, support, ts) = (
            s.clone(),
            t.alice.clone(),
            t.support.clone(),
            root_ts.clone(),
        );
        tokio::spawn(async move {
            s.react(&alice, &support, &ts, "raising_hand").await?;
            s.unreact(&alice, &support, &ts, "raising_hand").await
        })
    };
    for expected in ["reaction_added", "reaction_removed"] {
        let env = expect_frame(&mut ws).await;
        let event = pushed_event(&env);
        match (&event, expected) {
            (SlackEventCallbackBody::ReactionAdded(r), "reaction_added") => {
                assert_eq!(
                    r.item_user.as_ref().map(|u| u.to_string()).as_deref(),
                    Some(s.bot_user_id())
                );
            }
            (SlackEventCallbackBody::ReactionRemoved(r), "reaction_removed") => {
                assert_eq!(r.user.to_string(), t.alice);
            }
            other => panic!("{other:?}"),
        }
        ack(&mut ws, &env, None).await;
    }
    react.await.unwrap().unwrap();
    assert!(
        s.unreact(&t.alice, &t.support, &root_ts, "raising_hand")
            .await
            .is_err()
    );

    // A teammate's file in the thread.
    let upload = {
        let (s, bob, support, ts) = (s.clone(), t.bob.clone(), t.support.clone(), root_ts.clone());
        tokio::spawn(async move {
            s.post_file(
                &bob,
                &support,
                Some(&ts),
                "scan.png",
                "image/png",
                vec![137, 80, 78, 71],
                "the scan",
            )
            .await
        })
    };
    let env = expect_frame(&mut ws).await;
    let url = match pushed_event(&env) {
        SlackEventCallbackBody::Message(m) => {
            assert_eq!(m.subtype, Some(SlackMessageEventType::FileShare));
            let files = m.content.unwrap().files.unwrap();
            assert_eq!(
                files[0].mimetype.as_ref().map(|m| m.to_string()).as_deref(),
                Some("image/png")
            );
            files[0].url_private_download.clone().unwrap()
        }
        other => panic!("{other:?}"),
    };
    ack(&mut ws, &env, None).await;
    upload.await.unwrap().unwrap();
    let bytes = http()
        .get(url.as_str())
        .header("Authorization", format!("Bearer {}", s.bot_token()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.to_vec(), vec![137, 80, 78, 71]);
    assert_eq!(s.thread(&t.support, &root_ts)[1].files[0].name, "scan.png");

    let err = s
        .wait_until("a miracle", Duration::from_millis(100), |s| {
            s.messages(&t.random).len() == 1
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a miracle"));
    s.shutdown();
    assert!(
        http()
            .post(format!("{}/auth.test", s.api_url()))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn upload_limits_and_injected_refusals() {
    let t = team(FakeSlackOptions {
        max_upload_bytes: Some(10),
        ..Default::default()
    })
    .await;
    let s = &t.slack;
    // A workspace that restricts large uploads; an empty file has no length.
    for (len, outcome) in [
        ("0", Some("invalid_arguments")),
        ("10", None),
        ("11", Some("file_upload_size_restricted")),
    ] {
        let a = get(
            s,
            "files.getUploadURLExternal",
            &[("filename", "a.bin"), ("length", len)],
        )
        .await;
        match outcome {
            Some(error) => assert_error(&a, error),
            None => assert_ok(&a),
        }
    }
    // The next two posts are refused with the injected code, without effect.
    s.inject_error("chat.postMessage", 2, "msg_too_long");
    for _ in 0..2 {
        let a = post_json(
            s,
            "chat.postMessage",
            json!({"channel": t.support, "text": "hi"}),
        )
        .await;
        assert_error(&a, "msg_too_long");
    }
    assert!(s.messages(&t.support).is_empty());
    let a = post_json(
        s,
        "chat.postMessage",
        json!({"channel": t.support, "text": "hi"}),
    )
    .await;
    assert_ok(&a);
    assert_eq!(s.messages(&t.support).len(), 1);
}
