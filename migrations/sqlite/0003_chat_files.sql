-- Files teammates post in a ticket's thread: `!reply --attach` sends the ones
-- posted since the ticket's last reply. `source` is the platform's handle to
-- download it (a Matrix media source, a Slack file id).
CREATE TABLE chat_files (
    platform     TEXT NOT NULL,
    room         TEXT NOT NULL,
    thread_ref   TEXT NOT NULL,
    event_ref    TEXT NOT NULL,
    agent        TEXT NOT NULL,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    source       TEXT NOT NULL,
    posted_at    BIGINT NOT NULL,
    PRIMARY KEY (platform, event_ref)
);
CREATE INDEX chat_files_by_thread ON chat_files (platform, room, thread_ref, posted_at);
