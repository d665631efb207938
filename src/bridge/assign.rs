//! Auto-assignment's bridge side: what the chat platforms say about
//! people's availability (asked before an ingest's transaction, cached
//! briefly so a burst of mail costs one round of calls), and `!away` /
//! `!back`. The pick itself is the store's, in the ingest transaction
//! (`store/sql/assign.rs`), from the pool the route names.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::chat::Availability;
use crate::domain::assign::{AwayCommand, parse_away};
use crate::domain::chat::Platform;
use crate::domain::ids::{Actor, Agent};
use crate::domain::routing::{Assignee, Person, Pool};
use crate::domain::time::Zone;
use crate::store::StoreError;

use super::App;

/// How long a platform's answer about someone is trusted.
pub const PRESENCE_TTL: Duration = Duration::from_secs(60);
/// How long one availability call may take before it counts as no answer.
const PRESENCE_TIMEOUT: Duration = Duration::from_secs(3);

/// Availability answers per id, kept [`PRESENCE_TTL`] (tests shorten it).
#[derive(Debug)]
pub struct PresenceCache {
    // A std mutex: held for a map lookup or insert only, never across an await.
    answers: Mutex<HashMap<Agent, (Instant, Option<Availability>)>>,
    ttl_ms: AtomicU64,
}

impl Default for PresenceCache {
    fn default() -> Self {
        PresenceCache {
            answers: Mutex::default(),
            ttl_ms: AtomicU64::new(PRESENCE_TTL.as_millis() as u64),
        }
    }
}

impl PresenceCache {
    /// How long an answer is kept (zero: ask every time).
    pub fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(ttl.as_millis() as u64, Ordering::Relaxed);
    }

    fn get(&self, agent: &Agent) -> Option<Option<Availability>> {
        let ttl = Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed));
        let map = self.answers.lock().ok()?;
        let (at, answer) = map.get(agent)?;
        (at.elapsed() < ttl).then(|| answer.clone())
    }

    fn put(&self, agent: &Agent, answer: Option<Availability>) {
        if let Ok(mut map) = self.answers.lock() {
            map.insert(agent.clone(), (Instant::now(), answer));
        }
    }
}

impl App {
    /// Every pool new tickets may be spread over: the rules' groups and the
    /// mailboxes' `[mailbox.assign]`.
    fn pools(&self) -> Vec<&Pool> {
        let rules = self
            .settings
            .rules
            .iter()
            .filter_map(|r| match &r.then.assign {
                Some(Assignee::Group(pool)) => Some(pool),
                _ => None,
            });
        rules.chain(self.settings.assign_pools.values()).collect()
    }

    /// The people of any pool whom a running chat platform reports away or
    /// in do-not-disturb, with why. Asked before an ingest's transaction
    /// (a network call never holds the database), from the cache when
    /// fresh; a platform that does not answer tells nothing.
    pub async fn unavailable_people(&self) -> BTreeMap<String, String> {
        let mut people: BTreeMap<&str, &Person> = BTreeMap::new();
        for pool in self.pools() {
            for p in &pool.members {
                people.insert(&p.name, p);
            }
        }
        let mut out = BTreeMap::new();
        for (name, person) in people {
            for (platform, id) in [
                (Platform::Matrix, &person.matrix),
                (Platform::Slack, &person.slack),
            ] {
                let (Some(id), Some(chat)) = (id, self.chats.get(&platform)) else {
                    continue;
                };
                let answer = match self.presence.get(id) {
                    Some(a) => a,
                    None => {
                        let a = match tokio::time::timeout(PRESENCE_TIMEOUT, chat.availability(id))
                            .await
                        {
                            Ok(Ok(a)) => a,
                            Ok(Err(e)) => {
                                tracing::warn!(%id, error = %e, "availability unknown; not skipped");
                                None
                            }
                            Err(_) => {
                                tracing::warn!(%id, "availability call timed out; not skipped");
                                None
                            }
                        };
                        self.presence.put(id, a.clone());
                        a
                    }
                };
                if let Some(Availability::Unavailable(why)) = answer {
                    out.entry(name.to_owned()).or_insert(why);
                }
            }
        }
        out
    }

    /// The `[people]` name of a chat user.
    pub fn person_of(&self, agent: &Agent) -> Option<String> {
        self.settings.people.iter().find_map(|(name, p)| {
            let matrix = p.matrix.as_deref().map(str::trim) == Some(agent.as_str());
            let slack = p
                .slack
                .as_deref()
                .map(|s| format!("slack:{}", s.trim().trim_start_matches("slack:")))
                .as_deref()
                == Some(agent.as_str());
            (matrix || slack).then(|| name.clone())
        })
    }

    /// The zone `!away until 14:00` is read in: that of the mailbox whose
    /// room it was typed in, else the first mailbox's.
    fn zone_of_room(&self, platform: Platform, room: &str) -> Zone {
        let here = self.settings.mailboxes.iter().find(|m| {
            let r = match platform {
                Platform::Matrix => &m.chat.matrix_room,
                Platform::Slack => &m.chat.slack_channel,
            };
            r.as_deref() == Some(room)
        });
        here.or(self.settings.mailboxes.first())
            .map(|m| m.time_zone.clone())
            .unwrap_or_default()
    }

    /// `!away …` / `!back` (`bang`), or the slash command's `away …` /
    /// `back`: `None` when `text` is neither; else the answer for the
    /// speaker, the mark stored and audited.
    pub async fn away_command(
        &self,
        platform: Platform,
        room: &str,
        agent: &Agent,
        text: &str,
        bang: bool,
    ) -> Result<Option<String>, StoreError> {
        let zone = self.zone_of_room(platform, room);
        let now = self.clock.now();
        let Some(parsed) = parse_away(text, bang, now, &zone) else {
            return Ok(None);
        };
        let cmd = match parsed {
            Ok(cmd) => cmd,
            Err(e) => return Ok(Some(format!("⚠️ {e}"))),
        };
        let Some(person) = self.person_of(agent) else {
            return Ok(Some(format!(
                "{agent}: you are not in [people] of mailroom's configuration, so tickets are never auto-assigned to you; nothing to mark."
            )));
        };
        let actor = Actor::Agent(agent.clone());
        let now_ms = self.now_ms();
        let answer = match cmd {
            AwayCommand::Away(until) => {
                let until_ms = until.map(|t| t.as_millisecond());
                self.store
                    .set_away(&person, until_ms, &actor, now_ms)
                    .await?;
                match until {
                    Some(t) => format!(
                        "🌙 {person} is away until {} ({}): new tickets go to others meanwhile.",
                        zone.at(t).strftime("%a %Y-%m-%d %H:%M"),
                        zone.name()
                    ),
                    None => format!(
                        "🌙 {person} is away until they say !back: new tickets go to others meanwhile."
                    ),
                }
            }
            AwayCommand::Back => match self.store.set_back(&person, &actor, now_ms).await? {
                true => format!("☀️ Welcome back, {person}: new tickets may come to you again."),
                false => format!("{person} was not marked away."),
            },
        };
        tracing::info!(%agent, %person, "availability changed");
        Ok(Some(answer))
    }
}
