//! Header fields: raw access for hashing and flag headers, identity and
//! threading ids, addresses, and telling automatic mail apart.
use mail_parser::{Addr, HeaderName, HeaderValue, Message, MessageParser, MimeHeaders, PartType};

use super::{Notes, SYNTHETIC_ID_DOMAIN, Trace, UNKNOWN_SENDER, collapse_whitespace, quoted};
use crate::domain::email::{AutoKind, ContentHash, Party};
use crate::domain::ids::{EmailAddress, MessageId};

// ---------------------------------------------------------------------------
// Raw header access

/// A top-level header field: its name and its value unfolded and trimmed.
pub(super) type RawHeader<'a> = (&'a [u8], Vec<u8>);

/// Splits `raw` into its top-level header fields and the body (everything
/// after the first blank line; empty when there is none).
pub(super) fn split_message(raw: &[u8]) -> (Vec<RawHeader<'_>>, &[u8]) {
    let mut headers: Vec<RawHeader<'_>> = Vec::new();
    // Whether the last line was a header we can append continuation lines to;
    // a stray line without a colon breaks the chain.
    let mut continuable = false;
    let mut rest = raw;
    loop {
        let mut pieces = rest.splitn(2, |&b| b == b'\n');
        let line = pieces.next().unwrap_or_default();
        let next = pieces.next();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            // The blank line ending the header (or the end of the input).
            finish_headers(&mut headers);
            return (headers, next.unwrap_or_default());
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            // Folded continuation: the line break and the leading blanks
            // become one space.
            if continuable && let Some((_, value)) = headers.last_mut() {
                value.push(b' ');
                value.extend_from_slice(line.trim_ascii_start());
            }
        } else if let Some(colon) = line.iter().position(|&b| b == b':')
            && let Some((name, colon_and_value)) = line.split_at_checked(colon)
        {
            let value = colon_and_value.get(1..).unwrap_or_default();
            headers.push((name.trim_ascii(), value.to_vec()));
            continuable = true;
        } else {
            continuable = false;
        }
        match next {
            Some(next) => rest = next,
            None => {
                finish_headers(&mut headers);
                return (headers, &[]);
            }
        }
    }
}

