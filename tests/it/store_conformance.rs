//! One conformance suite for every TicketStore backend: each check below runs
//! on SQLite and on a fresh PostgreSQL database.

use std::collections::BTreeSet;
use std::sync::Arc;

use mailroom::domain::chat::{ChatThread, Platform};
use mailroom::domain::email::{ContentHash, Party};
use mailroom::domain::ids::{Actor, Agent, EmailAddress, MailboxName, MessageId, Tag, TicketToken};
use mailroom::domain::mailbox::Checkpoint;
use mailroom::domain::threading::ThreadKeys;
use mailroom::domain::ticket::{Refusal, Status, TicketEvent, TicketState};
use mailroom::store::*;

use crate::common::audit_actions;
use mailroom::store::sql::SqlStore;
// The grants' checks live in a file of their own; the macro below runs them too.
use crate::store_grants::{
    a_grant_refresh_is_claimed_by_one_process_that_saw_the_latest_refresh,
    oauth_grants_refresh_rotate_and_are_refused_once,
};
// So do the outbox's recovery and settlement checks.
use crate::store_outbox::{
    crash_recovery_never_resends, settled_jobs_leave_their_work_behind_once_and_retries_requeue,
};

pub(crate) fn mb() -> MailboxName {
    MailboxName::parse("support").unwrap()
}
pub(crate) fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}
pub(crate) fn agent(s: &str) -> Agent {
    Agent::parse(s).unwrap()
}
pub(crate) fn token(n: u8) -> TicketToken {
    TicketToken::from_random([n; TicketToken::LEN])
}

pub(crate) fn inbound(
    id: &str,
    hash: &str,
    from: &str,
    dest: Destination,
    cp: Option<u32>,
) -> NewInbound {
    NewInbound {
        mailbox: mb(),
        checkpoint: cp.map(|uid| Checkpoint {
            uid_validity: 7,
            last_uid: uid,
        }),
        imap_uid: cp,
        email: NewEmail {
            message_id: MessageId::parse(id).unwrap(),
            content_hash: ContentHash::from_stored(hash.into()),
            from: Party::new(Some("Carol".into()), addr(from)),
            subject: "Invoice 42".into(),
            sent_at: Some(1_700_000_000),
            raw: format!("Message-ID: <{id}>\r\n\r\nbody {hash}\r\n").into_bytes(),
            participants: vec![addr(from), addr("cc@customer.example")],
        },
        destination: dest,
        automatic: None,
        route: Default::default(),
        rooms: Default::default(),
        refused_merges: vec![],
        post_to: vec![Platform::Matrix],
        now_ms: 1,
    }
}

pub(crate) async fn new_ticket(
    s: &dyn TicketStore,
    id: &str,
    n: u8,
) -> mailroom::domain::ids::TicketId {
    match s
        .record_inbound(inbound(
            id,
            &format!("h{n}"),
            "carol@customer.example",
            Destination::New { token: token(n) },
            None,
        ))
        .await
        .unwrap()
    {
        Recorded::NewTicket { ticket, .. } => ticket,
        other => panic!("expected a new ticket, got {other:?}"),
    }
}

