//! `[[sla]]` and each mailbox's `[mailbox.business_hours]`: the response
//! targets and the calendar they are counted in, read as written, checked
//! as a whole (known mailboxes, people and groups, a target given, hours
//! that make a week) and built into the domain's [`Policies`] and
//! [`Calendar`]s. Every problem names the policy and the key:
//! `sla[1].mention: sla "vip": unknown person or group "bob"`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::Check;
use super::Settings;
use crate::domain::calendar::Calendar;
use crate::domain::ids::{Agent, MailboxName, Tag};
use crate::domain::routing::{Person, Priority};
use crate::domain::settings::{int, lenient, read, want};
use crate::domain::sla::{Mention, Policies, Policy, parse_target};

/// One `[[sla]]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlaSettings {
    #[serde(default, deserialize_with = "lenient")]
    pub name: String,
    #[serde(default, deserialize_with = "strings")]
    pub mailbox: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strings")]
    pub priority: Option<Vec<String>>,
    #[serde(default, deserialize_with = "strings")]
    pub tag: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient")]
    pub first_response: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub next_response: Option<String>,
    /// Percent of the target at which the thread is nudged (1-99).
    #[serde(default, deserialize_with = "percent")]
    pub nudge_at: Option<u8>,
    /// `"@room"`, or names from `[people]` and `[groups]`.
    #[serde(default, deserialize_with = "strings")]
    pub mention: Option<Vec<String>>,
}

fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    int::<1, 99, u8, D>(d).map(|p| (p > 0).then_some(p))
}

/// A string or a list of strings, not empty.
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

/// Builds every mailbox's calendar and the SLA policies (the policies only
/// when every one is right: a half-built set would time tickets
/// differently from what the file says).
pub(super) fn settle(s: &mut Settings, c: &mut Check) {
    let mut calendars = BTreeMap::new();
    for (i, m) in s.mailboxes.iter().enumerate() {
        let calendar = match &m.business_hours {
            None => Calendar::always(m.time_zone.clone()),
            Some(hours) => match hours.calendar(m.time_zone.clone()) {
                Ok(c) => c,
                Err(e) => {
                    let at = format!("mailbox[{i}].business_hours");
                    if c.clean(&at) {
                        c.problem(at, e);
                    }
                    continue;
                }
            },
        };
        calendars.insert(m.name.clone(), calendar);
    }
    s.calendars = calendars;
    let mut policies = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in s.sla_settings.iter().enumerate() {
        let at = format!("sla[{i}]");
        let name = p.name.trim();
        if name.is_empty() {
            if c.clean(&format!("{at}.name")) {
                c.problem(format!("{at}.name"), "missing: every [[sla]] needs a name");
            }
        } else if !names.insert(name) {
            c.problem(format!("{at}.name"), format!("duplicate sla name {name:?}"));
        }
        let mut check = PolicyCheck { c, at: &at, name };
        if let Some(policy) = check.build(p, s) {
            policies.push(policy);
        }
    }
    if policies.len() == s.sla_settings.len() && c.clean("sla") {
        s.sla = Policies::new(policies);
    }
}

struct PolicyCheck<'a> {
    c: &'a mut Check,
    at: &'a str,
    name: &'a str,
}

