//! Persistence behind one domain-shaped trait, [`TicketStore`].
//!
//! [`sql::SqlStore`] implements it for SQLite (embedded default) and
//! PostgreSQL. Both run the same queries through sqlx's `Any` driver, with a
//! migrations folder per database; the one conformance suite in
//! `tests/it/store_conformance.rs` runs against each.
//!
//! Every method that changes several rows does so in one transaction: an
//! email, its ticket, its audit entries, its outbox jobs and the IMAP
//! checkpoint land together or not at all.

pub mod settings;
pub mod sql;

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::chat::{ChatThread, Platform, SharedFile};
use crate::domain::email::{ContentHash, Direction, Party};
use crate::domain::ids::{
    Actor, Agent, EmailAddress, MailboxName, MessageId, Tag, TicketId, TicketToken,
};
use crate::domain::mailbox::Checkpoint;
use crate::domain::threading::{Candidates, ThreadKeys};
use crate::domain::ticket::{Refusal, Status, TicketEvent, TicketState};

/// Errors from the store. Callers branch on [`StoreError::is_transient`], never on text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or was busy; the operation may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A query failed for a reason retrying will not fix.
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
    /// Applying the migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not decode into the domain (manual edits, corruption).
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    /// The database could not be opened (bad path, permissions).
    #[error("cannot open the database: {0}")]
    Open(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        let transient = match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                // SQLite BUSY/LOCKED, PostgreSQL serialization/deadlock/admin shutdown.
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                matches!(
                    code.as_str(),
                    "5" | "6" | "517" | "40001" | "40P01" | "57P01" | "57P02" | "57P03"
                ) || db.message().contains("database is locked")
            }
            _ => false,
        };
        if transient {
            StoreError::Unavailable(e)
        } else {
            StoreError::Query(e)
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Work the outbox worker does after a commit. Serialized as JSON in the
/// outbox row, so adding a variant needs no migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    /// Post an email to the ticket's chat thread (the root message for the
    /// first email, a thread reply for the others).
    ChatPost { platform: Platform, email_id: i64 },
    /// Refresh the status line of the ticket's root message.
    ChatStatus { platform: Platform },
    /// Tell the thread something (a failure, a refusal).
    ChatNotice { platform: Platform, text: String },
    /// Tell a room something outside any ticket (the mailbox watchdog).
    ChatRoomNotice {
        platform: Platform,
        room: String,
        text: String,
    },
    /// Upload one file of an email into the ticket's thread (queued by the
    /// post of that email, once it is in the room).
    ChatFile {
        platform: Platform,
        email_id: i64,
        part: FilePart,
    },
    /// Send a queued reply over SMTP.
    SendReply { email_id: i64 },
    /// After a send: APPEND the reply to the Sent folder and flag the answered
    /// original `\Answered`.
    FileSent { email_id: i64 },
}

impl JobSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::ChatPost { .. } => "chat_post",
            JobSpec::ChatStatus { .. } => "chat_status",
            JobSpec::ChatNotice { .. } => "chat_notice",
            JobSpec::ChatRoomNotice { .. } => "chat_room_notice",
            JobSpec::ChatFile { .. } => "chat_file",
            JobSpec::SendReply { .. } => "send_reply",
            JobSpec::FileSent { .. } => "file_sent",
        }
    }

    /// Jobs in one lane run one at a time, in order; lanes run independently.
    /// Chat posts keep a room's order; each ticket's mail keeps its own.
    pub fn lane(&self, ticket: Option<TicketId>) -> String {
        let t = ticket.map(|t| t.get()).unwrap_or(0);
        match self {
            JobSpec::ChatPost { platform, .. }
            | JobSpec::ChatStatus { platform }
            | JobSpec::ChatNotice { platform, .. }
            | JobSpec::ChatRoomNotice { platform, .. }
            | JobSpec::ChatFile { platform, .. } => format!("chat:{}", platform.as_str()),
            JobSpec::SendReply { .. } | JobSpec::FileSent { .. } => format!("mail:{t}"),
        }
    }

    /// Whether running this job twice could repeat a visible effect nobody can
    /// take back (a customer email). Such a job found half-done after a crash
    /// is not retried (at-most-once); everything else is (at-least-once, made
    /// idempotent by its handler).
    pub fn at_most_once(&self) -> bool {
        matches!(self, JobSpec::SendReply { .. })
    }
}

/// Which file of an email a [`JobSpec::ChatFile`] uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "file", rename_all = "snake_case")]
pub enum FilePart {
    /// The email's whole text, when the post could not show all of it.
    FullText,
    /// The attachment at this index of the parsed email's attachment list.
    Attachment { index: usize },
}

