-- Bearer tokens for Apple Health uploads (the user's phone sends `Authorization: Bearer <token>`).
-- Only a SHA-256 hash of each token is stored: a leaked table cannot be replayed as tokens.
CREATE TABLE IF NOT EXISTS ingest_tokens (
    token_id    UUID        PRIMARY KEY,          -- public handle, shown by `tokens list`
    user_id     TEXT        NOT NULL,             -- whose data the token may upload
    token_hash  BYTEA       NOT NULL UNIQUE,      -- sha256(token)
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ                       -- set by `tokens revoke`; never deleted, for audit
);
CREATE INDEX IF NOT EXISTS ingest_tokens_user_idx ON ingest_tokens (user_id);
