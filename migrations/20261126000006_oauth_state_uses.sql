-- OAuth `state` values are single use: the ingress callback records each state's nonce here
-- before exchanging the code, so a state seen once (a replayed or leaked callback URL) is refused
-- even within its 15 minutes of validity. Rows older than a day are removed by the callback.
CREATE TABLE IF NOT EXISTS oauth_state_uses (
    nonce    TEXT        PRIMARY KEY,
    used_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS oauth_state_uses_used_at_idx ON oauth_state_uses (used_at);
