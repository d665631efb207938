//! Sending over SMTP, with every failure classified by what it means for a
//! retry: not sent (safe to retry), refused for good, or unknown.
//!
//! The transaction is driven command by command (MAIL, RCPT, DATA, then the
//! message) rather than through a one-call `send`, because only then can a
//! lost connection be placed: before the message data went out nothing was
//! sent; after it, the server may have accepted the mail, and a retry could
//! make the customer receive it twice.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

use crate::domain::settings::Secret;
use crate::mail::auth::{Login, LoginError, LoginSource, PasswordLogin, SaslPreference};
use crate::mail::sasl;
use crate::mail::settings::{SmtpSettings, TlsMode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The server did not take the message (4xx, connection refused, lost
    /// before DATA): retry later.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// The server refused it for good (5xx, bad credentials, bad config).
    #[error("refused: {0}")]
    Permanent(String),
    /// The connection broke after the message data was sent: the server may
    /// or may not have accepted it. Never retried automatically.
    #[error("outcome unknown: {0}")]
    Uncertain(String),
}

/// Something that delivers composed mail. The SMTP implementation is
/// [`SmtpMailer`]; flow tests use stubs.
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<(), SendError>;
}

/// The password login of `smtp.username`/`smtp.password`, when both are set.
pub fn password_login(settings: &SmtpSettings) -> Option<PasswordLogin> {
    settings
        .credentials()
        .map(|(user, password)| PasswordLogin {
            user: user.to_owned(),
            password: password.clone(),
        })
}

/// Why one login attempt failed.
enum AuthFailure {
    /// The server refused the bearer token: worth one more try with a fresh one.
    TokenRefused {
        mechanism: sasl::Mechanism,
        reason: String,
    },
    Other(SendError),
}

impl From<SendError> for AuthFailure {
    fn from(e: SendError) -> Self {
        AuthFailure::Other(e)
    }
}

fn login_error(e: LoginError) -> SendError {
    if e.is_transient() {
        SendError::Transient(e.to_string())
    } else {
        SendError::Permanent(e.to_string())
    }
}

pub struct SmtpMailer {
    settings: SmtpSettings,
    /// None: no AUTH.
    login: Option<Arc<dyn LoginSource>>,
}

impl SmtpMailer {
    /// Sends through `settings`' server, logging in with `login` (None: no
    /// AUTH; see [`password_login`]).
    pub fn new(settings: SmtpSettings, login: Option<Arc<dyn LoginSource>>) -> Self {
        SmtpMailer { settings, login }
    }

