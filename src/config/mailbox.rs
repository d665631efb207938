//! `[[mailbox]]`: one shared address, its IMAP and SMTP servers and its chat.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Check;
use super::de::{Host, Int, Key, Line, checked, want};
use super::secret::{Secret, SecretKeys};
use crate::domain::ids::{EmailAddress, MailboxName};

#[derive(Debug, Clone)]
pub struct MailboxSettings {
    pub name: MailboxName,
    pub address: EmailAddress,
    pub display_name: String,
    /// `{agent}` and `{display_name}` are replaced, e.g. "Alice via Example Support".
    pub from_name_template: String,
    pub initial_sync: InitialSync,
    /// How far apart a customer's mails with the same subject may be and still
    /// thread together when their headers were dropped.
    pub subject_window: Duration,
    pub imap: ImapSettings,
    pub smtp: SmtpSettings,
    pub chat: ChatTargets,
}

#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    pub password: Secret,
    pub folder: String,
    /// Extra CA certificate (PEM) to trust, for private or test servers.
    pub ca_file: Option<PathBuf>,
    /// Use IDLE when the server offers it; otherwise poll.
    pub idle: bool,
    pub poll_interval: Duration,
    /// IDLE is re-issued after this long (RFC 2177: servers may drop it after 30 min).
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// `None`: the server relays without authentication (a local MTA).
    pub credentials: Option<(String, Secret)>,
    pub sent_folder: String,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct ChatTargets {
    pub matrix_room: Option<String>,
    pub slack_channel: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    StartTls,
    /// No encryption: only for loopback test servers.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum InitialSync {
    /// Start from what arrives after the first start.
    NewOnly,
    /// Import mail received on or after this day.
    Since(jiff::civil::Date),
    /// Import the whole folder.
    All,
}

impl TryFrom<String> for InitialSync {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match (s.as_str(), s.strip_prefix("since:").map(str::parse)) {
            ("new-only", _) => Ok(InitialSync::NewOnly),
            ("all", _) => Ok(InitialSync::All),
            (_, Some(Ok(day))) => Ok(InitialSync::Since(day)),
            _ => Err(format!(
                "expected \"new-only\", \"all\" or \"since:YYYY-MM-DD\", got {s:?}"
            )),
        }
    }
}

checked!(Name(MailboxName), |s| MailboxName::parse(&s)
    .map_err(|e| e.reason.to_owned()));
checked!(Address(EmailAddress), |s| EmailAddress::parse(&s)
    .map_err(|e| format!("{}: {}", e.reason, e.value)));
