//! Replicas on one PostgreSQL database: who they are, what they lease, and
//! the pure rule that decides how many mailboxes each one should own.
//!
//! A lease names a resource ([`LeaseResource`]: a mailbox's ingest, a Matrix
//! account's sync) and carries a fencing token ([`Fence`]) that grows every
//! time the resource changes hands. The owner's writes check the token, so
//! a replica that was paused past its lease cannot write after another took
//! over (docs/SCALING.md).

use std::fmt;

use super::ids::MailboxName;

/// One running mailroom process sharing the database with others.
///
/// Unique per process start (`<name>-<pid>-<random>`), never reused: a
/// restarted process is a new replica, so jobs the old one left in flight
/// are recognised as a dead replica's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(String);

impl ReplicaId {
    /// A fresh id from the configured name (or host), the pid and a random
    /// suffix (`nonce`, hex).
    pub fn new(name: &str, pid: u32, nonce: &str) -> ReplicaId {
        ReplicaId(format!("{name}-{pid}-{nonce}"))
    }

    /// An id read back from the database.
    pub fn from_stored(s: String) -> ReplicaId {
        ReplicaId(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a lease grants its owner the sole right to run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeaseResource {
    /// A mailbox's ingest and Sent watcher (`mailbox:<name>`).
    Mailbox(MailboxName),
    /// A Matrix bot account's sync loop (`matrix-sync:<user id>`): one
    /// sync per account, or every event would arrive once per replica.
    MatrixSync(String),
}

impl LeaseResource {
    /// The key stored in `leases.resource`.
    pub fn key(&self) -> String {
        match self {
            LeaseResource::Mailbox(m) => format!("mailbox:{m}"),
            LeaseResource::MatrixSync(user) => format!("matrix-sync:{user}"),
        }
    }

    /// Reads a stored key back; `None` for a key this version does not know.
    pub fn parse(key: &str) -> Option<LeaseResource> {
        if let Some(m) = key.strip_prefix("mailbox:") {
            return MailboxName::parse(m).ok().map(LeaseResource::Mailbox);
        }
        key.strip_prefix("matrix-sync:")
            .filter(|u| !u.is_empty())
            .map(|u| LeaseResource::MatrixSync(u.to_owned()))
    }
}

impl fmt::Display for LeaseResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// A held lease as its owner's writes carry it: the write is refused unless
/// the lease row still names this owner and token and has not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub resource: LeaseResource,
    pub owner: ReplicaId,
    pub token: i64,
}

/// How many of `resources` leases each of `live` replicas should hold:
/// the ceiling of the even split, so every resource has room to be owned.
pub fn fair_share(resources: usize, live: usize) -> usize {
    resources.div_ceil(live.max(1))
}

/// What one replica does with its mailbox leases on a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rebalance {
    /// Leases to hand back (their tasks stopped first): the replica holds
    /// more than its share.
    pub release: Vec<MailboxName>,
    /// How many more leases to try to take, in [`Rebalance::candidates`] order.
    pub want: usize,
    /// Mailboxes not held by this replica, in the order to try them.
    pub candidates: Vec<MailboxName>,
}

/// Decides a heartbeat's moves from what this replica holds, every mailbox
/// configured, and how many replicas are alive (this one included).
///
/// Releases only above the share and takes only up to it, so two replicas
/// never trade a lease back and forth: once each holds its share, nothing
/// moves. The extras released are the last by name (any fixed choice does);
/// the candidates start at an offset derived from `me`, so replicas starting
/// together try different mailboxes first instead of racing for one.
pub fn rebalance(
    me: &ReplicaId,
    held: &[MailboxName],
    all: &[MailboxName],
    live: usize,
) -> Rebalance {
    let share = fair_share(all.len(), live);
    let mut held_sorted: Vec<MailboxName> = held.to_vec();
    held_sorted.sort();
    let release = if held_sorted.len() > share {
        held_sorted.split_off(share)
    } else {
        Vec::new()
    };
    let want = share.saturating_sub(held.len());
    let mut candidates: Vec<MailboxName> =
        all.iter().filter(|m| !held.contains(m)).cloned().collect();
    candidates.sort();
    if !candidates.is_empty() {
        let offset = stable_hash(me.as_str()) as usize % candidates.len();
        candidates.rotate_left(offset);
    }
    Rebalance {
        release,
        want,
        candidates,
    }
}

/// FNV-1a: the same on every platform and every run (std's hasher is seeded).
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<MailboxName> {
        (0..n)
            .map(|i| MailboxName::parse(&format!("box{i}")).expect("name"))
            .collect()
    }

    #[test]
    fn shares_round_up_so_every_mailbox_fits() {
        assert_eq!(fair_share(3, 2), 2);
        assert_eq!(fair_share(3, 3), 1);
        assert_eq!(fair_share(4, 2), 2);
        assert_eq!(fair_share(1, 3), 1);
        assert_eq!(fair_share(0, 2), 0);
        assert_eq!(fair_share(5, 0), 5, "no live replica counted: this one");
    }

    #[test]
    fn a_lone_replica_takes_everything_and_releases_nothing() {
        let all = names(3);
        let me = ReplicaId::new("a", 1, "x");
        let r = rebalance(&me, &[], &all, 1);
        assert_eq!(r.want, 3);
        assert!(r.release.is_empty());
        let mut c = r.candidates.clone();
        c.sort();
        assert_eq!(c, all);
    }

    #[test]
    fn a_second_replica_makes_the_first_release_down_to_its_share() {
        let all = names(3);
        let me = ReplicaId::new("a", 1, "x");
        let r = rebalance(&me, &all, &all, 2);
        assert_eq!(r.release, vec![all[2].clone()]);
        assert_eq!(r.want, 0);
    }

    #[test]
    fn a_replica_at_its_share_moves_nothing() {
        let all = names(3);
        let me = ReplicaId::new("b", 2, "y");
        let r = rebalance(&me, &all[..1], &all, 3);
        assert!(r.release.is_empty());
        assert_eq!(r.want, 0);
        // Holding one of three with two alive: may take one more (the
        // share is two), never releases.
        let r = rebalance(&me, &all[..1], &all, 2);
        assert!(r.release.is_empty());
        assert_eq!(r.want, 1);
        assert!(!r.candidates.contains(&all[0]));
    }

    #[test]
    fn replicas_start_their_search_at_different_mailboxes() {
        let all = names(8);
        let firsts: std::collections::BTreeSet<MailboxName> = (0..8)
            .map(|i| {
                let me = ReplicaId::new("host", 100 + i, "n");
                rebalance(&me, &[], &all, 8).candidates[0].clone()
            })
            .collect();
        assert!(firsts.len() > 1, "all replicas would race for one mailbox");
    }

    #[test]
    fn lease_keys_read_back() {
        let m = LeaseResource::Mailbox(MailboxName::parse("support").expect("name"));
        assert_eq!(m.key(), "mailbox:support");
        assert_eq!(LeaseResource::parse(&m.key()), Some(m));
        let s = LeaseResource::MatrixSync("@bot:example.org".into());
        assert_eq!(s.key(), "matrix-sync:@bot:example.org");
        assert_eq!(LeaseResource::parse(&s.key()), Some(s));
        assert_eq!(LeaseResource::parse("mailbox:Bad Name"), None);
        assert_eq!(LeaseResource::parse("matrix-sync:"), None);
        assert_eq!(LeaseResource::parse("other:x"), None);
    }
}
