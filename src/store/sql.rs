//! [`TicketStore`] over SQLite or PostgreSQL through sqlx's `Any` driver.
//!
//! One implementation serves both databases: the schemas are kept
//! column-for-column identical (see `migrations/`), every query uses `$n`
//! placeholders, integers are BIGINT and times unix milliseconds, which the
//! `Any` driver maps the same way on both. Where the databases differ
//! (connection setup, migrations) the [`Backend`] says which.

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Executor, Row};

use super::*;
use crate::domain::chat::{ChatThread, Platform, SharedFile};
use crate::domain::email::{ContentHash, Direction, Party};
use crate::domain::ids::{
    Actor, Agent, EmailAddress, MailboxName, MessageId, Tag, TicketId, TicketToken,
};
use crate::domain::threading::{CandidateTicket, Candidates, ThreadKeys, subject_key};
use crate::domain::ticket::{Status, Ticket, TicketEvent, TicketState};
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
}

type AnyTx = sqlx::Transaction<'static, sqlx::Any>;

/// How often an optimistic update is retried after losing a race before the
/// caller is told the database is too busy.
const APPLY_ATTEMPTS: usize = 16;

impl SqlStore {
    /// Opens (and for SQLite, creates with owner-only permissions) the database.
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> StoreResult<SqlStore> {
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
                    .acquire_timeout(Duration::from_secs(30))
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
                })
            }
            DatabaseUrl::Postgres(secret) => {
                let opts = AnyConnectOptions::from_str(secret.expose()).map_err(|e| {
                    StoreError::Open(redact_url_error(&e.to_string(), secret.expose()))
                })?;
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    .map_err(|e| {
                        StoreError::Open(redact_url_error(&e.to_string(), secret.expose()))
                    })?;
                Ok(SqlStore {
                    pool,
                    backend: Backend::Postgres,
                })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
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

fn ticket_from_row(row: &AnyRow, tags: BTreeSet<Tag>) -> StoreResult<TicketRecord> {
    let state = state_from_row(row)?;
    Ok(TicketRecord {
        id: TicketId::new(row.try_get("id")?),
        mailbox: MailboxName::parse(&row.try_get::<String, _>("mailbox")?)
            .map_err(|e| corrupt("tickets", e))?,
        token: TicketToken::parse(&row.try_get::<String, _>("token")?)
            .map_err(|e| corrupt("tickets", e))?,
        subject: row.try_get("subject")?,
        customer: EmailAddress::parse(&row.try_get::<String, _>("customer")?)
            .map_err(|e| corrupt("tickets", e))?,
        state,
        tags,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
        last_customer_at_ms: row.try_get("last_customer_at")?,
    })
}

/// A ticket's state from its `status` and `owner` columns.
fn state_from_row(row: &AnyRow) -> StoreResult<TicketState> {
    let status: String = row.try_get("status")?;
    let owner: Option<String> = row.try_get("owner")?;
    let status =
        Status::parse(&status).ok_or_else(|| corrupt("tickets", format!("status {status:?}")))?;
    let owner = owner
        .map(|o| Agent::parse(&o))
        .transpose()
        .map_err(|e| corrupt("tickets", e))?;
    TicketState::from_parts(status, owner).map_err(|e| corrupt("tickets", e))
}

const EMAIL_COLUMNS: &str = "id, ticket_id, direction, message_id, from_addr, from_name, subject, sent_at, stored_at, author, state, COALESCE(raw_size, LENGTH(raw)) AS size";

fn email_from_row(row: &AnyRow) -> StoreResult<EmailRecord> {
    let direction: String = row.try_get("direction")?;
    let state: String = row.try_get("state")?;
    let author: Option<String> = row.try_get("author")?;
    Ok(EmailRecord {
        id: row.try_get("id")?,
        ticket: TicketId::new(row.try_get("ticket_id")?),
        direction: Direction::parse(&direction)
            .ok_or_else(|| corrupt("emails", format!("direction {direction:?}")))?,
        message_id: MessageId::parse(&row.try_get::<String, _>("message_id")?)
            .map_err(|e| corrupt("emails", e))?,
        from: Party::new(
            row.try_get("from_name")?,
            EmailAddress::parse(&row.try_get::<String, _>("from_addr")?)
                .map_err(|e| corrupt("emails", e))?,
        ),
        subject: row.try_get("subject")?,
        sent_at: row.try_get("sent_at")?,
        stored_at_ms: row.try_get("stored_at")?,
        author: author
            .map(|a| Agent::parse(&a))
            .transpose()
            .map_err(|e| corrupt("emails", e))?,
        state: EmailState::parse(&state)
            .ok_or_else(|| corrupt("emails", format!("state {state:?}")))?,
        size: row.try_get("size")?,
    })
}

fn job_from_row(row: &AnyRow) -> StoreResult<Job> {
    let payload: String = row.try_get("payload")?;
    let state: String = row.try_get("state")?;
    let ticket: Option<i64> = row.try_get("ticket_id")?;
    Ok(Job {
        id: row.try_get("id")?,
        ticket: ticket.map(TicketId::new),
        spec: serde_json::from_str(&payload).map_err(|e| corrupt("outbox", e))?,
        state: JobState::parse(&state)
            .ok_or_else(|| corrupt("outbox", format!("state {state:?}")))?,
        attempts: row.try_get::<i64, _>("attempts")?.clamp(0, u32::MAX as i64) as u32,
        last_error: row.try_get("last_error")?,
        not_before_ms: row.try_get("not_before")?,
        created_at_ms: row.try_get("created_at")?,
    })
}

async fn insert_audit(
    tx: &mut AnyTx,
    ticket: Option<TicketId>,
    actor: &Actor,
    action: &str,
    details: &str,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (ticket_id, at, actor, action, details) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(ticket.map(|t| t.get()))
    .bind(now_ms)
    .bind(actor.to_stored())
    .bind(action)
    .bind(details)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_job(
    tx: &mut AnyTx,
    ticket: Option<TicketId>,
    spec: &JobSpec,
    not_before_ms: i64,
    now_ms: i64,
) -> StoreResult<i64> {
    let payload = serde_json::to_string(spec).map_err(|e| corrupt("outbox", e))?;
    let row = sqlx::query(
        "INSERT INTO outbox (lane, kind, ticket_id, payload, state, attempts, not_before, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $6) RETURNING id",
    )
    .bind(spec.lane(ticket))
    .bind(spec.kind())
    .bind(ticket.map(|t| t.get()))
    .bind(payload)
    .bind(not_before_ms)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("id")?)
}

async fn load_tags<'e, E>(exec: E, ticket: TicketId) -> StoreResult<BTreeSet<Tag>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query("SELECT tag FROM ticket_tags WHERE ticket_id = $1")
        .bind(ticket.get())
        .fetch_all(exec)
        .await?;
    rows.iter()
        .map(|r| {
            let t: String = r.try_get("tag")?;
            Tag::parse(&t).map_err(|e| corrupt("ticket_tags", e))
        })
        .collect()
}

