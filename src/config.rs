//! Configuration: TOML in, validated settings out.
//!
//! The file is first read as a plain TOML tree and then walked key by key, so
//! that `check-config` can report *every* problem with its key path
//! (`mailbox[1].smtp.port: expected 1-65535`) instead of stopping at the first
//! one, as serde's `deny_unknown_fields` would. Values become domain types here
//! (addresses, mailbox names, secrets), so nothing downstream re-validates.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use crate::domain::ids::{EmailAddress, MailboxName};

/// A secret value (password, token). Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to read the value: greppable, so every use is deliberate.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub mailboxes: Vec<MailboxSettings>,
    pub matrix: Option<MatrixSettings>,
    pub slack: Option<SlackSettings>,
    pub reactions: ReactionSettings,
    pub outbox: OutboxSettings,
    pub commands: CommandSettings,
    pub chat: ChatSettings,
    pub ops: OpsSettings,
}

/// Operations: the `/metrics` and `/healthz` endpoints and the mailbox watchdog.
#[derive(Debug, Clone)]
pub struct OpsSettings {
    /// Where `/metrics` and `/healthz` are served; `None`: not served.
    pub listen: Option<SocketAddr>,
    /// A mailbox not checked successfully for this long is stale: the chat
    /// is told once, and `/healthz` answers 503 until it recovers.
    pub stale_after: Duration,
}

impl OpsSettings {
    /// How often a healthy IMAP session proves itself (a re-issued IDLE or a
    /// poll): well inside `stale_after`, so one slow check never makes a
    /// working mailbox look stale.
    pub fn check_every(&self) -> Duration {
        self.stale_after / 3
    }
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings {
            listen: None,
            stale_after: Duration::from_secs(300),
        }
    }
}

/// Chat posting, whatever the platform.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Attachments up to this size are uploaded into the thread; larger ones
    /// are listed with their name, type and size.
    pub max_attachment_bytes: u64,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            max_attachment_bytes: 10 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: DatabaseUrl,
    pub max_connections: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://path` (created on first use) or `sqlite::memory:` (`path: None`).
    Sqlite { path: Option<PathBuf> },
    /// `postgres://…`; may carry a password, hence a secret.
    Postgres(Secret),
}

impl DatabaseUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "sqlite::memory:" || s == "sqlite://:memory:" {
            return Ok(DatabaseUrl::Sqlite { path: None });
        }
        if let Some(rest) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or("");
            if path.is_empty() {
                return Err("expected sqlite://PATH".into());
            }
            return Ok(DatabaseUrl::Sqlite {
                path: Some(PathBuf::from(path)),
            });
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(Secret::new(s)));
        }
        Err("expected sqlite://PATH, sqlite::memory: or postgres://…".into())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite { path: None } => f.write_str("sqlite::memory:"),
            DatabaseUrl::Sqlite { path: Some(p) } => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(url) => {
                // Show host and database, never the credentials.
                let s = url.expose();
                let after_scheme = s.split_once("://").map(|(_, r)| r).unwrap_or(s);
                let host_db = after_scheme
                    .rsplit_once('@')
                    .map(|(_, r)| r)
                    .unwrap_or(after_scheme);
                write!(f, "postgres://{}", host_db.split('?').next().unwrap_or(""))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS; refused if the server does not offer it.
    StartTls,
    /// No encryption: only for loopback test servers.
    None,
}

