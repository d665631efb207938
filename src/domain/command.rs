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
}

/// A command typed in the room, outside any ticket's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomCommand {
    List(ListFilter),
    Show(TicketId),
    Help,
}

/// Which tickets `!mailroom list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListFilter {
    Open,
    Mine,
    Unclaimed,
    Pending,
}

impl ListFilter {
    pub const ALL: [ListFilter; 4] = [
        ListFilter::Open,
        ListFilter::Mine,
        ListFilter::Unclaimed,
        ListFilter::Pending,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ListFilter::Open => "open",
            ListFilter::Mine => "mine",
            ListFilter::Unclaimed => "unclaimed",
            ListFilter::Pending => "pending",
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
const MAILROOM: Spec = spec(
    "mailroom",
    "!mailroom",
    "!mailroom list [open|mine|unclaimed|pending] | !mailroom show <ticket> | !mailroom help",
);
const MAILROOM_LIST: Spec = spec(
    "list",
    "!mailroom list",
    "!mailroom list [open|mine|unclaimed|pending]",
);
const MAILROOM_SHOW: Spec = spec("show", "!mailroom show", "!mailroom show <ticket>");
const MAILROOM_HELP: Spec = spec("help", "!mailroom help", "!mailroom help");

/// Every command word, for near-miss suggestions.
const COMMANDS: [&Spec; 15] = [
    &REPLY, &UNDO, &CLOSE, &REOPEN, &PENDING, &CLAIM, &UNCLAIM, &ASSIGN, &UNASSIGN, &TAG, &UNTAG,
    &TEMPLATE, &HISTORY, &HELP, &MAILROOM,
];

const MAILROOM_SUBCOMMANDS: [&Spec; 3] = [&MAILROOM_LIST, &MAILROOM_SHOW, &MAILROOM_HELP];

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
  !help                          show this list
In the room:
  !mailroom list [open|mine|unclaimed|pending]  list tickets (open by default)
  !mailroom show <ticket>        show a ticket (42 or #42)
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

/// `rest` is everything after `!reply` / `!reply!`.
fn parse_reply(rest: &str, force: bool) -> Result<ThreadCommand, CommandError> {
    let spec = if force { &REPLY_FORCED } else { &REPLY };
    let mut body = rest.trim_start();
    let mut attach = false;
    // Whatever is not an option goes to the customer, so a mistyped option
    // (`--atach`) is refused rather than mailed out as the reply's first word.
    // Only `--` followed by a letter counts as an option: `-- ` and `---`
    // (a Markdown rule) are text.
    while let Some(after_dashes) = body.strip_prefix("--")
        && after_dashes.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        let end = body.find(char::is_whitespace).unwrap_or(body.len());
        let option = &body[..end];
        if !option.eq_ignore_ascii_case("--attach") {
            return Err(error(
                spec,
                format!(
                    "unknown option {} for {}; the only option is --attach",
                    quoted(option),
                    spec.command
                ),
            ));
        }
        attach = true;
        body = body[end..].trim_start();
    }
    // Blanks at the end are dropped too: chat clients and keyboards leave
    // them, and they mean nothing at the end of a Markdown body.
    let text = body.trim_end();
    if text.is_empty() {
        return Err(error(
            spec,
            format!("{} needs the text of the reply", spec.command),
        ));
    }
    Ok(ThreadCommand::Reply {
        text: text.to_owned(),
        force,
        attach,
    })
}

fn parse_assign(rest: &str) -> Result<UserRef, CommandError> {
    let args = rest.trim();
    if args.is_empty() {
        return Err(error(
            &ASSIGN,
            "!assign needs the teammate to assign: a Matrix id (@alice:example.org), \
             a Slack mention or a name",
        ));
    }
    // A legacy Slack mention may carry a display name with blanks
    // (`<@U024BE7LH|Alice Smith>`), so a mention runs to its `>`.
    let end = if args.starts_with('<') {
        args.find('>').map(|i| i + 1)
    } else {
        None
    }
    .or_else(|| args.find(char::is_whitespace))
    .unwrap_or(args.len());
    let (token, extra) = args.split_at(end);
    let extra = extra.trim();
    if !extra.is_empty() {
        return Err(error(
            &ASSIGN,
            format!(
                "!assign takes one teammate (got {} after {})",
                quoted(extra),
                quoted(token)
            ),
        ));
    }
    parse_user_ref(token).map_err(|why| error(&ASSIGN, why))
}

/// Longest form accepted in a reference. Matrix ids are limited to 255 bytes
/// by the spec, which is also [`Agent`]'s limit.
const MAX_USER_REF: usize = 255;

fn parse_user_ref(token: &str) -> Result<UserRef, String> {
    if token.len() > MAX_USER_REF {
        return Err(format!("{} is too long for a user", quoted(token)));
    }
    if token.chars().any(char::is_control) {
        return Err(format!("{} contains control characters", quoted(token)));
    }
    if let Some(inner) = token.strip_prefix('<') {
        let not_a_user = || {
            format!(
                "{} is not a Slack user mention like <@U024BE7LH>",
                quoted(token)
            )
        };
        let inner = inner.strip_suffix('>').ok_or_else(not_a_user)?;
        let mention = inner.strip_prefix('@').ok_or_else(not_a_user)?;
        let id = mention.split_once('|').map_or(mention, |(id, _name)| id);
        // Slack user ids are uppercase alphanumerics starting with U (or W
        // for Enterprise Grid users); channel (`<#C…>`) and special
        // (`<!here>`) mentions are not people.
        let well_formed = id.starts_with(['U', 'W'])
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !well_formed {
            return Err(not_a_user());
        }
        return Ok(UserRef::SlackUser(id.to_owned()));
    }
    if let Some(name) = token.strip_prefix('@') {
        if let Some((local, server)) = name.split_once(':') {
            if local.is_empty() || server.is_empty() || name.contains(['@', '<', '>']) {
                return Err(format!(
                    "{} is not a Matrix user id like @alice:example.org",
                    quoted(token)
                ));
            }
            return Ok(UserRef::Matrix(token.to_owned()));
        }
        return bare_name(token, name);
    }
    if token.contains(':') {
        return Err(format!(
            "{} looks like a Matrix user id without its @: write @{token}",
            quoted(token)
        ));
    }
    bare_name(token, token)
}

fn bare_name(token: &str, name: &str) -> Result<UserRef, String> {
    if name.is_empty() || name.contains(['@', '<', '>', ':']) {
        return Err(format!(
            "{} is not a teammate: use @name, @alice:example.org or a Slack mention",
            quoted(token)
        ));
    }
    Ok(UserRef::Name(name.to_owned()))
}

fn parse_tags(spec: &'static Spec, rest: &str) -> Result<Vec<Tag>, CommandError> {
    let mut tags: Vec<Tag> = Vec::new();
    // Commas are accepted between tags because "billing, vip" is how people
    // write lists; a comma can never be part of a tag.
    for word in rest
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
    {
        let tag = Tag::parse(word).map_err(|e| {
            error(
                spec,
                format!("{} is not a valid tag: {}", quoted(word), e.reason),
            )
        })?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    if tags.is_empty() {
        return Err(error(
            spec,
            format!("{} needs at least one tag", spec.command),
        ));
    }
    Ok(tags)
}

const MAX_TEMPLATE_NAME: usize = 64;

fn parse_template(rest: &str) -> Result<ThreadCommand, CommandError> {
    let args = rest.trim_start();
    let end = args.find(char::is_whitespace).unwrap_or(args.len());
    let (typed_name, vars_src) = args.split_at(end);
    if typed_name.is_empty() {
        return Err(error(&TEMPLATE, "!template needs the template's name"));
    }
    // Names are matched case-insensitively, like command words, since chat
    // keyboards capitalise the first letter on their own.
    let name = typed_name.to_ascii_lowercase();
    let valid = name.len() <= MAX_TEMPLATE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        return Err(error(
            &TEMPLATE,
            format!(
                "{} is not a template name: use up to {MAX_TEMPLATE_NAME} letters, digits, '-' and '_'",
                quoted(typed_name)
            ),
        ));
    }
    let vars = parse_vars(vars_src).map_err(|why| error(&TEMPLATE, why))?;
    Ok(ThreadCommand::Template { name, vars })
}

/// `key=value key2="quoted value" …`. A value is a bare word or a quoted
/// string; `\"` and `\\` are the only escapes, any other backslash is kept.
fn parse_vars(src: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    let mut rest = src.trim_start();
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let (key, after_key) = rest.split_at(key_end);
        let Some(value_src) = after_key.strip_prefix('=') else {
            return Err(format!(
                "{} has no value: template variables are written key=value",
                quoted(key)
            ));
        };
        let valid_key = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid_key {
            return Err(format!(
                "{} is not a variable name: use letters, digits, '_', '-' and '.'",
                quoted(key)
            ));
        }
        let (value, after_value) = match value_src.chars().next().and_then(closing_quote) {
            Some(close) => {
                let opening_len = value_src.chars().next().map_or(0, char::len_utf8);
                quoted_value(&value_src[opening_len..], close)
                    .map_err(|why| format!("the value of {key}: {why}"))?
            }
            None => {
                let end = value_src
                    .find(char::is_whitespace)
                    .unwrap_or(value_src.len());
                (value_src[..end].to_owned(), &value_src[end..])
            }
        };
        if vars.insert(key.to_owned(), value).is_some() {
            return Err(format!("variable {key} is given twice"));
        }
        rest = after_value.trim_start();
    }
    Ok(vars)
}

/// The quote that closes a value opened by `open`, if `open` is a quote.
/// Curly quotes count because some keyboards and clients turn `"` into them.
fn closing_quote(open: char) -> Option<char> {
    match open {
        '"' => Some('"'),
        '“' => Some('”'),
        _ => None,
    }
}

/// Reads a quoted value after its opening quote; returns the value and what
/// follows the closing quote.
fn quoted_value(src: &str, close: char) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = src.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == close {
            let after = &src[i + c.len_utf8()..];
            if !after.is_empty() && !after.starts_with(char::is_whitespace) {
                return Err("put a space after the closing quote".to_owned());
            }
            return Ok((value, after));
        }
        if c == '\\' {
            match chars.clone().next() {
                Some((_, next)) if next == close || next == '\\' => {
                    value.push(next);
                    chars.next();
                }
                _ => value.push('\\'),
            }
        } else {
            value.push(c);
        }
    }
    Err(format!("the quote is never closed (missing {close})"))
}

