//! The board: a room's open tickets at a glance, in columns — Unclaimed,
//! Claimed (grouped by person), Pending, Snoozed — each sorted by priority,
//! then age (oldest first), and cut to a size a chat message or view can
//! carry ("… and 37 more"). Pure: the store fills [`BoardTicket`]s, the chat
//! adapters draw the [`Board`] in their own markup.

use crate::domain::ids::{Agent, TicketId};
use crate::domain::routing::Priority;
use crate::domain::ticket::Status;

/// Characters of a subject or customer a board line shows: a board lists
/// many tickets, and one hostile 1 MB subject must not crowd out the rest.
pub const MAX_SUBJECT_CHARS: usize = 120;
pub const MAX_CUSTOMER_CHARS: usize = 80;

/// One ticket as the board needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardTicket {
    pub ticket: TicketId,
    pub status: Status,
    pub owner: Option<Agent>,
    pub subject: String,
    pub customer: String,
    pub created_at_ms: i64,
    pub priority: Priority,
    /// Its thread's root in the room (Matrix event id, Slack `ts`).
    pub thread_ref: String,
    /// Snoozed until this time (Unix ms). Wired when snooze lands: until
    /// then the store fills `None`.
    pub snoozed_until_ms: Option<i64>,
}

/// Where a ticket sits on the board.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Column {
    Unclaimed,
    Claimed(Agent),
    Pending,
    Snoozed,
}

impl Column {
    /// Where `t` goes at `now_ms`; `None`: not on the board (closed, set aside).
    pub fn of(t: &BoardTicket, now_ms: i64) -> Option<Column> {
        if t.snoozed_until_ms.is_some_and(|until| until > now_ms)
            && matches!(t.status, Status::Open | Status::Claimed | Status::Pending)
        {
            return Some(Column::Snoozed);
        }
        match (t.status, &t.owner) {
            (Status::Open, _) => Some(Column::Unclaimed),
            (Status::Claimed, Some(by)) => Some(Column::Claimed(by.clone())),
            // A claim without an owner cannot be stored; show it unclaimed
            // rather than lose it.
            (Status::Claimed, None) => Some(Column::Unclaimed),
            (Status::Pending, _) => Some(Column::Pending),
            (Status::Closed | Status::Ignored | Status::Spam, _) => None,
        }
    }

    /// The column's heading.
    pub fn title(&self) -> String {
        match self {
            Column::Unclaimed => "Unclaimed".into(),
            Column::Claimed(by) => format!("Claimed by {by}"),
            Column::Pending => "Pending".into(),
            Column::Snoozed => "Snoozed".into(),
        }
    }
}

/// A column with the tickets it shows and how many it leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnView {
    pub column: Column,
    pub tickets: Vec<BoardTicket>,
    /// Tickets of this column not shown (the board was cut to size).
    pub hidden: usize,
}

impl ColumnView {
    pub fn total(&self) -> usize {
        self.tickets.len() + self.hidden
    }

    /// `… and 37 more`, when some were left out.
    pub fn more_line(&self) -> Option<String> {
        (self.hidden > 0).then(|| format!("… and {} more", self.hidden))
    }
}

/// A room's board at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    /// Unclaimed, then one Claimed column per person (by name), then
    /// Pending and Snoozed. Unclaimed, Pending and Snoozed are always
    /// there, empty or not; a person's column only while they hold tickets.
    pub columns: Vec<ColumnView>,
    /// When it was drawn (ages are relative to it).
    pub now_ms: i64,
}

impl Board {
    /// Sorts `tickets` into columns; closed and set-aside tickets are left out.
    pub fn build(tickets: impl IntoIterator<Item = BoardTicket>, now_ms: i64) -> Board {
        let mut by_column: std::collections::BTreeMap<Column, Vec<BoardTicket>> = [
            (Column::Unclaimed, Vec::new()),
            (Column::Pending, Vec::new()),
            (Column::Snoozed, Vec::new()),
        ]
        .into_iter()
        .collect();
        for t in tickets {
            if let Some(c) = Column::of(&t, now_ms) {
                by_column.entry(c).or_default().push(t);
            }
        }
        let columns = by_column
            .into_iter()
            .map(|(column, mut tickets)| {
                // Most urgent first, then the longest waiting.
                tickets.sort_by(|a, b| {
                    b.priority
                        .cmp(&a.priority)
                        .then(a.created_at_ms.cmp(&b.created_at_ms))
                        .then(a.ticket.cmp(&b.ticket))
                });
                ColumnView {
                    column,
                    tickets,
                    hidden: 0,
                }
            })
            .collect();
        Board { columns, now_ms }
    }

    /// Tickets on the board, shown or not.
    pub fn total(&self) -> usize {
        self.columns.iter().map(ColumnView::total).sum()
    }

    /// Tickets shown.
    pub fn shown(&self) -> usize {
        self.columns.iter().map(|c| c.tickets.len()).sum()
    }

