-- Refresh tokens with rotation (RFC 6749 §10.4; RFC 6819 §5.2.2.3). A session carries the
-- hash of its current refresh token; each refresh replaces both tokens in place and keeps the
-- rotated-away hash, so presenting it again is recognised as reuse and the session family is
-- revoked (logout reason token_reused).
ALTER TABLE sessions ADD COLUMN refresh_hash text;
CREATE UNIQUE INDEX sessions_refresh_hash_key ON sessions (refresh_hash);
CREATE INDEX sessions_family_idx ON sessions (family_id);

CREATE TABLE rotated_refresh_tokens (
    token_hash  text PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    rotated_at  timestamptz NOT NULL
);
CREATE INDEX rotated_refresh_tokens_session_idx ON rotated_refresh_tokens (session_id);
