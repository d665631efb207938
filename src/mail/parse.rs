//! MIME → [`InboundEmail`], using mail-parser.
//!
//! Parsing never fails: whatever arrives in the shared mailbox is a customer
//! trying to reach us, so a malformed mail becomes a best-effort email whose
//! `notes` say what was wrong, rather than an error that drops it.
//!
//! Two things are read straight from the raw bytes instead of through
//! mail-parser: the content hash (it must be byte-exact and independent of
//! parser versions) and a few simple flag headers (`Auto-Submitted`,
//! `Precedence`, …) where the raw value is all we need.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{
    Addr, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};
use sha2::{Digest, Sha256};

use crate::domain::email::{AttachmentMeta, AutoKind, ContentHash, Party};
use crate::domain::ids::{EmailAddress, MessageId};
use crate::domain::render::{EmailView, unflow};
use crate::mail::elide;

/// A received email, reduced to what mailroom needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundEmail {
    /// From the header; synthesised from the content hash when missing or unusable.
    pub message_id: MessageId,
    pub message_id_synthesized: bool,
    /// Every parseable id in In-Reply-To, in order.
    pub in_reply_to: Vec<MessageId>,
    /// Every parseable id in References, in order, without duplicates.
    pub references: Vec<MessageId>,
    /// The first usable From mailbox, or `unknown@unknown.invalid`.
    pub from: Party,
    /// The raw From header value (unfolded), for display when the address was unusable.
    pub sender_raw: String,
    pub reply_to: Vec<Party>,
    pub to: Vec<Party>,
    pub cc: Vec<Party>,
    /// Decoded, whitespace collapsed; "" when missing.
    pub subject: String,
    /// Unix seconds from the Date header.
    pub date: Option<i64>,
    pub content_hash: ContentHash,
    /// The full text: text/plain preferred, else the HTML rendered as text.
    pub text: String,
    /// The HTML body, raw and unsanitised (chat adapters sanitise).
    pub html: Option<String>,
    /// Every non-body part, in the order [`attachment_bytes`] uses.
    pub attachments: Vec<AttachmentMeta>,
    pub auto: Option<AutoKind>,
    /// For a bounce: the Message-ID of the mail that could not be delivered,
    /// from the copy the report returns (RFC 3464), so the bounce joins that
    /// mail's ticket.
    pub returned_id: Option<MessageId>,
    /// Human-readable problems met while parsing.
    pub notes: Vec<String>,
    /// Raw length in bytes.
    pub size: usize,
}

impl InboundEmail {
    /// The rendering model chat adapters draw from.
    pub fn view(&self) -> EmailView {
        EmailView::new(
            self.from.clone(),
            self.to.clone(),
            self.cc.clone(),
            self.subject.clone(),
            self.date,
            self.text.clone(),
            self.attachments.clone(),
            self.notes.clone(),
        )
    }
}

/// Domain of synthesised Message-IDs; `.invalid` (RFC 2606) can never clash
/// with a real host.
const SYNTHETIC_ID_DOMAIN: &str = "mailroom.invalid";
/// Stands in for a From address nobody can reply to.
const UNKNOWN_SENDER: &str = "unknown@unknown.invalid";
/// Width html2text wraps to; wide enough that chat clients re-wrap, not us.
const HTML_TEXT_WIDTH: usize = 100;
/// Raw values quoted in notes are cut to this many characters.
const NOTE_VALUE_MAX: usize = 100;

