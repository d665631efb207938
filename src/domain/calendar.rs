//! Business hours and holidays in a mailbox's [`Zone`]: when the team is
//! open, and how much open ("business") time lies between two instants or
//! after one. SLA targets are counted in this time (`domain::sla`).
//!
//! Hours are wall-clock spans per weekday ("09:00-12:00,13:00-17:30"); a
//! span is turned into real instants on each date with the zone's rules,
//! so a DST change is counted as it is lived: the span 09:00-17:00 is 8
//! real hours on any day, a span 01:00-04:00 is 2 hours on the
//! spring-forward night of Europe/Berlin and 4 on the fall-back night,
//! and a span that lies wholly in the skipped hour is empty that day. A
//! wall time that does not exist is read as the instant after the gap, one
//! that exists twice as the first of the two (jiff's "compatible" rule, as
//! RFC 5545 does). Spans never cross midnight: "22:00-24:00" and
//! "00:00-06:00" on the next day say a night shift.
//!
//! Pure: instants in, instants out; "now" is the caller's.

use std::fmt;

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

use super::time::Zone;

/// How far ahead or back the walks over dates go before giving up: longer
/// than any target anyone sets, short enough to stay cheap.
const MAX_DAYS: usize = 3 * 366;

/// One open span of a day, in minutes after midnight (`end` may be 1440,
/// "24:00").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: u16,
    end: u16,
}

impl Span {
    pub fn new(start: u16, end: u16) -> Result<Span, String> {
        if end > 24 * 60 || start >= end {
            return Err(format!(
                "{} must end after it starts and within the day (a night shift is two spans: \"22:00-24:00\" and \"00:00-06:00\" the next day)",
                Span { start, end }
            ));
        }
        Ok(Span { start, end })
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hm(self.start), hm(self.end))
    }
}

/// "HH:MM" (00:00 to 24:00) in minutes.
fn minutes(s: &str) -> Result<u16, String> {
    let bad = || format!("expected a time HH:MM from 00:00 to 24:00, got {s:?}");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let ok = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit());
    if !ok(h) || !ok(m) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A day's hours as written: "09:00-12:00,13:00-17:30", or "closed" (or
/// "") for none. Spans must not overlap; they are kept in order.
pub fn parse_spans(s: &str) -> Result<Vec<Span>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("closed") {
        return Ok(Vec::new());
    }
    let mut spans = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once('-').ok_or_else(|| {
            format!("expected spans such as \"09:00-12:00,13:00-17:30\", got {part:?}")
        })?;
        spans.push(Span::new(minutes(a)?, minutes(b)?)?);
    }
    spans.sort_by_key(|s| s.start);
    for pair in spans.windows(2) {
        if pair[1].start < pair[0].end {
            return Err(format!("{} overlaps {}", pair[0], pair[1]));
        }
    }
    Ok(spans)
}

/// A day the team is off: one date, or a date every year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holiday {
    On(Date),
    Yearly { month: i8, day: i8 },
}

impl Holiday {
    /// "2026-12-24" (that day) or "12-25" (every year).
    pub fn parse(s: &str) -> Result<Holiday, String> {
        let s = s.trim();
        let bad = || format!("expected a date YYYY-MM-DD, or MM-DD for every year, got {s:?}");
        match s.len() {
            10 => s.parse::<Date>().map(Holiday::On).map_err(|_| bad()),
            5 => {
                let (m, d) = s.split_once('-').ok_or_else(bad)?;
                let (month, day): (i8, i8) =
                    (m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
                // A leap year, so "02-29" is a date (kept in leap years only).
                Date::new(2024, month, day).map_err(|_| bad())?;
                Ok(Holiday::Yearly { month, day })
            }
            _ => Err(bad()),
        }
    }

    fn is(&self, date: Date) -> bool {
        match *self {
            Holiday::On(d) => d == date,
            Holiday::Yearly { month, day } => date.month() == month && date.day() == day,
        }
    }
}

/// When a mailbox's team is open. Without business hours it is always open
/// (24×7), and business time is plain time.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    zone: Zone,
    /// Monday first; `None`: always open.
    week: Option<[Vec<Span>; 7]>,
    holidays: Vec<Holiday>,
}

