//! Syncing and room events: the sync loop (long-poll, or polls during a
//! burst of posts), and the handlers that turn messages, reactions, their
//! redactions and invites into [`ChatEvent`]s.

use std::sync::Arc;
use std::time::Duration;

use matrix_sdk::RoomState;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::room::Room;
use matrix_sdk::ruma::UserId;
use matrix_sdk::ruma::api::client::filter::{FilterDefinition, RoomEventFilter, RoomFilter};
use matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter;
use matrix_sdk::ruma::api::error::ErrorKind;
use matrix_sdk::ruma::events::GlobalAccountDataEventType;
use matrix_sdk::ruma::events::reaction::OriginalSyncReactionEvent;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::events::room::message::{
    MessageType, OriginalSyncRoomMessageEvent, Relation,
};
use matrix_sdk::ruma::events::room::redaction::OriginalSyncRoomRedactionEvent;
use matrix_sdk::ruma::serde::Raw;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::pace::{POLL_EVERY, SyncMode};
use super::{MatrixChat, SeenReaction, matrix_thread};
use crate::chat::ChatEvent;
use crate::domain::chat::{Platform, SharedFile};
use crate::domain::ids::Agent;

/// The account data the bot sets on itself to end its own long-poll when a
/// burst of posts starts.
const NUDGE_EVENT_TYPE: &str = "io.mailroom.sync_pace";

/// The long-poll sync leaves the bot's own events out of the timeline: it
/// learns their ids when it sends them. Without this, each post woke the
/// bot's sync for nothing, one more /sync for the homeserver to answer per
/// post, and the homeserver is what bounds a backlog (docs/PERFORMANCE.md).
pub(super) fn sync_filter(me: &matrix_sdk::ruma::UserId) -> Filter {
    let mut timeline = RoomEventFilter::default();
    timeline.not_senders = vec![me.to_owned()];
    let mut room = RoomFilter::default();
    room.timeline = timeline;
    let mut definition = FilterDefinition::default();
    definition.room = room;
    Filter::FilterDefinition(definition)
}

impl MatrixChat {
    /// Makes the adapter able to post: on a first start, one sync that
    /// learns the rooms (its history is not acted on: no handler is added
    /// yet), then the configured rooms we are invited to joined. `run` does
    /// this first; a replica also does it at start, since every replica
    /// posts but only the one holding the `matrix-sync` lease runs `run`
    /// (without it, the others never learnt a room and retried every post).
    /// False when `cancel` ended it.
    pub async fn settle(&self, cancel: &CancellationToken) -> bool {
        let _one = self.settling.lock().await;
        if self.settled.load(std::sync::atomic::Ordering::Acquire) {
            return true;
        }
        // A first start has no sync token: the first sync replays recent
        // history, which must not be acted on again. Later starts resume from
        // the stored token and handle what happened while mailroom was down.
        let marker = self.state_dir.join("initial-sync-done");
        let mut delay = Duration::from_millis(500);
        if !marker.exists() {
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
                            _ = cancel.cancelled() => return false,
                        }
                        delay = (delay * 2).min(Duration::from_secs(60));
                    }
                }
            }
        }
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
        true
    }

    /// Settles (see [`MatrixChat::settle`]), then syncs until `cancel`,
    /// forwarding events. Reconnects with backoff.
    pub async fn run(
        self: Arc<Self>,
        events: mpsc::UnboundedSender<ChatEvent>,
        cancel: CancellationToken,
    ) {
        if !self.settle(&cancel).await {
            return;
        }
        if !self
            .handlers_added
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            self.register_handlers(events);
        }
        let mut delay = Duration::from_millis(500);
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

    /// Counts a mail posted (a root or a follow-up): bursts of those make
    /// the bot poll. Notices and edits answering teammates do not count; a
    /// busy conversation should not slow the bot's answers.
    pub(super) fn posted(&self) {
        let starts = self
            .pace
            .lock()
            .is_ok_and(|mut p| p.posted(std::time::Instant::now()));
        if starts {
            self.burst.notify_one();
        }
    }

    pub(super) fn sync_mode(&self) -> SyncMode {
        self.pace.lock().map_or(SyncMode::LongPoll, |mut p| {
            p.mode(std::time::Instant::now())
        })
    }

    /// Ends the bot's open long-poll without dropping it: a change to the
    /// bot's own account data is something its sync must return. (Dropping
    /// the request instead could cut matrix-sdk off while it handles a
    /// response, and lose the reactions in it.)
    pub(super) async fn end_long_poll(&self) {
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

    pub(super) fn register_handlers(self: &Arc<Self>, events: mpsc::UnboundedSender<ChatEvent>) {
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

    pub(super) fn agent(user: &UserId) -> Option<Agent> {
        Agent::parse(user.as_str()).ok()
    }

    /// The sender as a teammate, if the event is someone else's (never the
    /// bot's own) in one of the configured rooms.
    pub(super) fn teammate(&self, sender: &UserId, room: &Room) -> Option<Agent> {
        if sender == self.own_user || !self.is_ours(room.room_id()) {
            return None;
        }
        Self::agent(sender)
    }

    pub(super) fn on_message(
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

    pub(super) fn on_reaction(
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

    pub(super) fn on_redaction(
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

    pub(super) async fn on_invite(&self, ev: StrippedRoomMemberEvent, room: Room) {
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

/// A file, image, video or audio message as a [`SharedFile`]; its source
/// (plain or encrypted media) is kept as JSON for [`ChatPlatform::download`].
pub(super) fn shared_file(msg: &MessageType) -> Option<SharedFile> {
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
