//! `mailroom status`: who is running on this database. On PostgreSQL the
//! replicas (heartbeat age, jobs in flight) and the leases (owner, fencing
//! token, time left); on SQLite, that it is single-process and which
//! process holds the database.

use std::io::Write;
use std::path::Path;

use crate::store::ClusterStatus;
use crate::store::sql::lock::SqliteLock;

/// How old a heartbeat may be before the replica is shown as dead.
pub struct Liveness {
    pub ttl_ms: i64,
}

/// Prints the cluster's state as a few aligned tables.
pub fn print_cluster(
    status: &ClusterStatus,
    live: &Liveness,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let now = status.now_ms;
    let secs = |ms: i64| format!("{:.1}s", ms as f64 / 1000.0);
    writeln!(
        out,
        "database: PostgreSQL, replicas share the mailboxes by lease"
    )?;
    writeln!(out)?;
    writeln!(out, "replicas: {}", status.replicas.len())?;
    if !status.replicas.is_empty() {
        writeln!(
            out,
            "  {:<40} {:<20} {:>8} {:>10} {:>6} {:>9}",
            "ID", "HOST", "PID", "HEARTBEAT", "STATE", "IN FLIGHT"
        )?;
    }
    for r in &status.replicas {
        let age = now - r.heartbeat_at_ms;
        let state = if age < live.ttl_ms { "live" } else { "dead" };
        writeln!(
            out,
            "  {:<40} {:<20} {:>8} {:>10} {:>6} {:>9}",
            r.id.as_str(),
            r.host,
            r.pid,
            format!("{} ago", secs(age)),
            state,
            r.in_flight
        )?;
    }
    if status.in_flight_unowned > 0 {
        writeln!(
            out,
            "  in flight with no registered taker: {} (recovered by the next live replica)",
            status.in_flight_unowned
        )?;
    }
    writeln!(out)?;
    writeln!(out, "leases: {}", status.leases.len())?;
    if !status.leases.is_empty() {
        writeln!(
            out,
            "  {:<40} {:<40} {:>6} {:>12}",
            "RESOURCE", "OWNER", "TOKEN", "EXPIRES IN"
        )?;
    }
    for l in &status.leases {
        let left = l.expires_at_ms - now;
        let expires = if left > 0 {
            secs(left)
        } else {
            "free".to_owned()
        };
        writeln!(
            out,
            "  {:<40} {:<40} {:>6} {:>12}",
            l.resource,
            l.owner.as_str(),
            l.token,
            expires
        )?;
    }
    Ok(())
}

/// SQLite: single-process; names the process holding the database.
pub fn print_sqlite(database: Option<&Path>, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "database: SQLite, single-process (use PostgreSQL for replicas)"
    )?;
    let Some(path) = database else {
        writeln!(out, "in memory: no other process can reach it")?;
        return Ok(());
    };
    match SqliteLock::holder(path)? {
        Some(pid) => writeln!(out, "running: mailroom pid {pid} holds {}", path.display())?,
        None => writeln!(out, "running: no mailroom process holds {}", path.display())?,
    }
    Ok(())
}
