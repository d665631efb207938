//! Unclaimed reminders: a nudge in the thread when a ticket has waited N
//! minutes with nobody on it, once or every so often. The settings
//! (`[mailbox.reminders]`), when each round is due and whether a ticket
//! still deserves it.

use std::time::Duration;

use jiff::SignedDuration;
use serde::{Deserialize, Deserializer};

use super::ids::TicketId;
use super::settings::{int, lenient, text};
use super::ticket::TicketState;

/// `[mailbox.reminders]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReminderSettings {
    /// Nudge when a ticket has been unclaimed this long (`"30m"`, `"2h"`);
    /// not given: no nudges.
    #[serde(default, deserialize_with = "span")]
    pub unclaimed_after: Option<Duration>,
    /// Nudge again this long after each nudge, while it stays unclaimed.
    #[serde(default, deserialize_with = "span")]
    pub repeat_every: Option<Duration>,
    /// At most this many nudges per ticket (default 1, or 3 with
    /// `repeat_every`).
    #[serde(default, deserialize_with = "int::<1, 100, _, _>")]
    pub max_nudges: u32,
    /// Where the nudge goes: the ticket's thread (default), the room, or both.
    #[serde(default, deserialize_with = "lenient")]
    pub nudge_in: NudgeIn,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NudgeIn {
    #[default]
    Thread,
    Room,
    Both,
}

impl NudgeIn {
    pub fn thread(self) -> bool {
        matches!(self, NudgeIn::Thread | NudgeIn::Both)
    }
    pub fn room(self) -> bool {
        matches!(self, NudgeIn::Room | NudgeIn::Both)
    }
}

impl ReminderSettings {
    /// How many nudges a ticket may get.
    pub fn rounds(&self) -> u32 {
        match (self.max_nudges, self.repeat_every) {
            (0, None) => 1,
            (0, Some(_)) => 3,
            (_, None) => 1,
            (n, Some(_)) => n,
        }
    }

    /// When nudge `round` (from 1) of a ticket created at `created_ms` is
    /// due, Unix ms; `None` when there is no such round.
    pub fn due_ms(&self, created_ms: i64, round: u32) -> Option<i64> {
        let after = self.unclaimed_after?;
        if round == 0 || round > self.rounds() {
            return None;
        }
        let repeat = self.repeat_every.unwrap_or_default();
        let total = after + repeat * (round - 1);
        Some(created_ms.saturating_add(i64::try_from(total.as_millis()).ok()?))
    }
}

/// Whether a ticket is still waiting for someone to take it: open, nobody
/// on it, not snoozed.
pub fn still_unclaimed(state: &TicketState, snoozed: bool) -> bool {
    *state == TicketState::Open && !snoozed
}

/// The nudge's words; `waited` is how long the ticket has been unclaimed.
pub fn nudge_text(ticket: TicketId, subject: &str, waited: SignedDuration) -> String {
    let subject: String = match subject.char_indices().nth(80) {
        Some((cut, _)) => format!("{}…", &subject[..cut]),
        None => subject.to_owned(),
    };
    format!(
        "🔔 {ticket} has been waiting {} with nobody on it: “{subject}”. React to claim it, or !snooze it.",
        super::digest::age(waited)
    )
}

/// A duration in words (`"30m"`, `"2h"`, `"1h30m"`, `"1d"`), at least a
/// minute.
fn span<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    text(d, |s: String| {
        let d = super::command::parse_duration(&s.trim().to_lowercase().replace(' ', ""))
            .filter(|d| d.as_secs() >= 60)
            .and_then(|d| Duration::try_from(d).ok())
            .ok_or_else(|| {
                format!("expected a duration such as \"30m\", \"2h\" or \"1d\", got {s:?}")
            })?;
        Ok(Some(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::Agent;

    fn settings(toml_text: &str) -> ReminderSettings {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn rounds_follow_the_first_wait_and_the_repeat() {
        let once = settings("unclaimed_after = \"30m\"");
        assert_eq!(once.rounds(), 1);
        assert_eq!(once.due_ms(1_000, 1), Some(1_000 + 30 * 60_000));
        assert_eq!(once.due_ms(1_000, 2), None);
        let again = settings("unclaimed_after = \"30m\"\nrepeat_every = \"1h\"");
        assert_eq!(again.rounds(), 3);
        assert_eq!(again.due_ms(0, 3), Some((30 + 120) * 60_000));
        assert_eq!(again.due_ms(0, 4), None);
        let two = settings("unclaimed_after = \"1h30m\"\nrepeat_every = \"1d\"\nmax_nudges = 2");
        assert_eq!(two.due_ms(0, 2), Some((90 + 1440) * 60_000));
        assert_eq!(two.due_ms(0, 3), None);
        assert_eq!(ReminderSettings::default().due_ms(0, 1), None);
        assert_eq!(settings("nudge_in = \"both\"").nudge_in, NudgeIn::Both);
    }

    #[test]
    fn a_bad_duration_says_what_to_write() {
        let e = toml::from_str::<ReminderSettings>("unclaimed_after = \"soon\"").unwrap_err();
        assert!(
            e.to_string()
                .contains("expected a duration such as \"30m\""),
            "{e}"
        );
        assert!(toml::from_str::<ReminderSettings>("unclaimed_after = \"10s\"").is_err());
    }

    #[test]
    fn only_open_unsnoozed_tickets_are_nudged() {
        assert!(still_unclaimed(&TicketState::Open, false));
        assert!(!still_unclaimed(&TicketState::Open, true));
        let by = Agent::parse("@a:x").unwrap();
        assert!(!still_unclaimed(&TicketState::Claimed { by }, false));
        assert!(!still_unclaimed(
            &TicketState::Pending { owner: None },
            false
        ));
        assert!(!still_unclaimed(&TicketState::Spam, false));
        let text = nudge_text(TicketId::new(3), "Help", SignedDuration::from_mins(35));
        assert!(
            text.starts_with("🔔 #3 has been waiting 35m with nobody on it"),
            "{text}"
        );
    }
}
