//! SLA timers on real mail through the real stack, into Synapse and the
//! fake Slack at once, with the flows' clock jumped by the test (no
//! sleeping for hours): the card shows the time left; a nudge in
//! the thread and a breach alert in the room with its mentions, once each;
//! pending pauses; a reply stops the clock; the customer's next mail starts
//! "next response", counted in business hours across a night. And
//! `check-config` naming a bad `[[sla]]` with the real binary.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use mailroom::domain::ticket::Status;
use mailroom::domain::time::Clock;
use mailroom::store::{JobSpec, JobState, TicketFilter, TicketStore};

use crate::common::{
    Stack, TestDb, Writer, commands_toml, mailbox_toml, matrix_toml, outbox_toml, slack_toml,
    start_connected_at, wait_for,
};
use crate::fake_slack::{FakeSlack, FakeSlackOptions};
use crate::matrix::{Synapse, body, in_thread_of, sender, wait_event};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn check_config_names_a_bad_sla_and_impossible_hours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailroom.toml");
    let text = r#"
[database]
url = "sqlite://never-created.db"

[[mailbox]]
name = "support"
address = "support@mailroom.example"
display_name = "Support"
time_zone = "Europe/Berlin"
  [mailbox.imap]
  host = "127.0.0.1"
  password = "x"
  [mailbox.smtp]
  host = "127.0.0.1"
  [mailbox.chat]
  matrix_room = "!support:example.com"
  [mailbox.business_hours]
  weekdays = "18:00-09:00"
  sat = "25:00-26:00"
  fryday = "09:00-17:00"

