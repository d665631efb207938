use super::*;
use crate::domain::routing::Priority;
use crate::domain::time::Zone;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

fn ms(s: &str) -> i64 {
    s.parse::<Timestamp>().unwrap().as_millisecond()
}

fn mailbox() -> MailboxName {
    MailboxName::parse("support").unwrap()
}

fn received(created: &str, response_after: Option<i64>) -> ReceivedTicket {
    let created_ms = ms(created);
    ReceivedTicket {
        mailbox: mailbox(),
        owner: None,
        tags: Vec::new(),
        created_ms,
        first_response_ms: response_after.map(|d| created_ms + d),
    }
}

#[test]
fn median_and_p90_by_hand() {
    let s = DurationStats::of(vec![50, 10, 40, 20, 30]);
    assert_eq!((s.count, s.median_ms, s.p90_ms), (5, Some(30), Some(50)));
    // Even count: the mean of 20 and 30; p90 rank ⌈0.9·4⌉ = 4.
    let s = DurationStats::of(vec![40, 10, 30, 20]);
    assert_eq!((s.median_ms, s.p90_ms), (Some(25), Some(40)));
    // Rounded down: (1 + 2) / 2.
    assert_eq!(DurationStats::of(vec![1, 2]).median_ms, Some(1));
    // Ten values: p90 is the 9th.
    let s = DurationStats::of((1..=10).collect());
    assert_eq!(s.p90_ms, Some(9));
    assert_eq!(DurationStats::of(vec![]), DurationStats::default());
    // Large values do not overflow.
    let big = i64::MAX - 1;
    assert_eq!(DurationStats::of(vec![big, big]).median_ms, Some(big));
    assert_eq!(nearest_rank(90, 1), 1);
    assert_eq!(nearest_rank(90, 11), 10);
}

#[test]
fn shares_of_nothing_are_none() {
    assert_eq!(Share::default().percent(), None);
    assert_eq!(Share { part: 1, whole: 4 }.percent(), Some(25.0));
}

#[test]
fn volume_lands_on_local_hours_and_days_across_the_spring_change() {
    let berlin = Zone::parse("Europe/Berlin").unwrap();
    let week = Period::containing(
        PeriodKind::Week,
        "2026-03-25T12:00:00Z".parse().unwrap(),
        &berlin,
    )
    .unwrap();
    let rows = PeriodRows {
        received: vec![
            // Monday 23 March 00:30 Berlin (UTC+1).
            received("2026-03-22T23:30:00Z", Some(90 * MIN)),
            // Sunday 29 March 01:30 Berlin, before the change (UTC+1).
            received("2026-03-29T00:30:00Z", Some(30 * MIN)),
            // Sunday 29 March 03:30 Berlin, after it (UTC+2).
            received("2026-03-29T01:30:00Z", None),
            // Before the week: Sunday 22 March 23:59 Berlin.
        ],
        resolved: Vec::new(),
        ..PeriodRows::default()
    };
    let f = Figures::compute(&week, &rows, &WallClock);
    assert_eq!(f.received, 3);
    assert_eq!(f.unanswered, 1);
    assert_eq!(f.first_response.median_ms, Some(60 * MIN));
    assert_eq!(f.first_response.p90_ms, Some(90 * MIN));
    assert_eq!(f.by_hour[0], 1);
    assert_eq!(f.by_hour[1], 1);
    assert_eq!(f.by_hour[3], 1);
    assert_eq!(f.by_weekday, [1, 0, 0, 0, 0, 0, 2]);
    assert_eq!(f.days.len(), 7);
    assert_eq!(f.days[0].received, 1);
    assert_eq!(f.days[0].first_response_median_ms, Some(90 * MIN));
    assert_eq!(f.days[6].received, 2);
    assert_eq!(f.days[6].first_response_median_ms, Some(30 * MIN));
    assert_eq!(f.resolution, DurationStats::default());
    assert_eq!(f.replies_per_ticket, None);
}

