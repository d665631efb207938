//! The chat spool: chat events that came while the database was
//! unavailable, kept on disk until it is back.
//!
//! Every chat event is first recorded as seen (`first_sighting`, unique on
//! platform and event id) and only then acted on, so an event is acted on
//! at most once. When that first store call fails for a transient reason
//! (the database stopped, unreachable past `database.acquire_timeout_secs`)
//! nothing of the event was written yet: it is appended to
//! `<database.spool_dir>/chat-events.jsonl` (one JSON line, fsynced before
//! the teammate is told), and replayed — through the same sighting — at the
//! next successful store contact, in arrival order. A replay that finds the
//! event already seen (the platform redelivered it and that copy was
//! handled, or a crash came after the replay acted but before the spool was
//! rewritten) drops it, so a kept command takes effect once.
//!
//! A store failure *after* the sighting is not replayed: the command may
//! have partly taken effect (a reply queued before its confirmation could
//! be written), and running it again could mail the customer twice. The
//! teammate is told to check and repeat it.
//!
//! The teammate is told in the thread (or privately, for a slash command)
//! straight through the chat platform, which needs no database.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::App;
use crate::chat::ChatEvent;
use crate::domain::chat::{ChatThread, Platform, SharedFile};
use crate::domain::command::{Parsed, ThreadCommand, parse, reaction_key};
use crate::domain::ids::Agent;
use crate::store::StoreError;

/// The spool file's name inside `database.spool_dir`.
pub const SPOOL_FILE: &str = "chat-events.jsonl";

/// Why the spool could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The file or its folder could not be created, written or read.
    #[error("chat spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// This kind of event cannot be kept (it carries nothing to act on later).
    #[error("a {0} event is not kept while the database is unavailable")]
    NotKept(&'static str),
}

/// A thread, as the spool writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    platform: Platform,
    room: String,
    thread_ref: String,
}

impl From<&ChatThread> for Thread {
    fn from(t: &ChatThread) -> Self {
        Thread {
            platform: t.platform,
            room: t.room.clone(),
            thread_ref: t.thread_ref.clone(),
        }
    }
}

impl From<Thread> for ChatThread {
    fn from(t: Thread) -> Self {
        ChatThread {
            platform: t.platform,
            room: t.room,
            thread_ref: t.thread_ref,
        }
    }
}

/// One kept chat event: the parts of a [`ChatEvent`] the flows read, as
/// plain values (ids are parsed again when read back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kept {
    Reaction {
        thread: Thread,
        agent: String,
        key: String,
        added: bool,
        event_ref: String,
    },
    ThreadMessage {
        thread: Thread,
        agent: String,
        text: String,
        event_ref: String,
    },
    ThreadFile {
        thread: Thread,
        agent: String,
        name: String,
        content_type: String,
        size: u64,
        source: String,
        event_ref: String,
    },
    Command {
        platform: Platform,
        room: String,
        agent: String,
        text: String,
        respond_to: String,
        event_ref: String,
    },
    /// A reply given through a form (Slack's "Reply by email" dialog).
    FormReply {
        thread: Thread,
        agent: String,
        text: String,
        force: bool,
        attach: bool,
        event_ref: String,
    },
    ButtonCommand {
        thread: Thread,
        agent: String,
        text: String,
        event_ref: String,
    },
    RoomMessage {
        platform: Platform,
        room: String,
        agent: String,
        text: String,
        event_ref: String,
    },
}

