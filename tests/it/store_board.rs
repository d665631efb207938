//! Conformance checks for the board's queries, on SQLite and PostgreSQL:
//! a room's open tickets with their threads, the rooms that get a board,
//! and the board message kept per room.

use std::sync::Arc;

use mailroom::domain::chat::{ChatThread, Platform};
use mailroom::domain::ids::Actor;
use mailroom::domain::ticket::{Status, TicketEvent};
use mailroom::store::sql::SqlStore;
use mailroom::store::*;

use crate::store_conformance::{agent, new_ticket};

fn thread(platform: Platform, room: &str, root: &str) -> ChatThread {
    ChatThread {
        platform,
        room: room.to_owned(),
        thread_ref: root.to_owned(),
    }
}

/// Only open tickets whose thread is in the room, with their owner and
/// thread; closed ones and other rooms' are left out.
async fn a_rooms_board_lists_its_open_tickets(s: Arc<SqlStore>) {
    let a = new_ticket(&*s, "b1@customer.example", 1).await;
    let b = new_ticket(&*s, "b2@customer.example", 2).await;
    let c = new_ticket(&*s, "b3@customer.example", 3).await;
    let elsewhere = new_ticket(&*s, "b4@customer.example", 4).await;
    s.link_chat_thread(a, &thread(Platform::Matrix, "!r:x", "$a"))
        .await
        .unwrap();
    s.link_chat_thread(b, &thread(Platform::Matrix, "!r:x", "$b"))
        .await
        .unwrap();
    s.link_chat_thread(c, &thread(Platform::Matrix, "!r:x", "$c"))
        .await
        .unwrap();
    s.link_chat_thread(elsewhere, &thread(Platform::Slack, "C1", "1.2"))
        .await
        .unwrap();
    let alice = agent("@alice:localhost");
    s.apply(
        b,
        &Actor::Agent(alice.clone()),
        &TicketEvent::Claim(alice.clone()),
        &[],
        5,
    )
    .await
    .unwrap();
    s.apply(c, &Actor::System, &TicketEvent::Close, &[], 6)
        .await
        .unwrap();

    let mut rows = s.board_tickets(Platform::Matrix, "!r:x").await.unwrap();
    rows.sort_by_key(|r| r.ticket);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (rows[0].ticket, rows[0].status, rows[0].owner.clone()),
        (a, Status::Open, None)
    );
    assert_eq!(
        (rows[1].ticket, rows[1].status, rows[1].owner.clone()),
        (b, Status::Claimed, Some(alice))
    );
    assert_eq!(rows[1].thread_ref, "$b");
    assert_eq!(rows[0].customer, "carol@customer.example");
    assert!(rows.iter().all(|r| r.snoozed_until_ms.is_none()));
    assert!(
        s.board_tickets(Platform::Slack, "!r:x")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.board_rooms(Platform::Matrix).await.unwrap(), ["!r:x"]);
    assert_eq!(s.board_rooms(Platform::Slack).await.unwrap(), ["C1"]);
}

/// One board message per room, replaced when posted anew; a room with a
/// board keeps getting it drawn after its last ticket closed.
async fn the_board_message_is_kept_per_room(s: Arc<SqlStore>) {
    assert_eq!(
        s.board_message(Platform::Matrix, "!r:x").await.unwrap(),
        None
    );
    s.save_board_message(Platform::Matrix, "!r:x", "$board1", 1)
        .await
        .unwrap();
    s.save_board_message(Platform::Matrix, "!other:x", "$board9", 1)
        .await
        .unwrap();
    assert_eq!(
        s.board_message(Platform::Matrix, "!r:x")
            .await
            .unwrap()
            .as_deref(),
        Some("$board1")
    );
    s.save_board_message(Platform::Matrix, "!r:x", "$board2", 2)
        .await
        .unwrap();
    assert_eq!(
        s.board_message(Platform::Matrix, "!r:x")
            .await
            .unwrap()
            .as_deref(),
        Some("$board2")
    );
    assert_eq!(
        s.board_message(Platform::Slack, "!r:x").await.unwrap(),
        None
    );
    let mut rooms = s.board_rooms(Platform::Matrix).await.unwrap();
    rooms.sort();
    assert_eq!(rooms, ["!other:x", "!r:x"]);
}

conformance!(
    a_rooms_board_lists_its_open_tickets,
    the_board_message_is_kept_per_room,
);
