//! The mail side end to end against real Dovecot and Postfix: ingest,
//! restart, follow-ups, replies, SMTP outages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use mailroom::bridge::reply::queue_reply;
use mailroom::domain::email::Direction;
use mailroom::domain::ids::{Actor, Agent};
use mailroom::domain::ticket::{Status, TicketEvent, TicketState};
use mailroom::mail::parse::parse_email;
use mailroom::store::{EmailState, JobState, TicketFilter, TicketStore};
use tokio::io::{AsyncWriteExt, copy_bidirectional};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{
    Running, Stack, TestDb, User, Writer, append, audit_actions, config, customer_mail, fetch_all,
    first_ticket, reply_request, start, support_and_customer, support_mailbox, ticket_count,
    wait_for, wait_tickets,
};

const WAIT: Duration = Duration::from_secs(30);

/// Waits until ingest has recorded its first position in the folder.
async fn first_checkpoint(store: &dyn TicketStore) {
    let mb = mailroom::domain::ids::MailboxName::parse("support").unwrap();
    wait_for("the first checkpoint", WAIT, || {
        let mb = mb.clone();
        async move { store.checkpoint(&mb).await.unwrap() }
    })
    .await;
}

#[tokio::test]
async fn appended_mail_becomes_one_ticket_and_a_restart_imports_nothing_twice() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let settings = config(stack, &support, &db, stack.smtp_port, "");
    Writer::new(stack, &support, "carol@customer.example")
        .writes(
            "m1@customer.example",
            "Broken invoice",
            "Hello, invoice 42 is wrong.",
        )
        .await;

    let app = start(settings.clone(), &db).await;
    wait_tickets(app.store.as_ref(), 1).await;
    // A second mail while running (IDLE push) is a barrier: once it is in,
    // the first has certainly been processed exactly once.
    Writer::new(stack, &support, "dave@other.example")
        .writes("m2@other.example", "Password reset", "I cannot log in.")
        .await;
    wait_tickets(app.store.as_ref(), 2).await;
    app.stop().await;

    let app = start(settings, &db).await;
    Writer::new(stack, &support, "erin@third.example")
        .writes("m3@third.example", "Refund", "Please refund.")
        .await;
    wait_tickets(app.store.as_ref(), 3).await;
    let tickets = app
        .store
        .list_tickets(&TicketFilter::default())
        .await
        .unwrap();
    assert_eq!(
        tickets.len(),
        3,
        "no ticket imported twice across the restart"
    );
    for t in &tickets {
        assert_eq!(
            app.store.emails(t.id).await.unwrap().len(),
            1,
            "ticket {} has one email",
            t.id
        );
        assert_eq!(t.state, TicketState::Open);
    }
    let subjects: Vec<&str> = tickets.iter().map(|t| t.subject.as_str()).collect();
    assert_eq!(subjects, vec!["Refund", "Password reset", "Broken invoice"]);
    app.stop().await;

    // mailroom must not change the team's \Seen flags.
    for m in fetch_all(stack, &support, "INBOX").await {
        assert!(
            !m.flags.iter().any(|f| f.contains("Seen")),
            "message {} was marked seen: {:?}",
            m.uid,
            m.flags
        );
    }
}

