//! The board in the chat: one message per Matrix room, edited in place as
//! tickets move, and each Slack teammate's App Home tab.
//!
//! Every change of a ticket that shows in chat ends in an outbox chat job
//! (a new ticket's post, a status refresh after a claim, close, reopen,
//! assignment, a customer's reply), so the outbox worker is the one place
//! that tells the board: [`BoardHub::changed`] after such a job is done.
//! One task a platform then redraws, at most once per interval
//! (`[board] matrix_interval_ms`, `slack_interval_ms`): the first change
//! after a quiet spell is drawn at once, the changes that follow within the
//! interval are gathered into one edit at its end, and the last state
//! always lands because a change during a redraw marks the board again.
//! A room whose board did not change (same tickets, same columns) is not
//! edited, and while a burst of mail is being posted the interval is six
//! times as long, so a burst costs at most one edit a room per long
//! interval and leaves the homeserver's rate limit to the posts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::App;
use crate::chat::{ChatError, ChatPlatform, RoomBoard};
use crate::domain::board::Board;
use crate::domain::chat::Platform;
use crate::domain::ids::Agent;
use crate::store::StoreError;

/// The longest a rate limit's Retry-After is waited out in one go.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Default)]
struct SlotState {
    dirty: bool,
    /// Emails posted (a ticket root or a follow-up) since the last round.
    posts: u32,
    /// Teammates who opened their Home tab (Slack), shown the board on
    /// every change from then on.
    viewers: BTreeSet<Agent>,
    /// Viewers who opened it since the last round: shown it at once.
    fresh: BTreeSet<Agent>,
}

#[derive(Default)]
struct Slot {
    state: std::sync::Mutex<SlotState>,
    wake: Notify,
}

/// Where the flows tell the board tasks that something changed.
#[derive(Default)]
pub struct BoardHub {
    slots: [Slot; 2],
    /// Board messages edited or posted (Matrix), for `/metrics`-like
    /// figures and tests.
    pub draws: AtomicU64,
    /// Home tabs drawn (Slack; one unchanged since it was last published
    /// is not sent again).
    pub publishes: AtomicU64,
}

fn index(p: Platform) -> usize {
    match p {
        Platform::Matrix => 0,
        Platform::Slack => 1,
    }
}

impl BoardHub {
    fn slot(&self, p: Platform) -> &Slot {
        &self.slots[index(p)]
    }

    fn with<T>(&self, p: Platform, f: impl FnOnce(&mut SlotState) -> T) -> T {
        // A poisoned lock only means a panic elsewhere mid-update of plain
        // flags and sets; they stay usable.
        let mut st = self.slot(p).state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut st)
    }

    /// Tickets on `platform` may have moved: its boards are redrawn.
    pub fn changed(&self, p: Platform) {
        self.with(p, |st| st.dirty = true);
        self.slot(p).wake.notify_one();
    }

    /// An email was posted on `platform` (a new ticket, or a follow-up that
    /// may have moved one): its boards changed.
    pub fn posted(&self, p: Platform) {
        self.with(p, |st| {
            st.dirty = true;
            st.posts = st.posts.saturating_add(1);
        });
        self.slot(p).wake.notify_one();
    }

    /// `agent` opened their Home tab: it is drawn for them now and kept up
    /// to date from then on (until a restart; opening it again resumes).
    pub fn opened(&self, p: Platform, agent: Agent) {
        self.with(p, |st| {
            st.viewers.insert(agent.clone());
            st.fresh.insert(agent);
        });
        self.slot(p).wake.notify_one();
    }
}

/// What one round has to do.
struct Round {
    dirty: bool,
    /// Emails posted since the last round: more than one means a burst of
    /// mail is being posted.
    posts: u32,
    viewers: Vec<Agent>,
}

/// During a burst of mail the board is redrawn this many times less often:
/// the bot's posts and the board's edits share the homeserver's rate limit
/// (Synapse's default `rc_message`: 0.2 messages a second after a burst of
/// 10), and the posts matter more. The burst's last state still lands, one
/// long interval after its last post at most.
const BURST_SLOWDOWN: u32 = 6;

impl BoardHub {
    fn take(&self, p: Platform) -> Round {
        self.with(p, |st| {
            let dirty = std::mem::take(&mut st.dirty);
            let posts = std::mem::take(&mut st.posts);
            let fresh = std::mem::take(&mut st.fresh);
            let viewers = if dirty {
                st.viewers.iter().cloned().collect()
            } else {
                fresh.into_iter().collect()
            };
            Round {
                dirty,
                posts,
                viewers,
            }
        })
    }
}