pub(super) fn finish_headers(headers: &mut [RawHeader<'_>]) {
    for (_, value) in headers.iter_mut() {
        let trimmed = value.trim_ascii().to_vec();
        *value = trimmed;
    }
}

pub(super) fn first_header<'h>(headers: &'h [RawHeader<'_>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_slice())
}

pub(super) fn has_header(headers: &[RawHeader<'_>], name: &str) -> bool {
    first_header(headers, name).is_some()
}

/// The first `name` header as text (lossy: raw 8-bit headers do occur).
pub(super) fn raw_header_text(headers: &[RawHeader<'_>], name: &str) -> Option<String> {
    first_header(headers, name).map(|v| String::from_utf8_lossy(v).into_owned())
}

// ---------------------------------------------------------------------------
// Identity

pub(super) fn synthesised_id(
    hash: &ContentHash,
    notes: &mut Notes,
    header: Option<&str>,
) -> MessageId {
    // The hash is hex, so `<32 hex>@mailroom.invalid` always parses; the
    // fallback only exists because MessageId has no infallible constructor.
    let hex = hash.as_str().get(..32).unwrap_or(hash.as_str());
    let id = MessageId::parse(&format!("{hex}@{SYNTHETIC_ID_DOMAIN}"))
        .unwrap_or_else(|_| fallback_message_id());
    match header {
        Some(raw) => notes.push(format!(
            "Message-ID header unusable ({}); synthesised {id}",
            quoted(raw)
        )),
        None => notes.push(format!("no Message-ID header; synthesised {id}")),
    }
    id
}

/// The ids mail-parser found in a header (all occurrences), as strings.
pub(super) fn ids_of(message: &Message<'_>, name: HeaderName<'static>) -> Vec<String> {
    let mut ids = Vec::new();
    for value in message.header_values(name) {
        match value {
            HeaderValue::Text(id) => ids.push(id.to_string()),
            HeaderValue::TextList(list) => ids.extend(list.iter().map(|id| id.to_string())),
            _ => {}
        }
    }
    ids
}

/// The Message-ID of the copy a delivery report returns: a `message/rfc822`
/// part (the whole mail) or an `rfc822-headers` part (its header only).
pub(super) fn returned_message_id(message: &Message<'_>) -> Option<MessageId> {
    message.parts.iter().find_map(|part| {
        let ids = match &part.body {
            PartType::Message(returned) => ids_of(returned, HeaderName::MessageId),
            _ => {
                let ct = part.content_type()?;
                let headers_only = (ct.ctype().eq_ignore_ascii_case("text")
                    || ct.ctype().eq_ignore_ascii_case("message"))
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"));
                if !headers_only {
                    return None;
                }
                let returned = MessageParser::default().parse_headers(part.contents())?;
                ids_of(&returned, HeaderName::MessageId)
            }
        };
        ids.iter().find_map(|id| MessageId::parse(id).ok())
    })
}

pub(super) fn parse_ids(
    message: &Message<'_>,
    name: HeaderName<'static>,
    label: &str,
    notes: &mut Notes,
) -> Vec<MessageId> {
    let mut ids = Vec::new();
    for raw in ids_of(message, name) {
        match MessageId::parse(&raw) {
            Ok(id) => ids.push(id),
            Err(_) => notes.push(format!("{label}: skipped unusable id {}", quoted(&raw))),
        }
    }
    ids
}

// ---------------------------------------------------------------------------
// Addresses

/// Every mailbox in every `name` header, groups flattened.
pub(super) fn addresses<'m>(
    message: &'m Message<'_>,
    name: HeaderName<'static>,
) -> Vec<&'m Addr<'m>> {
    message
        .header_values(name)
        .filter_map(|v| v.as_address())
        .flat_map(|a| a.iter())
        .collect()
}

pub(super) fn party_of(addr: &&Addr<'_>) -> Option<Party> {
    let address = EmailAddress::parse(addr.address()?).ok()?;
    let name = addr.name().map(collapse_whitespace);
    Some(Party::new(name, address))
}

pub(super) fn parties(
    message: &Message<'_>,
    name: HeaderName<'static>,
    label: &str,
    notes: &mut Notes,
) -> Vec<Party> {
    let mut parties = Vec::new();
    for addr in addresses(message, name) {
        match party_of(&addr) {
            Some(p) => parties.push(p),
            None => {
                let shown = match (addr.name(), addr.address()) {
                    (_, Some(a)) => a.to_owned(),
                    (Some(n), None) => n.to_owned(),
                    (None, None) => String::new(),
                };
                notes.push(format!(
                    "{label}: skipped unusable address {}",
                    quoted(&shown)
                ));
            }
        }
    }
    parties
}

pub(super) fn unknown_party() -> Party {
    let address = EmailAddress::parse(UNKNOWN_SENDER).unwrap_or_else(|_| fallback_address());
    Party {
        name: None,
        address,
    }
}

// `MessageId` and `EmailAddress` can only be built through their fallible
// `parse`. The literals below are accepted by it (pinned by the test
// `fallback_literals_are_valid`), so these loops return on their first
// iteration; they exist only to give the type checker a total function
// without an unwrap.
pub(super) fn fallback_message_id() -> MessageId {
    loop {
        if let Ok(id) = MessageId::parse("unknown@mailroom.invalid") {
            return id;
        }
    }
}

pub(super) fn fallback_address() -> EmailAddress {
    loop {
        if let Ok(address) = EmailAddress::parse("unknown@unknown.invalid") {
            return address;
        }
    }
}

// ---------------------------------------------------------------------------
// Trace facts

/// Every `name` header's value, in header order (topmost first).
fn all_header_texts(headers: &[RawHeader<'_>], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The first address in a header value like `"Name" <a@b>` or `<mailto:a@b>`.
fn header_party(value: &str) -> Option<Party> {
    let bytes = format!("From: {value}\r\n\r\n").into_bytes();
    let parsed = MessageParser::default().parse_headers(&bytes)?;
    let addr = addresses(&parsed, HeaderName::From).first().copied()?;
    party_of(&addr)
}

/// `Return-Path: <>`, the null envelope sender.
fn null_sender(headers: &[RawHeader<'_>]) -> bool {
    raw_header_text(headers, "Return-Path").is_some_and(|v| {
        let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
        v == "<>"
    })
}

pub(super) fn trace(headers: &[RawHeader<'_>]) -> Trace {
    let null_sender = null_sender(headers);
    let list_post = raw_header_text(headers, "List-Post").and_then(|v| {
        let start = v.to_ascii_lowercase().find("<mailto:")? + "<mailto:".len();
        let rest = v.get(start..)?;
        let end = rest.find(['>', '?'])?;
        EmailAddress::parse(rest.get(..end)?).ok()
    });
    let original_from = ["X-Original-From", "X-Original-Sender"]
        .iter()
        .find_map(|h| raw_header_text(headers, h).and_then(|v| header_party(&v)));
    Trace {
        authentication_results: all_header_texts(headers, "Authentication-Results"),
        arc_results: all_header_texts(headers, "ARC-Authentication-Results"),
        null_sender,
        list_post,
        list_id: has_header(headers, "List-Id"),
        original_from,
    }
}

// ---------------------------------------------------------------------------
// Automatic mail

/// RFC 3834 and common practice: mail that must never trigger an automatic
/// answer or count as a customer's message. Bounces are checked first because
/// DSNs usually also carry `Auto-Submitted`.
pub(super) fn auto_kind(
    message: &Message<'_>,
    headers: &[RawHeader<'_>],
    from: &Party,
    sender_raw: &str,
    subject: &str,
) -> Option<AutoKind> {
    let value = |name: &str| {
        raw_header_text(headers, name).map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    };

    let root_type = message.content_type();
    let is_report = root_type.is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    let delivery_report = is_report
        && root_type
            .and_then(|ct| ct.attribute("report-type"))
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("delivery-status"));
    let has_status_part = message.parts.iter().any(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("delivery-status")
                        || s.eq_ignore_ascii_case("global-delivery-status")
                })
        })
    });
    // Some MTAs write a bare "From: MAILER-DAEMON" that is no usable address.
    let daemon = matches!(from.address.local(), "mailer-daemon" | "postmaster")
        || sender_raw.to_ascii_lowercase().contains("mailer-daemon");
    if delivery_report
        || (daemon && (is_report || has_status_part || looks_like_bounce_subject(subject)))
    {
        return Some(AutoKind::Bounce);
    }

    let precedence = value("Precedence");
    if value("Auto-Submitted").is_some_and(|v| v != "no")
        || has_header(headers, "X-Autoreply")
        || has_header(headers, "X-Autorespond")
        || precedence.as_deref() == Some("auto_reply")
    {
        return Some(AutoKind::AutoReply);
    }

    if has_header(headers, "List-Id")
        || has_header(headers, "List-Unsubscribe")
        || matches!(precedence.as_deref(), Some("list" | "bulk" | "junk"))
    {
        return Some(AutoKind::List);
    }
    if null_sender(headers) {
        return Some(AutoKind::NullSender);
    }
    None
}

/// Subjects of bounces from MTAs that send no machine-readable report
/// (qmail's "failure notice", Exchange's "Undeliverable:").
pub(super) fn looks_like_bounce_subject(subject: &str) -> bool {
    let lower = subject.to_lowercase();
    [
        "undeliver",
        "delivery status notification",
        "delivery failure",
        "mail delivery failed",
        "failure notice",
        "returned mail",
        "returned to sender",
    ]
    .iter()
    .any(|s| lower.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::email::AutoKind;
    use crate::mail::parse::fixtures::*;
    use crate::mail::parse::parse_email;

    #[test]
    fn plain_reply_headers_and_parties() {
        let m = parse_email(REPLY);
        assert_eq!(m.message_id, id("reply-1@customer.example"));
        assert!(!m.message_id_synthesized);
        assert_eq!(m.in_reply_to, vec![id("ticket-1@mailroom.example")]);
        // The folded References header lists orig-1 twice; it is kept once.
        assert_eq!(
            m.references,
            vec![
                id("orig-1@customer.example"),
                id("ticket-1@mailroom.example")
            ]
        );
        assert_eq!(
            m.from,
            Party::new(Some("Bob Example".into()), addr("bob@customer.example"))
        );
        assert_eq!(m.sender_raw, "\"Bob Example\" <Bob@Customer.Example>");
        assert_eq!(
            m.reply_to,
            vec![Party::new(
                Some("Bob Replies".into()),
                addr("bob+replies@customer.example")
            )]
        );
        assert_eq!(
            m.to,
            vec![
                Party::new(
                    Some("ACME Support".into()),
                    addr("support@mailroom.example")
                ),
                Party::new(None, addr("billing@mailroom.example")),
            ]
        );
        assert_eq!(
            m.cc,
            vec![Party::new(
                Some("Carol".into()),
                addr("carol@customer.example")
            )]
        );
        assert_eq!(m.subject, "Re: [#42] Printer still broken");
        // 12:05 at +0200 is 10:05 UTC.
        assert_eq!(m.date, Some(1_717_409_100));
        assert_eq!(m.size, REPLY.len());
        assert!(m.notes.is_empty(), "{:?}", m.notes);
        assert_eq!(m.auto, None);
        assert!(m.attachments.is_empty());
        assert!(m.html.is_none());
    }

    #[test]
    fn rfc2047_latin1_subject_and_name_are_decoded() {
        let m = parse_email(SUBJECT_LATIN1);
        assert_eq!(m.subject, "Café crème brûlée");
        assert_eq!(m.from.name.as_deref(), Some("François Müller"));
        assert!(m.notes.is_empty(), "{:?}", m.notes);
    }

    #[test]
    fn missing_message_id_is_synthesised_stably() {
        let m = parse_email(NO_MESSAGE_ID);
        assert!(m.message_id_synthesized);
        let expected = format!("{}@mailroom.invalid", &m.content_hash.as_str()[..32]);
        assert_eq!(m.message_id.as_str(), expected);
        assert_eq!(
            m.notes,
            vec![format!("no Message-ID header; synthesised <{expected}>")]
        );
        // Same content, second delivery: same id.
        let again = parse_email(&crlf(NO_MESSAGE_ID));
        assert_eq!(again.message_id, m.message_id);
    }

    #[test]
    fn unusable_message_id_is_synthesised_with_a_note() {
        let raw = b"Message-ID: <has space@x>\nFrom: a@b.example\n\nhi\n";
        let m = parse_email(raw);
        assert!(m.message_id_synthesized);
        assert!(m.message_id.as_str().ends_with("@mailroom.invalid"));
        assert!(
            m.notes
                .iter()
                .any(|n| n.starts_with("Message-ID header unusable")),
            "{:?}",
            m.notes
        );
    }

    #[test]
    fn dsn_is_a_bounce() {
        let m = parse_email(DSN);
        assert_eq!(m.auto, Some(AutoKind::Bounce));
        assert_eq!(m.from.address.as_str(), "mailer-daemon@mx.mailroom.example");
        assert!(m.text.contains("User unknown"));
        let types: Vec<_> = m
            .attachments
            .iter()
            .map(|a| a.content_type.as_str())
            .collect();
        assert_eq!(types, ["message/delivery-status", "text/rfc822-headers"]);
        // The returned header names the mail that bounced.
        assert_eq!(m.returned_id, Some(id("out-7@mailroom.example")));
    }

    #[test]
    fn a_bounce_returning_the_whole_mail_names_it_and_other_mail_names_none() {
        let whole = crlf(
            b"From: MAILER-DAEMON@mx.example\nTo: support@example.com\nSubject: Undelivered Mail Returned to Sender\n\
              Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n\
              --B\nContent-Type: text/plain\n\nUser unknown\n\
              --B\nContent-Type: message/delivery-status\n\nAction: failed\n\
              --B\nContent-Type: message/rfc822\n\n\
              Message-ID: <out-9@example.com>\nFrom: support@example.com\nSubject: Re: x\n\nHello\n\
              --B--\n",
        );
        let m = parse_email(&whole);
        assert_eq!(m.auto, Some(AutoKind::Bounce));
        assert_eq!(m.returned_id, Some(id("out-9@example.com")));
        // A forwarded mail is not a bounce: its inner Message-ID threads nothing.
        let forward = crlf(
            b"From: carol@customer.example\nTo: support@example.com\nSubject: Fwd: x\n\
              Content-Type: multipart/mixed; boundary=B\n\n\
              --B\nContent-Type: text/plain\n\nSee below\n\
              --B\nContent-Type: message/rfc822\n\nMessage-ID: <other@example.com>\nSubject: x\n\nHi\n\
              --B--\n",
        );
        assert_eq!(parse_email(&forward).returned_id, None);
        assert_eq!(parse_email(REPLY).returned_id, None);
    }

    #[test]
    fn auto_reply_and_list_are_detected() {
        assert_eq!(parse_email(AUTO_REPLY).auto, Some(AutoKind::AutoReply));
        assert_eq!(parse_email(LIST).auto, Some(AutoKind::List));
        assert_eq!(parse_email(REPLY).auto, None);
    }

    fn auto_of(extra_headers: &str) -> Option<AutoKind> {
        let raw = format!("From: a@b.example\nSubject: hi\n{extra_headers}\nhello\n");
        parse_email(raw.as_bytes()).auto
    }

    #[test]
    fn auto_kind_header_rules() {
        assert_eq!(
            auto_of("Auto-Submitted: auto-generated\n"),
            Some(AutoKind::AutoReply)
        );
        assert_eq!(auto_of("Auto-Submitted: No\n"), None);
        assert_eq!(auto_of("Auto-Submitted: no; owner-email=x@y\n"), None);
        assert_eq!(auto_of("X-Autoreply: yes\n"), Some(AutoKind::AutoReply));
        assert_eq!(
            auto_of("X-Autorespond: vacation\n"),
            Some(AutoKind::AutoReply)
        );
        assert_eq!(
            auto_of("Precedence: auto_reply\n"),
            Some(AutoKind::AutoReply)
        );
        // Outlook sets this on ordinary mail too.
        assert_eq!(auto_of("X-Auto-Response-Suppress: All\n"), None);
        assert_eq!(auto_of("X-Auto-Response-Suppress: AutoReply\n"), None);
        assert_eq!(auto_of("Precedence: bulk\n"), Some(AutoKind::List));
        assert_eq!(auto_of("Precedence: junk\n"), Some(AutoKind::List));
        assert_eq!(auto_of("Precedence: list\n"), Some(AutoKind::List));
        assert_eq!(
            auto_of("List-Unsubscribe: <mailto:u@x.example>\n"),
            Some(AutoKind::List)
        );
        assert_eq!(auto_of("List-Id: <l.x.example>\n"), Some(AutoKind::List));
        assert_eq!(auto_of("Return-Path: <>\n"), Some(AutoKind::NullSender));
        assert_eq!(auto_of("Return-Path: < >\n"), Some(AutoKind::NullSender));
        assert_eq!(auto_of("Return-Path: <a@b.example>\n"), None);
        assert_eq!(auto_of(""), None);
    }

    #[test]
    fn postmaster_is_a_bounce_only_with_a_delivery_report() {
        let human =
            b"From: postmaster@customer.example\nSubject: Question about your SPF record\n\nHi\n";
        assert_eq!(parse_email(human).auto, None);
        let qmail = b"From: MAILER-DAEMON@mx.example\nSubject: failure notice\n\nSorry\n";
        assert_eq!(parse_email(qmail).auto, Some(AutoKind::Bounce));
        let bare =
            b"From: MAILER-DAEMON (Mail Delivery System)\nSubject: Undeliverable: hi\n\nSorry\n";
        assert_eq!(parse_email(bare).auto, Some(AutoKind::Bounce));
        let with_status = b"From: postmaster@mx.example\nSubject: hi\nContent-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\nfailed\n--B\nContent-Type: message/delivery-status\n\nAction: failed\n--B--\n";
        assert_eq!(parse_email(with_status).auto, Some(AutoKind::Bounce));
    }

    #[test]
    fn unusable_from_falls_back_with_a_note() {
        let m = parse_email(b"From: Support Team\nTo: x@y.example\nSubject: s\n\nbody\n");
        assert_eq!(m.from.address.as_str(), "unknown@unknown.invalid");
        assert_eq!(m.from.name, None);
        assert_eq!(m.sender_raw, "Support Team");
        assert!(
            m.notes
                .contains(&"From header unusable: 'Support Team'".to_owned()),
            "{:?}",
            m.notes
        );

        let m = parse_email(b"To: x@y.example\nSubject: s\n\nbody\n");
        assert_eq!(m.sender_raw, "");
        assert!(m.notes.contains(&"no From header".to_owned()));
    }

    #[test]
    fn unusable_recipients_are_skipped_with_a_note() {
        let m = parse_email(b"From: a@b.example\nTo: good@x.example, bad address, <>\n\nbody\n");
        assert_eq!(m.to, vec![Party::new(None, addr("good@x.example"))]);
        assert!(
            m.notes
                .iter()
                .any(|n| n.starts_with("To: skipped unusable address")),
            "{:?}",
            m.notes
        );
    }

    #[test]
    fn unparseable_date_is_noted() {
        let m = parse_email(b"From: a@b.example\nDate: yesterday-ish\n\nbody\n");
        assert_eq!(m.date, None);
        assert!(
            m.notes
                .iter()
                .any(|n| n.starts_with("Date header unparseable")),
            "{:?}",
            m.notes
        );
    }

    #[test]
    fn fallback_literals_are_valid() {
        // `fallback_message_id` and `fallback_address` rely on these.
        assert!(MessageId::parse("unknown@mailroom.invalid").is_ok());
        assert!(EmailAddress::parse("unknown@unknown.invalid").is_ok());
        assert_eq!(fallback_message_id().as_str(), "unknown@mailroom.invalid");
        assert_eq!(fallback_address().as_str(), "unknown@unknown.invalid");
    }
}
