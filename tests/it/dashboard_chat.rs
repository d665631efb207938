//! `!mailroom dashboard` on both platforms, end to end: the command typed
//! in the mailbox's room (and Slack's `/mailroom dashboard`) answers with a
//! one-time link only the teammate sees (a direct room on Matrix, an
//! ephemeral message on Slack), the room is told no secret, a non-member
//! gets no link, and the link signs a browser in on the dashboard the
//! daemon serves.

use std::time::Duration;

use matrix_sdk::config::SyncSettings;
use matrix_sdk::room::MessagesOptions;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::{Running, wait_for};

const WAIT: Duration = Duration::from_secs(40);

/// The first `http://…/login?token=…` in `text` (Slack wraps links as `<url>`).
fn link_in(text: &str) -> Option<String> {
    let at = text.find("http://")?;
    let url: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '>' | '|'))
        .collect();
    url.contains("/login?token=").then_some(url)
}

/// The dashboard of a running mailroom, served on a free loopback port
/// with the settings' `[web]` (whose `listen` names that port).
async fn dashboard(run: &Running, listener: tokio::net::TcpListener) -> CancellationToken {
    let cancel = CancellationToken::new();
    tokio::spawn(mailroom::web::serve(
        run.app.web_handles(),
        listener,
        cancel.clone(),
    ));
    cancel
}

async fn web_listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = l.local_addr().expect("its address");
    (l, format!("[web]\nlisten = \"{addr}\"\n"))
}

/// Opening the link signs in once: a session cookie, then 410.
async fn signs_in_once(url: &str) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let first = http.get(url).send().await.expect("an answer");
    assert_eq!(first.status(), 200);
    let cookie = first.headers()["set-cookie"].to_str().expect("ascii");
    assert!(
        cookie.starts_with("mailroom_session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let again = http.get(url).send().await.expect("an answer");
    assert_eq!(again.status(), 410);
}

async fn audited(store: &mailroom::store::sql::SqlStore, who: &str, via: &str) {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT actor, action, details FROM audit_log WHERE action LIKE 'dashboard-%' ORDER BY id",
    )
    .fetch_all(store.pool())
    .await
    .expect("the audit log");
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let (a, b, c): (String, String, String) = (
                r.try_get("actor").expect("actor"),
                r.try_get("action").expect("action"),
                r.try_get("details").expect("details"),
            );
            format!("{a} {b} {c}")
        })
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("agent:{who} dashboard-link-issued via {via}"))),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("agent:{who} dashboard-signed-in"))),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn slack_dashboard_links_come_privately_and_sign_in_once() {
    use crate::slack::{Mode, World};
    let w = World::new(Mode::Socket).await;
    let (listener, web) = web_listener().await;
    let run = w.start(w.settings(Mode::Socket, &web)).await;
    // Links to Slack threads are built on the workspace's address, which
    // the dashboard gets from `auth.test` (the fake answers as Slack does).
    assert_eq!(
        run.app.web_handles().slack_workspace.as_deref(),
        Some(crate::dashboard::SLACK_WORKSPACE)
    );
    let stop_web = dashboard(&run, listener).await;

    // Typed in the channel: an ephemeral message for alice with the link,
    // and a public line without it.
    w.slack
        .post_message(&w.alice, &w.channel, None, "!mailroom dashboard")
        .await
        .expect("posted");
    let url = wait_for("alice's private link", WAIT, || async {
        w.slack
            .ephemerals(&w.alice)
            .iter()
            .find_map(|e| link_in(&e.text))
    })
    .await;
    let public = wait_for("the public answer", WAIT, || async {
        w.slack
            .messages(&w.channel)
            .into_iter()
            .find(|m| m.bot && m.text.contains("privately"))
    })
    .await;
    assert!(!public.text.contains("token"), "{}", public.text);
    assert!(
        w.slack.ephemerals(&w.bob).is_empty(),
        "bob sees nothing of alice's link"
    );
    signs_in_once(&url).await;
    audited(&run.store, &format!("slack:{}", w.alice), "slack").await;

    // The slash command answers the same way, with a fresh link.
    w.slack
        .slash_command(&w.bob, &w.channel, "/mailroom", "dashboard")
        .await
        .expect("the command");
    let bobs = wait_for("bob's private link", WAIT, || async {
        w.slack
            .ephemerals(&w.bob)
            .iter()
            .find_map(|e| link_in(&e.text))
    })
    .await;
    assert_ne!(bobs, url);
    signs_in_once(&bobs).await;

    // Someone outside the channel gets no link.
    let carol = w.slack.add_user("carol", "Carol Outsider");
    w.slack
        .slash_command(&carol, &w.channel, "/mailroom", "dashboard")
        .await
        .expect("the command");
    let refusal = wait_for("carol's refusal", WAIT, || async {
        w.slack.ephemerals(&carol).into_iter().next()
    })
    .await;
    assert!(
        refusal.text.contains("may not use mailroom here"),
        "{}",
        refusal.text
    );
    assert!(link_in(&refusal.text).is_none());

    stop_web.cancel();
    run.stop().await;
}

