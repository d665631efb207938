//! OAuth2 grants per mailbox. A refresh's write is conditional on the
//! grant's generation, so one that races a new sign-in is dropped; a
//! refusal is recorded, and its notices queued and audited, in one
//! transaction, once per grant. Table: `oauth_grants`.

use sqlx::{AnyPool, Row, any::AnyRow};

use super::audit::insert_audit;
use super::corrupt;
use super::outbox::insert_job;
use crate::domain::ids::{Actor, MailboxName};
use crate::store::{Grant, JobSpec, NewGrant, Refreshed, StoreResult};

/// A static `SELECT` of every column, then `$tail`.
macro_rules! select {
    ($tail:literal) => {
        concat!(
            "SELECT mailbox, account, scopes, refresh_token, access_token, access_expires_at, \
             created_at, refreshed_at, last_error, last_error_at, generation, refused_told_at \
             FROM oauth_grants",
            $tail
        )
    };
}

fn grant_of(r: &AnyRow) -> StoreResult<Grant> {
    let mailbox: String = r.try_get("mailbox")?;
    Ok(Grant {
        mailbox: MailboxName::parse(&mailbox).map_err(|e| corrupt("oauth_grants", e.reason))?,
        account: r.try_get("account")?,
        scopes: r.try_get("scopes")?,
        refresh_token: r.try_get("refresh_token")?,
        access_token: r.try_get("access_token")?,
        access_expires_at_ms: r.try_get("access_expires_at")?,
        created_at_ms: r.try_get("created_at")?,
        refreshed_at_ms: r.try_get("refreshed_at")?,
        last_error: r.try_get("last_error")?,
        last_error_at_ms: r.try_get("last_error_at")?,
        generation: r.try_get("generation")?,
        refused_told_at_ms: r.try_get("refused_told_at")?,
    })
}

pub(super) async fn grant(pool: &AnyPool, mailbox: &MailboxName) -> StoreResult<Option<Grant>> {
    let row = sqlx::query(select!(" WHERE mailbox = $1"))
        .bind(mailbox.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(grant_of).transpose()
}

pub(super) async fn grants(pool: &AnyPool) -> StoreResult<Vec<Grant>> {
    let rows = sqlx::query(select!(" ORDER BY mailbox"))
        .fetch_all(pool)
        .await?;
    rows.iter().map(grant_of).collect()
}

pub(super) async fn save_grant(pool: &AnyPool, new: &NewGrant, now_ms: i64) -> StoreResult<i64> {
    let mut tx = pool.begin().await?;
    let old: Option<i64> = sqlx::query("SELECT generation FROM oauth_grants WHERE mailbox = $1")
        .bind(new.mailbox.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("generation"))
        .transpose()?;
    // Never a generation seen before, even after `auth logout` deleted the
    // row: a refresh in flight for the old grant cannot land on this one.
    let generation = old.map_or(now_ms, |g| (g + 1).max(now_ms));
    sqlx::query("DELETE FROM oauth_grants WHERE mailbox = $1")
        .bind(new.mailbox.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO oauth_grants (mailbox, account, scopes, refresh_token, access_token, \
         access_expires_at, created_at, refreshed_at, generation) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
    )
    .bind(new.mailbox.as_str())
    .bind(&new.account)
    .bind(&new.scopes)
    .bind(&new.refresh_token)
    .bind(&new.access_token)
    .bind(new.access_expires_at_ms)
    .bind(now_ms)
    .bind(generation)
    .execute(&mut *tx)
    .await?;
    let details = format!("mailbox {}: signed in as {}", new.mailbox, new.account);
    insert_audit(
        &mut tx,
        None,
        &Actor::System,
        "oauth_signed_in",
        &details,
        now_ms,
    )
    .await?;
    tx.commit().await?;
    Ok(generation)
}

pub(super) async fn grant_refreshed(
    pool: &AnyPool,
    r: &Refreshed,
    now_ms: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE oauth_grants SET access_token = $1, access_expires_at = $2, \
         refresh_token = COALESCE($3, refresh_token), scopes = COALESCE($4, scopes), \
         refreshed_at = $5, last_error = NULL, last_error_at = NULL, refreshing_until = NULL \
         WHERE mailbox = $6 AND generation = $7 AND refused_told_at IS NULL",
    )
    .bind(&r.access_token)
    .bind(r.access_expires_at_ms)
    .bind(r.refresh_token.as_ref())
    .bind(r.scopes.as_ref())
    .bind(now_ms)
    .bind(r.mailbox.as_str())
    .bind(r.generation)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// See [`TicketStore::grant_claim_refresh`](crate::store::TicketStore::grant_claim_refresh):
/// one conditional update, so two processes never both win.
pub(super) async fn grant_claim_refresh(
    pool: &AnyPool,
    mailbox: &MailboxName,
    generation: i64,
    seen_refreshed_at_ms: Option<i64>,
    now_ms: i64,
    until_ms: i64,
) -> StoreResult<bool> {
    // `refreshed_at` compared as the caller saw it (-1: never refreshed).
    let done = sqlx::query(
        "UPDATE oauth_grants SET refreshing_until = $1 \
         WHERE mailbox = $2 AND generation = $3 AND refused_told_at IS NULL \
         AND COALESCE(refreshed_at, -1) = $5 \
         AND (refreshing_until IS NULL OR refreshing_until <= $4)",
    )
    .bind(until_ms)
    .bind(mailbox.as_str())
    .bind(generation)
    .bind(now_ms)
    .bind(seen_refreshed_at_ms.unwrap_or(-1))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn grant_error(
    pool: &AnyPool,
    mailbox: &MailboxName,
    generation: i64,
    error: &str,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE oauth_grants SET last_error = $1, last_error_at = $2, refreshing_until = NULL \
         WHERE mailbox = $3 AND generation = $4",
    )
    .bind(error)
    .bind(now_ms)
    .bind(mailbox.as_str())
    .bind(generation)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn grant_refused(
    pool: &AnyPool,
    mailbox: &MailboxName,
    generation: i64,
    error: &str,
    notices: &[JobSpec],
    now_ms: i64,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    let told = sqlx::query(
        "UPDATE oauth_grants SET last_error = $1, last_error_at = $2, refused_told_at = $2 \
         WHERE mailbox = $3 AND generation = $4 AND refused_told_at IS NULL",
    )
    .bind(error)
    .bind(now_ms)
    .bind(mailbox.as_str())
    .bind(generation)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if told {
        for spec in notices {
            insert_job(&mut tx, None, spec, now_ms, now_ms).await?;
        }
        let details = format!("mailbox {mailbox}: {error}");
        insert_audit(
            &mut tx,
            None,
            &Actor::System,
            "oauth_refused",
            &details,
            now_ms,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(told)
}

pub(super) async fn delete_grant(
    pool: &AnyPool,
    mailbox: &MailboxName,
    now_ms: i64,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    let gone = sqlx::query("DELETE FROM oauth_grants WHERE mailbox = $1")
        .bind(mailbox.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if gone {
        let details = format!("mailbox {mailbox}: grant forgotten (auth logout)");
        insert_audit(
            &mut tx,
            None,
            &Actor::System,
            "oauth_signed_out",
            &details,
            now_ms,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(gone)
}
