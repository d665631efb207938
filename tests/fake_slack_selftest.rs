//! Self-test of the fake Slack the Slack adapter's integration tests run
//! against: real HTTP and WebSocket clients, and every payload it emits
//! checked against slack-morphism's models.

#[path = "fake_slack/mod.rs"]
mod fake_slack;

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
async fn socket_mode_delivery_and_redelivery() {
    let t = team(quick_acks()).await;
    let s = &t.slack;
    let (mut ws1, hello1) = open_socket(s).await;
    let (mut ws2, hello2) = open_socket(s).await;
    assert!(matches!(
        socket_event(&hello1),
        SocketEvent::Hello {
            num_connections: 1,
            ..
        }
    ));
    assert!(matches!(
        socket_event(&hello2),
        SocketEvent::Hello {
            num_connections: 2,
            ..
        }
    ));
    assert_eq!(s.socket_connections_opened(), 2);

    // Acknowledged at once: delivered to exactly one connection, once.
    let poster = {
        let (s, alice, support) = (s.clone(), t.alice.clone(), t.support.clone());
        tokio::spawn(async move {
            s.post_message(&alice, &support, None, "Is this claimed?")
                .await
        })
    };
    let (env, mut got, mut other) = tokio::select! {
        f = expect_frame(&mut ws1) => (f, ws1, ws2),
        f = expect_frame(&mut ws2) => (f, ws2, ws1),
    };
    match pushed_event(&env) {
        SlackEventCallbackBody::Message(m) => {
            assert_eq!(m.sender.user.map(|u| u.to_string()), Some(t.alice.clone()));
            assert_eq!(
                m.content.and_then(|c| c.text).as_deref(),
                Some("Is this claimed?")
            );
            assert!(m.subtype.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env["retry_attempt"], json!(0));
    ack(&mut got, &env, None).await;
    let ts = poster.await.unwrap().unwrap();
    assert_eq!(env["payload"]["event"]["ts"], json!(ts));
    assert!(matches!(
        next_frame(&mut other, Duration::from_millis(500)).await,
        Frame::Timeout
    ));
    assert!(matches!(
        next_frame(&mut got, Duration::from_millis(100)).await,
        Frame::Timeout
    ));

    // Not acknowledged: redelivered with retry_attempt 1, same event.
    let reply = {
        let (s, bob, support, ts) = (s.clone(), t.bob.clone(), t.support.clone(), ts.clone());
        tokio::spawn(async move { s.post_message(&bob, &support, Some(&ts), "mine").await })
    };
    let first = tokio::select! {
        f = expect_frame(&mut got) => f,
        f = expect_frame(&mut other) => f,
    };
    let again = tokio::select! {
        f = expect_frame(&mut got) => (f, true),
        f = expect_frame(&mut other) => (f, false),
    };
    let (again, on_got) = again;
    assert_eq!(again["retry_attempt"], json!(1));
    assert_eq!(again["retry_reason"], json!("timeout"));
    assert_eq!(again["payload"]["event_id"], first["payload"]["event_id"]);
    match pushed_event(&again) {
        SlackEventCallbackBody::Message(m) => {
            assert_eq!(m.origin.thread_ts.map(|t| t.to_string()), Some(ts.clone()));
        }
        other => panic!("{other:?}"),
    }
    ack(if on_got { &mut got } else { &mut other }, &again, None).await;
    reply.await.unwrap().unwrap();

    // Never acknowledged: 1 + 3 attempts, then the action fails.
    let ignored = {
        let (s, alice, support, ts) = (s.clone(), t.alice.clone(), t.support.clone(), ts.clone());
        tokio::spawn(async move { s.react(&alice, &support, &ts, "eyes").await })
    };
    let mut attempts = Vec::new();
    for _ in 0..4 {
        let f = tokio::select! {
            f = expect_frame(&mut got) => f,
            f = expect_frame(&mut other) => f,
        };
        attempts.push(f["retry_attempt"].as_u64().unwrap());
        match pushed_event(&f) {
            SlackEventCallbackBody::ReactionAdded(r) => assert_eq!(r.reaction.to_string(), "eyes"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(attempts, [0, 1, 2, 3]);
    let err = ignored.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("not acknowledged"), "{err}");

    // The bot's own posts come back as message events with bot_id.
    let a = post_json(
        s,
        "chat.postMessage",
        json!({"channel": t.support, "text": "bot says"}),
    )
    .await;
    assert_ok(&a);
    let echo = tokio::select! {
        f = expect_frame(&mut got) => f,
        f = expect_frame(&mut other) => f,
    };
    match pushed_event(&echo) {
        SlackEventCallbackBody::Message(m) => {
            assert_eq!(
                m.sender.bot_id.map(|b| b.to_string()).as_deref(),
                Some(s.bot_id())
            );
            assert_eq!(
                m.sender.user.map(|u| u.to_string()).as_deref(),
                Some(s.bot_user_id())
            );
        }
        other => panic!("{other:?}"),
    }

    // A ticket works once.
    let a = post_json_as(s, "apps.connections.open", Some(s.app_token()), json!({})).await;
    let url = a.body["url"].as_str().unwrap().to_string();
    let (_ws3, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert!(tokio_tungstenite::connect_async(&url).await.is_err());
}

#[tokio::test]
async fn socket_disconnect_drop_and_queue() {
    let t = team(quick_acks()).await;
    let s = &t.slack;
    let (mut ws, _) = open_socket(s).await;
    // Pings are answered.
    ws.send(WsMessage::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(2 * SECOND, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, WsMessage::Pong(b"are you there".to_vec().into()));

    s.disconnect_sockets("refresh_requested").await;
    let frame = expect_frame(&mut ws).await;
    match socket_event(&frame) {
        SocketEvent::Disconnect { reason, .. } => assert_eq!(reason, "refresh_requested"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(next_frame(&mut ws, SECOND).await, Frame::Closed));
    assert_eq!(s.socket_connections_open(), 0);

    // With no connection, events wait and go out once one opens.
    let poster = {
        let (s, alice, support) = (s.clone(), t.alice.clone(), t.support.clone());
        tokio::spawn(async move { s.post_message(&alice, &support, None, "anyone?").await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!poster.is_finished());
    let (mut ws, _) = open_socket(s).await;
    let env = expect_frame(&mut ws).await;
    assert_eq!(env["payload"]["event"]["text"], json!("anyone?"));
    ack(&mut ws, &env, None).await;
    poster.await.unwrap().unwrap();

    // Abrupt close: no disconnect envelope.
    s.drop_sockets().await;
    assert!(matches!(next_frame(&mut ws, SECOND).await, Frame::Closed));
    assert_eq!(s.socket_connections_opened(), 2);
}

#[tokio::test]
async fn commands_shortcuts_and_views() {
    let t = team(FakeSlackOptions::default()).await;
    let s = &t.slack;
    let (mut ws, _) = open_socket(s).await;

    // Slash command, answered in the acknowledgement.
    let cmd = {
        let (s, alice, support) = (s.clone(), t.alice.clone(), t.support.clone());
        tokio::spawn(async move {
            s.slash_command(&alice, &support, "/mailroom", "claim 42")
                .await
        })
    };
    let env = expect_frame(&mut ws).await;
    let (payload, accepts) = match socket_event(&env) {
        SocketEvent::SlashCommands {
            payload,
            accepts_response_payload,
            ..
        } => (payload, accepts_response_payload),
        other => panic!("{other:?}"),
    };
    assert!(accepts);
    assert_eq!(payload.command.to_string(), "/mailroom");
    assert_eq!(payload.text.as_deref(), Some("claim 42"));
    assert_eq!(payload.user_id.to_string(), t.alice);
    let response_url = payload.response_url.0.to_string();
    let trigger_id = payload.trigger_id.to_string();
    ack(
        &mut ws,
        &env,
        Some(json!({"text": "Working on it", "response_type": "ephemeral"})),
    )
    .await;
    let answer = cmd.await.unwrap().unwrap();
    assert_eq!(answer["text"], json!("Working on it"));
    assert_eq!(s.ephemerals(&t.alice)[0].text, "Working on it");

    // response_url: ephemeral and in_channel answers.
    for (body, status) in [
        (
            json!({"text": "Claimed #42", "response_type": "ephemeral"}),
            200,
        ),
        (
            json!({"text": "Alice claimed #42", "response_type": "in_channel"}),
            200,
        ),
        (json!({"response_type": "ephemeral"}), 400),
    ] {
        let resp = http()
            .post(&response_url)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
    }
    assert_eq!(s.ephemerals(&t.alice).len(), 2);
    let posted = s.messages(&t.support);
    assert_eq!(posted.last().unwrap().text, "Alice claimed #42");
    let resp = http()
        .post(format!("{}/nope", response_url.rsplit_once('/').unwrap().0))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // (the in_channel answer is a channel message: its event comes by)
    let echo = expect_frame(&mut ws).await;
    assert!(matches!(
        pushed_event(&echo),
        SlackEventCallbackBody::Message(_)
    ));
    ack(&mut ws, &echo, None).await;

    // views.open with the command's trigger.
    let modal = json!({
        "type": "modal",
        "callback_id": "reply",
        "private_metadata": "ticket-42",
        "title": {"type": "plain_text", "text": "Reply"},
        "submit": {"type": "plain_text", "text": "Send"},
        "blocks": [{"type": "input", "block_id": "body", "label": {"type": "plain_text", "text": "Answer"},
                    "element": {"type": "plain_text_input", "action_id": "text", "multiline": true}}]
    });
    let mut bad = modal.clone();
    bad["title"]["text"] = json!("A title longer than 24 chars");
    let a = post_json(
        s,
        "views.open",
        json!({"trigger_id": trigger_id, "view": bad}),
    )
    .await;
    assert_error(&a, "invalid_arguments");
    let mut no_submit = modal.clone();
    no_submit.as_object_mut().unwrap().remove("submit");
    assert_error(
        &post_json(
            s,
            "views.open",
            json!({"trigger_id": trigger_id, "view": no_submit}),
        )
        .await,
        "invalid_arguments",
    );
    let a = post_json(
        s,
        "views.open",
        json!({"trigger_id": trigger_id, "view": modal}),
    )
    .await;
    assert_ok(&a);
    let opened: SlackApiViewsOpenResponse = model(&a.body);
    let view_id = opened.view.state_params.id.to_string();
    assert_error(
        &post_json(
            s,
            "views.open",
            json!({"trigger_id": trigger_id, "view": modal}),
        )
        .await,
        "exchanged_trigger_id",
    );
    assert_error(
        &post_json(
            s,
            "views.open",
            json!({"trigger_id": "1.2.3", "view": modal}),
        )
        .await,
        "invalid_trigger_id",
    );
    assert_eq!(s.views()[0].user, t.alice);
    assert_eq!(s.views()[0].view_id, view_id);

    // views.update: the hash must be current.
    let hash = a.body["view"]["hash"].as_str().unwrap().to_string();
    let a = post_json(
        s,
        "views.update",
        json!({"view_id": view_id, "hash": hash, "view": modal}),
    )
    .await;
    assert_ok(&a);
    let _: SlackApiViewsUpdateResponse = model(&a.body);
    assert_error(
        &post_json(
            s,
            "views.update",
            json!({"view_id": view_id, "hash": hash, "view": modal}),
        )
        .await,
        "hash_conflict",
    );

    // Message shortcut.
    let target = s.messages(&t.support)[0].ts.clone();
    let shortcut = {
        let (s, bob, support, target) =
            (s.clone(), t.bob.clone(), t.support.clone(), target.clone());
        tokio::spawn(async move {
            s.message_shortcut(&bob, &support, &target, "reply_by_mail")
                .await
        })
    };
    let env = expect_frame(&mut ws).await;
    match socket_event(&env) {
        SocketEvent::Interactive {
            payload: SlackInteractionEvent::MessageAction(a),
            accepts_response_payload,
            ..
        } => {
            assert!(!accepts_response_payload);
            assert_eq!(a.callback_id.to_string(), "reply_by_mail");
            assert_eq!(a.message.unwrap().origin.ts.to_string(), target);
        }
        other => panic!("{other:?}"),
    }
    ack(&mut ws, &env, None).await;
    let trigger = shortcut.await.unwrap().unwrap();
    assert_eq!(env["payload"]["trigger_id"], json!(trigger));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_error(
        &post_json(
            s,
            "views.open",
            json!({"trigger_id": trigger, "view": modal}),
        )
        .await,
        "expired_trigger_id",
    );

    // View submission with the stored view.
    let values = json!({"body": {"text": {"type": "plain_text_input", "value": "Thanks!"}}});
    let submit = {
        let (s, alice, view_id) = (s.clone(), t.alice.clone(), view_id.clone());
        tokio::spawn(async move { s.submit_view(&alice, &view_id, values).await })
    };
    let env = expect_frame(&mut ws).await;
    match socket_event(&env) {
        SocketEvent::Interactive {
            payload: SlackInteractionEvent::ViewSubmission(v),
            accepts_response_payload,
            ..
        } => {
            assert!(accepts_response_payload);
            assert_eq!(v.view.state_params.id.to_string(), view_id);
            match v.view.view {
                SlackView::Modal(m) => {
                    assert_eq!(
                        m.callback_id.map(|c| c.to_string()).as_deref(),
                        Some("reply")
                    );
                    assert_eq!(m.private_metadata.as_deref(), Some("ticket-42"));
                }
                other => panic!("{other:?}"),
            }
            let values = v.view.state_params.state.unwrap().values;
            assert_eq!(values.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    ack(
        &mut ws,
        &env,
        Some(json!({"response_action": "errors", "errors": {"body": "Too short"}})),
    )
    .await;
    let answer = submit.await.unwrap().unwrap();
    assert_eq!(answer["response_action"], json!("errors"));
    assert!(s.views()[0].is_open(s));
    // Submitted again and accepted: the modal closes.
    let values = json!({"body": {"text": {"type": "plain_text_input", "value": "Thanks a lot!"}}});
    assert!(
        s.submit_view(&t.bob, &view_id, values.clone())
            .await
            .is_err()
    );
    let submit = {
        let (s, alice, view_id, values) =
            (s.clone(), t.alice.clone(), view_id.clone(), values.clone());
        tokio::spawn(async move { s.submit_view(&alice, &view_id, values).await })
    };
    let env = expect_frame(&mut ws).await;
    ack(&mut ws, &env, None).await;
    assert_eq!(submit.await.unwrap().unwrap(), Value::Null);
    assert!(!s.views()[0].is_open(s));
    assert!(s.submit_view(&t.alice, &view_id, values).await.is_err());
    assert_error(
        &post_json(
            s,
            "views.update",
            json!({"view_id": view_id, "view": modal}),
        )
        .await,
        "not_found",
    );
}

/// The app side of Events API mode: records signed requests, answers as told.
#[derive(Clone)]
struct Receiver {
    secret: String,
    seen: mpsc::UnboundedSender<(String, HeaderMap, String)>,
    script: Arc<Mutex<VecDeque<Behaviour>>>,
}

#[derive(Clone)]
enum Behaviour {
    Status(u16),
    NoRetry(u16),
    Sleep(Duration),
    Json(Value),
}

async fn receive(
    State(r): State<Receiver>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8(body.to_vec()).unwrap();
    let ts = headers["x-slack-request-timestamp"]
        .to_str()
        .unwrap()
        .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(r.secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    let expected = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
    let fresh = (ts.parse::<i64>().unwrap() - unix_now()).abs() < 300;
    if headers["x-slack-signature"].to_str().unwrap() != expected || !fresh {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let _ = r.seen.send((kind, headers, body.clone()));
    if let Ok(v) = serde_json::from_str::<Value>(&body)
        && v["type"] == json!("url_verification")
    {
        return axum::Json(json!({"challenge": v["challenge"]})).into_response();
    }
    let next = r.script.lock().unwrap().pop_front();
    match next {
        None => StatusCode::OK.into_response(),
        Some(Behaviour::Status(s)) => StatusCode::from_u16(s).unwrap().into_response(),
        Some(Behaviour::NoRetry(s)) => (
            StatusCode::from_u16(s).unwrap(),
            [("X-Slack-No-Retry", "1")],
        )
            .into_response(),
        Some(Behaviour::Sleep(d)) => {
            tokio::time::sleep(d).await;
            StatusCode::OK.into_response()
        }
        Some(Behaviour::Json(v)) => axum::Json(v).into_response(),
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn receiver(
    slack: &FakeSlack,
) -> (
    mpsc::UnboundedReceiver<(String, HeaderMap, String)>,
    Arc<Mutex<VecDeque<Behaviour>>>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(VecDeque::new()));
    let r = Receiver {
        secret: slack.signing_secret().to_string(),
        seen: tx,
        script: script.clone(),
    };
    let app = axum::Router::new()
        .route("/slack/{kind}", axum::routing::post(receive))
        .with_state(r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    slack.set_events_url(Some(base));
    (rx, script)
}

async fn seen(
    rx: &mut mpsc::UnboundedReceiver<(String, HeaderMap, String)>,
) -> (String, HeaderMap, String) {
    tokio::time::timeout(3 * SECOND, rx.recv())
        .await
        .expect("no request")
        .unwrap()
}

#[tokio::test]
async fn events_api_mode() {
    let t = team(FakeSlackOptions {
        ack_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let s = &t.slack;
    let (mut rx, script) = receiver(s).await;

    let (status, body) = s.send_url_verification().await.unwrap();
    assert_eq!(status, 200);
    let (_, _, sent) = seen(&mut rx).await;
    let challenge: SlackPushEvent = model(&serde_json::from_str(&sent).unwrap());
    match challenge {
        SlackPushEvent::UrlVerification(u) => assert!(body.contains(&u.challenge)),
        other => panic!("{other:?}"),
    }

    // A 500, then a timeout, then accepted: three POSTs of the same event.
    script.lock().unwrap().extend([
        Behaviour::Status(500),
        Behaviour::Sleep(Duration::from_millis(800)),
    ]);
    let ts = s
        .post_message(&t.alice, &t.support, None, "over HTTP")
        .await
        .unwrap();
    let (kind, h0, b0) = seen(&mut rx).await;
    assert_eq!(kind, "events");
    assert_eq!(h0["content-type"], "application/json");
    assert!(h0.get("x-slack-retry-num").is_none());
    let (_, h1, b1) = seen(&mut rx).await;
    let (_, h2, b2) = seen(&mut rx).await;
    let retry = |h: &HeaderMap| {
        (
            h["x-slack-retry-num"].to_str().unwrap().to_string(),
            h["x-slack-retry-reason"].to_str().unwrap().to_string(),
        )
    };
    assert_eq!(retry(&h1), ("1".to_string(), "http_error".to_string()));
    assert_eq!(retry(&h2), ("2".to_string(), "http_timeout".to_string()));
    assert!(b0 == b1 && b1 == b2);
    match model::<SlackPushEvent>(&serde_json::from_str(&b0).unwrap()) {
        SlackPushEvent::EventCallback(cb) => match cb.event {
            SlackEventCallbackBody::Message(m) => assert_eq!(m.origin.ts.to_string(), ts),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }

    // X-Slack-No-Retry stops retries.
    script.lock().unwrap().push_back(Behaviour::NoRetry(503));
    assert!(s.react(&t.bob, &t.support, &ts, "eyes").await.is_err());
    let (_, _, b) = seen(&mut rx).await;
    assert!(b.contains("reaction_added"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );

    // Slash command: a signed form POST; the JSON body is the answer.
    script
        .lock()
        .unwrap()
        .push_back(Behaviour::Json(json!({"text": "On it"})));
    let answer = s
        .slash_command(&t.bob, &t.support, "/mailroom", "list")
        .await
        .unwrap();
    assert_eq!(answer, json!({"text": "On it"}));
    let (kind, h, body) = seen(&mut rx).await;
    assert_eq!(kind, "commands");
    assert_eq!(h["content-type"], "application/x-www-form-urlencoded");
    let fields: serde_json::Map<String, Value> = url_pairs(&body)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let cmd: SlackCommandEvent = model(&Value::Object(fields));
    assert_eq!(cmd.text.as_deref(), Some("list"));
    assert_eq!(s.ephemerals(&t.bob)[0].text, "On it");

    // A command is not retried: Slack tells the user it failed.
    script.lock().unwrap().push_back(Behaviour::Status(500));
    assert!(
        s.slash_command(&t.bob, &t.support, "/mailroom", "x")
            .await
            .is_err()
    );
    let _ = seen(&mut rx).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );

    // Interactive payload: payload=<json> form field.
    let trigger = s
        .message_shortcut(&t.bob, &t.support, &ts, "claim")
        .await
        .unwrap();
    let (kind, _, body) = seen(&mut rx).await;
    assert_eq!(kind, "interactive");
    let pairs = url_pairs(&body);
    assert_eq!(pairs[0].0, "payload");
    let event: SlackInteractionEvent = model(&serde_json::from_str(&pairs[0].1).unwrap());
    match event {
        SlackInteractionEvent::MessageAction(a) => assert_eq!(a.trigger_id.to_string(), trigger),
        other => panic!("{other:?}"),
    }

    // Forged and stale signatures reach the app as such.
    let body = json!({"type": "event_callback"}).to_string();
    let now = unix_now();
    assert_eq!(
        s.post_raw_events("/slack/events", &body, "application/json", now, None)
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        s.post_raw_events(
            "/slack/events",
            &body,
            "application/json",
            now,
            Some("v0=deadbeef".into())
        )
        .await
        .unwrap(),
        401
    );
    assert_eq!(
        s.post_raw_events("/slack/events", &body, "application/json", now - 600, None)
            .await
            .unwrap(),
        401
    );
    assert_eq!(s.sign(now, &body), {
        let mut mac = Hmac::<Sha256>::new_from_slice(s.signing_secret().as_bytes()).unwrap();
        mac.update(format!("v0:{now}:{body}").as_bytes());
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    });
}

fn url_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn injected_server_errors() {
    let t = team(FakeSlackOptions::default()).await;
    let s = &t.slack;
    s.inject_500("chat.postMessage", 2);
    for _ in 0..2 {
        let a = post_json(
            s,
            "chat.postMessage",
            json!({"channel": t.support, "text": "x"}),
        )
        .await;
        assert_eq!(a.status, 500);
    }
    assert!(s.messages(&t.support).is_empty(), "a 500 posts nothing");
    assert_ok(
        &post_json(
            s,
            "chat.postMessage",
            json!({"channel": t.support, "text": "x"}),
        )
        .await,
    );
    assert_eq!(s.messages(&t.support).len(), 1);
}

#[tokio::test]
async fn rate_limits() {
    let t = team(FakeSlackOptions {
        pace_posts: true,
        ..Default::default()
    })
    .await;
    let s = &t.slack;
    s.inject_429("chat.postMessage", 2, 7);
    for _ in 0..2 {
        let a = post_json(
            s,
            "chat.postMessage",
            json!({"channel": t.support, "text": "x"}),
        )
        .await;
        assert_eq!(a.status, 429);
        assert_eq!(a.headers["retry-after"], "7");
        assert!(
            a.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(a.body, json!({"ok": false, "error": "ratelimited"}));
    }
    // Pacing: a burst of 4, then 429 with Retry-After 1, then one per second.
    for _ in 0..4 {
        assert_ok(
            &post_json(
                s,
                "chat.postMessage",
                json!({"channel": t.support, "text": "x"}),
            )
            .await,
        );
    }
    let a = post_json(
        s,
        "chat.postMessage",
        json!({"channel": t.support, "text": "x"}),
    )
    .await;
    assert_eq!(
        (a.status, a.headers["retry-after"].to_str().unwrap()),
        (429, "1")
    );
    // Another channel has its own bucket.
    let other = s.add_channel("other", &[s.bot_user_id()]);
    assert_ok(
        &post_json(
            s,
            "chat.postMessage",
            json!({"channel": other, "text": "x"}),
        )
        .await,
    );
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_ok(
        &post_json(
            s,
            "chat.postMessage",
            json!({"channel": t.support, "text": "x"}),
        )
        .await,
    );
    assert_eq!(s.calls("chat.postMessage"), 9);

    // conversations.history / replies: one call a minute.
    assert_ok(&get(s, "conversations.history", &[("channel", &t.support)]).await);
    let a = get(s, "conversations.history", &[("channel", &t.support)]).await;
    assert_eq!(a.status, 429);
    assert!(
        a.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 50
    );
    assert_eq!(s.calls("conversations.history"), 2);
    assert_eq!(s.calls("conversations.replies"), 0);
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

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackHyperClient>,
    state: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let state = state.read().await;
    if let Some(tx) = state.get_user_state::<mpsc::UnboundedSender<SlackPushEventCallback>>() {
        let _ = tx.send(event);
    }
    Ok(())
}

/// slack-morphism itself (Web API client and Socket Mode listener) against the fake.
#[tokio::test]
async fn slack_morphism_client_and_listener() {
    let t = team(FakeSlackOptions::default()).await;
    let s = &t.slack;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client = Arc::new(SlackClient::new(
        SlackClientHyperConnector::with_connector(connector).with_slack_api_url(&s.api_url()),
    ));
    let bot_token = SlackApiToken::new(s.bot_token().to_string().into());
    let session = client.open_session(&bot_token);

    let me = session.auth_test().await.unwrap();
    assert_eq!(me.user_id.to_string(), s.bot_user_id());
    let posted = session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            t.support.clone().into(),
            SlackMessageContent::new().with_text("New mail".into()),
        ))
        .await
        .unwrap();
    match session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            t.random.clone().into(),
            SlackMessageContent::new().with_text("x".into()),
        ))
        .await
    {
        Err(SlackClientError::ApiError(e)) => assert_eq!(e.code, "not_in_channel"),
        other => panic!("{other:?}"),
    }
    s.inject_429("chat.postMessage", 1, 2);
    match session
        .chat_post_message(&SlackApiChatPostMessageRequest::new(
            t.support.clone().into(),
            SlackMessageContent::new().with_text("x".into()),
        ))
        .await
    {
        Err(SlackClientError::RateLimitError(e)) => assert_eq!(e.retry_after, Some(2 * SECOND)),
        other => panic!("{other:?}"),
    }
    let user = session
        .users_info(&SlackApiUsersInfoRequest::new(t.alice.clone().into()))
        .await
        .unwrap();
    assert_eq!(user.user.name.as_deref(), Some("alice"));
    let members = session
        .conversations_members(
            &SlackApiConversationsMembersRequest::new().with_channel(t.support.clone().into()),
        )
        .await
        .unwrap();
    assert_eq!(members.members.len(), 3);

    let url = session
        .get_upload_url_external(&SlackApiFilesGetUploadUrlExternalRequest::new(
            "notes.txt".into(),
            5,
        ))
        .await
        .unwrap();
    session
        .files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
            url.upload_url,
            b"hello".to_vec(),
            "text/plain".into(),
        ))
        .await
        .unwrap();
    session
        .files_complete_upload_external(
            &SlackApiFilesCompleteUploadExternalRequest::new(vec![SlackApiFilesComplete::new(
                url.file_id,
            )])
            .with_channel_id(t.support.clone().into())
            .with_thread_ts(posted.ts.clone()),
        )
        .await
        .unwrap();
    let thread = s.thread(&t.support, posted.ts.as_ref());
    assert_eq!(thread[1].files[0].data, b"hello");

    let (tx, mut rx) = mpsc::unbounded_channel::<SlackPushEventCallback>();
    let env =
        Arc::new(SlackClientEventsListenerEnvironment::new(client.clone()).with_user_state(tx));
    let callbacks = SlackSocketModeListenerCallbacks::new().with_push_events(on_push);
    let listener = SlackClientSocketModeListener::new(
        // (the second connection would otherwise start 5 s after the first)
        &SlackClientSocketModeConfig::new().with_initial_backoff_in_seconds(0),
        env,
        callbacks,
    );
    listener
        .listen_for(&SlackApiToken::new(s.app_token().to_string().into()))
        .await
        .unwrap();
    listener.start().await;
    s.wait_until("the listener's connections", 5 * SECOND, |s| {
        s.socket_connections_open() == 2
    })
    .await
    .unwrap();
    let ts = s
        .post_message(&t.alice, &t.support, Some(posted.ts.as_ref()), "via socket")
        .await
        .unwrap();
    loop {
        let event = tokio::time::timeout(3 * SECOND, rx.recv())
            .await
            .unwrap()
            .unwrap();
        if let SlackEventCallbackBody::Message(m) = event.event
            && m.origin.ts.to_string() == ts
        {
            break;
        }
    }
    listener.shutdown().await;
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
