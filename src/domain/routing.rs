//! Routing rules: which rules a new email matches and what they do to its
//! ticket (post to another room, tags, priority, an owner, set it aside).
//!
//! Rules are tried in file order. Every condition a rule gives must hold
//! (a list holds when any of its values does). A matching rule with
//! `stop` ends the walk (first match wins); without it, later rules are
//! tried too (all matches). Tags add up; a single-valued action (a room,
//! the priority, the owner, setting aside) is decided by the first
//! matching rule that gives it, so an earlier, more specific rule is never
//! overridden by a later, broader one.
//!
//! Pure: the bridge hands over the mail's facts ([`MailFacts`]), config
//! builds the [`Rule`]s, and [`route`] / [`explain`] decide.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use regex::{Regex, RegexBuilder};

use super::assign::AutoAssign;
pub use super::assign::{Person, Pool};
use super::chat::Platform;
use super::ids::{Agent, EmailAddress, MailboxName, Tag};

/// How urgent a ticket is; stored with it and shown on its card.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's `mark`: the mail is kept with its ticket set aside, never posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    Ignore,
    Spam,
}

impl Mark {
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Ignore => "ignore",
            Mark::Spam => "spam",
        }
    }
}

/// Whom a rule assigns a ticket to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    Person(Person),
    /// A group: the member is picked when the mail arrives, in the store's
    /// transaction ([`crate::domain::assign::pick`]).
    Group(Pool),
}

impl Assignee {
    pub fn name(&self) -> &str {
        match self {
            Assignee::Person(p) => &p.name,
            Assignee::Group(pool) => pool.name.strip_prefix("group ").unwrap_or(&pool.name),
        }
    }
}

/// A language to match, as whatlang names it (ISO 639-3: `eng`, `deu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language(whatlang::Lang);

impl Language {
    pub fn parse(code: &str) -> Result<Language, String> {
        whatlang::Lang::from_code(code.trim().to_lowercase())
            .map(Language)
            .ok_or_else(|| {
                format!("unknown language {code:?}: give an ISO 639-3 code such as \"eng\", \"deu\", \"fra\"")
            })
    }
    pub fn code(self) -> &'static str {
        self.0.code()
    }
}

/// The most a pattern may be, written and compiled: a rule is the
/// administrator's, but a pasted monster should fail the check, not eat
/// memory on every mail.
pub const MAX_PATTERN_CHARS: usize = 1_000;
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// How much of a body the patterns and the language detection read.
pub const MAX_BODY_SCANNED: usize = 256 * 1024;

/// A subject or body pattern (Rust `regex` syntax, linear time).
#[derive(Debug, Clone)]
pub struct Pattern(Regex);

