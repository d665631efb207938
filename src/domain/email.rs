//! Plain data about emails, shared by ingest, threading, rendering and the store.

use std::fmt;

use super::ids::EmailAddress;

/// A mailbox as it appears in From/To/Cc: an optional display name and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub name: Option<String>,
    pub address: EmailAddress,
}

impl Party {
    pub fn new(name: Option<String>, address: EmailAddress) -> Self {
        let name = name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty() && n != address.as_str());
        Party { name, address }
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n} <{}>", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

/// What we know of an attachment without holding its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentMeta {
    /// File name as sent, or a generated `attachment-N.ext` when the sender gave none.
    pub name: String,
    /// `type/subtype`, lowercase.
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: u64,
    /// Shown inline in the HTML body (an image referenced by `cid:`) rather than attached.
    pub inline: bool,
}

/// Why a message must never trigger anything automatic (RFC 3834 and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoKind {
    /// `Auto-Submitted: auto-replied`/`auto-generated`, `X-Autoreply`, vacation notices.
    AutoReply,
    /// A delivery status notification (`multipart/report; report-type=delivery-status`,
    /// or from MAILER-DAEMON).
    Bounce,
    /// Mailing-list traffic (`List-Id`, `Precedence: list|bulk|junk`).
    List,
    /// Sent with the null envelope sender (`Return-Path: <>`), which only
    /// delivery reports and automatic responses use (RFC 3834 §3.3), but
    /// none of the above marks.
    NullSender,
}

impl AutoKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AutoKind::AutoReply => "auto-reply",
            AutoKind::Bounce => "bounce",
            AutoKind::List => "list",
            AutoKind::NullSender => "null-sender",
        }
    }
}

/// SHA-256 over the parts of a message that identify its content (see
/// `mail::parse::content_hash`), hex encoded. Two deliveries of the same mail
/// hash alike; two different mails that share a Message-ID do not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentHash(String);

impl ContentHash {
    pub fn from_digest(digest: [u8; 32]) -> Self {
        ContentHash(hex::encode(digest))
    }
    pub fn from_stored(s: String) -> Self {
        ContentHash(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Direction of a stored email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => None,
        }
    }
}
