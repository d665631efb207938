//! The `reply` stage.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use mailroom::mail::imap;
use mailroom::store::JobSpec;
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, RoomMessageEventContent,
};

use crate::bridge::{bridge, start, stop};
use crate::common::{Env, imap_settings, mail, mail_user};

/// `!reply` accepted (the reply queued in the outbox) → SMTP accepted and
/// the copy APPENDed to Sent, for replies sent at a steady pace from the
/// tickets' Matrix threads (undo window 0). The times come from the outbox's
/// own rows; the customer's inbox and the Sent folder are then counted to
/// check every reply left once.
pub async fn reply_latency(env: &Env, replies: usize, pace: Duration) -> anyhow::Result<Vec<f64>> {
    use matrix_sdk::ruma::events::relation::Thread;
    use matrix_sdk::ruma::events::room::message::Relation;
    let b = bridge(env).await?;
    let customer = mail_user(env, "customer")?;
    let roots: Arc<Mutex<Vec<(String, matrix_sdk::ruma::OwnedEventId)>>> = Arc::default();
    let r = roots.clone();
    b.alice
        .add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
            let r = r.clone();
            async move {
                let body = ev.content.body();
                if body.starts_with("📨")
                    && let Ok(mut v) = r.lock()
                {
                    v.push((body.to_owned(), ev.event_id.clone()));
                }
            }
        });
    let (app, cancel, handles) = start(b.settings.clone()).await?;
    let mut writer = imap::connect_password(&imap_settings(env, &b.support)).await?;
    for i in 0..replies {
        let raw = mail(
            &customer.0,
            &b.support.0,
            &format!("rq{i}@bench"),
            &format!("Question {i:04}"),
        );
        writer.append("INBOX", None, None, raw).await?;
    }
    imap::logout(writer).await;
    let deadline = Instant::now() + Duration::from_secs(60 + replies as u64);
    let targets = loop {
        let found: Vec<_> = roots
            .lock()
            .map(|v| {
                (0..replies)
                    .filter_map(|i| {
                        let subject = format!("Question {i:04}");
                        v.iter()
                            .find(|(t, _)| t.contains(&subject))
                            .map(|(_, id)| id.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        if found.len() == replies {
            break found;
        }
        if Instant::now() > deadline {
            bail!(
                "replies: {} of {replies} tickets reached the room",
                found.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let room_id: matrix_sdk::ruma::OwnedRoomId = b.settings.mailboxes[0]
        .chat
        .matrix_room
        .as_deref()
        .ok_or_else(|| anyhow!("no room"))?
        .parse()?;
    let room = b
        .alice
        .get_room(&room_id)
        .ok_or_else(|| anyhow!("alice is not in the room"))?;
    for (i, root) in targets.iter().enumerate() {
        let mut content =
            RoomMessageEventContent::text_plain(format!("!reply Hello,\n\nanswer number {i}."));
        content.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root.clone())));
        room.send(content).await?;
        tokio::time::sleep(pace).await;
    }
    // Every reply sent and filed: the outbox's rows say when.
    let db = b.dir.join("bench.db");
    let rows = loop {
        let rows = outbox_rows(&db).await?;
        let filed = rows
            .iter()
            .filter(|(spec, state, ..)| matches!(spec, JobSpec::FileSent { .. }) && state == "done")
            .count();
        if filed >= replies {
            break rows;
        }
        if Instant::now() > deadline {
            bail!("replies: {filed} of {replies} filed in Sent after the deadline");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop(app, cancel, handles).await;
    let mut out = Vec::new();
    for (spec, _, created, _) in &rows {
        let JobSpec::SendReply { email_id } = spec else {
            continue;
        };
        let filed = rows.iter().find_map(|(s, state, _, updated)| {
            (matches!(s, JobSpec::FileSent { email_id: e } if e == email_id) && state == "done")
                .then_some(*updated)
        });
        let filed = filed.ok_or_else(|| anyhow!("reply {email_id} was never filed in Sent"))?;
        out.push((filed - created) as f64);
    }
    // From the outside: the customer got each reply once, and Sent holds each.
    let mut inbox = imap::connect_password(&imap_settings(env, &customer)).await?;
    let got = inbox.select("INBOX").await?.exists as usize;
    imap::logout(inbox).await;
    let mut sent = imap::connect_password(&imap_settings(env, &b.support)).await?;
    let filed = sent.select("Sent").await?.exists as usize;
    imap::logout(sent).await;
    b.finish();
    if got != replies || filed != replies || out.len() != replies {
        bail!(
            "replies: {replies} asked, {} queued, {got} at the customer, {filed} in Sent",
            out.len()
        );
    }
    Ok(out)
}

pub async fn outbox_rows(db: &std::path::Path) -> anyhow::Result<Vec<(JobSpec, String, i64, i64)>> {
    use sqlx::{Connection, Row};
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", db.display())).await?;
    let rows = sqlx::query(
        "SELECT payload, state, created_at, updated_at FROM outbox WHERE kind IN ('send_reply', 'file_sent')",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    rows.iter()
        .map(|r| {
            let payload: String = r.try_get("payload")?;
            Ok((
                serde_json::from_str(&payload)?,
                r.try_get("state")?,
                r.try_get("created_at")?,
                r.try_get("updated_at")?,
            ))
        })
        .collect()
}
