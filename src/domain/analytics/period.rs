//! Calendar periods in a mailbox's time zone: a day, an ISO week (Monday
//! first) or a month, as the half-open span of instants `[start, end)`.
//!
//! Periods are cut on local midnights, never as "24 hours × n": a day across
//! a daylight-saving change is 23 or 25 hours long, and a ticket received at
//! 00:30 local time belongs to that local day whatever the UTC offset.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::Date;

use crate::domain::time::Zone;

/// How long a period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodKind {
    Day,
    /// An ISO week: Monday to Sunday.
    Week,
    Month,
}

impl PeriodKind {
    pub const ALL: [PeriodKind; 3] = [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<PeriodKind> {
        PeriodKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A period that cannot be placed on the calendar (an instant near the end
/// of jiff's range). Never happens for dates a mailbox sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no {kind} period around {at} in {zone}: {reason}")]
pub struct PeriodError {
    pub kind: PeriodKind,
    pub at: String,
    pub zone: String,
    pub reason: String,
}

/// One calendar period in a zone: local days `first_day ..= last_day`, the
/// instants `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub kind: PeriodKind,
    pub zone: Zone,
    pub first_day: Date,
    pub last_day: Date,
    /// Unix milliseconds of the first day's local midnight.
    pub start_ms: i64,
    /// Unix milliseconds of the local midnight after the last day (exclusive).
    pub end_ms: i64,
}

/// One local day of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    pub date: Date,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Period {
    /// The period of `kind` that contains `at`, in `zone`.
    pub fn containing(kind: PeriodKind, at: Timestamp, zone: &Zone) -> Result<Period, PeriodError> {
        let fail = |reason: String| PeriodError {
            kind,
            at: at.to_string(),
            zone: zone.name().to_owned(),
            reason,
        };
        let today = zone.at(at).date();
        let (first, last) = match kind {
            PeriodKind::Day => (today, today),
            PeriodKind::Week => {
                let back = i64::from(today.weekday().to_monday_zero_offset());
                let first = add_days(today, -back).map_err(fail)?;
                (first, add_days(first, 6).map_err(fail)?)
            }
            PeriodKind::Month => (today.first_of_month(), today.last_of_month()),
        };
        Period::of_days(kind, zone, first, last).map_err(fail)
    }

    /// The period just before this one.
    pub fn previous(&self) -> Result<Period, PeriodError> {
        let at = Timestamp::from_millisecond(self.start_ms - 1).map_err(|e| PeriodError {
            kind: self.kind,
            at: self.start_ms.to_string(),
            zone: self.zone.name().to_owned(),
            reason: e.to_string(),
        })?;
        Period::containing(self.kind, at, &self.zone)
    }

    fn of_days(kind: PeriodKind, zone: &Zone, first: Date, last: Date) -> Result<Period, String> {
        Ok(Period {
            kind,
            zone: zone.clone(),
            first_day: first,
            last_day: last,
            start_ms: midnight_ms(first, zone)?,
            end_ms: midnight_ms(add_days(last, 1)?, zone)?,
        })
    }

    /// Whether `at_ms` falls in the period.
    pub fn contains(&self, at_ms: i64) -> bool {
        self.start_ms <= at_ms && at_ms < self.end_ms
    }

    /// The period's local days, in order, each with its own bounds (23 or
    /// 25 hours long across a daylight-saving change).
    pub fn days(&self) -> Vec<Day> {
        let mut out = Vec::new();
        let mut date = self.first_day;
        let mut start = self.start_ms;
        while date <= self.last_day {
            let Ok(next) = add_days(date, 1) else { break };
            let end = midnight_ms(next, &self.zone).unwrap_or(self.end_ms);
            out.push(Day {
                date,
                start_ms: start,
                end_ms: end,
            });
            date = next;
            start = end;
        }
        out
    }

    /// Which of [`Period::days`] `at_ms` falls on, if any.
    pub fn day_index(&self, at_ms: i64) -> Option<usize> {
        if !self.contains(at_ms) {
            return None;
        }
        let date = self
            .zone
            .at(Timestamp::from_millisecond(at_ms).ok()?)
            .date();
        usize::try_from(self.first_day.until(date).ok()?.get_days()).ok()
    }

    /// A short name for people: "2026-03-29", "week 2026-W13 (23–29 Mar)",
    /// "March 2026".
    pub fn label(&self) -> String {
        match self.kind {
            PeriodKind::Day => format!("{} ({})", self.first_day, self.first_day.strftime("%a")),
            PeriodKind::Week => {
                let w = self.first_day.iso_week_date();
                format!(
                    "week {}-W{:02} ({} – {})",
                    w.year(),
                    w.week(),
                    self.first_day.strftime("%-d %b"),
                    self.last_day.strftime("%-d %b")
                )
            }
            PeriodKind::Month => self.first_day.strftime("%B %Y").to_string(),
        }
    }
}

fn add_days(date: Date, n: i64) -> Result<Date, String> {
    date.checked_add(jiff::Span::new().days(n))
        .map_err(|e| e.to_string())
}

/// The first instant of `date` in `zone` (its midnight, or the end of the
/// gap when a daylight-saving change skips midnight).
fn midnight_ms(date: Date, zone: &Zone) -> Result<i64, String> {
    date.to_zoned(zone.tz().clone())
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_day_across_the_spring_change_is_23_hours() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // 2026-03-29: clocks go from 02:00 to 03:00 in Berlin.
        let p = Period::containing(PeriodKind::Day, ts("2026-03-29T12:00:00Z"), &berlin).unwrap();
        assert_eq!(p.start_ms, ts("2026-03-28T23:00:00Z").as_millisecond());
        assert_eq!(p.end_ms, ts("2026-03-29T22:00:00Z").as_millisecond());
        assert_eq!(p.end_ms - p.start_ms, 23 * 3_600_000);
        assert_eq!(p.label(), "2026-03-29 (Sun)");
    }

    #[test]
    fn weeks_start_on_monday_in_the_zone() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // Sunday 2026-03-22 23:30 UTC is already Monday 00:30 in Berlin.
        let p = Period::containing(PeriodKind::Week, ts("2026-03-22T23:30:00Z"), &berlin).unwrap();
        assert_eq!(p.first_day.to_string(), "2026-03-23");
        assert_eq!(p.last_day.to_string(), "2026-03-29");
        let days = p.days();
        assert_eq!(days.len(), 7);
        // Six days of 24 hours and the change's Sunday of 23.
        assert_eq!(p.end_ms - p.start_ms, (7 * 24 - 1) * 3_600_000);
        assert_eq!(days[6].end_ms - days[6].start_ms, 23 * 3_600_000);
        assert_eq!(days.last().unwrap().end_ms, p.end_ms);
        assert_eq!(p.label(), "week 2026-W13 (23 Mar – 29 Mar)");
        assert_eq!(
            p.day_index(ts("2026-03-29T21:59:59Z").as_millisecond()),
            Some(6)
        );
        assert_eq!(
            p.day_index(ts("2026-03-29T22:00:00Z").as_millisecond()),
            None
        );
    }

    #[test]
    fn months_and_their_predecessors() {
        let utc = Zone::utc();
        let p = Period::containing(PeriodKind::Month, ts("2026-03-15T00:00:00Z"), &utc).unwrap();
        assert_eq!(p.label(), "March 2026");
        assert_eq!(p.days().len(), 31);
        let prev = p.previous().unwrap();
        assert_eq!(prev.first_day.to_string(), "2026-02-01");
        assert_eq!(prev.end_ms, p.start_ms);
        assert_eq!(prev.days().len(), 28);
    }

    #[test]
    fn kinds_parse_in_any_case() {
        assert_eq!(PeriodKind::parse("Week"), Some(PeriodKind::Week));
        assert_eq!(PeriodKind::parse("year"), None);
    }
}
