//! The Matrix adapter: the only module that knows matrix-sdk.
//!
//! It logs in (once; the session and the end-to-end encryption keys are
//! persisted in `state_dir`, so a restart is the same device), joins the
//! configured rooms when invited, turns room events into [`ChatEvent`]s and
//! implements [`ChatPlatform`] for the outbox. It decides nothing: who may do
//! what is the bridge's business.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use matrix_sdk::room::Room;
use matrix_sdk::ruma::api::error::{ErrorKind, LimitExceededErrorData, RetryAfter};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use matrix_sdk::{Client, RoomState};

use super::{ChatError, human_size};
use crate::domain::chat::{ChatThread, Platform};

mod board;
mod connect;
mod events;
mod pace;
mod render;
mod send;
mod state_lock;

pub use board::{board_content, event_link};
use pace::Pace;
pub use render::{MAX_BODY_CHARS, follow_up_content, root_content};

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
    /// Held while settling: a replica settles at start and again when its
    /// sync starts, and the two must not sync at once.
    settling: tokio::sync::Mutex<()>,
    /// The event handlers are added once per client: a sync that stops
    /// and starts again (a replica losing then regaining the sync lease)
    /// must not add a second set, which would deliver every event twice.
    handlers_added: std::sync::atomic::AtomicBool,
    /// The bot's recent posts: during a burst it polls instead of
    /// long-polling (see `pace`).
    pace: Mutex<Pace>,
    /// Woken when a burst starts, to end the long-poll then open.
    burst: tokio::sync::Notify,
    /// This process's hold on `state_dir`, for as long as the adapter lives.
    _state_lock: state_lock::StateLock,
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

impl MatrixChat {
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
}

/// The root event of a thread.
fn thread_root(thread: &ChatThread) -> Result<OwnedEventId, ChatError> {
    OwnedEventId::try_from(thread.thread_ref.as_str())
        .map_err(|e| permanent(format!("thread {}: {e}", thread.thread_ref)))
}

/// A ticket thread in a Matrix room: the room and the root event.
fn matrix_thread(room: &RoomId, root: &matrix_sdk::ruma::EventId) -> ChatThread {
    ChatThread {
        platform: Platform::Matrix,
        room: room.to_string(),
        thread_ref: root.to_string(),
    }
}

/// Where the adapter keeps its state (for tests and docs).
pub fn session_file(state_dir: &Path) -> PathBuf {
    state_dir.join("session.json")
}
