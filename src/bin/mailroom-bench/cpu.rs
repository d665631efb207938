//! CPU time spent by groups of processes over a stretch of a stage, read
//! from `/proc` (Linux's clock ticks, 100 a second): where the two cores
//! went while several processes shared them.

use std::collections::BTreeMap;

/// Clock ticks a second (`getconf CLK_TCK`; 100 on every Linux build this
/// runs on).
const TICKS_PER_S: f64 = 100.0;

/// One reading: ticks used so far by each process, and the machine's busy
/// and total ticks.
#[derive(Debug, Clone, Default)]
pub struct CpuReading {
    per_pid: BTreeMap<u32, (String, u64)>,
    busy: u64,
    total: u64,
}

/// CPU seconds per group between two readings, and the machine's busy share.
#[derive(Debug, Clone)]
pub struct CpuUse {
    pub groups: Vec<(&'static str, f64)>,
    /// Of both cores, 0–1.
    pub machine_busy: f64,
    pub elapsed_s: f64,
}

impl CpuReading {
    pub fn now() -> CpuReading {
        let mut per_pid = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Some(t) = process_ticks(pid) {
                    per_pid.insert(pid, t);
                }
            }
        }
        let (busy, total) = machine_ticks().unwrap_or((0, 0));
        CpuReading {
            per_pid,
            busy,
            total,
        }
    }

    /// What was used from `self` to `later`, grouped: `replicas` by pid,
    /// the rest by process name (Synapse runs as `python3…`, PostgreSQL's
    /// backends as `postgres`, Dovecot's as `imap`, `dovecot`, `auth`…).
    pub fn until(&self, later: &CpuReading, replicas: &[u32], elapsed_s: f64) -> CpuUse {
        let mut groups: Vec<(&'static str, f64)> = vec![
            ("mailroom", 0.0),
            ("synapse", 0.0),
            ("postgres", 0.0),
            ("dovecot", 0.0),
            ("other", 0.0),
        ];
        for (pid, (name, ticks)) in &later.per_pid {
            let before = self
                .per_pid
                .get(pid)
                .filter(|(n, _)| n == name)
                .map_or(0, |(_, t)| *t);
            let used = ticks.saturating_sub(before) as f64 / TICKS_PER_S;
            let group = if replicas.contains(pid) {
                0
            } else if name.starts_with("python") || name.contains("synapse") {
                1
            } else if name.starts_with("postgres") {
                2
            } else if [
                "imap", "dovecot", "auth", "anvil", "config", "log", "stats", "lmtp",
            ]
            .iter()
            .any(|d| name.starts_with(d))
            {
                3
            } else {
                4
            };
            groups[group].1 += used;
        }
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        CpuUse {
            groups,
            machine_busy: later.busy.saturating_sub(self.busy) as f64 / total,
            elapsed_s,
        }
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CPU s over {:.1} s: ", self.elapsed_s)?;
        for (i, (name, s)) in self.groups.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{name} {s:.1}")?;
        }
        write!(f, "; machine busy {:.0}%", self.machine_busy * 100.0)
    }
}

/// (name, user + system ticks) of a process, from `/proc/<pid>/stat`.
fn process_ticks(pid: u32) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces; the fields after it
    // are space-separated, utime and stime the 12th and 13th.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// (busy, total) ticks of all cores, from `/proc/stat`'s `cpu` line.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are the 4th and 5th.
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read_and_grouped() {
        let before = CpuReading::now();
        // Half a second of this process's own work.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(500);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = CpuReading::now();
        let me = std::process::id();
        let used = before.until(&after, &[me], 0.5);
        // At least some of it on a core, however busy the machine.
        assert!(used.groups[0].1 >= 0.05, "{used}");
        assert!(used.groups[0].1 <= 1.5, "{used}");
        assert!(
            used.machine_busy > 0.0 && used.machine_busy <= 1.0,
            "{used}"
        );
    }
}
