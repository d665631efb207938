//! Mail hygiene through the real stack (Dovecot in, a real Synapse room):
//! authentication results and the spoof warning on the card, a mail loop
//! stored quietly and told once, and `!reply` to list mail that has no
//! findable author refused until `!reply!`.

use std::time::Duration;

use mailroom::domain::email::Direction;
use mailroom::store::{TicketFilter, TicketStore};
use serde_json::Value;

use crate::common::{Writer, append, audit_actions, fetch_all, start_connected, wait_for};
use crate::matrix::{World, body, sender, wait_event};

const WAIT: Duration = Duration::from_secs(60);

fn corpus(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn html(ev: &Value) -> &str {
    ev["content"]["formatted_body"].as_str().unwrap_or("")
}

#[tokio::test]
async fn authentication_results_reach_the_card_and_a_dmarc_failure_warns() {
    let w = World::new().await;
    // The stack's IMAP host names no provider: trust is configured, as an
    // operator of a Gmail- or Microsoft-fed mailbox would (or get by default).
    let extra = "[mailbox.auth_results]\ntrusted_authserv_ids = [\"mx.google.com\"]\ntrust_unnamed = true\n";
    let run = start_connected(w.parse(&w.settings_text(0, extra)), &w.db, None).await;
    append(
        w.stack,
        &w.support,
        "INBOX",
        &corpus("auth_gmail_spoofed_from.eml"),
    )
    .await;
    append(
        w.stack,
        &w.support,
        "INBOX",
        &corpus("auth_microsoft365_pass.eml"),
    )
    .await;
    let root = |subject: &'static str| {
        let w = &w;
        async move {
            wait_event(&w.alice, &w.room, "the ticket's root", |e| {
                sender(e) == w.bot.0
                    && body(e).contains(subject)
                    && e["content"]["m.relates_to"].is_null()
            })
            .await
        }
    };
    let spoof = root("update the IBAN").await;
    let text = body(&spoof);
    // The receiver's (topmost) header, not the forged "pass" below it.
    assert!(
        text.contains("🔐 SPF softfail · DKIM none · DMARC fail (checked by mx.google.com)"),
        "{text}"
    );
    assert!(
        text.contains("⚠ possible spoof — check before replying: bank.example fails DMARC"),
        "{text}"
    );
    assert!(!text.contains("DMARC pass"), "{text}");
    assert!(
        html(&spoof).contains("<strong>⚠ possible spoof — check before replying"),
        "{}",
        html(&spoof)
    );

    let ms = root("order 5520").await;
    let text = body(&ms);
    assert!(
        text.contains("🔐 SPF pass · DKIM pass · DMARC pass (checked by the receiving server)"),
        "{text}"
    );
    assert!(!text.contains("possible spoof"), "{text}");
    run.stop().await;
}

#[tokio::test]
async fn a_mail_loop_is_stored_quietly_and_told_once() {
    let w = World::new().await;
    let text = w.settings_text(0, "").replace(
        crate::common::LOOP_GUARD,
        "loop_guard = { max_messages = 3, window_minutes = 10 }",
    );
    assert!(
        text.contains("max_messages = 3"),
        "the harness sets the loop guard"
    );
    let run = start_connected(w.parse(&text), &w.db, None).await;
    let robot = Writer::new(w.stack, &w.support, &w.customer.address);
    for i in 0..7 {
        robot
            .writes(
                &format!("loop{i}@example.net"),
                &format!("Looping notice {i}"),
                "automatic text",
            )
            .await;
    }
    // Every mail is stored, in three tickets: the fourth and later joined
    // the sender's latest ticket instead of opening one each.
    let store = run.store.clone();
    let tickets = wait_for("all 7 mails stored", WAIT, || {
        let store = store.clone();
        async move {
            let tickets = store.list_tickets(&TicketFilter::default()).await.ok()?;
            let mut n = 0;
            for t in &tickets {
                n += store.emails(t.id).await.ok()?.len();
            }
            (n == 7).then_some(tickets)
        }
    })
    .await;
    assert_eq!(tickets.len(), 3, "{tickets:?}");
    let notice = wait_event(&w.alice, &w.room, "the loop notice", |e| {
        sender(e) == w.bot.0 && body(e).contains("Mail loop")
    })
    .await;
    let text = body(&notice);
    assert!(
        text.contains(&format!(
            "Mail loop: 4 messages from {} in 10 minutes",
            w.customer.address
        )),
        "{text}"
    );
    let last = tickets.iter().map(|t| t.id).max().unwrap();
    assert!(
        text.contains(&format!("mailroom tickets show {}", last.get())),
        "{text}"
    );
    // Wait for the outbox to settle, then count what reached the room.
    wait_for("the outbox to finish", WAIT, || {
        let store = store.clone();
        async move {
            let jobs = store
                .jobs(&[
                    mailroom::store::JobState::Pending,
                    mailroom::store::JobState::InFlight,
                ])
                .await
                .ok()?;
            jobs.is_empty().then_some(())
        }
    })
    .await;
    let events = w.alice.events(&w.room).await;
    let bot = |e: &&Value| sender(e) == w.bot.0;
    let posted: Vec<&str> = events
        .iter()
        .filter(bot)
        .map(body)
        .filter(|b| b.contains("Looping notice"))
        .collect();
    assert_eq!(
        posted.len(),
        3,
        "only the first three are posted: {posted:?}"
    );
    let told = events
        .iter()
        .filter(bot)
        .filter(|e| body(e).contains("Mail loop"))
        .count();
    assert_eq!(told, 1, "the loop is told once");
    let log = audit_actions(run.store.as_ref(), last).await;
    assert_eq!(
        log.iter().filter(|a| a.as_str() == "mail-loop").count(),
        1,
        "{log:?}"
    );
    let metrics = run.app.metrics.encode();
    assert!(
        metrics.contains("mailroom_mail_loops_total{mailbox=\"support\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mailroom_mail_loop_messages_total{mailbox=\"support\"} 4"),
        "{metrics}"
    );
    run.stop().await;
}

