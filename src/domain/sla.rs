//! Service-level targets: which [`Policy`] holds for a ticket, and its
//! [`SlaClock`] at an instant — the target, when it falls due, how much
//! business time is left, and whether it is on track, at risk (past the
//! nudge threshold), breached, paused or met.
//!
//! Two clocks, one at a time: **first response** runs from the ticket's
//! first mail until a teammate first answers; **next response** runs from
//! the first customer mail after a teammate's answer until the next
//! answer. A ticket pending on the customer pauses the running clock (its
//! due time moves by the paused business time); a closed or set-aside
//! ticket has none. Time is business time of the mailbox's
//! [`Calendar`].
//!
//! Pure: the caller passes the ticket's [`History`] and "now". The digest,
//! the board and the SLA timers all read [`clock`].

use std::fmt;

use jiff::{SignedDuration, Timestamp};

use super::calendar::Calendar;
use super::ids::{MailboxName, Tag};
use super::routing::{Person, Priority};

/// Which answer a clock waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    First,
    Next,
}

impl Response {
    pub fn as_str(self) -> &'static str {
        match self {
            Response::First => "first response",
            Response::Next => "next response",
        }
    }
}

/// Who a breach calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mention {
    /// The whole room: `@room` on Matrix, `<!channel>` on Slack.
    Room,
    Person(Person),
}

/// One `[[sla]]`: the conditions a ticket must meet (each given one; an
/// empty list matches any) and its targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub mailboxes: Vec<MailboxName>,
    pub priorities: Vec<Priority>,
    pub tags: Vec<Tag>,
    pub first_response: Option<SignedDuration>,
    pub next_response: Option<SignedDuration>,
    /// Percent of the target after which the thread is nudged; `None`: never.
    pub nudge_at: Option<u8>,
    /// Called in the room on a breach (nobody: the room is told without a
    /// mention).
    pub mention: Vec<Mention>,
}

impl Policy {
    /// How many kinds of condition it gives: the more, the more specific.
    fn specificity(&self) -> usize {
        [
            !self.mailboxes.is_empty(),
            !self.priorities.is_empty(),
            !self.tags.is_empty(),
        ]
        .iter()
        .filter(|given| **given)
        .count()
    }

    fn matches(&self, mailbox: &MailboxName, priority: Priority, tags: &[&Tag]) -> bool {
        (self.mailboxes.is_empty() || self.mailboxes.contains(mailbox))
            && (self.priorities.is_empty() || self.priorities.contains(&priority))
            && (self.tags.is_empty() || self.tags.iter().any(|t| tags.contains(&t)))
    }

    pub fn target(&self, response: Response) -> Option<SignedDuration> {
        match response {
            Response::First => self.first_response,
            Response::Next => self.next_response,
        }
    }
}

/// The policies of a configuration, in the order they are tried: the most
/// specific first (mailbox, priority and tag all given before two of them,
/// two before one, one before none), file order among equals. The first
/// that matches holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies(Vec<Policy>);

impl Policies {
    pub fn new(mut file_order: Vec<Policy>) -> Policies {
        // A stable sort keeps file order among equally specific policies.
        file_order.sort_by_key(|p| std::cmp::Reverse(p.specificity()));
        Policies(file_order)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn for_ticket<'a>(
        &self,
        mailbox: &MailboxName,
        priority: Priority,
        tags: impl IntoIterator<Item = &'a Tag>,
    ) -> Option<&Policy> {
        let tags: Vec<&Tag> = tags.into_iter().collect();
        self.0.iter().find(|p| p.matches(mailbox, priority, &tags))
    }
}

/// A time the ticket was pending on the customer; `until` is `None` while
/// it still is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub from: Timestamp,
    pub until: Option<Timestamp>,
}

/// What the clock is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// A teammate's first answer, if any.
    pub first_response_at: Option<Timestamp>,
    /// The first customer mail not answered yet (the ticket's first mail
    /// before any answer); `None`: nothing waits for an answer.
    pub awaiting_since: Option<Timestamp>,
    pub pauses: Vec<Pause>,
    /// Closed, ignored or spam: no clock runs.
    pub inactive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaState {
    OnTrack,
    /// Past the nudge threshold, not yet due.
    AtRisk,
    Breached,
    /// Pending on the customer: the clock stands.
    Paused,
    /// Answered: nothing is due.
    Met,
}

