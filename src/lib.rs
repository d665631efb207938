//! mailroom: a shared mailbox as claimable threads in the team's chat.
//!
//! Layout, in the order mail flows through it:
//!
//! - [`config`]: TOML → validated [`config::Settings`]; secrets redacted.
//! - [`domain`]: pure rules (ids, ticket state machine, threading, reply rules,
//!   rendering). No I/O.
//! - [`mail`]: IMAP ingest (IDLE, checkpoints), MIME parsing, composing and
//!   sending replies (SMTP + APPEND to Sent).
//! - [`store`]: the [`store::TicketStore`] trait and its SQL implementation
//!   for SQLite and PostgreSQL.
//! - [`chat`]: the [`chat::ChatPlatform`] seam that Matrix and Slack adapters plug into.
//! - [`bridge`]: the flows (ingest → ticket, reply → outbox → SMTP) and the
//!   [`bridge::App`] that runs them with graceful shutdown.
//! - [`ops`]: `/metrics`, `/healthz` and mailbox health for operators.
//! - [`cli`]: the `mailroom` command line.

pub mod bridge;
pub mod chat;
pub mod cli;
pub mod config;
pub mod domain;
pub mod mail;
pub mod ops;
pub mod store;
