//! Sending over SMTP, with every failure classified by what it means for a
//! retry: not sent (safe to retry), refused for good, or unknown.
//!
//! The transaction is driven command by command (MAIL, RCPT, DATA, then the
//! message) rather than through a one-call `send`, because only then can a
//! lost connection be placed: before the message data went out nothing was
//! sent; after it, the server may have accepted the mail, and a retry could
//! make the customer receive it twice.

use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};

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

pub struct SmtpMailer {
    settings: SmtpSettings,
}

impl SmtpMailer {
    pub fn new(settings: SmtpSettings) -> Self {
        SmtpMailer { settings }
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

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        crate::mail::tls::install_crypto_provider();
        let s = &self.settings;
        let hello = ClientId::Domain("mailroom.localhost".to_owned());
        let addr = (s.host.as_str(), s.port);
        let connect_err = |e: lettre::transport::smtp::Error| {
            if e.is_permanent() {
                SendError::Permanent(format!("{}:{}: {e}", s.host, s.port))
            } else {
                SendError::Transient(format!("{}:{}: {e}", s.host, s.port))
            }
        };
        let mut conn = match s.tls {
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
        if let Some((user, password)) = s.credentials() {
            let creds = Credentials::new(user.to_owned(), password.expose().to_owned());
            if let Err(e) = conn
                .auth(&[Mechanism::Plain, Mechanism::Login], &creds)
                .await
            {
                conn.abort().await;
                return Err(if e.is_transient() {
                    SendError::Transient(format!("authentication: {e}"))
                } else {
                    SendError::Permanent(format!("authentication as {user} failed: {e}"))
                });
            }
        }
        Ok(conn)
    }
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
