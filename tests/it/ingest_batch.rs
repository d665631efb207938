//! A fetch batch is stored with its look-ups read for the whole batch at
//! once (`IngestBatch::prefetch`); an answer read that way is used only
//! while nothing the batch wrote could have changed it. Checked here by
//! difference, on SQLite and PostgreSQL: the same mail stored as one batch
//! and one email at a time (no prefetch) gives the same tickets, the same
//! threading and the same duplicates, with mail chosen so that each kind of
//! write inside the batch matters to a later email of it.

use std::sync::Arc;

use mailroom::bridge::App;
use mailroom::bridge::ingest::MailboxIngest;
use mailroom::config::Settings;
use mailroom::domain::ids::MailboxName;
use mailroom::domain::mailbox::Checkpoint;
use mailroom::store::*;

use crate::common::TestDb;

const SUPPORT: &str = "support@example.com";

fn mail(from: &str, id: &str, subject: &str, parent: Option<&str>, cc: Option<&str>) -> Vec<u8> {
    let mut m = format!(
        "From: <{from}>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    );
    if let Some(p) = parent {
        m.push_str(&format!("In-Reply-To: <{p}>\r\nReferences: <{p}>\r\n"));
    }
    if let Some(cc) = cc {
        m.push_str(&format!("Cc: <{cc}>\r\n"));
    }
    m.push_str(&format!("\r\nAbout {subject}, as {from}.\r\n"));
    m.into_bytes()
}

/// Mail already stored before the batch: tickets the batch's mail refers to.
fn before() -> Vec<Vec<u8>> {
    vec![
        mail("alice@c.example", "old-a@c", "Invoice 7", None, None),
        mail("alice@c.example", "old-b@c", "Refund", None, None),
        mail("erin@c.example", "old-e@c", "Login broken", None, None),
    ]
}

/// The batch: every later email depends on something an earlier one of
/// the same batch wrote.
fn batch() -> Vec<Vec<u8>> {
    vec![
        // A new ticket, then its follow-up by reference in the same batch.
        mail("bob@c.example", "b1@c", "Shipping", None, None),
        mail("bob@c.example", "b2@c", "Re: Shipping", Some("b1@c"), None),
        // The same sender and subject again, no reference: by subject.
        mail("bob@c.example", "b3@c", "Shipping", None, None),
        // Exactly the same mail twice: the second is a duplicate.
        mail("carol@c.example", "c1@c", "Hello", None, None),
        mail("carol@c.example", "c1@c", "Hello", None, None),
        // The same Message-ID with other content: not a duplicate.
        mail("carol@c.example", "c1@c", "Hello again", None, None),
        // Follow-ups to tickets stored before, by reference and by subject;
        // then another sender's mail in alice's thread (a participant).
        mail(
            "alice@c.example",
            "a1@c",
            "Re: Invoice 7",
            Some("old-a@c"),
            None,
        ),
        mail("alice@c.example", "a2@c", "Refund", None, None),
        mail(
            "dave@c.example",
            "d1@c",
            "Re: Invoice 7",
            Some("a1@c"),
            Some("alice@c.example"),
        ),
        // Then alice again by subject only, after dave's follow-up moved
        // her ticket.
        mail("alice@c.example", "a3@c", "Invoice 7", None, None),
        // Untouched by anything before it: answered from the prefetch.
        mail("frank@c.example", "f1@c", "New order", None, None),
        mail(
            "erin@c.example",
            "e1@c",
            "Re: Login broken",
            Some("old-e@c"),
            None,
        ),
    ]
}

/// What a store holds after the mail: per email (in order of storing) its
/// Message-ID, subject and ticket; per ticket its subject and customer.
async fn outcome(store: &dyn TicketStore) -> (Vec<(String, String, i64)>, Vec<String>) {
    let mut tickets = store.list_tickets(&TicketFilter::default()).await.unwrap();
    tickets.sort_by_key(|t| t.id);
    let mut emails = Vec::new();
    let mut described = Vec::new();
    for t in &tickets {
        described.push(format!(
            "{} {} {} {:?}",
            t.id, t.subject, t.customer, t.state
        ));
        for e in store.emails(t.id).await.unwrap() {
            emails.push((
                e.id,
                e.message_id.to_string(),
                e.subject.clone(),
                t.id.get(),
            ));
        }
    }
    emails.sort();
    (
        emails.into_iter().map(|(_, m, s, t)| (m, s, t)).collect(),
        described,
    )
}

async fn store_mail(
    db: &TestDb,
    one_at_a_time: bool,
) -> (Vec<String>, Vec<(String, String, i64)>, Vec<String>) {
    let store: Arc<dyn TicketStore> = Arc::new(db.store().await);
    let text = format!(
        "[database]\nurl = \"{}\"\n[[mailbox]]\nname = \"support\"\naddress = \"{SUPPORT}\"\ndisplay_name = \"Support\"\n\
         [mailbox.imap]\nhost = \"127.0.0.1\"\npassword = \"x\"\n[mailbox.smtp]\nhost = \"127.0.0.1\"\n",
        db.url_text
    );
    let settings = Settings::parse(&text, &|_| None).unwrap_or_else(|p| panic!("{p:?}"));
    let app = Arc::new(App::new(settings, store.clone(), Vec::new()));
    let sink = MailboxIngest::new(app, MailboxName::parse("support").unwrap());
    let cp = |uid: usize| {
        Some(Checkpoint {
            uid_validity: 1,
            last_uid: uid as u32,
        })
    };
    let first: Vec<_> = before()
        .into_iter()
        .enumerate()
        .map(|(i, m)| (m, cp(i + 1)))
        .collect();
    sink.ingest_many(first).await.unwrap();
    let mails: Vec<_> = batch()
        .into_iter()
        .enumerate()
        .map(|(i, m)| (m, cp(i + 10)))
        .collect();
    let mut recorded = Vec::new();
    if one_at_a_time {
        for m in mails {
            recorded.extend(sink.ingest_many(vec![m]).await.unwrap());
        }
    } else {
        recorded = sink.ingest_many(mails).await.unwrap();
    }
    let recorded = recorded
        .iter()
        .map(|r| match r {
            Recorded::Duplicate => "duplicate".to_owned(),
            Recorded::NewTicket { ticket, .. } => format!("new {ticket}"),
            Recorded::FollowUp {
                ticket, reopened, ..
            } => format!("follow-up {ticket} reopened={reopened}"),
        })
        .collect();
    let (emails, tickets) = outcome(store.as_ref()).await;
    (recorded, emails, tickets)
}

async fn batch_equals_one_at_a_time(one: TestDb, other: TestDb) {
    let alone = store_mail(&one, true).await;
    let batched = store_mail(&other, false).await;
    assert_eq!(batched.0, alone.0, "what each email became");
    assert_eq!(batched.1, alone.1, "emails and their tickets");
    assert_eq!(batched.2, alone.2, "tickets");
    // The mail above exercises threading inside the batch; a sanity check
    // that it did.
    assert!(alone.0.iter().any(|r| r == "duplicate"), "{:?}", alone.0);
    assert!(
        alone
            .0
            .iter()
            .filter(|r| r.starts_with("follow-up"))
            .count()
            >= 5,
        "{:?}",
        alone.0
    );
    one.cleanup().await;
    other.cleanup().await;
}

#[tokio::test]
async fn a_batch_threads_its_mail_as_one_email_at_a_time_does_sqlite() {
    batch_equals_one_at_a_time(TestDb::sqlite(), TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_batch_threads_its_mail_as_one_email_at_a_time_does_postgres() {
    batch_equals_one_at_a_time(TestDb::postgres().await, TestDb::postgres().await).await;
}

/// Every row an ingest writes, as text, in the order written: tickets,
/// emails, audit lines, SLA rows, participants and outbox jobs with
/// their lanes.
async fn rows(store: &mailroom::store::sql::SqlStore) -> Vec<String> {
    use sqlx::Row;
    let queries = [
        "SELECT 'ticket ' || id || ' ' || token || ' ' || status || ' ' || last_customer_at AS r FROM tickets ORDER BY id",
        "SELECT 'email ' || id || ' ' || ticket_id || ' ' || message_id || ' ' || raw_size || ' ' || COALESCE(imap_uid, -1) AS r FROM emails ORDER BY id",
        "SELECT 'audit ' || id || ' ' || ticket_id || ' ' || actor || ' ' || action || ' ' || details || ' ' || at AS r FROM audit_log ORDER BY id",
        "SELECT 'sla ' || ticket_id || ' ' || COALESCE(awaiting_since, -1) AS r FROM sla_tickets ORDER BY ticket_id",
        "SELECT 'participant ' || ticket_id || ' ' || address AS r FROM participants ORDER BY ticket_id, address",
        "SELECT 'job ' || id || ' ' || lane || ' ' || kind || ' ' || ticket_id || ' ' || payload || ' ' || state AS r FROM outbox ORDER BY id",
    ];
    let mut out = Vec::new();
    for q in queries {
        for row in sqlx::query(q).fetch_all(store.pool()).await.unwrap() {
            out.push(row.get::<String, _>("r"));
        }
    }
    out
}

/// The tickets the mail below follows up: one with a thread in `!r1`, one
/// whose root waits in `!r2`'s lane, one claimed (its customer's mail
/// reopens it), one snoozed (its customer's mail wakes it).
async fn before_the_batch(s: &dyn TicketStore) -> [mailroom::domain::ids::TicketId; 4] {
    use crate::store_conformance::{agent, inbound, token};
    use mailroom::domain::chat::{ChatThread, Platform};
    use mailroom::domain::ids::Actor;
    use mailroom::domain::ticket::TicketEvent;
    let mut ids = Vec::new();
    for (n, room) in [(1u8, "!r1"), (2, "!r2"), (3, "!r3"), (4, "!r4")] {
        let mut new = inbound(
            &format!("root{n}@x"),
            &format!("root{n}"),
            &format!("c{n}@customer.example"),
            Destination::New { token: token(n) },
            None,
        );
        new.rooms.insert(Platform::Matrix, room.to_owned());
        let Recorded::NewTicket { ticket, .. } = s.record_inbound(new).await.unwrap() else {
            panic!("a new ticket");
        };
        ids.push(ticket);
    }
    // The first root is posted: its ticket has a thread in !r1.
    let job = s.next_job(10).await.unwrap().unwrap();
    assert_eq!(job.ticket, Some(ids[0]));
    let mut settled = Settlement::new(JobOutcome::Done);
    settled.thread = Some(ChatThread {
        platform: Platform::Matrix,
        room: "!r1".into(),
        thread_ref: "$root1".into(),
    });
    s.settle_job(&job, &settled, 11).await.unwrap();
    let alice = Actor::Agent(agent("@alice:x"));
    s.apply(
        ids[2],
        &alice,
        &TicketEvent::Claim(agent("@alice:x")),
        &[],
        12,
    )
    .await
    .unwrap();
    let snooze = mailroom::domain::snooze::Snooze {
        until: mailroom::domain::snooze::SnoozeUntil::Time(
            jiff::Timestamp::from_millisecond(86_400_000).unwrap(),
        ),
        by: agent("@alice:x"),
    };
    s.snooze(ids[3], &snooze, "until tomorrow", 13)
        .await
        .unwrap();
    [ids[0], ids[1], ids[2], ids[3]]
}

/// The mail of [`waiting_rows_are_the_rows_of_one_email_at_a_time`]: new
/// tickets (one to a room of a rule, one automatic), follow-ups to a
/// threaded ticket, to one whose root waits, and one that reopens.
fn mixed(t: [mailroom::domain::ids::TicketId; 4]) -> Vec<NewInbound> {
    use crate::store_conformance::{addr, inbound, token};
    use mailroom::domain::chat::Platform;
    let follow = |n: u8, ticket, who: &str| {
        let mut m = inbound(
            &format!("f{n}@x"),
            &format!("f{n}"),
            who,
            Destination::FollowUp {
                ticket,
                matched_by: "in-reply-to",
            },
            None,
        );
        m.email
            .participants
            .push(addr(&format!("cc{n}@customer.example")));
        m.now_ms = 100 + i64::from(n);
        m
    };
    let fresh = |n: u8| {
        let mut m = inbound(
            &format!("n{n}@x"),
            &format!("n{n}"),
            &format!("new{n}@customer.example"),
            Destination::New {
                token: token(100 + n),
            },
            None,
        );
        m.now_ms = 200 + i64::from(n);
        m
    };
    let mut with_room = fresh(1);
    with_room.rooms.insert(Platform::Matrix, "!r9".into());
    let mut automatic = fresh(3);
    automatic.automatic = Some("auto-reply");
    let mut last = follow(6, t[1], "c2@customer.example");
    last.checkpoint = Some(Checkpoint {
        uid_validity: 1,
        last_uid: 77,
    });
    vec![
        with_room,
        follow(1, t[0], "c1@customer.example"),
        follow(2, t[1], "c2@customer.example"),
        fresh(2),
        follow(3, t[2], "c3@customer.example"),
        follow(4, t[0], "c1@customer.example"),
        automatic,
        fresh(4),
        follow(5, t[0], "someone@customer.example"),
        follow(7, t[3], "c4@customer.example"),
        follow(8, t[1], "c2@customer.example"),
        last,
    ]
}

/// The batch's rows waiting for its commit come out as the rows written
/// one email at a time (`TicketStore::record_inbound`, nothing waiting):
/// the same ids, audit lines in the same order, SLA rows, participants and
/// chat jobs in the same lanes (a follow-up's in its ticket's thread's
/// room, or behind its ticket's waiting root).
async fn waiting_rows_are_the_rows_of_one_email_at_a_time(one: TestDb, other: TestDb) {
    let alone = one.store().await;
    let t = before_the_batch(&alone).await;
    for new in mixed(t) {
        alone.record_inbound(new).await.unwrap();
    }
    let batched = other.store().await;
    let t2 = before_the_batch(&batched).await;
    assert_eq!(t, t2);
    let mail = mixed(t);
    let mut b = batched.begin_ingest().await.unwrap();
    let keys: Vec<_> = mail
        .iter()
        .map(|m| mailroom::domain::threading::ThreadKeys {
            from: m.email.from.address.clone(),
            in_reply_to: vec![],
            references: vec![],
            tokens: vec![],
            subject: m.email.subject.clone(),
            at: m.now_ms / 1000,
            returned: None,
        })
        .collect();
    let look: Vec<_> = mail
        .iter()
        .zip(&keys)
        .map(|(m, keys)| LookUpKey {
            keys,
            message_id: &m.email.message_id,
            content_hash: &m.email.content_hash,
            since_ms: 0,
        })
        .collect();
    b.prefetch(&mail[0].mailbox, &look).await.unwrap();
    let mut waited = 0;
    for (m, keys) in mail.iter().zip(&keys) {
        let looked = b
            .look_up(
                &m.mailbox,
                keys,
                (&m.email.message_id, &m.email.content_hash),
                0,
            )
            .await
            .unwrap();
        assert!(!looked.duplicate);
        if b.record_inbound(m.clone()).await.unwrap().is_none() {
            waited += 1;
        }
    }
    let recorded = b.commit().await.unwrap();
    assert_eq!(recorded.len(), mail.len());
    assert!(
        waited >= 4,
        "plain mail waits for the commit ({waited} of {} did)",
        mail.len()
    );
    let (a, b) = (rows(&alone).await, rows(&batched).await);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "a row written one email at a time, then in the batch");
    }
    assert_eq!(a.len(), b.len(), "{a:#?}\n{b:#?}");
    // The lanes are the point: check the follow-ups' by hand too.
    let lane_of = |id: &str| {
        let needle = format!("\"email_id\":{id}");
        b.iter()
            .find(|r| r.starts_with("job ") && r.contains(&needle))
            .map(|r| r.split(' ').nth(2).unwrap_or_default().to_owned())
    };
    let email_id = |mid: &str| {
        b.iter()
            .find(|r| r.starts_with("email ") && r.contains(&format!(" {mid} ")))
            .and_then(|r| r.split(' ').nth(1).map(str::to_owned))
            .unwrap_or_else(|| panic!("email {mid} stored"))
    };
    assert_eq!(
        lane_of(&email_id("f1@x")).as_deref(),
        Some("chat:matrix:!r1")
    );
    assert_eq!(
        lane_of(&email_id("f2@x")).as_deref(),
        Some("chat:matrix:!r2")
    );
    assert_eq!(
        lane_of(&email_id("n1@x")).as_deref(),
        Some("chat:matrix:!r9")
    );
    one.cleanup().await;
    other.cleanup().await;
}

#[tokio::test]
async fn a_batchs_rows_are_the_rows_of_one_email_at_a_time_sqlite() {
    waiting_rows_are_the_rows_of_one_email_at_a_time(TestDb::sqlite(), TestDb::sqlite()).await;
}

#[tokio::test]
async fn a_batchs_rows_are_the_rows_of_one_email_at_a_time_postgres() {
    waiting_rows_are_the_rows_of_one_email_at_a_time(
        TestDb::postgres().await,
        TestDb::postgres().await,
    )
    .await;
}
