//! Conformance checks for SLA clocks' facts and markers, on SQLite and
//! PostgreSQL: what waits since when (kept by ingest and replies), pauses
//! (kept by status changes), the once-only marks, and timers in lanes of
//! their own that never hold up a chat post.

use std::sync::Arc;

use mailroom::domain::chat::Platform;
use mailroom::domain::email::{ContentHash, Party};
use mailroom::domain::ids::{Actor, MessageId};
use mailroom::domain::ticket::TicketEvent;
use mailroom::store::sql::SqlStore;
use mailroom::store::*;

use crate::store_conformance::{addr, agent, inbound, mb, new_ticket};

/// The first mail waits; a second customer mail does not move the clock;
/// an answer stops it; the next customer mail starts a new one; pending
/// opens and a reopen closes a pause.
async fn facts_follow_mail_answers_and_status(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let t = new_ticket(s, "sla1@customer.example", 61).await;
    let rec = s.sla_record(t).await.unwrap();
    assert!(rec.tracked);
    assert_eq!(rec.awaiting_since_ms, Some(1), "the first mail's time");
    let follow_up = |id: &str, now: i64| {
        let mut new = inbound(
            id,
            id,
            "carol@customer.example",
            Destination::FollowUp {
                ticket: t,
                matched_by: "references",
            },
            None,
        );
        new.now_ms = now;
        new
    };
    s.record_inbound(follow_up("sla2@customer.example", 50))
        .await
        .unwrap();
    assert_eq!(
        s.sla_record(t).await.unwrap().awaiting_since_ms,
        Some(1),
        "still the first unanswered mail"
    );
    // An answer (a reply sent) stops it.
    let e = s
        .queue_reply(NewReply {
            ticket: t,
            mailbox: mb(),
            author: agent("@alice:x"),
            message_id: MessageId::parse("sla-r1@example.com").unwrap(),
            content_hash: ContentHash::from_stored("r1".into()),
            from: Party::new(None, addr("support@example.com")),
            subject: "Re: x".into(),
            raw: b"x".to_vec(),
            send_at_ms: 100,
            now_ms: 100,
        })
        .await
        .unwrap();
    let send = loop {
        let j = s.next_job(1_000).await.unwrap().unwrap();
        if matches!(j.spec, JobSpec::SendReply { .. }) {
            break j;
        }
        s.finish_job(&j, &JobOutcome::Done, 1_000).await.unwrap();
    };
    s.reply_sent(&send, e, &[], 200).await.unwrap();
    let rec = s.sla_record(t).await.unwrap();
    assert_eq!(rec.awaiting_since_ms, None);
    assert_eq!(
        s.ticket(t).await.unwrap().unwrap().first_response_at_ms,
        Some(200)
    );
    // The customer writes again: a new clock from that mail.
    s.record_inbound(follow_up("sla3@customer.example", 300))
        .await
        .unwrap();
    assert_eq!(s.sla_record(t).await.unwrap().awaiting_since_ms, Some(300));
    // Pending pauses; a reopen ends the pause.
    let alice = Actor::Agent(agent("@alice:x"));
    s.apply(t, &alice, &TicketEvent::MarkPending, &[], 400)
        .await
        .unwrap();
    assert_eq!(s.sla_record(t).await.unwrap().pauses, [(400, None)]);
    s.apply(t, &alice, &TicketEvent::Reopen, &[], 450)
        .await
        .unwrap();
    assert_eq!(s.sla_record(t).await.unwrap().pauses, [(400, Some(450))]);
    // A customer mail on a pending ticket reopens it and ends the pause.
    s.apply(t, &alice, &TicketEvent::MarkPending, &[], 500)
        .await
        .unwrap();
    s.record_inbound(follow_up("sla4@customer.example", 600))
        .await
        .unwrap();
    assert_eq!(
        s.sla_record(t).await.unwrap().pauses,
        [(400, Some(450)), (500, Some(600))]
    );
}

/// A timer due in hours never holds up a chat post; its check sets a
/// mark and queues its jobs once, however often it runs; a pending timer
/// for the same instant is not queued twice.
async fn timers_have_their_own_lanes_and_marks_hold_once(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let t = new_ticket(s, "sla-timer@customer.example", 62).await;
    let hours = 4 * 3_600_000;
    assert!(s.sla_schedule(t, hours, 10).await.unwrap());
    assert!(
        !s.sla_schedule(t, hours, 11).await.unwrap(),
        "already pending"
    );
    // The ticket's root post (queued by the ingest, after the timer was
    // not) and a notice queued after the timer both run now.
    let notice = JobSpec::ChatNotice {
        platform: Platform::Matrix,
        text: "hello".into(),
    };
    s.enqueue(Some(t), &notice, 20, 20).await.unwrap();
    let mut ran = Vec::new();
    while let Some(j) = s.next_job(1_000).await.unwrap() {
        ran.push(j.spec.kind());
        s.finish_job(&j, &JobOutcome::Done, 1_000).await.unwrap();
    }
    assert_eq!(ran, ["chat_post", "chat_notice"], "the timer is not due");
    let check = s.next_job(hours).await.unwrap().unwrap();
    assert_eq!(check.spec, JobSpec::SlaCheck { due_ms: hours });
    let firing = SlaFiring {
        mark: SlaMark::Nudge,
        clock_start_ms: 1,
        jobs: vec![JobSpec::ChatNotice {
            platform: Platform::Slack,
            text: "⏰ 1h left".into(),
        }],
    };
    let set = s
        .sla_settle(&check, &[firing.clone()], Some(hours * 2), hours)
        .await
        .unwrap();
    assert_eq!(set, [SlaMark::Nudge]);
    assert!(s.sla_record(t).await.unwrap().marked(1, SlaMark::Nudge));
    // Settled again (a lost answer): nothing more.
    let again = s
        .sla_settle(&check, &[firing.clone()], Some(hours * 2), hours)
        .await
        .unwrap();
    assert!(again.is_empty());
    // The next check for the same clock finds the mark set: no second nudge.
    let next = s.next_job(hours).await.unwrap().unwrap();
    assert_eq!(next.spec.kind(), "chat_notice");
    s.finish_job(&next, &JobOutcome::Done, hours).await.unwrap();
    assert!(s.next_job(hours).await.unwrap().is_none());
    let second = s.next_job(hours * 2).await.unwrap().unwrap();
    assert_eq!(second.spec, JobSpec::SlaCheck { due_ms: hours * 2 });
    let set = s
        .sla_settle(&second, &[firing], None, hours * 2)
        .await
        .unwrap();
    assert!(set.is_empty(), "once per clock");
    assert!(s.next_job(i64::MAX / 2).await.unwrap().is_none());
    let actions: Vec<String> = s
        .audit_log(t)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "sla-nudge").count(), 1);
}

conformance!(
    facts_follow_mail_answers_and_status,
    timers_have_their_own_lanes_and_marks_hold_once,
);
