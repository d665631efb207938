//! The audit log: read per ticket, appended on its own or, through
//! [`insert_audit`], inside the transaction of the change it records.
//! Table: `audit_log`.

use sqlx::{AnyPool, Row};

use super::{AnyTx, corrupt};
use crate::domain::ids::{Actor, TicketId};
use crate::store::{AuditEntry, StoreResult};

pub(super) async fn audit_log(pool: &AnyPool, ticket: TicketId) -> StoreResult<Vec<AuditEntry>> {
    let rows = sqlx::query("SELECT id, ticket_id, at, actor, action, details FROM audit_log WHERE ticket_id = $1 ORDER BY id")
        .bind(ticket.get())
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            let actor: String = r.try_get("actor")?;
            let t: Option<i64> = r.try_get("ticket_id")?;
            Ok(AuditEntry {
                id: r.try_get("id")?,
                ticket: t.map(TicketId::new),
                at_ms: r.try_get("at")?,
                actor: Actor::from_stored(&actor).map_err(|e| corrupt("audit_log", e))?,
                action: r.try_get("action")?,
                details: r.try_get("details")?,
            })
        })
        .collect()
}

pub(super) async fn audit(
    pool: &AnyPool,
    ticket: Option<TicketId>,
    actor: &Actor,
    action: &str,
    details: &str,
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    insert_audit(&mut tx, ticket, actor, action, details, now_ms).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn insert_audit(
    tx: &mut AnyTx,
    ticket: Option<TicketId>,
    actor: &Actor,
    action: &str,
    details: &str,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (ticket_id, at, actor, action, details) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(ticket.map(|t| t.get()))
    .bind(now_ms)
    .bind(actor.to_stored())
    .bind(action)
    .bind(details)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