impl Kept {
    /// What of `ev` is kept; an error for events with nothing to do later.
    pub fn of(ev: &ChatEvent) -> Result<Kept, SpoolError> {
        Ok(match ev.clone() {
            ChatEvent::Reaction {
                thread,
                agent,
                key,
                added,
                event_ref,
            } => Kept::Reaction {
                thread: (&thread).into(),
                agent: agent.as_str().to_owned(),
                key,
                added,
                event_ref,
            },
            ChatEvent::ThreadMessage {
                thread,
                agent,
                text,
                event_ref,
            } => Kept::ThreadMessage {
                thread: (&thread).into(),
                agent: agent.as_str().to_owned(),
                text,
                event_ref,
            },
            ChatEvent::ThreadFile {
                thread,
                agent,
                file,
                event_ref,
            } => Kept::ThreadFile {
                thread: (&thread).into(),
                agent: agent.as_str().to_owned(),
                name: file.name,
                content_type: file.content_type,
                size: file.size,
                source: file.source,
                event_ref,
            },
            ChatEvent::Command {
                platform,
                room,
                agent,
                text,
                respond_to,
                event_ref,
            } => Kept::Command {
                platform,
                room,
                agent: agent.as_str().to_owned(),
                text,
                respond_to,
                event_ref,
            },
            ChatEvent::ThreadAction {
                thread,
                agent,
                command:
                    ThreadCommand::Reply {
                        text,
                        force,
                        attach,
                    },
                event_ref,
            } => Kept::FormReply {
                thread: (&thread).into(),
                agent: agent.as_str().to_owned(),
                text,
                force,
                attach,
                event_ref,
            },
            ChatEvent::ThreadAction { .. } => return Err(SpoolError::NotKept("form command")),
            ChatEvent::ButtonCommand {
                thread,
                agent,
                text,
                event_ref,
            } => Kept::ButtonCommand {
                thread: (&thread).into(),
                agent: agent.as_str().to_owned(),
                text,
                event_ref,
            },
            ChatEvent::HomeOpened { .. } => return Err(SpoolError::NotKept("home opened")),
            ChatEvent::RoomMessage {
                platform,
                room,
                agent,
                text,
                event_ref,
            } => Kept::RoomMessage {
                platform,
                room,
                agent: agent.as_str().to_owned(),
                text,
                event_ref,
            },
        })
    }

    /// The event again; an error names the id that no longer parses.
    pub fn event(self) -> Result<ChatEvent, String> {
        let agent = |a: &str| Agent::parse(a).map_err(|e| format!("agent {a:?}: {e}"));
        Ok(match self {
            Kept::Reaction {
                thread,
                agent: a,
                key,
                added,
                event_ref,
            } => ChatEvent::Reaction {
                thread: thread.into(),
                agent: agent(&a)?,
                key,
                added,
                event_ref,
            },
            Kept::ThreadMessage {
                thread,
                agent: a,
                text,
                event_ref,
            } => ChatEvent::ThreadMessage {
                thread: thread.into(),
                agent: agent(&a)?,
                text,
                event_ref,
            },
            Kept::ThreadFile {
                thread,
                agent: a,
                name,
                content_type,
                size,
                source,
                event_ref,
            } => ChatEvent::ThreadFile {
                thread: thread.into(),
                agent: agent(&a)?,
                file: SharedFile {
                    name,
                    content_type,
                    size,
                    source,
                },
                event_ref,
            },
            Kept::Command {
                platform,
                room,
                agent: a,
                text,
                respond_to,
                event_ref,
            } => ChatEvent::Command {
                platform,
                room,
                agent: agent(&a)?,
                text,
                respond_to,
                event_ref,
            },
            Kept::FormReply {
                thread,
                agent: a,
                text,
                force,
                attach,
                event_ref,
            } => ChatEvent::ThreadAction {
                thread: thread.into(),
                agent: agent(&a)?,
                command: ThreadCommand::Reply {
                    text,
                    force,
                    attach,
                },
                event_ref,
            },
            Kept::ButtonCommand {
                thread,
                agent: a,
                text,
                event_ref,
            } => ChatEvent::ButtonCommand {
                thread: thread.into(),
                agent: agent(&a)?,
                text,
                event_ref,
            },
            Kept::RoomMessage {
                platform,
                room,
                agent: a,
                text,
                event_ref,
            } => ChatEvent::RoomMessage {
                platform,
                room,
                agent: agent(&a)?,
                text,
                event_ref,
            },
        })
    }
}