/// A mail of exactly `size` bytes: headers, a short text and an attachment of
/// varied bytes, base64 in 76-column lines, padded with a trailing comment.
fn large_mail(to: &str, id: &str, subject: &str, size: usize) -> Vec<u8> {
    use base64::Engine as _;
    let head = format!(
        "From: Fay <fay@customer.example>\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Message-ID: <{id}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n\
         --zz\r\nContent-Type: text/plain\r\n\r\nThe dump is attached.\r\n\
         --zz\r\nContent-Type: application/octet-stream; name=\"dump.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    );
    let tail = "--zz--\r\n";
    // Leave room for the padding line after the attachment.
    let data_len = (size - head.len() - tail.len() - 200) / 78 * 57;
    let data: Vec<u8> = (0..data_len).map(|i| (i * 131 % 256) as u8).collect();
    let mut raw = head.into_bytes();
    let enc = base64::engine::general_purpose::STANDARD.encode(&data);
    for line in enc.as_bytes().chunks(76) {
        raw.extend_from_slice(line);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(tail.as_bytes());
    // The epilogue after the closing boundary brings it to the exact size.
    let pad = size - raw.len();
    raw.extend(std::iter::repeat_n(b'.', pad - 2));
    raw.extend_from_slice(b"\r\n");
    assert_eq!(raw.len(), size);
    raw
}

#[tokio::test]
async fn large_mail_is_fetched_in_pieces_byte_for_byte_and_in_order() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let settings = config(stack, &support, &db, stack.smtp_port, "");
    const MIB: usize = 1024 * 1024;
    let mails: Vec<Vec<u8>> = vec![
        customer_mail(
            "a@customer.example",
            &support.address,
            "s1@customer.example",
            "Small one",
            "Hi.",
            None,
        ),
        large_mail(
            &support.address,
            "l1@customer.example",
            "Large one",
            3 * MIB + 4321,
        ),
        customer_mail(
            "b@customer.example",
            &support.address,
            "s2@customer.example",
            "Small two",
            "Hi.",
            None,
        ),
        // Exactly two pieces: the last piece comes back full, the next empty.
        large_mail(
            &support.address,
            "l2@customer.example",
            "Large two",
            2 * MIB,
        ),
    ];
    for raw in &mails {
        append(stack, &support, "INBOX", raw).await;
    }
    let app = start(settings, &db).await;
    wait_tickets(app.store.as_ref(), 4).await;
    let mut tickets = app
        .store
        .list_tickets(&TicketFilter::default())
        .await
        .unwrap();
    tickets.sort_by_key(|t| t.id);
    let subjects: Vec<&str> = tickets.iter().map(|t| t.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["Small one", "Large one", "Small two", "Large two"],
        "UID order"
    );
    for (t, sent) in tickets.iter().zip(&mails) {
        let emails = app.store.emails(t.id).await.unwrap();
        assert_eq!(emails.len(), 1);
        let stored = app.store.raw_email(emails[0].id).await.unwrap().unwrap();
        assert_eq!(stored.len(), sent.len(), "{}", t.subject);
        assert!(&stored == sent, "{}: bytes differ", t.subject);
    }
    let dump = parse_email(mails[1].as_slice());
    assert_eq!(dump.attachments.len(), 1);
    assert_eq!(
        dump.attachments[0].size as usize,
        mailroom::mail::parse::attachment_bytes(&mails[1], 0)
            .unwrap()
            .len()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_follow_up_fetched_in_the_same_batch_as_its_root_joins_it() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let settings = config(stack, &support, &db, stack.smtp_port, "");
    // Both in the mailbox before mailroom starts: one FETCH, one transaction.
    for (id, subject, parent) in [
        ("root@customer.example", "Broken invoice", None),
        (
            "more@customer.example",
            "Re: Broken invoice",
            Some("root@customer.example"),
        ),
        ("other@customer.example", "Another matter", None),
    ] {
        let raw = customer_mail(
            "carol@customer.example",
            &support.address,
            id,
            subject,
            "Hello.",
            parent,
        );
        append(stack, &support, "INBOX", &raw).await;
    }
    let app = start(settings, &db).await;
    wait_for("3 emails stored", WAIT, || {
        let store = app.store.clone();
        async move {
            let tickets = store.list_tickets(&TicketFilter::default()).await.unwrap();
            let mut n = 0;
            for t in &tickets {
                n += store.emails(t.id).await.unwrap().len();
            }
            (n == 3).then_some(tickets)
        }
    })
    .await;
    let mut tickets = app
        .store
        .list_tickets(&TicketFilter::default())
        .await
        .unwrap();
    tickets.sort_by_key(|t| t.id);
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    assert_eq!(tickets[0].subject, "Broken invoice");
    assert_eq!(app.store.emails(tickets[0].id).await.unwrap().len(), 2);
    assert_eq!(app.store.emails(tickets[1].id).await.unwrap().len(), 1);
    let mb = mailroom::domain::ids::MailboxName::parse("support").unwrap();
    assert_eq!(
        app.store.checkpoint(&mb).await.unwrap().map(|c| c.last_uid),
        Some(3)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_follow_up_with_in_reply_to_joins_its_ticket_and_reopens_it() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let app = start(config(stack, &support, &db, stack.smtp_port, ""), &db).await;
    Writer::new(stack, &support, "carol@customer.example")
        .writes("q1@customer.example", "Question", "How do I export?")
        .await;
    wait_tickets(app.store.as_ref(), 1).await;
    let ticket = first_ticket(app.store.as_ref()).await;
    let alice = Agent::parse("@alice:example.com").unwrap();
    app.store
        .apply(
            ticket,
            &Actor::Agent(alice.clone()),
            &TicketEvent::Claim(alice.clone()),
            &[],
            1,
        )
        .await
        .unwrap();
    app.store
        .apply(
            ticket,
            &Actor::Agent(alice.clone()),
            &TicketEvent::Close,
            &[],
            2,
        )
        .await
        .unwrap();

    Writer::new(stack, &support, "carol@customer.example")
        .answers(
            "q1@customer.example",
            "q2@customer.example",
            "Re: Question",
            "Still stuck, sorry.",
        )
        .await;
    let store = app.store.clone();
    wait_for("the follow-up", WAIT, || {
        let store = store.clone();
        async move { (store.emails(ticket).await.unwrap().len() == 2).then_some(()) }
    })
    .await;
    assert_eq!(ticket_count(app.store.as_ref()).await, 1);
    let t = app.store.ticket(ticket).await.unwrap().unwrap();
    assert_eq!(
        t.state,
        TicketState::Claimed { by: alice },
        "reopened, back with its owner"
    );
    let actions = audit_actions(app.store.as_ref(), ticket).await;
    assert_eq!(
        actions,
        vec!["created", "claim", "close", "customer-replied", "reopen"]
    );

    // Another customer quoting the same thread gets a ticket of their own.
    Writer::new(stack, &support, "mallory@elsewhere.example")
        .answers(
            "q1@customer.example",
            "x1@elsewhere.example",
            "Re: Question",
            "Me too",
        )
        .await;
    wait_tickets(app.store.as_ref(), 2).await;
    app.stop().await;
}

#[tokio::test]
async fn a_reply_reaches_the_customer_threaded_from_the_shared_address_and_is_filed_in_sent() {
    let (stack, support, customer) = support_and_customer();
    let db = TestDb::sqlite();
    let app = start(config(stack, &support, &db, stack.smtp_port, ""), &db).await;
    Writer::new(stack, &support, &customer.address)
        .writes("help1@example.net", "Need help", "My order is late.")
        .await;
    wait_tickets(app.store.as_ref(), 1).await;
    let ticket = app
        .store
        .list_tickets(&TicketFilter::default())
        .await
        .unwrap()[0]
        .clone();

    let queued = queue_reply(
        &app.app,
        reply_request(
            ticket.id,
            "@alice:example.com",
            Some("Alice"),
            "Sorry about that, it **ships today**.",
        ),
    )
    .await
    .unwrap();
    assert_eq!(queued.to[0].address.as_str(), customer.address);

    let received = wait_for("the reply in the customer's mailbox", WAIT, || async {
        let msgs = fetch_all(stack, &customer, "INBOX").await;
        (!msgs.is_empty()).then_some(msgs)
    })
    .await;
    assert_eq!(received.len(), 1);
    let got = parse_email(&received[0].raw);
    assert_eq!(got.from.address.as_str(), support.address);
    assert_eq!(got.from.name.as_deref(), Some("Alice via Example Support"));
    assert_eq!(got.subject, "Re: Need help");
    assert_eq!(got.message_id, queued.message_id);
    assert_eq!(
        got.in_reply_to
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>(),
        vec!["help1@example.net"]
    );
    assert!(
        got.references
            .iter()
            .any(|m| m.as_str() == "help1@example.net")
    );
    let reply_to = got.reply_to[0].address.as_str().to_owned();
    assert_eq!(
        reply_to,
        format!(
            "{}+{}@example.com",
            support.address.split('@').next().unwrap(),
            ticket.token
        )
    );
    assert!(got.text.contains("ships today"));

    let sent = wait_for("the copy in Sent", WAIT, || async {
        let msgs = fetch_all(stack, &support, "Sent").await;
        (!msgs.is_empty()).then_some(msgs)
    })
    .await;
    assert_eq!(sent.len(), 1);
    assert_eq!(parse_email(&sent[0].raw).message_id, queued.message_id);
    assert!(
        sent[0].flags.iter().any(|f| f.contains("Seen")),
        "filed as read: {:?}",
        sent[0].flags
    );
    wait_for("\\Answered on the original", WAIT, || async {
        let inbox = fetch_all(stack, &support, "INBOX").await;
        inbox
            .iter()
            .any(|m| m.flags.iter().any(|f| f.contains("Answered")))
            .then_some(())
    })
    .await;
    let emails = app.store.emails(ticket.id).await.unwrap();
    assert_eq!(
        emails
            .iter()
            .filter(|e| e.state == EmailState::Sent)
            .count(),
        1
    );

    // The customer answers our reply by replying to it (to the plus address):
    // it lands in the same ticket.
    append(
        stack,
        &support,
        "INBOX",
        &customer_mail(
            &customer.address,
            &reply_to,
            "help2@example.net",
            "Re: Need help",
            "Thanks!",
            Some(queued.message_id.as_str()),
        ),
    )
    .await;
    let store = app.store.clone();
    wait_for("the customer's answer in the same ticket", WAIT, || {
        let store = store.clone();
        async move { (store.emails(ticket.id).await.unwrap().len() == 3).then_some(()) }
    })
    .await;
    assert_eq!(ticket_count(app.store.as_ref()).await, 1);
    app.stop().await;
}

/// A TCP front for Postfix that can play an outage: while `down`, every
/// connection gets `421` and is closed, as a server refusing service does.
struct FlakySmtp {
    port: u16,
    mode: Arc<AtomicU8>,
    connections: Arc<AtomicU32>,
}

impl FlakySmtp {
    async fn start(upstream: u16) -> FlakySmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(0));
        let connections = Arc::new(AtomicU32::new(0));
        let (m, c) = (mode.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let up = m.load(Ordering::SeqCst) == 1;
                tokio::spawn(async move {
                    if up {
                        if let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                            let _ = copy_bidirectional(&mut client, &mut server).await;
                        }
                    } else {
                        let _ = client
                            .write_all(b"421 4.3.2 Service not available, try later\r\n")
                            .await;
                        let _ = client.shutdown().await;
                    }
                });
            }
        });
        FlakySmtp {
            port,
            mode,
            connections,
        }
    }
}

