//! What each page shows, read from the store: plain rows that the HTML
//! templates and the CSV exports both use, so a page and its `.csv` never
//! disagree.

use jiff::Timestamp;

use super::WebHandles;
use super::chart::{Point, Series};
use super::filter::{FilterRow, OverviewFilter, filter_rows};
use crate::domain::chat::{ChatThread, Platform, thread_link};
use crate::domain::email::Direction;
use crate::domain::ids::TicketId;
use crate::domain::sla::{SlaState, clock, human};
use crate::domain::ticket::Status;
use crate::domain::time::Zone;
use crate::store::analytics::{
    AgeBucket, DurationStats, NO_GROUP, Period, PeriodKind, Scope, SlaRules, Workload,
    figures_with_sla, waiting,
};
use crate::store::{QueueTicket, SlaRecord, StoreError, TicketRecord};

/// How many waiting tickets the queue shows at most, oldest first.
const QUEUE_LIMIT: u32 = 5000;

/// A time as the mailbox's people read it.
pub fn when(zone: &Zone, ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| zone.at(t).strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// `2 d 4 h`, `3 h 12 min`, `5 min`: how long ago, roughly.
pub fn age(now_ms: i64, then_ms: i64) -> String {
    let mins = (now_ms - then_ms).max(0) / 60_000;
    match mins {
        m if m < 60 => format!("{m} min"),
        m if m < 24 * 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{} d {} h", m / (24 * 60), (m / 60) % 24),
    }
}

/// A link into chat.
#[derive(Debug, Clone)]
pub struct ChatLink {
    pub platform: &'static str,
    pub url: String,
}

/// A ticket's SLA state as the queue shows it, from the clock the chat
/// card shows (`domain::sla::clock` over the same stored facts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlaCell {
    /// No policy holds for the ticket, or no clock runs.
    None,
    /// Answered: nothing is due.
    Met,
    /// Pending on the customer: the clock stands, `left` business time left.
    Paused { left: String },
    /// Due in `left` of business time; `at_risk` past the nudge threshold.
    Due { left: String, at_risk: bool },
    /// Overdue by `over` of business time.
    Breached { over: String },
}

impl SlaCell {
    /// The machine-readable state (`data-sla`, the CSV's `sla_state`).
    pub fn state(&self) -> &'static str {
        match self {
            SlaCell::None => "none",
            SlaCell::Met => SlaState::Met.as_str(),
            SlaCell::Paused { .. } => SlaState::Paused.as_str(),
            SlaCell::Due { at_risk: false, .. } => SlaState::OnTrack.as_str(),
            SlaCell::Due { at_risk: true, .. } => SlaState::AtRisk.as_str(),
            SlaCell::Breached { .. } => SlaState::Breached.as_str(),
        }
    }
}

impl std::fmt::Display for SlaCell {
    /// "due in 3h 20m", "at risk: due in 40m", "breached 1h 5m ago",
    /// "paused while pending (2h left)", "met", "—"; business time.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlaCell::None => f.write_str("—"),
            SlaCell::Met => f.write_str("met"),
            SlaCell::Paused { left } => write!(f, "paused while pending ({left} left)"),
            SlaCell::Due {
                left,
                at_risk: false,
            } => write!(f, "due in {left}"),
            SlaCell::Due {
                left,
                at_risk: true,
            } => write!(f, "at risk: due in {left}"),
            SlaCell::Breached { over } => write!(f, "breached {over} ago"),
        }
    }
}

