//! The dashboard's sign-in: one-time links and the sessions they open,
//! both kept as hashes. Opening a link is a conditional update (`used_at IS
//! NULL AND expires_at > now`): of two opens of one link exactly one wins,
//! and the session and the audit line land in the same transaction.
//! Tables: `web_links`, `web_sessions`.
//!
//! The queue: the waiting tickets with their tags, chat threads and SLA
//! facts in five queries however many tickets wait (`tickets`,
//! `ticket_tags`, `chat_threads`, `sla_tickets`, `sla_pauses`, `sla_marks`).

use std::collections::HashMap;

use sqlx::{AnyPool, Row};

use super::audit::insert_audit;
use super::corrupt;
use super::tickets::tagged_tickets;
use crate::domain::chat::{ChatThread, Platform};
use crate::domain::ids::{Actor, Agent, Tag};
use crate::domain::web::{Redeemed, SecretHash};
use crate::store::{NewWebLink, NewWebSession, QueueTicket, SlaMark, SlaRecord, StoreResult};

pub(super) async fn issue_web_link(
    pool: &AnyPool,
    link: &NewWebLink,
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    // Links and sessions past their expiry can never be used again; they
    // go here, where a new one is written anyway, so no sweeper is needed.
    sqlx::query("DELETE FROM web_links WHERE expires_at <= $1")
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO web_links (token_hash, agent, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(link.token.to_hex())
    .bind(link.agent.as_str())
    .bind(now_ms)
    .bind(link.expires_at_ms)
    .execute(&mut *tx)
    .await?;
    let valid_secs = (link.expires_at_ms - now_ms).max(0) / 1000;
    let details = format!("via {}, valid {valid_secs} s", link.via);
    let actor = Actor::Agent(link.agent.clone());
    insert_audit(
        &mut tx,
        None,
        &actor,
        "dashboard-link-issued",
        &details,
        now_ms,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn redeem_web_link(
    pool: &AnyPool,
    token: &SecretHash,
    session: &NewWebSession,
    now_ms: i64,
) -> StoreResult<Redeemed> {
    let mut tx = pool.begin().await?;
    let hash = token.to_hex();
    let taken = sqlx::query(
        "UPDATE web_links SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now_ms)
    .bind(&hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let row = sqlx::query("SELECT agent, expires_at, used_at FROM web_links WHERE token_hash = $1")
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Ok(Redeemed::Unknown);
    };
    if taken == 0 {
        // Used wins over expired: a reused link is the more telling answer.
        let used: Option<i64> = row.try_get("used_at")?;
        return Ok(if used.is_some() {
            Redeemed::AlreadyUsed
        } else {
            Redeemed::Expired
        });
    }
    let agent: String = row.try_get("agent")?;
    let agent = Agent::parse(&agent).map_err(|e| corrupt("web_links", e.reason))?;
    sqlx::query(
        "INSERT INTO web_sessions (id_hash, agent, created_at, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(session.id.to_hex())
    .bind(agent.as_str())
    .bind(now_ms)
    .bind(session.expires_at_ms)
    .execute(&mut *tx)
    .await?;
    insert_audit(
        &mut tx,
        None,
        &Actor::Agent(agent.clone()),
        "dashboard-signed-in",
        "",
        now_ms,
    )
    .await?;
    tx.commit().await?;
    Ok(Redeemed::SignedIn(agent))
}

pub(super) async fn web_session(
    pool: &AnyPool,
    id: &SecretHash,
    now_ms: i64,
) -> StoreResult<Option<Agent>> {
    let row = sqlx::query("SELECT agent FROM web_sessions WHERE id_hash = $1 AND expires_at > $2")
        .bind(id.to_hex())
        .bind(now_ms)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        let agent: String = r.try_get("agent")?;
        Agent::parse(&agent).map_err(|e| corrupt("web_sessions", e.reason))
    })
    .transpose()
}

/// The ids of the waiting tickets, as a subquery the other tables join.
const WAITING_IDS: &str = "SELECT id FROM tickets WHERE status IN ('open', 'claimed', 'pending')";

pub(super) async fn queue_tickets(pool: &AnyPool, limit: u32) -> StoreResult<Vec<QueueTicket>> {
    let rows = sqlx::query(
        "SELECT t.*, g.tag AS tag_name FROM \
         (SELECT * FROM tickets WHERE status IN ('open', 'claimed', 'pending') \
          ORDER BY created_at, id LIMIT $1) t \
         LEFT JOIN ticket_tags g ON g.ticket_id = t.id ORDER BY t.created_at, t.id",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let tickets = tagged_tickets(&rows)?;
    let mut threads: HashMap<i64, Vec<ChatThread>> = HashMap::new();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT ticket_id, platform, room, thread_ref FROM chat_threads \
         WHERE ticket_id IN ({WAITING_IDS}) ORDER BY ticket_id, platform"
    )))
    .fetch_all(pool)
    .await?;
    for r in rows {
        let platform: String = r.try_get("platform")?;
        let platform = Platform::parse(&platform)
            .ok_or_else(|| corrupt("chat_threads", format!("unknown platform {platform:?}")))?;
        threads
            .entry(r.try_get("ticket_id")?)
            .or_default()
            .push(ChatThread {
                platform,
                room: r.try_get("room")?,
                thread_ref: r.try_get("thread_ref")?,
            });
    }
    let mut sla: HashMap<i64, SlaRecord> = HashMap::new();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT ticket_id, awaiting_since FROM sla_tickets WHERE ticket_id IN ({WAITING_IDS})"
    )))
    .fetch_all(pool)
    .await?;
    for r in rows {
        let rec = sla.entry(r.try_get("ticket_id")?).or_default();
        rec.tracked = true;
        rec.awaiting_since_ms = r.try_get("awaiting_since")?;
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT ticket_id, started_at, ended_at FROM sla_pauses \
         WHERE ticket_id IN ({WAITING_IDS}) ORDER BY ticket_id, started_at, id"
    )))
    .fetch_all(pool)
    .await?;
    for r in rows {
        sla.entry(r.try_get("ticket_id")?)
            .or_default()
            .pauses
            .push((r.try_get("started_at")?, r.try_get("ended_at")?));
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT ticket_id, clock_start, mark FROM sla_marks WHERE ticket_id IN ({WAITING_IDS})"
    )))
    .fetch_all(pool)
    .await?;
    for r in rows {
        let mark: String = r.try_get("mark")?;
        let mark = SlaMark::parse(&mark)
            .ok_or_else(|| corrupt("sla_marks", format!("unknown mark {mark:?}")))?;
        sla.entry(r.try_get("ticket_id")?)
            .or_default()
            .marks
            .push((r.try_get("clock_start")?, mark));
    }
    Ok(tickets
        .into_iter()
        .map(|ticket| {
            let id = ticket.id.get();
            QueueTicket {
                threads: threads.remove(&id).unwrap_or_default(),
                sla: sla.remove(&id).unwrap_or_default(),
                ticket,
            }
        })
        .collect())
}

pub(super) async fn owners_and_tags(pool: &AnyPool) -> StoreResult<(Vec<Agent>, Vec<Tag>)> {
    let owners =
        sqlx::query("SELECT DISTINCT owner FROM tickets WHERE owner IS NOT NULL ORDER BY owner")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                let o: String = r.try_get("owner")?;
                Agent::parse(&o).map_err(|e| corrupt("tickets", e.reason))
            })
            .collect::<StoreResult<Vec<Agent>>>()?;
    let tags = sqlx::query("SELECT DISTINCT tag FROM ticket_tags ORDER BY tag")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            let t: String = r.try_get("tag")?;
            Tag::parse(&t).map_err(|e| corrupt("ticket_tags", e))
        })
        .collect::<StoreResult<Vec<Tag>>>()?;
    Ok((owners, tags))
}
