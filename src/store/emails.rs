//! Stored emails, both directions, without their raw bytes
//! ([`EmailRecord`]) and their delivery state ([`EmailState`]).
//! Queries: `sql/emails.rs`.

use crate::domain::email::Direction;
use crate::domain::email::Party;
use crate::domain::ids::{Agent, MessageId, TicketId};

/// Delivery state of a stored email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailState {
    /// Inbound mail, stored.
    Received,
    /// Outbound reply, waiting in the outbox.
    Queued,
    Sent,
    Failed,
    Uncertain,
    Cancelled,
}

impl EmailState {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailState::Received => "received",
            EmailState::Queued => "queued",
            EmailState::Sent => "sent",
            EmailState::Failed => "failed",
            EmailState::Uncertain => "uncertain",
            EmailState::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            EmailState::Received,
            EmailState::Queued,
            EmailState::Sent,
            EmailState::Failed,
            EmailState::Uncertain,
            EmailState::Cancelled,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }
}

/// A stored email without its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailRecord {
    pub id: i64,
    pub ticket: TicketId,
    pub direction: Direction,
    pub message_id: MessageId,
    pub from: Party,
    pub subject: String,
    pub sent_at: Option<i64>,
    pub stored_at_ms: i64,
    pub author: Option<Agent>,
    pub state: EmailState,
    pub size: i64,
}