impl TlsMode {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "implicit" => Some(TlsMode::Implicit),
            "starttls" => Some(TlsMode::StartTls),
            "none" => Some(TlsMode::None),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialSync {
    /// Start from what arrives after the first start.
    NewOnly,
    /// Import mail received on or after this day.
    Since(jiff::civil::Date),
    /// Import the whole folder.
    All,
}

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

#[derive(Debug, Clone)]
pub struct MatrixSettings {
    pub homeserver: String,
    pub user_id: String,
    pub auth: MatrixAuth,
    pub state_dir: PathBuf,
    /// Room power level needed to claim, reply or change a ticket.
    pub min_power_level: i64,
    pub device_name: String,
}

/// How chat commands behave, whatever the platform.
#[derive(Debug, Clone)]
pub struct CommandSettings {
    /// A reply waits this long before it is sent; `!undo` cancels it meanwhile.
    pub undo_window: Duration,
    /// Where `!template NAME` finds `NAME.md`.
    pub templates_dir: PathBuf,
}

impl Default for CommandSettings {
    fn default() -> Self {
        CommandSettings {
            undo_window: Duration::from_secs(10),
            templates_dir: PathBuf::from("bot-config/templates"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum MatrixAuth {
    Password(Secret),
    AccessToken(Secret),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackMode {
    Socket,
    Events,
}

#[derive(Debug, Clone)]
pub struct SlackSettings {
    pub mode: SlackMode,
    pub bot_token: Secret,
    pub app_token: Option<Secret>,
    pub signing_secret: Option<Secret>,
    pub listen: SocketAddr,
    /// Web API base without a trailing slash; `None`: Slack's own.
    pub api_url: Option<String>,
    /// Posts per second into one channel (Slack allows about 1), and how
    /// many may go at once after a quiet spell. Bursts wait, never drop.
    pub posts_per_second: u32,
    pub post_burst: u32,
    /// Slack user id → the name outgoing mail is signed with
    /// ("Alice Martin via Example Support"); others use their Slack name.
    pub signature_names: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ReactionSettings {
    pub claim: Vec<String>,
    pub close: Vec<String>,
    pub pending: Vec<String>,
}

impl Default for ReactionSettings {
    fn default() -> Self {
        ReactionSettings {
            claim: vec!["🙋".into(), "👀".into()],
            close: vec!["✅".into()],
            pending: vec!["⏳".into()],
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// Sends are tried this many times on transient failures before giving up.
    pub max_attempts: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            max_attempts: 12,
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
        }
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `mailbox[1].smtp.port`; empty for the file itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} problem{}",
            self.file.display(),
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl Settings {
    /// Reads and validates a configuration file; secrets named by `*_env` keys
    /// come from the process environment.
    pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
        Settings::load_with(path, &|k| std::env::var(k).ok())
    }

    /// For commands that only read the database (`tickets`, `outbox`,
    /// `migrate`): secrets named by `*_env` keys may be unset, since no
    /// server is contacted; they then hold a placeholder that is never used.
    pub fn load_offline(path: &Path) -> Result<Settings, ConfigErrors> {
        Settings::load_with(path, &|k| {
            Some(std::env::var(k).unwrap_or_else(|_| "<unset: offline command>".to_owned()))
        })
    }

    fn load_with(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: path.to_owned(),
            problems: vec![Problem {
                path: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Settings::parse(&text, env).map_err(|problems| ConfigErrors {
            file: path.to_owned(),
            problems,
        })
    }

    /// Parses configuration text; `env` looks up environment variables.
    pub fn parse(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, Vec<Problem>> {
        let root: Table = match text.parse::<Table>() {
            Ok(t) => t,
            Err(e) => {
                let at = e
                    .span()
                    .map(|s| {
                        let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                        format!("line {line}: ")
                    })
                    .unwrap_or_default();
                return Err(vec![Problem {
                    path: String::new(),
                    message: format!("{at}not valid TOML: {}", e.message()),
                }]);
            }
        };
        let mut w = Walker {
            problems: Vec::new(),
            env,
        };
        let settings = w.settings(&root);
        match settings {
            Some(s) if w.problems.is_empty() => Ok(s),
            _ => Err(w.problems),
        }
    }

    pub fn mailbox(&self, name: &MailboxName) -> Option<&MailboxSettings> {
        self.mailboxes.iter().find(|m| &m.name == name)
    }

    /// One line for `check-config` and the startup log.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.mailboxes.iter().map(|m| m.name.as_str()).collect();
        let mut chat = Vec::new();
        if self.matrix.is_some() {
            chat.push("matrix");
        }
        if self.slack.is_some() {
            chat.push("slack");
        }
        format!(
            "{} mailbox{} ({}), database {}, chat: {}",
            names.len(),
            if names.len() == 1 { "" } else { "es" },
            names.join(", "),
            self.database.url,
            if chat.is_empty() {
                "none".to_owned()
            } else {
                chat.join(" + ")
            }
        )
    }
}

/// Walks the TOML tree, collecting problems instead of stopping at the first.
struct Walker<'e> {
    problems: Vec<Problem>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true/false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

impl Walker<'_> {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Reports keys of `t` that are not in `known`.
    fn known_keys(&mut self, t: &Table, path: &str, known: &[&str]) {
        for k in t.keys() {
            if !known.contains(&k.as_str()) {
                self.problem(
                    join(path, k),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }

    fn opt_str(&mut self, t: &Table, path: &str, key: &str) -> Option<String> {
        match t.get(key) {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("expected a string, found {}", type_name(v)),
                );
                None
            }
        }
    }

    fn req_str(&mut self, t: &Table, path: &str, key: &str) -> Option<String> {
        if !t.contains_key(key) {
            self.problem(join(path, key), "missing (required)");
            return None;
        }
        let s = self.opt_str(t, path, key)?;
        if s.trim().is_empty() {
            self.problem(join(path, key), "must not be empty");
            return None;
        }
        Some(s)
    }

    fn opt_int(&mut self, t: &Table, path: &str, key: &str, min: i64, max: i64) -> Option<i64> {
        match t.get(key) {
            None => None,
            Some(Value::Integer(n)) if (min..=max).contains(n) => Some(*n),
            Some(Value::Integer(_)) => {
                self.problem(join(path, key), format!("expected {min}-{max}"));
                None
            }
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("expected an integer {min}-{max}, found {}", type_name(v)),
                );
                None
            }
        }
    }

    fn opt_bool(&mut self, t: &Table, path: &str, key: &str) -> Option<bool> {
        match t.get(key) {
            None => None,
            Some(Value::Boolean(b)) => Some(*b),
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("expected true or false, found {}", type_name(v)),
                );
                None
            }
        }
    }

    fn opt_table<'t>(&mut self, t: &'t Table, path: &str, key: &str) -> Option<&'t Table> {
        match t.get(key) {
            None => None,
            Some(Value::Table(inner)) => Some(inner),
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("expected a table, found {}", type_name(v)),
                );
                None
            }
        }
    }

