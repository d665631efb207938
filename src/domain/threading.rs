//! Threading rules: does an incoming email continue an existing ticket?
//!
//! In order of trust:
//! 1. its In-Reply-To / References name a Message-ID we stored (ours or theirs);
//! 2. it was sent to our plus address `support+<token>@…` (the Reply-To of our replies);
//! 3. same sender, same normalised subject, and the ticket heard from that
//!    sender within a window (for clients that drop the headers).
//!
//! Whatever matched, an email is only added to a ticket whose participants
//! include its sender: a different customer quoting or forwarding an old
//! thread gets a ticket of their own, never someone else's.
//!
//! One exception comes first: a bounce (a delivery report from a mail
//! server, never a participant) joins the ticket of the reply it returns,
//! found by that reply's Message-ID among the mail *we* sent. It is filed
//! as automatic mail: it reopens nothing and calls nobody.

use std::collections::{BTreeSet, HashSet};

use super::ids::{EmailAddress, MessageId, TicketId, TicketToken};

/// The facts of an incoming email that threading looks at.
#[derive(Debug, Clone)]
pub struct ThreadKeys {
    pub from: EmailAddress,
    pub in_reply_to: Vec<MessageId>,
    pub references: Vec<MessageId>,
    /// Tokens found in plus addresses of our mailbox among the recipients.
    pub tokens: Vec<TicketToken>,
    pub subject: String,
    /// Unix seconds the email arrived (or claims to have been sent).
    pub at: i64,
    /// For a bounce: the Message-ID of the mail it returns.
    pub returned: Option<MessageId>,
}

impl ThreadKeys {
    /// Referenced ids, most specific first: In-Reply-To, then References from
    /// the newest (last) to the oldest; at most [`MAX_REFERENCED_IDS`].
    pub fn referenced_ids(&self) -> Vec<MessageId> {
        let mut seen: HashSet<&MessageId> = HashSet::new();
        self.in_reply_to
            .iter()
            .chain(self.references.iter().rev())
            .filter(|id| seen.insert(id))
            .take(MAX_REFERENCED_IDS)
            .cloned()
            .collect()
    }

    /// The normalised subject key used by the subject heuristic.
    pub fn subject_key(&self) -> String {
        subject_key(&self.subject)
    }
}

/// How many referenced ids threading looks up. Each is a store query, and a
/// hostile References header can name 25,000; the newest ones are the ones
/// that find the ticket (a thread's own ids are at its end), and mail clients
/// trim References to about this length anyway.
pub const MAX_REFERENCED_IDS: usize = 100;

/// A reply or forward prefix (`Re:`, `Antw:`, `Re[12] :`) or a ticket marker
/// (`[#42]`) is found within this many bytes. Looking no further keeps
/// [`subject_key`] linear on a hostile 1 MB subject of a thousand markers.
const PREFIX_SCAN_BYTES: usize = 24;

/// What the store knows of a ticket that might be the one.
#[derive(Debug, Clone)]
pub struct CandidateTicket {
    pub id: TicketId,
    /// Everyone who appeared in From/To/Cc of the ticket's emails.
    pub participants: BTreeSet<EmailAddress>,
    /// The customer who opened the ticket.
    pub customer: EmailAddress,
    pub subject_key: String,
    /// Unix seconds of the latest email from the customer.
    pub last_customer_at: i64,
}

/// Candidates the store found for one email, per rule.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// Tickets holding a referenced Message-ID, in the order of `referenced_ids()`.
    pub by_reference: Vec<CandidateTicket>,
    /// Tickets whose token appeared in a recipient plus address.
    pub by_token: Vec<CandidateTicket>,
    /// Tickets of the same sender with the same subject key, newest first.
    pub by_subject: Vec<CandidateTicket>,
    /// For a bounce: the ticket of the outbound mail it returns.
    pub by_returned: Option<TicketId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Reference,
    Token,
    Subject,
    /// A bounce of a mail we sent.
    Returned,
}