/// The ticket's SLA state now: the policy that holds for it, its
/// mailbox's calendar, its stored facts.
pub fn sla_cell(h: &WebHandles, t: &TicketRecord, rec: &SlaRecord) -> SlaCell {
    let Some(policy) = h.sla.for_ticket(&t.mailbox, t.priority, t.tags.iter()) else {
        return SlaCell::None;
    };
    let Some(calendar) = h.calendars.get(&t.mailbox) else {
        return SlaCell::None;
    };
    let Some(c) = clock(policy, calendar, &rec.history(t), h.clock.now()) else {
        return SlaCell::None;
    };
    match c.state {
        SlaState::Met => SlaCell::Met,
        SlaState::Paused => SlaCell::Paused {
            left: human(c.left),
        },
        SlaState::OnTrack | SlaState::AtRisk => SlaCell::Due {
            left: human(c.left),
            at_risk: c.state == SlaState::AtRisk,
        },
        SlaState::Breached => SlaCell::Breached {
            over: human(-c.left),
        },
    }
}

/// One open ticket in the queue.
#[derive(Debug, Clone)]
pub struct QueueRow {
    pub id: i64,
    pub mailbox: String,
    pub subject: String,
    pub customer: String,
    pub status: &'static str,
    /// "—" when nobody has it.
    pub owner: String,
    pub created: String,
    pub age: String,
    pub age_mins: i64,
    /// Since the customer last wrote.
    pub waiting: String,
    pub sla: SlaCell,
    pub priority: String,
    pub links: Vec<ChatLink>,
}

/// The links to a ticket's threads (a Slack one only when the
/// workspace's address is known).
fn links(h: &WebHandles, threads: &[ChatThread]) -> Vec<ChatLink> {
    threads
        .iter()
        .filter_map(|t| {
            thread_link(t, h.slack_workspace.as_deref()).map(|url| ChatLink {
                platform: t.platform.as_str(),
                url,
            })
        })
        .collect()
}

/// The queue: every waiting ticket, oldest first (it is worked from the
/// top), read in a fixed number of queries ([`TicketStore::queue_tickets`]).
///
/// [`TicketStore::queue_tickets`]: crate::store::TicketStore::queue_tickets
pub async fn queue(h: &WebHandles) -> Result<Vec<QueueRow>, StoreError> {
    let now = h.clock.now_ms();
    let tickets = h.store.queue_tickets(QUEUE_LIMIT).await?;
    Ok(tickets
        .into_iter()
        .map(
            |QueueTicket {
                 ticket: t,
                 threads,
                 sla,
             }| QueueRow {
                id: t.id.get(),
                mailbox: t.mailbox.to_string(),
                subject: t.subject.clone(),
                customer: t.customer.to_string(),
                status: t.state.status().as_str(),
                owner: t
                    .state
                    .owner()
                    .map_or_else(|| "—".to_owned(), |o| o.to_string()),
                created: when(&h.zone, t.created_at_ms),
                age: age(now, t.created_at_ms),
                age_mins: (now - t.created_at_ms).max(0) / 60_000,
                waiting: age(now, t.last_customer_at_ms),
                sla: sla_cell(h, &t, &sla),
                priority: t.priority.to_string(),
                links: links(h, &threads),
            },
        )
        .collect())
}

/// One teammate's load (or nobody's tickets, `who` = "—"), as the chat's
/// `stats` command counts it.
#[derive(Debug, Clone, Default)]
pub struct PersonRow {
    pub who: String,
    pub open: u64,
    pub claimed: u64,
    pub pending: u64,
    pub total: u64,
    /// Age of their oldest waiting ticket.
    pub oldest: String,
}

pub async fn people(h: &WebHandles) -> Result<Vec<PersonRow>, StoreError> {
    let now = h.clock.now_ms();
    let active = h.store.active_tickets(&Scope::default()).await?;
    let rows = Workload::compute(&active)
        .rows
        .into_iter()
        .map(|l| {
            let oldest = active
                .iter()
                .filter(|t| t.owner == l.owner)
                .map(|t| t.created_ms)
                .min()
                .unwrap_or(now);
            PersonRow {
                who: l
                    .owner
                    .map_or_else(|| NO_GROUP.to_owned(), |o| o.to_string()),
                open: l.open,
                claimed: l.claimed,
                pending: l.pending,
                total: l.open + l.claimed + l.pending,
                oldest: age(now, oldest),
            }
        })
        .collect();
    Ok(rows)
}

