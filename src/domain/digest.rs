//! The daily digest: when it is due ([`Schedule`], read on the mailbox's
//! clock, so "09:00" stays nine o'clock across a DST change) and what it
//! says ([`build`]): the unclaimed queue and its oldest tickets, the oldest
//! open ticket, how many are snoozed, and each teammate's load.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::{Date, Time, Weekday};
use jiff::{SignedDuration, Timestamp};

use super::ids::{Agent, TicketId};
use super::sla::SlaState;
use super::ticket::TicketState;
use super::time::Zone;

/// How far a search for the next (or last) digest day looks: a year and a
/// bit, so a schedule whose every day is skipped ends rather than spins.
const SEARCH_DAYS: i64 = 400;

/// When a digest is posted: a time of day on some days of the week, except
/// on skipped dates, in a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub at: Time,
    /// Monday-first offsets (0 = Monday … 6 = Sunday) of the days it runs.
    pub days: BTreeSet<i8>,
    /// Dates it does not run (holidays).
    pub skip: BTreeSet<Date>,
    pub zone: Zone,
}

/// A day name as the config writes it (`mon`, `monday`, …).
pub fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

/// Monday to Friday: what `days = "business"` means until business hours
/// give each mailbox its own days.
pub fn business_days() -> BTreeSet<i8> {
    (0..5).collect()
}

impl Schedule {
    /// The digest's time on `date`, if it runs that day. A time the clock
    /// skips that day is read as the same span after the gap.
    pub fn on(&self, date: Date) -> Option<Timestamp> {
        if !self.days.contains(&date.weekday().to_monday_zero_offset()) || self.skip.contains(&date)
        {
            return None;
        }
        date.to_datetime(self.at)
            .to_zoned(self.zone.tz().clone())
            .ok()
            .map(|z| z.timestamp())
    }

    /// The first digest strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = self.zone.at(after).date();
        (0..SEARCH_DAYS)
            .filter_map(|n| start.checked_add(jiff::Span::new().days(n)).ok())
            .filter_map(|d| self.on(d))
            .find(|t| *t > after)
    }

    /// The last digest at or before `at`: the one a late timer catches up
    /// with (once, however many were missed).
    pub fn last_at_or_before(&self, at: Timestamp) -> Option<Timestamp> {
        let start = self.zone.at(at).date();
        (0..SEARCH_DAYS)
            .filter_map(|n| start.checked_sub(jiff::Span::new().days(n)).ok())
            .filter_map(|d| self.on(d))
            .find(|t| *t <= at)
    }

    /// The date a digest time belongs to, on the zone's calendar.
    pub fn day_of(&self, at: Timestamp) -> Date {
        self.zone.at(at).date()
    }
}

/// A ticket as the digest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestTicket {
    pub id: TicketId,
    pub customer: String,
    pub subject: String,
    pub state: TicketState,
    pub created_at: Timestamp,
    pub snoozed: bool,
    /// Its SLA clock's state and due time, when a policy covers it
    /// (`domain::sla`); `None` without one.
    pub sla: Option<(SlaState, Option<Timestamp>)>,
}

/// A titled block of the digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    pub lines: Vec<String>,
}

/// What one digest says, before it is written out; tests read the numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub unclaimed: usize,
    /// The oldest unclaimed tickets, oldest first, at most `top`.
    pub oldest_unclaimed: Vec<TicketId>,
    /// The longest-waiting ticket someone must act on (open or claimed).
    pub oldest_open: Option<TicketId>,
    pub snoozed: usize,
    /// Per teammate: (claimed, pending) tickets they own.
    pub workload: BTreeMap<Agent, (usize, usize)>,
    pub text: String,
}

/// The SLA's "at risk" and "breached" tickets, most overdue first, at most
/// `top` each. Left out when no ticket of the mailbox has an SLA clock (no
/// policy covers it), rather than claim that nothing is at risk.
fn sla_section(tickets: &[&DigestTicket], now: Timestamp, top: usize) -> Option<Section> {
    if tickets.iter().all(|t| t.sla.is_none()) {
        return None;
    }
    let of = |want: SlaState| {
        let mut v: Vec<&DigestTicket> = tickets
            .iter()
            .copied()
            .filter(|t| t.sla.is_some_and(|(state, _)| state == want))
            .collect();
        v.sort_by_key(|t| (t.sla.and_then(|(_, due)| due), t.id.get()));
        v
    };
    let (breached, at_risk) = (of(SlaState::Breached), of(SlaState::AtRisk));
    let mut lines = Vec::new();
    for (word, list) in [("breached", &breached), ("at risk", &at_risk)] {
        for t in list.iter().take(top) {
            let due = match t.sla.and_then(|(_, due)| due) {
                Some(due) if due <= now => {
                    format!(
                        "{word}, due {} ago",
                        crate::domain::sla::human(now.duration_since(due))
                    )
                }
                Some(due) => format!(
                    "{word}, due in {}",
                    crate::domain::sla::human(due.duration_since(now))
                ),
                None => word.to_owned(),
            };
            lines.push(format!("{} · {due} · {} · {}", t.id, t.customer, t.subject));
        }
        if list.len() > top {
            lines.push(format!("… and {} more {word}", list.len() - top));
        }
    }
    Some(Section {
        title: format!(
            "SLA: {} breached, {} at risk",
            breached.len(),
            at_risk.len()
        ),
        lines,
    })
}

