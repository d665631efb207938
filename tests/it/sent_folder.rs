//! Replies written outside mailroom: messages filed in the support
//! mailbox's Sent folder as Outlook or Gmail file them (APPEND), found by the
//! Sent watcher and posted in their tickets' threads on real Synapse and the
//! fake Slack; mailroom's own replies, unrelated mail, restarts and a
//! recreated folder post nothing twice.

use std::time::{Duration, Instant};

use mailroom::bridge::{ImapSentFiler, SentFiler};
use mailroom::domain::email::Direction;
use mailroom::domain::ids::{Actor, EmailAddress, MailboxName, MessageId, TicketId};
use mailroom::domain::mailbox::FolderRole;
use mailroom::domain::ticket::Status;
use mailroom::mail::imap;
use mailroom::store::{TicketFilter, TicketStore};

use crate::common::{
    Running, Stack, TestDb, User, Writer, append, config, fetch_all, start, support_mailbox,
    wait_for,
};
use crate::fake_slack::Message;
use crate::matrix::{World, body, in_thread_of, sender, wait_event};
use crate::slack::{Mode, World as SlackWorld, all_text};

const WAIT: Duration = Duration::from_secs(40);

/// A reply as Outlook or Gmail files it in the mailbox's Sent folder: From
/// the shared address (with `Sender:` the teammate who wrote on its behalf,
/// when given), answering `parent` and quoting it.
fn outside_reply(
    support: &str,
    sender: Option<&str>,
    to: &str,
    id: &str,
    parent: &str,
    text: &str,
) -> Vec<u8> {
    let mut m = format!("From: Example Support <{support}>\r\n");
    if let Some(s) = sender {
        m.push_str(&format!("Sender: {s}\r\n"));
    }
    m.push_str(&format!(
        "To: Carol Customer <{to}>\r\nSubject: Re: Parcel never arrived\r\nMessage-ID: <{id}>\r\n\
         In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\nDate: Mon, 23 Nov 2026 11:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\r\n\
         On Mon, 23 Nov 2026 at 10:00, Carol Customer <{to}> wrote:\r\n> Where is my parcel?\r\n> QUOTED-MARKER\r\n"
    ));
    m.into_bytes()
}

fn support_name() -> MailboxName {
    MailboxName::parse("support").unwrap()
}

/// Waits until the Sent watcher has taken its first position: it starts
/// with what arrives after that, so a message filed earlier is history.
async fn sent_watched(store: &dyn TicketStore) {
    let mb = support_name();
    wait_for("the Sent watcher's first checkpoint", WAIT, || async {
        store
            .folder_checkpoint(&mb, FolderRole::Sent)
            .await
            .unwrap()
            .map(|_| ())
    })
    .await;
}

/// Deletes and recreates a folder with the same messages in it, as a
/// server migration or a client's repair does: a new UIDVALIDITY.
async fn recreate_folder(stack: &Stack, user: &User, folder: &str) {
    let old = fetch_all(stack, user, folder).await;
    let settings = stack.imap_settings(user, folder);
    let mut s = imap::connect_password(&settings).await.expect("IMAP login");
    let before = imap::examine(&mut s, folder).await.expect("EXAMINE");
    s.close().await.expect("CLOSE");
    s.delete(folder).await.expect("DELETE");
    // Dovecot's UIDVALIDITY is the creation time in seconds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.create(folder).await.expect("CREATE");
    for f in &old {
        s.append(folder, None, None, &f.raw).await.expect("APPEND");
    }
    let after = imap::examine(&mut s, folder).await.expect("EXAMINE");
    assert_ne!(before.uid_validity, after.uid_validity, "a new UIDVALIDITY");
    assert_eq!(after.exists as usize, old.len());
    imap::logout(s).await;
}

fn outside_posts(events: &[serde_json::Value], bot: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| sender(e) == bot && body(e).contains("Replied from the mailbox"))
        .map(|e| body(e).to_owned())
        .collect()
}

