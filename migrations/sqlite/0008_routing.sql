-- no-transaction
-- Routing rules: a ticket has a priority, and a rule may set a new ticket
-- aside as 'ignored' or 'spam' (kept, never posted). SQLite cannot alter a
-- CHECK constraint, so the tickets table is rebuilt with the wider one, by
-- SQLite's own recipe (https://www.sqlite.org/lang_altertable.html#otheralter):
-- foreign keys off (only possible outside a transaction, hence
-- no-transaction above), the rebuild in one transaction of its own, then
-- foreign keys on again. The tables that reference tickets keep their rows
-- and their references, which name the table, not its storage. Every column
-- the earlier migrations gave tickets is carried over (0006's
-- first_response_at included): a rebuild that forgot one would drop it.
PRAGMA foreign_keys = OFF;
BEGIN;

CREATE TABLE tickets_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox          TEXT NOT NULL,
    token            TEXT NOT NULL UNIQUE,
    subject          TEXT NOT NULL,
    subject_key      TEXT NOT NULL,
    customer         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'pending', 'closed', 'ignored', 'spam')),
    owner            TEXT,
    version          BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    last_customer_at BIGINT NOT NULL,
    first_response_at BIGINT,
    priority         TEXT NOT NULL DEFAULT 'normal' CHECK (priority IN ('low', 'normal', 'high', 'urgent'))
);
INSERT INTO tickets_new (id, mailbox, token, subject, subject_key, customer, status, owner, version, created_at, updated_at, last_customer_at, first_response_at)
    SELECT id, mailbox, token, subject, subject_key, customer, status, owner, version, created_at, updated_at, last_customer_at, first_response_at FROM tickets;
DROP TABLE tickets;
ALTER TABLE tickets_new RENAME TO tickets;
CREATE INDEX tickets_by_status ON tickets (mailbox, status);
CREATE INDEX tickets_by_subject ON tickets (mailbox, customer, subject_key);

COMMIT;
PRAGMA foreign_keys = ON;
