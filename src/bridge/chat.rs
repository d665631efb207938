//! Chat flow: what teammates do in chat → ticket changes, replies, answers.
//!
//! Adapters deliver [`ChatEvent`]s; everything is decided here, the same way
//! for every platform: who may act, what a reaction or command means, and
//! what the thread is told. Answers to a thread go through the outbox (so
//! they keep the room's order and survive restarts).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::App;
use super::reply::{ReplyFlowError, ReplyRequest, queue_reply};
use super::spool::{Spool, handle_or_keep, replay};
use crate::chat::{ChatEvent, Member};
use crate::domain::chat::ChatThread;
use crate::domain::command::{
    ListFilter, Parsed, RoomCommand, SlashCommand, ThreadCommand, help_text, parse, parse_slash,
    reaction_key, slash_help_text,
};
use crate::domain::email::Direction;
use crate::domain::ids::{Actor, Agent, TicketId};
use crate::domain::outbound::OutboundAttachment;
use crate::domain::ticket::{Refusal, Status, TicketEvent};
use crate::store::{Applied, EmailState, JobSpec, StoreError, TicketFilter};

/// Handles events until the channel closes or `cancel` fires. Events that
/// came while the database was unavailable are kept on disk and acted on
/// once it answers again ([`super::spool`]), before newer ones.
pub async fn run(
    app: Arc<App>,
    mut events: mpsc::UnboundedReceiver<ChatEvent>,
    cancel: CancellationToken,
) {
    let mut spool = Spool::new(&app.settings.database.spool_dir);
    // Kept by an earlier run that stopped before the database came back.
    replay(&app, &mut spool).await;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = tick.tick(), if spool.holds_events() => {
                replay(&app, &mut spool).await;
                continue;
            }
            _ = cancel.cancelled() => None,
        };
        let Some(ev) = ev else { break };
        if spool.holds_events() {
            replay(&app, &mut spool).await;
        }
        let span = tracing::info_span!(
            "chat",
            platform = ev.platform().as_str(),
            event = ev.event_ref()
        );
        tracing::Instrument::instrument(handle_or_keep(&app, &mut spool, ev), span).await;
    }
}

/// Tells a ticket's thread something, through the outbox.
async fn tell(
    app: &App,
    ticket: TicketId,
    thread: &ChatThread,
    text: impl Into<String>,
) -> Result<(), StoreError> {
    let spec = JobSpec::ChatNotice {
        platform: thread.platform,
        text: text.into(),
    };
    let now = app.now_ms();
    app.store.enqueue(Some(ticket), &spec, now, now).await?;
    app.outbox_wakeup.notify_one();
    Ok(())
}

/// What the bridge says back about a teammate's action: public answers go
/// to the thread, private ones (refusals, help) only to that teammate where
/// the platform can whisper, and to the thread where it cannot.
struct Answer {
    text: String,
    public: bool,
}

impl Answer {
    fn public(text: impl Into<String>) -> Answer {
        Answer {
            text: text.into(),
            public: true,
        }
    }
    fn private(text: impl Into<String>) -> Answer {
        Answer {
            text: text.into(),
            public: false,
        }
    }
}

async fn say(
    app: &App,
    ticket: TicketId,
    thread: &ChatThread,
    agent: &Agent,
    answer: Answer,
) -> Result<(), StoreError> {
    if !answer.public
        && let Some(chat) = app.chats.get(&thread.platform)
    {
        match chat.whisper(thread, agent, &answer.text).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, %agent, "could not answer privately; telling the thread")
            }
        }
    }
    tell(app, ticket, thread, answer.text).await
}

async fn say_opt(
    app: &App,
    ticket: TicketId,
    thread: &ChatThread,
    agent: &Agent,
    answer: Option<Answer>,
) -> Result<(), StoreError> {
    match answer {
        Some(a) => say(app, ticket, thread, agent, a).await,
        None => Ok(()),
    }
}

