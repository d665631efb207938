//! The outbox worker: performs queued jobs after their transaction committed.
//!
//! Delivery guarantees, per job kind:
//! - **SendReply is at-most-once.** The job is marked in flight before the
//!   SMTP transaction starts. Failures the server answered (4xx) or that
//!   happened before the message data left are retried with backoff; a 5xx
//!   is final. If the process dies mid-send, or the connection breaks after
//!   the data went out, the reply is marked *uncertain*, never re-sent
//!   automatically, and the thread is told; a customer never gets it twice.
//! - **Everything else is at-least-once with idempotent handlers**: filing in
//!   Sent checks the folder for the Message-ID first; chat posts carry a
//!   stable idempotency key.
//! - **A failing store never loses an answer nor repeats a send.** A store
//!   error before a job's outcome is known puts the job back in the queue.
//!   The server's answer to a send is retried into the store (busy, locked,
//!   reconnecting) for up to [`OUTCOME_PATIENCE`] and never handed back to
//!   the queue; if it still cannot be written, the job stays in flight and
//!   the next start marks it uncertain.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lettre::address::Envelope;
use tokio_util::sync::CancellationToken;

use super::{App, now_ms};
use crate::chat::{ChatError, FileUpload, TicketCard, truncate_chars};
use crate::domain::chat::Platform;
use crate::domain::render::{Rendering, fallback_notice};
use crate::mail::parse::{attachments_bytes, parse_email};
use crate::mail::smtp::SendError;
use crate::ops::metrics::{ChatErrorKind, ReplyFailure};
use crate::store::{
    EmailState, FilePart, Job, JobOutcome, JobSpec, Settlement, StoreError, TicketRecord,
};

/// What one step of the worker did (for tests and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub job: Job,
    pub outcome: StepOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Done,
    Retry { error: String, in_ms: i64 },
    Failed { error: String },
    Uncertain { error: String },
}

/// Time since `at_ms` (Unix ms), for latency metrics; zero if the clock
/// went back.
fn since(at_ms: i64) -> Duration {
    Duration::from_millis((now_ms() - at_ms).max(0) as u64)
}

/// Delay before attempt `attempts + 1`.
pub fn retry_delay(app: &App, attempts: u32) -> Duration {
    let o = &app.settings.outbox;
    ExponentialBuilder::default()
        .with_min_delay(o.retry_initial)
        .with_max_delay(o.retry_max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1) as usize)
        .unwrap_or(o.retry_max)
}

/// How long the outcome of a send is retried into an unavailable store.
const OUTCOME_PATIENCE: Duration = Duration::from_secs(300);
/// How long a job interrupted by a store error is retried back into the queue.
const RELEASE_PATIENCE: Duration = Duration::from_secs(30);

/// Runs `write` until it succeeds, retrying transient store errors (busy,
/// locked, connection lost) with backoff for up to `patience`.
async fn record<T, F, Fut>(what: &str, patience: Duration, mut write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match write().await {
            Err(e) if e.is_transient() && started.elapsed() < patience => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "recording {what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            r => return r,
        }
    }
}

/// Runs until `cancel` fires. Sleeps until the next job is due or a new one
/// is queued; the step in progress at cancellation is finished first.
pub async fn run(app: Arc<App>, cancel: CancellationToken) {
    let mut store_backoff = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        match run_once(&app).await {
            Ok(Some(_)) => {
                store_backoff = Duration::from_millis(200);
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "outbox: store unavailable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(store_backoff) => {}
                    _ = cancel.cancelled() => {}
                }
                store_backoff = (store_backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        }
        // Jobs may also be queued by another process (the CLI), so never
        // sleep longer than a second: one indexed query per second is cheap.
        let wait = match app.store.next_due_at().await {
            Ok(Some(due)) => Duration::from_millis((due - now_ms()).clamp(0, 1_000) as u64),
            _ => Duration::from_secs(1),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = app.outbox_wakeup.notified() => {}
            _ = cancel.cancelled() => {}
        }
    }
}

