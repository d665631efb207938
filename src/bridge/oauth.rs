//! OAuth2 mailboxes: the [`LoginSource`] that hands their IMAP and SMTP
//! connections an access token, the task that refreshes it before it
//! expires, and storing a sign-in (`mailroom auth login`).
//!
//! One [`OAuthLogin`] per mailbox. Its lock serialises refreshes: callers
//! that arrive while one runs wait for it and get its token. A refreshed
//! access token and a rotated refresh token are stored in one write
//! (`TicketStore::grant_refreshed`). When the provider refuses the grant
//! for good, the refusal is recorded with the mailbox's room notices and an
//! audit line in one transaction, once per grant; every later login reads
//! that from the store (no call to the provider) until `auth login` stores
//! a new grant, which the next login picks up without a restart. Other
//! mailboxes are untouched: each has its own source.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::now_ms;
use crate::config::Settings;
use crate::domain::chat::Platform;
use crate::domain::ids::MailboxName;
use crate::domain::settings::Secret;
use crate::mail::auth::{Login, LoginError, LoginSource, SaslPreference};
use crate::mail::oauth::{AuthMethod, OAuthError, SealKey, TokenClient, Tokens};
use crate::mail::settings::MailboxSettings;
use crate::ops::metrics::Metrics;
use crate::store::{Grant, JobSpec, NewGrant, Refreshed, TicketStore};

/// An access token is refreshed once less than this is left of it (or half
/// its lifetime, for short-lived tokens).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How often a mailbox without a usable grant looks for a new one.
const RECHECK: Duration = Duration::from_secs(2);

/// How long a process holds the refresh of a grant (longer than the token
/// endpoint's own 30 s timeout); a claim left by a process that died ends
/// by itself after this.
const REFRESH_CLAIM: Duration = Duration::from_secs(40);

/// How often a process waiting for another's refresh looks at the grant.
const CLAIM_POLL: Duration = Duration::from_millis(200);

/// The access token in use.
struct Held {
    token: Secret,
    expires_at_ms: Option<i64>,
    /// From the grant it was refreshed for.
    generation: i64,
    /// How long tokens of this grant live, for the margin.
    lifetime_ms: Option<i64>,
    /// The server refused it: the next login refreshes.
    rejected: bool,
    /// It was refreshed because the server refused its predecessor: a
    /// refusal of this one is final.
    after_rejection: bool,
}

impl Held {
    /// Time left before it must be refreshed; zero: now.
    fn refresh_in(&self, now_ms: i64) -> Duration {
        let Some(expires) = self.expires_at_ms else {
            return Duration::from_secs(3600);
        };
        let margin = self
            .lifetime_ms
            .map_or(REFRESH_MARGIN.as_millis() as i64, |l| {
                (l / 2).min(REFRESH_MARGIN.as_millis() as i64)
            });
        Duration::from_millis((expires - margin - now_ms).max(0) as u64)
    }
}

/// The [`LoginSource`] of one `auth = "oauth2"` mailbox.
pub struct OAuthLogin {
    mailbox: MailboxName,
    address: String,
    /// The SASL user: `imap.username`.
    user: String,
    mechanism: SaslPreference,
    client: TokenClient,
    store: Arc<dyn TicketStore>,
    key: Option<SealKey>,
    /// Where a refusal is told.
    rooms: Vec<(Platform, String)>,
    metrics: Arc<Metrics>,
    held: tokio::sync::Mutex<Option<Held>>,
}

impl std::fmt::Debug for OAuthLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OAuthLogin({})", self.mailbox)
    }
}

impl OAuthLogin {
    /// `None` unless the mailbox signs in with OAuth2.
    pub fn new(
        m: &MailboxSettings,
        key: Option<SealKey>,
        store: Arc<dyn TicketStore>,
        rooms: Vec<(Platform, String)>,
        metrics: Arc<Metrics>,
    ) -> Option<OAuthLogin> {
        let o = m.oauth2.as_ref().filter(|_| m.auth == AuthMethod::Oauth2)?;
        Some(OAuthLogin {
            mailbox: m.name.clone(),
            address: m.address.as_str().to_owned(),
            user: m.imap.username.clone(),
            mechanism: o.mechanism,
            client: TokenClient::new(o),
            store,
            key,
            rooms,
            metrics,
            held: tokio::sync::Mutex::new(None),
        })
    }

