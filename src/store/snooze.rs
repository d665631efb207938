//! Snoozes as the store keeps them: what snoozing did ([`SnoozeSet`]) and
//! when a wake-up clears one ([`WakeIf`]). The snooze itself is
//! `domain::snooze::Snooze`, on [`TicketRecord::snooze`](super::TicketRecord).
//! Queries: `sql/snooze.rs`.

use crate::domain::snooze::Snooze;
use crate::domain::ticket::Status;

/// What [`TicketStore::snooze`](super::TicketStore::snooze) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnoozeSet {
    /// Snoozed; `replaced` is the snooze it replaced, if any.
    Snoozed {
        replaced: Option<Snooze>,
    },
    /// A closed or set-aside ticket is in no queue: there is nothing to hide.
    NotInQueue(Status),
    NoSuchTicket,
}

/// When [`TicketStore::wake`](super::TicketStore::wake) clears a snooze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeIf {
    /// Whatever the snooze (`!unsnooze`).
    Snoozed,
    /// Only the snooze ending at this time (its wake-up timer): one changed
    /// or cancelled since is left alone.
    DueAt(i64),
}