impl PolicyCheck<'_> {
    fn problem(&mut self, key: &str, message: impl std::fmt::Display) {
        let path = match key {
            "" => self.at.to_owned(),
            k => format!("{}.{k}", self.at),
        };
        self.c
            .problem(path, format!("sla {:?}: {message}", self.name));
    }

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

    fn build(&mut self, p: &SlaSettings, s: &Settings) -> Option<Policy> {
        let before = self.c.clean(self.at);
        let known: Vec<&MailboxName> = s.mailboxes.iter().map(|m| &m.name).collect();
        let mailboxes = self.each("mailbox", &p.mailbox, |m| {
            let name = MailboxName::parse(m).map_err(|e| e.to_string())?;
            match known.contains(&&name) {
                true => Ok(name),
                false => Err(format!(
                    "unknown mailbox {m:?}: no [[mailbox]] has that name"
                )),
            }
        });
        let priorities = self.each("priority", &p.priority, |v| {
            Priority::parse(&v.to_lowercase()).ok_or_else(|| {
                format!("expected \"low\", \"normal\", \"high\" or \"urgent\", got {v:?}")
            })
        });
        let tags = self.each("tag", &p.tag, |t| Tag::parse(t).map_err(|e| e.to_string()));
        let mut target = |key: &str, v: &Option<String>| {
            v.as_deref()
                .and_then(|v| parse_target(v).map_err(|e| self.problem(key, e)).ok())
        };
        let first_response = target("first_response", &p.first_response);
        let next_response = target("next_response", &p.next_response);
        if p.first_response.is_none() && p.next_response.is_none() {
            self.problem(
                "",
                "no target: give first_response, next_response or both (\"4h\", \"1d\")",
            );
        }
        let mut mention = Vec::new();
        for m in p.mention.iter().flatten() {
            match m.as_str() {
                "@room" | "@channel" | "@here" => mention.push(Mention::Room),
                name => match (s.people.get(name), s.groups.get(name)) {
                    (Some(person), _) => mention.push(Mention::Person(Person {
                        name: name.to_owned(),
                        matrix: person.matrix.as_deref().and_then(|a| Agent::parse(a).ok()),
                        slack: person.slack.as_deref().and_then(|a| Agent::parse(a).ok()),
                    })),
                    (None, Some(group)) => {
                        for member in &group.members {
                            // An unknown member is named under [groups].
                            if let Some(person) = s.people.get(member) {
                                mention.push(Mention::Person(Person {
                                    name: member.clone(),
                                    matrix: person.matrix.as_deref().and_then(|a| Agent::parse(a).ok()),
                                    slack: person.slack.as_deref().and_then(|a| Agent::parse(a).ok()),
                                }));
                            }
                        }
                    }
                    (None, None) => self.problem(
                        "mention",
                        format!("unknown person or group {name:?}: not in [people] or [groups] (or \"@room\" for the whole room)"),
                    ),
                },
            }
        }
        mention.dedup();
        if !before || !self.c.clean(self.at) {
            return None;
        }
        Some(Policy {
            name: self.name.to_owned(),
            mailboxes,
            priorities,
            tags,
            first_response,
            next_response,
            nudge_at: p.nudge_at,
            mention,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::super::tests::{GOOD, assert_problems, env};
    use crate::domain::ids::MailboxName;
    use crate::domain::routing::Priority;

    const SLA: &str = r#"
[people]
alice = { matrix = "@alice:example.com", slack = "U0ALICE" }

[groups]
oncall = ["alice"]

[[sla]]
name = "default"
first_response = "4h"
next_response = "1d"
nudge_at = 75
mention = "@room"

[[sla]]
name = "urgent"
mailbox = "support"
priority = ["urgent", "high"]
first_response = "1h"
mention = ["oncall"]
"#;

    fn hours() -> String {
        GOOD.replace(
            "display_name = \"Example Support\"",
            "display_name = \"Example Support\"\ntime_zone = \"Europe/Berlin\"",
        )
        .replace(
            "  [mailbox.chat]",
            "  [mailbox.business_hours]\n  weekdays = \"09:00-12:00,13:00-17:30\"\n  sat = \"10:00-14:00\"\n  holidays = [\"12-25\", \"2026-12-24\"]\n  [mailbox.chat]",
        )
    }

    #[test]
    fn policies_and_business_hours_are_built() {
        let s = Settings::parse(&format!("{}{SLA}", hours()), &env).unwrap();
        let support = MailboxName::parse("support").unwrap();
        let urgent = s.sla.for_ticket(&support, Priority::Urgent, []).unwrap();
        assert_eq!(urgent.name, "urgent", "the more specific first");
        assert_eq!(urgent.next_response, None);
        assert_eq!(urgent.mention.len(), 1);
        let normal = s.sla.for_ticket(&support, Priority::Normal, []).unwrap();
        assert_eq!(normal.name, "default");
        assert_eq!(normal.nudge_at, Some(75));
        let cal = &s.calendars[&support];
        assert!(!cal.is_always_open());
        let at = |t: &str| cal.is_open(t.parse().unwrap());
        assert!(at("2026-06-06T09:00:00Z"), "Saturday 11:00 CEST");
        assert!(!at("2026-06-07T09:00:00Z"), "Sunday");
        assert!(!at("2026-06-08T10:30:00Z"), "Monday lunch");
        assert!(!at("2026-12-25T10:00:00Z"), "a holiday");
        let plain = Settings::parse(GOOD, &env).unwrap();
        assert!(plain.calendars[&support].is_always_open());
        assert!(plain.sla.is_empty());
    }

    #[test]
    fn the_worked_example_parses_and_does_what_it_says() {
        let any = |_: &str| Some("from-the-environment".to_owned());
        let text = include_str!("../../bot-config/workflow.example.toml");
        let s = Settings::parse(text, &any).unwrap_or_else(|p| panic!("{p:#?}"));
        let support = MailboxName::parse("support").unwrap();
        let vip = crate::domain::ids::Tag::parse("vip").unwrap();
        let name = |p: Priority, tags: &[&crate::domain::ids::Tag]| {
            s.sla
                .for_ticket(&support, p, tags.iter().copied())
                .map(|p| p.name.clone())
        };
        assert_eq!(name(Priority::Urgent, &[&vip]).unwrap(), "urgent support");
        assert_eq!(name(Priority::Normal, &[&vip]).unwrap(), "vip");
        assert_eq!(name(Priority::Normal, &[]).unwrap(), "support");
        // Friday 2026-06-05 14:30 CEST + 4h: 30m on Friday, then Monday
        // 09:00-12:00 and 13:00-13:30 → Monday 13:30 CEST.
        let cal = &s.calendars[&support];
        let due = cal.add(
            "2026-06-05T12:30:00Z".parse().unwrap(),
            jiff::SignedDuration::from_hours(4),
        );
        assert_eq!(due, Some("2026-06-08T11:30:00Z".parse().unwrap()));
    }

    #[test]
    fn a_bad_rule_or_impossible_hours_are_named() {
        let bad = hours()
            .replace("09:00-12:00,13:00-17:30", "18:00-09:00")
            .replace("10:00-14:00", "25:00-26:00")
            .replace("\"12-25\"", "\"12-32\"")
            .replace("  holidays", "  fryday = \"09:00-17:00\"\n  holidays")
            + r#"
[people]
alice = { matrix = "@alice:example.com" }

[[sla]]
name = "broken"
mailbox = "nowhere"
priority = "asap"
first_response = "soon"
nudge_at = 120
mention = ["bob"]
colour = "red"

[[sla]]
name = "empty"
"#;
        assert_problems(
            &bad,
            &env,
            &[
                "mailbox[0].business_hours.weekdays: 18:00-09:00 must end after it starts",
                "mailbox[0].business_hours.sat: expected a time HH:MM",
                "mailbox[0].business_hours.holidays[0]: expected a date",
                "mailbox[0].business_hours.fryday: unknown key",
                "sla[0].mailbox: sla \"broken\": unknown mailbox \"nowhere\"",
                "sla[0].priority: sla \"broken\": expected \"low\"",
                "sla[0].first_response: sla \"broken\": expected a duration",
                "sla[0].nudge_at: expected 1-99",
                "sla[0].mention: sla \"broken\": unknown person or group \"bob\"",
                "sla[0].colour: unknown key",
                "sla[1]: sla \"empty\": no target",
            ],
        );
        let overlap = hours().replace("09:00-12:00,13:00-17:30", "09:00-12:00,11:00-17:30");
        assert_problems(
            &overlap,
            &env,
            &[
                "mailbox[0].business_hours.weekdays: 09:00-12:00 overlaps 11:00-13:00"
                    .replace("11:00-13:00", "11:00-17:30")
                    .as_str(),
            ],
        );
        let closed = GOOD.replace(
            "  [mailbox.chat]",
            "  [mailbox.business_hours]\n  holidays = [\"12-25\"]\n  [mailbox.chat]",
        );
        assert_problems(&closed, &env, &["mailbox[0].business_hours: no open hours"]);
    }
}
