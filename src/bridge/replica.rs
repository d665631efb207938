//! One replica among several on a PostgreSQL database: it registers,
//! heartbeats, and owns its fair share of the mailboxes through leases,
//! starting a mailbox's ingest and Sent watcher when it gains the lease and
//! stopping them the moment it loses it (docs/SCALING.md).
//!
//! - [`Cluster`]: who this replica is and how it reaches the lease tables.
//! - [`run`]: the heartbeat loop that renews, rebalances and takes over.
//! - [`leased`]: runs one task only while holding a lease (the Matrix sync:
//!   one per bot account across all replicas).
//!
//! The leases' fencing tokens travel with the mailbox's writes (a fenced
//! store, [`ClusterStore::fenced`]): a replica that was paused past its
//! lease finds its next checkpoint write refused, even before its own
//! heartbeat notices the loss.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::App;
use crate::config::cluster::ClusterSettings;
use crate::domain::cluster::{Fence, LeaseResource, ReplicaId, rebalance};
use crate::domain::ids::MailboxName;
use crate::store::{ClusterStore, NewReplica};

/// How long a stopping mailbox's tasks get to finish their step before
/// its lease is handed back anyway (the fence still guards its writes).
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// A silent replica's row is forgotten after this many lease lifetimes
/// (it stays visible in `mailroom status` as dead until then).
const PRUNE_AFTER_TTLS: u32 = 100;

/// This process as one replica of several.
pub struct Cluster {
    pub id: ReplicaId,
    pub name: String,
    pub host: String,
    pub store: Arc<dyn ClusterStore>,
    pub heartbeat: Duration,
    pub lease_ttl: Duration,
}

impl Cluster {
    /// A fresh replica id (`<name>-<pid>-<random>`) for this process.
    pub fn new(settings: &ClusterSettings, store: Arc<dyn ClusterStore>) -> Cluster {
        let host = host_name();
        let name = settings
            .replica_name
            .clone()
            .unwrap_or_else(|| host.clone());
        let mut nonce = [0u8; 4];
        // A clash is only possible between two processes with the same
        // name and pid; without randomness, the time is as good.
        if getrandom::fill(&mut nonce).is_err() {
            nonce = (super::now_ms() as u32).to_le_bytes();
        }
        Cluster {
            id: ReplicaId::new(&name, std::process::id(), &hex::encode(nonce)),
            name,
            host,
            store,
            heartbeat: settings.heartbeat,
            lease_ttl: settings.lease_ttl,
        }
    }

    fn ttl_ms(&self) -> i64 {
        self.lease_ttl.as_millis().min(i64::MAX as u128) as i64
    }

    /// Announces this replica. Done before the outbox worker starts, so no
    /// job is ever taken by a replica the others cannot see alive.
    pub async fn register(&self) -> Result<(), crate::store::StoreError> {
        self.store
            .register_replica(&NewReplica {
                id: self.id.clone(),
                name: self.name.clone(),
                host: self.host.clone(),
                pid: std::process::id(),
            })
            .await
    }
}

impl Cluster {
    /// Frees at once the leases of this replica's dead predecessors —
    /// rows of the same name on the same host whose process is gone — so a
    /// replica restarted after a crash (kill -9, OOM) resumes its mailboxes
    /// now instead of after the lease TTL. Their rows are removed, so their
    /// in-flight outbox jobs are recovered by the crash rules on the next
    /// heartbeat. Returns the ids freed.
    ///
    /// The process is looked up in `/proc` only for rows of this host: a
    /// PID means nothing on another host. Without `/proc` (not Linux),
    /// nothing is freed early and the leases expire as usual. Replicas in
    /// separate PID namespaces (containers) must not share host and
    /// replica name: each would see the other's PID as gone.
    pub async fn free_dead_predecessors(&self) -> Result<Vec<ReplicaId>, crate::store::StoreError> {
        if !process_alive(std::process::id()).await {
            return Ok(Vec::new());
        }
        let status = self.store.cluster_status().await?;
        let mut freed = Vec::new();
        for r in status.replicas {
            if r.id == self.id || r.name != self.name || r.host != self.host {
                continue;
            }
            // Our own PID under another id is a predecessor whose PID was
            // reused by this process: certainly gone.
            if r.pid != std::process::id() && process_alive(r.pid).await {
                continue;
            }
            self.store.leave(&r.id).await?;
            tracing::info!(predecessor = %r.id, pid = r.pid, "a dead predecessor of this replica (same name and host, process gone): its leases are free now");
            freed.push(r.id);
        }
        Ok(freed)
    }
}