    fn str_list(&mut self, t: &Table, path: &str, key: &str) -> Option<Vec<String>> {
        let p = join(path, key);
        match t.get(key) {
            None => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
                        _ => self.problem(format!("{p}[{i}]"), "expected a non-empty string"),
                    }
                }
                if out.is_empty() && items.is_empty() {
                    self.problem(p, "must list at least one value");
                    return None;
                }
                Some(out)
            }
            Some(v) => {
                self.problem(
                    p,
                    format!("expected a list of strings, found {}", type_name(v)),
                );
                None
            }
        }
    }

    fn tls(&mut self, t: &Table, path: &str, default: TlsMode) -> TlsMode {
        match self.opt_str(t, path, "tls") {
            None => default,
            Some(s) => TlsMode::parse(&s).unwrap_or_else(|| {
                self.problem(
                    join(path, "tls"),
                    format!("expected \"implicit\", \"starttls\" or \"none\", got {s:?}"),
                );
                default
            }),
        }
    }

    fn path_value(&mut self, t: &Table, path: &str, key: &str) -> Option<PathBuf> {
        self.opt_str(t, path, key).map(PathBuf::from)
    }

    /// `<key>` (inline), `<key>_env` (environment variable) or `<key>_file`:
    /// exactly one of them. Returns `None` when none is given.
    fn secret(&mut self, t: &Table, path: &str, key: &str) -> Option<Secret> {
        let env_key = format!("{key}_env");
        let file_key = format!("{key}_file");
        let given: Vec<&str> = [key, env_key.as_str(), file_key.as_str()]
            .into_iter()
            .filter(|k| t.contains_key(*k))
            .collect();
        if given.len() > 1 {
            self.problem(
                join(path, key),
                format!("give only one of {}", given.join(", ")),
            );
            return None;
        }
        if let Some(v) = self.opt_str(t, path, key) {
            return Some(Secret::new(v));
        }
        if let Some(var) = self.opt_str(t, path, &env_key) {
            return match (self.env)(&var) {
                Some(v) if !v.is_empty() => Some(Secret::new(v)),
                _ => {
                    self.problem(
                        join(path, &env_key),
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            };
        }
        if let Some(file) = self.opt_str(t, path, &file_key) {
            return match std::fs::read_to_string(&file) {
                Ok(v) => Some(Secret::new(v.trim_end_matches(['\r', '\n']))),
                Err(e) => {
                    self.problem(join(path, &file_key), format!("cannot read {file}: {e}"));
                    None
                }
            };
        }
        None
    }

    fn req_secret(&mut self, t: &Table, path: &str, key: &str) -> Option<Secret> {
        let have_any = [key.to_owned(), format!("{key}_env"), format!("{key}_file")]
            .iter()
            .any(|k| t.contains_key(k));
        if !have_any {
            self.problem(
                join(path, key),
                format!("missing: give {key}, {key}_env or {key}_file"),
            );
            return None;
        }
        self.secret(t, path, key)
    }

    fn env_secret(&mut self, t: &Table, path: &str, key: &str, required: bool) -> Option<Secret> {
        let var = if required {
            self.req_str(t, path, key)?
        } else {
            self.opt_str(t, path, key)?
        };
        match (self.env)(&var) {
            Some(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                self.problem(
                    join(path, key),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        }
    }

    fn settings(&mut self, root: &Table) -> Option<Settings> {
        self.known_keys(
            root,
            "",
            &[
                "database",
                "mailbox",
                "matrix",
                "slack",
                "reactions",
                "outbox",
                "commands",
                "chat",
                "ops",
            ],
        );
        let database = self.database(root);
        let mailboxes = self.mailboxes(root);
        let matrix = self
            .opt_table(root, "", "matrix")
            .and_then(|t| self.matrix(t));
        let slack = self
            .opt_table(root, "", "slack")
            .and_then(|t| self.slack(t));
        let reactions = match self.opt_table(root, "", "reactions") {
            Some(t) => self.reactions(t),
            None => ReactionSettings::default(),
        };
        let outbox = match self.opt_table(root, "", "outbox") {
            Some(t) => self.outbox(t),
            None => OutboxSettings::default(),
        };
        let commands = match self.opt_table(root, "", "commands") {
            Some(t) => self.commands(t),
            None => CommandSettings::default(),
        };
        let chat = match self.opt_table(root, "", "chat") {
            Some(t) => {
                self.known_keys(t, "chat", &["max_attachment_mb"]);
                ChatSettings {
                    max_attachment_bytes: self
                        .opt_int(t, "chat", "max_attachment_mb", 0, 1024)
                        .map(|mb| mb as u64 * 1024 * 1024)
                        .unwrap_or(ChatSettings::default().max_attachment_bytes),
                }
            }
            None => ChatSettings::default(),
        };
        let ops = match self.opt_table(root, "", "ops") {
            Some(t) => self.ops(t),
            None => OpsSettings::default(),
        };
        // Chat targets need their platform configured.
        for (i, m) in mailboxes.iter().enumerate() {
            if m.chat.matrix_room.is_some() && !root.contains_key("matrix") {
                self.problem(
                    format!("mailbox[{i}].chat.matrix_room"),
                    "set, but there is no [matrix] section",
                );
            }
            if m.chat.slack_channel.is_some() && !root.contains_key("slack") {
                self.problem(
                    format!("mailbox[{i}].chat.slack_channel"),
                    "set, but there is no [slack] section",
                );
            }
        }
        Some(Settings {
            database: database?,
            mailboxes,
            matrix,
            slack,
            reactions,
            outbox,
            commands,
            chat,
            ops,
        })
    }

    fn ops(&mut self, t: &Table) -> OpsSettings {
        let path = "ops";
        self.known_keys(
            t,
            path,
            &["listen", "allow_non_loopback", "stale_after_secs"],
        );
        let allow_non_loopback = self
            .opt_bool(t, path, "allow_non_loopback")
            .unwrap_or(false);
        let listen = self.opt_str(t, path, "listen").and_then(|s| {
            match s.parse::<SocketAddr>() {
                Err(_) => {
                    self.problem(
                        "ops.listen",
                        format!("expected ADDRESS:PORT such as 127.0.0.1:9480, got {s:?}"),
                    );
                    None
                }
                // The endpoints have no authentication and /healthz names the
                // mailboxes and their errors: anything beyond this machine
                // must be asked for explicitly.
                Ok(addr) if !addr.ip().is_loopback() && !allow_non_loopback => {
                    self.problem(
                        "ops.listen",
                        format!(
                            "{addr} is not a loopback address, and /metrics and /healthz have no \
                             authentication: listen on 127.0.0.1 (behind a proxy), or set \
                             ops.allow_non_loopback = true"
                        ),
                    );
                    None
                }
                Ok(addr) => Some(addr),
            }
        });
        let stale_after = self
            .opt_int(t, path, "stale_after_secs", 2, 86_400)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(OpsSettings::default().stale_after);
        OpsSettings {
            listen,
            stale_after,
        }
    }

    fn database(&mut self, root: &Table) -> Option<DatabaseSettings> {
        let Some(t) = self.opt_table(root, "", "database") else {
            if !root.contains_key("database") {
                self.problem(
                    "database",
                    "missing (required): [database] with url = \"sqlite://…\" or \"postgres://…\"",
                );
            }
            return None;
        };
        self.known_keys(t, "database", &["url", "max_connections"]);
        let url = self
            .req_str(t, "database", "url")
            .and_then(|u| match DatabaseUrl::parse(&u) {
                Ok(url) => Some(url),
                Err(e) => {
                    self.problem("database.url", e);
                    None
                }
            });
        let max_connections = self
            .opt_int(t, "database", "max_connections", 1, 1000)
            .unwrap_or(8) as u32;
        Some(DatabaseSettings {
            url: url?,
            max_connections,
        })
    }

    fn mailboxes(&mut self, root: &Table) -> Vec<MailboxSettings> {
        let items = match root.get("mailbox") {
            None => {
                self.problem("mailbox", "missing: at least one [[mailbox]] is required");
                return Vec::new();
            }
            Some(Value::Array(items)) => items,
            Some(v) => {
                self.problem(
                    "mailbox",
                    format!("expected [[mailbox]] tables, found {}", type_name(v)),
                );
                return Vec::new();
            }
        };
        if items.is_empty() {
            self.problem("mailbox", "at least one [[mailbox]] is required");
        }
        let mut out = Vec::new();
        let mut names = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("mailbox[{i}]");
            let Value::Table(t) = item else {
                self.problem(path, format!("expected a table, found {}", type_name(item)));
                continue;
            };
            // Duplicates are checked on the raw values, so they are reported
            // even when another key of the same mailbox is broken.
            if let Some(Value::String(n)) = t.get("name")
                && !names.insert(n.clone())
            {
                self.problem(join(&path, "name"), format!("duplicate mailbox name {n:?}"));
            }
            if let Some(Value::String(a)) = t.get("address")
                && !addresses.insert(a.trim().to_lowercase())
            {
                self.problem(
                    join(&path, "address"),
                    format!("duplicate mailbox address {a}"),
                );
            }
            if let Some(m) = self.mailbox(t, &path) {
                out.push(m);
            }
        }
        out
    }

    fn mailbox(&mut self, t: &Table, path: &str) -> Option<MailboxSettings> {
        self.known_keys(
            t,
            path,
            &[
                "name",
                "address",
                "display_name",
                "from_name_template",
                "initial_sync",
                "subject_window_days",
                "imap",
                "smtp",
                "chat",
            ],
        );
        let name = self
            .req_str(t, path, "name")
            .and_then(|n| match MailboxName::parse(&n) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.problem(join(path, "name"), e.reason);
                    None
                }
            });
        let address =
            self.req_str(t, path, "address")
                .and_then(|a| match EmailAddress::parse(&a) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        self.problem(join(path, "address"), format!("{}: {}", e.reason, e.value));
                        None
                    }
                });
        let display_name = self.req_str(t, path, "display_name");
        if let Some(d) = &display_name
            && d.chars().any(crate::domain::ids::is_header_breaking)
        {
            self.problem(
                join(path, "display_name"),
                "must not contain line breaks or control characters",
            );
        }
        let from_name_template = self
            .opt_str(t, path, "from_name_template")
            .unwrap_or_else(|| "{agent} via {display_name}".to_owned());
        if from_name_template
            .chars()
            .any(crate::domain::ids::is_header_breaking)
        {
            self.problem(
                join(path, "from_name_template"),
                "must not contain line breaks or control characters",
            );
        }
        let initial_sync = match self.opt_str(t, path, "initial_sync") {
            None => InitialSync::NewOnly,
            Some(s) => match s.as_str() {
                "new-only" => InitialSync::NewOnly,
                "all" => InitialSync::All,
                other => match other
                    .strip_prefix("since:")
                    .map(str::parse::<jiff::civil::Date>)
                {
                    Some(Ok(d)) => InitialSync::Since(d),
                    _ => {
                        self.problem(
                            join(path, "initial_sync"),
                            format!("expected \"new-only\", \"all\" or \"since:YYYY-MM-DD\", got {other:?}"),
                        );
                        InitialSync::NewOnly
                    }
                },
            },
        };
        let window_days = self
            .opt_int(t, path, "subject_window_days", 0, 3650)
            .unwrap_or(14);
        let imap = match self.opt_table(t, path, "imap") {
            Some(it) => self.imap(it, &join(path, "imap"), address.as_ref()),
            None => {
                if !t.contains_key("imap") {
                    self.problem(join(path, "imap"), "missing (required)");
                }
                None
            }
        };
        let smtp = match self.opt_table(t, path, "smtp") {
            Some(st) => self.smtp(st, &join(path, "smtp"), address.as_ref()),
            None => {
                if !t.contains_key("smtp") {
                    self.problem(join(path, "smtp"), "missing (required)");
                }
                None
            }
        };
        let chat = match self.opt_table(t, path, "chat") {
            Some(ct) => self.chat(ct, &join(path, "chat")),
            None => ChatTargets::default(),
        };
        Some(MailboxSettings {
            name: name?,
            address: address?,
            display_name: display_name?,
            from_name_template,
            initial_sync,
            subject_window: Duration::from_secs(window_days as u64 * 86_400),
            imap: imap?,
            smtp: smtp?,
            chat,
        })
    }

    fn host_port(&mut self, t: &Table, path: &str, default_port: u16) -> (Option<String>, u16) {
        let host = self.req_str(t, path, "host");
        if let Some(h) = &host
            && h.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            self.problem(join(path, "host"), "expected a host name or IP address");
        }
        let port = self
            .opt_int(t, path, "port", 1, 65535)
            .map(|p| p as u16)
            .unwrap_or(default_port);
        (host, port)
    }

    fn imap(
        &mut self,
        t: &Table,
        path: &str,
        address: Option<&EmailAddress>,
    ) -> Option<ImapSettings> {
        self.known_keys(
            t,
            path,
            &[
                "host",
                "port",
                "tls",
                "username",
                "password",
                "password_env",
                "password_file",
                "folder",
                "ca_file",
                "idle",
                "poll_interval_secs",
                "idle_timeout_secs",
            ],
        );
        let tls = self.tls(t, path, TlsMode::Implicit);
        let (host, port) =
            self.host_port(t, path, if tls == TlsMode::Implicit { 993 } else { 143 });
        let username = self
            .opt_str(t, path, "username")
            .or_else(|| address.map(|a| a.as_str().to_owned()));
        let password = self.req_secret(t, path, "password");
        let folder = self
            .opt_str(t, path, "folder")
            .unwrap_or_else(|| "INBOX".into());
        let ca_file = self.path_value(t, path, "ca_file");
        let idle = self.opt_bool(t, path, "idle").unwrap_or(true);
        let poll = self
            .opt_int(t, path, "poll_interval_secs", 1, 86_400)
            .unwrap_or(60);
        // RFC 2177: re-issue IDLE at least every 29 minutes.
        let idle_timeout = self
            .opt_int(t, path, "idle_timeout_secs", 10, 29 * 60 - 1)
            .unwrap_or(25 * 60);
        Some(ImapSettings {
            host: host?,
            port,
            tls,
            username: username?,
            password: password?,
            folder,
            ca_file,
            idle,
            poll_interval: Duration::from_secs(poll as u64),
            idle_timeout: Duration::from_secs(idle_timeout as u64),
        })
    }

    fn smtp(
        &mut self,
        t: &Table,
        path: &str,
        address: Option<&EmailAddress>,
    ) -> Option<SmtpSettings> {
        self.known_keys(
            t,
            path,
            &[
                "host",
                "port",
                "tls",
                "username",
                "password",
                "password_env",
                "password_file",
                "sent_folder",
                "ca_file",
                "timeout_secs",
            ],
        );
        let tls = self.tls(t, path, TlsMode::StartTls);
        let default_port = match tls {
            TlsMode::Implicit => 465,
            TlsMode::StartTls => 587,
            TlsMode::None => 25,
        };
        let (host, port) = self.host_port(t, path, default_port);
        let password = self.secret(t, path, "password");
        let username = self.opt_str(t, path, "username");
        let credentials = match (username, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, Some(p)) => address.map(|a| (a.as_str().to_owned(), p)),
            (Some(_), None) => {
                self.problem(
                    join(path, "password"),
                    "username is set, so give password, password_env or password_file",
                );
                None
            }
            (None, None) => None,
        };
        let sent_folder = self
            .opt_str(t, path, "sent_folder")
            .unwrap_or_else(|| "Sent".into());
        let ca_file = self.path_value(t, path, "ca_file");
        let timeout = self.opt_int(t, path, "timeout_secs", 1, 600).unwrap_or(30);
        Some(SmtpSettings {
            host: host?,
            port,
            tls,
            credentials,
            sent_folder,
            ca_file,
            timeout: Duration::from_secs(timeout as u64),
        })
    }

    fn chat(&mut self, t: &Table, path: &str) -> ChatTargets {
        self.known_keys(t, path, &["matrix_room", "slack_channel"]);
        let matrix_room = self.opt_str(t, path, "matrix_room");
        if let Some(r) = &matrix_room
            && (!(r.starts_with('!') || r.starts_with('#'))
                || r.len() < 2
                || r.contains(char::is_whitespace))
        {
            self.problem(
                join(path, "matrix_room"),
                format!("expected a room id \"!…\" or alias \"#…:server\", got {r:?}"),
            );
        }
        let slack_channel = self.opt_str(t, path, "slack_channel");
        if let Some(c) = &slack_channel {
            let ok = c.len() >= 2
                && matches!(c.as_bytes()[0], b'C' | b'G' | b'D')
                && c.chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit());
            if !ok {
                self.problem(
                    join(path, "slack_channel"),
                    format!("expected a channel id such as \"C0123ABCD\", got {c:?}"),
                );
            }
        }
        if matrix_room.is_none() && slack_channel.is_none() && t.is_empty() {
            self.problem(
                path,
                "give matrix_room, slack_channel or both (or leave out [mailbox.chat])",
            );
        }
        ChatTargets {
            matrix_room,
            slack_channel,
        }
    }

    fn matrix(&mut self, t: &Table) -> Option<MatrixSettings> {
        let path = "matrix";
        self.known_keys(
            t,
            path,
            &[
                "homeserver",
                "user_id",
                "password_env",
                "access_token_env",
                "state_dir",
                "min_power_level",
                "device_name",
            ],
        );
        let homeserver = self.req_str(t, path, "homeserver");
        if let Some(h) = &homeserver
            && !(h.starts_with("http://") || h.starts_with("https://"))
        {
            self.problem(
                "matrix.homeserver",
                format!("expected an http:// or https:// URL, got {h:?}"),
            );
        }
        let user_id = self.req_str(t, path, "user_id");
        if let Some(u) = &user_id
            && (!u.starts_with('@') || !u.contains(':'))
        {
            self.problem(
                "matrix.user_id",
                format!("expected @user:server, got {u:?}"),
            );
        }
        let auth = match (
            t.contains_key("password_env"),
            t.contains_key("access_token_env"),
        ) {
            (true, true) => {
                self.problem("matrix", "give password_env or access_token_env, not both");
                None
            }
            (false, false) => {
                self.problem(
                    "matrix.password_env",
                    "missing: give password_env or access_token_env",
                );
                None
            }
            (true, false) => self
                .env_secret(t, path, "password_env", true)
                .map(MatrixAuth::Password),
            (false, true) => self
                .env_secret(t, path, "access_token_env", true)
                .map(MatrixAuth::AccessToken),
        };
        let state_dir = self
            .path_value(t, path, "state_dir")
            .unwrap_or_else(|| PathBuf::from("state/matrix"));
        let min_power_level = self
            .opt_int(t, path, "min_power_level", -1_000_000, 1_000_000)
            .unwrap_or(0);
        let device_name = self
            .opt_str(t, path, "device_name")
            .unwrap_or_else(|| "mailroom".to_owned());
        Some(MatrixSettings {
            homeserver: homeserver?,
            user_id: user_id?,
            auth: auth?,
            state_dir,
            min_power_level,
            device_name,
        })
    }

    fn commands(&mut self, t: &Table) -> CommandSettings {
        let path = "commands";
        self.known_keys(t, path, &["undo_secs", "templates_dir"]);
        let d = CommandSettings::default();
        CommandSettings {
            undo_window: self
                .opt_int(t, path, "undo_secs", 0, 3600)
                .map(|s| Duration::from_secs(s as u64))
                .unwrap_or(d.undo_window),
            templates_dir: self
                .path_value(t, path, "templates_dir")
                .unwrap_or(d.templates_dir),
        }
    }

    fn slack(&mut self, t: &Table) -> Option<SlackSettings> {
        let path = "slack";
        self.known_keys(
            t,
            path,
            &[
                "mode",
                "bot_token_env",
                "app_token_env",
                "signing_secret_env",
                "listen",
                "api_url",
                "posts_per_second",
                "post_burst",
                "signature_names",
            ],
        );
        let mode = match self.opt_str(t, path, "mode").as_deref() {
            None | Some("socket") => SlackMode::Socket,
            Some("events") => SlackMode::Events,
            Some(other) => {
                self.problem(
                    "slack.mode",
                    format!("expected \"socket\" or \"events\", got {other:?}"),
                );
                SlackMode::Socket
            }
        };
        let bot_token = self.env_secret(t, path, "bot_token_env", true);
        let app_token = self.env_secret(t, path, "app_token_env", mode == SlackMode::Socket);
        let signing_secret =
            self.env_secret(t, path, "signing_secret_env", mode == SlackMode::Events);
        let listen = match self.opt_str(t, path, "listen") {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some(s) => s.parse().unwrap_or_else(|_| {
                self.problem(
                    "slack.listen",
                    format!("expected ADDRESS:PORT such as 127.0.0.1:3000, got {s:?}"),
                );
                SocketAddr::from(([127, 0, 0, 1], 3000))
            }),
        };
        let api_url = self.opt_str(t, path, "api_url");
        if let Some(u) = &api_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            self.problem(
                "slack.api_url",
                format!("expected an http:// or https:// URL, got {u:?}"),
            );
        }
        let api_url = api_url.map(|u| u.trim_end_matches('/').to_owned());
        let posts_per_second = self
            .opt_int(t, path, "posts_per_second", 1, 1000)
            .unwrap_or(1) as u32;
        let post_burst = self.opt_int(t, path, "post_burst", 1, 1000).unwrap_or(4) as u32;
        let mut signature_names = BTreeMap::new();
        if let Some(names) = self.opt_table(t, path, "signature_names") {
            for (user, name) in names {
                let key = format!("slack.signature_names.{user}");
                let valid_id = user.len() >= 2
                    && user.starts_with(['U', 'W'])
                    && user
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
                if !valid_id {
                    self.problem(
                        &key,
                        "expected a Slack user id such as U024BE7LH as the key",
                    );
                }
                match name {
                    Value::String(n) if !n.trim().is_empty() && !n.contains(['\r', '\n']) => {
                        signature_names.insert(user.clone(), n.trim().to_owned());
                    }
                    _ => self.problem(&key, "expected a non-empty one-line name"),
                }
            }
        }
        Some(SlackSettings {
            mode,
            bot_token: bot_token?,
            app_token,
            signing_secret,
            listen,
            api_url,
            posts_per_second,
            post_burst,
            signature_names,
        })
    }

    fn reactions(&mut self, t: &Table) -> ReactionSettings {
        let path = "reactions";
        self.known_keys(t, path, &["claim", "close", "pending"]);
        let d = ReactionSettings::default();
        // `:shortcode:` entries become their emoji, so one list serves
        // Matrix (emoji keys) and Slack (names); custom emoji stay `:name:`.
        let keys = |l: Vec<String>| -> Vec<String> {
            l.iter()
                .map(|e| crate::domain::command::reaction_key(e))
                .collect()
        };
        let r = ReactionSettings {
            claim: keys(self.str_list(t, path, "claim").unwrap_or(d.claim)),
            close: keys(self.str_list(t, path, "close").unwrap_or(d.close)),
            pending: keys(self.str_list(t, path, "pending").unwrap_or(d.pending)),
        };
        let mut seen = BTreeSet::new();
        for (key, list) in [
            ("claim", &r.claim),
            ("close", &r.close),
            ("pending", &r.pending),
        ] {
            for e in list {
                if !seen.insert(e.clone()) {
                    self.problem(
                        format!("reactions.{key}"),
                        format!("{e} is mapped to more than one action"),
                    );
                }
            }
        }
        r
    }

    fn outbox(&mut self, t: &Table) -> OutboxSettings {
        let path = "outbox";
        self.known_keys(
            t,
            path,
            &["max_attempts", "retry_initial_secs", "retry_max_secs"],
        );
        let d = OutboxSettings::default();
        let initial = self
            .opt_int(t, path, "retry_initial_secs", 1, 3600)
            .map(|s| Duration::from_secs(s as u64));
        let max = self
            .opt_int(t, path, "retry_max_secs", 1, 86_400)
            .map(|s| Duration::from_secs(s as u64));
        let s = OutboxSettings {
            max_attempts: self
                .opt_int(t, path, "max_attempts", 1, 1000)
                .map(|n| n as u32)
                .unwrap_or(d.max_attempts),
            retry_initial: initial.unwrap_or(d.retry_initial),
            retry_max: max.unwrap_or(d.retry_max),
        };
        if s.retry_max < s.retry_initial {
            self.problem(
                "outbox.retry_max_secs",
                "must be at least retry_initial_secs",
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "IMAP_PW" | "SMTP_PW" | "MX_PW" | "SLACK_BOT" | "SLACK_APP" => {
                Some("s3cret-value".into())
            }
            _ => None,
        }
    }

    const GOOD: &str = r#"
[database]
url = "sqlite://state/mailroom.db"

[[mailbox]]
name = "support"
address = "support@example.com"
display_name = "Example Support"
  [mailbox.imap]
  host = "imap.example.com"
  password_env = "IMAP_PW"
  [mailbox.smtp]
  host = "smtp.example.com"
  password_env = "SMTP_PW"
  [mailbox.chat]
  matrix_room = "!abc:example.com"

[matrix]
homeserver = "https://matrix.example.com"
user_id = "@mailroom:example.com"
password_env = "MX_PW"
"#;

    #[test]
    fn a_good_file_parses_with_defaults() {
        let s = Settings::parse(GOOD, &env).unwrap();
        let m = &s.mailboxes[0];
        assert_eq!(m.imap.port, 993);
        assert_eq!(m.imap.tls, TlsMode::Implicit);
        assert_eq!(m.imap.username, "support@example.com");
        assert_eq!(m.smtp.port, 587);
        assert_eq!(m.smtp.sent_folder, "Sent");
        assert_eq!(m.initial_sync, InitialSync::NewOnly);
        assert_eq!(s.reactions.claim, vec!["🙋", "👀"]);
        assert!(s.summary().starts_with("1 mailbox (support)"));
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Settings::parse(GOOD, &env).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cret-value"), "secret leaked: {dbg}");
        let pg = DatabaseUrl::parse("postgres://u:hunter2@db.example/mailroom").unwrap();
        assert_eq!(pg.to_string(), "postgres://db.example/mailroom");
        assert!(!format!("{pg:?}").contains("hunter2"));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let bad = r#"
[database]
url = "mysql://nope"
colour = "blue"

[[mailbox]]
name = "support"
address = "support@example.com"
display_name = "Support"
  [mailbox.imap]
  host = "imap.example.com"
  password = "x"
  [mailbox.smtp]
  host = "smtp.example.com"

[[mailbox]]
name = "Sales"
address = "not-an-address"
display_name = "Sales"
initial_sync = "yesterday"
  [mailbox.imap]
  host = "imap.example.com"
  port = 70000
  tls = "sometimes"
  password_env = "UNSET_VAR"
  [mailbox.smtp]
  host = "smtp.example.com"
  port = 0
  username = "sales"
  [mailbox.chat]
  slack_channel = "general"

[reactions]
claim = ["✅"]
"#;
        let problems = Settings::parse(bad, &env).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let expect = [
            "database.url:",
            "database.colour: unknown key",
            "mailbox[1].name:",
            "mailbox[1].address:",
            "mailbox[1].initial_sync:",
            "mailbox[1].imap.port: expected 1-65535",
            "mailbox[1].imap.tls:",
            "mailbox[1].imap.password_env: environment variable UNSET_VAR is not set",
            "mailbox[1].smtp.port: expected 1-65535",
            "mailbox[1].smtp.password:",
            "mailbox[1].chat.slack_channel: expected a channel id",
            "reactions.close: ✅ is mapped to more than one action",
        ];
        for e in expect {
            assert!(
                text.iter().any(|t| t.starts_with(e)),
                "missing {e:?} in {text:#?}"
            );
        }
    }

    #[test]
    fn invalid_toml_names_the_line() {
        let problems = Settings::parse("[database]\nurl = ", &env).unwrap_err();
        assert!(problems[0].message.contains("line 2"), "{problems:?}");
    }

    #[test]
    fn duplicate_mailboxes_and_conflicting_secrets_are_refused() {
        let text = GOOD.replace(
            "password_env = \"IMAP_PW\"",
            "password_env = \"IMAP_PW\"\n  password = \"x\"",
        );
        let doubled = format!(
            "{text}\n{}",
            &GOOD[GOOD.find("[[mailbox]]").unwrap()..GOOD.find("[matrix]").unwrap()]
        );
        let problems = Settings::parse(&doubled, &env).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.starts_with("mailbox[0].imap.password: give only one")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("mailbox[1].name: duplicate")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("mailbox[1].address: duplicate")),
            "{text:#?}"
        );
    }

    #[test]
    fn ops_is_optional_and_its_keys_are_checked() {
        let s = Settings::parse(GOOD, &env).unwrap();
        assert_eq!(s.ops.listen, None);
        assert_eq!(s.ops.stale_after, Duration::from_secs(300));
        assert_eq!(s.ops.check_every(), Duration::from_secs(100));

        let on = format!("{GOOD}\n[ops]\nlisten = \"127.0.0.1:9480\"\nstale_after_secs = 60\n");
        let s = Settings::parse(&on, &env).unwrap();
        assert_eq!(s.ops.listen, Some("127.0.0.1:9480".parse().unwrap()));
        assert_eq!(s.ops.stale_after, Duration::from_secs(60));
        let v6 = format!("{GOOD}\n[ops]\nlisten = \"[::1]:9480\"\n");
        assert!(Settings::parse(&v6, &env).is_ok());

        let bad =
            format!("{GOOD}\n[ops]\nlisten = \"localhost\"\nstale_after_secs = 1\nport = 9\n");
        let text: Vec<String> = Settings::parse(&bad, &env)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        for e in [
            "ops.listen: expected ADDRESS:PORT",
            "ops.stale_after_secs: expected 2-86400",
            "ops.port: unknown key",
        ] {
            assert!(
                text.iter().any(|t| t.starts_with(e)),
                "missing {e:?} in {text:#?}"
            );
        }
    }

    #[test]
    fn ops_refuses_a_public_address_unless_allowed() {
        let public = format!("{GOOD}\n[ops]\nlisten = \"0.0.0.0:9480\"\n");
        let problems = Settings::parse(&public, &env).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "ops.listen");
        assert!(
            problems[0]
                .message
                .contains("ops.allow_non_loopback = true"),
            "the message says how to allow it: {}",
            problems[0].message
        );
        let allowed = public.replace("[ops]", "[ops]\nallow_non_loopback = true");
        let s = Settings::parse(&allowed, &env).unwrap();
        assert_eq!(s.ops.listen, Some("0.0.0.0:9480".parse().unwrap()));
    }

    #[test]
    fn chat_targets_need_their_platform() {
        let text = GOOD.replace("[matrix]", "[unused]");
        let problems = Settings::parse(&text, &env).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(
            text.iter().any(
                |t| t.starts_with("mailbox[0].chat.matrix_room: set, but there is no [matrix]")
            )
        );
        assert!(text.iter().any(|t| t.starts_with("unused: unknown key")));
    }
}
