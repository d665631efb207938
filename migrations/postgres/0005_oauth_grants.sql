-- One OAuth2 grant per mailbox, written by `mailroom auth login` and kept
-- fresh by the daemon. Tokens are sealed (ChaCha20-Poly1305 under the
-- [secrets] key, the mailbox name as associated data): the columns hold
-- nonce || ciphertext || tag, never a token. Times are unix milliseconds.
-- generation counts sign-ins for this mailbox: a refresh writes its result
-- only if the grant it refreshed is still the stored one. refused_told_at
-- is when the provider's refusal (a revoked grant) was recorded and the
-- mailbox's rooms told; a new sign-in clears it.
CREATE TABLE oauth_grants (
    mailbox           TEXT PRIMARY KEY,
    account           TEXT NOT NULL,
    scopes            TEXT NOT NULL,
    refresh_token     BYTEA NOT NULL,
    access_token      BYTEA,
    access_expires_at BIGINT,
    created_at        BIGINT NOT NULL,
    refreshed_at      BIGINT,
    last_error        TEXT,
    last_error_at     BIGINT,
    generation        BIGINT NOT NULL,
    refused_told_at   BIGINT
);
