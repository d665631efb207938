//! Conformance checks for routing, on SQLite and PostgreSQL (split from
//! `store_conformance.rs` at the routing seam): what a rule decided lands
//! with the ticket in the ingest's transaction, through the state machine.

use std::sync::Arc;

use mailroom::domain::chat::Platform;
use mailroom::domain::ids::{Actor, Tag};
use mailroom::domain::routing::{Mark, Priority, Route};
use mailroom::domain::ticket::{Refusal, Status, TicketEvent, TicketState};
use mailroom::store::sql::SqlStore;
use mailroom::store::*;

use crate::common::audit_actions;
use crate::store_conformance::{agent, inbound, mb, token};

fn tag(s: &str) -> Tag {
    Tag::parse(s).unwrap()
}

/// Tags, priority, owner and room are stored with the new ticket; the
/// owner through the same assign path a teammate uses, audited.
async fn a_route_is_applied_with_the_new_ticket(s: Arc<SqlStore>) {
    let mut new = inbound(
        "routed@customer.example",
        "hr1",
        "carol@customer.example",
        Destination::New { token: token(41) },
        None,
    );
    new.post_to = vec![Platform::Matrix, Platform::Slack];
    new.route = Route {
        rules: vec!["vip".into(), "billing".into()],
        rooms: [(Platform::Matrix, "!vip:localhost".to_owned())].into(),
        tags: [tag("vip"), tag("billing")].into(),
        priority: Priority::Urgent,
        owner: Some((agent("@alice:localhost"), "alice".into())),
        owner_ids: vec![agent("@alice:localhost")],
        auto: None,
        mark: None,
    };
    let Recorded::NewTicket { ticket, .. } = s.record_inbound(new).await.unwrap() else {
        panic!("a new ticket")
    };
    let t = s.ticket(ticket).await.unwrap().unwrap();
    assert_eq!(
        t.state,
        TicketState::Claimed {
            by: agent("@alice:localhost")
        }
    );
    assert_eq!(t.tags, [tag("billing"), tag("vip")].into());
    assert_eq!(t.priority, Priority::Urgent);
    assert_eq!(
        audit_actions(&*s, ticket).await,
        ["created", "routed", "tag", "tag", "assign"]
    );
    let log = s.audit_log(ticket).await.unwrap();
    let routed = &log[1];
    assert_eq!(routed.actor, Actor::System);
    assert!(
        routed.details.contains("rules vip, billing")
            && routed.details.contains("priority urgent")
            && routed.details.contains("@alice:localhost (alice)"),
        "{routed:?}"
    );
    // The root goes to the rule's room on Matrix, the mailbox's on Slack.
    let mut rooms: Vec<(Platform, Option<String>)> = s
        .jobs(&[JobState::Pending])
        .await
        .unwrap()
        .into_iter()
        .filter_map(|j| match j.spec {
            JobSpec::ChatPost { platform, room, .. } => Some((platform, room)),
            _ => None,
        })
        .collect();
    rooms.sort_by_key(|(p, _)| p.as_str());
    assert_eq!(
        rooms,
        [
            (Platform::Matrix, Some("!vip:localhost".into())),
            (Platform::Slack, None)
        ]
    );
    let mine = TicketFilter {
        owner: Some(agent("@alice:localhost")),
        ..TicketFilter::default()
    };
    assert_eq!(s.list_tickets(&mine).await.unwrap().len(), 1);
    // A ticket no rule touched is normal and unrouted.
    let plain = crate::store_conformance::new_ticket(&*s, "plain@customer.example", 42).await;
    let p = s.ticket(plain).await.unwrap().unwrap();
    assert_eq!((p.priority, p.state), (Priority::Normal, TicketState::Open));
    assert_eq!(audit_actions(&*s, plain).await, ["created"]);
}

