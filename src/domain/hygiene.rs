//! Mail hygiene rules: when mail must never be answered automatically
//! (RFC 3834 §2), and when one sender's mail is a loop.

use std::time::Duration;

use super::email::AutoKind;
use super::ids::EmailAddress;

/// Why mailroom will not answer a mail automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suppression {
    /// The mail is itself automatic: an auto-reply (`Auto-Submitted` other
    /// than `no`), a bounce, list mail (`List-Id`, `Precedence:
    /// bulk/list/junk`), or sent with the null envelope sender.
    Automatic(AutoKind),
    /// From a mailer daemon, postmaster, list robot or no-reply address.
    RobotSender,
    /// The sender is in a mail loop.
    Loop,
    /// The sender was answered automatically less than the interval ago.
    TooSoon,
}

impl Suppression {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppression::Automatic(k) => k.as_str(),
            Suppression::RobotSender => "robot sender",
            Suppression::Loop => "mail loop",
            Suppression::TooSoon => "answered recently",
        }
    }
}

/// Local parts that never belong to a person reading replies (RFC 3834 §2:
/// "MAILER-DAEMON", owner-/-request addresses; and the no-reply family).
pub fn is_robot_address(address: &EmailAddress) -> bool {
    let local = address.local().to_ascii_lowercase();
    let local = local.split('+').next().unwrap_or_default();
    matches!(
        local,
        "mailer-daemon"
            | "postmaster"
            | "mail-daemon"
            | "listserv"
            | "majordomo"
            | "bounce"
            | "bounces"
            | "noreply"
            | "no-reply"
            | "donotreply"
            | "do-not-reply"
            | "no_reply"
    ) || local.starts_with("owner-")
        || local.ends_with("-request")
        || local.ends_with("-owner")
        || local.ends_with("-bounces")
}

/// Whether an automatic answer to a mail is allowed, and if not, why.
pub fn may_answer_automatically(
    auto: Option<AutoKind>,
    from: &EmailAddress,
) -> Result<(), Suppression> {
    if let Some(kind) = auto {
        return Err(Suppression::Automatic(kind));
    }
    if is_robot_address(from) {
        return Err(Suppression::RobotSender);
    }
    Ok(())
}

/// More than `max_messages` from one sender within `window` is a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopLimit {
    pub max_messages: u32,
    pub window: Duration,
}

impl LoopLimit {
    pub fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)
    }
}

/// What the store knows about a sender when one more of their mails arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopFacts {
    /// Their mails stored within the window before this one.
    pub recent: u32,
    /// When the last of their mails was filed quietly as part of a loop.
    pub last_quiet_ms: Option<i64>,
}

/// What to do with one more mail from a sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopVerdict {
    /// Not a loop: a ticket or follow-up as usual.
    Normal,
    /// This mail starts a loop: store it quietly and tell the room, once.
    Started,
    /// The loop goes on: store it quietly, say nothing.
    Continuing,
}

impl LoopVerdict {
    pub fn is_loop(self) -> bool {
        !matches!(self, LoopVerdict::Normal)
    }
}

/// Decides whether a mail arriving at `now_ms` is part of a loop. A loop
/// ends by itself: once the sender's rate falls to the limit, their mail
/// is normal again, and a later burst is a new loop, told again.
pub fn judge_loop(facts: LoopFacts, limit: LoopLimit, now_ms: i64) -> LoopVerdict {
    if facts.recent.saturating_add(1) <= limit.max_messages {
        return LoopVerdict::Normal;
    }
    match facts.last_quiet_ms {
        Some(at) if now_ms.saturating_sub(at) <= limit.window_ms() => LoopVerdict::Continuing,
        _ => LoopVerdict::Started,
    }
}

/// The room's notice when a loop starts.
pub fn loop_notice(
    sender: &EmailAddress,
    count: u32,
    limit: LoopLimit,
    ticket: super::ids::TicketId,
) -> String {
    let minutes = limit.window.as_secs() / 60;
    format!(
        "🔁 Mail loop: {count} messages from {sender} in {minutes} minutes; mailroom stopped posting them \
         and answers none of them automatically until the rate drops. They are stored: \
         `mailroom tickets show {}`",
        ticket.get()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    const LIMIT: LoopLimit = LoopLimit {
        max_messages: 5,
        window: Duration::from_secs(600),
    };

    #[test]
    fn the_sixth_mail_in_ten_minutes_starts_a_loop_told_once() {
        let quiet = |recent, last| LoopFacts {
            recent,
            last_quiet_ms: last,
        };
        for recent in 0..5 {
            assert_eq!(
                judge_loop(quiet(recent, None), LIMIT, 1_000_000),
                LoopVerdict::Normal
            );
        }
        assert_eq!(
            judge_loop(quiet(5, None), LIMIT, 1_000_000),
            LoopVerdict::Started
        );
        // The next ones, while the last quiet one is within the window.
        assert_eq!(
            judge_loop(quiet(6, Some(999_000)), LIMIT, 1_000_000),
            LoopVerdict::Continuing
        );
        // The rate dropped: normal again.
        assert_eq!(
            judge_loop(quiet(2, Some(999_000)), LIMIT, 1_000_000),
            LoopVerdict::Normal
        );
        // A new burst long after the last one is a new loop.
        assert_eq!(
            judge_loop(quiet(9, Some(1_000_000 - 600_001)), LIMIT, 1_000_000),
            LoopVerdict::Started
        );
        assert!(LoopVerdict::Started.is_loop() && !LoopVerdict::Normal.is_loop());
    }

    #[test]
    fn a_limit_of_one_makes_the_second_mail_a_loop() {
        let limit = LoopLimit {
            max_messages: 1,
            window: Duration::from_secs(60),
        };
        let f = |recent| LoopFacts {
            recent,
            last_quiet_ms: None,
        };
        assert_eq!(judge_loop(f(0), limit, 0), LoopVerdict::Normal);
        assert_eq!(judge_loop(f(1), limit, 0), LoopVerdict::Started);
    }

    #[test]
    fn automatic_mail_and_robots_are_never_answered() {
        let person = addr("carol@customer.example");
        assert_eq!(may_answer_automatically(None, &person), Ok(()));
        for kind in [
            AutoKind::AutoReply,
            AutoKind::Bounce,
            AutoKind::List,
            AutoKind::NullSender,
        ] {
            assert_eq!(
                may_answer_automatically(Some(kind), &person),
                Err(Suppression::Automatic(kind))
            );
        }
        for robot in [
            "MAILER-DAEMON@mx.example",
            "postmaster@customer.example",
            "noreply@shop.example",
            "no-reply+abc@shop.example",
            "owner-list@lists.example",
            "list-request@lists.example",
            "list-bounces@lists.example",
        ] {
            assert_eq!(
                may_answer_automatically(None, &addr(robot)),
                Err(Suppression::RobotSender),
                "{robot}"
            );
        }
        // Names that merely contain a robot word are people.
        assert_eq!(
            may_answer_automatically(None, &addr("bouncer@club.example")),
            Ok(())
        );
    }

    #[test]
    fn the_loop_notice_says_who_how_many_and_where_they_are() {
        let text = loop_notice(
            &addr("robot@x.example"),
            23,
            LIMIT,
            super::super::ids::TicketId::new(7),
        );
        assert!(
            text.starts_with("🔁 Mail loop: 23 messages from robot@x.example in 10 minutes"),
            "{text}"
        );
        assert!(text.ends_with("`mailroom tickets show 7`"), "{text}");
    }
}