[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@mailroom:example.com"
password = "x"

[[sla]]
name = "vip"
tag = "vip"
first_response = "soon"
mention = ["carol"]
colour = "red"
"#;
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .env_remove("MAILROOM_CONFIG")
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for wanted in [
        "mailbox[0].business_hours.weekdays: 18:00-09:00 must end after it starts",
        "mailbox[0].business_hours.sat: expected a time HH:MM",
        "mailbox[0].business_hours.fryday: unknown key",
        "sla[0].first_response: sla \"vip\": expected a duration",
        "sla[0].mention: sla \"vip\": unknown person or group \"carol\"",
        "sla[0].colour: unknown key",
    ] {
        assert!(stderr.contains(wanted), "{wanted:?} not in:\n{stderr}");
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Real time shifted by an offset the test jumps. A `ManualClock` would
/// stand still between jumps, and then nothing the outbox schedules a
/// moment ahead (a retry 200 ms later while Matrix still connects) would
/// ever fall due; here seconds pass as they do, and hours are jumped.
#[derive(Debug)]
struct JumpClock(std::sync::atomic::AtomicI64);

impl JumpClock {
    fn starting_at(at: Timestamp) -> JumpClock {
        let offset = at.as_millisecond() - Timestamp::now().as_millisecond();
        JumpClock(std::sync::atomic::AtomicI64::new(offset))
    }
    fn advance(&self, by: SignedDuration) {
        let ms = by.as_millis() as i64;
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
    fn set(&self, at: Timestamp) {
        let offset = at.as_millisecond() - Timestamp::now().as_millisecond();
        self.0.store(offset, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for JumpClock {
    fn now(&self) -> Timestamp {
        let offset = self.0.load(std::sync::atomic::Ordering::SeqCst);
        Timestamp::from_millisecond(Timestamp::now().as_millisecond() + offset)
            .expect("a time within jiff's range")
    }
}

/// Waits until no SLA check is due at the clock's now (each has run and
/// said what it had to), so that "nothing was said" can be asserted.
async fn checks_settle(store: &dyn TicketStore, clock: &JumpClock) {
    let now = clock.now_ms();
    wait_for("the due SLA checks to run", WAIT, || async move {
        let busy = store
            .jobs(&[JobState::Pending, JobState::InFlight])
            .await
            .unwrap()
            .into_iter()
            .any(|j| {
                j.state == JobState::InFlight
                    || (j.not_before_ms <= now && j.spec.platform().is_some())
                    || matches!(j.spec, JobSpec::SlaCheck { due_ms } if due_ms <= now)
            });
        (!busy).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sla_nudges_alerts_pauses_and_restarts_on_matrix_and_slack() {
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
         [mailbox.business_hours]\n  weekdays = \"08:00-18:00\""
    );
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let sla = format!(
        r#"
[people]
alice = {{ matrix = "{alice_mx}", slack = "{slack_alice}" }}

[[sla]]
name = "support"
mailbox = "support"
first_response = "4h"
next_response = "2h"
nudge_at = 75
mention = ["@room", "alice"]
"#,
        alice_mx = alice.user_id,
    );
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n{sla}",
        mailbox_toml(stack, &support, &db, &chat).replace(
            "initial_sync = \"all\"",
            "initial_sync = \"all\"\ntime_zone = \"Europe/Berlin\""
        ),
        matrix_toml(
            &syn.url,
            &bot.0,
            "password_env = \"BOT_PASSWORD\"",
            state_dir.path()
        ),
        slack_toml(
            "socket",
            &slack.api_url(),
            &format!("listen = \"{listen}\"\n")
        ),
        outbox_toml(""),
        commands_toml(stack, 0),
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
    // Monday 1 June 2026, 09:00 in Berlin (CEST, UTC+2); open 08:00-18:00.
    let clock = Arc::new(JumpClock::starting_at(ts("2026-06-01T07:00:00Z")));
    let app = start_connected_at(settings, &db, clock.clone()).await;
    let store: &dyn TicketStore = app.store.as_ref();
    let writer = Writer::new(stack, &support, &customer.address);
    writer
        .writes("sla1@example.net", "Printer on fire", "It smokes.")
        .await;

    // The root shows the time left, on both platforms.
    let root = wait_event(&alice, &room, "the root", |e| {
        sender(e) == bot.0
            && body(e).contains("Printer on fire")
            && e["content"]["m.relates_to"].is_null()
    })
    .await;
    assert!(
        body(&root).contains("First response due in 4h (business hours)"),
        "{root}"
    );
    let root_id: matrix_sdk::ruma::OwnedEventId =
        root["event_id"].as_str().unwrap().try_into().unwrap();
    let slack_root = wait_for("the Slack root", WAIT, || async {
        slack
            .messages(&channel)
            .into_iter()
            .find(|m| m.bot && m.thread_ts.is_none() && m.text.contains("Printer on fire"))
    })
    .await;
    assert!(
        slack_root
            .blocks
            .to_string()
            .contains("First response due in 4h"),
        "{slack_root:?}"
    );
    let ticket = store.list_tickets(&TicketFilter::default()).await.unwrap()[0].id;
    let mx_said = |what: &'static str| {
        let (alice, room, root_id) = (&alice, &room, &root_id);
        async move {
            alice
                .events(room)
                .await
                .into_iter()
                .filter(|e| {
                    body(e).contains(what)
                        && (in_thread_of(e, root_id) || what.contains("SLA breached"))
                })
                .count()
        }
    };
    let slack_said = |what: &str| {
        slack
            .messages(&channel)
            .into_iter()
            .filter(|m| m.text.contains(what))
            .count()
    };

    // 3h of business time: 75% of 4h. A nudge in the thread, on both.
    clock.advance(SignedDuration::from_hours(3));
    app.app.outbox_wakeup.notify_one();
    let nudge = "1h left to first response (75% of 4h, business hours)";
    wait_event(&alice, &room, "the nudge", |e| {
        in_thread_of(e, &root_id) && body(e).contains(nudge)
    })
    .await;
    wait_for("the Slack nudge", WAIT, || async {
        (slack_said(nudge) == 1).then_some(())
    })
    .await;

    // Pending pauses the clock: four more hours pass, no breach.
    alice.say_in_thread(&room, &root_id, "!pending").await;
    wait_for("the ticket pending", WAIT, || async {
        let t = store.ticket(ticket).await.unwrap().unwrap();
        (t.state.status() == Status::Pending).then_some(())
    })
    .await;
    clock.advance(SignedDuration::from_hours(4));
    app.app.outbox_wakeup.notify_one();
    checks_settle(store, &clock).await;
    assert_eq!(mx_said("SLA breached").await, 0, "paused: no breach");
    assert_eq!(slack_said("SLA breached"), 0);

    // Back to work at 16:00: 1h left, so at 17:00 the target is breached.
    alice.say_in_thread(&room, &root_id, "!reopen").await;
    wait_for("the ticket reopened", WAIT, || async {
        let t = store.ticket(ticket).await.unwrap().unwrap();
        (t.state.status() == Status::Open).then_some(())
    })
    .await;
    clock.advance(SignedDuration::from_hours(1));
    app.app.outbox_wakeup.notify_one();
    let alert = wait_event(&alice, &room, "the breach alert", |e| {
        sender(e) == bot.0 && body(e).contains("SLA breached")
    })
    .await;
    let text = body(&alert);
    assert!(
        text.starts_with("@room ") && text.contains(alice.user_id.as_str()),
        "{alert}"
    );
    assert!(text.contains("no first response for 4h"), "{alert}");
    assert_eq!(alert["content"]["m.mentions"]["room"], true, "{alert}");
    assert_eq!(
        alert["content"]["m.mentions"]["user_ids"][0],
        alice.user_id.as_str(),
        "{alert}"
    );
    assert!(
        text.contains(&format!("https://matrix.to/#/{room}/{root_id}")),
        "links the thread: {alert}"
    );
    let slack_alert = wait_for("the Slack breach alert", WAIT, || async {
        slack
            .messages(&channel)
            .into_iter()
            .find(|m| m.thread_ts.is_none() && m.text.contains("SLA breached"))
    })
    .await;
    assert!(
        slack_alert
            .text
            .starts_with(&format!("<!channel> <@{slack_alice}> ")),
        "{slack_alert:?}"
    );
    // The thread's permalink in the workspace `auth.test` named, `&`
    // escaped as Slack's text format wants it.
    let permalink = format!(
        "https://fake-team.slack.com/archives/{channel}/p{}?thread_ts={}&amp;cid={channel}",
        slack_root.ts.replace('.', ""),
        slack_root.ts
    );
    assert!(
        slack_alert.text.contains(&permalink),
        "links the thread ({permalink}): {slack_alert:?}"
    );

    // Once each: an hour later nothing more is said.
    clock.advance(SignedDuration::from_hours(1));
    app.app.outbox_wakeup.notify_one();
    checks_settle(store, &clock).await;
    assert_eq!(mx_said("SLA breached").await, 1);
    assert_eq!(mx_said(nudge).await, 1);
    assert_eq!(slack_said("SLA breached"), 1);
    assert_eq!(slack_said(nudge), 1);

    // A reply (18:00, after hours) stops the clock.
    alice
        .say_in_thread(&room, &root_id, "!reply We are on it.")
        .await;
    wait_for("the reply sent", WAIT, || async {
        let t = store.ticket(ticket).await.unwrap().unwrap();
        t.first_response_at_ms.map(|_| ())
    })
    .await;
    // The card says so, on both platforms.
    wait_for(
        "the Matrix card edited to say it was answered",
        WAIT,
        || async {
            alice
                .events(&room)
                .await
                .into_iter()
                .filter(|e| {
                    e["content"]["m.relates_to"]["rel_type"] == "m.replace"
                        && e["content"]["m.relates_to"]["event_id"] == root_id.as_str()
                })
                .last()
                .filter(|e| {
                    e["content"]["m.new_content"]["body"]
                        .as_str()
                        .is_some_and(|b| b.contains("✅ Answered, no response due"))
                })
                .map(|_| ())
        },
    )
    .await;
    wait_for("the Slack card updated", WAIT, || async {
        slack.messages(&channel).into_iter().find(|m| {
            m.ts == slack_root.ts && m.blocks.to_string().contains("Answered, no response due")
        })
    })
    .await;
    // The customer answers at 18:00: "next response" (2h) counts from
    // Tuesday 08:00, so its nudge is due at 09:30 and nothing before.
    writer
        .answers(
            "sla1@example.net",
            "sla2@example.net",
            "Re: Printer on fire",
            "Still smoking.",
        )
        .await;
    wait_for("the follow-up stored", WAIT, || async {
        let rec = store.sla_record(ticket).await.unwrap();
        rec.awaiting_since_ms.map(|_| ())
    })
    .await;
    clock.set(ts("2026-06-02T07:29:00Z"));
    app.app.outbox_wakeup.notify_one();
    checks_settle(store, &clock).await;
    let next_nudge = "30m left to next response (75% of 2h, business hours)";
    assert_eq!(mx_said(next_nudge).await, 0, "not yet at 09:29");
    clock.set(ts("2026-06-02T07:30:00Z"));
    app.app.outbox_wakeup.notify_one();
    wait_event(&alice, &room, "the next-response nudge", |e| {
        in_thread_of(e, &root_id) && body(e).contains(next_nudge)
    })
    .await;
    wait_for("the Slack next-response nudge", WAIT, || async {
        (slack_said(next_nudge) == 1).then_some(())
    })
    .await;
    assert_eq!(
        mx_said("SLA breached").await,
        1,
        "the new clock is not breached yet"
    );
    app.stop().await;
}