/// One message of a ticket, as text.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub direction: &'static str,
    pub from: String,
    pub subject: String,
    pub at: String,
    pub state: &'static str,
    pub author: String,
    pub text: String,
}

/// One line of a ticket's history.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub details: String,
}

/// A ticket with its messages and history.
#[derive(Debug, Clone)]
pub struct TicketView {
    pub id: i64,
    pub subject: String,
    pub customer: String,
    pub mailbox: String,
    pub state: String,
    pub created: String,
    pub tags: String,
    pub links: Vec<ChatLink>,
    pub messages: Vec<MessageView>,
    pub history: Vec<HistoryRow>,
}

/// A mail's text is cut here on the page; the full mail is in the chat
/// thread and `mailroom tickets export`.
const MAX_TEXT_CHARS: usize = 20_000;

/// Text fit for a page: control characters other than line breaks and
/// tabs removed (the template escapes the rest), cut at a length a browser
/// shows without trouble.
fn clean_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .take(MAX_TEXT_CHARS)
        .collect();
    if s.chars().nth(MAX_TEXT_CHARS).is_some() {
        out.push_str("\n… (cut here; the whole mail is in the chat thread)");
    }
    out
}

pub async fn ticket(h: &WebHandles, id: TicketId) -> Result<Option<TicketView>, StoreError> {
    let Some(t) = h.store.ticket(id).await? else {
        return Ok(None);
    };
    let mut threads = Vec::new();
    for p in [Platform::Matrix, Platform::Slack] {
        threads.extend(h.store.chat_thread(id, p).await?);
    }
    let mut messages = Vec::new();
    for e in h.store.emails(id).await? {
        let text = match h.store.raw_email(e.id).await? {
            Some(raw) => {
                let read = h.mail_text.clone();
                // Parsing a large mail is CPU work; keep it off the runtime's threads.
                tokio::task::spawn_blocking(move || read(&raw))
                    .await
                    .unwrap_or_else(|_| "(this mail could not be read)".to_owned())
            }
            None => String::new(),
        };
        messages.push(MessageView {
            direction: match e.direction {
                Direction::Inbound => "in",
                Direction::Outbound => "out",
            },
            from: e.from.to_string(),
            subject: e.subject.clone(),
            at: when(&h.zone, e.stored_at_ms),
            state: e.state.as_str(),
            author: e.author.map(|a| a.to_string()).unwrap_or_default(),
            text: clean_text(&text),
        });
    }
    let history = h
        .store
        .audit_log(id)
        .await?
        .into_iter()
        .map(|a| HistoryRow {
            at: when(&h.zone, a.at_ms),
            actor: a.actor.to_string(),
            action: a.action,
            details: a.details,
        })
        .collect();
    Ok(Some(TicketView {
        id: t.id.get(),
        subject: t.subject.clone(),
        customer: t.customer.to_string(),
        mailbox: t.mailbox.to_string(),
        state: t.state.to_string(),
        created: when(&h.zone, t.created_at_ms),
        tags: t
            .tags
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        links: links(h, &threads),
        messages,
        history,
    }))
}

/// A figure as the overview shows it: an element id, the value, its name.
#[derive(Debug, Clone)]
pub struct Card {
    pub id: &'static str,
    pub value: String,
    pub label: String,
}

/// A chart as the overview shows it.
#[derive(Debug, Clone)]
pub struct Chart {
    pub id: &'static str,
    pub caption: String,
    pub series: Series,
    /// Bars (counts) or a line (durations).
    pub line: bool,
}

