//! SASL for OAuth2 bearer tokens, the wire side only: which mechanism to use,
//! the client's initial response, and what a failure challenge says.
//!
//! - XOAUTH2 (Google, Microsoft): `user=U ^A auth=Bearer T ^A ^A`.
//! - OAUTHBEARER (RFC 7628 §3.1): a GS2 header naming the authorization
//!   identity, then `host`, `port` and `auth` key-value pairs, each ended by
//!   `^A`, and a final `^A`.
//!
//! When a server refuses the token it does not answer NO at once: it sends a
//! challenge carrying a JSON error (`{"status", "schemes", "scope"}`), and
//! the client must answer it with a dummy response ([`Mechanism::dummy_response`])
//! before the server sends its final failure (RFC 7628 §3.2.3; XOAUTH2 does
//! the same with an empty response).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::mail::auth::SaslPreference;

/// A SASL mechanism carrying a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Xoauth2,
    Oauthbearer,
}

impl Mechanism {
    /// The name in `AUTH=` capabilities and AUTHENTICATE/AUTH commands.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Xoauth2 => "XOAUTH2",
            Mechanism::Oauthbearer => "OAUTHBEARER",
        }
    }

    /// The client's first message (before base64).
    pub fn initial_response(self, user: &str, token: &str, host: &str, port: u16) -> Vec<u8> {
        match self {
            Mechanism::Xoauth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01"),
            Mechanism::Oauthbearer => format!(
                "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01",
                gs2_escape(user)
            ),
        }
        .into_bytes()
    }

    /// [`Mechanism::initial_response`] in base64, as IMAP SASL-IR and SMTP
    /// `AUTH <mech> <ir>` carry it.
    pub fn initial_response_base64(self, user: &str, token: &str, host: &str, port: u16) -> String {
        STANDARD.encode(self.initial_response(user, token, host, port))
    }

    /// What the client answers to a failure challenge (before base64): a
    /// single `^A` for OAUTHBEARER (RFC 7628 §3.2.3), nothing for XOAUTH2.
    pub fn dummy_response(self) -> &'static [u8] {
        match self {
            Mechanism::Xoauth2 => b"",
            Mechanism::Oauthbearer => b"\x01",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The server offers no mechanism the preference allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the server offers {wanted} for an OAuth2 login (its SASL mechanisms: [{}]); \
     set mailbox.oauth2.mechanism to one it offers (\"auto\", \"xoauth2\" or \"oauthbearer\") \
     or log this mailbox in with a password",
    .offered.join(" ")
)]
pub struct NotOffered {
    /// What was looked for, for the message ("neither XOAUTH2 nor OAUTHBEARER").
    pub wanted: String,
    /// The mechanisms the server announced.
    pub offered: Vec<String>,
}

/// Picks the mechanism: a forced one only if offered; `Auto` takes
/// OAUTHBEARER when offered, else XOAUTH2. `offered` are mechanism names
/// (case-insensitive), as announced after any STARTTLS.
pub fn choose(preference: SaslPreference, offered: &[String]) -> Result<Mechanism, NotOffered> {
    let has = |m: Mechanism| offered.iter().any(|o| o.eq_ignore_ascii_case(m.name()));
    let (candidates, wanted): (&[Mechanism], &str) = match preference {
        SaslPreference::Auto => (
            &[Mechanism::Oauthbearer, Mechanism::Xoauth2],
            "neither OAUTHBEARER nor XOAUTH2",
        ),
        SaslPreference::Xoauth2 => (&[Mechanism::Xoauth2], "no XOAUTH2"),
        SaslPreference::Oauthbearer => (&[Mechanism::Oauthbearer], "no OAUTHBEARER"),
    };
    candidates
        .iter()
        .copied()
        .find(|m| has(*m))
        .ok_or_else(|| NotOffered {
            wanted: wanted.to_owned(),
            offered: offered.to_vec(),
        })
}

/// Escapes an authorization identity for the GS2 header (RFC 5801 §4):
/// `,` → `=2C`, `=` → `=3D`.
fn gs2_escape(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for c in user.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    out
}

/// A readable reason from a failure challenge (already base64-decoded):
/// the JSON `status` (e.g. `invalid_token`), with `scope` when the server
/// names one. Anything else is shown as text, bounded.
pub fn failure_reason(challenge: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Failure {
        status: Option<String>,
        scope: Option<String>,
    }
    if let Ok(f) = serde_json::from_slice::<Failure>(challenge)
        && let Some(status) = f.status
    {
        return match f.scope {
            Some(scope) if !scope.is_empty() => format!("status {status}, scope needed: {scope}"),
            _ => format!("status {status}"),
        };
    }
    let text = String::from_utf8_lossy(challenge);
    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    if text.trim().is_empty() {
        "token refused".to_owned()
    } else {
        text
    }
}

/// [`failure_reason`] from the base64 text of a challenge line.
pub fn failure_reason_base64(challenge: &str) -> String {
    match STANDARD.decode(challenge.trim()) {
        Ok(bytes) => failure_reason(&bytes),
        Err(_) => failure_reason(challenge.as_bytes()),
    }
}