/// Takes and performs the next due job, if any.
pub async fn run_once(app: &App) -> Result<Option<Step>, StoreError> {
    let Some(job) = app.store.next_job(now_ms()).await? else {
        return Ok(None);
    };
    let span = tracing::info_span!("job", id = job.id, kind = job.spec.kind(), ticket = ?job.ticket.map(|t| t.get()));
    let outcome = match tracing::Instrument::instrument(perform(app, &job), span.clone()).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // The store failed before the job's outcome was known, so
            // nothing irreversible is unrecorded (a send's outcome never
            // lands here, see `send_reply`). Put the job back in the queue:
            // left in flight it would block its lane until the next start,
            // which would then call a reply that was never sent "uncertain".
            let release = JobOutcome::Retry {
                at_ms: now_ms(),
                error: e.to_string(),
            };
            let released = record("a job's release", RELEASE_PATIENCE, || {
                app.store.finish_job(&job, &release, now_ms())
            })
            .await;
            if let Err(e) = released {
                tracing::error!(job = job.id, error = %e, "could not put an interrupted job back; the next start will");
            }
            return Err(e);
        }
    };
    // Every job that did not simply succeed is said in the log, with why.
    let _enter = span.enter();
    match &outcome {
        StepOutcome::Done => {}
        StepOutcome::Retry { error, in_ms } => {
            tracing::warn!(%error, retry_in_ms = in_ms, attempt = job.attempts, "job will be retried")
        }
        StepOutcome::Failed { error } => tracing::error!(%error, "job failed; not retried"),
        StepOutcome::Uncertain { error } => {
            tracing::error!(%error, "job outcome uncertain; not retried")
        }
    }
    drop(_enter);
    Ok(Some(Step { job, outcome }))
}

async fn perform(app: &App, job: &Job) -> Result<StepOutcome, StoreError> {
    match &job.spec {
        JobSpec::SendReply { email_id } => send_reply(app, job, *email_id).await,
        JobSpec::FileSent { email_id } => file_sent(app, job, *email_id).await,
        JobSpec::ChatPost { platform, email_id } => {
            let r = chat_post(app, job, *platform, *email_id).await;
            finish_chat(app, job, *platform, r).await
        }
        JobSpec::ChatFile {
            platform,
            email_id,
            part,
        } => {
            let r = chat_file(app, job, *platform, *email_id, *part).await;
            finish_chat(app, job, *platform, r).await
        }
        JobSpec::ChatStatus { platform } => {
            let r = chat_status(app, job, *platform).await.map(done);
            finish_chat(app, job, *platform, r).await
        }
        JobSpec::ChatNotice { platform, text } => {
            let r = chat_notice(app, job, *platform, text).await.map(done);
            finish_chat(app, job, *platform, r).await
        }
        JobSpec::ChatRoomNotice {
            platform,
            room,
            text,
        } => {
            let r = match app.chats.get(platform) {
                Some(chat) => chat.room_notice(room, text).await.map(done),
                None => Err(missing(format!("{} is not configured", platform.as_str()))),
            };
            finish_chat(app, job, *platform, r).await
        }
    }
}

/// A chat job that did what it was for and leaves nothing behind.
fn done(_: ()) -> Settlement {
    Settlement::new(JobOutcome::Done)
}

async fn retry_or_fail(app: &App, job: &Job, error: String) -> Result<StepOutcome, StoreError> {
    let now = now_ms();
    if job.attempts >= app.settings.outbox.max_attempts {
        let error = format!("gave up after {} attempts: {error}", job.attempts);
        app.store
            .finish_job(
                job,
                &JobOutcome::Failed {
                    error: error.clone(),
                },
                now,
            )
            .await?;
        return Ok(StepOutcome::Failed { error });
    }
    let in_ms = retry_delay(app, job.attempts).as_millis() as i64;
    app.metrics.job_retried(job.spec.kind());
    app.store
        .finish_job(
            job,
            &JobOutcome::Retry {
                at_ms: now + in_ms,
                error: error.clone(),
            },
            now,
        )
        .await?;
    Ok(StepOutcome::Retry { error, in_ms })
}

