//! Large encoded bodies, left out of a mail before it is parsed.
//!
//! Rendering a mail for chat needs its text, its structure and each
//! attachment's name and size, not the attachment's bytes. mail-parser
//! decodes every part while it parses, so a 25 MB attachment would cost 25 MB
//! on top of the raw message each time the mail is rendered. Before a large
//! mail is parsed for display, each long run of base64 lines (only an encoded
//! body looks like that) is cut after its first [`KEEP`] bytes and the rest
//! replaced by one base64 line that decodes to a marker naming the run.
//! Headers and boundary lines are never touched (they hold characters base64
//! has not), so the parts, and their numbering, are those of the full parse.
//!
//! After parsing, [`Skeleton::true_len`] gives a part's real decoded size and
//! [`Skeleton::describe`] turns markers left in a text into a short note. A
//! run inside a part that is not base64-encoded (a very long line-broken key
//! pasted in a text body) ends up in the text as the marker's base64 line,
//! which `describe` recognises too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Runs shorter than this are kept whole: the saving would not be worth it.
pub const MIN_RUN: usize = 1024 * 1024;
/// How much of a run is kept, so that a long base64-encoded text body still
/// shows its beginning (far more than a chat message holds).
pub const KEEP: usize = 64 * 1024;

/// A mail with its long encoded runs cut.
#[derive(Debug)]
pub struct Skeleton {
    pub bytes: Vec<u8>,
    /// Per-skeleton, so that text in the mail cannot pose as a marker.
    nonce: String,
    /// Decoded bytes left out of each run, by run number.
    elided: Vec<u64>,
}

/// The base64 alphabet, with the `=` padding.
fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// A line (without its line break) that can only be base64 data.
fn is_base64_line(line: &[u8]) -> bool {
    !line.is_empty() && line.iter().all(|&b| is_base64_byte(b))
}

/// One run found in the raw mail: `raw[start..end]` is whole lines; the part
/// from `cut` on is left out.
struct Run {
    cut: usize,
    end: usize,
    /// Base64 data characters (not `=`) from `cut` to `end`.
    elided_chars: u64,
}

/// Finds the runs of at least `min_run` bytes and cuts them, or `None` when
/// the mail has none (the caller then parses the raw bytes as they are).
pub fn skeleton(raw: &[u8], min_run: usize) -> Option<Skeleton> {
    if raw.len() < min_run {
        return None;
    }
    let runs = find_runs(raw, min_run);
    if runs.is_empty() {
        return None;
    }
    let mut nonce_bytes = [0u8; 6];
    // Without entropy the nonce is merely predictable: a mail could then fake
    // a marker, which only misstates an attachment's size.
    let _ = getrandom::fill(&mut nonce_bytes);
    let nonce = hex::encode(nonce_bytes);
    let elided_total: usize = runs.iter().map(|r| r.end - r.cut).sum();
    let mut bytes = Vec::with_capacity(raw.len() - elided_total + runs.len() * 64);
    let mut elided = Vec::with_capacity(runs.len());
    let mut from = 0;
    for (n, run) in runs.iter().enumerate() {
        bytes.extend_from_slice(&raw[from..run.cut]);
        bytes.extend_from_slice(placeholder(&nonce, n).as_bytes());
        bytes.extend_from_slice(b"\r\n");
        elided.push(run.elided_chars * 3 / 4);
        from = run.end;
    }
    bytes.extend_from_slice(&raw[from..]);
    Some(Skeleton {
        bytes,
        nonce,
        elided,
    })
}

fn marker(nonce: &str, n: usize) -> String {
    format!("[mailroom-elided-{nonce}-{n}]")
}

fn placeholder(nonce: &str, n: usize) -> String {
    STANDARD.encode(marker(nonce, n))
}

fn find_runs(raw: &[u8], min_run: usize) -> Vec<Run> {
    let mut runs = Vec::new();
    // The run being read: where it starts, where it may be cut (the first line
    // end past KEEP at a whole base64 quantum), and the data characters after
    // that cut.
    let mut start: Option<usize> = None;
    let mut cut: Option<usize> = None;
    let mut chars: u64 = 0;
    let mut elided_chars: u64 = 0;
    let mut pos = 0;
    let close = |runs: &mut Vec<Run>, start: usize, cut: Option<usize>, end: usize, e: u64| {
        if end - start >= min_run {
            // No quantum boundary past KEEP: leave the whole run out.
            let cut = cut.unwrap_or(start);
            runs.push(Run {
                cut,
                end,
                elided_chars: e,
            });
        }
    };
    while pos < raw.len() {
        let next = memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..next];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if is_base64_line(content) {
            let s = *start.get_or_insert(pos);
            if cut.is_some() {
                elided_chars += content.iter().filter(|&&b| b != b'=').count() as u64;
            } else {
                chars += content.len() as u64;
                if next - s >= KEEP && chars.is_multiple_of(4) {
                    cut = Some(next);
                }
            }
        } else if let Some(s) = start.take() {
            close(&mut runs, s, cut.take(), pos, elided_chars);
            chars = 0;
            elided_chars = 0;
        }
        pos = next;
    }
    if let Some(s) = start {
        close(&mut runs, s, cut, raw.len(), elided_chars);
    }
    runs
}

