-- Mail loops: one row a loop (a burst of mail from one sender over the
-- mailbox's loop_guard limit). The first mail of a loop inserts the row and
-- tells the room; the next ones, filed quietly, move last_at and count.
-- A loop whose last_at is older than the window is over.
CREATE TABLE mail_loops (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox    TEXT NOT NULL,
    sender     TEXT NOT NULL,
    ticket_id  BIGINT NOT NULL REFERENCES tickets (id),
    started_at BIGINT NOT NULL,
    last_at    BIGINT NOT NULL,
    messages   BIGINT NOT NULL
);
CREATE INDEX mail_loops_by_sender ON mail_loops (mailbox, sender, last_at);

-- Counting a sender's recent mail for the loop guard.
CREATE INDEX emails_by_sender ON emails (mailbox, from_addr, stored_at);