impl Pattern {
    pub fn parse(p: &str) -> Result<Pattern, String> {
        if p.is_empty() {
            return Err("empty pattern: it would match every mail".into());
        }
        if p.chars().count() > MAX_PATTERN_CHARS {
            return Err(format!(
                "pattern longer than {MAX_PATTERN_CHARS} characters"
            ));
        }
        RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(Pattern)
            .map_err(|e| {
                let e = e.to_string();
                // The regex crate's message spans several lines with a caret.
                let flat: Vec<&str> = e.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
                format!("bad regex: {}", flat.join(" "))
            })
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
    fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// What a rule looks at. Every given condition must hold; empty lists and
/// `None` are not given. A rule with nothing given is refused by the config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conditions {
    pub mailboxes: Vec<MailboxName>,
    /// An address in To or Cc, exactly (plus tag included).
    pub to: Vec<EmailAddress>,
    /// A plus tag on the mailbox's own address in To or Cc
    /// (`support+billing@…` has the tag `billing`).
    pub to_tags: Vec<String>,
    pub from: Vec<EmailAddress>,
    /// The sender's domain, or a parent of it (`example.com` matches
    /// `mail.example.com`).
    pub from_domains: Vec<String>,
    pub subject: Option<Pattern>,
    pub body: Option<Pattern>,
    pub languages: Vec<Language>,
    pub has_attachment: Option<bool>,
}

impl Conditions {
    pub fn is_empty(&self) -> bool {
        self == &Conditions::default()
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actions {
    /// Post here instead of the mailbox's room or channel.
    pub rooms: BTreeMap<Platform, String>,
    pub tags: Vec<Tag>,
    pub priority: Option<Priority>,
    pub assign: Option<Assignee>,
    pub mark: Option<Mark>,
}

impl Actions {
    pub fn is_empty(&self) -> bool {
        self == &Actions::default()
    }

    /// One line: what the rule does.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.mark {
            parts.push(match m {
                Mark::Ignore => "ignore (kept, not posted)".to_owned(),
                Mark::Spam => "mark as spam (kept, not posted)".to_owned(),
            });
        }
        for (p, room) in &self.rooms {
            parts.push(format!("post to {} {room}", p.as_str()));
        }
        if !self.tags.is_empty() {
            let tags: Vec<&str> = self.tags.iter().map(Tag::as_str).collect();
            parts.push(format!("tag {}", tags.join(", ")));
        }
        if let Some(p) = self.priority {
            parts.push(format!("priority {p}"));
        }
        if let Some(a) = &self.assign {
            parts.push(match a {
                Assignee::Person(p) => format!("assign to {}", p.name),
                Assignee::Group(pool) => format!("auto-assign in {}", pool.describe()),
            });
        }
        parts.join("; ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub when: Conditions,
    pub then: Actions,
    /// A match ends the walk: later rules are not tried.
    pub stop: bool,
}

/// The facts of one email that rules look at.
#[derive(Debug, Clone)]
pub struct MailFacts<'a> {
    pub mailbox: &'a MailboxName,
    /// The mailbox's own address, for plus tags.
    pub shared: &'a EmailAddress,
    pub from: &'a EmailAddress,
    /// To and Cc.
    pub recipients: Vec<&'a EmailAddress>,
    pub subject: &'a str,
    pub body: &'a str,
    pub has_attachment: bool,
}

/// Facts computed at most once per mail, only if a rule asks.
struct Lazy<'a> {
    facts: &'a MailFacts<'a>,
    language: Option<Option<whatlang::Lang>>,
}

impl<'a> Lazy<'a> {
    fn body(&self) -> &'a str {
        cut(self.facts.body, MAX_BODY_SCANNED)
    }

    /// The mail's language, when whatlang is sure of it.
    fn language(&mut self) -> Option<whatlang::Lang> {
        if self.language.is_none() {
            let text = format!("{}\n{}", self.facts.subject, self.body());
            let info = whatlang::detect(&text).filter(|i| i.is_reliable());
            self.language = Some(info.map(|i| i.lang()));
        }
        self.language.flatten()
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The first condition of `when` the mail fails, said briefly; `None`: all hold.
fn first_miss(when: &Conditions, mail: &mut Lazy<'_>) -> Option<String> {
    let f = mail.facts;
    let list = |v: &[String]| v.join(", ");
    if !when.mailboxes.is_empty() && !when.mailboxes.contains(f.mailbox) {
        return Some(format!("mailbox is {}", f.mailbox));
    }
    if !when.to.is_empty() && !f.recipients.iter().any(|r| when.to.contains(r)) {
        let want: Vec<String> = when.to.iter().map(|a| a.to_string()).collect();
        return Some(format!("To/Cc has none of {}", list(&want)));
    }
    if !when.to_tags.is_empty() {
        let tags: Vec<String> = f
            .recipients
            .iter()
            .filter_map(|r| f.shared.plus_tag_of(r))
            .map(str::to_lowercase)
            .collect();
        if !when.to_tags.iter().any(|t| tags.contains(t)) {
            return Some(format!(
                "To/Cc has no {}+{{{}}}",
                f.shared,
                list(&when.to_tags)
            ));
        }
    }
    if !when.from.is_empty() && !when.from.contains(f.from) {
        return Some(format!("From is {}", f.from));
    }
    if !when.from_domains.is_empty() {
        let domain = f.from.domain().to_lowercase();
        let under = |d: &String| domain == *d || domain.ends_with(&format!(".{d}"));
        if !when.from_domains.iter().any(under) {
            return Some(format!("From's domain is {domain}"));
        }
    }
    if let Some(p) = &when.subject
        && !p.is_match(f.subject)
    {
        return Some(format!("subject does not match /{}/", p.as_str()));
    }
    if let Some(p) = &when.body
        && !p.is_match(mail.body())
    {
        return Some(format!("body does not match /{}/", p.as_str()));
    }
    if let Some(want) = when.has_attachment
        && want != f.has_attachment
    {
        return Some(match f.has_attachment {
            true => "it has an attachment".to_owned(),
            false => "it has no attachment".to_owned(),
        });
    }
    if !when.languages.is_empty() {
        let got = mail.language();
        if !when.languages.iter().any(|l| Some(l.0) == got) {
            return Some(match got {
                Some(l) => format!("language is {}", l.code()),
                None => "language not recognised with confidence".to_owned(),
            });
        }
    }
    None
}

/// What one rule made of a mail, for `mailroom rules test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It matched; its actions apply (those not already decided).
    Hit,
    /// It did not match: the first condition that failed.
    Miss(String),
    /// Not tried: an earlier matching rule has `stop`.
    NotReached { stopped_by: String },
}

/// What the rules decided for a new ticket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routing {
    /// The matching rules, in order.
    pub rules: Vec<String>,
    pub rooms: BTreeMap<Platform, String>,
    pub tags: BTreeSet<Tag>,
    pub priority: Option<Priority>,
    /// The assignment and the rule that gave it.
    pub assign: Option<Assignee>,
    pub mark: Option<Mark>,
}

