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

    /// With `MAILROOM_BENCH_LOG` set, prints the log so far, each line with
    /// the milliseconds since the start.
    fn print_log(&self) {
        if std::env::var_os("MAILROOM_BENCH_LOG").is_some()
            && let Ok(lines) = self.log.lock()
        {
            for (line, at) in lines.iter() {
                let ms = at.duration_since(self.started).as_millis();
                eprintln!("{ms:>8} {line}");
            }
        }
    }

    /// SIGTERM, then wait at most `limit` for the exit (SIGKILL after, and
    /// an error): how it ended and how long the stop took. A clean stop
    /// ends with status 0. The log is printed as [`Daemon::stop`] does.
    pub async fn stop_within(
        mut self,
        limit: Duration,
    ) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
        self.print_log();
        let asked = Instant::now();
        let sent = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        if !sent.success() {
            bail!("kill -TERM {}: {sent}", self.child.id());
        }
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, asked.elapsed()));
            }
            if asked.elapsed() > limit {
                // Only this child, by its handle: never a process by name.
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "mailroom run still running {} s after SIGTERM; killed",
                    limit.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM, then wait: mailroom stops cleanly. With
    /// `MAILROOM_BENCH_LOG=1` its log is printed, each line with the
    /// milliseconds since start, to see where the time went
    /// (`MAILROOM_BENCH_DAEMON_LOG` sets its filter).
    pub fn stop(mut self) {
        self.print_log();
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// A stage that fails or is stopped by its time limit before it stopped
/// its daemon must not leave it running: killed, by its own handle, if it
/// has not exited yet.
impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What `/proc` tells of a process's resources beyond memory: for the
/// `many` stage, which asks whether 200 mailboxes cost 200 of anything.
/// Plain file reads: call from a blocking thread.
pub mod resources {
    use std::collections::HashSet;

    use anyhow::Context;

    /// Open file descriptors.
    pub fn open_fds(pid: u32) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
            .with_context(|| format!("/proc/{pid}/fd"))?
            .count())
    }

    /// CPU time the process has used so far, user and system, in ms
    /// (`/proc/PID/stat` fields 14 and 15, in clock ticks of 1/100 s: the
    /// kernel's USER_HZ, 100 on every Linux architecture mailroom runs on).
    pub fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("/proc/{pid}/stat"))?;
        // "PID (comm) state ppid …": comm may hold spaces, so fields are
        // counted after its closing parenthesis (field 3 is the first).
        let after = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest)
            .with_context(|| format!("unexpected /proc/{pid}/stat"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| -> anyhow::Result<f64> {
            Ok(fields
                .get(i - 3)
                .with_context(|| format!("/proc/{pid}/stat: no field {i}"))?
                .parse::<f64>()?)
        };
        Ok((ticks(14)? + ticks(15)?) * 10.0)
    }

    /// Threads (the `Threads:` line of `/proc/PID/status`).
    pub fn threads(pid: u32) -> anyhow::Result<usize> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no Threads: line in /proc/{pid}/status"))
    }

    /// Established TCP connections the process holds to `port` (on any
    /// address): its sockets (`socket:[INODE]` links in `/proc/PID/fd`)
    /// matched by inode against the connection tables of its network
    /// namespace (`/proc/PID/net/tcp` and `tcp6`). Needs no `ss` and
    /// counts this process only, not the bench's own connections.
    pub fn tcp_connections_to(pid: u32, port: u16) -> anyhow::Result<usize> {
        let mut inodes = HashSet::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .with_context(|| format!("/proc/{pid}/fd"))?
        {
            // A descriptor closed between the listing and the read is gone:
            // skipped, as it would be a moment later.
            let Ok(target) = std::fs::read_link(entry?.path()) else {
                continue;
            };
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
        let mut count = 0;
        for table in ["tcp", "tcp6"] {
            let path = format!("/proc/{pid}/net/{table}");
            // No tcp6 table without IPv6: nothing to count there.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            count += text
                .lines()
                .skip(1)
                .filter(|line| is_established_to(line, port, &inodes))
                .count();
        }
        Ok(count)
    }

    /// One line of `/proc/net/tcp`: `sl local rem st tx:rx tr:when retr
    /// uid timeout inode …`, addresses as `HEXIP:HEXPORT`, state `01`
    /// for ESTABLISHED.
    fn is_established_to(line: &str, port: u16, inodes: &HashSet<String>) -> bool {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(remote), Some(state), Some(inode)) =
            (fields.get(2), fields.get(3), fields.get(9))
        else {
            return false;
        };
        let remote_port = remote
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        *state == "01" && remote_port == Some(port) && inodes.contains(*inode)
    }

    /// Resets the peak resident size (`VmHWM`) to the current one
    /// (`echo 5 > /proc/PID/clear_refs`, Linux 4.0), so that a later peak
    /// is the peak of what happened since, not of the start.
    pub fn reset_peak(pid: u32) -> anyhow::Result<()> {
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
            .with_context(|| format!("resetting the peak RSS of {pid} (/proc/{pid}/clear_refs)"))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn established_connections_to_the_port_are_counted_by_inode() {
            let ours: HashSet<String> = ["4242".to_owned()].into();
            // 127.0.0.1:40000 -> 127.0.0.1:34143 (0x855F), established.
            let line = "   3: 0100007F:9C40 0100007F:855F 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1";
            assert!(is_established_to(line, 0x855F, &ours));
            assert!(!is_established_to(line, 0x855E, &ours), "another port");
            assert!(
                !is_established_to(line, 0x855F, &HashSet::new()),
                "another process's socket"
            );
            let listening = line.replace(" 01 ", " 0A ");
            assert!(!is_established_to(&listening, 0x855F, &ours));
        }
    }
}
