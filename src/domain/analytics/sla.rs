//! Whether a resolved ticket met its SLA: each clock of its life replayed
//! with the live clock's own rules ([`crate::domain::sla::clock`]: the
//! policy's targets, the mailbox's business hours, pending pauses), so the
//! figures and the card never disagree about a ticket.
//!
//! A clock starts at a customer mail that nothing waits on yet (the
//! ticket's first mail, or the first customer mail after an answer) and
//! ends at the next answer; one still running at the ticket's last close
//! ends there. A clock that reached its target before it ended was
//! breached, as the card said at that moment; a ticket is **breached** if
//! any of its clocks was, **met** otherwise. A ticket no policy holds for,
//! or whose policy sets no target for any clock it had, is left out.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::domain::calendar::Calendar;
use crate::domain::ids::MailboxName;
use crate::domain::sla::{History, Pause, Policies, Policy, SlaState, clock};

/// What the SLA figures are measured against: the configured policies and
/// each mailbox's calendar (always open without business hours).
#[derive(Debug, Clone, Copy)]
pub struct SlaRules<'a> {
    pub policies: &'a Policies,
    pub calendars: &'a BTreeMap<MailboxName, Calendar>,
}

/// How a resolved ticket did against its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaOutcome {
    Met,
    Breached,
}

/// The facts of a ticket's life that decide its clocks, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaFacts {
    /// The customer's own mails after the first (automatic replies left
    /// out, as the live clock leaves them out).
    pub customer_mails_ms: Vec<i64>,
    /// Answers to the customer: replies sent and replies found in Sent.
    pub answers_ms: Vec<i64>,
    /// Times pending on the customer: `(from, until)`, `until` `None` while
    /// still pending.
    pub pauses: Vec<(i64, Option<i64>)>,
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// One event of the replay; customer mails sort before answers at the
/// same instant (an answer written at the instant a mail came in answers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    CustomerMail,
    Answer,
}