    pub fn mailbox(&self) -> &MailboxName {
        &self.mailbox
    }

    fn bearer(&self, token: &Secret) -> Login {
        Login::Bearer {
            user: self.user.clone(),
            token: token.clone(),
            mechanism: self.mechanism,
        }
    }

    fn key(&self) -> Result<&SealKey, LoginError> {
        self.key.as_ref().ok_or_else(|| LoginError::Refused {
            mailbox: self.mailbox.clone(),
            reason: "no [secrets] key to decrypt the stored grant".into(),
        })
    }

    fn unavailable(&self, reason: impl ToString) -> LoginError {
        LoginError::Unavailable {
            mailbox: self.mailbox.clone(),
            reason: reason.to_string(),
        }
    }

    /// How long until the token in use must be refreshed (the refresher's
    /// sleep); `None`: there is none.
    pub async fn refresh_in(&self) -> Option<Duration> {
        let held = self.held.lock().await;
        held.as_ref()
            .filter(|h| !h.rejected)
            .map(|h| h.refresh_in(now_ms()))
    }

    /// Records a final refusal: the rooms are told and it is audited, once
    /// per grant.
    async fn refuse(&self, generation: i64, reason: &str) -> LoginError {
        let text = format!(
            "⚠️ mailroom can no longer sign in to the mailbox {} ({}): {reason}. New mail will \
             not show up here and replies cannot be sent until someone runs \
             `mailroom auth login --mailbox {}`.",
            self.mailbox, self.address, self.mailbox
        );
        let notices: Vec<JobSpec> = self
            .rooms
            .iter()
            .map(|(platform, room)| JobSpec::ChatRoomNotice {
                platform: *platform,
                room: room.clone(),
                text: text.clone(),
            })
            .collect();
        match self
            .store
            .grant_refused(&self.mailbox, generation, reason, &notices, now_ms())
            .await
        {
            Ok(true) => {
                tracing::warn!(mailbox = %self.mailbox, reason, "OAuth2 grant refused; the room is told")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(mailbox = %self.mailbox, error = %e, "cannot record the refused grant")
            }
        }
        LoginError::Refused {
            mailbox: self.mailbox.clone(),
            reason: reason.to_owned(),
        }
    }

    /// The token from the grant, refreshed when due. Called with the lock
    /// held. One process refreshes a grant at a time: the others (replicas,
    /// or the CLI beside the daemon) wait for the token it stores rather
    /// than spend the same refresh token, which a provider that rotates
    /// them would refuse the second time, taking the grant for revoked.
    async fn fetch(&self, held: &mut Option<Held>) -> Result<Login, LoginError> {
        let rejected = held
            .as_ref()
            .filter(|h| h.rejected)
            .map(|h| h.expires_at_ms);
        let give_up = Instant::now() + REFRESH_CLAIM + Duration::from_secs(5);
        loop {
            let grant = self
                .store
                .grant(&self.mailbox)
                .await
                .map_err(|e| self.unavailable(format!("cannot read the grant: {e}")))?
                .ok_or_else(|| LoginError::NoGrant {
                    mailbox: self.mailbox.clone(),
                })?;
            if grant.refused_told_at_ms.is_some() {
                *held = None;
                return Err(LoginError::Refused {
                    mailbox: self.mailbox.clone(),
                    reason: grant.last_error.unwrap_or_else(|| "refused".into()),
                });
            }
            let key = self.key()?;
            let name = self.mailbox.as_str();
            // A stored token still good (a sign-in's, or another process's
            // refresh); after a rejection, only one other than the rejected.
            if let (Some(sealed), Some(expires)) = (&grant.access_token, grant.access_expires_at_ms)
                && rejected.is_none_or(|r| r != Some(expires))
            {
                let stored = Held {
                    token: Secret::default(),
                    expires_at_ms: Some(expires),
                    generation: grant.generation,
                    lifetime_ms: grant.refreshed_at_ms.map(|at| expires - at),
                    rejected: false,
                    after_rejection: false,
                };
                if !stored.refresh_in(now_ms()).is_zero() {
                    let token = match key.open(sealed, name) {
                        Ok(t) => t,
                        Err(e) => return Err(self.refuse(grant.generation, &e.to_string()).await),
                    };
                    let login = self.bearer(&token);
                    *held = Some(Held { token, ..stored });
                    return Ok(login);
                }
            }
            let now = now_ms();
            let claimed = self
                .store
                .grant_claim_refresh(
                    &self.mailbox,
                    grant.generation,
                    grant.refreshed_at_ms,
                    now,
                    now + REFRESH_CLAIM.as_millis() as i64,
                )
                .await
                .map_err(|e| self.unavailable(format!("cannot claim the refresh: {e}")))?;
            if claimed {
                return self.refresh(grant, rejected.is_some(), held).await;
            }
            if Instant::now() >= give_up {
                return Err(
                    self.unavailable("another process has been refreshing the token for too long")
                );
            }
            tracing::debug!(mailbox = %self.mailbox, "another process is refreshing the token; waiting for it");
            tokio::time::sleep(CLAIM_POLL).await;
        }
    }

