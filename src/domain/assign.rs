//! Auto-assignment: which teammate of a pool (a group, or a mailbox's
//! list) a new ticket goes to, by round robin or by least load, skipping
//! people who are away, at their cap, or whom their chat platform reports
//! away or in do-not-disturb.
//!
//! Pure: the store reads the pool's standing (the round-robin cursor, each
//! member's load, who said `!away`) inside the ingest transaction, hands it
//! to [`pick`], and writes what it decided in the same transaction, so two
//! mails arriving at once never take the same turn. The bridge adds what
//! the platforms report (presence, do-not-disturb) before the transaction
//! begins, as [`AutoAssign::unavailable`].
//!
//! Also here: `!away [until …]` / `!back` (and Slack's `/mailroom away|back`),
//! read by [`parse_away`].

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp, civil};

use super::chat::Platform;
use super::ids::Agent;
use super::time::Zone;

/// How a pool spreads its tickets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each in turn, in the order the config lists them.
    #[default]
    RoundRobin,
    /// Whoever owns the fewest active tickets (claimed or pending).
    LeastLoaded,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastLoaded => "least_loaded",
        }
    }
    /// For people: "round robin", "least loaded".
    pub fn words(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round robin",
            Strategy::LeastLoaded => "least loaded",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A teammate as the config names them, with their id on each platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub matrix: Option<Agent>,
    pub slack: Option<Agent>,
}

impl Person {
    /// The id a ticket posted to `platforms` is assigned under: the first
    /// of those platforms the person has an id on (a ticket has one owner,
    /// shown on every platform as that id).
    pub fn agent_for(&self, platforms: &[Platform]) -> Option<&Agent> {
        let on = |p: &Platform| match p {
            Platform::Matrix => self.matrix.as_ref(),
            Platform::Slack => self.slack.as_ref(),
        };
        platforms
            .iter()
            .find_map(on)
            .or(self.matrix.as_ref())
            .or(self.slack.as_ref())
    }

    /// Every id the person has.
    pub fn agents(&self) -> Vec<Agent> {
        self.matrix
            .iter()
            .chain(self.slack.iter())
            .cloned()
            .collect()
    }
}

/// A named pool of people new tickets are spread over (a `[groups]`
/// entry, or a mailbox's `[mailbox.assign]`), and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// `group billing`, `mailbox support`: the key of its round-robin cursor.
    pub name: String,
    pub strategy: Strategy,
    pub cap: Option<u32>,
    /// In round-robin order.
    pub members: Vec<Person>,
}

impl Pool {
    /// The pool made concrete for a ticket posted to `platforms`: each
    /// member under the id the ticket would be assigned under.
    pub fn auto_for(&self, platforms: &[Platform]) -> AutoAssign {
        AutoAssign {
            pool: self.name.clone(),
            strategy: self.strategy,
            cap: self.cap,
            candidates: self
                .members
                .iter()
                .filter_map(|p| {
                    Some(Candidate {
                        name: p.name.clone(),
                        agent: p.agent_for(platforms)?.clone(),
                        agents: p.agents(),
                    })
                })
                .collect(),
            unavailable: BTreeMap::new(),
        }
    }

    /// One line for `mailroom rules test` and descriptions.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
        let cap = self.cap.map(|c| format!(", cap {c}")).unwrap_or_default();
        format!(
            "{} ({}: {}{cap})",
            self.name,
            self.strategy.words(),
            names.join(", ")
        )
    }
}

/// `[mailbox.assign]` as written: auto-assignment of the mailbox's new
/// tickets that no rule assigned. Checked by `config::rules`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AssignSettings {
    /// A `[groups]` name: its members, strategy and cap (each of which the
    /// keys below may override).
    #[serde(default, deserialize_with = "super::settings::lenient")]
    pub group: Option<String>,
    /// `[people]` names, in round-robin order (instead of `group`).
    #[serde(default, deserialize_with = "super::settings::lenient")]
    pub to: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::settings::lenient")]
    pub strategy: Option<Strategy>,
    /// Active tickets per person at most; at least 1.
    #[serde(default, deserialize_with = "super::settings::lenient")]
    pub cap: Option<i64>,
}

