//! Conformance checks for replicas and leases ([`ClusterStore`]), on SQLite
//! and PostgreSQL: tokens only grow, a held lease cannot be taken, an
//! expired or released one can, and a fenced write lands only while its
//! lease is current. (Replicas run on PostgreSQL only; the same SQL on
//! SQLite keeps the schemas and the store one.)

use std::sync::Arc;
use std::time::Duration;

use mailroom::domain::cluster::{LeaseResource, ReplicaId};
use mailroom::domain::ids::MailboxName;
use mailroom::domain::mailbox::Checkpoint;
use mailroom::store::sql::SqlStore;
use mailroom::store::*;

use crate::common::poll_every;

fn replica(s: &str) -> (ReplicaId, NewReplica) {
    let id = ReplicaId::new(s, 7, "c0");
    let new = NewReplica {
        id: id.clone(),
        name: s.into(),
        host: "host".into(),
        pid: 7,
    };
    (id, new)
}

async fn leases_fence_writes_and_tokens_only_grow(s: Arc<SqlStore>) {
    let (a, new_a) = replica("a");
    let (b, new_b) = replica("b");
    s.register_replica(&new_a).await.unwrap();
    s.register_replica(&new_b).await.unwrap();
    assert_eq!(s.live_replicas(60_000).await.unwrap(), 2);
    let before = s.db_now_ms().await.unwrap();
    assert!(
        before > 1_700_000_000_000,
        "the database clock in Unix ms: {before}"
    );

    let mailbox = MailboxName::parse("support").unwrap();
    let res = LeaseResource::Mailbox(mailbox.clone());
    let fa = s.acquire_lease(&res, &a, 60_000).await.unwrap().unwrap();
    assert_eq!(fa.token, 1);
    assert_eq!(
        s.acquire_lease(&res, &b, 60_000).await.unwrap(),
        None,
        "a held lease was taken"
    );
    assert!(s.renew_lease(&fa, 60_000).await.unwrap());
    let cp = Checkpoint {
        uid_validity: 9,
        last_uid: 3,
    };
    let by_a = s.fenced(fa.clone());
    by_a.save_checkpoint(&mailbox, cp, 1).await.unwrap();
    assert_eq!(s.checkpoint(&mailbox).await.unwrap(), Some(cp));

    // Released: b takes it with the next token; a's writes are refused.
    s.release_lease(&fa).await.unwrap();
    let fb = s.acquire_lease(&res, &b, 60_000).await.unwrap().unwrap();
    assert_eq!(fb.token, 2);
    assert!(!s.renew_lease(&fa, 60_000).await.unwrap());
    let late = Checkpoint {
        uid_validity: 9,
        last_uid: 1,
    };
    let refused = by_a.save_checkpoint(&mailbox, late, 2).await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { token: 1, .. })),
        "{refused:?}"
    );
    let refused = by_a.begin_ingest().await.unwrap().commit().await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    assert_eq!(s.checkpoint(&mailbox).await.unwrap(), Some(cp));
    s.fenced(fb.clone())
        .save_checkpoint(&mailbox, late, 3)
        .await
        .unwrap();

    // Expired: a short lease is free once the database's clock passes it.
    let sync = LeaseResource::MatrixSync("@bot:example.org".into());
    let short = s.acquire_lease(&sync, &a, 1).await.unwrap().unwrap();
    let taken = poll_every(
        "a 1 ms lease expires",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async { s.acquire_lease(&sync, &b, 60_000).await.unwrap() },
    )
    .await;
    assert_eq!(taken.token, short.token + 1);
    assert!(!s.renew_lease(&short, 60_000).await.unwrap());

    let st = s.cluster_status().await.unwrap();
    assert_eq!(st.replicas.len(), 2);
    let owners: Vec<(&str, &str, i64)> = st
        .leases
        .iter()
        .map(|l| (l.resource.as_str(), l.owner.as_str(), l.token))
        .collect();
    assert_eq!(
        owners,
        vec![
            ("mailbox:support", b.as_str(), 2),
            ("matrix-sync:@bot:example.org", b.as_str(), 2),
        ]
    );
    assert!(st.leases.iter().all(|l| l.expires_at_ms > st.now_ms));

    // Leaving frees every lease of the replica and forgets it.
    s.leave(&b).await.unwrap();
    let st = s.cluster_status().await.unwrap();
    assert_eq!(st.replicas.len(), 1);
    assert!(st.leases.iter().all(|l| l.expires_at_ms <= st.now_ms));
    let again = s.acquire_lease(&res, &a, 60_000).await.unwrap().unwrap();
    assert_eq!(again.token, 3, "tokens never reset");
    assert!(!s.heartbeat(&b).await.unwrap(), "b was forgotten");
    assert!(s.heartbeat(&a).await.unwrap());
}

conformance!(leases_fence_writes_and_tokens_only_grow);
