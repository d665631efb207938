//! Configuration: TOML in, validated settings out.
//!
//! Each section is a `#[derive(Deserialize)]` struct in a file of its own:
//! the settings themselves when every key has a default, else a `…File`
//! struct shaped like the file that `settle`s into them (required keys,
//! secrets, defaults that depend on other keys). Values are newtypes that
//! check themselves, and each key is a `de::Key`, which records a wrong
//! value and lets deserializing go on; `serde_ignored` names unknown keys, as
//! in cargo. So `check-config` reports every problem at once, with its path
//! and line (`mailbox[1].smtp.port: expected 1-65535 (line 27)`). One pass,
//! `settle`, then applies the rules between keys and sections.

mod chat;
mod commands;
mod database;
mod de;
mod mailbox;
mod matrix;
mod ops;
mod outbox;
mod reactions;
mod secret;
mod slack;

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use chat::ChatSettings;
pub use commands::CommandSettings;
pub use database::{DatabaseSettings, DatabaseUrl};
pub use mailbox::{ChatTargets, ImapSettings, InitialSync, MailboxSettings, SmtpSettings, TlsMode};
pub use matrix::{MatrixAuth, MatrixSettings};
pub use ops::OpsSettings;
pub use outbox::OutboxSettings;
pub use reactions::ReactionSettings;
pub use secret::Secret;
pub use slack::{SlackMode, SlackSettings};

use crate::domain::ids::MailboxName;
use de::Key;

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

/// The file as written.
#[derive(Default, Deserialize)]
#[serde(default)]
struct File {
    database: Key<database::DatabaseFile>,
    mailbox: Key<Vec<Key<mailbox::MailboxFile>>>,
    matrix: Key<matrix::MatrixFile>,
    slack: Key<slack::SlackFile>,
    reactions: Key<ReactionSettings>,
    outbox: Key<OutboxSettings>,
    commands: Key<CommandSettings>,
    chat: Key<ChatSettings>,
    ops: Key<OpsSettings>,
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path such as `mailbox[1].smtp.port`; empty for the file itself.
    pub path: String,
    pub message: String,
    /// The key's line, or for a missing key its table's.
    pub line: Option<usize>,
}

impl Problem {
    fn new(path: impl Into<String>, message: impl Into<String>, line: Option<usize>) -> Self {
        let (path, message) = (path.into(), message.into());
        Problem {
            path,
            message,
            line,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path.as_str() {
            "" => f.write_str(&self.message)?,
            path => write!(f, "{path}: {}", self.message)?,
        }
        match self.line {
            Some(line) => write!(f, " (line {line})"),
            None => Ok(()),
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
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        self.problems.iter().try_for_each(|p| writeln!(f, "  {p}"))
    }
}

/// The validation pass: the problems so far, and the environment that
/// `*_env` keys name.
struct Check<'e> {
    problems: Vec<Problem>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl Check<'_> {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let (path, message) = (path.into(), message.into());
        self.problems.push(Problem {
            path,
            message,
            line: None,
        });
    }

    /// A required key's value, and a problem if it is absent.
    fn need<T>(&mut self, key: Key<T>, path: &str) -> Option<T> {
        if !key.given() {
            self.problem(path, "missing (required)");
        }
        key.get()
    }

    /// No problem under `path` so far: rules between its values may be checked.
    fn clean(&self, path: &str) -> bool {
        !self.problems.iter().any(|p| is_under(&p.path, path))
    }
}

