//! Mails the parser's tests share.

use crate::domain::ids::{EmailAddress, MessageId};

pub(super) const REPLY: &[u8] = include_bytes!("../../../tests/corpus/reply_quote_signature.eml");
pub(super) const HTML_ONLY: &[u8] = include_bytes!("../../../tests/corpus/html_only.eml");
pub(super) const ALTERNATIVE: &[u8] = include_bytes!("../../../tests/corpus/alternative.eml");
pub(super) const FLOWED: &[u8] = include_bytes!("../../../tests/corpus/flowed_delsp.eml");
pub(super) const SUBJECT_LATIN1: &[u8] = include_bytes!("../../../tests/corpus/subject_latin1.eml");
pub(super) const SUBJECT_UNKNOWN: &[u8] =
    include_bytes!("../../../tests/corpus/subject_unknown_charset.eml");
pub(super) const LATIN1_BODY: &[u8] = include_bytes!("../../../tests/corpus/latin1_body.eml");
pub(super) const NO_MESSAGE_ID: &[u8] = include_bytes!("../../../tests/corpus/no_message_id.eml");
pub(super) const BROKEN_BASE64: &[u8] = include_bytes!("../../../tests/corpus/broken_base64.eml");
pub(super) const NESTED: &[u8] = include_bytes!("../../../tests/corpus/nested.eml");
pub(super) const DSN: &[u8] = include_bytes!("../../../tests/corpus/dsn_bounce.eml");
pub(super) const AUTO_REPLY: &[u8] = include_bytes!("../../../tests/corpus/auto_reply.eml");
pub(super) const LIST: &[u8] = include_bytes!("../../../tests/corpus/list_mail.eml");
pub(super) const NO_NAME: &[u8] = include_bytes!("../../../tests/corpus/attachment_no_name.eml");

pub(super) const CORPUS: &[&[u8]] = &[
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

pub(super) fn id(s: &str) -> MessageId {
    MessageId::parse(s).unwrap()
}

pub(super) fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

pub(super) fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in raw {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

pub(super) fn big_mail(attachment: usize, text_body_b64: Option<usize>) -> Vec<u8> {
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
