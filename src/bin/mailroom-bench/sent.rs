//! The `sent` stage.

use std::time::{Duration, Instant};

use anyhow::bail;
use mailroom::domain::ids::MailboxName;
use mailroom::domain::mailbox::FolderRole;
use mailroom::mail::imap;

use crate::bridge::{bridge, start, stop, wait_seen_as};
use crate::common::Env;

/// A reply written in the mailbox (Outlook, Gmail) as it is filed in Sent,
/// answering `parent`.
fn outside_reply(support: &str, id: &str, parent: &str, marker: &str) -> Vec<u8> {
    format!(
        "From: Bench Support <{support}>\r\nTo: c@bench.example\r\nSubject: Re: Warm-up\r\n\
         Message-ID: <{id}>\r\nIn-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n\
         Date: Mon, 23 Nov 2026 11:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         {marker}: it left the warehouse today.\r\n"
    )
    .into_bytes()
}

/// APPEND to the Sent folder → "Replied from the mailbox" seen in the
/// ticket's thread by another Matrix client, replies at a steady pace.
pub async fn sent_latency(env: &Env, replies: usize, pace: Duration) -> anyhow::Result<Vec<f64>> {
    let b = bridge(env).await?;
    let (app, cancel, handles) = start(b.settings.clone()).await?;
    let mut writer = b.warm_up(env).await?;
    // The watcher starts with what arrives after its first look.
    let mailbox = MailboxName::parse("support")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while app
        .store
        .folder_checkpoint(&mailbox, FolderRole::Sent)
        .await?
        .is_none()
    {
        if Instant::now() > deadline {
            bail!("the Sent folder was never watched");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sent = Vec::new();
    for i in 0..replies {
        let marker = format!("Outside {i:04}");
        let raw = outside_reply(
            &b.support.0,
            &format!("out{i}@bench"),
            "warm@bench",
            &marker,
        );
        writer.append("Sent", None, None, raw).await?;
        sent.push((marker, Instant::now()));
        tokio::time::sleep(pace).await;
    }
    let mut out = Vec::new();
    for (marker, at) in &sent {
        let kind = "📤 Replied from the mailbox";
        let seen_at = wait_seen_as(&b.seen, kind, marker, Duration::from_secs(60)).await?;
        out.push(seen_at.duration_since(*at).as_secs_f64() * 1000.0);
    }
    imap::logout(writer).await;
    stop(app, cancel, handles).await;
    b.finish();
    Ok(out)
}
