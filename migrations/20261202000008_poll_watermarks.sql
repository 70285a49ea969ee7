-- High-water marks of polled series that no webhook announces (Oura's heartrate time series):
-- reconciliation asks for the window from `until` to now and moves `until` on once the window's
-- notifications are written, so a series is neither skipped nor fetched twice over.
CREATE TABLE IF NOT EXISTS poll_watermarks (
    vendor          TEXT        NOT NULL,
    vendor_user_id  TEXT        NOT NULL,
    data_type       TEXT        NOT NULL,
    until           TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (vendor, vendor_user_id, data_type)
);