async fn only_ticket(store: &dyn TicketStore) -> mailroom::store::TicketRecord {
    let list = store.list_tickets(&TicketFilter::default()).await.unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    list.into_iter().next().unwrap()
}

#[tokio::test]
async fn replies_written_in_the_mailbox_reach_the_matrix_thread_once_as_a_teammates_reply() {
    let w = World::new().await;
    let settings = || w.parse(&w.settings_text(0, ""));
    let run = w.start(settings()).await;
    let (support, customer) = (w.support.address.clone(), w.customer.address.clone());
    // Written from the shared address itself, to the customer.
    let reply = |id: &str, parent: &str, text: &str| {
        outside_reply(&support, None, &customer, id, parent, text)
    };
    let root = w
        .email(
            "sf-q@example.net",
            "Parcel never arrived",
            "Where is my parcel?",
        )
        .await;
    sent_watched(run.store.as_ref()).await;
    let ticket = only_ticket(run.store.as_ref()).await;
    assert_eq!(ticket.first_response_at_ms, None);

    // Alice answers from Outlook, on behalf of the shared mailbox.
    let alice = "Alice Teammate <alice.teammate@example.com>";
    let raw = outside_reply(
        &support,
        Some(alice),
        &customer,
        "sf-a1@example.com",
        "sf-q@example.net",
        "OUTSIDE-ONE: your parcel left our warehouse today.",
    );
    append(w.stack, &w.support, "Sent", &raw).await;
    let post = wait_event(&w.alice, &w.room, "the outside reply in the thread", |e| {
        in_thread_of(e, &root) && body(e).contains("OUTSIDE-ONE")
    })
    .await;
    let text = body(&post);
    assert!(
        text.starts_with(&format!(
            "📤 Replied from the mailbox by {alice} (on behalf of {support})"
        )),
        "{text}"
    );
    assert!(
        !text.contains("QUOTED-MARKER") && text.contains("quoted history folded away"),
        "rendered like any mail: {text}"
    );
    let t = run.store.ticket(ticket.id).await.unwrap().unwrap();
    assert_eq!(t.state.status(), Status::Pending, "a teammate answered");
    assert!(t.first_response_at_ms.is_some());
    let log = run.store.audit_log(ticket.id).await.unwrap();
    let entry = log
        .iter()
        .find(|e| e.action == "replied-outside-mailroom")
        .expect("the audit entry");
    assert_eq!(
        entry.actor,
        Actor::Mailbox(EmailAddress::parse("alice.teammate@example.com").unwrap())
    );
    assert!(log.iter().any(|e| e.action == "pending"), "{log:?}");

    // A Sent message answering nothing mailroom knows creates nothing; the
    // next one, from the shared address itself, shows it was read past.
    let unrelated = outside_reply(
        &support,
        None,
        "someone@else.example",
        "sf-unrelated@example.com",
        "never-seen@else.example",
        "UNRELATED-MARKER",
    );
    append(w.stack, &w.support, "Sent", &unrelated).await;
    let raw = reply("sf-a2@example.com", "sf-q@example.net", "OUTSIDE-TWO");
    append(w.stack, &w.support, "Sent", &raw).await;
    let post = wait_event(&w.alice, &w.room, "the second outside reply", |e| {
        in_thread_of(e, &root) && body(e).contains("OUTSIDE-TWO")
    })
    .await;
    assert!(
        body(&post).starts_with(&format!(
            "📤 Replied from the mailbox by Example Support <{support}>\n"
        )),
        "{}",
        body(&post)
    );

    // mailroom's own reply is filed in Sent by mailroom: never posted again.
    w.alice
        .say_in_thread(
            &w.room,
            &root,
            "!reply INSIDE-REPLY: the shipping is refunded.",
        )
        .await;
    wait_for("mailroom's reply filed in Sent", WAIT, || async {
        let sent = fetch_all(w.stack, &w.support, "Sent").await;
        sent.iter()
            .any(|m| String::from_utf8_lossy(&m.raw).contains("INSIDE-REPLY"))
            .then_some(())
    })
    .await;
    let raw = reply("sf-a3@example.com", "sf-q@example.net", "OUTSIDE-THREE");
    append(w.stack, &w.support, "Sent", &raw).await;
    wait_event(&w.alice, &w.room, "the third outside reply", |e| {
        in_thread_of(e, &root) && body(e).contains("OUTSIDE-THREE")
    })
    .await;

    // The customer answers Alice's Outlook reply: same ticket, reopened.
    Writer::new(w.stack, &w.support, &customer)
        .answers(
            "sf-a1@example.com",
            "sf-q2@example.net",
            "Re: Parcel never arrived",
            "CUSTOMER-AGAIN: still nothing here.",
        )
        .await;
    wait_event(
        &w.alice,
        &w.room,
        "the customer's answer in the thread",
        |e| in_thread_of(e, &root) && body(e).contains("CUSTOMER-AGAIN"),
    )
    .await;
    let t = only_ticket(run.store.as_ref()).await;
    assert_eq!(t.state.status(), Status::Open, "reopened as usual");

    // A restart reposts nothing.
    run.stop().await;
    let run = w.start(settings()).await;
    sent_watched(run.store.as_ref()).await;
    let raw = reply("sf-a4@example.com", "sf-q2@example.net", "OUTSIDE-FOUR");
    append(w.stack, &w.support, "Sent", &raw).await;
    wait_event(
        &w.alice,
        &w.room,
        "the outside reply after a restart",
        |e| in_thread_of(e, &root) && body(e).contains("OUTSIDE-FOUR"),
    )
    .await;
    run.stop().await;

    // The Sent folder recreated (new UIDVALIDITY, the same messages): the
    // rescan recognises every one of them.
    recreate_folder(w.stack, &w.support, "Sent").await;
    let run = w.start(settings()).await;
    let raw = reply("sf-a5@example.com", "sf-q2@example.net", "OUTSIDE-FIVE");
    append(w.stack, &w.support, "Sent", &raw).await;
    wait_event(
        &w.alice,
        &w.room,
        "the outside reply after the rescan",
        |e| in_thread_of(e, &root) && body(e).contains("OUTSIDE-FIVE"),
    )
    .await;
    // Let anything a wrong rescan queued reach the room.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = w.alice.events(&w.room).await;
    let posts = outside_posts(&events, &w.bot.0);
    for marker in [
        "OUTSIDE-ONE",
        "OUTSIDE-TWO",
        "OUTSIDE-THREE",
        "OUTSIDE-FOUR",
        "OUTSIDE-FIVE",
    ] {
        let n = posts.iter().filter(|p| p.contains(marker)).count();
        assert_eq!(n, 1, "{marker} posted once: {posts:#?}");
    }
    assert_eq!(posts.len(), 5, "{posts:#?}");
    assert!(
        events.iter().all(|e| !body(e).contains("UNRELATED-MARKER")),
        "unrelated Sent mail is not posted"
    );
    let t = only_ticket(run.store.as_ref()).await;
    let emails = run.store.emails(t.id).await.unwrap();
    let outbound = emails
        .iter()
        .filter(|e| e.direction == Direction::Outbound)
        .count();
    assert_eq!(
        outbound, 6,
        "five outside replies and one !reply: {emails:#?}"
    );
    run.stop().await;
}

