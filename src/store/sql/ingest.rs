//! Incoming mail: the duplicate check, the threading lookups, and the
//! write of an email with its ticket, participants, audit lines, chat jobs
//! and checkpoint — alone or as part of a batch ([`SqlIngestBatch`]).
//! Tables: `emails`, `tickets`, `participants` (and, through their files'
//! helpers, `audit_log`, `outbox`, `checkpoints`).

use std::collections::BTreeSet;

use async_trait::async_trait;
use sqlx::{AnyConnection, AnyPool, Row};

use super::Backend;
use super::audit::insert_audit;
use super::checkpoints::upsert_checkpoint;
use super::cluster::check_fence;
use super::deferred::Deferred;
use super::emails::{first_piece, insert_later_pieces};
use super::outbox::{insert_first_job, insert_job};
use super::prefetch::{Prefetched, Standing, Wrote};
use super::tickets::{apply_on, state_from_row};
use super::{AnyTx, corrupt};
use crate::domain::assign::Pick;
use crate::domain::chat::Platform;
use crate::domain::cluster::Fence;
use crate::domain::email::ContentHash;
use crate::domain::hygiene::{LoopFacts, LoopVerdict};
use crate::domain::ids::{Actor, Agent, EmailAddress, MailboxName, MessageId, TicketId};
use crate::domain::mailbox::FolderRole;
use crate::domain::routing::{Mark, Route};
use crate::domain::threading::{CandidateTicket, Candidates, ThreadKeys, subject_key};
use crate::domain::ticket::{Ticket, TicketEvent};
use crate::store::{
    Destination, IngestBatch, JobSpec, LookUpKey, Looked, LoopRecord, NewInbound, Recorded,
    SenderActivity, StoreResult,
};

pub(super) async fn has_email(
    pool: &AnyPool,
    mailbox: &MailboxName,
    id: &MessageId,
    hash: &ContentHash,
) -> StoreResult<bool> {
    let row = sqlx::query(
        "SELECT 1 AS one FROM emails WHERE mailbox = $1 AND message_id = $2 AND content_hash = $3",
    )
    .bind(mailbox.as_str())
    .bind(id.as_str())
    .bind(hash.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.is_some())
}

pub(super) async fn thread_candidates(
    pool: &AnyPool,
    mailbox: &MailboxName,
    keys: &ThreadKeys,
) -> StoreResult<Candidates> {
    // One connection for every lookup, not one from the pool each.
    let mut conn = pool.acquire().await?;
    thread_candidates_on(&mut conn, mailbox, keys).await
}

pub(super) async fn record_inbound(
    pool: &AnyPool,
    fence: Option<(Backend, &Fence)>,
    new: NewInbound,
) -> StoreResult<Recorded> {
    let mut tx = pool.begin().await?;
    let recorded = record_inbound_on(&mut tx, new, false, None)
        .await?
        .ok_or_else(|| corrupt("emails", "an email alone was left waiting"))?;
    if let Some((backend, fence)) = fence {
        check_fence(&mut tx, backend, fence).await?;
    }
    tx.commit().await?;
    Ok(recorded)
}

pub(super) async fn begin_ingest(
    pool: &AnyPool,
    backend: Backend,
    fence: Option<(Backend, &Fence)>,
) -> StoreResult<Box<dyn IngestBatch>> {
    Ok(Box::new(SqlIngestBatch {
        tx: pool.begin().await?,
        backend,
        fence: fence.map(|(b, f)| (b, f.clone())),
        looked_new: None,
        deferred: Deferred::new(backend),
        prefetched: Prefetched::default(),
        outcomes: Vec::new(),
    }))
}

