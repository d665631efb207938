//! The pure core of mailroom: identifiers, the ticket state machine, threading
//! rules, outbound rules and the rendering model. Nothing here does I/O or knows
//! about IMAP, SQL, Slack or Matrix, so every rule is unit-testable in
//! isolation.

pub mod analytics;
pub mod assign;
pub mod authres;
pub mod board;
pub mod calendar;
pub mod chat;
pub mod cluster;
pub mod command;
pub mod digest;
pub mod email;
pub mod hygiene;
pub mod ids;
pub mod mailbox;
pub mod outbound;
pub mod recipient;
pub mod reminders;
pub mod render;
pub mod routing;
pub mod settings;
pub mod sla;
pub mod snooze;
pub mod threading;
pub mod ticket;
pub mod time;
pub mod web;
