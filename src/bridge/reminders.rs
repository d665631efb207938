//! Unclaimed reminders (`[mailbox.reminders]`): when a ticket's root is
//! posted, its first nudge is queued as a timer on that platform; when the
//! timer fires and the ticket is still open with nobody on it, the thread
//! (or room) is nudged and the next round queued. Each round says its piece
//! once, however often its timer runs.

use jiff::Timestamp;

use super::App;
use super::outbox::StepOutcome;
use crate::domain::chat::Platform;
use crate::domain::reminders::{nudge_text, still_unclaimed};
use crate::store::{Job, JobOutcome, JobSpec, Settlement, StoreError, TicketRecord};

/// The first nudge timer of a ticket whose root was just posted on
/// `platform`, if its mailbox asks for nudges.
pub(super) fn first_nudge(
    app: &App,
    ticket: &TicketRecord,
    platform: Platform,
) -> Option<(JobSpec, i64)> {
    let reminders = &app.mailbox(&ticket.mailbox)?.settings.reminders;
    let due_ms = reminders.due_ms(ticket.created_at_ms, 1)?;
    Some((
        JobSpec::UnclaimedNudge {
            platform,
            round: 1,
            due_ms,
        },
        due_ms,
    ))
}

/// Nudge `round` of the job's ticket on `platform`.
pub(super) async fn nudge_timer(
    app: &App,
    job: &Job,
    platform: Platform,
    round: u32,
) -> Result<StepOutcome, StoreError> {
    let now = app.now_ms();
    let mut settlement = Settlement::new(JobOutcome::Done);
    let ticket = match job.ticket {
        Some(t) => app.store.ticket(t).await?,
        None => None,
    };
    let settings = ticket
        .as_ref()
        .and_then(|t| app.mailbox(&t.mailbox))
        .map(|m| m.settings.reminders.clone());
    if let (Some(t), Some(reminders)) = (ticket, settings) {
        let snoozed = t.snooze.is_some();
        if still_unclaimed(&t.state, snoozed) {
            let waited = Timestamp::from_millisecond(now)
                .ok()
                .zip(Timestamp::from_millisecond(t.created_at_ms).ok())
                .map(|(n, c)| n.duration_since(c))
                .unwrap_or_default();
            let text = nudge_text(t.id, &t.subject, waited);
            let thread = app.store.chat_thread(t.id, platform).await?;
            if reminders.nudge_in.thread() {
                settlement.follow_ons.push(JobSpec::ChatNotice {
                    platform,
                    text: text.clone(),
                });
            }
            // The room the thread is in (a routing rule's, maybe), else
            // the mailbox's.
            let room = thread
                .map(|th| th.room)
                .or_else(|| app.chat_room(&t.mailbox, platform));
            if reminders.nudge_in.room()
                && let Some(room) = room
            {
                settlement.follow_ons.push(JobSpec::ChatRoomNotice {
                    platform,
                    room,
                    text,
                });
            }
            settlement.audit = Some(("nudged", format!("round {round} on {}", platform.as_str())));
            settlement.once = Some(format!(
                "nudge:{}:{}:{round}",
                t.id.get(),
                platform.as_str()
            ));
        }
        // A snoozed ticket skips this round but may still be unclaimed
        // when it wakes; one someone took needs no more nudges.
        if still_unclaimed(&t.state, false)
            && let Some(due_ms) = reminders.due_ms(t.created_at_ms, round + 1)
        {
            settlement.timers.push((
                JobSpec::UnclaimedNudge {
                    platform,
                    round: round + 1,
                    due_ms,
                },
                due_ms,
            ));
        }
    }
    app.store.settle_job(job, &settlement, now).await?;
    app.outbox_wakeup.notify_one();
    Ok(StepOutcome::Done)
}
