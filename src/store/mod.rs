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
//!
//! # Where things are
//!
//! One concern a file, twice: its vocabulary (records, inputs, results) in
//! `store/<concern>.rs`, its queries for both databases in
//! `store/sql/<concern>.rs`. Everything is re-exported here, so callers
//! write `store::JobSpec`, never `store::outbox::JobSpec`.
//!
//! | concern | vocabulary | queries (tables) |
//! |---|---|---|
//! | errors | `error.rs` | — |
//! | tickets, their state and tags | `tickets.rs` | `sql/tickets.rs` (`tickets`, `ticket_tags`) |
//! | incoming mail and threading | `ingest.rs` | `sql/ingest.rs` (`emails`, `tickets`, `participants`) |
//! | stored emails, raw bytes in pieces | `emails.rs` | `sql/emails.rs` (`emails`, `email_raw_pieces`) |
//! | outbound replies | `replies.rs` | `sql/replies.rs` (`emails`, `outbox`) |
//! | the outbox (jobs) | `outbox.rs` | `sql/outbox.rs` (`outbox`) |
//! | chat threads, events, files | in `domain::chat` | `sql/chat.rs` (`chat_threads`, `chat_events`, `chat_files`) |
//! | IMAP checkpoints | in `domain::mailbox` | `sql/checkpoints.rs` (`checkpoints`) |
//! | replies found in Sent | `sent.rs` | `sql/sent.rs` (`emails`, `tickets`, `outbox`) |
//! | the audit log | `audit.rs` | `sql/audit.rs` (`audit_log`) |
//! | snoozes | `snooze.rs` | `sql/snooze.rs` (snooze columns of `tickets`) |
//! | OAuth2 grants per mailbox | `grants.rs` | `sql/grants.rs` (`oauth_grants`) |
//! | auto-assignment: cursors, away marks, picks | `assign.rs` | `sql/assign.rs` (`assign_cursors`, `people_away`, `auto_assignments`) |
//! | the board per room | in `domain::board` | `sql/board.rs` (`chat_boards`; reads `tickets`, `chat_threads`) |
//! | SLA clocks' facts and markers | `sla.rs` | `sql/sla.rs` (`sla_tickets`, `sla_pauses`, `sla_marks`) |
//! | dashboard sign-in links and sessions | `web.rs` | `sql/web.rs` (`web_links`, `web_sessions`) |
//! | figures (read only) | `analytics.rs` | `sql/analytics.rs` (`tickets`, `ticket_tags`, `audit_log`, `emails`) |
//! | replicas, leases (its own trait, [`ClusterStore`]) | `cluster.rs` | `sql/cluster.rs` (`replicas`, `leases`, `outbox.taken_by`) |
//!
//! `sql/mod.rs` holds [`sql::SqlStore`] (connecting, migrating) and the one
//! `impl TicketStore for SqlStore`, a line per method naming the file that
//! does the work. Writes that span concerns (an ingest queues jobs and
//! audit lines) call the owning file's `pub(super)` helper inside their
//! transaction (`insert_job`, `insert_audit`, `upsert_checkpoint`, …).
//!
//! # Adding a table set
//!
//! A new concern (routing rules, SLA timers, leases, …) lands in files of
//! its own: its records in `store/<concern>.rs` (re-exported below), its
//! methods in a section of [`TicketStore`], its queries as functions over
//! the pool in `store/sql/<concern>.rs`, a forwarding line each in
//! `sql/mod.rs`, a migration in both `migrations/sqlite` and
//! `migrations/postgres`, and its checks in the conformance suite.
//!
//! One trait rather than a trait per concern: callers hold concrete
//! `SqlStore`s as well as `dyn TicketStore`s, and methods of split traits
//! would need each trait imported wherever a `SqlStore` is used.

pub mod analytics;
mod assign;
mod audit;
mod cluster;
mod emails;
mod error;
mod grants;
mod ingest;
mod outbox;
mod replies;
mod sent;
pub mod settings;
mod sla;
mod snooze;
pub mod sql;
mod tickets;
mod web;

use async_trait::async_trait;

