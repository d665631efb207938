//! `mailroom run`: the daemon's start (the store waited for, the SQLite
//! file locked, replicas on PostgreSQL, listeners bound before anything
//! connects) and its stop on SIGTERM or SIGINT.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::bridge::App;
use crate::bridge::replica::Cluster;
use crate::config::Settings;
use crate::store::TicketStore;
use crate::store::settings::DatabaseUrl;
use crate::store::sql::lock::SqliteLock;
use crate::store::sql::{Backend, SqlStore};

/// The daemon's store. A database that cannot be reached yet (a server
/// still starting, restarting, or down) is waited for, with backoff up to
/// 30 s, rather than ending the start: a service manager restarting
/// mailroom in a loop helps nobody, and the in-flight recovery runs once
/// it connects. A refusal (bad URL, password, permissions) ends the start.
/// `None`: stopped by a signal while waiting.
async fn open_store_waiting(
    settings: &Settings,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<SqlStore>> {
    let mut delay = std::time::Duration::from_secs(1);
    let started = std::time::Instant::now();
    loop {
        match SqlStore::open(&settings.database).await {
            Ok(store) => {
                if started.elapsed() > delay {
                    tracing::info!(
                        waited_ms = started.elapsed().as_millis() as u64,
                        "database reachable"
                    );
                }
                store.migrate().await.context("applying migrations")?;
                return Ok(Some(store));
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    database = %settings.database.url,
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "database unreachable; waiting for it"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => return Ok(None),
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("opening {}", settings.database.url));
            }
        }
    }
}

pub(super) async fn run_daemon(settings: Settings) -> anyhow::Result<()> {
    tracing::info!("{}", settings.summary());
    // SQLite is single-process: a second daemon on the file is refused
    // before it touches anything. Held until the process ends.
    let _single = match &settings.database.url {
        DatabaseUrl::Sqlite { path: Some(path) } => Some(SqliteLock::acquire(path)?),
        _ => None,
    };
    let cancel = CancellationToken::new();
    let signal_cancel = cancel.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal_cancel.cancel();
    });
    let Some(opened) = open_store_waiting(&settings, &cancel).await? else {
        tracing::info!("stopped before the database could be reached");
        return Ok(());
    };
    // On PostgreSQL every process is a replica: mailboxes by lease, the
    // outbox shared (docs/SCALING.md).
    let cluster = match opened.backend() {
        Backend::Postgres => Some(Arc::new(Cluster::new(
            &settings.cluster,
            Arc::new(opened.clone()),
        ))),
        Backend::Sqlite => None,
    };
    let store = Arc::new(match &cluster {
        Some(c) => opened.as_replica(c.id.clone(), c.lease_ttl),
        None => opened,
    });
    // Bound before anything connects, so a taken port stops the start with
    // the key to change rather than surfacing later in a task's log.
    let ops = match settings.ops.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("ops.listen {addr}: cannot listen"))?,
        ),
        None => None,
    };
    let web = match settings.web.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("web.listen {addr}: cannot listen"))?,
        ),
        None => None,
    };
    let chats = crate::bridge::connect_chats_as(&settings, &cancel, cluster.clone())
        .await
        .map_err(|e| anyhow::anyhow!("chat: {e}"))?;
    let mut app = App::new(settings, store.clone(), chats.platforms);
    app.cluster = cluster;
    let app = Arc::new(app);
    app.run_with_listeners(cancel, Some(chats.events), ops, web)
        .await;
    for t in chats.tasks {
        let _ = t.await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
