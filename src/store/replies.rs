//! Outbound replies: one to queue ([`NewReply`]) and one the worker sends
//! ([`OutgoingMail`]). Queries: `sql/replies.rs`.

use super::emails::EmailState;
use crate::domain::email::{ContentHash, Party};
use crate::domain::ids::{Agent, MailboxName, MessageId, TicketId};

/// A reply to queue: the outbound email, already built and rendered.
#[derive(Debug, Clone)]
pub struct NewReply {
    pub ticket: TicketId,
    pub mailbox: MailboxName,
    pub author: Agent,
    pub message_id: MessageId,
    pub content_hash: ContentHash,
    pub from: Party,
    pub subject: String,
    pub raw: Vec<u8>,
    /// Earliest send time (an undo window).
    pub send_at_ms: i64,
    pub now_ms: i64,
}

/// What the worker needs to send a queued reply.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub email_id: i64,
    pub ticket: TicketId,
    pub mailbox: MailboxName,
    pub message_id: MessageId,
    pub raw: Vec<u8>,
    pub state: EmailState,
    /// Message-ID of the inbound email this answers, for `\Answered`.
    pub answers: Option<MessageId>,
}