pub async fn ingest_dedupes_and_advances_the_checkpoint(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    assert_eq!(s.checkpoint(&mb()).await.unwrap(), None);
    let r = s
        .record_inbound(inbound(
            "a@x",
            "h1",
            "carol@customer.example",
            Destination::New { token: token(1) },
            Some(5),
        ))
        .await
        .unwrap();
    let Recorded::NewTicket { ticket, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        s.checkpoint(&mb()).await.unwrap(),
        Some(Checkpoint {
            uid_validity: 7,
            last_uid: 5
        })
    );
    // The same message again (say after a UIDVALIDITY reset): a duplicate, but the checkpoint moves.
    let again = s
        .record_inbound(inbound(
            "a@x",
            "h1",
            "carol@customer.example",
            Destination::New { token: token(2) },
            Some(9),
        ))
        .await
        .unwrap();
    assert_eq!(again, Recorded::Duplicate);
    assert_eq!(s.checkpoint(&mb()).await.unwrap().unwrap().last_uid, 9);
    assert!(
        s.has_email(
            &mb(),
            &MessageId::parse("a@x").unwrap(),
            &ContentHash::from_stored("h1".into())
        )
        .await
        .unwrap()
    );
    // A different message reusing the Message-ID is kept.
    let other = s
        .record_inbound(inbound(
            "a@x",
            "h2",
            "carol@customer.example",
            Destination::New { token: token(3) },
            Some(10),
        ))
        .await
        .unwrap();
    assert!(matches!(other, Recorded::NewTicket { .. }), "{other:?}");
    let t = s.ticket(ticket).await.unwrap().unwrap();
    assert_eq!(t.state, TicketState::Open);
    assert_eq!(t.customer, addr("carol@customer.example"));
    assert_eq!(s.emails(ticket).await.unwrap().len(), 1);
    let log = s.audit_log(ticket).await.unwrap();
    assert_eq!(log[0].action, "created");
    assert_eq!(
        log[0].actor,
        Actor::Customer(addr("carol@customer.example"))
    );
    // One chat post job per configured platform.
    let jobs = s.jobs(&[JobState::Pending]).await.unwrap();
    assert_eq!(jobs.iter().filter(|j| j.ticket == Some(ticket)).count(), 1);
}

pub async fn follow_ups_thread_and_reopen(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let t = new_ticket(s, "root@x", 1).await;
    let alice = Actor::Agent(agent("@alice:x"));
    s.apply(t, &alice, &TicketEvent::Claim(agent("@alice:x")), &[], 1)
        .await
        .unwrap();
    s.apply(t, &alice, &TicketEvent::Close, &[], 2)
        .await
        .unwrap();
    let keys = ThreadKeys {
        from: addr("carol@customer.example"),
        in_reply_to: vec![MessageId::parse("root@x").unwrap()],
        references: vec![],
        tokens: vec![token(1)],
        subject: "Re: Invoice 42".into(),
        at: 1_700_000_100,
        returned: None,
    };
    let found = s.thread_candidates(&mb(), &keys).await.unwrap();
    assert_eq!(found.by_reference.len(), 1);
    assert_eq!(found.by_reference[0].id, t);
    // A bounce returning a mail we did not send (the customer's) finds no
    // ticket by it.
    let bounce = ThreadKeys {
        returned: Some(MessageId::parse("root@x").unwrap()),
        ..keys.clone()
    };
    let found = s.thread_candidates(&mb(), &bounce).await.unwrap();
    assert_eq!(found.by_returned, None);
    assert!(
        found.by_reference[0]
            .participants
            .contains(&addr("cc@customer.example"))
    );
    assert_eq!(found.by_token.len(), 1);
    assert_eq!(found.by_subject.len(), 1);
    let r = s
        .record_inbound(inbound(
            "reply@x",
            "h9",
            "carol@customer.example",
            Destination::FollowUp {
                ticket: t,
                matched_by: "references",
            },
            None,
        ))
        .await
        .unwrap();
    assert!(
        matches!(r, Recorded::FollowUp { ticket, reopened: true, .. } if ticket == t),
        "{r:?}"
    );
    let rec = s.ticket(t).await.unwrap().unwrap();
    assert_eq!(
        rec.state,
        TicketState::Claimed {
            by: agent("@alice:x")
        },
        "reopened to its owner"
    );
    assert_eq!(s.emails(t).await.unwrap().len(), 2);
    // An auto-reply is filed but does not reopen.
    s.apply(t, &alice, &TicketEvent::Close, &[], 3)
        .await
        .unwrap();
    let mut auto = inbound(
        "ooo@x",
        "h10",
        "carol@customer.example",
        Destination::FollowUp {
            ticket: t,
            matched_by: "references",
        },
        None,
    );
    auto.automatic = Some("auto-reply");
    let r = s.record_inbound(auto).await.unwrap();
    assert!(
        matches!(
            r,
            Recorded::FollowUp {
                reopened: false,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(
        s.ticket(t).await.unwrap().unwrap().state.status(),
        Status::Closed
    );
}

pub async fn concurrent_claims_have_exactly_one_winner(s: Arc<SqlStore>) {
    let t = new_ticket(s.as_ref(), "race@x", 1).await;
    let mut handles = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let who = agent(&format!("@agent{i}:x"));
            s.apply(
                t,
                &Actor::Agent(who.clone()),
                &TicketEvent::Claim(who),
                &[Platform::Matrix],
                10 + i,
            )
            .await
            .unwrap()
        }));
    }
    let mut winners = 0;
    let mut refusals = 0;
    for h in handles {
        match h.await.unwrap() {
            Applied::Changed { .. } => winners += 1,
            Applied::Refused(Refusal::AlreadyClaimed { .. }) => refusals += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((winners, refusals), (1, 7));
    let rec = s.ticket(t).await.unwrap().unwrap();
    let owner = rec.state.owner().cloned().unwrap();
    let claims: Vec<_> = s
        .audit_log(t)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "claim")
        .collect();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].actor, Actor::Agent(owner));
}