#[test]
fn resolution_replies_and_reopens() {
    let utc = Zone::utc();
    let day = Period::containing(
        PeriodKind::Day,
        "2026-05-04T10:00:00Z".parse().unwrap(),
        &utc,
    )
    .unwrap();
    let resolved = |created: &str, after: i64, replies: u64, reopened: bool| ResolvedTicket {
        mailbox: mailbox(),
        owner: None,
        tags: Vec::new(),
        created_ms: ms(created),
        last_close_ms: ms(created) + after,
        replies,
        reopened,
        priority: Priority::Normal,
        sla_facts: None,
        sla: None,
    };
    let rows = PeriodRows {
        received: Vec::new(),
        resolved: vec![
            resolved("2026-05-01T10:00:00Z", 3 * DAY, 2, false),
            resolved("2026-05-04T08:00:00Z", 2 * HOUR, 1, false),
            resolved("2026-04-20T00:00:00Z", 14 * DAY + 12 * HOUR, 4, true),
        ],
        ..PeriodRows::default()
    };
    let f = Figures::compute(&day, &rows, &WallClock);
    assert_eq!(f.resolved, 3);
    assert_eq!(f.resolution.median_ms, Some(3 * DAY));
    assert_eq!(f.resolution.p90_ms, Some(14 * DAY + 12 * HOUR));
    assert_eq!(f.replies_per_ticket, Some(7.0 / 3.0));
    assert_eq!(f.reopened, Share { part: 1, whole: 3 });
}

/// A business-hours calendar plugs in through [`WorkTime`]; here one that
/// counts only half of every duration, to show the figures follow it.
#[test]
fn durations_go_through_the_work_time_given() {
    struct Half;
    impl WorkTime for Half {
        fn between(&self, _mailbox: &MailboxName, from_ms: i64, to_ms: i64) -> i64 {
            (to_ms - from_ms) / 2
        }
    }
    let utc = Zone::utc();
    let day = Period::containing(
        PeriodKind::Day,
        "2026-05-04T10:00:00Z".parse().unwrap(),
        &utc,
    )
    .unwrap();
    let rows = PeriodRows {
        received: vec![received("2026-05-04T09:00:00Z", Some(4 * HOUR))],
        resolved: Vec::new(),
        ..PeriodRows::default()
    };
    let f = Figures::compute(&day, &rows, &Half);
    assert_eq!(f.first_response.median_ms, Some(2 * HOUR));
}

#[test]
fn breakdown_by_tag_counts_a_ticket_in_each_of_its_tags() {
    let utc = Zone::utc();
    let day = Period::containing(
        PeriodKind::Day,
        "2026-05-04T10:00:00Z".parse().unwrap(),
        &utc,
    )
    .unwrap();
    let mut a = received("2026-05-04T09:00:00Z", None);
    a.tags = vec![Tag::parse("billing").unwrap(), Tag::parse("vip").unwrap()];
    let mut b = received("2026-05-04T10:00:00Z", None);
    b.owner = Some(Agent::parse("@alice:example.org").unwrap());
    let rows = PeriodRows {
        received: vec![a, b.clone(), b],
        resolved: Vec::new(),
        ..PeriodRows::default()
    };
    let by_tag: Vec<(String, u64)> = Figures::breakdown(&day, &rows, GroupBy::Tag, &WallClock)
        .into_iter()
        .map(|(k, f)| (k, f.received))
        .collect();
    assert_eq!(
        by_tag,
        vec![
            ("billing".to_owned(), 1),
            ("vip".to_owned(), 1),
            (NO_GROUP.to_owned(), 2)
        ]
    );
    let by_person: Vec<(String, u64)> =
        Figures::breakdown(&day, &rows, GroupBy::Person, &WallClock)
            .into_iter()
            .map(|(k, f)| (k, f.received))
            .collect();
    assert_eq!(
        by_person,
        vec![
            ("@alice:example.org".to_owned(), 2),
            (NO_GROUP.to_owned(), 1)
        ]
    );
}

#[test]
fn backlog_buckets_and_workload() {
    let now = ms("2026-05-10T12:00:00Z");
    let alice = Agent::parse("@alice:example.org").unwrap();
    let t = |status, owner: Option<&Agent>, age| ActiveTicket {
        mailbox: mailbox(),
        status,
        owner: owner.cloned(),
        created_ms: now - age,
    };
    let active = vec![
        t(Status::Open, None, HOUR),
        t(Status::Claimed, Some(&alice), DAY - 1),
        t(Status::Claimed, Some(&alice), DAY),
        t(Status::Pending, Some(&alice), 3 * DAY),
        t(Status::Pending, None, 7 * DAY),
    ];
    let b = Backlog::compute(&active, now);
    assert_eq!(b.counts, [2, 1, 1, 1]);
    assert_eq!(b.total(), 5);
    assert_eq!(b.get(AgeBucket::OverAWeek), 1);
    let w = Workload::compute(&active);
    assert_eq!(
        w.rows,
        vec![
            Load {
                owner: Some(alice),
                open: 0,
                claimed: 2,
                pending: 1
            },
            Load {
                owner: None,
                open: 1,
                claimed: 0,
                pending: 1
            },
        ]
    );
}

