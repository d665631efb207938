//! Conformance checks for the outbox's chat lanes, on SQLite and
//! PostgreSQL: a lane per room, so a slow or rate-limited room never holds
//! another's jobs; one ticket's chat jobs in one lane, in order, also when
//! its room is learnt while jobs wait, or when they were queued in the
//! platform's shared lane (by an older version).

use std::sync::Arc;

use mailroom::domain::chat::{ChatThread, Platform};
use mailroom::domain::ids::{TicketId, TicketToken};
use mailroom::store::sql::SqlStore;
use mailroom::store::*;

use crate::store_conformance::inbound;

/// A new ticket whose root goes to `room` (none: an older version's job,
/// in the platform's shared lane).
async fn ticket_in(s: &dyn TicketStore, n: u8, room: Option<&str>) -> TicketId {
    let mut new = inbound(
        &format!("lane{n}@x"),
        &format!("lane{n}"),
        "carol@customer.example",
        Destination::New {
            token: TicketToken::from_random([n; TicketToken::LEN]),
        },
        None,
    );
    if let Some(room) = room {
        new.rooms.insert(Platform::Matrix, room.to_owned());
    }
    match s.record_inbound(new).await.unwrap() {
        Recorded::NewTicket { ticket, .. } => ticket,
        other => panic!("expected a new ticket, got {other:?}"),
    }
}

fn status() -> JobSpec {
    JobSpec::ChatStatus {
        platform: Platform::Matrix,
    }
}

fn notice(text: &str) -> JobSpec {
    JobSpec::ChatNotice {
        platform: Platform::Matrix,
        text: text.into(),
    }
}

/// The job's post done, its thread in `room`.
async fn posted(s: &dyn TicketStore, job: &Job, room: &str, follow_ons: Vec<JobSpec>, now: i64) {
    let mut settled = Settlement::new(JobOutcome::Done);
    settled.thread = Some(ChatThread {
        platform: Platform::Matrix,
        room: room.into(),
        thread_ref: format!("$root{}", job.id),
    });
    settled.follow_ons = follow_ons;
    s.settle_job(job, &settled, now).await.unwrap();
}

async fn take(s: &dyn TicketStore, now: i64) -> Job {
    s.next_job(now).await.unwrap().expect("a job is due")
}

/// Room A's post is slow and then rate-limited; room B's jobs run
/// meanwhile. A's later jobs (its ticket's status and notice, a room
/// notice for A) wait behind it, and run in order once it is done.
pub async fn a_busy_room_does_not_hold_another(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let a = ticket_in(s, 1, Some("!a")).await;
    let b = ticket_in(s, 2, Some("!b")).await;
    let a_status = s.enqueue(Some(a), &status(), 1, 1).await.unwrap();
    let a_notice = s.enqueue(Some(a), &notice("a"), 1, 1).await.unwrap();
    let room_a = s
        .enqueue(
            None,
            &JobSpec::ChatRoomNotice {
                platform: Platform::Matrix,
                room: "!a".into(),
                text: "watchdog".into(),
            },
            1,
            1,
        )
        .await
        .unwrap();
    let a_post = take(s, 10).await;
    assert_eq!((a_post.ticket, a_post.spec.kind()), (Some(a), "chat_post"));
    // A's post in flight (slow): B's is not behind it.
    let b_post = take(s, 11).await;
    assert_eq!((b_post.ticket, b_post.spec.kind()), (Some(b), "chat_post"));
    assert!(
        s.next_job(12).await.unwrap().is_none(),
        "room A's other jobs wait for its post"
    );
    // A is rate-limited for a while; B's thread is made and its next job
    // (queued now, in B's room lane) runs at once.
    let limited = JobOutcome::Retry {
        at_ms: 10_000,
        error: "429".into(),
    };
    s.finish_job(&a_post, &limited, 13).await.unwrap();
    posted(s, &b_post, "!b", vec![], 14).await;
    let b_status = s.enqueue(Some(b), &status(), 15, 15).await.unwrap();
    assert_eq!(take(s, 16).await.id, b_status);
    assert!(
        s.next_job(17).await.unwrap().is_none(),
        "room A waits for its retry"
    );
    // A's turn: its post, then the rest of its room in order.
    let again = take(s, 10_000).await;
    assert_eq!((again.id, again.attempts), (a_post.id, 2));
    assert!(s.next_job(10_001).await.unwrap().is_none());
    posted(s, &again, "!a", vec![], 10_002).await;
    for want in [a_status, a_notice, room_a] {
        let job = take(s, 10_003).await;
        assert_eq!(job.id, want);
        assert!(
            s.next_job(10_003).await.unwrap().is_none(),
            "one job of a room at a time"
        );
        s.finish_job(&job, &JobOutcome::Done, 10_004).await.unwrap();
    }
}