impl SlaState {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaState::OnTrack => "on track",
            SlaState::AtRisk => "at risk",
            SlaState::Breached => "breached",
            SlaState::Paused => "paused",
            SlaState::Met => "met",
        }
    }
}

/// A ticket's clock at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaClock {
    pub response: Response,
    /// Identifies the clock: a new customer mail after an answer starts a
    /// new one (and new nudge and breach markers).
    pub started_at: Timestamp,
    pub target: SignedDuration,
    /// Business time counted so far (pauses left out).
    pub elapsed: SignedDuration,
    /// `target - elapsed`: negative once breached.
    pub left: SignedDuration,
    /// When it falls due; `None` while paused or met.
    pub due_at: Option<Timestamp>,
    /// When the nudge threshold is reached; `None` without a nudge, while
    /// paused or met.
    pub nudge_at: Option<Timestamp>,
    pub nudge_percent: Option<u8>,
    pub state: SlaState,
}

/// The clock of a ticket under `policy` at `now`; `None` when no clock
/// runs (inactive ticket, or no target for the response awaited).
pub fn clock(
    policy: &Policy,
    calendar: &Calendar,
    h: &History,
    now: Timestamp,
) -> Option<SlaClock> {
    if h.inactive {
        return None;
    }
    let Some(started_at) = h.awaiting_since else {
        let response = match h.first_response_at {
            Some(_) => Response::Next,
            None => Response::First,
        };
        let target = policy.target(response)?;
        return Some(SlaClock {
            response,
            started_at: h.first_response_at.unwrap_or(now),
            target,
            elapsed: SignedDuration::ZERO,
            left: target,
            due_at: None,
            nudge_at: None,
            nudge_percent: policy.nudge_at,
            state: SlaState::Met,
        });
    };
    let response = match h.first_response_at {
        Some(_) => Response::Next,
        None => Response::First,
    };
    let target = policy.target(response)?;
    let paused_now = h.pauses.iter().any(|p| p.until.is_none() && p.from <= now);
    let counted_until = match paused_now {
        // Counted up to the start of the pause that still runs.
        true => h
            .pauses
            .iter()
            .filter(|p| p.until.is_none())
            .map(|p| p.from)
            .min()
            .unwrap_or(now)
            .max(started_at),
        false => now,
    };
    let elapsed = effective(calendar, &h.pauses, started_at, counted_until);
    let left = target - elapsed;
    let (due_at, nudge_at) = match paused_now {
        true => (None, None),
        false => (
            reach(calendar, &h.pauses, started_at, target),
            policy
                .nudge_at
                .and_then(|pct| reach(calendar, &h.pauses, started_at, share(target, pct))),
        ),
    };
    let state = if elapsed >= target {
        SlaState::Breached
    } else if paused_now {
        SlaState::Paused
    } else if policy
        .nudge_at
        .is_some_and(|pct| elapsed >= share(target, pct))
    {
        SlaState::AtRisk
    } else {
        SlaState::OnTrack
    };
    Some(SlaClock {
        response,
        started_at,
        target,
        elapsed,
        left,
        due_at,
        nudge_at,
        nudge_percent: policy.nudge_at,
        state,
    })
}

/// `pct` percent of `d`, to the second.
fn share(d: SignedDuration, pct: u8) -> SignedDuration {
    SignedDuration::from_secs(d.as_secs() * i64::from(pct) / 100)
}

/// Business time in the pauses between `a` and `b`.
fn paused(calendar: &Calendar, pauses: &[Pause], a: Timestamp, b: Timestamp) -> SignedDuration {
    pauses
        .iter()
        .map(|p| calendar.between(p.from.max(a), p.until.unwrap_or(b).min(b)))
        .sum()
}

