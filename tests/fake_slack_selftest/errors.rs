//! Injected server errors and rate limits.

use super::*;

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
