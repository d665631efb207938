//! Auto-assignment in the store, on SQLite and PostgreSQL: the pick made
//! in the ingest's transaction (turns, loads, caps, away marks), a claim
//! taking over an untouched pick, and fairness when mails arrive at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use mailroom::domain::assign::{AutoAssign, Candidate, Strategy};
use mailroom::domain::chat::Platform;
use mailroom::domain::ids::{Actor, Agent, TicketId};
use mailroom::domain::routing::Route;
use mailroom::domain::ticket::{Refusal, TicketEvent, TicketState};
use mailroom::store::sql::SqlStore;
use mailroom::store::*;

use crate::common::{TestDb, audit_actions};
use crate::store_conformance::{agent, inbound};

fn pool(name: &str, strategy: Strategy, cap: Option<u32>, people: &[&str]) -> AutoAssign {
    AutoAssign {
        pool: name.into(),
        strategy,
        cap,
        candidates: people
            .iter()
            .map(|p| Candidate {
                name: (*p).into(),
                agent: agent(&format!("@{p}:localhost")),
                agents: vec![
                    agent(&format!("@{p}:localhost")),
                    agent(&format!("slack:U0{}", p.to_uppercase().replace('-', ""))),
                ],
            })
            .collect(),
        unavailable: BTreeMap::new(),
    }
}

/// A new ticket of mail `n` routed to `auto`; its owner, if any.
async fn ingest(s: &dyn TicketStore, n: u32, auto: &AutoAssign) -> (TicketId, Option<Agent>) {
    let mut new = inbound(
        &format!("auto{n}@customer.example"),
        &format!("ha{n}"),
        "carol@customer.example",
        Destination::New {
            token: mailroom::bridge::ingest::new_token(),
        },
        None,
    );
    new.post_to = vec![Platform::Matrix, Platform::Slack];
    new.route = Route {
        auto: Some(auto.clone()),
        ..Route::default()
    };
    let Recorded::NewTicket { ticket, .. } = s.record_inbound(new).await.unwrap() else {
        panic!("a new ticket")
    };
    let owner = s
        .ticket(ticket)
        .await
        .unwrap()
        .unwrap()
        .state
        .owner()
        .cloned();
    (ticket, owner)
}

fn name(a: &Option<Agent>) -> &str {
    a.as_ref()
        .map(|a| {
            a.as_str()
                .trim_start_matches('@')
                .split(':')
                .next()
                .unwrap()
        })
        .unwrap_or("nobody")
}

