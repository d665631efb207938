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
use crate::domain::settings::Secret;
use crate::mail::auth::{Login, LoginError, LoginSource, PasswordLogin, SaslPreference};
use crate::mail::sasl::{self, NotOffered};
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
    /// No login to present: no OAuth2 grant, or the token endpoint failed.
    #[error(transparent)]
    NoLogin(#[from] LoginError),
    /// The server refused the access token, also after a fresh one was
    /// fetched: the grant is no good (revoked, wrong mailbox, wrong scope).
    #[error(
        "{mechanism} login as {user} refused the access token ({reason}), also after a refresh; sign in again with `mailroom auth login`"
    )]
    TokenRefused {
        user: String,
        mechanism: sasl::Mechanism,
        reason: String,
    },
    /// The server offers no SASL mechanism for the token.
    #[error("{host}: {error}")]
    Mechanism { host: String, error: NotOffered },
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
        if let ImapError::NoLogin(e) = self {
            return e.is_transient();
        }
        !matches!(
            self,
            ImapError::Login { .. }
                | ImapError::TokenRefused { .. }
                | ImapError::Mechanism { .. }
                | ImapError::TlsSetup(_)
                | ImapError::NoStartTls { .. }
                | ImapError::Folder { .. }
                | ImapError::Tls { .. }
        )
    }

    /// Whether only the operator can fix it by signing in again (no grant,
    /// grant refused, token refused twice). Ingest then retries slowly, so
    /// as not to hammer the token endpoint.
    pub fn needs_sign_in(&self) -> bool {
        match self {
            ImapError::NoLogin(e) => !e.is_transient(),
            ImapError::TokenRefused { .. } => true,
            _ => false,
        }
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

/// The password login of `settings` (`imap.username`, `imap.password`).
pub fn password_login(settings: &ImapSettings) -> PasswordLogin {
    PasswordLogin {
        user: settings.username.clone(),
        password: settings.password.clone(),
    }
}

/// Connects and logs in with `imap.username` and `imap.password`.
pub async fn connect_password(settings: &ImapSettings) -> Result<Session, ImapError> {
    connect(settings, &password_login(settings)).await
}

/// Connects and logs in with what `login` hands out. A bearer token the
/// server refuses is reported to the source ([`LoginSource::rejected`]) and
/// the login is tried once more at once, on a new connection, with a fresh
/// login; refused again, it is [`ImapError::TokenRefused`] (permanent).
pub async fn connect(
    settings: &ImapSettings,
    login: &dyn LoginSource,
) -> Result<Session, ImapError> {
    let first = login.login().await?;
    match connect_as(settings, &first).await {
        Err(ImapError::TokenRefused {
            mechanism, reason, ..
        }) => {
            tracing::info!(user = %first.user(), %mechanism, %reason, "IMAP refused the access token; trying once more with a fresh one");
            login.rejected(&first).await;
            let second = login.login().await?;
            let result = connect_as(settings, &second).await;
            if matches!(result, Err(ImapError::TokenRefused { .. })) {
                login.rejected(&second).await;
            }
            result
        }
        other => other,
    }
}

/// Connects and logs in with one given login (no retry).
async fn connect_as(settings: &ImapSettings, login: &Login) -> Result<Session, ImapError> {
    let client = open(settings).await?;
    match login {
        Login::Password { user, password } => {
            let login =
                tokio::time::timeout(COMMAND_TIMEOUT, client.login(user, password.expose()))
                    .await
                    .map_err(|_| ImapError::Timeout("login"))?;
            login.map_err(|(e, _client)| ImapError::Login {
                user: user.clone(),
                reason: e.to_string(),
            })
        }
        Login::Bearer {
            user,
            token,
            mechanism,
        } => {
            timed(
                "AUTHENTICATE",
                COMMAND_TIMEOUT,
                authenticate(client, settings, user, token, *mechanism),
            )
            .await
        }
    }
}

/// TCP, TLS as configured, greeting: a client ready to log in.
async fn open(settings: &ImapSettings) -> Result<async_imap::Client<Box<dyn ImapIo>>, ImapError> {
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
    Ok(match settings.tls {
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
    })
}

/// The capabilities before login (after any STARTTLS, as RFC 3501 wants
/// them asked again). async-imap asks only once logged in, so the command
/// goes out with a tag of ours, which its own tags (`A0001`…) never match.
async fn capabilities_before_login(
    client: &mut async_imap::Client<Box<dyn ImapIo>>,
) -> Result<Vec<String>, ImapError> {
    use async_imap::imap_proto::{Capability, Response, Status};
    use tokio::io::AsyncWriteExt;
    const TAG: &str = "MR0";
    let io = client.get_mut();
    io.write_all(format!("{TAG} CAPABILITY\r\n").as_bytes())
        .await
        .map_err(|e| ImapError::Protocol(e.into()))?;
    io.flush()
        .await
        .map_err(|e| ImapError::Protocol(e.into()))?;
    let mut caps: Vec<String> = Vec::new();
    loop {
        let Some(response) = client
            .read_response()
            .await
            .map_err(|e| ImapError::Protocol(e.into()))?
        else {
            return Err(ImapError::Closed);
        };
        match response.parsed() {
            Response::Capabilities(list) => caps.extend(list.iter().map(|c| match c {
                Capability::Imap4rev1 => "IMAP4rev1".to_owned(),
                Capability::Auth(m) => format!("AUTH={m}"),
                Capability::Atom(a) => a.to_string(),
            })),
            Response::Done {
                tag,
                status,
                outcome,
            } if tag.0 == TAG => {
                return match status {
                    Status::Ok => Ok(caps),
                    _ => Err(ImapError::Protocol(async_imap::error::Error::Bad(format!(
                        "CAPABILITY: {}",
                        outcome.information.as_deref().unwrap_or("refused")
                    )))),
                };
            }
            _ => {}
        }
    }
}

/// SASL XOAUTH2 or OAUTHBEARER with a bearer token.
async fn authenticate(
    mut client: async_imap::Client<Box<dyn ImapIo>>,
    settings: &ImapSettings,
    user: &str,
    token: &Secret,
    preference: SaslPreference,
) -> Result<Session, ImapError> {
    let caps = capabilities_before_login(&mut client).await?;
    let offered = sasl::mechanisms_from_imap_caps(caps.iter().map(String::as_str));
    let mechanism = sasl::choose(preference, &offered).map_err(|e| ImapError::Mechanism {
        host: settings.host.clone(),
        error: e,
    })?;
    let initial = mechanism.initial_response(user, token.expose(), &settings.host, settings.port);
    let sasl_ir = caps.iter().any(|c| c.eq_ignore_ascii_case("SASL-IR"));
    // With SASL-IR the initial response rides on the command (one round
    // trip); the mechanism name is followed by it, base64, on one line.
    let command = if sasl_ir {
        use base64::Engine;
        format!(
            "{} {}",
            mechanism.name(),
            base64::engine::general_purpose::STANDARD.encode(&initial)
        )
    } else {
        mechanism.name().to_owned()
    };
    let exchange = SaslExchange {
        mechanism,
        initial: std::sync::Mutex::new(if sasl_ir { None } else { Some(initial) }),
        failure: std::sync::Mutex::new(None),
    };
    match client.authenticate(command, &exchange).await {
        Ok(session) => Ok(session),
        Err((async_imap::error::Error::No(text), _client)) => {
            let reason = exchange
                .failure
                .lock()
                .ok()
                .and_then(|mut f| f.take())
                .unwrap_or(text);
            Err(ImapError::TokenRefused {
                user: user.to_owned(),
                mechanism,
                reason,
            })
        }
        Err((async_imap::error::Error::Bad(text), _client)) => Err(ImapError::Login {
            user: user.to_owned(),
            reason: format!("AUTHENTICATE {mechanism}: {text}"),
        }),
        Err((e, _client)) => Err(ImapError::Protocol(e)),
    }
}

/// The client side of one AUTHENTICATE: the initial response when the
/// server asks for it (no SASL-IR), and for any later challenge (a failure
/// report) the mechanism's dummy response, keeping the reason.
struct SaslExchange {
    mechanism: sasl::Mechanism,
    initial: std::sync::Mutex<Option<Vec<u8>>>,
    failure: std::sync::Mutex<Option<String>>,
}

impl async_imap::Authenticator for &SaslExchange {
    type Response = Vec<u8>;

    fn process(&mut self, challenge: &[u8]) -> Vec<u8> {
        if let Some(initial) = self.initial.lock().ok().and_then(|mut i| i.take()) {
            return initial;
        }
        if let Ok(mut f) = self.failure.lock() {
            *f = Some(sasl::failure_reason(challenge));
        }
        self.mechanism.dummy_response().to_vec()
    }
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
