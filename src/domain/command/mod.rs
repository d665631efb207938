//! The command language teammates type in chat.
//!
//! A ticket's thread is also where the team talks about the ticket, so the
//! parser errs on the side of "this is conversation": only text whose first
//! non-blank character is `!` immediately followed by a known command word is a
//! command, and an unknown `!word` ("!important: the customer is a VIP") is left
//! alone. The one exception is a word that is almost a command (`!replly`,
//! `!clsoe`): silently ignoring it would leave the teammate believing the reply
//! went out or the ticket was closed, so it is answered with a suggestion.
//!
//! Every error carries the command it is about and that command's right form,
//! so the bridge can answer any mistake with one clear line.
//!
//! The parser works on the text as the platform's plain body gives it. Slack
//! escapes `&`, `<` and `>` in message text; its adapter undoes that with
//! [`unescape_slack`] first. The parser never unescapes by itself, because in a
//! Matrix body `&amp;` is what the teammate literally typed.

use std::collections::BTreeMap;
use std::fmt;

use super::ids::{Agent, Tag, TicketId};

mod args;
#[cfg(test)]
mod fixtures;
mod room;
mod snooze;
mod stats;
mod thread;

use room::parse_mailroom;
pub use room::{SlashCommand, parse_slash, slash_help_text};
use snooze::parse_snooze;
pub use snooze::{Day, SnoozeRequest, parse_duration};
use stats::MAILROOM_STATS;
pub use stats::{StatsFilter, StatsQuery};
use thread::{parse_assign, parse_reply, parse_tags, parse_template};

/// What a chat message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Conversation, not for mailroom.
    NotACommand,
    /// A command about the ticket whose thread it was typed in.
    Thread(ThreadCommand),
    /// A command about the mailbox as a whole (`!mailroom …`).
    Room(RoomCommand),
}

/// A command typed in a ticket's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadCommand {
    /// Reply to the customer.
    Reply {
        /// The Markdown body, exactly as typed apart from the blanks around it.
        text: String,
        /// `!reply!`: skip the stale-reply and claimed-by-someone-else guards.
        force: bool,
        /// `--attach`: send the files posted in the thread since the last reply.
        attach: bool,
    },
    /// Cancel the pending reply while it is still in its undo window.
    Undo,
    Close,
    Reopen,
    Pending,
    Claim,
    Unclaim,
    Assign(UserRef),
    Unassign,
    /// Tags to add, without duplicates, in the order typed.
    Tag(Vec<Tag>),
    /// Tags to remove, without duplicates, in the order typed.
    Untag(Vec<Tag>),
    /// Reply with a saved template.
    Template {
        /// Lowercase `[a-z0-9_-]+`.
        name: String,
        vars: BTreeMap<String, String>,
    },
    History,
    Help,
    /// Hide the ticket from the queue until a time or the customer's mail.
    Snooze(SnoozeRequest),
    /// Bring a snoozed ticket back now.
    Unsnooze,
}

/// A command typed in the room, outside any ticket's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomCommand {
    List(ListFilter),
    Show(TicketId),
    /// The room's board, compact, for the asker.
    Board,
    /// The team's figures (`!mailroom stats`).
    Stats(StatsQuery),
    /// A one-time sign-in link to the web dashboard, answered privately.
    Dashboard,
    Help,
}

/// Which tickets `!mailroom list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListFilter {
    Open,
    Mine,
    Unclaimed,
    Pending,
    /// Snoozed tickets, which the other lists leave out.
    Snoozed,
}

impl ListFilter {
    pub const ALL: [ListFilter; 5] = [
        ListFilter::Open,
        ListFilter::Mine,
        ListFilter::Unclaimed,
        ListFilter::Pending,
        ListFilter::Snoozed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ListFilter::Open => "open",
            ListFilter::Mine => "mine",
            ListFilter::Unclaimed => "unclaimed",
            ListFilter::Pending => "pending",
            ListFilter::Snoozed => "snoozed",
        }
    }
}

impl fmt::Display for ListFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A teammate as referred to in a command. The parser only recognises the
/// form; whether the person exists is for the chat adapter to find out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserRef {
    /// A full Matrix user id, `@alice:example.org`, as typed.
    Matrix(String),
    /// A Slack user id taken from a mention (`<@U024BE7LH>` or
    /// `<@U024BE7LH|alice>` → `U024BE7LH`).
    SlackUser(String),
    /// A bare name (`@alice` or `alice`, without the `@`) that the adapter
    /// must resolve against the platform's users.
    Name(String),
}

