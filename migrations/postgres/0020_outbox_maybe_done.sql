-- An earlier attempt of this job may have taken effect without its answer
-- reaching mailroom (it was in flight when mailroom stopped): before
-- posting again, a chat job looks for the message it may have posted
-- (Slack: message metadata carrying the job's key) and adopts it.
ALTER TABLE outbox ADD COLUMN maybe_done BIGINT NOT NULL DEFAULT 0;