pub async fn events_tags_and_refusals(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let t = new_ticket(s, "tags@x", 1).await;
    let bob = Actor::Agent(agent("@bob:x"));
    let vip = Tag::parse("vip").unwrap();
    assert!(matches!(
        s.apply(t, &bob, &TicketEvent::AddTag(vip.clone()), &[], 1)
            .await
            .unwrap(),
        Applied::Changed { .. }
    ));
    assert_eq!(
        s.apply(t, &bob, &TicketEvent::AddTag(vip.clone()), &[], 2)
            .await
            .unwrap(),
        Applied::Unchanged
    );
    assert_eq!(
        s.ticket(t).await.unwrap().unwrap().tags,
        BTreeSet::from([vip.clone()])
    );
    // Two tags: the ticket is still one ticket, with both.
    let billing = Tag::parse("billing").unwrap();
    s.apply(t, &bob, &TicketEvent::AddTag(billing.clone()), &[], 2)
        .await
        .unwrap();
    let both = s.ticket(t).await.unwrap().unwrap();
    assert_eq!(both.tags, BTreeSet::from([vip.clone(), billing.clone()]));
    assert_eq!(both.id, t);
    s.apply(t, &bob, &TicketEvent::RemoveTag(billing), &[], 2)
        .await
        .unwrap();
    assert_eq!(
        s.apply(t, &bob, &TicketEvent::Unclaim(agent("@bob:x")), &[], 3)
            .await
            .unwrap(),
        Applied::Refused(Refusal::NotClaimed)
    );
    s.apply(t, &bob, &TicketEvent::RemoveTag(vip), &[], 4)
        .await
        .unwrap();
    assert!(s.ticket(t).await.unwrap().unwrap().tags.is_empty());
    assert_eq!(
        s.apply(
            mailroom::domain::ids::TicketId::new(9999),
            &bob,
            &TicketEvent::Close,
            &[],
            5
        )
        .await
        .unwrap(),
        Applied::NoSuchTicket
    );
    let actions = audit_actions(s, t).await;
    assert_eq!(actions, vec!["created", "tag", "tag", "untag", "untag"]);
    let filter = TicketFilter {
        status: Some(Status::Open),
        mailbox: Some(mb()),
        ..Default::default()
    };
    assert_eq!(s.list_tickets(&filter).await.unwrap().len(), 1);
    let filter = TicketFilter {
        status: Some(Status::Closed),
        ..Default::default()
    };
    assert!(s.list_tickets(&filter).await.unwrap().is_empty());
}

