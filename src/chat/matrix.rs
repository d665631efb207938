//! The Matrix adapter: the only module that knows matrix-sdk.
//!
//! It logs in (once; the session and the end-to-end encryption keys are
//! persisted in `state_dir`, so a restart is the same device), joins the
//! configured rooms when invited, turns room events into [`ChatEvent`]s and
//! implements [`ChatPlatform`] for the outbox. It decides nothing: who may do
//! what is the bridge's business.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::room::Room;
use matrix_sdk::ruma::api::client::filter::{FilterDefinition, RoomEventFilter, RoomFilter};
use matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter;
use matrix_sdk::ruma::api::error::{ErrorKind, LimitExceededErrorData, RetryAfter};
use matrix_sdk::ruma::events::GlobalAccountDataEventType;
use matrix_sdk::ruma::events::reaction::OriginalSyncReactionEvent;
use matrix_sdk::ruma::events::relation::Thread;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::events::room::message::{
    MessageType, OriginalSyncRoomMessageEvent, Relation, ReplacementMetadata,
    RoomMessageEventContent,
};
use matrix_sdk::ruma::events::room::power_levels::UserPowerLevel;
use matrix_sdk::ruma::events::room::redaction::OriginalSyncRoomRedactionEvent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{
    OwnedEventId, OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId, UserId,
};
use matrix_sdk::{Client, RoomState};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ChatError, ChatEvent, ChatPlatform, FileUpload, Member, TicketCard, human_size};
use crate::chat::settings::{MatrixAuth, MatrixSettings};
use crate::domain::chat::{ChatThread, Platform, SharedFile};
use crate::domain::ids::{Agent, TicketId};
use crate::domain::render::{EmailView, Rendering};

mod pace;
mod render;
use pace::{POLL_EVERY, Pace, SyncMode};
use render::text_block;
pub use render::{MAX_BODY_CHARS, follow_up_content, root_content};

/// The account data the bot sets on itself to end its own long-poll when a
/// burst of posts starts.
const NUDGE_EVENT_TYPE: &str = "io.mailroom.sync_pace";

/// A reaction we saw, kept so that its redaction can be told apart.
#[derive(Debug, Clone)]
struct SeenReaction {
    room: OwnedRoomId,
    target: OwnedEventId,
    sender: OwnedUserId,
    key: String,
}

pub struct MatrixChat {
    client: Client,
    state_dir: PathBuf,
    own_user: OwnedUserId,
    rooms: Vec<OwnedRoomId>,
    /// Configured `#alias:server` → the room id it resolved to at start.
    aliases: HashMap<String, OwnedRoomId>,
    reactions: Mutex<HashMap<OwnedEventId, SeenReaction>>,
    /// Set once the first sync is done and the configured rooms we were
    /// invited to are joined. Until then a post to a room we do not know yet
    /// is retried soon, not after the outbox's backoff: on a first start the
    /// outbox would otherwise sit out seconds of backlog waiting for a join.
    settled: std::sync::atomic::AtomicBool,
    /// The bot's recent posts: during a burst it polls instead of
    /// long-polling (see `pace`).
    pace: Mutex<Pace>,
    /// Woken when a burst starts, to end the long-poll then open.
    burst: tokio::sync::Notify,
}

fn transient(message: impl Into<String>) -> ChatError {
    ChatError::Transient {
        message: message.into(),
        retry_after_ms: None,
    }
}

fn permanent(message: impl Into<String>) -> ChatError {
    ChatError::Permanent {
        message: message.into(),
    }
}

/// Classifies an SDK error: rate limits carry their delay, 4xx are final,
/// everything else (network, 5xx) is worth retrying.
fn classify(e: matrix_sdk::Error) -> ChatError {
    if let matrix_sdk::Error::Media(matrix_sdk::media::MediaError::MediaTooLargeToUpload {
        max,
        current,
    }) = &e
    {
        return permanent(format!(
            "{} is over the homeserver's upload limit (m.upload.size) of {}",
            human_size(u64::from(*current)),
            human_size(u64::from(*max))
        ));
    }
    if let Some(ErrorKind::LimitExceeded(LimitExceededErrorData { retry_after, .. })) =
        e.client_api_error_kind()
    {
        let retry_after_ms = match retry_after {
            Some(RetryAfter::Delay(d)) => Some(d.as_millis() as u64),
            Some(RetryAfter::DateTime(t)) => Some(
                t.duration_since(std::time::SystemTime::now())
                    .unwrap_or_default()
                    .as_millis() as u64,
            ),
            None => Some(1_000),
        };
        return ChatError::Transient {
            message: "rate limited by the homeserver (M_LIMIT_EXCEEDED)".into(),
            retry_after_ms,
        };
    }
    if let Some(api) = e.as_client_api_error() {
        let status = api.status_code.as_u16();
        if (400..500).contains(&status) && status != 408 {
            return permanent(format!("homeserver refused: {e}"));
        }
    }
    transient(e.to_string())
}

