-- Auto-assignment. One cursor row per pool (a group, or a mailbox's
-- [mailbox.assign]): whom its last ticket went to, for round robin. The
-- row with pool '*' is the assignment lock: every pick first upserts it,
-- so on PostgreSQL concurrent ingests take turns (a row lock held to
-- commit) and each sees the tickets the one before assigned; SQLite's
-- single writer serializes them anyway.
CREATE TABLE assign_cursors (
    pool        TEXT PRIMARY KEY,
    last_person TEXT,
    turns       BIGINT NOT NULL DEFAULT 0,
    updated_at  BIGINT NOT NULL
);

-- People who said !away (until_at NULL: until they say !back).
CREATE TABLE people_away (
    person     TEXT PRIMARY KEY,
    since      BIGINT NOT NULL,
    until_at   BIGINT,
    set_by     TEXT NOT NULL
);

-- Tickets assigned by a pick. standing = 1 while nobody has touched the
-- ticket since: a teammate's claim then takes it over rather than being
-- refused as "already claimed".
CREATE TABLE auto_assignments (
    ticket_id  BIGINT PRIMARY KEY REFERENCES tickets (id),
    pool       TEXT NOT NULL,
    person     TEXT NOT NULL,
    agent      TEXT NOT NULL,
    standing   BIGINT NOT NULL DEFAULT 1,
    at         BIGINT NOT NULL
);