/// Whether `agent` may act on tickets in `room`: a joined member with at
/// least the configured power level.
async fn member_allowed(
    app: &App,
    thread_platform: crate::domain::chat::Platform,
    room: &str,
    agent: &Agent,
) -> Option<Member> {
    let chat = app.chats.get(&thread_platform)?;
    let min = match thread_platform {
        crate::domain::chat::Platform::Matrix => app
            .settings
            .matrix
            .as_ref()
            .map(|m| m.min_power_level)
            .unwrap_or(0),
        crate::domain::chat::Platform::Slack => 0,
    };
    match chat.member(room, agent).await {
        Ok(Some(m)) if m.power >= min => Some(m),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, %agent, "could not check membership; refusing");
            None
        }
    }
}

/// A snooze command's answer: public for the thread, or private.
fn said(said: super::snooze::Said) -> Answer {
    match said {
        Ok(text) => Answer::public(text),
        Err(text) => Answer::private(text),
    }
}

/// Acts on one event. Redeliveries are recognised and ignored.
pub async fn handle(app: &App, ev: ChatEvent) -> Result<(), StoreError> {
    if !app
        .store
        .first_sighting(ev.platform(), ev.event_ref(), app.now_ms())
        .await?
    {
        tracing::debug!("already handled");
        return Ok(());
    }
    act_on(app, ev).await
}

/// Acts on an event already recorded as seen.
pub(super) async fn act_on(app: &App, ev: ChatEvent) -> Result<(), StoreError> {
    match ev {
        ChatEvent::Reaction {
            thread,
            agent,
            key,
            added,
            ..
        } => {
            let Some(ticket) = app.store.ticket_by_thread(&thread).await? else {
                return Ok(());
            };
            let key = reaction_key(&key);
            let r = &app.settings.reactions;
            let event = if r.claim.contains(&key) {
                if added {
                    TicketEvent::Claim(agent.clone())
                } else {
                    TicketEvent::Unclaim(agent.clone())
                }
            } else if r.close.contains(&key) && added {
                TicketEvent::Close
            } else if r.pending.contains(&key) && added {
                TicketEvent::MarkPending
            } else {
                return Ok(());
            };
            if member_allowed(app, thread.platform, &thread.room, &agent)
                .await
                .is_none()
            {
                let no = Answer::private(format!(
                    "{agent} may not change tickets here (not a member with enough power)."
                ));
                return say(app, ticket, &thread, &agent, no).await;
            }
            let answer = apply(app, ticket, &agent, event).await?;
            say_opt(app, ticket, &thread, &agent, answer).await
        }
        ChatEvent::ThreadMessage {
            thread,
            agent,
            text,
            ..
        } => {
            let Some(ticket) = app.store.ticket_by_thread(&thread).await? else {
                return Ok(());
            };
            if let Some(answer) = app
                .away_command(thread.platform, &thread.room, &agent, &text, true)
                .await?
            {
                return say(app, ticket, &thread, &agent, Answer::private(answer)).await;
            }
            let answer = match parse(&text) {
                Ok(Parsed::NotACommand) => None,
                Err(e) => Some(Answer::private(format!("⚠️ {e}"))),
                Ok(Parsed::Room(_)) => Some(Answer::private(
                    "`!mailroom …` commands work in the room, outside ticket threads.",
                )),
                Ok(Parsed::Thread(cmd)) => act(app, ticket, &thread, &agent, cmd).await?,
            };
            say_opt(app, ticket, &thread, &agent, answer).await
        }
        ChatEvent::ButtonCommand {
            thread,
            agent,
            text,
            ..
        } => {
            let Some(ticket) = app.store.ticket_by_thread(&thread).await? else {
                return Ok(());
            };
            let answer = match parse(&text) {
                Ok(Parsed::Thread(cmd)) => act(app, ticket, &thread, &agent, cmd).await?,
                Err(e) => Some(Answer::private(format!("⚠️ {e}"))),
                // Typed, an unknown `!word` is talk; pressed, it is a button
                // this mailroom does not know (yet): say so.
                Ok(_) => Some(Answer::private(format!(
                    "⚠️ {text}: this mailroom has no such command; nothing was done."
                ))),
            };
            say_opt(app, ticket, &thread, &agent, answer).await
        }
        ChatEvent::ThreadAction {
            thread,
            agent,
            command,
            ..
        } => {
            let Some(ticket) = app.store.ticket_by_thread(&thread).await? else {
                if let Some(chat) = app.chats.get(&thread.platform)
                    && let Err(e) = chat
                        .whisper(
                            &thread,
                            &agent,
                            "⚠️ That message is not a ticket's thread; nothing was sent.",
                        )
                        .await
                {
                    tracing::warn!(error = %e, "could not answer privately");
                }
                return Ok(());
            };
            let answer = act(app, ticket, &thread, &agent, command).await?;
            say_opt(app, ticket, &thread, &agent, answer).await
        }
        ChatEvent::Command {
            platform,
            room,
            agent,
            text,
            respond_to,
            ..
        } => {
            let answer = slash_command(app, platform, &room, &agent, &text).await?;
            if let Some(chat) = app.chats.get(&platform)
                && let Err(e) = chat.respond(&respond_to, &answer).await
            {
                tracing::warn!(error = %e, "could not answer the command");
            }
            Ok(())
        }
        ChatEvent::ThreadFile {
            thread,
            agent,
            file,
            event_ref,
        } => {
            let known = app.store.ticket_by_thread(&thread).await?;
            if known.is_some() {
                app.store
                    .record_chat_file(&thread, &event_ref, &agent, &file, app.now_ms())
                    .await?;
            }
            Ok(())
        }
        ChatEvent::HomeOpened {
            platform, agent, ..
        } => {
            if app.settings.board.enabled {
                app.board.opened(platform, agent);
            }
            Ok(())
        }
        ChatEvent::RoomMessage {
            platform,
            room,
            agent,
            text,
            ..
        } => {
            if let Some(answer) = app
                .away_command(platform, &room, &agent, &text, true)
                .await?
            {
                if let Some(chat) = app.chats.get(&platform)
                    && let Err(e) = chat.room_notice(&room, &answer).await
                {
                    tracing::warn!(error = %e, "could not answer in the room");
                }
                return Ok(());
            }
            let answer = match parse(&text) {
                Ok(Parsed::NotACommand) => return Ok(()),
                Err(e) => format!("⚠️ {e}"),
                Ok(Parsed::Thread(_)) => "Ticket commands go in the ticket's thread.".to_owned(),
                Ok(Parsed::Room(cmd)) => {
                    if member_allowed(app, platform, &room, &agent).await.is_none() {
                        format!("{agent} may not use mailroom here.")
                    } else if cmd == RoomCommand::Dashboard {
                        dashboard_privately(app, platform, &room, &agent).await
                    } else if let RoomCommand::Stats(query) = cmd {
                        return super::stats::in_room(app, platform, &room, &query).await;
                    } else {
                        room_command(app, platform, &room, &agent, cmd).await?
                    }
                }
            };
            if let Some(chat) = app.chats.get(&platform)
                && let Err(e) = chat.room_notice(&room, &answer).await
            {
                tracing::warn!(error = %e, "could not answer in the room");
            }
            Ok(())
        }
    }
}