/// Writes a file readable by the owner only (it holds an access token).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

/// The long-poll sync leaves the bot's own events out of the timeline: it
/// learns their ids when it sends them. Without this, each post woke the
/// bot's sync for nothing, one more /sync for the homeserver to answer per
/// post, and the homeserver is what bounds a backlog (docs/PERFORMANCE.md).
fn sync_filter(me: &matrix_sdk::ruma::UserId) -> Filter {
    let mut timeline = RoomEventFilter::default();
    timeline.not_senders = vec![me.to_owned()];
    let mut room = RoomFilter::default();
    room.timeline = timeline;
    let mut definition = FilterDefinition::default();
    definition.room = room;
    Filter::FilterDefinition(definition)
}

fn in_thread(mut content: RoomMessageEventContent, root: &OwnedEventId) -> RoomMessageEventContent {
    content.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), root.clone())));
    content
}

impl MatrixChat {
    /// Logs in (or restores the saved session) and prepares the rooms.
    pub async fn connect(
        settings: &MatrixSettings,
        rooms: &[String],
    ) -> Result<MatrixChat, ChatError> {
        std::fs::create_dir_all(&settings.state_dir).map_err(|e| {
            permanent(format!(
                "matrix.state_dir {}: {e}",
                settings.state_dir.display()
            ))
        })?;
        restrict_dir(&settings.state_dir);
        let client = Client::builder()
            .homeserver_url(&settings.homeserver)
            // The bot is one client in a few rooms: matrix-sdk's low-memory
            // store profile (a connection per core, small page caches)
            // instead of its default of four connections per core with 2 MB
            // caches in each of its four databases.
            .sqlite_store_with_config_and_cache_path(
                matrix_sdk::SqliteStoreConfig::with_low_memory_config(
                    settings.state_dir.join("store"),
                ),
                None::<PathBuf>,
            )
            .build()
            .await
            .map_err(|e| permanent(format!("matrix.homeserver {}: {e}", settings.homeserver)))?;
        let session_file = settings.state_dir.join("session.json");
        let restored = match std::fs::read(&session_file) {
            Ok(bytes) => match serde_json::from_slice::<MatrixSession>(&bytes) {
                Ok(session) if session.meta.user_id.as_str() == settings.user_id => {
                    client.restore_session(session).await.map_err(classify)?;
                    true
                }
                Ok(_) => {
                    return Err(permanent(format!(
                        "{} holds a session for another user than matrix.user_id {}; remove it to log in again",
                        session_file.display(),
                        settings.user_id
                    )));
                }
                Err(e) => {
                    return Err(permanent(format!(
                        "{} is unreadable: {e}",
                        session_file.display()
                    )));
                }
            },
            Err(_) => false,
        };
        if !restored {
            match &settings.auth {
                MatrixAuth::Password(pw) => {
                    client
                        .matrix_auth()
                        .login_username(&settings.user_id, pw.expose())
                        .initial_device_display_name(&settings.device_name)
                        .send()
                        .await
                        .map_err(|e| {
                            let e = classify(e);
                            match e {
                                ChatError::Permanent { message } => permanent(format!(
                                    "login as {} refused: {message}",
                                    settings.user_id
                                )),
                                other => other,
                            }
                        })?;
                }
                MatrixAuth::AccessToken(token) => {
                    let session = token_session(settings, token.expose()).await?;
                    client.restore_session(session).await.map_err(classify)?;
                }
            }
            let session = client
                .matrix_auth()
                .session()
                .ok_or_else(|| permanent("login returned no session"))?;
            let json = serde_json::to_vec(&session).map_err(|e| permanent(e.to_string()))?;
            write_private(&session_file, &json)
                .map_err(|e| permanent(format!("saving {}: {e}", session_file.display())))?;
        }
        let own_user = client
            .user_id()
            .map(ToOwned::to_owned)
            .ok_or_else(|| permanent("no user id after login"))?;
        let mut room_ids = Vec::new();
        let mut aliases = HashMap::new();
        for r in rooms {
            let id = if r.starts_with('#') {
                let alias = matrix_sdk::ruma::RoomAliasId::parse(r)
                    .map_err(|e| permanent(format!("room alias {r}: {e}")))?;
                let id = client
                    .resolve_room_alias(&alias)
                    .await
                    .map_err(|e| classify(e.into()))?
                    .room_id;
                aliases.insert(r.clone(), id.clone());
                id
            } else {
                RoomId::parse(r).map_err(|e| permanent(format!("room id {r}: {e}")))?
            };
            room_ids.push(id);
        }
        Ok(MatrixChat {
            client,
            state_dir: settings.state_dir.clone(),
            own_user,
            rooms: room_ids,
            aliases,
            reactions: Mutex::new(HashMap::new()),
            settled: std::sync::atomic::AtomicBool::new(false),
            pace: Mutex::new(Pace::default()),
            burst: tokio::sync::Notify::new(),
        })
    }