async fn send_reply(app: &App, job: &Job, email_id: i64) -> Result<StepOutcome, StoreError> {
    let now = now_ms();
    let Some(mail) = app.store.outgoing(email_id).await? else {
        let error = format!("email {email_id} is missing");
        app.store
            .finish_job(
                job,
                &JobOutcome::Failed {
                    error: error.clone(),
                },
                now,
            )
            .await?;
        return Ok(StepOutcome::Failed { error });
    };
    if mail.state != EmailState::Queued {
        // Cancelled or already handled: nothing to send.
        app.store.finish_job(job, &JobOutcome::Done, now).await?;
        return Ok(StepOutcome::Done);
    }
    let notify = app.platforms_for(&mail.mailbox);
    let Some(mailbox) = app.mailbox(&mail.mailbox) else {
        let error = format!("mailbox {} is no longer configured", mail.mailbox);
        app.store
            .reply_failed(job, email_id, EmailState::Failed, &error, &notify, now)
            .await?;
        app.metrics
            .reply_failed(&mail.mailbox, ReplyFailure::Unsendable);
        return Ok(StepOutcome::Failed { error });
    };
    let parsed = parse_email(&mail.raw);
    let to: Vec<lettre::Address> = parsed
        .to
        .iter()
        .chain(parsed.cc.iter())
        .filter_map(|p| p.address.as_str().parse().ok())
        .collect();
    let from = mailbox
        .settings
        .address
        .as_str()
        .parse::<lettre::Address>()
        .ok();
    let envelope = match Envelope::new(from, to) {
        Ok(e) => e,
        Err(e) => {
            let error = format!("no usable recipients: {e}");
            app.store
                .reply_failed(job, email_id, EmailState::Failed, &error, &notify, now)
                .await?;
            app.metrics
                .reply_failed(&mail.mailbox, ReplyFailure::Unsendable);
            return Ok(StepOutcome::Failed { error });
        }
    };
    let sent = mailbox.mailer.send(&envelope, &mail.raw).await;
    // The server has answered (or the line went dead): that answer is the
    // only truth about the reply, so it must reach the store. A database
    // busy or restarting for a while must not lose it — the job would stay
    // in flight, nothing would be filed in Sent, and the next start would
    // report a delivered reply "uncertain". So store errors are retried, and
    // never hand the job back to the queue (that could send it twice).
    let outcome = match record("a send's outcome", OUTCOME_PATIENCE, || {
        settle_send(app, job, email_id, &notify, &sent)
    })
    .await
    {
        Ok(outcome) => outcome,
        Err(e) => {
            // Still in flight in the store: the next start marks it uncertain.
            let error =
                format!("the mail server answered, but the answer could not be recorded: {e}");
            tracing::error!(%error, "reply outcome not recorded; left in flight");
            return Ok(StepOutcome::Uncertain { error });
        }
    };
    match (&sent, &outcome) {
        (Ok(()), _) => {
            app.outbox_wakeup.notify_one();
            app.metrics
                .reply_sent(&mail.mailbox, since(job.created_at_ms));
            tracing::info!(message_id = %mail.message_id, "reply sent");
        }
        (Err(SendError::Transient(error)), outcome) => {
            tracing::warn!(%error, attempt = job.attempts, "reply not sent yet; will retry");
            if matches!(outcome, StepOutcome::Failed { .. }) {
                app.metrics
                    .reply_failed(&mail.mailbox, ReplyFailure::RetriesExhausted);
            }
        }
        (Err(SendError::Permanent(error)), _) => {
            tracing::warn!(%error, "reply refused by the mail server");
            app.metrics
                .reply_failed(&mail.mailbox, ReplyFailure::Refused);
        }
        (Err(SendError::Uncertain(error)), _) => {
            tracing::error!(%error, "connection lost after the reply was handed over; not retrying");
            app.metrics
                .reply_failed(&mail.mailbox, ReplyFailure::Uncertain);
        }
    }
    Ok(outcome)
}