async fn picks_take_turns_and_skip_away_and_capped_people(s: Arc<SqlStore>) {
    let s: &dyn TicketStore = s.as_ref();
    let rr = pool(
        "group billing",
        Strategy::RoundRobin,
        Some(2),
        &["alice", "bob", "carol"],
    );
    let mut got = Vec::new();
    for n in 0..3 {
        got.push(name(&ingest(s, n, &rr).await.1).to_owned());
    }
    assert_eq!(got, ["alice", "bob", "carol"]);
    // bob says !away: skipped until back; the turn goes on past him.
    let bob = Actor::Agent(agent("@bob:localhost"));
    s.set_away("bob", None, &bob, 10).await.unwrap();
    assert_eq!(s.away(11).await.unwrap()[0].person, "bob");
    let (t, owner) = ingest(s, 3, &rr).await;
    assert_eq!(name(&owner), "alice");
    let (_, owner) = ingest(s, 4, &rr).await;
    assert_eq!(name(&owner), "carol");
    // alice and carol are at their cap of 2, bob is away: nobody.
    let (nobody, owner) = ingest(s, 5, &rr).await;
    assert_eq!(owner, None);
    assert_eq!(
        s.ticket(nobody).await.unwrap().unwrap().state,
        TicketState::Open
    );
    let log = s.audit_log(nobody).await.unwrap();
    let skipped = log
        .iter()
        .find(|e| e.action == "auto-assign-skipped")
        .unwrap();
    assert_eq!(
        skipped.details,
        "nobody is free in group billing: alice (at cap (2/2)), bob (away), carol (at cap (2/2))"
    );
    // The audit of a pick says how and why; the thread hears it, the
    // owner mentioned under their id on each platform, after the root.
    assert_eq!(
        audit_actions(s, t).await,
        ["created", "auto-assigned", "assign"]
    );
    let log = s.audit_log(t).await.unwrap();
    assert_eq!(
        log[1].details,
        "alice (@alice:localhost), round robin in group billing, after carol"
    );
    let jobs: Vec<JobSpec> = s
        .jobs(&[JobState::Pending])
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.ticket == Some(t))
        .map(|j| j.spec)
        .collect();
    assert!(
        matches!(
            jobs[0],
            JobSpec::ChatPost {
                platform: Platform::Matrix,
                ..
            }
        ),
        "{jobs:?}"
    );
    match &jobs[1] {
        JobSpec::ChatMention {
            platform: Platform::Matrix,
            text,
            mentions,
        } => {
            assert!(
                text.starts_with("👤 Assigned to @alice:localhost: round robin"),
                "{text}"
            );
            assert_eq!(mentions, &["@alice:localhost"]);
        }
        other => panic!("{other:?}"),
    }
    match &jobs[3] {
        JobSpec::ChatMention {
            platform: Platform::Slack,
            text,
            mentions,
        } => {
            assert!(text.starts_with("👤 Assigned to slack:U0ALICE:"), "{text}");
            assert_eq!(mentions, &["slack:U0ALICE"]);
        }
        other => panic!("{other:?}"),
    }
    let told = s.jobs(&[JobState::Pending]).await.unwrap();
    assert!(told.iter().any(|j| j.ticket == Some(nobody)
        && matches!(&j.spec, JobSpec::ChatNotice { text, .. } if text.starts_with("👤 Not assigned: nobody is free"))));
    // bob is back (once), and alice's closing a ticket frees a slot.
    assert!(s.set_back("bob", &bob, 20).await.unwrap());
    assert!(!s.set_back("bob", &bob, 21).await.unwrap());
    assert!(s.away(22).await.unwrap().is_empty());
    let (_, owner) = ingest(s, 6, &rr).await;
    assert_eq!(name(&owner), "bob");
    // An away mark with an end runs out by itself.
    s.set_away("bob", Some(100), &bob, 30).await.unwrap();
    assert_eq!(s.away(99).await.unwrap().len(), 1);
    assert!(s.away(100).await.unwrap().is_empty());
}

