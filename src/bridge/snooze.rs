//! Snoozes: `!snooze` / `!unsnooze` (typed in the thread or through
//! Slack's `/mailroom snooze`), and the wake-up timer. A customer's mail
//! wakes a snoozed ticket inside the ingest transaction (`store`'s
//! `wake_on_reply`); everything else is here.

use super::App;
use super::outbox::StepOutcome;
use crate::domain::command::SnoozeRequest;
use crate::domain::ids::{Actor, Agent, TicketId};
use crate::domain::snooze::{Snooze, Wake, timer_stands, wake_mentions, wake_text};
use crate::domain::time::Zone;
use crate::store::{Job, JobOutcome, JobSpec, SnoozeSet, StoreError, WakeIf};

/// What a snooze command answers: `Ok` for the whole thread, `Err` for the
/// teammate alone (a mistake or a refusal).
pub type Said = Result<String, String>;

/// The zone a ticket's times are read in: its mailbox's.
fn zone(app: &App, mailbox: &crate::domain::ids::MailboxName) -> Zone {
    app.mailbox(mailbox)
        .map(|m| m.settings.time_zone.clone())
        .unwrap_or_else(Zone::utc)
}

/// A snooze set or ended moves its ticket between the boards' columns.
fn boards_moved(app: &App) {
    for platform in app.chats.keys() {
        app.board.changed(*platform);
    }
}

/// `!snooze …` by `agent`.
pub async fn snooze(
    app: &App,
    ticket: TicketId,
    agent: &Agent,
    request: &SnoozeRequest,
) -> Result<Said, StoreError> {
    let Some(record) = app.store.ticket(ticket).await? else {
        return Ok(Err(format!("There is no ticket {ticket}.")));
    };
    let zone = zone(app, &record.mailbox);
    let until = match request.resolve(app.clock.now(), &zone) {
        Ok(until) => until,
        Err(e) => return Ok(Err(format!("⚠️ {e}"))),
    };
    let when = until.describe(&zone);
    let snooze = Snooze {
        until,
        by: agent.clone(),
    };
    match app
        .store
        .snooze(ticket, &snooze, &when, app.now_ms())
        .await?
    {
        SnoozeSet::Snoozed { replaced } => {
            app.outbox_wakeup.notify_one();
            boards_moved(app);
            tracing::info!(%ticket, %agent, %when, "ticket snoozed");
            let instead = match replaced {
                Some(old) => format!(" (instead of {})", old.until.describe(&zone)),
                None => String::new(),
            };
            Ok(Ok(format!(
                "💤 {ticket} snoozed {when}{instead} by {agent}: it is out of the queue until then. \
                 Mail from the customer wakes it early; !unsnooze brings it back now."
            )))
        }
        SnoozeSet::NotInQueue(status) => Ok(Err(format!(
            "{agent}: {ticket} is {status}, so it is in no queue to hide from; only open, claimed or pending tickets can be snoozed."
        ))),
        SnoozeSet::NoSuchTicket => Ok(Err(format!("There is no ticket {ticket}."))),
    }
}

/// `!unsnooze` by `agent`.
pub async fn unsnooze(app: &App, ticket: TicketId, agent: &Agent) -> Result<Said, StoreError> {
    let wake = Wake::Unsnoozed(agent.clone());
    let woke = app
        .store
        .wake(
            ticket,
            WakeIf::Snoozed,
            &Actor::Agent(agent.clone()),
            &wake.details(),
            &[],
            app.now_ms(),
        )
        .await?;
    if woke.is_some() {
        boards_moved(app);
    }
    Ok(match woke {
        Some(_) => Ok(wake_text(ticket, &wake, &[])),
        None => Err(format!("{agent}: {ticket} is not snoozed.")),
    })
}

/// The wake-up timer of the snooze that ends at `due_ms`: clears it and
/// calls the snoozer (and the owner) in the thread. A snooze changed,
/// cancelled or woken since leaves nothing to do; so does a second run.
pub(super) async fn wake_timer(
    app: &App,
    job: &Job,
    due_ms: i64,
) -> Result<StepOutcome, StoreError> {
    let now = app.now_ms();
    let record = match job.ticket {
        Some(t) => app.store.ticket(t).await?,
        None => None,
    };
    if let Some(record) = record
        && timer_stands(record.snooze.as_ref(), due_ms)
        && let Some(snooze) = &record.snooze
    {
        let wake = Wake::Timer;
        // A ticket closed while it slept stays closed: its snooze ends
        // without calling anyone back to it.
        let in_queue = !record.state.is_set_aside()
            && record.state.status() != crate::domain::ticket::Status::Closed;
        let notices: Vec<JobSpec> = if in_queue {
            let mention = wake_mentions(snooze, record.state.owner());
            let text = wake_text(record.id, &wake, &mention);
            app.platforms_for(&record.mailbox)
                .into_iter()
                .map(|platform| JobSpec::ChatMention {
                    platform,
                    text: text.clone(),
                    mentions: mention.iter().map(|a| a.as_str().to_owned()).collect(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let woke = app
            .store
            .wake(
                record.id,
                WakeIf::DueAt(due_ms),
                &Actor::System,
                &wake.details(),
                &notices,
                now,
            )
            .await?;
        if woke.is_some() {
            tracing::info!(ticket = %record.id, "snooze over");
            app.outbox_wakeup.notify_one();
            boards_moved(app);
        }
    }
    app.store.finish_job(job, &JobOutcome::Done, now).await?;
    Ok(StepOutcome::Done)
}
