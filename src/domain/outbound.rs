//! Rules for a reply leaving the shared mailbox: who it goes to, how it is
//! threaded, what it is called, and which values may reach a header.

use super::email::Party;
use super::ids::{EmailAddress, MessageId, TicketToken, is_header_breaking};
use super::threading::{reply_references, reply_subject};

/// A file attached to a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundAttachment {
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// A reply ready to be turned into MIME. Built only by [`build_reply`], which
/// checks every header value, so holding one means it is safe to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundEmail {
    pub message_id: MessageId,
    pub from: Party,
    pub reply_to: Party,
    pub to: Vec<Party>,
    pub cc: Vec<Party>,
    pub subject: String,
    pub in_reply_to: Option<MessageId>,
    pub references: Vec<MessageId>,
    /// The reply text as the teammate wrote it (Markdown); sent as text/plain
    /// and as HTML rendered from it.
    pub body_markdown: String,
    pub attachments: Vec<OutboundAttachment>,
}

impl OutboundEmail {
    /// Every recipient address (To then Cc), for the SMTP envelope.
    pub fn recipients(&self) -> Vec<EmailAddress> {
        self.to
            .iter()
            .chain(self.cc.iter())
            .map(|p| p.address.clone())
            .collect()
    }
}

/// The message being answered.
#[derive(Debug, Clone)]
pub struct Parent {
    pub message_id: MessageId,
    pub references: Vec<MessageId>,
    pub subject: String,
    pub from: Party,
    pub reply_to: Vec<Party>,
    pub to: Vec<Party>,
    pub cc: Vec<Party>,
}

/// Everything [`build_reply`] needs.
#[derive(Debug, Clone)]
pub struct ReplyInput<'a> {
    /// The shared address replies come from.
    pub mailbox_address: &'a EmailAddress,
    pub mailbox_display_name: &'a str,
    /// `{agent}` and `{display_name}` are replaced; used when the agent has a name.
    pub from_name_template: &'a str,
    pub agent_name: Option<&'a str>,
    pub token: &'a TicketToken,
    pub parent: &'a Parent,
    pub message_id: MessageId,
    pub body_markdown: &'a str,
    pub attachments: Vec<OutboundAttachment>,
    /// Answer this person alone (the author of list mail, see
    /// `domain::recipient`) instead of the conversation.
    pub only_to: Option<Party>,
}

/// Why a reply could not be built. The field names the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("{field} contains a line break or control character; refusing (header injection)")]
    HeaderInjection { field: String },
    #[error("the reply text is empty")]
    EmptyBody,
    #[error("the reply has no recipient other than the shared mailbox itself")]
    NoRecipient,
    #[error("attachment name {name:?} is not usable: {reason}")]
    BadAttachment { name: String, reason: &'static str },
}

fn check_header(field: &str, value: &str) -> Result<(), ReplyError> {
    if value.chars().any(is_header_breaking) {
        return Err(ReplyError::HeaderInjection {
            field: field.to_owned(),
        });
    }
    Ok(())
}

fn check_party(field: &str, p: &Party) -> Result<(), ReplyError> {
    if let Some(n) = &p.name {
        check_header(&format!("{field} display name"), n)?;
    }
    Ok(())
}

