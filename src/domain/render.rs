//! The rendering model: what chat shows of an email, independent of how Slack
//! or Matrix format it.
//!
//! Mail arrives full of history: quoted replies, Outlook header blocks,
//! signatures, "Sent from my iPhone". A teammate skimming a ticket wants what
//! the customer newly wrote, so [`trim_reply`] cuts that history off while
//! [`EmailView`] keeps the full text next to it for "show everything".
//!
//! Every cut here removes a *suffix* of the text. That is deliberate: it makes
//! the result a prefix of the input (so it can never grow, and never reorders
//! or invents text), and it makes trimming idempotent: a cut never creates a
//! new Outlook block or signature separator above it, and trailing quotes and
//! mobile signatures are peeled until the text ends in neither, so what is
//! left holds nothing any rule would remove.

use super::email::{AttachmentMeta, Party};

/// The result of [`trim_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trimmed {
    /// What the sender newly wrote; trailing blank lines removed.
    pub body: String,
    /// Quoted history (a trailing `>` block, its attribution line, or an
    /// Outlook header block and everything after it) was removed.
    pub quoted_trimmed: bool,
    /// A signature (`-- ` and what follows, or a mobile "Sent from" line) was removed.
    pub signature_trimmed: bool,
}

/// Removes quoted history and the signature from a plain-text reply, keeping
/// what the sender newly wrote.
///
/// Only *trailing* history goes: an interleaved reply keeps its inline quotes
/// because the answers below them make no sense without them. The result is
/// always a prefix of `text` (trailing whitespace removed), possibly empty when
/// the mail was nothing but a quote.
pub fn trim_reply(text: &str) -> Trimmed {
    let lines = split_lines(text);
    // The body is `lines[..end]`; every rule below only ever lowers `end`.
    let mut end = without_blank_tail(&lines, lines.len());
    let mut quoted_trimmed = false;
    let mut signature_trimmed = false;

    // The rules run in a fixed order, each scanning only what it needs, so
    // that a hostile mail (thousands of alternating quote and "Sent from"
    // lines) costs linear time rather than one full rescan per line.
    //
    // 1. Outlook blocks: the earliest one ends the reply. A cut never creates
    //    a new block above it (a block needs lines below it, which only
    //    disappear), so this needs to run once.
    if let Some(i) = first_outlook_block(lines.get(..end).unwrap_or_default()) {
        end = without_blank_tail(&lines, i);
        quoted_trimmed = true;
    }
    // 2. Trailing quotes and mobile signatures, peeled off from the end.
    peel_trailing_history(
        &lines,
        &mut end,
        &mut quoted_trimmed,
        &mut signature_trimmed,
    );
    // 3. The signature separator. Cutting at the first one leaves none, so this
    //    too runs once; what it exposes ("reply, > quote, -- , sig") is peeled
    //    by one more step 2.
    if let Some(i) = first_signature_separator(lines.get(..end).unwrap_or_default()) {
        end = without_blank_tail(&lines, i);
        signature_trimmed = true;
        peel_trailing_history(
            &lines,
            &mut end,
            &mut quoted_trimmed,
            &mut signature_trimmed,
        );
    }

    let cut = lines.get(end).map_or(text.len(), |l| l.start);
    Trimmed {
        body: text.get(..cut).unwrap_or(text).trim_end().to_owned(),
        quoted_trimmed,
        signature_trimmed,
    }
}

