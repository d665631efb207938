//! The team's figures: how much mail came in, how fast it was answered and
//! resolved, what is waiting now. Pure arithmetic over rows the store hands
//! over; the definitions are written out in `docs/ANALYTICS.md`, and the
//! store side (which rows) is `store/analytics.rs`.
//!
//! The database counts and filters; medians and percentiles are taken here,
//! over the period's rows, so SQLite and PostgreSQL give the same answer to
//! the millisecond (neither has the other's percentile functions).
//!
//! Durations go through a [`WorkTime`]: wall-clock time ([`WallClock`]) or
//! each mailbox's business hours ([`BusinessHours`]), without changing any
//! figure's code. The SLA share replays each resolved ticket's clocks with
//! the live clock's rules (`sla.rs`).

mod hours;
mod period;
pub mod sla;
pub mod table;

pub use hours::{BusinessHours, Hours, WallClock, WorkTime};
pub use period::{Day, Period, PeriodError, PeriodKind};
pub use sla::{SlaFacts, SlaOutcome, SlaRules};

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::ids::{Agent, MailboxName, Tag};
use super::routing::Priority;
use super::ticket::Status;

/// Which tickets the figures are about. Empty `mailboxes` means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub mailboxes: Vec<MailboxName>,
    /// Only tickets this teammate owns (or, closed, owned last).
    pub person: Option<Agent>,
    /// Only tickets carrying this tag.
    pub tag: Option<Tag>,
}

/// A ticket received in the period (not set aside as ignored or spam).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedTicket {
    pub mailbox: MailboxName,
    pub owner: Option<Agent>,
    pub tags: Vec<Tag>,
    pub created_ms: i64,
    /// The first reply to the customer (`!reply` sent, or found in Sent).
    pub first_response_ms: Option<i64>,
}

/// A ticket resolved in the period: closed now, its last close in the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTicket {
    pub mailbox: MailboxName,
    pub owner: Option<Agent>,
    pub tags: Vec<Tag>,
    pub created_ms: i64,
    pub last_close_ms: i64,
    /// Replies sent to the customer over the ticket's life.
    pub replies: u64,
    /// Reopened (by a teammate or the customer's mail) after a close.
    pub reopened: bool,
    /// Which SLA policy holds depends on it (with mailbox and tags).
    pub priority: Priority,
    /// What its SLA clocks are replayed from; read only when SLAs are
    /// configured.
    pub sla_facts: Option<SlaFacts>,
    /// Set by [`PeriodRows::judge_sla`]; `None`: no policy (or no target)
    /// timed it.
    pub sla: Option<SlaOutcome>,
}

/// What the store hands over for one period and scope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeriodRows {
    pub received: Vec<ReceivedTicket>,
    pub resolved: Vec<ResolvedTicket>,
    /// Whether [`PeriodRows::judge_sla`] ran: the figures then have an SLA
    /// share (without `[[sla]]` they have none at all).
    pub sla_judged: bool,
}

impl PeriodRows {
    /// Judges every resolved ticket against the policy that holds for it
    /// now, in its mailbox's calendar (definitions: `sla.rs`). Without
    /// policies nothing is judged and the figures have no SLA share.
    pub fn judge_sla(&mut self, rules: &SlaRules<'_>) {
        if rules.policies.is_empty() {
            return;
        }
        for t in &mut self.resolved {
            t.sla = match (
                rules
                    .policies
                    .for_ticket(&t.mailbox, t.priority, t.tags.iter()),
                rules.calendars.get(&t.mailbox),
                &t.sla_facts,
            ) {
                (Some(policy), Some(calendar), Some(facts)) => {
                    sla::outcome(policy, calendar, t.created_ms, t.last_close_ms, facts)
                }
                _ => None,
            };
        }
        self.sla_judged = true;
    }
}

/// A ticket still waiting on the team or the customer now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveTicket {
    pub mailbox: MailboxName,
    pub status: Status,
    pub owner: Option<Agent>,
    pub created_ms: i64,
}