/// Why a round stopped short.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Keeps `platform`'s boards drawn until `cancel` fires.
pub async fn run(app: Arc<App>, platform: Platform, cancel: CancellationToken) {
    let Some(chat) = app.chats.get(&platform).cloned() else {
        return;
    };
    let interval = match platform {
        Platform::Matrix => app.settings.board.matrix_interval(),
        Platform::Slack => app.settings.board.slack_interval(),
    };
    let mut drawn = Drawn::default();
    // At start every room's board is checked (created if missing, its
    // deletion noticed) and drawn.
    app.board.changed(platform);
    loop {
        tokio::select! {
            _ = app.board.slot(platform).wake.notified() => {}
            _ = cancel.cancelled() => return,
        }
        let round = app.board.take(platform);
        let pause = match one_round(&app, chat.as_ref(), &mut drawn, &round).await {
            Ok(()) if round.posts > 1 => interval * BURST_SLOWDOWN,
            Ok(()) => interval,
            Err(e) => {
                // Nothing is lost: the board is marked again and redrawn
                // after the pause, from the store's state then.
                if round.dirty {
                    app.board.changed(platform);
                }
                for v in round.viewers {
                    app.board.opened(platform, v);
                }
                match e {
                    RoundError::Chat(ChatError::Transient {
                        retry_after_ms: Some(ms),
                        ..
                    }) => Duration::from_millis(ms).clamp(interval, MAX_BACKOFF),
                    e => {
                        tracing::warn!(platform = platform.as_str(), error = %e, "board not redrawn; trying again");
                        (interval * 4).min(MAX_BACKOFF)
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// What this process last drew per room.
#[derive(Default)]
struct Drawn {
    /// The board as last drawn, ages left out (they move with the clock,
    /// not with the tickets; redrawing for them alone would edit every room
    /// every minute).
    boards: BTreeMap<String, Board>,
}

async fn one_round(
    app: &App,
    chat: &dyn ChatPlatform,
    drawn: &mut Drawn,
    round: &Round,
) -> Result<(), RoundError> {
    let platform = chat.platform();
    let rooms = rooms(app, chat).await?;
    let mut boards = Vec::with_capacity(rooms.len());
    for (room, heading) in rooms {
        let tickets = app.store.board_tickets(platform, &room).await?;
        let board = Board::build(tickets, app.now_ms());
        if round.dirty {
            let drawn_now = draw_room(app, chat, drawn, &room, &heading, &board).await;
            settle_part(drawn_now, platform, &room)?;
        }
        boards.push(RoomBoard {
            room,
            heading,
            board,
        });
    }
    if chat.has_home() {
        for viewer in &round.viewers {
            let published = async {
                let mut mine = Vec::new();
                for rb in &boards {
                    // Only the channels the viewer is in: a Home tab must
                    // not show tickets of a channel they cannot read.
                    if chat.member(&rb.room, viewer).await?.is_some() {
                        mine.push(rb.clone());
                    }
                }
                chat.publish_home(viewer, &mine).await
            }
            .await;
            app.board.publishes.fetch_add(1, Ordering::Relaxed);
            settle_part(
                published.map_err(RoundError::from),
                platform,
                viewer.as_str(),
            )?;
        }
    }
    Ok(())
}

/// One room's board or one viewer's Home tab done: a refusal that will
/// not change by waiting (no permission, an unknown room) concerns that
/// part alone and is logged, and the round goes on; anything else (a rate
/// limit, an outage, the store) ends the round, to be tried again whole.
fn settle_part(
    r: Result<(), RoundError>,
    platform: Platform,
    part: &str,
) -> Result<(), RoundError> {
    match r {
        Err(RoundError::Chat(e @ ChatError::Permanent { .. })) => {
            tracing::warn!(platform = platform.as_str(), part, error = %e, "board not drawn here");
            Ok(())
        }
        other => other,
    }
}

async fn draw_room(
    app: &App,
    chat: &dyn ChatPlatform,
    drawn: &mut Drawn,
    room: &str,
    heading: &str,
    board: &Board,
) -> Result<(), RoundError> {
    let platform = chat.platform();
    let same = Board {
        now_ms: 0,
        ..board.clone()
    };
    if drawn.boards.get(room) == Some(&same) {
        return Ok(());
    }
    let first = !drawn.boards.contains_key(room);
    let existing = app.store.board_message(platform, room).await?;
    let Some(now_at) = chat
        .draw_board(room, heading, board, existing.as_deref(), first)
        .await?
    else {
        // This platform keeps no board in its rooms.
        drawn.boards.insert(room.to_owned(), same);
        return Ok(());
    };
    app.board.draws.fetch_add(1, Ordering::Relaxed);
    if existing.as_deref() != Some(now_at.as_str()) {
        app.store
            .save_board_message(platform, room, &now_at, app.now_ms())
            .await?;
        tracing::info!(platform = platform.as_str(), room, board = %now_at, "board posted");
    }
    drawn.boards.insert(room.to_owned(), same);
    Ok(())
}

/// The platform's rooms that get a board, with their heading: the rooms
/// mailboxes post to, and any other room holding an open ticket's thread
/// (a routing rule's) or a board.
async fn rooms(app: &App, chat: &dyn ChatPlatform) -> Result<Vec<(String, String)>, StoreError> {
    let platform = chat.platform();
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for m in app.mailboxes.values() {
        if let Some(room) = m.settings.chat.room(platform) {
            out.entry(chat.room_key(&room))
                .or_insert_with(|| m.settings.display_name.clone());
        }
    }
    for room in app.store.board_rooms(platform).await? {
        out.entry(room).or_insert_with(|| "Tickets".to_owned());
    }
    Ok(out.into_iter().collect())
}

/// `/mailroom board` and `!mailroom board`: the room's board as compact
/// text, for the asker.
pub async fn board_text(app: &App, platform: Platform, room: &str) -> Result<String, StoreError> {
    let key = app
        .chats
        .get(&platform)
        .map(|c| c.room_key(room))
        .unwrap_or_else(|| room.to_owned());
    let heading = app
        .mailboxes
        .values()
        .find(|m| {
            m.settings.chat.room(platform).map(|r| {
                app.chats
                    .get(&platform)
                    .map(|c| c.room_key(&r))
                    .unwrap_or(r)
            }) == Some(key.clone())
        })
        .map(|m| m.settings.display_name.clone())
        .unwrap_or_else(|| "Tickets".to_owned());
    let tickets = app.store.board_tickets(platform, &key).await?;
    // An ephemeral answer is one message: 30 lines are plenty to act on.
    Ok(Board::build(tickets, app.now_ms()).fit(30).plain(&heading))
}
