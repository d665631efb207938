-- Replies sent outside mailroom: a checkpoint per (mailbox, folder role), so
-- the Sent folder is followed like INBOX ('inbox' is the folder ingest reads,
-- `imap.folder`; 'sent' the Sent folder). Rows from before are the ingest
-- folder's. The role, not the folder's name, is the key: a renamed or
-- re-detected folder comes with another UIDVALIDITY, which the watcher
-- checks anyway.
ALTER TABLE checkpoints ADD COLUMN folder TEXT NOT NULL DEFAULT 'inbox'
    CHECK (folder IN ('inbox', 'sent'));
ALTER TABLE checkpoints ALTER COLUMN folder DROP DEFAULT;
ALTER TABLE checkpoints DROP CONSTRAINT checkpoints_pkey;
ALTER TABLE checkpoints ADD PRIMARY KEY (mailbox, folder);

-- When a teammate first answered the customer (a `!reply` sent, or a reply
-- written in the mailbox itself and found in Sent). NULL: not yet.
ALTER TABLE tickets ADD COLUMN first_response_at BIGINT;