pub async fn outbox_lanes_run_in_order_and_one_at_a_time(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let t = new_ticket(s, "lanes@x", 1).await;
    // new_ticket queued chat_post (lane chat:matrix).
    let a = s
        .enqueue(
            Some(t),
            &JobSpec::ChatStatus {
                platform: Platform::Matrix,
            },
            1,
            1,
        )
        .await
        .unwrap();
    let m = s
        .enqueue(Some(t), &JobSpec::SendReply { email_id: 1 }, 1, 1)
        .await
        .unwrap();
    let first = s.next_job(100).await.unwrap().unwrap();
    assert_eq!(first.spec.kind(), "chat_post");
    assert_eq!(first.attempts, 1);
    // The chat lane is busy: the next job comes from the mail lane.
    let second = s.next_job(100).await.unwrap().unwrap();
    assert_eq!(second.id, m);
    assert!(s.next_job(100).await.unwrap().is_none(), "both lanes busy");
    s.finish_job(&first, &JobOutcome::Done, 101).await.unwrap();
    let third = s.next_job(102).await.unwrap().unwrap();
    assert_eq!(third.id, a);
    // A retry waits for its time.
    s.finish_job(
        &third,
        &JobOutcome::Retry {
            at_ms: 1_000,
            error: "429".into(),
        },
        103,
    )
    .await
    .unwrap();
    assert!(s.next_job(500).await.unwrap().is_none());
    assert_eq!(s.next_due_at().await.unwrap(), Some(1_000));
    let again = s.next_job(1_000).await.unwrap().unwrap();
    assert_eq!(
        (again.id, again.attempts, again.last_error.as_deref()),
        (a, 2, Some("429"))
    );
}

/// Several workers taking jobs at once: each due job is taken once, and a
/// lane gives out one job at a time.
pub async fn concurrent_workers_take_each_job_once(store: Arc<SqlStore>) {
    let mut tickets = Vec::new();
    for n in 0..24u8 {
        let t = new_ticket(store.as_ref(), &format!("race{n}@x"), n).await;
        // A lane of its own per ticket, beside the shared chat lane.
        store
            .enqueue(Some(t), &JobSpec::SendReply { email_id: n.into() }, 1, 1)
            .await
            .unwrap();
        tickets.push(t);
    }
    let workers = (0..8).map(|_| {
        let s = store.clone();
        tokio::spawn(async move {
            let mut taken = Vec::new();
            while let Some(job) = s.next_job(100).await.unwrap() {
                assert_eq!(job.state, JobState::InFlight);
                assert_eq!(job.attempts, 1);
                taken.push(job.id);
            }
            taken
        })
    });
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a job was taken twice: {all:?}");
    // Every mail lane's job, and the head of the chat lane only.
    assert_eq!(all.len(), tickets.len() + 1, "{all:?}");
    let in_flight = store.jobs(&[JobState::InFlight]).await.unwrap();
    assert_eq!(in_flight.len(), all.len());
    assert_eq!(
        in_flight
            .iter()
            .filter(|j| j.spec.kind() == "chat_post")
            .count(),
        1
    );
}