impl Routing {
    fn take(&mut self, rule: &Rule) {
        let then = &rule.then;
        self.rules.push(rule.name.clone());
        for (p, room) in &then.rooms {
            self.rooms.entry(*p).or_insert_with(|| room.clone());
        }
        self.tags.extend(then.tags.iter().cloned());
        self.priority = self.priority.or(then.priority);
        if self.assign.is_none() {
            self.assign = then.assign.clone();
        }
        self.mark = self.mark.or(then.mark);
    }
}

/// Each rule's verdict, in order, and what they decided together.
pub fn explain(rules: &[Rule], mail: &MailFacts<'_>) -> (Vec<Verdict>, Routing) {
    let mut lazy = Lazy {
        facts: mail,
        language: None,
    };
    let mut routing = Routing::default();
    let mut stopped_by: Option<&str> = None;
    let mut verdicts = Vec::with_capacity(rules.len());
    for rule in rules {
        if let Some(by) = stopped_by {
            verdicts.push(Verdict::NotReached {
                stopped_by: by.to_owned(),
            });
            continue;
        }
        match first_miss(&rule.when, &mut lazy) {
            Some(why) => verdicts.push(Verdict::Miss(why)),
            None => {
                routing.take(rule);
                verdicts.push(Verdict::Hit);
                if rule.stop {
                    stopped_by = Some(&rule.name);
                }
            }
        }
    }
    (verdicts, routing)
}

/// What the rules decide for a new ticket's first mail.
pub fn route(rules: &[Rule], mail: &MailFacts<'_>) -> Routing {
    if rules.is_empty() {
        return Routing::default();
    }
    explain(rules, mail).1
}

/// A routing decision made concrete for one ticket: the owner picked for
/// the platforms it is posted to. What the store records with the ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// The matching rules, in order (for the audit log).
    pub rules: Vec<String>,
    /// Rooms or channels replacing the mailbox's, per platform.
    pub rooms: BTreeMap<Platform, String>,
    pub tags: BTreeSet<Tag>,
    pub priority: Priority,
    /// The owner, and the config name it came from (`alice`, `group billing`).
    pub owner: Option<(Agent, String)>,
    /// Every id of the owner (to mention them on each platform).
    pub owner_ids: Vec<Agent>,
    /// A pool to pick the owner from when the ticket is stored (a rule's
    /// group, or the mailbox's `[mailbox.assign]`); `owner` is then `None`.
    pub auto: Option<AutoAssign>,
    pub mark: Option<Mark>,
}