/// mailroom on the fake Slack with one ticket, `question` its mail, and
/// the Sent folder watched.
async fn slack_ticket(question: &str) -> (SlackWorld, Running, Message) {
    let w = SlackWorld::new(Mode::Socket).await;
    let run = w.start(w.settings(Mode::Socket, "")).await;
    let root = w
        .email(question, "Parcel never arrived", "Where is my parcel?")
        .await;
    sent_watched(run.store.as_ref()).await;
    (w, run, root)
}

#[tokio::test]
async fn a_reply_written_in_the_mailbox_reaches_the_slack_thread() {
    let (w, run, root) = slack_ticket("sfs-q@example.net").await;
    let raw = outside_reply(
        &w.support.address,
        Some("Bob Stone <bob.stone@example.com>"),
        &w.customer.address,
        "sfs-a1@example.com",
        "sfs-q@example.net",
        "OUTSIDE-SLACK: it is on its way.",
    );
    append(w.stack, &w.support, "Sent", &raw).await;
    let post = w
        .wait("the outside reply in the Slack thread", |w| {
            w.thread(&root)
                .into_iter()
                .find(|m| m.bot && all_text(m).contains("OUTSIDE-SLACK"))
        })
        .await;
    let text = all_text(&post);
    assert!(
        text.contains("Replied from the mailbox by Bob Stone &lt;bob.stone@example.com&gt;"),
        "{text}"
    );
    assert!(!text.contains("QUOTED-MARKER"), "{text}");
    let t = only_ticket(run.store.as_ref()).await;
    assert_eq!(t.state.status(), Status::Pending);
    assert!(t.first_response_at_ms.is_some());
    run.stop().await;
}