impl JobSpec {
    /// The platform a chat job talks to.
    pub fn platform(&self) -> Option<Platform> {
        match self {
            JobSpec::ChatPost { platform, .. }
            | JobSpec::ChatStatus { platform }
            | JobSpec::ChatNotice { platform, .. }
            | JobSpec::ChatRoomNotice { platform, .. }
            | JobSpec::ChatFile { platform, .. } => Some(*platform),
            JobSpec::SendReply { .. } | JobSpec::FileSent { .. } => None,
        }
    }
}

/// How a job ended, and what it leaves behind in the same transaction: the
/// ticket's chat thread (a root just posted), follow-on jobs (its files, a
/// notice) and an audit line. So a crash never leaves a posted root
/// unrecorded, nor its files or notices unqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub outcome: JobOutcome,
    pub thread: Option<ChatThread>,
    /// Queued for the job's ticket, due at once, in this order.
    pub follow_ons: Vec<JobSpec>,
    /// `(action, details)` for the job's ticket, by the system.
    pub audit: Option<(&'static str, String)>,
}

impl Settlement {
    pub fn new(outcome: JobOutcome) -> Settlement {
        Settlement {
            outcome,
            thread: None,
            follow_ons: Vec::new(),
            audit: None,
        }
    }
}

/// What `mailroom outbox retry` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeued {
    /// Queued again, due now, with its attempts reset.
    Queued(Job),
    NoSuchJob,
    /// Only failed jobs are retried; this one is not.
    NotFailed(JobState),
    /// A reply is never re-sent from the outbox (its failure was told in
    /// the thread; a new `!reply` is the way to send it again).
    Reply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Pending,
    InFlight,
    Done,
    Failed,
    /// Interrupted mid-send: it may or may not have reached the server.
    Uncertain,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::InFlight => "in_flight",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Uncertain => "uncertain",
            JobState::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            JobState::Pending,
            JobState::InFlight,
            JobState::Done,
            JobState::Failed,
            JobState::Uncertain,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|j| j.as_str() == s)
    }
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub ticket: Option<TicketId>,
    pub spec: JobSpec,
    pub state: JobState,
    /// Attempts made so far, including the one in flight.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub not_before_ms: i64,
    /// When it was queued (for latency metrics).
    pub created_at_ms: i64,
}

/// How a job attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    /// Try again at this time.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// Give up; the error is kept for the audit and the operator.
    Failed {
        error: String,
    },
}

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
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_customer_at_ms: i64,
}

/// Filter for [`TicketStore::list_tickets`].
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub status: Option<Status>,
    pub mailbox: Option<MailboxName>,
    pub owner: Option<Agent>,
    pub limit: Option<u32>,
}

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

/// Everything [`TicketStore::record_inbound`] writes in one transaction.
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

/// Result of [`TicketStore::apply`].
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
    async fn record_inbound(&mut self, new: NewInbound) -> StoreResult<Recorded>;
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// The ticket store. Methods are shaped after the flows that use them, not
/// after tables.
#[async_trait]
pub trait TicketStore: Send + Sync {
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;

    async fn checkpoint(&self, mailbox: &MailboxName) -> StoreResult<Option<Checkpoint>>;
    async fn save_checkpoint(
        &self,
        mailbox: &MailboxName,
        cp: Checkpoint,
        now_ms: i64,
    ) -> StoreResult<()>;

    /// Whether this exact message (Message-ID and content) is stored.
    async fn has_email(
        &self,
        mailbox: &MailboxName,
        id: &MessageId,
        hash: &ContentHash,
    ) -> StoreResult<bool>;
    /// Tickets an incoming email could belong to, per threading rule.
    async fn thread_candidates(
        &self,
        mailbox: &MailboxName,
        keys: &ThreadKeys,
    ) -> StoreResult<Candidates>;
    /// Stores an incoming email with everything that follows from it, atomically.
    async fn record_inbound(&self, new: NewInbound) -> StoreResult<Recorded>;
    /// Starts storing several incoming emails in one transaction.
    async fn begin_ingest(&self) -> StoreResult<Box<dyn IngestBatch>>;

    async fn ticket(&self, id: TicketId) -> StoreResult<Option<TicketRecord>>;
    async fn list_tickets(&self, filter: &TicketFilter) -> StoreResult<Vec<TicketRecord>>;
    async fn emails(&self, ticket: TicketId) -> StoreResult<Vec<EmailRecord>>;
    async fn raw_email(&self, email_id: i64) -> StoreResult<Option<Vec<u8>>>;
    async fn audit_log(&self, ticket: TicketId) -> StoreResult<Vec<AuditEntry>>;
    /// Appends an audit entry on its own (for actions that change no row).
    async fn audit(
        &self,
        ticket: Option<TicketId>,
        actor: &Actor,
        action: &str,
        details: &str,
        now_ms: i64,
    ) -> StoreResult<()>;