async fn least_loaded_counts_active_tickets_under_every_id(s: Arc<SqlStore>) {
    let s: &dyn TicketStore = s.as_ref();
    let ll = pool(
        "mailbox support",
        Strategy::LeastLoaded,
        None,
        &["dora", "erik"],
    );
    // dora already owns two tickets, one under her Slack id.
    for (n, who) in [(40, "@dora:localhost"), (41, "slack:U0DORA")] {
        let t = crate::store_conformance::new_ticket(s, &format!("pre{n}@x"), n as u8).await;
        let by = Actor::Agent(agent(who));
        s.apply(t, &by, &TicketEvent::Claim(agent(who)), &[], 5)
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    for n in 50..54 {
        got.push(name(&ingest(s, n, &ll).await.1).to_owned());
    }
    // erik catches up first, then they take turns.
    assert_eq!(got, ["erik", "erik", "dora", "erik"]);
}

/// A pick stands until a teammate touches the ticket: until then, a claim
/// by someone else takes it over; after, claims are refused as usual.
async fn a_claim_takes_over_an_untouched_pick(s: Arc<SqlStore>) {
    let s: &dyn TicketStore = s.as_ref();
    let rr = pool("group billing", Strategy::RoundRobin, None, &["alice"]);
    let (t, owner) = ingest(s, 60, &rr).await;
    assert_eq!(name(&owner), "alice");
    let bob = agent("@bob:localhost");
    let applied = s
        .apply(
            t,
            &Actor::Agent(bob.clone()),
            &TicketEvent::Claim(bob.clone()),
            &[],
            70,
        )
        .await
        .unwrap();
    assert_eq!(
        applied,
        Applied::Changed {
            before: TicketState::Claimed {
                by: agent("@alice:localhost")
            },
            after: TicketState::Claimed { by: bob.clone() }
        }
    );
    let log = s.audit_log(t).await.unwrap();
    let last = log.last().unwrap();
    assert_eq!(last.action, "claim");
    assert!(
        last.details.ends_with("(over the auto-assignment)"),
        "{last:?}"
    );
    let carol = agent("@carol:localhost");
    let refused = s
        .apply(
            t,
            &Actor::Agent(carol.clone()),
            &TicketEvent::Claim(carol),
            &[],
            71,
        )
        .await
        .unwrap();
    assert_eq!(
        refused,
        Applied::Refused(Refusal::AlreadyClaimed { by: bob })
    );
    // Once the picked owner acts on the ticket, it is theirs.
    let (t2, _) = ingest(s, 61, &rr).await;
    let alice = agent("@alice:localhost");
    s.apply(
        t2,
        &Actor::Agent(alice.clone()),
        &TicketEvent::AddTag(mailroom::domain::ids::Tag::parse("x").unwrap()),
        &[],
        72,
    )
    .await
    .unwrap();
    let dave = agent("@dave:localhost");
    let refused = s
        .apply(
            t2,
            &Actor::Agent(dave.clone()),
            &TicketEvent::Claim(dave),
            &[],
            73,
        )
        .await
        .unwrap();
    assert_eq!(
        refused,
        Applied::Refused(Refusal::AlreadyClaimed { by: alice })
    );
}

conformance!(
    picks_take_turns_and_skip_away_and_capped_people,
    least_loaded_counts_active_tickets_under_every_id,
    a_claim_takes_over_an_untouched_pick,
);

/// 8 mails at once (8 tasks; on PostgreSQL 8 connections) to 3 people,
/// `ROUNDS` times per strategy: every round gives 3/3/2, no turn taken
/// twice. Prints the distribution and timings (`--nocapture`).
async fn eight_at_once_to_three_is_3_3_2(s: Arc<SqlStore>, backend: &str) {
    const ROUNDS: u32 = 5;
    for strategy in [Strategy::RoundRobin, Strategy::LeastLoaded] {
        let mut times = Vec::new();
        for round in 0..ROUNDS {
            // Fresh people each round for least loaded (their loads start
            // equal); round robin keeps one pool and its cursor going.
            let people: Vec<String> = match strategy {
                Strategy::RoundRobin => ["ann", "ben", "cat"].map(String::from).to_vec(),
                Strategy::LeastLoaded => ["ann", "ben", "cat"]
                    .map(|p| format!("{p}-{round}"))
                    .to_vec(),
            };
            let refs: Vec<&str> = people.iter().map(String::as_str).collect();
            let auto = pool(
                &format!("group {}", strategy.as_str()),
                strategy,
                None,
                &refs,
            );
            let start = Instant::now();
            let tasks: Vec<_> = (0..8u32)
                .map(|i| {
                    let (s, auto) = (s.clone(), auto.clone());
                    let n = 1000 * (strategy as u32 + 1) + 10 * round + i;
                    tokio::spawn(async move { ingest(s.as_ref(), n, &auto).await.1 })
                })
                .collect();
            let mut count: BTreeMap<String, u32> = BTreeMap::new();
            for t in tasks {
                *count.entry(name(&t.await.unwrap()).to_owned()).or_default() += 1;
            }
            let took = start.elapsed();
            times.push(took.as_millis());
            let mut shares: Vec<u32> = count.values().copied().collect();
            shares.sort_unstable();
            eprintln!(
                "fairness {backend} {} round {round}: {count:?} in {} ms",
                strategy.as_str(),
                took.as_millis()
            );
            assert!(!count.contains_key("nobody"), "{count:?}");
            assert_eq!(
                shares,
                [2, 3, 3],
                "{backend} {strategy} round {round}: {count:?}"
            );
        }
        eprintln!(
            "fairness {backend} {}: 8 concurrent ingests took {times:?} ms",
            strategy.as_str()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_at_once_to_three_is_3_3_2_on_sqlite() {
    let db = TestDb::sqlite();
    let s = Arc::new(db.store().await);
    eight_at_once_to_three_is_3_3_2(s, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_at_once_to_three_is_3_3_2_on_postgres() {
    let db = TestDb::postgres().await;
    // Eight connections, so the eight ingests really are at once.
    let s = Arc::new(SqlStore::connect(&db.url, 8).await.unwrap());
    s.migrate().await.unwrap();
    eight_at_once_to_three_is_3_3_2(s.clone(), "postgres").await;
    s.close().await;
    db.cleanup().await;
}