#[tokio::test]
async fn while_smtp_is_down_the_outbox_retries_and_delivers_exactly_once() {
    let (stack, support, customer) = support_and_customer();
    let flaky = FlakySmtp::start(stack.smtp_port).await;
    let db = TestDb::sqlite();
    let app = start(config(stack, &support, &db, flaky.port, ""), &db).await;
    Writer::new(stack, &support, &customer.address)
        .writes("down1@example.net", "Outage", "Hello?")
        .await;
    wait_tickets(app.store.as_ref(), 1).await;
    let ticket = first_ticket(app.store.as_ref()).await;
    let queued = queue_reply(
        &app.app,
        reply_request(ticket, "@bob:example.com", None, "We are on it."),
    )
    .await
    .unwrap();

    // Let it fail at least twice.
    let conns = flaky.connections.clone();
    wait_for("two refused attempts", WAIT, || {
        let conns = conns.clone();
        async move { (conns.load(Ordering::SeqCst) >= 2).then_some(()) }
    })
    .await;
    let jobs = app
        .store
        .jobs(&[JobState::Pending, JobState::InFlight])
        .await
        .unwrap();
    let send = jobs
        .iter()
        .find(|j| j.spec.kind() == "send_reply")
        .expect("send still queued");
    assert!(
        send.last_error.as_deref().unwrap_or("").contains("421")
            || send.state == JobState::InFlight,
        "{send:?}"
    );
    assert_eq!(
        app.store
            .outgoing(queued.email_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        EmailState::Queued
    );

    flaky.mode.store(1, Ordering::SeqCst);
    let received = wait_for("the reply after the outage", WAIT, || async {
        let msgs = fetch_all(stack, &customer, "INBOX").await;
        (!msgs.is_empty()).then_some(msgs)
    })
    .await;
    // Give a duplicate every chance to show up before counting.
    let store = app.store.clone();
    wait_for("the send marked sent", WAIT, || {
        let store = store.clone();
        async move {
            (store
                .outgoing(queued.email_id)
                .await
                .unwrap()
                .unwrap()
                .state
                == EmailState::Sent)
                .then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received_after = fetch_all(stack, &customer, "INBOX").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received_after.len(), 1, "delivered exactly once");
    assert_eq!(
        parse_email(&received_after[0].raw).message_id,
        queued.message_id
    );
    let actions = audit_actions(app.store.as_ref(), ticket).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "reply-sent").count(),
        1,
        "{actions:?}"
    );
    assert_eq!(
        app.store
            .ticket(ticket)
            .await
            .unwrap()
            .unwrap()
            .state
            .status(),
        Status::Open
    );
    app.stop().await;
}

/// A customer's mail becomes the only ticket, and bob answers it at once
/// ("Hello", no undo window). Returns the ticket and the reply's email id.
async fn open_and_answer(
    stack: &Stack,
    support: &User,
    app: &Running,
    from: &str,
    message_id: &str,
    subject: &str,
) -> (mailroom::domain::ids::TicketId, i64) {
    Writer::new(stack, support, from)
        .writes(message_id, subject, "Hi")
        .await;
    wait_tickets(app.store.as_ref(), 1).await;
    let ticket = first_ticket(app.store.as_ref()).await;
    let queued = queue_reply(
        &app.app,
        reply_request(ticket, "@bob:example.com", None, "Hello"),
    )
    .await
    .unwrap();
    (ticket, queued.email_id)
}

#[tokio::test]
async fn a_permanent_smtp_refusal_is_recorded_not_retried() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let app = start(config(stack, &support, &db, stack.smtp_port, ""), &db).await;
    // Postfix refuses destinations outside the test domains with a 5xx.
    let (ticket, reply_id) = open_and_answer(
        stack,
        &support,
        &app,
        "someone@nowhere.invalid",
        "p1@nowhere.invalid",
        "Bounce me",
    )
    .await;
    let store = app.store.clone();
    let state = wait_for("the send to settle", WAIT, || {
        let store = store.clone();
        async move {
            let s = store.outgoing(reply_id).await.unwrap().unwrap().state;
            (s != EmailState::Queued).then_some(s)
        }
    })
    .await;
    assert_eq!(state, EmailState::Failed);
    let log = app.store.audit_log(ticket).await.unwrap();
    let failed = log
        .iter()
        .find(|a| a.action == "reply-failed")
        .expect("reply-failed in the audit log");
    assert!(
        failed.details.contains("5"),
        "the reason is kept: {}",
        failed.details
    );
    app.stop().await;
}