/// The digest of `tickets` (a mailbox's, any status) as of `now`.
/// `heading` names the mailbox; `late` says when it was due if it is
/// posted late (mailroom was down at its time).
pub fn build(
    heading: &str,
    day: Date,
    tickets: &[DigestTicket],
    now: Timestamp,
    top: usize,
    late: Option<&str>,
) -> Digest {
    let live: Vec<&DigestTicket> = tickets
        .iter()
        .filter(|t| {
            matches!(
                t.state,
                TicketState::Open | TicketState::Claimed { .. } | TicketState::Pending { .. }
            )
        })
        .collect();
    fn by_age(mut v: Vec<&DigestTicket>) -> Vec<&DigestTicket> {
        v.sort_by_key(|t| (t.created_at, t.id.get()));
        v
    }
    let unclaimed = by_age(
        live.iter()
            .copied()
            .filter(|t| t.state == TicketState::Open && !t.snoozed)
            .collect(),
    );
    let acting = by_age(
        live.iter()
            .copied()
            .filter(|t| {
                !t.snoozed && matches!(t.state, TicketState::Open | TicketState::Claimed { .. })
            })
            .collect(),
    );
    let snoozed = live.iter().filter(|t| t.snoozed).count();
    let mut workload: BTreeMap<Agent, (usize, usize)> = BTreeMap::new();
    for t in &live {
        match &t.state {
            TicketState::Claimed { by } => workload.entry(by.clone()).or_default().0 += 1,
            TicketState::Pending { owner: Some(o) } => {
                workload.entry(o.clone()).or_default().1 += 1
            }
            _ => {}
        }
    }

    let mut sections = Vec::new();
    let mut lines: Vec<String> = unclaimed
        .iter()
        .take(top)
        .map(|t| line(t, now, None))
        .collect();
    if unclaimed.len() > top {
        lines.push(format!("… and {} more", unclaimed.len() - top));
    }
    sections.push(Section {
        title: format!("Unclaimed: {}", unclaimed.len()),
        lines,
    });
    sections.push(Section {
        title: match acting.first() {
            Some(t) => format!("Oldest open: {}", line(t, now, t.state.owner())),
            None => "Oldest open: none".to_owned(),
        },
        lines: Vec::new(),
    });
    sections.push(Section {
        title: format!("Snoozed: {snoozed}"),
        lines: Vec::new(),
    });
    if let Some(sla) = sla_section(&live, now, top) {
        sections.push(sla);
    }
    sections.push(Section {
        title: "Workload".to_owned(),
        lines: if workload.is_empty() {
            vec!["nobody owns an open ticket".to_owned()]
        } else {
            workload
                .iter()
                .map(|(who, (claimed, pending))| {
                    format!("{who}: {claimed} claimed, {pending} pending")
                })
                .collect()
        },
    });

    let mut text = format!(
        "📋 Daily digest · {heading} · {}",
        day.strftime("%a %-d %b %Y")
    );
    if let Some(due) = late {
        text.push_str(&format!(
            " (late: due {due}; mailroom was not running then)"
        ));
    }
    for s in &sections {
        text.push('\n');
        text.push_str(&s.title);
        for l in &s.lines {
            text.push_str("\n  • ");
            text.push_str(l);
        }
    }
    Digest {
        unclaimed: unclaimed.len(),
        oldest_unclaimed: unclaimed.iter().take(top).map(|t| t.id).collect(),
        oldest_open: acting.first().map(|t| t.id),
        snoozed,
        workload,
        text,
    }
}

/// `#12 · waiting 2d 3h · jane@example.com · Subject`, with the owner when given.
fn line(t: &DigestTicket, now: Timestamp, owner: Option<&Agent>) -> String {
    // A hostile 1 MB subject must not make the digest too big to post.
    let subject: String = match t.subject.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &t.subject[..cut]),
        None => t.subject.clone(),
    };
    let owner = owner.map(|o| format!(" · {o}")).unwrap_or_default();
    format!(
        "{} · waiting {} · {}{owner} · {subject}",
        t.id,
        age(now.duration_since(t.created_at)),
        t.customer
    )
}

