//! Conformance checks for snoozes and timers, on SQLite and PostgreSQL: a
//! snooze hides a ticket and queues its wake-up in a lane of its own; only
//! the current snooze's timer wakes it; a customer's mail wakes it inside
//! the ingest; a settlement's mark makes a timer say its piece once.

use std::sync::Arc;

use jiff::Timestamp;
use mailroom::domain::chat::Platform;
use mailroom::domain::ids::Actor;
use mailroom::domain::snooze::{Snooze, SnoozeUntil};
use mailroom::domain::ticket::{Status, TicketEvent};
use mailroom::store::sql::SqlStore;
use mailroom::store::*;

use crate::common::audit_actions;
use crate::store_conformance::{agent, inbound, new_ticket, token};

fn at(ms: i64) -> SnoozeUntil {
    SnoozeUntil::Time(Timestamp::from_millisecond(ms).unwrap())
}

fn by_alice(until: SnoozeUntil) -> Snooze {
    Snooze {
        until,
        by: agent("@alice:localhost"),
    }
}

const HOUR: i64 = 3_600_000;

async fn listed(s: &dyn TicketStore, snoozed: Option<bool>) -> usize {
    let f = TicketFilter {
        snoozed,
        ..TicketFilter::default()
    };
    s.list_tickets(&f).await.unwrap().len()
}

async fn pending(s: &dyn TicketStore) -> Vec<Job> {
    s.jobs(&[JobState::Pending]).await.unwrap()
}

/// A snooze hides the ticket, its timer waits in its own lane without
/// holding up chat posts, and only the current snooze's timer wakes it.
pub async fn a_snooze_hides_and_only_its_own_timer_wakes_it(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let t = new_ticket(s, "sleepy@x", 1).await;
    let other = new_ticket(s, "awake@x", 2).await;
    let now = 10 * HOUR;
    let due = now + 2 * HOUR;
    let set = s
        .snooze(t, &by_alice(at(due)), "until later", now)
        .await
        .unwrap();
    assert_eq!(set, SnoozeSet::Snoozed { replaced: None });
    let rec = s.ticket(t).await.unwrap().unwrap();
    assert_eq!(rec.snooze, Some(by_alice(at(due))));
    assert_eq!(rec.state.status(), Status::Open, "a snooze is not a status");
    // Out of the queue; in the snoozed list; both in the whole list.
    assert_eq!(listed(s, Some(false)).await, 1);
    assert_eq!(listed(s, Some(true)).await, 1);
    assert_eq!(listed(s, None).await, 2);
    let timer = pending(s)
        .await
        .into_iter()
        .find(|j| j.spec == JobSpec::SnoozeWake { due_ms: due })
        .expect("the wake-up timer is queued");
    assert_eq!((timer.ticket, timer.not_before_ms), (Some(t), due));
    assert_eq!(audit_actions(s, t).await, ["created", "snoozed"]);

    // A timer due hours ahead holds up nothing: the queued posts and a new
    // notice on the same platform are taken now, the timer is not.
    let notice = JobSpec::ChatNotice {
        platform: Platform::Matrix,
        text: "hello".into(),
    };
    s.enqueue(Some(other), &notice, now, now).await.unwrap();
    let mut taken = Vec::new();
    while let Some(job) = s.next_job(now).await.unwrap() {
        s.finish_job(&job, &JobOutcome::Done, now).await.unwrap();
        taken.push(job.spec);
    }
    assert!(taken.contains(&notice), "{taken:?}");
    assert!(!taken.contains(&timer.spec), "{taken:?}");
    let due_job = s.next_job(due).await.unwrap().expect("due at its time");
    assert_eq!(due_job.spec, timer.spec);
    s.finish_job(&due_job, &JobOutcome::Done, due)
        .await
        .unwrap();

    // Snoozed again, later: the first timer is now for nothing.
    let later = due + HOUR;
    let set = s
        .snooze(t, &by_alice(at(later)), "until even later", now)
        .await
        .unwrap();
    assert_eq!(
        set,
        SnoozeSet::Snoozed {
            replaced: Some(by_alice(at(due)))
        }
    );
    let mention = JobSpec::ChatMention {
        platform: Platform::Matrix,
        text: "⏰ back".into(),
        mentions: vec!["@alice:localhost".into()],
    };
    let woke = s
        .wake(
            t,
            WakeIf::DueAt(due),
            &Actor::System,
            "snooze time reached",
            &[mention.clone()],
            due,
        )
        .await
        .unwrap();
    assert_eq!(woke, None, "the old timer wakes nothing");
    assert!(s.ticket(t).await.unwrap().unwrap().snooze.is_some());
    let woke = s
        .wake(
            t,
            WakeIf::DueAt(later),
            &Actor::System,
            "snooze time reached",
            &[mention.clone()],
            later,
        )
        .await
        .unwrap();
    assert_eq!(woke, Some(by_alice(at(later))));
    assert_eq!(s.ticket(t).await.unwrap().unwrap().snooze, None);
    assert_eq!(listed(s, Some(false)).await, 2);
    // Run twice (a crash before the job was settled): nothing more.
    let again = s
        .wake(
            t,
            WakeIf::DueAt(later),
            &Actor::System,
            "snooze time reached",
            &[mention.clone()],
            later,
        )
        .await
        .unwrap();
    assert_eq!(again, None);
    let mentions = pending(s)
        .await
        .into_iter()
        .filter(|j| j.spec == mention)
        .count();
    assert_eq!(mentions, 1, "one wake-up message");
    assert_eq!(
        audit_actions(s, t).await,
        ["created", "snoozed", "snoozed", "woke"]
    );

    // !unsnooze clears any snooze; a closed ticket cannot be snoozed.
    s.snooze(
        t,
        &by_alice(SnoozeUntil::CustomerReply),
        "until the customer replies",
        later,
    )
    .await
    .unwrap();
    let actor = Actor::Agent(agent("@bob:localhost"));
    let woke = s
        .wake(t, WakeIf::Snoozed, &actor, "unsnoozed", &[], later)
        .await
        .unwrap();
    assert_eq!(woke.map(|w| w.until), Some(SnoozeUntil::CustomerReply));
    assert_eq!(
        s.wake(t, WakeIf::Snoozed, &actor, "unsnoozed", &[], later)
            .await
            .unwrap(),
        None
    );
    s.apply(t, &Actor::System, &TicketEvent::Close, &[], later)
        .await
        .unwrap();
    let set = s
        .snooze(t, &by_alice(at(later + HOUR)), "x", later)
        .await
        .unwrap();
    assert_eq!(set, SnoozeSet::NotInQueue(Status::Closed));
    let missing = mailroom::domain::ids::TicketId::new(999);
    assert_eq!(
        s.snooze(missing, &by_alice(at(later + HOUR)), "x", later)
            .await
            .unwrap(),
        SnoozeSet::NoSuchTicket
    );
}