pub use assign::AwayMark;
pub use audit::AuditEntry;
pub use cluster::{ClusterStatus, ClusterStore, LeaseRecord, NewReplica, ReplicaRecord};
pub use emails::{EmailRecord, EmailState};
pub use error::{StoreError, StoreResult};
pub use grants::{Grant, NewGrant, Refreshed};
pub use ingest::{
    Destination, IngestBatch, LookUpKey, Looked, LoopRecord, NewEmail, NewInbound, Recorded,
    SenderActivity,
};
pub use outbox::{
    FilePart, Job, JobOutcome, JobSpec, JobState, Requeued, Settlement, chat_lane, legacy_chat_lane,
};
pub use replies::{NewReply, OutgoingMail};
pub use sent::{SentBatch, SentMail, SentRecorded};
pub use sla::{SlaFiring, SlaMark, SlaRecord};
pub use snooze::{SnoozeSet, WakeIf};
pub use tickets::{Applied, TicketFilter, TicketRecord};
pub use web::{NewWebLink, NewWebSession, QueueTicket};

use crate::domain::analytics::{ActiveTicket, PeriodRows, Scope, WaitingCount};
use crate::domain::board::BoardTicket;
use crate::domain::chat::{ChatThread, Platform, SharedFile};
use crate::domain::email::ContentHash;
use crate::domain::ids::{Actor, Agent, MailboxName, MessageId, Tag, TicketId};
use crate::domain::mailbox::{Checkpoint, FolderRole};
use crate::domain::threading::{Candidates, ThreadKeys};
use crate::domain::ticket::TicketEvent;
use crate::domain::web::{Redeemed, SecretHash};

/// The ticket store. Methods are shaped after the flows that use them, not
/// after tables.
#[async_trait]
pub trait TicketStore: Send + Sync {
    // The schema: `sql/mod.rs`.

    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;

    // IMAP checkpoints: `sql/checkpoints.rs`.

