//! Commands about the mailbox as a whole: `!mailroom …` in a room, and
//! Slack's `/mailroom …` slash command, which can also reply to a ticket.

use super::thread::parse_reply;
use super::{
    CommandError, ListFilter, MAILROOM, MAILROOM_BOARD, MAILROOM_DASHBOARD, MAILROOM_HELP,
    MAILROOM_LIST, MAILROOM_SHOW, MAILROOM_SUBCOMMANDS, RoomCommand, Spec, ThreadCommand, closest,
    error, help_text, quoted,
};
use crate::domain::ids::TicketId;

/// What `/mailroom …` asks for (Slack's slash command, typed anywhere:
/// Slack does not allow slash commands in threads, so a reply names its
/// ticket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlashCommand {
    Room(RoomCommand),
    /// A thread command that names its ticket (`/mailroom snooze 42 2h`,
    /// `/mailroom unsnooze 42`).
    Ticket {
        ticket: TicketId,
        command: ThreadCommand,
    },
    Reply {
        ticket: TicketId,
        text: String,
        force: bool,
    },
}

pub(super) const SLASH_USAGE: &str = "/mailroom reply <ticket> <text> | /mailroom list [open|mine|unclaimed|pending|snoozed] | /mailroom show <ticket> | /mailroom board | /mailroom stats [day|week|month] [@person|#tag] [business] | /mailroom dashboard | /mailroom help";

/// Reads the text after `/mailroom`. Errors are sentences for the teammate,
/// naming the slash command's own forms.
pub fn parse_slash(text: &str) -> Result<SlashCommand, String> {
    let slash = |e: CommandError| e.to_string().replace("!mailroom", "/mailroom");
    let t = text.trim_start();
    let end = t.find(char::is_whitespace).unwrap_or(t.len());
    let (word, rest) = t.split_at(end);
    let force = match word.to_ascii_lowercase().as_str() {
        "reply" => false,
        "reply!" => true,
        "snooze" | "unsnooze" => return parse_slash_ticket(word, rest),
        _ => return parse_mailroom(text).map(SlashCommand::Room).map_err(slash),
    };
    let rest = rest.trim_start();
    let id_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (arg, body) = rest.split_at(id_end);
    if arg.is_empty() {
        return Err(format!(
            "/mailroom {0} needs a ticket number and the text (usage: /mailroom {0} <ticket> <text>)",
            word.to_ascii_lowercase()
        ));
    }
    let ticket = TicketId::parse(arg).map_err(|e| {
        format!(
            "{} is not a ticket: {} (usage: {SLASH_USAGE})",
            quoted(arg),
            e.reason
        )
    })?;
    match parse_reply(body, force) {
        Ok(ThreadCommand::Reply { attach: true, .. }) => Err(
            "--attach works in the ticket's thread only (!reply --attach), where the files are"
                .to_owned(),
        ),
        Ok(ThreadCommand::Reply { text, force, .. }) => Ok(SlashCommand::Reply {
            ticket,
            text,
            force,
        }),
        Ok(_) => Err(format!("usage: {SLASH_USAGE}")),
        Err(e) => Err(e
            .to_string()
            .replace("!reply! ", "/mailroom reply! <ticket> ")
            .replace("!reply ", "/mailroom reply <ticket> ")),
    }
}

/// `/mailroom snooze <ticket> <when>` and `/mailroom unsnooze <ticket>`:
/// the thread command after the ticket, read as if typed in its thread.
fn parse_slash_ticket(word: &str, rest: &str) -> Result<SlashCommand, String> {
    let word = word.to_ascii_lowercase();
    let rest = rest.trim_start();
    let id_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (arg, tail) = rest.split_at(id_end);
    let usage = match word.as_str() {
        "snooze" => "/mailroom snooze <ticket> <2h|tomorrow 9:00|until customer replies>",
        _ => "/mailroom unsnooze <ticket>",
    };
    if arg.is_empty() {
        return Err(format!(
            "/mailroom {word} needs a ticket number (usage: {usage})"
        ));
    }
    let ticket = TicketId::parse(arg).map_err(|e| {
        format!(
            "{} is not a ticket: {} (usage: {usage})",
            quoted(arg),
            e.reason
        )
    })?;
    match super::parse(&format!("!{word} {tail}")) {
        Ok(super::Parsed::Thread(command)) => Ok(SlashCommand::Ticket { ticket, command }),
        Ok(_) => Err(format!("usage: {usage}")),
        Err(e) => Err(e
            .to_string()
            .replace(&format!("!{word}"), &format!("/mailroom {word} <ticket>"))),
    }
}