    fn tls_parameters(&self) -> Result<TlsParameters, SendError> {
        let mut b = TlsParameters::builder(self.settings.host.clone());
        if let Some(path) = &self.settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                SendError::Permanent(format!("cannot read smtp.ca_file {}: {e}", path.display()))
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                SendError::Permanent(format!("smtp.ca_file {}: {e}", path.display()))
            })?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls()
            .map_err(|e| SendError::Permanent(format!("TLS setup: {e}")))
    }

    /// Connects and logs in. A bearer token the server refuses is reported
    /// to the source and tried once more at once with a fresh login; refused
    /// again, the send fails for good. Either way nothing was sent.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let Some(source) = &self.login else {
            return self.open().await;
        };
        let first = source.login().await.map_err(login_error)?;
        let (mechanism, reason) = match self.connect_as(&first).await {
            Ok(conn) => return Ok(conn),
            Err(AuthFailure::Other(e)) => return Err(e),
            Err(AuthFailure::TokenRefused { mechanism, reason }) => (mechanism, reason),
        };
        tracing::info!(user = %first.user(), %mechanism, %reason, "SMTP refused the access token; trying once more with a fresh one");
        source.rejected(&first).await;
        let second = source.login().await.map_err(login_error)?;
        match self.connect_as(&second).await {
            Ok(conn) => Ok(conn),
            Err(AuthFailure::Other(e)) => Err(e),
            Err(AuthFailure::TokenRefused { mechanism, reason }) => {
                source.rejected(&second).await;
                Err(SendError::Permanent(format!(
                    "{mechanism} login as {} refused the access token ({reason}), also after \
                     a refresh; sign in again with `mailroom auth login`",
                    second.user()
                )))
            }
        }
    }

    async fn connect_as(&self, login: &Login) -> Result<AsyncSmtpConnection, AuthFailure> {
        let mut conn = self.open().await?;
        let result = match login {
            Login::Password { user, password } => self.password(&mut conn, user, password).await,
            Login::Bearer {
                user,
                token,
                mechanism,
            } => self.bearer(&mut conn, user, token, *mechanism).await,
        };
        match result {
            Ok(()) => Ok(conn),
            Err(e) => {
                conn.abort().await;
                Err(e)
            }
        }
    }

    async fn password(
        &self,
        conn: &mut AsyncSmtpConnection,
        user: &str,
        password: &Secret,
    ) -> Result<(), AuthFailure> {
        let creds = Credentials::new(user.to_owned(), password.expose().to_owned());
        match conn
            .auth(&[Mechanism::Plain, Mechanism::Login], &creds)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_transient() => {
                Err(SendError::Transient(format!("authentication: {e}")).into())
            }
            Err(e) => {
                Err(SendError::Permanent(format!("authentication as {user} failed: {e}")).into())
            }
        }
    }

    /// SASL XOAUTH2 or OAUTHBEARER with the initial response on the AUTH
    /// line (RFC 4954). lettre knows XOAUTH2 only and cannot answer a
    /// failure challenge, so both go out as raw commands.
    async fn bearer(
        &self,
        conn: &mut AsyncSmtpConnection,
        user: &str,
        token: &Secret,
        preference: SaslPreference,
    ) -> Result<(), AuthFailure> {
        let s = &self.settings;
        // lettre's server info keeps only the mechanisms it implements:
        // read the AUTH line of a fresh EHLO (after STARTTLS, as it must be).
        let ehlo = conn
            .command(Ehlo::new(hello()))
            .await
            .map_err(classify_before_data)?;
        let offered = sasl::mechanisms_from_ehlo(ehlo.message().skip(1));
        let mechanism = sasl::choose(preference, &offered)
            .map_err(|e| SendError::Permanent(format!("{}:{}: {e}", s.host, s.port)))?;
        let initial = mechanism.initial_response_base64(user, token.expose(), &s.host, s.port);
        let refused = |e: lettre::transport::smtp::Error, reason: Option<String>| {
            let code = e.status().map(|c| c.to_string());
            match code.as_deref() {
                // 535: authentication credentials invalid (RFC 4954).
                Some("535") => AuthFailure::TokenRefused {
                    mechanism,
                    reason: reason.unwrap_or_else(|| e.to_string()),
                },
                _ => AuthFailure::Other(classify_before_data(e)),
            }
        };
        let reply = match conn
            .command(format!("AUTH {} {initial}\r\n", mechanism.name()))
            .await
        {
            Ok(reply) => reply,
            Err(e) => return Err(refused(e, None)),
        };
        if reply.has_code(235) {
            return Ok(());
        }
        if !reply.has_code(334) {
            return Err(SendError::Permanent(format!(
                "AUTH {mechanism}: unexpected reply {}",
                reply.code()
            ))
            .into());
        }
        // A failure challenge: answer it with the dummy response, then the
        // server sends its final 5xx (RFC 7628 §3.2.3).
        let reason = sasl::failure_reason_base64(reply.first_line().unwrap_or(""));
        let dummy = STANDARD.encode(mechanism.dummy_response());
        match conn.command(format!("{dummy}\r\n")).await {
            Err(e) => Err(refused(e, Some(reason))),
            Ok(reply) => Err(SendError::Permanent(format!(
                "AUTH {mechanism}: the server sent a failure challenge ({reason}), then {}",
                reply.code()
            ))
            .into()),
        }
    }

    /// TCP, TLS as configured, EHLO: a connection ready to log in.
    async fn open(&self) -> Result<AsyncSmtpConnection, SendError> {
        crate::mail::tls::install_crypto_provider();
        let s = &self.settings;
        let hello = hello();
        let addr = (s.host.as_str(), s.port);
        let connect_err = |e: lettre::transport::smtp::Error| {
            if e.is_permanent() {
                SendError::Permanent(format!("{}:{}: {e}", s.host, s.port))
            } else {
                SendError::Transient(format!("{}:{}: {e}", s.host, s.port))
            }
        };
        let conn = match s.tls {
            TlsMode::Implicit => AsyncSmtpConnection::connect_tokio1(
                addr,
                Some(s.timeout),
                &hello,
                Some(self.tls_parameters()?),
                None,
            )
            .await
            .map_err(connect_err)?,
            TlsMode::StartTls => {
                let mut conn =
                    AsyncSmtpConnection::connect_tokio1(addr, Some(s.timeout), &hello, None, None)
                        .await
                        .map_err(connect_err)?;
                if !conn.can_starttls() {
                    conn.abort().await;
                    return Err(SendError::Permanent(format!(
                        "{} does not offer STARTTLS (set smtp.tls = \"implicit\" or \"none\")",
                        s.host
                    )));
                }
                conn.starttls(self.tls_parameters()?, &hello)
                    .await
                    .map_err(connect_err)?;
                conn
            }
            TlsMode::None => {
                AsyncSmtpConnection::connect_tokio1(addr, Some(s.timeout), &hello, None, None)
                    .await
                    .map_err(connect_err)?
            }
        };
        Ok(conn)
    }
}

/// The name mailroom greets SMTP servers with.
fn hello() -> ClientId {
    ClientId::Domain("mailroom.localhost".to_owned())
}

fn classify_before_data(e: lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::Permanent(e.to_string())
    } else {
        // 4xx, timeouts and lost connections before the data: nothing was sent.
        SendError::Transient(e.to_string())
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<(), SendError> {
        let mut conn = self.connect().await?;
        let mut params = Vec::new();
        if !raw.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                conn.abort().await;
                return Err(SendError::Permanent(
                    "message is 8-bit but the server lacks 8BITMIME".into(),
                ));
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let non_ascii = envelope
            .from()
            .into_iter()
            .chain(envelope.to().iter())
            .any(|a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                conn.abort().await;
                return Err(SendError::Permanent(
                    "an address is non-ASCII but the server lacks SMTPUTF8".into(),
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        let before = async {
            conn.command(Mail::new(envelope.from().cloned(), params))
                .await?;
            for rcpt in envelope.to() {
                conn.command(Rcpt::new(rcpt.clone(), vec![])).await?;
            }
            conn.command(Data).await?;
            Ok::<_, lettre::transport::smtp::Error>(())
        };
        if let Err(e) = before.await {
            conn.abort().await;
            return Err(classify_before_data(e));
        }
        match conn.message(raw).await {
            Ok(_) => {
                let _ = conn.quit().await;
                Ok(())
            }
            // A reply code after the data is a clear answer either way.
            Err(e) if e.is_transient() => Err(SendError::Transient(e.to_string())),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => {
                conn.abort().await;
                Err(SendError::Uncertain(e.to_string()))
            }
        }
    }
}