pub async fn replies_are_sent_once_and_undo_cancels(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let t = new_ticket(s, "undo@x", 1).await;
    let reply = |id: &str| NewReply {
        ticket: t,
        mailbox: mb(),
        author: agent("@alice:x"),
        message_id: MessageId::parse(id).unwrap(),
        content_hash: ContentHash::from_stored(id.into()),
        from: Party::new(None, addr("support@example.com")),
        subject: "Re: x".into(),
        raw: b"x".to_vec(),
        send_at_ms: 10_000,
        now_ms: 0,
    };
    let e1 = s.queue_reply(reply("u1@example.com")).await.unwrap();
    assert!(
        s.cancel_reply(e1, &Actor::Agent(agent("@alice:x")), 5)
            .await
            .unwrap()
    );
    assert!(
        !s.cancel_reply(e1, &Actor::Agent(agent("@alice:x")), 6)
            .await
            .unwrap(),
        "cannot cancel twice"
    );
    assert_eq!(
        s.outgoing(e1).await.unwrap().unwrap().state,
        EmailState::Cancelled
    );
    let e2 = s.queue_reply(reply("u2@example.com")).await.unwrap();
    // Not due during the undo window.
    let first = s.next_job(5_000).await.unwrap().unwrap();
    assert_eq!(first.spec.kind(), "chat_post");
    assert!(s.next_job(5_000).await.unwrap().is_none());
    let send = s.next_job(10_000).await.unwrap().unwrap();
    assert_eq!(send.spec, JobSpec::SendReply { email_id: e2 });
    s.reply_sent(&send, e2, &[Platform::Matrix], 10_001)
        .await
        .unwrap();
    // Recorded again (the outbox retries when the first answer was lost):
    // nothing changes.
    let before = s.jobs(&[]).await.unwrap().len();
    s.reply_sent(&send, e2, &[Platform::Matrix], 10_001)
        .await
        .unwrap();
    assert_eq!(
        s.jobs(&[]).await.unwrap().len(),
        before,
        "no second notice or filing"
    );
    let t2 = s.outgoing(e2).await.unwrap().unwrap().ticket;
    let sent_lines = s
        .audit_log(t2)
        .await
        .unwrap()
        .iter()
        .filter(|a| a.action == "reply-sent")
        .count();
    assert_eq!(sent_lines, 1);
    assert!(
        !s.cancel_reply(e2, &Actor::System, 10_002).await.unwrap(),
        "a sent reply cannot be undone"
    );
    assert_eq!(
        s.outgoing(e2).await.unwrap().unwrap().state,
        EmailState::Sent
    );
    let file = s.next_job(10_003).await.unwrap().unwrap();
    assert_eq!(file.spec, JobSpec::FileSent { email_id: e2 });
    // The thread is told who sent it.
    let pending = s.jobs(&[JobState::Pending]).await.unwrap();
    assert!(
        pending.iter().any(|j| matches!(&j.spec, JobSpec::ChatNotice { text, .. } if text.contains("Reply sent by @alice:x"))),
        "{pending:?}"
    );
}

pub async fn the_audit_log_is_append_only(s: Arc<SqlStore>) {
    new_ticket(s.as_ref(), "audit@x", 1).await;
    let upd = sqlx::query("UPDATE audit_log SET actor = 'system'")
        .execute(s.pool())
        .await;
    assert!(upd.is_err(), "UPDATE on audit_log must fail");
    let del = sqlx::query("DELETE FROM audit_log").execute(s.pool()).await;
    assert!(del.is_err(), "DELETE on audit_log must fail");
}

pub async fn chat_threads_link(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let t = new_ticket(s, "chat@x", 1).await;
    assert_eq!(s.chat_thread(t, Platform::Slack).await.unwrap(), None);
    let th = ChatThread {
        platform: Platform::Slack,
        room: "C1".into(),
        thread_ref: "1700000000.000100".into(),
    };
    s.link_chat_thread(t, &th).await.unwrap();
    s.link_chat_thread(t, &th).await.unwrap();
    assert_eq!(s.chat_thread(t, Platform::Slack).await.unwrap(), Some(th));
    assert_eq!(
        s.ticket_by_thread(&ChatThread {
            platform: Platform::Slack,
            room: "C1".into(),
            thread_ref: "1700000000.000100".into()
        })
        .await
        .unwrap(),
        Some(t)
    );
    assert_eq!(
        s.ticket_by_thread(&ChatThread {
            platform: Platform::Matrix,
            room: "C1".into(),
            thread_ref: "1700000000.000100".into()
        })
        .await
        .unwrap(),
        None
    );
    assert_eq!(
        s.ticket_by_thread(&ChatThread {
            platform: Platform::Slack,
            room: "C2".into(),
            thread_ref: "1700000000.000100".into()
        })
        .await
        .unwrap(),
        None
    );
    assert!(s.first_sighting(Platform::Slack, "Ev1", 1).await.unwrap());
    assert!(
        !s.first_sighting(Platform::Slack, "Ev1", 2).await.unwrap(),
        "a redelivery is recognised"
    );
    assert!(
        s.first_sighting(Platform::Matrix, "Ev1", 3).await.unwrap(),
        "per platform"
    );
}