/// Parses a raw RFC 5322 message. Never fails and never panics: problems end
/// up in [`InboundEmail::notes`].
pub fn parse_email(raw: &[u8]) -> InboundEmail {
    let content_hash = content_hash(raw);
    let (headers, _) = split_message(raw);
    let mut notes = Notes::default();

    // mail-parser promises not to panic, but it is a large state machine with
    // debug assertions; a crash in it must cost one mail's structure, not the
    // ingest loop.
    //
    // A large mail is parsed without the bulk of its long encoded bodies
    // (see `elide`): rendering needs their sizes, not their bytes.
    let skeleton = elide::skeleton(raw, elide::MIN_RUN);
    let source = skeleton.as_ref().map_or(raw, |s| s.bytes.as_slice());
    let parser = MessageParser::default();
    let message = match catch_unwind(AssertUnwindSafe(|| parser.parse(source))) {
        Ok(Some(message)) => Some(message),
        Ok(None) => {
            notes.push("no parseable headers; showing the raw message as text".to_owned());
            None
        }
        Err(_) => {
            notes.push(
                "the MIME parser crashed on this mail; showing the raw message as text".to_owned(),
            );
            None
        }
    };

    let sender_raw = raw_header_text(&headers, "From").unwrap_or_default();

    let Some(message) = message else {
        return InboundEmail {
            message_id: synthesised_id(&content_hash, &mut notes, None),
            message_id_synthesized: true,
            in_reply_to: Vec::new(),
            references: Vec::new(),
            from: unknown_party(),
            sender_raw,
            reply_to: Vec::new(),
            to: Vec::new(),
            cc: Vec::new(),
            subject: String::new(),
            date: None,
            content_hash,
            text: normalise_newlines(&String::from_utf8_lossy(raw)),
            html: None,
            attachments: Vec::new(),
            auto: None,
            returned_id: None,
            notes: notes.into_vec(),
            size: raw.len(),
        };
    };

    // --- identity and threading ---
    let header_id = ids_of(&message, HeaderName::MessageId)
        .into_iter()
        .find_map(|id| MessageId::parse(&id).ok());
    let (message_id, message_id_synthesized) = match header_id {
        Some(id) => (id, false),
        None => {
            let raw_value = raw_header_text(&headers, "Message-ID");
            (
                synthesised_id(&content_hash, &mut notes, raw_value.as_deref()),
                true,
            )
        }
    };
    let in_reply_to = parse_ids(&message, HeaderName::InReplyTo, "In-Reply-To", &mut notes);
    // A set, not `Vec::contains`: a hostile References header holds tens of
    // thousands of ids, and a quadratic dedup would stall ingest on it.
    let mut seen = std::collections::HashSet::new();
    let references: Vec<MessageId> =
        parse_ids(&message, HeaderName::References, "References", &mut notes)
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect();

    // --- people ---
    let from_candidates = addresses(&message, HeaderName::From);
    let from = match from_candidates.iter().position(|a| party_of(a).is_some()) {
        Some(i) => {
            if i > 0 {
                notes.push(format!(
                    "first From mailbox unusable, using the next one; From was {}",
                    quoted(&sender_raw)
                ));
            }
            from_candidates
                .get(i)
                .and_then(party_of)
                .unwrap_or_else(unknown_party)
        }
        None => {
            if sender_raw.is_empty() {
                notes.push("no From header".to_owned());
            } else {
                notes.push(format!("From header unusable: {}", quoted(&sender_raw)));
            }
            unknown_party()
        }
    };
    let reply_to = parties(&message, HeaderName::ReplyTo, "Reply-To", &mut notes);
    let to = parties(&message, HeaderName::To, "To", &mut notes);
    let cc = parties(&message, HeaderName::Cc, "Cc", &mut notes);

    // --- subject and date ---
    let subject = message
        .subject()
        .map(collapse_whitespace)
        .unwrap_or_default();
    for (name, value) in &headers {
        let name = String::from_utf8_lossy(name);
        if ["subject", "from", "to", "cc", "reply-to"]
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        {
            for charset in unknown_encoded_word_charsets(value) {
                notes.push(format!(
                    "undecodable charset {} in {name}, shown as-is",
                    quoted(&charset)
                ));
            }
        }
    }
    let date = message
        .date()
        .filter(|d| d.is_valid())
        .map(|d| d.to_timestamp());
    if date.is_none()
        && let Some(raw_date) = raw_header_text(&headers, "Date")
    {
        notes.push(format!("Date header unparseable: {}", quoted(&raw_date)));
    }

    // --- bodies ---
    // The same selection `attachment_bytes` makes, so attachment numbers agree.
    let body_parts = body_part_ids(&message);
    let mut texts: Vec<String> = Vec::new();
    let mut htmls: Vec<String> = Vec::new();
    for part in body_parts
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
    {
        match &part.body {
            PartType::Text(text) => {
                note_part_problems(part, "text body", &mut notes);
                texts.push(decode_text_part(part, text));
            }
            PartType::Html(html) => {
                note_part_problems(part, "HTML body", &mut notes);
                htmls.push(html.to_string());
            }
            _ => {}
        }
    }
    let html = if htmls.is_empty() {
        None
    } else {
        let html = htmls.join("\n");
        Some(match &skeleton {
            Some(s) => s.describe(&html),
            None => html,
        })
    };
    let text = if !texts.is_empty() {
        let text = join_texts(texts);
        match &skeleton {
            Some(s) => s.describe(&text),
            None => text,
        }
    } else if let Some(html) = &html {
        match html_to_text(html) {
            Some(text) => text,
            None => {
                notes.push("the HTML body could not be converted to text".to_owned());
                String::new()
            }
        }
    } else {
        notes.push("no text or HTML body".to_owned());
        String::new()
    };

    // --- attachments ---
    let html_lower = html
        .as_deref()
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let mut attachments = Vec::new();
    for (n, part) in attachment_parts(&message, &body_parts)
        .into_iter()
        .enumerate()
    {
        let mut meta = attachment_meta(part, n + 1, &html_lower);
        if let Some(s) = &skeleton {
            meta.size = s.true_len(part.contents());
        }
        note_part_problems(
            part,
            &format!("attachment {}", quoted(&meta.name)),
            &mut notes,
        );
        attachments.push(meta);
    }

    let auto = auto_kind(&message, &headers, &from, &sender_raw, &subject);
    let returned_id = match auto {
        Some(AutoKind::Bounce) => returned_message_id(&message),
        _ => None,
    };

    InboundEmail {
        message_id,
        message_id_synthesized,
        in_reply_to,
        references,
        from,
        sender_raw,
        reply_to,
        to,
        cc,
        subject,
        date,
        content_hash,
        text,
        html,
        attachments,
        auto,
        returned_id,
        notes: notes.into_vec(),
        size: raw.len(),
    }
}

/// Content hash: SHA-256 over
/// `message-id:V\nfrom:V\nto:V\ncc:V\nsubject:V\ndate:V\nin-reply-to:V\n`
/// (V = the raw header value, unfolded, trimmed; empty when absent), then
/// `\n` and the body with CRLF normalised to LF and trailing whitespace
/// trimmed.
///
/// Trace headers (Received, Delivered-To, Return-Path, …) are left out so that
/// a second delivery of the same mail hashes the same, while two different
/// mails that share a Message-ID hash differently.
pub fn content_hash(raw: &[u8]) -> ContentHash {
    let (headers, body) = split_message(raw);
    let mut hasher = Sha256::new();
    for (label, name) in [
        ("message-id", "Message-ID"),
        ("from", "From"),
        ("to", "To"),
        ("cc", "Cc"),
        ("subject", "Subject"),
        ("date", "Date"),
        ("in-reply-to", "In-Reply-To"),
    ] {
        hasher.update(label.as_bytes());
        hasher.update(b":");
        hasher.update(first_header(&headers, name).unwrap_or_default());
        hasher.update(b"\n");
    }
    hasher.update(b"\n");
    hash_normalised_body(&mut hasher, body);
    ContentHash::from_digest(hasher.finalize().into())
}