/// Business time between `a` and `b`, pauses left out.
fn effective(calendar: &Calendar, pauses: &[Pause], a: Timestamp, b: Timestamp) -> SignedDuration {
    calendar.between(a, b) - paused(calendar, pauses, a, b)
}

/// The first instant at which `x` of business time, pauses left out, has
/// passed since `start`: counted from pause to pause.
fn reach(
    calendar: &Calendar,
    pauses: &[Pause],
    start: Timestamp,
    x: SignedDuration,
) -> Option<Timestamp> {
    let mut sorted: Vec<Pause> = pauses.to_vec();
    sorted.sort_by_key(|p| p.from);
    let (mut cursor, mut left) = (start, x);
    for p in sorted {
        let until = p.until?;
        if until <= cursor {
            continue;
        }
        let t = calendar.add(cursor, left)?;
        if t <= p.from {
            return Some(t);
        }
        left -= calendar.between(cursor, p.from);
        cursor = cursor.max(until);
    }
    calendar.add(cursor, left)
}

/// A business duration for people: "45m", "3h 20m", "2d 1h" (a day is 24
/// hours of business time), to the nearest minute.
pub fn human(d: SignedDuration) -> String {
    // To the nearest minute (a check runs a moment after its instant), and
    // never "0m" for time that is there.
    let secs = d.as_secs().abs();
    let mins = match (secs + 30) / 60 {
        0 if secs > 0 => 1,
        m => m,
    };
    let (days, hours, mins) = (mins / (24 * 60), (mins / 60) % 24, mins % 60);
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (mins, "m")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    match parts.is_empty() {
        true => "0m".to_owned(),
        false => parts.join(" "),
    }
}