    pub fn user_id(&self) -> &UserId {
        &self.own_user
    }

    fn is_ours(&self, room: &RoomId) -> bool {
        self.rooms.iter().any(|r| r == room)
    }

    /// A room by id, or by one of the configured aliases.
    fn room(&self, room: &str) -> Result<Room, ChatError> {
        let id = match self.aliases.get(room) {
            Some(id) => id.clone(),
            None => RoomId::parse(room).map_err(|e| permanent(format!("room id {room}: {e}")))?,
        };
        let settled = self.settled.load(std::sync::atomic::Ordering::Acquire);
        match self.client.get_room(&id) {
            Some(r) if r.state() == RoomState::Joined => Ok(r),
            _ if !settled => Err(ChatError::Transient {
                message: format!("room {room}: still connecting"),
                retry_after_ms: Some(200),
            }),
            _ => Err(transient(format!(
                "not in room {room} yet (invite the bot)"
            ))),
        }
    }

    async fn send(
        &self,
        room: &Room,
        content: RoomMessageEventContent,
        key: Option<&str>,
    ) -> Result<OwnedEventId, ChatError> {
        let mut req = room.send(content);
        if let Some(k) = key {
            // A stable transaction id: if the outbox retries a post whose first
            // attempt did reach the server, the homeserver returns the same
            // event instead of posting twice.
            req = req.with_transaction_id(OwnedTransactionId::from(k.to_owned()));
        }
        let res = req.await.map_err(classify)?;
        Ok(res.response.event_id)
    }

    /// Counts a mail posted (a root or a follow-up): bursts of those make
    /// the bot poll. Notices and edits answering teammates do not count; a
    /// busy conversation should not slow the bot's answers.
    fn posted(&self) {
        let starts = self
            .pace
            .lock()
            .is_ok_and(|mut p| p.posted(std::time::Instant::now()));
        if starts {
            self.burst.notify_one();
        }
    }

    fn sync_mode(&self) -> SyncMode {
        self.pace.lock().map_or(SyncMode::LongPoll, |mut p| {
            p.mode(std::time::Instant::now())
        })
    }

    /// Ends the bot's open long-poll without dropping it: a change to the
    /// bot's own account data is something its sync must return. (Dropping
    /// the request instead could cut matrix-sdk off while it handles a
    /// response, and lose the reactions in it.)
    async fn end_long_poll(&self) {
        let content = serde_json::value::to_raw_value(&serde_json::json!({
            "burst_at_ms": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }));
        let Ok(content) = content else { return };
        if let Err(e) = self
            .client
            .account()
            .set_account_data_raw(
                GlobalAccountDataEventType::from(NUDGE_EVENT_TYPE),
                Raw::from_json(content),
            )
            .await
        {
            // The long-poll then ends by itself, within its timeout.
            tracing::debug!(error = %e, "matrix: could not end the long-poll early");
        }
    }