    /// The board with at most `max` tickets shown. Slots go round the
    /// columns one at a time, so every column that has tickets shows its
    /// most urgent ones and a long Unclaimed column cannot hide that
    /// someone holds a ticket; the rest of each column is counted.
    pub fn fit(mut self, max: usize) -> Board {
        if self.shown() <= max {
            return self;
        }
        let mut keep = vec![0usize; self.columns.len()];
        let mut left = max;
        while left > 0 {
            let mut gave = false;
            for (i, c) in self.columns.iter().enumerate() {
                if left > 0 && keep[i] < c.tickets.len() {
                    keep[i] += 1;
                    left -= 1;
                    gave = true;
                }
            }
            if !gave {
                break;
            }
        }
        for (c, k) in self.columns.iter_mut().zip(keep) {
            let cut = c.tickets.len() - k;
            c.tickets.truncate(k);
            c.hidden += cut;
        }
        self
    }

    /// `3 unclaimed · 2 claimed · 1 pending · 0 snoozed`.
    pub fn summary(&self) -> String {
        let count = |f: fn(&Column) -> bool| -> usize {
            self.columns
                .iter()
                .filter(|c| f(&c.column))
                .map(ColumnView::total)
                .sum()
        };
        format!(
            "{} unclaimed · {} claimed · {} pending · {} snoozed",
            count(|c| matches!(c, Column::Unclaimed)),
            count(|c| matches!(c, Column::Claimed(_))),
            count(|c| matches!(c, Column::Pending)),
            count(|c| matches!(c, Column::Snoozed)),
        )
    }

    /// A ticket's line without its link: `#12 · Subject · customer · 3h`,
    /// with the priority when it is not normal and, when snoozed, until when.
    pub fn line(&self, t: &BoardTicket) -> String {
        let mut s = format!(
            "{} · {} · {} · {}",
            t.ticket,
            clip(&t.subject, MAX_SUBJECT_CHARS),
            clip(&t.customer, MAX_CUSTOMER_CHARS),
            age(self.now_ms, t.created_at_ms)
        );
        if t.priority != Priority::Normal {
            s.push_str(&format!(" · {}", t.priority));
        }
        match t.snoozed_until_ms.filter(|u| *u > self.now_ms) {
            Some(crate::domain::snooze::UNTIL_REPLY_MS) => {
                s.push_str(" · back when the customer writes")
            }
            Some(until) => s.push_str(&format!(" · back in {}", age(until, self.now_ms))),
            None => {}
        }
        s
    }

    /// The whole board as plain text, one line a ticket (the compact form
    /// `/mailroom board` answers with, and the Matrix fallback body).
    pub fn plain(&self, heading: &str) -> String {
        let mut out = format!("{heading} — {}\n", self.summary());
        for c in &self.columns {
            out.push_str(&format!("\n{} ({})\n", c.column.title(), c.total()));
            if c.total() == 0 {
                out.push_str("  —\n");
            }
            for t in &c.tickets {
                out.push_str(&format!("  {}\n", self.line(t)));
            }
            if let Some(more) = c.more_line() {
                out.push_str(&format!("  {more}\n"));
            }
        }
        out.trim_end().to_owned()
    }
}

/// `s` cut to `max` characters, with `…` when cut; blanks and line breaks
/// folded so a line stays a line.
pub fn clip(s: &str, max: usize) -> String {
    let folded: String = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    match folded.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &folded[..cut]),
        None if folded.is_empty() => "(no subject)".into(),
        None => folded,
    }
}

