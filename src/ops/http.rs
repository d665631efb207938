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

/// Errors the outbox view passes on (the store's, whatever it is).
pub type ViewError = Box<dyn std::error::Error + Send + Sync>;

/// What the endpoints read of the outbox, when asked.
#[async_trait]
pub trait OutboxView: Send + Sync {
    /// Jobs by state, for the depth gauges (states without jobs may be left out).
    async fn count_jobs(&self) -> Result<Vec<(JobState, u64)>, ViewError>;
    /// Emails that could not be posted to chat and wait for an operator
    /// (`mailroom outbox retry`).
    async fn undelivered(&self) -> Result<Vec<Undelivered>, ViewError>;
}

/// An email that did not reach a chat, as `/healthz` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Undelivered {
    /// The outbox job (`mailroom outbox retry JOB`).
    pub job: i64,
    pub ticket: Option<i64>,
    pub platform: &'static str,
    pub error: String,
}

/// What the endpoints read, handed over by whoever runs them.
#[derive(Clone)]
pub struct OpsHandles {
    /// The registry the flows count into.
    pub metrics: Arc<Metrics>,
    /// When each mailbox was last checked.
    pub health: Arc<Health>,
    pub outbox: Arc<dyn OutboxView>,
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
    /// Emails that could not be posted to chat (empty when none).
    undelivered: Vec<Undelivered>,
    /// Why the outbox could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox_error: Option<String>,
}

async fn healthz(State(ops): State<OpsHandles>) -> Response {
    let mailboxes = ops.health.report();
    let stale: Vec<String> = mailboxes
        .iter()
        .filter(|m| m.state == CheckState::Stale)
        .map(|m| m.mailbox.as_str().to_owned())
        .collect();
    let (undelivered, outbox_error) = match ops.outbox.undelivered().await {
        Ok(u) => (u, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    // A stale mailbox is an outage (503). Mail that could not be posted is
    // not: a restart would not post it, and a probe that restarts or drains
    // mailroom would make things worse. It is `degraded` (200) and listed,
    // like an unreadable outbox.
    let (code, status) = if !stale.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "stale")
    } else if !undelivered.is_empty() || outbox_error.is_some() {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ok")
    };
    let body = HealthBody {
        status,
        stale_after_secs: ops.health.stale_after().as_secs(),
        stale,
        mailboxes,
        undelivered,
        outbox_error,
    };
    (code, axum::Json(body)).into_response()
}
