//! The board on Slack: each teammate's App Home tab (`views.publish`),
//! with a button row per ticket (claim, open thread, snooze, close), and
//! what a press of those buttons means.
//!
//! Limits kept (https://api.slack.com/reference/surfaces/views,
//! https://api.slack.com/reference/block-kit/blocks): at most 100 blocks a
//! view, 3,000 characters a section text, 150 a header, 75 a button's text,
//! 255 an `action_id`, 2,000 a button's `value`, 3,000 its `url`.

use serde_json::{Value, json};

use super::render::escape;
use crate::chat::RoomBoard;
use crate::domain::board::{Board, Column};
use crate::domain::chat::{ChatThread, Platform};

/// Blocks a Home tab view may hold.
pub const MAX_VIEW_BLOCKS: usize = 100;

/// The buttons' `action_id`s; a press becomes the thread command next to it.
pub const CLAIM: &str = "board_claim";
pub const OPEN: &str = "board_open";
pub const SNOOZE_HOUR: &str = "board_snooze_1h";
pub const SNOOZE_DAY: &str = "board_snooze_1d";
pub const CLOSE: &str = "board_close";

/// The thread command a board button stands for, typed as a teammate would
/// in the ticket's thread, so it goes through the same checks and answers
/// (and a command added later, like snooze, just works). `None`: the button
/// only opens a link.
pub fn command_for(action_id: &str) -> Option<&'static str> {
    match action_id {
        CLAIM => Some("!claim"),
        SNOOZE_HOUR => Some("!snooze 1h"),
        SNOOZE_DAY => Some("!snooze 1d"),
        CLOSE => Some("!close"),
        _ => None,
    }
}

/// A button's `value`: the ticket's thread, `channel ts`.
fn button_value(channel: &str, ts: &str) -> String {
    format!("{channel} {ts}")
}

/// The thread a button's `value` names.
pub fn thread_of(value: &str) -> Option<ChatThread> {
    let (channel, ts) = value.split_once(' ')?;
    (!channel.is_empty() && !ts.is_empty()).then(|| ChatThread {
        platform: Platform::Slack,
        room: channel.to_owned(),
        thread_ref: ts.to_owned(),
    })
}

/// A message's permalink, in the documented form
/// `https://team.slack.com/archives/C…/p<ts without the dot>`: no
/// `chat.getPermalink` call per ticket per refresh.
pub fn permalink(team_url: &str, channel: &str, ts: &str) -> String {
    format!(
        "{}/archives/{channel}/p{}",
        team_url.trim_end_matches('/'),
        ts.replace('.', "")
    )
}

fn button(text: &str, action_id: &str, value: &str, style: Option<&str>) -> Value {
    let mut b = json!({
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": true},
        "action_id": action_id,
        "value": value,
    });
    if let Some(s) = style {
        b["style"] = json!(s);
    }
    b
}

/// Blocks one room's board takes, showing its tickets.
fn room_blocks(team_url: &str, rb: &RoomBoard, board: &Board) -> Vec<Value> {
    let mut blocks = vec![json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!(
            "*{}* in <#{}>\n{}",
            escape(&rb.heading),
            rb.room,
            escape(&board.summary())
        )}
    })];
    for c in &board.columns {
        // A person's column names them as Slack does, with a mention.
        let name = match &c.column {
            Column::Claimed(by) => match super::user_id(by) {
                Some(u) => format!("Claimed by <@{u}>"),
                None => escape(&c.column.title()),
            },
            other => escape(&other.title()),
        };
        let title = format!("*{name}* ({})", c.total());
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": title}]}));
        for t in &c.tickets {
            let link = permalink(team_url, &rb.room, &t.thread_ref);
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!("<{link}|{}>", escape(&board.line(t)))}
            }));
            let value = button_value(&rb.room, &t.thread_ref);
            let mut row = Vec::new();
            if c.column == Column::Unclaimed {
                row.push(button("Claim", CLAIM, &value, Some("primary")));
            }
            let mut open = button("Open thread", OPEN, &value, None);
            open["url"] = json!(link);
            row.push(open);
            row.push(button("Snooze 1 h", SNOOZE_HOUR, &value, None));
            row.push(button("Snooze 1 day", SNOOZE_DAY, &value, None));
            row.push(button("Close", CLOSE, &value, Some("danger")));
            blocks.push(json!({"type": "actions", "elements": row}));
        }
        if let Some(more) = c.more_line() {
            blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]}));
        }
    }
    blocks
}

