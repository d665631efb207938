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
use super::emails::{first_piece, insert_later_pieces};
use super::outbox::insert_job;
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
    Destination, IngestBatch, JobSpec, LoopRecord, NewInbound, Recorded, SenderActivity,
    StoreResult,
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
    let recorded = record_inbound_on(&mut tx, new).await?;
    if let Some((backend, fence)) = fence {
        check_fence(&mut tx, backend, fence).await?;
    }
    tx.commit().await?;
    Ok(recorded)
}

pub(super) async fn begin_ingest(
    pool: &AnyPool,
    fence: Option<(Backend, &Fence)>,
) -> StoreResult<Box<dyn IngestBatch>> {
    Ok(Box::new(SqlIngestBatch {
        tx: pool.begin().await?,
        fence: fence.map(|(b, f)| (b, f.clone())),
    }))
}

/// Inbound emails stored in one transaction (see [`IngestBatch`]).
struct SqlIngestBatch {
    tx: AnyTx,
    /// Checked just before the commit: a batch whose lease changed hands
    /// meanwhile is rolled back whole, and the new owner fetches it again.
    fence: Option<(Backend, Fence)>,
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

    async fn sender_activity(
        &mut self,
        mailbox: &MailboxName,
        sender: &EmailAddress,
        since_ms: i64,
    ) -> StoreResult<SenderActivity> {
        let conn: &mut AnyConnection = &mut self.tx;
        let recent: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM emails WHERE mailbox = $1 AND from_addr = $2 AND direction = 'inbound' AND stored_at >= $3",
        )
        .bind(mailbox.as_str())
        .bind(sender.as_str())
        .bind(since_ms)
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
        let last_quiet_ms: Option<i64> = sqlx::query(
            "SELECT MAX(last_at) AS at FROM mail_loops WHERE mailbox = $1 AND sender = $2",
        )
        .bind(mailbox.as_str())
        .bind(sender.as_str())
        .fetch_one(&mut *conn)
        .await?
        .try_get("at")?;
        let latest_ticket = sqlx::query(
            "SELECT ticket_id FROM emails WHERE mailbox = $1 AND from_addr = $2 AND direction = 'inbound' ORDER BY id DESC LIMIT 1",
        )
        .bind(mailbox.as_str())
        .bind(sender.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get::<i64, _>("ticket_id"))
        .transpose()?
        .map(TicketId::new);
        Ok(SenderActivity {
            facts: LoopFacts {
                recent: u32::try_from(recent).unwrap_or(u32::MAX),
                last_quiet_ms,
            },
            latest_ticket,
        })
    }

    async fn record_loop(&mut self, record: LoopRecord) -> StoreResult<()> {
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

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        if let Some((backend, fence)) = &self.fence {
            check_fence(&mut self.tx, *backend, fence).await?;
        }
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
            upsert_checkpoint(&mut **tx, &new.mailbox, FolderRole::Inbox, cp, new.now_ms).await?;
        }
        return Ok(Recorded::Duplicate);
    }
    let customer = Actor::Customer(new.email.from.address.clone());
    let mut assigned = Assigned::None;
    let (ticket, reopened, is_new, set_aside) = match &new.destination {
        Destination::New { token } => {
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
            let row = sqlx::query("SELECT status, owner, version FROM tickets WHERE id = $1")
                .bind(ticket.get())
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| {
                    corrupt("tickets", format!("follow-up for missing ticket {ticket}"))
                })?;
            let state = state_from_row(&row)?;
            let set_aside = state.is_set_aside();
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
        insert_job(
            tx,
            Some(ticket),
            &JobSpec::ChatPost {
                platform: *platform,
                email_id,
                room,
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
        // After the root in the platform's lane: the thread it goes to exists.
        if let Some(spec) = assigned.notice(*platform) {
            insert_job(tx, Some(ticket), &spec, new.now_ms, new.now_ms).await?;
        }
    }
    // A customer's mail wakes a snoozed ticket, told after the mail's post.
    if !is_new && new.automatic.is_none() {
        super::snooze::wake_on_reply(tx, ticket, post_to, new.now_ms).await?;
    }
    if let Some(cp) = new.checkpoint {
        upsert_checkpoint(&mut **tx, &new.mailbox, FolderRole::Inbox, cp, new.now_ms).await?;
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

fn push_unique(v: &mut Vec<i64>, id: i64) {
    if !v.contains(&id) {
        v.push(id);
    }
}
