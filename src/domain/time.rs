//! Time as the flows see it: a [`Clock`] they ask for "now" (so SLA timers,
//! snoozes and digests are tested without sleeping), and a mailbox's
//! [`Zone`], the time zone its business hours, snooze times and digests are
//! read in.

use std::fmt;
use std::sync::Mutex;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Where "now" comes from. The daemon uses [`SystemClock`]; tests hand the
/// flows a [`ManualClock`] and move it.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;

    /// [`Clock::now`] in Unix milliseconds, the store's unit.
    fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until told to move.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        ManualClock(Mutex::new(at))
    }

    /// Moves the clock to `at` (backwards too: a test may need it).
    pub fn set(&self, at: Timestamp) {
        *self.lock() = at;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.lock();
        *now = now.saturating_add(by).unwrap_or(*now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timestamp> {
        // A poisoned lock still holds a valid timestamp: nothing is half
        // written in a `Timestamp`.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.lock()
    }
}

/// A mailbox's time zone (`time_zone = "Europe/Berlin"`), by its IANA name.
/// The tz database is compiled in, so a host without tzdata reads the same.
#[derive(Clone, PartialEq)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// The zone named `name` in the IANA database, or why not.
    pub fn parse(name: &str) -> Result<Zone, String> {
        let name = name.trim();
        TimeZone::get(name)
            .map(|tz| Zone {
                name: name.to_owned(),
                tz,
            })
            .map_err(|_| {
                format!(
                    "expected an IANA time zone such as \"Europe/Berlin\" or \"UTC\", got {name:?}"
                )
            })
    }

    pub fn utc() -> Zone {
        Zone {
            name: "UTC".to_owned(),
            tz: TimeZone::UTC,
        }
    }

    /// The host's zone (`TZ`, `/etc/localtime`), UTC when it has none.
    pub fn system() -> Zone {
        match TimeZone::try_system() {
            Ok(tz) => Zone {
                name: tz.iana_name().unwrap_or("UTC").to_owned(),
                tz,
            },
            Err(_) => Zone::utc(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// `at` as a wall-clock time in this zone.
    pub fn at(&self, at: Timestamp) -> jiff::Zoned {
        at.to_zoned(self.tz.clone())
    }
}

impl Default for Zone {
    fn default() -> Self {
        Zone::system()
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl<'de> serde::Deserialize<'de> for Zone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Zone::parse(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start: Timestamp = "2026-03-29T00:30:00Z".parse().unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(SignedDuration::from_hours(2));
        assert_eq!(clock.now(), "2026-03-29T02:30:00Z".parse().unwrap());
        assert_eq!(clock.now_ms(), clock.now().as_millisecond());
        clock.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn zones_are_read_by_iana_name_and_a_wrong_one_says_what_to_write() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        assert_eq!(berlin.name(), "Europe/Berlin");
        // 01:30 UTC on the spring-forward day is 03:30 CEST in Berlin.
        let at: Timestamp = "2026-03-29T01:30:00Z".parse().unwrap();
        assert_eq!(berlin.at(at).hour(), 3);
        let err = Zone::parse("Mars/Olympus").unwrap_err();
        assert!(
            err.contains("IANA time zone") && err.contains("Mars/Olympus"),
            "{err}"
        );
        assert_eq!(Zone::parse(" UTC ").unwrap(), Zone::utc());
    }
}
