-- Routing rules: a ticket has a priority, and a rule may set a new ticket
-- aside as 'ignored' or 'spam' (kept, never posted).
ALTER TABLE tickets DROP CONSTRAINT tickets_status_check;
ALTER TABLE tickets ADD CONSTRAINT tickets_status_check
    CHECK (status IN ('open', 'claimed', 'pending', 'closed', 'ignored', 'spam'));
ALTER TABLE tickets ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal'
    CHECK (priority IN ('low', 'normal', 'high', 'urgent'));
