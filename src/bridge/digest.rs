//! The daily digest (`[[digest]]`): a timer per mailbox and platform, each
//! run posting one digest in the mailbox's room and queueing the next one.
//! A day's digest is posted once (a mark per mailbox, platform and day),
//! and after downtime the last missed one is posted late, once, never one
//! per missed day.

use jiff::{SignedDuration, Timestamp};

use super::App;
use super::outbox::StepOutcome;
use crate::config::digest::DigestSettings;
use crate::domain::chat::Platform;
use crate::domain::digest::{DigestTicket, build};
use crate::domain::ticket::Status;
use crate::store::{Job, JobOutcome, JobSpec, JobState, Settlement, StoreError, TicketFilter};

/// A digest posted more than this long after its time says it is late.
const LATE_AFTER: SignedDuration = SignedDuration::from_mins(15);

fn settings<'a>(app: &'a App, mailbox: &str) -> Option<&'a DigestSettings> {
    app.settings
        .digests
        .iter()
        .find(|d| d.mailbox.as_ref().is_some_and(|m| m.as_str() == mailbox))
}

/// At start: every digest has its timer on each platform its mailbox posts
/// to; one left from before a stop is kept (it catches up when it runs).
pub async fn ensure_timers(app: &App) -> Result<(), StoreError> {
    let waiting = app
        .store
        .jobs(&[JobState::Pending, JobState::InFlight])
        .await?;
    let now = app.clock.now();
    for d in &app.settings.digests {
        let (Some(mailbox), Some(schedule)) = (&d.mailbox, &d.schedule) else {
            continue;
        };
        for platform in app.platforms_for(mailbox) {
            let queued = waiting.iter().any(|j| {
                matches!(&j.spec, JobSpec::Digest { mailbox: m, platform: p, .. }
                    if m == mailbox.as_str() && *p == platform)
            });
            if queued {
                continue;
            }
            let Some(next) = schedule.next_after(now) else {
                continue;
            };
            let due_ms = next.as_millisecond();
            let spec = JobSpec::Digest {
                mailbox: mailbox.as_str().to_owned(),
                platform,
                due_ms,
            };
            app.store.enqueue(None, &spec, due_ms, app.now_ms()).await?;
            tracing::info!(%mailbox, platform = platform.as_str(), at = %next, "digest scheduled");
        }
    }
    Ok(())
}

/// The digest timer of `mailbox` on `platform`.
pub(super) async fn digest_timer(
    app: &App,
    job: &Job,
    mailbox: &str,
    platform: Platform,
) -> Result<StepOutcome, StoreError> {
    let now = app.clock.now();
    let mut settlement = Settlement::new(JobOutcome::Done);
    // A digest taken out of the config ends its chain here.
    if let Some(d) = settings(app, mailbox)
        && let (Some(name), Some(schedule)) = (&d.mailbox, &d.schedule)
    {
        // The last digest time up to now: this timer's own, or, when
        // mailroom was down, the latest one missed (only that one).
        if let Some(at) = schedule.last_at_or_before(now)
            && let Some(room) = app.chat_room(name, platform)
        {
            let day = schedule.day_of(at);
            let late = (now.duration_since(at) > LATE_AFTER)
                .then(|| schedule.zone.at(at).strftime("%a %-d %b %H:%M").to_string());
            let tickets = live_tickets(app, name).await?;
            let heading = app
                .mailbox(name)
                .map(|m| m.settings.display_name.clone())
                .unwrap_or_else(|| name.to_string());
            let digest = build(&heading, day, &tickets, now, d.top, late.as_deref());
            settlement.follow_ons.push(JobSpec::ChatRoomNotice {
                platform,
                room,
                text: digest.text,
            });
            settlement.once = Some(format!("digest:{name}:{}:{day}", platform.as_str()));
        }
        if let Some(next) = schedule.next_after(now) {
            let due_ms = next.as_millisecond();
            settlement.timers.push((
                JobSpec::Digest {
                    mailbox: name.as_str().to_owned(),
                    platform,
                    due_ms,
                },
                due_ms,
            ));
        }
    }
    app.store.settle_job(job, &settlement, app.now_ms()).await?;
    app.outbox_wakeup.notify_one();
    Ok(StepOutcome::Done)
}

/// The mailbox's tickets that are not closed or set aside.
async fn live_tickets(
    app: &App,
    mailbox: &crate::domain::ids::MailboxName,
) -> Result<Vec<DigestTicket>, StoreError> {
    let mut out = Vec::new();
    for status in [Status::Open, Status::Claimed, Status::Pending] {
        let filter = TicketFilter {
            status: Some(status),
            mailbox: Some(mailbox.clone()),
            limit: Some(100_000),
            ..TicketFilter::default()
        };
        for t in app.store.list_tickets(&filter).await? {
            // The clock as the card shows it; a store error leaves this
            // ticket's SLA out of the digest rather than the digest out.
            let sla = match super::sla::ticket_clock(app, &t).await {
                Ok(clock) => clock.map(|(_, c, _)| (c.state, c.due_at)),
                Err(e) => {
                    tracing::warn!(ticket = %t.id, error = %e, "SLA left out of the digest");
                    None
                }
            };
            out.push(DigestTicket {
                sla,
                id: t.id,
                customer: t.customer.to_string(),
                subject: t.subject,
                created_at: Timestamp::from_millisecond(t.created_at_ms)
                    .unwrap_or(Timestamp::UNIX_EPOCH),
                snoozed: t.snooze.is_some(),
                state: t.state,
            });
        }
    }
    Ok(out)
}