#[tokio::test]
async fn matrix_dashboard_links_come_in_a_direct_room_and_sign_in_once() {
    use crate::matrix::{World, body, sender};
    let w = World::new().await;
    // Alice's client syncs as a real one does: invites and room keys arrive.
    let client = w.alice.client.clone();
    let syncing = tokio::spawn(async move {
        let _ = client
            .sync(SyncSettings::default().timeout(Duration::from_secs(5)))
            .await;
    });
    let (listener, web) = web_listener().await;
    let run = w.start(w.settings(1, &web)).await;
    let stop_web = dashboard(&run, listener).await;

    let room = w.alice.room(&w.room);
    // The bot must have joined before it can read the room.
    wait_for("the bot in the room", WAIT, || async {
        let members = room.members(matrix_sdk::RoomMemberships::JOIN).await.ok()?;
        members
            .iter()
            .any(|m| m.user_id().as_str() == w.bot.0)
            .then_some(())
    })
    .await;
    room.send(
        matrix_sdk::ruma::events::room::message::RoomMessageEventContent::text_plain(
            "!mailroom dashboard",
        ),
    )
    .await
    .expect("sent");

    // The bot invites alice to a direct room; she joins and reads the link.
    let dm = wait_for("an invite to a direct room", WAIT, || async {
        w.alice
            .client
            .invited_rooms()
            .into_iter()
            .find(|r| r.room_id() != w.room)
    })
    .await;
    dm.join().await.expect("joined");
    let url = wait_for("the link in the direct room", WAIT, || async {
        let msgs = dm.messages(MessagesOptions::backward()).await.ok()?;
        msgs.chunk.iter().find_map(|e| {
            let ev: Value = serde_json::from_str(e.raw().json().get()).ok()?;
            (sender(&ev) == w.bot.0)
                .then(|| link_in(body(&ev)))
                .flatten()
        })
    })
    .await;
    // The room itself says only that the link went (after the link: the
    // direct message is sent first).
    wait_for("the public answer", WAIT, || async {
        let events = w.alice.events(&w.room).await;
        events
            .iter()
            .any(|e| sender(e) == w.bot.0 && body(e).contains("privately"))
            .then_some(())
    })
    .await;
    let events = w.alice.events(&w.room).await;
    let said: Vec<&str> = events
        .iter()
        .filter(|e| sender(e) == w.bot.0)
        .map(|e| body(e))
        .collect();
    assert!(said.iter().all(|b| !b.contains("token=")), "{said:?}");
    signs_in_once(&url).await;
    audited(&run.store, w.alice.user_id.as_str(), "matrix").await;

    stop_web.cancel();
    run.stop().await;
    syncing.abort();
}

#[tokio::test]
async fn an_operator_prints_a_link_with_mailroom_web_link() {
    use std::sync::Arc;

    use mailroom::store::TicketStore;
    crate::common::init_logs();
    let db = crate::common::TestDb::sqlite();
    let store = Arc::new(db.store().await);
    let (listener, web) = web_listener().await;
    let text = format!(
        "[database]\nurl = \"{}\"\n\n[[mailbox]]\nname = \"support\"\naddress = \"support@example.com\"\n\
         display_name = \"Example Support\"\n  [mailbox.imap]\n  host = \"127.0.0.1\"\n  \
         password = \"unused\"\n  [mailbox.smtp]\n  host = \"127.0.0.1\"\n",
        db.url_text
    );
    let dir = tempfile::tempdir().expect("a folder");
    let (with, without) = (dir.path().join("web.toml"), dir.path().join("plain.toml"));
    std::fs::write(&with, format!("{text}\n{web}")).expect("written");
    std::fs::write(&without, &text).expect("written");
    let link = |config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .env_remove("MAILROOM_CONFIG")
            .arg("--config")
            .arg(config)
            .args(["web", "link", "--as", "@carol:localhost"])
            .output()
            .expect("mailroom runs")
    };
    let out = link(&with);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let url = link_in(&stdout).unwrap_or_else(|| panic!("no link in {stdout:?}"));

    let settings = mailroom::config::Settings::parse(&format!("{text}\n{web}"), &|_| None)
        .unwrap_or_else(|p| panic!("{p:?}"));
    let app = mailroom::bridge::App::new(settings, store.clone() as Arc<dyn TicketStore>, vec![]);
    let cancel = CancellationToken::new();
    tokio::spawn(mailroom::web::serve(
        app.web_handles(),
        listener,
        cancel.clone(),
    ));
    signs_in_once(&url).await;
    audited(&store, "@carol:localhost", "cli").await;

    // Without [web] there is nothing to sign in to, and the operator is told.
    let out = link(&without);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("set [web] listen"), "{stderr}");
    assert!(out.stdout.is_empty());
    cancel.cancel();
    store.close().await;
}
