//! Bodies: which parts are the text and HTML bodies, decoding them (charsets,
//! format=flowed), and HTML rendered as text.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

use super::{Notes, quoted};
use crate::domain::render::unflow;

/// Width html2text wraps to; wide enough that chat clients re-wrap, not us.
const HTML_TEXT_WIDTH: usize = 100;

// ---------------------------------------------------------------------------
// Bodies

/// The ids of the parts used as text or HTML body: the text/plain parts
/// mail-parser lists as text body and the text/html parts it lists as HTML
/// body. (Its lists also hold inline images and, for single-format mails, the
/// other format's part, which are not bodies to us.)
pub(super) fn body_part_ids(message: &Message<'_>) -> Vec<u32> {
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
pub(super) fn decode_text_part(part: &MessagePart<'_>, text: &str) -> String {
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

pub(super) fn join_texts(texts: Vec<String>) -> String {
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

pub(super) fn normalise_newlines(text: &str) -> String {
    text.replace("\r\n", "\n")
}

pub(super) fn html_to_text(html: &str) -> Option<String> {
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

/// Notes for a part that mail-parser could not decode cleanly.
pub(super) fn note_part_problems(part: &MessagePart<'_>, what: &str, notes: &mut Notes) {
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
pub(super) fn is_known_charset(charset: &str) -> bool {
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
pub(super) fn unknown_encoded_word_charsets(value: &[u8]) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use crate::mail::parse::fixtures::*;
    use crate::mail::parse::{content_hash, parse_email};

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
    fn deeply_nested_html_does_not_crash() {
        let html = format!("{}x{}", "<div>".repeat(5_000), "</div>".repeat(5_000));
        let raw = format!("From: a@b.example\nContent-Type: text/html\n\n{html}\n");
        let m = parse_email(raw.as_bytes());
        assert!(m.html.is_some());
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