/// A target as written in the file: "30m", "4h", "1d" (24 hours of business
/// time), "1h30m". At least a minute.
pub fn parse_target(s: &str) -> Result<SignedDuration, String> {
    let bad =
        || format!("expected a duration such as \"30m\", \"4h\", \"1h30m\" or \"2d\", got {s:?}");
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in s.trim().chars() {
        match c {
            '0'..='9' => digits.push(c),
            'd' | 'h' | 'm' if !digits.is_empty() => {
                let n: i64 = digits.parse().map_err(|_| bad())?;
                let unit = match c {
                    'd' => 24 * 60,
                    'h' => 60,
                    _ => 1,
                };
                total = n
                    .checked_mul(unit)
                    .and_then(|m| total.checked_add(m))
                    .ok_or_else(bad)?;
                digits.clear();
            }
            ' ' => {}
            _ => return Err(bad()),
        }
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    // Past a year a target only says "never"; it would also outrun the
    // calendar's walk.
    if total > 366 * 24 * 60 {
        return Err(format!("{s:?} is longer than a year"));
    }
    Ok(SignedDuration::from_mins(total))
}

impl fmt::Display for SlaClock {
    /// The card's line: "First response due in 3h 20m (business hours)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.response {
            Response::First => "First response",
            Response::Next => "Next response",
        };
        match self.state {
            SlaState::OnTrack | SlaState::AtRisk => {
                let mark = if self.state == SlaState::AtRisk {
                    "⏰ "
                } else {
                    ""
                };
                write!(
                    f,
                    "{mark}{what} due in {} (business hours)",
                    human(self.left)
                )
            }
            SlaState::Breached => write!(
                f,
                "🚨 {what} overdue by {} (target {}, business hours)",
                human(self.left),
                human(self.target)
            ),
            SlaState::Paused => write!(
                f,
                "⏸ {what} clock paused while pending, {} left",
                human(self.left)
            ),
            // Which response was given is not kept (a first or a later
            // one), and the team only needs to know nothing is due.
            SlaState::Met => f.write_str("✅ Answered, no response due"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{Calendar, parse_spans};
    use crate::domain::time::Zone;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    fn h(n: i64) -> SignedDuration {
        SignedDuration::from_hours(n)
    }
    fn policy(first: i64, next: i64) -> Policy {
        Policy {
            name: "p".into(),
            mailboxes: Vec::new(),
            priorities: Vec::new(),
            tags: Vec::new(),
            first_response: Some(h(first)),
            next_response: Some(h(next)),
            nudge_at: Some(75),
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
    fn waiting(since: &str) -> History {
        History {
            first_response_at: None,
            awaiting_since: Some(ts(since)),
            pauses: Vec::new(),
            inactive: false,
        }
    }

    #[test]
    fn first_response_runs_in_business_time_through_nudge_to_breach() {
        // Monday 2026-06-01 10:00 CEST (08:00Z), 4h target: due 14:00 CEST.
        let (p, c, hist) = (policy(4, 8), office(), waiting("2026-06-01T08:00:00Z"));
        let at = |t: &str| clock(&p, &c, &hist, ts(t)).unwrap();
        let start = at("2026-06-01T08:00:00Z");
        assert_eq!(start.response, Response::First);
        assert_eq!(start.state, SlaState::OnTrack);
        assert_eq!(start.due_at, Some(ts("2026-06-01T12:00:00Z")));
        assert_eq!(start.nudge_at, Some(ts("2026-06-01T11:00:00Z")));
        assert_eq!(
            start.to_string(),
            "First response due in 4h (business hours)"
        );
        let risk = at("2026-06-01T11:00:00Z");
        assert_eq!(risk.state, SlaState::AtRisk);
        assert_eq!(human(risk.left), "1h");
        let late = at("2026-06-01T12:30:00Z");
        assert_eq!(late.state, SlaState::Breached);
        assert_eq!(human(late.left), "30m");
        assert!(late.to_string().contains("overdue by 30m"), "{late}");
    }

    #[test]
    fn a_clock_started_after_hours_counts_from_the_next_opening() {
        // Friday 2026-06-05 18:00 CEST: nothing counts until Monday 09:00.
        let (p, c) = (policy(2, 8), office());
        let hist = waiting("2026-06-05T16:00:00Z");
        let k = clock(&p, &c, &hist, ts("2026-06-07T12:00:00Z")).unwrap();
        assert_eq!(k.elapsed, SignedDuration::ZERO);
        assert_eq!(k.due_at, Some(ts("2026-06-08T09:00:00Z")));
    }

    #[test]
    fn pending_pauses_and_moves_the_due_time_by_the_paused_business_time() {
        let (p, c) = (policy(4, 8), office());
        let mut hist = waiting("2026-06-01T08:00:00Z");
        // Pending from 10:00Z (2h counted) on.
        hist.pauses.push(Pause {
            from: ts("2026-06-01T08:00:00Z").checked_add(h(2)).unwrap(),
            until: None,
        });
        let k = clock(&p, &c, &hist, ts("2026-06-02T12:00:00Z")).unwrap();
        assert_eq!(k.state, SlaState::Paused);
        assert_eq!(k.left, h(2));
        assert_eq!(k.due_at, None);
        assert!(k.to_string().contains("paused"), "{k}");
        // Back from pending on Tuesday 08:00Z (10:00 CEST): 2h left, due 12:00 CEST.
        hist.pauses[0].until = Some(ts("2026-06-02T08:00:00Z"));
        let k = clock(&p, &c, &hist, ts("2026-06-02T08:00:00Z")).unwrap();
        assert_eq!(k.state, SlaState::OnTrack);
        assert_eq!(k.left, h(2));
        assert_eq!(k.due_at, Some(ts("2026-06-02T10:00:00Z")));
    }

    #[test]
    fn a_pause_moves_due_and_nudge() {
        let (p, c) = (policy(4, 8), office());
        let mut hist = waiting("2026-06-01T08:00:00Z");
        hist.pauses.push(Pause {
            from: ts("2026-06-01T09:00:00Z"),
            until: Some(ts("2026-06-02T09:00:00Z")),
        });
        // 1h counted Monday, Monday 11:00 CEST – Tuesday 11:00 CEST paused
        // (8h of business time), so 3h left from Tuesday 11:00 CEST.
        let k = clock(&p, &c, &hist, ts("2026-06-02T09:00:00Z")).unwrap();
        assert_eq!(k.state, SlaState::OnTrack);
        assert_eq!(k.elapsed, h(1));
        assert_eq!(k.due_at, Some(ts("2026-06-02T12:00:00Z")));
        assert_eq!(k.nudge_at, Some(ts("2026-06-02T11:00:00Z")));
    }

    #[test]
    fn an_answer_meets_the_clock_and_a_follow_up_starts_next_response() {
        let (p, c) = (policy(4, 8), office());
        let answered = History {
            first_response_at: Some(ts("2026-06-01T09:00:00Z")),
            awaiting_since: None,
            pauses: Vec::new(),
            inactive: false,
        };
        let k = clock(&p, &c, &answered, ts("2026-06-03T09:00:00Z")).unwrap();
        assert_eq!(k.state, SlaState::Met);
        assert_eq!(k.due_at, None);
        let follow_up = History {
            awaiting_since: Some(ts("2026-06-03T08:00:00Z")),
            ..answered
        };
        let k = clock(&p, &c, &follow_up, ts("2026-06-03T08:00:00Z")).unwrap();
        assert_eq!(k.response, Response::Next);
        assert_eq!(k.started_at, ts("2026-06-03T08:00:00Z"));
        // 8h of business time from Wednesday 10:00 CEST: Thursday 10:00 CEST.
        assert_eq!(k.due_at, Some(ts("2026-06-04T08:00:00Z")));
        let closed = History {
            inactive: true,
            ..follow_up
        };
        assert_eq!(clock(&p, &c, &closed, ts("2026-06-03T08:00:00Z")), None);
    }

    #[test]
    fn no_target_for_the_awaited_response_means_no_clock() {
        let mut p = policy(4, 8);
        p.next_response = None;
        let hist = History {
            first_response_at: Some(ts("2026-06-01T09:00:00Z")),
            awaiting_since: Some(ts("2026-06-02T09:00:00Z")),
            pauses: Vec::new(),
            inactive: false,
        };
        assert_eq!(
            clock(&p, &office(), &hist, ts("2026-06-02T10:00:00Z")),
            None
        );
    }

    #[test]
    fn the_most_specific_policy_holds_then_file_order() {
        let support = MailboxName::parse("support").unwrap();
        let sales = MailboxName::parse("sales").unwrap();
        let vip = Tag::parse("vip").unwrap();
        let named = |name: &str, m: bool, p: bool, t: bool| Policy {
            name: name.into(),
            mailboxes: if m { vec![support.clone()] } else { Vec::new() },
            priorities: if p {
                vec![Priority::Urgent]
            } else {
                Vec::new()
            },
            tags: if t { vec![vip.clone()] } else { Vec::new() },
            ..policy(4, 8)
        };
        let all = Policies::new(vec![
            named("default", false, false, false),
            named("support", true, false, false),
            named("vip", false, false, true),
            named("support-urgent", true, true, false),
            named("also-support", true, false, false),
        ]);
        let name = |m: &MailboxName, p: Priority, tags: &[&Tag]| {
            all.for_ticket(m, p, tags.iter().copied())
                .map(|p| p.name.clone())
        };
        assert_eq!(
            name(&support, Priority::Urgent, &[&vip]).unwrap(),
            "support-urgent"
        );
        // Mailbox and tag are equally specific: file order.
        assert_eq!(
            name(&support, Priority::Normal, &[&vip]).unwrap(),
            "support"
        );
        assert_eq!(name(&sales, Priority::Normal, &[&vip]).unwrap(), "vip");
        assert_eq!(name(&sales, Priority::Urgent, &[]).unwrap(), "default");
        assert!(
            Policies::new(Vec::new())
                .for_ticket(&sales, Priority::Low, [])
                .is_none()
        );
    }

    #[test]
    fn targets_are_read_and_wrong_ones_named() {
        assert_eq!(parse_target("4h").unwrap(), h(4));
        assert_eq!(
            parse_target("1h30m").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(parse_target("1d").unwrap(), h(24));
        for bad in ["", "0h", "4", "4 hours", "h", "-1h", "400d"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert_eq!(human(SignedDuration::from_mins(200)), "3h 20m");
        assert_eq!(human(h(27)), "1d 3h");
        assert_eq!(human(SignedDuration::from_secs(30)), "1m");
    }
}
