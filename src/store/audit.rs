//! A ticket's history, one [`AuditEntry`] a line. Queries: `sql/audit.rs`.

use crate::domain::ids::{Actor, TicketId};

/// One line of a ticket's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub ticket: Option<TicketId>,
    pub at_ms: i64,
    pub actor: Actor,
    pub action: String,
    pub details: String,
}
