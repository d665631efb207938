//! `/metrics` and `/healthz` over HTTP (`[ops] listen`).
//!
//! No authentication: the address must be loopback unless the operator set
//! `ops.allow_non_loopback` (see [`crate::config::sections::OpsSettings`]).
//!
//! The endpoints are handed what they read ([`OpsHandles`]), never the
//! bridge's `App`: ops sits below the flows it watches.

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::health::{CheckState, Health, MailboxReport};
use super::metrics::Metrics;
use crate::store::JobState;

/// Counts the outbox's jobs by state, for the depth gauges `/metrics` reads
/// when scraped (states without jobs may be left out).
#[async_trait]
pub trait OutboxDepth: Send + Sync {
    async fn count_jobs(
        &self,
    ) -> Result<Vec<(JobState, u64)>, Box<dyn std::error::Error + Send + Sync>>;
}

/// What the endpoints read, handed over by whoever runs them.
#[derive(Clone)]
pub struct OpsHandles {
    /// The registry the flows count into.
    pub metrics: Arc<Metrics>,
    /// When each mailbox was last checked.
    pub health: Arc<Health>,
    pub outbox: Arc<dyn OutboxDepth>,
}

/// The endpoints' routes.
pub fn router(handles: OpsHandles) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(handles)
}

/// Serves until `cancel` fires.
pub async fn serve(handles: OpsHandles, listener: TcpListener, cancel: CancellationToken) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, "serving /metrics and /healthz");
    let shutdown = async move { cancel.cancelled().await };
    if let Err(e) = axum::serve(listener, router(handles))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, %addr, "the /metrics and /healthz server stopped");
    }
}

async fn metrics(State(ops): State<OpsHandles>) -> Response {
    // Gauges that describe a current state are read when scraped.
    match ops.outbox.count_jobs().await {
        Ok(counts) => ops.metrics.set_outbox_depth(&counts),
        // The other metrics are still worth serving; the stale depth gauge
        // keeps its last value and the log says why.
        Err(e) => tracing::warn!(error = %e, "/metrics: cannot count outbox jobs"),
    }
    for r in ops.health.report() {
        ops.metrics.set_check_age(&r.mailbox, r.unchecked_for);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.metrics.encode(),
    )
        .into_response()
}

#[derive(Serialize)]
struct HealthBody {
    status: &'static str,
    stale_after_secs: u64,
    /// Names of the stale mailboxes (empty when healthy).
    stale: Vec<String>,
    mailboxes: Vec<MailboxReport>,
}

async fn healthz(State(ops): State<OpsHandles>) -> Response {
    let mailboxes = ops.health.report();
    let stale: Vec<String> = mailboxes
        .iter()
        .filter(|m| m.state == CheckState::Stale)
        .map(|m| m.mailbox.as_str().to_owned())
        .collect();
    let (code, status) = if stale.is_empty() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "stale")
    };
    let body = HealthBody {
        status,
        stale_after_secs: ops.health.stale_after().as_secs(),
        stale,
        mailboxes,
    };
    (code, axum::Json(body)).into_response()
}
