//! What mailroom posts to Slack, as Block Kit JSON, and how Slack's message
//! markup reads back. Pure functions, tested on their own.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::chat::{
    EMPTY_BODY, EmailText, MAX_LISTED, TicketCard, clip, minimal_text, status_line, truncate_chars,
};
use crate::domain::ids::TicketId;
use crate::domain::render::{EmailView, Rendering};

/// Slack refuses a section whose text is longer than this.
pub const SECTION_CHARS: usize = 3_000;
/// How much of a body is shown in the message; the rest is in
/// `full-message.txt` in the thread. Eight sections keep the message far
/// below Slack's 50-block limit.
pub const MAX_BODY_CHARS: usize = SECTION_CHARS * 8;
const HEADER_CHARS: usize = 150;

/// Escapes text for mrkdwn: Slack gives `&`, `<` and `>` meaning (links,
/// mentions, `<!channel>`), so customer text must never carry them raw.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Escaped text in which mailroom's own names for Slack teammates
/// (`slack:U024BE7LH`) become mentions (`<@U024BE7LH>`).
pub fn mrkdwn(text: &str) -> String {
    let escaped = escape(text);
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped.as_str();
    while let Some(at) = rest.find("slack:") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + "slack:".len()..];
        let id_len = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit()))
            .unwrap_or(tail.len());
        let id = &tail[..id_len];
        if id.len() >= 2 && id.starts_with(['U', 'W']) {
            out.push_str(&format!("<@{id}>"));
        } else {
            out.push_str("slack:");
            out.push_str(id);
        }
        rest = &tail[id_len..];
    }
    out.push_str(rest);
    out
}

/// Splits `text` into pieces of at most `max` characters, preferring line
/// breaks, then blanks, so that a section never ends mid-word if it can help it.
pub fn split_chars(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (head, cut) = truncate_chars(rest, max);
        if !cut {
            out.push(head);
            break;
        }
        let at = head
            .rfind('\n')
            .filter(|&i| i > head.len() / 2)
            .or_else(|| head.rfind(' ').filter(|&i| i > head.len() / 2))
            .map(|i| i + 1)
            .unwrap_or(head.len());
        out.push(&rest[..at]);
        rest = &rest[at..];
    }
    out
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

fn context(text: String) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
}

/// The blocks of one email: who, what, the body in sections, what was
/// folded away, attachments and reading problems.
fn email_blocks(email: &EmailView, blocks: &mut Vec<Value>) {
    let t = EmailText::new(email, MAX_BODY_CHARS);
    let mut head = format!("*From:* {}\n", escape(&t.from));
    if let Some(to) = &t.to {
        head.push_str(&format!("*To:* {}\n", escape(to)));
    }
    if let Some(cc) = &t.cc {
        head.push_str(&format!("*Cc:* {}\n", escape(cc)));
    }
    head.push_str(&format!(
        "*Subject:* {}\n*Date:* {}",
        escape(&t.subject),
        t.date
    ));
    blocks.push(section(truncate_chars(&head, SECTION_CHARS).0.to_owned()));
    if let Some(block) = auth_block(&t.auth) {
        blocks.push(block);
    }
    if t.body == EMPTY_BODY {
        blocks.push(section(format!("_{EMPTY_BODY}_")));
    } else {
        // Escaping lengthens the text, so split the escaped form.
        let body = escape(t.body);
        for piece in split_chars(body.trim(), SECTION_CHARS) {
            blocks.push(section(piece.to_owned()));
        }
    }
    let mut notes = Vec::new();
    if t.truncated {
        notes.push(format!(
            "_Truncated at {MAX_BODY_CHARS} characters; the full text is attached in the thread._"
        ));
    } else if let Some(note) = &t.note {
        notes.push(format!("_{}_", escape(note)));
    }
    let notes = [
        ("notes", notes),
        (
            "attachments",
            t.attachments.iter().map(|a| escape(a)).collect(),
        ),
        (
            "reading problems",
            t.problems
                .iter()
                .map(|n| format!("⚠️ {}", escape(n)))
                .collect(),
        ),
    ];
    if notes.iter().any(|(_, lines)| !lines.is_empty()) {
        blocks.push(context(fit_lines(&notes, SECTION_CHARS)));
    }
}

