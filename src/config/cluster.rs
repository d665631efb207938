//! `[cluster]`: how replicas sharing one PostgreSQL database prove they are
//! alive and how long a silent one keeps its mailboxes (docs/SCALING.md).
//! Ignored on SQLite, which is single-process.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::Check;
use crate::domain::settings::{secs, text, want};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClusterSettings {
    /// How often a replica renews its registration and leases.
    #[serde(rename = "heartbeat_secs", deserialize_with = "secs::<1, 60, _>")]
    pub heartbeat: Duration,
    /// How long a lease lasts unrenewed: a replica that dies loses its
    /// mailboxes this long after its last heartbeat, and another takes them
    /// within one heartbeat more.
    #[serde(rename = "lease_ttl_secs", deserialize_with = "secs::<2, 600, _>")]
    pub lease_ttl: Duration,
    /// How `mailroom status` and the logs name this replica; the host name
    /// when unset.
    #[serde(deserialize_with = "replica_name")]
    pub replica_name: Option<String>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        // 2 s beats and a 6 s lease: two beats may be lost without losing
        // the lease, and a dead replica's mailboxes move within 8 s.
        ClusterSettings {
            heartbeat: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(6),
            replica_name: None,
        }
    }
}

fn replica_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text(d, |s: String| {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        want(ok, Some(s), |_| {
            "expected 1-64 letters, digits, '-', '_' or '.'".into()
        })
    })
}

impl ClusterSettings {
    /// A lease must outlive a late heartbeat or two, or a busy replica
    /// would lose its mailboxes while alive.
    pub(super) fn check(&self, c: &mut Check) {
        if c.clean("cluster") && self.lease_ttl < self.heartbeat * 2 {
            c.problem(
                "cluster.lease_ttl_secs",
                format!(
                    "must be at least twice cluster.heartbeat_secs ({} s), or one late heartbeat loses the lease",
                    self.heartbeat.as_secs()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Settings;
    use crate::config::tests::{GOOD, assert_problems, env};

    #[test]
    fn defaults_beat_every_two_seconds_with_a_six_second_lease() {
        let s = Settings::parse(GOOD, &env).expect("valid");
        assert_eq!(s.cluster.heartbeat, Duration::from_secs(2));
        assert_eq!(s.cluster.lease_ttl, Duration::from_secs(6));
        assert_eq!(s.cluster.replica_name, None);
        let set = format!(
            "{GOOD}\n[cluster]\nheartbeat_secs = 1\nlease_ttl_secs = 3\nreplica_name = \"web-1\"\n"
        );
        let s = Settings::parse(&set, &env).expect("valid");
        assert_eq!(s.cluster.heartbeat, Duration::from_secs(1));
        assert_eq!(s.cluster.lease_ttl, Duration::from_secs(3));
        assert_eq!(s.cluster.replica_name.as_deref(), Some("web-1"));
    }

    #[test]
    fn bad_cluster_keys_are_named() {
        let bad =
            format!("{GOOD}\n[cluster]\nheartbeat_secs = 0\nreplica_name = \"a b\"\nleases = 3\n");
        assert_problems(
            &bad,
            &env,
            &[
                "cluster.heartbeat_secs: expected 1-60",
                "cluster.replica_name: expected 1-64",
                "cluster.leases: unknown key",
            ],
        );
        let short = format!("{GOOD}\n[cluster]\nheartbeat_secs = 5\nlease_ttl_secs = 6\n");
        assert_problems(
            &short,
            &env,
            &["cluster.lease_ttl_secs: must be at least twice cluster.heartbeat_secs"],
        );
    }
}