/// Raw emails are stored in pieces of this size (migration 0004).
const RAW_PIECE: usize = 1024 * 1024;

/// The part of `raw` that goes in `emails.raw`.
fn first_piece(raw: &[u8]) -> &[u8] {
    &raw[..raw.len().min(RAW_PIECE)]
}

/// Stores the pieces of `raw` after the first.
async fn insert_later_pieces(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    email_id: i64,
    raw: &[u8],
) -> StoreResult<()> {
    let rest = raw.get(RAW_PIECE..).unwrap_or_default();
    for (seq, piece) in rest.chunks(RAW_PIECE).enumerate() {
        sqlx::query("INSERT INTO email_raw_pieces (email_id, seq, bytes) VALUES ($1, $2, $3)")
            .bind(email_id)
            .bind(seq as i64 + 1)
            .bind(piece)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The whole raw email of a row holding `raw` and `raw_size`: the first
/// piece, then the others read one at a time into a buffer sized once.
async fn whole_raw(pool: &AnyPool, email_id: i64, row: &AnyRow) -> StoreResult<Vec<u8>> {
    let first: Vec<u8> = row.try_get("raw")?;
    let size: Option<i64> = row.try_get("raw_size")?;
    let size = size.map_or(first.len(), |s| usize::try_from(s).unwrap_or(0));
    if size <= first.len() {
        return Ok(first);
    }
    let mut raw = Vec::with_capacity(size);
    raw.extend_from_slice(&first);
    drop(first);
    let mut pieces =
        sqlx::query("SELECT bytes FROM email_raw_pieces WHERE email_id = $1 ORDER BY seq")
            .bind(email_id)
            .fetch(pool);
    while let Some(row) = pieces.try_next().await? {
        let piece: Vec<u8> = row.try_get("bytes")?;
        raw.extend_from_slice(&piece);
    }
    if raw.len() != size {
        return Err(corrupt(
            "email_raw_pieces",
            format!("email {email_id} has {} of its {size} raw bytes", raw.len()),
        ));
    }
    Ok(raw)
}

/// Inbound emails stored in one transaction (see [`IngestBatch`]).
struct SqlIngestBatch {
    tx: AnyTx,
}

#[async_trait]
impl IngestBatch for SqlIngestBatch {
    async fn thread_candidates(
        &mut self,
        mailbox: &MailboxName,
        keys: &ThreadKeys,
    ) -> StoreResult<Candidates> {
        thread_candidates_on(&mut self.tx, mailbox, keys).await
    }

    async fn record_inbound(&mut self, new: NewInbound) -> StoreResult<Recorded> {
        record_inbound_on(&mut self.tx, new).await
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

async fn thread_candidates_on(
    conn: &mut AnyConnection,
    mailbox: &MailboxName,
    keys: &ThreadKeys,
) -> StoreResult<Candidates> {
    let mut by_reference = Vec::new();
    for id in keys.referenced_ids() {
        let rows = sqlx::query(
            "SELECT DISTINCT ticket_id FROM emails WHERE mailbox = $1 AND message_id = $2",
        )
        .bind(mailbox.as_str())
        .bind(id.as_str())
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            push_unique(&mut by_reference, r.try_get("ticket_id")?);
        }
    }
    let mut by_token = Vec::new();
    for token in &keys.tokens {
        if let Some(r) = sqlx::query("SELECT id FROM tickets WHERE mailbox = $1 AND token = $2")
            .bind(mailbox.as_str())
            .bind(token.as_str())
            .fetch_optional(&mut *conn)
            .await?
        {
            push_unique(&mut by_token, r.try_get("id")?);
        }
    }
    let mut by_subject = Vec::new();
    let key = subject_key(&keys.subject);
    if !key.is_empty() {
        let rows = sqlx::query(
            "SELECT id FROM tickets WHERE mailbox = $1 AND customer = $2 AND subject_key = $3 ORDER BY last_customer_at DESC LIMIT 5",
        )
        .bind(mailbox.as_str())
        .bind(keys.from.as_str())
        .bind(&key)
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            push_unique(&mut by_subject, r.try_get("id")?);
        }
    }
    // A bounce: the ticket of the mail it returns, if we sent that mail.
    let by_returned = match &keys.returned {
        Some(id) => sqlx::query(
            "SELECT ticket_id FROM emails WHERE mailbox = $1 AND message_id = $2 AND direction = 'outbound' LIMIT 1",
        )
        .bind(mailbox.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get::<i64, _>("ticket_id"))
        .transpose()?
        .map(TicketId::new),
        None => None,
    };
    Ok(Candidates {
        by_reference: candidates_for(&mut *conn, &by_reference).await?,
        by_token: candidates_for(&mut *conn, &by_token).await?,
        by_subject: candidates_for(&mut *conn, &by_subject).await?,
        by_returned,
    })
}

async fn record_inbound_on(tx: &mut AnyTx, mut new: NewInbound) -> StoreResult<Recorded> {
    let raw = std::mem::take(&mut new.email.raw);
    let dup = sqlx::query(
        "SELECT 1 AS one FROM emails WHERE mailbox = $1 AND message_id = $2 AND content_hash = $3",
    )
    .bind(new.mailbox.as_str())
    .bind(new.email.message_id.as_str())
    .bind(new.email.content_hash.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    if dup.is_some() {
        if let Some(cp) = new.checkpoint {
            upsert_checkpoint(&mut **tx, &new.mailbox, cp, new.now_ms).await?;
        }
        return Ok(Recorded::Duplicate);
    }
    let customer = Actor::Customer(new.email.from.address.clone());
    let (ticket, reopened, is_new) = match &new.destination {
        Destination::New { token } => {
            let row = sqlx::query(
                "INSERT INTO tickets (mailbox, token, subject, subject_key, customer, status, owner, version, created_at, updated_at, last_customer_at) \
                 VALUES ($1, $2, $3, $4, $5, 'open', NULL, 0, $6, $6, $6) RETURNING id",
            )
            .bind(new.mailbox.as_str())
            .bind(token.as_str())
            .bind(&new.email.subject)
            .bind(subject_key(&new.email.subject))
            .bind(new.email.from.address.as_str())
            .bind(new.now_ms)
            .fetch_one(&mut **tx)
            .await?;
            let id = TicketId::new(row.try_get("id")?);
            let mut details = format!("from {}: {}", new.email.from, new.email.subject);
            if !new.refused_merges.is_empty() {
                let list: Vec<String> = new.refused_merges.iter().map(|t| t.to_string()).collect();
                details.push_str(&format!(
                    " (not merged into {}: different customer)",
                    list.join(", ")
                ));
            }
            insert_audit(tx, Some(id), &customer, "created", &details, new.now_ms).await?;
            (id, false, true)
        }
        Destination::FollowUp { ticket, matched_by } => {
            let row = sqlx::query("SELECT status, owner, version FROM tickets WHERE id = $1")
                .bind(ticket.get())
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| {
                    corrupt("tickets", format!("follow-up for missing ticket {ticket}"))
                })?;
            let state = state_from_row(&row)?;
            insert_audit(
                tx,
                Some(*ticket),
                &customer,
                "customer-replied",
                &format!("matched by {matched_by}: {}", new.email.subject),
                new.now_ms,
            )
            .await?;
            let mut reopened = false;
            if new.automatic.is_none() {
                let current = Ticket {
                    state: state.clone(),
                    tags: BTreeSet::new(),
                };
                if let Ok(next) = current.apply(&TicketEvent::CustomerReplied)
                    && next.state != state
                {
                    sqlx::query("UPDATE tickets SET status = $1, owner = $2, version = version + 1, updated_at = $3 WHERE id = $4")
                            .bind(next.state.status().as_str())
                            .bind(next.state.owner().map(|a| a.as_str().to_owned()))
                            .bind(new.now_ms)
                            .bind(ticket.get())
                            .execute(&mut **tx)
                            .await?;
                    insert_audit(
                        tx,
                        Some(*ticket),
                        &customer,
                        "reopen",
                        &format!("{state} → {}", next.state),
                        new.now_ms,
                    )
                    .await?;
                    reopened = true;
                }
            } else if let Some(kind) = new.automatic {
                insert_audit(
                    tx,
                    Some(*ticket),
                    &Actor::System,
                    "automatic-mail",
                    &format!("{kind}: filed without reopening"),
                    new.now_ms,
                )
                .await?;
            }
            (*ticket, reopened, false)
        }
    };
    // A new ticket was inserted with last_customer_at = now already.
    if new.automatic.is_none() && !is_new {
        sqlx::query("UPDATE tickets SET last_customer_at = $1 WHERE id = $2")
            .bind(new.now_ms)
            .bind(ticket.get())
            .execute(&mut **tx)
            .await?;
    }
    let row = sqlx::query(
        "INSERT INTO emails (mailbox, ticket_id, direction, message_id, content_hash, imap_uid, from_addr, from_name, subject, sent_at, stored_at, author, state, raw, raw_size) \
         VALUES ($1, $2, 'inbound', $3, $4, $5, $6, $7, $8, $9, $10, NULL, 'received', $11, $12) RETURNING id",
    )
    .bind(new.mailbox.as_str())
    .bind(ticket.get())
    .bind(new.email.message_id.as_str())
    .bind(new.email.content_hash.as_str())
    .bind(new.imap_uid.map(i64::from))
    .bind(new.email.from.address.as_str())
    .bind(new.email.from.name.clone())
    .bind(&new.email.subject)
    .bind(new.email.sent_at)
    .bind(new.now_ms)
    .bind(first_piece(&raw))
    .bind(raw.len() as i64)
    .fetch_one(&mut **tx)
    .await?;
    let email_id: i64 = row.try_get("id")?;
    insert_later_pieces(tx, email_id, &raw).await?;
    drop(raw);
    for p in &new.email.participants {
        // A ticket's customer is a participant by definition (threading adds
        // `tickets.customer`): a new ticket's sender needs no row of its own.
        if is_new && *p == new.email.from.address {
            continue;
        }
        let sql = "INSERT INTO participants (ticket_id, address) VALUES ($1, $2) ON CONFLICT (ticket_id, address) DO NOTHING";
        sqlx::query(sql)
            .bind(ticket.get())
            .bind(p.as_str())
            .execute(&mut **tx)
            .await?;
    }
    for platform in &new.post_to {
        insert_job(
            tx,
            Some(ticket),
            &JobSpec::ChatPost {
                platform: *platform,
                email_id,
            },
            new.now_ms,
            new.now_ms,
        )
        .await?;
        if reopened {
            insert_job(
                tx,
                Some(ticket),
                &JobSpec::ChatStatus {
                    platform: *platform,
                },
                new.now_ms,
                new.now_ms,
            )
            .await?;
        }
    }
    if let Some(cp) = new.checkpoint {
        upsert_checkpoint(&mut **tx, &new.mailbox, cp, new.now_ms).await?;
    }
    Ok(if is_new {
        Recorded::NewTicket { ticket, email_id }
    } else {
        Recorded::FollowUp {
            ticket,
            email_id,
            reopened,
        }
    })
}

async fn candidates_for(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> StoreResult<Vec<CandidateTicket>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(row) = sqlx::query(
            "SELECT id, customer, subject_key, last_customer_at FROM tickets WHERE id = $1",
        )
        .bind(*id)
        .fetch_optional(&mut *conn)
        .await?
        else {
            continue;
        };
        let parts = sqlx::query("SELECT address FROM participants WHERE ticket_id = $1")
            .bind(*id)
            .fetch_all(&mut *conn)
            .await?;
        let mut participants = BTreeSet::new();
        for p in parts {
            let a: String = p.try_get("address")?;
            participants.insert(EmailAddress::parse(&a).map_err(|e| corrupt("participants", e))?);
        }
        let customer = EmailAddress::parse(&row.try_get::<String, _>("customer")?)
            .map_err(|e| corrupt("tickets", e))?;
        participants.insert(customer.clone());
        out.push(CandidateTicket {
            id: TicketId::new(row.try_get("id")?),
            participants,
            customer,
            subject_key: row.try_get("subject_key")?,
            last_customer_at: row.try_get::<i64, _>("last_customer_at")? / 1000,
        });
    }
    Ok(out)
}

fn push_unique(v: &mut Vec<i64>, id: i64) {
    if !v.contains(&id) {
        v.push(id);
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
        let row = sqlx::query("SELECT uid_validity, last_uid FROM checkpoints WHERE mailbox = $1")
            .bind(mailbox.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Checkpoint {
                uid_validity: r.try_get::<i64, _>("uid_validity")? as u32,
                last_uid: r.try_get::<i64, _>("last_uid")? as u32,
            })
        })
        .transpose()
    }

    async fn save_checkpoint(
        &self,
        mailbox: &MailboxName,
        cp: Checkpoint,
        now_ms: i64,
    ) -> StoreResult<()> {
        upsert_checkpoint(&self.pool, mailbox, cp, now_ms).await
    }

    async fn has_email(
        &self,
        mailbox: &MailboxName,
        id: &MessageId,
        hash: &ContentHash,
    ) -> StoreResult<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM emails WHERE mailbox = $1 AND message_id = $2 AND content_hash = $3")
            .bind(mailbox.as_str())
            .bind(id.as_str())
            .bind(hash.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn thread_candidates(
        &self,
        mailbox: &MailboxName,
        keys: &ThreadKeys,
    ) -> StoreResult<Candidates> {
        // One connection for every lookup, not one from the pool each.
        let mut conn = self.pool.acquire().await?;
        thread_candidates_on(&mut conn, mailbox, keys).await
    }

    async fn begin_ingest(&self) -> StoreResult<Box<dyn IngestBatch>> {
        Ok(Box::new(SqlIngestBatch {
            tx: self.pool.begin().await?,
        }))
    }

    async fn record_inbound(&self, new: NewInbound) -> StoreResult<Recorded> {
        let mut tx = self.pool.begin().await?;
        let recorded = record_inbound_on(&mut tx, new).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn ticket(&self, id: TicketId) -> StoreResult<Option<TicketRecord>> {
        // One round trip: a row per tag (or one with no tag). The outbox
        // reads a ticket before every chat post.
        let rows = sqlx::query(
            "SELECT t.*, g.tag AS tag_name FROM tickets t \
             LEFT JOIN ticket_tags g ON g.ticket_id = t.id WHERE t.id = $1",
        )
        .bind(id.get())
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let tags = rows
            .iter()
            .filter_map(|r| r.try_get::<Option<String>, _>("tag_name").transpose())
            .map(|t| Tag::parse(&t?).map_err(|e| corrupt("ticket_tags", e)))
            .collect::<StoreResult<BTreeSet<Tag>>>()?;
        Ok(Some(ticket_from_row(first, tags)?))
    }

    async fn list_tickets(&self, filter: &TicketFilter) -> StoreResult<Vec<TicketRecord>> {
        let mut sql = String::from("SELECT * FROM tickets WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if filter.status.is_some() {
            sql.push_str(&format!(" AND status = {}", next()));
        }
        if filter.mailbox.is_some() {
            sql.push_str(&format!(" AND mailbox = {}", next()));
        }
        if filter.owner.is_some() {
            sql.push_str(&format!(" AND owner = {}", next()));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", next()));
        // Only fixed fragments and `$n` placeholders are concatenated; values are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(s) = filter.status {
            q = q.bind(s.as_str());
        }
        if let Some(m) = &filter.mailbox {
            q = q.bind(m.as_str().to_owned());
        }
        if let Some(o) = &filter.owner {
            q = q.bind(o.as_str().to_owned());
        }
        q = q.bind(i64::from(filter.limit.unwrap_or(1000)));
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id = TicketId::new(row.try_get("id")?);
            let tags = load_tags(&self.pool, id).await?;
            out.push(ticket_from_row(&row, tags)?);
        }
        Ok(out)
    }

    async fn emails(&self, ticket: TicketId) -> StoreResult<Vec<EmailRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EMAIL_COLUMNS} FROM emails WHERE ticket_id = $1 ORDER BY id"
        )))
        .bind(ticket.get())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(email_from_row).collect()
    }

    async fn raw_email(&self, email_id: i64) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT raw, raw_size FROM emails WHERE id = $1")
            .bind(email_id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(Some(whole_raw(&self.pool, email_id, &row).await?)),
            None => Ok(None),
        }
    }

    async fn audit_log(&self, ticket: TicketId) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT id, ticket_id, at, actor, action, details FROM audit_log WHERE ticket_id = $1 ORDER BY id")
            .bind(ticket.get())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let actor: String = r.try_get("actor")?;
                let t: Option<i64> = r.try_get("ticket_id")?;
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    ticket: t.map(TicketId::new),
                    at_ms: r.try_get("at")?,
                    actor: Actor::from_stored(&actor).map_err(|e| corrupt("audit_log", e))?,
                    action: r.try_get("action")?,
                    details: r.try_get("details")?,
                })
            })
            .collect()
    }

    async fn audit(
        &self,
        ticket: Option<TicketId>,
        actor: &Actor,
        action: &str,
        details: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        insert_audit(&mut tx, ticket, actor, action, details, now_ms).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn apply(
        &self,
        ticket: TicketId,
        actor: &Actor,
        event: &TicketEvent,
        notify: &[Platform],
        now_ms: i64,
    ) -> StoreResult<Applied> {
        for _ in 0..APPLY_ATTEMPTS {
            let mut tx = self.pool.begin().await?;
            let Some(row) = sqlx::query("SELECT status, owner, version FROM tickets WHERE id = $1")
                .bind(ticket.get())
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(Applied::NoSuchTicket);
            };
            let version: i64 = row.try_get("version")?;
            let state = state_from_row(&row)?;
            let tags = load_tags(&mut *tx, ticket).await?;
            let current = Ticket { state, tags };
            let next = match current.apply(event) {
                Ok(next) => next,
                Err(refusal) => return Ok(Applied::Refused(refusal)),
            };
            if next == current {
                return Ok(Applied::Unchanged);
            }
            // The version check makes this the lock: if anyone changed the
            // ticket since we read it, no row matches and we decide again on
            // fresh state.
            let updated = sqlx::query(
                "UPDATE tickets SET status = $1, owner = $2, version = version + 1, updated_at = $3 WHERE id = $4 AND version = $5",
            )
            .bind(next.state.status().as_str())
            .bind(next.state.owner().map(|a| a.as_str().to_owned()))
            .bind(now_ms)
            .bind(ticket.get())
            .bind(version)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() != 1 {
                tx.rollback().await?;
                continue;
            }
            let details = match event {
                TicketEvent::AddTag(tag) => {
                    sqlx::query("INSERT INTO ticket_tags (ticket_id, tag) VALUES ($1, $2) ON CONFLICT (ticket_id, tag) DO NOTHING")
                        .bind(ticket.get())
                        .bind(tag.as_str())
                        .execute(&mut *tx)
                        .await?;
                    tag.to_string()
                }
                TicketEvent::RemoveTag(tag) => {
                    sqlx::query("DELETE FROM ticket_tags WHERE ticket_id = $1 AND tag = $2")
                        .bind(ticket.get())
                        .bind(tag.as_str())
                        .execute(&mut *tx)
                        .await?;
                    tag.to_string()
                }
                _ => format!("{} → {}", current.state, next.state),
            };
            insert_audit(
                &mut tx,
                Some(ticket),
                actor,
                event.action(),
                &details,
                now_ms,
            )
            .await?;
            for p in notify {
                insert_job(
                    &mut tx,
                    Some(ticket),
                    &JobSpec::ChatStatus { platform: *p },
                    now_ms,
                    now_ms,
                )
                .await?;
            }
            tx.commit().await?;
            return Ok(Applied::Changed {
                before: current.state,
                after: next.state,
            });
        }
        Err(StoreError::Unavailable(sqlx::Error::Protocol(format!(
            "ticket {ticket} kept changing under {APPLY_ATTEMPTS} attempts"
        ))))
    }

    async fn latest_inbound(
        &self,
        ticket: TicketId,
    ) -> StoreResult<Option<(EmailRecord, Vec<u8>)>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EMAIL_COLUMNS}, raw, raw_size FROM emails WHERE ticket_id = $1 AND direction = 'inbound' ORDER BY id DESC LIMIT 1"
        )))
        .bind(ticket.get())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let email = email_from_row(&row)?;
        let raw = whole_raw(&self.pool, email.id, &row).await?;
        Ok(Some((email, raw)))
    }

    async fn queue_reply(&self, reply: NewReply) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "INSERT INTO emails (mailbox, ticket_id, direction, message_id, content_hash, imap_uid, from_addr, from_name, subject, sent_at, stored_at, author, state, raw, raw_size) \
             VALUES ($1, $2, 'outbound', $3, $4, NULL, $5, $6, $7, $8, $9, $10, 'queued', $11, $12) RETURNING id",
        )
        .bind(reply.mailbox.as_str())
        .bind(reply.ticket.get())
        .bind(reply.message_id.as_str())
        .bind(reply.content_hash.as_str())
        .bind(reply.from.address.as_str())
        .bind(reply.from.name.clone())
        .bind(&reply.subject)
        .bind(reply.send_at_ms / 1000)
        .bind(reply.now_ms)
        .bind(reply.author.as_str())
        .bind(first_piece(&reply.raw))
        .bind(reply.raw.len() as i64)
        .fetch_one(&mut *tx)
        .await?;
        let email_id: i64 = row.try_get("id")?;
        insert_later_pieces(&mut tx, email_id, &reply.raw).await?;
        insert_job(
            &mut tx,
            Some(reply.ticket),
            &JobSpec::SendReply { email_id },
            reply.send_at_ms,
            reply.now_ms,
        )
        .await?;
        insert_audit(
            &mut tx,
            Some(reply.ticket),
            &Actor::Agent(reply.author.clone()),
            "reply-queued",
            &format!("{} ({} bytes)", reply.message_id, reply.raw.len()),
            reply.now_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(email_id)
    }

    async fn outgoing(&self, email_id: i64) -> StoreResult<Option<OutgoingMail>> {
        let Some(row) = sqlx::query("SELECT id, ticket_id, mailbox, message_id, raw, raw_size, state FROM emails WHERE id = $1 AND direction = 'outbound'")
            .bind(email_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let ticket = TicketId::new(row.try_get("ticket_id")?);
        let answers = sqlx::query("SELECT message_id FROM emails WHERE ticket_id = $1 AND direction = 'inbound' AND id < $2 ORDER BY id DESC LIMIT 1")
            .bind(ticket.get())
            .bind(email_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get::<String, _>("message_id"))
            .transpose()?
            .and_then(|m| MessageId::parse(&m).ok());
        let state: String = row.try_get("state")?;
        Ok(Some(OutgoingMail {
            email_id,
            ticket,
            mailbox: MailboxName::parse(&row.try_get::<String, _>("mailbox")?)
                .map_err(|e| corrupt("emails", e))?,
            message_id: MessageId::parse(&row.try_get::<String, _>("message_id")?)
                .map_err(|e| corrupt("emails", e))?,
            raw: whole_raw(&self.pool, email_id, &row).await?,
            state: EmailState::parse(&state)
                .ok_or_else(|| corrupt("emails", format!("state {state:?}")))?,
            answers,
        }))
    }

    async fn cancel_reply(&self, email_id: i64, actor: &Actor, now_ms: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let payload = serde_json::to_string(&JobSpec::SendReply { email_id })
            .map_err(|e| corrupt("outbox", e))?;
        let cancelled = sqlx::query("UPDATE outbox SET state = 'cancelled', updated_at = $1 WHERE payload = $2 AND state = 'pending'")
            .bind(now_ms)
            .bind(&payload)
            .execute(&mut *tx)
            .await?;
        if cancelled.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        let row =
            sqlx::query("UPDATE emails SET state = 'cancelled' WHERE id = $1 RETURNING ticket_id")
                .bind(email_id)
                .fetch_one(&mut *tx)
                .await?;
        let ticket = TicketId::new(row.try_get("ticket_id")?);
        insert_audit(
            &mut tx,
            Some(ticket),
            actor,
            "reply-cancelled",
            &format!("email {email_id}"),
            now_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn enqueue(
        &self,
        ticket: Option<TicketId>,
        spec: &JobSpec,
        not_before_ms: i64,
        now_ms: i64,
    ) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await?;
        let id = insert_job(&mut tx, ticket, spec, not_before_ms, now_ms).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn next_job(&self, now_ms: i64) -> StoreResult<Option<Job>> {
        // The head of each lane that is due: no earlier job of its lane
        // pending or in flight, and none in flight at all.
        macro_rules! due {
            () => {
                "SELECT o.id FROM outbox o WHERE o.state = 'pending' AND o.not_before <= $1 \
                 AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.lane = o.lane AND p.id < o.id AND p.state IN ('pending', 'in_flight')) \
                 AND NOT EXISTS (SELECT 1 FROM outbox f WHERE f.lane = o.lane AND f.state = 'in_flight') \
                 ORDER BY o.not_before, o.id LIMIT 1"
            };
        }
        loop {
            // Chosen and taken in one statement (one round trip per job).
            // The `state` condition is checked again on the row itself, so
            // of two workers choosing the same job only one takes it.
            let taken = sqlx::query(concat!(
                "UPDATE outbox SET state = 'in_flight', attempts = attempts + 1, updated_at = $1 WHERE id = (",
                due!(),
                ") AND state = 'pending' RETURNING *"
            ))
            .bind(now_ms)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = taken {
                return Ok(Some(job_from_row(&row)?));
            }
            // Nothing taken: nothing is due, or another worker took the
            // chosen job first and another may be due.
            let due = sqlx::query(due!())
                .bind(now_ms)
                .fetch_optional(&self.pool)
                .await?;
            if due.is_none() {
                return Ok(None);
            }
        }
    }

    async fn next_due_at(&self) -> StoreResult<Option<i64>> {
        let row = sqlx::query("SELECT MIN(not_before) AS due FROM outbox WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("due")?)
    }

    async fn finish_job(&self, job: &Job, outcome: &JobOutcome, now_ms: i64) -> StoreResult<()> {
        let q = match outcome {
            JobOutcome::Done => sqlx::query("UPDATE outbox SET state = 'done', last_error = NULL, updated_at = $1 WHERE id = $2")
                .bind(now_ms)
                .bind(job.id),
            JobOutcome::Retry { at_ms, error } => {
                sqlx::query("UPDATE outbox SET state = 'pending', not_before = $1, last_error = $2, updated_at = $3 WHERE id = $4")
                    .bind(*at_ms)
                    .bind(error.clone())
                    .bind(now_ms)
                    .bind(job.id)
            }
            JobOutcome::Failed { error } => sqlx::query("UPDATE outbox SET state = 'failed', last_error = $1, updated_at = $2 WHERE id = $3")
                .bind(error.clone())
                .bind(now_ms)
                .bind(job.id),
        };
        q.execute(&self.pool).await?;
        Ok(())
    }

    async fn settle_job(&self, job: &Job, settlement: &Settlement, now_ms: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let (state, not_before, error) = match &settlement.outcome {
            JobOutcome::Done => ("done", None, None),
            JobOutcome::Retry { at_ms, error } => ("pending", Some(*at_ms), Some(error.clone())),
            JobOutcome::Failed { error } => ("failed", None, Some(error.clone())),
        };
        // Only while in flight: a retry of this write after a lost answer
        // must not queue the follow-on jobs twice.
        let taken = sqlx::query(
            "UPDATE outbox SET state = $1, not_before = COALESCE($2, not_before), last_error = $3, updated_at = $4 \
             WHERE id = $5 AND state = 'in_flight'",
        )
        .bind(state)
        .bind(not_before)
        .bind(error)
        .bind(now_ms)
        .bind(job.id)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(());
        }
        if let (Some(ticket), Some(thread)) = (job.ticket, &settlement.thread) {
            link_thread(&mut *tx, ticket, thread).await?;
        }
        for spec in &settlement.follow_ons {
            insert_job(&mut tx, job.ticket, spec, now_ms, now_ms).await?;
        }
        if let Some((action, details)) = &settlement.audit {
            insert_audit(&mut tx, job.ticket, &Actor::System, action, details, now_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn requeue_job(&self, id: i64, actor: &Actor, now_ms: i64) -> StoreResult<Requeued> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT * FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Requeued::NoSuchJob);
        };
        let job = job_from_row(&row)?;
        if job.state != JobState::Failed {
            return Ok(Requeued::NotFailed(job.state));
        }
        if matches!(job.spec, JobSpec::SendReply { .. }) {
            return Ok(Requeued::Reply);
        }
        let taken = sqlx::query(
            "UPDATE outbox SET state = 'pending', attempts = 0, not_before = $1, updated_at = $1 \
             WHERE id = $2 AND state = 'failed'",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            // Another retry got there first.
            return Ok(Requeued::NotFailed(JobState::Pending));
        }
        let details = format!(
            "outbox job {id} ({}) queued again; it had failed: {}",
            job.spec.kind(),
            job.last_error.as_deref().unwrap_or("no error recorded")
        );
        insert_audit(&mut tx, job.ticket, actor, "job-retried", &details, now_ms).await?;
        tx.commit().await?;
        Ok(Requeued::Queued(Job {
            state: JobState::Pending,
            attempts: 0,
            not_before_ms: now_ms,
            ..job
        }))
    }

    async fn reply_sent(
        &self,
        job: &Job,
        email_id: i64,
        notify: &[Platform],
        now_ms: i64,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // Only while the job is in flight: the outbox retries this write when
        // the store fails, and if an earlier try committed but its answer was
        // lost (connection cut after COMMIT), the retry must change nothing —
        // no second audit line, notice or filing job.
        let taken = sqlx::query(
            "UPDATE outbox SET state = 'done', last_error = NULL, updated_at = $1 WHERE id = $2 AND state = 'in_flight'",
        )
        .bind(now_ms)
        .bind(job.id)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(());
        }
        let row = sqlx::query("UPDATE emails SET state = 'sent', sent_at = $1 WHERE id = $2 RETURNING ticket_id, author, message_id")
            .bind(now_ms / 1000)
            .bind(email_id)
            .fetch_one(&mut *tx)
            .await?;
        let ticket = TicketId::new(row.try_get("ticket_id")?);
        let author: Option<String> = row.try_get("author")?;
        let message_id: String = row.try_get("message_id")?;
        let details = match &author {
            Some(a) => format!("<{message_id}> written by {a}"),
            None => format!("<{message_id}>"),
        };
        insert_audit(
            &mut tx,
            Some(ticket),
            &Actor::System,
            "reply-sent",
            &details,
            now_ms,
        )
        .await?;
        insert_job(
            &mut tx,
            Some(ticket),
            &JobSpec::FileSent { email_id },
            now_ms,
            now_ms,
        )
        .await?;
        let when = jiff::Timestamp::from_millisecond(now_ms)
            .map(|t| t.strftime("%H:%M UTC").to_string())
            .unwrap_or_default();
        let by = author
            .as_deref()
            .map(|a| format!(" by {a}"))
            .unwrap_or_default();
        for p in notify {
            let text = format!("✉️ Reply sent{by} at {when}.");
            let spec = JobSpec::ChatNotice { platform: *p, text };
            insert_job(&mut tx, Some(ticket), &spec, now_ms, now_ms).await?;
        }
        tx.commit().await?;
        Ok(())
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
        let mut tx = self.pool.begin().await?;
        let job_state = if state == EmailState::Uncertain {
            "uncertain"
        } else {
            "failed"
        };
        sqlx::query("UPDATE outbox SET state = $1, last_error = $2, updated_at = $3 WHERE id = $4")
            .bind(job_state)
            .bind(error)
            .bind(now_ms)
            .bind(job.id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query("UPDATE emails SET state = $1 WHERE id = $2 RETURNING ticket_id")
            .bind(state.as_str())
            .bind(email_id)
            .fetch_one(&mut *tx)
            .await?;
        let ticket = TicketId::new(row.try_get("ticket_id")?);
        let action = if state == EmailState::Uncertain {
            "reply-uncertain"
        } else {
            "reply-failed"
        };
        insert_audit(&mut tx, Some(ticket), &Actor::System, action, error, now_ms).await?;
        for p in notify {
            let text = if state == EmailState::Uncertain {
                format!(
                    "⚠️ The reply may or may not have been sent: {error}. It will not be retried automatically."
                )
            } else {
                format!("⚠️ The reply could not be sent: {error}")
            };
            insert_job(
                &mut tx,
                Some(ticket),
                &JobSpec::ChatNotice { platform: *p, text },
                now_ms,
                now_ms,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn recover_in_flight(&self, now_ms: i64) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query("SELECT * FROM outbox WHERE state = 'in_flight' ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let job = job_from_row(&row)?;
            if !job.spec.at_most_once() {
                sqlx::query("UPDATE outbox SET state = 'pending', updated_at = $1 WHERE id = $2 AND state = 'in_flight'")
                    .bind(now_ms)
                    .bind(job.id)
                    .execute(&self.pool)
                    .await?;
            }
            out.push(job);
        }
        Ok(out)
    }

    async fn jobs(&self, states: &[JobState]) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query("SELECT * FROM outbox ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let job = job_from_row(&row)?;
            if states.is_empty() || states.contains(&job.state) {
                out.push(job);
            }
        }
        Ok(out)
    }

    async fn count_jobs(&self) -> StoreResult<Vec<(JobState, u64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let state: String = row.try_get("state")?;
            let n: i64 = row.try_get("n")?;
            let state = JobState::parse(&state)
                .ok_or_else(|| corrupt("outbox", format!("state {state:?}")))?;
            out.push((state, n.max(0) as u64));
        }
        Ok(out)
    }

    async fn chat_thread(
        &self,
        ticket: TicketId,
        platform: Platform,
    ) -> StoreResult<Option<ChatThread>> {
        let row = sqlx::query(
            "SELECT room, thread_ref FROM chat_threads WHERE ticket_id = $1 AND platform = $2",
        )
        .bind(ticket.get())
        .bind(platform.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ChatThread {
                platform,
                room: r.try_get("room")?,
                thread_ref: r.try_get("thread_ref")?,
            })
        })
        .transpose()
    }

    async fn first_sighting(
        &self,
        platform: Platform,
        event_ref: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO chat_events (platform, event_ref, seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (platform, event_ref) DO NOTHING",
        )
        .bind(platform.as_str())
        .bind(event_ref)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_chat_file(
        &self,
        thread: &ChatThread,
        event_ref: &str,
        agent: &Agent,
        file: &SharedFile,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO chat_files (platform, room, thread_ref, event_ref, agent, name, content_type, size, source, posted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (platform, event_ref) DO NOTHING",
        )
        .bind(thread.platform.as_str())
        .bind(&thread.room)
        .bind(&thread.thread_ref)
        .bind(event_ref)
        .bind(agent.as_str())
        .bind(&file.name)
        .bind(&file.content_type)
        .bind(file.size.min(i64::MAX as u64) as i64)
        .bind(&file.source)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn chat_files(&self, thread: &ChatThread, since_ms: i64) -> StoreResult<Vec<SharedFile>> {
        let rows = sqlx::query(
            "SELECT name, content_type, size, source FROM chat_files \
             WHERE platform = $1 AND room = $2 AND thread_ref = $3 AND posted_at >= $4 ORDER BY posted_at, event_ref",
        )
        .bind(thread.platform.as_str())
        .bind(&thread.room)
        .bind(&thread.thread_ref)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SharedFile {
                    name: r.try_get("name")?,
                    content_type: r.try_get("content_type")?,
                    size: r.try_get::<i64, _>("size")?.max(0) as u64,
                    source: r.try_get("source")?,
                })
            })
            .collect()
    }

    async fn ticket_by_thread(&self, thread: &ChatThread) -> StoreResult<Option<TicketId>> {
        let row = sqlx::query(
            "SELECT ticket_id FROM chat_threads WHERE platform = $1 AND room = $2 AND thread_ref = $3",
        )
        .bind(thread.platform.as_str())
        .bind(&thread.room)
        .bind(&thread.thread_ref)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>("ticket_id"))
            .transpose()?
            .map(TicketId::new))
    }

    async fn link_chat_thread(&self, ticket: TicketId, thread: &ChatThread) -> StoreResult<()> {
        link_thread(&self.pool, ticket, thread).await
    }
}

async fn link_thread<'e, E>(exec: E, ticket: TicketId, thread: &ChatThread) -> StoreResult<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO chat_threads (ticket_id, platform, room, thread_ref) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (ticket_id, platform) DO UPDATE SET room = excluded.room, thread_ref = excluded.thread_ref",
    )
    .bind(ticket.get())
    .bind(thread.platform.as_str())
    .bind(&thread.room)
    .bind(&thread.thread_ref)
    .execute(exec)
    .await?;
    Ok(())
}

async fn upsert_checkpoint<'e, E>(
    exec: E,
    mailbox: &MailboxName,
    cp: Checkpoint,
    now_ms: i64,
) -> StoreResult<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO checkpoints (mailbox, uid_validity, last_uid, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (mailbox) DO UPDATE SET uid_validity = excluded.uid_validity, last_uid = excluded.last_uid, updated_at = excluded.updated_at",
    )
    .bind(mailbox.as_str())
    .bind(i64::from(cp.uid_validity))
    .bind(i64::from(cp.last_uid))
    .bind(now_ms)
    .execute(exec)
    .await?;
    Ok(())
}
