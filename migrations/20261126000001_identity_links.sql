-- Identity mapping: which of our users a vendor's user id belongs to.
-- Written by the processor from Terra auth / deauth / user_reauth events and by operators;
-- read (through an in-process cache) for every event whose vendor payload does not name our user.
CREATE TABLE IF NOT EXISTS identity_links (
    vendor          TEXT        NOT NULL,  -- TERRA, OURA, WHOOP, APPLE_HEALTH
    vendor_user_id  TEXT        NOT NULL,  -- the vendor's id of the user (Terra user.user_id, ...)
    user_id         TEXT        NOT NULL,  -- our user id (Terra reference_id)
    provider        TEXT,                  -- the wearable behind an aggregator (Terra provider)
    active          BOOLEAN     NOT NULL DEFAULT TRUE,  -- false after deauth / re-key
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (vendor, vendor_user_id)
);
CREATE INDEX IF NOT EXISTS identity_links_user_idx ON identity_links (user_id);
