-- Chat lanes per room (docs/SCALING.md): a ticket's next chat job joins
-- the lane its earlier ones still wait in, found among the ticket's jobs.
-- Jobs queued in the old per-platform lanes (`chat:<platform>`) are left
-- there: that lane still runs them in order.
CREATE INDEX outbox_ticket ON outbox (ticket_id, state);
