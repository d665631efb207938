//! The token endpoint client: RFC 6749 (authorization code, refresh),
//! RFC 8628 (device authorization), RFC 7009 (revocation). Clients
//! authenticate with `client_secret_post`; a public client sends only its id.
//! Errors come back as kinds ([`ProviderError`]) for callers to branch on,
//! never as text to match.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use super::settings::OAuthSettings;
use crate::domain::ids::MailboxName;
use crate::domain::settings::Secret;
use crate::mail::auth::LoginError;

/// What a token endpoint answered on success. The tokens are secrets.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub access_token: Secret,
    /// Seconds the access token lives; `None`: the server did not say.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Present on sign-in, and on a refresh when the server rotates it.
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// Scopes granted, space-separated (may be fewer than asked for).
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub id_token: Option<Secret>,
}

impl Tokens {
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_in.map(Duration::from_secs)
    }

    /// Who signed in, from the ID token's claims (`email`,
    /// `preferred_username`, `upn`). The token is not verified: it came
    /// straight from the token endpoint over TLS (OpenID Connect Core
    /// §3.1.3.7), and the name is only shown, never trusted for access.
    pub fn account(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Claims {
            email: Option<String>,
            preferred_username: Option<String>,
            upn: Option<String>,
        }
        let payload = self.id_token.as_ref()?.expose().split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let c: Claims = serde_json::from_slice(&bytes).ok()?;
        c.email.or(c.preferred_username).or(c.upn)
    }
}

/// RFC 8628 §3.2: what the device authorization endpoint answered.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: Secret,
    pub user_code: String,
    /// Google calls it `verification_url`.
    #[serde(alias = "verification_url")]
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    /// Seconds between polls; RFC 8628 says 5 when not given.
    #[serde(default)]
    pub interval: Option<u64>,
}

/// The `error` of an RFC 6749 §5.2 / RFC 8628 §3.5 error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    AccessDenied,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    /// Any other code (or an HTTP status without one).
    Other(String),
}

impl ProviderError {
    fn parse(code: &str) -> ProviderError {
        match code {
            "authorization_pending" => ProviderError::AuthorizationPending,
            "slow_down" => ProviderError::SlowDown,
            "expired_token" => ProviderError::ExpiredToken,
            "access_denied" => ProviderError::AccessDenied,
            "invalid_client" | "unauthorized_client" => ProviderError::InvalidClient,
            "invalid_grant" => ProviderError::InvalidGrant,
            "invalid_scope" => ProviderError::InvalidScope,
            other => ProviderError::Other(other.chars().take(64).collect()),
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderError::AuthorizationPending => "authorization_pending",
            ProviderError::SlowDown => "slow_down",
            ProviderError::ExpiredToken => "expired_token",
            ProviderError::AccessDenied => "access_denied",
            ProviderError::InvalidClient => "invalid_client",
            ProviderError::InvalidGrant => "invalid_grant",
            ProviderError::InvalidScope => "invalid_scope",
            ProviderError::Other(code) => code,
        })
    }
}

/// Why a token endpoint call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The server answered with an OAuth2 error: its answer is final for
    /// this request (the device flow's `authorization_pending` and
    /// `slow_down` excepted).
    #[error("{code}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Provider {
        code: ProviderError,
        description: Option<String>,
    },
    /// No answer, a server error (5xx) or an answer that is not OAuth2:
    /// trying again later may work.
    #[error("{0}")]
    Unavailable(String),
}

impl OAuthError {
    pub fn code(&self) -> Option<&ProviderError> {
        match self {
            OAuthError::Provider { code, .. } => Some(code),
            OAuthError::Unavailable(_) => None,
        }
    }

    /// As a mailbox's login error: `invalid_grant` and `invalid_client` (and
    /// any other OAuth2 error) are refusals that need the operator, with the
    /// fix named; the rest is transient.
    pub fn to_login_error(&self, mailbox: &MailboxName, settings: &OAuthSettings) -> LoginError {
        let mailbox = mailbox.clone();
        match self {
            OAuthError::Unavailable(reason) => LoginError::Unavailable {
                mailbox,
                reason: reason.clone(),
            },
            OAuthError::Provider { code, .. } => {
                let reason = match code {
                    ProviderError::InvalidGrant => format!(
                        "the provider no longer accepts the grant ({self}): it was revoked or \
                         expired; run `mailroom auth login --mailbox {mailbox}`"
                    ),
                    ProviderError::InvalidClient => client_fix(self, settings),
                    _ => format!(
                        "the token endpoint refused the refresh ({self}); run `mailroom auth login --mailbox {mailbox}`"
                    ),
                };
                LoginError::Refused { mailbox, reason }
            }
        }
    }
}

/// What to check when the provider refuses the client itself.
pub fn client_fix(e: &OAuthError, settings: &OAuthSettings) -> String {
    match settings.client_secret {
        Some(_) => format!(
            "the provider refused the client ({e}): check mailbox.oauth2.client_secret \
             (and mailbox.oauth2.client_id)"
        ),
        None => format!(
            "the provider refused the client ({e}): check mailbox.oauth2.client_id, or give \
             mailbox.oauth2.client_secret if the app is not a public client"
        ),
    }
}

