//! The ticket state machine.
//!
//! ```text
//!            claim/assign            pending
//!   Open ───────────────▶ Claimed ───────────▶ Pending ──customer reply──┐
//!    ▲  ◀── unclaim/unassign ─┘                   │                      │
//!    │                                            ▼ close                │
//!    └──────── reopen / customer reply ──────── Closed ◀─────────────────┘
//! ```
//!
//! Pending and Closed remember the owner, so a customer reply or a reopen puts
//! the ticket back in the hands of whoever had it (and chat can mention them).
//!
//! A routing rule may set a new ticket aside as Ignored or Spam: it is kept
//! but never posted, the customer's follow-ups leave it where it is, and only
//! a reopen (or a close) takes it out.

use std::collections::BTreeSet;
use std::fmt;

use super::ids::{Agent, Tag};

/// The coarse status, for filters and display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Open,
    Claimed,
    Pending,
    Closed,
    /// Set aside by a routing rule: kept, never posted.
    Ignored,
    /// Set aside by a routing rule as spam: kept, never posted.
    Spam,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Open,
        Status::Claimed,
        Status::Pending,
        Status::Closed,
        Status::Ignored,
        Status::Spam,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Claimed => "claimed",
            Status::Pending => "pending",
            Status::Closed => "closed",
            Status::Ignored => "ignored",
            Status::Spam => "spam",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a ticket stands. Invalid combinations (claimed by nobody) cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketState {
    /// New or handed back: nobody owns it.
    Open,
    /// Someone is working on it.
    Claimed { by: Agent },
    /// Waiting on the customer; the owner, if any, is kept.
    Pending { owner: Option<Agent> },
    /// Done; the last owner is kept for a reopen.
    Closed { owner: Option<Agent> },
    /// Kept but never posted (a routing rule said so); nobody owns it.
    Ignored,
    /// Kept as spam, never posted; nobody owns it.
    Spam,
}

impl TicketState {
    pub fn status(&self) -> Status {
        match self {
            TicketState::Open => Status::Open,
            TicketState::Claimed { .. } => Status::Claimed,
            TicketState::Pending { .. } => Status::Pending,
            TicketState::Closed { .. } => Status::Closed,
            TicketState::Ignored => Status::Ignored,
            TicketState::Spam => Status::Spam,
        }
    }

    /// Set aside (ignored or spam): kept, never posted.
    pub fn is_set_aside(&self) -> bool {
        matches!(self, TicketState::Ignored | TicketState::Spam)
    }

    pub fn owner(&self) -> Option<&Agent> {
        match self {
            TicketState::Open | TicketState::Ignored | TicketState::Spam => None,
            TicketState::Claimed { by } => Some(by),
            TicketState::Pending { owner } | TicketState::Closed { owner } => owner.as_ref(),
        }
    }

    /// Rebuilds a state from its stored columns.
    pub fn from_parts(status: Status, owner: Option<Agent>) -> Result<Self, InvalidState> {
        match (status, owner) {
            (Status::Open, None) => Ok(TicketState::Open),
            (Status::Open, Some(_)) => Err(InvalidState("an open ticket has no owner")),
            (Status::Claimed, Some(by)) => Ok(TicketState::Claimed { by }),
            (Status::Claimed, None) => Err(InvalidState("a claimed ticket needs an owner")),
            (Status::Pending, owner) => Ok(TicketState::Pending { owner }),
            (Status::Closed, owner) => Ok(TicketState::Closed { owner }),
            (Status::Ignored, None) => Ok(TicketState::Ignored),
            (Status::Spam, None) => Ok(TicketState::Spam),
            (Status::Ignored | Status::Spam, Some(_)) => {
                Err(InvalidState("an ignored or spam ticket has no owner"))
            }
        }
    }

    /// Back to active work: to the owner if there is one, else open.
    fn reactivated(owner: Option<&Agent>) -> TicketState {
        match owner {
            Some(by) => TicketState::Claimed { by: by.clone() },
            None => TicketState::Open,
        }
    }
}

