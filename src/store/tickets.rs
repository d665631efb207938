//! Tickets as stored ([`TicketRecord`]), how to list them
//! ([`TicketFilter`]) and what applying a ticket event did ([`Applied`]).
//! Queries: `sql/tickets.rs`.

use std::collections::BTreeSet;

use crate::domain::ids::{Agent, EmailAddress, MailboxName, Tag, TicketId, TicketToken};
use crate::domain::routing::Priority;
use crate::domain::snooze::Snooze;
use crate::domain::ticket::{Refusal, Status, TicketState};

/// A ticket as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRecord {
    pub id: TicketId,
    pub mailbox: MailboxName,
    pub token: TicketToken,
    pub subject: String,
    pub customer: EmailAddress,
    pub state: TicketState,
    pub tags: BTreeSet<Tag>,
    /// Set by a routing rule when the ticket was created; normal otherwise.
    pub priority: Priority,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_customer_at_ms: i64,
    /// When a teammate first answered (a `!reply` sent, or a reply found in
    /// the mailbox's Sent folder); `None` until then.
    pub first_response_at_ms: Option<i64>,
    /// Hidden from the queue until then (`!snooze`); `None`: not snoozed.
    pub snooze: Option<Snooze>,
}

/// Filter for [`TicketStore::list_tickets`](super::TicketStore::list_tickets).
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub status: Option<Status>,
    pub mailbox: Option<MailboxName>,
    pub owner: Option<Agent>,
    pub limit: Option<u32>,
    /// `Some(false)`: leave snoozed tickets out (the queue);
    /// `Some(true)`: only snoozed ones; `None`: both.
    pub snoozed: Option<bool>,
}

/// Result of [`TicketStore::apply`](super::TicketStore::apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Changed {
        before: TicketState,
        after: TicketState,
    },
    /// Accepted, nothing to change (claiming your own ticket again).
    Unchanged,
    Refused(Refusal),
    NoSuchTicket,
}