/// `3d 4h`, `2h 5m`, `12m`.
pub fn age(d: SignedDuration) -> String {
    let mins = d.as_mins().max(0);
    let (days, hours, minutes) = (mins / 1440, mins / 60 % 24, mins % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, h) => format!("{h}h {minutes}m"),
        (d, h) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn weekdays_at_nine(zone: &str) -> Schedule {
        Schedule {
            at: Time::new(9, 0, 0, 0).unwrap(),
            days: business_days(),
            skip: BTreeSet::new(),
            zone: Zone::parse(zone).unwrap(),
        }
    }

    #[test]
    fn the_next_digest_skips_weekends_and_skipped_dates() {
        let mut s = weekdays_at_nine("Europe/Berlin");
        // Friday 4 Dec 2026, 10:00 Berlin: past today's; the weekend is
        // skipped, so Monday 09:00 (08:00 UTC).
        let fri = ts("2026-12-04T09:00:00Z");
        assert_eq!(s.next_after(fri), Some(ts("2026-12-07T08:00:00Z")));
        // Friday 08:00 Berlin: today's is still ahead.
        assert_eq!(
            s.next_after(ts("2026-12-04T07:00:00Z")),
            Some(ts("2026-12-04T08:00:00Z"))
        );
        // Exactly at the digest time: the next one, not this one.
        assert_eq!(
            s.next_after(ts("2026-12-04T08:00:00Z")),
            Some(ts("2026-12-07T08:00:00Z"))
        );
        s.skip.insert(Date::new(2026, 12, 7).unwrap());
        assert_eq!(s.next_after(fri), Some(ts("2026-12-08T08:00:00Z")));
        s.days.clear();
        assert_eq!(s.next_after(fri), None);
    }

    #[test]
    fn nine_oclock_stays_nine_oclock_across_dst() {
        let s = weekdays_at_nine("Europe/Berlin");
        // Friday 27 March 2026 09:00 CET is 08:00 UTC; Berlin springs
        // forward on Sunday 29 March, so Monday 30 March 09:00 CEST is
        // 07:00 UTC.
        assert_eq!(
            s.next_after(ts("2026-03-27T08:00:00Z")),
            Some(ts("2026-03-30T07:00:00Z"))
        );
        // And back in October: Friday 23 Oct 09:00 CEST = 07:00 UTC,
        // Monday 26 Oct 09:00 CET = 08:00 UTC.
        assert_eq!(
            s.next_after(ts("2026-10-23T07:00:00Z")),
            Some(ts("2026-10-26T08:00:00Z"))
        );
        // A digest at 02:30 on the spring-forward day is at 03:30.
        let mut night = weekdays_at_nine("Europe/Berlin");
        night.at = Time::new(2, 30, 0, 0).unwrap();
        night.days = (0..7).collect();
        assert_eq!(
            night.next_after(ts("2026-03-28T12:00:00Z")),
            Some(ts("2026-03-29T01:30:00Z"))
        );
    }

    #[test]
    fn a_late_timer_catches_up_with_the_last_digest_only() {
        let s = weekdays_at_nine("UTC");
        // Down from Tuesday to Thursday 10:00: the last one is Thursday's.
        assert_eq!(
            s.last_at_or_before(ts("2026-12-03T10:00:00Z")),
            Some(ts("2026-12-03T09:00:00Z"))
        );
        // Monday 08:00: the last one was Friday's.
        assert_eq!(
            s.last_at_or_before(ts("2026-12-07T08:00:00Z")),
            Some(ts("2026-12-04T09:00:00Z"))
        );
        assert_eq!(
            s.day_of(ts("2026-12-04T09:00:00Z")),
            Date::new(2026, 12, 4).unwrap()
        );
    }

    fn ticket(id: i64, state: TicketState, created: &str, snoozed: bool) -> DigestTicket {
        DigestTicket {
            id: TicketId::new(id),
            customer: format!("c{id}@example.com"),
            subject: format!("Subject {id}"),
            state,
            created_at: ts(created),
            snoozed,
            sla: None,
        }
    }

    #[test]
    fn the_sla_section_lists_breached_then_at_risk_and_is_left_out_without_policies() {
        let now = ts("2026-12-04T09:00:00Z");
        let day = Date::new(2026, 12, 4).unwrap();
        let plain = vec![ticket(1, TicketState::Open, "2026-12-01T09:00:00Z", false)];
        let d = build("Support", day, &plain, now, 5, None);
        assert!(!d.text.contains("SLA"), "no policy, no section: {}", d.text);

        let with = |id, state, due: &str| DigestTicket {
            sla: Some((state, Some(ts(due)))),
            ..ticket(id, TicketState::Open, "2026-12-03T09:00:00Z", false)
        };
        let tickets = vec![
            with(1, SlaState::OnTrack, "2026-12-04T15:00:00Z"),
            with(2, SlaState::AtRisk, "2026-12-04T10:30:00Z"),
            with(3, SlaState::Breached, "2026-12-04T07:00:00Z"),
            with(4, SlaState::Breached, "2026-12-03T09:00:00Z"),
            // Closed tickets are not the digest's business, whatever their clock.
            DigestTicket {
                sla: Some((SlaState::Breached, Some(ts("2026-12-01T09:00:00Z")))),
                ..ticket(
                    5,
                    TicketState::Closed { owner: None },
                    "2026-11-30T09:00:00Z",
                    false,
                )
            },
        ];
        let d = build("Support", day, &tickets, now, 5, None);
        assert!(d.text.contains("SLA: 2 breached, 1 at risk"), "{}", d.text);
        let at = |needle: &str| {
            d.text
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} in {}", d.text))
        };
        assert!(at("#4 · breached, due 1d ago") < at("#3 · breached, due 2h ago"));
        assert!(at("#3 · breached") < at("#2 · at risk, due in 1h 30m"));
        assert!(!d.text.contains("#5 ·"), "{}", d.text);
    }

    #[test]
    fn the_digest_counts_what_the_team_must_know() {
        let alice = Agent::parse("@alice:x").unwrap();
        let bob = Agent::parse("@bob:x").unwrap();
        let tickets = vec![
            ticket(1, TicketState::Open, "2026-12-01T09:00:00Z", false),
            ticket(2, TicketState::Open, "2026-11-30T09:00:00Z", false),
            ticket(3, TicketState::Open, "2026-11-01T09:00:00Z", true),
            ticket(
                4,
                TicketState::Claimed { by: alice.clone() },
                "2026-11-20T09:00:00Z",
                false,
            ),
            ticket(
                5,
                TicketState::Pending {
                    owner: Some(alice.clone()),
                },
                "2026-11-02T09:00:00Z",
                false,
            ),
            ticket(
                6,
                TicketState::Claimed { by: bob.clone() },
                "2026-12-03T09:00:00Z",
                false,
            ),
            ticket(
                7,
                TicketState::Closed {
                    owner: Some(bob.clone()),
                },
                "2026-10-01T09:00:00Z",
                false,
            ),
            ticket(8, TicketState::Spam, "2026-10-01T09:00:00Z", false),
            ticket(9, TicketState::Open, "2026-12-02T09:00:00Z", false),
        ];
        let now = ts("2026-12-04T09:00:00Z");
        let d = build(
            "Support",
            Date::new(2026, 12, 4).unwrap(),
            &tickets,
            now,
            2,
            None,
        );
        assert_eq!(d.unclaimed, 3);
        assert_eq!(d.oldest_unclaimed, [TicketId::new(2), TicketId::new(1)]);
        assert_eq!(d.oldest_open, Some(TicketId::new(4)));
        assert_eq!(d.snoozed, 1);
        assert_eq!(d.workload[&alice], (1, 1));
        assert_eq!(d.workload[&bob], (1, 0));
        assert!(d.text.starts_with("📋 Daily digest · Support · Fri 4 Dec 2026\nUnclaimed: 3\n  • #2 · waiting 4d 0h · c2@example.com · Subject 2"), "{}", d.text);
        assert!(d.text.contains("… and 1 more"), "{}", d.text);
        assert!(
            d.text.contains(
                "Oldest open: #4 · waiting 14d 0h · c4@example.com · @alice:x · Subject 4"
            ),
            "{}",
            d.text
        );
        assert!(
            d.text.contains("@alice:x: 1 claimed, 1 pending"),
            "{}",
            d.text
        );
        assert!(!d.text.contains("late"), "{}", d.text);
        let late = build(
            "Support",
            Date::new(2026, 12, 4).unwrap(),
            &[],
            now,
            2,
            Some("Fri 4 Dec 09:00"),
        );
        assert!(
            late.text.contains("(late: due Fri 4 Dec 09:00"),
            "{}",
            late.text
        );
        assert!(late.text.contains("Unclaimed: 0") && late.text.contains("Oldest open: none"));
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(SignedDuration::from_mins(12)), "12m");
        assert_eq!(age(SignedDuration::from_mins(125)), "2h 5m");
        assert_eq!(age(SignedDuration::from_hours(76)), "3d 4h");
        assert_eq!(age(SignedDuration::from_mins(-5)), "0m");
    }

    #[test]
    fn day_names() {
        assert_eq!(weekday("Mon"), Some(Weekday::Monday));
        assert_eq!(weekday("sunday"), Some(Weekday::Sunday));
        assert_eq!(weekday("funday"), None);
    }
}
