-- One refresh of a grant at a time across processes (replicas on one
-- PostgreSQL, or the CLI beside the daemon): a process claims the refresh
-- until this time before it calls the token endpoint, and the others wait
-- for the token it stores. Two refreshes with one refresh token would,
-- where the provider rotates refresh tokens, have the second refused, and
-- the grant taken for revoked.
ALTER TABLE oauth_grants ADD COLUMN refreshing_until BIGINT;