#[tokio::test]
async fn a_bounce_of_a_reply_joins_its_ticket_without_reopening_it() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let app = start(config(stack, &support, &db, stack.smtp_port, ""), &db).await;
    // A customer address in a test domain that Dovecot does not know:
    // Postfix accepts the reply, LMTP refuses it, and Postfix mails a
    // delivery report back to the shared address.
    let ghost = format!("ghost-{}@example.com", std::process::id());
    let (ticket, reply_id) =
        open_and_answer(stack, &support, &app, &ghost, "g1@example.com", "Ghost").await;
    let store = app.store.clone();
    let bounce = wait_for("the bounce to join the ticket", WAIT, || {
        let store = store.clone();
        async move {
            store.emails(ticket).await.unwrap().into_iter().find(|e| {
                e.direction == Direction::Inbound
                    && e.from.address.local().eq_ignore_ascii_case("mailer-daemon")
            })
        }
    })
    .await;
    // The reply itself went out (Postfix took it); the bounce came after.
    let reply = app.store.outgoing(reply_id).await.unwrap().unwrap();
    assert_eq!(reply.state, EmailState::Sent);
    assert_eq!(
        ticket_count(app.store.as_ref()).await,
        1,
        "the bounce opened a ticket"
    );
    let log = app.store.audit_log(ticket).await.unwrap();
    assert!(log.iter().any(|a| a.action == "automatic-mail"), "{log:?}");
    assert!(!log.iter().any(|a| a.action == "reopen"), "{log:?}");
    assert!(
        bounce.subject.to_ascii_lowercase().contains("undeliver"),
        "{}",
        bounce.subject
    );
    app.stop().await;
}

