//! Auto-assignment: the pick made inside the ingest transaction (the
//! cursor, each member's load, who is away, read and written there), the
//! away marks, and whether a ticket's owner is still an untouched pick (so
//! a claim may take it over). Tables: `assign_cursors`, `people_away`,
//! `auto_assignments`.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, AnyPool, Row};

use super::AnyTx;
use super::audit::insert_audit;
use crate::domain::assign::{AutoAssign, Pick, Standing, pick};
use crate::domain::ids::{Actor, Agent, TicketId};
use crate::store::{AwayMark, StoreResult};

/// The key of the lock row every pick upserts first.
const LOCK: &str = "*";

/// Picks the owner of a ticket just inserted in `tx` and records the turn.
/// Does not assign: the caller applies the event through the state machine.
pub(super) async fn pick_owner(
    tx: &mut AnyTx,
    ticket: TicketId,
    auto: &AutoAssign,
    now_ms: i64,
) -> StoreResult<Pick> {
    // Upserting the lock row first makes it the first row this pick writes:
    // on PostgreSQL a concurrent pick waits here until this transaction
    // ends, and then reads (READ COMMITTED, statement by statement) the
    // cursor and loads this one left. No read below can be stale.
    sqlx::query(
        "INSERT INTO assign_cursors (pool, last_person, turns, updated_at) VALUES ($1, NULL, 1, $2) \
         ON CONFLICT (pool) DO UPDATE SET turns = assign_cursors.turns + 1, updated_at = excluded.updated_at",
    )
    .bind(LOCK)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    let last: Option<String> =
        sqlx::query("SELECT last_person FROM assign_cursors WHERE pool = $1")
            .bind(&auto.pool)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.try_get::<Option<String>, _>("last_person"))
            .transpose()?
            .flatten();
    let standing = Standing {
        last,
        load: loads(&mut **tx, auto).await?,
        away: away_at(&mut **tx, now_ms)
            .await?
            .into_iter()
            .map(|m| {
                (
                    m.person,
                    m.until_ms
                        .and_then(|t| jiff::Timestamp::from_millisecond(t).ok()),
                )
            })
            .collect(),
    };
    let decided = pick(auto, &standing);
    match &decided {
        Pick::To { name, agent, why } => {
            sqlx::query(
                "INSERT INTO assign_cursors (pool, last_person, turns, updated_at) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (pool) DO UPDATE SET last_person = excluded.last_person, turns = assign_cursors.turns + 1, updated_at = excluded.updated_at",
            )
            .bind(&auto.pool)
            .bind(name)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO auto_assignments (ticket_id, pool, person, agent, standing, at) VALUES ($1, $2, $3, $4, 1, $5)",
            )
            .bind(ticket.get())
            .bind(&auto.pool)
            .bind(name)
            .bind(agent.as_str())
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            let details = format!("{name} ({agent}), {why}");
            insert_audit(
                tx,
                Some(ticket),
                &Actor::System,
                "auto-assigned",
                &details,
                now_ms,
            )
            .await?;
        }
        Pick::Nobody { why } => {
            insert_audit(
                tx,
                Some(ticket),
                &Actor::System,
                "auto-assign-skipped",
                why,
                now_ms,
            )
            .await?;
        }
    }
    Ok(decided)
}

/// Active tickets (claimed or pending) per candidate, under any of their ids.
async fn loads(conn: &mut AnyConnection, auto: &AutoAssign) -> StoreResult<BTreeMap<String, u32>> {
    let rows = sqlx::query(
        "SELECT owner, COUNT(*) AS n FROM tickets WHERE status IN ('claimed', 'pending') AND owner IS NOT NULL GROUP BY owner",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut by_owner: BTreeMap<String, u32> = BTreeMap::new();
    for r in rows {
        let n: i64 = r.try_get("n")?;
        by_owner.insert(r.try_get("owner")?, u32::try_from(n).unwrap_or(u32::MAX));
    }
    Ok(auto
        .candidates
        .iter()
        .map(|c| {
            let n = c
                .agents
                .iter()
                .map(|a| by_owner.get(a.as_str()).copied().unwrap_or(0))
                .fold(0u32, u32::saturating_add);
            (c.name.clone(), n)
        })
        .collect())
}

/// Away marks still running at `now_ms`.
async fn away_at(conn: &mut AnyConnection, now_ms: i64) -> StoreResult<Vec<AwayMark>> {
    let rows = sqlx::query(
        "SELECT person, since, until_at, set_by FROM people_away WHERE until_at IS NULL OR until_at > $1 ORDER BY person",
    )
    .bind(now_ms)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AwayMark {
                person: r.try_get("person")?,
                since_ms: r.try_get("since")?,
                until_ms: r.try_get("until_at")?,
                set_by: r.try_get("set_by")?,
            })
        })
        .collect()
}

pub(super) async fn away(pool: &AnyPool, now_ms: i64) -> StoreResult<Vec<AwayMark>> {
    let mut conn = pool.acquire().await?;
    away_at(&mut conn, now_ms).await
}

pub(super) async fn set_away(
    pool: &AnyPool,
    person: &str,
    until_ms: Option<i64>,
    actor: &Actor,
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO people_away (person, since, until_at, set_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (person) DO UPDATE SET since = excluded.since, until_at = excluded.until_at, set_by = excluded.set_by",
    )
    .bind(person)
    .bind(now_ms)
    .bind(until_ms)
    .bind(actor.to_stored())
    .execute(&mut *tx)
    .await?;
    let details = match until_ms.and_then(|t| jiff::Timestamp::from_millisecond(t).ok()) {
        Some(t) => format!("{person} until {}", t.strftime("%Y-%m-%d %H:%M UTC")),
        None => format!("{person} until !back"),
    };
    insert_audit(&mut tx, None, actor, "away", &details, now_ms).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends a person's away mark. False if they had none running.
pub(super) async fn set_back(
    pool: &AnyPool,
    person: &str,
    actor: &Actor,
    now_ms: i64,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    let gone = sqlx::query(
        "DELETE FROM people_away WHERE person = $1 AND (until_at IS NULL OR until_at > $2)",
    )
    .bind(person)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    // An expired mark is cleared too, quietly.
    sqlx::query("DELETE FROM people_away WHERE person = $1")
        .bind(person)
        .execute(&mut *tx)
        .await?;
    if gone > 0 {
        insert_audit(&mut tx, None, actor, "back", person, now_ms).await?;
    }
    tx.commit().await?;
    Ok(gone > 0)
}

/// The owner a pick gave `ticket`, while nobody has changed it since.
pub(super) async fn standing_pick(tx: &mut AnyTx, ticket: TicketId) -> StoreResult<Option<Agent>> {
    let row =
        sqlx::query("SELECT agent FROM auto_assignments WHERE ticket_id = $1 AND standing = 1")
            .bind(ticket.get())
            .fetch_optional(&mut **tx)
            .await?;
    row.map(|r| {
        let a: String = r.try_get("agent")?;
        Agent::parse(&a).map_err(|e| super::corrupt("auto_assignments", e))
    })
    .transpose()
}

/// A teammate changed the ticket: its pick no longer stands.
pub(super) async fn pick_taken_over(tx: &mut AnyTx, ticket: TicketId) -> StoreResult<()> {
    sqlx::query("UPDATE auto_assignments SET standing = 0 WHERE ticket_id = $1 AND standing = 1")
        .bind(ticket.get())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
