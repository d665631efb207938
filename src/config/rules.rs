//! `[people]`, `[groups]` and `[[rule]]`: who can be assigned, and the
//! routing rules, read as written and then checked as a whole (names known,
//! patterns compiling, no empty or contradicting rule) and built into the
//! domain's [`Rule`]s. Every problem names the rule and the key:
//! `rule[2].subject: rule "billing": bad regex: …`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer};

use super::Check;
use super::Settings;
use crate::domain::assign::Strategy;
use crate::domain::chat::Platform;
use crate::domain::ids::{Agent, EmailAddress, MailboxName, Tag};
use crate::domain::routing::{
    Actions, Assignee, Conditions, Language, Mark, Pattern, Person, Pool, Priority, Rule,
};
use crate::domain::settings::{lenient, read, want};

/// A teammate rules may assign to: their id on Matrix, on Slack, or both.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PersonSettings {
    #[serde(default, deserialize_with = "lenient")]
    pub matrix: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub slack: Option<String>,
}

/// A `[groups]` entry: a list of `[people]` names, or a table with the
/// list and how new tickets are spread over it.
#[derive(Debug, Clone, Default)]
pub struct GroupSettings {
    pub members: Vec<String>,
    pub strategy: Strategy,
    /// Given as written, checked by the load (at least 1).
    pub cap: Option<i64>,
}

/// The table form of a group: `billing = { members = […], strategy = …, cap = … }`.
#[derive(Debug, Clone, Default, Deserialize)]
struct GroupTable {
    #[serde(default, deserialize_with = "lenient")]
    members: Vec<String>,
    #[serde(default, deserialize_with = "lenient")]
    strategy: Strategy,
    #[serde(default, deserialize_with = "lenient")]
    cap: Option<i64>,
}

impl<'de> Deserialize<'de> for GroupSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = GroupSettings;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of [people] names or a table with members, strategy, cap")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                let members =
                    Vec::<String>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                Ok(GroupSettings {
                    members,
                    ..GroupSettings::default()
                })
            }
            // Through the map itself, so unknown keys are still reported.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                let t = GroupTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(GroupSettings {
                    members: t.members,
                    strategy: t.strategy,
                    cap: t.cap,
                })
            }
        }
        d.deserialize_any(Visit)
    }
}

/// One `[[rule]]` as written. Conditions first, then actions; see
/// [`crate::domain::routing`] for how they combine.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleSettings {
    #[serde(default, deserialize_with = "lenient")]
    pub name: String,
    // Conditions: a string or a list of strings each (any of them).
    #[serde(default, deserialize_with = "strings")]
    pub mailbox: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strings")]
    pub to: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strings")]
    pub to_tag: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strings")]
    pub from: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strings")]
    pub from_domain: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient")]
    pub subject: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub body: Option<String>,
    #[serde(default, deserialize_with = "strings")]
    pub language: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient")]
    pub has_attachment: Option<bool>,
    // Actions.
    #[serde(default, deserialize_with = "lenient")]
    pub matrix_room: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub slack_channel: Option<String>,
    #[serde(default, deserialize_with = "strings")]
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient")]
    pub priority: Option<Priority>,
    #[serde(default, deserialize_with = "lenient")]
    pub assign: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub mark: Option<Mark>,
    #[serde(default, deserialize_with = "lenient")]
    pub stop: bool,
}

/// A string or a list of strings.
fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    read(d, |v: OneOrMany| {
        let v = match v {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        want(!v.is_empty(), v, |_| {
            "empty list: leave the key out, or give at least one value".into()
        })
    })
    .map(|v| v.map(|v| v.into_iter().map(|s| s.trim().to_owned()).collect()))
}

/// Checks people, groups and rules, and builds the rules (only when
/// every rule is right: a half-built rule set would route differently
/// from what the file says).
pub(super) fn settle(s: &mut Settings, c: &mut Check) {
    let people = people(s, c);
    let groups = groups(s, &people, c);
    let pools = mailbox_pools(s, &people, &groups, c);
    if c.clean("mailbox") {
        s.assign_pools = pools;
    }
    let mut names = BTreeSet::new();
    let mut rules = Vec::with_capacity(s.rule_settings.len());
    for (i, r) in s.rule_settings.iter().enumerate() {
        let at = format!("rule[{i}]");
        if r.name.trim().is_empty() {
            if c.clean(&format!("{at}.name")) {
                c.problem(format!("{at}.name"), "missing: every rule needs a name");
            }
        } else if !names.insert(r.name.trim()) {
            c.problem(
                format!("{at}.name"),
                format!("duplicate rule name {:?}", r.name.trim()),
            );
        }
        let mut p = RuleCheck {
            c: &mut *c,
            at: &at,
            name: r.name.trim(),
        };
        if let Some(rule) = p.build(r, s, &people, &groups) {
            rules.push(rule);
        }
    }
    if rules.len() == s.rule_settings.len() && c.clean("rule") {
        s.rules = rules;
    }
}

