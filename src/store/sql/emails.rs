//! Stored emails, read back; and raw bytes, which are stored in pieces of
//! `RAW_PIECE` (the first in `emails.raw`, the rest in
//! `email_raw_pieces`) by whoever inserts an email (`ingest.rs`,
//! `replies.rs`). Tables: `emails`, `email_raw_pieces`.

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::corrupt;
use crate::domain::email::{Direction, Party};
use crate::domain::ids::{Agent, EmailAddress, MessageId, TicketId};
use crate::store::{EmailRecord, EmailState, StoreResult};

const EMAIL_COLUMNS: &str = "id, ticket_id, direction, message_id, from_addr, from_name, subject, sent_at, stored_at, author, state, COALESCE(raw_size, LENGTH(raw)) AS size";

/// Raw emails are stored in pieces of this size (migration 0004).
const RAW_PIECE: usize = 1024 * 1024;

pub(super) async fn emails(pool: &AnyPool, ticket: TicketId) -> StoreResult<Vec<EmailRecord>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EMAIL_COLUMNS} FROM emails WHERE ticket_id = $1 ORDER BY id"
    )))
    .bind(ticket.get())
    .fetch_all(pool)
    .await?;
    rows.iter().map(email_from_row).collect()
}

pub(super) async fn raw_email(pool: &AnyPool, email_id: i64) -> StoreResult<Option<Vec<u8>>> {
    let row = sqlx::query("SELECT raw, raw_size FROM emails WHERE id = $1")
        .bind(email_id)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(row) => Ok(Some(whole_raw(pool, email_id, &row).await?)),
        None => Ok(None),
    }
}

pub(super) async fn latest_inbound(
    pool: &AnyPool,
    ticket: TicketId,
) -> StoreResult<Option<(EmailRecord, Vec<u8>)>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {EMAIL_COLUMNS}, raw, raw_size FROM emails WHERE ticket_id = $1 AND direction = 'inbound' ORDER BY id DESC LIMIT 1"
    )))
    .bind(ticket.get())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let email = email_from_row(&row)?;
    let raw = whole_raw(pool, email.id, &row).await?;
    Ok(Some((email, raw)))
}

pub(super) fn email_from_row(row: &AnyRow) -> StoreResult<EmailRecord> {
    let direction: String = row.try_get("direction")?;
    let state: String = row.try_get("state")?;
    let author: Option<String> = row.try_get("author")?;
    Ok(EmailRecord {
        id: row.try_get("id")?,
        ticket: TicketId::new(row.try_get("ticket_id")?),
        direction: Direction::parse(&direction)
            .ok_or_else(|| corrupt("emails", format!("direction {direction:?}")))?,
        message_id: MessageId::parse(&row.try_get::<String, _>("message_id")?)
            .map_err(|e| corrupt("emails", e))?,
        from: Party::new(
            row.try_get("from_name")?,
            EmailAddress::parse(&row.try_get::<String, _>("from_addr")?)
                .map_err(|e| corrupt("emails", e))?,
        ),
        subject: row.try_get("subject")?,
        sent_at: row.try_get("sent_at")?,
        stored_at_ms: row.try_get("stored_at")?,
        author: author
            .map(|a| Agent::parse(&a))
            .transpose()
            .map_err(|e| corrupt("emails", e))?,
        state: EmailState::parse(&state)
            .ok_or_else(|| corrupt("emails", format!("state {state:?}")))?,
        size: row.try_get("size")?,
    })
}

/// The part of `raw` that goes in `emails.raw`.
pub(super) fn first_piece(raw: &[u8]) -> &[u8] {
    &raw[..raw.len().min(RAW_PIECE)]
}

/// Stores the pieces of `raw` after the first.
pub(super) async fn insert_later_pieces(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    email_id: i64,
    raw: &[u8],
) -> StoreResult<()> {
    let rest = raw.get(RAW_PIECE..).unwrap_or_default();
    for (seq, piece) in rest.chunks(RAW_PIECE).enumerate() {
        sqlx::query("INSERT INTO email_raw_pieces (email_id, seq, bytes) VALUES ($1, $2, $3)")
            .bind(email_id)
            .bind(seq as i64 + 1)
            .bind(piece)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The whole raw email of a row holding `raw` and `raw_size`: the first
/// piece, then the others read one at a time into a buffer sized once.
pub(super) async fn whole_raw(pool: &AnyPool, email_id: i64, row: &AnyRow) -> StoreResult<Vec<u8>> {
    let first: Vec<u8> = row.try_get("raw")?;
    let size: Option<i64> = row.try_get("raw_size")?;
    let size = size.map_or(first.len(), |s| usize::try_from(s).unwrap_or(0));
    if size <= first.len() {
        return Ok(first);
    }
    let mut raw = Vec::with_capacity(size);
    raw.extend_from_slice(&first);
    drop(first);
    let mut pieces =
        sqlx::query("SELECT bytes FROM email_raw_pieces WHERE email_id = $1 ORDER BY seq")
            .bind(email_id)
            .fetch(pool);
    while let Some(row) = pieces.try_next().await? {
        let piece: Vec<u8> = row.try_get("bytes")?;
        raw.extend_from_slice(&piece);
    }
    if raw.len() != size {
        return Err(corrupt(
            "email_raw_pieces",
            format!("email {email_id} has {} of its {size} raw bytes", raw.len()),
        ));
    }
    Ok(raw)
}