    /// Uploads one file into the thread of `root`, with a transaction id
    /// derived from the job's, so a retried job does not post it twice.
    async fn upload_into_thread(
        &self,
        room: &Room,
        root: &OwnedEventId,
        file: FileUpload,
        key: &str,
    ) -> Result<(), ChatError> {
        use matrix_sdk::attachment::AttachmentConfig;
        use matrix_sdk::room::reply::{EnforceThread, Reply};
        use matrix_sdk::ruma::events::room::message::{AddMentions, ReplyWithinThread};
        let mime: mime::Mime = file
            .content_type
            .parse()
            .unwrap_or(mime::APPLICATION_OCTET_STREAM);
        let mut config = AttachmentConfig::new().txn_id(OwnedTransactionId::from(key.to_owned()));
        config.reply = Some(Reply {
            event_id: root.clone(),
            enforce_thread: EnforceThread::Threaded(ReplyWithinThread::No),
            add_mentions: AddMentions::No,
        });
        // The file is moved into the upload, not copied: a 25 MB attachment
        // should be in memory as few times as possible.
        room.send_attachment(file.name, &mime, file.data, config)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Joins configured rooms we are invited to, then syncs until `cancel`,
    /// forwarding events. Reconnects with backoff.
    pub async fn run(
        self: Arc<Self>,
        events: mpsc::UnboundedSender<ChatEvent>,
        cancel: CancellationToken,
    ) {
        // A first start has no sync token: the first sync replays recent
        // history, which must not be acted on again. Later starts resume from
        // the stored token and handle what happened while mailroom was down.
        let marker = self.state_dir.join("initial-sync-done");
        let fresh = !marker.exists();
        let mut delay = Duration::from_millis(500);
        if fresh {
            loop {
                match self.client.sync_once(SyncSettings::default()).await {
                    Ok(_) => {
                        if let Err(e) = std::fs::write(&marker, b"") {
                            tracing::warn!(error = %e, "matrix: cannot record the first sync");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "matrix: first sync failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = cancel.cancelled() => return,
                        }
                        delay = (delay * 2).min(Duration::from_secs(60));
                    }
                }
            }
        }
        self.register_handlers(events);
        for id in &self.rooms {
            if let Some(room) = self.client.get_room(id)
                && room.state() == RoomState::Invited
                && let Err(e) = room.join().await
            {
                tracing::warn!(room = %id, error = %e, "matrix: could not join");
            }
        }
        self.settled
            .store(true, std::sync::atomic::Ordering::Release);
        delay = Duration::from_millis(500);
        let mut long_poll = SyncSettings::default().timeout(Duration::from_secs(30));
        let mut poll = SyncSettings::default().timeout(Duration::ZERO);
        if let Some(me) = self.client.user_id() {
            long_poll = long_poll.filter(sync_filter(me));
            poll = poll.filter(sync_filter(me));
        }
        let mut mode = SyncMode::LongPoll;
        while !cancel.is_cancelled() {
            let was = mode;
            mode = self.sync_mode();
            if mode != was {
                tracing::debug!(?mode, "matrix: sync mode");
            }
            let started = tokio::time::Instant::now();
            let result = match mode {
                SyncMode::Poll => tokio::select! {
                    r = self.client.sync_once(poll.clone()) => Some(r),
                    _ = cancel.cancelled() => None,
                },
                SyncMode::LongPoll => {
                    let sync = self.client.sync_once(long_poll.clone());
                    tokio::pin!(sync);
                    loop {
                        tokio::select! {
                            r = &mut sync => break Some(r),
                            _ = self.burst.notified() => {
                                if self.sync_mode() == SyncMode::Poll {
                                    self.end_long_poll().await;
                                }
                            }
                            _ = cancel.cancelled() => break None,
                        }
                    }
                }
            };
            let Some(result) = result else { break };
            match result {
                Ok(_) => {
                    delay = Duration::from_millis(500);
                    if mode == SyncMode::Poll {
                        tokio::select! {
                            _ = tokio::time::sleep_until(started + POLL_EVERY) => {}
                            _ = cancel.cancelled() => {}
                        }
                    }
                }
                Err(e) => {
                    if matches!(e.client_api_error_kind(), Some(ErrorKind::UnknownToken(_))) {
                        // Retrying cannot help: the device was logged out
                        // (or deleted) on the homeserver. Say what to do.
                        tracing::error!(
                            session = %self.state_dir.join("session.json").display(),
                            "matrix: the homeserver no longer accepts this session (M_UNKNOWN_TOKEN); \
                             stop mailroom, remove matrix.state_dir to log in as a new device, and start again"
                        );
                    } else {
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "matrix: sync failed; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    fn register_handlers(self: &Arc<Self>, events: mpsc::UnboundedSender<ChatEvent>) {
        let me = self.clone();
        let tx = events.clone();
        self.client
            .add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
                let me = me.clone();
                let tx = tx.clone();
                async move { me.on_message(ev, room, &tx) }
            });
        let me = self.clone();
        let tx = events.clone();
        self.client
            .add_event_handler(move |ev: OriginalSyncReactionEvent, room: Room| {
                let me = me.clone();
                let tx = tx.clone();
                async move { me.on_reaction(ev, room, &tx) }
            });
        let me = self.clone();
        let tx = events;
        self.client
            .add_event_handler(move |ev: OriginalSyncRoomRedactionEvent, room: Room| {
                let me = me.clone();
                let tx = tx.clone();
                async move { me.on_redaction(ev, room, &tx) }
            });
        let me = self.clone();
        self.client
            .add_event_handler(move |ev: StrippedRoomMemberEvent, room: Room| {
                let me = me.clone();
                async move { me.on_invite(ev, room).await }
            });
    }

    fn agent(user: &UserId) -> Option<Agent> {
        Agent::parse(user.as_str()).ok()
    }

    /// The sender as a teammate, if the event is someone else's (never the
    /// bot's own) in one of the configured rooms.
    fn teammate(&self, sender: &UserId, room: &Room) -> Option<Agent> {
        if sender == self.own_user || !self.is_ours(room.room_id()) {
            return None;
        }
        Self::agent(sender)
    }

    fn on_message(
        &self,
        ev: OriginalSyncRoomMessageEvent,
        room: Room,
        tx: &mpsc::UnboundedSender<ChatEvent>,
    ) {
        let Some(agent) = self.teammate(&ev.sender, &room) else {
            return;
        };
        if let Some(file) = shared_file(&ev.content.msgtype) {
            if let Some(Relation::Thread(thread)) = &ev.content.relates_to {
                let _ = tx.send(ChatEvent::ThreadFile {
                    thread: matrix_thread(room.room_id(), &thread.event_id),
                    agent,
                    file,
                    event_ref: ev.event_id.to_string(),
                });
            }
            return;
        }
        let MessageType::Text(text) = &ev.content.msgtype else {
            return;
        };
        let event = match &ev.content.relates_to {
            Some(Relation::Thread(thread)) => ChatEvent::ThreadMessage {
                thread: matrix_thread(room.room_id(), &thread.event_id),
                agent,
                text: text.body.clone(),
                event_ref: ev.event_id.to_string(),
            },
            // Edits are not commands: acting on an edited "!reply" would send twice.
            Some(Relation::Replacement(_)) => return,
            _ => ChatEvent::RoomMessage {
                platform: Platform::Matrix,
                room: room.room_id().to_string(),
                agent,
                text: text.body.clone(),
                event_ref: ev.event_id.to_string(),
            },
        };
        let _ = tx.send(event);
    }

    fn on_reaction(
        &self,
        ev: OriginalSyncReactionEvent,
        room: Room,
        tx: &mpsc::UnboundedSender<ChatEvent>,
    ) {
        let Some(agent) = self.teammate(&ev.sender, &room) else {
            return;
        };
        let target = ev.content.relates_to.event_id.clone();
        let key = ev.content.relates_to.key.clone();
        if let Ok(mut seen) = self.reactions.lock() {
            seen.insert(
                ev.event_id.clone(),
                SeenReaction {
                    room: room.room_id().to_owned(),
                    target: target.clone(),
                    sender: ev.sender.clone(),
                    key: key.clone(),
                },
            );
        }
        let _ = tx.send(ChatEvent::Reaction {
            thread: matrix_thread(room.room_id(), &target),
            agent,
            key,
            added: true,
            event_ref: ev.event_id.to_string(),
        });
    }

    fn on_redaction(
        &self,
        ev: OriginalSyncRoomRedactionEvent,
        room: Room,
        tx: &mpsc::UnboundedSender<ChatEvent>,
    ) {
        if !self.is_ours(room.room_id()) {
            return;
        }
        let Some(redacted) = ev.content.redacts.clone().or(ev.redacts.clone()) else {
            return;
        };
        let seen = self
            .reactions
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&redacted));
        // Only the reacting user taking their own reaction back counts as an unclaim.
        let Some(r) = seen.filter(|r| r.sender == ev.sender) else {
            return;
        };
        let Some(agent) = Self::agent(&r.sender) else {
            return;
        };
        let _ = tx.send(ChatEvent::Reaction {
            thread: matrix_thread(&r.room, &r.target),
            agent,
            key: r.key,
            added: false,
            event_ref: ev.event_id.to_string(),
        });
    }

    async fn on_invite(&self, ev: StrippedRoomMemberEvent, room: Room) {
        if ev.state_key != self.own_user || ev.content.membership != MembershipState::Invite {
            return;
        }
        if self.is_ours(room.room_id()) {
            if let Err(e) = room.join().await {
                tracing::warn!(room = %room.room_id(), error = %e, "matrix: could not accept invite");
            } else {
                tracing::info!(room = %room.room_id(), "matrix: joined");
            }
        } else {
            tracing::info!(room = %room.room_id(), inviter = %ev.sender, "matrix: declining invite to a room that is not configured");
            let _ = room.leave().await;
        }
    }
}

#[derive(serde::Deserialize)]
struct WhoAmI {
    user_id: String,
    device_id: Option<String>,
}

/// A session for an existing access token: the homeserver says which user
/// and device it belongs to, so the encryption store binds to that device.
async fn token_session(settings: &MatrixSettings, token: &str) -> Result<MatrixSession, ChatError> {
    let url = format!(
        "{}/_matrix/client/v3/account/whoami",
        settings.homeserver.trim_end_matches('/')
    );
    let resp = matrix_sdk::reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| transient(format!("matrix.homeserver: {e}")))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| transient(e.to_string()))?;
    if !status.is_success() {
        return Err(permanent(format!(
            "matrix.access_token_env: the homeserver refused the token ({status})"
        )));
    }
    let who: WhoAmI = serde_json::from_str(&text).map_err(|e| permanent(format!("whoami: {e}")))?;
    if who.user_id != settings.user_id {
        return Err(permanent(format!(
            "matrix.access_token_env: the token belongs to {}, not matrix.user_id {}",
            who.user_id, settings.user_id
        )));
    }
    let device_id = who.device_id.ok_or_else(|| {
        permanent(
            "matrix.access_token_env: the token has no device (use a token from a device login)",
        )
    })?;
    Ok(MatrixSession {
        meta: matrix_sdk::SessionMeta {
            user_id: OwnedUserId::try_from(who.user_id).map_err(|e| permanent(e.to_string()))?,
            device_id: device_id.into(),
        },
        tokens: matrix_sdk::SessionTokens {
            access_token: token.to_owned(),
            refresh_token: None,
        },
    })
}