/// What `/mailroom help` answers.
pub fn slash_help_text() -> String {
    format!(
        "/mailroom reply <ticket> <text>   reply to the customer from the shared address\n\
/mailroom reply! <ticket> <text>  reply even if someone else claimed it or new mail came\n\
/mailroom list [open|mine|unclaimed|pending|snoozed]   list tickets\n\
/mailroom show <ticket>           show a ticket\n\
/mailroom snooze <ticket> <when>  snooze a ticket (2h, tomorrow 9:00, until customer replies)\n\
/mailroom unsnooze <ticket>       bring a snoozed ticket back\n\
/mailroom board                   show this channel's board (only to you)\n\
/mailroom stats [day|week|month] [@person|#tag] [business]   the team's figures (only you see them) and a chart\n\
/mailroom dashboard               get a sign-in link to the web dashboard (only you see it)\n\
/mailroom help                    show this list\n\
Or use the \u{201c}Reply by email\u{201d} shortcut on a ticket's message.\n\n{}",
        help_text()
    )
}

pub(super) fn parse_mailroom(rest: &str) -> Result<RoomCommand, CommandError> {
    let mut words = rest.split_whitespace();
    // A bare `!mailroom` is someone asking what it can do.
    let Some(sub) = words.next() else {
        return Ok(RoomCommand::Help);
    };
    let command = match sub.to_ascii_lowercase().as_str() {
        "list" => {
            let filter = match words.next() {
                None => ListFilter::Open,
                Some(f) => ListFilter::ALL
                    .into_iter()
                    .find(|lf| lf.as_str().eq_ignore_ascii_case(f))
                    .ok_or_else(|| {
                        error(
                            &MAILROOM_LIST,
                            format!(
                                "{} is not a list filter: use open, mine, unclaimed, pending or snoozed",
                                quoted(f)
                            ),
                        )
                    })?,
            };
            expect_end(&MAILROOM_LIST, words)?;
            RoomCommand::List(filter)
        }
        "show" => {
            let Some(arg) = words.next() else {
                return Err(error(
                    &MAILROOM_SHOW,
                    "!mailroom show needs a ticket number",
                ));
            };
            let id = TicketId::parse(arg).map_err(|e| {
                error(
                    &MAILROOM_SHOW,
                    format!("{} is not a ticket: {}", quoted(arg), e.reason),
                )
            })?;
            expect_end(&MAILROOM_SHOW, words)?;
            RoomCommand::Show(id)
        }
        "board" => {
            expect_end(&MAILROOM_BOARD, words)?;
            RoomCommand::Board
        }
        "stats" => RoomCommand::Stats(super::stats::parse_stats(words)?),
        "dashboard" => {
            expect_end(&MAILROOM_DASHBOARD, words)?;
            RoomCommand::Dashboard
        }
        "help" => {
            expect_end(&MAILROOM_HELP, words)?;
            RoomCommand::Help
        }
        other => {
            let message = match closest(other, &MAILROOM_SUBCOMMANDS) {
                Some(spec) => format!(
                    "unknown subcommand !mailroom {sub} — did you mean {}?",
                    spec.command
                ),
                None => format!("unknown subcommand !mailroom {}", quoted(sub)),
            };
            return Err(error(&MAILROOM, message));
        }
    };
    Ok(command)
}

