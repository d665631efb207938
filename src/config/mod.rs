//! Configuration: TOML in, validated [`Settings`] out.
//!
//! Each section is the settings struct of the part it configures
//! (`mail::settings`, `chat::settings`, `store::settings`; the bridge's own
//! in [`sections`]), a plain `#[derive(Deserialize)]` whose fields are read
//! by the readers of `domain::settings`: a wrong value is recorded with its
//! span and deserializing goes on. `serde_ignored` names unknown keys, as in
//! cargo. `load` reads the file, resolves secrets and gives missing keys
//! stand-ins; then one pass, `settle`, fills the defaults that depend on
//! other keys and applies the rules between keys and sections. So
//! `check-config` reports every problem at once, with its path and line
//! (`mailbox[1].smtp.port: expected 1-65535 (line 27)`).

pub mod cluster;
pub mod digest;
mod load;
mod oauth;
pub mod rules;
pub mod sections;
pub mod sla;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use load::{Check, Env};
pub use load::{ConfigErrors, Problem};

use crate::chat::settings::{ChatSettings, MatrixAuth, MatrixSettings, SlackMode, SlackSettings};
use crate::domain::ids::MailboxName;
use crate::domain::settings::{lenient, list};
use crate::mail::oauth::AuthMethod;
use crate::mail::settings::{MailboxSettings, TlsMode};
use crate::store::settings::DatabaseSettings;
use crate::web::settings::WebSettings;
pub use oauth::{OFFLINE_PLACEHOLDER, SecretsSettings};
pub use sections::BoardSettings;
use sections::{CommandSettings, OpsSettings, OutboxSettings, ReactionSettings};

/// The whole file. A new section is a struct and a field here.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    #[serde(deserialize_with = "lenient")]
    pub database: DatabaseSettings,
    #[serde(default, rename = "mailbox", deserialize_with = "list")]
    pub mailboxes: Vec<MailboxSettings>,
    #[serde(default, deserialize_with = "lenient")]
    pub matrix: Option<MatrixSettings>,
    #[serde(default, deserialize_with = "lenient")]
    pub slack: Option<SlackSettings>,
    #[serde(default, deserialize_with = "lenient")]
    pub reactions: ReactionSettings,
    #[serde(default, deserialize_with = "lenient")]
    pub outbox: OutboxSettings,
    #[serde(default, deserialize_with = "lenient")]
    pub commands: CommandSettings,
    #[serde(default, deserialize_with = "lenient")]
    pub chat: ChatSettings,
    #[serde(default, deserialize_with = "lenient")]
    pub ops: OpsSettings,
    #[serde(default, deserialize_with = "lenient")]
    pub board: BoardSettings,
    /// The web dashboard.
    #[serde(default, deserialize_with = "lenient")]
    pub web: WebSettings,
    /// Teammates routing rules may assign to, by name.
    #[serde(default, deserialize_with = "lenient")]
    pub people: BTreeMap<String, rules::PersonSettings>,
    /// Named lists of people, with how tickets are spread over them.
    #[serde(default, deserialize_with = "lenient")]
    pub groups: BTreeMap<String, rules::GroupSettings>,
    /// Each mailbox's auto-assignment pool (`[mailbox.assign]`), built by the load.
    #[serde(skip)]
    pub assign_pools: BTreeMap<MailboxName, crate::domain::routing::Pool>,
    /// `[[rule]]` as written; [`Settings::rules`] is what is used.
    #[serde(default, rename = "rule", deserialize_with = "list")]
    pub rule_settings: Vec<rules::RuleSettings>,
    /// The routing rules, in file order, built by the load once all are right.
    #[serde(skip)]
    pub rules: Vec<crate::domain::routing::Rule>,
    /// `[[sla]]` as written; [`Settings::sla`] is what is used.
    #[serde(default, rename = "sla", deserialize_with = "list")]
    pub sla_settings: Vec<sla::SlaSettings>,
    /// The SLA policies, most specific first, built by the load once all are right.
    #[serde(skip)]
    pub sla: crate::domain::sla::Policies,
    /// Each mailbox's business calendar (always open without
    /// `[mailbox.business_hours]`), built by the load.
    #[serde(skip)]
    pub calendars: BTreeMap<MailboxName, crate::domain::calendar::Calendar>,
    /// The key that seals OAuth2 tokens at rest.
    #[serde(default, deserialize_with = "lenient")]
    pub secrets: SecretsSettings,
    /// `[[digest]]`: daily summaries per mailbox.
    #[serde(default, rename = "digest", deserialize_with = "list")]
    pub digests: Vec<digest::DigestSettings>,
    /// Replicas on one PostgreSQL database: heartbeats and leases.
    #[serde(default, deserialize_with = "lenient")]
    pub cluster: cluster::ClusterSettings,
}