/// A thread command from a member allowed to give it.
async fn act(
    app: &App,
    ticket: TicketId,
    thread: &ChatThread,
    agent: &Agent,
    cmd: ThreadCommand,
) -> Result<Option<Answer>, StoreError> {
    match member_allowed(app, thread.platform, &thread.room, agent).await {
        Some(member) => thread_command(app, ticket, thread, agent, &member, cmd).await,
        None => Ok(Some(Answer::private(format!(
            "{agent} may not act on tickets here (not a member with enough power)."
        )))),
    }
}

/// `/mailroom …`: the answer, for the teammate alone. A reply's public
/// confirmation also goes to the ticket's thread.
async fn slash_command(
    app: &App,
    platform: crate::domain::chat::Platform,
    room: &str,
    agent: &Agent,
    text: &str,
) -> Result<String, StoreError> {
    if let Some(answer) = app.away_command(platform, room, agent, text, false).await? {
        return Ok(answer);
    }
    match parse_slash(text) {
        Err(e) => Ok(format!("⚠️ {e}")),
        Ok(SlashCommand::Room(RoomCommand::Help)) => Ok(slash_help_text()),
        Ok(SlashCommand::Room(cmd)) => {
            if member_allowed(app, platform, room, agent).await.is_none() {
                return Ok(format!(
                    "{agent} may not use mailroom here (not a member of this channel)."
                ));
            }
            if let RoomCommand::Stats(query) = &cmd {
                return super::stats::privately(app, platform, room, query).await;
            }
            room_command(app, platform, room, agent, cmd).await
        }
        Ok(SlashCommand::Ticket { ticket, command }) => {
            let Some(thread) = app.store.chat_thread(ticket, platform).await? else {
                return Ok(format!("⚠️ {ticket} has no thread here."));
            };
            let Some(member) = member_allowed(app, platform, &thread.room, agent).await else {
                return Ok(format!(
                    "{agent} may not act on {ticket} (not a member of its channel)."
                ));
            };
            let answer = thread_command(app, ticket, &thread, agent, &member, command).await?;
            match answer {
                Some(a) if a.public => {
                    tell(app, ticket, &thread, a.text.clone()).await?;
                    Ok(format!("{ticket}: {}", a.text))
                }
                Some(a) => Ok(a.text),
                None => Ok(format!("{ticket}: done.")),
            }
        }
        Ok(SlashCommand::Reply {
            ticket,
            text,
            force,
        }) => {
            let Some(thread) = app.store.chat_thread(ticket, platform).await? else {
                return Ok(format!("⚠️ {ticket} has no thread here; nothing was sent."));
            };
            let Some(member) = member_allowed(app, platform, &thread.room, agent).await else {
                return Ok(format!(
                    "{agent} may not act on {ticket} (not a member of its channel)."
                ));
            };
            let answer = reply(
                app,
                platform,
                ticket,
                agent,
                &member,
                text,
                force,
                Vec::new(),
            )
            .await?;
            if answer.public {
                tell(app, ticket, &thread, answer.text.clone()).await?;
            }
            Ok(format!("{ticket}: {}", answer.text))
        }
    }
}