/// The outcome of a ticket created at `created_ms` and last closed at
/// `closed_ms` under `policy` and `calendar`; `None` when none of its
/// clocks had a target.
pub fn outcome(
    policy: &Policy,
    calendar: &Calendar,
    created_ms: i64,
    closed_ms: i64,
    facts: &SlaFacts,
) -> Option<SlaOutcome> {
    let mut events: Vec<(i64, Event)> = std::iter::once((created_ms, Event::CustomerMail))
        .chain(
            facts
                .customer_mails_ms
                .iter()
                .map(|t| (*t, Event::CustomerMail)),
        )
        .chain(facts.answers_ms.iter().map(|t| (*t, Event::Answer)))
        .filter(|(t, _)| *t <= closed_ms)
        .collect();
    events.sort_unstable();
    let pauses: Vec<Pause> = facts
        .pauses
        .iter()
        .map(|(from, until)| Pause {
            from: at(*from),
            until: until.map(at),
        })
        .collect();
    let mut first_response: Option<i64> = None;
    let mut awaiting: Option<i64> = None;
    let mut judged: Option<SlaOutcome> = None;
    // The clock that ran from `since` up to `end`, as the card saw it just
    // before the answer (or the close) stopped it.
    let mut judge = |since: i64, end: i64, first_response: Option<i64>| {
        let history = History {
            first_response_at: first_response.map(at),
            awaiting_since: Some(at(since)),
            pauses: pauses.clone(),
            inactive: false,
        };
        if let Some(c) = clock(policy, calendar, &history, at(end)) {
            let this = match c.state {
                SlaState::Breached => SlaOutcome::Breached,
                _ => SlaOutcome::Met,
            };
            judged = Some(match (judged, this) {
                (Some(SlaOutcome::Breached), _) | (_, SlaOutcome::Breached) => SlaOutcome::Breached,
                _ => SlaOutcome::Met,
            });
        }
    };
    for (t, event) in events {
        match event {
            Event::CustomerMail => {
                awaiting.get_or_insert(t);
            }
            Event::Answer => {
                if let Some(since) = awaiting.take() {
                    judge(since, t, first_response);
                }
                first_response.get_or_insert(t);
            }
        }
    }
    if let Some(since) = awaiting {
        judge(since, closed_ms, first_response);
    }
    judged
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;
    use crate::domain::calendar::parse_spans;
    use crate::domain::sla::Mention;
    use crate::domain::time::Zone;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn policy(first_h: i64, next_h: Option<i64>) -> Policy {
        Policy {
            name: "p".into(),
            mailboxes: Vec::new(),
            priorities: Vec::new(),
            tags: Vec::new(),
            first_response: Some(SignedDuration::from_hours(first_h)),
            next_response: next_h.map(SignedDuration::from_hours),
            nudge_at: None,
            mention: vec![Mention::Room],
        }
    }

    /// Mon–Fri 09:00–17:00 in Berlin.
    fn office() -> Calendar {
        let day = parse_spans("09:00-17:00").unwrap();
        let mut week: [Vec<_>; 7] = Default::default();
        for d in week.iter_mut().take(5) {
            *d = day.clone();
        }
        Calendar::new(Zone::parse("Europe/Berlin").unwrap(), week, Vec::new()).unwrap()
    }

    #[test]
    fn a_first_answer_within_business_time_is_met_across_a_weekend() {
        // Friday 2026-06-05 16:00 CEST; 2h target: 1h on Friday, 1h on
        // Monday; answered Monday 09:59 CEST (1h 59m of business time).
        let created = ms("2026-06-05T14:00:00Z");
        let facts = SlaFacts {
            answers_ms: vec![ms("2026-06-08T07:59:00Z")],
            ..SlaFacts::default()
        };
        let closed = ms("2026-06-08T12:00:00Z");
        assert_eq!(
            outcome(&policy(2, None), &office(), created, closed, &facts),
            Some(SlaOutcome::Met)
        );
        // At 10:00 CEST exactly the card says breached: so do the figures.
        let facts = SlaFacts {
            answers_ms: vec![ms("2026-06-08T08:00:00Z")],
            ..SlaFacts::default()
        };
        assert_eq!(
            outcome(&policy(2, None), &office(), created, closed, &facts),
            Some(SlaOutcome::Breached)
        );
    }

    #[test]
    fn a_late_next_response_breaches_and_pending_time_does_not_count() {
        let always = Calendar::always(Zone::utc());
        let created = ms("2026-06-01T08:00:00Z");
        let mut facts = SlaFacts {
            // First answer after 1h (met), the customer writes at 12:00,
            // the next answer at 17:00: 5h against a 4h target.
            customer_mails_ms: vec![ms("2026-06-01T12:00:00Z")],
            answers_ms: vec![created + HOUR, ms("2026-06-01T17:00:00Z")],
            pauses: Vec::new(),
        };
        let closed = ms("2026-06-01T18:00:00Z");
        let p = policy(2, Some(4));
        assert_eq!(
            outcome(&p, &always, created, closed, &facts),
            Some(SlaOutcome::Breached)
        );
        // Pending on the customer 13:00–15:00: 3h counted, met.
        facts.pauses = vec![(ms("2026-06-01T13:00:00Z"), Some(ms("2026-06-01T15:00:00Z")))];
        assert_eq!(
            outcome(&p, &always, created, closed, &facts),
            Some(SlaOutcome::Met)
        );
        // Without a next-response target only the first clock is judged.
        facts.pauses.clear();
        assert_eq!(
            outcome(&policy(2, None), &always, created, closed, &facts),
            Some(SlaOutcome::Met)
        );
    }

    #[test]
    fn a_clock_still_running_at_the_close_is_judged_there() {
        let always = Calendar::always(Zone::utc());
        let created = ms("2026-06-01T08:00:00Z");
        let none = SlaFacts::default();
        // Closed unanswered after 1h: nothing was overdue.
        assert_eq!(
            outcome(&policy(2, None), &always, created, created + HOUR, &none),
            Some(SlaOutcome::Met)
        );
        // After 3h: it was.
        assert_eq!(
            outcome(
                &policy(2, None),
                &always,
                created,
                created + 3 * HOUR,
                &none
            ),
            Some(SlaOutcome::Breached)
        );
        // A policy with only a next-response target never timed a ticket
        // nobody wrote to again: left out.
        let mut next_only = policy(2, Some(4));
        next_only.first_response = None;
        let answered = SlaFacts {
            answers_ms: vec![created + HOUR],
            ..SlaFacts::default()
        };
        assert_eq!(
            outcome(&next_only, &always, created, created + 2 * HOUR, &answered),
            None
        );
    }
}
