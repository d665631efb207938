-- SLA clocks (issue #16). Per ticket: since when a customer mail waits
-- for an answer (the first mail of a new ticket, or the first customer
-- mail after a teammate answered; NULL once answered) and the last answer.
-- The clock itself (target, due time, business hours) is computed from
-- these, the ticket and the configuration, never stored: a changed policy
-- applies at once.
CREATE TABLE sla_tickets (
    ticket_id      BIGINT PRIMARY KEY REFERENCES tickets (id),
    awaiting_since BIGINT,
    replied_at     BIGINT
);
-- The times a ticket was pending on the customer: they pause its clock.
-- ended_at NULL: still pending.
CREATE TABLE sla_pauses (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id  BIGINT NOT NULL REFERENCES tickets (id),
    started_at BIGINT NOT NULL,
    ended_at   BIGINT
);
CREATE INDEX sla_pauses_by_ticket ON sla_pauses (ticket_id);
-- What was said about a clock, once each: the nudge in the thread and the
-- breach in the room. Inserted in the transaction that queues the message,
-- so a timer that runs twice (a crash, a rescheduled clock) says nothing
-- twice. A clock is named by when it started.
CREATE TABLE sla_marks (
    ticket_id   BIGINT NOT NULL REFERENCES tickets (id),
    clock_start BIGINT NOT NULL,
    mark        TEXT NOT NULL CHECK (mark IN ('nudge', 'breach')),
    marked_at   BIGINT NOT NULL,
    PRIMARY KEY (ticket_id, clock_start, mark)
);
-- Tickets from before: what waits is read off the ticket (an answer after
-- the last customer mail means nothing waits); pending ones are paused
-- since their last change.
INSERT INTO sla_tickets (ticket_id, awaiting_since, replied_at)
    SELECT id,
           CASE WHEN first_response_at IS NULL THEN created_at
                WHEN last_customer_at > first_response_at THEN last_customer_at
                ELSE NULL END,
           first_response_at
    FROM tickets;
INSERT INTO sla_pauses (ticket_id, started_at, ended_at)
    SELECT id, updated_at, NULL FROM tickets WHERE status = 'pending';