async fn apply(
    app: &App,
    ticket: TicketId,
    agent: &Agent,
    event: TicketEvent,
) -> Result<Option<Answer>, StoreError> {
    let notify = match app.store.ticket(ticket).await? {
        Some(t) => app.platforms_for(&t.mailbox),
        None => return Ok(None),
    };
    match app
        .store
        .apply(
            ticket,
            &Actor::Agent(agent.clone()),
            &event,
            &notify,
            app.now_ms(),
        )
        .await?
    {
        Applied::Changed { after, .. } => {
            app.outbox_wakeup.notify_one();
            // Pending pauses a clock, a reopen restarts it, a tag or a
            // close may change which policy holds.
            crate::bridge::sla::recheck(app, ticket).await;
            tracing::info!(%ticket, %agent, action = event.action(), state = %after, "ticket changed");
            Ok(None)
        }
        Applied::Unchanged | Applied::NoSuchTicket => Ok(None),
        Applied::Refused(Refusal::AlreadyClaimed { by }) => Ok(Some(Answer::private(format!(
            "{agent}: already claimed by {by}."
        )))),
        Applied::Refused(r) => Ok(Some(Answer::private(format!("{agent}: {r}.")))),
    }
}

async fn thread_command(
    app: &App,
    ticket: TicketId,
    thread: &ChatThread,
    agent: &Agent,
    member: &Member,
    cmd: ThreadCommand,
) -> Result<Option<Answer>, StoreError> {
    let answer = match cmd {
        ThreadCommand::Reply {
            text,
            force,
            attach,
        } => {
            let files = if attach {
                match thread_files(app, ticket, thread).await? {
                    Ok(files) if files.is_empty() => {
                        return Ok(Some(Answer::private(
                            "⚠️ !reply --attach: no files were posted in this thread since the last reply.",
                        )));
                    }
                    Ok(files) => files,
                    Err(e) => {
                        return Ok(Some(Answer::private(format!("⚠️ !reply --attach: {e}"))));
                    }
                }
            } else {
                Vec::new()
            };
            reply(
                app,
                thread.platform,
                ticket,
                agent,
                member,
                text,
                force,
                files,
            )
            .await?
        }
        ThreadCommand::Template { name, vars } => match render_template(app, &name, &vars) {
            Ok(text) => {
                reply(
                    app,
                    thread.platform,
                    ticket,
                    agent,
                    member,
                    text,
                    false,
                    Vec::new(),
                )
                .await?
            }
            Err(e) => Answer::private(format!("⚠️ {e}")),
        },
        ThreadCommand::Undo => {
            let emails = app.store.emails(ticket).await?;
            let mine = emails.iter().rev().find(|e| {
                e.direction == Direction::Outbound
                    && e.state == EmailState::Queued
                    && e.author.as_ref() == Some(agent)
            });
            match mine {
                Some(e)
                    if app
                        .store
                        .cancel_reply(e.id, &Actor::Agent(agent.clone()), app.now_ms())
                        .await? =>
                {
                    Answer::public(format!(
                        "↩️ {agent}: your reply was cancelled; nothing was sent."
                    ))
                }
                _ => Answer::private(format!(
                    "{agent}: nothing to undo (no reply of yours is waiting to be sent)."
                )),
            }
        }
        ThreadCommand::Close => return apply(app, ticket, agent, TicketEvent::Close).await,
        ThreadCommand::Reopen => return apply(app, ticket, agent, TicketEvent::Reopen).await,
        ThreadCommand::Pending => return apply(app, ticket, agent, TicketEvent::MarkPending).await,
        ThreadCommand::Claim => {
            return apply(app, ticket, agent, TicketEvent::Claim(agent.clone())).await;
        }
        ThreadCommand::Unclaim => {
            return apply(app, ticket, agent, TicketEvent::Unclaim(agent.clone())).await;
        }
        ThreadCommand::Unassign => return apply(app, ticket, agent, TicketEvent::Unassign).await,
        ThreadCommand::Assign(user) => match user.as_agent() {
            Some(to) => {
                if member_allowed(app, thread.platform, &thread.room, &to)
                    .await
                    .is_none()
                {
                    Answer::private(format!(
                        "⚠️ {to} is not a member of this room who may handle tickets."
                    ))
                } else {
                    return apply(app, ticket, agent, TicketEvent::Assign(to)).await;
                }
            }
            None => Answer::private(format!(
                "⚠️ !assign needs a full user id such as @alice:example.org (or a Slack mention), not {user}."
            )),
        },
        ThreadCommand::Tag(tags) => {
            for t in tags {
                if let Some(refused) = apply(app, ticket, agent, TicketEvent::AddTag(t)).await? {
                    return Ok(Some(refused));
                }
            }
            return Ok(None);
        }
        ThreadCommand::Untag(tags) => {
            for t in tags {
                if let Some(refused) = apply(app, ticket, agent, TicketEvent::RemoveTag(t)).await? {
                    return Ok(Some(refused));
                }
            }
            return Ok(None);
        }
        ThreadCommand::History => {
            let log = app.store.audit_log(ticket).await?;
            let mut text = format!("History of {ticket}:\n");
            for a in log.iter().rev().take(30).rev() {
                let when = jiff::Timestamp::from_millisecond(a.at_ms)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                text.push_str(&format!(
                    "{when} · {} · {} {}\n",
                    a.actor, a.action, a.details
                ));
            }
            Answer::private(text.trim_end().to_owned())
        }
        ThreadCommand::Help => Answer::private(help_text()),
        ThreadCommand::Snooze(request) => {
            said(super::snooze::snooze(app, ticket, agent, &request).await?)
        }
        ThreadCommand::Unsnooze => said(super::snooze::unsnooze(app, ticket, agent).await?),
    };
    Ok(Some(answer))
}