impl Calendar {
    /// Always open.
    pub fn always(zone: Zone) -> Calendar {
        Calendar {
            zone,
            week: None,
            holidays: Vec::new(),
        }
    }

    /// Open in `week`'s spans (Monday first) except on `holidays`. A week
    /// without an open span would never let a target fall due: refused.
    pub fn new(
        zone: Zone,
        week: [Vec<Span>; 7],
        holidays: Vec<Holiday>,
    ) -> Result<Calendar, String> {
        if week.iter().all(|d| d.is_empty()) {
            return Err("no open hours: give at least one day's hours".into());
        }
        Ok(Calendar {
            zone,
            week: Some(week),
            holidays,
        })
    }

    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    pub fn is_always_open(&self) -> bool {
        self.week.is_none()
    }

    fn date_of(&self, at: Timestamp) -> Date {
        self.zone.at(at).date()
    }

    /// The instant a wall time on `date` names (compatible rule; see the
    /// module doc). `minute` 1440 is the next day's midnight.
    fn instant(&self, date: Date, minute: u16) -> Option<Timestamp> {
        let (date, minute) = match minute {
            1440 => (date.tomorrow().ok()?, 0),
            m => (date, m),
        };
        let at = date.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
        at.to_zoned(self.zone.tz().clone())
            .ok()
            .map(|z| z.timestamp())
    }

    /// The open intervals of a date, as instants, in order.
    pub fn open_on(&self, date: Date) -> Vec<(Timestamp, Timestamp)> {
        let Some(week) = &self.week else {
            return match (self.instant(date, 0), self.instant(date, 1440)) {
                (Some(s), Some(e)) if s < e => vec![(s, e)],
                _ => Vec::new(),
            };
        };
        if self.holidays.iter().any(|h| h.is(date)) {
            return Vec::new();
        }
        let day = &week[date.weekday().to_monday_zero_offset() as usize];
        day.iter()
            .filter_map(|s| Some((self.instant(date, s.start)?, self.instant(date, s.end)?)))
            // A span wholly in a skipped hour has both ends at the gap's end.
            .filter(|(s, e)| s < e)
            .collect()
    }

    /// Whether the team is open at `at`.
    pub fn is_open(&self, at: Timestamp) -> bool {
        if self.week.is_none() {
            return true;
        }
        let date = self.date_of(at);
        // A neighbouring date's span can reach into this date's wall-clock
        // day only around a fold; looking at three dates is enough.
        [date.yesterday().ok(), Some(date), date.tomorrow().ok()]
            .into_iter()
            .flatten()
            .flat_map(|d| self.open_on(d))
            .any(|(s, e)| s <= at && at < e)
    }

