-- Replicas sharing one database (docs/SCALING.md). Times are Unix
-- milliseconds read from the database's own clock, never a replica's.

-- Every running process, with the heartbeat that says it is alive.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- Who may run what (a mailbox's ingest, a Matrix account's sync). The row
-- outlives its owners so the fencing token only ever grows.
CREATE TABLE leases (
    resource    TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    token       BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- The replica that took an in-flight job: a live one's jobs are left
-- alone, a dead one's are recovered under the crash rules.
ALTER TABLE outbox ADD COLUMN taken_by TEXT;