impl MatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::Reference => "references",
            MatchKind::Token => "reply-to token",
            MatchKind::Subject => "same sender and subject",
            MatchKind::Returned => "bounce of our reply",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadDecision {
    FollowUp {
        ticket: TicketId,
        by: MatchKind,
    },
    /// A new ticket; `refused` lists tickets that matched but belong to
    /// someone else, so the audit log can say why they were not merged.
    NewTicket {
        refused: Vec<TicketId>,
    },
}

/// Applies the rules in order. `window_secs` bounds the subject heuristic.
pub fn decide(keys: &ThreadKeys, found: &Candidates, window_secs: i64) -> ThreadDecision {
    if let Some(ticket) = found.by_returned {
        return ThreadDecision::FollowUp {
            ticket,
            by: MatchKind::Returned,
        };
    }
    let mut refused = Vec::new();
    let rules = [
        (MatchKind::Reference, &found.by_reference),
        (MatchKind::Token, &found.by_token),
    ];
    for (kind, list) in rules {
        for c in list {
            if c.participants.contains(&keys.from) {
                return ThreadDecision::FollowUp {
                    ticket: c.id,
                    by: kind,
                };
            }
            if !refused.contains(&c.id) {
                refused.push(c.id);
            }
        }
    }
    let key = keys.subject_key();
    // `abs_diff`, not `(a - b).abs()`: the times are plain i64s and the
    // subtraction overflows at the extremes (found by fuzzing).
    let window = u64::try_from(window_secs).unwrap_or(0);
    if !key.is_empty() {
        let hit = found.by_subject.iter().find(|c| {
            c.customer == keys.from
                && c.subject_key == key
                && keys.at.abs_diff(c.last_customer_at) <= window
        });
        if let Some(c) = hit {
            return ThreadDecision::FollowUp {
                ticket: c.id,
                by: MatchKind::Subject,
            };
        }
    }
    ThreadDecision::NewTicket { refused }
}

/// Reply and forward prefixes in the languages mail clients commonly use.
const PREFIXES: &[&str] = &[
    "re", "fw", "fwd", "aw", "wg", "sv", "vs", "tr", "rv", "res", "enc", "antw", "odp", "r",
];