/// An RFC 6749 §5.2 error body.
#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Calls one provider's endpoints for one mailbox.
#[derive(Debug, Clone)]
pub struct TokenClient {
    http: Result<reqwest::Client, String>,
    settings: OAuthSettings,
}

impl TokenClient {
    pub fn new(settings: &OAuthSettings) -> TokenClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"));
        TokenClient {
            http,
            settings: settings.clone(),
        }
    }

    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    /// RFC 8628 §3.1.
    pub async fn device_authorization(&self) -> Result<DeviceAuthorization, OAuthError> {
        let scope = self.settings.scope();
        let form = [("scope", scope.as_str())];
        parse(
            self.post(&self.settings.device_authorization_url, &form)
                .await?,
        )
    }

    /// RFC 8628 §3.4: one poll.
    pub async fn poll_device(&self, device_code: &Secret) -> Result<Tokens, OAuthError> {
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code.expose()),
        ];
        parse(self.post(&self.settings.token_url, &form).await?)
    }

    /// RFC 6749 §4.1.3 with the PKCE verifier (RFC 7636 §4.5).
    pub async fn exchange_code(
        &self,
        code: &Secret,
        redirect_uri: &str,
        verifier: &Secret,
    ) -> Result<Tokens, OAuthError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.expose()),
        ];
        parse(self.post(&self.settings.token_url, &form).await?)
    }

    /// RFC 6749 §6.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<Tokens, OAuthError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        parse(self.post(&self.settings.token_url, &form).await?)
    }

    /// RFC 7009; `Ok(false)`: the provider has no revocation endpoint.
    pub async fn revoke(&self, token: &Secret, hint: &str) -> Result<bool, OAuthError> {
        if self.settings.revocation_url.is_empty() {
            return Ok(false);
        }
        let form = [("token", token.expose()), ("token_type_hint", hint)];
        self.post(&self.settings.revocation_url, &form).await?;
        Ok(true)
    }

    /// POSTs a form with the client's credentials; the body of a 2xx answer.
    async fn post(&self, url: &str, form: &[(&str, &str)]) -> Result<Vec<u8>, OAuthError> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| OAuthError::Unavailable(e.clone()))?;
        let mut fields: Vec<(&str, &str)> = vec![("client_id", self.settings.client_id.as_str())];
        if let Some(secret) = &self.settings.client_secret {
            fields.push(("client_secret", secret.expose()));
        }
        fields.extend_from_slice(form);
        let body = serde_urlencoded::to_string(&fields)
            .map_err(|e| OAuthError::Unavailable(format!("cannot encode the request: {e}")))?;
        let response = http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| OAuthError::Unavailable(format!("{url}: {}", without_url(&e))))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| OAuthError::Unavailable(format!("{url}: {}", without_url(&e))))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) if !status.is_server_error() => Err(OAuthError::Provider {
                code: ProviderError::parse(&e.error),
                description: e.error_description.map(|d| d.chars().take(300).collect()),
            }),
            _ if status.is_server_error() => {
                Err(OAuthError::Unavailable(format!("{url}: HTTP {status}")))
            }
            _ => Err(OAuthError::Provider {
                code: ProviderError::Other(format!("HTTP {}", status.as_u16())),
                description: None,
            }),
        }
    }
}

/// reqwest's error text without the URL it repeats.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    match detail.is_empty() {
        true => kind.to_owned(),
        false => format!("{kind}: {detail}"),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: Vec<u8>) -> Result<T, OAuthError> {
    serde_json::from_slice(&body).map_err(|e| {
        // serde_json's message names the field, never the value.
        OAuthError::Unavailable(format!("the answer is not what OAuth2 says: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_comes_from_the_id_token() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"1","email":"alice@example.com"}"#);
        let t: Tokens = serde_json::from_str(&format!(
            r#"{{"access_token":"at","expires_in":60,"id_token":"e30.{claims}."}}"#
        ))
        .unwrap();
        assert_eq!(t.account().as_deref(), Some("alice@example.com"));
        assert_eq!(t.lifetime(), Some(Duration::from_secs(60)));
        assert!(!format!("{t:?}").contains("\"at\""));
    }

    #[test]
    fn refusals_name_their_fix() {
        let mb = MailboxName::parse("support").unwrap();
        let s = OAuthSettings::default();
        let grant = OAuthError::Provider {
            code: ProviderError::parse("invalid_grant"),
            description: None,
        };
        let e = grant.to_login_error(&mb, &s);
        assert!(!e.is_transient());
        assert!(
            e.to_string()
                .contains("mailroom auth login --mailbox support"),
            "{e}"
        );
        let client = OAuthError::Provider {
            code: ProviderError::parse("invalid_client"),
            description: None,
        };
        let secret = OAuthSettings {
            client_secret: Some(Secret::new("x")),
            ..s.clone()
        };
        let e = client.to_login_error(&mb, &secret).to_string();
        assert!(e.contains("mailbox.oauth2.client_secret"), "{e}");
        let e = OAuthError::Unavailable("HTTP 503".into()).to_login_error(&mb, &s);
        assert!(e.is_transient());
    }
}