/// What `/mailroom …` asks for (Slack's slash command, typed anywhere:
/// Slack does not allow slash commands in threads, so a reply names its
/// ticket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlashCommand {
    Room(RoomCommand),
    Reply {
        ticket: TicketId,
        text: String,
        force: bool,
    },
}

const SLASH_USAGE: &str = "/mailroom reply <ticket> <text> | /mailroom list [open|mine|unclaimed|pending] | /mailroom show <ticket> | /mailroom help";

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

/// What `/mailroom help` answers.
pub fn slash_help_text() -> String {
    format!(
        "/mailroom reply <ticket> <text>   reply to the customer from the shared address\n\
/mailroom reply! <ticket> <text>  reply even if someone else claimed it or new mail came\n\
/mailroom list [open|mine|unclaimed|pending]   list tickets\n\
/mailroom show <ticket>           show a ticket\n\
/mailroom help                    show this list\n\
Or use the \u{201c}Reply by email\u{201d} shortcut on a ticket's message.\n\n{}",
        help_text()
    )
}

fn parse_mailroom(rest: &str) -> Result<RoomCommand, CommandError> {
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
                                "{} is not a list filter: use open, mine, unclaimed or pending",
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

fn expect_end<'a>(
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
    use super::*;
    use proptest::prelude::*;

    fn thread(text: &str) -> ThreadCommand {
        match parse(text) {
            Ok(Parsed::Thread(cmd)) => cmd,
            other => panic!("{text:?} should be a thread command, got {other:?}"),
        }
    }

    fn room(text: &str) -> RoomCommand {
        match parse(text) {
            Ok(Parsed::Room(cmd)) => cmd,
            other => panic!("{text:?} should be a room command, got {other:?}"),
        }
    }

    fn err(text: &str) -> CommandError {
        match parse(text) {
            Err(e) => e,
            Ok(p) => panic!("{text:?} should be refused, got {p:?}"),
        }
    }

    fn reply(text: &str, force: bool, attach: bool) -> ThreadCommand {
        ThreadCommand::Reply {
            text: text.to_owned(),
            force,
            attach,
        }
    }

    fn tags(list: &[&str]) -> Vec<Tag> {
        list.iter().map(|t| Tag::parse(t).unwrap()).collect()
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
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

    // ---- !reply ----

    #[test]
    fn reply_takes_the_rest_of_the_message() {
        assert_eq!(
            thread("!reply Thanks, we're on it."),
            reply("Thanks, we're on it.", false, false)
        );
        assert_eq!(
            thread("!reply    spaced  out  "),
            reply("spaced  out", false, false)
        );
    }

    #[test]
    fn multi_line_reply_keeps_its_exact_body() {
        let body = "Hi Jane,\n\n\
                    Here is what to do:\n\
                    \n\
                    1. **Open** the app\n\
                    2. Tap `Settings`\n\
                    \n\
                    ```\n    indented code\n\ttab\n```\n\
                    > quoted  line with  two spaces  \n\
                    Cheers,\nBob";
        assert_eq!(
            thread(&format!("!reply\n{body}")),
            reply(body, false, false)
        );
        assert_eq!(
            thread(&format!("!reply \n\n  {body}\n\n")),
            reply(body, false, false)
        );
        assert_eq!(thread(&format!("!reply! {body}")), reply(body, true, false));
    }

    #[test]
    fn forced_reply() {
        assert_eq!(
            thread("!reply! sending anyway"),
            reply("sending anyway", true, false)
        );
    }

    #[test]
    fn reply_with_attachments() {
        assert_eq!(
            thread("!reply --attach Here is the invoice."),
            reply("Here is the invoice.", false, true)
        );
        assert_eq!(
            thread("!reply! --attach Here it is"),
            reply("Here it is", true, true)
        );
        assert_eq!(
            thread("!reply --attach\nLine one\nLine two"),
            reply("Line one\nLine two", false, true)
        );
    }

    #[test]
    fn dashes_that_are_not_options_are_text() {
        assert_eq!(thread("!reply --- rule"), reply("--- rule", false, false));
        assert_eq!(thread("!reply -- note"), reply("-- note", false, false));
        assert_eq!(thread("!reply -attach x"), reply("-attach x", false, false));
        // Only a leading option is an option.
        assert_eq!(
            thread("!reply see --attach below"),
            reply("see --attach below", false, false)
        );
    }

    #[test]
    fn mistyped_reply_option_is_refused_not_mailed() {
        let e = err("!reply --atach Here is the file");
        assert_eq!(e.command, "!reply");
        assert_eq!(
            e.message,
            "unknown option \"--atach\" for !reply; the only option is --attach"
        );
        assert_eq!(err("!reply! --force hi").command, "!reply!");
    }

    #[test]
    fn reply_options_cannot_add_recipients() {
        // Recipients come from the ticket only; no option names one.
        for option in ["--to", "--cc", "--bcc", "--To"] {
            let e = err(&format!("!reply {option} evil@attacker.example Hello"));
            assert_eq!(e.command, "!reply");
            assert!(e.message.starts_with("unknown option"), "{}", e.message);
            let e = err(&format!("!reply! {option}=evil@attacker.example Hello"));
            assert!(e.message.starts_with("unknown option"), "{}", e.message);
        }
    }

    #[test]
    fn line_breaks_and_controls_in_tag_commands_never_reach_a_tag() {
        // Line breaks only separate tags; anything else outside the tag
        // alphabet is refused, so no tag can smuggle a line into the audit
        // log, the status line or a header.
        assert_eq!(
            thread("!tag vip\r\nBcc: x"),
            ThreadCommand::Tag(tags(&["vip", "bcc:", "x"]))
        );
        for bad in ["!tag a\u{0}b", "!tag a\u{1b}[31mred", "!untag ok a\u{7f}"] {
            let e = err(bad);
            assert!(
                e.message.contains("is not a valid tag"),
                "{bad:?}: {}",
                e.message
            );
        }
    }

    #[test]
    fn empty_reply_is_refused() {
        for text in [
            "!reply",
            "!reply   ",
            "!reply\n\n",
            "!reply --attach",
            "!reply --attach  \n",
        ] {
            let e = err(text);
            assert_eq!(e.command, "!reply", "{text:?}");
            assert_eq!(e.message, "!reply needs the text of the reply");
            assert_eq!(
                e.to_string(),
                "!reply needs the text of the reply. Usage: !reply [--attach] <text>"
            );
        }
        let e = err("!reply!");
        assert_eq!(e.command, "!reply!");
        assert_eq!(e.usage, "!reply! [--attach] <text>");
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

    // ---- !assign ----

    #[test]
    fn assign_matrix_id() {
        assert_eq!(
            thread("!assign @alice:example.org"),
            ThreadCommand::Assign(UserRef::Matrix("@alice:example.org".into()))
        );
        assert_eq!(
            thread("!assign   @bob:matrix.example.org:8448  "),
            ThreadCommand::Assign(UserRef::Matrix("@bob:matrix.example.org:8448".into()))
        );
    }

    #[test]
    fn assign_slack_mentions() {
        assert_eq!(
            thread("!assign <@U024BE7LH>"),
            ThreadCommand::Assign(UserRef::SlackUser("U024BE7LH".into()))
        );
        assert_eq!(
            thread("!assign <@U024BE7LH|alice>"),
            ThreadCommand::Assign(UserRef::SlackUser("U024BE7LH".into()))
        );
        assert_eq!(
            thread("!assign <@W0123ABCD|Alice Smith>"),
            ThreadCommand::Assign(UserRef::SlackUser("W0123ABCD".into()))
        );
        // What the Slack adapter hands over after unescaping.
        assert_eq!(
            thread(&unescape_slack("!assign <@U1ABC>")),
            ThreadCommand::Assign(UserRef::SlackUser("U1ABC".into()))
        );
    }

    #[test]
    fn assign_bare_names() {
        assert_eq!(
            thread("!assign @alice"),
            ThreadCommand::Assign(UserRef::Name("alice".into()))
        );
        assert_eq!(
            thread("!assign alice.smith"),
            ThreadCommand::Assign(UserRef::Name("alice.smith".into()))
        );
    }

    #[test]
    fn assign_errors() {
        let e = err("!assign");
        assert_eq!(e.command, "!assign");
        assert_eq!(e.usage, "!assign @user");
        assert!(
            e.message
                .starts_with("!assign needs the teammate to assign"),
            "{}",
            e.message
        );

        let e = err("!assign @alice @bob");
        assert_eq!(
            e.message,
            "!assign takes one teammate (got \"@bob\" after \"@alice\")"
        );
        let e = err("!assign <@U1ABC> please");
        assert_eq!(
            e.message,
            "!assign takes one teammate (got \"please\" after \"<@U1ABC>\")"
        );

        for (text, message) in [
            (
                "!assign <#C024BE7LH>",
                "\"<#C024BE7LH>\" is not a Slack user mention like <@U024BE7LH>",
            ),
            (
                "!assign <!here>",
                "\"<!here>\" is not a Slack user mention like <@U024BE7LH>",
            ),
            (
                "!assign <@u024>",
                "\"<@u024>\" is not a Slack user mention like <@U024BE7LH>",
            ),
            (
                "!assign <@>",
                "\"<@>\" is not a Slack user mention like <@U024BE7LH>",
            ),
            (
                "!assign <@U024",
                "\"<@U024\" is not a Slack user mention like <@U024BE7LH>",
            ),
            (
                "!assign @:example.org",
                "\"@:example.org\" is not a Matrix user id like @alice:example.org",
            ),
            (
                "!assign @alice:",
                "\"@alice:\" is not a Matrix user id like @alice:example.org",
            ),
            (
                "!assign alice:example.org",
                "\"alice:example.org\" looks like a Matrix user id without its @: write @alice:example.org",
            ),
            (
                "!assign @",
                "\"@\" is not a teammate: use @name, @alice:example.org or a Slack mention",
            ),
            (
                "!assign a@b",
                "\"a@b\" is not a teammate: use @name, @alice:example.org or a Slack mention",
            ),
        ] {
            let e = err(text);
            assert_eq!(e.command, "!assign", "{text:?}");
            assert_eq!(e.message, message, "{text:?}");
        }
    }

    #[test]
    fn user_refs_name_agents_when_they_can() {
        assert_eq!(
            UserRef::Matrix("@alice:example.org".into()).as_agent(),
            Some(Agent::parse("@alice:example.org").unwrap())
        );
        assert_eq!(
            UserRef::SlackUser("U024BE7LH".into()).as_agent(),
            Some(Agent::parse("slack:U024BE7LH").unwrap())
        );
        assert_eq!(UserRef::Name("alice".into()).as_agent(), None);
        assert_eq!(UserRef::SlackUser("U1".into()).to_string(), "<@U1>");
        assert_eq!(UserRef::Name("alice".into()).to_string(), "@alice");
    }

    // ---- !tag / !untag ----

    #[test]
    fn tag_and_untag() {
        assert_eq!(
            thread("!tag billing"),
            ThreadCommand::Tag(tags(&["billing"]))
        );
        assert_eq!(
            thread("!tag billing VIP #bug-12"),
            ThreadCommand::Tag(tags(&["billing", "vip", "bug-12"]))
        );
        assert_eq!(
            thread("!untag billing, vip,refund"),
            ThreadCommand::Untag(tags(&["billing", "vip", "refund"]))
        );
        // Duplicates (after Tag's normalisation) collapse, first one kept.
        assert_eq!(
            thread("!tag vip VIP #vip billing"),
            ThreadCommand::Tag(tags(&["vip", "billing"]))
        );
    }

    #[test]
    fn tag_errors() {
        let e = err("!tag");
        assert_eq!(e.command, "!tag");
        assert_eq!(e.message, "!tag needs at least one tag");
        assert_eq!(
            e.to_string(),
            "!tag needs at least one tag. Usage: !tag <tag> [<tag> …]"
        );
        assert_eq!(err("!untag ,  ,").message, "!untag needs at least one tag");

        let e = err("!tag ok bad/tag");
        assert_eq!(
            e.message,
            "\"bad/tag\" is not a valid tag: use letters, digits, '-', '_', '.' and ':'"
        );
        let e = err(&format!("!untag {}", "a".repeat(41)));
        assert_eq!(e.command, "!untag");
        assert!(
            e.message
                .ends_with("is not a valid tag: expected 1-40 characters"),
            "{}",
            e.message
        );
        assert_eq!(
            err("!tag #").message,
            "\"#\" is not a valid tag: expected 1-40 characters"
        );
    }

    // ---- !template ----

    #[test]
    fn template_name_alone() {
        assert_eq!(
            thread("!template refund"),
            ThreadCommand::Template {
                name: "refund".into(),
                vars: BTreeMap::new()
            }
        );
        assert_eq!(
            thread("!template Refund_v2-b"),
            ThreadCommand::Template {
                name: "refund_v2-b".into(),
                vars: BTreeMap::new()
            }
        );
    }

    #[test]
    fn template_variables_and_quoting() {
        assert_eq!(
            thread(
                r#"!template refund amount=42.50 name="Jane Doe" note="she said \"hi\"" path="C:\temp\\x" empty="" bare="#
            ),
            ThreadCommand::Template {
                name: "refund".into(),
                vars: vars(&[
                    ("amount", "42.50"),
                    ("name", "Jane Doe"),
                    ("note", "she said \"hi\""),
                    ("path", "C:\\temp\\x"),
                    ("empty", ""),
                    ("bare", ""),
                ])
            }
        );
        // Variables may be spread over lines, and a quoted value may hold one.
        assert_eq!(
            thread("!template t\n a=1\n b=\"two\nlines\"\n"),
            ThreadCommand::Template {
                name: "t".into(),
                vars: vars(&[("a", "1"), ("b", "two\nlines")])
            }
        );
        // Curly quotes from "smart" keyboards work like straight ones.
        assert_eq!(
            thread("!template t name=“Jane Doe”"),
            ThreadCommand::Template {
                name: "t".into(),
                vars: vars(&[("name", "Jane Doe")])
            }
        );
        // A quote inside a bare value is just a character.
        assert_eq!(
            thread("!template t a=it\"s"),
            ThreadCommand::Template {
                name: "t".into(),
                vars: vars(&[("a", "it\"s")])
            }
        );
        // `=` inside a value belongs to the value.
        assert_eq!(
            thread("!template t url=https://x.test/?a=b"),
            ThreadCommand::Template {
                name: "t".into(),
                vars: vars(&[("url", "https://x.test/?a=b")])
            }
        );
    }

    #[test]
    fn template_errors() {
        for (text, message) in [
            ("!template", "!template needs the template's name"),
            ("!template   ", "!template needs the template's name"),
            (
                "!template re/fund",
                "\"re/fund\" is not a template name: use up to 64 letters, digits, '-' and '_'",
            ),
            (
                "!template name=x",
                "\"name=x\" is not a template name: use up to 64 letters, digits, '-' and '_'",
            ),
            (
                "!template refund amount=1 urgent",
                "\"urgent\" has no value: template variables are written key=value",
            ),
            ("!template refund a=1 a=2", "variable a is given twice"),
            (
                "!template refund =5",
                "\"\" is not a variable name: use letters, digits, '_', '-' and '.'",
            ),
            (
                "!template refund n@me=5",
                "\"n@me\" is not a variable name: use letters, digits, '_', '-' and '.'",
            ),
            (
                "!template refund name=\"Jane Doe",
                "the value of name: the quote is never closed (missing \")",
            ),
            (
                "!template refund name=\"Jane\"Doe",
                "the value of name: put a space after the closing quote",
            ),
            (
                "!template refund name=\"Jane \\\"",
                "the value of name: the quote is never closed (missing \")",
            ),
        ] {
            let e = err(text);
            assert_eq!(e.command, "!template", "{text:?}");
            assert_eq!(e.usage, "!template <name> [key=value …]", "{text:?}");
            assert_eq!(e.message, message, "{text:?}");
        }
        let long = format!("!template {}", "a".repeat(65));
        assert_eq!(err(&long).command, "!template");
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
            "\"closed\" is not a list filter: use open, mine, unclaimed or pending"
        );
        assert_eq!(e.usage, "!mailroom list [open|mine|unclaimed|pending]");
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

    // ---- help and Slack ----

    #[test]
    fn help_lists_every_command() {
        let help = help_text();
        for spec in COMMANDS.iter().chain(MAILROOM_SUBCOMMANDS.iter()) {
            // `!reply` and `!mailroom` are shown per form rather than by
            // their combined usage; the forms are checked below.
            if spec.name != "reply" && spec.name != "mailroom" {
                assert!(help.contains(spec.usage), "help misses {}", spec.usage);
            }
        }
        for form in [
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