/// The authentication lines as a context block; the spoof warning in bold.
fn auth_block(lines: &[String]) -> Option<Value> {
    if lines.is_empty() {
        return None;
    }
    let shown: Vec<String> = lines
        .iter()
        .map(|l| {
            if l.starts_with(crate::domain::authres::SPOOF_WARNING) {
                format!("*{}*", escape(l))
            } else {
                escape(l)
            }
        })
        .collect();
    Some(context(
        truncate_chars(&shown.join("\n"), SECTION_CHARS)
            .0
            .to_owned(),
    ))
}

/// Groups of lines (the note, the attachments, the reading problems) in at
/// most `max` characters: at most [`MAX_LISTED`] lines of a group, as many
/// whole lines as fit, and for each group a count of the lines left out,
/// so that a long attachment list is never cut off silently.
fn fit_lines(groups: &[(&str, Vec<String>)], max: usize) -> String {
    // Room for the count lines.
    let budget = max.saturating_sub(40 * groups.len());
    let mut shown: Vec<&str> = Vec::new();
    let mut counts = Vec::new();
    let mut used = 0;
    let mut full = false;
    for (kind, lines) in groups {
        let mut left_out = 0;
        for (i, line) in lines.iter().enumerate() {
            let len = line.chars().count() + 1;
            if full || i >= MAX_LISTED || used + len > budget {
                full |= used + len > budget;
                left_out += 1;
            } else {
                shown.push(line);
                used += len;
            }
        }
        if left_out > 0 {
            counts.push(format!("… and {left_out} more {kind}"));
        }
    }
    let mut out = shown.join("\n");
    for c in counts {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&c);
    }
    out
}

/// A message as `chat.postMessage` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    /// The notification text, or the whole message when there are no blocks.
    pub text: String,
    pub blocks: Option<Value>,
    /// Whether Slack reads `text` as mrkdwn; the plain renderings turn it
    /// off so that nothing in them can format.
    pub mrkdwn: bool,
}

/// Slack refuses a `text` over 40,000 characters; escaping may lengthen.
const PLAIN_CHARS: usize = 30_000;

/// The plain renderings: the email as text, or the minimal card.
fn plain_post(
    rendering: Rendering,
    heading: &str,
    ticket: TicketId,
    email: &EmailView,
    status: Option<&str>,
) -> Post {
    let mut text = match rendering {
        Rendering::Minimal => minimal_text(heading, ticket, email),
        Rendering::Full | Rendering::Plain => clip(
            &EmailText::new(email, MAX_BODY_CHARS).plain(heading),
            PLAIN_CHARS,
        )
        .into_owned(),
    };
    if let Some(s) = status {
        text.push_str(&format!("\nStatus: {s}"));
    }
    Post {
        text: escape(&text),
        blocks: None,
        mrkdwn: false,
    }
}

/// A ticket's root message at `rendering`.
pub fn root_post(card: &TicketCard<'_>, email: &EmailView, rendering: Rendering) -> Post {
    match rendering {
        Rendering::Full => {
            let (text, blocks) = root_message(card, email);
            Post {
                text,
                blocks: Some(blocks),
                mrkdwn: true,
            }
        }
        _ => plain_post(
            rendering,
            &format!("📨 {} · {}", card.ticket, card.mailbox_display_name),
            card.ticket,
            email,
            Some(&status_line(card)),
        ),
    }
}

/// A customer's follow-up at `rendering`.
pub fn follow_up_post(
    ticket: TicketId,
    email: &EmailView,
    owner: Option<&str>,
    rendering: Rendering,
) -> Post {
    match rendering {
        Rendering::Full => {
            let (text, blocks) = follow_up_message(email, owner);
            Post {
                text,
                blocks: Some(blocks),
                mrkdwn: true,
            }
        }
        _ => {
            let heading = match owner {
                Some(o) => format!("📨 New mail from the customer ({o})"),
                None => "📨 New mail from the customer".to_owned(),
            };
            let mut post = plain_post(rendering, &heading, ticket, email, None);
            // The owner is still called: a mention is the one markup kept.
            if let Some(o) = owner {
                post.text = format!("{}\n{}", mrkdwn(o), post.text);
                post.mrkdwn = true;
            }
            post
        }
    }
}