/// Strips reply/forward prefixes (`Re:`, `Fwd:`, `AW:`, `Re[2]:`), ticket
/// markers like `[#42]`, and folds case and whitespace.
pub fn subject_key(subject: &str) -> String {
    let lower = subject.trim().to_lowercase();
    // Slices, not copies: each round only moves the start forward.
    let mut s = lower.as_str();
    loop {
        let before = s.len();
        s = s.trim_start();
        if let Some(rest) = strip_bracket_tag(s) {
            s = rest;
        }
        if let Some(rest) = strip_prefix_word(s) {
            s = rest;
        }
        if s.len() == before {
            break;
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The byte offset of the first `needle` (ASCII) within [`PREFIX_SCAN_BYTES`].
/// An ASCII byte is always a char boundary, so slicing there is safe.
fn find_near_start(s: &str, needle: u8) -> Option<usize> {
    s.bytes().take(PREFIX_SCAN_BYTES).position(|b| b == needle)
}

fn strip_bracket_tag(s: &str) -> Option<&str> {
    let rest = s.strip_prefix('[')?;
    let end = find_near_start(rest, b']')?;
    // Only short markers such as "[#42]" or "[ext]": a long bracket is content.
    (end <= 16).then(|| &rest[end + 1..])
}

fn strip_prefix_word(s: &str) -> Option<&str> {
    let colon = find_near_start(s, b':')?;
    let head = s[..colon].trim_end();
    // "re[2]" / "re(2)" / "re*2" counters.
    let word = head.split(['[', '(', '*']).next().unwrap_or(head);
    PREFIXES.contains(&word).then(|| &s[colon + 1..])
}

/// The subject of our reply: `Re: <subject>`, without stacking prefixes.
pub fn reply_subject(subject: &str) -> String {
    let trimmed = subject.trim();
    if trimmed.is_empty() {
        return "Re: your message".to_owned();
    }
    let lower = trimmed.to_lowercase();
    if strip_prefix_word(&lower).is_some() {
        trimmed.to_owned()
    } else {
        format!("Re: {trimmed}")
    }
}

/// The References header of a reply to a message with `parent_id` and
/// `parent_references`: the parent's chain plus the parent, deduplicated, and
/// trimmed to the first id and the last 20 (RFC 5322 §3.6.4 allows trimming;
/// mail clients need the root and the recent ancestors).
pub fn reply_references(parent_references: &[MessageId], parent_id: &MessageId) -> Vec<MessageId> {
    let mut seen: HashSet<&MessageId> = HashSet::new();
    let mut chain: Vec<MessageId> = parent_references
        .iter()
        .chain(std::iter::once(parent_id))
        .filter(|id| seen.insert(id))
        .cloned()
        .collect();
    const KEEP_TAIL: usize = 20;
    if chain.len() > KEEP_TAIL + 1 {
        let tail = chain.split_off(chain.len() - KEEP_TAIL);
        chain.truncate(1);
        chain.extend(tail);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    /// Generous: the work below takes milliseconds when linear and hours
    /// when quadratic, so the bound only catches the latter.
    const LINEAR: Duration = Duration::from_secs(5);

    #[test]
    fn a_1_mb_subject_of_markers_is_keyed_in_linear_time() {
        for hostile in [
            "[a]".repeat(350_000),
            "re: ".repeat(260_000),
            format!("{}x", "[#1] Re: ".repeat(110_000)),
        ] {
            let started = Instant::now();
            let key = subject_key(&hostile);
            let reply = reply_subject(&hostile);
            assert!(started.elapsed() < LINEAR, "took {:?}", started.elapsed());
            assert!(key.len() <= 1, "{}", key.len());
            assert!(reply.len() >= hostile.trim().len());
        }
    }

    #[test]
    fn subject_window_at_extreme_times_neither_overflows_nor_matches() {
        let mut k = keys("bob@customer.example");
        k.at = i64::MIN;
        let mut c = cand(7, "bob@customer.example", &[]);
        c.subject_key = k.subject_key();
        c.last_customer_at = i64::MAX;
        let found = Candidates {
            by_subject: vec![c.clone()],
            ..Candidates::default()
        };
        assert_eq!(
            decide(&k, &found, 14 * 86_400),
            ThreadDecision::NewTicket { refused: vec![] }
        );
        assert_eq!(
            decide(&k, &found, i64::MAX),
            ThreadDecision::NewTicket { refused: vec![] }
        );
        k.at = i64::MAX - 5;
        assert_eq!(
            decide(&k, &found, 5),
            ThreadDecision::FollowUp {
                ticket: TicketId::new(7),
                by: MatchKind::Subject
            }
        );
    }

    #[test]
    fn a_25000_id_references_header_is_looked_up_newest_first_and_capped() {
        let refs: Vec<MessageId> = (0..25_000)
            .map(|i| mid(&format!("old-{i}@far.example")))
            .collect();
        let mut k = keys("bob@customer.example");
        k.in_reply_to = vec![mid("parent@x.example")];
        k.references = refs.clone();
        k.references.push(mid("parent@x.example"));
        let started = Instant::now();
        let ids = k.referenced_ids();
        let chain = reply_references(&refs, &mid("parent@x.example"));
        assert!(started.elapsed() < LINEAR, "took {:?}", started.elapsed());
        assert_eq!(ids.len(), MAX_REFERENCED_IDS);
        assert_eq!(ids[0], mid("parent@x.example"));
        assert_eq!(ids[1], mid("old-24999@far.example"));
        assert_eq!(chain.len(), 21);
        assert_eq!(chain[0], mid("old-0@far.example"));
        assert_eq!(chain.last(), Some(&mid("parent@x.example")));
    }

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }
    fn mid(s: &str) -> MessageId {
        MessageId::parse(s).unwrap()
    }
    fn keys(from: &str) -> ThreadKeys {
        ThreadKeys {
            from: addr(from),
            in_reply_to: vec![],
            references: vec![],
            tokens: vec![],
            subject: "Re: Invoice 42".into(),
            at: 1_000_000,
            returned: None,
        }
    }
    fn cand(id: i64, customer: &str, others: &[&str]) -> CandidateTicket {
        let mut participants: BTreeSet<EmailAddress> = others.iter().map(|s| addr(s)).collect();
        participants.insert(addr(customer));
        CandidateTicket {
            id: TicketId::new(id),
            participants,
            customer: addr(customer),
            subject_key: "invoice 42".into(),
            last_customer_at: 1_000_000 - 3600,
        }
    }

    #[test]
    fn a_bounce_of_our_mail_joins_its_ticket_though_the_daemon_is_no_participant() {
        let mut k = keys("mailer-daemon@mx.example");
        k.returned = Some(mid("out-1@example.com"));
        let found = Candidates {
            by_returned: Some(TicketId::new(4)),
            // The same daemon's other matches would be refused.
            by_reference: vec![cand(9, "c@x.com", &[])],
            ..Default::default()
        };
        assert_eq!(
            decide(&k, &found, 86_400),
            ThreadDecision::FollowUp {
                ticket: TicketId::new(4),
                by: MatchKind::Returned
            }
        );
        // Without a ticket for the returned mail, the usual rules apply.
        let found = Candidates {
            by_reference: vec![cand(9, "c@x.com", &[])],
            ..Default::default()
        };
        assert_eq!(
            decide(&k, &found, 86_400),
            ThreadDecision::NewTicket {
                refused: vec![TicketId::new(9)]
            }
        );
    }

    #[test]
    fn reference_match_from_a_participant_is_a_follow_up() {
        let found = Candidates {
            by_reference: vec![cand(1, "c@x.com", &[])],
            ..Default::default()
        };
        assert_eq!(
            decide(&keys("c@x.com"), &found, 86_400),
            ThreadDecision::FollowUp {
                ticket: TicketId::new(1),
                by: MatchKind::Reference
            }
        );
    }

    #[test]
    fn a_cc_participant_may_continue_the_thread() {
        let found = Candidates {
            by_reference: vec![cand(1, "c@x.com", &["colleague@x.com"])],
            ..Default::default()
        };
        assert!(matches!(
            decide(&keys("colleague@x.com"), &found, 86_400),
            ThreadDecision::FollowUp { .. }
        ));
    }

    #[test]
    fn a_different_customer_is_never_merged_whatever_matched() {
        let other = cand(1, "c@x.com", &[]);
        let found = Candidates {
            by_reference: vec![other.clone()],
            by_token: vec![other.clone()],
            by_subject: vec![other],
            by_returned: None,
        };
        assert_eq!(
            decide(&keys("stranger@y.com"), &found, 86_400),
            ThreadDecision::NewTicket {
                refused: vec![TicketId::new(1)]
            }
        );
    }

    #[test]
    fn token_match_is_used_when_headers_were_dropped() {
        let found = Candidates {
            by_token: vec![cand(7, "c@x.com", &[])],
            ..Default::default()
        };
        assert_eq!(
            decide(&keys("c@x.com"), &found, 86_400),
            ThreadDecision::FollowUp {
                ticket: TicketId::new(7),
                by: MatchKind::Token
            }
        );
    }

    #[test]
    fn subject_heuristic_needs_same_sender_and_the_window() {
        let found = Candidates {
            by_subject: vec![cand(3, "c@x.com", &[])],
            ..Default::default()
        };
        assert_eq!(
            decide(&keys("c@x.com"), &found, 86_400),
            ThreadDecision::FollowUp {
                ticket: TicketId::new(3),
                by: MatchKind::Subject
            }
        );
        // Outside the window: new ticket.
        assert_eq!(
            decide(&keys("c@x.com"), &found, 60),
            ThreadDecision::NewTicket { refused: vec![] }
        );
        // A colleague with the same subject does not join by subject alone.
        let mut colleague = keys("colleague@x.com");
        colleague.subject = "Invoice 42".into();
        let mut c = cand(3, "c@x.com", &["colleague@x.com"]);
        c.subject_key = "invoice 42".into();
        let found = Candidates {
            by_subject: vec![c],
            ..Default::default()
        };
        assert_eq!(
            decide(&colleague, &found, 86_400),
            ThreadDecision::NewTicket { refused: vec![] }
        );
    }

    #[test]
    fn an_empty_subject_never_matches_by_subject() {
        let mut k = keys("c@x.com");
        k.subject = "Re:  ".into();
        let mut c = cand(3, "c@x.com", &[]);
        c.subject_key = String::new();
        let found = Candidates {
            by_subject: vec![c],
            ..Default::default()
        };
        assert_eq!(
            decide(&k, &found, 86_400),
            ThreadDecision::NewTicket { refused: vec![] }
        );
    }

    #[test]
    fn referenced_ids_prefer_in_reply_to_then_newest_reference() {
        let mut k = keys("c@x.com");
        k.in_reply_to = vec![mid("c@h")];
        k.references = vec![mid("a@h"), mid("b@h"), mid("c@h")];
        assert_eq!(k.referenced_ids(), vec![mid("c@h"), mid("b@h"), mid("a@h")]);
    }

    #[test]
    fn subject_keys_fold_prefixes_markers_and_case() {
        for s in [
            "Invoice 42",
            "Re: Invoice 42",
            "RE: re: Invoice  42",
            "Fwd: AW: Invoice 42",
            "Re[2]: Invoice 42",
            "[#12] Re: invoice 42",
            "SV: Invoice 42 ",
        ] {
            assert_eq!(subject_key(s), "invoice 42", "{s:?}");
        }
        assert_eq!(subject_key("Regarding: x"), "regarding: x");
        assert_eq!(subject_key(""), "");
    }

    #[test]
    fn reply_subject_does_not_stack_prefixes() {
        assert_eq!(reply_subject("Help"), "Re: Help");
        assert_eq!(reply_subject("Re: Help"), "Re: Help");
        assert_eq!(reply_subject("AW: Hilfe"), "AW: Hilfe");
        assert_eq!(reply_subject(""), "Re: your message");
    }

    #[test]
    fn reply_references_chain_parent_and_trim() {
        let parent = mid("p@h");
        assert_eq!(
            reply_references(&[mid("a@h")], &parent),
            vec![mid("a@h"), parent.clone()]
        );
        assert_eq!(
            reply_references(std::slice::from_ref(&parent), &parent),
            vec![parent.clone()]
        );
        let long: Vec<MessageId> = (0..40).map(|i| mid(&format!("{i}@h"))).collect();
        let chain = reply_references(&long, &parent);
        assert_eq!(chain.len(), 21);
        assert_eq!(chain[0], mid("0@h"));
        assert_eq!(chain.last(), Some(&parent));
    }

    proptest! {
        #[test]
        fn subject_key_is_idempotent(s in "\\PC{0,60}") {
            let k = subject_key(&s);
            prop_assert_eq!(subject_key(&k), k);
        }

        #[test]
        fn never_follows_up_for_a_non_participant(n in 0usize..4, m in 0usize..4, k in 0usize..4) {
            let mk = |i: usize| cand(i as i64 + 1, "owner@x.com", &["cc@x.com"]);
            let found = Candidates {
                by_reference: (0..n).map(mk).collect(),
                by_token: (0..m).map(mk).collect(),
                by_subject: (0..k).map(mk).collect(),
                by_returned: None,
            };
            let d = decide(&keys("outsider@y.com"), &found, i64::MAX / 2);
            prop_assert!(matches!(d, ThreadDecision::NewTicket { .. }), "non-participant merged");
        }
    }
}
