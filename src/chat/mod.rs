//! The seam chat platforms plug into.
//!
//! An adapter (Matrix, Slack) implements [`ChatPlatform`] and only translates
//! between its SDK and these domain-shaped calls; it emits [`ChatEvent`]s for
//! what teammates do. All decisions (who may claim, what a command means) are
//! made by the bridge, never inside an adapter.

pub mod chart;
pub mod matrix;
pub mod settings;
pub mod slack;

use async_trait::async_trait;

use crate::domain::board::Board;
use crate::domain::chat::{ChatThread, Platform, SharedFile};
use crate::domain::command::ThreadCommand;
use crate::domain::ids::{Agent, TicketId};
use crate::domain::render::{EmailView, Rendering};
use crate::domain::routing::Priority;
use crate::domain::ticket::TicketState;

/// Errors from a chat adapter, classified so the outbox knows whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Rate limited, server down, network trouble: retry, not before `retry_after_ms` if given.
    #[error("chat temporarily unavailable: {message}")]
    Transient {
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// The request can never succeed (unknown room, no permission, bad payload).
    #[error("chat refused the request: {message}")]
    Permanent { message: String },
}

impl ChatError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ChatError::Transient { .. })
    }
}

/// What a thread's root message shows of its ticket.
#[derive(Debug, Clone)]
pub struct TicketCard<'a> {
    pub ticket: TicketId,
    pub mailbox_display_name: &'a str,
    pub state: &'a TicketState,
    pub tags: Vec<String>,
    /// Shown when not normal.
    pub priority: Priority,
    /// The SLA clock's line when the card was rendered ("First response
    /// due in 3h 20m (business hours)"), if a policy holds.
    pub sla: Option<String>,
}

/// A file to upload into a thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUpload {
    pub name: String,
    /// `type/subtype`.
    pub content_type: String,
    pub data: Vec<u8>,
}

/// A teammate's availability as a platform reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Available,
    /// Away, offline, in do-not-disturb: why, for the thread and the audit
    /// ("away on Slack", "do not disturb on Slack", "offline on Matrix").
    Unavailable(String),
}

/// A joined member of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Room power level (Matrix); platforms without levels report 0.
    pub power: i64,
    /// Shown in replies' From ("Alice via Example Support").
    pub display_name: Option<String>,
}

/// One room's board, as a personal board (Slack's App Home) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomBoard {
    /// The room as the store knows it (see [`ChatPlatform::room_key`]).
    pub room: String,
    /// What the room is for (its mailbox's name).
    pub heading: String,
    pub board: Board,
}

/// A chat platform as the bridge sees it.
#[async_trait]
pub trait ChatPlatform: Send + Sync {
    fn platform(&self) -> Platform;

    /// The workspace's address, where links into the platform need one
    /// (Slack's `https://team.slack.com/`, read from `auth.test` at start);
    /// `None` where they do not (Matrix links go through matrix.to).
    fn workspace_url(&self) -> Option<String> {
        None
    }

    /// Posts the root message of a new ticket's thread; returns where it lives.
    /// `idempotency_key` is stable per outbox job and rendering, so an
    /// adapter whose platform supports it (Matrix transaction ids) can make a
    /// retried post a no-op. Attachments are not part of it: the outbox
    /// uploads each one on its own with [`ChatPlatform::upload`], so a file
    /// the server refuses can never keep the ticket out of the room.
    async fn post_ticket(
        &self,
        room: &str,
        card: &TicketCard<'_>,
        email: &EmailView,
        rendering: Rendering,
        idempotency_key: &str,
    ) -> Result<ChatThread, ChatError>;

    /// A message posted earlier under one of `keys` (the idempotency keys
    /// of one job's renderings) in `room`, or in the thread `thread_ref`
    /// when given: its thread ref and the key it carries. The outbox asks
    /// before posting again a job whose earlier attempt may have gone
    /// through with its answer lost (found in flight after a restart), and
    /// adopts what it finds rather than post twice. Platforms whose posts
    /// are idempotent by themselves (Matrix transaction ids) need not look.
    async fn find_post(
        &self,
        _room: &str,
        _thread_ref: Option<&str>,
        _keys: &[String],
    ) -> Result<Option<(String, String)>, ChatError> {
        Ok(None)
    }