/// RFC 3676 `format=flowed` decoding.
///
/// A line ending in a space is "soft" and joins the next line into one
/// paragraph; with `delsp` (DelSp=yes) that trailing space is a pure marker and
/// is removed when joining. One leading space (space-stuffing) is removed.
/// Quoted lines join only with lines of the same quote depth, and the
/// signature separator `-- ` is never treated as soft. Quoted paragraphs are
/// written back with a normalised `> ` prefix (`>> ` for depth two) so that
/// [`trim_reply`] still recognises them. Line endings come out as `\n`.
pub fn unflow(text: &str, delsp: bool) -> String {
    // A trailing newline terminates the last line rather than starting an
    // empty one; remember it so the output ends the same way.
    let (text, ends_with_newline) = match text.strip_suffix('\n') {
        Some(rest) => (rest, true),
        None => (text, false),
    };

    let mut out: Vec<String> = Vec::new();
    // The paragraph being joined: its quote depth and text so far.
    let mut open: Option<(usize, String)> = None;

    for raw_line in text.split('\n') {
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let depth = line.bytes().take_while(|&b| b == b'>').count();
        // '>' is one byte, so `depth` is a char boundary.
        let mut content = line.get(depth..).unwrap_or("");
        if let Some(unstuffed) = content.strip_prefix(' ') {
            content = unstuffed;
        }
        let is_signature_separator = content == "-- ";
        let soft = !is_signature_separator && content.ends_with(' ');

        // RFC 3676 4.5: a soft line followed by a different quote depth is
        // treated as hard; the separator always starts its own line.
        if let Some((open_depth, _)) = &open
            && (*open_depth != depth || is_signature_separator)
        {
            push_paragraph(&mut out, open.take());
        }

        let piece = if soft && delsp {
            content.strip_suffix(' ').unwrap_or(content)
        } else {
            content
        };
        match &mut open {
            Some((_, paragraph)) => paragraph.push_str(piece),
            None => open = Some((depth, piece.to_owned())),
        }
        if !soft {
            push_paragraph(&mut out, open.take());
        }
    }
    push_paragraph(&mut out, open.take());

    let mut result = out.join("\n");
    if ends_with_newline {
        result.push('\n');
    }
    result
}

fn push_paragraph(out: &mut Vec<String>, paragraph: Option<(usize, String)>) {
    let Some((depth, text)) = paragraph else {
        return;
    };
    if depth == 0 {
        out.push(text);
    } else {
        let mut line = ">".repeat(depth);
        if !text.is_empty() {
            line.push(' ');
            line.push_str(&text);
        }
        out.push(line);
    }
}

/// What chat shows of one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailView {
    pub from: Party,
    pub to: Vec<Party>,
    pub cc: Vec<Party>,
    pub subject: String,
    /// Unix seconds, from the Date header.
    pub date: Option<i64>,
    /// What the sender newly wrote (see [`trim_reply`]).
    pub body: String,
    /// The whole text, for "show quoted text".
    pub full_text: String,
    pub quoted_trimmed: bool,
    pub signature_trimmed: bool,
    pub attachments: Vec<AttachmentMeta>,
    /// Problems met while reading the mail, shown so that nobody trusts a
    /// garbled rendering blindly.
    pub notes: Vec<String>,
    /// SPF, DKIM and DMARC as the receiving server found them, when it is
    /// trusted (set by the bridge, which knows whom to trust).
    pub auth: Option<super::authres::AuthSummary>,
}

impl EmailView {
    // The parameters are the view's own fields; a builder would only add
    // ceremony for the single caller in `mail::parse`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        from: Party,
        to: Vec<Party>,
        cc: Vec<Party>,
        subject: String,
        date: Option<i64>,
        full_text: String,
        attachments: Vec<AttachmentMeta>,
        notes: Vec<String>,
    ) -> Self {
        let trimmed = trim_reply(&full_text);
        // A mail that is only a quote (a bare forward, a reply whose text got
        // lost) would otherwise render as nothing; the full text is better.
        let (body, quoted_trimmed, signature_trimmed) = if trimmed.body.trim().is_empty() {
            (full_text.trim_end().to_owned(), false, false)
        } else {
            (
                trimmed.body,
                trimmed.quoted_trimmed,
                trimmed.signature_trimmed,
            )
        };
        EmailView {
            from,
            to,
            cc,
            subject,
            date,
            body,
            full_text,
            quoted_trimmed,
            signature_trimmed,
            attachments,
            notes,
            auth: None,
        }
    }
}

/// How much of an email a chat post carries.
///
/// A chat server may refuse a post for something inside the email (a
/// formatted body it will not take, a rendering over its event size limit).
/// The ticket must still reach the team, so the post is tried again one
/// level down ([`Rendering::fallback`]) and the thread is told what was left
/// out. Attachments are never part of a post: each is uploaded on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rendering {
    /// Formatted (HTML on Matrix, Block Kit on Slack): headers, the text,
    /// the attachments listed, reading problems.
    Full,
    /// The same content as plain text, without any markup.
    Plain,
    /// Who wrote, the subject, and how to read the rest
    /// (`mailroom tickets show N`); the full text follows as a file.
    Minimal,
}

