//! A `mailroom run` process and what `/proc` says of its memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

/// A `mailroom run` process, for figures only a separate process shows
/// (startup, memory).
pub struct Daemon {
    pub child: std::process::Child,
    pub started: Instant,
    pub log: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl Daemon {
    /// Starts `mailroom --config CONFIG run` (the `mailroom` executable
    /// beside this one) with `envs`, its log kept in memory.
    pub fn spawn(config: &std::path::Path, envs: &[(&str, &str)]) -> anyhow::Result<Daemon> {
        use std::io::BufRead;
        let exe = std::env::current_exe()?.with_file_name("mailroom");
        let started = Instant::now();
        let mut child = std::process::Command::new(&exe)
            .arg("--config")
            .arg(config)
            .arg("run")
            .envs(envs.iter().copied())
            .env(
                "MAILROOM_LOG",
                std::env::var("MAILROOM_BENCH_DAEMON_LOG").unwrap_or_else(|_| {
                    "info,sqlx=warn,matrix_sdk=warn,matrix_sdk_base=warn,matrix_sdk_crypto=error"
                        .into()
                }),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("starting {} (build it with --bin mailroom)", exe.display())
            })?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let log: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut v) = l.lock() {
                    v.push((line, Instant::now()));
                }
            }
        });
        Ok(Daemon {
            child,
            started,
            log,
        })
    }

    /// How the process ended, with its last log lines, if it has.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok().flatten()?;
        let tail = self
            .log
            .lock()
            .map(|v| {
                v.iter()
                    .rev()
                    .take(5)
                    .rev()
                    .map(|(l, _)| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        Some(format!("{status}; log:\n{tail}"))
    }

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