/// APPEND → visible through the chat API, over 20 replies written in the
/// mailbox one after another; printed as a METRIC line.
#[tokio::test]
async fn sent_folder_reply_to_thread_latency() {
    let (w, run, root) = slack_ticket("sfl-q@example.net").await;
    let mut took = Vec::new();
    for i in 0..20 {
        let marker = format!("LATENCY-{i:02}");
        let raw = outside_reply(
            &w.support.address,
            None,
            &w.customer.address,
            &format!("sfl-a{i}@example.com"),
            "sfl-q@example.net",
            &marker,
        );
        let t0 = Instant::now();
        append(w.stack, &w.support, "Sent", &raw).await;
        crate::common::poll_every(&marker, WAIT, Duration::from_millis(10), || {
            let found = w
                .thread(&root)
                .iter()
                .any(|m| m.bot && all_text(m).contains(&marker));
            async move { found.then_some(()) }
        })
        .await;
        took.push(t0.elapsed());
    }
    took.sort();
    let (p50, max) = (took[took.len() / 2], took[took.len() - 1]);
    println!(
        "METRIC sent_reply_to_thread_ms p50={} max={} n={}",
        p50.as_millis(),
        max.as_millis(),
        took.len()
    );
    assert!(p50 < Duration::from_secs(5), "p50 {p50:?}");
    run.stop().await;
}

