//! Incoming email: what an ingest writes ([`NewInbound`], [`NewEmail`],
//! [`Destination`]), what it did ([`Recorded`]), and several in one
//! transaction ([`IngestBatch`]). Queries: `sql/ingest.rs`.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::chat::Platform;
use crate::domain::email::{ContentHash, Party};
use crate::domain::hygiene::{LoopFacts, LoopVerdict};
use crate::domain::ids::{EmailAddress, MailboxName, MessageId, TicketId, TicketToken};
use crate::domain::mailbox::Checkpoint;
use crate::domain::routing::Route;
use crate::domain::threading::{Candidates, ThreadKeys};
use crate::store::JobSpec;

/// The email part of an ingest.
#[derive(Debug, Clone)]
pub struct NewEmail {
    pub message_id: MessageId,
    pub content_hash: ContentHash,
    pub from: Party,
    pub subject: String,
    pub sent_at: Option<i64>,
    pub raw: Vec<u8>,
    /// Every address in From/To/Cc/Reply-To, minus the shared mailbox's own.
    pub participants: Vec<EmailAddress>,
}

/// Which ticket an incoming email goes to.
#[derive(Debug, Clone)]
pub enum Destination {
    New {
        token: TicketToken,
    },
    FollowUp {
        ticket: TicketId,
        matched_by: &'static str,
    },
}

/// Everything [`TicketStore::record_inbound`](super::TicketStore::record_inbound) writes in one transaction.
#[derive(Debug, Clone)]
pub struct NewInbound {
    pub mailbox: MailboxName,
    /// The IMAP position to record with this email (checkpoint advance).
    pub checkpoint: Option<Checkpoint>,
    pub imap_uid: Option<u32>,
    pub email: NewEmail,
    pub destination: Destination,
    /// Automatic mail (auto-reply, bounce, list) is filed but never reopens a ticket.
    pub automatic: Option<&'static str>,
    /// Tickets that matched but belonged to another customer (for the audit log).
    pub refused_merges: Vec<TicketId>,
    /// Chat platforms to post the email to.
    pub post_to: Vec<Platform>,
    /// What routing rules decided for a new ticket (room, tags, priority,
    /// owner, set aside), applied in the same transaction. Ignored for a
    /// follow-up: the ticket was routed when it was created.
    pub route: Route,
    /// Where a new ticket's root goes on each platform of `post_to` (a
    /// rule's room, else the mailbox's): its chat jobs run in that room's
    /// outbox lane. Ignored for a follow-up (it goes to the ticket's
    /// thread); a platform missing here posts to the mailbox's room, from
    /// the platform's shared lane.
    pub rooms: BTreeMap<Platform, String>,
    pub now_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The same message (Message-ID and content) was already stored.
    Duplicate,
    NewTicket {
        ticket: TicketId,
        email_id: i64,
    },
    FollowUp {
        ticket: TicketId,
        email_id: i64,
        reopened: bool,
    },
}

impl Recorded {
    /// The ticket the email went to, unless it was a duplicate.
    pub fn ticket(&self) -> Option<TicketId> {
        match self {
            Recorded::Duplicate => None,
            Recorded::NewTicket { ticket, .. } | Recorded::FollowUp { ticket, .. } => Some(*ticket),
        }
    }
}

/// Incoming emails stored in one transaction: a fetch batch of a backlog
/// costs one commit and one checkpoint write rather than one per email.
/// Threading looks up inside the transaction, so an email sees the ones
/// before it in the same batch. Dropped without [`IngestBatch::commit`],
/// nothing of it is stored.
#[async_trait]
pub trait IngestBatch: Send {
    async fn thread_candidates(
        &mut self,
        mailbox: &MailboxName,
        keys: &ThreadKeys,
    ) -> StoreResult<Candidates>;
    /// What ingest needs before it stores one email: its threading
    /// candidates, its sender's activity (what the loop guard needs: their
    /// inbound mail stored since `since_ms`, the last loop mail, their
    /// latest ticket) and whether it is stored already, together (SQL:
    /// one statement when the email references nothing). When it is not a
    /// duplicate and the next call is its [`IngestBatch::record_inbound`],
    /// that call skips its own duplicate check: nothing was written in
    /// between, inside the same transaction.
    async fn look_up(
        &mut self,
        mailbox: &MailboxName,
        keys: &ThreadKeys,
        email: (&MessageId, &ContentHash),
        since_ms: i64,
    ) -> StoreResult<Looked>;
    /// Reads what [`IngestBatch::look_up`] needs for every email of the
    /// batch at once, before any of them is written (SQL: a few statements
    /// for the whole batch instead of one or two per email). A later
    /// `look_up` of one of them answers from it as long as nothing the
    /// batch wrote since could change that answer (the same sender, a
    /// referenced Message-ID, a candidate ticket, …), and queries
    /// otherwise: the answers are exactly those of `look_up` alone.
    async fn prefetch(
        &mut self,
        mailbox: &MailboxName,
        emails: &[LookUpKey<'_>],
    ) -> StoreResult<()>;
    /// Stores one email in the batch. `Ok(None)`: a plain email (a new
    /// ticket no rule touched, a follow-up that changes nothing but the
    /// ticket's mail) whose rows wait for the commit, written there with
    /// the others many to a statement; the commit's list says what it
    /// became. Reads of the batch (look-ups, duplicate checks) see it all
    /// the same.
    async fn record_inbound(&mut self, new: NewInbound) -> StoreResult<Option<Recorded>>;
    /// Records a loop mail: a new loop (with its audit line and the room
    /// notices) or one more mail of the running one.
    async fn record_loop(&mut self, record: LoopRecord) -> StoreResult<()>;
    /// Writes what waits and commits; returns what each
    /// [`IngestBatch::record_inbound`] became, in the order called.
    async fn commit(self: Box<Self>) -> StoreResult<Vec<Recorded>>;
}

/// One email of [`IngestBatch::prefetch`]: what its `look_up` will ask.
#[derive(Debug, Clone, Copy)]
pub struct LookUpKey<'a> {
    pub keys: &'a ThreadKeys,
    pub message_id: &'a MessageId,
    pub content_hash: &'a ContentHash,
    /// The loop guard's window starts here (see `look_up`'s `since_ms`).
    pub since_ms: i64,
}

/// What [`IngestBatch::look_up`] found.
#[derive(Debug, Clone)]
pub struct Looked {
    pub candidates: Candidates,
    pub activity: SenderActivity,
    /// The same message (Message-ID and content) is stored already.
    pub duplicate: bool,
}

/// A sender's recent mail, as the loop guard needs it (see
/// [`IngestBatch::look_up`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderActivity {
    pub facts: LoopFacts,
    /// The ticket of their latest inbound mail in the mailbox.
    pub latest_ticket: Option<TicketId>,
}

/// One mail of a loop (see [`IngestBatch::record_loop`]).
#[derive(Debug, Clone)]
pub struct LoopRecord {
    pub mailbox: MailboxName,
    pub sender: EmailAddress,
    pub ticket: TicketId,
    /// `Started` or `Continuing`.
    pub verdict: LoopVerdict,
    /// For a new loop: the audit line's details and the room notices.
    pub details: String,
    pub notices: Vec<JobSpec>,
    pub now_ms: i64,
}