/// The overview of one calendar period (the day, ISO week or month that
/// contains now, in the zone of the mailbox chosen, or of the first): the
/// figures as the chat's `stats` command computes them
/// (`docs/ANALYTICS.md`), and what waits now, for the tickets the filter
/// chooses.
#[derive(Debug, Clone)]
pub struct Overview {
    pub kind: PeriodKind,
    pub filter: OverviewFilter,
    /// The filter as query parameters ("" for none), kept by the period
    /// links and the CSV link.
    pub query: String,
    /// "mailbox support, tag billing", "" for every ticket.
    pub scope: String,
    pub filters: Vec<FilterRow>,
    /// The zone days are counted in.
    pub zone: String,
    /// "week 2026-W49 (30 Nov – 6 Dec)".
    pub label: String,
    pub cards: Vec<Card>,
    pub charts: Vec<Chart>,
    /// A row a day: the day, tickets received, median first answer (min).
    pub days: Vec<(String, u64, Option<f64>)>,
}

/// `1 h 30 min`-style durations, for medians and percentiles.
pub fn span(ms: i64) -> String {
    age(ms, 0)
}

fn minutes(ms: i64) -> f64 {
    ms as f64 / 60_000.0
}

fn stats_text(d: &DurationStats) -> String {
    match (d.median_ms, d.p90_ms) {
        (Some(m), Some(p)) => format!("{} / {}", span(m), span(p)),
        _ => "—".to_owned(),
    }
}

