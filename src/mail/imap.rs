//! IMAP connections: TCP, implicit TLS or STARTTLS, login, and the small set
//! of commands mailroom uses.

use std::fmt::Debug;
use std::time::Duration;

use futures_util::TryStreamExt;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::domain::ids::MessageId;
use crate::mail::settings::{ImapSettings, TlsMode};
use crate::mail::tls::{TlsSetupError, client_config};

/// Any byte stream an IMAP session can run over (plain TCP or TLS).
pub trait ImapIo: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> ImapIo for T {}

pub type Session = async_imap::Session<Box<dyn ImapIo>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on any single command, so a stalled server cannot hang ingest
/// silently; IDLE has its own, longer timeout.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error(transparent)]
    TlsSetup(#[from] TlsSetupError),
    #[error("{host} does not offer STARTTLS (set imap.tls = \"implicit\" or \"none\")")]
    NoStartTls { host: String },
    #[error("login as {user} refused: {reason}")]
    Login { user: String, reason: String },
    #[error("IMAP {0} timed out")]
    Timeout(&'static str),
    #[error("folder {folder:?}: {reason}")]
    Folder { folder: String, reason: String },
    #[error("IMAP: {0}")]
    Protocol(#[from] async_imap::error::Error),
    #[error("the server closed the connection")]
    Closed,
}

impl ImapError {
    /// Transient errors are retried with backoff; permanent ones need the
    /// operator (bad credentials, missing folder, TLS trust), though ingest
    /// keeps retrying slowly in case the server side gets fixed.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            ImapError::Login { .. }
                | ImapError::TlsSetup(_)
                | ImapError::NoStartTls { .. }
                | ImapError::Folder { .. }
                | ImapError::Tls { .. }
        )
    }
}

/// Runs `fut` with a timeout, mapping expiry to [`ImapError::Timeout`].
pub async fn timed<T, E: Into<ImapError>>(
    what: &'static str,
    limit: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(ImapError::Timeout(what)),
    }
}

async fn tls_wrap(
    io: Box<dyn ImapIo>,
    settings: &ImapSettings,
) -> Result<Box<dyn ImapIo>, ImapError> {
    let config = client_config(settings.ca_file.as_deref())?;
    let name = ServerName::try_from(settings.host.clone()).map_err(|e| ImapError::Tls {
        host: settings.host.clone(),
        reason: e.to_string(),
    })?;
    let tls = timed("TLS handshake", CONNECT_TIMEOUT, async {
        TlsConnector::from(config)
            .connect(name, io)
            .await
            .map_err(|e| ImapError::Tls {
                host: settings.host.clone(),
                reason: e.to_string(),
            })
    })
    .await?;
    Ok(Box::new(tls))
}

async fn read_greeting(client: &mut async_imap::Client<Box<dyn ImapIo>>) -> Result<(), ImapError> {
    let greeting = timed("greeting", CONNECT_TIMEOUT, async {
        client
            .read_response()
            .await
            .map_err(|e| ImapError::Protocol(e.into()))
    })
    .await?;
    greeting.map(|_| ()).ok_or(ImapError::Closed)
}

