//! The `backlog` stage, with the plain client it is measured against.

use std::time::{Duration, Instant};

use anyhow::bail;
use mailroom::mail::imap;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

use crate::bridge::bridge;
use crate::common::{Env, imap_settings, login, mail, matrix_user};

/// A backlog already in the mailbox when mailroom starts, turned into
/// threads; and, for comparison, the same number of plain posts by a client,
/// one at a time (as mailroom must, to keep a room's order).
///
/// The plain posts are made the way mailroom's are: by a second user, into a
/// room the observer has joined and is syncing (Synapse does push-rule work
/// and notification counting for every other member, which a room of one
/// would skip). Half are made before mailroom's phase and half after, into
/// the same room, so that Synapse slowing down as its database grows over the
/// stage weighs on both sides alike.
pub async fn backlog(env: &Env, emails: usize) -> anyhow::Result<Backlog> {
    let b = bridge(env).await?;
    let mut writer = imap::connect_password(&imap_settings(env, &b.support)).await?;
    for i in 0..emails {
        let raw = mail(
            &format!("c{i}@bench.example"),
            &b.support.0,
            &format!("bl{i}@bench"),
            &format!("Backlog {i:05}"),
        );
        writer.append("INBOX", None, None, raw).await?;
    }
    imap::logout(writer).await;

    let poster_user = matrix_user(env, "poster")?;
    let poster = login(env, &poster_user).await?;
    let mut req = CreateRoomRequest::new();
    req.name = Some("raw".into());
    req.invite = vec![poster_user.0.parse()?];
    let raw_room = b.alice.create_room(req).await?;
    let raw_room = poster.join_room_by_id(raw_room.room_id()).await?;
    let first_half = emails / 2;
    // Seconds the plain client takes for these posts.
    let plain = async |range: std::ops::Range<usize>| -> anyhow::Result<f64> {
        let start = Instant::now();
        for i in range {
            raw_room
                .send(RoomMessageEventContent::text_plain(format!("raw {i}")))
                .await?;
        }
        Ok(start.elapsed().as_secs_f64())
    };
    let before = plain(0..first_half).await?;

    let d = b.spawn()?;
    let start_app = d.started;
    let deadline = Instant::now() + Duration::from_secs(60 + emails as u64);
    while b.roots_seen("Backlog ") < emails {
        if Instant::now() > deadline {
            bail!(
                "backlog: {} of {emails} threads after the deadline",
                b.roots_seen("Backlog ")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = emails as f64 / start_app.elapsed().as_secs_f64();
    if std::env::var_os("MAILROOM_BENCH_LOG").is_some()
        && let Ok(seen) = b.seen.lock()
    {
        for (t, at) in seen.iter().filter(|(t, _)| t.contains("Backlog ")) {
            let ms = at.saturating_duration_since(start_app).as_millis();
            eprintln!("seen {ms:>8} {}", t.lines().next().unwrap_or(""));
        }
    }
    let peak = d.peak_mb();
    d.stop();

    let after = plain(first_half..emails).await?;
    b.finish();
    Ok(Backlog {
        rate,
        raw_rate: emails as f64 / (before + after),
        raw_before: first_half as f64 / before,
        raw_after: (emails - first_half) as f64 / after,
        peak,
    })
}

/// The backlog stage's figures.
pub struct Backlog {
    /// mailroom: emails turned into threads per second, from process start.
    pub rate: f64,
    /// The plain client: all its posts over all its time.
    pub raw_rate: f64,
    /// The plain client's first half, before mailroom's phase.
    pub raw_before: f64,
    /// Its second half, after.
    pub raw_after: f64,
    /// mailroom's resident memory peak (MiB).
    pub peak: f64,
}