/// The decoded bytes of the attachments numbered in `wanted` (the order of
/// [`InboundEmail::attachments`]), from one parse, for upload. Encoded
/// bodies too long to decode to `max_len` bytes or less are left out before
/// parsing: none of them can be wanted, and decoding them would only cost
/// memory.
pub fn attachments_bytes(raw: &[u8], wanted: &[usize], max_len: u64) -> Vec<(usize, Vec<u8>)> {
    // Base64 takes 4 characters per 3 bytes, plus a line break per 76.
    let longest = usize::try_from(max_len.saturating_mul(4) / 3 / 76 * 78 + 4096)
        .unwrap_or(usize::MAX)
        .max(elide::MIN_RUN);
    let skeleton = elide::skeleton(raw, longest);
    let source = skeleton.as_ref().map_or(raw, |s| s.bytes.as_slice());
    let Some(message) = catch_unwind(AssertUnwindSafe(|| MessageParser::default().parse(source)))
        .ok()
        .flatten()
    else {
        return Vec::new();
    };
    let body_parts = body_part_ids(&message);
    attachment_parts(&message, &body_parts)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| wanted.contains(i))
        .filter_map(|(i, part)| {
            let contents = part.contents();
            // A part that lost bytes to the skeleton is never handed out cut.
            let whole = skeleton
                .as_ref()
                .is_none_or(|s| s.true_len(contents) == contents.len() as u64);
            (whole && contents.len() as u64 <= max_len).then(|| (i, contents.to_vec()))
        })
        .collect()
}

/// The decoded bytes of attachment number `index` (the order of
/// [`InboundEmail::attachments`]), for export.
pub fn attachment_bytes(raw: &[u8], index: usize) -> Option<Vec<u8>> {
    let message = catch_unwind(AssertUnwindSafe(|| MessageParser::default().parse(raw))).ok()??;
    let body_parts = body_part_ids(&message);
    attachment_parts(&message, &body_parts)
        .get(index)
        .map(|part| part.contents().to_vec())
}

// ---------------------------------------------------------------------------
// Raw header access

/// A top-level header field: its name and its value unfolded and trimmed.
type RawHeader<'a> = (&'a [u8], Vec<u8>);

