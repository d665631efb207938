//! The arguments of the commands typed in a ticket's thread: `!reply`,
//! `!assign`, `!tag` / `!untag` and `!template`.

use super::args::parse_vars;
use super::{
    ASSIGN, CommandError, REPLY, REPLY_FORCED, Spec, TEMPLATE, ThreadCommand, UserRef, error,
    quoted,
};
use crate::domain::ids::Tag;

/// `rest` is everything after `!reply` / `!reply!`.
pub(super) fn parse_reply(rest: &str, force: bool) -> Result<ThreadCommand, CommandError> {
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

pub(super) fn parse_assign(rest: &str) -> Result<UserRef, CommandError> {
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
pub(super) const MAX_USER_REF: usize = 255;

pub(super) fn parse_user_ref(token: &str) -> Result<UserRef, String> {
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

pub(super) fn bare_name(token: &str, name: &str) -> Result<UserRef, String> {
    if name.is_empty() || name.contains(['@', '<', '>', ':']) {
        return Err(format!(
            "{} is not a teammate: use @name, @alice:example.org or a Slack mention",
            quoted(token)
        ));
    }
    Ok(UserRef::Name(name.to_owned()))
}

pub(super) fn parse_tags(spec: &'static Spec, rest: &str) -> Result<Vec<Tag>, CommandError> {
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

pub(super) const MAX_TEMPLATE_NAME: usize = 64;

pub(super) fn parse_template(rest: &str) -> Result<ThreadCommand, CommandError> {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::command::fixtures::*;
    use crate::domain::command::unescape_slack;
    use crate::domain::ids::Agent;

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
}