fn blocks_for(team_url: &str, boards: &[RoomBoard], per_room: usize) -> Vec<Value> {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": "Ticket board"}
    })];
    if boards.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": "You are in none of the channels mailroom posts tickets to."}
        }));
    }
    for rb in boards {
        let board = rb.board.clone().fit(per_room);
        blocks.extend(room_blocks(team_url, rb, &board));
    }
    blocks
}

/// The App Home view showing `boards`, cut to Slack's 100 blocks: each
/// ticket takes two (its line and its buttons), so fewer tickets are shown
/// until it fits, the rest counted per column.
pub fn home_view(team_url: &str, boards: &[RoomBoard]) -> Value {
    let mut per_room = MAX_VIEW_BLOCKS / 2;
    let mut blocks = blocks_for(team_url, boards, per_room);
    while blocks.len() > MAX_VIEW_BLOCKS && per_room > 0 {
        per_room = per_room
            .saturating_sub(per_room.div_ceil(4))
            .min(per_room - 1);
        blocks = blocks_for(team_url, boards, per_room);
    }
    if blocks.len() > MAX_VIEW_BLOCKS {
        // So many columns (people holding tickets, rooms) that even the
        // headings do not fit: the last block says so.
        blocks.truncate(MAX_VIEW_BLOCKS - 1);
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "… the board is too large to show whole; `/mailroom board` in a channel shows its own."}]
        }));
    }
    json!({"type": "home", "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::board::BoardTicket;
    use crate::domain::ids::{Agent, TicketId};
    use crate::domain::routing::Priority;
    use crate::domain::ticket::Status;

    fn rb(n: i64, claimers: i64) -> RoomBoard {
        let tickets = (0..n).map(|i| BoardTicket {
            ticket: TicketId::new(i + 1),
            status: if i < claimers {
                Status::Claimed
            } else {
                Status::Open
            },
            owner: (i < claimers).then(|| Agent::parse(&format!("slack:U{i}")).unwrap()),
            subject: "Refund <please> & thanks".into(),
            customer: "c@example.net".into(),
            created_at_ms: i,
            priority: Priority::Normal,
            thread_ref: format!("1700000000.{i:06}"),
            snoozed_until_ms: None,
        });
        RoomBoard {
            room: "C1".into(),
            heading: "Support".into(),
            board: Board::build(tickets, 0),
        }
    }

    #[test]
    fn buttons_name_the_thread_and_stand_for_thread_commands() {
        let v = home_view("https://t.slack.com/", &[rb(1, 0)]);
        assert_eq!(v["type"], "home");
        let actions = v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "actions")
            .unwrap();
        let ids: Vec<&str> = actions["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [CLAIM, OPEN, SNOOZE_HOUR, SNOOZE_DAY, CLOSE]);
        let value = actions["elements"][0]["value"].as_str().unwrap();
        let thread = thread_of(value).unwrap();
        assert_eq!(
            (thread.room.as_str(), thread.thread_ref.as_str()),
            ("C1", "1700000000.000000")
        );
        assert_eq!(
            actions["elements"][1]["url"],
            "https://t.slack.com/archives/C1/p1700000000000000"
        );
        assert_eq!(command_for(CLAIM), Some("!claim"));
        assert_eq!(command_for(OPEN), None);
        assert!(thread_of("nothing").is_none());
        let text = v.to_string();
        assert!(
            text.contains("Refund &lt;please&gt; &amp; thanks"),
            "{text}"
        );
    }

    #[test]
    fn a_large_board_fits_in_a_hundred_blocks_and_counts_the_rest() {
        for (n, claimers) in [(500, 0), (500, 30), (60, 60), (5, 0)] {
            let v = home_view("https://t.slack.com/", &[rb(n, claimers), rb(n, 0)]);
            let blocks = v["blocks"].as_array().unwrap();
            assert!(
                blocks.len() <= MAX_VIEW_BLOCKS,
                "{n}/{claimers}: {}",
                blocks.len()
            );
            for b in blocks {
                if let Some(t) = b["text"]["text"].as_str() {
                    assert!(t.chars().count() <= 3000);
                }
            }
            if n == 500 {
                assert!(v.to_string().contains("more"), "{n}/{claimers}");
            }
        }
    }
}