/// A ticket's chat jobs stay in one lane while any waits: queued in the
/// platform's shared lane (an older version's post), its later jobs join
/// that lane, the post's follow-ons too, after the jobs queued before
/// them; once none waits, the next goes to its thread's room lane. Another
/// ticket's room is not held up by the shared lane meanwhile.
pub async fn a_tickets_jobs_keep_their_lane_and_order(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let old = ticket_in(s, 3, None).await;
    let other = ticket_in(s, 4, Some("!other")).await;
    let mention = s
        .enqueue(Some(old), &notice("assigned"), 1, 1)
        .await
        .unwrap();
    let post = take(s, 10).await;
    assert_eq!((post.ticket, post.spec.kind()), (Some(old), "chat_post"));
    let other_post = take(s, 11).await;
    assert_eq!(other_post.ticket, Some(other));
    assert!(s.next_job(12).await.unwrap().is_none());
    // The post's thread is in !old now; its file is queued after the
    // notice still waiting in the shared lane, and runs after it.
    let file = JobSpec::ChatFile {
        platform: Platform::Matrix,
        email_id: 1,
        part: FilePart::FullText,
    };
    posted(s, &post, "!old", vec![file], 13).await;
    posted(s, &other_post, "!other", vec![], 13).await;
    let first = take(s, 14).await;
    assert_eq!(first.id, mention);
    assert!(
        s.next_job(15).await.unwrap().is_none(),
        "the file waits behind the notice"
    );
    s.finish_job(&first, &JobOutcome::Done, 16).await.unwrap();
    let second = take(s, 17).await;
    assert_eq!(second.spec.kind(), "chat_file");
    // Nothing of the ticket waits now but the file in flight, in the shared
    // lane: a new job joins it, and runs after it.
    let after = s.enqueue(Some(old), &status(), 18, 18).await.unwrap();
    assert!(s.next_job(19).await.unwrap().is_none());
    s.finish_job(&second, &JobOutcome::Done, 20).await.unwrap();
    let third = take(s, 21).await;
    assert_eq!(third.id, after);
    s.finish_job(&third, &JobOutcome::Done, 22).await.unwrap();
    // All done: the ticket's next jobs go to its room's lane, where a slow
    // job of the room holds them and the shared lane does not.
    let slow = s
        .enqueue(
            None,
            &JobSpec::ChatRoomNotice {
                platform: Platform::Matrix,
                room: "!old".into(),
                text: "slow".into(),
            },
            23,
            23,
        )
        .await
        .unwrap();
    let in_room = s
        .enqueue(Some(old), &notice("later"), 24, 24)
        .await
        .unwrap();
    let other_notice = s
        .enqueue(Some(other), &notice("other"), 24, 24)
        .await
        .unwrap();
    let slow_job = take(s, 25).await;
    assert_eq!(slow_job.id, slow);
    let next = take(s, 26).await;
    assert_eq!(next.id, other_notice, "the other room is not held");
    assert!(
        s.next_job(27).await.unwrap().is_none(),
        "the ticket's notice waits in its room's lane"
    );
    s.finish_job(&slow_job, &JobOutcome::Done, 28)
        .await
        .unwrap();
    assert_eq!(take(s, 29).await.id, in_room);
}

/// A long queue in one room (a backlog posting, a room waiting out an
/// outage): with its head in flight nothing is due, with the head done the
/// next one is, and a look answers either way without reading the queue
/// once per waiting job (a look that did, on SQLite, ran for minutes over
/// 10,000 waiting jobs and held the only connection: bounded here by a
/// time-out far above what a look costs, so a hang fails rather than
/// blocks the suite).
pub async fn a_long_queue_in_one_room_is_looked_at_in_one_pass(store: Arc<SqlStore>) {
    use std::time::{Duration, Instant};
    let s: &dyn TicketStore = store.as_ref();
    let ticket = ticket_in(s, 1, Some("!busy:x")).await;
    // 10,000 more posts in the same room, written at once.
    let mut tx = store.pool().begin().await.unwrap();
    for chunk in 0..100 {
        let mut sql = String::from(
            "INSERT INTO outbox (lane, kind, ticket_id, payload, state, attempts, not_before, created_at, updated_at) VALUES ",
        );
        for i in 0..100 {
            if i > 0 {
                sql.push_str(", ");
            }
            let n = chunk * 100 + i;
            sql.push_str(&format!(
                "('chat:matrix:!busy:x', 'chat_notice', {}, '{{\"kind\":\"chat_notice\",\"platform\":\"matrix\",\"text\":\"n{n}\"}}', 'pending', 0, {}, 1, 1)",
                ticket.get(),
                // Not in id order: not_before of later jobs lower than the head's.
                (n % 7) as i64
            ));
        }
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let bound = Duration::from_secs(60);
    let head = tokio::time::timeout(bound, s.next_job(100))
        .await
        .expect("a take over a long queue answers")
        .unwrap()
        .expect("the root is due");
    assert_eq!(head.ticket, Some(ticket));
    let started = Instant::now();
    let due = tokio::time::timeout(bound, s.next_due_at())
        .await
        .expect("the next due time over a long queue answers")
        .unwrap();
    assert_eq!(due, None, "the room's head is in flight: nothing is due");
    let none = tokio::time::timeout(bound, s.next_job(100))
        .await
        .expect("a look in vain over a long queue answers")
        .unwrap();
    assert!(none.is_none(), "{none:?}");
    eprintln!(
        "a due time and a look in vain over 10,000 waiting jobs: {} ms",
        started.elapsed().as_millis()
    );
    s.finish_job(&head, &JobOutcome::Done, 101).await.unwrap();
    let due = tokio::time::timeout(bound, s.next_due_at())
        .await
        .expect("the next due time answers")
        .unwrap();
    assert!(due.is_some(), "the room's next post is due");
    let next = tokio::time::timeout(bound, s.next_job(102))
        .await
        .expect("a take answers")
        .unwrap()
        .expect("the next post is taken");
    assert!(next.id > head.id);
    assert!(
        matches!(&next.spec, JobSpec::ChatNotice { text, .. } if text == "n0"),
        "the lane's next job in id order: {:?}",
        next.spec
    );
}

conformance!(
    a_busy_room_does_not_hold_another,
    a_tickets_jobs_keep_their_lane_and_order,
    a_long_queue_in_one_room_is_looked_at_in_one_pass,
);
