//! Authentication-Results (RFC 8601) and ARC-Authentication-Results
//! (RFC 8617): what the receiving server found about SPF, DKIM and DMARC,
//! reduced to what a teammate needs before answering.
//!
//! # Whose word is taken
//!
//! Anybody can write an `Authentication-Results` header into a mail; only
//! the one the receiving server added is worth anything. Servers prepend
//! theirs, so it is the **topmost** one, and it is believed only when its
//! authserv-id is one the operator trusts ([`Trusted`]). A forged header a
//! spammer put in lies below it and is never read. Microsoft 365 writes its
//! header without an authserv-id (against RFC 8601 §2.2), so trusting an
//! unnamed header is a separate switch.
//!
//! Forwarded mail (a Google group, a mailing list, a forwarding address)
//! often fails DMARC at the receiver because the forwarder changed it. When
//! the receiver's own header says it verified the ARC chain (`arc=pass`),
//! the results the last forwarder recorded before it changed the mail
//! (its `ARC-Authentication-Results`) are shown too and decide the warning.
//!
//! Parsing is hand-written and lenient rather than a crate: the one crate
//! that parses these headers (`mail-auth`) is a whole SPF/DKIM/DMARC
//! verifier with a DNS resolver; mailroom verifies nothing itself and only
//! reads three results from one or two header values.

use std::fmt;

/// A method's result (RFC 8601 §2.7), lowercase on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
    Policy,
    /// Anything else a server wrote (`hardfail`, `bestguesspass`, …).
    Other,
}

impl Outcome {
    pub fn parse(s: &str) -> Outcome {
        match s.to_ascii_lowercase().as_str() {
            "pass" => Outcome::Pass,
            "fail" | "hardfail" => Outcome::Fail,
            "softfail" => Outcome::SoftFail,
            "neutral" => Outcome::Neutral,
            "none" => Outcome::None,
            "temperror" => Outcome::TempError,
            "permerror" => Outcome::PermError,
            "policy" => Outcome::Policy,
            _ => Outcome::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::SoftFail => "softfail",
            Outcome::Neutral => "neutral",
            Outcome::None => "none",
            Outcome::TempError => "temperror",
            Outcome::PermError => "permerror",
            Outcome::Policy => "policy",
            Outcome::Other => "other",
        }
    }

