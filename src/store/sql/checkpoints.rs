//! IMAP checkpoints (UIDVALIDITY and last UID) per mailbox and folder role
//! (the ingest folder, the Sent folder); an ingest advances its checkpoint
//! in the same transaction through [`upsert_checkpoint`]. Table: `checkpoints`.

use sqlx::{AnyPool, Row};

use super::Backend;
use super::cluster::check_fence;
use crate::domain::cluster::Fence;
use crate::domain::ids::MailboxName;
use crate::domain::mailbox::{Checkpoint, FolderRole};
use crate::store::StoreResult;

pub(super) async fn checkpoint(
    pool: &AnyPool,
    mailbox: &MailboxName,
    role: FolderRole,
) -> StoreResult<Option<Checkpoint>> {
    let row = sqlx::query(
        "SELECT uid_validity, last_uid FROM checkpoints WHERE mailbox = $1 AND folder = $2",
    )
    .bind(mailbox.as_str())
    .bind(role.as_str())
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Checkpoint {
            uid_validity: r.try_get::<i64, _>("uid_validity")? as u32,
            last_uid: r.try_get::<i64, _>("last_uid")? as u32,
        })
    })
    .transpose()
}

pub(super) async fn save_checkpoint(
    pool: &AnyPool,
    fence: Option<(Backend, &Fence)>,
    mailbox: &MailboxName,
    role: FolderRole,
    cp: Checkpoint,
    now_ms: i64,
) -> StoreResult<()> {
    let Some((backend, fence)) = fence else {
        return upsert_checkpoint(pool, mailbox, role, cp, now_ms).await;
    };
    let mut tx = pool.begin().await?;
    check_fence(&mut tx, backend, fence).await?;
    upsert_checkpoint(&mut *tx, mailbox, role, cp, now_ms).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn upsert_checkpoint<'e, E>(
    exec: E,
    mailbox: &MailboxName,
    role: FolderRole,
    cp: Checkpoint,
    now_ms: i64,
) -> StoreResult<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO checkpoints (mailbox, folder, uid_validity, last_uid, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (mailbox, folder) DO UPDATE SET uid_validity = excluded.uid_validity, last_uid = excluded.last_uid, updated_at = excluded.updated_at",
    )
    .bind(mailbox.as_str())
    .bind(role.as_str())
    .bind(i64::from(cp.uid_validity))
    .bind(i64::from(cp.last_uid))
    .bind(now_ms)
    .execute(exec)
    .await?;
    Ok(())
}