    async fn refresh(
        &self,
        grant: Grant,
        after_rejection: bool,
        held: &mut Option<Held>,
    ) -> Result<Login, LoginError> {
        let key = self.key()?;
        let name = self.mailbox.as_str();
        let refresh_token = match key.open(&grant.refresh_token, name) {
            Ok(t) => t,
            Err(e) => return Err(self.refuse(grant.generation, &e.to_string()).await),
        };
        let started = Instant::now();
        let result = self.client.refresh(&refresh_token).await;
        let took = started.elapsed();
        let tokens = match result {
            Ok(t) => t,
            Err(e) => {
                let outcome = match e {
                    OAuthError::Unavailable(_) => "unavailable",
                    OAuthError::Provider { .. } => "refused",
                };
                self.metrics.oauth_refreshed(&self.mailbox, outcome, took);
                let err = e.to_login_error(&self.mailbox, self.client.settings());
                return Err(match &err {
                    LoginError::Refused { reason, .. } => {
                        self.refuse(grant.generation, reason).await
                    }
                    _ => {
                        tracing::warn!(mailbox = %self.mailbox, error = %e, "token refresh failed; will retry");
                        let _ = self
                            .store
                            .grant_error(
                                &self.mailbox,
                                grant.generation,
                                &err.to_string(),
                                now_ms(),
                            )
                            .await;
                        err
                    }
                });
            }
        };
        self.metrics.oauth_refreshed(&self.mailbox, "ok", took);
        let now = now_ms();
        let lifetime_ms = tokens.lifetime().map(|l| l.as_millis() as i64);
        let seal = |t: &Secret| key.seal(t, name).map_err(|e| self.unavailable(e));
        let refreshed = Refreshed {
            mailbox: self.mailbox.clone(),
            generation: grant.generation,
            access_token: seal(&tokens.access_token)?,
            access_expires_at_ms: lifetime_ms.map(|l| now + l),
            refresh_token: tokens.refresh_token.as_ref().map(seal).transpose()?,
            scopes: tokens.scope.clone(),
        };
        let stored = self
            .store
            .grant_refreshed(&refreshed, now)
            .await
            .map_err(|e| self.unavailable(format!("cannot store the refreshed token: {e}")))?;
        tracing::info!(
            mailbox = %self.mailbox,
            rotated = tokens.refresh_token.is_some(),
            expires_in_s = tokens.expires_in.unwrap_or(0),
            took_ms = took.as_millis() as u64,
            stored,
            "access token refreshed"
        );
        let login = self.bearer(&tokens.access_token);
        // Not stored: a new sign-in replaced the grant meanwhile; the next
        // login reads that one.
        *held = stored.then_some(Held {
            token: tokens.access_token,
            expires_at_ms: refreshed.access_expires_at_ms,
            generation: grant.generation,
            lifetime_ms,
            rejected: false,
            after_rejection,
        });
        Ok(login)
    }
}