/// A file, image, video or audio message as a [`SharedFile`]; its source
/// (plain or encrypted media) is kept as JSON for [`ChatPlatform::download`].
fn shared_file(msg: &MessageType) -> Option<SharedFile> {
    // The four media contents have the same fields under different types.
    macro_rules! media {
        ($c:expr) => {
            (
                $c.body.as_str(),
                $c.filename.as_deref(),
                &$c.source,
                $c.info.as_ref().and_then(|i| i.mimetype.as_deref()),
                $c.info.as_ref().and_then(|i| i.size).map(u64::from),
            )
        };
    }
    let (body, filename, source, mimetype, size) = match msg {
        MessageType::File(c) => media!(c),
        MessageType::Image(c) => media!(c),
        MessageType::Video(c) => media!(c),
        MessageType::Audio(c) => media!(c),
        _ => return None,
    };
    Some(SharedFile {
        name: filename.unwrap_or(body).to_owned(),
        content_type: mimetype.unwrap_or("application/octet-stream").to_owned(),
        size: size.unwrap_or(0),
        source: serde_json::to_string(source).ok()?,
    })
}

/// A ticket thread in a Matrix room: the room and the root event.
/// The root event of a thread.
fn thread_root(thread: &ChatThread) -> Result<OwnedEventId, ChatError> {
    OwnedEventId::try_from(thread.thread_ref.as_str())
        .map_err(|e| permanent(format!("thread {}: {e}", thread.thread_ref)))
}

