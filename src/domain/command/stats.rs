//! `!mailroom stats [day|week|month] [@person|#tag]` (and Slack's
//! `/mailroom stats …`): the team's figures for the current period, for
//! everyone, one teammate or one tag. The words may come in any order.

use super::thread::parse_user_ref;
use super::{CommandError, Spec, UserRef, error, quoted, spec};
use crate::domain::analytics::PeriodKind;
use crate::domain::ids::Tag;

pub(super) const MAILROOM_STATS: Spec = spec(
    "stats",
    "!mailroom stats",
    "!mailroom stats [day|week|month] [@person|#tag]",
);

/// What `!mailroom stats` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// The current day, week or month (week when not said).
    pub period: PeriodKind,
    pub filter: StatsFilter,
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
        } else {
            return Err(error(
                &MAILROOM_STATS,
                format!(
                    "{} is neither a period nor a filter: write day, week or month, \
                     @person or #tag",
                    quoted(word)
                ),
            ));
        }
    }
    Ok(StatsQuery {
        period: period.unwrap_or(PeriodKind::Week),
        filter,
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
                filter: StatsFilter::Everyone
            })
        );
        assert_eq!(
            stats("!mailroom stats Month #billing"),
            Ok(StatsQuery {
                period: PeriodKind::Month,
                filter: StatsFilter::Tag(Tag::parse("billing").unwrap())
            })
        );
        assert_eq!(
            stats("!mailroom stats @alice:example.org day"),
            Ok(StatsQuery {
                period: PeriodKind::Day,
                filter: StatsFilter::Person(UserRef::Matrix("@alice:example.org".into()))
            })
        );
        assert_eq!(
            stats("!mailroom stats <@U024BE7LH> week").map(|q| q.filter),
            Ok(StatsFilter::Person(UserRef::SlackUser("U024BE7LH".into())))
        );
    }

    #[test]
    fn wrong_words_are_named_with_the_usage() {
        let e = stats("!mailroom stats year").unwrap_err();
        assert!(
            e.contains("\"year\" is neither a period nor a filter")
                && e.contains("Usage: !mailroom stats [day|week|month] [@person|#tag]"),
            "{e}"
        );
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
