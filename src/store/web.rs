//! The dashboard's sign-in links and sessions, and its queue's rows.
//! Queries: `sql/web.rs`.

use super::{SlaRecord, TicketRecord};
use crate::domain::chat::ChatThread;
use crate::domain::ids::Agent;
use crate::domain::web::SecretHash;

/// A sign-in link to store (its token's hash) when it is handed out.
#[derive(Debug, Clone)]
pub struct NewWebLink {
    pub token: SecretHash,
    pub agent: Agent,
    pub expires_at_ms: i64,
    /// Where it was asked for (`matrix`, `slack`, `cli`), for the audit line.
    pub via: String,
}

/// The session a good link opens.
#[derive(Debug, Clone)]
pub struct NewWebSession {
    pub id: SecretHash,
    pub expires_at_ms: i64,
}

/// A waiting ticket as the dashboard's queue shows it: the ticket, its
/// chat threads and its SLA facts, read for all waiting tickets at once
/// (a fixed number of queries, however long the queue).
#[derive(Debug, Clone)]
pub struct QueueTicket {
    pub ticket: TicketRecord,
    pub threads: Vec<ChatThread>,
    pub sla: SlaRecord,
}
