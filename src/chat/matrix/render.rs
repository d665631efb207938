//! What a Matrix room shows of an email: the plain body and its HTML twin,
//! at each [`Rendering`] level.

use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::ruma::events::Mentions;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;

use crate::chat::{EmailText, TicketCard, listed, minimal_text, status_line};
use crate::domain::ids::{Agent, TicketId};
use crate::domain::render::{EmailView, Rendering};

/// Matrix events are limited to 64 KiB; leave room for the HTML twin and JSON.
pub const MAX_BODY_CHARS: usize = 12_000;

pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Plain text and HTML with line breaks kept. The email's own HTML never
/// reaches the room: only its text rendering, escaped, so nothing the sender
/// wrote can become markup, links or tracking pixels.
pub(super) fn text_block(text: &str) -> String {
    escape_html(text).replace('\n', "<br>")
}

/// The body of an email as shown in the room: plain and HTML.
fn render_email(email: &EmailView, heading: &str) -> (String, String) {
    let t = EmailText::new(email, MAX_BODY_CHARS);
    let mut html = format!(
        "<p><strong>{}</strong><br><b>From:</b> {}<br>",
        escape_html(heading),
        escape_html(&t.from)
    );
    if let Some(to) = &t.to {
        html.push_str(&format!("<b>To:</b> {}<br>", escape_html(to)));
    }
    if let Some(cc) = &t.cc {
        html.push_str(&format!("<b>Cc:</b> {}<br>", escape_html(cc)));
    }
    html.push_str(&format!(
        "<b>Subject:</b> {}<br><b>Date:</b> {}</p>{}<p>{}</p>",
        escape_html(&t.subject),
        t.date,
        auth_html(&t.auth),
        text_block(t.body)
    ));
    if let Some(note) = &t.note {
        html.push_str(&format!("<p><em>{}</em></p>", escape_html(note)));
    }
    if !t.attachments.is_empty() {
        let list = listed(t.attachments.clone(), "attachments");
        html.push_str(&format!("<p>{}</p>", text_block(&list.join("\n"))));
    }
    for n in &listed(t.problems.clone(), "reading problems") {
        html.push_str(&format!("<p>⚠️ {}</p>", escape_html(n)));
    }
    (t.plain(heading), html)
}

/// The authentication lines as HTML; the spoof warning in bold.
fn auth_html(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = lines
        .iter()
        .map(|l| {
            if l.starts_with(crate::domain::authres::SPOOF_WARNING) {
                format!("<strong>{}</strong>", escape_html(l))
            } else {
                escape_html(l)
            }
        })
        .collect();
    format!("<p>{}</p>", shown.join("<br>"))
}

/// The content at `rendering`: HTML and plain text, plain text alone, or
/// the minimal card.
fn content(
    rendering: Rendering,
    heading: &str,
    ticket: TicketId,
    email: &EmailView,
    status: Option<&str>,
) -> RoomMessageEventContent {
    let status_plain = status.map(|s| format!("\nStatus: {s}")).unwrap_or_default();
    match rendering {
        Rendering::Full => {
            let (mut plain, mut html) = render_email(email, heading);
            if let Some(s) = status {
                plain.push_str(&status_plain);
                html.push_str(&format!("<p><b>Status:</b> {}</p>", escape_html(s)));
            }
            RoomMessageEventContent::text_html(plain, html)
        }
        Rendering::Plain => {
            let (mut plain, _) = render_email(email, heading);
            plain.push_str(&status_plain);
            RoomMessageEventContent::text_plain(plain)
        }
        Rendering::Minimal => {
            let mut plain = minimal_text(heading, ticket, email);
            plain.push_str(&status_plain);
            RoomMessageEventContent::text_plain(plain)
        }
    }
}