/// Records the server's answer to a send. Safe to run again after a store
/// error: each write is one transaction that either happened or did not.
async fn settle_send(
    app: &App,
    job: &Job,
    email_id: i64,
    notify: &[Platform],
    sent: &Result<(), SendError>,
) -> Result<StepOutcome, StoreError> {
    match sent {
        Ok(()) => {
            app.store
                .reply_sent(job, email_id, notify, now_ms())
                .await?;
            Ok(StepOutcome::Done)
        }
        Err(SendError::Transient(error)) => {
            let outcome = retry_or_fail(app, job, error.clone()).await?;
            if let StepOutcome::Failed { error } = &outcome {
                app.store
                    .reply_failed(job, email_id, EmailState::Failed, error, notify, now_ms())
                    .await?;
            }
            Ok(outcome)
        }
        Err(SendError::Permanent(error)) => {
            app.store
                .reply_failed(job, email_id, EmailState::Failed, error, notify, now_ms())
                .await?;
            Ok(StepOutcome::Failed {
                error: error.clone(),
            })
        }
        Err(SendError::Uncertain(error)) => {
            app.store
                .reply_failed(
                    job,
                    email_id,
                    EmailState::Uncertain,
                    error,
                    notify,
                    now_ms(),
                )
                .await?;
            Ok(StepOutcome::Uncertain {
                error: error.clone(),
            })
        }
    }
}

async fn file_sent(app: &App, job: &Job, email_id: i64) -> Result<StepOutcome, StoreError> {
    let Some(mail) = app.store.outgoing(email_id).await? else {
        let error = format!("email {email_id} is missing");
        app.store
            .finish_job(
                job,
                &JobOutcome::Failed {
                    error: error.clone(),
                },
                now_ms(),
            )
            .await?;
        return Ok(StepOutcome::Failed { error });
    };
    let Some(mailbox) = app.mailbox(&mail.mailbox) else {
        let error = format!("mailbox {} is no longer configured", mail.mailbox);
        app.store
            .finish_job(
                job,
                &JobOutcome::Failed {
                    error: error.clone(),
                },
                now_ms(),
            )
            .await?;
        return Ok(StepOutcome::Failed { error });
    };
    match mailbox
        .filer
        .file(&mail.message_id, &mail.raw, mail.answers.as_ref())
        .await
    {
        Ok(()) => {
            app.store
                .finish_job(job, &JobOutcome::Done, now_ms())
                .await?;
            Ok(StepOutcome::Done)
        }
        Err(e) if e.is_transient() => retry_or_fail(app, job, e.to_string()).await,
        Err(e) => {
            // The reply went out; only its copy in Sent is missing. The
            // thread is told, so nobody looks for it there in vain.
            let error = e.to_string();
            let mut settlement = Settlement::new(JobOutcome::Failed {
                error: error.clone(),
            });
            settlement.audit = Some(("file-sent-failed", error.clone()));
            let text = format!(
                "⚠️ The reply <{}> was sent, but could not be saved in the mailbox's Sent folder: {error}",
                mail.message_id
            );
            settlement.follow_ons = app
                .platforms_for(&mail.mailbox)
                .into_iter()
                .map(|platform| JobSpec::ChatNotice {
                    platform,
                    text: text.clone(),
                })
                .collect();
            app.store.settle_job(job, &settlement, now_ms()).await?;
            Ok(StepOutcome::Failed { error })
        }
    }
}

async fn finish_chat(
    app: &App,
    job: &Job,
    platform: Platform,
    r: Result<Settlement, ChatError>,
) -> Result<StepOutcome, StoreError> {
    let error = match r {
        Ok(settlement) => {
            app.store.settle_job(job, &settlement, now_ms()).await?;
            return Ok(StepOutcome::Done);
        }
        Err(e) => e,
    };
    let kind = match &error {
        ChatError::Transient { .. } => ChatErrorKind::Transient,
        ChatError::Permanent { .. } => ChatErrorKind::Permanent,
    };
    app.metrics.chat_error(platform, kind);
    let error = match error {
        ChatError::Transient {
            message,
            retry_after_ms: Some(after),
        } => {
            // The platform told us when: honour it exactly, not our backoff.
            let now = now_ms();
            app.metrics.job_retried(job.spec.kind());
            let retry = JobOutcome::Retry {
                at_ms: now + after as i64,
                error: message.clone(),
            };
            app.store.finish_job(job, &retry, now).await?;
            return Ok(StepOutcome::Retry {
                error: message,
                in_ms: after as i64,
            });
        }
        ChatError::Transient { message, .. } if job.attempts < app.settings.outbox.max_attempts => {
            return retry_or_fail(app, job, message).await;
        }
        ChatError::Transient { message, .. } => {
            format!("gave up after {} attempts: {message}", job.attempts)
        }
        ChatError::Permanent { message } => message,
    };
    let settlement = undelivered(app, job, platform, &error).await;
    app.store.settle_job(job, &settlement, now_ms()).await?;
    Ok(StepOutcome::Failed { error })
}

