//! [`TicketStore`] over SQLite or PostgreSQL through sqlx's `Any` driver.
//!
//! One implementation serves both databases: the schemas are kept
//! column-for-column identical (see `migrations/`), every query uses `$n`
//! placeholders (but for the ingest batch's multi-row statements, which
//! use `?` on SQLite: `deferred.rs`), integers are BIGINT and times unix milliseconds, which the
//! `Any` driver maps the same way on both. Where the databases differ
//! (connection setup, migrations) the [`Backend`] says which.
//!
//! This file connects, migrates, and holds the one `impl TicketStore`,
//! whose methods each hand the pool to the file of their concern:
//!
//! - `tickets.rs`: reading tickets, applying events (the versioned update
//!   that is the claim lock), tags.
//! - `ingest.rs`: storing incoming mail (one email or a batch) and the
//!   threading lookups; `prefetch.rs`: those look-ups for a whole batch.
//! - `emails.rs`: reading stored emails; raw bytes stored and read in pieces.
//! - `replies.rs`: queueing, cancelling and settling outbound replies.
//! - `outbox.rs`: the job queue (lanes, taking, settling, recovery).
//! - `chat.rs`: chat threads, redelivered events, files shared in threads.
//! - `checkpoints.rs`: IMAP positions per mailbox and folder role.
//! - `sent.rs`: replies found in the Sent folder (written outside mailroom).
//! - `audit.rs`: the audit log.
//! - `snooze.rs`: snoozes set, woken by their timer, a teammate or the
//!   customer's mail.
//! - `analytics.rs`: the rows figures are computed from (read only).
//! - `grants.rs`: OAuth2 grants per mailbox (sealed tokens, refusals told once).
//! - `assign.rs`: auto-assignment (the pick inside an ingest, away marks).
//! - `sla.rs`: SLA clocks' facts (kept by the flows above) and their once-only marks.
//! - `web.rs`: the dashboard's one-time sign-in links and sessions (hashes only).
//! - `cluster.rs`: replicas, leases and the fence check (the
//!   [`ClusterStore`] impl is at the end of this file).
//! - `lock.rs`: the lock file that keeps a SQLite database to one process.
//!
//! A transaction that also queues a job, writes an audit line, advances a
//! checkpoint or links a thread does so through the owning file's
//! `pub(super)` helper (`insert_job`, `insert_audit`, `upsert_checkpoint`,
//! `link_thread`; `state_from_row` and the raw-piece helpers likewise), so
//! that SQL is written once. The flows on emails and tickets (ingest,
//! replies) keep their own statements on those tables. A new table set gets
//! a file here next to its vocabulary in `store/` (see the
//! [`store`](super) docs).

mod analytics;
mod assign;
mod audit;
mod board;
mod chat;
mod checkpoints;
mod cluster;
mod deferred;
mod emails;
mod grants;
mod ingest;
pub mod lock;
mod outbox;
mod prefetch;
mod replies;
mod sent;
mod sla;
mod snooze;
mod tickets;
mod web;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use super::{
    Applied, AuditEntry, AwayMark, ClusterStatus, ClusterStore, EmailRecord, EmailState, Grant,
    IngestBatch, Job, JobOutcome, JobSpec, JobState, NewGrant, NewInbound, NewReplica, NewReply,
    NewWebLink, NewWebSession, OutgoingMail, Recorded, Refreshed, Requeued, SentBatch,
    SentRecorded, Settlement, SnoozeSet, StoreError, StoreResult, TicketFilter, TicketRecord,
    TicketStore, WakeIf,
};
use crate::domain::analytics::{ActiveTicket, PeriodRows, Scope, WaitingCount};
use crate::domain::chat::{ChatThread, Platform, SharedFile};
use crate::domain::cluster::{Fence, LeaseResource, ReplicaId};
use crate::domain::email::ContentHash;
use crate::domain::ids::{Actor, Agent, MailboxName, MessageId, TicketId};
use crate::domain::mailbox::{Checkpoint, FolderRole};
use crate::domain::threading::{Candidates, ThreadKeys};
use crate::domain::ticket::TicketEvent;
use crate::domain::web::{Redeemed, SecretHash};
use crate::store::settings::DatabaseUrl;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// Set when this process is one of several replicas (PostgreSQL).
    replica: Option<ReplicaRole>,
    /// Set on the store a leased mailbox's tasks write through
    /// ([`ClusterStore::fenced`]).
    fence: Option<Fence>,
}

