//! Integration tests: one binary (each file under tests/ would link the whole
//! dependency graph again). They run against the real servers that
//! `scripts/stack up` starts (Dovecot, Postfix) and the machine's PostgreSQL;
//! `scripts/test` does both. A missing server fails loudly, never skips.

mod cli;
mod common;
mod mail_flow;
mod matrix;
mod store_conformance;
