//! Auto-assignment end to end: real mail through Dovecot into a ticket
//! posted to Synapse and the fake Slack at once, assigned by the
//! mailbox's pool, the owner mentioned on both; `!away` / `!back` typed in
//! the Matrix room and `/mailroom away|back` in Slack; Slack's presence
//! and do-not-disturb skipping a person; a reaction claim taking over.

use std::time::Duration;

use mailroom::domain::ids::Agent;
use mailroom::domain::ticket::TicketState;
use mailroom::store::{TicketFilter, TicketRecord, TicketStore};
use matrix_sdk::ruma::OwnedEventId;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

use crate::common::{
    Stack, TestDb, Writer, mailbox_toml, matrix_toml, outbox_toml, slack_toml, start_connected,
    wait_for,
};
use crate::fake_slack::{FakeSlack, FakeSlackOptions};
use crate::matrix::{Synapse, body, sender, wait_event};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_pool_assigns_mentions_and_skips_who_is_away_on_matrix_and_slack() {
    crate::common::init_logs();
    mailroom::mail::tls::install_crypto_provider();
    let stack = Stack::get();
    let syn = Synapse::get();
    let bot = syn.register("mailroom");
    let (alice, room) = syn.room_for(&bot.0).await;
    let bob = syn.login("bob").await;
    alice
        .room(&room)
        .invite_user_by_id(&bob.user_id)
        .await
        .unwrap();
    bob.join(&room).await;
    let slack = FakeSlack::start(FakeSlackOptions::default()).await;
    let s_alice = slack.add_user("alice", "Alice Martin");
    let s_bob = slack.add_user("bob", "Bob Stone");
    let channel = slack.add_channel("support", &[&s_alice, &s_bob, slack.bot_user_id()]);
    let support = stack.user("support", "example.com");
    let customer = stack.user("customer", "example.net");
    let db = TestDb::sqlite();
    let state_dir = tempfile::tempdir().unwrap();
    let chat = format!(
        "matrix_room = \"{room}\"\n  slack_channel = \"{channel}\"\n  [mailbox.assign]\n  group = \"team\""
    );
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let people = format!(
        "[people]\nalice = {{ matrix = \"{}\", slack = \"{s_alice}\" }}\n\
         bob = {{ matrix = \"{}\", slack = \"{s_bob}\" }}\n\n\
         [groups]\nteam = {{ members = [\"alice\", \"bob\"], strategy = \"round_robin\" }}\n",
        alice.user_id, bob.user_id
    );
    let text = format!(
        "{}\n{}\n{}\n{}\n{people}",
        mailbox_toml(stack, &support, &db, &chat),
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
    let app = start_connected(settings, &db, None).await;
    // Every pick asks the platforms afresh, so a change shows at once.
    app.app.presence.set_ttl(Duration::ZERO);
    let store = app.store.clone();
    let writer = Writer::new(stack, &support, &customer.address);
    let alice_id = Agent::parse(alice.user_id.as_str()).unwrap();
    let bob_id = Agent::parse(bob.user_id.as_str()).unwrap();

    // The ticket with this subject, once stored.
    let ticket = |subject: &'static str| {
        let store = store.clone();
        async move {
            wait_for(&format!("the ticket {subject:?}"), WAIT, || {
                let store = store.clone();
                async move {
                    store
                        .list_tickets(&TicketFilter::default())
                        .await
                        .unwrap()
                        .into_iter()
                        .find(|t| t.subject == subject)
                }
            })
            .await
        }
    };
    let owner = |t: &TicketRecord| t.state.owner().cloned();
    let audit = |t: &TicketRecord| {
        let (store, id) = (store.clone(), t.id);
        async move {
            store
                .audit_log(id)
                .await
                .unwrap()
                .into_iter()
                .find(|e| e.action.starts_with("auto-assign"))
                .map(|e| e.details)
                .unwrap_or_default()
        }
    };

    // 1. The first mail goes to alice: her card says so, and the thread
    // mentions her on Matrix (a pill and m.mentions) and on Slack (<@U…>).
    writer
        .writes("as1@example.net", "First question", "Hello?")
        .await;
    let root = wait_event(&alice, &room, "the first root", |e| {
        sender(e) == bot.0
            && body(e).contains("First question")
            && e["content"]["m.relates_to"].is_null()
    })
    .await;
    let root_id: OwnedEventId = root["event_id"].as_str().unwrap().parse().unwrap();
    assert!(
        body(&root).contains(&format!("Claimed by {}", alice.user_id)),
        "{root}"
    );
    let mention = wait_event(&alice, &room, "the assignment notice", |e| {
        body(e).starts_with("👤 Assigned to")
            && e["content"]["m.relates_to"]["event_id"] == root["event_id"]
    })
    .await;
    assert_eq!(
        mention["content"]["m.mentions"]["user_ids"][0],
        alice.user_id.as_str(),
        "{mention}"
    );
    assert!(
        mention["content"]["formatted_body"]
            .as_str()
            .unwrap()
            .contains(&format!("https://matrix.to/#/{}", alice.user_id)),
        "{mention}"
    );
    wait_for("the Slack mention", WAIT, || async {
        slack.messages(&channel).into_iter().find(|m| {
            m.thread_ts.is_some()
                && m.text.contains(&format!("<@{s_alice}>"))
                && m.text.contains("Assigned to")
        })
    })
    .await;
    let first = ticket("First question").await;
    assert_eq!(owner(&first), Some(alice_id.clone()));
    assert!(
        audit(&first)
            .await
            .contains("round robin in mailbox support")
    );

    // 2. bob says !away in the Matrix room: his turn is skipped.
    bob.room(&room)
        .send(RoomMessageEventContent::text_plain("!away"))
        .await
        .unwrap();
    wait_event(&alice, &room, "the away answer", |e| {
        sender(e) == bot.0 && body(e).contains("bob is away until they say !back")
    })
    .await;
    writer
        .writes("as2@example.net", "Second question", "Hi")
        .await;
    let second = ticket("Second question").await;
    assert_eq!(owner(&second), Some(alice_id.clone()));
    assert!(
        audit(&second).await.contains("skipped bob (away)"),
        "{}",
        audit(&second).await
    );

    // 3. bob is back in Slack, but Slack says he is in do-not-disturb.
    slack
        .slash_command(&s_bob, &channel, "/mailroom", "back")
        .await
        .unwrap();
    wait_for("the back answer", WAIT, || async {
        slack
            .ephemerals(&s_bob)
            .into_iter()
            .find(|e| e.text.contains("Welcome back, bob"))
    })
    .await;
    slack.set_snooze(&s_bob, Some(3600));
    writer
        .writes("as3@example.net", "Third question", "Hi")
        .await;
    let third = ticket("Third question").await;
    assert_eq!(owner(&third), Some(alice_id.clone()));
    assert!(
        audit(&third)
            .await
            .contains("bob (do not disturb on Slack)"),
        "{}",
        audit(&third).await
    );

    // 4. Out of DND but away on Slack: still skipped.
    slack.set_snooze(&s_bob, None);
    slack.set_away(&s_bob, true);
    writer
        .writes("as4@example.net", "Fourth question", "Hi")
        .await;
    let fourth = ticket("Fourth question").await;
    assert_eq!(owner(&fourth), Some(alice_id.clone()));
    assert!(
        audit(&fourth).await.contains("bob (away on Slack)"),
        "{}",
        audit(&fourth).await
    );

    // 5. Active again: his turn. Matrix presence is off on the test
    // homeserver, which then tells nothing, so it skips nobody.
    slack.set_away(&s_bob, false);
    writer
        .writes("as5@example.net", "Fifth question", "Hi")
        .await;
    let fifth = ticket("Fifth question").await;
    assert_eq!(owner(&fifth), Some(bob_id.clone()));
    assert!(slack.calls("users.getPresence") > 0 && slack.calls("dnd.info") > 0);

    // 6. bob reaches for alice's first ticket with a claim reaction: the
    // pick gives way.
    bob.react(&room, &root_id, "🙋").await;
    wait_for("bob's claim over the pick", WAIT, || {
        let store = store.clone();
        let id = first.id;
        let bob_id = bob_id.clone();
        async move {
            let t = store.ticket(id).await.unwrap().unwrap();
            (t.state == TicketState::Claimed { by: bob_id }).then_some(())
        }
    })
    .await;
    app.stop().await;
}