/// A ticket set aside is kept with its mail, never posted; its customer's
/// follow-ups stay aside; a person can take it out by reopening it.
async fn a_set_aside_ticket_is_kept_and_stays_aside(s: Arc<SqlStore>) {
    let mut new = inbound(
        "spam@customer.example",
        "hs1",
        "carol@customer.example",
        Destination::New { token: token(43) },
        Some(3),
    );
    new.route = Route {
        rules: vec!["spam words".into()],
        tags: [tag("junk")].into(),
        mark: Some(Mark::Spam),
        ..Route::default()
    };
    let Recorded::NewTicket { ticket, .. } = s.record_inbound(new).await.unwrap() else {
        panic!("a new ticket")
    };
    let t = s.ticket(ticket).await.unwrap().unwrap();
    assert_eq!(t.state, TicketState::Spam);
    assert!(s.jobs(&[]).await.unwrap().is_empty(), "nothing is posted");
    assert_eq!(s.emails(ticket).await.unwrap().len(), 1, "the mail is kept");
    assert_eq!(s.checkpoint(&mb()).await.unwrap().unwrap().last_uid, 3);
    let by = |status| TicketFilter {
        status: Some(status),
        ..TicketFilter::default()
    };
    assert_eq!(s.list_tickets(&by(Status::Spam)).await.unwrap().len(), 1);
    assert!(s.list_tickets(&by(Status::Open)).await.unwrap().is_empty());
    assert_eq!(
        audit_actions(&*s, ticket).await,
        ["created", "routed", "tag", "spam"]
    );

    let follow = inbound(
        "spam2@customer.example",
        "hs2",
        "carol@customer.example",
        Destination::FollowUp {
            ticket,
            matched_by: "references",
        },
        None,
    );
    let r = s.record_inbound(follow).await.unwrap();
    assert!(
        matches!(
            r,
            Recorded::FollowUp {
                reopened: false,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(
        s.ticket(ticket).await.unwrap().unwrap().state,
        TicketState::Spam
    );
    assert!(s.jobs(&[]).await.unwrap().is_empty(), "nor its follow-up");
    assert_eq!(s.emails(ticket).await.unwrap().len(), 2);
    assert!(
        audit_actions(&*s, ticket)
            .await
            .contains(&"kept-aside".to_owned())
    );

    let alice = Actor::Agent(agent("@alice:localhost"));
    let claim = TicketEvent::Claim(agent("@alice:localhost"));
    assert_eq!(
        s.apply(ticket, &alice, &claim, &[], 50).await.unwrap(),
        Applied::Refused(Refusal::SetAside(Status::Spam))
    );
    assert_eq!(
        s.apply(ticket, &alice, &TicketEvent::Reopen, &[], 51)
            .await
            .unwrap(),
        Applied::Changed {
            before: TicketState::Spam,
            after: TicketState::Open
        }
    );
}

conformance!(
    a_route_is_applied_with_the_new_ticket,
    a_set_aside_ticket_is_kept_and_stays_aside,
);

/// A database made before routing, holding a ticket with its tags, mail
/// and audit, upgrades in place: SQLite rebuilds its tickets table, which
/// every other table references.
async fn an_old_database_with_tickets_upgrades(db: &crate::common::TestDb, backend: &str) {
    use sqlx::Executor;
    let before = tempfile::tempdir().unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for n in ["0001", "0002", "0003", "0004"] {
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(n))
            .unwrap();
        std::fs::copy(&file, before.path().join(file.file_name().unwrap())).unwrap();
    }
    sqlx::any::install_default_drivers();
    let url = match db.url_text.strip_prefix("sqlite://") {
        Some(path) => {
            std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
            format!("{}?mode=rwc", db.url_text)
        }
        None => db.url_text.clone(),
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(before.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    if backend == "sqlite" {
        pool.execute("PRAGMA foreign_keys = ON").await.unwrap();
    }
    let tok = token(77);
    for sql in [
        format!(
            "INSERT INTO tickets (mailbox, token, subject, subject_key, customer, status, owner, version, created_at, updated_at, last_customer_at) \
             VALUES ('support', '{}', 'Old', 'old', 'carol@customer.example', 'claimed', '@alice:localhost', 1, 1, 1, 1)",
            tok.as_str()
        ),
        "INSERT INTO ticket_tags (ticket_id, tag) VALUES (1, 'vip')".to_owned(),
        "INSERT INTO participants (ticket_id, address) VALUES (1, 'cc@customer.example')".to_owned(),
        "INSERT INTO emails (mailbox, ticket_id, direction, message_id, content_hash, from_addr, subject, stored_at, state, raw, raw_size) \
         VALUES ('support', 1, 'inbound', 'old@customer.example', 'h', 'carol@customer.example', 'Old', 1, 'received', 'x', 1)".to_owned(),
        "INSERT INTO audit_log (ticket_id, at, actor, action, details) VALUES (1, 1, 'system', 'created', 'old')".to_owned(),
    ] {
        pool.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    }
    pool.close().await;

    let s = db.store().await;
    let id = mailroom::domain::ids::TicketId::new(1);
    let t = s.ticket(id).await.unwrap().unwrap();
    assert_eq!(
        t.state,
        TicketState::Claimed {
            by: agent("@alice:localhost")
        }
    );
    assert_eq!(
        (t.priority, t.tags),
        (Priority::Normal, [tag("vip")].into())
    );
    assert_eq!(s.emails(id).await.unwrap().len(), 1);
    assert_eq!(audit_actions(&s, id).await, ["created"]);
    // The wider status is accepted, and the references still hold.
    let applied = s
        .apply(id, &Actor::System, &TicketEvent::Ignore, &[], 5)
        .await
        .unwrap();
    assert!(matches!(applied, Applied::Changed { .. }), "{applied:?}");
    let next = crate::store_conformance::new_ticket(&s, "new@customer.example", 78).await;
    assert_eq!(next.get(), 2, "ids continue after the rebuild");
    s.close().await;
}

#[tokio::test]
async fn an_old_sqlite_database_with_tickets_upgrades() {
    let db = crate::common::TestDb::sqlite();
    an_old_database_with_tickets_upgrades(&db, "sqlite").await;
}

#[tokio::test]
async fn an_old_postgres_database_with_tickets_upgrades() {
    let db = crate::common::TestDb::postgres().await;
    an_old_database_with_tickets_upgrades(&db, "postgres").await;
    db.cleanup().await;
}
