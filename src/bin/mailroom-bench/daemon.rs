//! A `mailroom run` process and what `/proc` says of its memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;

/// A `mailroom run` process, for figures only a separate process shows
/// (startup, memory).
pub struct Daemon {
    pub child: std::process::Child,
    pub started: Instant,
    pub log: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Daemon {
    pub fn rss_kb(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field).map(|v| {
                    v.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .unwrap_or(f64::NAN)
                })
            })
            .unwrap_or(f64::NAN)
    }

    /// Resident memory by mapping (`/proc/PID/smaps`), largest first, as
    /// lines for the diagnostics `MAILROOM_BENCH_LOG` prints.
    pub fn rss_by_mapping(&self) -> Vec<String> {
        let smaps =
            std::fs::read_to_string(format!("/proc/{}/smaps", self.child.id())).unwrap_or_default();
        let mut maps: Vec<(u64, String)> = Vec::new();
        let mut current = String::new();
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or_default();
            if first.contains('-') && !first.ends_with(':') {
                // "start-end perms offset dev inode [path]"
                let perms = fields.next().unwrap_or_default();
                let path = fields.nth(3).unwrap_or("[anon]");
                current = format!("{perms} {path}");
            } else if first == "Rss:" {
                let kb = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                maps.push((kb, current.clone()));
            }
        }
        maps.sort_by_key(|m| std::cmp::Reverse(m.0));
        maps.into_iter()
            .take(8)
            .map(|(kb, m)| format!("{:>8.1} MiB  {m}", kb as f64 / 1024.0))
            .collect()
    }

    /// Current resident memory, MiB.
    pub fn rss_mb(&self) -> f64 {
        self.rss_kb("VmRSS:") / 1024.0
    }

    /// Peak resident memory so far, MiB.
    pub fn peak_mb(&self) -> f64 {
        self.rss_kb("VmHWM:") / 1024.0
    }

    pub async fn wait_log(&self, needle: &str, limit: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let hit = self.log.lock().ok().and_then(|v| {
                v.iter()
                    .find(|(l, _)| l.contains(needle))
                    .map(|(_, at)| *at)
            });
            if let Some(at) = hit {
                return Ok(at);
            }
            if Instant::now() > deadline {
                bail!("mailroom run never logged {needle:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGTERM, then wait: mailroom stops cleanly. With
    /// `MAILROOM_BENCH_LOG=1` its log is printed, each line with the
    /// milliseconds since start, to see where the time went
    /// (`MAILROOM_BENCH_DAEMON_LOG` sets its filter).
    pub fn stop(mut self) {
        if std::env::var_os("MAILROOM_BENCH_LOG").is_some()
            && let Ok(lines) = self.log.lock()
        {
            for (line, at) in lines.iter() {
                let ms = at.duration_since(self.started).as_millis();
                eprintln!("{ms:>8} {line}");
            }
        }
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
