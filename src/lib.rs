//! mailroom: a shared mailbox as claimable threads in the team's chat.
//!
//! # The parts, in the order mail flows through them
//!
//! - [`domain`]: pure rules and the vocabulary every part shares (ids, the
//!   ticket state machine, threading, reply rules, rendering levels, chat
//!   thread and platform ids, mailbox checkpoints). No I/O.
//! - [`mail`]: IMAP ingest (IDLE, checkpoints through a sink it owns), MIME
//!   parsing, composing and sending replies (SMTP + APPEND to Sent); every
//!   connection logs in through a `mail::auth::LoginSource` (password, or an
//!   OAuth2 token over SASL XOAUTH2/OAUTHBEARER, `mail::sasl`).
//! - [`store`]: the [`store::TicketStore`] trait, its record types one file a
//!   concern, and its SQL for SQLite and PostgreSQL (`store/sql/`, one file a
//!   concern).
//! - [`chat`]: the [`chat::ChatPlatform`] seam and the Matrix and Slack
//!   adapters, each the only place that knows its SDK.
//! - [`ops`]: `/metrics`, `/healthz` and mailbox health, handed handles.
//! - [`web`]: the read-only web dashboard (sign-in by one-time links from
//!   chat), handed the store and a clock, never the bridge.
//! - [`config`]: TOML → validated [`config::Settings`]; gathers the parts'
//!   sections, reports every bad key at once; secrets redacted.
//! - [`bridge`]: the flows (ingest → ticket → outbox → chat; chat events →
//!   ticket changes and replies → SMTP) and the [`bridge::App`] that wires
//!   the parts together and runs them with graceful shutdown.
//! - [`cli`]: the `mailroom` command line.
//!
//! # Who may import whom
//!
//! ```text
//! cli ─→ bridge ─→ config ─→ chat, mail, store, ops, web ─→ domain
//!          └────────────────→ chat, mail, store, ops, web ─→ domain
//! ```
//!
//! `domain` imports no other part; `chat`, `mail` and `store` import
//! `domain` only (a part that must persist as it goes owns a small trait the
//! bridge implements with the store, like `mail::ingest::IngestSink`); `ops`
//! imports `domain` and the store's vocabulary and is handed handles, never
//! the bridge; no two parts import each other. `tests/it/architecture.rs`
//! enforces this and names the file and line of a forbidden import.
//!
//! # Where a new capability goes
//!
//! - A rule that decides something (routing, SLA arithmetic, a command):
//!   `domain/`, a file of its own, unit-tested without I/O.
//! - New tables: a migration in both `migrations/sqlite` and
//!   `migrations/postgres`, record types in `store/<concern>.rs`, queries in
//!   `store/sql/<concern>.rs`, checks in `tests/it/store_conformance.rs`.
//! - A new protocol or provider (OAuth2 token endpoints, a chat platform):
//!   an adapter under `mail/` or `chat/`, translating to domain values.
//! - A new flow or background task (reminders, leases): `bridge/`, a file of
//!   its own, started from [`bridge::App`]; new outbox work is a
//!   [`store::JobSpec`] variant with its handler in `bridge/outbox/`.
//! - A setting: a `#[derive(Deserialize)]` struct for the section next to the
//!   part that reads it, and a field in [`config::Settings`].
//! - A new page or endpoint for operators: `ops/`, handed what it reads.

pub mod bridge;
pub mod chat;
pub mod cli;
pub mod config;
pub mod domain;
pub mod mail;
pub mod ops;
pub mod store;
pub mod web;
