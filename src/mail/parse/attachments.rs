//! Attachments: every non-body part, with a name, a type and a size.

use mail_parser::{Message, MessagePart, MimeHeaders};

use crate::domain::email::AttachmentMeta;

// ---------------------------------------------------------------------------
// Attachments

/// Every non-body part, in mail-parser's attachment order.
pub(super) fn attachment_parts<'m>(
    message: &'m Message<'m>,
    body_parts: &[u32],
) -> Vec<&'m MessagePart<'m>> {
    message
        .attachments
        .iter()
        .filter(|id| !body_parts.contains(id))
        .filter_map(|&id| message.parts.get(id as usize))
        .collect()
}

pub(super) fn content_type_of(part: &MessagePart<'_>) -> String {
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

pub(super) fn attachment_meta(
    part: &MessagePart<'_>,
    number: usize,
    html_lower: &str,
) -> AttachmentMeta {
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
pub(super) fn extension_for(content_type: &str) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::elide;
    use crate::mail::parse::fixtures::*;
    use crate::mail::parse::{attachment_bytes, attachments_bytes, parse_email};

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
}