/// The SASL mechanisms in IMAP capabilities (`AUTH=X`) or an SMTP EHLO
/// `AUTH X Y` line's words.
pub fn mechanisms_from_imap_caps<'a>(caps: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    caps.into_iter()
        .filter_map(|c| {
            c.get(..5)
                .filter(|p| p.eq_ignore_ascii_case("AUTH="))
                .map(|_| c[5..].to_ascii_uppercase())
        })
        .collect()
}

/// The mechanisms of an SMTP EHLO reply's `AUTH` line (also the old
/// `AUTH=` form some servers add).
pub fn mechanisms_from_ehlo<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in lines {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        let rest: Vec<&str> = if first.eq_ignore_ascii_case("AUTH") {
            words.collect()
        } else if first.len() > 5 && first[..5].eq_ignore_ascii_case("AUTH=") {
            std::iter::once(&first[5..]).chain(words).collect()
        } else {
            continue;
        };
        for m in rest {
            let m = m.to_ascii_uppercase();
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn xoauth2_initial_response_is_googles_format() {
        let r = Mechanism::Xoauth2.initial_response("someuser@example.com", "ya29.vF9dft4", "h", 1);
        assert_eq!(
            r,
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4\x01\x01"
        );
        assert_eq!(
            Mechanism::Xoauth2.initial_response_base64(
                "someuser@example.com",
                "ya29.vF9dft4",
                "h",
                1
            ),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDQBAQ=="
        );
    }

    #[test]
    fn oauthbearer_initial_response_follows_rfc7628() {
        // RFC 7628 §4.1's example, with the authzid the RFC leaves out.
        let r = Mechanism::Oauthbearer.initial_response(
            "user@example.com",
            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
            "server.example.com",
            143,
        );
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01\
             auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
    }

    #[test]
    fn the_gs2_authzid_escapes_comma_and_equals() {
        let r = Mechanism::Oauthbearer.initial_response("a,b=c@x", "t", "h", 1);
        assert!(
            String::from_utf8(r)
                .unwrap()
                .starts_with("n,a=a=2Cb=3Dc@x,\x01")
        );
    }

    #[test]
    fn dummy_responses_follow_each_mechanism() {
        assert_eq!(
            STANDARD.encode(Mechanism::Oauthbearer.dummy_response()),
            "AQ=="
        );
        assert_eq!(STANDARD.encode(Mechanism::Xoauth2.dummy_response()), "");
    }

    #[test]
    fn auto_prefers_oauthbearer_and_falls_back_to_xoauth2() {
        let both = strings(&["PLAIN", "XOAUTH2", "OAUTHBEARER"]);
        assert_eq!(
            choose(SaslPreference::Auto, &both),
            Ok(Mechanism::Oauthbearer)
        );
        let x = strings(&["PLAIN", "xoauth2"]);
        assert_eq!(choose(SaslPreference::Auto, &x), Ok(Mechanism::Xoauth2));
        assert_eq!(
            choose(SaslPreference::Xoauth2, &both),
            Ok(Mechanism::Xoauth2)
        );
        assert_eq!(
            choose(SaslPreference::Oauthbearer, &both),
            Ok(Mechanism::Oauthbearer)
        );
    }

    #[test]
    fn a_missing_mechanism_names_what_is_offered_and_the_key() {
        let plain = strings(&["PLAIN", "LOGIN"]);
        let e = choose(SaslPreference::Oauthbearer, &strings(&["PLAIN", "XOAUTH2"])).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("no OAUTHBEARER"), "{msg}");
        assert!(msg.contains("[PLAIN XOAUTH2]"), "{msg}");
        assert!(msg.contains("mailbox.oauth2.mechanism"), "{msg}");
        let msg = choose(SaslPreference::Auto, &plain)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("neither OAUTHBEARER nor XOAUTH2"), "{msg}");
        assert!(msg.contains("[PLAIN LOGIN]"), "{msg}");
    }

    #[test]
    fn failure_challenges_become_reasons() {
        let json =
            br#"{"status":"invalid_token","schemes":"bearer","scope":"https://mail.google.com/"}"#;
        assert_eq!(
            failure_reason(json),
            "status invalid_token, scope needed: https://mail.google.com/"
        );
        assert_eq!(
            failure_reason(br#"{"status":"401","schemes":"bearer"}"#),
            "status 401"
        );
        assert_eq!(
            failure_reason_base64(&STANDARD.encode(br#"{"status":"invalid_token"}"#)),
            "status invalid_token"
        );
        assert_eq!(failure_reason(b""), "token refused");
        assert_eq!(failure_reason(b"no\x01way"), "noway");
    }

    #[test]
    fn mechanisms_are_read_from_capabilities_and_ehlo() {
        assert_eq!(
            mechanisms_from_imap_caps(["IMAP4rev1", "SASL-IR", "AUTH=PLAIN", "auth=xoauth2"]),
            strings(&["PLAIN", "XOAUTH2"])
        );
        assert_eq!(
            mechanisms_from_ehlo([
                "mail.example.com",
                "PIPELINING",
                "AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER",
                "AUTH=PLAIN LOGIN",
            ]),
            strings(&["PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"])
        );
    }
}