/// How long ago `at_ms` was, as of `now_ms`: `just now`, `5m`, `3h`, `2d`.
pub fn age(now_ms: i64, at_ms: i64) -> String {
    let secs = (now_ms - at_ms).max(0) / 1_000;
    match secs {
        s if s < 60 => "just now".into(),
        s if s < 3_600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn t(
        n: i64,
        status: Status,
        owner: Option<&str>,
        priority: Priority,
        created: i64,
    ) -> BoardTicket {
        BoardTicket {
            ticket: TicketId::new(n),
            status,
            owner: owner.map(|o| Agent::parse(o).unwrap()),
            subject: format!("subject {n}"),
            customer: "c@example.net".into(),
            created_at_ms: created,
            priority,
            thread_ref: format!("$root{n}"),
            snoozed_until_ms: None,
        }
    }

    fn ids(c: &ColumnView) -> Vec<i64> {
        c.tickets.iter().map(|t| t.ticket.get()).collect()
    }

    #[test]
    fn tickets_go_to_their_column_sorted_by_priority_then_age() {
        let now = 100 * H;
        let board = Board::build(
            vec![
                t(1, Status::Open, None, Priority::Normal, 10 * H),
                t(2, Status::Open, None, Priority::Urgent, 50 * H),
                t(3, Status::Open, None, Priority::Normal, 5 * H),
                t(4, Status::Claimed, Some("@bob:x"), Priority::Normal, H),
                t(5, Status::Claimed, Some("@alice:x"), Priority::Normal, H),
                t(6, Status::Pending, Some("@alice:x"), Priority::Low, H),
                t(7, Status::Closed, None, Priority::Urgent, H),
                t(8, Status::Spam, None, Priority::Normal, H),
                t(9, Status::Ignored, None, Priority::Normal, H),
            ],
            now,
        );
        let titles: Vec<String> = board.columns.iter().map(|c| c.column.title()).collect();
        assert_eq!(
            titles,
            [
                "Unclaimed",
                "Claimed by @alice:x",
                "Claimed by @bob:x",
                "Pending",
                "Snoozed"
            ]
        );
        assert_eq!(ids(&board.columns[0]), [2, 3, 1]);
        assert_eq!(ids(&board.columns[1]), [5]);
        assert_eq!(ids(&board.columns[2]), [4]);
        assert_eq!(ids(&board.columns[3]), [6]);
        assert!(board.columns[4].tickets.is_empty());
        assert_eq!(board.total(), 6);
        assert_eq!(
            board.summary(),
            "3 unclaimed · 2 claimed · 1 pending · 0 snoozed"
        );
    }

    #[test]
    fn a_snooze_in_the_future_wins_over_the_status_and_a_past_one_is_ignored() {
        let now = 10 * H;
        let mut snoozed = t(1, Status::Claimed, Some("@a:x"), Priority::Normal, H);
        snoozed.snoozed_until_ms = Some(now + H);
        let mut woken = t(2, Status::Open, None, Priority::Normal, H);
        woken.snoozed_until_ms = Some(now - 1);
        let mut closed = t(3, Status::Closed, None, Priority::Normal, H);
        closed.snoozed_until_ms = Some(now + H);
        let board = Board::build(vec![snoozed, woken, closed], now);
        let snoozed_col = board
            .columns
            .iter()
            .find(|c| c.column == Column::Snoozed)
            .unwrap();
        assert_eq!(ids(snoozed_col), [1]);
        assert_eq!(ids(&board.columns[0]), [2]);
        assert_eq!(board.total(), 2);
        assert!(board.line(&snoozed_col.tickets[0]).ends_with("back in 1h"));
    }

    #[test]
    fn fit_shares_slots_round_the_columns_and_counts_the_rest() {
        let mut all = Vec::new();
        for n in 0..50 {
            all.push(t(n, Status::Open, None, Priority::Normal, n));
        }
        for n in 50..53 {
            all.push(t(n, Status::Claimed, Some("@a:x"), Priority::Normal, n));
        }
        all.push(t(99, Status::Pending, None, Priority::Normal, 0));
        let board = Board::build(all, H).fit(10);
        assert_eq!(board.shown(), 10);
        assert_eq!(board.total(), 54);
        let unclaimed = &board.columns[0];
        assert_eq!(ids(unclaimed), [0, 1, 2, 3, 4, 5]);
        assert_eq!(unclaimed.more_line().as_deref(), Some("… and 44 more"));
        assert_eq!(ids(&board.columns[1]), [50, 51, 52]);
        assert_eq!(board.columns[1].hidden, 0);
        assert_eq!(ids(&board.columns[2]), [99]);
        // A board that fits is left as it is; fit(0) shows counts only.
        let small = Board::build(vec![t(1, Status::Open, None, Priority::Normal, 0)], H);
        assert_eq!(small.clone().fit(5), small);
        let none = small.fit(0);
        assert_eq!((none.shown(), none.total()), (0, 1));
    }

    #[test]
    fn lines_are_clipped_folded_and_say_priority_and_age() {
        let now = 3 * 86_400_000;
        let mut x = t(12, Status::Open, None, Priority::High, now - 2 * H - 1);
        x.subject = format!("Refund\nplease {}", "x".repeat(500));
        let board = Board::build(vec![x.clone()], now);
        let line = board.line(&x);
        assert!(line.starts_with("#12 · Refund please xxx"), "{line}");
        assert!(line.contains("…"), "{line}");
        assert!(line.ends_with(" · c@example.net · 2h · high"), "{line}");
        assert!(!line.contains('\n'));
        assert!(line.chars().count() < MAX_SUBJECT_CHARS + MAX_CUSTOMER_CHARS + 40);
        x.subject = "  ".into();
        assert!(board.line(&x).contains("(no subject)"));
        assert_eq!(age(now, now - 59_000), "just now");
        assert_eq!(age(now, now - 5 * 60_000), "5m");
        assert_eq!(age(now, now - 2 * 86_400_000), "2d");
        assert_eq!(age(now, now + 1), "just now");
    }

    #[test]
    fn plain_board_shows_every_column_and_the_cut() {
        let mut all: Vec<BoardTicket> = (0..5)
            .map(|n| t(n, Status::Open, None, Priority::Normal, n))
            .collect();
        all.push(t(9, Status::Claimed, Some("@a:x"), Priority::Normal, 0));
        let text = Board::build(all, H).fit(3).plain("Support");
        assert!(
            text.starts_with("Support — 5 unclaimed · 1 claimed · 0 pending · 0 snoozed"),
            "{text}"
        );
        assert!(text.contains("Unclaimed (5)\n  #0 · "), "{text}");
        assert!(text.contains("… and 3 more"), "{text}");
        assert!(text.contains("Claimed by @a:x (1)\n  #9 · "), "{text}");
        assert!(text.contains("Pending (0)\n  —"), "{text}");
        assert!(text.contains("Snoozed (0)\n  —"), "{text}");
    }
}