fn people(s: &Settings, c: &mut Check) -> BTreeMap<String, Person> {
    let mut out = BTreeMap::new();
    for (name, p) in &s.people {
        let at = format!("people.{name}");
        let mut agent = |id: &Option<String>, key: &str, ok: fn(&str) -> bool, what: &str| {
            let id = id.as_deref()?;
            match Agent::parse(id) {
                Ok(a) if ok(a.as_str()) => Some(a),
                _ => {
                    c.problem(
                        format!("{at}.{key}"),
                        format!("expected {what}, got {:?}", id.trim_start_matches("slack:")),
                    );
                    None
                }
            }
        };
        let matrix = agent(
            &p.matrix,
            "matrix",
            |id| id.starts_with('@') && id.contains(':'),
            "a Matrix user id such as \"@alice:example.com\"",
        );
        // A Slack user is the agent `slack:U…`, as the adapter names the
        // people it hears from, so an owner given here is the same person
        // who claims or unclaims in Slack.
        let slack_id = p
            .slack
            .as_deref()
            .map(|id| format!("slack:{}", id.trim().trim_start_matches("slack:")));
        let slack = agent(
            &slack_id,
            "slack",
            |id| {
                let id = id.trim_start_matches("slack:");
                id.len() >= 2
                    && id.starts_with(['U', 'W'])
                    && id
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            },
            "a Slack user id such as \"U024BE7LH\"",
        );
        if p.matrix.is_none() && p.slack.is_none() {
            c.problem(
                &at,
                "give matrix, slack or both (the person's chat user ids)",
            );
        }
        let person = Person {
            name: name.clone(),
            matrix,
            slack,
        };
        out.insert(name.clone(), person);
    }
    out
}

/// A cap as written: at least 1 (a cap of 0 would take nobody).
fn cap(at: String, cap: Option<i64>, c: &mut Check) -> Option<u32> {
    let n = cap?;
    match u32::try_from(n) {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            c.problem(
                at,
                format!("expected at least 1, got {n} (leave cap out for no limit)"),
            );
            None
        }
    }
}

fn groups(
    s: &Settings,
    people: &BTreeMap<String, Person>,
    c: &mut Check,
) -> BTreeMap<String, Pool> {
    let mut out = BTreeMap::new();
    for (name, g) in &s.groups {
        let at = format!("groups.{name}");
        if people.contains_key(name) {
            c.problem(&at, format!("{name:?} is both a person and a group"));
        }
        let members = members(&at, &g.members, people, c);
        let cap = cap(format!("{at}.cap"), g.cap, c);
        out.insert(
            name.clone(),
            Pool {
                name: format!("group {name}"),
                strategy: g.strategy,
                cap,
                members,
            },
        );
    }
    out
}

/// `[people]` names as a pool's members, each once; unknown ones reported.
fn members(
    at: &str,
    names: &[String],
    people: &BTreeMap<String, Person>,
    c: &mut Check,
) -> Vec<Person> {
    if names.is_empty() {
        c.problem(at, "an empty group: list at least one person of [people]");
    }
    let mut list: Vec<Person> = Vec::new();
    for m in names {
        match people.get(m.trim()) {
            Some(p) if list.contains(p) => c.problem(at, format!("{m:?} is listed twice")),
            Some(p) => list.push(p.clone()),
            None => c.problem(at, format!("unknown person {m:?}: not in [people]")),
        }
    }
    list
}