/// How a chat job that failed for good is recorded. An email that could
/// not be posted is never silent: the room is told (once, through the
/// outbox), the audit log and the metric say so, and the job stays in
/// `mailroom outbox list` for `mailroom outbox retry`.
async fn undelivered(app: &App, job: &Job, platform: Platform, error: &str) -> Settlement {
    let mut settlement = Settlement::new(JobOutcome::Failed {
        error: error.to_owned(),
    });
    let JobSpec::ChatPost { email_id, .. } = job.spec else {
        return settlement;
    };
    app.metrics.post_failed(platform);
    let Some(ticket_id) = job.ticket else {
        return settlement;
    };
    settlement.audit = Some((
        "chat-post-failed",
        format!(
            "email {email_id} could not be posted to {} (outbox job {}): {error}",
            platform.as_str(),
            job.id
        ),
    ));
    // Who wrote and about what, for the room's notice; best effort.
    let ticket = app.store.ticket(ticket_id).await.ok().flatten();
    let room = ticket
        .as_ref()
        .and_then(|t| app.chat_room(&t.mailbox, platform));
    let about = match app.store.raw_email(email_id).await {
        Ok(Some(raw)) => {
            let view = parse_email(&raw).view();
            format!(
                " (from {}, “{}”)",
                crate::chat::clip(&view.from.address.to_string(), 200),
                crate::chat::clip(&view.subject, 200)
            )
        }
        _ => String::new(),
    };
    if let Some(room) = room {
        let n = ticket_id.get();
        settlement.follow_ons.push(JobSpec::ChatRoomNotice {
            platform,
            room,
            text: format!(
                "⚠️ An email of ticket {ticket_id}{about} could not be posted here: {error}\n\
                 It is kept: `mailroom tickets show {n}` shows it, `mailroom outbox list` lists \
                 the failed post, and `mailroom outbox retry {}` posts it again once the cause is fixed.",
                job.id
            ),
        });
    }
    settlement
}

fn missing(what: impl Into<String>) -> ChatError {
    ChatError::Permanent {
        message: what.into(),
    }
}

fn store_err(e: StoreError) -> ChatError {
    if e.is_transient() {
        ChatError::Transient {
            message: e.to_string(),
            retry_after_ms: None,
        }
    } else {
        ChatError::Permanent {
            message: e.to_string(),
        }
    }
}

/// The platform and the ticket a chat job is about.
async fn chat_target<'a>(
    app: &'a App,
    job: &Job,
    platform: Platform,
) -> Result<(&'a Arc<dyn crate::chat::ChatPlatform>, TicketRecord), ChatError> {
    let chat = app
        .chats
        .get(&platform)
        .ok_or_else(|| missing(format!("{} is not configured", platform.as_str())))?;
    let ticket_id = job.ticket.ok_or_else(|| missing("job has no ticket"))?;
    let ticket = app
        .store
        .ticket(ticket_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| missing("ticket is gone"))?;
    Ok((chat, ticket))
}

/// A key that is the same for every attempt of one job and never the same
/// for two jobs. Job ids alone restart at 1 with a new database while the
/// chat device (and the homeserver's memory of its transaction ids) lives
/// on; the ticket's random token keeps keys from two databases apart.
fn idempotency_key(ticket: &TicketRecord, job: &Job) -> String {
    format!("mailroom-{}-{}", ticket.token, job.id)
}