/// Whether process `pid` of this host exists (a zombie counts: its parent
/// has not reaped it yet, but it no longer runs anything).
async fn process_alive(pid: u32) -> bool {
    tokio::fs::try_exists(format!("/proc/{pid}"))
        .await
        .unwrap_or(true)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A mailbox this replica owns, with what runs under its lease.
struct Owned {
    fence: Fence,
    /// When the last successful renewal was sent: past this plus the TTL,
    /// the database may already have given the lease away.
    renewed: Instant,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Owned {
    /// Stops the mailbox's tasks and waits (bounded) for their current step.
    async fn stop(&self) {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(STOP_PATIENCE, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(mailbox = %self.fence.resource, "mailbox tasks still stopping; lease handed back anyway");
        }
    }
}

/// Runs this replica's share of the mailboxes until `cancel`, then stops
/// them and leaves (its leases free at once for the others).
pub async fn run(app: Arc<App>, cancel: CancellationToken) {
    let Some(cluster) = app.cluster.clone() else {
        return;
    };
    let all: Vec<MailboxName> = app.mailboxes.keys().cloned().collect();
    // Health (and so the watchdog and /healthz) covers only the mailboxes
    // this replica works; the others are another replica's to report.
    for m in &all {
        app.health.unwatch(m);
    }
    let mut owned: BTreeMap<MailboxName, Owned> = BTreeMap::new();
    let handovers = TaskTracker::new();
    let mut beats: u64 = 0;
    let mut predecessors_checked = false;
    loop {
        // Before the first lease is taken (and again until the database
        // answers): a restart takes its crashed predecessor's place at once.
        if !predecessors_checked {
            match cluster.free_dead_predecessors().await {
                Ok(_) => predecessors_checked = true,
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for dead predecessors; retrying")
                }
            }
        }
        // A database that does not answer (a network cut) must not hold the
        // beat past the first lease's expiry: the pool would wait its own
        // acquire timeout (30 s), while the others take the mailboxes after
        // the TTL. Dropping the beat midway is safe: a lease it took but did
        // not record is renewed by nobody and expires.
        let now = Instant::now();
        let deadline = owned
            .values()
            .map(|o| o.renewed + cluster.lease_ttl)
            .min()
            .unwrap_or(now + cluster.lease_ttl)
            .max(now + cluster.heartbeat);
        let step = beat(&app, &cluster, &all, &mut owned, &handovers, &cancel, beats);
        let failed = match tokio::time::timeout_at(deadline, step).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "no answer from the database within {:?}",
                deadline - now
            )),
        };
        if let Some(e) = failed {
            tracing::warn!(error = %e, "replica heartbeat failed; retrying");
            // Unable to renew: stop what the database may already have
            // given to another replica.
            let expired: Vec<MailboxName> = owned
                .iter()
                .filter(|(_, o)| o.renewed.elapsed() >= cluster.lease_ttl)
                .map(|(m, _)| m.clone())
                .collect();
            for m in expired {
                if let Some(o) = owned.remove(&m) {
                    tracing::warn!(mailbox = %m, "lease not renewed in time; mailbox stopped here");
                    o.cancel.cancel();
                    app.health.unwatch(&m);
                }
            }
        }
        beats += 1;
        tokio::select! {
            _ = tokio::time::sleep(cluster.heartbeat) => {}
            _ = cancel.cancelled() => break,
        }
    }
    for o in owned.values() {
        o.stop().await;
    }
    handovers.close();
    handovers.wait().await;
    match cluster.store.leave(&cluster.id).await {
        Ok(()) => tracing::info!(replica = %cluster.id, "replica left; its mailboxes are free"),
        Err(e) => {
            tracing::warn!(error = %e, "could not release leases; they expire on their own")
        }
    }
}

