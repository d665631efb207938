//! A room's board: one message, pinned, edited in place (`m.replace`) as
//! tickets move. Each line links to its ticket's thread (a matrix.to link
//! to the root event).

use matrix_sdk::room::Room;
use matrix_sdk::ruma::events::room::message::{ReplacementMetadata, RoomMessageEventContent};
use matrix_sdk::ruma::{EventId, OwnedEventId};

use super::render::escape_html;
use super::{MatrixChat, permanent};
use crate::chat::ChatError;
use crate::domain::board::Board;

/// Matrix refuses events over 64 KiB. A board's body and HTML twin stay
/// under this many bytes together, which leaves room for the event's JSON
/// (and, in an edit, the fallback copy of both next to `m.new_content`).
const MAX_BOARD_BYTES: usize = 28_000;
/// Tried first; halved until the board fits [`MAX_BOARD_BYTES`].
const MAX_BOARD_LINES: usize = 200;

/// A link to an event, which every client opens at that event (the
/// thread's root, so the thread opens).
pub fn event_link(room: &str, event: &str) -> String {
    format!(
        "https://matrix.to/#/{}/{}",
        urlencoding(room),
        urlencoding(event)
    )
}

/// Percent-encodes what a matrix.to fragment must not contain raw.
fn urlencoding(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'!'
            | b'$'
            | b'@'
            | b':' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The board as a notice: plain body and HTML, cut so the event fits.
pub fn board_content(room: &str, heading: &str, board: &Board) -> RoomMessageEventContent {
    let mut lines = MAX_BOARD_LINES;
    loop {
        let fitted = board.clone().fit(lines);
        let (plain, html) = render(room, heading, &fitted);
        if plain.len() + html.len() <= MAX_BOARD_BYTES || lines == 0 {
            return RoomMessageEventContent::notice_html(plain, html);
        }
        lines /= 2;
    }
}

fn render(room: &str, heading: &str, board: &Board) -> (String, String) {
    let plain = board.plain(heading);
    let mut html = format!(
        "<h4>{}</h4><p><em>{}</em></p>",
        escape_html(heading),
        escape_html(&board.summary())
    );
    for c in &board.columns {
        html.push_str(&format!(
            "<p><strong>{} ({})</strong></p>",
            escape_html(&c.column.title()),
            c.total()
        ));
        if c.total() == 0 {
            html.push_str("<p>—</p>");
            continue;
        }
        html.push_str("<ul>");
        for t in &c.tickets {
            html.push_str(&format!(
                "<li><a href=\"{}\">{}</a></li>",
                escape_html(&event_link(room, &t.thread_ref)),
                escape_html(&board.line(t))
            ));
        }
        if let Some(more) = c.more_line() {
            html.push_str(&format!("<li><em>{}</em></li>", escape_html(&more)));
        }
        html.push_str("</ul>");
    }
    (plain, html)
}

impl MatrixChat {
    /// Draws the room's board: an edit of `existing` when it is still there
    /// (pinned again if someone unpinned it), else a new message, pinned.
    /// `check`: ask the homeserver whether `existing` was deleted (done once
    /// per room and start; later edits trust the room's synced state).
    /// Returns the board's event id.
    pub(super) async fn draw(
        &self,
        room: &str,
        heading: &str,
        board: &Board,
        existing: Option<&str>,
        check: bool,
    ) -> Result<String, ChatError> {
        let r = self.room(room)?;
        let content = board_content(r.room_id().as_str(), heading, board);
        if let Some(id) = existing {
            let id = OwnedEventId::try_from(id)
                .map_err(|e| permanent(format!("board event {id}: {e}")))?;
            if self.still_there(&r, &id, check).await? {
                let edit = content.make_replacement(ReplacementMetadata::new(id.clone(), None));
                self.send(&r, edit, None).await?;
                if self.unpinned(&r, &id, check).await? {
                    // Unpinned by someone (or pinned before the bot could):
                    // pinned again, rather than a new message posted.
                    self.pin(&r, &id).await;
                }
                return Ok(id.to_string());
            }
            tracing::info!(room, board = %id, "the board was deleted; posting a new one");
        }
        // A transaction id per room and predecessor: a post retried after
        // its answer was lost returns the same event instead of a second
        // board, while a board posted to replace a deleted one is new.
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (r.room_id().as_str(), existing).hash(&mut h);
            format!("mailroom-board-{:016x}", h.finish())
        };
        let id = self.send(&r, content, Some(&key)).await?;
        self.pin(&r, &id).await;
        Ok(id.to_string())
    }

    /// Whether the board message can still be edited (not deleted).
    async fn still_there(&self, r: &Room, id: &EventId, check: bool) -> Result<bool, ChatError> {
        if check {
            match r.event(id, None).await {
                Ok(ev) => {
                    let content = ev
                        .raw()
                        .get_field::<serde_json::Value>("content")
                        .ok()
                        .flatten();
                    // A redacted event keeps its id but loses its content.
                    if content.is_none_or(|c| c.as_object().is_none_or(|o| o.is_empty())) {
                        return Ok(false);
                    }
                }
                Err(e) => {
                    let e = super::classify(e);
                    if e.is_transient() {
                        return Err(e);
                    }
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Whether the board is missing from the room's pins while the bot may
    /// pin (a bot without the power leaves it be, rather than try on every
    /// change).
    async fn unpinned(&self, r: &Room, id: &EventId, check: bool) -> Result<bool, ChatError> {
        let pinned = if check {
            r.load_pinned_events().await.map_err(super::classify)?
        } else {
            r.pinned_event_ids()
        };
        let missing = pinned.is_none_or(|p| !p.iter().any(|e| e == id));
        Ok(missing && self.may_pin(r).await)
    }

    async fn may_pin(&self, r: &Room) -> bool {
        use matrix_sdk::ruma::events::StateEventType;
        match r.power_levels().await {
            Ok(levels) => {
                levels.user_can_send_state(&self.own_user, StateEventType::RoomPinnedEvents)
            }
            Err(_) => false,
        }
    }

    /// Pins the board; a bot without the power to is told in the log once
    /// per board, and the board works unpinned.
    async fn pin(&self, r: &Room, id: &EventId) {
        if !self.may_pin(r).await {
            tracing::warn!(
                room = %r.room_id(),
                "the board is not pinned: the bot needs the power level to send m.room.pinned_events in this room"
            );
            return;
        }
        if let Err(e) = r.pin_event(id).await {
            tracing::warn!(room = %r.room_id(), error = %e, "could not pin the board");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::board::BoardTicket;
    use crate::domain::ids::TicketId;
    use crate::domain::routing::Priority;
    use crate::domain::ticket::Status;

    fn tickets(n: i64, subject: &str) -> Vec<BoardTicket> {
        (0..n)
            .map(|i| BoardTicket {
                ticket: TicketId::new(i + 1),
                status: Status::Open,
                owner: None,
                subject: subject.to_owned(),
                customer: "customer@example.net".into(),
                created_at_ms: i,
                priority: Priority::Normal,
                thread_ref: format!("$event{i}"),
                snoozed_until_ms: None,
            })
            .collect()
    }

    fn body_and_html(c: &RoomMessageEventContent) -> (String, String) {
        let v = serde_json::to_value(c).unwrap();
        (
            v["body"].as_str().unwrap().to_owned(),
            v["formatted_body"].as_str().unwrap().to_owned(),
        )
    }

    #[test]
    fn lines_link_to_their_thread_and_escape_what_customers_wrote() {
        let board = Board::build(tickets(1, "<b>hi</b> & \"you\""), 0);
        let (plain, html) = body_and_html(&board_content("!r:x", "Support", &board));
        assert!(plain.contains("#1 · <b>hi</b> & \"you\""), "{plain}");
        assert!(
            html.contains("<a href=\"https://matrix.to/#/!r:x/$event0\">#1 · &lt;b&gt;hi&lt;/b&gt; &amp; &quot;you&quot;"),
            "{html}"
        );
        assert!(!html.contains("<b>hi"), "{html}");
    }

    #[test]
    fn a_huge_board_is_cut_to_fit_an_event_and_says_how_many_more() {
        // 5,000 tickets with the longest subjects a line shows, in a script
        // whose characters take 3 bytes and escape to nothing shorter.
        let board = Board::build(tickets(5_000, &"語".repeat(400)), 0);
        let content = board_content("!room:example.org", "Support", &board);
        let json = serde_json::to_string(&content).unwrap();
        assert!(json.len() < 64 * 1024 / 2, "{} bytes", json.len());
        let (plain, _) = body_and_html(&content);
        assert!(plain.contains("more"), "{plain}");
        assert!(plain.starts_with("Support — 5000 unclaimed"), "{plain}");
        // A small board is not cut.
        let (plain, _) = body_and_html(&board_content(
            "!r:x",
            "S",
            &Board::build(tickets(3, "a"), 0),
        ));
        assert!(!plain.contains("more"), "{plain}");
    }
}