/// `path` is `table` or a key inside it.
fn is_under(path: &str, table: &str) -> bool {
    path.strip_prefix(table)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
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
        let errors = |problems| ConfigErrors {
            file: path.to_owned(),
            problems,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            errors(vec![Problem::new(
                "",
                format!("cannot read the file: {e}"),
                None,
            )])
        })?;
        Settings::parse(&text, env).map_err(errors)
    }

    /// Parses configuration text; `env` looks up environment variables.
    pub fn parse(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, Vec<Problem>> {
        let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
        let root = DeTable::parse(text).map_err(|e| {
            let at = e.span().map(|s| format!("line {}: ", line_of(s.start)));
            let message = format!("{}not valid TOML: {}", at.unwrap_or_default(), e.message());
            vec![Problem::new("", message, None)]
        })?;
        // Every key's path and its value's span, parents first.
        let mut spans = Vec::new();
        for (key, value) in root.get_ref() {
            index(&mut spans, key.get_ref().to_string(), value);
        }
        let mut unknown = Vec::new();
        let (file, found) = de::collecting(|| {
            let de = toml::de::Deserializer::from(root);
            serde_ignored::deserialize(de, |path| unknown.push(key_path(&path)))
        });
        let mut c = Check {
            problems: Vec::new(),
            env,
        };
        for path in unknown {
            c.problem(path, "unknown key");
        }
        for (span, message) in found {
            let innermost = spans.iter().rev().find(|(_, s)| *s == span);
            let path = innermost.map(|(p, _)| p.clone()).unwrap_or_default();
            c.problems
                .push(Problem::new(path, message, Some(line_of(span.start))));
        }
        let settings = file
            .map_err(|e| c.problem("", e.message()))
            .ok()
            .and_then(|f| settle(f, &mut c));
        for p in c.problems.iter_mut().filter(|p| p.line.is_none()) {
            let table = spans.iter().filter(|(k, _)| is_under(&p.path, k));
            p.line = table
                .max_by_key(|(k, _)| k.len())
                .map(|(_, s)| line_of(s.start));
        }
        c.problems.sort_by_key(|p| p.line.unwrap_or(0));
        match settings {
            Some(s) if c.problems.is_empty() => Ok(s),
            _ => Err(c.problems),
        }
    }

    pub fn mailbox(&self, name: &MailboxName) -> Option<&MailboxSettings> {
        self.mailboxes.iter().find(|m| &m.name == name)
    }

    /// One line for `check-config` and the startup log.
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.mailboxes.iter().map(|m| m.name.as_str()).collect();
        let chat = [
            ("matrix", self.matrix.is_some()),
            ("slack", self.slack.is_some()),
        ];
        let chat: Vec<&str> = chat.iter().filter(|c| c.1).map(|c| c.0).collect();
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

/// Adds `path` and every key below it, with their values' spans.
fn index(spans: &mut Vec<(String, Range<usize>)>, path: String, value: &Spanned<DeValue>) {
    spans.push((path.clone(), value.span()));
    match value.get_ref() {
        DeValue::Table(t) => t
            .iter()
            .for_each(|(k, v)| index(spans, format!("{path}.{}", k.get_ref()), v)),
        DeValue::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, v)| index(spans, format!("{path}[{i}]"), v)),
        _ => {}
    }
}

/// `serde_ignored`'s path, as `mailbox[1].smtp.colour`.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        // toml's `Spanned`, inside every `Key`, shows as a key of its own.
        P::Map { parent, key } if key.starts_with("$__serde_spanned") => key_path(parent),
        P::Map { parent, key } => match key_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_path(parent)
        }
    }
}