/// Each mailbox's `[mailbox.assign]`, built into its pool.
fn mailbox_pools(
    s: &Settings,
    people: &BTreeMap<String, Person>,
    groups: &BTreeMap<String, Pool>,
    c: &mut Check,
) -> BTreeMap<MailboxName, Pool> {
    let mut out = BTreeMap::new();
    for (i, m) in s.mailboxes.iter().enumerate() {
        let Some(a) = &m.assign else { continue };
        let at = format!("mailbox[{i}].assign");
        let base = match (&a.group, &a.to) {
            (Some(_), Some(_)) => {
                c.problem(&at, "give group or to, not both");
                continue;
            }
            (None, None) => {
                c.problem(
                    &at,
                    "give group (a [groups] name) or to (a list of [people] names)",
                );
                continue;
            }
            (Some(g), None) => match groups.get(g.trim()) {
                Some(pool) => pool.clone(),
                None => {
                    c.problem(
                        format!("{at}.group"),
                        format!("unknown group {g:?}: not in [groups]"),
                    );
                    continue;
                }
            },
            (None, Some(to)) => Pool {
                name: String::new(),
                strategy: Strategy::default(),
                cap: None,
                members: members(&format!("{at}.to"), to, people, c),
            },
        };
        let pool = Pool {
            // The mailbox's own cursor, even when it shares a group: its
            // turns are its own.
            name: format!("mailbox {}", m.name),
            strategy: a.strategy.unwrap_or(base.strategy),
            cap: cap(format!("{at}.cap"), a.cap, c).or(base.cap),
            members: base.members,
        };
        out.insert(m.name.clone(), pool);
    }
    out
}

/// Problems of one rule, each naming the rule and the key.
struct RuleCheck<'a> {
    c: &'a mut Check,
    at: &'a str,
    name: &'a str,
}

impl RuleCheck<'_> {
    fn problem(&mut self, key: &str, message: impl std::fmt::Display) {
        let path = match key {
            "" => self.at.to_owned(),
            k => format!("{}.{k}", self.at),
        };
        self.c
            .problem(path, format!("rule {:?}: {message}", self.name));
    }

    /// Each value of a list key through `parse`; wrong ones are reported.
    fn each<T>(
        &mut self,
        key: &str,
        values: &Option<Vec<String>>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for v in values.iter().flatten() {
            match parse(v) {
                Ok(t) => out.push(t),
                Err(e) => self.problem(key, e),
            }
        }
        out
    }

    fn pattern(&mut self, key: &str, p: &Option<String>) -> Option<Pattern> {
        let p = p.as_deref()?;
        Pattern::parse(p).map_err(|e| self.problem(key, e)).ok()
    }

    fn build(
        &mut self,
        r: &RuleSettings,
        s: &Settings,
        people: &BTreeMap<String, Person>,
        groups: &BTreeMap<String, Pool>,
    ) -> Option<Rule> {
        let known: BTreeSet<&MailboxName> = s.mailboxes.iter().map(|m| &m.name).collect();
        let when = Conditions {
            mailboxes: self.each("mailbox", &r.mailbox, |m| {
                let name = MailboxName::parse(m).map_err(|e| e.to_string())?;
                match known.contains(&name) {
                    true => Ok(name),
                    false => Err(format!(
                        "unknown mailbox {m:?}: no [[mailbox]] has that name"
                    )),
                }
            }),
            to: self.each("to", &r.to, |a| {
                EmailAddress::parse(a).map_err(|e| e.to_string())
            }),
            to_tags: self.each("to_tag", &r.to_tag, |t| {
                let ok = !t.is_empty()
                    && !t.contains(['@', '+'])
                    && !t.contains(|c: char| c.is_whitespace() || c.is_control());
                match ok {
                    true => Ok(t.to_lowercase()),
                    false => Err(format!(
                        "expected the part after '+' (\"billing\" for support+billing@…), got {t:?}"
                    )),
                }
            }),
            from: self.each("from", &r.from, |a| {
                EmailAddress::parse(a).map_err(|e| e.to_string())
            }),
            from_domains: self.each("from_domain", &r.from_domain, |d| {
                let d = d.trim_start_matches('@').to_lowercase();
                let ok = d.contains('.')
                    && !d.starts_with('.')
                    && !d.ends_with('.')
                    && d.chars()
                        .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
                match ok {
                    true => Ok(d),
                    false => Err(format!(
                        "expected a domain such as \"example.com\", got {d:?}"
                    )),
                }
            }),
            subject: self.pattern("subject", &r.subject),
            body: self.pattern("body", &r.body),
            languages: self.each("language", &r.language, Language::parse),
            has_attachment: r.has_attachment,
        };
        let given_conditions = [
            r.mailbox.is_some(),
            r.to.is_some(),
            r.to_tag.is_some(),
            r.from.is_some(),
            r.from_domain.is_some(),
            r.subject.is_some(),
            r.body.is_some(),
            r.language.is_some(),
            r.has_attachment.is_some(),
        ];
        if !given_conditions.contains(&true) && self.c.clean(self.at) {
            self.problem(
                "",
                "matches nothing: give at least one of mailbox, to, to_tag, from, \
                 from_domain, subject, body, language, has_attachment \
                 (for every mail of a mailbox: mailbox = \"NAME\")",
            );
        }
        let mut rooms = BTreeMap::new();
        for (key, value, platform, given, check) in [
            (
                "matrix_room",
                &r.matrix_room,
                Platform::Matrix,
                s.matrix.is_some(),
                crate::mail::settings::room_id as fn(String) -> Result<String, String>,
            ),
            (
                "slack_channel",
                &r.slack_channel,
                Platform::Slack,
                s.slack.is_some(),
                crate::mail::settings::channel_id,
            ),
        ] {
            let Some(v) = value else { continue };
            match check(v.clone()) {
                Ok(v) if given => {
                    rooms.insert(platform, v);
                }
                Ok(_) => self.problem(
                    key,
                    format!("set, but there is no [{}] section", platform.as_str()),
                ),
                Err(e) => self.problem(key, e),
            }
        }
        let assign = r.assign.as_deref().and_then(|a| {
            let a = a.trim();
            if let Some(p) = people.get(a) {
                return Some(Assignee::Person(p.clone()));
            }
            if let Some(pool) = groups.get(a) {
                return Some(Assignee::Group(pool.clone()));
            }
            self.problem(
                "assign",
                format!("unknown person or group {a:?}: not in [people] or [groups]"),
            );
            None
        });
        let then = Actions {
            rooms,
            tags: self.each("tags", &r.tags, |t| {
                Tag::parse(t).map_err(|e| e.to_string())
            }),
            priority: r.priority,
            assign,
            mark: r.mark,
        };
        let given_actions = [
            r.matrix_room.is_some(),
            r.slack_channel.is_some(),
            r.tags.is_some(),
            r.priority.is_some(),
            r.assign.is_some(),
            r.mark.is_some(),
        ];
        if !given_actions.contains(&true) && self.c.clean(self.at) {
            self.problem(
                "",
                "does nothing: give at least one of matrix_room, slack_channel, tags, \
                 priority, assign, mark",
            );
        }
        if let Some(mark) = r.mark {
            let clash: Vec<&str> = [
                ("matrix_room", r.matrix_room.is_some()),
                ("slack_channel", r.slack_channel.is_some()),
                ("priority", r.priority.is_some()),
                ("assign", r.assign.is_some()),
            ]
            .iter()
            .filter(|(_, given)| *given)
            .map(|(k, _)| *k)
            .collect();
            if !clash.is_empty() {
                self.problem(
                    "mark",
                    format!(
                        "contradicts {}: a mail marked {:?} is never posted nor worked on \
                         (tags may stay, to tell why)",
                        clash.join(", "),
                        mark.as_str()
                    ),
                );
            }
        }
        self.c.clean(self.at).then(|| Rule {
            name: self.name.to_owned(),
            when,
            then,
            stop: r.stop,
        })
    }
}