/// The spool file and how many events it holds (the run loop owns it, so
/// appends and replays never overlap).
pub struct Spool {
    dir: PathBuf,
    held: usize,
    /// Events whose teammate was told it is kept (a redelivery of the same
    /// event during the outage is kept again, but not announced again).
    told: std::collections::BTreeSet<String>,
}

impl Spool {
    /// The spool in `dir`; nothing is created until an event is kept.
    pub fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_owned(),
            held: 0,
            told: Default::default(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(SPOOL_FILE)
    }

    /// Whether events are waiting for the database.
    pub fn holds_events(&self) -> bool {
        self.held > 0
    }

    /// Reads the kept events, oldest first. A line that does not parse (a
    /// write cut short by a crash) is skipped with an error naming it.
    pub async fn load(&mut self) -> Result<Vec<Kept>, SpoolError> {
        let path = self.path();
        let kept = blocking(path.clone(), move |path| {
            let file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Kept>(&line) {
                    Ok(k) => out.push(k),
                    Err(e) => tracing::error!(
                        spool = %path.display(),
                        line = n + 1,
                        error = %e,
                        "chat spool: unreadable line skipped"
                    ),
                }
            }
            Ok(out)
        })
        .await?;
        self.held = kept.len();
        Ok(kept)
    }

    /// Appends `kept` and waits until it is on disk.
    pub async fn append(&mut self, kept: &Kept) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(kept).map_err(|e| SpoolError::Io {
            path: self.path(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        let dir = self.dir.clone();
        blocking(self.path(), move |path| {
            let new_dir = !dir.exists();
            create_private_dir(&dir)?;
            let mut file = private_file().append(true).create(true).open(path)?;
            file.write_all(&line)?;
            file.sync_data()?;
            if new_dir {
                sync_dir(&dir)?;
            }
            Ok(())
        })
        .await?;
        self.held += 1;
        Ok(())
    }

    /// Replaces the spool with `left` (written aside, fsynced, renamed over
    /// it); with nothing left the file is removed.
    pub async fn rewrite(&mut self, left: &[Kept]) -> Result<(), SpoolError> {
        let mut text = Vec::new();
        for k in left {
            let line = serde_json::to_vec(k).map_err(|e| SpoolError::Io {
                path: self.path(),
                source: std::io::Error::other(e),
            })?;
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        let dir = self.dir.clone();
        blocking(self.path(), move |path| {
            if text.is_empty() {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e),
                }
            } else {
                let aside = path.with_extension("jsonl.new");
                let mut file = private_file()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&aside)?;
                file.write_all(&text)?;
                file.sync_data()?;
                std::fs::rename(&aside, path)?;
            }
            sync_dir(&dir)
        })
        .await?;
        self.held = left.len();
        if left.is_empty() {
            self.told.clear();
        }
        Ok(())
    }
}

/// Runs file work off the async threads; errors name the spool file.
async fn blocking<T, F>(path: PathBuf, work: F) -> Result<T, SpoolError>
where
    T: Send + 'static,
    F: FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
{
    let p = path.clone();
    match tokio::task::spawn_blocking(move || work(&p)).await {
        Ok(r) => r.map_err(|source| SpoolError::Io { path, source }),
        Err(e) => Err(SpoolError::Io {
            path,
            source: std::io::Error::other(e),
        }),
    }
}

/// The spool holds what teammates typed: owner-only.
fn private_file() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Makes a file's creation, rename or removal durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Handles one chat event; if the database is unavailable before anything
/// was written, keeps it in the spool and tells the teammate.
pub(super) async fn handle_or_keep(app: &App, spool: &mut Spool, ev: ChatEvent) {
    match app
        .store
        .first_sighting(ev.platform(), ev.event_ref(), app.now_ms())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!("already handled");
            return;
        }
        Err(e) if e.is_transient() => return keep(app, spool, &ev, &e).await,
        Err(e) => {
            tracing::error!(error = %e, "chat event not handled");
            return;
        }
    }
    act(app, ev).await
}

