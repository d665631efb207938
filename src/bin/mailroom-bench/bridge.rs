//! The bench's mailroom: a mailbox, a bot account, a room and an observing
//! teammate, run in-process ([`start`]/[`stop`]) or as a `mailroom run`
//! process ([`Bridge::spawn`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use mailroom::bridge::{App, connect_chats};
use mailroom::config::Settings;
use mailroom::store::TicketStore;
use mailroom::store::sql::SqlStore;
use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::events::room::message::OriginalSyncRoomMessageEvent;
use tokio_util::sync::CancellationToken;

use crate::common::{
    Env, imap_settings, login, mail, mail_user, mailbox_toml, matrix_user, tempfile_dir,
};
use crate::daemon::Daemon;

/// A mailbox, a bot account, a room and an observing teammate (alice) whose
/// client long-polls and timestamps every message it sees.
pub struct Bridge {
    pub support: (String, String),
    pub alice: Client,
    pub settings: Settings,
    /// The same configuration as a file, for a `mailroom run` process.
    pub config_text: String,
    pub bot_password: String,
    pub dir: std::path::PathBuf,
    pub seen: Arc<Mutex<Vec<(String, Instant)>>>,
    pub syncing: tokio::task::JoinHandle<()>,
}

pub async fn bridge(env: &Env) -> anyhow::Result<Bridge> {
    let support = mail_user(env, "support")?;
    let bot = matrix_user(env, "bot")?;
    let alice = login(env, &matrix_user(env, "alice")?).await?;
    let mut req = CreateRoomRequest::new();
    req.invite = vec![bot.0.parse()?];
    let room = alice.create_room(req).await?;
    let dir = tempfile_dir()?;
    let text = format!(
        "{mailbox}[commands]\nundo_secs = 0\n[matrix]\nhomeserver = \"{hs}\"\nuser_id = \"{bot}\"\npassword_env = \"BOT\"\nstate_dir = \"{state}\"\n",
        mailbox = mailbox_toml(
            env,
            &support,
            &dir,
            &format!("matrix_room = \"{}\"", room.room_id())
        ),
        hs = env.synapse,
        bot = bot.0,
        state = dir.join("matrix").display(),
    );
    let bot_pw = bot.1.clone();
    let settings = Settings::parse(&text, &move |k| (k == "BOT").then(|| bot_pw.clone()))
        .map_err(|p| anyhow!("{p:?}"))?;
    let seen: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let s = seen.clone();
    alice.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
        let s = s.clone();
        async move {
            if let Ok(mut v) = s.lock() {
                v.push((ev.content.body().to_owned(), Instant::now()));
            }
        }
    });
    let ac = alice.clone();
    let syncing = tokio::spawn(async move {
        // Long-poll the way mailroom's adapter does. (`Client::sync` showed
        // about a second of extra delay per event here.)
        loop {
            if ac
                .sync_once(SyncSettings::default().timeout(Duration::from_secs(5)))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    Ok(Bridge {
        support,
        alice,
        settings,
        config_text: text,
        bot_password: bot.1.clone(),
        dir,
        seen,
        syncing,
    })
}

impl Bridge {
    pub fn spawn(&self) -> anyhow::Result<Daemon> {
        let config = self.dir.join("mailroom.toml");
        std::fs::write(&config, &self.config_text)?;
        Daemon::spawn(&config, &[("BOT", self.bot_password.as_str())])
    }

    pub fn roots_seen(&self, prefix: &str) -> usize {
        self.seen
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(t, _)| t.starts_with("📨") && t.contains(prefix))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Writes the warm-up mail and waits until its thread is seen (the bot
    /// has joined and posted once); returns the writing IMAP session.
    pub async fn warm_up(&self, env: &Env) -> anyhow::Result<mailroom::mail::imap::Session> {
        let mut writer =
            mailroom::mail::imap::connect_password(&imap_settings(env, &self.support)).await?;
        writer
            .append(
                "INBOX",
                None,
                None,
                mail("c@bench.example", &self.support.0, "warm@bench", "Warm-up"),
            )
            .await?;
        wait_seen(&self.seen, "Warm-up", Duration::from_secs(60)).await?;
        Ok(writer)
    }

    pub fn finish(self) {
        self.syncing.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// When a ticket's root message holding `needle` was first seen.
pub async fn wait_seen(
    seen: &Mutex<Vec<(String, Instant)>>,
    needle: &str,
    limit: Duration,
) -> anyhow::Result<Instant> {
    wait_seen_as(seen, "📨", needle, limit).await
}

/// When a message starting with `kind` and holding `needle` was first seen.
pub async fn wait_seen_as(
    seen: &Mutex<Vec<(String, Instant)>>,
    kind: &str,
    needle: &str,
    limit: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        let hit = seen.lock().ok().and_then(|v| {
            v.iter()
                .find(|(t, _)| t.starts_with(kind) && t.contains(needle))
                .map(|(_, at)| *at)
        });
        if let Some(at) = hit {
            return Ok(at);
        }
        if Instant::now() > deadline {
            bail!("{needle:?} never reached the room");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub type Handles = (
    tokio::task::JoinHandle<()>,
    Vec<tokio::task::JoinHandle<()>>,
);

pub async fn start(settings: Settings) -> anyhow::Result<(Arc<App>, CancellationToken, Handles)> {
    let store = Arc::new(SqlStore::connect(&settings.database.url, 4).await?);
    store.migrate().await?;
    let cancel = CancellationToken::new();
    let chats = connect_chats(&settings, &cancel)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let app = Arc::new(App::new(
        settings,
        store as Arc<dyn TicketStore>,
        chats.platforms,
    ));
    let run = tokio::spawn(app.clone().run(cancel.clone(), Some(chats.events)));
    Ok((app, cancel, (run, chats.tasks)))
}

pub async fn stop(_app: Arc<App>, cancel: CancellationToken, handles: Handles) {
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), handles.0).await;
    for h in handles.1 {
        let _ = tokio::time::timeout(Duration::from_secs(20), h).await;
    }
}