/// Splits `raw` into its top-level header fields and the body (everything
/// after the first blank line; empty when there is none).
fn split_message(raw: &[u8]) -> (Vec<RawHeader<'_>>, &[u8]) {
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

fn finish_headers(headers: &mut [RawHeader<'_>]) {
    for (_, value) in headers.iter_mut() {
        let trimmed = value.trim_ascii().to_vec();
        *value = trimmed;
    }
}

fn first_header<'h>(headers: &'h [RawHeader<'_>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_slice())
}

fn has_header(headers: &[RawHeader<'_>], name: &str) -> bool {
    first_header(headers, name).is_some()
}

/// The first `name` header as text (lossy: raw 8-bit headers do occur).
fn raw_header_text(headers: &[RawHeader<'_>], name: &str) -> Option<String> {
    first_header(headers, name).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Feeds `body` to the hash with CRLF normalised to LF and trailing
/// whitespace trimmed, without copying it (a body can be tens of megabytes).
fn hash_normalised_body(hasher: &mut Sha256, body: &[u8]) {
    // Trimming first gives the same bytes: what normalising removes is
    // whitespace, and the trimmed end is not whitespace.
    let body = body.trim_ascii_end();
    let mut from = 0;
    for cr in memchr::memmem::find_iter(body, b"\r\n") {
        hasher.update(&body[from..cr]);
        from = cr + 1;
    }
    hasher.update(&body[from..]);
}

// ---------------------------------------------------------------------------
// Identity

fn synthesised_id(hash: &ContentHash, notes: &mut Notes, header: Option<&str>) -> MessageId {
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
fn ids_of(message: &Message<'_>, name: HeaderName<'static>) -> Vec<String> {
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
fn returned_message_id(message: &Message<'_>) -> Option<MessageId> {
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

fn parse_ids(
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
fn addresses<'m>(message: &'m Message<'_>, name: HeaderName<'static>) -> Vec<&'m Addr<'m>> {
    message
        .header_values(name)
        .filter_map(|v| v.as_address())
        .flat_map(|a| a.iter())
        .collect()
}

fn party_of(addr: &&Addr<'_>) -> Option<Party> {
    let address = EmailAddress::parse(addr.address()?).ok()?;
    let name = addr.name().map(collapse_whitespace);
    Some(Party::new(name, address))
}

fn parties(
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

fn unknown_party() -> Party {
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
fn fallback_message_id() -> MessageId {
    loop {
        if let Ok(id) = MessageId::parse("unknown@mailroom.invalid") {
            return id;
        }
    }
}

fn fallback_address() -> EmailAddress {
    loop {
        if let Ok(address) = EmailAddress::parse("unknown@unknown.invalid") {
            return address;
        }
    }
}

// ---------------------------------------------------------------------------
// Bodies

/// The ids of the parts used as text or HTML body: the text/plain parts
/// mail-parser lists as text body and the text/html parts it lists as HTML
/// body. (Its lists also hold inline images and, for single-format mails, the
/// other format's part, which are not bodies to us.)
fn body_part_ids(message: &Message<'_>) -> Vec<u32> {
    let mut ids = Vec::new();
    for &id in &message.text_body {
        if matches!(
            message.parts.get(id as usize).map(|p| &p.body),
            Some(PartType::Text(_))
        ) {
            ids.push(id);
        }
    }
    for &id in &message.html_body {
        if matches!(
            message.parts.get(id as usize).map(|p| &p.body),
            Some(PartType::Html(_))
        ) {
            ids.push(id);
        }
    }
    ids
}

/// A text/plain part as display text: newlines normalised, format=flowed undone.
fn decode_text_part(part: &MessagePart<'_>, text: &str) -> String {
    let text = normalise_newlines(text);
    let content_type = part.content_type();
    let flowed = content_type
        .and_then(|ct| ct.attribute("format"))
        .is_some_and(|f| f.trim().eq_ignore_ascii_case("flowed"));
    if flowed {
        let delsp = content_type
            .and_then(|ct| ct.attribute("delsp"))
            .is_some_and(|d| d.trim().eq_ignore_ascii_case("yes"));
        unflow(&text, delsp)
    } else {
        text
    }
}

fn join_texts(texts: Vec<String>) -> String {
    if texts.len() == 1 {
        return texts.into_iter().next().unwrap_or_default();
    }
    // Several inline text parts (Apple Mail splits the text around inline
    // images): show them one after another.
    texts
        .iter()
        .map(|t| t.trim_end_matches('\n'))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn normalise_newlines(text: &str) -> String {
    text.replace("\r\n", "\n")
}

fn html_to_text(html: &str) -> Option<String> {
    // html2text is large and has had panics on odd markup; a crash must cost
    // only the text rendering. Overflowing the width (wide tables, long
    // words) beats failing.
    let render = || {
        html2text::config::plain()
            .allow_width_overflow()
            .string_from_read(html.as_bytes(), HTML_TEXT_WIDTH)
            .ok()
    };
    catch_unwind(AssertUnwindSafe(render)).ok().flatten()
}

// ---------------------------------------------------------------------------
// Attachments

/// Every non-body part, in mail-parser's attachment order.
fn attachment_parts<'m>(message: &'m Message<'m>, body_parts: &[u32]) -> Vec<&'m MessagePart<'m>> {
    message
        .attachments
        .iter()
        .filter(|id| !body_parts.contains(id))
        .filter_map(|&id| message.parts.get(id as usize))
        .collect()
}

fn content_type_of(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => {
            let subtype = ct
                .subtype()
                .unwrap_or(if ct.ctype().eq_ignore_ascii_case("text") {
                    "plain"
                } else {
                    "octet-stream"
                });
            format!("{}/{}", ct.ctype(), subtype).to_ascii_lowercase()
        }
        // RFC 2045's default, except for parts mail-parser read as a message
        // (inside multipart/digest).
        None if part.is_message() => "message/rfc822".to_owned(),
        None => "text/plain".to_owned(),
    }
}

fn attachment_meta(part: &MessagePart<'_>, number: usize, html_lower: &str) -> AttachmentMeta {
    let content_type = content_type_of(part);
    let name = part
        .attachment_name()
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
                .trim()
                .to_owned()
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("attachment-{number}.{}", extension_for(&content_type)));

    let referenced = part
        .content_id()
        .map(|cid| {
            cid.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_ascii_lowercase()
        })
        .filter(|cid| !cid.is_empty())
        .is_some_and(|cid| html_lower.contains(&format!("cid:{cid}")));
    let inline_image = content_type.starts_with("image/")
        && part.content_disposition().is_some_and(|d| d.is_inline());

    AttachmentMeta {
        name,
        content_type,
        size: part.len() as u64,
        inline: referenced || inline_image,
    }
}

/// A file extension for a generated attachment name.
fn extension_for(content_type: &str) -> &'static str {
    match content_type {
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        "application/json" => "json",
        "application/xml" | "text/xml" => "xml",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "image/png" => "png",
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/svg+xml" => "svg",
        "image/heic" => "heic",
        "text/plain" => "txt",
        "text/html" => "html",
        "text/csv" => "csv",
        "text/calendar" => "ics",
        "text/rfc822-headers" => "txt",
        "message/rfc822" | "message/global" => "eml",
        "message/delivery-status" => "txt",
        "audio/mpeg" => "mp3",
        "video/mp4" => "mp4",
        _ => "bin",
    }
}

/// Notes for a part that mail-parser could not decode cleanly.
fn note_part_problems(part: &MessagePart<'_>, what: &str, notes: &mut Notes) {
    if part.is_encoding_problem {
        let encoding = part
            .content_transfer_encoding()
            .map(|e| e.trim().to_ascii_lowercase());
        notes.push(match encoding.as_deref() {
            Some("base64") => format!("{what} has broken base64; shown undecoded"),
            Some("quoted-printable") => {
                format!("{what} has broken quoted-printable; shown undecoded")
            }
            _ => format!("{what} is malformed; shown as-is"),
        });
    }
    if part.is_text()
        && let Some(charset) = part.content_type().and_then(|ct| ct.attribute("charset"))
        && !is_known_charset(charset)
    {
        notes.push(format!(
            "undecodable charset {} in {what}, shown as-is",
            quoted(charset)
        ));
    }
}

// ---------------------------------------------------------------------------
// Charsets

/// Whether mail-parser can decode `charset`. UTF-8 labels are not in its
/// decoder table because UTF-8 is what it falls back to anyway.
fn is_known_charset(charset: &str) -> bool {
    let compact: String = charset
        .trim()
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    compact.ends_with("utf8")
        || mail_parser::decoders::charsets::map::charset_decoder(charset.trim().as_bytes())
            .is_some()
}

/// Charsets of RFC 2047 encoded words (`=?charset?Q?…?=`) in a raw header
/// value that mail-parser cannot decode. It silently falls back to reading
/// such words as UTF-8, so this is the only way to tell the reader.
fn unknown_encoded_word_charsets(value: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(value);
    let mut unknown: Vec<String> = Vec::new();
    let mut rest: &str = &text;
    while let Some((_, after)) = rest.split_once("=?") {
        let Some((charset, tail)) = after.split_once('?') else {
            break;
        };
        // RFC 2231 lets a language follow the charset: `us-ascii*en`.
        let charset = charset.split('*').next().unwrap_or_default();
        let is_word = tail
            .chars()
            .next()
            .is_some_and(|c| matches!(c, 'q' | 'Q' | 'b' | 'B'));
        if is_word
            && !charset.is_empty()
            && !is_known_charset(charset)
            && !unknown.iter().any(|c| c == charset)
        {
            unknown.push(charset.to_owned());
        }
        // Not a word: rescan right after "=?", which may start a real one.
        rest = if is_word { tail } else { after };
    }
    unknown
}

// ---------------------------------------------------------------------------
// Automatic mail

/// RFC 3834 and common practice: mail that must never trigger an automatic
/// answer or count as a customer's message. Bounces are checked first because
/// DSNs usually also carry `Auto-Submitted`.
fn auto_kind(
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
    None
}

/// Subjects of bounces from MTAs that send no machine-readable report
/// (qmail's "failure notice", Exchange's "Undeliverable:").
fn looks_like_bounce_subject(subject: &str) -> bool {
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

// ---------------------------------------------------------------------------
// Small helpers

/// Notes without repeats (several parts can have the same problem), at most
/// [`MAX_NOTES`] of them: a hostile mail can have a problem in each of
/// 25,000 References ids, and nobody reads past the first few.
#[derive(Default)]
struct Notes {
    notes: Vec<String>,
    seen: std::collections::HashSet<String>,
    /// Distinct notes beyond [`MAX_NOTES`], counted only.
    dropped: usize,
}

/// See [`Notes`].
const MAX_NOTES: usize = 50;

impl Notes {
    fn push(&mut self, note: String) {
        if self.seen.contains(&note) {
            return;
        }
        if self.notes.len() < MAX_NOTES {
            self.seen.insert(note.clone());
            self.notes.push(note);
        } else {
            self.seen.insert(note);
            self.dropped += 1;
        }
    }
    fn into_vec(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.notes
                .push(format!("… and {} more problems not listed", self.dropped));
        }
        self.notes
    }
}

/// Whitespace runs (folded lines, encoded CR LF) become one space and other
/// control characters are dropped: a subject or name decoded from
/// `=?utf-8?Q?Hi=0D=0ABcc:_x=00?=` must reach neither a reply's headers
/// (where the reply rules would refuse it and leave the ticket unanswerable)
/// nor a chat message as anything but plain text.
fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace()
        .map(|word| word.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A raw value for a note: in single quotes, control characters escaped,
/// length capped (a hostile header must not flood the chat).
fn quoted(value: &str) -> String {
    let mut shown = String::from("'");
    for (i, c) in value.chars().enumerate() {
        if i == NOTE_VALUE_MAX {
            shown.push('…');
            break;
        }
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown.push('\'');
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REPLY: &[u8] = include_bytes!("../../tests/corpus/reply_quote_signature.eml");
    const HTML_ONLY: &[u8] = include_bytes!("../../tests/corpus/html_only.eml");
    const ALTERNATIVE: &[u8] = include_bytes!("../../tests/corpus/alternative.eml");
    const FLOWED: &[u8] = include_bytes!("../../tests/corpus/flowed_delsp.eml");
    const SUBJECT_LATIN1: &[u8] = include_bytes!("../../tests/corpus/subject_latin1.eml");
    const SUBJECT_UNKNOWN: &[u8] = include_bytes!("../../tests/corpus/subject_unknown_charset.eml");
    const LATIN1_BODY: &[u8] = include_bytes!("../../tests/corpus/latin1_body.eml");
    const NO_MESSAGE_ID: &[u8] = include_bytes!("../../tests/corpus/no_message_id.eml");
    const BROKEN_BASE64: &[u8] = include_bytes!("../../tests/corpus/broken_base64.eml");
    const NESTED: &[u8] = include_bytes!("../../tests/corpus/nested.eml");
    const DSN: &[u8] = include_bytes!("../../tests/corpus/dsn_bounce.eml");
    const AUTO_REPLY: &[u8] = include_bytes!("../../tests/corpus/auto_reply.eml");
    const LIST: &[u8] = include_bytes!("../../tests/corpus/list_mail.eml");
    const NO_NAME: &[u8] = include_bytes!("../../tests/corpus/attachment_no_name.eml");

    const CORPUS: &[&[u8]] = &[
        REPLY,
        HTML_ONLY,
        ALTERNATIVE,
        FLOWED,
        SUBJECT_LATIN1,
        SUBJECT_UNKNOWN,
        LATIN1_BODY,
        NO_MESSAGE_ID,
        BROKEN_BASE64,
        NESTED,
        DSN,
        AUTO_REPLY,
        LIST,
        NO_NAME,
    ];

    fn id(s: &str) -> MessageId {
        MessageId::parse(s).unwrap()
    }

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    fn crlf(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in raw {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }

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
    fn plain_reply_view_trims_quote_and_signature() {
        let m = parse_email(REPLY);
        assert!(m.text.contains("> Please try updating the driver."));
        let v = m.view();
        assert_eq!(
            v.body,
            "Hi,\n\nthe printer still prints blank pages after the update."
        );
        assert!(v.quoted_trimmed);
        assert!(v.signature_trimmed);
        assert_eq!(v.full_text, m.text);
        assert_eq!(v.from, m.from);
        assert_eq!(v.subject, m.subject);
    }

    #[test]
    fn html_only_mail_is_rendered_as_text() {
        let m = parse_email(HTML_ONLY);
        let html = m.html.as_deref().unwrap();
        assert!(html.contains("<b>team</b>"));
        assert!(m.text.contains("Hello **team**,"), "{:?}", m.text);
        assert!(m.text.contains("could not be delivered"));
        assert!(
            m.text.contains("https://shop.example/o/1001"),
            "links are kept: {:?}",
            m.text
        );
        assert!(!m.text.contains('<'));
        assert!(m.attachments.is_empty());
        assert!(m.notes.is_empty(), "{:?}", m.notes);
    }

    #[test]
    fn alternative_prefers_the_plain_text_part() {
        let m = parse_email(ALTERNATIVE);
        assert_eq!(m.text, "I cannot log in since this morning.");
        assert_eq!(
            m.html.as_deref(),
            Some("<p>I cannot <i>log in</i> since this morning.</p>")
        );
        assert!(m.attachments.is_empty());
    }

    #[test]
    fn format_flowed_with_delsp_is_joined() {
        let m = parse_email(FLOWED);
        assert_eq!(
            m.text,
            "This paragraph was wrapped by the mail client and must be rejoined into one line.\n\
             From here on it is a new line.\n\
             > A quoted line that was wrapped as well.\n"
        );
    }

    #[test]
    fn rfc2047_latin1_subject_and_name_are_decoded() {
        let m = parse_email(SUBJECT_LATIN1);
        assert_eq!(m.subject, "Café crème brûlée");
        assert_eq!(m.from.name.as_deref(), Some("François Müller"));
        assert!(m.notes.is_empty(), "{:?}", m.notes);
    }

    #[test]
    fn unknown_charsets_are_noted_and_shown_as_is() {
        let m = parse_email(SUBJECT_UNKNOWN);
        assert_eq!(m.subject, "Qapla' status");
        assert_eq!(m.text, "Body in a charset nobody knows.\n");
        assert!(
            m.notes
                .contains(&"undecodable charset 'x-klingon' in Subject, shown as-is".to_owned()),
            "{:?}",
            m.notes
        );
        assert!(
            m.notes
                .iter()
                .any(|n| n.contains("'x-klingon' in text body")),
            "{:?}",
            m.notes
        );
    }

    #[test]
    fn eight_bit_latin1_body_is_decoded() {
        let m = parse_email(LATIN1_BODY);
        assert_eq!(
            m.text,
            "Grüße aus Köln, die Rechnung über 12 ¤ ist falsch.\n"
        );
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
    fn broken_base64_attachment_is_kept_with_a_note() {
        let m = parse_email(BROKEN_BASE64);
        assert_eq!(m.text, "The invoice is attached.");
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].name, "invoice.pdf");
        assert_eq!(m.attachments[0].content_type, "application/pdf");
        assert!(!m.attachments[0].inline);
        assert_eq!(
            m.notes,
            vec!["attachment 'invoice.pdf' has broken base64; shown undecoded".to_owned()]
        );
        // The undecoded text is what can be exported.
        let bytes = attachment_bytes(BROKEN_BASE64, 0).unwrap();
        assert!(bytes.starts_with(b"JVBERi0xLjQK!!!"));
        assert_eq!(bytes.len() as u64, m.attachments[0].size);
    }

    #[test]
    fn nested_multipart_finds_bodies_inline_image_and_attachment() {
        let m = parse_email(NESTED);
        assert_eq!(m.text, "See the screenshot below.");
        assert!(
            m.html
                .as_deref()
                .unwrap()
                .contains("cid:shot1@customer.example")
        );
        assert_eq!(
            m.attachments,
            vec![
                AttachmentMeta {
                    name: "shot.png".into(),
                    content_type: "image/png".into(),
                    size: 8,
                    inline: true,
                },
                AttachmentMeta {
                    name: "log.csv".into(),
                    content_type: "text/csv".into(),
                    size: 22,
                    inline: false,
                },
            ]
        );
        assert_eq!(
            attachment_bytes(NESTED, 0).unwrap(),
            b"\x89PNG\r\n\x1a\n".to_vec()
        );
        assert_eq!(
            attachment_bytes(NESTED, 1).unwrap(),
            b"time,event\n10:00,error".to_vec()
        );
        assert_eq!(attachment_bytes(NESTED, 2), None);
        assert!(m.notes.is_empty(), "{:?}", m.notes);
    }

    #[test]
    fn attachments_without_names_get_generated_ones() {
        let m = parse_email(NO_NAME);
        let names: Vec<_> = m.attachments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["attachment-1.jpg", "attachment-2.bin"]);
        assert_eq!(m.attachments[0].content_type, "image/jpeg");
        assert_eq!(m.attachments[0].size, 13);
        assert_eq!(m.attachments[1].size, 4);
        assert_eq!(attachment_bytes(NO_NAME, 1).unwrap(), vec![0, 1, 2, 3]);
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
    fn no_body_at_all_is_noted() {
        let m = parse_email(b"From: a@b.example\nSubject: empty\n");
        assert_eq!(m.text, "");
        assert_eq!(m.subject, "empty");
        assert!(
            m.notes.contains(&"no text or HTML body".to_owned()),
            "{:?}",
            m.notes
        );
    }

    #[test]
    fn headerless_input_is_shown_as_text() {
        let m = parse_email(b"");
        assert!(m.message_id_synthesized);
        assert_eq!(m.from.address.as_str(), "unknown@unknown.invalid");
        assert!(!m.notes.is_empty());
        assert_eq!(m.size, 0);
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

    // --- content hash ----------------------------------------------------------

    #[test]
    fn hash_ignores_trace_headers_and_line_endings() {
        let base = content_hash(REPLY);
        let mut redelivered = b"Received: from relay.example by mx.example; Tue, 4 Jun 2024 10:00:00 +0000\nDelivered-To: other@mailroom.example\nX-Original-To: other@mailroom.example\n".to_vec();
        redelivered.extend_from_slice(REPLY);
        assert_eq!(content_hash(&redelivered), base);
        assert_eq!(content_hash(&crlf(REPLY)), base);
        assert_eq!(content_hash(&crlf(&redelivered)), base);
        // Trailing blank lines at the end of the body do not count either.
        let mut padded = REPLY.to_vec();
        padded.extend_from_slice(b"\n\n  \n");
        assert_eq!(content_hash(&padded), base);
        assert_eq!(parse_email(&crlf(&redelivered)).content_hash, base);
    }

    #[test]
    fn hash_changes_with_the_body_and_identity_headers() {
        let base = content_hash(REPLY);
        let text = String::from_utf8(REPLY.to_vec()).unwrap();
        let changed_body = text.replace("blank pages", "black pages");
        assert_ne!(content_hash(changed_body.as_bytes()), base);
        let changed_subject = text.replace("Printer\n still", "Printer\n now");
        assert_ne!(content_hash(changed_subject.as_bytes()), base);
        // Refolding a header is not a change.
        let refolded = text.replace(
            "Subject: Re: [#42]   Printer\n still broken",
            "Subject: Re: [#42]   Printer\r\n\t  still broken",
        );
        assert_eq!(content_hash(refolded.as_bytes()), base);
    }

    #[test]
    fn hash_is_the_documented_sha256() {
        let raw = b"Message-ID: <a@b>\nFrom: x@y\nSubject: s\n\nbody\r\nline\n\n";
        let expected = Sha256::digest(
            b"message-id:<a@b>\nfrom:x@y\nto:\ncc:\nsubject:s\ndate:\nin-reply-to:\n\nbody\nline",
        );
        assert_eq!(content_hash(raw), ContentHash::from_digest(expected.into()));
    }

    #[test]
    fn fallback_literals_are_valid() {
        // `fallback_message_id` and `fallback_address` rely on these.
        assert!(MessageId::parse("unknown@mailroom.invalid").is_ok());
        assert!(EmailAddress::parse("unknown@unknown.invalid").is_ok());
        assert_eq!(fallback_message_id().as_str(), "unknown@mailroom.invalid");
        assert_eq!(fallback_address().as_str(), "unknown@unknown.invalid");
    }

    #[test]
    fn quoted_escapes_and_caps() {
        assert_eq!(quoted("a\r\nb"), "'a\\r\\nb'");
        assert_eq!(quoted(&"x".repeat(150)).chars().count(), NOTE_VALUE_MAX + 3);
    }

    #[test]
    fn deeply_nested_html_does_not_crash() {
        let html = format!("{}x{}", "<div>".repeat(5_000), "</div>".repeat(5_000));
        let raw = format!("From: a@b.example\nContent-Type: text/html\n\n{html}\n");
        let m = parse_email(raw.as_bytes());
        assert!(m.html.is_some());
    }

    #[test]
    fn a_1_mb_references_header_parses_in_linear_time_with_capped_notes() {
        let mut raw = String::from("From: a@b.example\nSubject: s\nReferences:");
        for i in 0..25_000 {
            // Every other id is unusable, so each one also makes a note.
            raw.push_str(&format!(" <id-{i}@x.example>\n <bad {i}@x>\n"));
        }
        raw.push_str("\nbody\n");
        let started = std::time::Instant::now();
        let m = parse_email(raw.as_bytes());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(m.references.len(), 25_000);
        assert_eq!(m.notes.len(), MAX_NOTES + 1, "{:?}", m.notes.last());
        assert!(m.notes.last().unwrap().contains("more problems not listed"));
    }

    // --- robustness ------------------------------------------------------------

    /// One small edit to a fixture: the kinds of damage real mail shows.
    #[derive(Debug, Clone)]
    enum Mutation {
        Replace(usize, u8),
        Insert(usize, Vec<u8>),
        Delete(usize, usize),
        Truncate(usize),
        Duplicate(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let token = prop_oneof![
            proptest::collection::vec(any::<u8>(), 1..8),
            Just(b"\n".to_vec()),
            Just(b"\r\n\r\n".to_vec()),
            Just(b"--".to_vec()),
            Just(b"=?utf-8?B?".to_vec()),
            Just(b"\n--MIX\n".to_vec()),
            Just(b"\n--REL--\n".to_vec()),
            Just(b"Content-Type: multipart/mixed; boundary=\"MIX\"\n".to_vec()),
            Just(b"Content-Type: message/rfc822\n\n".to_vec()),
            Just(b"Content-Transfer-Encoding: base64\n".to_vec()),
            Just(b"Content-Transfer-Encoding: quoted-printable\n".to_vec()),
            Just(b"=\n".to_vec()),
            Just(b"<".to_vec()),
            Just(b":".to_vec()),
        ];
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
            (any::<usize>(), token).prop_map(|(i, t)| Mutation::Insert(i, t)),
            (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 1usize..200).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        ]
    }

    fn apply(raw: &mut Vec<u8>, m: &Mutation) {
        let len = raw.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match m {
            Mutation::Replace(i, b) => {
                if len > 0 {
                    raw[i % len] = *b;
                }
            }
            Mutation::Insert(i, t) => {
                let i = at(*i);
                raw.splice(i..i, t.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(*i);
                let end = (i + n).min(len);
                raw.drain(i..end);
            }
            Mutation::Truncate(i) => raw.truncate(at(*i)),
            Mutation::Duplicate(i, n) => {
                let i = at(*i);
                let end = (i + n).min(len);
                let copy = raw[i..end].to_vec();
                raw.splice(i..i, copy);
            }
        }
    }

    fn check_invariants(raw: &[u8]) {
        let m = parse_email(raw);
        assert_eq!(m.size, raw.len());
        assert_eq!(m.content_hash, content_hash(raw));
        if m.message_id_synthesized {
            assert!(m.message_id.as_str().ends_with("@mailroom.invalid"));
        }
        let v = m.view();
        assert!(v.body.len() <= m.text.len());
        for i in 0..m.attachments.len() {
            assert!(
                attachment_bytes(raw, i).is_some(),
                "attachment {i} has no bytes"
            );
        }
        assert_eq!(attachment_bytes(raw, m.attachments.len()), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            check_invariants(&raw);
        }

        #[test]
        fn never_panics_on_mutated_fixtures(
            which in 0..CORPUS.len(),
            mutations in proptest::collection::vec(mutation(), 1..6),
            as_crlf in any::<bool>(),
        ) {
            let mut raw = if as_crlf { crlf(CORPUS[which]) } else { CORPUS[which].to_vec() };
            for m in &mutations {
                apply(&mut raw, m);
            }
            check_invariants(&raw);
        }

        #[test]
        fn hash_is_stable_under_redelivery(which in 0..CORPUS.len(), trace in "[a-z .;]{0,40}") {
            let raw = CORPUS[which];
            let mut redelivered = format!("Received: {trace}\nDelivered-To: x@y.example\nReturn-Path: <b@c>\n").into_bytes();
            redelivered.extend_from_slice(raw);
            prop_assert_eq!(content_hash(&crlf(&redelivered)), content_hash(raw));
        }
    }

    #[test]
    fn every_fixture_parses_and_round_trips_attachments() {
        for raw in CORPUS {
            check_invariants(raw);
            check_invariants(&crlf(raw));
            // CRLF and LF deliveries are the same mail.
            let (lf, crlf_) = (parse_email(raw), parse_email(&crlf(raw)));
            assert_eq!(lf.message_id, crlf_.message_id);
            assert_eq!(lf.content_hash, crlf_.content_hash);
            assert_eq!(lf.text, crlf_.text);
            assert_eq!(lf.attachments.len(), crlf_.attachments.len());
        }
    }

    /// The body normalisation as first written: copy, drop CR before LF, trim.
    fn normalise_body_by_copy(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len());
        let mut bytes = body.iter().peekable();
        while let Some(&b) = bytes.next() {
            if b == b'\r' && bytes.peek() == Some(&&b'\n') {
                continue;
            }
            out.push(b);
        }
        let end = out.trim_ascii_end().len();
        out.truncate(end);
        out
    }

    proptest! {
        #[test]
        fn streamed_body_hash_equals_hash_of_normalised_copy(
            body in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), Just(b'a')], 0..64)
        ) {
            let mut streamed = Sha256::new();
            hash_normalised_body(&mut streamed, &body);
            let mut copied = Sha256::new();
            copied.update(normalise_body_by_copy(&body));
            prop_assert_eq!(streamed.finalize(), copied.finalize());
        }
    }

    fn big_mail(attachment: usize, text_body_b64: Option<usize>) -> Vec<u8> {
        use base64::Engine as _;
        let data: Vec<u8> = (0..attachment).map(|i| (i % 253) as u8).collect();
        let enc = base64::engine::general_purpose::STANDARD.encode(&data);
        let lines = |enc: &str| {
            enc.as_bytes()
                .chunks(76)
                .map(|c| format!("{}\r\n", std::str::from_utf8(c).unwrap()))
                .collect::<String>()
        };
        let text = match text_body_b64 {
            Some(n) => {
                let t: String = "Hello, the log follows.\n"
                    .chars()
                    .chain(std::iter::repeat_n("line of the log\n", n / 16).flat_map(str::chars))
                    .collect();
                format!(
                    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}",
                    lines(&base64::engine::general_purpose::STANDARD.encode(t))
                )
            }
            None => "Content-Type: text/plain\r\n\r\nPlease see the report.\r\n".to_owned(),
        };
        format!(
            "From: Ann <ann@customer.example>\r\nTo: support@example.com\r\nSubject: Report\r\n\
             Message-ID: <big@customer.example>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
             --XX\r\n{text}--XX\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}--XX\r\n\
             Content-Type: text/csv; name=\"small.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--XX--\r\n",
            lines(&enc),
            lines(&base64::engine::general_purpose::STANDARD.encode("a,b\n1,2\n"))
        )
        .into_bytes()
    }

    #[test]
    fn large_attachments_are_sized_without_being_decoded() {
        let raw = big_mail(3_000_001, None);
        assert!(elide::skeleton(&raw, elide::MIN_RUN).is_some());
        let m = parse_email(&raw);
        assert_eq!(m.text, "Please see the report.");
        let sizes: Vec<(&str, u64)> = m
            .attachments
            .iter()
            .map(|a| (a.name.as_str(), a.size))
            .collect();
        assert_eq!(sizes, [("report.pdf", 3_000_001), ("small.csv", 8)]);
        assert!(m.notes.is_empty(), "{:?}", m.notes);
        // The full parse agrees on the bytes.
        assert_eq!(attachment_bytes(&raw, 0).unwrap().len(), 3_000_001);
        // Uploads under a 1 MB cap get the small file in one parse, and never
        // a cut piece of the large one, even when asked for it.
        let got = attachments_bytes(&raw, &[0, 1], 1024 * 1024);
        assert_eq!(got, vec![(1, b"a,b\n1,2\n".to_vec())]);
        // With a cap above its size, the large one comes whole.
        let got = attachments_bytes(&raw, &[0], 4 * 1024 * 1024);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, attachment_bytes(&raw, 0).unwrap());
    }

    #[test]
    fn a_long_encoded_text_body_shows_its_beginning_and_what_was_left_out() {
        let raw = big_mail(10, Some(2_000_000));
        let m = parse_email(&raw);
        assert!(
            m.text
                .starts_with("Hello, the log follows.\nline of the log\n"),
            "{}",
            &m.text[..80]
        );
        assert!(m.text.len() < 100_000, "{}", m.text.len());
        assert!(
            m.text.trim_end().ends_with("more not shown]"),
            "{}",
            &m.text[m.text.len() - 80..]
        );
        assert!(!m.text.contains("mailroom-elided"));
        assert_eq!(m.content_hash, content_hash(&raw));
    }
}