impl UserRef {
    /// The [`Agent`] this reference names, when the reference alone says so
    /// (`@alice:example.org`, `slack:U024BE7LH`); a bare name needs the
    /// adapter's directory and gives `None`.
    pub fn as_agent(&self) -> Option<Agent> {
        match self {
            UserRef::Matrix(id) => Agent::parse(id).ok(),
            UserRef::SlackUser(id) => Agent::parse(&format!("slack:{id}")).ok(),
            UserRef::Name(_) => None,
        }
    }
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRef::Matrix(id) => f.write_str(id),
            UserRef::SlackUser(id) => write!(f, "<@{id}>"),
            UserRef::Name(name) => write!(f, "@{name}"),
        }
    }
}

/// A command that was recognised but written wrongly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The command it is about, e.g. `!assign`.
    pub command: &'static str,
    /// What was wrong, in a sentence.
    pub message: String,
    /// The right form, e.g. `!assign @user`.
    pub usage: &'static str,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A message that already ends a sentence ("did you mean !reply?") gets
        // no extra full stop.
        let sep = if self.message.ends_with(['.', '?']) {
            " "
        } else {
            ". "
        };
        write!(f, "{}{sep}Usage: {}", self.message, self.usage)
    }
}

impl std::error::Error for CommandError {}

/// One command word: how it is typed and its right form.
struct Spec {
    /// The word after `!`, lowercase.
    name: &'static str,
    /// `!` + name, for [`CommandError::command`].
    command: &'static str,
    usage: &'static str,
}

const fn spec(name: &'static str, command: &'static str, usage: &'static str) -> Spec {
    Spec {
        name,
        command,
        usage,
    }
}

const REPLY: Spec = spec("reply", "!reply", "!reply [--attach] <text>");
const REPLY_FORCED: Spec = spec("reply", "!reply!", "!reply! [--attach] <text>");
const UNDO: Spec = spec("undo", "!undo", "!undo");
const CLOSE: Spec = spec("close", "!close", "!close");
const REOPEN: Spec = spec("reopen", "!reopen", "!reopen");
const PENDING: Spec = spec("pending", "!pending", "!pending");
const CLAIM: Spec = spec("claim", "!claim", "!claim");
const UNCLAIM: Spec = spec("unclaim", "!unclaim", "!unclaim");
const ASSIGN: Spec = spec("assign", "!assign", "!assign @user");
const UNASSIGN: Spec = spec("unassign", "!unassign", "!unassign");
const TAG: Spec = spec("tag", "!tag", "!tag <tag> [<tag> …]");
const UNTAG: Spec = spec("untag", "!untag", "!untag <tag> [<tag> …]");
const TEMPLATE: Spec = spec("template", "!template", "!template <name> [key=value …]");
const HISTORY: Spec = spec("history", "!history", "!history");
const HELP: Spec = spec("help", "!help", "!help");
const SNOOZE: Spec = spec(
    "snooze",
    "!snooze",
    "!snooze <2h|30m|1d> | !snooze <tomorrow|monday|YYYY-MM-DD> <HH:MM> | !snooze until customer replies",
);
const UNSNOOZE: Spec = spec("unsnooze", "!unsnooze", "!unsnooze");
const MAILROOM: Spec = spec(
    "mailroom",
    "!mailroom",
    "!mailroom list [open|mine|unclaimed|pending|snoozed] | !mailroom show <ticket> | !mailroom board | !mailroom stats [day|week|month] [@person|#tag] [business] | !mailroom dashboard | !mailroom help",
);
const MAILROOM_LIST: Spec = spec(
    "list",
    "!mailroom list",
    "!mailroom list [open|mine|unclaimed|pending|snoozed]",
);
const MAILROOM_SHOW: Spec = spec("show", "!mailroom show", "!mailroom show <ticket>");
const MAILROOM_HELP: Spec = spec("help", "!mailroom help", "!mailroom help");
const MAILROOM_BOARD: Spec = spec("board", "!mailroom board", "!mailroom board");
const MAILROOM_DASHBOARD: Spec = spec("dashboard", "!mailroom dashboard", "!mailroom dashboard");

