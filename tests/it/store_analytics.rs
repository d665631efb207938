//! The figures on a hand-made history, on SQLite and PostgreSQL: a week in
//! Berlin across the spring daylight-saving change (Sunday 29 March 2026,
//! 02:00 CET → 03:00 CEST), with tickets on the week's edges, a reopen, a
//! ticket set aside as spam, replies sent through the outbox and found in
//! Sent. Every expected figure below is worked out by hand; the same
//! history is the worked example of docs/ANALYTICS.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use mailroom::domain::calendar::{Calendar, parse_spans};
use mailroom::domain::email::{ContentHash, Party};
use mailroom::domain::ids::{Actor, Agent, MailboxName, MessageId, Tag, TicketId};
use mailroom::domain::mailbox::Checkpoint;
use mailroom::domain::routing::{Mark, Route};
use mailroom::domain::sla::{Policies, Policy, parse_target};
use mailroom::domain::ticket::{Status, TicketEvent};
use mailroom::domain::time::Zone;
use mailroom::store::analytics::{
    self, AgeBucket, BusinessHours, DurationStats, GroupBy, Hours, Load, Period, PeriodKind, Scope,
    Share, SlaRules, WallClock,
};
use mailroom::store::sql::SqlStore;
use mailroom::store::*;

use crate::store_conformance::{addr, agent, inbound, mb, token};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn ms(s: &str) -> i64 {
    s.parse::<Timestamp>().unwrap().as_millisecond()
}

fn alice() -> Agent {
    agent("@alice:localhost")
}

fn bob() -> Agent {
    agent("@bob:localhost")
}

/// A new ticket from its first email at `at`, tagged `tags`.
async fn received(s: &SqlStore, n: u8, at: &str, tags: &[&str], mark: Option<Mark>) -> TicketId {
    let mut new = inbound(
        &format!("t{n}@customer.example"),
        &format!("h{n}"),
        &format!("customer{n}@customer.example"),
        Destination::New { token: token(n) },
        None,
    );
    new.now_ms = ms(at);
    new.route = Route {
        rules: vec!["fixture".into()],
        tags: tags.iter().map(|t| Tag::parse(t).unwrap()).collect(),
        mark,
        ..Route::default()
    };
    let Recorded::NewTicket { ticket, .. } = s.record_inbound(new).await.unwrap() else {
        panic!("ticket {n} is new")
    };
    ticket
}

async fn event(s: &SqlStore, t: TicketId, actor: &Agent, e: TicketEvent, at: &str) {
    let applied = s
        .apply(t, &Actor::Agent(actor.clone()), &e, &[], ms(at))
        .await
        .unwrap();
    assert!(
        matches!(applied, Applied::Changed { .. }),
        "{e:?} at {at}: {applied:?}"
    );
}

/// A `!reply` by `who`, sent by the outbox at `at` (every job due before
/// it is taken and finished on the way).
async fn reply_sent(s: &SqlStore, t: TicketId, who: &Agent, id: &str, at: &str) {
    let at = ms(at);
    let email_id = s
        .queue_reply(NewReply {
            ticket: t,
            mailbox: mb(),
            author: who.clone(),
            message_id: MessageId::parse(id).unwrap(),
            content_hash: ContentHash::from_stored(id.into()),
            from: Party::new(None, addr("support@example.com")),
            subject: "Re: Invoice 42".into(),
            raw: b"thanks".to_vec(),
            send_at_ms: at,
            now_ms: at,
        })
        .await
        .unwrap();
    for _ in 0..1000 {
        let job = s.next_job(at).await.unwrap().expect("the send is due");
        if job.spec == (JobSpec::SendReply { email_id }) {
            s.reply_sent(&job, email_id, &[], at).await.unwrap();
            return;
        }
        s.finish_job(&job, &JobOutcome::Done, at).await.unwrap();
    }
    panic!("the send never came up");
}