/// Waiting tickets counted by owner, status and age: what the database
/// hands over for [`Backlog`] and [`Workload`], so a large backlog is
/// counted where it lies instead of being read ticket by ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingCount {
    pub owner: Option<Agent>,
    pub status: Status,
    pub age: AgeBucket,
    pub count: u64,
}

/// Median and 90th percentile of some durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationStats {
    pub count: u64,
    /// The middle value; with an even count, the mean of the two middle
    /// values rounded down to the millisecond.
    pub median_ms: Option<i64>,
    /// Nearest rank: the smallest value at least 90% of values are at or below.
    pub p90_ms: Option<i64>,
}

impl DurationStats {
    pub fn of(mut values: Vec<i64>) -> DurationStats {
        values.sort_unstable();
        let n = values.len();
        if n == 0 {
            return DurationStats::default();
        }
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            // Halves first: two large durations never overflow.
            let (a, b) = (values[n / 2 - 1], values[n / 2]);
            a / 2 + b / 2 + (a % 2 + b % 2) / 2
        };
        DurationStats {
            count: n as u64,
            median_ms: Some(median),
            p90_ms: Some(values[nearest_rank(90, n) - 1]),
        }
    }
}

/// The 1-based nearest rank of the `pct`th percentile among `n` values:
/// ⌈pct·n/100⌉, at least 1.
pub fn nearest_rank(pct: u32, n: usize) -> usize {
    (pct as usize * n).div_ceil(100).max(1)
}

/// `part` of `whole`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Share {
    pub part: u64,
    pub whole: u64,
}

impl Share {
    /// In percent; `None` when there is nothing to share.
    pub fn percent(&self) -> Option<f64> {
        (self.whole > 0).then(|| self.part as f64 * 100.0 / self.whole as f64)
    }
}

/// One local day of a period, for charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayFigures {
    pub day: Day,
    pub received: u64,
    /// Median first response of the tickets received that day.
    pub first_response_median_ms: Option<i64>,
}

/// A period's figures for one scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub period: Period,
    /// Which hours the durations count.
    pub hours: Hours,
    /// Tickets received (new tickets, not follow-ups, not set aside).
    pub received: u64,
    /// Created → first reply, over the received tickets that have one.
    pub first_response: DurationStats,
    /// Received tickets nobody has answered yet.
    pub unanswered: u64,
    /// Tickets whose last close falls in the period and that are closed now.
    pub resolved: u64,
    /// Created → last close, over the resolved tickets.
    pub resolution: DurationStats,
    /// Replies to the customer per resolved ticket (mean).
    pub replies_per_ticket: Option<f64>,
    /// Resolved tickets that were reopened after a close, of the resolved.
    pub reopened: Share,
    /// Resolved tickets that met their SLA, of the resolved tickets a
    /// policy timed (the rest of them breached it). `None` without
    /// `[[sla]]`.
    pub sla_met: Option<Share>,
    /// Received tickets by local hour of creation, 0–23.
    pub by_hour: [u64; 24],
    /// Received tickets by local weekday of creation, Monday first.
    pub by_weekday: [u64; 7],
    /// A line a local day.
    pub days: Vec<DayFigures>,
}