/// Acts on an event already recorded as seen.
async fn act(app: &App, ev: ChatEvent) {
    let told = ev.clone();
    if let Err(e) = super::chat::act_on(app, ev).await {
        tracing::error!(error = %e, "chat event not handled");
        if e.is_transient() && is_command(app, &told) {
            let text = format!(
                "⚠️ {}: the database failed while acting on this; it may not have taken effect. \
                 Check, and give it again if needed.",
                agent_of(&told)
            );
            tell(app, &told, &text).await;
        }
    }
}

async fn keep(app: &App, spool: &mut Spool, ev: &ChatEvent, error: &StoreError) {
    let kept = match Kept::of(ev) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, store_error = %error, "chat event dropped");
            return;
        }
    };
    if let Err(e) = spool.append(&kept).await {
        tracing::error!(error = %e, store_error = %error, "chat event lost: database and spool both unavailable");
        if is_command(app, ev) {
            let text = format!(
                "⚠️ {}: the database is unavailable and this could not be kept; give it again later.",
                agent_of(ev)
            );
            tell(app, ev, &text).await;
        }
        return;
    }
    tracing::warn!(error = %error, spool = %spool.path().display(), "database unavailable; chat event kept for later");
    if is_command(app, ev) && spool.told.insert(ev.event_ref().to_owned()) {
        let text = format!(
            "⏳ {}: the database is unavailable right now. This is kept and will be acted on when it is back.",
            agent_of(ev)
        );
        tell(app, ev, &text).await;
    }
}

/// Acts on the kept events while the store answers; stops at the first
/// that finds it unavailable again, keeping that one and the rest.
pub(super) async fn replay(app: &App, spool: &mut Spool) {
    let kept = match spool.load().await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "chat spool unreadable");
            return;
        }
    };
    if kept.is_empty() {
        return;
    }
    let total = kept.len();
    let mut left = Vec::new();
    let mut acted = 0usize;
    for k in kept {
        if !left.is_empty() {
            left.push(k);
            continue;
        }
        let ev = match k.clone().event() {
            Ok(ev) => ev,
            Err(e) => {
                tracing::error!(error = %e, spool = %spool.path().display(), "chat spool: kept event no longer valid; dropped");
                continue;
            }
        };
        match app
            .store
            .first_sighting(ev.platform(), ev.event_ref(), app.now_ms())
            .await
        {
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %e, "database still unavailable; chat events stay kept");
                left.push(k);
            }
            Err(e) => {
                tracing::error!(error = %e, event = ev.event_ref(), "kept chat event not handled")
            }
            Ok(false) => {
                tracing::info!(
                    event = ev.event_ref(),
                    "kept chat event was already handled"
                )
            }
            Ok(true) => {
                let span = tracing::info_span!(
                    "chat",
                    platform = ev.platform().as_str(),
                    event = ev.event_ref(),
                    kept = true
                );
                tracing::Instrument::instrument(act(app, ev), span).await;
                acted += 1;
            }
        }
    }
    if left.len() < total {
        tracing::info!(
            acted,
            still_kept = left.len(),
            "database back: acted on chat events kept during its outage"
        );
        if let Err(e) = spool.rewrite(&left).await {
            // The events acted on are recorded as seen: a later replay
            // skips them.
            tracing::error!(error = %e, "chat spool could not be rewritten");
        }
    }
}

/// Whether a teammate expects an answer to `ev` (a command or a mapped
/// reaction, not talk).
fn is_command(app: &App, ev: &ChatEvent) -> bool {
    match ev {
        ChatEvent::Reaction { key, .. } => {
            let key = reaction_key(key);
            let r = &app.settings.reactions;
            r.claim.contains(&key) || r.close.contains(&key) || r.pending.contains(&key)
        }
        ChatEvent::ThreadMessage { text, .. }
        | ChatEvent::ButtonCommand { text, .. }
        | ChatEvent::RoomMessage { text, .. } => !matches!(parse(text), Ok(Parsed::NotACommand)),
        ChatEvent::Command { .. } | ChatEvent::ThreadAction { .. } => true,
        ChatEvent::ThreadFile { .. } | ChatEvent::HomeOpened { .. } => false,
    }
}

