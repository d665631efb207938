//! The outbox's post of a reply written outside mailroom (found in the
//! mailbox's Sent folder): "Replied from the mailbox by …" with its text,
//! rendered like any email (quoted history folded, cut at the platform's
//! limit), then its files as jobs of their own, as for a follow-up.

use super::chat::{chat_target, file_jobs, idempotency_key, missing, raw_email};
use crate::bridge::App;
use crate::chat::{ChatError, EmailText};
use crate::domain::chat::Platform;
use crate::domain::email::Party;
use crate::mail::parse::parse_email;
use crate::store::{Job, JobOutcome, Settlement};

/// The first line of the post: who wrote it, from where.
pub(crate) fn sent_reply_heading(written_by: &Party, from: &Party) -> String {
    let by = crate::chat::clip(&written_by.to_string(), 200).into_owned();
    if written_by.address == from.address {
        format!("📤 Replied from the mailbox by {by}")
    } else {
        let on_behalf = crate::chat::clip(from.address.as_str(), 200);
        format!("📤 Replied from the mailbox by {by} (on behalf of {on_behalf})")
    }
}

pub(super) async fn chat_sent_reply(
    app: &App,
    job: &Job,
    platform: Platform,
    email_id: i64,
) -> Result<Settlement, ChatError> {
    let (chat, ticket, thread) = chat_target(app, job, platform).await?;
    let raw = raw_email(app, email_id).await?;
    let parsed = parse_email(&raw);
    drop(raw);
    let written_by = parsed.sender.clone().unwrap_or_else(|| parsed.from.clone());
    let heading = sent_reply_heading(&written_by, &parsed.from);
    let view = parsed.view();
    let limit = chat.body_limit();
    let text = EmailText::new(&view, limit);
    let body = text.plain(&heading);
    match &thread {
        Some(thread) => {
            chat.notice(thread, &body, &idempotency_key(&ticket, job))
                .await?
        }
        None => {
            // Jobs of a platform run in order: no thread means the ticket's
            // post failed (the room was told). The reply still reaches the
            // team, in the room.
            let room = app
                .chat_room(&ticket.mailbox, platform)
                .ok_or_else(|| missing("the ticket has no thread and its mailbox no room"))?;
            chat.room_notice(&room, &format!("{}: {body}", ticket.id))
                .await?;
            return Ok(Settlement::new(JobOutcome::Done));
        }
    }
    let mut settlement = Settlement::new(JobOutcome::Done);
    settlement.follow_ons = file_jobs(app, platform, email_id, &view, text.truncated);
    Ok(settlement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::EmailAddress;

    fn party(name: Option<&str>, address: &str) -> Party {
        Party::new(
            name.map(str::to_owned),
            EmailAddress::parse(address).unwrap(),
        )
    }

    #[test]
    fn the_heading_names_the_writer_and_the_mailbox_they_wrote_for() {
        let shared = party(Some("Example Support"), "support@example.com");
        assert_eq!(
            sent_reply_heading(&shared, &shared),
            "📤 Replied from the mailbox by Example Support <support@example.com>"
        );
        let alice = party(Some("Alice"), "alice@example.com");
        assert_eq!(
            sent_reply_heading(&alice, &shared),
            "📤 Replied from the mailbox by Alice <alice@example.com> (on behalf of support@example.com)"
        );
    }
}
