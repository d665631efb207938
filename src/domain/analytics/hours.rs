//! Which time durations count: every millisecond ([`WallClock`]), or only
//! the hours each mailbox's team works ([`BusinessHours`], from
//! `[mailbox.business_hours]` and its holidays). Asked for by name: chat's
//! `!mailroom stats week business`, the figures API's `hours=business`.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::domain::calendar::Calendar;
use crate::domain::ids::MailboxName;

/// How long a ticket waited, between two instants. Wall-clock time by
/// default; a business-hours calendar counts only the hours the team works.
pub trait WorkTime: Send + Sync {
    /// Milliseconds counted between `from_ms` and `to_ms` for a ticket of
    /// `mailbox` (0 if `to_ms` is not after `from_ms`).
    fn between(&self, mailbox: &MailboxName, from_ms: i64, to_ms: i64) -> i64;

    /// Which hours these are, for the figures to say.
    fn hours(&self) -> Hours {
        Hours::Wall
    }
}

/// Every millisecond counts.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl WorkTime for WallClock {
    fn between(&self, _mailbox: &MailboxName, from_ms: i64, to_ms: i64) -> i64 {
        (to_ms - from_ms).max(0)
    }
}

/// Only the open hours of each mailbox's calendar count (holidays and
/// closed days not at all). A mailbox without business hours is always
/// open, and one the configuration no longer names counts wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct BusinessHours<'a> {
    pub calendars: &'a BTreeMap<MailboxName, Calendar>,
}

impl WorkTime for BusinessHours<'_> {
    fn between(&self, mailbox: &MailboxName, from_ms: i64, to_ms: i64) -> i64 {
        let (Some(calendar), Ok(from), Ok(to)) = (
            self.calendars.get(mailbox),
            Timestamp::from_millisecond(from_ms),
            Timestamp::from_millisecond(to_ms),
        ) else {
            return WallClock.between(mailbox, from_ms, to_ms);
        };
        // Milliseconds of business time fit an i64 for 292 million years.
        i64::try_from(calendar.between(from, to).as_millis()).unwrap_or(i64::MAX)
    }

    fn hours(&self) -> Hours {
        Hours::Business
    }
}

/// The two ways of counting durations, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hours {
    /// Elapsed time, nights and weekends included (the default).
    #[default]
    Wall,
    /// The mailbox's business hours only.
    Business,
}

impl Hours {
    /// `wall` or `business` (the chat word and the API's `hours=` value).
    pub fn parse(s: &str) -> Option<Hours> {
        match s.to_ascii_lowercase().as_str() {
            "wall" => Some(Hours::Wall),
            "business" => Some(Hours::Business),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Hours::Wall => "wall",
            Hours::Business => "business",
        }
    }

    /// The [`WorkTime`] that counts these hours with `calendars`.
    pub fn work_time<'a>(
        self,
        calendars: &'a BTreeMap<MailboxName, Calendar>,
    ) -> Box<dyn WorkTime + 'a> {
        match self {
            Hours::Wall => Box::new(WallClock),
            Hours::Business => Box::new(BusinessHours { calendars }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{Holiday, parse_spans};
    use crate::domain::time::Zone;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    /// Mon–Fri 09:00–12:00 and 13:00–17:00 in Berlin; 25 December a
    /// holiday every year, and Friday 11 December 2026 once.
    fn calendars() -> BTreeMap<MailboxName, Calendar> {
        let day = parse_spans("09:00-12:00,13:00-17:00").unwrap();
        let mut week: [Vec<_>; 7] = Default::default();
        for d in week.iter_mut().take(5) {
            *d = day.clone();
        }
        let holidays = vec![
            Holiday::parse("12-25").unwrap(),
            Holiday::parse("2026-12-11").unwrap(),
        ];
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        BTreeMap::from([(
            MailboxName::parse("support").unwrap(),
            Calendar::new(berlin, week, holidays).unwrap(),
        )])
    }

    #[test]
    fn business_time_skips_nights_the_weekend_and_holidays() {
        let cals = calendars();
        let work = Hours::Business.work_time(&cals);
        let support = MailboxName::parse("support").unwrap();
        // Thursday 10 December 2026 16:00 CET (15:00Z) → Monday 14
        // December 10:30 CET (09:30Z): Thursday 16:00–17:00 (1h), Friday
        // the 11th a holiday, the weekend closed, Monday 09:00–10:30
        // (1h 30m): 2h 30m, against 90h 30m of wall-clock time.
        let (from, to) = (ms("2026-12-10T15:00:00Z"), ms("2026-12-14T09:30:00Z"));
        assert_eq!(work.between(&support, from, to), 2 * HOUR + 30 * MIN);
        assert_eq!(WallClock.between(&support, from, to), 90 * HOUR + 30 * MIN);
        // Thursday 24 December 11:00 CET → Monday 28 December 09:30:
        // 24th 11:00–12:00 and 13:00–17:00 (5h), the 25th (a Friday) a
        // yearly holiday, Monday 30 min: 5h 30m. The lunch break counts
        // not.
        let (from, to) = (ms("2026-12-24T10:00:00Z"), ms("2026-12-28T08:30:00Z"));
        assert_eq!(work.between(&support, from, to), 5 * HOUR + 30 * MIN);
        // Backwards is nothing; a mailbox without a calendar is wall clock.
        assert_eq!(work.between(&support, to, from), 0);
        let other = MailboxName::parse("sales").unwrap();
        assert_eq!(work.between(&other, from, from + HOUR), HOUR);
        assert_eq!(work.hours(), Hours::Business);
        assert_eq!(WallClock.hours(), Hours::Wall);
    }

    #[test]
    fn hours_are_named() {
        assert_eq!(Hours::parse("business"), Some(Hours::Business));
        assert_eq!(Hours::parse("Wall"), Some(Hours::Wall));
        assert_eq!(Hours::parse("office"), None);
        assert_eq!(Hours::default().as_str(), "wall");
    }
}