/// A reply a teammate wrote in the mailbox itself, found in Sent at `at`.
async fn reply_in_sent(s: &SqlStore, n: u8, id: &str, at: &str) {
    let recorded = s
        .record_sent(SentBatch {
            mailbox: mb(),
            mails: vec![SentMail {
                message_id: MessageId::parse(id).unwrap(),
                content_hash: ContentHash::from_stored(id.into()),
                from: Party::new(None, addr("support@example.com")),
                written_by: Party::new(None, addr("dana@example.com")),
                subject: "Re: Invoice 42".into(),
                sent_at: None,
                referenced: vec![MessageId::parse(&format!("t{n}@customer.example")).unwrap()],
                recipients: vec![],
                raw: b"answered".to_vec(),
            }],
            checkpoint: Checkpoint {
                uid_validity: 1,
                last_uid: u32::from(n),
            },
            post_to: vec![],
            now_ms: ms(at),
        })
        .await
        .unwrap();
    assert!(
        matches!(recorded[..], [SentRecorded::Reply { .. }]),
        "{recorded:?}"
    );
}

/// The customer writes again at `at` (a follow-up, which reopens).
async fn customer_writes(s: &SqlStore, t: TicketId, n: u8, at: &str) {
    let mut new = inbound(
        &format!("t{n}-again@customer.example"),
        &format!("h{n}-again"),
        &format!("customer{n}@customer.example"),
        Destination::FollowUp {
            ticket: t,
            matched_by: "In-Reply-To",
        },
        None,
    );
    new.now_ms = ms(at);
    s.record_inbound(new).await.unwrap();
}

/// The history (UTC times; Berlin is UTC+1 until 29 March 01:00 UTC, then
/// UTC+2). The week is Mon 23 March 00:00 CET = 22 March 23:00 UTC to Mon
/// 30 March 00:00 CEST = 29 March 22:00 UTC.
async fn history(s: &SqlStore) {
    use TicketEvent::*;
    // T1: Sun 22 March 23:30 local, the day before the week. Resolved in it.
    let t1 = received(s, 1, "2026-03-22T22:30:00Z", &["billing"], None).await;
    event(s, t1, &alice(), Claim(alice()), "2026-03-23T07:00:00Z").await;
    reply_sent(s, t1, &alice(), "r1@example.com", "2026-03-23T08:00:00Z").await;
    event(s, t1, &alice(), Close, "2026-03-24T09:00:00Z").await;
    // T2: Mon 23 March 00:00 local, the week's first instant. Answered
    // after 2 h, closed, reopened by the customer's mail, answered again,
    // closed again.
    let t2 = received(s, 2, "2026-03-22T23:00:00Z", &["billing"], None).await;
    event(s, t2, &alice(), Claim(alice()), "2026-03-23T00:30:00Z").await;
    reply_sent(s, t2, &alice(), "r2@example.com", "2026-03-23T01:00:00Z").await;
    event(s, t2, &alice(), Close, "2026-03-23T12:00:00Z").await;
    customer_writes(s, t2, 2, "2026-03-24T08:00:00Z").await;
    reply_sent(s, t2, &alice(), "r2b@example.com", "2026-03-24T09:00:00Z").await;
    event(s, t2, &alice(), Close, "2026-03-25T11:00:00Z").await;
    // T3: Wed 25 March 10:00 local; answered in 30 min, closed after 1 h.
    let t3 = received(s, 3, "2026-03-25T09:00:00Z", &["vip"], None).await;
    event(s, t3, &bob(), Claim(bob()), "2026-03-25T09:10:00Z").await;
    reply_sent(s, t3, &bob(), "r3@example.com", "2026-03-25T09:30:00Z").await;
    event(s, t3, &bob(), Close, "2026-03-25T10:00:00Z").await;
    // T8: Tue 24 March, set aside as spam: never counted.
    received(s, 8, "2026-03-24T10:00:00Z", &[], Some(Mark::Spam)).await;
    // T9: Thu 26 March 15:00 local; answered after 6 h, closed in the week,
    // reopened after it: not resolved in the week.
    let t9 = received(s, 9, "2026-03-26T14:00:00Z", &[], None).await;
    event(s, t9, &alice(), Claim(alice()), "2026-03-26T15:00:00Z").await;
    reply_sent(s, t9, &alice(), "r9@example.com", "2026-03-26T20:00:00Z").await;
    event(s, t9, &alice(), Close, "2026-03-27T14:00:00Z").await;
    // T10: Fri 27 March 09:00 local; closed without a reply, reopened,
    // closed again after the week: not resolved in it.
    let t10 = received(s, 10, "2026-03-27T08:00:00Z", &[], None).await;
    event(s, t10, &bob(), Close, "2026-03-27T09:00:00Z").await;
    event(s, t10, &bob(), Reopen, "2026-03-28T10:00:00Z").await;
    // T4: Sun 29 March 01:30 CET, before the change; answered from the
    // mailbox itself 4 h later (pending since).
    let _t4 = received(s, 4, "2026-03-29T00:30:00Z", &[], None).await;
    reply_in_sent(s, 4, "r4@example.com", "2026-03-29T04:30:00Z").await;
    // T5: Sun 29 March 03:30 CEST, after the change. T6: 23:30 CEST, the
    // week's last hour. T7: Mon 30 March 00:00 CEST, the next week.
    received(s, 5, "2026-03-29T01:30:00Z", &[], None).await;
    received(s, 6, "2026-03-29T21:30:00Z", &[], None).await;
    received(s, 7, "2026-03-29T22:00:00Z", &[], None).await;
    // After the week.
    event(s, t9, &alice(), Reopen, "2026-03-30T08:00:00Z").await;
    event(s, t10, &bob(), Close, "2026-03-31T08:00:00Z").await;
    // T11: two hours old at the backlog's "now"; T12: three weeks old.
    received(s, 11, "2026-03-31T10:00:00Z", &[], None).await;
    received(s, 12, "2026-03-10T09:00:00Z", &[], None).await;
}