#[tokio::test]
async fn the_same_mail_twice_is_imported_once_and_a_reused_message_id_is_kept() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let app = start(config(stack, &support, &db, stack.smtp_port, ""), &db).await;
    let original = customer_mail(
        "carol@customer.example",
        &support.address,
        "dup@customer.example",
        "Twice",
        "Same mail.",
        None,
    );
    append(stack, &support, "INBOX", &original).await;
    // A second delivery of the same mail: extra trace headers, same content.
    let mut redelivered = b"Received: from mx2.customer.example by mail.example.com; Mon, 23 Nov 2026 10:00:05 +0000\r\nDelivered-To: support@example.com\r\n".to_vec();
    redelivered.extend_from_slice(&original);
    append(stack, &support, "INBOX", &redelivered).await;
    // A broken sender reusing the Message-ID for a different mail.
    Writer::new(stack, &support, "erin@broken.example")
        .writes("dup@customer.example", "Other", "Different mail, same id.")
        .await;
    // Barrier.
    Writer::new(stack, &support, "z@last.example")
        .writes("last@last.example", "Last", "Barrier.")
        .await;
    wait_tickets(app.store.as_ref(), 3).await;
    let store = app.store.clone();
    wait_for("the barrier mail", WAIT, || {
        let store = store.clone();
        async move {
            let all = store.list_tickets(&TicketFilter::default()).await.unwrap();
            all.iter().any(|t| t.subject == "Last").then_some(())
        }
    })
    .await;
    let subjects: Vec<String> = app
        .store
        .list_tickets(&TicketFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.subject)
        .collect();
    assert_eq!(
        subjects,
        vec!["Last", "Other", "Twice"],
        "redelivery imported once, reused id kept"
    );
    assert_eq!(
        app.store
            .checkpoint(&mailroom::domain::ids::MailboxName::parse("support").unwrap())
            .await
            .unwrap()
            .unwrap()
            .last_uid,
        4
    );
    app.stop().await;
}

