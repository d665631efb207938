-- Figures (docs/ANALYTICS.md): a period's received tickets are found by
-- creation time, its resolved ones by the close lines of the audit log,
-- and each resolved ticket's first and last close and last reopen by its
-- own lines of one action. Without these a month's figures read every
-- ticket, and every close line once per resolved ticket.
CREATE INDEX tickets_by_created ON tickets (created_at);
CREATE INDEX audit_by_action ON audit_log (action, at);
CREATE INDEX audit_by_ticket_action ON audit_log (ticket_id, action, at);