/// `count_jobs` (the outbox depth on /metrics) counts per state, and a room
/// notice with no ticket round-trips through the outbox.
pub async fn outbox_depth_counts_jobs_by_state(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    assert_eq!(s.count_jobs().await.unwrap(), vec![], "an empty outbox");
    let notice = JobSpec::ChatRoomNotice {
        platform: Platform::Matrix,
        room: "!room:x".into(),
        text: "mailbox support is stale".into(),
    };
    for at in [10, 20, 30] {
        s.enqueue(None, &notice, at, at).await.unwrap();
    }
    let first = s.next_job(100).await.unwrap().unwrap();
    assert_eq!(first.spec, notice);
    assert_eq!(first.ticket, None);
    assert_eq!(first.created_at_ms, 10, "queued time is kept for latency");
    let mut counts = s.count_jobs().await.unwrap();
    counts.sort_by_key(|(state, _)| state.as_str());
    assert_eq!(
        counts,
        vec![(JobState::InFlight, 1), (JobState::Pending, 2)]
    );
    s.finish_job(&first, &JobOutcome::Done, 101).await.unwrap();
    let counts = s.count_jobs().await.unwrap();
    assert!(counts.contains(&(JobState::Done, 1)), "{counts:?}");
    assert!(counts.contains(&(JobState::Pending, 2)), "{counts:?}");
    assert!(
        !counts.iter().any(|(st, _)| *st == JobState::InFlight),
        "{counts:?}"
    );
}

