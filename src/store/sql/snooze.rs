//! Snoozes: setting one (with its wake-up timer), clearing one (a timer, a
//! teammate, or the customer's mail inside the ingest transaction). Columns
//! `tickets.snoozed_until`, `snooze_until_reply`, `snoozed_by`.

use sqlx::AnyPool;

use super::AnyTx;
use super::audit::insert_audit;
use super::outbox::insert_job;
use super::tickets::{snooze_from_row, state_from_row};
use crate::domain::chat::Platform;
use crate::domain::ids::{Actor, TicketId};
use crate::domain::snooze::{Snooze, Wake, wake_mentions, wake_text};
use crate::store::{JobSpec, SnoozeSet, StoreResult, WakeIf};

const SNOOZE_COLUMNS: &str = "status, owner, snoozed_until, snooze_until_reply, snoozed_by";

pub(super) async fn snooze(
    pool: &AnyPool,
    ticket: TicketId,
    snooze: &Snooze,
    details: &str,
    now_ms: i64,
) -> StoreResult<SnoozeSet> {
    let mut tx = pool.begin().await?;
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SNOOZE_COLUMNS} FROM tickets WHERE id = $1"
    )))
    .bind(ticket.get())
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(SnoozeSet::NoSuchTicket);
    };
    let state = state_from_row(&row)?;
    if state.is_set_aside() || state.status() == crate::domain::ticket::Status::Closed {
        return Ok(SnoozeSet::NotInQueue(state.status()));
    }
    let replaced = snooze_from_row(&row)?;
    let (until_ms, until_reply) = snooze.until.to_columns();
    sqlx::query(
        "UPDATE tickets SET snoozed_until = $1, snooze_until_reply = $2, snoozed_by = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(until_ms)
    .bind(i64::from(until_reply))
    .bind(snooze.by.as_str())
    .bind(now_ms)
    .bind(ticket.get())
    .execute(&mut *tx)
    .await?;
    let actor = Actor::Agent(snooze.by.clone());
    insert_audit(&mut tx, Some(ticket), &actor, "snoozed", details, now_ms).await?;
    if let Some(due_ms) = snooze.until.wake_at_ms() {
        let timer = JobSpec::SnoozeWake { due_ms };
        insert_job(&mut tx, Some(ticket), &timer, due_ms, now_ms).await?;
    }
    tx.commit().await?;
    Ok(SnoozeSet::Snoozed { replaced })
}

pub(super) async fn wake(
    pool: &AnyPool,
    ticket: TicketId,
    when: WakeIf,
    actor: &Actor,
    details: &str,
    notices: &[JobSpec],
    now_ms: i64,
) -> StoreResult<Option<Snooze>> {
    let mut tx = pool.begin().await?;
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SNOOZE_COLUMNS} FROM tickets WHERE id = $1"
    )))
    .bind(ticket.get())
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let Some(snooze) = snooze_from_row(&row)? else {
        return Ok(None);
    };
    // The condition is checked again on the row itself: of a timer and a
    // teammate (or the customer) waking the ticket at once, one clears it.
    let cleared = match when {
        WakeIf::Snoozed => sqlx::query(
            "UPDATE tickets SET snoozed_until = NULL, snooze_until_reply = 0, snoozed_by = NULL, updated_at = $1 \
             WHERE id = $2 AND snoozed_until IS NOT NULL",
        )
        .bind(now_ms)
        .bind(ticket.get()),
        WakeIf::DueAt(due_ms) => sqlx::query(
            "UPDATE tickets SET snoozed_until = NULL, snooze_until_reply = 0, snoozed_by = NULL, updated_at = $1 \
             WHERE id = $2 AND snoozed_until = $3 AND snooze_until_reply = 0",
        )
        .bind(now_ms)
        .bind(ticket.get())
        .bind(due_ms),
    }
    .execute(&mut *tx)
    .await?;
    if cleared.rows_affected() != 1 {
        return Ok(None);
    }
    insert_audit(&mut tx, Some(ticket), actor, "woke", details, now_ms).await?;
    for spec in notices {
        insert_job(&mut tx, Some(ticket), spec, now_ms, now_ms).await?;
    }
    tx.commit().await?;
    Ok(Some(snooze))
}

/// A customer's mail wakes a snoozed ticket early, inside the transaction
/// that stores the mail, and tells the thread on each of `post_to` after
/// the mail's own post.
pub(super) async fn wake_on_reply(
    tx: &mut AnyTx,
    ticket: TicketId,
    post_to: &[Platform],
    now_ms: i64,
) -> StoreResult<()> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SNOOZE_COLUMNS} FROM tickets WHERE id = $1"
    )))
    .bind(ticket.get())
    .fetch_one(&mut **tx)
    .await?;
    let Some(snooze) = snooze_from_row(&row)? else {
        return Ok(());
    };
    let state = state_from_row(&row)?;
    sqlx::query(
        "UPDATE tickets SET snoozed_until = NULL, snooze_until_reply = 0, snoozed_by = NULL, updated_at = $1 WHERE id = $2",
    )
    .bind(now_ms)
    .bind(ticket.get())
    .execute(&mut **tx)
    .await?;
    let wake = Wake::CustomerReplied;
    insert_audit(
        tx,
        Some(ticket),
        &Actor::System,
        "woke",
        &wake.details(),
        now_ms,
    )
    .await?;
    let mention = wake_mentions(&snooze, state.owner());
    let text = wake_text(ticket, &wake, &mention);
    for platform in post_to {
        let spec = JobSpec::ChatMention {
            platform: *platform,
            text: text.clone(),
            mentions: mention.iter().map(|a| a.as_str().to_owned()).collect(),
        };
        insert_job(tx, Some(ticket), &spec, now_ms, now_ms).await?;
    }
    Ok(())
}