impl fmt::Display for TicketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TicketState::Open => f.write_str("Open · unclaimed"),
            TicketState::Claimed { by } => write!(f, "Claimed by {by}"),
            TicketState::Pending { owner: Some(o) } => write!(f, "Pending on customer · {o}"),
            TicketState::Pending { owner: None } => f.write_str("Pending on customer · unclaimed"),
            TicketState::Closed { owner: Some(o) } => write!(f, "Closed · {o}"),
            TicketState::Closed { owner: None } => f.write_str("Closed"),
            TicketState::Ignored => f.write_str("Ignored"),
            TicketState::Spam => f.write_str("Spam"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inconsistent stored ticket state: {0}")]
pub struct InvalidState(&'static str);

/// Something that may change a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketEvent {
    /// A teammate takes the ticket (claim reaction, `!claim`).
    Claim(Agent),
    /// A teammate gives their own claim back.
    Unclaim(Agent),
    /// Someone hands the ticket to a teammate (may be themselves).
    Assign(Agent),
    /// Someone removes whoever owns it.
    Unassign,
    /// Waiting on the customer.
    MarkPending,
    Close,
    Reopen,
    /// A new email from the customer arrived.
    CustomerReplied,
    AddTag(Tag),
    RemoveTag(Tag),
    /// Set the ticket aside: kept, never posted (a routing rule).
    Ignore,
    /// Set the ticket aside as spam (a routing rule).
    MarkSpam,
}

impl TicketEvent {
    /// Stable name for the audit log.
    pub fn action(&self) -> &'static str {
        match self {
            TicketEvent::Claim(_) => "claim",
            TicketEvent::Unclaim(_) => "unclaim",
            TicketEvent::Assign(_) => "assign",
            TicketEvent::Unassign => "unassign",
            TicketEvent::MarkPending => "pending",
            TicketEvent::Close => "close",
            TicketEvent::Reopen => "reopen",
            TicketEvent::CustomerReplied => "customer-replied",
            TicketEvent::AddTag(_) => "tag",
            TicketEvent::RemoveTag(_) => "untag",
            TicketEvent::Ignore => "ignore",
            TicketEvent::MarkSpam => "spam",
        }
    }
}

/// Why an event was refused. Each is an expected answer shown to the teammate,
/// not a fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("already claimed by {by}")]
    AlreadyClaimed { by: Agent },
    #[error("claimed by {by}, not by you")]
    ClaimedByOther { by: Agent },
    #[error("nobody has claimed this ticket")]
    NotClaimed,
    #[error("the ticket is closed; reopen it first")]
    Closed,
    #[error("the ticket is not closed or pending")]
    NotClosed,
    #[error("the ticket has no tag '{0}'")]
    NoSuchTag(Tag),
    #[error("the ticket was set aside ({0}); reopen it first")]
    SetAside(Status),
}

/// A ticket's mutable part: its state and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub state: TicketState,
    pub tags: BTreeSet<Tag>,
}

impl Ticket {
    pub fn new() -> Self {
        Ticket {
            state: TicketState::Open,
            tags: BTreeSet::new(),
        }
    }

    /// Decides the ticket after `event`. `Ok` with an unchanged ticket means the
    /// event was accepted but had nothing to do (claiming your own ticket again,
    /// tagging with a tag it has): callers treat that as success without an
    /// audit entry for a change.
    pub fn apply(&self, event: &TicketEvent) -> Result<Ticket, Refusal> {
        let mut next = self.clone();
        match event {
            TicketEvent::AddTag(tag) => {
                next.tags.insert(tag.clone());
            }
            TicketEvent::RemoveTag(tag) => {
                if !next.tags.remove(tag) {
                    return Err(Refusal::NoSuchTag(tag.clone()));
                }
            }
            _ => next.state = transition(&self.state, event)?,
        }
        Ok(next)
    }
}

impl Default for Ticket {
    fn default() -> Self {
        Ticket::new()
    }
}

