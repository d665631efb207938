//! The authorization code flow for installed apps: PKCE (RFC 7636) and a
//! loopback redirect (RFC 8252 §7.3). `mailroom auth login` prints the
//! URL; the browser comes back to `http://127.0.0.1:PORT/` with the code,
//! or, when the browser runs on another machine, the person pastes the
//! address the browser ended on (which then fails to load) on stdin.

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::client::{OAuthError, TokenClient, Tokens};
use crate::domain::settings::Secret;

/// Why the browser sign-in ended without tokens.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "cannot listen on 127.0.0.1:{port} for the redirect: {error} (mailbox.oauth2.redirect_port)"
    )]
    Listen { port: u16, error: std::io::Error },
    #[error("no randomness for the PKCE verifier")]
    Random,
    /// The redirect carried an `error` (the person declined: `access_denied`).
    #[error("the provider answered the sign-in with {0}")]
    Refused(String),
    /// The redirect's `state` is not ours: a stale tab or a forged request.
    #[error("the redirect's state does not match this sign-in; use the URL printed by this run")]
    State,
    #[error("stdin closed before the redirected address came")]
    NoInput,
    #[error("token endpoint: {0}")]
    Token(#[from] OAuthError),
}

/// A sign-in waiting for its redirect.
pub struct Pending {
    /// Open this in a browser.
    pub url: String,
    pub redirect_uri: String,
    state: String,
    verifier: Secret,
    listener: TcpListener,
}

fn random_b64(n: usize) -> Result<String, BrowserError> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| BrowserError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// RFC 7636 §4.2: S256.
pub fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Listens for the redirect and builds the authorization URL.
pub async fn start(client: &TokenClient, login_hint: &str) -> Result<Pending, BrowserError> {
    let s = client.settings();
    let port = s.redirect_port;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|error| BrowserError::Listen { port, error })?;
    let bound = listener
        .local_addr()
        .map_err(|error| BrowserError::Listen { port, error })?;
    let redirect_uri = format!("http://127.0.0.1:{}/", bound.port());
    let verifier = random_b64(32)?;
    let state = random_b64(16)?;
    let scope = s.scope();
    let mut url = url::Url::parse(&s.authorization_url).map_err(|e| {
        BrowserError::Token(OAuthError::Unavailable(format!("authorization_url: {e}")))
    })?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &s.client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", &scope)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge(&verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("login_hint", login_hint)
        // Google: a refresh token, and one even if this app was approved before.
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent");
    Ok(Pending {
        url: url.into(),
        redirect_uri,
        state,
        verifier: Secret::new(verifier),
        listener,
    })
}

/// The `code` of a redirect's query, checked against `state`.
fn code_of(query: &str, state: &str) -> Result<Option<Secret>, BrowserError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if let Some(e) = get("error") {
        return Err(BrowserError::Refused(e.chars().take(64).collect()));
    }
    let Some(code) = get("code") else {
        return Ok(None);
    };
    if get("state") != Some(state) {
        return Err(BrowserError::State);
    }
    Ok(Some(Secret::new(code)))
}

/// A pasted line: the whole redirected address, or just its query.
fn pasted(line: &str, state: &str) -> Result<Option<Secret>, BrowserError> {
    let line = line.trim();
    let query = line.split_once('?').map_or(line, |(_, q)| q);
    code_of(query.split('#').next().unwrap_or_default(), state)
}

impl Pending {
    /// Waits for the redirect (or a pasted address) and trades the code for tokens.
    pub async fn finish(
        self,
        client: &TokenClient,
        mut input: impl AsyncBufRead + Unpin,
    ) -> Result<Tokens, BrowserError> {
        let mut line = String::new();
        let mut stdin_open = true;
        let code = loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let Ok((mut conn, _)) = accepted else { continue };
                    let mut buf = vec![0u8; 8192];
                    let mut n = 0;
                    while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => n += k,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let target = head.split_whitespace().nth(1).unwrap_or_default();
                    let query = target.split_once('?').map_or("", |(_, q)| q);
                    let found = code_of(query, &self.state);
                    let (status, text) = match &found {
                        Ok(Some(_)) => ("200 OK", "mailroom is signed in. You can close this tab."),
                        Ok(None) => ("404 Not Found", "Not the sign-in redirect."),
                        Err(_) => ("400 Bad Request", "The sign-in did not complete; see the terminal."),
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                    if let Some(code) = found? {
                        break code;
                    }
                }
                read = input.read_line(&mut line), if stdin_open => {
                    match read {
                        Ok(0) | Err(_) => stdin_open = false,
                        Ok(_) => {
                            let found = pasted(&line, &self.state);
                            line.clear();
                            if let Some(code) = found? {
                                break code;
                            }
                        }
                    }
                }
            }
        };
        Ok(client
            .exchange_code(&code, &self.redirect_uri, &self.verifier)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s256_challenge_is_rfc_7636s_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_pasted_address_gives_its_code_only_with_our_state() {
        let url = "http://127.0.0.1:4711/?code=abc%2F1&state=s1&scope=x";
        assert_eq!(pasted(url, "s1").unwrap().unwrap().expose(), "abc/1");
        assert!(matches!(pasted(url, "s2"), Err(BrowserError::State)));
        assert!(pasted("hello", "s1").unwrap().is_none());
        assert!(matches!(
            pasted("http://127.0.0.1/?error=access_denied&state=s1", "s1"),
            Err(BrowserError::Refused(e)) if e == "access_denied"
        ));
    }
}
