//! OAuth2 grants, one per mailbox: the tokens sealed (the store never sees
//! them in clear; sealing is the caller's), when they expire, and what went
//! wrong last. Queries: `sql/grants.rs`.

use crate::domain::ids::MailboxName;

/// A stored grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub mailbox: MailboxName,
    /// Who signed in (the delegate for a shared mailbox).
    pub account: String,
    /// Scopes granted, space-separated.
    pub scopes: String,
    /// Sealed refresh token.
    pub refresh_token: Vec<u8>,
    /// Sealed access token and its expiry (unix ms), once one is stored.
    pub access_token: Option<Vec<u8>>,
    pub access_expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub refreshed_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    /// Changes with every sign-in; refreshes write only to their own.
    pub generation: i64,
    /// The provider refused the grant for good and the rooms were told then.
    pub refused_told_at_ms: Option<i64>,
}

/// A sign-in's result, replacing whatever grant the mailbox had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant {
    pub mailbox: MailboxName,
    pub account: String,
    pub scopes: String,
    pub refresh_token: Vec<u8>,
    pub access_token: Vec<u8>,
    pub access_expires_at_ms: Option<i64>,
}

/// A refresh's result for the grant of `generation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub mailbox: MailboxName,
    pub generation: i64,
    pub access_token: Vec<u8>,
    pub access_expires_at_ms: Option<i64>,
    /// A rotated refresh token: stored in the same write, the old one is dead.
    pub refresh_token: Option<Vec<u8>>,
    /// The scopes the refresh granted, when the server said.
    pub scopes: Option<String>,
}