#[tokio::test]
async fn a_named_sent_folder_is_watched_and_filed_into_and_the_marked_one_is_detected() {
    let (stack, support) = support_mailbox();
    let customer = "carol@example.net";
    // The server marks "Sent" as \Sent: detection finds it.
    let mut s = imap::connect_password(&stack.imap_settings(&support, "INBOX"))
        .await
        .expect("IMAP login");
    let detected = mailroom::mail::sent::detect_sent(&mut s).await.unwrap();
    assert_eq!(detected.as_deref(), Some("Sent"));
    s.create("Sent Items").await.expect("CREATE");
    imap::logout(s).await;

    let db = TestDb::sqlite();
    let mut settings = config(stack, &support, &db, stack.smtp_port, "");
    settings.mailboxes[0].imap.sent_folder = Some("Sent Items".into());
    let run = start(settings.clone(), &db).await;
    Writer::new(stack, &support, customer)
        .writes(
            "sfn-q@example.net",
            "Parcel never arrived",
            "Where is my parcel?",
        )
        .await;
    crate::common::wait_tickets(run.store.as_ref(), 1).await;
    sent_watched(run.store.as_ref()).await;
    // Filed in the marked folder, which is not the one named: not watched.
    let ignored = outside_reply(
        &support.address,
        None,
        customer,
        "sfn-ignored@example.com",
        "sfn-q@example.net",
        "IN-SENT",
    );
    append(stack, &support, "Sent", &ignored).await;
    let raw = outside_reply(
        &support.address,
        None,
        customer,
        "sfn-a1@example.com",
        "sfn-q@example.net",
        "IN-SENT-ITEMS",
    );
    append(stack, &support, "Sent Items", &raw).await;
    let ticket = only_ticket(run.store.as_ref()).await.id;
    let outbound = |store: std::sync::Arc<mailroom::store::sql::SqlStore>, t: TicketId| async move {
        let emails = store.emails(t).await.unwrap();
        let ids: Vec<String> = emails
            .into_iter()
            .filter(|e| e.direction == Direction::Outbound)
            .map(|e| e.message_id.as_str().to_owned())
            .collect();
        (!ids.is_empty()).then_some(ids)
    };
    let store = run.store.clone();
    let ids = wait_for("the reply stored from Sent Items", WAIT, || {
        outbound(store.clone(), ticket)
    })
    .await;
    assert_eq!(ids, vec!["sfn-a1@example.com".to_owned()]);

    // mailroom files its own replies in the same folder.
    let imap_settings = settings.mailboxes[0].imap.clone();
    let login = std::sync::Arc::new(imap::password_login(&imap_settings));
    let filer = ImapSentFiler::new(imap_settings, login);
    let id = MessageId::parse("sfn-own@example.com").unwrap();
    let own = outside_reply(
        &support.address,
        None,
        customer,
        id.as_str(),
        "sfn-q@example.net",
        "OWN",
    );
    filer.file(&id, &own, None).await.unwrap();
    let items = fetch_all(stack, &support, "Sent Items").await;
    assert!(
        items
            .iter()
            .any(|m| String::from_utf8_lossy(&m.raw).contains("sfn-own@example.com")),
        "filed in the named folder"
    );
    run.stop().await;
}

#[tokio::test]
async fn watch_sent_false_leaves_the_sent_folder_alone() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let mut settings = config(stack, &support, &db, stack.smtp_port, "");
    settings.mailboxes[0].imap.watch_sent = false;
    let run = start(settings, &db).await;
    Writer::new(stack, &support, "carol@example.net")
        .writes(
            "sfo-q@example.net",
            "Parcel never arrived",
            "Where is my parcel?",
        )
        .await;
    crate::common::wait_tickets(run.store.as_ref(), 1).await;
    let mb = support_name();
    assert_eq!(
        run.store
            .folder_checkpoint(&mb, FolderRole::Sent)
            .await
            .unwrap(),
        None,
        "the Sent folder was never opened"
    );
    assert!(run.store.checkpoint(&mb).await.unwrap().is_some());
    run.stop().await;
}

/// Dovecot's log lines saying `address` logged in over IMAP.
fn imap_logins(stack: &Stack, address: &str) -> usize {
    let log = std::fs::read_to_string(stack.dir.join("log/dovecot.log")).unwrap_or_default();
    let needle = format!("imap-login: Info: Login: user=<{address}>");
    log.lines().filter(|l| l.contains(&needle)).count()
}

#[tokio::test]
async fn a_mailbox_starts_with_two_logins_the_sent_watcher_keeping_the_one_it_looked_its_folder_up_on()
 {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let run = start(config(stack, &support, &db, stack.smtp_port, ""), &db).await;
    sent_watched(run.store.as_ref()).await;
    // INBOX's connection logs in beside the Sent watcher's; Dovecot's log
    // process writes the login lines a moment after each login.
    wait_for("two logins in Dovecot's log", WAIT, || async {
        (imap_logins(stack, &support.address) >= 2).then_some(())
    })
    .await;
    // A third login (a separate one for looking the folder up, as before)
    // would have come before the Sent checkpoint too: its line is given
    // the same moment to be written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        imap_logins(stack, &support.address),
        2,
        "INBOX and Sent, one login each"
    );
    run.stop().await;
}
