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

use mail_parser::{HeaderName, MessageParser, PartType};
use sha2::{Digest, Sha256};

use crate::domain::email::{AttachmentMeta, AutoKind, ContentHash, Party};
use crate::domain::ids::MessageId;
use crate::domain::render::EmailView;
use crate::mail::elide;

mod attachments;
mod body;
#[cfg(test)]
mod fixtures;
mod headers;

use attachments::{attachment_meta, attachment_parts};
use body::{
    body_part_ids, decode_text_part, html_to_text, join_texts, normalise_newlines,
    note_part_problems, unknown_encoded_word_charsets,
};
use headers::{
    addresses, auto_kind, first_header, ids_of, parse_ids, parties, party_of, raw_header_text,
    returned_message_id, split_message, synthesised_id, trace, unknown_party,
};

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
    /// The Sender header (RFC 5322 §3.6.2): who wrote on behalf of From.
    pub sender: Option<Party>,
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
    /// Trace facts for mail hygiene (authentication results, list and
    /// envelope hints); see [`Trace`].
    pub trace: Trace,
}

/// Header facts the hygiene rules read: who checked the mail's
/// authentication and what they found, and hints about who really wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// Every `Authentication-Results` value, topmost first.
    pub authentication_results: Vec<String>,
    /// Every `ARC-Authentication-Results` value, in header order.
    pub arc_results: Vec<String>,
    /// `Return-Path: <>`: the null envelope sender of bounces and
    /// automatic responses (RFC 3834 §3.3).
    pub null_sender: bool,
    /// The list's posting address (`List-Post: <mailto:…>`).
    pub list_post: Option<crate::domain::ids::EmailAddress>,
    /// `List-Id` is present.
    pub list_id: bool,
    /// Who wrote list mail, as the list says (`X-Original-From`, Google
    /// Groups' `X-Original-Sender`).
    pub original_from: Option<Party>,
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
            sender: None,
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
            trace: trace(&headers),
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
    let sender = addresses(&message, HeaderName::Sender)
        .iter()
        .find_map(party_of);
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
        sender,
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
        trace: trace(&headers),
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
    use super::fixtures::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headerless_input_is_shown_as_text() {
        let m = parse_email(b"");
        assert!(m.message_id_synthesized);
        assert_eq!(m.from.address.as_str(), "unknown@unknown.invalid");
        assert!(!m.notes.is_empty());
        assert_eq!(m.size, 0);
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
    fn quoted_escapes_and_caps() {
        assert_eq!(quoted("a\r\nb"), "'a\\r\\nb'");
        assert_eq!(quoted(&"x".repeat(150)).chars().count(), NOTE_VALUE_MAX + 3);
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
}