impl Settings {
    /// Reads and validates a configuration file; secrets named by `*_env` keys
    /// come from the process environment.
    pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
        load::load(path, &|k| std::env::var(k).ok())
    }

    /// For commands that only read the database (`tickets`, `outbox`,
    /// `migrate`): secrets named by `*_env` keys may be unset, since no
    /// server is contacted; they then hold a placeholder that is never used.
    pub fn load_offline(path: &Path) -> Result<Settings, ConfigErrors> {
        load::load(path, &|k| {
            Some(std::env::var(k).unwrap_or_else(|_| OFFLINE_PLACEHOLDER.to_owned()))
        })
    }

    /// Parses configuration text; `env` looks up environment variables.
    pub fn parse(text: &str, env: Env) -> Result<Settings, Vec<Problem>> {
        load::parse(text, env)
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

    /// The one pass over the read settings: defaults that depend on other
    /// keys, and the rules between keys and sections.
    fn settle(&mut self, c: &mut Check) {
        if self.mailboxes.is_empty() && c.clean("mailbox") {
            c.problem("mailbox", "missing: at least one [[mailbox]] is required");
        }
        let (mut names, mut addresses) = (BTreeSet::new(), BTreeSet::new());
        for (i, m) in self.mailboxes.iter_mut().enumerate() {
            let at = |key: &str| format!("mailbox[{i}].{key}");
            if c.clean(&at("name")) && !names.insert(m.name.clone()) {
                let message = format!("duplicate mailbox name {:?}", m.name.as_str());
                c.problem(at("name"), message);
            }
            if c.clean(&at("address")) && !addresses.insert(m.address.clone()) {
                let message = format!("duplicate mailbox address {}", m.address.as_str());
                c.problem(at("address"), message);
            }
            for (set, platform, key) in [
                (m.chat.matrix_room.is_some(), "matrix", "chat.matrix_room"),
                (
                    m.chat.slack_channel.is_some(),
                    "slack",
                    "chat.slack_channel",
                ),
            ] {
                if set && !c.given(platform) {
                    c.problem(
                        at(key),
                        format!("set, but there is no [{platform}] section"),
                    );
                }
            }
            let targets = [&m.chat.matrix_room, &m.chat.slack_channel];
            if c.given(&at("chat")) && targets.iter().all(|t| t.is_none()) && c.clean(&at("chat")) {
                let message =
                    "give matrix_room, slack_channel or both (or leave out [mailbox.chat])";
                c.problem(at("chat"), message);
            }
            let (imap, smtp, address) = (&mut m.imap, &mut m.smtp, m.address.as_str());
            if imap.port == 0 {
                imap.port = if imap.tls == TlsMode::Implicit {
                    993
                } else {
                    143
                };
            }
            if imap.username.is_empty() {
                imap.username = address.to_owned();
            }
            if smtp.port == 0 {
                smtp.port = match smtp.tls {
                    TlsMode::Implicit => 465,
                    TlsMode::StartTls => 587,
                    TlsMode::None => 25,
                };
            }
            // One Sent folder for filing replies and watching for replies
            // written outside mailroom; `smtp.sent_folder` is the older
            // name of `imap.sent_folder`.
            match (&imap.sent_folder, smtp.sent_folder.take()) {
                (None, old) => imap.sent_folder = old,
                (Some(new), Some(old)) if *new != old => {
                    let message = format!(
                        "{old:?} differs from imap.sent_folder {new:?}: mailroom files its replies in and watches one Sent folder; give only imap.sent_folder"
                    );
                    c.problem(at("smtp.sent_folder"), message);
                }
                _ => {}
            }
            if imap
                .sent_folder
                .as_deref()
                .is_some_and(|f| f.trim().is_empty())
            {
                let message = "expected a folder name (leave it out to use the folder the server marks \\Sent)";
                c.problem(at("imap.sent_folder"), message);
            }
            oauth::settle_mailbox(m, &at, c);
            let (smtp, address) = (&mut m.smtp, m.address.as_str());
            match (&smtp.username, &smtp.password) {
                _ if m.auth == AuthMethod::Oauth2 => {}
                (None, Some(_)) => smtp.username = Some(address.to_owned()),
                (Some(_), None) => {
                    let message =
                        "username is set, so give password, password_env or password_file";
                    c.problem(at("smtp.password"), message);
                }
                _ => {}
            }
        }
        if let Some(m) = &mut self.matrix {
            m.auth = match (m.password.take(), m.access_token.take()) {
                (Some(password), None) => MatrixAuth::Password(password),
                (None, Some(token)) => MatrixAuth::AccessToken(token),
                (None, None) => {
                    let message = "missing: give password_env or access_token_env";
                    c.problem("matrix.password_env", message);
                    MatrixAuth::default()
                }
                (Some(_), Some(_)) => {
                    c.problem("matrix", "give password_env or access_token_env, not both");
                    MatrixAuth::default()
                }
            };
        }
        if let Some(s) = &mut self.slack {
            // The app token is needed by Socket Mode, the signing secret by the Events API.
            for (missing, key) in [
                (s.bot_token.expose().is_empty(), "bot_token_env"),
                (
                    s.mode == SlackMode::Socket && s.app_token.is_none(),
                    "app_token_env",
                ),
                (
                    s.mode == SlackMode::Events && s.signing_secret.is_none(),
                    "signing_secret_env",
                ),
            ] {
                if missing {
                    c.problem(format!("slack.{key}"), "missing (required)");
                }
            }
            let id_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
            for (user, name) in &mut s.signature_names {
                *name = name.trim().to_owned();
                let at = format!("slack.signature_names.{user}");
                if !(user.len() >= 2 && user.starts_with(['U', 'W']) && user.chars().all(id_char)) {
                    c.problem(&at, "expected a Slack user id such as U024BE7LH as the key");
                }
                if name.trim().is_empty() || name.contains(crate::domain::ids::is_header_breaking) {
                    c.problem(
                        at,
                        "must be one line, not empty, without control characters",
                    );
                }
            }
        }
        oauth::settle_secrets(self, c);
        self.reactions.check(c);
        self.outbox.check(c);
        self.ops.check(c);
        for (key, problem) in self.web.problems() {
            c.problem(format!("web.{key}"), problem);
        }
        self.cluster.check(c);
        rules::settle(self, c);
        digest::settle(self, c);
        sla::settle(self, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::settings::InitialSync;
    use crate::store::settings::DatabaseUrl;
    use std::time::Duration;

    /// Fails unless every problem of `text`'s load starts with one of `expected`.
    pub(super) fn assert_problems(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        expected: &[&str],
    ) {
        let found: Vec<String> = Settings::parse(text, env)
            .expect_err("the config has problems")
            .iter()
            .map(|p| p.to_string())
            .collect();
        for e in expected {
            assert!(
                found.iter().any(|t| t.starts_with(e)),
                "missing {e:?} in {found:#?}"
            );
        }
    }

    pub(super) fn env(k: &str) -> Option<String> {
        match k {
            "IMAP_PW" | "SMTP_PW" | "MX_PW" | "SLACK_BOT" | "SLACK_APP" => {
                Some("s3cret-value".into())
            }
            _ => None,
        }
    }

    pub(super) const GOOD: &str = r#"
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
        assert_eq!(m.imap.sent_folder, None, "unset: detected by SPECIAL-USE");
        assert!(m.imap.watch_sent);
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
        assert_problems(
            &bad,
            &env,
            &[
                "ops.listen: expected ADDRESS:PORT",
                "ops.stale_after_secs: expected 2-86400",
                "ops.port: unknown key",
            ],
        );
    }

    #[test]
    fn a_mailbox_time_zone_is_read_by_name_and_a_wrong_one_is_named() {
        let berlin = GOOD.replace(
            "display_name = \"Example Support\"",
            "display_name = \"Example Support\"\ntime_zone = \"Europe/Berlin\"",
        );
        let s = Settings::parse(&berlin, &env).unwrap();
        assert_eq!(s.mailboxes[0].time_zone.name(), "Europe/Berlin");
        let bad = berlin.replace("Europe/Berlin", "Europe/Atlantis");
        assert_problems(
            &bad,
            &env,
            &["mailbox[0].time_zone: expected an IANA time zone"],
        );
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
    fn web_is_optional_refuses_a_public_address_and_checks_its_keys() {
        let s = Settings::parse(GOOD, &env).unwrap();
        assert_eq!(s.web.listen, None);
        let on = format!("{GOOD}\n[web]\nlisten = \"127.0.0.1:9481\"\n");
        let s = Settings::parse(&on, &env).unwrap();
        assert_eq!(s.web.base_url(), "http://127.0.0.1:9481");
        assert!(!s.web.secure_cookie());
        assert_eq!(s.web.link_ttl, Duration::from_secs(600));
        let tls = format!(
            "{GOOD}\n[web]\nlisten = \"127.0.0.1:9481\"\npublic_url = \"https://desk.example.com/mail/\"\n"
        );
        let s = Settings::parse(&tls, &env).unwrap();
        assert_eq!(s.web.base_url(), "https://desk.example.com/mail");
        assert!(s.web.secure_cookie(), "https public_url: Secure cookie");

        let public = format!("{GOOD}\n[web]\nlisten = \"0.0.0.0:9481\"\n");
        assert_problems(
            &public,
            &env,
            &["web.listen: 0.0.0.0:9481 is not a loopback"],
        );
        let allowed = public.replace("[web]", "[web]\nallow_non_loopback = true");
        assert!(Settings::parse(&allowed, &env).is_ok());
        let bad = format!(
            "{GOOD}\n[web]\npublic_url = \"ftp://x\"\nlink_ttl_secs = 5\nsession_ttl_secs = \"long\"\nport = 1\n"
        );
        assert_problems(
            &bad,
            &env,
            &[
                "web.public_url: expected an http:// or https:// URL",
                "web.link_ttl_secs: expected 30-3600",
                "web.session_ttl_secs:",
                "web.port: unknown key",
            ],
        );
    }

    #[test]
    fn one_sent_folder_and_the_older_smtp_key_still_read() {
        let imap = |extra: &str| format!("password_env = \"IMAP_PW\"\n  {extra}");
        let smtp = |extra: &str| format!("password_env = \"SMTP_PW\"\n  {extra}");
        let with = |i: &str, o: &str| {
            GOOD.replacen("password_env = \"IMAP_PW\"", &imap(i), 1)
                .replacen("password_env = \"SMTP_PW\"", &smtp(o), 1)
        };
        let old = Settings::parse(&with("", "sent_folder = \"Sent Items\""), &env).unwrap();
        assert_eq!(
            old.mailboxes[0].imap.sent_folder.as_deref(),
            Some("Sent Items")
        );
        assert_eq!(old.mailboxes[0].smtp.sent_folder, None);
        let same = with(
            "sent_folder = \"Sent Items\"",
            "sent_folder = \"Sent Items\"",
        );
        assert!(Settings::parse(&same, &env).is_ok());
        let off = Settings::parse(&with("watch_sent = false", ""), &env).unwrap();
        assert!(!off.mailboxes[0].imap.watch_sent);
        let problems: Vec<String> = [
            with("sent_folder = \"Sent Items\"", "sent_folder = \"Sent\""),
            with("sent_folder = \" \"", ""),
        ]
        .iter()
        .flat_map(|t| Settings::parse(t, &env).unwrap_err())
        .map(|p| p.to_string())
        .collect();
        assert!(
            problems[0].starts_with(
                "mailbox[0].smtp.sent_folder: \"Sent\" differs from imap.sent_folder \"Sent Items\""
            ),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("mailbox[0].imap.sent_folder: expected a folder name"),
            "{problems:?}"
        );
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
    fn the_workflow_example_parses_with_its_pools() {
        let any = |_: &str| Some("from-the-environment".to_owned());
        let text = include_str!("../../bot-config/workflow.example.toml");
        let s = Settings::parse(text, &any).unwrap_or_else(|p| panic!("{p:#?}"));
        let support = &s.assign_pools[&MailboxName::parse("support").unwrap()];
        assert_eq!(support.name, "mailbox support");
        assert_eq!(support.cap, Some(6));
        assert_eq!(
            support.strategy,
            crate::domain::assign::Strategy::LeastLoaded
        );
        let sales = &s.assign_pools[&MailboxName::parse("sales").unwrap()];
        let names: Vec<&str> = sales.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!((names, sales.cap), (vec!["dana", "carlos"], Some(10)));
        assert_eq!(
            sales.members[1].slack.as_ref().map(|a| a.as_str()),
            Some("slack:U0CARLOS01")
        );
        assert_eq!(s.rules.len(), 2);
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
            #[serde(deserialize_with = "crate::domain::settings::int::<1, 9, i64, _>")]
            _n: i64,
        }
        let e = toml::from_str::<Small>("_n = 10").err();
        assert!(e.is_some_and(|e| e.to_string().contains("expected 1-9")));
    }
    #[test]
    fn every_missing_key_of_a_table_is_named() {
        let text = "[database]\nurl = \"sqlite::memory:\"\n\n[[mailbox]]\nname = \"support\"\n\
                    [mailbox.smtp]\nport = 70000\n";
        let text: Vec<String> = Settings::parse(text, &env)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            text,
            [
                "mailbox[0].address: missing (required) (line 4)",
                "mailbox[0].display_name: missing (required) (line 4)",
                "mailbox[0].imap: missing (required) (line 4)",
                "mailbox[0].smtp.host: missing (required) (line 6)",
                "mailbox[0].smtp.port: expected 1-65535 (line 7)",
            ]
        );
    }

    #[test]
    fn secrets_come_inline_from_the_environment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let text = GOOD.replace(
            "password_env = \"SMTP_PW\"",
            &format!("password_file = {:?}", file.display().to_string()),
        );
        let s = Settings::parse(&text, &env).unwrap();
        assert_eq!(s.mailboxes[0].imap.password.expose(), "s3cret-value");
        let (user, pw) = s.mailboxes[0].smtp.credentials().unwrap();
        assert_eq!((user, pw.expose()), ("support@example.com", "from-a-file"));

        let three = GOOD.replace(
            "password_env = \"IMAP_PW\"",
            "password = \"x\"\n  password_env = \"IMAP_PW\"\n  password_file = \"/nonexistent\"\n  token_env = \"IMAP_PW\"",
        );
        let text: Vec<String> = Settings::parse(&three, &env)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            text,
            [
                "mailbox[0].imap.password: give only one of password, password_env, password_file (line 11)",
                "mailbox[0].imap.token_env: unknown key (line 14)",
            ]
        );
    }
}