/// A ticket's root message: header, the first email, and a status line
/// (kept current with `chat.update`). Returns the notification text and blocks.
pub fn root_message(card: &TicketCard<'_>, email: &EmailView) -> (String, Value) {
    let heading = format!("📨 {} · {}", card.ticket, email.subject);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate_chars(&heading, HEADER_CHARS).0, "emoji": true}
    })];
    email_blocks(email, &mut blocks);
    blocks.push(json!({"type": "divider"}));
    blocks.push(context(format!(
        "*{}* · {}",
        escape(card.mailbox_display_name),
        mrkdwn(&status_line(card))
    )));
    // The notification text: Slack cuts anything past 40,000 characters
    // and clients show one line of it, so the subject is clipped like the header.
    let text = format!(
        "{} · {} · from {}",
        card.ticket,
        clip(&email.subject, HEADER_CHARS),
        email.from.address
    );
    (escape(&text), Value::Array(blocks))
}

/// A customer's follow-up in the thread; mentions the owner so they hear of it.
pub fn follow_up_message(email: &EmailView, owner: Option<&str>) -> (String, Value) {
    let heading = match owner {
        Some(o) => format!("📨 *New mail from the customer* ({})", mrkdwn(o)),
        None => "📨 *New mail from the customer*".to_owned(),
    };
    let mut blocks = vec![section(heading)];
    email_blocks(email, &mut blocks);
    let text = format!(
        "New mail from {}: {}",
        email.from.address,
        clip(&email.subject, HEADER_CHARS)
    );
    (escape(&text), Value::Array(blocks))
}

/// Slack's markup in a message teammates typed, read back as plain text:
/// links become Markdown links (or bare addresses), channel and group
/// references their names, entities unescaped. User mentions stay
/// `<@U…>`, the form `!assign` reads.
pub fn read_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let tail = &rest[open + 1..];
        let Some(close) = tail.find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let inner = &tail[..close];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        if target.starts_with('@') {
            out.push('<');
            out.push_str(target);
            out.push('>');
        } else if let Some(ch) = target.strip_prefix('#') {
            out.push('#');
            out.push_str(label.unwrap_or(ch));
        } else if let Some(special) = target.strip_prefix('!') {
            let name = special.split('^').next().unwrap_or(special);
            out.push('@');
            out.push_str(label.unwrap_or(name).trim_start_matches('@'));
        } else if let Some(addr) = target.strip_prefix("mailto:") {
            out.push_str(label.unwrap_or(addr));
        } else {
            match label {
                Some(l) if l != target => out.push_str(&format!("[{l}]({target})")),
                _ => out.push_str(target),
            }
        }
        rest = &tail[close + 1..];
    }
    out.push_str(rest);
    crate::domain::command::unescape_slack(&out)
}

/// The user ids of the `<@U…>` mentions in text [`read_markup`] returned,
/// in order (repeats included).
pub fn mentioned_users(text: &str) -> Vec<&str> {
    mentions(text).map(|(_, id)| id).collect()
}

