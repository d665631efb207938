-- Replies sent outside mailroom: a checkpoint per (mailbox, folder role), so
-- the Sent folder is followed like INBOX ('inbox' is the folder ingest reads,
-- `imap.folder`; 'sent' the Sent folder). Rows from before are the ingest
-- folder's. The role, not the folder's name, is the key: a renamed or
-- re-detected folder comes with another UIDVALIDITY, which the watcher
-- checks anyway.
CREATE TABLE checkpoints_by_folder (
    mailbox      TEXT NOT NULL,
    folder       TEXT NOT NULL CHECK (folder IN ('inbox', 'sent')),
    uid_validity BIGINT NOT NULL,
    last_uid     BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (mailbox, folder)
);
INSERT INTO checkpoints_by_folder (mailbox, folder, uid_validity, last_uid, updated_at)
    SELECT mailbox, 'inbox', uid_validity, last_uid, updated_at FROM checkpoints;
DROP TABLE checkpoints;
ALTER TABLE checkpoints_by_folder RENAME TO checkpoints;

-- When a teammate first answered the customer (a `!reply` sent, or a reply
-- written in the mailbox itself and found in Sent). NULL: not yet.
ALTER TABLE tickets ADD COLUMN first_response_at BIGINT;
