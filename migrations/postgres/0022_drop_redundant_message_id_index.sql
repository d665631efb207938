-- `emails_by_message_id (mailbox, message_id)` is the leading part of the
-- unique index on (mailbox, message_id, content_hash), which answers every
-- look-up by Message-ID as well: the second index only cost one more index
-- entry per email stored (docs/PERFORMANCE.md, own ingest).
DROP INDEX IF EXISTS emails_by_message_id;