/// Every command word, for near-miss suggestions.
const COMMANDS: [&Spec; 17] = [
    &REPLY, &UNDO, &CLOSE, &REOPEN, &PENDING, &CLAIM, &UNCLAIM, &ASSIGN, &UNASSIGN, &TAG, &UNTAG,
    &TEMPLATE, &HISTORY, &HELP, &MAILROOM, &SNOOZE, &UNSNOOZE,
];

const MAILROOM_SUBCOMMANDS: [&Spec; 6] = [
    &MAILROOM_LIST,
    &MAILROOM_SHOW,
    &MAILROOM_BOARD,
    &MAILROOM_STATS,
    &MAILROOM_DASHBOARD,
    &MAILROOM_HELP,
];

/// The answer to `!help` and `!mailroom help`.
pub fn help_text() -> &'static str {
    "\
Commands in a ticket's thread:
  !reply <text>                  reply to the customer (Markdown, may span several lines)
  !reply! <text>                 reply even if new mail arrived or someone else claimed the ticket
  !reply --attach <text>         reply with the files posted in the thread since the last reply
  !undo                          cancel the reply that is still in its undo window
  !close                         close the ticket
  !reopen                        reopen a closed ticket
  !pending                       mark the ticket as waiting on the customer
  !claim                         take the ticket
  !unclaim                       give the ticket back to the team
  !assign @user                  give the ticket to a teammate
  !unassign                      take the ticket away from whoever has it
  !tag <tag> [<tag> …]           add tags
  !untag <tag> [<tag> …]         remove tags
  !template <name> [key=value …] reply with a saved template; \"quote\" values with spaces
  !history                       show what happened to the ticket
  !snooze <2h|30m|1d>            hide the ticket from the queue for a while; it comes back with a mention
  !snooze <tomorrow|monday|YYYY-MM-DD> <HH:MM>  ... until then (the mailbox's time zone)
  !snooze until customer replies ... until the customer writes (any mail wakes a snooze early)
  !unsnooze                      bring a snoozed ticket back now
  !help                          show this list
In the room:
  !mailroom list [open|mine|unclaimed|pending|snoozed]  list tickets (open by default)
  !mailroom show <ticket>        show a ticket (42 or #42)
  !mailroom board                show the room's board: unclaimed, claimed by whom, pending, snoozed
  !mailroom stats [day|week|month] [@person|#tag] [business]  the team's figures and a chart
  !mailroom dashboard            get a sign-in link to the web dashboard, privately
  !mailroom help                 show this list"
}

/// The key a reaction is matched by: an emoji as itself, a `:shortcode:` or
/// bare Slack name (`raising_hand`, `+1::skin-tone-2`) as its emoji when it
/// names a standard one, and a custom emoji as `:name:`. Variation selectors
/// and skin tones do not change what a reaction means.
pub fn reaction_key(reaction: &str) -> String {
    let r = reaction.trim();
    let name = r
        .strip_prefix(':')
        .and_then(|n| n.strip_suffix(':'))
        .unwrap_or(r);
    let name = name.split("::").next().unwrap_or(name);
    let is_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '\''));
    if is_name {
        return match emojis::get_by_shortcode(name) {
            Some(e) => strip_variation(e.as_str()),
            None => format!(":{name}:"),
        };
    }
    strip_variation(r)
}

fn strip_variation(emoji: &str) -> String {
    emojis::get(emoji)
        .map(|e| e.as_str())
        .unwrap_or(emoji)
        .chars()
        .filter(|c| !matches!(c, '\u{fe0f}' | '\u{1f3fb}'..='\u{1f3ff}'))
        .collect()
}