/// Connects and logs in.
pub async fn connect(settings: &ImapSettings) -> Result<Session, ImapError> {
    let tcp = timed("connect", CONNECT_TIMEOUT, async {
        TcpStream::connect((settings.host.as_str(), settings.port))
            .await
            .map_err(|source| ImapError::Connect {
                host: settings.host.clone(),
                port: settings.port,
                source,
            })
    })
    .await?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn ImapIo> = Box::new(tcp);
    let client = match settings.tls {
        TlsMode::Implicit => {
            let mut client = async_imap::Client::new(tls_wrap(io, settings).await?);
            read_greeting(&mut client).await?;
            client
        }
        TlsMode::StartTls => {
            let mut client = async_imap::Client::new(io);
            read_greeting(&mut client).await?;
            timed(
                "STARTTLS",
                COMMAND_TIMEOUT,
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await
            .map_err(|e| match e {
                ImapError::Protocol(
                    async_imap::error::Error::Bad(_) | async_imap::error::Error::No(_),
                ) => ImapError::NoStartTls {
                    host: settings.host.clone(),
                },
                other => other,
            })?;
            async_imap::Client::new(tls_wrap(client.into_inner(), settings).await?)
        }
        TlsMode::None => {
            let mut client = async_imap::Client::new(io);
            read_greeting(&mut client).await?;
            client
        }
    };
    let login = tokio::time::timeout(
        COMMAND_TIMEOUT,
        client.login(&settings.username, settings.password.expose()),
    )
    .await
    .map_err(|_| ImapError::Timeout("login"))?;
    login.map_err(|(e, _client)| ImapError::Login {
        user: settings.username.clone(),
        reason: e.to_string(),
    })
}

/// Selected-folder facts.
#[derive(Debug, Clone, Copy)]
pub struct FolderState {
    pub uid_validity: u32,
    pub uid_next: Option<u32>,
    pub exists: u32,
}

/// EXAMINE (read-only SELECT): ingest can never change a flag by accident.
pub async fn examine(session: &mut Session, folder: &str) -> Result<FolderState, ImapError> {
    let mbox = timed("EXAMINE", COMMAND_TIMEOUT, session.examine(folder))
        .await
        .map_err(|e| match e {
            ImapError::Protocol(async_imap::error::Error::No(reason)) => ImapError::Folder {
                folder: folder.to_owned(),
                reason,
            },
            other => other,
        })?;
    let uid_validity = mbox.uid_validity.ok_or_else(|| ImapError::Folder {
        folder: folder.to_owned(),
        reason: "the server reports no UIDVALIDITY".into(),
    })?;
    Ok(FolderState {
        uid_validity,
        uid_next: mbox.uid_next,
        exists: mbox.exists,
    })
}

/// SELECT (read-write), for flagging.
pub async fn select(session: &mut Session, folder: &str) -> Result<(), ImapError> {
    timed("SELECT", COMMAND_TIMEOUT, session.select(folder))
        .await
        .map_err(|e| match e {
            ImapError::Protocol(async_imap::error::Error::No(reason)) => ImapError::Folder {
                folder: folder.to_owned(),
                reason,
            },
            other => other,
        })?;
    Ok(())
}

/// An IMAP quoted string (RFC 3501 §4.3) for SEARCH arguments.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if c != '\r' && c != '\n' {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// UIDs of messages in the selected folder whose Message-ID header is `id`.
pub async fn search_message_id(
    session: &mut Session,
    id: &MessageId,
) -> Result<Vec<u32>, ImapError> {
    let query = format!("HEADER Message-ID {}", quoted(&id.bracketed()));
    let uids = timed("UID SEARCH", COMMAND_TIMEOUT, session.uid_search(query)).await?;
    let mut uids: Vec<u32> = uids.into_iter().collect();
    uids.sort_unstable();
    Ok(uids)
}

/// APPENDs `raw` to `folder` with `\Seen` unless a message with the same
/// Message-ID is already there, so that a retried job never files twice.
pub async fn append_once(
    session: &mut Session,
    folder: &str,
    id: &MessageId,
    raw: &[u8],
) -> Result<bool, ImapError> {
    examine(session, folder).await?;
    if !search_message_id(session, id).await?.is_empty() {
        return Ok(false);
    }
    timed(
        "APPEND",
        COMMAND_TIMEOUT,
        session.append(folder, Some("(\\Seen)"), None, raw),
    )
    .await?;
    Ok(true)
}

/// Adds `\Answered` to the messages in `folder` whose Message-ID is `id`.
pub async fn flag_answered(
    session: &mut Session,
    folder: &str,
    id: &MessageId,
) -> Result<usize, ImapError> {
    select(session, folder).await?;
    let uids = search_message_id(session, id).await?;
    if uids.is_empty() {
        return Ok(0);
    }
    let set: Vec<String> = uids.iter().map(u32::to_string).collect();
    let set = set.join(",");
    timed("UID STORE", COMMAND_TIMEOUT, async {
        let stream = session
            .uid_store(&set, "+FLAGS.SILENT (\\Answered)")
            .await?;
        let _: Vec<_> = stream.try_collect().await?;
        Ok::<_, async_imap::error::Error>(())
    })
    .await?;
    Ok(uids.len())
}

/// Logs out, ignoring errors: the connection is going away either way.
pub async fn logout(mut session: Session) {
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn quoted_strings_escape_and_drop_line_breaks() {
        assert_eq!(quoted("<a\"b\\c@x>"), "\"<a\\\"b\\\\c@x>\"");
        assert_eq!(quoted("a\r\nb"), "\"ab\"");
    }
}
