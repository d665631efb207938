//! `!snooze …`: when a snoozed ticket comes back. The parser reads the
//! form only ([`SnoozeRequest`]); [`SnoozeRequest::resolve`] turns it into
//! a time against "now" and the mailbox's zone, so "tomorrow 9:00" means
//! nine o'clock where the team works, on a DST day too.

use jiff::civil::{Date, Time, Weekday};
use jiff::{SignedDuration, Timestamp};

use super::{CommandError, SNOOZE, error, quoted};
use crate::domain::snooze::{MAX_SNOOZE_DAYS, SnoozeUntil};
use crate::domain::time::Zone;

/// What `!snooze` was told, before it is read against the clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnoozeRequest {
    /// `!snooze 2h`, `!snooze 1h30m`, `!snooze 3 days`.
    For(SignedDuration),
    /// `!snooze tomorrow 9:00`, `!snooze monday 8:30`,
    /// `!snooze 2026-12-24 10:00`, `!snooze 17:00`.
    At { day: Day, time: Time },
    /// `!snooze until customer replies`, `!snooze until reply`.
    UntilReply,
}

/// The day of an [`SnoozeRequest::At`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Day {
    /// No day given: the next time the clock shows that time.
    Next,
    Today,
    Tomorrow,
    /// The next such day (today, if the time is still ahead).
    Weekday(Weekday),
    Date(Date),
}

const WHEN: &str = "write a duration (2h, 30m, 1d), a day and time (tomorrow 9:00, monday 8:30, \
                    2026-12-24 10:00) or \"until customer replies\"";

/// `rest` is everything after `!snooze`.
pub(super) fn parse_snooze(rest: &str) -> Result<SnoozeRequest, CommandError> {
    let lower = rest.trim().to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let Some(first) = words.first() else {
        return Err(error(
            &SNOOZE,
            format!("!snooze needs to know until when: {WHEN}"),
        ));
    };
    if *first == "until" {
        let what = words[1..].join(" ");
        return match what.as_str() {
            "reply"
            | "replied"
            | "a reply"
            | "customer replies"
            | "the customer replies"
            | "customer reply"
            | "they reply" => Ok(SnoozeRequest::UntilReply),
            _ => Err(error(
                &SNOOZE,
                format!(
                    "!snooze until {} is not understood: write \"!snooze until customer replies\"",
                    quoted(&what)
                ),
            )),
        };
    }
    if first.starts_with(|c: char| c.is_ascii_digit()) {
        let compact: String = words.concat();
        if let Some(d) = parse_duration(&compact) {
            return Ok(SnoozeRequest::For(d));
        }
    }
    let (day, time_words) = match day(first) {
        Some(day) => (day, &words[1..]),
        None => (Day::Next, &words[..]),
    };
    // "tomorrow at 9:00" reads as well as "tomorrow 9:00".
    let time_words = match time_words.split_first() {
        Some((&"at", rest)) => rest,
        _ => time_words,
    };
    let time_text = time_words.concat();
    if time_text.is_empty() {
        return Err(error(
            &SNOOZE,
            format!("!snooze {first} needs a time of day, e.g. \"!snooze {first} 9:00\""),
        ));
    }
    let time = time_of_day(&time_text).map_err(|why| error(&SNOOZE, why))?;
    Ok(SnoozeRequest::At { day, time })
}

