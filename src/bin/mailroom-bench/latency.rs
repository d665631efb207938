//! The `latency` stage.

use std::time::{Duration, Instant};

use mailroom::mail::imap;

use crate::bridge::{bridge, start, stop, wait_seen};
use crate::common::{Env, mail};

/// APPEND → the ticket's root message seen by another Matrix client.
pub async fn latency(env: &Env, emails: usize, pace: Duration) -> anyhow::Result<Vec<f64>> {
    let b = bridge(env).await?;
    let (app, cancel, handles) = start(b.settings.clone()).await?;
    // Warm up: the bot must have joined and posted once.
    let mut writer = b.warm_up(env).await?;
    let mut sent = Vec::new();
    for i in 0..emails {
        let subject = format!("Latency {i:04}");
        let raw = mail(
            &format!("c{i}@bench.example"),
            &b.support.0,
            &format!("lat{i}@bench"),
            &subject,
        );
        writer.append("INBOX", None, None, raw).await?;
        sent.push((subject, Instant::now()));
        tokio::time::sleep(pace).await;
    }
    let mut out = Vec::new();
    for (subject, at) in &sent {
        let seen_at = wait_seen(&b.seen, subject, Duration::from_secs(60)).await?;
        out.push(seen_at.duration_since(*at).as_secs_f64() * 1000.0);
    }
    imap::logout(writer).await;
    stop(app, cancel, handles).await;
    b.finish();
    Ok(out)
}