/// The files posted in the thread since the ticket's last reply, downloaded.
async fn thread_files(
    app: &App,
    ticket: TicketId,
    thread: &ChatThread,
) -> Result<Result<Vec<OutboundAttachment>, String>, StoreError> {
    let emails = app.store.emails(ticket).await?;
    let since = emails
        .iter()
        .filter(|e| e.direction == Direction::Outbound && e.state != EmailState::Cancelled)
        .map(|e| e.stored_at_ms + 1)
        .max()
        .unwrap_or(0);
    let shared = app.store.chat_files(thread, since).await?;
    let Some(chat) = app.chats.get(&thread.platform) else {
        return Ok(Err("chat platform not connected".into()));
    };
    let mut out = Vec::new();
    for f in shared {
        match chat.download(&f).await {
            Ok(data) => out.push(OutboundAttachment {
                name: f.name.replace(['/', '\\'], "_"),
                content_type: f.content_type,
                data,
            }),
            Err(e) => return Ok(Err(format!("could not fetch {}: {e}", f.name))),
        }
    }
    Ok(Ok(out))
}

/// `!reply`: the guards, then the foundation's reply flow with the undo window.
#[allow(clippy::too_many_arguments)]
async fn reply(
    app: &App,
    platform: crate::domain::chat::Platform,
    ticket: TicketId,
    agent: &Agent,
    member: &Member,
    text: String,
    force: bool,
    attachments: Vec<OutboundAttachment>,
) -> Result<Answer, StoreError> {
    let Some(record) = app.store.ticket(ticket).await? else {
        return Ok(Answer::private(format!("⚠️ {ticket} no longer exists.")));
    };
    if !force {
        if let Some(owner) = record.state.owner().filter(|o| *o != agent) {
            return Ok(Answer::private(format!(
                "⚠️ {agent}: {ticket} is claimed by {owner}. Send anyway with `!reply! …`."
            )));
        }
        // Stale-reply guard: the customer wrote after this teammate last acted.
        let log = app.store.audit_log(ticket).await?;
        let me = Actor::Agent(agent.clone());
        let last_mine = log.iter().filter(|a| a.actor == me).map(|a| a.at_ms).max();
        let since = last_mine.unwrap_or(record.created_at_ms);
        let newer: Vec<_> = log
            .iter()
            .filter(|a| a.action == "customer-replied" && a.at_ms > since)
            .collect();
        if !newer.is_empty() {
            let emails = app.store.emails(ticket).await?;
            let latest = emails
                .iter()
                .rev()
                .find(|e| e.direction == Direction::Inbound);
            let what = latest
                .map(|e| format!("“{}” from {}", e.subject, e.from))
                .unwrap_or_else(|| "a new email".into());
            return Ok(Answer::private(format!(
                "⚠️ {agent}: the customer wrote since you last looked: {what}. Read it, then reply again, or send anyway with `!reply! …`."
            )));
        }
    }
    // The customer reads names, not the platform's ids of people.
    let text = match app.chats.get(&platform) {
        Some(chat) => chat.names_for_mail(&text).await,
        None => text,
    };
    let undo = app.settings.commands.undo_window;
    let req = ReplyRequest {
        ticket,
        agent: agent.clone(),
        agent_name: member.display_name.clone(),
        body_markdown: text,
        attachments,
        undo_window: undo,
        confirmed: force,
    };
    match queue_reply(app, req).await {
        Ok(q) => {
            let to: Vec<String> =
                q.to.iter()
                    .chain(q.cc.iter())
                    .map(|p| p.address.to_string())
                    .collect();
            let when = if undo.is_zero() {
                "now".to_owned()
            } else {
                format!("in {} s; `!undo` cancels it", undo.as_secs())
            };
            Ok(Answer::public(format!(
                "✉️ {agent}: reply to {} queued, sending {when}.",
                to.join(", ")
            )))
        }
        Err(ReplyFlowError::Store(e)) => Err(e),
        Err(e) => Ok(Answer::private(format!(
            "⚠️ {agent}: the reply was not queued: {e}"
        ))),
    }
}

