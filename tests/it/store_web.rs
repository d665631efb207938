//! The dashboard's sign-in rows on SQLite and PostgreSQL: a link opens
//! once, an expired or unknown one is refused with its reason, sessions
//! end at their expiry, only hashes are stored, and both steps are audited.
//! The queue's rows, read for all tickets at once, are what the per-ticket
//! reads give.

use std::sync::Arc;

use mailroom::domain::web::{Redeemed, SecretHash};
use mailroom::store::sql::SqlStore;
use mailroom::store::*;
use sqlx::Row;

use crate::store_conformance::agent;

fn link(secret: &str, expires_at_ms: i64) -> NewWebLink {
    NewWebLink {
        token: SecretHash::of(secret),
        agent: agent("@alice:localhost"),
        expires_at_ms,
        via: "matrix".into(),
    }
}

fn session(secret: &str, expires_at_ms: i64) -> NewWebSession {
    NewWebSession {
        id: SecretHash::of(secret),
        expires_at_ms,
    }
}

pub async fn web_links_open_once_and_sessions_expire(s: Arc<SqlStore>) {
    let alice = agent("@alice:localhost");
    s.issue_web_link(&link("tok-1", 10_000), 1_000)
        .await
        .unwrap();
    s.issue_web_link(&link("tok-2", 10_000), 1_000)
        .await
        .unwrap();

    // Two opens of one link at once: exactly one signs in.
    let tok = SecretHash::of("tok-1");
    let (sa, sb) = (session("s-a", 50_000), session("s-b", 50_000));
    let (a, b) = tokio::join!(
        s.redeem_web_link(&tok, &sa, 2_000),
        s.redeem_web_link(&tok, &sb, 2_000),
    );
    let mut got = [a.unwrap(), b.unwrap()];
    got.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(
        got,
        [Redeemed::AlreadyUsed, Redeemed::SignedIn(alice.clone())]
    );
    let winner = if s
        .web_session(&SecretHash::of("s-a"), 3_000)
        .await
        .unwrap()
        .is_some()
    {
        "s-a"
    } else {
        "s-b"
    };
    let loser = if winner == "s-a" { "s-b" } else { "s-a" };
    assert_eq!(
        s.web_session(&SecretHash::of(winner), 3_000).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        s.web_session(&SecretHash::of(loser), 3_000).await.unwrap(),
        None
    );
    // Reused later: still refused as used, not as expired.
    assert_eq!(
        s.redeem_web_link(&SecretHash::of("tok-1"), &session("s-c", 50_000), 20_000)
            .await
            .unwrap(),
        Redeemed::AlreadyUsed
    );
    // Past its expiry a link is refused as expired, and opens nothing.
    assert_eq!(
        s.redeem_web_link(&SecretHash::of("tok-2"), &session("s-d", 50_000), 10_000)
            .await
            .unwrap(),
        Redeemed::Expired
    );
    assert_eq!(
        s.web_session(&SecretHash::of("s-d"), 10_001).await.unwrap(),
        None
    );
    assert_eq!(
        s.redeem_web_link(&SecretHash::of("nope"), &session("s-e", 50_000), 2_000)
            .await
            .unwrap(),
        Redeemed::Unknown
    );
    // A session ends at its expiry.
    assert_eq!(
        s.web_session(&SecretHash::of(winner), 50_000)
            .await
            .unwrap(),
        None
    );

    // Only hashes are stored.
    let secrets: Vec<String> = sqlx::query(
        "SELECT token_hash AS h FROM web_links UNION ALL SELECT id_hash AS h FROM web_sessions",
    )
    .fetch_all(s.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<String, _>("h").unwrap())
    .collect();
    assert!(!secrets.is_empty());
    assert!(
        secrets
            .iter()
            .all(|h| h.len() == 64 && !h.contains("tok") && !h.contains("s-")),
        "{secrets:?}"
    );

    // Both steps are in the audit log, with who and how.
    let rows = sqlx::query(
        "SELECT actor, action, details FROM audit_log WHERE ticket_id IS NULL ORDER BY id",
    )
    .fetch_all(s.pool())
    .await
    .unwrap();
    let lines: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("actor").unwrap(),
                r.try_get("action").unwrap(),
                r.try_get("details").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                "agent:@alice:localhost".into(),
                "dashboard-link-issued".into(),
                "via matrix, valid 9 s".into()
            ),
            (
                "agent:@alice:localhost".into(),
                "dashboard-link-issued".into(),
                "via matrix, valid 9 s".into()
            ),
            (
                "agent:@alice:localhost".into(),
                "dashboard-signed-in".into(),
                String::new()
            ),
        ]
    );

    // A new link sweeps expired links and sessions away.
    s.issue_web_link(&link("tok-3", 200_000), 100_000)
        .await
        .unwrap();
    let left: i64 = sqlx::query("SELECT COUNT(*) AS n FROM web_links")
        .fetch_one(s.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(left, 1, "only the fresh link is left");
    let sessions: i64 = sqlx::query("SELECT COUNT(*) AS n FROM web_sessions")
        .fetch_one(s.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(sessions, 0);
}

/// The queue's reads (a query per table for all waiting tickets) give what
/// the per-ticket reads give: the ticket with its tags, its chat threads,
/// its SLA facts; oldest first, at most `limit`. `list_tickets` (tags in
/// the same query) keeps its tags too.
pub async fn the_queue_reads_what_per_ticket_reads_read(s: Arc<SqlStore>) {
    use mailroom::domain::chat::Platform;
    use mailroom::domain::ids::Actor;
    use mailroom::domain::ids::Tag;
    use mailroom::domain::ticket::{Status, TicketEvent};
    let seeded = crate::dashboard::seed(s.as_ref()).await;
    let billing = Tag::parse("billing").unwrap();
    let urgent = Tag::parse("urgent").unwrap();
    for tag in [&billing, &urgent] {
        s.apply(
            seeded.claimed,
            &Actor::Agent(agent("@alice:localhost")),
            &TicketEvent::AddTag(tag.clone()),
            &[],
            1_000,
        )
        .await
        .unwrap();
    }
    let queue = s.queue_tickets(100).await.unwrap();
    let ids: Vec<_> = queue.iter().map(|q| q.ticket.id).collect();
    assert_eq!(ids, seeded.waiting);
    for q in &queue {
        let id = q.ticket.id;
        assert_eq!(Some(&q.ticket), s.ticket(id).await.unwrap().as_ref());
        let mut threads = Vec::new();
        for p in [Platform::Matrix, Platform::Slack] {
            threads.extend(s.chat_thread(id, p).await.unwrap());
        }
        assert_eq!(q.threads, threads, "ticket {id}");
        assert_eq!(q.sla, s.sla_record(id).await.unwrap(), "ticket {id}");
    }
    let claimed = queue
        .iter()
        .find(|q| q.ticket.id == seeded.claimed)
        .unwrap();
    assert_eq!(claimed.ticket.tags.len(), 2);
    assert_eq!(claimed.threads.len(), 1);
    let pending = queue
        .iter()
        .find(|q| q.ticket.state.status() == Status::Pending)
        .unwrap();
    assert_eq!(pending.sla.pauses.len(), 1, "{pending:?}");
    let first_two = s.queue_tickets(2).await.unwrap();
    let first_two: Vec<_> = first_two.iter().map(|q| q.ticket.id).collect();
    assert_eq!(first_two, seeded.waiting[..2]);

    let listed = s
        .list_tickets(&TicketFilter {
            status: Some(Status::Claimed),
            ..Default::default()
        })
        .await
        .unwrap();
    let listed_claimed = listed.iter().find(|t| t.id == seeded.claimed).unwrap();
    assert_eq!(listed_claimed.tags, claimed.ticket.tags);
    assert_eq!(listed.len(), 2, "the hostile and the invoice, each once");

    let (owners, tags) = s.owners_and_tags().await.unwrap();
    let owners: Vec<String> = owners.iter().map(|a| a.to_string()).collect();
    assert_eq!(owners, ["@alice:localhost", "@bob:localhost"]);
    assert_eq!(tags, [billing, urgent]);
}

conformance!(
    web_links_open_once_and_sessions_expire,
    the_queue_reads_what_per_ticket_reads_read
);
