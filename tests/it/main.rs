//! Integration tests: one binary (each file under tests/ would link the whole
//! dependency graph again). They run against the real servers that
//! `scripts/stack up` starts (Dovecot, Postfix) and the machine's PostgreSQL;
//! `scripts/test` does both. A missing server fails loudly, never skips.

// matrix-sdk's futures are deeply nested types.
#![recursion_limit = "256"]

mod architecture;
mod assign;
mod board;
mod cli;
mod common;
mod corpus;
mod cuttable;
mod dashboard;
mod dashboard_chat;
mod dashboard_filters;
mod durable;
mod every_mail;
#[path = "../fake_slack/mod.rs"]
mod fake_slack;
mod faults;
mod hygiene;
mod ingest_batch;
mod lanes;
mod mail_flow;
mod matrix;
mod oauth;
mod ops;
mod replicas;
mod replicas_bin;
mod rules;
mod sasl;
mod sent_folder;
mod sla;
mod slack;
mod snooze;
#[macro_use]
mod store_conformance;
mod stats_chat;
mod store_analytics;
mod store_assign;
mod store_board;
// After store_conformance: it uses its `conformance!` macro.
mod store_cluster;
mod store_grants;
mod store_lanes;
mod store_outbox;
mod store_routing;
mod store_sent;
mod store_sla;
mod store_snooze;
mod store_web;
