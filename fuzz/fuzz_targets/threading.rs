//! The threading rules on arbitrary facts: whatever the headers say, an
//! email only ever joins a ticket whose participants include its sender
//! (or, by subject, whose customer it is), and reply subjects keep their
//! thread's key.

#![no_main]

use std::collections::BTreeSet;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mailroom::domain::ids::{EmailAddress, MessageId, TicketId, TicketToken};
use mailroom::domain::threading::{
    CandidateTicket, Candidates, MatchKind, ThreadDecision, ThreadKeys, decide, reply_references,
    reply_subject, subject_key,
};

#[derive(Debug, Arbitrary)]
struct Candidate {
    id: u8,
    participants: Vec<u8>,
    customer: u8,
    subject: String,
    last_customer_at: i64,
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// A small address book; everything else picks from it by index, so
    /// matches between sender and participants actually happen.
    addresses: Vec<String>,
    from: u8,
    ids: Vec<String>,
    in_reply_to: Vec<u8>,
    references: Vec<u8>,
    tokens: Vec<String>,
    subject: String,
    at: i64,
    window: i64,
    /// A bounce's returned id (an index into `ids`), and the ticket the
    /// store holds our mail of that id in.
    returned: Option<u8>,
    by_returned: Option<u8>,
    by_reference: Vec<Candidate>,
    by_token: Vec<Candidate>,
    by_subject: Vec<Candidate>,
}

fn pick<T: Clone>(list: &[T], i: u8) -> Option<T> {
    (!list.is_empty()).then(|| list[i as usize % list.len()].clone())
}

fuzz_target!(|input: Input| {
    let mut book: Vec<EmailAddress> = input
        .addresses
        .iter()
        .filter_map(|a| EmailAddress::parse(a).ok())
        .collect();
    book.push(EmailAddress::parse("customer@example.org").expect("literal address"));
    let ids: Vec<MessageId> = input
        .ids
        .iter()
        .filter_map(|i| MessageId::parse(i).ok())
        .collect();
    let Some(from) = pick(&book, input.from) else {
        return;
    };
    let keys = ThreadKeys {
        from: from.clone(),
        in_reply_to: input
            .in_reply_to
            .iter()
            .filter_map(|&i| pick(&ids, i))
            .collect(),
        references: input
            .references
            .iter()
            .filter_map(|&i| pick(&ids, i))
            .collect(),
        tokens: input
            .tokens
            .iter()
            .filter_map(|t| TicketToken::parse(t).ok())
            .collect(),
        subject: input.subject.clone(),
        at: input.at,
        returned: input.returned.and_then(|i| pick(&ids, i)),
    };
    let candidate = |c: &Candidate| CandidateTicket {
        id: TicketId::new(i64::from(c.id)),
        participants: c
            .participants
            .iter()
            .filter_map(|&i| pick(&book, i))
            .collect::<BTreeSet<_>>(),
        customer: pick(&book, c.customer).unwrap_or_else(|| from.clone()),
        subject_key: subject_key(&c.subject),
        last_customer_at: c.last_customer_at,
    };
    // A ticket has one set of facts: the first description of an id wins,
    // wherever else the id is offered (the store cannot disagree with itself).
    let mut tickets: std::collections::BTreeMap<u8, CandidateTicket> = Default::default();
    for c in input
        .by_reference
        .iter()
        .chain(&input.by_token)
        .chain(&input.by_subject)
    {
        tickets.entry(c.id).or_insert_with(|| candidate(c));
    }
    let offered = |list: &[Candidate]| -> Vec<CandidateTicket> {
        list.iter()
            .filter_map(|c| tickets.get(&c.id).cloned())
            .collect()
    };
    let found = Candidates {
        by_reference: offered(&input.by_reference),
        by_token: offered(&input.by_token),
        by_subject: offered(&input.by_subject),
        // The store finds a ticket for a returned id only when there is one.
        by_returned: input
            .by_returned
            .filter(|_| keys.returned.is_some())
            .map(|t| TicketId::new(i64::from(t))),
    };
    let window = input.window.checked_abs().unwrap_or(i64::MAX);
    match decide(&keys, &found, window) {
        ThreadDecision::FollowUp {
            ticket,
            by: MatchKind::Returned,
        } => assert_eq!(
            Some(ticket),
            found.by_returned,
            "a bounce joined a ticket other than its reply's"
        ),
        ThreadDecision::FollowUp { ticket, by } => {
            let list = match by {
                MatchKind::Reference => &found.by_reference,
                MatchKind::Token => &found.by_token,
                MatchKind::Subject => &found.by_subject,
                MatchKind::Returned => unreachable!("handled above"),
            };
            let c = list
                .iter()
                .find(|c| c.id == ticket)
                .expect("joined a ticket it was not offered");
            match by {
                MatchKind::Subject => {
                    assert_eq!(
                        c.customer, from,
                        "joined another customer's ticket by subject"
                    );
                    assert_eq!(c.subject_key, keys.subject_key());
                }
                _ => assert!(
                    c.participants.contains(&from),
                    "joined a ticket without the sender"
                ),
            }
        }
        ThreadDecision::NewTicket { refused } => {
            assert!(
                found.by_returned.is_none(),
                "a bounce of our reply opened a ticket"
            );
            for t in refused {
                assert!(
                    found
                        .by_reference
                        .iter()
                        .chain(&found.by_token)
                        .any(|c| c.id == t),
                    "refused a ticket nobody offered"
                );
            }
        }
    }
    let referenced = keys.referenced_ids();
    assert!(referenced.len() <= keys.in_reply_to.len() + keys.references.len());

    // Our reply's subject keeps the thread's key, so the customer's answer
    // to it ("Re: Re: …") finds the ticket again by subject.
    let ours = reply_subject(&input.subject);
    let key = subject_key(&input.subject);
    if !key.is_empty() {
        assert_eq!(
            subject_key(&ours),
            key,
            "reply subject {ours:?} changed the key"
        );
    }
    if let Some(parent) = pick(&ids, input.from) {
        let chain = reply_references(&keys.references, &parent);
        assert!(chain.len() <= 21, "References grows without bound");
        assert!(
            chain.contains(&parent),
            "the parent is missing from References"
        );
        if !keys.references.contains(&parent) {
            assert_eq!(chain.last(), Some(&parent), "the parent must come last");
        }
    }
});