impl Rendering {
    /// The levels, in the order they are tried.
    pub const ALL: [Rendering; 3] = [Rendering::Full, Rendering::Plain, Rendering::Minimal];

    /// The next level down, if any.
    pub fn fallback(self) -> Option<Rendering> {
        match self {
            Rendering::Full => Some(Rendering::Plain),
            Rendering::Plain => Some(Rendering::Minimal),
            Rendering::Minimal => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rendering::Full => "full",
            Rendering::Plain => "plain",
            Rendering::Minimal => "minimal",
        }
    }

    /// Appended to a post's idempotency key: each level is its own request,
    /// so a refused level never shadows the next one's transaction id.
    pub fn key_suffix(self) -> &'static str {
        match self {
            Rendering::Full => "",
            Rendering::Plain => "-plain",
            Rendering::Minimal => "-minimal",
        }
    }

    /// What a post at this level leaves out, for the thread's notice.
    pub fn left_out(self) -> &'static str {
        match self {
            Rendering::Full => "nothing",
            Rendering::Plain => "the formatting",
            Rendering::Minimal => {
                "the text, the address lists and the attachment list (the full text is attached as a file)"
            }
        }
    }
}

/// The thread's notice after a post had to fall back: what is shown, what
/// was left out, and each level's refusal.
pub fn fallback_notice(shown: Rendering, refusals: &[(Rendering, String)]) -> String {
    let mut out = format!(
        "ℹ️ This mail is shown {} because the chat server refused the fuller version; left out: {}.",
        match shown {
            Rendering::Full => "in full",
            Rendering::Plain => "as plain text",
            Rendering::Minimal => "as a short card",
        },
        shown.left_out()
    );
    for (level, why) in refusals {
        out.push_str(&format!("\n• {} version refused: {why}", level.as_str()));
    }
    out
}

/// A short one-line preview for lists: the first non-blank line of `body`,
/// whitespace collapsed, cut to at most `max_chars` characters plus `…`.
pub fn preview(body: &str, max_chars: usize) -> String {
    let first = body.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let collapsed = first.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max_chars {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(max_chars).collect();
    // "word …" reads worse than "word…".
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

// ---------------------------------------------------------------------------
// Line model

/// One line of the text being trimmed.
struct Line<'a> {
    /// Byte offset of the line's first character in the text.
    start: usize,
    /// The line without its `\n` and without a trailing `\r`.
    text: &'a str,
}

impl Line<'_> {
    fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }
    fn is_quoted(&self) -> bool {
        self.text.trim_start().starts_with('>')
    }
}

fn split_lines(text: &str) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut start = 0;
    for piece in text.split('\n') {
        lines.push(Line {
            start,
            text: piece.strip_suffix('\r').unwrap_or(piece),
        });
        start += piece.len() + 1;
    }
    lines
}

// ---------------------------------------------------------------------------
// Quoted history

