//! How a mailbox logs in to its IMAP and SMTP servers: with the password
//! from the config, or with an OAuth2 access token (SASL XOAUTH2 or
//! OAUTHBEARER, RFC 7628) that a [`LoginSource`] keeps fresh.
//!
//! The IMAP and SMTP clients ask their mailbox's source for a [`Login`] on
//! every connection and tell it when the server refused a token, so the
//! next connection refreshes instead of presenting the refused token again.
//! Where the tokens come from (the grant, its refresh, its storage) is the
//! source's business; the clients only speak SASL.

use async_trait::async_trait;
use serde::Deserialize;

use crate::domain::ids::MailboxName;
use crate::domain::settings::Secret;

/// What a connection logs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// IMAP LOGIN / SMTP AUTH PLAIN or LOGIN.
    Password { user: String, password: Secret },
    /// An OAuth2 access token, sent as SASL XOAUTH2 or OAUTHBEARER.
    /// `user` is the SASL authorization identity: the mailbox to open, which
    /// may differ from the account that signed in (a Microsoft 365 delegate
    /// opening a shared mailbox).
    Bearer {
        user: String,
        token: Secret,
        mechanism: SaslPreference,
    },
}

impl Login {
    /// The user name the server sees (never the secret).
    pub fn user(&self) -> &str {
        match self {
            Login::Password { user, .. } | Login::Bearer { user, .. } => user,
        }
    }
}

/// Which SASL mechanism carries a bearer token (`oauth2.mechanism`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaslPreference {
    /// OAUTHBEARER when the server offers it, else XOAUTH2.
    #[default]
    Auto,
    /// Google's and Microsoft's XOAUTH2.
    Xoauth2,
    /// RFC 7628 OAUTHBEARER.
    Oauthbearer,
}

/// Why no login could be had. Branch on the kind, never on the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Nobody has signed in for this mailbox yet, or `auth logout` forgot
    /// the grant. Needs the operator; the mailbox waits and recovers by
    /// itself once the grant exists.
    #[error("mailbox {mailbox}: no OAuth2 sign-in; run `mailroom auth login --mailbox {mailbox}`")]
    NoGrant { mailbox: MailboxName },
    /// The provider refused the grant for good (`invalid_grant`: revoked or
    /// expired; `invalid_client`: wrong client id or secret). Needs the
    /// operator; `reason` names the culprit.
    #[error("mailbox {mailbox}: OAuth2 sign-in refused: {reason}")]
    Refused {
        mailbox: MailboxName,
        reason: String,
    },
    /// The token endpoint could not be reached or failed on its side: retry.
    #[error("mailbox {mailbox}: token endpoint unavailable: {reason}")]
    Unavailable {
        mailbox: MailboxName,
        reason: String,
    },
}

impl LoginError {
    /// Whether trying again soon may help without the operator.
    pub fn is_transient(&self) -> bool {
        matches!(self, LoginError::Unavailable { .. })
    }
}

/// Hands out the login a mailbox's connections use.
#[async_trait]
pub trait LoginSource: Send + Sync {
    /// The login to use now. For OAuth2: an access token valid for a while
    /// yet (refreshed first when it is about to expire).
    async fn login(&self) -> Result<Login, LoginError>;
    /// The server refused `login`: the next [`LoginSource::login`] must not
    /// hand out the same token (it refreshes). A password source ignores it.
    async fn rejected(&self, login: &Login);
}

/// A fixed user name and password from the config.
#[derive(Debug, Clone)]
pub struct PasswordLogin {
    pub user: String,
    pub password: Secret,
}

#[async_trait]
impl LoginSource for PasswordLogin {
    async fn login(&self) -> Result<Login, LoginError> {
        Ok(Login::Password {
            user: self.user.clone(),
            password: self.password.clone(),
        })
    }

    async fn rejected(&self, _login: &Login) {}
}
