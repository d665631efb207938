//! Scenario 1: `mailroom run` SIGKILLed at random moments while it ingests a
//! backlog into a Matrix room, restarted each time.
//!
//! The kill moments are drawn over the whole job, not over wall time: the
//! run's progress is "tickets stored + threads posted" (0 ..= 2N, read from
//! the store), and each of the K kills comes when progress passes a random
//! point of that range, so kills land in IMAP ingest and in chat posting
//! alike, whatever the machine's speed.

use std::time::{Duration, Instant};

use crate::harness::{
    Daemon, Db, Figures, MatrixWorld, SERIAL, StoreProbe, rand_below, sizes, tail,
};

async fn progress(probe: &StoreProbe) -> u64 {
    let t = probe.tickets().await.unwrap_or(0);
    let p = probe.threads().await.unwrap_or(0);
    (t + p) as u64
}

/// Polls the progress every `every` until `done` holds for it, and returns
/// it; the daemon must keep running, and `deadline` is not passed (or the
/// test fails with `stuck`'s words and the daemon's log).
async fn progress_until(
    p: &StoreProbe,
    d: &mut Daemon,
    deadline: Instant,
    every: Duration,
    done: impl Fn(u64) -> bool,
    stuck: impl Fn(u64) -> String,
) -> u64 {
    loop {
        let now = progress(p).await;
        if done(now) {
            return now;
        }
        d.assert_running();
        assert!(
            Instant::now() < deadline,
            "{}; log:\n{}",
            stuck(now),
            tail(&d.log, 60)
        );
        tokio::time::sleep(every).await;
    }
}

pub async fn run(db: Db) {
    let _serial = SERIAL.lock().await;
    crate::setup();
    let sz = sizes();
    let (n, k) = (sz.emails, sz.kills);
    let w = MatrixWorld::new(db).await;
    w.append(0..n).await;
    let config = w.config(w.hs.port, w.stack.imap_port);
    let total = 2 * n as u64;
    let mut points: Vec<u64> = (0..k).map(|_| 1 + rand_below(total - 1)).collect();
    points.sort_unstable();

    let limit = Duration::from_secs(120 + n as u64);
    let mut recoveries: Vec<u128> = Vec::new();
    let mut probe: Option<StoreProbe> = None;
    let mut killed_at = Vec::new();
    for (i, point) in points.iter().enumerate() {
        let before = match &probe {
            Some(p) => progress(p).await,
            None => 0,
        };
        let started = Instant::now();
        let mut d = w.spawn(&config);
        let p = match &probe {
            Some(p) => p,
            None => probe.insert(StoreProbe::open(&w.db).await),
        };
        // Recovery: from the restart to the first new ticket or post.
        let deadline = Instant::now() + limit;
        let every = Duration::from_millis(20);
        let moved = |now: u64| now > before || now >= total;
        let stuck = |_| format!("no progress within {limit:?} after restart {i}");
        progress_until(p, &mut d, deadline, every, moved, stuck).await;
        if i > 0 {
            recoveries.push(started.elapsed().as_millis());
        }
        let every = Duration::from_millis(10);
        let reached = |now: u64| now >= *point;
        let stuck = |now| format!("progress stuck at {now} < {point}");
        killed_at.push(progress_until(p, &mut d, deadline, every, reached, stuck).await);
        d.kill9();
    }

    // The last start runs to the end.
    let p = match &probe {
        Some(p) => p,
        None => probe.insert(StoreProbe::open(&w.db).await),
    };
    let before = progress(p).await;
    let started = Instant::now();
    let d = w.spawn(&config);
    let mut last_recovery = None;
    let t = loop {
        let now = progress(p).await;
        if last_recovery.is_none() && (now > before || now >= total) {
            last_recovery = Some(started.elapsed().as_millis());
        }
        if now >= total {
            break w.settle(n, limit).await;
        }
        assert!(
            started.elapsed() < limit,
            "stuck at progress {now}/{total}; log:\n{}",
            tail(&d.log, 60)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if k > 0 {
        recoveries.extend(last_recovery);
    }
    let tickets = p.tickets().await.unwrap_or(-1);
    let threads = p.threads().await.unwrap_or(-1);
    let failed = p.failed_jobs().await.unwrap_or(-1);
    let code = d.stop().await;
    if let Some(p) = probe {
        p.close().await;
    }

    let figures = Figures {
        runs: k + 1,
        emails: n,
        lost: t.lost,
        duplicated: t.duplicated,
        recovery_ms: recoveries.iter().copied().max().unwrap_or(0),
        extra: vec![
            ("kills".into(), k.to_string()),
            (
                "recovery_mean_ms".into(),
                (recoveries.iter().sum::<u128>() / recoveries.len().max(1) as u128).to_string(),
            ),
            ("in_order".into(), t.in_order.to_string()),
            ("tickets".into(), tickets.to_string()),
            (
                "killed_at_progress".into(),
                killed_at
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ],
    };
    figures.print("kill9", db);
    let log = w.dir.path().join("mailroom.log");
    t.assert_each_once(n, "every email has exactly one root", &log);
    assert_eq!(
        (tickets, threads, failed),
        (n as i64, n as i64, 0),
        "the store"
    );
    assert_eq!(code, Some(0), "SIGTERM at the end exits 0");
    w.db.cleanup().await;
}
