//! The dashboard's sign-in: one-time links and the sessions they open,
//! both kept as hashes. Opening a link is a conditional update (`used_at IS
//! NULL AND expires_at > now`): of two opens of one link exactly one wins,
//! and the session and the audit line land in the same transaction.
//! Tables: `web_links`, `web_sessions`.

use sqlx::{AnyPool, Row};

use super::audit::insert_audit;
use super::corrupt;
use crate::domain::ids::{Actor, Agent};
use crate::domain::web::{Redeemed, SecretHash};
use crate::store::{NewWebLink, NewWebSession, StoreResult};

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
