//! The seam chat platforms plug into.
//!
//! An adapter (Matrix, Slack) implements [`ChatPlatform`] and only translates
//! between its SDK and these domain-shaped calls; it emits [`ChatEvent`]s for
//! what teammates do. All decisions (who may claim, what a command means) are
//! made by the bridge, never inside an adapter.

use async_trait::async_trait;

use crate::domain::ids::{Agent, TicketId};
use crate::domain::render::EmailView;
use crate::domain::ticket::TicketState;
use crate::store::{ChatThread, Platform};

/// Errors from a chat adapter, classified so the outbox knows whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Rate limited, server down, network trouble: retry, not before `retry_after_ms` if given.
    #[error("chat temporarily unavailable: {message}")]
    Transient {
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// The request can never succeed (unknown room, no permission, bad payload).
    #[error("chat refused the request: {message}")]
    Permanent { message: String },
}

impl ChatError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ChatError::Transient { .. })
    }
}

/// What a thread's root message shows of its ticket.
#[derive(Debug, Clone)]
pub struct TicketCard<'a> {
    pub ticket: TicketId,
    pub mailbox_display_name: &'a str,
    pub state: &'a TicketState,
    pub tags: Vec<String>,
}

/// A chat platform as the bridge sees it.
#[async_trait]
pub trait ChatPlatform: Send + Sync {
    fn platform(&self) -> Platform;

    /// Posts the root message of a new ticket's thread; returns where it lives.
    /// `idempotency_key` is stable per outbox job, so an adapter whose platform
    /// supports it (Matrix transaction ids) can make a retried post a no-op.
    async fn post_ticket(
        &self,
        room: &str,
        card: &TicketCard<'_>,
        email: &EmailView,
        idempotency_key: &str,
    ) -> Result<ChatThread, ChatError>;

    /// Posts a follow-up email into an existing thread, mentioning `owner`.
    async fn post_follow_up(
        &self,
        thread: &ChatThread,
        email: &EmailView,
        owner: Option<&Agent>,
        idempotency_key: &str,
    ) -> Result<(), ChatError>;

    /// Updates the root message's status line.
    async fn update_card(
        &self,
        thread: &ChatThread,
        card: &TicketCard<'_>,
    ) -> Result<(), ChatError>;

    /// Posts a short notice into the thread.
    async fn notice(
        &self,
        thread: &ChatThread,
        text: &str,
        idempotency_key: &str,
    ) -> Result<(), ChatError>;
}

/// Something a teammate did in chat, already translated from the platform's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A reaction on a ticket's root message.
    Reaction {
        thread: ChatThread,
        agent: Agent,
        key: String,
        added: bool,
    },
    /// A message in a ticket's thread (internal talk or a `!command`).
    ThreadMessage {
        thread: ChatThread,
        agent: Agent,
        text: String,
        event_ref: String,
    },
    /// A message in the room outside any ticket thread.
    RoomMessage {
        platform: Platform,
        room: String,
        agent: Agent,
        text: String,
    },
}
