//! The `process` stage: startup and memory of a separate `mailroom run`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailroom::mail::imap;

use crate::bridge::{bridge, wait_seen};
use crate::common::{Env, imap_settings};

/// `mailroom run` as a process: time to IMAP IDLE and Matrix connected, idle
/// memory, and the peak while a mail with a 25 MB attachment goes through.
/// Returns startup ms, idle RSS and the anonymous part of it (memory
/// mailroom allocated, as opposed to its executable's pages mapped from
/// disk), and the peak RSS around the large mail, all MiB.
pub async fn process_figures(env: &Env) -> anyhow::Result<(f64, f64, f64, f64)> {
    let b = bridge(env).await?;
    let d = b.spawn()?;
    let imap = d
        .wait_log("IMAP connected", Duration::from_secs(60))
        .await?;
    let matrix = d
        .wait_log("matrix connected", Duration::from_secs(60))
        .await?;
    let startup = imap.max(matrix).duration_since(d.started).as_secs_f64() * 1000.0;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = d.rss_mb();
    let idle_anon = d.rss_kb("RssAnon:") / 1024.0;
    if std::env::var_os("MAILROOM_BENCH_LOG").is_some() {
        eprintln!(
            "idle: RssAnon {:.1} MiB, RssFile {:.1} MiB, threads {}",
            d.rss_kb("RssAnon:") / 1024.0,
            d.rss_kb("RssFile:") / 1024.0,
            d.rss_kb("Threads:")
        );
        for line in d.rss_by_mapping() {
            eprintln!("  {line}");
        }
    }
    let big = "A".repeat(25 * 1024 * 1024 / 76 * 76);
    let mut body = String::with_capacity(big.len() + big.len() / 76 * 2 + 1024);
    for chunk in big.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        body.push_str("\r\n");
    }
    let raw = format!(
        "From: Big <big@bench.example>\r\nTo: {to}\r\nSubject: Big attachment\r\nMessage-ID: <big@bench>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
         --b\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}--b--\r\n",
        to = b.support.0
    );
    let mut writer = imap::connect_password(&imap_settings(env, &b.support)).await?;
    // With MAILROOM_BENCH_LOG set, the daemon's memory is sampled every
    // 10 ms and printed as lines beside its log, to see which step peaks.
    let sampling = std::env::var_os("MAILROOM_BENCH_LOG").is_some().then(|| {
        let (pid, log, started) = (d.child.id(), d.log.clone(), d.started);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let handle = std::thread::spawn(move || {
            let mut last: f64 = 0.0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|st| {
                        st.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    })
                    .unwrap_or(0.0)
                    / 1024.0;
                if (rss - last).abs() >= 4.0 {
                    last = rss;
                    if let Ok(mut v) = log.lock() {
                        v.push((format!("[rss {rss:.0} MiB]"), Instant::now()));
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = started;
        });
        (done, handle)
    });
    writer.append("INBOX", None, None, raw.into_bytes()).await?;
    imap::logout(writer).await;
    wait_seen(&b.seen, "Big attachment", Duration::from_secs(120)).await?;
    // Let the upload of the attachment into the thread finish too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let peak = d.peak_mb();
    if let Some((done, handle)) = sampling {
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = handle.join();
    }
    d.stop();
    b.finish();
    Ok((startup, idle, idle_anon, peak))
}
