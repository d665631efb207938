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
//!   reconnecting) for up to `OUTCOME_PATIENCE` (five minutes) and never handed back to
//!   the queue; if it still cannot be written, the job stays in flight and
//!   the next start marks it uncertain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lettre::address::Envelope;
use tokio_util::sync::CancellationToken;

mod chat;
mod outage;
mod sent_reply;

pub use self::outage::{ChatOutages, Resumed};

use self::chat::{
    chat_file, chat_mention, chat_notice, chat_post, chat_status, done, finish_chat, missing,
};
use self::sent_reply::chat_sent_reply;
use super::{App, now_ms};
use crate::domain::chat::Platform;
use crate::mail::parse::parse_email;
use crate::mail::smtp::SendError;
use crate::ops::metrics::ReplyFailure;
use crate::store::{EmailState, Job, JobOutcome, JobSpec, Settlement, StoreError};

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

/// When a worker last looked for a job and found none. A worker that takes
/// a job wakes an idle one to look at the other lanes, but not within
/// [`IdleLooks::QUIET_MS`] of a look that found nothing: while one room
/// posts a long queue and no other lane has work, every post woke a worker
/// whose look found nothing, each look a pass over the waiting jobs (with
/// 50,000 waiting in one room, about 75 ms of PostgreSQL's CPU per post,
/// `scripts/bench --only scale`, docs/PERFORMANCE.md). Another room's job
/// then waits at most that long for a worker; a job queued anew wakes one
/// at once, as before.
///
/// Of the idle workers, one at a time (the poller) also looks on a timer:
/// when the next job is due, and at least every second (jobs queued by
/// another process, replicas, the CLI). The others wait to be woken, or
/// [`IdleLooks::IDLE_POLL`] at most. Every worker polling every second cost
/// a look per worker per second, each a pass over the waiting jobs.
#[derive(Debug, Default)]
pub struct IdleLooks {
    last_empty_ms: AtomicI64,
    /// An idle worker is the poller.
    polling: AtomicBool,
}

impl IdleLooks {
    pub const QUIET_MS: i64 = 250;
    /// How long an idle worker that is not the poller waits at most.
    pub const IDLE_POLL: Duration = Duration::from_secs(10);

    /// Makes the caller the poller if none is; true if it now is.
    fn claim_poll(&self) -> bool {
        self.polling
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The poller woke: the role is free for the next worker to go idle.
    fn release_poll(&self) {
        self.polling.store(false, Ordering::Release);
    }

    /// Whether no idle worker polls (the last one took a job).
    fn poll_free(&self) -> bool {
        !self.polling.load(Ordering::Acquire)
    }

    /// A look at `now_ms` found no job due.
    pub fn found_none(&self, now_ms: i64) {
        self.last_empty_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Whether a worker that took a job at `now_ms` should wake an idle one.
    pub fn worth_waking(&self, now_ms: i64) -> bool {
        let last = self.last_empty_ms.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= Self::QUIET_MS
    }
}

/// One outbox worker ([`crate::config::OutboxSettings::workers`] run at
/// once): runs until `cancel` fires. Sleeps until the next job is due or a
/// new one is queued; the step in progress at cancellation is finished
/// first. Workers take jobs of different lanes (the store gives out one job
/// per lane at a time), so a room paced by its platform or waiting out a
/// rate limit holds one worker, never another room's jobs.
pub async fn run(app: Arc<App>, cancel: CancellationToken) {
    let mut store_backoff = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        match run_once(&app).await {
            Ok(Some(_)) => {
                store_backoff = Duration::from_millis(200);
                continue;
            }
            Ok(None) => app.outbox_looks.found_none(app.now_ms()),
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
        // Jobs may also be queued by another process (the CLI, another
        // replica), so the poller never sleeps longer than a second; the
        // other idle workers wait to be woken (see `IdleLooks`).
        let polls = app.outbox_looks.claim_poll();
        let wait = if polls {
            match app.store.next_due_at().await {
                Ok(Some(due)) => Duration::from_millis((due - app.now_ms()).clamp(0, 1_000) as u64),
                _ => Duration::from_secs(1),
            }
        } else {
            IdleLooks::IDLE_POLL
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = app.outbox_wakeup.notified() => {}
            _ = cancel.cancelled() => {}
        }
        if polls {
            app.outbox_looks.release_poll();
        }
    }
}

/// Takes and performs the next due job, if any.
pub async fn run_once(app: &App) -> Result<Option<Step>, StoreError> {
    let Some(job) = app.store.next_job(app.now_ms()).await? else {
        return Ok(None);
    };
    // Another job may be due in another lane: an idle worker looks, so a
    // burst in one room does not keep the others' rooms waiting for a poll
    // (unless one just looked in vain, see `IdleLooks`). If this worker
    // was the poller, another idle one takes over the timer.
    if app.outbox_looks.worth_waking(app.now_ms()) || app.outbox_looks.poll_free() {
        app.outbox_wakeup.notify_one();
    }
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
                at_ms: app.now_ms(),
                error: e.to_string(),
            };
            let released = record("a job's release", RELEASE_PATIENCE, || {
                app.store.finish_job(&job, &release, app.now_ms())
            })
            .await;
            if let Err(e) = released {
                tracing::error!(job = job.id, error = %e, "could not put an interrupted job back; the next start will");
            }
            return Err(e);
        }
    };
    // Every change of a ticket that shows in chat ends in one of these jobs
    // (a new ticket's post, the status refresh that follows a claim, close,
    // reopen, assignment or a customer's reply), once it is in the room:
    // the one place the board hears of it.
    if outcome == StepOutcome::Done {
        match &job.spec {
            JobSpec::ChatPost { platform, .. } => app.board.posted(*platform),
            JobSpec::ChatStatus { platform } => app.board.changed(*platform),
            _ => {}
        }
    }
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
        JobSpec::ChatPost {
            platform,
            email_id,
            room,
        } => {
            let r = chat_post(app, job, *platform, *email_id, room.as_deref()).await;
            finish_chat(app, job, *platform, r).await
        }
        JobSpec::ChatSentReply { platform, email_id } => {
            let r = chat_sent_reply(app, job, *platform, *email_id).await;
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
        JobSpec::ChatMention {
            platform,
            text,
            mentions,
        } => {
            let r = chat_mention(app, job, *platform, text, mentions)
                .await
                .map(done);
            finish_chat(app, job, *platform, r).await
        }
        JobSpec::SnoozeWake { due_ms } => super::snooze::wake_timer(app, job, *due_ms).await,
        JobSpec::UnclaimedNudge {
            platform, round, ..
        } => super::reminders::nudge_timer(app, job, *platform, *round).await,
        JobSpec::Digest {
            mailbox, platform, ..
        } => super::digest::digest_timer(app, job, mailbox, *platform).await,
        JobSpec::ChatAlert {
            platform,
            room,
            text,
            room_mention,
            users,
        } => {
            let r = match app.chats.get(platform) {
                Some(chat) => chat
                    .room_alert(room, text, *room_mention, users)
                    .await
                    .map(done),
                None => Err(missing(format!("{} is not configured", platform.as_str()))),
            };
            finish_chat(app, job, *platform, r).await
        }
        JobSpec::SlaCheck { .. } => super::sla::perform(app, job).await,
    }
}

