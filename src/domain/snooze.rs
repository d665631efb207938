//! Snoozes: a ticket hidden from the queue until a time, or until the
//! customer writes again, then brought back with a mention of whoever
//! snoozed it. What a snooze is, how it is stored, when its wake-up timer
//! still stands and what the wake-up says; the command that sets one is
//! `command::snooze`.

use jiff::Timestamp;

use super::ids::{Agent, TicketId};
use super::time::Zone;

/// What `snoozed_until` holds for a snooze that waits for the customer:
/// 9999-12-30T00:00:00Z, about the last day jiff can show in any zone, so
/// "snoozed" is always `snoozed_until IS NOT NULL` and a reader sorting by
/// the column sees these last.
pub const UNTIL_REPLY_MS: i64 = 253_402_128_000_000;

/// The longest snooze: a year. Past that it is a forgotten ticket, not a
/// snooze.
pub const MAX_SNOOZE_DAYS: i64 = 365;

/// Until when a ticket sleeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnoozeUntil {
    /// A time; the customer's mail wakes it earlier.
    Time(Timestamp),
    /// The customer's next (non-automatic) mail.
    CustomerReply,
}

/// A ticket's snooze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snooze {
    pub until: SnoozeUntil,
    pub by: Agent,
}

impl SnoozeUntil {
    /// As stored: `(snoozed_until, snooze_until_reply)`.
    pub fn to_columns(self) -> (i64, bool) {
        match self {
            SnoozeUntil::Time(t) => (t.as_millisecond(), false),
            SnoozeUntil::CustomerReply => (UNTIL_REPLY_MS, true),
        }
    }

    /// From the stored columns, or why they make no sense.
    pub fn from_columns(until_ms: i64, until_reply: bool) -> Result<SnoozeUntil, String> {
        if until_reply {
            return Ok(SnoozeUntil::CustomerReply);
        }
        Timestamp::from_millisecond(until_ms)
            .map(SnoozeUntil::Time)
            .map_err(|e| format!("snoozed_until {until_ms}: {e}"))
    }

    /// When the wake-up timer fires, Unix ms; `None`: only a reply wakes it.
    pub fn wake_at_ms(self) -> Option<i64> {
        match self {
            SnoozeUntil::Time(t) => Some(t.as_millisecond()),
            SnoozeUntil::CustomerReply => None,
        }
    }

    /// "until Mon 7 Dec 09:00 Europe/Berlin", "until the customer replies".
    pub fn describe(self, zone: &Zone) -> String {
        match self {
            SnoozeUntil::Time(t) => {
                format!("until {} {zone}", zone.at(t).strftime("%a %-d %b %Y %H:%M"))
            }
            SnoozeUntil::CustomerReply => "until the customer replies".to_owned(),
        }
    }
}

/// Whether a wake-up timer queued for `due_ms` still stands: the ticket is
/// snoozed until exactly then. A snooze changed, cancelled or woken early by
/// the customer leaves its old timer standing for nothing, and the timer
/// then does nothing (it may also run twice after a crash).
pub fn timer_stands(snooze: Option<&Snooze>, due_ms: i64) -> bool {
    snooze.is_some_and(|s| s.until.wake_at_ms() == Some(due_ms))
}

/// Why a snoozed ticket woke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// Its time came.
    Timer,
    /// The customer wrote.
    CustomerReplied,
    /// A teammate said `!unsnooze`.
    Unsnoozed(Agent),
}

impl Wake {
    /// For the audit line.
    pub fn details(&self) -> String {
        match self {
            Wake::Timer => "snooze time reached".to_owned(),
            Wake::CustomerReplied => "the customer replied".to_owned(),
            Wake::Unsnoozed(a) => format!("unsnoozed by {a}"),
        }
    }
}

/// Who the wake-up calls: the snoozer, and the owner when that is someone
/// else (they are the one who has to act).
pub fn wake_mentions(snooze: &Snooze, owner: Option<&Agent>) -> Vec<Agent> {
    let mut who = vec![snooze.by.clone()];
    if let Some(o) = owner
        && *o != snooze.by
    {
        who.push(o.clone());
    }
    who
}

/// The thread's wake-up message. The mentioned agents are named in the
/// text (Slack turns `slack:U…` into a mention; Matrix clients show the id
/// and the message's `m.mentions` calls them).
pub fn wake_text(ticket: TicketId, wake: &Wake, mentions: &[Agent]) -> String {
    let names: Vec<&str> = mentions.iter().map(Agent::as_str).collect();
    let names = names.join(" ");
    match wake {
        Wake::Timer => format!("⏰ {ticket} is back from its snooze: {names}"),
        Wake::CustomerReplied => {
            format!("⏰ {ticket} woke early from its snooze: the customer replied. {names}")
        }
        Wake::Unsnoozed(by) => format!("⏰ {ticket} is back in the queue (unsnoozed by {by})."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(s: &str) -> Agent {
        Agent::parse(s).unwrap()
    }

    #[test]
    fn columns_round_trip_and_reply_snoozes_sort_last() {
        let t: Timestamp = "2026-12-24T09:00:00Z".parse().unwrap();
        for until in [SnoozeUntil::Time(t), SnoozeUntil::CustomerReply] {
            let (ms, reply) = until.to_columns();
            assert_eq!(SnoozeUntil::from_columns(ms, reply), Ok(until));
        }
        assert!(SnoozeUntil::CustomerReply.to_columns().0 > t.as_millisecond());
        assert!(Timestamp::from_millisecond(UNTIL_REPLY_MS).is_ok());
        assert!(SnoozeUntil::from_columns(i64::MAX, false).is_err());
    }

    #[test]
    fn only_the_current_snooze_timer_stands() {
        let t: Timestamp = "2026-12-24T09:00:00Z".parse().unwrap();
        let s = Snooze {
            until: SnoozeUntil::Time(t),
            by: agent("@a:x"),
        };
        let due = t.as_millisecond();
        assert!(timer_stands(Some(&s), due));
        // Changed to another time, cancelled, or waiting for a reply: the
        // old timer does nothing.
        assert!(!timer_stands(Some(&s), due - 1));
        assert!(!timer_stands(None, due));
        let reply = Snooze {
            until: SnoozeUntil::CustomerReply,
            by: agent("@a:x"),
        };
        assert!(!timer_stands(Some(&reply), due));
        assert!(!timer_stands(Some(&reply), UNTIL_REPLY_MS));
    }

    #[test]
    fn the_wake_up_calls_the_snoozer_and_a_different_owner() {
        let s = Snooze {
            until: SnoozeUntil::CustomerReply,
            by: agent("@a:x"),
        };
        assert_eq!(wake_mentions(&s, None), [agent("@a:x")]);
        assert_eq!(wake_mentions(&s, Some(&agent("@a:x"))), [agent("@a:x")]);
        assert_eq!(
            wake_mentions(&s, Some(&agent("@b:x"))),
            [agent("@a:x"), agent("@b:x")]
        );
        let text = wake_text(TicketId::new(7), &Wake::Timer, &wake_mentions(&s, None));
        assert_eq!(text, "⏰ #7 is back from its snooze: @a:x");
    }

    #[test]
    fn descriptions_read_in_the_mailbox_zone() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        let t: Timestamp = "2026-12-07T08:00:00Z".parse().unwrap();
        assert_eq!(
            SnoozeUntil::Time(t).describe(&berlin),
            "until Mon 7 Dec 2026 09:00 Europe/Berlin"
        );
        assert_eq!(
            SnoozeUntil::CustomerReply.describe(&berlin),
            "until the customer replies"
        );
    }
}
