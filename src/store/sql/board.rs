//! The board: a room's open tickets as the board draws them, and the board
//! message kept per room. Tables: `tickets`, `chat_threads` (read),
//! `chat_boards`.

use sqlx::{AnyPool, Row};

use super::corrupt;
use super::tickets::state_from_row;
use crate::domain::board::BoardTicket;
use crate::domain::chat::Platform;
use crate::domain::ids::TicketId;
use crate::domain::routing::Priority;
use crate::store::StoreResult;

/// More tickets than any board shows (the rest are only counted), read at
/// most: a room with a runaway backlog must not make every refresh load it all.
const MAX_BOARD_ROWS: i64 = 10_000;

pub(super) async fn board_tickets(
    pool: &AnyPool,
    platform: Platform,
    room: &str,
) -> StoreResult<Vec<BoardTicket>> {
    let rows = sqlx::query(
        "SELECT t.id, t.status, t.owner, t.subject, t.customer, t.created_at, t.priority, \
                t.snoozed_until, c.thread_ref \
         FROM tickets t JOIN chat_threads c ON c.ticket_id = t.id \
         WHERE c.platform = $1 AND c.room = $2 AND t.status IN ('open', 'claimed', 'pending') \
         ORDER BY t.id LIMIT $3",
    )
    .bind(platform.as_str())
    .bind(room.to_owned())
    .bind(MAX_BOARD_ROWS)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let state = state_from_row(r)?;
            let priority: String = r.try_get("priority")?;
            Ok(BoardTicket {
                ticket: TicketId::new(r.try_get("id")?),
                status: state.status(),
                owner: state.owner().cloned(),
                subject: r.try_get("subject")?,
                customer: r.try_get("customer")?,
                created_at_ms: r.try_get("created_at")?,
                priority: Priority::parse(&priority)
                    .ok_or_else(|| corrupt("tickets", format!("priority {priority:?}")))?,
                thread_ref: r.try_get("thread_ref")?,
                // "Until the customer replies" is stored as a far-off
                // time (`domain::snooze::UNTIL_REPLY_MS`), which the
                // board shows as such.
                snoozed_until_ms: r.try_get("snoozed_until")?,
            })
        })
        .collect()
}

pub(super) async fn board_rooms(pool: &AnyPool, platform: Platform) -> StoreResult<Vec<String>> {
    let rows = sqlx::query(
        "SELECT DISTINCT c.room AS room FROM chat_threads c JOIN tickets t ON t.id = c.ticket_id \
         WHERE c.platform = $1 AND t.status IN ('open', 'claimed', 'pending') \
         UNION SELECT room FROM chat_boards WHERE platform = $1",
    )
    .bind(platform.as_str())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>("room")?))
        .collect()
}

pub(super) async fn board_message(
    pool: &AnyPool,
    platform: Platform,
    room: &str,
) -> StoreResult<Option<String>> {
    let row = sqlx::query("SELECT message_ref FROM chat_boards WHERE platform = $1 AND room = $2")
        .bind(platform.as_str())
        .bind(room.to_owned())
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| r.try_get("message_ref")).transpose()?)
}

pub(super) async fn save_board_message(
    pool: &AnyPool,
    platform: Platform,
    room: &str,
    message_ref: &str,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO chat_boards (platform, room, message_ref, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (platform, room) DO UPDATE SET message_ref = excluded.message_ref, \
         created_at = excluded.created_at",
    )
    .bind(platform.as_str())
    .bind(room.to_owned())
    .bind(message_ref.to_owned())
    .bind(now_ms)
    .execute(pool)
    .await?;
    Ok(())
}
