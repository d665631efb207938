//! Snooze, unclaimed reminders and the daily digest, on real mail into
//! Synapse and the fake Slack at once, with the flows' clock a
//! `ManualClock` the test moves (nothing sleeps for the hours it covers).

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use mailroom::domain::snooze::SnoozeUntil;
use mailroom::domain::time::{Clock, ManualClock};
use mailroom::store::TicketStore;
use matrix_sdk::ruma::OwnedEventId;
use serde_json::Value;

use crate::common::{
    Stack, TestDb, Writer, fetch_all, mailbox_toml, matrix_toml, outbox_toml, slack_toml,
    start_connected_at, wait_for,
};
use crate::fake_slack::{FakeSlack, FakeSlackOptions};
use crate::matrix::{Synapse, body, in_thread_of, sender, wait_event};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn snooze_wakes_with_a_mention_reminders_nudge_once_and_digests_post_on_business_days() {
    crate::common::init_logs();
    mailroom::mail::tls::install_crypto_provider();
    let stack = Stack::get();
    let syn = Synapse::get();
    let bot = syn.register("mailroom");
    let (alice, room) = syn.room_for(&bot.0).await;
    let slack = FakeSlack::start(FakeSlackOptions::default()).await;
    let slack_alice = slack.add_user("alice", "Alice Martin");
    let channel = slack.add_channel("support", &[&slack_alice, slack.bot_user_id()]);
    let support = stack.user("support", "example.com");
    let customer = stack.user("customer", "example.net");
    let db = TestDb::sqlite();
    let state_dir = tempfile::tempdir().unwrap();
    let chat = format!(
        "matrix_room = \"{room}\"\n  slack_channel = \"{channel}\"\n  \
         [mailbox.reminders]\n  unclaimed_after = \"30m\""
    );
    let text = format!(
        "{}\n{}\n{}\n{}\n[[digest]]\nmailbox = \"support\"\nat = \"09:00\"\ndays = \"business\"\n",
        mailbox_toml(stack, &support, &db, &chat),
        matrix_toml(
            &syn.url,
            &bot.0,
            "password_env = \"BOT_PASSWORD\"",
            state_dir.path()
        ),
        slack_toml("socket", &slack.api_url(), ""),
        outbox_toml(""),
    );
    let secrets = [
        ("BOT_PASSWORD", bot.1.clone()),
        ("SLACK_BOT", slack.bot_token().to_owned()),
        ("SLACK_APP", slack.app_token().to_owned()),
        ("SLACK_SIGNING", slack.signing_secret().to_owned()),
    ];
    let settings = mailroom::config::Settings::parse(&text, &move |k| {
        secrets
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
    })
    .unwrap_or_else(|p| panic!("test config invalid: {p:#?}"));
    // Friday 4 December 2026, 08:00 on the mailbox's clock.
    let zone = settings.mailboxes[0].time_zone.clone();
    let local = |d: jiff::civil::Date, h: i8, m: i8| -> Timestamp {
        d.at(h, m, 0, 0)
            .to_zoned(zone.tz().clone())
            .unwrap()
            .timestamp()
    };
    let friday = date(2026, 12, 4);
    let clock = Arc::new(ManualClock::new(local(friday, 8, 0)));
    // The clock also runs at its normal pace between the test's jumps, so
    // a chat post retried "in 200 ms" (Matrix still connecting) is retried.
    let ticking = {
        let clock = clock.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                clock.advance(SignedDuration::from_millis(100));
            }
        })
    };
    let app = start_connected_at(settings, &db, clock.clone()).await;
    let store = app.store.clone();

    let writer = Writer::new(stack, &support, &customer.address);
    writer
        .writes("snz1@example.net", "Snooze me please", "Call me later.")
        .await;
    let root = wait_event(&alice, &room, "the root in Matrix", |e| {
        sender(e) == bot.0
            && body(e).contains("Snooze me")
            && e["content"]["m.relates_to"].is_null()
    })
    .await;
    let root_id: OwnedEventId = root["event_id"].as_str().unwrap().parse().unwrap();
    let slack_root = wait_for("the root in Slack", WAIT, || async {
        slack
            .messages(&channel)
            .into_iter()
            .find(|m| m.bot && m.thread_ts.is_none() && m.text.contains("Snooze me"))
    })
    .await;
    let ticket = wait_for("the ticket", WAIT, || {
        let store = store.clone();
        async move {
            let all = store
                .list_tickets(&mailroom::store::TicketFilter::default())
                .await
                .unwrap();
            all.into_iter().next()
        }
    })
    .await
    .id;
    let matrix_thread = |pred: &'static str| {
        let alice = &alice;
        let room = &room;
        let root_id = &root_id;
        let bot = bot.0.clone();
        async move {
            alice
                .events(room)
                .await
                .into_iter()
                .filter(|e| in_thread_of(e, root_id) && sender(e) == bot && body(e).contains(pred))
                .collect::<Vec<Value>>()
        }
    };
    let slack_thread = |pred: &str| {
        slack
            .thread(&channel, &slack_root.ts)
            .into_iter()
            .filter(|m| m.bot && m.text.contains(pred))
            .collect::<Vec<_>>()
    };

    // 30 minutes unclaimed: one nudge in each thread.
    clock.advance(SignedDuration::from_mins(31));
    wait_for("the Matrix nudge", WAIT, || async {
        (!matrix_thread("with nobody on it").await.is_empty()).then_some(())
    })
    .await;
    wait_for("the Slack nudge", WAIT, || async {
        (!slack_thread("with nobody on it").is_empty()).then_some(())
    })
    .await;

    // alice snoozes it for two hours in the Matrix thread.
    let asked = clock.now();
    alice.say_in_thread(&room, &root_id, "!snooze 2h").await;
    wait_for("the snooze confirmed", WAIT, || async {
        (!matrix_thread("snoozed until").await.is_empty()).then_some(())
    })
    .await;
    let answered = clock.now();
    let snoozed = store.ticket(ticket).await.unwrap().unwrap();
    let Some(SnoozeUntil::Time(until)) = snoozed.snooze.as_ref().map(|s| s.until) else {
        panic!("snoozed for a time: {snoozed:?}");
    };
    let two_hours = SignedDuration::from_hours(2);
    assert!(
        until >= asked + two_hours && until <= answered + two_hours,
        "{until} two hours after {asked}..{answered}"
    );
    // Out of the queue, in the snoozed list.
    alice.say_in_room(&room, "!mailroom list").await;
    wait_event(&alice, &room, "the empty queue", |e| {
        sender(e) == bot.0 && body(e) == "No open tickets."
    })
    .await;
    alice.say_in_room(&room, "!mailroom list snoozed").await;
    let listed = wait_event(&alice, &room, "the snoozed list", |e| {
        sender(e) == bot.0 && body(e).starts_with("1 snoozed ticket")
    })
    .await;
    assert!(body(&listed).contains(&format!("{ticket}")), "{listed}");

    // 09:00: the digest, in the room and the channel, counting the snooze.
    clock.set(local(friday, 9, 0) + SignedDuration::from_secs(30));
    let digest = wait_event(&alice, &room, "Friday's digest in Matrix", |e| {
        sender(e) == bot.0 && body(e).starts_with("📋 Daily digest")
    })
    .await;
    let text = body(&digest);
    assert!(text.contains("Fri 4 Dec 2026"), "{text}");
    assert!(
        text.contains("Unclaimed: 0") && text.contains("Snoozed: 1"),
        "{text}"
    );
    assert!(!text.contains("late"), "{text}");
    wait_for("Friday's digest in Slack", WAIT, || async {
        slack
            .messages(&channel)
            .into_iter()
            .find(|m| m.thread_ts.is_none() && m.text.contains("Daily digest"))
    })
    .await;

    // 10:31: back, calling alice by name and in m.mentions.
    clock.set(until + SignedDuration::from_secs(30));
    let wake = wait_for("the wake-up in Matrix", WAIT, || async {
        matrix_thread("back from its snooze")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(body(&wake).contains(alice.user_id.as_str()), "{wake}");
    assert_eq!(
        wake["content"]["m.mentions"]["user_ids"],
        serde_json::json!([alice.user_id.as_str()]),
        "{wake}"
    );
    assert_eq!(
        wake["content"]["msgtype"], "m.text",
        "a notice would not ping"
    );
    assert_eq!(store.ticket(ticket).await.unwrap().unwrap().snooze, None);

    // On Slack alice snoozes it until the customer replies; their mail
    // wakes it early and calls her with a Slack mention.
    slack
        .post_message(
            &slack_alice,
            &channel,
            Some(&slack_root.ts),
            "!snooze until customer replies",
        )
        .await
        .unwrap();
    wait_for("the Slack snooze confirmed", WAIT, || async {
        (!slack_thread("until the customer replies").is_empty()).then_some(())
    })
    .await;
    writer
        .answers(
            "snz1@example.net",
            "snz2@example.net",
            "Re: Snooze me please",
            "I'm back!",
        )
        .await;
    let woke = wait_for("the early wake-up in Slack", WAIT, || async {
        slack_thread("woke early").into_iter().next()
    })
    .await;
    assert!(woke.text.contains(&format!("<@{slack_alice}>")), "{woke:?}");
    wait_for("the early wake-up in Matrix", WAIT, || async {
        matrix_thread("woke early").await.into_iter().next()
    })
    .await;
    assert_eq!(store.ticket(ticket).await.unwrap().unwrap().snooze, None);

    // Slack's slash command names the ticket (slash commands cannot be
    // typed in threads); its answer is private, the thread is told.
    slack
        .slash_command(
            &slack_alice,
            &channel,
            "/mailroom",
            &format!("snooze {} 3h", ticket.get()),
        )
        .await
        .unwrap();
    wait_for("the slash snooze's private answer", WAIT, || async {
        slack
            .ephemerals(&slack_alice)
            .into_iter()
            .find(|e| e.text.contains("snoozed until"))
    })
    .await;
    assert!(
        store
            .ticket(ticket)
            .await
            .unwrap()
            .unwrap()
            .snooze
            .is_some()
    );
    slack
        .slash_command(
            &slack_alice,
            &channel,
            "/mailroom",
            &format!("unsnooze {}", ticket.get()),
        )
        .await
        .unwrap();
    wait_for("the slash unsnooze in the thread", WAIT, || async {
        slack_thread("is back in the queue (unsnoozed by")
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(store.ticket(ticket).await.unwrap().unwrap().snooze, None);

    // No digest on the weekend; Monday's counts the awake ticket.
    clock.set(local(date(2026, 12, 5), 9, 1));
    clock.set(local(date(2026, 12, 6), 9, 1));
    clock.set(local(date(2026, 12, 7), 9, 1));
    let monday = wait_event(&alice, &room, "Monday's digest", |e| {
        sender(e) == bot.0 && body(e).contains("Mon 7 Dec 2026")
    })
    .await;
    let text = body(&monday);
    assert!(
        text.contains("Unclaimed: 1") && text.contains("Snoozed: 0"),
        "{text}"
    );
    assert!(text.contains(&format!("Oldest open: {ticket}")), "{text}");
    wait_for("Monday's digest in Slack", WAIT, || async {
        slack
            .messages(&channel)
            .into_iter()
            .find(|m| m.thread_ts.is_none() && m.text.contains("Mon 7 Dec 2026"))
    })
    .await;
    let digests: Vec<String> = alice
        .events(&room)
        .await
        .iter()
        .filter(|e| sender(e) == bot.0 && body(e).starts_with("📋 Daily digest"))
        .map(|e| body(e).to_owned())
        .collect();
    assert_eq!(digests.len(), 2, "Friday and Monday only: {digests:#?}");
    let slack_digests = slack
        .messages(&channel)
        .into_iter()
        .filter(|m| m.thread_ts.is_none() && m.text.contains("Daily digest"))
        .count();
    assert_eq!(slack_digests, 2);
    // The nudge came once, though the ticket stayed unclaimed for days.
    assert_eq!(matrix_thread("with nobody on it").await.len(), 1);
    assert_eq!(slack_thread("with nobody on it").len(), 1);
    // Nothing of this mailed the customer.
    assert!(fetch_all(stack, &customer, "INBOX").await.is_empty());
    ticking.abort();
    app.stop().await;
}

/// mailroom was down from Friday morning to Tuesday 10:00: the digest timer
/// left from Friday posts one digest, Tuesday's, marked late, and the next
/// one is Wednesday's; none for Friday or Monday.
#[tokio::test]
async fn a_digest_after_downtime_catches_up_once() {
    crate::common::init_logs();
    let stack = Stack::get();
    let support = stack.user("support", "example.com");
    let db = TestDb::sqlite();
    let state_dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n{}\n[[digest]]\nmailbox = \"support\"\nat = \"09:00\"\n",
        mailbox_toml(stack, &support, &db, "matrix_room = \"!support:localhost\""),
        matrix_toml(
            "http://127.0.0.1:9",
            "@mailroom:localhost",
            "password = \"x\"",
            state_dir.path()
        ),
    );
    let settings = mailroom::config::Settings::parse(&text, &|_| None)
        .unwrap_or_else(|p| panic!("test config invalid: {p:#?}"));
    let zone = settings.mailboxes[0].time_zone.clone();
    let local = |d: jiff::civil::Date, h: i8| -> Timestamp {
        d.at(h, 0, 0, 0)
            .to_zoned(zone.tz().clone())
            .unwrap()
            .timestamp()
    };
    let store = Arc::new(db.store().await);
    let mut app = mailroom::bridge::App::new(settings, store.clone(), Vec::new());
    let clock = Arc::new(ManualClock::new(local(date(2026, 12, 4), 8)));
    app.clock = clock.clone();
    // The timer queued before the stop, for Friday 09:00.
    let friday = local(date(2026, 12, 4), 9).as_millisecond();
    let timer = mailroom::store::JobSpec::Digest {
        mailbox: "support".into(),
        platform: mailroom::domain::chat::Platform::Matrix,
        due_ms: friday,
    };
    store
        .enqueue(None, &timer, friday, app.now_ms())
        .await
        .unwrap();
    clock.set(local(date(2026, 12, 8), 10));
    let step = mailroom::bridge::outbox::run_once(&app).await.unwrap();
    assert_eq!(step.map(|s| s.job.spec), Some(timer));
    let pending = store
        .jobs(&[mailroom::store::JobState::Pending])
        .await
        .unwrap();
    let digests: Vec<&str> = pending
        .iter()
        .filter_map(|j| match &j.spec {
            mailroom::store::JobSpec::ChatRoomNotice { text, room, .. } => {
                assert_eq!(room, "!support:localhost");
                Some(text.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(digests.len(), 1, "{digests:#?}");
    assert!(
        digests[0].contains("Tue 8 Dec 2026") && digests[0].contains("(late: due Tue 8 Dec 09:00"),
        "{}",
        digests[0]
    );
    let next: Vec<i64> = pending
        .iter()
        .filter_map(|j| match j.spec {
            mailroom::store::JobSpec::Digest { due_ms, .. } => Some(due_ms),
            _ => None,
        })
        .collect();
    assert_eq!(next, [local(date(2026, 12, 9), 9).as_millisecond()]);
    store.close().await;
}
