//! SLA timers: a ticket's clock (`domain::sla`) computed from the store's
//! facts, the mailbox's calendar and the policy that holds for the ticket;
//! checks queued as outbox timers at the nudge and breach instants; and
//! what a check says — a nudge in the thread, a breach in the room with its
//! mentions — once each per clock.
//!
//! A check is queued due now whenever the facts change (a new ticket, a
//! customer mail, a status change) and at start for every active ticket;
//! each check queues the next one at the clock's next instant. Checks
//! decide from what the ticket is when they run, so a stale one (the
//! ticket was answered, paused, or its due time moved) says nothing. No
//! check sends mail.

use super::App;
use super::outbox::StepOutcome;
use crate::domain::chat::{Platform, thread_link};
use crate::domain::ids::TicketId;
use crate::domain::sla::{History, Mention, Policy, Response, SlaClock, SlaState, clock, human};
use crate::domain::ticket::Status;
use crate::store::{
    Job, JobOutcome, JobSpec, SlaFiring, SlaMark, SlaRecord, StoreError, TicketFilter, TicketRecord,
};

/// The ticket's history as the clock reads it ([`SlaRecord::history`]).
pub fn history(ticket: &TicketRecord, rec: &SlaRecord) -> History {
    rec.history(ticket)
}

/// The policy holding for a ticket, if any.
pub fn policy<'a>(app: &'a App, ticket: &TicketRecord) -> Option<&'a Policy> {
    app.settings
        .sla
        .for_ticket(&ticket.mailbox, ticket.priority, ticket.tags.iter())
}

/// The ticket's SLA clock now, with the policy and the stored record.
pub async fn ticket_clock<'a>(
    app: &'a App,
    ticket: &TicketRecord,
) -> Result<Option<(&'a Policy, SlaClock, SlaRecord)>, StoreError> {
    let Some(policy) = policy(app, ticket) else {
        return Ok(None);
    };
    let Some(calendar) = app.settings.calendars.get(&ticket.mailbox) else {
        return Ok(None);
    };
    let rec = app.store.sla_record(ticket.id).await?;
    let now = app.clock.now();
    Ok(clock(policy, calendar, &history(ticket, &rec), now).map(|c| (policy, c, rec)))
}

/// The card's SLA line ("First response due in 3h 20m (business hours)");
/// `None` without a running or met clock. Never fails a post: a store
/// error leaves the line out.
pub async fn card_line(app: &App, ticket: &TicketRecord) -> Option<String> {
    match ticket_clock(app, ticket).await {
        Ok(Some((_, c, _))) => Some(c.to_string()),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(ticket = %ticket.id, error = %e, "SLA line left out of the card");
            None
        }
    }
}

/// Queues a check of the ticket due now (its facts changed). Without
/// `[[sla]]` nothing is queued. A failure is logged: the check at the next
/// start catches up.
pub async fn recheck(app: &App, ticket: TicketId) {
    if app.settings.sla.is_empty() {
        return;
    }
    let now = app.now_ms();
    match app.store.sla_schedule(ticket, now, now).await {
        Ok(_) => app.outbox_wakeup.notify_one(),
        Err(e) => {
            tracing::warn!(%ticket, error = %e, "SLA check not queued; the next start queues it")
        }
    }
}

/// A teammate's reply went out: the card's SLA line ("… due in 2h") is
/// refreshed to say it was given. Only for tickets a policy holds for;
/// a refresh lost to a store error is logged (the next status change
/// refreshes the card anyway).
pub async fn answered(app: &App, ticket: Option<TicketId>) {
    let Some(id) = ticket else { return };
    if app.settings.sla.is_empty() {
        return;
    }
    let record = match app.store.ticket(id).await {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(ticket = %id, error = %e, "card not refreshed after a reply");
            return;
        }
    };
    if policy(app, &record).is_none() {
        return;
    }
    let now = app.now_ms();
    for platform in app.platforms_for(&record.mailbox) {
        let spec = JobSpec::ChatStatus { platform };
        if let Err(e) = app.store.enqueue(Some(id), &spec, now, now).await {
            tracing::warn!(ticket = %id, error = %e, "card not refreshed after a reply");
        }
    }
    app.outbox_wakeup.notify_one();
}

