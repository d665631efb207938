-- mailroom schema, SQLite flavour. Times are unix milliseconds (BIGINT) so the
-- same queries run unchanged on PostgreSQL through sqlx's Any driver.

CREATE TABLE checkpoints (
    mailbox      TEXT PRIMARY KEY,
    uid_validity BIGINT NOT NULL,
    last_uid     BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE tickets (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox          TEXT NOT NULL,
    token            TEXT NOT NULL UNIQUE,
    subject          TEXT NOT NULL,
    subject_key      TEXT NOT NULL,
    customer         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'pending', 'closed')),
    owner            TEXT,
    version          BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_customer_at BIGINT NOT NULL
);
CREATE INDEX tickets_by_status ON tickets (mailbox, status);
CREATE INDEX tickets_by_subject ON tickets (mailbox, customer, subject_key);

CREATE TABLE ticket_tags (
    ticket_id BIGINT NOT NULL REFERENCES tickets (id),
    tag       TEXT NOT NULL,
    PRIMARY KEY (ticket_id, tag)
);

CREATE TABLE participants (
    ticket_id BIGINT NOT NULL REFERENCES tickets (id),
    address   TEXT NOT NULL,
    PRIMARY KEY (ticket_id, address)
);

CREATE TABLE emails (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox      TEXT NOT NULL,
    ticket_id    BIGINT NOT NULL REFERENCES tickets (id),
    direction    TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    message_id   TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    imap_uid     BIGINT,
    from_addr    TEXT NOT NULL,
    from_name    TEXT,
    subject      TEXT NOT NULL,
    sent_at      BIGINT,
    stored_at    BIGINT NOT NULL,
    author       TEXT,
    state        TEXT NOT NULL,
    raw          BLOB NOT NULL,
    UNIQUE (mailbox, message_id, content_hash)
);
CREATE INDEX emails_by_message_id ON emails (mailbox, message_id);
CREATE INDEX emails_by_ticket ON emails (ticket_id, id);

CREATE TABLE chat_threads (
    ticket_id  BIGINT NOT NULL REFERENCES tickets (id),
    platform   TEXT NOT NULL,
    room       TEXT NOT NULL,
    thread_ref TEXT NOT NULL,
    PRIMARY KEY (ticket_id, platform)
);

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    lane       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    ticket_id  BIGINT REFERENCES tickets (id),
    payload    TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'in_flight', 'done', 'failed', 'uncertain', 'cancelled')),
    attempts   BIGINT NOT NULL DEFAULT 0,
    not_before BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX outbox_due ON outbox (state, not_before, id);
CREATE INDEX outbox_lane ON outbox (lane, state, id);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id BIGINT REFERENCES tickets (id),
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    details   TEXT NOT NULL
);
CREATE INDEX audit_by_ticket ON audit_log (ticket_id, id);

-- The audit log is append-only: history cannot be rewritten, even by mistake.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