/// One member of a pool, made concrete for a ticket's platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The name in `[people]`: the key of away marks and of the cursor.
    pub name: String,
    /// The id the ticket is assigned under (see `Person::agent_for`).
    pub agent: Agent,
    /// Every id the person has: a ticket owned under any of them is theirs
    /// (counted for least-loaded and the cap).
    pub agents: Vec<Agent>,
}

/// What the store picks from for one new ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoAssign {
    /// The pool's name, the key of its round-robin cursor: `group billing`,
    /// `mailbox support`.
    pub pool: String,
    pub strategy: Strategy,
    /// At most this many active tickets per person; a member at it is skipped.
    pub cap: Option<u32>,
    /// In the config's order, which is the round-robin order.
    pub candidates: Vec<Candidate>,
    /// People the chat platforms report unavailable, with why
    /// ("away on Slack", "do not disturb on Slack", "offline on Matrix").
    pub unavailable: BTreeMap<String, String>,
}

/// A pool's standing as the store reads it in the ingest transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    /// Who the pool's last ticket went to (the cursor).
    pub last: Option<String>,
    /// Active tickets (claimed or pending) owned, per member name.
    pub load: BTreeMap<String, u32>,
    /// People who said `!away`, with when they are back (`None`: until
    /// they say `!back`), still away at the time of the pick.
    pub away: BTreeMap<String, Option<Timestamp>>,
}

/// What [`pick`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// The ticket goes to this member; `why` is for the audit log and the
    /// thread ("round robin in group billing, after bob; skipped carol (away)").
    To {
        name: String,
        agent: Agent,
        why: String,
    },
    /// Nobody can take it; the ticket stays open. `why` names each member
    /// and what kept them out.
    Nobody { why: String },
}

/// Why a member was passed over.
fn unavailable(a: &AutoAssign, s: &Standing, c: &Candidate) -> Option<String> {
    if let Some(until) = s.away.get(&c.name) {
        return Some(match until {
            Some(t) => format!("away until {}", t.strftime("%Y-%m-%d %H:%M UTC")),
            None => "away".to_owned(),
        });
    }
    if let Some(why) = a.unavailable.get(&c.name) {
        return Some(why.clone());
    }
    let load = s.load.get(&c.name).copied().unwrap_or(0);
    match a.cap {
        Some(cap) if load >= cap => Some(format!("at cap ({load}/{cap})")),
        _ => None,
    }
}

/// Picks the member a new ticket goes to.
///
/// Both strategies walk the members in rotation order: config order,
/// starting after the last one picked (from the top when there is none or
/// they left the pool). Round robin takes the first available; least
/// loaded takes the available one with the fewest active tickets, the
/// earlier in rotation order on a tie, so equal loads still take turns.
/// Names are unique in a pool, so the result is fully determined.
pub fn pick(a: &AutoAssign, s: &Standing) -> Pick {
    let n = a.candidates.len();
    let start = s
        .last
        .as_ref()
        .and_then(|last| a.candidates.iter().position(|c| &c.name == last))
        .map_or(0, |i| i + 1);
    let rotation = (0..n).map(|k| &a.candidates[(start + k) % n]);
    let mut skipped: Vec<String> = Vec::new();
    let mut best: Option<(&Candidate, u32)> = None;
    for c in rotation {
        if let Some(why) = unavailable(a, s, c) {
            skipped.push(format!("{} ({why})", c.name));
            continue;
        }
        let load = s.load.get(&c.name).copied().unwrap_or(0);
        match (a.strategy, best) {
            (Strategy::RoundRobin, None) => {
                best = Some((c, load));
                break;
            }
            (Strategy::LeastLoaded, None) => best = Some((c, load)),
            (Strategy::LeastLoaded, Some((_, b))) if load < b => best = Some((c, load)),
            _ => {}
        }
    }
    let Some((chosen, load)) = best else {
        let why = if a.candidates.is_empty() {
            format!("nobody is free in {}: it has no members", a.pool)
        } else {
            format!("nobody is free in {}: {}", a.pool, skipped.join(", "))
        };
        return Pick::Nobody { why };
    };
    let mut why = format!("{} in {}", a.strategy.words(), a.pool);
    match a.strategy {
        Strategy::RoundRobin => {
            if let Some(last) = &s.last {
                why.push_str(&format!(", after {last}"));
            }
        }
        Strategy::LeastLoaded => {
            let loads: Vec<String> = a
                .candidates
                .iter()
                .map(|c| format!("{} {}", c.name, s.load.get(&c.name).copied().unwrap_or(0)))
                .collect();
            why.push_str(&format!(", {load} active (loads: {})", loads.join(", ")));
        }
    }
    // Round robin stops at the first available one, so its skips are the
    // ones before it; least loaded saw everyone.
    let skipped: Vec<&String> = skipped
        .iter()
        .filter(|s| !s.starts_with(&format!("{} (", chosen.name)))
        .collect();
    if !skipped.is_empty() {
        let list: Vec<&str> = skipped.iter().map(|s| s.as_str()).collect();
        why.push_str(&format!("; skipped {}", list.join(", ")));
    }
    Pick::To {
        name: chosen.name.clone(),
        agent: chosen.agent.clone(),
        why,
    }
}

