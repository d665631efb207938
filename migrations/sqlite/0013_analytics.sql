-- Figures (docs/ANALYTICS.md): a period's received tickets are found by
-- creation time, its resolved ones by the close lines of the audit log.
-- Without these a month's figures read every ticket and every audit line.
CREATE INDEX tickets_by_created ON tickets (created_at);
CREATE INDEX audit_by_action ON audit_log (action, at);
