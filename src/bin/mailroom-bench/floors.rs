//! The floors: the mail server's and the chat server's own delays, which
//! mailroom's latency cannot go below.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use mailroom::mail::imap;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, RoomMessageEventContent,
};

use crate::common::{Env, imap_settings, login, mail, mail_user, matrix_user};

/// APPEND on one connection → `* EXISTS` on another, in IDLE.
pub async fn imap_floor(env: &Env, samples: usize) -> anyhow::Result<Vec<f64>> {
    let user = mail_user(env, "floor")?;
    let settings = imap_settings(env, &user);
    let mut out = Vec::new();
    for i in 0..samples {
        let mut watcher = imap::connect_password(&settings).await?;
        imap::examine(&mut watcher, "INBOX").await?;
        let mut idle = watcher.idle();
        idle.init().await?;
        let mut writer = imap::connect_password(&settings).await?;
        let (wait, _stop) = idle.wait_with_timeout(Duration::from_secs(10));
        let start = Instant::now();
        let append = async {
            writer
                .append(
                    "INBOX",
                    None,
                    None,
                    mail(&user.0, &user.0, &format!("floor{i}@bench"), "floor"),
                )
                .await
        };
        let (r, a) = tokio::join!(wait, append);
        a?;
        r?;
        out.push(start.elapsed().as_secs_f64() * 1000.0);
        imap::logout(writer).await;
    }
    Ok(out)
}

/// A plain client posts → another client's sync sees it.
pub async fn chat_floor(env: &Env, samples: usize) -> anyhow::Result<Vec<f64>> {
    let a = login(env, &matrix_user(env, "floora")?).await?;
    let b_user = matrix_user(env, "floorb")?;
    let b = login(env, &b_user).await?;
    let mut req = CreateRoomRequest::new();
    req.invite = vec![b_user.0.parse()?];
    let room = a.create_room(req).await?;
    b.sync_once(SyncSettings::default()).await?;
    b.join_room_by_id(room.room_id()).await?;
    let seen: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let s = seen.clone();
    b.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
        let s = s.clone();
        async move {
            if let Ok(mut v) = s.lock() {
                v.push((ev.content.body().to_owned(), Instant::now()));
            }
        }
    });
    let bc = b.clone();
    let syncing = tokio::spawn(async move {
        // Long-poll the way mailroom's adapter does. (`Client::sync` showed
        // about a second of extra delay per event here.)
        loop {
            if bc
                .sync_once(SyncSettings::default().timeout(Duration::from_secs(5)))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut out = Vec::new();
    for i in 0..samples {
        let text = format!("floor {i}");
        let start = Instant::now();
        room.send(RoomMessageEventContent::text_plain(&text))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let hit = seen
                .lock()
                .ok()
                .and_then(|v| v.iter().find(|(t, _)| *t == text).map(|(_, at)| *at));
            if let Some(at) = hit {
                out.push(at.duration_since(start).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                bail!("chat floor: message {i} not seen within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    syncing.abort();
    Ok(out)
}
