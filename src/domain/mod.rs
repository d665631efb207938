//! The pure core of mailroom: identifiers, the ticket state machine, threading
//! rules, outbound rules and the rendering model. Nothing here does I/O or knows
//! about IMAP, SQL, Slack or Matrix, so every rule is unit-testable in
//! isolation.

pub mod authres;
pub mod chat;
pub mod cluster;
pub mod command;
pub mod email;
pub mod hygiene;
pub mod ids;
pub mod mailbox;
pub mod outbound;
pub mod recipient;
pub mod render;
pub mod routing;
pub mod settings;
pub mod threading;
pub mod ticket;
pub mod time;
