//! OutboundEmail → MIME bytes (lettre's builder).

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use pulldown_cmark::{Event, Options, Parser, html};

use crate::domain::email::Party;
use crate::domain::outbound::OutboundEmail;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("{field}: address {address} is not usable in mail headers: {reason}")]
    Address {
        field: &'static str,
        address: String,
        reason: String,
    },
    #[error("attachment {name}: content type {content_type:?} is not valid")]
    ContentType { name: String, content_type: String },
    #[error("building the message failed: {0}")]
    Build(String),
}

/// A composed message: the bytes to send and the SMTP envelope.
#[derive(Debug, Clone)]
pub struct Composed {
    pub raw: Vec<u8>,
    pub envelope: lettre::address::Envelope,
}

fn mailbox(field: &'static str, p: &Party) -> Result<Mailbox, ComposeError> {
    let address =
        p.address
            .as_str()
            .parse::<lettre::Address>()
            .map_err(|e| ComposeError::Address {
                field,
                address: p.address.to_string(),
                reason: e.to_string(),
            })?;
    Ok(Mailbox::new(p.name.clone(), address))
}

/// Markdown → HTML for the HTML part. Raw HTML in the text is shown as text,
/// not passed through: what a teammate types cannot inject markup into mail.
pub fn markdown_to_html(md: &str) -> String {
    let parser =
        Parser::new_ext(md, Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES).map(|ev| {
            match ev {
                Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
                other => other,
            }
        });
    let mut out = String::with_capacity(md.len() * 2);
    html::push_html(&mut out, parser);
    out
}