checked!(
    /// A Matrix room id or alias.
    Room(String), |r| want(r.starts_with(['!', '#']) && r.len() >= 2 && !r.contains(char::is_whitespace),
        r, |r| format!("expected a room id \"!…\" or alias \"#…:server\", got {r:?}"))
);
checked!(
    /// A Slack channel id.
    Channel(String), |c| want(c.len() >= 2 && c.starts_with(['C', 'G', 'D']) && c.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
        c, |c| format!("expected a channel id such as \"C0123ABCD\", got {c:?}"))
);

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct MailboxFile {
    pub(super) name: Key<Name>,
    pub(super) address: Key<Address>,
    display_name: Key<Line>,
    from_name_template: Key<Line>,
    initial_sync: Key<InitialSync>,
    subject_window_days: Key<Int<0, 3650>>,
    imap: Key<ImapFile>,
    smtp: Key<SmtpFile>,
    pub(super) chat: Key<ChatFile>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ImapFile {
    host: Key<Host>,
    port: Key<Int<1, 65535>>,
    tls: Key<TlsMode>,
    username: Key<String>,
    password: Key<String>,
    password_env: Key<String>,
    password_file: Key<PathBuf>,
    folder: Key<String>,
    ca_file: Key<PathBuf>,
    idle: Key<bool>,
    poll_interval_secs: Key<Int<1, 86_400>>,
    /// RFC 2177: re-issue IDLE at least every 29 minutes.
    idle_timeout_secs: Key<Int<10, { 29 * 60 - 1 }>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct SmtpFile {
    host: Key<Host>,
    port: Key<Int<1, 65535>>,
    tls: Key<TlsMode>,
    username: Key<String>,
    password: Key<String>,
    password_env: Key<String>,
    password_file: Key<PathBuf>,
    sent_folder: Key<String>,
    ca_file: Key<PathBuf>,
    timeout_secs: Key<Int<1, 600>>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct ChatFile {
    pub(super) matrix_room: Key<Room>,
    pub(super) slack_channel: Key<Channel>,
}

impl MailboxFile {
    pub(super) fn settle(self, c: &mut Check, at: &str) -> Option<MailboxSettings> {
        let name = c.need(self.name, &format!("{at}.name"));
        let address = c.need(self.address, &format!("{at}.address")).map(|a| a.0);
        let display_name = c.need(self.display_name, &format!("{at}.display_name"));
        let imap = c.need(self.imap, &format!("{at}.imap"));
        let imap = imap.and_then(|i| i.settle(c, &format!("{at}.imap"), address.as_ref()));
        let smtp = c.need(self.smtp, &format!("{at}.smtp"));
        let smtp = smtp.and_then(|s| s.settle(c, &format!("{at}.smtp"), address.as_ref()));
        let chat = self
            .chat
            .get()
            .map(|t| (t.matrix_room.get(), t.slack_channel.get()));
        if let Some((None, None)) = chat
            && c.clean(&format!("{at}.chat"))
        {
            let message = "give matrix_room, slack_channel or both (or leave out [mailbox.chat])";
            c.problem(format!("{at}.chat"), message);
        }
        let (matrix_room, slack_channel) = chat.unwrap_or_default();
        Some(MailboxSettings {
            name: name?.0,
            address: address?,
            display_name: display_name?.0,
            from_name_template: self
                .from_name_template
                .get()
                .map_or("{agent} via {display_name}".into(), |t| t.0),
            initial_sync: self.initial_sync.or(InitialSync::NewOnly),
            subject_window: Duration::from_secs(86_400) * self.subject_window_days.num_or(14),
            imap: imap?,
            smtp: smtp?,
            chat: ChatTargets {
                matrix_room: matrix_room.map(|r| r.0),
                slack_channel: slack_channel.map(|c| c.0),
            },
        })
    }
}

impl ImapFile {
    fn settle(
        self,
        c: &mut Check,
        at: &str,
        address: Option<&EmailAddress>,
    ) -> Option<ImapSettings> {
        let tls = self.tls.or(TlsMode::Implicit);
        let host = c.need(self.host, &format!("{at}.host"));
        let password = SecretKeys(self.password, self.password_env, self.password_file);
        let password = password.resolve(c, at, "password").ok()?.or_else(|| {
            c.problem(
                format!("{at}.password"),
                "missing: give password, password_env or password_file",
            );
            None
        });
        Some(ImapSettings {
            host: host?.0,
            port: self
                .port
                .num_or(if tls == TlsMode::Implicit { 993 } else { 143 }),
            tls,
            username: self
                .username
                .get()
                .or_else(|| Some(address?.as_str().to_owned()))?,
            password: password?,
            folder: self.folder.or("INBOX".into()),
            ca_file: self.ca_file.get(),
            idle: self.idle.or(true),
            poll_interval: self.poll_interval_secs.secs_or(60),
            idle_timeout: self.idle_timeout_secs.secs_or(25 * 60),
        })
    }
}

impl SmtpFile {
    fn settle(
        self,
        c: &mut Check,
        at: &str,
        address: Option<&EmailAddress>,
    ) -> Option<SmtpSettings> {
        let tls = self.tls.or(TlsMode::StartTls);
        let host = c.need(self.host, &format!("{at}.host"));
        let password = SecretKeys(self.password, self.password_env, self.password_file);
        let credentials = match (self.username, password.resolve(c, at, "password")) {
            (Key::Is(user), Ok(Some(p))) => Some((user, p)),
            (Key::Absent, Ok(Some(p))) => Some((address?.as_str().to_owned(), p)),
            (Key::Is(_), Ok(None)) => {
                let message = "username is set, so give password, password_env or password_file";
                c.problem(format!("{at}.password"), message);
                None
            }
            _ => None,
        };
        let port = match tls {
            TlsMode::Implicit => 465,
            TlsMode::StartTls => 587,
            TlsMode::None => 25,
        };
        Some(SmtpSettings {
            host: host?.0,
            port: self.port.num_or(port),
            tls,
            credentials,
            sent_folder: self.sent_folder.or("Sent".into()),
            ca_file: self.ca_file.get(),
            timeout: self.timeout_secs.secs_or(30),
        })
    }
}