fn week() -> Period {
    let berlin = Zone::parse("Europe/Berlin").unwrap();
    Period::containing(
        PeriodKind::Week,
        "2026-03-25T12:00:00Z".parse().unwrap(),
        &berlin,
    )
    .unwrap()
}

async fn figures_match_the_hand_worked_week(s: Arc<SqlStore>) {
    history(&s).await;
    let store: &dyn TicketStore = s.as_ref();
    let week = week();
    assert_eq!(
        (week.start_ms, week.end_ms),
        (ms("2026-03-22T23:00:00Z"), ms("2026-03-29T22:00:00Z"))
    );
    let f = analytics::figures(store, &Scope::default(), &week, &WallClock)
        .await
        .unwrap();
    // Received: T2, T3, T4, T5, T6, T9, T10 (T1 and T7 outside, T8 spam).
    assert_eq!(f.received, 7);
    // First responses 30 min (T3), 2 h (T2), 4 h (T4), 6 h (T9): median
    // (2 h + 4 h) / 2; p90 the ⌈0.9·4⌉ = 4th.
    assert_eq!(
        f.first_response,
        DurationStats {
            count: 4,
            median_ms: Some(3 * HOUR),
            p90_ms: Some(6 * HOUR)
        }
    );
    assert_eq!(f.unanswered, 3, "T5, T6, T10");
    // Resolved: T3 1 h, T1 34 h 30 min, T2 60 h (created to last close).
    assert_eq!(f.resolved, 3);
    assert_eq!(
        f.resolution,
        DurationStats {
            count: 3,
            median_ms: Some(34 * HOUR + 30 * MIN),
            p90_ms: Some(60 * HOUR)
        }
    );
    // Replies: T1 1, T2 2, T3 1.
    assert_eq!(f.replies_per_ticket, Some(4.0 / 3.0));
    assert_eq!(f.reopened, Share { part: 1, whole: 3 }, "T2");
    // Local hours: T2 0, T4 1, T5 3, T10 9, T3 10, T9 15, T6 23.
    let hours: Vec<usize> = (0..24).filter(|h| f.by_hour[*h] > 0).collect();
    assert_eq!(hours, [0, 1, 3, 9, 10, 15, 23]);
    assert_eq!(f.by_hour.iter().sum::<u64>(), 7);
    assert_eq!(f.by_weekday, [1, 0, 1, 1, 1, 0, 3]);
    let per_day: Vec<(u64, Option<i64>)> = f
        .days
        .iter()
        .map(|d| (d.received, d.first_response_median_ms))
        .collect();
    assert_eq!(
        per_day,
        [
            (1, Some(2 * HOUR)),
            (0, None),
            (1, Some(30 * MIN)),
            (1, Some(6 * HOUR)),
            (1, None),
            (0, None),
            (3, Some(4 * HOUR)),
        ]
    );
    assert_eq!(f.days[6].day.end_ms - f.days[6].day.start_ms, 23 * HOUR);

    // Alice's: received T2, T9 (medians 2 h and 6 h); resolved T1, T2.
    let mine = Scope {
        person: Some(alice()),
        ..Scope::default()
    };
    let f = analytics::figures(store, &mine, &week, &WallClock)
        .await
        .unwrap();
    assert_eq!((f.received, f.resolved), (2, 2));
    assert_eq!(f.first_response.median_ms, Some(4 * HOUR));
    assert_eq!(f.reopened, Share { part: 1, whole: 2 });
    // Tagged billing: received T2; resolved T1 and T2.
    let billing = Scope {
        tag: Some(Tag::parse("billing").unwrap()),
        ..Scope::default()
    };
    let f = analytics::figures(store, &billing, &week, &WallClock)
        .await
        .unwrap();
    assert_eq!((f.received, f.resolved), (1, 2));
    assert_eq!(f.replies_per_ticket, Some(1.5));
    // Another mailbox has none of it.
    let other = Scope {
        mailboxes: vec![MailboxName::parse("sales").unwrap()],
        ..Scope::default()
    };
    let f = analytics::figures(store, &other, &week, &WallClock)
        .await
        .unwrap();
    assert_eq!((f.received, f.resolved), (0, 0));
    // By person: alice (T2, T9 / T1, T2), bob (T3 / T3), nobody (T4, T5,
    // T6, and T10, which bob closed without claiming).
    let by: Vec<(String, u64, u64)> = analytics::breakdown(
        store,
        &Scope::default(),
        &week,
        GroupBy::Person,
        &WallClock,
        None,
    )
    .await
    .unwrap()
    .into_iter()
    .map(|(k, f)| (k, f.received, f.resolved))
    .collect();
    assert_eq!(
        by,
        [
            ("@alice:localhost".to_owned(), 2, 2),
            ("@bob:localhost".to_owned(), 1, 1),
            (analytics::NO_GROUP.to_owned(), 4, 0),
        ]
    );

    // Now is Tue 31 March 12:00 UTC. Waiting: T11 (2 h); T4, T5, T6, T7
    // (1–3 days); T9 (4 d 22 h); T12 (21 days).
    let now = ms("2026-03-31T12:00:00Z");
    let b = analytics::backlog(store, &Scope::default(), now)
        .await
        .unwrap();
    assert_eq!(b.counts, [1, 4, 1, 1]);
    assert_eq!(b.get(AgeBucket::OverAWeek), 1);
    let w = analytics::workload(store, &Scope::default()).await.unwrap();
    assert_eq!(
        w.rows,
        [
            Load {
                owner: Some(alice()),
                open: 0,
                claimed: 1,
                pending: 0
            },
            Load {
                owner: None,
                open: 5,
                claimed: 0,
                pending: 1
            },
        ]
    );
    let t4 = s
        .list_tickets(&TicketFilter {
            status: Some(Status::Pending),
            ..TicketFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(t4.len(), 1, "the reply found in Sent left T4 pending");
}

/// The support team's hours for the SLA week: Monday to Friday
/// 09:00–17:00 in Berlin.
fn office() -> BTreeMap<MailboxName, Calendar> {
    let day = parse_spans("09:00-17:00").unwrap();
    let mut week: [Vec<_>; 7] = Default::default();
    for d in week.iter_mut().take(5) {
        *d = day.clone();
    }
    let berlin = Zone::parse("Europe/Berlin").unwrap();
    BTreeMap::from([(mb(), Calendar::new(berlin, week, Vec::new()).unwrap())])
}

fn policy(name: &str, tag: &str, first: &str, next: Option<&str>) -> Policy {
    Policy {
        name: name.into(),
        mailboxes: Vec::new(),
        priorities: Vec::new(),
        tags: vec![Tag::parse(tag).unwrap()],
        first_response: Some(parse_target(first).unwrap()),
        next_response: next.map(|n| parse_target(n).unwrap()),
        nudge_at: None,
        mention: Vec::new(),
    }
}

/// The same week with two policies (`billing`: first response 4h, next
/// 2h; `vip`: first response 15m) and office hours; worked by hand in
/// docs/ANALYTICS.md ("SLA and business hours").
async fn sla_and_business_hours_match_the_hand_worked_week(s: Arc<SqlStore>) {
    history(&s).await;
    let store: &dyn TicketStore = s.as_ref();
    let week = week();
    let calendars = office();
    let policies = Policies::new(vec![
        policy("billing", "billing", "4h", Some("2h")),
        policy("vip", "vip", "15m", None),
    ]);
    let rules = SlaRules {
        policies: &policies,
        calendars: &calendars,
    };
    // T1 (billing): Sun 23:30 → Mon 09:00, no business time: met, though
    // 9 h 30 min of wall-clock time. T2 (billing): Mon 00:00 → 02:00, none
    // (met); the customer's Tue 09:00 mail answered at 10:00, 1 h of 2 h
    // (met). T3 (vip): Wed 10:00 → 10:30, 30 min of 15: breached.
    let f = analytics::figures_with_sla(store, &Scope::default(), &week, &WallClock, Some(&rules))
        .await
        .unwrap();
    assert_eq!(f.sla_met, Some(Share { part: 2, whole: 3 }));
    assert_eq!(f.hours, Hours::Wall);
    // Alice's (T1, T2) and the billing tag's (T1, T2): both met.
    let mine = Scope {
        person: Some(alice()),
        ..Scope::default()
    };
    let f = analytics::figures_with_sla(store, &mine, &week, &WallClock, Some(&rules))
        .await
        .unwrap();
    assert_eq!(f.sla_met, Some(Share { part: 2, whole: 2 }));
    let by: Vec<(String, Option<Share>)> = analytics::breakdown(
        store,
        &Scope::default(),
        &week,
        GroupBy::Tag,
        &WallClock,
        Some(&rules),
    )
    .await
    .unwrap()
    .into_iter()
    .map(|(k, f)| (k, f.sla_met))
    .collect();
    assert_eq!(
        by,
        [
            ("billing".to_owned(), Some(Share { part: 2, whole: 2 })),
            ("vip".to_owned(), Some(Share { part: 0, whole: 1 })),
            // Untagged tickets received in the week, none resolved.
            (analytics::NO_GROUP.to_owned(), Some(Share::default())),
        ]
    );
    // Without the billing policy T1 and T2 are left out; with no policy at
    // all there is no SLA share.
    let vip_only = Policies::new(vec![policy("vip", "vip", "15m", None)]);
    let rules = SlaRules {
        policies: &vip_only,
        calendars: &calendars,
    };
    let f = analytics::figures_with_sla(store, &Scope::default(), &week, &WallClock, Some(&rules))
        .await
        .unwrap();
    assert_eq!(f.sla_met, Some(Share { part: 0, whole: 1 }));
    let none = Policies::default();
    let rules = SlaRules {
        policies: &none,
        calendars: &calendars,
    };
    let f = analytics::figures_with_sla(store, &Scope::default(), &week, &WallClock, Some(&rules))
        .await
        .unwrap();
    assert_eq!(f.sla_met, None);

    // Business hours: first responses T2 0 (Mon 00:00–02:00), T4 0 (a
    // Sunday), T3 30 min, T9 2 h (Thu 15:00–17:00 of 15:00–21:00): median
    // (0 + 30 min) / 2, p90 the 4th.
    let business = BusinessHours {
        calendars: &calendars,
    };
    let f = analytics::figures(store, &Scope::default(), &week, &business)
        .await
        .unwrap();
    assert_eq!(f.hours, Hours::Business);
    assert_eq!(
        f.first_response,
        DurationStats {
            count: 4,
            median_ms: Some(15 * MIN),
            p90_ms: Some(2 * HOUR)
        }
    );
    // Resolution: T3 1 h (Wed 10:00–11:00); T1 9 h (Mon 8 h, Tue
    // 09:00–10:00); T2 19 h (Mon 8 h, Tue 8 h, Wed 09:00–12:00).
    assert_eq!(
        f.resolution,
        DurationStats {
            count: 3,
            median_ms: Some(9 * HOUR),
            p90_ms: Some(19 * HOUR)
        }
    );
    // The per-day line counts business time too: Thursday's T9 2 h.
    assert_eq!(f.days[3].first_response_median_ms, Some(2 * HOUR));
}

conformance!(
    figures_match_the_hand_worked_week,
    sla_and_business_hours_match_the_hand_worked_week
);
