//! Tickets: one or a list, and ticket events applied under the version
//! check that serves as the claim lock. Tables: `tickets`, `ticket_tags`.

use std::collections::BTreeSet;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::audit::insert_audit;
use super::outbox::insert_job;
use super::{AnyTx, corrupt};
use crate::domain::chat::Platform;
use crate::domain::ids::{Actor, Agent, EmailAddress, MailboxName, Tag, TicketId, TicketToken};
use crate::domain::routing::Priority;
use crate::domain::snooze::{Snooze, SnoozeUntil};
use crate::domain::ticket::{Refusal, Status, Ticket, TicketEvent, TicketState};
use crate::store::{Applied, JobSpec, StoreError, StoreResult, TicketFilter, TicketRecord};

/// How often an optimistic update is retried after losing a race before the
/// caller is told the database is too busy.
const APPLY_ATTEMPTS: usize = 16;

pub(super) async fn ticket(pool: &AnyPool, id: TicketId) -> StoreResult<Option<TicketRecord>> {
    // One round trip: a row per tag (or one with no tag). The outbox
    // reads a ticket before every chat post.
    let rows = sqlx::query(
        "SELECT t.*, g.tag AS tag_name FROM tickets t \
         LEFT JOIN ticket_tags g ON g.ticket_id = t.id WHERE t.id = $1",
    )
    .bind(id.get())
    .fetch_all(pool)
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

pub(super) async fn list_tickets(
    pool: &AnyPool,
    filter: &TicketFilter,
) -> StoreResult<Vec<TicketRecord>> {
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
    match filter.snoozed {
        Some(true) => sql.push_str(" AND snoozed_until IS NOT NULL"),
        Some(false) => sql.push_str(" AND snoozed_until IS NULL"),
        None => {}
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", next()));
    // The tags come in the same query (a row per tag), not one query per
    // ticket: the limit applies to the tickets, inside.
    let sql = format!(
        "SELECT t.*, g.tag AS tag_name FROM ({sql}) t \
         LEFT JOIN ticket_tags g ON g.ticket_id = t.id ORDER BY t.id DESC"
    );
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
    tagged_tickets(&q.fetch_all(pool).await?)
}

/// Tickets from rows of `tickets` joined with their tags (`tag_name`, NULL
/// for a ticket without any), a ticket's rows next to each other.
pub(super) fn tagged_tickets(rows: &[AnyRow]) -> StoreResult<Vec<TicketRecord>> {
    let mut out: Vec<TicketRecord> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let tag = row
            .try_get::<Option<String>, _>("tag_name")?
            .map(|t| Tag::parse(&t).map_err(|e| corrupt("ticket_tags", e)))
            .transpose()?;
        match out.last_mut() {
            Some(last) if last.id.get() == id => last.tags.extend(tag),
            _ => out.push(ticket_from_row(row, tag.into_iter().collect())?),
        }
    }
    Ok(out)
}

pub(super) async fn apply(
    pool: &AnyPool,
    ticket: TicketId,
    actor: &Actor,
    event: &TicketEvent,
    notify: &[Platform],
    now_ms: i64,
) -> StoreResult<Applied> {
    for _ in 0..APPLY_ATTEMPTS {
        let mut tx = pool.begin().await?;
        match apply_on(&mut tx, ticket, actor, event, notify, now_ms).await? {
            Some(applied @ Applied::Changed { .. }) => {
                tx.commit().await?;
                return Ok(applied);
            }
            Some(applied) => return Ok(applied),
            None => {
                tx.rollback().await?;
                continue;
            }
        }
    }
    Err(StoreError::Unavailable(sqlx::Error::Protocol(format!(
        "ticket {ticket} kept changing under {APPLY_ATTEMPTS} attempts"
    ))))
}

/// Decides and writes one ticket event inside `tx`: the state machine's
/// answer, the row (under its version check), the tag rows, the audit line
/// and a status refresh for each of `notify`. `None`: someone changed the
/// ticket since it was read; the caller rolls back and decides again. Also
/// what an ingest uses to apply a routing rule's assignment and tags in the
/// transaction that creates the ticket.
pub(super) async fn apply_on(
    tx: &mut AnyTx,
    ticket: TicketId,
    actor: &Actor,
    event: &TicketEvent,
    notify: &[Platform],
    now_ms: i64,
) -> StoreResult<Option<Applied>> {
    let Some(row) = sqlx::query("SELECT status, owner, version FROM tickets WHERE id = $1")
        .bind(ticket.get())
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(Some(Applied::NoSuchTicket));
    };
    let version: i64 = row.try_get("version")?;
    let state = state_from_row(&row)?;
    let tags = load_tags(&mut **tx, ticket).await?;
    let current = Ticket { state, tags };
    let mut took_over = false;
    let next = match current.apply(event) {
        Ok(next) => next,
        // A claim over an owner that only a pick gave, untouched since:
        // the teammate who reaches for the ticket takes it.
        Err(refusal @ Refusal::AlreadyClaimed { .. }) => {
            let TicketEvent::Claim(a) = event else {
                return Ok(Some(Applied::Refused(refusal)));
            };
            let picked = super::assign::standing_pick(tx, ticket).await?;
            if picked.is_none() || picked.as_ref() != current.state.owner() {
                return Ok(Some(Applied::Refused(refusal)));
            }
            took_over = true;
            match current.apply(&TicketEvent::Assign(a.clone())) {
                Ok(next) => next,
                Err(_) => return Ok(Some(Applied::Refused(refusal))),
            }
        }
        Err(refusal) => return Ok(Some(Applied::Refused(refusal))),
    };
    if next == current {
        return Ok(Some(Applied::Unchanged));
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
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() != 1 {
        return Ok(None);
    }
    super::sla::status_changed(
        tx,
        ticket,
        current.state.status(),
        next.state.status(),
        now_ms,
    )
    .await?;
    let details = match event {
        TicketEvent::AddTag(tag) => {
            sqlx::query("INSERT INTO ticket_tags (ticket_id, tag) VALUES ($1, $2) ON CONFLICT (ticket_id, tag) DO NOTHING")
                .bind(ticket.get())
                .bind(tag.as_str())
                .execute(&mut **tx)
                .await?;
            tag.to_string()
        }
        TicketEvent::RemoveTag(tag) => {
            sqlx::query("DELETE FROM ticket_tags WHERE ticket_id = $1 AND tag = $2")
                .bind(ticket.get())
                .bind(tag.as_str())
                .execute(&mut **tx)
                .await?;
            tag.to_string()
        }
        _ if took_over => format!(
            "{} → {} (over the auto-assignment)",
            current.state, next.state
        ),
        _ => format!("{} → {}", current.state, next.state),
    };
    // Once a teammate changes the ticket, its owner is theirs to keep: a
    // later claim by someone else is refused as usual.
    if matches!(actor, Actor::Agent(_)) {
        super::assign::pick_taken_over(tx, ticket).await?;
    }
    insert_audit(tx, Some(ticket), actor, event.action(), &details, now_ms).await?;
    for p in notify {
        insert_job(
            tx,
            Some(ticket),
            &JobSpec::ChatStatus { platform: *p },
            now_ms,
            now_ms,
        )
        .await?;
    }
    Ok(Some(Applied::Changed {
        before: current.state,
        after: next.state,
    }))
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
        priority: {
            let p: String = row.try_get("priority")?;
            Priority::parse(&p).ok_or_else(|| corrupt("tickets", format!("priority {p:?}")))?
        },
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
        last_customer_at_ms: row.try_get("last_customer_at")?,
        first_response_at_ms: row.try_get("first_response_at")?,
        snooze: snooze_from_row(row)?,
    })
}

/// A ticket's snooze from `snoozed_until`, `snooze_until_reply` and
/// `snoozed_by`.
pub(super) fn snooze_from_row(row: &AnyRow) -> StoreResult<Option<Snooze>> {
    let Some(until_ms) = row.try_get::<Option<i64>, _>("snoozed_until")? else {
        return Ok(None);
    };
    let until_reply: i64 = row.try_get("snooze_until_reply")?;
    let by: Option<String> = row.try_get("snoozed_by")?;
    let by = by.ok_or_else(|| corrupt("tickets", "snoozed_until without snoozed_by"))?;
    Ok(Some(Snooze {
        until: SnoozeUntil::from_columns(until_ms, until_reply != 0)
            .map_err(|e| corrupt("tickets", e))?,
        by: Agent::parse(&by).map_err(|e| corrupt("tickets", e))?,
    }))
}

/// A ticket's state from its `status` and `owner` columns.
pub(super) fn state_from_row(row: &AnyRow) -> StoreResult<TicketState> {
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