/// What a ticket's root message shows of it.
fn card<'a>(app: &'a App, ticket: &'a TicketRecord) -> Result<TicketCard<'a>, ChatError> {
    let mailbox = app
        .mailbox(&ticket.mailbox)
        .ok_or_else(|| missing("mailbox is not configured"))?;
    Ok(TicketCard {
        ticket: ticket.id,
        mailbox_display_name: &mailbox.settings.display_name,
        state: &ticket.state,
        tags: ticket.tags.iter().map(|t| t.to_string()).collect(),
    })
}

/// Runs `post` at each [`Rendering`] until the platform takes one: a
/// refusal (a permanent error) is met by the next level down, a transient
/// error ends the attempt so the job is retried. Returns what the post
/// returned, the level shown and the refusals met on the way.
async fn degrade<T, F, Fut>(
    what: &str,
    mut post: F,
) -> Result<(T, Rendering, Vec<(Rendering, String)>), ChatError>
where
    F: FnMut(Rendering) -> Fut,
    Fut: Future<Output = Result<T, ChatError>>,
{
    let mut refusals = Vec::new();
    let mut level = Rendering::Full;
    loop {
        match post(level).await {
            Ok(v) => return Ok((v, level, refusals)),
            Err(ChatError::Permanent { message }) => {
                tracing::warn!(rendering = level.as_str(), error = %message, "{what} refused");
                refusals.push((level, message));
                match level.fallback() {
                    Some(next) => level = next,
                    None => {
                        let all: Vec<String> = refusals
                            .iter()
                            .map(|(l, m)| format!("{}: {m}", l.as_str()))
                            .collect();
                        return Err(missing(format!(
                            "every rendering was refused ({})",
                            all.join("; ")
                        )));
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Posts an email: a new ticket's root, or a follow-up in its thread. The
/// post falls back to plainer renderings rather than fail; the files are
/// queued as jobs of their own once the post is in the room, so a file
/// the server refuses never keeps the email out of it.
async fn chat_post(
    app: &App,
    job: &Job,
    platform: Platform,
    email_id: i64,
) -> Result<Settlement, ChatError> {
    let (chat, ticket) = chat_target(app, job, platform).await?;
    let ticket_id = ticket.id;
    let raw = app
        .store
        .raw_email(email_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| missing("email is gone"))?;
    let parsed = parse_email(&raw);
    // The raw mail is not needed for posting.
    drop(raw);
    // Automatic mail (auto-replies, bounces, list mail) is filed in the thread
    // but calls nobody: RFC 3834 says it must not trigger anything automatic,
    // and an out-of-office is no reason to ping the ticket's owner.
    let owner = match parsed.auto {
        Some(_) => None,
        None => ticket.state.owner(),
    };
    let view = parsed.view();
    let key = idempotency_key(&ticket, job);
    let existing = app
        .store
        .chat_thread(ticket_id, platform)
        .await
        .map_err(store_err)?;
    let (new_thread, shown, refusals) = match existing {
        Some(thread) => {
            let (_, shown, refusals) = degrade("follow-up", |r| {
                let key = format!("{key}{}", r.key_suffix());
                let (thread, view) = (&thread, &view);
                async move {
                    chat.post_follow_up(thread, ticket_id, view, owner, r, &key)
                        .await
                }
            })
            .await?;
            (None, shown, refusals)
        }
        None => {
            let room = app.chat_room(&ticket.mailbox, platform).ok_or_else(|| {
                missing(format!(
                    "mailbox {} has no {} target",
                    ticket.mailbox,
                    platform.as_str()
                ))
            })?;
            let card = card(app, &ticket)?;
            let (thread, shown, refusals) = degrade("ticket root", |r| {
                let key = format!("{key}{}", r.key_suffix());
                let (room, card, view) = (&room, &card, &view);
                async move { chat.post_ticket(room, card, view, r, &key).await }
            })
            .await?;
            app.metrics.thread_posted(platform);
            (Some(thread), shown, refusals)
        }
    };
    // The job was queued in the transaction that stored the email.
    app.metrics.posted(platform, since(job.created_at_ms));
    let mut settlement = Settlement::new(JobOutcome::Done);
    settlement.thread = new_thread;
    if !refusals.is_empty() {
        app.metrics.post_degraded(platform, shown);
        let text = fallback_notice(shown, &refusals);
        settlement.audit = Some(("chat-post-degraded", text.clone()));
        settlement
            .follow_ons
            .push(JobSpec::ChatNotice { platform, text });
    }
    // The files follow the post: the full text when the post could not
    // show all of it, then every attachment not inline in the text and
    // under the upload cap (the others are listed in the post).
    let cut = truncate_chars(&view.body, chat.body_limit()).1;
    if (cut || shown == Rendering::Minimal) && !view.full_text.trim().is_empty() {
        settlement.follow_ons.push(JobSpec::ChatFile {
            platform,
            email_id,
            part: FilePart::FullText,
        });
    }
    let cap = app.settings.chat.max_attachment_bytes;
    settlement.follow_ons.extend(
        view.attachments
            .iter()
            .enumerate()
            .filter(|(_, a)| a.size <= cap && !a.inline)
            .map(|(index, _)| JobSpec::ChatFile {
                platform,
                email_id,
                part: FilePart::Attachment { index },
            }),
    );
    Ok(settlement)
}

/// Uploads one file of an email into its ticket's thread. A file the
/// server will not take is skipped with a line in the thread saying which
/// and why; the job is then done.
async fn chat_file(
    app: &App,
    job: &Job,
    platform: Platform,
    email_id: i64,
    part: FilePart,
) -> Result<Settlement, ChatError> {
    let (chat, ticket) = chat_target(app, job, platform).await?;
    let Some(thread) = app
        .store
        .chat_thread(ticket.id, platform)
        .await
        .map_err(store_err)?
    else {
        return Err(missing("the ticket has no thread to upload into"));
    };
    let raw = app
        .store
        .raw_email(email_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| missing("email is gone"))?;
    let view = parse_email(&raw).view();
    let cap = app.settings.chat.max_attachment_bytes;
    let file = match part {
        FilePart::FullText => Ok(FileUpload {
            name: "full-message.txt".into(),
            content_type: "text/plain; charset=utf-8".into(),
            data: view.full_text.into_bytes(),
        }),
        FilePart::Attachment { index } => {
            let meta = view
                .attachments
                .get(index)
                .ok_or_else(|| missing(format!("attachment {index} is not in the email")))?;
            let data = attachments_bytes(&raw, &[index], cap)
                .into_iter()
                .next()
                .map(|(_, data)| data);
            match data {
                Some(data) => Ok(FileUpload {
                    name: meta.name.clone(),
                    content_type: meta.content_type.clone(),
                    data,
                }),
                None => Err((
                    meta.name.clone(),
                    meta.size,
                    "its content could not be read from the stored mail".to_owned(),
                )),
            }
        }
    };
    drop(raw);
    let key = idempotency_key(&ticket, job);
    let (name, size, why) = match file {
        // An empty file has nothing to show, and servers refuse it (Synapse:
        // "Request must specify a Content-Length"; Slack wants a length).
        Ok(file) if file.data.is_empty() => (file.name, 0, "the file is empty".to_owned()),
        Ok(file) => {
            let (name, size) = (file.name.clone(), file.data.len() as u64);
            match chat.upload(&thread, file, &key).await {
                Ok(()) => return Ok(Settlement::new(JobOutcome::Done)),
                Err(ChatError::Permanent { message }) => (name, size, message),
                Err(e) => return Err(e),
            }
        }
        Err(skipped) => skipped,
    };
    let name = if name.trim().is_empty() {
        "(no name)".to_owned()
    } else {
        crate::chat::clip(&name, 200).into_owned()
    };
    let text = format!(
        "📎 Attachment `{name}` ({}) could not be uploaded: {why}. It is kept with the mail: `mailroom tickets export {} --format eml` has it.",
        crate::chat::human_size(size),
        ticket.id.get()
    );
    // Said in the thread before the job ends; a retry says it under the
    // same key, so never twice.
    chat.notice(&thread, &text, &format!("{key}-refused"))
        .await?;
    app.metrics.file_refused(platform);
    let mut settlement = Settlement::new(JobOutcome::Done);
    settlement.audit = Some(("attachment-not-uploaded", text));
    Ok(settlement)
}

async fn chat_status(app: &App, job: &Job, platform: Platform) -> Result<(), ChatError> {
    let (chat, ticket) = chat_target(app, job, platform).await?;
    let ticket_id = ticket.id;
    let Some(thread) = app
        .store
        .chat_thread(ticket_id, platform)
        .await
        .map_err(store_err)?
    else {
        // The root is not posted yet: it will show the current status when it is.
        return Ok(());
    };
    // The root shows the ticket's first email; the edit must carry all of it.
    let emails = app.store.emails(ticket_id).await.map_err(store_err)?;
    let first = emails
        .iter()
        .find(|e| e.direction == crate::domain::email::Direction::Inbound)
        .ok_or_else(|| missing("ticket has no email"))?;
    let raw = app
        .store
        .raw_email(first.id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| missing("email is gone"))?;
    let view = parse_email(&raw).view();
    drop(raw);
    let card = card(app, &ticket)?;
    // The edit falls back like the post did, so a root that could only be
    // posted plainly still gets its status line.
    degrade("status edit", |r| {
        let (thread, card, view) = (&thread, &card, &view);
        async move { chat.update_card(thread, card, view, r).await }
    })
    .await?;
    Ok(())
}

async fn chat_notice(
    app: &App,
    job: &Job,
    platform: Platform,
    text: &str,
) -> Result<(), ChatError> {
    let (chat, ticket) = chat_target(app, job, platform).await?;
    let ticket_id = ticket.id;
    let Some(thread) = app
        .store
        .chat_thread(ticket_id, platform)
        .await
        .map_err(store_err)?
    else {
        // Jobs of a platform run in order, so the ticket's post came before
        // this notice: no thread means it could not be posted (the room
        // was told). The notice still reaches the team, in the room.
        let room = app
            .chat_room(&ticket.mailbox, platform)
            .ok_or_else(|| missing("the ticket has no thread and its mailbox no room"))?;
        return chat
            .room_notice(&room, &format!("{}: {text}", ticket.id))
            .await;
    };
    chat.notice(&thread, text, &idempotency_key(&ticket, job))
        .await
}

/// After a restart: say what was interrupted. Sends left in flight are now
/// `uncertain`; tell the audit log and the thread, and never re-send them.
pub async fn report_recovered(app: &App, jobs: Vec<Job>) {
    for job in jobs {
        if let JobSpec::SendReply { email_id } = job.spec {
            let notify = app.platforms_for_ticket(job.ticket).await;
            let error = "mailroom stopped while this reply was being handed to the mail server";
            match app
                .store
                .reply_failed(
                    &job,
                    email_id,
                    EmailState::Uncertain,
                    error,
                    &notify,
                    now_ms(),
                )
                .await
            {
                Ok(()) => tracing::error!(
                    email_id,
                    "reply interrupted mid-send; marked uncertain, not re-sent"
                ),
                Err(e) => {
                    tracing::error!(email_id, error = %e, "could not record an interrupted send")
                }
            }
        } else {
            tracing::info!(
                job = job.id,
                kind = job.spec.kind(),
                "resuming job interrupted by the last stop"
            );
        }
    }
}

impl App {
    /// The room (Matrix) or channel (Slack) a mailbox posts to.
    fn chat_room(
        &self,
        mailbox: &crate::domain::ids::MailboxName,
        platform: Platform,
    ) -> Option<String> {
        let m = self.mailbox(mailbox)?;
        match platform {
            Platform::Matrix => m.settings.chat.matrix_room.clone(),
            Platform::Slack => m.settings.chat.slack_channel.clone(),
        }
    }

    async fn platforms_for_ticket(
        &self,
        ticket: Option<crate::domain::ids::TicketId>,
    ) -> Vec<Platform> {
        let Some(t) = ticket else { return Vec::new() };
        match self.store.ticket(t).await {
            Ok(Some(rec)) => self.platforms_for(&rec.mailbox),
            _ => Vec::new(),
        }
    }
}
