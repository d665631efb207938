//! Scenario 2b: Slack failing mid-ingest — `chat.postMessage` answering 500s
//! and then 429s with Retry-After, and the Socket Mode connection dropped
//! (no close handshake) — against the fake Slack of tests/fake_slack, which
//! speaks Slack's documented wire format (there is no real Slack to run).
//!
//! A teammate claims the first ticket with a reaction while the socket is
//! down: Slack queues the event and redelivers it until acknowledged, so it
//! reaches mailroom after the reconnect and must be acted on exactly once.

use std::time::{Duration, Instant};

use crate::common::{outbox_toml, slack_toml};
use crate::fake_slack::{FakeSlack, FakeSlackOptions, Message};
use crate::harness::{Daemon, Db, Figures, SERIAL, StoreProbe, log_count, poll, sizes, tally};

const EVERY: Duration = Duration::from_millis(50);
const ERRORS_500: u32 = 5;
const ERRORS_429: u32 = 3;

fn root_text(m: &Message) -> String {
    format!("{} {}", m.text, m.blocks)
}

fn roots(slack: &FakeSlack, channel: &str) -> Vec<Message> {
    slack
        .messages(channel)
        .into_iter()
        .filter(|m| m.bot && m.thread_ts.is_none())
        .collect()
}

pub async fn run(db: Db) {
    let _serial = SERIAL.lock().await;
    crate::setup();
    let n = sizes().emails.max(8);
    let limit = Duration::from_secs(120 + n as u64);
    let stack = crate::common::Stack::get();
    let slack = FakeSlack::start(FakeSlackOptions::default()).await;
    let alice = slack.add_user("alice", "Alice Martin");
    let channel = slack.add_channel("support", &[&alice, slack.bot_user_id()]);
    let support = stack.user("support", "example.com");
    let customer = stack.user("customer", "example.net");
    let tag = crate::common::random_hex(3);
    let test_db = db.fresh().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let channel_key = format!("slack_channel = \"{channel}\"");
    let mailbox = crate::common::mailbox_toml(stack, &support, &test_db, &channel_key);
    let text = format!(
        "{mailbox}\n{}\n{}",
        slack_toml("socket", &slack.api_url(), ""),
        outbox_toml("max_attempts = 1000\n")
    );
    let config = dir.path().join("mailroom.toml");
    std::fs::write(&config, text).expect("write config");
    let log = match std::env::var_os("MAILROOM_CHAOS_LOG_DIR") {
        Some(d) => std::path::PathBuf::from(d).join(format!("mailroom-{tag}.log")),
        None => dir.path().join("mailroom.log"),
    };
    let append = |range: std::ops::Range<usize>| {
        crate::harness::append_many(stack, &support, &customer, &tag, "INBOX", range, 0)
    };

    let half = n / 2;
    append(0..half).await;
    let d = Daemon::spawn(
        &config,
        &[
            ("SLACK_BOT", slack.bot_token()),
            ("SLACK_APP", slack.app_token()),
            ("SLACK_SIGNING", slack.signing_secret()),
        ],
        &log,
    );
    let probe = StoreProbe::open(&test_db).await;
    poll("a quarter of the threads", limit, EVERY, || async {
        (probe.threads().await.unwrap_or(0) as usize >= n / 4).then_some(())
    })
    .await;
    let first = roots(&slack, &channel)
        .into_iter()
        .next()
        .expect("a first root");

    // The faults, all at once.
    let before = probe.threads().await.unwrap_or(0);
    let calls_before = slack.calls("chat.postMessage");
    slack.inject_500("chat.postMessage", ERRORS_500);
    slack.inject_429("chat.postMessage", ERRORS_429, 1);
    let opened_before = slack.socket_connections_opened();
    slack.drop_sockets().await;
    let faulted = Instant::now();
    slack
        .react(&alice, &channel, &first.ts, "raising_hand")
        .await
        .expect("reaction");
    append(half..n).await;

    // The three recoveries are watched together, each timed when first seen.
    let (mut socket_ms, mut post_ms, mut claim_ms) = (None, None, None);
    while socket_ms.is_none() || post_ms.is_none() || claim_ms.is_none() {
        let at = faulted.elapsed().as_millis();
        if socket_ms.is_none()
            && slack.socket_connections_opened() > opened_before
            && slack.socket_connections_open() > 0
        {
            socket_ms = Some(at);
        }
        if post_ms.is_none() && probe.threads().await.unwrap_or(0) > before {
            post_ms = Some(at);
        }
        if claim_ms.is_none()
            && probe
                .count("SELECT COUNT(*) FROM tickets WHERE id = 1 AND status = 'claimed'")
                .await
                == Some(1)
        {
            claim_ms = Some(at);
        }
        assert!(
            faulted.elapsed() < limit,
            "no recovery within {limit:?}: socket {socket_ms:?}, post {post_ms:?}, claim {claim_ms:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (socket_ms, post_ms, claim_ms) = (
        socket_ms.unwrap_or_default(),
        post_ms.unwrap_or_default(),
        claim_ms.unwrap_or_default(),
    );

    // Settle: every root out and the count steady for two seconds.
    let mut steady: Option<(usize, Instant)> = None;
    let all = poll(
        "every root in the channel",
        limit,
        Duration::from_millis(200),
        || {
            let r = roots(&slack, &channel);
            let c = r.len();
            let done = match steady {
                Some((s, at)) if s == c => c >= n && at.elapsed() >= Duration::from_secs(2),
                _ => {
                    steady = Some((c, Instant::now()));
                    false
                }
            };
            async move { done.then_some(r) }
        },
    )
    .await;
    let texts: Vec<String> = all.iter().map(root_text).collect();
    let t = tally(texts.iter().map(String::as_str), &tag, n);
    let claims = probe
        .count("SELECT COUNT(*) FROM audit_log WHERE ticket_id = 1 AND action = 'claim'")
        .await
        .unwrap_or(-1);
    let rejected = slack.calls("chat.postMessage") - calls_before;
    let end = probe.finish(d).await;

    Figures::once(
        n,
        &t,
        post_ms.max(socket_ms),
        vec![
            ("errors_500".into(), ERRORS_500.to_string()),
            ("errors_429".into(), ERRORS_429.to_string()),
            ("post_recovery_ms".into(), post_ms.to_string()),
            ("socket_recovery_ms".into(), socket_ms.to_string()),
            ("claim_during_drop_acted_ms".into(), claim_ms.to_string()),
            ("claims".into(), claims.to_string()),
            ("post_calls_after_faults".into(), rejected.to_string()),
            (
                "retries_logged".into(),
                log_count(&log, "job will be retried").to_string(),
            ),
            ("in_order".into(), t.in_order.to_string()),
        ],
    )
    .print("slack_faults", db);
    t.assert_each_once(n, "one root per email", &log);
    assert_eq!(claims, 1, "the reaction during the drop is acted on once");
    assert_eq!((end.tickets, end.failed), (n as i64, 0), "the store");
    assert_eq!(end.code, Some(0));
    slack.shutdown();
    test_db.cleanup().await;
}
