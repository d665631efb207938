//! SLA clocks: the facts a clock is computed from, kept by the flows that
//! change them (a customer mail, an answer, a status change; each in the
//! flow's own transaction), and the markers that make a nudge and a breach
//! said once each. Tables: `sla_tickets`, `sla_pauses`, `sla_marks`.

use sqlx::{AnyPool, Row};

use super::audit::insert_audit;
use super::outbox::insert_job;
use super::{AnyTx, corrupt};
use crate::domain::ids::{Actor, TicketId};
use crate::domain::ticket::Status;
use crate::store::{Job, JobSpec, SlaFiring, SlaMark, SlaRecord, StoreResult};

/// A customer mail arrived (not automatic): it waits for an answer, unless
/// an earlier one already does (the clock runs from the first).
pub(super) async fn customer_wrote(
    tx: &mut AnyTx,
    ticket: TicketId,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sla_tickets (ticket_id, awaiting_since) VALUES ($1, $2) \
         ON CONFLICT (ticket_id) DO UPDATE SET awaiting_since = COALESCE(sla_tickets.awaiting_since, excluded.awaiting_since)",
    )
    .bind(ticket.get())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A teammate answered (a reply sent, or one found in Sent): nothing waits.
pub(super) async fn answered(tx: &mut AnyTx, ticket: TicketId, now_ms: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sla_tickets (ticket_id, awaiting_since, replied_at) VALUES ($1, NULL, $2) \
         ON CONFLICT (ticket_id) DO UPDATE SET awaiting_since = NULL, replied_at = excluded.replied_at",
    )
    .bind(ticket.get())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A ticket's status changed: entering pending starts a pause, leaving it
/// ends the open one.
pub(super) async fn status_changed(
    tx: &mut AnyTx,
    ticket: TicketId,
    before: Status,
    after: Status,
    now_ms: i64,
) -> StoreResult<()> {
    match (before == Status::Pending, after == Status::Pending) {
        (false, true) => {
            sqlx::query("INSERT INTO sla_pauses (ticket_id, started_at) VALUES ($1, $2)")
                .bind(ticket.get())
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
        }
        (true, false) => {
            sqlx::query(
                "UPDATE sla_pauses SET ended_at = $1 WHERE ticket_id = $2 AND ended_at IS NULL",
            )
            .bind(now_ms)
            .bind(ticket.get())
            .execute(&mut **tx)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

pub(super) async fn record(pool: &AnyPool, ticket: TicketId) -> StoreResult<SlaRecord> {
    let row = sqlx::query("SELECT awaiting_since FROM sla_tickets WHERE ticket_id = $1")
        .bind(ticket.get())
        .fetch_optional(pool)
        .await?;
    let pauses = sqlx::query(
        "SELECT started_at, ended_at FROM sla_pauses WHERE ticket_id = $1 ORDER BY started_at, id",
    )
    .bind(ticket.get())
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("started_at")?, r.try_get("ended_at")?)))
    .collect::<StoreResult<Vec<(i64, Option<i64>)>>>()?;
    let marks = sqlx::query("SELECT clock_start, mark FROM sla_marks WHERE ticket_id = $1")
        .bind(ticket.get())
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            let mark: String = r.try_get("mark")?;
            let mark = SlaMark::parse(&mark)
                .ok_or_else(|| corrupt("sla_marks", format!("unknown mark {mark:?}")))?;
            Ok((r.try_get("clock_start")?, mark))
        })
        .collect::<StoreResult<Vec<(i64, SlaMark)>>>()?;
    Ok(SlaRecord {
        awaiting_since_ms: match &row {
            Some(r) => r.try_get("awaiting_since")?,
            None => None,
        },
        tracked: row.is_some(),
        pauses,
        marks,
    })
}

/// The lane of an SLA timer: its own, so a timer due in hours never holds
/// up a chat post (chat jobs share one lane per platform).
fn timer_pending(ticket: TicketId, at_ms: i64) -> (JobSpec, String) {
    let spec = JobSpec::SlaCheck { due_ms: at_ms };
    let lane = spec.lane(Some(ticket));
    (spec, lane)
}

/// Queues an SLA check of `ticket` due at `at_ms` unless one is pending
/// for that instant. True if queued.
pub(super) async fn schedule_on(
    tx: &mut AnyTx,
    ticket: TicketId,
    at_ms: i64,
    now_ms: i64,
) -> StoreResult<bool> {
    let (spec, lane) = timer_pending(ticket, at_ms);
    let pending = sqlx::query("SELECT 1 AS one FROM outbox WHERE lane = $1 AND state = 'pending'")
        .bind(lane)
        .fetch_optional(&mut **tx)
        .await?;
    if pending.is_some() {
        return Ok(false);
    }
    insert_job(tx, Some(ticket), &spec, at_ms, now_ms).await?;
    Ok(true)
}

pub(super) async fn schedule(
    pool: &AnyPool,
    ticket: TicketId,
    at_ms: i64,
    now_ms: i64,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    let queued = schedule_on(&mut tx, ticket, at_ms, now_ms).await?;
    tx.commit().await?;
    Ok(queued)
}

/// Ends an SLA check: sets each firing's mark and, only where it was not
/// set yet, queues its jobs; queues the next check; marks the check done;
/// all in one transaction. A check no longer in flight (this write already
/// happened) changes nothing. Returns the marks set now.
pub(super) async fn settle(
    pool: &AnyPool,
    job: &Job,
    firings: &[SlaFiring],
    next_check_ms: Option<i64>,
    now_ms: i64,
) -> StoreResult<Vec<SlaMark>> {
    let Some(ticket) = job.ticket else {
        return Err(corrupt(
            "outbox",
            format!("SLA check {} has no ticket", job.id),
        ));
    };
    let mut tx = pool.begin().await?;
    let taken = sqlx::query(
        "UPDATE outbox SET state = 'done', last_error = NULL, updated_at = $1 WHERE id = $2 AND state = 'in_flight'",
    )
    .bind(now_ms)
    .bind(job.id)
    .execute(&mut *tx)
    .await?;
    if taken.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(Vec::new());
    }
    let mut set = Vec::new();
    for f in firings {
        let marked = sqlx::query(
            "INSERT INTO sla_marks (ticket_id, clock_start, mark, marked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (ticket_id, clock_start, mark) DO NOTHING",
        )
        .bind(ticket.get())
        .bind(f.clock_start_ms)
        .bind(f.mark.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 1 {
            for spec in &f.jobs {
                insert_job(&mut tx, Some(ticket), spec, now_ms, now_ms).await?;
            }
            let action = match f.mark {
                SlaMark::Nudge => "sla-nudge",
                SlaMark::Breach => "sla-breach",
            };
            let details = format!("clock started at {} (Unix ms)", f.clock_start_ms);
            insert_audit(
                &mut tx,
                Some(ticket),
                &Actor::System,
                action,
                &details,
                now_ms,
            )
            .await?;
            set.push(f.mark);
        }
    }
    if let Some(at) = next_check_ms {
        schedule_on(&mut tx, ticket, at, now_ms).await?;
    }
    tx.commit().await?;
    Ok(set)
}