fn transition(state: &TicketState, event: &TicketEvent) -> Result<TicketState, Refusal> {
    use TicketEvent as E;
    use TicketState as S;
    let owner = state.owner();
    match (state, event) {
        (_, E::AddTag(_) | E::RemoveTag(_)) => Ok(state.clone()),

        // Set aside: the customer's mail leaves it there; a person takes it
        // out by reopening (or closing) it.
        (S::Ignored | S::Spam, E::CustomerReplied) => Ok(state.clone()),
        (S::Ignored | S::Spam, E::Reopen) => Ok(S::Open),
        (S::Ignored | S::Spam, E::Close) => Ok(S::Closed { owner: None }),
        (S::Ignored | S::Spam, E::Ignore) => Ok(S::Ignored),
        (S::Ignored | S::Spam, E::MarkSpam) => Ok(S::Spam),
        (S::Ignored | S::Spam, _) => Err(Refusal::SetAside(state.status())),
        (S::Closed { .. }, E::Ignore | E::MarkSpam) => Err(Refusal::Closed),
        (_, E::Ignore) => Ok(S::Ignored),
        (_, E::MarkSpam) => Ok(S::Spam),

        // A closed ticket only moves by being reopened (by a person or the customer).
        (S::Closed { .. }, E::Close) => Ok(state.clone()),
        (S::Closed { owner }, E::Reopen | E::CustomerReplied) => {
            Ok(TicketState::reactivated(owner.as_ref()))
        }
        (S::Closed { .. }, _) => Err(Refusal::Closed),

        (S::Open, E::Claim(a) | E::Assign(a)) => Ok(S::Claimed { by: a.clone() }),
        (S::Open, E::Unclaim(_) | E::Unassign) => Err(Refusal::NotClaimed),
        (S::Open, E::MarkPending) => Ok(S::Pending { owner: None }),
        (S::Open, E::Close) => Ok(S::Closed { owner: None }),
        (S::Open, E::Reopen) => Err(Refusal::NotClosed),
        (S::Open, E::CustomerReplied) => Ok(S::Open),

        (S::Claimed { by }, E::Claim(a)) if a == by => Ok(state.clone()),
        (S::Claimed { by }, E::Claim(_)) => Err(Refusal::AlreadyClaimed { by: by.clone() }),
        (S::Claimed { by }, E::Unclaim(a)) if a == by => Ok(S::Open),
        (S::Claimed { by }, E::Unclaim(_)) => Err(Refusal::ClaimedByOther { by: by.clone() }),
        (S::Claimed { .. }, E::Assign(a)) => Ok(S::Claimed { by: a.clone() }),
        (S::Claimed { .. }, E::Unassign) => Ok(S::Open),
        (S::Claimed { by }, E::MarkPending) => Ok(S::Pending {
            owner: Some(by.clone()),
        }),
        (S::Claimed { by }, E::Close) => Ok(S::Closed {
            owner: Some(by.clone()),
        }),
        (S::Claimed { .. }, E::Reopen) => Err(Refusal::NotClosed),
        (S::Claimed { .. }, E::CustomerReplied) => Ok(state.clone()),

        (S::Pending { owner: Some(o) }, E::Claim(a)) if a != o => {
            Err(Refusal::AlreadyClaimed { by: o.clone() })
        }
        (S::Pending { .. }, E::Claim(a)) => Ok(S::Claimed { by: a.clone() }),
        (S::Pending { owner: None }, E::Unclaim(_) | E::Unassign) => Err(Refusal::NotClaimed),
        (S::Pending { owner: Some(o) }, E::Unclaim(a)) if a != o => {
            Err(Refusal::ClaimedByOther { by: o.clone() })
        }
        (S::Pending { .. }, E::Unclaim(_) | E::Unassign) => Ok(S::Pending { owner: None }),
        (S::Pending { .. }, E::Assign(a)) => Ok(S::Pending {
            owner: Some(a.clone()),
        }),
        (S::Pending { .. }, E::MarkPending) => Ok(state.clone()),
        (S::Pending { owner }, E::Close) => Ok(S::Closed {
            owner: owner.clone(),
        }),
        (S::Pending { .. }, E::Reopen | E::CustomerReplied) => Ok(TicketState::reactivated(owner)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(s: &str) -> Agent {
        Agent::parse(s).unwrap()
    }

    /// Every state × every event, with the expected outcome written out, so a
    /// change to any rule shows up here as a deliberate edit.
    #[test]
    fn every_state_times_every_event() {
        let alice = agent("@alice:x");
        let bob = agent("@bob:x");
        let tag = Tag::parse("vip").unwrap();
        let open = || TicketState::Open;
        let claimed = |a: &Agent| TicketState::Claimed { by: a.clone() };
        let pending = |o: Option<&Agent>| TicketState::Pending { owner: o.cloned() };
        let closed = |o: Option<&Agent>| TicketState::Closed { owner: o.cloned() };

        let states = [
            open(),
            claimed(&alice),
            pending(None),
            pending(Some(&alice)),
            closed(None),
            closed(Some(&alice)),
            TicketState::Ignored,
            TicketState::Spam,
        ];
        let events = [
            TicketEvent::Claim(alice.clone()),
            TicketEvent::Claim(bob.clone()),
            TicketEvent::Unclaim(alice.clone()),
            TicketEvent::Unclaim(bob.clone()),
            TicketEvent::Assign(bob.clone()),
            TicketEvent::Unassign,
            TicketEvent::MarkPending,
            TicketEvent::Close,
            TicketEvent::Reopen,
            TicketEvent::CustomerReplied,
            TicketEvent::AddTag(tag.clone()),
            TicketEvent::RemoveTag(tag.clone()),
            TicketEvent::Ignore,
            TicketEvent::MarkSpam,
        ];
        use Refusal as R;
        let ac = || R::AlreadyClaimed { by: alice.clone() };
        let cbo = || R::ClaimedByOther { by: alice.clone() };
        let nt = || R::NoSuchTag(tag.clone());
        // Rows follow `states`, columns follow `events`.
        let expected: [[Result<TicketState, Refusal>; 14]; 8] = [
            // Open
            [
                Ok(claimed(&alice)),
                Ok(claimed(&bob)),
                Err(R::NotClaimed),
                Err(R::NotClaimed),
                Ok(claimed(&bob)),
                Err(R::NotClaimed),
                Ok(pending(None)),
                Ok(closed(None)),
                Err(R::NotClosed),
                Ok(open()),
                Ok(open()),
                Err(nt()),
                Ok(TicketState::Ignored),
                Ok(TicketState::Spam),
            ],
            // Claimed by alice
            [
                Ok(claimed(&alice)),
                Err(ac()),
                Ok(open()),
                Err(cbo()),
                Ok(claimed(&bob)),
                Ok(open()),
                Ok(pending(Some(&alice))),
                Ok(closed(Some(&alice))),
                Err(R::NotClosed),
                Ok(claimed(&alice)),
                Ok(claimed(&alice)),
                Err(nt()),
                Ok(TicketState::Ignored),
                Ok(TicketState::Spam),
            ],
            // Pending, nobody owns it
            [
                Ok(claimed(&alice)),
                Ok(claimed(&bob)),
                Err(R::NotClaimed),
                Err(R::NotClaimed),
                Ok(pending(Some(&bob))),
                Err(R::NotClaimed),
                Ok(pending(None)),
                Ok(closed(None)),
                Ok(open()),
                Ok(open()),
                Ok(pending(None)),
                Err(nt()),
                Ok(TicketState::Ignored),
                Ok(TicketState::Spam),
            ],
            // Pending, owned by alice
            [
                Ok(claimed(&alice)),
                Err(ac()),
                Ok(pending(None)),
                Err(cbo()),
                Ok(pending(Some(&bob))),
                Ok(pending(None)),
                Ok(pending(Some(&alice))),
                Ok(closed(Some(&alice))),
                Ok(claimed(&alice)),
                Ok(claimed(&alice)),
                Ok(pending(Some(&alice))),
                Err(nt()),
                Ok(TicketState::Ignored),
                Ok(TicketState::Spam),
            ],
            // Closed, no owner
            [
                Err(R::Closed),
                Err(R::Closed),
                Err(R::Closed),
                Err(R::Closed),
                Err(R::Closed),
                Err(R::Closed),
                Err(R::Closed),
                Ok(closed(None)),
                Ok(open()),
                Ok(open()),
                Ok(closed(None)),
                Err(nt()),
                Err(R::Closed),
                Err(R::Closed),
            ],
            // Closed, alice owned it
            [
                Err(R::Closed),
                Err(R::Closed),
                Err(R::Closed),
                Err(R::Closed),
                Err(R::Closed),
                Err(R::Closed),
                Err(R::Closed),
                Ok(closed(Some(&alice))),
                Ok(claimed(&alice)),
                Ok(claimed(&alice)),
                Ok(closed(Some(&alice))),
                Err(nt()),
                Err(R::Closed),
                Err(R::Closed),
            ],
            // Ignored
            [
                Err(R::SetAside(Status::Ignored)),
                Err(R::SetAside(Status::Ignored)),
                Err(R::SetAside(Status::Ignored)),
                Err(R::SetAside(Status::Ignored)),
                Err(R::SetAside(Status::Ignored)),
                Err(R::SetAside(Status::Ignored)),
                Err(R::SetAside(Status::Ignored)),
                Ok(closed(None)),
                Ok(open()),
                Ok(TicketState::Ignored),
                Ok(TicketState::Ignored),
                Err(nt()),
                Ok(TicketState::Ignored),
                Ok(TicketState::Spam),
            ],
            // Spam
            [
                Err(R::SetAside(Status::Spam)),
                Err(R::SetAside(Status::Spam)),
                Err(R::SetAside(Status::Spam)),
                Err(R::SetAside(Status::Spam)),
                Err(R::SetAside(Status::Spam)),
                Err(R::SetAside(Status::Spam)),
                Err(R::SetAside(Status::Spam)),
                Ok(closed(None)),
                Ok(open()),
                Ok(TicketState::Spam),
                Ok(TicketState::Spam),
                Err(nt()),
                Ok(TicketState::Ignored),
                Ok(TicketState::Spam),
            ],
        ];
        for (si, state) in states.iter().enumerate() {
            for (ei, event) in events.iter().enumerate() {
                let ticket = Ticket {
                    state: state.clone(),
                    tags: BTreeSet::new(),
                };
                let got = ticket.apply(event).map(|t| t.state);
                assert_eq!(got, expected[si][ei], "state {state:?} × event {event:?}");
            }
        }
    }

    #[test]
    fn tags_are_added_and_removed_in_any_state() {
        let tag = Tag::parse("billing").unwrap();
        let t = Ticket::new()
            .apply(&TicketEvent::AddTag(tag.clone()))
            .unwrap();
        assert!(t.tags.contains(&tag));
        let again = t.apply(&TicketEvent::AddTag(tag.clone())).unwrap();
        assert_eq!(again, t, "tagging twice is a no-op");
        let removed = t.apply(&TicketEvent::RemoveTag(tag.clone())).unwrap();
        assert!(removed.tags.is_empty());
    }

    #[test]
    fn stored_parts_round_trip_and_reject_nonsense() {
        let alice = agent("@alice:x");
        for s in [
            TicketState::Open,
            TicketState::Claimed { by: alice.clone() },
            TicketState::Pending { owner: None },
            TicketState::Closed {
                owner: Some(alice.clone()),
            },
            TicketState::Ignored,
            TicketState::Spam,
        ] {
            let back = TicketState::from_parts(s.status(), s.owner().cloned()).unwrap();
            assert_eq!(back, s);
        }
        assert!(TicketState::from_parts(Status::Claimed, None).is_err());
        assert!(TicketState::from_parts(Status::Open, Some(alice.clone())).is_err());
        assert!(TicketState::from_parts(Status::Spam, Some(alice)).is_err());
    }

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("nope"), None);
    }
}
