//! Scenario 3: the IMAP connection cut mid-FETCH and mid-IDLE, and Dovecot
//! restarted.
//!
//! mailroom reaches Dovecot through a forwarder. Mid-FETCH: the forwarder
//! cuts itself once Dovecot has sent half the bytes of a backlog of large
//! emails (so the cut falls inside a body FETCH); mid-IDLE: once everything
//! is in and the connection has been quiet, it is cut and new mail arrives.
//! Both times the port is open again at once (a dropped connection, the
//! server still there): recovery is the time from the cut to the next
//! email stored, i.e. how fast mailroom notices and reconnects.
//!
//! Then Dovecot itself is restarted (`scripts/stack restart-dovecot`) while
//! mailroom idles: the connection drops and the port stays closed until the
//! new Dovecot answers; recovery is the time from Dovecot answering again to
//! the next email stored. (Other test binaries never run at the same time as
//! this one, and scenarios within it are serialised.)

use std::time::{Duration, Instant};

use crate::cuttable::Cuttable;
use crate::harness::{Db, Figures, MatrixWorld, SERIAL, StoreProbe, log_count, poll, sizes};

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
    wait_quiet(&proxy, limit).await;
    proxy.cut();
    let cut_at = Instant::now();
    proxy.restore().await;
    w.append_to("INBOX", n..n + more, 0).await;
    let idle_recovery = poll("ingest after the IDLE cut", limit, EVERY, || async {
        (probe.tickets().await.unwrap_or(0) as usize > n).then(|| cut_at.elapsed().as_millis())
    })
    .await;

    // Dovecot restarted while mailroom idles.
    let before = n + more;
    poll("the mail of the IDLE cut stored", limit, EVERY, || async {
        (probe.tickets().await.unwrap_or(0) as usize >= before).then_some(())
    })
    .await;
    wait_quiet(&proxy, limit).await;
    let restart_began = Instant::now();
    w.stack.control(&["restart-dovecot"]).await;
    let up_again = Instant::now();
    let restart_ms = up_again.duration_since(restart_began).as_millis();
    w.append_to("INBOX", before..before + more, 0).await;
    let restart_recovery = poll("ingest after the Dovecot restart", limit, EVERY, || async {
        (probe.tickets().await.unwrap_or(0) as usize > before)
            .then(|| up_again.elapsed().as_millis())
    })
    .await;
    let total = before + more;
    let t = w.settle(total, limit).await;
    let end = probe.finish(d).await;

    Figures::once(
        total,
        &t,
        fetch_recovery.max(idle_recovery).max(restart_recovery),
        vec![
            ("fetch_cut_recovery_ms".into(), fetch_recovery.to_string()),
            ("idle_cut_recovery_ms".into(), idle_recovery.to_string()),
            ("dovecot_restart_ms".into(), restart_ms.to_string()),
            (
                "dovecot_restart_recovery_ms".into(),
                restart_recovery.to_string(),
            ),
            ("stored_at_fetch_cut".into(), stored_at_cut.to_string()),
            (
                "reconnects_logged".into(),
                log_count(&w.log(), "IMAP connection lost").to_string(),
            ),
            ("in_order".into(), t.in_order.to_string()),
        ],
    )
    .print("imap_cuts", db);
    t.assert_each_once(total, "nothing skipped, nothing twice", &w.log());
    assert!(
        (stored_at_cut as usize) < n,
        "the cut fell inside the backlog's FETCH"
    );
    assert_eq!((end.tickets, end.failed), (total as i64, 0), "the store");
    // "Within seconds": the reconnect backoff starts at 0.5 s.
    assert!(
        fetch_recovery < 10_000 && idle_recovery < 10_000 && restart_recovery < 10_000,
        "reconnected within seconds"
    );
    assert_eq!(end.code, Some(0));
    w.db.cleanup().await;
}

/// Waits until the IMAP connection has carried nothing for a second
/// (mailroom idling).
async fn wait_quiet(proxy: &Cuttable, limit: Duration) {
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
}