    /// Applies a ticket event atomically. The conditional update on the
    /// ticket's version is the lock: of two concurrent claims exactly one
    /// wins and the other is refused with the winner's name. On a change, a
    /// status refresh is queued for each of `notify`.
    async fn apply(
        &self,
        ticket: TicketId,
        actor: &Actor,
        event: &TicketEvent,
        notify: &[Platform],
        now_ms: i64,
    ) -> StoreResult<Applied>;

    /// The latest inbound email of a ticket (the one a reply answers), raw.
    async fn latest_inbound(&self, ticket: TicketId)
    -> StoreResult<Option<(EmailRecord, Vec<u8>)>>;
    /// Stores an outbound reply and queues its send, atomically.
    async fn queue_reply(&self, reply: NewReply) -> StoreResult<i64>;
    async fn outgoing(&self, email_id: i64) -> StoreResult<Option<OutgoingMail>>;
    /// Cancels a reply still waiting in the outbox (undo). False if it already left.
    async fn cancel_reply(&self, email_id: i64, actor: &Actor, now_ms: i64) -> StoreResult<bool>;

    /// Queues a job.
    async fn enqueue(
        &self,
        ticket: Option<TicketId>,
        spec: &JobSpec,
        not_before_ms: i64,
        now_ms: i64,
    ) -> StoreResult<i64>;
    /// Takes the next due job, marking it in flight. At most one job per lane
    /// is in flight, and a lane's jobs run in insertion order.
    async fn next_job(&self, now_ms: i64) -> StoreResult<Option<Job>>;
    /// Earliest `not_before` among pending jobs, to sleep until.
    async fn next_due_at(&self) -> StoreResult<Option<i64>>;
    async fn finish_job(&self, job: &Job, outcome: &JobOutcome, now_ms: i64) -> StoreResult<()>;
    /// Ends an in-flight job with everything it leaves behind, in one
    /// transaction (see [`Settlement`]). A job no longer in flight (this
    /// write already happened) is left as it is.
    async fn settle_job(&self, job: &Job, settlement: &Settlement, now_ms: i64) -> StoreResult<()>;
    /// Puts a failed job back in the queue, due now, attempts reset; the
    /// audit log records who did it.
    async fn requeue_job(&self, id: i64, actor: &Actor, now_ms: i64) -> StoreResult<Requeued>;
    /// The send was accepted by the SMTP server: marks the job done, the email
    /// sent, writes the audit entry, queues filing in Sent and a "sent by"
    /// notice for each of `notify`, atomically.
    async fn reply_sent(
        &self,
        job: &Job,
        email_id: i64,
        notify: &[Platform],
        now_ms: i64,
    ) -> StoreResult<()>;
    /// The send failed for good (or is uncertain): records it on the email,
    /// the job and the audit log, and queues notices for `notify`.
    async fn reply_failed(
        &self,
        job: &Job,
        email_id: i64,
        state: EmailState,
        error: &str,
        notify: &[Platform],
        now_ms: i64,
    ) -> StoreResult<()>;
    /// After a crash: jobs left in flight. At-most-once jobs (sends) become
    /// `uncertain` and are not retried; the others go back to pending.
    async fn recover_in_flight(&self, now_ms: i64) -> StoreResult<Vec<Job>>;
    async fn jobs(&self, states: &[JobState]) -> StoreResult<Vec<Job>>;
    /// How many outbox jobs are in each state (states without jobs are left out).
    async fn count_jobs(&self) -> StoreResult<Vec<(JobState, u64)>>;

    async fn chat_thread(
        &self,
        ticket: TicketId,
        platform: Platform,
    ) -> StoreResult<Option<ChatThread>>;
    async fn link_chat_thread(&self, ticket: TicketId, thread: &ChatThread) -> StoreResult<()>;
    /// Records that a chat event is being acted on. False if it already was
    /// (a redelivery): the caller then ignores it.
    async fn first_sighting(
        &self,
        platform: Platform,
        event_ref: &str,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Remembers a file posted in a ticket's thread.
    async fn record_chat_file(
        &self,
        thread: &ChatThread,
        event_ref: &str,
        agent: &Agent,
        file: &SharedFile,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Files posted in a thread at or after `since_ms`, oldest first.
    async fn chat_files(&self, thread: &ChatThread, since_ms: i64) -> StoreResult<Vec<SharedFile>>;
    /// The ticket whose thread root is `thread_ref` in `room`.
    async fn ticket_by_thread(&self, thread: &ChatThread) -> StoreResult<Option<TicketId>>;
}
