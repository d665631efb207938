//! When each mailbox was last checked successfully, and whether that is
//! recent enough.
//!
//! Ingest reports every successful pass over the folder and every stored
//! message ([`Health::checked`]) and every lost connection
//! ([`Health::failed`]); `/healthz` and the watchdog read the result. Ages
//! use the monotonic clock, so a wall-clock jump never makes a mailbox stale.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::domain::ids::MailboxName;

/// Where a mailbox stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// Checked within `stale_after`.
    Ok,
    /// Not checked yet, and mailroom started less than `stale_after` ago.
    Starting,
    /// Not checked for `stale_after` or longer.
    Stale,
}

impl CheckState {
    /// Decides from the last successful check (or, before the first, the
    /// start) how a mailbox stands at `now`.
    pub fn at(
        last_checked: Option<Instant>,
        started: Instant,
        now: Instant,
        stale_after: Duration,
    ) -> CheckState {
        let since = last_checked.unwrap_or(started);
        if now.saturating_duration_since(since) >= stale_after {
            CheckState::Stale
        } else if last_checked.is_none() {
            CheckState::Starting
        } else {
            CheckState::Ok
        }
    }
}

/// What the team was last told about a mailbox (the watchdog speaks only
/// when this changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// Nothing, or that it recovered.
    Healthy,
    /// That it is stale.
    Stale,
}

/// One mailbox, as `/healthz` and the watchdog see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MailboxReport {
    #[serde(rename = "name", serialize_with = "ser_mailbox")]
    pub mailbox: MailboxName,
    pub state: CheckState,
    /// Seconds since the last successful check; `None` before the first.
    #[serde(rename = "last_check_age_secs", serialize_with = "ser_secs")]
    pub last_check_age: Option<Duration>,
    /// Why the last connection attempt failed, if it did since the last check.
    pub last_error: Option<String>,
    #[serde(skip)]
    pub announced: Announced,
    /// How long since the last check, or since the start before the first.
    #[serde(skip)]
    pub unchecked_for: Duration,
}

fn ser_mailbox<S: serde::Serializer>(m: &MailboxName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

fn ser_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        // Millisecond precision is plenty for a health page.
        Some(d) => s.serialize_f64((d.as_millis() as f64) / 1000.0),
        None => s.serialize_none(),
    }
}

#[derive(Debug)]
struct Entry {
    /// Since when this process watches the mailbox (its start, or on a
    /// replica when it took the mailbox's lease): "starting" until then.
    since: Instant,
    last_checked: Option<Instant>,
    last_error: Option<String>,
    announced: Announced,
}

/// Health of every configured mailbox.
#[derive(Debug)]
pub struct Health {
    stale_after: Duration,
    // A std Mutex: every critical section is a few field updates, never
    // held across an await.
    mailboxes: Mutex<BTreeMap<MailboxName, Entry>>,
}