fn matrix_thread(room: &RoomId, root: &matrix_sdk::ruma::EventId) -> ChatThread {
    ChatThread {
        platform: Platform::Matrix,
        room: room.to_string(),
        thread_ref: root.to_string(),
    }
}

/// The state dir holds the access token and encryption keys: owner only.
fn restrict_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

#[async_trait]
impl ChatPlatform for MatrixChat {
    fn platform(&self) -> Platform {
        Platform::Matrix
    }

    async fn post_ticket(
        &self,
        room: &str,
        card: &TicketCard<'_>,
        email: &EmailView,
        rendering: Rendering,
        idempotency_key: &str,
    ) -> Result<ChatThread, ChatError> {
        let r = self.room(room)?;
        let event_id = self
            .send(
                &r,
                root_content(card, email, rendering),
                Some(idempotency_key),
            )
            .await?;
        self.posted();
        Ok(matrix_thread(r.room_id(), &event_id))
    }

    async fn post_follow_up(
        &self,
        thread: &ChatThread,
        ticket: TicketId,
        email: &EmailView,
        owner: Option<&Agent>,
        rendering: Rendering,
        idempotency_key: &str,
    ) -> Result<(), ChatError> {
        let r = self.room(&thread.room)?;
        let root = thread_root(thread)?;
        let content = follow_up_content(ticket, email, owner, rendering);
        self.send(&r, in_thread(content, &root), Some(idempotency_key))
            .await?;
        self.posted();
        Ok(())
    }