/// The customer's mail wakes a snoozed ticket in the ingest's transaction,
/// and the wake-up is told after the mail's post; automatic mail does not
/// wake it.
pub async fn a_customer_reply_wakes_a_snoozed_ticket(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let t = new_ticket(s, "root@x", 3).await;
    s.apply(
        t,
        &Actor::Agent(agent("@bob:localhost")),
        &TicketEvent::Claim(agent("@bob:localhost")),
        &[],
        2,
    )
    .await
    .unwrap();
    s.snooze(
        t,
        &by_alice(SnoozeUntil::CustomerReply),
        "until the customer replies",
        3,
    )
    .await
    .unwrap();
    let follow_up = |id: &str, hash: &str| {
        inbound(
            id,
            hash,
            "carol@customer.example",
            Destination::FollowUp {
                ticket: t,
                matched_by: "in-reply-to",
            },
            None,
        )
    };
    let mut auto = follow_up("ooo@x", "h-auto");
    auto.automatic = Some("auto-replied");
    s.record_inbound(auto).await.unwrap();
    assert!(
        s.ticket(t).await.unwrap().unwrap().snooze.is_some(),
        "an auto-reply is not the customer"
    );
    s.record_inbound(follow_up("re@x", "h-re")).await.unwrap();
    assert_eq!(s.ticket(t).await.unwrap().unwrap().snooze, None);
    let log = s.audit_log(t).await.unwrap();
    let woke = log
        .iter()
        .find(|e| e.action == "woke")
        .expect("woke audited");
    assert_eq!(woke.details, "the customer replied");
    // The mail's post, then the wake-up calling the snoozer and the owner.
    let jobs: Vec<JobSpec> = pending(s)
        .await
        .into_iter()
        .filter(|j| j.ticket == Some(t))
        .map(|j| j.spec)
        .collect();
    let post = jobs
        .iter()
        .rposition(|j| matches!(j, JobSpec::ChatPost { .. }))
        .expect("the follow-up is posted");
    let wake = jobs
        .iter()
        .position(|j| matches!(j, JobSpec::ChatMention { .. }))
        .expect("the wake-up is told");
    assert!(post < wake, "{jobs:?}");
    let JobSpec::ChatMention {
        text,
        mentions: mention,
        ..
    } = &jobs[wake]
    else {
        unreachable!()
    };
    assert_eq!(mention, &["@alice:localhost", "@bob:localhost"]);
    assert!(text.contains("the customer replied"), "{text}");
    let _ = token(0);
}

/// A settlement with a mark leaves its follow-ons once; its timers are
/// queued once per lane, however many runs settle them.
pub async fn timers_say_their_piece_once(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let digest = |due_ms| JobSpec::Digest {
        mailbox: "support".into(),
        platform: Platform::Slack,
        due_ms,
    };
    // Two timers for one day (a start that raced another).
    s.enqueue(None, &digest(100), 100, 1).await.unwrap();
    s.enqueue(None, &digest(101), 101, 1).await.unwrap();
    for _ in 0..2 {
        let job = s.next_job(200).await.unwrap().expect("a due timer");
        let mut settled = Settlement::new(JobOutcome::Done);
        settled.once = Some("digest:support:slack:2026-12-04".into());
        settled.follow_ons.push(JobSpec::ChatRoomNotice {
            platform: Platform::Slack,
            room: "C1".into(),
            text: "📋 digest".into(),
        });
        settled.timers.push((digest(10_000), 10_000));
        s.settle_job(&job, &settled, 200).await.unwrap();
    }
    let waiting = pending(s).await;
    let notices = waiting
        .iter()
        .filter(|j| matches!(j.spec, JobSpec::ChatRoomNotice { .. }))
        .count();
    assert_eq!(notices, 1, "one digest for the day: {waiting:?}");
    let next = waiting.iter().filter(|j| j.spec == digest(10_000)).count();
    assert_eq!(next, 1, "one next timer: {waiting:?}");
    assert_eq!(
        waiting
            .iter()
            .find(|j| j.spec == digest(10_000))
            .map(|j| j.not_before_ms),
        Some(10_000)
    );
}

conformance!(
    a_snooze_hides_and_only_its_own_timer_wakes_it,
    a_customer_reply_wakes_a_snoozed_ticket,
    timers_say_their_piece_once,
);
