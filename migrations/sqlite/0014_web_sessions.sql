-- The web dashboard's sign-in: one-time links sent in chat and the browser
-- sessions they open. Only SHA-256 hashes of the secrets are kept (hex), so
-- the database alone cannot sign anyone in. `agent` is the teammate's chat
-- id (`@alice:example.org`, `slack:U024BE7LH`).
CREATE TABLE web_links (
    token_hash TEXT PRIMARY KEY,
    agent      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Set when the link is opened; a link opens once.
    used_at    BIGINT
);
CREATE INDEX web_links_by_expiry ON web_links (expires_at);

CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,
    agent      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);