impl SnoozeRequest {
    /// The time the ticket wakes, read in `zone` at `now`. A time that has
    /// passed, or more than a year ahead, is refused with what to write.
    pub fn resolve(&self, now: Timestamp, zone: &Zone) -> Result<SnoozeUntil, CommandError> {
        let at = match *self {
            SnoozeRequest::UntilReply => return Ok(SnoozeUntil::CustomerReply),
            SnoozeRequest::For(d) => {
                if d.is_zero() || d.is_negative() {
                    return Err(error(&SNOOZE, "!snooze needs a duration above zero"));
                }
                now.checked_add(d).map_err(|_| too_far())?
            }
            SnoozeRequest::At { day, time } => {
                let today = zone.at(now).date();
                let on = |date: Date| wall_clock(date, time, zone);
                let date = match day {
                    Day::Today => today,
                    Day::Tomorrow => today.tomorrow().map_err(|_| too_far())?,
                    Day::Date(d) => d,
                    Day::Next => {
                        if on(today)? > now {
                            today
                        } else {
                            today.tomorrow().map_err(|_| too_far())?
                        }
                    }
                    Day::Weekday(w) => {
                        let ahead = i64::from(
                            (w.to_monday_zero_offset() - today.weekday().to_monday_zero_offset())
                                .rem_euclid(7),
                        );
                        let date = add_days(today, ahead)?;
                        if on(date)? > now {
                            date
                        } else {
                            add_days(date, 7)?
                        }
                    }
                };
                on(date)?
            }
        };
        if at <= now {
            return Err(error(
                &SNOOZE,
                format!(
                    "{} is in the past; snooze to a time ahead",
                    zone.at(at).strftime("%a %-d %b %Y %H:%M")
                ),
            ));
        }
        if at.duration_since(now) > SignedDuration::from_hours(24 * MAX_SNOOZE_DAYS) {
            return Err(too_far());
        }
        Ok(SnoozeUntil::Time(at))
    }
}

/// `date` at `time` on the zone's clock. A time the clock skips (02:30 on
/// the day it springs forward) is read as the same span after the gap
/// (03:30), and a time it shows twice (the fall back) as the first one:
/// RFC 5545's reading, which calendars share.
fn wall_clock(date: Date, time: Time, zone: &Zone) -> Result<Timestamp, CommandError> {
    date.to_datetime(time)
        .to_zoned(zone.tz().clone())
        .map(|z| z.timestamp())
        .map_err(|_| too_far())
}

fn add_days(date: Date, days: i64) -> Result<Date, CommandError> {
    date.checked_add(jiff::Span::new().days(days))
        .map_err(|_| too_far())
}

fn too_far() -> CommandError {
    error(
        &SNOOZE,
        format!("!snooze goes at most {MAX_SNOOZE_DAYS} days ahead"),
    )
}

/// `2h`, `30m`, `1d`, `1h30m`, `2w`, `3days`: number-unit pairs, summed.
pub fn parse_duration(s: &str) -> Option<SignedDuration> {
    let mut total = SignedDuration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let minutes = match &tail[..unit_len] {
            "m" | "min" | "mins" | "minute" | "minutes" => 1,
            "h" | "hr" | "hrs" | "hour" | "hours" => 60,
            "d" | "day" | "days" => 24 * 60,
            "w" | "week" | "weeks" => 7 * 24 * 60,
            _ => return None,
        };
        let add = SignedDuration::from_mins(n.checked_mul(minutes)?);
        total = total.checked_add(add)?;
        rest = &tail[unit_len..];
    }
    Some(total)
}

fn day(word: &str) -> Option<Day> {
    let weekday = match word {
        "today" => return Some(Day::Today),
        "tomorrow" => return Some(Day::Tomorrow),
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tues" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thur" | "thurs" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        w if w.len() == 10 && w.as_bytes()[4] == b'-' => {
            return w.parse::<Date>().ok().map(Day::Date);
        }
        _ => return None,
    };
    Some(Day::Weekday(weekday))
}