impl Figures {
    /// The figures of `rows`, which the store selected for `period`.
    pub fn compute(period: &Period, rows: &PeriodRows, work: &dyn WorkTime) -> Figures {
        let days = period.days();
        let mut per_day: Vec<(u64, Vec<i64>)> = vec![(0, Vec::new()); days.len()];
        let mut first = Vec::new();
        let mut by_hour = [0u64; 24];
        let mut by_weekday = [0u64; 7];
        for t in &rows.received {
            let response = t
                .first_response_ms
                .map(|r| work.between(&t.mailbox, t.created_ms, r));
            if let Some(r) = response {
                first.push(r);
            }
            if let Some(i) = period.day_index(t.created_ms) {
                per_day[i].0 += 1;
                per_day[i].1.extend(response);
            }
            if let Ok(at) = Timestamp::from_millisecond(t.created_ms) {
                let local = period.zone.at(at);
                by_hour[local.hour() as usize] += 1;
                by_weekday[local.weekday().to_monday_zero_offset() as usize] += 1;
            }
        }
        let unanswered = rows
            .received
            .iter()
            .filter(|t| t.first_response_ms.is_none())
            .count() as u64;
        let resolution = rows
            .resolved
            .iter()
            .map(|t| work.between(&t.mailbox, t.created_ms, t.last_close_ms))
            .collect();
        let resolved = rows.resolved.len() as u64;
        let replies: u64 = rows.resolved.iter().map(|t| t.replies).sum();
        let judged: Vec<SlaOutcome> = rows.resolved.iter().filter_map(|t| t.sla).collect();
        Figures {
            period: period.clone(),
            hours: work.hours(),
            received: rows.received.len() as u64,
            first_response: DurationStats::of(first),
            unanswered,
            resolved,
            resolution: DurationStats::of(resolution),
            replies_per_ticket: (resolved > 0).then(|| replies as f64 / resolved as f64),
            reopened: Share {
                part: rows.resolved.iter().filter(|t| t.reopened).count() as u64,
                whole: resolved,
            },
            sla_met: rows.sla_judged.then(|| Share {
                part: judged.iter().filter(|o| **o == SlaOutcome::Met).count() as u64,
                whole: judged.len() as u64,
            }),
            by_hour,
            by_weekday,
            days: days
                .into_iter()
                .zip(per_day)
                .map(|(day, (received, responses))| DayFigures {
                    day,
                    received,
                    first_response_median_ms: DurationStats::of(responses).median_ms,
                })
                .collect(),
        }
    }

    /// The same figures split by mailbox, person or tag, groups in name
    /// order. A ticket with several tags counts in each tag's group; a
    /// ticket with no owner (or no tag) is in the group named "—".
    pub fn breakdown(
        period: &Period,
        rows: &PeriodRows,
        by: GroupBy,
        work: &dyn WorkTime,
    ) -> Vec<(String, Figures)> {
        let mut groups: BTreeMap<String, PeriodRows> = BTreeMap::new();
        fn group(
            groups: &mut BTreeMap<String, PeriodRows>,
            key: String,
            sla_judged: bool,
        ) -> &mut PeriodRows {
            groups.entry(key).or_insert_with(|| PeriodRows {
                sla_judged,
                ..PeriodRows::default()
            })
        }
        for t in &rows.received {
            for key in by.keys(&t.mailbox, t.owner.as_ref(), &t.tags) {
                group(&mut groups, key, rows.sla_judged)
                    .received
                    .push(t.clone());
            }
        }
        for t in &rows.resolved {
            for key in by.keys(&t.mailbox, t.owner.as_ref(), &t.tags) {
                group(&mut groups, key, rows.sla_judged)
                    .resolved
                    .push(t.clone());
            }
        }
        groups
            .into_iter()
            .map(|(k, rows)| (k, Figures::compute(period, &rows, work)))
            .collect()
    }
}

/// What [`Figures::breakdown`] groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Mailbox,
    Person,
    Tag,
}

/// The group name for tickets without an owner or a tag.
pub const NO_GROUP: &str = "—";

impl GroupBy {
    fn keys(self, mailbox: &MailboxName, owner: Option<&Agent>, tags: &[Tag]) -> Vec<String> {
        match self {
            GroupBy::Mailbox => vec![mailbox.as_str().to_owned()],
            GroupBy::Person => vec![owner.map_or(NO_GROUP, |a| a.as_str()).to_owned()],
            GroupBy::Tag if tags.is_empty() => vec![NO_GROUP.to_owned()],
            GroupBy::Tag => tags.iter().map(|t| t.as_str().to_owned()).collect(),
        }
    }
}

/// How old a waiting ticket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AgeBucket {
    /// Under 24 hours.
    UnderADay,
    /// 1 to under 3 days.
    OneToThreeDays,
    /// 3 to under 7 days.
    ThreeToSevenDays,
    /// 7 days or more.
    OverAWeek,
}

impl AgeBucket {
    pub const ALL: [AgeBucket; 4] = [
        AgeBucket::UnderADay,
        AgeBucket::OneToThreeDays,
        AgeBucket::ThreeToSevenDays,
        AgeBucket::OverAWeek,
    ];

