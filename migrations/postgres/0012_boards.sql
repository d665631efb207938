-- The board of each room (issue #16): the one message mailroom keeps
-- editing in place (Matrix), remembered so a restart edits the same
-- message instead of posting a second board.
CREATE TABLE chat_boards (
    platform    TEXT NOT NULL,
    room        TEXT NOT NULL,
    message_ref TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (platform, room)
);