/// Text with each `<@U…>` mention replaced by the name `names` gives for
/// its id, or `@` and the id where it gives none.
pub fn name_mentions(text: &str, names: &HashMap<&str, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, id) in mentions(text) {
        out.push_str(&text[at..range.start]);
        match names.get(id) {
            Some(name) => out.push_str(name),
            None => {
                out.push('@');
                out.push_str(id);
            }
        }
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Each `<@ID>` in text, with its byte range and the id (Slack user ids are
/// upper-case letters and digits).
fn mentions(text: &str) -> impl Iterator<Item = (std::ops::Range<usize>, &str)> {
    let mut from = 0;
    std::iter::from_fn(move || {
        while let Some(i) = text[from..].find("<@") {
            let start = from + i;
            let id_start = start + 2;
            let len = text[id_start..]
                .bytes()
                .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                .count();
            let id_end = id_start + len;
            from = id_start;
            if len > 0 && text[id_end..].starts_with('>') {
                from = id_end + 1;
                return Some((start..from, &text[id_start..id_end]));
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::email::Party;
    use crate::domain::ids::EmailAddress;
    use crate::domain::ticket::TicketState;

    fn view(body: &str) -> EmailView {
        EmailView::new(
            Party::new(
                Some("Eve <script>".into()),
                EmailAddress::parse("eve@example.com").unwrap(),
            ),
            vec![],
            vec![],
            "Help & <b>now</b> @channel".into(),
            Some(1_700_000_000),
            body.into(),
            vec![],
            vec![],
        )
    }

    fn texts(blocks: &Value) -> Vec<String> {
        blocks
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| {
                let mut t: Vec<String> = b["text"]["text"]
                    .as_str()
                    .map(str::to_owned)
                    .into_iter()
                    .collect();
                for e in b["elements"].as_array().into_iter().flatten() {
                    t.extend(e["text"].as_str().map(str::to_owned));
                }
                t
            })
            .collect()
    }

    #[test]
    fn customer_text_cannot_mention_or_link() {
        let state = TicketState::Open;
        let card = TicketCard {
            ticket: TicketId::new(7),
            mailbox_display_name: "Support",
            state: &state,
            tags: vec![],
            priority: crate::domain::routing::Priority::Normal,
            sla: None,
        };
        let (text, blocks) = root_message(&card, &view("Hi <!channel> and <@U123> <http://x|y>"));
        let all = texts(&blocks).join("\n") + text.as_str();
        assert!(!all.contains("<!channel>"), "{all}");
        assert!(!all.contains("<@U123>"), "{all}");
        assert!(!all.contains("<http"), "{all}");
        assert!(all.contains("&lt;!channel&gt;"));
        assert!(all.contains("Help &amp; &lt;b&gt;now&lt;/b&gt;"));
    }

    #[test]
    fn long_bodies_fit_slack_limits_and_say_they_were_cut() {
        let state = TicketState::Open;
        let card = TicketCard {
            ticket: TicketId::new(7),
            mailbox_display_name: "Support",
            state: &state,
            tags: vec![],
            priority: crate::domain::routing::Priority::Normal,
            sla: None,
        };
        let body = "word & more <x> ".repeat(4_000); // 64 000 chars, more once escaped
        let (_, blocks) = root_message(&card, &view(&body));
        let blocks = blocks.as_array().unwrap();
        assert!(blocks.len() <= 50);
        for b in blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(t.chars().count() <= SECTION_CHARS, "{}", t.len());
            }
        }
        let all = texts(&Value::Array(blocks.clone())).join("");
        assert!(all.contains("Truncated at"));
        let header = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(header.chars().count() <= 150);
    }

    #[test]
    fn teammates_become_mentions_in_status_and_notices() {
        assert_eq!(
            mrkdwn("claimed by slack:U024BE7LH & slack:x"),
            "claimed by <@U024BE7LH> &amp; slack:x"
        );
        assert_eq!(mrkdwn("@alice:example.org"), "@alice:example.org");
    }

    #[test]
    fn splitting_prefers_line_breaks_and_loses_nothing() {
        let text = format!("{}\n{}", "a".repeat(2_000), "b".repeat(2_000));
        let parts = split_chars(&text, 3_000);
        assert_eq!(parts.len(), 2);
        assert!(parts[0].ends_with('\n'));
        assert_eq!(parts.concat(), text);
        let solid = "c".repeat(7_000);
        let parts = split_chars(&solid, 3_000);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [3_000, 3_000, 1_000]
        );
    }

    #[test]
    fn typed_markup_reads_back_as_plain_text() {
        assert_eq!(
            read_markup(
                "!reply see <https://ex.com/a?b=1&amp;c=2|the docs> &amp; <mailto:a@b.c|a@b.c>"
            ),
            "!reply see [the docs](https://ex.com/a?b=1&c=2) & a@b.c"
        );
        assert_eq!(read_markup("!assign <@U024BE7LH>"), "!assign <@U024BE7LH>");
        assert_eq!(
            read_markup("in <#C123|general> <!here>"),
            "in #general @here"
        );
        assert_eq!(
            read_markup("1 &lt; 2 <https://x.org>"),
            "1 < 2 https://x.org"
        );
        assert_eq!(read_markup("broken <tag"), "broken <tag");
    }

    #[test]
    fn mentions_become_names_for_the_customer() {
        let text = read_markup("!reply <@U1AB> and <@W2> will call; <@U1AB> again, <@U9>.");
        assert_eq!(mentioned_users(&text), ["U1AB", "W2", "U1AB", "U9"]);
        let names = HashMap::from([("U1AB", "Ann Lee".to_owned()), ("W2", "Bo".to_owned())]);
        assert_eq!(
            name_mentions(&text, &names),
            "!reply Ann Lee and Bo will call; Ann Lee again, @U9."
        );
        // Not mentions: left as they are.
        for plain in ["a <@> b", "<@u1>", "<@U1 x>", "<@U1", "x <@@U1> y", "<@U1|"] {
            assert!(mentioned_users(plain).is_empty(), "{plain}");
            assert_eq!(name_mentions(plain, &names), plain);
        }
        assert_eq!(name_mentions("<@<@W2>>", &names), "<@Bo>");
    }

    #[test]
    fn long_lists_show_what_fits_and_count_the_rest_exactly() {
        let lines: Vec<String> = (0..40)
            .map(|i| format!("📎 {i:02} {}", "x".repeat(200)))
            .collect();
        let out = fit_lines(
            &[
                ("notes", vec!["_note_".into()]),
                ("attachments", lines),
                ("reading problems", vec!["⚠️ p".into()]),
            ],
            SECTION_CHARS,
        );
        assert!(out.chars().count() <= SECTION_CHARS, "{}", out.len());
        let shown = out.lines().filter(|l| l.starts_with("📎")).count();
        assert!(shown > 5 && shown < 40, "{shown}");
        assert!(
            out.contains(&format!("… and {} more attachments", 40 - shown)),
            "{out}"
        );
        assert!(out.contains("… and 1 more reading problems"), "{out}");
        assert!(out.starts_with("_note_\n"));
        // Short lists are shown whole, at most MAX_LISTED lines of a kind.
        let few: Vec<String> = (0..35).map(|i| format!("a{i}")).collect();
        let out = fit_lines(&[("attachments", few)], SECTION_CHARS);
        assert_eq!(out.lines().count(), MAX_LISTED + 1);
        assert!(out.ends_with("… and 5 more attachments"));
    }

    #[test]
    fn authentication_results_and_the_spoof_warning_are_shown_at_every_level() {
        use crate::domain::authres::{AuthSummary, Trusted};
        let mut v = view("Pay to the new IBAN.");
        v.auth = AuthSummary::evaluate(
            &["mx.google.com; spf=softfail smtp.mailfrom=x@example.com; dmarc=fail (p=REJECT) header.from=example.com".to_owned()],
            &[],
            &Trusted::new(["mx.google.com".to_owned()], false),
            "example.com",
        );
        let card_state = TicketState::Open;
        let card = TicketCard {
            ticket: TicketId::new(3),
            mailbox_display_name: "Support",
            state: &card_state,
            tags: vec![],
            priority: crate::domain::routing::Priority::Normal,
            sla: None,
        };
        let full = root_post(&card, &v, Rendering::Full);
        let all = texts(full.blocks.as_ref().unwrap()).join("\n");
        assert!(
            all.contains("🔐 SPF softfail · DMARC fail (checked by mx.google.com)"),
            "{all}"
        );
        assert!(
            all.contains("*⚠ possible spoof — check before replying: example.com fails DMARC*"),
            "{all}"
        );
        for level in [Rendering::Plain, Rendering::Minimal] {
            let post = root_post(&card, &v, level);
            assert!(
                post.text
                    .contains("⚠ possible spoof — check before replying"),
                "{level:?}: {}",
                post.text
            );
        }
        // Without results from a trusted server nothing is said.
        let plain = root_post(&card, &view("x"), Rendering::Full);
        let all = texts(plain.blocks.as_ref().unwrap()).join("\n");
        assert!(!all.contains("🔐") && !all.contains("spoof"), "{all}");
    }
}
