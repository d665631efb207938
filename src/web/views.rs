//! What each page shows, read from the store: plain rows that the HTML
//! templates and the CSV exports both use, so a page and its `.csv` never
//! disagree.

use std::collections::BTreeMap;

use jiff::{Timestamp, ToSpan};

use super::WebHandles;
use super::chart::{Point, Series};
use crate::domain::chat::{ChatThread, Platform};
use crate::domain::email::Direction;
use crate::domain::ids::TicketId;
use crate::domain::ticket::Status;
use crate::domain::time::Zone;
use crate::store::{StoreError, TicketFilter, TicketRecord};

/// The statuses the queue shows: everything not finished or set aside.
const WAITING: [Status; 3] = [Status::Open, Status::Claimed, Status::Pending];

/// How many tickets of one status a page reads at most.
const PER_STATUS: u32 = 1000;

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

/// Where a ticket's thread is opened in the chat app.
pub fn thread_url(thread: &ChatThread) -> String {
    match thread.platform {
        // matrix.to hands the link to whichever client the teammate uses.
        Platform::Matrix => format!(
            "https://matrix.to/#/{}/{}",
            url_part(&thread.room),
            url_part(&thread.thread_ref)
        ),
        // A Slack permalink is the channel and the root's ts without its dot;
        // Slack resolves it to the workspace the teammate is signed in to.
        Platform::Slack => format!(
            "https://slack.com/archives/{}/p{}",
            url_part(&thread.room),
            thread.thread_ref.replace('.', "")
        ),
    }
}

/// Percent-encodes what is not safe in a URL path segment or fragment.
fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'!'
            | b'@'
            | b':'
            | b'$' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A link into chat.
#[derive(Debug, Clone)]
pub struct ChatLink {
    pub platform: &'static str,
    pub url: String,
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
    /// The SLA state; "—" until SLAs exist.
    pub sla: String,
    pub priority: String,
    pub links: Vec<ChatLink>,
}

async fn waiting_tickets(h: &WebHandles) -> Result<Vec<TicketRecord>, StoreError> {
    let mut all = Vec::new();
    for status in WAITING {
        let f = TicketFilter {
            status: Some(status),
            limit: Some(PER_STATUS),
            ..Default::default()
        };
        all.extend(h.store.list_tickets(&f).await?);
    }
    // Oldest first: the queue is worked from the top.
    all.sort_by_key(|t| (t.created_at_ms, t.id.get()));
    Ok(all)
}

async fn links(h: &WebHandles, id: TicketId) -> Result<Vec<ChatLink>, StoreError> {
    let mut out = Vec::new();
    for p in [Platform::Matrix, Platform::Slack] {
        if let Some(t) = h.store.chat_thread(id, p).await? {
            out.push(ChatLink {
                platform: p.as_str(),
                url: thread_url(&t),
            });
        }
    }
    Ok(out)
}

pub async fn queue(h: &WebHandles) -> Result<Vec<QueueRow>, StoreError> {
    let now = h.clock.now_ms();
    let mut rows = Vec::new();
    for t in waiting_tickets(h).await? {
        rows.push(QueueRow {
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
            sla: "—".to_owned(),
            priority: t.priority.to_string(),
            links: links(h, t.id).await?,
        });
    }
    Ok(rows)
}

/// One teammate's load (or the unassigned tickets, `who` = "—").
#[derive(Debug, Clone, Default)]
pub struct PersonRow {
    pub who: String,
    pub claimed: u64,
    pub pending: u64,
    pub total: u64,
    /// Age of their oldest ticket.
    pub oldest: String,
}

pub async fn people(h: &WebHandles) -> Result<Vec<PersonRow>, StoreError> {
    let now = h.clock.now_ms();
    let mut by: BTreeMap<String, (PersonRow, i64)> = BTreeMap::new();
    for t in waiting_tickets(h).await? {
        let who = t
            .state
            .owner()
            .map_or_else(|| "—".to_owned(), |o| o.to_string());
        let (row, oldest) = by.entry(who.clone()).or_insert_with(|| {
            (
                PersonRow {
                    who,
                    ..Default::default()
                },
                i64::MAX,
            )
        });
        match t.state.status() {
            Status::Pending => row.pending += 1,
            _ => row.claimed += 1,
        }
        row.total += 1;
        *oldest = (*oldest).min(t.created_at_ms);
    }
    let mut rows: Vec<PersonRow> = by
        .into_values()
        .map(|(mut r, oldest)| {
            r.oldest = age(now, oldest);
            r
        })
        .collect();
    // Busiest first; the unassigned pile last, where it reads as "left over".
    rows.sort_by(|a, b| {
        (a.who == "—")
            .cmp(&(b.who == "—"))
            .then(b.total.cmp(&a.total))
            .then(a.who.cmp(&b.who))
    });
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
        links: links(h, t.id).await?,
        messages,
        history,
    }))
}

/// The overview's period switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    /// The last 24 hours, by hour.
    Day,
    /// The last 7 days, by day.
    #[default]
    Week,
    /// The last 30 days, by day.
    Month,
}

impl Period {
    pub const ALL: [Period; 3] = [Period::Day, Period::Week, Period::Month];

