//! `[[digest]]`: a mailbox's daily message to its rooms (unclaimed tickets,
//! the oldest open one, snoozed count, each teammate's load), on the
//! mailbox's clock. Read here; scheduled by `bridge::digest`; written by
//! `domain::digest`.

use std::collections::BTreeSet;

use jiff::civil::{Date, Time};
use serde::Deserialize;

use super::Settings;
use super::load::Check;
use crate::domain::digest::{Schedule, business_days, weekday};
use crate::domain::ids::MailboxName;
use crate::domain::settings::{int, lenient, text};

/// One `[[digest]]` as written; [`DigestSettings::schedule`] is set by the
/// load once the section is right.
#[derive(Debug, Clone, Deserialize)]
pub struct DigestSettings {
    /// The mailbox whose tickets it sums up; posted to each of its rooms.
    #[serde(deserialize_with = "mailbox")]
    pub mailbox: Option<MailboxName>,
    /// The time of day, `"HH:MM"`, in the mailbox's `time_zone`.
    #[serde(deserialize_with = "time_of_day")]
    pub at: Option<Time>,
    /// `"business"` (Monday to Friday, the default), `"daily"`, or a list
    /// of day names (`["mon", "wed"]`).
    #[serde(default, deserialize_with = "lenient")]
    pub days: Days,
    /// Dates without a digest, `"YYYY-MM-DD"` (holidays).
    #[serde(default, deserialize_with = "lenient")]
    pub skip: Vec<Date>,
    /// How many of the oldest unclaimed tickets it lists.
    #[serde(default = "five", deserialize_with = "int::<1, 50, _, _>")]
    pub top: usize,
    #[serde(skip)]
    pub schedule: Option<Schedule>,
}

fn five() -> usize {
    5
}

/// `days = "business"` or `days = ["mon", "tue"]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Days {
    Word(String),
    List(Vec<String>),
}

impl Default for Days {
    fn default() -> Self {
        Days::Word("business".to_owned())
    }
}

impl Days {
    /// Monday-first offsets, or what is wrong.
    fn offsets(&self) -> Result<BTreeSet<i8>, String> {
        let days = match self {
            Days::Word(w) if w.eq_ignore_ascii_case("business") => return Ok(business_days()),
            Days::Word(w) if w.eq_ignore_ascii_case("daily") => return Ok((0..7).collect()),
            Days::Word(w) => {
                return Err(format!(
                    "expected \"business\", \"daily\" or a list of days such as [\"mon\", \"fri\"], got {w:?}"
                ));
            }
            Days::List(l) => l,
        };
        let mut out = BTreeSet::new();
        for d in days {
            let w = weekday(d).ok_or_else(|| {
                format!("{d:?} is not a day: use mon, tue, wed, thu, fri, sat or sun")
            })?;
            out.insert(w.to_monday_zero_offset());
        }
        if out.is_empty() {
            return Err("must list at least one day".to_owned());
        }
        Ok(out)
    }
}

fn mailbox<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<MailboxName>, D::Error> {
    text(d, |s: String| {
        MailboxName::parse(&s)
            .map(Some)
            .map_err(|e| e.reason.to_owned())
    })
}

fn time_of_day<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Time>, D::Error> {
    text(d, |s: String| {
        let t = s.trim();
        let ok = t.len() == 5 && t.as_bytes()[2] == b':';
        ok.then(|| t.parse::<Time>().ok())
            .flatten()
            .map(Some)
            .ok_or_else(|| {
                format!("expected a time of day as \"HH:MM\" such as \"09:00\", got {s:?}")
            })
    })
}