/// Inbound emails stored in one transaction (see [`IngestBatch`]).
struct SqlIngestBatch {
    tx: AnyTx,
    backend: Backend,
    /// Checked just before the commit: a batch whose lease changed hands
    /// meanwhile is rolled back whole, and the new owner fetches it again.
    fence: Option<(Backend, Fence)>,
    /// The email [`IngestBatch::look_up`] last found not stored, until
    /// the next call: its `record_inbound` needs no duplicate check.
    looked_new: Option<(MailboxName, MessageId, ContentHash)>,
    /// Rows of plain mail written at the commit, many per statement.
    deferred: Deferred,
    /// Look-ups read for the whole batch (see [`IngestBatch::prefetch`]).
    prefetched: Prefetched,
    /// What each `record_inbound` did, in order, for the commit's answer.
    outcomes: Vec<Outcome>,
}

/// What one `record_inbound` of a batch did.
enum Outcome {
    Known(Recorded),
    /// Queued in [`Deferred`], at this index of its `recorded`.
    Waiting(usize),
}

#[async_trait]
impl IngestBatch for SqlIngestBatch {
    async fn thread_candidates(
        &mut self,
        mailbox: &MailboxName,
        keys: &ThreadKeys,
    ) -> StoreResult<Candidates> {
        self.looked_new = None;
        self.deferred.flush(&mut self.tx).await?;
        thread_candidates_on(&mut self.tx, mailbox, keys).await
    }

    async fn look_up(
        &mut self,
        mailbox: &MailboxName,
        keys: &ThreadKeys,
        (message_id, hash): (&MessageId, &ContentHash),
        since_ms: i64,
    ) -> StoreResult<Looked> {
        self.looked_new = None;
        let looked = match self.prefetched.take(mailbox, keys, message_id, hash) {
            Some(looked) => looked,
            None => {
                // The rows waiting must be there for the look-up to see.
                self.deferred.flush(&mut self.tx).await?;
                let looked =
                    look_up_on(&mut self.tx, mailbox, keys, message_id, hash, since_ms).await?;
                self.prefetched.learn(&looked);
                looked
            }
        };
        if !looked.duplicate {
            self.looked_new = Some((mailbox.clone(), message_id.clone(), hash.clone()));
        }
        Ok(looked)
    }