pub(super) fn expect_end<'a>(
    spec: &'static Spec,
    mut words: impl Iterator<Item = &'a str>,
) -> Result<(), CommandError> {
    match words.next() {
        None => Ok(()),
        Some(extra) => Err(error(
            spec,
            format!("{} has an extra argument {}", spec.command, quoted(extra)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::command::fixtures::*;

    #[test]
    fn slash_snooze_names_its_ticket() {
        use crate::domain::command::SnoozeRequest;
        let ticket = TicketId::parse("42").unwrap();
        assert_eq!(
            parse_slash("snooze 42 until customer replies"),
            Ok(SlashCommand::Ticket {
                ticket,
                command: ThreadCommand::Snooze(SnoozeRequest::UntilReply)
            })
        );
        assert_eq!(
            parse_slash("unsnooze #42"),
            Ok(SlashCommand::Ticket {
                ticket,
                command: ThreadCommand::Unsnooze
            })
        );
        assert!(matches!(
            parse_slash("snooze 42 2h"),
            Ok(SlashCommand::Ticket {
                command: ThreadCommand::Snooze(SnoozeRequest::For(_)),
                ..
            })
        ));
        let e = parse_slash("snooze 42 tomorrow 25:00").unwrap_err();
        assert!(
            e.contains("\"25:00\" is not a time of day") && e.contains("/mailroom snooze <ticket>"),
            "{e}"
        );
        assert!(
            parse_slash("snooze")
                .unwrap_err()
                .contains("needs a ticket number")
        );
        assert!(
            parse_slash("snooze x 2h")
                .unwrap_err()
                .contains("is not a ticket")
        );
        assert_eq!(
            parse_slash("list snoozed"),
            Ok(SlashCommand::Room(RoomCommand::List(ListFilter::Snoozed)))
        );
    }

    #[test]
    fn slash_commands_name_their_ticket() {
        assert_eq!(
            parse_slash("reply #12 Thanks,\nwe refunded you."),
            Ok(SlashCommand::Reply {
                ticket: TicketId::parse("12").unwrap(),
                text: "Thanks,\nwe refunded you.".into(),
                force: false
            })
        );
        assert!(matches!(
            parse_slash("REPLY! 3 ok"),
            Ok(SlashCommand::Reply { force: true, .. })
        ));
        assert_eq!(
            parse_slash("list mine"),
            Ok(SlashCommand::Room(RoomCommand::List(ListFilter::Mine)))
        );
        assert_eq!(parse_slash(""), Ok(SlashCommand::Room(RoomCommand::Help)));
        assert_eq!(
            parse_slash("board"),
            Ok(SlashCommand::Room(RoomCommand::Board))
        );
        assert!(
            parse_slash("board now")
                .unwrap_err()
                .contains("extra argument")
        );
        assert_eq!(
            parse_slash("show 4"),
            Ok(SlashCommand::Room(RoomCommand::Show(
                TicketId::parse("4").unwrap()
            )))
        );
        let e = parse_slash("reply").unwrap_err();
        assert!(e.contains("needs a ticket number"), "{e}");
        let e = parse_slash("reply abc hi").unwrap_err();
        assert!(e.contains("\"abc\" is not a ticket"), "{e}");
        let e = parse_slash("reply 4").unwrap_err();
        assert!(e.contains("/mailroom reply <ticket>"), "{e}");
        let e = parse_slash("reply 4 --attach hi").unwrap_err();
        assert!(e.contains("thread"), "{e}");
        let e = parse_slash("lst").unwrap_err();
        assert!(
            e.contains("/mailroom list") && !e.contains("!mailroom"),
            "{e}"
        );
    }

    // ---- !mailroom ----

    #[test]
    fn mailroom_list() {
        assert_eq!(room("!mailroom list"), RoomCommand::List(ListFilter::Open));
        for f in ListFilter::ALL {
            assert_eq!(room(&format!("!mailroom list {f}")), RoomCommand::List(f));
        }
        let e = err("!mailroom list closed");
        assert_eq!(e.command, "!mailroom list");
        assert_eq!(
            e.message,
            "\"closed\" is not a list filter: use open, mine, unclaimed, pending or snoozed"
        );
        assert_eq!(
            e.usage,
            "!mailroom list [open|mine|unclaimed|pending|snoozed]"
        );
        assert_eq!(
            err("!mailroom list open mine").message,
            "!mailroom list has an extra argument \"mine\""
        );
    }

    #[test]
    fn mailroom_show() {
        assert_eq!(
            room("!mailroom show 42"),
            RoomCommand::Show(TicketId::new(42))
        );
        assert_eq!(
            room("!mailroom show #7"),
            RoomCommand::Show(TicketId::new(7))
        );
        let e = err("!mailroom show");
        assert_eq!(e.command, "!mailroom show");
        assert_eq!(e.message, "!mailroom show needs a ticket number");
        assert_eq!(e.usage, "!mailroom show <ticket>");
        assert_eq!(
            err("!mailroom show abc").message,
            "\"abc\" is not a ticket: expected a positive number"
        );
        assert_eq!(
            err("!mailroom show 0").message,
            "\"0\" is not a ticket: expected a positive number"
        );
        assert_eq!(
            err("!mailroom show 1 2").message,
            "!mailroom show has an extra argument \"2\""
        );
    }

    #[test]
    fn mailroom_dashboard() {
        assert_eq!(room("!mailroom dashboard"), RoomCommand::Dashboard);
        assert_eq!(room("!MAILROOM Dashboard"), RoomCommand::Dashboard);
        assert_eq!(
            parse_slash("dashboard"),
            Ok(SlashCommand::Room(RoomCommand::Dashboard))
        );
        let e = err("!mailroom dashboard now");
        assert_eq!(e.command, "!mailroom dashboard");
        assert_eq!(
            e.message,
            "!mailroom dashboard has an extra argument \"now\""
        );
        assert_eq!(
            err("!mailroom dashbord").message,
            "unknown subcommand !mailroom dashbord — did you mean !mailroom dashboard?"
        );
        assert!(slash_help_text().contains("/mailroom dashboard"));
    }

    #[test]
    fn mailroom_help_and_unknown_subcommands() {
        assert_eq!(room("!mailroom help"), RoomCommand::Help);
        assert_eq!(room("!mailroom"), RoomCommand::Help);
        assert_eq!(room("!MAILROOM HELP"), RoomCommand::Help);
        assert_eq!(
            err("!mailroom help me").message,
            "!mailroom help has an extra argument \"me\""
        );
        let e = err("!mailroom lsit");
        assert_eq!(e.command, "!mailroom");
        assert_eq!(
            e.message,
            "unknown subcommand !mailroom lsit — did you mean !mailroom list?"
        );
        assert_eq!(
            err("!mailroom frobnicate").message,
            "unknown subcommand !mailroom \"frobnicate\""
        );
        assert!(
            err("!mailroom frobnicate")
                .usage
                .contains("!mailroom show <ticket>")
        );
    }
}
