//! Scenario 2a: the Matrix homeserver stopped for T seconds mid-ingest.
//!
//! Synapse itself is stopped (`scripts/stack stop-synapse`) and started again
//! after T seconds (`start-synapse`, which returns once it answers). Other
//! test binaries never run at the same time as this one, and scenarios
//! within it are serialised. Half the emails are
//! in the mailbox at the start, the other half arrive during the outage:
//! ingest must go on (tickets stored), posting must resume after the
//! outage, each email once and in arrival order.

use std::time::{Duration, Instant};

use crate::harness::{Db, Figures, MatrixWorld, SERIAL, StoreProbe, log_count, poll, sizes};

const EVERY: Duration = Duration::from_millis(50);

pub async fn run(db: Db) {
    let _serial = SERIAL.lock().await;
    crate::setup();
    let sz = sizes();
    let (n, outage) = (sz.emails.max(8), sz.outage);
    let limit = Duration::from_secs(120 + n as u64);
    let w = MatrixWorld::new(db).await;
    let config = w.config(w.hs.port, w.stack.imap_port);
    let half = n / 2;
    w.append(0..half).await;
    let mut d = w.spawn(&config);
    let probe = StoreProbe::open(&w.db).await;

    // Cut once a quarter of the threads are out: mid-ingest, mid-posting.
    poll("a quarter of the threads", limit, EVERY, || async {
        (probe.threads().await.unwrap_or(0) as usize >= n / 4).then_some(())
    })
    .await;
    d.assert_running();
    w.stack.control(&["stop-synapse"]).await;
    let cut_at = Instant::now();
    let posted_before = probe.threads().await.unwrap_or(0);
    w.append(half..n).await;
    // Ingest does not depend on the homeserver: every email is stored
    // during the outage.
    let ingested_during = poll(
        "ingest during the outage",
        outage + limit,
        EVERY,
        || async {
            let t = probe.tickets().await.unwrap_or(0) as usize;
            (t >= n || cut_at.elapsed() >= outage).then_some(t)
        },
    )
    .await;
    // The outage itself lasts `outage`.
    if let Some(rest) = outage.checked_sub(cut_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    d.assert_running();
    let posted_during = probe.threads().await.unwrap_or(0) - posted_before;
    w.stack.control(&["start-synapse"]).await;
    let restored = Instant::now();
    let recovery = poll("the first post after the outage", limit, EVERY, || async {
        (probe.threads().await.unwrap_or(0) > posted_before + posted_during)
            .then(|| restored.elapsed().as_millis())
    })
    .await;
    let t = w.settle(n, limit).await;
    let all_posted_ms = restored.elapsed().as_millis();
    let threads = probe.threads().await.unwrap_or(-1);
    let end = probe.finish(d).await;

    Figures::once(
        n,
        &t,
        recovery,
        vec![
            ("outage_s".into(), outage.as_secs().to_string()),
            ("posted_before".into(), posted_before.to_string()),
            ("posted_during".into(), posted_during.to_string()),
            ("stored_during".into(), ingested_during.to_string()),
            ("all_posted_after_ms".into(), all_posted_ms.to_string()),
            ("in_order".into(), t.in_order.to_string()),
            (
                "warn_lines_logged".into(),
                log_count(&w.log(), "WARN").to_string(),
            ),
        ],
    )
    .print("matrix_outage", db);
    t.assert_each_once(n, "one root per email", &w.log());
    assert_eq!(
        posted_during, 0,
        "nothing can be posted while Synapse is stopped"
    );
    assert_eq!(ingested_during, n, "ingest went on during the outage");
    assert_eq!(
        (end.tickets, threads, end.failed),
        (n as i64, n as i64, 0),
        "the store"
    );
    assert_eq!(end.code, Some(0));
    w.db.cleanup().await;
}
