//! `!mailroom stats [day|week|month] [@person|#tag] [business]` (and
//! Slack's `/mailroom stats …`): the team's figures for the current period,
//! for everyone, one teammate or one tag; with `business`, durations count
//! only the mailboxes' business hours. The words may come in any order.

use super::thread::parse_user_ref;
use super::{CommandError, Spec, UserRef, error, quoted, spec};
use crate::domain::analytics::{Hours, PeriodKind};
use crate::domain::ids::Tag;

pub(super) const MAILROOM_STATS: Spec = spec(
    "stats",
    "!mailroom stats",
    "!mailroom stats [day|week|month] [@person|#tag] [business]",
);

/// What `!mailroom stats` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// The current day, week or month (week when not said).
    pub period: PeriodKind,
    pub filter: StatsFilter,
    /// Which hours durations count (wall-clock when not said).
    pub hours: Hours,
}

/// Whose tickets the figures are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsFilter {
    Everyone,
    /// The tickets a teammate owns.
    Person(UserRef),
    /// The tickets carrying a tag.
    Tag(Tag),
}

pub(super) fn parse_stats<'a>(
    words: impl Iterator<Item = &'a str>,
) -> Result<StatsQuery, CommandError> {
    let mut period = None;
    let mut filter = StatsFilter::Everyone;
    let mut hours = None;
    for word in words {
        if let Some(name) = word.strip_prefix('#') {
            let tag = Tag::parse(name).map_err(|e| {
                error(
                    &MAILROOM_STATS,
                    format!("{} is not a tag: {}", quoted(word), e.reason),
                )
            })?;
            set_filter(&mut filter, StatsFilter::Tag(tag), word)?;
        } else if word.starts_with(['@', '<']) {
            let user = parse_user_ref(word).map_err(|why| error(&MAILROOM_STATS, why))?;
            set_filter(&mut filter, StatsFilter::Person(user), word)?;
        } else if let Some(kind) = PeriodKind::parse(word) {
            if period.replace(kind).is_some() {
                return Err(error(
                    &MAILROOM_STATS,
                    format!(
                        "!mailroom stats takes one period (got another: {})",
                        quoted(word)
                    ),
                ));
            }
        } else if let Some(h) = Hours::parse(word) {
            if hours.replace(h).is_some() {
                return Err(error(
                    &MAILROOM_STATS,
                    format!(
                        "!mailroom stats takes business or wall once (got another: {})",
                        quoted(word)
                    ),
                ));
            }
        } else {
            return Err(error(
                &MAILROOM_STATS,
                format!(
                    "{} is neither a period, a filter nor hours: write day, week or month, \
                     @person or #tag, business or wall",
                    quoted(word)
                ),
            ));
        }
    }
    Ok(StatsQuery {
        period: period.unwrap_or(PeriodKind::Week),
        filter,
        hours: hours.unwrap_or_default(),
    })
}

fn set_filter(filter: &mut StatsFilter, new: StatsFilter, word: &str) -> Result<(), CommandError> {
    if *filter != StatsFilter::Everyone {
        return Err(error(
            &MAILROOM_STATS,
            format!(
                "!mailroom stats takes one @person or #tag (got another: {})",
                quoted(word)
            ),
        ));
    }
    *filter = new;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::domain::command::{Parsed, RoomCommand, parse};

    use super::*;

    fn stats(text: &str) -> Result<StatsQuery, String> {
        match parse(text) {
            Ok(Parsed::Room(RoomCommand::Stats(q))) => Ok(q),
            Ok(other) => Err(format!("not stats: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn a_period_and_a_filter_in_any_order() {
        assert_eq!(
            stats("!mailroom stats"),
            Ok(StatsQuery {
                period: PeriodKind::Week,
                filter: StatsFilter::Everyone,
                hours: Hours::Wall,
            })
        );
        assert_eq!(
            stats("!mailroom stats Month #billing"),
            Ok(StatsQuery {
                period: PeriodKind::Month,
                filter: StatsFilter::Tag(Tag::parse("billing").unwrap()),
                hours: Hours::Wall,
            })
        );
        assert_eq!(
            stats("!mailroom stats @alice:example.org day"),
            Ok(StatsQuery {
                period: PeriodKind::Day,
                filter: StatsFilter::Person(UserRef::Matrix("@alice:example.org".into())),
                hours: Hours::Wall,
            })
        );
        assert_eq!(
            stats("!mailroom stats <@U024BE7LH> week").map(|q| q.filter),
            Ok(StatsFilter::Person(UserRef::SlackUser("U024BE7LH".into())))
        );
        assert_eq!(
            stats("!mailroom stats business week"),
            Ok(StatsQuery {
                period: PeriodKind::Week,
                filter: StatsFilter::Everyone,
                hours: Hours::Business,
            })
        );
        assert_eq!(
            stats("!mailroom stats month #vip Business").map(|q| q.hours),
            Ok(Hours::Business)
        );
    }

    #[test]
    fn wrong_words_are_named_with_the_usage() {
        let e = stats("!mailroom stats year").unwrap_err();
        assert!(
            e.contains("\"year\" is neither a period, a filter nor hours")
                && e.contains("Usage: !mailroom stats [day|week|month] [@person|#tag] [business]"),
            "{e}"
        );
        let e = stats("!mailroom stats business wall").unwrap_err();
        assert!(e.contains("business or wall once"), "{e}");
        let e = stats("!mailroom stats week month").unwrap_err();
        assert!(e.contains("one period"), "{e}");
        let e = stats("!mailroom stats #a #b").unwrap_err();
        assert!(e.contains("one @person or #tag"), "{e}");
        let e = stats("!mailroom stats #").unwrap_err();
        assert!(e.contains("\"#\" is not a tag"), "{e}");
        let e = stats("!mailroom stats @:example.org").unwrap_err();
        assert!(e.contains("Usage: !mailroom stats"), "{e}");
        let e = stats("!mailroom stat").unwrap_err();
        assert!(e.contains("did you mean !mailroom stats"), "{e}");
    }
}