/// `9:00`, `09:30`, `17`, `9am`, `5:30pm`.
fn time_of_day(s: &str) -> Result<Time, String> {
    let not_a_time = || {
        format!(
            "{} is not a time of day: write it as 9:00, 17:30 or 5:30pm",
            quoted(s)
        )
    };
    let (clock, half) = if let Some(c) = s.strip_suffix("am") {
        (c, Some(false))
    } else if let Some(c) = s.strip_suffix("pm") {
        (c, Some(true))
    } else {
        (s, None)
    };
    let (h, m) = clock.split_once(':').unwrap_or((clock, "00"));
    let all_digits =
        |p: &str| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(h) || !all_digits(m) || m.len() != 2 {
        return Err(not_a_time());
    }
    let (mut hour, minute): (i8, i8) = (
        h.parse().map_err(|_| not_a_time())?,
        m.parse().map_err(|_| not_a_time())?,
    );
    if let Some(pm) = half {
        if !(1..=12).contains(&hour) {
            return Err(not_a_time());
        }
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
    }
    Time::new(hour, minute, 0, 0).map_err(|_| not_a_time())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::command::ThreadCommand;
    use crate::domain::command::fixtures::*;

    fn snooze(text: &str) -> SnoozeRequest {
        match thread(text) {
            ThreadCommand::Snooze(r) => r,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    fn at(day: Day, h: i8, m: i8) -> SnoozeRequest {
        SnoozeRequest::At {
            day,
            time: Time::new(h, m, 0, 0).unwrap(),
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn durations() {
        for (text, mins) in [
            ("!snooze 2h", 120),
            ("!snooze 30m", 30),
            ("!snooze 1d", 1440),
            ("!snooze 1h30m", 90),
            ("!snooze 2 hours", 120),
            ("!snooze 1 week", 10080),
            ("!SNOOZE 45MIN", 45),
        ] {
            assert_eq!(
                snooze(text),
                SnoozeRequest::For(SignedDuration::from_mins(mins)),
                "{text}"
            );
        }
    }

    #[test]
    fn days_and_times() {
        assert_eq!(snooze("!snooze tomorrow 9:00"), at(Day::Tomorrow, 9, 0));
        assert_eq!(snooze("!snooze tomorrow at 9am"), at(Day::Tomorrow, 9, 0));
        assert_eq!(
            snooze("!snooze monday 8:30"),
            at(Day::Weekday(Weekday::Monday), 8, 30)
        );
        assert_eq!(
            snooze("!snooze Fri 5:30pm"),
            at(Day::Weekday(Weekday::Friday), 17, 30)
        );
        assert_eq!(
            snooze("!snooze 2026-12-24 10:00"),
            at(Day::Date(Date::new(2026, 12, 24).unwrap()), 10, 0)
        );
        assert_eq!(snooze("!snooze 17:00"), at(Day::Next, 17, 0));
        assert_eq!(snooze("!snooze today 12am"), at(Day::Today, 0, 0));
    }

    #[test]
    fn until_the_customer_replies() {
        for text in [
            "!snooze until customer replies",
            "!snooze until the customer replies",
            "!snooze until reply",
            "!snooze Until Reply",
        ] {
            assert_eq!(snooze(text), SnoozeRequest::UntilReply, "{text}");
        }
    }

    #[test]
    fn mistakes_name_the_command_and_what_to_write() {
        for (text, wanted) in [
            ("!snooze", "!snooze needs to know until when"),
            ("!snooze tomorrow 25:00", "\"25:00\" is not a time of day"),
            ("!snooze tomorrow", "!snooze tomorrow needs a time of day"),
            ("!snooze later", "\"later\" is not a time of day"),
            ("!snooze 2 parsecs", "\"2parsecs\" is not a time of day"),
            (
                "!snooze until friday",
                "write \"!snooze until customer replies\"",
            ),
            ("!snooze 13pm", "\"13pm\" is not a time of day"),
            ("!snooze 9:5", "\"9:5\" is not a time of day"),
        ] {
            let e = err(text);
            assert_eq!(e.command, "!snooze", "{text}");
            assert!(e.message.contains(wanted), "{text}: {}", e.message);
            assert!(e.to_string().contains("Usage: !snooze"), "{e}");
        }
        assert_eq!(err("!unsnooze now").command, "!unsnooze");
        assert_eq!(thread("!unsnooze"), ThreadCommand::Unsnooze);
    }

    #[test]
    fn resolving_reads_the_mailbox_zone() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // Saturday 5 December 2026, 10:00 in Berlin.
        let now = ts("2026-12-05T09:00:00Z");
        let t = |r: SnoozeRequest| match r.resolve(now, &berlin).unwrap() {
            SnoozeUntil::Time(t) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(t(snooze("!snooze 2h")), ts("2026-12-05T11:00:00Z"));
        assert_eq!(
            t(snooze("!snooze tomorrow 9:00")),
            ts("2026-12-06T08:00:00Z")
        );
        assert_eq!(t(snooze("!snooze monday 8:30")), ts("2026-12-07T07:30:00Z"));
        // Today is Saturday and 9:00 has passed: next Saturday.
        assert_eq!(t(snooze("!snooze sat 9:00")), ts("2026-12-12T08:00:00Z"));
        // ... but 11:00 is still ahead today.
        assert_eq!(
            t(snooze("!snooze saturday 11:00")),
            ts("2026-12-05T10:00:00Z")
        );
        // A bare time: today if ahead, else tomorrow.
        assert_eq!(t(snooze("!snooze 17:00")), ts("2026-12-05T16:00:00Z"));
        assert_eq!(t(snooze("!snooze 8:00")), ts("2026-12-06T07:00:00Z"));
        assert_eq!(
            t(snooze("!snooze 2026-12-24 10:00")),
            ts("2026-12-24T09:00:00Z")
        );
        assert_eq!(
            snooze("!snooze until reply").resolve(now, &berlin),
            Ok(SnoozeUntil::CustomerReply)
        );
    }

    #[test]
    fn past_and_far_times_are_refused() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let now = ts("2026-12-05T09:00:00Z");
        for (text, wanted) in [
            ("!snooze today 9:00", "Sat 5 Dec 2026 09:00 is in the past"),
            ("!snooze 2026-01-01 10:00", "is in the past"),
            ("!snooze 2028-01-01 10:00", "at most 365 days"),
            ("!snooze 400d", "at most 365 days"),
            ("!snooze 0m", "above zero"),
        ] {
            let e = snooze(text).resolve(now, &berlin).unwrap_err();
            assert_eq!(e.command, "!snooze");
            assert!(e.message.contains(wanted), "{text}: {}", e.message);
        }
    }

    #[test]
    fn tomorrow_2_30_on_the_spring_forward_day_is_3_30_summer_time() {
        // 29 March 2026: Berlin's clocks jump from 02:00 to 03:00.
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let now = ts("2026-03-28T12:00:00Z");
        let SnoozeUntil::Time(t) = snooze("!snooze tomorrow 2:30")
            .resolve(now, &berlin)
            .unwrap()
        else {
            panic!("a time");
        };
        assert_eq!(t, ts("2026-03-29T01:30:00Z"));
        assert_eq!(berlin.at(t).hour(), 3);
        // 9:00 that day is summer time: 07:00 UTC, an hour earlier in UTC
        // than the day before.
        let SnoozeUntil::Time(nine) = snooze("!snooze tomorrow 9:00")
            .resolve(now, &berlin)
            .unwrap()
        else {
            panic!("a time");
        };
        assert_eq!(nine, ts("2026-03-29T07:00:00Z"));
        // A day of 23 hours: "1d" is 24 real hours, so it lands at 14:00.
        let SnoozeUntil::Time(d) = snooze("!snooze 1d").resolve(now, &berlin).unwrap() else {
            panic!("a time");
        };
        assert_eq!(berlin.at(d).hour(), 14);
    }

    #[test]
    fn the_fall_back_hour_is_read_as_its_first_pass() {
        // 25 October 2026: 02:00-03:00 happens twice in Berlin.
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let now = ts("2026-10-24T12:00:00Z");
        let r = snooze("!snooze tomorrow 2:30").resolve(now, &berlin);
        assert_eq!(r, Ok(SnoozeUntil::Time(ts("2026-10-25T00:30:00Z"))));
    }
}