/// The index just past the last non-blank line of `lines[..end]`.
fn without_blank_tail(lines: &[Line<'_>], end: usize) -> usize {
    lines
        .iter()
        .take(end)
        .rposition(|l| !l.is_blank())
        .map_or(0, |i| i + 1)
}

/// The index of the earliest line starting an Outlook-style quoted block.
fn first_outlook_block(lines: &[Line<'_>]) -> Option<usize> {
    (0..lines.len()).find(|&i| match lines.get(i..) {
        Some([line, following @ ..]) => starts_outlook_block(line, following),
        _ => false,
    })
}

/// Removes trailing `>` blocks (with their attribution) and trailing mobile
/// signature lines, in any interleaving, until the body ends in neither.
/// Each round costs about the lines it removes.
fn peel_trailing_history(
    lines: &[Line<'_>],
    end: &mut usize,
    quoted_trimmed: &mut bool,
    signature_trimmed: &mut bool,
) {
    // Blank lines never become content, so the first content line stays put
    // for as long as anything is left.
    let Some(first_content) = lines.iter().take(*end).position(|l| !l.is_blank()) else {
        return;
    };
    loop {
        let body = lines.get(..*end).unwrap_or_default();
        if let Some(i) = trailing_quote_start(body) {
            *end = without_blank_tail(lines, i);
            *quoted_trimmed = true;
        } else if let Some(i) = trailing_mobile_signature(body, first_content) {
            *end = without_blank_tail(lines, i);
            *signature_trimmed = true;
        } else {
            return;
        }
    }
}

/// The index of the first line of a trailing `>`-quoted block, moved up to
/// include its attribution ("On … wrote:") when there is one.
fn trailing_quote_start(lines: &[Line<'_>]) -> Option<usize> {
    // The text is trimmed, so the last line is not blank: it must be quoted
    // for there to be a trailing quote at all.
    if !lines.last()?.is_quoted() {
        return None;
    }
    // Walk up over quoted and blank lines; the block starts at the topmost
    // quoted one.
    let first_quoted = lines
        .iter()
        .enumerate()
        .rev()
        .take_while(|(_, l)| l.is_quoted() || l.is_blank())
        .filter(|(_, l)| l.is_quoted())
        .map(|(i, _)| i)
        .last()?;

    // The attribution is the nearest non-blank line above the block.
    let Some((above, line)) = lines
        .iter()
        .enumerate()
        .take(first_quoted)
        .rev()
        .find(|(_, l)| !l.is_blank())
    else {
        return Some(first_quoted);
    };
    // A wrapped attribution ("On Mon, … Bob\n<b@x> wrote:") is checked first:
    // its second half alone also ends in "wrote:" and would leave the first
    // half behind.
    if let Some(previous) = above.checked_sub(1)
        && let Some(first) = lines.get(previous)
    {
        let joined = format!("{} {}", first.text.trim(), line.text.trim());
        if !first.is_blank()
            && !first.is_quoted()
            && has_attribution_opener(first.text)
            && !is_attribution(first.text)
            && is_attribution(&joined)
        {
            return Some(previous);
        }
    }
    if is_attribution(line.text) {
        return Some(above);
    }
    Some(first_quoted)
}

/// Words that start an attribution line in the languages we recognise
/// ("On …", German "Am …", French "Le …", Spanish "El …", Dutch "Op …",
/// Italian "Il …", Portuguese "Em …", Scandinavian "Den …").
const ATTRIBUTION_OPENERS: &[&str] = &["on ", "am ", "le ", "el ", "op ", "il ", "em ", "den "];

fn has_attribution_opener(line: &str) -> bool {
    let lower = line.trim_start().to_lowercase();
    ATTRIBUTION_OPENERS.iter().any(|o| lower.starts_with(o))
}

/// "On Mon, 3 Jun 2024 at 10:00, Bob <b@x> wrote:" and its translations.
///
/// This is only ever asked about the line right above a trailing quote, so it
/// can afford to be generous: any line ending in "wrote:" qualifies.
fn is_attribution(line: &str) -> bool {
    let line = line.trim();
    // An attribution is one sentence; a long paragraph that happens to end in
    // a colon is the sender's own text.
    if line.is_empty() || line.starts_with('>') || line.chars().count() > 300 {
        return false;
    }
    let Some(head) = line.strip_suffix(':') else {
        return false;
    };
    // French puts a (often non-breaking) space before the colon.
    let head = head.trim_end().to_lowercase();
    const ENDINGS: &[&str] = &[
        "wrote",
        "writes",
        "a écrit",
        "escribió",
        "ha scritto",
        "escreveu",
        "schreef",
    ];
    // German and Scandinavian put the name after the verb:
    // "Am 3. Juni 2024 um 10:00 schrieb Bob <b@x>:".
    const INNER: &[&str] = &[" schrieb ", " skrev ", " schreef "];
    ENDINGS.iter().any(|e| head.ends_with(e)) || INNER.iter().any(|w| head.contains(w))
}

/// Header names of an Outlook-style quoted header block, in the languages
/// Outlook is commonly used in. Compared lowercase, after stripping the `*`
/// that HTML-to-text conversion leaves around bold labels.
const FROM_LABELS: &[&str] = &["from:", "von:", "de:", "de :", "van:", "da:"];
const DATE_LABELS: &[&str] = &[
    "sent:",
    "date:",
    "gesendet:",
    "datum:",
    "envoyé :",
    "envoyé:",
    "enviado:",
    "enviado el:",
    "fecha:",
    "verzonden:",
    "inviato:",
    "data:",
];
const SUBJECT_LABELS: &[&str] = &[
    "subject:",
    "betreff:",
    "objet :",
    "objet:",
    "asunto:",
    "onderwerp:",
    "oggetto:",
    "assunto:",
];

/// "-----Original Message-----" and its translations.
const ORIGINAL_MESSAGE: &[&str] = &[
    "original message",
    "original-nachricht",
    "ursprüngliche nachricht",
    "message d'origine",
    "mensaje original",
    "oorspronkelijk bericht",
    "messaggio originale",
    "mensagem original",
];

fn has_label(line: &str, labels: &[&str]) -> bool {
    let lower = line.trim_start().trim_start_matches('*').to_lowercase();
    labels.iter().any(|l| lower.starts_with(l))
}

/// Whether `line` starts an Outlook-style quoted block; `following` are the
/// lines after it.
fn starts_outlook_block(line: &Line<'_>, following: &[Line<'_>]) -> bool {
    if line.is_quoted() {
        return false;
    }
    let trimmed = line.text.trim();

    // "-----Original Message-----", "----- Original Message -----".
    if trimmed.starts_with("--") && trimmed.ends_with("--") {
        let label = trimmed.trim_matches(|c: char| c == '-' || c.is_whitespace());
        if ORIGINAL_MESSAGE.contains(&label.to_lowercase().as_str()) {
            return true;
        }
    }

    // Outlook's "________________________________" rule above the header block.
    if trimmed.len() >= 10 && trimmed.chars().all(|c| c == '_') {
        return following
            .iter()
            .find(|l| !l.is_blank())
            .is_some_and(|l| has_label(l.text, FROM_LABELS));
    }

    // "From: …" followed closely by "Sent:"/"Date:" and "Subject:" lines. One
    // "From:" line alone is too common in ordinary text to cut on.
    if has_label(line.text, FROM_LABELS) {
        let block = following.iter().take(8);
        let mut dated = false;
        let mut subject = false;
        for l in block {
            dated |= has_label(l.text, DATE_LABELS);
            subject |= has_label(l.text, SUBJECT_LABELS);
        }
        return dated && subject;
    }
    false
}

// ---------------------------------------------------------------------------
// Signatures

/// The RFC 3676 separator (`-- `, or `--` alone) anywhere but the first
/// line of content.
fn first_signature_separator(lines: &[Line<'_>]) -> Option<usize> {
    let first_content = lines.iter().position(|l| !l.is_blank())?;
    // A mail whose first line is the separator is nothing but a signature
    // (a bare "thanks" card); cutting it would leave nothing to show.
    lines
        .iter()
        .enumerate()
        .skip(first_content + 1)
        .find(|(_, l)| l.text.trim_end() == "--")
        .map(|(i, _)| i)
}

/// The last line, if it is a mobile "Sent from" signature with content above
/// it: a mail saying nothing but "Sent from my iPhone" keeps it, like a
/// signature-only mail.
fn trailing_mobile_signature(lines: &[Line<'_>], first_content: usize) -> Option<usize> {
    let last = lines.len().checked_sub(1)?;
    let line = lines.get(last)?;
    (last > first_content && is_mobile_signature(line.text)).then_some(last)
}

/// Lines mail apps append by default; they say nothing about the request.
const MOBILE_SIGNATURES: &[&str] = &[
    "sent from my ",
    "sent from mail for windows",
    "sent from outlook",
    "sent from yahoo mail",
    "get outlook for ios",
    "get outlook for android",
    "von meinem iphone gesendet",
    "von meinem ipad gesendet",
    "envoyé de mon ",
    "enviado desde mi ",
];

fn is_mobile_signature(line: &str) -> bool {
    let lower = line.trim().to_lowercase();
    lower.chars().count() <= 80 && MOBILE_SIGNATURES.iter().any(|m| lower.starts_with(m))
}

#[cfg(test)]
mod tests;
