-- Chat events already acted on. Platforms may deliver an event twice (a
-- replayed sync after a crash, a Socket Mode retry); a command such as
-- `!reply` must not run twice.
CREATE TABLE chat_events (
    platform  TEXT NOT NULL,
    event_ref TEXT NOT NULL,
    seen_at   BIGINT NOT NULL,
    PRIMARY KEY (platform, event_ref)
);
