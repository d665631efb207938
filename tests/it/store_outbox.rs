//! The outbox's crash recovery and settlement part of the store conformance
//! suite (run on both databases by `store_conformance`'s macro).

use std::collections::BTreeSet;
use std::sync::Arc;

use mailroom::domain::chat::{ChatThread, Platform};
use mailroom::domain::email::{ContentHash, Party};
use mailroom::domain::ids::{Actor, MessageId};
use mailroom::domain::threading::ThreadKeys;
use mailroom::store::sql::SqlStore;
use mailroom::store::*;

use crate::common::audit_actions;
use crate::store_conformance::{addr, agent, mb, new_ticket};

pub async fn crash_recovery_never_resends(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let t = new_ticket(s, "crash@x", 1).await;
    let email_id = s
        .queue_reply(NewReply {
            ticket: t,
            mailbox: mb(),
            author: agent("@alice:x"),
            message_id: MessageId::parse("r1@example.com").unwrap(),
            content_hash: ContentHash::from_stored("r".into()),
            from: Party::new(
                Some("Alice via Support".into()),
                addr("support@example.com"),
            ),
            subject: "Re: Invoice 42".into(),
            raw: b"Message-ID: <r1@example.com>\r\n\r\nhi\r\n".to_vec(),
            send_at_ms: 0,
            now_ms: 0,
        })
        .await
        .unwrap();
    let out = s.outgoing(email_id).await.unwrap().unwrap();
    assert_eq!(out.state, EmailState::Queued);
    assert_eq!(out.answers, Some(MessageId::parse("crash@x").unwrap()));
    // A bounce returning this reply finds its ticket.
    let bounce = ThreadKeys {
        from: addr("mailer-daemon@mx.example"),
        in_reply_to: vec![],
        references: vec![],
        tokens: vec![],
        subject: "Undelivered Mail Returned to Sender".into(),
        at: 1,
        returned: Some(MessageId::parse("r1@example.com").unwrap()),
    };
    let found = s.thread_candidates(&mb(), &bounce).await.unwrap();
    assert_eq!(found.by_returned, Some(t));
    // Take both the chat post and the send, then "crash".
    let j1 = s.next_job(1).await.unwrap().unwrap();
    let j2 = s.next_job(1).await.unwrap().unwrap();
    let kinds: BTreeSet<&str> = [j1.spec.kind(), j2.spec.kind()].into();
    assert_eq!(kinds, BTreeSet::from(["chat_post", "send_reply"]));
    let recovered = s.recover_in_flight(2).await.unwrap();
    assert_eq!(recovered.len(), 2);
    // The chat post is pending again; the send stays in flight for the caller to mark uncertain.
    let pending = s.jobs(&[JobState::Pending]).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].spec.kind(), "chat_post");
    // Its post may have gone through unanswered: it looks before posting.
    assert!(pending[0].maybe_done, "{:?}", pending[0]);
    let send = recovered
        .iter()
        .find(|j| j.spec.kind() == "send_reply")
        .unwrap();
    s.reply_failed(
        send,
        email_id,
        EmailState::Uncertain,
        "interrupted",
        &[Platform::Matrix],
        3,
    )
    .await
    .unwrap();
    assert_eq!(
        s.outgoing(email_id).await.unwrap().unwrap().state,
        EmailState::Uncertain
    );
    assert_eq!(s.jobs(&[JobState::Uncertain]).await.unwrap().len(), 1);
    // Recorded again (the outbox retries when the first answer was lost):
    // nothing changes — no second audit line, no second notice.
    let jobs_before = s.jobs(&[]).await.unwrap().len();
    s.reply_failed(
        send,
        email_id,
        EmailState::Uncertain,
        "interrupted",
        &[Platform::Matrix],
        4,
    )
    .await
    .unwrap();
    assert_eq!(s.jobs(&[]).await.unwrap().len(), jobs_before);
    let uncertain_lines = s
        .audit_log(t)
        .await
        .unwrap()
        .iter()
        .filter(|a| a.action == "reply-uncertain")
        .count();
    assert_eq!(uncertain_lines, 1);
    let actions = audit_actions(s, t).await;
    assert!(
        actions.contains(&"reply-uncertain".to_owned()),
        "{actions:?}"
    );
    assert!(
        s.jobs(&[JobState::Pending])
            .await
            .unwrap()
            .iter()
            .any(|j| j.spec.kind() == "chat_notice")
    );
}