    /// Posts a follow-up email into an existing thread, mentioning `owner`.
    async fn post_follow_up(
        &self,
        thread: &ChatThread,
        ticket: TicketId,
        email: &EmailView,
        owner: Option<&Agent>,
        rendering: Rendering,
        idempotency_key: &str,
    ) -> Result<(), ChatError>;

    /// Rewrites the root message (status line, tags) in place; `email` is
    /// the ticket's first email, which the root shows.
    async fn update_card(
        &self,
        thread: &ChatThread,
        card: &TicketCard<'_>,
        email: &EmailView,
        rendering: Rendering,
    ) -> Result<(), ChatError>;

    /// Uploads one file into the thread. A refusal that concerns this file
    /// (too large for the server, a type it will not take) is
    /// [`ChatError::Permanent`]; the outbox then says so in the thread.
    async fn upload(
        &self,
        thread: &ChatThread,
        file: FileUpload,
        idempotency_key: &str,
    ) -> Result<(), ChatError>;

    /// How many characters of an email's text a post shows; past that the
    /// outbox uploads the full text as a file.
    fn body_limit(&self) -> usize;

    /// Posts a short notice into the thread.
    async fn notice(
        &self,
        thread: &ChatThread,
        text: &str,
        idempotency_key: &str,
    ) -> Result<(), ChatError>;

    /// What a chat platform says about a teammate's availability, when it
    /// tells (auto-assignment skips people who are away). `Ok(None)`: the
    /// platform does not tell, or the id is not one of its own.
    async fn availability(&self, _agent: &Agent) -> Result<Option<Availability>, ChatError> {
        Ok(None)
    }

    /// Posts a short notice in the room, outside any thread (answers to
    /// room-level commands).
    async fn room_notice(&self, room: &str, text: &str) -> Result<(), ChatError>;

    /// Posts a message into the thread that calls the teammates in
    /// `mention` (a snooze's end, a reminder), whose ids `text` names.
    /// The default is a notice: on Slack the `slack:U…` ids in it become
    /// `<@U…>` mentions. Matrix overrides it to add `m.mentions`.
    async fn mention(
        &self,
        thread: &ChatThread,
        text: &str,
        _mention: &[Agent],
        idempotency_key: &str,
    ) -> Result<(), ChatError> {
        self.notice(thread, text, idempotency_key).await
    }
    /// Tells a room something that calls people: the whole room
    /// (`room_mention`: `@room` on Matrix, `<!channel>` on Slack) and
    /// `users` by their ids on this platform, as mentions that notify.
    async fn room_alert(
        &self,
        room: &str,
        text: &str,
        room_mention: bool,
        users: &[String],
    ) -> Result<(), ChatError>;

    /// Downloads a file shared in chat (decrypting it if it was encrypted).
    async fn download(&self, file: &SharedFile) -> Result<Vec<u8>, ChatError>;

    /// The member as the room knows them, or `None` if they have not joined it.
    async fn member(&self, room: &str, agent: &Agent) -> Result<Option<Member>, ChatError>;

    /// Tells one teammate something in the thread that only they see (a
    /// refusal, an answer to their command). `Ok(false)`: the platform has no
    /// such messages, and the caller posts a notice instead.
    async fn whisper(
        &self,
        _thread: &ChatThread,
        _agent: &Agent,
        _text: &str,
    ) -> Result<bool, ChatError> {
        Ok(false)
    }

    /// A teammate's text as a customer should read it, with the platform's
    /// references to people (`<@U…>` on Slack) replaced by their names.
    /// Never fails: a name that cannot be looked up is left readable as
    /// `@` and the id.
    async fn names_for_mail(&self, text: &str) -> String {
        text.to_owned()
    }

    /// The name the store knows `room` by (Matrix: a configured alias
    /// resolved to its room id, as threads record it).
    fn room_key(&self, room: &str) -> String {
        room.to_owned()
    }

    /// Draws the room's board in the room itself: edits `existing` in place
    /// when it is still there, else posts (and pins) a new one, and returns
    /// where the board now is. `check`: ask the server whether `existing`
    /// still exists (once per room and start). `Ok(None)`: this platform
    /// keeps no board in rooms.
    async fn draw_board(
        &self,
        _room: &str,
        _heading: &str,
        _board: &Board,
        _existing: Option<&str>,
        _check: bool,
    ) -> Result<Option<String>, ChatError> {
        Ok(None)
    }