#[async_trait]
impl LoginSource for OAuthLogin {
    async fn login(&self) -> Result<Login, LoginError> {
        let mut held = self.held.lock().await;
        if let Some(h) = held.as_ref()
            && !h.rejected
            && !h.refresh_in(now_ms()).is_zero()
        {
            return Ok(self.bearer(&h.token));
        }
        self.fetch(&mut held).await
    }

    async fn rejected(&self, login: &Login) {
        let Login::Bearer { token, .. } = login else {
            return;
        };
        let mut held = self.held.lock().await;
        let Some(h) = held.as_mut().filter(|h| &h.token == token) else {
            return;
        };
        if !h.after_rejection {
            h.rejected = true;
            return;
        }
        let generation = h.generation;
        *held = None;
        let reason = format!(
            "the mail server refused a freshly refreshed token: check that {} may open the \
             mailbox {} and that the grant has its scopes",
            self.client.settings().login_user,
            self.user
        );
        self.refuse(generation, &reason).await;
    }
}

/// Keeps a mailbox's token fresh ahead of its expiry, so connections never
/// wait on the token endpoint; without a usable grant, looks for a new one
/// every few seconds.
pub async fn keep_fresh(login: Arc<OAuthLogin>, cancel: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = match login.login().await {
            Ok(_) => {
                backoff = Duration::from_secs(1);
                login
                    .refresh_in()
                    .await
                    .unwrap_or(RECHECK)
                    .max(Duration::from_millis(200))
            }
            Err(LoginError::Unavailable { .. }) => {
                backoff = (backoff * 2).min(Duration::from_secs(60));
                backoff
            }
            Err(LoginError::NoGrant { .. } | LoginError::Refused { .. }) => RECHECK,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// The sources of every `auth = "oauth2"` mailbox; `platforms`: the chat
/// platforms running, where refusals are told.
pub fn oauth_logins(
    settings: &Settings,
    store: &Arc<dyn TicketStore>,
    metrics: &Arc<Metrics>,
    platforms: &[Platform],
) -> BTreeMap<MailboxName, Arc<OAuthLogin>> {
    settings
        .mailboxes
        .iter()
        .filter_map(|m| {
            let rooms = platforms
                .iter()
                .filter_map(|p| Some((*p, m.chat.room(*p)?)))
                .collect();
            let key = settings.secrets.seal_key.clone();
            let login = OAuthLogin::new(m, key, store.clone(), rooms, metrics.clone())?;
            Some((m.name.clone(), Arc::new(login)))
        })
        .collect()
}

/// Why a sign-in could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(
        "the provider returned no refresh token: the scopes need offline access (mailbox.oauth2.scopes)"
    )]
    NoRefreshToken,
    #[error("no [secrets] key: give secrets.key_env or secrets.key_file")]
    NoKey,
    #[error("{0}")]
    Seal(#[from] crate::mail::oauth::SealError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// Stores a sign-in's tokens as the mailbox's grant (sealed), replacing any
/// earlier one; a running daemon picks it up at its next login.
pub async fn store_sign_in(
    store: &dyn TicketStore,
    key: Option<&SealKey>,
    m: &MailboxSettings,
    tokens: &Tokens,
) -> Result<Grant, SignInError> {
    let key = key.ok_or(SignInError::NoKey)?;
    let refresh = tokens
        .refresh_token
        .as_ref()
        .ok_or(SignInError::NoRefreshToken)?;
    let name = m.name.as_str();
    let o = m.oauth2.as_ref();
    let now = now_ms();
    let new = NewGrant {
        mailbox: m.name.clone(),
        account: tokens
            .account()
            .or_else(|| o.map(|o| o.login_user.clone()))
            .unwrap_or_default(),
        scopes: tokens
            .scope
            .clone()
            .or_else(|| o.map(|o| o.scope()))
            .unwrap_or_default(),
        refresh_token: key.seal(refresh, name)?,
        access_token: key.seal(&tokens.access_token, name)?,
        access_expires_at_ms: tokens.lifetime().map(|l| now + l.as_millis() as i64),
    };
    store.save_grant(&new, now).await?;
    Ok(store
        .grant(&m.name)
        .await?
        .ok_or(crate::store::StoreError::Corrupt {
            table: "oauth_grants",
            reason: "the grant just stored is gone".into(),
        })?)
}