/// A settled chat post leaves its thread, its follow-on jobs and its audit
/// line in one go, once; a failed job is queued again only by an explicit
/// retry, never a reply.
pub async fn settled_jobs_leave_their_work_behind_once_and_retries_requeue(s: Arc<SqlStore>) {
    let ticket = new_ticket(&*s, "settle@customer.example", 31).await;
    // The ingest queued the post to Matrix.
    let post = s.next_job(10).await.unwrap().unwrap();
    assert!(matches!(post.spec, JobSpec::ChatPost { .. }), "{post:?}");
    let thread = ChatThread {
        platform: Platform::Matrix,
        room: "!room:localhost".into(),
        thread_ref: "$root".into(),
    };
    let email_id = match post.spec {
        JobSpec::ChatPost { email_id, .. } => email_id,
        _ => unreachable!(),
    };
    let mut settlement = Settlement::new(JobOutcome::Done);
    settlement.thread = Some(thread.clone());
    settlement.follow_ons = vec![
        JobSpec::ChatNotice {
            platform: Platform::Matrix,
            text: "shown as plain text".into(),
        },
        JobSpec::ChatFile {
            platform: Platform::Matrix,
            email_id,
            part: FilePart::Attachment { index: 0 },
        },
    ];
    settlement.audit = Some(("chat-post-degraded", "plain".into()));
    s.settle_job(&post, &settlement, 20).await.unwrap();
    // Written again after a lost answer: nothing doubles.
    s.settle_job(&post, &settlement, 21).await.unwrap();
    assert_eq!(
        s.chat_thread(ticket, Platform::Matrix).await.unwrap(),
        Some(thread)
    );
    let pending = s.jobs(&[JobState::Pending]).await.unwrap();
    assert_eq!(
        pending.iter().map(|j| j.spec.clone()).collect::<Vec<_>>(),
        settlement.follow_ons,
        "queued once, in order"
    );
    assert!(
        pending
            .iter()
            .all(|j| j.ticket == Some(ticket) && j.not_before_ms == 20)
    );
    let audit = s.audit_log(ticket).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == "chat-post-degraded")
            .count(),
        1
    );

    // The notice fails for good; a retry queues it again, due now, attempts reset.
    let notice = s.next_job(30).await.unwrap().unwrap();
    assert!(matches!(notice.spec, JobSpec::ChatNotice { .. }));
    let failed = Settlement::new(JobOutcome::Failed {
        error: "refused".into(),
    });
    s.settle_job(&notice, &failed, 31).await.unwrap();
    let file = s.next_job(32).await.unwrap().unwrap();
    assert!(
        matches!(file.spec, JobSpec::ChatFile { .. }),
        "the lane moved on"
    );
    let retry = Settlement::new(JobOutcome::Retry {
        at_ms: 500,
        error: "busy".into(),
    });
    s.settle_job(&file, &retry, 33).await.unwrap();
    assert_eq!(
        s.requeue_job(file.id, &Actor::Agent(agent("@ops:x")), 40)
            .await
            .unwrap(),
        Requeued::NotFailed(JobState::Pending)
    );
    assert_eq!(
        s.requeue_job(9_999, &Actor::System, 40).await.unwrap(),
        Requeued::NoSuchJob
    );
    let Requeued::Queued(again) = s
        .requeue_job(notice.id, &Actor::Agent(agent("@ops:x")), 41)
        .await
        .unwrap()
    else {
        panic!("a failed notice is queued again");
    };
    assert_eq!(
        (again.state, again.attempts, again.not_before_ms),
        (JobState::Pending, 0, 41)
    );
    assert_eq!(
        s.requeue_job(notice.id, &Actor::System, 42).await.unwrap(),
        Requeued::NotFailed(JobState::Pending),
        "only once"
    );
    // It runs before the file again: it is earlier in the lane.
    let next = s.next_job(45).await.unwrap().unwrap();
    assert_eq!(next.id, notice.id);
    let audit = s.audit_log(ticket).await.unwrap();
    let retried: Vec<_> = audit.iter().filter(|a| a.action == "job-retried").collect();
    assert_eq!(retried.len(), 1);
    assert!(retried[0].details.contains("refused"), "{:?}", retried[0]);

    // A failed reply is never queued again from the outbox.
    let reply = s
        .enqueue(Some(ticket), &JobSpec::SendReply { email_id }, 50, 50)
        .await
        .unwrap();
    let s2 = s.clone();
    let job = loop {
        let j = s2.next_job(60).await.unwrap().unwrap();
        if j.id == reply {
            break j;
        }
        s2.settle_job(&j, &Settlement::new(JobOutcome::Done), 60)
            .await
            .unwrap();
    };
    s.settle_job(
        &job,
        &Settlement::new(JobOutcome::Failed {
            error: "550".into(),
        }),
        61,
    )
    .await
    .unwrap();
    assert_eq!(
        s.requeue_job(reply, &Actor::System, 62).await.unwrap(),
        Requeued::Reply
    );
}