    async fn update_card(
        &self,
        thread: &ChatThread,
        card: &TicketCard<'_>,
        email: &EmailView,
        rendering: Rendering,
    ) -> Result<(), ChatError> {
        let r = self.room(&thread.room)?;
        let root = thread_root(thread)?;
        let content = root_content(card, email, rendering)
            .make_replacement(ReplacementMetadata::new(root, None));
        self.send(&r, content, None).await?;
        Ok(())
    }

    async fn upload(
        &self,
        thread: &ChatThread,
        file: FileUpload,
        idempotency_key: &str,
    ) -> Result<(), ChatError> {
        let r = self.room(&thread.room)?;
        let root = thread_root(thread)?;
        self.upload_into_thread(&r, &root, file, idempotency_key)
            .await
    }

    fn body_limit(&self) -> usize {
        MAX_BODY_CHARS
    }

    async fn notice(
        &self,
        thread: &ChatThread,
        text: &str,
        idempotency_key: &str,
    ) -> Result<(), ChatError> {
        let r = self.room(&thread.room)?;
        let root = thread_root(thread)?;
        let content = RoomMessageEventContent::notice_html(text, text_block(text));
        self.send(&r, in_thread(content, &root), Some(idempotency_key))
            .await?;
        Ok(())
    }

    async fn room_notice(&self, room: &str, text: &str) -> Result<(), ChatError> {
        let r = self.room(room)?;
        let content = RoomMessageEventContent::notice_html(text, text_block(text));
        self.send(&r, content, None).await?;
        Ok(())
    }

    async fn download(&self, file: &SharedFile) -> Result<Vec<u8>, ChatError> {
        use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
        use matrix_sdk::ruma::events::room::MediaSource;
        let source: MediaSource = serde_json::from_str(&file.source)
            .map_err(|e| permanent(format!("file {}: bad media source: {e}", file.name)))?;
        self.client
            .media()
            .get_media_content(
                &MediaRequestParameters {
                    source,
                    format: MediaFormat::File,
                },
                false,
            )
            .await
            .map_err(classify)
    }

    async fn member(&self, room: &str, agent: &Agent) -> Result<Option<Member>, ChatError> {
        let r = self.room(room)?;
        let user = OwnedUserId::try_from(agent.as_str())
            .map_err(|e| permanent(format!("{agent}: {e}")))?;
        let Some(member) = r.get_member(&user).await.map_err(classify)? else {
            return Ok(None);
        };
        if *member.membership() != MembershipState::Join {
            return Ok(None);
        }
        let power = match member.power_level() {
            UserPowerLevel::Infinite => i64::MAX,
            UserPowerLevel::Int(n) => i64::from(n),
            // Newer room versions may add kinds of power; treat them as none.
            _ => 0,
        };
        Ok(Some(Member {
            power,
            display_name: member.display_name().map(ToOwned::to_owned),
        }))
    }
}

/// Where the adapter keeps its state (for tests and docs).
pub fn session_file(state_dir: &Path) -> PathBuf {
    state_dir.join("session.json")
}
