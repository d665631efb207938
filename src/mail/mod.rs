//! The mail side: IMAP ingest, MIME parsing, composing and sending replies.

pub mod auth;
pub mod compose;
pub mod elide;
pub mod hygiene;
pub mod imap;
pub mod ingest;
pub mod oauth;
pub mod parse;
pub mod sasl;
pub mod sent;
pub mod settings;
pub mod smtp;
pub mod tls;