/// `!away [until …|for …]` or `!back`, as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwayCommand {
    /// Away until this moment, or until `!back` (`None`).
    Away(Option<Timestamp>),
    Back,
}

/// What `!away` accepts after it, for error messages.
pub const AWAY_USAGE: &str = "!away | !away until HH:MM | !away until YYYY-MM-DD [HH:MM] | !away until tomorrow | !away for 2h (m, h or d) | !back";

/// Reads `!away …` / `!back` (or the slash command's `away …` / `back`,
/// `bang` false). `None`: not one of these; `Some(Err)`: one, written
/// wrongly, with a sentence for the teammate. Times are read in `zone`;
/// a time of day already past today means tomorrow.
pub fn parse_away(
    text: &str,
    bang: bool,
    now: Timestamp,
    zone: &Zone,
) -> Option<Result<AwayCommand, String>> {
    let t = text.trim();
    let t = if bang { t.strip_prefix('!')? } else { t };
    let end = t.find(char::is_whitespace).unwrap_or(t.len());
    let (word, rest) = t.split_at(end);
    let rest = rest.trim();
    let p = if bang { "!" } else { "" };
    match word.to_ascii_lowercase().as_str() {
        "back" if rest.is_empty() => Some(Ok(AwayCommand::Back)),
        "back" => Some(Err(format!("{p}back takes nothing after it"))),
        "away" if rest.is_empty() => Some(Ok(AwayCommand::Away(None))),
        "away" => Some(away_until(rest, now, zone).map(|t| AwayCommand::Away(Some(t)))),
        _ => None,
    }
}