/// Checks each digest against the mailboxes and builds its schedule in the
/// mailbox's zone.
pub(super) fn settle(s: &mut Settings, c: &mut Check) {
    let mailboxes = s.mailboxes.clone();
    let mut seen = BTreeSet::new();
    for (i, d) in s.digests.iter_mut().enumerate() {
        let at = |key: &str| format!("digest[{i}].{key}");
        let days = match d.days.offsets() {
            Ok(days) => Some(days),
            Err(why) => {
                c.problem(at("days"), why);
                None
            }
        };
        let Some(name) = &d.mailbox else {
            if c.clean(&at("mailbox")) {
                c.problem(at("mailbox"), "missing: the mailbox the digest is about");
            }
            continue;
        };
        let Some(m) = mailboxes.iter().find(|m| &m.name == name) else {
            c.problem(
                at("mailbox"),
                format!("no [[mailbox]] is named {:?}", name.as_str()),
            );
            continue;
        };
        if !seen.insert(name.clone()) {
            c.problem(
                at("mailbox"),
                format!(
                    "a second digest for {:?}: give one [[digest]] a mailbox",
                    name.as_str()
                ),
            );
        }
        if m.chat.matrix_room.is_none() && m.chat.slack_channel.is_none() {
            c.problem(
                at("mailbox"),
                format!(
                    "mailbox {:?} has no room to post the digest in",
                    name.as_str()
                ),
            );
        }
        let Some(time) = d.at else {
            if c.clean(&at("at")) {
                c.problem(at("at"), "missing: the time of day, e.g. \"09:00\"");
            }
            continue;
        };
        if let Some(days) = days {
            d.schedule = Some(Schedule {
                at: time,
                days,
                skip: d.skip.iter().copied().collect(),
                zone: m.time_zone.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::super::tests::{GOOD, assert_problems, env};

    #[test]
    fn a_digest_is_scheduled_in_its_mailbox_zone() {
        let text = format!(
            "{}\n[[digest]]\nmailbox = \"support\"\nat = \"09:30\"\nskip = [\"2026-12-25\"]\n",
            GOOD.replace(
                "display_name = \"Example Support\"",
                "display_name = \"Example Support\"\ntime_zone = \"Europe/Berlin\""
            )
        );
        let s = Settings::parse(&text, &env).unwrap();
        let sched = s.digests[0].schedule.as_ref().unwrap();
        assert_eq!(sched.zone.name(), "Europe/Berlin");
        assert_eq!(sched.days.len(), 5);
        assert_eq!(sched.skip.len(), 1);
        assert_eq!(s.digests[0].top, 5);
    }

    #[test]
    fn bad_digests_name_each_key() {
        let text = format!(
            "{GOOD}\n[[digest]]\nmailbox = \"nope\"\nat = \"9 o'clock\"\ndays = [\"mon\", \"funday\"]\n\
             [[digest]]\nat = \"25:00\"\ndays = \"sometimes\"\ntop = 0\n\
             [[mailbox]]\nname = \"x\"\n"
        );
        assert_problems(
            &text,
            &env,
            &[
                "digest[0].mailbox: no [[mailbox]] is named \"nope\"",
                "digest[0].at: expected a time of day as \"HH:MM\"",
                "digest[0].days: \"funday\" is not a day",
                "digest[1].mailbox: missing",
                "digest[1].at: expected a time of day",
                "digest[1].days: expected \"business\", \"daily\"",
                "digest[1].top: expected 1-50",
            ],
        );
    }

    #[test]
    fn reminders_are_read_per_mailbox() {
        let text = GOOD.replace(
            "  [mailbox.chat]",
            "  [mailbox.reminders]\n  unclaimed_after = \"30m\"\n  repeat_every = \"2h\"\n  [mailbox.chat]",
        );
        let s = Settings::parse(&text, &env).unwrap();
        let r = &s.mailboxes[0].reminders;
        assert_eq!(
            r.unclaimed_after,
            Some(std::time::Duration::from_secs(1800))
        );
        assert_eq!(r.rounds(), 3);
        let bad = GOOD.replace(
            "  [mailbox.chat]",
            "  [mailbox.reminders]\n  unclaimed_after = \"later\"\n  nudge_in = \"everywhere\"\n  [mailbox.chat]",
        );
        assert_problems(
            &bad,
            &env,
            &[
                "mailbox[0].reminders.unclaimed_after: expected a duration",
                "mailbox[0].reminders.nudge_in: expected",
            ],
        );
    }
}
