//! The device authorization grant (RFC 8628), as `mailroom auth login`
//! runs it: ask for a code, show it, poll the token endpoint at the
//! server's interval until someone approves in a browser.

use std::time::Duration;

use tokio::time::Instant;

use super::client::{DeviceAuthorization, OAuthError, ProviderError, TokenClient, Tokens};

/// What the flow tells the person signing in as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// Show this: where to go and what to enter.
    Code(&'a DeviceAuthorization),
    /// The server asked to poll less often (`slow_down`): now every this long.
    SlowDown(Duration),
}

/// Why the sign-in ended without tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The code expired before anyone approved it.
    #[error("the code expired before the sign-in was approved; run the command again")]
    Expired,
    /// The person signing in declined.
    #[error("the sign-in was declined in the browser (access_denied)")]
    Denied,
    /// The provider refused the client (`invalid_client`).
    #[error("{0}")]
    Client(OAuthError),
    /// The provider refused the scopes (`invalid_scope`).
    #[error("the provider refused the scopes ({0}): check mailbox.oauth2.scopes")]
    Scope(OAuthError),
    /// Anything else.
    #[error("{0}")]
    Failed(OAuthError),
}

impl From<OAuthError> for DeviceError {
    fn from(e: OAuthError) -> DeviceError {
        match e.code() {
            Some(ProviderError::ExpiredToken) => DeviceError::Expired,
            Some(ProviderError::AccessDenied) => DeviceError::Denied,
            Some(ProviderError::InvalidClient) => DeviceError::Client(e),
            Some(ProviderError::InvalidScope) => DeviceError::Scope(e),
            _ => DeviceError::Failed(e),
        }
    }
}

/// RFC 8628 §3.5: a client that is told `slow_down` adds 5 seconds.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// Runs the flow to the end: tokens, or why not.
pub async fn sign_in(
    client: &TokenClient,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Tokens, DeviceError> {
    let auth = client.device_authorization().await?;
    progress(Progress::Code(&auth));
    let deadline = Instant::now() + Duration::from_secs(auth.expires_in);
    let mut interval = Duration::from_secs(auth.interval.unwrap_or(5).max(1));
    loop {
        tokio::time::sleep(interval).await;
        match client.poll_device(&auth.device_code).await {
            Ok(tokens) => return Ok(tokens),
            Err(e) => match e.code() {
                Some(ProviderError::AuthorizationPending) => {}
                Some(ProviderError::SlowDown) => {
                    interval += SLOW_DOWN_STEP;
                    progress(Progress::SlowDown(interval));
                }
                // A network error while polling: the code is still good, keep going.
                None => {
                    tracing::warn!(error = %e, "polling the token endpoint failed; trying again")
                }
                Some(_) => return Err(e.into()),
            },
        }
        if Instant::now() + interval > deadline {
            return Err(DeviceError::Expired);
        }
    }
}