    async fn prefetch(
        &mut self,
        mailbox: &MailboxName,
        emails: &[LookUpKey<'_>],
    ) -> StoreResult<()> {
        self.looked_new = None;
        self.deferred.flush(&mut self.tx).await?;
        self.prefetched
            .fetch(&mut self.tx, self.backend, mailbox, emails)
            .await
    }

    async fn record_inbound(&mut self, new: NewInbound) -> StoreResult<Option<Recorded>> {
        let known_new = self.looked_new.take().is_some_and(|(m, id, h)| {
            m == new.mailbox && id == new.email.message_id && h == new.email.content_hash
        });
        if !known_new {
            // Its duplicate check reads the emails, waiting ones included.
            self.deferred.flush(&mut self.tx).await?;
        }
        let sender = new.email.from.address.as_str().to_owned();
        let message_id = new.email.message_id.clone();
        let (created, follows) = match &new.destination {
            Destination::New { token } => (
                Some((token.as_str().to_owned(), subject_key(&new.email.subject))),
                None,
            ),
            Destination::FollowUp { ticket, .. } => (None, Some(*ticket)),
        };
        let index = self.deferred.queued();
        let standing = follows.and_then(|t| self.prefetched.standing(t));
        let batch = Batch {
            deferred: &mut self.deferred,
            standing,
        };
        let recorded = record_inbound_on(&mut self.tx, new, known_new, Some(batch)).await?;
        // A plain follow-up (left waiting) changes nothing of its
        // ticket's state; anything else may have.
        if let (Some(t), Some(_)) = (follows, recorded) {
            self.prefetched.changed(t);
        }
        if !matches!(recorded, Some(Recorded::Duplicate)) {
            self.prefetched.wrote(Wrote {
                sender: &sender,
                message_id: &message_id,
                new: created.as_ref().map(|(t, k)| (t.as_str(), k.clone())),
                ticket: recorded.and_then(|r| r.ticket()).or(follows),
            });
        }
        self.outcomes.push(match recorded {
            Some(r) => Outcome::Known(r),
            None => Outcome::Waiting(index),
        });
        Ok(recorded)
    }

    async fn record_loop(&mut self, record: LoopRecord) -> StoreResult<()> {
        self.looked_new = None;
        self.prefetched
            .wrote_loop(record.sender.as_str(), record.ticket);
        self.deferred.flush(&mut self.tx).await?;
        let tx = &mut self.tx;
        match record.verdict {
            LoopVerdict::Normal => {}
            LoopVerdict::Continuing => {
                sqlx::query(
                    "UPDATE mail_loops SET last_at = $1, messages = messages + 1 WHERE id = (SELECT MAX(id) FROM mail_loops WHERE mailbox = $2 AND sender = $3)",
                )
                .bind(record.now_ms)
                .bind(record.mailbox.as_str())
                .bind(record.sender.as_str())
                .execute(&mut **tx)
                .await?;
            }
            LoopVerdict::Started => {
                sqlx::query(
                    "INSERT INTO mail_loops (mailbox, sender, ticket_id, started_at, last_at, messages) VALUES ($1, $2, $3, $4, $4, 1)",
                )
                .bind(record.mailbox.as_str())
                .bind(record.sender.as_str())
                .bind(record.ticket.get())
                .bind(record.now_ms)
                .execute(&mut **tx)
                .await?;
                insert_audit(
                    tx,
                    Some(record.ticket),
                    &Actor::System,
                    "mail-loop",
                    &record.details,
                    record.now_ms,
                )
                .await?;
                for spec in &record.notices {
                    insert_job(tx, Some(record.ticket), spec, record.now_ms, record.now_ms).await?;
                }
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<Vec<Recorded>> {
        self.deferred.flush(&mut self.tx).await?;
        let recorded = self
            .outcomes
            .iter()
            .map(|o| match o {
                Outcome::Known(r) => Ok(*r),
                Outcome::Waiting(i) => self
                    .deferred
                    .recorded(*i)
                    .ok_or_else(|| corrupt("emails", format!("waiting email {i} not written"))),
            })
            .collect::<StoreResult<Vec<_>>>()?;
        if let Some((backend, fence)) = &self.fence {
            check_fence(&mut self.tx, *backend, fence).await?;
        }
        self.tx.commit().await?;
        Ok(recorded)
    }
}

async fn thread_candidates_on(
    conn: &mut AnyConnection,
    mailbox: &MailboxName,
    keys: &ThreadKeys,
) -> StoreResult<Candidates> {
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
    candidates_with_subject(conn, mailbox, keys, by_subject).await
}

// The look-up's statement (see `look_up_on`). Every column is cast to
// BIGINT: PostgreSQL's COUNT, integer literals and NULLs then share one type
// in the union, which the Any driver decodes alike on both backends. `$6`,
// the subject key, only with the subject part.
macro_rules! look_up_head {
    () => {
        "SELECT CAST(0 AS BIGINT) AS kind, \
         CAST((SELECT COUNT(*) FROM emails WHERE mailbox = $1 AND from_addr = $2 AND direction = 'inbound' AND stored_at >= $3) AS BIGINT) AS a, \
         CAST((SELECT MAX(last_at) FROM mail_loops WHERE mailbox = $1 AND sender = $2) AS BIGINT) AS b, \
         CAST((SELECT ticket_id FROM emails WHERE mailbox = $1 AND from_addr = $2 AND direction = 'inbound' ORDER BY id DESC LIMIT 1) AS BIGINT) AS c, \
         CAST(CASE WHEN EXISTS (SELECT 1 FROM emails WHERE mailbox = $1 AND message_id = $4 AND content_hash = $5) THEN 1 ELSE 0 END AS BIGINT) AS d"
    };
}
macro_rules! look_up_subject {
    () => {
        " UNION ALL SELECT CAST(1 AS BIGINT), id, last_customer_at, CAST(NULL AS BIGINT), CAST(NULL AS BIGINT) FROM \
         (SELECT id, last_customer_at FROM tickets WHERE mailbox = $1 AND customer = $2 AND subject_key = $6 ORDER BY last_customer_at DESC LIMIT 5) AS s"
    };
}

/// What ingest needs to know before storing one email (see
/// [`Looked`]), in one statement when the email references nothing: the
/// duplicate check, the sender's activity and the subject candidates are
/// one `UNION ALL` of a row of scalar subqueries and the candidate ids.
/// Each statement is a round trip to SQLite's worker thread or to
/// PostgreSQL, and per email they were most of ingest's cost
/// (docs/PERFORMANCE.md).
async fn look_up_on(
    conn: &mut AnyConnection,
    mailbox: &MailboxName,
    keys: &ThreadKeys,
    message_id: &MessageId,
    hash: &ContentHash,
    since_ms: i64,
) -> StoreResult<Looked> {
    let key = subject_key(&keys.subject);
    let sql = if key.is_empty() {
        look_up_head!()
    } else {
        concat!(look_up_head!(), look_up_subject!())
    };
    let mut q = sqlx::query(sql)
        .bind(mailbox.as_str())
        .bind(keys.from.as_str())
        .bind(since_ms)
        .bind(message_id.as_str())
        .bind(hash.as_str());
    if !key.is_empty() {
        q = q.bind(&key);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let mut head = None;
    let mut subject: Vec<(i64, i64)> = Vec::new();
    for r in &rows {
        let a: Option<i64> = r.try_get("a")?;
        match r.try_get::<i64, _>("kind")? {
            0 => {
                head = Some((
                    a,
                    r.try_get::<Option<i64>, _>("b")?,
                    r.try_get::<Option<i64>, _>("c")?,
                    r.try_get::<Option<i64>, _>("d")?,
                ))
            }
            _ => {
                if let Some(id) = a {
                    subject.push((id, r.try_get::<Option<i64>, _>("b")?.unwrap_or(0)));
                }
            }
        }
    }
    let Some((recent, last_quiet_ms, latest, duplicate)) = head else {
        return Err(corrupt("emails", "the ingest look-up returned no head row"));
    };
    // Newest first, as the query inside the union ordered them (a union's
    // row order is not guaranteed).
    subject.sort_by(|x, y| y.1.cmp(&x.1));
    let mut by_subject = Vec::new();
    for (id, _) in subject {
        push_unique(&mut by_subject, id);
    }
    Ok(Looked {
        candidates: candidates_with_subject(conn, mailbox, keys, by_subject).await?,
        activity: SenderActivity {
            facts: LoopFacts {
                recent: u32::try_from(recent.unwrap_or(0)).unwrap_or(u32::MAX),
                last_quiet_ms,
            },
            latest_ticket: latest.map(TicketId::new),
        },
        duplicate: duplicate.unwrap_or(0) != 0,
    })
}

/// The candidates of `keys` beyond the subject ones (`by_subject`, found
/// already): by reference, by token, a bounce's ticket; each candidate's
/// ticket and participants read in one query for all of them.
async fn candidates_with_subject(
    conn: &mut AnyConnection,
    mailbox: &MailboxName,
    keys: &ThreadKeys,
    by_subject: Vec<i64>,
) -> StoreResult<Candidates> {
    let mut by_reference = Vec::new();
    let referenced = keys.referenced_ids();
    if !referenced.is_empty() {
        let list = placeholders(2, referenced.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT DISTINCT message_id, ticket_id FROM emails WHERE mailbox = $1 AND message_id IN ({list})"
        )))
        .bind(mailbox.as_str());
        for id in &referenced {
            q = q.bind(id.as_str());
        }
        let mut found: Vec<(String, i64)> = Vec::new();
        for r in q.fetch_all(&mut *conn).await? {
            found.push((r.try_get("message_id")?, r.try_get("ticket_id")?));
        }
        // In the order of `referenced_ids()`, as threading expects.
        for id in &referenced {
            for (m, t) in &found {
                if m == id.as_str() {
                    push_unique(&mut by_reference, *t);
                }
            }
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
    let mut all: Vec<i64> = Vec::new();
    for id in by_reference.iter().chain(&by_token).chain(&by_subject) {
        push_unique(&mut all, *id);
    }
    let tickets = candidate_tickets(&mut *conn, &all).await?;
    let pick = |ids: &[i64]| -> Vec<CandidateTicket> {
        ids.iter()
            .filter_map(|id| tickets.iter().find(|c| c.id.get() == *id).cloned())
            .collect()
    };
    Ok(Candidates {
        by_reference: pick(&by_reference),
        by_token: pick(&by_token),
        by_subject: pick(&by_subject),
        by_returned,
    })
}

/// `$first, $first+1, …` for `n` values of an `IN (…)` list.
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a batch gives [`record_inbound_on`].
struct Batch<'a> {
    /// The rows waiting for the commit: a plain new ticket or follow-up
    /// waits there too (`Ok(None)`: what it became is known at the
    /// flush); anything else flushes them before it writes (see
    /// [`Deferred`]).
    deferred: &'a mut Deferred,
    /// A follow-up's ticket's state, if the batch knows it (see
    /// [`Prefetched::standing`]): then it is not read again.
    standing: Option<Standing>,
}

/// Stores one inbound email in `tx`. `known_new`: the caller checked in
/// this same transaction, with nothing written since, that the email is
/// not stored yet (see [`IngestBatch::look_up`]). `batch`: see [`Batch`].
async fn record_inbound_on(
    tx: &mut AnyTx,
    mut new: NewInbound,
    known_new: bool,
    batch: Option<Batch<'_>>,
) -> StoreResult<Option<Recorded>> {
    let (mut deferred, standing) = match batch {
        Some(b) => (Some(b.deferred), b.standing),
        None => (None, None),
    };
    let raw = std::mem::take(&mut new.email.raw);
    let dup = if known_new {
        false
    } else {
        sqlx::query(
            "SELECT 1 AS one FROM emails WHERE mailbox = $1 AND message_id = $2 AND content_hash = $3",
        )
        .bind(new.mailbox.as_str())
        .bind(new.email.message_id.as_str())
        .bind(new.email.content_hash.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .is_some()
    };
    if dup {
        if let Some(cp) = new.checkpoint {
            upsert_checkpoint(&mut **tx, &new.mailbox, FolderRole::Inbox, cp, new.now_ms).await?;
        }
        return Ok(Some(Recorded::Duplicate));
    }
    let customer = Actor::Customer(new.email.from.address.clone());
    let mut assigned = Assigned::None;
    // Whether the follow-up's ticket is snoozed, read with its state: only
    // then is there a snooze for the mail to end.
    let mut snoozed = false;
    let (ticket, reopened, is_new, set_aside) = match &new.destination {
        Destination::New { token } => {
            if let Some(d) = deferred.as_deref_mut()
                && Deferred::can_take_new(&new)
            {
                d.new_ticket(&new, token.as_str(), raw);
                return finish_deferred(tx, &new).await;
            }
            if let Some(d) = deferred.as_deref_mut() {
                d.flush(tx).await?;
            }
            let row = sqlx::query(
                "INSERT INTO tickets (mailbox, token, subject, subject_key, customer, status, owner, version, created_at, updated_at, last_customer_at, priority) \
                 VALUES ($1, $2, $3, $4, $5, 'open', NULL, 0, $6, $6, $6, $7) RETURNING id",
            )
            .bind(new.mailbox.as_str())
            .bind(token.as_str())
            .bind(&new.email.subject)
            .bind(subject_key(&new.email.subject))
            .bind(new.email.from.address.as_str())
            .bind(new.now_ms)
            .bind(new.route.priority.as_str())
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
            assigned = apply_route(tx, id, &new.route, new.now_ms).await?;
            (id, false, true, new.route.mark.is_some())
        }
        Destination::FollowUp { ticket, matched_by } => {
            // A customer's own mail moves `last_customer_at` (an automatic
            // one does not). Its ticket's state is known to the batch, or
            // returned by that update: one statement, not a read and a
            // write.
            let known = standing.is_some();
            let (state, is_snoozed) = match standing {
                Some(Standing { state, snoozed }) => (state, snoozed),
                None => {
                    let row = if new.automatic.is_none() {
                        sqlx::query(
                            "UPDATE tickets SET last_customer_at = $1 WHERE id = $2 \
                             RETURNING status, owner, version, snoozed_until",
                        )
                        .bind(new.now_ms)
                        .bind(ticket.get())
                        .fetch_optional(&mut **tx)
                        .await?
                    } else {
                        sqlx::query(
                            "SELECT status, owner, version, snoozed_until FROM tickets WHERE id = $1",
                        )
                        .bind(ticket.get())
                        .fetch_optional(&mut **tx)
                        .await?
                    }
                    .ok_or_else(|| {
                        corrupt("tickets", format!("follow-up for missing ticket {ticket}"))
                    })?;
                    let snoozed = row.try_get::<Option<i64>, _>("snoozed_until")?.is_some();
                    (state_from_row(&row)?, snoozed)
                }
            };
            snoozed = is_snoozed;
            let set_aside = state.is_set_aside();
            let current = Ticket {
                state: state.clone(),
                tags: BTreeSet::new(),
            };
            let reopen = match new.automatic {
                None => current
                    .apply(&TicketEvent::CustomerReplied)
                    .ok()
                    .filter(|next| next.state != state),
                Some(_) => None,
            };
            if let Some(d) = deferred {
                let plain = new.automatic.is_none() && reopen.is_none() && !set_aside && !snoozed;
                if plain {
                    d.follow_up(&new, *ticket, matched_by, known, raw);
                    return finish_deferred(tx, &new).await;
                }
                d.flush(tx).await?;
            }
            if known && new.automatic.is_none() {
                sqlx::query("UPDATE tickets SET last_customer_at = $1 WHERE id = $2")
                    .bind(new.now_ms)
                    .bind(ticket.get())
                    .execute(&mut **tx)
                    .await?;
            }
            insert_audit(
                tx,
                Some(*ticket),
                &customer,
                "customer-replied",
                &format!("matched by {matched_by}: {}", new.email.subject),
                new.now_ms,
            )
            .await?;
            let reopened = reopen.is_some();
            if let Some(next) = reopen {
                sqlx::query("UPDATE tickets SET status = $1, owner = $2, version = version + 1, updated_at = $3 WHERE id = $4")
                    .bind(next.state.status().as_str())
                    .bind(next.state.owner().map(|a| a.as_str().to_owned()))
                    .bind(new.now_ms)
                    .bind(ticket.get())
                    .execute(&mut **tx)
                    .await?;
                super::sla::status_changed(
                    tx,
                    *ticket,
                    state.status(),
                    next.state.status(),
                    new.now_ms,
                )
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
            if set_aside {
                insert_audit(
                    tx,
                    Some(*ticket),
                    &Actor::System,
                    "kept-aside",
                    &format!("the ticket is {}: filed, not posted", state.status()),
                    new.now_ms,
                )
                .await?;
            }
            (*ticket, reopened, false, set_aside)
        }
    };
    // A customer's own mail waits for an answer (an automatic one does not).
    if new.automatic.is_none() {
        super::sla::customer_wrote(tx, ticket, new.now_ms).await?;
    }
    // A new ticket was inserted with last_customer_at = now already, and a
    // follow-up's was set when its state was read.
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
        add_participant(tx, ticket, p).await?;
    }
    // A ticket set aside (ignored, spam) is kept but never posted.
    let post_to: &[_] = if set_aside { &[] } else { &new.post_to };
    for platform in post_to {
        // Only a new ticket's root goes where a rule said; a follow-up goes
        // to the thread the ticket already has.
        let room = is_new
            .then(|| {
                let rule = new.route.rooms.get(platform);
                rule.or_else(|| new.rooms.get(platform)).cloned()
            })
            .flatten();
        let post = JobSpec::ChatPost {
            platform: *platform,
            email_id,
            room,
        };
        if is_new {
            insert_first_job(tx, ticket, &post, new.now_ms).await?;
        } else {
            insert_job(tx, Some(ticket), &post, new.now_ms, new.now_ms).await?;
        }
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
        // After the root in the platform's lane: the thread it goes to exists.
        if let Some(spec) = assigned.notice(*platform) {
            insert_job(tx, Some(ticket), &spec, new.now_ms, new.now_ms).await?;
        }
    }
    // A customer's mail wakes a snoozed ticket, told after the mail's post.
    if snoozed && new.automatic.is_none() {
        super::snooze::wake_on_reply(tx, ticket, post_to, new.now_ms).await?;
    }
    if let Some(cp) = new.checkpoint {
        upsert_checkpoint(&mut **tx, &new.mailbox, FolderRole::Inbox, cp, new.now_ms).await?;
    }
    Ok(Some(if is_new {
        Recorded::NewTicket { ticket, email_id }
    } else {
        Recorded::FollowUp {
            ticket,
            email_id,
            reopened,
        }
    }))
}

/// The end of an email queued in a batch's [`Deferred`] rows: its
/// checkpoint, if it carries one (nothing waiting depends on it).
async fn finish_deferred(tx: &mut AnyTx, new: &NewInbound) -> StoreResult<Option<Recorded>> {
    if let Some(cp) = new.checkpoint {
        upsert_checkpoint(&mut **tx, &new.mailbox, FolderRole::Inbox, cp, new.now_ms).await?;
    }
    Ok(None)
}

/// Who a new ticket went to without a person choosing, for the thread.
enum Assigned {
    None,
    /// To this owner: their ids (one per platform) and why.
    To {
        ids: Vec<Agent>,
        owner: Agent,
        why: String,
    },
    /// A pool had nobody free.
    Nobody {
        why: String,
    },
}

impl Assigned {
    /// The thread's notice on `platform`: the owner mentioned under their
    /// id there, or why nobody was.
    fn notice(&self, platform: Platform) -> Option<JobSpec> {
        match self {
            Assigned::None => None,
            Assigned::To { ids, owner, why } => {
                let on =
                    |a: &&Agent| (platform == Platform::Slack) == a.as_str().starts_with("slack:");
                let who = ids.iter().find(on).unwrap_or(owner).clone();
                Some(JobSpec::ChatMention {
                    platform,
                    text: format!(
                        "👤 Assigned to {who}: {why}. A claim by someone else takes it over."
                    ),
                    mentions: vec![who.as_str().to_owned()],
                })
            }
            Assigned::Nobody { why } => Some(JobSpec::ChatNotice {
                platform,
                text: format!("👤 Not assigned: {why}. Claim it by hand."),
            }),
        }
    }
}

/// Applies what routing rules decided to a ticket just created, through
/// the state machine like any other change (so a rule can do nothing a
/// teammate could not), with an audit line naming the rules; and picks
/// its owner from a pool when the route has one.
async fn apply_route(
    tx: &mut AnyTx,
    ticket: TicketId,
    route: &Route,
    now_ms: i64,
) -> StoreResult<Assigned> {
    if !route.rules.is_empty() {
        let mut did = Vec::new();
        if let Some(mark) = route.mark {
            did.push(mark.as_str().to_owned());
        }
        for (platform, room) in &route.rooms {
            did.push(format!("{} room {room}", platform.as_str()));
        }
        if !route.tags.is_empty() {
            let tags: Vec<&str> = route.tags.iter().map(|t| t.as_str()).collect();
            did.push(format!("tags {}", tags.join(", ")));
        }
        did.push(format!("priority {}", route.priority));
        if let Some((agent, via)) = &route.owner {
            did.push(format!("assign {agent} ({via})"));
        }
        if let Some(auto) = &route.auto {
            did.push(format!("auto-assign in {}", auto.pool));
        }
        let details = format!("rules {}: {}", route.rules.join(", "), did.join("; "));
        insert_audit(tx, Some(ticket), &Actor::System, "routed", &details, now_ms).await?;
    }
    let mut events: Vec<TicketEvent> = route
        .tags
        .iter()
        .cloned()
        .map(TicketEvent::AddTag)
        .collect();
    let mut assigned = Assigned::None;
    match (route.mark, &route.owner, &route.auto) {
        (Some(Mark::Ignore), _, _) => events.push(TicketEvent::Ignore),
        (Some(Mark::Spam), _, _) => events.push(TicketEvent::MarkSpam),
        (None, Some((agent, via)), _) => {
            events.push(TicketEvent::Assign(agent.clone()));
            assigned = Assigned::To {
                ids: route.owner_ids.clone(),
                owner: agent.clone(),
                why: format!("a routing rule assigns {via}"),
            };
        }
        (None, None, Some(auto)) => {
            match super::assign::pick_owner(tx, ticket, auto, now_ms).await? {
                Pick::To { name, agent, why } => {
                    events.push(TicketEvent::Assign(agent.clone()));
                    let ids = auto
                        .candidates
                        .iter()
                        .find(|c| c.name == name)
                        .map(|c| c.agents.clone())
                        .unwrap_or_default();
                    assigned = Assigned::To {
                        ids,
                        owner: agent,
                        why,
                    };
                }
                Pick::Nobody { why } => assigned = Assigned::Nobody { why },
            }
        }
        (None, None, None) => {}
    }
    for event in &events {
        // Nothing else can hold this ticket yet: it was inserted in this
        // transaction, so the version check cannot fail.
        if apply_on(tx, ticket, &Actor::System, event, &[], now_ms)
            .await?
            .is_none()
        {
            return Err(corrupt(
                "tickets",
                format!("ticket {ticket} changed during its own creation"),
            ));
        }
    }
    Ok(assigned)
}

/// The tickets `ids` with their participants, in one query (a ticket
/// that no longer exists is left out).
pub(super) async fn candidate_tickets(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> StoreResult<Vec<CandidateTicket>> {
    let mut out: Vec<CandidateTicket> = Vec::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(out);
    }
    let list = placeholders(1, ids.len());
    let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT t.id, t.customer, t.subject_key, t.last_customer_at, p.address \
         FROM tickets t LEFT JOIN participants p ON p.ticket_id = t.id WHERE t.id IN ({list})"
    )));
    for id in ids {
        q = q.bind(*id);
    }
    for row in q.fetch_all(&mut *conn).await? {
        let id = TicketId::new(row.try_get("id")?);
        let i = match out.iter().position(|c| c.id == id) {
            Some(i) => i,
            None => {
                let customer = EmailAddress::parse(&row.try_get::<String, _>("customer")?)
                    .map_err(|e| corrupt("tickets", e))?;
                out.push(CandidateTicket {
                    id,
                    participants: BTreeSet::from([customer.clone()]),
                    customer,
                    subject_key: row.try_get("subject_key")?,
                    last_customer_at: row.try_get::<i64, _>("last_customer_at")? / 1000,
                });
                out.len() - 1
            }
        };
        if let Some(a) = row.try_get::<Option<String>, _>("address")? {
            out[i]
                .participants
                .insert(EmailAddress::parse(&a).map_err(|e| corrupt("participants", e))?);
        }
    }
    Ok(out)
}

/// Adds an address to a ticket's participants (once).
pub(super) async fn add_participant(
    tx: &mut AnyTx,
    ticket: TicketId,
    address: &EmailAddress,
) -> StoreResult<()> {
    let sql = "INSERT INTO participants (ticket_id, address) VALUES ($1, $2) ON CONFLICT (ticket_id, address) DO NOTHING";
    sqlx::query(sql)
        .bind(ticket.get())
        .bind(address.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) fn push_unique(v: &mut Vec<i64>, id: i64) {
    if !v.contains(&id) {
        v.push(id);
    }
}
