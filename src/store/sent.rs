//! Replies found in the mailbox's Sent folder, written outside mailroom
//! (Outlook, Gmail): what the Sent watcher hands the store ([`SentBatch`],
//! [`SentMail`]) and what became of each ([`SentRecorded`]).
//! Queries: `sql/sent.rs`.

use crate::domain::chat::Platform;
use crate::domain::email::{ContentHash, Party};
use crate::domain::ids::{EmailAddress, MailboxName, MessageId, TicketId};
use crate::domain::mailbox::Checkpoint;

/// One message of the Sent folder, parsed.
#[derive(Debug, Clone)]
pub struct SentMail {
    pub message_id: MessageId,
    pub content_hash: ContentHash,
    /// The From header: usually the shared address.
    pub from: Party,
    /// Who wrote it: the Sender when a teammate wrote on the mailbox's
    /// behalf, else From. Shown in the thread and the audit log.
    pub written_by: Party,
    pub subject: String,
    pub sent_at: Option<i64>,
    /// The ids it answers, In-Reply-To first, then References newest first
    /// (the order of [`ThreadKeys::referenced_ids`](crate::domain::threading::ThreadKeys::referenced_ids)):
    /// the first one stored decides the ticket.
    pub referenced: Vec<MessageId>,
    /// To and Cc, minus the shared address: they join the ticket's participants.
    pub recipients: Vec<EmailAddress>,
    pub raw: Vec<u8>,
}

/// Messages of one Sent fetch batch, stored in one transaction with the
/// checkpoint they advance to.
#[derive(Debug, Clone)]
pub struct SentBatch {
    pub mailbox: MailboxName,
    pub mails: Vec<SentMail>,
    pub checkpoint: Checkpoint,
    /// Chat platforms the mailbox's tickets are posted to.
    pub post_to: Vec<Platform>,
    pub now_ms: i64,
}

/// What became of one [`SentMail`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentRecorded {
    /// Its Message-ID is already stored: mailroom's own reply filed in Sent,
    /// or a message seen before a rescan.
    Known,
    /// It answers nothing mailroom knows: not a ticket's conversation.
    Unthreaded,
    /// Stored as an outbound email of `ticket`.
    Reply {
        ticket: TicketId,
        email_id: i64,
        /// The ticket went to pending because of it.
        now_pending: bool,
    },
}
