//! `[[mailbox]]`: one shared address, its IMAP and SMTP servers and its chat.
//! Defaults that depend on other keys (ports by `tls`, user names by the
//! address) are filled in by the load's cross-field pass.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::domain::chat::Platform;
use crate::domain::ids::{EmailAddress, MailboxName};
use crate::domain::settings::{Secret, host, int, lenient, line, port, read, seconds, secs, text};
use crate::mail::oauth::{AuthMethod, OAuthSettings};

#[derive(Debug, Clone, Deserialize)]
pub struct MailboxSettings {
    #[serde(deserialize_with = "name")]
    pub name: MailboxName,
    #[serde(deserialize_with = "address")]
    pub address: EmailAddress,
    #[serde(deserialize_with = "line")]
    pub display_name: String,
    /// `{agent}` and `{display_name}` are replaced, e.g. "Alice via Example Support".
    #[serde(default = "from_name", deserialize_with = "line")]
    pub from_name_template: String,
    #[serde(default, deserialize_with = "lenient")]
    pub initial_sync: InitialSync,
    /// How far apart a customer's mails with the same subject may be and still
    /// thread together when their headers were dropped.
    #[serde(default = "seconds::<1209600>")]
    #[serde(rename = "subject_window_days", deserialize_with = "days")]
    pub subject_window: Duration,
    /// The zone business hours, snooze times ("tomorrow 9:00") and digests
    /// are read in; default the host's (`TZ`, `/etc/localtime`), else UTC.
    #[serde(default, deserialize_with = "lenient")]
    pub time_zone: crate::domain::time::Zone,
    /// When the team is open, for SLA targets (`[mailbox.business_hours]`);
    /// not given: always (24×7).
    #[serde(default, deserialize_with = "lenient")]
    pub business_hours: Option<crate::domain::calendar::BusinessHoursSettings>,
    /// `password` (default) or `oauth2` (then `[mailbox.oauth2]`).
    #[serde(default, deserialize_with = "lenient")]
    pub auth: AuthMethod,
    #[serde(default, deserialize_with = "lenient")]
    pub oauth2: Option<OAuthSettings>,
    #[serde(deserialize_with = "lenient")]
    pub imap: ImapSettings,
    #[serde(deserialize_with = "lenient")]
    pub smtp: SmtpSettings,
    #[serde(default, deserialize_with = "lenient")]
    pub chat: ChatTargets,
    /// Whose Authentication-Results to believe (`mail::hygiene`).
    #[serde(default, deserialize_with = "lenient")]
    pub auth_results: crate::mail::hygiene::AuthResultsSettings,
    /// When one sender's mail is a loop (`mail::hygiene`).
    #[serde(default, deserialize_with = "lenient")]
    pub loop_guard: crate::mail::hygiene::LoopGuardSettings,
    /// Auto-assignment of new tickets no rule assigned (`domain::assign`).
    #[serde(default, deserialize_with = "lenient")]
    pub assign: Option<crate::domain::assign::AssignSettings>,
    /// Nudges for tickets nobody has claimed (`domain::reminders`).
    #[serde(default, deserialize_with = "lenient")]
    pub reminders: crate::domain::reminders::ReminderSettings,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImapSettings {
    #[serde(deserialize_with = "host")]
    pub host: String,
    /// Not given: 0 until the load sets 993, or 143 without implicit TLS.
    #[serde(default, deserialize_with = "port")]
    pub port: u16,
    #[serde(default = "implicit", deserialize_with = "lenient")]
    pub tls: TlsMode,
    /// Not given: empty until the load sets the mailbox's address.
    #[serde(default, deserialize_with = "lenient")]
    pub username: String,
    /// `password`, `password_env` or `password_file` in the file; required
    /// with `auth = "password"`, refused with `auth = "oauth2"`.
    #[serde(default, deserialize_with = "lenient")]
    pub password: Secret,
    #[serde(default = "inbox", deserialize_with = "lenient")]
    pub folder: String,
    /// Extra CA certificate (PEM) to trust, for private or test servers.
    #[serde(default, deserialize_with = "lenient")]
    pub ca_file: Option<PathBuf>,
    /// Use IDLE when the server offers it; otherwise poll.
    #[serde(default = "yes", deserialize_with = "lenient")]
    pub idle: bool,
    #[serde(default = "seconds::<60>")]
    #[serde(
        rename = "poll_interval_secs",
        deserialize_with = "secs::<1, 86_400, _>"
    )]
    pub poll_interval: Duration,
    /// IDLE is re-issued after this long (RFC 2177: at least every 29 minutes).
    #[serde(default = "seconds::<1500>")]
    #[serde(rename = "idle_timeout_secs", deserialize_with = "secs::<10, 1739, _>")]
    pub idle_timeout: Duration,
    /// The Sent folder: where mailroom files its replies and where replies
    /// written outside mailroom (Outlook, Gmail) are found. `None`: the
    /// folder the server marks `\Sent` (RFC 6154 SPECIAL-USE). The load
    /// takes the older `smtp.sent_folder` here when this is not given.
    #[serde(default, deserialize_with = "lenient")]
    pub sent_folder: Option<String>,
    /// Watch the Sent folder (a second connection, IDLE) and post replies
    /// written outside mailroom into their tickets' threads.
    #[serde(default = "yes", deserialize_with = "lenient")]
    pub watch_sent: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SmtpSettings {
    #[serde(deserialize_with = "host")]
    pub host: String,
    /// Not given: 0 until the load sets 465, 587 or 25 by `tls`.
    #[serde(default, deserialize_with = "port")]
    pub port: u16,
    #[serde(default, deserialize_with = "lenient")]
    pub tls: TlsMode,
    /// With a password and no user name, the load sets the mailbox's address.
    #[serde(default, deserialize_with = "lenient")]
    pub username: Option<String>,
    /// `password`, `password_env` or `password_file` in the file; `None`:
    /// the server relays without authentication (a local MTA).
    #[serde(default, deserialize_with = "lenient")]
    pub password: Option<Secret>,
    /// The older name of `imap.sent_folder`, still read: the load moves it
    /// there (and refuses the two set to different folders). Always `None`
    /// after the load.
    #[serde(default, deserialize_with = "lenient")]
    pub sent_folder: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "seconds::<30>")]
    #[serde(rename = "timeout_secs", deserialize_with = "secs::<1, 600, _>")]
    pub timeout: Duration,
}