impl Routing {
    /// The route for a ticket posted to `platforms`.
    pub fn resolve(self, platforms: &[Platform]) -> Route {
        let (mut owner, mut owner_ids, mut auto) = (None, Vec::new(), None);
        match &self.assign {
            Some(Assignee::Person(p)) => {
                owner = p.agent_for(platforms).map(|a| (a.clone(), p.name.clone()));
                owner_ids = p.agents();
            }
            Some(Assignee::Group(pool)) => auto = Some(pool.auto_for(platforms)),
            None => {}
        }
        Route {
            rules: self.rules,
            rooms: self.rooms,
            tags: self.tags,
            priority: self.priority.unwrap_or_default(),
            owner,
            owner_ids,
            auto,
            mark: self.mark,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::assign::Strategy;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }
    fn tag(s: &str) -> Tag {
        Tag::parse(s).unwrap()
    }
    fn person(name: &str, matrix: Option<&str>, slack: Option<&str>) -> Person {
        Person {
            name: name.into(),
            matrix: matrix.map(|a| Agent::parse(a).unwrap()),
            slack: slack.map(|a| Agent::parse(a).unwrap()),
        }
    }
    fn rule(name: &str, when: Conditions, then: Actions, stop: bool) -> Rule {
        Rule {
            name: name.into(),
            when,
            then,
            stop,
        }
    }
    fn tags(t: &[&str]) -> Actions {
        Actions {
            tags: t.iter().map(|t| tag(t)).collect(),
            ..Actions::default()
        }
    }

    struct Mail {
        mailbox: MailboxName,
        shared: EmailAddress,
        from: EmailAddress,
        to: Vec<EmailAddress>,
        subject: String,
        body: String,
        attachment: bool,
    }

    impl Mail {
        fn new() -> Mail {
            Mail {
                mailbox: MailboxName::parse("support").unwrap(),
                shared: addr("support@example.com"),
                from: addr("carol@customer.example"),
                to: vec![addr("support@example.com")],
                subject: "Hello".into(),
                body: "Hi there".into(),
                attachment: false,
            }
        }
        fn facts(&self) -> MailFacts<'_> {
            MailFacts {
                mailbox: &self.mailbox,
                shared: &self.shared,
                from: &self.from,
                recipients: self.to.iter().collect(),
                subject: &self.subject,
                body: &self.body,
                has_attachment: self.attachment,
            }
        }
    }

    fn verdicts(rules: &[Rule], mail: &Mail) -> Vec<Verdict> {
        explain(rules, &mail.facts()).0
    }

