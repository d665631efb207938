//! Replicas and leases ([`ClusterStore`]): registration and heartbeats,
//! taking, renewing and releasing leases, the fence check the owner's
//! writes make, and what `mailroom status` reads. Tables: `replicas`,
//! `leases`, `outbox.taken_by`.
//!
//! Every time here is the database's clock ([`Backend::now_ms_sql`]), so a
//! replica whose own clock is off cannot keep a lease the others think
//! expired, or take one they think is held.

use sqlx::AnyConnection;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::{Backend, corrupt};
use crate::domain::cluster::{Fence, LeaseResource, ReplicaId};
use crate::store::{
    ClusterStatus, LeaseRecord, NewReplica, ReplicaRecord, StoreError, StoreResult,
};

impl Backend {
    /// SQL for the database's clock in Unix milliseconds. `clock_timestamp()`
    /// rather than `now()`: the latter is the transaction's start, which a
    /// long transaction would make stale.
    pub(super) fn now_ms_sql(self) -> &'static str {
        match self {
            Backend::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        }
    }
}

pub(super) async fn db_now_ms(pool: &AnyPool, backend: Backend) -> StoreResult<i64> {
    let sql = format!("SELECT {} AS now_ms", backend.now_ms_sql());
    let row = sqlx::query(AssertSqlSafe(sql)).fetch_one(pool).await?;
    Ok(row.try_get("now_ms")?)
}