    /// Which of several results of one method (one per DKIM signature) tells
    /// most: a pass, then a failure, then the rest.
    fn rank(self) -> u8 {
        match self {
            Outcome::Pass => 0,
            Outcome::Fail => 1,
            Outcome::SoftFail => 2,
            Outcome::PermError => 3,
            Outcome::TempError => 4,
            Outcome::Policy => 5,
            Outcome::Neutral => 6,
            Outcome::Other => 7,
            Outcome::None => 8,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `method=result` with its properties (`header.from=example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// Lowercase, without a version (`dkim`, `spf`, `dmarc`, `arc`, …).
    pub method: String,
    pub outcome: Outcome,
    /// `(ptype.property, value)` pairs, names lowercase, in order.
    pub props: Vec<(String, String)>,
}

impl MethodResult {
    pub fn prop(&self, name: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One parsed header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResults {
    /// Lowercase; `None` when the header starts with a result (Microsoft 365).
    pub authserv_id: Option<String>,
    pub results: Vec<MethodResult>,
}

impl AuthResults {
    /// The most telling result of `method`, if the header has one.
    pub fn outcome(&self, method: &str) -> Option<&MethodResult> {
        self.results
            .iter()
            .filter(|r| r.method == method)
            .min_by_key(|r| r.outcome.rank())
    }
}

/// Removes RFC 5322 comments (nested parentheses, quoted pairs), leaving
/// quoted strings alone; a comment becomes one space.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if depth > 0 || quoted => {
                let next = chars.next();
                if depth == 0
                    && let Some(n) = next
                {
                    out.push(c);
                    out.push(n);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => {
                depth += 1;
                if depth == 1 {
                    out.push(' ');
                }
            }
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

/// Splits on `sep` outside quoted strings.
fn split_outside_quotes(s: &str, sep: impl Fn(char) -> bool) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' && quoted {
            current.push(c);
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
            current.push(c);
        } else if !quoted && sep(c) {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_owned(),
    }
}

/// `key=value` tokens of one result, blanks around `=` allowed.
fn tokens(segment: &str) -> Vec<String> {
    let words: Vec<String> = split_outside_quotes(segment, char::is_whitespace)
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect();
    // Glue "a = b", "a= b" and "a =b" back into "a=b".
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let mut token = w.clone();
        i += 1;
        while token.ends_with('=')
            || words.get(i).is_some_and(|n| n.starts_with('=')) && !token.contains('=')
        {
            let Some(next) = words.get(i) else { break };
            token.push_str(next);
            i += 1;
        }
        out.push(token);
    }
    out
}

fn parse_result(segment: &str) -> Option<MethodResult> {
    let mut toks = tokens(segment).into_iter();
    let first = toks.next()?;
    let (method, result) = first.split_once('=')?;
    let method = method
        .split('/')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if method.is_empty() {
        return None;
    }
    let mut props = Vec::new();
    for t in toks {
        if let Some((name, value)) = t.split_once('=') {
            props.push((name.trim().to_ascii_lowercase(), unquote(value.trim())));
        }
    }
    Some(MethodResult {
        method,
        outcome: Outcome::parse(result.trim()),
        props,
    })
}

/// Parses one `Authentication-Results` value. Never fails: what cannot be
/// read is skipped, so a header in a dialect we do not know yields fewer
/// results, never an error that would hold up the mail.
pub fn parse(value: &str) -> AuthResults {
    let cleaned = strip_comments(value);
    let mut segments = split_outside_quotes(&cleaned, |c| c == ';').into_iter();
    let first = segments.next().unwrap_or_default();
    let mut results = Vec::new();
    let authserv_id = if first.contains('=') {
        // No authserv-id: the header starts with a result (Microsoft 365).
        results.extend(parse_result(&first));
        None
    } else {
        // `authserv-id [version]`; the version is of no interest.
        first
            .split_whitespace()
            .next()
            .map(|id| id.to_ascii_lowercase())
    };
    for s in segments {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            continue;
        }
        results.extend(parse_result(s));
    }
    AuthResults {
        authserv_id,
        results,
    }
}

/// Parses one `ARC-Authentication-Results` value: `i=N;` then an
/// Authentication-Results payload.
pub fn parse_arc(value: &str) -> Option<(u32, AuthResults)> {
    let cleaned = strip_comments(value);
    let (instance, rest) = cleaned.trim().split_once(';')?;
    let (key, n) = instance.split_once('=')?;
    if !key.trim().eq_ignore_ascii_case("i") {
        return None;
    }
    let n: u32 = n.trim().parse().ok()?;
    Some((n, parse(rest)))
}

/// Whose Authentication-Results are believed (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted {
    /// Lowercase authserv-ids, e.g. `mx.google.com`.
    pub ids: Vec<String>,
    /// Believe a topmost header without an authserv-id (Microsoft 365).
    pub unnamed: bool,
}

impl Trusted {
    pub fn new(ids: impl IntoIterator<Item = String>, unnamed: bool) -> Trusted {
        Trusted {
            ids: ids.into_iter().map(|i| i.to_ascii_lowercase()).collect(),
            unnamed,
        }
    }

    fn believes(&self, id: Option<&str>) -> bool {
        match id {
            Some(id) => self.ids.iter().any(|t| t == id),
            None => self.unnamed,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && !self.unnamed
    }
}

/// SPF, DKIM and DMARC as one server saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdicts {
    /// Lowercase authserv-id, `None` for an unnamed header.
    pub authserv_id: Option<String>,
    pub spf: Option<Outcome>,
    pub dkim: Option<Outcome>,
    pub dmarc: Option<Outcome>,
    /// The domain DMARC was evaluated for (`header.from`), lowercase.
    pub dmarc_domain: Option<String>,
}

impl Verdicts {
    fn of(results: &AuthResults) -> Verdicts {
        let dmarc = results.outcome("dmarc");
        Verdicts {
            authserv_id: results.authserv_id.clone(),
            spf: results.outcome("spf").map(|r| r.outcome),
            dkim: results.outcome("dkim").map(|r| r.outcome),
            dmarc: dmarc.map(|r| r.outcome),
            dmarc_domain: dmarc
                .and_then(|r| r.prop("header.from"))
                .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase()),
        }
    }

    fn is_empty(&self) -> bool {
        self.spf.is_none() && self.dkim.is_none() && self.dmarc.is_none()
    }

    /// `SPF pass · DKIM pass · DMARC fail`, methods without a result left out.
    pub fn line(&self) -> String {
        [
            ("SPF", self.spf),
            ("DKIM", self.dkim),
            ("DMARC", self.dmarc),
        ]
        .iter()
        .filter_map(|(name, o)| o.map(|o| format!("{name} {o}")))
        .collect::<Vec<_>>()
        .join(" · ")
    }

    fn by(&self) -> String {
        match &self.authserv_id {
            Some(id) => id.clone(),
            None => "the receiving server".to_owned(),
        }
    }
}

/// What the card shows about a mail's authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSummary {
    /// The receiving server's own results.
    pub receiver: Verdicts,
    /// For forwarded mail whose ARC chain the receiver verified: what the
    /// last forwarder saw before it changed the mail, and its ARC instance.
    pub forwarded: Option<(u32, Verdicts)>,
    /// The From header's domain, lowercase.
    pub from_domain: String,
}

/// The card's warning when the From domain fails DMARC.
pub const SPOOF_WARNING: &str = "⚠ possible spoof — check before replying";

impl AuthSummary {
    /// Reads the receiver's results: `authentication_results` are the
    /// header values top first, `arc_results` every ARC-Authentication-Results
    /// value. `None` when the topmost header is missing, untrusted, or says
    /// nothing about SPF, DKIM or DMARC.
    pub fn evaluate(
        authentication_results: &[String],
        arc_results: &[String],
        trusted: &Trusted,
        from_domain: &str,
    ) -> Option<AuthSummary> {
        let top = parse(authentication_results.first()?);
        if !trusted.believes(top.authserv_id.as_deref()) {
            return None;
        }
        let receiver = Verdicts::of(&top);
        let arc_verified = top
            .outcome("arc")
            .is_some_and(|r| r.outcome == Outcome::Pass);
        let forwarded = if arc_verified {
            // The newest instance, unless that is the receiver's own seal
            // (Gmail seals what it receives): then the one before it.
            let mut sets: Vec<(u32, AuthResults)> =
                arc_results.iter().filter_map(|v| parse_arc(v)).collect();
            sets.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
            let skip = usize::from(
                sets.first()
                    .is_some_and(|(_, r)| r.authserv_id == top.authserv_id),
            );
            sets.into_iter()
                .nth(skip)
                .map(|(i, r)| (i, Verdicts::of(&r)))
                .filter(|(_, v)| !v.is_empty())
        } else {
            None
        };
        if receiver.is_empty() && forwarded.is_none() {
            return None;
        }
        Some(AuthSummary {
            receiver,
            forwarded,
            from_domain: from_domain.to_ascii_lowercase(),
        })
    }

    /// Whether the From domain failed DMARC: at the receiver, and (for
    /// forwarded mail) also before forwarding. A DMARC result for another
    /// domain than the From's says nothing about the From.
    pub fn dmarc_failed(&self) -> bool {
        let failed = |v: &Verdicts| {
            v.dmarc == Some(Outcome::Fail)
                && v.dmarc_domain
                    .as_deref()
                    .is_none_or(|d| d == self.from_domain)
        };
        let passed_before = self.forwarded.as_ref().is_some_and(|(_, v)| {
            v.dmarc == Some(Outcome::Pass)
                && v.dmarc_domain
                    .as_deref()
                    .is_none_or(|d| d == self.from_domain)
        });
        let failed_before = self.forwarded.as_ref().is_some_and(|(_, v)| failed(v));
        (failed(&self.receiver) && !passed_before) || failed_before
    }

    /// The card's lines: the results (and the forwarder's), then the
    /// warning when DMARC failed.
    pub fn card_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.receiver.is_empty() {
            lines.push(format!(
                "🔐 {} (checked by {})",
                self.receiver.line(),
                self.receiver.by()
            ));
        }
        if let Some((i, v)) = &self.forwarded {
            lines.push(format!(
                "↪ before forwarding: {} (ARC i={i}, by {})",
                v.line(),
                v.by()
            ));
        }
        if self.dmarc_failed() {
            lines.push(format!("{SPOOF_WARNING}: {} fails DMARC", self.from_domain));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Gmail writes it (folded lines joined by the header reader).
    const GMAIL: &str = "mx.google.com; dkim=pass header.i=@customer.example header.s=s1 header.b=AbCdEf12; spf=pass (google.com: domain of carol@customer.example designates 203.0.113.7 as permitted sender) smtp.mailfrom=carol@customer.example; dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=customer.example";
    /// As Microsoft 365 (Exchange Online Protection) writes it: no authserv-id.
    const MICROSOFT: &str = "spf=pass (sender IP is 203.0.113.7) smtp.mailfrom=customer.example; dkim=pass (signature was verified) header.d=customer.example;dmarc=pass action=none header.from=customer.example;compauth=pass reason=100";

    fn gmail_trust() -> Trusted {
        Trusted::new(["mx.google.com".to_owned()], false)
    }

    #[test]
    fn gmail_header_is_read() {
        let r = parse(GMAIL);
        assert_eq!(r.authserv_id.as_deref(), Some("mx.google.com"));
        let methods: Vec<_> = r.results.iter().map(|m| m.method.as_str()).collect();
        assert_eq!(methods, ["dkim", "spf", "dmarc"]);
        let dkim = r.outcome("dkim").unwrap();
        assert_eq!(dkim.outcome, Outcome::Pass);
        assert_eq!(dkim.prop("header.i"), Some("@customer.example"));
        assert_eq!(dkim.prop("header.s"), Some("s1"));
        assert_eq!(
            r.outcome("dmarc").unwrap().prop("header.from"),
            Some("customer.example")
        );
        // The comment's text is not a property.
        assert_eq!(
            r.outcome("spf").unwrap().props,
            vec![("smtp.mailfrom".into(), "carol@customer.example".into())]
        );
    }

    #[test]
    fn microsoft_header_without_authserv_id_is_read() {
        let r = parse(MICROSOFT);
        assert_eq!(r.authserv_id, None);
        let methods: Vec<_> = r.results.iter().map(|m| m.method.as_str()).collect();
        assert_eq!(methods, ["spf", "dkim", "dmarc", "compauth"]);
        assert_eq!(r.outcome("dmarc").unwrap().prop("action"), Some("none"));
        assert_eq!(r.outcome("compauth").unwrap().prop("reason"), Some("100"));
    }

    #[test]
    fn odd_but_legal_syntax() {
        // RFC 8601 appendix B examples: version, "none", blanks around '=',
        // nested comments, quoted values, method versions.
        let r = parse("example.org 1; none");
        assert_eq!(r.authserv_id.as_deref(), Some("example.org"));
        assert!(r.results.is_empty());
        let r = parse(
            "example.com; dkim/1 = fail (bad (nested) sig) reason=\"bad; sig\" header.d = example.net",
        );
        let d = r.outcome("dkim").unwrap();
        assert_eq!(d.outcome, Outcome::Fail);
        assert_eq!(d.prop("reason"), Some("bad; sig"));
        assert_eq!(d.prop("header.d"), Some("example.net"));
        // Garbage costs results, never a panic or an error.
        let r = parse(";;; =; dkim=; (unclosed");
        assert!(r.results.iter().all(|m| !m.method.is_empty()));
        assert_eq!(parse("").results, vec![]);
    }

    #[test]
    fn several_dkim_signatures_show_the_best() {
        let r = parse("mx.example; dkim=fail header.d=a.example; dkim=pass header.d=b.example");
        assert_eq!(r.outcome("dkim").unwrap().outcome, Outcome::Pass);
    }

    #[test]
    fn only_the_topmost_trusted_header_counts() {
        let forged = "mx.google.com; dmarc=pass header.from=customer.example".to_owned();
        let real = "mx.google.com; dmarc=fail (p=REJECT) header.from=customer.example".to_owned();
        // The receiver's header is on top; the forged one below is ignored.
        let s = AuthSummary::evaluate(
            &[real.clone(), forged.clone()],
            &[],
            &gmail_trust(),
            "Customer.Example",
        )
        .unwrap();
        assert_eq!(s.receiver.dmarc, Some(Outcome::Fail));
        assert!(s.dmarc_failed());
        // A topmost header from a server we do not trust: nothing is shown.
        let other = "evil.example; dmarc=pass header.from=customer.example".to_owned();
        assert_eq!(
            AuthSummary::evaluate(&[other, real], &[], &gmail_trust(), "customer.example"),
            None
        );
        // An unnamed header only with the switch on.
        let ms = vec![MICROSOFT.to_owned()];
        assert_eq!(
            AuthSummary::evaluate(&ms, &[], &gmail_trust(), "customer.example"),
            None
        );
        let s =
            AuthSummary::evaluate(&ms, &[], &Trusted::new([], true), "customer.example").unwrap();
        assert_eq!(s.receiver.line(), "SPF pass · DKIM pass · DMARC pass");
        assert!(!s.dmarc_failed());
        assert_eq!(
            s.card_lines(),
            ["🔐 SPF pass · DKIM pass · DMARC pass (checked by the receiving server)"]
        );
        // No header at all, or trust in nobody.
        assert_eq!(
            AuthSummary::evaluate(&[], &[], &gmail_trust(), "x.example"),
            None
        );
        assert_eq!(
            AuthSummary::evaluate(&ms, &[], &Trusted::default(), "x.example"),
            None
        );
    }

    #[test]
    fn dmarc_failure_of_the_from_domain_warns() {
        let h = vec![
            "mx.google.com; dkim=none; spf=softfail (google.com: domain of transitioning x@bank.example does not designate 198.51.100.9 as permitted sender) smtp.mailfrom=x@bank.example; dmarc=fail (p=REJECT sp=REJECT dis=QUARANTINE) header.from=bank.example".to_owned(),
        ];
        let s = AuthSummary::evaluate(&h, &[], &gmail_trust(), "bank.example").unwrap();
        assert_eq!(
            s.card_lines(),
            [
                "🔐 SPF softfail · DKIM none · DMARC fail (checked by mx.google.com)",
                "⚠ possible spoof — check before replying: bank.example fails DMARC",
            ]
        );
        // A DMARC verdict about another domain says nothing about the From.
        let s = AuthSummary::evaluate(&h, &[], &gmail_trust(), "other.example").unwrap();
        assert!(!s.dmarc_failed());
    }

    #[test]
    fn forwarded_mail_uses_the_verified_arc_results() {
        // A Google group forwarded the mail: DMARC fails at the receiver, but
        // the receiver verified the ARC chain and the group saw a pass.
        let top = vec!["mx.google.com; dkim=pass header.i=@googlegroups.com; arc=pass (i=1 spf=pass spfdomain=customer.example dkim=pass dkdomain=customer.example dmarc=pass fromdomain=customer.example); spf=pass smtp.mailfrom=group+bncBA@googlegroups.com; dmarc=fail (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from=customer.example".to_owned()];
        let arc = vec![
            "i=2; mx.google.com; dkim=pass header.i=@googlegroups.com; arc=pass".to_owned(),
            "i=1; mx.google.com; dkim=pass header.i=@customer.example header.s=s1; spf=pass smtp.mailfrom=carol@customer.example; dmarc=pass (p=QUARANTINE) header.from=customer.example".to_owned(),
        ];
        let s = AuthSummary::evaluate(&top, &arc, &gmail_trust(), "customer.example").unwrap();
        // i=2 is the receiver's own seal; i=1 is what Google saw when the
        // group received the mail.
        assert_eq!(s.forwarded.as_ref().map(|(i, _)| *i), Some(1));
        assert!(!s.dmarc_failed());

        let arc = vec![
            "i=2; mx.google.com; dkim=pass header.i=@lists.example.org; arc=pass".to_owned(),
            "i=1; lists.example.org; dkim=pass header.i=@customer.example; spf=pass smtp.mailfrom=carol@customer.example; dmarc=pass header.from=customer.example".to_owned(),
        ];
        let s = AuthSummary::evaluate(&top, &arc, &gmail_trust(), "customer.example").unwrap();
        let (i, before) = s.forwarded.clone().unwrap();
        assert_eq!(i, 1);
        assert_eq!(before.dmarc, Some(Outcome::Pass));
        assert!(!s.dmarc_failed());
        assert_eq!(
            s.card_lines()[1],
            "↪ before forwarding: SPF pass · DKIM pass · DMARC pass (ARC i=1, by lists.example.org)"
        );
        // Without arc=pass at the receiver the ARC headers are not read.
        let unverified =
            vec!["mx.google.com; arc=fail; dmarc=fail header.from=customer.example".to_owned()];
        let s =
            AuthSummary::evaluate(&unverified, &arc, &gmail_trust(), "customer.example").unwrap();
        assert!(s.forwarded.is_none());
        assert!(s.dmarc_failed());
    }

    #[test]
    fn arc_values_need_an_instance() {
        assert_eq!(parse_arc("mx.example; dkim=pass"), None);
        let (i, r) = parse_arc("i=3; mx.example; dkim=pass").unwrap();
        assert_eq!(i, 3);
        assert_eq!(r.authserv_id.as_deref(), Some("mx.example"));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in "(?s).{0,300}") {
            let _ = parse(&s);
            let _ = parse_arc(&s);
        }
    }
}