    async fn checkpoint(&self, mailbox: &MailboxName) -> StoreResult<Option<Checkpoint>>;
    async fn save_checkpoint(
        &self,
        mailbox: &MailboxName,
        cp: Checkpoint,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// The checkpoint of one of the mailbox's folders ([`checkpoint`](Self::checkpoint)
    /// is the ingest folder's).
    async fn folder_checkpoint(
        &self,
        mailbox: &MailboxName,
        role: FolderRole,
    ) -> StoreResult<Option<Checkpoint>>;
    async fn save_folder_checkpoint(
        &self,
        mailbox: &MailboxName,
        role: FolderRole,
        cp: Checkpoint,
        now_ms: i64,
    ) -> StoreResult<()>;

    // Replies found in the Sent folder: `sql/sent.rs`.

    /// Stores messages found in the Sent folder, in one transaction with the
    /// Sent checkpoint: each one answering a ticket becomes an outbound email
    /// of it, with its audit line, status change and chat posts; a known
    /// Message-ID (mailroom's own reply, a rescan) and a message threading
    /// to no ticket change nothing.
    async fn record_sent(&self, batch: SentBatch) -> StoreResult<Vec<SentRecorded>>;

    // Incoming mail: `sql/ingest.rs`.

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

    // Tickets: `sql/tickets.rs`.

    async fn ticket(&self, id: TicketId) -> StoreResult<Option<TicketRecord>>;
    async fn list_tickets(&self, filter: &TicketFilter) -> StoreResult<Vec<TicketRecord>>;
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

    // Snoozes: `sql/snooze.rs`.

    /// Snoozes a ticket (replacing its snooze, if any), audited as
    /// `snoozed` with `details`, and queues the wake-up timer of a snooze
    /// that has a time, in one transaction. Closed and set-aside tickets
    /// are refused.
    async fn snooze(
        &self,
        ticket: TicketId,
        snooze: &crate::domain::snooze::Snooze,
        details: &str,
        now_ms: i64,
    ) -> StoreResult<SnoozeSet>;
    /// Clears the ticket's snooze if `when` holds, audited as `woke` with
    /// `details`, and queues `notices` for it, in one transaction. The
    /// cleared snooze, or `None` when nothing was cleared (not snoozed, or
    /// snoozed anew since the timer was set).
    async fn wake(
        &self,
        ticket: TicketId,
        when: WakeIf,
        actor: &Actor,
        details: &str,
        notices: &[JobSpec],
        now_ms: i64,
    ) -> StoreResult<Option<crate::domain::snooze::Snooze>>;

    // Stored emails: `sql/emails.rs`.

    async fn emails(&self, ticket: TicketId) -> StoreResult<Vec<EmailRecord>>;
    async fn raw_email(&self, email_id: i64) -> StoreResult<Option<Vec<u8>>>;
    /// The latest inbound email of a ticket (the one a reply answers), raw.
    async fn latest_inbound(&self, ticket: TicketId)
    -> StoreResult<Option<(EmailRecord, Vec<u8>)>>;

    // The audit log: `sql/audit.rs`.

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

    // Figures: `sql/analytics.rs` (the figures themselves: `analytics.rs`).

    /// The rows a period's figures are computed from: the tickets of
    /// `scope` received in `[from_ms, to_ms)` and those resolved in it
    /// (definitions: `docs/ANALYTICS.md`); with `sla`, also what the
    /// resolved tickets' SLA clocks are replayed from.
    async fn period_rows(
        &self,
        scope: &Scope,
        from_ms: i64,
        to_ms: i64,
        sla: bool,
    ) -> StoreResult<PeriodRows>;
    /// The tickets of `scope` waiting now: open, claimed or pending.
    async fn active_tickets(&self, scope: &Scope) -> StoreResult<Vec<ActiveTicket>>;
    /// The same tickets counted by owner, status and age at `as_of_ms`
    /// (the backlog and the workload without reading every ticket).
    async fn waiting_counts(&self, scope: &Scope, as_of_ms: i64) -> StoreResult<Vec<WaitingCount>>;

    // Replies: `sql/replies.rs`.

    /// Stores an outbound reply and queues its send, atomically.
    async fn queue_reply(&self, reply: NewReply) -> StoreResult<i64>;
    async fn outgoing(&self, email_id: i64) -> StoreResult<Option<OutgoingMail>>;
    /// Cancels a reply still waiting in the outbox (undo). False if it already left.
    async fn cancel_reply(&self, email_id: i64, actor: &Actor, now_ms: i64) -> StoreResult<bool>;
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

    // The outbox: `sql/outbox.rs`.

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
    /// After a crash: jobs left in flight. At-most-once jobs (sends) become
    /// `uncertain` and are not retried; the others go back to pending.
    async fn recover_in_flight(&self, now_ms: i64) -> StoreResult<Vec<Job>>;
    async fn jobs(&self, states: &[JobState]) -> StoreResult<Vec<Job>>;
    /// How many outbox jobs are in each state (states without jobs are left out).
    async fn count_jobs(&self) -> StoreResult<Vec<(JobState, u64)>>;

    // Chat threads, events and files: `sql/chat.rs`.

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

    // The board: `sql/board.rs`.

    /// The open tickets (open, claimed, pending) whose thread is in `room`.
    async fn board_tickets(&self, platform: Platform, room: &str) -> StoreResult<Vec<BoardTicket>>;
    /// Rooms that have a board or an open ticket's thread.
    async fn board_rooms(&self, platform: Platform) -> StoreResult<Vec<String>>;
    /// The room's board message, if one was posted.
    async fn board_message(&self, platform: Platform, room: &str) -> StoreResult<Option<String>>;
    /// Remembers (or replaces) the room's board message.
    async fn save_board_message(
        &self,
        platform: Platform,
        room: &str,
        message_ref: &str,
        now_ms: i64,
    ) -> StoreResult<()>;
    // SLA clocks: `sql/sla.rs`. The facts (what waits since when, the
    // pauses) are kept by ingest, replies and status changes themselves.

    /// A ticket's SLA facts and the marks already set.
    async fn sla_record(&self, ticket: TicketId) -> StoreResult<SlaRecord>;
    /// Queues an SLA check of `ticket` due at `at_ms` (a timer in a lane of
    /// its own), unless one is pending for that instant. True if queued.
    async fn sla_schedule(&self, ticket: TicketId, at_ms: i64, now_ms: i64) -> StoreResult<bool>;
    /// Ends an in-flight SLA check: each firing's mark is set and, the
    /// first time only, its jobs queued; the next check is queued; all in
    /// one transaction. Returns the marks set by this call.
    async fn sla_settle(
        &self,
        job: &Job,
        firings: &[SlaFiring],
        next_check_ms: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<Vec<SlaMark>>;

    // OAuth2 grants: `sql/grants.rs`.

    async fn grant(&self, mailbox: &MailboxName) -> StoreResult<Option<Grant>>;
    /// Every stored grant, by mailbox.
    async fn grants(&self) -> StoreResult<Vec<Grant>>;
    /// Stores a sign-in, replacing the mailbox's grant (and its error and
    /// refusal), audited. Returns the new grant's generation.
    async fn save_grant(&self, new: &NewGrant, now_ms: i64) -> StoreResult<i64>;
    /// Stores a refresh's access token, and its rotated refresh token in the
    /// same write; clears the last error. False (nothing written) when the
    /// grant was replaced, forgotten or refused meanwhile.
    async fn grant_refreshed(&self, refreshed: &Refreshed, now_ms: i64) -> StoreResult<bool>;
    /// Claims the refresh of grant `generation` until `until_ms`, for this
    /// process alone (see `migrations/*/0021_grant_refresh_claim.sql`), if
    /// it was last refreshed at `seen_refreshed_at_ms` (as the caller read
    /// it: a refresh stored since holds a refresh token the caller does not
    /// have). False when another holds an unexpired claim, a refresh landed
    /// since, or the grant was replaced, forgotten or refused. A refresh
    /// stored, or a failure recorded, ends the claim.
    async fn grant_claim_refresh(
        &self,
        mailbox: &MailboxName,
        generation: i64,
        seen_refreshed_at_ms: Option<i64>,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<bool>;
    /// Records a transient failure (the token endpoint unreachable).
    async fn grant_error(
        &self,
        mailbox: &MailboxName,
        generation: i64,
        error: &str,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// The provider refused the grant for good: records `error` and, the
    /// first time for this grant only, queues `notices` and an audit line,
    /// all in one transaction. True when this call was that first time.
    async fn grant_refused(
        &self,
        mailbox: &MailboxName,
        generation: i64,
        error: &str,
        notices: &[JobSpec],
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Forgets the mailbox's grant (audited). False if there was none.
    async fn delete_grant(&self, mailbox: &MailboxName, now_ms: i64) -> StoreResult<bool>;

    // Auto-assignment: `sql/assign.rs` (the pick itself is part of an ingest).

    /// Marks a `[people]` name away until `until_ms` (`None`: until back),
    /// replacing an earlier mark; audited.
    async fn set_away(
        &self,
        person: &str,
        until_ms: Option<i64>,
        actor: &Actor,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Ends a person's away mark (audited). False if none was running.
    async fn set_back(&self, person: &str, actor: &Actor, now_ms: i64) -> StoreResult<bool>;
    /// The away marks running at `now_ms`, by name.
    async fn away(&self, now_ms: i64) -> StoreResult<Vec<AwayMark>>;

    // The dashboard's sign-in: `sql/web.rs`.

    /// Stores a sign-in link (its token's hash) and audits
    /// `dashboard-link-issued`; forgets expired links and sessions.
    async fn issue_web_link(&self, link: &NewWebLink, now_ms: i64) -> StoreResult<()>;
    /// Opens a link once: marks it used and stores `session` for its
    /// teammate, audited `dashboard-signed-in`, in one transaction. A used,
    /// expired or unknown link changes nothing and says which it was.
    async fn redeem_web_link(
        &self,
        token: &SecretHash,
        session: &NewWebSession,
        now_ms: i64,
    ) -> StoreResult<Redeemed>;
    /// The teammate of an unexpired session.
    async fn web_session(&self, id: &SecretHash, now_ms: i64) -> StoreResult<Option<Agent>>;
    /// The waiting tickets (open, claimed, pending; snoozed ones too),
    /// oldest first, at most `limit`, each with its chat threads and SLA
    /// facts: the dashboard's queue, in a fixed number of queries.
    async fn queue_tickets(&self, limit: u32) -> StoreResult<Vec<QueueTicket>>;
    /// Everyone who owns or owned a ticket, and every tag in use, sorted:
    /// what the dashboard's overview can be narrowed to.
    async fn owners_and_tags(&self) -> StoreResult<(Vec<Agent>, Vec<Tag>)>;
}
