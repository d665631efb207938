//! The store's side of replies written outside mailroom, on SQLite and on a
//! fresh PostgreSQL database: checkpoints per folder role, and what a batch
//! of Sent messages records.

use std::sync::Arc;

use mailroom::domain::chat::Platform;
use mailroom::domain::email::{ContentHash, Direction, Party};
use mailroom::domain::ids::{Actor, MessageId};
use mailroom::domain::mailbox::{Checkpoint, FolderRole};
use mailroom::domain::ticket::{Status, TicketEvent};
use mailroom::store::sql::SqlStore;
use mailroom::store::*;

use crate::store_conformance::{addr, mb, new_ticket};

fn sent(id: &str, answers: &[&str]) -> SentMail {
    SentMail {
        message_id: MessageId::parse(id).unwrap(),
        content_hash: ContentHash::from_stored(format!("h-{id}")),
        from: Party::new(Some("Example Support".into()), addr("support@example.com")),
        written_by: Party::new(Some("Alice".into()), addr("alice@example.com")),
        subject: "Re: Invoice 42".into(),
        sent_at: Some(1_700_000_100),
        referenced: answers
            .iter()
            .map(|a| MessageId::parse(a).unwrap())
            .collect(),
        recipients: vec![
            addr("carol@customer.example"),
            addr("finance@customer.example"),
        ],
        raw: format!("Message-ID: <{id}>\r\n\r\nreply\r\n").into_bytes(),
    }
}

fn batch(mails: Vec<SentMail>, last_uid: u32, now_ms: i64) -> SentBatch {
    SentBatch {
        mailbox: mb(),
        mails,
        checkpoint: Checkpoint {
            uid_validity: 9,
            last_uid,
        },
        post_to: vec![Platform::Matrix, Platform::Slack],
        now_ms,
    }
}

async fn sent_replies_thread_dedupe_and_count_as_a_reply(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    // Checkpoints per folder role, apart from each other.
    let inbox = Checkpoint {
        uid_validity: 7,
        last_uid: 3,
    };
    s.save_checkpoint(&mb(), inbox, 1).await.unwrap();
    assert_eq!(
        s.folder_checkpoint(&mb(), FolderRole::Sent).await.unwrap(),
        None
    );
    assert_eq!(
        s.folder_checkpoint(&mb(), FolderRole::Inbox).await.unwrap(),
        Some(inbox)
    );

    let t = new_ticket(s, "q@customer.example", 1).await;
    let before = s.jobs(&[]).await.unwrap().len();
    let got = s
        .record_sent(batch(
            vec![
                sent("out1@example.com", &["q@customer.example"]),
                sent("stray@example.com", &["unknown@elsewhere.example"]),
                // Answers the reply just stored, in the same batch.
                sent("out2@example.com", &["out1@example.com"]),
            ],
            12,
            50,
        ))
        .await
        .unwrap();
    let SentRecorded::Reply {
        ticket,
        email_id,
        now_pending: true,
    } = got[0]
    else {
        panic!("{got:?}")
    };
    assert_eq!(ticket, t);
    assert_eq!(got[1], SentRecorded::Unthreaded);
    assert!(
        matches!(got[2], SentRecorded::Reply { ticket, now_pending: false, .. } if ticket == t),
        "{got:?}"
    );
    assert_eq!(
        s.folder_checkpoint(&mb(), FolderRole::Sent).await.unwrap(),
        Some(Checkpoint {
            uid_validity: 9,
            last_uid: 12
        })
    );
    assert_eq!(
        s.checkpoint(&mb()).await.unwrap(),
        Some(inbox),
        "INBOX's untouched"
    );

    let record = s.ticket(t).await.unwrap().unwrap();
    assert_eq!(record.state.status(), Status::Pending);
    assert_eq!(record.first_response_at_ms, Some(50));
    let emails = s.emails(t).await.unwrap();
    let out: Vec<_> = emails
        .iter()
        .filter(|e| e.direction == Direction::Outbound)
        .collect();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].id, email_id);
    assert_eq!(out[0].state, EmailState::Sent);
    assert_eq!(out[0].author, None);
    let log = s.audit_log(t).await.unwrap();
    let outside: Vec<_> = log
        .iter()
        .filter(|e| e.action == "replied-outside-mailroom")
        .collect();
    assert_eq!(outside.len(), 2);
    assert_eq!(outside[0].actor, Actor::Mailbox(addr("alice@example.com")));
    assert!(log.iter().any(|e| e.action == "pending"));
    // A post per platform per reply, and one status refresh per platform.
    let jobs = s.jobs(&[]).await.unwrap();
    let new: Vec<&Job> = jobs.iter().skip(before).collect();
    let posts = new
        .iter()
        .filter(|j| matches!(j.spec, JobSpec::ChatSentReply { .. }))
        .count();
    let status = new
        .iter()
        .filter(|j| matches!(j.spec, JobSpec::ChatStatus { .. }))
        .count();
    assert_eq!((posts, status), (4, 2), "{new:?}");

    // Seen again (a restart, a rescan after a UIDVALIDITY change): nothing.
    let again = s
        .record_sent(batch(
            vec![
                sent("out1@example.com", &["q@customer.example"]),
                sent("out2@example.com", &["out1@example.com"]),
            ],
            2,
            60,
        ))
        .await
        .unwrap();
    assert_eq!(again, vec![SentRecorded::Known, SentRecorded::Known]);
    assert_eq!(s.jobs(&[]).await.unwrap().len(), jobs.len());
    assert_eq!(
        s.ticket(t).await.unwrap().unwrap().first_response_at_ms,
        Some(50)
    );

    // The customer answering the outside reply threads to the ticket.
    let keys = mailroom::domain::threading::ThreadKeys {
        from: addr("carol@customer.example"),
        in_reply_to: vec![MessageId::parse("out1@example.com").unwrap()],
        references: vec![],
        tokens: vec![],
        subject: "Re: Invoice 42".into(),
        at: 1,
        returned: None,
    };
    let found = s.thread_candidates(&mb(), &keys).await.unwrap();
    assert_eq!(
        found.by_reference.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![t]
    );

    // A closed ticket stays closed; a `!reply` sent sets no second first response.
    s.apply(t, &Actor::System, &TicketEvent::Close, &[], 70)
        .await
        .unwrap();
    let late = s
        .record_sent(batch(
            vec![sent("out3@example.com", &["q@customer.example"])],
            13,
            80,
        ))
        .await
        .unwrap();
    assert!(matches!(
        late[0],
        SentRecorded::Reply {
            now_pending: false,
            ..
        }
    ));
    let record = s.ticket(t).await.unwrap().unwrap();
    assert_eq!(record.state.status(), Status::Closed);
    assert_eq!(record.first_response_at_ms, Some(50));
}

#[tokio::test]
async fn sqlite() {
    let db = crate::common::TestDb::sqlite();
    sent_replies_thread_dedupe_and_count_as_a_reply(Arc::new(db.store().await)).await;
}

#[tokio::test]
async fn postgres() {
    let db = crate::common::TestDb::postgres().await;
    let s = Arc::new(db.store().await);
    sent_replies_thread_dedupe_and_count_as_a_reply(s.clone()).await;
    s.close().await;
    db.cleanup().await;
}