#[tokio::test]
async fn a_uidvalidity_change_rescans_without_duplicates() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let settings = config(stack, &support, &db, stack.smtp_port, "");
    Writer::new(stack, &support, "a@one.example")
        .writes("uv1@one.example", "One", "1")
        .await;
    // No Message-ID at all: the synthesised id must be stable across the rescan.
    append(stack, &support, "INBOX", b"From: b@two.example\r\nTo: support@example.com\r\nSubject: No id\r\n\r\nI have no Message-ID.\r\n").await;
    let app = start(settings.clone(), &db).await;
    wait_tickets(app.store.as_ref(), 2).await;
    app.stop().await;

    // Pretend the server renumbered the folder: the checkpoint's UIDVALIDITY no longer matches.
    let mb = mailroom::domain::ids::MailboxName::parse("support").unwrap();
    let store = db.store().await;
    let cp = store.checkpoint(&mb).await.unwrap().unwrap();
    store
        .save_checkpoint(
            &mb,
            mailroom::domain::mailbox::Checkpoint {
                uid_validity: cp.uid_validity.wrapping_add(1),
                last_uid: 999,
            },
            0,
        )
        .await
        .unwrap();
    store.close().await;

    let app = start(settings, &db).await;
    Writer::new(stack, &support, "c@three.example")
        .writes("uv3@three.example", "Three", "3")
        .await;
    wait_tickets(app.store.as_ref(), 3).await;
    let store = app.store.clone();
    wait_for("the checkpoint back on the real UIDVALIDITY", WAIT, || {
        let store = store.clone();
        let mb = mb.clone();
        async move {
            (store.checkpoint(&mb).await.unwrap().unwrap().uid_validity == cp.uid_validity)
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        ticket_count(app.store.as_ref()).await,
        3,
        "the rescan imported nothing twice"
    );
    let no_id = app
        .store
        .list_tickets(&TicketFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.subject == "No id")
        .unwrap();
    let emails = app.store.emails(no_id.id).await.unwrap();
    assert_eq!(emails.len(), 1);
    assert!(
        emails[0].message_id.as_str().ends_with("@mailroom.invalid"),
        "{}",
        emails[0].message_id
    );
    app.stop().await;
}

#[tokio::test]
async fn first_start_new_only_skips_old_mail_and_polling_works_without_idle() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let mut settings = config(stack, &support, &db, stack.smtp_port, "");
    settings.mailboxes[0].initial_sync = mailroom::mail::settings::InitialSync::NewOnly;
    settings.mailboxes[0].imap.idle = false;
    settings.mailboxes[0].imap.poll_interval = Duration::from_millis(300);
    Writer::new(stack, &support, "old@x.example")
        .writes("old@x.example", "Old", "Before the first start.")
        .await;
    let app = start(settings, &db).await;
    first_checkpoint(app.store.as_ref()).await;
    Writer::new(stack, &support, "new@x.example")
        .writes("new@x.example", "New", "After.")
        .await;
    wait_tickets(app.store.as_ref(), 1).await;
    let t = app
        .store
        .list_tickets(&TicketFilter::default())
        .await
        .unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].subject, "New");
    app.stop().await;
}