impl Skeleton {
    /// The decoded size a part really has, given what the skeleton's parse
    /// decoded for it.
    pub fn true_len(&self, contents: &[u8]) -> u64 {
        let mut len = contents.len() as u64;
        for (n, elided) in self.elided.iter().enumerate() {
            let m = marker(&self.nonce, n);
            if memchr::memmem::find(contents, m.as_bytes()).is_some() {
                len = len - m.len() as u64 + elided;
            }
        }
        len
    }

    /// `text` with every marker (decoded, or as the base64 line) replaced by
    /// a note saying how much was left out.
    pub fn describe(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (n, elided) in self.elided.iter().enumerate() {
            let note = format!("[… {} more not shown]", human_bytes(*elided));
            for form in [marker(&self.nonce, n), placeholder(&self.nonce, n)] {
                if out.contains(&form) {
                    out = out.replace(&form, &note);
                }
            }
        }
        out
    }

    /// How many runs were cut.
    #[cfg(test)]
    fn runs(&self) -> usize {
        self.elided.len()
    }
}

fn human_bytes(n: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    if n as f64 >= MB {
        format!("{:.1} MB", n as f64 / MB)
    } else {
        format!("{} KB", n.div_ceil(1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64_lines(data: &[u8]) -> String {
        let enc = STANDARD.encode(data);
        let mut out = String::new();
        for chunk in enc.as_bytes().chunks(76) {
            out.push_str(std::str::from_utf8(chunk).unwrap());
            out.push_str("\r\n");
        }
        out
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn small_mail_is_left_alone() {
        let raw = format!("Subject: x\r\n\r\n{}", b64_lines(&data(1000)));
        assert!(skeleton(raw.as_bytes(), MIN_RUN).is_none());
    }

    #[test]
    fn long_run_is_cut_after_keep_and_sized_exactly() {
        for len in [2_000_000usize, 2_000_001, 2_000_002, 3_333_333] {
            let body = b64_lines(&data(len));
            let raw = format!(
                "Subject: x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{body}"
            );
            let s = skeleton(raw.as_bytes(), MIN_RUN).expect("a run");
            assert_eq!(s.runs(), 1);
            assert!(s.bytes.len() < KEEP + 1024, "{}", s.bytes.len());
            // Decoding what is left gives the kept prefix then the marker.
            let (_, b) = s.bytes.split_at(raw.find("\r\n\r\n").unwrap() + 4);
            let text: String = std::str::from_utf8(b).unwrap().split_whitespace().collect();
            let decoded = STANDARD.decode(text).unwrap();
            assert_eq!(s.true_len(&decoded), len as u64, "len {len}");
            assert!(decoded.starts_with(&data(len)[..KEEP / 2]));
        }
    }

    #[test]
    fn describe_replaces_decoded_and_encoded_markers() {
        let body = b64_lines(&data(1_500_000));
        let raw = format!("Subject: x\r\n\r\n{body}");
        let s = skeleton(raw.as_bytes(), MIN_RUN).unwrap();
        let m = marker(&s.nonce, 0);
        let p = placeholder(&s.nonce, 0);
        let said = s.describe(&format!("a {m} b {p} c"));
        assert!(!said.contains("mailroom-elided"));
        assert_eq!(said.matches("more not shown]").count(), 2, "{said}");
        assert!(said.contains("1.4 MB"), "{said}");
    }

    #[test]
    fn runs_end_at_boundaries_and_text_lines() {
        let a = b64_lines(&data(1_200_000));
        let b = b64_lines(&data(600_000));
        let raw = format!(
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\r\nhello world\r\n--b\r\n\r\n{a}--b\r\n\r\n{b}--b--\r\n"
        );
        let s = skeleton(raw.as_bytes(), MIN_RUN).unwrap();
        // Only the first run is long enough; the boundary lines survive.
        assert_eq!(s.runs(), 1);
        let text = String::from_utf8_lossy(&s.bytes);
        assert_eq!(text.matches("--b").count(), 4);
        assert!(text.contains("hello world"));
        assert!(text.contains(&b[..200]));
    }
}
