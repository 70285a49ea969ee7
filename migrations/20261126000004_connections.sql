-- OAuth connections to the notification-only vendors (Oura, WHOOP): their webhooks carry only a
-- pointer, so the processor fetches each record with the user's token. Written by the ingress's
-- OAuth callback and `biometric-bridge connections add`; read and refreshed by the processor.
--
-- Tokens are encrypted (ChaCha20-Poly1305, key TOKEN_ENCRYPTION_KEY; stored form: version byte,
-- nonce, ciphertext and tag) with the row's "<VENDOR>:<vendor_user_id>" as associated data: a
-- leaked table is no set of tokens, and a ciphertext copied onto another row does not decrypt.
CREATE TABLE IF NOT EXISTS vendor_connections (
    vendor          TEXT        NOT NULL CHECK (vendor IN ('OURA', 'WHOOP')),  -- Vendor::symbol(), as identity_links
    vendor_user_id  TEXT        NOT NULL,  -- the vendor's id of the user (Oura personal_info id, WHOOP user_id)
    user_id         TEXT        NOT NULL,  -- our user id
    access_token    BYTEA       NOT NULL,  -- encrypted
    refresh_token   BYTEA,                 -- encrypted; NULL when the vendor gave none (WHOOP without `offline`)
    expires_at      TIMESTAMPTZ,           -- of the access token; NULL when the vendor did not say
    scopes          TEXT,                  -- as granted, space-separated
    status          TEXT        NOT NULL DEFAULT 'active'
                                CHECK (status IN ('active', 'revoked', 'needs_reauth')),
    status_reason   TEXT,                  -- why it is not active (an OAuth error code, an operator's note)
    -- Incremented at every token change. Oura refresh tokens are single-use, so only one process
    -- refreshes a connection at a time (a Redis lock); the others wait and then see, by a newer
    -- version, that someone else refreshed instead of spending the old refresh token again.
    token_version   BIGINT      NOT NULL DEFAULT 1,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (vendor, vendor_user_id)
);
-- "Which vendors has this user connected?" (support, deletion requests).
CREATE INDEX IF NOT EXISTS vendor_connections_user_idx ON vendor_connections (user_id);