fn away_until(rest: &str, now: Timestamp, zone: &Zone) -> Result<Timestamp, String> {
    let usage = || format!("expected {AWAY_USAGE}, got {rest:?}");
    let (how, what) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let what = what.trim();
    let here = zone.at(now);
    let at = match how.to_ascii_lowercase().as_str() {
        "for" => {
            let (n, unit) = what.split_at(
                what.find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(what.len()),
            );
            let n: i64 = n.parse().map_err(|_| usage())?;
            let secs = match unit.trim() {
                "m" | "min" | "minutes" | "minute" => 60,
                "h" | "hours" | "hour" => 3600,
                "d" | "days" | "day" => 86_400,
                _ => return Err(usage()),
            };
            if n <= 0 || n > 366 * 86_400 / secs {
                return Err(format!("{what:?}: give at most a year"));
            }
            return Ok(now + SignedDuration::from_secs(n * secs));
        }
        "until" => {
            if what.eq_ignore_ascii_case("tomorrow") {
                let day = here.date().tomorrow().map_err(|e| e.to_string())?;
                day.to_zoned(zone.tz().clone()).map_err(|e| e.to_string())?
            } else if let Ok(time) = what
                .parse::<civil::Time>()
                .map_err(|_| ())
                .and_then(|t| (what.len() <= 5).then_some(t).ok_or(()))
            {
                let today = here.date().to_datetime(time);
                let mut at = today
                    .to_zoned(zone.tz().clone())
                    .map_err(|e| e.to_string())?;
                if at.timestamp() <= now {
                    at = at.tomorrow().map_err(|e| e.to_string())?;
                }
                at
            } else if what.contains([' ', 'T'])
                && let Ok(dt) = what.replacen(' ', "T", 1).parse::<civil::DateTime>()
            {
                dt.to_zoned(zone.tz().clone()).map_err(|e| e.to_string())?
            } else if let Ok(date) = what.parse::<civil::Date>() {
                date.to_zoned(zone.tz().clone())
                    .map_err(|e| e.to_string())?
            } else {
                return Err(usage());
            }
        }
        _ => return Err(usage()),
    };
    let at = at.timestamp();
    if at <= now {
        return Err(format!("{what:?} is already past"));
    }
    if at > now + SignedDuration::from_hours(366 * 24) {
        return Err(format!("{what:?}: give a time within a year"));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(strategy: Strategy, cap: Option<u32>, names: &[&str]) -> AutoAssign {
        AutoAssign {
            pool: "group billing".into(),
            strategy,
            cap,
            candidates: names
                .iter()
                .map(|n| Candidate {
                    name: (*n).into(),
                    agent: Agent::parse(&format!("@{n}:x")).unwrap(),
                    agents: vec![Agent::parse(&format!("@{n}:x")).unwrap()],
                })
                .collect(),
            unavailable: BTreeMap::new(),
        }
    }
    fn who(p: &Pick) -> &str {
        match p {
            Pick::To { name, .. } => name,
            Pick::Nobody { .. } => "nobody",
        }
    }
    fn standing(last: Option<&str>, load: &[(&str, u32)]) -> Standing {
        Standing {
            last: last.map(Into::into),
            load: load.iter().map(|(n, l)| ((*n).to_owned(), *l)).collect(),
            away: BTreeMap::new(),
        }
    }

    #[test]
    fn round_robin_takes_turns_and_wraps_around() {
        let a = pool(Strategy::RoundRobin, None, &["alice", "bob", "carol"]);
        let mut s = Standing::default();
        let mut got = Vec::new();
        for _ in 0..7 {
            let p = pick(&a, &s);
            got.push(who(&p).to_owned());
            s.last = Some(who(&p).to_owned());
        }
        assert_eq!(
            got,
            ["alice", "bob", "carol", "alice", "bob", "carol", "alice"]
        );
        // A cursor on someone who left the pool starts from the top.
        let p = pick(&a, &standing(Some("dave"), &[]));
        assert_eq!(who(&p), "alice");
        assert!(matches!(&p, Pick::To { agent, .. } if agent.as_str() == "@alice:x"));
    }

    #[test]
    fn away_and_capped_people_are_skipped_and_named() {
        let a = pool(Strategy::RoundRobin, Some(2), &["alice", "bob", "carol"]);
        let mut s = standing(Some("alice"), &[("bob", 2), ("carol", 1)]);
        let p = pick(&a, &s);
        assert_eq!(who(&p), "carol");
        let Pick::To { why, .. } = &p else { panic!() };
        assert_eq!(
            why,
            "round robin in group billing, after alice; skipped bob (at cap (2/2))"
        );
        s.away.insert("carol".into(), None);
        assert_eq!(who(&pick(&a, &s)), "alice");
        let mut a2 = a.clone();
        a2.unavailable
            .insert("alice".into(), "do not disturb on Slack".into());
        let p = pick(&a2, &s);
        assert_eq!(
            p,
            Pick::Nobody {
                why: "nobody is free in group billing: bob (at cap (2/2)), carol (away), alice (do not disturb on Slack)".into()
            }
        );
        let until = "2026-12-06T14:00:00Z".parse().unwrap();
        s.away.insert("carol".into(), Some(until));
        let Pick::Nobody { why } = pick(&a2, &s) else {
            panic!()
        };
        assert!(
            why.contains("carol (away until 2026-12-06 14:00 UTC)"),
            "{why}"
        );
        let empty = pool(Strategy::RoundRobin, None, &[]);
        assert!(matches!(pick(&empty, &s), Pick::Nobody { .. }));
    }

    #[test]
    fn least_loaded_picks_the_lightest_and_breaks_ties_in_rotation_order() {
        let a = pool(Strategy::LeastLoaded, None, &["alice", "bob", "carol"]);
        let s = standing(None, &[("alice", 3), ("bob", 1), ("carol", 1)]);
        let p = pick(&a, &s);
        assert_eq!(who(&p), "bob");
        let Pick::To { why, .. } = &p else { panic!() };
        assert_eq!(
            why,
            "least loaded in group billing, 1 active (loads: alice 3, bob 1, carol 1)"
        );
        // After bob, carol is first in rotation among the tied.
        let s = standing(Some("bob"), &[("alice", 3), ("bob", 1), ("carol", 1)]);
        assert_eq!(who(&pick(&a, &s)), "carol");
        // Equal loads take turns: 8 tickets to 3 fresh people give 3/3/2.
        let mut s = Standing::default();
        let mut count: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..8 {
            let p = pick(&a, &s);
            let n = who(&p).to_owned();
            *s.load.entry(n.clone()).or_default() += 1;
            *count.entry(n.clone()).or_default() += 1;
            s.last = Some(n);
        }
        assert_eq!(count.values().copied().collect::<Vec<_>>(), [3, 3, 2]);
        // The cap applies to least loaded too.
        let capped = pool(Strategy::LeastLoaded, Some(1), &["alice", "bob"]);
        let s = standing(None, &[("alice", 1), ("bob", 1)]);
        assert!(matches!(pick(&capped, &s), Pick::Nobody { .. }));
    }

    fn berlin() -> Zone {
        Zone::parse("Europe/Berlin").unwrap()
    }

    #[test]
    fn away_and_back_are_read_with_times_in_the_zone() {
        // 10:00 in Berlin (UTC+1 in December).
        let now: Timestamp = "2026-12-07T09:00:00Z".parse().unwrap();
        let z = berlin();
        let away = |t: &str| parse_away(t, true, now, &z);
        let at = |s: &str| Some(Ok(AwayCommand::Away(Some(s.parse().unwrap()))));
        assert_eq!(away("!away"), Some(Ok(AwayCommand::Away(None))));
        assert_eq!(away("  !BACK "), Some(Ok(AwayCommand::Back)));
        assert_eq!(away("!away until 14:30"), at("2026-12-07T13:30:00Z"));
        assert_eq!(away("!away until 09:00"), at("2026-12-08T08:00:00Z"));
        assert_eq!(away("!away until tomorrow"), at("2026-12-07T23:00:00Z"));
        assert_eq!(away("!away until 2026-12-24"), at("2026-12-23T23:00:00Z"));
        assert_eq!(
            away("!away until 2026-12-24 08:00"),
            at("2026-12-24T07:00:00Z")
        );
        assert_eq!(away("!away for 2h"), at("2026-12-07T11:00:00Z"));
        assert_eq!(away("!away for 30m"), at("2026-12-07T09:30:00Z"));
        assert_eq!(away("!away for 3d"), at("2026-12-10T09:00:00Z"));
        assert_eq!(away("!claim"), None);
        assert_eq!(away("away"), None, "a bang is needed in chat");
        assert_eq!(
            parse_away("away for 1h", false, now, &z),
            at("2026-12-07T10:00:00Z")
        );
        for bad in [
            "!away until 25:00",
            "!away until 2026-12-01",
            "!away for 0h",
            "!away for 2y",
            "!away sometime",
            "!back soon",
            "!away until 2030-01-01",
        ] {
            assert!(matches!(away(bad), Some(Err(_))), "{bad}: {:?}", away(bad));
        }
        let Some(Err(e)) = away("!away whenever") else {
            panic!()
        };
        assert!(e.contains("!away until HH:MM"), "{e}");
    }
}