    /// Whether teammates have a board of their own here (Slack's App Home),
    /// published to each one who opened it with [`ChatPlatform::publish_home`].
    fn has_home(&self) -> bool {
        false
    }

    /// Shows `viewer` the boards of the rooms they are in. Unchanged
    /// content may be skipped: the platform remembers what it last showed.
    async fn publish_home(&self, _viewer: &Agent, _boards: &[RoomBoard]) -> Result<(), ChatError> {
        Ok(())
    }

    /// Posts a table (plain text lines) in the room, outside any thread,
    /// in a monospace block.
    async fn room_table(&self, room: &str, text: &str) -> Result<(), ChatError> {
        self.room_notice(room, &format!("```\n{text}\n```")).await
    }

    /// Uploads a file into the room, outside any thread (a chart answering
    /// a room command).
    async fn room_upload(&self, _room: &str, _file: FileUpload) -> Result<(), ChatError> {
        Err(ChatError::Permanent {
            message: format!("{} has no room uploads", self.platform().as_str()),
        })
    }

    /// Tells one teammate something only they see, outside any thread: a
    /// secret such as a dashboard sign-in link. Matrix: a direct
    /// (encrypted) room with them, reused once made; Slack: an ephemeral
    /// message in `room`. `Ok(false)`: the platform cannot, and the caller
    /// must not fall back to anything public.
    async fn direct(&self, _room: &str, _agent: &Agent, _text: &str) -> Result<bool, ChatError> {
        Ok(false)
    }

    /// Answers a [`ChatEvent::Command`] through the handle it came with.
    async fn respond(&self, _respond_to: &str, _text: &str) -> Result<(), ChatError> {
        Err(ChatError::Permanent {
            message: format!("{} has no command answers", self.platform().as_str()),
        })
    }
}

/// Something a teammate did in chat, already translated from the platform's types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A reaction on a ticket's root message (`added: false`: taken back).
    Reaction {
        thread: ChatThread,
        agent: Agent,
        key: String,
        added: bool,
        /// The platform's id of this event, for deduplication.
        event_ref: String,
    },
    /// A message in a ticket's thread (internal talk or a `!command`).
    ThreadMessage {
        thread: ChatThread,
        agent: Agent,
        text: String,
        event_ref: String,
    },
    /// A file posted in a ticket's thread (for `!reply --attach`).
    ThreadFile {
        thread: ChatThread,
        agent: Agent,
        file: SharedFile,
        event_ref: String,
    },
    /// A command given outside any thread, naming its ticket itself (Slack's
    /// `/mailroom …`); answered privately through [`ChatPlatform::respond`].
    Command {
        platform: Platform,
        /// Where it was typed.
        room: String,
        agent: Agent,
        /// What follows the command's name.
        text: String,
        /// The platform's handle for the answer.
        respond_to: String,
        event_ref: String,
    },
    /// A thread command given through a form rather than typed (Slack's
    /// "Reply by email" dialog).
    ThreadAction {
        thread: ChatThread,
        agent: Agent,
        command: ThreadCommand,
        event_ref: String,
    },
    /// A thread command given by pressing a button (the board's claim,
    /// snooze, close), as the text a teammate would type in the thread.
    ButtonCommand {
        thread: ChatThread,
        agent: Agent,
        text: String,
        event_ref: String,
    },
    /// A teammate opened their personal board (Slack's App Home tab).
    HomeOpened {
        platform: Platform,
        agent: Agent,
        event_ref: String,
    },
    /// A message in the room outside any ticket thread.
    RoomMessage {
        platform: Platform,
        room: String,
        agent: Agent,
        text: String,
        event_ref: String,
    },
}

impl ChatEvent {
    pub fn platform(&self) -> Platform {
        match self {
            ChatEvent::Reaction { thread, .. }
            | ChatEvent::ThreadMessage { thread, .. }
            | ChatEvent::ThreadFile { thread, .. }
            | ChatEvent::ButtonCommand { thread, .. }
            | ChatEvent::ThreadAction { thread, .. } => thread.platform,
            ChatEvent::RoomMessage { platform, .. }
            | ChatEvent::Command { platform, .. }
            | ChatEvent::HomeOpened { platform, .. } => *platform,
        }
    }