/// Builds the reply to `input.parent` from the shared address.
///
/// To: the parent's Reply-To, else its sender. Cc: everyone else the parent
/// was addressed to, minus the shared mailbox (and its plus addresses), so a
/// reply reaches exactly the people already in the conversation.
pub fn build_reply(input: ReplyInput<'_>) -> Result<OutboundEmail, ReplyError> {
    if input.body_markdown.trim().is_empty() {
        return Err(ReplyError::EmptyBody);
    }
    let ours = |a: &EmailAddress| input.mailbox_address.is_same_mailbox(a);
    let parent = input.parent;
    if let Some(p) = &input.only_to
        && ours(&p.address)
    {
        return Err(ReplyError::NoRecipient);
    }

    let mut to: Vec<Party> = Vec::new();
    let primary = if parent.reply_to.is_empty() {
        std::slice::from_ref(&parent.from)
    } else {
        &parent.reply_to[..]
    };
    for p in primary {
        if !ours(&p.address) && !to.iter().any(|q| q.address == p.address) {
            to.push(p.clone());
        }
    }
    let mut cc: Vec<Party> = Vec::new();
    for p in parent
        .to
        .iter()
        .chain(parent.cc.iter())
        .chain(std::iter::once(&parent.from))
    {
        let seen = to.iter().chain(cc.iter()).any(|q| q.address == p.address);
        if !ours(&p.address) && !seen {
            cc.push(p.clone());
        }
    }
    if let Some(p) = &input.only_to {
        to = vec![p.clone()];
        cc.clear();
    }
    if to.is_empty() {
        // The parent was written by us (e.g. replying twice in a row): answer
        // whoever it was addressed to.
        if cc.is_empty() {
            return Err(ReplyError::NoRecipient);
        }
        to.push(cc.remove(0));
    }

    let from_name = match input.agent_name {
        Some(agent) if !agent.trim().is_empty() => input
            .from_name_template
            .replace("{agent}", agent.trim())
            .replace("{display_name}", input.mailbox_display_name),
        _ => input.mailbox_display_name.to_owned(),
    };
    let from = Party::new(Some(from_name), input.mailbox_address.clone());
    let reply_to = Party::new(
        Some(input.mailbox_display_name.to_owned()),
        input.mailbox_address.with_plus_tag(input.token.as_str()),
    );
    let subject = reply_subject(&parent.subject);

    check_party("From", &from)?;
    check_party("Reply-To", &reply_to)?;
    for p in &to {
        check_party("To", p)?;
    }
    for p in &cc {
        check_party("Cc", p)?;
    }
    check_header("Subject", &subject)?;
    for a in &input.attachments {
        if a.name.trim().is_empty() {
            return Err(ReplyError::BadAttachment {
                name: a.name.clone(),
                reason: "empty",
            });
        }
        if a.name.chars().any(is_header_breaking) || a.name.contains(['/', '\\']) {
            return Err(ReplyError::BadAttachment {
                name: a.name.clone(),
                reason: "contains a path separator or control character",
            });
        }
        check_header("attachment content type", &a.content_type)?;
    }

    Ok(OutboundEmail {
        message_id: input.message_id,
        from,
        reply_to,
        to,
        cc,
        subject,
        in_reply_to: Some(parent.message_id.clone()),
        references: reply_references(&parent.references, &parent.message_id),
        body_markdown: input.body_markdown.to_owned(),
        attachments: input.attachments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(name: Option<&str>, a: &str) -> Party {
        Party::new(name.map(str::to_owned), EmailAddress::parse(a).unwrap())
    }

    fn parent() -> Parent {
        Parent {
            message_id: MessageId::parse("<m2@customer.example>").unwrap(),
            references: vec![MessageId::parse("<m1@example.com>").unwrap()],
            subject: "Re: Broken invoice".into(),
            from: party(Some("Carol Customer"), "carol@customer.example"),
            reply_to: vec![],
            to: vec![party(None, "support+abcdefghijkm@example.com")],
            cc: vec![
                party(None, "dave@customer.example"),
                party(None, "support@example.com"),
            ],
        }
    }

    fn input<'a>(
        addr: &'a EmailAddress,
        token: &'a TicketToken,
        p: &'a Parent,
        body: &'a str,
    ) -> ReplyInput<'a> {
        ReplyInput {
            mailbox_address: addr,
            mailbox_display_name: "Example Support",
            from_name_template: "{agent} via {display_name}",
            agent_name: Some("Alice"),
            token,
            parent: p,
            message_id: MessageId::parse("<r1@example.com>").unwrap(),
            body_markdown: body,
            attachments: vec![],
            only_to: None,
        }
    }

    #[test]
    fn only_to_answers_one_person_and_nobody_else() {
        let addr = EmailAddress::parse("support@example.com").unwrap();
        let token = TicketToken::parse("abcdefghijkm").unwrap();
        let p = parent();
        let mut i = input(&addr, &token, &p, "ok");
        i.only_to = Some(party(Some("Carol"), "carol@customer.example"));
        let out = build_reply(i).unwrap();
        assert_eq!(out.to, vec![party(Some("Carol"), "carol@customer.example")]);
        assert!(out.cc.is_empty());
        let mut i = input(&addr, &token, &p, "ok");
        i.only_to = Some(party(None, "support+x@example.com"));
        assert_eq!(build_reply(i), Err(ReplyError::NoRecipient));
    }

    #[test]
    fn reply_is_threaded_and_comes_from_the_shared_address() {
        let addr = EmailAddress::parse("support@example.com").unwrap();
        let token = TicketToken::parse("abcdefghijkm").unwrap();
        let p = parent();
        let out = build_reply(input(&addr, &token, &p, "Fixed, sorry!")).unwrap();
        assert_eq!(out.from.address, addr);
        assert_eq!(out.from.name.as_deref(), Some("Alice via Example Support"));
        assert_eq!(
            out.reply_to.address.as_str(),
            "support+abcdefghijkm@example.com"
        );
        assert_eq!(out.subject, "Re: Broken invoice");
        assert_eq!(out.in_reply_to, Some(p.message_id.clone()));
        assert_eq!(
            out.references,
            vec![p.references[0].clone(), p.message_id.clone()]
        );
        assert_eq!(out.to, vec![p.from.clone()]);
        // Our own addresses (plain and plus) never appear as recipients.
        assert_eq!(out.cc, vec![party(None, "dave@customer.example")]);
    }

    #[test]
    fn reply_to_header_of_the_customer_wins() {
        let addr = EmailAddress::parse("support@example.com").unwrap();
        let token = TicketToken::parse("abcdefghijkm").unwrap();
        let mut p = parent();
        p.reply_to = vec![party(None, "tickets@customer.example")];
        let out = build_reply(input(&addr, &token, &p, "ok")).unwrap();
        assert_eq!(out.to[0].address.as_str(), "tickets@customer.example");
        assert!(
            out.cc
                .iter()
                .any(|c| c.address.as_str() == "carol@customer.example")
        );
    }

    #[test]
    fn header_injection_is_refused_naming_the_field() {
        let addr = EmailAddress::parse("support@example.com").unwrap();
        let token = TicketToken::parse("abcdefghijkm").unwrap();
        let mut p = parent();
        p.subject = "Hi\r\nBcc: victim@example.net".into();
        let err = build_reply(input(&addr, &token, &p, "ok")).unwrap_err();
        assert_eq!(
            err,
            ReplyError::HeaderInjection {
                field: "Subject".into()
            }
        );

        let p = parent();
        let mut i = input(&addr, &token, &p, "ok");
        i.agent_name = Some("Eve\nBcc: x@y.z");
        assert!(
            matches!(build_reply(i), Err(ReplyError::HeaderInjection { field }) if field.starts_with("From"))
        );
    }

    proptest::proptest! {
        /// There is no `--to`: whatever the reply text says, a reply goes
        /// only to people already in the conversation it answers.
        #[test]
        fn replies_go_only_to_the_parents_participants(
            body in "(?s)[^\\x00]{1,200}",
            others in proptest::collection::vec("[a-e]{1,3}@(customer|other)\\.example", 0..6),
            with_reply_to in proptest::bool::ANY,
        ) {
            let addr = EmailAddress::parse("support@example.com").unwrap();
            let token = TicketToken::parse("abcdefghijkm").unwrap();
            let mut p = parent();
            p.cc.extend(others.iter().map(|a| party(None, a)));
            if with_reply_to {
                p.reply_to = vec![party(None, "replies@customer.example")];
            }
            let participants: Vec<EmailAddress> = std::iter::once(&p.from)
                .chain(&p.reply_to)
                .chain(&p.to)
                .chain(&p.cc)
                .map(|q| q.address.clone())
                .collect();
            let body = format!("x{body}\nTo: evil@attacker.example\r\nBcc: evil@attacker.example");
            let out = build_reply(input(&addr, &token, &p, &body)).unwrap();
            for r in out.recipients() {
                proptest::prop_assert!(participants.contains(&r), "{r} was not in the conversation");
                proptest::prop_assert!(!addr.is_same_mailbox(&r), "{r} is ourselves");
            }
        }
    }

    #[test]
    fn empty_replies_and_replies_to_ourselves_only_are_refused() {
        let addr = EmailAddress::parse("support@example.com").unwrap();
        let token = TicketToken::parse("abcdefghijkm").unwrap();
        let p = parent();
        assert_eq!(
            build_reply(input(&addr, &token, &p, "  \n")),
            Err(ReplyError::EmptyBody)
        );
        let mut own = parent();
        own.from = party(None, "support@example.com");
        own.to = vec![];
        own.cc = vec![];
        assert_eq!(
            build_reply(input(&addr, &token, &own, "x")),
            Err(ReplyError::NoRecipient)
        );
    }

    #[test]
    fn without_an_agent_name_the_display_name_is_used() {
        let addr = EmailAddress::parse("support@example.com").unwrap();
        let token = TicketToken::parse("abcdefghijkm").unwrap();
        let p = parent();
        let mut i = input(&addr, &token, &p, "ok");
        i.agent_name = None;
        assert_eq!(
            build_reply(i).unwrap().from.name.as_deref(),
            Some("Example Support")
        );
    }
}