/// The validation pass: each section settles, then the rules between them.
fn settle(f: File, c: &mut Check) -> Option<Settings> {
    let database = match f.database {
        Key::Absent => {
            let message =
                "missing (required): [database] with url = \"sqlite://…\" or \"postgres://…\"";
            c.problem("database", message);
            None
        }
        database => database.get().and_then(|d| d.settle(c)),
    };
    let list = match f.mailbox {
        Key::Absent => Vec::new(),
        list => list.get().unwrap_or_default(),
    };
    if list.is_empty() && c.clean("mailbox") {
        c.problem("mailbox", "missing: at least one [[mailbox]] is required");
    }
    let (mut names, mut addresses, mut mailboxes) = (BTreeSet::new(), BTreeSet::new(), Vec::new());
    for (i, m) in list.into_iter().enumerate() {
        let (Some(m), at) = (m.get(), format!("mailbox[{i}]")) else {
            continue;
        };
        // On the file's values, so reported even when another key of the
        // same mailbox is wrong.
        if let Key::Is(name) = &m.name
            && !names.insert(name.0.clone())
        {
            c.problem(
                format!("{at}.name"),
                format!("duplicate mailbox name {:?}", name.0.as_str()),
            );
        }
        if let Key::Is(address) = &m.address
            && !addresses.insert(address.0.clone())
        {
            c.problem(
                format!("{at}.address"),
                format!("duplicate mailbox address {}", address.0.as_str()),
            );
        }
        if let Key::Is(chat) = &m.chat {
            if chat.matrix_room.given() && !f.matrix.given() {
                c.problem(
                    format!("{at}.chat.matrix_room"),
                    "set, but there is no [matrix] section",
                );
            }
            if chat.slack_channel.given() && !f.slack.given() {
                c.problem(
                    format!("{at}.chat.slack_channel"),
                    "set, but there is no [slack] section",
                );
            }
        }
        mailboxes.extend(m.settle(c, &at));
    }
    let matrix = f.matrix.get().and_then(|m| m.settle(c));
    let slack = f.slack.get().and_then(|s| s.settle(c));
    let (reactions, outbox, ops) = (
        f.reactions.or_default(),
        f.outbox.or_default(),
        f.ops.or_default(),
    );
    reactions.check(c);
    outbox.check(c);
    ops.check(c);
    Some(Settings {
        database: database?,
        mailboxes,
        matrix,
        slack,
        reactions,
        outbox,
        commands: f.commands.or_default(),
        chat: f.chat.or_default(),
        ops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

    #[test]
    fn the_example_and_demo_files_parse() {
        let any = |_: &str| Some("from-the-environment".to_owned());
        for (name, text) in [
            (
                "mailroom.example.toml",
                include_str!("../../bot-config/mailroom.example.toml"),
            ),
            ("demo.toml", include_str!("../../bot-config/demo.toml")),
        ] {
            let s = Settings::parse(text, &any).unwrap_or_else(|p| panic!("{name}: {p:#?}"));
            assert!(s.summary().starts_with("1 mailbox (support)"), "{name}");
        }
    }

    #[test]
    fn five_mistakes_are_five_problems_with_paths_and_lines() {
        let text = r#"[database]
url = "sqlite://state/x.db"
colour = "blue"

[[mailbox]]
name = "support"
address = "support@example.com"
  [mailbox.imap]
  host = "imap.example.com"
  idle = "yes"
  password = "p"
  password_env = "IMAP_PW"
  [mailbox.smtp]
  host = "smtp.example.com"
  port = 70000
"#;
        let text: Vec<String> = Settings::parse(text, &env)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            text,
            [
                "database.colour: unknown key (line 3)",
                "mailbox[0].display_name: missing (required) (line 5)",
                "mailbox[0].imap.idle: expected a boolean, found a string (line 10)",
                "mailbox[0].imap.password: give only one of password, password_env (line 11)",
                "mailbox[0].smtp.port: expected 1-65535 (line 15)",
            ]
        );
    }

    #[test]
    fn a_wrong_section_or_list_does_not_hide_the_others() {
        let text = format!(
            "matrix = 3\n{}\n[outbox]\nmax_attempts = \"x\"\n[reactions]\nclaim = [\"🙋\", 3]\n[slack]\nmode = \"push\"\n",
            GOOD.replace("[matrix]", "[unused_matrix]")
        );
        let problems = Settings::parse(&text, &env).unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for path in [
            "matrix",
            "unused_matrix",
            "outbox.max_attempts",
            "reactions.claim[1]",
            "slack.mode",
            "slack.bot_token_env",
        ] {
            assert!(paths.contains(&path), "{path} missing from {problems:#?}");
        }
        let mode = problems.iter().find(|p| p.path == "slack.mode").unwrap();
        assert_eq!(
            mode.message,
            "expected \"socket\" or \"events\", got \"push\""
        );
    }

    #[test]
    fn a_key_outside_a_load_fails_like_serde() {
        #[derive(Deserialize)]
        struct Small {
            _n: Key<de::Int<1, 9>>,
        }
        let e = toml::from_str::<Small>("_n = 10").err();
        assert!(e.is_some_and(|e| e.to_string().contains("expected 1-9")));
    }
}
