//! Replicas sharing one database: their registrations and heartbeats, the
//! leases they hold, and what `mailroom status` shows. Queries:
//! `sql/cluster.rs` (`replicas`, `leases`, `outbox.taken_by`).
//!
//! A trait of its own, not a section of [`TicketStore`](super::TicketStore):
//! only the replica loop and `mailroom status` use it, and a lease is no
//! ticket concern. Every time in it is the database's clock, so replicas
//! whose clocks disagree still agree on who holds what.

use std::sync::Arc;

use async_trait::async_trait;

use super::{StoreResult, TicketStore};
use crate::domain::cluster::{Fence, LeaseResource, ReplicaId};

/// A replica announcing itself.
#[derive(Debug, Clone)]
pub struct NewReplica {
    pub id: ReplicaId,
    /// `[cluster] replica_name`, or the host name.
    pub name: String,
    pub host: String,
    pub pid: u32,
}

/// A registered replica as `mailroom status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub id: ReplicaId,
    pub name: String,
    pub host: String,
    pub pid: u32,
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
    /// Outbox jobs this replica has in flight.
    pub in_flight: u64,
}

/// A lease row: who holds (or last held) a resource, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The stored key (`mailbox:support`, `matrix-sync:@bot:example.org`).
    pub resource: String,
    pub owner: ReplicaId,
    pub token: i64,
    pub acquired_at_ms: i64,
    /// At or before now: expired (or released), free to take.
    pub expires_at_ms: i64,
}

/// Everything `mailroom status` prints, read at one database time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The database's clock when this was read (ages are relative to it).
    pub now_ms: i64,
    pub replicas: Vec<ReplicaRecord>,
    pub leases: Vec<LeaseRecord>,
    /// In-flight jobs whose taker is not a registered replica (taken
    /// before replicas were recorded, or by a pruned one).
    pub in_flight_unowned: u64,
}

#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// The database's clock, Unix milliseconds.
    async fn db_now_ms(&self) -> StoreResult<i64>;
    /// Registers this replica (heartbeat now); again after a prune is fine.
    async fn register_replica(&self, replica: &NewReplica) -> StoreResult<()>;
    /// Proves this replica alive. False if its row was gone (pruned after a
    /// long pause): the caller registers again.
    async fn heartbeat(&self, id: &ReplicaId) -> StoreResult<bool>;
    /// Replicas whose heartbeat is younger than `ttl_ms`.
    async fn live_replicas(&self, ttl_ms: i64) -> StoreResult<usize>;
    /// Takes `resource` if it is free (never leased, released or expired),
    /// with a token one above the last holder's. `None`: someone holds it.
    async fn acquire_lease(
        &self,
        resource: &LeaseResource,
        owner: &ReplicaId,
        ttl_ms: i64,
    ) -> StoreResult<Option<Fence>>;
    /// Extends a held lease. False: it expired or changed hands, and is lost.
    async fn renew_lease(&self, fence: &Fence, ttl_ms: i64) -> StoreResult<bool>;
    /// Hands a lease back (expired at once), if still held under `fence`.
    async fn release_lease(&self, fence: &Fence) -> StoreResult<()>;
    /// A graceful stop: releases every lease of `id` and removes its row.
    async fn leave(&self, id: &ReplicaId) -> StoreResult<()>;
    /// Forgets replicas silent for longer than `older_than_ms`.
    async fn prune_replicas(&self, older_than_ms: i64) -> StoreResult<u64>;
    async fn cluster_status(&self) -> StoreResult<ClusterStatus>;
    /// This store, with every checkpoint-advancing write (an ingest batch,
    /// a Sent batch, a checkpoint save) refused unless `fence` is still the
    /// current lease: the write and the check are one transaction, and the
    /// check holds the lease row so a takeover waits for it.
    fn fenced(&self, fence: Fence) -> Arc<dyn TicketStore>;
}