/// Ends a job as failed, with why.
async fn fail(app: &App, job: &Job, error: String) -> Result<StepOutcome, StoreError> {
    let failed = JobOutcome::Failed {
        error: error.clone(),
    };
    app.store.finish_job(job, &failed, app.now_ms()).await?;
    Ok(StepOutcome::Failed { error })
}

async fn retry_or_fail(app: &App, job: &Job, error: String) -> Result<StepOutcome, StoreError> {
    if job.attempts >= app.settings.outbox.max_attempts {
        let error = format!("gave up after {} attempts: {error}", job.attempts);
        return fail(app, job, error).await;
    }
    retry(app, job, error).await
}

/// Puts the job back for another attempt after the backoff (capped at
/// `outbox.retry_max_secs`), however many it has had.
async fn retry(app: &App, job: &Job, error: String) -> Result<StepOutcome, StoreError> {
    let now = app.now_ms();
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
    let now = app.now_ms();
    let Some(mail) = app.store.outgoing(email_id).await? else {
        let error = format!("email {email_id} is missing");
        return fail(app, job, error).await;
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
            super::sla::answered(app, job.ticket).await;
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
                .reply_sent(job, email_id, notify, app.now_ms())
                .await?;
            Ok(StepOutcome::Done)
        }
        Err(SendError::Transient(error)) if job.attempts >= app.settings.outbox.max_attempts => {
            // One write ends the job and tells the thread (`reply_failed`
            // acts only on a job still in flight).
            let error = format!("gave up after {} attempts: {error}", job.attempts);
            app.store
                .reply_failed(
                    job,
                    email_id,
                    EmailState::Failed,
                    &error,
                    notify,
                    app.now_ms(),
                )
                .await?;
            Ok(StepOutcome::Failed { error })
        }
        Err(SendError::Transient(error)) => retry(app, job, error.clone()).await,
        Err(SendError::Permanent(error)) => {
            app.store
                .reply_failed(
                    job,
                    email_id,
                    EmailState::Failed,
                    error,
                    notify,
                    app.now_ms(),
                )
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
                    app.now_ms(),
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
        return fail(app, job, error).await;
    };
    let Some(mailbox) = app.mailbox(&mail.mailbox) else {
        let error = format!("mailbox {} is no longer configured", mail.mailbox);
        return fail(app, job, error).await;
    };
    match mailbox
        .filer
        .file(&mail.message_id, &mail.raw, mail.answers.as_ref())
        .await
    {
        Ok(()) => {
            app.store
                .finish_job(job, &JobOutcome::Done, app.now_ms())
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
            app.store.settle_job(job, &settlement, app.now_ms()).await?;
            Ok(StepOutcome::Failed { error })
        }
    }
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
                    app.now_ms(),
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

#[cfg(test)]
mod idle_looks_tests {
    use super::IdleLooks;

    #[test]
    fn one_idle_worker_at_a_time_polls() {
        let looks = IdleLooks::default();
        assert!(looks.poll_free());
        assert!(looks.claim_poll(), "the first idle worker polls");
        assert!(!looks.claim_poll(), "a second one waits to be woken");
        assert!(!looks.poll_free());
        looks.release_poll();
        assert!(looks.poll_free());
        assert!(looks.claim_poll(), "the next idle worker polls");
    }

    #[test]
    fn a_look_in_vain_holds_wake_ups_for_a_quarter_second() {
        let looks = IdleLooks::default();
        let t = 1_000_000;
        assert!(looks.worth_waking(t), "no look yet: wake");
        looks.found_none(t);
        assert!(!looks.worth_waking(t + 1));
        assert!(!looks.worth_waking(t + IdleLooks::QUIET_MS - 1));
        assert!(looks.worth_waking(t + IdleLooks::QUIET_MS));
    }
}