/// At start: a check for every active ticket, so a clock whose timer was
/// lost (a crash between a commit and its check being queued, a changed
/// policy) is caught up.
pub async fn check_all(app: &App) {
    if app.settings.sla.is_empty() {
        return;
    }
    for status in [Status::Open, Status::Claimed, Status::Pending] {
        let filter = TicketFilter {
            status: Some(status),
            limit: Some(10_000),
            ..TicketFilter::default()
        };
        match app.store.list_tickets(&filter).await {
            Ok(tickets) => {
                for t in tickets {
                    recheck(app, t.id).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "SLA checks at start skipped"),
        }
    }
}

/// Performs an SLA check (a [`JobSpec::SlaCheck`]).
pub(super) async fn perform(app: &App, job: &Job) -> Result<StepOutcome, StoreError> {
    let now = app.now_ms();
    let ticket = match job.ticket {
        Some(id) => app.store.ticket(id).await?,
        None => None,
    };
    let Some(ticket) = ticket else {
        app.store.finish_job(job, &JobOutcome::Done, now).await?;
        return Ok(StepOutcome::Done);
    };
    let Some((policy, clock, rec)) = ticket_clock(app, &ticket).await? else {
        app.store.finish_job(job, &JobOutcome::Done, now).await?;
        return Ok(StepOutcome::Done);
    };
    let start = clock.started_at.as_millisecond();
    let platforms = app.platforms_for(&ticket.mailbox);
    let mut firings = Vec::new();
    match clock.state {
        SlaState::Breached if !rec.marked(start, SlaMark::Breach) => {
            let mut jobs = Vec::new();
            for &platform in &platforms {
                let thread = app.store.chat_thread(ticket.id, platform).await?;
                let room = thread
                    .as_ref()
                    .map(|t| t.room.clone())
                    .or_else(|| app.chat_room(&ticket.mailbox, platform));
                let Some(room) = room else { continue };
                let workspace = app.slack_workspace();
                let link = thread
                    .as_ref()
                    .and_then(|t| thread_link(t, workspace.as_deref()));
                let (room_mention, users) = callout(policy, platform);
                jobs.push(JobSpec::ChatAlert {
                    platform,
                    room,
                    text: breach_text(&ticket, &clock, link.as_deref()),
                    room_mention,
                    users,
                });
                jobs.push(JobSpec::ChatNotice {
                    platform,
                    text: format!(
                        "🚨 {} target of {} passed (business hours); the room was told.",
                        capital(clock.response),
                        human(clock.target)
                    ),
                });
                jobs.push(JobSpec::ChatStatus { platform });
            }
            firings.push(SlaFiring {
                mark: SlaMark::Breach,
                clock_start_ms: start,
                jobs,
            });
        }
        SlaState::AtRisk if !rec.marked(start, SlaMark::Nudge) => {
            let text = nudge_text(&clock);
            let jobs = platforms
                .iter()
                .flat_map(|&platform| {
                    [
                        JobSpec::ChatNotice {
                            platform,
                            text: text.clone(),
                        },
                        JobSpec::ChatStatus { platform },
                    ]
                })
                .collect();
            firings.push(SlaFiring {
                mark: SlaMark::Nudge,
                clock_start_ms: start,
                jobs,
            });
        }
        _ => {}
    }
    // The next instant something may be said; a clock paused or met has none.
    let nudged =
        rec.marked(start, SlaMark::Nudge) || firings.iter().any(|f| f.mark == SlaMark::Nudge);
    let breached =
        rec.marked(start, SlaMark::Breach) || firings.iter().any(|f| f.mark == SlaMark::Breach);
    let next = [
        clock
            .nudge_at
            .filter(|_| !nudged && clock.state == SlaState::OnTrack),
        clock
            .due_at
            .filter(|_| !breached && clock.state != SlaState::Breached),
    ]
    .into_iter()
    .flatten()
    .map(|t| t.as_millisecond())
    .filter(|t| *t > now)
    .min();
    let set = app.store.sla_settle(job, &firings, next, now).await?;
    if !set.is_empty() {
        app.outbox_wakeup.notify_one();
        tracing::info!(ticket = %ticket.id, marks = ?set, "SLA {}", clock.state.as_str());
    }
    Ok(StepOutcome::Done)
}

fn capital(r: Response) -> &'static str {
    match r {
        Response::First => "First response",
        Response::Next => "Next response",
    }
}

/// "⏰ 1h left to first response (75% of 4h)".
fn nudge_text(c: &SlaClock) -> String {
    let pct = c.nudge_percent.unwrap_or(0);
    format!(
        "⏰ {} left to {} ({pct}% of {}, business hours)",
        human(c.left),
        c.response.as_str(),
        human(c.target)
    )
}

fn breach_text(t: &TicketRecord, c: &SlaClock, link: Option<&str>) -> String {
    let mut text = format!(
        "🚨 SLA breached: ticket {} “{}” ({}) has had no {} for {} of business time (target {}).",
        t.id,
        crate::chat::clip(&t.subject, 200),
        t.customer,
        c.response.as_str(),
        human(c.elapsed),
        human(c.target),
    );
    if let Some(link) = link {
        text.push(' ');
        text.push_str(link);
    }
    text
}

/// Who a breach calls on `platform`: the room, and the users with an id
/// there (a person without one is named in no mention).
fn callout(policy: &Policy, platform: Platform) -> (bool, Vec<String>) {
    let room = policy.mention.contains(&Mention::Room);
    let users = policy
        .mention
        .iter()
        .filter_map(|m| match m {
            Mention::Room => None,
            Mention::Person(p) => match platform {
                Platform::Matrix => p.matrix.as_ref(),
                Platform::Slack => p.slack.as_ref(),
            },
        })
        .map(|a| a.as_str().to_owned())
        .collect();
    (room, users)
}