/// One heartbeat: prove alive, renew, rebalance, take over, recover.
async fn beat(
    app: &Arc<App>,
    c: &Cluster,
    all: &[MailboxName],
    owned: &mut BTreeMap<MailboxName, Owned>,
    handovers: &TaskTracker,
    cancel: &CancellationToken,
    beats: u64,
) -> Result<(), crate::store::StoreError> {
    if !c.store.heartbeat(&c.id).await? {
        tracing::warn!(replica = %c.id, "replica was forgotten (paused too long); registering again");
        c.register().await?;
    }
    let ttl = c.ttl_ms();
    let mut lost = Vec::new();
    for (m, o) in owned.iter_mut() {
        let sent = Instant::now();
        if c.store.renew_lease(&o.fence, ttl).await? {
            o.renewed = sent;
        } else {
            lost.push(m.clone());
        }
    }
    for m in lost {
        if let Some(o) = owned.remove(&m) {
            // Stopped at once, not waited for: its writes are refused by
            // the fence from now on anyway.
            tracing::warn!(mailbox = %m, token = o.fence.token, "mailbox lease lost; stopping its tasks");
            o.cancel.cancel();
            app.health.unwatch(&m);
        }
    }
    let live = c.store.live_replicas(ttl).await?;
    let held: Vec<MailboxName> = owned.keys().cloned().collect();
    let plan = rebalance(&c.id, &held, all, live);
    for m in plan.release {
        if let Some(o) = owned.remove(&m) {
            tracing::info!(mailbox = %m, live, "handing a mailbox to a newer replica");
            app.health.unwatch(&m);
            // Off the heartbeat: a slow step must not hold up the renewal
            // of the other leases. Unrenewed meanwhile, the lease expires
            // on its own if the stop outlasts it.
            let store = c.store.clone();
            handovers.spawn(async move {
                o.stop().await;
                if let Err(e) = store.release_lease(&o.fence).await {
                    tracing::warn!(mailbox = %o.fence.resource, error = %e, "could not hand the lease back; it expires on its own");
                }
            });
        }
    }
    let mut want = plan.want;
    for m in plan.candidates {
        if want == 0 || cancel.is_cancelled() {
            break;
        }
        let sent = Instant::now();
        let Some(fence) = c
            .store
            .acquire_lease(&LeaseResource::Mailbox(m.clone()), &c.id, ttl)
            .await?
        else {
            continue;
        };
        want -= 1;
        tracing::info!(mailbox = %m, token = fence.token, "mailbox lease taken; starting its ingest");
        let mailbox_cancel = cancel.child_token();
        let tasks = TaskTracker::new();
        let store = c.store.fenced(fence.clone());
        app.health.watch(&m);
        super::spawn_mailbox(app, &m, store, &tasks, &mailbox_cancel);
        owned.insert(
            m,
            Owned {
                fence,
                renewed: sent,
                cancel: mailbox_cancel,
                tasks,
            },
        );
    }
    // In-flight jobs of replicas that stopped beating: the crash rules.
    // In a task of its own: adopting the jobs and settling them are several
    // statements, which a beat abandoned at its deadline (see `run`) must
    // not cut in between (adopted but unsettled jobs would stay in flight).
    let recovery = {
        let app = app.clone();
        tokio::spawn(async move {
            let recovered = app.store.recover_in_flight(app.now_ms()).await?;
            if !recovered.is_empty() {
                tracing::warn!(
                    jobs = recovered.len(),
                    "recovering jobs a stopped replica left in flight"
                );
                super::outbox::report_recovered(&app, recovered).await;
                app.outbox_wakeup.notify_one();
            }
            Ok::<(), crate::store::StoreError>(())
        })
    };
    match recovery.await {
        Ok(done) => done?,
        Err(e) => tracing::error!(error = %e, "outbox recovery ended abnormally"),
    }
    if beats % 30 == 0 {
        let forget = c.ttl_ms().saturating_mul(i64::from(PRUNE_AFTER_TTLS));
        c.store.prune_replicas(forget.max(600_000)).await?;
    }
    Ok(())
}

/// Runs `task` only while this replica holds `resource`'s lease: waits for
/// it (taking over when its holder stops beating), runs the task with a
/// token cancelled the moment the lease is lost, and starts waiting again.
/// At `cancel`, stops the task and hands the lease back.
pub async fn leased<F, Fut>(
    cluster: Arc<Cluster>,
    resource: LeaseResource,
    task: F,
    cancel: CancellationToken,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ttl = cluster.ttl_ms();
    loop {
        let fence = loop {
            match cluster
                .store
                .acquire_lease(&resource, &cluster.id, ttl)
                .await
            {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(e) => tracing::warn!(%resource, error = %e, "lease: store unavailable"),
            }
            tokio::select! {
                _ = tokio::time::sleep(cluster.heartbeat) => {}
                _ = cancel.cancelled() => return,
            }
        };
        let mut renewed = Instant::now();
        tracing::info!(%resource, token = fence.token, "lease taken; starting");
        let run = cancel.child_token();
        let handle = tokio::spawn(task(run.clone()));
        let stopping = loop {
            tokio::select! {
                _ = tokio::time::sleep(cluster.heartbeat) => {}
                _ = cancel.cancelled() => break true,
            }
            let sent = Instant::now();
            // Bounded by the lease's expiry, as the heartbeat is (see `run`).
            let expiry = (renewed + cluster.lease_ttl).max(sent + cluster.heartbeat);
            let renewal = cluster.store.renew_lease(&fence, ttl);
            let error = match tokio::time::timeout_at(expiry, renewal).await {
                Ok(Ok(true)) => {
                    renewed = sent;
                    continue;
                }
                Ok(Ok(false)) => break false,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer from the database".to_owned(),
            };
            if renewed.elapsed() >= cluster.lease_ttl {
                tracing::warn!(%resource, %error, "lease not renewed in time");
                break false;
            }
            tracing::warn!(%resource, %error, "lease renewal failed; retrying");
        };
        run.cancel();
        if let Err(e) = handle.await {
            tracing::error!(%resource, error = %e, "leased task ended abnormally");
        }
        if stopping {
            if let Err(e) = cluster.store.release_lease(&fence).await {
                tracing::warn!(%resource, error = %e, "could not hand the lease back; it expires on its own");
            }
            return;
        }
        tracing::warn!(%resource, "lease lost; stopped here, waiting to take it again");
    }
}
