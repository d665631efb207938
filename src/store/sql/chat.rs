//! Chat threads linked to tickets, chat events seen once, and files shared
//! in threads. Tables: `chat_threads`, `chat_events`, `chat_files`.

use sqlx::{AnyPool, Row};

use crate::domain::chat::{ChatThread, Platform, SharedFile};
use crate::domain::ids::{Agent, TicketId};
use crate::store::StoreResult;

pub(super) async fn chat_thread(
    pool: &AnyPool,
    ticket: TicketId,
    platform: Platform,
) -> StoreResult<Option<ChatThread>> {
    let row = sqlx::query(
        "SELECT room, thread_ref FROM chat_threads WHERE ticket_id = $1 AND platform = $2",
    )
    .bind(ticket.get())
    .bind(platform.as_str())
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(ChatThread {
            platform,
            room: r.try_get("room")?,
            thread_ref: r.try_get("thread_ref")?,
        })
    })
    .transpose()
}

pub(super) async fn link_chat_thread(
    pool: &AnyPool,
    ticket: TicketId,
    thread: &ChatThread,
) -> StoreResult<()> {
    link_thread(pool, ticket, thread).await
}

pub(super) async fn first_sighting(
    pool: &AnyPool,
    platform: Platform,
    event_ref: &str,
    now_ms: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO chat_events (platform, event_ref, seen_at) VALUES ($1, $2, $3) \
         ON CONFLICT (platform, event_ref) DO NOTHING",
    )
    .bind(platform.as_str())
    .bind(event_ref)
    .bind(now_ms)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn record_chat_file(
    pool: &AnyPool,
    thread: &ChatThread,
    event_ref: &str,
    agent: &Agent,
    file: &SharedFile,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO chat_files (platform, room, thread_ref, event_ref, agent, name, content_type, size, source, posted_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (platform, event_ref) DO NOTHING",
    )
    .bind(thread.platform.as_str())
    .bind(&thread.room)
    .bind(&thread.thread_ref)
    .bind(event_ref)
    .bind(agent.as_str())
    .bind(&file.name)
    .bind(&file.content_type)
    .bind(file.size.min(i64::MAX as u64) as i64)
    .bind(&file.source)
    .bind(now_ms)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn chat_files(
    pool: &AnyPool,
    thread: &ChatThread,
    since_ms: i64,
) -> StoreResult<Vec<SharedFile>> {
    let rows = sqlx::query(
        "SELECT name, content_type, size, source FROM chat_files \
         WHERE platform = $1 AND room = $2 AND thread_ref = $3 AND posted_at >= $4 ORDER BY posted_at, event_ref",
    )
    .bind(thread.platform.as_str())
    .bind(&thread.room)
    .bind(&thread.thread_ref)
    .bind(since_ms)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SharedFile {
                name: r.try_get("name")?,
                content_type: r.try_get("content_type")?,
                size: r.try_get::<i64, _>("size")?.max(0) as u64,
                source: r.try_get("source")?,
            })
        })
        .collect()
}

pub(super) async fn ticket_by_thread(
    pool: &AnyPool,
    thread: &ChatThread,
) -> StoreResult<Option<TicketId>> {
    let row = sqlx::query(
        "SELECT ticket_id FROM chat_threads WHERE platform = $1 AND room = $2 AND thread_ref = $3",
    )
    .bind(thread.platform.as_str())
    .bind(&thread.room)
    .bind(&thread.thread_ref)
    .fetch_optional(pool)
    .await?;
    Ok(row
        .map(|r| r.try_get::<i64, _>("ticket_id"))
        .transpose()?
        .map(TicketId::new))
}

pub(super) async fn link_thread<'e, E>(
    exec: E,
    ticket: TicketId,
    thread: &ChatThread,
) -> StoreResult<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO chat_threads (ticket_id, platform, room, thread_ref) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (ticket_id, platform) DO UPDATE SET room = excluded.room, thread_ref = excluded.thread_ref",
    )
    .bind(ticket.get())
    .bind(thread.platform.as_str())
    .bind(&thread.room)
    .bind(&thread.thread_ref)
    .execute(exec)
    .await?;
    Ok(())
}