    pub fn parse(s: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The buckets' starts (oldest first) and the end of the last, in `zone`:
    /// whole hours or whole local days, the current one included.
    fn buckets(self, zone: &Zone, now_ms: i64) -> Vec<(i64, String)> {
        let Ok(now) = Timestamp::from_millisecond(now_ms) else {
            return Vec::new();
        };
        let local = zone.at(now);
        let (count, hourly) = match self {
            Period::Day => (24, true),
            Period::Week => (7, false),
            Period::Month => (30, false),
        };
        let start = if hourly {
            local.round(jiff::Unit::Hour).ok().map(|z| {
                if z > local {
                    z.checked_sub(1.hour()).unwrap_or(z)
                } else {
                    z
                }
            })
        } else {
            local.start_of_day().ok()
        };
        let Some(start) = start else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(count + 1);
        for i in (0..count as i64).rev() {
            let step = if hourly { i.hours() } else { i.days() };
            if let Ok(z) = start.checked_sub(step) {
                let label = if hourly {
                    z.strftime("%H:00").to_string()
                } else {
                    z.strftime("%m-%d").to_string()
                };
                out.push((z.timestamp().as_millisecond(), label));
            }
        }
        let step = if hourly { 1.hours() } else { 1.days() };
        if let Ok(end) = start.checked_add(step) {
            out.push((end.timestamp().as_millisecond(), String::new()));
        }
        out
    }
}

/// The overview's figures for one period.
#[derive(Debug, Clone)]
pub struct Overview {
    pub period: Period,
    pub open: u64,
    pub claimed: u64,
    pub pending: u64,
    pub new_in_period: u64,
    pub answered_in_period: u64,
    /// New tickets per bucket.
    pub new: Series,
    /// Median minutes to the first answer, per bucket of creation.
    pub first_response: Series,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

pub async fn overview(h: &WebHandles, period: Period) -> Result<Overview, StoreError> {
    let now = h.clock.now_ms();
    let edges = period.buckets(&h.zone, now);
    let from = edges.first().map_or(now, |e| e.0);
    let mut counts = [0u64; 3];
    for (i, s) in WAITING.iter().enumerate() {
        let f = TicketFilter {
            status: Some(*s),
            limit: Some(PER_STATUS),
            ..Default::default()
        };
        counts[i] = h.store.list_tickets(&f).await?.len() as u64;
    }
    // Every ticket of the period, whatever its status now. Newest first,
    // so reading stops at the period's start.
    let all = h
        .store
        .list_tickets(&TicketFilter {
            limit: Some(100_000),
            ..Default::default()
        })
        .await?;
    let in_period: Vec<&TicketRecord> = all
        .iter()
        .filter(|t| t.created_at_ms >= from && t.created_at_ms < now.max(from) + 1)
        .collect();
    let mut new_points = Vec::new();
    let mut fr_points = Vec::new();
    for w in edges.windows(2) {
        let ((start, label), (end, _)) = (&w[0], &w[1]);
        let here: Vec<&&TicketRecord> = in_period
            .iter()
            .filter(|t| t.created_at_ms >= *start && t.created_at_ms < *end)
            .collect();
        new_points.push(Point {
            label: label.clone(),
            value: Some(here.len() as f64),
        });
        let minutes: Vec<f64> = here
            .iter()
            .filter_map(|t| {
                t.first_response_at_ms
                    .map(|r| (r - t.created_at_ms) as f64 / 60_000.0)
            })
            .collect();
        fr_points.push(Point {
            label: label.clone(),
            value: median(minutes),
        });
    }
    let answered = in_period
        .iter()
        .filter(|t| t.first_response_at_ms.is_some())
        .count() as u64;
    Ok(Overview {
        period,
        open: counts[0],
        claimed: counts[1],
        pending: counts[2],
        new_in_period: in_period.len() as u64,
        answered_in_period: answered,
        new: Series {
            title: "New tickets".into(),
            unit: "tickets".into(),
            points: new_points,
        },
        first_response: Series {
            title: "Median time to first answer".into(),
            unit: "minutes".into(),
            points: fr_points,
        },
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
    fn thread_links_open_the_chat_app() {
        let m = ChatThread {
            platform: Platform::Matrix,
            room: "!abc:example.org".into(),
            thread_ref: "$ev/1".into(),
        };
        assert_eq!(
            thread_url(&m),
            "https://matrix.to/#/!abc:example.org/$ev%2F1"
        );
        let s = ChatThread {
            platform: Platform::Slack,
            room: "C024BE91L".into(),
            thread_ref: "1712345678.000200".into(),
        };
        assert_eq!(
            thread_url(&s),
            "https://slack.com/archives/C024BE91L/p1712345678000200"
        );
    }

    #[test]
    fn periods_have_their_buckets_in_the_zone() {
        let zone = Zone::parse("Europe/Berlin").unwrap();
        let now: Timestamp = "2026-12-06T07:30:00Z".parse().unwrap();
        let now = now.as_millisecond();
        let week = Period::Week.buckets(&zone, now);
        assert_eq!(week.len(), 8, "7 days and the end of the last");
        assert_eq!(week[6].1, "12-06");
        let berlin_midnight: Timestamp = "2026-12-05T23:00:00Z".parse().unwrap();
        assert_eq!(week[6].0, berlin_midnight.as_millisecond());
        let day = Period::Day.buckets(&zone, now);
        assert_eq!(day.len(), 25);
        assert_eq!(
            day[23].1, "08:00",
            "the current local hour is the last bucket"
        );
        assert_eq!(Period::Month.buckets(&zone, now).len(), 31);
        assert_eq!(Period::parse("month"), Some(Period::Month));
        assert_eq!(Period::parse("year"), None);
    }

    #[test]
    fn medians_and_clean_text() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(clean_text("a\u{0}b\nc\u{1b}[31m"), "ab\nc[31m");
    }
}