/// Undoes Slack's escaping of message text (`&amp;`, `&lt;`, `&gt;`; Slack
/// escapes nothing else). One left-to-right pass, so `&amp;lt;` (a teammate
/// who typed `&lt;`) becomes `&lt;`, not `<`.
pub fn unescape_slack(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (unescaped, len) = if tail.starts_with("&amp;") {
            ('&', "&amp;".len())
        } else if tail.starts_with("&lt;") {
            ('<', "&lt;".len())
        } else if tail.starts_with("&gt;") {
            ('>', "&gt;".len())
        } else {
            ('&', 1)
        };
        out.push(unescaped);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// Reads a chat message. `Ok(NotACommand)` for conversation; `Err` for a
/// command (or near-miss of one) that is written wrongly.
pub fn parse(text: &str) -> Result<Parsed, CommandError> {
    let Some(after_bang) = text.trim_start().strip_prefix('!') else {
        return Ok(Parsed::NotACommand);
    };
    // The word runs to the first blank, so `!replyx` is the word `replyx` and
    // never `!reply` followed by "x".
    let word_end = after_bang
        .find(char::is_whitespace)
        .unwrap_or(after_bang.len());
    let (typed, rest) = after_bang.split_at(word_end);
    let lower = typed.to_ascii_lowercase();
    let (word, forced) = match lower.strip_suffix('!') {
        Some(base) => (base, true),
        None => (lower.as_str(), false),
    };

    let no_args = |spec: &'static Spec, cmd: ThreadCommand| {
        expect_no_args(spec, rest).map(|()| Parsed::Thread(cmd))
    };
    let known = match word {
        "reply" => {
            return parse_reply(rest, forced).map(Parsed::Thread);
        }
        "undo" => &UNDO,
        "close" => &CLOSE,
        "reopen" => &REOPEN,
        "pending" => &PENDING,
        "claim" => &CLAIM,
        "unclaim" => &UNCLAIM,
        "assign" => &ASSIGN,
        "unassign" => &UNASSIGN,
        "tag" => &TAG,
        "untag" => &UNTAG,
        "template" => &TEMPLATE,
        "history" => &HISTORY,
        "help" => &HELP,
        "mailroom" => &MAILROOM,
        "snooze" => &SNOOZE,
        "unsnooze" => &UNSNOOZE,
        _ => {
            return match closest(word, &COMMANDS) {
                Some(spec) => {
                    let bang = if forced { "!" } else { "" };
                    Err(error(
                        spec,
                        format!(
                            "unknown command !{typed} — did you mean {}{bang}?",
                            spec.command
                        ),
                    ))
                }
                None => Ok(Parsed::NotACommand),
            };
        }
    };
    if forced {
        // Only a reply has guards to skip. `!close!` is surely meant as a
        // command, so it is answered rather than ignored.
        return Err(error(
            known,
            format!("{} has no forced form; only !reply! exists", known.command),
        ));
    }
    match known.name {
        "undo" => no_args(&UNDO, ThreadCommand::Undo),
        "close" => no_args(&CLOSE, ThreadCommand::Close),
        "reopen" => no_args(&REOPEN, ThreadCommand::Reopen),
        "pending" => no_args(&PENDING, ThreadCommand::Pending),
        "claim" => no_args(&CLAIM, ThreadCommand::Claim),
        "unclaim" => no_args(&UNCLAIM, ThreadCommand::Unclaim),
        "unassign" => no_args(&UNASSIGN, ThreadCommand::Unassign),
        "history" => no_args(&HISTORY, ThreadCommand::History),
        "help" => no_args(&HELP, ThreadCommand::Help),
        "assign" => parse_assign(rest).map(|u| Parsed::Thread(ThreadCommand::Assign(u))),
        "tag" => parse_tags(&TAG, rest).map(|t| Parsed::Thread(ThreadCommand::Tag(t))),
        "untag" => parse_tags(&UNTAG, rest).map(|t| Parsed::Thread(ThreadCommand::Untag(t))),
        "template" => parse_template(rest).map(Parsed::Thread),
        "unsnooze" => no_args(&UNSNOOZE, ThreadCommand::Unsnooze),
        "snooze" => parse_snooze(rest).map(|r| Parsed::Thread(ThreadCommand::Snooze(r))),
        _ => parse_mailroom(rest).map(Parsed::Room),
    }
}

fn error(spec: &'static Spec, message: impl Into<String>) -> CommandError {
    CommandError {
        command: spec.command,
        message: message.into(),
        usage: spec.usage,
    }
}

/// A piece of the teammate's text for an error message: quoted, so blanks and
/// odd characters are visible, and cut short so a pasted essay cannot flood
/// the reply.
fn quoted(s: &str) -> String {
    const MAX_CHARS: usize = 40;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}", format!("{}…", &s[..cut])),
        None => format!("{s:?}"),
    }
}

fn expect_no_args(spec: &'static Spec, rest: &str) -> Result<(), CommandError> {
    let extra = rest.trim();
    if extra.is_empty() {
        Ok(())
    } else {
        Err(error(
            spec,
            format!(
                "{} takes no arguments (got {})",
                spec.command,
                quoted(extra)
            ),
        ))
    }
}