pub(super) async fn register_replica(
    pool: &AnyPool,
    backend: Backend,
    r: &NewReplica,
) -> StoreResult<()> {
    let now = backend.now_ms_sql();
    let sql = format!(
        "INSERT INTO replicas (id, name, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, {now}, {now}) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(r.id.as_str())
        .bind(&r.name)
        .bind(&r.host)
        .bind(i64::from(r.pid))
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn heartbeat(
    pool: &AnyPool,
    backend: Backend,
    id: &ReplicaId,
) -> StoreResult<bool> {
    let sql = format!(
        "UPDATE replicas SET heartbeat_at = {} WHERE id = $1",
        backend.now_ms_sql()
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(id.as_str())
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn live_replicas(
    pool: &AnyPool,
    backend: Backend,
    ttl_ms: i64,
) -> StoreResult<usize> {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM replicas WHERE heartbeat_at > {} - $1",
        backend.now_ms_sql()
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(ttl_ms)
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<i64, _>("n")?.max(0) as usize)
}

pub(super) async fn acquire_lease(
    pool: &AnyPool,
    backend: Backend,
    resource: &LeaseResource,
    owner: &ReplicaId,
    ttl_ms: i64,
) -> StoreResult<Option<Fence>> {
    // One statement: of two replicas taking the same expired lease, the
    // second waits on the row, then finds it no longer expired and takes
    // nothing. The token grows on every change of hands, never resets.
    let now = backend.now_ms_sql();
    let sql = format!(
        "INSERT INTO leases (resource, owner, token, acquired_at, expires_at) VALUES ($1, $2, 1, {now}, {now} + $3) \
         ON CONFLICT (resource) DO UPDATE SET owner = excluded.owner, token = leases.token + 1, \
         acquired_at = excluded.acquired_at, expires_at = excluded.expires_at \
         WHERE leases.expires_at <= excluded.acquired_at RETURNING token"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(resource.key())
        .bind(owner.as_str())
        .bind(ttl_ms)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        Ok(Fence {
            resource: resource.clone(),
            owner: owner.clone(),
            token: r.try_get("token")?,
        })
    })
    .transpose()
}

pub(super) async fn renew_lease(
    pool: &AnyPool,
    backend: Backend,
    fence: &Fence,
    ttl_ms: i64,
) -> StoreResult<bool> {
    // An expired lease is not renewed even if nobody took it yet: its
    // owner has already been told to stop, and takes it again (with a new
    // token) through acquire.
    let now = backend.now_ms_sql();
    let sql = format!(
        "UPDATE leases SET expires_at = {now} + $1 \
         WHERE resource = $2 AND owner = $3 AND token = $4 AND expires_at > {now}"
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(ttl_ms)
        .bind(fence.resource.key())
        .bind(fence.owner.as_str())
        .bind(fence.token)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn release_lease(pool: &AnyPool, fence: &Fence) -> StoreResult<()> {
    sqlx::query(
        "UPDATE leases SET expires_at = 0 WHERE resource = $1 AND owner = $2 AND token = $3",
    )
    .bind(fence.resource.key())
    .bind(fence.owner.as_str())
    .bind(fence.token)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn leave(pool: &AnyPool, id: &ReplicaId) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE leases SET expires_at = 0 WHERE owner = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM replicas WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn prune_replicas(
    pool: &AnyPool,
    backend: Backend,
    older_than_ms: i64,
) -> StoreResult<u64> {
    let sql = format!(
        "DELETE FROM replicas WHERE heartbeat_at < {} - $1",
        backend.now_ms_sql()
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(older_than_ms)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Refuses the current transaction's write unless `fence` is still the
/// lease. On PostgreSQL the row is read `FOR SHARE`: a replica taking the
/// lease over must update that row, so it waits until this transaction
/// ends, and then reads the checkpoint this one wrote. (SQLite has one
/// writer at a time, so the read alone decides.)
pub(super) async fn check_fence(
    conn: &mut AnyConnection,
    backend: Backend,
    fence: &Fence,
) -> StoreResult<()> {
    let lock = match backend {
        Backend::Postgres => " FOR SHARE",
        Backend::Sqlite => "",
    };
    let sql =
        format!("SELECT token FROM leases WHERE resource = $1 AND owner = $2 AND token = $3{lock}");
    let held = sqlx::query(AssertSqlSafe(sql))
        .bind(fence.resource.key())
        .bind(fence.owner.as_str())
        .bind(fence.token)
        .fetch_optional(&mut *conn)
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::Fenced {
            resource: fence.resource.key(),
            token: fence.token,
        }),
    }
}

pub(super) async fn cluster_status(pool: &AnyPool, backend: Backend) -> StoreResult<ClusterStatus> {
    let now_ms = db_now_ms(pool, backend).await?;
    let rows = sqlx::query(
        "SELECT r.id, r.name, r.host, r.pid, r.started_at, r.heartbeat_at, \
         (SELECT COUNT(*) FROM outbox o WHERE o.state = 'in_flight' AND o.taken_by = r.id) AS in_flight \
         FROM replicas r ORDER BY r.name, r.started_at, r.id",
    )
    .fetch_all(pool)
    .await?;
    let mut replicas = Vec::with_capacity(rows.len());
    for row in rows {
        let pid: i64 = row.try_get("pid")?;
        replicas.push(ReplicaRecord {
            id: ReplicaId::from_stored(row.try_get("id")?),
            name: row.try_get("name")?,
            host: row.try_get("host")?,
            pid: u32::try_from(pid).map_err(|_| corrupt("replicas", format!("pid {pid}")))?,
            started_at_ms: row.try_get("started_at")?,
            heartbeat_at_ms: row.try_get("heartbeat_at")?,
            in_flight: row.try_get::<i64, _>("in_flight")?.max(0) as u64,
        });
    }
    let rows = sqlx::query(
        "SELECT resource, owner, token, acquired_at, expires_at FROM leases ORDER BY resource",
    )
    .fetch_all(pool)
    .await?;
    let mut leases = Vec::with_capacity(rows.len());
    for row in rows {
        leases.push(LeaseRecord {
            resource: row.try_get("resource")?,
            owner: ReplicaId::from_stored(row.try_get("owner")?),
            token: row.try_get("token")?,
            acquired_at_ms: row.try_get("acquired_at")?,
            expires_at_ms: row.try_get("expires_at")?,
        });
    }
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM outbox o WHERE o.state = 'in_flight' \
         AND (o.taken_by IS NULL OR NOT EXISTS (SELECT 1 FROM replicas r WHERE r.id = o.taken_by))",
    )
    .fetch_one(pool)
    .await?;
    Ok(ClusterStatus {
        now_ms,
        replicas,
        leases,
        in_flight_unowned: row.try_get::<i64, _>("n")?.max(0) as u64,
    })
}
