-- Snoozes, reminders and digests.
--
-- A snoozed ticket keeps its status (no new status: a snooze hides a ticket
-- from the queue, it does not change who owns it or what it waits on).
-- `snoozed_until` is NULL exactly when the ticket is not snoozed, so one
-- test answers "is it snoozed?" for every reader (the queue, the board).
-- A snooze until the customer replies has no time: it stores
-- 253402128000000 (9999-12-30T00:00:00Z) there and 1 in
-- `snooze_until_reply`. `snoozed_by` is who snoozed it (an agent id).
ALTER TABLE tickets ADD COLUMN snoozed_until BIGINT;
ALTER TABLE tickets ADD COLUMN snooze_until_reply BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tickets ADD COLUMN snoozed_by TEXT;
CREATE INDEX tickets_by_snooze ON tickets (snoozed_until);

-- What a timer already did, so a timer job that runs twice (after a crash,
-- or two digest timers for one day) does it once: a digest per room and
-- day, a nudge per ticket, platform and round.
CREATE TABLE timer_marks (
    mark TEXT PRIMARY KEY,
    at   BIGINT NOT NULL
);