    #[test]
    fn each_condition_matches_and_misses() {
        let mut mail = Mail::new();
        mail.to = vec![addr("support+billing@example.com"), addr("ops@example.com")];
        mail.from = addr("ceo@mail.bigcorp.example");
        mail.subject = "Invoice #42 overdue".into();
        mail.body = "Please find the invoice attached.".into();
        mail.attachment = true;
        let cases: Vec<(Conditions, bool)> = vec![
            (
                Conditions {
                    mailboxes: vec![MailboxName::parse("support").unwrap()],
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    mailboxes: vec![MailboxName::parse("sales").unwrap()],
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    to: vec![addr("support+billing@example.com")],
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    to: vec![addr("ops@example.com")],
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    to: vec![addr("support@example.com")],
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    to_tags: vec!["billing".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    to_tags: vec!["sales".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    from: vec![addr("ceo@mail.bigcorp.example")],
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    from: vec![addr("cfo@mail.bigcorp.example")],
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    from_domains: vec!["bigcorp.example".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    from_domains: vec!["mail.bigcorp.example".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    from_domains: vec!["corp.example".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    subject: Some(Pattern::parse("(?i)invoice").unwrap()),
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    subject: Some(Pattern::parse("^Refund").unwrap()),
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    body: Some(Pattern::parse("attached").unwrap()),
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    body: Some(Pattern::parse("unsubscribe").unwrap()),
                    ..Default::default()
                },
                false,
            ),
            (
                Conditions {
                    has_attachment: Some(true),
                    ..Default::default()
                },
                true,
            ),
            (
                Conditions {
                    has_attachment: Some(false),
                    ..Default::default()
                },
                false,
            ),
        ];
        for (i, (when, hit)) in cases.into_iter().enumerate() {
            let r = [rule("r", when.clone(), tags(&["x"]), false)];
            let v = verdicts(&r, &mail);
            assert_eq!(v[0] == Verdict::Hit, hit, "case {i}: {when:?} → {v:?}");
        }
    }

    #[test]
    fn every_condition_of_a_rule_must_hold() {
        let mail = Mail::new();
        let when = Conditions {
            from_domains: vec!["customer.example".into()],
            subject: Some(Pattern::parse("refund").unwrap()),
            ..Default::default()
        };
        let v = verdicts(&[rule("r", when, tags(&["x"]), false)], &mail);
        assert_eq!(v, [Verdict::Miss("subject does not match /refund/".into())]);
    }

    #[test]
    fn language_is_detected_once_and_only_when_sure() {
        let mut mail = Mail::new();
        mail.subject = "Frage zu meiner Rechnung".into();
        mail.body = "Guten Tag, ich habe eine Frage zu meiner letzten Rechnung. \
                     Der Betrag ist höher als vereinbart und ich bitte um eine Erklärung."
            .into();
        let de = Conditions {
            languages: vec![Language::parse("deu").unwrap()],
            ..Default::default()
        };
        let fr = Conditions {
            languages: vec![Language::parse("fra").unwrap()],
            ..Default::default()
        };
        let rules = [
            rule("fr", fr.clone(), tags(&["fr"]), false),
            rule("de", de.clone(), tags(&["de"]), false),
        ];
        let v = verdicts(&rules, &mail);
        assert_eq!(v[0], Verdict::Miss("language is deu".into()));
        assert_eq!(v[1], Verdict::Hit);
        // Two words are not enough to be sure of anything.
        let short = Mail::new();
        let v = verdicts(&[rule("de", de, tags(&["de"]), false)], &short);
        assert!(
            matches!(&v[0], Verdict::Miss(w) if w.contains("not recognised") || w.starts_with("language is")),
            "{v:?}"
        );
        assert!(Language::parse("xx").is_err());
        assert_eq!(Language::parse(" DEU ").unwrap().code(), "deu");
    }

    #[test]
    fn stop_ends_the_walk_and_later_rules_are_not_reached() {
        let mail = Mail::new();
        let any = Conditions {
            mailboxes: vec![MailboxName::parse("support").unwrap()],
            ..Default::default()
        };
        let rules = [
            rule("first", any.clone(), tags(&["a"]), false),
            rule("second", any.clone(), tags(&["b"]), true),
            rule("third", any, tags(&["c"]), false),
        ];
        let (v, routing) = explain(&rules, &mail.facts());
        assert_eq!(
            v,
            [
                Verdict::Hit,
                Verdict::Hit,
                Verdict::NotReached {
                    stopped_by: "second".into()
                }
            ]
        );
        assert_eq!(routing.rules, ["first", "second"]);
        assert_eq!(routing.tags, [tag("a"), tag("b")].into());
    }

    #[test]
    fn tags_add_up_and_the_first_rule_giving_a_single_value_wins() {
        let mail = Mail::new();
        let any = || Conditions {
            from_domains: vec!["customer.example".into()],
            ..Default::default()
        };
        let alice = person("alice", Some("@alice:example.com"), None);
        let bob = person("bob", Some("@bob:example.com"), None);
        let first = Actions {
            tags: vec![tag("vip")],
            priority: Some(Priority::High),
            rooms: [(Platform::Matrix, "!vip:example.com".to_owned())].into(),
            assign: Some(Assignee::Person(alice.clone())),
            mark: None,
        };
        let second = Actions {
            tags: vec![tag("billing")],
            priority: Some(Priority::Low),
            rooms: [
                (Platform::Matrix, "!other:example.com".to_owned()),
                (Platform::Slack, "C0BILLING".to_owned()),
            ]
            .into(),
            assign: Some(Assignee::Person(bob)),
            mark: None,
        };
        let rules = [
            rule("vip", any(), first, false),
            rule("billing", any(), second, false),
        ];
        let routing = route(&rules, &mail.facts());
        assert_eq!(routing.tags, [tag("billing"), tag("vip")].into());
        assert_eq!(routing.priority, Some(Priority::High));
        assert_eq!(routing.rooms[&Platform::Matrix], "!vip:example.com");
        assert_eq!(routing.rooms[&Platform::Slack], "C0BILLING");
        assert_eq!(routing.assign, Some(Assignee::Person(alice)));
        let route = routing.resolve(&[Platform::Matrix]);
        assert_eq!(
            route.owner,
            Some((Agent::parse("@alice:example.com").unwrap(), "alice".into()))
        );
    }

    #[test]
    fn no_rule_no_route() {
        let mail = Mail::new();
        let routing = route(&[], &mail.facts());
        assert_eq!(routing, Routing::default());
        let route = routing.resolve(&[Platform::Matrix]);
        assert_eq!(route.priority, Priority::Normal);
        assert_eq!(route.owner, None);
        assert_eq!(route.mark, None);
    }

    #[test]
    fn a_person_is_assigned_under_the_id_of_the_platform_the_ticket_goes_to() {
        let both = person("alice", Some("@alice:example.com"), Some("U0ALICE"));
        let matrix = Agent::parse("@alice:example.com").unwrap();
        let slack = Agent::parse("U0ALICE").unwrap();
        assert_eq!(
            both.agent_for(&[Platform::Matrix, Platform::Slack]),
            Some(&matrix)
        );
        assert_eq!(both.agent_for(&[Platform::Slack]), Some(&slack));
        assert_eq!(both.agent_for(&[]), Some(&matrix));
        let slack_only = person("bob", None, Some("U0BOB"));
        assert_eq!(
            slack_only.agent_for(&[Platform::Matrix]),
            Some(&Agent::parse("U0BOB").unwrap())
        );
        let group = Assignee::Group(Pool {
            name: "group billing".into(),
            strategy: Strategy::LeastLoaded,
            cap: Some(3),
            members: vec![slack_only.clone(), both],
        });
        assert_eq!(group.name(), "billing");
        let routing = Routing {
            assign: Some(group),
            ..Routing::default()
        };
        // A group's member is picked by the store; each under the id of
        // the ticket's platform.
        let route = routing.resolve(&[Platform::Slack]);
        assert_eq!(route.owner, None);
        let auto = route.auto.unwrap();
        assert_eq!((auto.pool.as_str(), auto.cap), ("group billing", Some(3)));
        let ids: Vec<&str> = auto.candidates.iter().map(|c| c.agent.as_str()).collect();
        assert_eq!(ids, ["U0BOB", "U0ALICE"]);
        assert_eq!(auto.candidates[1].agents.len(), 2);
    }

    #[test]
    fn mark_is_kept_with_the_rule_names() {
        let mail = Mail::new();
        let when = Conditions {
            subject: Some(Pattern::parse("(?i)hello").unwrap()),
            ..Default::default()
        };
        let then = Actions {
            mark: Some(Mark::Spam),
            ..Actions::default()
        };
        let route = route(&[rule("spam", when, then, true)], &mail.facts()).resolve(&[]);
        assert_eq!(route.mark, Some(Mark::Spam));
        assert_eq!(route.rules, ["spam"]);
    }

    #[test]
    fn patterns_are_bounded_and_bad_ones_say_why() {
        let e = Pattern::parse("(unclosed").unwrap_err();
        assert!(e.starts_with("bad regex:") && !e.contains('\n'), "{e}");
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse(&"a".repeat(MAX_PATTERN_CHARS + 1)).is_err());
        // Small to write, huge compiled: refused by the size limit.
        let e = Pattern::parse(r"\w{1000}\w{1000}\w{1000}").unwrap_err();
        assert!(e.contains("size limit") || e.contains("exceeds"), "{e}");
    }

    #[test]
    fn the_body_is_scanned_only_so_far() {
        let mut mail = Mail::new();
        mail.body = format!("{}needle", "é".repeat(MAX_BODY_SCANNED));
        let when = Conditions {
            body: Some(Pattern::parse("needle").unwrap()),
            ..Default::default()
        };
        let v = verdicts(&[rule("r", when, tags(&["x"]), false)], &mail);
        assert!(matches!(v[0], Verdict::Miss(_)));
        assert_eq!(cut("aé", 2), "a");
    }

    #[test]
    fn priorities_and_descriptions() {
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert!(Priority::Urgent > Priority::High && Priority::Low < Priority::Normal);
        let then = Actions {
            rooms: [(Platform::Slack, "C0X".to_owned())].into(),
            tags: vec![tag("a"), tag("b")],
            priority: Some(Priority::Urgent),
            assign: Some(Assignee::Person(person("alice", Some("@a:x"), None))),
            mark: None,
        };
        assert_eq!(
            then.describe(),
            "post to slack C0X; tag a, b; priority urgent; assign to alice"
        );
    }
}
