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