#[tokio::test]
async fn reply_to_list_mail_without_an_author_asks_and_reply_bang_sends() {
    let w = World::new().await;
    let run = start_connected(w.parse(&w.settings_text(0, "")), &w.db, None).await;
    // The list rewrote From to itself (DMARC mitigation) and points
    // Reply-To back at the list: no person to be found.
    let list = w.stack.user("devlist", "example.net");
    let raw = format!(
        "Message-ID: <list-1@example.net>\r\nDate: Tue, 4 Jun 2024 10:00:00 +0000\r\n\
         From: \"Carol via Dev List\" <{l}>\r\nReply-To: <{l}>\r\nTo: <{l}>\r\nCc: {s}\r\n\
         Subject: Build broken again\r\nList-Id: Dev List <dev.example.net>\r\n\
         List-Post: <mailto:{l}>\r\nPrecedence: list\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nThe nightly build fails.\r\n",
        l = list.address,
        s = w.support.address
    );
    append(w.stack, &w.support, "INBOX", raw.as_bytes()).await;
    let root = wait_event(&w.alice, &w.room, "the ticket's root", |e| {
        sender(e) == w.bot.0 && body(e).contains("Build broken again")
    })
    .await;
    let root: matrix_sdk::ruma::OwnedEventId = root["event_id"].as_str().unwrap().parse().unwrap();
    let in_thread = |e: &Value| {
        e["content"]["m.relates_to"]["event_id"] == root.as_str() && sender(e) == w.bot.0
    };
    w.alice
        .say_in_thread(&w.room, &root, "!reply Thanks, we are on it.")
        .await;
    let refusal = wait_event(&w.alice, &w.room, "the refusal", |e| {
        in_thread(e) && body(e).contains("!reply!")
    })
    .await;
    let text = body(&refusal);
    assert!(text.contains("list mail"), "{text}");
    assert!(
        text.contains(&format!("Send it anyway to {}", list.address)),
        "{text}"
    );
    let ticket = run
        .store
        .list_tickets(&TicketFilter::default())
        .await
        .unwrap()[0]
        .id;
    assert_eq!(
        outbound(run.store.as_ref(), ticket).await,
        0,
        "nothing was queued"
    );

    w.alice
        .say_in_thread(&w.room, &root, "!reply! Thanks, we are on it.")
        .await;
    let got = wait_for("the confirmed reply at the list", WAIT, || async {
        let m = fetch_all(w.stack, &list, "INBOX").await;
        (!m.is_empty()).then_some(m)
    })
    .await;
    let mail = mailroom::mail::parse::parse_email(&got[0].raw);
    assert!(mail.text.contains("we are on it"), "{}", mail.text);
    assert_eq!(outbound(run.store.as_ref(), ticket).await, 1);
    run.stop().await;
}

async fn outbound(store: &dyn TicketStore, ticket: mailroom::domain::ids::TicketId) -> usize {
    store
        .emails(ticket)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.direction == Direction::Outbound)
        .count()
}