impl SmtpSettings {
    /// User name and password, when the server wants them.
    pub fn credentials(&self) -> Option<(&str, &Secret)> {
        Some((self.username.as_deref()?, self.password.as_ref()?))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChatTargets {
    /// A Matrix room id or alias.
    #[serde(default, deserialize_with = "room")]
    pub matrix_room: Option<String>,
    /// A Slack channel id.
    #[serde(default, deserialize_with = "channel")]
    pub slack_channel: Option<String>,
}

impl ChatTargets {
    /// The room (Matrix) or channel (Slack) the mailbox posts to there.
    pub fn room(&self, platform: Platform) -> Option<String> {
        match platform {
            Platform::Matrix => self.matrix_room.clone(),
            Platform::Slack => self.slack_channel.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    #[default]
    StartTls,
    /// No encryption: only for loopback test servers.
    None,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum InitialSync {
    /// Start from what arrives after the first start.
    #[default]
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

/// A wrong name or address stands in as a valid one, as every wrong value does.
fn name<'de, D: Deserializer<'de>>(d: D) -> Result<MailboxName, D::Error> {
    let parse = |s: &str| MailboxName::parse(s).map_err(|e| e.reason.to_owned());
    let name = read(d, |s: String| parse(&s))?;
    name.map_or_else(|| parse("stand-in").map_err(serde::de::Error::custom), Ok)
}

fn address<'de, D: Deserializer<'de>>(d: D) -> Result<EmailAddress, D::Error> {
    let parse = |s: &str| EmailAddress::parse(s).map_err(|e| format!("{}: {}", e.reason, e.value));
    let address = read(d, |s: String| parse(&s))?;
    address.map_or_else(
        || parse("stand@in.invalid").map_err(serde::de::Error::custom),
        Ok,
    )
}

fn room<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text(d, |r| room_id(r).map(Some))
}

/// A Matrix room id or alias, as a check for `text` (also read by routing rules).
pub(crate) fn room_id(r: String) -> Result<String, String> {
    match r.starts_with(['!', '#']) && r.len() >= 2 && !r.contains(char::is_whitespace) {
        true => Ok(r),
        false => Err(format!(
            "expected a room id \"!…\" or alias \"#…:server\", got {r:?}"
        )),
    }
}

fn channel<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    text(d, |c| channel_id(c).map(Some))
}

/// A Slack channel id, as a check for `text` (also read by routing rules).
pub(crate) fn channel_id(c: String) -> Result<String, String> {
    let id = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
    match c.len() >= 2 && c.starts_with(['C', 'G', 'D']) && c.chars().all(id) {
        true => Ok(c),
        false => Err(format!(
            "expected a channel id such as \"C0123ABCD\", got {c:?}"
        )),
    }
}

fn days<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Ok(Duration::from_secs(86_400) * int::<0, 3650, u32, D>(d)?)
}

fn from_name() -> String {
    "{agent} via {display_name}".into()
}
fn implicit() -> TlsMode {
    TlsMode::Implicit
}
fn inbox() -> String {
    "INBOX".into()
}
fn yes() -> bool {
    true
}
