//! Outbound replies: queued (email row and send job together), cancelled
//! while still waiting, and settled once the send went out or failed.
//! Tables: `emails`, `outbox` (and `audit_log` through its helper).

use sqlx::{AnyPool, Row};

use super::audit::insert_audit;
use super::corrupt;
use super::emails::{first_piece, insert_later_pieces, whole_raw};
use super::outbox::insert_job;
use crate::domain::chat::Platform;
use crate::domain::ids::{Actor, MailboxName, MessageId, TicketId};
use crate::store::{EmailState, Job, JobSpec, NewReply, OutgoingMail, StoreResult};

pub(super) async fn queue_reply(pool: &AnyPool, reply: NewReply) -> StoreResult<i64> {
    let mut tx = pool.begin().await?;
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

pub(super) async fn outgoing(pool: &AnyPool, email_id: i64) -> StoreResult<Option<OutgoingMail>> {
    let Some(row) = sqlx::query("SELECT id, ticket_id, mailbox, message_id, raw, raw_size, state FROM emails WHERE id = $1 AND direction = 'outbound'")
        .bind(email_id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let ticket = TicketId::new(row.try_get("ticket_id")?);
    let answers = sqlx::query("SELECT message_id FROM emails WHERE ticket_id = $1 AND direction = 'inbound' AND id < $2 ORDER BY id DESC LIMIT 1")
        .bind(ticket.get())
        .bind(email_id)
        .fetch_optional(pool)
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
        raw: whole_raw(pool, email_id, &row).await?,
        state: EmailState::parse(&state)
            .ok_or_else(|| corrupt("emails", format!("state {state:?}")))?,
        answers,
    }))
}

pub(super) async fn cancel_reply(
    pool: &AnyPool,
    email_id: i64,
    actor: &Actor,
    now_ms: i64,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
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

pub(super) async fn reply_sent(
    pool: &AnyPool,
    job: &Job,
    email_id: i64,
    notify: &[Platform],
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
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
    set_first_response(&mut tx, ticket, now_ms).await?;
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

pub(super) async fn reply_failed(
    pool: &AnyPool,
    job: &Job,
    email_id: i64,
    state: EmailState,
    error: &str,
    notify: &[Platform],
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    let job_state = if state == EmailState::Uncertain {
        "uncertain"
    } else {
        "failed"
    };
    // Only while the job is in flight, as for `reply_sent`: a retry of
    // this write after a commit whose answer was lost changes nothing (no
    // second audit line or notice).
    let taken = sqlx::query(
        "UPDATE outbox SET state = $1, last_error = $2, updated_at = $3 WHERE id = $4 AND state = 'in_flight'",
    )
    .bind(job_state)
    .bind(error)
    .bind(now_ms)
    .bind(job.id)
    .execute(&mut *tx)
    .await?;
    if taken.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(());
    }
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

/// Records an answer: the ticket's first response, unless it has one,
/// and that nothing waits for an answer now.
pub(super) async fn set_first_response(
    tx: &mut super::AnyTx,
    ticket: TicketId,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE tickets SET first_response_at = $1 WHERE id = $2 AND first_response_at IS NULL",
    )
    .bind(now_ms)
    .bind(ticket.get())
    .execute(&mut **tx)
    .await?;
    // Any answer, first or not, stops the SLA clock that runs.
    super::sla::answered(tx, ticket, now_ms).await?;
    Ok(())
}
