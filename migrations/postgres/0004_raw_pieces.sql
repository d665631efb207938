-- A raw email larger than one piece (1 MiB) is stored in pieces: emails.raw
-- holds the first, email_raw_pieces the rest in order (seq 1, 2, …), and
-- emails.raw_size the whole length. Storing or loading a large mail then never
-- holds more than a piece beyond the mail itself; a single 35 MB value costs
-- two more copies of it inside the database driver. Rows from before this
-- migration have raw_size NULL and their whole raw in emails.raw.
ALTER TABLE emails ADD COLUMN raw_size BIGINT;

CREATE TABLE email_raw_pieces (
    email_id BIGINT NOT NULL REFERENCES emails (id),
    seq      BIGINT NOT NULL,
    bytes    BYTEA NOT NULL,
    PRIMARY KEY (email_id, seq)
);