    pub fn event_ref(&self) -> &str {
        match self {
            ChatEvent::Reaction { event_ref, .. }
            | ChatEvent::ThreadMessage { event_ref, .. }
            | ChatEvent::ThreadFile { event_ref, .. }
            | ChatEvent::ThreadAction { event_ref, .. }
            | ChatEvent::ButtonCommand { event_ref, .. }
            | ChatEvent::Command { event_ref, .. }
            | ChatEvent::HomeOpened { event_ref, .. }
            | ChatEvent::RoomMessage { event_ref, .. } => event_ref,
        }
    }
}

// Rendering helpers every adapter uses.

/// `s` cut to at most `max` characters, and whether it was cut.
pub(crate) fn truncate_chars(s: &str, max: usize) -> (&str, bool) {
    match s.char_indices().nth(max) {
        Some((cut, _)) => (&s[..cut], true),
        None => (s, false),
    }
}

/// Shown instead of an email's text when it has none (a bare invitation, an
/// attachment alone), so an empty post is never mistaken for a lost body.
pub(crate) const EMPTY_BODY: &str = "(no text in this mail)";

/// Header values (subject, address lists) are cut to this many characters:
/// a hostile 1 MB Subject must not make the post too big for the platform,
/// which would refuse it and leave the ticket without a thread.
pub(crate) const MAX_FIELD_CHARS: usize = 1_000;

/// At most this many attachments and reading problems are listed one by one;
/// the rest are counted. A mail can carry thousands of either.
pub(crate) const MAX_LISTED: usize = 30;

/// `s` cut to at most `max` characters, with `…` when something was cut.
pub(crate) fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match truncate_chars(s, max) {
        (head, false) => std::borrow::Cow::Borrowed(head),
        (head, true) => std::borrow::Cow::Owned(format!("{head}…")),
    }
}

/// The first [`MAX_LISTED`] lines, and a count of the rest when there are more.
pub(crate) fn listed(lines: Vec<String>, what: &str) -> Vec<String> {
    let total = lines.len();
    let mut shown: Vec<String> = lines.into_iter().take(MAX_LISTED).collect();
    if total > MAX_LISTED {
        shown.push(format!("… and {} more {what}", total - MAX_LISTED));
    }
    shown
}

/// `1.5 MB`-style sizes for attachment lists.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `#12 · priority high · claimed by … · tags: … · First response due in …`,
/// the ticket's one-line status.
pub(crate) fn status_line(card: &TicketCard<'_>) -> String {
    let mut s = format!("{}", card.ticket);
    if card.priority != Priority::Normal {
        s.push_str(&format!(" · priority {}", card.priority));
    }
    s.push_str(&format!(" · {}", card.state));
    if !card.tags.is_empty() {
        s.push_str(&format!(" · tags: {}", card.tags.join(", ")));
    }
    if let Some(sla) = &card.sla {
        s.push_str(&format!(" · {sla}"));
    }
    s
}

/// An email's parts as every rendering shows them, each clipped so that a
/// hostile header cannot blow up a post: adapters wrap these in their markup.
pub(crate) struct EmailText<'a> {
    pub from: String,
    pub to: Option<String>,
    pub cc: Option<String>,
    pub subject: String,
    pub date: String,
    /// The text, cut at the platform's limit, or [`EMPTY_BODY`].
    pub body: &'a str,
    /// Whether the text was cut at the platform's limit.
    pub truncated: bool,
    /// Why the text is shorter than the mail's (truncated, folded away).
    pub note: Option<String>,
    /// `📎 name (type, size)` lines, every one (renderers list at most
    /// [`MAX_LISTED`] and count the rest).
    pub attachments: Vec<String>,
    /// Reading problems, one a line, every one.
    pub problems: Vec<String>,
    /// Authentication results and the spoof warning (see [`auth_lines`]).
    pub auth: Vec<String>,
}

