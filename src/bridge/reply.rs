//! Reply flow: a teammate's text → a threaded email from the shared address,
//! stored and queued in the outbox. Sending happens in the outbox worker.

use std::time::Duration;

use super::{App, now_ms};
use crate::domain::email::{AutoKind, Party};
use crate::domain::ids::{Agent, MessageId, TicketId};
use crate::domain::outbound::{OutboundAttachment, Parent, ReplyError, ReplyInput, build_reply};
use crate::domain::recipient::{ListMail, is_robot_mail, list_author};
use crate::mail::compose::{ComposeError, compose};
use crate::mail::parse::{content_hash, parse_email};
use crate::store::{NewReply, StoreError};

/// A reply as a teammate asked for it.
#[derive(Debug, Clone)]
pub struct ReplyRequest {
    pub ticket: TicketId,
    pub agent: Agent,
    /// Shown in From as "`<name> via <mailbox display name>`".
    pub agent_name: Option<String>,
    pub body_markdown: String,
    pub attachments: Vec<OutboundAttachment>,
    /// The reply waits this long in the outbox, during which it can be cancelled.
    pub undo_window: Duration,
    /// `!reply!`: send even when no person can be found to answer (list
    /// mail without a findable author, automatic mail only).
    pub confirmed: bool,
}

/// A reply waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedReply {
    pub email_id: i64,
    pub message_id: MessageId,
    pub send_at_ms: i64,
    pub to: Vec<Party>,
    pub cc: Vec<Party>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplyFlowError {
    #[error("no ticket {0}")]
    NoSuchTicket(TicketId),
    #[error("ticket {0} has no email from the customer to answer")]
    NothingToAnswer(TicketId),
    #[error("ticket {ticket} belongs to mailbox {mailbox}, which is not configured")]
    UnknownMailbox { ticket: TicketId, mailbox: String },
    /// The mail to answer was written by no person we can find; the
    /// teammate must confirm, and is told to whom it would go.
    #[error("{why}; nobody was written to. Send it anyway to {to} with `!reply! …`")]
    NeedsConfirmation { why: String, to: String },
    #[error(transparent)]
    Invalid(#[from] ReplyError),
    #[error(transparent)]
    Compose(#[from] ComposeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn random_part() -> String {
    let mut bytes = [0u8; 9];
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&now_ms().to_le_bytes());
    }
    hex::encode(bytes)
}

/// The ticket's latest inbound mail that a person wrote, parsed.
async fn latest_human(
    app: &App,
    ticket: TicketId,
) -> Result<Option<crate::mail::parse::InboundEmail>, ReplyFlowError> {
    let emails = app.store.emails(ticket).await?;
    for e in emails
        .iter()
        .rev()
        .filter(|e| e.direction == crate::domain::email::Direction::Inbound)
    {
        let Some(raw) = app.store.raw_email(e.id).await? else {
            continue;
        };
        let parsed = parse_email(&raw);
        if parsed.auto.is_none() {
            return Ok(Some(parsed));
        }
    }
    Ok(None)
}

/// Builds, stores and queues a reply to the ticket's latest customer email.
pub async fn queue_reply(app: &App, req: ReplyRequest) -> Result<QueuedReply, ReplyFlowError> {
    let store = &app.store;
    let ticket = store
        .ticket(req.ticket)
        .await?
        .ok_or(ReplyFlowError::NoSuchTicket(req.ticket))?;
    let mailbox = app
        .mailbox(&ticket.mailbox)
        .ok_or_else(|| ReplyFlowError::UnknownMailbox {
            ticket: req.ticket,
            mailbox: ticket.mailbox.to_string(),
        })?;
    let (_, raw) = store
        .latest_inbound(req.ticket)
        .await?
        .ok_or(ReplyFlowError::NothingToAnswer(req.ticket))?;
    let mut parsed = parse_email(&raw);
    let settings = &mailbox.settings;
    // Who is answered: list mail → its author alone; automatic mail → the
    // latest mail a person wrote in the ticket; neither to be found → ask.
    let mut only_to = None;
    let mut unclear = None;
    if is_robot_mail(parsed.auto) {
        match latest_human(app, req.ticket).await? {
            Some(human) => parsed = human,
            None => {
                unclear = Some(format!(
                    "this ticket holds only automatic mail ({} from {})",
                    parsed.auto.map_or("automatic", |a| a.as_str()),
                    parsed.from.address
                ))
            }
        }
    } else if parsed.auto == Some(AutoKind::List) {
        let author = list_author(
            ListMail {
                from: &parsed.from,
                reply_to: &parsed.reply_to,
                list_post: parsed.trace.list_post.as_ref(),
                original_from: parsed.trace.original_from.as_ref(),
            },
            |a| settings.address.is_same_mailbox(a),
        );
        match author {
            Some(p) => only_to = Some(p),
            None => {
                unclear = Some(format!(
                    "the latest mail is list mail (from {}) and its author cannot be told apart from the list",
                    parsed.from
                ))
            }
        }
    }
    let parent = Parent {
        message_id: parsed.message_id.clone(),
        references: parsed.references.clone(),
        subject: if parsed.subject.is_empty() {
            ticket.subject.clone()
        } else {
            parsed.subject.clone()
        },
        from: parsed.from.clone(),
        reply_to: parsed.reply_to.clone(),
        to: parsed.to.clone(),
        cc: parsed.cc.clone(),
    };
    let message_id = MessageId::parse(&format!(
        "mailroom.{}.{}@{}",
        req.ticket.get(),
        random_part(),
        settings.address.domain()
    ))
    .map_err(|e| StoreError::Corrupt {
        table: "emails",
        reason: e.to_string(),
    })?;
    let out = build_reply(ReplyInput {
        mailbox_address: &settings.address,
        mailbox_display_name: &settings.display_name,
        from_name_template: &settings.from_name_template,
        agent_name: req.agent_name.as_deref(),
        token: &ticket.token,
        parent: &parent,
        message_id: message_id.clone(),
        body_markdown: &req.body_markdown,
        attachments: req.attachments,
        only_to,
    })?;
    if let Some(why) = unclear
        && !req.confirmed
    {
        let to: Vec<String> = out
            .to
            .iter()
            .chain(&out.cc)
            .map(|p| p.to_string())
            .collect();
        return Err(ReplyFlowError::NeedsConfirmation {
            why,
            to: to.join(", "),
        });
    }
    let composed = compose(&out)?;
    let now = app.now_ms();
    let send_at_ms = now + req.undo_window.as_millis() as i64;
    let email_id = store
        .queue_reply(NewReply {
            ticket: req.ticket,
            mailbox: ticket.mailbox.clone(),
            author: req.agent.clone(),
            message_id: message_id.clone(),
            content_hash: content_hash(&composed.raw),
            from: out.from.clone(),
            subject: out.subject.clone(),
            raw: composed.raw,
            send_at_ms,
            now_ms: now,
        })
        .await?;
    app.outbox_wakeup.notify_one();
    tracing::info!(ticket = %req.ticket, %message_id, agent = %req.agent, "reply queued");
    Ok(QueuedReply {
        email_id,
        message_id,
        send_at_ms,
        to: out.to,
        cc: out.cc,
    })
}