/// `!template NAME key=value…`: `NAME.md` from the templates folder with
/// `{{key}}` replaced. Every placeholder must get a value.
fn render_template(
    app: &App,
    name: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, String> {
    let dir = &app.settings.commands.templates_dir;
    let path = dir.join(format!("{name}.md"));
    let text = std::fs::read_to_string(&path).map_err(|_| {
        let available: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_suffix(".md"))
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "no template {name:?}; available: {}",
            if available.is_empty() {
                "none".to_owned()
            } else {
                available.join(", ")
            }
        )
    })?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut missing = Vec::new();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let key = after[..end].trim();
        match vars.get(key) {
            Some(v) => out.push_str(v),
            None => {
                if !missing.contains(&key.to_owned()) {
                    missing.push(key.to_owned());
                }
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    if !missing.is_empty() {
        return Err(format!(
            "template {name} needs {}: !template {name} {}",
            missing.join(", "),
            missing
                .iter()
                .map(|k| format!("{k}=…"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    Ok(out)
}

/// `!mailroom dashboard` typed in a room: the link goes to the teammate
/// alone, and the room is told only that it went.
async fn dashboard_privately(
    app: &App,
    platform: crate::domain::chat::Platform,
    room: &str,
    agent: &Agent,
) -> String {
    let Some(chat) = app.chats.get(&platform) else {
        return String::new();
    };
    let text = super::web::link_answer(app, platform, agent).await;
    match chat.direct(room, agent, &text).await {
        Ok(true) => format!("📬 {agent}: your dashboard sign-in link was sent to you privately."),
        Ok(false) => format!(
            "{agent}: mailroom cannot message you privately here; an operator can make a link with `mailroom web link --as {agent}`."
        ),
        Err(e) => {
            tracing::warn!(error = %e, %agent, "could not send the dashboard link privately");
            format!(
                "⚠️ {agent}: the sign-in link could not be sent to you privately; try again shortly."
            )
        }
    }
}

/// The answer to a room command. Only `/mailroom …` answers (seen by the
/// teammate alone) reach here with [`RoomCommand::Dashboard`]; typed in the
/// room it goes through [`dashboard_privately`].
async fn room_command(
    app: &App,
    platform: crate::domain::chat::Platform,
    room: &str,
    agent: &Agent,
    cmd: RoomCommand,
) -> Result<String, StoreError> {
    match cmd {
        RoomCommand::Help => Ok(help_text().to_owned()),
        RoomCommand::Board => super::board::board_text(app, platform, room).await,
        // Answered with a table and a chart where it was asked
        // (`bridge/stats.rs`), before this is reached.
        RoomCommand::Stats(_) => {
            Ok("!mailroom stats is answered in the room it is asked in.".to_owned())
        }
        RoomCommand::Dashboard => Ok(super::web::link_answer(app, platform, agent).await),
        RoomCommand::List(filter) => {
            let mut f = TicketFilter {
                limit: Some(50),
                ..Default::default()
            };
            // Snoozed tickets are out of the queue: only their own list shows them.
            f.snoozed = Some(filter == ListFilter::Snoozed);
            match filter {
                ListFilter::Open | ListFilter::Snoozed => {}
                ListFilter::Mine => f.owner = Some(agent.clone()),
                ListFilter::Unclaimed => f.status = Some(Status::Open),
                ListFilter::Pending => f.status = Some(Status::Pending),
            }
            let list = app.store.list_tickets(&f).await?;
            let list: Vec<_> = list
                .into_iter()
                .filter(|t| match filter {
                    ListFilter::Open => matches!(t.state.status(), Status::Open | Status::Claimed),
                    ListFilter::Mine => t.state.status() != Status::Closed,
                    ListFilter::Snoozed => !t.state.is_set_aside(),
                    _ => true,
                })
                .collect();
            if list.is_empty() {
                return Ok(format!("No {filter} tickets."));
            }
            let mut text = format!(
                "{} {filter} ticket{}:\n",
                list.len(),
                if list.len() == 1 { "" } else { "s" }
            );
            for t in list {
                let snoozed = match &t.snooze {
                    Some(s) => {
                        let zone = app
                            .mailbox(&t.mailbox)
                            .map(|m| m.settings.time_zone.clone())
                            .unwrap_or_else(crate::domain::time::Zone::utc);
                        format!(" · 💤 {} (by {})", s.until.describe(&zone), s.by)
                    }
                    None => String::new(),
                };
                text.push_str(&format!(
                    "{} · {} · {} · {}{snoozed}\n",
                    t.id, t.state, t.customer, t.subject
                ));
            }
            Ok(text.trim_end().to_owned())
        }
        RoomCommand::Show(id) => {
            let Some(t) = app.store.ticket(id).await? else {
                return Ok(format!("No ticket {id}."));
            };
            let emails = app.store.emails(id).await?;
            let mut text = format!(
                "{} · {} · {}\nCustomer: {}\n",
                t.id, t.state, t.subject, t.customer
            );
            for e in emails.iter().rev().take(5).rev() {
                let arrow = if e.direction == Direction::Inbound {
                    "←"
                } else {
                    "→"
                };
                text.push_str(&format!(
                    "{arrow} {} · {} · {}\n",
                    e.from,
                    e.subject,
                    e.state.as_str()
                ));
            }
            Ok(text.trim_end().to_owned())
        }
    }
}