pub fn compose(mail: &OutboundEmail) -> Result<Composed, ComposeError> {
    let mut b = Message::builder()
        .message_id(Some(mail.message_id.bracketed()))
        .from(mailbox("From", &mail.from)?)
        .reply_to(mailbox("Reply-To", &mail.reply_to)?)
        .subject(mail.subject.clone())
        .date_now();
    for p in &mail.to {
        b = b.to(mailbox("To", p)?);
    }
    for p in &mail.cc {
        b = b.cc(mailbox("Cc", p)?);
    }
    if let Some(parent) = &mail.in_reply_to {
        b = b.in_reply_to(parent.bracketed());
    }
    if !mail.references.is_empty() {
        let refs: Vec<String> = mail.references.iter().map(|r| r.bracketed()).collect();
        b = b.references(refs.join(" "));
    }
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>{}</body></html>",
        markdown_to_html(&mail.body_markdown)
    );
    let alternative = MultiPart::alternative()
        .singlepart(SinglePart::plain(mail.body_markdown.clone()))
        .singlepart(SinglePart::html(html));
    let message = if mail.attachments.is_empty() {
        b.multipart(alternative)
    } else {
        let mut mixed = MultiPart::mixed().multipart(alternative);
        for a in &mail.attachments {
            let ct =
                ContentType::parse(&a.content_type).map_err(|_| ComposeError::ContentType {
                    name: a.name.clone(),
                    content_type: a.content_type.clone(),
                })?;
            mixed = mixed.singlepart(Attachment::new(a.name.clone()).body(a.data.clone(), ct));
        }
        b.multipart(mixed)
    }
    .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(Composed {
        envelope: message.envelope().clone(),
        raw: message.formatted(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{EmailAddress, MessageId};
    use crate::domain::outbound::OutboundAttachment;

    fn party(name: Option<&str>, a: &str) -> Party {
        Party::new(name.map(str::to_owned), EmailAddress::parse(a).unwrap())
    }

    fn sample() -> OutboundEmail {
        OutboundEmail {
            message_id: MessageId::parse("<r1.abc@example.com>").unwrap(),
            from: party(Some("Alice via Example Support"), "support@example.com"),
            reply_to: party(Some("Example Support"), "support+abcdefghijkm@example.com"),
            to: vec![party(Some("Carol Ünicode"), "carol@customer.example")],
            cc: vec![party(None, "dave@customer.example")],
            subject: "Re: Grüße & invoice".into(),
            in_reply_to: Some(MessageId::parse("<m2@customer.example>").unwrap()),
            references: vec![
                MessageId::parse("<m1@x>").unwrap(),
                MessageId::parse("<m2@customer.example>").unwrap(),
            ],
            body_markdown: "Hi **Carol**,\n\n<script>alert(1)</script> fixed.".into(),
            attachments: vec![OutboundAttachment {
                name: "invoice.pdf".into(),
                content_type: "application/pdf".into(),
                data: b"%PDF-1.4 fake".to_vec(),
            }],
        }
    }

    #[test]
    fn composed_mail_has_threading_headers_and_parses_back() {
        let c = compose(&sample()).unwrap();
        let text = String::from_utf8_lossy(&c.raw);
        assert!(text.contains("Message-ID: <r1.abc@example.com>"), "{text}");
        assert!(text.contains("In-Reply-To: <m2@customer.example>"));
        assert!(text.contains("References: <m1@x> <m2@customer.example>"));
        assert!(text.contains("support+abcdefghijkm@example.com"));
        let parsed = crate::mail::parse::parse_email(&c.raw);
        assert_eq!(parsed.subject, "Re: Grüße & invoice");
        assert_eq!(parsed.in_reply_to[0].as_str(), "m2@customer.example");
        assert!(parsed.text.contains("fixed."));
        assert_eq!(parsed.attachments.len(), 1);
        assert_eq!(parsed.attachments[0].name, "invoice.pdf");
        let rcpts: Vec<String> = c.envelope.to().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            rcpts,
            vec!["carol@customer.example", "dave@customer.example"]
        );
        assert_eq!(
            c.envelope.from().map(|a| a.to_string()).as_deref(),
            Some("support@example.com")
        );
    }

    /// The header section of a composed mail, unfolded.
    fn header_section(raw: &[u8]) -> String {
        let text = String::from_utf8_lossy(raw);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        head.replace("\r\n ", " ").replace("\r\n\t", " ")
    }

    /// A hostile customer mail through the real path: parsed, answered with
    /// the reply rules, composed. Returns the composed reply.
    fn reply_to_raw(customer_mail: &[u8], body: &str) -> Composed {
        use crate::domain::ids::TicketToken;
        use crate::domain::outbound::{Parent, ReplyInput, build_reply};
        let parsed = crate::mail::parse::parse_email(customer_mail);
        let parent = Parent {
            message_id: parsed.message_id.clone(),
            references: parsed.references.clone(),
            subject: parsed.subject.clone(),
            from: parsed.from.clone(),
            reply_to: parsed.reply_to.clone(),
            to: parsed.to.clone(),
            cc: parsed.cc.clone(),
        };
        let shared = EmailAddress::parse("support@example.com").unwrap();
        let token = TicketToken::parse("abcdefghijkm").unwrap();
        let out = build_reply(ReplyInput {
            mailbox_address: &shared,
            mailbox_display_name: "Example Support",
            from_name_template: "{agent} via {display_name}",
            agent_name: Some("Alice"),
            token: &token,
            parent: &parent,
            message_id: MessageId::parse("<r9@example.com>").unwrap(),
            body_markdown: body,
            attachments: vec![],
            only_to: None,
        })
        .expect("the reply rules accept a neutralised mail");
        compose(&out).unwrap()
    }

    fn envelope_recipients(c: &Composed) -> Vec<String> {
        c.envelope.to().iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn header_injection_in_the_reply_text_stays_in_the_body() {
        let customer = b"Message-ID: <m1@customer.example>\nFrom: carol@customer.example\n\
To: support@example.com\nSubject: Invoice\n\nHello\n";
        let c = reply_to_raw(
            customer,
            "Done.\r\nBcc: victim@evil.example\r\nSubject: pwned\r\n\r\n<b>x</b>\nTo: x@evil.example",
        );
        let head = header_section(&c.raw);
        assert!(!head.to_ascii_lowercase().contains("bcc"), "{head}");
        assert!(!head.contains("evil.example"), "{head}");
        assert!(!head.contains("pwned"), "{head}");
        assert_eq!(envelope_recipients(&c), ["carol@customer.example"]);
        let back = crate::mail::parse::parse_email(&c.raw);
        assert_eq!(back.subject, "Re: Invoice");
        assert!(
            back.text.contains("Bcc: victim@evil.example"),
            "{}",
            back.text
        );
    }

    #[test]
    fn encoded_line_breaks_and_controls_in_subject_and_names_are_neutralised_in_the_reply() {
        // RFC 2047 words decode to CR, LF, NUL and ESC: the parser must not
        // hand them to the reply, which would otherwise either carry them
        // into headers or refuse to answer this customer at all.
        let customer = b"Message-ID: <m2@customer.example>\n\
From: =?utf-8?Q?Carol=0D=0ABcc:_victim@evil.example=00?= <carol@customer.example>\n\
Cc: =?utf-8?B?RGF2ZQ0KVG86IHZpY3RpbUBldmlsLmV4YW1wbGUb?= <dave@customer.example>\n\
To: support@example.com\n\
Subject: =?utf-8?Q?Invoice=0D=0ABcc:_victim@evil.example=0D=0A=00=1B?=\n\nHello\n";
        let parsed = crate::mail::parse::parse_email(customer);
        for value in [
            parsed.subject.as_str(),
            parsed.from.name.as_deref().unwrap_or_default(),
            parsed.cc[0].name.as_deref().unwrap_or_default(),
        ] {
            assert!(!value.chars().any(char::is_control), "{value:?}");
        }
        let c = reply_to_raw(customer, "Fixed.");
        let head = header_section(&c.raw);
        for line in head.lines() {
            let name = line
                .split(':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            assert!(name != "bcc", "injected header: {line}");
            assert!(
                !line.chars().any(|c| c.is_control() && c != '\t'),
                "{line:?}"
            );
        }
        assert_eq!(
            envelope_recipients(&c),
            ["carol@customer.example", "dave@customer.example"]
        );
        let back = crate::mail::parse::parse_email(&c.raw);
        assert!(
            back.subject.starts_with("Re: Invoice Bcc: victim"),
            "{}",
            back.subject
        );
    }

    #[test]
    fn raw_html_in_markdown_is_escaped() {
        let html = markdown_to_html("<script>alert(1)</script> and <b onclick=x>hi</b>");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }
}
