//! Identifier newtypes. Each one parses once, at the edge, so that a value of
//! the type is known to be well formed everywhere downstream.

use std::fmt;

/// Why a value could not become one of the identifier types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason} (got {value:?})")]
pub struct InvalidId {
    pub what: &'static str,
    pub reason: &'static str,
    pub value: String,
}

fn invalid(what: &'static str, reason: &'static str, value: &str) -> InvalidId {
    let mut value = value.to_owned();
    if value.len() > 80 {
        let mut cut = 80;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
        value.push('…');
    }
    InvalidId {
        what,
        reason,
        value,
    }
}

/// A ticket's number in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketId(i64);

impl TicketId {
    pub fn new(n: i64) -> Self {
        TicketId(n)
    }
    pub fn get(self) -> i64 {
        self.0
    }
    /// Accepts `42` and `#42`.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let digits = s.trim().trim_start_matches('#');
        match digits.parse::<i64>() {
            Ok(n) if n > 0 => Ok(TicketId(n)),
            _ => Err(invalid("ticket id", "expected a positive number", s)),
        }
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The configured name of a shared mailbox (`support`, `sales`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MailboxName(String);

impl MailboxName {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        if s.is_empty() || s.len() > 64 {
            return Err(invalid("mailbox name", "expected 1-64 characters", s));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(invalid(
                "mailbox name",
                "use lowercase letters, digits, '-' and '_'",
                s,
            ));
        }
        Ok(MailboxName(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True for characters that must never reach a mail header: they would let a
/// value end its header line and start another (header injection).
pub fn is_header_breaking(c: char) -> bool {
    c == '\r' || c == '\n' || c == '\0' || (c.is_control() && c != '\t')
}

/// An RFC 5322 Message-ID, stored without the angle brackets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// Accepts `<id@host>` or `id@host`; surrounding blanks are ignored.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let t = s.trim();
        let t = t.strip_prefix('<').unwrap_or(t);
        let t = t.strip_suffix('>').unwrap_or(t).trim();
        if t.is_empty() {
            return Err(invalid("Message-ID", "empty", s));
        }
        if t.len() > 998 {
            return Err(invalid("Message-ID", "longer than a header line may be", s));
        }
        if t.chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>' || is_header_breaking(c))
        {
            return Err(invalid(
                "Message-ID",
                "contains blanks, brackets or control characters",
                s,
            ));
        }
        Ok(MessageId(t.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The form used in headers: `<id@host>`.
    pub fn bracketed(&self) -> String {
        format!("<{}>", self.0)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}>", self.0)
    }
}

/// A plain `local@domain` address, lowercased so that comparisons are exact.
///
/// Lowercasing the local part is technically lossy (RFC 5321 lets servers treat
/// it as case-sensitive) but no real mail system does, and matching a customer
/// across `Bob@x` and `bob@x` matters more for threading.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let t = s.trim();
        let t = t.strip_prefix('<').unwrap_or(t);
        let t = t.strip_suffix('>').unwrap_or(t);
        if t.len() > 254 {
            return Err(invalid("email address", "longer than 254 characters", s));
        }
        if t.chars()
            .any(|c| c.is_whitespace() || is_header_breaking(c) || "<>,;:\"()[]\\".contains(c))
        {
            return Err(invalid(
                "email address",
                "contains blanks, control characters or punctuation not allowed here",
                s,
            ));
        }
        let Some((local, domain)) = t.rsplit_once('@') else {
            return Err(invalid("email address", "expected local@domain", s));
        };
        if local.is_empty() || domain.is_empty() || local.contains('@') {
            return Err(invalid("email address", "expected local@domain", s));
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err(invalid("email address", "malformed domain", s));
        }
        Ok(EmailAddress(t.to_lowercase()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn local(&self) -> &str {
        self.0.rsplit_once('@').map(|(l, _)| l).unwrap_or(&self.0)
    }
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
    /// `local+tag@domain` for this address.
    pub fn with_plus_tag(&self, tag: &str) -> EmailAddress {
        EmailAddress(format!("{}+{}@{}", self.local(), tag, self.domain()))
    }
    /// If `other` is this address with a `+tag`, the tag.
    pub fn plus_tag_of<'a>(&self, other: &'a EmailAddress) -> Option<&'a str> {
        if other.domain() != self.domain() {
            return None;
        }
        let rest = other.local().strip_prefix(self.local())?;
        rest.strip_prefix('+').filter(|t| !t.is_empty())
    }
    /// This address, or a `+tag` variant of it.
    pub fn is_same_mailbox(&self, other: &EmailAddress) -> bool {
        self == other || self.plus_tag_of(other).is_some()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The secret per-ticket token carried in our Reply-To (`support+<token>@…`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketToken(String);

impl TicketToken {
    pub const LEN: usize = 12;
    const ALPHABET: &'static [u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

    /// Builds a token from random bytes (the caller supplies the randomness so
    /// that the domain stays free of I/O).
    pub fn from_random(bytes: [u8; Self::LEN]) -> Self {
        let s = bytes
            .iter()
            .map(|b| Self::ALPHABET[(*b as usize) % Self::ALPHABET.len()] as char)
            .collect();
        TicketToken(s)
    }
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let t = s.trim().to_ascii_lowercase();
        if t.len() != Self::LEN || !t.bytes().all(|b| Self::ALPHABET.contains(&b)) {
            return Err(invalid("ticket token", "not a mailroom token", s));
        }
        Ok(TicketToken(t))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TicketToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A free-form label on a ticket (`billing`, `vip`, `bug-1234`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let t = s.trim().trim_start_matches('#').to_lowercase();
        if t.is_empty() || t.chars().count() > 40 {
            return Err(invalid("tag", "expected 1-40 characters", s));
        }
        if !t
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '.' || c == ':')
        {
            return Err(invalid(
                "tag",
                "use letters, digits, '-', '_', '.' and ':'",
                s,
            ));
        }
        Ok(Tag(t))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A teammate, as the chat platform names them (`@alice:example.org`,
/// `slack:U024BE7LH`) or as a CLI operator (`cli:root`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Agent(String);

impl Agent {
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let t = s.trim();
        if t.is_empty() || t.len() > 255 {
            return Err(invalid("agent", "expected 1-255 characters", s));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("agent", "contains blanks or control characters", s));
        }
        Ok(Agent(t.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who did something, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// mailroom itself (ingest, outbox worker).
    System,
    /// A teammate.
    Agent(Agent),
    /// The customer, by writing mail.
    Customer(EmailAddress),
    /// Someone writing from the shared mailbox itself, outside mailroom
    /// (Outlook, Gmail): the address of From, or of Sender when they wrote
    /// on the mailbox's behalf.
    Mailbox(EmailAddress),
}

impl Actor {
    /// Stable text form used in the store: `system`, `agent:<id>`,
    /// `customer:<address>`, `mailbox:<address>`.
    pub fn to_stored(&self) -> String {
        match self {
            Actor::System => "system".to_owned(),
            Actor::Agent(a) => format!("agent:{a}"),
            Actor::Customer(c) => format!("customer:{c}"),
            Actor::Mailbox(m) => format!("mailbox:{m}"),
        }
    }
    pub fn from_stored(s: &str) -> Result<Self, InvalidId> {
        if s == "system" {
            return Ok(Actor::System);
        }
        if let Some(a) = s.strip_prefix("agent:") {
            return Agent::parse(a).map(Actor::Agent);
        }
        if let Some(c) = s.strip_prefix("customer:") {
            return EmailAddress::parse(c).map(Actor::Customer);
        }
        if let Some(m) = s.strip_prefix("mailbox:") {
            return EmailAddress::parse(m).map(Actor::Mailbox);
        }
        Err(invalid("actor", "unknown kind", s))
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::System => f.write_str("mailroom"),
            Actor::Agent(a) => write!(f, "{a}"),
            Actor::Customer(c) => write!(f, "{c} (customer)"),
            Actor::Mailbox(m) => write!(f, "{m} (from the mailbox)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_id_accepts_hash_prefix_and_refuses_zero() {
        assert_eq!(TicketId::parse("#42").unwrap().get(), 42);
        assert_eq!(TicketId::parse("7").unwrap().to_string(), "#7");
        assert!(TicketId::parse("0").is_err());
        assert!(TicketId::parse("abc").is_err());
    }

    #[test]
    fn message_id_strips_brackets_and_refuses_injection() {
        let id = MessageId::parse(" <abc@host> ").unwrap();
        assert_eq!(id.as_str(), "abc@host");
        assert_eq!(id.bracketed(), "<abc@host>");
        assert!(MessageId::parse("<a@b>\r\nBcc: x@y").is_err());
        assert!(MessageId::parse("<>").is_err());
    }

    #[test]
    fn email_address_lowercases_and_refuses_bad_forms() {
        let a = EmailAddress::parse("Bob@Example.COM").unwrap();
        assert_eq!(a.as_str(), "bob@example.com");
        for bad in [
            "bob",
            "@x.com",
            "bob@",
            "a b@x.com",
            "a@x.com\r\nBcc: y@z",
            "a@.x",
            "a,b@x",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn plus_tags_round_trip() {
        let base = EmailAddress::parse("support@example.com").unwrap();
        let tagged = base.with_plus_tag("abc");
        assert_eq!(tagged.as_str(), "support+abc@example.com");
        assert_eq!(base.plus_tag_of(&tagged), Some("abc"));
        assert!(base.is_same_mailbox(&tagged));
        let other = EmailAddress::parse("supportx+abc@example.com").unwrap();
        assert_eq!(base.plus_tag_of(&other), None);
        let other_domain = EmailAddress::parse("support+abc@example.net").unwrap();
        assert_eq!(base.plus_tag_of(&other_domain), None);
    }

    #[test]
    fn tokens_are_fixed_length_from_the_alphabet() {
        let t = TicketToken::from_random([255; TicketToken::LEN]);
        assert_eq!(t.as_str().len(), TicketToken::LEN);
        assert_eq!(TicketToken::parse(t.as_str()).unwrap(), t);
        assert!(TicketToken::parse("short").is_err());
        assert!(TicketToken::parse("0000000000ll").is_err());
    }

    #[test]
    fn actor_stored_form_round_trips() {
        for a in [
            Actor::System,
            Actor::Agent(Agent::parse("@alice:example.org").unwrap()),
            Actor::Customer(EmailAddress::parse("c@example.net").unwrap()),
            Actor::Mailbox(EmailAddress::parse("alice@example.com").unwrap()),
        ] {
            assert_eq!(Actor::from_stored(&a.to_stored()).unwrap(), a);
        }
    }

    #[test]
    fn mailbox_names_and_tags_are_checked() {
        assert!(MailboxName::parse("support").is_ok());
        assert!(MailboxName::parse("Support").is_err());
        assert_eq!(Tag::parse("#VIP").unwrap().as_str(), "vip");
        assert!(Tag::parse("two words").is_err());
    }
}