#[test]
fn counts_from_the_database_give_the_same_backlog_and_workload() {
    let now = ms("2026-05-10T12:00:00Z");
    let alice = Agent::parse("@alice:example.org").unwrap();
    let t = |status, owner: Option<&Agent>, age| ActiveTicket {
        mailbox: mailbox(),
        status,
        owner: owner.cloned(),
        created_ms: now - age,
    };
    let active = vec![
        t(Status::Open, None, HOUR),
        t(Status::Claimed, Some(&alice), DAY - 1),
        t(Status::Claimed, Some(&alice), DAY),
        t(Status::Pending, Some(&alice), 3 * DAY),
        t(Status::Pending, None, 7 * DAY),
    ];
    // What a GROUP BY with the cuts of `created_after` makes of them.
    let cuts = AgeBucket::created_after(now);
    let mut counts: Vec<WaitingCount> = Vec::new();
    for a in &active {
        let age = match a.created_ms {
            c if c > cuts[0] => AgeBucket::UnderADay,
            c if c > cuts[1] => AgeBucket::OneToThreeDays,
            c if c > cuts[2] => AgeBucket::ThreeToSevenDays,
            _ => AgeBucket::OverAWeek,
        };
        assert_eq!(age, AgeBucket::of(now - a.created_ms), "{a:?}");
        match counts
            .iter_mut()
            .find(|c| c.owner == a.owner && c.status == a.status && c.age == age)
        {
            Some(c) => c.count += 1,
            None => counts.push(WaitingCount {
                owner: a.owner.clone(),
                status: a.status,
                age,
                count: 1,
            }),
        }
    }
    assert_eq!(
        Backlog::from_counts(&counts, now),
        Backlog::compute(&active, now)
    );
    assert_eq!(Workload::from_counts(&counts), Workload::compute(&active));
}

#[test]
fn the_sla_share_counts_judged_tickets_only_and_only_when_judged() {
    let utc = Zone::utc();
    let day = Period::containing(
        PeriodKind::Day,
        "2026-05-04T10:00:00Z".parse().unwrap(),
        &utc,
    )
    .unwrap();
    let resolved = |sla: Option<SlaOutcome>| ResolvedTicket {
        mailbox: mailbox(),
        owner: None,
        tags: Vec::new(),
        created_ms: ms("2026-05-04T08:00:00Z"),
        last_close_ms: ms("2026-05-04T09:00:00Z"),
        replies: 1,
        reopened: false,
        priority: Priority::Normal,
        sla_facts: None,
        sla,
    };
    let mut rows = PeriodRows {
        received: Vec::new(),
        resolved: vec![
            resolved(Some(SlaOutcome::Met)),
            resolved(Some(SlaOutcome::Breached)),
            resolved(Some(SlaOutcome::Met)),
            resolved(None),
        ],
        sla_judged: false,
    };
    assert_eq!(Figures::compute(&day, &rows, &WallClock).sla_met, None);
    rows.sla_judged = true;
    let f = Figures::compute(&day, &rows, &WallClock);
    assert_eq!(f.sla_met, Some(Share { part: 2, whole: 3 }));
    let text = table::render(
        "support",
        &f,
        &Backlog::compute(&[], 0),
        &Workload::default(),
    );
    assert!(
        text.contains("SLA met            67 % (2 of 3; 1 breached)"),
        "{text}"
    );
    assert!(!text.contains("business hours"), "{text}");
    // No policies: nothing is judged, and the row is left out.
    let none = crate::domain::sla::Policies::default();
    let calendars = std::collections::BTreeMap::new();
    let mut unjudged = PeriodRows {
        sla_judged: false,
        ..rows.clone()
    };
    unjudged.judge_sla(&SlaRules {
        policies: &none,
        calendars: &calendars,
    });
    assert!(!unjudged.sla_judged);
    let f = Figures::compute(&day, &unjudged, &WallClock);
    let text = table::render(
        "support",
        &f,
        &Backlog::compute(&[], 0),
        &Workload::default(),
    );
    assert!(!text.contains("SLA"), "{text}");
}
