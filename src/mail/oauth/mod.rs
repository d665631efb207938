//! OAuth2 for mailboxes: the token endpoint client (device authorization,
//! authorization code with PKCE, refresh, revocation), the sign-in flows
//! `mailroom auth login` runs, and sealing tokens for storage. Where a grant
//! is stored and when it is refreshed is the bridge's business
//! (`bridge::oauth`); this part only speaks the protocol.
//!
//! Tokens are [`Secret`](crate::domain::settings::Secret)s from the moment
//! they are parsed: their `Debug` and `Display` never show them, and no
//! tracing field here carries one.

pub mod browser;
pub mod client;
pub mod device;
pub mod seal;
pub mod settings;

pub use client::{OAuthError, ProviderError, TokenClient, Tokens};
pub use seal::{SealError, SealKey};
pub use settings::{AuthMethod, Flow, OAuthSettings, Provider};