/// Who this store's outbox takes jobs as, and how long a silent replica
/// is still counted alive (its in-flight jobs are left alone until then).
#[derive(Debug, Clone)]
pub(crate) struct ReplicaRole {
    pub(crate) id: ReplicaId,
    pub(crate) ttl_ms: i64,
}

type AnyTx = sqlx::Transaction<'static, sqlx::Any>;

impl SqlStore {
    /// Opens (and for SQLite, creates with owner-only permissions) the database.
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> StoreResult<SqlStore> {
        let defaults = crate::store::settings::DatabaseSettings::default();
        SqlStore::connect_waiting(url, max_connections, defaults.acquire_timeout).await
    }

    /// [`SqlStore::connect`] with the `[database]` settings: pool size and
    /// how long a query waits for a connection (`acquire_timeout_secs`).
    pub async fn open(
        settings: &crate::store::settings::DatabaseSettings,
    ) -> StoreResult<SqlStore> {
        SqlStore::connect_waiting(
            &settings.url,
            settings.max_connections,
            settings.acquire_timeout,
        )
        .await
    }

    async fn connect_waiting(
        url: &DatabaseUrl,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<SqlStore> {
        sqlx::any::install_default_drivers();
        match url {
            DatabaseUrl::Sqlite { path } => {
                let (conn_url, max) = match path {
                    None => ("sqlite::memory:".to_owned(), 1),
                    Some(p) => {
                        prepare_sqlite_file(p)?;
                        // One connection: SQLite has a single writer anyway, and a
                        // deferred transaction that reads then writes can fail with
                        // SQLITE_BUSY on upgrade if another connection writes
                        // first. Other processes (the CLI) read through WAL.
                        (format!("sqlite://{}?mode=rwc", p.display()), 1)
                    }
                };
                let _ = max_connections;
                let opts = AnyConnectOptions::from_str(&conn_url)
                    .map_err(|e| StoreError::Open(e.to_string()))?;
                let pool = AnyPoolOptions::new()
                    .max_connections(max)
                    .min_connections(if path.is_none() { 1 } else { 0 })
                    // An in-memory database lives as long as its connection.
                    .idle_timeout(if path.is_none() {
                        None
                    } else {
                        Some(Duration::from_secs(600))
                    })
                    .max_lifetime(if path.is_none() {
                        None
                    } else {
                        Some(Duration::from_secs(3600))
                    })
                    .acquire_timeout(acquire_timeout)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await
                    .map_err(|e| StoreError::Open(e.to_string()))?;
                Ok(SqlStore {
                    pool,
                    backend: Backend::Sqlite,
                    replica: None,
                    fence: None,
                })
            }
            DatabaseUrl::Postgres(secret) => {
                let opts = AnyConnectOptions::from_str(secret.expose()).map_err(|e| {
                    StoreError::Open(redact_url_error(&e.to_string(), secret.expose()))
                })?;
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections.max(2))
                    .acquire_timeout(acquire_timeout)
                    .connect_with(opts)
                    .await
                    .map_err(|e| {
                        // A server not (yet) reachable is worth waiting for;
                        // a refusal (password, database name) is not.
                        let e = StoreError::from(e);
                        if e.is_transient() {
                            e
                        } else {
                            StoreError::Open(redact_url_error(&e.to_string(), secret.expose()))
                        }
                    })?;
                Ok(SqlStore {
                    pool,
                    backend: Backend::Postgres,
                    replica: None,
                    fence: None,
                })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This store (same pool) as replica `id` of several: its outbox
    /// records itself as each job's taker, and recovery after a crash
    /// touches only jobs of replicas silent for longer than `lease_ttl`
    /// (a live replica's in-flight work is its own).
    pub fn as_replica(&self, id: ReplicaId, lease_ttl: Duration) -> SqlStore {
        SqlStore {
            replica: Some(ReplicaRole {
                id,
                ttl_ms: lease_ttl.as_millis().min(i64::MAX as u128) as i64,
            }),
            ..self.clone()
        }
    }

    /// The fence this store's checkpoint-advancing writes check, with the
    /// backend the check is written for.
    fn fenced_by(&self) -> Option<(Backend, &Fence)> {
        self.fence.as_ref().map(|f| (self.backend, f))
    }

    fn taker(&self) -> Option<&ReplicaId> {
        self.replica.as_ref().map(|r| &r.id)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn redact_url_error(msg: &str, url: &str) -> String {
    msg.replace(url, "<database url>")
}

/// Creates the SQLite file's folder (0700) and the file itself (0600) so that
/// mail and secrets in it are readable by the owner only.
fn prepare_sqlite_file(path: &Path) -> StoreResult<()> {
    use std::fs::{DirBuilder, OpenOptions};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::Open(format!("cannot create {}: {e}", dir.display())))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Open(format!("cannot open {}: {e}", path.display())))?;
    Ok(())
}

fn corrupt(table: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        table,
        reason: reason.to_string(),
    }
}

#[async_trait]
impl TicketStore for SqlStore {
    async fn migrate(&self) -> StoreResult<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    async fn checkpoint(&self, mailbox: &MailboxName) -> StoreResult<Option<Checkpoint>> {
        checkpoints::checkpoint(&self.pool, mailbox, FolderRole::Inbox).await
    }

    async fn save_checkpoint(
        &self,
        mailbox: &MailboxName,
        cp: Checkpoint,
        now_ms: i64,
    ) -> StoreResult<()> {
        checkpoints::save_checkpoint(
            &self.pool,
            self.fenced_by(),
            mailbox,
            FolderRole::Inbox,
            cp,
            now_ms,
        )
        .await
    }

    async fn folder_checkpoint(
        &self,
        mailbox: &MailboxName,
        role: FolderRole,
    ) -> StoreResult<Option<Checkpoint>> {
        checkpoints::checkpoint(&self.pool, mailbox, role).await
    }

    async fn save_folder_checkpoint(
        &self,
        mailbox: &MailboxName,
        role: FolderRole,
        cp: Checkpoint,
        now_ms: i64,
    ) -> StoreResult<()> {
        checkpoints::save_checkpoint(&self.pool, self.fenced_by(), mailbox, role, cp, now_ms).await
    }

    async fn record_sent(&self, batch: SentBatch) -> StoreResult<Vec<SentRecorded>> {
        sent::record_sent(&self.pool, self.fenced_by(), batch).await
    }

    async fn has_email(
        &self,
        mailbox: &MailboxName,
        id: &MessageId,
        hash: &ContentHash,
    ) -> StoreResult<bool> {
        ingest::has_email(&self.pool, mailbox, id, hash).await
    }

    async fn thread_candidates(
        &self,
        mailbox: &MailboxName,
        keys: &ThreadKeys,
    ) -> StoreResult<Candidates> {
        ingest::thread_candidates(&self.pool, mailbox, keys).await
    }

    async fn record_inbound(&self, new: NewInbound) -> StoreResult<Recorded> {
        ingest::record_inbound(&self.pool, self.fenced_by(), new).await
    }

    async fn begin_ingest(&self) -> StoreResult<Box<dyn IngestBatch>> {
        ingest::begin_ingest(&self.pool, self.backend, self.fenced_by()).await
    }

    async fn ticket(&self, id: TicketId) -> StoreResult<Option<TicketRecord>> {
        tickets::ticket(&self.pool, id).await
    }

    async fn list_tickets(&self, filter: &TicketFilter) -> StoreResult<Vec<TicketRecord>> {
        tickets::list_tickets(&self.pool, filter).await
    }

    async fn apply(
        &self,
        ticket: TicketId,
        actor: &Actor,
        event: &TicketEvent,
        notify: &[Platform],
        now_ms: i64,
    ) -> StoreResult<Applied> {
        tickets::apply(&self.pool, ticket, actor, event, notify, now_ms).await
    }

    async fn snooze(
        &self,
        ticket: TicketId,
        snooze: &crate::domain::snooze::Snooze,
        details: &str,
        now_ms: i64,
    ) -> StoreResult<SnoozeSet> {
        snooze::snooze(&self.pool, ticket, snooze, details, now_ms).await
    }

    async fn wake(
        &self,
        ticket: TicketId,
        when: WakeIf,
        actor: &Actor,
        details: &str,
        notices: &[JobSpec],
        now_ms: i64,
    ) -> StoreResult<Option<crate::domain::snooze::Snooze>> {
        snooze::wake(&self.pool, ticket, when, actor, details, notices, now_ms).await
    }

    async fn emails(&self, ticket: TicketId) -> StoreResult<Vec<EmailRecord>> {
        emails::emails(&self.pool, ticket).await
    }

    async fn raw_email(&self, email_id: i64) -> StoreResult<Option<Vec<u8>>> {
        emails::raw_email(&self.pool, email_id).await
    }

    async fn latest_inbound(
        &self,
        ticket: TicketId,
    ) -> StoreResult<Option<(EmailRecord, Vec<u8>)>> {
        emails::latest_inbound(&self.pool, ticket).await
    }

    async fn period_rows(
        &self,
        scope: &Scope,
        from_ms: i64,
        to_ms: i64,
        sla: bool,
    ) -> StoreResult<PeriodRows> {
        analytics::period_rows(&self.pool, scope, from_ms, to_ms, sla).await
    }

    async fn active_tickets(&self, scope: &Scope) -> StoreResult<Vec<ActiveTicket>> {
        analytics::active_tickets(&self.pool, scope).await
    }

    async fn waiting_counts(&self, scope: &Scope, as_of_ms: i64) -> StoreResult<Vec<WaitingCount>> {
        analytics::waiting_counts(&self.pool, scope, as_of_ms).await
    }

    async fn audit_log(&self, ticket: TicketId) -> StoreResult<Vec<AuditEntry>> {
        audit::audit_log(&self.pool, ticket).await
    }

    async fn audit(
        &self,
        ticket: Option<TicketId>,
        actor: &Actor,
        action: &str,
        details: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        audit::audit(&self.pool, ticket, actor, action, details, now_ms).await
    }

    async fn queue_reply(&self, reply: NewReply) -> StoreResult<i64> {
        replies::queue_reply(&self.pool, reply).await
    }

    async fn outgoing(&self, email_id: i64) -> StoreResult<Option<OutgoingMail>> {
        replies::outgoing(&self.pool, email_id).await
    }

    async fn cancel_reply(&self, email_id: i64, actor: &Actor, now_ms: i64) -> StoreResult<bool> {
        replies::cancel_reply(&self.pool, email_id, actor, now_ms).await
    }

    async fn reply_sent(
        &self,
        job: &Job,
        email_id: i64,
        notify: &[Platform],
        now_ms: i64,
    ) -> StoreResult<()> {
        replies::reply_sent(&self.pool, job, email_id, notify, now_ms).await
    }

    async fn reply_failed(
        &self,
        job: &Job,
        email_id: i64,
        state: EmailState,
        error: &str,
        notify: &[Platform],
        now_ms: i64,
    ) -> StoreResult<()> {
        replies::reply_failed(&self.pool, job, email_id, state, error, notify, now_ms).await
    }

    async fn enqueue(
        &self,
        ticket: Option<TicketId>,
        spec: &JobSpec,
        not_before_ms: i64,
        now_ms: i64,
    ) -> StoreResult<i64> {
        outbox::enqueue(&self.pool, ticket, spec, not_before_ms, now_ms).await
    }

    async fn next_job(&self, now_ms: i64) -> StoreResult<Option<Job>> {
        outbox::next_job(&self.pool, self.backend, self.taker(), now_ms).await
    }

    async fn next_due_at(&self) -> StoreResult<Option<i64>> {
        outbox::next_due_at(&self.pool).await
    }

    async fn finish_job(&self, job: &Job, outcome: &JobOutcome, now_ms: i64) -> StoreResult<()> {
        outbox::finish_job(&self.pool, self.taker(), job, outcome, now_ms).await
    }

    async fn settle_job(&self, job: &Job, settlement: &Settlement, now_ms: i64) -> StoreResult<()> {
        outbox::settle_job(&self.pool, self.taker(), job, settlement, now_ms).await
    }

    async fn requeue_job(&self, id: i64, actor: &Actor, now_ms: i64) -> StoreResult<Requeued> {
        outbox::requeue_job(&self.pool, id, actor, now_ms).await
    }

    async fn recover_in_flight(&self, now_ms: i64) -> StoreResult<Vec<Job>> {
        outbox::recover_in_flight(&self.pool, self.backend, self.replica.as_ref(), now_ms).await
    }

    async fn jobs(&self, states: &[JobState]) -> StoreResult<Vec<Job>> {
        outbox::jobs(&self.pool, states).await
    }

    async fn count_jobs(&self) -> StoreResult<Vec<(JobState, u64)>> {
        outbox::count_jobs(&self.pool).await
    }

    async fn chat_thread(
        &self,
        ticket: TicketId,
        platform: Platform,
    ) -> StoreResult<Option<ChatThread>> {
        chat::chat_thread(&self.pool, ticket, platform).await
    }

    async fn link_chat_thread(&self, ticket: TicketId, thread: &ChatThread) -> StoreResult<()> {
        chat::link_chat_thread(&self.pool, ticket, thread).await
    }

    async fn first_sighting(
        &self,
        platform: Platform,
        event_ref: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        chat::first_sighting(&self.pool, platform, event_ref, now_ms).await
    }

    async fn record_chat_file(
        &self,
        thread: &ChatThread,
        event_ref: &str,
        agent: &Agent,
        file: &SharedFile,
        now_ms: i64,
    ) -> StoreResult<()> {
        chat::record_chat_file(&self.pool, thread, event_ref, agent, file, now_ms).await
    }

    async fn chat_files(&self, thread: &ChatThread, since_ms: i64) -> StoreResult<Vec<SharedFile>> {
        chat::chat_files(&self.pool, thread, since_ms).await
    }

    async fn ticket_by_thread(&self, thread: &ChatThread) -> StoreResult<Option<TicketId>> {
        chat::ticket_by_thread(&self.pool, thread).await
    }

    async fn board_tickets(
        &self,
        platform: Platform,
        room: &str,
    ) -> StoreResult<Vec<crate::domain::board::BoardTicket>> {
        board::board_tickets(&self.pool, platform, room).await
    }

    async fn board_rooms(&self, platform: Platform) -> StoreResult<Vec<String>> {
        board::board_rooms(&self.pool, platform).await
    }

    async fn board_message(&self, platform: Platform, room: &str) -> StoreResult<Option<String>> {
        board::board_message(&self.pool, platform, room).await
    }

    async fn save_board_message(
        &self,
        platform: Platform,
        room: &str,
        message_ref: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        board::save_board_message(&self.pool, platform, room, message_ref, now_ms).await
    }

    async fn sla_record(&self, ticket: TicketId) -> StoreResult<super::SlaRecord> {
        sla::record(&self.pool, ticket).await
    }

    async fn sla_schedule(&self, ticket: TicketId, at_ms: i64, now_ms: i64) -> StoreResult<bool> {
        sla::schedule(&self.pool, ticket, at_ms, now_ms).await
    }

    async fn sla_settle(
        &self,
        job: &Job,
        firings: &[super::SlaFiring],
        next_check_ms: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<Vec<super::SlaMark>> {
        sla::settle(&self.pool, job, firings, next_check_ms, now_ms).await
    }

    async fn grant(&self, mailbox: &MailboxName) -> StoreResult<Option<Grant>> {
        grants::grant(&self.pool, mailbox).await
    }

    async fn grants(&self) -> StoreResult<Vec<Grant>> {
        grants::grants(&self.pool).await
    }

    async fn save_grant(&self, new: &NewGrant, now_ms: i64) -> StoreResult<i64> {
        grants::save_grant(&self.pool, new, now_ms).await
    }

    async fn grant_refreshed(&self, refreshed: &Refreshed, now_ms: i64) -> StoreResult<bool> {
        grants::grant_refreshed(&self.pool, refreshed, now_ms).await
    }

    async fn grant_claim_refresh(
        &self,
        mailbox: &MailboxName,
        generation: i64,
        seen_refreshed_at_ms: Option<i64>,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<bool> {
        grants::grant_claim_refresh(
            &self.pool,
            mailbox,
            generation,
            seen_refreshed_at_ms,
            now_ms,
            until_ms,
        )
        .await
    }

    async fn grant_error(
        &self,
        mailbox: &MailboxName,
        generation: i64,
        error: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        grants::grant_error(&self.pool, mailbox, generation, error, now_ms).await
    }

    async fn grant_refused(
        &self,
        mailbox: &MailboxName,
        generation: i64,
        error: &str,
        notices: &[JobSpec],
        now_ms: i64,
    ) -> StoreResult<bool> {
        grants::grant_refused(&self.pool, mailbox, generation, error, notices, now_ms).await
    }

    async fn delete_grant(&self, mailbox: &MailboxName, now_ms: i64) -> StoreResult<bool> {
        grants::delete_grant(&self.pool, mailbox, now_ms).await
    }

    async fn set_away(
        &self,
        person: &str,
        until_ms: Option<i64>,
        actor: &Actor,
        now_ms: i64,
    ) -> StoreResult<()> {
        assign::set_away(&self.pool, person, until_ms, actor, now_ms).await
    }

    async fn set_back(&self, person: &str, actor: &Actor, now_ms: i64) -> StoreResult<bool> {
        assign::set_back(&self.pool, person, actor, now_ms).await
    }

    async fn away(&self, now_ms: i64) -> StoreResult<Vec<AwayMark>> {
        assign::away(&self.pool, now_ms).await
    }

    async fn issue_web_link(&self, link: &NewWebLink, now_ms: i64) -> StoreResult<()> {
        web::issue_web_link(&self.pool, link, now_ms).await
    }

    async fn redeem_web_link(
        &self,
        token: &SecretHash,
        session: &NewWebSession,
        now_ms: i64,
    ) -> StoreResult<Redeemed> {
        web::redeem_web_link(&self.pool, token, session, now_ms).await
    }

    async fn web_session(&self, id: &SecretHash, now_ms: i64) -> StoreResult<Option<Agent>> {
        web::web_session(&self.pool, id, now_ms).await
    }

    async fn queue_tickets(&self, limit: u32) -> StoreResult<Vec<super::QueueTicket>> {
        web::queue_tickets(&self.pool, limit).await
    }

    async fn owners_and_tags(&self) -> StoreResult<(Vec<Agent>, Vec<crate::domain::ids::Tag>)> {
        web::owners_and_tags(&self.pool).await
    }
}

#[async_trait]
impl ClusterStore for SqlStore {
    async fn db_now_ms(&self) -> StoreResult<i64> {
        cluster::db_now_ms(&self.pool, self.backend).await
    }

    async fn register_replica(&self, replica: &NewReplica) -> StoreResult<()> {
        cluster::register_replica(&self.pool, self.backend, replica).await
    }

    async fn heartbeat(&self, id: &ReplicaId) -> StoreResult<bool> {
        cluster::heartbeat(&self.pool, self.backend, id).await
    }

    async fn live_replicas(&self, ttl_ms: i64) -> StoreResult<usize> {
        cluster::live_replicas(&self.pool, self.backend, ttl_ms).await
    }

    async fn acquire_lease(
        &self,
        resource: &LeaseResource,
        owner: &ReplicaId,
        ttl_ms: i64,
    ) -> StoreResult<Option<Fence>> {
        cluster::acquire_lease(&self.pool, self.backend, resource, owner, ttl_ms).await
    }

    async fn renew_lease(&self, fence: &Fence, ttl_ms: i64) -> StoreResult<bool> {
        cluster::renew_lease(&self.pool, self.backend, fence, ttl_ms).await
    }

    async fn release_lease(&self, fence: &Fence) -> StoreResult<()> {
        cluster::release_lease(&self.pool, fence).await
    }

    async fn leave(&self, id: &ReplicaId) -> StoreResult<()> {
        cluster::leave(&self.pool, id).await
    }

    async fn prune_replicas(&self, older_than_ms: i64) -> StoreResult<u64> {
        cluster::prune_replicas(&self.pool, self.backend, older_than_ms).await
    }

    async fn cluster_status(&self) -> StoreResult<ClusterStatus> {
        cluster::cluster_status(&self.pool, self.backend).await
    }

    fn fenced(&self, fence: Fence) -> std::sync::Arc<dyn TicketStore> {
        std::sync::Arc::new(SqlStore {
            fence: Some(fence),
            ..self.clone()
        })
    }
}