impl Settings {
    /// Every Matrix room the bot posts to: the mailboxes' and the rules'.
    pub fn matrix_rooms(&self) -> Vec<String> {
        let mut rooms: Vec<String> = Vec::new();
        let mailbox = self
            .mailboxes
            .iter()
            .filter_map(|m| m.chat.matrix_room.clone());
        let rules = self
            .rules
            .iter()
            .filter_map(|r| r.then.rooms.get(&Platform::Matrix).cloned());
        for r in mailbox.chain(rules) {
            if !rooms.contains(&r) {
                rooms.push(r);
            }
        }
        rooms
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::domain::assign::Strategy;
    use crate::domain::chat::Platform;
    use crate::domain::routing::{Assignee, Mark, Priority};

    use crate::config::tests::{GOOD, env};

    /// The config module's good file, with people and a group.
    fn base() -> String {
        format!(
            "{GOOD}\n[people]\nalice = {{ matrix = \"@alice:example.com\", slack = \"U0ALICE01\" }}\n\
             bob = {{ matrix = \"@bob:example.com\" }}\n\n[groups]\nbilling = [\"bob\", \"alice\"]\n"
        )
    }

    fn problems(rules: &str) -> Vec<String> {
        let text = format!("{}\n{rules}", base());
        match Settings::parse(&text, &env) {
            Ok(_) => Vec::new(),
            Err(p) => p.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn has(problems: &[String], start: &str, contains: &str) -> bool {
        problems
            .iter()
            .any(|p| p.starts_with(start) && p.contains(contains))
    }

    #[test]
    fn good_rules_are_built_in_file_order() {
        let text = format!(
            "{}\n{}",
            base(),
            r##"
[[rule]]
name = "billing"
to_tag = ["billing", "invoices"]
subject = "(?i)invoice"
tags = ["billing", "money"]
priority = "high"
assign = "billing"
matrix_room = "#billing:example.com"
stop = true

[[rule]]
name = "noise"
from_domain = "@News.Example.NET"
mark = "spam"
tags = ["newsletter"]
"##
        );
        let s = Settings::parse(&text, &env).unwrap();
        assert_eq!(s.rules.len(), 2);
        let r = &s.rules[0];
        assert_eq!(r.name, "billing");
        assert!(r.stop);
        assert_eq!(r.when.to_tags, ["billing", "invoices"]);
        assert_eq!(r.then.priority, Some(Priority::High));
        assert_eq!(r.then.rooms[&Platform::Matrix], "#billing:example.com");
        match &r.then.assign {
            Some(Assignee::Group(pool)) => {
                assert_eq!(pool.name, "group billing");
                assert_eq!(pool.members[0].name, "bob");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.rules[1].when.from_domains, ["news.example.net"]);
        assert_eq!(s.rules[1].then.mark, Some(Mark::Spam));
        assert_eq!(
            s.matrix_rooms(),
            ["!abc:example.com", "#billing:example.com"]
        );
    }

    #[test]
    fn an_unknown_field_is_named() {
        let p = problems(
            "[[rule]]\nname = \"r\"\nfrom = \"a@b.example\"\ntags = [\"x\"]\nsubjekt = \"x\"\n",
        );
        assert!(has(&p, "rule[0].subjekt: unknown key", ""), "{p:#?}");
    }

    #[test]
    fn a_bad_regex_names_the_rule_and_the_key() {
        let p = problems("[[rule]]\nname = \"billing\"\nsubject = \"(unclosed\"\ntags = [\"x\"]\n");
        assert!(
            has(&p, "rule[0].subject: rule \"billing\": bad regex:", ""),
            "{p:#?}"
        );
        let p = problems(
            "[[rule]]\nname = \"b\"\nbody = \"\\\\w{1000}\\\\w{1000}\\\\w{1000}\"\ntags = [\"x\"]\n",
        );
        assert!(
            has(&p, "rule[0].body: rule \"b\": bad regex:", "limit"),
            "{p:#?}"
        );
    }

    #[test]
    fn unknown_rooms_people_groups_and_mailboxes_are_named() {
        let p = problems(
            r#"
[[rule]]
name = "r"
mailbox = "sales"
assign = "carol"
slack_channel = "C0SALES01"
matrix_room = "general"
"#,
        );
        for (start, contains) in [
            ("rule[0].mailbox: rule \"r\": unknown mailbox \"sales\"", ""),
            (
                "rule[0].assign: rule \"r\": unknown person or group \"carol\"",
                "",
            ),
            (
                "rule[0].slack_channel: rule \"r\": set, but there is no [slack]",
                "",
            ),
            ("rule[0].matrix_room: rule \"r\": expected a room id", ""),
        ] {
            assert!(has(&p, start, contains), "{start} not in {p:#?}");
        }
    }

    #[test]
    fn people_and_groups_are_checked() {
        let text = base()
            .replace(
                "bob = { matrix = \"@bob:example.com\" }",
                "bob = { matrix = \"bob\" }\ncarol = {}",
            )
            .replace(
                "billing = [\"bob\", \"alice\"]",
                "billing = [\"bob\", \"dave\"]\nempty = []",
            );
        let p: Vec<String> = Settings::parse(&text, &env)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        for start in [
            "people.bob.matrix: expected a Matrix user id",
            "people.carol: give matrix, slack or both",
            "groups.billing: unknown person \"dave\"",
            "groups.empty: an empty group",
        ] {
            assert!(has(&p, start, ""), "{start} not in {p:#?}");
        }
    }

    #[test]
    fn group_tables_and_mailbox_pools_are_read_and_checked() {
        let good = base()
            .replace(
                "billing = [\"bob\", \"alice\"]",
                "billing = [\"bob\", \"alice\"]\nteam = { members = [\"alice\", \"bob\"], strategy = \"least_loaded\", cap = 3 }",
            )
            .replace(
                "  matrix_room = \"!abc:example.com\"",
                "  matrix_room = \"!abc:example.com\"\n  [mailbox.assign]\n  group = \"team\"\n  strategy = \"round_robin\"",
            );
        let s = Settings::parse(&good, &env).unwrap_or_else(|p| panic!("{p:#?}"));
        let pool = s.assign_pools.values().next().unwrap();
        assert_eq!(pool.name, "mailbox support");
        assert_eq!(pool.strategy, Strategy::RoundRobin, "the mailbox overrides");
        assert_eq!(pool.cap, Some(3), "the group's cap stays");
        assert_eq!(
            s.people["alice"].slack.as_deref(),
            Some("U0ALICE01"),
            "as written"
        );
        let bad = base()
            .replace(
                "billing = [\"bob\", \"alice\"]",
                "billing = { members = [\"bob\", \"bob\"], strategy = \"random\", cap = 0, size = 2 }",
            )
            .replace(
                "  matrix_room = \"!abc:example.com\"",
                "  matrix_room = \"!abc:example.com\"\n  [mailbox.assign]\n  group = \"suport\"\n  cap = -1",
            );
        crate::config::tests::assert_problems(
            &bad,
            &env,
            &[
                "groups.billing.strategy: expected \"round_robin\" or \"least_loaded\", got \"random\"",
                "groups.billing.cap: expected at least 1, got 0",
                "groups.billing.size: unknown key",
                "groups.billing: \"bob\" is listed twice",
                "mailbox[0].assign.group: unknown group \"suport\"",
            ],
        );
        let both = good.replace("group = \"team\"", "group = \"team\"\n  to = [\"alice\"]");
        crate::config::tests::assert_problems(
            &both,
            &env,
            &["mailbox[0].assign: give group or to, not both"],
        );
        let to = good.replace("group = \"team\"", "to = [\"alice\", \"zed\"]\n  cap = 0");
        crate::config::tests::assert_problems(
            &to,
            &env,
            &[
                "mailbox[0].assign.to: unknown person \"zed\"",
                "mailbox[0].assign.cap: expected at least 1, got 0",
            ],
        );
    }

    #[test]
    fn an_empty_match_and_an_empty_rule_are_refused() {
        let p = problems("[[rule]]\nname = \"all\"\ntags = [\"x\"]\n");
        assert!(
            has(&p, "rule[0]: rule \"all\": matches nothing", ""),
            "{p:#?}"
        );
        let p = problems("[[rule]]\nname = \"idle\"\nfrom = \"a@b.example\"\n");
        assert!(
            has(&p, "rule[0]: rule \"idle\": does nothing", ""),
            "{p:#?}"
        );
        let p = problems("[[rule]]\nname = \"e\"\nto = []\ntags = [\"x\"]\n");
        assert!(has(&p, "rule[0].to: empty list", ""), "{p:#?}");
        let p = problems("[[rule]]\nfrom = \"a@b.example\"\ntags = [\"x\"]\n");
        assert!(has(&p, "rule[0].name: missing", ""), "{p:#?}");
    }

    #[test]
    fn contradicting_actions_are_refused() {
        let p = problems(
            "[[rule]]\nname = \"c\"\nfrom = \"a@b.example\"\nmark = \"ignore\"\nassign = \"alice\"\npriority = \"urgent\"\n",
        );
        assert!(
            has(
                &p,
                "rule[0].mark: rule \"c\": contradicts priority, assign",
                ""
            ),
            "{p:#?}"
        );
    }

    #[test]
    fn wrong_values_and_duplicate_names_are_named() {
        let p = problems(
            r#"
[[rule]]
name = "r"
from = "not an address"
from_domain = "localhost"
to_tag = "a+b"
language = "klingon"
priority = "asap"
mark = "delete"
tags = ["no spaces"]

[[rule]]
name = "r"
from = "a@b.example"
tags = ["x"]
"#,
        );
        for start in [
            "rule[0].from: rule \"r\":",
            "rule[0].from_domain: rule \"r\": expected a domain",
            "rule[0].to_tag: rule \"r\": expected the part after '+'",
            "rule[0].language: rule \"r\": unknown language",
            "rule[0].priority: expected \"low\", \"normal\", \"high\" or \"urgent\"",
            "rule[0].mark: expected \"ignore\" or \"spam\"",
            "rule[0].tags: rule \"r\":",
            "rule[1].name: duplicate rule name \"r\"",
        ] {
            assert!(has(&p, start, ""), "{start} not in {p:#?}");
        }
    }
}
