//! The web dashboard (`[web] listen`): read-only pages about the queue,
//! the people and each ticket, with CSV exports, for teammates signed in by
//! a one-time link from chat.
//!
//! - [`settings`]: `[web]`.
//! - [`auth`]: links, sessions, the cookie; `/login`, `/signin`.
//! - [`views`]: what the pages show, read from the store.
//! - [`filter`]: what the overview is narrowed to.
//! - [`pages`] and `templates/`: HTML (askama, escaped by default).
//! - [`export`]: the same tables as CSV.
//! - [`chart`]: charts as SVG drawn here, no script.
//!
//! Like `ops`, the dashboard is handed what it reads ([`WebHandles`]),
//! never the bridge. It only answers GET (HEAD): it changes nothing but
//! its own sign-in rows, so there is nothing for a forged request to do.

pub mod auth;
pub mod chart;
pub mod export;
pub mod filter;
pub mod pages;
pub mod settings;
pub mod views;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::domain::calendar::Calendar;
use crate::domain::ids::MailboxName;
use crate::domain::sla::Policies;
use crate::domain::time::{Clock, Zone};
use crate::store::TicketStore;
use settings::WebSettings;

/// Reads a stored mail's text (the bridge hands over its MIME parser).
pub type MailText = Arc<dyn Fn(&[u8]) -> String + Send + Sync>;

/// What the dashboard reads, handed over by whoever runs it.
#[derive(Clone)]
pub struct WebHandles {
    pub store: Arc<dyn TicketStore>,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<WebSettings>,
    pub mail_text: MailText,
    /// The zone times are shown and days counted in, unless one mailbox
    /// is chosen (the first mailbox's).
    pub zone: Zone,
    /// Each mailbox's zone: the overview of one mailbox counts its days
    /// in it.
    pub zones: BTreeMap<MailboxName, Zone>,
    /// The SLA policies (`[[sla]]`), for the queue's SLA column.
    pub sla: Arc<Policies>,
    /// Each mailbox's business calendar, which SLA clocks count in.
    pub calendars: Arc<BTreeMap<MailboxName, Calendar>>,
    /// The Slack workspace's address (`auth.test`'s `url`, such as
    /// `https://team.slack.com/`): links to Slack threads need it. `None`
    /// without Slack.
    pub slack_workspace: Option<String>,
}

/// The dashboard's routes.
pub fn router(handles: WebHandles) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/overview.csv", get(export::overview))
        .route("/queue", get(pages::queue))
        .route("/queue.csv", get(export::queue))
        .route("/people", get(pages::people))
        .route("/people.csv", get(export::people))
        .route("/tickets/{id}", get(pages::ticket))
        .route("/tickets/{id}/messages.csv", get(export::messages))
        .route("/tickets/{id}/history.csv", get(export::history))
        .route("/login", get(auth::login))
        .route("/signin", get(auth::signin))
        .fallback(pages::fallback)
        .layer(middleware::from_fn(guard))
        .with_state(handles)
}

/// Headers every answer carries, and the request log. The log names the
/// path only: the query of `/login` is a sign-in token.
async fn guard(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let started = Instant::now();
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        // Styles are inline; nothing else is loaded, from anywhere.
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // A link in a page (matrix.to, Slack) must not learn the page's address.
        (header::REFERRER_POLICY, "no-referrer"),
        // Mail and names: no copy in shared caches or the back button's.
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    tracing::debug!(
        %method,
        %path,
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "dashboard request"
    );
    resp
}

/// Serves until `cancel` fires.
pub async fn serve(handles: WebHandles, listener: TcpListener, cancel: CancellationToken) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, url = %handles.settings.base_url(), "serving the dashboard");
    let shutdown = async move { cancel.cancelled().await };
    if let Err(e) = axum::serve(listener, router(handles))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, %addr, "the dashboard server stopped");
    }
}