fn agent_of(ev: &ChatEvent) -> &Agent {
    match ev {
        ChatEvent::Reaction { agent, .. }
        | ChatEvent::ThreadMessage { agent, .. }
        | ChatEvent::ThreadFile { agent, .. }
        | ChatEvent::Command { agent, .. }
        | ChatEvent::ThreadAction { agent, .. }
        | ChatEvent::ButtonCommand { agent, .. }
        | ChatEvent::HomeOpened { agent, .. }
        | ChatEvent::RoomMessage { agent, .. } => agent,
    }
}

/// Says `text` where `ev` happened, straight through the platform (the
/// outbox needs the database).
async fn tell(app: &App, ev: &ChatEvent, text: &str) {
    let Some(chat) = app.chats.get(&ev.platform()) else {
        return;
    };
    let r = match ev {
        ChatEvent::Reaction { thread, .. }
        | ChatEvent::ThreadMessage { thread, .. }
        | ChatEvent::ThreadFile { thread, .. }
        | ChatEvent::ThreadAction { thread, .. }
        | ChatEvent::ButtonCommand { thread, .. } => {
            let key = format!("mailroom-db-down-{}", ev.event_ref());
            chat.notice(thread, text, &key).await
        }
        ChatEvent::Command { respond_to, .. } => chat.respond(respond_to, text).await,
        ChatEvent::RoomMessage { room, .. } => chat.room_notice(room, text).await,
        ChatEvent::HomeOpened { .. } => Ok(()),
    };
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not tell the teammate about the database outage");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread() -> ChatThread {
        ChatThread {
            platform: Platform::Matrix,
            room: "!r:example.org".into(),
            thread_ref: "$root".into(),
        }
    }

    fn events() -> Vec<ChatEvent> {
        let agent = Agent::parse("@alice:example.org").unwrap();
        vec![
            ChatEvent::Reaction {
                thread: thread(),
                agent: agent.clone(),
                key: "🙋".into(),
                added: true,
                event_ref: "$1".into(),
            },
            ChatEvent::ThreadMessage {
                thread: thread(),
                agent: agent.clone(),
                text: "!reply Hello\nsecond line".into(),
                event_ref: "$2".into(),
            },
            ChatEvent::ThreadAction {
                thread: thread(),
                agent: agent.clone(),
                command: ThreadCommand::Reply {
                    text: "from a form".into(),
                    force: true,
                    attach: false,
                },
                event_ref: "$3".into(),
            },
            ChatEvent::Command {
                platform: Platform::Slack,
                room: "C1".into(),
                agent: agent.clone(),
                text: "claim 4".into(),
                respond_to: "https://hooks.example/1".into(),
                event_ref: "$4".into(),
            },
        ]
    }

    #[tokio::test]
    async fn kept_events_come_back_in_order_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::new(&dir.path().join("spool"));
        for ev in events() {
            spool.append(&Kept::of(&ev).unwrap()).await.unwrap();
        }
        // A crash mid-append leaves half a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(spool.path())
            .unwrap();
        f.write_all(b"{\"kind\":\"reaction\",\"thr").unwrap();
        drop(f);
        let mut again = Spool::new(&dir.path().join("spool"));
        let back: Vec<ChatEvent> = again
            .load()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.event().unwrap())
            .collect();
        assert_eq!(back, events());
        assert!(again.holds_events());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(again.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let rest: Vec<Kept> = events()[2..].iter().map(|e| Kept::of(e).unwrap()).collect();
        again.rewrite(&rest).await.unwrap();
        assert_eq!(again.load().await.unwrap(), rest);
        again.rewrite(&[]).await.unwrap();
        assert!(!again.path().exists());
        assert!(!again.holds_events());
    }

    #[test]
    fn a_board_opening_is_not_kept() {
        let ev = ChatEvent::HomeOpened {
            platform: Platform::Slack,
            agent: Agent::parse("@alice:example.org").unwrap(),
            event_ref: "h".into(),
        };
        assert!(matches!(Kept::of(&ev), Err(SpoolError::NotKept(_))));
    }
}
