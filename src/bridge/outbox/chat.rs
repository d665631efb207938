//! The outbox's chat jobs: a ticket's root or a follow-up (falling back to
//! plainer renderings rather than fail), each file of an email on its own,
//! status edits and notices; and what a chat job that failed for good
//! leaves behind (the room told, the audit log, the metric).

use std::sync::Arc;

use super::{StepOutcome, retry, since};
use crate::bridge::App;
use crate::chat::{ChatError, ChatPlatform, FileUpload, TicketCard, truncate_chars};
use crate::domain::chat::{ChatThread, Platform};
use crate::domain::render::{EmailView, Rendering, fallback_notice};
use crate::mail::parse::{attachments_bytes, parse_email};
use crate::ops::metrics::ChatErrorKind;
use crate::store::{FilePart, Job, JobOutcome, JobSpec, Settlement, StoreError, TicketRecord};

/// A chat job that did what it was for and leaves nothing behind.
pub(super) fn done(_: ()) -> Settlement {
    Settlement::new(JobOutcome::Done)
}

pub(super) async fn finish_chat(
    app: &App,
    job: &Job,
    platform: Platform,
    r: Result<Settlement, ChatError>,
) -> Result<StepOutcome, StoreError> {
    let error = match r {
        Ok(mut settlement) => {
            let notice_after = app.settings.outbox.chat_outage_notice;
            if let Some(resumed) = app
                .chat_outages
                .succeeded(platform, app.now_ms(), notice_after)
            {
                tracing::info!(
                    platform = platform.as_str(),
                    lasted_ms = resumed.lasted.as_millis() as u64,
                    delayed = resumed.delayed,
                    "chat posting resumed after an outage"
                );
                settlement
                    .follow_ons
                    .extend(resumed_notices(app, platform, &resumed));
            }
            app.store.settle_job(job, &settlement, app.now_ms()).await?;
            return Ok(StepOutcome::Done);
        }
        Err(e) => e,
    };
    let kind = match &error {
        ChatError::Transient { .. } => {
            app.chat_outages.failed(platform, job.id, app.now_ms());
            ChatErrorKind::Transient
        }
        ChatError::Permanent { .. } => ChatErrorKind::Permanent,
    };
    app.metrics.chat_error(platform, kind);
    let error = match error {
        ChatError::Transient {
            message,
            retry_after_ms: Some(after),
        } => {
            // The platform told us when: honour it exactly, not our backoff.
            let now = app.now_ms();
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
        // A chat outage is waited out however long it lasts (the backoff
        // is capped); `outbox.max_attempts` bounds mail sends only.
        ChatError::Transient { message, .. } => return retry(app, job, message).await,
        ChatError::Permanent { message } => message,
    };
    let settlement = undelivered(app, job, platform, &error).await;
    app.store.settle_job(job, &settlement, app.now_ms()).await?;
    Ok(StepOutcome::Failed { error })
}

/// "Posting resumed": one notice per room the platform posts to.
fn resumed_notices(app: &App, platform: Platform, resumed: &super::Resumed) -> Vec<JobSpec> {
    let rooms: std::collections::BTreeSet<String> = app
        .mailboxes
        .keys()
        .filter_map(|m| app.chat_room(m, platform))
        .collect();
    let text = resumed.notice();
    rooms
        .into_iter()
        .map(|room| JobSpec::ChatRoomNotice {
            platform,
            room,
            text: text.clone(),
        })
        .collect()
}

/// How a chat job that failed for good is recorded. An email that could
/// not be posted is never silent: the room is told (once, through the
/// outbox), the audit log and the metric say so, and the job stays in
/// `mailroom outbox list` for `mailroom outbox retry`.
async fn undelivered(app: &App, job: &Job, platform: Platform, error: &str) -> Settlement {
    let mut settlement = Settlement::new(JobOutcome::Failed {
        error: error.to_owned(),
    });
    let (room, email_id) = match &job.spec {
        JobSpec::ChatPost { email_id, room, .. } => (room.clone(), *email_id),
        JobSpec::ChatSentReply { email_id, .. } => (None, *email_id),
        _ => return settlement,
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
    let room = room.or_else(|| {
        ticket
            .as_ref()
            .and_then(|t| app.chat_room(&t.mailbox, platform))
    });
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

pub(super) fn missing(what: impl Into<String>) -> ChatError {
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

/// The platform, the ticket and its thread there (if posted) a chat job is about.
pub(super) async fn chat_target<'a>(
    app: &'a App,
    job: &Job,
    platform: Platform,
) -> Result<(&'a Arc<dyn ChatPlatform>, TicketRecord, Option<ChatThread>), ChatError> {
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
    let thread = app
        .store
        .chat_thread(ticket_id, platform)
        .await
        .map_err(store_err)?;
    Ok((chat, ticket, thread))
}

/// A stored email's raw bytes.
pub(super) async fn raw_email(app: &App, email_id: i64) -> Result<Vec<u8>, ChatError> {
    app.store
        .raw_email(email_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| missing("email is gone"))
}

/// A key that is the same for every attempt of one job and never the same
/// for two jobs. Job ids alone restart at 1 with a new database while the
/// chat device (and the homeserver's memory of its transaction ids) lives
/// on; the ticket's random token keeps keys from two databases apart.
pub(super) fn idempotency_key(ticket: &TicketRecord, job: &Job) -> String {
    format!("mailroom-{}-{}", ticket.token, job.id)
}

/// The post an interrupted attempt of `job` made, if the platform shows
/// one (only asked when the job was in flight at a restart, so its answer
/// may have been lost): its thread ref and the rendering it was made at.
async fn earlier_post(
    chat: &Arc<dyn ChatPlatform>,
    job: &Job,
    room: &str,
    thread_ref: Option<&str>,
    key: &str,
) -> Result<Option<(String, Rendering)>, ChatError> {
    if !job.maybe_done {
        return Ok(None);
    }
    let mut keys = Vec::new();
    let mut level = Some(Rendering::Full);
    while let Some(l) = level {
        keys.push((l, format!("{key}{}", l.key_suffix())));
        level = l.fallback();
    }
    let names: Vec<String> = keys.iter().map(|(_, k)| k.clone()).collect();
    let Some((found, with)) = chat.find_post(room, thread_ref, &names).await? else {
        return Ok(None);
    };
    let shown = keys
        .into_iter()
        .find(|(_, k)| *k == with)
        .map(|(l, _)| l)
        .unwrap_or(Rendering::Full);
    tracing::info!(
        thread_ref = %found,
        "the interrupted attempt's post is there; adopted, not posted again"
    );
    Ok(Some((found, shown)))
}

/// What a ticket's root message shows of it; `sla`: its SLA line now.
fn card<'a>(
    app: &'a App,
    ticket: &'a TicketRecord,
    sla: Option<String>,
) -> Result<TicketCard<'a>, ChatError> {
    let mailbox = app
        .mailbox(&ticket.mailbox)
        .ok_or_else(|| missing("mailbox is not configured"))?;
    Ok(TicketCard {
        ticket: ticket.id,
        mailbox_display_name: &mailbox.settings.display_name,
        state: &ticket.state,
        tags: ticket.tags.iter().map(|t| t.to_string()).collect(),
        priority: ticket.priority,
        sla,
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
pub(super) async fn chat_post(
    app: &App,
    job: &Job,
    platform: Platform,
    email_id: i64,
    routed_to: Option<&str>,
) -> Result<Settlement, ChatError> {
    let (chat, ticket, existing) = chat_target(app, job, platform).await?;
    let ticket_id = ticket.id;
    let raw = raw_email(app, email_id).await?;
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
    let view = app.email_view(&ticket.mailbox, &parsed);
    let key = idempotency_key(&ticket, job);
    let (new_thread, shown, refusals) = match existing {
        Some(thread) => {
            let earlier = earlier_post(
                chat,
                job,
                &thread.room,
                Some(thread.thread_ref.as_str()),
                &key,
            );
            let (shown, refusals) = match earlier.await? {
                Some((_, shown)) => (shown, Vec::new()),
                None => {
                    let (_, shown, refusals) = degrade("follow-up", |r| {
                        let key = format!("{key}{}", r.key_suffix());
                        let (thread, view) = (&thread, &view);
                        async move {
                            chat.post_follow_up(thread, ticket_id, view, owner, r, &key)
                                .await
                        }
                    })
                    .await?;
                    (shown, refusals)
                }
            };
            (None, shown, refusals)
        }
        None => {
            // A routing rule's room, else the mailbox's.
            let room = routed_to.map(str::to_owned);
            let room = room.or_else(|| app.chat_room(&ticket.mailbox, platform));
            let room = room.ok_or_else(|| {
                missing(format!(
                    "mailbox {} has no {} target",
                    ticket.mailbox,
                    platform.as_str()
                ))
            })?;
            let sla = crate::bridge::sla::card_line(app, &ticket).await;
            let card = card(app, &ticket, sla)?;
            let (thread, shown, refusals) = match earlier_post(chat, job, &room, None, &key).await?
            {
                Some((thread_ref, shown)) => {
                    let thread = ChatThread {
                        platform,
                        room: room.clone(),
                        thread_ref,
                    };
                    (thread, shown, Vec::new())
                }
                None => {
                    degrade("ticket root", |r| {
                        let key = format!("{key}{}", r.key_suffix());
                        let (room, card, view) = (&room, &card, &view);
                        async move { chat.post_ticket(room, card, view, r, &key).await }
                    })
                    .await?
                }
            };
            app.metrics.thread_posted(platform);
            (Some(thread), shown, refusals)
        }
    };
    // The job was queued in the transaction that stored the email.
    app.metrics.posted(platform, since(job.created_at_ms));
    let mut settlement = Settlement::new(JobOutcome::Done);
    if new_thread.is_some() {
        // The ticket is in the room now: its unclaimed reminder starts.
        settlement
            .timers
            .extend(crate::bridge::reminders::first_nudge(
                app, &ticket, platform,
            ));
    }
    settlement.thread = new_thread;
    if !refusals.is_empty() {
        app.metrics.post_degraded(platform, shown);
        let text = fallback_notice(shown, &refusals);
        settlement.audit = Some(("chat-post-degraded", text.clone()));
        settlement
            .follow_ons
            .push(JobSpec::ChatNotice { platform, text });
    }
    let cut = truncate_chars(&view.body, chat.body_limit()).1;
    let files = file_jobs(
        app,
        platform,
        email_id,
        &view,
        cut || shown == Rendering::Minimal,
    );
    settlement.follow_ons.extend(files);
    Ok(settlement)
}

/// The files that follow an email's post: the full text when the post could
/// not show all of it (`cut`), then every attachment not inline in the text
/// and under the upload cap (the others are listed in the post).
pub(super) fn file_jobs(
    app: &App,
    platform: Platform,
    email_id: i64,
    view: &EmailView,
    cut: bool,
) -> Vec<JobSpec> {
    let mut jobs = Vec::new();
    if cut && !view.full_text.trim().is_empty() {
        jobs.push(JobSpec::ChatFile {
            platform,
            email_id,
            part: FilePart::FullText,
        });
    }
    let cap = app.settings.chat.max_attachment_bytes;
    jobs.extend(
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
    jobs
}

/// Uploads one file of an email into its ticket's thread. A file the
/// server will not take is skipped with a line in the thread saying which
/// and why; the job is then done.
pub(super) async fn chat_file(
    app: &App,
    job: &Job,
    platform: Platform,
    email_id: i64,
    part: FilePart,
) -> Result<Settlement, ChatError> {
    let (chat, ticket, thread) = chat_target(app, job, platform).await?;
    let thread = thread.ok_or_else(|| missing("the ticket has no thread to upload into"))?;
    let raw = raw_email(app, email_id).await?;
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

pub(super) async fn chat_status(app: &App, job: &Job, platform: Platform) -> Result<(), ChatError> {
    let (chat, ticket, thread) = chat_target(app, job, platform).await?;
    let Some(thread) = thread else {
        // The root is not posted yet: it will show the current status when it is.
        return Ok(());
    };
    // The root shows the ticket's first email; the edit must carry all of it.
    let emails = app.store.emails(ticket.id).await.map_err(store_err)?;
    let first = emails
        .iter()
        .find(|e| e.direction == crate::domain::email::Direction::Inbound)
        .ok_or_else(|| missing("ticket has no email"))?;
    let raw = raw_email(app, first.id).await?;
    let view = app.email_view(&ticket.mailbox, &parse_email(&raw));
    drop(raw);
    let sla = crate::bridge::sla::card_line(app, &ticket).await;
    let card = card(app, &ticket, sla)?;
    // The edit falls back like the post did, so a root that could only be
    // posted plainly still gets its status line.
    degrade("status edit", |r| {
        let (thread, card, view) = (&thread, &card, &view);
        async move { chat.update_card(thread, card, view, r).await }
    })
    .await?;
    Ok(())
}

pub(super) async fn chat_notice(
    app: &App,
    job: &Job,
    platform: Platform,
    text: &str,
) -> Result<(), ChatError> {
    let (chat, ticket, thread) = chat_target(app, job, platform).await?;
    let Some(thread) = thread else {
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

/// A message that calls teammates by name (an auto-assignment, a snooze's
/// end): like a notice,
/// in the room when the ticket has no thread there.
pub(super) async fn chat_mention(
    app: &App,
    job: &Job,
    platform: Platform,
    text: &str,
    mention: &[String],
) -> Result<(), ChatError> {
    let (chat, ticket, thread) = chat_target(app, job, platform).await?;
    let Some(thread) = thread else {
        return chat_notice(app, job, platform, text).await;
    };
    let agents: Vec<crate::domain::ids::Agent> = mention
        .iter()
        .filter_map(|a| crate::domain::ids::Agent::parse(a).ok())
        .collect();
    chat.mention(&thread, text, &agents, &idempotency_key(&ticket, job))
        .await
}

impl App {
    /// The room (Matrix) or channel (Slack) a mailbox posts to.
    pub(crate) fn chat_room(
        &self,
        mailbox: &crate::domain::ids::MailboxName,
        platform: Platform,
    ) -> Option<String> {
        self.mailbox(mailbox)?.settings.chat.room(platform)
    }
}
