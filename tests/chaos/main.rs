//! The fault suite (docs/RELIABILITY.md): mailroom against the real stack while things
//! break — the process SIGKILLed, the homeserver or Slack unreachable or
//! failing, the IMAP connection cut, the mailbox recreated. Every scenario
//! runs on SQLite and on PostgreSQL, checks the end state from the outside
//! (room or channel contents, the mailbox, the store) and prints a
//! `CHAOS <scenario> <db> runs=… emails=… lost=… duplicated=… recovery_ms=…`
//! line. Sizes come from `MAILROOM_CHAOS_EMAILS`, `MAILROOM_CHAOS_KILLS` and
//! `MAILROOM_CHAOS_OUTAGE_SECS` (defaults: a fast subset); `scripts/chaos`
//! runs the full sizes. Scenarios run one at a time (`harness::SERIAL`).
//! The replica scenarios (three `mailroom run` processes sharing one
//! database) run on PostgreSQL only: SQLite is one process.
//! See docs/RELIABILITY.md.

// matrix-sdk's futures are deeply nested types (common.rs links the bridge).
#![recursion_limit = "256"]

#[path = "../it/common.rs"]
mod common;
#[path = "../it/cuttable.rs"]
mod cuttable;
#[path = "../fake_slack/mod.rs"]
mod fake_slack;
mod harness;
mod imap_cuts;
mod kill;
mod outage;
mod replicas;
mod slack;
mod uidvalidity;

use harness::Db;

pub fn setup() {
    common::init_logs();
    mailroom::mail::tls::install_crypto_provider();
}

/// Each scenario runs on SQLite and on PostgreSQL, as a test of its own
/// for each: `name_sqlite, name_postgres => scenario_module;`.
macro_rules! on_both_databases {
    ($($sqlite:ident, $postgres:ident => $scenario:ident;)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $sqlite() {
                $scenario::run(Db::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $postgres() {
                $scenario::run(Db::Postgres).await;
            }
        )+
    };
}

on_both_databases! {
    kill9_during_ingest_sqlite, kill9_during_ingest_postgres => kill;
    matrix_outage_mid_ingest_sqlite, matrix_outage_mid_ingest_postgres => outage;
    imap_cuts_mid_fetch_and_idle_sqlite, imap_cuts_mid_fetch_and_idle_postgres => imap_cuts;
    uidvalidity_change_sqlite, uidvalidity_change_postgres => uidvalidity;
    slack_faults_500_429_socket_drop_sqlite, slack_faults_500_429_socket_drop_postgres => slack;
}

/// Three replica processes on one PostgreSQL database: `name => fault;`.
macro_rules! on_postgres {
    ($($name:ident => $fault:ident;)+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                replicas::run(replicas::Fault::$fault).await;
            }
        )+
    };
}

on_postgres! {
    replicas_kill9_three_processes_postgres => Kill9;
    replicas_db_cut_one_of_three_postgres => DbCut;
    replicas_rolling_restart_of_three_postgres => Rolling;
}
