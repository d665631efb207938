//! SLA clocks as stored: what waits for an answer since when, the pending
//! pauses, and what was already said about a clock ([`SlaMark`]); and what
//! an SLA timer that fires leaves behind ([`SlaFiring`]). The clock itself
//! is `domain::sla`'s. Queries: `sql/sla.rs`.

use jiff::Timestamp;

use super::{JobSpec, TicketRecord};
use crate::domain::sla::{History, Pause};
use crate::domain::ticket::Status;

/// A ticket's SLA facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlaRecord {
    /// The first customer mail not answered yet; `None`: nothing waits (or
    /// the ticket is not tracked).
    pub awaiting_since_ms: Option<i64>,
    /// The ticket has a row (every ticket since migration 0010 has).
    pub tracked: bool,
    /// `(from, until)`; `until` is `None` while still pending.
    pub pauses: Vec<(i64, Option<i64>)>,
    /// What was said, per clock (named by its start).
    pub marks: Vec<(i64, SlaMark)>,
}

impl SlaRecord {
    pub fn marked(&self, clock_start_ms: i64, mark: SlaMark) -> bool {
        self.marks.contains(&(clock_start_ms, mark))
    }

    /// The ticket's history as the clock (`domain::sla::clock`) reads it:
    /// what the chat card, the SLA timers and the dashboard all compute
    /// from. Tickets without a row (none since migration 0010 fills them
    /// in) are read off the ticket.
    pub fn history(&self, ticket: &TicketRecord) -> History {
        let at = |ms: i64| Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
        let awaiting = match (self.tracked, ticket.first_response_at_ms) {
            (true, _) => self.awaiting_since_ms,
            (false, None) => Some(ticket.created_at_ms),
            (false, Some(answered)) => {
                (ticket.last_customer_at_ms > answered).then_some(ticket.last_customer_at_ms)
            }
        };
        History {
            first_response_at: ticket.first_response_at_ms.map(at),
            awaiting_since: awaiting.map(at),
            pauses: self
                .pauses
                .iter()
                .map(|(from, until)| Pause {
                    from: at(*from),
                    until: until.map(at),
                })
                .collect(),
            inactive: matches!(
                ticket.state.status(),
                Status::Closed | Status::Ignored | Status::Spam
            ),
        }
    }
}

/// Said once per clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SlaMark {
    /// The thread was nudged (the nudge threshold passed).
    Nudge,
    /// The room was told of a breach.
    Breach,
}

impl SlaMark {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaMark::Nudge => "nudge",
            SlaMark::Breach => "breach",
        }
    }
    pub fn parse(s: &str) -> Option<SlaMark> {
        [SlaMark::Nudge, SlaMark::Breach]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A mark to set and the chat jobs to queue with it, only if it was not set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaFiring {
    pub mark: SlaMark,
    pub clock_start_ms: i64,
    pub jobs: Vec<JobSpec>,
}
