//! What the chat adapters and the store both speak of: which platform, which
//! thread, which shared file. Plain values, so neither side needs the other.

use serde::{Deserialize, Serialize};

/// Chat platforms the outbox can post to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Matrix,
    Slack,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Matrix => "matrix",
            Platform::Slack => "slack",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "matrix" => Some(Platform::Matrix),
            "slack" => Some(Platform::Slack),
            _ => None,
        }
    }
}

/// A chat thread a ticket lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatThread {
    pub platform: Platform,
    pub room: String,
    pub thread_ref: String,
}

/// A file a teammate shared in chat, not yet downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// The platform's handle to download it (see `ChatPlatform::download`).
    pub source: String,
}