#[tokio::test]
async fn first_start_since_a_day_imports_from_that_day() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let mut settings = config(stack, &support, &db, stack.smtp_port, "");
    // APPENDed mail gets today's internal date: a day in the future imports
    // nothing old, yesterday imports everything.
    let today = jiff::Zoned::now().date();
    settings.mailboxes[0].initial_sync =
        mailroom::mail::settings::InitialSync::Since(today.yesterday().unwrap());
    Writer::new(stack, &support, "a@x.example")
        .writes("s1@x.example", "Recent", "Today.")
        .await;
    let app = start(settings.clone(), &db).await;
    wait_tickets(app.store.as_ref(), 1).await;
    app.stop().await;

    let support2 = stack.user("support", "example.com");
    let db2 = TestDb::sqlite();
    let mut later = config(stack, &support2, &db2, stack.smtp_port, "");
    later.mailboxes[0].initial_sync =
        mailroom::mail::settings::InitialSync::Since(today.tomorrow().unwrap());
    Writer::new(stack, &support2, "a@x.example")
        .writes("s2@x.example", "Too old", "Today.")
        .await;
    let app = start(later, &db2).await;
    first_checkpoint(app.store.as_ref()).await;
    assert_eq!(ticket_count(app.store.as_ref()).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn ingest_and_send_work_over_implicit_tls_and_starttls() {
    let stack = Stack::get();
    for (imap_tls, imap_port, smtp_tls, smtp_port) in [
        (
            mailroom::mail::settings::TlsMode::Implicit,
            stack.imaps_port,
            mailroom::mail::settings::TlsMode::StartTls,
            stack.smtp_port,
        ),
        (
            mailroom::mail::settings::TlsMode::StartTls,
            stack.imap_port,
            mailroom::mail::settings::TlsMode::Implicit,
            stack.smtps_port,
        ),
    ] {
        let support = stack.user("support", "example.com");
        let customer = stack.user("customer", "example.net");
        let db = TestDb::sqlite();
        let mut settings = config(stack, &support, &db, smtp_port, "");
        let m = &mut settings.mailboxes[0];
        m.imap.tls = imap_tls;
        m.imap.port = imap_port;
        m.imap.host = "localhost".into();
        m.imap.ca_file = Some(stack.ca.clone());
        m.smtp.tls = smtp_tls;
        m.smtp.host = "localhost".into();
        m.smtp.ca_file = Some(stack.ca.clone());
        let app = start(settings, &db).await;
        Writer::new(stack, &support, &customer.address)
            .writes(
                &format!("tls-{}@example.net", crate::common::random_hex(4)),
                "TLS",
                "Over TLS.",
            )
            .await;
        wait_tickets(app.store.as_ref(), 1).await;
        let ticket = first_ticket(app.store.as_ref()).await;
        queue_reply(
            &app.app,
            reply_request(ticket, "@alice:example.com", None, "Encrypted all the way."),
        )
        .await
        .unwrap();
        wait_for(&format!("the reply over {smtp_tls:?}"), WAIT, || async {
            (!fetch_all(stack, &customer, "INBOX").await.is_empty()).then_some(())
        })
        .await;
        app.stop().await;
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let (stack, support) = support_mailbox();
    let mut settings = stack.imap_settings(&support, "INBOX");
    settings.tls = mailroom::mail::settings::TlsMode::Implicit;
    settings.port = stack.imaps_port;
    settings.host = "localhost".into();
    // No ca_file: the test CA is not trusted.
    mailroom::mail::tls::install_crypto_provider();
    let err = match mailroom::mail::imap::connect_password(&settings).await {
        Ok(_) => panic!("connected without trusting the CA"),
        Err(e) => e,
    };
    assert!(
        matches!(err, mailroom::mail::imap::ImapError::Tls { .. }),
        "{err}"
    );
    assert!(!err.is_transient());
}

/// Mail arriving while ingest moves between its sync and IDLE must not wait
/// for the IDLE timeout (10 minutes here): bursts from several senders, right
/// from the start, all arrive within seconds.
#[tokio::test]
async fn bursts_of_mail_around_idle_transitions_are_picked_up_promptly() {
    let (stack, support) = support_mailbox();
    let db = TestDb::sqlite();
    let app = start(config(stack, &support, &db, stack.smtp_port, ""), &db).await;
    let mut senders = Vec::new();
    for s in 0..3 {
        let support = support.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..10 {
                let id = format!("burst-{s}-{i}@x.example");
                Writer::new(Stack::get(), &support, &format!("c{s}{i}@x.example"))
                    .writes(&id, &format!("Burst {s}-{i}"), "hi")
                    .await;
                tokio::time::sleep(Duration::from_millis(37 * (s + 1) as u64)).await;
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let store = app.store.clone();
    wait_for(
        "30 tickets within 15 s of the last append",
        Duration::from_secs(15),
        || {
            let store = store.clone();
            async move { (ticket_count(store.as_ref()).await == 30).then_some(()) }
        },
    )
    .await;
    app.stop().await;
}
