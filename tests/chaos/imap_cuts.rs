//! Scenario 3: the IMAP connection cut mid-FETCH and mid-IDLE.
//!
//! mailroom reaches Dovecot through a forwarder. Mid-FETCH: the forwarder
//! cuts itself once Dovecot has sent half the bytes of a backlog of large
//! emails (so the cut falls inside a body FETCH); mid-IDLE: once everything
//! is in and the connection has been quiet, it is cut and new mail arrives.
//! Both times the port is open again at once (a dropped connection, the
//! server still there): recovery is the time from the cut to the next
//! email stored, i.e. how fast mailroom notices and reconnects.
//!
//! Restarting Dovecot itself is not done: the stack's Dovecot is shared by
//! every worktree's tests running at the same time, so the forwarder cut
//! stands in for it (to mailroom both are a dropped connection followed by a
//! reconnect; a restarted Dovecot keeps UIDVALIDITY and UIDs).

use std::time::{Duration, Instant};

use crate::cuttable::Cuttable;
use crate::harness::{Db, Figures, MatrixWorld, SERIAL, StoreProbe, log_count, poll, sizes, tail};

const EVERY: Duration = Duration::from_millis(20);
/// Filler per email: a backlog of n of them is a large FETCH.
const PAD: usize = 20_000;

pub async fn run(db: Db) {
    let _serial = SERIAL.lock().await;
    crate::setup();
    let n = sizes().emails.max(8);
    let more = (n / 10).max(5);
    let limit = Duration::from_secs(120 + n as u64);
    let w = MatrixWorld::new(db).await;
    let proxy = Cuttable::start(w.stack.imap_port).await;
    let config = w.config(w.hs.port, proxy.port);
    w.append_to("INBOX", 0..n, PAD).await;

    // Mid-FETCH.
    proxy.cut_after_downstream((n * PAD / 2) as u64);
    let mut d = w.spawn(&config);
    let probe = StoreProbe::open(&w.db).await;
    poll("the cut mid-FETCH", limit, EVERY, || async {
        (proxy.cuts() == 1).then_some(())
    })
    .await;
    let cut_at = Instant::now();
    let stored_at_cut = probe.tickets().await.unwrap_or(0);
    proxy.restore().await;
    let fetch_recovery = poll("ingest after the FETCH cut", limit, EVERY, || async {
        (probe.tickets().await.unwrap_or(0) > stored_at_cut).then(|| cut_at.elapsed().as_millis())
    })
    .await;
    poll(
        "the whole backlog stored",
        limit,
        Duration::from_millis(100),
        || async { (probe.tickets().await.unwrap_or(0) as usize >= n).then_some(()) },
    )
    .await;
    d.assert_running();

    // Mid-IDLE: wait until the connection is quiet (mailroom idling).
    let mut last = (proxy.downstream_bytes(), Instant::now());
    poll(
        "the IMAP connection to go quiet",
        limit,
        Duration::from_millis(100),
        || {
            let now = proxy.downstream_bytes();
            if now != last.0 {
                last = (now, Instant::now());
            }
            let quiet = last.1.elapsed() >= Duration::from_secs(1);
            async move { quiet.then_some(()) }
        },
    )
    .await;
    proxy.cut();
    let cut_at = Instant::now();
    proxy.restore().await;
    w.append_to("INBOX", n..n + more, 0).await;
    let idle_recovery = poll("ingest after the IDLE cut", limit, EVERY, || async {
        (probe.tickets().await.unwrap_or(0) as usize > n).then(|| cut_at.elapsed().as_millis())
    })
    .await;
    let total = n + more;
    let t = w.settle(total, limit).await;
    let tickets = probe.tickets().await.unwrap_or(-1);
    let failed = probe.failed_jobs().await.unwrap_or(-1);
    d.assert_running();
    let code = d.stop().await;
    probe.close().await;

    Figures {
        runs: 1,
        emails: total,
        lost: t.lost,
        duplicated: t.duplicated,
        recovery_ms: fetch_recovery.max(idle_recovery),
        extra: vec![
            ("fetch_cut_recovery_ms".into(), fetch_recovery.to_string()),
            ("idle_cut_recovery_ms".into(), idle_recovery.to_string()),
            ("stored_at_fetch_cut".into(), stored_at_cut.to_string()),
            (
                "reconnects_logged".into(),
                log_count(&w.log(), "IMAP connection lost").to_string(),
            ),
            ("in_order".into(), t.in_order.to_string()),
        ],
    }
    .print("imap_cuts", db);
    assert_eq!(
        (t.lost, t.duplicated, t.roots),
        (0, 0, total),
        "nothing skipped, nothing twice; log:\n{}",
        tail(&w.log(), 40)
    );
    assert!(t.in_order, "roots in arrival order");
    assert!(
        (stored_at_cut as usize) < n,
        "the cut fell inside the backlog's FETCH"
    );
    assert_eq!((tickets, failed), (total as i64, 0), "the store");
    // "Within seconds": the reconnect backoff starts at 0.5 s.
    assert!(
        fetch_recovery < 10_000 && idle_recovery < 10_000,
        "reconnected within seconds"
    );
    assert_eq!(code, Some(0));
    w.db.cleanup().await;
}
