//! Socket Mode: delivery, redelivery, disconnects and the queue kept meanwhile.

use super::*;

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