impl<'a> EmailText<'a> {
    pub fn new(email: &'a EmailView, max_body_chars: usize) -> EmailText<'a> {
        let parties = |ps: &[crate::domain::email::Party]| {
            (!ps.is_empty()).then(|| {
                let all = ps.iter().map(|p| p.to_string()).collect::<Vec<_>>();
                clip(&all.join(", "), MAX_FIELD_CHARS).into_owned()
            })
        };
        let (body, truncated) = truncate_chars(&email.body, max_body_chars);
        let mut folded = Vec::new();
        if email.quoted_trimmed {
            folded.push("quoted history");
        }
        if email.signature_trimmed {
            folded.push("signature");
        }
        let note = if truncated {
            Some(format!(
                "(truncated at {max_body_chars} characters; the full text is attached in the thread)"
            ))
        } else {
            (!folded.is_empty()).then(|| format!("({} folded away)", folded.join(" and ")))
        };
        EmailText {
            from: clip(&email.from.to_string(), MAX_FIELD_CHARS).into_owned(),
            to: parties(&email.to),
            cc: parties(&email.cc),
            subject: clip(&email.subject, MAX_FIELD_CHARS).into_owned(),
            date: email
                .date
                .and_then(|d| jiff::Timestamp::from_second(d).ok())
                .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| "unknown".into()),
            body: if body.trim().is_empty() {
                EMPTY_BODY
            } else {
                body
            },
            truncated,
            note,
            attachments: email
                .attachments
                .iter()
                .map(|a| {
                    format!(
                        "📎 {} ({}, {})",
                        clip(&a.name, MAX_FIELD_CHARS),
                        clip(&a.content_type, MAX_FIELD_CHARS),
                        human_size(a.size)
                    )
                })
                .collect(),
            problems: email
                .notes
                .iter()
                .map(|n| clip(n, MAX_FIELD_CHARS).into_owned())
                .collect(),
            auth: auth_lines(email),
        }
    }

    /// The whole email as plain text under `heading`.
    pub fn plain(&self, heading: &str) -> String {
        let mut plain = format!("{heading}\nFrom: {}\n", self.from);
        if let Some(to) = &self.to {
            plain.push_str(&format!("To: {to}\n"));
        }
        if let Some(cc) = &self.cc {
            plain.push_str(&format!("Cc: {cc}\n"));
        }
        plain.push_str(&format!("Subject: {}\nDate: {}\n", self.subject, self.date));
        for line in &self.auth {
            plain.push_str(&format!("{line}\n"));
        }
        plain.push_str(&format!("\n{}\n", self.body));
        if let Some(note) = &self.note {
            plain.push_str(&format!("{note}\n"));
        }
        if !self.attachments.is_empty() {
            let list = listed(self.attachments.clone(), "attachments");
            plain.push_str(&format!("{}\n", list.join("\n")));
        }
        for n in listed(self.problems.clone(), "reading problems") {
            plain.push_str(&format!("⚠️ {n}\n"));
        }
        plain
    }
}

/// A minimal card: who wrote and what about, and where to read the rest.
/// Short and without markup, so that a server that refused everything
/// fuller still takes it.
pub(crate) fn minimal_text(heading: &str, ticket: TicketId, email: &EmailView) -> String {
    let mut text = format!(
        "{heading}\nFrom: {}\nSubject: {}\n",
        clip(&email.from.to_string(), 200),
        clip(&email.subject, 200),
    );
    // The spoof warning survives every fallback; the results themselves
    // are in the full text.
    if email.auth.as_ref().is_some_and(|a| a.dmarc_failed()) {
        text.push_str(crate::domain::authres::SPOOF_WARNING);
        text.push('\n');
    }
    text.push_str(&format!(
        "This mail could not be shown here in full: read it with `mailroom tickets show {}` (its text follows as a file).",
        ticket.get()
    ));
    text
}

/// The card's authentication lines: SPF, DKIM and DMARC as the receiving
/// server found them (and a forwarder before it), then the spoof warning
/// when the From domain fails DMARC. Empty when the mail carries no
/// results from a trusted server.
pub(crate) fn auth_lines(email: &EmailView) -> Vec<String> {
    email
        .auth
        .as_ref()
        .map(|a| {
            a.card_lines()
                .into_iter()
                .map(|l| clip(&l, MAX_FIELD_CHARS).into_owned())
                .collect()
        })
        .unwrap_or_default()
}