    /// The instant at which `business` open time has passed since `from`;
    /// `None` if it lies beyond what the calendar is walked for.
    pub fn add(&self, from: Timestamp, business: SignedDuration) -> Option<Timestamp> {
        if business <= SignedDuration::ZERO {
            return Some(from);
        }
        if self.week.is_none() {
            return from.checked_add(business).ok();
        }
        let mut left = business;
        let mut date = self.date_of(from).yesterday().ok()?;
        for _ in 0..MAX_DAYS {
            for (s, e) in self.open_on(date) {
                if e <= from {
                    continue;
                }
                let s = s.max(from);
                let here = e.duration_since(s);
                if here >= left {
                    return s.checked_add(left).ok();
                }
                left -= here;
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// Open time between `a` and `b` (zero if `b` is not after `a`).
    pub fn between(&self, a: Timestamp, b: Timestamp) -> SignedDuration {
        if b <= a {
            return SignedDuration::ZERO;
        }
        if self.week.is_none() {
            return b.duration_since(a);
        }
        let mut total = SignedDuration::ZERO;
        let Ok(mut date) = self.date_of(a).yesterday() else {
            return total;
        };
        let Ok(last) = self.date_of(b).tomorrow() else {
            return total;
        };
        // Past the walk's bound the rest counts as closed: it only makes
        // a clock older than three years look younger than it is.
        for _ in 0..MAX_DAYS {
            if date > last {
                break;
            }
            for (s, e) in self.open_on(date) {
                let (s, e) = (s.max(a), e.min(b));
                if s < e {
                    total += e.duration_since(s);
                }
            }
            let Ok(next) = date.tomorrow() else { break };
            date = next;
        }
        total
    }

    /// The next instant at or after `at` when the team is open.
    pub fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        if self.is_open(at) {
            return Some(at);
        }
        let mut date = self.date_of(at).yesterday().ok()?;
        for _ in 0..MAX_DAYS {
            if let Some((s, _)) = self.open_on(date).into_iter().find(|(_, e)| *e > at) {
                return Some(s.max(at));
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

/// `[mailbox.business_hours]` as written: a day's spans per weekday key
/// (`weekdays` for Monday to Friday at once; a day key overrides it), and
/// holidays. A day not given is closed.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct BusinessHoursSettings {
    #[serde(default, deserialize_with = "spans")]
    pub weekdays: Option<Vec<Span>>,
    #[serde(default, deserialize_with = "spans")]
    pub mon: Option<Vec<Span>>,
    #[serde(default, deserialize_with = "spans")]
    pub tue: Option<Vec<Span>>,
    #[serde(default, deserialize_with = "spans")]
    pub wed: Option<Vec<Span>>,
    #[serde(default, deserialize_with = "spans")]
    pub thu: Option<Vec<Span>>,
    #[serde(default, deserialize_with = "spans")]
    pub fri: Option<Vec<Span>>,
    #[serde(default, deserialize_with = "spans")]
    pub sat: Option<Vec<Span>>,
    #[serde(default, deserialize_with = "spans")]
    pub sun: Option<Vec<Span>>,
    #[serde(default, deserialize_with = "super::settings::list")]
    pub holidays: Vec<Holiday>,
}

impl BusinessHoursSettings {
    /// The calendar these hours make in `zone`, or why none.
    pub fn calendar(&self, zone: Zone) -> Result<Calendar, String> {
        let workday = |d: &Option<Vec<Span>>| d.clone().or_else(|| self.weekdays.clone());
        let week = [
            workday(&self.mon),
            workday(&self.tue),
            workday(&self.wed),
            workday(&self.thu),
            workday(&self.fri),
            self.sat.clone(),
            self.sun.clone(),
        ]
        .map(Option::unwrap_or_default);
        Calendar::new(zone, week, self.holidays.clone()).map_err(|e| {
            format!("{e} (weekdays, mon, tue, wed, thu, fri, sat or sun, as \"09:00-17:00\")")
        })
    }
}

fn spans<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<Span>>, D::Error> {
    super::settings::text(d, |s| parse_spans(&s).map(Some))
}

impl<'de> serde::Deserialize<'de> for Holiday {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Holiday::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn h(n: i64) -> SignedDuration {
        SignedDuration::from_hours(n)
    }

    fn office(zone: &str, hours: &str, holidays: &[&str]) -> Calendar {
        let day = parse_spans(hours).unwrap();
        let week = [
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day,
            Vec::new(),
            Vec::new(),
        ];
        let holidays = holidays
            .iter()
            .map(|h| Holiday::parse(h).unwrap())
            .collect();
        Calendar::new(Zone::parse(zone).unwrap(), week, holidays).unwrap()
    }

    #[test]
    fn spans_are_read_and_impossible_ones_named() {
        let spans = parse_spans("13:00-17:30, 09:00-12:00").unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].to_string(), "09:00-12:00");
        assert_eq!(parse_spans("closed").unwrap(), Vec::new());
        assert_eq!(parse_spans("00:00-24:00").unwrap()[0].end, 1440);
        for (bad, says) in [
            ("18:00-09:00", "must end after it starts"),
            ("25:00-26:00", "expected a time HH:MM"),
            ("09:00-12:60", "expected a time HH:MM"),
            ("9-17", "expected a time HH:MM"),
            ("09:00", "expected spans"),
            (
                "09:00-12:00,11:00-13:00",
                "09:00-12:00 overlaps 11:00-13:00",
            ),
            ("09:00-09:00", "must end after it starts"),
        ] {
            let e = parse_spans(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn holidays_are_dates_or_yearly_dates() {
        assert_eq!(
            Holiday::parse("2026-12-24").unwrap(),
            Holiday::On("2026-12-24".parse().unwrap())
        );
        assert_eq!(
            Holiday::parse("12-25").unwrap(),
            Holiday::Yearly { month: 12, day: 25 }
        );
        assert!(Holiday::parse("02-29").is_ok());
        for bad in ["2026-02-30", "13-01", "christmas", "2026-1-1"] {
            assert!(Holiday::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_week_with_no_hours_is_refused() {
        let none: [Vec<Span>; 7] = Default::default();
        assert!(Calendar::new(Zone::utc(), none, Vec::new()).is_err());
    }

    #[test]
    fn always_open_is_plain_time() {
        let c = Calendar::always(Zone::parse("Europe/Berlin").unwrap());
        let a = ts("2026-03-28T12:00:00Z");
        assert!(c.is_open(a));
        assert_eq!(c.add(a, h(30)), Some(ts("2026-03-29T18:00:00Z")));
        assert_eq!(c.between(a, ts("2026-03-29T18:00:00Z")), h(30));
    }

    #[test]
    fn time_is_counted_only_while_open_across_lunch_nights_and_weekends() {
        // Friday 2026-03-06, Berlin is UTC+1 in March before the change.
        let c = office("Europe/Berlin", "09:00-12:00,13:00-17:00", &[]);
        let fri_1030 = ts("2026-03-06T09:30:00Z");
        assert!(c.is_open(fri_1030));
        assert!(!c.is_open(ts("2026-03-06T11:30:00Z")), "lunch");
        assert!(!c.is_open(ts("2026-03-07T09:30:00Z")), "Saturday");
        // 1h30 before lunch, 4h after: 5h30 on Friday; 1h30 more is Monday 10:30.
        assert_eq!(c.add(fri_1030, h(7)), Some(ts("2026-03-09T09:30:00Z")));
        assert_eq!(c.between(fri_1030, ts("2026-03-09T09:30:00Z")), h(7));
        // Starting in closed time starts the count at the next opening.
        let sat = ts("2026-03-07T10:00:00Z");
        assert_eq!(c.next_open(sat), Some(ts("2026-03-09T08:00:00Z")));
        assert_eq!(c.add(sat, h(1)), Some(ts("2026-03-09T09:00:00Z")));
        // Ending exactly at closing time stays on that day.
        assert_eq!(
            c.add(ts("2026-03-06T12:00:00Z"), h(4)),
            Some(ts("2026-03-06T16:00:00Z"))
        );
    }

    #[test]
    fn holidays_close_the_whole_day_once_or_every_year() {
        let c = office("America/New_York", "09:00-17:00", &["12-25", "2026-12-24"]);
        // Wed 2026-12-23 16:00 EST (21:00Z) + 2h: 1h that day, Thu 24 and
        // Fri 25 are off, so Monday 28 10:00.
        assert_eq!(
            c.add(ts("2026-12-23T21:00:00Z"), h(2)),
            Some(ts("2026-12-28T15:00:00Z"))
        );
        // The yearly one holds in later years: Christmas 2028 is a Monday.
        assert!(!c.is_open(ts("2028-12-25T15:00:00Z")));
        assert!(c.is_open(ts("2028-12-26T15:00:00Z")));
        // 2026-12-24 is off only in 2026: 2031-12-24 is a Wednesday.
        assert!(c.is_open(ts("2031-12-24T15:00:00Z")));
    }

    #[test]
    fn a_dst_week_in_berlin_counts_lived_hours() {
        // Spring forward: Sunday 2026-03-29 02:00 CET → 03:00 CEST.
        let every_day = |hours: &str| {
            let day = parse_spans(hours).unwrap();
            let week: [Vec<Span>; 7] = std::array::from_fn(|_| day.clone());
            Calendar::new(Zone::parse("Europe/Berlin").unwrap(), week, Vec::new()).unwrap()
        };
        let night = every_day("01:00-04:00");
        let sat = night.open_on("2026-03-28".parse().unwrap());
        let sun = night.open_on("2026-03-29".parse().unwrap());
        assert_eq!(sat[0].1.duration_since(sat[0].0), h(3));
        assert_eq!(sun[0].1.duration_since(sun[0].0), h(2), "spring forward");
        // A span wholly in the skipped hour is empty that day only.
        let gap = every_day("02:00-03:00");
        assert!(gap.open_on("2026-03-29".parse().unwrap()).is_empty());
        assert_eq!(gap.open_on("2026-03-30".parse().unwrap()).len(), 1);
        // Fall back: Sunday 2026-10-25 03:00 CEST → 02:00 CET.
        let oct = night.open_on("2026-10-25".parse().unwrap());
        assert_eq!(oct[0].1.duration_since(oct[0].0), h(4), "fall back");
        let folded = gap.open_on("2026-10-25".parse().unwrap());
        assert_eq!(folded[0].1.duration_since(folded[0].0), h(2));
        // Office hours keep their wall-clock place across the change:
        // Friday 27 March 16:00 CET + 2h is Monday 30 March 10:00 CEST.
        let c = office("Europe/Berlin", "09:00-17:00", &[]);
        assert_eq!(
            c.add(ts("2026-03-27T15:00:00Z"), h(2)),
            Some(ts("2026-03-30T08:00:00Z"))
        );
        // A whole week across the change is still 5 × 8 hours.
        assert_eq!(
            c.between(ts("2026-03-23T00:00:00Z"), ts("2026-03-30T00:00:00Z")),
            h(40)
        );
    }

    #[test]
    fn a_dst_week_in_new_york_counts_lived_hours() {
        // Spring forward: Sunday 2026-03-08 02:00 EST → 03:00 EDT; fall
        // back: Sunday 2026-11-01 02:00 EDT → 01:00 EST.
        let c = office("America/New_York", "08:00-18:00", &[]);
        // Friday 6 March 17:00 EST (22:00Z) + 3h → Monday 9 March 10:00 EDT (14:00Z).
        assert_eq!(
            c.add(ts("2026-03-06T22:00:00Z"), h(3)),
            Some(ts("2026-03-09T14:00:00Z"))
        );
        assert_eq!(
            c.between(ts("2026-10-26T04:00:00Z"), ts("2026-11-02T05:00:00Z")),
            h(50)
        );
        let sun = {
            let day = parse_spans("00:00-24:00").unwrap();
            let week: [Vec<Span>; 7] = std::array::from_fn(|_| day.clone());
            Calendar::new(Zone::parse("America/New_York").unwrap(), week, Vec::new()).unwrap()
        };
        let day = |d: &str| {
            let o = sun.open_on(d.parse().unwrap());
            o[0].1.duration_since(o[0].0)
        };
        assert_eq!(day("2026-03-08"), h(23));
        assert_eq!(day("2026-11-01"), h(25));
        assert_eq!(day("2026-11-02"), h(24));
    }

    #[test]
    fn add_and_between_agree_over_a_year_of_starts() {
        // Every 7 hours through 2026 in both zones (DST changes, weekends,
        // a holiday and lunch breaks included): adding then measuring gives
        // back what was added, the result is open time (or the end of a
        // span), and nothing before it would do.
        for zone in ["Europe/Berlin", "America/New_York"] {
            let c = office(zone, "09:00-12:00,13:00-17:30", &["05-01", "2026-12-24"]);
            let mut at = ts("2026-01-01T00:00:00Z");
            let end = ts("2027-01-01T00:00:00Z");
            while at < end {
                for want in [SignedDuration::from_mins(1), h(1), h(4), h(9), h(30)] {
                    let due = c.add(at, want).unwrap();
                    assert_eq!(c.between(at, due), want, "{zone} {at} + {want:?}");
                    let before = due.checked_sub(SignedDuration::from_mins(1)).unwrap();
                    assert!(c.between(at, before) < want, "{zone} {at}");
                    assert!(
                        c.is_open(before),
                        "{zone}: the minute before {due} is open time"
                    );
                }
                at = at.checked_add(h(7)).unwrap();
            }
        }
    }
}