/// Raw emails of every size around the 1 MiB piece come back byte for byte,
/// whichever way they are read; rows from before pieces (no raw_size) too.
pub async fn raw_emails_round_trip_in_pieces(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    const PIECE: usize = 1024 * 1024;
    let bytes = |len: usize, seed: usize| -> Vec<u8> {
        (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
    };
    for (n, len) in [1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 12_345]
        .into_iter()
        .enumerate()
    {
        let mut new = inbound(
            &format!("piece{n}@x"),
            &format!("p{n}"),
            "carol@customer.example",
            Destination::New {
                token: token(100 + n as u8),
            },
            None,
        );
        let raw = bytes(len, n);
        new.email.raw = raw.clone();
        let Recorded::NewTicket { ticket, .. } = s.record_inbound(new).await.unwrap() else {
            panic!("expected a new ticket");
        };
        let emails = s.emails(ticket).await.unwrap();
        assert_eq!(emails[0].size, len as i64, "size of {len}");
        assert!(
            s.raw_email(emails[0].id).await.unwrap().unwrap() == raw,
            "raw of {len}"
        );
        let (latest, latest_raw) = s.latest_inbound(ticket).await.unwrap().unwrap();
        assert_eq!(latest.id, emails[0].id);
        assert!(latest_raw == raw, "latest raw of {len}");
        let reply_raw = bytes(len, n + 7);
        let e = s
            .queue_reply(NewReply {
                ticket,
                mailbox: mb(),
                author: agent("@alice:x"),
                message_id: MessageId::parse(&format!("r{n}@example.com")).unwrap(),
                content_hash: ContentHash::from_stored(format!("r{n}")),
                from: Party::new(None, addr("support@example.com")),
                subject: "Re: x".into(),
                raw: reply_raw.clone(),
                send_at_ms: 0,
                now_ms: 0,
            })
            .await
            .unwrap();
        assert!(
            s.outgoing(e).await.unwrap().unwrap().raw == reply_raw,
            "reply raw of {len}"
        );
    }
    // A row written before raw_size existed holds its whole raw in `raw`.
    let t = new_ticket(s, "legacy@x", 99).await;
    let id = s.emails(t).await.unwrap()[0].id;
    sqlx::query("UPDATE emails SET raw_size = NULL WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    let raw = s.raw_email(id).await.unwrap().unwrap();
    assert!(raw.starts_with(b"Message-ID: <legacy@x>"));
    assert_eq!(s.emails(t).await.unwrap()[0].size, raw.len() as i64);
}

/// A batch is one transaction: dropped, nothing of it is stored; committed,
/// all of it, and threading inside it sees the emails before.
pub async fn ingest_batches_commit_together_and_see_their_own_mail(store: Arc<SqlStore>) {
    let s: &dyn TicketStore = store.as_ref();
    let carol = "carol@customer.example";
    let mut b = s.begin_ingest().await.unwrap();
    b.record_inbound(inbound(
        "drop@x",
        "hd",
        carol,
        Destination::New { token: token(50) },
        Some(3),
    ))
    .await
    .unwrap();
    drop(b);
    assert_eq!(s.checkpoint(&mb()).await.unwrap(), None);
    assert!(
        s.list_tickets(&TicketFilter::default())
            .await
            .unwrap()
            .is_empty()
    );

    let mut b = s.begin_ingest().await.unwrap();
    // A plain new ticket waits for the commit (no id yet) …
    let first = b
        .record_inbound(inbound(
            "b1@x",
            "hb1",
            carol,
            Destination::New { token: token(51) },
            None,
        ))
        .await
        .unwrap();
    assert_eq!(first, None, "a plain new ticket's rows wait for the commit");
    let keys = ThreadKeys {
        from: addr(carol),
        in_reply_to: vec![MessageId::parse("b1@x").unwrap()],
        references: vec![],
        tokens: vec![],
        subject: "Re: Invoice 42".into(),
        at: 1_700_000_100,
        returned: None,
    };
    // … yet the batch's own look-ups see it.
    let found = b.thread_candidates(&mb(), &keys).await.unwrap();
    let [candidate] = found.by_reference.as_slice() else {
        panic!("the waiting ticket is found by reference: {found:?}");
    };
    let ticket = candidate.id;
    let follow_up = Destination::FollowUp {
        ticket,
        matched_by: "in-reply-to",
    };
    let r = b
        .record_inbound(inbound("b2@x", "hb2", carol, follow_up, Some(9)))
        .await
        .unwrap();
    if let Some(r) = r {
        assert!(
            matches!(r, Recorded::FollowUp { ticket: t, .. } if t == ticket),
            "{r:?}"
        );
    }
    let recorded = b.commit().await.unwrap();
    assert!(
        matches!(
            recorded.as_slice(),
            [
                Recorded::NewTicket { ticket: a, .. },
                Recorded::FollowUp { ticket: b, reopened: false, .. },
            ] if *a == ticket && *b == ticket
        ),
        "the commit reports what each email became: {recorded:?}"
    );
    assert_eq!(
        s.checkpoint(&mb()).await.unwrap().map(|c| c.last_uid),
        Some(9)
    );
    assert_eq!(s.emails(ticket).await.unwrap().len(), 2);
    assert_eq!(
        s.list_tickets(&TicketFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Runs each named check on SQLite and on a fresh PostgreSQL database
/// (also used by the checks split into `store_routing.rs`).
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = crate::common::TestDb::sqlite();
                    let s = std::sync::Arc::new(db.store().await);
                    super::$name(s).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = crate::common::TestDb::postgres().await;
                    let s = std::sync::Arc::new(db.store().await);
                    super::$name(s.clone()).await;
                    s.close().await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    ingest_dedupes_and_advances_the_checkpoint,
    follow_ups_thread_and_reopen,
    concurrent_claims_have_exactly_one_winner,
    events_tags_and_refusals,
    outbox_lanes_run_in_order_and_one_at_a_time,
    concurrent_workers_take_each_job_once,
    crash_recovery_never_resends,
    replies_are_sent_once_and_undo_cancels,
    the_audit_log_is_append_only,
    chat_threads_link,
    outbox_depth_counts_jobs_by_state,
    raw_emails_round_trip_in_pieces,
    ingest_batches_commit_together_and_see_their_own_mail,
    settled_jobs_leave_their_work_behind_once_and_retries_requeue,
    oauth_grants_refresh_rotate_and_are_refused_once,
    a_grant_refresh_is_claimed_by_one_process_that_saw_the_latest_refresh,
);