/// The command `word` is probably a typo of, if any.
///
/// Only words of four letters or more are guessed at, because short words
/// are one letter away from too much ordinary talk (`!tog`, `!tap`). The
/// allowed distance grows with the word: one edit for 4-5 letters (so
/// `!hello` is not taken for `!help`), two for longer ones (`!templete`). A
/// swap of two neighbouring letters (`!clsoe`) counts as one edit.
fn closest(word: &str, candidates: &[&'static Spec]) -> Option<&'static Spec> {
    let typed: Vec<char> = word.chars().collect();
    candidates
        .iter()
        .filter(|spec| spec.name.len() >= 4)
        .filter_map(|spec| {
            let allowed = if spec.name.len() >= 6 { 2 } else { 1 };
            // Cheap bound first: a word much longer or shorter cannot be
            // close, and long pasted words skip the quadratic table.
            if typed.len().abs_diff(spec.name.len()) > allowed {
                return None;
            }
            let d = edit_distance(&typed, spec.name);
            (d <= allowed).then_some((d, *spec))
        })
        // Ties go to the earlier (more common) command.
        .min_by_key(|(d, _)| *d)
        .map(|(_, spec)| spec)
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and swaps of adjacent characters each cost one.
fn edit_distance(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reactions_match_by_meaning_not_spelling() {
        // Slack names, shortcodes, skin tones and variation selectors.
        assert_eq!(reaction_key("raising_hand"), "🙋");
        assert_eq!(reaction_key(":raising_hand:"), "🙋");
        assert_eq!(reaction_key("raising_hand::skin-tone-3"), "🙋");
        assert_eq!(reaction_key("🙋🏽"), "🙋");
        assert_eq!(reaction_key("eyes"), "👀");
        assert_eq!(reaction_key("white_check_mark"), "✅");
        assert_eq!(reaction_key("hourglass_flowing_sand"), "⏳");
        assert_eq!(reaction_key("✅\u{fe0f}"), "✅");
        assert_eq!(reaction_key("+1"), "👍");
        // Custom emoji keep their name; other text is itself.
        assert_eq!(reaction_key("team_claim"), ":team_claim:");
        assert_eq!(reaction_key(":team_claim:"), ":team_claim:");
        assert_ne!(reaction_key("eyes"), reaction_key("raising_hand"));
    }

    // ---- what is and is not a command ----

    #[test]
    fn plain_text_is_not_a_command() {
        for text in [
            "",
            "   ",
            "hello team",
            "I'll !reply later",
            "see #42",
            "\n\n  thoughts?",
        ] {
            assert_eq!(parse(text), Ok(Parsed::NotACommand), "{text:?}");
        }
    }

    #[test]
    fn unknown_bang_words_are_internal_talk() {
        for text in [
            "!important note: VIP customer",
            "!",
            "! reply hello",
            "!!!",
            "!!! urgent",
            "!todo check the invoice",
            "!hello everyone",
            "!tog",
            "!wow",
            "!claimed by bob yesterday",
        ] {
            assert_eq!(parse(text), Ok(Parsed::NotACommand), "{text:?}");
        }
    }

    #[test]
    fn leading_blanks_before_the_bang_are_ignored() {
        assert_eq!(thread("   !close"), ThreadCommand::Close);
        assert_eq!(thread("\n\t!claim\n"), ThreadCommand::Claim);
    }

    #[test]
    fn command_words_are_case_insensitive() {
        assert_eq!(thread("!CLOSE"), ThreadCommand::Close);
        assert_eq!(thread("!Claim"), ThreadCommand::Claim);
        assert_eq!(thread("!Reply Hi there"), reply("Hi there", false, false));
        assert_eq!(thread("!REPLY! Hi"), reply("Hi", true, false));
        assert_eq!(
            thread("!Reply --ATTACH see file"),
            reply("see file", false, true)
        );
        assert_eq!(
            room("!MailRoom LIST Mine"),
            RoomCommand::List(ListFilter::Mine)
        );
    }

    #[test]
    fn a_command_word_must_end_at_a_blank() {
        // `!replyx` is never a reply: it is a near miss, answered with a hint.
        let e = err("!replyx hello");
        assert_eq!(e.command, "!reply");
        assert_eq!(e.message, "unknown command !replyx — did you mean !reply?");
        // Far from every command: just talk.
        assert_eq!(parse("!replyxyz hello"), Ok(Parsed::NotACommand));
        assert_eq!(parse("!reply,hello"), Ok(Parsed::NotACommand));
        // Any blank ends the word, including a newline.
        assert_eq!(thread("!reply\nhello"), reply("hello", false, false));
        assert_eq!(thread("!reply\thello"), reply("hello", false, false));
    }

    // ---- near misses ----

    #[test]
    fn near_misses_suggest_the_command() {
        for (typed, want) in [
            ("!replly hi", "!reply"),
            ("!clsoe", "!close"),
            ("!colse", "!close"),
            ("!reopne", "!reopen"),
            ("!asign @bob", "!assign"),
            ("!unasign", "!unassign"),
            ("!templte refund", "!template"),
            ("!tempalte refund", "!template"),
            ("!histroy", "!history"),
            ("!hepl", "!help"),
            ("!udno", "!undo"),
            ("!pendnig", "!pending"),
            ("!clam", "!claim"),
            ("!unclam", "!unclaim"),
            ("!untga x", "!untag"),
            ("!mailrom list", "!mailroom"),
            ("!Clsoe", "!close"),
            ("!close.", "!close"),
        ] {
            let e = err(typed);
            assert_eq!(e.command, want, "{typed:?}");
            let word = typed.split_whitespace().next().unwrap();
            assert_eq!(
                e.message,
                format!("unknown command {word} — did you mean {want}?"),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn near_miss_error_reads_as_one_sentence_with_usage() {
        assert_eq!(
            err("!replly hi").to_string(),
            "unknown command !replly — did you mean !reply? Usage: !reply [--attach] <text>"
        );
    }

    #[test]
    fn forced_near_miss_suggests_the_forced_form() {
        let e = err("!replly! hi");
        assert_eq!(
            e.message,
            "unknown command !replly! — did you mean !reply!?"
        );
    }

    #[test]
    fn short_or_distant_words_get_no_suggestion() {
        // `tag` is too short to guess at; `hello` is two edits from `help`,
        // more than a 4-letter command allows.
        for text in [
            "!tog x",
            "!tags x",
            "!hello",
            "!todo",
            "!closing time",
            "!replied",
        ] {
            assert_eq!(parse(text), Ok(Parsed::NotACommand), "{text:?}");
        }
    }

    #[test]
    fn edit_distance_counts_swaps_as_one() {
        let d = |a: &str, b: &str| edit_distance(&a.chars().collect::<Vec<_>>(), b);
        assert_eq!(d("clsoe", "close"), 1);
        assert_eq!(d("replly", "reply"), 1);
        assert_eq!(d("hello", "help"), 2);
        assert_eq!(d("", "undo"), 4);
        assert_eq!(d("undo", "undo"), 0);
    }

    // ---- argument-less commands ----

    #[test]
    fn argument_less_commands() {
        for (text, want) in [
            ("!undo", ThreadCommand::Undo),
            ("!close", ThreadCommand::Close),
            ("!reopen", ThreadCommand::Reopen),
            ("!pending", ThreadCommand::Pending),
            ("!claim", ThreadCommand::Claim),
            ("!unclaim", ThreadCommand::Unclaim),
            ("!unassign", ThreadCommand::Unassign),
            ("!history", ThreadCommand::History),
            ("!help", ThreadCommand::Help),
        ] {
            assert_eq!(thread(text), want, "{text:?}");
            assert_eq!(thread(&format!("{text}  \n")), want, "{text:?} with blanks");
        }
    }

    #[test]
    fn argument_less_commands_refuse_extra_words() {
        for word in [
            "undo", "close", "reopen", "pending", "claim", "unclaim", "unassign", "history", "help",
        ] {
            let e = err(&format!("!{word} now please"));
            assert_eq!(e.command, format!("!{word}"));
            assert_eq!(e.usage, format!("!{word}"));
            assert_eq!(
                e.message,
                format!("!{word} takes no arguments (got \"now please\")")
            );
            assert_eq!(
                e.to_string(),
                format!("!{word} takes no arguments (got \"now please\"). Usage: !{word}")
            );
        }
    }

    #[test]
    fn only_reply_has_a_forced_form() {
        let e = err("!close!");
        assert_eq!(e.command, "!close");
        assert_eq!(e.message, "!close has no forced form; only !reply! exists");
        assert_eq!(err("!mailroom! list").command, "!mailroom");
    }

    #[test]
    fn long_extra_arguments_are_cut_short_in_errors() {
        let e = err(&format!("!close {}", "x".repeat(500)));
        assert!(e.message.len() < 120, "{}", e.message);
        assert!(e.message.contains('…'));
    }

    // ---- help and Slack ----

    #[test]
    fn help_lists_every_command() {
        let help = help_text();
        for spec in COMMANDS.iter().chain(MAILROOM_SUBCOMMANDS.iter()) {
            // `!reply` and `!mailroom` are shown per form rather than by
            // their combined usage; the forms are checked below.
            if !["reply", "mailroom", "snooze"].contains(&spec.name) {
                assert!(help.contains(spec.usage), "help misses {}", spec.usage);
            }
        }
        for form in [
            "!snooze <2h|30m|1d>",
            "!snooze until customer replies",
            "!reply!",
            "--attach",
            "!mailroom list",
            "!mailroom show",
            "!mailroom help",
        ] {
            assert!(help.contains(form), "help misses {form}");
        }
        // Every command word in the help parses as a command.
        for line in help.lines().filter(|l| l.trim_start().starts_with('!')) {
            let word = line.split_whitespace().next().unwrap();
            let example = match word {
                "!reply" | "!reply!" => format!("{word} hi"),
                "!assign" => "!assign @a".to_owned(),
                "!tag" | "!untag" => format!("{word} x"),
                "!template" => "!template t".to_owned(),
                "!snooze" => "!snooze 2h".to_owned(),
                "!mailroom" => "!mailroom help".to_owned(),
                _ => word.to_owned(),
            };
            assert!(
                matches!(parse(&example), Ok(Parsed::Thread(_) | Parsed::Room(_))),
                "{example:?}"
            );
        }
    }

    #[test]
    fn slack_unescaping() {
        assert_eq!(unescape_slack("a &amp; b &lt;c&gt;"), "a & b <c>");
        assert_eq!(unescape_slack("&amp;lt;"), "&lt;");
        assert_eq!(
            unescape_slack("&quot; &#39; &nbsp; & &am"),
            "&quot; &#39; &nbsp; & &am"
        );
        assert_eq!(unescape_slack("é &gt;&gt; ü"), "é >> ü");
        assert_eq!(unescape_slack(""), "");
        assert_eq!(
            thread(&unescape_slack("!reply Q&amp;A: use &lt;b&gt;")),
            reply("Q&A: use <b>", false, false)
        );
    }

    #[test]
    fn the_parser_itself_does_not_unescape() {
        assert_eq!(thread("!reply a &amp; b"), reply("a &amp; b", false, false));
    }

    #[test]
    fn error_display_adds_usage() {
        let e = CommandError {
            command: "!x",
            message: "bad".into(),
            usage: "!x <y>",
        };
        assert_eq!(e.to_string(), "bad. Usage: !x <y>");
    }

    fn looks_like_option(t: &str) -> bool {
        t.strip_prefix("--")
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_alphabetic()))
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "(?s).{0,300}") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_command_like_text(
            word in "(reply!?|undo|close|assign|tag|untag|template|mailroom|replly|clsoe|[a-z!]{0,10})",
            args in proptest::collection::vec("[ \\n\\t]{1,2}(\\PC{0,12}|\"[^\"]{0,8}\"?|[a-z]{1,5}=(\"|“)?\\PC{0,8}|<@?\\PC{0,10}>?|--[a-z]{0,8})", 0..6),
        ) {
            let text = format!("!{word}{}", args.concat());
            let _ = parse(&text);
        }

        #[test]
        fn reply_keeps_any_text_exactly(raw in "(?s).{1,300}", force in any::<bool>()) {
            let t = raw.trim();
            // An option-looking start is an option (`--attach`) or refused.
            prop_assume!(!t.is_empty() && !looks_like_option(t));
            let bang = if force { "!" } else { "" };
            prop_assert_eq!(
                parse(&format!("!reply{bang} {t}")),
                Ok(Parsed::Thread(reply(t, force, false)))
            );
            prop_assert_eq!(
                parse(&format!("!reply{bang} --attach\n{t}")),
                Ok(Parsed::Thread(reply(t, force, true)))
            );
        }

        #[test]
        fn text_not_starting_with_bang_is_never_a_command(lead in "\\s{0,3}", s in "(?s).{0,200}") {
            prop_assume!(!s.trim_start().starts_with('!'));
            prop_assert_eq!(parse(&format!("{lead}{s}")), Ok(Parsed::NotACommand));
        }

        #[test]
        fn unescape_is_identity_without_ampersands(s in "[^&]{0,100}") {
            prop_assert_eq!(unescape_slack(&s), s);
        }
    }
}
