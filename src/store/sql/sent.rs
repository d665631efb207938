//! Replies found in the Sent folder: matched to a ticket by the ids they
//! answer, stored as the ticket's outbound email with what a teammate's
//! reply brings (pending, first response, audit line, chat posts), and the
//! Sent checkpoint advanced, in one transaction.
//! Tables: `emails`, `participants`, `tickets` (and, through their files'
//! helpers, `audit_log`, `outbox`, `checkpoints`).

use std::collections::BTreeSet;

use sqlx::{AnyPool, Row};

use super::Backend;
use super::audit::insert_audit;
use super::checkpoints::upsert_checkpoint;
use super::cluster::check_fence;
use super::emails::{first_piece, insert_later_pieces};
use super::ingest::add_participant;
use super::outbox::insert_job;
use super::replies::set_first_response;
use super::tickets::state_from_row;
use super::{AnyTx, corrupt};
use crate::domain::cluster::Fence;
use crate::domain::ids::{Actor, MailboxName, MessageId, TicketId};
use crate::domain::mailbox::FolderRole;
use crate::domain::ticket::{Ticket, TicketEvent};
use crate::store::{JobSpec, SentBatch, SentMail, SentRecorded, StoreResult};

pub(super) async fn record_sent(
    pool: &AnyPool,
    fence: Option<(Backend, &Fence)>,
    batch: SentBatch,
) -> StoreResult<Vec<SentRecorded>> {
    let mut tx = pool.begin().await?;
    let mut out = Vec::with_capacity(batch.mails.len());
    for mail in batch.mails {
        let recorded =
            record_one(&mut tx, &batch.mailbox, mail, &batch.post_to, batch.now_ms).await?;
        out.push(recorded);
    }
    upsert_checkpoint(
        &mut *tx,
        &batch.mailbox,
        FolderRole::Sent,
        batch.checkpoint,
        batch.now_ms,
    )
    .await?;
    if let Some((backend, fence)) = fence {
        check_fence(&mut tx, backend, fence).await?;
    }
    tx.commit().await?;
    Ok(out)
}

async fn record_one(
    tx: &mut AnyTx,
    mailbox: &MailboxName,
    mut mail: SentMail,
    post_to: &[crate::domain::chat::Platform],
    now_ms: i64,
) -> StoreResult<SentRecorded> {
    // Any stored email with this Message-ID, whatever its content: mailroom
    // files its own replies in Sent, and a server may add headers on APPEND.
    let known = sqlx::query("SELECT 1 AS one FROM emails WHERE mailbox = $1 AND message_id = $2")
        .bind(mailbox.as_str())
        .bind(mail.message_id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    if known.is_some() {
        return Ok(SentRecorded::Known);
    }
    let Some(ticket) = answered_ticket(tx, mailbox, &mail.referenced).await? else {
        return Ok(SentRecorded::Unthreaded);
    };
    let raw = std::mem::take(&mut mail.raw);
    let row = sqlx::query(
        "INSERT INTO emails (mailbox, ticket_id, direction, message_id, content_hash, imap_uid, from_addr, from_name, subject, sent_at, stored_at, author, state, raw, raw_size) \
         VALUES ($1, $2, 'outbound', $3, $4, NULL, $5, $6, $7, $8, $9, NULL, 'sent', $10, $11) RETURNING id",
    )
    .bind(mailbox.as_str())
    .bind(ticket.get())
    .bind(mail.message_id.as_str())
    .bind(mail.content_hash.as_str())
    .bind(mail.from.address.as_str())
    .bind(mail.from.name.clone())
    .bind(&mail.subject)
    .bind(mail.sent_at)
    .bind(now_ms)
    .bind(first_piece(&raw))
    .bind(raw.len() as i64)
    .fetch_one(&mut **tx)
    .await?;
    let email_id: i64 = row.try_get("id")?;
    insert_later_pieces(tx, email_id, &raw).await?;
    drop(raw);
    for p in &mail.recipients {
        add_participant(tx, ticket, p).await?;
    }
    let actor = Actor::Mailbox(mail.written_by.address.clone());
    insert_audit(
        tx,
        Some(ticket),
        &actor,
        "replied-outside-mailroom",
        &format!(
            "<{}> by {}: {}",
            mail.message_id, mail.written_by, mail.subject
        ),
        now_ms,
    )
    .await?;
    set_first_response(tx, ticket, now_ms).await?;
    let now_pending = mark_pending(tx, ticket, &actor, now_ms).await?;
    for platform in post_to {
        let spec = JobSpec::ChatSentReply {
            platform: *platform,
            email_id,
        };
        insert_job(tx, Some(ticket), &spec, now_ms, now_ms).await?;
        if now_pending {
            let spec = JobSpec::ChatStatus {
                platform: *platform,
            };
            insert_job(tx, Some(ticket), &spec, now_ms, now_ms).await?;
        }
    }
    Ok(SentRecorded::Reply {
        ticket,
        email_id,
        now_pending,
    })
}

/// The ticket of the first referenced id that is a stored email of the
/// mailbox, inbound or outbound.
async fn answered_ticket(
    tx: &mut AnyTx,
    mailbox: &MailboxName,
    referenced: &[MessageId],
) -> StoreResult<Option<TicketId>> {
    for id in referenced {
        let row = sqlx::query(
            "SELECT ticket_id FROM emails WHERE mailbox = $1 AND message_id = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(mailbox.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = row {
            return Ok(Some(TicketId::new(row.try_get("ticket_id")?)));
        }
    }
    Ok(None)
}

/// A teammate answered: the ticket waits on the customer, as `!pending`
/// would have it. A closed ticket stays closed. True if the status changed.
async fn mark_pending(
    tx: &mut AnyTx,
    ticket: TicketId,
    actor: &Actor,
    now_ms: i64,
) -> StoreResult<bool> {
    let row = sqlx::query("SELECT status, owner FROM tickets WHERE id = $1")
        .bind(ticket.get())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| corrupt("tickets", format!("reply for missing ticket {ticket}")))?;
    let state = state_from_row(&row)?;
    let current = Ticket {
        state: state.clone(),
        tags: BTreeSet::new(),
    };
    let Ok(next) = current.apply(&TicketEvent::MarkPending) else {
        return Ok(false);
    };
    if next.state == state {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE tickets SET status = $1, owner = $2, version = version + 1, updated_at = $3 WHERE id = $4",
    )
    .bind(next.state.status().as_str())
    .bind(next.state.owner().map(|a| a.as_str().to_owned()))
    .bind(now_ms)
    .bind(ticket.get())
    .execute(&mut **tx)
    .await?;
    super::sla::status_changed(tx, ticket, state.status(), next.state.status(), now_ms).await?;
    insert_audit(
        tx,
        Some(ticket),
        actor,
        TicketEvent::MarkPending.action(),
        &format!("{state} → {}", next.state),
        now_ms,
    )
    .await?;
    Ok(true)
}