pub async fn overview(
    h: &WebHandles,
    kind: PeriodKind,
    filter: &OverviewFilter,
) -> Result<Overview, StoreError> {
    let now = h.clock.now_ms();
    let at = Timestamp::from_millisecond(now).unwrap_or(Timestamp::UNIX_EPOCH);
    let zone = filter
        .mailbox
        .as_ref()
        .and_then(|m| h.zones.get(m))
        .unwrap_or(&h.zone);
    let period = Period::containing(kind, at, zone).map_err(|e| StoreError::Corrupt {
        table: "tickets",
        reason: e.to_string(),
    })?;
    let scope = filter.scope();
    let work = filter.hours.work_time(&h.calendars);
    let sla = SlaRules {
        policies: &h.sla,
        calendars: &h.calendars,
    };
    let f = figures_with_sla(h.store.as_ref(), &scope, &period, work.as_ref(), Some(&sla)).await?;
    // Counted in the database (one grouped query), not by reading every
    // waiting ticket.
    let (backlog, workload) = waiting(h.store.as_ref(), &scope, now).await?;
    let count = |s: Status| {
        let n: u64 = workload
            .rows
            .iter()
            .map(|l| match s {
                Status::Open => l.open,
                Status::Claimed => l.claimed,
                Status::Pending => l.pending,
                _ => 0,
            })
            .sum();
        n.to_string()
    };
    let mut cards = vec![
        Card {
            id: "open",
            value: count(Status::Open),
            label: "open, unclaimed now".into(),
        },
        Card {
            id: "claimed",
            value: count(Status::Claimed),
            label: "claimed now".into(),
        },
        Card {
            id: "pending",
            value: count(Status::Pending),
            label: "pending on the customer".into(),
        },
        Card {
            id: "received",
            value: f.received.to_string(),
            label: format!("received this {kind}"),
        },
        Card {
            id: "first-response",
            value: stats_text(&f.first_response),
            label: "first answer, median / p90".into(),
        },
        Card {
            id: "unanswered",
            value: f.unanswered.to_string(),
            label: "of them unanswered".into(),
        },
        Card {
            id: "resolved",
            value: f.resolved.to_string(),
            label: format!("resolved this {kind}"),
        },
        Card {
            id: "resolution",
            value: stats_text(&f.resolution),
            label: "resolution, median / p90".into(),
        },
        Card {
            id: "replies",
            value: f
                .replies_per_ticket
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.1}")),
            label: "replies per resolved ticket".into(),
        },
        Card {
            id: "reopened",
            value: f
                .reopened
                .percent()
                .map_or_else(|| "—".to_owned(), |p| format!("{p:.0} %")),
            label: "of the resolved were reopened".into(),
        },
    ];
    // Only where SLA policies exist (`[[sla]]`): without them the figure
    // means nothing and is left out, as in the chat's table.
    if let Some(share) = &f.sla_met {
        cards.push(Card {
            id: "sla-met",
            value: share
                .percent()
                .map_or_else(|| "—".to_owned(), |p| format!("{p:.0} %")),
            label: format!("SLA met ({} of {} resolved)", share.part, share.whole),
        });
    }
    let point = |label: String, value: Option<f64>| Point { label, value };
    let day_label = |d: &jiff::civil::Date| d.strftime("%m-%d").to_string();
    let counts = |title: &str, points: Vec<Point>| Series {
        title: title.to_owned(),
        unit: "tickets".into(),
        points,
    };
    // A day's received tickets are shown by hour; a week's or month's by day.
    let received = if kind == PeriodKind::Day {
        let pts = (0..24)
            .map(|hr| point(format!("{hr:02}"), Some(f.by_hour[hr] as f64)))
            .collect();
        counts("Received by hour", pts)
    } else {
        let pts = f
            .days
            .iter()
            .map(|d| point(day_label(&d.day.date), Some(d.received as f64)))
            .collect();
        counts("Received by day", pts)
    };
    let first = Series {
        title: "Median first answer by day of arrival".into(),
        unit: "minutes".into(),
        points: f
            .days
            .iter()
            .map(|d| {
                point(
                    day_label(&d.day.date),
                    d.first_response_median_ms.map(minutes),
                )
            })
            .collect(),
    };
    let mut charts = vec![
        Chart {
            id: "chart-new",
            caption: received.title.clone(),
            series: received,
            line: false,
        },
        Chart {
            id: "chart-first-response",
            caption: "Median first answer (minutes) by day of arrival".into(),
            series: first,
            line: true,
        },
    ];
    if kind != PeriodKind::Day {
        let hours = (0..24)
            .map(|hr| point(format!("{hr:02}"), Some(f.by_hour[hr] as f64)))
            .collect();
        charts.push(Chart {
            id: "chart-hours",
            caption: "Received by local hour".into(),
            series: counts("Received by local hour", hours),
            line: false,
        });
        let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let weekdays = names
            .iter()
            .zip(f.by_weekday)
            .map(|(n, c)| point((*n).to_owned(), Some(c as f64)))
            .collect();
        charts.push(Chart {
            id: "chart-weekdays",
            caption: "Received by weekday".into(),
            series: counts("Received by weekday", weekdays),
            line: false,
        });
    }
    let ages = AgeBucket::ALL
        .iter()
        .map(|b| point(b.label().to_owned(), Some(backlog.get(*b) as f64)))
        .collect();
    charts.push(Chart {
        id: "chart-backlog",
        caption: "Waiting now, by age".into(),
        series: counts("Waiting now, by age", ages),
        line: false,
    });
    let days = f
        .days
        .iter()
        .map(|d| {
            (
                d.day.date.to_string(),
                d.received,
                d.first_response_median_ms.map(minutes),
            )
        })
        .collect();
    Ok(Overview {
        kind,
        query: filter.query(),
        scope: filter.label(),
        filters: filter_rows(h, kind, filter).await?,
        filter: filter.clone(),
        zone: zone.name().to_owned(),
        label: period.label(),
        cards,
        charts,
        days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_roughly() {
        assert_eq!(age(10 * 60_000, 0), "10 min");
        assert_eq!(age(192 * 60_000, 0), "3 h 12 min");
        assert_eq!(age((2 * 24 * 60 + 4 * 60 + 5) * 60_000, 0), "2 d 4 h");
        assert_eq!(
            age(0, 60_000),
            "0 min",
            "a clock step back is no negative age"
        );
    }

    #[test]
    fn clean_text_keeps_lines_and_drops_controls() {
        assert_eq!(clean_text("a\u{0}b\nc\u{1b}[31m"), "ab\nc[31m");
    }
}