    pub fn of(age_ms: i64) -> AgeBucket {
        const DAY: i64 = 86_400_000;
        match age_ms {
            a if a < DAY => AgeBucket::UnderADay,
            a if a < 3 * DAY => AgeBucket::OneToThreeDays,
            a if a < 7 * DAY => AgeBucket::ThreeToSevenDays,
            _ => AgeBucket::OverAWeek,
        }
    }

    /// The creation instants that part the buckets at `as_of_ms`: a ticket
    /// created after the first is under a day old, after the second under
    /// three days, after the third under a week (the same cuts as
    /// [`AgeBucket::of`], for a database to count with).
    pub fn created_after(as_of_ms: i64) -> [i64; 3] {
        const DAY: i64 = 86_400_000;
        [as_of_ms - DAY, as_of_ms - 3 * DAY, as_of_ms - 7 * DAY]
    }

    pub fn label(self) -> &'static str {
        match self {
            AgeBucket::UnderADay => "< 1 d",
            AgeBucket::OneToThreeDays => "1–3 d",
            AgeBucket::ThreeToSevenDays => "3–7 d",
            AgeBucket::OverAWeek => "≥ 7 d",
        }
    }
}

/// Waiting tickets (open, claimed or pending) by age at `as_of_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub as_of_ms: i64,
    /// Counts in the order of [`AgeBucket::ALL`].
    pub counts: [u64; 4],
}

impl Backlog {
    /// Ages are wall-clock: how long the customer has been waiting.
    pub fn compute(active: &[ActiveTicket], as_of_ms: i64) -> Backlog {
        let mut counts = [0u64; 4];
        for t in active {
            counts[AgeBucket::of(as_of_ms - t.created_ms) as usize] += 1;
        }
        Backlog { as_of_ms, counts }
    }

    /// The same from counts the database made.
    pub fn from_counts(counts: &[WaitingCount], as_of_ms: i64) -> Backlog {
        let mut by_age = [0u64; 4];
        for c in counts {
            by_age[c.age as usize] += c.count;
        }
        Backlog {
            as_of_ms,
            counts: by_age,
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn get(&self, bucket: AgeBucket) -> u64 {
        self.counts[bucket as usize]
    }
}

/// One owner's waiting tickets (`owner: None`: nobody's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load {
    pub owner: Option<Agent>,
    pub open: u64,
    pub claimed: u64,
    pub pending: u64,
}

/// Waiting tickets per owner now: owners in name order, nobody's last.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    pub rows: Vec<Load>,
}

impl Workload {
    pub fn compute(active: &[ActiveTicket]) -> Workload {
        let mut by_owner: BTreeMap<Option<&Agent>, Load> = BTreeMap::new();
        for t in active {
            let row = by_owner.entry(t.owner.as_ref()).or_insert_with(|| Load {
                owner: t.owner.clone(),
                open: 0,
                claimed: 0,
                pending: 0,
            });
            match t.status {
                Status::Open => row.open += 1,
                Status::Claimed => row.claimed += 1,
                Status::Pending => row.pending += 1,
                Status::Closed | Status::Ignored | Status::Spam => {}
            }
        }
        Workload::sorted(by_owner.into_values().collect())
    }

    /// The same from counts the database made.
    pub fn from_counts(counts: &[WaitingCount]) -> Workload {
        let mut by_owner: BTreeMap<Option<&Agent>, Load> = BTreeMap::new();
        for c in counts {
            let row = by_owner.entry(c.owner.as_ref()).or_insert_with(|| Load {
                owner: c.owner.clone(),
                open: 0,
                claimed: 0,
                pending: 0,
            });
            match c.status {
                Status::Open => row.open += c.count,
                Status::Claimed => row.claimed += c.count,
                Status::Pending => row.pending += c.count,
                Status::Closed | Status::Ignored | Status::Spam => {}
            }
        }
        Workload::sorted(by_owner.into_values().collect())
    }

    fn sorted(mut rows: Vec<Load>) -> Workload {
        // `None` sorts first in a BTreeMap; nobody's tickets read best last.
        rows.sort_by_key(|l| (l.owner.is_none(), l.owner.clone()));
        Workload { rows }
    }
}

#[cfg(test)]
mod tests;
