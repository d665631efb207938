//! Events API mode: signed requests to the app, answered as told.

use super::*;

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