/// A ticket's root message (also its replacement when the status changes).
/// Public so tests can check what reaches the room without a homeserver.
pub fn root_content(
    card: &TicketCard<'_>,
    email: &EmailView,
    rendering: Rendering,
) -> RoomMessageEventContent {
    let heading = format!("📨 {} · {}", card.ticket, card.mailbox_display_name);
    content(
        rendering,
        &heading,
        card.ticket,
        email,
        Some(&status_line(card)),
    )
}

/// A customer's follow-up as posted in the thread, mentioning `owner` so
/// they hear of it.
pub fn follow_up_content(
    ticket: TicketId,
    email: &EmailView,
    owner: Option<&Agent>,
    rendering: Rendering,
) -> RoomMessageEventContent {
    let heading = match owner {
        Some(o) => format!("📨 New mail from the customer ({o})"),
        None => "📨 New mail from the customer".to_owned(),
    };
    let content = content(rendering, &heading, ticket, email, None);
    match owner.and_then(|o| OwnedUserId::try_from(o.as_str()).ok()) {
        Some(user) => content.add_mentions(Mentions::with_user_ids([user])),
        None => content,
    }
}

/// A message calling on `mentions`: each one's id in the text becomes a
/// pill (a matrix.to link clients show as their name), and `m.mentions`
/// lists them. A text message, not a notice: the default push rules
/// silence notices (`.m.rule.suppress_notices` is checked before
/// `.m.rule.is_user_mention`), and this one is meant to ping.
pub fn mention_message(text: &str, mentions: &[Agent]) -> RoomMessageEventContent {
    let mut html = text_block(text);
    let mut users: Vec<OwnedUserId> = Vec::new();
    for a in mentions {
        let Ok(user) = OwnedUserId::try_from(a.as_str()) else {
            continue;
        };
        let id = escape_html(a.as_str());
        html = html.replace(
            &id,
            &format!("<a href=\"https://matrix.to/#/{id}\">{id}</a>"),
        );
        users.push(user);
    }
    RoomMessageEventContent::text_html(text, html).add_mentions(Mentions::with_user_ids(users))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::email::{AttachmentMeta, Party};
    use crate::domain::ids::{EmailAddress, TicketId};
    use crate::domain::ticket::TicketState;

    fn view(body: &str) -> EmailView {
        EmailView::new(
            Party::new(
                Some("Eve <script>".into()),
                EmailAddress::parse("eve@x.example").unwrap(),
            ),
            vec![],
            vec![],
            "Hi <b>there</b> & @room".into(),
            Some(1_700_000_000),
            body.into(),
            vec![AttachmentMeta {
                name: "a.pdf".into(),
                content_type: "application/pdf".into(),
                size: 2048,
                inline: false,
            }],
            vec![],
        )
    }

    #[test]
    fn email_html_is_escaped_not_passed_through() {
        let (_, html) = render_email(
            &view("<img src=x onerror=alert(1)> <a href=\"javascript:x\">y</a>"),
            "h",
        );
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<a "), "{html}");
        assert!(html.contains("&lt;img"), "{html}");
        assert!(html.contains("Eve &lt;script&gt;"), "{html}");
        assert!(
            html.contains("📎 a.pdf (application/pdf, 2.0 KB)"),
            "{html}"
        );
    }

    #[test]
    fn long_bodies_are_truncated_below_the_event_limit() {
        let long = "x".repeat(100_000);
        let card_state = TicketState::Open;
        let card = TicketCard {
            ticket: TicketId::new(1),
            mailbox_display_name: "Support",
            state: &card_state,
            tags: vec![],
            priority: crate::domain::routing::Priority::Normal,
            sla: None,
        };
        let content = root_content(&card, &view(&long), Rendering::Full);
        let json = serde_json::to_vec(&content).unwrap();
        assert!(json.len() < 60 * 1024, "event of {} bytes", json.len());
        assert!(content.body().contains("truncated"));
        assert!(content.body().ends_with("Status: #1 · Open · unclaimed"));
    }
}
