-- Per-user data keys for crypto-shredding (src/at_rest). Each raw record at rest in Kafka is
-- sealed under its subject's key; deleting the row makes those records unreadable for good.
-- `subject` is `<vendor>:<vendor user id>`; `wrapped` is the key sealed by DATA_ENCRYPTION_KEY.
CREATE TABLE data_keys (
    key_id uuid PRIMARY KEY,
    subject text NOT NULL UNIQUE,
    wrapped bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz
);