impl Health {
    pub fn new(mailboxes: impl IntoIterator<Item = MailboxName>, stale_after: Duration) -> Health {
        let started = Instant::now();
        Health {
            stale_after,
            mailboxes: Mutex::new(
                mailboxes
                    .into_iter()
                    .map(|m| {
                        (
                            m,
                            Entry {
                                since: started,
                                last_checked: None,
                                last_error: None,
                                announced: Announced::Healthy,
                            },
                        )
                    })
                    .collect(),
            ),
        }
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<MailboxName, Entry>) -> T) -> T {
        // A panic while holding the lock leaves plain timestamps behind,
        // still valid: keep using them rather than poison every caller.
        let mut guard = self
            .mailboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Starts reporting a mailbox this process now works (a replica took
    /// its lease): starting, then stale if it is not checked in time.
    pub fn watch(&self, mailbox: &MailboxName) {
        let now = Instant::now();
        self.with(|m| {
            m.entry(mailbox.clone()).or_insert(Entry {
                since: now,
                last_checked: None,
                last_error: None,
                announced: Announced::Healthy,
            });
        });
    }

    /// Stops reporting a mailbox another process works now: a replica
    /// must not call a mailbox stale (nor tell its room) because it is
    /// not the one checking it.
    pub fn unwatch(&self, mailbox: &MailboxName) {
        self.with(|m| {
            m.remove(mailbox);
        });
    }

    /// The mailbox was just checked successfully.
    pub fn checked(&self, mailbox: &MailboxName) {
        let now = Instant::now();
        self.with(|m| {
            if let Some(e) = m.get_mut(mailbox) {
                e.last_checked = Some(now);
                e.last_error = None;
            }
        });
    }

    /// Checking the mailbox failed; ingest will retry.
    pub fn failed(&self, mailbox: &MailboxName, error: String) {
        self.with(|m| {
            if let Some(e) = m.get_mut(mailbox) {
                e.last_error = Some(error);
            }
        });
    }

    /// Records what the team was told.
    pub fn announce(&self, mailbox: &MailboxName, announced: Announced) {
        self.with(|m| {
            if let Some(e) = m.get_mut(mailbox) {
                e.announced = announced;
            }
        });
    }

    /// Every mailbox, in name order.
    pub fn report(&self) -> Vec<MailboxReport> {
        let now = Instant::now();
        self.with(|m| {
            m.iter()
                .map(|(name, e)| MailboxReport {
                    mailbox: name.clone(),
                    state: CheckState::at(e.last_checked, e.since, now, self.stale_after),
                    last_check_age: e.last_checked.map(|t| now.saturating_duration_since(t)),
                    last_error: e.last_error.clone(),
                    announced: e.announced,
                    unchecked_for: now.saturating_duration_since(e.last_checked.unwrap_or(e.since)),
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_watched_mailboxes_are_reported() {
        let a = MailboxName::parse("a").unwrap();
        let b = MailboxName::parse("b").unwrap();
        let h = Health::new([a.clone(), b.clone()], STALE);
        h.unwatch(&a);
        let names: Vec<MailboxName> = h.report().into_iter().map(|r| r.mailbox).collect();
        assert_eq!(names, vec![b.clone()]);
        h.watch(&a);
        h.checked(&b);
        h.watch(&b); // already watched: keeps its check
        let r = h.report();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].state, CheckState::Starting);
        assert_eq!(r[1].state, CheckState::Ok);
    }

    const STALE: Duration = Duration::from_secs(300);

    #[test]
    fn a_mailbox_is_starting_then_ok_then_stale() {
        let start = Instant::now();
        let s = |checked: Option<u64>, now: u64| {
            CheckState::at(
                checked.map(|c| start + Duration::from_secs(c)),
                start,
                start + Duration::from_secs(now),
                STALE,
            )
        };
        assert_eq!(s(None, 0), CheckState::Starting);
        assert_eq!(s(None, 299), CheckState::Starting);
        assert_eq!(s(None, 300), CheckState::Stale, "never checked since start");
        assert_eq!(s(Some(10), 309), CheckState::Ok);
        assert_eq!(s(Some(10), 310), CheckState::Stale);
        assert_eq!(s(Some(400), 401), CheckState::Ok, "recovered");
    }

    #[test]
    fn checks_clear_errors_and_reports_cover_every_mailbox() {
        let a = MailboxName::parse("a").unwrap();
        let b = MailboxName::parse("b").unwrap();
        let h = Health::new([b.clone(), a.clone()], STALE);
        h.failed(&a, "cannot connect".into());
        let r = h.report();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].mailbox, a, "name order");
        assert_eq!(r[0].last_error.as_deref(), Some("cannot connect"));
        assert_eq!(r[0].state, CheckState::Starting);
        assert_eq!(r[0].last_check_age, None);
        h.checked(&a);
        let r = h.report();
        assert_eq!(r[0].state, CheckState::Ok);
        assert_eq!(r[0].last_error, None);
        assert!(r[0].last_check_age.is_some());
        let json = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(json["name"], "a");
        assert_eq!(json["state"], "ok");
        assert!(json["last_check_age_secs"].is_number());
        assert!(json.get("announced").is_none());
    }
}
