//! Signing in: one-time links handed out in chat (or by `mailroom web
//! link`), and the session cookie a link opens.
//!
//! A link's token and a session's id are 256 random bits; the store keeps
//! only their SHA-256 ([`SecretHash`]). The cookie is `HttpOnly` (no script
//! reads it), `SameSite=Strict` (no other site's page can make the browser
//! send it, which is what makes the read-only dashboard safe from CSRF
//! without tokens) and `Secure` when the dashboard is reached over HTTPS.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;

use super::WebHandles;
use super::pages::{Page, render};
use crate::domain::ids::Agent;
use crate::domain::web::{Redeemed, SecretHash};
use crate::store::{NewWebLink, NewWebSession, StoreError, TicketStore};

/// The session cookie's name.
pub const COOKIE: &str = "mailroom_session";

/// Why a link could not be handed out.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// `[web] listen` is not set: there is nothing to sign in to.
    #[error("the dashboard is not enabled (set [web] listen in the configuration)")]
    Disabled,
    /// The system's random source failed (should not happen on Linux).
    #[error("no randomness for a sign-in token: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// 256 random bits, URL-safe base64 (43 characters).
fn new_secret() -> Result<String, IssueError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| IssueError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A fresh one-time sign-in link for `agent`, stored (hashed) and audited
/// `dashboard-link-issued`. `via` says where it was asked for.
pub async fn issue_link(
    store: &dyn TicketStore,
    web: &super::settings::WebSettings,
    agent: &Agent,
    via: &str,
    now_ms: i64,
) -> Result<String, IssueError> {
    if web.listen.is_none() {
        return Err(IssueError::Disabled);
    }
    let token = new_secret()?;
    let link = NewWebLink {
        token: SecretHash::of(&token),
        agent: agent.clone(),
        expires_at_ms: now_ms + millis(web.link_ttl),
        via: via.to_owned(),
    };
    store.issue_web_link(&link, now_ms).await?;
    Ok(format!("{}/login?token={token}", web.base_url()))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The path the dashboard lives under (`/desk` for `https://x.example/desk`),
/// "" at the root: links inside pages and the cookie's `Path` use it.
pub fn base_path(web: &super::settings::WebSettings) -> String {
    let base = web.base_url();
    let after_scheme = base.split_once("://").map_or("", |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(i) => after_scheme[i..].trim_end_matches('/').to_owned(),
        None => String::new(),
    }
}

/// The teammate whose session cookie came with the request, if it is valid.
pub async fn session(h: &WebHandles, headers: &HeaderMap) -> Result<Option<Agent>, StoreError> {
    let Some(id) = cookie(headers, COOKIE) else {
        return Ok(None);
    };
    h.store
        .web_session(&SecretHash::of(id), h.clock.now_ms())
        .await
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[derive(Deserialize)]
pub struct LoginQuery {
    token: Option<String>,
}

/// `GET /login?token=…`: opens a link once and sets the session cookie.
pub async fn login(State(h): State<WebHandles>, Query(q): Query<LoginQuery>) -> Response {
    let base = base_path(&h.settings);
    let Some(token) = q.token.filter(|t| !t.is_empty()) else {
        return refused(
            &h,
            StatusCode::BAD_REQUEST,
            "This address has no sign-in token.",
        );
    };
    let session_id = match new_secret() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "dashboard sign-in failed");
            return refused(&h, StatusCode::INTERNAL_SERVER_ERROR, "Signing in failed.");
        }
    };
    let now = h.clock.now_ms();
    let session = NewWebSession {
        id: SecretHash::of(&session_id),
        expires_at_ms: now + millis(h.settings.session_ttl),
    };
    let outcome = h
        .store
        .redeem_web_link(&SecretHash::of(&token), &session, now)
        .await;
    match outcome {
        Ok(Redeemed::SignedIn(agent)) => {
            tracing::info!(%agent, "dashboard: signed in");
            let secure = if h.settings.secure_cookie() {
                "; Secure"
            } else {
                ""
            };
            let path = if base.is_empty() { "/" } else { base.as_str() };
            let cookie = format!(
                "{COOKIE}={session_id}; Path={path}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
                h.settings.session_ttl.as_secs()
            );
            // Not a redirect: the link is opened from the chat app, another
            // site, and a browser does not send a SameSite=Strict cookie on
            // a redirect that such a navigation started. This page's own
            // refresh is a navigation of the dashboard's, which does send it.
            let page = Page::SignedIn {
                agent: agent.to_string(),
            };
            let mut resp = render(&h, None, page);
            if let Ok(v) = cookie.parse() {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Ok(Redeemed::AlreadyUsed) => refused(
            &h,
            StatusCode::GONE,
            "This sign-in link was already used. Each link opens once: ask for a new one.",
        ),
        Ok(Redeemed::Expired) => refused(
            &h,
            StatusCode::GONE,
            "This sign-in link has expired. Ask for a new one.",
        ),
        Ok(Redeemed::Unknown) => refused(
            &h,
            StatusCode::UNAUTHORIZED,
            "This sign-in link is not valid. Ask for a new one.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "dashboard sign-in: the store failed");
            refused(
                &h,
                StatusCode::SERVICE_UNAVAILABLE,
                "Signing in failed: the database could not be reached. Try the link again shortly.",
            )
        }
    }
}

fn refused(h: &WebHandles, code: StatusCode, why: &str) -> Response {
    let page = Page::SignIn {
        problem: Some(why.to_owned()),
    };
    let mut resp = render(h, None, page);
    *resp.status_mut() = code;
    resp
}

/// `GET /signin`: how to get a link.
pub async fn signin(State(h): State<WebHandles>) -> Response {
    render(&h, None, Page::SignIn { problem: None })
}

/// Where a request without a session is sent.
pub fn to_signin(h: &WebHandles) -> Response {
    let to = format!("{}/signin", base_path(&h.settings));
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::settings::WebSettings;

    #[test]
    fn secrets_are_256_bits_and_differ() {
        let a = new_secret().unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, new_secret().unwrap());
    }

    #[test]
    fn the_base_path_comes_from_public_url() {
        let mut w = WebSettings {
            listen: Some("127.0.0.1:9481".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(base_path(&w), "");
        w.public_url = "https://desk.example.com/mail".into();
        assert_eq!(base_path(&w), "/mail");
        w.public_url = "https://desk.example.com".into();
        assert_eq!(base_path(&w), "");
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; mailroom_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
